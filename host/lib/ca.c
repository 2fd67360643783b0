/*
 * kiln station library: issuing CA — development CA creation, loading
 * (PEM file or OSSL_STORE URI) and chain verification. OpenSSL 3 EVP,
 * OSSL_STORE and X509 APIs only.
 */
#include "host/lib/ca.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/store.h>
#include <openssl/x509v3.h>

#include "host/lib/ca_priv.h"
#include "host/lib/log.h"
#include "host/lib/p11.h"

struct ks_ca {
	X509 *cert;
	EVP_PKEY *key;         /* the private key, or only the public key
				  when the private key is in a token */
	ks_p11_key_t *p11;     /* the token key, NULL for a PEM key */
	STACK_OF(X509) *chain; /* cert first, then issuers up to the root */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Log and drop OpenSSL's error queue. */
static void log_ossl(const char *what)
{
	unsigned long e;
	char buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		ks_log_debug("%s: %s", what, buf);
	}
}

X509 *ks_ca_cert_borrow(const ks_ca_t *ca)
{
	return ca->cert;
}

EVP_PKEY *ks_ca_key_borrow(const ks_ca_t *ca)
{
	return ca->key;
}

const STACK_OF(X509) *ks_ca_chain(const ks_ca_t *ca)
{
	return ca != NULL ? ca->chain : NULL;
}

ks_err_t ks_ca_random_serial(uint8_t raw[KS_CA_SERIAL_LEN], ASN1_INTEGER **out)
{
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ai = NULL;
	ks_err_t r = KS_ERR_CRYPTO;

	*out = NULL;
	if (RAND_bytes(raw, KS_CA_SERIAL_LEN) != 1) {
		ks_log_error("RAND_bytes failed");
		goto out;
	}
	raw[0] = (uint8_t)((raw[0] & 0x7fu) | 0x40u);
	bn = BN_bin2bn(raw, KS_CA_SERIAL_LEN, NULL);
	if (bn == NULL)
		goto out;
	ai = BN_to_ASN1_INTEGER(bn, NULL);
	if (ai == NULL)
		goto out;
	*out = ai;
	r = KS_OK;
out:
	BN_free(bn);
	return r;
}

/* --- development CA ---------------------------------------------------- */

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return 0;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok;
}

/*
 * A CA certificate for @key, named CN=<cn>,O=<org>, signed by issuer_key
 * (self-signed when issuer is NULL). pathlen < 0: no path length limit.
 */
static X509 *make_ca_cert(const char *cn, const char *org, const char *ou,
			  EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
			  int days, int pathlen)
{
	X509 *x = NULL, *ret = NULL;
	X509_NAME *name = NULL;
	ASN1_INTEGER *serial = NULL;
	uint8_t raw[KS_CA_SERIAL_LEN];
	char bc[40];

	x = X509_new();
	name = X509_NAME_new();
	if (x == NULL || name == NULL)
		goto out;
	if (ks_ca_random_serial(raw, &serial) != KS_OK)
		goto out;
	if (X509_set_version(x, X509_VERSION_3) != 1 ||
	    X509_set_serialNumber(x, serial) != 1)
		goto out;
	if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
				       (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_NID(name, NID_organizationName,
				       MBSTRING_UTF8,
				       (const unsigned char *)org, -1, -1, 0) != 1)
		goto out;
	if (ou != NULL &&
	    X509_NAME_add_entry_by_NID(name, NID_organizationalUnitName,
				       MBSTRING_UTF8,
				       (const unsigned char *)ou, -1, -1, 0) != 1)
		goto out;
	if (X509_set_subject_name(x, name) != 1 ||
	    X509_set_issuer_name(x, issuer != NULL ?
					    X509_get_subject_name(issuer) :
					    name) != 1)
		goto out;
	/* Backdated an hour for clock skew between stations and verifiers. */
	if (X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL)
		goto out;
	if (X509_set_pubkey(x, key) != 1)
		goto out;
	if (pathlen >= 0)
		snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", pathlen);
	else
		snprintf(bc, sizeof(bc), "critical,CA:TRUE");
	if (!add_ext(x, issuer != NULL ? issuer : x, NID_basic_constraints,
		     bc) ||
	    !add_ext(x, issuer != NULL ? issuer : x, NID_key_usage,
		     "critical,keyCertSign,cRLSign") ||
	    !add_ext(x, issuer != NULL ? issuer : x,
		     NID_subject_key_identifier, "hash") ||
	    !add_ext(x, issuer != NULL ? issuer : x,
		     NID_authority_key_identifier, "keyid:always"))
		goto out;
	if (X509_sign(x, issuer_key, EVP_sha256()) <= 0)
		goto out;
	ret = x;
	x = NULL;
out:
	if (ret == NULL)
		log_ossl(__func__);
	ASN1_INTEGER_free(serial);
	X509_NAME_free(name);
	X509_free(x);
	return ret;
}

