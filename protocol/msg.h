/*
 * kiln wire protocol: messages.
 *
 * Every message and every field is declared exactly once, below, as an
 * X-macro. The structs, the encoder/decoder tables, the documentation
 * generator (tests/tools/protodoc) and the test vectors all expand the same
 * lists, so they cannot drift apart.
 *
 * Payload = sequence of TLVs: tag u8, length u16 LE, value. Tags appear in
 * strictly ascending order, each at most once. Integers have exactly their
 * width (u8: 1, u16: 2, u32: 4 bytes, LE). STR is printable ASCII
 * (0x20..0x7E), not NUL-terminated. Tags 0x01..0x7F are critical: a decoder
 * that does not know one rejects the message. Tags 0x80..0xFF are
 * ignorable: unknown ones are skipped. (See docs/protocol.md, versioning.)
 *
 * Decoded BYTES/STR fields borrow from the payload buffer: they are valid
 * only as long as it is.
 */
#ifndef KILN_PROTOCOL_MSG_H
#define KILN_PROTOCOL_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/error.h"

/* M(NAME, name, type code, summary) */
#define KP_MESSAGES(M)                                                          \
	M(HELLO, hello, 0x01, "identify the agent and report its state")        \
	M(GENKEY, genkey, 0x02, "generate the device key pair, return a CSR")   \
	M(PUT_OBJECT, put_object, 0x03, "write a chunk of an identity object")  \
	M(COMMIT, commit, 0x04,                                                 \
	  "commit the written identity; answer its read-back digest")         \
	M(STATUS, status, 0x05, "report the agent's state")                     \
	M(READBACK, readback, 0x06, "read back the committed identity blob")    \
	M(CHALLENGE, challenge, 0x07, "sign a nonce with the stored key")       \
	M(LOCK, lock, 0x08, "lock OTP, flash and debug; report the lock state") \
	M(SECURE_OPEN, secure_open, 0x09,                                       \
	  "open the sealed channel (ephemeral ECDH P-256)")                    \
	M(ERROR, error, 0x7F, "agent's answer when a request fails")

/* Field lists. F(T, tag, name, kind, min, max, presence); T is the
 * struct type the list is expanded for.
 * kind: U8 U16 U32 (min/max bound the value), BYTES STR (bound the length).
 * presence: REQ or OPT. */

#define KP_FIELDS_HELLO_REQ(F, T)                       \
	F(T, 0x01, proto_max, U8, 1, 255, REQ)          \
	F(T, 0x02, host_caps, U32, 0, 0xFFFFFFFFu, OPT)

#define KP_STATE_FIELDS(F, T, first)                           \
	F(T, first + 0, state, U8, 0, 3, REQ)                  \
	F(T, first + 1, lock, U8, 0, 7, REQ)                   \
	F(T, first + 2, integrity, U8, 0, 255, REQ)            \
	F(T, first + 3, slots_free, U8, 0, 255, REQ)           \
	F(T, first + 4, pubkey, BYTES, 65, 65, OPT)            \
	F(T, first + 5, id_digest, BYTES, 32, 32, OPT)

#define KP_FIELDS_HELLO_RSP(F, T)                       \
	F(T, 0x01, proto, U8, 1, 255, REQ)              \
	F(T, 0x02, agent_version, STR, 1, 32, REQ)      \
	F(T, 0x03, caps, U32, 0, 0xFFFFFFFFu, REQ)      \
	F(T, 0x04, uid, BYTES, 4, 32, REQ)              \
	F(T, 0x05, board, STR, 1, 32, REQ)              \
	F(T, 0x06, max_payload, U16, 64, 0xFFFF, REQ)   \
	KP_STATE_FIELDS(F, T, 0x07)                     \
	F(T, 0x80, boot_key_hash, BYTES, 32, 32, OPT)

#define KP_FIELDS_GENKEY_REQ(F, T)                      \
	F(T, 0x01, seed, BYTES, 16, 64, OPT)            \
	F(T, 0x02, flags, U8, 0, 1, OPT)                \
	F(T, 0x03, cn, STR, 1, 64, OPT)

