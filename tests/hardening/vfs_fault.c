/*
 * A fault-injecting SQLite VFS shim (see vfs_fault.h).
 */
#include <pthread.h>
#include <string.h>

#include <sqlite3.h>

#include "tests/hardening/vfs_fault.h"

typedef struct {
	sqlite3_file base;   /* pMethods = our io methods */
	sqlite3_file *real;  /* the wrapped file, allocated right after */
} kh_file_t;

static sqlite3_vfs shim;
static sqlite3_vfs *real_vfs;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static kh_fault_kind_t armed;
static unsigned long nth, count, hits;
static int sticky;

const char *kh_fault_name(kh_fault_kind_t kind)
{
	switch (kind) {
	case KH_FAULT_IOERR:
		return "IOERR";
	case KH_FAULT_FULL:
		return "FULL";
	case KH_FAULT_BUSY:
		return "BUSY";
	default:
		return "NONE";
	}
}

void kh_vfs_arm(kh_fault_kind_t kind, unsigned long n, int stick)
{
	pthread_mutex_lock(&mu);
	armed = kind;
	nth = n;
	sticky = stick;
	count = hits = 0;
	pthread_mutex_unlock(&mu);
}

void kh_vfs_disarm(void)
{
	pthread_mutex_lock(&mu);
	armed = KH_FAULT_NONE;
	pthread_mutex_unlock(&mu);
}

unsigned long kh_vfs_count(void)
{
	unsigned long c;

	pthread_mutex_lock(&mu);
	c = count;
	pthread_mutex_unlock(&mu);
	return c;
}

unsigned long kh_vfs_hits(void)
{
	unsigned long h;

	pthread_mutex_lock(&mu);
	h = hits;
	pthread_mutex_unlock(&mu);
	return h;
}

/* Count one operation of class `cls`; non-zero when it must fail. */
static int should_fail(kh_fault_kind_t cls)
{
	int fail = 0;

	pthread_mutex_lock(&mu);
	if (armed != KH_FAULT_NONE &&
	    (armed == KH_FAULT_BUSY) == (cls == KH_FAULT_BUSY)) {
		count++;
		if (count == nth || (sticky && count > nth)) {
			hits++;
			fail = 1;
		}
	}
	pthread_mutex_unlock(&mu);
	return fail;
}

/* The error a failing write-class operation returns. */
static int write_error(int ioerr)
{
	kh_fault_kind_t k;

	pthread_mutex_lock(&mu);
	k = armed;
	pthread_mutex_unlock(&mu);
	return k == KH_FAULT_FULL ? SQLITE_FULL : ioerr;
}

static sqlite3_file *R(sqlite3_file *f)
{
	return ((kh_file_t *)(void *)f)->real;
}

static int x_close(sqlite3_file *f)
{
	return R(f)->pMethods->xClose(R(f));
}

static int x_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	return R(f)->pMethods->xRead(R(f), buf, n, off);
}

static int x_write(sqlite3_file *f, const void *buf, int n,
		   sqlite3_int64 off)
{
	if (should_fail(KH_FAULT_IOERR))
		return write_error(SQLITE_IOERR_WRITE);
	return R(f)->pMethods->xWrite(R(f), buf, n, off);
}

static int x_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	if (should_fail(KH_FAULT_IOERR))
		return write_error(SQLITE_IOERR_TRUNCATE);
	return R(f)->pMethods->xTruncate(R(f), size);
}

static int x_sync(sqlite3_file *f, int flags)
{
	if (should_fail(KH_FAULT_IOERR))
		return write_error(SQLITE_IOERR_FSYNC);
	return R(f)->pMethods->xSync(R(f), flags);
}

static int x_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return R(f)->pMethods->xFileSize(R(f), size);
}

static int x_lock(sqlite3_file *f, int level)
{
	if (level > SQLITE_LOCK_NONE && should_fail(KH_FAULT_BUSY))
		return SQLITE_BUSY;
	return R(f)->pMethods->xLock(R(f), level);
}

static int x_unlock(sqlite3_file *f, int level)
{
	return R(f)->pMethods->xUnlock(R(f), level);
}

static int x_check_reserved(sqlite3_file *f, int *out)
{
	return R(f)->pMethods->xCheckReservedLock(R(f), out);
}

static int x_file_control(sqlite3_file *f, int op, void *arg)
{
	return R(f)->pMethods->xFileControl(R(f), op, arg);
}

