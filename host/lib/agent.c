/*
 * kiln station library: the agent client and host-side identity checks.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "host/lib/agent.h"
#include "host/lib/channel.h"
#include "host/lib/hostkey.h"
#include "host/lib/log.h"
#include "protocol/frame.h"
#include "protocol/seal.h"

#define AGENT_INBUF 2048u

struct ks_agent {
	ks_link_t *link;
	kp_rx_t rx;
	uint16_t seq;
	int timeout_ms;
	unsigned retries;
	uint8_t in[AGENT_INBUF];
	size_t in_pos, in_len;
	uint8_t tx[KP_MAX_WIRE];
	kp_status_t last_status;
	char last_detail[65];
	char last_error[768];
	ks_agent_stats_t stats;
	/* from the last HELLO: what SECURE_OPEN needs */
	bool hello_done;
	uint32_t caps;
	uint8_t uid[KS_UID_MAX];
	size_t uid_len;
	ks_channel_t chan;
};

static void agent_fail(ks_agent_t *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void agent_fail(ks_agent_t *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->last_error, sizeof(a->last_error), fmt, ap);
	va_end(ap);
}

void ks_agent_set_opts(ks_agent_t *a, const ks_agent_opts_t *opts)
{
	a->timeout_ms = KS_AGENT_DEFAULT_TIMEOUT_MS;
	a->retries = KS_AGENT_DEFAULT_RETRIES;
	if (opts != NULL) {
		if (opts->timeout_ms > 0)
			a->timeout_ms = opts->timeout_ms;
		a->retries = opts->retries;
	}
}

ks_err_t ks_agent_new(ks_link_t **link, const ks_agent_opts_t *opts,
		      ks_agent_t **out)
{
	ks_agent_t *a;

	if (link == NULL || *link == NULL || out == NULL)
		return KS_ERR_ARG;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return KS_ERR_NOMEM;
	kp_rx_init(&a->rx);
	ks_agent_set_opts(a, opts);
	/* A random first seq: a fresh station process never hits the
	 * agent's retransmit cache with a request of a previous process. */
	if (getrandom(&a->seq, sizeof(a->seq), 0) != (ssize_t)sizeof(a->seq))
		a->seq = (uint16_t)getpid();
	a->link = *link;
	*link = NULL;
	*out = a;
	return KS_OK;
}

ks_err_t ks_agent_open(const char *spec, const ks_agent_opts_t *opts,
		       ks_agent_t **out)
{
	ks_link_t *l = NULL;
	ks_err_t r;

	r = ks_link_open(spec, &l);
	if (r != KS_OK) {
		ks_log_error("%s", ks_link_last_error());
		goto out;
	}
	r = ks_agent_new(&l, opts, out);
out:
	ks_link_close(&l);
	return r;
}

void ks_agent_free(ks_agent_t **ap)
{
	ks_agent_t *a;

	if (ap == NULL || *ap == NULL)
		return;
	a = *ap;
	ks_link_close(&a->link);
	explicit_bzero(a, sizeof(*a));
	free(a);
	*ap = NULL;
}

ks_link_t *ks_agent_link(ks_agent_t *a)
{
	return a->link;
}

kp_status_t ks_agent_last_status(const ks_agent_t *a)
{
	return a->last_status;
}

const char *ks_agent_last_detail(const ks_agent_t *a)
{
	return a->last_detail;
}

const char *ks_agent_last_error(const ks_agent_t *a)
{
	return a->last_error;
}

void ks_agent_get_stats(const ks_agent_t *a, ks_agent_stats_t *st)
{
	ks_link_stats_t ls;

	*st = a->stats;
	ks_link_get_stats(a->link, &ls);
	st->tx_bytes = ls.tx_bytes;
	st->rx_bytes = ls.rx_bytes;
}

/* Turn a matching ERROR frame into KS_ERR_AGENT with status and detail. */
static ks_err_t agent_error_frame(ks_agent_t *a, uint8_t type,
				  const uint8_t *p, size_t n)
{
	kp_error_rsp_t e;

	if (kp_error_rsp_decode(&e, p, n) != KP_OK) {
		agent_fail(a, "%s: undecodable ERROR answer",
			   kp_msg_name(type));
		return KS_ERR_PROTO;
	}
	a->last_status = (kp_status_t)e.status;
	if (e.detail != NULL) {
		memcpy(a->last_detail, e.detail, e.detail_len);
		a->last_detail[e.detail_len] = '\0';
	}
	agent_fail(a, "%s refused: %s (%u)%s%s", kp_msg_name(type),
		   kp_status_str(e.status), e.status,
		   a->last_detail[0] ? ": " : "", a->last_detail);
	return KS_ERR_AGENT;
}

/*
 * Read until the response to (type, seq) arrives or the deadline passes.
 * Bytes after the response stay buffered; they are stale for the next
 * call and get skipped there.
 */
