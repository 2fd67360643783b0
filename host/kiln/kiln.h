/*
 * kiln: the station CLI. One file per command (host/kiln/<cmd>.c), each
 * exporting kc_cmd_<cmd>(); kiln.c holds the {name, fn, help} table.
 */
#ifndef KILN_HOST_KILN_KILN_H
#define KILN_HOST_KILN_KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* Exit codes (documented in kiln(1)). */
#define KC_EXIT_OK 0          /* success */
#define KC_EXIT_FAIL 1        /* the operation failed / verification failed */
#define KC_EXIT_USAGE 2       /* bad command line */
#define KC_EXIT_UNREACHABLE 3 /* kilnd not reachable on its socket */
#define KC_EXIT_LOCAL 4       /* a local file or database could not be used */
#define KC_EXIT_INTERRUPTED 130 /* Ctrl-C while waiting */

#define KC_DEFAULT_SOCKET "/run/kiln/kilnd.sock"

/* Global options. */
typedef struct {
	const char *socket; /* -s, $KILN_SOCKET, the config's, or default */
	const char *config; /* -c kilnd.conf (for offline verbs too) */
	bool json;          /* --json: machine-readable output */
	const char *prog;
} kc_global_t;

typedef int (*kc_fn)(kc_global_t *g, int argc, char **argv);

/* A connection to kilnd. */
typedef struct kc_conn kc_conn_t;

/**
 * Connect to kilnd. Returns KC_EXIT_OK or KC_EXIT_UNREACHABLE (message
 * printed).
 */
int kc_connect(kc_global_t *g, kc_conn_t **out)
	__attribute__((warn_unused_result));

/** Close a connection (NULL-safe) and clear the pointer. */
void kc_close(kc_conn_t **c);

/**
 * Send one request and read its response. Steals req. Returns KC_EXIT_OK
 * with *rsp set (its "ok" may be false), or KC_EXIT_UNREACHABLE /
 * KC_EXIT_INTERRUPTED (Ctrl-C while waiting).
 */
int kc_request(kc_conn_t *c, json_t *req, json_t **rsp)
	__attribute__((warn_unused_result));

/**
 * Connect, send one request, close. On an {"ok": false} answer prints
 * the error and returns KC_EXIT_FAIL (*rsp is still set).
 */
int kc_call(kc_global_t *g, json_t *req, json_t **rsp)
	__attribute__((warn_unused_result));

/** Print "kiln: <cmd>: error: ..." to stderr. */
void kc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** One subcommand of a command ("kiln image sign ..."). */
typedef struct {
	const char *name;
	int (*fn)(kc_global_t *g, int argc, char **argv);
} kc_sub_t;

/**
 * Run the subcommand argv[1] of command @cmd from @subs (it gets argv from
 * its own name on). No subcommand: @usage to stderr, KC_EXIT_USAGE;
 * --help/-h: @usage to stdout, KC_EXIT_OK; an unknown one: an error
 * naming the known ones, KC_EXIT_USAGE.
 */
int kc_subcommand(kc_global_t *g, int argc, char **argv, const char *cmd,
		  const kc_sub_t *subs, size_t n, void (*usage)(FILE *fp));

/** Print a JSON value on one line to stdout. */
void kc_print_json(const json_t *j);

/** The string member key of o, or "" (never NULL). */
const char *kc_str(const json_t *o, const char *key);

/** The integer member key of o, or 0. */
int64_t kc_int(const json_t *o, const char *key);

/** Format milliseconds since the epoch as local "YYYY-MM-DD HH:MM:SS". */
void kc_fmt_time(int64_t ms, char *out, size_t outlen);

/** Format a duration as "1h02m", "3m05s" or "12.3s". */
void kc_fmt_duration(int64_t ms, char *out, size_t outlen);

/** Strict unsigned parse; returns 0 on success. */
int kc_parse_u64(const char *s, uint64_t *out);

/** Install the SIGINT flag handler; kc_interrupted() reads it. */
void kc_catch_sigint(void);
bool kc_interrupted(void);

/** Render a status response as the human table into stdout. Returns the
 * number of lines printed. */
int kc_status_render(const json_t *st, bool tty);

/* ---- commands ---- */
int kc_cmd_status(kc_global_t *g, int argc, char **argv);
int kc_cmd_provision(kc_global_t *g, int argc, char **argv);
int kc_cmd_batch(kc_global_t *g, int argc, char **argv);
int kc_cmd_devices(kc_global_t *g, int argc, char **argv);
int kc_cmd_lots(kc_global_t *g, int argc, char **argv);
int kc_cmd_audit(kc_global_t *g, int argc, char **argv);
int kc_cmd_ca(kc_global_t *g, int argc, char **argv);
int kc_cmd_image(kc_global_t *g, int argc, char **argv);
int kc_cmd_rma(kc_global_t *g, int argc, char **argv);
int kc_cmd_registry(kc_global_t *g, int argc, char **argv);
int kc_cmd_session(kc_global_t *g, int argc, char **argv);

/**
 * Follow the daemon's status every 0.5 s: a live table (table) or
 * progress lines, in place on a terminal. Ends at Ctrl-C, or when the
 * batch is not running and either batch_started (the caller just started
 * it) or it was seen running. Returns 0 when the batch reached its count
 * (or has none), 1 when it ended short, 130 on Ctrl-C.
 */
int kc_watch(kc_global_t *g, bool table, bool batch_started);

#endif
