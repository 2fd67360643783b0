/*
 * kiln station library: CA keys inside a PKCS#11 token (see p11.h).
 *
 * The module is dlopen()ed and driven through its CK_FUNCTION_LIST; URIs
 * are parsed with p11-kit's RFC 7512 parser. Modules are shared
 * process-wide (one C_Initialize per module, reference counted), since a
 * second C_Initialize of the same module fails by specification.
 */
#include "host/lib/p11.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "host/lib/log.h"

#define PIN_MAX 256

/* DER OID of prime256v1, as CKA_EC_PARAMS carries it. */
static const uint8_t p256_params[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
				       0x3d, 0x03, 0x01, 0x07 };

struct module {
	char path[4096];
	void *dl;
	CK_FUNCTION_LIST_PTR fl;
	int finalize; /* we initialised it */
	unsigned refs;
	struct module *next;
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct module *modules;

struct ks_p11_key {
	struct module *mod;
	CK_SESSION_HANDLE session;
	CK_OBJECT_HANDLE priv;
	int logged_in;
	pthread_mutex_t lock; /* one operation at a time on the session */
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
	ks_log_debug("%s", err);
}

int ks_p11_is_uri(const char *s)
{
	return s != NULL && strncasecmp(s, "pkcs11:", 7) == 0;
}

/* Load and initialise a module, or take another reference on it. */
static ks_err_t module_get(const char *path, struct module **out, char *err,
			   size_t errlen)
{
	CK_C_GetFunctionList gfl;
	CK_C_INITIALIZE_ARGS args;
	struct module *m;
	CK_RV rv;
	ks_err_t r = KS_ERR_IO;

	*out = NULL;
	pthread_mutex_lock(&modules_lock);
	for (m = modules; m != NULL; m = m->next) {
		if (strcmp(m->path, path) == 0) {
			m->refs++;
			*out = m;
			r = KS_OK;
			goto out;
		}
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	snprintf(m->path, sizeof(m->path), "%s", path);
	m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (m->dl == NULL) {
		set_err(err, errlen, "PKCS#11 module %s: %s", path, dlerror());
		goto fail;
	}
	/* POSIX allows this conversion for dlsym() results. */
	*(void **)&gfl = dlsym(m->dl, "C_GetFunctionList");
	if (gfl == NULL || gfl(&m->fl) != CKR_OK || m->fl == NULL) {
		set_err(err, errlen, "%s is not a PKCS#11 module", path);
		goto fail;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = m->fl->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		set_err(err, errlen, "PKCS#11 module %s: C_Initialize: 0x%lx",
			path, (unsigned long)rv);
		r = KS_ERR_CRYPTO;
		goto fail;
	}
	m->finalize = rv == CKR_OK;
	m->refs = 1;
	m->next = modules;
	modules = m;
	*out = m;
	r = KS_OK;
	goto out;
fail:
	if (m->dl != NULL)
		dlclose(m->dl);
	free(m);
out:
	pthread_mutex_unlock(&modules_lock);
	return r;
}

static void module_put(struct module *m)
{
	struct module **pp;

	if (m == NULL)
		return;
	pthread_mutex_lock(&modules_lock);
	if (--m->refs == 0) {
		for (pp = &modules; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == m) {
				*pp = m->next;
				break;
			}
		}
		if (m->finalize)
			(void)m->fl->C_Finalize(NULL);
		dlclose(m->dl);
		free(m);
	}
	pthread_mutex_unlock(&modules_lock);
}

/* Read the first line of a PIN file into pin (NUL-terminated). */
static ks_err_t read_pin_file(const char *src, char pin[PIN_MAX], char *err,
			      size_t errlen)
{
	const char *path = src;
	struct stat st;
	ssize_t n;
	size_t len;
	int fd;

	if (strncmp(path, "file:", 5) == 0)
		path += 5;
	if (path[0] != '/') {
		set_err(err, errlen,
			"pin-source '%s': only file:/ABSOLUTE/PATH is supported",
			src);
		return KS_ERR_ARG;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		set_err(err, errlen, "pin-source %s: %s", path, strerror(errno));
		return KS_ERR_IO;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & S_IROTH) != 0)
		ks_log_warn("PIN file %s is world-readable", path);
	n = read(fd, pin, PIN_MAX - 1);
	close(fd);
	if (n < 0) {
		set_err(err, errlen, "pin-source %s: %s", path, strerror(errno));
		return KS_ERR_IO;
	}
	pin[n] = '\0';
	len = strcspn(pin, "\r\n");
	pin[len] = '\0';
	if (len == 0) {
		set_err(err, errlen, "pin-source %s: empty PIN", path);
		return KS_ERR_ARG;
	}
	return KS_OK;
}

