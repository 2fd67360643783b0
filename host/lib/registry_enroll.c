/*
 * kiln station library: field enrollment records (host/lib/registry.h,
 * "field enrollment").
 *
 * The enrollment service (host/lib/est.c) issues operational certificates
 * to devices that present a claim (or factory identity) certificate. Each
 * enrollment is a session of the device's UID in the lot its credential
 * came from: ks_reg_enroll_begin() checks the credential and the
 * uniqueness rules and records the session KEYED with a fresh device
 * serial, ks_reg_cert_issued() records the signed certificate, and
 * ks_reg_enroll_finish() makes it the device's ACTIVE certificate and
 * appends ENROLLED. The use count of a credential is the number of
 * ENROLLED events naming it (audit.cert_serial, indexed): the log is
 * append-only and hash-chained, so the count cannot be lowered without
 * `kiln audit verify` failing.
 *
 * The SQL runs on both backends of the database layer (host/lib/db.h);
 * device serials come from the station's serial allocator
 * (ks_reg_serial_take), like those of provisioning sessions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "host/lib/err.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "host/lib/registry_priv.h"

#define ENROLL_ACTOR "kilnd-enroll"

static const char *actor_or(const char *actor)
{
	return actor != NULL ? actor : ENROLL_ACTOR;
}

static void why_set(char *why, size_t whylen, const char *msg)
{
	if (why != NULL && whylen > 0)
		snprintf(why, whylen, "%s", msg);
}

static void col_copy(ks_db_stmt_t *st, int i, char *out, size_t cap)
{
	const char *t = ks_db_col_text(st, i);

	snprintf(out, cap, "%s", t != NULL ? t : "");
}

static char *json_dump_free(json_t *j)
{
	char *s = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS)
			    : NULL;

	json_decref(j);
	return s;
}

/* ENROLLED events naming @serial (caller holds the mutex). */
static int count_uses(ks_reg_t *reg, const char *serial, uint64_t *uses)
{
	ks_db_stmt_t *st = NULL;
	int rc, r = KS_OK;

	*uses = 0;
	rc = ks_db_prepare(reg->dbh,
			   "SELECT COUNT(*) FROM audit WHERE type = ? AND "
			   "cert_serial = ?",
			   &st);
	if (rc != KS_DB_EOK)
		return ks_reg_db_err(reg, rc, "enroll: uses");
	ks_db_bind_text(st, 1, ks_reg_event_name(KS_REG_EV_ENROLLED));
	ks_db_bind_text(st, 2, serial);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW)
		*uses = (uint64_t)ks_db_col_int64(st, 0);
	else
		r = ks_reg_db_err(reg, rc, "enroll: uses");
	ks_db_finish(&st);
	return r;
}

#define CRED_SELECT                                                         \
	"SELECT c.id, c.serial_hex, c.status, s.profile, l.name, d.uid, "   \
	"d.serial, d.state, c.der, d.id, l.id, l.serial_prefix FROM "       \
	"certificates c JOIN sessions s ON s.id = c.session_id JOIN "       \
	"devices d ON d.id = c.device_id JOIN lots l ON l.id = s.lot_id "

typedef struct {
	ks_reg_credential_t c;
	int64_t device_id;
	int64_t lot_id;
	char prefix[KS_REG_NAME_MAX];
} cred_row_t;

