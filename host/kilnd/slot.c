/*
 * kilnd: slot workers and batches.
 *
 * Each enabled slot has a worker thread. While a batch runs, the worker
 * probes its port (open + HELLO). A board that answers with a UID the
 * slot has not just handled is provisioned with ks_session_run(); after
 * that the worker keeps probing until the board goes away (the path
 * vanishes, HELLO fails, or a different UID answers) before it takes the
 * next one. A port that misbehaves puts only its own slot in the ERROR
 * state, retried with exponential backoff.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "host/kilnd/kilnd.h"
#ifdef KILN_FAULT_INJECTION
#include "host/kilnd/fault.h"
#endif
#include "host/lib/agent.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"

#define KD_POLL_MS 250u       /* no board: look again this often */
#define KD_PRESENT_MS 400u    /* board handled: check it is still there */
#define KD_BACKOFF_MIN_MS 500u
#define KD_BACKOFF_MAX_MS 8000u
#define KD_PROBE_TIMEOUT_MS 400
#define KD_BUSY_TOLERATED 8u  /* probes before a busy port is an error */

static const char *const slot_state_names[] = {
	[KD_SLOT_IDLE] = "idle",
	[KD_SLOT_WAITING] = "waiting",
	[KD_SLOT_PROVISIONING] = "provisioning",
	[KD_SLOT_DONE] = "done",
	[KD_SLOT_FAILED] = "failed",
	[KD_SLOT_SKIPPED] = "skipped",
	[KD_SLOT_ERROR] = "error",
	[KD_SLOT_DISABLED] = "disabled",
};

const char *kd_slot_state_name(kd_slot_state_t s)
{
	if ((size_t)s >= sizeof(slot_state_names) / sizeof(slot_state_names[0]))
		return "?";
	return slot_state_names[s];
}

int64_t kd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const struct ks_profile *kd_profile(const kd_daemon_t *d, const char *name)
{
	for (size_t i = 0; i < d->cfg->nprofiles; i++)
		if (strcmp(d->profiles[i].name, name) == 0)
			return &d->profiles[i];
	return NULL;
}

static void set_state(kd_slot_t *s, kd_slot_state_t st)
{
	if (s->state != st) {
		s->state = st;
		s->since_ms = kd_now_ms();
	}
}

/* Wait on the daemon condition for at most ms (d->lock held). */
static void timed_wait(kd_daemon_t *d, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000u);
	ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	(void)pthread_cond_timedwait(&d->cond, &d->lock, &ts);
}

static void hex(const uint8_t *b, size_t n, char *out, size_t outlen)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n && 2 * i + 2 < outlen; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 0xF];
	}
	out[2 * i] = '\0';
}

typedef enum {
	PROBE_BOARD,   /* a board answered HELLO */
	PROBE_ABSENT,  /* nothing there (path / socket missing) */
	PROBE_TROUBLE, /* something there that does not work */
	PROBE_BUSY,    /* held open by another process */
} probe_t;

/* Open the port and say HELLO; on trouble, why into err. */
static probe_t probe(const char *port, char uid[65], char *err,
		     size_t errlen)
{
	ks_agent_opts_t opts = {.timeout_ms = KD_PROBE_TIMEOUT_MS,
				.retries = 1};
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	ks_agent_stats_t st;
	ks_link_spec_t spec;
	ks_err_t r;
	probe_t out = PROBE_TROUBLE;

	/* nothing plugged in is the normal case: look before opening, so
	 * an empty slot does not fill the log with open() failures */
	if (ks_link_parse_spec(port, &spec) == KS_OK &&
	    spec.kind != KS_LINK_USB && access(spec.path, F_OK) != 0 &&
	    (errno == ENOENT || errno == ENOTDIR)) {
		out = PROBE_ABSENT;
		goto out;
	}
	r = ks_agent_open(port, &opts, &a);
	if (r == KS_ERR_NOTFOUND) {
		out = PROBE_ABSENT;
		goto out;
	}
	if (r == KS_ERR_BUSY) {
		snprintf(err, errlen, "%.120s is held open by another process (%.80s)",
			 port, ks_link_last_error());
		out = PROBE_BUSY;
		goto out;
	}
	if (r != KS_OK) {
		snprintf(err, errlen, "cannot open %.120s: %.80s", port,
			 ks_link_last_error());
		goto out;
	}
	r = ks_agent_hello(a, &h);
	if (r == KS_OK) {
		hex(h.uid, h.uid_len, uid, 65);
		out = PROBE_BOARD;
		goto out;
	}
	ks_agent_get_stats(a, &st);
	if (r == KS_ERR_CLOSED) {
		out = PROBE_ABSENT; /* unplugged while we looked */
	} else if (r == KS_ERR_TIMEOUT && st.rx_bytes > 0) {
		snprintf(err, errlen,
			 "%.120s answers garbage: %" PRIu64
			 " bytes, no valid frame (wrong baud rate, or not a kiln agent?)",
			 port, st.rx_bytes);
	} else if (r == KS_ERR_TIMEOUT) {
		snprintf(err, errlen,
			 "%.120s: no answer to HELLO (no agent running, or wrong baud rate?)",
			 port);
	} else {
		snprintf(err, errlen, "%.120s: HELLO failed: %s (%.60s)", port,
			 ks_strerror((int)r), ks_agent_last_error(a));
	}
out:
	ks_agent_free(&a);
	return out;
}

