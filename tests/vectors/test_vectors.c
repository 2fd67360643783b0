/*
 * Checks tests/vectors/protocol-vectors.txt against the real codec.
 *
 *   test_vectors VECTORS            every positive vector is rebuilt from
 *                                   its field values with the encoder and
 *                                   compared byte for byte; every wire
 *                                   vector is decoded through the streaming
 *                                   receiver and must give exactly its
 *                                   `expect:` error name (or its fields).
 *   test_vectors VECTORS --doc MD   the vector blocks shown in fenced code
 *                                   blocks of MD must be exactly the file's.
 *
 * The format is described at the top of the vectors file.
 */
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>

#include "protocol/frame.h"
#include "protocol/msg.h"
#include "protocol/seal.h"

#define MAX_ENTRIES 40
#define MAX_VECTORS 200

typedef struct {
	char *key;
	char *val; /* continuation lines joined, whitespace collapsed */
} entry_t;

typedef struct {
	entry_t e[MAX_ENTRIES];
	size_t n;
	int line; /* where the block starts */
} vector_t;

typedef struct {
	vector_t v[MAX_VECTORS];
	size_t n;
} vecset_t;

static int failures;

/* kp_err_t may be unsigned (clang): convert explicitly. */
static const char *ename(kp_err_t e)
{
	return kp_err_name((int)e);
}

static void fail(const vector_t *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static const char *get(const vector_t *v, const char *key)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->e[i].key, key) == 0)
			return v->e[i].val;
	return NULL;
}

static void fail(const vector_t *v, const char *fmt, ...)
{
	va_list ap;
	const char *name = v != NULL ? get(v, "vector") : NULL;

	fprintf(stderr, "FAIL %s (line %d): ", name != NULL ? name : "?",
		v != NULL ? v->line : 0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failures++;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long len;

	if (f == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc((size_t)len + 1);
	if (buf == NULL)
		goto out;
	if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[len] = '\0';
out:
	fclose(f);
	return buf;
}

/* Append s (trimmed, whitespace collapsed) to *val. */
static void append_val(char **val, const char *s)
{
	size_t old = *val != NULL ? strlen(*val) : 0;
	char *nv = realloc(*val, old + strlen(s) + 2);
	size_t w = old;
	int space = old > 0;

	if (nv == NULL) {
		perror("realloc");
		exit(2);
	}
	for (; *s != '\0'; s++) {
		if (isspace((unsigned char)*s)) {
			space = w > 0;
			continue;
		}
		if (space)
			nv[w++] = ' ';
		space = 0;
		nv[w++] = *s;
	}
	nv[w] = '\0';
	*val = nv;
}

/*
 * Parse blocks from text. in_doc: only lines inside ``` fences count, and
 * only fenced blocks whose first line starts with "vector:".
 */
static int parse(char *text, vecset_t *vs, int in_doc)
{
	vector_t *cur = NULL;
	int lineno = 0, in_fence = 0, fence_first = 0, fence_take = 0;
	char *next;

	for (char *line = text; line != NULL && *line != '\0'; line = next) {
		size_t len;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		len = strlen(line);
		lineno++;
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (in_doc) {
			if (strncmp(line, "```", 3) == 0) {
				in_fence = !in_fence;
				fence_first = in_fence;
				cur = NULL;
				continue;
			}
			if (!in_fence)
				continue;
			if (fence_first) {
				fence_take = strncmp(line, "vector:", 7) == 0;
				fence_first = 0;
			}
			if (!fence_take)
				continue;
		}
		if (line[0] == '#')
			continue;
		if (strspn(line, " \t") == len) {
			cur = NULL;
			continue;
		}
		if (line[0] == '\t' || line[0] == ' ') {
			if (cur == NULL || cur->n == 0) {
				fprintf(stderr, "line %d: continuation without a key\n",
					lineno);
				return -1;
			}
			append_val(&cur->e[cur->n - 1].val, line);
			continue;
		}
		{
			char *colon = strchr(line, ':');
			entry_t *e;

			if (colon == NULL) {
				fprintf(stderr, "line %d: expected 'key: value'\n", lineno);
				return -1;
			}
			*colon = '\0';
			if (cur == NULL) {
				if (strcmp(line, "vector") != 0) {
					fprintf(stderr, "line %d: block must start with "
						"'vector:'\n", lineno);
					return -1;
				}
				if (vs->n == MAX_VECTORS)
					return -1;
				cur = &vs->v[vs->n++];
				cur->line = lineno;
			}
			if (cur->n == MAX_ENTRIES)
				return -1;
			e = &cur->e[cur->n++];
			e->key = strdup(line);
			e->val = NULL;
			append_val(&e->val, colon + 1);
			if (e->key == NULL || e->val == NULL)
				return -1;
		}
	}
	return 0;
}

static void free_set(vecset_t *vs)
{
	for (size_t i = 0; i < vs->n; i++)
		for (size_t k = 0; k < vs->v[i].n; k++) {
			free(vs->v[i].e[k].key);
			free(vs->v[i].e[k].val);
		}
	vs->n = 0;
}

/* Strict hex: "aa bb cc", each token two hex digits. Returns length or -1. */
static long parse_hex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*s != '\0') {
		unsigned v;

		if (*s == ' ') {
			s++;
			continue;
		}
		if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]) ||
		    (s[2] != ' ' && s[2] != '\0') || n == cap)
			return -1;
		if (sscanf(s, "%2x", &v) != 1)
			return -1;
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return (long)n;
}

