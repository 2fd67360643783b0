/*
 * kiln station library: the signer as its own process, and its client.
 *
 * Wire: a SOCK_SEQPACKET socket (one message per datagram, boundaries
 * kept) carrying two fixed-size plain-data structs, sp_req_t and
 * sp_resp_t, in host byte order (both ends are the same build on the same
 * machine). A message of any other size, magic or type is refused. The
 * server answers one request at a time.
 *
 * The request table (request_allowed()) is what makes a signature
 * possible: the session named by the request must exist in the registry,
 * be KEYED, carry the request's public-key hash, serial, UID, profile,
 * lot and key origin, have no certificate yet, and not have been signed
 * for by this signer before; the lot's quota must allow one more. Every
 * refusal is logged and appended to the audit log as SIGN_REFUSED.
 */
#include "host/lib/signer.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "host/lib/db.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "host/lib/registry_health.h"
#include "host/lib/signer_priv.h"

#define SP_MAGIC 0x6b534731u  /* "kSG1" */
#define SP_DER_MAX 4096       /* one chain certificate */
#define SP_REASON_MAX 1024
#define SP_TIMEOUT_MS 60000   /* a slow token still answers in time */
#define SP_ACTOR "kiln-signer"

enum { SP_HELLO = 1, SP_CHAIN = 2, SP_ISSUE = 3 };

typedef struct {
	uint32_t magic;
	uint32_t type;
	uint32_t idx; /* SP_CHAIN: certificate index */
	uint32_t id;  /* request id, echoed in the answer */
	ks_issue_req_t req; /* SP_ISSUE */
} sp_req_t;

typedef struct {
	uint32_t magic;
	uint32_t type;
	uint32_t id;     /* the request's id */
	uint32_t status; /* ks_err_t */
	uint32_t count;  /* SP_HELLO: chain length */
	char reason[SP_REASON_MAX];
	uint32_t der_len;
	uint8_t der[SP_DER_MAX]; /* SP_CHAIN */
	ks_issued_t issued;      /* SP_ISSUE */
} sp_resp_t;

/* ---- server ------------------------------------------------------------ */

typedef struct {
	ks_signer_t *signer;
	const ks_signer_serve_cfg_t *cfg;
	ks_reg_t *reg;
	int64_t *signed_ids; /* sessions signed for by this process */
	size_t n_signed, cap_signed;
	char **seeded_lots;  /* lots whose quota/count came from the registry */
	size_t n_seeded;
} server_t;

