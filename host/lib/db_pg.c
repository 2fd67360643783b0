/*
 * kiln station library: the PostgreSQL backend of the database layer
 * (libpq). `?` / `?N` placeholders are rewritten to `$n`; statements are
 * prepared per connection under generated names and prepared again after
 * a reconnect. Parameters: integers and text in text format, blobs as
 * binary BYTEA. Results come in text format; BYTEA columns are decoded
 * with PQunescapeBytea, booleans read as 1/0.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "host/lib/db_priv.h"

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700
#define MAX_PARAMS 64

typedef struct {
	PGconn *conn;
	char *conninfo;
	int64_t changes;
	char xid[32]; /* txid_current() of the open write transaction */
	int lost;     /* the socket failed though PQstatus still says OK */
} pg_conn_t;

typedef struct {
	char name[32];
	unsigned gen;       /* connection generation it was prepared on */
	char *text;         /* SQL with $n placeholders */
	int nparams;
	char *vals[MAX_PARAMS];
	int lens[MAX_PARAMS];
	int fmts[MAX_PARAMS];
	PGresult *res;
	int row;            /* current row in res, -1 before the first */
	int started;
	int done;
	uint8_t **dec;      /* decoded BYTEA per column of the current row */
	size_t *declen;
	int ndec;
} pg_stmt_t;

static pg_conn_t *C(const ks_db_t *db)
{
	return (pg_conn_t *)db->impl;
}

static pg_stmt_t *P(const ks_db_stmt_t *st)
{
	return (pg_stmt_t *)st->impl;
}

/* Classify an error from a result (may be NULL) and the connection. */
/*
 * The connection is usable: libpq says so and no failed read or write
 * showed it dead. (libpq leaves the status CONNECTION_OK when recv()
 * fails with ECONNRESET -- a server stopped with -m immediate, whose
 * backends send a WARNING and reset the socket -- so its word alone does
 * not do.)
 */
static int conn_ok(const pg_conn_t *c)
{
	return c != NULL && c->conn != NULL && !c->lost &&
	       PQstatus(c->conn) == CONNECTION_OK;
}

static int err(ks_db_t *db, const PGresult *res)
{
	const char *state = res != NULL
				    ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				    : NULL;
	const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
	size_t n;

	if (msg == NULL || msg[0] == '\0')
		msg = C(db)->conn != NULL ? PQerrorMessage(C(db)->conn)
					  : "no connection";
	ks_db_set_err(db, "%s", msg);
	n = strlen(db->errmsg);
	while (n > 0 && (db->errmsg[n - 1] == '\n' || db->errmsg[n - 1] == ' '))
		db->errmsg[--n] = '\0';
	if (!conn_ok(C(db)))
		return KS_DB_ECONN;
	if (state == NULL) {
		/* an error of libpq's own, not the server's: a connection
		 * that cannot even take in what is waiting is lost */
		if (PQconsumeInput(C(db)->conn) == 0) {
			C(db)->lost = 1;
			return KS_DB_ECONN;
		}
		return KS_DB_EERROR;
	}
	if (strcmp(state, "23505") == 0)
		return KS_DB_ECONSTRAINT;
	if (strncmp(state, "23", 2) == 0 || strcmp(state, "P0001") == 0)
		return KS_DB_ECHECK;
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
	    strcmp(state, "55P03") == 0)
		return KS_DB_ERETRY;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0) {
		/* connection exception, or the server shutting down: this
		 * connection is gone even if libpq has not noticed yet */
		C(db)->lost = 1;
		return KS_DB_ECONN;
	}
	if (strcmp(state, "53200") == 0)
		return KS_DB_ENOMEM;
	return KS_DB_EERROR;
}

static int session_setup(ks_db_t *db)
{
	PGresult *res;
	int r = KS_DB_EOK;

	/* durable commits whatever the server default; quiet NOTICEs */
	res = PQexec(C(db)->conn, "SET synchronous_commit = on; "
				  "SET client_min_messages = warning");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		r = err(db, res);
	PQclear(res);
	return r;
}

