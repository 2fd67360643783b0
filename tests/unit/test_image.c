/*
 * Unit tests: signed firmware images (host/lib/image.c): version parsing,
 * public keys from PEM (key, certificate, refusals), the profile's
 * secure_boot_key, sign/parse/verify with a PEM key and with a key in a
 * SoftHSM2 token, every tampering the boot must refuse, and malformed
 * images (every truncation, huge sizes, wrong magic, trailing bytes).
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
#include <openssl/x509.h>

#include "host/lib/image.h"
#include "host/lib/p11.h"
#include "host/lib/profile.h"
#include "tests/integration/softhsm.h"

static char dir[64];
static char key_a[128], key_b[128], pub_a[128], cert_a[128], key_384[128];
static char key_ed[128];
static uint8_t point_a[KS_IMAGE_PUBKEY_LEN];
static char err[512];

static void write_key(EVP_PKEY *pk, const char *path, bool priv)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	if (priv)
		assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0,
						      NULL, NULL),
				 1);
	else
		assert_int_equal(PEM_write_PUBKEY(f, pk), 1);
	fclose(f);
}

static void write_cert(EVP_PKEY *pk, const char *path)
{
	X509 *x = X509_new();
	X509_NAME *n;
	FILE *f;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	n = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(
				 n, "CN", MBSTRING_ASC,
				 (const unsigned char *)"firmware", -1, -1, 0),
			 1);
	assert_int_equal(X509_set_issuer_name(x, n), 1);
	assert_int_equal(X509_set_pubkey(x, pk), 1);
	assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
	X509_free(x);
}

static int group_setup(void **state)
{
	EVP_PKEY *a, *b, *c, *d;
	size_t n;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kiln-test-image-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(key_a, sizeof(key_a), "%s/a.key", dir);
	snprintf(key_b, sizeof(key_b), "%s/b.key", dir);
	snprintf(pub_a, sizeof(pub_a), "%s/a.pub", dir);
	snprintf(cert_a, sizeof(cert_a), "%s/a.crt", dir);
	snprintf(key_384, sizeof(key_384), "%s/p384.pub", dir);
	snprintf(key_ed, sizeof(key_ed), "%s/ed.pub", dir);
	a = EVP_EC_gen("P-256");
	b = EVP_EC_gen("P-256");
	c = EVP_EC_gen("P-384");
	d = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (a == NULL || b == NULL || c == NULL || d == NULL)
		return -1;
	write_key(a, key_a, true);
	write_key(b, key_b, true);
	write_key(a, pub_a, false);
	write_cert(a, cert_a);
	write_key(c, key_384, false);
	write_key(d, key_ed, false);
	if (EVP_PKEY_get_octet_string_param(a, "encoded-pub-key", point_a,
					    sizeof(point_a), &n) != 1 ||
	    n != sizeof(point_a))
		return -1;
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	EVP_PKEY_free(c);
	EVP_PKEY_free(d);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_version_parse(void **state)
{
	uint8_t a, b;
	uint16_t c;

	(void)state;
	assert_int_equal(ks_image_version_parse("1.2.3", &a, &b, &c), KS_OK);
	assert_int_equal(a, 1);
	assert_int_equal(b, 2);
	assert_int_equal(c, 3);
	assert_int_equal(ks_image_version_parse("255.0.65535", &a, &b, &c),
			 KS_OK);
	assert_int_equal(c, 65535);
	const char *bad[] = {"", "1", "1.2", "1.2.3.4", "256.0.0", "0.0.65536",
			     "1.2.x", "01.2.3", "-1.2.3", " 1.2.3", "1.2.3 ",
			     "1..3", "+1.2.3", "1.2.99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ks_image_version_parse(bad[i], &a, &b, &c),
				 KS_ERR_ARG);
}

static void test_pubkey_load(void **state)
{
	uint8_t p[KS_IMAGE_PUBKEY_LEN], h[32], h2[32];
	unsigned int n = 32;

	(void)state;
	assert_int_equal(ks_image_pubkey_load(pub_a, p, err, sizeof(err)),
			 KS_OK);
	assert_memory_equal(p, point_a, sizeof(p));
	memset(p, 0, sizeof(p));
	assert_int_equal(ks_image_pubkey_load(cert_a, p, err, sizeof(err)),
			 KS_OK);
	assert_memory_equal(p, point_a, sizeof(p));
	/* the key hash: SHA-256 of the 65-byte point */
	ks_image_key_hash(p, h);
	assert_int_equal(EVP_Digest(point_a, 65, h2, &n, EVP_sha256(), NULL),
			 1);
	assert_memory_equal(h, h2, 32);

	assert_int_equal(ks_image_pubkey_load(key_a, p, err, sizeof(err)),
			 KS_ERR_ARG);
	assert_non_null(strstr(err, "is a private key"));
	assert_int_equal(ks_image_pubkey_load(key_384, p, err, sizeof(err)),
			 KS_ERR_POLICY);
	assert_non_null(strstr(err, "not an EC P-256 key"));
	assert_non_null(strstr(err, "secp384r1"));
	assert_int_equal(ks_image_pubkey_load(key_ed, p, err, sizeof(err)),
			 KS_ERR_POLICY);
	assert_int_equal(ks_image_pubkey_load("/nonexistent/k.pem", p, err,
					      sizeof(err)),
			 KS_ERR_IO);
	assert_non_null(strstr(err, "/nonexistent/k.pem"));
	assert_int_equal(ks_image_pubkey_load("/etc/hostname", p, err,
					      sizeof(err)),
			 KS_ERR_ARG);
	assert_non_null(strstr(err, "no PEM block"));
}

