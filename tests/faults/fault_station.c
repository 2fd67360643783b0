/*
 * Fault sweep through the real station daemon: kilnd (and its test-only
 * twin kilnd-faultinj), the kiln CLI and kiln-agent-sim boards on PTYs.
 *
 *  A. device power cuts through kilnd: for each key origin, boards cut
 *     after every write N of a full session run in parallel batches; the
 *     boards reboot on their images and the same batch finishes them.
 *  B. station crash at every journal step: kilnd-faultinj SIGKILLs itself
 *     at the Nth hit of each registry fault point (inside a write
 *     transaction, before it commits) and of each session step (once the
 *     step is durable, before the next device request), for every hit a
 *     provisioning of one board makes (found by a traced run); the real
 *     kilnd is restarted and finishes the board.
 *  C. SIGKILL at seeded random times across a 32-board batch, several
 *     rounds, restart, the batch finishes.
 *
 * After each: registry invariants, every board's HELLO against the
 * registry (fault_check.h) and `kiln audit verify` on the DB file.
 *
 *   fault_station KILND KILN KILN-AGENT-SIM KILND-FAULTINJ [SEED]
 *   (FAULT_SEED also sets the seed; FAULT_QUICK=1 samples fewer points)
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

#include <sqlite3.h>

#include "host/lib/ca.h"
#include "tests/faults/fault_check.h"
#include "tests/integration/kt_harness.h"

#define NSLOTS 32
#define CUT_CHUNK 18    /* boards per power-cut batch */
#define MAX_POINTS 64
#define CRASH_ROUNDS 6
#define FINISH_MS 120000
#define MAX_WRITES 128
#define KILLS_PER_BATCH 3

/* Where a cut after write N left the session (part A): 0 ended (FAILED),
 * 1..4 parked at ISSUED, WRITTEN, VERIFIED, LOCKED. */
static const char *const parked_names[] = {"ended", "ISSUED", "WRITTEN",
					   "VERIFIED", "LOCKED"};
static int parked_at[2][MAX_WRITES + 1];

static const char profiles[] =
	"[profile widget]\n"
	"subject = CN=${serial},O=Kiln Faults\n"
	"validity_days = 365\n"
	"key_origin = device\n"
	"lock = full\n\n"
	"[profile gadget]\n"
	"subject = CN=${serial},O=Kiln Faults,OU=Host keys\n"
	"validity_days = 365\n"
	"key_origin = host\n"
	"lock = full\n\n";

static const char *const prof_of[] = {"widget", "gadget"};
static const char *const origin_names[] = {"device", "host"};

static kt_station_t st;
static const char *kilnd_real, *kilnd_faultinj;
static char shm_dir[256], chain_pem[PATH_MAX], pub_pem[PATH_MAX];
static char out[1 << 16];
static fc_tally_t total;
static unsigned board_no;
static long audit_runs, audit_failures;

