/*
 * kilnd: the field enrollment service ([enroll] section; host/lib/est.h).
 */
#ifndef KILN_HOST_KILND_ENROLL_H
#define KILN_HOST_KILND_ENROLL_H

#include <stddef.h>

#include "host/kilnd/kilnd.h"
#include "host/lib/err.h"

/**
 * Start the enrollment service when the configuration has an [enroll]
 * section (KS_OK and nothing started otherwise). Needs the registry,
 * signer and profiles of @d. Errors go to err.
 */
__attribute__((warn_unused_result))
ks_err_t kd_enroll_start(kd_daemon_t *d, char *err, size_t errlen);

/** Stop the service (waits for connections in progress). Idempotent. */
void kd_enroll_stop(kd_daemon_t *d);

#endif
