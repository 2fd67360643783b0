/*
 * The registry shared by a line of stations, on SQLite (two handles on one
 * file) and on a throwaway PostgreSQL server (tests/pg/pgtest.h; that part
 * is skipped with a message where no server can be started):
 *
 *  - a pending session belongs to the station that opened it: another
 *    station's begin, resume look-up, steps and fail are refused (BUSY),
 *    naming the holder; an operator releases a dead station's session;
 *  - per-station audit chains with their own signed checkpoints, verified
 *    with every station key (and refused with only one of them);
 *  - leased serial blocks: disjoint blocks per station, refilled before
 *    running dry, the remainder abandoned on restart (a gap, never a
 *    duplicate);
 *  - two stations reserving the same UIDs at once from two threads:
 *    exactly one wins each UID, the loser records nothing, no chain forks;
 *  - a schema-2 registry (one global chain, head in meta) migrates to
 *    per-station chains and still verifies;
 *  - a field enrollment recorded by another station than the one that
 *    issued the claim, and the claim's use count.
 *
 * KILN_TEST_AUDIT_EVENTS=N also times ks_audit_verify() over N events on
 * each backend (printed, not checked).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/migrations.h"
#include "host/lib/audit.h"
#include "host/lib/db.h"
#include "host/lib/err.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "tests/pg/pgtest.h"
#include "tests/unit/test_registry_util.h"

static int passed, failed;
static const char *backend = "sqlite";

#define CHECK(cond)                                                       \
	do {                                                              \
		if (cond) {                                               \
			passed++;                                         \
		} else {                                                  \
			failed++;                                         \
			fprintf(stderr, "%s:%d: [%s] FAILED: %s\n",       \
				__FILE__, __LINE__, backend, #cond);      \
		}                                                         \
	} while (0)

typedef struct {
	tr_ca_t ca;
	char *ca_pem;
	EVP_PKEY *k1, *k2;
	uint64_t cert_serial;
} fx_t;

static fx_t fx;

static int64_t query_int(const char *url, const char *sql)
{
	ks_db_t *db = NULL;
	ks_db_stmt_t *st = NULL;
	int64_t v = -1;

	if (ks_db_open_readonly(url, &db) == KS_DB_EOK &&
	    ks_db_prepare(db, sql, &st) == KS_DB_EOK &&
	    ks_db_step(st) == KS_DB_ROW)
		v = ks_db_col_int64(st, 0);
	ks_db_finish(&st);
	ks_db_close(&db);
	return v;
}

static int open2(const char *url, unsigned block, ks_reg_t **a,
		 ks_reg_t **b)
{
	ks_reg_opts_t o = { block, 0 };

	if (ks_reg_open_ex(url, "st1", &o, a) != KS_OK ||
	    ks_reg_open_ex(url, "st2", &o, b) != KS_OK ||
	    ks_reg_set_station_key(*a, fx.k1) != KS_OK ||
	    ks_reg_set_station_key(*b, fx.k2) != KS_OK)
		return -1;
	ks_reg_set_checkpoint_interval(*a, 8);
	ks_reg_set_checkpoint_interval(*b, 8);
	return 0;
}

static void verify_both(const char *url, int expect_ok, size_t chains)
{
	EVP_PKEY *keys[2] = { fx.k1, fx.k2 };
	ks_audit_report_t *rep = calloc(1, sizeof(*rep));
	uint64_t rows = 0;
	size_t i;
	int r;

	if (rep == NULL)
		abort();
	r = ks_audit_verify_keys(url, fx.ca_pem, keys, 2, rep);
	if (expect_ok && r != KS_OK)
		fprintf(stderr, "[%s] verify: %s\n", backend, rep->first_error);
	CHECK(expect_ok ? r == KS_OK : r == KS_ERR_AUDIT);
	CHECK(rep->chains_total == chains);
	for (i = 0; i < rep->nchains; i++)
		rows += rep->chains[i].rows;
	CHECK(rows == rep->rows);
	free(rep);
}

/* Ownership of pending sessions between two stations. */
static void test_ownership(const char *url)
{
	ks_reg_t *a = NULL, *b = NULL;
	ks_reg_session_t s, p;
	ks_reg_device_t dev;
	uint8_t h[32];
	int64_t sid;

	CHECK(open2(url, 0, &a, &b) == 0);
	if (a == NULL || b == NULL)
		goto out;
	CHECK(ks_reg_lot_create(a, "L1", "prod", "KLN", -1, "alice") ==
	      KS_OK);
	/* st1 holds UID "own-1" at WRITTEN (a live, unfinished session) */
	sid = tr_provision(a, &fx.ca, "L1", "own-1", 0, ++fx.cert_serial,
			   KS_REG_WRITTEN);
	CHECK(sid > 0);
	CHECK(ks_reg_session_begin(b, (const uint8_t *)"own-1", 5, "L1", NULL,
				   0, KS_REG_KEY_DEVICE, 0, NULL, &s) ==
	      KS_ERR_BUSY);
	memset(&p, 0, sizeof(p));
	CHECK(ks_reg_pending_session(b, (const uint8_t *)"own-1", 5, &p) ==
	      KS_ERR_BUSY);
	CHECK(p.id == sid && strcmp(p.station, "st1") == 0);
	CHECK(ks_reg_verified(b, sid, NULL) == KS_ERR_BUSY);
	CHECK(ks_reg_fail(b, sid, KS_REG_FAILED, "mine now", NULL) ==
	      KS_ERR_BUSY);
	memset(h, 0x22, sizeof(h));
	CHECK(ks_reg_boot_key(b, sid, h) == KS_ERR_BUSY);
	CHECK(ks_reg_interrupted(b, sid, "link lost", NULL) == KS_ERR_BUSY);
	/* the owner resumes it */
	CHECK(ks_reg_pending_session(a, (const uint8_t *)"own-1", 5, &p) ==
	      KS_OK);
	CHECK(p.id == sid);
	CHECK(ks_reg_verified(a, sid, NULL) == KS_OK);
	CHECK(ks_reg_locked(a, sid, 7, NULL) == KS_OK);
	CHECK(ks_reg_active(a, sid, NULL) == KS_OK);
	CHECK(ks_reg_session_begin(b, (const uint8_t *)"own-1", 5, "L1", NULL,
				   0, KS_REG_KEY_DEVICE, 0, NULL, &s) ==
	      KS_ERR_DUPLICATE);

	/* a dead station's session with an issued certificate: the operator
	 * releases it from st2; the certificate becomes VOID */
	sid = tr_provision(a, &fx.ca, "L1", "own-2", 0, ++fx.cert_serial,
			   KS_REG_ISSUED);
	CHECK(sid > 0);
	CHECK(ks_reg_session_release(b, sid, "", "op") == KS_ERR_ARG);
	CHECK(ks_reg_session_release(b, sid, "station st1 scrapped",
				     "operator:bob") == KS_OK);
	CHECK(ks_reg_session_get(b, sid, &s) == KS_OK);
	CHECK(s.state == KS_REG_FAILED);
	CHECK(ks_reg_written(a, sid, h, NULL) == KS_ERR_STATE);
	CHECK(ks_reg_device_get(b, (const uint8_t *)"own-2", 5, NULL, &dev) ==
	      KS_OK);
	CHECK(dev.state == KS_REG_FAILED);
	/* now st2 may provision the board */
	CHECK(tr_provision(b, &fx.ca, "L1", "own-2", 0, ++fx.cert_serial,
			   KS_REG_ACTIVE) > 0);
	CHECK(query_int(url, "SELECT count(*) FROM certificates WHERE status "
			     "= 'VOID'") == 1);
	ks_reg_close(&a);
	ks_reg_close(&b);
	verify_both(url, 1, 2);
out:
	ks_reg_close(&a);
	ks_reg_close(&b);
}

