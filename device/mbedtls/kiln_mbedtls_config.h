/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mbedTLS 3.6 configuration of the kiln agent.
 *
 * One configuration serves the POSIX simulator and the Cortex-M firmware, so
 * the simulator exercises exactly the crypto the boards run. It is selected
 * with -DMBEDTLS_CONFIG_FILE="kiln_mbedtls_config.h" (mbedtls_dep does that).
 *
 * What the agent does with it:
 *  - generate a P-256 key pair and write a PKCS#10 CSR (ECDSA, SHA-256);
 *  - sign challenges deterministically (RFC 6979 via HMAC_DRBG), so a board
 *    without a TRNG cannot leak its key through a repeated nonce;
 *  - run the encrypted channel for station-generated keys: ephemeral
 *    ECDH P-256, HKDF-SHA-256, AES-GCM;
 *  - a CTR_DRBG seeded by the HAL's RNG (or a station-supplied seed).
 *
 * Memory: MBEDTLS_PLATFORM_NO_STD_FUNCTIONS means there is no default
 * calloc/free. Every program that uses this library must hand mbedTLS a
 * static heap first with mbedtls_memory_buffer_alloc_init(buf, len); until
 * then every allocation fails cleanly (returns NULL). The firmware thus
 * never links the C library's malloc, and the simulator runs the very same
 * allocator.
 *
 * Deliberately absent: ENTROPY_C (the HAL feeds the DRBG), NET/FS_IO/TIME,
 * TLS, X.509 parsing, PEM/base64, the cipher layer, PSA crypto
 * (MBEDTLS_PSA_CRYPTO_C / MBEDTLS_USE_PSA_CRYPTO: 3.6 does not require
 * them for any module enabled here) and the error-string table.
 */
#ifndef KILN_MBEDTLS_CONFIG_H
#define KILN_MBEDTLS_CONFIG_H

/* System support */
#define MBEDTLS_HAVE_ASM		/* bn_mul.h assembly: x86-64, Thumb-2 */
#define MBEDTLS_DEPRECATED_REMOVED

/* Platform: a static heap, no libc allocator, no OS entropy */
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY
#define MBEDTLS_PLATFORM_NO_STD_FUNCTIONS
#define MBEDTLS_PLATFORM_SNPRINTF_MACRO	snprintf /* oid.c; no allocation */
#define MBEDTLS_MEMORY_BUFFER_ALLOC_C
#define MBEDTLS_MEMORY_ALIGN_MULTIPLE	8
#define MBEDTLS_NO_PLATFORM_ENTROPY

/* Big numbers and elliptic curves: NIST P-256 only, small tables */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_MPI_MAX_SIZE		64	/* bytes; P-256 needs 32 */
#define MBEDTLS_MPI_WINDOW_SIZE		2
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
/* Bignum division without a 64-by-32 hardware-less libgcc division
 * (__aeabi_uldivmod, ~0.7 KiB on Cortex-M) */
#define MBEDTLS_NO_UDBL_DIVISION
#define MBEDTLS_ECP_WINDOW_SIZE		2
#define MBEDTLS_ECP_FIXED_POINT_OPTIM	0
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDSA_DETERMINISTIC
#define MBEDTLS_ECDH_C

/* Hashes, MAC-based constructions, random generators */
#define MBEDTLS_MD_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA256_SMALLER
#define MBEDTLS_HKDF_C
#define MBEDTLS_HMAC_DRBG_C
#define MBEDTLS_CTR_DRBG_C

/* Symmetric: AES (CTR_DRBG, GCM) with the smallest tables, in flash */
#define MBEDTLS_AES_C
#define MBEDTLS_AES_ROM_TABLES
#define MBEDTLS_AES_FEWER_TABLES
/* CTR_DRBG and GCM only ever encrypt with AES: drop the decryption
 * rounds, the inverse key schedule and the reverse table (~2.5 KiB). */
#define MBEDTLS_BLOCK_CIPHER_NO_DECRYPT
#define MBEDTLS_GCM_C

/* Keys and certificate requests */
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_PK_WRITE_C
#define MBEDTLS_X509_CREATE_C
#define MBEDTLS_X509_CSR_WRITE_C
/* No human-readable OID/X.509 descriptions in the agent */
#define MBEDTLS_X509_REMOVE_INFO

#endif /* KILN_MBEDTLS_CONFIG_H */
