/*
 * Unit tests: the signer — issuance for device- and host-generated keys,
 * exact certificate contents, chain verification (library and the openssl
 * command line tool), serial quality, quotas, key policy, throughput.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <spawn.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "host/lib/ca.h"
#include "host/lib/hostkey.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/signer.h"

extern char **environ;

static char tmp[256];
static char err[512];
static ks_signer_t *signer;
static ks_issued_t *out; /* big: keep it off the stack */

static const uint8_t test_uid[12] = { 0x00, 0x2a, 0x00, 0x3b, 0x51, 0x4b,
				      0x50, 0x11, 0x20, 0x36, 0x33, 0x35 };
#define TEST_UID_HEX "002a003b514b501120363335"

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

static void set(ks_profile_t *p, const char *k, const char *v)
{
	if (ks_profile_set(p, k, v, err, sizeof(err)) != KS_OK)
		fail_msg("%s=%s: %s", k, v, err);
}

static int setup(void **state)
{
	char d[300], cert[400], key[400], chain[400];
	ks_ca_t *ca = NULL;
	ks_profile_t p;

	(void)state;
	ks_log_set_level(KS_LOG_ERROR);
	out = calloc(1, sizeof(*out));
	snprintf(tmp, sizeof(tmp), "/tmp/kiln-test-signer-XXXXXX");
	if (out == NULL || mkdtemp(tmp) == NULL)
		return -1;
	snprintf(d, sizeof(d), "%s/ca", tmp);
	if (ks_ca_init_dev(d, "Acme", err, sizeof(err)) != KS_OK)
		return -1;
	snprintf(d, sizeof(d), "%s/other", tmp);
	if (ks_ca_init_dev(d, "Other", err, sizeof(err)) != KS_OK)
		return -1;
	snprintf(cert, sizeof(cert), "%s/ca/station-ca.pem", tmp);
	snprintf(key, sizeof(key), "%s/ca/station-ca.key", tmp);
	snprintf(chain, sizeof(chain), "%s/ca/chain.pem", tmp);
	if (ks_ca_load(cert, key, chain, &ca) != KS_OK)
		return -1;
	if (ks_signer_new(&ca, &signer) != KS_OK || ca != NULL)
		return -1;

	/* Device-generated keys, defaults otherwise. */
	if (ks_profile_init(&p, "dev", err, sizeof(err)) != KS_OK)
		return -1;
	set(&p, "subject", "CN=${serial},O=Acme,OU=Line 1");
	set(&p, "validity_days", "3650");
	set(&p, "key_origin", "device");
	set(&p, "lock", "full");
	if (ks_signer_add_profile(signer, &p) != KS_OK)
		return -1;
	if (ks_signer_add_profile(signer, &p) != KS_ERR_DUPLICATE)
		return -1;

	/* Host-generated keys with every optional field. */
	if (ks_profile_init(&p, "gw", err, sizeof(err)) != KS_OK)
		return -1;
	set(&p, "subject", "CN=${serial},serialNumber=${uid},OU=${lot},O=Acme\\, Inc.,C=DE");
	set(&p, "validity_days", "365");
	set(&p, "backdate_seconds", "600");
	set(&p, "key_origin", "host");
	set(&p, "lock", "identity");
	set(&p, "key_usage", "digitalSignature,keyAgreement");
	set(&p, "extended_key_usage", "clientAuth,serverAuth");
	set(&p, "san_dns", "${serial}.gw.example.com");
	set(&p, "san_uri", "https://example.com/devices/${uid}");
	/* the UID URN is always added by the signer: it must not appear twice */
	set(&p, "san_uri", "urn:kiln:uid:${uid}");
	if (ks_signer_add_profile(signer, &p) != KS_OK)
		return -1;

	/* A small quota per lot. */
	if (ks_profile_init(&p, "quota3", err, sizeof(err)) != KS_OK)
		return -1;
	set(&p, "subject", "CN=${serial}");
	set(&p, "validity_days", "30");
	set(&p, "key_origin", "device");
	set(&p, "lock", "none");
	set(&p, "lot_quota", "3");
	if (ks_signer_add_profile(signer, &p) != KS_OK)
		return -1;

	/* Names that can grow past the RFC 5280 bounds. */
	if (ks_profile_init(&p, "long", err, sizeof(err)) != KS_OK)
		return -1;
	set(&p, "subject", "CN=${serial}-${lot}");
	set(&p, "validity_days", "30");
	set(&p, "key_origin", "device");
	set(&p, "lock", "none");
	if (ks_signer_add_profile(signer, &p) != KS_OK)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char *const argv[] = { "rm", "-rf", tmp, NULL };

	(void)state;
	ks_signer_free(&signer);
	free(out);
	return run(argv) == 0 ? 0 : -1;
}

