/*
 * kiln station library: certificate profiles.
 *
 * A profile describes what the station issues for one product: the subject
 * and SAN templates, validity, key usages, where the key is generated and
 * how hard the part is locked afterwards. Profiles come from the trusted
 * station configuration ([profile NAME] sections, one ks_profile_set() per
 * key); the signer only ever builds names from a profile, never from bytes
 * a device supplied. ks_profile_t is plain data (fixed arrays, no pointers)
 * so it can be copied into a separate signer process.
 *
 * Every key is documented in docs/ca-and-profiles.md.
 */
#ifndef KILN_HOST_LIB_PROFILE_H
#define KILN_HOST_LIB_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/lib/err.h"

#define KS_PROFILE_NAME_MAX 64      /* including the NUL */
#define KS_PROFILE_TEMPLATE_MAX 256 /* one template, including the NUL */
#define KS_PROFILE_RDN_MAX 8        /* attributes in the subject */
#define KS_PROFILE_RDN_VALUE_MAX 128
#define KS_PROFILE_SAN_MAX 4        /* per kind (DNS, URI) */
#define KS_PROFILE_VALIDITY_DAYS_MAX 36500u
#define KS_PROFILE_BACKDATE_MAX 86400u /* seconds */
#define KS_PROFILE_BACKDATE_DEFAULT 300u

/* Prefix of the SAN URI that carries the hardware UID (lowercase hex). */
#define KS_PROFILE_UID_URN_PREFIX "urn:kiln:uid:"

typedef enum {
	KS_KEY_ORIGIN_UNSET = 0,
	KS_KEY_ORIGIN_DEVICE = 1, /* board generates the key, sends a CSR */
	KS_KEY_ORIGIN_HOST = 2,   /* station generates it and injects it */
} ks_key_origin_t;

typedef enum {
	KS_LOCK_POLICY_UNSET = 0,
	KS_LOCK_POLICY_NONE = 1,
	KS_LOCK_POLICY_IDENTITY = 2, /* KP_LOCK_LEVEL_IDENTITY */
	KS_LOCK_POLICY_FULL = 3,     /* KP_LOCK_LEVEL_FULL */
} ks_lock_policy_t;

typedef enum {
	KS_KEY_ALG_EC_P256 = 1,
} ks_key_alg_t;

/* key_usage bits (names as in RFC 5280 / OpenSSL config). */
#define KS_KU_DIGITAL_SIGNATURE 0x01u
#define KS_KU_NON_REPUDIATION 0x02u
#define KS_KU_KEY_AGREEMENT 0x04u

/* extended_key_usage bits. */
#define KS_EKU_CLIENT_AUTH 0x01u
#define KS_EKU_SERVER_AUTH 0x02u
#define KS_EKU_KILN_CLAIM 0x04u /* only in claim profiles (credential=claim) */

/*
 * The kiln claim key purpose (extendedKeyUsage) of bootstrap credentials:
 * an OID under the UUID arc 2.25 (ITU-T X.667, no registration needed),
 * UUID 8c8f769c-0900-4cc8-835d-ca6a7e10240b. A certificate whose only key
 * purpose is this one is not accepted for TLS client or server
 * authentication by verifiers that check the EKU (OpenSSL, mbedTLS, Go,
 * browsers): it is good for kiln field enrollment only (docs/bootstrap.md).
 */
#define KS_PROFILE_CLAIM_OID "2.25.186836823547371013366819102786837292043"
#define KS_PROFILE_CLAIM_VALIDITY_DEFAULT 30u  /* days */
#define KS_PROFILE_CLAIM_VALIDITY_MAX 365u     /* days */
#define KS_PROFILE_CLAIM_USES_MAX 1000u

typedef enum {
	KS_CREDENTIAL_IDENTITY = 0, /* the device's factory identity */
	KS_CREDENTIAL_CLAIM = 1,    /* a bootstrap (claim) credential */
} ks_credential_t;

/** One subject attribute: an allowlisted type and a value template. */
typedef struct {
	int nid; /* OpenSSL NID of the attribute type */
	char value[KS_PROFILE_RDN_VALUE_MAX];
} ks_profile_rdn_t;

