/*
 * The station CA key in a real PKCS#11 token (SoftHSM2): generated inside
 * the token by `kiln ca init --pkcs11`'s library call, never readable
 * (checked through this test's own PKCS#11 calls, not kiln's), used by the
 * signer to issue certificates that `openssl verify` accepts; wrong PIN,
 * missing key and a key that does not match the certificate are refused.
 * Measures signing throughput in the token against a PEM key.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "host/lib/ca.h"
#include "host/lib/hostkey.h"
#include "host/lib/p11.h"
#include "host/lib/signer.h"
#include "tests/integration/softhsm.h"

static int passed, failed;
static char tmp[256];
static th_softhsm_t hsm;

static bool check(bool ok, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool check(bool ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", ok ? "PASS" : "FAIL");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (ok)
		passed++;
	else
		failed++;
	return ok;
}

static void path_of(char *out, size_t len, const char *a, const char *b)
{
	snprintf(out, len, "%s/%s/%s", tmp, a, b);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- an independent look into the token (own PKCS#11 calls) ---------- */

typedef struct {
	bool found;
	CK_BBOOL sensitive, extractable, always_sensitive, never_extractable;
	CK_RV value_rv; /* C_GetAttributeValue(CKA_VALUE) */
} key_facts_t;

static key_facts_t inspect_key(const char *label)
{
	key_facts_t kf;
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST_PTR fl = NULL;
	CK_SLOT_ID slots[8];
	CK_ULONG ns = 8, n = 0;
	CK_SESSION_HANDLE s;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE find[2] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE h;
	CK_BYTE value[256];
	CK_ATTRIBUTE a[4], v = { CKA_VALUE, value, sizeof(value) };
	CK_TOKEN_INFO ti;
	void *dl;

	memset(&kf, 0, sizeof(kf));
	kf.value_rv = CKR_OK;
	dl = dlopen(hsm.module, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL)
		return kf;
	*(void **)&gfl = dlsym(dl, "C_GetFunctionList");
	if (gfl == NULL || gfl(&fl) != CKR_OK || fl->C_Initialize(NULL) != CKR_OK)
		goto out;
	if (fl->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK)
		goto fin;
	for (CK_ULONG i = 0; i < ns; i++) {
		if (fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    memcmp(ti.label, TH_TOKEN, strlen(TH_TOKEN)) != 0)
			continue;
		if (fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL,
				      &s) != CKR_OK)
			continue;
		(void)fl->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)TH_PIN,
				  strlen(TH_PIN));
		if (fl->C_FindObjectsInit(s, find, 2) == CKR_OK &&
		    fl->C_FindObjects(s, &h, 1, &n) == CKR_OK && n == 1) {
			a[0] = (CK_ATTRIBUTE){ CKA_SENSITIVE, &kf.sensitive, 1 };
			a[1] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &kf.extractable, 1 };
			a[2] = (CK_ATTRIBUTE){ CKA_ALWAYS_SENSITIVE,
					       &kf.always_sensitive, 1 };
			a[3] = (CK_ATTRIBUTE){ CKA_NEVER_EXTRACTABLE,
					       &kf.never_extractable, 1 };
			kf.found = fl->C_GetAttributeValue(s, h, a, 4) == CKR_OK;
			kf.value_rv = fl->C_GetAttributeValue(s, h, &v, 1);
		}
		(void)fl->C_FindObjectsFinal(s);
		(void)fl->C_Logout(s);
		(void)fl->C_CloseSession(s);
	}
fin:
	(void)fl->C_Finalize(NULL);
out:
	dlclose(dl);
	return kf;
}

/* ---- helpers ----------------------------------------------------------- */

