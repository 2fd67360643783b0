/*
 * kilnd: the control socket.
 *
 * A unix stream socket (mode 0660, optional group). Each connection may
 * send any number of requests, one JSON object per line
 * ({"cmd": "status", ...}); each gets one JSON object per line back
 * ({"ok": true, ...} or {"ok": false, "error": "...", "code": "..."}).
 * The peer's credentials (SO_PEERCRED) name the actor recorded for every
 * operator action and decide its role (host/kilnd/access.h): peers
 * outside the control group are refused at connect, auditors may only
 * read; both refusals are logged and audited (OPERATOR events, "action":
 * "denied"). docs/operator-guide.md documents every command.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "host/kilnd/access.h"
#include "host/kilnd/kilnd.h"
#include "host/lib/export.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/db.h"
#include "host/lib/registry.h"
#include "host/lib/registry_health.h"

#define KD_REQ_MAX 65536u     /* longest request line */
#define KD_CONN_MAX 64        /* concurrent clients */
#define KD_LIST_DEFAULT 1000u /* devices.list without a limit */
#define KD_DENY_AUDIT_MAX 30  /* refusals audited per minute; more: logged */

typedef struct conn {
	kd_daemon_t *d;
	int fd;
	char actor[KD_NAME_MAX];
	kd_role_t role;
	struct conn *next;
} conn_t;

static struct {
	int fd;
	int wake[2];
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	conn_t *conns;
	int nconns;
	bool stopping;
} ctl = {.fd = -1, .wake = {-1, -1},
	 .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* ---- helpers ---- */

static const char *err_code(ks_err_t r)
{
	switch (r) {
#define KS_X(name, val, str) \
	case name:           \
		return #name;
		KS_ERRORS(KS_X)
#undef KS_X
	}
	return "KS_ERR_INTERNAL";
}

static json_t *fail(ks_err_t r, const char *msg)
{
	return json_pack("{s:b, s:s, s:s}", "ok", 0, "error",
			 msg != NULL && msg[0] ? msg : ks_strerror((int)r), "code",
			 err_code(r));
}

static json_t *ok(void)
{
	return json_pack("{s:b}", "ok", 1);
}

static void hexs(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 0xF];
	}
	out[2 * n] = '\0';
}

