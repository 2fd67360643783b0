/*
 * kiln: talking to kilnd over its control socket (one JSON object per
 * line each way), and small output helpers shared by the commands.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "host/kilnd/config.h"
#include "host/kiln/kiln.h"

#define KC_RSP_MAX (16u * 1024u * 1024u)

struct kc_conn {
	int fd;
	char *buf;
	size_t used, cap;
	char path[108];
};

static volatile sig_atomic_t got_sigint;

static void on_sigint(int sig)
{
	(void)sig;
	got_sigint = 1;
}

void kc_catch_sigint(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
}

bool kc_interrupted(void)
{
	return got_sigint != 0;
}

void kc_err(const char *fmt, ...)
{
	va_list ap;

	fputs("kiln: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void kc_print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	if (s != NULL) {
		puts(s);
		free(s);
	}
}

const char *kc_str(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : "";
}

int64_t kc_int(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

void kc_fmt_time(int64_t ms, char *out, size_t outlen)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || localtime_r(&t, &tm) == NULL ||
	    strftime(out, outlen, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(out, outlen, "-");
}

void kc_fmt_duration(int64_t ms, char *out, size_t outlen)
{
	if (ms < 0)
		ms = 0;
	if (ms < 60000)
		snprintf(out, outlen, "%.1fs", (double)ms / 1000.0);
	else if (ms < 3600000)
		snprintf(out, outlen, "%" PRId64 "m%02" PRId64 "s", ms / 60000,
			 (ms / 1000) % 60);
	else
		snprintf(out, outlen, "%" PRId64 "h%02" PRId64 "m",
			 ms / 3600000, (ms / 60000) % 60);
}

int kc_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = (uint64_t)v;
	return 0;
}

/* Where kilnd listens: -s, $KILN_SOCKET, -c's control_socket, default. */
static int socket_path(kc_global_t *g, char *out, size_t outlen)
{
	const char *env = getenv("KILN_SOCKET");
	kd_config_t *cfg = NULL;
	char *err;
	int n;

	if (g->socket != NULL)
		n = snprintf(out, outlen, "%s", g->socket);
	else if (env != NULL && env[0] != '\0')
		n = snprintf(out, outlen, "%s", env);
	else if (g->config != NULL) {
		err = calloc(1, 8192);
		if (err == NULL)
			return KC_EXIT_LOCAL;
		if (kd_config_load(g->config, &cfg, err, 8192) != KS_OK) {
			fputs(err, stderr);
			free(err);
			return KC_EXIT_LOCAL;
		}
		free(err);
		n = snprintf(out, outlen, "%s", cfg->control_socket);
		kd_config_free(&cfg);
	} else
		n = snprintf(out, outlen, "%s", KC_DEFAULT_SOCKET);
	if (n < 0 || (size_t)n >= outlen) {
		kc_err("socket path too long");
		return KC_EXIT_USAGE;
	}
	return KC_EXIT_OK;
}

int kc_connect(kc_global_t *g, kc_conn_t **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	kc_conn_t *c;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return KC_EXIT_LOCAL;
	c->fd = -1;
	rc = socket_path(g, c->path, sizeof(c->path));
	if (rc != KC_EXIT_OK)
		goto out;
	rc = KC_EXIT_UNREACHABLE;
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 ||
	    connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		kc_err("cannot reach kilnd at %s: %s (is it running? -s SOCKET or $KILN_SOCKET)",
		       c->path, strerror(errno));
		goto out;
	}
	*out = c;
	c = NULL;
	rc = KC_EXIT_OK;
out:
	kc_close(&c);
	return rc;
}

void kc_close(kc_conn_t **c)
{
	if (c == NULL || *c == NULL)
		return;
	if ((*c)->fd >= 0)
		close((*c)->fd);
	free((*c)->buf);
	free(*c);
	*c = NULL;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int kc_request(kc_conn_t *c, json_t *req, json_t **rsp)
{
	char *line = json_dumps(req, JSON_COMPACT);
	int rc = KC_EXIT_UNREACHABLE;

	json_decref(req);
	*rsp = NULL;
	if (line == NULL)
		return KC_EXIT_LOCAL;
	if (send_all(c->fd, line, strlen(line)) != 0 ||
	    send_all(c->fd, "\n", 1) != 0) {
		kc_err("kilnd at %s: %s", c->path, strerror(errno));
		goto out;
	}
	for (;;) {
		char *nl = c->used ? memchr(c->buf, '\n', c->used) : NULL;
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		ssize_t got;

		if (nl != NULL) {
			json_error_t jerr;
			size_t len = (size_t)(nl - c->buf);

			*rsp = json_loadb(c->buf, len, 0, &jerr);
			memmove(c->buf, nl + 1, c->used - len - 1);
			c->used -= len + 1;
			if (*rsp == NULL || !json_is_object(*rsp)) {
				kc_err("kilnd sent a bad response: %s", jerr.text);
				json_decref(*rsp);
				*rsp = NULL;
				goto out;
			}
			rc = KC_EXIT_OK;
			goto out;
		}
		if (c->used == c->cap) {
			size_t ncap = c->cap ? c->cap * 2 : 65536;
			char *nb;

			if (ncap > KC_RSP_MAX ||
			    (nb = realloc(c->buf, ncap)) == NULL) {
				kc_err("response from kilnd too large");
				goto out;
			}
			c->buf = nb;
			c->cap = ncap;
		}
		if (poll(&pfd, 1, 200) == 0 || (pfd.revents & POLLIN) == 0) {
			if (kc_interrupted()) {
				rc = KC_EXIT_INTERRUPTED;
				goto out;
			}
			if (pfd.revents & (POLLHUP | POLLERR)) {
				kc_err("kilnd closed the connection");
				goto out;
			}
			continue;
		}
		got = recv(c->fd, c->buf + c->used, c->cap - c->used, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			kc_err("kilnd closed the connection");
			goto out;
		}
		c->used += (size_t)got;
	}
out:
	free(line);
	return rc;
}

int kc_call(kc_global_t *g, json_t *req, json_t **rsp)
{
	kc_conn_t *c = NULL;
	int rc;

	*rsp = NULL;
	rc = kc_connect(g, &c);
	if (rc != KC_EXIT_OK) {
		json_decref(req);
		return rc;
	}
	rc = kc_request(c, req, rsp);
	kc_close(&c);
	if (rc == KC_EXIT_OK && !json_is_true(json_object_get(*rsp, "ok"))) {
		if (!g->json)
			kc_err("%s", kc_str(*rsp, "error"));
		rc = KC_EXIT_FAIL;
	}
	return rc;
}

int kc_subcommand(kc_global_t *g, int argc, char **argv, const char *cmd,
		  const kc_sub_t *subs, size_t n, void (*usage)(FILE *fp))
{
	char known[256] = "";
	size_t w = 0;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? KC_EXIT_USAGE : KC_EXIT_OK;
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(argv[1], subs[i].name) == 0)
			return subs[i].fn(g, argc - 1, argv + 1);
		if (w < sizeof(known))
			w += (size_t)snprintf(known + w, sizeof(known) - w,
					      "%s%s", i > 0 ? ", " : "",
					      subs[i].name);
	}
	kc_err("%s: unknown subcommand '%s' (%s)", cmd, argv[1], known);
	return KC_EXIT_USAGE;
}