static int make_profile(ks_signer_t *s)
{
	ks_profile_t p;
	char err[256];

	if (ks_profile_init(&p, "widget", err, sizeof(err)) != KS_OK ||
	    ks_profile_set(&p, "subject", "CN=${serial},O=kiln test", err,
			   sizeof(err)) != KS_OK ||
	    ks_profile_set(&p, "validity_days", "365", err, sizeof(err)) != KS_OK ||
	    ks_profile_set(&p, "key_origin", "host", err, sizeof(err)) != KS_OK ||
	    ks_profile_set(&p, "lock", "none", err, sizeof(err)) != KS_OK)
		return -1;
	return ks_signer_add_profile(s, &p) == KS_OK ? 0 : -1;
}

static void fill_req(ks_issue_req_t *req, EVP_PKEY *k, unsigned n)
{
	memset(req, 0, sizeof(*req));
	snprintf(req->profile, sizeof(req->profile), "widget");
	snprintf(req->serial, sizeof(req->serial), "W-%06u", n);
	snprintf(req->lot, sizeof(req->lot), "LOT-1");
	req->uid_len = 8;
	memcpy(req->uid, &n, sizeof(n));
	req->origin = KS_KEY_ORIGIN_HOST;
	if (ks_issue_req_set_pubkey(req, k) != KS_OK)
		req->spki_len = 0;
}

/* openssl verify -CAfile root -untrusted station-ca leaf; 0 when OK. */
static int openssl_verify(const char *dir, const uint8_t *der, size_t len)
{
	char leaf[PATH_MAX + 32], cmd[4 * PATH_MAX];
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	FILE *fp;
	int rc;

	snprintf(leaf, sizeof(leaf), "%s/leaf.pem", dir);
	fp = fopen(leaf, "w");
	if (x == NULL || fp == NULL || PEM_write_X509(fp, x) != 1) {
		if (fp != NULL)
			fclose(fp);
		X509_free(x);
		return -1;
	}
	fclose(fp);
	X509_free(x);
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -x509_strict -CAfile %s/root.pem -untrusted %s/station-ca.pem %s >/dev/null 2>&1",
		 dir, dir, leaf);
	rc = system(cmd);
	return rc;
}

/* Issue n certificates; returns the elapsed seconds or -1. */
static double issue_many(ks_signer_t *s, unsigned n)
{
	ks_issue_req_t req;
	ks_issued_t *out = calloc(1, sizeof(*out));
	EVP_PKEY *k = NULL;
	double t0;
	unsigned i;

	if (out == NULL || ks_hostkey_generate(&k) != KS_OK)
		return -1;
	fill_req(&req, k, 0);
	t0 = now_s();
	for (i = 0; i < n; i++) {
		snprintf(req.serial, sizeof(req.serial), "B-%06u", i);
		if (ks_signer_issue(s, &req, out) != KS_OK)
			break;
	}
	t0 = i == n ? now_s() - t0 : -1;
	EVP_PKEY_free(k);
	free(out);
	return t0;
}

/* ---- the scenarios ----------------------------------------------------- */

static void test_keygen_in_token(void)
{
	char dir[PATH_MAX], uri[PATH_MAX * 2], err[512], path[PATH_MAX + 64];
	key_facts_t kf;
	struct stat st;

	err[0] = '\0'; /* printed below; untouched on success (valgrind) */
	snprintf(dir, sizeof(dir), "%s/ca", tmp);
	th_softhsm_uri(&hsm, "station-ca", uri, sizeof(uri));
	check(ks_ca_init_dev_pkcs11(dir, "kiln hsm test", uri, hsm.module, err,
				    sizeof(err)) == KS_OK,
	      "ca init --pkcs11 creates the station CA key in the token: %s",
	      err);
	path_of(path, sizeof(path), "ca", KS_CA_FILE_KEY);
	check(stat(path, &st) != 0, "no %s is written", KS_CA_FILE_KEY);
	snprintf(dir, sizeof(dir), "%s/ca-again", tmp);
	check(ks_ca_init_dev_pkcs11(dir, "kiln hsm test", uri, hsm.module, err,
				    sizeof(err)) == KS_ERR_DUPLICATE,
	      "a second init with the same URI is refused: %s", err);

	kf = inspect_key("station-ca");
	check(kf.found, "the private key object is in the token");
	check(kf.sensitive == CK_TRUE && kf.always_sensitive == CK_TRUE,
	      "CKA_SENSITIVE and CKA_ALWAYS_SENSITIVE are TRUE");
	check(kf.extractable == CK_FALSE && kf.never_extractable == CK_TRUE,
	      "CKA_EXTRACTABLE FALSE, CKA_NEVER_EXTRACTABLE TRUE (generated inside)");
	check(kf.value_rv == CKR_ATTRIBUTE_SENSITIVE,
	      "reading CKA_VALUE is refused (rv 0x%lx, CKR_ATTRIBUTE_SENSITIVE)",
	      (unsigned long)kf.value_rv);
}