static int unhex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(s);

	if (n == 0 || n % 2 != 0 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int v;

		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else
			return -1;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

static const char *opt_str(json_t *req, const char *key)
{
	json_t *v = json_object_get(req, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/*
 * Record a refused connection or command (log always; audit at most
 * KD_DENY_AUDIT_MAX per minute, so a refused peer cannot flood the
 * registry).
 */
static void audit_denied(kd_daemon_t *d, const char *actor, const char *role,
			 const char *cmd, const char *why)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static int64_t window;
	static unsigned count, dropped;
	int64_t now = kd_now_ms() / 60000;
	unsigned skipped = 0;
	bool audit;
	json_t *j;
	char *txt;

	ks_log_warn("control: refused %s%s%s: %s", actor, cmd ? " " : "",
		    cmd ? cmd : "", why);
	pthread_mutex_lock(&mu);
	if (now != window) {
		window = now;
		count = 0;
		skipped = dropped;
		dropped = 0;
	}
	audit = count < KD_DENY_AUDIT_MAX;
	if (audit)
		count++;
	else
		dropped++;
	pthread_mutex_unlock(&mu);
	if (!audit || d->reg == NULL)
		return;
	j = json_pack("{s:s, s:s, s:s}", "action", "denied", "role", role,
		      "reason", why);
	if (j == NULL)
		return;
	if (cmd != NULL)
		json_object_set_new(j, "cmd", json_string(cmd));
	if (skipped > 0)
		json_object_set_new(j, "unaudited_before",
				    json_integer((json_int_t)skipped));
	txt = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (txt != NULL &&
	    ks_reg_audit_event(d->reg, actor, KS_REG_EV_OPERATOR, txt) != KS_OK)
		ks_log_error("cannot audit the refusal of %s", actor);
	free(txt);
}

/* Audit an operator action that has no event of its own. */
static void audit_action(kd_daemon_t *d, const char *actor, json_t *details)
{
	char *txt = details ? json_dumps(details, JSON_COMPACT) : NULL;

	json_decref(details);
	if (txt == NULL || d->reg == NULL ||
	    ks_reg_audit_event(d->reg, actor, KS_REG_EV_OPERATOR, txt) != KS_OK)
		ks_log_error("cannot audit an operator action of %s", actor);
	free(txt);
}

/* ---- commands ---- */

/* `waiting`: the registry is unreachable, so a session in flight waits
 * for it (or was parked by it) */
static json_t *slot_json(const kd_slot_t *s, int64_t now, bool waiting)
{
	const char *note = "";

	if (s->state == KD_SLOT_PROVISIONING && (waiting || s->reg_wait))
		note = "waiting for registry";
	return json_pack(
		"{s:s, s:i, s:s, s:b, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:I}",
		"name", s->cfg->name, "index", s->index, "port", s->cfg->port,
		"enabled", s->cfg->enabled, "state", kd_slot_state_name(s->state),
		"step", ks_step_name(s->step), "note", note, "uid", s->uid,
		"serial", s->serial, "cert_serial", s->cert_serial, "error",
		s->error, "ok", (json_int_t)s->ok, "failed",
		(json_int_t)s->failed, "refused", (json_int_t)s->refused,
		"port_errors", (json_int_t)s->port_errors, "last_ms",
		(int)s->last_ms, "state_age_ms",
		(json_int_t)(now - s->since_ms));
}

static json_t *batch_json(const kd_batch_t *b, int64_t now)
{
	int64_t end = b->running ? now : b->ended_ms;
	double hours = (double)(end - b->started_ms) / 3600000.0;
	uint64_t tried = b->done + b->failed;

	return json_pack(
		"{s:b, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:s, s:s}",
		"running", b->running, "lot", b->lot, "profile", b->profile,
		"count", (json_int_t)b->count, "done", (json_int_t)b->done,
		"failed", (json_int_t)b->failed, "refused",
		(json_int_t)b->refused, "in_flight", (json_int_t)b->in_flight,
		"yield", tried ? (double)b->done / (double)tried : 0.0,
		"per_hour",
		hours > 0 ? (double)b->done / hours : 0.0,
		"started_ms", (json_int_t)b->started_ms, "ended_ms",
		(json_int_t)b->ended_ms, "elapsed_ms",
		(json_int_t)(b->started_ms ? end - b->started_ms : 0), "actor",
		b->actor, "end_reason", b->end_reason);
}

/*
 * "registry": the backend, the masked URL, the connection's health and,
 * while the database answers, this station's counters. Never blocks on
 * the database: during an outage the slots hold the registry while they
 * wait for it, and the operator must still see what is going on.
 */
static json_t *registry_json(kd_daemon_t *d, int waiting)
{
	ks_db_health_t h;
	ks_reg_counts_t counts;
	char shown[512];
	json_t *j;

	if (ks_reg_health(d->reg, &h) != KS_OK)
		return json_null();
	ks_db_url_mask(d->cfg->registry, shown, sizeof(shown));
	j = json_pack("{s:s, s:s, s:s, s:b, s:I, s:s, s:i, s:i}", "backend",
		      h.backend, "url", shown, "state",
		      h.connected ? "ok" : "unreachable", "connected",
		      h.connected, "since_ms", (json_int_t)h.since_ms,
		      "last_error", h.last_error, "slots_waiting", waiting,
		      "timeout_s", (int)d->cfg->registry_timeout);
	if (j != NULL && h.connected &&
	    ks_reg_counts_nowait(d->reg, 300, &counts) == KS_OK) {
		json_t *bs = json_object();

		for (int s = 0; s < KS_REG_STATE_COUNT; s++)
			json_object_set_new(bs, ks_reg_state_name(s),
					    json_integer((json_int_t)counts.by_state[s]));
		json_object_set_new(j, "sessions",
				    json_integer((json_int_t)counts.sessions));
		json_object_set_new(j, "devices_active",
				    json_integer((json_int_t)counts.devices_active));
		json_object_set_new(j, "audit_events",
				    json_integer((json_int_t)counts.audit_events));
		json_object_set_new(j, "audit_head_seq",
				    json_integer((json_int_t)counts.audit_head_seq));
		json_object_set_new(j, "by_state", bs);
	}
	return j;
}

static json_t *cmd_status(kd_daemon_t *d, json_t *req, const char *actor)
{
	json_t *rsp, *slots;
	ks_db_health_t h;
	int64_t now = kd_now_ms();
	bool down;
	int waiting = 0;

	(void)req;
	(void)actor;
	down = ks_reg_health(d->reg, &h) == KS_OK && !h.connected;
	rsp = ok();
	slots = json_array();
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nslots; i++) {
		const kd_slot_t *s = &d->slots[i];

		if (s->state == KD_SLOT_PROVISIONING && (down || s->reg_wait))
			waiting++;
		json_array_append_new(slots, slot_json(s, now, down));
	}
	json_object_set_new(rsp, "batch", d->batch.started_ms
						  ? batch_json(&d->batch, now)
						  : json_null());
	pthread_mutex_unlock(&d->lock);
	json_object_set_new(rsp, "station", json_string(d->cfg->station_id));
	json_object_set_new(rsp, "version", json_string(KILN_VERSION));
	json_object_set_new(rsp, "uptime_ms",
			    json_integer(now - d->started_ms));
	json_object_set_new(rsp, "slots", slots);
	json_object_set_new(rsp, "registry", registry_json(d, waiting));
	return rsp;
}

static json_t *result_json(const ks_session_result_t *res)
{
	json_t *steps = json_object();

	for (int i = KS_STEP_HELLO; i < KS_STEP__COUNT; i++)
		if (res->step_ms[i] != 0)
			json_object_set_new(steps, ks_step_name((ks_step_t)i),
					    json_integer(res->step_ms[i]));
	return json_pack(
		"{s:s, s:s, s:I, s:b, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:i, s:o}",
		"result", ks_strerror((int)res->err), "final",
		ks_step_name(res->final), "session_id",
		(json_int_t)res->session_id, "resumed", res->resumed, "uid",
		res->uid_hex, "serial", res->serial, "cert_serial",
		res->cert_serial, "reason", res->reason, "total_ms",
		(int)res->total_ms, "bytes_tx", (json_int_t)res->bytes_tx,
		"bytes_rx", (json_int_t)res->bytes_rx, "round_trips",
		(int)res->round_trips, "step_ms", steps);
}

static json_t *cmd_provision(kd_daemon_t *d, json_t *req, const char *actor)
{
	const char *slot = opt_str(req, "slot"), *port = opt_str(req, "port");
	json_t *rsp, *rp = json_object_get(req, "reprovision");
	ks_session_result_t res;
	char err[512];
	ks_err_t r;

	if ((slot == NULL) == (port == NULL))
		return fail(KS_ERR_ARG, "give exactly one of \"slot\" and \"port\"");
	r = kd_provision(d, slot, port, opt_str(req, "lot"),
			 opt_str(req, "profile"), json_is_true(rp), actor, &res,
			 err, sizeof(err));
	/* the session's own events carry the actor too; this one also
	 * records requests that never reached a board */
	audit_action(d, actor,
		     json_pack("{s:s, s:s, s:b, s:s, s:I, s:s, s:s}", "action",
			       "provision", slot ? "slot" : "port",
			       slot ? slot : port, "reprovision",
			       json_is_true(rp), "result", ks_strerror((int)r),
			       "session_id", (json_int_t)res.session_id,
			       "uid", res.uid_hex, "serial", res.serial));
	if (r != KS_OK && res.final == KS_STEP_NONE && res.session_id == 0 &&
	    res.uid_hex[0] == '\0')
		return fail(r, err);
	rsp = r == KS_OK ? ok() : fail(r, err);
	json_object_set_new(rsp, "session", result_json(&res));
	return rsp;
}

static json_t *cmd_batch_start(kd_daemon_t *d, json_t *req, const char *actor)
{
	const char *lot = opt_str(req, "lot"), *profile = opt_str(req, "profile");
	json_t *jc = json_object_get(req, "count"), *jq = json_object_get(req, "quota");
	json_int_t count = 0, quota = -1;
	char err[512];
	ks_err_t r;

	if (lot == NULL || profile == NULL)
		return fail(KS_ERR_ARG, "batch.start needs \"lot\" and \"profile\"");
	if (jc != NULL && !json_is_null(jc)) {
		if (!json_is_integer(jc) || json_integer_value(jc) < 0)
			return fail(KS_ERR_ARG, "\"count\" must be an integer >= 0");
		count = json_integer_value(jc);
	}
	if (jq != NULL && !json_is_null(jq)) {
		if (!json_is_integer(jq) || json_integer_value(jq) < 1)
			return fail(KS_ERR_ARG, "\"quota\" must be an integer >= 1");
		quota = json_integer_value(jq);
	}
	r = kd_batch_start(d, lot, profile, (uint64_t)count, quota, actor, err,
			   sizeof(err));
	return r == KS_OK ? ok() : fail(r, err);
}

static json_t *cmd_batch_stop(kd_daemon_t *d, json_t *req, const char *actor)
{
	char err[256], why[128];
	ks_err_t r;

	(void)req;
	snprintf(why, sizeof(why), "stopped by %s", actor);
	r = kd_batch_stop(d, actor, why, err, sizeof(err));
	return r == KS_OK ? ok() : fail(r, err);
}

static json_t *device_json(const ks_reg_device_t *v)
{
	char uid[2 * KS_REG_UID_MAX + 1], pk[65] = "", dg[65] = "";
	char bk[65] = "";

	hexs(v->uid, v->uid_len, uid);
	if (v->has_pubkey)
		hexs(v->pubkey_sha256, 32, pk);
	if (v->has_identity_digest)
		hexs(v->identity_digest, 32, dg);
	if (v->has_boot_key)
		hexs(v->boot_key_hash, 32, bk);
	return json_pack(
		"{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:o, s:s, s:s, s:s, s:s, s:I, s:I}",
		"uid", uid, "serial", v->serial, "state",
		ks_reg_state_name((int)v->state), "key_origin",
		ks_reg_key_origin_name(v->key_origin), "lot", v->lot, "station",
		v->station, "slot", v->slot, "lock_bits",
		v->has_lock_bits ? json_integer(v->lock_bits) : json_null(),
		"cert_serial", v->cert_serial, "pubkey_sha256", pk,
		"identity_digest", dg, "boot_key_hash", bk,
		"created_ms", (json_int_t)v->created_ms,
		"updated_ms", (json_int_t)v->updated_ms);
}

static json_t *cmd_devices_list(kd_daemon_t *d, json_t *req, const char *actor)
{
	ks_reg_filter_t f = {.lot = opt_str(req, "lot"), .state = -1,
			     .limit = KD_LIST_DEFAULT};
	const char *state = opt_str(req, "state");
	json_t *jl = json_object_get(req, "limit"), *rsp, *arr;
	ks_reg_device_t *v = NULL;
	size_t n = 0;
	int r;

	(void)actor;
	if (state != NULL && (f.state = ks_reg_state_parse(state)) < 0)
		return fail(KS_ERR_ARG, "unknown state (RESERVED, KEYED, ISSUED, WRITTEN, VERIFIED, LOCKED, ACTIVE, FAILED, VOID, SCRAPPED)");
	if (json_is_integer(jl) && json_integer_value(jl) >= 0)
		f.limit = (size_t)json_integer_value(jl);
	r = ks_reg_device_list(d->reg, &f, &v, &n);
	if (r != KS_OK)
		return fail((ks_err_t)r, "cannot list devices");
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, device_json(&v[i]));
	free(v);
	rsp = ok();
	json_object_set_new(rsp, "devices", arr);
	return rsp;
}