static void req_init(ks_issue_req_t *req, const char *profile,
		     const char *serial, const char *lot, uint32_t origin)
{
	memset(req, 0, sizeof(*req));
	snprintf(req->profile, sizeof(req->profile), "%s", profile);
	snprintf(req->serial, sizeof(req->serial), "%s", serial);
	snprintf(req->lot, sizeof(req->lot), "%s", lot);
	memcpy(req->uid, test_uid, sizeof(test_uid));
	req->uid_len = sizeof(test_uid);
	req->origin = origin;
}

static X509 *parse(const ks_issued_t *o)
{
	const unsigned char *p = o->der;
	X509 *x = d2i_X509(NULL, &p, o->der_len);

	assert_non_null(x);
	assert_ptr_equal(p, o->der + o->der_len);
	return x;
}

/* Verify with the openssl tool; returns its exit status. */
static int openssl_verify(const ks_issued_t *o, const char *ca_sub,
			  const char *purpose)
{
	char leaf[400], root[400], inter[400];
	X509 *x = parse(o);
	FILE *f;
	int rc;

	snprintf(leaf, sizeof(leaf), "%s/leaf.pem", tmp);
	snprintf(root, sizeof(root), "%s/%s/root.pem", tmp, ca_sub);
	snprintf(inter, sizeof(inter), "%s/%s/station-ca.pem", tmp, ca_sub);
	f = fopen(leaf, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	assert_int_equal(fclose(f), 0);
	X509_free(x);
	{
		char *const argv[] = { (char *)openssl_bin(), "verify",
				       "-x509_strict", "-purpose",
				       (char *)purpose, "-CAfile", root,
				       "-untrusted", inter, leaf, NULL };

		rc = run(argv);
	}
	unlink(leaf);
	return rc;
}

static void check_name(X509_NAME *n, const char *want)
{
	char buf[512];
	BIO *b = BIO_new(BIO_s_mem());
	int len;

	assert_non_null(b);
	assert_true(X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0);
	len = BIO_read(b, buf, sizeof(buf) - 1);
	assert_true(len > 0);
	buf[len] = '\0';
	BIO_free(b);
	if (strcmp(buf, want) != 0)
		fail_msg("name '%s', expected '%s'", buf, want);
}

static time_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
	return timegm(&tm);
}

