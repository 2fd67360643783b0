/*
 * Link faults: full provisioning sessions driven by the station's session
 * engine (in-process, real registry, real signer) against real
 * kiln-agent-sim boards, through a relay (lf_relay.c) that drops, flips,
 * duplicates and truncates bytes, inserts boot-log text, re-sends stale
 * frames and unplugs the link mid-frame.
 *
 * Per fault rate (per byte, both directions; 1e-2 .. 1e-6) a number of
 * boards is provisioned; a board whose session fails or parks is tried
 * again (up to KILN_LF_ATTEMPTS runs), as an operator would re-seat it.
 * After the last run the test talks to the board directly (no relay) and
 * checks, for every board:
 *   - registry ACTIVE  <=>  the engine returned KS_OK;
 *   - when ACTIVE: the certificate in the registry verifies against the
 *     CA and carries the key the board reports; the board's stored blob
 *     (READBACK) hashes to the digest the board reports in HELLO and to
 *     the digest the registry recorded, and decodes to exactly the
 *     registry's certificate and serial (nothing corrupted was accepted
 *     anywhere on the way); the board is LOCKED;
 *   - no run took longer than its timeouts allow (no hang);
 *   - the audit log verifies at the end.
 * Prints per rate: boards, sessions (runs), completed (first run / after
 * a park and resume / after a clean failure and retry), cleanly failed,
 * still parked, corrupted payloads accepted (must be 0), retransmits
 * per run and extra bytes relative to a fault-free session.
 *
 * Usage: test_linkfault KILN-AGENT-SIM
 * Environment: KILN_LF_SEED (default 1), KILN_LF_BOARDS (boards per rate,
 * default 6), KILN_LF_ATTEMPTS (runs per board, default 4),
 * KILN_LF_VERBOSE (print every run).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "host/lib/agent.h"
#include "host/lib/audit.h"
#include "host/lib/ca.h"
#include "host/lib/hostkey.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"
#include "host/lib/simproc.h"
#include "tests/integration/station_fixture.h"
#include "protocol/msg.h"
#include "tests/linkfault/lf_relay.h"

#define RUN_TIMEOUT_MS 300
/* a run that takes longer than this is a hang: ~40 requests, each
 * (retries + 1) attempts of RUN_TIMEOUT_MS, plus crypto */
#define RUN_HANG_MS 60000

static int passed, failed;
static char dir[64];
static const char *sim_exe;
static ks_reg_t *reg;
static ks_signer_t *signer;
static ks_engine_t *engine;
static tf_station_t fx;
static EVP_PKEY *station_key;
static uint64_t rng_state;