static json_t *session_json(kd_daemon_t *d, const ks_reg_session_t *s)
{
	ks_reg_step_t *st = NULL;
	size_t n = 0;
	json_t *steps = json_array();

	if (ks_reg_session_steps(d->reg, s->id, &st, &n) == KS_OK) {
		for (size_t i = 0; i < n; i++)
			json_array_append_new(
				steps, json_pack("{s:s, s:I, s:I}", "step",
						 st[i].step, "at_ms",
						 (json_int_t)st[i].at_ms,
						 "duration_ms",
						 (json_int_t)st[i].duration_ms));
		free(st);
	}
	return json_pack(
		"{s:I, s:s, s:s, s:s, s:s, s:i, s:s, s:b, s:s, s:I, s:I, s:o}",
		"id", (json_int_t)s->id, "serial", s->serial, "state",
		ks_reg_state_name((int)s->state), "lot", s->lot, "station",
		s->station, "slot", s->slot, "key_origin",
		ks_reg_key_origin_name(s->key_origin), "reprovision",
		s->reprovision, "failure_reason", s->failure_reason,
		"started_ms", (json_int_t)s->started_ms, "ended_ms",
		(json_int_t)s->ended_ms, "steps", steps);
}

static json_t *cmd_devices_show(kd_daemon_t *d, json_t *req, const char *actor)
{
	const char *id = opt_str(req, "id");
	uint8_t uid[KS_REG_UID_MAX];
	size_t uid_len = 0;
	ks_reg_device_t v;
	ks_reg_session_t *ss = NULL;
	size_t n = 0;
	json_t *rsp, *arr;
	int r = KS_ERR_NOTFOUND;

	(void)actor;
	if (id == NULL)
		return fail(KS_ERR_ARG, "devices.show needs \"id\" (UID hex or serial)");
	if (unhex(id, uid, sizeof(uid), &uid_len) == 0)
		r = ks_reg_device_get(d->reg, uid, uid_len, NULL, &v);
	if (r == KS_ERR_NOTFOUND)
		r = ks_reg_device_get(d->reg, NULL, 0, id, &v);
	if (r == KS_ERR_NOTFOUND)
		return fail(KS_ERR_NOTFOUND, "no device with that UID or serial");
	if (r != KS_OK)
		return fail((ks_err_t)r, "cannot read the device");
	rsp = ok();
	json_object_set_new(rsp, "device", device_json(&v));
	arr = json_array();
	if (ks_reg_session_list(d->reg, NULL, -1, 0, &ss, &n) == KS_OK) {
		for (size_t i = 0; i < n; i++)
			if (ss[i].uid_len == v.uid_len &&
			    memcmp(ss[i].uid, v.uid, v.uid_len) == 0)
				json_array_append_new(arr,
						      session_json(d, &ss[i]));
		free(ss);
	}
	json_object_set_new(rsp, "sessions", arr);
	return rsp;
}