/* Checks common to every issued certificate. */
static void check_common(X509 *x, const ks_issued_t *o, uint32_t ku,
			 int n_eku, int server)
{
	static const int order[] = { NID_basic_constraints, NID_key_usage,
				     NID_ext_key_usage, NID_subject_alt_name,
				     NID_subject_key_identifier,
				     NID_authority_key_identifier };
	const STACK_OF(X509) *chain = ks_signer_chain(signer);
	X509 *issuer = sk_X509_value(chain, 0);
	BASIC_CONSTRAINTS *bc;
	EXTENDED_KEY_USAGE *eku;
	ASN1_BIT_STRING *kus;
	const ASN1_OCTET_STRING *ski;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	uint8_t h[32];
	unsigned char *spki = NULL;
	BIGNUM *bn;
	char *hex;
	int i, crit = -1, len;

	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x),
				       X509_get_subject_name(issuer)), 0);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(issuer)), 1);

	/* Exactly these extensions, in this order, with this criticality. */
	assert_int_equal(X509_get_ext_count(x), 6);
	for (i = 0; i < 6; i++) {
		X509_EXTENSION *e = X509_get_ext(x, i);

		assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(e)),
				 order[i]);
		assert_int_equal(X509_EXTENSION_get_critical(e), i < 2);
	}
	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_int_equal(crit, 1);
	assert_false(bc->ca);
	assert_null(bc->pathlen);
	BASIC_CONSTRAINTS_free(bc);
	assert_int_equal(X509_check_ca(x), 0);

	kus = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	assert_non_null(kus);
	for (i = 0; i < 9; i++) {
		int want = (i == 0 && (ku & KS_KU_DIGITAL_SIGNATURE)) ||
			   (i == 1 && (ku & KS_KU_NON_REPUDIATION)) ||
			   (i == 4 && (ku & KS_KU_KEY_AGREEMENT));

		assert_int_equal(ASN1_BIT_STRING_get_bit(kus, i), want);
	}
	ASN1_BIT_STRING_free(kus);

	eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
	assert_non_null(eku);
	assert_int_equal(sk_ASN1_OBJECT_num(eku), n_eku);
	assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)),
			 NID_client_auth);
	if (server)
		assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 1)),
				 NID_server_auth);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);

	/* SKI = SHA-1 of the key bits; AKI = the issuer's SKI. */
	ski = X509_get0_subject_key_id(x);
	assert_non_null(ski);
	assert_int_equal(X509_pubkey_digest(x, EVP_sha1(), md, &mdlen), 1);
	assert_int_equal(ASN1_STRING_length(ski), (int)mdlen);
	assert_memory_equal(ASN1_STRING_get0_data(ski), md, mdlen);
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x),
					       X509_get0_subject_key_id(issuer)),
			 0);

	/* Serial: positive, 16 bytes, matches serial_hex. */
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	assert_non_null(bn);
	assert_false(BN_is_negative(bn));
	assert_true(BN_num_bits(bn) >= 64);
	assert_true(BN_num_bits(bn) <= 127);
	hex = BN_bn2hex(bn);
	assert_non_null(hex);
	assert_int_equal(strlen(o->serial_hex), 32);
	assert_int_equal(strcasecmp(hex, o->serial_hex), 0);
	OPENSSL_free(hex);
	BN_free(bn);

	/* Fingerprint = SHA-256 of the certificate's SPKI. */
	len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);
	assert_true(len > 0);
	assert_int_equal(EVP_Digest(spki, (size_t)len, h, NULL, EVP_sha256(),
				    NULL), 1);
	OPENSSL_free(spki);
	assert_memory_equal(h, o->spki_sha256, 32);

	assert_int_equal(asn1_time(X509_get0_notBefore(x)), o->not_before);
	assert_int_equal(asn1_time(X509_get0_notAfter(x)), o->not_after);

	/* And it verifies with the chain. */
	assert_int_equal(ks_ca_verify_cert(chain, x, 0, err, sizeof(err)),
			 KS_OK);
	assert_int_equal(ks_ca_verify_der(chain, o->der, o->der_len, 0, err,
					  sizeof(err)), KS_OK);
}

static void check_san(X509 *x, const char *const want[], int types[], int n)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
					       NULL);
	int i;

	assert_non_null(gens);
	assert_int_equal(sk_GENERAL_NAME_num(gens), n);
	for (i = 0; i < n; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		int type;
		ASN1_STRING *s = GENERAL_NAME_get0_value(g, &type);

		assert_int_equal(type, types[i]);
		assert_int_equal(ASN1_STRING_length(s), (int)strlen(want[i]));
		assert_memory_equal(ASN1_STRING_get0_data(s), want[i],
				    strlen(want[i]));
	}
	GENERAL_NAMES_free(gens);
}