/* Per-station chains and checkpoints; serial blocks. */
static void test_chains_and_blocks(const char *url)
{
	ks_reg_t *a = NULL, *b = NULL;
	ks_audit_report_t *rep = calloc(1, sizeof(*rep));
	ks_reg_session_t s;
	char serials[40][KS_REG_SERIAL_MAX];
	char uid[16];
	int i, j, dup = 0;

	if (rep == NULL)
		abort();
	CHECK(open2(url, 10, &a, &b) == 0);
	if (a == NULL || b == NULL)
		goto out;
	CHECK(ks_reg_lot_create(a, "L2", "prod", "BLK", -1, "alice") ==
	      KS_OK);
	for (i = 0; i < 40; i++) {
		ks_reg_t *r = i % 2 ? b : a;

		snprintf(uid, sizeof(uid), "blk-%02d", i);
		CHECK(ks_reg_session_begin(r, (const uint8_t *)uid,
					   strlen(uid), "L2", NULL, 0,
					   KS_REG_KEY_DEVICE, 0, NULL,
					   &s) == KS_OK);
		snprintf(serials[i], sizeof(serials[i]), "%s", s.serial);
		CHECK(ks_reg_fail(r, s.id, KS_REG_FAILED, "test", NULL) ==
		      KS_OK);
	}
	for (i = 0; i < 40; i++)
		for (j = 0; j < i; j++)
			dup += strcmp(serials[i], serials[j]) == 0;
	CHECK(dup == 0);
	/* st1 leased 1..10 first; st2 the next block */
	CHECK(strcmp(serials[0], "BLK-000001") == 0);
	CHECK(strcmp(serials[1], "BLK-000011") == 0);
	/* 20 serials each from blocks of 10, refilled below a quarter: each
	 * station holds a spare block before it runs dry */
	CHECK(query_int(url, "SELECT count(*) FROM serial_blocks WHERE "
			     "prefix = 'BLK' AND station_id = 'st1'") == 3);
	CHECK(query_int(url, "SELECT count(*) FROM serial_blocks WHERE "
			     "prefix = 'BLK' AND (last - first) <> 9") == 0);
	/* restart: the rest of the block is a gap */
	ks_reg_close(&a);
	{
		ks_reg_opts_t o = { 10, 0 };

		CHECK(ks_reg_open_ex(url, "st1", &o, &a) == KS_OK);
	}
	if (a == NULL)
		goto out;
	CHECK(ks_reg_set_station_key(a, fx.k1) == KS_OK);
	CHECK(ks_reg_session_begin(a, (const uint8_t *)"blk-x", 5, "L2", NULL,
				   0, KS_REG_KEY_DEVICE, 0, NULL,
				   &s) == KS_OK);
	CHECK(strcmp(s.serial, "BLK-000061") == 0);
	CHECK(ks_reg_fail(a, s.id, KS_REG_FAILED, "test", NULL) == KS_OK);
	ks_reg_close(&a);
	ks_reg_close(&b);

	verify_both(url, 1, 2);
	/* without keys: each chain against the key its checkpoints record,
	 * reported for the auditor to compare */
	CHECK(ks_audit_verify_keys(url, fx.ca_pem, NULL, 0, rep) == KS_OK);
	CHECK(!rep->keys_pinned && rep->nchains == 2);
	{
		uint8_t h1[32], h2[32];

		tr_pubhash(fx.k1, h1);
		tr_pubhash(fx.k2, h2);
		CHECK(rep->chains[0].has_key &&
		      memcmp(rep->chains[0].key_sha256, h1, 32) == 0);
		CHECK(rep->chains[1].has_key &&
		      memcmp(rep->chains[1].key_sha256, h2, 32) == 0);
	}
	/* with only st1's key, st2's checkpoints are not trusted */
	CHECK(ks_audit_verify(url, fx.ca_pem, fx.k1, rep) == KS_ERR_AUDIT);
	CHECK(strstr(rep->first_error, "at station st2 (CHECKPOINT)") !=
	      NULL);
	CHECK(strstr(rep->first_error, "not a trusted station key") != NULL);
	if (strncmp(url, "postgres", 8) != 0) {
		/* an edited row of st2 is named by station and seq */
		CHECK(tr_sql(url, "DROP TRIGGER audit_no_update; UPDATE audit "
				  "SET actor = 'mallory' WHERE chain = 'st2' "
				  "AND chain_seq = 5") == 0);
		CHECK(ks_audit_verify_keys(url, fx.ca_pem,
					   (EVP_PKEY *[]){ fx.k1, fx.k2 }, 2,
					   rep) == KS_ERR_AUDIT);
		CHECK(strstr(rep->first_error, "audit seq 5 at station st2") !=
		      NULL);
	}
out:
	free(rep);
	ks_reg_close(&a);
	ks_reg_close(&b);
}

