/*
 * kiln station library: the registry's support for parked sessions.
 *
 * A session whose link was lost after its certificate was issued is not
 * ended: it is parked with an INTERRUPTED audit event and resumed when the
 * board answers again (host/lib/session.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "host/lib/err.h"
#include "host/lib/registry_priv.h"

int ks_reg_interrupted(ks_reg_t *reg, int64_t session_id, const char *reason,
		       const char *actor)
{
	ks_db_stmt_t *st = NULL;
	ks_reg_session_t s;
	ks_audit_ev_t ev;
	json_t *details = NULL;
	char *text = NULL;
	int rc, began = 0;

	if (reg == NULL || session_id <= 0)
		return KS_ERR_ARG;
	rc = ks_reg_session_get(reg, session_id, &s);
	if (rc != KS_OK)
		return rc;
	if (ks_reg_state_is_final(s.state))
		return KS_ERR_STATE;
	if (strcmp(s.station, ks_reg_station(reg)) != 0)
		return KS_ERR_BUSY; /* another station's session */
	details = json_pack("{s:s, s:s}", "state", ks_reg_state_name(s.state),
			    "reason", reason != NULL ? reason : "");
	text = details != NULL ? json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS)
			       : NULL;
	if (text == NULL) {
		rc = KS_ERR_NOMEM;
		goto out_unlocked;
	}
	pthread_mutex_lock(&reg->mu);
	rc = ks_reg_tx_begin(reg);
	if (rc != KS_OK)
		goto out;
	began = 1;
	if (ks_db_prepare(reg->dbh, "UPDATE sessions SET failure_reason = ?1, "
			       "updated_ms = ?2 WHERE id = ?3 AND state NOT IN "
			       "('ACTIVE','FAILED','VOID','SCRAPPED')", &st) != KS_DB_EOK) {
		rc = ks_reg_db_err(reg, ks_db_last_err(reg->dbh),
				       "interrupted: prepare");
		goto out;
	}
	/* no copy: a copying bind can fail for memory, unnoticed */
	ks_db_bind_text(st, 1, reason != NULL ? reason : "");
	ks_db_bind_int64(st, 2, ks_reg_now_ms());
	ks_db_bind_int64(st, 3, session_id);
	rc = ks_db_step(st);
	if (rc != KS_DB_DONE) {
		rc = ks_reg_db_err(reg, rc, "interrupted: update");
		goto out;
	}
	if (ks_db_changes(reg->dbh) != 1) {
		rc = KS_ERR_STATE;
		goto out;
	}
	memset(&ev, 0, sizeof(ev));
	ev.type = KS_REG_EV_INTERRUPTED;
	ev.actor = actor != NULL ? actor : "kilnd";
	ev.uid = s.uid;
	ev.uid_len = s.uid_len;
	ev.device_serial = s.serial;
	ev.session_id = session_id;
	ev.details = text;
	rc = ks_audit_append(reg, &ev, NULL);
	if (rc != KS_OK)
		goto out;
	rc = ks_reg_tx_commit(reg);
	began = 0;
out:
	ks_db_finish(&st);
	if (began)
		ks_reg_tx_rollback(reg);
	pthread_mutex_unlock(&reg->mu);
out_unlocked:
	free(text);
	json_decref(details);
	return rc;
}

int ks_reg_session_cert(ks_reg_t *reg, int64_t session_id, uint8_t **der,
			size_t *der_len, char *serial_hex, size_t serial_cap)
{
	ks_db_stmt_t *st = NULL;
	const void *blob;
	int n, rc;

	if (reg == NULL || der == NULL || der_len == NULL)
		return KS_ERR_ARG;
	*der = NULL;
	*der_len = 0;
	pthread_mutex_lock(&reg->mu);
	if (ks_db_prepare(reg->dbh, "SELECT der, serial_hex FROM certificates "
			       "WHERE session_id = ?1", &st) != KS_DB_EOK) {
		rc = ks_reg_db_err(reg, ks_db_last_err(reg->dbh),
				       "session cert: prepare");
		goto out;
	}
	ks_db_bind_int64(st, 1, session_id);
	rc = ks_db_step(st);
	if (rc == KS_DB_DONE) {
		rc = KS_ERR_NOTFOUND;
		goto out;
	}
	if (rc != KS_DB_ROW) {
		rc = ks_reg_db_err(reg, rc, "session cert: step");
		goto out;
	}
	blob = ks_db_col_blob(st, 0);
	n = (int)ks_db_col_bytes(st, 0);
	if (blob == NULL || n <= 0) {
		rc = KS_ERR_DB;
		goto out;
	}
	*der = malloc((size_t)n);
	if (*der == NULL) {
		rc = KS_ERR_NOMEM;
		goto out;
	}
	memcpy(*der, blob, (size_t)n);
	*der_len = (size_t)n;
	if (serial_hex != NULL && serial_cap > 0) {
		const char *t = ks_db_col_text(st, 1);

		snprintf(serial_hex, serial_cap, "%s",
			 t != NULL ? (const char *)t : "");
	}
	rc = KS_OK;
out:
	ks_db_finish(&st);
	pthread_mutex_unlock(&reg->mu);
	return rc;
}

int ks_reg_pubkey_known(ks_reg_t *reg, const uint8_t pubkey_sha256[32])
{
	ks_db_stmt_t *st = NULL;
	int known = 0;

	if (reg == NULL || pubkey_sha256 == NULL)
		return 0;
	pthread_mutex_lock(&reg->mu);
	if (ks_db_prepare(reg->dbh, "SELECT 1 FROM certificates WHERE pubkey_sha256 "
			       "= ?1 AND status <> 'VOID' LIMIT 1", &st) == KS_DB_EOK) {
		ks_db_bind_blob(st, 1, pubkey_sha256, 32);
		known = ks_db_step(st) == KS_DB_ROW;
	}
	ks_db_finish(&st);
	pthread_mutex_unlock(&reg->mu);
	return known;
}
