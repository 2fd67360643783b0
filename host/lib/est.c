/*
 * kiln station library: field enrollment over EST (RFC 7030) — the HTTP
 * subset, the PKCS#10 / PKCS#7 encodings, the enrollment policy and the
 * TLS 1.3 service. The subset is described in est.h and docs/bootstrap.md.
 */
#include "host/lib/est.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "host/lib/log.h"

/* ---- the HTTP subset ------------------------------------------------ */

static int refuse(ks_est_req_t *req, int status, const char *reason)
{
	req->status = status;
	snprintf(req->reason, sizeof(req->reason), "%s", reason);
	return -1;
}

/* RFC 9110 token characters. */
static int tchar(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Find CRLF in [p, end): offset of the CR, or -1 (also for a bare CR/LF
 * or NUL, reported through *bad). */
static long line_end(const uint8_t *p, const uint8_t *end, int *bad)
{
	const uint8_t *q;

	*bad = 0;
	for (q = p; q < end; q++) {
		if (*q == '\0' || *q == '\n') {
			*bad = 1;
			return -1;
		}
		if (*q == '\r') {
			if (end - q < 2)
				return -1; /* need the LF */
			if (q[1] != '\n') {
				*bad = 1;
				return -1;
			}
			return (long)(q - p);
		}
	}
	return -1;
}

static int parse_request_line(const uint8_t *p, size_t n, ks_est_req_t *req)
{
	const uint8_t *end = p + n, *sp1, *sp2;
	size_t mlen, plen, vlen;
	int get, post;

	sp1 = memchr(p, ' ', n);
	if (sp1 == NULL)
		return refuse(req, 400, "malformed request line");
	sp2 = memchr(sp1 + 1, ' ', (size_t)(end - (sp1 + 1)));
	if (sp2 == NULL)
		return refuse(req, 400, "malformed request line");
	mlen = (size_t)(sp1 - p);
	plen = (size_t)(sp2 - (sp1 + 1));
	vlen = (size_t)(end - (sp2 + 1));
	if (mlen == 0 || plen == 0)
		return refuse(req, 400, "malformed request line");
	for (size_t i = 0; i < mlen; i++)
		if (!tchar(p[i]))
			return refuse(req, 400, "malformed method");
	if (!(vlen == 8 && (memcmp(sp2 + 1, "HTTP/1.1", 8) == 0 ||
			    memcmp(sp2 + 1, "HTTP/1.0", 8) == 0)))
		return refuse(req, 505, "only HTTP/1.1 and HTTP/1.0 are served");
	get = mlen == 3 && memcmp(p, "GET", 3) == 0;
	post = mlen == 4 && memcmp(p, "POST", 4) == 0;
	if (plen == strlen(KS_EST_PATH_CACERTS) &&
	    memcmp(sp1 + 1, KS_EST_PATH_CACERTS, plen) == 0) {
		if (!get)
			return refuse(req, 405, "cacerts takes GET");
		req->op = KS_EST_OP_CACERTS;
	} else if (plen == strlen(KS_EST_PATH_SIMPLEENROLL) &&
		   memcmp(sp1 + 1, KS_EST_PATH_SIMPLEENROLL, plen) == 0) {
		if (!post)
			return refuse(req, 405, "simpleenroll takes POST");
		req->op = KS_EST_OP_SIMPLEENROLL;
	} else {
		return refuse(req, 404,
			      "no such EST operation (served: cacerts, "
			      "simpleenroll)");
	}
	return 0;
}

/* Header value without surrounding blanks; 1 if it equals @want (case
 * insensitive), ignoring parameters after ';' when @params is set. */
static int value_is(const uint8_t *v, size_t n, const char *want, int params)
{
	size_t wl = strlen(want);

	while (n > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (params) {
		const uint8_t *semi = memchr(v, ';', n);

		if (semi != NULL)
			n = (size_t)(semi - v);
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
	}
	return n == wl && strncasecmp((const char *)v, want, wl) == 0;
}

static int parse_header(const uint8_t *p, size_t n, ks_est_req_t *req)
{
	const uint8_t *colon = memchr(p, ':', n), *v;
	size_t nlen, vlen;

	if (n > 0 && (p[0] == ' ' || p[0] == '\t'))
		return refuse(req, 400, "obsolete header line folding");
	if (colon == NULL || colon == p)
		return refuse(req, 400, "malformed header line");
	nlen = (size_t)(colon - p);
	for (size_t i = 0; i < nlen; i++)
		if (!tchar(p[i]))
			return refuse(req, 400, "malformed header name");
	v = colon + 1;
	vlen = n - nlen - 1;
	for (size_t i = 0; i < vlen; i++)
		if (v[i] < 0x20 && v[i] != '\t')
			return refuse(req, 400, "control character in header");
	if (nlen == 14 && strncasecmp((const char *)p, "Content-Length", 14) ==
				  0) {
		size_t val = 0, digits = 0;

		if (req->has_content_length)
			return refuse(req, 400, "more than one Content-Length");
		while (vlen > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		for (size_t i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9')
				return refuse(req, 400, "bad Content-Length");
			if (++digits > 9)
				return refuse(req, 413, "request body too large");
			val = val * 10 + (size_t)(v[i] - '0');
		}
		if (digits == 0)
			return refuse(req, 400, "bad Content-Length");
		if (val > KS_EST_BODY_MAX)
			return refuse(req, 413, "request body too large");
		req->content_length = val;
		req->has_content_length = 1;
	} else if (nlen == 17 &&
		   strncasecmp((const char *)p, "Transfer-Encoding", 17) == 0) {
		return refuse(req, 501,
			      "Transfer-Encoding is not served (use "
			      "Content-Length)");
	} else if (nlen == 12 &&
		   strncasecmp((const char *)p, "Content-Type", 12) == 0) {
		req->content_type_pkcs10 =
			value_is(v, vlen, "application/pkcs10", 1);
	}
	return 0;
}

int ks_est_parse_head(const uint8_t *buf, size_t len, ks_est_req_t *req)
{
	const uint8_t *p = buf, *end;
	unsigned lines = 0;
	int bad;
	long n;

	if (req == NULL)
		return -1;
	memset(req, 0, sizeof(*req));
	if (buf == NULL)
		return refuse(req, 400, "no request");
	if (len > KS_EST_HEAD_MAX)
		len = KS_EST_HEAD_MAX;
	end = buf + len;
	/* request line */
	n = line_end(p, end, &bad);
	if (bad)
		return refuse(req, 400, "bare CR, LF or NUL in request line");
	if (n < 0) {
		if ((size_t)(end - p) > KS_EST_LINE_MAX)
			return refuse(req, 414, "request line too long");
		return len < KS_EST_HEAD_MAX
			       ? 0
			       : refuse(req, 431, "request head too large");
	}
	if ((size_t)n > KS_EST_LINE_MAX)
		return refuse(req, 414, "request line too long");
	if (parse_request_line(p, (size_t)n, req) != 0)
		return -1;
	p += n + 2;
	/* headers up to the blank line */
	for (;;) {
		n = line_end(p, end, &bad);
		if (bad)
			return refuse(req, 400,
				      "bare CR, LF or NUL in a header line");
		if (n < 0)
			return len < KS_EST_HEAD_MAX
				       ? 0
				       : refuse(req, 431,
						"request head too large");
		if (n == 0) {
			p += 2;
			break;
		}
		if (++lines > KS_EST_HEADERS_MAX)
			return refuse(req, 431, "too many header lines");
		if (parse_header(p, (size_t)n, req) != 0)
			return -1;
		p += n + 2;
	}
	req->head_len = (size_t)(p - buf);
	if (req->op == KS_EST_OP_SIMPLEENROLL) {
		if (!req->has_content_length)
			return refuse(req, 411, "Content-Length required");
		if (req->content_length == 0)
			return refuse(req, 400, "empty request body");
		if (!req->content_type_pkcs10)
			return refuse(req, 415,
				      "Content-Type must be application/pkcs10");
	} else if (req->content_length != 0) {
		return refuse(req, 400, "cacerts takes no body");
	}
	return 1;
}

/* ---- PKCS#10 in, PKCS#7 out ----------------------------------------- */

static void set_why(char *why, size_t whylen, const char *msg)
{
	if (why != NULL && whylen > 0)
		snprintf(why, whylen, "%s", msg);
}

/* Decode base64 allowing CR/LF/space between groups; *out malloc'ed. */
static ks_err_t b64_decode(const uint8_t *in, size_t len, uint8_t **out,
			   size_t *out_len)
{
	EVP_ENCODE_CTX *ctx = NULL;
	uint8_t *buf = NULL, *clean = NULL;
	size_t cl = 0;
	int n1 = 0, n2 = 0;
	ks_err_t r = KS_ERR_PROTO;

	if (len == 0 || len > KS_EST_BODY_MAX)
		return KS_ERR_PROTO;
	clean = malloc(len);
	buf = malloc(len);
	ctx = EVP_ENCODE_CTX_new();
	if (clean == NULL || buf == NULL || ctx == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < len; i++) {
		uint8_t c = in[i];

		if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
			continue;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '+' || c == '/' ||
		      c == '='))
			goto out;
		clean[cl++] = c;
	}
	if (cl == 0 || cl % 4 != 0)
		goto out;
	EVP_DecodeInit(ctx);
	if (EVP_DecodeUpdate(ctx, buf, &n1, clean, (int)cl) < 0 ||
	    EVP_DecodeFinal(ctx, buf + n1, &n2) != 1)
		goto out;
	*out = buf;
	*out_len = (size_t)n1 + (size_t)n2;
	buf = NULL;
	r = KS_OK;
out:
	EVP_ENCODE_CTX_free(ctx);
	free(clean);
	free(buf);
	return r;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The UID of a SAN URI "urn:kiln:uid:<lowercase hex>"; 0 or -1. */
static int uid_from_uri(const char *s, size_t n, uint8_t *uid,
			size_t *uid_len)
{
	size_t pl = strlen(KS_PROFILE_UID_URN_PREFIX), hl;

	if (n <= pl || memcmp(s, KS_PROFILE_UID_URN_PREFIX, pl) != 0)
		return -1;
	hl = n - pl;
	if (hl % 2 != 0 || hl / 2 < KS_ISSUE_UID_MIN ||
	    hl / 2 > KS_ISSUE_UID_MAX)
		return -1;
	for (size_t i = 0; i < hl / 2; i++) {
		int hi = hexval(s[pl + 2 * i]), lo = hexval(s[pl + 2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		uid[i] = (uint8_t)(hi << 4 | lo);
	}
	*uid_len = hl / 2;
	return 0;
}

/* Exactly one kiln UID URI in @gens; 0 with the UID, -1 otherwise. */
static int uid_from_names(const GENERAL_NAMES *gens, uint8_t *uid,
			  size_t *uid_len)
{
	int found = 0;

	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const ASN1_IA5STRING *u;

		if (g->type != GEN_URI)
			continue;
		u = g->d.uniformResourceIdentifier;
		if (u->length <= (int)strlen(KS_PROFILE_UID_URN_PREFIX) ||
		    memcmp(u->data, KS_PROFILE_UID_URN_PREFIX,
			   strlen(KS_PROFILE_UID_URN_PREFIX)) != 0)
			continue;
		if (found ||
		    uid_from_uri((const char *)u->data, (size_t)u->length, uid,
				 uid_len) != 0)
			return -1;
		found = 1;
	}
	return found ? 0 : -1;
}

ks_err_t ks_est_csr_parse(const uint8_t *body, size_t len, ks_est_csr_t *out,
			  char *why, size_t whylen)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	X509_REQ *csr = NULL;
	EVP_PKEY *pk = NULL;
	ks_issue_req_t *ir = NULL;
	uint8_t *der = NULL;
	const unsigned char *p;
	char group[32];
	size_t der_len = 0;
	ks_err_t r;

	if (body == NULL || out == NULL)
		return KS_ERR_ARG;
	memset(out, 0, sizeof(*out));
	r = b64_decode(body, len, &der, &der_len);
	if (r != KS_OK) {
		set_why(why, whylen, "request body is not base64");
		goto out;
	}
	r = KS_ERR_PROTO;
	p = der;
	csr = d2i_X509_REQ(NULL, &p, (long)der_len);
	if (csr == NULL || p != der + der_len) {
		set_why(why, whylen,
			"request body is not one DER PKCS#10 request");
		goto out;
	}
	r = KS_ERR_POLICY;
	pk = X509_REQ_get_pubkey(csr);
	if (pk == NULL || !EVP_PKEY_is_a(pk, "EC") ||
	    EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof(group),
					   NULL) != 1 ||
	    strcmp(group, "prime256v1") != 0) {
		set_why(why, whylen, "the CSR key is not EC P-256");
		goto out;
	}
	if (X509_REQ_verify(csr, pk) != 1) {
		set_why(why, whylen, "the CSR self-signature does not verify");
		goto out;
	}
	exts = X509_REQ_get_extensions(csr);
	if (exts != NULL) {
		int idx = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);

		if (idx >= 0)
			gens = X509V3_EXT_d2i(X509v3_get_ext(exts, idx));
	}
	if (gens == NULL ||
	    uid_from_names(gens, out->uid, &out->uid_len) != 0) {
		set_why(why, whylen,
			"the CSR must carry exactly one SAN URI "
			"urn:kiln:uid:<hex>");
		goto out;
	}
	ir = calloc(1, sizeof(*ir));
	if (ir == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	if (ks_issue_req_set_pubkey(ir, pk) != KS_OK ||
	    ks_issue_req_spki_sha256(ir, out->spki_sha256) != KS_OK ||
	    ir->spki_len > sizeof(out->spki)) {
		set_why(why, whylen, "the CSR key cannot be encoded");
		goto out;
	}
	memcpy(out->spki, ir->spki, ir->spki_len);
	out->spki_len = ir->spki_len;
	r = KS_OK;
out:
	free(ir);
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	EVP_PKEY_free(pk);
	X509_REQ_free(csr);
	free(der);
	return r;
}

ks_err_t ks_est_certs_only(const uint8_t *const *ders, const size_t *lens,
			   size_t n, char **out, size_t *out_len)
{
	PKCS7 *p7 = NULL;
	unsigned char *der = NULL, *q;
	char *b64 = NULL, *o;
	size_t blen, olen;
	int dlen;
	ks_err_t r = KS_ERR_CRYPTO;

	if (ders == NULL || lens == NULL || n == 0 || out == NULL ||
	    out_len == NULL)
		return KS_ERR_ARG;
	p7 = PKCS7_new();
	if (p7 == NULL || PKCS7_set_type(p7, NID_pkcs7_signed) != 1 ||
	    PKCS7_content_new(p7, NID_pkcs7_data) != 1)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = ders[i];
		X509 *x = d2i_X509(NULL, &p, (long)lens[i]);
		int ok = x != NULL && PKCS7_add_certificate(p7, x) == 1;

		X509_free(x);
		if (!ok)
			goto out;
	}
	dlen = i2d_PKCS7(p7, NULL);
	if (dlen <= 0)
		goto out;
	der = malloc((size_t)dlen);
	if (der == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	q = der;
	if (i2d_PKCS7(p7, &q) != dlen)
		goto out;
	blen = 4 * (((size_t)dlen + 2) / 3);
	b64 = malloc(blen + 1);
	olen = blen + 2 * (blen / 64 + 1) + 1;
	*out = malloc(olen);
	if (b64 == NULL || *out == NULL) {
		free(*out);
		*out = NULL;
		r = KS_ERR_NOMEM;
		goto out;
	}
	EVP_EncodeBlock((unsigned char *)b64, der, dlen);
	o = *out;
	for (size_t i = 0; i < blen; i += 64) {
		size_t chunk = blen - i < 64 ? blen - i : 64;

		memcpy(o, b64 + i, chunk);
		o += chunk;
		*o++ = '\r';
		*o++ = '\n';
	}
	*o = '\0';
	*out_len = (size_t)(o - *out);
	r = KS_OK;
out:
	free(b64);
	free(der);
	PKCS7_free(p7);
	return r;
}

/* ---- the service ----------------------------------------------------- */

struct ks_est_server {
	ks_est_config_t cfg; /* strings below are copies */
	char profile[KS_PROFILE_NAME_MAX];
	SSL_CTX *ctx;
	STACK_OF(X509) *chain; /* the kiln CA chain (cacerts) */
	int lfd;
	int stop_pipe[2];
	uint16_t port;
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned active;
	ks_est_stats_t stats;
};

typedef struct {
	ks_est_server_t *srv;
	int fd;
	char peer[80];
} conn_t;

static void stat_inc(ks_est_server_t *srv, uint64_t *field)
{
	pthread_mutex_lock(&srv->mu);
	(*field)++;
	pthread_mutex_unlock(&srv->mu);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Write all of buf; 0 or -1. */
static int ssl_write_all(SSL *ssl, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t w = 0;

		if (SSL_write_ex(ssl, (const char *)buf + done, len - done,
				 &w) != 1)
			return -1;
		done += w;
	}
	return 0;
}

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Internal Server Error";
	}
}

