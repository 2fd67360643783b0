/*
 * kiln runtime identity API: what the product firmware links to use the
 * identity kiln provisioned (device/identity, prefix kid_).
 *
 * It reads the records the agent wrote (device/core/record.h) through the
 * HAL's OTP and flash read functions only; it never writes. kid_open()
 * checks the stored identity once at boot and refuses to work on any
 * mismatch; afterwards the application gets the device certificate chain,
 * the serial and UID, the lock state, and signatures made with the
 * provisioned key: either raw (kid_sign) or through an mbedTLS pk context
 * for TLS client authentication (kid_pk_setup).
 *
 * The private scalar never leaves the library: each signature loads it
 * from its OTP key slot (re-checking the slot's check word), signs, and
 * wipes every copy (the scalar, the mbedTLS key pair, the DRBG) before
 * returning. No function returns or exports it.
 *
 * One identity per device: the state is a single static instance (no
 * allocation by this library beyond what mbedTLS allocates during a
 * signature, through mbedtls_calloc). Not thread-safe: call it from one
 * thread, or serialise the calls. Docs: docs/identity-api.md.
 */
#ifndef KILN_DEVICE_IDENTITY_IDENTITY_H
#define KILN_DEVICE_IDENTITY_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mbedtls/pk.h"
#if defined(MBEDTLS_X509_CRT_PARSE_C)
#include "mbedtls/x509_crt.h"
#endif

#define KID_WUR __attribute__((warn_unused_result))

/* Largest identity blob the library copies into RAM (bytes). A blob
 * larger than this is refused with KID_ERR_TOO_LARGE; a product with
 * long chains raises it at build time. */
#ifndef KID_BLOB_MAX
#define KID_BLOB_MAX 4096u
#endif

#define KID_PUBKEY_LEN 65u  /* uncompressed P-256 point 04|X|Y */
#define KID_SIG_MAX 72u     /* DER ECDSA P-256 signature, worst case */
#define KID_SERIAL_MAX 64u  /* characters */
#define KID_UID_MAX 32u     /* bytes */

/* Lock bits (kid_lock_state), as the hardware reports them; the same
 * values as the wire protocol's KP_LOCK_*. */
#define KID_LOCK_OTP 0x01u   /* identity OTP blocks locked */
#define KID_LOCK_FLASH 0x02u /* identity flash write-protected */
#define KID_LOCK_DEBUG 0x04u /* debug port disabled / readout protection */

/* kid_open() flags. */
#define KID_OPEN_REQUIRE_LOCKED 0x01u /* refuse an identity whose OTP
					 blocks and flash are not locked */

/* Errors: stable codes, only ever appended. */
#define KID_ERRORS(X)                                                        \
	X(KID_OK, 0, "ok")                                                   \
	X(KID_ERR_ARG, 1, "invalid argument")                                \
	X(KID_ERR_NOT_OPEN, 2, "identity not opened (kid_open)")             \
	X(KID_ERR_STORAGE, 3, "OTP or flash could not be read")              \
	X(KID_ERR_FOREIGN, 4, "OTP header is not a kiln record header")      \
	X(KID_ERR_NO_KEY, 5, "no valid key slot: device not provisioned")    \
	X(KID_ERR_NOT_COMMITTED, 6, "no identity committed")                 \
	X(KID_ERR_COMMIT_DAMAGED, 7,                                         \
	  "the identity commit record in OTP is damaged")                    \
	X(KID_ERR_STALE_COMMIT, 8,                                           \
	  "the committed identity belongs to another key slot")              \
	X(KID_ERR_TOO_LARGE, 9, "identity blob larger than KID_BLOB_MAX")    \
	X(KID_ERR_DIGEST, 10,                                                \
	  "identity blob in flash does not match the OTP digest")            \
	X(KID_ERR_BLOB, 11, "identity blob is malformed")                    \
	X(KID_ERR_KEY, 12, "the key slot holds no valid P-256 key")          \
	X(KID_ERR_KEY_MISMATCH, 13,                                          \
	  "identity blob public key differs from the stored key's")          \
	X(KID_ERR_CERT_MISMATCH, 14,                                         \
	  "device certificate does not carry the stored key")                \
	X(KID_ERR_UNLOCKED, 15, "identity is not locked")                    \
	X(KID_ERR_CRYPTO, 16, "cryptographic operation failed")              \
	X(KID_ERR_BUFFER, 17, "output buffer too small")                    \
	X(KID_ERR_NET, 18, "network or TLS failure")                         \
	X(KID_ERR_REFUSED, 19, "the enrollment service refused the request") \
	X(KID_ERR_RESPONSE, 20, "malformed enrollment response")             \
	X(KID_ERR_NO_OPERATIONAL, 21, "no operational identity stored")

