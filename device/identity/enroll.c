/*
 * kiln runtime identity API: field enrollment over EST and the stored
 * operational identity (see enroll.h for the flow and the record).
 */
#include "device/identity/enroll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mbedtls/asn1.h"
#include "mbedtls/base64.h"
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/ecp.h"
#include "mbedtls/entropy.h"
#include "mbedtls/gcm.h"
#include "mbedtls/net_sockets.h"
#include "mbedtls/oid.h"
#include "mbedtls/platform_util.h"
#include "mbedtls/ssl.h"
#include "mbedtls/x509_csr.h"

#include "device/core/record.h"
#include "device/hal/hal.h"

#define OP_HDR 16u
#define OP_NONCE 12u
#define OP_TAG 16u
#define OP_KEYCT 32u
#define OP_FIXED (OP_NONCE + OP_TAG + OP_KEYCT)
#define OP_INFO "kiln operational key v1"

static const char est_path[] = "/.well-known/est/simpleenroll";

/* The open operational identity (cert, chain, encrypted key). */
static struct {
	bool open;
	uint32_t len; /* of rec */
	uint8_t rec[KID_OP_RECORD_MAX];
	const uint8_t *cert, *chain;
	size_t cert_len, chain_len;
} O;

/* why = msg followed by a (may be NULL) */
static void why_set(char *why, size_t whylen, const char *msg, const char *a)
{
	if (why != NULL && whylen > 0)
		snprintf(why, whylen, "%s%s", msg, a != NULL ? a : "");
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* ---- the record ----------------------------------------------------- */

/* Lay out cert/chain and the header (body length) in rec; returns the
 * record length or 0 when it does not fit. */
static size_t record_layout(uint8_t *rec, const uint8_t *cert, size_t cl,
			    const uint8_t *chain, size_t chl)
{
	size_t body = OP_FIXED + 2 + cl + 2 + chl;
	uint8_t *p;

	if (cl > 0xFFFF || chl > 0xFFFF || body > KID_OP_RECORD_MAX - OP_HDR)
		return 0;
	put32(rec, KID_OP_MAGIC);
	put32(rec + 4, 1);
	put32(rec + 8, (uint32_t)body);
	put32(rec + 12, 0);
	p = rec + OP_HDR + OP_FIXED;
	p[0] = (uint8_t)cl;
	p[1] = (uint8_t)(cl >> 8);
	memcpy(p + 2, cert, cl);
	p += 2 + cl;
	p[0] = (uint8_t)chl;
	p[1] = (uint8_t)(chl >> 8);
	memcpy(p + 2, chain, chl);
	return OP_HDR + body;
}

/* AES-256-GCM of the scalar with the header + cert + chain as AAD. */
static kid_err_t record_crypt(uint8_t *rec, size_t len, uint8_t d[32],
			      int encrypt)
{
	mbedtls_gcm_context gcm;
	uint8_t key[32], *nonce = rec + OP_HDR, *tag = nonce + OP_NONCE;
	uint8_t *ct = tag + OP_TAG, *aad_tail = ct + OP_KEYCT;
	uint8_t aad[KID_OP_RECORD_MAX];
	size_t aad_len = OP_HDR + (len - OP_HDR - OP_FIXED);
	kid_err_t r;
	int ret;

	memcpy(aad, rec, OP_HDR);
	memcpy(aad + OP_HDR, aad_tail, len - OP_HDR - OP_FIXED);
	r = kid_derive_key((const uint8_t *)OP_INFO, sizeof(OP_INFO) - 1, key);
	if (r != KID_OK)
		return r;
	mbedtls_gcm_init(&gcm);
	ret = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 256);
	if (ret == 0 && encrypt)
		ret = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, 32,
						nonce, OP_NONCE, aad, aad_len,
						d, ct, OP_TAG, tag);
	else if (ret == 0)
		ret = mbedtls_gcm_auth_decrypt(&gcm, 32, nonce, OP_NONCE, aad,
					       aad_len, tag, OP_TAG, ct, d);
	mbedtls_gcm_free(&gcm);
	mbedtls_platform_zeroize(key, sizeof(key));
	return ret == 0 ? KID_OK : KID_ERR_DIGEST;
}

