/*
 * kilnd: station bring-up. Everything the configuration names is loaded
 * and checked here, so `kilnd --check-config` catches what a start would.
 */
#include "host/kilnd/station.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "host/lib/ca.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"
#include "host/lib/signer.h"

static void addf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void addf(char *err, size_t errlen, const char *fmt, ...)
{
	size_t used = strlen(err);
	va_list ap;

	if (used + 2 >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used - 1, fmt, ap);
	va_end(ap);
	used = strlen(err);
	err[used] = '\n';
	err[used + 1] = '\0';
}

struct evp_pkey_st *kd_load_private_key(const char *path, char *err,
					size_t errlen)
{
	EVP_PKEY *k = NULL;
	FILE *fp = fopen(path, "r");

	if (fp == NULL) {
		snprintf(err, errlen, "cannot open %s: %s", path,
			 strerror(errno));
		return NULL;
	}
	k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (k == NULL) {
		unsigned long e = ERR_get_error();

		snprintf(err, errlen, "%s: not a PEM private key (%s)", path,
			 e ? ERR_reason_error_string(e) : "no key found");
		ERR_clear_error();
		return NULL;
	}
	if (!EVP_PKEY_is_a(k, "EC")) {
		snprintf(err, errlen, "%s: the station key must be EC P-256",
			 path);
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

static ks_err_t build_profiles(kd_daemon_t *d, char *err, size_t errlen)
{
	kd_config_t *c = d->cfg;
	char msg[512];
	ks_err_t r = KS_OK;

	d->profiles = calloc(c->nprofiles, sizeof(*d->profiles));
	d->profile_ptrs = calloc(c->nprofiles, sizeof(*d->profile_ptrs));
	if (d->profiles == NULL || d->profile_ptrs == NULL)
		return KS_ERR_NOMEM;
	for (size_t i = 0; i < c->nprofiles; i++) {
		const kd_profile_cfg_t *pc = &c->profiles[i];
		ks_profile_t *p = &d->profiles[i];
		bool bad = false;

		d->profile_ptrs[i] = p;
		msg[0] = '\0';
		if (ks_profile_init(p, pc->name, msg, sizeof(msg)) != KS_OK) {
			addf(err, errlen, "%s:%u: [profile %s]: %s", c->path,
			     pc->line, pc->name, msg);
			r = KS_ERR_CONFIG;
			continue;
		}
		for (size_t k = 0; k < pc->nkv; k++) {
			msg[0] = '\0';
			if (ks_profile_set(p, pc->kv[k].key, pc->kv[k].value, msg,
					   sizeof(msg)) != KS_OK) {
				addf(err, errlen, "%s:%u: [profile %s] %s = '%s': %s",
				     c->path, pc->kv[k].line, pc->name,
				     pc->kv[k].key, pc->kv[k].value, msg);
				bad = true;
			}
		}
		msg[0] = '\0';
		if (!bad && ks_profile_validate(p, msg, sizeof(msg)) != KS_OK) {
			addf(err, errlen, "%s:%u: [profile %s]: %s", c->path,
			     pc->line, pc->name, msg);
			bad = true;
		}
		if (bad)
			r = KS_ERR_CONFIG;
	}
	return r;
}

static ks_err_t load_signer(kd_daemon_t *d, char *err, size_t errlen)
{
	kd_config_t *c = d->cfg;
	ks_ca_t *ca = NULL;
	const struct {
		const char *key, *path;
		unsigned line;
	} files[] = {
		{"cert", c->ca_cert, c->ca_cert_line},
		{"key", c->ca_key, c->ca_key_line},
		{"chain", c->ca_chain, c->ca_chain_line},
	};
	bool missing = false;
	ks_err_t r;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (files[i].path[0] != '\0' && access(files[i].path, R_OK) != 0) {
			addf(err, errlen, "%s:%u: [ca] %s = '%s': %s", c->path,
			     files[i].line, files[i].key, files[i].path,
			     strerror(errno));
			missing = true;
		}
	}
	if (missing)
		return KS_ERR_CONFIG;
	r = ks_ca_load(c->ca_cert, c->ca_key,
		       c->ca_chain[0] ? c->ca_chain : NULL, &ca);
	if (r != KS_OK) {
		const char *what =
			r == KS_ERR_VERIFY
				? "the key does not match the certificate, or the certificate does not verify against the chain"
			: r == KS_ERR_POLICY
				? "the certificate is not an EC CA allowed to sign certificates"
				: ks_strerror((int)r);

		addf(err, errlen, "%s:%u: [ca] cert = '%s', key = '%s'%s%s: %s",
		     c->path, c->ca_line, c->ca_cert, c->ca_key,
		     c->ca_chain[0] ? ", chain = " : "", c->ca_chain, what);
		return KS_ERR_CONFIG;
	}
	r = ks_signer_new(&ca, &d->signer);
	if (r != KS_OK) {
		addf(err, errlen, "cannot create the signer: %s", ks_strerror((int)r));
		return r;
	}
	for (size_t i = 0; i < c->nprofiles; i++) {
		r = ks_signer_add_profile(d->signer, &d->profiles[i]);
		if (r != KS_OK) {
			addf(err, errlen, "%s:%u: [profile %s]: refused by the signer: %s",
			     c->path, c->profiles[i].line, c->profiles[i].name,
			     ks_strerror((int)r));
			return KS_ERR_CONFIG;
		}
	}
	return KS_OK;
}

/* Quotas and issued counts survive restarts: seed them from the registry. */
static ks_err_t seed_lots(kd_daemon_t *d)
{
	ks_reg_lot_t *l = NULL;
	size_t n = 0;
	int r;

	r = ks_reg_lot_list(d->reg, &l, &n);
	if (r != KS_OK)
		return (ks_err_t)r;
	for (size_t i = 0; i < n && r == KS_OK; i++) {
		if (l[i].quota > 0)
			r = (int)ks_signer_set_lot_quota(d->signer, l[i].name,
						    (uint64_t)l[i].quota);
		if (r == KS_OK)
			r = (int)ks_signer_set_lot_issued(d->signer, l[i].name,
						     l[i].active + l[i].voided);
	}
	free(l);
	return (ks_err_t)r;
}

ks_err_t kd_station_open(kd_config_t **cfgp, bool check_only, kd_daemon_t **out,
			 char *err, size_t errlen)
{
	kd_daemon_t *d;
	kd_config_t *c = *cfgp;
	ks_engine_config_t ec;
	char msg[512];
	ks_err_t r = KS_ERR_NOMEM;
	int rr;

	*out = NULL;
	err[0] = '\0';
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return KS_ERR_NOMEM;
	d->cfg = c;
	*cfgp = NULL;
	pthread_mutex_init(&d->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&d->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	d->started_ms = kd_now_ms();
	d->nslots = c->nslots;
	d->slots = calloc(c->nslots ? c->nslots : 1, sizeof(*d->slots));
	if (d->slots == NULL)
		goto out;
	for (size_t i = 0; i < c->nslots; i++) {
		d->slots[i].d = d;
		d->slots[i].cfg = &c->slots[i];
		d->slots[i].index = (int)i + 1;
		d->slots[i].since_ms = d->started_ms;
		d->slots[i].state = c->slots[i].enabled ? KD_SLOT_IDLE
							: KD_SLOT_DISABLED;
	}

	r = build_profiles(d, err, errlen);
	if (r == KS_ERR_NOMEM)
		goto out;
	/* report CA and key problems too, even when profiles failed */
	if (load_signer(d, err, errlen) != KS_OK)
		r = KS_ERR_CONFIG;
	msg[0] = '\0';
	d->station_key = kd_load_private_key(c->station_key, msg, sizeof(msg));
	if (d->station_key == NULL) {
		addf(err, errlen, "%s:%u: [station] station_key: %s", c->path,
		     c->station_key_line, msg);
		r = KS_ERR_CONFIG;
	}
	if (r != KS_OK || check_only)
		goto out;

	rr = ks_reg_open(c->registry, c->station_id, &d->reg);
	if (rr != KS_OK) {
		addf(err, errlen, "%s:%u: [station] registry = '%s': cannot open: %s",
		     c->path, c->registry_line, c->registry, ks_strerror((int)rr));
		r = (ks_err_t)rr;
		goto out;
	}
	rr = ks_reg_set_station_key(d->reg, d->station_key);
	ks_reg_set_checkpoint_interval(d->reg, c->checkpoint_interval);
	if (rr == KS_OK)
		rr = (int)seed_lots(d);
	if (rr != KS_OK) {
		addf(err, errlen, "registry %s: %s", c->registry, ks_strerror((int)rr));
		r = (ks_err_t)rr;
		goto out;
	}
	memset(&ec, 0, sizeof(ec));
	ec.station_id = c->station_id;
	ec.reg = d->reg;
	ec.signer = d->signer;
	ec.profiles = d->profile_ptrs;
	ec.nprofiles = c->nprofiles;
	r = ks_engine_new(&ec, &d->engine);
	if (r != KS_OK) {
		addf(err, errlen, "cannot create the session engine: %s",
		     ks_strerror((int)r));
		goto out;
	}
	r = KS_OK;
out:
	if (r != KS_OK)
		kd_station_close(&d);
	*out = d;
	return r;
}

void kd_station_close(kd_daemon_t **dp)
{
	kd_daemon_t *d;

	if (dp == NULL || *dp == NULL)
		return;
	d = *dp;
	ks_engine_free(&d->engine);
	ks_reg_close(&d->reg);
	ks_signer_free(&d->signer);
	EVP_PKEY_free(d->station_key);
	free(d->profiles);
	free(d->profile_ptrs);
	free(d->slots);
	kd_config_free(&d->cfg);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d);
	*dp = NULL;
}
