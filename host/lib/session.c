/*
 * kiln station library: the provisioning session engine.
 *
 * One run drives one board:
 *
 *   HELLO -> RESERVED -> KEYED -> ISSUED -> WRITTEN -> VERIFIED -> LOCKED
 *   -> ACTIVE
 *
 * Each step is journaled in the registry before its irreversible effect:
 * the serial is reserved before the board writes a key; a host key is
 * journaled (by its public key hash) before it is injected; the
 * certificate is recorded before it is sent; VERIFIED is recorded before
 * the part is locked. The registry's ACTIVE row is the only thing that
 * makes a run succeed.
 *
 * When the link to a board is lost after a certificate was issued, the
 * session is parked (it stays unfinished, with an INTERRUPTED note in the
 * audit log). When a board with that UID answers again, its HELLO says what
 * it holds, and the run completes the parked session (delivering the same
 * certificate, or continuing from the committed identity) or voids it when
 * the board no longer holds the journaled key. Failures before a
 * certificate exists end the session FAILED (retryable, nothing lost).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "host/lib/agent.h"
#include "host/lib/hostkey.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"
#include "host/lib/registry_health.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"
#include "protocol/msg.h"

#define KS_ENGINE_MAX_INFLIGHT 256
#define KS_NONCE_LEN 32u
#define KS_META_MAX 512u

struct ks_engine {
	char station[KS_REG_NAME_MAX];
	ks_reg_t *reg;
	ks_signer_t *signer;
	ks_profile_t *const *profiles;
	size_t nprofiles;
	/* UIDs being provisioned right now, so two slots never work on one
	 * board identity (or resume one parked session) at the same time */
	pthread_mutex_t lock;
	uint8_t inflight[KS_ENGINE_MAX_INFLIGHT][KS_UID_MAX];
	size_t inflight_len[KS_ENGINE_MAX_INFLIGHT];
};

static const char *const step_names[KS_STEP__COUNT] = {
	[KS_STEP_NONE] = "NONE",         [KS_STEP_HELLO] = "HELLO",
	[KS_STEP_RESERVED] = "RESERVED", [KS_STEP_KEYED] = "KEYED",
	[KS_STEP_ISSUED] = "ISSUED",     [KS_STEP_WRITTEN] = "WRITTEN",
	[KS_STEP_VERIFIED] = "VERIFIED", [KS_STEP_LOCKED] = "LOCKED",
	[KS_STEP_ACTIVE] = "ACTIVE",     [KS_STEP_FAILED] = "FAILED",
	[KS_STEP_VOID] = "VOID",         [KS_STEP_SCRAPPED] = "SCRAPPED",
	[KS_STEP_REFUSED] = "REFUSED",
};

const char *ks_step_name(ks_step_t s)
{
	if ((unsigned)s >= KS_STEP__COUNT)
		return "?";
	return step_names[s];
}

ks_err_t ks_engine_new(const ks_engine_config_t *cfg, ks_engine_t **out)
{
	ks_engine_t *e;

	if (cfg == NULL || out == NULL || cfg->reg == NULL ||
	    cfg->signer == NULL || cfg->station_id == NULL ||
	    (cfg->profiles == NULL && cfg->nprofiles > 0))
		return KS_ERR_ARG;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return KS_ERR_NOMEM;
	snprintf(e->station, sizeof(e->station), "%s", cfg->station_id);
	e->reg = cfg->reg;
	e->signer = cfg->signer;
	e->profiles = cfg->profiles;
	e->nprofiles = cfg->nprofiles;
	pthread_mutex_init(&e->lock, NULL);
	*out = e;
	return KS_OK;
}

void ks_engine_free(ks_engine_t **e)
{
	if (e == NULL || *e == NULL)
		return;
	pthread_mutex_destroy(&(*e)->lock);
	free(*e);
	*e = NULL;
}

static const ks_profile_t *find_profile(const ks_engine_t *e, const char *name)
{
	for (size_t i = 0; name != NULL && i < e->nprofiles; i++)
		if (strcmp(e->profiles[i]->name, name) == 0)
			return e->profiles[i];
	return NULL;
}

/* Claim a UID for this run; 0 if another slot already holds it. */
static int inflight_claim(ks_engine_t *e, const uint8_t *uid, size_t len)
{
	int ok = 0;
	size_t free_at = KS_ENGINE_MAX_INFLIGHT;

	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < KS_ENGINE_MAX_INFLIGHT; i++) {
		if (e->inflight_len[i] == 0) {
			if (free_at == KS_ENGINE_MAX_INFLIGHT)
				free_at = i;
			continue;
		}
		if (e->inflight_len[i] == len &&
		    memcmp(e->inflight[i], uid, len) == 0)
			goto out;
	}
	if (free_at == KS_ENGINE_MAX_INFLIGHT)
		goto out;
	memcpy(e->inflight[free_at], uid, len);
	e->inflight_len[free_at] = len;
	ok = 1;
out:
	pthread_mutex_unlock(&e->lock);
	return ok;
}

static void inflight_release(ks_engine_t *e, const uint8_t *uid, size_t len)
{
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < KS_ENGINE_MAX_INFLIGHT; i++)
		if (e->inflight_len[i] == len &&
		    memcmp(e->inflight[i], uid, len) == 0)
			e->inflight_len[i] = 0;
	pthread_mutex_unlock(&e->lock);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n && 2 * i + 2 < cap; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0x0F];
	}
	out[2 * i] = '\0';
}

/* Everything one run works with. */
typedef struct {
	ks_engine_t *e;
	const ks_session_params_t *p;
	ks_session_result_t *res;
	const ks_profile_t *profile;
	ks_agent_t *agent;
	ks_agent_hello_t hello;
	ks_reg_session_t sess;
	int have_session;
	ks_step_t step; /* last durable step of the session */
	int64_t t_step;
	/* the identity being delivered */
	uint8_t pubkey[KS_PUBKEY_LEN];
	int have_pubkey;
	uint8_t *cert;
	size_t cert_len;
	uint8_t *chain;
	size_t chain_len;
	char meta[KS_META_MAX];
	uint8_t digest[KS_DIGEST_LEN];
	uint8_t *blob;
	size_t blob_len;
	/* COMMIT's answer: the read-back digest and the challenge */
	uint8_t nonce[KS_NONCE_LEN];
	ks_commit_result_t commit;
	int have_commit;
} run_t;

