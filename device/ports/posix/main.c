/*
 * kiln-agent-sim: the agent on a simulated board (POSIX port).
 *
 * kiln-agent-sim --image FILE [--pty | --unix PATH | --stdio] [--uid HEX]
 *                [--board NAME] [--rng urandom|none] [--cut-after N]
 *                [--quiet]
 *
 * The command-line contract is normative (tests and the station rely on
 * it); docs/porting.md describes it with the image format.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device/core/agent.h"
#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"
#include "device/ports/posix/sim_transport.h"
#include "protocol/error.h"
#include "protocol/msg.h"

static volatile sig_atomic_t stop_requested;
static ka_agent_t agent; /* static: the core never allocates */

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kiln-agent-sim --image FILE [--pty | --unix PATH | "
		"--stdio]\n"
		"                      [--uid HEX] [--board NAME] "
		"[--rng urandom|none]\n"
		"                      [--cut-after N] [--quiet]\n");
}

static int parse_hex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(s);

	if (n % 2 != 0 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		unsigned v;

		if (c >= '0' && c <= '9')
			v = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v = (unsigned)(c - 'A' + 10);
		else
			return -1;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

static int parse_u32(const char *s, uint32_t *v)
{
	char *end = NULL;
	unsigned long long x;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || x == 0 || x > UINT32_MAX)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

static void trace(void *ctx, ka_trace_event_t ev, uint8_t type, uint16_t seq,
		  uint16_t status)
{
	(void)ctx;
	switch (ev) {
	case KA_TRACE_REQUEST:
		fprintf(stderr, "kiln-agent-sim: seq %u %s -> %s\n",
			(unsigned)seq, kp_msg_name(type),
			status == 0 ? "ok" : kp_status_str(status));
		break;
	case KA_TRACE_RETRANSMIT:
		fprintf(stderr,
			"kiln-agent-sim: seq %u %s retransmitted: cached "
			"response re-sent\n",
			(unsigned)seq, kp_msg_name(type));
		break;
	case KA_TRACE_STALE:
		fprintf(stderr,
			"kiln-agent-sim: seq %u %s is stale (an earlier "
			"request again): ignored\n",
			(unsigned)seq, kp_msg_name(type));
		break;
	default:
		fprintf(stderr, "kiln-agent-sim: frame dropped: %s\n",
			kp_strerror(status));
		break;
	}
}

int main(int argc, char **argv)
{
	ka_sim_config_t cfg;
	ka_sim_link_t kind = KA_SIM_LINK_PTY;
	const char *unix_path = NULL;
	uint8_t uid[32];
	size_t uid_len = 0;
	struct sigaction sa;
	kp_status_t st;
	int links = 0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.cut_mode = KA_SIM_CUT_EXIT;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--pty") == 0) {
			kind = KA_SIM_LINK_PTY;
			links++;
		} else if (strcmp(a, "--stdio") == 0) {
			kind = KA_SIM_LINK_STDIO;
			links++;
		} else if (strcmp(a, "--quiet") == 0) {
			cfg.quiet = true;
		} else if (v == NULL) {
			fprintf(stderr, "kiln-agent-sim: %s: missing value or "
					"unknown option\n", a);
			usage(stderr);
			return 2;
		} else if (strcmp(a, "--image") == 0) {
			cfg.path = v;
			i++;
		} else if (strcmp(a, "--unix") == 0) {
			kind = KA_SIM_LINK_UNIX;
			unix_path = v;
			links++;
			i++;
		} else if (strcmp(a, "--uid") == 0) {
			if (parse_hex(v, uid, sizeof(uid), &uid_len) != 0 ||
			    uid_len < 4) {
				fprintf(stderr, "kiln-agent-sim: --uid: 4..32 "
						"bytes in hex\n");
				return 2;
			}
			cfg.uid = uid;
			cfg.uid_len = uid_len;
			i++;
		} else if (strcmp(a, "--board") == 0) {
			cfg.board = v;
			i++;
		} else if (strcmp(a, "--rng") == 0) {
			if (strcmp(v, "urandom") == 0) {
				cfg.rng_none = false;
			} else if (strcmp(v, "none") == 0) {
				cfg.rng_none = true;
			} else {
				fprintf(stderr, "kiln-agent-sim: --rng: "
						"urandom or none\n");
				return 2;
			}
			i++;
		} else if (strcmp(a, "--cut-after") == 0) {
			if (parse_u32(v, &cfg.cut_after) != 0) {
				fprintf(stderr, "kiln-agent-sim: --cut-after: "
						"a write count >= 1\n");
				return 2;
			}
			i++;
		} else {
			fprintf(stderr, "kiln-agent-sim: unknown option %s\n",
				a);
			usage(stderr);
			return 2;
		}
	}
	if (cfg.path == NULL || links > 1) {
		fprintf(stderr, "kiln-agent-sim: %s\n",
			cfg.path == NULL ? "--image is required"
					 : "choose one of --pty, --unix, --stdio");
		usage(stderr);
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (ka_sim_open(&cfg) != 0)
		return 1;
	st = ka_agent_init(&agent);
	if (st != KP_ST_OK)
		fprintf(stderr, "kiln-agent-sim: boot: %s (reported as "
				"integrity)\n", kp_status_str(st));
	if (!cfg.quiet)
		ka_agent_set_trace(&agent, trace, NULL);
	if (ka_sim_link_open(kind, unix_path) != 0) {
		ka_sim_close();
		return 1;
	}
	while (!stop_requested) {
		if (ka_agent_poll(&agent, 200) == KA_HAL_RX_CLOSED)
			break;
	}
	ka_sim_link_close();
	ka_sim_close();
	fprintf(stderr, "WRITES %u\n", (unsigned)ka_sim_writes());
	return 0;
}
