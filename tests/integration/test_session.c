/*
 * Integration: complete provisioning sessions against kiln-agent-sim.
 *  1. device key (GENKEY + CSR) over the pty, with the serial termios code
 *  2. host key (PUT_OBJECT HOSTKEY from OpenSSL) over the pty
 *  3. device key over --unix
 *  4. the agent's retransmit cache: an identical GENKEY frame sent twice
 *     is answered twice identically and burns one key slot only
 *  5. GENKEY NEW until the key slots run out: KP_ST_EXHAUSTED
 * Each session: HELLO, key, CSR check, certificate from a throwaway CA,
 * PUT_OBJECT cert/chain/serial/meta, COMMIT, READBACK, CHALLENGE, LOCK 2;
 * then the simulator restarts on the same image and must report LOCKED
 * with the same digest and refuse GENKEY/PUT_OBJECT/COMMIT.
 *
 * Usage: test_session PATH-TO-kiln-agent-sim (or $KILN_AGENT_SIM).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/lib/log.h"
#include "protocol/frame.h"
#include "tests/integration/itest.h"

static void session(it_env_t *e, bool use_unix, it_origin_t origin,
		    const char *name)
{
	ks_simproc_t *sp = NULL;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h, h2;
	ks_agent_status_t st;
	ks_agent_stats_t as;
	ks_simproc_result_t res;
	int64_t t0 = ks_link_now_ms();
	ks_err_t r;

	it_fresh_image(e, name);
	if (!it_check(e, it_start(e, use_unix, 0, 2000, &sp, &a) == 0,
		      "simulator starts"))
		return;
	r = it_hello_checked(e, a, &h);
	if (!it_check(e, r == KS_OK, "HELLO answered"))
		goto out;
	it_check(e, h.st.state == KP_STATE_BLANK && !h.st.has_pubkey &&
			    !h.st.has_digest,
		 "fresh image is BLANK");
	it_check(e, h.st.slots_free > 0 && h.st.integrity == 0,
		 "fresh image has free slots and integrity ok");
	it_check(e, (h.caps & (KP_CAP_DEVKEY | KP_CAP_HOSTKEY)) ==
			    (KP_CAP_DEVKEY | KP_CAP_HOSTKEY),
		 "caps include DEVKEY and HOSTKEY");
	it_check(e, strcmp(h.board, "posix-sim") == 0, "default board name");
	it_check(e, h.uid_len >= 4, "uid present");
	it_check(e, ks_agent_status(a, &st) == KS_OK &&
			    st.st.state == KP_STATE_BLANK && st.staged == 0,
		 "STATUS BLANK, nothing staged");
	r = it_provision(e, a, origin, &h);
	it_check(e, r == KS_OK, "session completes");
	it_check(e, ks_agent_status(a, &st) == KS_OK &&
			    st.st.state == KP_STATE_LOCKED,
		 "STATUS LOCKED");
	ks_agent_get_stats(a, &as);
	printf("# %s over %s: %llu round trips, %llu retransmits, "
	       "%llu bytes sent, %llu received, %lld ms\n",
	       name, ks_link_describe(ks_agent_link(a)),
	       (unsigned long long)as.round_trips,
	       (unsigned long long)as.retransmits,
	       (unsigned long long)as.tx_bytes,
	       (unsigned long long)as.rx_bytes,
	       (long long)(ks_link_now_ms() - t0));
	it_check(e, as.retransmits == 0, "no retransmissions on a clean link");
	ks_agent_free(&a);
	(void)ks_simproc_stop(&sp, &res);
	it_check(e, res.exited && res.status == 0, "simulator exits 0 on TERM");
	it_check(e, res.writes > 0, "simulator reports WRITES");
	printf("# %s: simulator WRITES %ld\n", name, res.writes);

	/* power off and on again: the identity must persist, locked */
	if (!it_check(e, it_start(e, use_unix, 0, 2000, &sp, &a) == 0,
		      "simulator restarts on the same image"))
		return;
	it_check(e, it_verify_locked(e, a) == KS_OK, "locked after restart");
	if (ks_agent_hello(a, &h2) == KS_OK) {
		it_check(e, h2.uid_len == h.uid_len &&
				    memcmp(h2.uid, h.uid, h.uid_len) == 0,
			 "UID persists in the image");
		it_check(e, h2.st.has_digest && e->ntried > 0 &&
				    memcmp(h2.st.id_digest,
					   e->tried[e->ntried - 1], 32) == 0,
			 "same digest after restart");
	}
	ks_agent_free(&a);
	(void)ks_simproc_stop(&sp, &res);
	it_check(e, res.writes == 0, "a restarted locked device writes nothing");
	return;
out:
	ks_agent_free(&a);
	(void)ks_simproc_stop(&sp, NULL);
}

