/*
 * kiln station library: link spec parsing, dispatch, counters, and the
 * poll()-based fd I/O shared by the serial and unix back ends.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "host/lib/transport.h"
#include "host/lib/transport_priv.h"

static _Thread_local char link_err[512];

void ks_link_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(link_err, sizeof(link_err), fmt, ap);
	va_end(ap);
}

const char *ks_link_last_error(void)
{
	return link_err[0] != '\0' ? link_err : "no error";
}

int64_t ks_link_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ks_link_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return -1;
	return ks_link_now_ms() + timeout_ms;
}

int ks_link_remaining(int64_t deadline_ms)
{
	int64_t left;

	if (deadline_ms < 0)
		return -1;
	left = deadline_ms - ks_link_now_ms();
	if (left <= 0)
		return 0;
	return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

ks_err_t ks_link_errno_to_err(int e)
{
	switch (e) {
	case ENOENT:
	case ENODEV:
	case ENXIO:
	case ECONNREFUSED:
		return KS_ERR_NOTFOUND;
	case EBUSY:
	case EWOULDBLOCK:
		return KS_ERR_BUSY;
	case ENOMEM:
		return KS_ERR_NOMEM;
	default:
		return KS_ERR_IO;
	}
}

/* Strict unsigned decimal in [lo, hi]; the whole string must be digits. */
static int parse_uint(const char *s, size_t n, unsigned long lo,
		      unsigned long hi, unsigned long *v)
{
	unsigned long x = 0;

	if (n == 0 || n > 10)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10u + (unsigned long)(s[i] - '0');
	}
	if (x < lo || x > hi)
		return -1;
	*v = x;
	return 0;
}

static int parse_hex16(const char *s, size_t n, uint16_t *v)
{
	unsigned x = 0;

	if (n == 0 || n > 4)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return -1;
		x = x * 16u + d;
	}
	*v = (uint16_t)x;
	return 0;
}

static const struct {
	unsigned baud;
	unsigned speed;
} baud_table[] = {
	{1200, B1200},       {2400, B2400},       {4800, B4800},
	{9600, B9600},       {19200, B19200},     {38400, B38400},
	{57600, B57600},     {115200, B115200},   {230400, B230400},
	{460800, B460800},   {500000, B500000},   {576000, B576000},
	{921600, B921600},   {1000000, B1000000}, {1152000, B1152000},
	{1500000, B1500000}, {2000000, B2000000}, {2500000, B2500000},
	{3000000, B3000000}, {3500000, B3500000}, {4000000, B4000000},
};

ks_err_t ks_link_baud_constant(unsigned baud, unsigned *speed)
{
	for (size_t i = 0; i < sizeof(baud_table) / sizeof(baud_table[0]); i++) {
		if (baud_table[i].baud == baud) {
			*speed = baud_table[i].speed;
			return KS_OK;
		}
	}
	return KS_ERR_ARG;
}

static ks_err_t parse_serial(const char *spec, const char *p, ks_link_spec_t *o)
{
	const char *at = strrchr(p, '@');
	size_t plen = at != NULL ? (size_t)(at - p) : strlen(p);
	unsigned long baud = KS_LINK_DEFAULT_BAUD;
	unsigned speed;

	if (plen == 0 || p[0] != '/') {
		ks_link_set_error("%s: serial device must be an absolute path",
				  spec);
		return KS_ERR_ARG;
	}
	if (plen >= sizeof(o->path)) {
		ks_link_set_error("%s: device path too long", spec);
		return KS_ERR_ARG;
	}
	if (at != NULL &&
	    parse_uint(at + 1, strlen(at + 1), 1, 0xffffffffu, &baud) != 0) {
		ks_link_set_error("%s: baud rate '%s' is not a number", spec,
				  at + 1);
		return KS_ERR_ARG;
	}
	if (ks_link_baud_constant((unsigned)baud, &speed) != KS_OK) {
		ks_link_set_error("%s: unsupported baud rate %lu (use one of "
				  "1200..115200, 230400, 460800, 500000, "
				  "576000, 921600, 1000000..4000000)",
				  spec, baud);
		return KS_ERR_ARG;
	}
	o->kind = KS_LINK_SERIAL;
	memcpy(o->path, p, plen);
	o->path[plen] = '\0';
	o->baud = (unsigned)baud;
	return KS_OK;
}

static ks_err_t parse_unix(const char *spec, const char *p, ks_link_spec_t *o)
{
	size_t n = strlen(p);

	/* sockaddr_un.sun_path holds 108 bytes including the NUL */
	if (n == 0 || n >= 108) {
		ks_link_set_error("%s: socket path empty or longer than 107 "
				  "bytes", spec);
		return KS_ERR_ARG;
	}
	o->kind = KS_LINK_UNIX;
	memcpy(o->path, p, n + 1);
	return KS_OK;
}

