/*
 * The first-stage boot's decision (device/boot/boot.c) natively, on the
 * POSIX OTP/flash emulation, with images signed by the station library
 * (host/lib/image.c): the two implementations of the format against each
 * other, every truncation of the slot, huge and inconsistent header
 * fields, vector-table checks, and random byte flips (the boot never
 * accepts what the station's verifier refuses).
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

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "device/boot/boot.h"
#include "device/core/secboot.h"
#include "device/ports/posix/sim_image.h"
#include "host/lib/image.h"
#include "protocol/le.h"

#define SLOT_ADDR 0x00020000u
#define HDR 0x200u
#define RAM0 0x20000000u
#define RAM1 0x20400000u

static char dir[64], img_path[128], key_a[128], key_b[128];
static uint8_t hash_a[32];
static uint8_t heap[KB_HEAP_SIZE] __attribute__((aligned(8)));
static uint8_t slot[16384];
static char err[512];

static void open_sim(void)
{
	ka_sim_config_t cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path = img_path;
	cfg.quiet = true;
	assert_int_equal(ka_sim_open(&cfg), 0);
}

static int write_key(EVP_PKEY *pk, const char *path)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (f == NULL)
		return -1;
	ok = PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	return ok == 1 ? 0 : -1;
}

static int group_setup(void **state)
{
	EVP_PKEY *a = EVP_EC_gen("P-256"), *b = EVP_EC_gen("P-256");
	uint8_t pt[65];
	size_t n = 0;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kiln-test-bootn-XXXXXX");
	if (mkdtemp(dir) == NULL || a == NULL || b == NULL)
		return -1;
	snprintf(img_path, sizeof(img_path), "%s/sim.img", dir);
	snprintf(key_a, sizeof(key_a), "%s/a.key", dir);
	snprintf(key_b, sizeof(key_b), "%s/b.key", dir);
	if (write_key(a, key_a) != 0 || write_key(b, key_b) != 0 ||
	    EVP_PKEY_get_octet_string_param(a, "encoded-pub-key", pt,
					    sizeof(pt), &n) != 1)
		return -1;
	ks_image_key_hash(pt, hash_a);
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state)
{
	(void)state;
	unlink(img_path);
	open_sim();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ka_sim_close();
	return 0;
}

/* A body that looks like firmware: SP in RAM, a Thumb reset handler
 * inside the body. */
static void make_body(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 13 + 5);
	kp_put_le32(b, RAM0 + 0x1000u);
	kp_put_le32(b + 4, SLOT_ADDR + HDR + 0x41u);
}

/* Sign into slot[] (rest erased); returns the image length. */
static size_t sign_into_slot(const char *key, uint32_t counter,
			     uint32_t flags)
{
	ks_image_params_t p;
	uint8_t body[2000], *img = NULL;
	size_t len = 0;

	make_body(body, sizeof(body));
	memset(&p, 0, sizeof(p));
	p.hdr_size = HDR;
	p.load_addr = SLOT_ADDR + HDR;
	p.counter = counter;
	p.flags = flags;
	p.ver_major = 2;
	p.ver_minor = 1;
	p.ver_patch = 7;
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, key, NULL, NULL,
				       &img, &len, err, sizeof(err)),
			 KS_OK);
	assert_true(len <= sizeof(slot));
	memset(slot, 0xFF, sizeof(slot));
	memcpy(slot, img, len);
	free(img);
	return len;
}

static kb_reason_t check_at(const uint8_t *s, uint32_t slot_size,
			    kb_image_t *img)
{
	kb_target_t t = {
		.slot = s,
		.slot_addr = SLOT_ADDR,
		.slot_size = slot_size,
		.ram_start = RAM0,
		.ram_end = RAM1,
		.heap = heap,
		.heap_len = sizeof(heap),
	};

	return kb_boot_check(&t, img);
}

