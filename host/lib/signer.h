/*
 * kiln station library: the signer — the only holder of the CA key.
 *
 * Everything that parses device bytes talks to a ks_signer_t through plain
 * request/response structs (fixed-size fields, no pointers), so the signer
 * can move into its own process or in front of a PKCS#11 HSM without
 * changing its callers. The signer owns its policy: profiles are registered
 * once from the trusted configuration and a request only names one; the
 * subject and SAN are built from the profile's templates and the station's
 * own values (registry serial, UID as hex, lot), never from strings a
 * device supplied; validity comes from the profile; the subject key must be
 * of the profile's algorithm (EC P-256); an optional quota caps the
 * certificates signed per lot.
 */
#ifndef KILN_HOST_LIB_SIGNER_H
#define KILN_HOST_LIB_SIGNER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>

#include "host/lib/ca.h"
#include "host/lib/err.h"
#include "host/lib/hostkey.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"

typedef struct ks_signer ks_signer_t;

#define KS_ISSUE_SERIAL_MAX 65 /* device serial, 1..64 chars + NUL */
#define KS_ISSUE_LOT_MAX 65    /* lot name, 0..64 chars + NUL */
#define KS_ISSUE_UID_MIN 4
#define KS_ISSUE_UID_MAX 32
#define KS_ISSUE_SPKI_MAX 512  /* DER SubjectPublicKeyInfo */
#define KS_CERT_DER_MAX 2048   /* as the identity blob's cert field */
#define KS_CERT_SERIAL_HEX_LEN 32

/**
 * An issuance request (plain data). Strings are NUL-terminated inside their
 * arrays; serial and lot use only [A-Za-z0-9._-]. origin must match the
 * profile's key_origin. spki is the subject's DER SubjectPublicKeyInfo; fill
 * it with ks_issue_req_set_pubkey() or ks_issue_req_set_point().
 */
typedef struct {
	char profile[KS_PROFILE_NAME_MAX];
	char serial[KS_ISSUE_SERIAL_MAX];
	char lot[KS_ISSUE_LOT_MAX];
	uint8_t uid[KS_ISSUE_UID_MAX];
	uint32_t uid_len;
	uint32_t origin; /* ks_key_origin_t */
	uint8_t spki[KS_ISSUE_SPKI_MAX];
	uint32_t spki_len;
	/* registry session the certificate is for (0: none). The in-process
	 * signer ignores it; the signer process (ks_signer_serve()) requires
	 * a KEYED session of that id whose row matches the request. */
	int64_t session_id;
} ks_issue_req_t;

/**
 * An issued certificate (plain data). spki_sha256 is SHA-256 over the DER
 * SubjectPublicKeyInfo inside the certificate (canonical form: namedCurve
 * prime256v1, uncompressed point), the value the registry keeps unique;
 * ks_pubkey_spki_sha256() computes the same from a key. Times are unix
 * seconds (UTC).
 */
typedef struct {
	uint8_t der[KS_CERT_DER_MAX];
	uint32_t der_len;
	char serial_hex[KS_CERT_SERIAL_HEX_LEN + 1]; /* lowercase */
	uint8_t spki_sha256[32];
	int64_t not_before;
	int64_t not_after;
} ks_issued_t;

/** Put the DER SubjectPublicKeyInfo of @key (any type) into @req. */
__attribute__((warn_unused_result))
ks_err_t ks_issue_req_set_pubkey(ks_issue_req_t *req, const EVP_PKEY *key);

/** Put a P-256 public point (65 bytes, uncompressed) into @req. */
__attribute__((warn_unused_result))
ks_err_t ks_issue_req_set_point(ks_issue_req_t *req,
				const uint8_t pt[KS_P256_POINT_LEN]);

/**
 * Create a signer from a loaded CA. Takes ownership of *ca (sets it to
 * NULL, also on failure) so nothing else keeps a handle on the key.
 */
__attribute__((warn_unused_result))
ks_err_t ks_signer_new(ks_ca_t **ca, ks_signer_t **out);

/** Free a signer and its CA; sets *signer to NULL. Accepts NULL. */
void ks_signer_free(ks_signer_t **signer);

/**
 * Register a copy of a profile (checked with ks_profile_validate()).
 * KS_ERR_DUPLICATE if a profile of that name exists, KS_ERR_CONFIG if it
 * is incomplete.
 */
__attribute__((warn_unused_result))
ks_err_t ks_signer_add_profile(ks_signer_t *signer, const ks_profile_t *p);

/**
 * Set the quota of one lot (certificates signed; 0 = unlimited), which
 * overrides the lot_quota of the profiles issuing into that lot.
 */
