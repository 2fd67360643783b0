/*
 * Registry faults: the Nth SQLite write (xWrite/xSync/xTruncate) fails with
 * SQLITE_IOERR or SQLITE_FULL, or the Nth lock request answers SQLITE_BUSY,
 * for every N in a full provisioning session, until a session completes
 * without reaching N.
 *
 * Each run is a real session: the in-process engine with a real registry
 * (SQLite file, opened through the fault VFS of vfs_fault.c), the real
 * signer with a development CA, and a fresh kiln-agent-sim board. After
 * each faulted run the test checks:
 *   - the run failed cleanly: ks_session_run() returned an error and the
 *     reason names the registry ("the operator sees why"), or it returned
 *     KS_OK and the fault was absorbed (a retried BUSY, a failed
 *     checkpoint after a commit);
 *   - PRAGMA integrity_check is "ok" on a fresh, fault-free connection;
 *   - nothing reported success without a durable ACTIVE row, and a device
 *     the registry calls ACTIVE holds that identity on the board;
 * then it lets the station recover (same handle after a one-shot fault;
 * close + reopen, a station restart, after a sticky one) and runs the
 * board again, which must end ACTIVE (resuming a parked session or
 * starting afresh). Device and certificate serials are never handed to two
 * sessions, and the audit log verifies (every 32nd recovery and at the end
 * of each sweep: the chain covers all rows before it).
 *
 * Modes: one-shot (only the Nth operation fails) and sticky (every
 * operation from the Nth on fails until the session returns: a disk that
 * stays full). BUSY is one-shot only: a persistent lock holder is waited
 * for (busy timeout and BEGIN retries), which is the registry's design.
 *
 * Usage: test_regfault KILN-AGENT-SIM [--quick]
 *   --quick   sweep every 4th N only
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <sqlite3.h>

#include "host/lib/agent.h"
#include "host/lib/audit.h"
#include "host/lib/ca.h"
#include "host/lib/hostkey.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"
#include "host/lib/simproc.h"
#include "tests/hardening/vfs_fault.h"

#define MAX_SEEN 4096

static char dir[64];
static char db_path[256];
static char chain_path[256];
static const char *sim_exe;
static ks_reg_t *reg;
static ks_signer_t *signer;
static ks_engine_t *engine;
static ks_profile_t profiles[2];
static ks_profile_t *plist[2];
static EVP_PKEY *station_key;
static EVP_PKEY *station_pub;

static unsigned long violations;
static double audit_s; /* time spent in audit verify */
static unsigned long board_no;

/* every serial handed out, with the session it belongs to */
static struct {
	char serial[65];
	int64_t session;
} seen[MAX_SEEN], seen_cert[MAX_SEEN];
static size_t nseen, nseen_cert;