static kid_err_t sector_check(uint32_t sector, uint32_t *size)
{
	ka_hal_flash_geom_t g;

	if (ka_hal_flash_geometry(&g) != KA_HAL_OK)
		return KID_ERR_STORAGE;
	/* never the identity sectors: those belong to the agent */
	if (sector < KA_REC_ID_SECTORS || sector >= g.sectors ||
	    g.sector_size < KID_OP_RECORD_MAX || g.prog_align == 0 ||
	    KID_OP_RECORD_MAX % g.prog_align != 0)
		return KID_ERR_ARG;
	*size = g.sector_size;
	return KID_OK;
}

static kid_err_t record_write(uint32_t sector, uint8_t *rec, size_t len)
{
	uint32_t size = 0;
	kid_err_t r = sector_check(sector, &size);
	size_t padded = (len + 15u) & ~(size_t)15u;

	if (r != KID_OK)
		return r;
	if (padded > KID_OP_RECORD_MAX)
		return KID_ERR_TOO_LARGE;
	memset(rec + len, 0xFF, padded - len);
	if (ka_hal_flash_erase(sector) != KA_HAL_OK ||
	    ka_hal_flash_program(sector * size, rec, padded) != KA_HAL_OK)
		return KID_ERR_STORAGE;
	return KID_OK;
}

/* ---- TLS and HTTP ---------------------------------------------------- */

typedef struct {
	mbedtls_net_context net;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt own;
	mbedtls_pk_context key;
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
} tls_t;

static void tls_init(tls_t *t)
{
	mbedtls_net_init(&t->net);
	mbedtls_entropy_init(&t->entropy);
	mbedtls_ctr_drbg_init(&t->drbg);
	mbedtls_x509_crt_init(&t->own);
	mbedtls_pk_init(&t->key);
	mbedtls_ssl_config_init(&t->conf);
	mbedtls_ssl_init(&t->ssl);
}

static void tls_free(tls_t *t)
{
	mbedtls_ssl_free(&t->ssl);
	mbedtls_ssl_config_free(&t->conf);
	mbedtls_pk_free(&t->key);
	mbedtls_x509_crt_free(&t->own);
	mbedtls_ctr_drbg_free(&t->drbg);
	mbedtls_entropy_free(&t->entropy);
	mbedtls_net_free(&t->net);
}

/* One request over TLS 1.3 with the factory credential; the whole
 * response (until the server closes) into resp. */