static int connect_now(ks_db_t *db)
{
	pg_conn_t *c = C(db);

	if (c->conn != NULL)
		PQfinish(c->conn);
	c->lost = 0;
	c->conn = PQconnectdb(c->conninfo);
	if (c->conn == NULL) {
		ks_db_set_err(db, "out of memory connecting");
		return KS_DB_ENOMEM;
	}
	if (PQstatus(c->conn) != CONNECTION_OK) {
		ks_db_set_err(db, "%s", PQerrorMessage(c->conn));
		return KS_DB_ECONN;
	}
	db->gen++;
	return session_setup(db);
}

static int p_open(ks_db_t *db, const char *url)
{
	pg_conn_t *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return KS_DB_ENOMEM;
	db->impl = c;
	c->conninfo = strdup(url);
	if (c->conninfo == NULL)
		return KS_DB_ENOMEM;
	return connect_now(db);
}

static void p_close(ks_db_t *db)
{
	pg_conn_t *c = C(db);

	if (c == NULL)
		return;
	if (c->conn != NULL)
		PQfinish(c->conn);
	if (c->conninfo != NULL) {
		/* the connection string may carry a password */
		memset(c->conninfo, 0, strlen(c->conninfo));
		free(c->conninfo);
	}
	free(c);
	db->impl = NULL;
}

static int p_exec(ks_db_t *db, const char *sql)
{
	PGresult *res;
	ExecStatusType s;
	int r = KS_DB_EOK;

	if (C(db)->conn == NULL)
		return err(db, NULL);
	res = PQexec(C(db)->conn, sql);
	s = PQresultStatus(res);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		r = err(db, res);
	PQclear(res);
	return r;
}

/* Rewrite ? and ?N to $n outside quotes; counts parameters. */
static char *rewrite(const char *sql, int *nparams)
{
	size_t len = strlen(sql);
	char *out = malloc(len * 4 + 1);
	char *o = out;
	const char *p;
	int seq = 0, max = 0;
	char quote = 0;

	if (out == NULL)
		return NULL;
	for (p = sql; *p != '\0'; p++) {
		if (quote != 0) {
			if (*p == quote)
				quote = 0;
			*o++ = *p;
			continue;
		}
		if (*p == '\'' || *p == '"') {
			quote = *p;
			*o++ = *p;
			continue;
		}
		if (*p != '?') {
			*o++ = *p;
			continue;
		}
		if (isdigit((unsigned char)p[1])) {
			int n = 0;

			while (isdigit((unsigned char)p[1]) && n < 1000) {
				n = n * 10 + (p[1] - '0');
				p++;
			}
			if (n > max)
				max = n;
			o += sprintf(o, "$%d", n);
		} else {
			seq++;
			if (seq > max)
				max = seq;
			o += sprintf(o, "$%d", seq);
		}
	}
	*o = '\0';
	*nparams = max;
	return out;
}

static int do_prepare(ks_db_stmt_t *st)
{
	pg_stmt_t *s = P(st);
	PGresult *res;
	int r = KS_DB_EOK;

	if (C(st->db)->conn == NULL)
		return err(st->db, NULL);
	snprintf(s->name, sizeof(s->name), "ks%u", st->db->next_name++);
	res = PQprepare(C(st->db)->conn, s->name, s->text, s->nparams, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		r = err(st->db, res);
		if (r != KS_DB_ECONN)
			ks_db_set_err(st->db, "%.*s: %s", 300,
				      PQresultErrorMessage(res), st->sql);
	} else {
		s->gen = st->db->gen;
	}
	PQclear(res);
	return r;
}

static int p_prepare(ks_db_stmt_t *st)
{
	pg_stmt_t *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return KS_DB_ENOMEM;
	st->impl = s;
	s->row = -1;
	s->text = rewrite(st->sql, &s->nparams);
	if (s->text == NULL)
		return KS_DB_ENOMEM;
	if (s->nparams > MAX_PARAMS) {
		ks_db_set_err(st->db, "too many parameters: %s", st->sql);
		return KS_DB_EERROR;
	}
	return do_prepare(st);
}

static void clear_dec(pg_stmt_t *s)
{
	int i;

	for (i = 0; i < s->ndec; i++) {
		if (s->dec[i] != NULL)
			PQfreemem(s->dec[i]);
		s->dec[i] = NULL;
		s->declen[i] = 0;
	}
}

