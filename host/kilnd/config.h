/*
 * kilnd: the station configuration file (INI).
 *
 *   [station]       id, registry (PATH, sqlite:PATH or postgresql://...),
 *                   serial_block, registry_timeout, control_socket,
 *                   control_group (alias socket_group), operator_group,
 *                   auditor_group, user, group, station_key, log_level,
 *                   checkpoint_interval
 *   [ca]            cert, key (a PEM file or a pkcs11: URI), chain,
 *                   pkcs11_module
 *   [profile NAME]  keys forwarded one by one to ks_profile_set()
 *   [slot NAME]     port (a link spec), enabled
 *   [enroll]        listen, cert, key, trust, profile, reenroll,
 *                   max_connections, timeout_ms (field enrollment)
 *
 * Unknown sections and keys are errors; every error names FILE:LINE, the
 * key and the value. Relative paths resolve against the directory of the
 * configuration file.
 */
#ifndef KILN_HOST_KILND_CONFIG_H
#define KILN_HOST_KILND_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "host/lib/err.h"

#define KD_NAME_MAX 64u
#define KD_VALUE_MAX 1024u
#define KD_DEFAULT_SOCKET "/run/kiln/kilnd.sock"
#define KD_DEFAULT_CHECKPOINT 64u /* audit events between checkpoints */
#define KD_SERIAL_BLOCK_MAX 100000u  /* serial_block upper bound */
#define KD_REGISTRY_TIMEOUT_MAX 86400u /* registry_timeout upper bound (s) */

/* One key = value line of a [profile NAME] section. */
typedef struct {
	char key[KD_NAME_MAX];
	char value[KD_VALUE_MAX];
	unsigned line;
} kd_kv_t;

typedef struct {
	char name[KD_NAME_MAX];
	unsigned line; /* line of the section header */
	kd_kv_t *kv;
	size_t nkv;
} kd_profile_cfg_t;

typedef struct {
	char name[KD_NAME_MAX];
	char port[KD_VALUE_MAX]; /* link spec, paths made absolute */
	bool enabled;
	unsigned line;      /* section header */
	unsigned port_line; /* 0 = no port key */
} kd_slot_cfg_t;

typedef struct {
	char path[PATH_MAX]; /* the configuration file as given */
	char dir[PATH_MAX];  /* its directory, absolute */

	char station_id[KD_NAME_MAX];
	/* the registry URL: an absolute SQLite path ("sqlite:" dropped,
	 * relative paths resolved) or a postgresql:// URL as given */
	char registry[PATH_MAX];
	unsigned serial_block;     /* 0 = the registry's default */
	unsigned registry_timeout; /* seconds; default KS_DB_TIMEOUT_DEFAULT */
	char control_socket[PATH_MAX];
	char socket_group[KD_NAME_MAX]; /* control_group; "" = the daemon's */
	gid_t socket_gid;                /* (gid_t)-1 when not set */
	/* control roles (host/kilnd/access.h); "" = not configured */
	char operator_group[KD_NAME_MAX];
	gid_t operator_gid;
	char auditor_group[KD_NAME_MAX];
	gid_t auditor_gid;
	/* privilege drop after start-up; user "" = stay as started */
	char user[KD_NAME_MAX];
	uid_t user_uid;
	gid_t user_gid; /* `group`, else the user's primary group */
	char group[KD_NAME_MAX]; /* "" = the user's primary group */
	char station_key[PATH_MAX];
	int log_level; /* ks_log_level_t */
	unsigned checkpoint_interval; /* audit events; 0 = batch stop/exit only */

	char ca_cert[PATH_MAX];
	char ca_key[PATH_MAX];
	char ca_chain[PATH_MAX]; /* "" = none */
	char ca_pkcs11_module[PATH_MAX]; /* "" = URI module-path or default */

	/* lines of the keys above (0 = not given), for later diagnostics */
	unsigned registry_line, station_key_line, user_line;
	unsigned ca_line, ca_cert_line, ca_key_line, ca_chain_line;
	unsigned ca_pkcs11_module_line;

	/* [enroll]: field enrollment service (host/lib/est.h); listen "" =
	 * not served */
	char enroll_listen[KD_NAME_MAX * 2];
	char enroll_cert[PATH_MAX];
	char enroll_key[PATH_MAX];
	char enroll_trust[PATH_MAX]; /* "" = the [ca] chain */
	char enroll_profile[KD_NAME_MAX];
	bool enroll_reenroll;
	unsigned enroll_max_conns;   /* 0 = default */
	unsigned enroll_timeout_ms;  /* 0 = default */
	unsigned enroll_line;        /* section header, 0 = none */

	kd_profile_cfg_t *profiles;
	size_t nprofiles;
	kd_slot_cfg_t *slots;
	size_t nslots;
} kd_config_t;

/**
 * Read and validate the configuration file at path. On failure returns
 * KS_ERR_CONFIG (or KS_ERR_NOMEM / KS_ERR_IO) and writes one line per
 * problem ("FILE:LINE: ...") into err. On success *out owns the config;
 * free it with kd_config_free().
 */
ks_err_t kd_config_load(const char *path, kd_config_t **out, char *err,
			size_t errlen) __attribute__((warn_unused_result));

/** Free a configuration (NULL-safe); clears the pointer. */
void kd_config_free(kd_config_t **cfg);

/** Find a slot by name; NULL if none. */
const kd_slot_cfg_t *kd_config_slot(const kd_config_t *cfg, const char *name);

/**
 * Resolve path against dir (absolute paths are copied). Returns KS_OK or
 * KS_ERR_ARG when the result does not fit.
 */
ks_err_t kd_config_resolve(const char *dir, const char *path, char *out,
			   size_t outlen) __attribute__((warn_unused_result));

#endif
