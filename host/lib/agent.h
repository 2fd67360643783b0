/*
 * kiln station library: the agent client.
 *
 * A ks_agent_t owns a link, a frame receiver and a sequence counter. Each
 * call sends one request frame and waits for the response with the same
 * seq, skipping undecodable frames, echoes and stale responses; on a
 * timeout it re-sends the identical frame (the agent answers a repeated
 * request from its cache, so nothing is executed twice).
 *
 * Everything a typed call returns is copied into caller-owned memory:
 * nothing borrows from the receive buffer.
 *
 * The host-side helpers at the end (identity blob, challenge and CSR
 * checks) use OpenSSL 3.
 */
#ifndef KILN_HOST_LIB_AGENT_H
#define KILN_HOST_LIB_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/lib/err.h"
#include "host/lib/transport.h"
#include "protocol/error.h"
#include "protocol/msg.h"

typedef struct ks_agent ks_agent_t;

#define KS_AGENT_DEFAULT_TIMEOUT_MS 1000
#define KS_AGENT_DEFAULT_RETRIES 3u
#define KS_PUBKEY_LEN 65u
#define KS_DIGEST_LEN 32u
#define KS_SIG_MAX 72u
#define KS_UID_MAX 32u
/** Largest identity blob kp_blob_encode() can produce. */
#define KS_BLOB_MAX 8192u

typedef struct {
	int timeout_ms;   /* per attempt; <= 0: KS_AGENT_DEFAULT_TIMEOUT_MS */
	unsigned retries; /* re-sends after the first attempt */
} ks_agent_opts_t;

/* The state block HELLO and STATUS share. */
typedef struct {
	uint8_t state;      /* kp_state_t */
	uint8_t lock;       /* KP_LOCK_* read back from hardware */
	uint8_t integrity;  /* 0 = ok, else a kp_status_t */
	uint8_t slots_free; /* free OTP key slots */
	bool has_pubkey;
	uint8_t pubkey[KS_PUBKEY_LEN];
	bool has_digest;
	uint8_t id_digest[KS_DIGEST_LEN];
	bool has_boot_key; /* the secure-boot key-hash slot is written */
	uint8_t boot_key_hash[KS_DIGEST_LEN];
} ks_agent_state_t;

typedef struct {
	uint8_t proto;
	char agent_version[33];
	uint32_t caps;
	uint8_t uid[KS_UID_MAX];
	size_t uid_len;
	char board[33];
	uint16_t max_payload;
	ks_agent_state_t st;
} ks_agent_hello_t;

typedef struct {
	ks_agent_state_t st;
	uint32_t staged;
} ks_agent_status_t;

/* GENKEY result (allocated; free with ks_agent_genkey_free). */
typedef struct {
	uint8_t pubkey[KS_PUBKEY_LEN];
	uint8_t *csr; /* DER */
	size_t csr_len;
	uint8_t slot;
} ks_agent_genkey_t;

typedef struct {
	uint64_t round_trips; /* calls answered (OK or ERROR) */
	uint64_t retransmits; /* identical frames re-sent after a timeout */
	uint64_t frames_bad;  /* chunks that failed to decode */
	uint64_t frames_skipped; /* echoes, stale seqs */
	uint64_t tx_bytes, rx_bytes; /* as counted by the link */
} ks_agent_stats_t;

/**
 * Wrap an open link; on success the agent owns it and *link is set to
 * NULL. opts may be NULL for the defaults.
 */
ks_err_t ks_agent_new(ks_link_t **link, const ks_agent_opts_t *opts,
		      ks_agent_t **out) __attribute__((warn_unused_result));

/** ks_link_open(spec) + ks_agent_new(). */
ks_err_t ks_agent_open(const char *spec, const ks_agent_opts_t *opts,
		       ks_agent_t **out) __attribute__((warn_unused_result));

/** Close the link and free the agent (NULL-safe); sets *a to NULL. */
void ks_agent_free(ks_agent_t **a);

/** The agent's link (borrowed). */
ks_link_t *ks_agent_link(ks_agent_t *a);

/** Change timeout and retries. */
void ks_agent_set_opts(ks_agent_t *a, const ks_agent_opts_t *opts);

/**
 * One request/response exchange with raw payloads. The response payload
 * (type == type) is copied to rsp[0..*rsp_len). An ERROR answer returns
 * KS_ERR_AGENT (status and detail via ks_agent_last_status/_detail).
 * Errors: KS_ERR_TIMEOUT (no answer after all retries), KS_ERR_CLOSED,
 * KS_ERR_PROTO (answer of the wrong type or with an undecodable ERROR
 * payload), KS_ERR_ARG, KS_ERR_IO.
 */
ks_err_t ks_agent_call(ks_agent_t *a, uint8_t type, const uint8_t *req,
		       size_t req_len, uint8_t *rsp, size_t rsp_cap,
		       size_t *rsp_len) __attribute__((warn_unused_result));

