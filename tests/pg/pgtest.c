/*
 * A throwaway PostgreSQL server for tests (see pgtest.h).
 */
#include "tests/pg/pgtest.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

/* The user initdb and the server run as; the current user unless root. */
typedef struct {
	int drop; /* 1: switch to uid/gid in the child */
	uid_t uid;
	gid_t gid;
	char name[64];
} pgt_user_t;

static int pgt_find_user(pgt_user_t *u, char *why, size_t cap)
{
	static const char *const names[] = {"postgres", "nobody"};
	int r = -1;

	memset(u, 0, sizeof(*u));
	if (geteuid() != 0) {
		u->uid = geteuid();
		u->gid = getegid();
		snprintf(u->name, sizeof(u->name), "uid %u", (unsigned)u->uid);
		r = 0;
		goto out;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct passwd *pw = getpwnam(names[i]);

		if (pw == NULL || pw->pw_uid == 0)
			continue;
		u->drop = 1;
		u->uid = pw->pw_uid;
		u->gid = pw->pw_gid;
		snprintf(u->name, sizeof(u->name), "%s", names[i]);
		r = 0;
		goto out;
	}
	snprintf(why, cap,
		 "running as root and neither a 'postgres' nor a 'nobody' user "
		 "exists to run initdb (which refuses root)");
out:
	return r;
}

static int pgt_executable_in(const char *dir, const char *name)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, X_OK) == 0;
}

/* initdb + pg_ctl directory: pg_config --bindir, else the newest
 * /usr/lib/postgresql/N/bin. */
static int pgt_find_bindir(char *out, size_t cap, char *why, size_t whycap)
{
	char line[512] = "";
	FILE *fp = popen("pg_config --bindir 2>/dev/null", "r");
	glob_t g;
	int r = -1, best = -1;
	long bestv = -1;

	if (fp != NULL) {
		if (fgets(line, sizeof(line), fp) == NULL)
			line[0] = '\0';
		(void)pclose(fp);
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '/' && pgt_executable_in(line, "initdb") &&
		    pgt_executable_in(line, "pg_ctl") && strlen(line) < cap) {
			snprintf(out, cap, "%s", line);
			r = 0;
			goto out_noglob;
		}
	}
	memset(&g, 0, sizeof(g));
	if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc; i++) {
			const char *v = g.gl_pathv[i] + strlen("/usr/lib/postgresql/");
			long n = strtol(v, NULL, 10);

			if (n > bestv && pgt_executable_in(g.gl_pathv[i], "initdb") &&
			    pgt_executable_in(g.gl_pathv[i], "pg_ctl")) {
				bestv = n;
				best = (int)i;
			}
		}
		if (best >= 0 && strlen(g.gl_pathv[best]) < cap) {
			snprintf(out, cap, "%s", g.gl_pathv[best]);
			r = 0;
		}
	}
	globfree(&g);
	if (r != 0)
		snprintf(why, whycap,
			 "no PostgreSQL server programs (initdb, pg_ctl): not in "
			 "`pg_config --bindir` nor /usr/lib/postgresql/*/bin "
			 "(install the Debian package 'postgresql': scripts/deps)");
out_noglob:
	return r;
}

int pgt_available(char *why, size_t cap)
{
	char bindir[256];
	pgt_user_t u;
	int ok = 0;

	if (pgt_find_bindir(bindir, sizeof(bindir), why, cap) != 0)
		goto out;
	if (pgt_find_user(&u, why, cap) != 0)
		goto out;
	ok = 1;
out:
	return ok;
}

void pgt_skip(const char *why)
{
	printf("SKIP: %s\n", why);
	fflush(stdout);
	exit(PGT_SKIP_STATUS);
}

/* Run argv (argv[0] a full path) as user u in directory cwd, output
 * appended to logpath; returns the exit status, or -1. */
