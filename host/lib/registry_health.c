/*
 * kiln station library: the registry's connection health (see
 * registry_health.h).
 */
#include "host/lib/registry_health.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "host/lib/err.h"
#include "host/lib/registry_priv.h"

int ks_reg_health(ks_reg_t *reg, ks_db_health_t *out)
{
	if (reg == NULL || out == NULL)
		return KS_ERR_ARG;
	/* reg->dbh is set once at open and lives until close; the health
	 * has its own lock inside the database layer, so reg->mu (held for
	 * the whole of a registry call, reconnect waits included) is not
	 * taken here */
	ks_db_health(reg->dbh, out);
	return KS_OK;
}

void ks_reg_set_db_timeout(ks_reg_t *reg, unsigned timeout_s)
{
	if (reg != NULL)
		ks_db_set_timeout(reg->dbh, timeout_s);
}

int ks_reg_counts_nowait(ks_reg_t *reg, unsigned wait_ms, ks_reg_counts_t *out)
{
	struct timespec until;
	unsigned saved;
	int r;

	if (reg == NULL || out == NULL)
		return KS_ERR_ARG;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(wait_ms / 1000u);
	until.tv_nsec += (long)(wait_ms % 1000u) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	r = pthread_mutex_timedlock(&reg->mu, &until);
	if (r != 0)
		return r == ETIMEDOUT ? KS_ERR_BUSY : KS_ERR_INTERNAL;
	if (!ks_db_connected(reg->dbh)) {
		r = KS_ERR_UNAVAILABLE;
	} else {
		/* the mutex (recursive) keeps every other user off the
		 * connection, so its reconnect window can be lent out */
		saved = ks_db_timeout_ms(reg->dbh);
		ks_db_set_timeout_ms(reg->dbh, 0);
		r = ks_reg_counts(reg, out);
		ks_db_set_timeout_ms(reg->dbh, saved);
	}
	pthread_mutex_unlock(&reg->mu);
	return r;
}