static kid_err_t tls_exchange(const kid_enroll_cfg_t *cfg, tls_t *t,
			      const uint8_t *req, size_t req_len,
			      uint8_t *resp, size_t cap, size_t *resp_len,
			      char *why, size_t whylen)
{
	size_t off = 0, got = 0;
	int ret;

	if (kid_x509_chain(&t->own) != KID_OK ||
	    kid_pk_setup(&t->key) != KID_OK) {
		why_set(why, whylen, "factory credential unusable", NULL);
		return KID_ERR_NOT_OPEN;
	}
	ret = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
					  MBEDTLS_SSL_TRANSPORT_STREAM,
					  MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret != 0)
		goto tls_fail;
	mbedtls_ssl_conf_min_tls_version(&t->conf, MBEDTLS_SSL_VERSION_TLS1_3);
	mbedtls_ssl_conf_max_tls_version(&t->conf, MBEDTLS_SSL_VERSION_TLS1_3);
	mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&t->conf,
				  (mbedtls_x509_crt *)(uintptr_t)cfg->server_ca,
				  NULL);
	mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
	mbedtls_ssl_conf_read_timeout(&t->conf,
				      cfg->timeout_ms ? cfg->timeout_ms : 10000);
	ret = mbedtls_ssl_conf_own_cert(&t->conf, &t->own, &t->key);
	if (ret == 0)
		ret = mbedtls_ssl_setup(&t->ssl, &t->conf);
	if (ret == 0)
		ret = mbedtls_ssl_set_hostname(&t->ssl, cfg->server_name);
	if (ret != 0)
		goto tls_fail;
	ret = mbedtls_net_connect(&t->net, cfg->host, cfg->port,
				  MBEDTLS_NET_PROTO_TCP);
	if (ret != 0) {
		why_set(why, whylen, "cannot connect to ", cfg->host);
		return KID_ERR_NET;
	}
	mbedtls_ssl_set_bio(&t->ssl, &t->net, mbedtls_net_send, NULL,
			    mbedtls_net_recv_timeout);
	while ((ret = mbedtls_ssl_handshake(&t->ssl)) != 0)
		if (ret != MBEDTLS_ERR_SSL_WANT_READ &&
		    ret != MBEDTLS_ERR_SSL_WANT_WRITE)
			goto tls_fail;
	while (off < req_len) {
		ret = mbedtls_ssl_write(&t->ssl, req + off, req_len - off);
		if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
		    ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (ret <= 0)
			goto tls_fail;
		off += (size_t)ret;
	}
	for (;;) {
		if (got == cap) {
			why_set(why, whylen, "response too large", NULL);
			return KID_ERR_RESPONSE;
		}
		ret = mbedtls_ssl_read(&t->ssl, resp + got, cap - got);
		if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
		    ret == MBEDTLS_ERR_SSL_WANT_WRITE ||
		    ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
			continue;
		if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ||
		    ret == MBEDTLS_ERR_NET_CONN_RESET)
			break;
		if (ret < 0)
			goto tls_fail;
		got += (size_t)ret;
	}
	*resp_len = got;
	return KID_OK;
tls_fail:
	if (why != NULL && whylen > 0)
		snprintf(why, whylen, "TLS: -0x%04x", (unsigned)-ret);
	return KID_ERR_NET;
}

/* Status and body of an HTTP/1.1 response (bounded by Content-Length
 * when present). */
static kid_err_t http_parse(uint8_t *resp, size_t len, int *status,
			    uint8_t **body, size_t *body_len)
{
	uint8_t *end = resp + len, *p, *hend = NULL;
	size_t clen = (size_t)-1;

	if (len < 12 || memcmp(resp, "HTTP/1.", 7) != 0 || resp[8] != ' ')
		return KID_ERR_RESPONSE;
	if (resp[9] < '1' || resp[9] > '5' || resp[10] < '0' ||
	    resp[10] > '9' || resp[11] < '0' || resp[11] > '9')
		return KID_ERR_RESPONSE;
	*status = (resp[9] - '0') * 100 + (resp[10] - '0') * 10 +
		  (resp[11] - '0');
	for (p = resp; end - p >= 4; p++)
		if (memcmp(p, "\r\n\r\n", 4) == 0) {
			hend = p + 4;
			break;
		}
	if (hend == NULL)
		return KID_ERR_RESPONSE;
	for (p = resp; p < hend - 4;) {
		uint8_t *eol = memchr(p, '\n', (size_t)(hend - p));

		if (eol == NULL)
			break;
		if (eol - p > 16 && strncasecmp((char *)p, "Content-Length:", 15) == 0) {
			char num[16];
			size_t n = (size_t)(eol - (p + 15));
			char *e;
			unsigned long v;

			if (n >= sizeof(num))
				return KID_ERR_RESPONSE;
			memcpy(num, p + 15, n);
			num[n] = '\0';
			v = strtoul(num, &e, 10);
			while (*e == ' ' || *e == '\r')
				e++;
			if (*e != '\0')
				return KID_ERR_RESPONSE;
			clen = v;
		}
		p = eol + 1;
	}
	*body = hend;
	*body_len = (size_t)(end - hend);
	if (clen != (size_t)-1) {
		if (clen > *body_len)
			return KID_ERR_RESPONSE;
		*body_len = clen;
	}
	return KID_OK;
}

