/*
 * Fuzz target: the signed firmware image parser of the station
 * (host/lib/image.c: ks_image_parse, ks_image_verify), which `kiln image
 * verify|info` runs on files from anywhere, and the boot's header/trailer
 * parser (device/boot/boot.c: kb_image_parse) on the same bytes as the
 * QEMU board's slot (slot 0x00020000, RAM 0x20000000..0x20400000), the
 * two implementations of the format checked against each other.
 *
 * Input: the image file (corpus: images made by `kiln image sign`).
 * Invariants:
 *  - a parse that gets past the structure (OK or hash mismatch) accounts
 *    for every byte: header + body + trailer == input; the fields read
 *    back from the bytes where docs/secure-boot.md puts them; the key
 *    hash is SHA-256 of the point; the signature length is 8..72;
 *  - no proper prefix of an accepted image is accepted (one byte short);
 *  - ks_image_verify() of an accepted image against its own key hash is
 *    OK or "bad signature" (never a parse reason), against another key
 *    hash "wrong key";
 *  - whatever the boot's parser accepts from the slot, the station's
 *    parser accepts too on the image's own bytes (header + body +
 *    trailer), with the same fields (the boot is never laxer), and the
 *    boot's hash/pubkey/signature pointers lie inside the slot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "device/boot/boot.h"
#include "host/lib/image.h"
#include "protocol/le.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(c)                                                            \
	do {                                                                \
		if (!(c)) {                                                 \
			fprintf(stderr, "fuzz_image: %s:%d: %s\n", __FILE__,  \
				__LINE__, #c);                              \
			abort();                                            \
		}                                                           \
	} while (0)

#define SLOT_ADDR 0x00020000u
#define RAM_START 0x20000000u
#define RAM_END 0x20400000u

static bool inside(const uint8_t *p, size_t n, const uint8_t *base,
		   size_t len)
{
	return p >= base && (size_t)(p - base) <= len &&
	       n <= len - (size_t)(p - base);
}

static void check_fields(const ks_image_info_t *in, const uint8_t *d,
			 size_t size)
{
	uint8_t h[32];
	unsigned int hn = 32;

	CHECK(kp_get_le32(d) == KS_IMAGE_MAGIC);
	CHECK(in->hdr_version == KS_IMAGE_HDR_VERSION);
	CHECK(in->hdr_size == kp_get_le16(d + 6));
	CHECK(in->flags == kp_get_le32(d + 8));
	CHECK(in->image_size == kp_get_le32(d + 12));
	CHECK(in->load_addr == kp_get_le32(d + 16));
	CHECK(in->counter == kp_get_le32(d + 20) &&
	      in->counter <= KS_IMAGE_COUNTER_MAX);
	CHECK(in->hdr_size >= KS_IMAGE_HDR_LEN &&
	      in->hdr_size <= KS_IMAGE_HDR_SIZE_MAX);
	CHECK((in->flags & ~KS_IMAGE_FLAGS_KNOWN) == 0);
	CHECK((uint64_t)in->hdr_size + in->image_size + in->trailer_len ==
	      size);
	CHECK(in->sig_len >= KS_IMAGE_SIG_MIN && in->sig_len <= KS_IMAGE_SIG_MAX);
	CHECK(in->pubkey[0] == 0x04);
	CHECK(EVP_Digest(in->pubkey, KS_IMAGE_PUBKEY_LEN, h, &hn, EVP_sha256(),
			 NULL) == 1);
	CHECK(memcmp(h, in->key_hash, 32) == 0);
}

/* The boot's parser on the input as a slot of exactly its size. */
static void boot_parse(const uint8_t *data, size_t size)
{
	kb_target_t t = {
		.slot = data,
		.slot_addr = SLOT_ADDR,
		.slot_size = (uint32_t)size,
		.ram_start = RAM_START,
		.ram_end = RAM_END,
	};
	kb_image_t b;
	ks_image_info_t in;
	ks_image_fail_t why;
	const uint8_t *hash = NULL, *pub = NULL, *sig = NULL;
	size_t sig_len = 0, len;
	char err[256];
	ks_err_t r;

	if (size > UINT32_MAX)
		return;
	if (kb_image_parse(&t, &b, &hash, &pub, &sig, &sig_len) != KB_OK)
		return;
	CHECK(b.hdr_size >= KB_IMAGE_HDR_LEN && b.image_size >= 8u &&
	      (size_t)b.hdr_size + b.image_size < size);
	CHECK(b.load_addr == SLOT_ADDR + b.hdr_size);
	CHECK(inside(hash, 32, data, size) && inside(pub, KB_PUBKEY_LEN, data,
						     size) &&
	      inside(sig, sig_len, data, size));
	CHECK(sig_len >= KB_SIG_MIN && sig_len <= KB_SIG_MAX);
	/* the image proper ends with the signature TLV's value */
	len = (size_t)(sig + sig_len - data);
	r = ks_image_parse(data, len, &in, &why, err, sizeof(err));
	CHECK(r == KS_OK || why == KS_IMAGE_HASH_MISMATCH);
	CHECK(in.hdr_size == b.hdr_size && in.flags == b.flags &&
	      in.image_size == b.image_size && in.load_addr == b.load_addr &&
	      in.counter == b.counter && in.ver_major == b.ver_major &&
	      in.ver_minor == b.ver_minor && in.ver_patch == b.ver_patch);
	CHECK(memcmp(in.hash, hash, 32) == 0 &&
	      memcmp(in.pubkey, pub, KB_PUBKEY_LEN) == 0 &&
	      in.sig_len == sig_len && memcmp(in.sig, sig, sig_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ks_image_info_t in, in2;
	ks_image_fail_t why, why2;
	uint8_t other[32];
	char err[256];
	ks_err_t r;

	r = ks_image_parse(data, size, &in, &why, err, sizeof(err));
	CHECK(r == KS_OK || r == KS_ERR_VERIFY);
	CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	CHECK((r == KS_OK) == (why == KS_IMAGE_OK));
	CHECK(why == KS_IMAGE_OK || why == KS_IMAGE_BAD_HEADER ||
	      why == KS_IMAGE_BAD_TRAILER || why == KS_IMAGE_HASH_MISMATCH);
	if (r == KS_OK || why == KS_IMAGE_HASH_MISMATCH)
		check_fields(&in, data, size);
	if (r == KS_OK) {
		CHECK(ks_image_parse(data, size - 1, &in2, &why2, err,
				     sizeof(err)) == KS_ERR_VERIFY);
		r = ks_image_verify(data, size, in.key_hash, &in2, &why2, err,
				    sizeof(err));
		CHECK(r == KS_OK || why2 == KS_IMAGE_BAD_SIGNATURE);
		memcpy(other, in.key_hash, 32);
		other[31] ^= 0x01u;
		r = ks_image_verify(data, size, other, &in2, &why2, err,
				    sizeof(err));
		CHECK(r == KS_ERR_VERIFY && why2 == KS_IMAGE_WRONG_KEY);
	}
	boot_parse(data, size);
	return 0;
}
