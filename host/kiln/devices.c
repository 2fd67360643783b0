/*
 * kiln devices list [--lot L] [--state S] [--limit N]
 * kiln devices show UID|SERIAL
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "host/kiln/kiln.h"

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln devices list [--lot L] [--state S] [--limit N]\n"
		"       kiln devices show UID|SERIAL\n\n"
		"list  devices in the registry (newest first), optionally of one lot\n"
		"      and/or in one state (RESERVED KEYED ISSUED WRITTEN VERIFIED\n"
		"      LOCKED ACTIVE FAILED VOID SCRAPPED)\n"
		"show  one device: its identity and every session with step timings\n");
}

static int list(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"lot", required_argument, NULL, 'l'},
		{"state", required_argument, NULL, 's'},
		{"limit", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	json_t *req = json_pack("{s:s}", "cmd", "devices.list"), *rsp = NULL;
	json_t *devs, *v;
	uint64_t limit;
	size_t i;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "l:s:n:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			json_object_set_new(req, "lot", json_string(optarg));
			break;
		case 's':
			json_object_set_new(req, "state", json_string(optarg));
			break;
		case 'n':
			if (kc_parse_u64(optarg, &limit) != 0) {
				kc_err("devices list: bad --limit '%s'", optarg);
				json_decref(req);
				return KC_EXIT_USAGE;
			}
			json_object_set_new(req, "limit", json_integer((json_int_t)limit));
			break;
		case 'h':
			usage(stdout);
			json_decref(req);
			return KC_EXIT_OK;
		default:
			usage(stderr);
			json_decref(req);
			return KC_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		json_decref(req);
		return KC_EXIT_USAGE;
	}
	rc = kc_call(g, req, &rsp);
	if (rsp != NULL && g->json) {
		kc_print_json(rsp);
	} else if (rc == KC_EXIT_OK) {
		devs = json_object_get(rsp, "devices");
		printf("%-26s %-18s %-9s %-7s %-12s %-33s %s\n", "UID", "SERIAL",
		       "STATE", "ORIGIN", "LOT", "CERT SERIAL", "UPDATED");
		json_array_foreach(devs, i, v) {
			char t[32];

			kc_fmt_time(kc_int(v, "updated_ms"), t, sizeof(t));
			printf("%-26s %-18s %-9s %-7s %-12s %-33s %s\n",
			       kc_str(v, "uid"), kc_str(v, "serial"),
			       kc_str(v, "state"), kc_str(v, "key_origin"),
			       kc_str(v, "lot"),
			       kc_str(v, "cert_serial")[0] ? kc_str(v, "cert_serial") : "-",
			       t);
		}
		printf("%zu device%s\n", json_array_size(devs),
		       json_array_size(devs) == 1 ? "" : "s");
	}
	json_decref(rsp);
	return rc;
}

static int show(kc_global_t *g, const char *id)
{
	json_t *rsp = NULL, *v, *ss, *s, *steps, *st;
	size_t i, j;
	int rc;

	rc = kc_call(g, json_pack("{s:s, s:s}", "cmd", "devices.show", "id", id),
		     &rsp);
	if (rsp != NULL && g->json) {
		kc_print_json(rsp);
		json_decref(rsp);
		return rc;
	}
	if (rc != KC_EXIT_OK) {
		json_decref(rsp);
		return rc;
	}
	v = json_object_get(rsp, "device");
	printf("uid              %s\n", kc_str(v, "uid"));
	printf("serial           %s\n", kc_str(v, "serial"));
	printf("state            %s\n", kc_str(v, "state"));
	printf("key origin       %s\n", kc_str(v, "key_origin"));
	printf("lot              %s\n", kc_str(v, "lot"));
	printf("station / slot   %s / %" PRId64 "\n", kc_str(v, "station"),
	       kc_int(v, "slot"));
	printf("certificate      %s\n",
	       kc_str(v, "cert_serial")[0] ? kc_str(v, "cert_serial") : "-");
	printf("public key hash  %s\n", kc_str(v, "pubkey_sha256"));
	printf("identity digest  %s\n", kc_str(v, "identity_digest"));
	printf("boot key hash    %s\n",
	       kc_str(v, "boot_key_hash")[0] ? kc_str(v, "boot_key_hash") : "-");
	if (json_is_integer(json_object_get(v, "lock_bits")))
		printf("lock bits        0x%02" PRIx64 "\n", kc_int(v, "lock_bits"));
	ss = json_object_get(rsp, "sessions");
	printf("sessions         %zu\n", json_array_size(ss));
	json_array_foreach(ss, i, s) {
		char t[32];

		kc_fmt_time(kc_int(s, "started_ms"), t, sizeof(t));
		printf("  #%" PRId64 " %s  %s  serial %s  lot %s  %s%s%s%s\n",
		       kc_int(s, "id"), t, kc_str(s, "state"),
		       kc_str(s, "serial"), kc_str(s, "lot"),
		       kc_str(s, "key_origin"),
		       json_is_true(json_object_get(s, "reprovision")) ? "  re-provision" : "",
		       kc_str(s, "failure_reason")[0] ? "  reason: " : "",
		       kc_str(s, "failure_reason"));
		steps = json_object_get(s, "steps");
		json_array_foreach(steps, j, st)
			printf("      %-9s +%" PRId64 " ms\n", kc_str(st, "step"),
			       kc_int(st, "duration_ms"));
	}
	json_decref(rsp);
	return rc;
}

int kc_cmd_devices(kc_global_t *g, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? KC_EXIT_USAGE : KC_EXIT_OK;
	}
	if (strcmp(argv[1], "list") == 0)
		return list(g, argc - 1, argv + 1);
	if (strcmp(argv[1], "show") == 0) {
		if (argc != 3) {
			usage(stderr);
			return KC_EXIT_USAGE;
		}
		return show(g, argv[2]);
	}
	kc_err("devices: unknown subcommand '%s' (list, show)", argv[1]);
	return KC_EXIT_USAGE;
}