#define KP_FIELDS_GENKEY_RSP(F, T)                      \
	F(T, 0x01, pubkey, BYTES, 65, 65, REQ)          \
	F(T, 0x02, csr, BYTES, 64, 600, REQ)            \
	F(T, 0x03, slot, U8, 0, 255, REQ)

#define KP_FIELDS_PUT_OBJECT_REQ(F, T)                  \
	F(T, 0x01, obj, U8, 1, 255, REQ)                \
	F(T, 0x02, offset, U32, 0, 0xFFFFFFFFu, REQ)    \
	F(T, 0x03, total, U32, 1, 0xFFFFFFFFu, REQ)     \
	F(T, 0x04, data, BYTES, 1, KP_PUT_MAX_DATA, REQ)

#define KP_FIELDS_PUT_OBJECT_RSP(F, T)                  \
	F(T, 0x01, obj, U8, 1, 255, REQ)                \
	F(T, 0x02, received, U32, 0, 0xFFFFFFFFu, REQ)  \
	F(T, 0x03, pubkey, BYTES, 65, 65, OPT)

#define KP_FIELDS_COMMIT_REQ(F, T)                      \
	F(T, 0x01, digest, BYTES, 32, 32, REQ)          \
	F(T, 0x02, nonce, BYTES, 16, 64, OPT)           \
	F(T, 0x03, boot_key_hash, BYTES, 32, 32, OPT)

#define KP_FIELDS_COMMIT_RSP(F, T)                      \
	F(T, 0x01, digest, BYTES, 32, 32, REQ)          \
	F(T, 0x02, state, U8, 0, 3, REQ)                \
	F(T, 0x03, sig, BYTES, 8, 72, OPT)              \
	F(T, 0x04, boot_key_hash, BYTES, 32, 32, OPT)

#define KP_FIELDS_STATUS_REQ(F, T)

#define KP_FIELDS_STATUS_RSP(F, T)                      \
	KP_STATE_FIELDS(F, T, 0x01)                     \
	F(T, 0x07, staged, U32, 0, 0xFFFFFFFFu, REQ)    \
	F(T, 0x80, boot_key_hash, BYTES, 32, 32, OPT)

#define KP_FIELDS_READBACK_REQ(F, T)                    \
	F(T, 0x01, offset, U32, 0, 0xFFFFFFFFu, REQ)    \
	F(T, 0x02, max, U16, 1, KP_PUT_MAX_DATA, REQ)

#define KP_FIELDS_READBACK_RSP(F, T)                    \
	F(T, 0x01, total, U32, 0, 0xFFFFFFFFu, REQ)     \
	F(T, 0x02, data, BYTES, 0, KP_PUT_MAX_DATA, REQ)

#define KP_FIELDS_CHALLENGE_REQ(F, T) F(T, 0x01, nonce, BYTES, 16, 64, REQ)

#define KP_FIELDS_CHALLENGE_RSP(F, T) F(T, 0x01, sig, BYTES, 8, 72, REQ)

#define KP_FIELDS_LOCK_REQ(F, T)                        \
	F(T, 0x01, level, U8, 1, 2, REQ)                \
	F(T, 0x02, nonce, BYTES, 16, 64, OPT)

#define KP_FIELDS_LOCK_RSP(F, T)                        \
	F(T, 0x01, lock, U8, 0, 7, REQ)                 \
	F(T, 0x02, state, U8, 0, 3, REQ)                \
	F(T, 0x03, sig, BYTES, 8, 72, OPT)

#define KP_FIELDS_SECURE_OPEN_REQ(F, T)                 \
	F(T, 0x01, host_pub, BYTES, 65, 65, REQ)        \
	F(T, 0x02, host_nonce, BYTES, 32, 32, REQ)

#define KP_FIELDS_SECURE_OPEN_RSP(F, T)                 \
	F(T, 0x01, agent_pub, BYTES, 65, 65, REQ)       \
	F(T, 0x02, agent_nonce, BYTES, 32, 32, REQ)     \
	F(T, 0x03, id_sig, BYTES, 8, 72, OPT)