typedef enum {
#define KID_X(name, code, text) name = code,
	KID_ERRORS(KID_X)
#undef KID_X
} kid_err_t;

/** Text of an error code (never NULL; "unknown error" for others). */
const char *kid_strerror(kid_err_t e);

/**
 * Check the stored identity and make it the library's: the OTP record
 * header, the newest valid key slot and the commit record bound to it,
 * the flash blob (copied to RAM, whose SHA-256 must equal the OTP digest),
 * the blob's structure, the key (a valid P-256 scalar whose public point
 * equals the blob's), and the device certificate (its subjectPublicKeyInfo
 * must carry that point). flags: KID_OPEN_REQUIRE_LOCKED. Returns KID_OK or
 * the first check that failed; on failure nothing is open. Calling it
 * again re-checks (and replaces) the open identity.
 */
kid_err_t kid_open(uint32_t flags) KID_WUR;

/** Forget the open identity and wipe the library's state. Idempotent. */
void kid_close(void);

/** True between a successful kid_open() and kid_close(). */
bool kid_is_open(void);

/**
 * Borrow the device certificate (DER) and the issuing chain
 * (concatenated DER certificates, issuer first, up to the root; may be
 * empty: *chain_len = 0). The pointers stay valid until kid_close() or
 * the next kid_open(). chain/chain_len may be NULL.
 */
kid_err_t kid_cert_chain(const uint8_t **cert, size_t *cert_len,
			 const uint8_t **chain, size_t *chain_len) KID_WUR;

/** The device serial number (printable ASCII, NUL-terminated), or "" if
 * no identity is open. Borrowed like kid_cert_chain(). */
const char *kid_serial(void);

/** Copy the hardware UID into buf[0..cap); *len = its length (4..32). */
kid_err_t kid_uid(uint8_t *buf, size_t cap, size_t *len) KID_WUR;

/** Copy the device public key (uncompressed point) into pub. */
kid_err_t kid_pubkey(uint8_t pub[KID_PUBKEY_LEN]) KID_WUR;

/**
 * Lock bits (KID_LOCK_*) read back from the hardware now (not cached).
 * KID_ERR_STORAGE if the HAL cannot tell.
 */
kid_err_t kid_lock_state(uint8_t *lock) KID_WUR;

/**
 * ECDSA P-256 signature of a SHA-256 hash with the device key
 * (deterministic, RFC 6979), DER-encoded into sig[0..cap) (KID_SIG_MAX is
 * always enough); *sig_len = its length. The key is loaded from OTP for
 * this call and wiped before it returns.
 */
kid_err_t kid_sign(const uint8_t hash[32], uint8_t *sig, size_t cap,
		   size_t *sig_len) KID_WUR;

/**
 * Derive a 32-byte key from the device key for the application (HKDF-
 * SHA256 with the OTP private scalar as input keying material, @info as
 * context; the scalar is loaded for this call and wiped). The same device
 * and info always give the same key; no other part can compute it. Used
 * to encrypt data kept outside the locked identity, e.g. the operational
 * key of field enrollment (device/identity/enroll.h).
 */
kid_err_t kid_derive_key(const uint8_t *info, size_t info_len,
			 uint8_t out[32]) KID_WUR;

/**
 * Set up pk (mbedtls_pk_init'ed, empty) as the device key for mbedTLS:
 * an EC key whose public part is the device key's and whose signing
 * operation calls into this library (the private scalar is never in pk).
 * Use it with mbedtls_ssl_conf_own_cert(); release it with
 * mbedtls_pk_free(). It signs only while the identity is open.
 */
kid_err_t kid_pk_setup(mbedtls_pk_context *pk) KID_WUR;

#if defined(MBEDTLS_X509_CRT_PARSE_C)
/**
 * Parse the device certificate and then each chain certificate into crt
 * (mbedtls_x509_crt_init'ed), in that order, ready for
 * mbedtls_ssl_conf_own_cert(). KID_ERR_BLOB if one does not parse.
 */
kid_err_t kid_x509_chain(mbedtls_x509_crt *crt) KID_WUR;
#endif

#endif
