/*
 * kiln registry migrate --from sqlite:FILE --to postgresql://... [--ca
 * CHAIN.pem --station-pub PUB.pem]: move a station's records from its
 * SQLite registry into a (shared) PostgreSQL registry.
 *
 * The source file is never written: it is copied (SQLite online backup)
 * to a temporary file, which the registry opens once so the copy carries
 * every migration of this build. The target gets the same migrations by
 * opening it as a registry. Then, in ONE transaction on the target, every
 * table of the source is copied in foreign-key order with the column list
 * read from the schema (so new migrations need no change here); foreign
 * keys that point forward (devices.cert_id -> certificates) are filled in
 * after the rows they name exist. Rows keep their ids, so audit rows,
 * which hash their session ids, stay byte-identical; identity sequences
 * are moved past the copied ids. A row keyed by text that is already
 * there (the station's registration: kept; meta values and a prefix's
 * serial counter: take the source's values) is not a conflict; any other
 * row already there (same id, UID, serial, key) stops the move, which
 * then changes nothing.
 *
 * Sequences of integer columns (whatever the table's key: serial_blocks
 * has a composite one) are moved past the largest copied value.
 *
 * Afterwards every table's row count, the audit log row by row (row and
 * previous hashes, station chain and place in it) and every chain's head
 * (audit_heads) are compared between the source and the target, and with
 * --ca (and --station-pub) the full audit verification runs on the target.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "host/kiln/kiln.h"
#include "host/lib/audit.h"
#include "host/lib/db.h"
#include "host/lib/err.h"
#include "host/lib/registry.h"

#define MAX_TABLES 64
#define MAX_COLS 64
#define NAME_MAX_LEN 64

typedef struct {
	char name[NAME_MAX_LEN];
	int ncols;
	char cols[MAX_COLS][NAME_MAX_LEN];
	int bytea[MAX_COLS];      /* target column is BYTEA */
	int deferred[MAX_COLS];   /* forward FK: NULL first, set later */
	int notnull[MAX_COLS];
	int integer[MAX_COLS];    /* declared INTEGER in the source */
	char pk[NAME_MAX_LEN];    /* single-column primary key, or "" */
	int pk_int;               /* the primary key is an integer id */
	char refs[MAX_COLS][NAME_MAX_LEN]; /* table a column references */
	int done;
	int64_t rows;
} mig_table_t;

typedef struct {
	ks_db_t *src;
	ks_db_t *dst;
	mig_table_t t[MAX_TABLES];
	int n;
	int order[MAX_TABLES];
	char stations[8][NAME_MAX_LEN];
	int nstations;
} mig_t;

static void usage(void)
{
	fprintf(stderr,
		"Usage: kiln registry migrate --from sqlite:FILE --to postgresql://...\n"
		"                             [--ca CHAIN.pem [--station-pub PUB.pem]]\n\n"
		"Copies every record of the SQLite registry FILE (lots, devices,\n"
		"sessions, certificates, serial counters and blocks, the audit chain\n"
		"and its checkpoints) into the PostgreSQL registry, unchanged, in one\n"
		"transaction, then compares every table's row count and the audit\n"
		"chain row by row, and with --ca runs the audit verification on the\n"
		"target. FILE is not modified. Refused when the target already holds\n"
		"records of the file's station.\n"
		"Exit: 0 moved and verified, 1 refused or verification failed,\n"
		"2 usage, 4 a registry could not be opened or written.\n");
}

