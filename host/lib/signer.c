/*
 * kiln station library: the signer (policy checks, lot quotas, issuance).
 * OpenSSL 3 EVP / X509 APIs only; extensions are built as ASN.1 structures,
 * never from configuration strings, so no value can inject extra fields.
 */
#include "host/lib/signer.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "host/lib/ca_priv.h"
#include "host/lib/log.h"
#include "host/lib/signer_priv.h"

struct lot_entry {
	char lot[KS_ISSUE_LOT_MAX];
	uint64_t issued;
	uint64_t quota;    /* override; valid when has_quota */
	int has_quota;
};

struct ks_signer {
	ks_ca_t *ca;
	X509_EXTENSION *akid; /* authorityKeyIdentifier, same for every leaf */
	time_t ca_not_after;
	uint8_t **chain_der;
	size_t *chain_len;
	size_t chain_n;
	ks_profile_t *profiles;
	size_t n_profiles;
	struct lot_entry *lots;
	size_t n_lots;
	pthread_mutex_t lock;
	/* client of a signer process (ks_signer_connect()): no CA, no
	 * profiles; lock serialises the round trips on remote_fd */
	int remote;
	int remote_fd;
	pid_t remote_pid;
	STACK_OF(X509) *remote_chain;
};

static int name_ok(const char *s, size_t cap, int allow_empty)
{
	const char *nul = memchr(s, '\0', cap);
	const char *p;

	if (nul == NULL || (!allow_empty && nul == s))
		return 0;
	for (p = s; p < nul; p++) {
		if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '_' ||
		      *p == '-'))
			return 0;
	}
	return 1;
}

ks_err_t ks_issue_req_set_pubkey(ks_issue_req_t *req, const EVP_PKEY *key)
{
	unsigned char *der = NULL;
	int len;

	if (req == NULL || key == NULL)
		return KS_ERR_ARG;
	len = i2d_PUBKEY(key, &der);
	if (len <= 0)
		return KS_ERR_CRYPTO;
	if ((size_t)len > sizeof(req->spki)) {
		OPENSSL_free(der);
		return KS_ERR_POLICY;
	}
	memcpy(req->spki, der, (size_t)len);
	req->spki_len = (uint32_t)len;
	OPENSSL_free(der);
	return KS_OK;
}

ks_err_t ks_issue_req_set_point(ks_issue_req_t *req,
				const uint8_t pt[KS_P256_POINT_LEN])
{
	ks_err_t r;

	if (req == NULL || pt == NULL)
		return KS_ERR_ARG;
	r = ks_pubkey_point_check(pt); /* on the curve? */
	if (r != KS_OK)
		return r;
	ks_pubkey_spki_encode(pt, req->spki);
	req->spki_len = KS_P256_SPKI_LEN;
	return KS_OK;
}

/* authorityKeyIdentifier: the issuer's SKI, or RFC 5280 method 1. */
static X509_EXTENSION *make_akid(X509 *issuer)
{
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	X509_EXTENSION *ext = NULL;

	if (akid == NULL)
		goto out;
	if (ski != NULL) {
		akid->keyid = ASN1_OCTET_STRING_dup(ski);
	} else if (X509_pubkey_digest(issuer, EVP_sha1(), md, &mdlen) == 1) {
		akid->keyid = ASN1_OCTET_STRING_new();
		if (akid->keyid != NULL &&
		    ASN1_OCTET_STRING_set(akid->keyid, md, (int)mdlen) != 1) {
			ASN1_OCTET_STRING_free(akid->keyid);
			akid->keyid = NULL;
		}
	}
	if (akid->keyid == NULL)
		goto out;
	ext = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
out:
	AUTHORITY_KEYID_free(akid);
	return ext;
}

static ks_err_t chain_to_der(ks_signer_t *s, const STACK_OF(X509) *chain);

