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
#include "host/lib/export.h"
#include "host/lib/registry.h"

#include "host/lib/db.h"
#include <sys/stat.h>

/* Files an offline audit command works on. */
typedef struct {
	char db[PATH_MAX];
	char ca[PATH_MAX];
	char pub[PATH_MAX];  /* verify: public (or private) station key */
	char key[PATH_MAX];  /* manifest: the station's private key */
	char station[KD_NAME_MAX];
	const char *lot;
	const char *format;
	const char *out;
	const char *verify; /* manifest --verify FILE */
	const char *more_pub[16]; /* verify: the other stations' keys */
	size_t n_more;
} files_t;

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln audit verify [--db FILE|URL --ca CHAIN.pem] [--station-pub PUB.pem]...\n"
		"                         [-c kilnd.conf]\n\n"
		"verify  check the registry offline: every station's audit hash chain,\n"
		"        every checkpoint signature (give --station-pub once per station\n"
		"        of a line; without it, against the keys the checkpoints record,\n"
		"        whose fingerprints are printed to compare), every certificate\n"
		"        against the CA chain and against its device and session rows.\n"
		"        With -c, the registry, CA chain and station key come from\n"
		"        kilnd.conf; --db/--ca/--station-pub override them.\n"
		"        Exit 0 verified, 1 a problem was found (the first one is named),\n"
		"        4 the check could not run (missing file, unreadable key).\n\n"
		"       kiln audit export --format csv|json [-o FILE] [--db FILE | -c kilnd.conf]\n\n"
		"export  devices, certificates (DER as base64) and every audit event.\n\n"
		"       kiln audit manifest --lot L [-o FILE] [--key STATION.key] [-c kilnd.conf]\n"
		"       kiln audit manifest --verify FILE --station-pub PUB.pem\n\n"
		"manifest  the lot's devices and certificates as JSON, signed with the\n"
		"        station key into FILE.sig (default FILE: LOT.manifest.json);\n"
		"        --verify checks FILE against FILE.sig.\n");
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
	     copy(f->pub, sizeof(f->pub), cfg->station_key)) ||
	    (f->key[0] == '\0' &&
	     copy(f->key, sizeof(f->key), cfg->station_key)) ||
	    (f->station[0] == '\0' &&
	     copy(f->station, sizeof(f->station), cfg->station_id)))
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