/* Quote an SQL identifier we read from the schema (letters, digits, _). */
static int ident_ok(const char *s)
{
	if (s == NULL || s[0] == '\0' || strlen(s) >= NAME_MAX_LEN)
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

static int find_table(const mig_t *m, const char *name)
{
	for (int i = 0; i < m->n; i++)
		if (strcmp(m->t[i].name, name) == 0)
			return i;
	return -1;
}

static int db_fail(ks_db_t *db, const char *what)
{
	kc_err("registry migrate: %s: %s", what, ks_db_errmsg(db));
	return KC_EXIT_LOCAL;
}

/* Tables, columns, primary keys and foreign keys of the source. */
static int read_schema(mig_t *m)
{
	ks_db_stmt_t *st = NULL, *ci = NULL;
	char sql[256];
	int rc, r = KC_EXIT_LOCAL;

	if (ks_db_prepare(m->src,
			  "SELECT name FROM sqlite_master WHERE type = 'table' "
			  "AND name NOT LIKE 'sqlite_%' ORDER BY name",
			  &st) != KS_DB_EOK)
		return db_fail(m->src, "reading the source schema");
	while ((rc = ks_db_step(st)) == KS_DB_ROW) {
		const char *name = ks_db_col_text(st, 0);

		if (!ident_ok(name) || m->n >= MAX_TABLES) {
			kc_err("registry migrate: unexpected table '%s' in the source",
			       name != NULL ? name : "");
			goto out;
		}
		snprintf(m->t[m->n++].name, NAME_MAX_LEN, "%s", name);
	}
	if (rc != KS_DB_DONE) {
		r = db_fail(m->src, "reading the source schema");
		goto out;
	}
	ks_db_finish(&st);
	for (int i = 0; i < m->n; i++) {
		mig_table_t *t = &m->t[i];
		int npk = 0;

		snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", t->name);
		if (ks_db_prepare(m->src, sql, &ci) != KS_DB_EOK) {
			r = db_fail(m->src, sql);
			goto out;
		}
		while ((rc = ks_db_step(ci)) == KS_DB_ROW) {
			const char *col = ks_db_col_text(ci, 1);
			const char *type = ks_db_col_text(ci, 2);

			if (!ident_ok(col) || t->ncols >= MAX_COLS) {
				kc_err("registry migrate: unexpected column %s.%s",
				       t->name, col != NULL ? col : "");
				goto out;
			}
			snprintf(t->cols[t->ncols], NAME_MAX_LEN, "%s", col);
			t->notnull[t->ncols] = ks_db_col_int(ci, 3) != 0;
			t->integer[t->ncols] = type != NULL &&
					       strstr(type, "INT") != NULL;
			if (ks_db_col_int(ci, 5) > 0) {
				npk++;
				snprintf(t->pk, sizeof(t->pk), "%s", col);
				t->pk_int = t->integer[t->ncols];
			}
			t->ncols++;
		}
		ks_db_finish(&ci);
		if (npk != 1) {
			/* a composite key (serial_blocks) is no id */
			t->pk[0] = '\0';
			t->pk_int = 0;
		}
		snprintf(sql, sizeof(sql), "PRAGMA foreign_key_list(%s)",
			 t->name);
		if (ks_db_prepare(m->src, sql, &ci) != KS_DB_EOK) {
			r = db_fail(m->src, sql);
			goto out;
		}
		while ((rc = ks_db_step(ci)) == KS_DB_ROW) {
			const char *to = ks_db_col_text(ci, 2);
			const char *from = ks_db_col_text(ci, 3);

			for (int c = 0; c < t->ncols; c++)
				if (from != NULL && to != NULL &&
				    strcmp(t->cols[c], from) == 0)
					snprintf(t->refs[c], NAME_MAX_LEN, "%s",
						 to);
		}
		ks_db_finish(&ci);
	}
	r = KC_EXIT_OK;
out:
	ks_db_finish(&st);
	ks_db_finish(&ci);
	return r;
}

/*
 * Copy order: a table comes after the tables it references; where the
 * references form a cycle, the table whose forward references are all
 * nullable goes first and those columns are deferred.
 */
static int plan_order(mig_t *m)
{
	int placed = 0;

	while (placed < m->n) {
		int pick = -1;

		for (int i = 0; i < m->n && pick < 0; i++) {
			int ready = !m->t[i].done;

			for (int c = 0; ready && c < m->t[i].ncols; c++) {
				int j = m->t[i].refs[c][0]
						? find_table(m, m->t[i].refs[c])
						: -1;

				if (j >= 0 && j != i && !m->t[j].done)
					ready = 0;
			}
			if (ready)
				pick = i;
		}
		if (pick < 0) {
			/* a cycle: take the first table left whose forward
			 * references may be NULL for a while; defer them */
			for (int i = 0; i < m->n && pick < 0; i++) {
				int ok = !m->t[i].done;

				for (int c = 0; ok && c < m->t[i].ncols; c++) {
					int j = m->t[i].refs[c][0]
							? find_table(m, m->t[i].refs[c])
							: -1;

					if (j >= 0 && j != i && !m->t[j].done &&
					    m->t[i].notnull[c])
						ok = 0;
				}
				if (ok)
					pick = i;
			}
			if (pick < 0) {
				kc_err("registry migrate: the tables reference "
				       "each other through NOT NULL columns");
				return KC_EXIT_LOCAL;
			}
			for (int c = 0; c < m->t[pick].ncols; c++) {
				int j = m->t[pick].refs[c][0]
						? find_table(m, m->t[pick].refs[c])
						: -1;

				if (j >= 0 && j != pick && !m->t[j].done)
					m->t[pick].deferred[c] = 1;
			}
			if (m->t[pick].pk[0] == '\0') {
				kc_err("registry migrate: table %s references "
				       "a later table and has no single "
				       "primary key",
				       m->t[pick].name);
				return KC_EXIT_LOCAL;
			}
		}
		m->t[pick].done = 1;
		m->order[placed++] = pick;
	}
	for (int i = 0; i < m->n; i++)
		m->t[i].done = 0;
	return KC_EXIT_OK;
}

/* The target must have every source column; note which are BYTEA. */
static int check_target(mig_t *m)
{
	ks_db_stmt_t *st = NULL;
	int r = KC_EXIT_LOCAL;

	for (int i = 0; i < m->n; i++) {
		mig_table_t *t = &m->t[i];

		for (int c = 0; c < t->ncols; c++) {
			if (ks_db_prepare(m->dst,
					  "SELECT data_type FROM "
					  "information_schema.columns WHERE "
					  "table_schema = current_schema() AND "
					  "table_name = ? AND column_name = ?",
					  &st) != KS_DB_EOK)
				return db_fail(m->dst, "reading the target schema");
			ks_db_bind_text(st, 1, t->name);
			ks_db_bind_text(st, 2, t->cols[c]);
			if (ks_db_step(st) != KS_DB_ROW) {
				kc_err("registry migrate: the target has no column "
				       "%s.%s (a registry of another version?)",
				       t->name, t->cols[c]);
				goto out;
			}
			t->bytea[c] = strcmp(ks_db_col_text(st, 0), "bytea") == 0;
			ks_db_finish(&st);
		}
	}
	r = KC_EXIT_OK;
out:
	ks_db_finish(&st);
	return r;
}

static int64_t count_where(ks_db_t *db, const char *table, const char *col,
			   const char *value)
{
	ks_db_stmt_t *st = NULL;
	char sql[256];
	int64_t v = -1;

	if (col != NULL)
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE %s = ?",
			 table, col);
	else
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	if (ks_db_prepare(db, sql, &st) != KS_DB_EOK)
		return -1;
	if (value != NULL)
		ks_db_bind_text(st, 1, value);
	if (ks_db_step(st) == KS_DB_ROW)
		v = ks_db_col_int64(st, 0);
	ks_db_finish(&st);
	return v;
}

