#include <string.h>

#include "mbedtls/asn1.h"
#include "mbedtls/ecdsa.h"
#include "mbedtls/ecp.h"
#include "mbedtls/hmac_drbg.h"
#include "mbedtls/md.h"
#include "mbedtls/pk.h"
#include "mbedtls/platform.h"
#include "mbedtls/platform_util.h"
#include "mbedtls/sha256.h"

/* The PK layer's method table. mbedTLS 3.6 offers no public way to plug
 * an ECDSA key whose private half lives elsewhere except PSA opaque keys
 * (MBEDTLS_USE_PSA_CRYPTO, which would keep the scalar in the PSA key
 * store for the key's lifetime). The table is internal, so it is tied to
 * the pinned release: re-check pk_wrap.h before moving off 3.6. */
#include "pk_wrap.h"

#include "device/core/record.h"
#include "device/hal/hal.h"
#include "device/identity/identity.h"
#include "protocol/msg.h"

#if MBEDTLS_VERSION_NUMBER < 0x03060000 || MBEDTLS_VERSION_NUMBER >= 0x03070000
#error "device/identity implements mbedTLS 3.6's internal mbedtls_pk_info_t"
#endif
#if defined(MBEDTLS_USE_PSA_CRYPTO)
#error "device/identity expects legacy EC keys in the PK layer (no USE_PSA)"
#endif
#if !defined(MBEDTLS_ECDSA_DETERMINISTIC) || !defined(MBEDTLS_HMAC_DRBG_C)
#error "device/identity needs MBEDTLS_ECDSA_DETERMINISTIC and HMAC_DRBG_C"
#endif

/* The open identity: one per device. */
static struct {
	bool open;
	ka_store_t st;
	uint8_t key_slot;
	uint8_t pub[KID_PUBKEY_LEN];
	uint8_t uid[KID_UID_MAX];
	size_t uid_len;
	char serial[KID_SERIAL_MAX + 1];
	const uint8_t *cert, *chain; /* into blob */
	size_t cert_len, chain_len;
	size_t blob_len;
	uint8_t blob[KID_BLOB_MAX];
} S;

const char *kid_strerror(kid_err_t e)
{
	switch (e) {
#define KID_X(name, code, text) \
	case name:              \
		return text;
		KID_ERRORS(KID_X)
#undef KID_X
	}
	return "unknown error";
}

void kid_close(void)
{
	mbedtls_platform_zeroize(&S, sizeof(S));
}

bool kid_is_open(void)
{
	return S.open;
}

/* A DRBG that only blinds the scalar multiplication (the signature
 * itself is deterministic): seeded from the key, the message and, where
 * the board has one, the TRNG. */
static int blind_seed(mbedtls_hmac_drbg_context *drbg, const uint8_t d[32],
		      const uint8_t *msg, size_t msg_len)
{
	uint8_t seed[32 + 64 + 32];
	size_t len = 0;
	int ret;

	memcpy(seed, d, 32);
	len = 32;
	if (msg_len > 64)
		msg_len = 64;
	memcpy(seed + len, msg, msg_len);
	len += msg_len;
	if (ka_hal_rng_available() && ka_hal_rng(seed + len, 32) == KA_HAL_OK)
		len += 32;
	ret = mbedtls_hmac_drbg_seed_buf(
		drbg, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), seed, len);
	mbedtls_platform_zeroize(seed, sizeof(seed));
	return ret;
}

/* Load the scalar of the open identity's key slot into kp (kp->d). */
static kid_err_t key_load(const ka_store_t *st, uint8_t slot,
			  mbedtls_ecp_keypair *kp, uint8_t d[32])
{
	kp_status_t s;

	s = ka_record_key_load(st, slot, d);
	if (s == KP_ST_STORAGE)
		return KID_ERR_STORAGE;
	if (s != KP_ST_OK)
		return KID_ERR_KEY;
	if (mbedtls_ecp_read_key(MBEDTLS_ECP_DP_SECP256R1, kp, d, 32) != 0)
		return KID_ERR_KEY;
	return KID_OK;
}

