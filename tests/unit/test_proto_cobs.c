/* Unit tests: CRC-32C and COBS (protocol/crc32c.c, protocol/cobs.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/cobs.h"
#include "protocol/crc32c.h"

static void test_crc32c_check_value(void **state)
{
	(void)state;
	/* The catalogue check value of CRC-32C (iSCSI). */
	assert_int_equal(kp_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(kp_crc32c(0, "", 0), 0x00000000u);
	assert_int_equal(kp_crc32c(0, NULL, 0), 0x00000000u);
}

static void test_crc32c_known_vectors(void **state)
{
	/* RFC 3720 (iSCSI) appendix B.4 test vectors. The RFC prints the
	 * CRC as it is sent (little-endian bytes); these are the values. */
	uint8_t buf[48];

	(void)state;
	memset(buf, 0x00, 32);
	assert_int_equal(kp_crc32c(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xFF, 32);
	assert_int_equal(kp_crc32c(0, buf, 32), 0x62A8AB43u);
	for (unsigned i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(kp_crc32c(0, buf, 32), 0x46DD794Eu);
	for (unsigned i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31u - i);
	assert_int_equal(kp_crc32c(0, buf, 32), 0x113FDB5Cu);
	/* iSCSI SCSI Read (10) command PDU */
	static const uint8_t pdu[48] = {
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
		0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	assert_int_equal(kp_crc32c(0, pdu, sizeof(pdu)), 0xD9963A56u);
}

static void test_crc32c_incremental(void **state)
{
	const char *s = "123456789";

	(void)state;
	for (size_t cut = 0; cut <= 9; cut++) {
		uint32_t c = kp_crc32c(0, s, cut);

		c = kp_crc32c(c, s + cut, 9 - cut);
		assert_int_equal(c, 0xE3069283u);
	}
}

/* Deterministic xorshift, so failures are reproducible. */
static uint32_t rng_state = 0x12345678u;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* Encode, check the encoding's invariants, decode, compare. */
static void roundtrip(const uint8_t *in, size_t n)
{
	uint8_t *enc = malloc(KP_COBS_MAX(n) + 1);
	size_t elen = 0, dlen = 0;

	assert_non_null(enc);
	assert_int_equal(kp_cobs_encode(in, n, enc, KP_COBS_MAX(n), &elen),
			 KP_OK);
	assert_true(elen >= n + 1);
	assert_true(elen <= KP_COBS_MAX(n));
	assert_null(memchr(enc, 0, elen));
	assert_int_equal(kp_cobs_decode_inplace(enc, elen, &dlen), KP_OK);
	assert_int_equal(dlen, n);
	if (n > 0)
		assert_memory_equal(enc, in, n);
	free(enc);
}

static void test_cobs_roundtrip_lengths(void **state)
{
	uint8_t buf[601] = {0};

	(void)state;
	for (size_t n = 0; n <= 600; n++) {
		/* random bytes with zeros sprinkled in */
		for (size_t i = 0; i < n; i++)
			buf[i] = (rnd() % 7u == 0) ? 0 : (uint8_t)rnd();
		roundtrip(buf, n);
		/* no zero at all: longest runs */
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)(1u + rnd() % 255u);
		roundtrip(buf, n);
		/* all zero */
		memset(buf, 0, n);
		roundtrip(buf, n);
	}
}

static void test_cobs_run_boundaries(void **state)
{
	uint8_t buf[1100];

	(void)state;
	/* runs of exactly 253/254/255 non-zero bytes, alone, followed by a
	 * zero, preceded by a zero, and repeated */
	for (size_t run = 250; run <= 260; run++) {
		memset(buf, 0x41, run);
		roundtrip(buf, run);
		buf[run] = 0;
		roundtrip(buf, run + 1);
		buf[0] = 0;
		roundtrip(buf, run);
		memset(buf, 0x42, 4 * run);
		roundtrip(buf, 4 * run);
		for (size_t k = 0; k < 4; k++)
			buf[k * (run + 1)] = 0;
		roundtrip(buf, 4 * run);
	}
}

static void test_cobs_exact_encodings(void **state)
{
	uint8_t out[600], in[600];
	size_t n;

	(void)state;
	/* examples from Cheshire & Baker / Wikipedia */
	assert_int_equal(kp_cobs_encode(NULL, 0, out, sizeof(out), &n), KP_OK);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], 0x01);

	in[0] = 0;
	assert_int_equal(kp_cobs_encode(in, 1, out, sizeof(out), &n), KP_OK);
	assert_int_equal(n, 2);
	assert_memory_equal(out, "\x01\x01", 2);

	memcpy(in, "\x11\x22\x00\x33", 4);
	assert_int_equal(kp_cobs_encode(in, 4, out, sizeof(out), &n), KP_OK);
	assert_int_equal(n, 5);
	assert_memory_equal(out, "\x03\x11\x22\x02\x33", 5);

	/* 253 non-zero bytes: one block, code 0xFE */
	memset(in, 0x01, 253);
	assert_int_equal(kp_cobs_encode(in, 253, out, sizeof(out), &n), KP_OK);
	assert_int_equal(n, 254);
	assert_int_equal(out[0], 0xFE);

	/* 254 non-zero bytes: a full 0xFF block, then a final 0x01 code */
	memset(in, 0x01, 254);
	assert_int_equal(kp_cobs_encode(in, 254, out, sizeof(out), &n), KP_OK);
	assert_int_equal(n, 256);
	assert_int_equal(out[0], 0xFF);
	assert_int_equal(out[255], 0x01);

	/* 255 non-zero bytes: 0xFF block, then code 0x02 with one byte */
	memset(in, 0x01, 255);
	assert_int_equal(kp_cobs_encode(in, 255, out, sizeof(out), &n), KP_OK);
	assert_int_equal(n, 257);
	assert_int_equal(out[0], 0xFF);
	assert_int_equal(out[255], 0x02);
	assert_int_equal(out[256], 0x01);

	/* 254 non-zero then a zero: 0xFF block, 0x01 (zero), 0x01 (end) */
	memset(in, 0x01, 254);
	in[254] = 0;
	assert_int_equal(kp_cobs_encode(in, 255, out, sizeof(out), &n), KP_OK);
	assert_int_equal(n, 257);
	assert_int_equal(out[0], 0xFF);
	assert_int_equal(out[255], 0x01);
	assert_int_equal(out[256], 0x01);
}