/* Write len bytes to a new file (O_EXCL, mode), fsync'd. */
static ks_err_t write_new_file(const char *path, const void *data, size_t len,
			       mode_t mode, char *err, size_t errlen)
{
	const uint8_t *p = data;
	int fd;
	ks_err_t r = KS_ERR_IO;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  mode);
	if (fd < 0) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return errno == EEXIST ? KS_ERR_DUPLICATE : KS_ERR_IO;
	}
	if (fchmod(fd, mode) != 0)
		goto out;
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) != 0)
		goto out;
	r = KS_OK;
out:
	if (r != KS_OK)
		set_err(err, errlen, "%s: %s", path, strerror(errno));
	if (close(fd) != 0 && r == KS_OK) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		r = KS_ERR_IO;
	}
	return r;
}

enum { PEM_CERT, PEM_KEY, PEM_PUB };

/* PEM-encode one or two objects into a new file. */
static ks_err_t write_pem(const char *path, int kind, void *obj, void *obj2,
			  mode_t mode, char *err, size_t errlen)
{
	BIO *b = BIO_new(BIO_s_secmem());
	char *data = NULL;
	long len;
	int ok = 0;
	ks_err_t r = KS_ERR_CRYPTO;

	if (b == NULL)
		b = BIO_new(BIO_s_mem());
	if (b == NULL)
		goto out;
	if (kind == PEM_CERT) {
		ok = PEM_write_bio_X509(b, obj) == 1 &&
		     (obj2 == NULL || PEM_write_bio_X509(b, obj2) == 1);
	} else if (kind == PEM_KEY) {
		ok = PEM_write_bio_PrivateKey(b, obj, NULL, NULL, 0, NULL,
					      NULL) == 1;
	} else {
		ok = PEM_write_bio_PUBKEY(b, obj) == 1;
	}
	if (!ok) {
		set_err(err, errlen, "%s: PEM encoding failed", path);
		goto out;
	}
	len = BIO_get_mem_data(b, &data);
	if (len <= 0)
		goto out;
	r = write_new_file(path, data, (size_t)len, mode, err, errlen);
out:
	BIO_free(b); /* secmem BIO: the key PEM is cleared on free */
	return r;
}

/*
 * Create the development PKI in @dir. With @p11_uri the station CA key is
 * generated inside that token (never written to a file); otherwise it is
 * written to station-ca.key.
 */