static void violation(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("VIOLATION: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	violations++;
}

static void die(const char *what)
{
	fprintf(stderr, "test_regfault: setup failed: %s\n", what);
	exit(1);
}

static void profile(ks_profile_t *p, const char *name, const char *origin,
		    const char *lock)
{
	char err[256];

	if (ks_profile_init(p, name, err, sizeof(err)) != KS_OK ||
	    ks_profile_set(p, "subject", "CN=${serial},O=Kiln Fault", err,
			   sizeof(err)) != KS_OK ||
	    ks_profile_set(p, "validity_days", "365", err, sizeof(err)) !=
		    KS_OK ||
	    ks_profile_set(p, "key_origin", origin, err, sizeof(err)) !=
		    KS_OK ||
	    ks_profile_set(p, "lock", lock, err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "profile %s: %s\n", name, err);
		die("profile");
	}
}

static void engine_open(void)
{
	ks_engine_config_t cfg;

	if (ks_reg_open(db_path, "st-fault", &reg) != KS_OK ||
	    ks_reg_set_station_key(reg, station_key) != KS_OK)
		die("registry");
	memset(&cfg, 0, sizeof(cfg));
	cfg.station_id = "st-fault";
	cfg.reg = reg;
	cfg.signer = signer;
	cfg.profiles = plist;
	cfg.nprofiles = 2;
	if (ks_engine_new(&cfg, &engine) != KS_OK)
		die("engine");
}

static void engine_close(void)
{
	ks_engine_free(&engine);
	ks_reg_close(&reg);
}

static void setup(void)
{
	char path[256], key[256], err[256];
	ks_ca_t *ca = NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	int len;
	FILE *f;

	/* $TMPDIR (e.g. a tmpfs: the sweep does thousands of fsyncs) */
	snprintf(dir, sizeof(dir), "%s/kiln-regfault-XXXXXX",
		 getenv("TMPDIR") && strlen(getenv("TMPDIR")) < 40
			 ? getenv("TMPDIR")
			 : "/tmp");
	if (mkdtemp(dir) == NULL) {
		snprintf(dir, sizeof(dir), "/tmp/kiln-regfault-XXXXXX");
		if (mkdtemp(dir) == NULL)
			die("mkdtemp");
	}
	if (ks_ca_init_dev(dir, "Kiln Fault", err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "%s\n", err);
		die("ca init");
	}
	snprintf(path, sizeof(path), "%s/station-ca.pem", dir);
	snprintf(key, sizeof(key), "%s/station-ca.key", dir);
	snprintf(chain_path, sizeof(chain_path), "%s/chain.pem", dir);
	if (ks_ca_load(path, key, chain_path, &ca) != KS_OK ||
	    ks_signer_new(&ca, &signer) != KS_OK)
		die("ca load");
	profile(&profiles[0], "dev", "device", "full");
	profile(&profiles[1], "host", "host", "identity");
	for (int i = 0; i < 2; i++) {
		if (ks_signer_add_profile(signer, &profiles[i]) != KS_OK)
			die("add profile");
		plist[i] = &profiles[i];
	}
	snprintf(path, sizeof(path), "%s/station.key", dir);
	f = fopen(path, "r");
	if (f == NULL ||
	    (station_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL)
		die("station key");
	fclose(f);
	len = i2d_PUBKEY(station_key, &der);
	p = der;
	if (len <= 0 || (station_pub = d2i_PUBKEY(NULL, &p, len)) == NULL)
		die("station public key");
	OPENSSL_free(der);

	/* every connection of this process goes through the fault VFS */
	if (kh_vfs_install() != SQLITE_OK)
		die("vfs");
	snprintf(db_path, sizeof(db_path), "%s/registry.db", dir);
	engine_open();
	if (ks_reg_lot_create(reg, "L1", "dev", "F1", -1, "tester") != KS_OK ||
	    ks_reg_lot_create(reg, "L2", "host", "F2", -1, "tester") != KS_OK)
		die("lots");
}

static void teardown(void)
{
	char cmd[128];

	engine_close();
	ks_signer_free(&signer);
	EVP_PKEY_free(station_key);
	EVP_PKEY_free(station_pub);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static ks_err_t run(ks_simproc_t *sp, const char *lot, const char *prof,
		    ks_session_result_t *res)
{
	ks_session_params_t p;

	memset(&p, 0, sizeof(p));
	p.port = ks_simproc_spec(sp);
	p.slot = "fault";
	p.slot_index = 1;
	p.lot = lot;
	p.profile = prof;
	p.actor = "tester";
	p.timeout_ms = 500;
	return ks_session_run(engine, &p, res);
}

/* A serial handed to a session must never belong to another one. */
static void note_serial(const char *serial, int64_t session, int cert)
{
	size_t *n = cert ? &nseen_cert : &nseen;
	__typeof__(seen[0]) *tab = cert ? seen_cert : seen;

	if (serial[0] == '\0' || session == 0)
		return;
	for (size_t i = 0; i < *n; i++) {
		if (strcmp(tab[i].serial, serial) != 0)
			continue;
		if (tab[i].session != session)
			violation("%s serial %s used by sessions %lld and %lld",
				  cert ? "certificate" : "device", serial,
				  (long long)tab[i].session,
				  (long long)session);
		return;
	}
	if (*n < MAX_SEEN) {
		snprintf(tab[*n].serial, sizeof(tab[*n].serial), "%s", serial);
		tab[*n].session = session;
		(*n)++;
	}
}

typedef struct {
	int found;
	char state[16];
	uint8_t digest[32];
	int has_digest;
	uint8_t pubkey[32];
	int has_pubkey;
} dbdev_t;

/* Integrity and the device row of `uid`, on a fresh fault-free
 * connection. Returns 0 when the database could not be read. */
static int db_check(const uint8_t *uid, size_t uid_len, dbdev_t *d)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int ok = 0;

	memset(d, 0, sizeof(*d));
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY,
			    kh_vfs_real_name()) != SQLITE_OK)
		goto out;
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) !=
		    SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
		violation("integrity_check: %s",
			  st ? (const char *)sqlite3_column_text(st, 0)
			     : sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db,
			       "SELECT state, identity_digest, pubkey_sha256 "
			       "FROM devices WHERE uid = ?",
			       -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_blob(st, 1, uid, (int)uid_len, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		d->found = 1;
		snprintf(d->state, sizeof(d->state), "%s",
			 (const char *)sqlite3_column_text(st, 0));
		if (sqlite3_column_bytes(st, 1) == 32) {
			memcpy(d->digest, sqlite3_column_blob(st, 1), 32);
			d->has_digest = 1;
		}
		if (sqlite3_column_bytes(st, 2) == 32) {
			memcpy(d->pubkey, sqlite3_column_blob(st, 2), 32);
			d->has_pubkey = 1;
		}
	}
	ok = 1;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok;
}