static void p_rewind(ks_db_stmt_t *st)
{
	pg_stmt_t *s = P(st);
	PGresult *res;

	if (s == NULL)
		return;
	clear_dec(s);
	PQclear(s->res);
	s->res = NULL;
	if (st->stream && s->started && !s->done && C(st->db)->conn != NULL) {
		/* drain an unfinished single-row stream */
		while ((res = PQgetResult(C(st->db)->conn)) != NULL)
			PQclear(res);
	}
	s->row = -1;
	s->started = 0;
	s->done = 0;
}

static void p_reset(ks_db_stmt_t *st)
{
	pg_stmt_t *s = P(st);
	int i;

	if (s == NULL)
		return;
	p_rewind(st);
	for (i = 0; i < MAX_PARAMS; i++) {
		free(s->vals[i]);
		s->vals[i] = NULL;
		s->lens[i] = 0;
		s->fmts[i] = 0;
	}
}

static void p_unprepare(ks_db_stmt_t *st)
{
	pg_stmt_t *s = P(st);
	char sql[64];
	PGresult *res;

	if (s == NULL)
		return;
	p_reset(st);
	if (s->gen == st->db->gen && s->name[0] != '\0' &&
	    conn_ok(C(st->db)) &&
	    PQtransactionStatus(C(st->db)->conn) == PQTRANS_IDLE) {
		snprintf(sql, sizeof(sql), "DEALLOCATE %s", s->name);
		res = PQexec(C(st->db)->conn, sql);
		PQclear(res);
	}
	free(s->dec);
	free(s->declen);
	free(s->text);
	free(s);
	st->impl = NULL;
}

static int set_param(ks_db_stmt_t *st, int i, char *v, int len, int fmt)
{
	pg_stmt_t *s = P(st);

	if (i < 1 || i > s->nparams) {
		free(v);
		if (st->bind_err == 0) {
			st->bind_err = KS_DB_EERROR;
			ks_db_set_err(st->db, "parameter %d out of range: %s", i,
				      st->sql);
		}
		return -1;
	}
	free(s->vals[i - 1]);
	s->vals[i - 1] = v;
	s->lens[i - 1] = len;
	s->fmts[i - 1] = fmt;
	return 0;
}

static void p_bind_int64(ks_db_stmt_t *st, int i, int64_t v)
{
	char *t = malloc(24);

	if (t == NULL) {
		if (st->bind_err == 0)
			st->bind_err = KS_DB_ENOMEM;
		return;
	}
	snprintf(t, 24, "%" PRId64, v);
	(void)set_param(st, i, t, 0, 0);
}

static void p_bind_text(ks_db_stmt_t *st, int i, const char *v)
{
	char *t = strdup(v);

	if (t == NULL) {
		if (st->bind_err == 0)
			st->bind_err = KS_DB_ENOMEM;
		return;
	}
	(void)set_param(st, i, t, 0, 0);
}

static void p_bind_blob(ks_db_stmt_t *st, int i, const void *p, size_t n)
{
	char *t;

	if (n > 0x7fffffff) {
		if (st->bind_err == 0)
			st->bind_err = KS_DB_EERROR;
		return;
	}
	t = malloc(n + 1);
	if (t == NULL) {
		if (st->bind_err == 0)
			st->bind_err = KS_DB_ENOMEM;
		return;
	}
	memcpy(t, p, n);
	(void)set_param(st, i, t, (int)n, 1);
}

static void p_bind_null(ks_db_stmt_t *st, int i)
{
	(void)set_param(st, i, NULL, 0, 0);
}

static int ensure_dec(pg_stmt_t *s, int ncol)
{
	if (s->ndec >= ncol)
		return 0;
	free(s->dec);
	free(s->declen);
	s->dec = calloc((size_t)ncol, sizeof(*s->dec));
	s->declen = calloc((size_t)ncol, sizeof(*s->declen));
	if (s->dec == NULL || s->declen == NULL) {
		s->ndec = 0;
		return -1;
	}
	s->ndec = ncol;
	return 0;
}

