/*
 * Fault sweep: device power cuts through the station's session engine.
 *
 * The station here is the real engine (ks_session_run) with a real
 * registry file, the real signer and a development CA, in this process;
 * the boards are kiln-agent-sim processes on pseudo-terminals whose power
 * is cut after their Nth emulated OTP/flash write (--cut-after N).
 *
 *  1. single cuts: for each key origin (device, host) and every N from 1
 *     to the writes of a full session, the station provisions a fresh
 *     board until the cut, the board reboots on the same image without a
 *     cut, the station reconnects (resuming a parked session from the
 *     board's HELLO) and finishes;
 *  2. pairs of cuts: the first cut at each of the last PAIR_SPAN writes,
 *     the second at every write of the recovery boot;
 *  3. chained cuts: seeded random boards each suffering 1..4 cuts.
 *
 * After every trial: the registry invariants (fault_check.h), the board's
 * HELLO against the registry, and `kiln audit verify` on the DB file.
 *
 * Usage: fault_powercut KILN-AGENT-SIM KILN [SEED]
 *        (FAULT_SEED in the environment also sets the seed; FAULT_QUICK=1,
 *        set in sanitizer builds, keeps the single cuts and samples the
 *        pairs and chained boards)
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "host/lib/ca.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"
#include "host/lib/simproc.h"
#include "tests/faults/fault_check.h"

#define MAX_WRITES 128
#define PAIR_SPAN 10
#define CHAIN_BOARDS 50
#define MAX_CUTS 4
#define FINISH_RUNS 3

typedef enum { ORIGIN_DEVICE = 0, ORIGIN_HOST = 1 } origin_t;

static const char *const origin_names[] = {"device", "host"};
static const char *const lots[] = {"FD", "FH"};

static char dir[64], db[128], chain_pem[128], pub_pem[128];
static const char *sim_exe, *kiln_exe;
static ks_reg_t *reg;
static ks_signer_t *signer;
static ks_engine_t *engine;
static ks_profile_t profiles[2];
static unsigned board_no;
static fc_tally_t total; /* violations and outcomes of everything */
static long audit_runs, audit_failures;
static double t_audit, t_checks; /* seconds spent verifying */

typedef struct {
	long trials, cut_points, cuts_hit, cuts_not_reached;
	long completed, scrapped_boards, extra_runs;
	long resumed; /* final runs that resumed a parked session */
	long after[4]; /* board state found at the reboot after the last cut */
} phase_t;

static void die(const char *what)
{
	fprintf(stderr, "fault_powercut: setup failed: %s\n", what);
	exit(2);
}

static void profile(ks_profile_t *p, const char *name, const char *origin)
{
	char err[256];

	if (ks_profile_init(p, name, err, sizeof(err)) != KS_OK ||
	    ks_profile_set(p, "subject", "CN=${serial},O=Kiln Faults", err,
			   sizeof(err)) != KS_OK ||
	    ks_profile_set(p, "validity_days", "365", err, sizeof(err)) !=
		    KS_OK ||
	    ks_profile_set(p, "key_origin", origin, err, sizeof(err)) !=
		    KS_OK ||
	    ks_profile_set(p, "lock", "full", err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "profile %s: %s\n", name, err);
		die("profile");
	}
}