ks_err_t ks_signer_new(ks_ca_t **ca, ks_signer_t **out)
{
	ks_signer_t *s = NULL;
	const STACK_OF(X509) *chain;
	struct tm tm;
	ks_err_t r = KS_ERR_ARG;

	if (out != NULL)
		*out = NULL;
	if (ca == NULL || *ca == NULL || out == NULL)
		goto out;
	r = KS_ERR_NOMEM;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto out;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		s = NULL;
		goto out;
	}
	s->ca = *ca;
	*ca = NULL;
	r = KS_ERR_CRYPTO;
	s->akid = make_akid(ks_ca_cert_borrow(s->ca));
	if (s->akid == NULL)
		goto out;
	if (ASN1_TIME_to_tm(X509_get0_notAfter(ks_ca_cert_borrow(s->ca)),
			    &tm) != 1)
		goto out;
	s->ca_not_after = timegm(&tm);
	chain = ks_ca_chain(s->ca);
	r = chain_to_der(s, chain);
	if (r != KS_OK)
		goto out;
	*out = s;
	s = NULL;
	r = KS_OK;
out:
	ks_signer_free(&s);
	if (ca != NULL)
		ks_ca_free(ca);
	return r;
}

void ks_signer_free(ks_signer_t **signer)
{
	ks_signer_t *s;
	size_t i;

	if (signer == NULL || *signer == NULL)
		return;
	s = *signer;
	if (s->remote) {
		ks_signer_remote_close(s->remote_fd, s->remote_pid);
		sk_X509_pop_free(s->remote_chain, X509_free);
	}
	for (i = 0; s->chain_der != NULL && i < s->chain_n; i++)
		OPENSSL_free(s->chain_der[i]);
	free(s->chain_der);
	free(s->chain_len);
	X509_EXTENSION_free(s->akid);
	free(s->profiles);
	free(s->lots);
	ks_ca_free(&s->ca);
	pthread_mutex_destroy(&s->lock);
	free(s);
	*signer = NULL;
}

ks_err_t ks_signer_add_profile(ks_signer_t *signer, const ks_profile_t *p)
{
	char err[256];
	ks_profile_t *np;
	size_t i;
	ks_err_t r;

	if (signer == NULL || p == NULL)
		return KS_ERR_ARG;
	if (signer->remote)
		return KS_ERR_UNSUPPORTED;
	r = ks_profile_validate(p, err, sizeof(err));
	if (r != KS_OK) {
		ks_log_error("%s", err);
		return r;
	}
	pthread_mutex_lock(&signer->lock);
	r = KS_ERR_DUPLICATE;
	for (i = 0; i < signer->n_profiles; i++) {
		if (strcmp(signer->profiles[i].name, p->name) == 0)
			goto out;
	}
	r = KS_ERR_NOMEM;
	np = realloc(signer->profiles,
		     (signer->n_profiles + 1) * sizeof(*np));
	if (np == NULL)
		goto out;
	signer->profiles = np;
	signer->profiles[signer->n_profiles++] = *p;
	r = KS_OK;
out:
	pthread_mutex_unlock(&signer->lock);
	return r;
}

/* Find or add the entry of a lot; call with the lock held. */
static struct lot_entry *lot_get(ks_signer_t *s, const char *lot)
{
	struct lot_entry *nl;
	size_t i;

	for (i = 0; i < s->n_lots; i++) {
		if (strcmp(s->lots[i].lot, lot) == 0)
			return &s->lots[i];
	}
	nl = realloc(s->lots, (s->n_lots + 1) * sizeof(*nl));
	if (nl == NULL)
		return NULL;
	s->lots = nl;
	memset(&nl[s->n_lots], 0, sizeof(nl[0]));
	snprintf(nl[s->n_lots].lot, sizeof(nl[0].lot), "%s", lot);
	return &nl[s->n_lots++];
}