static void test_profile_key(void **state)
{
	ks_profile_t p;
	uint8_t h[32];

	(void)state;
	assert_int_equal(ks_profile_init(&p, "fw", err, sizeof(err)), KS_OK);
	assert_false(p.has_boot_key);
	assert_int_equal(ks_profile_set(&p, "secure_boot_key", cert_a, err,
					sizeof(err)),
			 KS_OK);
	assert_true(p.has_boot_key);
	ks_image_key_hash(point_a, h);
	assert_memory_equal(p.boot_key_hash, h, 32);

	assert_int_equal(ks_profile_init(&p, "fw", err, sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(&p, "secure_boot_key", key_384, err,
					sizeof(err)),
			 KS_ERR_CONFIG);
	assert_non_null(strstr(err, "secure_boot_key"));
	assert_non_null(strstr(err, "P-256"));
	assert_false(p.has_boot_key);
	assert_int_equal(ks_profile_set(&p, "secure_boot_key", key_a, err,
					sizeof(err)),
			 KS_ERR_CONFIG);
	assert_non_null(strstr(err, "private key"));
}

static void params(ks_image_params_t *p)
{
	memset(p, 0, sizeof(*p));
	p->hdr_size = 0x100;
	p->load_addr = 0x00020100u;
	p->counter = 3;
	p->ver_major = 1;
	p->ver_minor = 4;
	p->ver_patch = 2;
}

static uint8_t body[3000];

static uint8_t *sign_a(size_t *len)
{
	ks_image_params_t p;
	uint8_t *img = NULL;

	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i * 7 + 1);
	params(&p);
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, key_a, NULL,
				       NULL, &img, len, err, sizeof(err)),
			 KS_OK);
	return img;
}

static ks_image_fail_t verify(const uint8_t *img, size_t len,
			      const uint8_t *point)
{
	ks_image_info_t info;
	ks_image_fail_t why = KS_IMAGE_OK;
	uint8_t h[32];
	ks_err_t r;

	ks_image_key_hash(point, h);
	r = ks_image_verify(img, len, h, &info, &why, err, sizeof(err));
	assert_int_equal(r == KS_OK, why == KS_IMAGE_OK);
	return why;
}

