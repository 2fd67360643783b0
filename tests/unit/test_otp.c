/*
 * Unit tests: the POSIX port's emulated part (device/ports/posix/
 * sim_image.c) obeys OTP and flash physics, through the HAL interface.
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

#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"

static char img_path[64];

static void open_image(uint32_t cut_after)
{
	ka_sim_config_t cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path = img_path;
	cfg.cut_after = cut_after;
	cfg.cut_mode = KA_SIM_CUT_FREEZE;
	assert_int_equal(ka_sim_open(&cfg), 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(img_path, sizeof(img_path), "/tmp/kiln-test-otp-%ld.img",
		 (long)getpid());
	unlink(img_path);
	open_image(0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ka_sim_close();
	unlink(img_path);
	return 0;
}

static uint32_t otp(uint32_t w)
{
	uint32_t v = 0;

	assert_int_equal(ka_hal_otp_read(w, &v, 1), KA_HAL_OK);
	return v;
}

static void test_blank(void **state)
{
	ka_hal_otp_geom_t og;
	ka_hal_flash_geom_t fg;
	uint8_t b[16];
	uint32_t w2[2];
	bool l;

	(void)state;
	assert_int_equal(ka_hal_otp_geometry(&og), KA_HAL_OK);
	assert_int_equal(og.words, 128);
	assert_int_equal(og.words_per_block, 8);
	for (uint32_t w = 0; w < og.words; w++)
		assert_int_equal(otp(w), 0xFFFFFFFFu);
	assert_int_equal(ka_hal_otp_read(127, w2, 2), KA_HAL_ERR_ARG);
	assert_int_equal(ka_hal_flash_geometry(&fg), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_read(fg.sector_size * fg.sectors - 16, b,
					   16),
			 KA_HAL_OK);
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(b[i], 0xFF);
	assert_int_equal(ka_hal_otp_block_locked(0, &l), KA_HAL_OK);
	assert_false(l);
	assert_int_equal(ka_hal_debug_locked(&l), KA_HAL_OK);
	assert_false(l);
	assert_int_equal(ka_sim_writes(), 0);
}

static void test_otp_program_once(void **state)
{
	(void)state;
	assert_int_equal(ka_hal_otp_program(5, 0x12345678u), KA_HAL_OK);
	assert_int_equal(otp(5), 0x12345678u);
	/* a second program is refused, even one that only clears bits */
	assert_int_equal(ka_hal_otp_program(5, 0x12345670u),
			 KA_HAL_ERR_PROGRAMMED);
	assert_int_equal(ka_hal_otp_program(5, 0x12345678u),
			 KA_HAL_ERR_PROGRAMMED);
	assert_int_equal(otp(5), 0x12345678u);
	/* neighbours untouched */
	assert_int_equal(otp(4), 0xFFFFFFFFu);
	assert_int_equal(otp(6), 0xFFFFFFFFu);
	assert_int_equal(ka_hal_otp_program(128, 0), KA_HAL_ERR_ARG);
	/* one write counted; refused writes are not */
	assert_int_equal(ka_sim_writes(), 1);
	/* durable: survives a power cycle */
	ka_sim_close();
	open_image(0);
	assert_int_equal(otp(5), 0x12345678u);
	assert_int_equal(ka_hal_otp_program(5, 0), KA_HAL_ERR_PROGRAMMED);
}

static void test_otp_lock_final(void **state)
{
	bool l;

	(void)state;
	assert_int_equal(ka_hal_otp_program(8, 0xA5A5A5A5u), KA_HAL_OK);
	assert_int_equal(ka_hal_otp_lock_block(1), KA_HAL_OK); /* words 8..15 */
	assert_int_equal(ka_hal_otp_block_locked(1, &l), KA_HAL_OK);
	assert_true(l);
	assert_int_equal(ka_hal_otp_program(9, 0), KA_HAL_ERR_LOCKED);
	assert_int_equal(ka_hal_otp_program(15, 0), KA_HAL_ERR_LOCKED);
	assert_int_equal(otp(9), 0xFFFFFFFFu);
	/* other blocks still programmable */
	assert_int_equal(ka_hal_otp_program(16, 1), KA_HAL_OK);
	assert_int_equal(ka_hal_otp_program(7, 1), KA_HAL_OK);
	/* idempotent, and final across power cycles */
	assert_int_equal(ka_hal_otp_lock_block(1), KA_HAL_OK);
	ka_sim_close();
	open_image(0);
	assert_int_equal(ka_hal_otp_block_locked(1, &l), KA_HAL_OK);
	assert_true(l);
	assert_int_equal(ka_hal_otp_program(10, 0), KA_HAL_ERR_LOCKED);
	assert_int_equal(otp(8), 0xA5A5A5A5u);
	assert_int_equal(ka_hal_otp_lock_block(16), KA_HAL_ERR_ARG);
}

