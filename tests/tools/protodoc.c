/*
 * protodoc: the generated parts of docs/protocol.md.
 *
 * The message catalogue, the identity-blob layout, the error/status code
 * tables and the protocol constants are printed from the same X-macro
 * tables the codec is built from (kp_msg_table(), kp_blob_fields(),
 * KP_ERRORS, KP_STATUSES), so the document cannot drift from the code.
 *
 *   protodoc                 print every section, with its markers
 *   protodoc --check FILE    exit 1 if a section in FILE differs
 *   protodoc --update FILE   rewrite the sections in FILE in place
 *
 * In FILE each section sits between "<!-- protodoc:NAME:begin -->" and
 * "<!-- protodoc:NAME:end -->" lines (the catalogue's markers are plain
 * "<!-- protodoc:begin -->" / "<!-- protodoc:end -->").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/error.h"
#include "protocol/frame.h"
#include "protocol/msg.h"
#include "protocol/seal.h"

typedef struct {
	const char *begin, *end;
	void (*gen)(FILE *out);
} section_t;

static const char *kind_name(uint8_t kind)
{
	switch (kind) {
	case KP_KIND_U8:
		return "u8";
	case KP_KIND_U16:
		return "u16";
	case KP_KIND_U32:
		return "u32";
	case KP_KIND_BYTES:
		return "bytes";
	case KP_KIND_STR:
		return "str";
	default:
		return "?";
	}
}

static void num(FILE *out, uint32_t v)
{
	if (v < 1024)
		fprintf(out, "%u", v);
	else
		fprintf(out, "0x%X", v);
}

static void bounds(FILE *out, const kp_field_t *f)
{
	int is_len = f->kind == KP_KIND_BYTES || f->kind == KP_KIND_STR;

	fputs(is_len ? "length " : "", out);
	num(out, f->min);
	if (f->max != f->min) {
		fputs("..", out);
		num(out, f->max);
	}
}

static void field_table(FILE *out, const kp_field_t *f, size_t n)
{
	if (n == 0) {
		fputs("empty payload (no fields)\n", out);
		return;
	}
	fputs("| tag | field | kind | bounds | presence |\n", out);
	fputs("|-----|-------|------|--------|----------|\n", out);
	for (size_t i = 0; i < n; i++) {
		fprintf(out, "| 0x%02X | `%s` | %s | ", f[i].tag, f[i].name,
			kind_name(f[i].kind));
		bounds(out, &f[i]);
		fprintf(out, " | %s |\n", f[i].required ? "REQ" : "OPT");
	}
}

static void gen_catalogue(FILE *out)
{
	size_t n, nb;
	const kp_msg_desc_t *t = kp_msg_table(&n);
	const kp_field_t *b = kp_blob_fields(&nb);

	fputs("| type | message | summary |\n|------|---------|---------|\n", out);
	for (size_t i = 0; i < n; i++)
		fprintf(out, "| 0x%02X | %s | %s |\n", t[i].type, t[i].name,
			t[i].summary);
	for (size_t i = 0; i < n; i++) {
		fprintf(out, "\n#### 0x%02X %s — %s\n\n", t[i].type, t[i].name,
			t[i].summary);
		if (t[i].type == KP_MSG_ERROR) {
			fputs("Request: none (ERROR is only sent by the agent, "
			      "as the answer to any request).\n\n",
			      out);
		} else {
			fputs("Request (host → agent, flags 0):", out);
			fputs(t[i].nreq > 0 ? "\n\n" : " ", out);
			field_table(out, t[i].req, t[i].nreq);
			fputc('\n', out);
		}
		fputs("Response (agent → host, flags RESPONSE):", out);
		fputs(t[i].nrsp > 0 ? "\n\n" : " ", out);
		field_table(out, t[i].rsp, t[i].nrsp);
	}
	fprintf(out, "\n#### Identity blob (magic \"%s\", version %u)\n\n",
		KP_BLOB_MAGIC, KP_BLOB_VERSION);
	field_table(out, b, nb);
}

static void gen_errors(FILE *out)
{
	fputs("Library errors (`kp_err_t`, reported by the codec, never sent):"
	      "\n\n| value | name | meaning |\n|-------|------|---------|\n",
	      out);
#define KP_X(name, val, str) fprintf(out, "| %d | `%s` | %s |\n", val, #name, str);
	KP_ERRORS(KP_X)
#undef KP_X
	fputs("\nWire status codes (`kp_status_t`, field `status` of ERROR):"
	      "\n\n| value | name | meaning |\n|-------|------|---------|\n",
	      out);
#define KP_X(name, val, str) fprintf(out, "| %d | `%s` | %s |\n", val, #name, str);
	KP_STATUSES(KP_X)
#undef KP_X
}

static void row(FILE *out, const char *name, unsigned v, const char *what)
{
	if (v < 10)
		fprintf(out, "| `%s` | %u | %s |\n", name, v, what);
	else
		fprintf(out, "| `%s` | 0x%X (%u) | %s |\n", name, v, v, what);
}

#define ROW(name, comment) row(out, #name, (unsigned)(name), comment)

static void gen_constants(FILE *out)
{
	fputs("| constant | value | meaning |\n|----------|-------|---------|\n",
	      out);
	ROW(KP_PROTO_VERSION, "framing version, header byte 0");
	ROW(KP_HDR_LEN, "header length");
	ROW(KP_CRC_LEN, "CRC-32C trailer length");
	ROW(KP_MAX_PAYLOAD, "largest payload");
	ROW(KP_MAX_RAW, "largest frame before COBS: header + payload + CRC");
	ROW(KP_MAX_COBS, "largest COBS chunk between delimiters");
	ROW(KP_MAX_WIRE, "largest frame on the wire, delimiters included");
	ROW(KP_PUT_MAX_DATA, "largest PUT_OBJECT / READBACK data chunk");
	ROW(KP_FLAG_RESPONSE, "header flag: sent by the agent");
	ROW(KP_FLAG_SEALED, "header flag: payload sealed (section 12)");
	ROW(KP_MSG_VERSION, "protocol version (HELLO proto_max / proto)");
	ROW(KP_OBJ_IDENTITY, "object: the identity blob's TLVs after pubkey "
			     "(serial, cert, chain, meta)");
	ROW(KP_BLOB_PREFIX_LEN, "bytes the agent writes before IDENTITY: "
				"magic, version, pubkey TLV");
	ROW(KP_OBJ_HOSTKEY, "object: host-generated P-256 scalar, 32 bytes");
	ROW(KP_STATE_BLANK, "state: no key");
	ROW(KP_STATE_KEYED, "state: key in OTP, no committed identity");
	ROW(KP_STATE_COMMITTED, "state: identity blob stored, digest in OTP");
	ROW(KP_STATE_LOCKED, "state: committed and locked");
	ROW(KP_LOCK_OTP, "lock bit: identity OTP blocks locked");
	ROW(KP_LOCK_FLASH, "lock bit: identity flash write-protected");
	ROW(KP_LOCK_DEBUG, "lock bit: debug disabled / readout protection");
	ROW(KP_LOCK_LEVEL_IDENTITY, "LOCK level: OTP + flash");
	ROW(KP_LOCK_LEVEL_FULL, "LOCK level: OTP + flash + debug");
	ROW(KP_CAP_TRNG, "capability: hardware RNG");
	ROW(KP_CAP_DEVKEY, "capability: GENKEY (device-generated key)");
	ROW(KP_CAP_HOSTKEY, "capability: PUT_OBJECT HOSTKEY");
	ROW(KP_CAP_SECBOOT, "capability: secure-boot key-hash slot");
	ROW(KP_CAP_SECURE, "capability: SECURE_OPEN; secrets only sealed");
	ROW(KP_SEAL_CTR_LEN, "sealed payload: counter length");
	ROW(KP_SEAL_TAG_LEN, "sealed payload: AES-GCM tag length");
	ROW(KP_SEAL_MAX_PLAIN, "largest plain payload that can be sealed");
	ROW(KP_SEAL_DIR_H2A, "nonce direction byte: host to agent ('H')");
	ROW(KP_SEAL_DIR_A2H, "nonce direction byte: agent to host ('A')");
	ROW(KP_GENKEY_NEW, "GENKEY flag: use a fresh key slot");
	fprintf(out, "| `KP_BLOB_MAGIC` | \"%s\" | identity blob magic |\n",
		KP_BLOB_MAGIC);
	fprintf(out, "| `KP_CHALLENGE_DOMAIN` | \"%s\" | challenge domain "
		"separator, %u bytes |\n", KP_CHALLENGE_DOMAIN,
		KP_CHALLENGE_DOMAIN_LEN);
	fprintf(out, "| `KP_SECURE_LABEL` | \"%s\" | transcript label, %u "
		"bytes |\n", KP_SECURE_LABEL, KP_SECURE_LABEL_LEN);
	fprintf(out, "| `KP_SECURE_HKDF_INFO` | \"%s\" | HKDF info, %u bytes "
		"|\n", KP_SECURE_HKDF_INFO, KP_SECURE_HKDF_INFO_LEN);
	fprintf(out, "| `KP_SECURE_SIG_DOMAIN` | \"%s\" | identity signature "
		"domain separator, %u bytes |\n", KP_SECURE_SIG_DOMAIN,
		KP_SECURE_SIG_DOMAIN_LEN);
}

static const section_t sections[] = {
	{"<!-- protodoc:constants:begin -->", "<!-- protodoc:constants:end -->",
	 gen_constants},
	{"<!-- protodoc:begin -->", "<!-- protodoc:end -->", gen_catalogue},
	{"<!-- protodoc:errors:begin -->", "<!-- protodoc:errors:end -->",
	 gen_errors},
};
#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

/* Generated text of one section (malloc'd, caller frees). */
static char *render(const section_t *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	s->gen(f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, r;

	if (f == NULL)
		return NULL;
	do {
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap + 65536);

			if (nb == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap += 65536;
		}
		r = fread(buf + len, 1, cap - len - 1, f);
		len += r;
	} while (r > 0);
	if (buf != NULL)
		buf[len] = '\0';
	fclose(f);
	return buf;
}

