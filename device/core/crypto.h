/*
 * kiln agent: key generation, CSR writing and signatures (mbedTLS, P-256).
 *
 * mbedTLS allocates from a caller-supplied heap (MEMORY_BUFFER_ALLOC_C):
 * each call below installs env->heap with mbedtls_memory_buffer_alloc_init,
 * releases it before returning and wipes it, so between calls the memory is
 * free for other uses (the agent time-shares it with the blob and the
 * response payload). No system allocator is ever used.
 *
 * Private scalars are 32 bytes big-endian. Everything that held key
 * material (mbedTLS contexts, the heap, stack copies) is wiped before the
 * call returns; the caller wipes its own copy of d.
 */
#ifndef KILN_DEVICE_CORE_CRYPTO_H
#define KILN_DEVICE_CORE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/error.h"

#define KA_PUBKEY_LEN 65u /* uncompressed P-256 point */
#define KA_SCALAR_LEN 32u

/* Inputs every operation needs: heap and randomness. */
typedef struct {
	uint8_t *heap; /* mbedTLS heap for the duration of one call */
	size_t heap_len;
	const uint8_t *seed; /* station-supplied seed, or NULL */
	size_t seed_len;
	const uint8_t *uid; /* personalisation (the hardware UID) */
	size_t uid_len;
	bool trng; /* the HAL has a TRNG */
} ka_crypto_env_t;

/**
 * Generate a P-256 key pair from a CTR_DRBG seeded by the TRNG (and the
 * seed, if any; without a TRNG the seed is the only entropy and is
 * required: KP_ST_NO_ENTROPY). Writes the scalar to d and the public point
 * to pub.
 */
kp_status_t ka_crypto_genkey(const ka_crypto_env_t *env, uint8_t d[32],
			     uint8_t pub[KA_PUBKEY_LEN])
	__attribute__((warn_unused_result));

/**
 * Validate a scalar (1 <= d < n: KP_ST_BAD_OBJECT otherwise) and compute
 * its public point.
 */
kp_status_t ka_crypto_pubkey(const ka_crypto_env_t *env, const uint8_t d[32],
			     uint8_t pub[KA_PUBKEY_LEN])
	__attribute__((warn_unused_result));

/**
 * Write a PKCS#10 CSR (DER) for key d, whose public point pub (from
 * ka_crypto_genkey or ka_crypto_pubkey) goes into it, subject
 * CN = cn[0..cn_len), signed with ECDSA-SHA256, into out[0..cap);
 * *out_len = its length.
 */
kp_status_t ka_crypto_csr(const ka_crypto_env_t *env, const uint8_t d[32],
			  const uint8_t pub[KA_PUBKEY_LEN], const char *cn,
			  size_t cn_len, uint8_t *out, size_t cap,
			  size_t *out_len)
	__attribute__((warn_unused_result));

/**
 * ECDSA-sign a SHA-256 hash with d (deterministic, RFC 6979); the DER
 * signature goes to sig[0..cap), *sig_len = its length.
 */
kp_status_t ka_crypto_sign(const ka_crypto_env_t *env, const uint8_t d[32],
			   const uint8_t hash[32], uint8_t *sig, size_t cap,
			   size_t *sig_len) __attribute__((warn_unused_result));

/**
 * Sealed channel, agent side of SECURE_OPEN: check the host's ephemeral
 * point peer (KP_ST_BAD_MESSAGE if it is not on P-256), generate an
 * ephemeral key pair (its point to pub) and a 32-byte nonce, and compute
 * the ECDH shared secret z (x-coordinate, 32 bytes). The ephemeral scalar
 * never leaves this call. Randomness: the TRNG; without one, a DRBG keyed
 * with the stored private scalar `key` (and env->seed, the host nonce) --
 * without a TRNG and without a key there is no secret to draw from and
 * the call fails with KP_ST_NO_ENTROPY.
 */
kp_status_t ka_crypto_ecdh(const ka_crypto_env_t *env, const uint8_t *key,
			   const uint8_t peer[KA_PUBKEY_LEN],
			   uint8_t pub[KA_PUBKEY_LEN], uint8_t nonce[32],
			   uint8_t z[32]) __attribute__((warn_unused_result));

/** HKDF-SHA256 (RFC 5869) of ikm[0..32) with salt[0..32) and info into
 * okm[0..okm_len); runs on env->heap. */
kp_status_t ka_crypto_hkdf(const ka_crypto_env_t *env, const uint8_t salt[32],
			   const uint8_t ikm[32], const uint8_t *info,
			   size_t info_len, uint8_t *okm, size_t okm_len)
	__attribute__((warn_unused_result));

/** AES-256-GCM encryption of buf[0..n) in place; 16-byte tag to tag. */
kp_status_t ka_crypto_gcm_seal(const uint8_t key[32], const uint8_t nonce[12],
			       const uint8_t *aad, size_t aad_len,
			       uint8_t *buf, size_t n, uint8_t tag[16])
	__attribute__((warn_unused_result));

/** AES-256-GCM decryption of buf[0..n) in place; KP_ST_SEAL_AUTH (and buf
 * wiped) if the tag does not verify. */
kp_status_t ka_crypto_gcm_open(const uint8_t key[32], const uint8_t nonce[12],
			       const uint8_t *aad, size_t aad_len,
			       uint8_t *buf, size_t n, const uint8_t tag[16])
	__attribute__((warn_unused_result));

/** SHA-256 of data[0..n) (no heap needed). */
kp_status_t ka_crypto_sha256(const uint8_t *data, size_t n, uint8_t out[32])
	__attribute__((warn_unused_result));

#endif
