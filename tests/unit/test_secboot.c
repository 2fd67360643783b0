/*
 * Unit tests: the secure-boot OTP areas (device/core/secboot.c) on the
 * POSIX emulation: key-hash slot (free, write, same again, a different
 * hash refused, tampered and interrupted slots, power cut at each write),
 * anti-rollback counter (thermometer value, never backwards, one word per
 * advance, exhaustion, power cut at each write).
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
#include "device/core/secboot.h"
#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"
#include "protocol/crc32c.h"
#include "protocol/le.h"
#include "tests/unit/sim_fixture.h"

static int setup(void **state)
{
	(void)state;
	return usf_setup("sb");
}

static int teardown(void **state)
{
	(void)state;
	return usf_teardown();
}

static void make_hash(uint8_t h[32], uint8_t seed)
{
	for (int i = 0; i < 32; i++)
		h[i] = (uint8_t)(seed * 31 + 5 * i + 1);
}

static void test_keyhash_blank_and_write(void **state)
{
	uint8_t h[32], h2[32], back[32];
	uint32_t w[KA_REC_SECBOOT_WORDS];
	bool present = true;

	(void)state;
	make_hash(h, 1);
	make_hash(h2, 2);
	assert_int_equal(ka_sb_keyhash_read(back, &present), KP_ST_OK);
	assert_false(present);
	assert_int_equal(ka_sim_writes(), 0);

	assert_int_equal(ka_sb_keyhash_write(h), KP_ST_OK);
	assert_int_equal(ka_sim_writes(), 9);
	assert_int_equal(ka_sb_keyhash_read(back, &present), KP_ST_OK);
	assert_true(present);
	assert_memory_equal(back, h, 32);

	/* the raw layout: word i = LE32(h[4i..]), check word last */
	assert_int_equal(ka_hal_otp_read(KA_REC_SECBOOT_BASE, w, 9),
			 KA_HAL_OK);
	assert_int_equal(w[0], kp_get_le32(h));
	assert_int_equal(w[7], kp_get_le32(h + 28));
	assert_int_equal(w[8], kp_crc32c(0, h, 32) ^ KA_REC_SECBOOT_MAGIC);

	/* same hash again: no write; another one: refused */
	assert_int_equal(ka_sb_keyhash_write(h), KP_ST_OK);
	assert_int_equal(ka_sim_writes(), 9);
	assert_int_equal(ka_sb_keyhash_write(h2), KP_ST_BAD_STATE);
	assert_int_equal(ka_sim_writes(), 9);

	/* survives a reboot */
	usf_reboot();
	assert_int_equal(ka_sb_keyhash_read(back, &present), KP_ST_OK);
	assert_true(present);
	assert_memory_equal(back, h, 32);
	/* the identity records do not see it */
	{
		ka_store_t st;

		assert_int_equal(ka_record_scan(&st), KP_ST_OK);
		assert_int_equal(st.key_slot, -1);
		assert_int_equal(st.integrity, KP_ST_OK);
	}
}

static void test_keyhash_tampered(void **state)
{
	uint8_t h[32], back[32];
	uint32_t w;
	bool present;

	(void)state;
	make_hash(h, 3);
	assert_int_equal(ka_sb_keyhash_write(h), KP_ST_OK);
	/* find a data word with a 1 bit to clear */
	assert_int_equal(ka_hal_otp_read(KA_REC_SECBOOT_BASE + 2, &w, 1),
			 KA_HAL_OK);
	assert_true(w != 0);
	/* the emulation programs a word once: rebuild the slot by hand in
	 * a fresh image with one bit cleared in word 2 */
	usf_fresh();
	for (uint32_t i = 0; i < 9; i++) {
		uint32_t v;
		uint32_t words[8];

		for (int k = 0; k < 8; k++)
			words[k] = kp_get_le32(h + 4 * k);
		v = i < 8 ? words[i]
			  : ka_record_check(KA_REC_SECBOOT_MAGIC, words, 8);
		if (i == 2)
			v &= v - 1u; /* lowest set bit cleared */
		if (v != 0xFFFFFFFFu)
			assert_int_equal(
				ka_hal_otp_program(KA_REC_SECBOOT_BASE + i, v),
				KA_HAL_OK);
	}
	assert_int_equal(ka_sb_keyhash_read(back, &present),
			 KP_ST_INTEGRITY);
	assert_false(present);
	/* a tampered slot is never rewritten, with any hash */
	assert_int_equal(ka_sb_keyhash_write(h), KP_ST_INTEGRITY);
}