ks_err_t ks_signer_set_lot_quota(ks_signer_t *signer, const char *lot,
				 uint64_t quota)
{
	struct lot_entry *e;
	ks_err_t r = KS_ERR_NOMEM;

	if (signer == NULL || lot == NULL ||
	    !name_ok(lot, KS_ISSUE_LOT_MAX, 1))
		return KS_ERR_ARG;
	if (signer->remote)
		return KS_ERR_UNSUPPORTED;
	pthread_mutex_lock(&signer->lock);
	e = lot_get(signer, lot);
	if (e != NULL) {
		e->quota = quota;
		e->has_quota = 1;
		r = KS_OK;
	}
	pthread_mutex_unlock(&signer->lock);
	return r;
}

ks_err_t ks_signer_set_lot_issued(ks_signer_t *signer, const char *lot,
				  uint64_t issued)
{
	struct lot_entry *e;
	ks_err_t r = KS_ERR_NOMEM;

	if (signer == NULL || lot == NULL ||
	    !name_ok(lot, KS_ISSUE_LOT_MAX, 1))
		return KS_ERR_ARG;
	if (signer->remote)
		return KS_ERR_UNSUPPORTED;
	pthread_mutex_lock(&signer->lock);
	e = lot_get(signer, lot);
	if (e != NULL) {
		e->issued = issued;
		r = KS_OK;
	}
	pthread_mutex_unlock(&signer->lock);
	return r;
}

uint64_t ks_signer_lot_issued(ks_signer_t *signer, const char *lot)
{
	uint64_t n = 0;
	size_t i;

	if (signer == NULL || lot == NULL)
		return 0;
	pthread_mutex_lock(&signer->lock);
	for (i = 0; i < signer->n_lots; i++) {
		if (strcmp(signer->lots[i].lot, lot) == 0)
			n = signer->lots[i].issued;
	}
	pthread_mutex_unlock(&signer->lock);
	return n;
}

size_t ks_signer_chain_len(const ks_signer_t *signer)
{
	return signer != NULL ? signer->chain_n : 0;
}

ks_err_t ks_signer_chain_der(const ks_signer_t *signer, size_t idx,
			     const uint8_t **der, size_t *len)
{
	if (signer == NULL || der == NULL || len == NULL ||
	    idx >= signer->chain_n)
		return KS_ERR_ARG;
	*der = signer->chain_der[idx];
	*len = signer->chain_len[idx];
	return KS_OK;
}

const STACK_OF(X509) *ks_signer_chain(const ks_signer_t *signer)
{
	if (signer == NULL)
		return NULL;
	return signer->remote ? signer->remote_chain : ks_ca_chain(signer->ca);
}

int ks_signer_is_remote(const ks_signer_t *signer)
{
	return signer != NULL && signer->remote;
}

/* DER copies of the chain for ks_signer_chain_der(). */
static ks_err_t chain_to_der(ks_signer_t *s, const STACK_OF(X509) *chain)
{
	size_t i;

	s->chain_n = (size_t)sk_X509_num(chain);
	s->chain_der = calloc(s->chain_n ? s->chain_n : 1,
			      sizeof(*s->chain_der));
	s->chain_len = calloc(s->chain_n ? s->chain_n : 1,
			      sizeof(*s->chain_len));
	if (s->chain_der == NULL || s->chain_len == NULL)
		return KS_ERR_NOMEM;
	for (i = 0; i < s->chain_n; i++) {
		int len = i2d_X509(sk_X509_value(chain, (int)i),
				   &s->chain_der[i]);

		if (len <= 0)
			return KS_ERR_CRYPTO;
		s->chain_len[i] = (size_t)len;
	}
	return KS_OK;
}

ks_err_t ks_signer_new_remote(int fd, pid_t pid, STACK_OF(X509) *chain,
			      ks_signer_t **out)
{
	ks_signer_t *s;
	ks_err_t r;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return KS_ERR_NOMEM;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return KS_ERR_NOMEM;
	}
	r = chain_to_der(s, chain);
	if (r != KS_OK) {
		ks_signer_free(&s); /* not remote yet: fd stays with the caller */
		return r;
	}
	s->remote = 1;
	s->remote_fd = fd;
	s->remote_pid = pid;
	s->remote_chain = chain;
	*out = s;
	return KS_OK;
}