static void test_cobs_encode_nospace(void **state)
{
	uint8_t in[300], out[400];
	size_t n = 0;

	(void)state;
	memset(in, 7, sizeof(in));
	assert_int_equal(kp_cobs_encode(in, 300, out, KP_COBS_MAX(300) - 1, &n),
			 KP_ERR_NOSPACE);
	assert_int_equal(kp_cobs_encode(in, 300, out, KP_COBS_MAX(300), &n),
			 KP_OK);
	assert_int_equal(kp_cobs_encode(in, 1, NULL, 10, &n), KP_ERR_ARG);
	assert_int_equal(kp_cobs_encode(NULL, 1, out, 10, &n), KP_ERR_ARG);
	assert_int_equal(kp_cobs_encode(in, 1, out, 10, NULL), KP_ERR_ARG);
}

static void test_cobs_decode_rejects(void **state)
{
	uint8_t b[300];
	size_t n;

	(void)state;
	assert_int_equal(kp_cobs_decode_inplace(b, 0, &n), KP_ERR_EMPTY);
	assert_int_equal(kp_cobs_decode_inplace(NULL, 1, &n), KP_ERR_ARG);
	/* a zero byte is never part of an encoding */
	memcpy(b, "\x00", 1);
	assert_int_equal(kp_cobs_decode_inplace(b, 1, &n), KP_ERR_COBS);
	memcpy(b, "\x03\x11\x00", 3);
	assert_int_equal(kp_cobs_decode_inplace(b, 3, &n), KP_ERR_COBS);
	memcpy(b, "\x02\x11\x00", 3);
	assert_int_equal(kp_cobs_decode_inplace(b, 3, &n), KP_ERR_COBS);
	/* code overruns the input */
	memcpy(b, "\x05\x11\x22", 3);
	assert_int_equal(kp_cobs_decode_inplace(b, 3, &n), KP_ERR_COBS);
	memcpy(b, "\x02\x11\x03\x22", 4);
	assert_int_equal(kp_cobs_decode_inplace(b, 4, &n), KP_ERR_COBS);
	b[0] = 0xFF;
	memset(b + 1, 0x33, 253); /* one byte short of a full block */
	assert_int_equal(kp_cobs_decode_inplace(b, 254, &n), KP_ERR_COBS);
}

static void test_cobs_decode_accepts_final_full_block(void **state)
{
	/* A final 0xFF block with no 0x01 after it is accepted: it decodes to
	 * the same 254 bytes as the canonical FF..01 form. */
	uint8_t b[256];
	size_t n;

	(void)state;
	b[0] = 0xFF;
	memset(b + 1, 0x33, 254);
	assert_int_equal(kp_cobs_decode_inplace(b, 255, &n), KP_OK);
	assert_int_equal(n, 254);
	for (size_t i = 0; i < 254; i++)
		assert_int_equal(b[i], 0x33);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_check_value),
		cmocka_unit_test(test_crc32c_known_vectors),
		cmocka_unit_test(test_crc32c_incremental),
		cmocka_unit_test(test_cobs_roundtrip_lengths),
		cmocka_unit_test(test_cobs_run_boundaries),
		cmocka_unit_test(test_cobs_exact_encodings),
		cmocka_unit_test(test_cobs_encode_nospace),
		cmocka_unit_test(test_cobs_decode_rejects),
		cmocka_unit_test(test_cobs_decode_accepts_final_full_block),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