#define KP_FIELDS_ERROR_REQ(F, T)

#define KP_FIELDS_ERROR_RSP(F, T)                       \
	F(T, 0x01, status, U16, 1, 0xFFFF, REQ)         \
	F(T, 0x02, detail, STR, 1, 64, OPT)             \
	F(T, 0x03, request_type, U8, 0, 255, OPT)

/*
 * The identity blob: what the agent stores in protected flash and whose
 * SHA-256 goes to OTP. Encoded as KP_BLOB_MAGIC (4 bytes), version u8,
 * then TLVs with the same rules as a payload. Host and agent both build it
 * with kp_blob_encode(), so the digest the host expects is the digest the
 * agent computes.
 */
#define KP_FIELDS_BLOB(F, T)                            \
	F(T, 0x01, pubkey, BYTES, 65, 65, REQ)          \
	F(T, 0x02, serial, STR, 1, 64, REQ)             \
	F(T, 0x03, cert, BYTES, 64, 2048, REQ)          \
	F(T, 0x04, chain, BYTES, 1, 4096, OPT)          \
	F(T, 0x05, meta, BYTES, 1, 512, OPT)

#define KP_BLOB_MAGIC "KLNB"
#define KP_BLOB_VERSION 1u
#define KP_BLOB_HDR_LEN 5u

/** Protocol version (HELLO proto_max / proto). Version 2: the identity
 * goes as one object (KP_OBJ_IDENTITY) written straight to flash; COMMIT
 * answers the digest of what it read back, signs the challenge nonce and
 * writes the secure-boot key hash. The framing version (frame.h) is
 * unchanged. */
#define KP_MSG_VERSION 2u

/** Largest data chunk in PUT_OBJECT / READBACK. */
#define KP_PUT_MAX_DATA 960u

/* Message type codes: KP_MSG_HELLO ... */
typedef enum {
#define KP_X(N, n, code, sum) KP_MSG_##N = code,
	KP_MESSAGES(KP_X)
#undef KP_X
} kp_msg_type_t;

/* Object ids for PUT_OBJECT. 0x01..0x04 (CERT, CHAIN, SERIAL, META as
 * separate objects) were protocol version 1; a version 2 agent refuses
 * them with KP_ST_BAD_OBJECT. */
typedef enum {
	KP_OBJ_IDENTITY = 0x05, /* the identity blob's TLVs after pubkey:
				   serial, cert, chain?, meta? (the agent
				   writes magic, version and its pubkey in
				   front) */
	KP_OBJ_HOSTKEY = 0x10,  /* host-generated P-256 private scalar, 32 B */
} kp_obj_t;

/** Bytes the agent puts in front of KP_OBJ_IDENTITY to form the blob:
 * magic, version, the pubkey TLV (tag, length, 65-byte point). */
#define KP_BLOB_PREFIX_LEN (KP_BLOB_HDR_LEN + 3u + 65u)

/* Agent states (HELLO/STATUS state). */
typedef enum {
	KP_STATE_BLANK = 0,     /* no key */
	KP_STATE_KEYED = 1,     /* key in OTP, no committed identity */
	KP_STATE_COMMITTED = 2, /* identity blob stored, digest in OTP */
	KP_STATE_LOCKED = 3,    /* committed and locked */
} kp_state_t;

/* Lock bits (HELLO/STATUS/LOCK lock): what the hardware reports. */
#define KP_LOCK_OTP 0x01u   /* identity OTP words locked */
#define KP_LOCK_FLASH 0x02u /* identity flash write-protected */
#define KP_LOCK_DEBUG 0x04u /* debug port disabled / readout protection */

/* LOCK levels. */
#define KP_LOCK_LEVEL_IDENTITY 1u /* OTP + flash */
#define KP_LOCK_LEVEL_FULL 2u     /* OTP + flash + debug */