static void test_load_refusals(void)
{
	char cert[PATH_MAX], chain[PATH_MAX], uri[PATH_MAX * 2], err[512];
	ks_ca_t *ca = NULL;
	EVP_PKEY *pub = NULL;
	ks_err_t r;

	path_of(cert, sizeof(cert), "ca", KS_CA_FILE_CERT);
	path_of(chain, sizeof(chain), "ca", KS_CA_FILE_CHAIN);
	th_softhsm_uri(&hsm, "station-ca", uri, sizeof(uri));
	r = ks_ca_load_ex(cert, uri, chain, hsm.module, &ca);
	check(r == KS_OK && ks_ca_key_in_token(ca), "the token CA loads");
	if (ca != NULL) {
		ks_p11_key_t *k = NULL;
		int sens = 0, extr = 1, readable = 1;

		/* kiln's own view agrees with the independent one */
		if (ks_p11_key_open(uri, hsm.module, &k, err, sizeof(err)) ==
			    KS_OK &&
		    ks_p11_key_attrs(k, &sens, &extr, &readable) == KS_OK)
			check(sens && !extr && !readable,
			      "ks_p11_key_attrs: sensitive, not extractable, value unreadable");
		else
			check(false, "ks_p11_key_attrs: %s", err);
		ks_p11_key_free(&k);
	}
	ks_ca_free(&ca);

	snprintf(uri, sizeof(uri),
		 "pkcs11:token=%s;object=station-ca?pin-value=0000", TH_TOKEN);
	r = ks_ca_load_ex(cert, uri, chain, hsm.module, &ca);
	check(r == KS_ERR_VERIFY && ca == NULL, "a wrong PIN is refused (%s)",
	      ks_strerror((int)r));
	th_softhsm_uri(&hsm, "no-such-key", uri, sizeof(uri));
	r = ks_ca_load_ex(cert, uri, chain, hsm.module, &ca);
	check(r == KS_ERR_NOTFOUND, "a missing key is refused (%s)",
	      ks_strerror((int)r));
	snprintf(uri, sizeof(uri),
		 "pkcs11:token=nosuchtoken;object=station-ca?pin-source=file:%s",
		 hsm.pin_file);
	r = ks_ca_load_ex(cert, uri, chain, hsm.module, &ca);
	check(r == KS_ERR_NOTFOUND, "a missing token is refused (%s)",
	      ks_strerror((int)r));
	th_softhsm_uri(&hsm, "other", uri, sizeof(uri));
	check(ks_p11_keygen(uri, hsm.module, &pub, err, sizeof(err)) == KS_OK,
	      "a second token key 'other' is generated");
	EVP_PKEY_free(pub);
	r = ks_ca_load_ex(cert, uri, chain, hsm.module, &ca);
	check(r == KS_ERR_VERIFY,
	      "a token key that does not match the certificate is refused (%s)",
	      ks_strerror((int)r));
	check(ks_ca_load_ex(cert, "pkcs11:token=kiln;object=x?module-path=/nonexistent.so",
			    chain, NULL, &ca) == KS_ERR_IO,
	      "an unloadable module is refused");
}

