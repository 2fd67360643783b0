/*
 * kilnd: the daemon's shared state (internal to host/kilnd/).
 *
 * One mutex (kd_daemon_t.lock) guards the batch and every slot's live
 * state; the condition variable wakes slot workers when a batch starts or
 * stops, or the daemon shuts down. Sessions themselves run unlocked.
 */
#ifndef KILN_HOST_KILND_KILND_H
#define KILN_HOST_KILND_KILND_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "host/kilnd/config.h"
#include "host/lib/session.h"

struct ks_reg;
struct ks_signer;
struct ks_profile;
struct ks_ca;
struct evp_pkey_st;

typedef enum {
	KD_SLOT_IDLE = 0,     /* no batch */
	KD_SLOT_WAITING,      /* batch running, no board on the port */
	KD_SLOT_PROVISIONING, /* a session is running */
	KD_SLOT_DONE,         /* last board ACTIVE; waiting for its removal */
	KD_SLOT_FAILED,       /* last board failed; waiting for its removal */
	KD_SLOT_SKIPPED,      /* board refused (e.g. already ACTIVE) */
	KD_SLOT_ERROR,        /* the port misbehaves; retrying with backoff */
	KD_SLOT_DISABLED,     /* enabled = no */
} kd_slot_state_t;

/** Lower-case name of a slot state ("provisioning"). */
const char *kd_slot_state_name(kd_slot_state_t s);

typedef struct kd_slot {
	struct kd_daemon *d;
	const kd_slot_cfg_t *cfg;
	int index; /* 1-based, recorded with sessions */
	pthread_t thread;
	bool started;
	/* everything below is guarded by d->lock */
	kd_slot_state_t state;
	ks_step_t step;
	bool manual; /* an operator's provision request owns the slot */
	char uid[65];
	char serial[65];
	char cert_serial[65];
	char error[320];
	uint64_t ok, failed, refused, port_errors;
	uint32_t last_ms; /* duration of the last session */
	int64_t since_ms; /* wall clock when the state was entered */
	bool reg_wait;    /* the session waits for the registry to return */
} kd_slot_t;

typedef struct {
	bool running;
	uint64_t seq; /* incremented at each start */
	char lot[KD_NAME_MAX];
	char profile[KD_NAME_MAX];
	uint64_t count; /* 0: until stopped */
	uint64_t done, failed, refused, in_flight;
	int64_t started_ms, ended_ms; /* wall clock */
	char actor[KD_NAME_MAX];
	char end_reason[128];
} kd_batch_t;

typedef struct kd_daemon {
	kd_config_t *cfg;
	struct ks_reg *reg;
	struct ks_ca *ca;
	struct ks_signer *signer;
	struct ks_profile *profiles; /* array of cfg->nprofiles */
	struct ks_profile **profile_ptrs;
	ks_engine_t *engine;
	struct evp_pkey_st *station_key;
	struct ks_est_server *enroll; /* [enroll] service, or NULL */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	volatile int stop; /* shutdown: sessions park, workers exit */
	kd_slot_t *slots;
	size_t nslots;
	kd_batch_t batch;
	int64_t started_ms;
} kd_daemon_t;

/** Wall clock in milliseconds since the epoch. */
int64_t kd_now_ms(void);

/** Find a configured profile by name (borrowed), NULL if none. */
const struct ks_profile *kd_profile(const kd_daemon_t *d, const char *name);

/* ---- slot workers and batches (slot.c) ---- */

/** Start one worker thread per configured slot. */
ks_err_t kd_slots_start(kd_daemon_t *d) __attribute__((warn_unused_result));

/** Ask workers to stop (d->stop is set by the caller) and join them. */
void kd_slots_join(kd_daemon_t *d);

/**
 * Start a batch: lot (created if missing, with quota < 0 for none),
 * profile, count (0 = until stopped). actor is recorded. On failure
 * writes a reason to err.
 */
ks_err_t kd_batch_start(kd_daemon_t *d, const char *lot, const char *profile,
			uint64_t count, int64_t quota, const char *actor,
			char *err, size_t errlen)
	__attribute__((warn_unused_result));

/** Stop the running batch (in-flight sessions finish). */
ks_err_t kd_batch_stop(kd_daemon_t *d, const char *actor, const char *why,
		       char *err, size_t errlen)
	__attribute__((warn_unused_result));

/**
 * Provision one board now (synchronously) on a configured slot (slot !=
 * NULL) or a port spec. lot/profile NULL: those of the current or last
 * batch. Fills res.
 */
ks_err_t kd_provision(kd_daemon_t *d, const char *slot, const char *port,
		      const char *lot, const char *profile, int reprovision,
		      const char *actor, ks_session_result_t *res, char *err,
		      size_t errlen) __attribute__((warn_unused_result));

/* ---- control socket (control.c) ---- */

/**
 * Create the control socket (mode 0660, group from the config) and serve
 * it on a thread until kd_control_stop().
 */
ks_err_t kd_control_start(kd_daemon_t *d) __attribute__((warn_unused_result));

/** Stop serving, wait for in-progress requests, remove the socket. */
void kd_control_stop(kd_daemon_t *d);

struct json_t;

/**
 * Parse and execute one request line (a JSON object, no newline) for
 * actor; returns the reply object ({"ok": ...}), never NULL unless out of
 * memory; the caller json_decref()s it. Separate from the socket so it
 * can be fuzzed (tests/fuzz/fuzz_control.c).
 */
struct json_t *kd_control_dispatch(kd_daemon_t *d, const char *line,
				   const char *actor);

/**
 * As kd_control_dispatch() for a peer of a given role (a kd_role_t from
 * host/kilnd/access.h): a command the role may not run is refused
 * (KS_ERR_POLICY, "permission denied: ...") and the refusal audited.
 * kd_control_dispatch() is this with the operator role.
 */
struct json_t *kd_control_dispatch_as(kd_daemon_t *d, const char *line,
				      const char *actor, int role);

/** Ask the main loop to shut down (control "shutdown", signals). */
void kd_request_shutdown(void);

#endif