static void on_progress(void *arg, ks_step_t step, const char *note)
{
	kd_slot_t *s = arg;

	pthread_mutex_lock(&s->d->lock);
	s->step = step;
	/* the engine says so while it retries a step the registry could not
	 * record (ks_session_run, KS_ERR_UNAVAILABLE) */
	s->reg_wait = note != NULL && strcmp(note, "waiting for registry") == 0;
	pthread_mutex_unlock(&s->d->lock);
#ifdef KILN_FAULT_INJECTION
	if (note == NULL || strcmp(note, "waiting for registry") != 0)
		kd_fault_step(step); /* the step is durable; the next is not begun */
#endif
}

/* Record a session's outcome in the slot (d->lock held). */
static void slot_record(kd_slot_t *s, const ks_session_result_t *res,
			ks_err_t r)
{
	snprintf(s->uid, sizeof(s->uid), "%s", res->uid_hex);
	snprintf(s->serial, sizeof(s->serial), "%s", res->serial);
	snprintf(s->cert_serial, sizeof(s->cert_serial), "%s",
		 res->cert_serial);
	s->last_ms = res->total_ms;
	s->step = res->final;
	s->reg_wait = false;
	if (r == KS_OK) {
		s->ok++;
		s->error[0] = '\0';
		set_state(s, KD_SLOT_DONE);
	} else if (res->final == KS_STEP_REFUSED) {
		s->refused++;
		snprintf(s->error, sizeof(s->error), "%s",
			 res->reason[0] ? res->reason : ks_strerror((int)r));
		set_state(s, KD_SLOT_SKIPPED);
	} else {
		s->failed++;
		snprintf(s->error, sizeof(s->error), "%s",
			 res->reason[0] ? res->reason : ks_strerror((int)r));
		set_state(s, KD_SLOT_FAILED);
	}
}

static void log_result(const kd_slot_t *s, const ks_session_result_t *res,
		       ks_err_t r)
{
	if (r == KS_OK)
		ks_log_info("slot %s: %s serial %s cert %s ACTIVE in %u ms%s",
			    s->cfg->name, res->uid_hex, res->serial,
			    res->cert_serial, res->total_ms,
			    res->resumed ? " (resumed)" : "");
	else if (res->final == KS_STEP_REFUSED)
		ks_log_warn("slot %s: board %s left alone: %s", s->cfg->name,
			    res->uid_hex, res->reason);
	else
		ks_log_error("slot %s: board %s FAILED at %s: %s (%s)",
			     s->cfg->name, res->uid_hex[0] ? res->uid_hex : "?",
			     ks_step_name(res->final), res->reason,
			     ks_strerror((int)r));
}

/* Batch finished by count (d->lock held); the audit event is written by
 * the caller after unlocking. */
static bool batch_check_done(kd_daemon_t *d)
{
	kd_batch_t *b = &d->batch;

	if (!b->running || b->count == 0 || b->done < b->count)
		return false;
	b->running = false;
	b->ended_ms = kd_now_ms();
	snprintf(b->end_reason, sizeof(b->end_reason), "count reached");
	pthread_cond_broadcast(&d->cond);
	return true;
}