static void send_response(SSL *ssl, int status, const char *ctype,
			  const char *extra, const char *body, size_t len)
{
	char head[512];
	int n;

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sContent-Length: "
		     "%zu\r\nConnection: close\r\n\r\n",
		     status, status_text(status), ctype,
		     extra != NULL ? extra : "", len);
	if (n <= 0 || (size_t)n >= sizeof(head))
		return;
	if (ssl_write_all(ssl, head, (size_t)n) == 0 && len > 0)
		(void)ssl_write_all(ssl, body, len);
}

static void send_error(SSL *ssl, int status, const char *reason)
{
	char body[KS_EST_REASON_MAX + 8];
	int n = snprintf(body, sizeof(body), "%s\r\n", reason);

	send_response(ssl, status, "text/plain; charset=utf-8", NULL, body,
		      n > 0 ? (size_t)n : 0);
}

static void send_certs(SSL *ssl, const uint8_t *const *ders,
		       const size_t *lens, size_t n)
{
	char *b64 = NULL;
	size_t len = 0;

	if (ks_est_certs_only(ders, lens, n, &b64, &len) != KS_OK) {
		send_error(ssl, 500, "cannot encode the certificates");
		return;
	}
	send_response(ssl, 200,
		      "application/pkcs7-mime; smime-type=certs-only",
		      "Content-Transfer-Encoding: base64\r\n", b64, len);
	free(b64);
}