/* Locate the body of a section: the text after the begin marker's line
 * and before the end marker's line. */
static int locate(const char *doc, const section_t *s, const char **body,
		  size_t *len)
{
	const char *b = strstr(doc, s->begin), *e;

	if (b == NULL)
		return -1;
	b = strchr(b, '\n');
	if (b == NULL)
		return -1;
	b++;
	e = strstr(b, s->end);
	if (e == NULL)
		return -1;
	*body = b;
	*len = (size_t)(e - b);
	return 0;
}

/* The body is the generated text framed by one blank line on each side. */
static int check(const char *path)
{
	char *doc = slurp(path);
	int bad = 0;

	if (doc == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return 2;
	}
	for (size_t i = 0; i < NSECTIONS; i++) {
		char *gen = render(&sections[i]);
		const char *body;
		size_t blen, glen;

		if (gen == NULL) {
			bad++;
			continue;
		}
		glen = strlen(gen);
		if (locate(doc, &sections[i], &body, &blen) != 0) {
			fprintf(stderr, "%s: markers %s ... %s not found\n", path,
				sections[i].begin, sections[i].end);
			bad++;
		} else if (blen != glen + 2 || body[0] != '\n' ||
			   memcmp(body + 1, gen, glen) != 0 || body[glen + 1] != '\n') {
			size_t k = 0, line = 1;

			/* report the first differing generated line */
			while (k < glen && k + 1 < blen && body[k + 1] == gen[k]) {
				if (gen[k] == '\n')
					line++;
				k++;
			}
			fprintf(stderr,
				"%s: section %s is stale at generated line %zu; "
				"run: protodoc --update %s\n",
				path, sections[i].begin, line, path);
			bad++;
		}
		free(gen);
	}
	free(doc);
	printf("%zu passed, %d failed\n", NSECTIONS - (size_t)bad, bad);
	return bad == 0 ? 0 : 1;
}