/* The source's stations; refuse when the target holds records of one. */
static int check_stations(mig_t *m)
{
	static const char *const owned[] = {"lots", "sessions", "audit"};
	ks_db_stmt_t *st = NULL;

	if (ks_db_prepare(m->src, "SELECT id FROM stations ORDER BY id", &st) !=
	    KS_DB_EOK)
		return db_fail(m->src, "reading the stations");
	while (ks_db_step(st) == KS_DB_ROW && m->nstations < 8)
		snprintf(m->stations[m->nstations++], NAME_MAX_LEN, "%s",
			 ks_db_col_text(st, 0));
	ks_db_finish(&st);
	if (m->nstations == 0) {
		kc_err("registry migrate: the source names no station");
		return KC_EXIT_FAIL;
	}
	for (int s = 0; s < m->nstations; s++)
		for (size_t k = 0; k < sizeof(owned) / sizeof(owned[0]); k++) {
			int64_t n;

			if (find_table(m, owned[k]) < 0)
				continue;
			n = count_where(m->dst, owned[k], "station_id",
					m->stations[s]);
			if (n != 0) {
				kc_err("registry migrate: the target already holds "
				       "%" PRId64 " %s row%s of station %s; "
				       "refusing to copy its records twice",
				       n, owned[k], n == 1 ? "" : "s",
				       m->stations[s]);
				return n < 0 ? KC_EXIT_LOCAL : KC_EXIT_FAIL;
			}
		}
	return KC_EXIT_OK;
}

/* Bind source column c of the current row as parameter i. */
static void bind_value(ks_db_stmt_t *in, int c, ks_db_stmt_t *out, int i,
		       int bytea)
{
	switch (ks_db_col_type(in, c)) {
	case KS_DB_T_NULL:
		ks_db_bind_null(out, i);
		break;
	case KS_DB_T_INT:
		if (bytea) {
			char num[24];

			snprintf(num, sizeof(num), "%" PRId64,
				 ks_db_col_int64(in, c));
			ks_db_bind_blob(out, i, num, strlen(num));
		} else {
			ks_db_bind_int64(out, i, ks_db_col_int64(in, c));
		}
		break;
	case KS_DB_T_BLOB:
		ks_db_bind_blob(out, i, ks_db_col_blob(in, c),
				ks_db_col_bytes(in, c));
		break;
	default:
		if (bytea)
			ks_db_bind_blob(out, i, ks_db_col_blob(in, c),
					ks_db_col_bytes(in, c));
		else
			ks_db_bind_text(out, i, ks_db_col_text(in, c));
		break;
	}
}

