/*
 * kiln provision SLOT|PORT [--lot L] [--profile P] [--reprovision]
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "host/kiln/kiln.h"

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln provision SLOT|PORT [--lot L] [--profile P] [--reprovision]\n\n"
		"Provision the board on a configured slot (by name) or on a port\n"
		"(a link spec: serial:/dev/ttyACM0@115200, unix:PATH, /dev/pts/N) now,\n"
		"and wait for the result. The slot must not be serving a batch.\n"
		"  --lot L, --profile P  default: those of the current or last batch\n"
		"  --reprovision         give a board that is already ACTIVE a new\n"
		"                        identity (recorded in the audit log)\n"
		"Exit: 0 ACTIVE, 1 failed or refused, 3 kilnd unreachable.\n");
}

/* A slot name has no '/' or ':'; anything else is a port spec. */
static bool is_port(const char *s)
{
	return strchr(s, '/') != NULL || strchr(s, ':') != NULL;
}

int kc_cmd_provision(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"lot", required_argument, NULL, 'l'},
		{"profile", required_argument, NULL, 'p'},
		{"reprovision", no_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *lot = NULL, *profile = NULL;
	bool reprov = false;
	json_t *req, *rsp = NULL, *s;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "l:p:rh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			lot = optarg;
			break;
		case 'p':
			profile = optarg;
			break;
		case 'r':
			reprov = true;
			break;
		case 'h':
			usage(stdout);
			return KC_EXIT_OK;
		default:
			usage(stderr);
			return KC_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return KC_EXIT_USAGE;
	}
	req = json_pack("{s:s, s:s, s:b}", "cmd", "provision",
			is_port(argv[optind]) ? "port" : "slot", argv[optind],
			"reprovision", reprov);
	if (lot != NULL)
		json_object_set_new(req, "lot", json_string(lot));
	if (profile != NULL)
		json_object_set_new(req, "profile", json_string(profile));
	kc_catch_sigint();
	rc = kc_call(g, req, &rsp);
	if (rsp != NULL && g->json) {
		kc_print_json(rsp);
	} else if (rsp != NULL) {
		s = json_object_get(rsp, "session");
		if (json_is_object(s))
			printf("%s: %s  uid %s  serial %s  cert %s  %" PRId64
			       " ms%s%s%s\n",
			       argv[optind], kc_str(s, "final"),
			       kc_str(s, "uid")[0] ? kc_str(s, "uid") : "-",
			       kc_str(s, "serial")[0] ? kc_str(s, "serial") : "-",
			       kc_str(s, "cert_serial")[0] ? kc_str(s, "cert_serial") : "-",
			       kc_int(s, "total_ms"),
			       json_is_true(json_object_get(s, "resumed")) ? " (resumed)" : "",
			       kc_str(s, "reason")[0] ? ": " : "",
			       kc_str(s, "reason"));
	}
	json_decref(rsp);
	return rc;
}
