/* Unit tests: TLV messages, identity blob, challenge (protocol/msg.c).
 *
 * Messages are built generically from the descriptor tables
 * (kp_msg_table / kp_blob_fields), so a field added to protocol/msg.h is
 * covered without touching this file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/frame.h"
#include "protocol/le.h"
#include "protocol/msg.h"

/* ---- typed codec entry points, one row per (message, direction) ---- */

typedef kp_err_t (*enc_fn)(const void *m, uint8_t *out, size_t cap,
			   size_t *out_len);
typedef kp_err_t (*dec_fn)(void *m, const uint8_t *p, size_t n);

#define WRAP(N, n, code, sum)                                                \
	static kp_err_t enc_##n##_req(const void *m, uint8_t *o, size_t c,   \
				      size_t *l)                             \
	{                                                                    \
		return kp_##n##_req_encode(m, o, c, l);                      \
	}                                                                    \
	static kp_err_t dec_##n##_req(void *m, const uint8_t *p, size_t l)   \
	{                                                                    \
		return kp_##n##_req_decode(m, p, l);                         \
	}                                                                    \
	static kp_err_t enc_##n##_rsp(const void *m, uint8_t *o, size_t c,   \
				      size_t *l)                             \
	{                                                                    \
		return kp_##n##_rsp_encode(m, o, c, l);                      \
	}                                                                    \
	static kp_err_t dec_##n##_rsp(void *m, const uint8_t *p, size_t l)   \
	{                                                                    \
		return kp_##n##_rsp_decode(m, p, l);                         \
	}
KP_MESSAGES(WRAP)
#undef WRAP

static kp_err_t enc_blob(const void *m, uint8_t *o, size_t c, size_t *l)
{
	return kp_blob_encode(m, o, c, l);
}
static kp_err_t dec_blob(void *m, const uint8_t *p, size_t l)
{
	return kp_blob_decode(m, p, l);
}

typedef struct {
	const char *name;
	uint8_t type;
	int rsp; /* 0 request, 1 response, 2 blob */
	size_t size;
	enc_fn enc;
	dec_fn dec;
	const kp_field_t *f;
	size_t nf;
} codec_t;

#define ROWS(N, n, code, sum)                                                 \
	{#N, code, 0, sizeof(kp_##n##_req_t), enc_##n##_req, dec_##n##_req,   \
	 NULL, 0},                                                            \
		{#N, code, 1, sizeof(kp_##n##_rsp_t), enc_##n##_rsp,          \
		 dec_##n##_rsp, NULL, 0},
static codec_t codecs[] = {
	KP_MESSAGES(ROWS){"BLOB", 0, 2, sizeof(kp_blob_t), enc_blob, dec_blob,
			  NULL, 0},
};
#undef ROWS
#define NCODECS (sizeof(codecs) / sizeof(codecs[0]))

static int setup_codecs(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCODECS; i++) {
		codec_t *c = &codecs[i];

		if (c->rsp == 2) {
			c->f = kp_blob_fields(&c->nf);
		} else {
			const kp_msg_desc_t *d = kp_msg_find(c->type);

			if (d == NULL)
				return -1;
			c->f = c->rsp ? d->rsp : d->req;
			c->nf = c->rsp ? d->nrsp : d->nreq;
		}
	}
	return 0;
}

/* Big enough for any generated struct, suitably aligned. */
typedef union {
	max_align_t align;
	uint8_t b[512];
} msgbuf_t;

static uint8_t pattern[8192];  /* BYTES values point here */
static char strpattern[8192]; /* STR values point here (printable) */

static int is_int(const kp_field_t *f)
{
	return f->kind == KP_KIND_U8 || f->kind == KP_KIND_U16 ||
	       f->kind == KP_KIND_U32;
}