static ks_err_t init_pki(const char *dir, const char *org, const char *p11_uri,
			 const char *p11_module, char *err, size_t errlen)
{
	static const char *const files[] = {
		KS_CA_FILE_ROOT,      KS_CA_FILE_CERT,      KS_CA_FILE_KEY,
		KS_CA_FILE_CHAIN,     KS_CA_FILE_AUDIT_KEY, KS_CA_FILE_AUDIT_PUB,
	};
	char path[6][4096];
	int created[6] = { 0 };
	char cn[KS_CA_ORG_MAX + 32];
	EVP_PKEY *root_key = NULL, *ca_key = NULL, *audit_key = NULL;
	X509 *root = NULL, *ca = NULL;
	struct stat st;
	size_t i, olen;
	ks_err_t r = KS_ERR_ARG;

	if (dir == NULL || org == NULL) {
		set_err(err, errlen, "directory and organisation are required");
		return KS_ERR_ARG;
	}
	olen = strlen(org);
	if (olen == 0 || olen > KS_CA_ORG_MAX) {
		set_err(err, errlen, "organisation '%s': must be 1..%d characters",
			org, KS_CA_ORG_MAX);
		return KS_ERR_ARG;
	}
	for (i = 0; i < olen; i++) {
		unsigned char c = (unsigned char)org[i];

		if (c < 0x20 || c > 0x7e) {
			set_err(err, errlen,
				"organisation: only printable ASCII allowed");
			return KS_ERR_ARG;
		}
	}
	if (p11_uri != NULL && !ks_p11_is_uri(p11_uri)) {
		set_err(err, errlen, "'%s' is not a pkcs11: URI", p11_uri);
		return KS_ERR_ARG;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		set_err(err, errlen, "%s: %s", dir, strerror(errno));
		return KS_ERR_IO;
	}
	for (i = 0; i < 6; i++) {
		int n = snprintf(path[i], sizeof(path[i]), "%s/%s", dir,
				 files[i]);

		if (n < 0 || (size_t)n >= sizeof(path[i])) {
			set_err(err, errlen, "%s: path too long", dir);
			return KS_ERR_ARG;
		}
		if (lstat(path[i], &st) == 0 || errno != ENOENT) {
			set_err(err, errlen,
				"%s already exists: refusing to overwrite a CA",
				path[i]);
			return KS_ERR_DUPLICATE;
		}
	}

	r = KS_ERR_CRYPTO;
	root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	audit_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (root_key == NULL || audit_key == NULL) {
		set_err(err, errlen, "P-256 key generation failed");
		goto out;
	}
	if (p11_uri != NULL) {
		r = ks_p11_keygen(p11_uri, p11_module, &ca_key, err, errlen);
		if (r != KS_OK)
			goto out;
		r = KS_ERR_CRYPTO;
	} else {
		ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		if (ca_key == NULL) {
			set_err(err, errlen, "P-256 key generation failed");
			goto out;
		}
	}
	snprintf(cn, sizeof(cn), "%s Development Root CA", org);
	root = make_ca_cert(cn, org, KS_CA_DEV_MARKER, root_key, NULL,
			    root_key, 3650, -1);
	snprintf(cn, sizeof(cn), "%s Station CA", org);
	if (root != NULL)
		ca = make_ca_cert(cn, org, KS_CA_DEV_MARKER, ca_key, root,
				  root_key, 1826, 0);
	if (root == NULL || ca == NULL) {
		set_err(err, errlen, "creating the CA certificates failed");
		goto out;
	}

	/* Private files first: if one fails nothing public points at it. */
	r = KS_OK;
	if (p11_uri == NULL) {
		r = write_pem(path[2], PEM_KEY, ca_key, NULL, 0600, err,
			      errlen);
		created[2] = r == KS_OK;
	}
	if (r == KS_OK) {
		r = write_pem(path[4], PEM_KEY, audit_key, NULL, 0600, err,
			      errlen);
		created[4] = r == KS_OK;
	}
	if (r == KS_OK) {
		r = write_pem(path[5], PEM_PUB, audit_key, NULL, 0644, err,
			      errlen);
		created[5] = r == KS_OK;
	}
	if (r == KS_OK) {
		r = write_pem(path[0], PEM_CERT, root, NULL, 0644, err, errlen);
		created[0] = r == KS_OK;
	}
	if (r == KS_OK) {
		r = write_pem(path[1], PEM_CERT, ca, NULL, 0644, err, errlen);
		created[1] = r == KS_OK;
	}
	if (r == KS_OK) {
		r = write_pem(path[3], PEM_CERT, ca, root, 0644, err, errlen);
		created[3] = r == KS_OK;
	}
	if (r == KS_OK)
		ks_log_info("development CA for '%s' created in %s%s%s", org,
			    dir, p11_uri ? ", station CA key in " : "",
			    p11_uri ? "the token" : "");
out:
	if (r != KS_OK) {
		for (i = 0; i < 6; i++) {
			if (created[i])
				(void)unlink(path[i]);
		}
	}
	X509_free(ca);
	X509_free(root);
	EVP_PKEY_free(audit_key);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(root_key); /* the dev root key is never kept */
	return r;
}

ks_err_t ks_ca_init_dev(const char *dir, const char *org, char *err,
			size_t errlen)
{
	return init_pki(dir, org, NULL, NULL, err, errlen);
}

ks_err_t ks_ca_init_dev_pkcs11(const char *dir, const char *org,
			       const char *uri, const char *module, char *err,
			       size_t errlen)
{
	if (uri == NULL) {
		set_err(err, errlen, "a pkcs11: URI is required");
		return KS_ERR_ARG;
	}
	return init_pki(dir, org, uri, module, err, errlen);
}