static ks_err_t parse_usb_port(const char *spec, const char *p,
			       ks_link_spec_t *o)
{
	const char *dash = strchr(p, '-');
	unsigned long v;

	if (dash == NULL || parse_uint(p, (size_t)(dash - p), 1, 255, &v) != 0)
		goto bad;
	o->bus = (uint8_t)v;
	p = dash + 1;
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);

		if (o->nports >= KS_LINK_USB_PORTS_MAX ||
		    parse_uint(p, n, 1, 255, &v) != 0)
			goto bad;
		o->ports[o->nports++] = (uint8_t)v;
		if (dot == NULL)
			break;
		p = dot + 1;
	}
	o->kind = KS_LINK_USB;
	o->usb_by_port = true;
	return KS_OK;
bad:
	ks_link_set_error("%s: expected usb:@BUS-PORT[.PORT...] with numbers "
			  "1..255 and at most %u ports, e.g. usb:@1-1.3",
			  spec, KS_LINK_USB_PORTS_MAX);
	return KS_ERR_ARG;
}

static ks_err_t parse_usb(const char *spec, const char *p, ks_link_spec_t *o)
{
	const char *c1, *c2;

	if (p[0] == '@')
		return parse_usb_port(spec, p + 1, o);
	c1 = strchr(p, ':');
	if (c1 == NULL || parse_hex16(p, (size_t)(c1 - p), &o->vid) != 0)
		goto bad;
	c2 = strchr(c1 + 1, ':');
	if (parse_hex16(c1 + 1,
			c2 != NULL ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1),
			&o->pid) != 0)
		goto bad;
	if (c2 != NULL) {
		size_t n = strlen(c2 + 1);

		if (n == 0 || n > KS_LINK_USB_SERIAL_MAX)
			goto bad;
		for (size_t i = 0; i < n; i++)
			if (c2[1 + i] < 0x20 || c2[1 + i] > 0x7e)
				goto bad;
		memcpy(o->usb_serial, c2 + 1, n + 1);
	}
	o->kind = KS_LINK_USB;
	return KS_OK;
bad:
	ks_link_set_error("%s: expected usb:VID:PID[:SERIAL] with 1-4 hex "
			  "digit ids and a printable serial, or "
			  "usb:@BUS-PORT[.PORT...]", spec);
	return KS_ERR_ARG;
}

ks_err_t ks_link_parse_spec(const char *spec, ks_link_spec_t *out)
{
	if (spec == NULL || out == NULL) {
		ks_link_set_error("(null): no link spec");
		return KS_ERR_ARG;
	}
	memset(out, 0, sizeof(*out));
	if (strncmp(spec, "serial:", 7) == 0)
		return parse_serial(spec, spec + 7, out);
	if (strncmp(spec, "unix:", 5) == 0)
		return parse_unix(spec, spec + 5, out);
	if (strncmp(spec, "usb:", 4) == 0)
		return parse_usb(spec, spec + 4, out);
	if (spec[0] == '/')
		return parse_serial(spec, spec, out);
	ks_link_set_error("%s: unknown link spec (expected serial:PATH[@BAUD], "
			  "unix:PATH, usb:VID:PID[:SERIAL], usb:@BUS-PORT or "
			  "an absolute device path)", spec);
	return KS_ERR_ARG;
}

ks_err_t ks_link_open(const char *spec, ks_link_t **out)
{
	ks_link_spec_t s;
	ks_link_t *l = NULL;
	ks_err_t r;

	if (out == NULL) {
		ks_link_set_error("%s: no output pointer", spec ? spec : "(null)");
		return KS_ERR_ARG;
	}
	*out = NULL;
	r = ks_link_parse_spec(spec, &s);
	if (r != KS_OK)
		goto out;
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		ks_link_set_error("%s: out of memory", spec);
		r = KS_ERR_NOMEM;
		goto out;
	}
	l->fd = -1;
	l->kind = s.kind;
	switch (s.kind) {
	case KS_LINK_SERIAL:
		r = ks_link_serial_open(l, &s);
		break;
	case KS_LINK_UNIX:
		r = ks_link_unix_open(l, &s);
		break;
	case KS_LINK_USB:
		r = ks_link_usb_open(l, &s);
		break;
	default:
		r = KS_ERR_INTERNAL;
		break;
	}
	if (r != KS_OK) {
		free(l);
		l = NULL;
		goto out;
	}
	*out = l;
out:
	return r;
}

ks_err_t ks_link_write(ks_link_t *l, const uint8_t *buf, size_t n,
		       int timeout_ms)
{
	int64_t deadline = ks_link_deadline(timeout_ms);
	size_t off = 0;
	ks_err_t r = KS_OK;

	if (l == NULL || (buf == NULL && n > 0)) {
		ks_link_set_error("ks_link_write: invalid argument");
		return KS_ERR_ARG;
	}
	while (off < n) {
		size_t done = 0;

		r = l->ops->write(l, buf + off, n - off, deadline, &done);
		off += done;
		l->stats.tx_bytes += done;
		if (r != KS_OK)
			break;
	}
	if (r == KS_OK)
		l->stats.writes++;
	return r;
}