static uint32_t get_int(const void *m, const kp_field_t *f)
{
	const uint8_t *b = m;

	switch (f->kind) {
	case KP_KIND_U8:
		return b[f->off];
	case KP_KIND_U16: {
		uint16_t v;
		memcpy(&v, b + f->off, 2);
		return v;
	}
	default: {
		uint32_t v;
		memcpy(&v, b + f->off, 4);
		return v;
	}
	}
}

static void set_int(void *m, const kp_field_t *f, uint32_t v)
{
	uint8_t *b = m;

	switch (f->kind) {
	case KP_KIND_U8:
		b[f->off] = (uint8_t)v;
		break;
	case KP_KIND_U16: {
		uint16_t h = (uint16_t)v;
		memcpy(b + f->off, &h, 2);
		break;
	}
	default:
		memcpy(b + f->off, &v, 4);
		break;
	}
}

static void set_var(void *m, const kp_field_t *f, const void *p, uint16_t len)
{
	uint8_t *b = m;

	memcpy(b + f->off, &p, sizeof(p));
	memcpy(b + f->off_len, &len, sizeof(len));
}

static void get_var(const void *m, const kp_field_t *f, const uint8_t **p,
		    uint16_t *len)
{
	const uint8_t *b = m;

	memcpy(p, b + f->off, sizeof(*p));
	memcpy(len, b + f->off_len, sizeof(*len));
}

static void set_has(void *m, uint32_t has)
{
	memcpy(m, &has, sizeof(has));
}

static uint32_t get_has(const void *m)
{
	uint32_t has;

	memcpy(&has, m, sizeof(has));
	return has;
}

enum { FILL_MIN, FILL_MAX, FILL_MID };

/* Fill every field (optional ones only if all_opt) at its bounds. */
static uint32_t fill(void *m, size_t size, const codec_t *c, int how,
		     int all_opt, unsigned salt)
{
	uint32_t has = 0;

	memset(m, 0, size);
	for (size_t i = 0; i < c->nf; i++) {
		const kp_field_t *f = &c->f[i];
		uint32_t v = how == FILL_MIN   ? f->min
			     : how == FILL_MAX ? f->max
					       : f->min + (f->max - f->min) / 2u;

		if (!f->required && !all_opt)
			continue;
		if (is_int(f))
			set_int(m, f, v);
		else if (f->kind == KP_KIND_STR)
			set_var(m, f, strpattern + salt % 7u, (uint16_t)v);
		else
			set_var(m, f, pattern + salt % 11u, (uint16_t)v);
		has |= KP_BIT(f->tag);
	}
	set_has(m, has);
	return has;
}

static void assert_same_fields(const codec_t *c, const void *a, const void *b)
{
	for (size_t i = 0; i < c->nf; i++) {
		const kp_field_t *f = &c->f[i];

		if (!KP_HAS((const kp_hello_req_t *)a, f->tag))
			continue;
		if (is_int(f)) {
			assert_int_equal(get_int(a, f), get_int(b, f));
		} else {
			const uint8_t *pa, *pb;
			uint16_t la, lb;

			get_var(a, f, &pa, &la);
			get_var(b, f, &pb, &lb);
			assert_int_equal(la, lb);
			if (la > 0)
				assert_memory_equal(pa, pb, la);
		}
	}
}

