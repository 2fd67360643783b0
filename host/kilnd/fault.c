/*
 * kilnd: fault injection (see fault.h). Test-only: built into
 * kilnd-faultinj, never into the installed daemon.
 */
#include "host/kilnd/fault.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/lib/log.h"
#include "host/lib/registry.h"

#ifndef KILN_FAULT_INJECTION
#error "fault.c belongs to the test-only kilnd-faultinj build"
#endif

#define KD_FAULT_POINTS 64
#define KD_FAULT_NAME 48

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static char kill_point[KD_FAULT_NAME];
static unsigned long kill_at; /* 0: no kill armed */
static int trace;
/* hit counters per point name */
static char names[KD_FAULT_POINTS][KD_FAULT_NAME];
static unsigned long hits[KD_FAULT_POINTS];

static void reg_hook(void *ctx, const char *point)
{
	(void)ctx;
	kd_fault_point(point);
}

void kd_fault_install(struct ks_reg *reg)
{
	const char *spec = getenv("KILN_FAULT_KILL");
	const char *t = getenv("KILN_FAULT_TRACE");

	trace = t != NULL && strcmp(t, "1") == 0;
	if (spec != NULL && spec[0] != '\0') {
		/* POINT:N; POINT may itself contain ':' */
		const char *colon = strrchr(spec, ':');
		char *end = NULL;
		unsigned long n;

		errno = 0;
		n = colon != NULL ? strtoul(colon + 1, &end, 10) : 0;
		if (colon == NULL || colon == spec || end == colon + 1 ||
		    *end != '\0' || errno != 0 || n == 0 ||
		    (size_t)(colon - spec) >= sizeof(kill_point)) {
			ks_log_error("KILN_FAULT_KILL=%s: expected POINT:N (N >= 1)",
				     spec);
		} else {
			memcpy(kill_point, spec, (size_t)(colon - spec));
			kill_point[colon - spec] = '\0';
			kill_at = n;
			ks_log_warn("fault injection armed: SIGKILL at hit %lu of %s",
				    kill_at, kill_point);
		}
	}
	if (kill_at != 0 || trace)
		ks_reg_set_fault_hook(reg, reg_hook, NULL);
}

void kd_fault_point(const char *point)
{
	unsigned long n = 0;
	size_t i;

	pthread_mutex_lock(&fault_mu);
	for (i = 0; i < KD_FAULT_POINTS && names[i][0] != '\0'; i++)
		if (strcmp(names[i], point) == 0)
			break;
	if (i < KD_FAULT_POINTS) {
		if (names[i][0] == '\0')
			snprintf(names[i], sizeof(names[i]), "%s", point);
		n = ++hits[i];
	}
	if (trace)
		ks_log_info("fault point %s #%lu", point, n);
	if (kill_at != 0 && n == kill_at && strcmp(point, kill_point) == 0) {
		ks_log_warn("fault injection: SIGKILL at %s #%lu", point, n);
		raise(SIGKILL);
	}
	pthread_mutex_unlock(&fault_mu);
}

void kd_fault_step(ks_step_t step)
{
	char point[KD_FAULT_NAME];

	snprintf(point, sizeof(point), "session:%s", ks_step_name(step));
	kd_fault_point(point);
}
