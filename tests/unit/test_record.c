/*
 * Unit tests: the identity record layer (device/core/record.c) on the
 * POSIX emulation: slot classification, check words, newest-slot
 * selection, commits bound to a key slot, A/B blob sectors, integrity
 * check, exhaustion, lock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "device/core/record.h"
#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"
#include "protocol/crc32c.h"
#include "protocol/le.h"
#include "protocol/msg.h"
#include "tests/unit/sim_fixture.h"

#include "mbedtls/sha256.h"

static int setup(void **state)
{
	(void)state;
	return usf_setup("rec");
}

static int teardown(void **state)
{
	(void)state;
	return usf_teardown();
}

static void scalar(uint8_t d[32], uint8_t seed)
{
	for (int i = 0; i < 32; i++)
		d[i] = (uint8_t)(seed + 7 * i);
	d[0] = 0x10; /* well below the group order */
}

static void test_check_word(void **state)
{
	uint32_t w[9];
	uint8_t b[32];

	(void)state;
	for (int i = 0; i < 8; i++)
		w[i] = 0x01020304u * (uint32_t)(i + 1);
	/* definition: CRC-32C over the LE bytes, XOR the type constant */
	for (int i = 0; i < 8; i++)
		kp_put_le32(b + 4 * i, w[i]);
	w[8] = ka_record_check(KA_REC_KEY_MAGIC, w, 8);
	assert_int_equal(w[8], kp_crc32c(0, b, 32) ^ KA_REC_KEY_MAGIC);
	assert_int_equal(ka_record_classify(KA_REC_KEY_MAGIC, w, 9),
			 KA_SLOT_USED);
	/* the type constant matters: a key slot is no commit slot */
	assert_int_equal(ka_record_classify(KA_REC_COMMIT_MAGIC, w, 9),
			 KA_SLOT_BURNT);
	/* a bit cleared anywhere burns it */
	w[3] &= ~0x10u;
	assert_int_equal(ka_record_classify(KA_REC_KEY_MAGIC, w, 9),
			 KA_SLOT_BURNT);
	/* check word missing: burnt; everything erased: free */
	w[3] |= 0x10u;
	w[8] = 0xFFFFFFFFu;
	assert_int_equal(ka_record_classify(KA_REC_KEY_MAGIC, w, 9),
			 KA_SLOT_BURNT);
	memset(w, 0xFF, sizeof(w));
	assert_int_equal(ka_record_classify(KA_REC_KEY_MAGIC, w, 9),
			 KA_SLOT_FREE);
	w[8] = 0;
	assert_int_equal(ka_record_classify(KA_REC_KEY_MAGIC, w, 9),
			 KA_SLOT_BURNT);
}

static void test_blank_scan(void **state)
{
	ka_store_t st;

	(void)state;
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_true(st.header_ok);
	assert_int_equal(st.key_slot, -1);
	assert_int_equal(st.key_next, 0);
	assert_int_equal(st.key_free, 4);
	assert_int_equal(st.commit_slot, -1);
	assert_int_equal(st.commit_next, 0);
	assert_false(st.committed);
	assert_int_equal(st.integrity, KP_ST_OK);
	assert_int_equal(st.lock, 0);
	assert_false(st.lock_begun);
	assert_int_equal(ka_sim_writes(), 0); /* a scan never writes */
}

static void test_key_store_and_burnt_slot(void **state)
{
	ka_store_t st;
	uint8_t d[32], d2[32], back[32], slot = 99;
	uint32_t h;

	(void)state;
	scalar(d, 1);
	scalar(d2, 2);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_OK);
	assert_int_equal(slot, 0);
	assert_int_equal(st.key_slot, 0);
	assert_int_equal(st.key_free, 3);
	assert_int_equal(ka_hal_otp_read(KA_REC_HEADER_WORD, &h, 1),
			 KA_HAL_OK);
	assert_int_equal(h, KA_REC_HEADER_V1);
	assert_int_equal(ka_record_key_load(&st, 0, back), KP_ST_OK);
	assert_memory_equal(back, d, 32);
	/* the raw layout: word i = LE32(d[4i..]) */
	assert_int_equal(ka_hal_otp_read(KA_REC_KEY_BASE, &h, 1), KA_HAL_OK);
	assert_int_equal(h, kp_get_le32(d));

	/* a power cut inside slot 1: one data word, no check word */
	assert_int_equal(ka_hal_otp_program(KA_REC_KEY_BASE +
						    KA_REC_KEY_WORDS + 2,
					    0x12345678u),
			 KA_HAL_OK);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_int_equal(st.key_state[1], KA_SLOT_BURNT);
	assert_int_equal(st.key_slot, 0); /* still the old key */
	assert_int_equal(st.key_next, 2); /* the burnt slot is skipped */
	assert_int_equal(st.key_free, 2);
	assert_int_equal(ka_record_key_load(&st, 1, back), KP_ST_NO_KEY);

	/* newest valid slot wins */
	assert_int_equal(ka_record_key_store(&st, d2, &slot), KP_ST_OK);
	assert_int_equal(slot, 2);
	assert_int_equal(st.key_slot, 2);
	assert_int_equal(ka_record_key_load(&st, 2, back), KP_ST_OK);
	assert_memory_equal(back, d2, 32);
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_OK);
	assert_int_equal(slot, 3);
	assert_int_equal(st.key_free, 0);
	assert_int_equal(st.key_next, -1);
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_EXHAUSTED);
	/* survives a reboot */
	ka_sim_close();
	usf_open(0);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_int_equal(st.key_slot, 3);
	assert_int_equal(st.key_state[0], KA_SLOT_USED);
	assert_int_equal(st.key_state[1], KA_SLOT_BURNT);
}

