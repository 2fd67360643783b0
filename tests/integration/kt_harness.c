/*
 * Daemon-level integration test harness (see kt_harness.h).
 */
#include "tests/integration/kt_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "host/lib/ca.h"

int kt_passed, kt_failed;

bool kt_check(bool ok, const char *fmt, ...)
{
	va_list ap;

	if (ok) {
		kt_passed++;
		if (getenv("KT_VERBOSE") == NULL)
			return ok;
	} else {
		kt_failed++;
	}
	printf("%s: ", ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	return ok;
}

int kt_summary(void)
{
	printf("%d passed, %d failed\n", kt_passed, kt_failed);
	return kt_failed == 0 ? 0 : 1;
}

static void msleep(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kt_path(const kt_station_t *st, char *out, size_t outlen, const char *rel)
{
	snprintf(out, outlen, "%s/%s", st->dir, rel);
}

int kt_init(kt_station_t *st, int argc, char **argv, const char *tag)
{
	char tmpl[PATH_MAX], ca[PATH_MAX], err[256];

	memset(st, 0, sizeof(*st));
	st->kilnd = argc > 1 ? argv[1] : getenv("KILND");
	st->kiln = argc > 2 ? argv[2] : getenv("KILN");
	st->sim = argc > 3 ? argv[3] : getenv("KILN_AGENT_SIM");
	if (st->kilnd == NULL || st->kiln == NULL) {
		fprintf(stderr, "usage: %s KILND KILN [KILN-AGENT-SIM]\n", argv[0]);
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpl, sizeof(tmpl), "/tmp/kt-%s.XXXXXX", tag);
	if (mkdtemp(tmpl) == NULL)
		return -1;
	snprintf(st->dir, sizeof(st->dir), "%s", tmpl);
	kt_path(st, st->conf, sizeof(st->conf), "kilnd.conf");
	kt_path(st, st->sock, sizeof(st->sock), "kilnd.sock");
	kt_path(st, st->db, sizeof(st->db), "registry.db");
	kt_path(st, st->log, sizeof(st->log), "kilnd.log");
	kt_path(st, ca, sizeof(ca), "boards");
	if (mkdir(ca, 0755) != 0)
		return -1;
	kt_path(st, ca, sizeof(ca), "ca");
	if (ks_ca_init_dev(ca, "kiln test", err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "ca init: %s\n", err);
		return -1;
	}
	return 0;
}

void kt_cleanup(kt_station_t *st)
{
	char cmd[PATH_MAX + 16];

	if (st->pid > 0)
		(void)kt_kilnd_stop(st);
	for (int i = 0; i <= KT_MAX_BOARDS; i++)
		if (st->boards[i] != NULL)
			kt_board_stop(st, i);
	if (getenv("KT_KEEP") != NULL) {
		printf("kept %s\n", st->dir);
		return;
	}
	if (st->dir[0] == '/' && strncmp(st->dir, "/tmp/kt-", 8) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", st->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", st->dir);
	}
}

int kt_write_conf(kt_station_t *st, const char *station_extra,
		  const char *profiles, int nslots, const char *const *ports)
{
	FILE *fp = fopen(st->conf, "w");

	if (fp == NULL)
		return -1;
	fprintf(fp,
		"[station]\nid = test-station\nregistry = registry.db\n"
		"control_socket = kilnd.sock\nstation_key = ca/station.key\n"
		"log_level = info\n%s\n"
		"[ca]\ncert = ca/station-ca.pem\nkey = ca/station-ca.key\n"
		"chain = ca/chain.pem\n\n%s\n",
		station_extra ? station_extra : "", profiles);
	for (int i = 1; i <= nslots; i++) {
		if (ports != NULL && ports[i - 1] != NULL)
			fprintf(fp, "[slot slot%d]\nport = %s\n\n", i, ports[i - 1]);
		else
			fprintf(fp, "[slot slot%d]\nport = boards/slot%d\n\n", i, i);
	}
	return fclose(fp) == 0 ? 0 : -1;
}

static pid_t spawn(char *const argv[], const char *out_path)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int wait_status(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int kt_kilnd_start(kt_station_t *st)
{
	char *argv[] = {(char *)st->kilnd, "-f", "-c", st->conf, NULL};
	long long deadline = now_ms() + 10000;

	st->pid = spawn(argv, st->log);
	if (st->pid < 0)
		return -1;
	while (now_ms() < deadline) {
		json_t *r = kt_ctl(st, "{\"cmd\":\"status\"}");

		if (r != NULL) {
			json_decref(r);
			return 0;
		}
		if (waitpid(st->pid, NULL, WNOHANG) == st->pid) {
			st->pid = 0;
			return -1;
		}
		msleep(50);
	}
	return -1;
}

int kt_kilnd_stop(kt_station_t *st)
{
	int rc;

	if (st->pid <= 0)
		return -1;
	kill(st->pid, SIGTERM);
	rc = wait_status(st->pid);
	st->pid = 0;
	return rc;
}

json_t *kt_ctl(kt_station_t *st, const char *fmt, ...)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char req[4096], buf[1 << 16];
	size_t used = 0;
	va_list ap;
	json_t *rsp = NULL;
	int fd;

	va_start(ap, fmt);
	vsnprintf(req, sizeof(req) - 1, fmt, ap);
	va_end(ap);
	strcat(req, "\n");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", st->sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		goto out;
	while (used < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);

		if (n <= 0)
			break;
		used += (size_t)n;
		if (memchr(buf, '\n', used) != NULL)
			break;
	}
	buf[used] = '\0';
	rsp = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
out:
	close(fd);
	return rsp;
}

