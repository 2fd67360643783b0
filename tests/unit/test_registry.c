/*
 * Unit tests of the registry (host/lib/registry.c) on real SQLite files in
 * a temporary directory: migrations, the session state machine, unique
 * constraints, serial allocation, quotas, resume, threads sharing one
 * handle, crash safety (kill -9 of a child in the middle of transactions),
 * exports and signed lot manifests.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "host/lib/audit.h"
#include "host/lib/err.h"
#include "host/lib/export.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "tests/unit/test_registry_util.h"

typedef struct {
	char *dir;
	char *ca_pem;
	tr_ca_t ca;
	EVP_PKEY *station;
} fx_t;

static fx_t fx;

static int group_setup(void **state)
{
	(void)state;
	ks_log_set_level(KS_LOG_ERROR);
	fx.dir = tr_tmpdir();
	fx.ca_pem = tr_path(fx.dir, "ca.pem");
	tr_ca_init(&fx.ca, "kiln test CA", fx.ca_pem);
	fx.station = tr_p256();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tr_ca_free(&fx.ca);
	EVP_PKEY_free(fx.station);
	tr_rmdir(fx.dir);
	free(fx.ca_pem);
	free(fx.dir);
	return 0;
}

/* A fresh registry file with lot "L1" (prefix KLN, no quota). */
static ks_reg_t *fresh(const char *name, char **path_out)
{
	ks_reg_t *reg = NULL;
	char *path = tr_path(fx.dir, name);

	unlink(path);
	assert_int_equal(ks_reg_open(path, "st1", &reg), KS_OK);
	assert_int_equal(ks_reg_set_station_key(reg, fx.station), KS_OK);
	assert_int_equal(ks_reg_lot_create(reg, "L1", "prod", "KLN", -1,
					   "alice"),
			 KS_OK);
	if (path_out != NULL)
		*path_out = path;
	else
		free(path);
	return reg;
}

