/*
 * kiln wire protocol: error codes.
 *
 * Two families are kept apart (as libfido2 keeps wire status apart from
 * library errors):
 *  - kp_err_t: what the local codec reports (bad CRC, truncated frame...).
 *    Never sent on the wire.
 *  - kp_status_t: the stable status code an agent sends in an ERROR message.
 * Both only grow; a value, once published, never changes meaning.
 */
#ifndef KILN_PROTOCOL_ERROR_H
#define KILN_PROTOCOL_ERROR_H

#define KP_ERRORS(X)                                                       \
	X(KP_OK, 0, "success")                                             \
	X(KP_ERR_ARG, 1, "invalid argument")                               \
	X(KP_ERR_NOSPACE, 2, "output buffer too small")                    \
	X(KP_ERR_TRUNCATED, 3, "frame truncated")                          \
	X(KP_ERR_CRC, 4, "frame CRC mismatch")                             \
	X(KP_ERR_VERSION, 5, "unknown protocol version")                   \
	X(KP_ERR_TOO_LARGE, 6, "frame exceeds maximum size")               \
	X(KP_ERR_COBS, 7, "invalid COBS encoding")                         \
	X(KP_ERR_TRAILING, 8, "trailing bytes after payload")              \
	X(KP_ERR_TYPE, 9, "unknown message type")                          \
	X(KP_ERR_FLAGS, 10, "reserved header flags or byte set")           \
	X(KP_ERR_TLV_OVERRUN, 11, "TLV overruns its payload")              \
	X(KP_ERR_TLV_DUP, 12, "duplicate TLV field")                       \
	X(KP_ERR_TLV_MISSING, 13, "required TLV field missing")            \
	X(KP_ERR_TLV_UNKNOWN, 14, "unknown critical TLV field")            \
	X(KP_ERR_TLV_VALUE, 15, "TLV value has a bad size or content")     \
	X(KP_ERR_EMPTY, 16, "empty frame")                                 \
	X(KP_ERR_BLOB, 17, "malformed identity blob")                     \
	X(KP_ERR_TLV_ORDER, 18, "TLV fields out of ascending tag order")   \
	X(KP_ERR_SEAL_AUTH, 19, "sealed payload failed authentication")   \
	X(KP_ERR_SEAL_REPLAY, 20, "sealed payload replayed")              \
	X(KP_ERR_SEAL_ORDER, 21, "sealed payload out of order")

typedef enum {
#define KP_X_ENUM(name, val, str) name = val,
	KP_ERRORS(KP_X_ENUM)
#undef KP_X_ENUM
} kp_err_t;

/*
 * Wire status codes carried by ERROR (tag 0x01, u16). 0 is never sent.
 */
#define KP_STATUSES(X)                                                     \
	X(KP_ST_OK, 0, "ok")                                               \
	X(KP_ST_BAD_FRAME, 1, "frame could not be decoded")                \
	X(KP_ST_BAD_MESSAGE, 2, "message fields invalid")                  \
	X(KP_ST_UNSUPPORTED, 3, "message or option not supported")         \
	X(KP_ST_BAD_STATE, 4, "not allowed in the agent's current state")  \
	X(KP_ST_LOCKED, 5, "device is locked")                             \
	X(KP_ST_STORAGE, 6, "OTP or flash write failed")                   \
	X(KP_ST_EXHAUSTED, 7, "no free OTP slot left")                     \
	X(KP_ST_INTEGRITY, 8, "stored identity failed its integrity check") \
	X(KP_ST_CRYPTO, 9, "cryptographic operation failed")               \
	X(KP_ST_NO_ENTROPY, 10, "no entropy: a seed is required")          \
	X(KP_ST_BAD_OBJECT, 11, "object id, offset or size invalid")       \
	X(KP_ST_BAD_DIGEST, 12, "identity digest does not match")          \
	X(KP_ST_NO_KEY, 13, "no key provisioned")                          \
	X(KP_ST_INTERNAL, 14, "internal agent error")                     \
	X(KP_ST_NOT_SEALED, 15, "secret refused outside the sealed channel") \
	X(KP_ST_NO_CHANNEL, 16, "no sealed channel is open")              \
	X(KP_ST_SEAL_AUTH, 17, "sealed message failed authentication")    \
	X(KP_ST_SEAL_REPLAY, 18, "sealed message replayed")               \
	X(KP_ST_SEAL_ORDER, 19, "sealed message out of order")            \
	X(KP_ST_BOOT_KEY, 20,                                              \
	  "secure-boot key-hash slot holds a different hash")

typedef enum {
#define KP_X_ENUM(name, val, str) name = val,
	KP_STATUSES(KP_X_ENUM)
#undef KP_X_ENUM
} kp_status_t;

/** Human-readable text for a codec error; never NULL. */
const char *kp_strerror(int err);

/** Human-readable text for a wire status code; never NULL. */
const char *kp_status_str(int status);

/** Symbolic name ("KP_ERR_CRC") of a codec error; never NULL. */
const char *kp_err_name(int err);

#endif