static void msleep(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static unsigned long rnd(unsigned long *state, unsigned long n)
{
	unsigned long x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return (unsigned long)((x * 2685821657736338717ULL) >> 33) % n;
}

/* kilnd.conf with the registry on tmpfs (see fault_powercut.c) */
static int write_conf(void)
{
	FILE *fp = fopen(st.conf, "w");

	if (fp == NULL)
		return -1;
	fprintf(fp,
		"[station]\nid = fault-station\nregistry = %s\n"
		"control_socket = kilnd.sock\nstation_key = ca/station.key\n"
		"log_level = info\ncheckpoint_interval = 16\n\n"
		"[ca]\ncert = ca/station-ca.pem\nkey = ca/station-ca.key\n"
		"chain = ca/chain.pem\n\n%s\n",
		st.db, profiles);
	for (int i = 1; i <= NSLOTS; i++)
		fprintf(fp, "[slot slot%d]\nport = unix:boards/slot%d.sock\n\n",
			i, i);
	return fclose(fp) == 0 ? 0 : -1;
}

/* Start kilnd (exe) with the fault environment; 0 when it serves. */
static int kilnd_start(const char *exe, const char *kill_spec, bool trace)
{
	st.kilnd = exe;
	if (kill_spec != NULL)
		setenv("KILN_FAULT_KILL", kill_spec, 1);
	else
		unsetenv("KILN_FAULT_KILL");
	if (trace)
		setenv("KILN_FAULT_TRACE", "1", 1);
	else
		unsetenv("KILN_FAULT_TRACE");
	return kt_kilnd_start(&st);
}

/* Wait for kilnd to exit by itself; its wait status, or -1 (timeout:
 * it is then killed). st.pid is 0 afterwards. */
static int kilnd_wait_exit(int timeout_ms)
{
	int status = -1;

	for (int waited = 0; st.pid > 0; waited += 20) {
		pid_t r = waitpid(st.pid, &status, WNOHANG);

		if (r == st.pid) {
			st.pid = 0;
			return status;
		}
		if (waited >= timeout_ms) {
			kill(st.pid, SIGKILL);
			(void)waitpid(st.pid, &status, 0);
			st.pid = 0;
			return -1;
		}
		msleep(20);
	}
	return status;
}

static void kilnd_kill9(void)
{
	int status;

	if (st.pid <= 0)
		return;
	kill(st.pid, SIGKILL);
	(void)waitpid(st.pid, &status, 0);
	st.pid = 0;
}

static void log_tail(void)
{
	if (kt_run(out, sizeof(out), "/usr/bin/tail", "-n", "30", st.log,
		   NULL) >= 0)
		printf("--- kilnd log (tail) ---\n%s", out);
}

/* The daemon's log is read from a mark on: each run on its own. */
static long log_mark;

static void log_reset(void)
{
	FILE *fp = fopen(st.log, "r");

	log_mark = 0;
	if (fp != NULL && fseek(fp, 0, SEEK_END) == 0)
		log_mark = ftell(fp);
	if (fp != NULL)
		fclose(fp);
}

/* Whether the log after the mark contains needle. */
static bool log_contains(const char *needle)
{
	FILE *fp = fopen(st.log, "r");
	char line[1024];
	bool found = false;

	if (fp != NULL && fseek(fp, log_mark, SEEK_SET) == 0)
		while (!found && fgets(line, sizeof(line), fp) != NULL)
			found = strstr(line, needle) != NULL;
	if (fp != NULL)
		fclose(fp);
	return found;
}

static void audit_check(const char *ctx)
{
	char buf[4096];

	audit_runs++;
	if (!fc_audit_verify(st.kiln, st.db, chain_pem, pub_pem, buf,
			     sizeof(buf))) {
		audit_failures++;
		fc_violation(&total, "%s: kiln audit verify fails:\n%s", ctx,
			     buf);
	}
}

static void new_board(int slot, unsigned origin, char image[PATH_MAX],
		      char uid[17])
{
	char rel[64];

	board_no++;
	snprintf(uid, 17, "fb%02x%012x", origin + 1, board_no);
	snprintf(rel, sizeof(rel), "boards/b%u.img", board_no);
	kt_path(&st, image, PATH_MAX, rel);
	(void)slot;
}

/*
 * Boards listen on unix sockets boards/slotN.sock (the slots' ports are
 * unix:boards/slotN.sock), not on PTYs: a PTY number is machine-wide, and
 * with other test suites running in parallel a dead board's number is
 * soon another suite's board, which a station probing a stale link would
 * provision (seen: a soak test's station provisioned a board of this
 * sweep). The faults under test are the station's and the registry's;
 * the termios path has its own tests (tests/integration).
 */
static int board_start(int n, const char *image, const char *uid,
		       unsigned long cut)
{
	char sock[PATH_MAX], rel[64];
	ks_simproc_opts_t o;

	if (n < 1 || n > KT_MAX_BOARDS)
		return -1;
	snprintf(rel, sizeof(rel), "boards/slot%d.sock", n);
	kt_path(&st, sock, sizeof(sock), rel);
	memset(&o, 0, sizeof(o));
	o.exe = st.sim;
	o.image = image;
	o.unix_path = sock;
	o.uid_hex = uid;
	o.cut_after = cut;
	o.quiet = true;
	return ks_simproc_start(&o, &st.boards[n]) == KS_OK ? 0 : -1;
}

/* Stop (or reap) the board on slot n; its socket goes with it. */
static void board_stop(int n)
{
	char sock[PATH_MAX], rel[64];

	(void)ks_simproc_stop(&st.boards[n], NULL);
	snprintf(rel, sizeof(rel), "boards/slot%d.sock", n);
	kt_path(&st, sock, sizeof(sock), rel);
	unlink(sock); /* a board that lost power leaves it behind */
}

static long long sql_int(const char *sql, const char *arg)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -1;

	if (sqlite3_open_v2(st.db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(h, 5000);
		if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK) {
			if (arg != NULL)
				sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
			if (sqlite3_step(s) == SQLITE_ROW)
				v = sqlite3_column_int64(s, 0);
		}
	}
	sqlite3_finalize(s);
	sqlite3_close(h);
	return v;
}

static long long lot_active(const char *lot)
{
	return sql_int("SELECT count(*) FROM devices d JOIN lots l ON "
		       "l.id = d.lot_id WHERE l.name = ?1 AND d.state = 'ACTIVE'",
		       lot);
}

static long long unfinished(const char *lot)
{
	return sql_int("SELECT count(*) FROM sessions s JOIN lots l ON "
		       "l.id = s.lot_id WHERE l.name = ?1 AND s.state NOT IN "
		       "('ACTIVE','FAILED','VOID','SCRAPPED')", lot);
}

static bool uid_active(const char *uid)
{
	return sql_int("SELECT count(*) FROM devices WHERE hex(uid) = upper(?1) "
		       "AND state = 'ACTIVE'", uid) == 1;
}