static int start(ks_db_stmt_t *st)
{
	pg_stmt_t *s = P(st);
	PGconn *conn = C(st->db)->conn;
	ExecStatusType es;
	int r;

	if (!conn_ok(C(st->db)))
		return err(st->db, NULL);
	if (s->gen != st->db->gen) {
		r = do_prepare(st);
		if (r != KS_DB_EOK)
			return r;
	}
	s->started = 1;
	if (st->stream) {
		if (!PQsendQueryPrepared(conn, s->name, s->nparams,
					 (const char *const *)s->vals, s->lens,
					 s->fmts, 0) ||
		    !PQsetSingleRowMode(conn)) {
			s->done = 1;
			return err(st->db, NULL);
		}
		return KS_DB_EOK;
	}
	s->res = PQexecPrepared(conn, s->name, s->nparams,
				(const char *const *)s->vals, s->lens, s->fmts,
				0);
	es = PQresultStatus(s->res);
	if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK) {
		s->done = 1;
		return err(st->db, s->res);
	}
	{
		const char *ct = PQcmdTuples(s->res);

		C(st->db)->changes = (ct != NULL && ct[0] != '\0')
					     ? strtoll(ct, NULL, 10)
					     : 0;
	}
	if (ensure_dec(s, PQnfields(s->res)) != 0)
		return KS_DB_ENOMEM;
	return KS_DB_EOK;
}

static int p_step(ks_db_stmt_t *st)
{
	pg_stmt_t *s = P(st);
	int r;

	if (s->done)
		return KS_DB_DONE;
	clear_dec(s);
	if (!s->started) {
		r = start(st);
		if (r != KS_DB_EOK)
			return r;
	}
	if (st->stream) {
		PGresult *res;
		ExecStatusType es;

		PQclear(s->res);
		s->res = NULL;
		res = PQgetResult(C(st->db)->conn);
		es = PQresultStatus(res);
		if (res != NULL && es == PGRES_SINGLE_TUPLE) {
			s->res = res;
			s->row = 0;
			if (ensure_dec(s, PQnfields(res)) != 0)
				return KS_DB_ENOMEM;
			return KS_DB_ROW;
		}
		s->done = 1;
		r = KS_DB_DONE;
		if (res == NULL || (es != PGRES_TUPLES_OK &&
				    es != PGRES_COMMAND_OK))
			r = err(st->db, res);
		PQclear(res);
		while ((res = PQgetResult(C(st->db)->conn)) != NULL)
			PQclear(res);
		return r;
	}
	s->row++;
	if (s->row >= PQntuples(s->res)) {
		s->done = 1;
		return KS_DB_DONE;
	}
	return KS_DB_ROW;
}

static int valid(ks_db_stmt_t *st, int i)
{
	pg_stmt_t *s = P(st);

	return s->res != NULL && s->row >= 0 && s->row < PQntuples(s->res) &&
	       i >= 0 && i < PQnfields(s->res);
}

static int p_col_count(ks_db_stmt_t *st)
{
	pg_stmt_t *s = P(st);

	if (s->res == NULL && !s->started && start(st) != KS_DB_EOK)
		return 0;
	return s->res != NULL ? PQnfields(s->res) : 0;
}

static const char *p_col_name(ks_db_stmt_t *st, int i)
{
	pg_stmt_t *s = P(st);

	return s->res != NULL ? PQfname(s->res, i) : NULL;
}

static ks_db_type_t p_col_type(ks_db_stmt_t *st, int i)
{
	pg_stmt_t *s = P(st);

	if (!valid(st, i) || PQgetisnull(s->res, s->row, i))
		return KS_DB_T_NULL;
	switch (PQftype(s->res, i)) {
	case OID_BOOL:
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID:
	case OID_NUMERIC:
		return KS_DB_T_INT;
	case OID_FLOAT4:
	case OID_FLOAT8:
		return KS_DB_T_FLOAT;
	case OID_BYTEA:
		return KS_DB_T_BLOB;
	default:
		return KS_DB_T_TEXT;
	}
}

