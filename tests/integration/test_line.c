/*
 * A line of stations on one PostgreSQL registry: four kilnd processes
 * (four station ids, four station keys, one database, one issuing CA),
 * each with 64 kiln-agent-sim boards on unix sockets, provisioning
 * concurrently. Stations 1 and 3 use device-generated keys (lot LINE-D),
 * stations 2 and 4 host-generated keys (lot LINE-H): each lot is shared by
 * two stations, so their device serials come from leased serial blocks of
 * one counter.
 *
 *  1. Contested UIDs: 8 UIDs are each offered at two neighbouring stations
 *     (one device-key, one host-key) at the same moment.
 *     Afterwards, over the database: no duplicate live UID, certificate
 *     serial, non-VOID public key hash or device serial; exactly one
 *     station won each contested UID and a certificate the loser got
 *     issued is VOID; every board is ACTIVE or was refused; `kiln audit
 *     verify` on the postgresql:// URL passes and reports 4 chains.
 *  2. Outage: fresh boards on every station; while they provision, the
 *     database server is crash-restarted (every connection cut) and one
 *     station is SIGKILLed mid-session and started again. After recovery
 *     the same invariants hold, every board is ACTIVE or cleanly refused
 *     (a board whose session failed is re-plugged, as an operator would),
 *     and the audit still verifies.
 *
 *   test_line KILND KILN KILN-AGENT-SIM [--quick]
 *
 * --quick (or KILN_LINE_BOARDS=N) runs fewer boards per station; the full
 * 4 x 64 runs in scripts/test. Skips (exit 77) without a PostgreSQL server.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "tests/integration/kt_harness.h"
#include "tests/pg/pgtest.h"

#define NST 4
#define MAXB 64
#define NCONTESTED 8   /* UIDs offered at two stations */
#define NREPLACE_MAX 16 /* boards per station replaced for the outage part */
#define DB_NAME "kiln_line"

static const char profiles[] =
	"[profile widget]\n"
	"subject = CN=${serial},O=Kiln Line Test\n"
	"validity_days = 365\n"
	"key_origin = device\n"
	"lock = full\n\n"
	"[profile gadget]\n"
	"subject = CN=${serial},O=Kiln Line Test,OU=Gadgets\n"
	"validity_days = 365\n"
	"key_origin = host\n"
	"lock = identity\n\n";

typedef struct {
	kt_station_t kt;
	char id[24];
	const char *lot;
	const char *profile;
	ks_simproc_t *boards[MAXB + 1];
	char uid[MAXB + 1][65];  /* UID of the board now on slot n */
	int round[MAXB + 1];     /* image generation of slot n */
	int contested[MAXB + 1]; /* contested UID index, or -1 */
} line_station_t;

static line_station_t sts[NST];
static pgt_server_t pg;
static char url[600];
static char out[1 << 16];
static int nboards = MAXB;
static unsigned run_tag;

