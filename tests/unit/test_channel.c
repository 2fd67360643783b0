/*
 * Unit tests: the sealed channel. The agent core (device/core, mbedTLS) on
 * the POSIX emulated part is driven frame by frame by the station's half
 * (host/lib/channel.c, OpenSSL), so every test also checks that the two
 * independent implementations agree byte for byte.
 *
 * Framing attacks, each must be rejected with its own status and no
 * effect: replay of an earlier sealed request, a skipped/reordered
 * counter, a flipped bit in every byte position of a sealed request,
 * truncation to every shorter length, a response fed back as a request
 * (wrong direction), a request sealed under the answer key, a sealed
 * frame without a channel, and a changed header (type, seq). Also: a plain
 * HOSTKEY / seed is refused while the agent can seal; sealed ones work;
 * the identity signature of SECURE_OPEN verifies against the stored key
 * and not against another; HELLO ends the channel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "device/core/agent.h"
#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"
#include "host/lib/channel.h"
#include "protocol/frame.h"
#include "protocol/msg.h"
#include "protocol/seal.h"

static uint8_t txcap[4 * KP_MAX_WIRE];
static size_t txlen;

ka_hal_status_t ka_hal_tx(const uint8_t *data, size_t n)
{
	if (n > sizeof(txcap) - txlen)
		return KA_HAL_ERR_IO;
	memcpy(txcap + txlen, data, n);
	txlen += n;
	return KA_HAL_OK;
}

int32_t ka_hal_rx(uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
	(void)buf;
	(void)cap;
	(void)timeout_ms;
	return 0;
}

static ka_agent_t agent;
static char img_path[64];
static const uint8_t uid[8] = {0xc4, 0xa2, 0x00, 0x01, 0x02, 0x03, 0x04, 9};
static bool rng_none;
static uint16_t seq = 100;

static void power_on(void)
{
	ka_sim_config_t cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path = img_path;
	cfg.uid = uid;
	cfg.uid_len = sizeof(uid);
	cfg.board = "channel-test";
	cfg.rng_none = rng_none;
	assert_int_equal(ka_sim_open(&cfg), 0);
	assert_int_equal(ka_agent_init(&agent), KP_ST_OK);
}

static int setup(void **state)
{
	(void)state;
	snprintf(img_path, sizeof(img_path), "/tmp/kiln-test-chan-%ld.img",
		 (long)getpid());
	unlink(img_path);
	rng_none = false;
	power_on();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ka_sim_close();
	unlink(img_path);
	return 0;
}

typedef struct {
	kp_hdr_t h;
	uint8_t payload[KP_MAX_PAYLOAD];
} rsp_t;

/* Feed one frame; exactly one answer frame is expected. */
static void feed(const uint8_t *wire, size_t n, rsp_t *r)
{
	kp_rx_t rx;
	size_t off = 0;
	int frames = 0;

	txlen = 0;
	ka_agent_feed(&agent, wire, n);
	kp_rx_init(&rx);
	while (off < txlen) {
		kp_rx_event_t ev;

		off += kp_rx_feed(&rx, txcap + off, txlen - off, &ev);
		assert_int_not_equal(ev.kind, KP_RX_ERROR);
		if (ev.kind == KP_RX_FRAME && frames++ == 0) {
			r->h = ev.hdr;
			memcpy(r->payload, ev.payload, ev.hdr.len);
		}
	}
	assert_int_equal(frames, 1);
}

static size_t frame(const kp_hdr_t *h, const uint8_t *p, uint8_t *wire)
{
	size_t len = 0;

	assert_int_equal(kp_frame_encode(h, p, h->len, wire, KP_MAX_WIRE, &len),
			 KP_OK);
	return len;
}

static void plain(uint8_t type, const uint8_t *p, size_t n, rsp_t *r)
{
	uint8_t wire[KP_MAX_WIRE];
	kp_hdr_t h = {.type = type, .seq = ++seq, .len = (uint16_t)n};

	feed(wire, frame(&h, p, wire), r);
}

static unsigned status_of(const rsp_t *r)
{
	kp_error_rsp_t e;

	if (r->h.type != KP_MSG_ERROR)
		return 0;
	assert_int_equal(r->h.flags, KP_FLAG_RESPONSE); /* never sealed */
	assert_int_equal(kp_error_rsp_decode(&e, r->payload, r->h.len), KP_OK);
	return e.status;
}

