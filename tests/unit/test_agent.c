/* Unit tests: the agent client's host-side checks (identity blob,
 * challenge signature, CSR proof of possession) against OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/lib/agent.h"
#include "tests/integration/ossl_util.h"

static void test_identity_blob(void **state)
{
	uint8_t pub[65], cert[300], chain[1500], meta[] = "line=7\n";
	uint8_t digest[32], want[32], d2[32];
	uint8_t *blob = NULL, *blob2 = NULL;
	size_t len = 0, len2 = 0;
	kp_blob_t b;
	ks_identity_t id;

	(void)state;
	memset(pub, 0, sizeof(pub));
	pub[0] = 4;
	for (size_t i = 0; i < sizeof(cert); i++)
		cert[i] = (uint8_t)(i * 7);
	memset(chain, 0xab, sizeof(chain));
	id = (ks_identity_t){.pubkey = pub, .serial = "KLN-0001",
			     .cert = cert, .cert_len = sizeof(cert),
			     .chain = chain, .chain_len = sizeof(chain),
			     .meta = meta, .meta_len = sizeof(meta) - 1};
	assert_int_equal(ks_identity_blob(&id, &blob, &len, digest), KS_OK);
	tu_sha256(blob, len, want);
	assert_memory_equal(digest, want, 32);
	assert_int_equal(kp_blob_decode(&b, blob, len), KP_OK);
	assert_int_equal(b.serial_len, 8);
	assert_memory_equal(b.serial, "KLN-0001", 8);
	assert_int_equal(b.cert_len, sizeof(cert));
	assert_memory_equal(b.cert, cert, sizeof(cert));
	assert_int_equal(b.chain_len, sizeof(chain));
	assert_int_equal(b.meta_len, sizeof(meta) - 1);
	assert_memory_equal(b.pubkey, pub, 65);

	/* optional parts left out: a different, smaller blob */
	id.chain = NULL;
	id.chain_len = 0;
	id.meta = NULL;
	assert_int_equal(ks_identity_blob(&id, &blob2, &len2, d2), KS_OK);
	assert_true(len2 < len);
	assert_memory_not_equal(d2, digest, 32);
	assert_int_equal(kp_blob_decode(&b, blob2, len2), KP_OK);
	assert_null(b.chain);
	free(blob2);
	blob2 = NULL;

	/* bounds come from the protocol: a 2049-byte cert is refused */
	{
		uint8_t *big = calloc(1, 2049);

		id.cert = big;
		id.cert_len = 2049;
		assert_int_equal(ks_identity_blob(&id, &blob2, &len2, d2),
				 KS_ERR_ARG);
		assert_null(blob2);
		id.cert = cert;
		id.cert_len = sizeof(cert);
		id.serial = "bad\tserial";
		assert_int_equal(ks_identity_blob(&id, &blob2, &len2, d2),
				 KS_ERR_ARG);
		free(big);
	}
	free(blob);
}

static void test_verify_challenge(void **state)
{
	EVP_PKEY *k = tu_p256_new(), *other = tu_p256_new();
	uint8_t pub[65], opub[65], uid[12], nonce[32], msg[200], sig[72];
	size_t mlen, slen;

	(void)state;
	tu_pubkey_raw(k, pub);
	tu_pubkey_raw(other, opub);
	for (size_t i = 0; i < sizeof(uid); i++)
		uid[i] = (uint8_t)(0xa0 + i);
	for (size_t i = 0; i < sizeof(nonce); i++)
		nonce[i] = (uint8_t)i;
	assert_int_equal(kp_challenge_message(uid, sizeof(uid), nonce,
					      sizeof(nonce), msg, sizeof(msg),
					      &mlen),
			 KP_OK);
	slen = tu_sign(k, msg, mlen, sig);

	assert_int_equal(ks_verify_challenge(pub, uid, sizeof(uid), nonce,
					     sizeof(nonce), sig, slen),
			 KS_OK);
	/* another key, nonce or uid: refused */
	assert_int_equal(ks_verify_challenge(opub, uid, sizeof(uid), nonce,
					     sizeof(nonce), sig, slen),
			 KS_ERR_VERIFY);
	nonce[0] ^= 1;
	assert_int_equal(ks_verify_challenge(pub, uid, sizeof(uid), nonce,
					     sizeof(nonce), sig, slen),
			 KS_ERR_VERIFY);
	nonce[0] ^= 1;
	assert_int_equal(ks_verify_challenge(pub, uid, sizeof(uid) - 1, nonce,
					     sizeof(nonce), sig, slen),
			 KS_ERR_VERIFY);
	/* a corrupted or truncated signature */
	sig[slen - 1] ^= 0x40;
	assert_int_equal(ks_verify_challenge(pub, uid, sizeof(uid), nonce,
					     sizeof(nonce), sig, slen),
			 KS_ERR_VERIFY);
	sig[slen - 1] ^= 0x40;
	assert_int_equal(ks_verify_challenge(pub, uid, sizeof(uid), nonce,
					     sizeof(nonce), sig, slen - 1),
			 KS_ERR_VERIFY);
	/* a point that is not on the curve */
	pub[64] ^= 1;
	assert_int_equal(ks_verify_challenge(pub, uid, sizeof(uid), nonce,
					     sizeof(nonce), sig, slen),
			 KS_ERR_VERIFY);
	pub[64] ^= 1;
	pub[0] = 0x02;
	assert_int_equal(ks_verify_challenge(pub, uid, sizeof(uid), nonce,
					     sizeof(nonce), sig, slen),
			 KS_ERR_VERIFY);
	assert_int_equal(ks_verify_challenge(pub, uid, 0, nonce, sizeof(nonce),
					     sig, slen),
			 KS_ERR_ARG);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
}

static void test_csr_verify(void **state)
{
	EVP_PKEY *k = tu_p256_new(), *other = tu_p256_new();
	EVP_PKEY *rsa = EVP_RSA_gen(1024), *p384 = EVP_EC_gen("P-384");
	uint8_t pub[65], opub[65];
	uint8_t *csr, *bad, *csr2;
	size_t len, len2;

	(void)state;
	tu_pubkey_raw(k, pub);
	tu_pubkey_raw(other, opub);
	csr = tu_make_csr(k, "0011aabb", &len);
	assert_int_equal(ks_csr_verify(csr, len, pub), KS_OK);
	/* a valid CSR for a different key than GENKEY reported */
	assert_int_equal(ks_csr_verify(csr, len, opub), KS_ERR_VERIFY);
	/* trailing bytes, truncation, a flipped signature byte */
	bad = malloc(len + 1);
	memcpy(bad, csr, len);
	bad[len] = 0;
	assert_int_equal(ks_csr_verify(bad, len + 1, pub), KS_ERR_VERIFY);
	assert_int_equal(ks_csr_verify(bad, len - 1, pub), KS_ERR_VERIFY);
	bad[len - 3] ^= 0x01;
	assert_int_equal(ks_csr_verify(bad, len, pub), KS_ERR_VERIFY);
	free(bad);
	/* not P-256 */
	csr2 = tu_make_csr(p384, "x", &len2);
	assert_int_equal(ks_csr_verify(csr2, len2, pub), KS_ERR_VERIFY);
	free(csr2);
	csr2 = tu_make_csr(rsa, "x", &len2);
	assert_int_equal(ks_csr_verify(csr2, len2, pub), KS_ERR_VERIFY);
	free(csr2);
	assert_int_equal(ks_csr_verify(csr, 0, pub), KS_ERR_ARG);
	free(csr);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(p384);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_blob),
		cmocka_unit_test(test_verify_challenge),
		cmocka_unit_test(test_csr_verify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