/* What the board holds now (HELLO). */
static int board_state(ks_simproc_t *sp, ks_agent_hello_t *h)
{
	ks_agent_t *a = NULL;
	int ok;

	ok = ks_agent_open(ks_simproc_spec(sp), NULL, &a) == KS_OK &&
	     ks_agent_hello(a, h) == KS_OK;
	ks_agent_free(&a);
	return ok;
}

/*
 * The invariants after a run: integrity; KS_OK only with a durable ACTIVE
 * row; an ACTIVE row only for a board holding that identity.
 */
static void check_after(const char *what, ks_simproc_t *sp, ks_err_t rc,
			const ks_session_result_t *res)
{
	ks_agent_hello_t h;
	dbdev_t d;
	uint8_t hash[32];
	EVP_PKEY *k = NULL;

	if (!board_state(sp, &h)) {
		violation("%s: board does not answer after the run", what);
		return;
	}
	if (!db_check(h.uid, h.uid_len, &d)) {
		violation("%s: registry unreadable on a fresh connection",
			  what);
		return;
	}
	if (rc == KS_OK && !(d.found && strcmp(d.state, "ACTIVE") == 0))
		violation("%s: run returned KS_OK but the registry says %s",
			  what, d.found ? d.state : "nothing");
	if (d.found && strcmp(d.state, "ACTIVE") == 0) {
		int holds = h.st.state >= KP_STATE_COMMITTED &&
			    h.st.has_digest && d.has_digest &&
			    memcmp(h.st.id_digest, d.digest, 32) == 0 &&
			    h.st.has_pubkey && d.has_pubkey &&
			    ks_pubkey_from_point(h.st.pubkey, &k) == KS_OK &&
			    ks_pubkey_spki_sha256(k, hash) == KS_OK &&
			    memcmp(hash, d.pubkey, 32) == 0;

		if (!holds)
			violation("%s: registry says ACTIVE but the board does "
				  "not hold that identity",
				  what);
	}
	EVP_PKEY_free(k);
	note_serial(res->serial, res->session_id, 0);
	note_serial(res->cert_serial, res->session_id, 1);
}