static void hello(kp_hello_rsp_t *m, rsp_t *r)
{
	uint8_t req[16];
	size_t n = 0;
	kp_hello_req_t q = {.proto_max = 1};

	assert_int_equal(kp_hello_req_encode(&q, req, sizeof(req), &n), KP_OK);
	plain(KP_MSG_HELLO, req, n, r);
	assert_int_equal(kp_hello_rsp_decode(m, r->payload, r->h.len), KP_OK);
}

/* SECURE_OPEN, station side by host/lib/channel.c. */
static unsigned open_channel(ks_channel_t *c, const uint8_t *id_pub,
			     ks_err_t *acc)
{
	ks_channel_offer_t o;
	kp_secure_open_req_t q;
	kp_secure_open_rsp_t m;
	uint8_t req[256];
	size_t n = 0;
	rsp_t r;
	unsigned st;

	assert_int_equal(ks_channel_offer(&o), KS_OK);
	memset(&q, 0, sizeof(q));
	q.host_pub = o.pub;
	q.host_pub_len = 65;
	q.host_nonce = o.nonce;
	q.host_nonce_len = 32;
	assert_int_equal(kp_secure_open_req_encode(&q, req, sizeof(req), &n),
			 KP_OK);
	plain(KP_MSG_SECURE_OPEN, req, n, &r);
	st = status_of(&r);
	if (st == 0) {
		ks_err_t e;

		assert_int_equal(r.h.type, KP_MSG_SECURE_OPEN);
		assert_int_equal(kp_secure_open_rsp_decode(&m, r.payload,
							   r.h.len),
				 KP_OK);
		e = ks_channel_accept(c, &o, uid, sizeof(uid), m.agent_pub,
				      m.agent_nonce, m.id_sig, m.id_sig_len,
				      id_pub);
		if (acc != NULL)
			*acc = e;
		else
			assert_int_equal(e, KS_OK);
	}
	ks_channel_offer_clear(&o);
	return st;
}

/* Build a sealed request frame with the channel's current counter. */
static size_t sealed_frame(const ks_channel_t *c, uint8_t type,
			   const uint8_t *p, size_t n, uint8_t *wire)
{
	uint8_t buf[KP_MAX_PAYLOAD];
	kp_hdr_t h = {.type = type, .seq = ++seq};
	size_t len = 0;

	assert_int_equal(ks_channel_seal(c, &h, p, n, buf, sizeof(buf), &len),
			 KS_OK);
	assert_int_equal(h.flags, KP_FLAG_SEALED);
	return frame(&h, buf, wire);
}

/* Send sealed, check the sealed answer, advance the counter. Returns the
 * ERROR status or 0 with the plain answer in *out. */
static unsigned sealed_call(ks_channel_t *c, uint8_t type, const uint8_t *p,
			    size_t n, uint8_t *out, size_t *out_len)
{
	uint8_t wire[KP_MAX_WIRE];
	size_t wl = sealed_frame(c, type, p, n, wire);
	uint32_t ctr = c->ctr;
	unsigned st;
	rsp_t r;

	feed(wire, wl, &r);
	st = status_of(&r);
	if (st == KP_ST_SEAL_AUTH || st == KP_ST_SEAL_REPLAY ||
	    st == KP_ST_SEAL_ORDER || st == KP_ST_NO_CHANNEL)
		return st;
	c->ctr++;
	if (st != 0)
		return st;
	assert_int_equal(r.h.type, type);
	assert_int_equal(r.h.flags, KP_FLAG_RESPONSE | KP_FLAG_SEALED);
	assert_int_equal(ks_channel_unseal_rsp(c, &r.h, r.payload, ctr, out,
					       KP_MAX_PAYLOAD, out_len),
			 KP_OK);
	return 0;
}

static size_t put_req(uint8_t obj, const uint8_t *d, size_t n, uint8_t *out)
{
	kp_put_object_req_t q = {.obj = obj, .offset = 0,
				 .total = (uint32_t)n, .data = d,
				 .data_len = (uint16_t)n};
	size_t len = 0;

	assert_int_equal(kp_put_object_req_encode(&q, out, KP_MAX_PAYLOAD,
						  &len),
			 KP_OK);
	return len;
}

static void random_scalar(uint8_t d[32])
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	BIGNUM *bn = NULL;

	assert_non_null(k);
	assert_int_equal(EVP_PKEY_get_bn_param(k, "priv", &bn), 1);
	assert_int_equal(BN_bn2binpad(bn, d, 32), 32);
	BN_clear_free(bn);
	EVP_PKEY_free(k);
}

/* ---- tests ---- */