/* Everything needed to reach one object in one token. */
typedef struct {
	P11KitUri *uri;
	struct module *mod;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE session;
	int have_session, logged_in;
} target_t;

static void target_close(target_t *t)
{
	if (t->logged_in)
		(void)t->mod->fl->C_Logout(t->session);
	if (t->have_session)
		(void)t->mod->fl->C_CloseSession(t->session);
	module_put(t->mod);
	if (t->uri != NULL)
		p11_kit_uri_free(t->uri);
	memset(t, 0, sizeof(*t));
}

/* Parse the URI, load the module, find the token, open a session, log in. */
static ks_err_t target_open(const char *uristr, const char *module, int rw,
			    target_t *t, char *err, size_t errlen)
{
	CK_SLOT_ID slots[64];
	CK_ULONG nslots = 64;
	CK_TOKEN_INFO ti;
	char pin[PIN_MAX];
	const char *mpath, *pv, *ps;
	int found = 0;
	CK_RV rv;
	ks_err_t r = KS_ERR_ARG;

	memset(t, 0, sizeof(*t));
	pin[0] = '\0';
	if (!ks_p11_is_uri(uristr)) {
		set_err(err, errlen, "'%s' is not a pkcs11: URI", uristr);
		goto out;
	}
	t->uri = p11_kit_uri_new();
	if (t->uri == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	if (p11_kit_uri_parse(uristr, P11_KIT_URI_FOR_ANY, t->uri) !=
	    P11_KIT_URI_OK) {
		set_err(err, errlen, "malformed PKCS#11 URI '%s' (RFC 7512)",
			uristr);
		goto out;
	}
	mpath = p11_kit_uri_get_module_path(t->uri);
	if (mpath == NULL || mpath[0] == '\0')
		mpath = module;
	if (mpath == NULL || mpath[0] == '\0')
		mpath = getenv("KILN_PKCS11_MODULE");
	if (mpath == NULL || mpath[0] == '\0')
		mpath = KS_P11_DEFAULT_MODULE;
	r = module_get(mpath, &t->mod, err, errlen);
	if (r != KS_OK)
		goto out;

	r = KS_ERR_CRYPTO;
	rv = t->mod->fl->C_GetSlotList(CK_TRUE, slots, &nslots);
	if (rv != CKR_OK) {
		set_err(err, errlen, "C_GetSlotList: 0x%lx", (unsigned long)rv);
		goto out;
	}
	for (CK_ULONG i = 0; i < nslots && !found; i++) {
		if (t->mod->fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (p11_kit_uri_match_token_info(t->uri, &ti) == 1) {
			t->slot = slots[i];
			found = 1;
		}
	}
	if (!found) {
		set_err(err, errlen, "no token matches '%s' in %s", uristr,
			mpath);
		r = KS_ERR_NOTFOUND;
		goto out;
	}
	rv = t->mod->fl->C_OpenSession(t->slot,
				       CKF_SERIAL_SESSION |
					       (rw ? CKF_RW_SESSION : 0),
				       NULL, NULL, &t->session);
	if (rv != CKR_OK) {
		set_err(err, errlen, "C_OpenSession: 0x%lx", (unsigned long)rv);
		goto out;
	}
	t->have_session = 1;

	pv = p11_kit_uri_get_pin_value(t->uri);
	ps = p11_kit_uri_get_pin_source(t->uri);
	if (pv != NULL) {
		if (strlen(pv) >= sizeof(pin)) {
			set_err(err, errlen, "pin-value too long");
			r = KS_ERR_ARG;
			goto out;
		}
		snprintf(pin, sizeof(pin), "%s", pv);
	} else if (ps != NULL) {
		r = read_pin_file(ps, pin, err, errlen);
		if (r != KS_OK)
			goto out;
		r = KS_ERR_CRYPTO;
	}
	if (pin[0] != '\0') {
		rv = t->mod->fl->C_Login(t->session, CKU_USER,
					 (CK_UTF8CHAR_PTR)pin,
					 (CK_ULONG)strlen(pin));
		if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED ||
		    rv == CKR_PIN_EXPIRED) {
			set_err(err, errlen, "token refused the PIN (0x%lx)",
				(unsigned long)rv);
			r = KS_ERR_VERIFY;
			goto out;
		}
		if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
			set_err(err, errlen, "C_Login: 0x%lx", (unsigned long)rv);
			goto out;
		}
		t->logged_in = rv == CKR_OK;
	} else {
		ks_log_warn("no PIN in '%s' (pin-source=file:PATH): not logged in",
			    uristr);
	}
	r = KS_OK;
out:
	OPENSSL_cleanse(pin, sizeof(pin));
	if (r != KS_OK)
		target_close(t);
	return r;
}

