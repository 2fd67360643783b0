/*
 * kiln ca init DIR [--org NAME] [--pkcs11 URI [--pkcs11-module PATH]]:
 *   a development PKI for trying kiln out (offline; ks_ca_init_dev() /
 *   ks_ca_init_dev_pkcs11()).
 * kiln ca check [-c kilnd.conf] [--key]:
 *   the release gate (ks_ca_release_gate()) over the configured CA and
 *   profiles, as kilnd applies it at start.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "host/kiln/kiln.h"
#include "host/kilnd/config.h"
#include "host/lib/ca.h"
#include "host/lib/p11.h"
#include "host/lib/profile.h"

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln ca init DIR [--org NAME] [--pkcs11 URI [--pkcs11-module PATH]]\n"
		"       kiln ca check [-c kilnd.conf] [--key]\n\n"
		"init: create a DEVELOPMENT CA in DIR (created 0700): a P-256 root (its key is\n"
		"discarded), a station intermediate CA that kilnd issues with, and the\n"
		"station key that signs audit checkpoints and lot manifests:\n"
		"  %s %s %s %s %s %s\n"
		"With --pkcs11 URI (pkcs11:token=T;object=LABEL?pin-source=file:PATH) the\n"
		"station CA key is generated INSIDE that token and never written out\n"
		"(no %s); use the URI as [ca] key in kilnd.conf. Refuses to overwrite\n"
		"existing files or token keys. Every certificate init makes is marked\n"
		"OU=\"%s\".\n\n"
		"check: the release gate. Refuses (exit 1) a development CA or a published\n"
		"test key when a profile is marked production = yes; warns otherwise.\n"
		"--key also loads the CA key (file or token) and proves it matches.\n",
		KS_CA_FILE_ROOT, KS_CA_FILE_CERT, KS_CA_FILE_KEY, KS_CA_FILE_CHAIN,
		KS_CA_FILE_AUDIT_KEY, KS_CA_FILE_AUDIT_PUB, KS_CA_FILE_KEY,
		KS_CA_DEV_MARKER);
}

static int cmd_init(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"org", required_argument, NULL, 'o'},
		{"pkcs11", required_argument, NULL, 'p'},
		{"pkcs11-module", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *org = "kiln development", *dir, *uri = NULL, *module = NULL;
	char err[512] = "";
	ks_err_t r;
	int opt;

	while ((opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			org = optarg;
			break;
		case 'p':
			uri = optarg;
			break;
		case 'm':
			module = optarg;
			break;
		case 'h':
			usage(stdout);
			return KC_EXIT_OK;
		default:
			usage(stderr);
			return KC_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || (module != NULL && uri == NULL)) {
		usage(stderr);
		return KC_EXIT_USAGE;
	}
	dir = argv[optind];
	if (uri != NULL)
		r = ks_ca_init_dev_pkcs11(dir, org, uri, module, err,
					  sizeof(err));
	else
		r = ks_ca_init_dev(dir, org, err, sizeof(err));
	if (r != KS_OK) {
		kc_err("ca init %s: %s", dir, err[0] ? err : ks_strerror((int)r));
		return r == KS_ERR_DUPLICATE || r == KS_ERR_ARG ? KC_EXIT_FAIL
								 : KC_EXIT_LOCAL;
	}
	if (g->json) {
		json_t *j = json_pack("{s:b, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
				      "ok", 1, "dir", dir, "root", KS_CA_FILE_ROOT,
				      "cert", KS_CA_FILE_CERT, "key",
				      uri != NULL ? uri : KS_CA_FILE_KEY,
				      "chain", KS_CA_FILE_CHAIN, "station_key",
				      KS_CA_FILE_AUDIT_KEY, "station_pub",
				      KS_CA_FILE_AUDIT_PUB);
		kc_print_json(j);
		json_decref(j);
		return KC_EXIT_OK;
	}
	printf("development CA created in %s (organisation \"%s\")%s\n\n"
	       "kilnd.conf:\n"
	       "  [station]\n  station_key = %s/%s\n\n"
	       "  [ca]\n  cert = %s/%s\n",
	       dir, org, uri != NULL ? ", station CA key in the token" : "",
	       dir, KS_CA_FILE_AUDIT_KEY, dir, KS_CA_FILE_CERT);
	if (uri != NULL) {
		printf("  key = %s\n", uri);
		if (module != NULL)
			printf("  pkcs11_module = %s\n", module);
	} else {
		printf("  key = %s/%s\n", dir, KS_CA_FILE_KEY);
	}
	printf("  chain = %s/%s\n\n"
	       "verify the audit log with: kiln audit verify --db REGISTRY --ca %s/%s --station-pub %s/%s\n",
	       dir, KS_CA_FILE_CHAIN, dir, KS_CA_FILE_CHAIN, dir,
	       KS_CA_FILE_AUDIT_PUB);
	return KC_EXIT_OK;
}

/* Profiles of the configuration, each key through ks_profile_set(). */
static int build_profiles(const kd_config_t *c, ks_profile_t *out)
{
	char msg[512];
	int bad = 0;

	for (size_t i = 0; i < c->nprofiles; i++) {
		const kd_profile_cfg_t *pc = &c->profiles[i];

		msg[0] = '\0';
		if (ks_profile_init(&out[i], pc->name, msg, sizeof(msg)) != KS_OK) {
			kc_err("%s:%u: [profile %s]: %s", c->path, pc->line,
			       pc->name, msg);
			bad = 1;
			continue;
		}
		for (size_t k = 0; k < pc->nkv; k++) {
			msg[0] = '\0';
			if (ks_profile_set(&out[i], pc->kv[k].key,
					   pc->kv[k].value, msg,
					   sizeof(msg)) != KS_OK) {
				kc_err("%s:%u: [profile %s] %s: %s", c->path,
				       pc->kv[k].line, pc->name, pc->kv[k].key,
				       msg);
				bad = 1;
			}
		}
	}
	return bad;
}