__attribute__((warn_unused_result))
ks_err_t ks_signer_set_lot_quota(ks_signer_t *signer, const char *lot,
				 uint64_t quota);

/**
 * Seed the count of certificates already signed for @lot (from the
 * registry at start-up, so a restart does not reset a quota).
 */
__attribute__((warn_unused_result))
ks_err_t ks_signer_set_lot_issued(ks_signer_t *signer, const char *lot,
				  uint64_t issued);

/** Certificates signed for @lot so far (including seeded ones). */
uint64_t ks_signer_lot_issued(ks_signer_t *signer, const char *lot);

/**
 * Check @req against policy and, if allowed, sign a certificate into @out.
 * Errors: KS_ERR_ARG (malformed request), KS_ERR_NOTFOUND (unknown
 * profile), KS_ERR_POLICY (key type/curve, key origin, or names that do not
 * fit the profile's rules), KS_ERR_QUOTA (lot quota reached),
 * KS_ERR_CRYPTO. Every signature counts against the quota, including
 * certificates the caller later voids. Thread-safe.
 */
__attribute__((warn_unused_result))
ks_err_t ks_signer_issue(ks_signer_t *signer, const ks_issue_req_t *req,
			 ks_issued_t *out);

/** Number of certificates in the CA chain (issuing CA first ... root). */
size_t ks_signer_chain_len(const ks_signer_t *signer);

/**
 * DER of chain certificate @idx (0 = the issuing CA), borrowed: valid
 * while the signer lives.
 */
__attribute__((warn_unused_result))
ks_err_t ks_signer_chain_der(const ks_signer_t *signer, size_t idx,
			     const uint8_t **der, size_t *len);

/** The CA chain (borrowed), e.g. for ks_ca_verify_cert(). */
const STACK_OF(X509) *ks_signer_chain(const ks_signer_t *signer);

/**
 * SHA-256 of the canonical DER SubjectPublicKeyInfo of the request's key
 * (the value ks_reg_keyed() recorded and ks_issued_t.spki_sha256 carries).
 */
__attribute__((warn_unused_result))
ks_err_t ks_issue_req_spki_sha256(const ks_issue_req_t *req, uint8_t out[32]);

/* ---- the signer in its own process (host/lib/signer_proc.c) ----------
 *
 * The process that talks to devices never holds the CA key: the key is
 * loaded by a separate signer process, which the station reaches over a
 * SOCK_SEQPACKET socket carrying fixed-size plain-data messages. The
 * signer enforces a request table: it signs only for a registry session
 * in state KEYED whose public-key hash, serial, UID, profile, lot and key
 * origin match the request, at most once per session, within the lot's
 * quota. Every refusal is logged and recorded as a SIGN_REFUSED audit
 * event by the signer itself.
 */

/** Configuration of ks_signer_serve(). */
typedef struct {
	const char *registry;   /* registry path or URL; opened on the first
				   HELLO */
	const char *station_id; /* station id the signer records events as */
	/* the station's registry options (NULL: the defaults); their
	 * timeout_s is also how long a lost database connection is waited
	 * for (ks_reg_set_db_timeout), as in the station */
	const ks_reg_opts_t *registry_opts;
	const char *load_error; /* non-NULL: the CA failed to load; every
				   HELLO is answered with this message */
} ks_signer_serve_cfg_t;

/**
 * Serve signing requests on @fd until the peer closes it (the signer
 * process's main loop). Takes ownership of *signer (NULL when
 * cfg->load_error is set) and frees it (the key is wiped) before
 * returning. Returns KS_OK on a clean EOF.
 */
__attribute__((warn_unused_result))
ks_err_t ks_signer_serve(ks_signer_t **signer, int fd,
			 const ks_signer_serve_cfg_t *cfg);

/**
 * A client of a signer process on @fd (its pid @pid, or 0 if the caller
 * reaps it): says HELLO (the signer then opens the registry: open it in
 * the station first so migrations are done), fetches the chain, and
 * returns a ks_signer_t whose ks_signer_issue() and chain calls go to the
 * signer process. ks_signer_add_profile / set_lot_* are refused
 * (KS_ERR_UNSUPPORTED): policy lives in the signer process. Takes @fd
 * (closed on failure too); ks_signer_free() closes it and waits for @pid.
 * A refusal's reason goes to err.
 */
__attribute__((warn_unused_result))
ks_err_t ks_signer_connect(int fd, pid_t pid, ks_signer_t **out, char *err,
			   size_t errlen);

/** 1 if @signer is a client of a signer process. */
int ks_signer_is_remote(const ks_signer_t *signer);

#endif