/* The first certificate of a base64 PKCS#7 certs-only body (in place). */
static kid_err_t certs_only_first(uint8_t *body, size_t len,
				  const uint8_t **cert, size_t *cert_len)
{
	static const uint8_t oid_signed[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
					     0x0d, 0x01, 0x07, 0x02};
	unsigned char *p, *end, *cend;
	size_t n = 0, l, o = 0;

	for (size_t i = 0; i < len; i++)
		if (body[i] != '\r' && body[i] != '\n')
			body[o++] = body[i];
	if (mbedtls_base64_decode(body, o, &n, body, o) != 0)
		return KID_ERR_RESPONSE;
	p = body;
	end = body + n;
	if (mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_CONSTRUCTED |
						      MBEDTLS_ASN1_SEQUENCE) ||
	    l != (size_t)(end - p) ||
	    mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_OID) ||
	    l != sizeof(oid_signed) || memcmp(p, oid_signed, l) != 0)
		return KID_ERR_RESPONSE;
	p += l;
	if (mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_CONSTRUCTED |
						      MBEDTLS_ASN1_CONTEXT_SPECIFIC |
						      0) ||
	    mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_CONSTRUCTED |
						      MBEDTLS_ASN1_SEQUENCE))
		return KID_ERR_RESPONSE;
	end = p + l;
	/* version, digestAlgorithms, encapContentInfo */
	if (mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_INTEGER))
		return KID_ERR_RESPONSE;
	p += l;
	if (mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_CONSTRUCTED |
						      MBEDTLS_ASN1_SET))
		return KID_ERR_RESPONSE;
	p += l;
	if (mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_CONSTRUCTED |
						      MBEDTLS_ASN1_SEQUENCE))
		return KID_ERR_RESPONSE;
	p += l;
	if (mbedtls_asn1_get_tag(&p, end, &l, MBEDTLS_ASN1_CONSTRUCTED |
						      MBEDTLS_ASN1_CONTEXT_SPECIFIC |
						      0))
		return KID_ERR_RESPONSE;
	cend = p + l;
	*cert = p;
	if (mbedtls_asn1_get_tag(&p, cend, &l, MBEDTLS_ASN1_CONSTRUCTED |
						       MBEDTLS_ASN1_SEQUENCE))
		return KID_ERR_RESPONSE;
	*cert_len = (size_t)(p - *cert) + l;
	return KID_OK;
}

/* ---- enrollment ------------------------------------------------------ */

static kid_err_t make_csr(mbedtls_pk_context *key, mbedtls_ctr_drbg_context *drbg,
			  char *b64, size_t cap, size_t *b64_len)
{
	mbedtls_x509write_csr csr;
	mbedtls_x509_san_list san;
	unsigned char der[1024];
	char subject[KID_SERIAL_MAX + 8], uri[64 + 2 * KID_UID_MAX];
	uint8_t uid[KID_UID_MAX];
	size_t uid_len = 0, o;
	kid_err_t r = KID_ERR_CRYPTO;
	int len;

	mbedtls_x509write_csr_init(&csr);
	if (kid_uid(uid, sizeof(uid), &uid_len) != KID_OK)
		goto out;
	o = (size_t)snprintf(uri, sizeof(uri), "urn:kiln:uid:");
	for (size_t i = 0; i < uid_len; i++)
		o += (size_t)snprintf(uri + o, sizeof(uri) - o, "%02x", uid[i]);
	snprintf(subject, sizeof(subject), "CN=%s", kid_serial());
	memset(&san, 0, sizeof(san));
	san.node.type = MBEDTLS_X509_SAN_UNIFORM_RESOURCE_IDENTIFIER;
	san.node.san.unstructured_name.p = (unsigned char *)uri;
	san.node.san.unstructured_name.len = o;
	mbedtls_x509write_csr_set_md_alg(&csr, MBEDTLS_MD_SHA256);
	mbedtls_x509write_csr_set_key(&csr, key);
	if (mbedtls_x509write_csr_set_subject_name(&csr, subject) != 0 ||
	    mbedtls_x509write_csr_set_subject_alternative_name(&csr, &san) != 0)
		goto out;
	len = mbedtls_x509write_csr_der(&csr, der, sizeof(der),
					mbedtls_ctr_drbg_random, drbg);
	if (len <= 0)
		goto out;
	if (mbedtls_base64_encode((unsigned char *)b64, cap, b64_len,
				  der + sizeof(der) - (size_t)len,
				  (size_t)len) != 0)
		goto out;
	r = KID_OK;
out:
	mbedtls_x509write_csr_free(&csr);
	return r;
}

