/*
 * kiln station library: internals of the database layer shared by db.c
 * and its backends db_sqlite.c / db_pg.c. Not a public header.
 */
#ifndef KILN_HOST_LIB_DB_PRIV_H
#define KILN_HOST_LIB_DB_PRIV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "host/lib/db.h"

#define KS_DB_ERRMSG_MAX 512

/* One backend: every function gets the connection or statement. */
typedef struct {
	const char *name;
	int (*open)(ks_db_t *db, const char *target);
	void (*close)(ks_db_t *db);
	int (*exec)(ks_db_t *db, const char *sql);
	int (*prepare)(ks_db_stmt_t *st);
	void (*unprepare)(ks_db_stmt_t *st);
	void (*reset)(ks_db_stmt_t *st);
	void (*bind_int64)(ks_db_stmt_t *st, int i, int64_t v);
	void (*bind_text)(ks_db_stmt_t *st, int i, const char *s);
	void (*bind_blob)(ks_db_stmt_t *st, int i, const void *p, size_t n);
	void (*bind_null)(ks_db_stmt_t *st, int i);
	int (*step)(ks_db_stmt_t *st);
	int (*col_count)(ks_db_stmt_t *st);
	const char *(*col_name)(ks_db_stmt_t *st, int i);
	ks_db_type_t (*col_type)(ks_db_stmt_t *st, int i);
	int64_t (*col_int64)(ks_db_stmt_t *st, int i);
	const char *(*col_text)(ks_db_stmt_t *st, int i);
	const uint8_t *(*col_blob)(ks_db_stmt_t *st, int i);
	size_t (*col_bytes)(ks_db_stmt_t *st, int i);
	int (*last_id)(ks_db_t *db, int64_t *id);
	int64_t (*changes)(ks_db_t *db);
	int (*reconnect)(ks_db_t *db);
	int (*connected)(const ks_db_t *db);
	int (*in_tx)(ks_db_t *db);
	void *(*handle)(ks_db_t *db);
	/* optional: NULL runs "BEGIN IMMEDIATE" / "COMMIT" through exec */
	int (*begin_write)(ks_db_t *db);
	int (*commit)(ks_db_t *db);
	/* forget a statement's result, keeping its bindings (PostgreSQL:
	 * to run it again on a new connection); NULL where not needed */
	void (*rewind)(ks_db_stmt_t *st);
} ks_db_ops_t;

struct ks_db_stmt {
	ks_db_t *db;
	char *sql;          /* owned copy; the cache key */
	uint32_t hash;
	int cached;         /* lives in db->cache */
	int in_use;
	int stream;         /* rows fetched one at a time */
	int stepped;        /* ks_db_step called since prepare */
	int bind_err;       /* first failed bind (ks_db_err_t), 0: none */
	void *impl;         /* backend statement */
};

struct ks_db {
	const ks_db_ops_t *ops;
	ks_db_backend_t backend;
	void *impl;                   /* backend connection */
	char errmsg[KS_DB_ERRMSG_MAX];
	ks_db_stmt_t **cache;
	size_t ncache;
	size_t cache_cap;
	unsigned gen;                 /* bumped on reconnect (PostgreSQL) */
	unsigned next_name;           /* prepared statement names */
	int tx;                       /* transaction open (as we know it) */
	int last_err;                 /* last negative result */
	int readonly;                 /* opened with ks_db_open_readonly */
	unsigned timeout_ms;          /* reconnect window (PostgreSQL) */
	/* commit probe of the open write transaction (ks_db_set_commit_probe) */
	char probe_text[128];
	int64_t probe_int;
	uint8_t probe_blob[32];
	int probe_set;
	pthread_mutex_t health_mu;    /* guards health (read by any thread) */
	ks_db_health_t health;
};

extern const ks_db_ops_t ks_db_sqlite_ops;
extern const ks_db_ops_t ks_db_pg_ops;

/**
 * Reconnect a lost connection, retrying with exponential backoff (100 ms
 * doubling to 5 s) within db->timeout_ms. KS_DB_EOK when connected.
 */
int ks_db_reconnect_wait(ks_db_t *db);
/** Record in the health that the connection works (1) or was lost (0). */
void ks_db_health_set(ks_db_t *db, int connected);
/** Wall-clock milliseconds. */
int64_t ks_db_now_ms(void);

/** Set db->errmsg printf-style. */
void ks_db_set_err(ks_db_t *db, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