static void test_issue_device_key(void **state)
{
	static const char *const san[] = { "urn:kiln:uid:" TEST_UID_HEX };
	int types[] = { GEN_URI };
	ks_issue_req_t req;
	EVP_PKEY *dev = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	uint8_t h[32];
	time_t now = time(NULL);
	X509 *x;

	(void)state;
	assert_non_null(dev);
	req_init(&req, "dev", "KLN-000001", "L1", KS_KEY_ORIGIN_DEVICE);
	assert_int_equal(ks_issue_req_set_pubkey(&req, dev), KS_OK);
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);
	x = parse(out);
	check_common(x, out, KS_KU_DIGITAL_SIGNATURE, 1, 0);
	check_name(X509_get_subject_name(x), "OU=Line 1,O=Acme,CN=KLN-000001");
	check_san(x, san, types, 1);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), dev), 1);
	assert_int_equal(ks_pubkey_spki_sha256(dev, h), KS_OK);
	assert_memory_equal(h, out->spki_sha256, 32);
	/* Validity: backdated 300 s; 3650 days asked, but a certificate
	 * never outlives its issuer (5 years): clamped to the CA's end. */
	assert_true(out->not_before <= now - 300 && out->not_before >= now - 302);
	assert_int_equal(out->not_after,
			 asn1_time(X509_get0_notAfter(sk_X509_value(
				 ks_signer_chain(signer), 0))));
	X509_free(x);

	assert_int_equal(openssl_verify(out, "ca", "sslclient"), 0);
	/* The tool must be able to say no: wrong CA, wrong purpose. */
	assert_int_not_equal(openssl_verify(out, "other", "sslclient"), 0);
	assert_int_not_equal(openssl_verify(out, "ca", "sslserver"), 0);
	EVP_PKEY_free(dev);
}

static void test_issue_host_key(void **state)
{
	static const char *const san[] = {
		"urn:kiln:uid:" TEST_UID_HEX,
		"https://example.com/devices/" TEST_UID_HEX,
		"KLN-000002.gw.example.com",
	};
	int types[] = { GEN_URI, GEN_URI, GEN_DNS };
	ks_issue_req_t req;
	EVP_PKEY *hk = NULL, *pub = NULL;
	uint8_t scalar[32], pt[65], zero[32] = { 0 };
	BIGNUM *d = NULL;
	uint8_t dbuf[32];
	time_t now = time(NULL);
	X509 *x;

	(void)state;
	assert_int_equal(ks_hostkey_generate(&hk), KS_OK);
	assert_int_equal(ks_hostkey_export_scalar(hk, scalar), KS_OK);
	assert_memory_not_equal(scalar, zero, 32);
	assert_int_equal(EVP_PKEY_get_bn_param(hk, OSSL_PKEY_PARAM_PRIV_KEY, &d),
			 1);
	assert_int_equal(BN_bn2binpad(d, dbuf, 32), 32);
	assert_memory_equal(dbuf, scalar, 32);
	BN_clear_free(d);
	OPENSSL_cleanse(scalar, sizeof(scalar));
	OPENSSL_cleanse(dbuf, sizeof(dbuf));
	assert_memory_equal(scalar, zero, 32);

	assert_int_equal(ks_hostkey_pubkey_point(hk, pt), KS_OK);
	assert_int_equal(pt[0], 0x04);
	assert_int_equal(ks_pubkey_from_point(pt, &pub), KS_OK);
	assert_int_equal(EVP_PKEY_eq(pub, hk), 1);

	req_init(&req, "gw", "KLN-000002", "LOT-7", KS_KEY_ORIGIN_HOST);
	assert_int_equal(ks_issue_req_set_point(&req, pt), KS_OK);
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);
	x = parse(out);
	check_common(x, out, KS_KU_DIGITAL_SIGNATURE | KS_KU_KEY_AGREEMENT, 2,
		     1);
	check_name(X509_get_subject_name(x),
		   "C=DE,O=Acme\\, Inc.,OU=LOT-7,serialNumber=" TEST_UID_HEX
		   ",CN=KLN-000002");
	check_san(x, san, types, 3);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), hk), 1);
	assert_true(out->not_before <= now - 600 && out->not_before >= now - 602);
	assert_true(out->not_after - now >= 365LL * 86400 - 2 &&
		    out->not_after - now <= 365LL * 86400);
	X509_free(x);
	assert_int_equal(openssl_verify(out, "ca", "sslclient"), 0);
	assert_int_equal(openssl_verify(out, "ca", "sslserver"), 0);

	/* The private key behind the certificate is the injected one. */
	{
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		unsigned char sig[80];
		size_t siglen = sizeof(sig);
		static const unsigned char msg[] = "challenge";

		assert_non_null(m);
		assert_int_equal(EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL,
						    hk), 1);
		assert_int_equal(EVP_DigestSign(m, sig, &siglen, msg,
						sizeof(msg)), 1);
		EVP_MD_CTX_free(m);
		x = parse(out);
		m = EVP_MD_CTX_new();
		assert_int_equal(EVP_DigestVerifyInit(m, NULL, EVP_sha256(),
						      NULL, X509_get0_pubkey(x)),
				 1);
		assert_int_equal(EVP_DigestVerify(m, sig, siglen, msg,
						  sizeof(msg)), 1);
		EVP_MD_CTX_free(m);
		X509_free(x);
	}
	EVP_PKEY_free(pub);
	ks_hostkey_free(&hk);
	assert_null(hk);
}