static void test_roundtrip_all_messages(void **state)
{
	static uint8_t out[16384], out2[16384], gen[16384];
	msgbuf_t m, d;

	(void)state;
	for (size_t ci = 0; ci < NCODECS; ci++) {
		const codec_t *c = &codecs[ci];

		assert_true(c->size <= sizeof(m.b));
		for (int how = FILL_MIN; how <= FILL_MID; how++) {
			for (int all_opt = 0; all_opt <= 1; all_opt++) {
				size_t n = 0, n2 = 0, ng = 0;
				uint32_t has = fill(m.b, c->size, c, how, all_opt,
						    (unsigned)(ci + (size_t)how));

				assert_int_equal(c->enc(m.b, out, sizeof(out), &n),
						 KP_OK);
				memset(d.b, 0xA5, sizeof(d.b));
				assert_int_equal(c->dec(d.b, out, n), KP_OK);
				assert_int_equal(get_has(d.b), has);
				assert_same_fields(c, m.b, d.b);
				/* re-encoding the decoded message is
				 * byte-identical */
				assert_int_equal(c->enc(d.b, out2, sizeof(out2), &n2),
						 KP_OK);
				assert_int_equal(n, n2);
				assert_memory_equal(out, out2, n);
				if (c->rsp == 2)
					continue;
				/* the generic codec agrees with the typed one */
				assert_int_equal(kp_tlv_encode(c->f, c->nf, m.b, gen,
							       sizeof(gen), &ng),
						 KP_OK);
				assert_int_equal(ng, n);
				assert_memory_equal(gen, out, n);
				/* every message fits in one frame */
				if (how == FILL_MAX && all_opt)
					assert_true(n <= KP_MAX_PAYLOAD);
				/* too small an output buffer */
				if (n > 0)
					assert_int_equal(c->enc(m.b, out2, n - 1,
								&n2),
							 KP_ERR_NOSPACE);
			}
		}
	}
}

