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

#include <openssl/sha.h>

#include "protocol/frame.h"
#include "protocol/msg.h"

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

static int run_vectors(const vecset_t *vs)
{
	int passed = 0;

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
