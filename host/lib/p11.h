/*
 * kiln station library: CA keys inside a PKCS#11 token.
 *
 * The station's issuing CA key may live in a token (an HSM, a smart card,
 * SoftHSM2 for tests), named by an RFC 7512 URI such as
 *
 *   pkcs11:token=kiln;object=station-ca?pin-source=file:/etc/kiln/pin
 *
 * The key never leaves the token: kiln computes the SHA-256 digest of the
 * to-be-signed bytes and the token signs it (CKM_ECDSA); the raw r||s
 * signature is converted to DER here. The module is dlopen()ed directly
 * (PKCS#11 v2.20+ C API); no OpenSSL ENGINE or provider is involved.
 *
 * URI attributes used: token, manufacturer, model, serial (token match),
 * object (CKA_LABEL), id (CKA_ID), and the query attributes pin-source
 * (file:PATH or an absolute PATH; the first line of the file is the user
 * PIN), pin-value, module-path. The module is, in that order: the URI's
 * module-path, the @module argument (kilnd.conf [ca] pkcs11_module), the
 * KILN_PKCS11_MODULE environment variable, p11-kit's proxy module.
 */
#ifndef KILN_HOST_LIB_P11_H
#define KILN_HOST_LIB_P11_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "host/lib/err.h"

typedef struct ks_p11_key ks_p11_key_t;

#define KS_P11_SIG_DER_MAX 80 /* DER ECDSA-Sig-Value for P-256 */

/* p11-kit's proxy: every module registered with p11-kit. */
#define KS_P11_DEFAULT_MODULE "p11-kit-proxy.so"

/** 1 if @s starts with "pkcs11:" (case-insensitive scheme). */
int ks_p11_is_uri(const char *s);

/**
 * Open the EC P-256 private key named by @uri: load the module, find the
 * token, log in as user, find exactly one private key object matching the
 * URI's object/id. Errors: KS_ERR_ARG (malformed URI), KS_ERR_IO (module
 * or PIN file unreadable), KS_ERR_NOTFOUND (no token or key),
 * KS_ERR_VERIFY (PIN refused), KS_ERR_POLICY (more than one key matches,
 * or not EC), KS_ERR_CRYPTO (other PKCS#11 failures). A message goes to
 * err. The handle is thread-safe.
 */
__attribute__((warn_unused_result))
ks_err_t ks_p11_key_open(const char *uri, const char *module,
			 ks_p11_key_t **out, char *err, size_t errlen);

/** Log out, close the session, release the module; sets *key to NULL. */
void ks_p11_key_free(ks_p11_key_t **key);

/**
 * Sign a SHA-256 digest inside the token (CKM_ECDSA) and return the DER
 * ECDSA-Sig-Value in @sig (up to KS_P11_SIG_DER_MAX bytes).
 */
__attribute__((warn_unused_result))
ks_err_t ks_p11_sign_digest(ks_p11_key_t *key, const uint8_t digest[32],
			    uint8_t *sig, size_t *siglen);

/**
 * Sign @len bytes ECDSA-with-SHA256 inside the token: SHA-256 by OpenSSL,
 * then ks_p11_sign_digest().
 */
__attribute__((warn_unused_result))
ks_err_t ks_p11_sign(ks_p11_key_t *key, const uint8_t *data, size_t len,
		     uint8_t *sig, size_t *siglen);

/**
 * Security attributes of the private key as the token reports them:
 * CKA_SENSITIVE, CKA_EXTRACTABLE, and whether CKA_VALUE could be read
 * (it must not). Each out pointer may be NULL.
 */
__attribute__((warn_unused_result))
ks_err_t ks_p11_key_attrs(ks_p11_key_t *key, int *sensitive, int *extractable,
			  int *value_readable);

/**
 * Generate a P-256 key pair INSIDE the token named by @uri (object label
 * and id from the URI; object is required), the private key with
 * CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE = TRUE, CKA_EXTRACTABLE = FALSE,
 * CKA_SIGN = TRUE. Refuses (KS_ERR_DUPLICATE) if a key object of that
 * label/id exists. *pub receives the public key.
 */
__attribute__((warn_unused_result))
ks_err_t ks_p11_keygen(const char *uri, const char *module, EVP_PKEY **pub,
		       char *err, size_t errlen);

#endif
