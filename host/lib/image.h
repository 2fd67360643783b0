/*
 * kiln station library: signed firmware images (the format the first-stage
 * boot in device/boot/ verifies). Byte-exact specification in
 * docs/secure-boot.md; in short (all integers little-endian):
 *
 *   header (hdr_size bytes, >= 32; bytes 32.. are zero padding so the
 *   body, which starts with the vector table, is aligned):
 *     0  u32 magic 0x474D494B ("KIMG")   4  u16 header version (1)
 *     6  u16 header size                 8  u32 flags (KS_IMAGE_FLAG_*)
 *    12  u32 image (body) size          16  u32 load address of the body
 *    20  u32 security counter           24  u8 major, u8 minor, u16 patch
 *    28  u32 reserved (0)
 *   body (image size bytes)
 *   trailer: u16 magic 0x544B ("KT"), u16 total trailer length, then TLVs
 *     {u16 type, u16 length, value}, exactly these, in this order:
 *     0x0010 SHA-256 of header + body (32)
 *     0x0020 signing public key, uncompressed P-256 point (65)
 *     0x0022 ECDSA P-256 signature over SHA-256(header + body), DER
 *   nothing after the trailer.
 *
 * The boot trusts the public key in the image only if its SHA-256 equals
 * the key hash burnt in OTP (ks_image_key_hash()).
 */
#ifndef KILN_HOST_LIB_IMAGE_H
#define KILN_HOST_LIB_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "host/lib/err.h"

#define KS_IMAGE_MAGIC 0x474D494Bu /* "KIMG" */
#define KS_IMAGE_HDR_VERSION 1u
#define KS_IMAGE_HDR_LEN 32u       /* the fixed fields */
#define KS_IMAGE_HDR_SIZE_DEFAULT 0x200u
#define KS_IMAGE_HDR_SIZE_MAX 0x1000u
#define KS_IMAGE_BODY_MAX (16u * 1024u * 1024u)
#define KS_IMAGE_COUNTER_MAX 1024u /* the OTP counter's range */

#define KS_IMAGE_TRAILER_MAGIC 0x544Bu /* "KT" */
#define KS_IMAGE_TLV_SHA256 0x0010u
#define KS_IMAGE_TLV_PUBKEY 0x0020u
#define KS_IMAGE_TLV_ECDSA_SIG 0x0022u
#define KS_IMAGE_PUBKEY_LEN 65u
#define KS_IMAGE_SIG_MIN 8u
#define KS_IMAGE_SIG_MAX 72u
#define KS_IMAGE_TRAILER_MAX \
	(4u + 4u + 32u + 4u + KS_IMAGE_PUBKEY_LEN + 4u + KS_IMAGE_SIG_MAX)

/* Flags. */
#define KS_IMAGE_FLAG_FACTORY 0x00000001u /* the factory (agent) image:
					     boots unverified while no key
					     hash is provisioned */
#define KS_IMAGE_FLAGS_KNOWN KS_IMAGE_FLAG_FACTORY

/** Why an image failed to parse or verify (the boot's reasons). */
typedef enum {
	KS_IMAGE_OK = 0,
	KS_IMAGE_BAD_HEADER = 1,    /* magic, version, sizes, reserved bits */
	KS_IMAGE_BAD_TRAILER = 2,   /* TLV trailer malformed or truncated */
	KS_IMAGE_HASH_MISMATCH = 3, /* SHA-256 TLV != header + body */
	KS_IMAGE_WRONG_KEY = 4,     /* public key hash != the expected one */
	KS_IMAGE_BAD_SIGNATURE = 5, /* ECDSA verification failed */
} ks_image_fail_t;

/** What the header and trailer say. */
typedef struct {
	uint16_t hdr_version;
	uint16_t hdr_size;
	uint32_t flags;
	uint32_t image_size;
	uint32_t load_addr;
	uint32_t counter;
	uint8_t ver_major, ver_minor;
	uint16_t ver_patch;
	uint8_t hash[32];                      /* from the SHA-256 TLV */
	uint8_t pubkey[KS_IMAGE_PUBKEY_LEN];   /* from the PUBKEY TLV */
	uint8_t key_hash[32];                  /* SHA-256 of pubkey */
	uint8_t sig[KS_IMAGE_SIG_MAX];
	size_t sig_len;
	size_t trailer_len;
} ks_image_info_t;