static int64_t query_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY,
					 NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL),
			 SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void query_text(const char *path, const char *sql, char *out,
		       size_t cap)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	out[0] = '\0';
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY,
					 NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL),
			 SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(out, cap, "%s", sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void assert_verifies(const char *path)
{
	ks_audit_report_t rep;
	int r = ks_audit_verify(path, fx.ca_pem, fx.station, &rep);

	if (r != KS_OK)
		fail_msg("verify: %s", rep.first_error);
	assert_true(rep.ok);
}

/* ---- migrations ---- */

static void test_migrations_from_empty(void **state)
{
	char *path = tr_path(fx.dir, "mig.db");
	ks_reg_t *reg = NULL;
	char mode[32];

	(void)state;
	unlink(path);
	assert_int_equal(ks_reg_open(path, "st1", &reg), KS_OK);
	ks_reg_close(&reg);
	assert_null(reg);
	assert_int_equal(query_int(path, "PRAGMA user_version"),
			 ks_reg_schema_version());
	assert_true(ks_reg_schema_version() >= 1);
	query_text(path, "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "wal");
	assert_int_equal(query_int(path, "SELECT count(*) FROM sqlite_master "
					 "WHERE type = 'table' AND name IN "
					 "('stations', 'lots', 'devices', "
					 "'certificates', 'sessions', "
					 "'session_steps', 'serial_counters', "
					 "'audit', 'meta')"),
			 9);
	assert_int_equal(query_int(path, "SELECT count(*) FROM sqlite_master "
					 "WHERE type = 'trigger'"),
			 2);

	/* Re-opening an up-to-date database changes nothing. */
	int64_t objects = query_int(path, "SELECT count(*) FROM sqlite_master");
	assert_int_equal(ks_reg_open(path, "st1", &reg), KS_OK);
	ks_reg_close(&reg);
	assert_int_equal(query_int(path, "SELECT count(*) FROM sqlite_master"),
			 objects);
	assert_int_equal(query_int(path, "SELECT count(*) FROM stations"), 1);

	/* A database newer than this build is refused. */
	assert_int_equal(tr_sql(path, "PRAGMA user_version = 999"), 0);
	assert_int_equal(ks_reg_open(path, "st1", &reg),
			 KS_ERR_UNSUPPORTED);
	assert_null(reg);
	free(path);
}

/* ---- the state machine ---- */

static void test_session_happy_path(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("happy.db", &path);
	ks_reg_device_t dev, dev2;
	ks_reg_session_t s;
	ks_reg_step_t *steps = NULL;
	ks_reg_counts_t c;
	ks_reg_lot_t lot;
	size_t n = 0;
	int64_t sid;

	(void)state;
	sid = tr_provision(reg, &fx.ca, "L1", "uid-0001", 0, 100,
			   KS_REG_ACTIVE);
	assert_true(sid > 0);
	assert_int_equal(ks_reg_session_get(reg, sid, &s), KS_OK);
	assert_int_equal(s.state, KS_REG_ACTIVE);
	assert_string_equal(s.serial, "KLN-000001");
	assert_string_equal(s.lot, "L1");
	assert_string_equal(s.profile, "prod");
	assert_true(s.has_pubkey && s.has_identity_digest && s.has_lock_bits);
	assert_int_equal(s.lock_bits, 3);
	assert_true(s.ended_ms >= s.started_ms);

	assert_int_equal(ks_reg_device_get(reg, (const uint8_t *)"uid-0001",
					   8, NULL, &dev),
			 KS_OK);
	assert_int_equal(dev.state, KS_REG_ACTIVE);
	assert_string_equal(dev.serial, "KLN-000001");
	assert_string_equal(dev.cert_serial, "64");
	assert_memory_equal(dev.pubkey_sha256, s.pubkey_sha256, 32);
	assert_int_equal(ks_reg_device_get(reg, NULL, 0, "KLN-000001", &dev2),
			 KS_OK);
	assert_int_equal(dev2.id, dev.id);
	assert_int_equal(ks_reg_device_get(reg, NULL, 0, "KLN-999999", &dev2),
			 KS_ERR_NOTFOUND);

	assert_int_equal(ks_reg_session_steps(reg, sid, &steps, &n), KS_OK);
	assert_int_equal(n, 7);
	assert_string_equal(steps[0].step, "RESERVED");
	assert_string_equal(steps[6].step, "ACTIVE");
	for (size_t i = 0; i < n; i++)
		assert_true(steps[i].duration_ms >= 0);
	free(steps);

	/* Steps out of order are refused. */
	assert_int_equal(ks_reg_verified(reg, sid, NULL), KS_ERR_STATE);
	assert_int_equal(ks_reg_fail(reg, sid, KS_REG_FAILED, "x", NULL),
			 KS_ERR_STATE);

	assert_int_equal(ks_reg_counts(reg, &c), KS_OK);
	assert_int_equal(c.sessions, 1);
	assert_int_equal(c.by_state[KS_REG_ACTIVE], 1);
	assert_int_equal(c.devices_active, 1);
	assert_true(c.audit_events >= 8);
	assert_int_equal(ks_reg_lot_get(reg, "L1", &lot), KS_OK);
	assert_int_equal(lot.active, 1);
	assert_int_equal(lot.quota, -1);

	/* Operator events: allowed types only, details must be JSON. */
	assert_int_equal(ks_reg_audit_event(reg, "bob", KS_REG_EV_OPERATOR,
					    "{\"note\":\"shift change\"}"),
			 KS_OK);
	assert_int_equal(ks_reg_audit_event(reg, "bob", KS_REG_EV_ACTIVE, NULL),
			 KS_ERR_ARG);
	assert_int_equal(ks_reg_audit_event(reg, "bob", KS_REG_EV_OPERATOR,
					    "not json"),
			 KS_ERR_ARG);
	ks_reg_close(&reg);
	assert_verifies(path);
	free(path);
}

/* ---- secure-boot key hash ---- */

static void test_boot_key(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("bootkey.db", &path);
	ks_reg_device_t dev;
	ks_reg_device_t *list = NULL;
	uint8_t h1[32], h2[32];
	size_t n = 0;
	int64_t sid;

	(void)state;
	memset(h1, 0xa5, sizeof(h1));
	memset(h2, 0x5a, sizeof(h2));
	sid = tr_provision(reg, &fx.ca, "L1", "uid-boot", 0, 300,
			   KS_REG_LOCKED);
	assert_true(sid > 0);
	assert_int_equal(ks_reg_device_get(reg, (const uint8_t *)"uid-boot",
					   8, NULL, &dev),
			 KS_OK);
	assert_false(dev.has_boot_key);
	assert_int_equal(ks_reg_boot_key(reg, sid, h1), KS_OK);
	/* repeated by a resumed session: no-op; another hash: refused */
	assert_int_equal(ks_reg_boot_key(reg, sid, h1), KS_OK);
	assert_int_equal(ks_reg_boot_key(reg, sid, h2), KS_ERR_STATE);
	assert_int_equal(ks_reg_boot_key(reg, 9999, h1), KS_ERR_NOTFOUND);
	assert_int_equal(ks_reg_boot_key(reg, sid, NULL), KS_ERR_ARG);
	assert_int_equal(ks_reg_device_get(reg, (const uint8_t *)"uid-boot",
					   8, NULL, &dev),
			 KS_OK);
	assert_true(dev.has_boot_key);
	assert_memory_equal(dev.boot_key_hash, h1, 32);
	assert_int_equal(ks_reg_active(reg, sid, NULL), KS_OK);
	/* an ended session records nothing more */
	assert_int_equal(ks_reg_boot_key(reg, sid, h1), KS_ERR_STATE);
	assert_int_equal(ks_reg_device_list(reg, NULL, &list, &n), KS_OK);
	assert_int_equal(n, 1);
	assert_true(list[0].has_boot_key);
	assert_memory_equal(list[0].boot_key_hash, h1, 32);
	free(list);
	/* an operator cannot forge the event */
	assert_int_equal(ks_reg_audit_event(reg, "bob",
					    KS_REG_EV_BOOT_KEY_WRITTEN, NULL),
			 KS_ERR_ARG);
	ks_reg_close(&reg);
	assert_int_equal(query_int(path, "SELECT count(*) FROM audit WHERE "
					 "type = 'BOOT_KEY_WRITTEN'"),
			 1);
	assert_int_equal(query_int(path, "SELECT count(*) FROM audit WHERE "
					 "type = 'BOOT_KEY_WRITTEN' AND details "
					 "LIKE '%a5a5a5a5%'"),
			 1);
	assert_verifies(path);
	free(path);
}

static void test_duplicates_and_reprovision(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("dup.db", &path);
	ks_reg_session_t s;
	ks_reg_device_t dev;
	EVP_PKEY *k = tr_p256();
	uint8_t ph[32];
	uint8_t *der;
	size_t der_len;
	char hex[32];
	int64_t sid, sid2;

	(void)state;
	assert_true(tr_provision(reg, &fx.ca, "L1", "uid-A", 0, 200,
				 KS_REG_ACTIVE) > 0);
	/* Same UID while ACTIVE: refused without re-provision. */
	assert_int_equal(tr_provision(reg, &fx.ca, "L1", "uid-A", 0, 201,
				      KS_REG_ACTIVE),
			 -KS_ERR_DUPLICATE);

	/* Certificate serial reuse refused by the database. */
	assert_int_equal(ks_reg_session_begin(reg, (const uint8_t *)"uid-B", 5,
					      "L1", NULL, 2, KS_REG_KEY_HOST,
					      0, NULL, &s),
			 KS_OK);
	sid = s.id;
	tr_pubhash(k, ph);
	assert_int_equal(ks_reg_keyed(reg, sid, ph, KS_REG_KEY_HOST, NULL),
			 KS_OK);
	der = tr_issue(&fx.ca, k, 200, "dup", &der_len);
	tr_serial_hex(200, hex, sizeof(hex));
	assert_int_equal(ks_reg_cert_issued(reg, sid, der, der_len, hex, ph, 0,
					    0, NULL),
			 KS_ERR_DUPLICATE);
	free(der);
	/* DER that does not match the claimed serial is refused. */
	der = tr_issue(&fx.ca, k, 202, "dup", &der_len);
	assert_int_equal(ks_reg_cert_issued(reg, sid, der, der_len, "CB", ph,
					    0, 0, NULL),
			 KS_ERR_VERIFY);
	tr_serial_hex(202, hex, sizeof(hex));
	assert_int_equal(ks_reg_cert_issued(reg, sid, der, der_len, hex, ph, 0,
					    0, NULL),
			 KS_OK);
	free(der);
	/* Same public key certified twice: refused. */
	assert_int_equal(ks_reg_session_begin(reg, (const uint8_t *)"uid-C", 5,
					      "L1", NULL, 3, KS_REG_KEY_HOST,
					      0, NULL, &s),
			 KS_OK);
	sid2 = s.id;
	assert_int_equal(ks_reg_keyed(reg, sid2, ph, KS_REG_KEY_HOST, NULL),
			 KS_OK);
	der = tr_issue(&fx.ca, k, 203, "dup2", &der_len);
	tr_serial_hex(203, hex, sizeof(hex));
	assert_int_equal(ks_reg_cert_issued(reg, sid2, der, der_len, hex, ph, 0,
					    0, NULL),
			 KS_ERR_DUPLICATE);
	free(der);
	/* Session B's certificate is never delivered: VOID. */
	assert_int_equal(ks_reg_fail(reg, sid, KS_REG_VOID, "link lost", NULL),
			 KS_OK);
	/* VOID without a certificate is not allowed; FAILED is. */
	assert_int_equal(ks_reg_fail(reg, sid2, KS_REG_VOID, "x", NULL),
			 KS_ERR_STATE);
	assert_int_equal(ks_reg_fail(reg, sid2, KS_REG_FAILED, "no CSR", NULL),
			 KS_OK);

	/* Explicit re-provision of uid-A: recorded, old cert SUPERSEDED. */
	sid = tr_provision(reg, &fx.ca, "L1", "uid-A", 1, 204, KS_REG_ACTIVE);
	assert_true(sid > 0);
	assert_int_equal(ks_reg_device_get(reg, (const uint8_t *)"uid-A", 5,
					   NULL, &dev),
			 KS_OK);
	assert_int_equal(dev.state, KS_REG_ACTIVE);
	tr_serial_hex(204, hex, sizeof(hex));
	assert_string_equal(dev.cert_serial, hex);
	ks_reg_close(&reg);
	assert_int_equal(query_int(path, "SELECT count(*) FROM certificates "
					 "WHERE status = 'SUPERSEDED' AND "
					 "serial_hex = 'c8'"),
			 1);
	assert_int_equal(query_int(path, "SELECT count(*) FROM certificates "
					 "WHERE status = 'VOID'"),
			 1);
	assert_int_equal(query_int(path, "SELECT count(*) FROM audit WHERE "
					 "type = 'REPROVISION' AND "
					 "cert_serial = 'c8'"),
			 1);
	assert_int_equal(query_int(path, "SELECT reprovision FROM sessions "
					 "WHERE id = (SELECT max(id) FROM "
					 "sessions)"),
			 1);
	/* Two ACTIVE certificates for one device: refused by the schema. */
	assert_int_not_equal(tr_sql(path, "UPDATE certificates SET status = "
					  "'ACTIVE' WHERE serial_hex = 'c8'"),
			     0);
	assert_verifies(path);
	EVP_PKEY_free(k);
	free(path);
}

static void test_serials_never_reused(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("serial.db", &path);
	ks_reg_session_t s;
	char prev[KS_REG_SERIAL_MAX] = "";
	char seen[20][KS_REG_SERIAL_MAX];
	int i, j;

	(void)state;
	for (i = 0; i < 20; i++) {
		/* The same board fails again and again, then succeeds. */
		assert_int_equal(ks_reg_session_begin(reg,
						      (const uint8_t *)"uid-F",
						      5, "L1", NULL, 0,
						      KS_REG_KEY_DEVICE, 0,
						      NULL, &s),
				 KS_OK);
		snprintf(seen[i], sizeof(seen[i]), "%s", s.serial);
		assert_true(strcmp(s.serial, prev) > 0);
		snprintf(prev, sizeof(prev), "%s", s.serial);
		for (j = 0; j < i; j++)
			assert_string_not_equal(seen[j], s.serial);
		assert_int_equal(ks_reg_fail(reg, s.id,
					     i % 2 ? KS_REG_FAILED
						   : KS_REG_SCRAPPED,
					     "retry", NULL),
				 KS_OK);
	}
	/* A restarted station abandons the rest of its leased block (a
	 * gap) and leases the next one: never a serial twice. */
	ks_reg_close(&reg);
	assert_int_equal(ks_reg_open(path, "st1", &reg), KS_OK);
	assert_int_equal(ks_reg_session_begin(reg, (const uint8_t *)"uid-F", 5,
					      "L1", NULL, 0, KS_REG_KEY_DEVICE,
					      0, NULL, &s),
			 KS_OK);
	assert_string_equal(s.serial, "KLN-000101");
	ks_reg_close(&reg);
	assert_int_equal(query_int(path, "SELECT count(DISTINCT device_serial) "
					 "FROM sessions"),
			 21);
	assert_verifies(path);
	free(path);
}

static void test_quota_and_lots(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("quota.db", &path);
	ks_reg_session_t s;
	ks_reg_lot_t *lots = NULL;
	size_t n = 0;
	int64_t sid;

	(void)state;
	assert_int_equal(ks_reg_lot_create(reg, "Q", "prod", "QQ", 2, NULL),
			 KS_OK);
	assert_int_equal(ks_reg_lot_create(reg, "Q", "prod", "QQ", 2, NULL),
			 KS_ERR_DUPLICATE);
	assert_true(tr_provision(reg, &fx.ca, "Q", "q1", 0, 300,
				 KS_REG_ACTIVE) > 0);
	sid = tr_provision(reg, &fx.ca, "Q", "q2", 0, 301, KS_REG_KEYED);
	assert_true(sid > 0);
	assert_int_equal(tr_provision(reg, &fx.ca, "Q", "q3", 0, 302,
				      KS_REG_ACTIVE),
			 -KS_ERR_QUOTA);
	/* A failed session gives its quota back (its serial is not). */
	assert_int_equal(ks_reg_fail(reg, sid, KS_REG_FAILED, "bad", NULL),
			 KS_OK);
	assert_true(tr_provision(reg, &fx.ca, "Q", "q3", 0, 303,
				 KS_REG_ACTIVE) > 0);
	assert_int_equal(ks_reg_lot_list(reg, &lots, &n), KS_OK);
	assert_int_equal(n, 2);
	assert_string_equal(lots[1].name, "Q");
	assert_int_equal(lots[1].active, 2);
	assert_int_equal(lots[1].failed, 1);
	assert_int_equal(lots[1].quota, 2);
	free(lots);
	/* Closed lots take no new sessions; unknown lots are not found. */
	assert_int_equal(ks_reg_lot_close(reg, "Q", "alice"), KS_OK);
	assert_int_equal(ks_reg_session_begin(reg, (const uint8_t *)"q9", 2,
					      "Q", NULL, 0, KS_REG_KEY_DEVICE,
					      0, NULL, &s),
			 KS_ERR_STATE);
	assert_int_equal(ks_reg_session_begin(reg, (const uint8_t *)"q9", 2,
					      "nope", NULL, 0,
					      KS_REG_KEY_DEVICE, 0, NULL, &s),
			 KS_ERR_NOTFOUND);
	ks_reg_close(&reg);
	assert_verifies(path);
	free(path);
}

static void test_pending_and_resume(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("resume.db", &path);
	ks_reg_session_t s, p;
	ks_reg_session_t *list = NULL;
	ks_reg_device_t *devs = NULL;
	ks_reg_filter_t f = { .lot = "L1", .station = NULL, .state = -1 };
	size_t n = 0;
	int64_t sid;

	(void)state;
	assert_int_equal(ks_reg_pending_session(reg, (const uint8_t *)"r1", 2,
						&p),
			 KS_ERR_NOTFOUND);
	sid = tr_provision(reg, &fx.ca, "L1", "r1", 0, 400, KS_REG_WRITTEN);
	assert_true(sid > 0);
	/* The board reconnects (or the station restarted). */
	ks_reg_close(&reg);
	assert_int_equal(ks_reg_open(path, "st1", &reg), KS_OK);
	assert_int_equal(ks_reg_session_begin(reg, (const uint8_t *)"r1", 2,
					      "L1", NULL, 0, KS_REG_KEY_DEVICE,
					      0, NULL, &s),
			 KS_ERR_BUSY);
	assert_int_equal(ks_reg_pending_session(reg, (const uint8_t *)"r1", 2,
						&p),
			 KS_OK);
	assert_int_equal(p.id, sid);
	assert_int_equal(p.state, KS_REG_WRITTEN);
	assert_true(p.has_identity_digest);
	/* Resume: the device reports the same digest, carry on. */
	assert_int_equal(ks_reg_verified(reg, sid, NULL), KS_OK);
	assert_int_equal(ks_reg_locked(reg, sid, 7, NULL), KS_OK);
	assert_int_equal(ks_reg_active(reg, sid, NULL), KS_OK);
	assert_int_equal(ks_reg_pending_session(reg, (const uint8_t *)"r1", 2,
						&p),
			 KS_ERR_NOTFOUND);

	assert_true(tr_provision(reg, &fx.ca, "L1", "r2", 0, 401,
				 KS_REG_KEYED) > 0);
	assert_int_equal(ks_reg_session_list(reg, "L1", -1, 0, &list, &n),
			 KS_OK);
	assert_int_equal(n, 2);
	/* newest first; the restart abandoned the rest of block 1..100 */
	assert_string_equal(list[0].serial, "KLN-000101");
	free(list);
	assert_int_equal(ks_reg_session_list(reg, NULL, KS_REG_ACTIVE, 0,
					     &list, &n),
			 KS_OK);
	assert_int_equal(n, 1);
	free(list);
	assert_int_equal(ks_reg_device_list(reg, &f, &devs, &n), KS_OK);
	assert_int_equal(n, 2);
	free(devs);
	f.state = KS_REG_KEYED;
	assert_int_equal(ks_reg_device_list(reg, &f, &devs, &n), KS_OK);
	assert_int_equal(n, 1);
	assert_int_equal(devs[0].uid_len, 2);
	assert_memory_equal(devs[0].uid, "r2", 2);
	free(devs);
	ks_reg_close(&reg);
	assert_verifies(path);
	free(path);
}

/* ---- threads ---- */

#define THREADS 4
#define PER_THREAD 8

typedef struct {
	ks_reg_t *reg;
	int idx;
	int failures;
} worker_t;

static void *worker(void *arg)
{
	worker_t *w = arg;
	char uid[32];
	int i;

	for (i = 0; i < PER_THREAD; i++) {
		snprintf(uid, sizeof(uid), "t%d-%d", w->idx, i);
		if (tr_provision(w->reg, &fx.ca, "L1", uid, 0,
				 (uint64_t)(1000 + w->idx * 100 + i),
				 KS_REG_ACTIVE) <= 0)
			w->failures++;
	}
	return NULL;
}

static void test_threads_share_handle(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("threads.db", &path);
	pthread_t th[THREADS];
	worker_t w[THREADS];
	ks_reg_counts_t c;
	int i;

	(void)state;
	ks_reg_set_checkpoint_interval(reg, 16);
	for (i = 0; i < THREADS; i++) {
		w[i] = (worker_t){ reg, i, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	assert_int_equal(ks_reg_counts(reg, &c), KS_OK);
	assert_int_equal(c.by_state[KS_REG_ACTIVE], THREADS * PER_THREAD);
	ks_reg_close(&reg);
	assert_int_equal(query_int(path, "SELECT count(DISTINCT serial) FROM "
					 "devices"),
			 THREADS * PER_THREAD);
	assert_true(query_int(path, "SELECT count(*) FROM audit WHERE type = "
				    "'CHECKPOINT'") >=
		    THREADS * PER_THREAD * 7 / 16);
	assert_verifies(path);
	free(path);
}

/* ---- crash safety ---- */

typedef struct {
	int target; /* hook call at which to stop */
	int calls;
	int fd;
} crash_t;

static void crash_hook(void *ctx, const char *point)
{
	crash_t *c = ctx;

	(void)point;
	if (++c->calls == c->target) {
		char b = 'H';

		if (write(c->fd, &b, 1) != 1)
			_exit(3);
		for (;;)
			pause(); /* the parent kills us here */
	}
}

static void child_run(const char *path, int target, int fd, const char *uid,
		      uint64_t serial)
{
	crash_t c = { target, 0, fd };
	ks_reg_t *reg = NULL;
	char b = 'D';

	if (ks_reg_open(path, "st1", &reg) != KS_OK ||
	    ks_reg_set_station_key(reg, fx.station) != KS_OK)
		_exit(2);
	ks_reg_set_checkpoint_interval(reg, 5);
	ks_reg_set_fault_hook(reg, crash_hook, &c);
	if (tr_provision(reg, &fx.ca, "L1", uid, 0, serial, KS_REG_ACTIVE) <= 0)
		_exit(4);
	ks_reg_set_fault_hook(reg, NULL, NULL);
	ks_reg_close(&reg);
	if (write(fd, &b, 1) != 1)
		_exit(3);
	_exit(0);
}

static void test_crash_kill9(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("crash.db", &path);
	ks_reg_session_t p;
	int target, kills = 0;
	int done = 0;

	(void)state;
	ks_reg_close(&reg);
	for (target = 1; !done && target < 200; target++) {
		char uid[32];
		int fds[2];
		pid_t pid;
		char b = 0;
		int status = 0;
		char ok[32];

		snprintf(uid, sizeof(uid), "crash-%03d", target);
		assert_int_equal(pipe(fds), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			child_run(path, target, fds[1], uid,
				  (uint64_t)(5000 + target));
		}
		close(fds[1]);
		assert_int_equal(read(fds[0], &b, 1), 1);
		close(fds[0]);
		if (b == 'H') {
			/* The child is inside a transaction: kill -9. */
			assert_int_equal(kill(pid, SIGKILL), 0);
			kills++;
		} else {
			assert_int_equal(b, 'D');
			done = 1;
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		/* Reopen: recovery, integrity and no half state. */
		assert_int_equal(ks_reg_open(path, "st1", &reg), KS_OK);
		assert_int_equal(ks_reg_set_station_key(reg, fx.station), KS_OK);
		query_text(path, "PRAGMA integrity_check", ok, sizeof(ok));
		assert_string_equal(ok, "ok");
		if (ks_reg_pending_session(reg, (const uint8_t *)uid,
					   strlen(uid), &p) == KS_OK) {
			/* Resume decision: give up on it, voiding any
			 * certificate that was recorded. */
			assert_int_equal(ks_reg_fail(reg, p.id, KS_REG_FAILED,
						     "station crashed", NULL),
					 KS_OK);
		}
		ks_reg_close(&reg);
		assert_verifies(path);
	}
	assert_true(done);
	assert_true(kills > 20);
	/* Each session is whole: every one has its RESERVED event. */
	assert_int_equal(query_int(path, "SELECT count(*) FROM sessions s "
					 "WHERE NOT EXISTS (SELECT 1 FROM "
					 "audit a WHERE a.session_id = s.id "
					 "AND a.type = 'SESSION_RESERVED')"),
			 0);
	print_message("crash: %d kill -9 points, all recovered\n", kills);
	free(path);
}

/* ---- no private keys in the registry ---- */

static int file_contains(const char *path, const uint8_t *needle, size_t n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, got;
	int found = 0;

	if (f == NULL)
		return 0;
	do {
		if (len + 65536 > cap) {
			cap = cap ? cap * 2 : 1 << 20;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	fclose(f);
	for (size_t i = 0; i + n <= len && !found; i++)
		found = memcmp(buf + i, needle, n) == 0;
	free(buf);
	return found;
}

static void priv_bytes(EVP_PKEY *k, uint8_t out[32])
{
	BIGNUM *bn = NULL;

	assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY,
					       &bn),
			 1);
	assert_int_equal(BN_bn2binpad(bn, out, 32), 32);
	BN_clear_free(bn);
}

static void test_no_private_key_bytes(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("nokeys.db", &path);
	ks_reg_session_t s;
	EVP_PKEY *hk = tr_p256();
	uint8_t ph[32], d[32], priv[32], spriv[32];
	uint8_t *der;
	size_t der_len;
	char hex[32];
	char *wal;

	(void)state;
	/* A host-origin key: the station made it, only its hash and the
	 * certificate are recorded. */
	assert_int_equal(ks_reg_session_begin(reg, (const uint8_t *)"hk1", 3,
					      "L1", NULL, 0, KS_REG_KEY_HOST,
					      0, NULL, &s),
			 KS_OK);
	tr_pubhash(hk, ph);
	assert_int_equal(ks_reg_keyed(reg, s.id, ph, KS_REG_KEY_HOST, NULL),
			 KS_OK);
	der = tr_issue(&fx.ca, hk, 600, "hk1", &der_len);
	tr_serial_hex(600, hex, sizeof(hex));
	assert_int_equal(ks_reg_cert_issued(reg, s.id, der, der_len, hex, ph, 0,
					    0, NULL),
			 KS_OK);
	memset(d, 1, sizeof(d));
	assert_int_equal(ks_reg_written(reg, s.id, d, NULL), KS_OK);
	assert_int_equal(ks_reg_verified(reg, s.id, NULL), KS_OK);
	assert_int_equal(ks_reg_locked(reg, s.id, 1, NULL), KS_OK);
	assert_int_equal(ks_reg_active(reg, s.id, NULL), KS_OK);
	assert_int_equal(ks_audit_checkpoint(reg, "kilnd"), KS_OK);
	priv_bytes(hk, priv);
	priv_bytes(fx.station, spriv);
	wal = tr_path(fx.dir, "nokeys.db-wal");
	/* While open (data still in the WAL) and after close. */
	assert_false(file_contains(path, priv, 32));
	assert_false(file_contains(wal, priv, 32));
	assert_false(file_contains(wal, spriv, 32));
	ks_reg_close(&reg);
	assert_false(file_contains(path, priv, 32));
	assert_false(file_contains(path, spriv, 32));
	assert_false(file_contains(path, priv, 16));
	/* The scan can find things: the certificate is there. */
	assert_true(file_contains(path, der, der_len));
	free(der);
	free(wal);
	EVP_PKEY_free(hk);
	free(path);
}

/* ---- exports ---- */

/* ---- hostile certificates handed to ks_reg_cert_issued ---- */

/* Long enough that the certificate and its TBS take two length bytes. */
#define HOSTILE_CN "hostile-certificate-a-name-long-enough-for-two-byte-lengths-0001"

/* der with its serial INTEGER's content replaced by ser[0..sn) (the TBS
 * and Certificate lengths adjusted; the signature is not redone: the
 * registry records what its signer made and does not verify it). */
static uint8_t *splice_serial(const uint8_t *der, size_t len,
			      const uint8_t *ser, size_t sn, size_t *out_len)
{
	size_t slen, olen, tlen, n;
	uint8_t *o;

	/* 30 82 LL LL | 30 82 LL LL | a0 03 02 01 02 | 02 len serial */
	assert_true(len > 16 && der[0] == 0x30 && der[1] == 0x82 &&
		    der[4] == 0x30 && der[5] == 0x82 && der[8] == 0xa0 &&
		    der[13] == 0x02 && der[14] < 0x80);
	slen = der[14];
	olen = ((size_t)der[2] << 8 | der[3]) + sn - slen;
	tlen = ((size_t)der[6] << 8 | der[7]) + sn - slen;
	n = len + sn - slen;
	o = malloc(n);
	assert_non_null(o);
	memcpy(o, der, 15);
	o[2] = (uint8_t)(olen >> 8);
	o[3] = (uint8_t)olen;
	o[6] = (uint8_t)(tlen >> 8);
	o[7] = (uint8_t)tlen;
	o[14] = (uint8_t)sn;
	memcpy(o + 15, ser, sn);
	memcpy(o + 15 + sn, der + 15 + slen, len - 15 - slen);
	*out_len = n;
	return o;
}

static void refuse(ks_reg_t *reg, int64_t sid, const uint8_t *der,
		   size_t len, const char *hex, const uint8_t ph[32],
		   const char *what)
{
	int r = ks_reg_cert_issued(reg, sid, der, len, hex, ph, 0, 0, NULL);

	if (r == KS_OK)
		fail_msg("%s: accepted", what);
	if (r != KS_ERR_VERIFY && r != KS_ERR_ARG)
		fail_msg("%s: refused with %s, not a verification error",
			 what, ks_strerror(r));
}

static void test_hostile_certificates(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("hostile.db", &path);
	ks_reg_session_t s;
	EVP_PKEY *k = tr_p256(), *k384 = NULL;
	uint8_t ph[32], ph384[32];
	uint8_t *der, *bad;
	size_t der_len, bad_len, i;
	char hex[32], got[64];
	EVP_PKEY_CTX *kc;

	(void)state;
	assert_int_equal(ks_reg_session_begin(reg, (const uint8_t *)"uid-H", 5,
					      "L1", NULL, 2, KS_REG_KEY_HOST,
					      0, NULL, &s),
			 KS_OK);
	tr_pubhash(k, ph);
	assert_int_equal(ks_reg_keyed(reg, s.id, ph, KS_REG_KEY_HOST, NULL),
			 KS_OK);
	/* serial 0xc8: high bit set, so DER carries one leading zero byte */
	der = tr_issue(&fx.ca, k, 0xc8, HOSTILE_CN, &der_len);
	assert_true(der_len > 16 && der[13] == 2 && der[14] == 2 &&
		    der[15] == 0 && der[16] == 0xc8);
	tr_serial_hex(0xc8, hex, sizeof(hex));

	/* truncated at every length */
	for (i = 1; i < der_len; i++)
		refuse(reg, s.id, der, i, hex, ph, "truncated");
	/* trailing garbage */
	bad = malloc(der_len + 1);
	assert_non_null(bad);
	memcpy(bad, der, der_len);
	bad[der_len] = 0;
	refuse(reg, s.id, bad, der_len + 1, hex, ph, "trailing byte");
	/* outer length one longer than the bytes, and the TBS's one longer
	 * than it is */
	bad[3]++;
	refuse(reg, s.id, bad, der_len + 1, hex, ph, "overlong length");
	bad[3]--;
	bad[7]++;
	refuse(reg, s.id, bad, der_len, hex, ph, "overlong TBS length");
	bad[7]--;
	free(bad);
	/* a length in more bytes than needed (30 83 00 LL LL) */
	bad = malloc(der_len + 1);
	assert_non_null(bad);
	bad[0] = 0x30;
	bad[1] = 0x83;
	bad[2] = 0;
	memcpy(bad + 3, der + 2, der_len - 2);
	refuse(reg, s.id, bad, der_len + 1, hex, ph, "non-minimal length");
	free(bad);
	/* negative serial, padded serials, an empty one */
	{
		static const uint8_t neg[] = { 0xc8 };
		static const uint8_t pad1[] = { 0x00, 0x00, 0xc8 };
		static const uint8_t pad2[] = { 0x00, 0x05 };
		static const struct {
			const uint8_t *b;
			size_t n;
			const char *what;
		} sers[] = { { neg, sizeof(neg), "negative serial" },
			     { pad1, sizeof(pad1), "padded serial" },
			     { pad2, sizeof(pad2), "zero-padded serial" },
			     { pad2, 0, "empty serial" } };

		for (i = 0; i < sizeof(sers) / sizeof(sers[0]); i++) {
			bad = splice_serial(der, der_len, sers[i].b, sers[i].n,
					    &bad_len);
			refuse(reg, s.id, bad, bad_len, "C8", ph,
			       sers[i].what);
			refuse(reg, s.id, bad, bad_len, "5", ph,
			       sers[i].what);
			free(bad);
		}
	}
	/* the splice itself is faithful: the same serial bytes verify */
	{
		static const uint8_t same[] = { 0x00, 0xc8 };

		bad = splice_serial(der, der_len, same, sizeof(same), &bad_len);
		assert_int_equal(bad_len, der_len);
		assert_memory_equal(bad, der, der_len);
		free(bad);
	}
	/* a key that is not P-256, and P-256 in compressed form */
	kc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	assert_non_null(kc);
	assert_int_equal(EVP_PKEY_keygen_init(kc), 1);
	assert_int_equal(EVP_PKEY_CTX_set_group_name(kc, "P-384"), 1);
	assert_int_equal(EVP_PKEY_keygen(kc, &k384), 1);
	EVP_PKEY_CTX_free(kc);
	bad = tr_issue(&fx.ca, k384, 0xc8, HOSTILE_CN, &bad_len);
	tr_pubhash(k384, ph384);
	refuse(reg, s.id, bad, bad_len, hex, ph384, "P-384 key");
	refuse(reg, s.id, bad, bad_len, hex, ph, "P-384 key");
	free(bad);
	assert_int_equal(EVP_PKEY_set_utf8_string_param(
				 k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
				 "compressed"),
			 1);
	bad = tr_issue(&fx.ca, k, 0xc8, HOSTILE_CN, &bad_len);
	assert_true(bad_len < der_len);
	refuse(reg, s.id, bad, bad_len, hex, ph, "compressed P-256 key");
	free(bad);

	/* nothing was recorded, the session is still KEYED... */
	assert_int_equal(query_int(path, "SELECT count(*) FROM certificates"),
			 0);
	assert_int_equal(query_int(path, "SELECT count(*) FROM audit WHERE "
					 "type = 'CERT_ISSUED'"),
			 0);
	/* ...and the well-formed certificate with its leading-zero serial
	 * is accepted and recorded under its minimal hex */
	assert_int_equal(ks_reg_cert_issued(reg, s.id, der, der_len, hex, ph, 0,
					    0, NULL),
			 KS_OK);
	query_text(path, "SELECT serial_hex FROM certificates", got,
		   sizeof(got));
	assert_true(strcasecmp(got, "c8") == 0);
	assert_int_equal(query_int(path, "SELECT count(*) FROM audit WHERE "
					 "type = 'CERT_ISSUED'"),
			 1);
	free(der);
	ks_reg_close(&reg);
	assert_verifies(path);
	EVP_PKEY_free(k384);
	EVP_PKEY_free(k);
	free(path);
}

static void test_exports_and_manifest(void **state)
{
	char *path = NULL;
	ks_reg_t *reg = fresh("export.db", &path);
	char *csv_path = tr_path(fx.dir, "export.csv");
	char *man_path = tr_path(fx.dir, "L1.manifest.json");
	char *sig_path = tr_path(fx.dir, "L1.manifest.json.sig");
	char *m = NULL, *sig = NULL;
	size_t mlen = 0;
	char *buf = NULL;
	size_t blen = 0;
	FILE *f;
	json_t *j, *devs;
	json_error_t jerr;
	EVP_PKEY *other = tr_p256();

	(void)state;
	assert_true(tr_provision(reg, &fx.ca, "L1", "e1", 0, 700,
				 KS_REG_ACTIVE) > 0);
	assert_true(tr_provision(reg, &fx.ca, "L1", "e2", 0, 701,
				 KS_REG_WRITTEN) > 0);

	/* JSON export parses and holds every section. */
	f = open_memstream(&buf, &blen);
	assert_non_null(f);
	assert_int_equal(ks_export_audit(reg, "json", f), KS_OK);
	fclose(f);
	j = json_loads(buf, 0, &jerr);
	assert_non_null(j);
	assert_int_equal(json_array_size(json_object_get(j, "devices")), 2);
	assert_int_equal(json_array_size(json_object_get(j, "certificates")),
			 2);
	assert_true(json_array_size(json_object_get(j, "events")) >= 12);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(j, "devices"),
						   0),
				    "uid")),
			    "6531"); /* hex of "e1" */
	json_decref(j);
	free(buf);
	buf = NULL;

	/* CSV export: three sections with headers. */
	f = fopen(csv_path, "w+");
	assert_non_null(f);
	assert_int_equal(ks_export_audit(reg, "csv", f), KS_OK);
	rewind(f);
	{
		char line[8192];
		int headers = 0, devices = 0;

		while (fgets(line, sizeof(line), f) != NULL) {
			if (strncmp(line, "record,", 7) == 0)
				headers++;
			if (strncmp(line, "devices,", 8) == 0)
				devices++;
		}
		assert_int_equal(headers, 3);
		assert_int_equal(devices, 2);
	}
	fclose(f);
	assert_int_equal(ks_export_audit(reg, "xml", stdout), KS_ERR_ARG);

	/* Manifest: signed, verifiable, tamper-evident. */
	assert_int_equal(ks_export_manifest(reg, "L1", fx.station, &m, &mlen,
					    &sig),
			 KS_OK);
	assert_int_equal(ks_export_manifest_verify((const uint8_t *)m, mlen,
						   sig, fx.station),
			 KS_OK);
	assert_int_equal(ks_export_manifest_verify((const uint8_t *)m, mlen,
						   sig, other),
			 KS_ERR_VERIFY);
	j = json_loadb(m, mlen, 0, &jerr);
	assert_non_null(j);
	devs = json_object_get(j, "devices");
	assert_int_equal(json_array_size(devs), 2);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(devs, 0), "state")),
			    "ACTIVE");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(devs, 0), "cert_serial")),
			    "02bc");
	assert_true(json_is_null(json_object_get(json_array_get(devs, 1),
						 "cert_serial")));
	json_decref(j);
	m[mlen / 2] ^= 1;
	assert_int_equal(ks_export_manifest_verify((const uint8_t *)m, mlen,
						   sig, fx.station),
			 KS_ERR_VERIFY);
	free(m);
	free(sig);

	assert_int_equal(ks_export_manifest_write(reg, "L1", fx.station,
						  man_path),
			 KS_OK);
	assert_int_equal(ks_export_manifest_verify_file(man_path, fx.station),
			 KS_OK);
	/* Change one byte of the manifest file: the signature fails. */
	assert_int_equal(tr_copy(man_path, csv_path), 0);
	f = fopen(man_path, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, 10, SEEK_SET), 0);
	fputc('X', f);
	fclose(f);
	assert_int_equal(ks_export_manifest_verify_file(man_path, fx.station),
			 KS_ERR_VERIFY);
	assert_int_equal(tr_copy(csv_path, man_path), 0);
	assert_int_equal(ks_export_manifest_verify_file(man_path, fx.station),
			 KS_OK);
	unlink(sig_path);
	assert_int_not_equal(ks_export_manifest_verify_file(man_path,
							    fx.station),
			     KS_OK);
	ks_reg_close(&reg);
	EVP_PKEY_free(other);
	free(csv_path);
	free(man_path);
	free(sig_path);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrations_from_empty),
		cmocka_unit_test(test_session_happy_path),
		cmocka_unit_test(test_boot_key),
		cmocka_unit_test(test_duplicates_and_reprovision),
		cmocka_unit_test(test_serials_never_reused),
		cmocka_unit_test(test_quota_and_lots),
		cmocka_unit_test(test_pending_and_resume),
		cmocka_unit_test(test_threads_share_handle),
		cmocka_unit_test(test_crash_kill9),
		cmocka_unit_test(test_no_private_key_bytes),
		cmocka_unit_test(test_hostile_certificates),
		cmocka_unit_test(test_exports_and_manifest),
	};

	return cmocka_run_group_tests_name("registry", tests, group_setup,
					   group_teardown);
}