static int pgt_run(const pgt_user_t *u, const char *cwd, const char *logpath,
		   char *const argv[])
{
	pid_t pid;
	int status = 0, r = -1;

	pid = fork();
	if (pid < 0)
		goto out;
	if (pid == 0) {
		int fd;

		/* the log is created (and appended to) as the server's user */
		if (u->drop && (setgroups(0, NULL) != 0 || setgid(u->gid) != 0 ||
				setuid(u->uid) != 0))
			_exit(126);
		fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
				_exit(126);
			close(fd);
		}
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			(void)dup2(fd, 0);
			close(fd);
		}
		if (chdir(cwd) != 0)
			_exit(126);
		unsetenv("PGDATA");
		unsetenv("PGHOST");
		unsetenv("PGPORT");
		setenv("LC_ALL", "C", 1);
		execv(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			goto out;
	r = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
out:
	return r;
}

static int pgt_rm_entry(const char *path, const struct stat *sb, int flag,
			struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		(void)rmdir(path);
	else
		(void)unlink(path);
	return 0;
}

/* Remove a directory this harness made (only paths named .../pgt-XXXXXX). */
static void pgt_rmdir(const char *dir)
{
	const char *base = strrchr(dir, '/');

	if (dir[0] != '/' || base == NULL || strncmp(base, "/pgt-", 5) != 0)
		return;
	(void)nftw(dir, pgt_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int pgt_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd, port = -1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
out:
	return port;
}

static void pgt_paths(const pgt_server_t *s, char *data, char *log, size_t cap)
{
	snprintf(data, cap, "%s/data", s->dir);
	snprintf(log, cap, "%s/server.log", s->dir);
}

/* pg_ctl start -w; reads the postmaster pid. */
static int pgt_ctl_start(pgt_server_t *s, const pgt_user_t *u)
{
	char ctl[512], data[512], log[512], pidf[600];
	char *argv[] = {ctl, "start", "-w", "-t", "60", "-s", "-D", data,
			"-l", log, NULL};
	FILE *fp;
	long pid = 0;
	int r = -1;

	snprintf(ctl, sizeof(ctl), "%s/pg_ctl", s->bindir);
	pgt_paths(s, data, log, sizeof(data));
	if (pgt_run(u, s->dir, log, argv) != 0)
		goto out;
	snprintf(pidf, sizeof(pidf), "%s/postmaster.pid", data);
	fp = fopen(pidf, "r");
	if (fp != NULL) {
		if (fscanf(fp, "%ld", &pid) != 1)
			pid = 0;
		fclose(fp);
	}
	s->pid = (pid_t)pid;
	s->running = 1;
	r = 0;
out:
	return r;
}

static int pgt_ctl_stop(const pgt_server_t *s, const pgt_user_t *u,
			const char *mode)
{
	char ctl[512], data[512], log[512];
	char *argv[] = {ctl, "stop", "-w", "-t", "60", "-s", "-m", (char *)mode,
			"-D", data, NULL};

	snprintf(ctl, sizeof(ctl), "%s/pg_ctl", s->bindir);
	pgt_paths(s, data, log, sizeof(data));
	return pgt_run(u, s->dir, log, argv);
}

/*
 * The guardian: holds the read end of a pipe whose write end only the test
 * process has. EOF without the 'D' byte pgt_stop() writes means the test
 * went away: stop the server and remove its directory.
 */
static void pgt_guardian(const pgt_server_t *s, const pgt_user_t *u, int rfd)
{
	char c = 0;
	ssize_t n;
	int fd;

	(void)setsid();
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		(void)dup2(fd, 0);
		(void)dup2(fd, 1);
		close(fd);
	}
	for (int i = 3; i < 1024; i++)
		if (i != rfd)
			close(i);
	do
		n = read(rfd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1 && c == 'D')
		_exit(0);
	fprintf(stderr, "pgtest: the test process ended without stopping "
			"PostgreSQL in %s: stopping it\n", s->dir);
	(void)pgt_ctl_stop(s, u, "immediate");
	pgt_rmdir(s->dir);
	_exit(0);
}

static int pgt_guard_start(pgt_server_t *s, const pgt_user_t *u)
{
	int p[2], r = -1;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		goto out;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		goto out;
	}
	if (pid == 0) {
		close(p[1]);
		pgt_guardian(s, u, p[0]);
	}
	close(p[0]);
	s->guard = pid;
	s->guard_fd = p[1];
	r = 0;