static int parse_uint(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0' || v > 0xFFFFFFFFull)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* Storage for BYTES/STR values of one vector: they must outlive the
 * struct that points at them. */
static uint8_t valstore[65536];
static size_t valused;

typedef union {
	max_align_t align;
	uint8_t b[512];
} msgbuf_t;

static void put_var(uint8_t *m, const kp_field_t *f, const void *p, uint16_t len)
{
	memcpy(m + f->off, &p, sizeof(p));
	memcpy(m + f->off_len, &len, sizeof(len));
}

static int is_int(const kp_field_t *f)
{
	return f->kind == KP_KIND_U8 || f->kind == KP_KIND_U16 ||
	       f->kind == KP_KIND_U32;
}

/* Build a message struct from the vector's field: lines. */
static int build(const vector_t *v, const kp_field_t *f, size_t nf, msgbuf_t *m)
{
	uint32_t has = 0;

	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < v->n; i++) {
		const char *val = v->e[i].val, *eq;
		const kp_field_t *fd = NULL;
		char name[64];
		size_t nl;

		if (strcmp(v->e[i].key, "field") != 0)
			continue;
		eq = strchr(val, '=');
		if (eq == NULL)
			goto bad;
		nl = (size_t)(eq - val);
		while (nl > 0 && val[nl - 1] == ' ')
			nl--;
		if (nl == 0 || nl >= sizeof(name))
			goto bad;
		memcpy(name, val, nl);
		name[nl] = '\0';
		val = eq + 1;
		while (*val == ' ')
			val++;
		for (size_t k = 0; k < nf; k++)
			if (strcmp(f[k].name, name) == 0)
				fd = &f[k];
		if (fd == NULL) {
			fail(v, "no field '%s' in this message", name);
			return -1;
		}
		if (is_int(fd)) {
			uint32_t x;

			if (parse_uint(val, &x) != 0)
				goto bad;
			if (fd->kind == KP_KIND_U8)
				m->b[fd->off] = (uint8_t)x;
			else if (fd->kind == KP_KIND_U16) {
				uint16_t h = (uint16_t)x;
				memcpy(m->b + fd->off, &h, 2);
			} else {
				memcpy(m->b + fd->off, &x, 4);
			}
		} else if (fd->kind == KP_KIND_STR) {
			size_t l = strlen(val);

			if (l < 2 || val[0] != '"' || val[l - 1] != '"' ||
			    l - 2 > sizeof(valstore) - valused)
				goto bad;
			memcpy(valstore + valused, val + 1, l - 2);
			put_var(m->b, fd, valstore + valused, (uint16_t)(l - 2));
			valused += l - 2;
		} else {
			long l = parse_hex(val, valstore + valused,
					   sizeof(valstore) - valused);

			if (l < 0)
				goto bad;
			put_var(m->b, fd, valstore + valused, (uint16_t)l);
			valused += (size_t)l;
		}
		has |= KP_BIT(fd->tag);
		continue;
bad:
		fail(v, "bad field line '%s'", v->e[i].val);
		return -1;
	}
	memcpy(m->b, &has, sizeof(has));
	return 0;
}