static void serve_cacerts(ks_est_server_t *srv, SSL *ssl)
{
	const uint8_t *ders[8];
	size_t lens[8], n = 0;
	unsigned char *bufs[8] = {0};

	for (int i = 0; i < sk_X509_num(srv->chain) && n < 8; i++) {
		int l = i2d_X509(sk_X509_value(srv->chain, i), &bufs[n]);

		if (l <= 0)
			break;
		ders[n] = bufs[n];
		lens[n] = (size_t)l;
		n++;
	}
	if (n == 0)
		send_error(ssl, 500, "no CA certificates");
	else
		send_certs(ssl, ders, lens, n);
	for (size_t i = 0; i < 8; i++)
		OPENSSL_free(bufs[i]);
}

/* The configured profile named @name, or NULL. */
static const ks_profile_t *find_profile(const ks_est_server_t *srv,
					const char *name)
{
	for (size_t i = 0; i < srv->cfg.nprofiles; i++)
		if (strcmp(srv->cfg.profiles[i]->name, name) == 0)
			return srv->cfg.profiles[i];
	return NULL;
}

/* EKU of the client certificate: the kiln claim purpose or clientAuth. */
static int client_eku_ok(X509 *x)
{
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL,
						   NULL);
	ASN1_OBJECT *claim = OBJ_txt2obj(KS_PROFILE_CLAIM_OID, 1);
	int ok = 0;

	for (int i = 0; eku != NULL && claim != NULL &&
			i < sk_ASN1_OBJECT_num(eku);
	     i++) {
		const ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, i);

		if (OBJ_cmp(o, claim) == 0 ||
		    OBJ_obj2nid(o) == NID_client_auth)
			ok = 1;
	}
	ASN1_OBJECT_free(claim);
	EXTENDED_KEY_USAGE_free(eku);
	return ok;
}

