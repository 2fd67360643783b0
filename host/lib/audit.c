/*
 * kiln station library: hash-chained audit log, signed checkpoints and the
 * offline verifier. Formats: docs/registry.md.
 */
#include "host/lib/audit.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include "host/lib/db.h"

#include "db/migrations.h"
#include "host/lib/err.h"
#include "host/lib/log.h"
#include "host/lib/registry_priv.h"

#define CP_DOMAIN "kiln-audit-checkpoint-v1"
#define CP_MSG_MAX (sizeof(CP_DOMAIN) + 4 + KS_REG_NAME_MAX + 8 + 32)

/* ---- row hash ---- */

enum { TAG_NULL = 0, TAG_INT = 1, TAG_TEXT = 2, TAG_BLOB = 3 };

static void put_be(uint8_t *p, uint64_t v, int n)
{
	int i;

	for (i = n - 1; i >= 0; i--) {
		p[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

static void hash_field(EVP_MD_CTX *c, int tag, const void *p, size_t n)
{
	uint8_t hdr[5];

	hdr[0] = (uint8_t)tag;
	put_be(hdr + 1, (uint64_t)n, 4);
	EVP_DigestUpdate(c, hdr, sizeof(hdr));
	if (n > 0)
		EVP_DigestUpdate(c, p, n);
}

static void hash_int(EVP_MD_CTX *c, int64_t v)
{
	uint8_t b[8];

	put_be(b, (uint64_t)v, 8);
	hash_field(c, TAG_INT, b, 8);
}

static void hash_text(EVP_MD_CTX *c, const char *s)
{
	if (s == NULL)
		hash_field(c, TAG_NULL, NULL, 0);
	else
		hash_field(c, TAG_TEXT, s, strlen(s));
}

void ks_audit_row_hash(const ks_audit_row_t *row, const uint8_t prev[32],
		       uint8_t out[32])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int n = 0;

	/* Only allocation can fail here; the all-ones value then matches no
	 * stored hash, so a verifier reports the row instead of passing. */
	if (c == NULL || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		memset(out, 0xff, 32);
		EVP_MD_CTX_free(c);
		return;
	}
	EVP_DigestUpdate(c, prev, 32);
	hash_int(c, row->seq);
	hash_int(c, row->time_ms);
	hash_text(c, row->station);
	hash_text(c, row->actor);
	hash_text(c, row->type);
	if (row->uid == NULL)
		hash_field(c, TAG_NULL, NULL, 0);
	else
		hash_field(c, TAG_BLOB, row->uid, row->uid_len);
	hash_text(c, row->device_serial);
	hash_text(c, row->cert_serial);
	if (row->has_session)
		hash_int(c, row->session_id);
	else
		hash_field(c, TAG_NULL, NULL, 0);
	hash_text(c, row->details);
	if (EVP_DigestFinal_ex(c, out, &n) != 1 || n != 32)
		memset(out, 0xff, 32);
	EVP_MD_CTX_free(c);
}

size_t ks_audit_checkpoint_message(const char *station, int64_t seq,
				   const uint8_t head[32], uint8_t *buf,
				   size_t cap)
{
	size_t dl = sizeof(CP_DOMAIN) - 1;
	size_t sl;
	size_t need;

	if (station == NULL || head == NULL)
		return 0;
	sl = strlen(station);
	if (sl > 0xffff)
		return 0;
	need = dl + 4 + sl + 8 + 32;
	if (buf == NULL || cap < need)
		return need;
	memcpy(buf, CP_DOMAIN, dl);
	put_be(buf + dl, (uint64_t)sl, 4);
	memcpy(buf + dl + 4, station, sl);
	put_be(buf + dl + 4 + sl, (uint64_t)seq, 8);
	memcpy(buf + dl + 4 + sl + 8, head, 32);
	return need;
}

int ks_audit_pubkey_sha256(EVP_PKEY *key, uint8_t out[32])
{
	unsigned char *der = NULL;
	int n;

	if (key == NULL)
		return KS_ERR_ARG;
	n = i2d_PUBKEY(key, &der);
	if (n <= 0)
		return KS_ERR_CRYPTO;
	SHA256(der, (size_t)n, out);
	OPENSSL_free(der);
	return KS_OK;
}

/* ---- signatures ---- */

int ks_audit_sign(EVP_PKEY *key, const uint8_t *msg, size_t len,
		  uint8_t **sig, size_t *sig_len)
{
	EVP_MD_CTX *md = NULL;
	uint8_t *buf = NULL;
	size_t n = 0;
	int r = KS_ERR_CRYPTO;

	*sig = NULL;
	*sig_len = 0;
	md = EVP_MD_CTX_new();
	if (md == NULL ||
	    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, NULL, &n, msg, len) != 1)
		goto out;
	buf = OPENSSL_malloc(n);
	if (buf == NULL || EVP_DigestSign(md, buf, &n, msg, len) != 1)
		goto out;
	*sig = buf;
	*sig_len = n;
	buf = NULL;
	r = KS_OK;
out:
	OPENSSL_free(buf);
	EVP_MD_CTX_free(md);
	return r;
}

int ks_audit_sig_verify(EVP_PKEY *pub, const uint8_t *msg, size_t len,
			const uint8_t *sig, size_t sig_len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int r = KS_ERR_VERIFY;

	if (md != NULL &&
	    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
	    EVP_DigestVerify(md, sig, sig_len, msg, len) == 1)
		r = KS_OK;
	EVP_MD_CTX_free(md);
	return r;
}

char *ks_audit_b64_encode(const uint8_t *p, size_t n)
{
	char *out;

	if (n > 0x3fffffff)
		return NULL;
	out = malloc(4 * ((n + 2) / 3) + 1);
	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

/* Decode standard base64 (no whitespace); *out malloc'ed. */
int ks_audit_b64_decode(const char *s, uint8_t **out, size_t *out_len)
{
	size_t n = strlen(s);
	uint8_t *buf;
	int m;
	size_t pad = 0;

	*out = NULL;
	*out_len = 0;
	if (n == 0 || n % 4 != 0 || n > 0x3fffffff)
		return KS_ERR_ARG;
	buf = malloc(n / 4 * 3 + 1);
	if (buf == NULL)
		return KS_ERR_NOMEM;
	m = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n);
	if (m < 0) {
		free(buf);
		return KS_ERR_ARG;
	}
	if (s[n - 1] == '=')
		pad++;
	if (s[n - 2] == '=')
		pad++;
	*out = buf;
	*out_len = (size_t)m - pad;
	return KS_OK;
}

/* ---- append ---- */

/*
 * Head of this station's chain, read inside the caller's write
 * transaction (so two stations appending at once cannot fork a chain: the
 * write lock serialises them and each reads its head after taking it).
 * seq 0 / zero hash when the chain has no row yet.
 */
static int audit_head(ks_reg_t *reg, int64_t *seq, uint8_t hash[32],
		      int64_t *cp_seq)
{
	ks_db_stmt_t *st = NULL;
	int rc;
	int r = KS_OK;

	if (reg->tx_open && reg->head_valid) {
		*seq = reg->head_seq;
		if (cp_seq != NULL)
			*cp_seq = reg->head_cp;
		memcpy(hash, reg->head_hash, 32);
		return KS_OK;
	}
	*seq = 0;
	if (cp_seq != NULL)
		*cp_seq = 0;
	memset(hash, 0, 32);
	rc = ks_db_prepare(reg->dbh,
			   "SELECT seq, row_hash, checkpoint_seq FROM "
			   "audit_heads WHERE chain = ?",
			   &st);
	if (rc != KS_DB_EOK)
		return ks_reg_db_err(reg, rc, "audit head");
	ks_db_bind_text(st, 1, reg->station);
	rc = ks_db_step(st);
	reg->head_cp = 0;
	if (rc == KS_DB_ROW) {
		*seq = ks_db_col_int64(st, 0);
		reg->head_cp = ks_db_col_int64(st, 2);
		if (ks_db_col_bytes(st, 1) == 32)
			memcpy(hash, ks_db_col_blob(st, 1), 32);
		else
			r = KS_ERR_AUDIT;
	} else if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "audit head");
	}
	ks_db_finish(&st);
	if (cp_seq != NULL)
		*cp_seq = reg->head_cp;
	/* kept for the rest of this write transaction (registry_priv.h) */
	reg->head_valid = r == KS_OK && reg->tx_open;
	if (reg->head_valid) {
		reg->head_seq = *seq;
		memcpy(reg->head_hash, hash, 32);
	}
	return r;
}