static void make_blob(uint8_t *buf, size_t len, uint8_t fill, uint8_t dg[32])
{
	memcpy(buf, KP_BLOB_MAGIC, 4);
	buf[4] = KP_BLOB_VERSION;
	for (size_t i = 5; i < len; i++)
		buf[i] = (uint8_t)(fill + i);
	assert_int_equal(mbedtls_sha256(buf, len, dg, 0), 0);
}

static void test_commit_bound_to_key(void **state)
{
	ka_store_t st;
	uint8_t d[32], slot, buf[1200], dg[32], dg2[32], back[1200];
	uint8_t first_sector;

	(void)state;
	scalar(d, 3);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	make_blob(buf, 1001, 1, dg);
	/* no key: nothing to bind to */
	assert_int_equal(ka_record_commit(&st, buf, 1001, sizeof(buf), dg),
			 KP_ST_NO_KEY);
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_OK);
	assert_int_equal(ka_record_commit(&st, buf, 1001, sizeof(buf), dg),
			 KP_ST_OK);
	assert_true(st.committed);
	assert_int_equal(st.commit_slot, 0);
	assert_int_equal(st.commit_key, 0);
	assert_int_equal(st.blob_len, 1001);
	assert_memory_equal(st.digest, dg, 32);
	assert_int_equal(st.integrity, KP_ST_OK);
	first_sector = st.commit_sector;
	memset(back, 0, sizeof(back));
	assert_int_equal(ka_record_blob_read(&st, 0, back, 1001), KP_ST_OK);
	assert_memory_equal(back, buf, 1001);
	assert_int_equal(ka_record_blob_read(&st, 1000, back, 2),
			 KP_ST_BAD_OBJECT);

	/* a second commit goes to the other sector (the first stays intact
	 * until the new commit slot is valid) */
	make_blob(buf, 700, 9, dg2);
	assert_int_equal(ka_record_commit(&st, buf, 700, sizeof(buf), dg2),
			 KP_ST_OK);
	assert_int_equal(st.commit_slot, 1);
	assert_int_not_equal(st.commit_sector, first_sector);
	assert_memory_equal(st.digest, dg2, 32);

	/* a new key makes the commit stale: bound to the old key slot */
	scalar(d, 4);
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_OK);
	assert_int_equal(slot, 1);
	assert_false(st.committed);
	assert_int_equal(st.commit_slot, 1);
	assert_int_equal(st.commit_key, 0);

	/* commit for the new key, then exhaust the commit slots */
	assert_int_equal(ka_record_commit(&st, buf, 700, sizeof(buf), dg2),
			 KP_ST_OK);
	assert_true(st.committed);
	assert_int_equal(st.commit_key, 1);
	assert_int_equal(ka_record_commit(&st, buf, 700, sizeof(buf), dg2),
			 KP_ST_OK);
	assert_int_equal(st.commit_next, -1);
	assert_int_equal(ka_record_commit(&st, buf, 700, sizeof(buf), dg2),
			 KP_ST_EXHAUSTED);
}

static void test_burnt_commit_keeps_previous(void **state)
{
	ka_store_t st;
	uint8_t d[32], slot, buf[600], dg[32];

	(void)state;
	scalar(d, 5);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_OK);
	make_blob(buf, 500, 3, dg);
	assert_int_equal(ka_record_commit(&st, buf, 500, sizeof(buf), dg),
			 KP_ST_OK);
	/* commit slot 1 half written: digest words, no check word */
	for (uint32_t i = 0; i < 9; i++)
		assert_int_equal(
			ka_hal_otp_program(KA_REC_COMMIT_BASE +
						   KA_REC_COMMIT_WORDS + i,
					   0x0F0F0F0Fu),
			KA_HAL_OK);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_int_equal(st.commit_state[1], KA_SLOT_BURNT);
	assert_int_equal(st.commit_slot, 0);
	assert_true(st.committed);
	assert_memory_equal(st.digest, dg, 32);
	assert_int_equal(st.commit_next, 2);
}