static void test_sign_verify(void **state)
{
	ks_image_info_t info;
	ks_image_fail_t why;
	uint8_t *img, h[32];
	size_t len;

	(void)state;
	img = sign_a(&len);
	assert_int_equal(verify(img, len, point_a), KS_IMAGE_OK);
	assert_int_equal(ks_image_parse(img, len, &info, &why, err,
					sizeof(err)),
			 KS_OK);
	assert_int_equal(info.hdr_version, 1);
	assert_int_equal(info.hdr_size, 0x100);
	assert_int_equal(info.image_size, sizeof(body));
	assert_int_equal(info.load_addr, 0x00020100u);
	assert_int_equal(info.counter, 3);
	assert_int_equal(info.ver_major, 1);
	assert_int_equal(info.ver_minor, 4);
	assert_int_equal(info.ver_patch, 2);
	assert_int_equal(info.flags, 0);
	assert_memory_equal(info.pubkey, point_a, 65);
	ks_image_key_hash(point_a, h);
	assert_memory_equal(info.key_hash, h, 32);
	assert_int_equal(len, 0x100 + sizeof(body) + info.trailer_len);
	/* byte layout */
	assert_memory_equal(img, "KIMG", 4);
	assert_memory_equal(img + 0x100, body, sizeof(body));
	assert_int_equal(img[0x100 + sizeof(body)], 0x4B);
	assert_int_equal(img[0x100 + sizeof(body) + 1], 0x54);

	/* signed by another key: the key hash of key A does not match */
	{
		ks_image_params_t p;
		uint8_t *img_b = NULL;
		size_t len_b;

		params(&p);
		assert_int_equal(ks_image_sign(body, sizeof(body), &p, key_b,
					       NULL, NULL, &img_b, &len_b, err,
					       sizeof(err)),
				 KS_OK);
		assert_int_equal(verify(img_b, len_b, point_a),
				 KS_IMAGE_WRONG_KEY);
		/* ... and key A's point grafted onto it: bad signature */
		assert_int_equal(ks_image_parse(img_b, len_b, &info, &why, err,
						sizeof(err)),
				 KS_OK);
		memcpy(img_b + 0x100 + sizeof(body) + 4 + 36 + 4, point_a, 65);
		assert_int_equal(verify(img_b, len_b, point_a),
				 KS_IMAGE_BAD_SIGNATURE);
		free(img_b);
	}
	free(img);
}