static json_t *cmd_lots(kd_daemon_t *d, json_t *req, const char *actor)
{
	ks_reg_lot_t *l = NULL;
	size_t n = 0;
	json_t *rsp, *arr;
	int r;

	(void)req;
	(void)actor;
	r = ks_reg_lot_list(d->reg, &l, &n);
	if (r != KS_OK)
		return fail((ks_err_t)r, "cannot list lots");
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
			arr,
			json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				  "name", l[i].name, "profile", l[i].profile,
				  "serial_prefix", l[i].serial_prefix,
				  "station", l[i].station, "quota",
				  (json_int_t)l[i].quota, "created_ms",
				  (json_int_t)l[i].created_ms, "closed_ms",
				  (json_int_t)l[i].closed_ms, "in_flight",
				  (json_int_t)l[i].reserved, "active",
				  (json_int_t)l[i].active, "failed",
				  (json_int_t)l[i].failed, "voided",
				  (json_int_t)l[i].voided, "scrapped",
				  (json_int_t)l[i].scrapped));
	free(l);
	rsp = ok();
	json_object_set_new(rsp, "lots", arr);
	return rsp;
}

static json_t *cmd_audit_export(kd_daemon_t *d, json_t *req, const char *actor)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp;
	json_t *rsp, *doc;
	json_error_t jerr;
	int r;

	(void)req;
	(void)actor;
	fp = open_memstream(&buf, &len);
	if (fp == NULL)
		return fail(KS_ERR_NOMEM, NULL);
	r = ks_export_audit(d->reg, "json", fp);
	if (fclose(fp) != 0 && r == KS_OK)
		r = KS_ERR_IO;
	if (r != KS_OK) {
		free(buf);
		return fail((ks_err_t)r, "cannot export the registry");
	}
	doc = json_loadb(buf, len, 0, &jerr);
	free(buf);
	if (doc == NULL)
		return fail(KS_ERR_INTERNAL, "export is not JSON");
	rsp = ok();
	json_object_set_new(rsp, "export", doc);
	return rsp;
}