static long replugs; /* boards unplugged and replugged after a FAILED session */
static long reboots; /* boards rebooted after a power cut */
static double board_down[NSLOTS + 1]; /* when a board went, 0: present */

/*
 * A board that lost power goes off its slot at once, as a real board's
 * /dev/serial/by-id link does: the station must never probe the PTY
 * number of a dead simulator, which the next process to open a PTY on
 * this machine may get. Checks boards 1..n; returns how many died now.
 */
static int reap_dead(int n)
{
	int died = 0;

	for (int i = 1; i <= n; i++) {
		ks_simproc_result_t sr;

		if (st.boards[i] == NULL || board_down[i] > 0 ||
		    ks_simproc_wait(st.boards[i], 0, &sr) != KS_OK)
			continue;
		board_stop(i);
		board_down[i] = fc_elapsed();
		died++;
	}
	return died;
}

/* Sleep ms, reaping dead boards every 20 ms. */
static void sleep_reaping(int ms, int n)
{
	for (int t = 0; t < ms; t += 20) {
		reboots += reap_dead(n);
		msleep(20);
	}
}

static bool plug(int i, const char *image, const char *uid, unsigned long cut)
{
	board_down[i] = 0;
	return board_start(i, image, uid, cut) == 0;
}

/*
 * Wait until the boards on slots 1..n (running a batch of `lot`) are all
 * ACTIVE with no session unfinished. A board that lost power is rebooted
 * on its image (no cut) a second after it went. A board whose session
 * FAILED for another reason (e.g. a request timing out on a loaded
 * machine; the reason is in the outcome list) stays on its slot as
 * "handled": like an operator would, unplug it and plug it back in.
 */
static bool finish_boards(const char *lot, int n, char image[][PATH_MAX],
			  char uid[][17])
{
	double plugged[NSLOTS + 1];

	for (int i = 1; i <= n; i++) {
		plugged[i] = fc_elapsed();
		if (st.boards[i] == NULL && board_down[i] == 0)
			board_down[i] = plugged[i];
	}
	for (int tick = 0; tick < FINISH_MS / 50; tick++) {
		json_t *stj;
		double now = fc_elapsed();
		int missing = 0;

		reboots += reap_dead(n);
		for (int i = 1; i <= n; i++) {
			if (board_down[i] == 0 || now - board_down[i] < 1.0)
				continue;
			if (!plug(i, image[i], uid[i], 0))
				fc_violation(&total, "%s: board %s does not "
						     "restart", lot, uid[i]);
			plugged[i] = now;
		}
		msleep(50);
		if (tick % 5 != 0)
			continue;
		for (int i = 1; i <= n; i++)
			missing += !uid_active(uid[i]);
		if (missing == 0 && unfinished(lot) == 0)
			return true;
		if (missing == 0 || tick % 40 != 0)
			continue;
		stj = kt_ctl(&st, "{\"cmd\":\"status\"}");
		for (int i = 1; i <= n; i++) {
			json_t *sl = json_array_get(json_object_get(stj, "slots"),
						    (size_t)(i - 1));
			const char *state = json_string_value(
				json_object_get(sl, "state"));

			if (board_down[i] > 0 || uid_active(uid[i]) ||
			    state == NULL || strcmp(state, "failed") != 0 ||
			    fc_elapsed() - plugged[i] < 3.0)
				continue;
			board_stop(i);
			board_down[i] = fc_elapsed();
			replugs++;
		}
		json_decref(stj);
	}
	return false;
}

static bool batch_start(const char *lot, const char *profile)
{
	json_t *r = kt_ctl(&st, "{\"cmd\":\"batch.start\",\"lot\":\"%s\","
				"\"profile\":\"%s\"}", lot, profile);
	bool ok = json_is_true(json_object_get(r, "ok"));

	if (!ok)
		fc_violation(&total, "batch.start %s: %s", lot,
			     r ? json_string_value(json_object_get(r, "error"))
			       : "no answer");
	json_decref(r);
	return ok;
}

static void batch_stop(void)
{
	json_decref(kt_ctl(&st, "{\"cmd\":\"batch.stop\"}"));
}

/* Lots are created by starting a batch; stop it at once. */
static void lot_create(const char *lot, const char *profile)
{
	if (batch_start(lot, profile))
		batch_stop();
}

/* ---- A. power cuts through kilnd ---- */

