/*
 * Test support: real OpenSSL operations the tests need around the agent
 * (throwaway CA, key generation, CSRs, point conversion). Not a mock:
 * each helper is a thin wrapper over OpenSSL 3. Helpers abort the test
 * program on OpenSSL failure (tests only).
 */
#ifndef KILN_TESTS_OSSL_UTIL_H
#define KILN_TESTS_OSSL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

typedef struct {
	EVP_PKEY *key;
	X509 *cert;
	long next_serial;
} tu_ca_t;

/** A fresh P-256 key pair. */
EVP_PKEY *tu_p256_new(void);

/** The uncompressed public point of k into out[65]. */
void tu_pubkey_raw(EVP_PKEY *k, uint8_t out[65]);

/** The private scalar of a P-256 key, big-endian, into out[32]. */
void tu_privkey_raw(EVP_PKEY *k, uint8_t out[32]);

/** A public-only EVP_PKEY for an uncompressed point (NULL if invalid). */
EVP_PKEY *tu_pkey_from_raw(const uint8_t pub[65]);

/** A DER PKCS#10 request for k with subject CN=cn (malloc'd). */
uint8_t *tu_make_csr(EVP_PKEY *k, const char *cn, size_t *len);

/** Subject CN of a DER CSR into cn (0 on success). */
int tu_csr_cn(const uint8_t *der, size_t len, char *cn, size_t cap);

/** Public key of a DER CSR (NULL if it does not parse). */
EVP_PKEY *tu_csr_pubkey(const uint8_t *der, size_t len);

/** A self-signed P-256 CA. */
void tu_ca_init(tu_ca_t *ca, const char *cn);
void tu_ca_free(tu_ca_t *ca);

/** The CA certificate, DER (malloc'd). */
uint8_t *tu_ca_cert_der(const tu_ca_t *ca, size_t *len);

/** Issue an end-entity certificate for pub, subject CN=cn; DER, malloc'd. */
uint8_t *tu_ca_issue(tu_ca_t *ca, EVP_PKEY *pub, const char *cn, size_t *len);

/** Uncompressed point of the key in a DER certificate; 0 on success. */
int tu_cert_pubkey_raw(const uint8_t *der, size_t len, uint8_t out[65]);

/** 1 if the DER certificate verifies under the CA key. */
int tu_cert_signed_by(const uint8_t *der, size_t len, const tu_ca_t *ca);

/** ECDSA P-256 / SHA-256 DER signature over msg (sig cap >= 72). */
size_t tu_sign(EVP_PKEY *k, const uint8_t *msg, size_t n, uint8_t *sig);

/** SHA-256 of data. */
void tu_sha256(const uint8_t *data, size_t n, uint8_t out[32]);

#endif