int ks_audit_since_checkpoint(ks_reg_t *reg, int64_t *count)
{
	uint8_t hash[32];
	int64_t seq = 0, cp = 0;
	int r;

	*count = 0;
	r = audit_head(reg, &seq, hash, &cp);
	if (r == KS_OK)
		*count = seq - cp;
	return r;
}

/* Move this station's head to (seq, hash); a checkpoint row also moves
 * checkpoint_seq. */
static int head_put(ks_reg_t *reg, int64_t seq, const uint8_t hash[32],
		    int checkpoint)
{
	ks_db_stmt_t *st = NULL;
	int rc;

	rc = ks_db_prepare(reg->dbh,
			   checkpoint
				   ? "INSERT INTO audit_heads(chain, seq, "
				     "row_hash, checkpoint_seq) VALUES(?1, ?2, "
				     "?3, ?2) ON CONFLICT(chain) DO UPDATE SET "
				     "seq = excluded.seq, row_hash = "
				     "excluded.row_hash, checkpoint_seq = "
				     "excluded.checkpoint_seq"
				   : "INSERT INTO audit_heads(chain, seq, "
				     "row_hash, checkpoint_seq) VALUES(?1, ?2, "
				     "?3, 0) ON CONFLICT(chain) DO UPDATE SET "
				     "seq = excluded.seq, row_hash = "
				     "excluded.row_hash",
			   &st);
	if (rc != KS_DB_EOK)
		return ks_reg_db_err(reg, rc, "audit head");
	ks_db_bind_text(st, 1, reg->station);
	ks_db_bind_int64(st, 2, seq);
	ks_db_bind_blob(st, 3, hash, 32);
	rc = ks_db_step(st);
	ks_db_finish(&st);
	if (rc != KS_DB_DONE)
		return ks_reg_db_err(reg, ks_db_last_err(reg->dbh),
				     "audit head");
	return KS_OK;
}

/* An audit row: ?1 chain (the station), ?2 chain_seq, ... ?13 row hash. */
#define AUDIT_INSERT                                                         \
	"INSERT INTO audit(seq, chain, chain_seq, time_ms, station_id, "    \
	"actor, type, uid, device_serial, cert_serial, session_id, details, " \
	"prev_hash, row_hash) VALUES((SELECT coalesce(max(seq), 0) + 1 "     \
	"FROM audit), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
/* The chain's head moved to that row (a checkpoint's also moves
 * checkpoint_seq), with the same parameters. */
#define HEAD_UPSERT                                                          \
	"INSERT INTO audit_heads(chain, seq, row_hash, checkpoint_seq) "    \
	"VALUES(?1, ?2, ?13, 0) ON CONFLICT(chain) DO UPDATE SET seq = "    \
	"excluded.seq, row_hash = excluded.row_hash"
#define HEAD_UPSERT_CP                                                       \
	"INSERT INTO audit_heads(chain, seq, row_hash, checkpoint_seq) "    \
	"VALUES(?1, ?2, ?13, ?2) ON CONFLICT(chain) DO UPDATE SET seq = "   \
	"excluded.seq, row_hash = excluded.row_hash, checkpoint_seq = "     \
	"excluded.checkpoint_seq"

/* After an append: the cached head follows the new row, or is dropped
 * when the append failed (the caller rolls back). */
static int head_moved(ks_reg_t *reg, int r, int64_t seq,
		      const uint8_t hash[32], int checkpoint)
{
	if (r != KS_OK || !reg->head_valid) {
		reg->head_valid = 0;
		return r;
	}
	reg->head_seq = seq;
	memcpy(reg->head_hash, hash, 32);
	if (checkpoint)
		reg->head_cp = seq;
	return r;
}

static int append_row(ks_reg_t *reg, const ks_audit_ev_t *ev, int64_t *seq)
{
	ks_db_stmt_t *st = NULL;
	ks_audit_row_t row;
	uint8_t prev[32], hash[32];
	int64_t head = 0;
	int r, pg;
	int rc;

	r = audit_head(reg, &head, prev, NULL);
	if (r != KS_OK)
		return r;
	memset(&row, 0, sizeof(row));
	row.seq = head + 1; /* the station's chain sequence */
	row.time_ms = ks_reg_now_ms();
	row.station = reg->station;
	row.actor = ev->actor != NULL ? ev->actor : "kilnd";
	row.type = ks_reg_event_name((int)ev->type);
	row.uid = ev->uid;
	row.uid_len = ev->uid != NULL ? ev->uid_len : 0;
	row.device_serial = ev->device_serial;
	row.cert_serial = ev->cert_serial;
	row.has_session = ev->session_id != 0;
	row.session_id = ev->session_id;
	row.details = ev->details;
	ks_audit_row_hash(&row, prev, hash);

	/* seq: the global order of rows across stations (writers hold the
	 * write lock, so max + 1 is taken by one transaction at a time).
	 * PostgreSQL moves the chain's head in the same statement (one
	 * round trip less per event); SQLite has no DML in a WITH clause
	 * and moves it next (head_put), at no network cost. */
	pg = ks_db_backend(reg->dbh) == KS_DB_PG;
	rc = ks_db_prepare(reg->dbh,
			   !pg ? AUDIT_INSERT " RETURNING seq"
			   : ev->type == KS_REG_EV_CHECKPOINT
				   ? "WITH ins AS (" AUDIT_INSERT " RETURNING "
				     "seq), h AS (" HEAD_UPSERT_CP ") SELECT "
				     "seq FROM ins"
				   : "WITH ins AS (" AUDIT_INSERT " RETURNING "
				     "seq), h AS (" HEAD_UPSERT ") SELECT seq "
				     "FROM ins",
			   &st);
	if (rc != KS_DB_EOK)
		return ks_reg_db_err(reg, rc, "audit insert");
	ks_db_bind_text(st, 1, reg->station);
	ks_db_bind_int64(st, 2, row.seq);
	ks_db_bind_int64(st, 3, row.time_ms);
	ks_db_bind_text(st, 4, row.station);
	ks_db_bind_text(st, 5, row.actor);
	ks_db_bind_text(st, 6, row.type);
	if (row.uid != NULL)
		ks_db_bind_blob(st, 7, row.uid, row.uid_len);
	else
		ks_db_bind_null(st, 7);
	if (row.device_serial != NULL)
		ks_db_bind_text(st, 8, row.device_serial);
	else
		ks_db_bind_null(st, 8);
	if (row.cert_serial != NULL)
		ks_db_bind_text(st, 9, row.cert_serial);
	else
		ks_db_bind_null(st, 9);
	if (row.has_session)
		ks_db_bind_int64(st, 10, row.session_id);
	else
		ks_db_bind_null(st, 10);
	if (row.details != NULL)
		ks_db_bind_text(st, 11, row.details);
	else
		ks_db_bind_null(st, 11);
	ks_db_bind_blob(st, 12, prev, 32);
	ks_db_bind_blob(st, 13, hash, 32);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW && seq != NULL)
		*seq = ks_db_col_int64(st, 0);
	if (rc == KS_DB_ROW)
		rc = ks_db_step(st);
	ks_db_finish(&st);
	if (rc != KS_DB_DONE)
		return head_moved(reg,
				  ks_reg_db_err(reg, ks_db_last_err(reg->dbh),
						"audit insert"),
				  0, hash, 0);
	/* a COMMIT cut off by the connection is resolved by this row */
	ks_db_set_commit_probe(reg->dbh, reg->station, row.seq, hash);
	ks_reg_fault(reg, "audit:append");
	/* The head is also kept apart so that a tail removed with the
	 * triggers dropped shows (unless audit_heads is forged too). */
	/* PostgreSQL: moved by the INSERT's statement */
	r = pg ? KS_OK
	       : head_put(reg, row.seq, hash,
			  ev->type == KS_REG_EV_CHECKPOINT);
	return head_moved(reg, r, row.seq, hash,
			  ev->type == KS_REG_EV_CHECKPOINT);
}