static ks_err_t agent_wait(ks_agent_t *a, uint8_t type, uint16_t seq,
			   int64_t deadline, uint8_t *rsp, size_t cap,
			   size_t *rsp_len, uint8_t *rsp_flags)
{
	for (;;) {
		ks_err_t r;
		size_t got = 0;
		int left;

		while (a->in_pos < a->in_len) {
			kp_rx_event_t ev;
			size_t used = kp_rx_feed(&a->rx, a->in + a->in_pos,
						 a->in_len - a->in_pos, &ev);

			if (used == 0)
				break;
			a->in_pos += used;
			if (ev.kind == KP_RX_ERROR) {
				a->stats.frames_bad++;
				continue;
			}
			if (ev.kind != KP_RX_FRAME)
				continue;
			if ((ev.hdr.flags & KP_FLAG_RESPONSE) == 0 ||
			    ev.hdr.seq != seq) {
				a->stats.frames_skipped++;
				continue;
			}
			a->stats.round_trips++;
			if (ev.hdr.type == KP_MSG_ERROR)
				return agent_error_frame(a, type, ev.payload,
							 ev.hdr.len);
			if (ev.hdr.type != type) {
				agent_fail(a, "%s seq %u: answered with type "
					   "0x%02x", kp_msg_name(type), seq,
					   ev.hdr.type);
				return KS_ERR_PROTO;
			}
			if (ev.hdr.len > cap) {
				agent_fail(a, "%s: answer of %u bytes exceeds "
					   "%zu", kp_msg_name(type),
					   ev.hdr.len, cap);
				return KS_ERR_PROTO;
			}
			memcpy(rsp, ev.payload, ev.hdr.len);
			*rsp_len = ev.hdr.len;
			*rsp_flags = ev.hdr.flags;
			return KS_OK;
		}
		a->in_pos = a->in_len = 0;
		left = ks_link_remaining(deadline);
		if (left == 0)
			return KS_ERR_TIMEOUT;
		r = ks_link_read(a->link, a->in, sizeof(a->in), left, &got);
		if (r != KS_OK) {
			if (r != KS_ERR_TIMEOUT)
				agent_fail(a, "%s: %s", kp_msg_name(type),
					   ks_link_last_error());
			return r;
		}
		a->in_len = got;
	}
}

static ks_err_t agent_bad_answer(ks_agent_t *a, uint8_t type, const char *why)
{
	agent_fail(a, "%s: malformed answer: %s", kp_msg_name(type), why);
	return KS_ERR_PROTO;
}

/*
 * The agent ignores a plain request whose seq is 1..32 behind the last one
 * it executed (a stale frame, docs/protocol.md section 4). A new link
 * starts at a random seq, so its first request, HELLO, lands in that
 * window of the previous link's last request about once in 2048 links,
 * and every retransmission of it with the same seq is ignored as well:
 * the board would stay silent for good. HELLO opens a link and may run
 * twice (it only discards staged objects, and none are staged yet on a
 * new link), so each HELLO retransmission moves the seq this far ahead,
 * out of the window.
 */
#define KS_AGENT_HELLO_SEQ_STEP 33u

/* Send one framed request (hdr complete) and wait for its answer. */
static ks_err_t agent_exchange(ks_agent_t *a, const kp_hdr_t *hdr_in,
			       const uint8_t *req, uint8_t *rsp,
			       size_t rsp_cap, size_t *rsp_len,
			       uint8_t *rsp_flags)
{
	kp_hdr_t hdr_copy = *hdr_in;
	const kp_hdr_t *hdr = &hdr_copy;
	size_t frame_len = 0;
	ks_err_t r = KS_ERR_TIMEOUT;

	a->last_status = KP_ST_OK;
	a->last_detail[0] = '\0';
	a->last_error[0] = '\0';
	*rsp_len = 0;
	if (kp_frame_encode(hdr, req, hdr->len, a->tx, sizeof(a->tx),
			    &frame_len) != KP_OK) {
		agent_fail(a, "%s: cannot encode request",
			   kp_msg_name(hdr->type));
		r = KS_ERR_ARG;
		goto out;
	}
	for (unsigned attempt = 0; attempt <= a->retries; attempt++) {
		int64_t deadline = ks_link_deadline(a->timeout_ms);

		if (attempt > 0)
			a->stats.retransmits++;
		if (attempt > 0 && hdr->type == KP_MSG_HELLO &&
		    (hdr->flags & KP_FLAG_SEALED) == 0) {
			a->seq = (uint16_t)(a->seq + KS_AGENT_HELLO_SEQ_STEP);
			hdr_copy.seq = a->seq;
			explicit_bzero(a->tx, frame_len);
			if (kp_frame_encode(hdr, req, hdr->len, a->tx,
					    sizeof(a->tx), &frame_len) != KP_OK) {
				agent_fail(a, "HELLO: cannot encode request");
				r = KS_ERR_ARG;
				goto out;
			}
		}
		r = ks_link_write(a->link, a->tx, frame_len, a->timeout_ms);
		if (r == KS_ERR_TIMEOUT)
			continue;
		if (r != KS_OK) {
			agent_fail(a, "%s: %s", kp_msg_name(hdr->type),
				   ks_link_last_error());
			goto out;
		}
		r = agent_wait(a, hdr->type, hdr->seq, deadline, rsp, rsp_cap,
			       rsp_len, rsp_flags);
		if (r != KS_ERR_TIMEOUT)
			goto out;
	}
	agent_fail(a, "%s seq %u: no answer from %s after %u attempt(s) of "
		   "%d ms", kp_msg_name(hdr->type), hdr->seq,
		   ks_link_describe(a->link), a->retries + 1u, a->timeout_ms);
out:
	/* The frame may carry a host-generated private key. */
	explicit_bzero(a->tx, frame_len);
	return r;
}