static long baseline_writes(unsigned origin)
{
	char image[PATH_MAX], uid[17], lot[32];
	ks_simproc_result_t res = {.writes = -1};
	int rc;

	snprintf(lot, sizeof(lot), "BASE-%s", origin_names[origin]);
	new_board(1, origin, image, uid);
	lot_create(lot, prof_of[origin]);
	if (board_start(1, image, uid, 0) != 0)
		return -1;
	rc = kt_kiln(&st, out, sizeof(out), "provision", "slot1", "--lot", lot,
		     "--profile", prof_of[origin], NULL);
	if (rc != 0)
		fc_violation(&total, "baseline %s: provision rc %d: %s",
			     origin_names[origin], rc, out);
	fc_check_board(st.db, ks_simproc_spec(st.boards[1]), true, &total, NULL);
	if (st.boards[1] != NULL) {
		char link[PATH_MAX];

		kt_path(&st, link, sizeof(link), "boards/slot1");
		unlink(link);
		(void)ks_simproc_stop(&st.boards[1], &res);
	}
	return rc == 0 ? res.writes : -1;
}

typedef struct {
	long boards, cuts_hit, not_reached, completed;
} cut_tally_t;

static void powercut_chunk(unsigned origin, unsigned long first,
			   unsigned long last, cut_tally_t *t)
{
	char image[NSLOTS + 1][PATH_MAX], uid[NSLOTS + 1][17], lot[48];
	int n = (int)(last - first + 1);

	snprintf(lot, sizeof(lot), "PC-%s-%lu", origin_names[origin], first);
	for (int i = 1; i <= n; i++) {
		new_board(i, origin, image[i], uid[i]);
		if (!plug(i, image[i], uid[i], first + (unsigned long)i - 1))
			fc_violation(&total, "%s: board %d does not start", lot, i);
	}
	if (!batch_start(lot, prof_of[origin]))
		return;
	/* every board dies at its cut; 30 s is plenty */
	{
		int dead = 0;

		for (int w = 0; w < 30000 && dead < n; w += 20) {
			dead += reap_dead(n);
			msleep(20);
		}
	}
	for (int i = 1; i <= n; i++) {
		json_t *s = NULL;

		t->boards++;
		if (board_down[i] == 0) {
			/* the session failed before the write (a timeout on
			 * a loaded machine): not this trial's fault */
			t->not_reached++;
			board_stop(i);
			continue;
		}
		t->cuts_hit++;
		/* the station notices, ends or parks the session */
		if (!kt_wait_slot(&st, i, "failed", 30000, &s))
			fc_violation(&total, "%s: slot %d not 'failed' after the "
					     "cut at %lu",
				     lot, i, first + (unsigned long)i - 1);
		json_decref(s);
	}
	fc_check_registry(st.db, false, &total);
	for (int i = 1; i <= n; i++) {
		unsigned long cut = first + (unsigned long)i - 1;
		long long sid = sql_int("SELECT max(id) FROM sessions WHERE "
					"hex(uid) = upper(?1)", uid[i]);
		char q[256];

		if (cut > MAX_WRITES || sid <= 0)
			continue;
		snprintf(q, sizeof(q), "SELECT CASE state WHEN 'ISSUED' THEN 1 "
			 "WHEN 'WRITTEN' THEN 2 WHEN 'VERIFIED' THEN 3 WHEN "
			 "'LOCKED' THEN 4 ELSE 0 END FROM sessions WHERE id = %lld",
			 sid);
		parked_at[origin][cut] = (int)sql_int(q, NULL);
	}
	/* unplugged long enough for the slot to see the port empty */
	msleep(1000);
	for (int i = 1; i <= n; i++) {
		if (!plug(i, image[i], uid[i], 0))
			fc_violation(&total, "%s: board %s does not reboot", lot,
				     uid[i]);
	}
	if (!finish_boards(lot, n, image, uid)) {
		fc_violation(&total, "%s: only %lld of %d boards ACTIVE", lot,
			     lot_active(lot), n);
		log_tail();
	}
	batch_stop();
	/* let the workers go idle before the checks use the ports */
	msleep(300);
	for (int i = 1; i <= n; i++) {
		fc_board_t b = st.boards[i] == NULL
				       ? FC_BOARD_UNREACHABLE
				       : fc_check_board(st.db,
							ks_simproc_spec(st.boards[i]),
							true, &total, NULL);

		if (b == FC_BOARD_LOCKED)
			t->completed++;
		board_stop(i);
	}
	fc_check_registry(st.db, true, &total);
	audit_check(lot);
}

static void part_powercut(const long writes[2], bool quick)
{
	double t0 = fc_elapsed();
	cut_tally_t t;

	memset(&t, 0, sizeof(t));
	if (kilnd_start(kilnd_real, NULL, false) != 0) {
		fc_violation(&total, "kilnd does not start");
		log_tail();
		return;
	}
	for (unsigned o = 0; o < 2; o++) {
		unsigned long w = (unsigned long)writes[o];

		for (unsigned long first = 1; first <= w; first += CUT_CHUNK) {
			unsigned long last = first + CUT_CHUNK - 1;

			if (last > w)
				last = w;
			powercut_chunk(o, first, last, &t);
			if (quick)
				break;
		}
	}
	(void)kt_kilnd_stop(&st);
	printf("A. power cuts through kilnd: %ld boards cut after write "
	       "1..N in parallel batches, %ld cuts hit (%ld sessions failed "
	       "before their cut), %ld completed ACTIVE [%.1f s]\n",
	       t.boards, t.cuts_hit, t.not_reached, t.completed,
	       fc_elapsed() - t0);
	fflush(stdout);
}