/* Public point of the key in a slot (used once, at kid_open). */
static kid_err_t key_pubkey(const ka_store_t *st, uint8_t slot,
			    uint8_t pub[KID_PUBKEY_LEN])
{
	mbedtls_ecp_keypair kp;
	mbedtls_hmac_drbg_context drbg;
	uint8_t d[32];
	size_t olen = 0;
	kid_err_t r;

	mbedtls_ecp_keypair_init(&kp);
	mbedtls_hmac_drbg_init(&drbg);
	r = key_load(st, slot, &kp, d);
	if (r != KID_OK)
		goto out;
	r = KID_ERR_CRYPTO;
	if (blind_seed(&drbg, d, st->digest, sizeof(st->digest)) != 0 ||
	    mbedtls_ecp_keypair_calc_public(&kp, mbedtls_hmac_drbg_random,
					    &drbg) != 0 ||
	    mbedtls_ecp_write_public_key(&kp, MBEDTLS_ECP_PF_UNCOMPRESSED,
					 &olen, pub, KID_PUBKEY_LEN) != 0 ||
	    olen != KID_PUBKEY_LEN)
		goto out;
	r = KID_OK;
out:
	mbedtls_platform_zeroize(d, sizeof(d));
	mbedtls_hmac_drbg_free(&drbg);
	mbedtls_ecp_keypair_free(&kp);
	return r;
}

/* DER of AlgorithmIdentifier { id-ecPublicKey, prime256v1 }. */
static const uint8_t ec_p256_alg[] = {
	0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
};

/* Skip one TLV of tag `tag` (0: any tag) at *p. */
static int asn1_skip(unsigned char **p, const unsigned char *end, int tag)
{
	size_t len;

	if (*p >= end)
		return -1;
	if (tag == 0)
		tag = **p;
	if (mbedtls_asn1_get_tag(p, end, &len, tag) != 0)
		return -1;
	*p += len;
	return 0;
}

/* Does the certificate's subjectPublicKeyInfo hold exactly this P-256
 * point? A structural walk of tbsCertificate (RFC 5280 4.1); the
 * signature was checked by the station and is checked by every peer. */
static bool cert_has_key(uint8_t *cert, size_t n,
			 const uint8_t pub[KID_PUBKEY_LEN])
{
	const int seq = MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE;
	unsigned char *p = cert;
	const unsigned char *end = cert + n, *tbs_end, *spki_end;
	size_t len;

	if (mbedtls_asn1_get_tag(&p, end, &len, seq) != 0 ||
	    len != (size_t)(end - p))
		return false;
	if (mbedtls_asn1_get_tag(&p, end, &len, seq) != 0)
		return false;
	tbs_end = p + len;
	/* [0] EXPLICIT version, optional */
	if (p < tbs_end &&
	    *p == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED) &&
	    asn1_skip(&p, tbs_end, 0) != 0)
		return false;
	if (asn1_skip(&p, tbs_end, MBEDTLS_ASN1_INTEGER) != 0 || /* serial */
	    asn1_skip(&p, tbs_end, seq) != 0 ||  /* signature algorithm */
	    asn1_skip(&p, tbs_end, seq) != 0 ||  /* issuer */
	    asn1_skip(&p, tbs_end, seq) != 0 ||  /* validity */
	    asn1_skip(&p, tbs_end, seq) != 0)    /* subject */
		return false;
	if (mbedtls_asn1_get_tag(&p, tbs_end, &len, seq) != 0)
		return false;
	spki_end = p + len;
	if ((size_t)(spki_end - p) < sizeof(ec_p256_alg) ||
	    memcmp(p, ec_p256_alg, sizeof(ec_p256_alg)) != 0)
		return false;
	p += sizeof(ec_p256_alg);
	if (mbedtls_asn1_get_bitstring_null(&p, spki_end, &len) != 0 ||
	    len != KID_PUBKEY_LEN || (size_t)(spki_end - p) != len)
		return false;
	return memcmp(p, pub, KID_PUBKEY_LEN) == 0;
}

static kid_err_t check_store(const ka_store_t *st)
{
	if (!st->header_ok)
		return KID_ERR_FOREIGN;
	if (st->key_slot < 0)
		return KID_ERR_NO_KEY;
	if (st->commit_slot < 0) {
		for (size_t i = 0; i < KA_REC_COMMIT_SLOTS; i++)
			if (st->commit_state[i] == KA_SLOT_BURNT)
				return KID_ERR_COMMIT_DAMAGED;
		return KID_ERR_NOT_COMMITTED;
	}
	if (!st->committed)
		return KID_ERR_STALE_COMMIT;
	if (st->integrity != KP_ST_OK)
		return KID_ERR_DIGEST;
	if (st->blob_len > KID_BLOB_MAX)
		return KID_ERR_TOO_LARGE;
	return KID_OK;
}