/* A device that sends its key compressed gets the canonical SPKI. */
static void test_compressed_key(void **state)
{
	EVP_PKEY *dev = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ks_issue_req_t req;
	uint8_t h[32];

	(void)state;
	assert_non_null(dev);
	assert_int_equal(EVP_PKEY_set_utf8_string_param(
				 dev, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
				 "compressed"), 1);
	req_init(&req, "dev", "KLN-000003", "L1", KS_KEY_ORIGIN_DEVICE);
	assert_int_equal(ks_issue_req_set_pubkey(&req, dev), KS_OK);
	assert_int_equal(req.spki_len, 59); /* 26 + 33-byte point */
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);
	assert_int_equal(ks_pubkey_spki_sha256(dev, h), KS_OK);
	assert_memory_equal(h, out->spki_sha256, 32);
	{
		X509 *x = parse(out);
		unsigned char *spki = NULL;

		assert_int_equal(i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki),
				 91);
		OPENSSL_free(spki);
		X509_free(x);
	}
	EVP_PKEY_free(dev);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

static void test_serials_unique(void **state)
{
	enum { N = 1000 };
	char(*serials)[KS_CERT_SERIAL_HEX_LEN + 1] = calloc(N, sizeof(*serials));
	uint8_t pt[65];
	EVP_PKEY *k = NULL;
	ks_issue_req_t req;
	int i;

	(void)state;
	assert_non_null(serials);
	assert_int_equal(ks_hostkey_generate(&k), KS_OK);
	assert_int_equal(ks_hostkey_pubkey_point(k, pt), KS_OK);
	req_init(&req, "dev", "KLN-SERIALS", "", KS_KEY_ORIGIN_DEVICE);
	assert_int_equal(ks_issue_req_set_point(&req, pt), KS_OK);
	for (i = 0; i < N; i++) {
		X509 *x;
		BIGNUM *bn;

		assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);
		memcpy(serials[i], out->serial_hex, sizeof(serials[i]));
		x = parse(out);
		bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
		assert_non_null(bn);
		assert_false(BN_is_negative(bn));
		assert_false(BN_is_zero(bn));
		assert_true(BN_num_bits(bn) >= 64);
		/* DER INTEGER: 16 content bytes, first one < 0x80. */
		assert_int_equal(ASN1_STRING_length(X509_get0_serialNumber(x)),
				 16);
		BN_free(bn);
		X509_free(x);
	}
	qsort(serials, N, sizeof(serials[0]), cmp_str);
	for (i = 1; i < N; i++)
		assert_string_not_equal(serials[i - 1], serials[i]);
	assert_int_equal(ks_signer_lot_issued(signer, ""), N);
	ks_hostkey_free(&k);
	free(serials);
	printf("1000 serials: unique, positive, 16 bytes (126 random bits)\n");
}