/* --- loading ------------------------------------------------------------ */

/*
 * Read objects from a path or OSSL_STORE URI: the first private key into
 * *key (if key != NULL) and every certificate into *certs (if non-NULL).
 */
static ks_err_t store_load(const char *uri, EVP_PKEY **key,
			   STACK_OF(X509) *certs)
{
	OSSL_STORE_CTX *st;
	ks_err_t r = KS_ERR_IO;

	st = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
	if (st == NULL) {
		ks_log_error("cannot open %s", uri);
		log_ossl(__func__);
		return KS_ERR_IO;
	}
	if (key != NULL && OSSL_STORE_expect(st, OSSL_STORE_INFO_PKEY) != 1)
		goto out;
	if (key == NULL && OSSL_STORE_expect(st, OSSL_STORE_INFO_CERT) != 1)
		goto out;
	while (!OSSL_STORE_eof(st)) {
		OSSL_STORE_INFO *info = OSSL_STORE_load(st);

		if (info == NULL) {
			/* The file loader flags an error on reaching the end. */
			if (OSSL_STORE_eof(st))
				break;
			if (OSSL_STORE_error(st))
				goto out;
			continue;
		}
		if (key != NULL && *key == NULL &&
		    OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY) {
			*key = OSSL_STORE_INFO_get1_PKEY(info);
		} else if (certs != NULL && OSSL_STORE_INFO_get_type(info) ==
							    OSSL_STORE_INFO_CERT) {
			X509 *c = OSSL_STORE_INFO_get1_CERT(info);

			if (c == NULL || sk_X509_push(certs, c) <= 0) {
				X509_free(c);
				OSSL_STORE_INFO_free(info);
				r = KS_ERR_NOMEM;
				goto out;
			}
		}
		OSSL_STORE_INFO_free(info);
	}
	r = KS_OK;
out:
	if (r != KS_OK) {
		ks_log_error("reading %s failed", uri);
		log_ossl(__func__);
	}
	OSSL_STORE_close(st);
	return r;
}

ks_err_t ks_ca_chain_load(const char *pem_path, STACK_OF(X509) **out)
{
	STACK_OF(X509) *sk;
	ks_err_t r;

	if (pem_path == NULL || out == NULL)
		return KS_ERR_ARG;
	*out = NULL;
	sk = sk_X509_new_null();
	if (sk == NULL)
		return KS_ERR_NOMEM;
	r = store_load(pem_path, NULL, sk);
	if (r == KS_OK && sk_X509_num(sk) == 0) {
		ks_log_error("%s: no certificates", pem_path);
		r = KS_ERR_VERIFY;
	}
	if (r != KS_OK) {
		sk_X509_pop_free(sk, X509_free);
		return r;
	}
	*out = sk;
	return KS_OK;
}

static int self_signed(X509 *c)
{
	return X509_self_signed(c, 1) == 1;
}

ks_err_t ks_ca_store_new(const STACK_OF(X509) *chain, X509_STORE **out)
{
	X509_STORE *st;
	int i, roots = 0;

	if (chain == NULL || out == NULL)
		return KS_ERR_ARG;
	*out = NULL;
	st = X509_STORE_new();
	if (st == NULL)
		return KS_ERR_NOMEM;
	for (i = 0; i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);

		if (!self_signed(c))
			continue;
		if (X509_STORE_add_cert(st, c) != 1) {
			X509_STORE_free(st);
			return KS_ERR_CRYPTO;
		}
		roots++;
	}
	if (roots == 0) {
		ks_log_error("the chain has no self-signed root");
		X509_STORE_free(st);
		return KS_ERR_VERIFY;
	}
	*out = st;
	return KS_OK;
}

