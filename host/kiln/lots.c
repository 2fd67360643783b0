/*
 * kiln lots: every lot with its profile, quota and session counts.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "host/kiln/kiln.h"

int kc_cmd_lots(kc_global_t *g, int argc, char **argv)
{
	json_t *rsp = NULL, *lots, *l;
	size_t i;
	int rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
			  strcmp(argv[1], "-h") == 0)) {
		printf("Usage: kiln lots\n\nEvery lot: profile, quota, sessions ACTIVE / FAILED / VOID /\n"
		       "SCRAPPED / in flight, when it was created and whether it is closed.\n");
		return KC_EXIT_OK;
	}
	if (argc != 1) {
		kc_err("lots: no arguments expected");
		return KC_EXIT_USAGE;
	}
	rc = kc_call(g, json_pack("{s:s}", "cmd", "lots"), &rsp);
	if (rsp != NULL && g->json) {
		kc_print_json(rsp);
	} else if (rc == KC_EXIT_OK) {
		lots = json_object_get(rsp, "lots");
		printf("%-16s %-12s %7s %7s %7s %5s %8s %6s  %-19s %s\n", "LOT",
		       "PROFILE", "QUOTA", "ACTIVE", "FAILED", "VOID",
		       "SCRAPPED", "FLIGHT", "CREATED", "CLOSED");
		json_array_foreach(lots, i, l) {
			char q[24], t[32], c[32];

			if (kc_int(l, "quota") < 0)
				snprintf(q, sizeof(q), "-");
			else
				snprintf(q, sizeof(q), "%" PRId64, kc_int(l, "quota"));
			kc_fmt_time(kc_int(l, "created_ms"), t, sizeof(t));
			kc_fmt_time(kc_int(l, "closed_ms"), c, sizeof(c));
			printf("%-16s %-12s %7s %7" PRId64 " %7" PRId64 " %5" PRId64
			       " %8" PRId64 " %6" PRId64 "  %-19s %s\n",
			       kc_str(l, "name"), kc_str(l, "profile"), q,
			       kc_int(l, "active"), kc_int(l, "failed"),
			       kc_int(l, "voided"), kc_int(l, "scrapped"),
			       kc_int(l, "in_flight"), t, c);
		}
	}
	json_decref(rsp);
	return rc;
}
