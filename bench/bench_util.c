/*
 * Benchmark support (see bench_util.h).
 */
#include "bench/bench_util.h"

#include <stdio.h>
#include <time.h>

#include "host/lib/profile.h"

double bu_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bu_add_profile(ks_signer_t *signer, const char *key_origin,
		   const char *prog)
{
	ks_profile_t p;
	char err[256];
	int rc = -1;
	static const char *const kv[][2] = {
		{"subject", "CN=${serial},O=Bench,OU=Widgets"},
		{"validity_days", "3650"},
		{"key_usage", "digitalSignature"},
		{"extended_key_usage", "clientAuth"},
		{"lock", "full"},
	};

	err[0] = '\0';
	if (ks_profile_init(&p, "bench", err, sizeof(err)) != KS_OK)
		goto out;
	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		if (ks_profile_set(&p, kv[i][0], kv[i][1], err, sizeof(err)) !=
		    KS_OK)
			goto out;
	if (ks_profile_set(&p, "key_origin", key_origin, err, sizeof(err)) !=
		    KS_OK ||
	    ks_profile_validate(&p, err, sizeof(err)) != KS_OK)
		goto out;
	if (ks_signer_add_profile(signer, &p) != KS_OK) {
		snprintf(err, sizeof(err), "signer refused the profile");
		goto out;
	}
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "%s: profile: %s\n", prog, err);
	return rc;
}