static void test_required_always_sent(void **state)
{
	/* required fields are encoded even with their has-bit clear */
	uint8_t out[64];
	size_t n;
	kp_lock_req_t m = {0};
	kp_lock_req_t d;

	(void)state;
	m.level = 2;
	assert_int_equal(kp_lock_req_encode(&m, out, sizeof(out), &n), KP_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(out, "\x01\x01\x00\x02", 4);
	assert_int_equal(kp_lock_req_decode(&d, out, n), KP_OK);
	assert_true(KP_HAS(&d, 0x01));
	assert_int_equal(d.level, 2);
}

/* Build a payload of all required fields at min, with one field's TLV
 * replaced by tag/len/value bytes given by the caller. */
static size_t tlv(uint8_t *p, uint8_t tag, uint16_t len, const uint8_t *v)
{
	p[0] = tag;
	kp_put_le16(p + 1, len);
	if (len > 0)
		memcpy(p + 3, v, len);
	return 3u + len;
}

static size_t build_with(const codec_t *c, size_t which, const uint8_t *val,
			 uint16_t vlen, uint8_t *out)
{
	size_t w = 0;

	for (size_t i = 0; i < c->nf; i++) {
		const kp_field_t *f = &c->f[i];
		uint8_t tmp[8];
		uint16_t len;
		const uint8_t *v;

		if (i == which) {
			w += tlv(out + w, f->tag, vlen, val);
			continue;
		}
		if (!f->required)
			continue;
		if (is_int(f)) {
			len = f->kind == KP_KIND_U8 ? 1 : f->kind == KP_KIND_U16 ? 2 : 4;
			kp_put_le32(tmp, f->min);
			v = tmp;
		} else {
			len = (uint16_t)f->min;
			v = f->kind == KP_KIND_STR ? (const uint8_t *)strpattern
						   : pattern;
		}
		w += tlv(out + w, f->tag, len, v);
	}
	return w;
}

static void test_field_values_rejected(void **state)
{
	static uint8_t buf[16384], out[16384], val[8192];
	msgbuf_t m;

	(void)state;
	for (size_t ci = 0; ci < NCODECS; ci++) {
		const codec_t *c = &codecs[ci];
		size_t n, n2;

		if (c->rsp == 2)
			continue; /* blob: see test_blob_* */
		/* sanity: the builder produces valid messages */
		n = build_with(c, (size_t)-1, NULL, 0, buf);
		assert_int_equal(c->dec(m.b, buf, n), KP_OK);
		for (size_t i = 0; i < c->nf; i++) {
			const kp_field_t *f = &c->f[i];

			if (is_int(f)) {
				uint16_t width = f->kind == KP_KIND_U8    ? 1
						 : f->kind == KP_KIND_U16 ? 2
									  : 4;
				uint32_t tmax = width == 1 ? 0xFFu
						: width == 2 ? 0xFFFFu
							     : 0xFFFFFFFFu;

				/* wrong width: one byte more or less */
				memset(val, 0, 8);
				val[0] = (uint8_t)f->min;
				n = build_with(c, i, val, (uint16_t)(width + 1), buf);
				assert_int_equal(c->dec(m.b, buf, n), KP_ERR_TLV_VALUE);
				n = build_with(c, i, val, (uint16_t)(width - 1), buf);
				assert_int_equal(c->dec(m.b, buf, n), KP_ERR_TLV_VALUE);
				/* out of range on either side, decode and encode */
				if (f->min > 0) {
					kp_put_le32(val, f->min - 1);
					n = build_with(c, i, val, width, buf);
					assert_int_equal(c->dec(m.b, buf, n),
							 KP_ERR_TLV_VALUE);
					fill(m.b, c->size, c, FILL_MIN, 1, 0);
					set_int(m.b, f, f->min - 1);
					assert_int_equal(c->enc(m.b, out, sizeof(out), &n2),
							 KP_ERR_TLV_VALUE);
				}
				if (f->max < tmax) {
					kp_put_le32(val, f->max + 1);
					n = build_with(c, i, val, width, buf);
					assert_int_equal(c->dec(m.b, buf, n),
							 KP_ERR_TLV_VALUE);
					fill(m.b, c->size, c, FILL_MIN, 1, 0);
					set_int(m.b, f, f->max + 1);
					assert_int_equal(c->enc(m.b, out, sizeof(out), &n2),
							 KP_ERR_TLV_VALUE);
				}
			} else {
				memset(val, 'a', sizeof(val));
				if (f->min > 0) {
					n = build_with(c, i, val,
						       (uint16_t)(f->min - 1), buf);
					assert_int_equal(c->dec(m.b, buf, n),
							 KP_ERR_TLV_VALUE);
					fill(m.b, c->size, c, FILL_MIN, 1, 0);
					set_var(m.b, f, val, (uint16_t)(f->min - 1));
					assert_int_equal(c->enc(m.b, out, sizeof(out), &n2),
							 KP_ERR_TLV_VALUE);
				}
				n = build_with(c, i, val, (uint16_t)(f->max + 1), buf);
				assert_int_equal(c->dec(m.b, buf, n), KP_ERR_TLV_VALUE);
				fill(m.b, c->size, c, FILL_MIN, 1, 0);
				set_var(m.b, f, val, (uint16_t)(f->max + 1));
				assert_int_equal(c->enc(m.b, out, sizeof(out), &n2),
						 KP_ERR_TLV_VALUE);
				if (f->kind == KP_KIND_STR) {
					static const uint8_t bad[] = {0x00, 0x1F,
								      0x7F, 0x80,
								      0xFF, '\n'};
					for (size_t k = 0; k < sizeof(bad); k++) {
						uint16_t l = (uint16_t)(f->min > 1 ? f->min : 1);

						memset(val, 'a', l);
						val[l - 1] = bad[k];
						n = build_with(c, i, val, l, buf);
						assert_int_equal(c->dec(m.b, buf, n),
								 KP_ERR_TLV_VALUE);
						fill(m.b, c->size, c, FILL_MIN, 1, 0);
						set_var(m.b, f, val, l);
						assert_int_equal(
							c->enc(m.b, out, sizeof(out), &n2),
							KP_ERR_TLV_VALUE);
					}
				}
				/* NULL value with a length */
				fill(m.b, c->size, c, FILL_MIN, 1, 0);
				set_var(m.b, f, NULL, (uint16_t)(f->min > 0 ? f->min : 1));
				assert_int_equal(c->enc(m.b, out, sizeof(out), &n2),
						 KP_ERR_TLV_VALUE);
			}
			/* required field missing: a valid message with
			 * field i's TLV dropped */
			if (f->required) {
				size_t w = 0, r = 0;

				n = build_with(c, (size_t)-1, NULL, 0, buf);
				while (r < n) {
					uint16_t l = kp_get_le16(buf + r + 1);

					if (buf[r] != f->tag) {
						memcpy(out + w, buf + r, 3u + l);
						w += 3u + l;
					}
					r += 3u + l;
				}
				assert_true(w < n);
				assert_int_equal(c->dec(m.b, out, w), KP_ERR_TLV_MISSING);
			}
		}
	}
}

static void test_tlv_structure_rejected(void **state)
{
	kp_hello_req_t m;
	kp_status_req_t s;
	kp_hello_rsp_t r;

	(void)state;
	/* a valid HELLO request: proto_max=1, host_caps=0 */
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x01\x01\x00\x01\x02\x04\x00\x00\x00\x00\x00",
				 11),
			 KP_OK);
	/* TLV header cut short: 1 or 2 stray bytes */
	assert_int_equal(kp_hello_req_decode(&m, (const uint8_t *)"\x01\x01\x00\x01\x02", 5),
			 KP_ERR_TLV_OVERRUN);
	assert_int_equal(kp_hello_req_decode(&m, (const uint8_t *)"\x01\x01\x00\x01\x02\x04", 6),
			 KP_ERR_TLV_OVERRUN);
	/* value longer than what is left */
	assert_int_equal(kp_hello_req_decode(&m, (const uint8_t *)"\x01\x02\x00\x01", 4),
			 KP_ERR_TLV_OVERRUN);
	assert_int_equal(kp_hello_req_decode(&m, (const uint8_t *)"\x01\xFF\xFF\x01", 4),
			 KP_ERR_TLV_OVERRUN);
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x01\x01\x00\x01\x80\x05\x00\x01\x02", 9),
			 KP_ERR_TLV_OVERRUN);
	/* duplicate */
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x01\x01\x00\x01\x01\x01\x00\x01", 8),
			 KP_ERR_TLV_DUP);
	/* out of order */
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x02\x04\x00\x00\x00\x00\x00\x01\x01\x00\x01",
				 11),
			 KP_ERR_TLV_ORDER);
	/* unknown critical tag (0x7F, 0x10, 0x00) rejected */
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x01\x01\x00\x01\x7F\x00\x00", 7),
			 KP_ERR_TLV_UNKNOWN);
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x01\x01\x00\x01\x10\x01\x00\x00", 8),
			 KP_ERR_TLV_UNKNOWN);
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x00\x00\x00\x01\x01\x00\x01", 7),
			 KP_ERR_TLV_UNKNOWN);
	/* unknown ignorable tags (>= 0x80) skipped, even between known ones */
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x01\x01\x00\x07\x80\x03\x00xyz\xFF\x00\x00", 13),
			 KP_OK);
	assert_int_equal(m.proto_max, 7);
	assert_int_equal(m.has, KP_BIT(0x01));
	/* ... but they obey the order and duplicate rules too */
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x01\x01\x00\x07\x90\x00\x00\x90\x00\x00", 10),
			 KP_ERR_TLV_DUP);
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x01\x01\x00\x07\x90\x00\x00\x81\x00\x00", 10),
			 KP_ERR_TLV_ORDER);
	assert_int_equal(kp_hello_req_decode(
				 &m, (const uint8_t *)"\x80\x00\x00\x01\x01\x00\x01", 7),
			 KP_ERR_TLV_ORDER);
	/* empty payload: fine for STATUS, missing field for HELLO */
	assert_int_equal(kp_status_req_decode(&s, NULL, 0), KP_OK);
	assert_int_equal(kp_status_req_decode(&s, (const uint8_t *)"", 0), KP_OK);
	assert_int_equal(kp_hello_req_decode(&m, (const uint8_t *)"", 0),
			 KP_ERR_TLV_MISSING);
	/* STATUS request has no fields at all: any critical tag is unknown */
	assert_int_equal(kp_status_req_decode(&s, (const uint8_t *)"\x01\x00\x00", 3),
			 KP_ERR_TLV_UNKNOWN);
	assert_int_equal(kp_status_req_decode(&s, (const uint8_t *)"\xA0\x00\x00", 3),
			 KP_OK);
	/* request decoder does not accept the response's fields */
	assert_int_equal(kp_hello_rsp_decode(&r, (const uint8_t *)"\x01\x01\x00\x01", 4),
			 KP_ERR_TLV_MISSING);
	assert_int_equal(kp_hello_req_decode(NULL, (const uint8_t *)"", 0), KP_ERR_ARG);
	assert_int_equal(kp_hello_req_decode(&m, NULL, 3), KP_ERR_ARG);
}

