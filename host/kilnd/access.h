/*
 * kilnd: who may use the station, and what the station may touch.
 *
 *  - Control-socket peers: SO_PEERCRED uid/gid mapped to an actor name and
 *    a role (operator or auditor) from [station] control_group,
 *    operator_group and auditor_group; auditors may only read.
 *  - File hygiene at start: keys, configuration, PKCS#11 module and the
 *    registry are refused when their modes let other users read a secret
 *    or change what the station trusts.
 *  - Privilege drop: [station] user/group, after the ports, keys, registry
 *    and control socket are open.
 *
 * docs/operator-guide.md ("Access control") and docs/threat-model.md.
 */
#ifndef KILN_HOST_KILND_ACCESS_H
#define KILN_HOST_KILND_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "host/kilnd/config.h"
#include "host/lib/err.h"

typedef enum {
	KD_ROLE_NONE = 0, /* refused */
	KD_ROLE_AUDITOR,  /* read-only: status, devices, lots, audit */
	KD_ROLE_OPERATOR, /* everything */
} kd_role_t;

/** "none", "auditor" or "operator". */
const char *kd_role_name(kd_role_t role);

/**
 * Whether role may run control command cmd. Auditors get the read-only
 * commands only (status, devices.list, devices.show, lots, audit.export);
 * any other name, including commands added later, needs an operator.
 */
bool kd_role_may(kd_role_t role, const char *cmd);

/**
 * Decide the role of a control-socket peer with credentials uid/gid (from
 * SO_PEERCRED). Writes its actor name (user name, or "uid:N") to actor;
 * when the result is KD_ROLE_NONE, why says which rule refused it.
 *
 * Allowed: root, the daemon's own user (its current uid), members of the
 * control group (control_group, else the daemon's group). Membership is
 * the user's group list (getgrouplist) or the peer's gid. With neither
 * operator_group nor auditor_group configured every allowed peer is an
 * operator; otherwise root and the daemon's user are operators, members
 * of operator_group are operators, members of auditor_group auditors,
 * and anyone else is refused.
 */
kd_role_t kd_access_peer(const kd_config_t *c, uid_t uid, gid_t gid,
			 char *actor, size_t actorlen, char *why,
			 size_t whylen);

/** The group the control socket is given (control_group or the daemon's). */
gid_t kd_access_socket_gid(const kd_config_t *c);

/**
 * Check the modes and owners of the files the station trusts: the CA key
 * (a file, not a pkcs11: URI), the token PIN file of a URI's
 * pin-source=file:/PATH and the station key must not be readable or
 * writable by other users nor group-writable; the configuration and the
 * PKCS#11 module must not be group- or world-writable (and the
 * configuration not readable by others when it holds a PIN); the registry
 * file, its -wal/-shm and its directory must not be world-writable. Each
 * must be owned by root, the daemon's user or the configured user. One
 * "FILE:LINE: ..." line per problem into err (appended); KS_ERR_CONFIG
 * when any was found.
 */
ks_err_t kd_access_check_files(const kd_config_t *c, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/**
 * Drop root for [station] user (and group): supplementary groups of the
 * user (initgroups), then gid and uid (real, effective, saved), then
 * check that root cannot be regained (setuid(0) must fail). Nothing to
 * do without a user; running as that user already is accepted. Any other
 * non-root start with a user set, or a failing step, is an error (err).
 */
ks_err_t kd_access_drop(const kd_config_t *c, char *err, size_t errlen)
	__attribute__((warn_unused_result));

#endif