ks_err_t ks_agent_call(ks_agent_t *a, uint8_t type, const uint8_t *req,
		       size_t req_len, uint8_t *rsp, size_t rsp_cap,
		       size_t *rsp_len)
{
	kp_hdr_t hdr;
	uint8_t flags = 0;
	ks_err_t r;

	if (a == NULL || (req == NULL && req_len > 0) || rsp == NULL ||
	    rsp_len == NULL || req_len > KP_MAX_PAYLOAD)
		return KS_ERR_ARG;
	hdr = (kp_hdr_t){.type = type, .flags = 0, .seq = ++a->seq,
			 .len = (uint16_t)req_len};
	r = agent_exchange(a, &hdr, req, rsp, rsp_cap, rsp_len, &flags);
	if (r == KS_OK && (flags & KP_FLAG_SEALED) != 0) {
		agent_fail(a, "%s: sealed answer to a plain request",
			   kp_msg_name(type));
		*rsp_len = 0;
		r = KS_ERR_PROTO;
	}
	return r;
}

/* Agent statuses after which the agent did not consume the counter. */
static bool seal_rejected(kp_status_t st)
{
	return st == KP_ST_NO_CHANNEL || st == KP_ST_SEAL_AUTH ||
	       st == KP_ST_SEAL_REPLAY || st == KP_ST_SEAL_ORDER;
}

ks_err_t ks_agent_call_sealed(ks_agent_t *a, uint8_t type, const uint8_t *req,
			      size_t req_len, uint8_t *rsp, size_t rsp_cap,
			      size_t *rsp_len)
{
	uint8_t sealed[KP_MAX_PAYLOAD], back[KP_MAX_PAYLOAD];
	size_t n = 0, back_len = 0;
	uint8_t flags = 0;
	kp_hdr_t hdr;
	uint32_t ctr;
	kp_err_t e;
	ks_err_t r = KS_ERR_ARG;

	if (a == NULL || (req == NULL && req_len > 0) || rsp == NULL ||
	    rsp_len == NULL || req_len > KP_SEAL_MAX_PLAIN)
		goto out;
	*rsp_len = 0;
	if (!a->chan.open) {
		agent_fail(a, "%s: no sealed channel open", kp_msg_name(type));
		r = KS_ERR_STATE;
		goto out;
	}
	ctr = a->chan.ctr;
	hdr = (kp_hdr_t){.type = type, .flags = 0, .seq = ++a->seq};
	r = ks_channel_seal(&a->chan, &hdr, req, req_len, sealed,
			    sizeof(sealed), &n);
	if (r != KS_OK)
		goto out;
	r = agent_exchange(a, &hdr, sealed, back, sizeof(back), &back_len,
			   &flags);
	if (r == KS_ERR_AGENT && seal_rejected(a->last_status))
		goto out;
	if (r != KS_OK && r != KS_ERR_AGENT) {
		/* unknown whether the agent consumed the counter */
		ks_channel_close(&a->chan);
		goto out;
	}
	a->chan.ctr = ctr + 1u;
	if (r != KS_OK)
		goto out;
	if ((flags & KP_FLAG_SEALED) == 0) {
		agent_fail(a, "%s: plain answer to a sealed request",
			   kp_msg_name(type));
		r = KS_ERR_PROTO;
		goto out;
	}
	hdr = (kp_hdr_t){.type = type,
			 .flags = KP_FLAG_RESPONSE | KP_FLAG_SEALED,
			 .seq = hdr.seq, .len = (uint16_t)back_len};
	e = ks_channel_unseal_rsp(&a->chan, &hdr, back, ctr, rsp, rsp_cap,
				  rsp_len);
	if (e != KP_OK) {
		agent_fail(a, "%s: sealed answer rejected: %s",
			   kp_msg_name(type), kp_strerror((int)e));
		*rsp_len = 0;
		r = KS_ERR_VERIFY;
		goto out;
	}
	r = KS_OK;
out:
	explicit_bzero(sealed, sizeof(sealed));
	explicit_bzero(back, sizeof(back));
	return r;
}