ks_err_t ks_ca_verify_cert(const STACK_OF(X509) *chain, X509 *cert,
			   time_t at, char *why, size_t whylen)
{
	X509_STORE *st = NULL;
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL;
	int i, rc;
	ks_err_t r;

	if (chain == NULL || cert == NULL)
		return KS_ERR_ARG;
	set_err(why, whylen, "%s", "");
	r = ks_ca_store_new(chain, &st);
	if (r != KS_OK) {
		set_err(why, whylen, "no trust anchor in the chain");
		goto out;
	}
	r = KS_ERR_NOMEM;
	untrusted = sk_X509_new_null();
	ctx = X509_STORE_CTX_new();
	if (untrusted == NULL || ctx == NULL)
		goto out;
	for (i = 0; i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);

		if (!self_signed(c) && sk_X509_push(untrusted, c) <= 0)
			goto out;
	}
	r = KS_ERR_CRYPTO;
	if (X509_STORE_CTX_init(ctx, st, cert, untrusted) != 1)
		goto out;
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
	if (at != 0)
		X509_STORE_CTX_set_time(ctx, 0, at);
	rc = X509_verify_cert(ctx);
	if (rc != 1) {
		int e = X509_STORE_CTX_get_error(ctx);

		set_err(why, whylen, "%s", X509_verify_cert_error_string(e));
		ks_log_debug("certificate does not verify: %s",
			     X509_verify_cert_error_string(e));
		r = KS_ERR_VERIFY;
		goto out;
	}
	r = KS_OK;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	sk_X509_free(untrusted); /* borrowed members */
	X509_STORE_free(st);
	return r;
}

ks_err_t ks_ca_verify_der(const STACK_OF(X509) *chain, const uint8_t *der,
			  size_t len, time_t at, char *why, size_t whylen)
{
	const unsigned char *p = der;
	X509 *x;
	ks_err_t r;

	if (der == NULL || len == 0 || len > 65536)
		return KS_ERR_ARG;
	x = d2i_X509(NULL, &p, (long)len);
	if (x == NULL || p != der + len) {
		set_err(why, whylen, "not a single DER certificate");
		X509_free(x);
		ERR_clear_error();
		return KS_ERR_VERIFY;
	}
	r = ks_ca_verify_cert(chain, x, at, why, whylen);
	X509_free(x);
	return r;
}

ks_err_t ks_ca_load(const char *cert_pem_path, const char *key_uri,
		    const char *chain_pem_path, ks_ca_t **out)
{
	return ks_ca_load_ex(cert_pem_path, key_uri, chain_pem_path, NULL, out);
}

/*
 * Check that the token key belongs to @cert: sign a random digest in the
 * token and verify it with the certificate's public key.
 */
static ks_err_t p11_key_matches(ks_p11_key_t *k, EVP_PKEY *pub)
{
	uint8_t md[32], sig[KS_P11_SIG_DER_MAX];
	size_t siglen = sizeof(sig);
	EVP_PKEY_CTX *ctx = NULL;
	ks_err_t r;

	if (RAND_bytes(md, sizeof(md)) != 1)
		return KS_ERR_CRYPTO;
	r = ks_p11_sign_digest(k, md, sig, &siglen);
	if (r != KS_OK)
		return r;
	r = KS_ERR_VERIFY;
	ctx = EVP_PKEY_CTX_new(pub, NULL);
	if (ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
	    EVP_PKEY_verify(ctx, sig, siglen, md, sizeof(md)) == 1)
		r = KS_OK;
	EVP_PKEY_CTX_free(ctx);
	return r;
}

