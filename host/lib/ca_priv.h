/*
 * kiln station library: CA internals shared with the signer only.
 * Nothing outside host/lib/ca.c and host/lib/signer.c includes this.
 */
#ifndef KILN_HOST_LIB_CA_PRIV_H
#define KILN_HOST_LIB_CA_PRIV_H

#include <openssl/x509.h>

#include "host/lib/ca.h"

#define KS_CA_SERIAL_LEN 16

/** The issuing certificate of @ca (borrowed). */
X509 *ks_ca_cert_borrow(const ks_ca_t *ca);

/** The private key of @ca (borrowed; signer only). For a token key this
 *  is the public key only: sign with ks_ca_sign_der(). */
EVP_PKEY *ks_ca_key_borrow(const ks_ca_t *ca);

/**
 * Sign @x (ECDSA with SHA-256) with the CA key, in the token when the key
 * is there, and return the DER certificate (*der: OPENSSL_free()).
 */
__attribute__((warn_unused_result))
ks_err_t ks_ca_sign_der(const ks_ca_t *ca, X509 *x, unsigned char **der,
			int *len);

/**
 * Draw a certificate serial from the CSPRNG: 16 bytes, top bit cleared and
 * the next bit set, so the INTEGER is positive, non-zero, always 16 bytes
 * long and carries 126 random bits. Writes the raw bytes to raw.
 */
__attribute__((warn_unused_result))
ks_err_t ks_ca_random_serial(uint8_t raw[KS_CA_SERIAL_LEN],
			     ASN1_INTEGER **out);

#endif
