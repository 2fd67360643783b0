/* the CSR subject is built as one CN attribute directly (no DN string
 * parser in the firmware): needs the context's subject list */
#define MBEDTLS_ALLOW_PRIVATE_ACCESS

#include <string.h>

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/ecdh.h"
#include "mbedtls/ecdsa.h"
#include "mbedtls/gcm.h"
#include "mbedtls/hkdf.h"
#include "mbedtls/asn1write.h"
#include "mbedtls/md.h"
#include "mbedtls/oid.h"
#include "mbedtls/ecp.h"
#include "mbedtls/memory_buffer_alloc.h"
#include "mbedtls/pk.h"
#include "mbedtls/platform_util.h"
#include "mbedtls/sha256.h"
#include "mbedtls/x509_csr.h"

#include "device/core/crypto.h"
#include "device/hal/hal.h"

#define PERS_MAX (64u + 32u)

/* State of the DRBG's entropy callback. */
typedef struct {
	const ka_crypto_env_t *env;
	const uint8_t *key; /* private scalar, last-resort blinding entropy */
	uint32_t counter;
} entropy_t;

/*
 * Entropy for the CTR_DRBG, in order of preference: the TRNG; without
 * one, the station's seed, expanded with SHA-256; for signing operations
 * only (where the DRBG merely blinds a deterministic computation) a
 * SHA-256 expansion of the private key. Nothing at all: fail.
 */
static int entropy_cb(void *ctx, unsigned char *out, size_t len)
{
	entropy_t *e = ctx;
	const ka_crypto_env_t *env = e->env;
	mbedtls_sha256_context sha;
	uint8_t h[32], ctr[4];
	int r = MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;

	if (env->trng)
		return ka_hal_rng(out, len) == KA_HAL_OK ? 0 : r;
	if (env->seed == NULL && e->key == NULL)
		return r;
	mbedtls_sha256_init(&sha);
	while (len > 0) {
		size_t n = len < sizeof(h) ? len : sizeof(h);

		e->counter++;
		ctr[0] = (uint8_t)(e->counter >> 24);
		ctr[1] = (uint8_t)(e->counter >> 16);
		ctr[2] = (uint8_t)(e->counter >> 8);
		ctr[3] = (uint8_t)e->counter;
		if (mbedtls_sha256_starts(&sha, 0) != 0 ||
		    mbedtls_sha256_update(&sha, ctr, sizeof(ctr)) != 0 ||
		    (env->seed != NULL &&
		     mbedtls_sha256_update(&sha, env->seed, env->seed_len) !=
			     0) ||
		    (e->key != NULL &&
		     mbedtls_sha256_update(&sha, e->key, KA_SCALAR_LEN) != 0) ||
		    mbedtls_sha256_finish(&sha, h) != 0)
			goto out;
		memcpy(out, h, n);
		out += n;
		len -= n;
	}
	r = 0;
out:
	mbedtls_sha256_free(&sha);
	mbedtls_platform_zeroize(h, sizeof(h));
	return r;
}

/* One crypto call: heap installed, DRBG seeded. */
typedef struct {
	entropy_t ent;
	mbedtls_ctr_drbg_context drbg;
} session_t;

static kp_status_t session_begin(session_t *s, const ka_crypto_env_t *env,
				 const uint8_t *key)
{
	uint8_t pers[PERS_MAX];
	size_t np = 0;
	kp_status_t r = KP_ST_CRYPTO;

	memset(s, 0, sizeof(*s));
	s->ent.env = env;
	s->ent.key = key;
	mbedtls_memory_buffer_alloc_init(env->heap, env->heap_len);
	mbedtls_ctr_drbg_init(&s->drbg);
	if (!env->trng && env->seed == NULL && key == NULL) {
		r = KP_ST_NO_ENTROPY;
		goto out;
	}
	/* the seed is mixed in as personalisation even with a TRNG, so a
	 * weak TRNG is no worse than the station's seed */
	if (env->seed != NULL && env->seed_len <= 64u) {
		memcpy(pers, env->seed, env->seed_len);
		np = env->seed_len;
	}
	if (env->uid != NULL && env->uid_len <= 32u) {
		memcpy(pers + np, env->uid, env->uid_len);
		np += env->uid_len;
	}
	if (mbedtls_ctr_drbg_seed(&s->drbg, entropy_cb, &s->ent, pers, np) !=
	    0) {
		r = env->trng ? KP_ST_CRYPTO : KP_ST_NO_ENTROPY;
		goto out;
	}
	r = KP_ST_OK;
out:
	mbedtls_platform_zeroize(pers, sizeof(pers));
	return r;
}