static void test_flash_bits_clear_only(void **state)
{
	uint8_t a[8] = {0xF0, 0x0F, 0xAA, 0x55, 0x00, 0xFF, 0x12, 0x34};
	uint8_t b[8], back[8];

	(void)state;
	assert_int_equal(ka_hal_flash_program(0, a, 8), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_read(0, back, 8), KA_HAL_OK);
	assert_memory_equal(a, back, 8);
	/* clearing more bits is allowed (AND) */
	memcpy(b, a, 8);
	b[0] = 0xE0;
	assert_int_equal(ka_hal_flash_program(0, b, 8), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_read(0, back, 1), KA_HAL_OK);
	assert_int_equal(back[0], 0xE0);
	/* setting a 0 bit back to 1 is refused and changes nothing */
	b[1] = 0xFF;
	assert_int_equal(ka_hal_flash_program(0, b, 8), KA_HAL_ERR_BITS);
	assert_int_equal(ka_hal_flash_read(0, back, 8), KA_HAL_OK);
	assert_int_equal(back[1], 0x0F);
	/* granularity */
	assert_int_equal(ka_hal_flash_program(2, a, 4), KA_HAL_ERR_ARG);
	assert_int_equal(ka_hal_flash_program(0, a, 3), KA_HAL_ERR_ARG);
}

static void test_flash_erase_by_sector(void **state)
{
	ka_hal_flash_geom_t g;
	uint8_t z[4] = {0, 0, 0, 0}, back[4];

	(void)state;
	assert_int_equal(ka_hal_flash_geometry(&g), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_program(g.sector_size - 4, z, 4),
			 KA_HAL_OK);
	assert_int_equal(ka_hal_flash_program(g.sector_size, z, 4), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_erase(1), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_read(g.sector_size, back, 4), KA_HAL_OK);
	assert_int_equal(back[0], 0xFF);
	/* sector 0 untouched */
	assert_int_equal(ka_hal_flash_read(g.sector_size - 4, back, 4),
			 KA_HAL_OK);
	assert_memory_equal(back, z, 4);
	/* after an erase the bytes program again */
	assert_int_equal(ka_hal_flash_program(g.sector_size, z, 4), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_erase(g.sectors), KA_HAL_ERR_ARG);
}

static void test_flash_write_protect(void **state)
{
	ka_hal_flash_geom_t g;
	uint8_t z[4] = {0, 0, 0, 0}, back[4];
	bool p;

	(void)state;
	assert_int_equal(ka_hal_flash_geometry(&g), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_program(0, z, 4), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_protect(0), KA_HAL_OK);
	assert_int_equal(ka_hal_flash_protected(0, &p), KA_HAL_OK);
	assert_true(p);
	assert_int_equal(ka_hal_flash_erase(0), KA_HAL_ERR_LOCKED);
	assert_int_equal(ka_hal_flash_program(4, z, 4), KA_HAL_ERR_LOCKED);
	/* a range straddling into a protected sector is refused whole */
	assert_int_equal(ka_hal_flash_protect(2), KA_HAL_OK);
	{
		uint8_t z8[8] = {0};

		assert_int_equal(ka_hal_flash_program(2 * g.sector_size - 4,
						      z8, 8),
				 KA_HAL_ERR_LOCKED);
		assert_int_equal(ka_hal_flash_read(2 * g.sector_size - 4,
						   back, 4),
				 KA_HAL_OK);
		assert_int_equal(back[0], 0xFF);
	}
	ka_sim_close();
	open_image(0);
	assert_int_equal(ka_hal_flash_protected(0, &p), KA_HAL_OK);
	assert_true(p);
	assert_int_equal(ka_hal_flash_protected(1, &p), KA_HAL_OK);
	assert_false(p);
	assert_int_equal(ka_hal_flash_read(0, back, 4), KA_HAL_OK);
	assert_memory_equal(back, z, 4);
	assert_int_equal(ka_hal_flash_erase(0), KA_HAL_ERR_LOCKED);
}