static void test_tampering(void **state)
{
	uint8_t *img, *t, d[32];
	size_t len, trailer;
	unsigned int dn = 32;

	(void)state;
	img = sign_a(&len);
	t = malloc(len);
	assert_non_null(t);
	trailer = 0x100 + sizeof(body);

	/* a flipped bit anywhere in header or body: hash mismatch */
	for (size_t i = 0; i < trailer; i += 97) {
		memcpy(t, img, len);
		t[i] ^= 0x01;
		if (i < 32 || (i >= 0x100)) {
			ks_image_fail_t w = verify(t, len, point_a);

			assert_true(w == KS_IMAGE_HASH_MISMATCH ||
				    w == KS_IMAGE_BAD_HEADER);
		} else {
			/* padding must be zero */
			assert_int_equal(verify(t, len, point_a),
					 KS_IMAGE_BAD_HEADER);
		}
	}
	/* the body changed and the hash TLV recomputed: bad signature */
	memcpy(t, img, len);
	t[0x100 + 10] ^= 0x80;
	assert_int_equal(EVP_Digest(t, trailer, d, &dn, EVP_sha256(), NULL),
			 1);
	memcpy(t + trailer + 8, d, 32);
	assert_int_equal(verify(t, len, point_a), KS_IMAGE_BAD_SIGNATURE);
	/* an older security counter written into the header: same */
	memcpy(t, img, len);
	t[20] = 1;
	assert_int_equal(EVP_Digest(t, trailer, d, &dn, EVP_sha256(), NULL),
			 1);
	memcpy(t + trailer + 8, d, 32);
	assert_int_equal(verify(t, len, point_a), KS_IMAGE_BAD_SIGNATURE);
	/* every byte of the signature value */
	for (size_t i = trailer + 4 + 36 + 69 + 4; i < len; i++) {
		memcpy(t, img, len);
		t[i] ^= 0x10;
		assert_int_equal(verify(t, len, point_a),
				 KS_IMAGE_BAD_SIGNATURE);
	}
	/* the public key TLV: wrong key */
	memcpy(t, img, len);
	t[trailer + 4 + 36 + 4 + 20] ^= 0x01;
	assert_int_equal(verify(t, len, point_a), KS_IMAGE_WRONG_KEY);
	free(t);
	free(img);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void test_malformed(void **state)
{
	ks_image_info_t info;
	ks_image_fail_t why;
	uint8_t *img, *t;
	size_t len, trailer;

	(void)state;
	img = sign_a(&len);
	trailer = 0x100 + sizeof(body);
	t = malloc(len + 16);
	assert_non_null(t);

	/* every truncation is refused, in its own exact-size buffer (a
	 * read past the end shows under ASan/valgrind) */
	for (size_t n = 0; n < len; n++) {
		uint8_t *c = malloc(n + 1);

		assert_non_null(c);
		memcpy(c, img, n);
		assert_int_equal(ks_image_parse(n ? c : NULL, n, &info, &why,
						err, sizeof(err)),
				 KS_ERR_VERIFY);
		assert_true(why == KS_IMAGE_BAD_HEADER ||
			    why == KS_IMAGE_BAD_TRAILER);
		free(c);
	}
	/* a trailing byte */
	memcpy(t, img, len);
	t[len] = 0;
	assert_int_equal(ks_image_parse(t, len + 1, &info, &why, err,
					sizeof(err)),
			 KS_ERR_VERIFY);
	assert_int_equal(why, KS_IMAGE_BAD_TRAILER);
	/* wrong magic */
	memcpy(t, img, len);
	t[0] = 'X';
	assert_int_equal(ks_image_parse(t, len, &info, &why, err, sizeof(err)),
			 KS_ERR_VERIFY);
	assert_int_equal(why, KS_IMAGE_BAD_HEADER);
	assert_non_null(strstr(err, "magic"));
	/* huge sizes: would wrap a 32-bit sum, or exceed the file */
	{
		const uint32_t sizes[] = {0xFFFFFFFFu, 0xFFFFFF00u,
					  0x80000000u, (uint32_t)len, 0};

		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]);
		     i++) {
			memcpy(t, img, len);
			put32(t + 12, sizes[i]);
			assert_int_equal(ks_image_parse(t, len, &info, &why,
							err, sizeof(err)),
					 KS_ERR_VERIFY);
			assert_int_equal(why, KS_IMAGE_BAD_HEADER);
		}
	}
	/* header size: 0xFFFF, 0, not a multiple of 4 */
	{
		const uint16_t hs[] = {0xFFFF, 0, 30, 34, 0x1004};

		for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
			memcpy(t, img, len);
			t[6] = (uint8_t)hs[i];
			t[7] = (uint8_t)(hs[i] >> 8);
			assert_int_equal(ks_image_parse(t, len, &info, &why,
							err, sizeof(err)),
					 KS_ERR_VERIFY);
			assert_int_equal(why, KS_IMAGE_BAD_HEADER);
		}
	}
	/* load address + size past 4 GiB; counter beyond the OTP range;
	 * unknown flag; reserved word; header version */
	{
		const size_t off[] = {16, 20, 8, 28, 4};
		const uint32_t val[] = {0xFFFFFF00u, KS_IMAGE_COUNTER_MAX + 1,
					0x2, 1, 2};

		for (size_t i = 0; i < 5; i++) {
			memcpy(t, img, len);
			if (off[i] == 4) {
				t[4] = (uint8_t)val[i];
			} else {
				put32(t + off[i], val[i]);
			}
			assert_int_equal(ks_image_parse(t, len, &info, &why,
							err, sizeof(err)),
					 KS_ERR_VERIFY);
			assert_int_equal(why, KS_IMAGE_BAD_HEADER);
		}
	}
	/* trailer: total length lies, TLV length overruns, wrong order */
	memcpy(t, img, len);
	t[trailer + 2] = (uint8_t)(t[trailer + 2] + 1);
	assert_int_equal(ks_image_parse(t, len, &info, &why, err, sizeof(err)),
			 KS_ERR_VERIFY);
	assert_int_equal(why, KS_IMAGE_BAD_TRAILER);
	memcpy(t, img, len);
	t[trailer + 4 + 36 + 69 + 2] = 0xFF; /* signature TLV length */
	t[trailer + 4 + 36 + 69 + 3] = 0xFF;
	assert_int_equal(ks_image_parse(t, len, &info, &why, err, sizeof(err)),
			 KS_ERR_VERIFY);
	assert_int_equal(why, KS_IMAGE_BAD_TRAILER);
	memcpy(t, img, len);
	t[trailer + 4] = 0x20; /* first TLV claims to be the key */
	assert_int_equal(ks_image_parse(t, len, &info, &why, err, sizeof(err)),
			 KS_ERR_VERIFY);
	assert_int_equal(why, KS_IMAGE_BAD_TRAILER);
	free(t);
	free(img);
}

