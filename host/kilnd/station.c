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
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "host/lib/ca.h"
#include "host/lib/log.h"
#include "host/lib/p11.h"
#include "host/lib/profile.h"
#include "host/lib/db.h"
#include "host/lib/registry.h"
#include "host/lib/registry_health.h"
#include "host/lib/signer.h"
#include "host/kilnd/enroll.h"

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
		if (files[i].path[0] != '\0' && !ks_p11_is_uri(files[i].path) &&
		    access(files[i].path, R_OK) != 0) {
			addf(err, errlen, "%s:%u: [ca] %s = '%s': %s", c->path,
			     files[i].line, files[i].key, files[i].path,
			     strerror(errno));
			missing = true;
		}
	}
	if (missing)
		return KS_ERR_CONFIG;
	r = ks_ca_load_ex(c->ca_cert, c->ca_key,
			  c->ca_chain[0] ? c->ca_chain : NULL,
			  c->ca_pkcs11_module[0] ? c->ca_pkcs11_module : NULL,
			  &ca);
	if (r != KS_OK) {
		const char *what =
			r == KS_ERR_VERIFY
				? "the key does not match the certificate, or the certificate does not verify against the chain"
			: r == KS_ERR_POLICY
				? "the certificate is not an EC CA allowed to sign certificates"
			: r == KS_ERR_NOTFOUND
				? "no such token or key in the token"
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

/*
 * The release gate: a development CA or a published test key is refused
 * for a profile marked production, and allowed with a warning otherwise.
 */
static ks_err_t release_gate(kd_daemon_t *d, char *err, size_t errlen)
{
	char msg[1024];
	int warn = 0;
	ks_err_t r;

	r = ks_ca_release_gate(ks_signer_chain(d->signer), d->profiles,
			       d->cfg->nprofiles, &warn, msg, sizeof(msg));
	if (r == KS_ERR_POLICY) {
		addf(err, errlen, "%s:%u: [ca]: release gate: %s", d->cfg->path,
		     d->cfg->ca_line, msg);
		return KS_ERR_CONFIG;
	}
	if (r != KS_OK) {
		addf(err, errlen, "release gate: %s", ks_strerror((int)r));
		return r;
	}
	if (warn)
		ks_log_warn("%s", msg);
	return KS_OK;
}

/*
 * Start the signer process: fork, then exec this same program as
 * "--signer-fd N -c CONFIG" so the signer begins from a fresh image (no
 * memory shared with the slot workers, its own address-space layout). It
 * loads the CA key itself; this process never does. The connection is
 * completed by ks_signer_connect() once the registry is open.
 */
static ks_err_t spawn_signer(kd_daemon_t *d, int *fd_out, pid_t *pid_out,
			     char *err, size_t errlen)
{
	char exe[PATH_MAX], fdarg[16];
	int sv[2];
	ssize_t n;
	pid_t pid;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		addf(err, errlen, "cannot find my own executable: %s",
		     strerror(errno));
		return KS_ERR_IO;
	}
	exe[n] = '\0';
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		addf(err, errlen, "socketpair: %s", strerror(errno));
		return KS_ERR_IO;
	}
	snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
	pid = fork();
	if (pid < 0) {
		addf(err, errlen, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return KS_ERR_IO;
	}
	if (pid == 0) {
		char *argv[] = { exe, (char *)"--signer-fd", fdarg,
				 (char *)"-c", d->cfg->path, NULL };

		/* die with the station; keep only our end across exec */
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (fcntl(sv[1], F_SETFD, 0) == 0)
			execv(exe, argv);
		_exit(127);
	}
	close(sv[1]);
	*fd_out = sv[0];
	*pid_out = pid;
	return KS_OK;
}