static void test_hostkey_sealed(void **state)
{
	kp_hello_rsp_t m;
	kp_put_object_rsp_t pm;
	ks_channel_t c;
	uint8_t d[32], req[128], out[KP_MAX_PAYLOAD];
	size_t n, on = 0;
	uint32_t w0;
	rsp_t r;

	(void)state;
	memset(&c, 0, sizeof(c));
	random_scalar(d);
	hello(&m, &r);
	assert_true((m.caps & KP_CAP_SECURE) != 0);
	/* plain: refused, nothing written */
	w0 = ka_sim_writes();
	n = put_req(KP_OBJ_HOSTKEY, d, 32, req);
	plain(KP_MSG_PUT_OBJECT, req, n, &r);
	assert_int_equal(status_of(&r), KP_ST_NOT_SEALED);
	assert_int_equal(ka_sim_writes(), w0);
	/* sealed without a channel: refused */
	memset(c.k_h2a, 0x11, 32);
	c.open = true;
	{
		uint8_t wire[KP_MAX_WIRE];

		feed(wire, sealed_frame(&c, KP_MSG_PUT_OBJECT, req, n, wire),
		     &r);
		assert_int_equal(status_of(&r), KP_ST_NO_CHANNEL);
	}
	/* a blank board has no identity: the channel is unauthenticated */
	assert_int_equal(open_channel(&c, NULL, NULL), 0);
	assert_false(c.authenticated);
	assert_int_equal(sealed_call(&c, KP_MSG_PUT_OBJECT, req, n, out, &on),
			 0);
	assert_int_equal(kp_put_object_rsp_decode(&pm, out, on), KP_OK);
	assert_true(KP_HAS(&pm, 0x03));
	hello(&m, &r);
	assert_int_equal(m.state, KP_STATE_KEYED);
	assert_memory_equal(m.pubkey, pm.pubkey, 65);
	/* the scalar is in OTP and nowhere in the agent's RAM */
	for (size_t i = 0; i + 32 <= sizeof(agent); i++)
		assert_memory_not_equal((const uint8_t *)&agent + i, d, 32);
	/* HELLO ended the channel */
	{
		uint8_t wire[KP_MAX_WIRE];

		feed(wire, sealed_frame(&c, KP_MSG_STATUS, NULL, 0, wire), &r);
		assert_int_equal(status_of(&r), KP_ST_NO_CHANNEL);
	}
	ks_channel_close(&c);
}

/* Every tampering of a sealed request is refused with its status, and
 * the genuine request still works afterwards (nothing was consumed). */
