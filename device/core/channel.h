/*
 * kiln agent: the sealed channel (docs/protocol.md section 12).
 *
 * SECURE_OPEN derives two AES-256-GCM keys from an ephemeral ECDH; after
 * that, frames with KP_FLAG_SEALED are opened here before their handler
 * sees them, and their responses sealed after. The channel lives until
 * the next HELLO or SECURE_OPEN; closing it wipes the keys. RAM: 72 bytes.
 */
#ifndef KILN_DEVICE_CORE_CHANNEL_H
#define KILN_DEVICE_CORE_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device/core/crypto.h"
#include "protocol/frame.h"
#include "protocol/seal.h"

typedef struct {
	bool open;
	uint32_t next; /* counter the next sealed request must carry */
	uint8_t k_h2a[KP_SEAL_KEY_LEN];
	uint8_t k_a2h[KP_SEAL_KEY_LEN];
} ka_channel_t;

/** Close the channel and wipe its keys. */
void ka_channel_close(ka_channel_t *c);

/**
 * Agent side of SECURE_OPEN: ECDH with host_pub (ka_crypto_ecdh: key is
 * the stored scalar or NULL), transcript hash th, HKDF into the two keys.
 * On success the channel is open with counter 0 and pub/nonce/th hold what
 * the response needs; on failure it is closed.
 */
kp_status_t ka_channel_open(ka_channel_t *c, const ka_crypto_env_t *env,
			    const uint8_t *key, const uint8_t *uid,
			    size_t uid_len,
			    const uint8_t host_pub[KP_SECURE_PUB_LEN],
			    const uint8_t host_nonce[KP_SECURE_NONCE_LEN],
			    uint8_t pub[KP_SECURE_PUB_LEN],
			    uint8_t nonce[KP_SECURE_NONCE_LEN],
			    uint8_t th[32]) __attribute__((warn_unused_result));

/**
 * Open a sealed request in place: p[0..h->len) is the sealed payload of
 * the frame with header h. On success the plain payload is
 * p[KP_SEAL_CTR_LEN .. KP_SEAL_CTR_LEN + *plain_len), *ctr its counter,
 * and the channel expects ctr + 1 next. Errors (channel unchanged):
 * KP_ST_NO_CHANNEL, KP_ST_SEAL_AUTH (truncated, modified, wrong key or
 * direction), KP_ST_SEAL_REPLAY, KP_ST_SEAL_ORDER.
 */
kp_status_t ka_channel_unseal(ka_channel_t *c, const kp_hdr_t *h, uint8_t *p,
			      size_t *plain_len, uint32_t *ctr)
	__attribute__((warn_unused_result));

/**
 * Seal a response in place: buf[0..n) holds the plain payload, buf has
 * room for n + KP_SEAL_OVERHEAD bytes. h is the response header (type,
 * flags incl. SEALED, seq); its len is set here. *out_len = sealed length.
 */
kp_status_t ka_channel_seal(const ka_channel_t *c, kp_hdr_t *h, uint32_t ctr,
			    uint8_t *buf, size_t n, size_t *out_len)
	__attribute__((warn_unused_result));

#endif
