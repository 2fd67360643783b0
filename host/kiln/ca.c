/*
 * kiln ca init DIR [--org NAME]: a development PKI for trying kiln out
 * (offline; see ks_ca_init_dev()).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "host/kiln/kiln.h"
#include "host/lib/ca.h"

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln ca init DIR [--org NAME]\n\n"
		"Create a DEVELOPMENT CA in DIR (created 0700): a P-256 root (its key is\n"
		"discarded), a station intermediate CA that kilnd issues with, and the\n"
		"station key that signs audit checkpoints and lot manifests:\n"
		"  %s %s %s %s %s %s\n"
		"Refuses to overwrite existing files. For production, point the [ca]\n"
		"section of kilnd.conf at your own issuing CA instead.\n",
		KS_CA_FILE_ROOT, KS_CA_FILE_CERT, KS_CA_FILE_KEY, KS_CA_FILE_CHAIN,
		KS_CA_FILE_AUDIT_KEY, KS_CA_FILE_AUDIT_PUB);
}

int kc_cmd_ca(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"org", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *org = "kiln development", *dir;
	char err[512] = "";
	ks_err_t r;
	int opt;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? KC_EXIT_USAGE : KC_EXIT_OK;
	}
	if (strcmp(argv[1], "init") != 0) {
		kc_err("ca: unknown subcommand '%s' (init)", argv[1]);
		return KC_EXIT_USAGE;
	}
	argc--;
	argv++;
	while ((opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			org = optarg;
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
	dir = argv[optind];
	r = ks_ca_init_dev(dir, org, err, sizeof(err));
	if (r != KS_OK) {
		kc_err("ca init %s: %s", dir, err[0] ? err : ks_strerror((int)r));
		return r == KS_ERR_DUPLICATE || r == KS_ERR_ARG ? KC_EXIT_FAIL
								 : KC_EXIT_LOCAL;
	}
	if (g->json) {
		json_t *j = json_pack("{s:b, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
				      "ok", 1, "dir", dir, "root", KS_CA_FILE_ROOT,
				      "cert", KS_CA_FILE_CERT, "key", KS_CA_FILE_KEY,
				      "chain", KS_CA_FILE_CHAIN, "station_key",
				      KS_CA_FILE_AUDIT_KEY, "station_pub",
				      KS_CA_FILE_AUDIT_PUB);
		kc_print_json(j);
		json_decref(j);
		return KC_EXIT_OK;
	}
	printf("development CA created in %s (organisation \"%s\")\n\n"
	       "kilnd.conf:\n"
	       "  [station]\n  station_key = %s/%s\n\n"
	       "  [ca]\n  cert = %s/%s\n  key = %s/%s\n  chain = %s/%s\n\n"
	       "verify the audit log with: kiln audit verify --db REGISTRY --ca %s/%s --station-pub %s/%s\n",
	       dir, org, dir, KS_CA_FILE_AUDIT_KEY, dir, KS_CA_FILE_CERT, dir,
	       KS_CA_FILE_KEY, dir, KS_CA_FILE_CHAIN, dir, KS_CA_FILE_CHAIN,
	       dir, KS_CA_FILE_AUDIT_PUB);
	return KC_EXIT_OK;
}