/* Reserve one certificate of the lot's quota; call without the lock. */
static ks_err_t quota_take(ks_signer_t *s, const char *lot,
			   uint64_t profile_quota)
{
	struct lot_entry *e;
	uint64_t quota;
	ks_err_t r = KS_ERR_NOMEM;

	pthread_mutex_lock(&s->lock);
	e = lot_get(s, lot);
	if (e == NULL)
		goto out;
	quota = e->has_quota ? e->quota : profile_quota;
	if (quota != 0 && e->issued >= quota) {
		ks_log_warn("lot '%s': quota of %llu certificates reached", lot,
			    (unsigned long long)quota);
		r = KS_ERR_QUOTA;
		goto out;
	}
	e->issued++;
	r = KS_OK;
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void quota_give_back(ks_signer_t *s, const char *lot)
{
	struct lot_entry *e;

	pthread_mutex_lock(&s->lock);
	e = lot_get(s, lot);
	if (e != NULL && e->issued > 0)
		e->issued--;
	pthread_mutex_unlock(&s->lock);
}

/*
 * Parse the request's SPKI into a P-256 point, checked to be on the curve.
 * The canonical encoding takes a fast path; anything else (compressed
 * points, other algorithms) goes through the generic decoder.
 */
static ks_err_t subject_point(const ks_issue_req_t *req,
			      uint8_t pt[KS_P256_POINT_LEN])
{
	const unsigned char *p = req->spki;
	EVP_PKEY *pk = NULL;
	ks_err_t r;

	if (req->spki_len == 0 || req->spki_len > sizeof(req->spki))
		return KS_ERR_ARG;
	if (!ks_pubkey_spki_point(req->spki, req->spki_len, pt)) {
		pk = d2i_PUBKEY(NULL, &p, (long)req->spki_len);
		if (pk == NULL || p != req->spki + req->spki_len) {
			EVP_PKEY_free(pk);
			ERR_clear_error();
			ks_log_error("subject public key is not a single DER SubjectPublicKeyInfo");
			return KS_ERR_POLICY;
		}
		r = ks_pubkey_point(pk, pt);
		EVP_PKEY_free(pk);
		pk = NULL;
		if (r != KS_OK) {
			ks_log_error("subject key refused: the profile allows EC P-256 only");
			return KS_ERR_POLICY;
		}
	}
	r = ks_pubkey_point_check(pt);
	if (r != KS_OK) {
		ks_log_error("subject key refused: not a valid P-256 point");
		return KS_ERR_POLICY;
	}
	return KS_OK;
}

ks_err_t ks_issue_req_spki_sha256(const ks_issue_req_t *req, uint8_t out[32])
{
	uint8_t pt[KS_P256_POINT_LEN], spki[KS_P256_SPKI_LEN];
	unsigned int mdlen = 0;
	ks_err_t r;

	if (req == NULL || out == NULL)
		return KS_ERR_ARG;
	r = subject_point(req, pt);
	if (r != KS_OK)
		return r;
	ks_pubkey_spki_encode(pt, spki);
	if (EVP_Digest(spki, sizeof(spki), out, &mdlen, EVP_sha256(), NULL) != 1)
		return KS_ERR_CRYPTO;
	return KS_OK;
}

/* Put the canonical SPKI of pt into the certificate (no encoder round). */
static int set_subject_key(X509 *x, const uint8_t pt[KS_P256_POINT_LEN])
{
	X509_PUBKEY *pub = X509_get_X509_PUBKEY(x);
	unsigned char *bits = OPENSSL_memdup(pt, KS_P256_POINT_LEN);

	if (pub == NULL || bits == NULL ||
	    X509_PUBKEY_set0_param(pub, OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
				   V_ASN1_OBJECT,
				   OBJ_nid2obj(NID_X9_62_prime256v1), bits,
				   KS_P256_POINT_LEN) != 1) {
		OPENSSL_free(bits);
		return 0;
	}
	return 1;
}

static X509_NAME *build_subject(const ks_profile_t *prof,
				const ks_profile_vars_t *vars, ks_err_t *rp)
{
	X509_NAME *name = X509_NAME_new();
	char val[KS_PROFILE_TEMPLATE_MAX];
	uint32_t i;

	*rp = KS_ERR_NOMEM;
	if (name == NULL)
		return NULL;
	for (i = 0; i < prof->rdn_count; i++) {
		const ks_profile_rdn_t *rdn = &prof->rdn[i];
		size_t len;

		*rp = ks_profile_expand(rdn->value, vars, val, sizeof(val));
		if (*rp != KS_OK) {
			*rp = KS_ERR_POLICY;
			goto fail;
		}
		len = strlen(val);
		if (len == 0 || len > ks_profile_rdn_max_len(rdn->nid)) {
			ks_log_error("profile '%s': subject attribute %s expands to %zu characters",
				     prof->name, OBJ_nid2sn(rdn->nid), len);
			*rp = KS_ERR_POLICY;
			goto fail;
		}
		if (X509_NAME_add_entry_by_NID(name, rdn->nid, MBSTRING_UTF8,
					       (const unsigned char *)val, -1,
					       -1, 0) != 1) {
			*rp = KS_ERR_CRYPTO;
			goto fail;
		}
	}
	*rp = KS_OK;
	return name;
fail:
	X509_NAME_free(name);
	return NULL;
}

static int push_gn(GENERAL_NAMES *gens, int type, const char *v)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();

	if (gn == NULL || s == NULL ||
	    ASN1_STRING_set(s, v, (int)strlen(v)) != 1)
		goto fail;
	GENERAL_NAME_set0_value(gn, type, s);
	s = NULL;
	if (sk_GENERAL_NAME_push(gens, gn) <= 0)
		goto fail;
	return 1;
fail:
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(gn);
	return 0;
}

