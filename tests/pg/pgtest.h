/*
 * A throwaway PostgreSQL server for tests: initdb in a fresh temporary
 * directory, a server that listens on a unix socket in that directory and
 * on a free loopback port only, durable commits (fsync and
 * synchronous_commit on), trust authentication for the superuser
 * "postgres".
 *
 * initdb and the server refuse to run as root: as root they run as the
 * `postgres` system user (Debian's postgresql package creates it), else as
 * `nobody`, with the directory handed to that user.
 *
 * Every started server is watched by a small guardian process that stops
 * it (pg_ctl stop -m immediate) and removes its directory when the test
 * process goes away without pgt_stop() — on a failed check, a crash, a
 * SIGKILL or a meson timeout — so no test leaves a server behind.
 *
 * A test that cannot get a server calls pgt_skip(), which prints
 * "SKIP: <reason>" and exits 77 (meson's skip status).
 */
#ifndef KILN_TESTS_PG_PGTEST_H
#define KILN_TESTS_PG_PGTEST_H

#include <stddef.h>
#include <sys/types.h>

/** Exit status meson counts as a skipped test. */
#define PGT_SKIP_STATUS 77

typedef struct {
	char dir[256];     /* temporary directory (data/, server.log, socket) */
	char sockdir[256]; /* directory of the server's unix socket */
	int port;          /* loopback TCP port, also the socket's number */
	pid_t pid;         /* postmaster pid while running */
	char bindir[256];  /* directory holding initdb, pg_ctl */
	int running;       /* 1 while the server accepts connections */
	pid_t guard;       /* guardian process (internal) */
	int guard_fd;      /* write end of the guardian's pipe (internal) */
} pgt_server_t;

/**
 * Whether a PostgreSQL server can be started here: finds initdb and pg_ctl
 * (`pg_config --bindir`, else the newest /usr/lib/postgresql/N/bin) and, as
 * root, an unprivileged user to run them. Returns 1 if so, else 0 with the
 * reason in why (cap bytes).
 */
int pgt_available(char *why, size_t cap) __attribute__((warn_unused_result));

/**
 * initdb in a fresh directory under tmpdir (NULL: $TMPDIR or /tmp) and
 * start the server; waits until it accepts connections. Returns 0, or -1
 * with the reason on stderr (nothing left behind).
 */
int pgt_start(pgt_server_t *s, const char *tmpdir)
	__attribute__((warn_unused_result));

/** pg_ctl stop -m fast and remove the directory. Safe to call twice. */
void pgt_stop(pgt_server_t *s);

/**
 * Crash-restart: pg_ctl stop -m immediate (every client connection is cut,
 * no clean shutdown) and start again on the same directory, socket and
 * port; waits until it accepts connections again (after crash recovery).
 * Returns 0 or -1.
 */
int pgt_restart(pgt_server_t *s) __attribute__((warn_unused_result));

/**
 * Stop the server abruptly (-m immediate) without restarting it, for
 * outage tests; pgt_resume() starts it again. Returns 0 or -1.
 */
int pgt_halt(pgt_server_t *s) __attribute__((warn_unused_result));

/** Start a server stopped by pgt_halt(). Returns 0 or -1. */
int pgt_resume(pgt_server_t *s) __attribute__((warn_unused_result));

/**
 * libpq URL of database db on the server (over its unix socket), as
 * `postgresql://postgres@/DB?host=SOCKDIR&port=N`; written into buf.
 * Returns buf, or NULL if it does not fit.
 */
const char *pgt_url(const pgt_server_t *s, const char *db, char *buf,
		    size_t cap);

/**
 * CREATE DATABASE name (letters, digits and '_' only) through libpq.
 * Returns 0, or -1 with the server's message on stderr.
 */
int pgt_create_db(pgt_server_t *s, const char *name)
	__attribute__((warn_unused_result));

/** Print "SKIP: <why>" and exit with PGT_SKIP_STATUS. */
void pgt_skip(const char *why) __attribute__((noreturn));

#endif