/* Send raw bytes and collect the first response frame's wire bytes. */
static size_t raw_exchange(ks_link_t *l, const uint8_t *f, size_t n,
			   uint8_t *rsp, size_t cap)
{
	kp_rx_t rx;
	uint8_t buf[512];
	int64_t deadline = ks_link_deadline(3000);

	kp_rx_init(&rx);
	if (ks_link_write(l, f, n, 1000) != KS_OK)
		return 0;
	for (;;) {
		size_t got = 0, off = 0;

		if (ks_link_read(l, buf, sizeof(buf),
				 ks_link_remaining(deadline), &got) != KS_OK)
			return 0;
		while (off < got) {
			kp_rx_event_t ev;
			kp_hdr_t hh;
			size_t out_len = 0;

			off += kp_rx_feed(&rx, buf + off, got - off, &ev);
			if (ev.kind != KP_RX_FRAME)
				continue;
			hh = ev.hdr;
			if (kp_frame_encode(&hh, ev.payload, hh.len, rsp, cap,
					    &out_len) != KP_OK)
				return 0;
			return out_len;
		}
	}
}

static void retransmit_cache(it_env_t *e)
{
	ks_simproc_t *sp = NULL;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h, h2;
	uint8_t req[64], frame[KP_MAX_WIRE], r1[KP_MAX_WIRE], r2[KP_MAX_WIRE];
	kp_genkey_req_t q = {.has = KP_BIT(0x02), .flags = KP_GENKEY_NEW};
	kp_hdr_t hdr = {.type = KP_MSG_GENKEY, .seq = 0x4242};
	size_t qn = 0, fn = 0, n1, n2;

	it_fresh_image(e, "cache");
	if (!it_check(e, it_start(e, false, 0, 2000, &sp, &a) == 0,
		      "simulator starts"))
		return;
	if (!it_check(e, ks_agent_hello(a, &h) == KS_OK, "HELLO"))
		goto out;
	if (kp_genkey_req_encode(&q, req, sizeof(req), &qn) != KP_OK)
		abort();
	hdr.len = (uint16_t)qn;
	if (kp_frame_encode(&hdr, req, qn, frame, sizeof(frame), &fn) != KP_OK)
		abort();
	n1 = raw_exchange(ks_agent_link(a), frame, fn, r1, sizeof(r1));
	n2 = raw_exchange(ks_agent_link(a), frame, fn, r2, sizeof(r2));
	it_check(e, n1 > 0 && n1 == n2 && memcmp(r1, r2, n1) == 0,
		 "a repeated request gets the identical cached answer");
	if (it_check(e, ks_agent_hello(a, &h2) == KS_OK, "HELLO after"))
		it_check(e, h2.st.slots_free + 1 == h.st.slots_free &&
				    h2.st.state == KP_STATE_KEYED,
			 "the repeated GENKEY burnt exactly one key slot");
out:
	ks_agent_free(&a);
	(void)ks_simproc_stop(&sp, NULL);
}

/* Re-provisioning until the OTP key slots run out: a clean refusal. */
static void exhaust_slots(it_env_t *e)
{
	ks_simproc_t *sp = NULL;
	ks_agent_t *a = NULL;
	ks_agent_genkey_t *g = NULL;
	ks_agent_hello_t h;
	ks_err_t r = KS_OK;
	int made = 0;

	it_fresh_image(e, "exhaust");
	if (!it_check(e, it_start(e, false, 0, 2000, &sp, &a) == 0,
		      "simulator starts"))
		return;
	if (!it_check(e, ks_agent_hello(a, &h) == KS_OK, "HELLO"))
		goto out;
	for (int i = 0; i < 16 && r == KS_OK; i++) {
		r = ks_agent_genkey(a, NULL, 0, KP_GENKEY_NEW, NULL, &g);
		if (r == KS_OK)
			made++;
		ks_agent_genkey_free(&g);
	}
	it_check(e, made == h.st.slots_free,
		 "GENKEY NEW succeeds once per free key slot");
	it_check(e, r == KS_ERR_AGENT &&
			    ks_agent_last_status(a) == KP_ST_EXHAUSTED,
		 "then GENKEY is refused with KP_ST_EXHAUSTED");
	printf("# %d key slots, then: %s\n", made, ks_agent_last_error(a));
	if (it_check(e, ks_agent_hello(a, &h) == KS_OK, "HELLO after"))
		it_check(e, h.st.slots_free == 0 &&
				    h.st.state == KP_STATE_KEYED,
			 "no free slots, still KEYED with the last key");
out:
	ks_agent_free(&a);
	(void)ks_simproc_stop(&sp, NULL);
}

int main(int argc, char **argv)
{
	const char *sim = it_sim_path(argc, argv);
	it_env_t e;

	if (sim == NULL) {
		fprintf(stderr, "usage: %s PATH-TO-kiln-agent-sim\n", argv[0]);
		return 77; /* meson: skipped */
	}
	ks_log_set_level(KS_LOG_ERROR);
	if (it_env_init(&e, sim) != 0)
		return 1;
	e.verbose = getenv("KILN_TEST_VERBOSE") != NULL;
	session(&e, false, IT_DEVKEY, "devkey-pty");
	session(&e, false, IT_HOSTKEY, "hostkey-pty");
	session(&e, true, IT_DEVKEY, "devkey-unix");
	retransmit_cache(&e);
	exhaust_slots(&e);
	printf("session: %d passed, %d failed\n", e.checks - e.violations,
	       e.violations);
	it_env_free(&e);
	return e.violations == 0 ? 0 : 1;
}
