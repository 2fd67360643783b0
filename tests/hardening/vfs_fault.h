/*
 * A fault-injecting SQLite VFS for tests.
 *
 * kh_vfs_install() registers a shim named "kiln-fault" as the process's
 * default VFS. It wraps the real default ("unix") and passes everything
 * through; every file it opens gets io methods that count operations and,
 * once armed, fail the Nth one:
 *   KH_FAULT_IOERR  the Nth xWrite/xSync/xTruncate returns SQLITE_IOERR_*
 *   KH_FAULT_FULL   the Nth xWrite/xSync/xTruncate returns SQLITE_FULL
 *   KH_FAULT_BUSY   the Nth lock request (xLock above NONE, or an
 *                   exclusive xShmLock: the WAL write lock) returns
 *                   SQLITE_BUSY, as when another process holds the lock
 * With `sticky`, every later counted operation fails too (a disk that stays
 * full) until kh_vfs_disarm(). The registry opens its database with
 * sqlite3_open_v2(..., NULL), i.e. the default VFS, so installing the shim
 * before ks_reg_open() needs no change to the product.
 */
#ifndef KILN_TESTS_HARDENING_VFS_FAULT_H
#define KILN_TESTS_HARDENING_VFS_FAULT_H

typedef enum {
	KH_FAULT_NONE = 0,
	KH_FAULT_IOERR,
	KH_FAULT_FULL,
	KH_FAULT_BUSY,
} kh_fault_kind_t;

/** Register the shim as the default VFS. Returns an SQLite result code. */
int kh_vfs_install(void);

/** Name of the real VFS underneath (for a fault-free connection). */
const char *kh_vfs_real_name(void);

/** Count from zero and fail the nth (1-based) operation of `kind`. */
void kh_vfs_arm(kh_fault_kind_t kind, unsigned long nth, int sticky);

/** Stop failing (the counters stay readable). */
void kh_vfs_disarm(void);

/** Operations of the armed kind counted since kh_vfs_arm(). */
unsigned long kh_vfs_count(void);

/** Faults injected since kh_vfs_arm(). */
unsigned long kh_vfs_hits(void);

/** "IOERR", "FULL", "BUSY". */
const char *kh_fault_name(kh_fault_kind_t kind);

#endif