static void msleep(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the database, read directly ---- */

static PGconn *db_connect(void)
{
	PGconn *c = PQconnectdb(url);

	if (PQstatus(c) != CONNECTION_OK) {
		kt_check(false, "connect to %s: %s", url, PQerrorMessage(c));
		PQfinish(c);
		c = NULL;
	}
	return c;
}

/* The single integer a query returns, or -1. */
static long long db_count(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	long long v = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	    !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else
		printf("query failed: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return v;
}

/* ---- boards ---- */

/* UIDs: 12 bytes. Contested ones share a prefix the others never use. */
static void make_uid(char out_hex[65], int st, int slot, int round)
{
	snprintf(out_hex, 65, "6c6e%02x%02x%02x00%08x", st, slot, round,
		 run_tag);
}

static void contested_uid(char out_hex[65], int k)
{
	snprintf(out_hex, 65, "c0de%02x000000%08x", k, run_tag);
}

static int board_start(line_station_t *s, int n)
{
	ks_simproc_opts_t o;
	char img[PATH_MAX], sock[PATH_MAX], rel[64];
	int r = -1;

	snprintf(rel, sizeof(rel), "boards/slot%d-r%d.img", n, s->round[n]);
	kt_path(&s->kt, img, sizeof(img), rel);
	snprintf(rel, sizeof(rel), "boards/slot%d.sock", n);
	kt_path(&s->kt, sock, sizeof(sock), rel);
	memset(&o, 0, sizeof(o));
	o.exe = s->kt.sim;
	o.image = img;
	o.unix_path = sock;
	o.uid_hex = s->uid[n];
	o.quiet = true;
	o.start_timeout_ms = 20000;
	if (ks_simproc_start(&o, &s->boards[n]) != KS_OK) {
		kt_check(false, "%s: start board %d (uid %s)", s->id, n,
			 s->uid[n]);
		goto out;
	}
	r = 0;
out:
	return r;
}

static void board_stop(line_station_t *s, int n)
{
	char sock[PATH_MAX], rel[64];

	(void)ks_simproc_stop(&s->boards[n], NULL);
	snprintf(rel, sizeof(rel), "boards/slot%d.sock", n);
	kt_path(&s->kt, sock, sizeof(sock), rel);
	unlink(sock);
}

/* ---- stations ---- */

/* kilnd.conf of a station of the line: its own id and audit key, the
 * line's registry, serial blocks of 16, slots on unix sockets. */
static int write_conf(line_station_t *s, const char *const *ports)
{
	FILE *fp = fopen(s->kt.conf, "w");
	int r = -1;

	if (fp == NULL)
		goto out;
	fprintf(fp,
		"[station]\nid = %s\nregistry = %s\n"
		"control_socket = kilnd.sock\nstation_key = ca/station.key\n"
		"log_level = info\nserial_block = 16\nregistry_timeout = 60\n"
		"checkpoint_interval = 32\n\n"
		"[ca]\ncert = ca/station-ca.pem\nkey = ca/station-ca.key\n"
		"chain = ca/chain.pem\n\n%s\n",
		s->id, url, profiles);
	for (int n = 1; n <= nboards; n++)
		fprintf(fp, "[slot slot%d]\nport = %s\n\n", n, ports[n - 1]);
	r = fclose(fp) == 0 ? 0 : -1;
out:
	return r;
}

static int station_setup(int i, int argc, char **argv)
{
	line_station_t *s = &sts[i];
	char tag[16], src[PATH_MAX + 64], dst[PATH_MAX + 64];
	char cmd[2 * PATH_MAX + 256];
	static const char *const shared[] = {"root.pem", "station-ca.pem",
					     "station-ca.key", "chain.pem"};
	const char *ports[MAXB];
	char portbuf[MAXB][32];
	int r = -1;

	snprintf(tag, sizeof(tag), "line%d", i + 1);
	if (kt_init(&s->kt, argc, argv, tag) != 0 || s->kt.sim == NULL)
		goto out;
	snprintf(s->id, sizeof(s->id), "line-st%d", i + 1);
	s->lot = i % 2 == 0 ? "LINE-D" : "LINE-H";
	s->profile = i % 2 == 0 ? "widget" : "gadget";
	/* one issuing CA for the line; each station keeps its own audit key */
	for (size_t k = 0; i > 0 && k < sizeof(shared) / sizeof(shared[0]); k++) {
		snprintf(src, sizeof(src), "%s/ca/%s", sts[0].kt.dir, shared[k]);
		snprintf(dst, sizeof(dst), "%s/ca/%s", s->kt.dir, shared[k]);
		snprintf(cmd, sizeof(cmd), "cp -p '%s' '%s'", src, dst);
		if (system(cmd) != 0) {
			kt_check(false, "%s: copy the line's CA: %s", s->id, cmd);
			goto out;
		}
	}
	for (int n = 1; n <= nboards; n++) {
		snprintf(portbuf[n - 1], sizeof(portbuf[n - 1]),
			 "unix:boards/slot%d.sock", n);
		ports[n - 1] = portbuf[n - 1];
	}
	if (write_conf(s, ports) != 0) {
		kt_check(false, "%s: write kilnd.conf", s->id);
		goto out;
	}
	r = 0;
out:
	return r;
}

static void show_log(line_station_t *s)
{
	if (kt_run(out, sizeof(out), "/usr/bin/tail", "-n", "30", s->kt.log,
		   NULL) >= 0)
		printf("--- %s kilnd log (tail) ---\n%s", s->id, out);
}

static int station_start(line_station_t *s)
{
	if (kt_kilnd_start(&s->kt) != 0) {
		kt_check(false, "%s: kilnd starts on %s", s->id, url);
		show_log(s);
		return -1;
	}
	return 0;
}

static int batch_start(line_station_t *s)
{
	json_t *r = kt_ctl(&s->kt,
			   "{\"cmd\":\"batch.start\",\"lot\":\"%s\","
			   "\"profile\":\"%s\"}",
			   s->lot, s->profile);
	int ok = json_is_true(json_object_get(r, "ok"));

	if (!kt_check(ok, "%s: batch %s (%s) starts: %s", s->id, s->lot,
		      s->profile,
		      json_string_value(json_object_get(r, "error"))))
		show_log(s);
	json_decref(r);
	return ok ? 0 : -1;
}

static void batch_stop(line_station_t *s)
{
	json_decref(kt_ctl(&s->kt, "{\"cmd\":\"batch.stop\"}"));
}

/*
 * Wait until every slot of every station shows the board now on it as
 * done or skipped (refused). Slots that end "failed" are re-plugged
 * (their board restarted on the same image) up to `replugs` times each.
 * Returns the number of slots not settled at the deadline.
 */
static int wait_settled(int timeout_ms, int replugs, int *nreplugged)
{
	long long deadline = now_ms() + timeout_ms;
	int tries[NST][MAXB + 1];
	int unsettled = 0;

	memset(tries, 0, sizeof(tries));
	for (;;) {
		unsettled = 0;
		for (int i = 0; i < NST; i++) {
			line_station_t *s = &sts[i];
			json_t *stj = kt_ctl(&s->kt, "{\"cmd\":\"status\"}");
			json_t *slots = json_object_get(stj, "slots");

			if (stj == NULL) {
				unsettled += nboards;
				continue;
			}
			for (int n = 1; n <= nboards; n++) {
				json_t *sl = json_array_get(slots, (size_t)(n - 1));
				const char *state = json_string_value(
					json_object_get(sl, "state"));
				const char *uid = json_string_value(
					json_object_get(sl, "uid"));
				bool mine = uid != NULL && strcmp(uid, s->uid[n]) == 0;

				if (state == NULL)
					state = "?";
				if (mine && (strcmp(state, "done") == 0 ||
					     strcmp(state, "skipped") == 0))
					continue;
				unsettled++;
				if (mine && strcmp(state, "failed") == 0 &&
				    tries[i][n] < replugs) {
					tries[i][n]++;
					if (nreplugged != NULL)
						(*nreplugged)++;
					printf("%s slot%d: session failed (%s): re-plug\n",
					       s->id, n,
					       json_string_value(json_object_get(sl, "error")));
					board_stop(s, n);
					(void)board_start(s, n);
				}
			}
			json_decref(stj);
		}
		if (unsettled == 0 || now_ms() >= deadline)
			break;
		msleep(500);
	}
	if (unsettled > 0) {
		for (int i = 0; i < NST; i++) {
			json_t *stj = kt_ctl(&sts[i].kt, "{\"cmd\":\"status\"}");
			json_t *slots = json_object_get(stj, "slots");

			for (int n = 1; n <= nboards; n++) {
				json_t *sl = json_array_get(slots, (size_t)(n - 1));
				const char *state = json_string_value(
					json_object_get(sl, "state"));
				const char *uid = json_string_value(
					json_object_get(sl, "uid"));

				if (state != NULL && uid != NULL &&
				    strcmp(uid, sts[i].uid[n]) == 0 &&
				    (strcmp(state, "done") == 0 ||
				     strcmp(state, "skipped") == 0))
					continue;
				printf("unsettled: %s slot%d state %s uid %s error %s\n",
				       sts[i].id, n, state ? state : "?",
				       uid ? uid : "-",
				       json_string_value(json_object_get(sl, "error")));
			}
			json_decref(stj);
		}
	}
	return unsettled;
}

/* ---- the invariants, over the database ---- */

static void check_invariants(const char *when, long long expect_active)
{
	PGconn *c = db_connect();
	long long v;
	char sql[1024], cu[65];

	if (c == NULL)
		return;
	v = db_count(c, "SELECT count(*) FROM (SELECT uid FROM devices WHERE "
			"state = 'ACTIVE' GROUP BY uid HAVING count(*) > 1) d");
	kt_check(v == 0, "%s: 0 duplicate live (ACTIVE) UIDs (%lld)", when, v);
	v = db_count(c, "SELECT count(*) FROM (SELECT uid FROM sessions WHERE "
			"state = 'ACTIVE' GROUP BY uid HAVING count(*) > 1) d");
	kt_check(v == 0, "%s: 0 UIDs with two ACTIVE sessions (%lld)", when, v);
	v = db_count(c, "SELECT count(*) FROM (SELECT serial_hex FROM certificates "
			"GROUP BY serial_hex HAVING count(*) > 1) d");
	kt_check(v == 0, "%s: 0 duplicate certificate serials (%lld)", when, v);
	v = db_count(c, "SELECT count(*) FROM (SELECT pubkey_sha256 FROM "
			"certificates WHERE status <> 'VOID' GROUP BY pubkey_sha256 "
			"HAVING count(*) > 1) d");
	kt_check(v == 0, "%s: 0 duplicate public-key hashes among non-VOID "
			 "certificates (%lld)", when, v);
	v = db_count(c, "SELECT count(*) FROM (SELECT device_serial FROM sessions "
			"GROUP BY device_serial HAVING count(*) > 1) d");
	kt_check(v == 0, "%s: 0 duplicate device serials over all sessions (%lld)",
		 when, v);
	v = db_count(c, "SELECT count(*) FROM (SELECT serial FROM devices "
			"GROUP BY serial HAVING count(*) > 1) d");
	kt_check(v == 0, "%s: 0 duplicate device serials over devices (%lld)",
		 when, v);
	v = db_count(c, "SELECT count(*) FROM devices WHERE state = 'ACTIVE'");
	kt_check(v == expect_active, "%s: %lld devices ACTIVE (expected %lld)",
		 when, v, expect_active);
	v = db_count(c, "SELECT count(DISTINCT station_id) FROM sessions "
			"WHERE state = 'ACTIVE'");
	kt_check(v == NST, "%s: ACTIVE sessions from %d stations (%lld)", when,
		 NST, v);
	/* a device ACTIVE without its ACTIVE certificate would be a lie */
	v = db_count(c, "SELECT count(*) FROM devices d WHERE d.state = 'ACTIVE' "
			"AND NOT EXISTS (SELECT 1 FROM certificates c WHERE "
			"c.device_id = d.id AND c.status = 'ACTIVE')");
	kt_check(v == 0, "%s: every ACTIVE device has an ACTIVE certificate (%lld "
			 "without)", when, v);
	for (int k = 0; k < NCONTESTED; k++) {
		contested_uid(cu, k);
		snprintf(sql, sizeof(sql),
			 "SELECT count(DISTINCT station_id) FROM sessions WHERE "
			 "uid = '\\x%s'::bytea AND state = 'ACTIVE'", cu);
		v = db_count(c, sql);
		kt_check(v == 1, "%s: contested UID %s: exactly one station won "
				 "(%lld)", when, cu, v);
		/* certificates of sessions that did not end ACTIVE */
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM certificates c JOIN sessions s ON "
			 "s.id = c.session_id WHERE s.uid = '\\x%s'::bytea AND "
			 "s.state <> 'ACTIVE' AND c.status <> 'VOID'", cu);
		v = db_count(c, sql);
		kt_check(v == 0, "%s: contested UID %s: a losing session's "
				 "certificate is VOID (%lld not)", when, cu, v);
	}
	PQfinish(c);
}

static void check_audit(const char *when)
{
	char chain[PATH_MAX];
	int rc;

	kt_path(&sts[0].kt, chain, sizeof(chain), "ca/chain.pem");
	rc = kt_run(out, sizeof(out), sts[0].kt.kiln, "audit", "verify", "--db",
		    url, "--ca", chain, NULL);
	kt_check(rc == 0 && strstr(out, "audit OK") != NULL,
		 "%s: kiln audit verify --db %s passes (rc %d):\n%s", when, url,
		 rc, out);
	kt_check(strstr(out, "4 chains") != NULL,
		 "%s: kiln audit verify reports 4 chains:\n%s", when, out);
}

/* State of slot n of a station as its kilnd shows it (allocated). */
static char *slot_state(line_station_t *s, int n)
{
	json_t *stj = kt_ctl(&s->kt, "{\"cmd\":\"status\"}");
	json_t *sl = json_array_get(json_object_get(stj, "slots"), (size_t)(n - 1));
	const char *state = json_string_value(json_object_get(sl, "state"));
	char *r = strdup(state != NULL ? state : "?");

	json_decref(stj);
	return r;
}

/* The error the status shows for slot n (malloc'ed; "" when none). */
static char *slot_error(line_station_t *s, int n)
{
	json_t *stj = kt_ctl(&s->kt, "{\"cmd\":\"status\"}");
	json_t *sl = json_array_get(json_object_get(stj, "slots"), (size_t)(n - 1));
	const char *e = json_string_value(json_object_get(sl, "error"));
	char *r = strdup(e != NULL ? e : "");

	json_decref(stj);
	return r;
}

/*
 * Each contested UID: the slot of exactly one of its two stations shows
 * done, the other skipped, and the database's ACTIVE session of that UID
 * belongs to the station whose slot shows done (a station never completes
 * another live station's session as if it were its own). The skipped
 * slot says why: the UID is being provisioned at the winning station, or
 * is already ACTIVE.
 */
static void check_winners(void)
{
	PGconn *c = db_connect();
	char cu[65], sql[512], held[128];
	int nheld = 0;

	if (c == NULL)
		return;
	for (int k = 0; k < NCONTESTED; k++) {
		line_station_t *w = NULL;
		char *lose_err = NULL;
		int ndone = 0, nskip = 0;
		PGresult *r;

		contested_uid(cu, k);
		for (int i = 0; i < NST; i++)
			for (int n = 1; n <= nboards; n++) {
				char *state;

				if (sts[i].contested[n] != k)
					continue;
				state = slot_state(&sts[i], n);
				if (strcmp(state, "done") == 0) {
					ndone++;
					w = &sts[i];
				} else if (strcmp(state, "skipped") == 0) {
					nskip++;
					free(lose_err);
					lose_err = slot_error(&sts[i], n);
				}
				free(state);
			}
		kt_check(ndone == 1 && nskip == 1,
			 "contested UID %s: one slot done, the other refused "
			 "(%d done, %d refused)", cu, ndone, nskip);
		if (w == NULL) {
			free(lose_err);
			continue;
		}
		snprintf(held, sizeof(held), "is being provisioned at station %s ",
			 w->id);
		if (lose_err != NULL && strstr(lose_err, held) != NULL)
			nheld++;
		kt_check(lose_err != NULL &&
				 (strstr(lose_err, held) != NULL ||
				  strstr(lose_err, "already ACTIVE") != NULL),
			 "contested UID %s: the refused slot names the holder %s "
			 "or the UID as ACTIVE: '%s'", cu, w->id,
			 lose_err != NULL ? lose_err : "(no slot)");
		free(lose_err);
		snprintf(sql, sizeof(sql),
			 "SELECT station_id FROM sessions WHERE uid = '\\x%s'::bytea "
			 "AND state = 'ACTIVE'", cu);
		r = PQexec(c, sql);
		kt_check(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
				 strcmp(PQgetvalue(r, 0, 0), w->id) == 0,
			 "contested UID %s: its ACTIVE session is %s's, the station "
			 "that shows it done (%s)", cu, w->id,
			 PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "none");
		PQclear(r);
	}
	printf("contested UIDs: %d refused as held by the other station, "
	       "%d as already ACTIVE\n", nheld, NCONTESTED - nheld);
	PQfinish(c);
}

/* ---- the scenarios ---- */

/* Contested UIDs: station i, slot nboards - j (j = 0, 1) carries contested
 * UID 2i + j; the same UID is on station i + 1, slot nboards - 2 - j. */
static void assign_uids(void)
{
	for (int i = 0; i < NST; i++)
		for (int n = 1; n <= nboards; n++) {
			sts[i].contested[n] = -1;
			make_uid(sts[i].uid[n], i, n, 0);
		}
	for (int i = 0; i < NST; i++)
		for (int j = 0; j < 2; j++) {
			int k = 2 * i + j;
			line_station_t *a = &sts[i], *b = &sts[(i + 1) % NST];
			int na = nboards - j, nb = nboards - 2 - j;

			contested_uid(a->uid[na], k);
			contested_uid(b->uid[nb], k);
			a->contested[na] = b->contested[nb] = k;
		}
}

static void test_concurrent(void)
{
	long long t0 = now_ms(), t1;
	int unsettled, replugged = 0, refused = 0;

	for (int i = 0; i < NST; i++)
		for (int n = 1; n <= nboards; n++)
			if (board_start(&sts[i], n) != 0)
				return;
	printf("%d boards started in %lld ms\n", NST * nboards, now_ms() - t0);
	t0 = now_ms();
	/* the first station of each lot creates it; then all run at once */
	if (batch_start(&sts[0]) != 0 || batch_start(&sts[1]) != 0 ||
	    batch_start(&sts[2]) != 0 || batch_start(&sts[3]) != 0)
		return;
	unsettled = wait_settled(150000, 2, &replugged);
	t1 = now_ms();
	kt_check(unsettled == 0,
		 "4 stations x %d boards: every board ACTIVE or refused "
		 "(%d unsettled, %d re-plugged) in %lld ms",
		 nboards, unsettled, replugged, t1 - t0);
	printf("phase 1: %d boards on 4 stations in %.1f s (%.1f boards/s)\n",
	       NST * nboards, (double)(t1 - t0) / 1000.0,
	       (double)(NST * nboards) * 1000.0 / (double)(t1 - t0 + 1));
	for (int i = 0; i < NST; i++) {
		json_t *stj = kt_ctl(&sts[i].kt, "{\"cmd\":\"status\"}");
		json_t *b = json_object_get(stj, "batch");

		refused += (int)json_integer_value(json_object_get(b, "refused"));
		json_decref(stj);
	}
	kt_check(refused >= NCONTESTED,
		 "the stations refused %d boards (at least one per contested "
		 "UID: %d)", refused, NCONTESTED);
	check_winners();
	check_invariants("after the concurrent batch",
			 (long long)(NST * nboards - NCONTESTED));
}

/* The station with a session in flight, by slot, or -1. */
static int provisioning_slot(line_station_t *s)
{
	json_t *stj = kt_ctl(&s->kt, "{\"cmd\":\"status\"}");
	json_t *slots = json_object_get(stj, "slots");
	int found = -1;

	for (int n = 1; n <= nboards && found < 0; n++) {
		const char *state = json_string_value(json_object_get(
			json_array_get(slots, (size_t)(n - 1)), "state"));

		if (state != NULL && strcmp(state, "provisioning") == 0)
			found = n;
	}
	json_decref(stj);
	return found;
}

/*
 * An unfinished session of the killed station (the latest one), released
 * by an operator at another station (`kiln session release`) as if the
 * station were gone for good: FAILED with the release recorded; released
 * again it is refused. Returns the UID of the released session ("" if the
 * station had none).
 */
static const char *release_dead_session(line_station_t *dead)
{
	static char uid[65];
	PGconn *c = db_connect();
	char sql[512], id[32];
	PGresult *res = NULL;
	long long sid = -1;
	int rc;

	uid[0] = '\0';
	if (c == NULL)
		goto out;
	snprintf(sql, sizeof(sql),
		 "SELECT id, encode(uid, 'hex') FROM sessions WHERE station_id "
		 "= '%s' AND ended_ms IS NULL ORDER BY id DESC LIMIT 1",
		 dead->id);
	res = PQexec(c, sql);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		sid = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	kt_check(sid > 0, "%s left an unfinished session when it was killed",
		 dead->id);
	if (sid <= 0)
		goto out;
	snprintf(id, sizeof(id), "%lld", sid);
	rc = kt_kiln(&sts[0].kt, out, sizeof(out), "session", "release", id,
		     NULL);
	kt_check(rc == 2, "kiln session release without --reason is a usage "
			  "error (rc %d)", rc);
	rc = kt_kiln(&sts[0].kt, out, sizeof(out), "session", "release", id,
		     "--reason", "station died in the test", NULL);
	kt_check(rc == 0 && strstr(out, "FAILED (released)") != NULL &&
			 strstr(out, dead->id) != NULL,
		 "kiln session release %s at %s ends %s's session (rc %d): %s",
		 id, sts[0].id, dead->id, rc, out);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM sessions WHERE id = %lld AND state = "
		 "'FAILED' AND ended_ms IS NOT NULL", sid);
	kt_check(db_count(c, sql) == 1, "session %s is FAILED in the registry",
		 id);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM audit WHERE station_id = '%s' AND "
		 "type = 'FAILED' AND session_id = %lld AND details LIKE "
		 "'%%\"released\":true%%'", sts[0].id, sid);
	kt_check(db_count(c, sql) == 1, "the release is audited by %s",
		 sts[0].id);
	rc = kt_kiln(&sts[0].kt, out, sizeof(out), "session", "release", id,
		     "--reason", "again", NULL);
	kt_check(rc == 1 && strstr(out, "already ended") != NULL,
		 "releasing it again is refused (rc %d): %s", rc, out);
	snprintf(uid, sizeof(uid), "%.64s", PQgetvalue(res, 0, 1));