static void test_tamper(void **state)
{
	kp_hello_rsp_t m;
	ks_channel_t c;
	uint8_t d[32], req[128], wire[KP_MAX_WIRE], bad[KP_MAX_WIRE];
	uint8_t out[KP_MAX_PAYLOAD];
	size_t n, wl, on = 0;
	unsigned flips = 0, truncs = 0;
	uint32_t w0;
	rsp_t r;

	(void)state;
	memset(&c, 0, sizeof(c));
	random_scalar(d);
	hello(&m, &r);
	assert_int_equal(open_channel(&c, NULL, NULL), 0);
	n = put_req(KP_OBJ_HOSTKEY, d, 32, req);
	/* a STATUS first, so there is an old message to replay */
	{
		uint8_t w1[KP_MAX_WIRE];
		size_t l1 = sealed_frame(&c, KP_MSG_STATUS, NULL, 0, w1);

		feed(w1, l1, &r);
		assert_int_equal(r.h.flags, KP_FLAG_RESPONSE | KP_FLAG_SEALED);
		c.ctr++;
		/* an exact retransmission is answered from the cache (the
		 * same bytes again), never executed twice */
		{
			uint8_t first[KP_MAX_WIRE];
			size_t fl = txlen;

			memcpy(first, txcap, txlen);
			feed(w1, l1, &r);
			assert_int_equal(txlen, fl);
			assert_memory_equal(txcap, first, fl);
		}
		/* after another request it is a replay */
		plain(KP_MSG_STATUS, NULL, 0, &r);
		assert_int_equal(status_of(&r), 0);
		feed(w1, l1, &r);
		assert_int_equal(status_of(&r), KP_ST_SEAL_REPLAY);
	}
	w0 = ka_sim_writes();
	wl = sealed_frame(&c, KP_MSG_PUT_OBJECT, req, n, wire);
	/* bit flips: every byte of the sealed payload (counter, ciphertext,
	 * tag), re-framed with a good CRC so the frame layer passes it */
	{
		kp_hdr_t h;
		const uint8_t *p;
		uint8_t chunk[KP_MAX_WIRE], pl[KP_MAX_PAYLOAD];

		memcpy(chunk, wire + 1, wl - 2);
		assert_int_equal(kp_frame_decode(chunk, wl - 2, &h, &p), KP_OK);
		memcpy(pl, p, h.len);
		for (size_t i = 0; i < h.len; i++) {
			size_t bl;
			unsigned st;

			pl[i] ^= (uint8_t)(1u << (i % 8));
			bl = frame(&h, pl, bad);
			feed(bad, bl, &r);
			st = status_of(&r);
			/* a flipped counter byte fails authentication too */
			assert_int_equal(st, KP_ST_SEAL_AUTH);
			pl[i] ^= (uint8_t)(1u << (i % 8));
			flips++;
		}
		/* truncation to every shorter length */
		for (size_t k = 0; k < h.len; k++) {
			kp_hdr_t t = h;

			t.len = (uint16_t)k;
			feed(bad, frame(&t, pl, bad), &r);
			assert_int_equal(status_of(&r), KP_ST_SEAL_AUTH);
			truncs++;
		}
		/* header changes: another type, another seq */
		{
			kp_hdr_t t = h;

			t.type = KP_MSG_COMMIT;
			feed(bad, frame(&t, pl, bad), &r);
			assert_int_equal(status_of(&r), KP_ST_SEAL_AUTH);
			t = h;
			t.seq = (uint16_t)(h.seq + 1000u);
			feed(bad, frame(&t, pl, bad), &r);
			assert_int_equal(status_of(&r), KP_ST_SEAL_AUTH);
		}
		/* wrong direction: sealed under the answer key */
		{
			ks_channel_t swap = c;
			uint8_t w2[KP_MAX_WIRE];

			memcpy(swap.k_h2a, c.k_a2h, 32);
			feed(w2, sealed_frame(&swap, KP_MSG_PUT_OBJECT, req, n,
					      w2),
			     &r);
			assert_int_equal(status_of(&r), KP_ST_SEAL_AUTH);
		}
	}
	assert_int_equal(ka_sim_writes(), w0);
	/* reorder: counter + 1 before counter */
	{
		ks_channel_t ahead = c;
		uint8_t w2[KP_MAX_WIRE];

		ahead.ctr = c.ctr + 1;
		feed(w2, sealed_frame(&ahead, KP_MSG_STATUS, NULL, 0, w2), &r);
		assert_int_equal(status_of(&r), KP_ST_SEAL_ORDER);
	}
	/* the genuine frame is still good (nothing above consumed it) */
	feed(wire, wl, &r);
	assert_int_equal(status_of(&r), 0);
	assert_int_equal(r.h.flags, KP_FLAG_RESPONSE | KP_FLAG_SEALED);
	{
		/* a response fed back to the agent as a request */
		uint8_t w2[KP_MAX_WIRE];
		kp_hdr_t h = r.h;

		h.flags = KP_FLAG_SEALED;
		feed(w2, frame(&h, r.payload, w2), &r);
		assert_true(status_of(&r) == KP_ST_SEAL_AUTH ||
			    status_of(&r) == KP_ST_SEAL_REPLAY);
	}
	/* the station rejects a forged or misdirected answer */
	{
		uint8_t w3[KP_MAX_WIRE];
		size_t l3;
		uint32_t ctr;

		c.ctr++;
		ctr = c.ctr;
		l3 = sealed_frame(&c, KP_MSG_STATUS, NULL, 0, w3);
		feed(w3, l3, &r);
		c.ctr++;
		assert_int_equal(r.h.flags, KP_FLAG_RESPONSE | KP_FLAG_SEALED);
		assert_int_equal(ks_channel_unseal_rsp(&c, &r.h, r.payload, ctr,
						       out, sizeof(out), &on),
				 KP_OK);
		assert_int_equal(ks_channel_unseal_rsp(&c, &r.h, r.payload,
						       ctr + 1, out,
						       sizeof(out), &on),
				 KP_ERR_SEAL_REPLAY);
		assert_int_equal(ks_channel_unseal_rsp(&c, &r.h, r.payload,
						       ctr - 1, out,
						       sizeof(out), &on),
				 KP_ERR_SEAL_ORDER);
		r.payload[KP_SEAL_CTR_LEN] ^= 1;
		assert_int_equal(ks_channel_unseal_rsp(&c, &r.h, r.payload, ctr,
						       out, sizeof(out), &on),
				 KP_ERR_SEAL_AUTH);
		r.payload[KP_SEAL_CTR_LEN] ^= 1;
		r.h.flags = KP_FLAG_SEALED; /* as if it were a request */
		assert_int_equal(ks_channel_unseal_rsp(&c, &r.h, r.payload, ctr,
						       out, sizeof(out), &on),
				 KP_ERR_SEAL_AUTH);
	}
	print_message("%u bit flips, %u truncations rejected\n", flips,
		      truncs);
	ks_channel_close(&c);
}