static int audit_ok(const char *what)
{
	ks_audit_report_t rep;
	int rc;

	struct timespec a, b;

	memset(&rep, 0, sizeof(rep));
	clock_gettime(CLOCK_MONOTONIC, &a);
	rc = ks_audit_verify(db_path, chain_path, station_pub, &rep);
	clock_gettime(CLOCK_MONOTONIC, &b);
	audit_s += (double)(b.tv_sec - a.tv_sec) +
		   (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	if (rc != KS_OK || !rep.ok) {
		violation("%s: audit verify fails: %s", what, rep.first_error);
		return 0;
	}
	return 1;
}

/*
 * Another test program's station polling a stale /dev/pts/N path can open
 * the pty our simulator just got (flock: BUSY, or it eats the answers:
 * HELLO times out). A run that never got a HELLO is then repeated on a
 * new pty with the same board image (the board is re-plugged).
 */
static int lost_board(ks_err_t rc, const ks_session_result_t *res)
{
	return rc != KS_OK &&
	       (res->final == KS_STEP_NONE || res->final == KS_STEP_HELLO) &&
	       res->session_id == 0 &&
	       (rc == KS_ERR_BUSY || rc == KS_ERR_TIMEOUT || rc == KS_ERR_IO ||
		rc == KS_ERR_CLOSED) &&
	       strstr(res->reason, "registry") == NULL;
}

static ks_simproc_t *start_board(const char *image, const char *uid)
{
	ks_simproc_opts_t o;
	ks_simproc_t *sp = NULL;

	memset(&o, 0, sizeof(o));
	o.exe = sim_exe;
	o.image = image;
	o.uid_hex = uid;
	o.quiet = true;
	if (ks_simproc_start(&o, &sp) != KS_OK)
		die("simulator start");
	return sp;
}

static unsigned long replugs;

/* Run the board, re-plugging it when another process took its pty. The
 * fault is armed for each attempt (nothing reaches the registry before
 * the board's HELLO). */
static ks_err_t run_board(ks_simproc_t **sp, const char *image,
			  const char *uid, const char *lot, const char *prof,
			  ks_session_result_t *res, kh_fault_kind_t kind,
			  unsigned long n, int sticky, unsigned long *hits)
{
	ks_err_t rc = KS_ERR_IO;

	for (int attempt = 0; attempt < 4; attempt++) {
		if (kind != KH_FAULT_NONE)
			kh_vfs_arm(kind, n, sticky);
		rc = run(*sp, lot, prof, res);
		if (hits != NULL)
			*hits = kh_vfs_hits();
		kh_vfs_disarm();
		if (!lost_board(rc, res) || (hits != NULL && *hits > 0))
			break;
		printf("# %s: board pty lost (%s), re-plugging it\n", uid,
		       res->reason);
		replugs++;
		(void)ks_simproc_stop(sp, NULL);
		*sp = start_board(image, uid);
	}
	return rc;
}

typedef struct {
	kh_fault_kind_t kind;
	int sticky;
	const char *lot, *prof;
} sweep_t;

typedef struct {
	unsigned long injected, sessions, clean, absorbed, recovered;
	unsigned long runs, last_n;
} tally_t;

/* One N: a fresh board, the faulted run, the checks, the recovery.
 * Returns 1 when the fault was reached. */
static int one(const sweep_t *sw, unsigned long n, tally_t *t)
{
	char image[256], uid[17], what[96];
	ks_simproc_t *sp = NULL;
	ks_session_result_t res, res2;
	ks_simproc_result_t sr;
	unsigned long hits;
	ks_err_t rc;

	board_no++;
	snprintf(uid, sizeof(uid), "fa%014lx", board_no);
	snprintf(image, sizeof(image), "%s/b%lu.img", dir, board_no);
	snprintf(what, sizeof(what), "%s%s %s N=%lu",
		 kh_fault_name(sw->kind), sw->sticky ? "/sticky" : "",
		 sw->prof, n);
	sp = start_board(image, uid);
	rc = run_board(&sp, image, uid, sw->lot, sw->prof, &res, sw->kind, n,
		       sw->sticky, &hits);
	t->runs++;
	t->sessions++;
	if (hits > 0) {
		t->injected += hits;
		if (rc == KS_OK) {
			t->absorbed++;
		} else if (strstr(res.reason, "registry") != NULL) {
			t->clean++;
		} else {
			violation("%s: failed with a reason that does not name "
				  "the registry: %s (%s)",
				  what, res.reason, ks_strerror(rc));
		}
	} else if (rc != KS_OK) {
		violation("%s: no fault reached but the run failed: %s", what,
			  res.reason);
	}
	check_after(what, sp, rc, &res);

	if (hits > 0 && rc != KS_OK) {
		if (sw->sticky) {
			/* the station restarts once the disk is back */
			engine_close();
			engine_open();
		}
		rc = run_board(&sp, image, uid, sw->lot, sw->prof, &res2,
			       KH_FAULT_NONE, 0, 0, NULL);
		t->sessions++;
		if (rc != KS_OK)
			violation("%s: the station did not complete the board "
				  "after recovering: %s at %s",
				  what, res2.reason, ks_step_name(res2.final));
		else
			t->recovered++;
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
			 " (recovery)");
		check_after(what, sp, rc, &res2);
		/* the chain covers everything before: checking every 32nd
		 * recovery (and at the end of each sweep) finds any break */
		if (t->recovered % 32 == 0 && !audit_ok(what))
			printf("     after: %s\n", res.reason);
	}
	(void)ks_simproc_stop(&sp, &sr);
	unlink(image);
	return hits > 0;
}

