/*
 * Unit tests: development CA creation and CA loading.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <spawn.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "host/lib/ca.h"
#include "host/lib/hostkey.h"
#include "host/lib/signer.h"

extern char **environ;

static char tmp[256];
static char err[512];

static void path_of(char *out, size_t n, const char *sub, const char *file)
{
	snprintf(out, n, "%s/%s/%s", tmp, sub, file);
}

/* Run argv (stdout/stderr discarded); returns the exit status or -1. */
static int run(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st = 0, rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", 1, 0);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -1;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static const char *openssl_bin(void)
{
	const char *p = getenv("KILN_OPENSSL");

	return p != NULL && *p != '\0' ? p : "openssl";
}

static X509 *read_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/kiln-test-ca-XXXXXX");
	if (mkdtemp(tmp) == NULL)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char *const argv[] = { "rm", "-rf", tmp, NULL };

	(void)state;
	return run(argv) == 0 ? 0 : -1;
}

static time_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
	return timegm(&tm);
}

static void check_ca_cert(X509 *x, int pathlen, double years)
{
	BASIC_CONSTRAINTS *bc;
	int crit = -1;
	double life;

	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_int_equal(crit, 1);
	assert_true(bc->ca);
	if (pathlen < 0)
		assert_null(bc->pathlen);
	else
		assert_int_equal(ASN1_INTEGER_get(bc->pathlen), pathlen);
	BASIC_CONSTRAINTS_free(bc);
	assert_int_equal(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_int_equal(X509_get_ext_by_NID(x, NID_key_usage, -1) >= 0, 1);
	assert_int_equal(
		X509_EXTENSION_get_critical(X509_get_ext(
			x, X509_get_ext_by_NID(x, NID_key_usage, -1))), 1);
	assert_non_null(X509_get0_subject_key_id(x));
	assert_non_null(X509_get0_authority_key_id(x));
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	assert_true(EVP_PKEY_is_a(X509_get0_pubkey(x), "EC"));
	life = (double)(asn1_time(X509_get0_notAfter(x)) -
			asn1_time(X509_get0_notBefore(x))) / (365.25 * 86400);
	assert_true(life > years - 0.1 && life < years + 0.1);
}

static void test_init_dev(void **state)
{
	static const char *const files[] = { "root.pem",  "station-ca.pem",
					     "station-ca.key", "chain.pem",
					     "station.key", "station.pub" };
	static const unsigned modes[] = { 0644, 0644, 0600, 0644, 0600, 0644 };
	char p[512], p2[512], dir[512];
	X509 *root, *ca;
	struct stat st;
	size_t i;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/a", tmp);
	assert_int_equal(ks_ca_init_dev(dir, "Acme Test", err, sizeof(err)),
			 KS_OK);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	for (i = 0; i < 6; i++) {
		path_of(p, sizeof(p), "a", files[i]);
		assert_int_equal(stat(p, &st), 0);
		if ((st.st_mode & 0777) != modes[i])
			fail_msg("%s has mode %o", files[i],
				 (unsigned)(st.st_mode & 0777));
	}

	path_of(p, sizeof(p), "a", "root.pem");
	root = read_cert(p);
	path_of(p, sizeof(p), "a", "station-ca.pem");
	ca = read_cert(p);
	assert_int_equal(X509_self_signed(root, 1), 1);
	assert_int_equal(X509_self_signed(ca, 0), 0);
	assert_int_equal(X509_check_issued(root, ca), X509_V_OK);
	check_ca_cert(root, -1, 10);
	check_ca_cert(ca, 0, 5);
	X509_free(root);
	X509_free(ca);

	/* The intermediate verifies with the openssl tool, too. */
	path_of(p, sizeof(p), "a", "root.pem");
	path_of(p2, sizeof(p2), "a", "station-ca.pem");
	{
		char *const argv[] = { (char *)openssl_bin(), "verify",
				       "-x509_strict", "-CAfile", p, p2, NULL };

		assert_int_equal(run(argv), 0);
	}

	/* Refuses to overwrite, and leaves the existing key alone. */
	assert_int_equal(ks_ca_init_dev(dir, "Acme Test", err, sizeof(err)),
			 KS_ERR_DUPLICATE);
	assert_non_null(strstr(err, "exists"));

	/* One stray file is enough to refuse; nothing else gets created. */
	snprintf(dir, sizeof(dir), "%s/b", tmp);
	assert_int_equal(mkdir(dir, 0700), 0);
	path_of(p, sizeof(p), "b", "station.pub");
	{
		FILE *f = fopen(p, "w");

		assert_non_null(f);
		fclose(f);
	}
	assert_int_equal(ks_ca_init_dev(dir, "Acme Test", err, sizeof(err)),
			 KS_ERR_DUPLICATE);
	path_of(p, sizeof(p), "b", "station-ca.key");
	assert_int_not_equal(stat(p, &st), 0);

	/* Bad organisation names. */
	snprintf(dir, sizeof(dir), "%s/c", tmp);
	assert_int_equal(ks_ca_init_dev(dir, "", err, sizeof(err)), KS_ERR_ARG);
	assert_int_equal(ks_ca_init_dev(dir, "Acme\nEvil", err, sizeof(err)),
			 KS_ERR_ARG);
}

static void test_audit_keypair(void **state)
{
	char p[512];
	FILE *f;
	EVP_PKEY *priv, *pub;
	uint8_t a[65], b[65];

	(void)state;
	path_of(p, sizeof(p), "a", "station.key");
	f = fopen(p, "r");
	assert_non_null(f);
	priv = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	path_of(p, sizeof(p), "a", "station.pub");
	f = fopen(p, "r");
	assert_non_null(f);
	pub = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(priv);
	assert_non_null(pub);
	assert_int_equal(ks_pubkey_point(priv, a), KS_OK);
	assert_int_equal(ks_pubkey_point(pub, b), KS_OK);
	assert_memory_equal(a, b, 65);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
}

static void test_load(void **state)
{
	char cert[512], key[512], chain[512], uri[600];
	ks_ca_t *ca = NULL;
	const STACK_OF(X509) *sk;

	(void)state;
	path_of(cert, sizeof(cert), "a", "station-ca.pem");
	path_of(key, sizeof(key), "a", "station-ca.key");
	path_of(chain, sizeof(chain), "a", "chain.pem");
	assert_int_equal(ks_ca_load(cert, key, chain, &ca), KS_OK);
	sk = ks_ca_chain(ca);
	assert_int_equal(sk_X509_num(sk), 2);
	assert_int_equal(X509_self_signed(sk_X509_value(sk, 1), 1), 1);
	ks_ca_free(&ca);
	assert_null(ca);
	ks_ca_free(&ca); /* accepts NULL */

	/* The key may be named by an OSSL_STORE URI. */
	snprintf(uri, sizeof(uri), "file:%s", key);
	assert_int_equal(ks_ca_load(cert, uri, chain, &ca), KS_OK);
	ks_ca_free(&ca);

	/* chain.pem alone also works (intermediate first, then root). */
	assert_int_equal(ks_ca_load(chain, key, NULL, &ca), KS_OK);
	assert_int_equal(sk_X509_num(ks_ca_chain(ca)), 2);
	ks_ca_free(&ca);
}

static void test_load_refusals(void **state)
{
	char cert[512], key[512], chain[512], other[512], p[512];
	ks_ca_t *ca = NULL;

	(void)state;
	path_of(cert, sizeof(cert), "a", "station-ca.pem");
	path_of(key, sizeof(key), "a", "station-ca.key");
	path_of(chain, sizeof(chain), "a", "chain.pem");

	/* A key that does not match the certificate. */
	path_of(p, sizeof(p), "a", "station.key");
	assert_int_equal(ks_ca_load(cert, p, chain, &ca), KS_ERR_VERIFY);
	assert_null(ca);

	/* Without a chain the intermediate has no trust anchor. */
	assert_int_equal(ks_ca_load(cert, key, NULL, &ca), KS_ERR_VERIFY);

	/* A chain of another CA. */
	snprintf(p, sizeof(p), "%s/o", tmp);
	assert_int_equal(ks_ca_init_dev(p, "Other Co", err, sizeof(err)),
			 KS_OK);
	path_of(other, sizeof(other), "o", "chain.pem");
	assert_int_equal(ks_ca_load(cert, key, other, &ca), KS_ERR_VERIFY);
	path_of(other, sizeof(other), "o", "root.pem");
	assert_int_equal(ks_ca_load(cert, key, other, &ca), KS_ERR_VERIFY);

	/* Missing files. */
	path_of(p, sizeof(p), "a", "nope.pem");
	assert_int_not_equal(ks_ca_load(p, key, chain, &ca), KS_OK);
	assert_int_not_equal(ks_ca_load(cert, p, chain, &ca), KS_OK);
	assert_int_not_equal(ks_ca_load(cert, cert, chain, &ca), KS_OK);
	assert_null(ca);
}

/* A leaf certificate with its key is refused as an issuing CA. */
static void test_load_not_ca(void **state)
{
	char cert[512], key[512], chain[512], leafp[512], leafk[512];
	ks_ca_t *ca = NULL;
	ks_signer_t *s = NULL;
	ks_profile_t prof;
	ks_issue_req_t req;
	ks_issued_t *out = calloc(1, sizeof(*out));
	EVP_PKEY *hk = NULL;
	const unsigned char *dp;
	X509 *leaf;
	FILE *f;

	(void)state;
	assert_non_null(out);
	path_of(cert, sizeof(cert), "a", "station-ca.pem");
	path_of(key, sizeof(key), "a", "station-ca.key");
	path_of(chain, sizeof(chain), "a", "chain.pem");
	assert_int_equal(ks_ca_load(cert, key, chain, &ca), KS_OK);
	assert_int_equal(ks_signer_new(&ca, &s), KS_OK);
	assert_null(ca);
	assert_int_equal(ks_profile_init(&prof, "p", err, sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(&prof, "subject", "CN=${serial}", err,
					sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(&prof, "validity_days", "30", err,
					sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(&prof, "key_origin", "host", err,
					sizeof(err)), KS_OK);
	assert_int_equal(ks_profile_set(&prof, "lock", "none", err,
					sizeof(err)), KS_OK);
	assert_int_equal(ks_signer_add_profile(s, &prof), KS_OK);
	memset(&req, 0, sizeof(req));
	snprintf(req.profile, sizeof(req.profile), "p");
	snprintf(req.serial, sizeof(req.serial), "S1");
	req.uid_len = 8;
	req.origin = KS_KEY_ORIGIN_HOST;
	assert_int_equal(ks_hostkey_generate(&hk), KS_OK);
	assert_int_equal(ks_issue_req_set_pubkey(&req, hk), KS_OK);
	assert_int_equal(ks_signer_issue(s, &req, out), KS_OK);
	dp = out->der;
	leaf = d2i_X509(NULL, &dp, out->der_len);
	assert_non_null(leaf);

	snprintf(leafp, sizeof(leafp), "%s/leaf.pem", tmp);
	snprintf(leafk, sizeof(leafk), "%s/leaf.key", tmp);
	f = fopen(leafp, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, leaf), 1);
	fclose(f);
	f = fopen(leafk, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, hk, NULL, NULL, 0, NULL, NULL),
			 1);
	fclose(f);
	assert_int_equal(ks_ca_load(leafp, leafk, chain, &ca), KS_ERR_POLICY);
	assert_null(ca);

	X509_free(leaf);
	ks_hostkey_free(&hk);
	ks_signer_free(&s);
	free(out);
}

static void test_verify_helpers(void **state)
{
	char p[512];
	STACK_OF(X509) *chain = NULL, *other = NULL;
	X509_STORE *st = NULL;
	X509 *ca;
	char why[128];

	(void)state;
	path_of(p, sizeof(p), "a", "chain.pem");
	assert_int_equal(ks_ca_chain_load(p, &chain), KS_OK);
	assert_int_equal(sk_X509_num(chain), 2);
	assert_int_equal(ks_ca_store_new(chain, &st), KS_OK);
	X509_STORE_free(st);
	path_of(p, sizeof(p), "o", "chain.pem");
	assert_int_equal(ks_ca_chain_load(p, &other), KS_OK);
	ca = sk_X509_value(chain, 0);
	assert_int_equal(ks_ca_verify_cert(chain, ca, 0, why, sizeof(why)),
			 KS_OK);
	assert_int_equal(ks_ca_verify_cert(other, ca, 0, why, sizeof(why)),
			 KS_ERR_VERIFY);
	assert_true(strlen(why) > 0);
	/* Before the CA existed, it does not verify either. */
	assert_int_equal(ks_ca_verify_cert(chain, ca, 946684800, why,
					   sizeof(why)), KS_ERR_VERIFY);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(other, X509_free);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_dev),
		cmocka_unit_test(test_audit_keypair),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_load_refusals),
		cmocka_unit_test(test_load_not_ca),
		cmocka_unit_test(test_verify_helpers),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