/* Load a credential by serial; if @der is given it must match exactly. */
static int cred_load(ks_reg_t *reg, const char *serial, const uint8_t *der,
		     size_t der_len, cred_row_t *out)
{
	ks_db_stmt_t *st = NULL;
	size_t n;
	int rc, r = KS_OK;

	memset(out, 0, sizeof(*out));
	rc = ks_db_prepare(reg->dbh, CRED_SELECT "WHERE c.serial_hex = ?",
			   &st);
	if (rc != KS_DB_EOK)
		return ks_reg_db_err(reg, rc, "enroll: credential");
	ks_db_bind_text(st, 1, serial);
	rc = ks_db_step(st);
	if (rc == KS_DB_DONE) {
		r = KS_ERR_NOTFOUND;
		goto out;
	}
	if (rc != KS_DB_ROW) {
		r = ks_reg_db_err(reg, rc, "enroll: credential");
		goto out;
	}
	if (der != NULL &&
	    (ks_db_col_bytes(st, 8) != der_len ||
	     memcmp(ks_db_col_blob(st, 8), der, der_len) != 0)) {
		/* same serial, other bytes: not a certificate we issued */
		r = KS_ERR_NOTFOUND;
		goto out;
	}
	out->c.cert_id = ks_db_col_int64(st, 0);
	col_copy(st, 1, out->c.serial_hex, sizeof(out->c.serial_hex));
	col_copy(st, 2, out->c.status, sizeof(out->c.status));
	col_copy(st, 3, out->c.profile, sizeof(out->c.profile));
	col_copy(st, 4, out->c.lot, sizeof(out->c.lot));
	n = ks_db_col_bytes(st, 5);
	if (n > 0 && n <= KS_REG_UID_MAX) {
		memcpy(out->c.uid, ks_db_col_blob(st, 5), n);
		out->c.uid_len = n;
	}
	col_copy(st, 6, out->c.device_serial, sizeof(out->c.device_serial));
	out->c.device_state = (ks_reg_state_t)ks_reg_state_parse(
		ks_db_col_text(st, 7));
	out->device_id = ks_db_col_int64(st, 9);
	out->lot_id = ks_db_col_int64(st, 10);
	col_copy(st, 11, out->prefix, sizeof(out->prefix));
	ks_db_finish(&st);
	r = count_uses(reg, out->c.serial_hex, &out->c.uses);
out:
	ks_db_finish(&st);
	return r;
}

/* Hex serial of a DER certificate, read without trusting it further. */
static int der_serial_hex(const uint8_t *der, size_t len, char *out,
			  size_t cap)
{
	const unsigned char *p = der;
	X509 *x = NULL;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	size_t n;
	int r = KS_ERR_ARG;

	if (len == 0 || len > (size_t)INT32_MAX)
		return KS_ERR_ARG;
	x = d2i_X509(NULL, &p, (long)len);
	if (x == NULL || p != der + len)
		goto out;
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	hex = bn != NULL ? BN_bn2hex(bn) : NULL;
	if (hex == NULL)
		goto out;
	for (char *h = hex; *h != '\0'; h++)
		if (*h >= 'A' && *h <= 'F')
			*h = (char)(*h - 'A' + 'a');
	/* the registry keeps 32 hex digits (ks_issued_t.serial_hex) */
	n = strlen(hex);
	if (n > 32 || cap < 33)
		goto out;
	memset(out, '0', 32 - n);
	memcpy(out + (32 - n), hex, n + 1);
	r = KS_OK;
out:
	OPENSSL_free(hex);
	BN_free(bn);
	X509_free(x);
	return r;
}

int ks_reg_enroll_lookup(ks_reg_t *reg, const uint8_t *der, size_t der_len,
			 ks_reg_credential_t *out)
{
	char serial[KS_REG_SERIAL_MAX * 2];
	cred_row_t row;
	int r;

	if (reg == NULL || der == NULL || out == NULL)
		return KS_ERR_ARG;
	r = der_serial_hex(der, der_len, serial, sizeof(serial));
	if (r != KS_OK)
		return r;
	pthread_mutex_lock(&reg->mu);
	r = cred_load(reg, serial, der, der_len, &row);
	pthread_mutex_unlock(&reg->mu);
	if (r == KS_OK)
		*out = row.c;
	return r;
}

/* Serial, status and key hash of the device's ACTIVE certificate issued
 * under @profile; *found = 0 when there is none. */