static void sweep(const sweep_t *sw, unsigned long step, tally_t *t)
{
	unsigned long n;

	memset(t, 0, sizeof(*t));
	for (n = 1; n < 100000; n += step) {
		if (!one(sw, n, t))
			break;
	}
	t->last_n = n;
	audit_ok("end of sweep");
}

int main(int argc, char **argv)
{
	static const sweep_t sweeps[] = {
		{KH_FAULT_IOERR, 0, "L1", "dev"},
		{KH_FAULT_FULL, 0, "L1", "dev"},
		{KH_FAULT_BUSY, 0, "L1", "dev"},
		{KH_FAULT_IOERR, 1, "L1", "dev"},
		{KH_FAULT_FULL, 1, "L2", "host"},
		{KH_FAULT_IOERR, 0, "L2", "host"},
	};
	unsigned long step = 1;
	unsigned long tot_inj = 0, tot_sess = 0, tot_clean = 0, tot_abs = 0;
	struct timespec t0, t1;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	sim_exe = argc > 1 ? argv[1] : getenv("KILN_AGENT_SIM");
	if (sim_exe == NULL) {
		fprintf(stderr, "usage: test_regfault KILN-AGENT-SIM [--quick]\n");
		return 2;
	}
	if (argc > 2 && strcmp(argv[2], "--quick") == 0)
		step = 4;
	/* the registry logs every injected failure (stderr); only errors */
	ks_log_set_level(KS_LOG_ERROR);
	setup();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < sizeof(sweeps) / sizeof(sweeps[0]); i++) {
		tally_t t;

		sweep(&sweeps[i], step, &t);
		printf("%-5s %-6s %-4s: N=1..%lu, %lu faults injected, %lu "
		       "sessions, %lu clean failures, %lu absorbed, %lu "
		       "recovered\n",
		       kh_fault_name(sweeps[i].kind),
		       sweeps[i].sticky ? "sticky" : "once", sweeps[i].prof,
		       t.last_n - 1, t.injected, t.sessions, t.clean,
		       t.absorbed, t.recovered);
		fflush(stdout);
		tot_inj += t.injected;
		tot_sess += t.sessions;
		tot_clean += t.clean;
		tot_abs += t.absorbed;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);

	/* across everything: no serial twice in the database either */
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY,
			    kh_vfs_real_name()) == SQLITE_OK &&
	    sqlite3_prepare_v2(db,
			       "SELECT (SELECT count(*) - count(DISTINCT "
			       "device_serial) FROM sessions) + (SELECT "
			       "count(*) - count(DISTINCT serial_hex) FROM "
			       "certificates)",
			       -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		if (sqlite3_column_int64(st, 0) != 0)
			violation("serials repeated in the registry");
	} else {
		violation("final registry scan failed");
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	engine_close();
	audit_ok("final");
	engine_open();
	teardown();
	printf("registry faults: %lu faults injected, %lu sessions, %lu clean "
	       "failures, %lu absorbed, %lu violations (%.1f s, audit verify "
	       "%.1f s; %lu boards re-plugged after another process took "
	       "their pty)\n",
	       tot_inj, tot_sess, tot_clean, tot_abs, violations,
	       (double)(t1.tv_sec - t0.tv_sec) +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, audit_s,
	       replugs);
	printf("%lu passed, %lu failed\n", tot_sess - violations,
	       violations);
	return violations == 0 ? 0 : 1;
}