/* The new certificate must carry the new key and chain to the factory
 * chain's CA. */
static kid_err_t check_cert(const uint8_t *cert, size_t cert_len,
			    mbedtls_pk_context *key,
			    mbedtls_ctr_drbg_context *drbg)
{
	mbedtls_x509_crt crt, ca;
	const uint8_t *fc, *chain;
	size_t fcl, chl, off = 0;
	uint32_t flags = 0;
	kid_err_t r = KID_ERR_RESPONSE;

	mbedtls_x509_crt_init(&crt);
	mbedtls_x509_crt_init(&ca);
	if (mbedtls_x509_crt_parse_der(&crt, cert, cert_len) != 0)
		goto out;
	if (mbedtls_pk_check_pair(&crt.pk, key, mbedtls_ctr_drbg_random,
				  drbg) != 0) {
		r = KID_ERR_CERT_MISMATCH;
		goto out;
	}
	if (kid_cert_chain(&fc, &fcl, &chain, &chl) != KID_OK || chl == 0)
		goto out;
	while (off < chl) {
		unsigned char *p = (unsigned char *)(uintptr_t)(chain + off);
		size_t l;

		if (mbedtls_asn1_get_tag(&p, chain + chl, &l,
					 MBEDTLS_ASN1_CONSTRUCTED |
						 MBEDTLS_ASN1_SEQUENCE) != 0)
			goto out;
		l += (size_t)(p - (chain + off));
		if (mbedtls_x509_crt_parse_der(&ca, chain + off, l) != 0)
			goto out;
		off += l;
	}
	if (mbedtls_x509_crt_verify(&crt, &ca, NULL, NULL, &flags, NULL,
				    NULL) != 0) {
		r = KID_ERR_CERT_MISMATCH;
		goto out;
	}
	r = KID_OK;
out:
	mbedtls_x509_crt_free(&ca);
	mbedtls_x509_crt_free(&crt);
	return r;
}