/* End an enrollment session that cannot complete. */
static void end_session(ks_est_server_t *srv, int64_t sid,
			ks_reg_state_t outcome, const char *why)
{
	int r = ks_reg_fail(srv->cfg.reg, sid, outcome, why, NULL);

	if (r != KS_OK)
		ks_log_error("cannot end enrollment session %lld: %s",
			     (long long)sid, ks_strerror(r));
}

/* A refusal: log, audit (ENROLL_REFUSED), answer. */
static void refuse_enroll(conn_t *c, SSL *ssl, int status,
			  const char *cred_serial, const uint8_t *uid,
			  size_t uid_len, const char *reason)
{
	ks_est_server_t *srv = c->srv;

	ks_log_warn("enrollment from %s refused (credential %s): %s", c->peer,
		    cred_serial != NULL ? cred_serial : "-", reason);
	if (ks_reg_enroll_refused(srv->cfg.reg, cred_serial, uid, uid_len,
				  c->peer, reason, NULL) != KS_OK)
		ks_log_error("cannot record the refusal of %s", c->peer);
	stat_inc(srv, &srv->stats.refused);
	send_error(ssl, status, reason);
}

static void serve_enroll(conn_t *c, SSL *ssl, const uint8_t *body,
			 size_t len)
{
	ks_est_server_t *srv = c->srv;
	X509 *peer = SSL_get0_peer_certificate(ssl);
	ks_reg_credential_t cred;
	ks_reg_session_t sess;
	ks_reg_enroll_req_t er;
	ks_est_csr_t csr;
	ks_issue_req_t *ir = NULL;
	ks_issued_t *iss = NULL;
	const ks_profile_t *cp;
	unsigned char *pder = NULL;
	char why[KS_EST_REASON_MAX];
	int plen, r, status;

	memset(&cred, 0, sizeof(cred));
	plen = peer != NULL ? i2d_X509(peer, &pder) : -1;
	if (plen <= 0) {
		refuse_enroll(c, ssl, 403, NULL, NULL, 0,
			      "no client certificate");
		goto out;
	}
	r = ks_reg_enroll_lookup(srv->cfg.reg, pder, (size_t)plen, &cred);
	if (r != KS_OK) {
		refuse_enroll(c, ssl, r == KS_ERR_NOTFOUND ? 403 : 500, NULL,
			      NULL, 0,
			      r == KS_ERR_NOTFOUND
				      ? "the client certificate is not in the "
					"registry"
				      : "registry error");
		goto out;
	}
	cp = find_profile(srv, cred.profile);
	if (cp == NULL || cp->claim_uses == 0) {
		snprintf(why, sizeof(why),
			 "credential profile '%s' does not authorise "
			 "enrollment",
			 cred.profile);
		refuse_enroll(c, ssl, 403, cred.serial_hex, cred.uid,
			      cred.uid_len, why);
		goto out;
	}
	if (ks_est_csr_parse(body, len, &csr, why, sizeof(why)) != KS_OK) {
		refuse_enroll(c, ssl, 400, cred.serial_hex, cred.uid,
			      cred.uid_len, why);
		goto out;
	}
	if (csr.uid_len != cred.uid_len ||
	    memcmp(csr.uid, cred.uid, csr.uid_len) != 0) {
		refuse_enroll(c, ssl, 403, cred.serial_hex, cred.uid,
			      cred.uid_len,
			      "the CSR names another device UID than the "
			      "client certificate");
		goto out;
	}
	memset(&er, 0, sizeof(er));
	er.credential_serial = cred.serial_hex;
	er.uid = csr.uid;
	er.uid_len = csr.uid_len;
	er.pubkey_sha256 = csr.spki_sha256;
	er.profile = srv->profile;
	er.uses_allowed = cp->claim_uses;
	er.reenroll = srv->cfg.reenroll;
	er.peer = c->peer;
	r = ks_reg_enroll_begin(srv->cfg.reg, &er, NULL, &sess, why,
				sizeof(why));
	if (r != KS_OK) {
		status = r == KS_ERR_QUOTA || r == KS_ERR_POLICY ||
					 r == KS_ERR_NOTFOUND
				 ? 403
			 : r == KS_ERR_DUPLICATE ? 409
			 : r == KS_ERR_BUSY	 ? 503
						 : 500;
		if (why[0] == '\0')
			snprintf(why, sizeof(why), "registry: %s",
				 ks_strerror(r));
		refuse_enroll(c, ssl, status, cred.serial_hex, csr.uid,
			      csr.uid_len, why);
		goto out;
	}
	ir = calloc(1, sizeof(*ir));
	iss = calloc(1, sizeof(*iss));
	if (ir == NULL || iss == NULL) {
		end_session(srv, sess.id, KS_REG_FAILED, "out of memory");
		send_error(ssl, 500, "out of memory");
		goto out;
	}
	snprintf(ir->profile, sizeof(ir->profile), "%s", srv->profile);
	snprintf(ir->serial, sizeof(ir->serial), "%s", sess.serial);
	snprintf(ir->lot, sizeof(ir->lot), "%s", sess.lot);
	memcpy(ir->uid, csr.uid, csr.uid_len);
	ir->uid_len = (uint32_t)csr.uid_len;
	ir->origin = KS_KEY_ORIGIN_DEVICE;
	memcpy(ir->spki, csr.spki, csr.spki_len);
	ir->spki_len = (uint32_t)csr.spki_len;
	ir->session_id = sess.id;
	r = ks_signer_issue(srv->cfg.signer, ir, iss);
	if (r != KS_OK) {
		snprintf(why, sizeof(why), "signer refused: %s",
			 ks_strerror(r));
		end_session(srv, sess.id, KS_REG_FAILED, why);
		refuse_enroll(c, ssl, r == KS_ERR_QUOTA ? 403 : 500,
			      cred.serial_hex, csr.uid, csr.uid_len, why);
		goto out;
	}
	r = ks_reg_cert_issued(srv->cfg.reg, sess.id, iss->der, iss->der_len,
			       iss->serial_hex, iss->spki_sha256,
			       iss->not_before, iss->not_after, NULL);
	if (r == KS_OK)
		r = ks_reg_enroll_finish(srv->cfg.reg, sess.id,
					 cred.serial_hex, c->peer, NULL);
	if (r != KS_OK) {
		/* never deliver a certificate the registry does not hold */
		end_session(srv, sess.id, KS_REG_VOID,
			    "registry could not record the enrollment");
		send_error(ssl, 500, "registry error");
		goto out;
	}
	ks_log_info("enrolled %s (uid via credential %s) from %s: "
		    "certificate %s",
		    sess.serial, cred.serial_hex, c->peer, iss->serial_hex);
	stat_inc(srv, &srv->stats.enrolled);
	{
		const uint8_t *d[1] = {iss->der};
		size_t l[1] = {iss->der_len};

		send_certs(ssl, d, l, 1);
	}
out:
	free(ir);
	free(iss);
	OPENSSL_free(pder);
}