static void test_truncation_never_ok_with_garbage(void **state)
{
	/* every prefix of a valid max-size encoding either fails or decodes
	 * to a message whose re-encoding is that prefix */
	static uint8_t out[16384], again[16384];
	msgbuf_t m, d;

	(void)state;
	for (size_t ci = 0; ci < NCODECS; ci++) {
		const codec_t *c = &codecs[ci];
		size_t n = 0;

		fill(m.b, c->size, c, FILL_MAX, 1, 3);
		assert_int_equal(c->enc(m.b, out, sizeof(out), &n), KP_OK);
		for (size_t cut = 0; cut < n; cut++) {
			kp_err_t r = c->dec(d.b, out, cut);
			size_t n2;

			if (r != KP_OK) {
				assert_true(r == KP_ERR_TLV_OVERRUN ||
					    r == KP_ERR_TLV_MISSING ||
					    r == KP_ERR_BLOB);
				continue;
			}
			assert_int_equal(c->enc(d.b, again, sizeof(again), &n2), KP_OK);
			assert_int_equal(n2, cut);
			assert_memory_equal(again, out, cut);
		}
	}
}

static void test_has_bit_rule(void **state)
{
	/* msg.h: the has-bit of a field is 1 << (tag & 0x1F), so no two
	 * fields of one message may share (tag & 0x1F). Tags must also be
	 * strictly ascending in declaration order (the encoder writes table
	 * order, the decoder demands ascending tags) and non-zero. */
	(void)state;
	for (size_t ci = 0; ci < NCODECS; ci++) {
		const codec_t *c = &codecs[ci];
		uint32_t seen = 0;

		for (size_t i = 0; i < c->nf; i++) {
			const kp_field_t *f = &c->f[i];

			assert_int_not_equal(f->tag, 0);
			if (i > 0)
				assert_true(f->tag > c->f[i - 1].tag);
			if ((seen & KP_BIT(f->tag)) != 0)
				fail_msg("%s %s: field %s shares its has-bit",
					 c->name, c->rsp ? "rsp" : "req", f->name);
			seen |= KP_BIT(f->tag);
			assert_true(f->min <= f->max);
			assert_non_null(f->name);
			if (!is_int(f))
				assert_true(f->max <= 0xFFFF);
			if (f->kind == KP_KIND_U8)
				assert_true(f->max <= 0xFF);
			if (f->kind == KP_KIND_U16)
				assert_true(f->max <= 0xFFFF);
		}
	}
}