static json_t *cmd_shutdown(kd_daemon_t *d, json_t *req, const char *actor)
{
	(void)req;
	ks_log_info("shutdown requested by %s", actor);
	audit_action(d, actor, json_pack("{s:s}", "action", "shutdown"));
	kd_request_shutdown();
	return ok();
}

/*
 * RMA: retire a provisioned board (docs/operator-guide.md, "RMA"). The
 * registry records it SCRAPPED and voids its certificate, audited with the
 * operator and the reason; the part itself is never touched (a locked one
 * stays locked and refused).
 */
static json_t *cmd_rma(kd_daemon_t *d, json_t *req, const char *actor)
{
	const char *id = opt_str(req, "uid"), *why = opt_str(req, "reason");
	uint8_t uid[KS_REG_UID_MAX];
	size_t uid_len = 0;
	char cert[KS_REG_SERIAL_MAX * 2];
	json_t *rsp;
	int r;

	if (id == NULL || unhex(id, uid, sizeof(uid), &uid_len) != 0)
		return fail(KS_ERR_ARG, "rma needs \"uid\" (hex)");
	if (why == NULL || why[0] == '\0' || strlen(why) > 200)
		return fail(KS_ERR_ARG, "rma needs a \"reason\" (1..200 characters)");
	r = ks_reg_device_rma(d->reg, uid, uid_len, why, actor, cert,
			      sizeof(cert));
	switch (r) {
	case KS_OK:
		break;
	case KS_ERR_NOTFOUND:
		return fail(KS_ERR_NOTFOUND, "no device with that UID");
	case KS_ERR_BUSY:
		return fail(KS_ERR_BUSY, "the device has an unfinished session; "
					 "let it end (or stop the batch) first");
	case KS_ERR_STATE:
		return fail(KS_ERR_STATE, "the device is already SCRAPPED");
	default:
		return fail((ks_err_t)r, "cannot record the RMA");
	}
	ks_log_info("rma: device %s retired by %s: %s%s%s", id, actor, why,
		    cert[0] ? "; certificate voided: " : "", cert);
	rsp = ok();
	json_object_set_new(rsp, "state", json_string("SCRAPPED"));
	json_object_set_new(rsp, "cert_voided", json_string(cert));
	return rsp;
}