/** What to put in the header when signing. */
typedef struct {
	uint16_t hdr_size; /* 0: KS_IMAGE_HDR_SIZE_DEFAULT */
	uint32_t flags;
	uint32_t load_addr;
	uint32_t counter;
	uint8_t ver_major, ver_minor;
	uint16_t ver_patch;
} ks_image_params_t;

/** Text for a failure reason, as the boot prints it; never NULL. */
const char *ks_image_fail_str(ks_image_fail_t why);

/**
 * Parse "X.Y.Z" strictly (X, Y 0..255, Z 0..65535, decimal, nothing
 * else). KS_OK or KS_ERR_ARG.
 */
__attribute__((warn_unused_result))
ks_err_t ks_image_version_parse(const char *s, uint8_t *major, uint8_t *minor,
				uint16_t *patch);

/**
 * Load a P-256 public key from a PEM file holding a PUBLIC KEY or a
 * CERTIFICATE (the first PEM block counts) as the 65-byte uncompressed
 * point. KS_ERR_IO (unreadable), KS_ERR_ARG (not PEM, a private key, or
 * not a public key or certificate), KS_ERR_POLICY (not an EC P-256 key);
 * a message naming the file goes to err.
 */
__attribute__((warn_unused_result))
ks_err_t ks_image_pubkey_load(const char *path,
			      uint8_t pub[KS_IMAGE_PUBKEY_LEN], char *err,
			      size_t errlen);

/** The key hash the boot compares: SHA-256 of the 65-byte point. */
void ks_image_key_hash(const uint8_t pub[KS_IMAGE_PUBKEY_LEN],
		       uint8_t hash[32]);

/**
 * Build a signed image from @body (@len bytes): header from @p, the
 * trailer signed with @key, a PEM private key file (EC P-256) or a
 * pkcs11: URI (then @pubkey_path, a PEM public key or certificate of the
 * token key, is required; @pkcs11_module as in host/lib/p11.h, NULL for
 * the default). @pubkey_path given with a PEM key must match it. The
 * signature is verified before the image is returned. *out is malloc()ed
 * (caller frees), *outlen its size. Private key bytes are wiped after
 * use. Errors: KS_ERR_ARG (parameters), KS_ERR_IO, KS_ERR_POLICY (not a
 * P-256 key), KS_ERR_VERIFY (key mismatch), KS_ERR_CRYPTO, with a
 * message in err.
 */
__attribute__((warn_unused_result))
ks_err_t ks_image_sign(const uint8_t *body, size_t len,
		       const ks_image_params_t *p, const char *key,
		       const char *pubkey_path, const char *pkcs11_module,
		       uint8_t **out, size_t *outlen, char *err,
		       size_t errlen);

/**
 * Parse an image: header checks (magic, version, header size 32..4096,
 * padding and reserved zero, known flags, sizes within @len without
 * overflow), trailer checks (exact TLV set and order, lengths, nothing
 * after it), then the SHA-256 of header + body against the TLV. Fills
 * *info (also on a hash mismatch). KS_OK, or KS_ERR_VERIFY with *why and
 * a message in err.
 */
__attribute__((warn_unused_result))
ks_err_t ks_image_parse(const uint8_t *img, size_t len, ks_image_info_t *info,
			ks_image_fail_t *why, char *err, size_t errlen);

/**
 * ks_image_parse(), then the public key against @key_hash (SHA-256 of
 * the trusted 65-byte point) and the ECDSA signature. KS_OK, or
 * KS_ERR_VERIFY with *why and a message in err.
 */
__attribute__((warn_unused_result))
ks_err_t ks_image_verify(const uint8_t *img, size_t len,
			 const uint8_t key_hash[32], ks_image_info_t *info,
			 ks_image_fail_t *why, char *err, size_t errlen);

#endif
