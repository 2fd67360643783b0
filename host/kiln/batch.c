/*
 * kiln batch start --lot L --profile P [--count N] [--quota Q] [--wait]
 * kiln batch stop
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "host/kiln/kiln.h"

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln batch start --lot L --profile P [--count N] [--quota Q] [--wait]\n"
		"       kiln batch stop\n\n"
		"start  every slot provisions each board that appears on its port into\n"
		"       lot L (created if needed) with profile P, until N boards are\n"
		"       ACTIVE (--count; default: until 'kiln batch stop').\n"
		"       --quota Q   cap a new lot at Q certificates\n"
		"       --wait      show live progress until the batch ends; exit 0\n"
		"                   when N boards are ACTIVE, 1 if it ended short\n"
		"stop   stop taking new boards; sessions in flight finish.\n");
}

static int batch_start(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"lot", required_argument, NULL, 'l'},
		{"profile", required_argument, NULL, 'p'},
		{"count", required_argument, NULL, 'n'},
		{"quota", required_argument, NULL, 'q'},
		{"wait", no_argument, NULL, 'w'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *lot = NULL, *profile = NULL;
	uint64_t count = 0, quota = 0;
	bool wait = false;
	json_t *req, *rsp = NULL;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "l:p:n:q:wh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			lot = optarg;
			break;
		case 'p':
			profile = optarg;
			break;
		case 'n':
			if (kc_parse_u64(optarg, &count) != 0 || count == 0) {
				kc_err("batch start: --count needs a number >= 1, not '%s'", optarg);
				return KC_EXIT_USAGE;
			}
			break;
		case 'q':
			if (kc_parse_u64(optarg, &quota) != 0 || quota == 0) {
				kc_err("batch start: --quota needs a number >= 1, not '%s'", optarg);
				return KC_EXIT_USAGE;
			}
			break;
		case 'w':
			wait = true;
			break;
		case 'h':
			usage(stdout);
			return KC_EXIT_OK;
		default:
			usage(stderr);
			return KC_EXIT_USAGE;
		}
	}
	if (lot == NULL || profile == NULL || optind != argc) {
		kc_err("batch start: --lot and --profile are required");
		return KC_EXIT_USAGE;
	}
	req = json_pack("{s:s, s:s, s:s, s:I}", "cmd", "batch.start", "lot",
			lot, "profile", profile, "count", (json_int_t)count);
	if (quota > 0)
		json_object_set_new(req, "quota", json_integer((json_int_t)quota));
	rc = kc_call(g, req, &rsp);
	if (rsp != NULL && g->json && !wait)
		kc_print_json(rsp);
	json_decref(rsp);
	if (rc != KC_EXIT_OK)
		return rc;
	if (!g->json)
		printf("batch started: lot %s, profile %s, %s%llu board%s\n", lot,
		       profile, count ? "" : "until stopped; ",
		       (unsigned long long)count, count == 1 ? "" : "s");
	if (!wait)
		return KC_EXIT_OK;
	return kc_watch(g, true, true);
}

int kc_cmd_batch(kc_global_t *g, int argc, char **argv)
{
	json_t *rsp = NULL;
	int rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? KC_EXIT_USAGE : KC_EXIT_OK;
	}
	if (strcmp(argv[1], "start") == 0)
		return batch_start(g, argc - 1, argv + 1);
	if (strcmp(argv[1], "stop") == 0) {
		if (argc != 2) {
			usage(stderr);
			return KC_EXIT_USAGE;
		}
		rc = kc_call(g, json_pack("{s:s}", "cmd", "batch.stop"), &rsp);
		if (rsp != NULL && g->json)
			kc_print_json(rsp);
		else if (rc == KC_EXIT_OK)
			printf("batch stopped\n");
		json_decref(rsp);
		return rc;
	}
	kc_err("batch: unknown subcommand '%s' (start, stop)", argv[1]);
	return KC_EXIT_USAGE;
}