/* Copy one table; deferred columns are set once every row is in. */
static int copy_table(mig_t *m, mig_table_t *t)
{
	ks_db_stmt_t *in = NULL, *out = NULL;
	char sel[4096], ins[4096];
	size_t a = 0, b = 0;
	int rc, r = KC_EXIT_LOCAL;

	a += (size_t)snprintf(sel + a, sizeof(sel) - a, "SELECT ");
	b += (size_t)snprintf(ins + b, sizeof(ins) - b, "INSERT INTO %s(",
			      t->name);
	for (int c = 0; c < t->ncols && a < sizeof(sel) && b < sizeof(ins);
	     c++) {
		a += (size_t)snprintf(sel + a, sizeof(sel) - a, "%s%s",
				      c ? ", " : "", t->cols[c]);
		b += (size_t)snprintf(ins + b, sizeof(ins) - b, "%s%s",
				      c ? ", " : "", t->cols[c]);
	}
	if (a < sizeof(sel))
		a += (size_t)snprintf(sel + a, sizeof(sel) - a, " FROM %s%s%s",
				      t->name, t->pk[0] ? " ORDER BY " : "",
				      t->pk);
	if (b < sizeof(ins))
		b += (size_t)snprintf(ins + b, sizeof(ins) - b, ") VALUES(");
	for (int c = 0; c < t->ncols && b < sizeof(ins); c++)
		b += (size_t)snprintf(ins + b, sizeof(ins) - b, "%s?",
				      c ? ", " : "");
	if (b < sizeof(ins))
		b += (size_t)snprintf(ins + b, sizeof(ins) - b, ")");
	/* Rows named by a text key (the station's registration, meta
	 * values, a lot prefix's counter) may be there already: the
	 * station's own row is kept, the others take the source's values.
	 * Any other row already there is a conflict that stops the move. */
	if (t->pk[0] != '\0' && !t->pk_int && b < sizeof(ins)) {
		int nset = 0;

		if (strcmp(t->name, "stations") == 0) {
			b += (size_t)snprintf(ins + b, sizeof(ins) - b,
					      " ON CONFLICT DO NOTHING");
		} else {
			b += (size_t)snprintf(ins + b, sizeof(ins) - b,
					      " ON CONFLICT (%s) DO UPDATE SET ",
					      t->pk);
			for (int c = 0; c < t->ncols && b < sizeof(ins); c++) {
				if (strcmp(t->cols[c], t->pk) == 0)
					continue;
				b += (size_t)snprintf(ins + b, sizeof(ins) - b,
						      "%s%s = excluded.%s",
						      nset++ ? ", " : "",
						      t->cols[c], t->cols[c]);
			}
			if (nset == 0 && b < sizeof(ins))
				b += (size_t)snprintf(ins + b, sizeof(ins) - b,
						      "%s = excluded.%s", t->pk,
						      t->pk);
		}
	}
	if (a >= sizeof(sel) || b >= sizeof(ins)) {
		kc_err("registry migrate: table %s has too many columns",
		       t->name);
		return KC_EXIT_LOCAL;
	}
	if (ks_db_prepare_stream(m->src, sel, &in) != KS_DB_EOK)
		return db_fail(m->src, sel);
	while ((rc = ks_db_step(in)) == KS_DB_ROW) {
		if (ks_db_prepare(m->dst, ins, &out) != KS_DB_EOK) {
			r = db_fail(m->dst, ins);
			goto out;
		}
		for (int c = 0; c < t->ncols; c++) {
			if (t->deferred[c])
				ks_db_bind_null(out, c + 1);
			else
				bind_value(in, c, out, c + 1, t->bytea[c]);
		}
		rc = ks_db_step(out);
		ks_db_finish(&out);
		if (rc != KS_DB_DONE) {
			kc_err("registry migrate: copying a row of %s: %s",
			       t->name, ks_db_errmsg(m->dst));
			r = rc == KS_DB_ECONSTRAINT ? KC_EXIT_FAIL : KC_EXIT_LOCAL;
			goto out;
		}
		t->rows++;
	}
	if (rc != KS_DB_DONE) {
		r = db_fail(m->src, sel);
		goto out;
	}
	r = KC_EXIT_OK;
out:
	ks_db_finish(&in);
	ks_db_finish(&out);
	return r;
}