static void test_msg_table(void **state)
{
	size_t n;
	const kp_msg_desc_t *t = kp_msg_table(&n);
	unsigned known = 0;

	(void)state;
	assert_int_equal(n, 10);
	for (size_t i = 0; i < n; i++) {
		assert_ptr_equal(kp_msg_find(t[i].type), &t[i]);
		assert_string_equal(kp_msg_name(t[i].type), t[i].name);
		for (size_t k = 0; k < i; k++)
			assert_int_not_equal(t[k].type, t[i].type);
	}
	assert_int_equal(kp_msg_find(KP_MSG_HELLO)->type, 0x01);
	assert_string_equal(kp_msg_name(KP_MSG_LOCK), "LOCK");
	assert_string_equal(kp_msg_name(KP_MSG_ERROR), "ERROR");
	for (unsigned ty = 0; ty < 256; ty++) {
		if (kp_msg_find((uint8_t)ty) != NULL) {
			known++;
			continue;
		}
		assert_string_equal(kp_msg_name((uint8_t)ty), "UNKNOWN");
	}
	assert_int_equal(known, n);
	assert_null(kp_msg_find(0x00));
	assert_null(kp_msg_find(0x0A));
	assert_null(kp_msg_find(0x7E));
	assert_null(kp_msg_find(0xFF));
}

