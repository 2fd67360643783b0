/*
 * kiln station library: spawn and stop kiln-agent-sim.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "host/lib/log.h"
#include "host/lib/simproc.h"
#include "host/lib/transport.h"

#define SIM_MAX_ARGS 24
#define SIM_LINE_MAX 512

struct ks_simproc {
	pid_t pid;
	int out_fd; /* read end of the child's stdout */
	int err_fd; /* memfd holding the child's stderr */
	bool reaped;
	int wstatus;
	char spec[SIM_LINE_MAX + 16];
};

pid_t ks_simproc_pid(const ks_simproc_t *s)
{
	return s->pid;
}

const char *ks_simproc_spec(const ks_simproc_t *s)
{
	return s->spec;
}

char *ks_simproc_stderr(const ks_simproc_t *s)
{
	struct stat st;
	off_t size = 0;
	size_t n = 0;
	char *buf;

	/* fstat, not lseek: the offset is shared with the child */
	if (s->err_fd >= 0 && fstat(s->err_fd, &st) == 0)
		size = st.st_size;
	buf = malloc((size_t)size + 1);
	if (buf == NULL)
		return NULL;
	while (n < (size_t)size) {
		ssize_t r = pread(s->err_fd, buf + n, (size_t)size - n,
				  (off_t)n);

		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	return buf;
}

/* Last "<key><number>" on a line start in text; -1 if absent. */
static long find_number(const char *text, const char *key)
{
	long v = -1;
	size_t klen = strlen(key);

	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, key, klen) == 0) {
			char *end;
			long x = strtol(p + klen, &end, 10);

			if (end != p + klen && x >= 0)
				v = x;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return v;
}

static void fill_result(const ks_simproc_t *s, ks_simproc_result_t *res)
{
	char *text;

	if (res == NULL)
		return;
	memset(res, 0, sizeof(*res));
	res->writes = -1;
	res->cut_at = -1;
	if (s->reaped) {
		res->exited = WIFEXITED(s->wstatus);
		res->status = res->exited ? WEXITSTATUS(s->wstatus)
					  : WTERMSIG(s->wstatus);
		res->power_cut = res->exited &&
				 res->status == KS_SIM_POWER_CUT_STATUS;
	}
	text = ks_simproc_stderr(s);
	if (text != NULL) {
		res->writes = find_number(text, "WRITES ");
		res->cut_at = find_number(text, "POWER CUT after write ");
		free(text);
	}
}

static int try_reap(ks_simproc_t *s, int flags)
{
	pid_t r;

	if (s->reaped)
		return 1;
	do
		r = waitpid(s->pid, &s->wstatus, flags);
	while (r < 0 && errno == EINTR);
	if (r == s->pid) {
		s->reaped = true;
		return 1;
	}
	return 0;
}

ks_err_t ks_simproc_wait(ks_simproc_t *s, int timeout_ms,
			 ks_simproc_result_t *res)
{
	int64_t deadline = ks_link_deadline(timeout_ms);

	for (;;) {
		if (try_reap(s, WNOHANG)) {
			fill_result(s, res);
			return KS_OK;
		}
		if (ks_link_remaining(deadline) == 0)
			return KS_ERR_TIMEOUT;
		(void)nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
	}
}

/* Read the announcement line from the child's stdout. */
static ks_err_t read_line(ks_simproc_t *s, int timeout_ms, char *line,
			  size_t cap)
{
	int64_t deadline = ks_link_deadline(timeout_ms);
	size_t n = 0;

	for (;;) {
		struct pollfd pfd = {.fd = s->out_fd, .events = POLLIN};
		int pr = poll(&pfd, 1, ks_link_remaining(deadline));
		ssize_t r;

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0)
			return KS_ERR_TIMEOUT;
		if (pr < 0)
			return KS_ERR_IO;
		/* one byte at a time: never swallow more than the line */
		r = read(s->out_fd, line + n, 1);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			return KS_ERR_CLOSED;
		if (line[n] == '\n') {
			line[n] = '\0';
			return KS_OK;
		}
		if (++n >= cap - 1)
			return KS_ERR_PROTO;
	}
}