kid_err_t kid_enroll(const kid_enroll_cfg_t *cfg, int *http_status,
		     char *why, size_t whylen)
{
	static const char pers[] = "kiln kid_enroll";
	tls_t *t = NULL;
	char *req = NULL, *b64 = NULL;
	uint8_t *resp = NULL, *rec = NULL, *body = NULL;
	const uint8_t *cert = NULL, *chain = NULL, *fc;
	size_t b64_len = 0, resp_len = 0, body_len = 0, cert_len = 0, chl = 0;
	size_t fcl, rl;
	uint8_t d[32];
	int status = 0, n;
	kid_err_t r = KID_ERR_ARG;

	if (http_status != NULL)
		*http_status = 0;
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (cfg == NULL || cfg->host == NULL || cfg->port == NULL ||
	    cfg->server_ca == NULL)
		return KID_ERR_ARG;
	if (!kid_is_open())
		return KID_ERR_NOT_OPEN;
	t = calloc(1, sizeof(*t));
	req = malloc(4096);
	b64 = malloc(2048);
	resp = malloc(KID_ENROLL_RESPONSE_MAX);
	rec = malloc(KID_OP_RECORD_MAX);
	if (t == NULL || req == NULL || b64 == NULL || resp == NULL ||
	    rec == NULL) {
		r = KID_ERR_BUFFER;
		goto out_free;
	}
	tls_init(t);
	{
		mbedtls_pk_context key;

		mbedtls_pk_init(&key);
		r = KID_ERR_CRYPTO;
		if (mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func,
					  &t->entropy,
					  (const unsigned char *)pers,
					  sizeof(pers) - 1) != 0 ||
		    mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(
						   MBEDTLS_PK_ECKEY)) != 0 ||
		    mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
					mbedtls_pk_ec(key),
					mbedtls_ctr_drbg_random,
					&t->drbg) != 0) {
			why_set(why, whylen, "key generation failed", NULL);
			goto out_key;
		}
		r = make_csr(&key, &t->drbg, b64, 2048, &b64_len);
		if (r != KID_OK) {
			why_set(why, whylen, "CSR could not be built", NULL);
			goto out_key;
		}
		n = snprintf(req, 4096,
			     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: "
			     "application/pkcs10\r\nContent-Transfer-Encoding: "
			     "base64\r\nContent-Length: %zu\r\nConnection: "
			     "close\r\n\r\n",
			     est_path, cfg->host, b64_len);
		if (n <= 0 || (size_t)n + b64_len > 4096) {
			r = KID_ERR_BUFFER;
			goto out_key;
		}
		memcpy(req + n, b64, b64_len);
		r = tls_exchange(cfg, t, (const uint8_t *)req,
				 (size_t)n + b64_len, resp,
				 KID_ENROLL_RESPONSE_MAX, &resp_len, why,
				 whylen);
		if (r != KID_OK)
			goto out_key;
		r = http_parse(resp, resp_len, &status, &body, &body_len);
		if (r != KID_OK) {
			why_set(why, whylen, "malformed HTTP response", NULL);
			goto out_key;
		}
		if (http_status != NULL)
			*http_status = status;
		if (status != 200) {
			size_t wl = body_len < 200 ? body_len : 200;

			if (why != NULL && whylen > 0)
				snprintf(why, whylen, "HTTP %d: %.*s", status,
					 (int)wl, (const char *)body);
			if (why != NULL) /* drop the CRLF */
				why[strcspn(why, "\r\n")] = '\0';
			r = KID_ERR_REFUSED;
			goto out_key;
		}
		r = certs_only_first(body, body_len, &cert, &cert_len);
		if (r == KID_OK)
			r = check_cert(cert, cert_len, &key, &t->drbg);
		if (r != KID_OK) {
			why_set(why, whylen,
				"the returned certificate was not accepted",
				NULL);
			goto out_key;
		}
		/* store: chain = the factory chain (same kiln CA) */
		if (kid_cert_chain(&fc, &fcl, &chain, &chl) != KID_OK) {
			r = KID_ERR_NOT_OPEN;
			goto out_key;
		}
		rl = record_layout(rec, cert, cert_len, chain, chl);
		r = KID_ERR_TOO_LARGE;
		if (rl == 0)
			goto out_key;
		r = KID_ERR_CRYPTO;
		if (mbedtls_ctr_drbg_random(&t->drbg, rec + OP_HDR, OP_NONCE) !=
			    0 ||
		    mbedtls_mpi_write_binary(&mbedtls_pk_ec(key)->MBEDTLS_PRIVATE(d),
					     d, sizeof(d)) != 0)
			goto out_key;
		r = record_crypt(rec, rl, d, 1);
		if (r == KID_OK)
			r = record_write(cfg->sector, rec, rl);
		if (r != KID_OK)
			why_set(why, whylen,
				"the operational identity could not be "
				"stored",
				NULL);
out_key:
		mbedtls_platform_zeroize(d, sizeof(d));
		mbedtls_pk_free(&key);
	}
	tls_free(t);
out_free:
	if (rec != NULL)
		mbedtls_platform_zeroize(rec, KID_OP_RECORD_MAX);
	free(rec);
	free(resp);
	free(b64);
	free(req);
	free(t);
	return r;
}

/* ---- the stored operational identity -------------------------------- */

void kid_op_close(void)
{
	mbedtls_platform_zeroize(&O, sizeof(O));
}