ks_err_t ks_ca_load_ex(const char *cert_pem_path, const char *key_uri,
		       const char *chain_pem_path, const char *pkcs11_module,
		       ks_ca_t **out)
{
	ks_ca_t *ca = NULL;
	STACK_OF(X509) *certs = NULL, *extra = NULL;
	char why[128];
	int i;
	ks_err_t r = KS_ERR_ARG;

	if (out == NULL)
		return KS_ERR_ARG;
	*out = NULL;
	if (cert_pem_path == NULL || key_uri == NULL)
		goto out;
	r = KS_ERR_NOMEM;
	ca = OPENSSL_zalloc(sizeof(*ca));
	certs = sk_X509_new_null();
	if (ca == NULL || certs == NULL)
		goto out;
	ca->chain = sk_X509_new_null();
	if (ca->chain == NULL)
		goto out;

	r = store_load(cert_pem_path, NULL, certs);
	if (r != KS_OK)
		goto out;
	if (sk_X509_num(certs) < 1) {
		ks_log_error("%s: no certificate", cert_pem_path);
		r = KS_ERR_VERIFY;
		goto out;
	}
	/* The first certificate is the CA; any others are chain material. */
	ca->cert = sk_X509_shift(certs);
	if (ks_p11_is_uri(key_uri)) {
		char msg[256] = "";

		r = ks_p11_key_open(key_uri, pkcs11_module, &ca->p11, msg,
				    sizeof(msg));
		if (r != KS_OK) {
			ks_log_error("CA key %s: %s", key_uri, msg);
			goto out;
		}
		ca->key = X509_get_pubkey(ca->cert);
		if (ca->key == NULL) {
			r = KS_ERR_VERIFY;
			goto out;
		}
		if (p11_key_matches(ca->p11, ca->key) != KS_OK) {
			ks_log_error("the token key %s does not match the certificate %s",
				     key_uri, cert_pem_path);
			r = KS_ERR_VERIFY;
			goto out;
		}
	} else {
		r = store_load(key_uri, &ca->key, NULL);
		if (r != KS_OK)
			goto out;
	}
	if (ca->key == NULL) {
		ks_log_error("%s: no private key", key_uri);
		r = KS_ERR_VERIFY;
		goto out;
	}
	if (ca->p11 == NULL && X509_check_private_key(ca->cert, ca->key) != 1) {
		ks_log_error("the key %s does not match the certificate %s",
			     key_uri, cert_pem_path);
		r = KS_ERR_VERIFY;
		goto out;
	}
	if (X509_check_ca(ca->cert) < 1 ||
	    ((X509_get_extension_flags(ca->cert) & EXFLAG_KUSAGE) != 0 &&
	     (X509_get_key_usage(ca->cert) & KU_KEY_CERT_SIGN) == 0)) {
		ks_log_error("%s is not a CA certificate allowed to sign certificates",
			     cert_pem_path);
		r = KS_ERR_POLICY;
		goto out;
	}
	if (!EVP_PKEY_is_a(ca->key, "EC")) {
		ks_log_error("the CA key must be an EC key (ECDSA-SHA256)");
		r = KS_ERR_POLICY;
		goto out;
	}

	r = KS_ERR_NOMEM;
	if (sk_X509_push(ca->chain, ca->cert) <= 0)
		goto out;
	X509_up_ref(ca->cert);
	if (chain_pem_path != NULL) {
		r = ks_ca_chain_load(chain_pem_path, &extra);
		if (r != KS_OK)
			goto out;
	}
	/* Rest of the chain: leftovers from the cert file, then the chain
	 * file, without repeating the CA certificate itself. */
	r = KS_ERR_NOMEM;
	while (sk_X509_num(certs) > 0) {
		X509 *c = sk_X509_shift(certs);

		if (X509_cmp(c, ca->cert) == 0 || sk_X509_push(ca->chain, c) <= 0)
			X509_free(c);
	}
	for (i = 0; extra != NULL && i < sk_X509_num(extra); i++) {
		X509 *c = sk_X509_value(extra, i);
		int j, dup = 0;

		for (j = 0; j < sk_X509_num(ca->chain); j++)
			dup |= X509_cmp(c, sk_X509_value(ca->chain, j)) == 0;
		if (dup)
			continue;
		if (sk_X509_push(ca->chain, c) <= 0)
			goto out;
		X509_up_ref(c);
	}
	r = ks_ca_verify_cert(ca->chain, ca->cert, 0, why, sizeof(why));
	if (r != KS_OK) {
		ks_log_error("the CA certificate %s does not verify against its chain: %s",
			     cert_pem_path, why);
		r = KS_ERR_VERIFY;
		goto out;
	}
	*out = ca;
	ca = NULL;
	r = KS_OK;
out:
	sk_X509_pop_free(extra, X509_free);
	sk_X509_pop_free(certs, X509_free);
	ks_ca_free(&ca);
	ERR_clear_error();
	return r;
}

void ks_ca_free(ks_ca_t **ca)
{
	if (ca == NULL || *ca == NULL)
		return;
	sk_X509_pop_free((*ca)->chain, X509_free);
	X509_free((*ca)->cert);
	EVP_PKEY_free((*ca)->key);
	ks_p11_key_free(&(*ca)->p11);
	OPENSSL_free(*ca);
	*ca = NULL;
}

/* --- signing ------------------------------------------------------------ */

/* Append a DER length; returns the number of bytes written (<= 4). */
static size_t der_len(uint8_t *p, size_t len)
{
	if (len < 0x80) {
		p[0] = (uint8_t)len;
		return 1;
	}
	if (len < 0x100) {
		p[0] = 0x81;
		p[1] = (uint8_t)len;
		return 2;
	}
	p[0] = 0x82;
	p[1] = (uint8_t)(len >> 8);
	p[2] = (uint8_t)len;
	return 3;
}

