/*
 * Unit tests of the database layer (host/lib/db.c) on both backends, and
 * of the registry on PostgreSQL: statements, the statement cache, blobs,
 * error classes, savepoints, streaming, URL masking, a connection lost
 * while idle (server stopped -m immediate) and found again; the SQLite and
 * PostgreSQL schemas compared table by table, column by column and unique
 * index by unique index so the two migration sets cannot drift; a session
 * driven to ACTIVE on PostgreSQL with its unique constraints. The
 * PostgreSQL part uses a throwaway server (tests/pg/pgtest.h) and is
 * skipped with a message where none can be started.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/lib/audit.h"
#include "host/lib/db.h"
#include "host/lib/err.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
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

/* The layer on an open, empty database of either backend. */
static void layer_checks(ks_db_t *db)
{
	ks_db_stmt_t *st = NULL, *st2 = NULL;
	static const uint8_t blob[5] = { 0, 1, 0xff, '\\', 'x' };
	size_t cached;
	int n;

	if (ks_db_backend(db) == KS_DB_PG)
		CHECK(ks_db_exec(db, "DROP TABLE IF EXISTS t; CREATE TABLE t "
				     "(id BIGINT PRIMARY KEY, name TEXT "
				     "UNIQUE, b BYTEA)") == KS_DB_EOK);
	else
		CHECK(ks_db_exec(db, "DROP TABLE IF EXISTS t; CREATE TABLE t "
				     "(id INTEGER PRIMARY KEY, name TEXT "
				     "UNIQUE, b BLOB)") == KS_DB_EOK);
	CHECK(ks_db_begin_write(db) == KS_DB_EOK);
	CHECK(ks_db_in_tx(db));
	CHECK(ks_db_prepare(db, "INSERT INTO t(id, name, b) VALUES(?, ?, ?)",
			    &st) == KS_DB_EOK);
	ks_db_bind_int64(st, 1, 1);
	ks_db_bind_text(st, 2, "one");
	ks_db_bind_blob(st, 3, blob, sizeof(blob));
	CHECK(ks_db_step(st) == KS_DB_DONE);
	ks_db_finish(&st);
	CHECK(st == NULL);
	cached = ks_db_cache_size(db);
	/* the same SQL again: the cached statement, nothing new prepared */
	CHECK(ks_db_prepare(db, "INSERT INTO t(id, name, b) VALUES(?, ?, ?)",
			    &st) == KS_DB_EOK);
	CHECK(ks_db_cache_size(db) == cached);
	ks_db_bind_int64(st, 1, 2);
	ks_db_bind_text(st, 2, "one");
	ks_db_bind_null(st, 3);
	CHECK(ks_db_step(st) == KS_DB_ECONSTRAINT);
	ks_db_finish(&st);
	/* the rejected row took the transaction down on PostgreSQL: redo */
	ks_db_rollback(db);
	CHECK(!ks_db_in_tx(db));
	CHECK(ks_db_begin_write(db) == KS_DB_EOK);
	CHECK(ks_db_prepare(db, "INSERT INTO t(id, name, b) VALUES(?1, ?2, "
				"?3)", &st) == KS_DB_EOK);
	ks_db_bind_int64(st, 1, 1);
	ks_db_bind_text(st, 2, "one");
	ks_db_bind_blob(st, 3, blob, sizeof(blob));
	CHECK(ks_db_step(st) == KS_DB_DONE);
	ks_db_finish(&st);
	CHECK(ks_db_savepoint(db, "sp1") == KS_DB_EOK);
	CHECK(ks_db_exec(db, "INSERT INTO t(id, name) VALUES(3, 'three')") ==
	      KS_DB_EOK);
	ks_db_rollback_to(db, "sp1");
	CHECK(ks_db_commit(db) == KS_DB_EOK);
	CHECK(!ks_db_in_tx(db));

	CHECK(ks_db_prepare(db, "SELECT id, name, b, name IS NULL FROM t "
				"WHERE name = ? OR id = ?2 ORDER BY id",
			    &st) == KS_DB_EOK);
	ks_db_bind_text(st, 1, "one");
	ks_db_bind_int64(st, 2, 3);
	CHECK(ks_db_step(st) == KS_DB_ROW);
	CHECK(ks_db_col_count(st) == 4);
	CHECK(ks_db_col_int64(st, 0) == 1);
	CHECK(strcmp(ks_db_col_text(st, 1), "one") == 0);
	CHECK(ks_db_col_type(st, 2) == KS_DB_T_BLOB);
	CHECK(ks_db_col_bytes(st, 2) == sizeof(blob));
	CHECK(ks_db_col_blob(st, 2) != NULL &&
	      memcmp(ks_db_col_blob(st, 2), blob, sizeof(blob)) == 0);
	CHECK(ks_db_col_int(st, 3) == 0);
	/* nested use of the same SQL gets its own statement */
	CHECK(ks_db_prepare(db, "SELECT id, name, b, name IS NULL FROM t "
				"WHERE name = ? OR id = ?2 ORDER BY id",
			    &st2) == KS_DB_EOK);
	CHECK(st2 != st);
	ks_db_finish(&st2);
	CHECK(ks_db_step(st) == KS_DB_DONE); /* savepoint undid id 3 */
	ks_db_finish(&st);

	/* streaming */
	CHECK(ks_db_exec(db, "INSERT INTO t(id, name) VALUES(10, 'a'), "
			     "(11, 'b'), (12, 'c')") == KS_DB_EOK);
	CHECK(ks_db_prepare_stream(db, "SELECT id FROM t ORDER BY id", &st) ==
	      KS_DB_EOK);
	n = 0;
	while (ks_db_step(st) == KS_DB_ROW)
		n++;
	ks_db_finish(&st);
	CHECK(n == 4);
	/* a stream left half-read is drained by finish */
	CHECK(ks_db_prepare_stream(db, "SELECT id FROM t ORDER BY id", &st) ==
	      KS_DB_EOK);
	CHECK(ks_db_step(st) == KS_DB_ROW);
	ks_db_finish(&st);
	CHECK(ks_db_exec(db, "DELETE FROM t WHERE id >= 10") == KS_DB_EOK);

	/* errors name what was wrong */
	CHECK(ks_db_prepare(db, "SELECT nope FROM t", &st) != KS_DB_EOK);
	CHECK(strstr(ks_db_errmsg(db), "nope") != NULL);
	CHECK(ks_db_exec(db, "DROP TABLE t") == KS_DB_EOK);
}

