/*
 * kiln station library: one provisioning session, end to end.
 *
 * ks_session_run() drives one board through
 *   HELLO -> RESERVED -> KEYED -> ISSUED -> WRITTEN -> VERIFIED -> LOCKED
 *   -> ACTIVE
 * journaling each step in the registry before its irreversible effect.
 * When the board's UID has an unfinished or interrupted session, the run
 * resumes it from what the board's HELLO reports instead of starting blind.
 * Thread-safe: one engine is shared by all slot workers; each worker runs
 * its own session.
 */
#ifndef KILN_HOST_LIB_SESSION_H
#define KILN_HOST_LIB_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "host/lib/err.h"

typedef struct ks_engine ks_engine_t;
struct ks_profile;

/* Where a session got to (mirrors the registry's session states). */
typedef enum {
	KS_STEP_NONE = 0,
	KS_STEP_HELLO,
	KS_STEP_RESERVED,
	KS_STEP_KEYED,
	KS_STEP_ISSUED,
	KS_STEP_WRITTEN,
	KS_STEP_VERIFIED,
	KS_STEP_LOCKED,
	KS_STEP_ACTIVE,
	KS_STEP_FAILED,
	KS_STEP_VOID,
	KS_STEP_SCRAPPED,
	KS_STEP_REFUSED, /* nothing reserved: e.g. UID already ACTIVE */
	KS_STEP__COUNT
} ks_step_t;

/** Upper-case name of a step ("ISSUED"). */
const char *ks_step_name(ks_step_t s);

/* Progress callback: called from the worker thread at each step. */
typedef void (*ks_progress_fn)(void *arg, ks_step_t step, const char *note);

typedef struct {
	const char *port;         /* link spec: serial:..., unix:..., usb:... */
	const char *slot;         /* slot name, for logs */
	int slot_index;           /* slot number, recorded with the session */
	const char *lot;          /* lot the device is provisioned into */
	const char *profile;      /* profile name (looked up in the engine) */
	int reprovision;          /* explicit operator request */
	const char *actor;        /* unix user who asked, or "kilnd" */
	const volatile int *stop; /* non-zero: park the session and return */
	unsigned timeout_ms;      /* per request; 0 = default */
	ks_progress_fn progress;
	void *progress_arg;
} ks_session_params_t;

typedef struct {
	ks_err_t err;           /* KS_OK only when ACTIVE is durable */
	ks_step_t final;        /* last state reached */
	int64_t session_id;     /* registry id, 0 if none */
	int resumed;            /* continued an earlier session */
	char uid_hex[65];
	char serial[65];        /* device serial */
	char cert_serial[65];   /* hex */
	char reason[256];       /* why it failed or was refused */
	uint32_t step_ms[KS_STEP__COUNT]; /* time spent reaching each step */
	uint32_t total_ms;
	uint64_t bytes_tx, bytes_rx;
	uint32_t round_trips;
} ks_session_result_t;

struct ks_reg;
struct ks_signer;

typedef struct {
	const char *station_id;
	struct ks_reg *reg;       /* registry, shared (thread-safe) */
	struct ks_signer *signer; /* the only holder of the CA key */
	struct ks_profile *const *profiles;
	size_t nprofiles;
} ks_engine_config_t;

/** Create the engine; it borrows everything in cfg (caller keeps them
 * alive until ks_engine_free). */
ks_err_t ks_engine_new(const ks_engine_config_t *cfg, ks_engine_t **out)
	__attribute__((warn_unused_result));

/** Free the engine; NULL-safe, clears the pointer. */
void ks_engine_free(ks_engine_t **e);

/**
 * Run (or resume) one provisioning session on the board at p->port.
 * Returns KS_OK only when the device's ACTIVE state is durable in the
 * registry; otherwise res->reason says why and res->final where it ended.
 */
ks_err_t ks_session_run(ks_engine_t *e, const ks_session_params_t *p,
			ks_session_result_t *res)
	__attribute__((warn_unused_result));

#endif