static int update(const char *path)
{
	char *doc = slurp(path);
	FILE *f;
	const char *p;
	int r = 1;

	if (doc == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return 2;
	}
	f = fopen(path, "wb");
	if (f == NULL)
		goto out;
	p = doc;
	for (;;) {
		const section_t *next = NULL;
		const char *at = NULL, *body;
		size_t blen;

		for (size_t i = 0; i < NSECTIONS; i++) {
			const char *b = strstr(p, sections[i].begin);

			if (b != NULL && (at == NULL || b < at)) {
				at = b;
				next = &sections[i];
			}
		}
		if (next == NULL || locate(at, next, &body, &blen) != 0) {
			fputs(p, f);
			break;
		}
		{
			char *gen = render(next);

			if (gen == NULL)
				break;
			fwrite(p, 1, (size_t)(body - p), f);
			fprintf(f, "\n%s\n", gen);
			free(gen);
		}
		p = body + blen;
	}
	r = fclose(f) == 0 ? 0 : 1;
out:
	free(doc);
	return r;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--check") == 0)
		return check(argv[2]);
	if (argc == 3 && strcmp(argv[1], "--update") == 0)
		return update(argv[2]);
	if (argc != 1) {
		fprintf(stderr, "usage: %s [--check FILE | --update FILE]\n",
			argv[0]);
		return 2;
	}
	for (size_t i = 0; i < NSECTIONS; i++) {
		char *gen = render(&sections[i]);

		if (gen == NULL)
			return 1;
		printf("%s\n\n%s\n%s\n\n", sections[i].begin, gen, sections[i].end);
		free(gen);
	}
	return 0;
}