/* Read the request (head and body) within the deadline and serve it. */
static void serve_request(conn_t *c, SSL *ssl, int64_t deadline)
{
	uint8_t *buf = malloc(KS_EST_HEAD_MAX + KS_EST_BODY_MAX);
	size_t have = 0, need = 0;
	ks_est_req_t req;
	int pr = 0;

	if (buf == NULL)
		return;
	memset(&req, 0, sizeof(req));
	for (;;) {
		size_t got = 0, cap;

		if (pr == 0) {
			cap = KS_EST_HEAD_MAX - have;
		} else {
			if (have >= need)
				break;
			cap = need - have;
		}
		if (mono_ms() > deadline) {
			send_error(ssl, 408, "request not received in time");
			goto out;
		}
		if (SSL_read_ex(ssl, buf + have, cap, &got) != 1) {
			if (pr == 1 || have > 0)
				ks_log_warn("%s: connection ended inside the "
					    "request",
					    c->peer);
			goto out;
		}
		have += got;
		if (pr == 0) {
			pr = ks_est_parse_head(buf, have, &req);
			if (pr < 0) {
				ks_log_warn("%s: request refused: %d %s",
					    c->peer, req.status, req.reason);
				stat_inc(c->srv, &c->srv->stats.refused);
				send_error(ssl, req.status, req.reason);
				goto out;
			}
			if (pr == 1) {
				need = req.head_len + req.content_length;
				if (have > need) {
					send_error(ssl, 400,
						   "bytes after the request "
						   "body (one request per "
						   "connection)");
					goto out;
				}
			}
		}
	}
	if (req.op == KS_EST_OP_CACERTS)
		serve_cacerts(c->srv, ssl);
	else
		serve_enroll(c, ssl, buf + req.head_len, req.content_length);
out:
	free(buf);
}

