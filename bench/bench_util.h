/*
 * Benchmark support shared by bench_issue, bench_registry and bench_pg:
 * a monotonic clock and the signing profile they all issue with.
 */
#ifndef KILN_BENCH_UTIL_H
#define KILN_BENCH_UTIL_H

#include "host/lib/signer.h"

/** Seconds on CLOCK_MONOTONIC. */
double bu_now_s(void);

/**
 * Add the profile "bench" to signer: subject
 * "CN=${serial},O=Bench,OU=Widgets", 3650 days, digitalSignature,
 * clientAuth, lock full, key_origin as given (host | device). 0 on
 * success; -1 after printing "<prog>: profile: <why>" to stderr.
 */
int bu_add_profile(ks_signer_t *signer, const char *key_origin,
		   const char *prog) __attribute__((warn_unused_result));

#endif
