/*
 * kiln station library: the issuing certificate authority.
 *
 * A ks_ca_t holds the issuing CA certificate, its private key and the chain
 * up to a self-signed root. The key is only ever handed to the signer
 * (host/lib/signer.h), which takes ownership of the ks_ca_t: code that
 * parses device bytes works with a ks_signer_t, never with a ks_ca_t.
 *
 * ks_ca_init_dev() makes a DEVELOPMENT CA for trying things out. In
 * production ks_ca_load() points at the company's existing issuing CA
 * certificate and key (a PEM file now; any OSSL_STORE URI such as a
 * pkcs11: URI once a PKCS#11 provider is configured).
 */
#ifndef KILN_HOST_LIB_CA_H
#define KILN_HOST_LIB_CA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "host/lib/err.h"

typedef struct ks_ca ks_ca_t;

/* File names written by ks_ca_init_dev() inside its directory. */
#define KS_CA_FILE_ROOT "root.pem"
#define KS_CA_FILE_CERT "station-ca.pem"
#define KS_CA_FILE_KEY "station-ca.key"
#define KS_CA_FILE_CHAIN "chain.pem"
#define KS_CA_FILE_AUDIT_KEY "station.key"
#define KS_CA_FILE_AUDIT_PUB "station.pub"

#define KS_CA_ORG_MAX 40 /* characters of the organisation name */

/**
 * Create a development PKI in @dir (created 0700 if missing): a P-256 root
 * (self-signed, 10 years, CA:TRUE critical, keyCertSign|cRLSign), a
 * station intermediate signed by it (P-256, 5 years, CA:TRUE pathlen:0),
 * and the station's audit signing key. Writes root.pem, station-ca.pem,
 * station-ca.key (0600), chain.pem (intermediate then root), station.key
 * (0600) and station.pub. The root private key is discarded once it has
 * signed the intermediate. Refuses (KS_ERR_DUPLICATE) if any of the files
 * exists; on failure removes what it created. A message goes to err.
 */
__attribute__((warn_unused_result))
ks_err_t ks_ca_init_dev(const char *dir, const char *org, char *err,
			size_t errlen);

/**
 * Load an issuing CA. @cert_pem_path: the CA certificate (PEM). @key_uri:
 * a file path or an OSSL_STORE URI ("file:/...", later "pkcs11:...") of
 * its private key (unencrypted). @chain_pem_path: PEM certificates up to
 * and including a self-signed root (may repeat the CA cert); NULL when the
 * CA cert is itself the root. Checks that the key matches the certificate
 * (KS_ERR_VERIFY), that the certificate is a CA allowed to sign
 * certificates with an EC key (KS_ERR_POLICY), and that it verifies
 * against the chain now (KS_ERR_VERIFY).
 */
__attribute__((warn_unused_result))
ks_err_t ks_ca_load(const char *cert_pem_path, const char *key_uri,
		    const char *chain_pem_path, ks_ca_t **ca);

/** Free a CA (the private key is cleared) and set *ca to NULL. */
void ks_ca_free(ks_ca_t **ca);

/**
 * The chain of @ca, borrowed: the issuing CA certificate first, then its
 * issuers up to the root. Valid while @ca lives.
 */
const STACK_OF(X509) *ks_ca_chain(const ks_ca_t *ca);

/** Read all certificates from a PEM file into a new stack. */
__attribute__((warn_unused_result))
ks_err_t ks_ca_chain_load(const char *pem_path, STACK_OF(X509) **out);

/**
 * Build a verification store whose trust anchors are the self-signed
 * certificates in @chain (the others must be passed as untrusted
 * intermediates, as ks_ca_verify_cert() does).
 */
__attribute__((warn_unused_result))
ks_err_t ks_ca_store_new(const STACK_OF(X509) *chain, X509_STORE **out);

/**
 * Verify @cert against @chain (roots trusted, the rest untrusted
 * intermediates), with X509_V_FLAG_X509_STRICT, at time @at (0 = now).
 * Returns KS_OK or KS_ERR_VERIFY (reason logged and, if @why is non-NULL,
 * written there).
 */
__attribute__((warn_unused_result))
ks_err_t ks_ca_verify_cert(const STACK_OF(X509) *chain, X509 *cert,
			   time_t at, char *why, size_t whylen);

/** ks_ca_verify_cert() on a DER certificate (trailing bytes refused). */
__attribute__((warn_unused_result))
ks_err_t ks_ca_verify_der(const STACK_OF(X509) *chain, const uint8_t *der,
			  size_t len, time_t at, char *why, size_t whylen);

#endif