/* Two stations reserving the same UIDs at the same moment. */
typedef struct {
	ks_reg_t *reg;
	pthread_barrier_t *bar;
	int rounds;
	int won[64];
	int rc[64];
} racer_t;

static void *racer(void *arg)
{
	racer_t *r = arg;
	ks_reg_session_t s;
	char uid[16];
	int i;

	for (i = 0; i < r->rounds; i++) {
		snprintf(uid, sizeof(uid), "race-%02d", i);
		pthread_barrier_wait(r->bar);
		r->rc[i] = ks_reg_session_begin(r->reg, (const uint8_t *)uid,
						strlen(uid), "L3", NULL, 0,
						KS_REG_KEY_DEVICE, 0, NULL, &s);
		r->won[i] = r->rc[i] == KS_OK;
		/* the winner goes on recording (audit appends race too) */
		if (r->won[i] && ks_reg_keyed(r->reg, s.id,
					      (const uint8_t[32]){ (uint8_t)i,
								   1 },
					      KS_REG_KEY_DEVICE,
					      NULL) != KS_OK)
			r->won[i] = -1;
	}
	return NULL;
}

static void test_race(const char *url)
{
	ks_reg_t *a = NULL, *b = NULL;
	pthread_barrier_t bar;
	pthread_t ta, tb;
	racer_t ra, rb;
	int i, one = 0, clean = 0;

	CHECK(open2(url, 0, &a, &b) == 0);
	if (a == NULL || b == NULL)
		goto out;
	CHECK(ks_reg_lot_create(a, "L3", "prod", "RCE", -1, "alice") ==
	      KS_OK);
	pthread_barrier_init(&bar, NULL, 2);
	memset(&ra, 0, sizeof(ra));
	memset(&rb, 0, sizeof(rb));
	ra.reg = a;
	rb.reg = b;
	ra.bar = rb.bar = &bar;
	ra.rounds = rb.rounds = 32;
	pthread_create(&ta, NULL, racer, &ra);
	pthread_create(&tb, NULL, racer, &rb);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_barrier_destroy(&bar);
	for (i = 0; i < 32; i++) {
		one += (ra.won[i] == 1) + (rb.won[i] == 1) == 1;
		/* the loser is told the UID is busy, nothing else */
		clean += (ra.won[i] ? rb.rc[i] : ra.rc[i]) == KS_ERR_BUSY;
	}
	CHECK(one == 32);
	CHECK(clean == 32);
	/* nothing half-recorded: one session and one RESERVED event per UID */
	CHECK(query_int(url, "SELECT count(*) FROM sessions s JOIN lots l ON "
			     "l.id = s.lot_id WHERE l.name = 'L3'") == 32);
	CHECK(query_int(url, "SELECT count(*) FROM audit WHERE type = "
			     "'SESSION_RESERVED' AND device_serial LIKE "
			     "'RCE-%'") == 32);
	ks_reg_close(&a);
	ks_reg_close(&b);
	verify_both(url, 1, 2);
out:
	ks_reg_close(&a);
	ks_reg_close(&b);
}

