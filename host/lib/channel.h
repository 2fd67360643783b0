/*
 * kiln station library: the sealed channel, station side (OpenSSL 3).
 *
 * The counterpart of device/core/channel.c; the format is specified in
 * protocol/seal.h and docs/protocol.md section 12. The agent client
 * (agent.c) drives it: ks_channel_offer() makes the host's ephemeral key
 * and nonce for SECURE_OPEN, ks_channel_accept() checks the answer
 * (optionally the agent's identity signature) and derives the keys; then
 * every sealed request is ks_channel_seal()ed with the next counter and
 * its answer ks_channel_unseal_rsp()ed. Keys are wiped by
 * ks_channel_close(); the ephemeral private key by ks_channel_offer_clear()
 * (both run on every path of the client).
 */
#ifndef KILN_HOST_LIB_CHANNEL_H
#define KILN_HOST_LIB_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "host/lib/err.h"
#include "protocol/frame.h"
#include "protocol/msg.h"
#include "protocol/seal.h"

typedef struct {
	bool open;
	bool authenticated; /* the agent proved a known identity key */
	uint32_t ctr;       /* counter of the next sealed request */
	uint8_t k_h2a[KP_SEAL_KEY_LEN];
	uint8_t k_a2h[KP_SEAL_KEY_LEN];
} ks_channel_t;

/* The host's half of SECURE_OPEN. */
typedef struct {
	EVP_PKEY *eph; /* ephemeral P-256 key, freed by _offer_clear */
	uint8_t pub[KP_SECURE_PUB_LEN];
	uint8_t nonce[KP_SECURE_NONCE_LEN];
} ks_channel_offer_t;

/** Generate the ephemeral key pair and nonce of a SECURE_OPEN request. */
ks_err_t ks_channel_offer(ks_channel_offer_t *o)
	__attribute__((warn_unused_result));

/** Free the ephemeral key (OpenSSL clears it) and wipe the offer. */
void ks_channel_offer_clear(ks_channel_offer_t *o);

/**
 * Check the agent's SECURE_OPEN answer and open c: ECDH with agent_pub,
 * transcript (uid from HELLO), HKDF. If id_pub (65-byte point) is given,
 * the answer must carry id_sig, a valid signature of the transcript by
 * that key (else KS_ERR_VERIFY and c stays closed); without id_pub a
 * signature is not checked and c->authenticated is false.
 */
ks_err_t ks_channel_accept(ks_channel_t *c, const ks_channel_offer_t *o,
			   const uint8_t *uid, size_t uid_len,
			   const uint8_t *agent_pub, const uint8_t *agent_nonce,
			   const uint8_t *id_sig, size_t id_sig_len,
			   const uint8_t *id_pub)
	__attribute__((warn_unused_result));

/**
 * Seal plain[0..n) as a request with counter c->ctr (not advanced here):
 * h->type and h->seq are the caller's, h->flags gets KP_FLAG_SEALED and
 * h->len the sealed length; out receives the sealed payload.
 */
ks_err_t ks_channel_seal(const ks_channel_t *c, kp_hdr_t *h,
			 const uint8_t *plain, size_t n, uint8_t *out,
			 size_t cap, size_t *out_len)
	__attribute__((warn_unused_result));

/**
 * Open the sealed response p[0..h->len) to the request sealed with
 * counter `ctr`: KP_OK (plain text to plain[0..*plain_len)),
 * KP_ERR_SEAL_AUTH (truncated, modified, wrong key or direction),
 * KP_ERR_SEAL_REPLAY (an older answer), KP_ERR_SEAL_ORDER (a newer one),
 * KP_ERR_NOSPACE.
 */
kp_err_t ks_channel_unseal_rsp(const ks_channel_t *c, const kp_hdr_t *h,
			       const uint8_t *p, uint32_t ctr, uint8_t *plain,
			       size_t cap, size_t *plain_len)
	__attribute__((warn_unused_result));

/** Close the channel and wipe its keys. */
void ks_channel_close(ks_channel_t *c);

#endif
