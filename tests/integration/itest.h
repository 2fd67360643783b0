/*
 * Integration-test support: drive a complete provisioning session against
 * a real kiln-agent-sim (started with host/lib/simproc) through the real
 * agent client, checking every invariant on the way. Used by the session
 * test and the power-cut sweep.
 */
#ifndef KILN_TESTS_ITEST_H
#define KILN_TESTS_ITEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/lib/agent.h"
#include "host/lib/simproc.h"
#include "tests/integration/ossl_util.h"

typedef enum {
	IT_DEVKEY = 0, /* GENKEY on the device, CSR */
	IT_HOSTKEY = 1 /* PUT_OBJECT HOSTKEY from OpenSSL */
} it_origin_t;

#define IT_MAX_TRIED 16

typedef struct {
	const char *sim_exe;
	char dir[64];
	char image[160];
	char sock[160];
	tu_ca_t ca;
	uint8_t *ca_der;
	size_t ca_der_len;
	unsigned serial_no;
	/* digests this test asked the agent to commit on the current image */
	uint8_t tried[IT_MAX_TRIED][32];
	int ntried;
	int checks;
	int violations;
	bool verbose;
} it_env_t;

/** Path of kiln-agent-sim: argv[1] or $KILN_AGENT_SIM; NULL if neither. */
const char *it_sim_path(int argc, char **argv);

/** Temp dir and a throwaway CA. Returns 0 on success. */
int it_env_init(it_env_t *e, const char *sim_exe);
void it_env_free(it_env_t *e);

/** Use a new, not yet existing image file (and forget tried digests). */
void it_fresh_image(it_env_t *e, const char *tag);

/** Record a failed check (prints it). */
void it_violation(it_env_t *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/** Record the outcome of a check; returns cond. */
bool it_check(it_env_t *e, bool cond, const char *what);

/**
 * Start the simulator on e->image (pty, or unix socket) with an optional
 * power cut, and open an agent client on it (timeout_ms per attempt).
 */
int it_start(it_env_t *e, bool use_unix, unsigned long cut_after,
	     int timeout_ms, ks_simproc_t **sp, ks_agent_t **a);

/**
 * HELLO, then the state invariants: COMMITTED/LOCKED implies integrity 0,
 * READBACK hashing to id_digest, a blob whose pubkey is HELLO's, and a
 * digest this test tried to commit. Violations are recorded.
 */
ks_err_t it_hello_checked(it_env_t *e, ks_agent_t *a, ks_agent_hello_t *h);

/**
 * From the state in h, complete the session up to LOCKED (level 2),
 * verifying CSR, readback, challenges and lock bits. Returns KS_OK, a
 * link error (the link died), KS_ERR_AGENT (refused: see the agent's last
 * status) or KS_ERR_VERIFY (a check failed; recorded as a violation).
 */
ks_err_t it_provision(it_env_t *e, ks_agent_t *a, it_origin_t origin,
		      const ks_agent_hello_t *h);

/**
 * A locked device after a restart: LOCKED with a good digest, challenge
 * verifies, GENKEY/PUT_OBJECT/COMMIT refused with KP_ST_LOCKED.
 */
ks_err_t it_verify_locked(it_env_t *e, ks_agent_t *a);

#endif
