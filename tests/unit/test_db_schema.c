/*
 * The two migration sets describe one schema: db/NNNN_*.sql (SQLite) and
 * db/pg/NNNN_*.sql (PostgreSQL) are applied to a fresh SQLite file and a
 * fresh database on a throwaway PostgreSQL server (tests/pg/pgtest.h),
 * then both schemas are read back from the catalogues and compared:
 * tables, columns (name, type class, NOT NULL), primary keys, unique
 * constraints and indexes (columns, partial or not) and plain indexes.
 * The comparison itself is checked to fail: PostgreSQL without its last
 * migration must differ from SQLite with all of them (a SQLite migration
 * without its PostgreSQL twin), and each set must be numbered 1..N with
 * the same N and names.
 *
 * The PostgreSQL part is skipped with a message where no server can be
 * started; the numbering checks always run.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db/migrations.h"
#include "host/lib/db.h"
#include "host/lib/log.h"
#include "tests/pg/pgtest.h"
#include "tests/unit/test_registry_util.h"

static int passed, failed;

#define CHECK(cond)                                                       \
	do {                                                              \
		if (cond) {                                               \
			passed++;                                         \
		} else {                                                  \
			failed++;                                         \
			fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__,  \
				__LINE__, #cond);                         \
		}                                                         \
	} while (0)

/* A schema as a sorted list of normalised lines. */
typedef struct {
	char **line;
	size_t n, cap;
} schema_t;

__attribute__((format(printf, 2, 3)))
static void add(schema_t *s, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	char **p;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		p = realloc(s->line, s->cap * sizeof(*p));
		if (p == NULL) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
		s->line = p;
	}
	s->line[s->n] = strdup(buf);
	if (s->line[s->n] == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	s->n++;
}

static int cmp_line(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void schema_free(schema_t *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->line[i]);
	free(s->line);
	memset(s, 0, sizeof(*s));
}

/* Type class of a declared SQLite type or a PostgreSQL data_type. */
static const char *type_class(const char *t)
{
	if (t == NULL)
		return "?";
	if (strcasecmp(t, "INTEGER") == 0 || strcasecmp(t, "bigint") == 0 ||
	    strcasecmp(t, "integer") == 0 || strcasecmp(t, "smallint") == 0)
		return "int";
	if (strcasecmp(t, "TEXT") == 0 || strcasecmp(t, "text") == 0)
		return "text";
	if (strcasecmp(t, "BLOB") == 0 || strcasecmp(t, "bytea") == 0)
		return "blob";
	return t;
}

static int apply(ks_db_t *db, const ks_db_migration_t *m, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (ks_db_exec(db, m[i].sql) != KS_DB_EOK) {
			fprintf(stderr, "migration %04d_%s: %s\n",
				m[i].version, m[i].name, ks_db_errmsg(db));
			return -1;
		}
	return 0;
}

/* ---- SQLite catalogue ---- */

static void sqlite_index(ks_db_t *db, schema_t *s, const char *table,
			 const char *index, int unique, int partial)
{
	ks_db_stmt_t *st = NULL;
	char cols[256] = "";

	if (ks_db_prepare(db, "SELECT name FROM pragma_index_info(?) ORDER "
			      "BY seqno",
			  &st) != KS_DB_EOK)
		return;
	ks_db_bind_text(st, 1, index);
	while (ks_db_step(st) == KS_DB_ROW) {
		const char *c = ks_db_col_text(st, 0);
		size_t l = strlen(cols);

		snprintf(cols + l, sizeof(cols) - l, "%s%s", l ? "," : "",
			 c ? c : "?");
	}
	ks_db_finish(&st);
	add(s, "%s %s(%s)%s", unique ? "unique" : "index", table, cols,
	    partial ? " partial" : "");
}