out:
	return r;
}

static int pgt_write_conf(const pgt_server_t *s)
{
	char path[600];
	FILE *fp;
	int r = -1;

	snprintf(path, sizeof(path), "%s/data/postgresql.conf", s->dir);
	fp = fopen(path, "a");
	if (fp == NULL)
		goto out;
	fprintf(fp,
		"\n# pgtest: loopback and a private socket only, durable commits\n"
		"listen_addresses = '127.0.0.1'\n"
		"port = %d\n"
		"unix_socket_directories = '%s'\n"
		"fsync = on\n"
		"synchronous_commit = on\n"
		"full_page_writes = on\n"
		"max_connections = 300\n"
		"shared_buffers = 32MB\n"
		"log_min_messages = warning\n"
		"log_connections = off\n",
		s->port, s->sockdir);
	r = fclose(fp) == 0 ? 0 : -1;
out:
	return r;
}

static void pgt_show_log(const pgt_server_t *s)
{
	char log[600], line[512];
	FILE *fp;

	snprintf(log, sizeof(log), "%s/server.log", s->dir);
	fp = fopen(log, "r");
	if (fp == NULL)
		return;
	fprintf(stderr, "--- %s ---\n", log);
	while (fgets(line, sizeof(line), fp) != NULL)
		fputs(line, stderr);
	fclose(fp);
}

int pgt_start(pgt_server_t *s, const char *tmpdir)
{
	char why[256], tmpl[256], initdb[512], data[512], log[512];
	char *argv[] = {initdb, "-D", data, "-U", "postgres", "--auth=trust",
			"-E", "UTF8", "--no-locale", "--no-sync", NULL};
	pgt_user_t u;
	int r = -1;

	memset(s, 0, sizeof(*s));
	s->guard_fd = -1;
	if (tmpdir == NULL)
		tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	if (pgt_find_bindir(s->bindir, sizeof(s->bindir), why, sizeof(why)) != 0 ||
	    pgt_find_user(&u, why, sizeof(why)) != 0) {
		fprintf(stderr, "pgt_start: %s\n", why);
		goto out;
	}
	/* the socket path (DIR/.s.PGSQL.NNNNN) must fit sun_path */
	if (snprintf(tmpl, sizeof(tmpl), "%s/pgt-XXXXXX", tmpdir) >= 80) {
		fprintf(stderr, "pgt_start: %s is too long for a socket path\n",
			tmpdir);
		goto out;
	}
	if (mkdtemp(tmpl) == NULL) {
		fprintf(stderr, "pgt_start: mkdtemp %s: %s\n", tmpl, strerror(errno));
		goto out;
	}
	snprintf(s->dir, sizeof(s->dir), "%s", tmpl);
	snprintf(s->sockdir, sizeof(s->sockdir), "%s", tmpl);
	if (chmod(s->dir, 0755) != 0 ||
	    (u.drop && chown(s->dir, u.uid, u.gid) != 0)) {
		fprintf(stderr, "pgt_start: hand %s to %s: %s\n", s->dir, u.name,
			strerror(errno));
		goto out_rm;
	}
	snprintf(initdb, sizeof(initdb), "%s/initdb", s->bindir);
	pgt_paths(s, data, log, sizeof(data));
	if (pgt_run(&u, s->dir, log, argv) != 0) {
		fprintf(stderr, "pgt_start: initdb (as %s) failed\n", u.name);
		pgt_show_log(s);
		goto out_rm;
	}
	/* a port another process takes between our probe and the server's
	 * bind: try a few */
	for (int attempt = 0; attempt < 3 && !s->running; attempt++) {
		s->port = pgt_free_port();
		if (s->port <= 0 || pgt_write_conf(s) != 0) {
			fprintf(stderr, "pgt_start: cannot configure a port\n");
			goto out_rm;
		}
		if (pgt_ctl_start(s, &u) != 0)
			fprintf(stderr, "pgt_start: server did not start on port %d\n",
				s->port);
	}
	if (!s->running) {
		pgt_show_log(s);
		goto out_rm;
	}
	if (pgt_guard_start(s, &u) != 0) {
		fprintf(stderr, "pgt_start: cannot start the guardian: %s\n",
			strerror(errno));
		(void)pgt_ctl_stop(s, &u, "immediate");
		s->running = 0;
		goto out_rm;
	}
	r = 0;
	goto out;
out_rm:
	pgt_rmdir(s->dir);
	s->dir[0] = '\0';
out:
	return r;
}