kid_err_t kid_open(uint32_t flags)
{
	ka_hal_flash_geom_t g;
	kp_blob_t b;
	uint8_t digest[32];
	kid_err_t r;

	kid_close();
	if ((flags & ~(uint32_t)KID_OPEN_REQUIRE_LOCKED) != 0) {
		r = KID_ERR_ARG;
		goto out;
	}
	r = KID_ERR_STORAGE;
	if (ka_record_scan(&S.st) != KP_ST_OK ||
	    ka_hal_flash_geometry(&g) != KA_HAL_OK)
		goto out;
	r = check_store(&S.st);
	if (r != KID_OK)
		goto out;
	S.key_slot = (uint8_t)S.st.key_slot;
	S.blob_len = S.st.blob_len;
	if (ka_record_blob_read(&S.st, 0, S.blob, S.blob_len) != KP_ST_OK) {
		r = KID_ERR_STORAGE;
		goto out;
	}
	/* hash the copy that will be used, not only what the scan read */
	if (mbedtls_sha256(S.blob, S.blob_len, digest, 0) != 0) {
		r = KID_ERR_CRYPTO;
		goto out;
	}
	if (memcmp(digest, S.st.digest, sizeof(digest)) != 0) {
		r = KID_ERR_DIGEST;
		goto out;
	}
	if (kp_blob_decode(&b, S.blob, S.blob_len) != KP_OK ||
	    b.serial_len > KID_SERIAL_MAX) {
		r = KID_ERR_BLOB;
		goto out;
	}
	r = key_pubkey(&S.st, S.key_slot, S.pub);
	if (r != KID_OK)
		goto out;
	if (memcmp(b.pubkey, S.pub, KID_PUBKEY_LEN) != 0) {
		r = KID_ERR_KEY_MISMATCH;
		goto out;
	}
	/* b.cert points into S.blob, which this library owns */
	if (!cert_has_key(S.blob + (b.cert - S.blob), b.cert_len, S.pub)) {
		r = KID_ERR_CERT_MISMATCH;
		goto out;
	}
	if ((flags & KID_OPEN_REQUIRE_LOCKED) != 0 &&
	    (!S.st.lock_begun ||
	     (S.st.lock & (KID_LOCK_OTP | KID_LOCK_FLASH)) !=
		     (KID_LOCK_OTP | KID_LOCK_FLASH))) {
		r = KID_ERR_UNLOCKED;
		goto out;
	}
	if (ka_hal_uid(S.uid, sizeof(S.uid), &S.uid_len) != KA_HAL_OK ||
	    S.uid_len < 4 || S.uid_len > KID_UID_MAX) {
		r = KID_ERR_STORAGE;
		goto out;
	}
	memcpy(S.serial, b.serial, b.serial_len);
	S.serial[b.serial_len] = '\0';
	S.cert = b.cert;
	S.cert_len = b.cert_len;
	S.chain = KP_HAS(&b, 0x04) ? b.chain : NULL;
	S.chain_len = KP_HAS(&b, 0x04) ? b.chain_len : 0;
	S.open = true;
	r = KID_OK;
out:
	mbedtls_platform_zeroize(digest, sizeof(digest));
	if (r != KID_OK)
		kid_close();
	return r;
}

kid_err_t kid_cert_chain(const uint8_t **cert, size_t *cert_len,
			 const uint8_t **chain, size_t *chain_len)
{
	if (cert == NULL || cert_len == NULL || (chain == NULL) !=
						       (chain_len == NULL))
		return KID_ERR_ARG;
	if (!S.open)
		return KID_ERR_NOT_OPEN;
	*cert = S.cert;
	*cert_len = S.cert_len;
	if (chain != NULL) {
		*chain = S.chain;
		*chain_len = S.chain_len;
	}
	return KID_OK;
}

const char *kid_serial(void)
{
	return S.open ? S.serial : "";
}