static int run_v(char *out, size_t outlen, const char *exe, va_list ap,
		 const char *prefix1, const char *prefix2)
{
	char *argv[64];
	int argc = 0, p[2], rc;
	const char *a;
	pid_t pid;
	size_t used = 0;

	argv[argc++] = (char *)exe;
	if (prefix1 != NULL) {
		argv[argc++] = (char *)prefix1;
		argv[argc++] = (char *)prefix2;
	}
	while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
		argv[argc++] = (char *)a;
	argv[argc] = NULL;
	if (pipe(p) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(exe, argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		char tmp[4096];
		ssize_t n = read(p[0], tmp, sizeof(tmp));

		if (n <= 0)
			break;
		if (out != NULL && used + 1 < outlen) {
			size_t k = (size_t)n < outlen - 1 - used ? (size_t)n
								 : outlen - 1 - used;
			memcpy(out + used, tmp, k);
			used += k;
		}
	}
	if (out != NULL && outlen > 0)
		out[used] = '\0';
	close(p[0]);
	rc = wait_status(pid);
	return rc;
}

int kt_run(char *out, size_t outlen, const char *exe, ...)
{
	va_list ap;
	int rc;

	va_start(ap, exe);
	rc = run_v(out, outlen, exe, ap, NULL, NULL);
	va_end(ap);
	return rc;
}

int kt_kiln(kt_station_t *st, char *out, size_t outlen, ...)
{
	va_list ap;
	int rc;

	va_start(ap, outlen);
	rc = run_v(out, outlen, st->kiln, ap, "-s", st->sock);
	va_end(ap);
	return rc;
}

int kt_board_start(kt_station_t *st, int n, const char *image,
		   const char *uid_hex, unsigned long cut_after)
{
	ks_simproc_opts_t o;
	char img[PATH_MAX], link[PATH_MAX], rel[64];
	const char *spec;

	if (n < 0 || n > KT_MAX_BOARDS || st->sim == NULL)
		return -1;
	snprintf(rel, sizeof(rel), "boards/slot%d.img", n);
	if (image == NULL)
		kt_path(st, img, sizeof(img), rel);
	else
		snprintf(img, sizeof(img), "%s", image);
	memset(&o, 0, sizeof(o));
	o.exe = st->sim;
	o.image = img;
	o.uid_hex = uid_hex;
	o.cut_after = cut_after;
	o.quiet = true;
	if (ks_simproc_start(&o, &st->boards[n]) != KS_OK)
		return -1;
	spec = ks_simproc_spec(st->boards[n]);
	if (strncmp(spec, "serial:", 7) == 0)
		spec += 7;
	snprintf(rel, sizeof(rel), "boards/slot%d", n);
	kt_path(st, link, sizeof(link), rel);
	unlink(link);
	return symlink(spec, link);
}

void kt_board_stop(kt_station_t *st, int n)
{
	char link[PATH_MAX], rel[64];

	snprintf(rel, sizeof(rel), "boards/slot%d", n);
	kt_path(st, link, sizeof(link), rel);
	unlink(link);
	(void)ks_simproc_stop(&st->boards[n], NULL);
}

json_t *kt_wait_batch(kt_station_t *st, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	while (now_ms() < deadline) {
		json_t *r = kt_ctl(st, "{\"cmd\":\"status\"}");
		json_t *b = json_object_get(r, "batch");

		if (json_is_object(b) &&
		    !json_is_true(json_object_get(b, "running")))
			return r;
		json_decref(r);
		msleep(100);
	}
	return NULL;
}

bool kt_wait_slot(kt_station_t *st, int n, const char *state, int timeout_ms,
		  json_t **slot_out)
{
	long long deadline = now_ms() + timeout_ms;

	for (;;) {
		json_t *r = kt_ctl(st, "{\"cmd\":\"status\"}");
		json_t *s = json_array_get(json_object_get(r, "slots"),
					   (size_t)(n - 1));
		const char *cur = json_string_value(json_object_get(s, "state"));
		bool ok = cur != NULL && strcmp(cur, state) == 0;

		if (ok || now_ms() >= deadline) {
			if (slot_out != NULL)
				*slot_out = s ? json_incref(s) : NULL;
			json_decref(r);
			return ok;
		}
		json_decref(r);
		msleep(100);
	}
}

bool kt_file_contains(const char *path, const void *needle, size_t n)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf = NULL;
	long len;
	bool found = false;

	if (fp == NULL)
		return false;
	if (fseek(fp, 0, SEEK_END) == 0 && (len = ftell(fp)) > 0 &&
	    fseek(fp, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len)) != NULL &&
	    fread(buf, 1, (size_t)len, fp) == (size_t)len)
		found = memmem(buf, (size_t)len, needle, n) != NULL;
	free(buf);
	fclose(fp);
	return found;
}