static void setup(void)
{
	char path[192], key[192], err[256];
	static ks_profile_t *plist[2];
	ks_engine_config_t cfg;
	EVP_PKEY *station_key;
	ks_ca_t *ca = NULL;
	FILE *f;

	/* tmpfs when there is one: the sweep checks logic, not the disk (a
	 * killed process or a cut board loses no page cache), and thousands
	 * of fsyncs on a real disk would dominate the run time */
	snprintf(dir, sizeof(dir), "%s/kiln-faults-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	if (ks_ca_init_dev(dir, "Kiln Faults", err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "%s\n", err);
		die("ca init");
	}
	snprintf(path, sizeof(path), "%s/" KS_CA_FILE_CERT, dir);
	snprintf(key, sizeof(key), "%s/" KS_CA_FILE_KEY, dir);
	snprintf(chain_pem, sizeof(chain_pem), "%s/" KS_CA_FILE_CHAIN, dir);
	snprintf(pub_pem, sizeof(pub_pem), "%s/" KS_CA_FILE_AUDIT_PUB, dir);
	if (ks_ca_load(path, key, chain_pem, &ca) != KS_OK ||
	    ks_signer_new(&ca, &signer) != KS_OK)
		die("ca load");
	profile(&profiles[ORIGIN_DEVICE], "dev", "device");
	profile(&profiles[ORIGIN_HOST], "host", "host");
	for (int i = 0; i < 2; i++) {
		if (ks_signer_add_profile(signer, &profiles[i]) != KS_OK)
			die("add profile");
		plist[i] = &profiles[i];
	}
	snprintf(path, sizeof(path), "%s/" KS_CA_FILE_AUDIT_KEY, dir);
	f = fopen(path, "r");
	if (f == NULL ||
	    (station_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL)
		die("station key");
	fclose(f);
	snprintf(db, sizeof(db), "%s/registry.db", dir);
	if (ks_reg_open(db, "faults", &reg) != KS_OK ||
	    ks_reg_set_station_key(reg, station_key) != KS_OK)
		die("registry");
	ks_reg_set_checkpoint_interval(reg, 16);
	EVP_PKEY_free(station_key); /* the registry holds a reference */
	if (ks_reg_lot_create(reg, lots[0], "dev", "FD", -1, "faults") != KS_OK ||
	    ks_reg_lot_create(reg, lots[1], "host", "FH", -1, "faults") != KS_OK)
		die("lots");
	memset(&cfg, 0, sizeof(cfg));
	cfg.station_id = "faults";
	cfg.reg = reg;
	cfg.signer = signer;
	cfg.profiles = plist;
	cfg.nprofiles = 2;
	if (ks_engine_new(&cfg, &engine) != KS_OK)
		die("engine");
}

static void teardown(void)
{
	char cmd[128];

	ks_engine_free(&engine);
	ks_reg_close(&reg);
	ks_signer_free(&signer);
	if (getenv("FAULT_KEEP") != NULL) {
		printf("kept %s\n", dir);
		return;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* Boards listen on unix sockets, not PTYs: a PTY number is machine-wide
 * and a station of another test suite running in parallel could reach a
 * board through a stale link to a recycled number. */
static ks_simproc_t *boot(const char *image, const char *uid,
			  unsigned long cut)
{
	ks_simproc_opts_t o;
	ks_simproc_t *sp = NULL;
	char sock[160];

	snprintf(sock, sizeof(sock), "%s/board.sock", dir);
	unlink(sock); /* left behind by a board that lost power */
	memset(&o, 0, sizeof(o));
	o.exe = sim_exe;
	o.image = image;
	o.unix_path = sock;
	o.uid_hex = uid;
	o.cut_after = cut;
	o.quiet = true;
	if (ks_simproc_start(&o, &sp) != KS_OK)
		return NULL;
	return sp;
}

static ks_err_t provision(ks_simproc_t *sp, origin_t origin,
			  ks_session_result_t *res)
{
	ks_session_params_t p;

	memset(&p, 0, sizeof(p));
	p.port = ks_simproc_spec(sp);
	p.slot = "faults";
	p.slot_index = 1;
	p.lot = lots[origin];
	p.profile = profiles[origin].name;
	p.actor = "faults";
	p.timeout_ms = 1000;
	return ks_session_run(engine, &p, res);
}

static void audit_check(const char *ctx)
{
	char out[4096];
	double t = fc_elapsed();

	audit_runs++;
	if (!fc_audit_verify(kiln_exe, db, chain_pem, pub_pem, out,
			     sizeof(out))) {
		audit_failures++;
		fc_violation(&total, "%s: kiln audit verify fails:\n%s", ctx,
			     out);
	}
	t_audit += fc_elapsed() - t;
}

/*
 * One board through boots cut after cuts[0], cuts[1], ... then a boot
 * without a cut on which the station finishes. Returns the writes of the
 * finishing boot (or -1), *hit the number of cuts that happened.
 */
static long trial(origin_t origin, const unsigned long *cuts, size_t ncuts,
		  phase_t *ph, const char *tag)
{
	char image[192], uid[17], ctx[160];
	ks_session_result_t res;
	ks_simproc_result_t sr;
	ks_simproc_t *sp;
	long writes = -1;
	int runs = 0, done = 0, v0 = total.violations;
	double t0;
	ks_err_t rc = KS_ERR_INTERNAL;
	size_t used = 0;

	board_no++;
	snprintf(uid, sizeof(uid), "fa%02x%012x", (unsigned)origin + 1,
		 board_no);
	snprintf(image, sizeof(image), "%s/b%u.img", dir, board_no);
	used = (size_t)snprintf(ctx, sizeof(ctx), "%s %s board %s cuts", tag,
				origin_names[origin], uid);
	for (size_t i = 0; i < ncuts && used < sizeof(ctx) - 12; i++)
		used += (size_t)snprintf(ctx + used, sizeof(ctx) - used, "%s%lu",
					 i ? "," : " ", cuts[i]);
	ph->trials++;
	for (size_t i = 0; i < ncuts && !done; i++) {
		ph->cut_points++;
		sp = boot(image, uid, cuts[i]);
		if (sp == NULL) {
			fc_violation(&total, "%s: simulator does not start", ctx);
			return -1;
		}
		rc = provision(sp, origin, &res);
		if (rc == KS_OK) {
			/* the boot needed fewer writes than the cut: the
			 * board is ACTIVE, later cuts have nothing to hit */
			ph->cuts_not_reached++;
			done = 1;
		} else if (ks_simproc_wait(sp, 3000, &sr) == KS_OK &&
			   sr.power_cut) {
			ph->cuts_hit++;
		} else {
			fc_violation(&total, "%s: cut %lu: the session failed "
					     "but the board kept its power: %s",
				     ctx, cuts[i], res.reason);
		}
		(void)ks_simproc_stop(&sp, NULL);
		/* between boots the registry is consistent (sessions may be
		 * parked) */
		fc_check_registry(db, false, &total);
	}
	sp = boot(image, uid, 0);
	if (sp == NULL) {
		fc_violation(&total, "%s: simulator does not reboot", ctx);
		return -1;
	}
	if (!done) {
		fc_board_t b = fc_check_board(db, ks_simproc_spec(sp), false,
					      &total, NULL);

		if (b >= FC_BOARD_BLANK && b <= FC_BOARD_LOCKED)
			ph->after[b]++;
		/* the station finishes: normally in one run */
		do {
			rc = provision(sp, origin, &res);
			runs++;
		} while (rc != KS_OK && res.final != KS_STEP_SCRAPPED &&
			 runs < FINISH_RUNS);
		ph->extra_runs += runs - 1;
	}
	if (rc == KS_OK) {
		ph->completed++;
		ph->resumed += res.resumed;
		fc_check_board(db, ks_simproc_spec(sp), true, &total, NULL);
	} else if (res.final == KS_STEP_SCRAPPED) {
		ph->scrapped_boards++;
		printf("  %s: board scrapped: %s\n", ctx, res.reason);
	} else {
		fc_violation(&total, "%s: not completed after %d runs: %s at "
				     "%s: %s",
			     ctx, runs, ks_strerror((int)rc),
			     ks_step_name(res.final), res.reason);
	}
	if (ks_simproc_stop(&sp, &sr) == KS_OK)
		writes = sr.writes;
	t0 = fc_elapsed();
	fc_check_registry(db, true, &total);
	t_checks += fc_elapsed() - t0;
	/* the audit chain after every single-cut trial, every 5th other one
	 * (and at the end of each phase): verifying grows with the log */
	if (strcmp(tag, "single") == 0 || ph->trials % 5 == 0)
		audit_check(ctx);
	if (total.violations != v0)
		printf("  ^ in %s\n", ctx);
	remove(image);
	return writes;
}

static void phase_print(const char *name, const phase_t *ph, double t0)
{
	audit_check(name);
	printf("%s: %ld boards, %ld cut points (%ld cuts hit, %ld not "
	       "reached), %ld completed, %ld scrapped, %ld extra station "
	       "runs, %ld resumed parked sessions; after the cut the boards "
	       "were blank %ld, keyed %ld, committed %ld, locked %ld "
	       "[%.1f s]\n",
	       name, ph->trials, ph->cut_points, ph->cuts_hit,
	       ph->cuts_not_reached, ph->completed, ph->scrapped_boards,
	       ph->extra_runs, ph->resumed, ph->after[0], ph->after[1],
	       ph->after[2], ph->after[3], fc_elapsed() - t0);
	fflush(stdout);
}

/* A full session on a fresh board, no cut: its number of writes. */
static long baseline(origin_t origin)
{
	phase_t ph;

	memset(&ph, 0, sizeof(ph));
	return trial(origin, NULL, 0, &ph, "baseline");
}

static unsigned long rnd(unsigned long *state, unsigned long n)
{
	/* xorshift64*: reproducible from the printed seed */
	unsigned long x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return (unsigned long)((x * 2685821657736338717ULL) >> 33) % n;
}

int main(int argc, char **argv)
{
	long writes[2], recovery[2][MAX_WRITES + 1];
	unsigned long seed, state;
	long long last_id = 0;
	phase_t single, pairs, chained;
	bool quick = getenv("FAULT_QUICK") != NULL;
	double t0;

	fc_elapsed();
	sim_exe = argc > 1 ? argv[1] : getenv("KILN_AGENT_SIM");
	kiln_exe = argc > 2 ? argv[2] : getenv("KILN");
	if (sim_exe == NULL || kiln_exe == NULL) {
		fprintf(stderr, "usage: fault_powercut KILN-AGENT-SIM KILN [SEED]\n");
		return 2;
	}
	seed = argc > 3 ? strtoul(argv[3], NULL, 0)
	       : getenv("FAULT_SEED") ? strtoul(getenv("FAULT_SEED"), NULL, 0)
				       : (unsigned long)time(NULL);
	ks_log_set_level(KS_LOG_ERROR);
	setup();
	memset(&total, 0, sizeof(total));
	memset(&single, 0, sizeof(single));
	memset(&pairs, 0, sizeof(pairs));
	memset(&chained, 0, sizeof(chained));

	for (int o = 0; o < 2; o++) {
		writes[o] = baseline((origin_t)o);
		if (writes[o] <= 0 || writes[o] > MAX_WRITES) {
			fc_violation(&total, "%s baseline: WRITES %ld",
				     origin_names[o], writes[o]);
			goto out;
		}
		printf("%s-key full session: WRITES %ld\n", origin_names[o],
		       writes[o]);
	}

	/* 1. a cut at every write */
	t0 = fc_elapsed();
	for (int o = 0; o < 2; o++)
		for (unsigned long n = 1; n <= (unsigned long)writes[o]; n++)
			recovery[o][n] = trial((origin_t)o, &n, 1, &single,
					       "single");
	phase_print("single cuts", &single, t0);

	/* 2. pairs over the last writes */
	t0 = fc_elapsed();
	for (int o = 0; o < 2; o++) {
		unsigned long first = writes[o] > PAIR_SPAN
					      ? (unsigned long)writes[o] - PAIR_SPAN + 1
					      : 1;

		if (quick) /* sanitizer builds: the last three writes */
			first = (unsigned long)writes[o] - 2;
		for (unsigned long n = first; n <= (unsigned long)writes[o]; n++)
			for (long m = 1; m <= recovery[o][n]; m++) {
				unsigned long c[2] = {n, (unsigned long)m};

				trial((origin_t)o, c, 2, &pairs, "pair");
			}
	}
	phase_print("pairs of cuts", &pairs, t0);

	/* 3. chained random cuts */
	t0 = fc_elapsed();
	printf("chained cuts: seed %lu (rerun: FAULT_SEED=%lu)\n", seed, seed);
	state = seed ? seed : 1;
	for (int b = 0; b < (quick ? CHAIN_BOARDS / 5 : CHAIN_BOARDS); b++) {
		origin_t o = (origin_t)rnd(&state, 2);
		unsigned long c[MAX_CUTS];
		size_t k = 1 + rnd(&state, MAX_CUTS);

		for (size_t i = 0; i < k; i++)
			c[i] = 1 + rnd(&state, (unsigned long)writes[o]);
		trial(o, c, k, &chained, "chained");
	}
	phase_print("chained cuts", &chained, t0);

out:
	last_id = fc_collect_outcomes(db, 0, &total);
	fc_check_registry(db, true, &total);
	printf("sessions: %ld (%lld in the registry): %ld ACTIVE, %ld FAILED, "
	       "%ld VOID, %ld SCRAPPED, %ld unfinished; reasons:\n",
	       total.sessions, last_id, total.active, total.failed,
	       total.voided, total.scrapped, total.unfinished);
	fc_print_reasons(&total);
	printf("kiln audit verify: %ld runs, %ld failed (%.1f s); registry "
	       "checks %.1f s\n", audit_runs, audit_failures, t_audit, t_checks);
	printf("invariant violations: %d\n", total.violations);
	printf("elapsed: %.1f s\n", fc_elapsed());
	teardown();
	printf("%d passed, %d failed\n", total.violations == 0 ? 1 : 0,
	       total.violations == 0 ? 0 : 1);
	return total.violations == 0 ? 0 : 1;
}
