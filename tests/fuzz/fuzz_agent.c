/*
 * Fuzz target: the agent's command dispatch (device/core/agent.c) on the
 * POSIX port's emulated part (device/ports/posix/sim_image.c, an image in
 * /dev/shm, fresh for every input; no TRNG, so GENKEY needs a seed and
 * runs are repeatable).
 *
 * The input is a script of operations, each: op u8, len u16 LE, then len
 * bytes (a short last operation takes what is left):
 *   0x00..0x7F  a request of that message type with the bytes as payload,
 *               framed by the harness with the next sequence number
 *   0x80        raw bytes fed to the receiver as they are (noise, partial
 *               or hand-made frames)
 *   0x81        the last request frame again, same sequence number
 *   0x82        COMMIT with the digest of what is staged (computed as an
 *               honest station would), so COMMITTED is reachable
 *   0x83        power cycle: close the image, reopen it, ka_agent_init()
 *   0x84        PUT_OBJECT of a whole object in chunks: obj = first byte,
 *               data = the rest
 *   0x85        GENKEY with a fixed seed; flags = first byte if any
 * FUZZ_AGENT_TRACE=1 in the environment prints the state after each op.
 * Invariants (abort() when broken):
 *   - every framed request gets exactly one response frame, flagged as
 *     a response, with the request's sequence number, of the request's
 *     type or ERROR, whose payload decodes with that message's decoder;
 *   - a repeated request is answered with the same bytes, not re-run;
 *   - a stale request (seq 1..KA_STALE_WINDOW behind the last) gets
 *     no answer;
 *   - a power cycle does not change the state or the stored digest;
 *   - LOCKED never goes back; a committed identity whose integrity is OK
 *     hashes to the digest its commit record holds.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device/core/agent.h"
#include "device/core/crypto.h"
#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"
#include "protocol/frame.h"
#include "protocol/msg.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(c)                                                           \
	do {                                                               \
		if (!(c)) {                                                \
			fprintf(stderr, "fuzz_agent: %s:%d: %s\n", __FILE__, \
				__LINE__, #c);                             \
			abort();                                           \
		}                                                          \
	} while (0)

#define MAX_OPS 48
#define MAX_CRYPTO 6 /* GENKEY/CHALLENGE/HOSTKEY per input: keep it fast */

static ka_agent_t agent;
static char image[64];

/* ---- the station end of the link ---- */

static uint8_t txbuf[8 * KP_MAX_WIRE];
static size_t txlen;

ka_hal_status_t ka_hal_tx(const uint8_t *data, size_t n)
{
	if (n > sizeof(txbuf) - txlen)
		return KA_HAL_ERR_IO;
	memcpy(txbuf + txlen, data, n);
	txlen += n;
	return KA_HAL_OK;
}

int32_t ka_hal_rx(uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
	(void)buf;
	(void)cap;
	(void)timeout_ms;
	return KA_HAL_RX_CLOSED; /* the harness feeds the agent directly */
}

typedef union {
	max_align_t align;
	uint8_t b[1024];
} msgbuf_t;

/* Decode everything the agent sent since txlen was reset; each frame must
 * be a well-formed response. Returns the number of frames; the last one's
 * header in *last. */
static unsigned check_responses(kp_hdr_t *last)
{
	kp_rx_t rx;
	size_t off = 0;
	unsigned frames = 0;

	kp_rx_init(&rx);
	while (off < txlen) {
		kp_rx_event_t ev;
		size_t used = kp_rx_feed(&rx, txbuf + off, txlen - off, &ev);

		CHECK(used > 0);
		off += used;
		CHECK(ev.kind != KP_RX_ERROR); /* the agent sends clean frames */
		if (ev.kind == KP_RX_FRAME) {
			const kp_msg_desc_t *d = kp_msg_find(ev.hdr.type);
			msgbuf_t m;

			CHECK((ev.hdr.flags & KP_FLAG_RESPONSE) != 0);
			CHECK(d != NULL);
			CHECK(kp_tlv_decode(d->rsp, d->nrsp, m.b, sizeof(m.b),
					    ev.payload, ev.hdr.len) == KP_OK);
			*last = ev.hdr;
			frames++;
		}
	}
	return frames;
}

