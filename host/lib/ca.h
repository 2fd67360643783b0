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
 * certificate and key: a PEM file (any OSSL_STORE URI), or a pkcs11: URI
 * (RFC 7512) naming a key that stays inside a token (host/lib/p11.h).
 *
 * Release gate: every certificate ks_ca_init_dev() makes carries
 * OU=KS_CA_DEV_MARKER; ks_ca_chain_is_dev() recognises that and the
 * published test keys, and kilnd refuses such a chain for a profile
 * marked production.
 */
#ifndef KILN_HOST_LIB_CA_H
#define KILN_HOST_LIB_CA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "host/lib/err.h"
#include "host/lib/profile.h"

typedef struct ks_ca ks_ca_t;

/* File names written by ks_ca_init_dev() inside its directory. */
#define KS_CA_FILE_ROOT "root.pem"
#define KS_CA_FILE_CERT "station-ca.pem"
#define KS_CA_FILE_KEY "station-ca.key"
#define KS_CA_FILE_CHAIN "chain.pem"
#define KS_CA_FILE_AUDIT_KEY "station.key"
#define KS_CA_FILE_AUDIT_PUB "station.pub"

#define KS_CA_ORG_MAX 40 /* characters of the organisation name */

/* organizationalUnitName of every certificate ks_ca_init_dev() makes. */
#define KS_CA_DEV_MARKER "kiln development CA - not for production"

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
 * ks_ca_init_dev() with the station CA key generated INSIDE a PKCS#11
 * token (ks_p11_keygen(): P-256, sensitive, not extractable) named by
 * @uri (pkcs11:token=...;object=LABEL?pin-source=file:PATH); @module is
 * the PKCS#11 module (NULL: see host/lib/p11.h). The development root
 * stays a file-less throwaway as in ks_ca_init_dev(); station-ca.key is
 * not written (the [ca] key of kilnd.conf is the URI).
 */
__attribute__((warn_unused_result))
ks_err_t ks_ca_init_dev_pkcs11(const char *dir, const char *org,
			       const char *uri, const char *module, char *err,
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

/**
 * ks_ca_load(), where @key_uri may also be a pkcs11: URI: the key is then
 * opened in the token (module @pkcs11_module, NULL for the default; see
 * host/lib/p11.h), and it must produce a signature that verifies with the
 * certificate's public key (KS_ERR_VERIFY otherwise).
 */
__attribute__((warn_unused_result))
ks_err_t ks_ca_load_ex(const char *cert_pem_path, const char *key_uri,
		       const char *chain_pem_path, const char *pkcs11_module,
		       ks_ca_t **ca);

/** 1 if the CA's private key is in a PKCS#11 token. */
int ks_ca_key_in_token(const ks_ca_t *ca);

/**
 * Release gate: 1 if any certificate of @chain was made by
 * ks_ca_init_dev() (OU=KS_CA_DEV_MARKER) or carries a published test key
 * (a list of SPKI SHA-256 values built into kiln); the reason goes to @why.
 * 0 otherwise.
 */
int ks_ca_chain_is_dev(const STACK_OF(X509) *chain, char *why, size_t whylen);

/**
 * The release gate over @n configured profiles. When @chain is a
 * development or test chain (ks_ca_chain_is_dev()): KS_ERR_POLICY if any
 * profile is marked production (one line per such profile in @msg, naming
 * it and the reason), else KS_OK with *warn = 1 and a warning in @msg.
 * KS_OK with *warn = 0 and an empty @msg for a production-fit chain.
 */
__attribute__((warn_unused_result))
ks_err_t ks_ca_release_gate(const STACK_OF(X509) *chain,
			    const ks_profile_t *profiles, size_t n, int *warn,
			    char *msg, size_t msglen);

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