void pgt_stop(pgt_server_t *s)
{
	pgt_user_t u;
	char why[256];

	if (s->dir[0] == '\0')
		return;
	if (s->running && pgt_find_user(&u, why, sizeof(why)) == 0) {
		if (pgt_ctl_stop(s, &u, "fast") != 0)
			(void)pgt_ctl_stop(s, &u, "immediate");
	}
	s->running = 0;
	s->pid = 0;
	if (getenv("PGT_KEEP") != NULL)
		fprintf(stderr, "pgtest: kept %s\n", s->dir);
	else
		pgt_rmdir(s->dir);
	if (s->guard_fd >= 0) {
		/* tell the guardian all is done, then reap it */
		if (write(s->guard_fd, "D", 1) != 1)
			fprintf(stderr, "pgt_stop: guardian: %s\n", strerror(errno));
		close(s->guard_fd);
		s->guard_fd = -1;
	}
	if (s->guard > 0) {
		while (waitpid(s->guard, NULL, 0) < 0 && errno == EINTR)
			;
		s->guard = 0;
	}
	s->dir[0] = '\0';
}

int pgt_halt(pgt_server_t *s)
{
	pgt_user_t u;
	char why[256];
	int r = -1;

	if (!s->running || pgt_find_user(&u, why, sizeof(why)) != 0)
		goto out;
	if (pgt_ctl_stop(s, &u, "immediate") != 0) {
		fprintf(stderr, "pgt_halt: pg_ctl stop -m immediate failed\n");
		pgt_show_log(s);
		goto out;
	}
	s->running = 0;
	s->pid = 0;
	r = 0;
out:
	return r;
}

int pgt_resume(pgt_server_t *s)
{
	pgt_user_t u;
	char why[256];
	int r = -1;

	if (s->running || s->dir[0] == '\0' ||
	    pgt_find_user(&u, why, sizeof(why)) != 0)
		goto out;
	if (pgt_ctl_start(s, &u) != 0) {
		fprintf(stderr, "pgt_resume: server did not start again\n");
		pgt_show_log(s);
		goto out;
	}
	r = 0;
out:
	return r;
}

int pgt_restart(pgt_server_t *s)
{
	int r = -1;

	if (pgt_halt(s) != 0 || pgt_resume(s) != 0)
		goto out;
	r = 0;
out:
	return r;
}

const char *pgt_url(const pgt_server_t *s, const char *db, char *buf,
		    size_t cap)
{
	int n = snprintf(buf, cap, "postgresql://postgres@/%s?host=%s&port=%d",
			 db, s->sockdir, s->port);

	return n > 0 && (size_t)n < cap ? buf : NULL;
}

int pgt_create_db(pgt_server_t *s, const char *name)
{
	char url[600], sql[128];
	PGconn *c = NULL;
	PGresult *res = NULL;
	int r = -1;

	if (name[0] == '\0' || strlen(name) > 63 ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name)) {
		fprintf(stderr, "pgt_create_db: '%s': use a-z, 0-9 and _ only\n",
			name);
		goto out;
	}
	if (pgt_url(s, "postgres", url, sizeof(url)) == NULL)
		goto out;
	c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pgt_create_db: connect %s: %s", url,
			PQerrorMessage(c));
		goto out;
	}
	snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", name);
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "pgt_create_db: %s: %s", sql, PQerrorMessage(c));
		goto out;
	}
	r = 0;
out:
	PQclear(res);
	PQfinish(c);
	return r;
}