kid_err_t kid_uid(uint8_t *buf, size_t cap, size_t *len)
{
	if (buf == NULL || len == NULL)
		return KID_ERR_ARG;
	if (!S.open)
		return KID_ERR_NOT_OPEN;
	if (cap < S.uid_len)
		return KID_ERR_BUFFER;
	memcpy(buf, S.uid, S.uid_len);
	*len = S.uid_len;
	return KID_OK;
}

kid_err_t kid_pubkey(uint8_t pub[KID_PUBKEY_LEN])
{
	if (pub == NULL)
		return KID_ERR_ARG;
	if (!S.open)
		return KID_ERR_NOT_OPEN;
	memcpy(pub, S.pub, KID_PUBKEY_LEN);
	return KID_OK;
}

kid_err_t kid_lock_state(uint8_t *lock)
{
	ka_store_t st;
	kid_err_t r = KID_ERR_STORAGE;

	if (lock == NULL)
		return KID_ERR_ARG;
	if (ka_record_scan(&st) == KP_ST_OK) {
		*lock = st.lock;
		r = KID_OK;
	}
	mbedtls_platform_zeroize(&st, sizeof(st));
	return r;
}

/* Sign hash with the open identity's key, loaded from OTP for this call
 * only. f_rng (may be NULL: an internal DRBG) blinds the computation. */
static kid_err_t sign_hash(mbedtls_md_type_t md_alg, const uint8_t *hash,
			   size_t hash_len, uint8_t *sig, size_t cap,
			   size_t *sig_len,
			   int (*f_rng)(void *, unsigned char *, size_t),
			   void *p_rng)
{
	mbedtls_ecp_keypair kp;
	mbedtls_hmac_drbg_context drbg;
	uint8_t d[32];
	kid_err_t r;
	int ret;

	mbedtls_ecp_keypair_init(&kp);
	mbedtls_hmac_drbg_init(&drbg);
	memset(d, 0, sizeof(d));
	if (!S.open) {
		r = KID_ERR_NOT_OPEN;
		goto out;
	}
	r = key_load(&S.st, S.key_slot, &kp, d);
	if (r != KID_OK)
		goto out;
	if (f_rng == NULL) {
		if (blind_seed(&drbg, d, hash, hash_len) != 0) {
			r = KID_ERR_CRYPTO;
			goto out;
		}
		f_rng = mbedtls_hmac_drbg_random;
		p_rng = &drbg;
	}
	ret = mbedtls_ecdsa_write_signature(&kp, md_alg, hash, hash_len, sig,
					    cap, sig_len, f_rng, p_rng);
	if (ret == MBEDTLS_ERR_ECP_BUFFER_TOO_SMALL ||
	    ret == MBEDTLS_ERR_ASN1_BUF_TOO_SMALL)
		r = KID_ERR_BUFFER;
	else if (ret != 0)
		r = KID_ERR_CRYPTO;
	else
		r = KID_OK;
out:
	mbedtls_platform_zeroize(d, sizeof(d));
	mbedtls_hmac_drbg_free(&drbg);
	mbedtls_ecp_keypair_free(&kp); /* zeroizes the scalar */
	return r;
}

kid_err_t kid_derive_key(const uint8_t *info, size_t info_len,
			 uint8_t out[32])
{
	static const uint8_t salt[] = "kiln kid_derive_key v1";
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	mbedtls_md_context_t ctx;
	uint8_t d[32], prk[32];
	const uint8_t one = 1;
	kid_err_t r = KID_ERR_CRYPTO;

	if ((info == NULL && info_len != 0) || out == NULL)
		return KID_ERR_ARG;
	if (!S.open)
		return KID_ERR_NOT_OPEN;
	mbedtls_md_init(&ctx);
	memset(d, 0, sizeof(d));
	if (ka_record_key_load(&S.st, S.key_slot, d) != KP_ST_OK) {
		r = KID_ERR_KEY;
		goto out;
	}
	/* HKDF-SHA256 (RFC 5869), one output block: PRK = HMAC(salt, d),
	 * OKM = HMAC(PRK, info | 0x01) */
	if (md == NULL ||
	    mbedtls_md_hmac(md, salt, sizeof(salt) - 1, d, sizeof(d), prk) !=
		    0 ||
	    mbedtls_md_setup(&ctx, md, 1) != 0 ||
	    mbedtls_md_hmac_starts(&ctx, prk, sizeof(prk)) != 0 ||
	    (info_len > 0 && mbedtls_md_hmac_update(&ctx, info, info_len) != 0) ||
	    mbedtls_md_hmac_update(&ctx, &one, 1) != 0 ||
	    mbedtls_md_hmac_finish(&ctx, out) != 0)
		goto out;
	r = KID_OK;
out:
	mbedtls_md_free(&ctx);
	mbedtls_platform_zeroize(d, sizeof(d));
	mbedtls_platform_zeroize(prk, sizeof(prk));
	if (r != KID_OK)
		mbedtls_platform_zeroize(out, 32);
	return r;
}