/* The chain kilnd would use: the CA certificate file, then the chain. */
static int load_chain(const kd_config_t *c, STACK_OF(X509) **out)
{
	STACK_OF(X509) *a = NULL, *b = NULL;

	*out = NULL;
	if (ks_ca_chain_load(c->ca_cert, &a) != KS_OK) {
		kc_err("%s:%u: [ca] cert = '%s': cannot read certificates",
		       c->path, c->ca_cert_line, c->ca_cert);
		return KC_EXIT_LOCAL;
	}
	if (c->ca_chain[0] != '\0') {
		if (ks_ca_chain_load(c->ca_chain, &b) != KS_OK) {
			kc_err("%s:%u: [ca] chain = '%s': cannot read certificates",
			       c->path, c->ca_chain_line, c->ca_chain);
			sk_X509_pop_free(a, X509_free);
			return KC_EXIT_LOCAL;
		}
		while (sk_X509_num(b) > 0) {
			X509 *x = sk_X509_shift(b);

			if (sk_X509_push(a, x) <= 0)
				X509_free(x);
		}
		sk_X509_free(b);
	}
	*out = a;
	return KC_EXIT_OK;
}

static int cmd_check(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"key", no_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *conf = g->config;
	kd_config_t *cfg = NULL;
	ks_profile_t *profiles = NULL;
	STACK_OF(X509) *chain = NULL;
	ks_ca_t *ca = NULL;
	char *err = NULL, msg[2048];
	int opt, warn = 0, check_key = 0, rc = KC_EXIT_LOCAL;
	ks_err_t r;

	while ((opt = getopt_long(argc, argv, "c:kh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			conf = optarg;
			break;
		case 'k':
			check_key = 1;
			break;
		case 'h':
			usage(stdout);
			return KC_EXIT_OK;
		default:
			usage(stderr);
			return KC_EXIT_USAGE;
		}
	}
	if (conf == NULL || optind != argc) {
		usage(stderr);
		return KC_EXIT_USAGE;
	}
	err = calloc(1, 8192);
	if (err == NULL)
		goto out;
	if (kd_config_load(conf, &cfg, err, 8192) != KS_OK) {
		fputs(err, stderr);
		goto out;
	}
	profiles = calloc(cfg->nprofiles ? cfg->nprofiles : 1,
			  sizeof(*profiles));
	if (profiles == NULL)
		goto out;
	if (build_profiles(cfg, profiles) != 0) {
		rc = KC_EXIT_FAIL;
		goto out;
	}
	rc = load_chain(cfg, &chain);
	if (rc != KC_EXIT_OK)
		goto out;
	if (check_key) {
		r = ks_ca_load_ex(cfg->ca_cert, cfg->ca_key,
				  cfg->ca_chain[0] ? cfg->ca_chain : NULL,
				  cfg->ca_pkcs11_module[0] ? cfg->ca_pkcs11_module
							   : NULL,
				  &ca);
		if (r != KS_OK) {
			kc_err("%s:%u: [ca] key = '%s': %s", cfg->path,
			       cfg->ca_key_line, cfg->ca_key,
			       ks_strerror((int)r));
			rc = KC_EXIT_FAIL;
			goto out;
		}
	}
	r = ks_ca_release_gate(chain, profiles, cfg->nprofiles, &warn, msg,
			       sizeof(msg));
	if (r == KS_ERR_POLICY) {
		kc_err("%s: release gate: REFUSED\n%s", cfg->path, msg);
		rc = KC_EXIT_FAIL;
		goto out;
	}
	if (r != KS_OK) {
		kc_err("release gate: %s", ks_strerror((int)r));
		goto out;
	}
	if (g->json) {
		json_t *j = json_pack("{s:b, s:b, s:s, s:b}", "ok", 1,
				      "development", warn, "message", msg,
				      "key_in_token",
				      ca != NULL && ks_ca_key_in_token(ca));

		kc_print_json(j);
		json_decref(j);
	} else if (warn) {
		fprintf(stderr, "kiln: warning: %s\n", msg);
		printf("%s: release gate: allowed with a warning (no profile is marked production)\n",
		       cfg->path);
	} else {
		printf("%s: release gate: OK (%zu profile%s%s)\n", cfg->path,
		       cfg->nprofiles, cfg->nprofiles == 1 ? "" : "s",
		       ca == NULL ? ""
		       : ks_ca_key_in_token(ca) ? ", CA key in a PKCS#11 token"
						: ", CA key from a file");
	}
	rc = KC_EXIT_OK;
out:
	ks_ca_free(&ca);
	sk_X509_pop_free(chain, X509_free);
	free(profiles);
	kd_config_free(&cfg);
	free(err);
	return rc;
}

int kc_cmd_ca(kc_global_t *g, int argc, char **argv)
{
	static const kc_sub_t subs[] = {
		{"init", cmd_init}, {"check", cmd_check},
	};

	return kc_subcommand(g, argc, argv, "ca", subs,
			     sizeof(subs) / sizeof(subs[0]), usage);
}