/**
 * The same exchange inside the sealed channel (ks_agent_secure_open()
 * first): req[0..req_len) (at most KP_SEAL_MAX_PLAIN bytes) is sealed with
 * the channel's next counter, the answer must come back sealed with the
 * same counter (KS_ERR_VERIFY: forged, replayed or reordered answer;
 * KS_ERR_PROTO: a plain answer) or as a plain ERROR (KS_ERR_AGENT).
 * KS_ERR_STATE: no channel. A link failure closes the channel.
 */
ks_err_t ks_agent_call_sealed(ks_agent_t *a, uint8_t type, const uint8_t *req,
			      size_t req_len, uint8_t *rsp, size_t rsp_cap,
			      size_t *rsp_len) __attribute__((warn_unused_result));

/**
 * SECURE_OPEN (after HELLO): ephemeral ECDH P-256 with the agent, keys by
 * HKDF-SHA256, AES-256-GCM from then on (docs/protocol.md section 12).
 * If id_pub is given the agent must sign the handshake transcript with
 * that key (the identity key the registry has on record), else
 * KS_ERR_VERIFY and no channel; *authenticated (may be NULL) says whether
 * it did. KS_ERR_UNSUPPORTED if HELLO did not announce KP_CAP_SECURE.
 * HELLO closes the channel. PUT_OBJECT HOSTKEY and GENKEY with a seed go
 * sealed whenever the agent announced KP_CAP_SECURE (the channel is opened
 * without authentication if the caller has not opened one).
 */
ks_err_t ks_agent_secure_open(ks_agent_t *a,
			      const uint8_t id_pub[KS_PUBKEY_LEN],
			      bool *authenticated)
	__attribute__((warn_unused_result));

/** True while a sealed channel is open. */
bool ks_agent_is_sealed(const ks_agent_t *a);

/** Wire status of the last ERROR answer (KP_ST_OK if the last call had none). */
kp_status_t ks_agent_last_status(const ks_agent_t *a);

/** Detail text of the last ERROR answer, "" if none; never NULL. */
const char *ks_agent_last_detail(const ks_agent_t *a);

/** Description of the last failure of any kind, "" if none; never NULL. */
const char *ks_agent_last_error(const ks_agent_t *a);

/** Counters since ks_agent_new(). */
void ks_agent_get_stats(const ks_agent_t *a, ks_agent_stats_t *st);

/** HELLO: starts a session (the agent drops staged objects). The agent
 * must speak protocol KP_MSG_VERSION (KS_ERR_PROTO otherwise). */
ks_err_t ks_agent_hello(ks_agent_t *a, ks_agent_hello_t *out)
	__attribute__((warn_unused_result));

/**
 * GENKEY. seed (16..64 bytes) may be NULL; flags is 0 or KP_GENKEY_NEW;
 * cn may be NULL (the agent uses the UID in hex). *out is allocated.
 */
ks_err_t ks_agent_genkey(ks_agent_t *a, const uint8_t *seed, size_t seed_len,
			 uint8_t flags, const char *cn,
			 ks_agent_genkey_t **out)
	__attribute__((warn_unused_result));

/** Free a GENKEY result (NULL-safe) and clear the pointer. */
void ks_agent_genkey_free(ks_agent_genkey_t **g);

/**
 * PUT_OBJECT: send a whole object in KP_PUT_MAX_DATA chunks. For
 * KP_OBJ_HOSTKEY pubkey (may be NULL) receives the key the agent
 * programmed and *has_pubkey says whether the answer carried one. The
 * request frames are wiped after sending (they may hold a private key).
 */
ks_err_t ks_agent_put_object(ks_agent_t *a, uint8_t obj, const uint8_t *data,
			     size_t len, uint8_t pubkey[KS_PUBKEY_LEN],
			     bool *has_pubkey)
	__attribute__((warn_unused_result));

/** COMMIT the identity written by PUT_OBJECT IDENTITY; *state (may be
 * NULL) receives the state. KS_ERR_VERIFY if the digest the agent read
 * back differs from digest. */
ks_err_t ks_agent_commit(ks_agent_t *a, const uint8_t digest[KS_DIGEST_LEN],
			 uint8_t *state) __attribute__((warn_unused_result));

/* What COMMIT may carry besides the digest. */
typedef struct {
	const uint8_t *nonce; /* challenge nonce, 16..64 bytes, or NULL */
	size_t nonce_len;
	const uint8_t *boot_key_hash; /* 32 bytes for the secure-boot
					 key-hash slot, or NULL */
} ks_commit_opts_t;

/* COMMIT's answer, copied. */
typedef struct {
	uint8_t digest[KS_DIGEST_LEN]; /* of the blob as read back from flash */
	uint8_t state;
	bool has_sig; /* the challenge signature (when a nonce was sent) */
	uint8_t sig[KS_SIG_MAX];
	size_t sig_len;
	bool has_boot_key; /* what the secure-boot slot holds */
	uint8_t boot_key_hash[KS_DIGEST_LEN];
} ks_commit_result_t;

