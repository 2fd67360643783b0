/*
 * kilnd: bringing the station up from its configuration, and down.
 */
#ifndef KILN_HOST_KILND_STATION_H
#define KILN_HOST_KILND_STATION_H

#include <stdbool.h>
#include <stddef.h>

#include "host/kilnd/kilnd.h"

/**
 * Build the station from cfg (which the daemon takes over): profiles
 * (each key through ks_profile_set, then ks_profile_validate), the CA and
 * its signer, the station key and, unless check_only, the registry and
 * the session engine. Problems go to err as "FILE:LINE: ..." lines.
 */
ks_err_t kd_station_open(kd_config_t **cfg, bool check_only, kd_daemon_t **out,
			 char *err, size_t errlen)
	__attribute__((warn_unused_result));

/**
 * Main of the signer process (kilnd --signer-fd N -c CONFIG, started by
 * kd_station_open()): loads the configuration, profiles and CA key and
 * serves signing requests on @fd (ks_signer_serve()) until kilnd closes
 * it. Returns the process exit status.
 */
int kd_signer_main(const char *config_path, int fd);

/** Tear everything down (NULL-safe); clears the pointer. */
void kd_station_close(kd_daemon_t **d);

/**
 * Load a PEM private key (the station key) from path. Returns NULL and
 * writes the reason to err on failure.
 */
struct evp_pkey_st *kd_load_private_key(const char *path, char *err,
					size_t errlen);

#endif