static int live_identity(ks_reg_t *reg, int64_t device_id,
			 const char *profile, int *found, uint8_t hash[32])
{
	ks_db_stmt_t *st = NULL;
	int rc, r = KS_OK;

	*found = 0;
	rc = ks_db_prepare(reg->dbh,
			   "SELECT c.pubkey_sha256 FROM certificates c "
			   "JOIN sessions s ON s.id = c.session_id WHERE "
			   "c.device_id = ? AND c.status = 'ACTIVE' AND "
			   "s.profile = ?",
			   &st);
	if (rc != KS_DB_EOK)
		return ks_reg_db_err(reg, rc, "enroll: live identity");
	ks_db_bind_int64(st, 1, device_id);
	ks_db_bind_text(st, 2, profile);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW) {
		*found = 1;
		if (ks_db_col_bytes(st, 0) == 32)
			memcpy(hash, ks_db_col_blob(st, 0), 32);
	} else if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "enroll: live identity");
	}
	ks_db_finish(&st);
	return r;
}

/* Run one prepared statement to completion (finalizes it). */
static int exec_done(ks_reg_t *reg, ks_db_stmt_t *st, const char *what)
{
	int rc = ks_db_step(st);

	ks_db_finish(&st);
	if (rc != KS_DB_DONE && rc != KS_DB_ROW)
		return ks_reg_db_err(reg, rc, what);
	return KS_OK;
}

static int prep(ks_reg_t *reg, const char *sql, ks_db_stmt_t **st)
{
	int rc = ks_db_prepare(reg->dbh, sql, st);

	if (rc != KS_DB_EOK) {
		*st = NULL;
		return ks_reg_db_err(reg, rc, sql);
	}
	return KS_OK;
}

static int insert_step(ks_reg_t *reg, int64_t sid, const char *step,
		       int64_t now)
{
	ks_db_stmt_t *st = NULL;
	int r = prep(reg,
		     "INSERT INTO session_steps(session_id, step, at_ms, "
		     "duration_ms) VALUES(?, ?, ?, 0)",
		     &st);

	if (r != KS_OK)
		return r;
	ks_db_bind_int64(st, 1, sid);
	ks_db_bind_text(st, 2, step);
	ks_db_bind_int64(st, 3, now);
	return exec_done(reg, st, "enroll: step");
}

/* The checks of ks_reg_enroll_begin() (caller holds the transaction). */
static int begin_checks(ks_reg_t *reg, const ks_reg_enroll_req_t *req,
			const cred_row_t *cred, char *why, size_t whylen)
{
	char msg[200];
	uint8_t live[32];
	int found = 0, r;
	ks_db_stmt_t *st = NULL;
	int rc;

	if (strcmp(cred->c.status, "VOID") == 0) {
		why_set(why, whylen, "the credential is void (revoked)");
		return KS_ERR_POLICY;
	}
	if (cred->c.uid_len != req->uid_len ||
	    memcmp(cred->c.uid, req->uid, req->uid_len) != 0) {
		why_set(why, whylen,
			"the CSR names another device UID than the credential");
		return KS_ERR_POLICY;
	}
	if (cred->c.device_state == KS_REG_SCRAPPED) {
		why_set(why, whylen, "the device is scrapped (RMA)");
		return KS_ERR_POLICY;
	}
	if (cred->c.uses >= req->uses_allowed) {
		snprintf(msg, sizeof(msg),
			 "the credential was used for %llu enrollment(s), "
			 "its profile allows %u",
			 (unsigned long long)cred->c.uses, req->uses_allowed);
		why_set(why, whylen, msg);
		return KS_ERR_QUOTA;
	}
	r = prep(reg,
		 "SELECT COUNT(*) FROM sessions WHERE uid = ? AND state NOT "
		 "IN ('ACTIVE', 'FAILED', 'VOID', 'SCRAPPED')",
		 &st);
	if (r != KS_OK)
		return r;
	ks_db_bind_blob(st, 1, req->uid, req->uid_len);
	rc = ks_db_step(st);
	found = rc == KS_DB_ROW ? ks_db_col_int(st, 0) : -1;
	ks_db_finish(&st);
	if (found < 0)
		return ks_reg_db_err(reg, rc, "enroll: pending");
	if (found > 0) {
		why_set(why, whylen,
			"the device has an unfinished session (another "
			"enrollment or provisioning in progress)");
		return KS_ERR_BUSY;
	}
	r = live_identity(reg, cred->device_id, req->profile, &found, live);
	if (r != KS_OK)
		return r;
	if (found && !req->reenroll) {
		why_set(why, whylen,
			memcmp(live, req->pubkey_sha256, 32) == 0
				? "the device already holds an operational "
				  "certificate for this key"
				: "the device already holds a live operational "
				  "identity (re-enrollment is not allowed)");
		return KS_ERR_DUPLICATE;
	}
	return KS_OK;
}