/* The registry on PostgreSQL: one session to ACTIVE, duplicates refused. */
static void registry_checks(const char *url, const char *dir)
{
	ks_reg_t *reg = NULL;
	ks_reg_device_t dev;
	tr_ca_t ca;
	char *ca_pem = tr_path(dir, "ca.pem");
	uint8_t h[32];
	int64_t sid;

	tr_ca_init(&ca, "kiln test CA", ca_pem);
	CHECK(ks_reg_open(url, "st1", &reg) == KS_OK);
	if (reg == NULL)
		goto out;
	CHECK(ks_reg_lot_create(reg, "L1", "prod", "KLN", -1, "alice") ==
	      KS_OK);
	CHECK(ks_reg_lot_create(reg, "L1", "prod", "KLN", -1, "alice") ==
	      KS_ERR_DUPLICATE);
	sid = tr_provision(reg, &ca, "L1", "uid-0001", 0, 100, KS_REG_LOCKED);
	CHECK(sid > 0);
	memset(h, 0x11, sizeof(h));
	CHECK(ks_reg_boot_key(reg, sid, h) == KS_OK);
	CHECK(ks_reg_active(reg, sid, NULL) == KS_OK);
	CHECK(ks_reg_device_get(reg, (const uint8_t *)"uid-0001", 8, NULL,
				&dev) == KS_OK);
	CHECK(dev.state == KS_REG_ACTIVE && dev.has_boot_key);
	CHECK(strcmp(dev.serial, "KLN-000001") == 0);
	/* a second identity for the UID is refused */
	CHECK(tr_provision(reg, &ca, "L1", "uid-0001", 0, 101,
			   KS_REG_ACTIVE) == -KS_ERR_DUPLICATE);
	/* the same certificate serial for another UID is refused */
	CHECK(tr_provision(reg, &ca, "L1", "uid-0002", 0, 100,
			   KS_REG_ACTIVE) == -KS_ERR_DUPLICATE);
	CHECK(tr_provision(reg, &ca, "L1", "uid-0003", 0, 102,
			   KS_REG_ACTIVE) > 0);
	ks_reg_close(&reg);
out:
	tr_ca_free(&ca);
	free(ca_pem);
}