static void test_issue_and_bench(void)
{
	char cert[PATH_MAX], chain[PATH_MAX], uri[PATH_MAX * 2], dir[PATH_MAX];
	char pemcert[PATH_MAX], pemkey[PATH_MAX], pemchain[PATH_MAX], err[512];
	ks_ca_t *ca = NULL;
	ks_signer_t *s = NULL, *sp = NULL;
	ks_issue_req_t req;
	ks_issued_t *out = calloc(1, sizeof(*out));
	EVP_PKEY *k = NULL;
	double t_tok, t_pem;
	const unsigned n = 300;

	path_of(cert, sizeof(cert), "ca", KS_CA_FILE_CERT);
	path_of(chain, sizeof(chain), "ca", KS_CA_FILE_CHAIN);
	th_softhsm_uri(&hsm, "station-ca", uri, sizeof(uri));
	if (!check(out != NULL &&
			   ks_ca_load_ex(cert, uri, chain, hsm.module, &ca) ==
				   KS_OK &&
			   ks_signer_new(&ca, &s) == KS_OK && make_profile(s) == 0,
		   "signer over the token CA"))
		goto out;
	if (ks_hostkey_generate(&k) != KS_OK)
		goto out;
	fill_req(&req, k, 1);
	check(ks_signer_issue(s, &req, out) == KS_OK,
	      "the token-backed signer issues a certificate");
	snprintf(dir, sizeof(dir), "%s/ca", tmp);
	check(openssl_verify(dir, out->der, out->der_len) == 0,
	      "openssl verify accepts the certificate signed in the token");
	check(ks_ca_verify_der(ks_signer_chain(s), out->der, out->der_len, 0,
			       err, sizeof(err)) == KS_OK,
	      "ks_ca_verify_der accepts it");
	/* the test can fail: a flipped signature bit is caught */
	out->der[out->der_len - 5] ^= 0x01;
	check(openssl_verify(dir, out->der, out->der_len) != 0,
	      "a certificate with a damaged signature is rejected by openssl verify");

	snprintf(dir, sizeof(dir), "%s/pem", tmp);
	path_of(pemcert, sizeof(pemcert), "pem", KS_CA_FILE_CERT);
	path_of(pemkey, sizeof(pemkey), "pem", KS_CA_FILE_KEY);
	path_of(pemchain, sizeof(pemchain), "pem", KS_CA_FILE_CHAIN);
	if (!check(ks_ca_init_dev(dir, "kiln pem test", err, sizeof(err)) == KS_OK &&
			   ks_ca_load(pemcert, pemkey, pemchain, &ca) == KS_OK &&
			   ks_signer_new(&ca, &sp) == KS_OK && make_profile(sp) == 0,
		   "signer over a PEM CA"))
		goto out;
	t_tok = issue_many(s, n);
	t_pem = issue_many(sp, n);
	check(t_tok > 0 && t_pem > 0, "%u certificates each way", n);
	if (t_tok > 0 && t_pem > 0)
		printf("BENCH issue: token (SoftHSM2) %.0f certs/s (%.3f ms/cert), "
		       "PEM key %.0f certs/s (%.3f ms/cert)\n",
		       n / t_tok, 1000.0 * t_tok / n, n / t_pem,
		       1000.0 * t_pem / n);
out:
	EVP_PKEY_free(k);
	ks_signer_free(&s);
	ks_signer_free(&sp);
	ks_ca_free(&ca);
	free(out);
}

int main(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(tmp, sizeof(tmp), "/tmp/kiln-p11-XXXXXX");
	if (mkdtemp(tmp) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	if (th_softhsm_init(&hsm, tmp) != 0) {
		printf("0 passed, 1 failed\n");
		return 1;
	}
	test_keygen_in_token();
	test_load_refusals();
	test_issue_and_bench();
	if (getenv("KT_KEEP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmp);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