static void test_debug_lock(void **state)
{
	bool l;

	(void)state;
	assert_int_equal(ka_hal_debug_lock(), KA_HAL_OK);
	ka_sim_close();
	open_image(0);
	assert_int_equal(ka_hal_debug_locked(&l), KA_HAL_OK);
	assert_true(l);
}

/* A power cut after write N: the image holds exactly writes 1..N. */
static void test_power_cut_freeze(void **state)
{
	uint8_t z[4] = {0, 0, 0, 0}, back[4];

	(void)state;
	ka_sim_close();
	open_image(2);
	assert_int_equal(ka_hal_otp_program(0, 0x11111111u), KA_HAL_OK);
	assert_false(ka_sim_cut_done());
	assert_int_equal(ka_hal_otp_program(1, 0x22222222u), KA_HAL_OK);
	assert_true(ka_sim_cut_done());
	assert_int_equal(ka_hal_otp_program(2, 0x33333333u), KA_HAL_ERR_IO);
	assert_int_equal(ka_hal_flash_program(0, z, 4), KA_HAL_ERR_IO);
	assert_int_equal(ka_sim_writes(), 2);
	ka_sim_close();
	open_image(0);
	assert_int_equal(otp(0), 0x11111111u);
	assert_int_equal(otp(1), 0x22222222u);
	assert_int_equal(otp(2), 0xFFFFFFFFu);
	assert_int_equal(ka_hal_flash_read(0, back, 4), KA_HAL_OK);
	assert_int_equal(back[0], 0xFF);
}

static void test_uid_persists(void **state)
{
	uint8_t u1[32], u2[32];
	size_t n1 = 0, n2 = 0;
	ka_sim_config_t cfg;
	static const uint8_t forced[4] = {0xDE, 0xAD, 0xBE, 0xEF};

	(void)state;
	assert_int_equal(ka_hal_uid(u1, sizeof(u1), &n1), KA_HAL_OK);
	assert_int_equal(n1, KA_SIM_UID_DEFAULT_LEN);
	ka_sim_close();
	open_image(0);
	assert_int_equal(ka_hal_uid(u2, sizeof(u2), &n2), KA_HAL_OK);
	assert_int_equal(n2, n1);
	assert_memory_equal(u1, u2, n1);
	/* --uid overrides */
	ka_sim_close();
	memset(&cfg, 0, sizeof(cfg));
	cfg.path = img_path;
	cfg.uid = forced;
	cfg.uid_len = sizeof(forced);
	assert_int_equal(ka_sim_open(&cfg), 0);
	assert_int_equal(ka_hal_uid(u2, sizeof(u2), &n2), KA_HAL_OK);
	assert_int_equal(n2, 4);
	assert_memory_equal(u2, forced, 4);
}

static void test_rejects_foreign_image(void **state)
{
	ka_sim_config_t cfg;
	FILE *f;

	(void)state;
	ka_sim_close();
	f = fopen(img_path, "r+b");
	assert_non_null(f);
	fputs("NOTKILN", f);
	fclose(f);
	memset(&cfg, 0, sizeof(cfg));
	cfg.path = img_path;
	assert_int_equal(ka_sim_open(&cfg), -1);
	/* nothing open: every access fails */
	assert_int_equal(ka_hal_otp_program(0, 0), KA_HAL_ERR_IO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_blank, setup, teardown),
		cmocka_unit_test_setup_teardown(test_otp_program_once, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_otp_lock_final, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flash_bits_clear_only,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_flash_erase_by_sector,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_flash_write_protect,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_debug_lock, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_power_cut_freeze, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_uid_persists, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rejects_foreign_image,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