int kd_signer_main(const char *config_path, int fd)
{
	kd_config_t *cfg = NULL;
	kd_daemon_t d;
	ks_signer_serve_cfg_t sc;
	ks_reg_opts_t ro;
	char *err = calloc(1, 8192);
	sigset_t all;
	ks_err_t r;
	int rc = 1;

	/* kilnd blocks its signals for sigwait(); the signer wants the
	 * default actions (SIGTERM ends it) */
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	(void)prctl(PR_SET_DUMPABLE, 0); /* no core dumps, no ptrace peers */
	memset(&d, 0, sizeof(d));
	memset(&sc, 0, sizeof(sc));
	memset(&ro, 0, sizeof(ro));
	if (err == NULL)
		goto out;
	if (kd_config_load(config_path, &cfg, err, 8192) != KS_OK) {
		sc.load_error = err;
	} else {
		ks_log_set_level((ks_log_level_t)cfg->log_level);
		d.cfg = cfg;
		r = build_profiles(&d, err, 8192);
		if (r == KS_OK)
			r = load_signer(&d, err, 8192);
		if (r != KS_OK) {
			ks_signer_free(&d.signer);
			sc.load_error = err;
		}
		sc.registry = cfg->registry;
		sc.station_id = cfg->station_id;
		ro.serial_block = cfg->serial_block;
		ro.timeout_s = cfg->registry_timeout;
		sc.registry_opts = &ro;
	}
	if (sc.load_error != NULL) {
		size_t len = strlen(err);

		while (len > 0 && err[len - 1] == '\n')
			err[--len] = '\0';
		if (len == 0)
			snprintf(err, 8192, "the signer could not load the CA");
	}
	r = ks_signer_serve(&d.signer, fd, &sc);
	rc = r == KS_OK ? 0 : 1;
out:
	close(fd);
	free(d.profiles);
	free(d.profile_ptrs);
	kd_config_free(&cfg);
	free(err);
	return rc;
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
	int rr, signer_fd = -1;
	pid_t signer_pid = 0;
	char cmsg[1100];
	char shown[512];
	ks_reg_opts_t ro;

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
	/* report CA and key problems too, even when profiles failed. A
	 * configuration check loads the CA here; a running station leaves
	 * the key to the signer process (spawned before the registry is
	 * opened, connected after) */
	if (check_only) {
		if (load_signer(d, err, errlen) != KS_OK)
			r = KS_ERR_CONFIG;
		else if (release_gate(d, err, errlen) != KS_OK)
			r = KS_ERR_CONFIG;
	} else if (r == KS_OK &&
		   spawn_signer(d, &signer_fd, &signer_pid, err, errlen) != KS_OK) {
		r = KS_ERR_CONFIG;
	}
	msg[0] = '\0';
	d->station_key = kd_load_private_key(c->station_key, msg, sizeof(msg));
	if (d->station_key == NULL) {
		addf(err, errlen, "%s:%u: [station] station_key: %s", c->path,
		     c->station_key_line, msg);
		r = KS_ERR_CONFIG;
	}
	if (r != KS_OK || check_only)
		goto out;

	ks_db_url_mask(c->registry, shown, sizeof(shown));
	memset(&ro, 0, sizeof(ro));
	ro.serial_block = c->serial_block;
	ro.timeout_s = c->registry_timeout;
	rr = ks_reg_open_ex(c->registry, c->station_id, &ro, &d->reg);
	if (rr != KS_OK) {
		addf(err, errlen, "%s:%u: [station] registry = '%s': cannot open: %s",
		     c->path, c->registry_line, shown, ks_strerror((int)rr));
		r = (ks_err_t)rr;
		goto out;
	}
	ks_reg_set_db_timeout(d->reg, c->registry_timeout);
	cmsg[0] = '\0';
	r = ks_signer_connect(signer_fd, signer_pid, &d->signer, cmsg,
			      sizeof(cmsg));
	signer_fd = -1; /* taken (and on failure closed and reaped) */
	if (r != KS_OK) {
		char *line = cmsg;

		/* the signer reports one problem per line, as FILE:LINE */
		while (line != NULL && *line != '\0') {
			char *nl = strchr(line, '\n');

			if (nl != NULL)
				*nl = '\0';
			addf(err, errlen, "%s", line);
			line = nl != NULL ? nl + 1 : NULL;
		}
		r = KS_ERR_CONFIG;
		goto out;
	}
	r = release_gate(d, err, errlen);
	if (r != KS_OK)
		goto out;
	rr = ks_reg_set_station_key(d->reg, d->station_key);
	ks_reg_set_checkpoint_interval(d->reg, c->checkpoint_interval);
	if (rr == KS_OK && !ks_signer_is_remote(d->signer))
		rr = (int)seed_lots(d);
	if (rr != KS_OK) {
		addf(err, errlen, "registry %s: %s", shown, ks_strerror((int)rr));
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
	if (!check_only) {
		char eerr[512] = "";

		r = kd_enroll_start(d, eerr, sizeof(eerr));
		if (r != KS_OK) {
			addf(err, errlen, "%s:%u: %s", c->path, c->enroll_line,
			     eerr);
			goto out;
		}
	}
	r = KS_OK;
out:
	if (signer_fd >= 0) { /* failed before the signer was connected */
		close(signer_fd);
		while (waitpid(signer_pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
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
	kd_enroll_stop(d);
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
