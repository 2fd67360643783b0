/*
 * Regression (found by the power-cut sweep): a new link whose first
 * HELLO lands 1..32 seq behind the last request the board executed on
 * an earlier link is ignored by the agent as a stale frame; the station
 * must still reach the board.
 *
 * A relay between the station's agent client and a real kiln-agent-sim
 * makes that happen on purpose: when the client's first HELLO (seq q)
 * arrives, the relay first sends the board a HELLO of its own with seq
 * q + 10 (swallowing the answer), then forwards the client's frames. The
 * client's HELLO is then 10 behind, i.e. stale; it must get through by
 * its retransmission. Before the fix every retransmission carried seq q
 * and the board stayed silent.
 *
 *   fault_stale KILN-AGENT-SIM
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "host/lib/agent.h"
#include "host/lib/log.h"
#include "host/lib/simproc.h"
#include "protocol/frame.h"
#include "protocol/msg.h"

#define POISON_AHEAD 10u

static int passed, failed;
static int listen_fd = -1;
static char sim_sock[128];
static unsigned poisoned; /* HELLOs the relay injected */

static void check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "ok  " : "FAIL", what);
	if (ok)
		passed++;
	else
		failed++;
}

static int send_frame(int fd, const kp_hdr_t *h, const uint8_t *payload)
{
	uint8_t out[KP_MAX_COBS + 2];
	size_t n = 0;

	if (kp_frame_encode(h, payload, h->len, out, sizeof(out), &n) != KP_OK)
		return -1;
	return write(fd, out, n) == (ssize_t)n ? 0 : -1;
}

static void *relay_main(void *arg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	kp_rx_t from_host, from_board;
	int host, board, swallow = -1, first = 1;

	(void)arg;
	host = accept(listen_fd, NULL, NULL);
	board = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", sim_sock);
	if (host < 0 || board < 0 ||
	    connect(board, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return NULL;
	kp_rx_init(&from_host);
	kp_rx_init(&from_board);
	for (;;) {
		struct pollfd p[2] = {{.fd = host, .events = POLLIN},
				      {.fd = board, .events = POLLIN}};
		uint8_t buf[4096];

		if (poll(p, 2, 5000) <= 0)
			break;
		for (int side = 0; side < 2; side++) {
			ssize_t n;
			size_t at = 0;

			if ((p[side].revents & (POLLIN | POLLHUP)) == 0)
				continue;
			n = read(p[side].fd, buf, sizeof(buf));
			if (n <= 0)
				goto out;
			while (at < (size_t)n) {
				kp_rx_event_t ev;

				at += kp_rx_feed(side == 0 ? &from_host
							   : &from_board,
						 buf + at, (size_t)n - at, &ev);
				if (ev.kind != KP_RX_FRAME)
					continue;
				if (side == 1) {
					if ((int)ev.hdr.seq == swallow)
						continue;
					(void)send_frame(host, &ev.hdr, ev.payload);
					continue;
				}
				if (first && ev.hdr.type == KP_MSG_HELLO) {
					kp_hdr_t h = ev.hdr;

					/* the board's last request becomes
					 * POISON_AHEAD past this one */
					h.seq = (uint16_t)(ev.hdr.seq + POISON_AHEAD);
					swallow = h.seq;
					(void)send_frame(board, &h, ev.payload);
					poisoned++;
					usleep(100000);
				}
				first = 0;
				(void)send_frame(board, &ev.hdr, ev.payload);
			}
		}
	}
out:
	close(host);
	close(board);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[] = "/tmp/kiln-stale-XXXXXX", image[160], relay[160], spec[200];
	ks_agent_opts_t opts = {.timeout_ms = 500, .retries = 2};
	ks_simproc_opts_t o;
	ks_simproc_t *sp = NULL;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	ks_agent_stats_t stats;
	pthread_t t;
	ks_err_t r = KS_ERR_INTERNAL;

	if (argc < 2 || mkdtemp(dir) == NULL) {
		fprintf(stderr, "usage: fault_stale KILN-AGENT-SIM\n");
		return 2;
	}
	ks_log_set_level(KS_LOG_ERROR);
	snprintf(image, sizeof(image), "%s/board.img", dir);
	snprintf(sim_sock, sizeof(sim_sock), "%s/board.sock", dir);
	snprintf(relay, sizeof(relay), "%s/relay.sock", dir);
	memset(&o, 0, sizeof(o));
	o.exe = argv[1];
	o.image = image;
	o.unix_path = sim_sock;
	o.quiet = true;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", relay);
	listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (ks_simproc_start(&o, &sp) != KS_OK || listen_fd < 0 ||
	    bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(listen_fd, 1) != 0 ||
	    pthread_create(&t, NULL, relay_main, NULL) != 0) {
		fprintf(stderr, "fault_stale: setup failed\n");
		return 2;
	}
	snprintf(spec, sizeof(spec), "unix:%s", relay);
	if (ks_agent_open(spec, &opts, &a) == KS_OK)
		r = ks_agent_hello(a, &h);
	check(poisoned == 1, "the relay made the client's first HELLO stale");
	check(r == KS_OK, "HELLO answered although its first seq was stale");
	if (a != NULL) {
		ks_agent_get_stats(a, &stats);
		check(stats.retransmits >= 1,
		      "... by a retransmission with a fresh seq");
		if (r != KS_OK)
			printf("     %s\n", ks_agent_last_error(a));
	}
	ks_agent_free(&a);
	pthread_join(t, NULL);
	(void)ks_simproc_stop(&sp, NULL);
	close(listen_fd);
	unlink(relay);
	unlink(sim_sock);
	unlink(image);
	rmdir(dir);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