/* Capability bits (HELLO caps). */
#define KP_CAP_TRNG 0x01u    /* agent has a hardware RNG */
#define KP_CAP_DEVKEY 0x02u  /* agent generates keys (GENKEY) */
#define KP_CAP_HOSTKEY 0x04u /* agent accepts host keys (PUT_OBJECT 0x10) */
#define KP_CAP_SECBOOT 0x08u /* agent has a secure-boot key-hash slot */
#define KP_CAP_SECURE 0x10u  /* agent opens the sealed channel (SECURE_OPEN)
				and refuses secrets outside it */

/* GENKEY flags. */
#define KP_GENKEY_NEW 0x01u /* use a fresh key slot even if already keyed */

/* Field kinds. */
typedef enum {
	KP_KIND_U8 = 1,
	KP_KIND_U16 = 2,
	KP_KIND_U32 = 3,
	KP_KIND_BYTES = 4,
	KP_KIND_STR = 5,
} kp_kind_t;

/* One field of a message, as the generic codec sees it. */
typedef struct {
	uint8_t tag;
	uint8_t kind;     /* kp_kind_t */
	uint8_t required; /* 1 if REQ */
	uint32_t min, max;
	uint16_t off;     /* offset of the value (or pointer) in the struct */
	uint16_t off_len; /* offset of the uint16_t length (BYTES/STR) */
	const char *name;
} kp_field_t;

/* Has-bit of a field: presence of tag t in m->has (a message's tags
 * must differ in their low 5 bits). */
#define KP_BIT(tag) (1u << ((tag)&0x1Fu))
#define KP_HAS(m, tag) (((m)->has & KP_BIT(tag)) != 0)

/* Struct members per kind. */
#define KP_MEMBER_U8(name) uint8_t name;
#define KP_MEMBER_U16(name) uint16_t name;
#define KP_MEMBER_U32(name) uint32_t name;
#define KP_MEMBER_BYTES(name) \
	const uint8_t *name;  \
	uint16_t name##_len;
#define KP_MEMBER_STR(name) \
	const char *name;   \
	uint16_t name##_len;
#define KP_X_MEMBER(T, tag, name, kind, min, max, pres) KP_MEMBER_##kind(name)

/* Generated structs: kp_hello_req_t, kp_hello_rsp_t, ... and kp_blob_t.
 * `has` holds KP_BIT(tag) for every field present (decode) or to send
 * (encode; required fields are always sent). */
#define KP_X_STRUCTS(N, n, code, sum)                          \
	typedef struct {                                       \
		uint32_t has;                                  \
		KP_FIELDS_##N##_REQ(KP_X_MEMBER, _)               \
	} kp_##n##_req_t;                                      \
	typedef struct {                                       \
		uint32_t has;                                  \
		KP_FIELDS_##N##_RSP(KP_X_MEMBER, _)               \
	} kp_##n##_rsp_t;
KP_MESSAGES(KP_X_STRUCTS)
#undef KP_X_STRUCTS

typedef struct {
	uint32_t has;
	KP_FIELDS_BLOB(KP_X_MEMBER, _)
} kp_blob_t;

/* Description of one message: both directions' field tables. */
typedef struct {
	uint8_t type;
	const char *name;
	const char *summary;
	const kp_field_t *req;
	size_t nreq;
	const kp_field_t *rsp;
	size_t nrsp;
} kp_msg_desc_t;

/** All messages, in declaration order; *n receives the count. */
const kp_msg_desc_t *kp_msg_table(size_t *n);

/** Descriptor of a message type, or NULL if unknown. */
const kp_msg_desc_t *kp_msg_find(uint8_t type);

/** Name of a message type ("HELLO"), or "UNKNOWN". */
const char *kp_msg_name(uint8_t type);

/** Field table of the identity blob. */
const kp_field_t *kp_blob_fields(size_t *n);

/**
 * Generic TLV encoder: writes every required field and every optional
 * field whose has-bit is set, in table order, into out[0..cap).
 * Checks each value against its bounds (KP_ERR_TLV_VALUE).
 */