/*
 * Find objects of @cls matching the URI's label/id. Returns the count (up
 * to max) in *n.
 */
static ks_err_t find_objects(target_t *t, CK_OBJECT_CLASS cls,
			     CK_OBJECT_HANDLE *h, CK_ULONG max, CK_ULONG *n)
{
	CK_ATTRIBUTE tmpl[3];
	CK_ATTRIBUTE_PTR a;
	CK_ULONG nt = 0;
	CK_RV rv;

	tmpl[nt].type = CKA_CLASS;
	tmpl[nt].pValue = &cls;
	tmpl[nt++].ulValueLen = sizeof(cls);
	a = p11_kit_uri_get_attribute(t->uri, CKA_LABEL);
	if (a != NULL)
		tmpl[nt++] = *a;
	a = p11_kit_uri_get_attribute(t->uri, CKA_ID);
	if (a != NULL)
		tmpl[nt++] = *a;
	*n = 0;
	rv = t->mod->fl->C_FindObjectsInit(t->session, tmpl, nt);
	if (rv != CKR_OK)
		return KS_ERR_CRYPTO;
	rv = t->mod->fl->C_FindObjects(t->session, h, max, n);
	(void)t->mod->fl->C_FindObjectsFinal(t->session);
	return rv == CKR_OK ? KS_OK : KS_ERR_CRYPTO;
}

ks_err_t ks_p11_key_open(const char *uri, const char *module,
			 ks_p11_key_t **out, char *err, size_t errlen)
{
	ks_p11_key_t *k = NULL;
	target_t t;
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_KEY_TYPE kt = 0;
	CK_ATTRIBUTE a = { CKA_KEY_TYPE, &kt, sizeof(kt) };
	ks_err_t r;

	if (out == NULL)
		return KS_ERR_ARG;
	*out = NULL;
	r = target_open(uri, module, 0, &t, err, errlen);
	if (r != KS_OK)
		return r;
	if (p11_kit_uri_get_attribute(t.uri, CKA_LABEL) == NULL &&
	    p11_kit_uri_get_attribute(t.uri, CKA_ID) == NULL) {
		set_err(err, errlen, "'%s' names no key (object= or id=)", uri);
		r = KS_ERR_ARG;
		goto out;
	}
	r = find_objects(&t, CKO_PRIVATE_KEY, h, 2, &n);
	if (r != KS_OK) {
		set_err(err, errlen, "searching the token for '%s' failed", uri);
		goto out;
	}
	if (n == 0) {
		set_err(err, errlen, "no private key matches '%s'%s", uri,
			t.logged_in ? "" : " (not logged in: add pin-source)");
		r = KS_ERR_NOTFOUND;
		goto out;
	}
	if (n > 1) {
		set_err(err, errlen, "more than one private key matches '%s'",
			uri);
		r = KS_ERR_POLICY;
		goto out;
	}
	if (t.mod->fl->C_GetAttributeValue(t.session, h[0], &a, 1) != CKR_OK ||
	    kt != CKK_EC) {
		set_err(err, errlen, "'%s' is not an EC key", uri);
		r = KS_ERR_POLICY;
		goto out;
	}
	r = KS_ERR_NOMEM;
	k = calloc(1, sizeof(*k));
	if (k == NULL || pthread_mutex_init(&k->lock, NULL) != 0) {
		free(k);
		k = NULL;
		goto out;
	}
	k->mod = t.mod;
	k->session = t.session;
	k->logged_in = t.logged_in;
	k->priv = h[0];
	t.mod = NULL; /* the key owns module, session and login now */
	t.have_session = 0;
	t.logged_in = 0;
	*out = k;
	r = KS_OK;
out:
	target_close(&t);
	return r;
}

void ks_p11_key_free(ks_p11_key_t **key)
{
	ks_p11_key_t *k;

	if (key == NULL || *key == NULL)
		return;
	k = *key;
	if (k->logged_in)
		(void)k->mod->fl->C_Logout(k->session);
	(void)k->mod->fl->C_CloseSession(k->session);
	module_put(k->mod);
	pthread_mutex_destroy(&k->lock);
	free(k);
	*key = NULL;
}

