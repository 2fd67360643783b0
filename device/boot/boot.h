/*
 * kiln first-stage boot: the portable decision (is this image allowed to
 * run?), over the HAL (OTP, identity flash) and an execute-in-place image
 * slot the caller maps. Board files (device/boot/<board>/) print the
 * verdict on the UART and jump, or stay in safe mode.
 *
 * The image format is the one `kiln image sign` writes (host/lib/image.h,
 * byte-exact in docs/secure-boot.md); this is its second, independent
 * implementation (mbedTLS instead of OpenSSL), checked against the first
 * by tests/boot.
 *
 * The policy, in order (docs/secure-boot.md, "What the boot checks"):
 *  1. the stored identity is intact (ka_record_scan(): a board with no
 *     identity yet passes, one whose records or blob fail their checks
 *     does not);
 *  2. the key-hash slot reads free or valid (a burnt slot refuses);
 *  3. the header and trailer parse, with every size checked against the
 *     slot without overflow, the body linked where it sits (load address
 *     = slot address + header size) and its vector table pointing into
 *     the body and RAM;
 *  4. SHA-256 of header + body equals the trailer's;
 *  5. no key hash provisioned: only an image flagged FACTORY runs, and
 *     unverified (the factory agent that will provision the key hash);
 *     anything else is refused ("no key hash");
 *  6. SHA-256 of the image's public key equals the OTP key hash, and the
 *     ECDSA P-256 signature over SHA-256(header + body) verifies;
 *  7. the image's security counter is not below the OTP anti-rollback
 *     counter; a higher one advances the OTP counter (only now, after the
 *     signature verified) before the image runs.
 */
#ifndef KILN_DEVICE_BOOT_BOOT_H
#define KILN_DEVICE_BOOT_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KB_WUR __attribute__((warn_unused_result))

/* The format (must equal host/lib/image.h; tests/boot checks both). */
#define KB_IMAGE_MAGIC 0x474D494Bu /* "KIMG" */
#define KB_IMAGE_HDR_VERSION 1u
#define KB_IMAGE_HDR_LEN 32u
#define KB_IMAGE_HDR_SIZE_MAX 0x1000u
#define KB_IMAGE_COUNTER_MAX 1024u
#define KB_IMAGE_FLAG_FACTORY 0x00000001u
#define KB_IMAGE_FLAGS_KNOWN KB_IMAGE_FLAG_FACTORY
#define KB_TRAILER_MAGIC 0x544Bu /* "KT" */
#define KB_TLV_SHA256 0x0010u
#define KB_TLV_PUBKEY 0x0020u
#define KB_TLV_ECDSA_SIG 0x0022u
#define KB_PUBKEY_LEN 65u
#define KB_SIG_MIN 8u
#define KB_SIG_MAX 72u
#define KB_TRAILER_MAX (4u + 4u + 32u + 4u + KB_PUBKEY_LEN + 4u + KB_SIG_MAX)

/* Scratch the mbedTLS ECDSA verification needs (P-256, window 2). */
#define KB_HEAP_SIZE 6144u

/** Why the boot refused (what it prints after "kiln-boot: refused: "). */
typedef enum {
	KB_OK = 0,
	KB_NO_KEY_HASH = 1,      /* slot free and the image is not FACTORY */
	KB_BAD_HEADER = 2,       /* header fields, sizes, vector table */
	KB_BAD_TRAILER = 3,      /* TLV trailer */
	KB_HASH_MISMATCH = 4,    /* SHA-256 of header + body */
	KB_WRONG_KEY = 5,        /* image key hash != OTP key hash */
	KB_BAD_SIGNATURE = 6,    /* ECDSA */
	KB_ROLLBACK = 7,         /* counter below the OTP counter */
	KB_IDENTITY_CORRUPT = 8, /* identity records or blob */
	KB_KEY_HASH_CORRUPT = 9, /* key-hash slot burnt or tampered */
	KB_STORAGE = 10,         /* OTP/flash unreadable */
	KB_COUNTER_FAILED = 11,  /* could not advance the OTP counter */
	KB_NO_IMAGE = 12,        /* the slot is erased */
} kb_reason_t;

/** Where the image lives and what the board offers. */
typedef struct {
	const uint8_t *slot; /* the slot's bytes, readable */
	uint32_t slot_addr;  /* its address as the CPU executes it */
	uint32_t slot_size;
	uint32_t ram_start, ram_end; /* the initial SP must lie in
					(ram_start, ram_end] */
	uint8_t *heap;       /* KB_HEAP_SIZE bytes for mbedTLS (wiped) */
	size_t heap_len;
} kb_target_t;

/** What the boot found (valid fields as far as the checks went). */
typedef struct {
	uint16_t hdr_size;
	uint32_t flags;
	uint32_t image_size;
	uint32_t load_addr;
	uint32_t counter;
	uint8_t ver_major, ver_minor;
	uint16_t ver_patch;
	uint32_t initial_sp, reset; /* from the body's vector table */
	bool verified;              /* signature checked against OTP */
	uint32_t otp_counter;       /* after any advance */
} kb_image_t;

/** Text of a reason ("bad signature"...); never NULL. */
const char *kb_reason_str(kb_reason_t r);

/**
 * Parse the image at the start of the slot: header, vector table, trailer
 * (policy step 3). On KB_OK, *img is filled and *hash, *pub, *sig,
 * *sig_len point into the slot.
 */
kb_reason_t kb_image_parse(const kb_target_t *t, kb_image_t *img,
			   const uint8_t **hash, const uint8_t **pub,
			   const uint8_t **sig, size_t *sig_len) KB_WUR;

/**
 * Verify an ECDSA P-256 signature (DER) over a SHA-256 digest with a
 * 65-byte uncompressed public key, using heap[0..heap_len) as mbedTLS
 * scratch (wiped after). KB_OK or KB_BAD_SIGNATURE.
 */
kb_reason_t kb_ecdsa_verify(const uint8_t pub[KB_PUBKEY_LEN],
			    const uint8_t digest[32], const uint8_t *sig,
			    size_t sig_len, uint8_t *heap,
			    size_t heap_len) KB_WUR;

/**
 * The whole policy (steps 1..7 above). KB_OK: the image may run
 * (img->verified says whether it was verified; the OTP counter has been
 * advanced if needed). Anything else: stay in safe mode.
 */
kb_reason_t kb_boot_check(const kb_target_t *t, kb_image_t *img) KB_WUR;

#endif
