/*
 * Library faults: the Nth memory allocation fails, repeatably, in the
 * station library's entry points and in a full in-process provisioning
 * session (engine + registry + signer; the simulated board is a separate
 * process and unaffected).
 *
 * Three allocation sources are counted and failed separately:
 *   libc     malloc/calloc/realloc of the station code, wrapped at link
 *            time (-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 *            --wrap=free: only references from the objects linked into
 *            this program are redirected, i.e. host/lib, kilnd's config
 *            parser and this test)
 *   openssl  every OpenSSL allocation (CRYPTO_set_mem_functions)
 *   sqlite   every SQLite allocation (SQLITE_CONFIG_MALLOC)
 * Each run happens in a forked child, so a crash is reported with its N
 * instead of ending the sweep. The child checks that the call returned an
 * error code and logged a reason (or succeeded correctly: some failures
 * are absorbed, e.g. OpenSSL's optional caches), and counts the blocks
 * allocated during the run that are still live once every object was
 * freed (leaks). In the ASan build LeakSanitizer checks the child at exit
 * as well. After a faulted session the parent checks the registry
 * (integrity, KS_OK only with a durable ACTIVE row) and completes the
 * board, which must end ACTIVE.
 *
 * Every N of the station code's own allocations is swept; OpenSSL and
 * SQLite allocations (thousands per session) are sampled with a stride
 * giving about KL_BUDGET runs per entry point, offset by --seed so that
 * repeated runs cover other Ns; --full sweeps every N of every source.
 *
 * Usage: test_libfault KILN-AGENT-SIM [--full] [--seed S] [--budget B]
 *                      [--only SCENARIO[/SOURCE]]
 */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "host/kilnd/config.h"
#include "host/lib/audit.h"
#include "host/lib/ca.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"
#include "host/lib/simproc.h"

/* ---- the allocation shim ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);

enum { SRC_LIBC = 0, SRC_OPENSSL, SRC_SQLITE, SRC__COUNT };
static const char *const src_names[SRC__COUNT] = {"libc", "openssl",
						  "sqlite"};

static pthread_mutex_t amu = PTHREAD_MUTEX_INITIALIZER;
static int armed_src = -1;       /* source being counted, -1: none */
static unsigned long nth;        /* fail this one (1-based); 0: count */
static unsigned long acount;     /* allocations of armed_src so far */
static unsigned long ahits;      /* failures injected */
static int tracking;             /* record live blocks (in the child) */

/* Live blocks allocated while tracking: open addressing with
 * tombstones; a child process inserts at most a few 100k. */
#define TAB_BITS 21
#define TAB_SIZE (1u << TAB_BITS)
#define TOMB ((uintptr_t)1)
static uintptr_t *tab;
static unsigned long live;

static size_t slot_of(uintptr_t p)
{
	return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> (64 - TAB_BITS));
}

static void track_add(void *p)
{
	size_t i;

	if (tab == NULL || p == NULL)
		return;
	for (i = slot_of((uintptr_t)p);; i = (i + 1) & (TAB_SIZE - 1)) {
		if (tab[i] == 0 || tab[i] == TOMB) {
			tab[i] = (uintptr_t)p;
			live++;
			return;
		}
	}
}

static void track_del(void *p)
{
	size_t i;

	if (tab == NULL || p == NULL)
		return;
	for (i = slot_of((uintptr_t)p); tab[i] != 0;
	     i = (i + 1) & (TAB_SIZE - 1)) {
		if (tab[i] == (uintptr_t)p) {
			tab[i] = TOMB;
			live--;
			return;
		}
	}
}

/* Count one allocation of `src`; non-zero when it must fail. */
static int alloc_fails(int src)
{
	int fail = 0;

	if (armed_src != src)
		return 0;
	pthread_mutex_lock(&amu);
	acount++;
	if (nth != 0 && acount == nth) {
		ahits++;
		fail = 1;
	}
	pthread_mutex_unlock(&amu);
	return fail;
}

