/*
 * Daemon-level integration test harness: a throwaway station directory
 * (development CA, kilnd.conf), kilnd and kiln as real processes, and
 * kiln-agent-sim boards on PTYs linked under stable per-slot names.
 */
#ifndef KILN_TESTS_INTEGRATION_KT_HARNESS_H
#define KILN_TESTS_INTEGRATION_KT_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "host/lib/simproc.h"

#define KT_MAX_BOARDS 32

typedef struct {
	const char *kilnd; /* executables */
	const char *kiln;
	const char *sim;
	char dir[PATH_MAX]; /* station directory */
	char conf[PATH_MAX];
	char sock[PATH_MAX];
	char db[PATH_MAX];
	char log[PATH_MAX];
	pid_t pid; /* kilnd, 0 if not running */
	ks_simproc_t *boards[KT_MAX_BOARDS + 1]; /* by slot number */
} kt_station_t;

extern int kt_passed, kt_failed;

/** Record one check; prints FAIL lines (and PASS when verbose). */
bool kt_check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Print "N passed, M failed"; exit status for main(). */
int kt_summary(void);

/** Take executables from argv (kilnd kiln kiln-agent-sim) or env. */
int kt_init(kt_station_t *st, int argc, char **argv, const char *tag);

/** Remove the station directory and stop everything (KT_KEEP=1 keeps). */
void kt_cleanup(kt_station_t *st);

/**
 * Write kilnd.conf: [station] (+ station_extra lines), [ca], the given
 * profile sections (INI text) and nslots slots "slotN" whose port is
 * boards/slotN unless ports[i] overrides it.
 */
int kt_write_conf(kt_station_t *st, const char *station_extra,
		  const char *profiles, int nslots, const char *const *ports);

/** Start kilnd -f and wait for its socket. */
int kt_kilnd_start(kt_station_t *st);

/** SIGTERM kilnd, wait; returns its exit status (or -1). */
int kt_kilnd_stop(kt_station_t *st);

/** One control request (JSON text); returns the response or NULL. */
json_t *kt_ctl(kt_station_t *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/**
 * Run a program with args (NULL-terminated), capture stdout+stderr into
 * out; returns its exit status (or -1).
 */
int kt_run(char *out, size_t outlen, const char *exe, ...);

/** Run kiln -s SOCK args... (NULL-terminated). */
int kt_kiln(kt_station_t *st, char *out, size_t outlen, ...);

/**
 * Start a board on slot n: image boards/slotN.img (or `image`), optional
 * UID hex, link boards/slotN -> its PTY.
 */
int kt_board_start(kt_station_t *st, int n, const char *image,
		   const char *uid_hex, unsigned long cut_after);

/** Stop (SIGTERM) or reap the board on slot n; removes the link. */
void kt_board_stop(kt_station_t *st, int n);

/** Wait until the batch is not running; returns the status or NULL. */
json_t *kt_wait_batch(kt_station_t *st, int timeout_ms);

/** Wait until slot n's state is `state` (timeout ms); true if reached. */
bool kt_wait_slot(kt_station_t *st, int n, const char *state, int timeout_ms,
		  json_t **slot_out);

/** Path of a file inside the station directory. */
void kt_path(const kt_station_t *st, char *out, size_t outlen,
	     const char *rel);

/** Whether the whole file contains needle. */
bool kt_file_contains(const char *path, const void *needle, size_t n);

#endif