static void test_quota(void **state)
{
	ks_issue_req_t req;
	uint8_t pt[65];
	EVP_PKEY *k = NULL;
	int i;

	(void)state;
	assert_int_equal(ks_hostkey_generate(&k), KS_OK);
	assert_int_equal(ks_hostkey_pubkey_point(k, pt), KS_OK);
	req_init(&req, "quota3", "Q1", "LOT-Q", KS_KEY_ORIGIN_DEVICE);
	assert_int_equal(ks_issue_req_set_point(&req, pt), KS_OK);
	for (i = 0; i < 3; i++)
		assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_QUOTA);
	assert_int_equal(out->der_len, 0);
	assert_int_equal(ks_signer_lot_issued(signer, "LOT-Q"), 3);

	/* Another lot has its own count. */
	snprintf(req.lot, sizeof(req.lot), "LOT-R");
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);

	/* A per-lot override raises the cap. */
	assert_int_equal(ks_signer_set_lot_quota(signer, "LOT-Q", 5), KS_OK);
	snprintf(req.lot, sizeof(req.lot), "LOT-Q");
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_QUOTA);

	/* Counts seeded from the registry survive a restart. */
	assert_int_equal(ks_signer_set_lot_issued(signer, "LOT-S", 3), KS_OK);
	snprintf(req.lot, sizeof(req.lot), "LOT-S");
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_QUOTA);

	/* A refused request does not consume quota. */
	snprintf(req.lot, sizeof(req.lot), "LOT-T");
	req.spki_len = 10;
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_POLICY);
	assert_int_equal(ks_signer_lot_issued(signer, "LOT-T"), 0);
	ks_hostkey_free(&k);
}

static void expect_key_refused(EVP_PKEY *k, const char *what)
{
	ks_issue_req_t req;

	assert_non_null(k);
	req_init(&req, "dev", "KLN-X", "L1", KS_KEY_ORIGIN_DEVICE);
	assert_int_equal(ks_issue_req_set_pubkey(&req, k), KS_OK);
	if (ks_signer_issue(signer, &req, out) != KS_ERR_POLICY)
		fail_msg("%s key was not refused by policy", what);
	assert_int_equal(out->der_len, 0);
	EVP_PKEY_free(k);
}

static void test_key_policy(void **state)
{
	ks_issue_req_t req;
	uint8_t pt[65];
	EVP_PKEY *k = NULL;

	(void)state;
	expect_key_refused(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), "P-384");
	expect_key_refused(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"),
			   "secp256k1");
	expect_key_refused(EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), "Ed25519");
	expect_key_refused(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024),
			   "RSA");

	assert_int_equal(ks_hostkey_generate(&k), KS_OK);
	assert_int_equal(ks_hostkey_pubkey_point(k, pt), KS_OK);
	req_init(&req, "dev", "KLN-X", "L1", KS_KEY_ORIGIN_DEVICE);
	assert_int_equal(ks_issue_req_set_point(&req, pt), KS_OK);
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);

	/* Trailing bytes after the SPKI; a truncated SPKI. */
	req.spki[req.spki_len++] = 0;
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_POLICY);
	req.spki_len -= 2;
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_POLICY);
	req.spki_len = 0;
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_ARG);

	/* A point that is not on the curve; a compressed point tag. */
	pt[64] ^= 1;
	assert_int_equal(ks_issue_req_set_point(&req, pt), KS_ERR_VERIFY);
	pt[64] ^= 1;
	pt[0] = 0x02;
	assert_int_equal(ks_issue_req_set_point(&req, pt), KS_ERR_VERIFY);

	/* Key origin must match the profile. */
	pt[0] = 0x04;
	req_init(&req, "dev", "KLN-X", "L1", KS_KEY_ORIGIN_HOST);
	assert_int_equal(ks_issue_req_set_point(&req, pt), KS_OK);
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_POLICY);
	ks_hostkey_free(&k);
}