/**
 * COMMIT with the options of protocol 2: the agent commits the identity
 * (or confirms the one it already holds under this digest), writes the
 * boot key hash to its secure-boot slot (the same hash already there is
 * fine; another one: KS_ERR_AGENT with KP_ST_BOOT_KEY), and signs the
 * nonce. Nothing is compared here: the caller checks out->digest, the
 * signature and the slot. opts may be NULL.
 */
ks_err_t ks_agent_commit_ex(ks_agent_t *a,
			    const uint8_t digest[KS_DIGEST_LEN],
			    const ks_commit_opts_t *opts,
			    ks_commit_result_t *out)
	__attribute__((warn_unused_result));

/** STATUS. */
ks_err_t ks_agent_status(ks_agent_t *a, ks_agent_status_t *out)
	__attribute__((warn_unused_result));

/** READBACK the whole committed blob into an allocated *blob (free()). */
ks_err_t ks_agent_readback(ks_agent_t *a, uint8_t **blob, size_t *len)
	__attribute__((warn_unused_result));

/** CHALLENGE: sig[0..*sig_len) receives the DER ECDSA signature. */
ks_err_t ks_agent_challenge(ks_agent_t *a, const uint8_t *nonce,
			    size_t nonce_len, uint8_t sig[KS_SIG_MAX],
			    size_t *sig_len) __attribute__((warn_unused_result));

/** LOCK at level 1 or 2; lock bits and state read back (may be NULL). */
ks_err_t ks_agent_lock(ks_agent_t *a, uint8_t level, uint8_t *lock,
		       uint8_t *state) __attribute__((warn_unused_result));

/**
 * LOCK with a nonce (16..64 bytes): the agent signs its report of lock
 * bits and state with its key (kp_lock_message); sig[0..*sig_len)
 * receives the signature, *sig_len = 0 if the answer carried none. Check
 * it with ks_verify_lock_report().
 */
ks_err_t ks_agent_lock_signed(ks_agent_t *a, uint8_t level,
			      const uint8_t *nonce, size_t nonce_len,
			      uint8_t *lock, uint8_t *state,
			      uint8_t sig[KS_SIG_MAX], size_t *sig_len)
	__attribute__((warn_unused_result));

/* ---- host-side helpers ---- */

/* The parts of an identity blob. */
typedef struct {
	const uint8_t *pubkey; /* 65 bytes */
	const char *serial;    /* printable, 1..64 */
	const uint8_t *cert;
	size_t cert_len;
	const uint8_t *chain; /* optional */
	size_t chain_len;
	const uint8_t *meta; /* optional */
	size_t meta_len;
} ks_identity_t;

/**
 * Build the identity blob exactly as the agent will (kp_blob_encode) into
 * an allocated *blob (free()) and its SHA-256 into digest.
 */
ks_err_t ks_identity_blob(const ks_identity_t *id, uint8_t **blob,
			  size_t *len, uint8_t digest[KS_DIGEST_LEN])
	__attribute__((warn_unused_result));

/**
 * Verify a CHALLENGE signature: DER ECDSA P-256 over
 * SHA-256(kp_challenge_message(uid, nonce)) by the uncompressed point
 * pubkey. Returns KS_OK, KS_ERR_VERIFY or KS_ERR_ARG / KS_ERR_CRYPTO,
 * KS_ERR_NOMEM when the check could not run for lack of memory (a
 * station failure: the board is not at fault).
 */
ks_err_t ks_verify_challenge(const uint8_t pubkey[KS_PUBKEY_LEN],
			     const uint8_t *uid, size_t uid_len,
			     const uint8_t *nonce, size_t nonce_len,
			     const uint8_t *sig, size_t sig_len)
	__attribute__((warn_unused_result));

/**
 * Verify a LOCK report signature: DER ECDSA P-256 over SHA-256 of
 * kp_lock_message(uid, lock, state, nonce) by pubkey. Returns as
 * ks_verify_challenge().
 */
ks_err_t ks_verify_lock_report(const uint8_t pubkey[KS_PUBKEY_LEN],
			       const uint8_t *uid, size_t uid_len,
			       uint8_t lock, uint8_t state,
			       const uint8_t *nonce, size_t nonce_len,
			       const uint8_t *sig, size_t sig_len)
	__attribute__((warn_unused_result));

/**
 * Check a DER PKCS#10 CSR: it parses completely, its signature verifies
 * with its own key (proof of possession), the key is P-256 and equals
 * pubkey (as GENKEY returned it). Returns KS_OK or KS_ERR_VERIFY, or
 * KS_ERR_NOMEM when the check could not run for lack of memory.
 */
ks_err_t ks_csr_verify(const uint8_t *csr, size_t csr_len,
		       const uint8_t pubkey[KS_PUBKEY_LEN])
	__attribute__((warn_unused_result));

#endif
