/*
 * Moving a station's registry from SQLite to PostgreSQL:
 *
 *  1. a station on its SQLite file provisions boards in two lots (device
 *     and host key origins) and stops (final checkpoint);
 *  2. `kiln registry migrate --from sqlite:FILE --to postgresql://...`
 *     succeeds; the devices, sessions, certificates, lots and audit rows on
 *     PostgreSQL match the SQLite file one for one; `kiln audit verify` on
 *     the postgresql:// URL passes; the SQLite file is unchanged;
 *  3. migrating the same file again into the same database is refused and
 *     changes nothing;
 *  4. the station, configured with the postgresql:// URL, provisions one
 *     more board: its device serial is new (the lot's counter moved with
 *     the records) and the audit still verifies;
 *  5. an audit row edited on the server makes `kiln audit verify` fail.
 *
 *   test_migrate KILND KILN KILN-AGENT-SIM
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "tests/integration/kt_harness.h"
#include "tests/pg/pgtest.h"

#define NDEV 4  /* boards in the device-key lot (slots 1..NDEV) */
#define NHOST 3 /* boards in the host-key lot (slots NDEV+1..) */
#define NSLOTS (NDEV + NHOST + 1)
#define DB_NAME "kiln_migrate"

static const char profiles[] =
	"[profile widget]\n"
	"subject = CN=${serial},O=Kiln Migrate Test\n"
	"validity_days = 365\n"
	"key_origin = device\n"
	"lock = full\n\n"
	"[profile gadget]\n"
	"subject = CN=${serial},O=Kiln Migrate Test,OU=Gadgets\n"
	"validity_days = 365\n"
	"key_origin = host\n"
	"lock = identity\n\n";

static const char *const tables[] = {"lots",  "devices",     "sessions",
				     "certificates", "audit", "audit_heads",
				     "serial_blocks"};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

static kt_station_t st;
static ks_simproc_t *boards[NSLOTS + 1];
static pgt_server_t pg;
static char url[600], out[1 << 16];

static int board_start(int n)
{
	ks_simproc_opts_t o;
	char img[PATH_MAX], sock[PATH_MAX], rel[64];

	snprintf(rel, sizeof(rel), "boards/slot%d.img", n);
	kt_path(&st, img, sizeof(img), rel);
	snprintf(rel, sizeof(rel), "boards/slot%d.sock", n);
	kt_path(&st, sock, sizeof(sock), rel);
	memset(&o, 0, sizeof(o));
	o.exe = st.sim;
	o.image = img;
	o.unix_path = sock;
	o.quiet = true;
	if (ks_simproc_start(&o, &boards[n]) != KS_OK)
		return kt_check(false, "start board %d", n) ? 0 : -1;
	return 0;
}