/* The station's private key (PEM). */
static EVP_PKEY *load_priv(const char *path, char *err, size_t errlen)
{
	EVP_PKEY *k;
	FILE *fp = fopen(path, "r");

	if (fp == NULL) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (k == NULL) {
		snprintf(err, errlen, "%s: not a PEM private key", path);
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
	EVP_PKEY *keys[17];
	size_t nkeys = 0, i;
	char head[65];
	int r;

	if (f->pub[0] != '\0') {
		keys[nkeys] = load_pub(f->pub);
		if (keys[nkeys] == NULL)
			return KC_EXIT_LOCAL;
		nkeys++;
	}
	for (i = 0; i < f->n_more; i++) {
		keys[nkeys] = load_pub(f->more_pub[i]);
		if (keys[nkeys] == NULL) {
			while (nkeys > 0)
				EVP_PKEY_free(keys[--nkeys]);
			return KC_EXIT_LOCAL;
		}
		nkeys++;
	}
	memset(&rep, 0, sizeof(rep));
	r = ks_audit_verify_keys(f->db, f->ca, nkeys > 0 ? keys : NULL, nkeys,
				 &rep);
	while (nkeys > 0)
		EVP_PKEY_free(keys[--nkeys]);
	if (r != KS_OK && r != KS_ERR_AUDIT) {
		if (g->json) {
			json_t *j = json_pack("{s:b, s:s, s:s}", "ok", 0, "error",
					      rep.first_error[0] ? rep.first_error
								 : ks_strerror((int)r),
					      "db", f->db);
			kc_print_json(j);
			json_decref(j);
		} else {
			kc_err("audit verify %s: cannot run the check: %s%s%s", f->db,
			       ks_strerror((int)r), rep.first_error[0] ? ": " : "",
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
		/* a line of stations: one chain each */
		printf("  %zu chain%s (one per station); checkpoint keys %s\n",
		       rep.chains_total, rep.chains_total == 1 ? "" : "s",
		       rep.keys_pinned ? "are the given station keys"
				       : "as the checkpoints record them (NOT "
					 "pinned: compare the fingerprints)");
		for (i = 0; i < rep.nchains; i++) {
			char kh[65] = "-";

			if (rep.chains[i].has_key)
				hex32(rep.chains[i].key_sha256, kh);
			printf("  station %s: %" PRIu64 " rows to seq %" PRId64
			       ", %" PRIu64 " checkpoints (last at seq %" PRId64
			       "), key sha256 %s\n",
			       rep.chains[i].station, rep.chains[i].rows,
			       rep.chains[i].head_seq, rep.chains[i].checkpoints,
			       rep.chains[i].last_checkpoint_seq, kh);
		}
	} else {
		printf("audit FAILED: %s\n  %s\n  %" PRIu64 " problem%s found\n",
		       f->db, rep.first_error, rep.errors,
		       rep.errors == 1 ? "" : "s");
	}
	return rep.ok && r == KS_OK ? KC_EXIT_OK : KC_EXIT_FAIL;
}

/* The station id recorded in a registry file (read-only look-up), for
 * opening it with ks_reg_open() when no kilnd.conf names it. */
static int station_of(const char *db, char *out, size_t outlen)
{
	ks_db_t *h = NULL;
	ks_db_stmt_t *st = NULL;
	int rc = -1;

	if (ks_db_open_readonly(db, &h) != KS_DB_EOK)
		goto out;
	if (ks_db_prepare(h, "SELECT id FROM stations ORDER BY created_ms LIMIT 1", &st) != KS_DB_EOK)
		goto out;
	if (ks_db_step(st) == KS_DB_ROW && ks_db_col_text(st, 0) != NULL)
		rc = copy(out, outlen, ks_db_col_text(st, 0));
out:
	ks_db_finish(&st);
	ks_db_close(&h);
	return rc;
}

/* Open an existing registry file (never create one by mistake). */
static int open_reg(files_t *f, ks_reg_t **reg)
{
	struct stat sb;
	int r;

	if (f->db[0] == '\0') {
		kc_err("audit: give --db FILE or -c kilnd.conf");
		return KC_EXIT_USAGE;
	}
	if (stat(f->db, &sb) != 0) {
		kc_err("audit: %s: %s", f->db, strerror(errno));
		return KC_EXIT_LOCAL;
	}
	if (f->station[0] == '\0' &&
	    station_of(f->db, f->station, sizeof(f->station)) != 0) {
		kc_err("audit: %s: no station recorded in this registry", f->db);
		return KC_EXIT_LOCAL;
	}
	r = ks_reg_open(f->db, f->station, reg);
	if (r != KS_OK) {
		kc_err("audit: cannot open %s: %s", f->db, ks_strerror((int)r));
		return KC_EXIT_LOCAL;
	}
	return KC_EXIT_OK;
}

static int export(kc_global_t *g, files_t *f)
{
	ks_reg_t *reg = NULL;
	FILE *out = stdout;
	int rc, r;

	(void)g;
	if (f->format == NULL ||
	    (strcmp(f->format, "csv") != 0 && strcmp(f->format, "json") != 0)) {
		kc_err("audit export: --format csv or --format json");
		return KC_EXIT_USAGE;
	}
	rc = open_reg(f, &reg);
	if (rc != KC_EXIT_OK)
		return rc;
	if (f->out != NULL && (out = fopen(f->out, "w")) == NULL) {
		kc_err("audit export: %s: %s", f->out, strerror(errno));
		ks_reg_close(&reg);
		return KC_EXIT_LOCAL;
	}
	r = ks_export_audit(reg, f->format, out);
	if (out != stdout && fclose(out) != 0)
		r = KS_ERR_IO;
	ks_reg_close(&reg);
	if (r != KS_OK) {
		kc_err("audit export: %s", ks_strerror((int)r));
		return KC_EXIT_FAIL;
	}
	return KC_EXIT_OK;
}

static int manifest(kc_global_t *g, files_t *f)
{
	ks_reg_t *reg = NULL;
	EVP_PKEY *k = NULL;
	char path[PATH_MAX], kerr[PATH_MAX + 128];
	int rc, r;

	if (f->verify != NULL) {
		if (f->pub[0] == '\0') {
			kc_err("audit manifest --verify: give --station-pub PUB.pem or -c kilnd.conf");
			return KC_EXIT_USAGE;
		}
		k = load_pub(f->pub);
		if (k == NULL)
			return KC_EXIT_LOCAL;
		r = ks_export_manifest_verify_file(f->verify, k);
		EVP_PKEY_free(k);
		if (g->json)
			printf("{\"ok\":%s,\"manifest\":\"%s\"}\n",
			       r == KS_OK ? "true" : "false", f->verify);
		else if (r == KS_OK)
			printf("manifest %s: signature OK\n", f->verify);
		else
			printf("manifest %s: signature INVALID (%s)\n", f->verify,
			       ks_strerror((int)r));
		return r == KS_OK ? KC_EXIT_OK
				  : r == KS_ERR_VERIFY ? KC_EXIT_FAIL : KC_EXIT_LOCAL;
	}
	if (f->lot == NULL) {
		kc_err("audit manifest: --lot L is required");
		return KC_EXIT_USAGE;
	}
	if (f->key[0] == '\0') {
		kc_err("audit manifest: give --key STATION.key or -c kilnd.conf");
		return KC_EXIT_USAGE;
	}
	if (copy(path, sizeof(path), f->out ? f->out : f->lot) ||
	    (f->out == NULL && strlen(path) + 15 > sizeof(path)))
		return KC_EXIT_USAGE;
	if (f->out == NULL)
		strcat(path, ".manifest.json");
	k = load_priv(f->key, kerr, sizeof(kerr));
	if (k == NULL) {
		kc_err("audit manifest: %s", kerr);
		return KC_EXIT_LOCAL;
	}
	rc = open_reg(f, &reg);
	if (rc == KC_EXIT_OK) {
		r = ks_export_manifest_write(reg, f->lot, k, path);
		if (r != KS_OK) {
			kc_err("audit manifest: lot %s: %s", f->lot, ks_strerror((int)r));
			rc = r == KS_ERR_NOTFOUND ? KC_EXIT_FAIL : KC_EXIT_LOCAL;
		} else if (g->json) {
			printf("{\"ok\":true,\"manifest\":\"%s\",\"signature\":\"%s.sig\"}\n",
			       path, path);
		} else {
			printf("manifest of lot %s: %s (signature %s.sig)\n", f->lot,
			       path, path);
		}
	}
	ks_reg_close(&reg);
	EVP_PKEY_free(k);
	return rc;
}

int kc_cmd_audit(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"db", required_argument, NULL, 'd'},
		{"ca", required_argument, NULL, 'a'},
		{"station-pub", required_argument, NULL, 'p'},
		{"config", required_argument, NULL, 'c'},
		{"format", required_argument, NULL, 'f'},
		{"output", required_argument, NULL, 'o'},
		{"lot", required_argument, NULL, 'l'},
		{"key", required_argument, NULL, 'k'},
		{"verify", required_argument, NULL, 'v'},
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
	while ((opt = getopt_long(argc, argv, "c:f:o:l:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			f.format = optarg;
			break;
		case 'o':
			f.out = optarg;
			break;
		case 'l':
			f.lot = optarg;
			break;
		case 'v':
			f.verify = optarg;
			break;
		case 'k':
			if (copy(f.key, sizeof(f.key), optarg))
				return KC_EXIT_USAGE;
			break;
		case 'd':
			if (copy(f.db, sizeof(f.db), optarg))
				return KC_EXIT_USAGE;
			break;
		case 'a':
			if (copy(f.ca, sizeof(f.ca), optarg))
				return KC_EXIT_USAGE;
			break;
		case 'p':
			/* repeated: the keys of the other stations of a line */
			if (f.pub[0] != '\0') {
				if (f.n_more == sizeof(f.more_pub) /
							sizeof(f.more_pub[0])) {
					kc_err("audit: at most %zu station keys",
					       f.n_more + 1);
					return KC_EXIT_USAGE;
				}
				f.more_pub[f.n_more++] = optarg;
			} else if (copy(f.pub, sizeof(f.pub), optarg)) {
				return KC_EXIT_USAGE;
			}
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
		if (f.db[0] == '\0' || f.ca[0] == '\0') {
			kc_err("audit verify: give --db and --ca (and --station-pub), or -c kilnd.conf");
			return KC_EXIT_USAGE;
		}
		return verify(g, &f);
	}
	if (strcmp(sub, "export") == 0)
		return export(g, &f);
	if (strcmp(sub, "manifest") == 0)
		return manifest(g, &f);
	kc_err("audit: unknown subcommand '%s' (verify, export, manifest)", sub);
	return KC_EXIT_USAGE;
}