/* A board without TRNG: blank it cannot seal (public inputs only); once
 * keyed it can, and GENKEY NEW with a seed goes sealed. */
static void test_no_trng_seed(void **state)
{
	kp_hello_rsp_t m;
	ks_channel_t c;
	kp_genkey_req_t q;
	kp_genkey_rsp_t g;
	uint8_t seed[32], req[256], out[KP_MAX_PAYLOAD], pub1[65];
	size_t n = 0, on = 0;
	rsp_t r;

	(void)state;
	memset(&c, 0, sizeof(c));
	ka_sim_close();
	unlink(img_path);
	rng_none = true;
	power_on();
	hello(&m, &r);
	assert_int_equal(m.caps & (KP_CAP_SECURE | KP_CAP_TRNG), 0);
	assert_int_equal(open_channel(&c, NULL, NULL), KP_ST_NO_ENTROPY);
	RAND_bytes(seed, sizeof(seed));
	memset(&q, 0, sizeof(q));
	q.has = KP_BIT(0x01);
	q.seed = seed;
	q.seed_len = 32;
	assert_int_equal(kp_genkey_req_encode(&q, req, sizeof(req), &n), KP_OK);
	plain(KP_MSG_GENKEY, req, n, &r);
	assert_int_equal(status_of(&r), 0);
	assert_int_equal(kp_genkey_rsp_decode(&g, r.payload, r.h.len), KP_OK);
	memcpy(pub1, g.pubkey, 65);
	hello(&m, &r);
	assert_true((m.caps & KP_CAP_SECURE) != 0);
	/* authenticated by the stored key; another key does not verify */
	{
		ks_err_t e = KS_OK;
		uint8_t other[65];

		memcpy(other, pub1, 65);
		other[64] ^= 1; /* not even on the curve */
		assert_int_equal(open_channel(&c, other, &e), 0);
		assert_int_equal(e, KS_ERR_VERIFY);
		assert_false(c.open);
	}
	assert_int_equal(open_channel(&c, pub1, NULL), 0);
	assert_true(c.authenticated);
	RAND_bytes(seed, sizeof(seed)); /* the key is a function of it */
	q.has |= KP_BIT(0x02);
	q.flags = KP_GENKEY_NEW;
	assert_int_equal(kp_genkey_req_encode(&q, req, sizeof(req), &n), KP_OK);
	plain(KP_MSG_GENKEY, req, n, &r);
	assert_int_equal(status_of(&r), KP_ST_NOT_SEALED);
	assert_int_equal(sealed_call(&c, KP_MSG_GENKEY, req, n, out, &on), 0);
	assert_int_equal(kp_genkey_rsp_decode(&g, out, on), KP_OK);
	assert_memory_not_equal(g.pubkey, pub1, 65);
	ks_channel_close(&c);
}

/* Two channels never share keys; SECURE_OPEN cannot be sealed. */
static void test_fresh_keys(void **state)
{
	kp_hello_rsp_t m;
	ks_channel_t c1, c2;
	uint8_t wire[KP_MAX_WIRE];
	rsp_t r;

	(void)state;
	memset(&c1, 0, sizeof(c1));
	memset(&c2, 0, sizeof(c2));
	hello(&m, &r);
	assert_int_equal(open_channel(&c1, NULL, NULL), 0);
	assert_int_equal(open_channel(&c2, NULL, NULL), 0);
	assert_memory_not_equal(c1.k_h2a, c2.k_h2a, 32);
	assert_memory_not_equal(c1.k_a2h, c2.k_a2h, 32);
	assert_memory_not_equal(c2.k_h2a, c2.k_a2h, 32);
	/* the first channel is gone */
	feed(wire, sealed_frame(&c1, KP_MSG_STATUS, NULL, 0, wire), &r);
	assert_int_equal(status_of(&r), KP_ST_SEAL_AUTH);
	feed(wire, sealed_frame(&c2, KP_MSG_HELLO, NULL, 0, wire), &r);
	assert_int_equal(status_of(&r), KP_ST_BAD_MESSAGE);
	ks_channel_close(&c1);
	ks_channel_close(&c2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hostkey_sealed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tamper, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_trng_seed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fresh_keys, setup,
						teardown),
	};

	printf("sizeof(ka_agent_t) = %zu\n", sizeof(ka_agent_t));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