static void test_blob(void **state)
{
	static uint8_t cert[300], out[8192];
	uint8_t pub[65];
	kp_blob_t b = {0}, d;
	size_t n;

	(void)state;
	memset(cert, 0x30, sizeof(cert));
	memset(pub, 0x04, sizeof(pub));
	b.pubkey = pub;
	b.pubkey_len = 65;
	b.serial = "KLN-000001";
	b.serial_len = 10;
	b.cert = cert;
	b.cert_len = sizeof(cert);
	assert_int_equal(kp_blob_encode(&b, out, sizeof(out), &n), KP_OK);
	assert_int_equal(n, 5 + 3 + 65 + 3 + 10 + 3 + 300);
	assert_memory_equal(out, "KLNB\x01\x01\x41\x00\x04", 9);
	assert_int_equal(kp_blob_decode(&d, out, n), KP_OK);
	assert_int_equal(d.serial_len, 10);
	assert_memory_equal(d.serial, "KLN-000001", 10);
	assert_false(KP_HAS(&d, 0x04));
	assert_false(KP_HAS(&d, 0x05));
	/* optional chain + meta */
	b.has = KP_BIT(0x04) | KP_BIT(0x05);
	b.chain = cert;
	b.chain_len = 100;
	b.meta = (const uint8_t *)"lot=7\n";
	b.meta_len = 6;
	assert_int_equal(kp_blob_encode(&b, out, sizeof(out), &n), KP_OK);
	assert_int_equal(kp_blob_decode(&d, out, n), KP_OK);
	assert_true(KP_HAS(&d, 0x04) && KP_HAS(&d, 0x05));
	assert_int_equal(d.chain_len, 100);
	assert_int_equal(d.meta_len, 6);
	/* bad magic, bad version, short header */
	out[0] = 'X';
	assert_int_equal(kp_blob_decode(&d, out, n), KP_ERR_BLOB);
	out[0] = 'K';
	out[4] = 2;
	assert_int_equal(kp_blob_decode(&d, out, n), KP_ERR_BLOB);
	out[4] = 0;
	assert_int_equal(kp_blob_decode(&d, out, n), KP_ERR_BLOB);
	out[4] = 1;
	for (size_t k = 0; k < 5; k++)
		assert_int_equal(kp_blob_decode(&d, out, k), KP_ERR_BLOB);
	assert_int_equal(kp_blob_decode(&d, out, 5), KP_ERR_TLV_MISSING);
	/* trailing junk after the last TLV */
	out[n] = 0x06;
	assert_int_equal(kp_blob_decode(&d, out, n + 1), KP_ERR_TLV_OVERRUN);
	/* encoder: no room for the header / for the TLVs */
	assert_int_equal(kp_blob_encode(&b, out, 4, &n), KP_ERR_NOSPACE);
	assert_int_equal(kp_blob_encode(&b, out, 100, &n), KP_ERR_NOSPACE);
	/* serial must be printable, cert at least 64 bytes */
	b.serial = "KLN\n1";
	b.serial_len = 5;
	assert_int_equal(kp_blob_encode(&b, out, sizeof(out), &n), KP_ERR_TLV_VALUE);
	b.serial = "KLN-1";
	b.cert_len = 63;
	assert_int_equal(kp_blob_encode(&b, out, sizeof(out), &n), KP_ERR_TLV_VALUE);
	assert_int_equal(kp_blob_decode(NULL, out, 10), KP_ERR_ARG);
}

