#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "host/lib/ca.h"
#include "tests/integration/station_fixture.h"

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "station fixture: %s%s%s\n", what,
		detail != NULL ? ": " : "", detail != NULL ? detail : "");
	exit(1);
}

static void profile(ks_profile_t *p, const tf_profile_spec_t *s,
		    const char *subject)
{
	char err[256];

	if (ks_profile_init(p, s->name, err, sizeof(err)) != KS_OK ||
	    ks_profile_set(p, "subject", subject, err, sizeof(err)) != KS_OK ||
	    ks_profile_set(p, "validity_days", "365", err, sizeof(err)) !=
		    KS_OK ||
	    ks_profile_set(p, "key_origin", s->origin, err, sizeof(err)) !=
		    KS_OK ||
	    ks_profile_set(p, "lock", s->lock, err, sizeof(err)) != KS_OK)
		die("profile", err);
}

void tf_station_setup(tf_station_t *st, const char *tag, const char *org,
		      const char *station_id, const tf_profile_spec_t *specs,
		      size_t n)
{
	char path[256], key[256], chain[256], err[256], subject[128];
	ks_engine_config_t cfg;
	ks_ca_t *ca = NULL;
	FILE *f;

	memset(st, 0, sizeof(*st));
	if (n > TF_MAX_PROFILES)
		die("too many profiles", NULL);
	snprintf(st->dir, sizeof(st->dir), "/tmp/kiln-%s-XXXXXX", tag);
	if (mkdtemp(st->dir) == NULL)
		die("mkdtemp", st->dir);
	if (ks_ca_init_dev(st->dir, org, err, sizeof(err)) != KS_OK)
		die("ca init", err);
	snprintf(path, sizeof(path), "%s/%s", st->dir, KS_CA_FILE_CERT);
	snprintf(key, sizeof(key), "%s/%s", st->dir, KS_CA_FILE_KEY);
	snprintf(chain, sizeof(chain), "%s/%s", st->dir, KS_CA_FILE_CHAIN);
	if (ks_ca_load(path, key, chain, &ca) != KS_OK ||
	    ks_signer_new(&ca, &st->signer) != KS_OK)
		die("ca load", path);
	snprintf(subject, sizeof(subject), "CN=${serial},O=%s", org);
	for (size_t i = 0; i < n; i++) {
		profile(&st->profiles[i], &specs[i], subject);
		if (ks_signer_add_profile(st->signer, &st->profiles[i]) !=
		    KS_OK)
			die("add profile", specs[i].name);
		st->plist[i] = &st->profiles[i];
	}
	st->nprofiles = n;
	snprintf(path, sizeof(path), "%s/%s", st->dir, KS_CA_FILE_AUDIT_KEY);
	f = fopen(path, "r");
	if (f == NULL ||
	    (st->station_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) ==
		    NULL)
		die("station key", path);
	fclose(f);
	snprintf(path, sizeof(path), "%s/registry.db", st->dir);
	if (ks_reg_open(path, station_id, &st->reg) != KS_OK ||
	    ks_reg_set_station_key(st->reg, st->station_key) != KS_OK)
		die("registry", path);
	for (size_t i = 0; i < n; i++)
		if (ks_reg_lot_create(st->reg, specs[i].lot, specs[i].name,
				      specs[i].serial_prefix, -1,
				      "tester") != KS_OK)
			die("lot", specs[i].lot);
	memset(&cfg, 0, sizeof(cfg));
	cfg.station_id = station_id;
	cfg.reg = st->reg;
	cfg.signer = st->signer;
	cfg.profiles = st->plist;
	cfg.nprofiles = n;
	if (ks_engine_new(&cfg, &st->engine) != KS_OK)
		die("engine", NULL);
}