/* A registry made by schema 2: one global chain, head in meta. */
static void test_migrate_legacy(const char *url, int pg)
{
	ks_db_t *db = NULL;
	ks_reg_t *reg = NULL;
	ks_audit_report_t *rep = calloc(1, sizeof(*rep));
	uint8_t prev[32], h[32];
	char num[24];
	unsigned i;
	int64_t seq;

	if (rep == NULL)
		abort();
	CHECK(ks_db_open(url, &db) == KS_DB_EOK);
	if (db == NULL)
		goto out;
	for (i = 0; i < 2; i++)
		CHECK(ks_db_exec(db, pg ? ks_db_pg_migrations[i].sql
					: ks_db_migrations[i].sql) ==
		      KS_DB_EOK);
	CHECK(ks_db_exec(db, pg ? "CREATE TABLE kiln_schema(version INTEGER "
				  "NOT NULL); INSERT INTO kiln_schema "
				  "VALUES(2)"
				: "PRAGMA user_version = 2") == KS_DB_EOK);
	CHECK(ks_db_exec(db, "INSERT INTO stations VALUES('old', 1)") ==
	      KS_DB_EOK);
	memset(prev, 0, sizeof(prev));
	for (seq = 1; seq <= 3; seq++) {
		ks_audit_row_t row;
		ks_db_stmt_t *st = NULL;

		memset(&row, 0, sizeof(row));
		row.seq = seq;
		row.time_ms = 1000 + seq;
		row.station = "old";
		row.actor = "kilnd";
		row.type = "OPERATOR";
		row.details = "{\"n\":1}";
		ks_audit_row_hash(&row, prev, h);
		CHECK(ks_db_prepare(db, "INSERT INTO audit(seq, time_ms, "
					"station_id, actor, type, details, "
					"prev_hash, row_hash) VALUES(?, ?, ?, "
					"?, ?, ?, ?, ?)",
				    &st) == KS_DB_EOK);
		ks_db_bind_int64(st, 1, seq);
		ks_db_bind_int64(st, 2, row.time_ms);
		ks_db_bind_text(st, 3, row.station);
		ks_db_bind_text(st, 4, row.actor);
		ks_db_bind_text(st, 5, row.type);
		ks_db_bind_text(st, 6, row.details);
		ks_db_bind_blob(st, 7, prev, 32);
		ks_db_bind_blob(st, 8, h, 32);
		CHECK(ks_db_step(st) == KS_DB_DONE);
		ks_db_finish(&st);
		memcpy(prev, h, 32);
	}
	/* the head as schema 2 kept it: an integer (SQLite) or its text in
	 * the BYTEA column (PostgreSQL) */
	{
		ks_db_stmt_t *st = NULL;

		CHECK(ks_db_prepare(db, "INSERT INTO meta VALUES"
					"('audit_head_seq', ?), "
					"('audit_head_hash', ?)",
				    &st) == KS_DB_EOK);
		snprintf(num, sizeof(num), "3");
		if (pg)
			ks_db_bind_blob(st, 1, num, strlen(num));
		else
			ks_db_bind_int64(st, 1, 3);
		ks_db_bind_blob(st, 2, prev, 32);
		CHECK(ks_db_step(st) == KS_DB_DONE);
		ks_db_finish(&st);
	}
	ks_db_close(&db);
	/* schema 2 cannot be verified read-only: it must be migrated */
	CHECK(ks_audit_verify(url, fx.ca_pem, fx.k1, rep) ==
	      KS_ERR_UNSUPPORTED);
	CHECK(ks_reg_open(url, "old", &reg) == KS_OK);
	if (reg == NULL)
		goto out;
	CHECK(ks_reg_audit_event(reg, "op", KS_REG_EV_OPERATOR, "{\"n\":2}") ==
	      KS_OK);
	ks_reg_close(&reg);
	CHECK(ks_reg_open(url, "new", &reg) == KS_OK);
	if (reg != NULL)
		CHECK(ks_reg_audit_event(reg, "op", KS_REG_EV_OPERATOR,
					 NULL) == KS_OK);
	ks_reg_close(&reg);
	CHECK(query_int(url, "SELECT count(*) FROM meta WHERE key LIKE "
			     "'audit_head%'") == 0);
	CHECK(ks_audit_verify(url, fx.ca_pem, fx.k1, rep) == KS_OK);
	if (rep->first_error[0] != '\0')
		fprintf(stderr, "[%s] %s\n", backend, rep->first_error);
	CHECK(rep->chains_total == 2 && rep->rows == 5);
	CHECK(strcmp(rep->chains[1].station, "old") == 0 &&
	      rep->chains[1].head_seq == 4);
	CHECK(strcmp(rep->chains[0].station, "new") == 0 &&
	      rep->chains[0].head_seq == 1);
	CHECK(strcmp(rep->head_station, "new") == 0);
out:
	free(rep);
	ks_db_close(&db);
}