/* Fill in the deferred (forward) references of a table. */
static int copy_deferred(mig_t *m, mig_table_t *t)
{
	ks_db_stmt_t *in = NULL, *out = NULL;
	char sel[256], upd[256];
	int rc, r = KC_EXIT_OK;

	for (int c = 0; c < t->ncols && r == KC_EXIT_OK; c++) {
		if (!t->deferred[c])
			continue;
		snprintf(sel, sizeof(sel),
			 "SELECT %s, %s FROM %s WHERE %s IS NOT NULL", t->pk,
			 t->cols[c], t->name, t->cols[c]);
		snprintf(upd, sizeof(upd), "UPDATE %s SET %s = ? WHERE %s = ?",
			 t->name, t->cols[c], t->pk);
		if (ks_db_prepare_stream(m->src, sel, &in) != KS_DB_EOK)
			return db_fail(m->src, sel);
		while ((rc = ks_db_step(in)) == KS_DB_ROW) {
			if (ks_db_prepare(m->dst, upd, &out) != KS_DB_EOK) {
				r = db_fail(m->dst, upd);
				break;
			}
			bind_value(in, 1, out, 1, t->bytea[c]);
			bind_value(in, 0, out, 2, 0);
			if (ks_db_step(out) != KS_DB_DONE) {
				kc_err("registry migrate: %s.%s: %s", t->name,
				       t->cols[c], ks_db_errmsg(m->dst));
				r = KC_EXIT_LOCAL;
			}
			ks_db_finish(&out);
			if (r != KC_EXIT_OK)
				break;
		}
		if (r == KC_EXIT_OK && rc != KS_DB_DONE)
			r = db_fail(m->src, sel);
		ks_db_finish(&in);
	}
	return r;
}

/*
 * Identity sequences past the copied ids: every integer column the target
 * gives a sequence (an id, whatever the table's key), moved to the
 * largest value copied.
 */
static int bump_sequences(mig_t *m)
{
	char sql[512];

	for (int i = 0; i < m->n; i++) {
		mig_table_t *t = &m->t[i];

		for (int c = 0; c < t->ncols && t->rows > 0; c++) {
			if (!t->integer[c])
				continue;
			snprintf(sql, sizeof(sql),
				 "SELECT setval(s, (SELECT max(%s) FROM %s)) "
				 "FROM (SELECT pg_get_serial_sequence('%s', "
				 "'%s') AS s) q WHERE s IS NOT NULL AND "
				 "EXISTS (SELECT 1 FROM %s WHERE %s IS NOT NULL)",
				 t->cols[c], t->name, t->name, t->cols[c],
				 t->name, t->cols[c]);
			if (ks_db_exec(m->dst, sql) != KS_DB_EOK)
				return db_fail(m->dst, sql);
		}
	}
	return KC_EXIT_OK;
}

/* Each station chain's head (seq, hash, last checkpoint) on the target. */
static int compare_heads(mig_t *m)
{
	ks_db_stmt_t *a = NULL, *b = NULL;
	int bad = 0, ra;

	if (find_table(m, "audit_heads") < 0)
		return KC_EXIT_OK;
	if (ks_db_prepare_stream(m->src,
				 "SELECT chain, seq, row_hash, checkpoint_seq "
				 "FROM audit_heads ORDER BY chain",
				 &a) != KS_DB_EOK)
		return db_fail(m->src, "reading the audit chain heads");
	while ((ra = ks_db_step(a)) == KS_DB_ROW) {
		if (ks_db_prepare(m->dst,
				  "SELECT seq, row_hash, checkpoint_seq FROM "
				  "audit_heads WHERE chain = ?",
				  &b) != KS_DB_EOK) {
			bad = 1;
			break;
		}
		ks_db_bind_text(b, 1, ks_db_col_text(a, 0));
		if (ks_db_step(b) != KS_DB_ROW ||
		    ks_db_col_int64(b, 0) != ks_db_col_int64(a, 1) ||
		    ks_db_col_bytes(b, 1) != 32 ||
		    ks_db_col_bytes(a, 2) != 32 ||
		    memcmp(ks_db_col_blob(b, 1), ks_db_col_blob(a, 2), 32) != 0 ||
		    ks_db_col_int64(b, 2) != ks_db_col_int64(a, 3)) {
			kc_err("registry migrate: the head of the audit chain "
			       "of station %s differs on the target",
			       ks_db_col_text(a, 0));
			bad = 1;
		}
		ks_db_finish(&b);
		if (bad)
			break;
	}
	ks_db_finish(&a);
	if (!bad && ra != KS_DB_DONE)
		return db_fail(m->src, "reading the audit chain heads");
	return bad ? KC_EXIT_FAIL : KC_EXIT_OK;
}