kp_err_t kp_tlv_encode(const kp_field_t *f, size_t nf, const void *msg,
		       uint8_t *out, size_t cap, size_t *out_len)
	__attribute__((warn_unused_result));

/**
 * Generic TLV decoder: zeroes msg, then fills it from p[0..n). Rejects
 * overruns, out-of-order or duplicate tags, unknown critical tags,
 * bad sizes, out-of-range values, non-printable strings and missing
 * required fields. BYTES/STR members point into p.
 */
kp_err_t kp_tlv_decode(const kp_field_t *f, size_t nf, void *msg,
		       size_t msg_size, const uint8_t *p, size_t n)
	__attribute__((warn_unused_result));

/* Typed wrappers: kp_hello_req_encode(&m, out, cap, &len),
 * kp_hello_req_decode(&m, payload, len), and the same for _rsp. */
#define KP_X_PROTOS(N, n, code, sum)                                          \
	kp_err_t kp_##n##_req_encode(const kp_##n##_req_t *m, uint8_t *out,   \
				     size_t cap, size_t *out_len)             \
		__attribute__((warn_unused_result));                          \
	kp_err_t kp_##n##_req_decode(kp_##n##_req_t *m, const uint8_t *p,     \
				     size_t n_)                               \
		__attribute__((warn_unused_result));                          \
	kp_err_t kp_##n##_rsp_encode(const kp_##n##_rsp_t *m, uint8_t *out,   \
				     size_t cap, size_t *out_len)             \
		__attribute__((warn_unused_result));                          \
	kp_err_t kp_##n##_rsp_decode(kp_##n##_rsp_t *m, const uint8_t *p,     \
				     size_t n_)                               \
		__attribute__((warn_unused_result));
KP_MESSAGES(KP_X_PROTOS)
#undef KP_X_PROTOS

/**
 * Encode the identity blob: magic, version, TLVs. Host and agent both use
 * this; SHA-256 of the output is the identity digest.
 */
kp_err_t kp_blob_encode(const kp_blob_t *b, uint8_t *out, size_t cap,
			size_t *out_len) __attribute__((warn_unused_result));

/** Decode an identity blob (fields borrow from p). */
kp_err_t kp_blob_decode(kp_blob_t *b, const uint8_t *p, size_t n)
	__attribute__((warn_unused_result));

/* The challenge: the agent signs SHA-256 of
 *   KP_CHALLENGE_DOMAIN (16 bytes) | uid_len u8 | uid | nonce
 * with ECDSA P-256; the signature is DER. Binding the UID stops a
 * signature from one board being replayed for another. */
#define KP_CHALLENGE_DOMAIN "KILN-CHALLENGE-1"
#define KP_CHALLENGE_DOMAIN_LEN 16u

/** Build the byte string that CHALLENGE signs (before hashing). */
kp_err_t kp_challenge_message(const uint8_t *uid, size_t uid_len,
			      const uint8_t *nonce, size_t nonce_len,
			      uint8_t *out, size_t cap, size_t *out_len)
	__attribute__((warn_unused_result));

/* The lock report: LOCK with a nonce answers with an ECDSA P-256
 * signature over SHA-256 of
 *   KP_LOCK_DOMAIN (16 bytes) | uid_len u8 | uid | lock u8 | state u8
 *   | nonce
 * by the provisioned key, so what the station records as the lock is
 * what the board itself reported, not what something on the link
 * claimed. Its own domain keeps it apart from a CHALLENGE signature. */
#define KP_LOCK_DOMAIN "KILN-LOCKREPORT1"
#define KP_LOCK_DOMAIN_LEN 16u

/** Build the byte string a LOCK report signs (before hashing). */
kp_err_t kp_lock_message(const uint8_t *uid, size_t uid_len, uint8_t lock,
			 uint8_t state, const uint8_t *nonce, size_t nonce_len,
			 uint8_t *out, size_t cap, size_t *out_len)
	__attribute__((warn_unused_result));

#endif
