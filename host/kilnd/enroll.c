/*
 * kilnd: the field enrollment service. The [enroll] section names the
 * listening address, the service's TLS certificate and key, the CA chain
 * client certificates must verify against (default: the [ca] chain) and
 * the operational profile; host/lib/est.c does the rest in its own
 * threads, so provisioning slots are never blocked by it.
 */
#include "host/kilnd/enroll.h"

#include <stdio.h>

#include "host/kilnd/config.h"
#include "host/lib/est.h"
#include "host/lib/log.h"

ks_err_t kd_enroll_start(kd_daemon_t *d, char *err, size_t errlen)
{
	const kd_config_t *c = d->cfg;
	ks_est_config_t ec = {0};
	ks_err_t r;

	if (c->enroll_line == 0)
		return KS_OK;
	ec.listen = c->enroll_listen;
	ec.cert_pem = c->enroll_cert;
	ec.key_pem = c->enroll_key;
	ec.trust_pem = c->enroll_trust[0] != '\0' ? c->enroll_trust
						  : c->ca_chain[0] != '\0'
							    ? c->ca_chain
							    : c->ca_cert;
	ec.profile = c->enroll_profile;
	ec.profiles = (const ks_profile_t *const *)d->profile_ptrs;
	ec.nprofiles = c->nprofiles;
	ec.signer = d->signer;
	ec.reg = d->reg;
	ec.reenroll = c->enroll_reenroll ? 1 : 0;
	ec.max_conns = c->enroll_max_conns;
	ec.timeout_ms = c->enroll_timeout_ms;
	r = ks_est_server_start(&ec, &d->enroll, err, errlen);
	if (r != KS_OK)
		ks_log_error("[enroll]: %s", err);
	return r;
}

void kd_enroll_stop(kd_daemon_t *d)
{
	if (d != NULL)
		ks_est_server_stop(&d->enroll);
}
