/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mbedTLS 3.6 configuration of the application side: what a product
 * firmware (or the POSIX example, examples/mtls-client) needs to do mutual
 * TLS with the identity kiln provisioned, through device/identity/.
 *
 * The agent keeps its own, minimal configuration (kiln_mbedtls_config.h);
 * this one is compiled into a second library from the same pinned source
 * (mbedtls_tls_dep, subprojects/packagefiles/mbedtls/meson.build). The two
 * are never linked into one program: structure layouts differ between
 * configurations.
 *
 * What it enables:
 *  - TLS 1.2 client, key exchange ECDHE-ECDSA only, AES-GCM, SHA-256,
 *    extended master secret; client certificates (the device chain) and
 *    the private-key operation delegated to device/identity (kid_pk_setup);
 *  - X.509 certificate parsing and chain verification, PEM for trust
 *    anchors read from files;
 *  - P-256 ECDSA (deterministic, RFC 6979) and ECDH;
 *  - CTR_DRBG seeded by the entropy module. On POSIX the platform entropy
 *    source (getrandom / /dev/urandom) is used; a bare-metal application
 *    defines MBEDTLS_NO_PLATFORM_ENTROPY and registers its TRNG with
 *    mbedtls_entropy_add_source().
 *
 *  - TLS 1.3 (ephemeral ECDHE key exchange, TLS_AES_128_GCM_SHA256): the
 *    station's enrollment service (docs/bootstrap.md) speaks TLS 1.3
 *    only. In 3.6 TLS 1.3 runs its key schedule through PSA crypto
 *    (MBEDTLS_PSA_CRYPTO_C, not MBEDTLS_USE_PSA_CRYPTO, so the PK layer
 *    keeps legacy EC keys and device/identity's delegated key works):
 *    call psa_crypto_init() before a handshake;
 *  - PKCS#10 CSR writing and HKDF (device/identity/enroll.c: the
 *    operational key's CSR and its storage key).
 *
 * The default libc allocator is used (the application may install a
 * static heap with MBEDTLS_MEMORY_BUFFER_ALLOC_C as the agent does).
 */
#ifndef KILN_MBEDTLS_APP_CONFIG_H
#define KILN_MBEDTLS_APP_CONFIG_H

/* System support */
#define MBEDTLS_HAVE_ASM
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE /* certificate validity periods */
#define MBEDTLS_DEPRECATED_REMOVED

/* Big numbers and elliptic curves: NIST P-256 only */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_MPI_MAX_SIZE 64
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDSA_DETERMINISTIC
#define MBEDTLS_ECDH_C

/* Hashes and random numbers */
#define MBEDTLS_MD_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_HMAC_DRBG_C
#define MBEDTLS_CTR_DRBG_C
#define MBEDTLS_ENTROPY_C

/* Symmetric */
#define MBEDTLS_AES_C
#define MBEDTLS_AES_ROM_TABLES
#define MBEDTLS_CIPHER_C
#define MBEDTLS_GCM_C

/* Keys and certificates */
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_BASE64_C
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C

/* TLS 1.2 client, ECDHE-ECDSA */
#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_CLI_C
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE
#define MBEDTLS_SSL_CIPHERSUITES                       \
	MBEDTLS_TLS1_3_AES_128_GCM_SHA256,             \
		MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256

/* TLS 1.3 client (key schedule through PSA crypto) */
#define MBEDTLS_HKDF_C
#define MBEDTLS_PSA_CRYPTO_C
#define MBEDTLS_SSL_PROTO_TLS1_3
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED

/* PKCS#10 requests (field enrollment) */
#define MBEDTLS_PK_WRITE_C
#define MBEDTLS_X509_CREATE_C
#define MBEDTLS_X509_CSR_WRITE_C

/* POSIX sockets for the example client; error strings */
#define MBEDTLS_NET_C
#define MBEDTLS_ERROR_C

#endif /* KILN_MBEDTLS_APP_CONFIG_H */
