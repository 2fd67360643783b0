/*
 * Fuzz target: the identity records (device/core/record.c) over fuzzed
 * OTP and flash content, and the blob decoder over what flash holds.
 *
 * The harness writes an image of the POSIX port's emulated part
 * (device/ports/posix/sim_image.h) from the input, opens it, and runs
 * ka_record_scan(); then, on the scanned store, a key store, a commit and
 * a lock, as the agent would. Input layout:
 *   byte 0      OTP block lock bits 0..7 (bits of blocks 0..7)
 *   byte 1      bit 0..3 flash write protection, bit 4 debug locked,
 *               bit 5 OTP header word V1 (else from the data), bit 6..7
 *               lock word: 0 erased, 1 KA_REC_LOCK_MAGIC, 2.. from data
 *   byte 2..5   per key slot: 0 free, 1 valid (check word computed),
 *               2 burnt (check from the data), 3 partly programmed
 *   byte 6..9   per commit slot: same, and with bit 2 set the digest is
 *               the SHA-256 of the blob its info word points at
 *   byte 10     the LOCK level tried at the end (1 or 2)
 *   then        OTP word data (as needed, little-endian), then the flash
 *               bytes of sectors 0 and 1
 * Invariants: the scan's newest key/commit slots are the highest valid
 * ones; an identity reported intact hashes to its digest; a successful
 * key store / commit / lock is what the next scan sees; the stored blob
 * reads back equal to what was committed.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device/core/crypto.h"
#include "device/core/record.h"
#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"
#include "protocol/le.h"
#include "protocol/msg.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(c)                                                            \
	do {                                                                \
		if (!(c)) {                                                 \
			fprintf(stderr, "fuzz_record: %s:%d: %s\n", __FILE__, \
				__LINE__, #c);                              \
			abort();                                            \
		}                                                           \
	} while (0)

#define ERASED 0xFFFFFFFFu

/* The link is not used; the record layer needs only storage. */
ka_hal_status_t ka_hal_tx(const uint8_t *data, size_t n)
{
	(void)data;
	(void)n;
	return KA_HAL_OK;
}

int32_t ka_hal_rx(uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
	(void)buf;
	(void)cap;
	(void)timeout_ms;
	return KA_HAL_RX_CLOSED;
}

static uint8_t img[KA_SIM_IMAGE_SIZE];

typedef struct {
	const uint8_t *p;
	size_t n;
} cur_t;

static uint32_t take32(cur_t *c)
{
	uint8_t b[4] = {0xFF, 0xFF, 0xFF, 0xFF};
	size_t k = c->n < 4 ? c->n : 4;

	if (k == 0)
		return kp_get_le32(b);
	memcpy(b, c->p, k);
	c->p += k;
	c->n -= k;
	return kp_get_le32(b);
}

static uint8_t take8(cur_t *c)
{
	uint8_t v = 0;

	if (c->n > 0) {
		v = c->p[0];
		c->p++;
		c->n--;
	}
	return v;
}

static void otp_set(uint32_t word, uint32_t v, bool programmed)
{
	size_t o = KA_SIM_OFF_OTP + 8u * word;

	kp_put_le32(img + o, v);
	kp_put_le32(img + o + 4, programmed ? 0u : ERASED);
}

/* Fill a record of n words (the last one the check word). */
static void slot(uint32_t base, size_t n, uint32_t magic, uint8_t mode,
		 cur_t *c, const uint32_t *forced, size_t nforced)
{
	uint32_t w[16];

	if ((mode & 3u) == 0)
		return;
	for (size_t i = 0; i + 1 < n; i++)
		w[i] = i < nforced ? forced[i] : take32(c);
	w[n - 1] = (mode & 3u) == 1 ? ka_record_check(magic, w, n - 1)
				    : take32(c);
	for (size_t i = 0; i < n; i++) {
		bool prog = (mode & 3u) != 3 || (i & 1u) == 0;

		if (prog)
			otp_set((uint32_t)(base + i), w[i], true);
	}
}