static int sqlite_schema(ks_db_t *db, schema_t *s)
{
	ks_db_stmt_t *t = NULL, *st = NULL;
	char tables[64][64];
	size_t nt = 0, i;

	if (ks_db_prepare(db, "SELECT name FROM sqlite_master WHERE type = "
			      "'table' AND name NOT LIKE 'sqlite_%' ORDER BY "
			      "name",
			  &t) != KS_DB_EOK)
		return -1;
	while (ks_db_step(t) == KS_DB_ROW && nt < 64)
		snprintf(tables[nt++], sizeof(tables[0]), "%s",
			 ks_db_col_text(t, 0));
	ks_db_finish(&t);
	for (i = 0; i < nt; i++) {
		char pk[256] = "";
		int pkn;

		add(s, "table %s", tables[i]);
		if (ks_db_prepare(db, "SELECT name, type, \"notnull\", pk FROM "
				      "pragma_table_info(?) ORDER BY pk, cid",
				  &st) != KS_DB_EOK)
			return -1;
		ks_db_bind_text(st, 1, tables[i]);
		while (ks_db_step(st) == KS_DB_ROW) {
			const char *c = ks_db_col_text(st, 0);

			pkn = ks_db_col_int(st, 3);
			/* a primary key column is NOT NULL in PostgreSQL
			 * (and in SQLite's INTEGER PRIMARY KEY) */
			add(s, "column %s.%s %s%s", tables[i], c,
			    type_class(ks_db_col_text(st, 1)),
			    ks_db_col_int(st, 2) || pkn ? " not null" : "");
			if (pkn > 0) {
				size_t l = strlen(pk);

				snprintf(pk + l, sizeof(pk) - l, "%s%s",
					 l ? "," : "", c);
			}
		}
		ks_db_finish(&st);
		if (pk[0] != '\0')
			add(s, "primary key %s(%s)", tables[i], pk);
		if (ks_db_prepare(db, "SELECT name, \"unique\", origin, partial "
				      "FROM pragma_index_list(?) ORDER BY name",
				  &st) != KS_DB_EOK)
			return -1;
		ks_db_bind_text(st, 1, tables[i]);
		{
			char idx[32][80];
			int uq[32], part[32];
			size_t ni = 0, j;

			while (ks_db_step(st) == KS_DB_ROW && ni < 32) {
				const char *origin = ks_db_col_text(st, 2);

				if (origin != NULL && strcmp(origin, "pk") == 0)
					continue;
				snprintf(idx[ni], sizeof(idx[0]), "%s",
					 ks_db_col_text(st, 0));
				uq[ni] = ks_db_col_int(st, 1);
				part[ni] = ks_db_col_int(st, 3);
				ni++;
			}
			ks_db_finish(&st);
			for (j = 0; j < ni; j++)
				sqlite_index(db, s, tables[i], idx[j], uq[j],
					     part[j]);
		}
	}
	qsort(s->line, s->n, sizeof(*s->line), cmp_line);
	return 0;
}

/* ---- PostgreSQL catalogue ---- */

static int pg_schema(ks_db_t *db, schema_t *s)
{
	ks_db_stmt_t *st = NULL;

	/* kiln_schema holds the version on PostgreSQL (PRAGMA user_version
	 * on SQLite): not part of the compared schema */
	if (ks_db_prepare(db, "SELECT table_name FROM information_schema."
			      "tables WHERE table_schema = 'public' AND "
			      "table_type = 'BASE TABLE' AND table_name <> "
			      "'kiln_schema'",
			  &st) != KS_DB_EOK)
		return -1;
	while (ks_db_step(st) == KS_DB_ROW)
		add(s, "table %s", ks_db_col_text(st, 0));
	ks_db_finish(&st);
	if (ks_db_prepare(db, "SELECT table_name, column_name, data_type, "
			      "is_nullable FROM information_schema.columns "
			      "WHERE table_schema = 'public' AND table_name "
			      "<> 'kiln_schema'",
			  &st) != KS_DB_EOK)
		return -1;
	while (ks_db_step(st) == KS_DB_ROW)
		add(s, "column %s.%s %s%s", ks_db_col_text(st, 0),
		    ks_db_col_text(st, 1), type_class(ks_db_col_text(st, 2)),
		    strcmp(ks_db_col_text(st, 3), "NO") == 0 ? " not null"
							  : "");
	ks_db_finish(&st);
	if (ks_db_prepare(db,
			  "SELECT tc.relname, ix.indisprimary::int, "
			  "ix.indisunique::int, (ix.indpred IS NOT NULL)::int, "
			  "(SELECT string_agg(a.attname, "
			  "',' ORDER BY k.ord) FROM unnest(ix.indkey) WITH "
			  "ORDINALITY k(attnum, ord) JOIN pg_attribute a ON "
			  "a.attrelid = ix.indrelid AND a.attnum = k.attnum) "
			  "FROM pg_index ix JOIN pg_class tc ON tc.oid = "
			  "ix.indrelid JOIN pg_namespace n ON n.oid = "
			  "tc.relnamespace WHERE n.nspname = 'public' AND "
			  "tc.relname <> 'kiln_schema'",
			  &st) != KS_DB_EOK)
		return -1;
	while (ks_db_step(st) == KS_DB_ROW) {
		const char *t = ks_db_col_text(st, 0);
		const char *cols = ks_db_col_text(st, 4);

		if (ks_db_col_int(st, 1))
			add(s, "primary key %s(%s)", t, cols);
		else
			add(s, "%s %s(%s)%s",
			    ks_db_col_int(st, 2) ? "unique" : "index", t, cols,
			    ks_db_col_int(st, 3) ? " partial" : "");
	}
	ks_db_finish(&st);
	qsort(s->line, s->n, sizeof(*s->line), cmp_line);
	return 0;
}