/* Compare two decoded/built structs field by field. */
static int same_fields(const vector_t *v, const kp_field_t *f, size_t nf,
		       const msgbuf_t *a, const msgbuf_t *b)
{
	uint32_t ha, hb;

	memcpy(&ha, a->b, 4);
	memcpy(&hb, b->b, 4);
	if (ha != hb) {
		fail(v, "decoded has-bits 0x%08x, fields list 0x%08x", hb, ha);
		return 0;
	}
	for (size_t i = 0; i < nf; i++) {
		const kp_field_t *fd = &f[i];

		if ((ha & KP_BIT(fd->tag)) == 0)
			continue;
		if (is_int(fd)) {
			size_t w = fd->kind == KP_KIND_U8 ? 1 : fd->kind == KP_KIND_U16 ? 2 : 4;

			if (memcmp(a->b + fd->off, b->b + fd->off, w) != 0) {
				fail(v, "field %s differs", fd->name);
				return 0;
			}
		} else {
			const uint8_t *pa, *pb;
			uint16_t la, lb;

			memcpy(&pa, a->b + fd->off, sizeof(pa));
			memcpy(&pb, b->b + fd->off, sizeof(pb));
			memcpy(&la, a->b + fd->off_len, 2);
			memcpy(&lb, b->b + fd->off_len, 2);
			if (la != lb || (la > 0 && memcmp(pa, pb, la) != 0)) {
				fail(v, "field %s differs", fd->name);
				return 0;
			}
		}
	}
	return 1;
}

static void dump(const char *what, const uint8_t *p, size_t n)
{
	fprintf(stderr, "  %s (%zu):", what, n);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %02x", p[i]);
	fputc('\n', stderr);
}

static int check_bytes(const vector_t *v, const char *what, const uint8_t *got,
		       size_t gn, const uint8_t *want, size_t wn)
{
	if (gn == wn && (gn == 0 || memcmp(got, want, gn) == 0))
		return 1;
	fail(v, "%s differs", what);
	dump("expected", want, wn);
	dump("got     ", got, gn);
	return 0;
}

static int hex_entry(const vector_t *v, const char *key, uint8_t *out,
		     size_t cap, size_t *n)
{
	const char *s = get(v, key);
	long l;

	if (s == NULL) {
		fail(v, "missing '%s:'", key);
		return -1;
	}
	l = parse_hex(s, out, cap);
	if (l < 0) {
		fail(v, "bad hex in '%s:'", key);
		return -1;
	}
	*n = (size_t)l;
	return 0;
}

static int check_sha(const vector_t *v, const uint8_t *p, size_t n)
{
	uint8_t want[64], got[SHA256_DIGEST_LENGTH];
	size_t wn;

	if (get(v, "sha256") == NULL)
		return 1;
	if (hex_entry(v, "sha256", want, sizeof(want), &wn) != 0)
		return 0;
	SHA256(p, n, got);
	return check_bytes(v, "sha256", got, sizeof(got), want, wn);
}

static int expect_ok(const vector_t *v)
{
	const char *e = get(v, "expect");

	return e == NULL || strcmp(e, "KP_OK") == 0;
}

