/*
 * The throwaway PostgreSQL harness itself:
 *  1. a server starts in a fresh directory, answers on its unix socket and
 *     on its loopback port, runs with fsync and synchronous_commit on and
 *     listens on 127.0.0.1 only; a database can be created.
 *  2. pgt_restart() cuts the connections that were open (the client sees
 *     an error) and the committed rows survive the crash restart.
 *  3. pgt_stop() removes the directory and the port no longer answers.
 *  4. a test process that dies (SIGKILL) with a server running leaves
 *     nothing behind: the guardian stops the server and removes its
 *     directory.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "tests/pg/pgtest.h"

static int passed, failed;

static int check(int ok, const char *what)
{
	if (ok)
		passed++;
	else
		failed++;
	printf("%s: %s\n", ok ? "PASS" : "FAIL", what);
	fflush(stdout);
	return ok;
}

/* One value of a one-row query, or "" on error. */
static void query1(PGconn *c, const char *sql, char *out, size_t cap)
{
	PGresult *r = PQexec(c, sql);

	out[0] = '\0';
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
}

static int exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;

	PQclear(r);
	return ok;
}

static int dir_exists(const char *d)
{
	struct stat sb;

	return stat(d, &sb) == 0;
}

static int tcp_answers(int port)
{
	char conn[128];
	PGconn *c;
	int ok;

	snprintf(conn, sizeof(conn),
		 "host=127.0.0.1 port=%d user=postgres dbname=postgres "
		 "connect_timeout=3",
		 port);
	c = PQconnectdb(conn);
	ok = PQstatus(c) == CONNECTION_OK;
	PQfinish(c);
	return ok;
}

static void msleep(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void test_guardian(void)
{
	int p[2], status = 0, port = 0, gone = 0;
	char dir[256] = "";
	pid_t pid;

	if (pipe(p) != 0) {
		check(0, "pipe");
		return;
	}
	pid = fork();
	if (pid == 0) {
		pgt_server_t s;
		char msg[300];

		close(p[0]);
		if (pgt_start(&s, NULL) != 0)
			_exit(2);
		snprintf(msg, sizeof(msg), "%d %s\n", s.port, s.dir);
		if (write(p[1], msg, strlen(msg)) < 0)
			_exit(3);
		raise(SIGKILL);
		_exit(4);
	}
	close(p[1]);
	{
		char buf[300] = "";
		ssize_t n = read(p[0], buf, sizeof(buf) - 1);

		if (n > 0) {
			buf[n] = '\0';
			if (sscanf(buf, "%d %255s", &port, dir) != 2)
				port = 0;
		}
	}
	close(p[0]);
	waitpid(pid, &status, 0);
	if (!check(port > 0 && WIFSIGNALED(status),
		   "a child test process starts a server and dies by SIGKILL"))
		return;
	for (int i = 0; i < 300 && !gone; i++) {
		gone = !dir_exists(dir);
		if (!gone)
			msleep(100);
	}
	check(gone, "the guardian removed the dead test's server directory");
	check(!tcp_answers(port), "and its server no longer answers");
}

int main(void)
{
	pgt_server_t s;
	char why[512], url[600], v[256], dir[256];
	PGconn *c = NULL, *old = NULL;
	PGresult *r;

	if (!pgt_available(why, sizeof(why)))
		pgt_skip(why);
	if (!check(pgt_start(&s, NULL) == 0, "pgt_start: initdb + server")) {
		printf("%d passed, %d failed\n", passed, failed);
		return 1;
	}
	printf("server %s port %d bindir %s\n", s.dir, s.port, s.bindir);
	check(s.running && s.pid > 0, "running, postmaster pid known");
	check(pgt_create_db(&s, "kiln_t") == 0, "pgt_create_db kiln_t");
	check(pgt_create_db(&s, "bad-name") != 0, "a bad database name refused");
	c = PQconnectdb(pgt_url(&s, "kiln_t", url, sizeof(url)));
	check(PQstatus(c) == CONNECTION_OK, url);
	query1(c, "SHOW fsync", v, sizeof(v));
	check(strcmp(v, "on") == 0, "fsync = on");
	query1(c, "SHOW synchronous_commit", v, sizeof(v));
	check(strcmp(v, "on") == 0, "synchronous_commit = on");
	query1(c, "SHOW listen_addresses", v, sizeof(v));
	check(strcmp(v, "127.0.0.1") == 0, "listens on 127.0.0.1 only");
	check(tcp_answers(s.port), "answers on its loopback port");
	check(exec_ok(c, "CREATE TABLE t (x int PRIMARY KEY)") &&
		      exec_ok(c, "INSERT INTO t VALUES (1), (2), (3)"),
	      "a table with rows");
	old = c;
	c = NULL;

	check(pgt_restart(&s) == 0, "pgt_restart: stop -m immediate + start");
	r = PQexec(old, "SELECT count(*) FROM t");
	check(PQresultStatus(r) != PGRES_TUPLES_OK,
	      "a connection open across the restart was cut");
	PQclear(r);
	PQfinish(old);
	c = PQconnectdb(url);
	query1(c, "SELECT count(*) FROM t", v, sizeof(v));
	check(strcmp(v, "3") == 0, "committed rows survive the crash restart");
	PQfinish(c);

	check(pgt_halt(&s) == 0 && !tcp_answers(s.port), "pgt_halt: down");
	check(pgt_resume(&s) == 0 && tcp_answers(s.port), "pgt_resume: up");

	snprintf(dir, sizeof(dir), "%s", s.dir);
	pgt_stop(&s);
	check(!dir_exists(dir), "pgt_stop removed the directory");
	check(!tcp_answers(s.port), "pgt_stop: the port no longer answers");
	pgt_stop(&s); /* twice is harmless */

	test_guardian();

	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
