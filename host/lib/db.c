/*
 * kiln station library: the database layer (see db.h): URL handling, the
 * per-connection statement cache and dispatch to the backend.
 */
#include "host/lib/db.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/lib/db_priv.h"

#define CACHE_MAX 256 /* statements kept prepared per connection */

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
	db->backend = ks_db_url_backend(url);
	db->readonly = readonly;
	if (db->backend == KS_DB_PG) {
		db->ops = &ks_db_pg_ops;
	} else {
		db->ops = &ks_db_sqlite_ops;
		if (strncmp(url, "sqlite:", 7) == 0)
			target = url + 7;
	}
	*out = db;
	r = db->ops->open(db, target);
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
	return db->ops->reconnect(db);
}

int ks_db_connected(const ks_db_t *db)
{
	return db != NULL && db->ops->connected(db);
}

static int note(ks_db_t *db, int r)
{
	if (r < 0)
		db->last_err = r;
	return r;
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
	int r;

	/* PostgreSQL: every write transaction of every station takes one
	 * transaction-scoped advisory lock first, the equivalent of SQLite's
	 * BEGIN IMMEDIATE: writers are serialised, so the read-check-write
	 * sequences of the registry see no concurrent writer, and unique
	 * constraints remain the database's last word. */
	if (db->backend == KS_DB_PG)
		r = db->ops->exec(db, "BEGIN ISOLATION LEVEL READ COMMITTED; "
				      "SELECT pg_advisory_xact_lock(7306878)");
	else
		r = db->ops->exec(db, "BEGIN IMMEDIATE");
	if (r == KS_DB_EOK)
		db->tx = 1;
	return r;
}

int ks_db_begin_read(ks_db_t *db)
{
	int r;

	if (db->backend == KS_DB_PG)
		r = db->ops->exec(db, "BEGIN ISOLATION LEVEL REPEATABLE READ "
				      "READ ONLY");
	else
		r = db->ops->exec(db, "BEGIN");
	if (r == KS_DB_EOK)
		db->tx = 1;
	return r;
}

int ks_db_commit(ks_db_t *db)
{
	int r = db->ops->exec(db, "COMMIT");

	if (r == KS_DB_EOK)
		db->tx = 0;
	return r;
}

void ks_db_rollback(ks_db_t *db)
{
	if (db->ops->in_tx(db))
		(void)db->ops->exec(db, "ROLLBACK");
	db->tx = 0;
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
	st->bind_err = 0;
	*out = st;
	return KS_DB_EOK;
}

int ks_db_prepare(ks_db_t *db, const char *sql, ks_db_stmt_t **st)
{
	return note(db, prepare(db, sql, 0, st));
}

int ks_db_prepare_stream(ks_db_t *db, const char *sql, ks_db_stmt_t **st)
{
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

int ks_db_step(ks_db_stmt_t *st)
{
	if (st->bind_err != 0)
		return note(st->db, st->bind_err);
	return note(st->db, st->db->ops->step(st));
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