static int do_frame(const vector_t *v)
{
	static uint8_t wire[KP_MAX_WIRE + 64], payload[KP_MAX_PAYLOAD + 64],
		out[KP_MAX_WIRE + 64], chunk[KP_MAX_WIRE + 64];
	const char *expect = get(v, "expect"), *message = get(v, "message");
	const kp_msg_desc_t *d = NULL;
	const kp_field_t *f = NULL;
	size_t wn, pn = 0, nf = 0, events = 0, pos = 0;
	kp_rx_event_t ev = {0}, first = {0};
	kp_rx_t rx;
	kp_err_t got = KP_OK, direct;
	msgbuf_t want, dec;
	int rsp;

	if (expect == NULL)
		expect = "KP_OK";
	if (hex_entry(v, "wire", wire, sizeof(wire), &wn) != 0)
		return 0;
	if (wn < 2 || wire[0] != 0 || wire[wn - 1] != 0) {
		fail(v, "wire must start and end with the 0x00 delimiter");
		return 0;
	}
	/* through the streaming receiver, as an agent or host sees it */
	kp_rx_init(&rx);
	while (pos < wn) {
		pos += kp_rx_feed(&rx, wire + pos, wn - pos, &ev);
		if (ev.kind == KP_RX_NONE)
			continue;
		if (events++ == 0)
			first = ev;
	}
	if (events != 1) {
		fail(v, "receiver reported %zu events, want 1", events);
		return 0;
	}
	/* kp_frame_decode on the chunk must agree with the receiver */
	memcpy(chunk, wire + 1, wn - 2);
	{
		kp_hdr_t h;
		const uint8_t *p;

		direct = kp_frame_decode(chunk, wn - 2, &h, &p);
	}
	if (first.kind == KP_RX_ERROR) {
		got = first.err;
		if (direct != got)
			fail(v, "kp_frame_decode says %s, receiver %s",
			     ename(direct), ename(got));
	} else if ((d = kp_msg_find(first.hdr.type)) == NULL) {
		got = KP_ERR_TYPE;
	} else {
		rsp = (first.hdr.flags & KP_FLAG_RESPONSE) != 0;
		f = rsp ? d->rsp : d->req;
		nf = rsp ? d->nrsp : d->nreq;
		got = kp_tlv_decode(f, nf, dec.b, sizeof(dec.b), first.payload,
				    first.hdr.len);
		if (message != NULL) {
			char m[64];

			snprintf(m, sizeof(m), "%s %s", d->name, rsp ? "rsp" : "req");
			if (strcmp(m, message) != 0)
				fail(v, "frame carries '%s', vector says '%s'", m,
				     message);
		}
	}
	if (strcmp(ename(got), expect) != 0) {
		fail(v, "decoding gave %s, expected %s", ename(got), expect);
		return 0;
	}
	if (!expect_ok(v))
		return 1;

	/* positive vector: payload, seq and fields must match */
	if (hex_entry(v, "payload", payload, sizeof(payload), &pn) != 0)
		return 0;
	if (!check_bytes(v, "received payload", first.payload, first.hdr.len,
			 payload, pn))
		return 0;
	{
		uint32_t seq;
		const char *s = get(v, "seq");

		if (s == NULL || parse_uint(s, &seq) != 0 || seq != first.hdr.seq) {
			fail(v, "seq mismatch");
			return 0;
		}
	}
	if (build(v, f, nf, &want) != 0 || !same_fields(v, f, nf, &want, &dec))
		return 0;
	if (get(v, "encode") != NULL && strcmp(get(v, "encode"), "no") == 0)
		return 1;
	/* rebuild with the real encoder, byte for byte */
	{
		size_t n = 0;
		kp_hdr_t h = {0, first.hdr.type, first.hdr.flags, first.hdr.seq, 0};
		kp_err_t r = kp_tlv_encode(f, nf, want.b, out, sizeof(out), &n);

		if (r != KP_OK) {
			fail(v, "encoder: %s", ename(r));
			return 0;
		}
		if (!check_bytes(v, "encoded payload", out, n, payload, pn))
			return 0;
		h.len = (uint16_t)pn;
		r = kp_frame_encode(&h, payload, pn, out, sizeof(out), &n);
		if (r != KP_OK) {
			fail(v, "frame encoder: %s", ename(r));
			return 0;
		}
		if (!check_bytes(v, "encoded frame", out, n, wire, wn))
			return 0;
	}
	return 1;
}

static int do_blob(const vector_t *v)
{
	static uint8_t payload[16384], out[16384];
	const kp_field_t *f;
	size_t nf, pn, n;
	msgbuf_t want, dec;
	kp_blob_t *b = (kp_blob_t *)(void *)want.b;
	kp_err_t r;

	f = kp_blob_fields(&nf);
	if (hex_entry(v, "payload", payload, sizeof(payload), &pn) != 0 ||
	    build(v, f, nf, &want) != 0)
		return 0;
	r = kp_blob_encode(b, out, sizeof(out), &n);
	if (r != KP_OK) {
		fail(v, "kp_blob_encode: %s", ename(r));
		return 0;
	}
	if (!check_bytes(v, "blob", out, n, payload, pn))
		return 0;
	r = kp_blob_decode((kp_blob_t *)(void *)dec.b, payload, pn);
	if (r != KP_OK) {
		fail(v, "kp_blob_decode: %s", ename(r));
		return 0;
	}
	return same_fields(v, f, nf, &want, &dec) && check_sha(v, payload, pn);
}