typedef struct ks_profile {
	char name[KS_PROFILE_NAME_MAX];
	char subject[KS_PROFILE_TEMPLATE_MAX]; /* as configured */
	ks_profile_rdn_t rdn[KS_PROFILE_RDN_MAX]; /* parsed from subject */
	uint32_t rdn_count;
	uint32_t validity_days;
	uint32_t backdate_seconds;
	uint32_t key_usage;          /* KS_KU_* */
	uint32_t ext_key_usage;      /* KS_EKU_* */
	char san_dns[KS_PROFILE_SAN_MAX][KS_PROFILE_TEMPLATE_MAX];
	uint32_t san_dns_count;
	char san_uri[KS_PROFILE_SAN_MAX][KS_PROFILE_TEMPLATE_MAX];
	uint32_t san_uri_count;
	ks_key_origin_t key_origin;
	ks_lock_policy_t lock;
	ks_key_alg_t key_alg;
	uint64_t lot_quota; /* certificates per lot; 0 = unlimited */
	uint32_t production; /* 1: release gate applies (no development CA,
				no published test key); default 0 */
	bool has_boot_key; /* secure_boot_key set */
	uint8_t boot_key_hash[32]; /* SHA-256 of the firmware-signing key's
				      65-byte uncompressed P-256 point: the
				      value burnt into the OTP key-hash slot
				      (docs/secure-boot.md) */
	uint32_t credential; /* ks_credential_t; default identity */
	uint32_t claim_uses; /* enrollments one certificate of this profile
				may authorise: default 1 for claims, 0 (none)
				for identities */
} ks_profile_t;

/** Values substituted into templates at issuance. All are NUL-terminated. */
typedef struct {
	const char *serial;  /* device serial from the registry */
	const char *uid_hex; /* hardware UID, lowercase hex */
	const char *lot;     /* production lot ("" if none) */
	const char *profile; /* profile name */
} ks_profile_vars_t;

/**
 * Reset @p to the defaults (validity/subject/origin/lock unset, key usage
 * digitalSignature, EKU clientAuth, backdate 300 s, key algorithm P-256,
 * no quota) and name it. Names are 1..63 of [A-Za-z0-9._-].
 * Returns KS_ERR_CONFIG (with a message in err) on a bad name.
 */
__attribute__((warn_unused_result))
ks_err_t ks_profile_init(ks_profile_t *p, const char *name, char *err,
			 size_t errlen);

/**
 * Apply one configuration key=value to @p. On failure returns
 * KS_ERR_CONFIG and writes a message naming the key and the bad value to
 * err (the caller adds file:line). Repeating san_dns / san_uri appends.
 */
__attribute__((warn_unused_result))
ks_err_t ks_profile_set(ks_profile_t *p, const char *key, const char *value,
			char *err, size_t errlen);

/**
 * Check that @p is complete and consistent (subject, validity_days,
 * key_origin and lock set; at least one key usage and EKU). Returns KS_OK
 * or KS_ERR_CONFIG with a message.
 */
__attribute__((warn_unused_result))
ks_err_t ks_profile_validate(const ks_profile_t *p, char *err, size_t errlen);

/**
 * The LOCK level (protocol/msg.h KP_LOCK_LEVEL_*) this profile asks for, or
 * 0 when the part is not to be locked.
 */
uint8_t ks_profile_lock_level(const ks_profile_t *p);

/**
 * Expand ${serial}, ${uid}, ${lot}, ${profile} ($$ is a literal $) in
 * @tmpl into @out. Returns KS_ERR_ARG on a malformed template or a NULL
 * variable, KS_ERR_POLICY when the result does not fit in @outlen.
 */
__attribute__((warn_unused_result))
ks_err_t ks_profile_expand(const char *tmpl, const ks_profile_vars_t *vars,
			   char *out, size_t outlen);

/** Config name of a key origin ("device", "host"); never NULL. */
const char *ks_profile_origin_name(ks_key_origin_t origin);

/** Config name of a lock policy ("none", "identity", "full"); never NULL. */
const char *ks_profile_lock_name(ks_lock_policy_t lock);

/** 1 if @s is a valid DNS name for a SAN (labels of [A-Za-z0-9-]). */
int ks_profile_dns_name_ok(const char *s);

/** 1 if @s is an acceptable SAN URI (scheme:rest, printable, no blanks). */
int ks_profile_uri_ok(const char *s);

/** Upper bound (RFC 5280 ub-*) on the length of a subject attribute. */
size_t ks_profile_rdn_max_len(int nid);

#endif