kid_err_t kid_sign(const uint8_t hash[32], uint8_t *sig, size_t cap,
		   size_t *sig_len)
{
	if (hash == NULL || sig == NULL || sig_len == NULL)
		return KID_ERR_ARG;
	return sign_hash(MBEDTLS_MD_SHA256, hash, 32, sig, cap, sig_len, NULL,
			 NULL);
}

/* ---- the PK method table: an EC key whose signing calls sign_hash ---- */

/* pk_ctx is an mbedtls_ecp_keypair holding the public point only (d = 0),
 * so everything in mbedTLS that inspects an EC key's public half through
 * mbedtls_pk_ec() (key type, curve, point) sees the device key. */

static size_t kid_pk_bitlen(mbedtls_pk_context *pk)
{
	(void)pk;
	return 256;
}

static int kid_pk_can_do(mbedtls_pk_type_t type)
{
	return type == MBEDTLS_PK_ECKEY || type == MBEDTLS_PK_ECDSA;
}

static int kid_pk_verify(mbedtls_pk_context *pk, mbedtls_md_type_t md_alg,
			 const unsigned char *hash, size_t hash_len,
			 const unsigned char *sig, size_t sig_len)
{
	(void)md_alg;
	return mbedtls_ecdsa_read_signature(mbedtls_pk_ec(*pk), hash, hash_len,
					    sig, sig_len);
}

static bool kid_pk_is_ours(const mbedtls_pk_context *pk)
{
	uint8_t q[KID_PUBKEY_LEN];
	size_t olen = 0;

	return S.open &&
	       mbedtls_ecp_write_public_key(mbedtls_pk_ec(*pk),
					    MBEDTLS_ECP_PF_UNCOMPRESSED, &olen,
					    q, sizeof(q)) == 0 &&
	       olen == KID_PUBKEY_LEN && memcmp(q, S.pub, olen) == 0;
}

static int kid_pk_sign(mbedtls_pk_context *pk, mbedtls_md_type_t md_alg,
		       const unsigned char *hash, size_t hash_len,
		       unsigned char *sig, size_t sig_size, size_t *sig_len,
		       int (*f_rng)(void *, unsigned char *, size_t),
		       void *p_rng)
{
	kid_err_t r;

	/* the identity may have been closed or re-opened since setup */
	if (!kid_pk_is_ours(pk))
		return MBEDTLS_ERR_PK_BAD_INPUT_DATA;
	r = sign_hash(md_alg, hash, hash_len, sig, sig_size, sig_len, f_rng,
		      p_rng);
	if (r == KID_ERR_BUFFER)
		return MBEDTLS_ERR_PK_BUFFER_TOO_SMALL;
	if (r != KID_OK)
		return MBEDTLS_ERR_PK_BAD_INPUT_DATA;
	return 0;
}

static int kid_pk_check_pair(mbedtls_pk_context *pub, mbedtls_pk_context *prv,
			     int (*f_rng)(void *, unsigned char *, size_t),
			     void *p_rng)
{
	uint8_t a[KID_PUBKEY_LEN], b[KID_PUBKEY_LEN];
	size_t alen = 0, blen = 0;

	(void)f_rng;
	(void)p_rng;
	if (!mbedtls_pk_can_do(pub, MBEDTLS_PK_ECKEY))
		return MBEDTLS_ERR_PK_TYPE_MISMATCH;
	if (mbedtls_ecp_write_public_key(mbedtls_pk_ec(*pub),
					 MBEDTLS_ECP_PF_UNCOMPRESSED, &alen, a,
					 sizeof(a)) != 0 ||
	    mbedtls_ecp_write_public_key(mbedtls_pk_ec(*prv),
					 MBEDTLS_ECP_PF_UNCOMPRESSED, &blen, b,
					 sizeof(b)) != 0 ||
	    alen != blen || memcmp(a, b, alen) != 0)
		return MBEDTLS_ERR_ECP_BAD_INPUT_DATA;
	return 0;
}