static GENERAL_NAMES *build_san(const ks_profile_t *prof,
				const ks_profile_vars_t *vars, ks_err_t *rp)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	char val[KS_PROFILE_TEMPLATE_MAX * 2];
	char uid_urn[KS_PROFILE_TEMPLATE_MAX * 2];
	uint32_t i;

	*rp = KS_ERR_NOMEM;
	if (gens == NULL)
		return NULL;
	snprintf(uid_urn, sizeof(uid_urn), "%s%s", KS_PROFILE_UID_URN_PREFIX,
		 vars->uid_hex);
	if (!push_gn(gens, GEN_URI, uid_urn))
		goto fail;
	for (i = 0; i < prof->san_uri_count + prof->san_dns_count; i++) {
		int dns = i >= prof->san_uri_count;
		const char *t = dns ? prof->san_dns[i - prof->san_uri_count] :
				      prof->san_uri[i];

		if (ks_profile_expand(t, vars, val, sizeof(val)) != KS_OK ||
		    (dns ? !ks_profile_dns_name_ok(val) :
			   !ks_profile_uri_ok(val))) {
			ks_log_error("profile '%s': SAN template '%s' does not give a valid %s",
				     prof->name, t, dns ? "DNS name" : "URI");
			*rp = KS_ERR_POLICY;
			goto fail;
		}
		/* the UID URN is always the first SAN: never twice */
		if (!dns && strcmp(val, uid_urn) == 0)
			continue;
		if (!push_gn(gens, dns ? GEN_DNS : GEN_URI, val))
			goto fail;
	}
	*rp = KS_OK;
	return gens;
fail:
	GENERAL_NAMES_free(gens);
	return NULL;
}

