/*
 * kiln station library: station-generated device keys ("host" key origin)
 * and P-256 public key conversions.
 *
 * Lifetime of a host key: ks_hostkey_generate() creates it in memory;
 * the session exports the 32-byte scalar with ks_hostkey_export_scalar()
 * only to wrap it for the device's encrypted session, wipes that buffer
 * with OPENSSL_cleanse() right after, and frees the key with
 * ks_hostkey_free() (OpenSSL clears the private scalar on free) as soon as
 * the certificate has been issued and the key delivered. The private key is
 * never written to disk, the registry or a log.
 */
#ifndef KILN_HOST_LIB_HOSTKEY_H
#define KILN_HOST_LIB_HOSTKEY_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "host/lib/err.h"

#define KS_P256_SCALAR_LEN 32
#define KS_P256_POINT_LEN 65 /* 0x04 || X || Y */
#define KS_P256_SPKI_LEN 91  /* canonical DER SubjectPublicKeyInfo */

/** Generate a fresh P-256 key pair from the OpenSSL CSPRNG into *key. */
__attribute__((warn_unused_result))
ks_err_t ks_hostkey_generate(EVP_PKEY **key);

/**
 * Write the private scalar of a P-256 key to out, big-endian, left-padded
 * with zeros. The caller must OPENSSL_cleanse(out, 32) after use.
 */
__attribute__((warn_unused_result))
ks_err_t ks_hostkey_export_scalar(const EVP_PKEY *key,
				  uint8_t out[KS_P256_SCALAR_LEN]);

/** Write the public point of a P-256 key (uncompressed, 65 bytes). */
__attribute__((warn_unused_result))
ks_err_t ks_hostkey_pubkey_point(const EVP_PKEY *key,
				 uint8_t out[KS_P256_POINT_LEN]);

/** Free a host key (the scalar is cleared) and set *key to NULL. */
void ks_hostkey_free(EVP_PKEY **key);

/**
 * Check an uncompressed P-256 point: 0x04 prefix, coordinates below the
 * field prime, on the curve (P-256 has cofactor 1, so that is a full
 * public-key validation). KS_ERR_VERIFY on a bad point, KS_ERR_NOMEM or
 * KS_ERR_CRYPTO when the check could not run. Cheap (no EVP_PKEY, no
 * provider lookup, the curve's group is built once): use it where only
 * validity matters.
 */
__attribute__((warn_unused_result))
ks_err_t ks_pubkey_point_check(const uint8_t pt[KS_P256_POINT_LEN]);

/**
 * Build a public-only P-256 EVP_PKEY from an uncompressed point. The point
 * is checked as by ks_pubkey_point_check(). Returns KS_ERR_VERIFY on a bad
 * point.
 */
__attribute__((warn_unused_result))
ks_err_t ks_pubkey_from_point(const uint8_t pt[KS_P256_POINT_LEN],
			      EVP_PKEY **out);

/**
 * Write the uncompressed point of any P-256 key (public or private).
 * Returns KS_ERR_POLICY when the key is not an EC P-256 key.
 */
__attribute__((warn_unused_result))
ks_err_t ks_pubkey_point(const EVP_PKEY *key, uint8_t out[KS_P256_POINT_LEN]);

/**
 * Encode the canonical DER SubjectPublicKeyInfo of a P-256 point
 * (id-ecPublicKey, namedCurve prime256v1, uncompressed point). The point is
 * not checked here; ks_pubkey_point_check() does that.
 */
void ks_pubkey_spki_encode(const uint8_t pt[KS_P256_POINT_LEN],
			   uint8_t out[KS_P256_SPKI_LEN]);

/**
 * If @spki is exactly a canonical P-256 SubjectPublicKeyInfo, copy its
 * point to @pt and return 1; otherwise return 0 (no allocation, no
 * decoder: a fast path in front of d2i_PUBKEY).
 */
int ks_pubkey_spki_point(const uint8_t *spki, size_t len,
			 uint8_t pt[KS_P256_POINT_LEN]);

/**
 * The fingerprint the registry keeps unique: SHA-256 of the DER
 * SubjectPublicKeyInfo of the key in its canonical form (id-ecPublicKey,
 * namedCurve prime256v1, uncompressed point) — exactly the SPKI the signer
 * places into certificates, whatever form the device sent.
 */
__attribute__((warn_unused_result))
ks_err_t ks_pubkey_spki_sha256(const EVP_PKEY *key, uint8_t out[32]);

#endif