static void test_challenge_message(void **state)
{
	uint8_t uid[12], nonce[32], out[400];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(uid); i++)
		uid[i] = (uint8_t)(0xA0 + i);
	for (size_t i = 0; i < sizeof(nonce); i++)
		nonce[i] = (uint8_t)i;
	assert_int_equal(kp_challenge_message(uid, 12, nonce, 32, out, sizeof(out), &n),
			 KP_OK);
	assert_int_equal(n, 16 + 1 + 12 + 32);
	assert_memory_equal(out, "KILN-CHALLENGE-1", 16);
	assert_int_equal(out[16], 12);
	assert_memory_equal(out + 17, uid, 12);
	assert_memory_equal(out + 29, nonce, 32);
	/* exact fit, one short */
	assert_int_equal(kp_challenge_message(uid, 12, nonce, 32, out, 61, &n), KP_OK);
	assert_int_equal(kp_challenge_message(uid, 12, nonce, 32, out, 60, &n),
			 KP_ERR_NOSPACE);
	/* bad arguments */
	assert_int_equal(kp_challenge_message(uid, 0, nonce, 32, out, sizeof(out), &n),
			 KP_ERR_ARG);
	assert_int_equal(kp_challenge_message(uid, 256, nonce, 32, out, sizeof(out), &n),
			 KP_ERR_ARG);
	assert_int_equal(kp_challenge_message(uid, 12, nonce, 0, out, sizeof(out), &n),
			 KP_ERR_ARG);
	assert_int_equal(kp_challenge_message(NULL, 12, nonce, 32, out, sizeof(out), &n),
			 KP_ERR_ARG);
}

static void test_error_names(void **state)
{
	(void)state;
	assert_string_equal(kp_err_name(KP_ERR_CRC), "KP_ERR_CRC");
	assert_string_equal(kp_err_name(KP_OK), "KP_OK");
	assert_string_equal(kp_err_name(999), "KP_ERR_UNKNOWN");
	assert_string_equal(kp_err_name(-1), "KP_ERR_UNKNOWN");
	assert_string_equal(kp_strerror(KP_ERR_TLV_DUP), "duplicate TLV field");
	assert_string_equal(kp_strerror(999), "unknown error");
	assert_string_equal(kp_status_str(KP_ST_LOCKED), "device is locked");
	assert_string_equal(kp_status_str(999), "unknown status");
	/* codes are dense and distinct: every value 0..last has a name */
	for (int e = 0; e <= KP_ERR_TLV_ORDER; e++)
		assert_string_not_equal(kp_err_name(e), "KP_ERR_UNKNOWN");
	for (int s = 0; s <= KP_ST_INTERNAL; s++)
		assert_string_not_equal(kp_status_str(s), "unknown status");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_all_messages),
		cmocka_unit_test(test_required_always_sent),
		cmocka_unit_test(test_field_values_rejected),
		cmocka_unit_test(test_tlv_structure_rejected),
		cmocka_unit_test(test_truncation_never_ok_with_garbage),
		cmocka_unit_test(test_has_bit_rule),
		cmocka_unit_test(test_msg_table),
		cmocka_unit_test(test_blob),
		cmocka_unit_test(test_challenge_message),
		cmocka_unit_test(test_error_names),
	};

	for (size_t i = 0; i < sizeof(pattern); i++) {
		pattern[i] = (uint8_t)(i * 7u + 1u);
		strpattern[i] = (char)(0x20 + (i * 5u) % 95u);
	}
	return cmocka_run_group_tests(tests, setup_codecs, NULL);
}