static int do_challenge(const vector_t *v)
{
	static uint8_t payload[1024], out[1024];
	/* the two inputs, described like message fields */
	typedef struct {
		uint32_t has;
		const uint8_t *uid;
		uint16_t uid_len;
		const uint8_t *nonce;
		uint16_t nonce_len;
	} chal_t;
	static const kp_field_t cf[] = {
		{0x01, KP_KIND_BYTES, 1, 1, 255, offsetof(chal_t, uid),
		 offsetof(chal_t, uid_len), "uid"},
		{0x02, KP_KIND_BYTES, 1, 1, 255, offsetof(chal_t, nonce),
		 offsetof(chal_t, nonce_len), "nonce"},
	};
	msgbuf_t in;
	chal_t c;
	size_t pn, n;
	kp_err_t r;

	if (hex_entry(v, "payload", payload, sizeof(payload), &pn) != 0 ||
	    build(v, cf, 2, &in) != 0)
		return 0;
	memcpy(&c, in.b, sizeof(c));
	r = kp_challenge_message(c.uid, c.uid_len, c.nonce, c.nonce_len, out,
				 sizeof(out), &n);
	if (r != KP_OK) {
		fail(v, "kp_challenge_message: %s", ename(r));
		return 0;
	}
	return check_bytes(v, "challenge message", out, n, payload, pn) &&
	       check_sha(v, payload, pn);
}


/* ---- sealed channel vectors (OpenSSL does the arithmetic, protocol/seal.c
 * builds transcript, nonce and additional data) ---- */

static EVP_PKEY *p256_key(const uint8_t priv[32], int with_priv)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pk = NULL;
	BIGNUM *d = BN_bin2bn(priv, 32, NULL);
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	EC_POINT *q = g != NULL ? EC_POINT_new(g) : NULL;
	uint8_t pub[65];

	if (bld == NULL || ctx == NULL || d == NULL || q == NULL ||
	    EC_POINT_mul(g, q, d, NULL, NULL, NULL) != 1 ||
	    EC_POINT_point2oct(g, q, POINT_CONVERSION_UNCOMPRESSED, pub, 65,
			       NULL) != 65 ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					    "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
					     65) != 1 ||
	    (with_priv &&
	     OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1))
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	if (params == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pk, with_priv ? EVP_PKEY_KEYPAIR
						  : EVP_PKEY_PUBLIC_KEY,
			      params) != 1)
		pk = NULL;
out:
	EC_POINT_free(q);
	EC_GROUP_free(g);
	BN_free(d);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	return pk;
}

static int point_of(const uint8_t priv[32], uint8_t pub[65])
{
	EVP_PKEY *k = p256_key(priv, 0);
	size_t n = 0;
	int ok = k != NULL &&
		 EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY,
						 pub, 65, &n) == 1 &&
		 n == 65;

	EVP_PKEY_free(k);
	return ok;
}

/* The secure-open vectors' fields, for the transcript. */
static const vector_t *find_vector(const vecset_t *vs, const char *name)
{
	for (size_t i = 0; i < vs->n; i++)
		if (strcmp(get(&vs->v[i], "vector"), name) == 0)
			return &vs->v[i];
	return NULL;
}

static int field_hex(const vector_t *v, const char *name, uint8_t *out,
		     size_t cap, size_t *n)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < v->n; i++) {
		const char *val = v->e[i].val;

		if (strcmp(v->e[i].key, "field") != 0 ||
		    strncmp(val, name, nl) != 0 || strncmp(val + nl, " = ", 3))
			continue;
		if (parse_hex(val + nl + 3, out, cap) < 0)
			return -1;
		*n = (size_t)parse_hex(val + nl + 3, out, cap);
		return 0;
	}
	return -1;
}

static const vecset_t *all_vectors;