ks_err_t ks_p11_sign_digest(ks_p11_key_t *key, const uint8_t digest[32],
			    uint8_t *sig, size_t *siglen)
{
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	CK_BYTE raw[132];
	CK_ULONG rawlen = sizeof(raw);
	ECDSA_SIG *es = NULL;
	BIGNUM *br = NULL, *bs = NULL;
	unsigned char *p;
	int len;
	CK_RV rv;
	ks_err_t r = KS_ERR_CRYPTO;

	if (key == NULL || digest == NULL || sig == NULL || siglen == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&key->lock);
	rv = key->mod->fl->C_SignInit(key->session, &mech, key->priv);
	if (rv == CKR_OK)
		rv = key->mod->fl->C_Sign(key->session, (CK_BYTE_PTR)digest, 32,
					  raw, &rawlen);
	pthread_mutex_unlock(&key->lock);
	if (rv != CKR_OK) {
		ks_log_error("token signature failed: 0x%lx", (unsigned long)rv);
		goto out;
	}
	/* PKCS#11 returns r || s, each as long as the order (32 bytes). */
	if (rawlen != 64) {
		ks_log_error("token returned a %lu-byte ECDSA signature",
			     (unsigned long)rawlen);
		goto out;
	}
	br = BN_bin2bn(raw, 32, NULL);
	bs = BN_bin2bn(raw + 32, 32, NULL);
	es = ECDSA_SIG_new();
	if (br == NULL || bs == NULL || es == NULL ||
	    ECDSA_SIG_set0(es, br, bs) != 1)
		goto out;
	br = bs = NULL; /* owned by es */
	len = i2d_ECDSA_SIG(es, NULL);
	if (len <= 0 || (size_t)len > KS_P11_SIG_DER_MAX || (size_t)len > *siglen)
		goto out;
	p = sig;
	if (i2d_ECDSA_SIG(es, &p) != len)
		goto out;
	*siglen = (size_t)len;
	r = KS_OK;
out:
	BN_free(br);
	BN_free(bs);
	ECDSA_SIG_free(es);
	return r;
}

ks_err_t ks_p11_sign(ks_p11_key_t *key, const uint8_t *data, size_t len,
		     uint8_t *sig, size_t *siglen)
{
	uint8_t md[32];
	unsigned int mdlen = 0;

	if (data == NULL)
		return KS_ERR_ARG;
	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != 32)
		return KS_ERR_CRYPTO;
	return ks_p11_sign_digest(key, md, sig, siglen);
}

ks_err_t ks_p11_key_attrs(ks_p11_key_t *key, int *sensitive, int *extractable,
			  int *value_readable)
{
	CK_BBOOL sens = CK_FALSE, extr = CK_TRUE;
	CK_ATTRIBUTE a[2] = {
		{ CKA_SENSITIVE, &sens, sizeof(sens) },
		{ CKA_EXTRACTABLE, &extr, sizeof(extr) },
	};
	CK_BYTE val[128];
	CK_ATTRIBUTE v = { CKA_VALUE, val, sizeof(val) };
	CK_RV rv, rvv;

	if (key == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&key->lock);
	rv = key->mod->fl->C_GetAttributeValue(key->session, key->priv, a, 2);
	rvv = key->mod->fl->C_GetAttributeValue(key->session, key->priv, &v, 1);
	pthread_mutex_unlock(&key->lock);
	OPENSSL_cleanse(val, sizeof(val));
	if (rv != CKR_OK)
		return KS_ERR_CRYPTO;
	if (sensitive != NULL)
		*sensitive = sens == CK_TRUE;
	if (extractable != NULL)
		*extractable = extr == CK_TRUE;
	if (value_readable != NULL)
		*value_readable = rvv == CKR_OK &&
				  v.ulValueLen != CK_UNAVAILABLE_INFORMATION;
	return KS_OK;
}

/* EVP_PKEY from a P-256 CKA_EC_POINT (DER OCTET STRING of the point). */
static ks_err_t pub_from_ec_point(const uint8_t *der, size_t len,
				  EVP_PKEY **out)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	const uint8_t *pt = der;
	size_t ptlen = len;
	ks_err_t r = KS_ERR_CRYPTO;

	*out = NULL;
	/* Most modules wrap the point in an OCTET STRING (04 41 04 ...);
	 * some return it bare (04 ...). */
	if (len == 67 && der[0] == 0x04 && der[1] == 0x41) {
		pt = der + 2;
		ptlen = 65;
	}
	if (ptlen != 65 || pt[0] != 0x04)
		return KS_ERR_CRYPTO;
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					    "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
					     ptlen) != 1)
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	r = KS_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return r;
}

