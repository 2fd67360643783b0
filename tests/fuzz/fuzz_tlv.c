/*
 * Fuzz target: the TLV layer. The input is run through every message
 * decoder in both directions and through the identity-blob decoder (as is,
 * and behind a valid blob header so the fuzzer need not find the magic),
 * and through kp_seal_split() (a sealed payload's counter/ciphertext/tag).
 * Whatever decodes must re-encode, and the re-encoding must equal the
 * input minus its ignorable (>= 0x80) TLVs, and decode to the same fields.
 */
#include <stdlib.h>
#include <string.h>

#include "protocol/frame.h"
#include "protocol/msg.h"
#include "protocol/seal.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(c)                   \
	do {                       \
		if (!(c))          \
			abort();   \
	} while (0)

typedef union {
	max_align_t align;
	uint8_t b[512];
} msgbuf_t;

static size_t int_width(uint8_t kind)
{
	return kind == KP_KIND_U8 ? 1 : kind == KP_KIND_U16 ? 2 : kind == KP_KIND_U32 ? 4 : 0;
}

static void same(const kp_field_t *f, size_t nf, const msgbuf_t *a,
		 const msgbuf_t *b)
{
	CHECK(memcmp(a->b, b->b, sizeof(uint32_t)) == 0); /* has */
	for (size_t i = 0; i < nf; i++) {
		uint32_t has;
		size_t w = int_width(f[i].kind);

		memcpy(&has, a->b, sizeof(has));
		if ((has & KP_BIT(f[i].tag)) == 0)
			continue;
		if (w != 0) {
			CHECK(memcmp(a->b + f[i].off, b->b + f[i].off, w) == 0);
		} else {
			const uint8_t *pa, *pb;
			uint16_t la, lb;

			memcpy(&pa, a->b + f[i].off, sizeof(pa));
			memcpy(&pb, b->b + f[i].off, sizeof(pb));
			memcpy(&la, a->b + f[i].off_len, sizeof(la));
			memcpy(&lb, b->b + f[i].off_len, sizeof(lb));
			CHECK(la == lb && la >= f[i].min && la <= f[i].max);
			CHECK(la == 0 || memcmp(pa, pb, la) == 0);
		}
	}
}

/* The input with every ignorable TLV removed (input already validated). */
static size_t strip_ignorable(const uint8_t *p, size_t n, uint8_t *out)
{
	size_t r = 0, w = 0;

	while (r < n) {
		size_t len = (size_t)p[r + 1] | ((size_t)p[r + 2] << 8);

		CHECK(len <= n - r - 3);
		if ((p[r] & 0x80u) == 0) {
			memcpy(out + w, p + r, 3 + len);
			w += 3 + len;
		}
		r += 3 + len;
	}
	return w;
}

static void one(const kp_field_t *f, size_t nf, const uint8_t *data,
		size_t size)
{
	static uint8_t enc[16384], stripped[16384];
	msgbuf_t m, m2;
	size_t n, sn;

	if (kp_tlv_decode(f, nf, m.b, sizeof(m.b), data, size) != KP_OK)
		return;
	CHECK(kp_tlv_encode(f, nf, m.b, enc, sizeof(enc), &n) == KP_OK);
	sn = strip_ignorable(data, size, stripped);
	CHECK(n == sn && memcmp(enc, stripped, n) == 0);
	CHECK(kp_tlv_decode(f, nf, m2.b, sizeof(m2.b), enc, n) == KP_OK);
	same(f, nf, &m, &m2);
	/* a shorter output buffer is refused, never overrun */
	if (n > 0)
		CHECK(kp_tlv_encode(f, nf, m.b, enc, n - 1, &sn) == KP_ERR_NOSPACE);
}

static void blob(const uint8_t *data, size_t size)
{
	static uint8_t enc[16384], withhdr[16384 + KP_BLOB_HDR_LEN];
	msgbuf_t m, m2;
	kp_blob_t *b = (kp_blob_t *)(void *)m.b;
	size_t n, nf;
	const kp_field_t *f = kp_blob_fields(&nf);
	const uint8_t *in = data;
	size_t inlen = size;

	if (size > sizeof(withhdr) - KP_BLOB_HDR_LEN)
		return;
	if (kp_blob_decode(b, data, size) != KP_OK) {
		memcpy(withhdr, KP_BLOB_MAGIC, 4);
		withhdr[4] = KP_BLOB_VERSION;
		if (size > 0)
			memcpy(withhdr + KP_BLOB_HDR_LEN, data, size);
		in = withhdr;
		inlen = size + KP_BLOB_HDR_LEN;
		if (kp_blob_decode(b, in, inlen) != KP_OK)
			return;
	}
	CHECK(kp_blob_encode(b, enc, sizeof(enc), &n) == KP_OK);
	CHECK(n >= KP_BLOB_HDR_LEN && memcmp(enc, in, KP_BLOB_HDR_LEN) == 0);
	CHECK(kp_blob_decode((kp_blob_t *)(void *)m2.b, enc, n) == KP_OK);
	same(f, nf, &m, &m2);
	(void)inlen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t nm;
	const kp_msg_desc_t *t = kp_msg_table(&nm);

	if (size > KP_MAX_PAYLOAD * 8u)
		return 0;
	for (size_t i = 0; i < nm; i++) {
		one(t[i].req, t[i].nreq, data, size);
		one(t[i].rsp, t[i].nrsp, data, size);
	}
	blob(data, size);
	/* a sealed payload's framing: counter, ciphertext, tag */
	{
		uint32_t ctr = 0;
		size_t ct = 0;

		if (kp_seal_split(data, size, &ctr, &ct) == KP_OK)
			CHECK(size >= KP_SEAL_OVERHEAD &&
			      ct == size - KP_SEAL_OVERHEAD);
		else
			CHECK(size < KP_SEAL_OVERHEAD);
	}
	/* the challenge message: split the input into uid and nonce */
	if (size >= 2) {
		static uint8_t out[600];
		size_t ul = data[0] % 40u, n;
		kp_err_t r;

		if (ul <= size - 1) {
			r = kp_challenge_message(data + 1, ul, data + 1 + ul,
						 size - 1 - ul, out, sizeof(out), &n);
			if (r == KP_OK)
				CHECK(n == KP_CHALLENGE_DOMAIN_LEN + 1 + size - 1 &&
				      out[KP_CHALLENGE_DOMAIN_LEN] == ul &&
				      memcmp(out + KP_CHALLENGE_DOMAIN_LEN + 1,
					     data + 1, size - 1) == 0);
		}
	}
	return 0;
}