static void session_end(session_t *s, const ka_crypto_env_t *env)
{
	mbedtls_ctr_drbg_free(&s->drbg);
	mbedtls_platform_zeroize(s, sizeof(*s));
	mbedtls_memory_buffer_alloc_free();
	mbedtls_platform_zeroize(env->heap, env->heap_len);
}

/* How load_key() obtains the public point. */
typedef enum {
	PUB_NONE = 0,    /* not needed (signing uses d only) */
	PUB_DERIVE = 1,  /* compute d*G */
	PUB_GIVEN = 2,   /* read the caller's copy: saves a scalar
			    multiplication and its heap */
} pub_mode_t;

/* Load d into kp (validates 1 <= d < n) and set its public point. */
static kp_status_t load_key(mbedtls_ecp_keypair *kp, const uint8_t d[32],
			    session_t *s, pub_mode_t mode,
			    const uint8_t *pub)
{
	mbedtls_ecp_group grp;
	mbedtls_ecp_point q;
	kp_status_t r = KP_ST_CRYPTO;
	int e;

	e = mbedtls_ecp_read_key(MBEDTLS_ECP_DP_SECP256R1, kp, d,
				 KA_SCALAR_LEN);
	if (e == MBEDTLS_ERR_ECP_INVALID_KEY)
		return KP_ST_BAD_OBJECT;
	if (e != 0)
		return KP_ST_CRYPTO;
	if (mode == PUB_NONE)
		return KP_ST_OK;
	if (mode == PUB_DERIVE)
		return mbedtls_ecp_keypair_calc_public(
			       kp, mbedtls_ctr_drbg_random, &s->drbg) == 0
			       ? KP_ST_OK
			       : KP_ST_CRYPTO;
	mbedtls_ecp_group_init(&grp);
	mbedtls_ecp_point_init(&q);
	if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
	    mbedtls_ecp_point_read_binary(&grp, &q, pub, KA_PUBKEY_LEN) != 0)
		goto out;
	/* frees the group copy before the key's own Q is set */
	mbedtls_ecp_group_free(&grp);
	if (mbedtls_ecp_set_public_key(MBEDTLS_ECP_DP_SECP256R1, kp, &q) != 0)
		goto out;
	r = KP_ST_OK;
out:
	mbedtls_ecp_point_free(&q);
	mbedtls_ecp_group_free(&grp);
	return r;
}

static kp_status_t write_pub(const mbedtls_ecp_keypair *kp,
			     uint8_t pub[KA_PUBKEY_LEN])
{
	size_t olen = 0;

	if (mbedtls_ecp_write_public_key(kp, MBEDTLS_ECP_PF_UNCOMPRESSED,
					 &olen, pub, KA_PUBKEY_LEN) != 0 ||
	    olen != KA_PUBKEY_LEN)
		return KP_ST_CRYPTO;
	return KP_ST_OK;
}

kp_status_t ka_crypto_genkey(const ka_crypto_env_t *env, uint8_t d[32],
			     uint8_t pub[KA_PUBKEY_LEN])
{
	mbedtls_ecp_keypair kp;
	session_t s;
	size_t olen = 0;
	kp_status_t r;

	mbedtls_ecp_keypair_init(&kp);
	r = session_begin(&s, env, NULL);
	if (r != KP_ST_OK)
		goto out;
	r = KP_ST_CRYPTO;
	if (mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, &kp,
				mbedtls_ctr_drbg_random, &s.drbg) != 0)
		goto out;
	if (mbedtls_ecp_write_key_ext(&kp, &olen, d, KA_SCALAR_LEN) != 0 ||
	    olen != KA_SCALAR_LEN)
		goto out;
	r = write_pub(&kp, pub);
out:
	mbedtls_ecp_keypair_free(&kp);
	session_end(&s, env);
	return r;
}

kp_status_t ka_crypto_pubkey(const ka_crypto_env_t *env, const uint8_t d[32],
			     uint8_t pub[KA_PUBKEY_LEN])
{
	mbedtls_ecp_keypair kp;
	session_t s;
	kp_status_t r;

	mbedtls_ecp_keypair_init(&kp);
	r = session_begin(&s, env, d);
	if (r != KP_ST_OK)
		goto out;
	r = load_key(&kp, d, &s, PUB_DERIVE, NULL);
	if (r != KP_ST_OK)
		goto out;
	r = write_pub(&kp, pub);
out:
	mbedtls_ecp_keypair_free(&kp);
	session_end(&s, env);
	return r;
}

