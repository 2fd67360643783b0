/*
 * kiln station library: the RMA record (kiln rma UID --reason TEXT).
 *
 * A board returned or rejected after provisioning is retired in the
 * registry: the device becomes SCRAPPED, its ACTIVE certificate VOID, and
 * the audit chain gets a VOIDED and a SCRAPPED event naming the operator
 * and the reason, all in one transaction. Nothing is done to the part:
 * a locked part cannot be unlocked (its OTP is final) and the station
 * keeps refusing to provision it; an unlocked one can only be provisioned
 * again by an explicit re-provision into a fresh key slot
 * (docs/operator-guide.md, "RMA").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "host/lib/err.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "host/lib/registry_priv.h"

int ks_reg_device_rma(ks_reg_t *reg, const uint8_t *uid, size_t uid_len,
		      const char *reason, const char *actor,
		      char *cert_serial, size_t cert_cap)
{
	ks_db_stmt_t *st = NULL;
	int64_t dev_id = 0, cert_id = 0, now = ks_reg_now_ms();
	char serial[KS_REG_SERIAL_MAX], cserial[KS_REG_SERIAL_MAX * 2];
	char prev[32];
	char *details = NULL;
	json_t *j;
	int r, rc;

	if (reg == NULL || uid == NULL || uid_len == 0 ||
	    uid_len > KS_REG_UID_MAX || reason == NULL || reason[0] == '\0')
		return KS_ERR_ARG;
	if (actor == NULL)
		actor = "kilnd";
	cserial[0] = serial[0] = prev[0] = '\0';
	if (cert_serial != NULL && cert_cap > 0)
		cert_serial[0] = '\0';
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	rc = ks_db_prepare(reg->dbh, "SELECT d.id, d.serial, d.state, IFNULL(d.cert_id, 0), "
		"IFNULL(c.serial_hex, '') FROM devices d LEFT JOIN certificates "
		"c ON c.id = d.cert_id AND c.status = 'ACTIVE' WHERE d.uid = ?1", &st);
	if (rc != KS_DB_EOK) {
		r = ks_reg_db_err(reg, rc, "rma: device");
		goto out;
	}
	ks_db_bind_blob(st, 1, uid, uid_len);
	rc = ks_db_step(st);
	if (rc == KS_DB_DONE) {
		r = KS_ERR_NOTFOUND;
		goto out;
	}
	if (rc != KS_DB_ROW) {
		r = ks_reg_db_err(reg, rc, "rma: device");
		goto out;
	}
	dev_id = ks_db_col_int64(st, 0);
	snprintf(serial, sizeof(serial), "%s",
		 ks_db_col_text(st, 1));
	snprintf(prev, sizeof(prev), "%s",
		 ks_db_col_text(st, 2));
	cert_id = ks_db_col_int64(st, 3);
	snprintf(cserial, sizeof(cserial), "%s",
		 ks_db_col_text(st, 4));
	ks_db_finish(&st);
	st = NULL;
	/* an unfinished session must end first (it may still deliver) */
	if (ks_reg_state_is_final((ks_reg_state_t)ks_reg_state_parse(prev)) ==
	    0) {
		r = KS_ERR_BUSY;
		goto out;
	}
	if (strcmp(prev, "SCRAPPED") == 0) {
		r = KS_ERR_STATE;
		goto out;
	}
	j = json_pack("{s:b, s:s, s:s}", "rma", 1, "reason", reason,
		      "previous_state", prev);
	details = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS)
			    : NULL;
	json_decref(j);
	if (details == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	if (cert_id != 0 && cserial[0] != '\0') {
		ks_audit_ev_t ev = {.type = KS_REG_EV_VOIDED, .actor = actor,
				    .uid = uid, .uid_len = uid_len,
				    .device_serial = serial,
				    .cert_serial = cserial,
				    .details = details};

		rc = ks_db_prepare(reg->dbh, "UPDATE certificates SET status = "
					"'VOID' WHERE id = ?1", &st);
		if (rc == KS_DB_EOK) {
			ks_db_bind_int64(st, 1, cert_id);
			rc = ks_db_step(st);
		}
		ks_db_finish(&st);
		st = NULL;
		if (rc != KS_DB_DONE) {
			r = ks_reg_db_err(reg, rc, "rma: void certificate");
			goto out;
		}
		r = ks_audit_append(reg, &ev, NULL);
		if (r != KS_OK)
			goto out;
	}
	rc = ks_db_prepare(reg->dbh, "UPDATE devices SET state = 'SCRAPPED', "
				"cert_id = NULL, updated_ms = ?2 WHERE id = ?1", &st);
	if (rc == KS_DB_EOK) {
		ks_db_bind_int64(st, 1, dev_id);
		ks_db_bind_int64(st, 2, now);
		rc = ks_db_step(st);
	}
	ks_db_finish(&st);
	st = NULL;
	if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "rma: device state");
		goto out;
	}
	{
		ks_audit_ev_t ev = {.type = KS_REG_EV_SCRAPPED, .actor = actor,
				    .uid = uid, .uid_len = uid_len,
				    .device_serial = serial,
				    .cert_serial = cserial[0] ? cserial : NULL,
				    .details = details};

		r = ks_audit_append(reg, &ev, NULL);
		if (r != KS_OK)
			goto out;
	}
	r = ks_reg_tx_commit(reg);
	if (r == KS_OK && cert_serial != NULL && cert_cap > 0)
		snprintf(cert_serial, cert_cap, "%s", cserial);
out:
	ks_db_finish(&st);
	if (r != KS_OK)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}