kid_err_t kid_op_open(uint32_t sector)
{
	uint8_t d[32];
	uint32_t size = 0, body;
	const uint8_t *p, *end;
	size_t cl, chl;
	kid_err_t r;

	kid_op_close();
	if (!kid_is_open())
		return KID_ERR_NOT_OPEN;
	r = sector_check(sector, &size);
	if (r != KID_OK)
		return r;
	if (ka_hal_flash_read(sector * size, O.rec, KID_OP_RECORD_MAX) !=
	    KA_HAL_OK)
		return KID_ERR_STORAGE;
	if (get32(O.rec) != KID_OP_MAGIC) {
		r = KID_ERR_NO_OPERATIONAL;
		goto fail;
	}
	body = get32(O.rec + 8);
	r = KID_ERR_BLOB;
	if (get32(O.rec + 4) != 1 || body < OP_FIXED + 4 ||
	    body > KID_OP_RECORD_MAX - OP_HDR)
		goto fail;
	p = O.rec + OP_HDR + OP_FIXED;
	end = O.rec + OP_HDR + body;
	cl = (size_t)p[0] | (size_t)p[1] << 8;
	p += 2;
	if (cl > (size_t)(end - p) || (size_t)(end - p) - cl < 2)
		goto fail;
	O.cert = p;
	O.cert_len = cl;
	p += cl;
	chl = (size_t)p[0] | (size_t)p[1] << 8;
	p += 2;
	if (chl != (size_t)(end - p))
		goto fail;
	O.chain = p;
	O.chain_len = chl;
	O.len = OP_HDR + body;
	r = record_crypt(O.rec, O.len, d, 0);
	mbedtls_platform_zeroize(d, sizeof(d));
	if (r != KID_OK)
		goto fail;
	O.open = true;
	return KID_OK;
fail:
	kid_op_close();
	return r;
}

kid_err_t kid_op_pk_setup(mbedtls_pk_context *pk)
{
	mbedtls_ctr_drbg_context drbg;
	mbedtls_entropy_context ent;
	mbedtls_x509_crt crt;
	uint8_t d[32];
	kid_err_t r = KID_ERR_CRYPTO;

	if (pk == NULL)
		return KID_ERR_ARG;
	if (!O.open)
		return KID_ERR_NO_OPERATIONAL;
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_entropy_init(&ent);
	mbedtls_x509_crt_init(&crt);
	r = record_crypt(O.rec, O.len, d, 0);
	if (r != KID_OK)
		goto out;
	r = KID_ERR_KEY;
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL,
				  0) != 0 ||
	    mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) !=
		    0 ||
	    mbedtls_ecp_read_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
				 d, sizeof(d)) != 0 ||
	    mbedtls_ecp_keypair_calc_public(mbedtls_pk_ec(*pk),
					    mbedtls_ctr_drbg_random,
					    &drbg) != 0)
		goto out;
	r = KID_ERR_CERT_MISMATCH;
	if (mbedtls_x509_crt_parse_der(&crt, O.cert, O.cert_len) != 0 ||
	    mbedtls_pk_check_pair(&crt.pk, pk, mbedtls_ctr_drbg_random,
				  &drbg) != 0)
		goto out;
	r = KID_OK;
out:
	if (r != KID_OK)
		mbedtls_pk_free(pk);
	mbedtls_platform_zeroize(d, sizeof(d));
	mbedtls_x509_crt_free(&crt);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&ent);
	return r;
}

kid_err_t kid_op_x509_chain(mbedtls_x509_crt *crt)
{
	size_t off = 0;

	if (crt == NULL)
		return KID_ERR_ARG;
	if (!O.open)
		return KID_ERR_NO_OPERATIONAL;
	if (mbedtls_x509_crt_parse_der(crt, O.cert, O.cert_len) != 0)
		return KID_ERR_BLOB;
	while (off < O.chain_len) {
		unsigned char *p = (unsigned char *)(uintptr_t)(O.chain + off);
		size_t l;

		if (mbedtls_asn1_get_tag(&p, O.chain + O.chain_len, &l,
					 MBEDTLS_ASN1_CONSTRUCTED |
						 MBEDTLS_ASN1_SEQUENCE) != 0)
			return KID_ERR_BLOB;
		l += (size_t)(p - (O.chain + off));
		if (mbedtls_x509_crt_parse_der(crt, O.chain + off, l) != 0)
			return KID_ERR_BLOB;
		off += l;
	}
	return KID_OK;
}