/* Row counts of every table and the audit chain, row by row. */
static int compare(mig_t *m)
{
	ks_db_stmt_t *a = NULL, *b = NULL;
	int bad = 0, ra, rb;
	int64_t nrows = 0;

	for (int i = 0; i < m->n; i++) {
		int64_t ns = count_where(m->src, m->t[i].name, NULL, NULL);
		int64_t nd = count_where(m->dst, m->t[i].name, NULL, NULL);

		printf("  %-16s %8" PRId64 " rows copied (%" PRId64
		       " in the source, %" PRId64 " in the target)\n",
		       m->t[i].name, m->t[i].rows, ns, nd);
		if (ns < 0 || nd < ns)
			bad = 1;
	}
	if (find_table(m, "audit") < 0)
		return bad ? KC_EXIT_FAIL : KC_EXIT_OK;
	/* the same rows in the same order with the same hashes, each in
	 * the same station chain at the same place (one stream at a time
	 * per connection: source streams, target reads row by row by
	 * primary key) */
	if (ks_db_prepare_stream(m->src,
				 "SELECT seq, row_hash, prev_hash, chain, "
				 "chain_seq FROM audit ORDER BY seq",
				 &a) != KS_DB_EOK)
		return db_fail(m->src, "reading the audit log");
	while ((ra = ks_db_step(a)) == KS_DB_ROW) {
		const char *ca, *cb;

		if (ks_db_prepare(m->dst,
				  "SELECT row_hash, prev_hash, chain, chain_seq "
				  "FROM audit WHERE seq = ?",
				  &b) != KS_DB_EOK) {
			bad = 1;
			break;
		}
		ks_db_bind_int64(b, 1, ks_db_col_int64(a, 0));
		rb = ks_db_step(b);
		ca = ks_db_col_text(a, 3);
		cb = rb == KS_DB_ROW ? ks_db_col_text(b, 2) : NULL;
		if (rb != KS_DB_ROW || ks_db_col_bytes(b, 0) != 32 ||
		    ks_db_col_bytes(a, 1) != 32 ||
		    memcmp(ks_db_col_blob(b, 0), ks_db_col_blob(a, 1), 32) != 0 ||
		    ks_db_col_bytes(b, 1) != ks_db_col_bytes(a, 2) ||
		    memcmp(ks_db_col_blob(b, 1), ks_db_col_blob(a, 2),
			   ks_db_col_bytes(a, 2)) != 0 ||
		    ca == NULL || cb == NULL || strcmp(ca, cb) != 0 ||
		    ks_db_col_int64(a, 4) != ks_db_col_int64(b, 3)) {
			kc_err("registry migrate: audit row %" PRId64
			       " differs on the target",
			       ks_db_col_int64(a, 0));
			bad = 1;
		}
		ks_db_finish(&b);
		if (bad)
			break;
		nrows++;
	}
	ks_db_finish(&a);
	if (!bad && ra != KS_DB_DONE) {
		db_fail(m->src, "reading the audit log");
		bad = 1;
	}
	if (!bad)
		bad = compare_heads(m) != KC_EXIT_OK;
	if (!bad)
		printf("  audit chains: %" PRId64 " rows identical (row and "
		       "previous hashes, chain and place in it), every "
		       "chain head moved\n", nrows);
	return bad ? KC_EXIT_FAIL : KC_EXIT_OK;
}