static int x_sector_size(sqlite3_file *f)
{
	return R(f)->pMethods->xSectorSize(R(f));
}

static int x_device_chars(sqlite3_file *f)
{
	return R(f)->pMethods->xDeviceCharacteristics(R(f));
}

static int x_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
		     void volatile **pp)
{
	return R(f)->pMethods->xShmMap(R(f), pg, pgsz, extend, pp);
}

static int x_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	if ((flags & SQLITE_SHM_LOCK) && (flags & SQLITE_SHM_EXCLUSIVE) &&
	    should_fail(KH_FAULT_BUSY))
		return SQLITE_BUSY;
	return R(f)->pMethods->xShmLock(R(f), offset, n, flags);
}

static void x_shm_barrier(sqlite3_file *f)
{
	R(f)->pMethods->xShmBarrier(R(f));
}

static int x_shm_unmap(sqlite3_file *f, int del)
{
	return R(f)->pMethods->xShmUnmap(R(f), del);
}

static int x_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	return R(f)->pMethods->xFetch(R(f), off, n, pp);
}

static int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return R(f)->pMethods->xUnfetch(R(f), off, p);
}

static const sqlite3_io_methods io_v3 = {
	3,
	x_close,
	x_read,
	x_write,
	x_truncate,
	x_sync,
	x_file_size,
	x_lock,
	x_unlock,
	x_check_reserved,
	x_file_control,
	x_sector_size,
	x_device_chars,
	x_shm_map,
	x_shm_lock,
	x_shm_barrier,
	x_shm_unmap,
	x_fetch,
	x_unfetch,
};

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
		  int flags, int *out_flags)
{
	kh_file_t *kf = (kh_file_t *)(void *)f;
	int rc;

	(void)vfs;
	kf->real = (sqlite3_file *)(void *)(kf + 1);
	memset(kf->real, 0, (size_t)real_vfs->szOsFile);
	rc = real_vfs->xOpen(real_vfs, name, kf->real, flags, out_flags);
	/* SQLite calls xClose only when pMethods is set */
	if (kf->real->pMethods == NULL)
		f->pMethods = NULL;
	else
		f->pMethods = &io_v3;
	return rc;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int v_full_pathname(sqlite3_vfs *vfs, const char *name, int n,
			   char *out)
{
	(void)vfs;
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *v_dlopen(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return real_vfs->xDlOpen(real_vfs, name);
}

static void v_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
	(void)vfs;
	real_vfs->xDlError(real_vfs, n, msg);
}

static void (*v_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	(void)vfs;
	return real_vfs->xDlSym(real_vfs, h, sym);
}

static void v_dlclose(sqlite3_vfs *vfs, void *h)
{
	(void)vfs;
	real_vfs->xDlClose(real_vfs, h);
}

static int v_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int v_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return real_vfs->xSleep(real_vfs, us);
}

static int v_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return real_vfs->xCurrentTime(real_vfs, out);
}

static int v_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs->xGetLastError(real_vfs, n, out);
}

static int v_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

int kh_vfs_install(void)
{
	int rc;

	if (real_vfs != NULL)
		return SQLITE_OK;
	rc = sqlite3_initialize();
	if (rc != SQLITE_OK)
		return rc;
	real_vfs = sqlite3_vfs_find(NULL);
	if (real_vfs == NULL)
		return SQLITE_ERROR;
	memset(&shim, 0, sizeof(shim));
	shim.iVersion = 2;
	shim.szOsFile = (int)sizeof(kh_file_t) + real_vfs->szOsFile;
	shim.mxPathname = real_vfs->mxPathname;
	shim.zName = "kiln-fault";
	shim.xOpen = v_open;
	shim.xDelete = v_delete;
	shim.xAccess = v_access;
	shim.xFullPathname = v_full_pathname;
	shim.xDlOpen = v_dlopen;
	shim.xDlError = v_dlerror;
	shim.xDlSym = v_dlsym;
	shim.xDlClose = v_dlclose;
	shim.xRandomness = v_randomness;
	shim.xSleep = v_sleep;
	shim.xCurrentTime = v_current_time;
	shim.xGetLastError = v_last_error;
	shim.xCurrentTimeInt64 = v_current_time64;
	return sqlite3_vfs_register(&shim, 1);
}

const char *kh_vfs_real_name(void)
{
	return real_vfs != NULL ? real_vfs->zName : "unix";
}