ks_err_t ks_p11_keygen(const char *uri, const char *module, EVP_PKEY **pub,
		       char *err, size_t errlen)
{
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE pubt[8], privt[10];
	CK_ULONG np = 0, nv = 0;
	CK_ATTRIBUTE_PTR label, id;
	CK_OBJECT_HANDLE hpub = 0, hpriv = 0, h[1];
	CK_ULONG n = 0;
	CK_BYTE point[128];
	CK_ATTRIBUTE pa = { CKA_EC_POINT, point, sizeof(point) };
	target_t t;
	CK_RV rv;
	ks_err_t r;

	if (pub == NULL)
		return KS_ERR_ARG;
	*pub = NULL;
	r = target_open(uri, module, 1, &t, err, errlen);
	if (r != KS_OK)
		return r;
	r = KS_ERR_ARG;
	label = p11_kit_uri_get_attribute(t.uri, CKA_LABEL);
	id = p11_kit_uri_get_attribute(t.uri, CKA_ID);
	if (label == NULL) {
		set_err(err, errlen, "'%s': object=LABEL is required to create a key",
			uri);
		goto out;
	}
	if (!t.logged_in) {
		set_err(err, errlen, "'%s': a PIN (pin-source=file:PATH) is required",
			uri);
		goto out;
	}
	r = find_objects(&t, CKO_PRIVATE_KEY, h, 1, &n);
	if (r == KS_OK && n == 0)
		r = find_objects(&t, CKO_PUBLIC_KEY, h, 1, &n);
	if (r != KS_OK || n != 0) {
		set_err(err, errlen, "the token already holds a key named by '%s': refusing to create another",
			uri);
		r = r != KS_OK ? r : KS_ERR_DUPLICATE;
		goto out;
	}

#define ADD(arr, cnt, t_, p_, l_)                          \
	do {                                               \
		(arr)[(cnt)].type = (t_);                  \
		(arr)[(cnt)].pValue = (void *)(p_);        \
		(arr)[(cnt)++].ulValueLen = (CK_ULONG)(l_); \
	} while (0)
	ADD(pubt, np, CKA_TOKEN, &yes, sizeof(yes));
	ADD(pubt, np, CKA_PRIVATE, &no, sizeof(no));
	ADD(pubt, np, CKA_VERIFY, &yes, sizeof(yes));
	ADD(pubt, np, CKA_EC_PARAMS, p256_params, sizeof(p256_params));
	ADD(pubt, np, CKA_LABEL, label->pValue, label->ulValueLen);
	ADD(privt, nv, CKA_TOKEN, &yes, sizeof(yes));
	ADD(privt, nv, CKA_PRIVATE, &yes, sizeof(yes));
	ADD(privt, nv, CKA_SENSITIVE, &yes, sizeof(yes));
	ADD(privt, nv, CKA_EXTRACTABLE, &no, sizeof(no));
	ADD(privt, nv, CKA_SIGN, &yes, sizeof(yes));
	ADD(privt, nv, CKA_DERIVE, &no, sizeof(no));
	ADD(privt, nv, CKA_LABEL, label->pValue, label->ulValueLen);
	if (id != NULL) {
		ADD(pubt, np, CKA_ID, id->pValue, id->ulValueLen);
		ADD(privt, nv, CKA_ID, id->pValue, id->ulValueLen);
	}
#undef ADD
	r = KS_ERR_CRYPTO;
	rv = t.mod->fl->C_GenerateKeyPair(t.session, &mech, pubt, np, privt,
					  nv, &hpub, &hpriv);
	if (rv != CKR_OK) {
		set_err(err, errlen, "C_GenerateKeyPair (P-256) in the token: 0x%lx",
			(unsigned long)rv);
		goto out;
	}
	rv = t.mod->fl->C_GetAttributeValue(t.session, hpub, &pa, 1);
	if (rv != CKR_OK || pub_from_ec_point(point, pa.ulValueLen, pub) != KS_OK) {
		set_err(err, errlen, "reading the new public key from the token failed");
		(void)t.mod->fl->C_DestroyObject(t.session, hpriv);
		(void)t.mod->fl->C_DestroyObject(t.session, hpub);
		goto out;
	}
	ks_log_info("P-256 key pair generated in the token (%s)", uri);
	r = KS_OK;
out:
	target_close(&t);
	return r;
}