/* Number of lines that differ; prints them when `show`. */
static size_t diff(const schema_t *a, const schema_t *b, int show)
{
	size_t i = 0, j = 0, n = 0;

	while (i < a->n || j < b->n) {
		int c = i == a->n   ? 1
			: j == b->n ? -1
				    : strcmp(a->line[i], b->line[j]);

		if (c == 0) {
			i++;
			j++;
			continue;
		}
		n++;
		if (show)
			fprintf(stderr, "  %s %s\n",
				c < 0 ? "only in SQLite:    " : "only in PostgreSQL:",
				c < 0 ? a->line[i] : b->line[j]);
		if (c < 0)
			i++;
		else
			j++;
	}
	return n;
}

static void test_numbering(void)
{
	unsigned i;

	CHECK(ks_db_migration_count == ks_db_pg_migration_count);
	for (i = 0; i < ks_db_migration_count &&
		    i < ks_db_pg_migration_count;
	     i++) {
		CHECK(ks_db_migrations[i].version == (int)i + 1);
		CHECK(ks_db_pg_migrations[i].version == (int)i + 1);
		CHECK(strcmp(ks_db_migrations[i].name,
			     ks_db_pg_migrations[i].name) == 0);
	}
}

static int pg_db(pgt_server_t *pg, const char *name, unsigned count,
		 schema_t *out)
{
	char url[600];
	ks_db_t *db = NULL;
	int r = -1;

	if (pgt_create_db(pg, name) != 0 ||
	    pgt_url(pg, name, url, sizeof(url)) == NULL ||
	    ks_db_open(url, &db) != KS_DB_EOK)
		goto out;
	if (apply(db, ks_db_pg_migrations, count) == 0)
		r = pg_schema(db, out);
out:
	ks_db_close(&db);
	return r;
}

int main(void)
{
	char *dir = tr_tmpdir();
	char *path = tr_path(dir, "schema.db");
	char url[600], why[256];
	ks_db_t *db = NULL;
	schema_t lite, pgfull, pgpart;
	pgt_server_t pg;
	size_t i, nd;

	memset(&lite, 0, sizeof(lite));
	memset(&pgfull, 0, sizeof(pgfull));
	memset(&pgpart, 0, sizeof(pgpart));
	ks_log_set_level(KS_LOG_ERROR);
	test_numbering();

	snprintf(url, sizeof(url), "sqlite:%s", path);
	CHECK(ks_db_open(url, &db) == KS_DB_EOK);
	CHECK(apply(db, ks_db_migrations, ks_db_migration_count) == 0);
	CHECK(sqlite_schema(db, &lite) == 0);
	ks_db_close(&db);
	/* the reader sees the tables the registry relies on */
	for (i = 0, nd = 0; i < lite.n; i++)
		if (strcmp(lite.line[i], "table audit") == 0 ||
		    strcmp(lite.line[i], "unique devices(uid)") == 0 ||
		    strcmp(lite.line[i], "unique audit(chain,chain_seq)") ==
			    0 ||
		    strcmp(lite.line[i], "unique sessions(uid) partial") == 0)
			nd++;
	CHECK(nd == 4);

	memset(&pg, 0, sizeof(pg));
	if (!pgt_available(why, sizeof(why))) {
		printf("PostgreSQL comparison skipped: %s\n", why);
	} else if (pgt_start(&pg, NULL) != 0) {
		CHECK(!"PostgreSQL server started");
	} else {
		CHECK(pg_db(&pg, "full", ks_db_pg_migration_count, &pgfull) ==
		      0);
		nd = diff(&lite, &pgfull, 1);
		if (nd != 0)
			fprintf(stderr, "the SQLite and PostgreSQL schemas "
					"differ in %zu line(s) (above)\n",
				nd);
		CHECK(nd == 0);
		CHECK(lite.n > 50 && lite.n == pgfull.n);
		/* A SQLite migration without its PostgreSQL twin: the
		 * comparison must see it. */
		CHECK(ks_db_pg_migration_count >= 1);
		CHECK(pg_db(&pg, "partial", ks_db_pg_migration_count - 1,
			    &pgpart) == 0);
		CHECK(diff(&lite, &pgpart, 0) > 0);
		pgt_stop(&pg);
	}
	schema_free(&lite);
	schema_free(&pgfull);
	schema_free(&pgpart);
	tr_rmdir(dir);
	free(dir);
	free(path);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