static void *do_malloc(int src, size_t n)
{
	void *p;

	if (alloc_fails(src))
		return NULL;
	p = __real_malloc(n);
	if (tracking && src == SRC_LIBC && p != NULL) {
		pthread_mutex_lock(&amu);
		track_add(p);
		pthread_mutex_unlock(&amu);
	}
	return p;
}

static void *do_realloc(int src, void *old, size_t n)
{
	void *p;

	if (n != 0 && alloc_fails(src))
		return NULL;
	p = __real_realloc(old, n);
	if (tracking && (p != NULL || n == 0)) {
		pthread_mutex_lock(&amu);
		track_del(old);
		if (p != NULL && src == SRC_LIBC)
			track_add(p);
		pthread_mutex_unlock(&amu);
	}
	return p;
}

static void do_free(void *p)
{
	if (tracking && p != NULL) {
		pthread_mutex_lock(&amu);
		track_del(p);
		pthread_mutex_unlock(&amu);
	}
	__real_free(p);
}

void *__wrap_malloc(size_t n)
{
	return do_malloc(SRC_LIBC, n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	void *p;

	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	p = do_malloc(SRC_LIBC, n * size);
	if (p != NULL)
		memset(p, 0, n * size);
	return p;
}

void *__wrap_realloc(void *p, size_t n)
{
	return do_realloc(SRC_LIBC, p, n);
}

void __wrap_free(void *p)
{
	do_free(p);
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return do_malloc(SRC_OPENSSL, n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return do_realloc(SRC_OPENSSL, p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	do_free(p);
}

/* SQLite wants the size back: a 16-byte header holds it. */
#define SQ_HDR 16

static void *sq_malloc(int n)
{
	uint8_t *p;

	if (n < 0)
		return NULL;
	p = do_malloc(SRC_SQLITE, (size_t)n + SQ_HDR);
	if (p == NULL)
		return NULL;
	memcpy(p, &n, sizeof(n));
	return p + SQ_HDR;
}

static void sq_free(void *p)
{
	if (p != NULL)
		do_free((uint8_t *)p - SQ_HDR);
}

static void *sq_realloc(void *p, int n)
{
	uint8_t *q;

	if (p == NULL)
		return sq_malloc(n);
	if (n < 0)
		return NULL;
	q = do_realloc(SRC_SQLITE, (uint8_t *)p - SQ_HDR, (size_t)n + SQ_HDR);
	if (q == NULL)
		return NULL;
	memcpy(q, &n, sizeof(n));
	return q + SQ_HDR;
}

static int sq_size(void *p)
{
	int n = 0;

	if (p != NULL)
		memcpy(&n, (uint8_t *)p - SQ_HDR, sizeof(n));
	return n;
}

static int sq_roundup(int n)
{
	return (n + 7) & ~7;
}

static int sq_init(void *arg)
{
	(void)arg;
	return SQLITE_OK;
}

static void sq_shutdown(void *arg)
{
	(void)arg;
}

static const sqlite3_mem_methods sq_methods = {
	sq_malloc, sq_free,  sq_realloc,  sq_size,
	sq_roundup, sq_init, sq_shutdown, NULL,
};

static void arm(int src, unsigned long n)
{
	pthread_mutex_lock(&amu);
	armed_src = src;
	nth = n;
	acount = ahits = 0;
	pthread_mutex_unlock(&amu);
}

static void disarm(void)
{
	pthread_mutex_lock(&amu);
	armed_src = -1;
	pthread_mutex_unlock(&amu);
}

/* ---- the station under test ---- */

static char dir[64];
static char db_path[256], db_new[256], cfg_path[256];
static char ca_cert[256], ca_key[256], chain_path[256];
static const char *sim_exe;
static EVP_PKEY *station_key, *station_pub;
static ks_signer_t *signer;
static ks_profile_t profiles[2];
static ks_profile_t *plist[2];
static unsigned long violations;
static unsigned long board_no;

static void violation(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("VIOLATION: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	violations++;
}

static void die(const char *what)
{
	fprintf(stderr, "test_libfault: setup failed: %s\n", what);
	exit(1);
}

static void profile(ks_profile_t *p, const char *name, const char *origin,
		    const char *lock)
{
	char err[256];

	if (ks_profile_init(p, name, err, sizeof(err)) != KS_OK ||
	    ks_profile_set(p, "subject", "CN=${serial},O=Kiln Alloc", err,
			   sizeof(err)) != KS_OK ||
	    ks_profile_set(p, "validity_days", "365", err, sizeof(err)) !=
		    KS_OK ||
	    ks_profile_set(p, "key_origin", origin, err, sizeof(err)) !=
		    KS_OK ||
	    ks_profile_set(p, "lock", lock, err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "profile %s: %s\n", name, err);
		die("profile");
	}
}

static int engine_open(ks_reg_t **reg, ks_engine_t **eng)
{
	ks_engine_config_t cfg;
	int rc;

	rc = ks_reg_open(db_path, "st-alloc", reg);
	if (rc == KS_OK)
		rc = ks_reg_set_station_key(*reg, station_key);
	if (rc != KS_OK)
		return rc;
	memset(&cfg, 0, sizeof(cfg));
	cfg.station_id = "st-alloc";
	cfg.reg = *reg;
	cfg.signer = signer;
	cfg.profiles = plist;
	cfg.nprofiles = 2;
	return ks_engine_new(&cfg, eng);
}

static void setup(void)
{
	char path[256], err[256];
	ks_ca_t *ca = NULL;
	ks_reg_t *reg = NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	int len;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/kiln-libfault-XXXXXX",
		 getenv("TMPDIR") && strlen(getenv("TMPDIR")) < 40
			 ? getenv("TMPDIR")
			 : "/tmp");
	if (mkdtemp(dir) == NULL) {
		snprintf(dir, sizeof(dir), "/tmp/kiln-libfault-XXXXXX");
		if (mkdtemp(dir) == NULL)
			die("mkdtemp");
	}
	if (ks_ca_init_dev(dir, "Kiln Alloc", err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "%s\n", err);
		die("ca init");
	}
	snprintf(ca_cert, sizeof(ca_cert), "%s/station-ca.pem", dir);
	snprintf(ca_key, sizeof(ca_key), "%s/station-ca.key", dir);
	snprintf(chain_path, sizeof(chain_path), "%s/chain.pem", dir);
	if (ks_ca_load(ca_cert, ca_key, chain_path, &ca) != KS_OK ||
	    ks_signer_new(&ca, &signer) != KS_OK)
		die("ca load");
	profile(&profiles[0], "dev", "device", "full");
	profile(&profiles[1], "host", "host", "identity");
	for (int i = 0; i < 2; i++) {
		if (ks_signer_add_profile(signer, &profiles[i]) != KS_OK)
			die("add profile");
		plist[i] = &profiles[i];
	}
	snprintf(path, sizeof(path), "%s/station.key", dir);
	f = fopen(path, "r");
	if (f == NULL ||
	    (station_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL)
		die("station key");
	fclose(f);
	len = i2d_PUBKEY(station_key, &der);
	p = der;
	if (len <= 0 || (station_pub = d2i_PUBKEY(NULL, &p, len)) == NULL)
		die("station public key");
	OPENSSL_free(der);
	snprintf(db_path, sizeof(db_path), "%s/registry.db", dir);
	snprintf(db_new, sizeof(db_new), "%s/fresh.db", dir);
	if (ks_reg_open(db_path, "st-alloc", &reg) != KS_OK ||
	    ks_reg_set_station_key(reg, station_key) != KS_OK ||
	    ks_reg_lot_create(reg, "L1", "dev", "M1", -1, "tester") != KS_OK ||
	    ks_reg_lot_create(reg, "L2", "host", "M2", -1, "tester") != KS_OK)
		die("registry");
	ks_reg_close(&reg);

	snprintf(cfg_path, sizeof(cfg_path), "%s/kilnd.conf", dir);
	f = fopen(cfg_path, "w");
	if (f == NULL)
		die("config");
	fprintf(f,
		"[station]\nid = st-alloc\nregistry = registry.db\n"
		"control_socket = kilnd.sock\nstation_key = station.key\n"
		"log_level = info\ncheckpoint_interval = 32\n\n"
		"[ca]\ncert = station-ca.pem\nkey = station-ca.key\n"
		"chain = chain.pem\n\n"
		"[profile dev]\nsubject = CN=${serial},O=Test\n"
		"validity_days = 365\nkey_origin = device\nlock = full\n\n"
		"[profile host]\nsubject = CN=${serial},O=Test\n"
		"validity_days = 30\nkey_origin = host\nlock = identity\n\n"
		"[slot a]\nport = boards/a\n\n[slot b]\nport = boards/b\n");
	fclose(f);
}

/* ---- scenarios: each runs in the child, armed, and returns the
 * library's result code; the objects it made are freed before return */

typedef struct {
	const char *name;
	int (*fn)(void *ctx); /* NULL for the session (see child_run) */
	int session; /* runs a board: the parent checks and recovers */
} scenario_t;

static int sc_config(void *ctx)
{
	kd_config_t *cfg = NULL;
	char err[512];
	int rc;

	(void)ctx;
	err[0] = '\0';
	rc = (int)kd_config_load(cfg_path, &cfg, err, sizeof(err));
	if (rc != KS_OK && err[0] != '\0')
		fprintf(stderr, "config: %s\n", err);
	kd_config_free(&cfg);
	return rc;
}

static int sc_ca_load(void *ctx)
{
	ks_ca_t *ca = NULL;
	int rc;

	(void)ctx;
	rc = (int)ks_ca_load(ca_cert, ca_key, chain_path, &ca);
	ks_ca_free(&ca);
	return rc;
}

static int sc_reg_open(void *ctx)
{
	ks_reg_t *reg = NULL;
	int rc;

	(void)ctx;
	rc = ks_reg_open(db_path, "st-alloc", &reg);
	ks_reg_close(&reg);
	return rc;
}

static int sc_reg_create(void *ctx)
{
	ks_reg_t *reg = NULL;
	int rc;

	(void)ctx;
	unlink(db_new);
	rc = ks_reg_open(db_new, "st-new", &reg);
	ks_reg_close(&reg);
	return rc;
}

static int sc_audit(void *ctx)
{
	ks_audit_report_t rep;
	int rc;

	(void)ctx;
	memset(&rep, 0, sizeof(rep));
	rc = ks_audit_verify(db_path, chain_path, station_pub, &rep);
	/* as `kiln audit verify` does: the report carries the reason */
	if (rc != KS_OK || !rep.ok)
		fprintf(stderr, "audit verify: %s: %s\n", ks_strerror(rc),
			rep.first_error);
	if (rc == KS_OK && !rep.ok)
		rc = KS_ERR_AUDIT;
	return rc;
}

typedef struct {
	ks_simproc_t *sp;
	const char *lot, *prof;
	ks_session_result_t res;
} sess_ctx_t;

/* What a child reports to the parent through a pipe. */
typedef struct {
	int rc;
	int lost_board; /* never got the board's HELLO (pty taken) */
	unsigned long count, hits, leaked;
	int reason_given;
	char reason[256];
} report_t;

static ks_engine_t *child_engine;
static ks_reg_t *child_reg;

/*
 * A crash in the child: print the stack to the child's log; when the
 * innermost frame outside libc is in libcrypto, the crash is OpenSSL's own
 * (OpenSSL 3.0 dereferences NULL on some allocation failures, e.g. in
 * OSSL_DECODER_from_bio() under OSSL_STORE_load()): exit 77 so the
 * parent counts it apart from kiln's crashes. Anything else is re-raised.
 */
#define KL_EXIT_OPENSSL_BUG 77

static void crash_handler(int sig)
{
	void *frames[48];
	int n = backtrace(frames, 48);
	int openssl = 0;

	backtrace_symbols_fd(frames, n, 2);
	for (int i = 1; i < n; i++) {
		Dl_info info;

		if (dladdr(frames[i], &info) == 0 || info.dli_fname == NULL)
			break;
		if (strstr(info.dli_fname, "libc.so") != NULL ||
		    strstr(info.dli_fname, "test_libfault") != NULL)
			continue; /* the handler and the signal trampoline */
		openssl = strstr(info.dli_fname, "libcrypto") != NULL;
		break;
	}
	if (openssl)
		_exit(KL_EXIT_OPENSSL_BUG);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Another test program's station polling a stale /dev/pts/N path can open
 * the pty our simulator just got (flock: BUSY, or it eats the answers:
 * HELLO times out). A run that never got a HELLO is repeated on a new pty
 * with the same board image (the board is re-plugged).
 */
static int lost_board(ks_err_t rc, const ks_session_result_t *res)
{
	return rc != KS_OK &&
	       (res->final == KS_STEP_NONE || res->final == KS_STEP_HELLO) &&
	       res->session_id == 0 &&
	       (rc == KS_ERR_BUSY || rc == KS_ERR_TIMEOUT || rc == KS_ERR_IO ||
		rc == KS_ERR_CLOSED) &&
	       strstr(res->reason, "registry") == NULL;
}

static unsigned long replugs;

static ks_simproc_t *start_board(const char *image, const char *uid)
{
	ks_simproc_opts_t o;
	ks_simproc_t *sp = NULL;

	memset(&o, 0, sizeof(o));
	o.exe = sim_exe;
	o.image = image;
	o.uid_hex = uid;
	o.quiet = true;
	if (ks_simproc_start(&o, &sp) != KS_OK)
		die("simulator start");
	return sp;
}

/* Runs in the child: set up (unarmed), run armed, tear down, count. */
static void child_run(const scenario_t *sc, void *ctx, int src,
		      unsigned long n, int fd, const char *errlog)
{
	report_t rep;
	int errfd;
	off_t logged;

	memset(&rep, 0, sizeof(rep));
	signal(SIGSEGV, crash_handler);
	signal(SIGBUS, crash_handler);
	signal(SIGABRT, crash_handler);
	errfd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (errfd >= 0) {
		dup2(errfd, 2);
		close(errfd);
	}
	if (sc->session) {
		sess_ctx_t *s = ctx;

		if (engine_open(&child_reg, &child_engine) != KS_OK)
			_exit(3);
		memset(&s->res, 0, sizeof(s->res));
	}
	tab = __real_calloc(TAB_SIZE, sizeof(*tab));
	if (tab == NULL)
		_exit(3);
	live = 0;
	tracking = 1;
	arm(src, n);
	if (sc->session) {
		sess_ctx_t *s = ctx;
		ks_session_params_t p;

		memset(&p, 0, sizeof(p));
		p.port = ks_simproc_spec(s->sp);
		p.slot = "alloc";
		p.slot_index = 1;
		p.lot = s->lot;
		p.profile = s->prof;
		p.actor = "tester";
		p.timeout_ms = 500;
		rep.rc = (int)ks_session_run(child_engine, &p, &s->res);
		rep.lost_board = lost_board((ks_err_t)rep.rc, &s->res);
		snprintf(rep.reason, sizeof(rep.reason), "%s", s->res.reason);
		rep.reason_given = s->res.reason[0] != '\0';
	} else {
		rep.rc = sc->fn(ctx);
	}
	rep.count = acount;
	rep.hits = ahits;
	disarm();
	ks_engine_free(&child_engine);
	ks_reg_close(&child_reg);
	ERR_clear_error();
	rep.leaked = live;
	tracking = 0;
	if (live != 0 && getenv("KL_SHOW_LIVE") != NULL) {
		for (size_t i = 0; i < TAB_SIZE; i++) {
			if (tab[i] == 0 || tab[i] == TOMB)
				continue;
			fprintf(stderr, "live block %p: ", (void *)tab[i]);
			for (int k = 0; k < 48; k++) {
				unsigned char c = ((unsigned char *)tab[i])[k];

				fputc(c >= 32 && c < 127 ? c : '.', stderr);
			}
			fputc('\n', stderr);
		}
	}
	fflush(stderr);
	logged = lseek(2, 0, SEEK_END);
	if (!sc->session)
		rep.reason_given = logged > 0;
	if (write(fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(4);
	close(fd);
	/* exit(), not _exit(): LeakSanitizer checks the child at exit */
	exit(0);
}

/* Integrity and the device row of the board, on a fresh connection. */
static int db_device_state(const char *uid_hex, char *state, size_t cap)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int ok = 0;

	state[0] = '\0';
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) !=
		    SQLITE_OK ||
	    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) !=
		    SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
		goto out;
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db,
			       "SELECT state FROM devices WHERE hex(uid) = "
			       "upper(?)",
			       -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(st, 1, uid_hex, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(state, cap, "%s",
			 (const char *)sqlite3_column_text(st, 0));
	ok = 1;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok;
}

typedef struct {
	unsigned long runs, injected, errors, absorbed, crashes, leaks,
		silent, recovered, total, openssl_bugs;
	unsigned long stride;
} tally_t;

/* The last lines the child logged, after a violation. */
static void show_log(const char *path)
{
	char line[512];
	long n = 0, skip;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		n++;
	rewind(f);
	skip = n > 20 ? n - 20 : 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (skip-- <= 0)
			printf("     | %s", line);
	fclose(f);
}

/* One N of one scenario and source. Returns 1 when the fault was hit,
 * 0 when the run finished before N, -1 on a harness failure. */
static int one(const scenario_t *sc, int src, unsigned long n, tally_t *t,
	       unsigned long *count_out)
{
	char errlog[300], uid[17], image[256], what[128], state[16];
	sess_ctx_t sctx;
	ks_simproc_t *sp = NULL;
	report_t rep;
	int fds[2], status = 0, got;
	pid_t pid;
	unsigned long before = violations;
	int replug = 0;

	memset(&sctx, 0, sizeof(sctx));
	snprintf(what, sizeof(what), "%s/%s N=%lu", sc->name, src_names[src],
		 n);
	if (sc->session) {
		board_no++;
		snprintf(uid, sizeof(uid), "ab%014lx", board_no);
		snprintf(image, sizeof(image), "%s/b%lu.img", dir, board_no);
		sp = start_board(image, uid);
		sctx.sp = sp;
		sctx.lot = (board_no & 1) ? "L1" : "L2";
		sctx.prof = (board_no & 1) ? "dev" : "host";
	}
	snprintf(errlog, sizeof(errlog), "%s/child.log", dir);
again:
	if (pipe(fds) != 0)
		die("pipe");
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(fds[0]);
		child_run(sc, &sctx, src, n, fds[1], errlog);
	}
	close(fds[1]);
	got = (int)read(fds[0], &rep, sizeof(rep));
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	t->runs++;
	if (WIFEXITED(status) && WEXITSTATUS(status) == KL_EXIT_OPENSSL_BUG) {
		t->openssl_bugs++;
		printf("%s: OpenSSL crashed inside libcrypto (not kiln code; "
		       "see the stack below)\n", what);
		show_log(errlog);
		ks_simproc_stop(&sp, NULL);
		return 1;
	}
	if (got != (int)sizeof(rep) || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		t->crashes++;
		violation("%s: child %s %d (see %s)", what,
			  WIFSIGNALED(status) ? "killed by signal"
					      : "exited with",
			  WIFSIGNALED(status) ? WTERMSIG(status)
					      : WEXITSTATUS(status),
			  errlog);
		show_log(errlog);
		ks_simproc_stop(&sp, NULL);
		return got == (int)sizeof(rep) ? (rep.hits > 0) : 1;
	}
	if (sc->session && rep.lost_board && rep.hits == 0 && replug++ < 3) {
		printf("# %s: board pty lost (%s), re-plugging it\n", uid,
		       rep.reason);
		replugs++;
		t->runs--;
		ks_simproc_stop(&sp, NULL);
		sp = start_board(image, uid);
		sctx.sp = sp;
		goto again;
	}
	if (count_out != NULL)
		*count_out = rep.count;
	if (rep.hits > 0) {
		t->injected += rep.hits;
		if (rep.rc == KS_OK) {
			t->absorbed++;
		} else {
			t->errors++;
			if (!rep.reason_given) {
				t->silent++;
				violation("%s: failed (%s) without a reason", what,
					  ks_strerror(rep.rc));
			}
		}
	} else if (rep.rc != KS_OK) {
		violation("%s: no fault reached but the call failed: %s (%s)",
			  what, ks_strerror(rep.rc), rep.reason);
	}
	if (rep.leaked != 0) {
		t->leaks++;
		violation("%s: %lu blocks allocated during the run still "
			  "live after everything was freed",
			  what, rep.leaked);
	}
	if (sc->session) {
		ks_reg_t *reg = NULL;
		ks_engine_t *eng = NULL;
		ks_session_result_t res;
		ks_session_params_t p;
		int rc;

		if (!db_device_state(uid, state, sizeof(state)))
			violation("%s: registry fails integrity_check", what);
		if (rep.rc == KS_OK && strcmp(state, "ACTIVE") != 0)
			violation("%s: KS_OK but the registry says '%s'", what,
				  state);
		if (rep.rc != KS_OK || rep.hits > 0) {
			/* the station recovers: the board must complete */
			if (engine_open(&reg, &eng) != KS_OK)
				die("engine");
			memset(&p, 0, sizeof(p));
			p.port = ks_simproc_spec(sp);
			p.slot = "alloc";
			p.slot_index = 1;
			p.lot = sctx.lot;
			p.profile = sctx.prof;
			p.actor = "tester";
			p.timeout_ms = 500;
			rc = (int)ks_session_run(eng, &p, &res);
			for (int a = 0; a < 3 && lost_board((ks_err_t)rc, &res);
			     a++) {
				printf("# %s: board pty lost (%s), re-plugging "
				       "it\n", uid, res.reason);
				replugs++;
				ks_simproc_stop(&sp, NULL);
				sp = start_board(image, uid);
				p.port = ks_simproc_spec(sp);
				rc = (int)ks_session_run(eng, &p, &res);
			}
			if (rc == KS_OK ||
			    (rep.rc == KS_OK && rc == KS_ERR_DUPLICATE))
				t->recovered++;
			else
				violation("%s: board not completed after the "
					  "fault: %s at %s (fault run: %s)",
					  what, res.reason,
					  ks_step_name(res.final), rep.reason);
			ks_engine_free(&eng);
			ks_reg_close(&reg);
		}
		if (violations != before)
			show_log(errlog);
		ks_simproc_stop(&sp, NULL);
		unlink(image);
	}
	return rep.hits > 0;
}

static void sweep(const scenario_t *sc, int src, int full,
		  unsigned long budget, unsigned long seed, tally_t *t)
{
	unsigned long total = 0, n, stride, start;

	memset(t, 0, sizeof(*t));
	/* lazily created library state (OpenSSL's per-thread error queue,
	 * algorithm caches) is made once in the parent, so a child's count
	 * of live blocks shows only what the run itself leaked */
	if (sc->fn != NULL && sc->fn(NULL) != KS_OK)
		violation("%s: fails without any fault", sc->name);
	/* a counting run first: how many allocations of src */
	nth = 0;
	if (one(sc, src, 0, t, &total) < 0)
		return;
	t->runs = 0;
	t->total = total;
	stride = full || total <= budget ? 1 : (total + budget - 1) / budget;
	start = stride > 1 ? 1 + seed % stride : 1;
	t->stride = stride;
	for (n = start; n <= total + 1; n += stride) {
		nth = n;
		if (one(sc, src, n, t, NULL) == 0)
			break;
	}
	nth = 0;
}

/* One complete session per lot in the parent before any sweep: the
 * signer's per-lot counters and OpenSSL's caches exist from then on, so
 * a child's live blocks are the run's own. */
static void warm_up(void)
{
	static const char *const lots[2][2] = {{"L1", "dev"}, {"L2", "host"}};

	for (int i = 0; i < 2; i++) {
		char image[256], uid[17];
		ks_simproc_opts_t o;
		ks_simproc_t *sp = NULL;
		ks_session_params_t p;
		ks_session_result_t res;
		ks_reg_t *reg = NULL;
		ks_engine_t *eng = NULL;

		snprintf(uid, sizeof(uid), "aa%014x", i);
		snprintf(image, sizeof(image), "%s/warm%d.img", dir, i);
		memset(&o, 0, sizeof(o));
		o.exe = sim_exe;
		o.image = image;
		o.uid_hex = uid;
		o.quiet = true;
		if (ks_simproc_start(&o, &sp) != KS_OK ||
		    engine_open(&reg, &eng) != KS_OK)
			die("warm-up");
		memset(&p, 0, sizeof(p));
		p.port = ks_simproc_spec(sp);
		p.slot = "alloc";
		p.lot = lots[i][0];
		p.profile = lots[i][1];
		p.actor = "tester";
		p.timeout_ms = 500;
		if (ks_session_run(eng, &p, &res) != KS_OK) {
			fprintf(stderr, "warm-up session: %s\n", res.reason);
			die("warm-up session");
		}
		ks_engine_free(&eng);
		ks_reg_close(&reg);
		ks_simproc_stop(&sp, NULL);
	}
}

int main(int argc, char **argv)
{
	static const scenario_t scenarios[] = {
		{"config_load", sc_config, 0},
		{"ca_load", sc_ca_load, 0},
		{"reg_open", sc_reg_open, 0},
		{"reg_create", sc_reg_create, 0},
		{"audit_verify", sc_audit, 0},
		{"session", NULL, 1},
	};
	unsigned long budget = 60, seed = 0;
	const char *only = NULL;
	unsigned long tot_runs = 0, tot_inj = 0, tot_err = 0, tot_abs = 0;
	unsigned long tot_ossl = 0;
	int full = 0;
	struct timespec t0, t1;

	/* before anything allocates */
	if (!CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free))
		die("CRYPTO_set_mem_functions");
	if (sqlite3_config(SQLITE_CONFIG_MALLOC, &sq_methods) != SQLITE_OK)
		die("SQLITE_CONFIG_MALLOC");
	sim_exe = argc > 1 ? argv[1] : getenv("KILN_AGENT_SIM");
	if (sim_exe == NULL) {
		fprintf(stderr, "usage: test_libfault KILN-AGENT-SIM [--full] "
				"[--seed S] [--budget B]\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--full") == 0)
			full = 1;
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			seed = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc)
			budget = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = argv[++i];
	}
	if (budget == 0)
		budget = 1;
	if (seed == 0)
		seed = (unsigned long)time(NULL);
	printf("seed %lu (repeat with --seed %lu)\n", seed, seed);
	ks_log_set_level(KS_LOG_WARN);
	setup();
	warm_up();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		for (int src = 0; src < SRC__COUNT; src++) {
			tally_t t;
			char name[64];

			snprintf(name, sizeof(name), "%s/%s", scenarios[i].name,
				 src_names[src]);
			if (only != NULL && strcmp(only, name) != 0 &&
			    strcmp(only, scenarios[i].name) != 0)
				continue;
			sweep(&scenarios[i], src, full, budget, seed, &t);
			printf("%-12s %-7s: %6lu allocations, every %lu: %lu "
			       "runs, %lu faults, %lu errors, %lu absorbed, "
			       "%lu crashes, %lu leaks, %lu silent, %lu "
			       "OpenSSL crashes\n",
			       scenarios[i].name, src_names[src], t.total,
			       t.stride, t.runs, t.injected, t.errors,
			       t.absorbed, t.crashes, t.leaks, t.silent,
			       t.openssl_bugs);
			fflush(stdout);
			tot_runs += t.runs;
			tot_inj += t.injected;
			tot_err += t.errors;
			tot_abs += t.absorbed;
			tot_ossl += t.openssl_bugs;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	ks_signer_free(&signer);
	EVP_PKEY_free(station_key);
	EVP_PKEY_free(station_pub);
	printf("library faults: %lu runs, %lu allocation failures injected, "
	       "%lu clean errors, %lu absorbed, %lu OpenSSL-internal crashes, "
	       "%lu violations (%.1f s; %lu boards re-plugged after another "
	       "process took their pty)\n",
	       tot_runs, tot_inj, tot_err, tot_abs, tot_ossl, violations,
	       (double)(t1.tv_sec - t0.tv_sec) +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, replugs);
	printf("%lu passed, %lu failed\n", tot_runs - violations, violations);
	return violations == 0 ? 0 : 1;
}
