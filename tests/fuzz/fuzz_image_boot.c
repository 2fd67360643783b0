/*
 * Fuzz target: the first-stage boot's whole decision (device/boot/boot.c:
 * kb_boot_check) on the POSIX port's emulated part (an image in /dev/shm,
 * fresh for every input): identity check, OTP key-hash slot, the
 * header/trailer parser over an untrusted slot, SHA-256, the mbedTLS
 * ECDSA verification (public point and DER signature from the image) and
 * the anti-rollback counter.
 *
 * Input layout:
 *   byte 0   bits 0..1 the key-hash slot: 0 free; 1 the SHA-256 of the
 *            image's own public key TLV (so the signature is checked);
 *            2 another key's hash; 3 burnt (data words, no check word)
 *            bit 2: the OTP identity header word holds a foreign value
 *   byte 1   the anti-rollback counter before the boot (0..255)
 *   then     the slot (exactly this many bytes; at 0x00020000, RAM
 *            0x20000000..0x20400000 as on the QEMU board)
 * The corpus holds images made by `kiln image sign` behind the two bytes.
 *
 * Invariants: the answer is one of the documented reasons, and the one
 * the storage dictates (a corrupt identity or key-hash slot refuses
 * everything); an image runs only as a factory image on a board without
 * a key hash or verified against the key hash; a verified image is one
 * the station's verifier (OpenSSL, host/lib/image.c) also accepts with
 * that key hash, and what the boot calls a bad signature the station
 * refuses too; the counter never goes down, moves only for a verified
 * image, and ends at max(before, image counter); "rollback" only for a
 * lower image counter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "device/boot/boot.h"
#include "device/core/record.h"
#include "device/core/secboot.h"
#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"
#include "host/lib/image.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(c)                                                            \
	do {                                                                \
		if (!(c)) {                                                 \
			fprintf(stderr, "fuzz_image_boot: %s:%d: %s\n",       \
				__FILE__, __LINE__, #c);                    \
			abort();                                            \
		}                                                           \
	} while (0)

#define SLOT_ADDR 0x00020000u
#define RAM_START 0x20000000u
#define RAM_END 0x20400000u

enum { KH_FREE = 0, KH_OWN = 1, KH_OTHER = 2, KH_BURNT = 3 };

static char path[64];
static uint8_t heap[KB_HEAP_SIZE] __attribute__((aligned(8)));

static void cleanup(void)
{
	ka_sim_close();
	if (path[0] != '\0')
		(void)unlink(path);
}

static int open_fresh(void)
{
	static const uint8_t uid[12] = "fuzz-imgboot";
	ka_sim_config_t cfg;

	if (path[0] == '\0') {
		snprintf(path, sizeof(path), "/dev/shm/kiln-fuzz-image-boot-%ld",
			 (long)getpid());
		atexit(cleanup);
	}
	ka_sim_close();
	(void)unlink(path);
	memset(&cfg, 0, sizeof(cfg));
	cfg.path = path;
	cfg.uid = uid;
	cfg.uid_len = sizeof(uid);
	cfg.rng_none = true;
	cfg.quiet = true;
	return ka_sim_open(&cfg);
}

/* The image's own public key TLV, found the way the boot finds it. */
static bool own_key_hash(const kb_target_t *t, uint8_t h[32])
{
	kb_image_t img;
	const uint8_t *hash, *pub, *sig;
	size_t sig_len;
	unsigned int hn = 32;

	if (kb_image_parse(t, &img, &hash, &pub, &sig, &sig_len) != KB_OK)
		return false;
	return EVP_Digest(pub, KB_PUBKEY_LEN, h, &hn, EVP_sha256(), NULL) == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kb_target_t t = {
		.slot_addr = SLOT_ADDR,
		.ram_start = RAM_START,
		.ram_end = RAM_END,
		.heap = heap,
		.heap_len = sizeof(heap),
	};
	kb_image_t img;
	kb_reason_t r;
	uint8_t kh[32], got[32];
	bool have_kh = false, present;
	uint32_t before = 0, after = 0;
	unsigned mode;

	if (size < 2 || size - 2 > UINT32_MAX)
		return 0;
	mode = data[0];
	t.slot = data + 2;
	t.slot_size = (uint32_t)(size - 2);
	CHECK(open_fresh() == 0);

	switch (mode & 3u) {
	case KH_OWN:
		have_kh = own_key_hash(&t, kh);
		break;
	case KH_OTHER:
		memset(kh, 0xA5, sizeof(kh));
		have_kh = true;
		break;
	case KH_BURNT:
		/* an interrupted or tampered slot: data words, no check word */
		CHECK(ka_hal_otp_program(KA_REC_SECBOOT_BASE, 0x12345678u) ==
		      KA_HAL_OK);
		break;
	default:
		break;
	}
	if (have_kh)
		CHECK(ka_sb_keyhash_write(kh) == KP_ST_OK);
	if ((mode & 4u) != 0)
		CHECK(ka_hal_otp_program(KA_REC_HEADER_WORD, 0x0BADF00Du) ==
		      KA_HAL_OK);
	if (data[1] > 0)
		CHECK(ka_sb_counter_advance(data[1]) == KP_ST_OK);
	CHECK(ka_sb_counter_read(&before) == KP_ST_OK && before == data[1]);

	r = kb_boot_check(&t, &img);

	CHECK(r <= KB_NO_IMAGE);
	CHECK(strcmp(kb_reason_str(r), "unknown") != 0);
	CHECK(ka_sb_counter_read(&after) == KP_ST_OK);
	CHECK(after >= before);
	if ((mode & 4u) != 0)
		CHECK(r == KB_IDENTITY_CORRUPT);
	else if ((mode & 3u) == KH_BURNT)
		CHECK(r == KB_KEY_HASH_CORRUPT);
	CHECK(ka_sb_keyhash_read(got, &present) == KP_ST_OK ||
	      (mode & 3u) == KH_BURNT);
	if (r == KB_OK && !img.verified) {
		CHECK(!have_kh && (img.flags & KB_IMAGE_FLAG_FACTORY) != 0);
		CHECK(after == before);
	}
	if (r == KB_OK && img.verified) {
		ks_image_info_t in;
		ks_image_fail_t why;
		char err[256];
		size_t len = (size_t)img.hdr_size + img.image_size;

		CHECK(have_kh && (mode & 3u) == KH_OWN);
		/* the image proper: header + body + trailer (its length
		 * field), bounded by the slot as the boot checked */
		len += (size_t)(data[2 + len + 2] | data[2 + len + 3] << 8);
		CHECK(len <= t.slot_size);
		CHECK(ks_image_verify(t.slot, len, kh, &in, &why, err,
				      sizeof(err)) == KS_OK);
		CHECK(after == (img.counter > before ? img.counter : before));
		CHECK(img.otp_counter == after);
	} else if (r == KB_COUNTER_FAILED) {
		CHECK(img.verified && img.counter > before);
	} else {
		CHECK(after == before);
	}
	if (r == KB_BAD_SIGNATURE) {
		ks_image_info_t in;
		ks_image_fail_t why;
		char err[256];
		size_t len = (size_t)img.hdr_size + img.image_size;

		CHECK(have_kh);
		len += (size_t)(data[2 + len + 2] | data[2 + len + 3] << 8);
		CHECK(len <= t.slot_size);
		CHECK(ks_image_verify(t.slot, len, kh, &in, &why, err,
				      sizeof(err)) == KS_ERR_VERIFY);
	}
	if (r == KB_ROLLBACK)
		CHECK(img.verified && img.counter < before);
	if (r == KB_NO_KEY_HASH)
		CHECK(!have_kh && (img.flags & KB_IMAGE_FLAG_FACTORY) == 0);
	if (r == KB_WRONG_KEY)
		CHECK((mode & 3u) == KH_OTHER);
	return 0;
}
