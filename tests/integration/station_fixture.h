/*
 * A throwaway station for tests that drive the session engine in-process:
 * a temporary directory with a development CA and station key, the signer
 * with the given profiles, a SQLite registry with one lot per profile, and
 * the engine. Setup failures end the test program (exit 1).
 */
#ifndef KILN_TESTS_STATION_FIXTURE_H
#define KILN_TESTS_STATION_FIXTURE_H

#include <stddef.h>

#include <openssl/evp.h>

#include "host/lib/profile.h"
#include "host/lib/registry.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"

#define TF_MAX_PROFILES 6

/* One profile and the lot it issues into. */
typedef struct {
	const char *name;
	const char *origin; /* key_origin: device | host */
	const char *lock;   /* none | identity | full */
	const char *lot;
	const char *serial_prefix;
} tf_profile_spec_t;

typedef struct {
	char dir[64]; /* registry.db, the CA files, station.key */
	ks_reg_t *reg;
	ks_signer_t *signer;
	ks_engine_t *engine;
	EVP_PKEY *station_key; /* also set on the registry (checkpoints) */
	ks_profile_t profiles[TF_MAX_PROFILES];
	ks_profile_t *plist[TF_MAX_PROFILES];
	size_t nprofiles;
} tf_station_t;

/**
 * Build the station in /tmp/kiln-<tag>-XXXXXX. Subjects are
 * "CN=${serial},O=<org>", validity 365 days; the CA is made for <org>.
 */
void tf_station_setup(tf_station_t *st, const char *tag, const char *org,
		      const char *station_id, const tf_profile_spec_t *specs,
		      size_t n);

#endif