static void *conn_main(void *arg)
{
	conn_t *c = arg;
	ks_est_server_t *srv = c->srv;
	struct timeval tv;
	int64_t deadline = mono_ms() + srv->cfg.timeout_ms;
	SSL *ssl = NULL;
	X509 *peer;

	tv.tv_sec = (time_t)(srv->cfg.timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(srv->cfg.timeout_ms % 1000) * 1000;
	(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	ssl = SSL_new(srv->ctx);
	if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1)
		goto out;
	if (SSL_accept(ssl) != 1) {
		unsigned long e = ERR_peek_last_error();
		char eb[160];

		ERR_error_string_n(e, eb, sizeof(eb));
		ks_log_warn("%s: TLS handshake refused: %s", c->peer,
			    e != 0 ? eb : "connection closed");
		ERR_clear_error();
		stat_inc(srv, &srv->stats.tls_failed);
		goto out;
	}
	peer = SSL_get0_peer_certificate(ssl);
	if (peer == NULL || !client_eku_ok(peer)) {
		refuse_enroll(c, ssl, 403, NULL, NULL, 0,
			      "the client certificate is neither a kiln "
			      "claim nor a client identity");
		goto out;
	}
	serve_request(c, ssl, deadline);
	(void)SSL_shutdown(ssl);
out:
	SSL_free(ssl);
	ERR_clear_error();
	close(c->fd);
	pthread_mutex_lock(&srv->mu);
	srv->active--;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
	free(c);
	return NULL;
}

static void peer_name(const struct sockaddr_storage *ss, char *out,
		      size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
		snprintf(out, cap, "%s:%u", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
		snprintf(out, cap, "[%s]:%u", host, port);
	} else {
		snprintf(out, cap, "?");
	}
}

static void *accept_main(void *arg)
{
	ks_est_server_t *srv = arg;

	for (;;) {
		struct pollfd pf[2] = {{srv->lfd, POLLIN, 0},
				       {srv->stop_pipe[0], POLLIN, 0}};
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		pthread_attr_t at;
		pthread_t t;
		conn_t *c;
		int fd;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents != 0)
			break;
		if ((pf[0].revents & POLLIN) == 0)
			continue;
		fd = accept4(srv->lfd, (struct sockaddr *)&ss, &sl,
			     SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		stat_inc(srv, &srv->stats.connections);
		pthread_mutex_lock(&srv->mu);
		if (srv->active >= srv->cfg.max_conns) {
			srv->stats.busy++;
			pthread_mutex_unlock(&srv->mu);
			ks_log_warn("enrollment: %u connections in progress, "
				    "closing a new one",
				    srv->cfg.max_conns);
			close(fd);
			continue;
		}
		srv->active++;
		pthread_mutex_unlock(&srv->mu);
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			goto fail;
		c->srv = srv;
		c->fd = fd;
		peer_name(&ss, c->peer, sizeof(c->peer));
		if (pthread_attr_init(&at) != 0)
			goto fail;
		(void)pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, conn_main, c) != 0) {
			pthread_attr_destroy(&at);
			goto fail;
		}
		pthread_attr_destroy(&at);
		continue;
fail:
		free(c);
		close(fd);
		pthread_mutex_lock(&srv->mu);
		srv->active--;
		pthread_cond_broadcast(&srv->cv);
		pthread_mutex_unlock(&srv->mu);
	}
	return NULL;
}

