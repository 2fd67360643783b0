/*
 * kiln station library: a small database layer under the registry, with
 * two backends: SQLite (db_sqlite.c, the embedded default) and PostgreSQL
 * (db_pg.c, libpq, a registry shared by a line of stations).
 *
 * SQL is written once with `?` or `?N` placeholders; the PostgreSQL backend
 * rewrites them to `$n`. Statements are prepared once per connection and
 * cached by their SQL text: ks_db_prepare() returns the cached statement
 * reset and unbound, ks_db_finish() hands it back. Blobs travel as raw
 * bytes (SQLite BLOB, PostgreSQL BYTEA in binary parameters).
 *
 * A connection is used by one thread at a time (the registry serialises
 * callers with its mutex). Errors are classified (ks_db_err_t) so the
 * registry can tell a constraint violation from a serialisation conflict
 * (retry the transaction) and from a lost connection (reconnect).
 */
#ifndef KILN_HOST_LIB_DB_H
#define KILN_HOST_LIB_DB_H

#include <stddef.h>
#include <stdint.h>

#define KS_DB_WUR __attribute__((warn_unused_result))

typedef struct ks_db ks_db_t;
typedef struct ks_db_stmt ks_db_stmt_t;

typedef enum {
	KS_DB_SQLITE = 1,
	KS_DB_PG = 2,
} ks_db_backend_t;

/* Result classes of ks_db_* calls (negative) and of ks_db_step (>= 0). */
typedef enum {
	KS_DB_DONE = 0,          /* statement finished, no (more) rows */
	KS_DB_ROW = 1,           /* a row is available */
	KS_DB_EOK = 0,           /* success of non-step calls */
	KS_DB_EERROR = -1,       /* any other error (SQL, schema, I/O) */
	KS_DB_ECONSTRAINT = -2,  /* unique / primary key violation */
	KS_DB_ERETRY = -3,       /* serialisation failure, deadlock, busy */
	KS_DB_ECONN = -4,        /* connection lost / server unreachable */
	KS_DB_ECHECK = -5,       /* other constraint (CHECK, FK, trigger) */
	KS_DB_ENOMEM = -6,
} ks_db_err_t;

/* Column value types as ks_db_col_type() reports them. */
typedef enum {
	KS_DB_T_NULL = 0,
	KS_DB_T_INT = 1,
	KS_DB_T_TEXT = 2,
	KS_DB_T_BLOB = 3,
	KS_DB_T_FLOAT = 4,
} ks_db_type_t;

/**
 * Open a database by URL: "sqlite:PATH" or a plain path (SQLite, created
 * if absent, default VFS), "postgresql://..." or "postgres://..."
 * (PostgreSQL; synchronous_commit = on for the session). Returns a
 * ks_db_err_t; *db is set (even on failure, for ks_db_errmsg) and must be
 * closed with ks_db_close().
 */
KS_DB_WUR int ks_db_open(const char *url, ks_db_t **db);
/** Like ks_db_open, but never creates or writes a SQLite file. */
KS_DB_WUR int ks_db_open_readonly(const char *url, ks_db_t **db);
/** Close (finalising cached statements) and free; NULL-safe. */
void ks_db_close(ks_db_t **db);
/** Backend of a URL without opening it (KS_DB_SQLITE / KS_DB_PG). */
ks_db_backend_t ks_db_url_backend(const char *url);
/** Backend of an open connection. */
ks_db_backend_t ks_db_backend(const ks_db_t *db);
/** "sqlite" or "postgresql". */
const char *ks_db_backend_name(const ks_db_t *db);
/**
 * Copy `url` to out with the password of a postgresql:// URL (and a
 * password=... keyword) replaced by "***", for logs and status output.
 */
void ks_db_url_mask(const char *url, char *out, size_t cap);
/** Last error text of the connection; never NULL. */
const char *ks_db_errmsg(const ks_db_t *db);
/** Raw SQLite handle (sqlite3 *) for SQLite-only maintenance; or NULL. */
void *ks_db_sqlite_handle(ks_db_t *db);
/**
 * Re-establish a lost PostgreSQL connection (prepared statements are
 * prepared again on next use). KS_DB_EOK when connected.
 */
KS_DB_WUR int ks_db_reconnect(ks_db_t *db);
/** 1 while the connection is believed usable. */
int ks_db_connected(const ks_db_t *db);

/** Default reconnect window of a PostgreSQL connection (seconds). */
#define KS_DB_TIMEOUT_DEFAULT 30u

/**
 * How long a transaction waits for a lost PostgreSQL connection to come
 * back (seconds; 0: fail at once). While it waits, ks_db_begin_write,
 * ks_db_begin_read, a statement outside a transaction, and a COMMIT whose
 * outcome is unknown reconnect with exponential backoff (100 ms doubling
 * to 5 s). Default KS_DB_TIMEOUT_DEFAULT. No effect on SQLite.
 */
void ks_db_set_timeout(ks_db_t *db, unsigned timeout_s);
/** The reconnect window in milliseconds (see ks_db_set_timeout). */
unsigned ks_db_timeout_ms(const ks_db_t *db);
/** Set the reconnect window in milliseconds (0: fail at once). */
void ks_db_set_timeout_ms(ks_db_t *db, unsigned timeout_ms);

/** Health of a connection, for status displays. */
typedef struct {
	char backend[16];     /* "sqlite" or "postgresql" */
	int connected;        /* 1: usable; 0: lost, reconnecting */
	int64_t since_ms;     /* wall clock (ms) of the last change */
	char last_error[256]; /* the error that lost it ("" when none) */
} ks_db_health_t;