/*
 * A PostgreSQL connection idle while the server is stopped with -m
 * immediate: its backend sends a WARNING and resets the socket, after
 * which libpq still says CONNECTION_OK. The next read must be seen as a
 * lost connection (KS_DB_ECONN, within a short reconnect window), not as
 * an SQL error, and must read again once the server is back.
 */
static void lost_idle_connection(pgt_server_t *pg, const char *url)
{
	ks_db_t *db = NULL;
	ks_db_stmt_t *st = NULL;
	int rc;

	CHECK(ks_db_open(url, &db) == KS_DB_EOK);
	CHECK(ks_db_prepare(db, "SELECT 41 + 1", &st) == KS_DB_EOK);
	CHECK(ks_db_step(st) == KS_DB_ROW && ks_db_col_int(st, 0) == 42);
	ks_db_finish(&st);
	CHECK(pgt_halt(pg) == 0);
	ks_db_set_timeout_ms(db, 300);
	/* a cached statement, a read outside any transaction */
	rc = ks_db_prepare(db, "SELECT 41 + 1", &st);
	if (rc == KS_DB_EOK)
		rc = ks_db_step(st);
	ks_db_finish(&st);
	CHECK(rc == KS_DB_ECONN);
	CHECK(!ks_db_connected(db));
	CHECK(ks_db_begin_read(db) == KS_DB_ECONN);
	CHECK(pgt_resume(pg) == 0);
	ks_db_set_timeout_ms(db, 10000);
	CHECK(ks_db_prepare(db, "SELECT 41 + 1", &st) == KS_DB_EOK);
	CHECK(ks_db_step(st) == KS_DB_ROW && ks_db_col_int(st, 0) == 42);
	ks_db_finish(&st);
	CHECK(ks_db_connected(db));
	ks_db_close(&db);
}

static void test_url(void)
{
	char out[256];

	ks_db_url_mask("postgresql://kiln:s3cret@db.example/kiln", out,
		       sizeof(out));
	CHECK(strstr(out, "s3cret") == NULL);
	CHECK(strcmp(out, "postgresql://kiln:***@db.example/kiln") == 0);
	ks_db_url_mask("postgres://h/db?user=k&password=pw&sslmode=require",
		       out, sizeof(out));
	CHECK(strstr(out, "pw&") == NULL && strstr(out, "sslmode") != NULL);
	ks_db_url_mask("/var/lib/kiln/registry.db", out, sizeof(out));
	CHECK(strcmp(out, "/var/lib/kiln/registry.db") == 0);
	CHECK(ks_db_url_backend("sqlite:/x.db") == KS_DB_SQLITE);
	CHECK(ks_db_url_backend("/x.db") == KS_DB_SQLITE);
	CHECK(ks_db_url_backend("postgresql://h/d") == KS_DB_PG);
	CHECK(ks_db_url_backend("postgres://h/d") == KS_DB_PG);
}

int main(void)
{
	char *dir = tr_tmpdir();
	char *path = tr_path(dir, "layer.db");
	char url[600], why[256];
	ks_db_t *db = NULL;
	pgt_server_t pg;

	ks_log_set_level(KS_LOG_ERROR);
	test_url();
	snprintf(url, sizeof(url), "sqlite:%s", path);
	CHECK(ks_db_open(url, &db) == KS_DB_EOK);
	CHECK(strcmp(ks_db_backend_name(db), "sqlite") == 0);
	layer_checks(db);
	ks_db_close(&db);
	CHECK(db == NULL);

	memset(&pg, 0, sizeof(pg));
	if (!pgt_available(why, sizeof(why))) {
		printf("PostgreSQL part skipped: %s\n", why);
	} else if (pgt_start(&pg, NULL) != 0) {
		CHECK(!"PostgreSQL server started");
	} else {
		CHECK(pgt_create_db(&pg, "layer") == 0);
		CHECK(pgt_url(&pg, "layer", url, sizeof(url)) != NULL);
		CHECK(ks_db_open(url, &db) == KS_DB_EOK);
		CHECK(strcmp(ks_db_backend_name(db), "postgresql") == 0);
		layer_checks(db);
		ks_db_close(&db);
		lost_idle_connection(&pg, url);
		CHECK(pgt_create_db(&pg, "reg") == 0);
		CHECK(pgt_url(&pg, "reg", url, sizeof(url)) != NULL);
		registry_checks(url, dir);
		pgt_stop(&pg);
	}
	tr_rmdir(dir);
	free(dir);
	free(path);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
