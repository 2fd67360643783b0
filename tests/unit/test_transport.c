/* Unit tests: link spec parsing, and the serial and unix back ends driven
 * over a real pseudo-terminal and a real unix socket. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "host/lib/transport.h"

static void parse_ok(const char *spec, ks_link_spec_t *s)
{
	ks_err_t r = ks_link_parse_spec(spec, s);

	if (r != KS_OK)
		fail_msg("%s: %s", spec, ks_link_last_error());
}

static void parse_bad(const char *spec, const char *needle)
{
	ks_link_spec_t s;

	assert_int_equal(ks_link_parse_spec(spec, &s), KS_ERR_ARG);
	if (needle != NULL && strstr(ks_link_last_error(), needle) == NULL)
		fail_msg("error for '%s' lacks '%s': %s", spec, needle,
			 ks_link_last_error());
}

static void test_parse_serial(void **state)
{
	ks_link_spec_t s;

	(void)state;
	parse_ok("serial:/dev/ttyACM0@115200", &s);
	assert_int_equal(s.kind, KS_LINK_SERIAL);
	assert_string_equal(s.path, "/dev/ttyACM0");
	assert_int_equal(s.baud, 115200);
	parse_ok("serial:/dev/ttyUSB1@921600", &s);
	assert_int_equal(s.baud, 921600);
	parse_ok("serial:/dev/ttyS0", &s);
	assert_int_equal(s.baud, KS_LINK_DEFAULT_BAUD);
	parse_ok("/dev/pts/3", &s);
	assert_int_equal(s.kind, KS_LINK_SERIAL);
	assert_string_equal(s.path, "/dev/pts/3");
	assert_int_equal(s.baud, 115200);
	parse_ok("/dev/ttyACM0@9600", &s);
	assert_int_equal(s.baud, 9600);

	parse_bad("serial:/dev/ttyACM0@12345", "unsupported baud rate 12345");
	parse_bad("serial:/dev/ttyACM0@", "not a number");
	parse_bad("serial:/dev/ttyACM0@11520x", "not a number");
	parse_bad("serial:/dev/ttyACM0@99999999999", "not a number");
	parse_bad("serial:ttyACM0", "absolute path");
	parse_bad("serial:", "absolute path");
	parse_bad("serial:@115200", "absolute path");
}

static void test_parse_unix(void **state)
{
	ks_link_spec_t s;
	char longp[200];

	(void)state;
	parse_ok("unix:/run/kiln/board0.sock", &s);
	assert_int_equal(s.kind, KS_LINK_UNIX);
	assert_string_equal(s.path, "/run/kiln/board0.sock");
	parse_bad("unix:", "107");
	memset(longp, 'a', sizeof(longp));
	memcpy(longp, "unix:/", 6);
	longp[sizeof(longp) - 1] = '\0';
	parse_bad(longp, "107");
}

static void test_parse_usb(void **state)
{
	ks_link_spec_t s;

	(void)state;
	parse_ok("usb:0483:5740", &s);
	assert_int_equal(s.kind, KS_LINK_USB);
	assert_false(s.usb_by_port);
	assert_int_equal(s.vid, 0x0483);
	assert_int_equal(s.pid, 0x5740);
	assert_string_equal(s.usb_serial, "");
	parse_ok("usb:1209:cafe:KLN-000123", &s);
	assert_int_equal(s.vid, 0x1209);
	assert_int_equal(s.pid, 0xcafe);
	assert_string_equal(s.usb_serial, "KLN-000123");
	parse_ok("usb:@1-1.3", &s);
	assert_true(s.usb_by_port);
	assert_int_equal(s.bus, 1);
	assert_int_equal(s.nports, 2);
	assert_int_equal(s.ports[0], 1);
	assert_int_equal(s.ports[1], 3);
	parse_ok("usb:@3-2", &s);
	assert_int_equal(s.bus, 3);
	assert_int_equal(s.nports, 1);
	parse_ok("usb:@2-1.2.3.4.5.6.7", &s);
	assert_int_equal(s.nports, 7);

	parse_bad("usb:0483", "usb:VID:PID");
	parse_bad("usb:04830:5740", "usb:VID:PID");
	parse_bad("usb:zz:5740", "usb:VID:PID");
	parse_bad("usb::5740", "usb:VID:PID");
	parse_bad("usb:0483:", "usb:VID:PID");
	parse_bad("usb:0483:5740:", "usb:VID:PID");
	parse_bad("usb:0483:5740:a\tb", "usb:VID:PID");
	parse_bad("usb:@1", "BUS-PORT");
	parse_bad("usb:@0-1", "BUS-PORT");
	parse_bad("usb:@1-", "BUS-PORT");
	parse_bad("usb:@1-1..3", "BUS-PORT");
	parse_bad("usb:@1-1.3.", "BUS-PORT");
	parse_bad("usb:@1-256", "BUS-PORT");
	parse_bad("usb:@1-1.2.3.4.5.6.7.8", "BUS-PORT");
}

static void test_parse_other(void **state)
{
	ks_link_spec_t s;
	unsigned sp;

	(void)state;
	parse_bad("tcp:127.0.0.1:9", "unknown link spec");
	parse_bad("ttyACM0", "unknown link spec");
	parse_bad("", "unknown link spec");
	assert_int_equal(ks_link_parse_spec(NULL, &s), KS_ERR_ARG);
	assert_int_equal(ks_link_baud_constant(115200, &sp), KS_OK);
	assert_int_equal(sp, B115200);
	assert_int_equal(ks_link_baud_constant(4000000, &sp), KS_OK);
	assert_int_equal(sp, B4000000);
	assert_int_equal(ks_link_baud_constant(0, &sp), KS_ERR_ARG);
	assert_int_equal(ks_link_baud_constant(250000, &sp), KS_ERR_ARG);
}

static void test_open_errors(void **state)
{
	ks_link_t *l = NULL;
	ks_err_t r;

	(void)state;
	assert_int_equal(ks_link_open("serial:/dev/kiln-no-such-tty@115200",
				      &l),
			 KS_ERR_NOTFOUND);
	assert_null(l);
	assert_non_null(strstr(ks_link_last_error(),
			       "/dev/kiln-no-such-tty"));
	assert_non_null(strstr(ks_link_last_error(), strerror(ENOENT)));

	assert_int_equal(ks_link_open("serial:/dev/null", &l), KS_ERR_ARG);
	assert_non_null(strstr(ks_link_last_error(), "not a terminal"));

	assert_int_equal(ks_link_open("unix:/nonexistent/kiln.sock", &l),
			 KS_ERR_NOTFOUND);
	assert_non_null(strstr(ks_link_last_error(), "kiln.sock"));

	/* No USB device here: discovery must fail cleanly and say why
	 * (without usbfs, libusb_init itself fails: KS_ERR_IO). */
	r = ks_link_open("usb:ffff:fffe:NOPE", &l);
	assert_true(r == KS_ERR_NOTFOUND || r == KS_ERR_IO);
	assert_null(l);
	assert_non_null(strstr(ks_link_last_error(), "usb ffff:fffe:NOPE"));
	r = ks_link_open("usb:@9-4.4", &l);
	assert_true(r == KS_ERR_NOTFOUND || r == KS_ERR_IO);
	assert_non_null(strstr(ks_link_last_error(), "usb @9-4.4"));
	printf("# usb: %s\n", ks_link_last_error());

	ks_link_close(&l); /* NULL-safe */
	ks_link_close(NULL);
}