/**
 * Copy the connection's health to *out. Safe from any thread while
 * another thread uses (or waits to reconnect) the connection: it never
 * touches the connection itself.
 */
void ks_db_health(ks_db_t *db, ks_db_health_t *out);

/** Run SQL text that returns no rows (may hold several statements). */
KS_DB_WUR int ks_db_exec(ks_db_t *db, const char *sql);

/*
 * Transactions. begin_write takes the write lock up front (SQLite BEGIN
 * IMMEDIATE; PostgreSQL BEGIN ISOLATION LEVEL SERIALIZABLE) so the
 * transaction sees a stable database; begin_read starts a read-only
 * snapshot (SQLite BEGIN; PostgreSQL REPEATABLE READ READ ONLY).
 */
KS_DB_WUR int ks_db_begin_write(ks_db_t *db);
KS_DB_WUR int ks_db_begin_read(ks_db_t *db);
/**
 * COMMIT. On PostgreSQL a connection lost while the COMMIT was under way
 * leaves its outcome unknown: the layer reconnects (within the timeout,
 * see ks_db_set_timeout) and asks the server what became of the
 * transaction (txid_status), so KS_DB_EOK means durable and KS_DB_ECONN
 * means not committed -- unless the server stayed away for the whole
 * window, which the error message says ("outcome unknown").
 */
KS_DB_WUR int ks_db_commit(ks_db_t *db);
/**
 * Name the row by which the open write transaction can be recognised once
 * committed: an audit row (chain `chain`, place `chain_seq`, row hash
 * `row_hash`). A COMMIT cut off by a lost connection is then resolved by
 * looking for that row once the server is back, not by the transaction id
 * alone: after a crash restart the server may hand a transaction id that
 * never reached its WAL to a new transaction, whose commit txid_status
 * would report. Cleared by COMMIT and ROLLBACK; no effect on SQLite.
 */
void ks_db_set_commit_probe(ks_db_t *db, const char *chain, int64_t chain_seq,
			    const uint8_t row_hash[32]);
/** Roll back the open transaction, if any. */
void ks_db_rollback(ks_db_t *db);
/** 1 when a transaction is open. */
int ks_db_in_tx(ks_db_t *db);
/** SAVEPOINT name / RELEASE name / ROLLBACK TO name + RELEASE name. */
KS_DB_WUR int ks_db_savepoint(ks_db_t *db, const char *name);
KS_DB_WUR int ks_db_release(ks_db_t *db, const char *name);
void ks_db_rollback_to(ks_db_t *db, const char *name);

/**
 * The cached prepared statement for `sql` (reset, bindings cleared). A
 * statement already in use (nested use of the same SQL) gets a private
 * copy. Hand it back with ks_db_finish().
 */
KS_DB_WUR int ks_db_prepare(ks_db_t *db, const char *sql, ks_db_stmt_t **st);
/**
 * Like ks_db_prepare, for a query whose rows are read one at a time
 * without holding the whole result in memory (PostgreSQL: single-row
 * mode). No other statement may run on the connection until it is
 * finished.
 */
KS_DB_WUR int ks_db_prepare_stream(ks_db_t *db, const char *sql,
				   ks_db_stmt_t **st);
/** Reset and return a statement to the cache; NULL-safe; clears *st. */
void ks_db_finish(ks_db_stmt_t **st);

/*
 * Binding (1-based). A failed bind (out of memory, index out of range) is
 * reported by the next ks_db_step(). Text and blob values must stay
 * unchanged until the statement is stepped to completion or finished
 * (SQLite binds without copying).
 */
void ks_db_bind_int64(ks_db_stmt_t *st, int i, int64_t v);
/** NULL s binds SQL NULL. */
void ks_db_bind_text(ks_db_stmt_t *st, int i, const char *s);
/** NULL p binds SQL NULL. */
void ks_db_bind_blob(ks_db_stmt_t *st, int i, const void *p, size_t n);
void ks_db_bind_null(ks_db_stmt_t *st, int i);

/** Run / advance: KS_DB_ROW, KS_DB_DONE or a negative ks_db_err_t. */
KS_DB_WUR int ks_db_step(ks_db_stmt_t *st);

/* Columns of the current row (0-based). */
int ks_db_col_count(ks_db_stmt_t *st);
const char *ks_db_col_name(ks_db_stmt_t *st, int i);
ks_db_type_t ks_db_col_type(ks_db_stmt_t *st, int i);
int64_t ks_db_col_int64(ks_db_stmt_t *st, int i);
/** Text of the column, NULL for SQL NULL; valid until the next step/finish. */
const char *ks_db_col_text(ks_db_stmt_t *st, int i);
/** Bytes of a blob (or text) column; NULL for NULL; see ks_db_col_bytes. */
const uint8_t *ks_db_col_blob(ks_db_stmt_t *st, int i);
size_t ks_db_col_bytes(ks_db_stmt_t *st, int i);

/** ks_db_col_int64 narrowed to int (saturating). */
int ks_db_col_int(ks_db_stmt_t *st, int i);
/** The last negative ks_db_err_t a call on this connection returned. */
int ks_db_last_err(const ks_db_t *db);
/** Id generated by the last INSERT on this connection (rowid / lastval). */
KS_DB_WUR int ks_db_last_id(ks_db_t *db, int64_t *id);
/** Like ks_db_last_id; 0 when it cannot be read. */
int64_t ks_db_last_rowid(ks_db_t *db);
/** Rows changed by the last INSERT/UPDATE/DELETE statement. */
int64_t ks_db_changes(ks_db_t *db);

/** Number of statements in the cache (tests). */
size_t ks_db_cache_size(const ks_db_t *db);

#endif