/* ---- operations ---- */

static uint16_t seq;
static uint8_t last_req[KP_MAX_WIRE];
static size_t last_req_len;
static uint8_t last_rsp[8 * KP_MAX_WIRE];
static size_t last_rsp_len;
static bool last_clean; /* nothing fed between last_req and now */

static void request(uint8_t type, const uint8_t *p, size_t n)
{
	kp_hdr_t h, r;
	size_t wl = 0;
	bool stale;

	if (n > KP_MAX_PAYLOAD)
		n = KP_MAX_PAYLOAD;
	memset(&h, 0, sizeof(h));
	h.type = type;
	h.seq = ++seq;
	h.len = (uint16_t)n;
	CHECK(kp_frame_encode(&h, p, n, last_req, sizeof(last_req), &wl) ==
	      KP_OK);
	last_req_len = wl;
	txlen = 0;
	/* a raw frame may have moved the agent's seq ahead of ours: then
	 * this request is stale and must get no answer */
	stale = agent.last_valid &&
		(uint16_t)(agent.last_seq - h.seq) >= 1u &&
		(uint16_t)(agent.last_seq - h.seq) <= KA_STALE_WINDOW;
	ka_agent_feed(&agent, last_req, wl);
	memset(&r, 0, sizeof(r));
	if (stale) {
		CHECK(check_responses(&r) == 0);
		last_clean = false;
		return;
	}
	CHECK(check_responses(&r) == 1);
	CHECK(r.seq == h.seq);
	CHECK(r.type == type || r.type == KP_MSG_ERROR);
	memcpy(last_rsp, txbuf, txlen);
	last_rsp_len = txlen;
	last_clean = true;
}

static void repeat(void)
{
	kp_hdr_t r;

	if (last_req_len == 0)
		return;
	txlen = 0;
	ka_agent_feed(&agent, last_req, last_req_len);
	if (!last_clean) {
		(void)check_responses(&r);
		return;
	}
	/* same request, same sequence: the cached answer, byte for byte */
	CHECK(txlen == last_rsp_len && memcmp(txbuf, last_rsp, txlen) == 0);
}

static void raw(const uint8_t *p, size_t n)
{
	kp_hdr_t r;

	txlen = 0;
	ka_agent_feed(&agent, p, n);
	(void)check_responses(&r);
	last_clean = false;
}

/* COMMIT with the digest of the identity written to flash (if any). */
static void commit_auto(void)
{
	uint8_t digest[32], sector = 0, pl[64];
	size_t len = 0, pn = 0;
	kp_commit_req_t req;

	memset(digest, 0, sizeof(digest));
	if (ka_stage_identity(&agent.stage, &sector, &len) ==
	    KA_STAGE_COMPLETE)
		CHECK(ka_record_sector_digest(sector, len, digest) == KP_ST_OK);
	memset(&req, 0, sizeof(req));
	req.digest = digest;
	req.digest_len = 32;
	CHECK(kp_commit_req_encode(&req, pl, sizeof(pl), &pn) == KP_OK);
	request(KP_MSG_COMMIT, pl, pn);
}

static void put_whole(const uint8_t *p, size_t n)
{
	kp_put_object_req_t req;
	static uint8_t pl[KP_MAX_PAYLOAD];
	size_t off = 0, pn;

	if (n < 2)
		return;
	memset(&req, 0, sizeof(req));
	req.obj = p[0] == 0 ? 1 : p[0];
	req.total = (uint32_t)(n - 1);
	do {
		size_t k = n - 1 - off;

		if (k > KP_PUT_MAX_DATA)
			k = KP_PUT_MAX_DATA;
		req.offset = (uint32_t)off;
		req.data = p + 1 + off;
		req.data_len = (uint16_t)k;
		CHECK(kp_put_object_req_encode(&req, pl, sizeof(pl), &pn) ==
		      KP_OK);
		request(KP_MSG_PUT_OBJECT, pl, pn);
		off += k;
	} while (off < n - 1);
}