/*
 * Sign @x with the token key. OpenSSL cannot drive a non-exportable key
 * without an ENGINE or provider, so the certificate is assembled here:
 * the TBS signature algorithm is set to ecdsa-with-SHA256, the TBS bytes
 * are re-encoded (i2d_re_X509_tbs), the token signs their SHA-256, and
 *   Certificate ::= SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING sig }
 * is written out and parsed back. The result is verified with the CA's
 * public key before it is returned, so a faulty token cannot slip a bad
 * signature into the registry.
 */
static ks_err_t sign_p11(const ks_ca_t *ca, X509 *x, unsigned char **der,
			 int *derlen)
{
	/* X509_get0_tbs_sigalg() hands out the certificate's own, mutable
	 * field as const; OpenSSL 3.0 has no setter for it. */
	X509_ALGOR *tbs_alg = (X509_ALGOR *)X509_get0_tbs_sigalg(x);
	X509_ALGOR *alg = NULL;
	unsigned char *tbs = NULL, *algder = NULL, *buf = NULL;
	const unsigned char *cp;
	uint8_t sig[KS_P11_SIG_DER_MAX];
	size_t siglen = sizeof(sig), body, pos;
	int tbslen, alglen;
	X509 *parsed = NULL;
	ks_err_t r = KS_ERR_CRYPTO;

	if (X509_ALGOR_set0(tbs_alg, OBJ_nid2obj(NID_ecdsa_with_SHA256),
			    V_ASN1_UNDEF, NULL) != 1)
		goto out;
	tbslen = i2d_re_X509_tbs(x, &tbs);
	alg = X509_ALGOR_new();
	if (tbslen <= 0 || alg == NULL ||
	    X509_ALGOR_set0(alg, OBJ_nid2obj(NID_ecdsa_with_SHA256),
			    V_ASN1_UNDEF, NULL) != 1)
		goto out;
	alglen = i2d_X509_ALGOR(alg, &algder);
	if (alglen <= 0)
		goto out;
	r = ks_p11_sign(ca->p11, tbs, (size_t)tbslen, sig, &siglen);
	if (r != KS_OK)
		goto out;
	r = KS_ERR_CRYPTO;
	/* BIT STRING: tag, length, 0 unused bits, signature */
	body = (size_t)tbslen + (size_t)alglen + 2 + 1 + siglen;
	if (body > 60000)
		goto out;
	buf = OPENSSL_malloc(body + 8);
	if (buf == NULL)
		goto out;
	pos = 0;
	buf[pos++] = 0x30;
	pos += der_len(buf + pos, body);
	memcpy(buf + pos, tbs, (size_t)tbslen);
	pos += (size_t)tbslen;
	memcpy(buf + pos, algder, (size_t)alglen);
	pos += (size_t)alglen;
	buf[pos++] = 0x03;
	buf[pos++] = (uint8_t)(siglen + 1); /* siglen <= 80 */
	buf[pos++] = 0x00;
	memcpy(buf + pos, sig, siglen);
	pos += siglen;
	cp = buf;
	parsed = d2i_X509(NULL, &cp, (long)pos);
	if (parsed == NULL || cp != buf + pos) {
		ks_log_error("assembling the token-signed certificate failed");
		goto out;
	}
	if (X509_verify(parsed, ca->key) != 1) {
		ks_log_error("the token's signature does not verify with the CA certificate's key");
		r = KS_ERR_VERIFY;
		goto out;
	}
	*der = buf;
	*derlen = (int)pos;
	buf = NULL;
	r = KS_OK;
out:
	X509_free(parsed);
	OPENSSL_free(buf);
	OPENSSL_free(algder);
	OPENSSL_free(tbs);
	X509_ALGOR_free(alg);
	return r;
}

