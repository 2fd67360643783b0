/*
 * kiln station library: the hash-chained audit log of the registry.
 *
 * Each station appends to its own chain (audit.chain = station id,
 * audit.chain_seq = 1, 2, ...): row_hash = SHA-256(prev_hash || encoding
 * of the row, with chain_seq as its seq); a chain's first prev_hash is 32
 * zero bytes. CHECKPOINT rows carry an ECDSA-P256/SHA-256 signature by the
 * station key over (station, seq, head hash) and record the key (its
 * fingerprint and public key). The exact formats are in docs/registry.md.
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

/** Chains reported one by one in ks_audit_report_t (the rest counted). */
#define KS_AUDIT_CHAINS_MAX 32

/** One station's audit chain as the verifier found it. */
typedef struct {
	char station[KS_REG_NAME_MAX]; /* chain (station id) */
	uint64_t rows;
	uint64_t checkpoints;          /* signatures verified */
	int64_t last_checkpoint_seq;   /* 0 if none */
	int64_t head_seq;              /* last seq of the chain */
	uint8_t head_hash[32];
	uint64_t unsigned_tail;        /* rows after the last checkpoint */
	int has_key;                   /* key_sha256 is set */
	uint8_t key_sha256[32];        /* key named by its last checkpoint */
	int head_recorded;             /* audit_heads has its head */
} ks_audit_chain_t;

/** Outcome of ks_audit_verify(). */
typedef struct {
	int ok;                    /* 1 when every check passed */
	uint64_t rows;             /* audit rows checked (all chains) */
	uint64_t checkpoints;      /* checkpoint signatures verified */
	/* head of the chain written last (the only one on a single-station
	 * registry): */
	char head_station[KS_REG_NAME_MAX];
	int64_t last_checkpoint_seq; /* 0 if none */
	int64_t head_seq;          /* last seq of that chain */
	uint8_t head_hash[32];     /* its row_hash: compare with a copy kept
	                              outside the database to detect tail
	                              truncation after the last checkpoint */
	uint64_t unsigned_tail;    /* rows after the last checkpoint, summed
	                              over all chains */
	uint64_t certificates;     /* certificate rows checked */
	uint64_t devices;          /* device rows checked */
	int keys_pinned;           /* 1: checkpoints checked against given
	                              keys; 0: against the keys they record */
	size_t chains_total;       /* station chains found */
	size_t nchains;            /* of them in chains[] (first by name) */
	ks_audit_chain_t chains[KS_AUDIT_CHAINS_MAX];
	char first_error[512];     /* "" when ok; names table + row (audit:
	                              station and seq) + problem */
	uint64_t errors;           /* number of problems found */
} ks_audit_report_t;

/**
 * Verify the registry at `db_path` (a SQLite file or a postgresql:// URL,
 * opened read-only): every station's audit hash chain (every row_hash,
 * prev link, contiguous per-station seq from 1, the recorded head), every
 * checkpoint signature against `station_pub` (required), that every
 * certificate chains to the CA certificates in `ca_pem_path` (self-signed
 * ones are trust anchors, others intermediates; validity periods are not
 * checked against today's date) and matches its row, session and device,
 * and the cross-counts between devices, certificates, sessions and events.
 * Returns KS_OK when all passed, KS_ERR_AUDIT when the report names a
 * problem, another code when the check could not run (KS_ERR_UNSUPPORTED:
 * a schema older than 3, not yet migrated).
 */
KS_REG_WUR int ks_audit_verify(const char *db_path, const char *ca_pem_path,
			       EVP_PKEY *station_pub,
			       ks_audit_report_t *report);

/**
 * ks_audit_verify() for a line of stations: each checkpoint must be
 * signed by one of the `nkeys` trusted station keys (the one whose
 * SHA-256 fingerprint it records). With no keys (NULL, 0) each checkpoint
 * is checked against the public key it records, and every checkpoint of
 * a chain must name the same key: that proves the chains consistent, not
 * who signed them -- compare report->chains[i].key_sha256 with the
 * stations' keys (report->keys_pinned is 0).
 */
KS_REG_WUR int ks_audit_verify_keys(const char *db_path,
				    const char *ca_pem_path,
				    EVP_PKEY *const *keys, size_t nkeys,
				    ks_audit_report_t *report);

#endif
