/*
 * kiln wire protocol: the sealed channel (framing side).
 *
 * SECURE_OPEN runs an ephemeral ECDH P-256 key agreement; afterwards a
 * request whose frame carries KP_FLAG_SEALED has the payload
 *
 *   ctr (u32 LE) | AES-256-GCM ciphertext of the plain payload | tag (16)
 *
 * and so has the agent's response to it (ERROR answers stay plain: they
 * carry no secret). This file holds everything about that format that
 * needs no cryptography, so that both sides (mbedTLS on the agent,
 * OpenSSL on the station) build byte-identical nonces, additional data and
 * transcripts. docs/protocol.md section 12 is the specification:
 *
 *   transcript  = "KILN-SECURE-1" | uid_len u8 | uid | host_pub (65)
 *                 | host_nonce (32) | agent_pub (65) | agent_nonce (32)
 *   th          = SHA-256(transcript)
 *   okm         = HKDF-SHA256(salt = th, ikm = ECDH x-coordinate (32),
 *                             info = "KILN-SECURE-1 keys", L = 64)
 *   k_h2a       = okm[0..32)   (host -> agent), k_a2h = okm[32..64)
 *   nonce       = dir u8 | type u8 | 6 zero bytes | ctr u32 LE
 *   aad         = the 8-byte frame header as sent | ctr u32 LE
 *   id_sig      = ECDSA-P256-SHA256 over "KILN-CHANNEL-ID1" | th by the
 *                 agent's provisioned key (when it has one)
 *
 * The host numbers its sealed requests 0, 1, 2, ... per channel; the agent
 * accepts exactly the next number, and answers with the request's number
 * under its own key and direction byte.
 */
#ifndef KILN_PROTOCOL_SEAL_H
#define KILN_PROTOCOL_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/error.h"
#include "protocol/frame.h"

#define KP_SEAL_CTR_LEN 4u
#define KP_SEAL_TAG_LEN 16u
#define KP_SEAL_OVERHEAD (KP_SEAL_CTR_LEN + KP_SEAL_TAG_LEN)
/** Largest plain payload that still fits a frame once sealed. */
#define KP_SEAL_MAX_PLAIN (KP_MAX_PAYLOAD - KP_SEAL_OVERHEAD)
#define KP_SEAL_NONCE_LEN 12u
#define KP_SEAL_AAD_LEN (KP_HDR_LEN + KP_SEAL_CTR_LEN)
#define KP_SEAL_KEY_LEN 32u /* AES-256 */
/** Largest counter: a channel that reached it must be reopened. */
#define KP_SEAL_CTR_MAX 0xFFFFFFFEu

/* Direction byte of the nonce. */
#define KP_SEAL_DIR_H2A 0x48u /* 'H': host -> agent (requests) */
#define KP_SEAL_DIR_A2H 0x41u /* 'A': agent -> host (responses) */

#define KP_SECURE_LABEL "KILN-SECURE-1"
#define KP_SECURE_LABEL_LEN 13u
#define KP_SECURE_HKDF_INFO "KILN-SECURE-1 keys"
#define KP_SECURE_HKDF_INFO_LEN 18u
#define KP_SECURE_SIG_DOMAIN "KILN-CHANNEL-ID1"
#define KP_SECURE_SIG_DOMAIN_LEN 16u
#define KP_SECURE_PUB_LEN 65u
#define KP_SECURE_NONCE_LEN 32u
/** Longest transcript: label, uid (<= 32), two points, two nonces. */
#define KP_SECURE_TRANSCRIPT_MAX                                      \
	(KP_SECURE_LABEL_LEN + 1u + 32u + 2u * KP_SECURE_PUB_LEN +      \
	 2u * KP_SECURE_NONCE_LEN)

/** The GCM nonce of a sealed payload of message `type`. */
void kp_seal_nonce(uint8_t dir, uint8_t type, uint32_t ctr,
		   uint8_t out[KP_SEAL_NONCE_LEN]);

/**
 * The GCM additional data: the frame header exactly as it goes on the wire
 * (hdr->len = length of the sealed payload) followed by ctr. Binds type,
 * direction (the RESPONSE flag), the SEALED flag, the link seq and length.
 */
void kp_seal_aad(const kp_hdr_t *hdr, uint32_t ctr,
		 uint8_t out[KP_SEAL_AAD_LEN]);

/**
 * Split a sealed payload p[0..n): *ctr, and the ciphertext length
 * (ciphertext at p + KP_SEAL_CTR_LEN, tag right after it).
 * KP_ERR_TRUNCATED when n < KP_SEAL_OVERHEAD.
 */
kp_err_t kp_seal_split(const uint8_t *p, size_t n, uint32_t *ctr,
		       size_t *ct_len) __attribute__((warn_unused_result));

/**
 * Order check of an authenticated counter against the next expected one:
 * KP_OK if equal, KP_ERR_SEAL_REPLAY if older, KP_ERR_SEAL_ORDER if newer
 * (a message was skipped or reordered) or past KP_SEAL_CTR_MAX.
 */
kp_err_t kp_seal_check_ctr(uint32_t expected, uint32_t got)
	__attribute__((warn_unused_result));

/** The wire status an agent answers for a sealing error. */
kp_status_t kp_seal_status(kp_err_t e);

/** Build the SECURE_OPEN transcript (see above) into out[0..cap). */
kp_err_t kp_secure_transcript(const uint8_t *uid, size_t uid_len,
			      const uint8_t host_pub[KP_SECURE_PUB_LEN],
			      const uint8_t host_nonce[KP_SECURE_NONCE_LEN],
			      const uint8_t agent_pub[KP_SECURE_PUB_LEN],
			      const uint8_t agent_nonce[KP_SECURE_NONCE_LEN],
			      uint8_t *out, size_t cap, size_t *out_len)
	__attribute__((warn_unused_result));

/** The message id_sig signs: KP_SECURE_SIG_DOMAIN | th (48 bytes). */
void kp_secure_sig_message(const uint8_t th[32],
			   uint8_t out[KP_SECURE_SIG_DOMAIN_LEN + 32u]);

#endif