/* Field enrollment records (registry_enroll.c) on this backend. */
static void test_enroll(const char *url)
{
	ks_reg_t *a = NULL, *b = NULL;
	ks_reg_session_t s;
	ks_reg_enroll_req_t req;
	EVP_PKEY *op = tr_p256();
	uint8_t ph[32];
	uint8_t *der = NULL;
	size_t der_len = 0;
	char claim[64], opser[64], why[200];
	uint64_t cs = ++fx.cert_serial, os = ++fx.cert_serial;

	CHECK(open2(url, 0, &a, &b) == 0);
	if (a == NULL || b == NULL)
		goto out;
	CHECK(ks_reg_lot_create(a, "L4", "claim", "ENR", -1, "alice") ==
	      KS_OK);
	CHECK(tr_provision(a, &fx.ca, "L4", "enr-1", 0, cs, KS_REG_ACTIVE) >
	      0);
	tr_serial_hex(cs, claim, sizeof(claim));
	tr_serial_hex(os, opser, sizeof(opser));
	tr_pubhash(op, ph);
	memset(&req, 0, sizeof(req));
	req.credential_serial = claim;
	req.uid = (const uint8_t *)"enr-1";
	req.uid_len = 5;
	req.pubkey_sha256 = ph;
	req.profile = "op";
	req.uses_allowed = 1;
	req.peer = "127.0.0.1:4433";
	CHECK(ks_reg_enroll_begin(b, &req, NULL, &s, why, sizeof(why)) ==
	      KS_OK);
	CHECK(s.state == KS_REG_KEYED && strcmp(s.station, "st2") == 0);
	der = tr_issue(&fx.ca, op, os, s.serial, &der_len);
	CHECK(ks_reg_cert_issued(b, s.id, der, der_len, opser, ph, 0, 0,
				 NULL) == KS_OK);
	CHECK(ks_reg_enroll_finish(b, s.id, claim, req.peer, NULL) == KS_OK);
	/* the claim allows one use */
	CHECK(ks_reg_enroll_begin(b, &req, NULL, &s, why, sizeof(why)) ==
	      KS_ERR_QUOTA);
	CHECK(strstr(why, "allows 1") != NULL);
	ks_reg_close(&a);
	ks_reg_close(&b);
	verify_both(url, 1, 2);
out:
	free(der);
	EVP_PKEY_free(op);
	ks_reg_close(&a);
	ks_reg_close(&b);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * With KILN_TEST_AUDIT_EVENTS=N: N operator events (checkpoint every 64)
 * written by one station in groups of 1000, then ks_audit_verify() timed
 * over them; prints events/s (a measurement, not a check).
 */
static void measure_verify(const char *url, long events)
{
	ks_reg_t *reg = NULL;
	ks_audit_report_t *rep = calloc(1, sizeof(*rep));
	double t0, t1;
	long i;
	int r = KS_OK;

	if (rep == NULL)
		abort();
	CHECK(ks_reg_open(url, "bench", &reg) == KS_OK);
	if (reg == NULL || ks_reg_set_station_key(reg, fx.k1) != KS_OK)
		goto out;
	t0 = now_s();
	for (i = 0; i < events && r == KS_OK; i++) {
		if (i % 1000 == 0)
			r = ks_reg_group_begin(reg);
		if (r == KS_OK)
			r = ks_reg_audit_event(reg, "bench", KS_REG_EV_OPERATOR,
					       "{\"op\":\"bench\"}");
		if (r == KS_OK && (i % 1000 == 999 || i == events - 1))
			r = ks_reg_group_commit(reg);
	}
	CHECK(r == KS_OK);
	ks_reg_close(&reg);
	t1 = now_s();
	r = ks_audit_verify(url, fx.ca_pem, fx.k1, rep);
	CHECK(r == KS_OK);
	printf("[%s] %llu audit rows (%llu checkpoints) written in %.1f s; "
	       "verified in %.3f s: %.0f events/s\n",
	       backend, (unsigned long long)rep->rows,
	       (unsigned long long)rep->checkpoints, t1 - t0, now_s() - t1,
	       (double)rep->rows / (now_s() - t1));
out:
	ks_reg_close(&reg);
	free(rep);
}

static void run_all(const char *url_own, const char *url_chain,
		    const char *url_race, const char *url_legacy,
		    const char *url_enroll, int pg)
{
	test_enroll(url_enroll);
	test_ownership(url_own);
	test_chains_and_blocks(url_chain);
	test_race(url_race);
	test_migrate_legacy(url_legacy, pg);
}

static long bench_events(void)
{
	const char *e = getenv("KILN_TEST_AUDIT_EVENTS");
	char *end = NULL;
	long n;

	if (e == NULL || e[0] == '\0')
		return 0;
	n = strtol(e, &end, 10);
	return (end != NULL && *end == '\0' && n > 0 && n <= 10000000) ? n
									 : 0;
}

int main(void)
{
	char *dir = tr_tmpdir();
	char *p[5];
	char u[5][600], why[256];
	const char *names[5] = { "own", "chain", "race", "legacy", "enroll" };
	pgt_server_t pg;
	int i;

	ks_log_set_level(KS_LOG_ERROR);
	fx.ca_pem = tr_path(dir, "ca.pem");
	tr_ca_init(&fx.ca, "kiln line CA", fx.ca_pem);
	fx.k1 = tr_p256();
	fx.k2 = tr_p256();
	fx.cert_serial = 1000;
	for (i = 0; i < 5; i++) {
		char f[32];

		snprintf(f, sizeof(f), "%s.db", names[i]);
		p[i] = tr_path(dir, f);
	}
	run_all(p[0], p[1], p[2], p[3], p[4], 0);
	if (bench_events() > 0) {
		char *bp = tr_path(dir, "bench.db");

		measure_verify(bp, bench_events());
		free(bp);
	}

	memset(&pg, 0, sizeof(pg));
	backend = "postgresql";
	if (!pgt_available(why, sizeof(why))) {
		printf("PostgreSQL part skipped: %s\n", why);
	} else if (pgt_start(&pg, NULL) != 0) {
		CHECK(!"PostgreSQL server started");
	} else {
		for (i = 0; i < 5; i++) {
			CHECK(pgt_create_db(&pg, names[i]) == 0);
			CHECK(pgt_url(&pg, names[i], u[i], sizeof(u[i])) !=
			      NULL);
		}
		run_all(u[0], u[1], u[2], u[3], u[4], 1);
		if (bench_events() > 0) {
			char bu[600];

			CHECK(pgt_create_db(&pg, "bench") == 0);
			if (pgt_url(&pg, "bench", bu, sizeof(bu)) != NULL)
				measure_verify(bu, bench_events());
		}
		pgt_stop(&pg);
	}
	for (i = 0; i < 5; i++)
		free(p[i]);
	free(fx.ca_pem);
	EVP_PKEY_free(fx.k1);
	EVP_PKEY_free(fx.k2);
	tr_ca_free(&fx.ca);
	tr_rmdir(dir);
	free(dir);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