/*
 * Release an unfinished session (docs/operations.md, "A station died
 * mid-session"): the registry ends it as FAILED, voids a certificate it
 * had issued and records who did it and why, whichever station opened it.
 * Refused while a slot of this station is provisioning the session's UID.
 */
static json_t *cmd_session_release(kd_daemon_t *d, json_t *req,
				   const char *actor)
{
	json_t *jid = json_object_get(req, "id");
	const char *why = opt_str(req, "reason");
	char hex[2 * KS_REG_UID_MAX + 1], msg[256];
	ks_reg_session_t sess;
	bool live = false;
	json_t *rsp;
	int64_t id;
	int r;

	if (!json_is_integer(jid) || json_integer_value(jid) < 1)
		return fail(KS_ERR_ARG, "session.release needs \"id\" (a session id)");
	if (why == NULL || why[0] == '\0' || strlen(why) > 200)
		return fail(KS_ERR_ARG, "session.release needs a \"reason\" (1..200 characters)");
	id = (int64_t)json_integer_value(jid);
	r = ks_reg_session_get(d->reg, id, &sess);
	if (r == KS_ERR_NOTFOUND)
		return fail(KS_ERR_NOTFOUND, "no session with that id");
	if (r != KS_OK)
		return fail((ks_err_t)r, "cannot read the session");
	hexs(sess.uid, sess.uid_len, hex);
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nslots; i++)
		if (d->slots[i].state == KD_SLOT_PROVISIONING &&
		    strcasecmp(d->slots[i].uid, hex) == 0)
			live = true;
	pthread_mutex_unlock(&d->lock);
	if (live) {
		snprintf(msg, sizeof(msg),
			 "session %lld (UID %s) is running on a slot of this "
			 "station; let it end or stop the batch first",
			 (long long)id, hex);
		return fail(KS_ERR_BUSY, msg);
	}
	r = ks_reg_session_release(d->reg, id, why, actor);
	if (r == KS_ERR_STATE) {
		snprintf(msg, sizeof(msg), "session %lld has already ended (%s)",
			 (long long)id, ks_reg_state_name((int)sess.state));
		return fail(KS_ERR_STATE, msg);
	}
	if (r != KS_OK)
		return fail((ks_err_t)r, "cannot release the session");
	ks_log_warn("session %lld (UID %s, station %s, %s at %s) released by %s: %s",
		    (long long)id, hex, sess.station, sess.serial,
		    ks_reg_state_name((int)sess.state), actor, why);
	rsp = ok();
	json_object_set_new(rsp, "id", json_integer((json_int_t)id));
	json_object_set_new(rsp, "uid", json_string(hex));
	json_object_set_new(rsp, "serial", json_string(sess.serial));
	json_object_set_new(rsp, "station", json_string(sess.station));
	json_object_set_new(rsp, "was", json_string(ks_reg_state_name((int)sess.state)));
	json_object_set_new(rsp, "state", json_string("FAILED"));
	return rsp;
}

typedef json_t *(*cmd_fn)(kd_daemon_t *d, json_t *req, const char *actor);

static const struct {
	const char *name;
	cmd_fn fn;
} commands[] = {
	{"status", cmd_status},
	{"provision", cmd_provision},
	{"batch.start", cmd_batch_start},
	{"batch.stop", cmd_batch_stop},
	{"devices.list", cmd_devices_list},
	{"devices.show", cmd_devices_show},
	{"lots", cmd_lots},
	{"audit.export", cmd_audit_export},
	{"rma", cmd_rma},
	{"session.release", cmd_session_release},
	{"shutdown", cmd_shutdown},
};

json_t *kd_control_dispatch(kd_daemon_t *d, const char *line, const char *actor)
{
	return kd_control_dispatch_as(d, line, actor, KD_ROLE_OPERATOR);
}

