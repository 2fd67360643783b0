/*
 * kiln station library: the hash-chained audit log of the registry.
 *
 * row_hash = SHA-256(prev_hash || encoding of every column of the row);
 * the first row's prev_hash is 32 zero bytes. CHECKPOINT rows carry an
 * ECDSA-P256/SHA-256 signature by the station key over (station, seq,
 * head hash). The exact formats are in docs/registry.md.
 */
#ifndef KILN_HOST_LIB_AUDIT_H
#define KILN_HOST_LIB_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "host/lib/registry.h"

/** One audit row as hashed (text fields NULL when SQL NULL). */
typedef struct {
	int64_t seq;
	int64_t time_ms;
	const char *station;
	const char *actor;
	const char *type;
	const uint8_t *uid; /* NULL when SQL NULL */
	size_t uid_len;
	const char *device_serial;
	const char *cert_serial;
	int has_session;
	int64_t session_id;
	const char *details;
} ks_audit_row_t;

/** Compute the row hash of `row` chained to `prev`. */
void ks_audit_row_hash(const ks_audit_row_t *row, const uint8_t prev[32],
		       uint8_t out[32]);

/**
 * Bytes signed by a checkpoint: "kiln-audit-checkpoint-v1" ||
 * u32be(len(station)) || station || u64be(seq) || head[32]. Writes at most
 * `cap` bytes to `buf`; returns the length needed (0 on bad input).
 */
size_t ks_audit_checkpoint_message(const char *station, int64_t seq,
				   const uint8_t head[32], uint8_t *buf,
				   size_t cap);

/** SHA-256 of a public key's DER SubjectPublicKeyInfo. */
KS_REG_WUR int ks_audit_pubkey_sha256(EVP_PKEY *key, uint8_t out[32]);

/**
 * Append a signed CHECKPOINT now (on demand: batch stop, shutdown).
 * KS_ERR_STATE if no station key is set.
 */
KS_REG_WUR int ks_audit_checkpoint(ks_reg_t *reg, const char *actor);

/** Outcome of ks_audit_verify(). */
typedef struct {
	int ok;                    /* 1 when every check passed */
	uint64_t rows;             /* audit rows checked */
	uint64_t checkpoints;      /* checkpoint signatures verified */
	int64_t last_checkpoint_seq; /* 0 if none */
	int64_t head_seq;          /* last seq in the log */
	uint8_t head_hash[32];     /* its row_hash: compare with a copy kept
	                              outside the database to detect tail
	                              truncation after the last checkpoint */
	uint64_t unsigned_tail;    /* rows after the last checkpoint */
	uint64_t certificates;     /* certificate rows checked */
	uint64_t devices;          /* device rows checked */
	char first_error[512];     /* "" when ok; names table + row + problem */
	uint64_t errors;           /* number of problems found */
} ks_audit_report_t;

/**
 * Verify the registry file at `db_path` (opened read-only): the audit hash
 * chain (every row_hash, prev link, contiguous seq, the recorded head),
 * every checkpoint signature against `station_pub` (required), that every
 * certificate chains to the CA certificates in `ca_pem_path` (self-signed
 * ones are trust anchors, others intermediates; validity periods are not
 * checked against today's date) and matches its row, session and device,
 * and the cross-counts between devices, certificates, sessions and events.
 * Returns KS_OK when all passed, KS_ERR_AUDIT when the report names a
 * problem, another code when the check could not run.
 */
KS_REG_WUR int ks_audit_verify(const char *db_path, const char *ca_pem_path,
			       EVP_PKEY *station_pub,
			       ks_audit_report_t *report);

#endif