ks_err_t ks_ca_sign_der(const ks_ca_t *ca, X509 *x, unsigned char **der,
			int *len)
{
	ks_err_t r;

	if (ca == NULL || x == NULL || der == NULL || len == NULL)
		return KS_ERR_ARG;
	*der = NULL;
	*len = 0;
	if (ca->p11 != NULL) {
		r = sign_p11(ca, x, der, len);
	} else if (X509_sign(x, ca->key, EVP_sha256()) <= 0) {
		r = KS_ERR_CRYPTO;
	} else {
		*len = i2d_X509(x, der);
		r = *len > 0 ? KS_OK : KS_ERR_CRYPTO;
	}
	if (r != KS_OK)
		log_ossl(__func__);
	return r;
}

int ks_ca_key_in_token(const ks_ca_t *ca)
{
	return ca != NULL && ca->p11 != NULL;
}

/* --- release gate ------------------------------------------------------- */

/*
 * SHA-256 of the DER SubjectPublicKeyInfo of keys that are published with
 * kiln and therefore known to everybody: a certificate chain containing one
 * of them is never fit for production.
 */
static const char *const known_test_spki[] = {
	/* tests/data/known-test-ca.key */
	"017c49fce4d3be28beab5e89db81e8f7554985c4b6a9df4ddd5baf1e51b43251",
};

int ks_ca_chain_is_dev(const STACK_OF(X509) *chain, char *why, size_t whylen)
{
	int i, n, dev = 0;

	set_err(why, whylen, "%s", "");
	n = chain != NULL ? sk_X509_num(chain) : 0;
	for (i = 0; i < n && !dev; i++) {
		X509 *c = sk_X509_value(chain, i);
		X509_NAME *nm = X509_get_subject_name(c);
		unsigned char *spki = NULL;
		unsigned char md[32];
		unsigned int mdlen = 0;
		char hex[65], subj[256];
		int len, idx = -1;
		size_t k;

		X509_NAME_oneline(nm, subj, sizeof(subj));
		while ((idx = X509_NAME_get_index_by_NID(
				nm, NID_organizationalUnitName, idx)) >= 0) {
			const ASN1_STRING *v = X509_NAME_ENTRY_get_data(
				X509_NAME_get_entry(nm, idx));

			if (v != NULL &&
			    (size_t)ASN1_STRING_length(v) ==
				    strlen(KS_CA_DEV_MARKER) &&
			    memcmp(ASN1_STRING_get0_data(v), KS_CA_DEV_MARKER,
				   strlen(KS_CA_DEV_MARKER)) == 0) {
				set_err(why, whylen,
					"%s was made by 'kiln ca init' (OU=%s)",
					subj, KS_CA_DEV_MARKER);
				dev = 1;
			}
		}
		len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c), &spki);
		if (!dev && len > 0 &&
		    EVP_Digest(spki, (size_t)len, md, &mdlen, EVP_sha256(),
			       NULL) == 1) {
			for (k = 0; k < 32; k++)
				snprintf(hex + 2 * k, 3, "%02x", md[k]);
			for (k = 0; k < sizeof(known_test_spki) /
						sizeof(known_test_spki[0]);
			     k++) {
				if (strcmp(hex, known_test_spki[k]) == 0) {
					set_err(why, whylen,
						"%s has a published test key (SPKI SHA-256 %s)",
						subj, hex);
					dev = 1;
				}
			}
		}
		OPENSSL_free(spki);
	}
	return dev;
}

ks_err_t ks_ca_release_gate(const STACK_OF(X509) *chain,
			    const ks_profile_t *profiles, size_t n, int *warn,
			    char *msg, size_t msglen)
{
	char why[384];
	size_t i, used = 0;
	ks_err_t r = KS_OK;

	if (warn != NULL)
		*warn = 0;
	set_err(msg, msglen, "%s", "");
	if (chain == NULL || (profiles == NULL && n > 0))
		return KS_ERR_ARG;
	if (!ks_ca_chain_is_dev(chain, why, sizeof(why)))
		return KS_OK;
	for (i = 0; i < n; i++) {
		if (!profiles[i].production)
			continue;
		r = KS_ERR_POLICY;
		if (msg != NULL && used < msglen) {
			int w = snprintf(msg + used, msglen - used,
					 "%sprofile '%s' is marked production = yes, but the CA is not fit for production: %s",
					 used ? "\n" : "", profiles[i].name, why);

			used += w > 0 ? (size_t)w : 0;
		}
	}
	if (r == KS_OK) {
		if (warn != NULL)
			*warn = 1;
		set_err(msg, msglen,
			"development CA in use (no profile is marked production): %s",
			why);
	}
	return r;
}