json_t *kd_control_dispatch_as(kd_daemon_t *d, const char *line,
			       const char *actor, int role)
{
	json_error_t jerr;
	json_t *req, *rsp = NULL;
	const char *cmd;

	req = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL || !json_is_object(req)) {
		char msg[256];

		snprintf(msg, sizeof(msg), "bad request: %s",
			 req == NULL ? jerr.text : "not a JSON object");
		json_decref(req);
		return fail(KS_ERR_ARG, msg);
	}
	cmd = opt_str(req, "cmd");
	if (!kd_role_may((kd_role_t)role, cmd)) {
		char why[256], c40[48];

		snprintf(c40, sizeof(c40), "%.40s", cmd ? cmd : "(none)");
		snprintf(why, sizeof(why),
			 "permission denied: '%s' needs the operator role; %s is %s (operator_group %s)",
			 c40, actor, kd_role_name((kd_role_t)role),
			 d->cfg->operator_group[0] ? d->cfg->operator_group
						   : "(none)");
		audit_denied(d, actor, kd_role_name((kd_role_t)role), c40, why);
		json_decref(req);
		return fail(KS_ERR_POLICY, why);
	}
	for (size_t i = 0; cmd != NULL && i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, cmd) == 0) {
			if (strcmp(cmd, "status") != 0)
				ks_log_debug("%s: %s", actor, cmd);
			rsp = commands[i].fn(d, req, actor);
			break;
		}
	if (rsp == NULL) {
		char msg[128];

		snprintf(msg, sizeof(msg), "unknown command '%.40s'",
			 cmd ? cmd : "(none)");
		rsp = fail(KS_ERR_UNSUPPORTED, msg);
	}
	json_decref(req);
	return rsp;
}

/* ---- connections ---- */

/* The peer's actor name and role; KD_ROLE_NONE with why when refused. */
static kd_role_t peer_role(kd_daemon_t *d, int fd, char *actor,
			   size_t actorlen, char *why, size_t whylen)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
		snprintf(actor, actorlen, "unknown");
		snprintf(why, whylen, "SO_PEERCRED: %s", strerror(errno));
		return KD_ROLE_NONE;
	}
	return kd_access_peer(d->cfg, cr.uid, cr.gid, actor, actorlen, why,
			      whylen);
}

static int write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