static long long sqlite_count(const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -1;

	if (sqlite3_open_v2(st.db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return v;
}

static long long pg_count(const char *sql)
{
	PGconn *c = PQconnectdb(url);
	PGresult *r = NULL;
	long long v = -1;

	if (PQstatus(c) == CONNECTION_OK) {
		r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
		    !PQgetisnull(r, 0, 0))
			v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	}
	PQclear(r);
	PQfinish(c);
	return v;
}

static int pg_exec(const char *sql)
{
	PGconn *c = PQconnectdb(url);
	PGresult *r = NULL;
	int ok = 0;

	if (PQstatus(c) == CONNECTION_OK) {
		r = PQexec(c, sql);
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		if (!ok)
			printf("%s: %s", sql, PQerrorMessage(c));
	}
	PQclear(r);
	PQfinish(c);
	return ok;
}

static int run_batch(const char *lot, const char *profile, int count)
{
	json_t *r = kt_ctl(&st, "{\"cmd\":\"batch.start\",\"lot\":\"%s\","
				"\"profile\":\"%s\",\"count\":%d}",
			   lot, profile, count);
	json_t *b = NULL;
	int done = -1;

	if (!kt_check(json_is_true(json_object_get(r, "ok")),
		      "batch %s starts: %s", lot,
		      json_string_value(json_object_get(r, "error"))))
		goto out;
	b = kt_wait_batch(&st, 120000);
	done = (int)json_integer_value(
		json_object_get(json_object_get(b, "batch"), "done"));
out:
	json_decref(r);
	json_decref(b);
	return done;
}

static void snapshot(long long *counts, int pg_side)
{
	char sql[128];

	for (size_t i = 0; i < NTABLES; i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", tables[i]);
		counts[i] = pg_side ? pg_count(sql) : sqlite_count(sql);
	}
}

static int file_sha(const char *path, char *outhex, size_t cap)
{
	int rc = kt_run(out, sizeof(out), "/usr/bin/sha256sum", path, NULL);

	snprintf(outhex, cap, "%.64s", out);
	return rc;
}

static int verify_pg(const char *what)
{
	char chain[PATH_MAX], pub[PATH_MAX];
	int rc;

	kt_path(&st, chain, sizeof(chain), "ca/chain.pem");
	kt_path(&st, pub, sizeof(pub), "ca/station.pub");
	rc = kt_run(out, sizeof(out), st.kiln, "audit", "verify", "--db", url,
		    "--ca", chain, "--station-pub", pub, NULL);
	kt_check(rc == 0 && strstr(out, "audit OK") != NULL,
		 "%s: kiln audit verify --db %s passes (rc %d):\n%s", what, url,
		 rc, out);
	return rc;
}

static void test_migrate(void)
{
	long long before[NTABLES], after[NTABLES], again[NTABLES];
	char from[PATH_MAX + 8], sha0[80], sha1[80];
	int rc, same = 1;

	snapshot(before, 0);
	kt_check(before[1] == NDEV + NHOST && before[4] > 0,
		 "SQLite holds %d devices and an audit log (%lld, %lld rows)",
		 NDEV + NHOST, before[1], before[4]);
	snprintf(from, sizeof(from), "sqlite:%s", st.db);
	(void)file_sha(st.db, sha0, sizeof(sha0));
	rc = kt_run(out, sizeof(out), st.kiln, "registry", "migrate", "--from",
		    from, "--to", url, NULL);
	kt_check(rc == 0, "kiln registry migrate --from %s --to %s (rc %d):\n%s",
		 from, url, rc, out);
	snapshot(after, 1);
	for (size_t i = 0; i < NTABLES; i++) {
		if (!kt_check(after[i] == before[i], "%s: %lld rows on SQLite, "
						     "%lld on PostgreSQL",
			      tables[i], before[i], after[i]))
			same = 0;
	}
	kt_check(same, "every table moved one for one");
	kt_check(pg_count("SELECT count(*) FROM devices WHERE state = 'ACTIVE'") ==
			 sqlite_count("SELECT count(*) FROM devices WHERE state = 'ACTIVE'"),
		 "the same number of ACTIVE devices");
	(void)file_sha(st.db, sha1, sizeof(sha1));
	kt_check(strcmp(sha0, sha1) == 0, "the SQLite file is left unchanged");
	verify_pg("after the migration");

	rc = kt_run(out, sizeof(out), st.kiln, "registry", "migrate", "--from",
		    from, "--to", url, NULL);
	snapshot(again, 1);
	kt_check(rc != 0 && memcmp(again, after, sizeof(after)) == 0,
		 "migrating the same records twice is refused and changes "
		 "nothing (rc %d):\n%s",
		 rc, out);
}

/* kilnd.conf with the given registry; slots on unix sockets. */
static int write_conf(const char *registry)
{
	FILE *fp = fopen(st.conf, "w");
	int r = -1;

	if (fp == NULL)
		goto out;
	fprintf(fp,
		"[station]\nid = mig-station\nregistry = %s\n"
		"control_socket = kilnd.sock\nstation_key = ca/station.key\n"
		"log_level = info\ncheckpoint_interval = 8\n\n"
		"[ca]\ncert = ca/station-ca.pem\nkey = ca/station-ca.key\n"
		"chain = ca/chain.pem\n\n%s\n",
		registry, profiles);
	for (int n = 1; n <= NSLOTS; n++)
		fprintf(fp, "[slot slot%d]\nport = unix:boards/slot%d.sock\n\n",
			n, n);
	r = fclose(fp) == 0 ? 0 : -1;
out:
	return r;
}

/* The station continues on PostgreSQL where it stopped on SQLite. */
static void test_continue_on_pg(void)
{
	long long dup;
	int done;

	if (!kt_check(write_conf(url) == 0, "kilnd.conf with registry = %s", url))
		return;
	if (!kt_check(kt_kilnd_start(&st) == 0, "kilnd starts on %s", url))
		return;
	if (board_start(NSLOTS) != 0)
		return;
	done = run_batch("LOT-MD", "widget", 1);
	kt_check(done == 1, "one more board in lot LOT-MD on PostgreSQL (%d)",
		 done);
	dup = pg_count("SELECT count(*) FROM (SELECT device_serial FROM sessions "
		       "GROUP BY device_serial HAVING count(*) > 1) d");
	kt_check(dup == 0 && pg_count("SELECT count(*) FROM devices WHERE state = "
				      "'ACTIVE'") == NDEV + NHOST + 1,
		 "its device serial is new (%lld duplicates), %d ACTIVE", dup,
		 NDEV + NHOST + 1);
	kt_check(kt_kilnd_stop(&st) == 0, "kilnd stops cleanly");
	verify_pg("after provisioning on PostgreSQL");
}

static void test_tamper(void)
{
	char chain[PATH_MAX], pub[PATH_MAX];
	int rc;

	/* as the server's superuser, around the append-only guard */
	if (!kt_check(pg_exec("ALTER TABLE audit DISABLE TRIGGER USER") &&
			      pg_exec("UPDATE audit SET actor = 'mallory' WHERE "
				      "seq = (SELECT min(seq) + 5 FROM audit)"),
		      "edit one audit row on the server"))
		return;
	kt_path(&st, chain, sizeof(chain), "ca/chain.pem");
	kt_path(&st, pub, sizeof(pub), "ca/station.pub");
	rc = kt_run(out, sizeof(out), st.kiln, "audit", "verify", "--db", url,
		    "--ca", chain, "--station-pub", pub, NULL);
	kt_check(rc == 1 && strstr(out, "FAILED") != NULL,
		 "kiln audit verify fails on the edited row (rc %d):\n%s", rc,
		 out);
}

int main(int argc, char **argv)
{
	char why[512];
	int done;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!pgt_available(why, sizeof(why)))
		pgt_skip(why);
	if (kt_init(&st, argc, argv, "migrate") != 0 || st.sim == NULL)
		return 1;
	if (pgt_start(&pg, NULL) != 0 || pgt_create_db(&pg, DB_NAME) != 0 ||
	    pgt_url(&pg, DB_NAME, url, sizeof(url)) == NULL) {
		kt_check(false, "a PostgreSQL server with database %s", DB_NAME);
		goto out;
	}
	if (write_conf("registry.db") != 0 ||
	    !kt_check(kt_kilnd_start(&st) == 0, "kilnd starts on SQLite"))
		goto out;
	for (int n = 1; n <= NDEV; n++)
		if (board_start(n) != 0)
			goto out;
	done = run_batch("LOT-MD", "widget", NDEV);
	kt_check(done == NDEV, "%d boards with device keys on SQLite (%d)", NDEV,
		 done);
	for (int n = NDEV + 1; n <= NDEV + NHOST; n++)
		if (board_start(n) != 0)
			goto out;
	done = run_batch("LOT-MH", "gadget", NHOST);
	kt_check(done == NHOST, "%d boards with host keys on SQLite (%d)", NHOST,
		 done);
	kt_check(kt_kilnd_stop(&st) == 0, "kilnd stops (final checkpoint)");

	test_migrate();
	if (kt_failed == 0)
		test_continue_on_pg();
	if (kt_failed == 0)
		test_tamper();
out:
	if (kt_failed > 0 && kt_run(out, sizeof(out), "/usr/bin/tail", "-n",
				    "30", st.log, NULL) >= 0)
		printf("--- kilnd log (tail) ---\n%s", out);
	for (int n = 1; n <= NSLOTS; n++)
		(void)ks_simproc_stop(&boards[n], NULL);
	kt_cleanup(&st);
	pgt_stop(&pg);
	return kt_summary();
}
