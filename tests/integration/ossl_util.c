#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/x509v3.h>

#include "tests/integration/ossl_util.h"

static void die(const char *what)
{
	fprintf(stderr, "openssl: %s failed\n", what);
	ERR_print_errors_fp(stderr);
	abort();
}

EVP_PKEY *tu_p256_new(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	if (k == NULL)
		die("EVP_EC_gen");
	return k;
}

void tu_pubkey_raw(EVP_PKEY *k, uint8_t out[65])
{
	size_t n = 0;

	if (EVP_PKEY_set_utf8_string_param(
		    k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
		    "uncompressed") != 1 ||
	    EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, out,
					    65, &n) != 1 ||
	    n != 65)
		die("get pub key");
}

void tu_privkey_raw(EVP_PKEY *k, uint8_t out[32])
{
	BIGNUM *d = NULL;

	if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1 ||
	    BN_bn2binpad(d, out, 32) != 32)
		die("get priv key");
	BN_clear_free(d);
}

EVP_PKEY *tu_pkey_from_raw(const uint8_t pub[65])
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *k = NULL;

	OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					"prime256v1", 0);
	OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65);
	params = OSSL_PARAM_BLD_to_param(bld);
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1)
		k = NULL;
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return k;
}

static uint8_t *der_out(int n, unsigned char *p, size_t *len)
{
	if (n <= 0)
		die("i2d");
	*len = (size_t)n;
	return p;
}

uint8_t *tu_make_csr(EVP_PKEY *k, const char *cn, size_t *len)
{
	X509_REQ *r = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	unsigned char *p = NULL;
	int n;

	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	if (X509_REQ_set_subject_name(r, name) != 1 ||
	    X509_REQ_set_pubkey(r, k) != 1 ||
	    X509_REQ_sign(r, k, EVP_sha256()) <= 0)
		die("X509_REQ");
	n = i2d_X509_REQ(r, &p);
	X509_NAME_free(name);
	X509_REQ_free(r);
	return der_out(n, p, len);
}

int tu_csr_cn(const uint8_t *der, size_t len, char *cn, size_t cap)
{
	const unsigned char *p = der;
	X509_REQ *r = d2i_X509_REQ(NULL, &p, (long)len);
	int n;

	if (r == NULL)
		return -1;
	n = X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(r),
				      NID_commonName, cn, (int)cap);
	X509_REQ_free(r);
	return n > 0 ? 0 : -1;
}

EVP_PKEY *tu_csr_pubkey(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509_REQ *r = d2i_X509_REQ(NULL, &p, (long)len);
	EVP_PKEY *k;

	if (r == NULL)
		return NULL;
	k = X509_REQ_get_pubkey(r);
	X509_REQ_free(r);
	return k;
}

static X509 *make_cert(EVP_PKEY *subject, const char *cn, X509_NAME *issuer,
		       EVP_PKEY *signer, long serial, int ca)
{
	X509 *c = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_version(c, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
	X509_gmtime_adj(X509_getm_notBefore(c), 0);
	X509_gmtime_adj(X509_getm_notAfter(c), 3600L * 24 * 365);
	X509_set_subject_name(c, name);
	X509_set_issuer_name(c, issuer != NULL ? issuer : name);
	X509_set_pubkey(c, subject);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, c, c, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
				  ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	X509_add_ext(c, ext, -1);
	X509_EXTENSION_free(ext);
	if (X509_sign(c, signer, EVP_sha256()) <= 0)
		die("X509_sign");
	X509_NAME_free(name);
	return c;
}

void tu_ca_init(tu_ca_t *ca, const char *cn)
{
	ca->key = tu_p256_new();
	ca->cert = make_cert(ca->key, cn, NULL, ca->key, 1, 1);
	ca->next_serial = 1000;
}

void tu_ca_free(tu_ca_t *ca)
{
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	memset(ca, 0, sizeof(*ca));
}

uint8_t *tu_ca_cert_der(const tu_ca_t *ca, size_t *len)
{
	unsigned char *p = NULL;
	int n = i2d_X509(ca->cert, &p);

	return der_out(n, p, len);
}

uint8_t *tu_ca_issue(tu_ca_t *ca, EVP_PKEY *pub, const char *cn, size_t *len)
{
	X509 *c = make_cert(pub, cn, X509_get_subject_name(ca->cert), ca->key,
			    ca->next_serial++, 0);
	unsigned char *p = NULL;
	int n = i2d_X509(c, &p);
	uint8_t *out = der_out(n, p, len);

	X509_free(c);
	return out;
}

int tu_cert_pubkey_raw(const uint8_t *der, size_t len, uint8_t out[65])
{
	const unsigned char *p = der;
	X509 *c = d2i_X509(NULL, &p, (long)len);
	EVP_PKEY *k;

	if (c == NULL)
		return -1;
	k = X509_get_pubkey(c);
	if (k == NULL) {
		X509_free(c);
		return -1;
	}
	tu_pubkey_raw(k, out);
	EVP_PKEY_free(k);
	X509_free(c);
	return 0;
}

int tu_cert_signed_by(const uint8_t *der, size_t len, const tu_ca_t *ca)
{
	const unsigned char *p = der;
	X509 *c = d2i_X509(NULL, &p, (long)len);
	int ok;

	if (c == NULL)
		return 0;
	ok = X509_verify(c, ca->key) == 1;
	X509_free(c);
	ERR_clear_error();
	return ok;
}

size_t tu_sign(EVP_PKEY *k, const uint8_t *msg, size_t n, uint8_t *sig)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t sl = 72;

	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) != 1 ||
	    EVP_DigestSign(md, sig, &sl, msg, n) != 1)
		die("sign");
	EVP_MD_CTX_free(md);
	return sl;
}

void tu_sha256(const uint8_t *data, size_t n, uint8_t out[32])
{
	unsigned int l = 32;

	if (EVP_Digest(data, n, out, &l, EVP_sha256(), NULL) != 1)
		die("sha256");
}
