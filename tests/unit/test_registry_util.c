/*
 * Test support for the registry and audit tests (see the header).
 */
#include "tests/unit/test_registry_util.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "host/lib/audit.h"
#include "host/lib/err.h"

static void die(const char *what)
{
	fprintf(stderr, "test_registry_util: %s failed\n", what);
	abort();
}

char *tr_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p;

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	if (asprintf(&p, "%s/kiln-reg-XXXXXX", base) < 0)
		die("asprintf");
	if (mkdtemp(p) == NULL)
		die("mkdtemp");
	return p;
}

void tr_rmdir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char *p;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		p = tr_path(dir, e->d_name);
		unlink(p);
		free(p);
	}
	closedir(d);
	rmdir(dir);
}

char *tr_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		die("asprintf");
	return p;
}

EVP_PKEY *tr_p256(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	if (k == NULL)
		die("EVP_EC_gen");
	return k;
}

static X509 *make_cert(EVP_PKEY *pub, const char *cn, X509 *issuer,
		       EVP_PKEY *issuer_key, uint64_t serial, int ca)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	BIGNUM *bn = BN_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	if (x == NULL || name == NULL || bn == NULL ||
	    !X509_set_version(x, 2) || !BN_set_word(bn, serial) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const unsigned char *)cn, -1, -1,
					0) ||
	    !X509_set_subject_name(x, name) ||
	    !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
					    : name) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365) ||
	    !X509_set_pubkey(x, pub))
		die("X509 build");
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
				  ca ? "critical,CA:TRUE" : "CA:FALSE");
	if (ext == NULL || !X509_add_ext(x, ext, -1))
		die("basicConstraints");
	X509_EXTENSION_free(ext);
	if (ca) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage,
					  "critical,keyCertSign,cRLSign");
		if (ext == NULL || !X509_add_ext(x, ext, -1))
			die("keyUsage");
		X509_EXTENSION_free(ext);
	}
	if (X509_sign(x, issuer_key, EVP_sha256()) <= 0)
		die("X509_sign");
	X509_NAME_free(name);
	BN_free(bn);
	return x;
}

void tr_ca_init(tr_ca_t *ca, const char *cn, const char *pem_path)
{
	ca->key = tr_p256();
	ca->cert = make_cert(ca->key, cn, NULL, ca->key, 1, 1);
	if (pem_path != NULL) {
		FILE *f = fopen(pem_path, "w");

		if (f == NULL || !PEM_write_X509(f, ca->cert))
			die("write CA PEM");
		fclose(f);
	}
}

void tr_ca_free(tr_ca_t *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	ca->cert = NULL;
	ca->key = NULL;
}

uint8_t *tr_issue(const tr_ca_t *ca, EVP_PKEY *pub, uint64_t serial,
		  const char *cn, size_t *len)
{
	X509 *x = make_cert(pub, cn, ca->cert, ca->key, serial, 0);
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	uint8_t *out;

	if (n <= 0)
		die("i2d_X509");
	out = malloc((size_t)n);
	if (out == NULL)
		die("malloc");
	memcpy(out, der, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(der);
	X509_free(x);
	return out;
}

void tr_pubhash(EVP_PKEY *k, uint8_t out[32])
{
	if (ks_audit_pubkey_sha256(k, out) != KS_OK)
		die("pubkey hash");
}

void tr_serial_hex(uint64_t serial, char *out, size_t cap)
{
	BIGNUM *bn = BN_new();
	char *hex;

	if (bn == NULL || !BN_set_word(bn, serial) ||
	    (hex = BN_bn2hex(bn)) == NULL)
		die("serial hex");
	/* the registry's canonical form is lowercase, as the signer's */
	for (size_t i = 0; hex[i] != '\0' && i + 1 < cap; i++) {
		out[i] = (char)tolower((unsigned char)hex[i]);
		out[i + 1] = '\0';
	}
	OPENSSL_free(hex);
	BN_free(bn);
}

int tr_copy(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb");
	FILE *out = fopen(to, "wb");
	char buf[65536];
	size_t n;
	int r = 0;

	if (in == NULL || out == NULL)
		r = -1;
	while (r == 0 && (n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			r = -1;
	if (in)
		fclose(in);
	if (out && fclose(out) != 0)
		r = -1;
	return r;
}

int tr_sql(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *err = NULL;
	int rc;

	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		fprintf(stderr, "tr_sql: %s\n", err ? err : sqlite3_errmsg(db));
	sqlite3_free(err);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

int64_t tr_provision(ks_reg_t *reg, const tr_ca_t *ca, const char *lot,
		     const char *uid, int reprovision, uint64_t cert_serial,
		     ks_reg_state_t stop_at)
{
	ks_reg_session_t s;
	EVP_PKEY *dev = tr_p256();
	uint8_t ph[32], digest[32];
	uint8_t *der = NULL;
	size_t der_len = 0;
	char hex[64];
	int64_t sid = 0;
	int r;

	r = ks_reg_session_begin(reg, (const uint8_t *)uid, strlen(uid), lot,
				 NULL, 1, KS_REG_KEY_DEVICE, reprovision,
				 "kilnd", &s);
	if (r != KS_OK)
		goto out;
	sid = s.id;
	if (stop_at == KS_REG_RESERVED)
		goto out;
	tr_pubhash(dev, ph);
	r = ks_reg_keyed(reg, sid, ph, KS_REG_KEY_DEVICE, NULL);
	if (r != KS_OK || stop_at == KS_REG_KEYED)
		goto out;
	der = tr_issue(ca, dev, cert_serial, s.serial, &der_len);
	tr_serial_hex(cert_serial, hex, sizeof(hex));
	r = ks_reg_cert_issued(reg, sid, der, der_len, hex, ph, 0, 0, NULL);
	if (r != KS_OK || stop_at == KS_REG_ISSUED)
		goto out;
	memset(digest, 0x5a, sizeof(digest));
	digest[0] = (uint8_t)cert_serial;
	r = ks_reg_written(reg, sid, digest, NULL);
	if (r != KS_OK || stop_at == KS_REG_WRITTEN)
		goto out;
	r = ks_reg_verified(reg, sid, NULL);
	if (r != KS_OK || stop_at == KS_REG_VERIFIED)
		goto out;
	r = ks_reg_locked(reg, sid, 0x3, NULL);
	if (r != KS_OK || stop_at == KS_REG_LOCKED)
		goto out;
	r = ks_reg_active(reg, sid, NULL);
out:
	free(der);
	EVP_PKEY_free(dev);
	return r == KS_OK ? sid : -(int64_t)r;
}