static int64_t p_col_int64(ks_db_stmt_t *st, int i)
{
	pg_stmt_t *s = P(st);
	const char *v;

	if (!valid(st, i) || PQgetisnull(s->res, s->row, i))
		return 0;
	v = PQgetvalue(s->res, s->row, i);
	if (PQftype(s->res, i) == OID_BOOL)
		return v[0] == 't' ? 1 : 0;
	return strtoll(v, NULL, 10);
}

static const char *p_col_text(ks_db_stmt_t *st, int i)
{
	pg_stmt_t *s = P(st);

	if (!valid(st, i) || PQgetisnull(s->res, s->row, i))
		return NULL;
	if (PQftype(s->res, i) == OID_BOOL)
		return PQgetvalue(s->res, s->row, i)[0] == 't' ? "1" : "0";
	return PQgetvalue(s->res, s->row, i);
}

static const uint8_t *p_col_blob(ks_db_stmt_t *st, int i)
{
	pg_stmt_t *s = P(st);

	if (!valid(st, i) || PQgetisnull(s->res, s->row, i))
		return NULL;
	if (PQftype(s->res, i) != OID_BYTEA)
		return (const uint8_t *)PQgetvalue(s->res, s->row, i);
	if (i < s->ndec && s->dec[i] == NULL)
		s->dec[i] = PQunescapeBytea(
			(const unsigned char *)PQgetvalue(s->res, s->row, i),
			&s->declen[i]);
	return i < s->ndec ? s->dec[i] : NULL;
}

static size_t p_col_bytes(ks_db_stmt_t *st, int i)
{
	pg_stmt_t *s = P(st);

	if (!valid(st, i) || PQgetisnull(s->res, s->row, i))
		return 0;
	if (PQftype(s->res, i) != OID_BYTEA)
		return (size_t)PQgetlength(s->res, s->row, i);
	if (p_col_blob(st, i) == NULL)
		return 0;
	return s->declen[i];
}

static int p_last_id(ks_db_t *db, int64_t *id)
{
	PGresult *res;
	int r = KS_DB_EOK;

	*id = 0;
	res = PQexec(C(db)->conn, "SELECT lastval()");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		*id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	else
		r = err(db, res);
	PQclear(res);
	return r;
}

static int64_t p_changes(ks_db_t *db)
{
	return C(db)->changes;
}

static int p_reconnect(ks_db_t *db)
{
	if (conn_ok(C(db)))
		return KS_DB_EOK;
	return connect_now(db);
}

static int p_connected(const ks_db_t *db)
{
	return conn_ok(C(db));
}

static int p_in_tx(ks_db_t *db)
{
	PGTransactionStatusType t;

	if (!conn_ok(C(db)))
		return 0; /* a transaction on a lost connection is gone */
	t = PQtransactionStatus(C(db)->conn);
	return t == PQTRANS_INTRANS || t == PQTRANS_INERROR ||
	       t == PQTRANS_ACTIVE;
}

/*
 * BEGIN for writing: the line-wide advisory lock (writers serialised like
 * SQLite's BEGIN IMMEDIATE) and the transaction id, kept so that a COMMIT
 * cut off by a lost connection can be resolved afterwards.
 */
static int p_begin_write(ks_db_t *db)
{
	pg_conn_t *c = C(db);
	PGresult *res;
	int r = KS_DB_EOK;

	c->xid[0] = '\0';
	if (c->conn == NULL)
		return err(db, NULL);
	res = PQexec(c->conn, "BEGIN ISOLATION LEVEL READ COMMITTED; "
			      "SELECT pg_advisory_xact_lock(7306878), "
			      "txid_current()");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    PQnfields(res) == 2)
		snprintf(c->xid, sizeof(c->xid), "%s", PQgetvalue(res, 0, 1));
	else
		r = err(db, res);
	PQclear(res);
	return r;
}

/*
 * What became of transaction xid: 1 committed, 0 not, -1 unknown yet (in
 * progress, or no answer), -2 the server refused the question (an id it
 * has not handed out yet after a crash restart).
 */