static int write_image(const char *path, const uint8_t *data, size_t size)
{
	static const uint8_t uid[12] = "fuzz-record";
	cur_t c = {data, size};
	uint8_t hdr[11];
	int fd, rc = -1;

	memset(hdr, 0, sizeof(hdr));
	for (size_t i = 0; i < sizeof(hdr); i++)
		hdr[i] = take8(&c);
	memset(img, 0, KA_SIM_OFF_OTP);
	memcpy(img + KA_SIM_OFF_MAGIC, KA_SIM_MAGIC, 8);
	kp_put_le32(img + KA_SIM_OFF_VERSION, KA_SIM_VERSION);
	kp_put_le32(img + KA_SIM_OFF_GEOM, KA_SIM_OTP_WORDS);
	kp_put_le32(img + KA_SIM_OFF_GEOM + 4, KA_SIM_OTP_BLOCK_WORDS);
	kp_put_le32(img + KA_SIM_OFF_GEOM + 8, KA_SIM_SECTOR_SIZE);
	kp_put_le32(img + KA_SIM_OFF_GEOM + 12, KA_SIM_SECTORS);
	kp_put_le32(img + KA_SIM_OFF_UID_LEN, sizeof(uid));
	memcpy(img + KA_SIM_OFF_UID, uid, sizeof(uid));
	kp_put_le32(img + KA_SIM_OFF_OTP_LOCK, hdr[0]);
	kp_put_le32(img + KA_SIM_OFF_FLASH_WP, hdr[1] & 0x0Fu);
	kp_put_le32(img + KA_SIM_OFF_DEBUG,
		    (hdr[1] & 0x10u) != 0 ? KA_SIM_DEBUG_LOCKED : 0u);
	memset(img + KA_SIM_OFF_OTP, 0xFF, KA_SIM_IMAGE_SIZE - KA_SIM_OFF_OTP);

	if ((hdr[1] & 0x20u) != 0)
		otp_set(KA_REC_HEADER_WORD, KA_REC_HEADER_V1, true);
	else if (take8(&c) & 1u)
		otp_set(KA_REC_HEADER_WORD, take32(&c), true);
	switch (hdr[1] >> 6) {
	case 0:
		break;
	case 1:
		otp_set(KA_REC_LOCK_WORD, KA_REC_LOCK_MAGIC, true);
		break;
	default:
		otp_set(KA_REC_LOCK_WORD, take32(&c), true);
		break;
	}
	for (uint32_t i = 0; i < KA_REC_KEY_SLOTS; i++)
		slot(KA_REC_KEY_BASE + i * KA_REC_KEY_WORDS, KA_REC_KEY_WORDS,
		     KA_REC_KEY_MAGIC, hdr[2 + i], &c, NULL, 0);
	{
		/* flash first: a commit slot may vouch for its blob */
		uint8_t *fl = img + KA_SIM_OFF_FLASH;
		uint32_t info[KA_REC_COMMIT_SLOTS];
		uint8_t flags[KA_REC_COMMIT_SLOTS];

		for (uint32_t i = 0; i < KA_REC_COMMIT_SLOTS; i++) {
			flags[i] = hdr[6 + i];
			info[i] = take32(&c);
		}
		{
			size_t k = c.n < 2u * KA_SIM_SECTOR_SIZE
					   ? c.n
					   : 2u * KA_SIM_SECTOR_SIZE;

			/* the blob tail first so short inputs still fill
			 * sector 0 from its start */
			memcpy(fl, c.p, k);
		}
		for (uint32_t i = 0; i < KA_REC_COMMIT_SLOTS; i++) {
			uint32_t w[9];
			uint32_t sector = (info[i] >> 16) & 0xFFu;
			uint32_t len = info[i] & 0xFFFFu;
			cur_t none = {NULL, 0};

			memset(w, 0xFF, sizeof(w));
			if ((flags[i] & 4u) != 0 && sector < KA_REC_ID_SECTORS &&
			    len <= KA_SIM_SECTOR_SIZE) {
				uint8_t d[32];

				CHECK(ka_crypto_sha256(
					      fl + sector * KA_SIM_SECTOR_SIZE,
					      len, d) == KP_ST_OK);
				for (int j = 0; j < 8; j++)
					w[j] = kp_get_le32(d + 4 * j);
			} else {
				uint8_t d[32];

				memset(d, (int)(i * 17u), sizeof(d));
				for (int j = 0; j < 8; j++)
					w[j] = kp_get_le32(d + 4 * j);
			}
			w[8] = info[i];
			slot(KA_REC_COMMIT_BASE + i * KA_REC_COMMIT_WORDS,
			     KA_REC_COMMIT_WORDS, KA_REC_COMMIT_MAGIC, flags[i],
			     &none, w, 9);
		}
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	if (write(fd, img, sizeof(img)) == (ssize_t)sizeof(img))
		rc = hdr[10];
	close(fd);
	return rc;
}

/* What the scan must say, recomputed from the OTP words. */
static void check_scan(const ka_store_t *st)
{
	int newest_key = -1, newest_commit = -1;
	static uint8_t blob[KA_SIM_SECTOR_SIZE];
	uint8_t d[32];

	for (uint32_t i = 0; i < KA_REC_KEY_SLOTS; i++) {
		uint32_t w[KA_REC_KEY_WORDS];

		CHECK(ka_hal_otp_read(KA_REC_KEY_BASE + i * KA_REC_KEY_WORDS,
				      w, KA_REC_KEY_WORDS) == KA_HAL_OK);
		if (ka_record_classify(KA_REC_KEY_MAGIC, w,
				       KA_REC_KEY_WORDS) == KA_SLOT_USED)
			newest_key = (int)i;
	}
	for (uint32_t i = 0; i < KA_REC_COMMIT_SLOTS; i++) {
		uint32_t w[KA_REC_COMMIT_WORDS];

		CHECK(ka_hal_otp_read(KA_REC_COMMIT_BASE +
					      i * KA_REC_COMMIT_WORDS,
				      w, KA_REC_COMMIT_WORDS) == KA_HAL_OK);
		if (ka_record_classify(KA_REC_COMMIT_MAGIC, w,
				       KA_REC_COMMIT_WORDS) == KA_SLOT_USED)
			newest_commit = (int)i;
	}
	CHECK(st->key_slot == newest_key);
	CHECK(st->commit_slot == newest_commit);
	CHECK(st->key_next == -1 || st->key_next > st->key_slot);
	CHECK(!st->committed ||
	      (st->commit_slot >= 0 && st->commit_key == st->key_slot));
	if (st->committed && st->integrity == KP_ST_OK) {
		kp_blob_t b;

		CHECK(st->blob_len <= sizeof(blob));
		CHECK(ka_record_blob_read(st, 0, blob, st->blob_len) ==
		      KP_ST_OK);
		CHECK(ka_crypto_sha256(blob, st->blob_len, d) == KP_ST_OK);
		CHECK(memcmp(d, st->digest, 32) == 0);
		if (kp_blob_decode(&b, blob, st->blob_len) == KP_OK)
			CHECK(b.pubkey_len == 65 && b.cert_len >= 64);
		/* reading past the end is refused */
		CHECK(ka_record_blob_read(st, st->blob_len, blob, 1) !=
		      KP_ST_OK);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	static uint8_t buf[KA_SIM_SECTOR_SIZE + 64];
	static const uint8_t key[32] = {
		0x51, 0x9b, 0x42, 0x3d, 0x71, 0x5f, 0x8b, 0x58, 0x1f, 0x4f, 0xa8,
		0xee, 0x59, 0xf4, 0x77, 0x1a, 0x5b, 0x44, 0xc8, 0x13, 0x0b, 0x4e,
		0x3e, 0xac, 0xca, 0x54, 0xa5, 0x6d, 0xda, 0x72, 0xb4, 0x64};
	ka_sim_config_t cfg;
	ka_store_t st;
	uint8_t digest[32], slot_no = 0;
	size_t blen = 0;
	int level;
	kp_status_t r;

	if (size > 3u * KA_SIM_SECTOR_SIZE)
		return 0;
	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/dev/shm/kiln-fuzz-record-%ld.img",
			 (long)getpid());
	level = write_image(path, data, size);
	if (level < 0)
		abort();
	memset(&cfg, 0, sizeof(cfg));
	cfg.path = path;
	cfg.rng_none = true;
	cfg.quiet = true;
	CHECK(ka_sim_open(&cfg) == 0);
	memset(&st, 0, sizeof(st));
	if (ka_record_scan(&st) != KP_ST_OK)
		goto out;
	check_scan(&st);

	/* a key store, as GENKEY does */
	r = ka_record_key_store(&st, key, &slot_no);
	if (r == KP_ST_OK) {
		uint8_t d[32];

		CHECK(st.key_slot == (int8_t)slot_no);
		CHECK(ka_record_key_load(&st, slot_no, d) == KP_ST_OK);
		CHECK(memcmp(d, key, 32) == 0);
	}
	if (ka_record_scan(&st) != KP_ST_OK)
		goto out;
	check_scan(&st);

	/* a commit of a small blob, as COMMIT does */
	if (st.key_slot >= 0) {
		kp_blob_t b;
		uint8_t pub[65], cert[100];

		memset(&b, 0, sizeof(b));
		memset(pub, 4, sizeof(pub));
		memset(cert, 0x30, sizeof(cert));
		b.pubkey = pub;
		b.pubkey_len = 65;
		b.serial = "FUZZ-0001";
		b.serial_len = 9;
		b.cert = cert;
		b.cert_len = sizeof(cert);
		CHECK(kp_blob_encode(&b, buf, sizeof(buf), &blen) == KP_OK);
		CHECK(ka_crypto_sha256(buf, blen, digest) == KP_ST_OK);
		r = ka_record_commit(&st, buf, blen, sizeof(buf), digest);
		if (r == KP_ST_OK) {
			static uint8_t back[KA_SIM_SECTOR_SIZE];

			CHECK(st.committed && st.integrity == KP_ST_OK);
			CHECK(memcmp(st.digest, digest, 32) == 0);
			CHECK(st.blob_len == blen);
			CHECK(ka_record_blob_read(&st, 0, back, blen) ==
			      KP_ST_OK);
			CHECK(memcmp(back, buf, blen) == 0);
		}
		if (ka_record_scan(&st) != KP_ST_OK)
			goto out;
		check_scan(&st);
	}

	/* a lock; once it reports success the hardware says locked */
	if (st.committed && st.integrity == KP_ST_OK) {
		uint8_t lv = (uint8_t)((level & 1) + 1);

		r = ka_record_lock(&st, lv);
		if (r == KP_ST_OK) {
			CHECK((st.lock & (KP_LOCK_OTP | KP_LOCK_FLASH)) ==
			      (KP_LOCK_OTP | KP_LOCK_FLASH));
			CHECK(lv == 1 || (st.lock & KP_LOCK_DEBUG) != 0);
			CHECK(st.lock_begun);
		}
		if (ka_record_scan(&st) == KP_ST_OK)
			check_scan(&st);
	}
out:
	ka_sim_close();
	(void)unlink(path);
	return 0;
}
