/* Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999).
 * The encoding contains no 0x00 byte, so 0x00 delimits frames. */
#ifndef KILN_PROTOCOL_COBS_H
#define KILN_PROTOCOL_COBS_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/error.h"

/** Worst-case encoded size of n input bytes (without delimiters). */
#define KP_COBS_MAX(n) ((n) + ((n) / 254u) + 1u)

/**
 * Encode in[0..n) into out[0..cap). On success *out_len is the encoded
 * length. out and in must not overlap. Returns KP_OK or KP_ERR_NOSPACE.
 */
kp_err_t kp_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
			size_t *out_len) __attribute__((warn_unused_result));

/**
 * Decode in place: buf[0..n) holds COBS bytes (no delimiter); on success
 * buf[0..*out_len) holds the decoded bytes. Returns KP_OK, KP_ERR_EMPTY or
 * KP_ERR_COBS (a zero byte or a code that overruns the input).
 */
kp_err_t kp_cobs_decode_inplace(uint8_t *buf, size_t n, size_t *out_len)
	__attribute__((warn_unused_result));

#endif