ks_err_t ks_agent_secure_open(ks_agent_t *a,
			      const uint8_t id_pub[KS_PUBKEY_LEN],
			      bool *authenticated)
{
	ks_channel_offer_t o;
	kp_secure_open_req_t q;
	kp_secure_open_rsp_t m;
	uint8_t req[256], rsp[KP_MAX_PAYLOAD];
	size_t qn = 0, n = 0;
	ks_err_t r = KS_ERR_ARG;

	memset(&o, 0, sizeof(o));
	if (authenticated != NULL)
		*authenticated = false;
	if (a == NULL)
		goto out;
	ks_channel_close(&a->chan);
	if (!a->hello_done) {
		agent_fail(a, "SECURE_OPEN needs HELLO first");
		r = KS_ERR_STATE;
		goto out;
	}
	if ((a->caps & KP_CAP_SECURE) == 0) {
		agent_fail(a, "agent cannot open a sealed channel (no "
			      "SECURE capability)");
		r = KS_ERR_UNSUPPORTED;
		goto out;
	}
	r = ks_channel_offer(&o);
	if (r != KS_OK)
		goto out;
	memset(&q, 0, sizeof(q));
	q.host_pub = o.pub;
	q.host_pub_len = KP_SECURE_PUB_LEN;
	q.host_nonce = o.nonce;
	q.host_nonce_len = KP_SECURE_NONCE_LEN;
	if (kp_secure_open_req_encode(&q, req, sizeof(req), &qn) != KP_OK) {
		r = KS_ERR_INTERNAL;
		goto out;
	}
	r = ks_agent_call(a, KP_MSG_SECURE_OPEN, req, qn, rsp, sizeof(rsp),
			  &n);
	if (r != KS_OK)
		goto out;
	if (kp_secure_open_rsp_decode(&m, rsp, n) != KP_OK) {
		r = agent_bad_answer(a, KP_MSG_SECURE_OPEN, "TLV decode");
		goto out;
	}
	r = ks_channel_accept(&a->chan, &o, a->uid, a->uid_len, m.agent_pub,
			      m.agent_nonce, m.id_sig, m.id_sig_len, id_pub);
	if (r != KS_OK) {
		agent_fail(a, "SECURE_OPEN: %s",
			   r == KS_ERR_VERIFY
				   ? "the agent did not prove the expected "
				     "identity key"
				   : "key agreement failed");
		goto out;
	}
	if (authenticated != NULL)
		*authenticated = a->chan.authenticated;
out:
	ks_channel_offer_clear(&o);
	return r;
}

bool ks_agent_is_sealed(const ks_agent_t *a)
{
	return a != NULL && a->chan.open;
}

/* Secrets go sealed when the agent can seal: open a channel (not
 * authenticated) if the caller has not opened one. */
static ks_err_t ensure_channel(ks_agent_t *a, bool *use)
{
	*use = false;
	if (a->chan.open) {
		*use = true;
		return KS_OK;
	}
	if ((a->caps & KP_CAP_SECURE) == 0)
		return KS_OK;
	*use = true;
	return ks_agent_secure_open(a, NULL, NULL);
}


static void copy_state(ks_agent_state_t *st, uint8_t state, uint8_t lock,
		       uint8_t integrity, uint8_t slots_free,
		       const uint8_t *pubkey, const uint8_t *digest,
		       const uint8_t *boot_key)
{
	memset(st, 0, sizeof(*st));
	st->state = state;
	st->lock = lock;
	st->integrity = integrity;
	st->slots_free = slots_free;
	if (pubkey != NULL) {
		st->has_pubkey = true;
		memcpy(st->pubkey, pubkey, KS_PUBKEY_LEN);
	}
	if (digest != NULL) {
		st->has_digest = true;
		memcpy(st->id_digest, digest, KS_DIGEST_LEN);
	}
	if (boot_key != NULL) {
		st->has_boot_key = true;
		memcpy(st->boot_key_hash, boot_key, KS_DIGEST_LEN);
	}
}

ks_err_t ks_agent_hello(ks_agent_t *a, ks_agent_hello_t *out)
{
	kp_hello_req_t q = {.proto_max = KP_MSG_VERSION};
	kp_hello_rsp_t m;
	uint8_t req[64], rsp[KP_MAX_PAYLOAD];
	size_t qn, n;
	ks_err_t r;

	if (a == NULL || out == NULL)
		return KS_ERR_ARG;
	if (kp_hello_req_encode(&q, req, sizeof(req), &qn) != KP_OK)
		return KS_ERR_INTERNAL;
	r = ks_agent_call(a, KP_MSG_HELLO, req, qn, rsp, sizeof(rsp), &n);
	if (r != KS_OK)
		return r;
	if (kp_hello_rsp_decode(&m, rsp, n) != KP_OK)
		return agent_bad_answer(a, KP_MSG_HELLO, "TLV decode");
	if (m.proto != KP_MSG_VERSION) {
		char why[80];

		snprintf(why, sizeof(why),
			 "agent speaks protocol %u, this station %u", m.proto,
			 KP_MSG_VERSION);
		return agent_bad_answer(a, KP_MSG_HELLO, why);
	}
	memset(out, 0, sizeof(*out));
	out->proto = m.proto;
	memcpy(out->agent_version, m.agent_version, m.agent_version_len);
	out->caps = m.caps;
	memcpy(out->uid, m.uid, m.uid_len);
	out->uid_len = m.uid_len;
	memcpy(out->board, m.board, m.board_len);
	out->max_payload = m.max_payload;
	copy_state(&out->st, m.state, m.lock, m.integrity, m.slots_free,
		   m.pubkey, m.id_digest, m.boot_key_hash);
	/* HELLO ended any channel on the agent's side */
	ks_channel_close(&a->chan);
	a->hello_done = true;
	a->caps = m.caps;
	memcpy(a->uid, m.uid, m.uid_len);
	a->uid_len = m.uid_len;
	return KS_OK;
}

ks_err_t ks_agent_status(ks_agent_t *a, ks_agent_status_t *out)
{
	kp_status_rsp_t m;
	uint8_t rsp[KP_MAX_PAYLOAD];
	size_t n;
	ks_err_t r;

	if (a == NULL || out == NULL)
		return KS_ERR_ARG;
	r = ks_agent_call(a, KP_MSG_STATUS, NULL, 0, rsp, sizeof(rsp), &n);
	if (r != KS_OK)
		return r;
	if (kp_status_rsp_decode(&m, rsp, n) != KP_OK)
		return agent_bad_answer(a, KP_MSG_STATUS, "TLV decode");
	copy_state(&out->st, m.state, m.lock, m.integrity, m.slots_free,
		   m.pubkey, m.id_digest, m.boot_key_hash);
	out->staged = m.staged;
	return KS_OK;
}