static void audit_batch_stopped(kd_daemon_t *d, const char *actor,
				const kd_batch_t *b)
{
	json_t *j;
	char *details = NULL;
	int r = KS_ERR_NOMEM;

	j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "lot", b->lot,
		      "profile", b->profile, "done", (json_int_t)b->done,
		      "failed", (json_int_t)b->failed, "refused",
		      (json_int_t)b->refused, "reason", b->end_reason);
	if (j != NULL)
		details = json_dumps(j, JSON_COMPACT);
	if (details != NULL)
		r = ks_reg_audit_event(d->reg, actor, KS_REG_EV_BATCH_STOPPED,
				       details);
	if (r != KS_OK)
		ks_log_error("cannot record BATCH_STOPPED: %s", ks_strerror((int)r));
	free(details);
	json_decref(j);
	ks_log_info("batch %s stopped (%s): %" PRIu64 " done, %" PRIu64
		    " failed, %" PRIu64 " refused",
		    b->lot, b->end_reason, b->done, b->failed, b->refused);
}

static void *slot_main(void *arg)
{
	kd_slot_t *s = arg;
	kd_daemon_t *d = s->d;
	char handled[65] = ""; /* UID handled and (last seen) still present */
	char uid[65], err[320], lot[KD_NAME_MAX], profile[KD_NAME_MAX];
	unsigned backoff = 0, busy = 0;
	uint64_t seq;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		ks_session_params_t p;
		ks_session_result_t res;
		ks_err_t r;
		probe_t pr;
		bool finished, parked;

		if (!d->batch.running || s->manual) {
			/* keep the last outcome (and error) on display */
			if (!s->manual && s->state != KD_SLOT_DONE &&
			    s->state != KD_SLOT_FAILED &&
			    s->state != KD_SLOT_SKIPPED &&
			    s->state != KD_SLOT_ERROR)
				set_state(s, KD_SLOT_IDLE);
			handled[0] = '\0';
			backoff = 0;
			pthread_cond_wait(&d->cond, &d->lock);
			continue;
		}
		seq = d->batch.seq;
		pthread_mutex_unlock(&d->lock);
		err[0] = '\0';
		pr = probe(s->cfg->port, uid, err, sizeof(err));
		pthread_mutex_lock(&d->lock);
		if (d->stop || !d->batch.running || s->manual ||
		    d->batch.seq != seq)
			continue;

		if (pr == PROBE_ABSENT) {
			handled[0] = '\0';
			backoff = 0;
			busy = 0;
			/* the last outcome stays on display until the next board */
			if (s->state == KD_SLOT_ERROR) {
				ks_log_info("slot %s: port error cleared",
					    s->cfg->name);
				s->error[0] = '\0';
				set_state(s, KD_SLOT_WAITING);
			} else if (s->state != KD_SLOT_DONE &&
				   s->state != KD_SLOT_FAILED &&
				   s->state != KD_SLOT_SKIPPED) {
				set_state(s, KD_SLOT_WAITING);
			}
			timed_wait(d, KD_POLL_MS);
			continue;
		}
		if (pr == PROBE_BUSY && ++busy < KD_BUSY_TOLERATED) {
			/* someone else has the port open for a moment */
			timed_wait(d, KD_POLL_MS);
			continue;
		}
		if (pr == PROBE_TROUBLE || pr == PROBE_BUSY) {
			handled[0] = '\0';
			if (s->state != KD_SLOT_ERROR ||
			    strcmp(s->error, err) != 0)
				ks_log_error("slot %s: %s", s->cfg->name, err);
			snprintf(s->error, sizeof(s->error), "%s", err);
			s->port_errors++;
			set_state(s, KD_SLOT_ERROR);
			backoff = backoff == 0 ? KD_BACKOFF_MIN_MS : backoff * 2;
			if (backoff > KD_BACKOFF_MAX_MS)
				backoff = KD_BACKOFF_MAX_MS;
			timed_wait(d, backoff);
			continue;
		}
		backoff = 0;
		busy = 0;
		if (s->state == KD_SLOT_ERROR) {
			ks_log_info("slot %s: port error cleared", s->cfg->name);
			s->error[0] = '\0';
			set_state(s, KD_SLOT_WAITING);
		}
		if (strcmp(uid, handled) == 0) {
			/* the board we handled is still plugged in */
			timed_wait(d, KD_PRESENT_MS);
			continue;
		}
		if (d->batch.count != 0 &&
		    d->batch.done + d->batch.in_flight >= d->batch.count) {
			/* enough sessions running to finish the batch */
			timed_wait(d, KD_POLL_MS);
			continue;
		}
		d->batch.in_flight++;
		snprintf(lot, sizeof(lot), "%s", d->batch.lot);
		snprintf(profile, sizeof(profile), "%s", d->batch.profile);
		snprintf(s->uid, sizeof(s->uid), "%s", uid);
		s->serial[0] = s->cert_serial[0] = s->error[0] = '\0';
		s->step = KS_STEP_HELLO;
		set_state(s, KD_SLOT_PROVISIONING);
		pthread_mutex_unlock(&d->lock);

		ks_log_info("slot %s: board %s found, provisioning into %s",
			    s->cfg->name, uid, lot);
		memset(&p, 0, sizeof(p));
		memset(&res, 0, sizeof(res));
		p.port = s->cfg->port;
		p.slot = s->cfg->name;
		p.lot = lot;
		p.profile = profile;
		p.actor = "kilnd";
		p.stop = &d->stop;
		p.progress = on_progress;
		p.progress_arg = s;
		r = ks_session_run(d->engine, &p, &res);
		if (res.uid_hex[0] == '\0')
			snprintf(res.uid_hex, sizeof(res.uid_hex), "%s", uid);
		log_result(s, &res, r);

		pthread_mutex_lock(&d->lock);
		d->batch.in_flight--;
		if (d->batch.seq == seq) {
			if (r == KS_OK)
				d->batch.done++;
			else if (res.final == KS_STEP_REFUSED)
				d->batch.refused++;
			else
				d->batch.failed++;
		}
		slot_record(s, &res, r);
		/* A session parked because the link was lost after the
		 * certificate was issued is resumed as soon as the board
		 * answers again, also when it is back (power restored,
		 * re-plugged) before a presence probe saw it gone: such a
		 * board is not "handled". Found by scripts/soak. */
		parked = r != KS_OK && res.final >= KS_STEP_ISSUED &&
			 res.final < KS_STEP_ACTIVE;
		if (parked)
			handled[0] = '\0';
		else
			snprintf(handled, sizeof(handled), "%s", uid);
		finished = d->batch.seq == seq && batch_check_done(d);
		if (finished) {
			kd_batch_t b = d->batch;

			pthread_mutex_unlock(&d->lock);
			audit_batch_stopped(d, "kilnd", &b);
			pthread_mutex_lock(&d->lock);
		}
		if (parked) /* not at full speed while the cause lasts */
			timed_wait(d, KD_PRESENT_MS);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

ks_err_t kd_slots_start(kd_daemon_t *d)
{
	ks_err_t r = KS_OK;

	for (size_t i = 0; i < d->nslots; i++) {
		kd_slot_t *s = &d->slots[i];

		if (!s->cfg->enabled) {
			s->state = KD_SLOT_DISABLED;
			continue;
		}
		if (pthread_create(&s->thread, NULL, slot_main, s) != 0) {
			ks_log_error("cannot start the worker of slot %s",
				     s->cfg->name);
			r = KS_ERR_INTERNAL;
			break;
		}
		s->started = true;
	}
	return r;
}

void kd_slots_join(kd_daemon_t *d)
{
	pthread_mutex_lock(&d->lock);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	for (size_t i = 0; i < d->nslots; i++) {
		if (d->slots[i].started) {
			pthread_join(d->slots[i].thread, NULL);
			d->slots[i].started = false;
		}
	}
}

ks_err_t kd_batch_start(kd_daemon_t *d, const char *lot, const char *profile,
			uint64_t count, int64_t quota, const char *actor,
			char *err, size_t errlen)
{
	const ks_profile_t *pr = kd_profile(d, profile);
	ks_reg_lot_t l;
	char *details;
	json_t *j;
	uint64_t seq;
	int r;

	if (pr == NULL) {
		snprintf(err, errlen, "no profile '%s' in %s", profile,
			 d->cfg->path);
		return KS_ERR_NOTFOUND;
	}
	if (strlen(lot) == 0 || strlen(lot) >= KD_NAME_MAX) {
		snprintf(err, errlen, "bad lot name '%s'", lot);
		return KS_ERR_ARG;
	}
	pthread_mutex_lock(&d->lock);
	if (d->batch.running) {
		snprintf(err, errlen, "a batch is already running (lot %s); stop it first",
			 d->batch.lot);
		pthread_mutex_unlock(&d->lock);
		return KS_ERR_BUSY;
	}
	pthread_mutex_unlock(&d->lock);

	r = ks_reg_lot_get(d->reg, lot, &l);
	if (r == KS_ERR_NOTFOUND) {
		if (quota < 0 && pr->lot_quota > 0)
			quota = (int64_t)pr->lot_quota;
		r = ks_reg_lot_create(d->reg, lot, profile, lot, quota, actor);
		if (r != KS_OK) {
			snprintf(err, errlen, "cannot create lot %s: %s", lot,
				 ks_strerror((int)r));
			return (ks_err_t)r;
		}
		ks_log_info("lot %s created (profile %s, quota %" PRId64
			    ") by %s", lot, profile, quota, actor);
	} else if (r != KS_OK) {
		snprintf(err, errlen, "cannot read lot %s: %s", lot,
			 ks_strerror((int)r));
		return (ks_err_t)r;
	} else {
		if (strcmp(l.profile, profile) != 0) {
			snprintf(err, errlen, "lot %s uses profile %s, not %s",
				 lot, l.profile, profile);
			return KS_ERR_STATE;
		}
		if (l.closed_ms != 0) {
			snprintf(err, errlen, "lot %s is closed", lot);
			return KS_ERR_STATE;
		}
	}

	j = json_pack("{s:s, s:s, s:I, s:I}", "lot", lot, "profile", profile,
		      "count", (json_int_t)count, "quota", (json_int_t)quota);
	details = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	r = details != NULL ? ks_reg_audit_event(d->reg, actor,
						 KS_REG_EV_BATCH_STARTED,
						 details)
			    : KS_ERR_NOMEM;
	free(details);
	if (r != KS_OK) {
		snprintf(err, errlen, "cannot record BATCH_STARTED: %s",
			 ks_strerror((int)r));
		return (ks_err_t)r;
	}

	pthread_mutex_lock(&d->lock);
	if (d->batch.running) { /* lost a race with another client */
		pthread_mutex_unlock(&d->lock);
		snprintf(err, errlen, "a batch is already running");
		return KS_ERR_BUSY;
	}
	seq = d->batch.seq;
	memset(&d->batch, 0, sizeof(d->batch));
	d->batch.seq = seq + 1;
	d->batch.running = true;
	snprintf(d->batch.lot, sizeof(d->batch.lot), "%s", lot);
	snprintf(d->batch.profile, sizeof(d->batch.profile), "%s", profile);
	snprintf(d->batch.actor, sizeof(d->batch.actor), "%s", actor);
	d->batch.count = count;
	d->batch.started_ms = kd_now_ms();
	for (size_t i = 0; i < d->nslots; i++) {
		kd_slot_t *s = &d->slots[i];

		if (s->state != KD_SLOT_DISABLED && !s->manual) {
			s->uid[0] = s->serial[0] = s->cert_serial[0] = '\0';
			s->error[0] = '\0';
			s->step = KS_STEP_NONE;
			set_state(s, KD_SLOT_WAITING);
		}
	}
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	ks_log_info("batch started by %s: lot %s, profile %s, count %" PRIu64,
		    actor, lot, profile, count);
	return KS_OK;
}

ks_err_t kd_batch_stop(kd_daemon_t *d, const char *actor, const char *why,
		       char *err, size_t errlen)
{
	kd_batch_t b;

	pthread_mutex_lock(&d->lock);
	if (!d->batch.running) {
		pthread_mutex_unlock(&d->lock);
		snprintf(err, errlen, "no batch is running");
		return KS_ERR_STATE;
	}
	d->batch.running = false;
	d->batch.ended_ms = kd_now_ms();
	snprintf(d->batch.end_reason, sizeof(d->batch.end_reason), "%s", why);
	b = d->batch;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	audit_batch_stopped(d, actor, &b);
	return KS_OK;
}

ks_err_t kd_provision(kd_daemon_t *d, const char *slot, const char *port,
		      const char *lot, const char *profile, int reprovision,
		      const char *actor, ks_session_result_t *res, char *err,
		      size_t errlen)
{
	kd_slot_t *s = NULL;
	ks_session_params_t p;
	char blot[KD_NAME_MAX], bprofile[KD_NAME_MAX];
	ks_err_t r;

	memset(res, 0, sizeof(*res));
	pthread_mutex_lock(&d->lock);
	if (slot != NULL) {
		for (size_t i = 0; i < d->nslots; i++)
			if (strcmp(d->slots[i].cfg->name, slot) == 0)
				s = &d->slots[i];
		if (s == NULL) {
			snprintf(err, errlen, "no slot '%s'", slot);
			r = KS_ERR_NOTFOUND;
			goto unlock;
		}
		if (d->batch.running && s->state != KD_SLOT_DISABLED) {
			snprintf(err, errlen, "slot %s is serving batch %s; stop the batch first",
				 slot, d->batch.lot);
			r = KS_ERR_BUSY;
			goto unlock;
		}
		if (s->manual || s->state == KD_SLOT_PROVISIONING) {
			snprintf(err, errlen, "slot %s is busy", slot);
			r = KS_ERR_BUSY;
			goto unlock;
		}
		port = s->cfg->port;
	} else {
		for (size_t i = 0; i < d->nslots; i++) {
			kd_slot_t *o = &d->slots[i];

			if (strcmp(o->cfg->port, port) == 0 &&
			    (o->manual || (d->batch.running &&
					   o->state != KD_SLOT_DISABLED))) {
				snprintf(err, errlen, "port %s belongs to busy slot %s",
					 port, o->cfg->name);
				r = KS_ERR_BUSY;
				goto unlock;
			}
		}
	}
	snprintf(blot, sizeof(blot), "%s", lot ? lot : d->batch.lot);
	snprintf(bprofile, sizeof(bprofile), "%s",
		 profile ? profile : d->batch.profile);
	if (blot[0] == '\0' || bprofile[0] == '\0') {
		snprintf(err, errlen, "no lot/profile given and no batch to take them from");
		r = KS_ERR_ARG;
		goto unlock;
	}
	if (kd_profile(d, bprofile) == NULL) {
		snprintf(err, errlen, "no profile '%s'", bprofile);
		r = KS_ERR_NOTFOUND;
		goto unlock;
	}
	if (s != NULL) {
		s->manual = true;
		s->step = KS_STEP_HELLO;
		s->uid[0] = s->serial[0] = s->cert_serial[0] = '\0';
		s->error[0] = '\0';
		set_state(s, KD_SLOT_PROVISIONING);
	}
	pthread_mutex_unlock(&d->lock);

	ks_log_info("provision on %s requested by %s (lot %s, profile %s%s)",
		    slot ? slot : port, actor, blot, bprofile,
		    reprovision ? ", re-provision" : "");
	memset(&p, 0, sizeof(p));
	p.port = port;
	p.slot = slot ? slot : "";
	p.lot = blot;
	p.profile = bprofile;
	p.reprovision = reprovision;
	p.actor = actor;
	p.stop = &d->stop;
	if (s != NULL) {
		p.progress = on_progress;
		p.progress_arg = s;
	}
	r = ks_session_run(d->engine, &p, res);
	pthread_mutex_lock(&d->lock);
	if (s != NULL) {
		slot_record(s, res, r);
		s->manual = false;
		log_result(s, res, r);
		pthread_cond_broadcast(&d->cond);
	}
	if (r != KS_OK)
		snprintf(err, errlen, "%s",
			 res->reason[0] ? res->reason : ks_strerror((int)r));
unlock:
	pthread_mutex_unlock(&d->lock);
	return r;
}