/* Add the end-entity extensions: BC, KU, EKU, SAN, SKI, AKI. */
static int add_extensions(ks_signer_t *s, X509 *x, const ks_profile_t *prof,
			  GENERAL_NAMES *san)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int ok = 0;

	if (bc == NULL || ku == NULL || eku == NULL || ski == NULL)
		goto out;
	bc->ca = 0;
	if (X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1,
			      X509V3_ADD_DEFAULT) != 1)
		goto out;
	if (((prof->key_usage & KS_KU_DIGITAL_SIGNATURE) &&
	     ASN1_BIT_STRING_set_bit(ku, 0, 1) != 1) ||
	    ((prof->key_usage & KS_KU_NON_REPUDIATION) &&
	     ASN1_BIT_STRING_set_bit(ku, 1, 1) != 1) ||
	    ((prof->key_usage & KS_KU_KEY_AGREEMENT) &&
	     ASN1_BIT_STRING_set_bit(ku, 4, 1) != 1))
		goto out;
	if (X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) != 1)
		goto out;
	if (((prof->ext_key_usage & KS_EKU_CLIENT_AUTH) &&
	     sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) <= 0) ||
	    ((prof->ext_key_usage & KS_EKU_SERVER_AUTH) &&
	     sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) <= 0))
		goto out;
	if ((prof->ext_key_usage & KS_EKU_KILN_CLAIM) != 0) {
		ASN1_OBJECT *claim = OBJ_txt2obj(KS_PROFILE_CLAIM_OID, 1);

		if (claim == NULL || sk_ASN1_OBJECT_push(eku, claim) <= 0) {
			ASN1_OBJECT_free(claim);
			goto out;
		}
	}
	if (X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0,
			      X509V3_ADD_DEFAULT) != 1)
		goto out;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0,
			      X509V3_ADD_DEFAULT) != 1)
		goto out;
	/* subjectKeyIdentifier: RFC 5280 4.2.1.2 method 1 (SHA-1 of the key). */
	if (X509_pubkey_digest(x, EVP_sha1(), md, &mdlen) != 1 ||
	    ASN1_OCTET_STRING_set(ski, md, (int)mdlen) != 1 ||
	    X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0,
			      X509V3_ADD_DEFAULT) != 1)
		goto out;
	if (X509_add_ext(x, s->akid, -1) != 1)
		goto out;
	ok = 1;
out:
	ASN1_OCTET_STRING_free(ski);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	ASN1_BIT_STRING_free(ku);
	BASIC_CONSTRAINTS_free(bc);
	return ok;
}

