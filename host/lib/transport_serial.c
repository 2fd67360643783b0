/*
 * kiln station library: termios serial back end. The same code drives a
 * real /dev/ttyACM0 and the simulator's pseudo-terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "host/lib/transport_priv.h"

static ks_err_t serial_read(ks_link_t *l, uint8_t *buf, size_t cap,
			    int64_t deadline_ms, size_t *got)
{
	return ks_link_fd_read(l, buf, cap, deadline_ms, got);
}

static ks_err_t serial_write(ks_link_t *l, const uint8_t *buf, size_t n,
			     int64_t deadline_ms, size_t *done)
{
	return ks_link_fd_write(l, buf, n, deadline_ms, done);
}

static void serial_close(ks_link_t *l)
{
	if (l->fd >= 0) {
		/* Give up exclusivity so the next opener is not refused. */
		(void)ioctl(l->fd, TIOCNXCL);
		(void)flock(l->fd, LOCK_UN);
		(void)close(l->fd);
		l->fd = -1;
	}
}

static const ks_link_ops_t serial_ops = {
	.write = serial_write,
	.read = serial_read,
	.close = serial_close,
};

ks_err_t ks_link_serial_open(ks_link_t *l, const ks_link_spec_t *s)
{
	struct termios tio;
	unsigned speed;
	ks_err_t r;
	int fd;

	r = ks_link_baud_constant(s->baud, &speed);
	if (r != KS_OK) {
		ks_link_set_error("serial:%s: unsupported baud rate %u",
				  s->path, s->baud);
		return r;
	}
	fd = open(s->path, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;

		ks_link_set_error("serial:%s: open: %s", s->path, strerror(e));
		return ks_link_errno_to_err(e);
	}
	if (!isatty(fd)) {
		ks_link_set_error("serial:%s: not a terminal device", s->path);
		r = KS_ERR_ARG;
		goto fail;
	}
	/* Two station processes on one board would interleave frames. */
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		ks_link_set_error("serial:%s: in use by another process "
				  "(flock: %s)", s->path, strerror(errno));
		r = KS_ERR_BUSY;
		goto fail;
	}
	if (ioctl(fd, TIOCEXCL) != 0) {
		ks_link_set_error("serial:%s: TIOCEXCL: %s", s->path,
				  strerror(errno));
		r = KS_ERR_IO;
		goto fail;
	}
	if (tcgetattr(fd, &tio) != 0) {
		ks_link_set_error("serial:%s: tcgetattr: %s", s->path,
				  strerror(errno));
		r = KS_ERR_IO;
		goto fail;
	}
	cfmakeraw(&tio);
	tio.c_cflag |= CLOCAL | CREAD;
	tio.c_cflag &= ~(tcflag_t)(CSTOPB | CRTSCTS);
	/* Non-blocking reads; timeouts come from poll(). */
	tio.c_cc[VMIN] = 0;
	tio.c_cc[VTIME] = 0;
	if (cfsetispeed(&tio, speed) != 0 || cfsetospeed(&tio, speed) != 0) {
		ks_link_set_error("serial:%s: cannot set %u baud: %s", s->path,
				  s->baud, strerror(errno));
		r = KS_ERR_IO;
		goto fail;
	}
	if (tcsetattr(fd, TCSANOW, &tio) != 0) {
		ks_link_set_error("serial:%s: tcsetattr: %s", s->path,
				  strerror(errno));
		r = KS_ERR_IO;
		goto fail;
	}
	/* Drop whatever a previous session left in the queues. */
	(void)tcflush(fd, TCIOFLUSH);
	l->fd = fd;
	l->ops = &serial_ops;
	snprintf(l->desc, sizeof(l->desc), "serial %s @%u", s->path, s->baud);
	return KS_OK;
fail:
	(void)ioctl(fd, TIOCNXCL);
	(void)close(fd);
	return r;
}