int ks_reg_enroll_begin(ks_reg_t *reg, const ks_reg_enroll_req_t *req,
			const char *actor, ks_reg_session_t *session,
			char *why, size_t whylen)
{
	ks_db_stmt_t *st = NULL;
	cred_row_t cred;
	char serial[KS_REG_SERIAL_MAX];
	char *details = NULL;
	int64_t now = ks_reg_now_ms(), sid = 0;
	int r;

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (reg == NULL || req == NULL || req->credential_serial == NULL ||
	    req->uid == NULL || req->uid_len == 0 ||
	    req->uid_len > KS_REG_UID_MAX || req->pubkey_sha256 == NULL ||
	    req->profile == NULL || req->profile[0] == '\0' ||
	    strlen(req->profile) >= KS_REG_NAME_MAX)
		return KS_ERR_ARG;
	actor = actor_or(actor);
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	r = cred_load(reg, req->credential_serial, NULL, 0, &cred);
	if (r == KS_ERR_NOTFOUND)
		why_set(why, whylen, "the credential is not in the registry");
	if (r != KS_OK)
		goto out;
	r = begin_checks(reg, req, &cred, why, whylen);
	if (r != KS_OK)
		goto out;
	r = ks_reg_serial_take(reg, cred.prefix, serial, sizeof(serial));
	if (r != KS_OK)
		goto out;
	r = prep(reg,
		 "UPDATE devices SET serial = ?, state = 'KEYED', key_origin = "
		 "'device', slot = -1, updated_ms = ? WHERE id = ?",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_text(st, 1, serial);
	ks_db_bind_int64(st, 2, now);
	ks_db_bind_int64(st, 3, cred.device_id);
	r = exec_done(reg, st, "enroll: device");
	if (r != KS_OK)
		goto out;
	r = prep(reg,
		 "INSERT INTO sessions(uid, device_id, device_serial, lot_id, "
		 "profile, station_id, slot, key_origin, state, reprovision, "
		 "pubkey_sha256, started_ms, updated_ms) VALUES(?, ?, ?, ?, ?, "
		 "?, -1, 'device', 'KEYED', 0, ?, ?, ?)",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_blob(st, 1, req->uid, req->uid_len);
	ks_db_bind_int64(st, 2, cred.device_id);
	ks_db_bind_text(st, 3, serial);
	ks_db_bind_int64(st, 4, cred.lot_id);
	ks_db_bind_text(st, 5, req->profile);
	ks_db_bind_text(st, 6, ks_reg_station(reg));
	ks_db_bind_blob(st, 7, req->pubkey_sha256, 32);
	ks_db_bind_int64(st, 8, now);
	ks_db_bind_int64(st, 9, now);
	r = exec_done(reg, st, "enroll: session");
	if (r != KS_OK)
		goto out;
	sid = ks_db_last_rowid(reg->dbh);
	r = insert_step(reg, sid, "RESERVED", now);
	if (r == KS_OK)
		r = insert_step(reg, sid, "KEYED", now);
	if (r != KS_OK)
		goto out;
	details = json_dump_free(json_pack(
		"{s:b, s:s, s:s, s:s, s:s, s:i, s:s}", "enroll", 1, "lot",
		cred.c.lot, "profile", req->profile, "credential_serial",
		cred.c.serial_hex, "credential_profile", cred.c.profile,
		"credential_uses", (json_int_t)cred.c.uses, "peer",
		req->peer != NULL ? req->peer : ""));
	if (details == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	{
		ks_audit_ev_t ev = {.type = KS_REG_EV_SESSION_RESERVED,
				    .actor = actor, .uid = req->uid,
				    .uid_len = req->uid_len,
				    .device_serial = serial,
				    .session_id = sid, .details = details};

		r = ks_audit_append(reg, &ev, NULL);
		if (r != KS_OK)
			goto out;
		ev.type = KS_REG_EV_KEYED;
		ev.details = NULL;
		r = ks_audit_append(reg, &ev, NULL);
		if (r != KS_OK)
			goto out;
	}
	r = ks_reg_tx_commit(reg);
out:
	if (r != KS_OK)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	if (r == KS_OK && session != NULL)
		r = ks_reg_session_get(reg, sid, session);
	return r;
}

int ks_reg_enroll_finish(ks_reg_t *reg, int64_t session_id,
			 const char *credential_serial, const char *peer,
			 const char *actor)
{
	ks_db_stmt_t *st = NULL;
	char serial[KS_REG_SERIAL_MAX], state[16];
	char cserial[KS_REG_SERIAL_MAX * 2], old[KS_REG_SERIAL_MAX * 2];
	uint8_t uid[KS_REG_UID_MAX];
	size_t uid_len = 0;
	int64_t device_id = 0, cert_id = 0, now = ks_reg_now_ms();
	char *details = NULL;
	size_t n;
	int r, rc;

	if (reg == NULL || credential_serial == NULL)
		return KS_ERR_ARG;
	actor = actor_or(actor);
	old[0] = cserial[0] = '\0';
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	r = prep(reg,
		 "SELECT s.state, s.device_id, s.device_serial, s.uid, c.id, "
		 "c.serial_hex FROM sessions s JOIN certificates c ON "
		 "c.session_id = s.id WHERE s.id = ? AND c.status = 'ISSUED'",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_int64(st, 1, session_id);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW) {
		col_copy(st, 0, state, sizeof(state));
		device_id = ks_db_col_int64(st, 1);
		col_copy(st, 2, serial, sizeof(serial));
		n = ks_db_col_bytes(st, 3);
		if (n > 0 && n <= sizeof(uid)) {
			memcpy(uid, ks_db_col_blob(st, 3), n);
			uid_len = n;
		}
		cert_id = ks_db_col_int64(st, 4);
		col_copy(st, 5, cserial, sizeof(cserial));
	}
	ks_db_finish(&st);
	if (rc == KS_DB_DONE) {
		r = KS_ERR_STATE;
		goto out;
	}
	if (rc != KS_DB_ROW) {
		r = ks_reg_db_err(reg, rc, "enroll: finish");
		goto out;
	}
	if (strcmp(state, "ISSUED") != 0 || uid_len == 0) {
		r = KS_ERR_STATE;
		goto out;
	}
	/* the previous ACTIVE certificate (the claim, or an earlier
	 * operational identity when re-enrollment is allowed) */
	r = prep(reg,
		 "SELECT serial_hex FROM certificates WHERE device_id = ? AND "
		 "status = 'ACTIVE'",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_int64(st, 1, device_id);
	if (ks_db_step(st) == KS_DB_ROW)
		col_copy(st, 0, old, sizeof(old));
	ks_db_finish(&st);
	r = prep(reg,
		 "UPDATE certificates SET status = 'SUPERSEDED' WHERE "
		 "device_id = ? AND status = 'ACTIVE'",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_int64(st, 1, device_id);
	r = exec_done(reg, st, "enroll: supersede");
	if (r != KS_OK)
		goto out;
	r = prep(reg, "UPDATE certificates SET status = 'ACTIVE' WHERE id = ?",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_int64(st, 1, cert_id);
	r = exec_done(reg, st, "enroll: activate");
	if (r != KS_OK)
		goto out;
	r = prep(reg,
		 "UPDATE sessions SET state = 'ACTIVE', updated_ms = ?, "
		 "ended_ms = ? WHERE id = ?",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_int64(st, 1, now);
	ks_db_bind_int64(st, 2, now);
	ks_db_bind_int64(st, 3, session_id);
	r = exec_done(reg, st, "enroll: session state");
	if (r != KS_OK)
		goto out;
	r = prep(reg,
		 "UPDATE devices SET state = 'ACTIVE', cert_id = ?, "
		 "pubkey_sha256 = (SELECT pubkey_sha256 FROM certificates "
		 "WHERE id = ?), updated_ms = ? WHERE id = ? AND serial = ?",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_int64(st, 1, cert_id);
	ks_db_bind_int64(st, 2, cert_id);
	ks_db_bind_int64(st, 3, now);
	ks_db_bind_int64(st, 4, device_id);
	ks_db_bind_text(st, 5, serial);
	r = exec_done(reg, st, "enroll: device state");
	if (r != KS_OK)
		goto out;
	r = insert_step(reg, session_id, "ACTIVE", now);
	if (r != KS_OK)
		goto out;
	details = json_dump_free(json_pack(
		"{s:s, s:s, s:s?, s:s}", "cert_serial", cserial,
		"credential_serial", credential_serial, "superseded",
		old[0] != '\0' ? old : NULL, "peer",
		peer != NULL ? peer : ""));
	if (details == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	{
		/* cert_serial = the credential: its use count is the number
		 * of these events */
		ks_audit_ev_t ev = {.type = KS_REG_EV_ENROLLED, .actor = actor,
				    .uid = uid, .uid_len = uid_len,
				    .device_serial = serial,
				    .cert_serial = credential_serial,
				    .session_id = session_id,
				    .details = details};

		r = ks_audit_append(reg, &ev, NULL);
		if (r != KS_OK)
			goto out;
		/* the session's final state, like every session */
		ev.type = KS_REG_EV_ACTIVE;
		ev.cert_serial = cserial;
		r = ks_audit_append(reg, &ev, NULL);
		if (r != KS_OK)
			goto out;
	}
	r = ks_reg_tx_commit(reg);
out:
	if (r != KS_OK)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}

int ks_reg_enroll_refused(ks_reg_t *reg, const char *credential_serial,
			  const uint8_t *uid, size_t uid_len, const char *peer,
			  const char *reason, const char *actor)
{
	char *details;
	int r;

	if (reg == NULL || reason == NULL || uid_len > KS_REG_UID_MAX)
		return KS_ERR_ARG;
	details = json_dump_free(json_pack(
		"{s:s, s:s, s:s?}", "reason", reason, "peer",
		peer != NULL ? peer : "", "credential_serial",
		credential_serial));
	if (details == NULL)
		return KS_ERR_NOMEM;
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r == KS_OK) {
		ks_audit_ev_t ev = {.type = KS_REG_EV_ENROLL_REFUSED,
				    .actor = actor_or(actor),
				    .uid = uid_len > 0 ? uid : NULL,
				    .uid_len = uid != NULL ? uid_len : 0,
				    .cert_serial = credential_serial,
				    .details = details};

		r = ks_audit_append(reg, &ev, NULL);
		if (r == KS_OK)
			r = ks_reg_tx_commit(reg);
		else
			ks_reg_tx_rollback(reg);
	}
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}
