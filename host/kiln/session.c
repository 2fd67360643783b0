/*
 * kiln session release ID --reason TEXT
 *
 * End an unfinished session of any station of the line as FAILED through
 * kilnd (operator role), for the session of a station that died
 * mid-session and will not come back: the registry voids a certificate
 * the session had issued and audits who released it and why. The board
 * is not touched; offered again at any station, it is provisioned afresh.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/kiln/kiln.h"

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln session release ID --reason TEXT\n\n"
		"End the unfinished session ID as FAILED in the registry, whichever\n"
		"station of the line opened it: for a station that died mid-session\n"
		"and will not come back (its boards are refused elsewhere with 'UID\n"
		"... is being provisioned at station X'). A certificate the session\n"
		"had issued is voided; the audit log records who released it and\n"
		"why. Nothing is written to the board. Never release the session of\n"
		"a station that is still running: it would find its session gone.\n"
		"Refused while a slot of this station is provisioning the UID.\n");
}

/* A session id: decimal, 1..INT64_MAX. */
static int parse_id(const char *s, int64_t *id)
{
	char *end = NULL;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1)
		return -1;
	*id = (int64_t)v;
	return 0;
}

static int release(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"reason", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *reason = NULL;
	json_t *req, *rsp = NULL;
	int64_t id = 0;
	int opt, rc;

	optind = 0; /* a fresh scan of the shifted argv (GNU getopt) */
	while ((opt = getopt_long(argc, argv, "r:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			reason = optarg;
			break;
		case 'h':
			usage(stdout);
			return KC_EXIT_OK;
		default:
			usage(stderr);
			return KC_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || reason == NULL || reason[0] == '\0') {
		kc_err("session release: needs a session ID and --reason TEXT");
		usage(stderr);
		return KC_EXIT_USAGE;
	}
	if (parse_id(argv[optind], &id) != 0) {
		kc_err("session release: '%s' is not a session id (a number "
		       "from 1)", argv[optind]);
		return KC_EXIT_USAGE;
	}
	req = json_pack("{s:s, s:I, s:s}", "cmd", "session.release", "id",
			(json_int_t)id, "reason", reason);
	rc = kc_call(g, req, &rsp);
	if (rsp != NULL && g->json)
		kc_print_json(rsp);
	else if (rc == KC_EXIT_OK)
		printf("session %" PRId64 " (UID %s, %s, station %s): %s -> "
		       "FAILED (released)\n",
		       id, kc_str(rsp, "uid"), kc_str(rsp, "serial"),
		       kc_str(rsp, "station"), kc_str(rsp, "was"));
	json_decref(rsp);
	return rc;
}

int kc_cmd_session(kc_global_t *g, int argc, char **argv)
{
	static const kc_sub_t subs[] = {
		{"release", release},
	};

	return kc_subcommand(g, argc, argv, "session", subs,
			     sizeof(subs) / sizeof(subs[0]), usage);
}