static void hex_lower(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

ks_err_t ks_signer_issue(ks_signer_t *signer, const ks_issue_req_t *req,
			 ks_issued_t *out)
{
	const ks_profile_t *prof = NULL;
	ks_profile_t prof_copy;
	ks_profile_vars_t vars;
	char uid_hex[2 * KS_ISSUE_UID_MAX + 1];
	uint8_t raw_serial[KS_CA_SERIAL_LEN];
	uint8_t pt[KS_P256_POINT_LEN];
	X509 *x = NULL;
	X509_NAME *subj = NULL;
	GENERAL_NAMES *san = NULL;
	ASN1_INTEGER *serial = NULL;
	unsigned char *der = NULL, *spki = NULL;
	unsigned int mdlen = 0;
	time_t now, nb, na;
	int len, taken = 0;
	size_t i;
	ks_err_t r = KS_ERR_ARG;

	if (signer == NULL || req == NULL || out == NULL)
		return KS_ERR_ARG;
	memset(out, 0, sizeof(*out));
	if (signer->remote) {
		pthread_mutex_lock(&signer->lock);
		r = ks_signer_remote_issue(signer->remote_fd, req, out);
		pthread_mutex_unlock(&signer->lock);
		return r;
	}
	if (!name_ok(req->profile, sizeof(req->profile), 0) ||
	    !name_ok(req->serial, sizeof(req->serial), 0) ||
	    !name_ok(req->lot, sizeof(req->lot), 1) ||
	    req->uid_len < KS_ISSUE_UID_MIN || req->uid_len > KS_ISSUE_UID_MAX) {
		ks_log_error("malformed issuance request");
		goto out;
	}
	pthread_mutex_lock(&signer->lock);
	for (i = 0; i < signer->n_profiles; i++) {
		if (strcmp(signer->profiles[i].name, req->profile) == 0) {
			prof_copy = signer->profiles[i];
			prof = &prof_copy;
		}
	}
	pthread_mutex_unlock(&signer->lock);
	if (prof == NULL) {
		ks_log_error("unknown profile '%s'", req->profile);
		r = KS_ERR_NOTFOUND;
		goto out;
	}
	if (req->origin != (uint32_t)prof->key_origin) {
		ks_log_error("profile '%s' takes %s-generated keys, request says %s",
			     prof->name, ks_profile_origin_name(prof->key_origin),
			     ks_profile_origin_name((ks_key_origin_t)req->origin));
		r = KS_ERR_POLICY;
		goto out;
	}
	r = subject_point(req, pt);
	if (r != KS_OK)
		goto out;

	hex_lower(req->uid, req->uid_len, uid_hex);
	vars.serial = req->serial;
	vars.uid_hex = uid_hex;
	vars.lot = req->lot;
	vars.profile = prof->name;
	subj = build_subject(prof, &vars, &r);
	if (subj == NULL)
		goto out;
	san = build_san(prof, &vars, &r);
	if (san == NULL)
		goto out;

	now = time(NULL);
	nb = now - (time_t)prof->backdate_seconds;
	na = now + (time_t)prof->validity_days * 86400;
	/* A certificate never outlives its issuer. */
	if (na > signer->ca_not_after)
		na = signer->ca_not_after;
	if (na <= now) {
		ks_log_error("the issuing CA has expired");
		r = KS_ERR_POLICY;
		goto out;
	}

	r = quota_take(signer, req->lot, prof->lot_quota);
	if (r != KS_OK)
		goto out;
	taken = 1;

	r = KS_ERR_CRYPTO;
	x = X509_new();
	if (x == NULL)
		goto out;
	if (ks_ca_random_serial(raw_serial, &serial) != KS_OK)
		goto out;
	if (X509_set_version(x, X509_VERSION_3) != 1 ||
	    X509_set_serialNumber(x, serial) != 1 ||
	    X509_set_issuer_name(
		    x, X509_get_subject_name(ks_ca_cert_borrow(signer->ca))) != 1 ||
	    X509_set_subject_name(x, subj) != 1 ||
	    ASN1_TIME_set(X509_getm_notBefore(x), nb) == NULL ||
	    ASN1_TIME_set(X509_getm_notAfter(x), na) == NULL ||
	    !set_subject_key(x, pt))
		goto out;
	if (!add_extensions(signer, x, prof, san))
		goto out;
	if (ks_ca_sign_der(signer->ca, x, &der, &len) != KS_OK)
		goto out;
	if ((size_t)len > sizeof(out->der)) {
		ks_log_error("certificate of %d bytes exceeds %zu", len,
			     sizeof(out->der));
		r = KS_ERR_POLICY;
		goto out;
	}
	memcpy(out->der, der, (size_t)len);
	out->der_len = (uint32_t)len;
	len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);
	if (len <= 0 || EVP_Digest(spki, (size_t)len, out->spki_sha256, &mdlen,
				   EVP_sha256(), NULL) != 1)
		goto out;
	hex_lower(raw_serial, sizeof(raw_serial), out->serial_hex);
	out->not_before = (int64_t)nb;
	out->not_after = (int64_t)na;
	ks_log_debug("issued %s for %s (profile %s, lot '%s')", out->serial_hex,
		     req->serial, prof->name, req->lot);
	r = KS_OK;
out:
	if (r != KS_OK) {
		if (taken)
			quota_give_back(signer, req->lot);
		memset(out, 0, sizeof(*out));
		ERR_clear_error();
	}
	OPENSSL_free(spki);
	OPENSSL_free(der);
	ASN1_INTEGER_free(serial);
	GENERAL_NAMES_free(san);
	X509_NAME_free(subj);
	X509_free(x);
	return r;
}
