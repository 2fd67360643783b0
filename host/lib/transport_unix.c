/*
 * kiln station library: unix stream socket back end (QEMU's UART chardev,
 * the simulator's --unix mode).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "host/lib/transport_priv.h"

static ks_err_t unix_read(ks_link_t *l, uint8_t *buf, size_t cap,
			  int64_t deadline_ms, size_t *got)
{
	return ks_link_fd_read(l, buf, cap, deadline_ms, got);
}

static ks_err_t unix_write(ks_link_t *l, const uint8_t *buf, size_t n,
			   int64_t deadline_ms, size_t *done)
{
	return ks_link_fd_write(l, buf, n, deadline_ms, done);
}

static void unix_close(ks_link_t *l)
{
	if (l->fd >= 0) {
		(void)close(l->fd);
		l->fd = -1;
	}
}

static const ks_link_ops_t unix_ops = {
	.write = unix_write,
	.read = unix_read,
	.close = unix_close,
};

ks_err_t ks_link_unix_open(ks_link_t *l, const ks_link_spec_t *s)
{
	struct sockaddr_un sa;
	size_t n = strlen(s->path);
	int fd;
	int flags;

	if (n >= sizeof(sa.sun_path)) {
		ks_link_set_error("unix:%s: path too long", s->path);
		return KS_ERR_ARG;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ks_link_set_error("unix:%s: socket: %s", s->path,
				  strerror(errno));
		return KS_ERR_IO;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, s->path, n + 1);
	/* A unix stream connect completes or fails at once. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		ks_link_set_error("unix:%s: connect: %s", s->path, strerror(e));
		(void)close(fd);
		return ks_link_errno_to_err(e);
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
		ks_link_set_error("unix:%s: fcntl: %s", s->path,
				  strerror(errno));
		(void)close(fd);
		return KS_ERR_IO;
	}
	l->fd = fd;
	l->ops = &unix_ops;
	snprintf(l->desc, sizeof(l->desc), "unix %s", s->path);
	return KS_OK;
}