static void test_integrity_mismatch(void **state)
{
	ka_store_t st;
	uint8_t d[32], slot, buf[600], dg[32], word[4];
	ka_hal_flash_geom_t g;

	(void)state;
	scalar(d, 6);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_OK);
	make_blob(buf, 400, 5, dg);
	assert_int_equal(ka_record_commit(&st, buf, 400, sizeof(buf), dg),
			 KP_ST_OK);
	assert_int_equal(st.integrity, KP_ST_OK);
	/* tamper: clear one bit of the stored blob */
	assert_int_equal(ka_hal_flash_geometry(&g), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_read(st.commit_sector * g.sector_size +
						   100,
					   word, 4),
			 KA_HAL_OK);
	assert_int_not_equal(word[1], 0);
	word[1] = 0; /* clears bits only: the others are programmed as is */
	assert_int_equal(ka_hal_flash_program(st.commit_sector *
							  g.sector_size +
						  100,
					      word, 4),
			 KA_HAL_OK);
	ka_sim_close();
	usf_open(0);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_true(st.committed);
	assert_int_equal(st.integrity, KP_ST_INTEGRITY);
}

static void test_lock(void **state)
{
	ka_store_t st;
	uint8_t d[32], slot, buf[600], dg[32], z[4] = {0};
	uint32_t w;

	(void)state;
	scalar(d, 7);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_OK);
	make_blob(buf, 300, 2, dg);
	assert_int_equal(ka_record_commit(&st, buf, 300, sizeof(buf), dg),
			 KP_ST_OK);
	assert_int_equal(ka_record_lock(&st, 1), KP_ST_OK);
	assert_true(st.lock_begun);
	assert_int_equal(st.lock, KP_LOCK_OTP | KP_LOCK_FLASH);
	assert_int_equal(ka_hal_otp_read(KA_REC_LOCK_WORD, &w, 1), KA_HAL_OK);
	assert_int_equal(w, KA_REC_LOCK_MAGIC);
	/* the hardware now refuses identity writes */
	assert_int_equal(ka_hal_otp_program(KA_REC_KEY_BASE + 20, 0),
			 KA_HAL_ERR_LOCKED);
	assert_int_equal(ka_hal_flash_program(0, z, 4), KA_HAL_ERR_LOCKED);
	assert_int_equal(ka_hal_flash_erase(1), KA_HAL_ERR_LOCKED);
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_STORAGE);
	/* the secure-boot key-hash slot (blocks 10, 11) is locked too; the
	 * anti-rollback counters (blocks 12..15) stay writable */
	assert_int_equal(ka_hal_otp_program(KA_REC_SECBOOT_BASE, 0x1234u),
			 KA_HAL_ERR_LOCKED);
	assert_int_equal(ka_hal_otp_program(KA_REC_ROLLBACK_BASE, 0x1234u),
			 KA_HAL_OK);
	/* level 2 adds debug; repeating costs no write */
	assert_int_equal(ka_record_lock(&st, 2), KP_ST_OK);
	assert_int_equal(st.lock, KP_LOCK_OTP | KP_LOCK_FLASH | KP_LOCK_DEBUG);
	{
		uint32_t before = ka_sim_writes();

		assert_int_equal(ka_record_lock(&st, 2), KP_ST_OK);
		assert_int_equal(ka_sim_writes(), before);
	}
	/* the identity is still intact and verifiable */
	assert_true(st.committed);
	assert_int_equal(st.integrity, KP_ST_OK);
}

static void test_foreign_header(void **state)
{
	ka_store_t st;
	uint8_t d[32], slot;

	(void)state;
	scalar(d, 8);
	assert_int_equal(ka_hal_otp_program(KA_REC_HEADER_WORD, 0x12345678u),
			 KA_HAL_OK);
	assert_int_equal(ka_record_scan(&st), KP_ST_OK);
	assert_false(st.header_ok);
	assert_int_equal(st.integrity, KP_ST_INTEGRITY);
	/* never write into a layout we do not know */
	assert_int_equal(ka_record_key_store(&st, d, &slot), KP_ST_STORAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_word),
		cmocka_unit_test_setup_teardown(test_blank_scan, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_key_store_and_burnt_slot,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_bound_to_key, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_burnt_commit_keeps_previous, setup, teardown),
		cmocka_unit_test_setup_teardown(test_integrity_mismatch, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_header, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