static void genkey_seeded(const uint8_t *p, size_t n)
{
	static const uint8_t seed[32] = "kiln fuzz_agent fixed seed 0001";
	kp_genkey_req_t req;
	uint8_t pl[128];
	size_t pn = 0;

	memset(&req, 0, sizeof(req));
	req.has = KP_BIT(0x01);
	req.seed = seed;
	req.seed_len = sizeof(seed);
	if (n > 0) {
		req.has |= KP_BIT(0x02);
		req.flags = p[0] & 1u;
	}
	CHECK(kp_genkey_req_encode(&req, pl, sizeof(pl), &pn) == KP_OK);
	request(KP_MSG_GENKEY, pl, pn);
}

static int boot(void)
{
	static const uint8_t uid[12] = {0x4b, 0x49, 0x4c, 0x4e, 0x46,
					0x55, 0x5a, 0x5a, 0x00, 0x01,
					0x02, 0x03};
	ka_sim_config_t cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path = image;
	cfg.uid = uid;
	cfg.uid_len = sizeof(uid);
	cfg.rng_none = true;
	cfg.quiet = true;
	if (ka_sim_open(&cfg) != 0)
		return -1;
	(void)ka_agent_init(&agent);
	return 0;
}

static void power_cycle(void)
{
	kp_state_t before = ka_agent_state(&agent);
	uint8_t digest[32];
	bool had = agent.store.committed;

	memcpy(digest, agent.store.digest, sizeof(digest));
	ka_sim_close();
	CHECK(boot() == 0);
	CHECK(ka_agent_state(&agent) == before);
	CHECK(agent.store.committed == had);
	CHECK(!had || memcmp(digest, agent.store.digest, 32) == 0);
	last_req_len = 0; /* the new boot has no cached answer */
}

/* A committed identity that reads as intact hashes to its digest. */
static void check_store(kp_state_t *prev)
{
	kp_state_t now = ka_agent_state(&agent);
	static uint8_t blob[KA_SIM_SECTOR_SIZE];
	uint8_t digest[32];

	CHECK(*prev != KP_STATE_LOCKED || now == KP_STATE_LOCKED);
	*prev = now;
	if (!agent.store.committed || agent.store.integrity != KP_ST_OK)
		return;
	CHECK(agent.store.blob_len <= sizeof(blob));
	CHECK(ka_record_blob_read(&agent.store, 0, blob,
				  agent.store.blob_len) == KP_ST_OK);
	CHECK(ka_crypto_sha256(blob, agent.store.blob_len, digest) ==
	      KP_ST_OK);
	CHECK(memcmp(digest, agent.store.digest, 32) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	unsigned ops = 0, crypto = 0;
	kp_state_t prev = KP_STATE_BLANK;
	static int trace = -1;

	if (trace < 0)
		trace = getenv("FUZZ_AGENT_TRACE") != NULL;

	if (image[0] == '\0')
		snprintf(image, sizeof(image), "/dev/shm/kiln-fuzz-agent-%ld.img",
			 (long)getpid());
	(void)unlink(image);
	if (boot() != 0)
		abort(); /* the harness itself failed */
	seq = 0;
	last_req_len = 0;
	last_clean = false;
	while (off < size && ops++ < MAX_OPS) {
		uint8_t op = data[off++];
		size_t n = 0;
		const uint8_t *p;

		if (size - off >= 2) {
			n = (size_t)data[off] | ((size_t)data[off + 1] << 8);
			off += 2;
		} else {
			off = size;
		}
		if (n > size - off)
			n = size - off;
		p = data + off;
		off += n;
		if (op == KP_MSG_GENKEY || op == KP_MSG_CHALLENGE ||
		    op == 0x85 || op == 0x84) {
			if (crypto++ >= MAX_CRYPTO)
				continue;
		}
		switch (op) {
		case 0x80:
			raw(p, n);
			break;
		case 0x81:
			repeat();
			break;
		case 0x82:
			commit_auto();
			break;
		case 0x83:
			power_cycle();
			break;
		case 0x84:
			put_whole(p, n);
			break;
		case 0x85:
			genkey_seeded(p, n);
			break;
		default:
			if (op < 0x80)
				request(op, p, n);
			break;
		}
		check_store(&prev);
		if (trace)
			fprintf(stderr, "op 0x%02x len %zu -> state %d\n", op, n,
				(int)ka_agent_state(&agent));
	}
	ka_sim_close();
	(void)unlink(image);
	return 0;
}