static void test_keyhash_conflicting_partial(void **state)
{
	uint8_t h[32], back[32];
	bool present;

	(void)state;
	make_hash(h, 4);
	/* a partial write of some other hash: one data word, no check */
	assert_int_equal(ka_hal_otp_program(KA_REC_SECBOOT_BASE + 1,
					    0x01020304u),
			 KA_HAL_OK);
	assert_int_equal(ka_sb_keyhash_read(back, &present),
			 KP_ST_INTEGRITY);
	assert_int_equal(ka_sb_keyhash_write(h), KP_ST_INTEGRITY);
}

/* A power cut after each write of the key-hash slot: the slot reads
 * free or INTEGRITY (interrupted), never a wrong hash; writing the same
 * hash again completes it. */
static void test_keyhash_power_cut(void **state)
{
	uint8_t h[32], back[32];
	bool present;
	uint32_t total;

	(void)state;
	make_hash(h, 5);
	assert_int_equal(ka_sb_keyhash_write(h), KP_ST_OK);
	total = ka_sim_writes();
	assert_int_equal(total, 9);
	for (uint32_t n = 1; n <= total; n++) {
		kp_status_t r;

		ka_sim_close();
		unlink(usf_img_path);
		usf_open(n);
		r = ka_sb_keyhash_write(h);
		if (n < total)
			assert_int_equal(r, KP_ST_STORAGE);
		else
			assert_int_equal(r, KP_ST_OK);
		usf_reboot();
		r = ka_sb_keyhash_read(back, &present);
		if (n < total) {
			assert_int_equal(r, KP_ST_INTEGRITY);
			assert_false(present);
		} else {
			assert_int_equal(r, KP_ST_OK);
			assert_true(present);
		}
		/* the station retries: the slot is completed */
		assert_int_equal(ka_sb_keyhash_write(h), KP_ST_OK);
		assert_int_equal(ka_sim_writes(), total - n);
		assert_int_equal(ka_sb_keyhash_read(back, &present), KP_ST_OK);
		assert_true(present);
		assert_memory_equal(back, h, 32);
	}
}

static uint32_t counter(void)
{
	uint32_t v = 0xDEADu;

	assert_int_equal(ka_sb_counter_read(&v), KP_ST_OK);
	return v;
}

static void test_counter_advance(void **state)
{
	uint32_t w;

	(void)state;
	assert_int_equal(counter(), 0);
	/* to 0: nothing to do */
	assert_int_equal(ka_sb_counter_advance(0), KP_ST_OK);
	assert_int_equal(ka_sim_writes(), 0);
	assert_int_equal(ka_sb_counter_advance(3), KP_ST_OK);
	assert_int_equal(counter(), 3);
	assert_int_equal(ka_sim_writes(), 1);
	/* thermometer: the low 3 bits of the first word */
	assert_int_equal(ka_hal_otp_read(KA_REC_ROLLBACK_BASE, &w, 1),
			 KA_HAL_OK);
	assert_int_equal(w, 0xFFFFFFF8u);
	/* never backwards, no write */
	assert_int_equal(ka_sb_counter_advance(2), KP_ST_OK);
	assert_int_equal(ka_sb_counter_advance(3), KP_ST_OK);
	assert_int_equal(ka_sim_writes(), 1);
	assert_int_equal(counter(), 3);
	/* 3 -> 40: the next words (37 bits: one whole word + 5 bits) */
	assert_int_equal(ka_sb_counter_advance(40), KP_ST_OK);
	assert_int_equal(counter(), 40);
	assert_int_equal(ka_sim_writes(), 3);
	assert_int_equal(ka_hal_otp_read(KA_REC_ROLLBACK_BASE + 1, &w, 1),
			 KA_HAL_OK);
	assert_int_equal(w, 0u);
	assert_int_equal(ka_hal_otp_read(KA_REC_ROLLBACK_BASE + 2, &w, 1),
			 KA_HAL_OK);
	assert_int_equal(w, 0xFFFFFFE0u);
	assert_int_equal(ka_sb_counter_advance(41), KP_ST_OK);
	assert_int_equal(counter(), 41);
	usf_reboot();
	assert_int_equal(counter(), 41);
	/* out of range */
	assert_int_equal(ka_sb_counter_advance(KA_SB_COUNTER_MAX + 1),
			 KP_ST_BAD_OBJECT);
	assert_int_equal(counter(), 41);
}