/* Parse "HOST:PORT" / "[V6]:PORT" and bind a listening socket. */
static ks_err_t listen_on(const char *spec, int *fd_out, uint16_t *port,
			  char *err, size_t errlen)
{
	char host[256];
	const char *colon, *ps;
	struct addrinfo hints, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, one = 1, gai;
	ks_err_t r = KS_ERR_CONFIG;

	colon = strrchr(spec, ':');
	if (colon == NULL || colon == spec || colon[1] == '\0' ||
	    (size_t)(colon - spec) >= sizeof(host)) {
		snprintf(err, errlen, "listen: bad value '%s' (HOST:PORT)",
			 spec);
		return KS_ERR_CONFIG;
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (host[0] == '[') {
		size_t hl = strlen(host);

		if (hl < 3 || host[hl - 1] != ']') {
			snprintf(err, errlen, "listen: bad value '%s'", spec);
			return KS_ERR_CONFIG;
		}
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	ps = colon + 1;
	for (const char *q = ps; *q != '\0'; q++)
		if (*q < '0' || *q > '9' || q - ps > 4) {
			snprintf(err, errlen,
				 "listen: bad port in '%s' (0..65535)", spec);
			return KS_ERR_CONFIG;
		}
	if (atol(ps) > 65535) {
		snprintf(err, errlen, "listen: bad port in '%s' (0..65535)",
			 spec);
		return KS_ERR_CONFIG;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	gai = getaddrinfo(host, ps, &hints, &ai);
	if (gai != 0) {
		snprintf(err, errlen,
			 "listen: '%s' is not a numeric address: %s", spec,
			 gai_strerror(gai));
		return KS_ERR_CONFIG;
	}
	r = KS_ERR_IO;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
	    listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		snprintf(err, errlen, "listen on %s: %s", spec,
			 strerror(errno));
		goto out;
	}
	*port = ss.ss_family == AF_INET
			? ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port)
			: ntohs(((struct sockaddr_in6 *)(void *)&ss)
					->sin6_port);
	*fd_out = fd;
	fd = -1;
	r = KS_OK;
out:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return r;
}

static ks_err_t tls_setup(ks_est_server_t *srv, const ks_est_config_t *cfg,
			  char *err, size_t errlen)
{
	X509_VERIFY_PARAM *vp;

	srv->ctx = SSL_CTX_new(TLS_server_method());
	if (srv->ctx == NULL ||
	    SSL_CTX_set_min_proto_version(srv->ctx, TLS1_3_VERSION) != 1) {
		snprintf(err, errlen, "enroll: cannot create the TLS context");
		return KS_ERR_CRYPTO;
	}
	if (SSL_CTX_use_certificate_chain_file(srv->ctx, cfg->cert_pem) != 1) {
		snprintf(err, errlen, "enroll: cert: cannot load '%s'",
			 cfg->cert_pem);
		return KS_ERR_CONFIG;
	}
	if (SSL_CTX_use_PrivateKey_file(srv->ctx, cfg->key_pem,
					SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(srv->ctx) != 1) {
		snprintf(err, errlen,
			 "enroll: key: cannot load '%s' or it does not match "
			 "the certificate",
			 cfg->key_pem);
		return KS_ERR_CONFIG;
	}
	if (SSL_CTX_load_verify_locations(srv->ctx, cfg->trust_pem, NULL) !=
		    1 ||
	    ks_ca_chain_load(cfg->trust_pem, &srv->chain) != KS_OK) {
		snprintf(err, errlen, "enroll: trust: cannot load '%s'",
			 cfg->trust_pem);
		return KS_ERR_CONFIG;
	}
	/* claim certificates carry only the kiln claim purpose: the TLS
	 * layer checks the chain for any purpose, conn_main() checks the
	 * EKU (claim or clientAuth) */
	vp = SSL_CTX_get0_param(srv->ctx);
	if (X509_VERIFY_PARAM_set_purpose(vp, X509_PURPOSE_ANY) != 1 ||
	    X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_X509_STRICT) != 1) {
		snprintf(err, errlen, "enroll: cannot set the verify purpose");
		return KS_ERR_CRYPTO;
	}
	SSL_CTX_set_verify(srv->ctx,
			   SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   NULL);
	SSL_CTX_set_verify_depth(srv->ctx, 4);
	SSL_CTX_set_session_cache_mode(srv->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(srv->ctx, 0);
	return KS_OK;
}

ks_err_t ks_est_server_start(const ks_est_config_t *cfg,
			     ks_est_server_t **out, char *err, size_t errlen)
{
	ks_est_server_t *srv = NULL;
	ks_err_t r;

	if (cfg == NULL || out == NULL || cfg->listen == NULL ||
	    cfg->cert_pem == NULL || cfg->key_pem == NULL ||
	    cfg->trust_pem == NULL || cfg->profile == NULL ||
	    cfg->signer == NULL || cfg->reg == NULL) {
		snprintf(err, errlen,
			 "enroll: listen, cert, key, trust and profile are "
			 "required");
		return KS_ERR_CONFIG;
	}
	*out = NULL;
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return KS_ERR_NOMEM;
	srv->lfd = -1;
	srv->stop_pipe[0] = srv->stop_pipe[1] = -1;
	srv->cfg = *cfg;
	if (srv->cfg.max_conns == 0)
		srv->cfg.max_conns = KS_EST_CONNS_DEFAULT;
	if (srv->cfg.timeout_ms == 0)
		srv->cfg.timeout_ms = KS_EST_TIMEOUT_MS_DEFAULT;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->cv, NULL);
	if (strlen(cfg->profile) >= sizeof(srv->profile) ||
	    find_profile(srv, cfg->profile) == NULL) {
		snprintf(err, errlen, "enroll: profile '%s' is not configured",
			 cfg->profile);
		r = KS_ERR_CONFIG;
		goto fail;
	}
	if (find_profile(srv, cfg->profile)->credential !=
	    KS_CREDENTIAL_IDENTITY) {
		snprintf(err, errlen,
			 "enroll: profile '%s' is a claim profile; "
			 "enrollment issues identities",
			 cfg->profile);
		r = KS_ERR_CONFIG;
		goto fail;
	}
	if (find_profile(srv, cfg->profile)->key_origin !=
	    KS_KEY_ORIGIN_DEVICE) {
		snprintf(err, errlen,
			 "enroll: profile '%s' must have key_origin = device "
			 "(the device sends a CSR)",
			 cfg->profile);
		r = KS_ERR_CONFIG;
		goto fail;
	}
	snprintf(srv->profile, sizeof(srv->profile), "%s", cfg->profile);
	srv->cfg.profile = srv->profile;
	srv->cfg.listen = srv->cfg.cert_pem = srv->cfg.key_pem =
		srv->cfg.trust_pem = NULL; /* not kept */
	r = tls_setup(srv, cfg, err, errlen);
	if (r == KS_OK)
		r = listen_on(cfg->listen, &srv->lfd, &srv->port, err, errlen);
	if (r != KS_OK)
		goto fail;
	if (pipe(srv->stop_pipe) != 0 ||
	    pthread_create(&srv->thread, NULL, accept_main, srv) != 0) {
		snprintf(err, errlen, "enroll: cannot start the service");
		r = KS_ERR_INTERNAL;
		goto fail;
	}
	srv->started = 1;
	ks_log_info("enrollment service on %s (port %u), profile %s",
		    cfg->listen, srv->port, srv->profile);
	*out = srv;
	return KS_OK;
fail:
	ks_est_server_stop(&srv);
	return r;
}

uint16_t ks_est_server_port(const ks_est_server_t *srv)
{
	return srv != NULL ? srv->port : 0;
}

void ks_est_server_stats(ks_est_server_t *srv, ks_est_stats_t *out)
{
	if (srv == NULL || out == NULL)
		return;
	pthread_mutex_lock(&srv->mu);
	*out = srv->stats;
	pthread_mutex_unlock(&srv->mu);
}

void ks_est_server_stop(ks_est_server_t **psrv)
{
	ks_est_server_t *srv;

	if (psrv == NULL || *psrv == NULL)
		return;
	srv = *psrv;
	if (srv->started) {
		ssize_t w;

		do
			w = write(srv->stop_pipe[1], "x", 1);
		while (w < 0 && errno == EINTR);
		pthread_join(srv->thread, NULL);
	}
	if (srv->lfd >= 0)
		close(srv->lfd);
	/* connection threads end within their timeout */
	pthread_mutex_lock(&srv->mu);
	while (srv->active > 0)
		pthread_cond_wait(&srv->cv, &srv->mu);
	pthread_mutex_unlock(&srv->mu);
	if (srv->stop_pipe[0] >= 0)
		close(srv->stop_pipe[0]);
	if (srv->stop_pipe[1] >= 0)
		close(srv->stop_pipe[1]);
	SSL_CTX_free(srv->ctx);
	sk_X509_pop_free(srv->chain, X509_free);
	pthread_mutex_destroy(&srv->mu);
	pthread_cond_destroy(&srv->cv);
	free(srv);
	*psrv = NULL;
}
