/*
 * kiln audit verify [--db FILE --ca CHAIN.pem --station-pub PUB.pem | -c kilnd.conf]
 *
 * Offline: reads the registry file directly (read-only), so an auditor
 * can check a copy of it without a running station.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "host/kilnd/config.h"
#include "host/kiln/kiln.h"
#include "host/lib/audit.h"

/* Files an offline audit command works on. */
typedef struct {
	char db[PATH_MAX];
	char ca[PATH_MAX];
	char pub[PATH_MAX];
	const char *lot;
	const char *format;
	const char *out;
} files_t;

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln audit verify [--db FILE --ca CHAIN.pem --station-pub PUB.pem]\n"
		"                         [-c kilnd.conf]\n\n"
		"verify  check the registry file offline: the audit hash chain, every\n"
		"        checkpoint signature (station public key), every certificate\n"
		"        against the CA chain and against its device and session rows.\n"
		"        With -c, the registry, CA chain and station key come from\n"
		"        kilnd.conf; --db/--ca/--station-pub override them.\n"
		"        Exit 0 verified, 1 a problem was found (the first one is named),\n"
		"        4 the check could not run (missing file, unreadable key).\n");
}

static int copy(char *dst, size_t dstlen, const char *src)
{
	int n = snprintf(dst, dstlen, "%s", src);

	return n < 0 || (size_t)n >= dstlen ? -1 : 0;
}

/* Fill unset file names from kilnd.conf. */
static int from_config(const char *conf, files_t *f)
{
	kd_config_t *cfg = NULL;
	char *err = calloc(1, 8192);
	int rc = KC_EXIT_LOCAL;

	if (err == NULL)
		return KC_EXIT_LOCAL;
	if (kd_config_load(conf, &cfg, err, 8192) != KS_OK) {
		fputs(err, stderr);
		goto out;
	}
	if ((f->db[0] == '\0' && copy(f->db, sizeof(f->db), cfg->registry)) ||
	    (f->ca[0] == '\0' &&
	     copy(f->ca, sizeof(f->ca),
		  cfg->ca_chain[0] ? cfg->ca_chain : cfg->ca_cert)) ||
	    (f->pub[0] == '\0' &&
	     copy(f->pub, sizeof(f->pub), cfg->station_key)))
		goto out;
	rc = KC_EXIT_OK;
out:
	kd_config_free(&cfg);
	free(err);
	return rc;
}

/* A public key PEM, or the public half of a private key PEM. */
static EVP_PKEY *load_pub(const char *path)
{
	EVP_PKEY *k = NULL;
	FILE *fp = fopen(path, "r");

	if (fp == NULL) {
		kc_err("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	k = PEM_read_PUBKEY(fp, NULL, NULL, NULL);
	if (k == NULL) {
		rewind(fp);
		ERR_clear_error();
		k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	}
	fclose(fp);
	if (k == NULL) {
		kc_err("%s: no PEM public or private key", path);
		ERR_clear_error();
	}
	return k;
}

static void hex32(const uint8_t *b, char *out)
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static int verify(kc_global_t *g, const files_t *f)
{
	ks_audit_report_t rep;
	EVP_PKEY *pub;
	char head[65];
	int r;

	pub = load_pub(f->pub);
	if (pub == NULL)
		return KC_EXIT_LOCAL;
	memset(&rep, 0, sizeof(rep));
	r = ks_audit_verify(f->db, f->ca, pub, &rep);
	EVP_PKEY_free(pub);
	if (r != KS_OK && r != KS_ERR_AUDIT) {
		if (g->json) {
			json_t *j = json_pack("{s:b, s:s, s:s}", "ok", 0, "error",
					      rep.first_error[0] ? rep.first_error
								 : ks_strerror(r),
					      "db", f->db);
			kc_print_json(j);
			json_decref(j);
		} else {
			kc_err("audit verify %s: cannot run the check: %s%s%s", f->db,
			       ks_strerror(r), rep.first_error[0] ? ": " : "",
			       rep.first_error);
		}
		return KC_EXIT_LOCAL;
	}
	hex32(rep.head_hash, head);
	if (g->json) {
		json_t *j = json_pack(
			"{s:b, s:s, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:s, s:I}",
			"ok", rep.ok && r == KS_OK, "db", f->db, "rows",
			(json_int_t)rep.rows, "checkpoints",
			(json_int_t)rep.checkpoints, "last_checkpoint_seq",
			(json_int_t)rep.last_checkpoint_seq, "head_seq",
			(json_int_t)rep.head_seq, "head_hash", head,
			"unsigned_tail", (json_int_t)rep.unsigned_tail,
			"certificates", (json_int_t)rep.certificates, "devices",
			(json_int_t)rep.devices, "first_error", rep.first_error,
			"errors", (json_int_t)rep.errors);
		kc_print_json(j);
		json_decref(j);
	} else if (rep.ok && r == KS_OK) {
		printf("audit OK: %s\n"
		       "  %" PRIu64 " audit rows, chain intact; head seq %" PRId64
		       " hash %s\n"
		       "  %" PRIu64 " checkpoint signatures verified (last at seq %" PRId64
		       "; %" PRIu64 " rows after it)\n"
		       "  %" PRIu64 " certificates verify against the CA chain; %" PRIu64
		       " devices consistent\n",
		       f->db, rep.rows, rep.head_seq, head, rep.checkpoints,
		       rep.last_checkpoint_seq, rep.unsigned_tail,
		       rep.certificates, rep.devices);
	} else {
		printf("audit FAILED: %s\n  %s\n  %" PRIu64 " problem%s found\n",
		       f->db, rep.first_error, rep.errors,
		       rep.errors == 1 ? "" : "s");
	}
	return rep.ok && r == KS_OK ? KC_EXIT_OK : KC_EXIT_FAIL;
}

int kc_cmd_audit(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"db", required_argument, NULL, 'd'},
		{"ca", required_argument, NULL, 'a'},
		{"station-pub", required_argument, NULL, 'p'},
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	files_t f;
	const char *conf = g->config, *sub;
	int opt, rc;

	memset(&f, 0, sizeof(f));
	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? KC_EXIT_USAGE : KC_EXIT_OK;
	}
	sub = argv[1];
	argc--;
	argv++;
	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			if (copy(f.db, sizeof(f.db), optarg))
				return KC_EXIT_USAGE;
			break;
		case 'a':
			if (copy(f.ca, sizeof(f.ca), optarg))
				return KC_EXIT_USAGE;
			break;
		case 'p':
			if (copy(f.pub, sizeof(f.pub), optarg))
				return KC_EXIT_USAGE;
			break;
		case 'c':
			conf = optarg;
			break;
		case 'h':
			usage(stdout);
			return KC_EXIT_OK;
		default:
			usage(stderr);
			return KC_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return KC_EXIT_USAGE;
	}
	if (conf != NULL) {
		rc = from_config(conf, &f);
		if (rc != KC_EXIT_OK)
			return rc;
	}
	if (strcmp(sub, "verify") == 0) {
		if (f.db[0] == '\0' || f.ca[0] == '\0' || f.pub[0] == '\0') {
			kc_err("audit verify: give --db, --ca and --station-pub, or -c kilnd.conf");
			return KC_EXIT_USAGE;
		}
		return verify(g, &f);
	}
	kc_err("audit: unknown subcommand '%s' (verify)", sub);
	return KC_EXIT_USAGE;
}
