/*
 * Certificate serials at scale: 10^6 serials drawn exactly as the signer
 * draws them (ks_ca_random_serial) are positive INTEGERs of at most 20
 * octets (RFC 5280 4.1.2.2), all distinct, and no random bit is stuck:
 * each of the 126 random bit positions is set in about half of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>

#include "host/lib/ca_priv.h"

#define N_SERIALS 1000000u

static int cmp16(const void *a, const void *b)
{
	return memcmp(a, b, KS_CA_SERIAL_LEN);
}

static void test_million_serials(void **state)
{
	uint8_t(*raw)[KS_CA_SERIAL_LEN] = calloc(N_SERIALS, sizeof(*raw));
	uint32_t ones[KS_CA_SERIAL_LEN * 8];
	size_t dups = 0, stuck = 0, not_positive = 0, too_long = 0;
	double lo = N_SERIALS / 2.0 - 6 * 500.0, hi = N_SERIALS / 2.0 + 6 * 500.0;

	(void)state;
	assert_non_null(raw);
	memset(ones, 0, sizeof(ones));
	for (uint32_t i = 0; i < N_SERIALS; i++) {
		ASN1_INTEGER *ai = NULL;

		assert_int_equal(ks_ca_random_serial(raw[i], &ai), KS_OK);
		/* the DER INTEGER: positive, content <= 20 octets */
		if (i % 64 == 0) {
			BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);

			assert_non_null(bn);
			not_positive += BN_is_negative(bn) || BN_is_zero(bn);
			too_long += (size_t)(ASN1_STRING_length(ai) > 20);
			BN_free(bn);
		}
		ASN1_INTEGER_free(ai);
		for (unsigned b = 0; b < KS_CA_SERIAL_LEN * 8; b++)
			ones[b] += ((uint32_t)raw[i][b / 8] >> (7u - b % 8u)) & 1u;
	}
	qsort(raw, N_SERIALS, sizeof(*raw), cmp16);
	for (uint32_t i = 1; i < N_SERIALS; i++)
		dups += memcmp(raw[i - 1], raw[i], KS_CA_SERIAL_LEN) == 0;
	/* bit 0 (MSB) is always clear and bit 1 always set, by design: the
	 * INTEGER stays positive and 16 octets long; every other bit must be
	 * set in 50% +- 6 sigma of the serials */
	assert_int_equal(ones[0], 0);
	assert_int_equal(ones[1], N_SERIALS);
	for (unsigned b = 2; b < KS_CA_SERIAL_LEN * 8; b++)
		stuck += ones[b] < lo || ones[b] > hi;
	printf("serials: %u drawn, %zu duplicates, %zu not positive, %zu over "
	       "20 octets, %zu of 126 random bits outside 50%% +- 6 sigma\n",
	       N_SERIALS, dups, not_positive, too_long, stuck);
	assert_int_equal(dups, 0);
	assert_int_equal(not_positive, 0);
	assert_int_equal(too_long, 0);
	assert_int_equal(stuck, 0);
	free(raw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_million_serials),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