static void check(int cond, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void check(int cond, const char *fmt, ...)
{
	va_list ap;

	if (cond) {
		passed++;
		return; /* only failures are printed: there are hundreds */
	}
	va_start(ap, fmt);
	printf("FAIL ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	failed++;
}

static void die(const char *what)
{
	fprintf(stderr, "test_linkfault: setup failed: %s\n", what);
	exit(1);
}

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned env_uint(const char *name, unsigned def)
{
	const char *s = getenv(name);
	char *end = NULL;
	unsigned long v;

	if (s == NULL || *s == '\0')
		return def;
	v = strtoul(s, &end, 10);
	return end != NULL && *end == '\0' && v > 0 && v < 100000 ? (unsigned)v
								   : def;
}

static void setup(void)
{
	static const tf_profile_spec_t specs[] = {
		{"dev", "device", "full", "LD", "D"},
		{"host", "host", "identity", "LH", "H"},
	};

	tf_station_setup(&fx, "lf", "Kiln Link Faults", "st-lf", specs,
			 sizeof(specs) / sizeof(specs[0]));
	snprintf(dir, sizeof(dir), "%s", fx.dir);
	reg = fx.reg;
	signer = fx.signer;
	engine = fx.engine;
	station_key = fx.station_key;
}

/* What a rate's boards add up to. */
typedef struct {
	unsigned boards, runs;
	unsigned done_first, done_resumed, done_retried;
	unsigned failed_clean, parked;
	unsigned corrupted, hangs;
	unsigned unplugs;
	uint64_t retransmits, bytes, replays, faults;
	unsigned done_runs; /* runs of completed boards, for bytes/board */
	uint64_t done_bytes;
} tally_t;

/* Everything the board holds must be what the registry recorded, and
 * that must be what the CA signed. Returns 1 if consistent. */
static int verify_board(const char *spec, const ks_session_result_t *res,
			const uint8_t *uid, size_t uid_len, int active,
			char *why, size_t whylen)
{
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	ks_reg_device_t dev;
	uint8_t *der = NULL, *blob = NULL, pt[65], dg[32];
	size_t der_len = 0, blob_len = 0;
	const uint8_t *p;
	X509 *x = NULL;
	kp_blob_t b;
	char vwhy[256];
	int ok = 0;

	why[0] = '\0';
	if (ks_reg_device_get(reg, uid, uid_len, NULL, &dev) != KS_OK) {
		snprintf(why, whylen, "no registry device");
		return !active;
	}
	if ((dev.state == KS_REG_ACTIVE) != (active != 0)) {
		snprintf(why, whylen, "registry says %s, the engine %s",
			 ks_reg_state_name((int)dev.state),
			 active ? "ACTIVE" : "not ACTIVE");
		return 0;
	}
	if (!active)
		return 1; /* nothing accepted: nothing to compare */
	if (ks_agent_open(spec, NULL, &a) != KS_OK ||
	    ks_agent_hello(a, &h) != KS_OK) {
		snprintf(why, whylen, "board does not answer directly");
		goto out;
	}
	if (h.st.state != KP_STATE_LOCKED || !h.st.has_digest ||
	    !h.st.has_pubkey) {
		snprintf(why, whylen, "board state %u (want LOCKED)",
			 h.st.state);
		goto out;
	}
	if (ks_agent_readback(a, &blob, &blob_len) != KS_OK) {
		snprintf(why, whylen, "READBACK failed: %s",
			 ks_agent_last_error(a));
		goto out;
	}
	SHA256(blob, blob_len, dg);
	if (memcmp(dg, h.st.id_digest, 32) != 0 || !dev.has_identity_digest ||
	    memcmp(dg, dev.identity_digest, 32) != 0) {
		snprintf(why, whylen, "stored blob, board digest and registry "
				      "digest differ");
		goto out;
	}
	if (ks_reg_session_cert(reg, res->session_id, &der, &der_len, NULL,
				0) != KS_OK) {
		snprintf(why, whylen, "no certificate in the registry");
		goto out;
	}
	if (ks_ca_verify_der(ks_signer_chain(signer), der, der_len, 0, vwhy,
			     sizeof(vwhy)) != KS_OK) {
		snprintf(why, whylen, "certificate does not verify: %.160s", vwhy);
		goto out;
	}
	p = der;
	x = d2i_X509(NULL, &p, (long)der_len);
	if (x == NULL || ks_pubkey_point(X509_get0_pubkey(x), pt) != KS_OK ||
	    memcmp(pt, h.st.pubkey, 65) != 0) {
		snprintf(why, whylen, "certificate key is not the board's");
		goto out;
	}
	if (kp_blob_decode(&b, blob, blob_len) != KP_OK ||
	    b.cert_len != der_len || memcmp(b.cert, der, der_len) != 0 ||
	    memcmp(b.pubkey, pt, 65) != 0 ||
	    b.serial_len != strlen(dev.serial) ||
	    memcmp(b.serial, dev.serial, b.serial_len) != 0) {
		snprintf(why, whylen, "stored blob is not the registry's "
				      "certificate/serial/key");
		goto out;
	}
	ok = 1;
out:
	X509_free(x);
	free(der);
	free(blob);
	ks_agent_free(&a);
	return ok;
}

static void board(double rate, unsigned idx, tally_t *t, unsigned attempts,
		  uint64_t *baseline)
{
	char image[256], bsock[256], rsock[256], spec[300], uidhex[17];
	char why[256];
	uint8_t uid[8];
	ks_simproc_opts_t o;
	ks_simproc_t *sp = NULL;
	lf_relay_t *relay = NULL;
	lf_dir_cfg_t fc;
	lf_dir_stats_t st[2];
	ks_session_result_t res;
	ks_err_t rc = KS_ERR_INTERNAL;
	int host = idx % 2 == 1, parked_last = 0, had_fail = 0;
	unsigned unplugs = 0, conns = 0, runs = 0;
	uint64_t u = rnd();

	for (int i = 0; i < 8; i++)
		uid[i] = (uint8_t)(u >> (8 * i));
	for (int i = 0; i < 8; i++)
		snprintf(uidhex + 2 * i, 3, "%02x", uid[i]);
	snprintf(image, sizeof(image), "%s/b%" PRIx64 ".img", dir, u);
	snprintf(bsock, sizeof(bsock), "%s/b.sock", dir);
	snprintf(rsock, sizeof(rsock), "%s/relay.sock", dir);
	snprintf(spec, sizeof(spec), "unix:%s", rsock);
	memset(&o, 0, sizeof(o));
	o.exe = sim_exe;
	o.image = image;
	o.unix_path = bsock;
	o.uid_hex = uidhex;
	o.quiet = true;
	if (ks_simproc_start(&o, &sp) != KS_OK)
		die("simulator start");
	if (lf_relay_start(rsock, bsock, rnd() | 1, &relay) != 0)
		die("relay");
	memset(&fc, 0, sizeof(fc));
	fc.drop = fc.flip = fc.dup = fc.trunc = rate / 4;
	fc.noise_byte = rate / 4;
	fc.noise_frame = rate * 50 < 1 ? rate * 50 : 1;
	fc.replay = rate * 20 < 0.5 ? rate * 20 : 0.5;
	lf_relay_set(relay, &fc, &fc);
	/* every third board is unplugged once, mid-frame, somewhere in
	 * its session (either direction) */
	if (rate > 0 && idx % 3 == 2)
		lf_relay_unplug_after(relay, (int)(rnd() & 1),
				      100 + rnd() % 1000);

	t->boards++;
	for (unsigned a = 0; a < attempts; a++) {
		ks_session_params_t p;
		int64_t t0 = now_ms(), took;

		memset(&p, 0, sizeof(p));
		p.port = spec;
		p.slot = "lf";
		p.slot_index = 1;
		p.lot = host ? "LH" : "LD";
		p.profile = host ? "host" : "dev";
		p.actor = "tester";
		p.timeout_ms = RUN_TIMEOUT_MS;
		rc = ks_session_run(engine, &p, &res);
		took = now_ms() - t0;
		runs++;
		t->runs++;
		t->bytes += res.bytes_tx + res.bytes_rx;
		if (took > RUN_HANG_MS) {
			t->hangs++;
			check(0, "rate %g board %s run %u took %lld ms", rate,
			      uidhex, a + 1, (long long)took);
		}
		if (getenv("KILN_LF_VERBOSE") != NULL)
			printf("  rate %g board %s run %u: %s final %s resumed %d "
			       "(%lld ms) %s\n",
			       rate, uidhex, a + 1, ks_strerror((int)rc),
			       ks_step_name(res.final), res.resumed,
			       (long long)took, res.reason);
		if (!lf_relay_wait_idle(relay, 5000))
			check(0, "relay still busy after the run");
		if (rc == KS_OK) {
			if (a == 0)
				t->done_first++;
			else if (res.resumed)
				t->done_resumed++;
			else
				t->done_retried++;
			break;
		}
		/* parked: unfinished after ISSUED; failed: ended cleanly */
		parked_last = res.final >= KS_STEP_ISSUED &&
			      res.final <= KS_STEP_LOCKED;
		had_fail = 1;
	}
	(void)had_fail;
	if (rc != KS_OK) {
		if (parked_last)
			t->parked++;
		else
			t->failed_clean++;
	}
	lf_relay_stats(relay, st, &unplugs, &conns);
	t->unplugs += unplugs;
	t->retransmits += st[LF_UP].requests_repeated;
	for (int d = 0; d < 2; d++)
		t->faults += st[d].drops + st[d].flips + st[d].dups +
			     st[d].truncs + st[d].noise_lines + st[d].replays;
	t->replays += st[LF_UP].replays + st[LF_DOWN].replays;
	if (rc == KS_OK) {
		t->done_runs += runs;
		t->done_bytes += st[LF_UP].bytes_in + st[LF_DOWN].bytes_in;
		if (rate == 0 && *baseline == 0)
			*baseline = st[LF_UP].bytes_in + st[LF_DOWN].bytes_in;
	}
	lf_relay_stop(&relay);
	{
		char direct[300];

		snprintf(direct, sizeof(direct), "unix:%s", bsock);
		if (!verify_board(direct, &res, uid, sizeof(uid),
				  rc == KS_OK, why, sizeof(why))) {
			t->corrupted++;
			check(0, "rate %g board %s: %s (final %s, %s)", rate,
			      uidhex, why, ks_step_name(res.final),
			      res.reason);
		} else {
			check(1, "board consistent");
		}
	}
	(void)ks_simproc_stop(&sp, NULL);
	(void)unlink(image);
}

static void audit_check(void)
{
	char path[256], chain[256];
	EVP_PKEY *pub = NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	int len = i2d_PUBKEY(station_key, &der);
	ks_audit_report_t rep;
	int rc;

	snprintf(path, sizeof(path), "%s/registry.db", dir);
	snprintf(chain, sizeof(chain), "%s/chain.pem", dir);
	p = der;
	if (len > 0)
		pub = d2i_PUBKEY(NULL, &p, len);
	memset(&rep, 0, sizeof(rep));
	rc = ks_audit_verify(path, chain, pub, &rep);
	check(rc == KS_OK && rep.ok, "audit verify: %s", rep.first_error);
	printf("audit verify: %s, %llu rows, %llu checkpoints\n",
	       rc == KS_OK && rep.ok ? "ok" : "FAILED",
	       (unsigned long long)rep.rows,
	       (unsigned long long)rep.checkpoints);
	EVP_PKEY_free(pub);
	OPENSSL_free(der);
}

int main(int argc, char **argv)
{
	static const double rates[] = {0, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6};
	unsigned nboards = env_uint("KILN_LF_BOARDS", 6);
	unsigned attempts = env_uint("KILN_LF_ATTEMPTS", 4);
	uint64_t seed = env_uint("KILN_LF_SEED", 1), baseline = 0;
	int64_t t_all = now_ms();
	char cmd[300];

	sim_exe = argc > 1 ? argv[1] : getenv("KILN_AGENT_SIM");
	if (sim_exe == NULL) {
		fprintf(stderr, "usage: test_linkfault KILN-AGENT-SIM\n");
		return 2;
	}
	rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	ks_log_set_level(KS_LOG_ERROR);
	setup();
	printf("link faults: seed %llu, %u boards per rate, up to %u runs "
	       "per board, %d ms per request attempt\n",
	       (unsigned long long)seed, nboards, attempts, RUN_TIMEOUT_MS);
	printf("%-7s %6s %5s %9s %7s %7s %6s %6s %9s %7s %8s %9s %6s %8s\n",
	       "rate", "boards", "runs", "done1st", "resumed", "retried",
	       "failed", "parked", "corrupted", "unplugs", "faults",
	       "retx/run", "hangs", "extra%");
	for (size_t ri = 0; ri < sizeof(rates) / sizeof(rates[0]); ri++) {
		double rate = rates[ri];
		tally_t t;
		int64_t t0 = now_ms();
		unsigned n = rate == 0 ? 1 : nboards;
		double extra = 0;

		memset(&t, 0, sizeof(t));
		for (unsigned b = 0; b < n; b++)
			board(rate, b, &t, attempts, &baseline);
		if (baseline > 0 && t.done_first + t.done_resumed +
					    t.done_retried > 0)
			extra = 100.0 *
				((double)t.done_bytes /
					 (double)(t.done_first + t.done_resumed +
						  t.done_retried) /
					 (double)baseline -
				 1.0);
		printf("%-7g %6u %5u %9u %7u %7u %6u %6u %9u %7u %8llu %9.2f "
		       "%6u %7.1f%%  (%.1f s)\n",
		       rate, t.boards, t.runs, t.done_first, t.done_resumed,
		       t.done_retried, t.failed_clean, t.parked, t.corrupted,
		       t.unplugs, (unsigned long long)t.faults,
		       t.runs ? (double)t.retransmits / t.runs : 0.0, t.hangs,
		       extra, (double)(now_ms() - t0) / 1000.0);
		check(t.corrupted == 0, "rate %g: %u corrupted payloads accepted",
		      rate, t.corrupted);
		check(t.hangs == 0, "rate %g: %u runs hung", rate, t.hangs);
		/* at low rates every board must complete (unplugged ones
		 * through a resume) */
		if (rate <= 1e-4)
			check(t.failed_clean + t.parked == 0,
			      "rate %g: %u boards did not complete", rate,
			      t.failed_clean + t.parked);
	}
	printf("fault-free session: %llu bytes on the link\n",
	       (unsigned long long)baseline);
	audit_check();
	ks_engine_free(&engine);
	ks_reg_close(&reg);
	ks_signer_free(&signer);
	EVP_PKEY_free(station_key);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (failed == 0)
		(void)!system(cmd);
	else
		printf("kept %s for inspection\n", dir);
	printf("total %.1f s\n", (double)(now_ms() - t_all) / 1000.0);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
