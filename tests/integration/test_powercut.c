/*
 * Integration: power-cut sweep against kiln-agent-sim (--cut-after N).
 *
 * For each key origin (device GENKEY, host HOSTKEY): run one complete
 * session without a cut and read WRITES n. Then for every N in 1..n, on a
 * fresh image: start the simulator with --cut-after N, drive the session
 * until the link dies, restart on the same image, HELLO and check the
 * state invariants (COMMITTED/LOCKED => integrity ok, SHA-256(READBACK)
 * == id_digest, blob pubkey == HELLO pubkey, digest is one we sent;
 * never committed with a wrong digest), then either complete the session
 * (resuming with the existing key where HELLO says KEYED) and verify the
 * final identity, or observe a clean refusal with a reason.
 *
 * Usage: test_powercut PATH-TO-kiln-agent-sim [MAX_N] (or $KILN_AGENT_SIM).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/lib/log.h"
#include "tests/integration/itest.h"

typedef struct {
	int sessions, cut_points, completed, refused, cut_not_reached;
	int after[4]; /* state after restart */
} tally_t;

static const char *origin_name(it_origin_t o)
{
	return o == IT_DEVKEY ? "device-key" : "host-key";
}

/* One complete session, no cut: returns WRITES, or -1. */
static long baseline(it_env_t *e, it_origin_t origin)
{
	ks_simproc_t *sp = NULL;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	ks_simproc_result_t res = {.writes = -1};
	ks_err_t r = KS_ERR_INTERNAL;

	it_fresh_image(e, "base");
	if (it_start(e, false, 0, 2000, &sp, &a) != 0)
		return -1;
	if (it_hello_checked(e, a, &h) == KS_OK)
		r = it_provision(e, a, origin, &h);
	it_check(e, r == KS_OK, "baseline session completes");
	ks_agent_free(&a);
	(void)ks_simproc_stop(&sp, &res);
	return r == KS_OK ? res.writes : -1;
}

static void cut_at(it_env_t *e, it_origin_t origin, unsigned long n,
		   tally_t *t)
{
	ks_simproc_t *sp = NULL;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	ks_simproc_result_t res;
	ks_err_t r = KS_ERR_INTERNAL;
	char msg[96];

	it_fresh_image(e, origin_name(origin));
	t->sessions++;
	if (!it_check(e, it_start(e, false, n, 2000, &sp, &a) == 0,
		      "simulator starts with a cut"))
		return;
	if (it_hello_checked(e, a, &h) == KS_OK)
		r = it_provision(e, a, origin, &h);
	ks_agent_free(&a);
	if (r == KS_OK) {
		/* the whole session needed fewer writes this time */
		t->cut_not_reached++;
		(void)ks_simproc_stop(&sp, NULL);
	} else {
		snprintf(msg, sizeof(msg),
			 "cut %lu: link died with the simulator", n);
		it_check(e, r == KS_ERR_CLOSED || r == KS_ERR_TIMEOUT, msg);
		if (ks_simproc_wait(sp, 5000, &res) != KS_OK) {
			it_violation(e, "cut %lu: simulator still running "
				     "after the link died (%s)", n,
				     ks_strerror(r));
			(void)ks_simproc_stop(&sp, NULL);
			return;
		}
		snprintf(msg, sizeof(msg),
			 "cut %lu: exit status 99 and 'POWER CUT after write "
			 "%lu'", n, n);
		it_check(e, res.power_cut && res.cut_at == (long)n, msg);
		(void)ks_simproc_stop(&sp, NULL);
		t->cut_points++;
	}

	/* power back on, no cut */
	t->sessions++;
	if (!it_check(e, it_start(e, false, 0, 2000, &sp, &a) == 0,
		      "simulator restarts on the cut image"))
		return;
	r = it_hello_checked(e, a, &h);
	if (!it_check(e, r == KS_OK, "HELLO after power-up"))
		goto out;
	if (h.st.state <= KP_STATE_LOCKED)
		t->after[h.st.state]++;
	if (e->verbose)
		printf("# cut %lu: state %u slots_free %u\n", n, h.st.state,
		       h.st.slots_free);
	r = it_provision(e, a, origin, &h);
	if (r == KS_OK) {
		if (it_verify_locked(e, a) == KS_OK)
			t->completed++;
	} else if (r == KS_ERR_AGENT &&
		   ks_agent_last_status(a) != KP_ST_INTERNAL) {
		printf("# cut %lu: cleanly refused: %s\n", n,
		       ks_agent_last_error(a));
		t->refused++;
	} else {
		it_violation(e, "cut %lu: resume failed: %s: %s", n,
			     ks_strerror(r), ks_agent_last_error(a));
	}
out:
	ks_agent_free(&a);
	(void)ks_simproc_stop(&sp, NULL);
}

int main(int argc, char **argv)
{
	const char *sim = it_sim_path(argc, argv);
	long max_n = argc > 2 ? atol(argv[2]) : 0;
	int total_violations = 0;
	it_env_t e;

	if (sim == NULL) {
		fprintf(stderr, "usage: %s PATH-TO-kiln-agent-sim [MAX_N]\n",
			argv[0]);
		return 77;
	}
	ks_log_set_level(KS_LOG_ERROR);
	if (it_env_init(&e, sim) != 0)
		return 1;
	e.verbose = getenv("KILN_TEST_VERBOSE") != NULL;
	for (int o = IT_DEVKEY; o <= IT_HOSTKEY; o++) {
		tally_t t = {0};
		int v0 = e.violations;
		int64_t t0 = ks_link_now_ms();
		long n = baseline(&e, (it_origin_t)o);

		if (n <= 0) {
			it_violation(&e, "%s: baseline session failed or "
				     "reported no WRITES", origin_name(o));
			continue;
		}
		if (max_n > 0 && n > max_n)
			n = max_n;
		for (long i = 1; i <= n; i++)
			cut_at(&e, (it_origin_t)o, (unsigned long)i, &t);
		printf("powercut %s: writes %ld, sessions %d, cut points %d, "
		       "completed %d, cleanly refused %d, cut not reached %d, "
		       "state after power-up blank/keyed/committed/locked "
		       "%d/%d/%d/%d, invariant violations %d, %lld ms\n",
		       origin_name(o), n, t.sessions, t.cut_points,
		       t.completed, t.refused, t.cut_not_reached, t.after[0],
		       t.after[1], t.after[2], t.after[3],
		       e.violations - v0, (long long)(ks_link_now_ms() - t0));
		it_check(&e, t.completed + t.refused == (int)n,
			 "every cut point ends completed or cleanly refused");
	}
	total_violations = e.violations;
	printf("powercut: %d passed, %d failed\n", e.checks - e.violations,
	       e.violations);
	it_env_free(&e);
	return total_violations == 0 ? 0 : 1;
}