out:
	PQclear(res);
	PQfinish(c);
	return uid;
}

static void test_outage(void)
{
	/* never the contested slots at the end */
	int nrep = nboards / 2 < NREPLACE_MAX ? nboards / 2 : NREPLACE_MAX;
	line_station_t *victim = &sts[2];
	long long t0 = now_ms(), deadline;
	long long expect = (long long)(NST * nboards - NCONTESTED + NST * nrep);
	int unsettled, replugged = 0, slot = -1, rc;
	const char *released;

	/* fresh boards on slots 1..nrep of every station */
	for (int i = 0; i < NST; i++)
		for (int n = 1; n <= nrep; n++) {
			board_stop(&sts[i], n);
			sts[i].round[n]++;
			make_uid(sts[i].uid[n], i, n, sts[i].round[n]);
			if (board_start(&sts[i], n) != 0)
				return;
		}
	/* mid-batch: the database goes away for a moment (every client
	 * connection cut) as soon as sessions are in flight */
	deadline = now_ms() + 20000;
	while (now_ms() < deadline && provisioning_slot(&sts[0]) < 0)
		msleep(20);
	kt_check(pgt_halt(&pg) == 0, "the database server stops (immediate)");
	msleep(1500);
	/* the control socket keeps answering, and says what is wrong */
	rc = kt_kiln(&sts[1].kt, out, sizeof(out), "status", NULL);
	kt_check(rc == 0 && strstr(out, "registry") != NULL &&
			 (strstr(out, "unreachable") != NULL ||
			  strstr(out, "down") != NULL ||
			  strstr(out, "lost") != NULL ||
			  strstr(out, "reconnect") != NULL),
		 "kiln status during the outage shows the registry is not "
		 "reachable (rc %d):\n%s", rc, out);
	kt_check(pgt_resume(&pg) == 0, "the database server starts again");

	/* a station killed mid-session, then started again */
	deadline = now_ms() + 20000;
	while (now_ms() < deadline && (slot = provisioning_slot(victim)) < 0)
		msleep(10);
	kt_check(slot > 0, "%s has a session in flight (slot %d)", victim->id,
		 slot);
	if (victim->kt.pid > 0) {
		kill(victim->kt.pid, SIGKILL);
		while (waitpid(victim->kt.pid, NULL, 0) < 0 && errno == EINTR)
			;
		victim->kt.pid = 0;
	}
	msleep(500);
	released = release_dead_session(victim);
	if (station_start(victim) != 0 || batch_start(victim) != 0)
		return;

	unsettled = wait_settled(150000, 3, &replugged);
	kt_check(unsettled == 0,
		 "after the outage and the station kill: every board ACTIVE or "
		 "refused (%d unsettled, %d re-plugged) in %lld ms",
		 unsettled, replugged, now_ms() - t0);
	/* the released session's board is provisioned afresh, unless it
	 * already held the identity the registry never recorded ACTIVE (it
	 * is then refused and set aside) */
	if (released[0] != '\0') {
		PGconn *c = db_connect();
		char sql[256];

		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM devices WHERE state = 'ACTIVE' "
			 "AND uid = '\\x%s'::bytea", released);
		if (c != NULL && db_count(c, sql) == 0)
			expect--;
		PQfinish(c);
	}
	check_invariants("after the outage", expect);
}

