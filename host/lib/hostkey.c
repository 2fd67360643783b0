/*
 * kiln station library: host-generated P-256 keys and point conversions
 * (OpenSSL 3 EVP / OSSL_PARAM interfaces only).
 */
#include "host/lib/hostkey.h"

#include <pthread.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "host/lib/log.h"

ks_err_t ks_hostkey_generate(EVP_PKEY **key)
{
	if (key == NULL)
		return KS_ERR_ARG;
	*key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (*key == NULL) {
		ks_log_error("P-256 key generation failed");
		return KS_ERR_CRYPTO;
	}
	return KS_OK;
}

/* 1 if key is an EC key on P-256 with a named curve. */
static int is_p256(const EVP_PKEY *key)
{
	char group[64];
	size_t glen = 0;

	if (!EVP_PKEY_is_a(key, "EC"))
		return 0;
	if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
					   group, sizeof(group), &glen) != 1)
		return 0;
	return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

ks_err_t ks_hostkey_export_scalar(const EVP_PKEY *key,
				  uint8_t out[KS_P256_SCALAR_LEN])
{
	BIGNUM *d = NULL;
	ks_err_t r = KS_ERR_CRYPTO;

	if (key == NULL || out == NULL)
		return KS_ERR_ARG;
	if (!is_p256(key)) {
		r = KS_ERR_POLICY;
		goto out;
	}
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1)
		goto out;
	if (BN_bn2binpad(d, out, KS_P256_SCALAR_LEN) != KS_P256_SCALAR_LEN)
		goto out;
	r = KS_OK;
out:
	BN_clear_free(d);
	if (r != KS_OK)
		OPENSSL_cleanse(out, KS_P256_SCALAR_LEN);
	return r;
}

ks_err_t ks_pubkey_point(const EVP_PKEY *key, uint8_t out[KS_P256_POINT_LEN])
{
	BIGNUM *x = NULL, *y = NULL;
	size_t len = 0;
	ks_err_t r = KS_ERR_CRYPTO;

	if (key == NULL || out == NULL)
		return KS_ERR_ARG;
	if (!is_p256(key)) {
		r = KS_ERR_POLICY;
		goto out;
	}
	/* The encoded point in one call when the key encodes it uncompressed
	 * (OpenSSL's default). */
	if (EVP_PKEY_get_octet_string_param(key,
					    OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
					    out, KS_P256_POINT_LEN, &len) == 1 &&
	    len == KS_P256_POINT_LEN && out[0] == 0x04) {
		r = KS_OK;
		goto out;
	}
	ERR_clear_error();
	/* X and Y as numbers: independent of the key's point encoding. */
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
	    EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1)
		goto out;
	out[0] = 0x04;
	if (BN_bn2binpad(x, out + 1, 32) != 32 ||
	    BN_bn2binpad(y, out + 33, 32) != 32)
		goto out;
	r = KS_OK;
out:
	BN_free(x);
	BN_free(y);
	return r;
}

ks_err_t ks_hostkey_pubkey_point(const EVP_PKEY *key,
				 uint8_t out[KS_P256_POINT_LEN])
{
	return ks_pubkey_point(key, out);
}

void ks_hostkey_free(EVP_PKEY **key)
{
	if (key == NULL)
		return;
	EVP_PKEY_free(*key);
	*key = NULL;
}

/* KS_ERR_NOMEM when OpenSSL's error queue records a failed allocation
 * (the check could not run), else KS_ERR_VERIFY (the point is bad). */
static ks_err_t verify_or_nomem(void)
{
	unsigned long e;
	ks_err_t r = KS_ERR_VERIFY;

	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
			r = KS_ERR_NOMEM;
	return r;
}

/*
 * The P-256 group, built once: EC_GROUP_new_by_curve_name() costs more
 * than the point check itself. Read-only after creation, so threads share
 * it (EC_POINT_oct2point and EC_POINT_is_on_curve take it const).
 */
static EC_GROUP *p256_group;
static pthread_once_t p256_once = PTHREAD_ONCE_INIT;

static void p256_group_init(void)
{
	p256_group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
}

