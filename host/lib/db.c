/*
 * kiln station library: the database layer (see db.h): URL handling, the
 * per-connection statement cache and dispatch to the backend.
 */
#include "host/lib/db.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host/lib/db_priv.h"

#define CACHE_MAX 256 /* statements kept prepared per connection */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000

int64_t ks_db_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0)
		;
}

void ks_db_health_set(ks_db_t *db, int connected)
{
	pthread_mutex_lock(&db->health_mu);
	if (db->health.connected != connected) {
		db->health.connected = connected;
		db->health.since_ms = ks_db_now_ms();
	}
	if (!connected)
		snprintf(db->health.last_error, sizeof(db->health.last_error),
			 "%.*s", (int)sizeof(db->health.last_error) - 1,
			 db->errmsg);
	pthread_mutex_unlock(&db->health_mu);
}

void ks_db_health(ks_db_t *db, ks_db_health_t *out)
{
	memset(out, 0, sizeof(*out));
	if (db == NULL) {
		snprintf(out->backend, sizeof(out->backend), "none");
		snprintf(out->last_error, sizeof(out->last_error),
			 "no database");
		return;
	}
	pthread_mutex_lock(&db->health_mu);
	*out = db->health;
	pthread_mutex_unlock(&db->health_mu);
}

void ks_db_set_timeout(ks_db_t *db, unsigned timeout_s)
{
	if (db != NULL)
		db->timeout_ms = timeout_s > 86400u ? 86400000u
						    : timeout_s * 1000u;
}

unsigned ks_db_timeout_ms(const ks_db_t *db)
{
	return db != NULL ? db->timeout_ms : 0;
}

void ks_db_set_timeout_ms(ks_db_t *db, unsigned timeout_ms)
{
	if (db != NULL)
		db->timeout_ms = timeout_ms;
}

int ks_db_reconnect_wait(ks_db_t *db)
{
	int64_t deadline = mono_ms() + db->timeout_ms;
	int64_t delay = BACKOFF_FIRST_MS, left;
	int r;

	for (;;) {
		r = db->ops->reconnect(db);
		if (r == KS_DB_EOK) {
			ks_db_health_set(db, 1);
			break;
		}
		ks_db_health_set(db, 0);
		if (r != KS_DB_ECONN)
			break;
		left = deadline - mono_ms();
		if (left <= 0)
			break;
		sleep_ms(delay < left ? delay : left);
		delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
	}
	return r;
}