int main(int argc, char **argv)
{
	char why[512];
	const char *env = getenv("KILN_LINE_BOARDS");
	int started = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 4 && strcmp(argv[4], "--quick") == 0)
		nboards = 16;
	if (env != NULL && atoi(env) >= 8 && atoi(env) <= MAXB)
		nboards = atoi(env);
	if (!pgt_available(why, sizeof(why)))
		pgt_skip(why);
	if (pgt_start(&pg, NULL) != 0 || pgt_create_db(&pg, DB_NAME) != 0 ||
	    pgt_url(&pg, DB_NAME, url, sizeof(url)) == NULL) {
		kt_check(false, "a PostgreSQL server with database %s", DB_NAME);
		pgt_stop(&pg);
		return kt_summary();
	}
	run_tag = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
	printf("PostgreSQL %s; %d stations x %d boards\n", url, NST, nboards);
	for (int i = 0; i < NST; i++)
		if (station_setup(i, argc, argv) != 0)
			goto out;
	assign_uids();
	/* the first station creates the schema; the others join it */
	for (int i = 0; i < NST; i++) {
		if (station_start(&sts[i]) != 0)
			goto out;
		started++;
	}

	test_concurrent();
	check_audit("after the concurrent batch");
	if (kt_failed == 0)
		test_outage();
	for (int i = 0; i < NST; i++)
		batch_stop(&sts[i]);
	for (int i = 0; i < NST; i++) {
		int rc = kt_kilnd_stop(&sts[i].kt);

		kt_check(rc == 0, "%s: kilnd exits 0 on SIGTERM (rc %d)", sts[i].id,
			 rc);
	}
	if (kt_failed == 0)
		check_audit("after the outage and the stops");
out:
	if (kt_failed > 0)
		for (int i = 0; i < started; i++)
			show_log(&sts[i]);
	for (int i = 0; i < NST; i++) {
		for (int n = 1; n <= MAXB; n++)
			if (sts[i].boards[n] != NULL)
				board_stop(&sts[i], n);
		if (sts[i].kt.dir[0] != '\0')
			kt_cleanup(&sts[i].kt);
	}
	pgt_stop(&pg);
	return kt_summary();
}
