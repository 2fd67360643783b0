/*
 * kiln station library: bulk issuance with group commit (see bulk.h).
 */
#include "host/lib/bulk.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "host/lib/hostkey.h"
#include "host/lib/log.h"

typedef struct {
	int64_t session_id;
	char serial[KS_REG_SERIAL_MAX];
	uint8_t uid[KS_ISSUE_UID_MAX];
	size_t uid_len;
	EVP_PKEY *key;
	ks_issued_t cert;
} pending_t;

struct ks_bulk {
	ks_bulk_cfg_t cfg;
	char lot[KS_ISSUE_LOT_MAX];
	char profile[KS_PROFILE_NAME_MAX];
	char actor[KS_REG_NAME_MAX];
	pending_t *pend; /* cfg.group entries */
	size_t npend;
	int open;        /* a registry group is open */
	uint64_t acked;
	ks_bulk_stats_t stats;
	ks_issue_req_t req; /* scratch */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Add the time since *t to *acc and restart *t. */
static void account(uint64_t *acc, uint64_t *t)
{
	uint64_t n = now_ns();

	*acc += n - *t;
	*t = n;
}

ks_err_t ks_bulk_new(const ks_bulk_cfg_t *cfg, ks_bulk_t **out)
{
	ks_bulk_t *b = NULL;

	if (out == NULL)
		return KS_ERR_ARG;
	*out = NULL;
	if (cfg == NULL || cfg->reg == NULL || cfg->signer == NULL ||
	    cfg->lot == NULL || cfg->profile == NULL || cfg->ack == NULL ||
	    cfg->group == 0 || cfg->group > KS_BULK_GROUP_MAX ||
	    strlen(cfg->lot) >= KS_ISSUE_LOT_MAX ||
	    strlen(cfg->profile) >= KS_PROFILE_NAME_MAX ||
	    (cfg->actor != NULL && strlen(cfg->actor) >= KS_REG_NAME_MAX) ||
	    (cfg->origin != KS_REG_KEY_DEVICE && cfg->origin != KS_REG_KEY_HOST))
		return KS_ERR_ARG;
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return KS_ERR_NOMEM;
	b->pend = calloc(cfg->group, sizeof(*b->pend));
	if (b->pend == NULL) {
		free(b);
		return KS_ERR_NOMEM;
	}
	b->cfg = *cfg;
	snprintf(b->lot, sizeof(b->lot), "%s", cfg->lot);
	snprintf(b->profile, sizeof(b->profile), "%s", cfg->profile);
	snprintf(b->actor, sizeof(b->actor), "%s",
		 cfg->actor ? cfg->actor : "kilnd");
	b->cfg.lot = b->lot;
	b->cfg.profile = b->profile;
	b->cfg.actor = b->actor;
	*out = b;
	return KS_OK;
}

/* Forget the pending identities (keys wiped by EVP_PKEY_free). */
static void drop_pending(ks_bulk_t *b)
{
	for (size_t i = 0; i < b->npend; i++) {
		ks_hostkey_free(&b->pend[i].key);
		OPENSSL_cleanse(&b->pend[i], sizeof(b->pend[i]));
	}
	b->npend = 0;
}

void ks_bulk_free(ks_bulk_t **pb)
{
	ks_bulk_t *b;

	if (pb == NULL || *pb == NULL)
		return;
	b = *pb;
	*pb = NULL;
	if (b->open) {
		ks_reg_group_abort(b->cfg.reg);
		if (b->npend != 0)
			ks_log_warn("bulk: %zu identities not flushed were "
				    "rolled back", b->npend);
	}
	drop_pending(b);
	free(b->pend);
	OPENSSL_cleanse(&b->req, sizeof(b->req));
	free(b);
}

ks_err_t ks_bulk_flush(ks_bulk_t *b)
{
	ks_bulk_ack_t ack;
	uint64_t t;
	int rc;

	if (b == NULL)
		return KS_ERR_ARG;
	if (!b->open)
		return KS_OK;
	b->open = 0;
	t = now_ns();
	rc = ks_reg_group_commit(b->cfg.reg);
	if (rc != KS_OK) {
		ks_log_error("bulk: group of %zu identities not recorded: %s",
			     b->npend, ks_strerror(rc));
		drop_pending(b);
		account(&b->stats.commit_ns, &t);
		return (ks_err_t)rc;
	}
	/* durable: only now may anyone see these identities */
	for (size_t i = 0; i < b->npend; i++) {
		pending_t *p = &b->pend[i];

		memset(&ack, 0, sizeof(ack));
		ack.session_id = p->session_id;
		memcpy(ack.serial, p->serial, sizeof(ack.serial));
		memcpy(ack.uid, p->uid, p->uid_len);
		ack.uid_len = p->uid_len;
		ack.cert = &p->cert;
		ack.key = p->key;
		b->cfg.ack(b->cfg.ack_arg, &ack);
		b->acked++;
	}
	drop_pending(b);
	account(&b->stats.commit_ns, &t);
	return KS_OK;
}

uint64_t ks_bulk_acked(const ks_bulk_t *b)
{
	return b ? b->acked : 0;
}

void ks_bulk_stats(const ks_bulk_t *b, ks_bulk_stats_t *out)
{
	if (out == NULL)
		return;
	if (b == NULL)
		memset(out, 0, sizeof(*out));
	else
		*out = b->stats;
}

/* The common part: RESERVED, KEYED, sign, ISSUED inside the open group.
 * Takes *key (host origin) into the pending entry. */
static ks_err_t issue_one(ks_bulk_t *b, const uint8_t *uid, size_t uid_len,
			  const uint8_t pt[KS_P256_POINT_LEN], EVP_PKEY **key)
{
	ks_reg_session_t sess;
	ks_issue_req_t *req = &b->req;
	pending_t *p;
	uint8_t spki_hash[32];
	uint64_t t = now_ns();
	int rc;
	ks_err_t r;

	if (!b->open) {
		rc = ks_reg_group_begin(b->cfg.reg);
		if (rc != KS_OK) {
			account(&b->stats.registry_ns, &t);
			return (ks_err_t)rc;
		}
		b->open = 1;
	}
	p = &b->pend[b->npend];
	memset(p, 0, sizeof(*p));
	rc = ks_reg_session_begin(b->cfg.reg, uid, uid_len, b->lot,
				  b->profile, -1, b->cfg.origin, 0,
				  b->actor, &sess);
	account(&b->stats.registry_ns, &t);
	if (rc != KS_OK)
		return (ks_err_t)rc;
	memset(req, 0, sizeof(*req));
	snprintf(req->profile, sizeof(req->profile), "%s", b->profile);
	snprintf(req->serial, sizeof(req->serial), "%s", sess.serial);
	snprintf(req->lot, sizeof(req->lot), "%s", b->lot);
	memcpy(req->uid, uid, uid_len);
	req->uid_len = (uint32_t)uid_len;
	req->origin = b->cfg.origin == KS_REG_KEY_HOST
			      ? (uint32_t)KS_KEY_ORIGIN_HOST
			      : (uint32_t)KS_KEY_ORIGIN_DEVICE;
	req->session_id = sess.id;
	/* set_point checks the point and writes the canonical SPKI: its hash
	 * is the registry's key fingerprint (no second check of the point) */
	r = ks_issue_req_set_point(req, pt);
	if (r == KS_OK && SHA256(req->spki, req->spki_len, spki_hash) == NULL)
		r = KS_ERR_CRYPTO;
	account(&b->stats.sign_ns, &t);
	if (r != KS_OK)
		goto fail;
	rc = ks_reg_keyed(b->cfg.reg, sess.id, spki_hash, b->cfg.origin,
			  b->actor);
	account(&b->stats.registry_ns, &t);
	if (rc != KS_OK) {
		r = (ks_err_t)rc;
		goto fail;
	}
	r = ks_signer_issue(b->cfg.signer, req, &p->cert);
	account(&b->stats.sign_ns, &t);
	if (r != KS_OK)
		goto fail;
	rc = ks_reg_cert_issued(b->cfg.reg, sess.id, p->cert.der,
				p->cert.der_len, p->cert.serial_hex,
				p->cert.spki_sha256, p->cert.not_before,
				p->cert.not_after, b->actor);
	account(&b->stats.registry_ns, &t);
	if (rc != KS_OK) {
		r = (ks_err_t)rc;
		goto fail;
	}
	p->session_id = sess.id;
	memcpy(p->serial, sess.serial, sizeof(p->serial));
	memcpy(p->uid, uid, uid_len);
	p->uid_len = uid_len;
	if (key != NULL) {
		p->key = *key;
		*key = NULL;
	}
	b->npend++;
	if (b->npend == b->cfg.group)
		r = ks_bulk_flush(b);
	return r;
fail:
	OPENSSL_cleanse(&p->cert, sizeof(p->cert));
	if (ks_reg_fail(b->cfg.reg, sess.id, KS_REG_FAILED, ks_strerror(r),
			b->actor) != KS_OK)
		ks_log_warn("bulk: session %lld not closed",
			    (long long)sess.id);
	account(&b->stats.registry_ns, &t);
	return r;
}

ks_err_t ks_bulk_host(ks_bulk_t *b, const uint8_t *uid, size_t uid_len)
{
	EVP_PKEY *key = NULL;
	uint8_t pt[KS_P256_POINT_LEN];
	uint64_t t;
	ks_err_t r;

	if (b == NULL || uid == NULL || uid_len < KS_ISSUE_UID_MIN ||
	    uid_len > KS_ISSUE_UID_MAX || b->cfg.origin != KS_REG_KEY_HOST)
		return KS_ERR_ARG;
	t = now_ns();
	r = ks_hostkey_generate(&key);
	if (r == KS_OK)
		r = ks_hostkey_pubkey_point(key, pt);
	account(&b->stats.keygen_ns, &t);
	if (r == KS_OK)
		r = issue_one(b, uid, uid_len, pt, &key);
	ks_hostkey_free(&key);
	return r;
}

ks_err_t ks_bulk_csr(ks_bulk_t *b, const uint8_t *uid, size_t uid_len,
		     const uint8_t *csr, size_t csr_len)
{
	const unsigned char *cur = csr;
	X509_REQ *req = NULL;
	EVP_PKEY *pub;
	uint8_t pt[KS_P256_POINT_LEN];
	uint64_t t = 0;
	int checked = 0;
	ks_err_t r = KS_ERR_ARG;

	if (b == NULL || uid == NULL || uid_len < KS_ISSUE_UID_MIN ||
	    uid_len > KS_ISSUE_UID_MAX || csr == NULL || csr_len == 0 ||
	    csr_len > KS_ISSUE_SPKI_MAX * 4 || b->cfg.origin != KS_REG_KEY_DEVICE)
		goto out;
	r = KS_ERR_VERIFY;
	t = now_ns();
	req = d2i_X509_REQ(NULL, &cur, (long)csr_len);
	if (req == NULL || cur != csr + csr_len) {
		ks_log_warn("bulk: CSR does not parse completely");
		goto out;
	}
	pub = X509_REQ_get0_pubkey(req);
	if (pub == NULL || ks_pubkey_point(pub, pt) != KS_OK) {
		ks_log_warn("bulk: CSR key is not P-256");
		goto out;
	}
	if (X509_REQ_verify(req, pub) != 1) {
		ks_log_warn("bulk: CSR signature does not verify");
		goto out;
	}
	account(&b->stats.csr_ns, &t);
	checked = 1;
	r = issue_one(b, uid, uid_len, pt, NULL);
out:
	if (b != NULL && t != 0 && !checked)
		account(&b->stats.csr_ns, &t);
	X509_REQ_free(req);
	return r;
}