static kb_reason_t check(uint32_t slot_size, kb_image_t *img)
{
	return check_at(slot, slot_size, img);
}

static void test_policy(void **state)
{
	kb_image_t img;
	uint32_t ctr;

	(void)state;
	sign_into_slot(key_a, 3, 0);
	assert_int_equal(check(sizeof(slot), &img), KB_NO_KEY_HASH);
	sign_into_slot(key_a, 3, KS_IMAGE_FLAG_FACTORY);
	assert_int_equal(check(sizeof(slot), &img), KB_OK);
	assert_false(img.verified);
	assert_int_equal(ka_sb_counter_read(&ctr), KP_ST_OK);
	assert_int_equal(ctr, 0); /* unverified: the counter stays */

	assert_int_equal(ka_sb_keyhash_write(hash_a), KP_ST_OK);
	assert_int_equal(check(sizeof(slot), &img), KB_OK);
	assert_true(img.verified);
	assert_int_equal(img.counter, 3);
	assert_int_equal(img.otp_counter, 3);
	assert_int_equal(img.ver_major, 2);
	assert_int_equal(img.ver_patch, 7);
	assert_int_equal(img.load_addr, SLOT_ADDR + HDR);
	assert_int_equal(img.reset, SLOT_ADDR + HDR + 0x41u);
	assert_int_equal(img.initial_sp, RAM0 + 0x1000u);
	sign_into_slot(key_b, 3, 0);
	assert_int_equal(check(sizeof(slot), &img), KB_WRONG_KEY);
	sign_into_slot(key_a, 2, 0);
	assert_int_equal(check(sizeof(slot), &img), KB_ROLLBACK);
	assert_int_equal(img.otp_counter, 3);
	sign_into_slot(key_a, 40, 0);
	assert_int_equal(check(sizeof(slot), &img), KB_OK);
	assert_int_equal(ka_sb_counter_read(&ctr), KP_ST_OK);
	assert_int_equal(ctr, 40);
	memset(slot, 0xFF, sizeof(slot));
	assert_int_equal(check(sizeof(slot), &img), KB_NO_IMAGE);
}

static void test_truncations(void **state)
{
	kb_image_t img;
	size_t len;

	(void)state;
	assert_int_equal(ka_sb_keyhash_write(hash_a), KP_ST_OK);
	len = sign_into_slot(key_a, 1, 0);
	assert_int_equal(check((uint32_t)len, &img), KB_OK);
	/* the slot ends inside the image: refused, never read past (each
	 * slot an exact-size allocation, so ASan or valgrind see a read
	 * beyond it) */
	for (size_t n = 0; n < len; n++) {
		uint8_t *c = malloc(n + 1);
		kb_reason_t r;

		assert_non_null(c);
		memcpy(c, slot, n);
		r = check_at(c, (uint32_t)n, &img);
		free(c);
		assert_true(r == KB_BAD_HEADER || r == KB_BAD_TRAILER);
	}
}

