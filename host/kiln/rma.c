/*
 * kiln rma UID --reason TEXT
 *
 * Retire a provisioned board in the registry (operator role): SCRAPPED,
 * certificate VOID, audited with the operator and the reason. The part is
 * not touched: a locked one cannot be unlocked and stays refused.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "host/kiln/kiln.h"

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln rma UID --reason TEXT\n\n"
		"Record a returned or rejected board (RMA): the registry marks\n"
		"the device SCRAPPED and voids its certificate; the audit log\n"
		"records who did it and why. Nothing is written to the board: a\n"
		"locked board stays locked and the station keeps refusing it; an\n"
		"unlocked one can later be provisioned again only with an\n"
		"explicit re-provision (a fresh key slot, a new certificate).\n");
}

int kc_cmd_rma(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"reason", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *reason = NULL;
	json_t *req, *rsp = NULL;
	int opt, rc;

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
		kc_err("rma: needs UID and --reason TEXT");
		usage(stderr);
		return KC_EXIT_USAGE;
	}
	req = json_pack("{s:s, s:s, s:s}", "cmd", "rma", "uid", argv[optind],
			"reason", reason);
	rc = kc_call(g, req, &rsp);
	if (rsp != NULL && g->json) {
		kc_print_json(rsp);
	} else if (rc == KC_EXIT_OK) {
		const char *cert = kc_str(rsp, "cert_voided");

		printf("%s: SCRAPPED (RMA)%s%s\n", argv[optind],
		       cert[0] ? ", certificate voided: " : "", cert);
	}
	json_decref(rsp);
	return rc;
}