/*
 * The subject: one CN attribute (UTF8String) holding cn as given. Printable
 * ASCII only; no DN string syntax is involved, so no escaping either.
 */
static kp_status_t set_subject(mbedtls_x509write_csr *csr, const char *cn,
			       size_t cn_len)
{
	mbedtls_asn1_named_data *d;

	if (cn_len == 0 || cn_len > 64)
		return KP_ST_BAD_MESSAGE;
	for (size_t i = 0; i < cn_len; i++)
		if (cn[i] < 0x20 || cn[i] > 0x7E)
			return KP_ST_BAD_MESSAGE;
	d = mbedtls_asn1_store_named_data(&csr->subject, MBEDTLS_OID_AT_CN,
					  MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN),
					  (const unsigned char *)cn, cn_len);
	if (d == NULL)
		return KP_ST_CRYPTO;
	d->val.tag = MBEDTLS_ASN1_UTF8_STRING;
	return KP_ST_OK;
}

kp_status_t ka_crypto_csr(const ka_crypto_env_t *env, const uint8_t d[32],
			  const uint8_t pub[KA_PUBKEY_LEN], const char *cn,
			  size_t cn_len, uint8_t *out, size_t cap,
			  size_t *out_len)
{
	mbedtls_x509write_csr csr;
	mbedtls_pk_context pk;
	session_t s;
	kp_status_t r;
	int n;

	mbedtls_pk_init(&pk);
	mbedtls_x509write_csr_init(&csr);
	r = session_begin(&s, env, d);
	if (r != KP_ST_OK)
		goto out;
	r = set_subject(&csr, cn, cn_len);
	if (r != KP_ST_OK)
		goto out;
	r = KP_ST_CRYPTO;
	if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(
					  MBEDTLS_PK_ECKEY)) != 0)
		goto out;
	r = load_key(mbedtls_pk_ec(pk), d, &s, PUB_GIVEN, pub);
	if (r != KP_ST_OK)
		goto out;
	r = KP_ST_CRYPTO;
	mbedtls_x509write_csr_set_md_alg(&csr, MBEDTLS_MD_SHA256);
	mbedtls_x509write_csr_set_key(&csr, &pk);
	/* written at the end of out[]; moved to the front below */
	n = mbedtls_x509write_csr_der(&csr, out, cap, mbedtls_ctr_drbg_random,
				      &s.drbg);
	if (n <= 0 || (size_t)n > cap)
		goto out;
	memmove(out, out + cap - (size_t)n, (size_t)n);
	*out_len = (size_t)n;
	r = KP_ST_OK;
out:
	mbedtls_x509write_csr_free(&csr);
	mbedtls_pk_free(&pk);
	session_end(&s, env);
	return r;
}

kp_status_t ka_crypto_sign(const ka_crypto_env_t *env, const uint8_t d[32],
			   const uint8_t hash[32], uint8_t *sig, size_t cap,
			   size_t *sig_len)
{
	mbedtls_ecp_keypair kp;
	session_t s;
	kp_status_t r;

	mbedtls_ecp_keypair_init(&kp);
	r = session_begin(&s, env, d);
	if (r != KP_ST_OK)
		goto out;
	r = load_key(&kp, d, &s, PUB_NONE, NULL);
	if (r != KP_ST_OK)
		goto out;
	r = KP_ST_CRYPTO;
	/* deterministic (MBEDTLS_ECDSA_DETERMINISTIC): the DRBG only blinds */
	if (mbedtls_ecdsa_write_signature(&kp, MBEDTLS_MD_SHA256, hash, 32, sig,
					  cap, sig_len,
					  mbedtls_ctr_drbg_random,
					  &s.drbg) != 0)
		goto out;
	r = KP_ST_OK;
out:
	mbedtls_ecp_keypair_free(&kp);
	session_end(&s, env);
	return r;
}

kp_status_t ka_crypto_sha256(const uint8_t *data, size_t n, uint8_t out[32])
{
	return mbedtls_sha256(data, n, out, 0) == 0 ? KP_ST_OK : KP_ST_CRYPTO;
}