/* Base64 of a public key's DER SubjectPublicKeyInfo; malloc'ed. */
static char *pubkey_b64(EVP_PKEY *key)
{
	unsigned char *der = NULL;
	char *b64 = NULL;
	int n = i2d_PUBKEY(key, &der);

	if (n > 0)
		b64 = ks_audit_b64_encode(der, (size_t)n);
	OPENSSL_free(der);
	return b64;
}

int ks_audit_append_checkpoint(ks_reg_t *reg, const char *actor)
{
	uint8_t head[32];
	uint8_t msg[CP_MSG_MAX];
	uint8_t *sig = NULL;
	size_t sig_len = 0, mlen;
	char hhex[65], khex[65];
	char *b64 = NULL, *details = NULL, *pub = NULL;
	json_t *obj = NULL;
	int64_t seq = 0;
	int r;

	if (reg->key == NULL)
		return KS_ERR_STATE;
	r = audit_head(reg, &seq, head, NULL);
	if (r != KS_OK)
		return r;
	mlen = ks_audit_checkpoint_message(reg->station, seq, head, msg,
					   sizeof(msg));
	if (mlen == 0 || mlen > sizeof(msg))
		return KS_ERR_INTERNAL;
	r = ks_audit_sign(reg->key, msg, mlen, &sig, &sig_len);
	if (r != KS_OK)
		goto out;
	b64 = ks_audit_b64_encode(sig, sig_len);
	if (b64 == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	pub = pubkey_b64(reg->key);
	if (pub == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	ks_reg_hex(head, 32, hhex);
	ks_reg_hex(reg->key_sha256, 32, khex);
	obj = json_pack("{s:I, s:s, s:s, s:s, s:s}", "covers_seq",
			(json_int_t)seq, "head", hhex, "key_sha256", khex,
			"pubkey", pub, "sig", b64);
	details = obj ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (details == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	{
		ks_audit_ev_t ev = { .type = KS_REG_EV_CHECKPOINT,
				     .actor = actor ? actor : "kilnd",
				     .details = details };

		r = append_row(reg, &ev, NULL);
	}
out:
	json_decref(obj);
	OPENSSL_free(sig);
	free(b64);
	free(pub);
	free(details);
	return r;
}

int ks_audit_append(ks_reg_t *reg, const ks_audit_ev_t *ev, int64_t *seq)
{
	int64_t pending = 0;
	int r;

	ks_reg_fault(reg, "audit:before");
	r = append_row(reg, ev, seq);
	if (r != KS_OK || reg->key == NULL || reg->cp_every == 0 ||
	    ev->type == KS_REG_EV_CHECKPOINT)
		return r;
	r = ks_audit_since_checkpoint(reg, &pending);
	if (r == KS_OK && pending >= (int64_t)reg->cp_every)
		r = ks_audit_append_checkpoint(reg, NULL);
	return r;
}

int ks_audit_checkpoint(ks_reg_t *reg, const char *actor)
{
	int r;

	if (reg == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	if (reg->key == NULL) {
		r = KS_ERR_STATE;
		goto out;
	}
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto out;
	r = ks_audit_append_checkpoint(reg, actor);
	if (r == KS_OK)
		r = ks_reg_tx_commit(reg);
	else
		ks_reg_tx_rollback(reg);
out:
	pthread_mutex_unlock(&reg->mu);
	return r;
}

/* ---- verification ---- */

/* One chain as the verifier saw it. */
typedef struct {
	ks_audit_chain_t c;
	int64_t last_global; /* global seq of its last row */
} vchain_t;

/*
 * Checkpoint signatures are checked on a second thread while the reader
 * keeps hashing rows: a bounded queue of jobs, each owning its signature
 * and a reference to its key. The worker counts the good signatures per
 * chain and remembers the first bad one (jobs run in stream order, so the
 * first it sees is the earliest); the reader folds both into the report
 * after joining it, before anything else is checked.
 */
#define SIGQ_LEN 64

typedef struct {
	size_t chain;          /* index into vctx_t.chains */
	uint64_t pos;          /* the row's position in the stream */
	int64_t seq;
	EVP_PKEY *key;         /* a reference owned by the job */
	uint8_t *sig;          /* owned by the job */
	size_t sig_len, mlen;
	uint8_t msg[CP_MSG_MAX];
} sigjob_t;

typedef struct {
	uint64_t ok;           /* good signatures */
	int64_t last_ok_seq;   /* seq of the last good one, 0 if none */
} sigres_t;

typedef struct {
	pthread_mutex_t mu;
	pthread_cond_t nonempty, nonfull;
	sigjob_t jobs[SIGQ_LEN];
	size_t head, count;
	int closing;
	pthread_t th;
	int started;
	/* the worker's results, read by the reader only after the join */
	sigres_t *res;
	size_t res_cap;
	uint64_t failed;
	int has_fail, nomem;
	uint64_t fail_pos;
	size_t fail_chain;
	int64_t fail_seq;
} sigq_t;

typedef struct {
	ks_db_t *db;
	ks_audit_report_t *rep;
	X509_STORE *store;
	STACK_OF(X509) *untrusted;
	EVP_PKEY *const *keys;   /* trusted station keys */
	uint8_t (*key_sha)[32];  /* their SHA-256 fingerprints */
	size_t nkeys;
	vchain_t *chains;
	size_t nchains, chains_cap;
	EVP_MD_CTX *md;          /* reused for every row hash */
	EVP_MD *sha256;
	char *pub_seen;          /* last checkpoint's pubkey text checked */
	uint8_t pub_seen_sha[32];
	EVP_PKEY *pub_seen_key;  /* ...and the key it decodes to */
	uint64_t pos;            /* current row's position in the stream */
	uint64_t first_pos;      /* position of first_error's problem */
	int quiet;               /* first_error logged after the join */
	sigq_t *q;               /* signature worker, NULL: checked inline */
} vctx_t;

__attribute__((format(printf, 2, 3)))
static void problem(vctx_t *v, const char *fmt, ...)
{
	va_list ap;

	v->rep->errors++;
	if (v->rep->first_error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(v->rep->first_error, sizeof(v->rep->first_error), fmt, ap);
	va_end(ap);
	v->first_pos = v->pos;
	if (!v->quiet)
		ks_log_warn("audit verify: %s", v->rep->first_error);
}

/* Check one job's signature and record the outcome in q's results. */
static void sigjob_run(sigq_t *q, sigjob_t *j)
{
	if (ks_audit_sig_verify(j->key, j->msg, j->mlen, j->sig,
				j->sig_len) != KS_OK) {
		q->failed++;
		if (!q->has_fail || j->pos < q->fail_pos) {
			q->has_fail = 1;
			q->fail_pos = j->pos;
			q->fail_chain = j->chain;
			q->fail_seq = j->seq;
		}
	} else if (j->chain < q->res_cap || !q->nomem) {
		if (j->chain >= q->res_cap) {
			size_t cap = q->res_cap ? 2 * q->res_cap : 8;
			sigres_t *p;

			while (cap <= j->chain)
				cap *= 2;
			p = realloc(q->res, cap * sizeof(*p));
			if (p == NULL) {
				q->nomem = 1;
				goto out;
			}
			memset(p + q->res_cap, 0,
			       (cap - q->res_cap) * sizeof(*p));
			q->res = p;
			q->res_cap = cap;
		}
		q->res[j->chain].ok++;
		q->res[j->chain].last_ok_seq = j->seq;
	}
out:
	free(j->sig);
	EVP_PKEY_free(j->key);
	j->sig = NULL;
	j->key = NULL;
}

static void *sigq_worker(void *arg)
{
	sigq_t *q = arg;
	sigjob_t j;

	for (;;) {
		pthread_mutex_lock(&q->mu);
		while (q->count == 0 && !q->closing)
			pthread_cond_wait(&q->nonempty, &q->mu);
		if (q->count == 0) {
			pthread_mutex_unlock(&q->mu);
			break;
		}
		j = q->jobs[q->head];
		q->head = (q->head + 1) % SIGQ_LEN;
		q->count--;
		pthread_cond_signal(&q->nonfull);
		pthread_mutex_unlock(&q->mu);
		sigjob_run(q, &j);
	}
	return NULL;
}

/* A queue with its worker running, or NULL (signatures then checked on
 * the reader's thread). */
static sigq_t *sigq_start(void)
{
	sigq_t *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	if (pthread_mutex_init(&q->mu, NULL) != 0) {
		free(q);
		return NULL;
	}
	if (pthread_cond_init(&q->nonempty, NULL) != 0) {
		pthread_mutex_destroy(&q->mu);
		free(q);
		return NULL;
	}
	if (pthread_cond_init(&q->nonfull, NULL) != 0) {
		pthread_cond_destroy(&q->nonempty);
		pthread_mutex_destroy(&q->mu);
		free(q);
		return NULL;
	}
	if (pthread_create(&q->th, NULL, sigq_worker, q) != 0) {
		pthread_cond_destroy(&q->nonfull);
		pthread_cond_destroy(&q->nonempty);
		pthread_mutex_destroy(&q->mu);
		free(q);
		return NULL;
	}
	q->started = 1;
	return q;
}

/* Hand a job to the worker (waits while the queue is full); the job's
 * signature and key reference move to the queue. */
static void sigq_push(sigq_t *q, const sigjob_t *j)
{
	pthread_mutex_lock(&q->mu);
	while (q->count == SIGQ_LEN)
		pthread_cond_wait(&q->nonfull, &q->mu);
	q->jobs[(q->head + q->count) % SIGQ_LEN] = *j;
	q->count++;
	pthread_cond_signal(&q->nonempty);
	pthread_mutex_unlock(&q->mu);
}

/* Let the worker finish the queued jobs and wait for it. */
static void sigq_join(sigq_t *q)
{
	if (q == NULL || !q->started)
		return;
	pthread_mutex_lock(&q->mu);
	q->closing = 1;
	pthread_cond_signal(&q->nonempty);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->th, NULL);
	q->started = 0;
}

static void sigq_free(sigq_t *q)
{
	if (q == NULL)
		return;
	sigq_join(q);
	pthread_cond_destroy(&q->nonfull);
	pthread_cond_destroy(&q->nonempty);
	pthread_mutex_destroy(&q->mu);
	free(q->res);
	free(q);
}

/*
 * The signature results into the report: good ones counted per chain, and
 * the first bad one named unless a problem found earlier in the stream
 * already is (the same first error as checking them in line).
 */
static int sig_results(vctx_t *v, sigq_t *q)
{
	ks_audit_report_t *rep = v->rep;
	size_t i;

	for (i = 0; i < q->res_cap && i < v->nchains; i++) {
		if (q->res[i].ok == 0)
			continue;
		v->chains[i].c.checkpoints += q->res[i].ok;
		v->chains[i].c.last_checkpoint_seq = q->res[i].last_ok_seq;
		rep->checkpoints += q->res[i].ok;
	}
	rep->errors += q->failed;
	if (q->has_fail && q->fail_chain < v->nchains &&
	    (rep->first_error[0] == '\0' || q->fail_pos < v->first_pos)) {
		snprintf(rep->first_error, sizeof(rep->first_error),
			 "audit seq %lld at station %s (CHECKPOINT): bad "
			 "signature",
			 (long long)q->fail_seq,
			 v->chains[q->fail_chain].c.station);
		v->first_pos = q->fail_pos;
	}
	return q->nomem ? KS_ERR_NOMEM : KS_OK;
}

static int hex_nibble(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Exactly 2n hex digits into n bytes. */
static int hex_decode(const char *s, uint8_t *out, size_t n)
{
	size_t i;
	int hi, lo;

	if (s == NULL || strlen(s) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		hi = hex_nibble(s[2 * i]);
		lo = hex_nibble(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* The trusted key with this fingerprint, or NULL. */
static EVP_PKEY *trusted_key(const vctx_t *v, const uint8_t khash[32])
{
	size_t i;

	for (i = 0; i < v->nkeys; i++)
		if (memcmp(v->key_sha[i], khash, 32) == 0)
			return v->keys[i];
	return NULL;
}

static void check_checkpoint(vctx_t *v, vchain_t *ch, int64_t seq,
			     const char *station, const char *details,
			     const uint8_t prev[32])
{
	json_t *j = NULL;
	json_int_t covers = 0;
	const char *head_hex = NULL, *key_hex = NULL, *sig_b64 = NULL;
	const char *pub_b64 = NULL;
	uint8_t head[32], khash[32], phash[32];
	uint8_t *sig = NULL, *pder = NULL;
	size_t sig_len = 0, pder_len = 0, mlen;
	EVP_PKEY *key;
	const char *c = ch->c.station;
	sigjob_t job;
	sigres_t inline_res = { 0, 0 };

	memset(&job, 0, sizeof(job));

	j = details ? json_loads(details, 0, NULL) : NULL;
	if (j == NULL ||
	    json_unpack(j, "{s:I, s:s, s:s, s:s, s?s}", "covers_seq", &covers,
			"head", &head_hex, "key_sha256", &key_hex, "sig",
			&sig_b64, "pubkey", &pub_b64) != 0 ||
	    hex_decode(head_hex, head, 32) != 0 ||
	    hex_decode(key_hex, khash, 32) != 0) {
		problem(v, "audit seq %lld at station %s (CHECKPOINT): malformed "
			   "details",
			(long long)seq, c);
		goto out;
	}
	if (covers != seq - 1 || memcmp(head, prev, 32) != 0) {
		problem(v,
			"audit seq %lld at station %s (CHECKPOINT): covers seq "
			"%lld but does not match the head of the chain before "
			"it",
			(long long)seq, c, (long long)covers);
		goto out;
	}
	/* the recorded public key (checkpoints since schema 3) must be the
	 * one the fingerprint names */
	if (pub_b64 != NULL && v->pub_seen != NULL &&
	    strcmp(pub_b64, v->pub_seen) == 0) {
		/* the same key as the checkpoint before: decoded already */
		if (memcmp(v->pub_seen_sha, khash, 32) != 0) {
			problem(v,
				"audit seq %lld at station %s (CHECKPOINT): the "
				"recorded public key is not the key %.16s... "
				"it names",
				(long long)seq, c, key_hex);
			goto out;
		}
	} else if (pub_b64 != NULL) {
		const unsigned char *pp;
		EVP_PKEY *pk = NULL;
		int same = 0;

		if (ks_audit_b64_decode(pub_b64, &pder, &pder_len) == KS_OK &&
		    pder_len <= INT32_MAX) {
			pp = pder;
			pk = d2i_PUBKEY(NULL, &pp, (long)pder_len);
			same = pk != NULL && pp == pder + pder_len &&
			       ks_audit_pubkey_sha256(pk, phash) == KS_OK &&
			       memcmp(phash, khash, 32) == 0;
		}
		if (same) {
			free(v->pub_seen);
			EVP_PKEY_free(v->pub_seen_key);
			v->pub_seen = strdup(pub_b64);
			memcpy(v->pub_seen_sha, phash, 32);
			v->pub_seen_key = pk;
			pk = NULL;
		}
		EVP_PKEY_free(pk);
		if (!same) {
			problem(v,
				"audit seq %lld at station %s (CHECKPOINT): the "
				"recorded public key is not the key %.16s... "
				"it names",
				(long long)seq, c, key_hex);
			goto out;
		}
	}
	if (v->nkeys == 0) {
		/* no keys given: the keys the checkpoints record, one per
		 * chain (the report names them for the auditor to compare) */
		if (pub_b64 == NULL || v->pub_seen_key == NULL) {
			problem(v,
				"audit seq %lld at station %s (CHECKPOINT): "
				"records no public key; give the station keys",
				(long long)seq, c);
			goto out;
		}
		if (ch->c.has_key && memcmp(ch->c.key_sha256, khash, 32) != 0) {
			problem(v,
				"audit seq %lld at station %s (CHECKPOINT): "
				"signed by key %.16s..., not the key of the "
				"chain's earlier checkpoints",
				(long long)seq, c, key_hex);
			goto out;
		}
	}
	memcpy(ch->c.key_sha256, khash, 32);
	ch->c.has_key = 1;
	key = v->nkeys == 0 ? v->pub_seen_key : trusted_key(v, khash);
	if (key == NULL) {
		problem(v,
			"audit seq %lld at station %s (CHECKPOINT): signed by key "
			"%.16s..., not a trusted station key",
			(long long)seq, c, key_hex);
		goto out;
	}
	mlen = ks_audit_checkpoint_message(station, covers, head, job.msg,
					   sizeof(job.msg));
	if (mlen == 0 || mlen > sizeof(job.msg) ||
	    ks_audit_b64_decode(sig_b64, &sig, &sig_len) != KS_OK ||
	    EVP_PKEY_up_ref(key) != 1) {
		problem(v, "audit seq %lld at station %s (CHECKPOINT): bad "
			   "signature",
			(long long)seq, c);
		goto out;
	}
	job.chain = (size_t)(ch - v->chains);
	job.pos = v->pos;
	job.seq = seq;
	job.key = key;
	job.sig = sig;
	job.sig_len = sig_len;
	job.mlen = mlen;
	sig = NULL;
	if (v->q != NULL) {
		sigq_push(v->q, &job);
	} else {
		sigq_t inline_q;

		memset(&inline_q, 0, sizeof(inline_q));
		inline_q.res = &inline_res;
		inline_q.res_cap = 1;
		job.chain = 0;
		sigjob_run(&inline_q, &job);
		if (inline_q.failed > 0) {
			problem(v, "audit seq %lld at station %s (CHECKPOINT): "
				   "bad signature",
				(long long)seq, c);
		} else {
			ch->c.checkpoints++;
			ch->c.last_checkpoint_seq = seq;
			v->rep->checkpoints++;
		}
	}
out:
	free(sig);
	free(pder);
	json_decref(j);
}

static const char *ctext(ks_db_stmt_t *st, int i)
{
	return ks_db_col_text(st, i);
}

/* The row's hash input gathered in a buffer so the digest sees a few
 * large updates instead of two per field (the same bytes as hash_field). */
typedef struct {
	EVP_MD_CTX *c;
	size_t n;
	uint8_t b[1024];
} hbuf_t;

static void hb_flush(hbuf_t *h)
{
	if (h->n > 0)
		EVP_DigestUpdate(h->c, h->b, h->n);
	h->n = 0;
}

static void hb_put(hbuf_t *h, const void *p, size_t n)
{
	if (n > sizeof(h->b) - h->n) {
		hb_flush(h);
		if (n > sizeof(h->b)) {
			EVP_DigestUpdate(h->c, p, n);
			return;
		}
	}
	memcpy(h->b + h->n, p, n);
	h->n += n;
}

static void hb_field(hbuf_t *h, int tag, const void *p, size_t n)
{
	uint8_t hdr[5];

	hdr[0] = (uint8_t)tag;
	put_be(hdr + 1, (uint64_t)n, 4);
	hb_put(h, hdr, sizeof(hdr));
	if (n > 0)
		hb_put(h, p, n);
}

static void hb_int(hbuf_t *h, int64_t val)
{
	uint8_t b[8];

	put_be(b, (uint64_t)val, 8);
	hb_field(h, TAG_INT, b, 8);
}

static void hb_text(hbuf_t *h, const char *s)
{
	if (s == NULL)
		hb_field(h, TAG_NULL, NULL, 0);
	else
		hb_field(h, TAG_TEXT, s, strlen(s));
}

/* Row hash with the verifier's reused digest context (the same value as
 * ks_audit_row_hash). */
static void row_hash_fast(vctx_t *v, const ks_audit_row_t *row,
			  const uint8_t prev[32], uint8_t out[32])
{
	hbuf_t h;
	unsigned int n = 0;

	h.c = v->md;
	h.n = 0;
	if (EVP_DigestInit_ex2(h.c, v->sha256, NULL) != 1) {
		memset(out, 0xff, 32);
		return;
	}
	hb_put(&h, prev, 32);
	hb_int(&h, row->seq);
	hb_int(&h, row->time_ms);
	hb_text(&h, row->station);
	hb_text(&h, row->actor);
	hb_text(&h, row->type);
	if (row->uid == NULL)
		hb_field(&h, TAG_NULL, NULL, 0);
	else
		hb_field(&h, TAG_BLOB, row->uid, row->uid_len);
	hb_text(&h, row->device_serial);
	hb_text(&h, row->cert_serial);
	if (row->has_session)
		hb_int(&h, row->session_id);
	else
		hb_field(&h, TAG_NULL, NULL, 0);
	hb_text(&h, row->details);
	hb_flush(&h);
	if (EVP_DigestFinal_ex(h.c, out, &n) != 1 || n != 32)
		memset(out, 0xff, 32);
}

/* A new chain entry (the stream visits each chain once, in order). */
static vchain_t *chain_new(vctx_t *v, const char *name)
{
	vchain_t *ch;

	if (v->nchains == v->chains_cap) {
		size_t cap = v->chains_cap ? 2 * v->chains_cap : 8;
		vchain_t *p = realloc(v->chains, cap * sizeof(*p));

		if (p == NULL)
			return NULL;
		v->chains = p;
		v->chains_cap = cap;
	}
	ch = &v->chains[v->nchains++];
	memset(ch, 0, sizeof(*ch));
	snprintf(ch->c.station, sizeof(ch->c.station), "%s",
		 name != NULL ? name : "");
	return ch;
}

/*
 * Every chain, streamed in (chain, chain_seq) order so that a log of
 * millions of rows is never held in memory: contiguous sequence from 1,
 * prev_hash links, row hashes, checkpoints.
 */
static int verify_chain(vctx_t *v)
{
	ks_db_stmt_t *st = NULL;
	vchain_t *ch = NULL;
	uint8_t prev[32], calc[32];
	int64_t expect = 1;
	int rc;
	int r = KS_ERR_DB;

	memset(prev, 0, sizeof(prev));
	rc = ks_db_prepare_stream(v->db,
				  "SELECT chain, chain_seq, time_ms, station_id, "
				  "actor, type, uid, device_serial, "
				  "cert_serial, session_id, details, "
				  "prev_hash, row_hash, seq FROM audit ORDER "
				  "BY chain, chain_seq",
				  &st);
	if (rc != KS_DB_EOK)
		goto out;
	while ((rc = ks_db_step(st)) == KS_DB_ROW) {
		ks_audit_row_t row;
		const char *chain = ctext(st, 0);
		const void *ph = ks_db_col_blob(st, 11);
		const void *rh = ks_db_col_blob(st, 12);
		const char *c;

		if (chain == NULL)
			chain = "";
		if (ch == NULL || strcmp(ch->c.station, chain) != 0) {
			ch = chain_new(v, chain);
			if (ch == NULL) {
				r = KS_ERR_NOMEM;
				goto out;
			}
			memset(prev, 0, sizeof(prev));
			expect = 1;
		}
		c = ch->c.station;
		memset(&row, 0, sizeof(row));
		row.seq = ks_db_col_int64(st, 1);
		row.time_ms = ks_db_col_int64(st, 2);
		row.station = ctext(st, 3);
		row.actor = ctext(st, 4);
		row.type = ctext(st, 5);
		if (ks_db_col_type(st, 6) != KS_DB_T_NULL) {
			row.uid = ks_db_col_blob(st, 6);
			row.uid_len = ks_db_col_bytes(st, 6);
			if (row.uid == NULL)
				row.uid = (const uint8_t *)"";
		}
		row.device_serial = ctext(st, 7);
		row.cert_serial = ctext(st, 8);
		row.has_session = ks_db_col_type(st, 9) != KS_DB_T_NULL;
		row.session_id = ks_db_col_int64(st, 9);
		row.details = ctext(st, 10);
		v->pos++;
		v->rep->rows++;
		ch->c.rows++;
		if (row.seq != expect)
			problem(v,
				"audit seq %lld at station %s: expected seq %lld "
				"(rows deleted, inserted or reordered)",
				(long long)row.seq, c, (long long)expect);
		if (ph == NULL || ks_db_col_bytes(st, 11) != 32 ||
		    memcmp(ph, prev, 32) != 0)
			problem(v,
				"audit seq %lld at station %s: prev_hash does not "
				"link to the row before it",
				(long long)row.seq, c);
		row_hash_fast(v, &row, prev, calc);
		if (rh == NULL || ks_db_col_bytes(st, 12) != 32 ||
		    memcmp(rh, calc, 32) != 0)
			problem(v,
				"audit seq %lld at station %s (%s): row_hash "
				"mismatch (the row was edited)",
				(long long)row.seq, c,
				row.type ? row.type : "?");
		if (row.type != NULL && strcmp(row.type, "CHECKPOINT") == 0)
			check_checkpoint(v, ch, row.seq,
					 row.station ? row.station : "",
					 row.details, prev);
		if (rh != NULL && ks_db_col_bytes(st, 12) == 32)
			memcpy(prev, rh, 32);
		else
			memcpy(prev, calc, 32);
		ch->c.head_seq = row.seq;
		memcpy(ch->c.head_hash, prev, 32);
		ch->last_global = ks_db_col_int64(st, 13);
		expect = row.seq + 1;
	}
	if (rc != KS_DB_DONE)
		goto out;
	r = KS_OK;
out:
	ks_db_finish(&st);
	return r;
}

static vchain_t *chain_find(vctx_t *v, const char *name)
{
	size_t i;

	for (i = 0; i < v->nchains; i++)
		if (strcmp(v->chains[i].c.station, name) == 0)
			return &v->chains[i];
	return NULL;
}

/* The head recorded by every append must be each chain's last row. */
static int verify_heads(vctx_t *v)
{
	ks_db_stmt_t *st = NULL;
	size_t i, seen = 0;
	int rc;

	rc = ks_db_prepare(v->db, "SELECT chain, seq, row_hash FROM "
				  "audit_heads ORDER BY chain",
			   &st);
	if (rc != KS_DB_EOK)
		return KS_ERR_DB;
	while ((rc = ks_db_step(st)) == KS_DB_ROW) {
		const char *name = ctext(st, 0) ? ctext(st, 0) : "";
		int64_t seq = ks_db_col_int64(st, 1);
		vchain_t *ch = chain_find(v, name);

		if (ch == NULL) {
			problem(v,
				"audit station %s: the registry recorded its "
				"head at seq %lld but the log has no row of "
				"it (rows 1..%lld were removed)",
				name, (long long)seq, (long long)seq);
			continue;
		}
		seen++;
		ch->c.head_recorded = 1;
		if (seq != ch->c.head_seq)
			problem(v,
				"audit station %s: the log ends at seq %lld "
				"but the registry recorded its head at seq "
				"%lld (rows after seq %lld were removed)",
				name, (long long)ch->c.head_seq,
				(long long)seq, (long long)ch->c.head_seq);
		else if (ks_db_col_bytes(st, 2) != 32 ||
			 memcmp(ks_db_col_blob(st, 2), ch->c.head_hash, 32) !=
				 0)
			problem(v,
				"audit seq %lld at station %s: head hash "
				"differs from the one the registry recorded",
				(long long)seq, name);
	}
	ks_db_finish(&st);
	if (rc != KS_DB_DONE)
		return KS_ERR_DB;
	if (seen != v->nchains)
		for (i = 0; i < v->nchains; i++)
			if (!v->chains[i].c.head_recorded)
				problem(v,
					"audit station %s: no head recorded "
					"for its chain (ends at seq %lld)",
					v->chains[i].c.station,
					(long long)v->chains[i].c.head_seq);
	return KS_OK;
}

/* Per-chain results into the report; the overall head is the chain
 * written last. */
static void report_chains(vctx_t *v)
{
	ks_audit_report_t *rep = v->rep;
	const vchain_t *last = NULL;
	size_t i;

	rep->chains_total = v->nchains;
	for (i = 0; i < v->nchains; i++) {
		vchain_t *ch = &v->chains[i];

		ch->c.unsigned_tail =
			(uint64_t)(ch->c.head_seq - ch->c.last_checkpoint_seq);
		rep->unsigned_tail += ch->c.unsigned_tail;
		if (i < KS_AUDIT_CHAINS_MAX)
			rep->chains[rep->nchains++] = ch->c;
		if (last == NULL || ch->last_global > last->last_global)
			last = ch;
	}
	if (last != NULL) {
		rep->head_seq = last->c.head_seq;
		memcpy(rep->head_hash, last->c.head_hash, 32);
		rep->last_checkpoint_seq = last->c.last_checkpoint_seq;
		snprintf(rep->head_station, sizeof(rep->head_station), "%s",
			 last->c.station);
	}
}

static int load_ca(vctx_t *v, const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;
	int n = 0;
	int r = KS_ERR_CONFIG;

	if (f == NULL) {
		ks_log_error("cannot open CA file %s", path);
		return KS_ERR_CONFIG;
	}
	v->store = X509_STORE_new();
	v->untrusted = sk_X509_new_null();
	if (v->store == NULL || v->untrusted == NULL)
		goto out;
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		n++;
		/* Self-signed: a trust anchor; else an intermediate. */
		if (X509_check_issued(x, x) == X509_V_OK) {
			if (X509_STORE_add_cert(v->store, x) != 1) {
				X509_free(x);
				goto out;
			}
			X509_free(x);
		} else if (!sk_X509_push(v->untrusted, x)) {
			X509_free(x);
			goto out;
		}
	}
	if (n > 0)
		r = KS_OK;
	else
		ks_log_error("no certificate in %s", path);
out:
	fclose(f);
	return r;
}

static int chains_to_ca(vctx_t *v, X509 *x, int *err)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok = 0;

	*err = X509_V_ERR_UNSPECIFIED;
	if (ctx == NULL ||
	    X509_STORE_CTX_init(ctx, v->store, x, v->untrusted) != 1)
		goto out;
	/* The audit is of what was issued, possibly long ago. */
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);
	ok = X509_verify_cert(ctx) == 1;
	*err = X509_STORE_CTX_get_error(ctx);
out:
	X509_STORE_CTX_free(ctx);
	return ok;
}

/* CERT_ISSUED event details of a certificate serial: cert_sha256 hex. */
static int issued_event_hash(vctx_t *v, const char *serial, uint8_t out[32],
			     int64_t *count)
{
	ks_db_stmt_t *st = NULL;
	int found = 0;

	*count = 0;
	if (ks_db_prepare(v->db, "SELECT details FROM audit WHERE type = "
			       "'CERT_ISSUED' AND cert_serial = ?", &st) != KS_DB_EOK)
		return 0;
	ks_db_bind_text(st, 1, serial);
	while (ks_db_step(st) == KS_DB_ROW) {
		json_t *j = json_loads(ctext(st, 0) ? ctext(st, 0) : "", 0,
				       NULL);
		const char *h = NULL;

		(*count)++;
		if (j != NULL && json_unpack(j, "{s:s}", "cert_sha256", &h) == 0 &&
		    hex_decode(h, out, 32) == 0)
			found = 1;
		json_decref(j);
	}
	ks_db_finish(&st);
	return found;
}

static void verify_one_cert(vctx_t *v, ks_db_stmt_t *st)
{
	int64_t id = ks_db_col_int64(st, 0);
	const uint8_t *der = ks_db_col_blob(st, 1);
	int der_len = (int)ks_db_col_bytes(st, 1);
	const char *serial = ctext(st, 2);
	const void *pk = ks_db_col_blob(st, 3);
	int64_t nb = ks_db_col_int64(st, 4);
	int64_t na = ks_db_col_int64(st, 5);
	const void *spk = ks_db_col_blob(st, 6);
	int spk_len = (int)ks_db_col_bytes(st, 6);
	const unsigned char *p = der;
	X509 *x = NULL;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	uint8_t h[32], ev_hash[32];
	int64_t nev = 0;
	struct tm tm;
	int err = 0;

	if (serial == NULL)
		serial = "?";
	v->rep->certificates++;
	if (der != NULL && der_len > 0)
		x = d2i_X509(NULL, &p, der_len);
	if (x == NULL || p != der + der_len) {
		problem(v, "certificates id %lld (serial %s): DER does not "
			   "parse", (long long)id, serial);
		goto out;
	}
	if (!chains_to_ca(v, x, &err)) {
		problem(v,
			"certificates id %lld (serial %s): does not chain to "
			"the CA (%s)",
			(long long)id, serial,
			X509_verify_cert_error_string(err));
		goto out;
	}
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	hex = bn ? BN_bn2hex(bn) : NULL;
	if (hex == NULL || strcasecmp(hex, serial) != 0) {
		problem(v,
			"certificates id %lld: DER serial %s does not match the "
			"row's serial %s",
			(long long)id, hex ? hex : "?", serial);
		goto out;
	}
	if (ks_audit_pubkey_sha256(X509_get0_pubkey(x), h) != KS_OK ||
	    pk == NULL || ks_db_col_bytes(st, 3) != 32 ||
	    memcmp(h, pk, 32) != 0) {
		problem(v,
			"certificates id %lld (serial %s): public key hash does "
			"not match the DER",
			(long long)id, serial);
		goto out;
	}
	if (spk == NULL || spk_len != 32 || memcmp(spk, pk, 32) != 0) {
		problem(v,
			"certificates id %lld (serial %s): public key is not "
			"the one its session recorded",
			(long long)id, serial);
		goto out;
	}
	memset(&tm, 0, sizeof(tm));
	if (!ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) ||
	    (int64_t)timegm(&tm) != nb ||
	    !ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) ||
	    (int64_t)timegm(&tm) != na) {
		problem(v,
			"certificates id %lld (serial %s): validity does not "
			"match the DER",
			(long long)id, serial);
		goto out;
	}
	SHA256(der, (size_t)der_len, h);
	if (!issued_event_hash(v, serial, ev_hash, &nev) || nev != 1) {
		problem(v,
			"certificates id %lld (serial %s): has %lld CERT_ISSUED "
			"audit events (expected 1)",
			(long long)id, serial, (long long)nev);
		goto out;
	}
	if (memcmp(h, ev_hash, 32) != 0)
		problem(v,
			"certificates id %lld (serial %s): DER differs from the "
			"certificate recorded in its CERT_ISSUED event",
			(long long)id, serial);
out:
	OPENSSL_free(hex);
	BN_free(bn);
	X509_free(x);
}

static int verify_certs(vctx_t *v)
{
	ks_db_stmt_t *st = NULL;
	int rc;

	rc = ks_db_prepare(v->db, "SELECT c.id, c.der, c.serial_hex, "
				"c.pubkey_sha256, c.not_before, c.not_after, "
				"s.pubkey_sha256 FROM certificates c LEFT JOIN "
				"sessions s ON s.id = c.session_id ORDER BY c.id", &st);
	if (rc != KS_DB_EOK)
		return KS_ERR_DB;
	while ((rc = ks_db_step(st)) == KS_DB_ROW)
		verify_one_cert(v, st);
	ks_db_finish(&st);
	return rc == KS_DB_DONE ? KS_OK : KS_ERR_DB;
}

/* Cross-checks: each query returns (table id, text) rows that are wrong. */
static const struct {
	const char *sql;
	const char *fmt; /* with %lld for the id and %s for the text */
} cross_checks[] = {
	{ "SELECT d.id, d.serial FROM devices d WHERE d.state = 'ACTIVE' AND "
	  "(SELECT count(*) FROM certificates c WHERE c.device_id = d.id AND "
	  "c.status = 'ACTIVE') <> 1 ORDER BY d.id",
	  "devices id %lld (serial %s): ACTIVE but does not have exactly one "
	  "ACTIVE certificate" },
	{ "SELECT d.id, d.serial FROM devices d JOIN certificates c ON c.id = "
	  "d.cert_id WHERE d.pubkey_sha256 IS DISTINCT FROM c.pubkey_sha256 "
	  "OR "
	  "c.device_id <> d.id ORDER BY d.id",
	  "devices id %lld (serial %s): public key hash does not match its "
	  "certificate" },
	{ "SELECT d.id, d.serial FROM devices d JOIN certificates c ON c.id = "
	  "d.cert_id JOIN sessions s ON s.id = c.session_id WHERE d.state = "
	  "'ACTIVE' AND s.device_serial <> d.serial ORDER BY d.id",
	  "devices id %lld (serial %s): serial is not the one its ACTIVE "
	  "certificate was issued for" },
	{ "SELECT c.id, c.serial_hex FROM certificates c LEFT JOIN devices d "
	  "ON d.id = c.device_id WHERE c.status = 'ACTIVE' AND (d.cert_id IS "
	  "NULL OR d.cert_id <> c.id) ORDER BY c.id",
	  "certificates id %lld (serial %s): ACTIVE but not its device's "
	  "current certificate" },
	{ "SELECT c.id, c.serial_hex FROM certificates c JOIN sessions s ON "
	  "s.id = c.session_id WHERE (c.status = 'ISSUED' AND s.state IN "
	  "('ACTIVE', 'FAILED', 'VOID', 'SCRAPPED')) OR (c.status IN "
	  "('ACTIVE', 'SUPERSEDED') AND s.state <> 'ACTIVE') OR c.device_id "
	  "<> s.device_id ORDER BY c.id",
	  "certificates id %lld (serial %s): status does not agree with its "
	  "session" },
	{ "SELECT c.id, c.serial_hex FROM certificates c WHERE c.status = "
	  "'VOID' AND NOT EXISTS (SELECT 1 FROM audit a WHERE a.type = "
	  "'VOIDED' AND a.cert_serial = c.serial_hex) ORDER BY c.id",
	  "certificates id %lld (serial %s): VOID without a VOIDED audit "
	  "event" },
	{ "SELECT a.seq, a.cert_serial FROM audit a WHERE a.type = "
	  "'CERT_ISSUED' AND NOT EXISTS (SELECT 1 FROM certificates c WHERE "
	  "c.serial_hex = a.cert_serial) ORDER BY a.seq",
	  "audit seq %lld: CERT_ISSUED for certificate %s which is not in the "
	  "certificates table" },
	{ "SELECT a.seq, a.cert_serial FROM audit a WHERE a.type = 'VOIDED' "
	  "AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial_hex = "
	  "a.cert_serial AND c.status = 'VOID') ORDER BY a.seq",
	  "audit seq %lld: VOIDED certificate %s is not VOID in the "
	  "certificates table" },
	{ "SELECT a.seq, a.type FROM audit a WHERE a.session_id IS NOT NULL "
	  "AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = a.session_id) "
	  "ORDER BY a.seq",
	  "audit seq %lld (%s): names a session that is not in the sessions "
	  "table" },
	{ "SELECT s.id, s.device_serial FROM sessions s WHERE NOT EXISTS "
	  "(SELECT 1 FROM audit a WHERE a.type = 'SESSION_RESERVED' AND "
	  "a.session_id = s.id AND a.device_serial = s.device_serial) ORDER BY "
	  "s.id",
	  "sessions id %lld (serial %s): no SESSION_RESERVED audit event" },
	{ "SELECT s.id, s.device_serial FROM sessions s WHERE s.state IN "
	  "('ACTIVE', 'FAILED', 'VOID', 'SCRAPPED') AND NOT EXISTS (SELECT 1 "
	  "FROM audit a WHERE a.session_id = s.id AND a.type = CASE s.state "
	  "WHEN 'VOID' THEN 'VOIDED' ELSE s.state END) ORDER BY s.id",
	  "sessions id %lld (serial %s): final state has no audit event" },
	{ "SELECT s.id, s.device_serial FROM sessions s WHERE (SELECT a.type "
	  "FROM audit a WHERE a.session_id = s.id AND a.type IN "
	  "('SESSION_RESERVED', 'KEYED', 'CERT_ISSUED', 'WRITTEN', 'VERIFIED', "
	  "'LOCKED', 'ACTIVE', 'FAILED', 'VOIDED', 'SCRAPPED') ORDER BY a.seq "
	  "DESC LIMIT 1) IS DISTINCT FROM CASE s.state WHEN 'RESERVED' THEN "
	  "'SESSION_RESERVED' WHEN 'ISSUED' THEN 'CERT_ISSUED' WHEN 'VOID' "
	  "THEN 'VOIDED' ELSE s.state END ORDER BY s.id",
	  "sessions id %lld (serial %s): state differs from its last audit "
	  "event" },
};

static int verify_cross(vctx_t *v)
{
	size_t i;

	for (i = 0; i < sizeof(cross_checks) / sizeof(cross_checks[0]); i++) {
		ks_db_stmt_t *st = NULL;
		int rc;

		rc = ks_db_prepare(v->db, cross_checks[i].sql, &st);
		if (rc != KS_DB_EOK) {
			ks_log_error("cross check %zu: %s", i,
				     ks_db_errmsg(v->db));
			return KS_ERR_DB;
		}
		while ((rc = ks_db_step(st)) == KS_DB_ROW) {
			const char *t = ctext(st, 1);

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
			problem(v, cross_checks[i].fmt,
				(long long)ks_db_col_int64(st, 0),
				t ? t : "NULL");
#pragma GCC diagnostic pop
		}
		ks_db_finish(&st);
		if (rc != KS_DB_DONE)
			return KS_ERR_DB;
	}
	{
		ks_db_stmt_t *st = NULL;

		if (ks_db_prepare(v->db, "SELECT count(*) FROM devices", &st) == KS_DB_EOK &&
		    ks_db_step(st) == KS_DB_ROW)
			v->rep->devices = (uint64_t)ks_db_col_int64(st, 0);
		ks_db_finish(&st);
	}
	return KS_OK;
}

int ks_audit_verify(const char *db_path, const char *ca_pem_path,
		    EVP_PKEY *station_pub, ks_audit_report_t *report)
{
	EVP_PKEY *keys[1];

	if (station_pub == NULL) {
		/* this form pins one key (ks_audit_verify_keys takes none) */
		if (report != NULL)
			memset(report, 0, sizeof(*report));
		return KS_ERR_ARG;
	}
	keys[0] = station_pub;
	return ks_audit_verify_keys(db_path, ca_pem_path, keys, 1, report);
}

int ks_audit_verify_keys(const char *db_path, const char *ca_pem_path,
			 EVP_PKEY *const *keys, size_t nkeys,
			 ks_audit_report_t *report)
{
	vctx_t v;
	ks_db_stmt_t *st = NULL;
	int version = -1;
	size_t i;
	int r = KS_ERR_ARG;

	memset(&v, 0, sizeof(v));
	if (report == NULL)
		return KS_ERR_ARG;
	memset(report, 0, sizeof(*report));
	v.rep = report;
	if (db_path == NULL || ca_pem_path == NULL ||
	    (keys == NULL && nkeys > 0) || nkeys > 4096)
		goto out;
	r = KS_ERR_NOMEM;
	v.key_sha = calloc(nkeys > 0 ? nkeys : 1, sizeof(*v.key_sha));
	v.md = EVP_MD_CTX_new();
	v.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (v.key_sha == NULL || v.md == NULL || v.sha256 == NULL)
		goto out;
	for (i = 0; i < nkeys; i++) {
		r = keys[i] != NULL
			    ? ks_audit_pubkey_sha256(keys[i], v.key_sha[i])
			    : KS_ERR_ARG;
		if (r != KS_OK)
			goto out;
	}
	v.keys = keys;
	v.nkeys = nkeys;
	r = load_ca(&v, ca_pem_path);
	if (r != KS_OK)
		goto out;
	r = KS_ERR_DB;
	if (ks_db_open_readonly(db_path, &v.db) != KS_DB_EOK) {
		char shown[512];

		ks_db_url_mask(db_path, shown, sizeof(shown));
		ks_log_error("cannot open %s: %s", shown, ks_db_errmsg(v.db));
		r = ks_db_connected(v.db) ? KS_ERR_DB : KS_ERR_UNAVAILABLE;
		goto out;
	}
	if (ks_db_backend(v.db) == KS_DB_SQLITE)
		r = ks_db_prepare(v.db, "PRAGMA user_version", &st);
	else
		r = ks_db_prepare(v.db, "SELECT coalesce(max(version), 0) "
					"FROM kiln_schema", &st);
	if (r == KS_DB_EOK && ks_db_step(st) == KS_DB_ROW)
		version = ks_db_col_int(st, 0);
	ks_db_finish(&st);
	r = KS_ERR_DB;
	if (version < 1 ||
	    version > (int)(ks_db_backend(v.db) == KS_DB_SQLITE
				    ? ks_db_migration_count
				    : ks_db_pg_migration_count)) {
		ks_log_error("%s: not a kiln registry of a known schema (%d)",
			     db_path, version);
		r = version < 1 ? KS_ERR_DB : KS_ERR_UNSUPPORTED;
		goto out;
	}
	if (version < 3) {
		/* opened read-only: the chain columns come with schema 3 */
		ks_log_error("%s: registry schema %d predates per-station "
			     "audit chains; open it once with this version "
			     "of kilnd or kiln to migrate it",
			     db_path, version);
		r = KS_ERR_UNSUPPORTED;
		goto out;
	}
	/* One read transaction: a consistent snapshot of every table. */
	if (ks_db_begin_read(v.db) != KS_DB_EOK)
		goto out;
	v.q = sigq_start();
	v.quiet = 1;
	r = verify_chain(&v);
	if (v.q != NULL) {
		int sr;

		sigq_join(v.q);
		sr = sig_results(&v, v.q);
		if (r == KS_OK)
			r = sr;
	}
	v.quiet = 0;
	v.pos = UINT64_MAX;
	if (report->first_error[0] != '\0')
		ks_log_warn("audit verify: %s", report->first_error);
	if (r == KS_OK)
		r = verify_heads(&v);
	if (r == KS_OK)
		r = verify_certs(&v);
	if (r == KS_OK)
		r = verify_cross(&v);
	ks_db_rollback(v.db);
	if (r != KS_OK)
		goto out;
	report_chains(&v);
	report->keys_pinned = nkeys > 0;
	report->ok = report->errors == 0;
	r = report->ok ? KS_OK : KS_ERR_AUDIT;
out:
	if (r != KS_OK && r != KS_ERR_AUDIT && report->first_error[0] == '\0')
		snprintf(report->first_error, sizeof(report->first_error),
			 "verification could not run: %s", ks_strerror(r));
	sigq_free(v.q);
	ks_db_close(&v.db);
	X509_STORE_free(v.store);
	sk_X509_pop_free(v.untrusted, X509_free);
	free(v.chains);
	free(v.pub_seen);
	EVP_PKEY_free(v.pub_seen_key);
	free(v.key_sha);
	EVP_MD_CTX_free(v.md);
	EVP_MD_free(v.sha256);
	return r;
}
