/*
 * kiln: command-line client of the kiln station (kilnd), plus offline
 * verbs that work on files directly (audit verify/export, ca init).
 *
 *   kiln [-s SOCKET] [-c kilnd.conf] [--json] <command> [args...]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/kiln/kiln.h"

static int cmd_help(kc_global_t *g, int argc, char **argv);
static int cmd_version(kc_global_t *g, int argc, char **argv);

static const struct {
	const char *name;
	kc_fn fn;
	const char *help;
} commands[] = {
	{"status", kc_cmd_status, "show slots, the batch and totals (--watch: live)"},
	{"provision", kc_cmd_provision, "provision one board now on a slot or port"},
	{"batch", kc_cmd_batch, "start or stop a production batch (start --wait: live progress)"},
	{"devices", kc_cmd_devices, "list devices or show one (UID or serial)"},
	{"lots", kc_cmd_lots, "list lots with their counts"},
	{"audit", kc_cmd_audit, "verify the registry and its audit chain, export it, lot manifests"},
	{"rma", kc_cmd_rma, "retire a returned/rejected board: SCRAPPED, certificate voided (audited)"},
	{"session", kc_cmd_session, "release the unfinished session of a station that died (audited)"},
	{"ca", kc_cmd_ca, "development CA (in a file or a PKCS#11 token), release gate check (offline)"},
	{"image", kc_cmd_image, "sign, verify and show firmware images for the secure boot (offline)"},
	{"registry", kc_cmd_registry, "move a station's SQLite registry into PostgreSQL (migrate, offline)"},
	{"help", cmd_help, "show this help, or a command's help"},
	{"version", cmd_version, "print the version"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *fp, const char *prog)
{
	fprintf(fp,
		"Usage: %s [-s SOCKET] [-c kilnd.conf] [--json] <command> [<args>]\n\n"
		"Commands:\n",
		prog);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(fp,
		"\nOptions:\n"
		"  -s, --socket PATH   kilnd control socket (default: $KILN_SOCKET,\n"
		"                      the config's control_socket, or %s)\n"
		"  -c, --config FILE   kilnd.conf: socket, registry and keys from it\n"
		"      --json          machine-readable output\n"
		"  -h, --help          this help\n"
		"      --version       print the version\n"
		"\n"
		"Run '%s <command> --help' for a command's options. Exit codes: 0 ok,\n"
		"1 failed, 2 usage, 3 kilnd unreachable, 4 local file/database error.\n",
		KC_DEFAULT_SOCKET, prog);
}

static int cmd_help(kc_global_t *g, int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
			  strcmp(argv[1], "-h") == 0)) {
		printf("Usage: %s help [COMMAND]\n"
		       "Show the list of commands, or COMMAND's options.\n",
		       g->prog);
		return KC_EXIT_OK;
	}
	if (argc >= 2) {
		for (size_t i = 0; i < NCOMMANDS; i++)
			if (strcmp(argv[1], commands[i].name) == 0 &&
			    commands[i].fn != cmd_help) {
				char *args[] = {argv[1], "--help", NULL};

				return commands[i].fn(g, 2, args);
			}
		kc_err("help: unknown command '%s'", argv[1]);
		return KC_EXIT_USAGE;
	}
	usage(stdout, g->prog);
	return KC_EXIT_OK;
}

static int cmd_version(kc_global_t *g, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (g->json)
		printf("{\"kiln\":\"%s\"}\n", KILN_VERSION);
	else
		printf("kiln %s\n", KILN_VERSION);
	return KC_EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"socket", required_argument, NULL, 's'},
		{"config", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	kc_global_t g = {.prog = "kiln"};
	int opt;

	/* "+": stop at the command; its options are its own */
	while ((opt = getopt_long(argc, argv, "+s:c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			g.socket = optarg;
			break;
		case 'c':
			g.config = optarg;
			break;
		case 'j':
			g.json = true;
			break;
		case 'h':
			usage(stdout, g.prog);
			return KC_EXIT_OK;
		case 'V':
			return cmd_version(&g, 0, NULL);
		default:
			usage(stderr, g.prog);
			return KC_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr, g.prog);
		return KC_EXIT_USAGE;
	}
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;

			optind = 0; /* reset getopt for the command */
			return commands[i].fn(&g, sub_argc, sub_argv);
		}
	}
	kc_err("unknown command '%s' (try '%s help')", argv[optind], g.prog);
	return KC_EXIT_USAGE;
}