kp_status_t ka_crypto_ecdh(const ka_crypto_env_t *env, const uint8_t *key,
			   const uint8_t peer[KA_PUBKEY_LEN],
			   uint8_t pub[KA_PUBKEY_LEN], uint8_t nonce[32],
			   uint8_t z[32])
{
	mbedtls_ecp_group grp;
	mbedtls_ecp_point q, qp;
	mbedtls_mpi d, zx;
	session_t s;
	size_t olen = 0;
	kp_status_t r;

	/* public inputs only: an eavesdropper could redo the derivation */
	if (!env->trng && key == NULL)
		return KP_ST_NO_ENTROPY;
	mbedtls_ecp_group_init(&grp);
	mbedtls_ecp_point_init(&q);
	mbedtls_ecp_point_init(&qp);
	mbedtls_mpi_init(&d);
	mbedtls_mpi_init(&zx);
	r = session_begin(&s, env, key);
	if (r != KP_ST_OK)
		goto out;
	r = KP_ST_CRYPTO;
	if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) != 0)
		goto out;
	if (mbedtls_ecp_point_read_binary(&grp, &qp, peer, KA_PUBKEY_LEN) !=
		    0 ||
	    mbedtls_ecp_check_pubkey(&grp, &qp) != 0) {
		r = KP_ST_BAD_MESSAGE;
		goto out;
	}
	if (mbedtls_ecdh_gen_public(&grp, &d, &q, mbedtls_ctr_drbg_random,
				    &s.drbg) != 0 ||
	    mbedtls_ecp_point_write_binary(&grp, &q,
					   MBEDTLS_ECP_PF_UNCOMPRESSED, &olen,
					   pub, KA_PUBKEY_LEN) != 0 ||
	    olen != KA_PUBKEY_LEN)
		goto out;
	if (mbedtls_ecdh_compute_shared(&grp, &zx, &qp, &d,
					mbedtls_ctr_drbg_random,
					&s.drbg) != 0 ||
	    mbedtls_mpi_write_binary(&zx, z, 32) != 0)
		goto out;
	if (mbedtls_ctr_drbg_random(&s.drbg, nonce, 32) != 0)
		goto out;
	r = KP_ST_OK;
out:
	mbedtls_mpi_free(&zx); /* mbedtls_mpi_free zeroizes the limbs */
	mbedtls_mpi_free(&d);
	mbedtls_ecp_point_free(&qp);
	mbedtls_ecp_point_free(&q);
	mbedtls_ecp_group_free(&grp);
	session_end(&s, env);
	return r;
}

kp_status_t ka_crypto_hkdf(const ka_crypto_env_t *env, const uint8_t salt[32],
			   const uint8_t ikm[32], const uint8_t *info,
			   size_t info_len, uint8_t *okm, size_t okm_len)
{
	int e;

	/* the HMAC contexts are allocated: install the heap for the call */
	mbedtls_memory_buffer_alloc_init(env->heap, env->heap_len);
	e = mbedtls_hkdf(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), salt,
			 32, ikm, 32, info, info_len, okm, okm_len);
	mbedtls_memory_buffer_alloc_free();
	mbedtls_platform_zeroize(env->heap, env->heap_len);
	return e == 0 ? KP_ST_OK : KP_ST_CRYPTO;
}

kp_status_t ka_crypto_gcm_seal(const uint8_t key[32], const uint8_t nonce[12],
			       const uint8_t *aad, size_t aad_len,
			       uint8_t *buf, size_t n, uint8_t tag[16])
{
	mbedtls_gcm_context g;
	kp_status_t r = KP_ST_CRYPTO;

	mbedtls_gcm_init(&g);
	if (mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 256) == 0 &&
	    mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, n, nonce, 12,
				      aad, aad_len, buf, buf, 16, tag) == 0)
		r = KP_ST_OK;
	mbedtls_gcm_free(&g); /* zeroizes the key schedule */
	return r;
}

kp_status_t ka_crypto_gcm_open(const uint8_t key[32], const uint8_t nonce[12],
			       const uint8_t *aad, size_t aad_len,
			       uint8_t *buf, size_t n, const uint8_t tag[16])
{
	mbedtls_gcm_context g;
	kp_status_t r = KP_ST_CRYPTO;
	int e;

	mbedtls_gcm_init(&g);
	if (mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 256) != 0)
		goto out;
	e = mbedtls_gcm_auth_decrypt(&g, n, nonce, 12, aad, aad_len, tag, 16,
				     buf, buf);
	if (e == MBEDTLS_ERR_GCM_AUTH_FAILED) {
		mbedtls_platform_zeroize(buf, n);
		r = KP_ST_SEAL_AUTH;
	} else if (e == 0) {
		r = KP_ST_OK;
	}
out:
	mbedtls_gcm_free(&g);
	return r;
}