/* ---- B. station crash at every journal step ---- */

/*
 * A scenario is the state the crashing run starts from: a fresh board
 * (cut 0), or a board whose previous session a power cut after write
 * `cut` left parked (or FAILED), rebooted on its image, or on a blank
 * image with the same UID (`swap`: the board no longer holds the key the
 * parked session journaled, so the station voids it and starts afresh).
 */
typedef struct {
	const char *name;
	unsigned origin;
	unsigned long cut;
	bool swap;
	bool all_points; /* else only "commit" and "session:*" points */
} scenario_t;

typedef struct {
	char name[48];
	unsigned long hits;
} point_t;

/* Put a board on slot1 in the scenario's starting state (real kilnd). */
static bool scenario_prepare(const scenario_t *sc, const char *lot)
{
	char image[PATH_MAX], uid[17];
	ks_simproc_result_t sr;

	new_board(1, sc->origin, image, uid);
	if (board_start(1, image, uid, sc->cut) != 0)
		return false;
	if (sc->cut == 0)
		return true;
	if (kilnd_start(kilnd_real, NULL, false) != 0)
		return false;
	(void)kt_kiln(&st, out, sizeof(out), "provision", "slot1", "--lot", lot,
		      "--profile", prof_of[sc->origin], NULL);
	(void)kt_kilnd_stop(&st);
	if (ks_simproc_wait(st.boards[1], 5000, &sr) != KS_OK || !sr.power_cut) {
		fc_violation(&total, "%s: the board did not lose power at %lu",
			     sc->name, sc->cut);
		return false;
	}
	board_stop(1);
	if (sc->swap) {
		char rel[64];

		snprintf(rel, sizeof(rel), "boards/b%u-swap.img", board_no);
		kt_path(&st, image, sizeof(image), rel);
	}
	return board_start(1, image, uid, 0) == 0;
}

/* A traced provisioning run: every fault point and how often it is hit. */
static size_t trace_points(const scenario_t *sc, const char *lot,
			   point_t *pts)
{
	size_t n = 0;
	FILE *fp;
	char line[512];
	int rc;

	if (!scenario_prepare(sc, lot))
		return 0;
	log_reset();
	if (kilnd_start(kilnd_faultinj, NULL, true) != 0)
		return 0;
	rc = kt_kiln(&st, out, sizeof(out), "provision", "slot1", "--lot", lot,
		     "--profile", prof_of[sc->origin], NULL);
	if (rc != 0)
		fc_violation(&total, "%s: traced provisioning fails: %s",
			     sc->name, out);
	fp = fopen(st.log, "r");
	if (fp != NULL && fseek(fp, log_mark, SEEK_SET) != 0) {
		fclose(fp);
		fp = NULL;
	}
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
		char *p = strstr(line, "fault point ");
		char name[48];
		unsigned long hit;
		size_t i;

		if (p == NULL || sscanf(p, "fault point %47s #%lu", name, &hit) != 2)
			continue;
		if (!sc->all_points && strcmp(name, "commit") != 0 &&
		    strncmp(name, "session:", 8) != 0)
			continue;
		for (i = 0; i < n; i++)
			if (strcmp(pts[i].name, name) == 0)
				break;
		if (i == n) {
			if (n == MAX_POINTS)
				continue;
			snprintf(pts[n].name, sizeof(pts[n].name), "%s", name);
			pts[n++].hits = 0;
		}
		if (hit > pts[i].hits)
			pts[i].hits = hit;
	}
	if (fp != NULL)
		fclose(fp);
	(void)kt_kilnd_stop(&st);
	fc_check_board(st.db, ks_simproc_spec(st.boards[1]), true, &total, NULL);
	board_stop(1);
	return n;
}

typedef struct {
	long points, killed, not_reached, completed, runs_extra;
	long after[4];
	double t_prep, t_kill, t_recover, t_check; /* seconds */
} crash_tally_t;

