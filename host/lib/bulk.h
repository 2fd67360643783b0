/*
 * kiln station library: bulk issuance with group commit.
 *
 * Issues identities without a board on the line (pre-issuance for a
 * contract manufacturer, keys for an HSM-backed injector, certificates for
 * CSRs collected elsewhere) through the same journal as a session:
 * RESERVED (serial allocated) -> KEYED (public-key hash) -> ISSUED
 * (certificate recorded before anyone sees it), each with its audit event.
 * What differs is durability: the steps of up to `group` identities share
 * ONE registry transaction (ks_reg_group_begin()), so one fsync covers
 * them all. An identity is handed to the ack callback only after that
 * transaction has committed; if the process dies or the commit fails
 * before that, none of the group's identities was acknowledged and none
 * is in the registry (the certificates signed for them were never shown
 * to anyone). Lost work, never a lost acknowledged identity.
 *
 * While a group is open this thread holds the registry lock: other slot
 * threads wait. Call ks_bulk_flush() when input pauses.
 */
#ifndef KILN_HOST_LIB_BULK_H
#define KILN_HOST_LIB_BULK_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "host/lib/err.h"
#include "host/lib/registry.h"
#include "host/lib/signer.h"

typedef struct ks_bulk ks_bulk_t;

/** Most identities one group may hold. */
#define KS_BULK_GROUP_MAX 4096u

/** One durable identity, as handed to the ack callback (borrowed). */
typedef struct {
	int64_t session_id;
	char serial[KS_REG_SERIAL_MAX]; /* device serial */
	uint8_t uid[KS_ISSUE_UID_MAX];
	size_t uid_len;
	const ks_issued_t *cert;
	/* host key origin: the private key, valid during the callback only
	 * (freed and cleared right after); NULL for device key origin */
	EVP_PKEY *key;
} ks_bulk_ack_t;

typedef void (*ks_bulk_ack_fn)(void *arg, const ks_bulk_ack_t *ack);

typedef struct {
	ks_reg_t *reg;
	ks_signer_t *signer;
	const char *lot;     /* existing lot */
	const char *profile; /* profile registered with the signer */
	ks_reg_key_origin_t origin; /* must match the profile's */
	unsigned group;      /* identities per durable commit, 1..MAX */
	const char *actor;   /* NULL: "kilnd" */
	ks_bulk_ack_fn ack;  /* required */
	void *ack_arg;
} ks_bulk_cfg_t;

/** Create a bulk issuer (borrows reg and signer). */
__attribute__((warn_unused_result))
ks_err_t ks_bulk_new(const ks_bulk_cfg_t *cfg, ks_bulk_t **out);

/**
 * Free; NULL-safe, clears *b. Identities not yet flushed are rolled back
 * and never acknowledged: call ks_bulk_flush() first.
 */
void ks_bulk_free(ks_bulk_t **b);

/**
 * Host key origin: generate a P-256 key for @uid, record RESERVED and
 * KEYED, sign, record ISSUED. The identity is acknowledged when its group
 * commits (this call commits when the group is full). An error concerns
 * this identity only (its session ends FAILED in the same group), except
 * a failed group commit, which is returned as is: that group's
 * identities were not acknowledged and are not recorded.
 */
__attribute__((warn_unused_result))
ks_err_t ks_bulk_host(ks_bulk_t *b, const uint8_t *uid, size_t uid_len);

/**
 * Device key origin: check the DER PKCS#10 @csr (parses completely,
 * P-256, self-signature = proof of possession; KS_ERR_VERIFY otherwise),
 * then record and sign as ks_bulk_host().
 */
__attribute__((warn_unused_result))
ks_err_t ks_bulk_csr(ks_bulk_t *b, const uint8_t *uid, size_t uid_len,
		     const uint8_t *csr, size_t csr_len);

/** Commit the open group (if any) and acknowledge its identities. */
__attribute__((warn_unused_result))
ks_err_t ks_bulk_flush(ks_bulk_t *b);

/** Identities acknowledged so far. */
uint64_t ks_bulk_acked(const ks_bulk_t *b);

/**
 * Where the time of a bulk issuer went (monotonic clock, nanoseconds,
 * summed over every identity so far, failed ones included): for
 * benchmarks and capacity planning. One thread runs a bulk issuer, so
 * the parts add up to its busy time.
 */
typedef struct {
	uint64_t keygen_ns;   /* host key origin: P-256 key generation */
	uint64_t csr_ns;      /* device key origin: CSR parse + signature check */
	uint64_t registry_ns; /* RESERVED, KEYED, ISSUED (and FAILED) steps */
	uint64_t sign_ns;     /* point check, SPKI, certificate built + signed */
	uint64_t commit_ns;   /* group COMMITs (the fsync) and acknowledgements */
} ks_bulk_stats_t;

/** Copy the time accounting of @b to @out (zeros when b is NULL). */
void ks_bulk_stats(const ks_bulk_t *b, ks_bulk_stats_t *out);

#endif