static int do_secure(const vector_t *v)
{
	uint8_t hp[64], ap[64], uid[64], hpub[65], apub[65], hn[64], an[64];
	uint8_t tr[KP_SECURE_TRANSCRIPT_MAX], want[512], z[32], okm[64];
	size_t hpn, apn, un, hnn, ann, tl = 0, wn, zl = 32;
	const vector_t *rq = find_vector(all_vectors, "secure-open-request");
	const vector_t *rs = find_vector(all_vectors, "secure-open-response");
	EVP_PKEY *mine = NULL, *peer = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *kc = NULL;
	OSSL_PARAM prm[5];
	int ok = 0;

	if (rq == NULL || rs == NULL) {
		fail(v, "secure-open-request/-response vectors missing");
		return 0;
	}
	if (hex_entry(v, "host_priv", hp, sizeof(hp), &hpn) != 0 ||
	    hex_entry(v, "agent_priv", ap, sizeof(ap), &apn) != 0 ||
	    field_hex(v, "uid", uid, sizeof(uid), &un) != 0 ||
	    field_hex(rq, "host_nonce", hn, sizeof(hn), &hnn) != 0 ||
	    field_hex(rs, "agent_nonce", an, sizeof(an), &ann) != 0 ||
	    hpn != 32 || apn != 32 || hnn != 32 || ann != 32) {
		fail(v, "bad inputs");
		return 0;
	}
	/* the points in the SECURE_OPEN vectors are those of the scalars */
	{
		uint8_t f[65];
		size_t fn;

		if (!point_of(hp, hpub) || !point_of(ap, apub) ||
		    field_hex(rq, "host_pub", f, sizeof(f), &fn) != 0 ||
		    !check_bytes(v, "host_pub", f, fn, hpub, 65) ||
		    field_hex(rs, "agent_pub", f, sizeof(f), &fn) != 0 ||
		    !check_bytes(v, "agent_pub", f, fn, apub, 65))
			return 0;
	}
	if (kp_secure_transcript(uid, un, hpub, hn, apub, an, tr, sizeof(tr),
				 &tl) != KP_OK ||
	    hex_entry(v, "payload", want, sizeof(want), &wn) != 0 ||
	    !check_bytes(v, "transcript", tr, tl, want, wn) ||
	    !check_sha(v, tr, tl))
		return 0;
	/* z = ECDH(host scalar, agent point) */
	mine = p256_key(hp, 1);
	peer = p256_key(ap, 0);
	ctx = mine != NULL ? EVP_PKEY_CTX_new(mine, NULL) : NULL;
	if (ctx == NULL || peer == NULL || EVP_PKEY_derive_init(ctx) != 1 ||
	    EVP_PKEY_derive_set_peer(ctx, peer) != 1 ||
	    EVP_PKEY_derive(ctx, z, &zl) != 1 || zl != 32) {
		fail(v, "ECDH failed");
		goto out;
	}
	if (hex_entry(v, "z", want, sizeof(want), &wn) != 0 ||
	    !check_bytes(v, "z", z, 32, want, wn))
		goto out;
	{
		uint8_t th[32];

		SHA256(tr, tl, th);
		kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
		kc = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
		prm[0] = OSSL_PARAM_construct_utf8_string(
			OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
		prm[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
							   z, 32);
		prm[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
							   th, 32);
		prm[3] = OSSL_PARAM_construct_octet_string(
			OSSL_KDF_PARAM_INFO, (char *)KP_SECURE_HKDF_INFO,
			KP_SECURE_HKDF_INFO_LEN);
		prm[4] = OSSL_PARAM_construct_end();
		if (kc == NULL || EVP_KDF_derive(kc, okm, 64, prm) != 1) {
			fail(v, "HKDF failed");
			goto out;
		}
	}
	if (hex_entry(v, "k_h2a", want, sizeof(want), &wn) != 0 ||
	    !check_bytes(v, "k_h2a", okm, 32, want, wn) ||
	    hex_entry(v, "k_a2h", want, sizeof(want), &wn) != 0 ||
	    !check_bytes(v, "k_a2h", okm + 32, 32, want, wn))
		goto out;
	ok = 1;
out:
	EVP_KDF_CTX_free(kc);
	EVP_KDF_free(kdf);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(mine);
	EVP_PKEY_free(peer);
	return ok;
}

static int do_sealed(const vector_t *v)
{
	static uint8_t wire[KP_MAX_WIRE + 64], key[64], nonce[64], plain[1024],
		payload[KP_MAX_PAYLOAD + 64], got[KP_MAX_PAYLOAD], out[KP_MAX_WIRE];
	size_t wn, kn, nn, pn, sn, n = 0, pos = 0;
	const char *message = get(v, "message"), *cs = get(v, "ctr");
	uint8_t nb[KP_SEAL_NONCE_LEN], aad[KP_SEAL_AAD_LEN], tag[16];
	kp_rx_event_t ev = {0};
	kp_rx_t rx;
	const kp_msg_desc_t *d;
	const kp_field_t *f;
	msgbuf_t want, dec;
	EVP_CIPHER_CTX *x = NULL;
	uint32_t ctr = 0, got_ctr = 0;
	size_t ct_len = 0, nf;
	int rsp, len = 0, ok = 0;

	if (hex_entry(v, "wire", wire, sizeof(wire), &wn) != 0 ||
	    hex_entry(v, "key", key, sizeof(key), &kn) != 0 ||
	    hex_entry(v, "nonce", nonce, sizeof(nonce), &nn) != 0 ||
	    hex_entry(v, "plain", plain, sizeof(plain), &pn) != 0 ||
	    hex_entry(v, "payload", payload, sizeof(payload), &sn) != 0 ||
	    cs == NULL || parse_uint(cs, &ctr) != 0 || message == NULL ||
	    kn != 32)
		return 0;
	kp_rx_init(&rx);
	while (pos < wn && ev.kind != KP_RX_FRAME) {
		pos += kp_rx_feed(&rx, wire + pos, wn - pos, &ev);
		if (ev.kind == KP_RX_ERROR) {
			fail(v, "wire: %s", ename(ev.err));
			return 0;
		}
	}
	if (ev.kind != KP_RX_FRAME || (ev.hdr.flags & KP_FLAG_SEALED) == 0 ||
	    (d = kp_msg_find(ev.hdr.type)) == NULL) {
		fail(v, "not a sealed frame of a known type");
		return 0;
	}
	if (!check_bytes(v, "sealed payload", ev.payload, ev.hdr.len, payload,
			 sn) ||
	    kp_seal_split(ev.payload, ev.hdr.len, &got_ctr, &ct_len) != KP_OK ||
	    got_ctr != ctr) {
		fail(v, "counter");
		return 0;
	}
	rsp = (ev.hdr.flags & KP_FLAG_RESPONSE) != 0;
	kp_seal_nonce(rsp ? KP_SEAL_DIR_A2H : KP_SEAL_DIR_H2A, ev.hdr.type, ctr,
		      nb);
	if (!check_bytes(v, "nonce", nb, sizeof(nb), nonce, nn))
		return 0;
	kp_seal_aad(&ev.hdr, ctr, aad);
	memcpy(tag, ev.payload + KP_SEAL_CTR_LEN + ct_len, 16);
	x = EVP_CIPHER_CTX_new();
	if (x == NULL ||
	    EVP_DecryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, nb) != 1 ||
	    EVP_DecryptUpdate(x, NULL, &len, aad, (int)sizeof(aad)) != 1 ||
	    EVP_DecryptUpdate(x, got, &len, ev.payload + KP_SEAL_CTR_LEN,
			      (int)ct_len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1 ||
	    EVP_DecryptFinal_ex(x, got + len, &len) != 1) {
		fail(v, "AES-GCM: does not authenticate");
		goto out;
	}
	if (!check_bytes(v, "plain", got, ct_len, plain, pn))
		goto out;
	{
		char m[64];

		snprintf(m, sizeof(m), "%s %s", d->name, rsp ? "rsp" : "req");
		if (strcmp(m, message) != 0) {
			fail(v, "frame carries '%s'", m);
			goto out;
		}
	}
	f = rsp ? d->rsp : d->req;
	nf = rsp ? d->nrsp : d->nreq;
	if (kp_tlv_decode(f, nf, dec.b, sizeof(dec.b), got, ct_len) != KP_OK ||
	    build(v, f, nf, &want) != 0 || !same_fields(v, f, nf, &want, &dec))
		goto out;
	if (kp_tlv_encode(f, nf, want.b, out, sizeof(out), &n) != KP_OK ||
	    !check_bytes(v, "encoded plain", out, n, plain, pn))
		goto out;
	/* one flipped tag bit and the frame no longer authenticates */
	tag[0] ^= 1;
	if (EVP_DecryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, nb) != 1 ||
	    EVP_DecryptUpdate(x, NULL, &len, aad, (int)sizeof(aad)) != 1 ||
	    EVP_DecryptUpdate(x, got, &len, ev.payload + KP_SEAL_CTR_LEN,
			      (int)ct_len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1 ||
	    EVP_DecryptFinal_ex(x, got + len, &len) == 1) {
		fail(v, "a modified tag still authenticates");
		goto out;
	}
	ok = 1;
out:
	EVP_CIPHER_CTX_free(x);
	return ok;
}

static int run_vectors(const vecset_t *vs)
{
	int passed = 0;

	all_vectors = vs;
	for (size_t i = 0; i < vs->n; i++) {
		const vector_t *v = &vs->v[i];
		const char *kind = get(v, "kind");
		int before = failures, ok;

		valused = 0;
		if (kind == NULL) {
			fail(v, "missing 'kind:'");
			continue;
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(get(&vs->v[k], "vector"), get(v, "vector")) == 0)
				fail(v, "duplicate vector name");
		if (strcmp(kind, "frame") == 0)
			ok = do_frame(v);
		else if (strcmp(kind, "blob") == 0)
			ok = do_blob(v);
		else if (strcmp(kind, "secure") == 0)
			ok = do_secure(v);
		else if (strcmp(kind, "sealed") == 0)
			ok = do_sealed(v);
		else if (strcmp(kind, "challenge") == 0)
			ok = do_challenge(v);
		else {
			fail(v, "unknown kind '%s'", kind);
			ok = 0;
		}
		if (ok && failures == before) {
			passed++;
			printf("ok   %s\n", get(v, "vector"));
		} else {
			if (failures == before)
				failures++;
			printf("FAIL %s\n", get(v, "vector"));
		}
	}
	return passed;
}

/* The doc must show every vector of the file, identically, and no other. */
static int compare_doc(const vecset_t *file, const vecset_t *doc)
{
	int passed = 0;

	for (size_t i = 0; i < file->n; i++) {
		const vector_t *a = &file->v[i], *b = NULL;
		const char *name = get(a, "vector");
		int before = failures;

		for (size_t k = 0; k < doc->n; k++)
			if (strcmp(get(&doc->v[k], "vector"), name) == 0)
				b = &doc->v[k];
		if (b == NULL) {
			fail(a, "not shown in the document");
			continue;
		}
		if (a->n != b->n)
			fail(a, "document shows %zu lines, file has %zu", b->n, a->n);
		for (size_t k = 0; k < a->n && k < b->n; k++)
			if (strcmp(a->e[k].key, b->e[k].key) != 0 ||
			    strcmp(a->e[k].val, b->e[k].val) != 0)
				fail(a, "document differs at '%s: %s' (doc: '%s: %s')",
				     a->e[k].key, a->e[k].val, b->e[k].key,
				     b->e[k].val);
		if (failures == before)
			passed++;
	}
	for (size_t k = 0; k < doc->n; k++) {
		const char *name = get(&doc->v[k], "vector");
		int found = 0;

		for (size_t i = 0; i < file->n; i++)
			found |= strcmp(get(&file->v[i], "vector"), name) == 0;
		if (!found)
			fail(&doc->v[k], "shown in the document but not in the file");
	}
	return passed;
}

int main(int argc, char **argv)
{
	static vecset_t file, doc;
	char *text = NULL, *dtext = NULL;
	int passed = 0, rc = 2;

	if (argc != 2 && !(argc == 4 && strcmp(argv[2], "--doc") == 0)) {
		fprintf(stderr, "usage: %s VECTORS [--doc MARKDOWN]\n", argv[0]);
		return 2;
	}
	text = read_file(argv[1]);
	if (text == NULL || parse(text, &file, 0) != 0 || file.n == 0) {
		fprintf(stderr, "%s: cannot parse\n", argv[1]);
		goto out;
	}
	if (argc == 2) {
		passed = run_vectors(&file);
	} else {
		dtext = read_file(argv[3]);
		if (dtext == NULL || parse(dtext, &doc, 1) != 0) {
			fprintf(stderr, "%s: cannot parse\n", argv[3]);
			goto out;
		}
		passed = compare_doc(&file, &doc);
	}
	printf("%d passed, %d failed\n", passed, failures);
	rc = failures == 0 ? 0 : 1;
out:
	free_set(&file);
	free_set(&doc);
	free(text);
	free(dtext);
	return rc;
}
