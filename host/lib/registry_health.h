/*
 * kiln station library: the registry's connection health, for status
 * displays (kilnd control `status`, `kiln status`), and its reconnect
 * window.
 */
#ifndef KILN_HOST_LIB_REGISTRY_HEALTH_H
#define KILN_HOST_LIB_REGISTRY_HEALTH_H

#include "host/lib/db.h"
#include "host/lib/registry.h"

/**
 * Health of the registry's database connection: backend name, connected
 * or lost (and since when), the error that lost it. Never waits for the
 * registry's lock or the database, so a status request answers at once
 * while slots wait out an outage. KS_ERR_ARG for NULL arguments.
 */
KS_REG_WUR int ks_reg_health(ks_reg_t *reg, ks_db_health_t *out);

/**
 * How long a registry call waits for a lost database connection to come
 * back before it fails with KS_ERR_UNAVAILABLE (seconds; see
 * ks_db_set_timeout; default KS_DB_TIMEOUT_DEFAULT).
 */
void ks_reg_set_db_timeout(ks_reg_t *reg, unsigned timeout_s);

/**
 * ks_reg_counts() for a status display that must answer during an
 * outage: waits at most wait_ms for the registry (other callers may hold
 * it while they wait for the database), and does not wait for a lost
 * connection to come back. KS_ERR_BUSY: the registry stayed busy;
 * KS_ERR_UNAVAILABLE: the database is not reachable now.
 */
KS_REG_WUR int ks_reg_counts_nowait(ks_reg_t *reg, unsigned wait_ms,
				    ks_reg_counts_t *out);

#endif