void ks_db_set_err(ks_db_t *db, const char *fmt, ...)
{
	va_list ap;

	if (db == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
	va_end(ap);
}

ks_db_backend_t ks_db_url_backend(const char *url)
{
	if (url != NULL && (strncmp(url, "postgresql://", 13) == 0 ||
			    strncmp(url, "postgres://", 11) == 0))
		return KS_DB_PG;
	return KS_DB_SQLITE;
}

void ks_db_url_mask(const char *url, char *out, size_t cap)
{
	const char *scheme_end, *at, *colon, *kw;
	size_t n;

	if (cap == 0)
		return;
	out[0] = '\0';
	if (url == NULL)
		return;
	snprintf(out, cap, "%s", url);
	if (ks_db_url_backend(url) != KS_DB_PG)
		return;
	/* postgresql://user:PASSWORD@host/db */
	scheme_end = strstr(url, "://") + 3;
	at = strchr(scheme_end, '@');
	if (at != NULL) {
		colon = memchr(scheme_end, ':', (size_t)(at - scheme_end));
		if (colon != NULL) {
			n = (size_t)(colon - url) + 1;
			snprintf(out, cap, "%.*s***%s", (int)n, url, at);
		}
	}
	/* ...?password=PASSWORD&... */
	kw = strstr(out, "password=");
	if (kw != NULL) {
		const char *end = kw + 9;
		char tail[512];

		while (*end != '\0' && *end != '&')
			end++;
		snprintf(tail, sizeof(tail), "%s", end);
		n = (size_t)(kw - out) + 9;
		if (n + 3 < cap)
			snprintf(out + n, cap - n, "***%s", tail);
	}
}

static int db_open(const char *url, int readonly, ks_db_t **out)
{
	ks_db_t *db;
	const char *target = url;
	int r;

	if (out == NULL)
		return KS_DB_EERROR;
	*out = NULL;
	if (url == NULL || url[0] == '\0')
		return KS_DB_EERROR;
	db = calloc(1, sizeof(*db));
	if (db == NULL)
		return KS_DB_ENOMEM;
	if (pthread_mutex_init(&db->health_mu, NULL) != 0) {
		free(db);
		return KS_DB_ENOMEM;
	}
	db->backend = ks_db_url_backend(url);
	db->readonly = readonly;
	db->timeout_ms = KS_DB_TIMEOUT_DEFAULT * 1000u;
	if (db->backend == KS_DB_PG) {
		db->ops = &ks_db_pg_ops;
	} else {
		db->ops = &ks_db_sqlite_ops;
		if (strncmp(url, "sqlite:", 7) == 0)
			target = url + 7;
	}
	snprintf(db->health.backend, sizeof(db->health.backend), "%s",
		 db->ops->name);
	*out = db;
	r = db->ops->open(db, target);
	ks_db_health_set(db, r == KS_DB_EOK);
	return r;
}

int ks_db_open(const char *url, ks_db_t **out)
{
	return db_open(url, 0, out);
}

int ks_db_open_readonly(const char *url, ks_db_t **out)
{
	return db_open(url, 1, out);
}

static void stmt_free(ks_db_stmt_t *st)
{
	if (st == NULL)
		return;
	if (st->impl != NULL)
		st->db->ops->unprepare(st);
	free(st->sql);
	free(st);
}

void ks_db_close(ks_db_t **pdb)
{
	ks_db_t *db;
	size_t i;

	if (pdb == NULL || *pdb == NULL)
		return;
	db = *pdb;
	*pdb = NULL;
	for (i = 0; i < db->ncache; i++)
		stmt_free(db->cache[i]);
	free(db->cache);
	if (db->ops != NULL)
		db->ops->close(db);
	pthread_mutex_destroy(&db->health_mu);
	free(db);
}

ks_db_backend_t ks_db_backend(const ks_db_t *db)
{
	return db->backend;
}

const char *ks_db_backend_name(const ks_db_t *db)
{
	return db != NULL ? db->ops->name : "none";
}

const char *ks_db_errmsg(const ks_db_t *db)
{
	return db != NULL ? db->errmsg : "no database";
}

void *ks_db_sqlite_handle(ks_db_t *db)
{
	return db->ops->handle(db);
}

int ks_db_reconnect(ks_db_t *db)
{
	int r = db->ops->reconnect(db);

	ks_db_health_set(db, r == KS_DB_EOK);
	return r;
}

int ks_db_connected(const ks_db_t *db)
{
	return db != NULL && db->ops->connected(db);
}

static int note(ks_db_t *db, int r)
{
	if (r < 0)
		db->last_err = r;
	if (r == KS_DB_ECONN)
		ks_db_health_set(db, 0);
	return r;
}

/*
 * Before a new transaction or a statement outside one: a connection known
 * to be lost is re-established first (waiting within the timeout).
 */
static int ensure_conn(ks_db_t *db)
{
	if (db->backend != KS_DB_PG || db->ops->connected(db))
		return KS_DB_EOK;
	return ks_db_reconnect_wait(db);
}

/*
 * Run a transaction start: when it fails because the connection was lost
 * (the server restarted while this connection sat idle, which only the
 * next use reveals), nothing has happened yet, so reconnect and start
 * again once.
 */
static int begin_tx(ks_db_t *db, int write)
{
	const char *sql;
	int r, attempt;

	if (db->backend == KS_DB_PG)
		sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
	else
		sql = write ? "BEGIN IMMEDIATE" : "BEGIN";
	for (attempt = 0; attempt < 2; attempt++) {
		r = ensure_conn(db);
		if (r != KS_DB_EOK)
			break;
		if (write && db->ops->begin_write != NULL)
			r = db->ops->begin_write(db);
		else
			r = db->ops->exec(db, sql);
		if (r != KS_DB_ECONN || db->backend != KS_DB_PG)
			break;
		ks_db_health_set(db, 0);
	}
	if (r == KS_DB_EOK)
		db->tx = 1;
	return note(db, r);
}

int ks_db_last_err(const ks_db_t *db)
{
	return db->last_err != 0 ? db->last_err : KS_DB_EERROR;
}

int ks_db_exec(ks_db_t *db, const char *sql)
{
	return note(db, db->ops->exec(db, sql));
}

int ks_db_begin_write(ks_db_t *db)
{
	/* PostgreSQL (db_pg.c): every write transaction of every station
	 * takes one transaction-scoped advisory lock first, the equivalent of
	 * SQLite's BEGIN IMMEDIATE: writers are serialised, so the
	 * read-check-write sequences of the registry see no concurrent
	 * writer, and unique constraints remain the database's last word. */
	return begin_tx(db, 1);
}

int ks_db_begin_read(ks_db_t *db)
{
	return begin_tx(db, 0);
}

void ks_db_set_commit_probe(ks_db_t *db, const char *chain, int64_t chain_seq,
			    const uint8_t row_hash[32])
{
	if (db == NULL || chain == NULL || row_hash == NULL ||
	    strlen(chain) >= sizeof(db->probe_text))
		return;
	snprintf(db->probe_text, sizeof(db->probe_text), "%s", chain);
	db->probe_int = chain_seq;
	memcpy(db->probe_blob, row_hash, sizeof(db->probe_blob));
	db->probe_set = 1;
}

int ks_db_commit(ks_db_t *db)
{
	int r;

	if (db->ops->commit != NULL)
		r = db->ops->commit(db);
	else
		r = db->ops->exec(db, "COMMIT");
	if (r == KS_DB_EOK || !db->ops->in_tx(db))
		db->tx = 0;
	db->probe_set = 0;
	return note(db, r);
}

void ks_db_rollback(ks_db_t *db)
{
	if (db->ops->in_tx(db))
		(void)db->ops->exec(db, "ROLLBACK");
	db->tx = 0;
	db->probe_set = 0;
}

int ks_db_in_tx(ks_db_t *db)
{
	return db->ops->in_tx(db);
}

int ks_db_savepoint(ks_db_t *db, const char *name)
{
	char sql[96];

	snprintf(sql, sizeof(sql), "SAVEPOINT %s", name);
	return db->ops->exec(db, sql);
}

int ks_db_release(ks_db_t *db, const char *name)
{
	char sql[96];

	snprintf(sql, sizeof(sql), "RELEASE %s", name);
	return db->ops->exec(db, sql);
}

void ks_db_rollback_to(ks_db_t *db, const char *name)
{
	char sql[160];

	snprintf(sql, sizeof(sql), "ROLLBACK TO %s; RELEASE %s", name, name);
	(void)db->ops->exec(db, sql);
}

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (uint8_t)*s;
		h *= 16777619u;
	}
	return h;
}