static int open_master(char *slave, size_t cap)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct termios t;

	assert_true(m >= 0);
	assert_int_equal(grantpt(m), 0);
	assert_int_equal(unlockpt(m), 0);
	assert_int_equal(ptsname_r(m, slave, cap), 0);
	/* raw on the master side too, so nothing is echoed or translated */
	assert_int_equal(tcgetattr(m, &t), 0);
	cfmakeraw(&t);
	assert_int_equal(tcsetattr(m, TCSANOW, &t), 0);
	return m;
}

static void read_exact_fd(int fd, uint8_t *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		assert_true(poll(&p, 1, 2000) == 1);
		r = read(fd, buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

static void test_pty(void **state)
{
	char slave[64], spec[96];
	uint8_t all[256], buf[300];
	ks_link_t *l = NULL, *l2 = NULL;
	ks_link_stats_t st;
	size_t got = 0, total = 0;
	int64_t t0;
	int m;

	(void)state;
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (uint8_t)i; /* every byte value, 0x00 and 0x11/0x13 */
	m = open_master(slave, sizeof(slave));
	snprintf(spec, sizeof(spec), "serial:%s@921600", slave);
	if (ks_link_open(spec, &l) != KS_OK)
		fail_msg("%s", ks_link_last_error());
	assert_non_null(strstr(ks_link_describe(l), slave));
	assert_int_equal(ks_link_kind(l), KS_LINK_SERIAL);

	/* a second station on the same port is refused */
	assert_int_equal(ks_link_open(spec, &l2), KS_ERR_BUSY);
	assert_non_null(strstr(ks_link_last_error(), "in use"));

	/* host -> board: raw, all 256 byte values intact */
	assert_int_equal(ks_link_write(l, all, sizeof(all), 1000), KS_OK);
	read_exact_fd(m, buf, sizeof(all));
	assert_memory_equal(buf, all, sizeof(all));

	/* board -> host */
	assert_int_equal(write(m, all, sizeof(all)), (ssize_t)sizeof(all));
	while (total < sizeof(all)) {
		assert_int_equal(ks_link_read(l, buf + total,
					      sizeof(buf) - total, 1000, &got),
				 KS_OK);
		assert_true(got > 0);
		total += got;
	}
	assert_int_equal(total, sizeof(all));
	assert_memory_equal(buf, all, sizeof(all));

	/* a silent board times out after about the timeout */
	t0 = ks_link_now_ms();
	assert_int_equal(ks_link_read(l, buf, sizeof(buf), 150, &got),
			 KS_ERR_TIMEOUT);
	assert_int_equal(got, 0);
	assert_true(ks_link_now_ms() - t0 >= 140);
	assert_true(ks_link_now_ms() - t0 < 1000);
	assert_int_equal(ks_link_read(l, buf, sizeof(buf), 0, &got),
			 KS_ERR_TIMEOUT);

	ks_link_get_stats(l, &st);
	assert_int_equal(st.tx_bytes, sizeof(all));
	assert_int_equal(st.rx_bytes, sizeof(all));

	/* the board goes away: the link reports it as closed */
	close(m);
	assert_int_equal(ks_link_read(l, buf, sizeof(buf), 1000, &got),
			 KS_ERR_CLOSED);
	ks_link_close(&l);
	assert_null(l);
}

static void test_unix(void **state)
{
	char dir[] = "/tmp/kiln-link-XXXXXX";
	char path[128], spec[160];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint8_t msg[] = {0, 1, 2, 0, 0xff}, buf[16];
	ks_link_t *l = NULL;
	ks_link_stats_t st;
	size_t got;
	int ls, c;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s", dir);
	snprintf(spec, sizeof(spec), "unix:%s", path);
	ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(ls >= 0);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(ls, 1), 0);
	if (ks_link_open(spec, &l) != KS_OK)
		fail_msg("%s", ks_link_last_error());
	c = accept(ls, NULL, NULL);
	assert_true(c >= 0);

	assert_int_equal(ks_link_write(l, msg, sizeof(msg), 1000), KS_OK);
	read_exact_fd(c, buf, sizeof(msg));
	assert_memory_equal(buf, msg, sizeof(msg));
	assert_int_equal(write(c, msg, sizeof(msg)), (ssize_t)sizeof(msg));
	assert_int_equal(ks_link_read(l, buf, sizeof(buf), 1000, &got), KS_OK);
	assert_int_equal(got, sizeof(msg));
	assert_int_equal(ks_link_read(l, buf, sizeof(buf), 50, &got),
			 KS_ERR_TIMEOUT);
	ks_link_get_stats(l, &st);
	assert_int_equal(st.tx_bytes, sizeof(msg));
	assert_int_equal(st.rx_bytes, sizeof(msg));

	/* peer gone: read says closed, write fails without SIGPIPE */
	close(c);
	assert_int_equal(ks_link_read(l, buf, sizeof(buf), 1000, &got),
			 KS_ERR_CLOSED);
	assert_int_equal(ks_link_write(l, msg, sizeof(msg), 1000),
			 KS_ERR_CLOSED);
	ks_link_close(&l);
	close(ls);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_serial),
		cmocka_unit_test(test_parse_unix),
		cmocka_unit_test(test_parse_usb),
		cmocka_unit_test(test_parse_other),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_pty),
		cmocka_unit_test(test_unix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
