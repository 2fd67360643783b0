/*
 * kilnd: fault injection for the test-only build kilnd-faultinj.
 *
 * Compiled only with -DKILN_FAULT_INJECTION (never into the installed
 * kilnd). The environment selects a kill point:
 *
 *   KILN_FAULT_KILL=POINT:N   SIGKILL the daemon at the Nth hit of POINT
 *   KILN_FAULT_TRACE=1        log every hit ("fault point POINT #N")
 *
 * POINT is a registry fault-hook point ("begin:serial", "step:session",
 * "issued:cert", "commit", "audit:append", ... see host/lib/registry.c),
 * hit inside a write transaction before it commits, or a session step
 * "session:KEYED" (RESERVED, KEYED, ISSUED, ...), hit once that step is
 * durable in the registry and before the next device request.
 */
#ifndef KILN_HOST_KILND_FAULT_H
#define KILN_HOST_KILND_FAULT_H

#include "host/lib/session.h"

struct ks_reg;

/** Read the environment and hook the registry's fault points. */
void kd_fault_install(struct ks_reg *reg);

/** One hit of a named point: counted, traced, and SIGKILL at the Nth. */
void kd_fault_point(const char *point);

/** A session step became durable: the point "session:STEP". */
void kd_fault_step(ks_step_t step);

#endif