static void test_header_fields(void **state)
{
	static const struct {
		size_t off;
		uint32_t val;
		int width;
	} bad[] = {
		{4, 2, 2},                /* header version */
		{6, 0xFFFF, 2},           /* header size */
		{6, 16, 2},
		{6, 0x202, 2},            /* not a multiple of 4 */
		{8, 0x80000000u, 4},      /* unknown flag */
		{12, 0xFFFFFFFFu, 4},     /* body size: huge */
		{12, 0xFFFFFE00u, 4},     /* wraps with the header size */
		{12, 4, 4},               /* no vector table */
		{12, sizeof(slot), 4},    /* past the slot */
		{16, SLOT_ADDR, 4},       /* not where it runs */
		{16, 0xFFFFFFFFu, 4},
		{20, 1025, 4},            /* counter beyond the OTP range */
		{28, 1, 4},               /* reserved */
		{40, 1, 1},               /* padding */
		{HDR + 0, RAM1 + 8, 4},   /* SP above RAM */
		{HDR + 0, RAM0, 4},       /* SP at the bottom: nothing below */
		{HDR + 0, RAM0 + 0x1004u, 4}, /* SP not 8-aligned */
		{HDR + 4, SLOT_ADDR + HDR + 0x40u, 4}, /* ARM, not Thumb */
		{HDR + 4, SLOT_ADDR + 1u, 4},          /* before the body */
		{HDR + 4, SLOT_ADDR + HDR + 2000u + 1u, 4}, /* after it */
		{HDR + 4, 0xFFFFFFFFu, 4},
	};
	uint8_t good[sizeof(slot)];
	kb_image_t img;

	(void)state;
	assert_int_equal(ka_sb_keyhash_write(hash_a), KP_ST_OK);
	sign_into_slot(key_a, 1, 0);
	memcpy(good, slot, sizeof(slot));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		kb_reason_t r;

		memcpy(slot, good, sizeof(slot));
		if (bad[i].width == 4)
			kp_put_le32(slot + bad[i].off, bad[i].val);
		else if (bad[i].width == 2)
			kp_put_le16(slot + bad[i].off, (uint16_t)bad[i].val);
		else
			slot[bad[i].off] = (uint8_t)bad[i].val;
		r = check(sizeof(slot), &img);
		if (r != KB_BAD_HEADER)
			fail_msg("case %zu (offset %zu = 0x%x): %s", i,
				 bad[i].off, bad[i].val, kb_reason_str(r));
	}
	/* trailer: wrong magic, length beyond the slot, a TLV overrun */
	{
		size_t t = HDR + 2000;
		kb_reason_t r;

		memcpy(slot, good, sizeof(slot));
		slot[t] = 0;
		r = check(sizeof(slot), &img);
		assert_int_equal(r, KB_BAD_TRAILER);
		memcpy(slot, good, sizeof(slot));
		kp_put_le16(slot + t + 2, 0xFFFF);
		assert_int_equal(check(sizeof(slot), &img), KB_BAD_TRAILER);
		memcpy(slot, good, sizeof(slot));
		kp_put_le16(slot + t + 4 + 36 + 69 + 2, 0xFFFF);
		assert_int_equal(check(sizeof(slot), &img), KB_BAD_TRAILER);
		memcpy(slot, good, sizeof(slot));
		slot[t + 4 + 36 + 4] = 0x02; /* compressed point */
		assert_int_equal(check(sizeof(slot), &img), KB_BAD_TRAILER);
	}
}

/* Random byte flips: whatever the boot accepts, the station's verifier
 * accepts too, and the unmodified image passes both. */
static void test_flips_agree(void **state)
{
	uint8_t good[sizeof(slot)];
	ks_image_info_t info;
	ks_image_fail_t why;
	kb_image_t img;
	size_t len;
	uint32_t x = 12345;
	int accepted = 0;

	(void)state;
	assert_int_equal(ka_sb_keyhash_write(hash_a), KP_ST_OK);
	len = sign_into_slot(key_a, 0, 0);
	memcpy(good, slot, sizeof(slot));
	assert_int_equal(ks_image_verify(slot, len, hash_a, &info, &why, err,
					 sizeof(err)),
			 KS_OK);
	for (int i = 0; i < 300; i++) {
		size_t off;

		x = x * 1103515245u + 12345u;
		off = (x >> 8) % len;
		memcpy(slot, good, sizeof(slot));
		slot[off] ^= (uint8_t)(1u << ((x >> 4) & 7u));
		if (check((uint32_t)len, &img) == KB_OK) {
			accepted++;
			assert_int_equal(ks_image_verify(slot, len, hash_a,
							 &info, &why, err,
							 sizeof(err)),
					 KS_OK);
		}
	}
	assert_int_equal(accepted, 0); /* every flip is caught */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncations, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_header_fields, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flips_agree, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