ks_err_t ks_pubkey_point_check(const uint8_t pt[KS_P256_POINT_LEN])
{
	EC_POINT *p = NULL;
	BN_CTX *bn = NULL;
	ks_err_t r = KS_ERR_CRYPTO;

	if (pt == NULL)
		return KS_ERR_ARG;
	if (pt[0] != 0x04)
		return KS_ERR_VERIFY;
	if (pthread_once(&p256_once, p256_group_init) != 0 ||
	    p256_group == NULL)
		goto out;
	p = EC_POINT_new(p256_group);
	bn = BN_CTX_new();
	if (p == NULL || bn == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	/* oct2point refuses coordinates >= p and points off the curve; the
	 * explicit checks below keep that true whatever the library version.
	 * With cofactor 1 every such point other than infinity has order n. */
	if (EC_POINT_oct2point(p256_group, p, pt, KS_P256_POINT_LEN, bn) != 1 ||
	    EC_POINT_is_at_infinity(p256_group, p) ||
	    EC_POINT_is_on_curve(p256_group, p, bn) != 1) {
		r = verify_or_nomem();
		goto out;
	}
	r = KS_OK;
out:
	BN_CTX_free(bn);
	EC_POINT_free(p);
	return r;
}

ks_err_t ks_pubkey_from_point(const uint8_t pt[KS_P256_POINT_LEN],
			      EVP_PKEY **out)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
	EVP_PKEY *pk = NULL;
	ks_err_t r = KS_ERR_CRYPTO;

	if (pt == NULL || out == NULL)
		return KS_ERR_ARG;
	*out = NULL;
	r = ks_pubkey_point_check(pt);
	if (r != KS_OK)
		goto out;
	r = KS_ERR_CRYPTO;
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					    "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
					     KS_P256_POINT_LEN) != 1)
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1)
		goto out;
	if (EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		/* oct2point refuses points that are not on the curve. */
		r = verify_or_nomem();
		goto out;
	}
	/* The point was validated above; the quick check (no n*Q
	 * multiplication, redundant with cofactor 1) guards the EVP_PKEY the
	 * provider built from it. */
	chk = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
	if (chk == NULL)
		goto out;
	if (EVP_PKEY_public_check_quick(chk) != 1) {
		r = verify_or_nomem();
		goto out;
	}
	*out = pk;
	pk = NULL;
	r = KS_OK;
out:
	EVP_PKEY_CTX_free(chk);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return r;
}

/* SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66) } */
static const uint8_t p256_spki_prefix[KS_P256_SPKI_LEN - KS_P256_POINT_LEN] = {
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
	0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
	0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
};

void ks_pubkey_spki_encode(const uint8_t pt[KS_P256_POINT_LEN],
			   uint8_t out[KS_P256_SPKI_LEN])
{
	memcpy(out, p256_spki_prefix, sizeof(p256_spki_prefix));
	memcpy(out + sizeof(p256_spki_prefix), pt, KS_P256_POINT_LEN);
}

int ks_pubkey_spki_point(const uint8_t *spki, size_t len,
			 uint8_t pt[KS_P256_POINT_LEN])
{
	if (spki == NULL || len != KS_P256_SPKI_LEN ||
	    memcmp(spki, p256_spki_prefix, sizeof(p256_spki_prefix)) != 0)
		return 0;
	memcpy(pt, spki + sizeof(p256_spki_prefix), KS_P256_POINT_LEN);
	return 1;
}

ks_err_t ks_pubkey_spki_sha256(const EVP_PKEY *key, uint8_t out[32])
{
	uint8_t pt[KS_P256_POINT_LEN], spki[KS_P256_SPKI_LEN];
	unsigned int mdlen = 0;
	ks_err_t r;

	if (key == NULL || out == NULL)
		return KS_ERR_ARG;
	r = ks_pubkey_point(key, pt);
	if (r != KS_OK)
		return r;
	ks_pubkey_spki_encode(pt, spki);
	if (EVP_Digest(spki, sizeof(spki), out, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != 32)
		return KS_ERR_CRYPTO;
	return KS_OK;
}