static void crash_one(const scenario_t *sc, const char *lot,
		      const char *point, unsigned long hit, crash_tally_t *t)
{
	const char *only = getenv("FAULT_ONLY");
	int v0 = total.violations;
	char spec[80], ctx[160];
	double t1, t2;
	int rc, status, runs = 0;
	bool killed;
	fc_board_t b;

	snprintf(spec, sizeof(spec), "%.60s:%lu", point, hit);
	snprintf(ctx, sizeof(ctx), "crash [%s] at %s", sc->name, spec);
	if (only != NULL && strcmp(only, spec) != 0)
		return;
	t->points++;
	t1 = fc_elapsed();
	if (!scenario_prepare(sc, lot)) {
		fc_violation(&total, "%s: cannot prepare the board", ctx);
		board_stop(1);
		return;
	}
	t2 = fc_elapsed();
	t->t_prep += t2 - t1;
	log_reset();
	if (kilnd_start(kilnd_faultinj, spec, false) == 0)
		rc = kt_kiln(&st, out, sizeof(out), "provision", "slot1", "--lot",
			     lot, "--profile", prof_of[sc->origin], NULL);
	else
		rc = -1; /* died while starting up */
	status = kilnd_wait_exit(rc == 0 ? 200 : 3000);
	killed = log_contains("fault injection: SIGKILL");
	if (killed && status != -1 &&
	    !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		fc_violation(&total, "%s: kilnd logged the kill but exited with "
				     "status 0x%x",
			     ctx, status);
	if (!killed) {
		/* fewer hits this time (e.g. no checkpoint due): stop it */
		t->not_reached++;
		if (st.pid > 0)
			(void)kt_kilnd_stop(&st);
	} else {
		t->killed++;
		if (rc == 0)
			fc_violation(&total, "%s: the CLI reported ACTIVE from a "
					     "station that crashed", ctx);
	}
	t1 = fc_elapsed();
	t->t_kill += t1 - t2;
	/* the state the crash left: consistent, maybe unfinished */
	fc_check_registry(st.db, false, &total);
	b = fc_check_board(st.db, ks_simproc_spec(st.boards[1]), false, &total,
			   NULL);
	if (b >= FC_BOARD_BLANK && b <= FC_BOARD_LOCKED)
		t->after[b]++;
	t2 = fc_elapsed();
	t->t_check += t2 - t1;
	/* restart the real station; it finishes the board */
	if (kilnd_start(kilnd_real, NULL, false) != 0) {
		fc_violation(&total, "%s: kilnd does not restart", ctx);
		log_tail();
		board_stop(1);
		return;
	}
	do {
		rc = kt_kiln(&st, out, sizeof(out), "provision", "slot1",
			     "--lot", lot, "--profile", prof_of[sc->origin], NULL);
		runs++;
	} while (rc != 0 && runs < 3 && strstr(out, "already ACTIVE") == NULL);
	t->runs_extra += runs - 1;
	/* "already ACTIVE": the crash came after ACTIVE was durable (the
	 * board check below proves board and registry agree) */
	if (rc == 0 || strstr(out, "already ACTIVE") != NULL)
		t->completed++;
	else
		fc_violation(&total, "%s: not completed after the restart "
				     "(rc %d): %s", ctx, rc, out);
	(void)kt_kilnd_stop(&st);
	t1 = fc_elapsed();
	t->t_recover += t1 - t2;
	fc_check_board(st.db, ks_simproc_spec(st.boards[1]), true, &total, NULL);
	fc_check_registry(st.db, true, &total);
	audit_check(ctx);
	board_stop(1);
	t->t_check += fc_elapsed() - t1;
	if (total.violations != v0)
		printf("  ^ in %s\n", ctx);
}

static void part_crash(const long writes[2], bool quick)
{
	scenario_t sc[16];
	size_t nsc = 0;
	double t0 = fc_elapsed();
	crash_tally_t t;

	memset(&t, 0, sizeof(t));
	/* every point for the device key origin; points inside a write
	 * transaction all leave the state of a kill at its "commit", so the
	 * other scenarios take only "commit" and the session steps */
	sc[nsc++] = (scenario_t){"device, fresh board", 0, 0, false, true};
	sc[nsc++] = (scenario_t){"host, fresh board", 1, 0, false, false};
	/* resume from each parked state (cut points found in part A), and
	 * void a parked session whose board was swapped */
	for (int p = 1; p <= 4; p++)
		for (unsigned long n = 1; n <= (unsigned long)writes[0] &&
					  n <= MAX_WRITES; n++)
			if (parked_at[0][n] == p) {
				static char names[5][64];

				snprintf(names[p], sizeof(names[p]),
					 "device, parked at %s by a cut at %lu",
					 parked_names[p], n);
				sc[nsc++] = (scenario_t){names[p], 0, n, false,
							 false};
				if (p == 1) {
					static char swapname[64];

					snprintf(swapname, sizeof(swapname),
						 "device, parked at ISSUED "
						 "(cut %lu), board swapped", n);
					sc[nsc++] = (scenario_t){swapname, 0, n,
								 true, false};
				}
				break;
			}
	for (size_t k = 0; k < nsc; k++) {
		point_t pts[MAX_POINTS];
		char lot[32], list[1024];
		size_t n, used = 0;
		long before = t.points;

		snprintf(lot, sizeof(lot), "CR-%s", origin_names[sc[k].origin]);
		if (k < 2) {
			if (kilnd_start(kilnd_real, NULL, false) != 0)
				continue;
			lot_create(lot, prof_of[sc[k].origin]);
			(void)kt_kilnd_stop(&st);
		}
		n = trace_points(&sc[k], lot, pts);
		if (n == 0) {
			fc_violation(&total, "[%s]: the traced run shows no "
					     "fault points", sc[k].name);
			log_tail();
			continue;
		}
		for (size_t i = 0; i < n && used < sizeof(list) - 64; i++)
			used += (size_t)snprintf(list + used, sizeof(list) - used,
						 "%s%s x%lu", i ? ", " : "",
						 pts[i].name, pts[i].hits);
		for (size_t i = 0; i < n; i++)
			for (unsigned long h = 1; h <= pts[i].hits; h++) {
				if (quick && h > 1)
					break;
				crash_one(&sc[k], lot, pts[i].name, h, &t);
			}
		printf("B. [%s] %ld kill points: %s\n", sc[k].name,
		       t.points - before, list);
		fflush(stdout);
	}
	printf("B. station crash at every point: %ld kill points, %ld killed "
	       "kilnd, %ld not reached, %ld boards completed after the restart "
	       "(%ld extra runs); boards after the crash: blank %ld, keyed %ld, "
	       "committed %ld, locked %ld [%.1f s]\n",
	       t.points, t.killed, t.not_reached, t.completed, t.runs_extra,
	       t.after[0], t.after[1], t.after[2], t.after[3],
	       fc_elapsed() - t0);
	printf("B. time per kill point: %.2f s preparing the board, %.2f s "
	       "to the kill, %.2f s restart and finish, %.2f s checks\n",
	       t.t_prep / (double)(t.points ? t.points : 1),
	       t.t_kill / (double)(t.points ? t.points : 1),
	       t.t_recover / (double)(t.points ? t.points : 1),
	       t.t_check / (double)(t.points ? t.points : 1));
	fflush(stdout);
}

/* ---- C. random SIGKILL across a 32-board batch ---- */

typedef struct {
	long kills, in_flight, cuts, boards, active;
} random_tally_t;

/* One batch of NSLOTS fresh boards, SIGKILLed KILLS_PER_BATCH times at
 * random moments, then finished by a restarted kilnd. */
static void random_batch(unsigned long *state, unsigned origin,
			 unsigned long writes, int round, random_tally_t *t)
{
	char image[NSLOTS + 1][PATH_MAX], uid[NSLOTS + 1][17], lot[32];

	snprintf(lot, sizeof(lot), "RK%d-%s", round, origin_names[origin]);
	for (int i = 1; i <= NSLOTS; i++) {
		/* a third of the boards also lose power at a random write */
		unsigned long cut = rnd(state, 3) == 0 ? 1 + rnd(state, writes)
						       : 0;

		t->cuts += cut != 0;
		new_board(i, origin, image[i], uid[i]);
		if (!plug(i, image[i], uid[i], cut))
			fc_violation(&total, "%s: board %d does not start", lot, i);
	}
	t->boards += NSLOTS;
	for (int k = 0; k < KILLS_PER_BATCH; k++) {
		/* a batch of 32 takes about half a second here */
		int delay = 10 + (int)rnd(state, 300);
		long long fl;

		if (kilnd_start(kilnd_real, NULL, false) != 0) {
			fc_violation(&total, "%s: kilnd does not start", lot);
			log_tail();
			goto out;
		}
		if (!batch_start(lot, prof_of[origin]))
			goto out;
		sleep_reaping(delay, NSLOTS);
		kilnd_kill9();
		/* boards that lost power come back before the next start, so
		 * later kills also land in resumed sessions */
		sleep_reaping(1000, NSLOTS);
		for (int i = 1; i <= NSLOTS; i++)
			if (board_down[i] > 0 &&
			    !plug(i, image[i], uid[i], 0))
				fc_violation(&total, "%s: board %s does not "
						     "restart", lot, uid[i]);
		t->kills++;
		fl = unfinished(lot);
		t->in_flight += fl;
		printf("   %s kill %d: SIGKILL %d ms into the batch: %lld/%d "
		       "ACTIVE, %lld sessions left unfinished\n",
		       lot, k + 1, delay, lot_active(lot), NSLOTS, fl);
		/* a crashed station leaves a consistent registry */
		fc_check_registry(st.db, false, &total);
	}
	if (kilnd_start(kilnd_real, NULL, false) != 0 ||
	    !batch_start(lot, prof_of[origin])) {
		fc_violation(&total, "%s: kilnd does not restart", lot);
		goto out;
	}
	if (!finish_boards(lot, NSLOTS, image, uid)) {
		fc_violation(&total, "%s: only %lld of %d boards ACTIVE", lot,
			     lot_active(lot), NSLOTS);
		log_tail();
	}
	batch_stop();
	(void)kt_kilnd_stop(&st);
	for (int i = 1; i <= NSLOTS; i++)
		if (st.boards[i] != NULL &&
		    fc_check_board(st.db, ks_simproc_spec(st.boards[i]), true,
				   &total, NULL) == FC_BOARD_LOCKED)
			t->active++;
	fc_check_registry(st.db, true, &total);
	audit_check(lot);
out:
	kilnd_kill9();
	for (int i = 1; i <= NSLOTS; i++)
		board_stop(i);
}

static void part_random(unsigned long seed, int rounds, const long writes[2])
{
	unsigned long state = seed ? seed : 1;
	double t0 = fc_elapsed();
	random_tally_t t;

	memset(&t, 0, sizeof(t));
	printf("C. random SIGKILLs: seed %lu (rerun: FAULT_SEED=%lu)\n", seed,
	       seed);
	for (int r = 0; r < rounds; r++)
		random_batch(&state, (unsigned)r % 2,
			     (unsigned long)writes[r % 2], r + 1, &t);
	printf("C. %d batches of %d boards (%ld of them also power-cut), %ld "
	       "SIGKILLs of kilnd at random times leaving %ld sessions "
	       "unfinished; after the restarts %ld/%ld boards ACTIVE "
	       "[%.1f s]\n",
	       rounds, NSLOTS, t.cuts, t.kills, t.in_flight, t.active,
	       t.boards, fc_elapsed() - t0);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	unsigned long seed;
	long writes[2];
	long long last;
	bool quick = getenv("FAULT_QUICK") != NULL;
	char rm[300];

	fc_elapsed();
	if (argc < 5) {
		fprintf(stderr, "usage: fault_station KILND KILN KILN-AGENT-SIM "
				"KILND-FAULTINJ [SEED]\n");
		return 2;
	}
	kilnd_real = argv[1];
	kilnd_faultinj = argv[4];
	seed = argc > 5 ? strtoul(argv[5], NULL, 0)
	       : getenv("FAULT_SEED") ? strtoul(getenv("FAULT_SEED"), NULL, 0)
				       : (unsigned long)time(NULL);
	if (kt_init(&st, argc, argv, "faults") != 0)
		return 2;
	snprintf(shm_dir, sizeof(shm_dir), "%s/kiln-faults-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (mkdtemp(shm_dir) == NULL)
		return 2;
	snprintf(st.db, sizeof(st.db), "%s/registry.db", shm_dir);
	kt_path(&st, chain_pem, sizeof(chain_pem), "ca/" KS_CA_FILE_CHAIN);
	kt_path(&st, pub_pem, sizeof(pub_pem), "ca/" KS_CA_FILE_AUDIT_PUB);
	if (write_conf() != 0)
		return 2;
	memset(&total, 0, sizeof(total));

	if (kilnd_start(kilnd_real, NULL, false) != 0) {
		fprintf(stderr, "kilnd does not start\n");
		log_tail();
		kt_cleanup(&st);
		return 1;
	}
	for (unsigned o = 0; o < 2; o++) {
		writes[o] = baseline_writes(o);
		printf("%s-key full session through kilnd: WRITES %ld\n",
		       origin_names[o], writes[o]);
		if (writes[o] <= 0)
			fc_violation(&total, "no baseline");
	}
	(void)kt_kilnd_stop(&st);
	if (total.violations == 0) {
		/* FAULT_PARTS (default "ABC") picks parts, for debugging */
		const char *parts = getenv("FAULT_PARTS");

		if (parts == NULL)
			parts = "ABC";
		if (strchr(parts, 'A') != NULL)
			part_powercut(writes, quick);
		if (strchr(parts, 'B') != NULL)
			part_crash(writes, quick);
		if (strchr(parts, 'C') != NULL)
			part_random(seed, quick ? 1 : 4, writes);
	}

	last = fc_collect_outcomes(st.db, 0, &total);
	fc_check_registry(st.db, true, &total);
	printf("sessions: %ld (%lld in the registry): %ld ACTIVE, %ld FAILED, "
	       "%ld VOID, %ld SCRAPPED, %ld unfinished; reasons:\n",
	       total.sessions, last, total.active, total.failed, total.voided,
	       total.scrapped, total.unfinished);
	fc_print_reasons(&total);
	printf("kiln audit verify: %ld runs, %ld failed; part C boards rebooted "
	       "after a cut: %ld, replugged after a FAILED session: %ld\n",
	       audit_runs, audit_failures, reboots, replugs);
	printf("invariant violations: %d\n", total.violations);
	printf("elapsed: %.1f s\n", fc_elapsed());
	if (total.violations > 0)
		log_tail();
	kt_cleanup(&st);
	if (getenv("KT_KEEP") == NULL) {
		snprintf(rm, sizeof(rm), "rm -rf '%s'", shm_dir);
		if (system(rm) != 0)
			fprintf(stderr, "cannot remove %s\n", shm_dir);
	} else {
		printf("kept %s\n", shm_dir);
	}
	kt_passed = total.violations == 0 ? 1 : 0;
	kt_failed = total.violations == 0 ? 0 : 1;
	return kt_summary();
}
