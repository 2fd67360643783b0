/*
 * Unit tests: certificate profiles (config keys, errors, templates).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/obj_mac.h>

#include "host/lib/profile.h"
#include "protocol/msg.h"

static char err[512];

static void base(ks_profile_t *p)
{
	assert_int_equal(ks_profile_init(p, "widget-v1", err, sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(p, "subject",
					"CN=${serial},O=Acme,OU=Line 1", err,
					sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(p, "validity_days", "3650", err,
					sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(p, "key_origin", "device", err,
					sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(p, "lock", "identity", err,
					sizeof(err)), KS_OK);
}

static void test_defaults_and_complete(void **state)
{
	ks_profile_t p;

	(void)state;
	assert_int_equal(ks_profile_init(&p, "widget-v1", err, sizeof(err)),
			 KS_OK);
	assert_string_equal(p.name, "widget-v1");
	assert_int_equal(p.key_usage, KS_KU_DIGITAL_SIGNATURE);
	assert_int_equal(p.ext_key_usage, KS_EKU_CLIENT_AUTH);
	assert_int_equal(p.backdate_seconds, KS_PROFILE_BACKDATE_DEFAULT);
	assert_int_equal(p.key_alg, KS_KEY_ALG_EC_P256);
	assert_int_equal(p.lot_quota, 0);
	/* Incomplete: names the first missing key. */
	assert_int_equal(ks_profile_validate(&p, err, sizeof(err)),
			 KS_ERR_CONFIG);
	assert_non_null(strstr(err, "'subject'"));

	base(&p);
	assert_int_equal(ks_profile_validate(&p, err, sizeof(err)), KS_OK);
	assert_int_equal(p.rdn_count, 3);
	assert_int_equal(p.rdn[0].nid, NID_commonName);
	assert_string_equal(p.rdn[0].value, "${serial}");
	assert_int_equal(p.rdn[1].nid, NID_organizationName);
	assert_string_equal(p.rdn[1].value, "Acme");
	assert_int_equal(p.rdn[2].nid, NID_organizationalUnitName);
	assert_string_equal(p.rdn[2].value, "Line 1");
	assert_int_equal(p.validity_days, 3650);
	assert_int_equal(p.key_origin, KS_KEY_ORIGIN_DEVICE);
	assert_int_equal(ks_profile_lock_level(&p), KP_LOCK_LEVEL_IDENTITY);
}