static int send_all(int fd, const void *buf, size_t len)
{
	ssize_t n;

	do {
		n = send(fd, buf, len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	return n == (ssize_t)len ? 0 : -1;
}

/* Append a SIGN_REFUSED event; failures to record are logged loudly. */
static void record_refusal(server_t *sv, const ks_issue_req_t *req,
			   ks_err_t why, const char *reason)
{
	json_t *j;
	char *txt = NULL;
	int r = KS_ERR_NOMEM;

	ks_log_warn("refused to sign for session %lld (lot '%.64s', profile '%.63s'): %s",
		    (long long)req->session_id, req->lot, req->profile, reason);
	/* a registry that stayed unreachable for the whole reconnect
	 * window cannot take the event either (and refused nothing) */
	if (sv->reg == NULL || why == KS_ERR_UNAVAILABLE)
		return;
	j = json_pack("{s:I, s:s%, s:s%, s:s%, s:s, s:s}", "session_id",
		      (json_int_t)req->session_id, "lot", req->lot,
		      strnlen(req->lot, sizeof(req->lot)), "profile",
		      req->profile, strnlen(req->profile, sizeof(req->profile)),
		      "serial", req->serial,
		      strnlen(req->serial, sizeof(req->serial)), "error",
		      ks_strerror((int)why), "reason", reason);
	if (j != NULL)
		txt = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	if (txt != NULL)
		r = ks_reg_audit_event(sv->reg, SP_ACTOR,
				       KS_REG_EV_SIGN_REFUSED, txt);
	if (r != KS_OK)
		ks_log_error("cannot record SIGN_REFUSED: %s", ks_strerror(r));
	free(txt);
	json_decref(j);
}

/*
 * Open the registry as the station did (its options; a lost database
 * connection is waited for as long as the station waits for it). The
 * reason names the registry with its password masked.
 */
static ks_err_t open_registry(server_t *sv, char *why, size_t whylen)
{
	const ks_reg_opts_t *o = sv->cfg->registry_opts;
	char shown[512];
	int r;

	r = ks_reg_open_ex(sv->cfg->registry, sv->cfg->station_id, o, &sv->reg);
	if (r != KS_OK) {
		ks_db_url_mask(sv->cfg->registry, shown, sizeof(shown));
		snprintf(why, whylen, "the signer cannot open the registry %s: %s",
			 shown, ks_strerror(r));
		return (ks_err_t)r;
	}
	if (o != NULL)
		ks_reg_set_db_timeout(sv->reg, o->timeout_s);
	return KS_OK;
}

/* Take quota and issued count of a lot from the registry once. */
static ks_err_t seed_lot(server_t *sv, const char *lot)
{
	ks_reg_lot_t l;
	char **grown;
	size_t i;
	int r;

	for (i = 0; i < sv->n_seeded; i++) {
		if (strcmp(sv->seeded_lots[i], lot) == 0)
			return KS_OK;
	}
	r = ks_reg_lot_get(sv->reg, lot, &l);
	if (r == KS_ERR_NOTFOUND)
		return KS_ERR_NOTFOUND;
	if (r != KS_OK)
		return (ks_err_t)r;
	if (l.quota > 0)
		r = (int)ks_signer_set_lot_quota(sv->signer, lot,
						 (uint64_t)l.quota);
	if (r == KS_OK)
		r = (int)ks_signer_set_lot_issued(sv->signer, lot,
						  l.active + l.voided);
	if (r != KS_OK)
		return (ks_err_t)r;
	grown = realloc(sv->seeded_lots, (sv->n_seeded + 1) * sizeof(*grown));
	if (grown == NULL)
		return KS_ERR_NOMEM;
	sv->seeded_lots = grown;
	grown[sv->n_seeded] = strdup(lot);
	if (grown[sv->n_seeded] == NULL)
		return KS_ERR_NOMEM;
	sv->n_seeded++;
	return KS_OK;
}

static int signed_before(const server_t *sv, int64_t id)
{
	for (size_t i = 0; i < sv->n_signed; i++) {
		if (sv->signed_ids[i] == id)
			return 1;
	}
	return 0;
}

static ks_err_t remember_signed(server_t *sv, int64_t id)
{
	if (sv->n_signed == sv->cap_signed) {
		size_t cap = sv->cap_signed ? sv->cap_signed * 2 : 64;
		int64_t *g = realloc(sv->signed_ids, cap * sizeof(*g));

		if (g == NULL)
			return KS_ERR_NOMEM;
		sv->signed_ids = g;
		sv->cap_signed = cap;
	}
	sv->signed_ids[sv->n_signed++] = id;
	return KS_OK;
}

/* The request table. KS_OK, or the refusal code with a reason. */
static ks_err_t request_allowed(server_t *sv, const ks_issue_req_t *req,
				char *why, size_t whylen)
{
	ks_reg_session_t sess;
	uint8_t h[32];
	uint8_t *der = NULL;
	size_t der_len = 0;
	ks_reg_key_origin_t origin;
	int r;

	if (req->session_id <= 0) {
		snprintf(why, whylen, "no session named");
		return KS_ERR_STATE;
	}
	r = ks_reg_session_get(sv->reg, req->session_id, &sess);
	if (r == KS_ERR_NOTFOUND) {
		snprintf(why, whylen, "no such session");
		return KS_ERR_STATE;
	}
	if (r != KS_OK) {
		snprintf(why, whylen, "registry: %s", ks_strerror(r));
		return (ks_err_t)r;
	}
	if (sess.state != KS_REG_KEYED) {
		snprintf(why, whylen, "session is %s, not KEYED",
			 ks_reg_state_name((int)sess.state));
		return KS_ERR_STATE;
	}
	if (signed_before(sv, req->session_id)) {
		snprintf(why, whylen, "a certificate was already signed for this session");
		return KS_ERR_DUPLICATE;
	}
	r = ks_reg_session_cert(sv->reg, req->session_id, &der, &der_len, NULL,
				0);
	free(der);
	if (r != KS_ERR_NOTFOUND) {
		snprintf(why, whylen, "the session already has a certificate");
		return KS_ERR_DUPLICATE;
	}
	if (!sess.has_pubkey || ks_issue_req_spki_sha256(req, h) != KS_OK ||
	    CRYPTO_memcmp(h, sess.pubkey_sha256, 32) != 0) {
		snprintf(why, whylen, "public key differs from the one the session recorded");
		return KS_ERR_POLICY;
	}
	origin = req->origin == KS_KEY_ORIGIN_HOST ? KS_REG_KEY_HOST
						   : KS_REG_KEY_DEVICE;
	if (strncmp(req->profile, sess.profile, sizeof(req->profile)) != 0 ||
	    strncmp(req->lot, sess.lot, sizeof(req->lot)) != 0 ||
	    strncmp(req->serial, sess.serial, sizeof(req->serial)) != 0 ||
	    req->uid_len != sess.uid_len ||
	    memcmp(req->uid, sess.uid, sess.uid_len) != 0 ||
	    origin != sess.key_origin) {
		snprintf(why, whylen, "serial, UID, profile, lot or key origin differs from the session");
		return KS_ERR_POLICY;
	}
	r = (int)seed_lot(sv, sess.lot);
	if (r != KS_OK) {
		snprintf(why, whylen, "lot '%s': %s", sess.lot, ks_strerror(r));
		return (ks_err_t)r;
	}
	return KS_OK;
}

static void handle_issue(server_t *sv, const sp_req_t *rq, sp_resp_t *rs)
{
	ks_issue_req_t req = rq->req;
	char why[SP_REASON_MAX] = "";
	ks_err_t r;

	/* force termination of every string the request carries */
	req.profile[sizeof(req.profile) - 1] = '\0';
	req.serial[sizeof(req.serial) - 1] = '\0';
	req.lot[sizeof(req.lot) - 1] = '\0';
	if (sv->reg == NULL) {
		r = KS_ERR_STATE;
		snprintf(why, sizeof(why), "no HELLO yet");
	} else {
		r = request_allowed(sv, &req, why, sizeof(why));
	}
	if (r == KS_OK) {
		r = ks_signer_issue(sv->signer, &req, &rs->issued);
		if (r == KS_ERR_QUOTA)
			snprintf(why, sizeof(why), "lot quota reached");
		else if (r != KS_OK)
			snprintf(why, sizeof(why), "refused by the signer: %s",
				 ks_strerror((int)r));
	}
	if (r == KS_OK && remember_signed(sv, req.session_id) != KS_OK) {
		/* cannot enforce "once per session": do not hand it out */
		memset(&rs->issued, 0, sizeof(rs->issued));
		r = KS_ERR_NOMEM;
		snprintf(why, sizeof(why), "out of memory");
	}
	if (r != KS_OK)
		record_refusal(sv, &req, r, why);
	rs->status = (uint32_t)r;
	snprintf(rs->reason, sizeof(rs->reason), "%s", why);
}

ks_err_t ks_signer_serve(ks_signer_t **signer, int fd,
			 const ks_signer_serve_cfg_t *cfg)
{
	server_t sv;
	sp_req_t *rq = NULL;
	sp_resp_t *rs = NULL;
	ks_err_t r = KS_ERR_NOMEM;

	memset(&sv, 0, sizeof(sv));
	if (signer == NULL || cfg == NULL ||
	    (*signer == NULL && cfg->load_error == NULL)) {
		r = KS_ERR_ARG;
		goto out;
	}
	sv.signer = *signer;
	*signer = NULL;
	sv.cfg = cfg;
	rq = calloc(1, sizeof(*rq));
	rs = calloc(1, sizeof(*rs));
	if (rq == NULL || rs == NULL)
		goto out;
	for (;;) {
		ssize_t n;

		do {
			n = recv(fd, rq, sizeof(*rq), MSG_TRUNC);
		} while (n < 0 && errno == EINTR);
		if (n == 0) {
			r = KS_OK; /* the station closed its end */
			break;
		}
		if (n < 0) {
			r = KS_ERR_IO;
			break;
		}
		memset(rs, 0, sizeof(*rs));
		rs->magic = SP_MAGIC;
		rs->type = rq->type;
		rs->id = rq->id;
		if ((size_t)n != sizeof(*rq) || rq->magic != SP_MAGIC) {
			ks_log_error("malformed signer request (%zd bytes)", n);
			rs->status = KS_ERR_PROTO;
			snprintf(rs->reason, sizeof(rs->reason),
				 "malformed request");
		} else if (rq->type == SP_HELLO) {
			if (cfg->load_error != NULL) {
				rs->status = KS_ERR_CONFIG;
				snprintf(rs->reason, sizeof(rs->reason), "%s",
					 cfg->load_error);
			} else if (sv.reg == NULL &&
				   (rs->status = (uint32_t)open_registry(
					    &sv, rs->reason,
					    sizeof(rs->reason))) != KS_OK) {
				/* the reason is set */
			} else {
				rs->count = (uint32_t)ks_signer_chain_len(sv.signer);
			}
		} else if (rq->type == SP_CHAIN && sv.signer != NULL) {
			const uint8_t *der;
			size_t len;

			if (ks_signer_chain_der(sv.signer, rq->idx, &der,
						&len) != KS_OK ||
			    len > sizeof(rs->der)) {
				rs->status = KS_ERR_ARG;
			} else {
				memcpy(rs->der, der, len);
				rs->der_len = (uint32_t)len;
			}
		} else if (rq->type == SP_ISSUE && sv.signer != NULL) {
			handle_issue(&sv, rq, rs);
		} else {
			rs->status = KS_ERR_PROTO;
			snprintf(rs->reason, sizeof(rs->reason),
				 "unexpected request");
		}
		if (send_all(fd, rs, sizeof(*rs)) != 0) {
			r = KS_ERR_IO;
			break;
		}
		OPENSSL_cleanse(rs, sizeof(*rs));
	}
out:
	free(rq);
	free(rs);
	for (size_t i = 0; i < sv.n_seeded; i++)
		free(sv.seeded_lots[i]);
	free(sv.seeded_lots);
	free(sv.signed_ids);
	ks_reg_close(&sv.reg);
	ks_signer_free(&sv.signer);
	return r;
}

/* ---- client ------------------------------------------------------------ */

/*
 * One round trip; rs->status holds the server's verdict. Each request
 * carries a fresh id that the answer echoes: an answer that arrives after
 * its request timed out (a signer waiting for its database longer than
 * SP_TIMEOUT_MS) is recognised as stale and dropped, never taken as the
 * answer to the next request.
 */
static ks_err_t round_trip(int fd, sp_req_t *rq, sp_resp_t *rs)
{
	static _Atomic uint32_t next_id = 1;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;
	int pr;

	rq->id = next_id++;
	if (send_all(fd, rq, sizeof(*rq)) != 0) {
		ks_log_error("signer process: send failed: %s", strerror(errno));
		return KS_ERR_CLOSED;
	}
	for (;;) {
		do {
			pr = poll(&pfd, 1, SP_TIMEOUT_MS);
		} while (pr < 0 && errno == EINTR);
		if (pr == 0) {
			ks_log_error("signer process did not answer");
			return KS_ERR_TIMEOUT;
		}
		do {
			n = recv(fd, rs, sizeof(*rs), MSG_TRUNC);
		} while (n < 0 && errno == EINTR);
		if (n == 0) {
			ks_log_error("signer process is gone");
			return KS_ERR_CLOSED;
		}
		if (n != (ssize_t)sizeof(*rs) || rs->magic != SP_MAGIC) {
			ks_log_error("malformed answer from the signer process");
			return KS_ERR_PROTO;
		}
		if (rs->id == rq->id)
			break;
		ks_log_warn("signer process: dropped a late answer "
			    "(request %u, waiting for %u)", rs->id, rq->id);
	}
	if (rs->type != rq->type) {
		ks_log_error("malformed answer from the signer process");
		return KS_ERR_PROTO;
	}
	rs->reason[sizeof(rs->reason) - 1] = '\0';
	return KS_OK;
}

ks_err_t ks_signer_remote_issue(int fd, const ks_issue_req_t *req,
				ks_issued_t *out)
{
	sp_req_t *rq = calloc(1, sizeof(*rq));
	sp_resp_t *rs = calloc(1, sizeof(*rs));
	ks_err_t r = KS_ERR_NOMEM;

	if (rq == NULL || rs == NULL)
		goto out;
	rq->magic = SP_MAGIC;
	rq->type = SP_ISSUE;
	rq->req = *req;
	r = round_trip(fd, rq, rs);
	if (r != KS_OK)
		goto out;
	r = (ks_err_t)rs->status;
	if (r != KS_OK) {
		ks_log_error("signer process refused session %lld: %s",
			     (long long)req->session_id, rs->reason);
		goto out;
	}
	if (rs->issued.der_len == 0 ||
	    rs->issued.der_len > sizeof(rs->issued.der)) {
		r = KS_ERR_PROTO;
		goto out;
	}
	*out = rs->issued;
	out->serial_hex[sizeof(out->serial_hex) - 1] = '\0';
out:
	free(rq);
	free(rs);
	return r;
}

void ks_signer_remote_close(int fd, pid_t pid)
{
	int st;

	if (fd >= 0)
		close(fd); /* the signer sees EOF and exits */
	if (pid > 0) {
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
	}
}

ks_err_t ks_signer_connect(int fd, pid_t pid, ks_signer_t **out, char *err,
			   size_t errlen)
{
	sp_req_t *rq = calloc(1, sizeof(*rq));
	sp_resp_t *rs = calloc(1, sizeof(*rs));
	STACK_OF(X509) *chain = NULL;
	uint32_t n, i;
	ks_err_t r = KS_ERR_NOMEM;

	if (out != NULL)
		*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || fd < 0) {
		r = KS_ERR_ARG;
		goto out;
	}
	chain = sk_X509_new_null();
	if (rq == NULL || rs == NULL || chain == NULL)
		goto out;
	rq->magic = SP_MAGIC;
	rq->type = SP_HELLO;
	r = round_trip(fd, rq, rs);
	if (r == KS_OK)
		r = (ks_err_t)rs->status;
	if (r != KS_OK) {
		if (err != NULL)
			snprintf(err, errlen, "%s",
				 rs->reason[0] ? rs->reason
					       : "the signer process did not start");
		goto out;
	}
	n = rs->count;
	if (n == 0 || n > 16) {
		r = KS_ERR_PROTO;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const unsigned char *p;
		X509 *x;

		rq->type = SP_CHAIN;
		rq->idx = i;
		r = round_trip(fd, rq, rs);
		if (r == KS_OK)
			r = (ks_err_t)rs->status;
		if (r != KS_OK)
			goto out;
		r = KS_ERR_PROTO;
		if (rs->der_len == 0 || rs->der_len > sizeof(rs->der))
			goto out;
		p = rs->der;
		x = d2i_X509(NULL, &p, (long)rs->der_len);
		if (x == NULL || p != rs->der + rs->der_len ||
		    sk_X509_push(chain, x) <= 0) {
			X509_free(x);
			goto out;
		}
	}
	r = ks_signer_new_remote(fd, pid, chain, out);
	if (r == KS_OK) {
		chain = NULL;
		fd = -1;
		pid = 0;
	}
out:
	if (r != KS_OK && err != NULL && errlen > 0 && err[0] == '\0')
		snprintf(err, errlen, "signer process: %s", ks_strerror((int)r));
	if (fd >= 0)
		ks_signer_remote_close(fd, pid);
	sk_X509_pop_free(chain, X509_free);
	free(rq);
	free(rs);
	return r;
}