/* Copy the source into a temporary file with SQLite's backup API. */
static int snapshot_source(const char *path, char *tmp, size_t cap)
{
	sqlite3 *from = NULL, *to = NULL;
	sqlite3_backup *bk;
	int fd, r = KC_EXIT_LOCAL;

	snprintf(tmp, cap, "%s/kiln-migrate-XXXXXX",
		 getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	fd = mkstemp(tmp);
	if (fd < 0) {
		kc_err("registry migrate: temporary file %s: %s", tmp,
		       strerror(errno));
		tmp[0] = '\0';
		return KC_EXIT_LOCAL;
	}
	close(fd);
	if (access(path, R_OK) != 0) {
		kc_err("registry migrate: %s: %s", path, strerror(errno));
		goto out;
	}
	if (sqlite3_open_v2(path, &from, SQLITE_OPEN_READONLY, NULL) !=
		    SQLITE_OK ||
	    sqlite3_open_v2(tmp, &to, SQLITE_OPEN_READWRITE, NULL) !=
		    SQLITE_OK) {
		kc_err("registry migrate: cannot open %s: %s", path,
		       from != NULL ? sqlite3_errmsg(from) : "out of memory");
		goto out;
	}
	bk = sqlite3_backup_init(to, "main", from, "main");
	if (bk == NULL || sqlite3_backup_step(bk, -1) != SQLITE_DONE) {
		kc_err("registry migrate: reading %s: %s", path,
		       sqlite3_errmsg(to));
		sqlite3_backup_finish(bk);
		goto out;
	}
	if (sqlite3_backup_finish(bk) != SQLITE_OK) {
		kc_err("registry migrate: reading %s: %s", path,
		       sqlite3_errmsg(to));
		goto out;
	}
	r = KC_EXIT_OK;
out:
	sqlite3_close(from);
	sqlite3_close(to);
	return r;
}

static EVP_PKEY *load_pub(const char *path)
{
	EVP_PKEY *k = NULL;
	FILE *fp = fopen(path, "r");

	if (fp == NULL) {
		kc_err("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	k = PEM_read_PUBKEY(fp, NULL, NULL, NULL);
	fclose(fp);
	if (k == NULL) {
		ERR_clear_error();
		kc_err("%s: not a PEM public key", path);
	}
	return k;
}

/* The target opened as a registry once: its migrations applied. */
static int prepare_target(const char *to, const char *station)
{
	ks_reg_t *reg = NULL;
	char shown[512];
	int r;

	r = ks_reg_open(to, station, &reg);
	ks_reg_close(&reg);
	if (r != KS_OK) {
		ks_db_url_mask(to, shown, sizeof(shown));
		kc_err("registry migrate: cannot open the target %s: %s", shown,
		       ks_strerror(r));
		return KC_EXIT_LOCAL;
	}
	return KC_EXIT_OK;
}

static int migrate(const char *from, const char *to, const char *ca,
		   const char *pub_path)
{
	mig_t *m = calloc(1, sizeof(*m));
	char tmp[4096] = "", shown[512], sta[NAME_MAX_LEN] = "";
	const char *path = strncmp(from, "sqlite:", 7) == 0 ? from + 7 : from;
	ks_reg_t *reg = NULL;
	ks_db_stmt_t *st = NULL;
	EVP_PKEY *pub = NULL;
	int r = KC_EXIT_LOCAL, rc, intx = 0;

	if (m == NULL)
		return KC_EXIT_LOCAL;
	ks_db_url_mask(to, shown, sizeof(shown));
	r = snapshot_source(path, tmp, sizeof(tmp));
	if (r != KC_EXIT_OK)
		goto out;
	/* the station id of the file, to open the copy as its registry */
	r = KC_EXIT_LOCAL;
	if (ks_db_open_readonly(tmp, &m->src) != KS_DB_EOK) {
		r = db_fail(m->src, path);
		goto out;
	}
	if (ks_db_prepare(m->src, "SELECT id FROM stations ORDER BY created_ms",
			  &st) == KS_DB_EOK &&
	    ks_db_step(st) == KS_DB_ROW)
		snprintf(sta, sizeof(sta), "%s", ks_db_col_text(st, 0));
	ks_db_finish(&st);
	ks_db_close(&m->src);
	if (sta[0] == '\0') {
		kc_err("registry migrate: %s is not a kiln registry (no station)",
		       path);
		r = KC_EXIT_FAIL;
		goto out;
	}
	/* bring the copy up to this build's schema */
	rc = ks_reg_open(tmp, sta, &reg);
	ks_reg_close(&reg);
	if (rc != KS_OK) {
		kc_err("registry migrate: %s: cannot be opened as a registry: %s",
		       path, ks_strerror(rc));
		goto out;
	}
	if (ks_db_open_readonly(tmp, &m->src) != KS_DB_EOK) {
		r = db_fail(m->src, path);
		goto out;
	}
	r = read_schema(m);
	if (r == KC_EXIT_OK)
		r = plan_order(m);
	if (r == KC_EXIT_OK)
		r = prepare_target(to, sta);
	if (r != KC_EXIT_OK)
		goto out;
	if (ks_db_open(to, &m->dst) != KS_DB_EOK) {
		kc_err("registry migrate: cannot open %s: %s", shown,
		       ks_db_errmsg(m->dst));
		r = KC_EXIT_LOCAL;
		goto out;
	}
	if (ks_db_backend(m->dst) != KS_DB_PG) {
		kc_err("registry migrate: --to must be a postgresql:// URL");
		r = KC_EXIT_USAGE;
		goto out;
	}
	r = check_target(m);
	if (r != KC_EXIT_OK)
		goto out;
	if (ks_db_begin_write(m->dst) != KS_DB_EOK) {
		r = db_fail(m->dst, "BEGIN");
		goto out;
	}
	intx = 1;
	r = check_stations(m);
	if (r != KC_EXIT_OK)
		goto out;
	printf("moving station %s from %s to %s\n", sta, path, shown);
	for (int k = 0; k < m->n && r == KC_EXIT_OK; k++)
		r = copy_table(m, &m->t[m->order[k]]);
	for (int k = 0; k < m->n && r == KC_EXIT_OK; k++)
		r = copy_deferred(m, &m->t[m->order[k]]);
	if (r == KC_EXIT_OK)
		r = bump_sequences(m);
	if (r == KC_EXIT_OK)
		r = compare(m);
	if (r != KC_EXIT_OK)
		goto out;
	if (ks_db_commit(m->dst) != KS_DB_EOK) {
		r = db_fail(m->dst, "COMMIT");
		goto out;
	}
	intx = 0;
	printf("copied and committed in one transaction\n");
	if (ca != NULL) {
		ks_audit_report_t rep;

		if (pub_path != NULL) {
			pub = load_pub(pub_path);
			if (pub == NULL) {
				r = KC_EXIT_USAGE;
				goto out;
			}
		}
		rc = ks_audit_verify(to, ca, pub, &rep);
		if (rc == KS_OK) {
			printf("audit verify on the target: OK, %" PRIu64
			       " rows, %" PRIu64 " checkpoints, %" PRIu64
			       " certificates, %" PRIu64 " devices\n",
			       rep.rows, rep.checkpoints, rep.certificates,
			       rep.devices);
		} else {
			kc_err("registry migrate: audit verify on the target "
			       "FAILED: %s",
			       rc == KS_ERR_AUDIT ? rep.first_error
						  : ks_strerror(rc));
			r = KC_EXIT_FAIL;
			goto out;
		}
	}
	r = KC_EXIT_OK;
out:
	if (intx)
		ks_db_rollback(m->dst);
	ks_db_finish(&st);
	ks_db_close(&m->src);
	ks_db_close(&m->dst);
	EVP_PKEY_free(pub);
	if (tmp[0] != '\0') {
		char side[4200];

		unlink(tmp);
		snprintf(side, sizeof(side), "%s-wal", tmp);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", tmp);
		unlink(side);
	}
	free(m);
	return r;
}

int kc_cmd_registry(kc_global_t *g, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 't'},
		{"ca", required_argument, NULL, 'a'},
		{"station-pub", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *from = NULL, *to = NULL, *ca = NULL, *pub = NULL;
	int c;

	(void)g;
	if (argc < 2 || strcmp(argv[1], "migrate") != 0) {
		if (argc >= 2 && strcmp(argv[1], "--help") != 0 &&
		    strcmp(argv[1], "-h") != 0)
			kc_err("registry: unknown subcommand '%s' (migrate)",
			       argv[1]);
		usage();
		return argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
				     strcmp(argv[1], "-h") == 0)
			       ? KC_EXIT_OK
			       : KC_EXIT_USAGE;
	}
	argc--;
	argv++;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'a':
			ca = optarg;
			break;
		case 'p':
			pub = optarg;
			break;
		case 'h':
			usage();
			return KC_EXIT_OK;
		default:
			usage();
			return KC_EXIT_USAGE;
		}
	}
	if (from == NULL || to == NULL || optind != argc) {
		kc_err("registry migrate: give --from sqlite:FILE and --to "
		       "postgresql://...");
		usage();
		return KC_EXIT_USAGE;
	}
	if (ks_db_url_backend(from) != KS_DB_SQLITE ||
	    ks_db_url_backend(to) != KS_DB_PG) {
		kc_err("registry migrate: --from must be an SQLite file and --to "
		       "a postgresql:// URL");
		return KC_EXIT_USAGE;
	}
	if (pub != NULL && ca == NULL) {
		kc_err("registry migrate: --station-pub needs --ca");
		return KC_EXIT_USAGE;
	}
	return migrate(from, to, ca, pub);
}
