/*
 * Test support for the registry and audit tests: a temporary directory,
 * a throwaway P-256 CA and station key made with OpenSSL EVP, certificate
 * issuance, and a helper that drives one session to ACTIVE through the
 * real registry API. Helpers abort the test program on OpenSSL or libc
 * failure (tests only).
 */
#ifndef KILN_TESTS_UNIT_TEST_REGISTRY_UTIL_H
#define KILN_TESTS_UNIT_TEST_REGISTRY_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "host/lib/registry.h"

typedef struct {
	EVP_PKEY *key;
	X509 *cert;
} tr_ca_t;

/** mkdtemp under $TMPDIR (or /tmp); returns a static-lifetime string. */
char *tr_tmpdir(void);
/** Remove the directory made by tr_tmpdir() and its files. */
void tr_rmdir(const char *dir);
/** "<dir>/<name>" into a malloc'ed string. */
char *tr_path(const char *dir, const char *name);
/** A fresh P-256 key. */
EVP_PKEY *tr_p256(void);
/** Self-signed CA with subject CN=cn; its PEM written to pem_path if set. */
void tr_ca_init(tr_ca_t *ca, const char *cn, const char *pem_path);
void tr_ca_free(tr_ca_t *ca);
/** Issue a DER certificate for pub with serial `serial`; malloc'ed. */
uint8_t *tr_issue(const tr_ca_t *ca, EVP_PKEY *pub, uint64_t serial,
		  const char *cn, size_t *len);
/** SHA-256 of the key's SubjectPublicKeyInfo. */
void tr_pubhash(EVP_PKEY *k, uint8_t out[32]);
/** Upper-case hex of a serial as BN_bn2hex prints it. */
void tr_serial_hex(uint64_t serial, char *out, size_t cap);
/** Copy a file; 0 on success. */
int tr_copy(const char *from, const char *to);
/** Run SQL on a database file with a plain SQLite connection; 0 on OK. */
int tr_sql(const char *path, const char *sql);

/**
 * Drive a session for `uid` through every step to `stop_at` (ACTIVE for a
 * full run) using a fresh device key and certificate serial `cert_serial`.
 * Returns the session id (> 0) or -(ks_err_t) of the first failing call.
 */
int64_t tr_provision(ks_reg_t *reg, const tr_ca_t *ca, const char *lot,
		     const char *uid, int reprovision, uint64_t cert_serial,
		     ks_reg_state_t stop_at);

#endif