static void *conn_main(void *arg)
{
	conn_t *c = arg;
	char *buf = malloc(KD_REQ_MAX + 1);
	size_t used = 0;

	while (buf != NULL) {
		char *nl;
		ssize_t got;

		nl = memchr(buf, '\n', used);
		if (nl != NULL) {
			json_t *rsp;
			char *out;
			size_t linelen = (size_t)(nl - buf);
			int wr = -1;

			*nl = '\0';
			rsp = kd_control_dispatch_as(c->d, buf, c->actor,
						     (int)c->role);
			out = json_dumps(rsp, JSON_COMPACT);
			json_decref(rsp);
			if (out != NULL) {
				wr = write_all(c->fd, out, strlen(out));
				if (wr == 0)
					wr = write_all(c->fd, "\n", 1);
				free(out);
			}
			memmove(buf, nl + 1, used - linelen - 1);
			used -= linelen + 1;
			if (wr != 0)
				break;
			continue;
		}
		if (used == KD_REQ_MAX) {
			static const char msg[] =
				"{\"ok\":false,\"error\":\"request line too long\",\"code\":\"KS_ERR_ARG\"}\n";
			(void)write_all(c->fd, msg, sizeof(msg) - 1);
			break;
		}
		got = recv(c->fd, buf + used, KD_REQ_MAX - used, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		used += (size_t)got;
	}
	free(buf);

	pthread_mutex_lock(&ctl.lock);
	for (conn_t **pp = &ctl.conns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	ctl.nconns--;
	pthread_cond_broadcast(&ctl.cond);
	pthread_mutex_unlock(&ctl.lock);
	close(c->fd);
	free(c);
	return NULL;
}

static void *accept_main(void *arg)
{
	kd_daemon_t *d = arg;
	struct pollfd pfd[2] = {{.fd = ctl.fd, .events = POLLIN},
				{.fd = ctl.wake[0], .events = POLLIN}};

	for (;;) {
		conn_t *c;
		pthread_t t;
		pthread_attr_t attr;
		char actor[KD_NAME_MAX], why[256];
		kd_role_t role;
		int fd;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			ks_log_error("poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents != 0)
			break;
		fd = accept4(ctl.fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		role = peer_role(d, fd, actor, sizeof(actor), why, sizeof(why));
		if (role == KD_ROLE_NONE) {
			json_t *j = fail(KS_ERR_POLICY, why);
			char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;

			/* one line saying why, then the door closes */
			if (txt != NULL && write_all(fd, txt, strlen(txt)) == 0)
				(void)write_all(fd, "\n", 1);
			free(txt);
			json_decref(j);
			close(fd);
			audit_denied(d, actor, "none", NULL, why);
			continue;
		}
		pthread_mutex_lock(&ctl.lock);
		if (ctl.stopping || ctl.nconns >= KD_CONN_MAX) {
			pthread_mutex_unlock(&ctl.lock);
			ks_log_warn("control socket: too many clients");
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			pthread_mutex_unlock(&ctl.lock);
			close(fd);
			continue;
		}
		c->d = d;
		c->fd = fd;
		c->role = role;
		snprintf(c->actor, sizeof(c->actor), "%s", actor);
		c->next = ctl.conns;
		ctl.conns = c;
		ctl.nconns++;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, conn_main, c) != 0) {
			ctl.conns = c->next;
			ctl.nconns--;
			close(fd);
			free(c);
		}
		pthread_attr_destroy(&attr);
		pthread_mutex_unlock(&ctl.lock);
	}
	return NULL;
}

/* Refuse to replace a socket some other daemon still answers on. */
static ks_err_t clear_stale(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (lstat(path, &st) != 0)
		return KS_OK;
	if (!S_ISSOCK(st.st_mode)) {
		ks_log_error("%s exists and is not a socket", path);
		return KS_ERR_BUSY;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return KS_ERR_IO;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		ks_log_error("%s: another kilnd is running", path);
		return KS_ERR_BUSY;
	}
	close(fd);
	if (unlink(path) != 0) {
		ks_log_error("cannot remove stale %s: %s", path, strerror(errno));
		return KS_ERR_IO;
	}
	return KS_OK;
}

ks_err_t kd_control_start(kd_daemon_t *d)
{
	const char *path = d->cfg->control_socket;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[PATH_MAX], *slash;
	ks_err_t r = KS_ERR_IO;
	mode_t old;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) == 0) {
			/* ours: let the station user remove its socket later */
			if (d->cfg->user[0] != '\0' && geteuid() == 0 &&
			    chown(dir, d->cfg->user_uid, d->cfg->user_gid) != 0)
				ks_log_warn("chown %s: %s", dir, strerror(errno));
		} else if (errno != EEXIST) {
			ks_log_error("cannot create %s: %s", dir, strerror(errno));
			goto out;
		}
	}
	r = clear_stale(path);
	if (r != KS_OK)
		goto out;
	r = KS_ERR_IO;
	ctl.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl.fd < 0 || pipe2(ctl.wake, O_CLOEXEC) != 0) {
		ks_log_error("socket: %s", strerror(errno));
		goto out;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	old = umask(0117); /* the socket is born 0660 */
	if (bind(ctl.fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		umask(old);
		ks_log_error("cannot bind %s: %s", path, strerror(errno));
		goto out;
	}
	umask(old);
	if (chmod(path, 0660) != 0 ||
	    (d->cfg->socket_gid != (gid_t)-1 &&
	     chown(path, (uid_t)-1, d->cfg->socket_gid) != 0)) {
		ks_log_error("cannot set mode/group of %s: %s", path,
			     strerror(errno));
		goto out;
	}
	if (listen(ctl.fd, 16) != 0) {
		ks_log_error("listen %s: %s", path, strerror(errno));
		goto out;
	}
	ctl.stopping = false;
	if (pthread_create(&ctl.thread, NULL, accept_main, d) != 0)
		goto out;
	ctl.running = true;
	ks_log_info("control socket %s (mode 0660%s%s)", path,
		    d->cfg->socket_group[0] ? ", group " : "",
		    d->cfg->socket_group);
	r = KS_OK;
out:
	if (r != KS_OK)
		kd_control_stop(d);
	return r;
}

void kd_control_stop(kd_daemon_t *d)
{
	if (ctl.running) {
		if (write(ctl.wake[1], "x", 1) < 0)
			ks_log_warn("wake: %s", strerror(errno));
		pthread_join(ctl.thread, NULL);
		ctl.running = false;
	}
	if (ctl.fd >= 0) {
		close(ctl.fd);
		ctl.fd = -1;
		if (unlink(d->cfg->control_socket) != 0 && errno != ENOENT)
			ks_log_warn("cannot remove %s: %s",
				    d->cfg->control_socket, strerror(errno));
	}
	/* wake readers; a running provision parks on d->stop and returns */
	pthread_mutex_lock(&ctl.lock);
	ctl.stopping = true;
	for (conn_t *c = ctl.conns; c != NULL; c = c->next)
		shutdown(c->fd, SHUT_RD);
	while (ctl.nconns > 0)
		pthread_cond_wait(&ctl.cond, &ctl.lock);
	pthread_mutex_unlock(&ctl.lock);
	for (int i = 0; i < 2; i++)
		if (ctl.wake[i] >= 0) {
			close(ctl.wake[i]);
			ctl.wake[i] = -1;
		}
}