static void test_sign_refusals(void **state)
{
	ks_image_params_t p;
	uint8_t *img = NULL;
	size_t len;

	(void)state;
	params(&p);
	p.counter = KS_IMAGE_COUNTER_MAX + 1;
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, key_a, NULL,
				       NULL, &img, &len, err, sizeof(err)),
			 KS_ERR_ARG);
	assert_non_null(strstr(err, "security counter"));
	params(&p);
	p.hdr_size = 30;
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, key_a, NULL,
				       NULL, &img, &len, err, sizeof(err)),
			 KS_ERR_ARG);
	params(&p);
	p.load_addr = 0xFFFFFF00u;
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, key_a, NULL,
				       NULL, &img, &len, err, sizeof(err)),
			 KS_ERR_ARG);
	params(&p);
	p.flags = 0x80;
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, key_a, NULL,
				       NULL, &img, &len, err, sizeof(err)),
			 KS_ERR_ARG);
	params(&p);
	/* --pubkey that is not the key's */
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, key_b, pub_a,
				       NULL, &img, &len, err, sizeof(err)),
			 KS_ERR_VERIFY);
	/* a public key is no signing key; a P-384 key is refused */
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, pub_a, NULL,
				       NULL, &img, &len, err, sizeof(err)),
			 KS_ERR_ARG);
	/* a token key without its public key */
	assert_int_equal(ks_image_sign(body, sizeof(body), &p,
				       "pkcs11:token=x;object=y", NULL, NULL,
				       &img, &len, err, sizeof(err)),
			 KS_ERR_ARG);
	assert_non_null(strstr(err, "--pubkey"));
	assert_null(img);
	/* matching --pubkey and the factory flag */
	p.flags = KS_IMAGE_FLAG_FACTORY;
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, key_a, cert_a,
				       NULL, &img, &len, err, sizeof(err)),
			 KS_OK);
	assert_int_equal(verify(img, len, point_a), KS_IMAGE_OK);
	free(img);
}

/* The signing key in a SoftHSM2 token (skipped without SoftHSM2). */
static void test_pkcs11(void **state)
{
	th_softhsm_t h;
	char tdir[128], uri[512], pub[160];
	EVP_PKEY *pk = NULL;
	ks_image_params_t p;
	ks_image_info_t info;
	ks_image_fail_t why;
	uint8_t *img = NULL, pt[65], kh[32];
	size_t len;

	(void)state;
	if (th_softhsm_module() == NULL) {
		skip();
		return;
	}
	snprintf(tdir, sizeof(tdir), "%s/hsm", dir);
	assert_int_equal(th_softhsm_init(&h, tdir), 0);
	th_softhsm_uri(&h, "fw-signing", uri, sizeof(uri));
	assert_int_equal(ks_p11_keygen(uri, h.module, &pk, err, sizeof(err)),
			 KS_OK);
	snprintf(pub, sizeof(pub), "%s/token.pub", dir);
	write_key(pk, pub, false);
	EVP_PKEY_free(pk);
	params(&p);
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, uri, pub,
				       h.module, &img, &len, err, sizeof(err)),
			 KS_OK);
	assert_int_equal(ks_image_pubkey_load(pub, pt, err, sizeof(err)),
			 KS_OK);
	ks_image_key_hash(pt, kh);
	assert_int_equal(ks_image_verify(img, len, kh, &info, &why, err,
					 sizeof(err)),
			 KS_OK);
	free(img);
	img = NULL;
	/* the wrong public key for the token key is caught at signing */
	assert_int_equal(ks_image_sign(body, sizeof(body), &p, uri, pub_a,
				       h.module, &img, &len, err, sizeof(err)),
			 KS_ERR_VERIFY);
	assert_null(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_parse),
		cmocka_unit_test(test_pubkey_load),
		cmocka_unit_test(test_profile_key),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_tampering),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_sign_refusals),
		cmocka_unit_test(test_pkcs11),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