static int stmt_new(ks_db_t *db, const char *sql, uint32_t hash, int cached,
		    ks_db_stmt_t **out)
{
	ks_db_stmt_t *st = calloc(1, sizeof(*st));
	int r;

	*out = NULL;
	if (st == NULL)
		return KS_DB_ENOMEM;
	st->db = db;
	st->hash = hash;
	st->cached = cached;
	st->sql = strdup(sql);
	if (st->sql == NULL) {
		free(st);
		return KS_DB_ENOMEM;
	}
	r = db->ops->prepare(st);
	if (r != KS_DB_EOK) {
		stmt_free(st);
		return r;
	}
	*out = st;
	return KS_DB_EOK;
}

static int prepare(ks_db_t *db, const char *sql, int stream,
		   ks_db_stmt_t **out)
{
	ks_db_stmt_t *st = NULL;
	uint32_t h;
	size_t i;
	int r;

	if (out == NULL)
		return KS_DB_EERROR;
	*out = NULL;
	if (db == NULL || sql == NULL)
		return KS_DB_EERROR;
	h = fnv1a(sql);
	for (i = 0; i < db->ncache; i++) {
		ks_db_stmt_t *c = db->cache[i];

		if (c->hash == h && strcmp(c->sql, sql) == 0) {
			if (!c->in_use)
				st = c;
			break;
		}
	}
	if (st == NULL && i == db->ncache && db->ncache < CACHE_MAX) {
		if (db->ncache == db->cache_cap) {
			size_t cap = db->cache_cap ? db->cache_cap * 2 : 32;
			ks_db_stmt_t **p = realloc(db->cache,
						   cap * sizeof(*p));

			if (p == NULL)
				return KS_DB_ENOMEM;
			db->cache = p;
			db->cache_cap = cap;
		}
		r = stmt_new(db, sql, h, 1, &st);
		if (r != KS_DB_EOK)
			return r;
		db->cache[db->ncache++] = st;
	} else if (st == NULL) {
		/* nested use of the same SQL, or a full cache: a private one */
		r = stmt_new(db, sql, h, 0, &st);
		if (r != KS_DB_EOK)
			return r;
	}
	st->in_use = 1;
	st->stream = stream;
	st->stepped = 0;
	st->bind_err = 0;
	*out = st;
	return KS_DB_EOK;
}