void ks_agent_genkey_free(ks_agent_genkey_t **gp)
{
	if (gp == NULL || *gp == NULL)
		return;
	free((*gp)->csr);
	free(*gp);
	*gp = NULL;
}

ks_err_t ks_agent_genkey(ks_agent_t *a, const uint8_t *seed, size_t seed_len,
			 uint8_t flags, const char *cn,
			 ks_agent_genkey_t **out)
{
	kp_genkey_req_t q = {0};
	kp_genkey_rsp_t m;
	ks_agent_genkey_t *g = NULL;
	uint8_t req[256], rsp[KP_MAX_PAYLOAD];
	size_t qn = 0, n;
	bool sealed = false;
	ks_err_t r = KS_ERR_ARG;

	if (a == NULL || out == NULL || seed_len > 64 ||
	    (cn != NULL && strlen(cn) > 64))
		goto out;
	*out = NULL;
	if (seed != NULL) {
		q.has |= KP_BIT(0x01);
		q.seed = seed;
		q.seed_len = (uint16_t)seed_len;
	}
	if (flags != 0) {
		q.has |= KP_BIT(0x02);
		q.flags = flags;
	}
	if (cn != NULL) {
		q.has |= KP_BIT(0x03);
		q.cn = cn;
		q.cn_len = (uint16_t)strlen(cn);
	}
	if (kp_genkey_req_encode(&q, req, sizeof(req), &qn) != KP_OK)
		goto out;
	if (seed != NULL) {
		r = ensure_channel(a, &sealed);
		if (r != KS_OK)
			goto out;
	}
	if (sealed)
		r = ks_agent_call_sealed(a, KP_MSG_GENKEY, req, qn, rsp,
					 sizeof(rsp), &n);
	else
		r = ks_agent_call(a, KP_MSG_GENKEY, req, qn, rsp, sizeof(rsp),
				  &n);
	if (r != KS_OK)
		goto out;
	if (kp_genkey_rsp_decode(&m, rsp, n) != KP_OK) {
		r = agent_bad_answer(a, KP_MSG_GENKEY, "TLV decode");
		goto out;
	}
	g = calloc(1, sizeof(*g));
	if (g == NULL || (g->csr = malloc(m.csr_len)) == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	memcpy(g->pubkey, m.pubkey, KS_PUBKEY_LEN);
	memcpy(g->csr, m.csr, m.csr_len);
	g->csr_len = m.csr_len;
	g->slot = m.slot;
	*out = g;
	g = NULL;
	r = KS_OK;
out:
	explicit_bzero(req, sizeof(req)); /* the seed */
	ks_agent_genkey_free(&g);
	return r;
}

ks_err_t ks_agent_put_object(ks_agent_t *a, uint8_t obj, const uint8_t *data,
			     size_t len, uint8_t pubkey[KS_PUBKEY_LEN],
			     bool *has_pubkey)
{
	uint8_t req[KP_MAX_PAYLOAD], rsp[KP_MAX_PAYLOAD];
	size_t off = 0;
	bool sealed = false;
	ks_err_t r = KS_ERR_ARG;

	if (has_pubkey != NULL)
		*has_pubkey = false;
	if (a == NULL || data == NULL || len == 0 || len > UINT32_MAX)
		goto out;
	if (obj == KP_OBJ_HOSTKEY) {
		r = ensure_channel(a, &sealed);
		if (r != KS_OK)
			goto out;
	}
	while (off < len) {
		size_t max = sealed ? KP_PUT_MAX_DATA - 64u : KP_PUT_MAX_DATA;
		size_t chunk = len - off < max ? len - off : max;
		kp_put_object_req_t q = {
			.obj = obj,
			.offset = (uint32_t)off,
			.total = (uint32_t)len,
			.data = data + off,
			.data_len = (uint16_t)chunk,
		};
		kp_put_object_rsp_t m;
		size_t qn = 0, n;

		if (kp_put_object_req_encode(&q, req, sizeof(req), &qn) !=
		    KP_OK) {
			r = KS_ERR_ARG;
			goto out;
		}
		if (sealed)
			r = ks_agent_call_sealed(a, KP_MSG_PUT_OBJECT, req, qn,
						 rsp, sizeof(rsp), &n);
		else
			r = ks_agent_call(a, KP_MSG_PUT_OBJECT, req, qn, rsp,
					  sizeof(rsp), &n);
		explicit_bzero(req, qn);
		if (r != KS_OK)
			goto out;
		if (kp_put_object_rsp_decode(&m, rsp, n) != KP_OK) {
			r = agent_bad_answer(a, KP_MSG_PUT_OBJECT, "TLV decode");
			goto out;
		}
		if (m.obj != obj || m.received != off + chunk) {
			r = agent_bad_answer(a, KP_MSG_PUT_OBJECT,
					     "object or byte count differs");
			goto out;
		}
		off += chunk;
		if (off == len && m.pubkey != NULL) {
			if (pubkey != NULL)
				memcpy(pubkey, m.pubkey, KS_PUBKEY_LEN);
			if (has_pubkey != NULL)
				*has_pubkey = true;
		}
	}
	r = KS_OK;
out:
	explicit_bzero(req, sizeof(req));
	return r;
}

ks_err_t ks_agent_commit_ex(ks_agent_t *a,
			    const uint8_t digest[KS_DIGEST_LEN],
			    const ks_commit_opts_t *opts,
			    ks_commit_result_t *out)
{
	kp_commit_req_t q = {.digest = digest, .digest_len = KS_DIGEST_LEN};
	kp_commit_rsp_t m;
	uint8_t req[192], rsp[KP_MAX_PAYLOAD];
	size_t qn, n;
	ks_err_t r;

	if (a == NULL || digest == NULL || out == NULL)
		return KS_ERR_ARG;
	memset(out, 0, sizeof(*out));
	if (opts != NULL && opts->nonce != NULL) {
		if (opts->nonce_len > 64)
			return KS_ERR_ARG;
		q.has |= KP_BIT(0x02);
		q.nonce = opts->nonce;
		q.nonce_len = (uint16_t)opts->nonce_len;
	}
	if (opts != NULL && opts->boot_key_hash != NULL) {
		q.has |= KP_BIT(0x03);
		q.boot_key_hash = opts->boot_key_hash;
		q.boot_key_hash_len = KS_DIGEST_LEN;
	}
	if (kp_commit_req_encode(&q, req, sizeof(req), &qn) != KP_OK)
		return KS_ERR_ARG;
	r = ks_agent_call(a, KP_MSG_COMMIT, req, qn, rsp, sizeof(rsp), &n);
	if (r != KS_OK)
		return r;
	if (kp_commit_rsp_decode(&m, rsp, n) != KP_OK)
		return agent_bad_answer(a, KP_MSG_COMMIT, "TLV decode");
	if (q.nonce != NULL && m.sig == NULL)
		return agent_bad_answer(a, KP_MSG_COMMIT,
					"no signature of the nonce");
	if (q.boot_key_hash != NULL && m.boot_key_hash == NULL)
		return agent_bad_answer(a, KP_MSG_COMMIT,
					"no secure-boot slot in the answer");
	memcpy(out->digest, m.digest, KS_DIGEST_LEN);
	out->state = m.state;
	if (m.sig != NULL) {
		out->has_sig = true;
		memcpy(out->sig, m.sig, m.sig_len);
		out->sig_len = m.sig_len;
	}
	if (m.boot_key_hash != NULL) {
		out->has_boot_key = true;
		memcpy(out->boot_key_hash, m.boot_key_hash, KS_DIGEST_LEN);
	}
	return KS_OK;
}

ks_err_t ks_agent_commit(ks_agent_t *a, const uint8_t digest[KS_DIGEST_LEN],
			 uint8_t *state)
{
	ks_commit_result_t res;
	ks_err_t r;

	r = ks_agent_commit_ex(a, digest, NULL, &res);
	if (r != KS_OK)
		return r;
	if (memcmp(res.digest, digest, KS_DIGEST_LEN) != 0) {
		agent_fail(a, "COMMIT: agent reports a different digest");
		return KS_ERR_VERIFY;
	}
	if (state != NULL)
		*state = res.state;
	return KS_OK;
}

ks_err_t ks_agent_readback(ks_agent_t *a, uint8_t **blob, size_t *len)
{
	uint8_t req[32], rsp[KP_MAX_PAYLOAD];
	uint8_t *buf = NULL;
	uint32_t total = 0, off = 0;
	ks_err_t r = KS_ERR_ARG;

	if (a == NULL || blob == NULL || len == NULL)
		goto out;
	*blob = NULL;
	*len = 0;
	do {
		kp_readback_req_t q = {.offset = off,
				       .max = (uint16_t)KP_PUT_MAX_DATA};
		kp_readback_rsp_t m;
		size_t qn, n;

		if (kp_readback_req_encode(&q, req, sizeof(req), &qn) != KP_OK) {
			r = KS_ERR_INTERNAL;
			goto out;
		}
		r = ks_agent_call(a, KP_MSG_READBACK, req, qn, rsp,
				  sizeof(rsp), &n);
		if (r != KS_OK)
			goto out;
		if (kp_readback_rsp_decode(&m, rsp, n) != KP_OK) {
			r = agent_bad_answer(a, KP_MSG_READBACK, "TLV decode");
			goto out;
		}
		if (buf == NULL) {
			if (m.total == 0 || m.total > KS_BLOB_MAX) {
				r = agent_bad_answer(a, KP_MSG_READBACK,
						     "blob size out of range");
				goto out;
			}
			total = m.total;
			buf = malloc(total);
			if (buf == NULL) {
				r = KS_ERR_NOMEM;
				goto out;
			}
		}
		if (m.total != total || m.data_len == 0 ||
		    m.data_len > total - off) {
			r = agent_bad_answer(a, KP_MSG_READBACK,
					     "inconsistent total or chunk");
			goto out;
		}
		memcpy(buf + off, m.data, m.data_len);
		off += m.data_len;
	} while (off < total);
	*blob = buf;
	*len = total;
	buf = NULL;
	r = KS_OK;
out:
	free(buf);
	return r;
}

ks_err_t ks_agent_challenge(ks_agent_t *a, const uint8_t *nonce,
			    size_t nonce_len, uint8_t sig[KS_SIG_MAX],
			    size_t *sig_len)
{
	kp_challenge_req_t q = {.nonce = nonce};
	kp_challenge_rsp_t m;
	uint8_t req[128], rsp[KP_MAX_PAYLOAD];
	size_t qn, n;
	ks_err_t r;

	if (a == NULL || nonce == NULL || nonce_len > 64 || sig == NULL ||
	    sig_len == NULL)
		return KS_ERR_ARG;
	q.nonce_len = (uint16_t)nonce_len;
	if (kp_challenge_req_encode(&q, req, sizeof(req), &qn) != KP_OK)
		return KS_ERR_ARG;
	r = ks_agent_call(a, KP_MSG_CHALLENGE, req, qn, rsp, sizeof(rsp), &n);
	if (r != KS_OK)
		return r;
	if (kp_challenge_rsp_decode(&m, rsp, n) != KP_OK)
		return agent_bad_answer(a, KP_MSG_CHALLENGE, "TLV decode");
	memcpy(sig, m.sig, m.sig_len);
	*sig_len = m.sig_len;
	return KS_OK;
}

ks_err_t ks_agent_lock_signed(ks_agent_t *a, uint8_t level,
			      const uint8_t *nonce, size_t nonce_len,
			      uint8_t *lock, uint8_t *state,
			      uint8_t sig[KS_SIG_MAX], size_t *sig_len)
{
	kp_lock_req_t q = {.level = level, .nonce = nonce};
	kp_lock_rsp_t m;
	uint8_t req[96], rsp[KP_MAX_PAYLOAD];
	size_t qn, n;
	ks_err_t r;

	if (a == NULL || nonce == NULL || nonce_len > 64 || sig == NULL ||
	    sig_len == NULL)
		return KS_ERR_ARG;
	*sig_len = 0;
	q.has = KP_BIT(0x02);
	q.nonce_len = (uint16_t)nonce_len;
	if (kp_lock_req_encode(&q, req, sizeof(req), &qn) != KP_OK)
		return KS_ERR_ARG;
	r = ks_agent_call(a, KP_MSG_LOCK, req, qn, rsp, sizeof(rsp), &n);
	if (r != KS_OK)
		return r;
	if (kp_lock_rsp_decode(&m, rsp, n) != KP_OK)
		return agent_bad_answer(a, KP_MSG_LOCK, "TLV decode");
	if (lock != NULL)
		*lock = m.lock;
	if (state != NULL)
		*state = m.state;
	if (m.sig != NULL) {
		memcpy(sig, m.sig, m.sig_len);
		*sig_len = m.sig_len;
	}
	return KS_OK;
}

ks_err_t ks_agent_lock(ks_agent_t *a, uint8_t level, uint8_t *lock,
		       uint8_t *state)
{
	kp_lock_req_t q = {.level = level};
	kp_lock_rsp_t m;
	uint8_t req[16], rsp[KP_MAX_PAYLOAD];
	size_t qn, n;
	ks_err_t r;

	if (a == NULL)
		return KS_ERR_ARG;
	if (kp_lock_req_encode(&q, req, sizeof(req), &qn) != KP_OK)
		return KS_ERR_ARG;
	r = ks_agent_call(a, KP_MSG_LOCK, req, qn, rsp, sizeof(rsp), &n);
	if (r != KS_OK)
		return r;
	if (kp_lock_rsp_decode(&m, rsp, n) != KP_OK)
		return agent_bad_answer(a, KP_MSG_LOCK, "TLV decode");
	if (lock != NULL)
		*lock = m.lock;
	if (state != NULL)
		*state = m.state;
	return KS_OK;
}

/* ---- host-side helpers ---- */

ks_err_t ks_identity_blob(const ks_identity_t *id, uint8_t **blob,
			  size_t *len, uint8_t digest[KS_DIGEST_LEN])
{
	kp_blob_t b = {0};
	uint8_t *buf = NULL;
	unsigned int dlen = 0;
	size_t n = 0;
	ks_err_t r = KS_ERR_ARG;

	if (id == NULL || blob == NULL || len == NULL || digest == NULL ||
	    id->pubkey == NULL || id->serial == NULL || id->cert == NULL ||
	    strlen(id->serial) > UINT16_MAX || id->cert_len > UINT16_MAX ||
	    id->chain_len > UINT16_MAX || id->meta_len > UINT16_MAX)
		goto out;
	*blob = NULL;
	b.pubkey = id->pubkey;
	b.pubkey_len = KS_PUBKEY_LEN;
	b.serial = id->serial;
	b.serial_len = (uint16_t)strlen(id->serial);
	b.cert = id->cert;
	b.cert_len = (uint16_t)id->cert_len;
	if (id->chain != NULL && id->chain_len > 0) {
		b.has |= KP_BIT(0x04);
		b.chain = id->chain;
		b.chain_len = (uint16_t)id->chain_len;
	}
	if (id->meta != NULL && id->meta_len > 0) {
		b.has |= KP_BIT(0x05);
		b.meta = id->meta;
		b.meta_len = (uint16_t)id->meta_len;
	}
	buf = malloc(KS_BLOB_MAX);
	if (buf == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	if (kp_blob_encode(&b, buf, KS_BLOB_MAX, &n) != KP_OK) {
		ks_log_error("identity fields out of bounds for the blob");
		r = KS_ERR_ARG;
		goto out;
	}
	if (EVP_Digest(buf, n, digest, &dlen, EVP_sha256(), NULL) != 1 ||
	    dlen != KS_DIGEST_LEN) {
		r = KS_ERR_CRYPTO;
		goto out;
	}
	*blob = buf;
	*len = n;
	buf = NULL;
	r = KS_OK;
out:
	free(buf);
	return r;
}

/*
 * True when OpenSSL's error queue records a failed allocation: a check
 * that failed for that reason says nothing about the board, so callers
 * get KS_ERR_NOMEM instead of KS_ERR_VERIFY (which scraps the board).
 */
static bool ossl_out_of_memory(void)
{
	unsigned long e;
	bool oom = false;

	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
			oom = true;
	return oom;
}

/* ECDSA P-256 SHA-256 check of sig over msg by the point pubkey. */
static ks_err_t verify_signed(const uint8_t pubkey[KS_PUBKEY_LEN],
			      const uint8_t *msg, size_t msg_len,
			      const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *md = NULL;
	ks_err_t r;

	/* Point validated with the cached group (on-curve; P-256 has
	 * cofactor 1, so that is the full public-key check). */
	r = ks_pubkey_from_point(pubkey, &pkey);
	if (r != KS_OK)
		goto out;
	r = KS_ERR_VERIFY;
	md = EVP_MD_CTX_new();
	if (md == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1) {
		r = KS_ERR_CRYPTO;
		goto out;
	}
	if (EVP_DigestVerify(md, sig, sig_len, msg, msg_len) == 1)
		r = KS_OK;
out:
	if (r == KS_ERR_VERIFY && ossl_out_of_memory())
		r = KS_ERR_NOMEM;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return r;
}

ks_err_t ks_verify_challenge(const uint8_t pubkey[KS_PUBKEY_LEN],
			     const uint8_t *uid, size_t uid_len,
			     const uint8_t *nonce, size_t nonce_len,
			     const uint8_t *sig, size_t sig_len)
{
	uint8_t msg[KP_CHALLENGE_DOMAIN_LEN + 1 + 255 + 255];
	size_t msg_len = 0;

	if (pubkey == NULL || sig == NULL || sig_len == 0 ||
	    kp_challenge_message(uid, uid_len, nonce, nonce_len, msg,
				 sizeof(msg), &msg_len) != KP_OK)
		return KS_ERR_ARG;
	return verify_signed(pubkey, msg, msg_len, sig, sig_len);
}

ks_err_t ks_verify_lock_report(const uint8_t pubkey[KS_PUBKEY_LEN],
			       const uint8_t *uid, size_t uid_len,
			       uint8_t lock, uint8_t state,
			       const uint8_t *nonce, size_t nonce_len,
			       const uint8_t *sig, size_t sig_len)
{
	uint8_t msg[KP_LOCK_DOMAIN_LEN + 1 + 255 + 2 + 255];
	size_t msg_len = 0;

	if (pubkey == NULL || sig == NULL || sig_len == 0 ||
	    kp_lock_message(uid, uid_len, lock, state, nonce, nonce_len, msg,
			    sizeof(msg), &msg_len) != KP_OK)
		return KS_ERR_ARG;
	return verify_signed(pubkey, msg, msg_len, sig, sig_len);
}

ks_err_t ks_csr_verify(const uint8_t *csr, size_t csr_len,
		       const uint8_t pubkey[KS_PUBKEY_LEN])
{
	const unsigned char *p = csr;
	X509_REQ *req = NULL;
	EVP_PKEY *got;
	uint8_t pt[KS_P256_POINT_LEN];
	char group[64];
	size_t glen = 0;
	ks_err_t r = KS_ERR_ARG;

	if (csr == NULL || pubkey == NULL || csr_len == 0 ||
	    csr_len > 0x7fffffff)
		goto out;
	r = KS_ERR_VERIFY;
	req = d2i_X509_REQ(NULL, &p, (long)csr_len);
	if (req == NULL || p != csr + csr_len) {
		ks_log_warn("CSR does not parse as exactly one DER request");
		goto out;
	}
	got = X509_REQ_get0_pubkey(req);
	if (got == NULL || !EVP_PKEY_is_a(got, "EC") ||
	    EVP_PKEY_get_utf8_string_param(got, OSSL_PKEY_PARAM_GROUP_NAME,
					   group, sizeof(group), &glen) != 1 ||
	    strcmp(group, "prime256v1") != 0) {
		ks_log_warn("CSR key is not an EC P-256 key");
		goto out;
	}
	if (X509_REQ_get_signature_nid(req) != NID_ecdsa_with_SHA256 ||
	    X509_REQ_verify(req, got) != 1) {
		ks_log_warn("CSR signature (proof of possession) invalid");
		goto out;
	}
	/* The decoder put the CSR's point on the curve; the key GENKEY
	 * reported must be that point (no second EVP_PKEY). */
	if (ks_pubkey_point(got, pt) != KS_OK ||
	    memcmp(pt, pubkey, KS_PUBKEY_LEN) != 0) {
		ks_log_warn("CSR key differs from the key GENKEY reported");
		goto out;
	}
	r = KS_OK;
out:
	if (r == KS_ERR_VERIFY && ossl_out_of_memory())
		r = KS_ERR_NOMEM;
	X509_REQ_free(req);
	ERR_clear_error();
	return r;
}
