/*
 * kiln wire protocol: frames.
 *
 * On the wire a frame is   0x00  COBS(header | payload | crc32c)  0x00
 * The leading delimiter flushes any line noise or boot-log text that came
 * before it, so a receiver resynchronises on the next frame.
 *
 * Header, 8 bytes, little-endian:
 *   0  version   KP_PROTO_VERSION (framing version)
 *   1  type      message type (protocol/msg.h)
 *   2  flags     KP_FLAG_*; unknown bits are rejected
 *   3  reserved  must be 0
 *   4  seq       u16, echoed by the response
 *   6  length    u16, payload length, <= KP_MAX_PAYLOAD
 * then `length` payload bytes, then CRC-32C (u32 LE) over header+payload.
 */
#ifndef KILN_PROTOCOL_FRAME_H
#define KILN_PROTOCOL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/cobs.h"
#include "protocol/le.h"
#include "protocol/error.h"

#define KP_PROTO_VERSION 1u
#define KP_HDR_LEN 8u
#define KP_CRC_LEN 4u
/** Hard maximum payload: every length is checked against it. */
#define KP_MAX_PAYLOAD 1024u
/** Largest decoded frame: header + payload + CRC. */
#define KP_MAX_RAW (KP_HDR_LEN + KP_MAX_PAYLOAD + KP_CRC_LEN)
/** Largest encoded frame without delimiters. */
#define KP_MAX_COBS KP_COBS_MAX(KP_MAX_RAW)
/** Largest frame on the wire, both delimiters included. */
#define KP_MAX_WIRE (KP_MAX_COBS + 2u)

/** Set on every message sent by the agent. */
#define KP_FLAG_RESPONSE 0x01u
/** Payload is sealed by the channel SECURE_OPEN set up (protocol/seal.h). */
#define KP_FLAG_SEALED 0x02u
#define KP_FLAGS_KNOWN (KP_FLAG_RESPONSE | KP_FLAG_SEALED)

typedef struct {
	uint8_t version;
	uint8_t type;
	uint8_t flags;
	uint16_t seq;
	uint16_t len; /* payload length */
} kp_hdr_t;

/**
 * Encode one frame, both delimiters included, into out[0..cap).
 * hdr->version is ignored (KP_PROTO_VERSION is written) and hdr->len must
 * equal payload_len. Returns KP_OK, KP_ERR_ARG, KP_ERR_TOO_LARGE or
 * KP_ERR_NOSPACE.
 */
kp_err_t kp_frame_encode(const kp_hdr_t *hdr, const uint8_t *payload,
			 size_t payload_len, uint8_t *out, size_t cap,
			 size_t *out_len) __attribute__((warn_unused_result));

/**
 * Decode one frame in place. buf[0..n) holds the COBS bytes between two
 * delimiters. On success *hdr is filled and *payload points into buf
 * (hdr->len bytes). Errors: KP_ERR_EMPTY, KP_ERR_TOO_LARGE, KP_ERR_COBS,
 * KP_ERR_TRUNCATED, KP_ERR_CRC, KP_ERR_VERSION, KP_ERR_FLAGS,
 * KP_ERR_TRAILING. The message type is not checked here.
 */
kp_err_t kp_frame_decode(uint8_t *buf, size_t n, kp_hdr_t *hdr,
			 const uint8_t **payload)
	__attribute__((warn_unused_result));

/* Streaming receiver. Holds at most one frame; no allocation. */
typedef struct {
	uint8_t buf[KP_MAX_COBS];
	size_t len;
	uint8_t overflow; /* discarding until the next delimiter */
	/* counters, for diagnostics and link-quality reports */
	uint32_t frames_ok;
	uint32_t frames_bad;
	uint32_t bytes_discarded;
} kp_rx_t;

typedef enum {
	KP_RX_NONE = 0,  /* all input consumed, no event */
	KP_RX_FRAME = 1, /* ev->hdr and ev->payload are valid */
	KP_RX_ERROR = 2, /* a chunk between delimiters was rejected: ev->err */
} kp_rx_kind_t;

typedef struct {
	kp_rx_kind_t kind;
	kp_err_t err;
	kp_hdr_t hdr;
	const uint8_t *payload; /* borrowed from the kp_rx_t; valid until the
				   next kp_rx_feed() */
} kp_rx_event_t;

void kp_rx_init(kp_rx_t *rx);

/**
 * Feed received bytes. Consumes input up to and including the first
 * delimiter that ends a non-empty chunk, then reports that chunk as a
 * frame or an error; returns the number of bytes consumed. Call again with
 * the rest. Empty chunks (back-to-back delimiters) produce no event.
 * A chunk longer than KP_MAX_COBS is reported once as KP_ERR_TOO_LARGE
 * when its delimiter arrives.
 */
size_t kp_rx_feed(kp_rx_t *rx, const uint8_t *data, size_t n,
		  kp_rx_event_t *ev);

#endif