static void child_exec(const ks_simproc_opts_t *o, char *const argv[],
		       int out_w, int err_fd, pid_t parent)
{
	/* Only async-signal-safe calls between fork and exec. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(126);
	if (dup2(out_w, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
		_exit(126);
	execv(o->exe, argv);
	{
		static const char msg[] = "kiln-agent-sim: exec failed\n";

		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	}
	_exit(127);
}

ks_err_t ks_simproc_start(const ks_simproc_opts_t *o, ks_simproc_t **out)
{
	char *argv[SIM_MAX_ARGS];
	char cut[32];
	char line[SIM_LINE_MAX];
	int pfd[2] = {-1, -1};
	ks_simproc_t *s = NULL;
	size_t ac = 0;
	pid_t parent = getpid();
	ks_err_t r = KS_ERR_ARG;

	if (o == NULL || out == NULL || o->exe == NULL || o->image == NULL)
		goto out;
	*out = NULL;
	argv[ac++] = (char *)o->exe;
	argv[ac++] = (char *)"--image";
	argv[ac++] = (char *)o->image;
	if (o->unix_path != NULL) {
		argv[ac++] = (char *)"--unix";
		argv[ac++] = (char *)o->unix_path;
	} else {
		argv[ac++] = (char *)"--pty";
	}
	if (o->uid_hex != NULL) {
		argv[ac++] = (char *)"--uid";
		argv[ac++] = (char *)o->uid_hex;
	}
	if (o->board != NULL) {
		argv[ac++] = (char *)"--board";
		argv[ac++] = (char *)o->board;
	}
	if (o->rng != NULL) {
		argv[ac++] = (char *)"--rng";
		argv[ac++] = (char *)o->rng;
	}
	if (o->cut_after > 0) {
		snprintf(cut, sizeof(cut), "%lu", o->cut_after);
		argv[ac++] = (char *)"--cut-after";
		argv[ac++] = cut;
	}
	if (o->quiet)
		argv[ac++] = (char *)"--quiet";
	argv[ac] = NULL;

	r = KS_ERR_NOMEM;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto out;
	s->pid = -1;
	s->out_fd = -1;
	r = KS_ERR_IO;
	s->err_fd = memfd_create("kiln-sim-stderr", MFD_CLOEXEC);
	if (s->err_fd < 0 || pipe2(pfd, O_CLOEXEC) != 0) {
		ks_log_error("%s: %s", o->exe, strerror(errno));
		goto out;
	}
	s->pid = fork();
	if (s->pid < 0) {
		ks_log_error("fork: %s", strerror(errno));
		goto out;
	}
	if (s->pid == 0)
		child_exec(o, argv, pfd[1], s->err_fd, parent);
	close(pfd[1]);
	pfd[1] = -1;
	s->out_fd = pfd[0];
	pfd[0] = -1;
	r = read_line(s, o->start_timeout_ms > 0 ? o->start_timeout_ms : 5000,
		      line, sizeof(line));
	if (r != KS_OK) {
		char *err = ks_simproc_stderr(s);

		ks_log_error("%s did not announce its port (%s); stderr: %s",
			     o->exe, ks_strerror(r), err ? err : "");
		free(err);
		goto out;
	}
	if (strncmp(line, "PTY ", 4) == 0 && line[4] == '/') {
		snprintf(s->spec, sizeof(s->spec), "serial:%s", line + 4);
	} else if (strncmp(line, "UNIX ", 5) == 0 && line[5] != '\0') {
		snprintf(s->spec, sizeof(s->spec), "unix:%s", line + 5);
	} else {
		ks_log_error("%s: unexpected first line '%s'", o->exe, line);
		r = KS_ERR_PROTO;
		goto out;
	}
	*out = s;
	s = NULL;
	r = KS_OK;
out:
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (s != NULL)
		ks_simproc_stop(&s, NULL);
	return r;
}

ks_err_t ks_simproc_stop(ks_simproc_t **sp, ks_simproc_result_t *res)
{
	ks_simproc_t *s;
	ks_err_t r = KS_OK;

	if (sp == NULL || *sp == NULL)
		return KS_ERR_ARG;
	s = *sp;
	if (s->pid > 0 && !try_reap(s, WNOHANG)) {
		(void)kill(s->pid, SIGTERM);
		if (ks_simproc_wait(s, 5000, NULL) != KS_OK) {
			ks_log_warn("simulator pid %d ignored SIGTERM",
				    (int)s->pid);
			(void)kill(s->pid, SIGKILL);
			(void)try_reap(s, 0);
			r = KS_ERR_TIMEOUT;
		}
	}
	fill_result(s, res);
	if (s->out_fd >= 0)
		close(s->out_fd);
	if (s->err_fd >= 0)
		close(s->err_fd);
	free(s);
	*sp = NULL;
	return r;
}