static void test_every_key(void **state)
{
	ks_profile_t p;

	(void)state;
	base(&p);
	assert_int_equal(ks_profile_set(&p, "key_usage",
					"digitalSignature, keyAgreement", err,
					sizeof(err)), KS_OK);
	assert_int_equal(p.key_usage,
			 KS_KU_DIGITAL_SIGNATURE | KS_KU_KEY_AGREEMENT);
	assert_int_equal(ks_profile_set(&p, "extended_key_usage",
					"clientAuth,serverAuth", err,
					sizeof(err)), KS_OK);
	assert_int_equal(p.ext_key_usage,
			 KS_EKU_CLIENT_AUTH | KS_EKU_SERVER_AUTH);
	assert_int_equal(ks_profile_set(&p, "san_dns", "${uid}.devices.example.com",
					err, sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(&p, "san_uri",
					"https://example.com/d/${serial}", err,
					sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(&p, "san_uri", "urn:acme:lot:${lot}",
					err, sizeof(err)), KS_OK);
	assert_int_equal(p.san_dns_count, 1);
	assert_int_equal(p.san_uri_count, 2);
	assert_int_equal(ks_profile_set(&p, "key_origin", "host", err,
					sizeof(err)), KS_OK);
	assert_int_equal(p.key_origin, KS_KEY_ORIGIN_HOST);
	assert_int_equal(ks_profile_set(&p, "lock", "full", err, sizeof(err)),
			 KS_OK);
	assert_int_equal(ks_profile_lock_level(&p), KP_LOCK_LEVEL_FULL);
	assert_int_equal(ks_profile_set(&p, "lock", "none", err, sizeof(err)),
			 KS_OK);
	assert_int_equal(ks_profile_lock_level(&p), 0);
	assert_int_equal(ks_profile_set(&p, "key_algorithm", "P-256", err,
					sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(&p, "lot_quota", "5000", err,
					sizeof(err)), KS_OK);
	assert_int_equal(p.lot_quota, 5000);
	assert_int_equal(ks_profile_set(&p, "backdate_seconds", "0", err,
					sizeof(err)), KS_OK);
	assert_int_equal(p.backdate_seconds, 0);
	assert_int_equal(ks_profile_validate(&p, err, sizeof(err)), KS_OK);
}

/* A bad key=value must fail with both the key and the value in the text. */
static void expect_bad(const char *key, const char *value, const char *also)
{
	ks_profile_t p, before;

	base(&p);
	before = p;
	err[0] = '\0';
	assert_int_equal(ks_profile_set(&p, key, value, err, sizeof(err)),
			 KS_ERR_CONFIG);
	if (strstr(err, key) == NULL || strstr(err, also) == NULL)
		fail_msg("error for %s=%s lacks '%s' or '%s': %s", key, value,
			 key, also, err);
	/* A refused value leaves the profile untouched. */
	assert_memory_equal(&p, &before, sizeof(p));
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_bad("validity_days", "0", "'0'");
	expect_bad("validity_days", "-5", "'-5'");
	expect_bad("validity_days", "10x", "'10x'");
	expect_bad("validity_days", " 10", "' 10'");
	expect_bad("validity_days", "99999999999999999999", "99999999999999999999");
	expect_bad("validity_days", "36501", "'36501'");
	expect_bad("backdate_seconds", "86401", "'86401'");
	expect_bad("key_usage", "digitalSignature,bogus", "'bogus'");
	expect_bad("key_usage", "keyCertSign", "'keyCertSign'");
	expect_bad("key_usage", "keyEncipherment", "not applicable");
	expect_bad("key_usage", "", "''");
	expect_bad("extended_key_usage", "codeSigning", "'codeSigning'");
	expect_bad("key_origin", "both", "'both'");
	expect_bad("lock", "total", "'total'");
	expect_bad("key_algorithm", "rsa2048", "'rsa2048'");
	expect_bad("lot_quota", "lots", "'lots'");
	expect_bad("san_dns", "bad_name.example.com", "'bad_name.example.com'");
	expect_bad("san_dns", "-x.example.com", "'-x.example.com'");
	expect_bad("san_uri", "no scheme here", "'no scheme here'");
	expect_bad("san_uri", "https://x/${nope}", "${nope}");
	expect_bad("subject", "CN=${serial", "unterminated");
	expect_bad("subject", "CN=${device_name}", "${device_name}");
	expect_bad("subject", "CN=a$b", "'$'");
	expect_bad("subject", "XX=foo", "'XX'");
	expect_bad("subject", "CN", "'CN'");
	expect_bad("subject", "CN=", "empty");
	expect_bad("subject", "CN=x,C=Germany", "two-letter");
	expect_bad("subject", "CN=x,", "trailing");
	expect_bad("subject",
		   "CN=0123456789012345678901234567890123456789012345678901234567890123456789",
		   "longer than 64");
	expect_bad("subject", "CN=caf\xc3\xa9", "printable");
	expect_bad("subject", "CN=a\\b", "escapes");
}

static void test_unknown_key(void **state)
{
	ks_profile_t p;

	(void)state;
	base(&p);
	assert_int_equal(ks_profile_set(&p, "validity", "10", err, sizeof(err)),
			 KS_ERR_CONFIG);
	assert_non_null(strstr(err, "'validity'"));
	assert_non_null(strstr(err, "validity_days")); /* lists known keys */
}

static void test_san_limit_and_name(void **state)
{
	ks_profile_t p;
	int i;

	(void)state;
	base(&p);
	for (i = 0; i < KS_PROFILE_SAN_MAX; i++)
		assert_int_equal(ks_profile_set(&p, "san_uri", "urn:x:${serial}",
						err, sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(&p, "san_uri", "urn:x:y", err,
					sizeof(err)), KS_ERR_CONFIG);
	assert_non_null(strstr(err, "san_uri"));
	assert_int_equal(ks_profile_init(&p, "bad name", err, sizeof(err)),
			 KS_ERR_CONFIG);
	assert_non_null(strstr(err, "'bad name'"));
	assert_int_equal(ks_profile_init(&p, "", err, sizeof(err)),
			 KS_ERR_CONFIG);
}

static void test_validate_missing(void **state)
{
	static const char *const keys[] = { "validity_days", "key_origin",
					    "lock" };
	ks_profile_t p;
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		char want[64];

		base(&p);
		if (i == 0)
			p.validity_days = 0;
		else if (i == 1)
			p.key_origin = KS_KEY_ORIGIN_UNSET;
		else
			p.lock = KS_LOCK_POLICY_UNSET;
		assert_int_equal(ks_profile_validate(&p, err, sizeof(err)),
				 KS_ERR_CONFIG);
		snprintf(want, sizeof(want), "'%s'", keys[i]);
		assert_non_null(strstr(err, want));
	}
}

static void test_subject_escapes(void **state)
{
	ks_profile_t p;

	(void)state;
	base(&p);
	assert_int_equal(ks_profile_set(&p, "subject",
					"CN=${serial} / ${lot},O=Acme\\, Inc.,C=DE,serialNumber=${uid}",
					err, sizeof(err)), KS_OK);
	assert_int_equal(p.rdn_count, 4);
	assert_string_equal(p.rdn[0].value, "${serial} / ${lot}");
	assert_string_equal(p.rdn[1].value, "Acme, Inc.");
	assert_int_equal(p.rdn[2].nid, NID_countryName);
	assert_int_equal(p.rdn[3].nid, NID_serialNumber);
}

static void test_expand(void **state)
{
	const ks_profile_vars_t v = { "KLN-000042", "0a1b2c3d", "L7", "widget" };
	const ks_profile_vars_t nolot = { "S", "u", NULL, "p" };
	char out[64];

	(void)state;
	assert_int_equal(ks_profile_expand("${serial}/${uid}/${lot}/${profile}$$",
					   &v, out, sizeof(out)), KS_OK);
	assert_string_equal(out, "KLN-000042/0a1b2c3d/L7/widget$");
	assert_int_equal(ks_profile_expand("x${lot}", &nolot, out, sizeof(out)),
			 KS_ERR_ARG);
	assert_int_equal(ks_profile_expand("${serial}${serial}", &v, out, 20),
			 KS_ERR_POLICY);
	assert_int_equal(ks_profile_expand("$x", &v, out, sizeof(out)),
			 KS_ERR_ARG);
	assert_int_equal(ks_profile_expand("${", &v, out, sizeof(out)),
			 KS_ERR_ARG);
	assert_string_equal(ks_profile_origin_name(KS_KEY_ORIGIN_HOST), "host");
	assert_string_equal(ks_profile_lock_name(KS_LOCK_POLICY_FULL), "full");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_complete),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_san_limit_and_name),
		cmocka_unit_test(test_validate_missing),
		cmocka_unit_test(test_subject_escapes),
		cmocka_unit_test(test_expand),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