ks_err_t ks_link_read(ks_link_t *l, uint8_t *buf, size_t cap, int timeout_ms,
		      size_t *got)
{
	ks_err_t r;

	if (got != NULL)
		*got = 0;
	if (l == NULL || buf == NULL || cap == 0 || got == NULL) {
		ks_link_set_error("ks_link_read: invalid argument");
		return KS_ERR_ARG;
	}
	r = l->ops->read(l, buf, cap, ks_link_deadline(timeout_ms), got);
	if (r == KS_OK) {
		l->stats.rx_bytes += *got;
		l->stats.reads++;
	}
	return r;
}

void ks_link_close(ks_link_t **lp)
{
	ks_link_t *l;

	if (lp == NULL || *lp == NULL)
		return;
	l = *lp;
	l->ops->close(l);
	free(l);
	*lp = NULL;
}

const char *ks_link_describe(const ks_link_t *l)
{
	return l != NULL ? l->desc : "(no link)";
}

ks_link_kind_t ks_link_kind(const ks_link_t *l)
{
	return l->kind;
}

void ks_link_get_stats(const ks_link_t *l, ks_link_stats_t *st)
{
	if (l == NULL) {
		memset(st, 0, sizeof(*st));
		return;
	}
	*st = l->stats;
}

ks_err_t ks_link_fd_read(ks_link_t *l, uint8_t *buf, size_t cap,
			 int64_t deadline_ms, size_t *got)
{
	for (;;) {
		struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
		ssize_t n;
		int pr = poll(&pfd, 1, ks_link_remaining(deadline_ms));

		if (pr < 0) {
			if (errno == EINTR)
				continue;
			ks_link_set_error("%s: poll: %s", l->desc,
					  strerror(errno));
			return KS_ERR_IO;
		}
		if (pr == 0)
			return KS_ERR_TIMEOUT;
		if ((pfd.revents & POLLNVAL) != 0) {
			ks_link_set_error("%s: descriptor not open", l->desc);
			return KS_ERR_IO;
		}
		/* Read even on POLLHUP: data may still be queued. */
		n = read(l->fd, buf, cap);
		if (n > 0) {
			*got = (size_t)n;
			return KS_OK;
		}
		if (n == 0) {
			ks_link_set_error("%s: peer closed the link", l->desc);
			return KS_ERR_CLOSED;
		}
		if (errno == EINTR || errno == EAGAIN) {
			if ((pfd.revents & (POLLHUP | POLLERR)) != 0) {
				ks_link_set_error("%s: hang-up", l->desc);
				return KS_ERR_CLOSED;
			}
			continue;
		}
		if (errno == EIO || errno == ECONNRESET || errno == ENODEV ||
		    errno == ENXIO || errno == EPIPE) {
			ks_link_set_error("%s: device gone: %s", l->desc,
					  strerror(errno));
			return KS_ERR_CLOSED;
		}
		ks_link_set_error("%s: read: %s", l->desc, strerror(errno));
		return KS_ERR_IO;
	}
}

ks_err_t ks_link_fd_write(ks_link_t *l, const uint8_t *buf, size_t n,
			  int64_t deadline_ms, size_t *done)
{
	*done = 0;
	for (;;) {
		struct pollfd pfd = {.fd = l->fd, .events = POLLOUT};
		ssize_t w;
		int pr = poll(&pfd, 1, ks_link_remaining(deadline_ms));

		if (pr < 0) {
			if (errno == EINTR)
				continue;
			ks_link_set_error("%s: poll: %s", l->desc,
					  strerror(errno));
			return KS_ERR_IO;
		}
		if (pr == 0) {
			ks_link_set_error("%s: write timed out", l->desc);
			return KS_ERR_TIMEOUT;
		}
		if ((pfd.revents & (POLLHUP | POLLERR)) != 0 &&
		    (pfd.revents & POLLOUT) == 0) {
			ks_link_set_error("%s: hang-up", l->desc);
			return KS_ERR_CLOSED;
		}
		if (l->kind == KS_LINK_UNIX)
			w = send(l->fd, buf, n, MSG_NOSIGNAL);
		else
			w = write(l->fd, buf, n);
		if (w >= 0) {
			*done = (size_t)w;
			return KS_OK;
		}
		if (errno == EINTR || errno == EAGAIN)
			continue;
		if (errno == EPIPE || errno == EIO || errno == ECONNRESET ||
		    errno == ENODEV || errno == ENXIO) {
			ks_link_set_error("%s: device gone: %s", l->desc,
					  strerror(errno));
			return KS_ERR_CLOSED;
		}
		ks_link_set_error("%s: write: %s", l->desc, strerror(errno));
		return KS_ERR_IO;
	}
}
