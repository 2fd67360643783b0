/*
 * kiln station library: run the POSIX agent simulator (kiln-agent-sim) as
 * a child process, for integration tests and the demo.
 *
 * The child gets PR_SET_PDEATHSIG(SIGKILL), so a crashed test never
 * leaves simulators behind. Linux ties that to the forking THREAD: start
 * simulators from a thread that outlives them (e.g. the main thread). Its stderr goes to an unlinked temporary file
 * that ks_simproc_stop()/_wait() parse for "WRITES n" and
 * "POWER CUT after write n".
 */
#ifndef KILN_HOST_LIB_SIMPROC_H
#define KILN_HOST_LIB_SIMPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "host/lib/err.h"

typedef struct ks_simproc ks_simproc_t;

/** Exit status of the simulator after a simulated power cut. */
#define KS_SIM_POWER_CUT_STATUS 99

typedef struct {
	const char *exe;       /* path of kiln-agent-sim (required) */
	const char *image;     /* --image FILE (required) */
	const char *unix_path; /* --unix PATH; NULL: --pty */
	const char *uid_hex;   /* --uid, or NULL */
	const char *board;     /* --board, or NULL */
	const char *rng;       /* --rng urandom|none, or NULL */
	unsigned long cut_after; /* --cut-after N; 0: none */
	bool quiet;            /* --quiet */
	int start_timeout_ms;  /* wait for the PTY/UNIX line; <= 0: 5000 */
} ks_simproc_opts_t;

typedef struct {
	bool exited;       /* exited normally (else killed by a signal) */
	int status;        /* exit status, or the signal number */
	bool power_cut;    /* exit status 99 */
	long writes;       /* from "WRITES n", -1 if not printed */
	long cut_at;       /* from "POWER CUT after write n", -1 if not */
} ks_simproc_result_t;

/**
 * Start the simulator and wait for its "PTY path" / "UNIX path" line.
 * Errors: KS_ERR_ARG, KS_ERR_IO (spawn failed), KS_ERR_TIMEOUT (no line),
 * KS_ERR_CLOSED (exited before announcing), KS_ERR_PROTO (unexpected line).
 */
ks_err_t ks_simproc_start(const ks_simproc_opts_t *o, ks_simproc_t **out)
	__attribute__((warn_unused_result));

/** Link spec for ks_link_open(): "serial:/dev/pts/N" or "unix:PATH". */
const char *ks_simproc_spec(const ks_simproc_t *s);

/** The child's pid. */
pid_t ks_simproc_pid(const ks_simproc_t *s);

/**
 * Wait up to timeout_ms (-1: forever) for the child to exit on its own
 * (e.g. a power cut). Returns KS_OK with *res filled, or KS_ERR_TIMEOUT
 * if it is still running (the simulator stays owned by s).
 */
ks_err_t ks_simproc_wait(ks_simproc_t *s, int timeout_ms,
			 ks_simproc_result_t *res)
	__attribute__((warn_unused_result));

/**
 * Stop the simulator: SIGTERM (SIGKILL after 5 s), reap it, parse its
 * stderr into *res (may be NULL), free everything and set *sp to NULL.
 * Also works after the child has already exited. NULL-safe.
 */
ks_err_t ks_simproc_stop(ks_simproc_t **sp, ks_simproc_result_t *res);

/** The child's stderr so far (NUL-terminated, allocated; free()). */
char *ks_simproc_stderr(const ks_simproc_t *s);

#endif