int ks_db_prepare(ks_db_t *db, const char *sql, ks_db_stmt_t **st)
{
	if (db != NULL && !db->tx && ensure_conn(db) != KS_DB_EOK) {
		if (st != NULL)
			*st = NULL;
		return note(db, KS_DB_ECONN);
	}
	return note(db, prepare(db, sql, 0, st));
}

int ks_db_prepare_stream(ks_db_t *db, const char *sql, ks_db_stmt_t **st)
{
	if (db != NULL && !db->tx && ensure_conn(db) != KS_DB_EOK) {
		if (st != NULL)
			*st = NULL;
		return note(db, KS_DB_ECONN);
	}
	return note(db, prepare(db, sql, 1, st));
}

void ks_db_finish(ks_db_stmt_t **pst)
{
	ks_db_stmt_t *st;

	if (pst == NULL || *pst == NULL)
		return;
	st = *pst;
	*pst = NULL;
	st->db->ops->reset(st);
	st->in_use = 0;
	st->stream = 0;
	st->stepped = 0;
	st->bind_err = 0;
	if (!st->cached)
		stmt_free(st);
}

void ks_db_bind_int64(ks_db_stmt_t *st, int i, int64_t v)
{
	st->db->ops->bind_int64(st, i, v);
}

void ks_db_bind_text(ks_db_stmt_t *st, int i, const char *s)
{
	if (s == NULL)
		st->db->ops->bind_null(st, i);
	else
		st->db->ops->bind_text(st, i, s);
}

void ks_db_bind_blob(ks_db_stmt_t *st, int i, const void *p, size_t n)
{
	if (p == NULL)
		st->db->ops->bind_null(st, i);
	else
		st->db->ops->bind_blob(st, i, p, n);
}

void ks_db_bind_null(ks_db_stmt_t *st, int i)
{
	st->db->ops->bind_null(st, i);
}

/* A query that only reads: safe to run again after a reconnect. */
static int is_select(const char *sql)
{
	while (*sql == ' ' || *sql == '\t' || *sql == '\n')
		sql++;
	return strncmp(sql, "SELECT", 6) == 0 || strncmp(sql, "select", 6) == 0;
}

int ks_db_step(ks_db_stmt_t *st)
{
	ks_db_t *db = st->db;
	int first = !st->stepped;
	int r;

	if (st->bind_err != 0)
		return note(db, st->bind_err);
	st->stepped = 1;
	r = db->ops->step(st);
	/* a read outside a transaction on a connection that died while
	 * idle: nothing was done, so reconnect and read again once */
	if (r == KS_DB_ECONN && first && !db->tx && db->backend == KS_DB_PG &&
	    is_select(st->sql)) {
		ks_db_health_set(db, 0);
		db->ops->rewind(st);
		if (ks_db_reconnect_wait(db) == KS_DB_EOK)
			r = db->ops->step(st);
	}
	return note(db, r);
}

int ks_db_col_count(ks_db_stmt_t *st)
{
	return st->db->ops->col_count(st);
}

const char *ks_db_col_name(ks_db_stmt_t *st, int i)
{
	const char *n = st->db->ops->col_name(st, i);

	return n != NULL ? n : "";
}

ks_db_type_t ks_db_col_type(ks_db_stmt_t *st, int i)
{
	return st->db->ops->col_type(st, i);
}

int64_t ks_db_col_int64(ks_db_stmt_t *st, int i)
{
	return st->db->ops->col_int64(st, i);
}

const char *ks_db_col_text(ks_db_stmt_t *st, int i)
{
	return st->db->ops->col_text(st, i);
}

const uint8_t *ks_db_col_blob(ks_db_stmt_t *st, int i)
{
	return st->db->ops->col_blob(st, i);
}

size_t ks_db_col_bytes(ks_db_stmt_t *st, int i)
{
	return st->db->ops->col_bytes(st, i);
}

int ks_db_col_int(ks_db_stmt_t *st, int i)
{
	int64_t v = ks_db_col_int64(st, i);

	if (v > INT32_MAX)
		return INT32_MAX;
	if (v < INT32_MIN)
		return INT32_MIN;
	return (int)v;
}

int ks_db_last_id(ks_db_t *db, int64_t *id)
{
	return note(db, db->ops->last_id(db, id));
}

int64_t ks_db_last_rowid(ks_db_t *db)
{
	int64_t id = 0;

	if (ks_db_last_id(db, &id) != KS_DB_EOK)
		return 0;
	return id;
}

int64_t ks_db_changes(ks_db_t *db)
{
	return db->ops->changes(db);
}

size_t ks_db_cache_size(const ks_db_t *db)
{
	return db != NULL ? db->ncache : 0;
}