static void progress(run_t *r, ks_step_t s, const char *note)
{
	int64_t t = now_ms();

	if ((unsigned)s < KS_STEP__COUNT)
		r->res->step_ms[s] += (uint32_t)(t - r->t_step);
	r->t_step = t;
	r->res->final = s;
	if (r->p->progress != NULL)
		r->p->progress(r->p->progress_arg, s, note);
}

/* Set the reason once: the first failure is the one the operator needs. */
static void reason(run_t *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void reason(run_t *r, const char *fmt, ...)
{
	va_list ap;

	if (r->res->reason[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(r->res->reason, sizeof(r->res->reason), fmt, ap);
	va_end(ap);
}

/* Describe a failed agent call into the reason. */
static void agent_reason(run_t *r, const char *what, ks_err_t err)
{
	if (err == KS_ERR_AGENT) {
		const char *d = ks_agent_last_detail(r->agent);
		kp_status_t st = ks_agent_last_status(r->agent);

		reason(r, "%s: agent refused: %s%s%s", what, kp_status_str(st),
		       d[0] ? ": " : "", d);
	} else {
		const char *d = ks_agent_last_error(r->agent);

		reason(r, "%s: %s%s%s", what, ks_strerror(err), d[0] ? ": " : "",
		       d);
	}
}

static int is_link_error(ks_err_t err)
{
	return err == KS_ERR_TIMEOUT || err == KS_ERR_CLOSED ||
	       err == KS_ERR_IO;
}

static int stop_requested(const run_t *r)
{
	return r->p->stop != NULL && *r->p->stop != 0;
}

static void free_identity(run_t *r)
{
	free(r->cert);
	free(r->chain);
	free(r->blob);
	r->cert = r->chain = r->blob = NULL;
	r->cert_len = r->chain_len = r->blob_len = 0;
}

/*
 * End the session. A link failure once a certificate exists parks the
 * session for resume; everything else is final: FAILED (retryable),
 * SCRAPPED (board rejected). The registry voids any certificate of a
 * session that does not end ACTIVE.
 */
static void end_session(run_t *r, ks_reg_state_t outcome, int park)
{
	int rc;

	if (!r->have_session)
		return;
	if (park) {
		rc = ks_reg_interrupted(r->e->reg, r->sess.id, r->res->reason,
					r->p->actor);
		if (rc != KS_OK)
			ks_log_error("session %lld: recording the interruption "
				     "failed: %s",
				     (long long)r->sess.id, ks_strerror(rc));
		return;
	}
	rc = ks_reg_fail(r->e->reg, r->sess.id, outcome, r->res->reason,
			 r->p->actor);
	if (rc != KS_OK) {
		ks_log_error("session %lld: recording %s failed: %s",
			     (long long)r->sess.id, ks_reg_state_name(outcome),
			     ks_strerror(rc));
		return;
	}
	r->res->final = outcome == KS_REG_SCRAPPED ? KS_STEP_SCRAPPED
			: outcome == KS_REG_VOID    ? KS_STEP_VOID
						    : KS_STEP_FAILED;
}

static ks_step_t step_of_state(ks_reg_state_t s)
{
	switch (s) {
	case KS_REG_RESERVED:
		return KS_STEP_RESERVED;
	case KS_REG_KEYED:
		return KS_STEP_KEYED;
	case KS_REG_ISSUED:
		return KS_STEP_ISSUED;
	case KS_REG_WRITTEN:
		return KS_STEP_WRITTEN;
	case KS_REG_VERIFIED:
		return KS_STEP_VERIFIED;
	case KS_REG_LOCKED:
		return KS_STEP_LOCKED;
	case KS_REG_ACTIVE:
		return KS_STEP_ACTIVE;
	default:
		return KS_STEP_FAILED;
	}
}

static ks_err_t point_sha256(const uint8_t pt[KS_PUBKEY_LEN], uint8_t out[32])
{
	EVP_PKEY *k = NULL;
	ks_err_t rc;

	rc = ks_pubkey_from_point(pt, &k);
	if (rc == KS_OK)
		rc = ks_pubkey_spki_sha256(k, out);
	EVP_PKEY_free(k);
	return rc;
}

/* The chain stored on the device: the issuing CA and any intermediates,
 * without the self-signed root (servers hold that as their trust anchor). */
static ks_err_t build_chain(run_t *r)
{
	size_t n = ks_signer_chain_len(r->e->signer);
	size_t keep = n > 1 ? n - 1 : n, total = 0;

	for (size_t i = 0; i < keep; i++) {
		const uint8_t *der;
		uint8_t *grown;
		size_t len;
		ks_err_t rc;

		rc = ks_signer_chain_der(r->e->signer, i, &der, &len);
		if (rc != KS_OK)
			return rc;
		grown = realloc(r->chain, total + len);
		if (grown == NULL)
			return KS_ERR_NOMEM;
		r->chain = grown;
		memcpy(r->chain + total, der, len);
		total += len;
	}
	r->chain_len = total;
	return KS_OK;
}

/* Build the blob for the current cert and compute the digest. The meta
 * data is derived from the session only, so a resumed run rebuilds the
 * exact bytes. */
static ks_err_t build_identity(run_t *r)
{
	ks_identity_t id;
	ks_err_t rc;

	free(r->blob);
	r->blob = NULL;
	if (r->chain == NULL) {
		rc = build_chain(r);
		if (rc != KS_OK)
			return rc;
	}
	snprintf(r->meta, sizeof(r->meta),
		 "station=%s\nlot=%s\nprofile=%s\nsession=%lld\n",
		 r->sess.station, r->sess.lot, r->sess.profile,
		 (long long)r->sess.id);
	memset(&id, 0, sizeof(id));
	id.pubkey = r->pubkey;
	id.serial = r->sess.serial;
	id.cert = r->cert;
	id.cert_len = r->cert_len;
	id.chain = r->chain_len > 0 ? r->chain : NULL;
	id.chain_len = r->chain_len;
	id.meta = (const uint8_t *)r->meta;
	id.meta_len = strlen(r->meta);
	return ks_identity_blob(&id, &r->blob, &r->blob_len, r->digest);
}

/* --- the steps; each returns KS_OK or sets the reason and an outcome --- */

typedef struct {
	ks_err_t err;
	ks_reg_state_t outcome; /* when the session must end */
	int park;               /* leave the session unfinished for resume */
	int host;               /* the station failed (memory, OpenSSL,
				 * registry), not the board */
} fail_t;

static fail_t ok_(void)
{
	fail_t f = {KS_OK, KS_REG_FAILED, 0, 0};

	return f;
}

static fail_t fail_(ks_err_t err, ks_reg_state_t outcome)
{
	fail_t f = {err, outcome, 0, 0};

	return f;
}

/* A failed agent call: link failures park once a certificate exists;
 * a board that can no longer be provisioned is scrapped. */
static fail_t agent_fail(run_t *r, const char *what, ks_err_t err)
{
	fail_t f = fail_(err, KS_REG_FAILED);

	agent_reason(r, what, err);
	if (is_link_error(err)) {
		f.park = r->step >= KS_STEP_ISSUED;
		return f;
	}
	if (err == KS_ERR_AGENT) {
		switch (ks_agent_last_status(r->agent)) {
		case KP_ST_EXHAUSTED:
		case KP_ST_INTEGRITY:
		case KP_ST_STORAGE:
		case KP_ST_BOOT_KEY: /* its secure-boot slot holds another key */
			f.outcome = KS_REG_SCRAPPED;
			break;
		default:
			break;
		}
	}
	return f;
}

/*
 * A failure of the station itself is never the board's fault: the board is
 * never scrapped for it, and once a certificate exists the session is
 * parked, so the board's next HELLO resumes it (a parked session is not
 * voided for it either).
 */
static fail_t reg_fail(run_t *r, const char *what, int rc)
{
	fail_t f = fail_(rc == KS_OK ? KS_ERR_DB : (ks_err_t)rc,
			 KS_REG_FAILED);

	reason(r, "registry: %s: %s", what, ks_strerror(rc));
	f.park = r->step >= KS_STEP_ISSUED;
	f.host = 1;
	return f;
}

static fail_t host_fail(run_t *r, const char *what, ks_err_t err)
{
	fail_t f = fail_(err, KS_REG_FAILED);

	reason(r, "station: %s: %s", what, ks_strerror(err));
	f.park = r->step >= KS_STEP_ISSUED;
	f.host = 1;
	return f;
}

/*
 * The registry could not record a step (KS_ERR_UNAVAILABLE: the database
 * stayed away for the registry's own reconnect window). A failed call
 * was rolled back -- the database layer resolves a COMMIT cut off by the
 * connection -- so running it again records the step once. While the
 * board still answers and no stop is asked for, the board is kept where
 * it is and the call is retried (the slot shows "waiting for registry");
 * returns 1 to retry.
 */
static int reg_retry(run_t *r, int rc)
{
	ks_agent_status_t st;
	ks_db_health_t h;

	/* a plain registry error while its connection is down is an outage */
	if (rc == KS_ERR_DB && ks_reg_health(r->e->reg, &h) == KS_OK &&
	    !h.connected)
		rc = KS_ERR_UNAVAILABLE;
	if (rc != KS_ERR_UNAVAILABLE || stop_requested(r) || r->agent == NULL ||
	    ks_agent_status(r->agent, &st) != KS_OK)
		return 0;
	ks_log_warn("%s: registry unreachable at %s; waiting for it",
		    r->p->slot ? r->p->slot : r->p->port, ks_step_name(r->step));
	progress(r, r->step, "waiting for registry");
	return 1;
}

/*
 * Open the sealed channel before a secret (host key, seed) crosses the
 * link. The board is authenticated when it reports a key this registry
 * has certified, or journaled for the session being resumed: it must
 * sign the handshake with that key. A UID the registry lists with an
 * ACTIVE key must do so (a board claiming no key, or an unknown one, is
 * refused: that is what a man in the middle would claim). Otherwise --
 * a blank board -- the channel is unauthenticated (docs/threat-model.md).
 */
static fail_t open_channel(run_t *r)
{
	const ks_agent_state_t *st = &r->hello.st;
	ks_reg_device_t dev;
	uint8_t h[32];
	bool known = false, authed = false;
	int rc;

	if (st->has_pubkey && point_sha256(st->pubkey, h) == KS_OK)
		known = ks_reg_pubkey_known(r->e->reg, h) == 1 ||
			(r->sess.has_pubkey &&
			 memcmp(r->sess.pubkey_sha256, h, 32) == 0);
	if (!known &&
	    ks_reg_device_get(r->e->reg, r->hello.uid, r->hello.uid_len, NULL,
			      &dev) == KS_OK &&
	    dev.state == KS_REG_ACTIVE && dev.has_pubkey) {
		reason(r, "board %s is ACTIVE on record but does not present "
			  "a key this registry knows; refusing to send it "
			  "a secret",
		       r->res->uid_hex);
		return fail_(KS_ERR_VERIFY, KS_REG_FAILED);
	}
	rc = ks_agent_secure_open(r->agent, known ? st->pubkey : NULL, &authed);
	if (rc == KS_ERR_VERIFY) {
		reason(r, "SECURE_OPEN: the board did not prove the identity "
			  "key on record");
		return fail_(KS_ERR_VERIFY, KS_REG_FAILED);
	}
	if (rc != KS_OK)
		return agent_fail(r, "SECURE_OPEN", (ks_err_t)rc);
	ks_log_info("%s: sealed channel open (%s)",
		    r->p->slot ? r->p->slot : r->p->port,
		    authed ? "board authenticated by its identity key"
			   : "first provisioning: unauthenticated ECDH");
	return ok_();
}

static fail_t step_key(run_t *r)
{
	uint8_t spki_hash[32];
	const ks_agent_state_t *st = &r->hello.st;
	int rc;

	if (r->profile->key_origin == KS_KEY_ORIGIN_DEVICE) {
		ks_agent_genkey_t *g = NULL;
		uint8_t seed[32];
		int use_seed = (r->hello.caps & KP_CAP_TRNG) == 0;
		uint8_t flags = 0;

		if ((r->hello.caps & KP_CAP_DEVKEY) == 0) {
			reason(r, "board cannot generate keys (no DEVKEY "
				  "capability) but profile %s asks for "
				  "key_origin=device",
			       r->profile->name);
			return fail_(KS_ERR_UNSUPPORTED, KS_REG_FAILED);
		}
		/* A committed identity is only replaced on re-provision; a
		 * key that already has a certificate (voided or superseded)
		 * is never certified twice: both take a fresh key slot. */
		if (st->state >= KP_STATE_COMMITTED)
			flags = KP_GENKEY_NEW;
		else if (st->state == KP_STATE_KEYED && st->has_pubkey &&
			 point_sha256(st->pubkey, spki_hash) == KS_OK &&
			 ks_reg_pubkey_known(r->e->reg, spki_hash))
			flags = KP_GENKEY_NEW;
		if (use_seed && RAND_bytes(seed, sizeof(seed)) != 1) {
			reason(r, "no randomness for the board's seed");
			return fail_(KS_ERR_CRYPTO, KS_REG_FAILED);
		}
		if (use_seed && (r->hello.caps & KP_CAP_SECURE) != 0) {
			fail_t f = open_channel(r);

			if (f.err != KS_OK) {
				OPENSSL_cleanse(seed, sizeof(seed));
				return f;
			}
		} else if (use_seed) {
			/* no TRNG and no stored secret: nothing to build a
			 * channel on (docs/threat-model.md, not defended) */
			ks_log_warn("%s: board has no TRNG and no sealed "
				    "channel: its seed crosses the link in "
				    "the clear",
				    r->p->slot ? r->p->slot : r->p->port);
		}
		rc = ks_agent_genkey(r->agent, use_seed ? seed : NULL,
				     use_seed ? sizeof(seed) : 0, flags,
				     r->sess.serial, &g);
		OPENSSL_cleanse(seed, sizeof(seed));
		if (rc != KS_OK)
			return agent_fail(r, "GENKEY", (ks_err_t)rc);
		/* A board is condemned only on a failure that repeats:
		 * OpenSSL reports some of its own allocation failures as a
		 * plain "does not verify", and one such check that flips
		 * was the station's failure, not the board's. */
		rc = ks_csr_verify(g->csr, g->csr_len, g->pubkey);
		if (rc == KS_ERR_VERIFY)
			rc = ks_csr_verify(g->csr, g->csr_len, g->pubkey);
		if (rc != KS_OK && rc != KS_ERR_VERIFY) {
			ks_agent_genkey_free(&g);
			return host_fail(r, "checking the board's CSR",
					 (ks_err_t)rc);
		}
		if (rc != KS_OK) {
			ks_agent_genkey_free(&g);
			reason(r, "the board's CSR failed verification (proof "
				  "of possession or key type)");
			return fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
		}
		memcpy(r->pubkey, g->pubkey, KS_PUBKEY_LEN);
		ks_agent_genkey_free(&g);
		r->have_pubkey = 1;
		/* the CSR check above accepted this point as P-256 */
		rc = point_sha256(r->pubkey, spki_hash);
		if (rc != KS_OK)
			return host_fail(r, "hashing the board's public key",
					 (ks_err_t)rc);
		do
			rc = ks_reg_keyed(r->e->reg, r->sess.id, spki_hash,
					  KS_REG_KEY_DEVICE, r->p->actor);
		while (reg_retry(r, rc));
		if (rc != KS_OK)
			return reg_fail(r, "recording KEYED", rc);
	} else {
		EVP_PKEY *key = NULL;
		uint8_t scalar[KS_P256_SCALAR_LEN];
		uint8_t echoed[KS_PUBKEY_LEN];
		bool has_echo = false;

		if ((r->hello.caps & KP_CAP_HOSTKEY) == 0) {
			reason(r, "board does not accept host keys but profile "
				  "%s asks for key_origin=host",
			       r->profile->name);
			return fail_(KS_ERR_UNSUPPORTED, KS_REG_FAILED);
		}
		/* a host key only ever crosses the link sealed */
		if ((r->hello.caps & KP_CAP_SECURE) == 0) {
			reason(r, "board cannot open the sealed channel (no "
				  "SECURE capability: no TRNG and no stored "
				  "key); profile %s needs key_origin=host",
			       r->profile->name);
			return fail_(KS_ERR_UNSUPPORTED, KS_REG_FAILED);
		}
		{
			fail_t f = open_channel(r);

			if (f.err != KS_OK)
				return f;
		}
		rc = ks_hostkey_generate(&key);
		if (rc == KS_OK)
			rc = ks_hostkey_pubkey_point(key, r->pubkey);
		if (rc == KS_OK)
			rc = ks_pubkey_spki_sha256(key, spki_hash);
		if (rc != KS_OK) {
			ks_hostkey_free(&key);
			reason(r, "host key generation failed");
			return fail_(KS_ERR_CRYPTO, KS_REG_FAILED);
		}
		/* journal the key (by its public hash) before it is written */
		do
			rc = ks_reg_keyed(r->e->reg, r->sess.id, spki_hash,
					  KS_REG_KEY_HOST, r->p->actor);
		while (reg_retry(r, rc));
		if (rc != KS_OK) {
			ks_hostkey_free(&key);
			return reg_fail(r, "recording KEYED", rc);
		}
		r->step = KS_STEP_KEYED;
		rc = ks_hostkey_export_scalar(key, scalar);
		ks_hostkey_free(&key);
		if (rc == KS_OK && !ks_agent_is_sealed(r->agent))
			rc = KS_ERR_STATE; /* never in the clear */
		if (rc == KS_OK)
			rc = ks_agent_put_object(r->agent, KP_OBJ_HOSTKEY, scalar,
						 sizeof(scalar), echoed,
						 &has_echo);
		OPENSSL_cleanse(scalar, sizeof(scalar));
		if (rc != KS_OK)
			return agent_fail(r, "PUT_OBJECT host key", (ks_err_t)rc);
		if (!has_echo || memcmp(echoed, r->pubkey, KS_PUBKEY_LEN) != 0) {
			reason(r, "the board reports a different public key "
				  "than the injected host key");
			return fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
		}
		r->have_pubkey = 1;
	}
	r->step = KS_STEP_KEYED;
	progress(r, KS_STEP_KEYED, NULL);
	return ok_();
}

static fail_t step_issue(run_t *r)
{
	ks_issue_req_t *req = NULL;
	ks_issued_t *iss = NULL;
	fail_t f = ok_();
	int rc;

	req = calloc(1, sizeof(*req));
	iss = calloc(1, sizeof(*iss));
	if (req == NULL || iss == NULL) {
		reason(r, "out of memory");
		f = fail_(KS_ERR_NOMEM, KS_REG_FAILED);
		goto out;
	}
	snprintf(req->profile, sizeof(req->profile), "%s", r->profile->name);
	snprintf(req->serial, sizeof(req->serial), "%s", r->sess.serial);
	snprintf(req->lot, sizeof(req->lot), "%s", r->sess.lot);
	memcpy(req->uid, r->hello.uid, r->hello.uid_len);
	req->uid_len = (uint32_t)r->hello.uid_len;
	req->origin = (uint32_t)r->profile->key_origin;
	req->session_id = r->sess.id; /* the signer process checks this row */
	rc = ks_issue_req_set_point(req, r->pubkey);
	if (rc != KS_OK) {
		reason(r, "bad device public key");
		f = fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
		goto out;
	}
	/* a duplicate certificate serial is refused by the registry: draw
	 * a new one (the signature counts against the quota either way) */
	for (int attempt = 0; attempt < 3; attempt++) {
		/* the signer checks the request against its own registry
		 * connection: an unreachable registry is waited for there,
		 * then here like any registry call */
		do
			rc = ks_signer_issue(r->e->signer, req, iss);
		while (reg_retry(r, rc));
		if (rc != KS_OK) {
			reason(r, "signer refused: %s", ks_strerror(rc));
			f = fail_((ks_err_t)rc, KS_REG_FAILED);
			goto out;
		}
		do
			rc = ks_reg_cert_issued(r->e->reg, r->sess.id,
						iss->der, iss->der_len,
						iss->serial_hex,
						iss->spki_sha256,
						iss->not_before,
						iss->not_after, r->p->actor);
		while (reg_retry(r, rc));
		if (rc != KS_ERR_DUPLICATE)
			break;
		ks_log_warn("session %lld: certificate serial or key "
			    "already recorded; retrying",
			    (long long)r->sess.id);
	}
	if (rc != KS_OK) {
		f = reg_fail(r, "recording the certificate", rc);
		goto out;
	}
	r->cert = malloc(iss->der_len);
	if (r->cert == NULL) {
		reason(r, "out of memory");
		f = fail_(KS_ERR_NOMEM, KS_REG_FAILED);
		goto out;
	}
	memcpy(r->cert, iss->der, iss->der_len);
	r->cert_len = iss->der_len;
	snprintf(r->res->cert_serial, sizeof(r->res->cert_serial), "%s",
		 iss->serial_hex);
	r->step = KS_STEP_ISSUED;
	progress(r, KS_STEP_ISSUED, iss->serial_hex);
out:
	free(req);
	free(iss);
	return f;
}

/* COMMIT with a fresh challenge nonce (and the profile's secure-boot key
 * hash): the answer carries the digest of the blob as the board read it
 * back from flash and the nonce's signature, checked by step_verify. */
static fail_t commit(run_t *r)
{
	ks_commit_opts_t o = {0};
	int rc;

	if (RAND_bytes(r->nonce, sizeof(r->nonce)) != 1)
		return host_fail(r, "no randomness for the challenge",
				 KS_ERR_CRYPTO);
	o.nonce = r->nonce;
	o.nonce_len = sizeof(r->nonce);
	if (r->profile->has_boot_key) {
		if ((r->hello.caps & KP_CAP_SECBOOT) == 0) {
			reason(r, "board has no secure-boot key-hash slot (no "
				  "SECBOOT capability) but profile %s sets "
				  "secure_boot_key",
			       r->profile->name);
			return fail_(KS_ERR_UNSUPPORTED, KS_REG_FAILED);
		}
		o.boot_key_hash = r->profile->boot_key_hash;
	}
	rc = ks_agent_commit_ex(r->agent, r->digest, &o, &r->commit);
	if (rc != KS_OK)
		return agent_fail(r, "COMMIT", (ks_err_t)rc);
	r->have_commit = 1;
	return ok_();
}

static fail_t step_write(run_t *r)
{
	fail_t f;
	int rc;

	rc = build_identity(r);
	if (rc != KS_OK)
		return host_fail(r, "building the identity blob",
				 (ks_err_t)rc);
	/* one object: the blob without the prefix the board writes itself
	 * (magic, version, its own public key) */
	rc = ks_agent_put_object(r->agent, KP_OBJ_IDENTITY,
				 r->blob + KP_BLOB_PREFIX_LEN,
				 r->blob_len - KP_BLOB_PREFIX_LEN, NULL, NULL);
	if (rc != KS_OK)
		return agent_fail(r, "PUT_OBJECT identity", (ks_err_t)rc);
	f = commit(r);
	if (f.err != KS_OK)
		return f;
	do
		rc = ks_reg_written(r->e->reg, r->sess.id, r->digest,
				    r->p->actor);
	while (reg_retry(r, rc));
	if (rc != KS_OK) {
		f = reg_fail(r, "recording WRITTEN", rc);
		f.park = 1; /* the board holds it; resume will record it */
		return f;
	}
	r->step = KS_STEP_WRITTEN;
	progress(r, KS_STEP_WRITTEN, NULL);
	return ok_();
}

static fail_t step_verify(run_t *r)
{
	uint8_t certpt[KS_PUBKEY_LEN];
	const uint8_t *cp;
	X509 *x = NULL;
	fail_t f = ok_();
	int rc;

	if (r->blob == NULL && (rc = build_identity(r)) != KS_OK)
		return host_fail(r, "building the identity blob",
				 (ks_err_t)rc);
	if (!r->have_commit) {
		/* resumed: the board holds the identity; COMMIT again
		 * confirms it without a write and answers the challenge */
		f = commit(r);
		if (f.err != KS_OK)
			return f;
	}
	if (memcmp(r->commit.digest, r->digest, KS_DIGEST_LEN) != 0) {
		reason(r, "the digest of the identity the board read back "
			  "from flash differs from the identity written");
		f = fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
		goto out;
	}
	/* the challenge is checked against the certificate's key */
	cp = r->cert;
	x = d2i_X509(NULL, &cp, (long)r->cert_len);
	if (x == NULL ||
	    ks_pubkey_point(X509_get0_pubkey(x), certpt) != KS_OK) {
		/* the registry accepted this certificate when it was issued */
		f = host_fail(r, "parsing the issued certificate",
			      KS_ERR_CRYPTO);
		goto out;
	}
	if (memcmp(certpt, r->pubkey, KS_PUBKEY_LEN) != 0) {
		reason(r, "issued certificate does not carry the board's key");
		f = fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
		goto out;
	}
	rc = ks_verify_challenge(certpt, r->hello.uid, r->hello.uid_len,
				 r->nonce, sizeof(r->nonce), r->commit.sig,
				 r->commit.sig_len);
	if (rc == KS_ERR_VERIFY) /* a second opinion, as for the CSR */
		rc = ks_verify_challenge(certpt, r->hello.uid,
					 r->hello.uid_len, r->nonce,
					 sizeof(r->nonce), r->commit.sig,
					 r->commit.sig_len);
	if (rc != KS_OK && rc != KS_ERR_VERIFY) {
		f = host_fail(r, "verifying the challenge", (ks_err_t)rc);
		goto out;
	}
	if (rc != KS_OK) {
		reason(r, "challenge signature does not verify against the "
			  "issued certificate");
		f = fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
		goto out;
	}
	/* the secure-boot key hash, as the board read it back from its OTP
	 * slot, is recorded before VERIFIED (and so before LOCK) */
	if (r->profile->has_boot_key) {
		if (!r->commit.has_boot_key ||
		    memcmp(r->commit.boot_key_hash, r->profile->boot_key_hash,
			   KS_DIGEST_LEN) != 0) {
			reason(r, "the OTP secure-boot key-hash slot (words "
				  "80..88) reads back %s the profile's key "
				  "hash",
			       r->commit.has_boot_key ? "different from"
						      : "empty instead of");
			f = fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
			goto out;
		}
		do
			rc = ks_reg_boot_key(r->e->reg, r->sess.id,
					     r->profile->boot_key_hash);
		while (reg_retry(r, rc));
		if (rc != KS_OK) {
			f = reg_fail(r, "recording the secure-boot key hash",
				     rc);
			f.park = 1;
			goto out;
		}
	}
	do
		rc = ks_reg_verified(r->e->reg, r->sess.id, r->p->actor);
	while (reg_retry(r, rc));
	if (rc != KS_OK) {
		f = reg_fail(r, "recording VERIFIED", rc);
		f.park = 1;
		goto out;
	}
	r->step = KS_STEP_VERIFIED;
	progress(r, KS_STEP_VERIFIED, NULL);
out:
	X509_free(x);
	return f;
}

static fail_t step_lock(run_t *r)
{
	uint8_t level = ks_profile_lock_level(r->profile);
	uint8_t want = 0, lock = 0, state = 0;
	uint8_t nonce[KS_NONCE_LEN], sig[KS_SIG_MAX];
	size_t sig_len = 0;
	ks_agent_status_t st;
	int rc;

	/* what goes to the registry is what the board reports: LOCK answers
	 * with the lock bits read back from the hardware, signed with the
	 * board's key over a fresh nonce, so nothing on the link can claim
	 * a lock the board does not have */
	if (level != 0) {
		want = KP_LOCK_OTP | KP_LOCK_FLASH;
		if (level >= KP_LOCK_LEVEL_FULL)
			want |= KP_LOCK_DEBUG;
		if (RAND_bytes(nonce, sizeof(nonce)) != 1)
			return host_fail(r, "no randomness for the lock report",
					 KS_ERR_CRYPTO);
		rc = ks_agent_lock_signed(r->agent, level, nonce,
					  sizeof(nonce), &lock, &state, sig,
					  &sig_len);
		if (rc != KS_OK)
			return agent_fail(r, "LOCK", (ks_err_t)rc);
		rc = sig_len == 0 ? (int)KS_ERR_VERIFY
				  : (int)ks_verify_lock_report(
					    r->pubkey, r->hello.uid,
					    r->hello.uid_len, lock, state,
					    nonce, sizeof(nonce), sig, sig_len);
		if (rc == KS_ERR_VERIFY && sig_len > 0) /* second opinion */
			rc = ks_verify_lock_report(r->pubkey, r->hello.uid,
						   r->hello.uid_len, lock,
						   state, nonce, sizeof(nonce),
						   sig, sig_len);
		if (rc != KS_OK && rc != KS_ERR_VERIFY)
			return host_fail(r, "verifying the lock report",
					 (ks_err_t)rc);
		if (rc != KS_OK) {
			reason(r, "the LOCK answer (lock bits 0x%02x) is not "
				  "signed by the board's key: its lock is "
				  "unproven",
			       lock);
			return fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
		}
	} else {
		rc = ks_agent_status(r->agent, &st);
		if (rc != KS_OK)
			return agent_fail(r, "STATUS", (ks_err_t)rc);
		lock = st.st.lock;
		state = st.st.state;
	}
	if ((lock & want) != want ||
	    (level != 0 && state != KP_STATE_LOCKED)) {
		reason(r, "lock did not hold: board reports lock bits 0x%02x, "
			  "wanted 0x%02x",
		       lock, want);
		return fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
	}
	do
		rc = ks_reg_locked(r->e->reg, r->sess.id, lock, r->p->actor);
	while (reg_retry(r, rc));
	if (rc != KS_OK) {
		fail_t f = reg_fail(r, "recording LOCKED", rc);

		f.park = 1;
		return f;
	}
	r->step = KS_STEP_LOCKED;
	progress(r, KS_STEP_LOCKED, NULL);
	return ok_();
}

/*
 * Work out where a parked session stands from what the board holds.
 * Returns ok with r->step set to the step to continue from, or a failure
 * that ends the parked session (the caller then starts a fresh one).
 */
static fail_t resume_from_board(run_t *r)
{
	const ks_agent_state_t *st = &r->hello.st;
	ks_step_t at = step_of_state(r->sess.state);
	uint8_t board_hash[32];
	int rc;

	r->step = at;
	if (at == KS_STEP_RESERVED)
		return ok_(); /* nothing of this session is on the board */
	rc = st->has_pubkey ? (int)point_sha256(st->pubkey, board_hash)
			    : (int)KS_ERR_VERIFY;
	if (rc != KS_OK && rc != KS_ERR_VERIFY)
		return host_fail(r, "hashing the board's public key",
				 (ks_err_t)rc);
	if (rc != KS_OK || !r->sess.has_pubkey ||
	    memcmp(board_hash, r->sess.pubkey_sha256, 32) != 0) {
		reason(r, "resume: the board no longer holds the key journaled "
			  "for session %lld",
		       (long long)r->sess.id);
		return fail_(KS_ERR_STATE, at >= KS_STEP_ISSUED ? KS_REG_VOID
							       : KS_REG_FAILED);
	}
	memcpy(r->pubkey, st->pubkey, KS_PUBKEY_LEN);
	r->have_pubkey = 1;
	if (at == KS_STEP_KEYED)
		return ok_();
	do
		rc = ks_reg_session_cert(r->e->reg, r->sess.id, &r->cert,
					 &r->cert_len, r->res->cert_serial,
					 sizeof(r->res->cert_serial));
	while (reg_retry(r, rc));
	if (rc != KS_OK)
		return reg_fail(r, "loading the session's certificate", rc);
	rc = build_identity(r);
	if (rc != KS_OK)
		return host_fail(r, "building the identity blob",
				 (ks_err_t)rc);
	if (at == KS_STEP_ISSUED) {
		/* delivered before the link dropped? then only record it */
		if (st->state >= KP_STATE_COMMITTED && st->has_digest &&
		    memcmp(st->id_digest, r->digest, 32) == 0) {
			do
				rc = ks_reg_written(r->e->reg, r->sess.id,
						    r->digest, r->p->actor);
			while (reg_retry(r, rc));
			if (rc != KS_OK)
				return reg_fail(r, "recording WRITTEN", rc);
			r->step = KS_STEP_WRITTEN;
		}
		return ok_();
	}
	/* WRITTEN or later: the board must hold exactly this identity */
	if (st->state < KP_STATE_COMMITTED || !st->has_digest ||
	    memcmp(st->id_digest, r->digest, 32) != 0) {
		reason(r, "resume: the board's identity digest differs from "
			  "the one recorded for session %lld",
		       (long long)r->sess.id);
		return fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
	}
	return ok_();
}

static void fill_result_ids(run_t *r)
{
	snprintf(r->res->serial, sizeof(r->res->serial), "%s", r->sess.serial);
	r->res->session_id = r->sess.id;
}

static ks_reg_key_origin_t reg_origin(const ks_profile_t *p)
{
	return p->key_origin == KS_KEY_ORIGIN_HOST ? KS_REG_KEY_HOST
						   : KS_REG_KEY_DEVICE;
}

/*
 * The UID's unfinished session belongs to another station (the registry
 * answered KS_ERR_BUSY): the board is left untouched -- no session here,
 * nothing locked or scrapped -- and the slot says who holds it. A
 * refusal, not a failure of the board.
 */
static fail_t held_elsewhere(run_t *r, const ks_reg_session_t *held)
{
	char when[32] = "?";
	time_t t = (time_t)(held->started_ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	reason(r, "UID %s is being provisioned at station %s since %s "
		  "(session %lld); left untouched (station gone: kiln "
		  "session release %lld)",
	       r->res->uid_hex, held->station, when, (long long)held->id,
	       (long long)held->id);
	return fail_(KS_ERR_BUSY, KS_REG_FAILED);
}

/* Find a parked session or begin a new one. */
static fail_t reserve(run_t *r)
{
	const ks_agent_state_t *st = &r->hello.st;
	int rc;

	do
		rc = ks_reg_pending_session(r->e->reg, r->hello.uid, r->hello.uid_len,
					    &r->sess);
	while (reg_retry(r, rc));
	if (rc == KS_OK) {
		fail_t f;

		r->have_session = 1;
		r->res->resumed = 1;
		fill_result_ids(r);
		r->profile = find_profile(r->e, r->sess.profile);
		if (r->profile == NULL) {
			reason(r, "resume: profile %s of session %lld is no "
				  "longer configured",
			       r->sess.profile, (long long)r->sess.id);
			return fail_(KS_ERR_CONFIG, KS_REG_FAILED);
		}
		ks_log_info("%s: resuming session %lld (%s) of uid %s at %s",
			    r->p->slot ? r->p->slot : r->p->port,
			    (long long)r->sess.id, r->sess.serial,
			    r->res->uid_hex, ks_reg_state_name(r->sess.state));
		f = resume_from_board(r);
		if (f.err == KS_OK)
			progress(r, r->step, "resumed");
		return f;
	}
	if (rc == KS_ERR_BUSY) {
		fail_t f = held_elsewhere(r, &r->sess);

		memset(&r->sess, 0, sizeof(r->sess));
		return f;
	}
	if (rc != KS_ERR_NOTFOUND)
		return reg_fail(r, "looking up unfinished sessions", rc);

	/* A board that holds an identity is left alone unless the operator
	 * asked for re-provisioning (checked again by the registry). */
	if (st->state >= KP_STATE_COMMITTED && !r->p->reprovision) {
		ks_reg_device_t dev;

		rc = ks_reg_device_get(r->e->reg, r->hello.uid,
				       r->hello.uid_len, NULL, &dev);
		if (rc == KS_OK && dev.state == KS_REG_ACTIVE)
			reason(r, "uid %s is already ACTIVE as %s; "
				  "re-provisioning must be asked for",
			       r->res->uid_hex, dev.serial);
		else
			reason(r, "board %s holds an identity this registry "
				  "did not record as ACTIVE; refusing",
			       r->res->uid_hex);
		return fail_(KS_ERR_DUPLICATE, KS_REG_FAILED);
	}
	if (st->state == KP_STATE_LOCKED) {
		reason(r, "board %s is locked; it cannot be re-provisioned",
		       r->res->uid_hex);
		return fail_(KS_ERR_STATE, KS_REG_FAILED);
	}
	do
		rc = ks_reg_session_begin(r->e->reg, r->hello.uid, r->hello.uid_len,
					  r->p->lot, r->profile->name, r->p->slot_index,
					  reg_origin(r->profile), r->p->reprovision,
					  r->p->actor, &r->sess);
	while (reg_retry(r, rc));
	if (rc != KS_OK) {
		switch (rc) {
		case KS_ERR_DUPLICATE:
			reason(r, "uid %s is already ACTIVE; re-provisioning "
				  "must be asked for",
			       r->res->uid_hex);
			break;
		case KS_ERR_QUOTA:
			reason(r, "lot %s has reached its quota", r->p->lot);
			break;
		case KS_ERR_BUSY: {
			/* another station began a session for the UID first */
			ks_reg_session_t held;

			if (ks_reg_pending_session(r->e->reg, r->hello.uid,
						   r->hello.uid_len,
						   &held) == KS_ERR_BUSY) {
				memset(&r->sess, 0, sizeof(r->sess));
				return held_elsewhere(r, &held);
			}
			reason(r, "uid %s has another session in progress",
			       r->res->uid_hex);
			break;
		}
		case KS_ERR_NOTFOUND:
			reason(r, "no lot named %s", r->p->lot);
			break;
		default:
			reason(r, "registry: reserving a serial: %s",
			       ks_strerror(rc));
		}
		return fail_((ks_err_t)rc, KS_REG_FAILED);
	}
	r->have_session = 1;
	r->step = KS_STEP_RESERVED;
	fill_result_ids(r);
	progress(r, KS_STEP_RESERVED, r->sess.serial);
	return ok_();
}

ks_err_t ks_session_run(ks_engine_t *e, const ks_session_params_t *p,
			ks_session_result_t *res)
{
	ks_agent_opts_t opts = {0, KS_AGENT_DEFAULT_RETRIES};
	ks_agent_stats_t stats;
	int64_t t0 = now_ms();
	int claimed = 0;
	fail_t f = ok_();
	run_t r;
	int rc;

	if (e == NULL || p == NULL || res == NULL || p->port == NULL)
		return KS_ERR_ARG;
	memset(res, 0, sizeof(*res));
	memset(&r, 0, sizeof(r));
	r.e = e;
	r.p = p;
	r.res = res;
	r.t_step = t0;
	r.profile = find_profile(e, p->profile);
	if (r.profile == NULL) {
		reason(&r, "no profile named %s", p->profile ? p->profile : "");
		f = fail_(KS_ERR_NOTFOUND, KS_REG_FAILED);
		res->final = KS_STEP_REFUSED;
		goto out;
	}
	opts.timeout_ms = (int)p->timeout_ms;
	rc = ks_agent_open(p->port, &opts, &r.agent);
	if (rc != KS_OK) {
		reason(&r, "cannot open %s: %s", p->port, ks_strerror(rc));
		f = fail_((ks_err_t)rc, KS_REG_FAILED);
		goto out;
	}
	rc = ks_agent_hello(r.agent, &r.hello);
	if (rc != KS_OK) {
		f = agent_fail(&r, "HELLO", (ks_err_t)rc);
		goto out;
	}
	hex(r.hello.uid, r.hello.uid_len, res->uid_hex, sizeof(res->uid_hex));
	progress(&r, KS_STEP_HELLO, res->uid_hex);
	if (!inflight_claim(e, r.hello.uid, r.hello.uid_len)) {
		reason(&r, "uid %s is being provisioned on another slot",
		       res->uid_hex);
		f = fail_(KS_ERR_BUSY, KS_REG_FAILED);
		res->final = KS_STEP_REFUSED;
		goto out;
	}
	claimed = 1;
	if (r.hello.st.integrity != 0) {
		reason(&r, "board reports a failed integrity check of its "
			   "stored identity: %s",
		       kp_status_str(r.hello.st.integrity));
		f = fail_(KS_ERR_VERIFY, KS_REG_SCRAPPED);
		/* a parked session of this board ends here */
		if (ks_reg_pending_session(e->reg, r.hello.uid, r.hello.uid_len,
					   &r.sess) == KS_OK)
			r.have_session = 1;
		goto out;
	}

	f = reserve(&r);
	if (f.err != KS_OK && r.have_session && res->resumed && !f.host) {
		/* the parked session cannot be completed: end it (voiding its
		 * certificate) and provision the board afresh */
		ks_log_warn("%s: %s", p->slot ? p->slot : p->port, res->reason);
		end_session(&r, f.outcome, 0);
		free_identity(&r);
		memset(&r.sess, 0, sizeof(r.sess));
		r.have_session = 0;
		r.have_pubkey = 0;
		res->resumed = 0;
		res->reason[0] = '\0';
		res->cert_serial[0] = '\0';
		r.profile = find_profile(e, p->profile);
		if (r.profile == NULL) {
			reason(&r, "no profile named %s", p->profile);
			f = fail_(KS_ERR_NOTFOUND, KS_REG_FAILED);
			goto out;
		}
		/* the board's state is unchanged since HELLO */
		f = reserve(&r);
	}
	if (f.err != KS_OK) {
		/* an unreachable registry refuses no board: it is retried */
		if (!r.have_session && f.err != KS_ERR_UNAVAILABLE)
			res->final = KS_STEP_REFUSED;
		goto out;
	}

	/* the happy path, entered at the step the session stands at */
	if (r.step == KS_STEP_RESERVED && !stop_requested(&r))
		f = step_key(&r);
	if (f.err == KS_OK && r.step == KS_STEP_KEYED && !stop_requested(&r))
		f = step_issue(&r);
	if (f.err == KS_OK && r.step == KS_STEP_ISSUED && !stop_requested(&r))
		f = step_write(&r);
	if (f.err == KS_OK && r.step == KS_STEP_WRITTEN && !stop_requested(&r))
		f = step_verify(&r);
	if (f.err == KS_OK && r.step == KS_STEP_VERIFIED && !stop_requested(&r))
		f = step_lock(&r);
	if (f.err == KS_OK && r.step == KS_STEP_LOCKED) {
		do
			rc = ks_reg_active(e->reg, r.sess.id, p->actor);
		while (reg_retry(&r, rc));
		if (rc != KS_OK) {
			f = reg_fail(&r, "recording ACTIVE", rc);
			f.park = 1;
		} else {
			r.step = KS_STEP_ACTIVE;
			progress(&r, KS_STEP_ACTIVE, r.sess.serial);
		}
	}
	if (f.err == KS_OK && r.step != KS_STEP_ACTIVE) {
		/* stopped between steps: park, nothing is lost */
		reason(&r, "station stopping: session parked at %s",
		       ks_step_name(r.step));
		f = fail_(KS_ERR_BUSY, KS_REG_FAILED);
		f.park = 1;
	}
out:
	if (f.err == KS_ERR_UNAVAILABLE && r.have_session) {
		/* the registry is away and the board no longer answers (or
		 * the station stops): nothing can be recorded, nothing is
		 * scrapped or voided; the registry keeps the session at its
		 * last journaled step and the board's next HELLO resumes it */
		res->final = r.step;
	} else if (f.err != KS_OK && r.have_session) {
		/* before a certificate exists there is nothing to resume */
		if (f.park && r.step < KS_STEP_ISSUED)
			f.park = r.step >= KS_STEP_RESERVED && stop_requested(&r);
		end_session(&r, f.outcome, f.park);
		if (f.park)
			res->final = r.step;
	}
	if (r.agent != NULL) {
		ks_agent_get_stats(r.agent, &stats);
		res->bytes_tx = stats.tx_bytes;
		res->bytes_rx = stats.rx_bytes;
		res->round_trips = (uint32_t)stats.round_trips;
	}
	if (claimed)
		inflight_release(e, r.hello.uid, r.hello.uid_len);
	ks_agent_free(&r.agent);
	free_identity(&r);
	res->total_ms = (uint32_t)(now_ms() - t0);
	res->err = f.err;
	if (f.err != KS_OK)
		ks_log_info("%s: session %s at %s: %s",
			    p->slot ? p->slot : p->port,
			    res->final == KS_STEP_REFUSED ? "refused" : "ended",
			    ks_step_name(res->final), res->reason);
	return f.err;
}