static void test_counter_limits(void **state)
{
	(void)state;
	/* the full range in one go */
	assert_int_equal(ka_sb_counter_advance(KA_SB_COUNTER_MAX), KP_ST_OK);
	assert_int_equal(counter(), KA_SB_COUNTER_MAX);
	assert_int_equal(ka_sim_writes(), 32);
	assert_int_equal(ka_sb_counter_advance(KA_SB_COUNTER_MAX), KP_ST_OK);

	/* 32 advances by one use up the 32 words */
	usf_fresh();
	for (uint32_t i = 1; i <= KA_REC_ROLLBACK_WORDS; i++) {
		assert_int_equal(ka_sb_counter_advance(i), KP_ST_OK);
		assert_int_equal(counter(), i);
	}
	assert_int_equal(ka_sb_counter_advance(KA_REC_ROLLBACK_WORDS + 1),
			 KP_ST_EXHAUSTED);
	assert_int_equal(counter(), KA_REC_ROLLBACK_WORDS);

	/* a jump needing more room than the erased words hold */
	usf_fresh();
	assert_int_equal(ka_sb_counter_advance(1), KP_ST_OK);
	assert_int_equal(ka_sb_counter_advance(1 + 31 * 32 + 1),
			 KP_ST_EXHAUSTED);
	assert_int_equal(counter(), 1);
	assert_int_equal(ka_sb_counter_advance(1 + 31 * 32), KP_ST_OK);
	assert_int_equal(counter(), 1 + 31 * 32);
}

/* A word spent without clearing bits (an interrupted program on a part
 * that marks words programmed) is skipped. */
static void test_counter_spent_word(void **state)
{
	(void)state;
	assert_int_equal(ka_sb_counter_advance(2), KP_ST_OK);
	assert_int_equal(ka_hal_otp_program(KA_REC_ROLLBACK_BASE + 1,
					    0xFFFFFFFFu),
			 KA_HAL_OK);
	assert_int_equal(counter(), 2);
	assert_int_equal(ka_sb_counter_advance(5), KP_ST_OK);
	assert_int_equal(counter(), 5);
}

/* A power cut after each write of an advance: the counter reads between
 * the old and the new value, never lower than the old one, and a retry
 * reaches the new value. */
static void test_counter_power_cut(void **state)
{
	const uint32_t old = 7, to = 7 + 3 * 32 + 9;
	uint32_t total, v;

	(void)state;
	assert_int_equal(ka_sb_counter_advance(old), KP_ST_OK);
	assert_int_equal(ka_sb_counter_advance(to), KP_ST_OK);
	total = ka_sim_writes() - 1;
	assert_int_equal(total, 4);
	for (uint32_t n = 1; n <= total; n++) {
		kp_status_t r;

		usf_fresh();
		assert_int_equal(ka_sb_counter_advance(old), KP_ST_OK);
		ka_sim_close();
		usf_open(n);
		r = ka_sb_counter_advance(to);
		assert_int_equal(r, n < total ? KP_ST_STORAGE : KP_ST_OK);
		usf_reboot();
		v = counter();
		assert_true(v >= old);
		assert_true(v <= to);
		assert_true(v > old); /* the nth write landed */
		assert_int_equal(v == to, n == total);
		assert_int_equal(ka_sb_counter_advance(to), KP_ST_OK);
		assert_int_equal(counter(), to);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keyhash_blank_and_write,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyhash_tampered, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_keyhash_conflicting_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyhash_power_cut, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_counter_advance, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_counter_limits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_counter_spent_word, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_counter_power_cut, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