static void *kid_pk_alloc(void)
{
	mbedtls_ecp_keypair *kp = mbedtls_calloc(1, sizeof(*kp));

	if (kp != NULL)
		mbedtls_ecp_keypair_init(kp);
	return kp;
}

static void kid_pk_free(void *ctx)
{
	mbedtls_ecp_keypair_free(ctx);
	mbedtls_free(ctx);
}

static void kid_pk_debug(mbedtls_pk_context *pk, mbedtls_pk_debug_item *items)
{
	items->MBEDTLS_PRIVATE(type) = MBEDTLS_PK_DEBUG_ECP;
	items->MBEDTLS_PRIVATE(name) = "eckey.Q";
	items->MBEDTLS_PRIVATE(value) = &(mbedtls_pk_ec(*pk)->MBEDTLS_PRIVATE(Q));
}

static const mbedtls_pk_info_t kid_pk_info = {
	.type = MBEDTLS_PK_ECKEY,
	.name = "KILN-ID",
	.get_bitlen = kid_pk_bitlen,
	.can_do = kid_pk_can_do,
	.verify_func = kid_pk_verify,
	.sign_func = kid_pk_sign,
	.check_pair_func = kid_pk_check_pair,
	.ctx_alloc_func = kid_pk_alloc,
	.ctx_free_func = kid_pk_free,
	.debug_func = kid_pk_debug,
};

kid_err_t kid_pk_setup(mbedtls_pk_context *pk)
{
	mbedtls_ecp_group grp;
	mbedtls_ecp_point q;
	kid_err_t r;

	if (pk == NULL || mbedtls_pk_get_type(pk) != MBEDTLS_PK_NONE)
		return KID_ERR_ARG;
	if (!S.open)
		return KID_ERR_NOT_OPEN;
	mbedtls_ecp_group_init(&grp);
	mbedtls_ecp_point_init(&q);
	r = KID_ERR_CRYPTO;
	if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
	    mbedtls_ecp_point_read_binary(&grp, &q, S.pub, KID_PUBKEY_LEN) !=
		    0 ||
	    mbedtls_pk_setup(pk, &kid_pk_info) != 0)
		goto out;
	if (mbedtls_ecp_set_public_key(MBEDTLS_ECP_DP_SECP256R1,
				       mbedtls_pk_ec(*pk), &q) != 0) {
		mbedtls_pk_free(pk);
		goto out;
	}
	r = KID_OK;
out:
	mbedtls_ecp_point_free(&q);
	mbedtls_ecp_group_free(&grp);
	return r;
}

#if defined(MBEDTLS_X509_CRT_PARSE_C)
kid_err_t kid_x509_chain(mbedtls_x509_crt *crt)
{
	const unsigned char *end;
	unsigned char *p, *start;
	size_t len;

	if (crt == NULL)
		return KID_ERR_ARG;
	if (!S.open)
		return KID_ERR_NOT_OPEN;
	if (mbedtls_x509_crt_parse_der(crt, S.cert, S.cert_len) != 0)
		return KID_ERR_BLOB;
	if (S.chain_len == 0)
		return KID_OK;
	/* concatenated DER certificates: split at each outer SEQUENCE */
	p = S.blob + (S.chain - S.blob);
	end = p + S.chain_len;
	while (p < end) {
		start = p;
		if (mbedtls_asn1_get_tag(&p, end, &len,
					 MBEDTLS_ASN1_CONSTRUCTED |
						 MBEDTLS_ASN1_SEQUENCE) != 0)
			return KID_ERR_BLOB;
		p += len;
		if (mbedtls_x509_crt_parse_der(crt, start,
					       (size_t)(p - start)) != 0)
			return KID_ERR_BLOB;
	}
	return KID_OK;
}
#endif
