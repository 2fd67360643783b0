/*
 * kiln station library: registry internals shared by registry.c, audit.c
 * and export.c. Not a public header.
 */
#ifndef KILN_HOST_LIB_REGISTRY_PRIV_H
#define KILN_HOST_LIB_REGISTRY_PRIV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "host/lib/db.h"

#include "host/lib/registry.h"

/* Device serials leased from the database for one prefix (lot family):
 * `next`..`last` are this station's to hand out; `spare_*` is the block
 * taken ahead when fewer than a quarter remain. A lease taken inside a
 * transaction that has not committed yet is `tentative`: a rollback
 * forgets it (a gap, never a serial another station could also get). */
typedef struct {
	char prefix[KS_REG_NAME_MAX];
	int64_t next, last;             /* next > last: empty */
	int64_t spare_first, spare_last; /* spare_first == 0: none */
	int tentative;
	uint64_t used;                  /* LRU stamp */
} ks_reg_lease_t;

#define KS_REG_LEASES 8

struct ks_reg {
	ks_db_t *dbh;       /* the database layer (SQLite or PostgreSQL) */
	pthread_mutex_t mu; /* guards dbh and everything below */
	char station[KS_REG_NAME_MAX];
	EVP_PKEY *key;      /* station key for checkpoints, or NULL */
	uint8_t key_sha256[32];
	unsigned cp_every;
	unsigned serial_block; /* device serials leased at a time */
	int64_t timeout_ms;    /* retry budget for a busy write lock */
	void (*hook)(void *ctx, const char *point);
	void *hook_ctx;
	/* Group commit (ks_reg_group_begin): while `group` is set, the
	 * owning thread holds `mu` (recursive) and an open BEGIN IMMEDIATE;
	 * each step runs in a SAVEPOINT (`sp_open`) released into it. */
	int group;
	int sp_open;
	/* This station's audit head as read by the open write transaction
	 * (`tx_open`) and moved by each append (audit.c): read from the
	 * database once per transaction, not once per event. Dropped on
	 * every commit and rollback (a savepoint's too). */
	int tx_open;
	int head_valid;
	int64_t head_seq;
	int64_t head_cp; /* seq of the chain's last checkpoint */
	uint8_t head_hash[32];
	/* leased serial blocks (registry.c) */
	ks_reg_lease_t leases[KS_REG_LEASES];
	uint64_t lease_clock;
	int refill;     /* a lease ran below a quarter: refill after commit */
	int in_refill;  /* the refill's own transaction is running */
};

/** One event to append (all pointers may be NULL except actor). */
typedef struct {
	ks_reg_event_t type;
	const char *actor;
	const uint8_t *uid;
	size_t uid_len;
	const char *device_serial;
	const char *cert_serial;
	int64_t session_id; /* 0: none */
	const char *details; /* JSON text or NULL */
} ks_audit_ev_t;

/* Registry helpers; the caller holds reg->mu. */
KS_REG_WUR int ks_reg_tx_begin(ks_reg_t *reg);
KS_REG_WUR int ks_reg_tx_commit(ks_reg_t *reg);
void ks_reg_tx_rollback(ks_reg_t *reg);
void ks_reg_fault(ks_reg_t *reg, const char *point);
int64_t ks_reg_now_ms(void);
/**
 * Map a ks_db_err_t to ks_err_t (unique constraint -> DUPLICATE, busy /
 * serialisation -> BUSY, connection lost -> UNAVAILABLE), logging `what`.
 */
int ks_reg_db_err(ks_reg_t *reg, int rc, const char *what);
/**
 * Next device serial "<prefix>-NNNNNN" for a session being recorded in the
 * caller's transaction (registry.c, leased serial blocks).
 */
KS_REG_WUR int ks_reg_serial_take(ks_reg_t *reg, const char *prefix,
				  char *out, size_t cap);
/** Lower-case hex of n bytes into out (2n+1 bytes). */
void ks_reg_hex(const uint8_t *in, size_t n, char *out);

/**
 * Append one audit event inside the caller's transaction; may append an
 * automatic CHECKPOINT after it. *seq (may be NULL) gets the event's seq.
 */
KS_REG_WUR int ks_audit_append(ks_reg_t *reg, const ks_audit_ev_t *ev,
			       int64_t *seq);
/** Append a CHECKPOINT inside the caller's transaction. */
KS_REG_WUR int ks_audit_append_checkpoint(ks_reg_t *reg, const char *actor);
/** Rows appended since the last CHECKPOINT (caller holds the mutex). */
KS_REG_WUR int ks_audit_since_checkpoint(ks_reg_t *reg, int64_t *count);

/** ECDSA-SHA256 DER signature; *sig malloc'ed (OPENSSL_free). */
KS_REG_WUR int ks_audit_sign(EVP_PKEY *key, const uint8_t *msg, size_t len,
			     uint8_t **sig, size_t *sig_len);
/** KS_OK when `sig` is a valid ECDSA-SHA256 signature of msg by `pub`. */
KS_REG_WUR int ks_audit_sig_verify(EVP_PKEY *pub, const uint8_t *msg,
				   size_t len, const uint8_t *sig,
				   size_t sig_len);

/** Base64 (standard, padded, no newlines); malloc'ed, NULL on error. */
char *ks_audit_b64_encode(const uint8_t *p, size_t n);
/** Decode standard padded base64 without whitespace; *out malloc'ed. */
KS_REG_WUR int ks_audit_b64_decode(const char *s, uint8_t **out,
				   size_t *out_len);

#endif
