#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "device/hal/hal.h"
#include "device/ports/posix/sim_transport.h"

#define TX_STALL_MS 1000

static struct {
	ka_sim_link_t kind;
	int in_fd;     /* read side */
	int out_fd;    /* write side */
	int slave_fd;  /* pty: kept open so the master never sees HUP/EIO */
	int listen_fd; /* unix: listening socket */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} lk = {.in_fd = -1, .out_fd = -1, .slave_fd = -1, .listen_fd = -1};

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int open_pty(void)
{
	struct termios t;
	const char *name;
	int m;

	m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0 ||
	    (name = ptsname(m)) == NULL)
		goto fail;
	lk.slave_fd = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (lk.slave_fd < 0)
		goto fail;
	/* raw: no echo, no line discipline, 8 bits */
	if (tcgetattr(lk.slave_fd, &t) != 0)
		goto fail;
	cfmakeraw(&t);
	if (tcsetattr(lk.slave_fd, TCSANOW, &t) != 0 || set_nonblock(m) != 0)
		goto fail;
	lk.in_fd = lk.out_fd = m;
	printf("PTY %s\n", name);
	fflush(stdout);
	return 0;
fail:
	fprintf(stderr, "kiln-agent-sim: pty: %s\n", strerror(errno));
	if (m >= 0)
		close(m);
	if (lk.slave_fd >= 0)
		close(lk.slave_fd);
	lk.slave_fd = -1;
	return -1;
}

static int open_unix(const char *path)
{
	struct sockaddr_un sa;
	struct stat sb;
	int s;

	if (path == NULL || strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "kiln-agent-sim: unix socket path too long\n");
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* a stale socket from a previous run; never remove anything else */
	if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
		unlink(path);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(s, 1) != 0) {
		fprintf(stderr, "kiln-agent-sim: unix %s: %s\n", path,
			strerror(errno));
		if (s >= 0)
			close(s);
		return -1;
	}
	lk.listen_fd = s;
	memcpy(lk.path, path, strlen(path) + 1);
	printf("UNIX %s\n", path);
	fflush(stdout);
	return 0;
}

int ka_sim_link_open(ka_sim_link_t kind, const char *path)
{
	lk.kind = kind;
	switch (kind) {
	case KA_SIM_LINK_PTY:
		return open_pty();
	case KA_SIM_LINK_UNIX:
		return open_unix(path);
	case KA_SIM_LINK_STDIO:
		lk.in_fd = STDIN_FILENO;
		lk.out_fd = STDOUT_FILENO;
		return 0;
	default:
		return -1;
	}
}

static void drop_client(void)
{
	if (lk.kind == KA_SIM_LINK_UNIX && lk.in_fd >= 0) {
		close(lk.in_fd);
		lk.in_fd = lk.out_fd = -1;
	}
}

void ka_sim_link_close(void)
{
	switch (lk.kind) {
	case KA_SIM_LINK_PTY:
		close(lk.in_fd);
		close(lk.slave_fd);
		break;
	case KA_SIM_LINK_UNIX:
		drop_client();
		if (lk.listen_fd >= 0) {
			close(lk.listen_fd);
			unlink(lk.path);
		}
		break;
	default:
		break;
	}
	lk.in_fd = lk.out_fd = lk.slave_fd = lk.listen_fd = -1;
}

ka_hal_status_t ka_hal_tx(const uint8_t *data, size_t n)
{
	while (n > 0) {
		ssize_t k;

		if (lk.out_fd < 0)
			return KA_HAL_ERR_IO; /* no station connected */
		if (lk.kind == KA_SIM_LINK_UNIX)
			k = send(lk.out_fd, data, n, MSG_NOSIGNAL);
		else
			k = write(lk.out_fd, data, n);
		if (k > 0) {
			data += k;
			n -= (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* nobody reads the pty: give up after a while, the
			 * station retransmits */
			struct pollfd p = {.fd = lk.out_fd, .events = POLLOUT};

			if (poll(&p, 1, TX_STALL_MS) > 0)
				continue;
		}
		drop_client();
		return KA_HAL_ERR_IO;
	}
	return KA_HAL_OK;
}

int32_t ka_hal_rx(uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
	struct pollfd p;
	int tmo = timeout_ms > 60000u ? 60000 : (int)timeout_ms;
	ssize_t k;

	if (lk.kind == KA_SIM_LINK_UNIX && lk.in_fd < 0) {
		p.fd = lk.listen_fd;
		p.events = POLLIN;
		if (poll(&p, 1, tmo) > 0) {
			int c = accept4(lk.listen_fd, NULL, NULL,
					SOCK_CLOEXEC);

			if (c >= 0)
				lk.in_fd = lk.out_fd = c;
		}
		return 0;
	}
	p.fd = lk.in_fd;
	p.events = POLLIN;
	p.revents = 0;
	if (poll(&p, 1, tmo) <= 0)
		return 0; /* timeout or a signal */
	k = read(lk.in_fd, buf, cap > 4096 ? 4096 : cap);
	if (k > 0)
		return (int32_t)k;
	if (k < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	switch (lk.kind) {
	case KA_SIM_LINK_STDIO:
		return KA_HAL_RX_CLOSED;
	case KA_SIM_LINK_UNIX:
		drop_client(); /* the station hung up: wait for the next */
		return 0;
	default:
		/* a pty whose slave we hold open does not hang up; if it
		 * errs anyway, do not spin */
		poll(NULL, 0, tmo);
		return 0;
	}
}