static void test_request_checks(void **state)
{
	ks_issue_req_t req, good;
	uint8_t pt[65];
	EVP_PKEY *k = NULL;

	(void)state;
	assert_int_equal(ks_hostkey_generate(&k), KS_OK);
	assert_int_equal(ks_hostkey_pubkey_point(k, pt), KS_OK);
	req_init(&good, "dev", "KLN-OK", "L1", KS_KEY_ORIGIN_DEVICE);
	assert_int_equal(ks_issue_req_set_point(&good, pt), KS_OK);

	req = good;
	snprintf(req.profile, sizeof(req.profile), "nope");
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_NOTFOUND);
	/* Only [A-Za-z0-9._-] reaches a template: no RDN injection. */
	req = good;
	snprintf(req.serial, sizeof(req.serial), "X,O=Evil");
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_ARG);
	req = good;
	snprintf(req.serial, sizeof(req.serial), "a b");
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_ARG);
	req = good;
	req.serial[0] = '\0';
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_ARG);
	req = good;
	memset(req.serial, 'A', sizeof(req.serial)); /* no NUL */
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_ARG);
	req = good;
	snprintf(req.lot, sizeof(req.lot), "l/1");
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_ARG);
	req = good;
	req.uid_len = 3;
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_ARG);
	req.uid_len = 33;
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_ARG);

	/* A CN that expands beyond 64 characters is refused by policy. */
	req = good;
	snprintf(req.profile, sizeof(req.profile), "long");
	memset(req.serial, 'A', 40);
	req.serial[40] = '\0';
	memset(req.lot, 'B', 24);
	req.lot[24] = '\0'; /* 40 + 1 + 24 = 65 */
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_POLICY);
	req.lot[23] = '\0'; /* 64: fits */
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_OK);
	/* "gw" puts ${lot} in OU: an empty lot cannot fill it. */
	req = good;
	snprintf(req.profile, sizeof(req.profile), "gw");
	req.origin = KS_KEY_ORIGIN_HOST;
	req.lot[0] = '\0';
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_POLICY);
	/* "gw" puts ${serial} in a DNS name: '_' is not allowed there. */
	snprintf(req.lot, sizeof(req.lot), "L1");
	snprintf(req.serial, sizeof(req.serial), "KLN_1");
	assert_int_equal(ks_signer_issue(signer, &req, out), KS_ERR_POLICY);
	ks_hostkey_free(&k);
}

static void test_chain_der(void **state)
{
	const uint8_t *der;
	size_t len, i;
	const STACK_OF(X509) *chain = ks_signer_chain(signer);

	(void)state;
	assert_int_equal(ks_signer_chain_len(signer), 2);
	for (i = 0; i < 2; i++) {
		const unsigned char *p;
		X509 *x;

		assert_int_equal(ks_signer_chain_der(signer, i, &der, &len),
				 KS_OK);
		p = der;
		x = d2i_X509(NULL, &p, (long)len);
		assert_non_null(x);
		assert_int_equal(X509_cmp(x, sk_X509_value(chain, (int)i)), 0);
		X509_free(x);
	}
	assert_int_equal(ks_signer_chain_der(signer, 2, &der, &len),
			 KS_ERR_ARG);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void test_throughput(void **state)
{
	enum { RUNS = 3, N = 500 };
	double rate[RUNS];
	ks_issue_req_t req;
	uint8_t pt[65];
	EVP_PKEY *k = NULL;
	int r, i;

	(void)state;
	assert_int_equal(ks_hostkey_generate(&k), KS_OK);
	assert_int_equal(ks_hostkey_pubkey_point(k, pt), KS_OK);
	req_init(&req, "gw", "KLN-BENCH", "BENCH", KS_KEY_ORIGIN_HOST);
	assert_int_equal(ks_issue_req_set_point(&req, pt), KS_OK);
	for (r = 0; r < RUNS; r++) {
		struct timespec a, b;
		double s;

		clock_gettime(CLOCK_MONOTONIC, &a);
		for (i = 0; i < N; i++)
			assert_int_equal(ks_signer_issue(signer, &req, out),
					 KS_OK);
		clock_gettime(CLOCK_MONOTONIC, &b);
		s = (double)(b.tv_sec - a.tv_sec) +
		    (double)(b.tv_nsec - a.tv_nsec) / 1e9;
		rate[r] = N / s;
	}
	qsort(rate, RUNS, sizeof(rate[0]), cmp_double);
	printf("issuance throughput: %.0f certificates/s (median of %d runs of %d; %.0f..%.0f)\n",
	       rate[RUNS / 2], RUNS, N, rate[0], rate[RUNS - 1]);
	ks_hostkey_free(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_issue_device_key),
		cmocka_unit_test(test_issue_host_key),
		cmocka_unit_test(test_compressed_key),
		cmocka_unit_test(test_serials_unique),
		cmocka_unit_test(test_quota),
		cmocka_unit_test(test_key_policy),
		cmocka_unit_test(test_request_checks),
		cmocka_unit_test(test_chain_der),
		cmocka_unit_test(test_throughput),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