static int xid_outcome(ks_db_t *db, const char *xid)
{
	const char *param[1] = {xid};
	PGresult *res;
	int r = -1;

	res = PQexecParams(C(db)->conn, "SELECT txid_status($1::bigint)", 1,
			   NULL, param, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		const char *v = PQgetisnull(res, 0, 0) ? "aborted"
						       : PQgetvalue(res, 0, 0);

		r = strcmp(v, "committed") == 0 ? 1
		    : strcmp(v, "in progress") == 0 ? -1 : 0;
	} else if (PQresultStatus(res) == PGRES_FATAL_ERROR && p_connected(db)) {
		r = -2;
	}
	PQclear(res);
	return r;
}

/*
 * Whether the audit row named by the commit probe is there: 1 yes, 0 no,
 * -1 cannot tell (the connection failed again).
 */
static int probe_outcome(ks_db_t *db)
{
	char seq[24];
	const char *param[3] = {db->probe_text, seq, (const char *)db->probe_blob};
	const int len[3] = {0, 0, (int)sizeof(db->probe_blob)};
	const int fmt[3] = {0, 0, 1};
	PGresult *res;
	int r = -1;

	snprintf(seq, sizeof(seq), "%lld", (long long)db->probe_int);
	res = PQexecParams(C(db)->conn,
			   "SELECT count(*) FROM audit WHERE chain = $1 AND "
			   "chain_seq = $2::bigint AND row_hash = $3::bytea",
			   3, NULL, param, len, fmt, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		r = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
	PQclear(res);
	return r;
}

static int p_commit(ks_db_t *db)
{
	pg_conn_t *c = C(db);
	char xid[sizeof(c->xid)];
	int r, outcome = -1, tries;

	r = p_exec(db, "COMMIT");
	snprintf(xid, sizeof(xid), "%s", c->xid);
	c->xid[0] = '\0';
	if (r != KS_DB_ECONN || xid[0] == '\0')
		return r;
	/* The connection went away while COMMIT was under way: the server
	 * may or may not have committed. Ask it once it is back. */
	ks_db_health_set(db, 0);
	for (tries = 0; tries < 50 && outcome < 0; tries++) {
		if (ks_db_reconnect_wait(db) != KS_DB_EOK)
			break;
		outcome = xid_outcome(db, xid);
		/* "committed" may be another transaction's that was given
		 * the same id after a crash restart: the row it wrote says */
		if ((outcome == 1 || outcome == -2) && db->probe_set)
			outcome = probe_outcome(db);
		else if (outcome == -2)
			outcome = -1;
		if (outcome < 0 && p_connected(db)) {
			/* its old server process has not noticed yet */
			struct timespec ts = {0, 100000000L};

			nanosleep(&ts, NULL);
		}
	}
	if (outcome == 1) {
		ks_db_set_err(db, "connection lost during COMMIT; transaction "
				  "%s was committed", xid);
		return KS_DB_EOK;
	}
	if (outcome == 0)
		ks_db_set_err(db, "connection lost during COMMIT; transaction "
				  "%s was rolled back", xid);
	else
		ks_db_set_err(db, "connection lost during COMMIT; outcome of "
				  "transaction %s unknown (server unreachable)",
			      xid);
	return KS_DB_ECONN;
}

static void *p_handle(ks_db_t *db)
{
	(void)db;
	return NULL;
}

const ks_db_ops_t ks_db_pg_ops = {
	.name = "postgresql",
	.open = p_open,
	.close = p_close,
	.exec = p_exec,
	.prepare = p_prepare,
	.unprepare = p_unprepare,
	.reset = p_reset,
	.bind_int64 = p_bind_int64,
	.bind_text = p_bind_text,
	.bind_blob = p_bind_blob,
	.bind_null = p_bind_null,
	.step = p_step,
	.col_count = p_col_count,
	.col_name = p_col_name,
	.col_type = p_col_type,
	.col_int64 = p_col_int64,
	.col_text = p_col_text,
	.col_blob = p_col_blob,
	.col_bytes = p_col_bytes,
	.last_id = p_last_id,
	.changes = p_changes,
	.reconnect = p_reconnect,
	.connected = p_connected,
	.in_tx = p_in_tx,
	.handle = p_handle,
	.begin_write = p_begin_write,
	.commit = p_commit,
	.rewind = p_rewind,
};
