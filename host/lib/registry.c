/*
 * kiln station library: the registry (SQLite). See registry.h and
 * docs/registry.md.
 */
#include "host/lib/registry.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include "host/lib/db.h"

#include "db/migrations.h"
#include "host/lib/audit.h"
#include "host/lib/err.h"
#include "host/lib/hostkey.h"
#include "host/lib/log.h"
#include "host/lib/registry_priv.h"

#define FINAL_STATES "('ACTIVE', 'FAILED', 'VOID', 'SCRAPPED')"
#define DEFAULT_ACTOR "kilnd"

static const char *const state_names[] = {
#define KS_REG_X(name, str) str,
	KS_REG_STATES(KS_REG_X)
#undef KS_REG_X
};

static const char *const event_names[] = {
#define KS_REG_X(name, str) str,
	KS_REG_EVENTS(KS_REG_X)
#undef KS_REG_X
};

const char *ks_reg_state_name(int state)
{
	if (state < 0 || state >= KS_REG_STATE_COUNT)
		return "?";
	return state_names[state];
}

int ks_reg_state_parse(const char *name)
{
	int i;

	if (name == NULL)
		return -1;
	for (i = 0; i < KS_REG_STATE_COUNT; i++)
		if (strcmp(name, state_names[i]) == 0)
			return i;
	return -1;
}

int ks_reg_state_is_final(ks_reg_state_t state)
{
	return state == KS_REG_ACTIVE || state == KS_REG_FAILED ||
	       state == KS_REG_VOID || state == KS_REG_SCRAPPED;
}

const char *ks_reg_event_name(int type)
{
	if (type < 0 || type >= KS_REG_EV_COUNT)
		return "?";
	return event_names[type];
}

int ks_reg_event_parse(const char *name)
{
	int i;

	if (name == NULL)
		return -1;
	for (i = 0; i < KS_REG_EV_COUNT; i++)
		if (strcmp(name, event_names[i]) == 0)
			return i;
	return -1;
}

const char *ks_reg_key_origin_name(ks_reg_key_origin_t origin)
{
	return origin == KS_REG_KEY_HOST ? "host" : "device";
}

static int key_origin_parse(const char *s)
{
	return (s != NULL && strcmp(s, "host") == 0) ? KS_REG_KEY_HOST
						     : KS_REG_KEY_DEVICE;
}

int ks_reg_schema_version(void)
{
	return (int)ks_db_migration_count;
}

const char *ks_reg_station(const ks_reg_t *reg)
{
	return reg != NULL ? reg->station : "";
}

/* ---- helpers shared with audit.c / export.c ---- */

int64_t ks_reg_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ks_reg_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

void ks_reg_fault(ks_reg_t *reg, const char *point)
{
	if (reg->hook != NULL)
		reg->hook(reg->hook_ctx, point);
}

int ks_reg_db_err(ks_reg_t *reg, int rc, const char *what)
{
	if (rc == KS_DB_ECONSTRAINT) {
		ks_log_debug("%s: %s", what, ks_db_errmsg(reg->dbh));
		return KS_ERR_DUPLICATE;
	}
	ks_log_error("%s: %s", what, ks_db_errmsg(reg->dbh));
	if (rc == KS_DB_ERETRY)
		return KS_ERR_BUSY;
	if (rc == KS_DB_ENOMEM)
		return KS_ERR_NOMEM;
	if (rc == KS_DB_ECONN || !ks_db_connected(reg->dbh))
		return KS_ERR_UNAVAILABLE; /* an error as the connection died */
	return KS_ERR_DB;
}

static void leases_committed(ks_reg_t *reg);
static void leases_forget_tentative(ks_reg_t *reg);
static void leases_refill(ks_reg_t *reg);

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void backoff(int attempt)
{
	struct timespec ts = { 0, 0 };
	long ms = attempt < 10 ? 1 + attempt : 20;

	ts.tv_nsec = ms * 1000000L;
	nanosleep(&ts, NULL);
}

int ks_reg_tx_begin(ks_reg_t *reg)
{
	int64_t deadline;
	int rc = KS_DB_ERETRY;
	int i;

	if (reg->group) {
		/* inside a group: one step = one savepoint of the group */
		rc = ks_db_exec(reg->dbh, "SAVEPOINT ks_step");
		if (rc != KS_DB_EOK)
			return ks_reg_db_err(reg, rc, "SAVEPOINT");
		reg->sp_open = 1;
		return KS_OK;
	}
	/* The busy handler already waits a while; keep trying until the
	 * registry timeout when another process holds the write lock. */
	deadline = mono_ms() + reg->timeout_ms;
	for (i = 0;; i++) {
		rc = ks_db_begin_write(reg->dbh);
		if (rc != KS_DB_ERETRY || mono_ms() >= deadline)
			break;
		backoff(i);
	}
	if (rc != KS_DB_EOK)
		return ks_reg_db_err(reg, rc, "BEGIN IMMEDIATE");
	reg->tx_open = 1;
	reg->head_valid = 0; /* another writer may have appended since */
	return KS_OK;
}

int ks_reg_tx_commit(ks_reg_t *reg)
{
	int64_t deadline;
	int rc = KS_DB_ERETRY;
	int i;

	if (reg->group) {
		/* durable only when the group commits (ks_reg_group_commit) */
		rc = ks_db_exec(reg->dbh, "RELEASE ks_step");
		if (rc != KS_DB_EOK) {
			int r = ks_reg_db_err(reg, rc, "RELEASE");

			ks_reg_tx_rollback(reg);
			return r;
		}
		reg->sp_open = 0;
		return KS_OK;
	}
	ks_reg_fault(reg, "commit");
	deadline = mono_ms() + reg->timeout_ms;
	for (i = 0;; i++) {
		rc = ks_db_commit(reg->dbh);
		if (rc != KS_DB_ERETRY || mono_ms() >= deadline)
			break;
		backoff(i);
	}
	if (rc != KS_DB_EOK) {
		int r = ks_reg_db_err(reg, rc, "COMMIT");

		ks_reg_tx_rollback(reg);
		return r;
	}
	reg->tx_open = 0;
	reg->head_valid = 0;
	leases_committed(reg);
	leases_refill(reg);
	return KS_OK;
}

void ks_reg_tx_rollback(ks_reg_t *reg)
{
	leases_forget_tentative(reg);
	reg->head_valid = 0; /* the rolled-back rows may have moved it */
	if (reg->group) {
		/* undo this step only; the group's earlier steps stay */
		if (reg->sp_open)
			ks_db_rollback_to(reg->dbh, "ks_step");
		reg->sp_open = 0;
		return;
	}
	reg->tx_open = 0;
	ks_db_rollback(reg->dbh);
}

/* ---- small statement helpers ---- */

static int prep(ks_reg_t *reg, const char *sql, ks_db_stmt_t **st)
{
	int rc = ks_db_prepare(reg->dbh, sql, st);

	if (rc != KS_DB_EOK) {
		*st = NULL;
		return ks_reg_db_err(reg, rc, sql);
	}
	return KS_OK;
}

/* Step a statement that returns no row; finalizes it. */
static int run(ks_reg_t *reg, ks_db_stmt_t *st, const char *what)
{
	int rc = ks_db_step(st);
	int r = KS_OK;

	if (rc != KS_DB_DONE && rc != KS_DB_ROW)
		r = ks_reg_db_err(reg, ks_db_last_err(reg->dbh),
				      what);
	ks_db_finish(&st);
	return r;
}

/*
 * Bind without copying (SQLITE_STATIC): every caller binds values that
 * stay unchanged until the statement is finalized in the same function.
 * A copying bind (SQLITE_TRANSIENT) allocates, and its failure was
 * silently ignored: an unbound "serial = ?" matched no row, so a step
 * could commit the session's new state without the device's (found by
 * tests/hardening/test_libfault.c: a run returned KS_OK while the device
 * row still said LOCKED).
 */
static void bind_text(ks_db_stmt_t *st, int i, const char *s)
{
	if (s != NULL)
		ks_db_bind_text(st, i, s);
	else
		ks_db_bind_null(st, i);
}

static void bind_blob(ks_db_stmt_t *st, int i, const void *p, size_t n)
{
	if (p != NULL)
		ks_db_bind_blob(st, i, p, n);
	else
		ks_db_bind_null(st, i);
}

static void col_text(ks_db_stmt_t *st, int i, char *out, size_t cap)
{
	const char *t = ks_db_col_text(st, i);

	snprintf(out, cap, "%s", t != NULL ? t : "");
}

/* Copy a 32-byte blob column; returns 1 when present. */
static int col_hash(ks_db_stmt_t *st, int i, uint8_t out[32])
{
	if (ks_db_col_type(st, i) != KS_DB_T_BLOB ||
	    ks_db_col_bytes(st, i) != 32)
		return 0;
	memcpy(out, ks_db_col_blob(st, i), 32);
	return 1;
}

static const char *actor_or_default(const char *actor)
{
	return (actor != NULL && actor[0] != '\0') ? actor : DEFAULT_ACTOR;
}

/* json_dumps of a jansson object (steals the reference); NULL on error. */
static char *json_text(json_t *obj)
{
	char *s = NULL;

	if (obj != NULL)
		s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(obj);
	return s;
}

/* ---- open / migrate / close ---- */

static int pragma_int(ks_reg_t *reg, const char *sql, int *out)
{
	ks_db_stmt_t *st = NULL;
	int r = prep(reg, sql, &st);

	if (r != KS_OK)
		return r;
	if (ks_db_step(st) == KS_DB_ROW)
		*out = ks_db_col_int(st, 0);
	else
		r = ks_reg_db_err(reg, ks_db_last_err(reg->dbh), sql);
	ks_db_finish(&st);
	return r;
}

/*
 * Schema version: PRAGMA user_version on SQLite; on PostgreSQL the one
 * row of table kiln_schema (created before the first migration).
 */
static int schema_get(ks_reg_t *reg, int *version)
{
	int r;

	if (ks_db_backend(reg->dbh) == KS_DB_SQLITE)
		return pragma_int(reg, "PRAGMA user_version", version);
	*version = 0;
	r = ks_db_exec(reg->dbh, "CREATE TABLE IF NOT EXISTS kiln_schema("
				 "version INTEGER NOT NULL)");
	if (r != KS_DB_EOK)
		return ks_reg_db_err(reg, r, "kiln_schema");
	return pragma_int(reg, "SELECT coalesce(max(version), 0) FROM "
			       "kiln_schema", version);
}

static int schema_set(ks_reg_t *reg, int version)
{
	char sql[96];

	if (ks_db_backend(reg->dbh) == KS_DB_SQLITE)
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
	else
		snprintf(sql, sizeof(sql), "DELETE FROM kiln_schema; INSERT "
			 "INTO kiln_schema(version) VALUES(%d)", version);
	return ks_db_exec(reg->dbh, sql);
}

static const ks_db_migration_t *migrations(ks_reg_t *reg, unsigned *count)
{
	if (ks_db_backend(reg->dbh) == KS_DB_PG) {
		*count = ks_db_pg_migration_count;
		return ks_db_pg_migrations;
	}
	*count = ks_db_migration_count;
	return ks_db_migrations;
}

static int migrate(ks_reg_t *reg)
{
	int version = 0;
	int r;
	unsigned i, count = 0;
	const ks_db_migration_t *list = migrations(reg, &count);

	if (ks_db_backend(reg->dbh) == KS_DB_PG) {
		/* one migrator at a time across stations */
		r = ks_reg_tx_begin(reg);
		if (r != KS_OK)
			return r;
		r = schema_get(reg, &version);
		if (r == KS_OK)
			r = ks_reg_tx_commit(reg);
		else
			ks_reg_tx_rollback(reg);
	} else {
		r = schema_get(reg, &version);
	}
	if (r != KS_OK)
		return r;
	if (version < 0 || version > (int)count) {
		ks_log_error("registry schema version %d is newer than this "
			     "build supports (%u): refusing to open it",
			     version, count);
		return KS_ERR_UNSUPPORTED;
	}
	for (i = (unsigned)version; i < count; i++) {
		const ks_db_migration_t *m = &list[i];
		int now = 0;
		int rc;

		r = ks_reg_tx_begin(reg);
		if (r != KS_OK)
			return r;
		/* Another process may have migrated meanwhile. */
		r = schema_get(reg, &now);
		if (r != KS_OK || now >= m->version) {
			ks_reg_tx_rollback(reg);
			if (r != KS_OK)
				return r;
			continue;
		}
		rc = ks_db_exec(reg->dbh, m->sql);
		if (rc == KS_DB_EOK)
			rc = schema_set(reg, m->version);
		if (rc != KS_DB_EOK) {
			r = ks_reg_db_err(reg, rc, m->name);
			ks_reg_tx_rollback(reg);
			return r;
		}
		r = ks_reg_tx_commit(reg);
		if (r != KS_OK)
			return r;
		ks_log_info("registry migrated to schema %d (%s)", m->version,
			    m->name);
	}
	return KS_OK;
}

static int open_pragmas(ks_reg_t *reg)
{
	ks_db_stmt_t *st = NULL;
	int r;
	int ok = 0;

	if (ks_db_backend(reg->dbh) != KS_DB_SQLITE)
		return KS_OK; /* synchronous_commit = on: set by db_pg.c */
	r = prep(reg, "PRAGMA journal_mode = WAL", &st);
	if (r != KS_OK)
		return r;
	if (ks_db_step(st) == KS_DB_ROW) {
		const char *mode = ks_db_col_text(st, 0);

		ok = mode != NULL && strcmp(mode, "wal") == 0;
	}
	ks_db_finish(&st);
	if (!ok) {
		ks_log_error("could not switch the registry to WAL mode");
		return KS_ERR_DB;
	}
	/* temp_store MEMORY: statement journals of savepoints (group commit)
	 * stay in RAM instead of a temporary file; durability is the WAL's */
	if (ks_db_exec(reg->dbh, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; "
			 "PRAGMA temp_store = MEMORY;") != KS_DB_EOK)
		return ks_reg_db_err(reg, ks_db_last_err(reg->dbh),
					 "pragmas");
	return KS_OK;
}

static int register_station(ks_reg_t *reg)
{
	ks_db_stmt_t *st = NULL;
	int r;

	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		return r;
	r = prep(reg,
		 "INSERT INTO stations(id, created_ms) VALUES(?, ?) "
		 "ON CONFLICT DO NOTHING",
		 &st);
	if (r == KS_OK) {
		bind_text(st, 1, reg->station);
		ks_db_bind_int64(st, 2, ks_reg_now_ms());
		r = run(reg, st, "insert station");
	}
	if (r == KS_OK)
		r = ks_reg_tx_commit(reg);
	else
		ks_reg_tx_rollback(reg);
	return r;
}

int ks_reg_open(const char *path, const char *station_id, ks_reg_t **out)
{
	return ks_reg_open_ex(path, station_id, NULL, out);
}

int ks_reg_open_ex(const char *path, const char *station_id,
		   const ks_reg_opts_t *opts, ks_reg_t **out)
{
	pthread_mutexattr_t mattr;
	ks_reg_t *reg = NULL;
	char shown[512];
	int r = KS_ERR_ARG;
	int rc;

	if (out == NULL)
		return KS_ERR_ARG;
	*out = NULL;
	if (path == NULL || station_id == NULL || station_id[0] == '\0' ||
	    strlen(station_id) >= KS_REG_NAME_MAX)
		goto out;
	if (opts != NULL && opts->serial_block > KS_REG_SERIAL_BLOCK_MAX) {
		ks_log_error("serial_block %u is above the largest block "
			     "(%u)", opts->serial_block,
			     KS_REG_SERIAL_BLOCK_MAX);
		goto out;
	}
	r = KS_ERR_NOMEM;
	reg = calloc(1, sizeof(*reg));
	if (reg == NULL) {
		ks_log_error("cannot open registry %s: out of memory", path);
		goto out;
	}
	/* recursive: a group commit holds mu across the steps it groups */
	if (pthread_mutexattr_init(&mattr) != 0 ||
	    pthread_mutexattr_settype(&mattr, PTHREAD_MUTEX_RECURSIVE) != 0 ||
	    pthread_mutex_init(&reg->mu, &mattr) != 0) {
		pthread_mutexattr_destroy(&mattr);
		free(reg);
		reg = NULL;
		goto out;
	}
	pthread_mutexattr_destroy(&mattr);
	snprintf(reg->station, sizeof(reg->station), "%s", station_id);
	reg->cp_every = KS_REG_CHECKPOINT_DEFAULT;
	reg->serial_block = KS_REG_SERIAL_BLOCK_DEFAULT;
	reg->timeout_ms = KS_REG_TIMEOUT_DEFAULT * 1000;
	if (opts != NULL && opts->serial_block != 0)
		reg->serial_block = opts->serial_block;
	if (opts != NULL && opts->timeout_s != 0)
		reg->timeout_ms = (int64_t)opts->timeout_s * 1000;
	ks_db_url_mask(path, shown, sizeof(shown));
	rc = ks_db_open(path, &reg->dbh);
	if (rc != KS_DB_EOK) {
		ks_log_error("cannot open registry %s: %s", shown,
			     ks_db_errmsg(reg->dbh));
		r = rc == KS_DB_ECONN ? KS_ERR_UNAVAILABLE
		    : rc == KS_DB_ENOMEM ? KS_ERR_NOMEM : KS_ERR_DB;
		goto out;
	}
	r = open_pragmas(reg);
	if (r != KS_OK)
		goto out;
	r = migrate(reg);
	if (r != KS_OK)
		goto out;
	r = register_station(reg);
	if (r != KS_OK)
		goto out;
	*out = reg;
	reg = NULL;
	r = KS_OK;
out:
	if (reg != NULL) {
		ks_db_close(&reg->dbh);
		ks_reg_close(&reg);
	}
	return r;
}

void ks_reg_close(ks_reg_t **preg)
{
	ks_reg_t *reg;
	int64_t pending = 0;

	if (preg == NULL || *preg == NULL)
		return;
	reg = *preg;
	*preg = NULL;
	if (reg->dbh != NULL && reg->key != NULL) {
		pthread_mutex_lock(&reg->mu);
		if (ks_audit_since_checkpoint(reg, &pending) == KS_OK &&
		    pending > 0 && ks_reg_tx_begin(reg) == KS_OK) {
			if (ks_audit_append_checkpoint(reg, NULL) != KS_OK ||
			    ks_reg_tx_commit(reg) != KS_OK) {
				ks_reg_tx_rollback(reg);
				ks_log_warn("no checkpoint written at close");
			}
		}
		pthread_mutex_unlock(&reg->mu);
	}
	ks_db_close(&reg->dbh);
	EVP_PKEY_free(reg->key);
	pthread_mutex_destroy(&reg->mu);
	free(reg);
}

int ks_reg_set_station_key(ks_reg_t *reg, EVP_PKEY *key)
{
	char group[32] = "";
	uint8_t hash[32];
	size_t glen = 0;
	int r;

	if (reg == NULL)
		return KS_ERR_ARG;
	if (key != NULL) {
		if (!EVP_PKEY_is_a(key, "EC") ||
		    !EVP_PKEY_get_utf8_string_param(key, "group", group,
						    sizeof(group), &glen) ||
		    strcmp(group, "prime256v1") != 0) {
			ks_log_error("station key must be an EC P-256 key");
			return KS_ERR_ARG;
		}
		r = ks_audit_pubkey_sha256(key, hash);
		if (r != KS_OK)
			return r;
		if (!EVP_PKEY_up_ref(key))
			return KS_ERR_CRYPTO;
	}
	pthread_mutex_lock(&reg->mu);
	EVP_PKEY_free(reg->key);
	reg->key = key;
	if (key != NULL)
		memcpy(reg->key_sha256, hash, 32);
	pthread_mutex_unlock(&reg->mu);
	return KS_OK;
}

void ks_reg_set_checkpoint_interval(ks_reg_t *reg, unsigned every)
{
	if (reg == NULL)
		return;
	pthread_mutex_lock(&reg->mu);
	reg->cp_every = every;
	pthread_mutex_unlock(&reg->mu);
}

void ks_reg_set_fault_hook(ks_reg_t *reg,
			   void (*hook)(void *ctx, const char *point),
			   void *ctx)
{
	if (reg == NULL)
		return;
	pthread_mutex_lock(&reg->mu);
	reg->hook = hook;
	reg->hook_ctx = ctx;
	pthread_mutex_unlock(&reg->mu);
}

/* ---- lots ---- */

static int valid_name(const char *s)
{
	size_t n;

	if (s == NULL)
		return 0;
	n = strlen(s);
	return n > 0 && n < KS_REG_NAME_MAX;
}

int ks_reg_lot_create(ks_reg_t *reg, const char *name, const char *profile,
		      const char *serial_prefix, int64_t quota,
		      const char *actor)
{
	ks_db_stmt_t *st = NULL;
	char *details = NULL;
	int r = KS_ERR_ARG;

	if (reg == NULL || !valid_name(name) || !valid_name(profile) ||
	    !valid_name(serial_prefix) ||
	    strlen(serial_prefix) > KS_REG_SERIAL_MAX - 24)
		return KS_ERR_ARG;
	details = json_text(json_pack("{s:s, s:s, s:s, s:o}", "lot", name,
				      "profile", profile, "serial_prefix",
				      serial_prefix, "quota",
				      quota < 0 ? json_null()
						: json_integer(quota)));
	if (details == NULL)
		return KS_ERR_NOMEM;
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	r = prep(reg,
		 "INSERT INTO lots(name, profile, serial_prefix, quota, "
		 "station_id, created_ms) VALUES(?, ?, ?, ?, ?, ?)",
		 &st);
	if (r != KS_OK)
		goto out;
	bind_text(st, 1, name);
	bind_text(st, 2, profile);
	bind_text(st, 3, serial_prefix);
	if (quota < 0)
		ks_db_bind_null(st, 4);
	else
		ks_db_bind_int64(st, 4, quota);
	bind_text(st, 5, reg->station);
	ks_db_bind_int64(st, 6, ks_reg_now_ms());
	r = run(reg, st, "insert lot");
	if (r != KS_OK)
		goto out;
	{
		ks_audit_ev_t ev = { .type = KS_REG_EV_LOT_CREATED,
				     .actor = actor_or_default(actor),
				     .details = details };

		r = ks_audit_append(reg, &ev, NULL);
	}
	if (r != KS_OK)
		goto out;
	r = ks_reg_tx_commit(reg);
out:
	if (r != KS_OK)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}

int ks_reg_lot_close(ks_reg_t *reg, const char *name, const char *actor)
{
	ks_db_stmt_t *st = NULL;
	char *details = NULL;
	int r;

	if (reg == NULL || !valid_name(name))
		return KS_ERR_ARG;
	details = json_text(json_pack("{s:s}", "lot", name));
	if (details == NULL)
		return KS_ERR_NOMEM;
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	r = prep(reg,
		 "UPDATE lots SET closed_ms = ? WHERE name = ? AND "
		 "closed_ms IS NULL",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_int64(st, 1, ks_reg_now_ms());
	bind_text(st, 2, name);
	r = run(reg, st, "close lot");
	if (r != KS_OK)
		goto out;
	if (ks_db_changes(reg->dbh) != 1) {
		r = KS_ERR_NOTFOUND;
		goto out;
	}
	{
		ks_audit_ev_t ev = { .type = KS_REG_EV_LOT_CLOSED,
				     .actor = actor_or_default(actor),
				     .details = details };

		r = ks_audit_append(reg, &ev, NULL);
	}
	if (r == KS_OK)
		r = ks_reg_tx_commit(reg);
out:
	if (r != KS_OK)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}

#define LOT_SELECT                                                          \
	"SELECT l.id, l.name, l.profile, l.serial_prefix, l.station_id, "   \
	"coalesce(l.quota, -1), l.created_ms, coalesce(l.closed_ms, 0), "   \
	"(SELECT count(*) FROM sessions s WHERE s.lot_id = l.id AND "       \
	" s.state NOT IN " FINAL_STATES "), "                               \
	"(SELECT count(*) FROM sessions s WHERE s.lot_id = l.id AND "       \
	" s.state = 'ACTIVE'), "                                            \
	"(SELECT count(*) FROM sessions s WHERE s.lot_id = l.id AND "       \
	" s.state = 'FAILED'), "                                            \
	"(SELECT count(*) FROM sessions s WHERE s.lot_id = l.id AND "       \
	" s.state = 'VOID'), "                                              \
	"(SELECT count(*) FROM sessions s WHERE s.lot_id = l.id AND "       \
	" s.state = 'SCRAPPED') FROM lots l "

static void lot_from_row(ks_db_stmt_t *st, ks_reg_lot_t *lot)
{
	memset(lot, 0, sizeof(*lot));
	lot->id = ks_db_col_int64(st, 0);
	col_text(st, 1, lot->name, sizeof(lot->name));
	col_text(st, 2, lot->profile, sizeof(lot->profile));
	col_text(st, 3, lot->serial_prefix, sizeof(lot->serial_prefix));
	col_text(st, 4, lot->station, sizeof(lot->station));
	lot->quota = ks_db_col_int64(st, 5);
	lot->created_ms = ks_db_col_int64(st, 6);
	lot->closed_ms = ks_db_col_int64(st, 7);
	lot->reserved = (uint64_t)ks_db_col_int64(st, 8);
	lot->active = (uint64_t)ks_db_col_int64(st, 9);
	lot->failed = (uint64_t)ks_db_col_int64(st, 10);
	lot->voided = (uint64_t)ks_db_col_int64(st, 11);
	lot->scrapped = (uint64_t)ks_db_col_int64(st, 12);
}

int ks_reg_lot_get(ks_reg_t *reg, const char *name, ks_reg_lot_t *out)
{
	ks_db_stmt_t *st = NULL;
	int r;
	int rc;

	if (reg == NULL || name == NULL || out == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	r = prep(reg, LOT_SELECT "WHERE l.name = ?", &st);
	if (r == KS_OK) {
		bind_text(st, 1, name);
		rc = ks_db_step(st);
		if (rc == KS_DB_ROW)
			lot_from_row(st, out);
		else if (rc == KS_DB_DONE)
			r = KS_ERR_NOTFOUND;
		else
			r = ks_reg_db_err(reg, rc, "lot get");
		ks_db_finish(&st);
	}
	pthread_mutex_unlock(&reg->mu);
	return r;
}

/* Grow a malloc'ed array of `size`-byte elements to hold n+1. */
static void *grow(void *arr, size_t n, size_t *cap, size_t size)
{
	void *p;
	size_t ncap;

	if (n < *cap)
		return arr;
	ncap = *cap ? *cap * 2 : 16;
	if (ncap > SIZE_MAX / size)
		return NULL;
	p = realloc(arr, ncap * size);
	if (p != NULL)
		*cap = ncap;
	return p;
}

int ks_reg_lot_list(ks_reg_t *reg, ks_reg_lot_t **lots, size_t *n)
{
	ks_db_stmt_t *st = NULL;
	ks_reg_lot_t *arr = NULL;
	size_t cnt = 0, cap = 0;
	int r;
	int rc;

	if (reg == NULL || lots == NULL || n == NULL)
		return KS_ERR_ARG;
	*lots = NULL;
	*n = 0;
	pthread_mutex_lock(&reg->mu);
	r = prep(reg, LOT_SELECT "ORDER BY l.id", &st);
	if (r != KS_OK)
		goto out;
	while ((rc = ks_db_step(st)) == KS_DB_ROW) {
		ks_reg_lot_t *p = grow(arr, cnt, &cap, sizeof(*arr));

		if (p == NULL) {
			r = KS_ERR_NOMEM;
			goto out;
		}
		arr = p;
		lot_from_row(st, &arr[cnt++]);
	}
	if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "lot list");
		goto out;
	}
	*lots = arr;
	*n = cnt;
	arr = NULL;
out:
	ks_db_finish(&st);
	pthread_mutex_unlock(&reg->mu);
	free(arr);
	return r;
}

/* ---- sessions ---- */

#define SESSION_SELECT                                                      \
	"SELECT s.id, s.uid, s.device_serial, l.name, s.profile, "          \
	"s.station_id, s.slot, s.key_origin, s.state, s.reprovision, "      \
	"s.failure_reason, s.pubkey_sha256, s.identity_digest, "            \
	"s.lock_bits, s.started_ms, s.updated_ms, coalesce(s.ended_ms, 0) " \
	"FROM sessions s JOIN lots l ON l.id = s.lot_id "

static void session_from_row(ks_db_stmt_t *st, ks_reg_session_t *s)
{
	int n;

	memset(s, 0, sizeof(*s));
	s->id = ks_db_col_int64(st, 0);
	n = (int)ks_db_col_bytes(st, 1);
	if (n > 0 && (size_t)n <= KS_REG_UID_MAX) {
		memcpy(s->uid, ks_db_col_blob(st, 1), (size_t)n);
		s->uid_len = (size_t)n;
	}
	col_text(st, 2, s->serial, sizeof(s->serial));
	col_text(st, 3, s->lot, sizeof(s->lot));
	col_text(st, 4, s->profile, sizeof(s->profile));
	col_text(st, 5, s->station, sizeof(s->station));
	s->slot = ks_db_col_int(st, 6);
	s->key_origin = (ks_reg_key_origin_t)key_origin_parse(
		ks_db_col_text(st, 7));
	s->state = (ks_reg_state_t)ks_reg_state_parse(
		ks_db_col_text(st, 8));
	s->reprovision = ks_db_col_int(st, 9);
	col_text(st, 10, s->failure_reason, sizeof(s->failure_reason));
	s->has_pubkey = col_hash(st, 11, s->pubkey_sha256);
	s->has_identity_digest = col_hash(st, 12, s->identity_digest);
	s->has_lock_bits = ks_db_col_type(st, 13) != KS_DB_T_NULL;
	s->lock_bits = (uint32_t)ks_db_col_int64(st, 13);
	s->started_ms = ks_db_col_int64(st, 14);
	s->updated_ms = ks_db_col_int64(st, 15);
	s->ended_ms = ks_db_col_int64(st, 16);
}

static int session_get_locked(ks_reg_t *reg, int64_t id,
			      ks_reg_session_t *out)
{
	ks_db_stmt_t *st = NULL;
	int r;
	int rc;

	r = prep(reg, SESSION_SELECT "WHERE s.id = ?", &st);
	if (r != KS_OK)
		return r;
	ks_db_bind_int64(st, 1, id);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW)
		session_from_row(st, out);
	else if (rc == KS_DB_DONE)
		r = KS_ERR_NOTFOUND;
	else
		r = ks_reg_db_err(reg, rc, "session get");
	ks_db_finish(&st);
	return r;
}

int ks_reg_session_get(ks_reg_t *reg, int64_t id, ks_reg_session_t *out)
{
	int r;

	if (reg == NULL || out == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	r = session_get_locked(reg, id, out);
	pthread_mutex_unlock(&reg->mu);
	return r;
}

/* Id of the UID's unfinished session, 0 if none, <0 on error. */
static int64_t pending_id(ks_reg_t *reg, const uint8_t *uid, size_t uid_len)
{
	ks_db_stmt_t *st = NULL;
	int64_t id = -1;
	int rc;

	if (prep(reg,
		 "SELECT id FROM sessions WHERE uid = ? AND state NOT IN "
		 FINAL_STATES,
		 &st) != KS_OK)
		return -1;
	bind_blob(st, 1, uid, uid_len);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW)
		id = ks_db_col_int64(st, 0);
	else if (rc == KS_DB_DONE)
		id = 0;
	ks_db_finish(&st);
	return id;
}

/* "UID ... is being provisioned at station X since ..." */
static void log_held(const uint8_t *uid, size_t uid_len, const char *station,
		     int64_t since_ms)
{
	char hex[2 * KS_REG_UID_MAX + 1];
	char when[32] = "?";
	time_t t = (time_t)(since_ms / 1000);
	struct tm tm;

	ks_reg_hex(uid, uid_len, hex);
	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	ks_log_error("UID %s is being provisioned at station %s since %s: "
		     "refused here (only that station resumes or ends the "
		     "session; an operator may release a dead station's "
		     "session)",
		     hex, station, when);
}

int ks_reg_pending_session(ks_reg_t *reg, const uint8_t *uid, size_t uid_len,
			   ks_reg_session_t *out)
{
	int64_t id;
	int r;

	if (reg == NULL || uid == NULL || uid_len == 0 ||
	    uid_len > KS_REG_UID_MAX || out == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	id = pending_id(reg, uid, uid_len);
	if (id < 0)
		r = KS_ERR_DB;
	else if (id == 0)
		r = KS_ERR_NOTFOUND;
	else
		r = session_get_locked(reg, id, out);
	if (r == KS_OK && strcmp(out->station, reg->station) != 0) {
		/* another station's session: not ours to resume */
		log_held(uid, uid_len, out->station, out->started_ms);
		r = KS_ERR_BUSY;
	}
	pthread_mutex_unlock(&reg->mu);
	return r;
}

int ks_reg_session_list(ks_reg_t *reg, const char *lot, int state,
			size_t limit, ks_reg_session_t **out, size_t *n)
{
	ks_db_stmt_t *st = NULL;
	ks_reg_session_t *arr = NULL;
	size_t cnt = 0, cap = 0;
	int r;
	int rc;

	if (reg == NULL || out == NULL || n == NULL ||
	    state >= KS_REG_STATE_COUNT)
		return KS_ERR_ARG;
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&reg->mu);
	r = prep(reg,
		 SESSION_SELECT "WHERE (?1 IS NULL OR l.name = ?1) AND "
				"(?2 IS NULL OR s.state = ?2) "
				"ORDER BY s.id DESC LIMIT ?3",
		 &st);
	if (r != KS_OK)
		goto out;
	bind_text(st, 1, lot);
	bind_text(st, 2, state >= 0 ? ks_reg_state_name(state) : NULL);
	ks_db_bind_int64(st, 3, limit ? (int64_t)limit : -1);
	while ((rc = ks_db_step(st)) == KS_DB_ROW) {
		ks_reg_session_t *p = grow(arr, cnt, &cap, sizeof(*arr));

		if (p == NULL) {
			r = KS_ERR_NOMEM;
			goto out;
		}
		arr = p;
		session_from_row(st, &arr[cnt++]);
	}
	if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "session list");
		goto out;
	}
	*out = arr;
	*n = cnt;
	arr = NULL;
out:
	ks_db_finish(&st);
	pthread_mutex_unlock(&reg->mu);
	free(arr);
	return r;
}

int ks_reg_session_steps(ks_reg_t *reg, int64_t id, ks_reg_step_t **out,
			 size_t *n)
{
	ks_db_stmt_t *st = NULL;
	ks_reg_step_t *arr = NULL;
	size_t cnt = 0, cap = 0;
	int r;
	int rc;

	if (reg == NULL || out == NULL || n == NULL)
		return KS_ERR_ARG;
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&reg->mu);
	r = prep(reg,
		 "SELECT step, at_ms, duration_ms FROM session_steps WHERE "
		 "session_id = ? ORDER BY at_ms, rowid",
		 &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_int64(st, 1, id);
	while ((rc = ks_db_step(st)) == KS_DB_ROW) {
		ks_reg_step_t *p = grow(arr, cnt, &cap, sizeof(*arr));

		if (p == NULL) {
			r = KS_ERR_NOMEM;
			goto out;
		}
		arr = p;
		col_text(st, 0, arr[cnt].step, sizeof(arr[cnt].step));
		arr[cnt].at_ms = ks_db_col_int64(st, 1);
		arr[cnt].duration_ms = ks_db_col_int64(st, 2);
		cnt++;
	}
	if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "session steps");
		goto out;
	}
	*out = arr;
	*n = cnt;
	arr = NULL;
out:
	ks_db_finish(&st);
	pthread_mutex_unlock(&reg->mu);
	free(arr);
	return r;
}

/* Record that session `sid` reached `step` now. */
static int record_step(ks_reg_t *reg, int64_t sid, const char *step,
		       int64_t now)
{
	ks_db_stmt_t *st = NULL;
	int r;

	r = prep(reg,
		 "INSERT INTO session_steps(session_id, step, at_ms, "
		 "duration_ms) VALUES(?1, ?2, ?3, ?3 - coalesce((SELECT "
		 "max(at_ms) FROM session_steps WHERE session_id = ?1), ?3))",
		 &st);
	if (r != KS_OK)
		return r;
	ks_db_bind_int64(st, 1, sid);
	bind_text(st, 2, step);
	ks_db_bind_int64(st, 3, now);
	return run(reg, st, "insert step");
}

/* ---- leased serial blocks ---- */

/*
 * Lease `n` serials of `prefix` in the caller's transaction: the shared
 * counter moves by n and the block is recorded in serial_blocks. The
 * database's unique constraints on device serials stay the last word.
 */
static int lease_block(ks_reg_t *reg, const char *prefix, int64_t n,
		       int64_t *first, int64_t *last)
{
	ks_db_stmt_t *st = NULL;
	int64_t end = 0;
	int r;

	r = prep(reg,
		 "INSERT INTO serial_counters(prefix, next) VALUES(?1, ?2) "
		 "ON CONFLICT(prefix) DO UPDATE SET next = "
		 "serial_counters.next + ?2 RETURNING next",
		 &st);
	if (r != KS_OK)
		return r;
	bind_text(st, 1, prefix);
	ks_db_bind_int64(st, 2, n);
	if (ks_db_step(st) == KS_DB_ROW)
		end = ks_db_col_int64(st, 0);
	else
		r = ks_reg_db_err(reg, ks_db_last_err(reg->dbh),
				  "serial counter");
	ks_db_finish(&st);
	if (r != KS_OK)
		return r;
	if (end < n) {
		ks_log_error("serial counter of %s is inconsistent (%lld)",
			     prefix, (long long)end);
		return KS_ERR_DB;
	}
	r = prep(reg,
		 "INSERT INTO serial_blocks(prefix, station_id, first, last, "
		 "leased_at) VALUES(?, ?, ?, ?, ?)",
		 &st);
	if (r != KS_OK)
		return r;
	bind_text(st, 1, prefix);
	bind_text(st, 2, reg->station);
	ks_db_bind_int64(st, 3, end - n + 1);
	ks_db_bind_int64(st, 4, end);
	ks_db_bind_int64(st, 5, ks_reg_now_ms());
	r = run(reg, st, "serial block");
	if (r != KS_OK)
		return r;
	*first = end - n + 1;
	*last = end;
	ks_log_debug("leased serials %s-%06lld..%06lld", prefix,
		     (long long)*first, (long long)*last);
	return KS_OK;
}

/* The lease slot of `prefix` (a new or least recently used one). */
static ks_reg_lease_t *lease_slot(ks_reg_t *reg, const char *prefix)
{
	ks_reg_lease_t *l, *victim = &reg->leases[0];
	size_t i;

	for (i = 0; i < KS_REG_LEASES; i++) {
		l = &reg->leases[i];
		if (strcmp(l->prefix, prefix) == 0)
			return l;
		if (l->used < victim->used)
			victim = l;
	}
	/* an unused remainder of the evicted prefix becomes a gap */
	memset(victim, 0, sizeof(*victim));
	snprintf(victim->prefix, sizeof(victim->prefix), "%s", prefix);
	victim->next = 1;
	victim->last = 0;
	return victim;
}

static int64_t lease_left(const ks_reg_lease_t *l)
{
	int64_t n = l->next <= l->last ? l->last - l->next + 1 : 0;

	if (l->spare_first != 0)
		n += l->spare_last - l->spare_first + 1;
	return n;
}

/* Forget leases taken in a transaction that did not commit. */
static void leases_forget_tentative(ks_reg_t *reg)
{
	size_t i;

	for (i = 0; i < KS_REG_LEASES; i++)
		if (reg->leases[i].tentative)
			memset(&reg->leases[i], 0, sizeof(reg->leases[i]));
	reg->refill = 0;
}

static void leases_committed(ks_reg_t *reg)
{
	size_t i;

	for (i = 0; i < KS_REG_LEASES; i++)
		reg->leases[i].tentative = 0;
}

/*
 * After a commit: take the next block of every lease that ran below a
 * quarter of a block, in its own short transaction, so the station has
 * serials in hand before it runs dry. A failure (outage) only logs: the
 * remaining serials still serve, and the session that empties the lease
 * leases inside its own transaction.
 */
static void leases_refill(ks_reg_t *reg)
{
	size_t i;
	int r;

	if (!reg->refill || reg->group || reg->in_refill)
		return;
	reg->refill = 0;
	reg->in_refill = 1;
	for (i = 0; i < KS_REG_LEASES; i++) {
		ks_reg_lease_t *l = &reg->leases[i];
		int64_t first = 0, last = 0;

		if (l->prefix[0] == '\0' || l->spare_first != 0 ||
		    lease_left(l) * 4 >= (int64_t)reg->serial_block)
			continue;
		r = ks_reg_tx_begin(reg);
		if (r == KS_OK) {
			r = lease_block(reg, l->prefix,
					(int64_t)reg->serial_block, &first,
					&last);
			if (r == KS_OK)
				r = ks_reg_tx_commit(reg);
			else
				ks_reg_tx_rollback(reg);
		}
		if (r != KS_OK) {
			ks_log_warn("could not lease the next serial block of "
				    "%s (%s); %lld serials left",
				    l->prefix, ks_strerror(r),
				    (long long)lease_left(l));
			continue;
		}
		l->spare_first = first;
		l->spare_last = last;
	}
	reg->in_refill = 0;
}

/* Next device serial for `prefix`, taken from the station's lease inside
 * the caller's transaction (which records it with its session). */
int ks_reg_serial_take(ks_reg_t *reg, const char *prefix, char *out,
		       size_t cap)
{
	ks_reg_lease_t *l = lease_slot(reg, prefix);
	int64_t serial;
	int r;

	l->used = ++reg->lease_clock;
	if (l->next > l->last && l->spare_first != 0) {
		l->next = l->spare_first;
		l->last = l->spare_last;
		l->spare_first = l->spare_last = 0;
	}
	if (l->next > l->last) {
		int64_t first = 0, last = 0;

		r = lease_block(reg, prefix, (int64_t)reg->serial_block,
				&first, &last);
		if (r != KS_OK)
			return r;
		l->next = first;
		l->last = last;
		l->tentative = 1;
	}
	serial = l->next++;
	if (l->spare_first == 0 &&
	    lease_left(l) * 4 < (int64_t)reg->serial_block)
		reg->refill = 1;
	if ((size_t)snprintf(out, cap, "%s-%06lld", prefix,
			     (long long)serial) >= cap)
		return KS_ERR_INTERNAL;
	return KS_OK;
}

typedef struct {
	int64_t id;
	char profile[KS_REG_NAME_MAX];
	char prefix[KS_REG_NAME_MAX];
	int64_t quota;
	int closed;
} lot_row_t;

static int lot_lookup(ks_reg_t *reg, const char *name, lot_row_t *lot)
{
	ks_db_stmt_t *st = NULL;
	int r;
	int rc;

	r = prep(reg,
		 "SELECT id, profile, serial_prefix, coalesce(quota, -1), "
		 "closed_ms IS NOT NULL FROM lots WHERE name = ?",
		 &st);
	if (r != KS_OK)
		return r;
	bind_text(st, 1, name);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW) {
		lot->id = ks_db_col_int64(st, 0);
		col_text(st, 1, lot->profile, sizeof(lot->profile));
		col_text(st, 2, lot->prefix, sizeof(lot->prefix));
		lot->quota = ks_db_col_int64(st, 3);
		lot->closed = ks_db_col_int(st, 4);
	} else if (rc == KS_DB_DONE) {
		r = KS_ERR_NOTFOUND;
	} else {
		r = ks_reg_db_err(reg, rc, "lot lookup");
	}
	ks_db_finish(&st);
	return r;
}

typedef struct {
	int64_t id;          /* 0: no device row yet */
	char active_cert[KS_REG_SERIAL_MAX * 2]; /* "" if none ACTIVE */
} dev_row_t;

static int device_lookup(ks_reg_t *reg, const uint8_t *uid, size_t uid_len,
			 dev_row_t *dev)
{
	ks_db_stmt_t *st = NULL;
	int r;
	int rc;

	memset(dev, 0, sizeof(*dev));
	r = prep(reg,
		 "SELECT d.id, c.serial_hex FROM devices d LEFT JOIN "
		 "certificates c ON c.device_id = d.id AND c.status = "
		 "'ACTIVE' WHERE d.uid = ?",
		 &st);
	if (r != KS_OK)
		return r;
	bind_blob(st, 1, uid, uid_len);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW) {
		dev->id = ks_db_col_int64(st, 0);
		col_text(st, 1, dev->active_cert, sizeof(dev->active_cert));
	} else if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "device lookup");
	}
	ks_db_finish(&st);
	return r;
}

static int quota_check(ks_reg_t *reg, const lot_row_t *lot,
		       const uint8_t *uid, size_t uid_len)
{
	ks_db_stmt_t *st = NULL;
	int64_t used = 0;
	int r;

	if (lot->quota < 0)
		return KS_OK;
	/* Devices that hold (or are getting) an identity from this lot. */
	r = prep(reg,
		 "SELECT count(DISTINCT uid) FROM sessions WHERE lot_id = ? "
		 "AND uid <> ? AND state NOT IN ('FAILED', 'VOID', "
		 "'SCRAPPED')",
		 &st);
	if (r != KS_OK)
		return r;
	ks_db_bind_int64(st, 1, lot->id);
	bind_blob(st, 2, uid, uid_len);
	if (ks_db_step(st) == KS_DB_ROW)
		used = ks_db_col_int64(st, 0);
	else
		r = ks_reg_db_err(reg, ks_db_last_err(reg->dbh), "quota");
	ks_db_finish(&st);
	if (r == KS_OK && used >= lot->quota)
		r = KS_ERR_QUOTA;
	return r;
}

static int upsert_device(ks_reg_t *reg, const dev_row_t *dev,
			 const uint8_t *uid, size_t uid_len,
			 const char *serial, const lot_row_t *lot, int slot,
			 ks_reg_key_origin_t origin, int64_t now,
			 int64_t *device_id)
{
	ks_db_stmt_t *st = NULL;
	int r;

	if (dev->id == 0)
		r = prep(reg,
			 "INSERT INTO devices(uid, serial, state, key_origin, "
			 "lot_id, station_id, slot, created_ms, updated_ms) "
			 "VALUES(?1, ?2, 'RESERVED', ?3, ?4, ?5, ?6, ?7, ?7)",
			 &st);
	else
		r = prep(reg,
			 "UPDATE devices SET serial = ?2, state = 'RESERVED', "
			 "key_origin = ?3, lot_id = ?4, station_id = ?5, "
			 "slot = ?6, updated_ms = ?7 WHERE uid = ?1",
			 &st);
	if (r != KS_OK)
		return r;
	bind_blob(st, 1, uid, uid_len);
	bind_text(st, 2, serial);
	bind_text(st, 3, ks_reg_key_origin_name(origin));
	ks_db_bind_int64(st, 4, lot->id);
	bind_text(st, 5, reg->station);
	ks_db_bind_int64(st, 6, slot);
	ks_db_bind_int64(st, 7, now);
	r = run(reg, st, "device upsert");
	if (r == KS_OK)
		*device_id = dev->id ? dev->id
				     : ks_db_last_rowid(reg->dbh);
	return r;
}

typedef struct {
	int64_t id;
	int64_t device_id;
	uint8_t uid[KS_REG_UID_MAX];
	size_t uid_len;
	char serial[KS_REG_SERIAL_MAX];
	ks_reg_state_t state;
	int has_pubkey;
	uint8_t pubkey[32];
	char station[KS_REG_NAME_MAX]; /* the station that opened it */
	int64_t started_ms;
} sess_row_t;

/* Load a session whatever station opened it. */
static int sess_load_any(ks_reg_t *reg, int64_t id, sess_row_t *s)
{
	ks_db_stmt_t *st = NULL;
	int r;
	int rc;
	int n;

	memset(s, 0, sizeof(*s));
	r = prep(reg,
		 "SELECT id, device_id, uid, device_serial, state, "
		 "pubkey_sha256, station_id, started_ms FROM sessions WHERE "
		 "id = ?",
		 &st);
	if (r != KS_OK)
		return r;
	ks_db_bind_int64(st, 1, id);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW) {
		s->id = ks_db_col_int64(st, 0);
		s->device_id = ks_db_col_int64(st, 1);
		n = (int)ks_db_col_bytes(st, 2);
		if (n > 0 && (size_t)n <= KS_REG_UID_MAX) {
			memcpy(s->uid, ks_db_col_blob(st, 2), (size_t)n);
			s->uid_len = (size_t)n;
		}
		col_text(st, 3, s->serial, sizeof(s->serial));
		s->state = (ks_reg_state_t)ks_reg_state_parse(
			ks_db_col_text(st, 4));
		s->has_pubkey = col_hash(st, 5, s->pubkey);
		col_text(st, 6, s->station, sizeof(s->station));
		s->started_ms = ks_db_col_int64(st, 7);
	} else if (rc == KS_DB_DONE) {
		r = KS_ERR_NOTFOUND;
	} else {
		r = ks_reg_db_err(reg, rc, "session load");
	}
	ks_db_finish(&st);
	return r;
}

/*
 * Load a session this station may move on: a session belongs to the
 * station that opened it (on a shared registry another live station may
 * be working on it right now). KS_ERR_BUSY for another station's session.
 */
static int sess_load(ks_reg_t *reg, int64_t id, sess_row_t *s)
{
	int r = sess_load_any(reg, id, s);

	if (r == KS_OK && strcmp(s->station, reg->station) != 0) {
		ks_log_error("session %lld (%s) belongs to station %s: only "
			     "that station moves it on (an operator may end "
			     "it with ks_reg_session_release)",
			     (long long)id, s->serial, s->station);
		r = KS_ERR_BUSY;
	}
	return r;
}

int ks_reg_session_begin(ks_reg_t *reg, const uint8_t *uid, size_t uid_len,
			 const char *lot_name, const char *profile, int slot,
			 ks_reg_key_origin_t key_origin, int reprovision,
			 const char *actor, ks_reg_session_t *session)
{
	ks_db_stmt_t *st = NULL;
	lot_row_t lot;
	dev_row_t dev;
	char serial[KS_REG_SERIAL_MAX];
	char *details = NULL;
	int64_t now = ks_reg_now_ms();
	int64_t device_id = 0, sid = 0, pend;
	int r;

	if (reg == NULL || uid == NULL || uid_len == 0 ||
	    uid_len > KS_REG_UID_MAX || !valid_name(lot_name) ||
	    (profile != NULL && !valid_name(profile)) ||
	    (key_origin != KS_REG_KEY_DEVICE && key_origin != KS_REG_KEY_HOST))
		return KS_ERR_ARG;
	actor = actor_or_default(actor);
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	r = lot_lookup(reg, lot_name, &lot);
	if (r != KS_OK)
		goto out;
	if (lot.closed) {
		ks_log_warn("lot %s is closed", lot_name);
		r = KS_ERR_STATE;
		goto out;
	}
	if (profile == NULL)
		profile = lot.profile;
	pend = pending_id(reg, uid, uid_len);
	if (pend != 0) {
		sess_row_t held;

		r = pend < 0 ? KS_ERR_DB : KS_ERR_BUSY;
		if (pend > 0 && sess_load_any(reg, pend, &held) == KS_OK &&
		    strcmp(held.station, reg->station) != 0)
			log_held(uid, uid_len, held.station, held.started_ms);
		goto out;
	}
	r = device_lookup(reg, uid, uid_len, &dev);
	if (r != KS_OK)
		goto out;
	if (dev.active_cert[0] != '\0' && !reprovision) {
		r = KS_ERR_DUPLICATE;
		goto out;
	}
	r = quota_check(reg, &lot, uid, uid_len);
	if (r != KS_OK)
		goto out;
	r = ks_reg_serial_take(reg, lot.prefix, serial, sizeof(serial));
	if (r != KS_OK)
		goto out;
	ks_reg_fault(reg, "begin:serial");
	r = upsert_device(reg, &dev, uid, uid_len, serial, &lot, slot,
			  key_origin, now, &device_id);
	if (r != KS_OK)
		goto out;
	ks_reg_fault(reg, "begin:device");
	r = prep(reg,
		 "INSERT INTO sessions(uid, device_id, device_serial, lot_id, "
		 "profile, station_id, slot, key_origin, state, reprovision, "
		 "started_ms, updated_ms) VALUES(?, ?, ?, ?, ?, ?, ?, ?, "
		 "'RESERVED', ?, ?, ?)",
		 &st);
	if (r != KS_OK)
		goto out;
	bind_blob(st, 1, uid, uid_len);
	ks_db_bind_int64(st, 2, device_id);
	bind_text(st, 3, serial);
	ks_db_bind_int64(st, 4, lot.id);
	bind_text(st, 5, profile);
	bind_text(st, 6, reg->station);
	ks_db_bind_int64(st, 7, slot);
	bind_text(st, 8, ks_reg_key_origin_name(key_origin));
	ks_db_bind_int64(st, 9, reprovision ? 1 : 0);
	ks_db_bind_int64(st, 10, now);
	ks_db_bind_int64(st, 11, now);
	r = run(reg, st, "insert session");
	if (r != KS_OK)
		goto out;
	sid = ks_db_last_rowid(reg->dbh);
	ks_reg_fault(reg, "begin:session");
	r = record_step(reg, sid, "RESERVED", now);
	if (r != KS_OK)
		goto out;
	if (dev.active_cert[0] != '\0') {
		ks_audit_ev_t ev = { .type = KS_REG_EV_REPROVISION,
				     .actor = actor,
				     .uid = uid,
				     .uid_len = uid_len,
				     .device_serial = serial,
				     .cert_serial = dev.active_cert,
				     .session_id = sid };

		details = json_text(json_pack("{s:s}", "previous_cert_serial",
					      dev.active_cert));
		ev.details = details;
		r = details ? ks_audit_append(reg, &ev, NULL) : KS_ERR_NOMEM;
		free(details);
		details = NULL;
		if (r != KS_OK)
			goto out;
	}
	details = json_text(json_pack("{s:s, s:s, s:i, s:s, s:b}", "lot",
				      lot_name, "profile", profile, "slot",
				      slot, "key_origin",
				      ks_reg_key_origin_name(key_origin),
				      "reprovision", reprovision ? 1 : 0));
	if (details == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	{
		ks_audit_ev_t ev = { .type = KS_REG_EV_SESSION_RESERVED,
				     .actor = actor,
				     .uid = uid,
				     .uid_len = uid_len,
				     .device_serial = serial,
				     .session_id = sid,
				     .details = details };

		r = ks_audit_append(reg, &ev, NULL);
	}
	if (r != KS_OK)
		goto out;
	r = ks_reg_tx_commit(reg);
	if (r == KS_OK && session != NULL)
		r = session_get_locked(reg, sid, session);
out:
	if (r != KS_OK)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}

/* ---- step functions ---- */


/* Move the session (and its device) to `to`; sets ended_ms when final. */
static int set_state(ks_reg_t *reg, const sess_row_t *s, ks_reg_state_t to,
		     int64_t now)
{
	ks_db_stmt_t *st = NULL;
	int r;

	r = prep(reg,
		 "UPDATE sessions SET state = ?1, updated_ms = ?2, ended_ms = "
		 "CASE WHEN ?3 <> 0 THEN CAST(?2 AS BIGINT) ELSE NULL END "
		 "WHERE id = ?4",
		 &st);
	if (r != KS_OK)
		return r;
	bind_text(st, 1, ks_reg_state_name(to));
	ks_db_bind_int64(st, 2, now);
	ks_db_bind_int64(st, 3, ks_reg_state_is_final(to));
	ks_db_bind_int64(st, 4, s->id);
	r = run(reg, st, "session state");
	if (r != KS_OK)
		return r;
	ks_reg_fault(reg, "step:session");
	r = prep(reg,
		 "UPDATE devices SET state = ?, updated_ms = ? WHERE id = ? "
		 "AND serial = ?",
		 &st);
	if (r != KS_OK)
		return r;
	bind_text(st, 1, ks_reg_state_name(to));
	ks_db_bind_int64(st, 2, now);
	ks_db_bind_int64(st, 3, s->device_id);
	bind_text(st, 4, s->serial);
	r = run(reg, st, "device state");
	if (r != KS_OK)
		return r;
	return record_step(reg, s->id, ks_reg_state_name(to), now);
}

static int append_session_event(ks_reg_t *reg, const sess_row_t *s,
				ks_reg_event_t type, const char *actor,
				const char *cert_serial, const char *details)
{
	ks_audit_ev_t ev = { .type = type,
			     .actor = actor_or_default(actor),
			     .uid = s->uid,
			     .uid_len = s->uid_len,
			     .device_serial = s->serial,
			     .cert_serial = cert_serial,
			     .session_id = s->id,
			     .details = details };

	return ks_audit_append(reg, &ev, NULL);
}

/* Execute one UPDATE with an int64 id bound at ?1 and optional blob ?2. */
static int update_session_col(ks_reg_t *reg, const char *sql, int64_t id,
			      const void *blob, size_t blob_len,
			      int64_t ival)
{
	ks_db_stmt_t *st = NULL;
	int r = prep(reg, sql, &st);

	if (r != KS_OK)
		return r;
	ks_db_bind_int64(st, 1, id);
	if (blob != NULL)
		bind_blob(st, 2, blob, blob_len);
	else
		ks_db_bind_int64(st, 2, ival);
	return run(reg, st, sql);
}

typedef struct {
	ks_reg_state_t from;
	ks_reg_state_t to;
	ks_reg_event_t ev;
} step_t;

/*
 * Common frame of a simple step: lock, begin, load, check state, run
 * `extra` (may be NULL), move state, append event, commit.
 */
typedef int (*step_extra_fn)(ks_reg_t *reg, const sess_row_t *s,
			     const void *arg, char **details);

static int do_step(ks_reg_t *reg, int64_t sid, const step_t *step,
		   step_extra_fn extra, const void *arg, const char *actor)
{
	sess_row_t s;
	char *details = NULL;
	int64_t now = ks_reg_now_ms();
	int r;

	if (reg == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	r = sess_load(reg, sid, &s);
	if (r != KS_OK)
		goto out;
	if (s.state != step->from) {
		ks_log_warn("session %lld is %s, not %s",
			    (long long)sid, ks_reg_state_name(s.state),
			    ks_reg_state_name(step->from));
		r = KS_ERR_STATE;
		goto out;
	}
	if (extra != NULL) {
		r = extra(reg, &s, arg, &details);
		if (r != KS_OK)
			goto out;
	}
	r = set_state(reg, &s, step->to, now);
	if (r != KS_OK)
		goto out;
	r = append_session_event(reg, &s, step->ev, actor, NULL, details);
	if (r != KS_OK)
		goto out;
	r = ks_reg_tx_commit(reg);
out:
	if (r != KS_OK)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}

typedef struct {
	const uint8_t *hash;
	ks_reg_key_origin_t origin;
} keyed_arg_t;

static int keyed_extra(ks_reg_t *reg, const sess_row_t *s, const void *arg,
		       char **details)
{
	const keyed_arg_t *a = arg;
	ks_db_stmt_t *st = NULL;
	char hex[65];
	int r;

	r = prep(reg,
		 "UPDATE sessions SET pubkey_sha256 = ?, key_origin = ? "
		 "WHERE id = ?",
		 &st);
	if (r != KS_OK)
		return r;
	bind_blob(st, 1, a->hash, 32);
	bind_text(st, 2, ks_reg_key_origin_name(a->origin));
	ks_db_bind_int64(st, 3, s->id);
	r = run(reg, st, "keyed");
	if (r != KS_OK)
		return r;
	ks_reg_hex(a->hash, 32, hex);
	*details = json_text(json_pack("{s:s, s:s}", "pubkey_sha256", hex,
				       "key_origin",
				       ks_reg_key_origin_name(a->origin)));
	return *details ? KS_OK : KS_ERR_NOMEM;
}

int ks_reg_keyed(ks_reg_t *reg, int64_t session_id,
		 const uint8_t pubkey_sha256[32],
		 ks_reg_key_origin_t key_origin, const char *actor)
{
	static const step_t step = { KS_REG_RESERVED, KS_REG_KEYED,
				     KS_REG_EV_KEYED };
	keyed_arg_t a = { pubkey_sha256, key_origin };

	if (pubkey_sha256 == NULL ||
	    (key_origin != KS_REG_KEY_DEVICE && key_origin != KS_REG_KEY_HOST))
		return KS_ERR_ARG;
	return do_step(reg, session_id, &step, keyed_extra, &a, actor);
}

static int digest_extra(ks_reg_t *reg, const sess_row_t *s, const void *arg,
			char **details)
{
	char hex[65];
	int r;

	r = update_session_col(reg,
			       "UPDATE sessions SET identity_digest = ?2 WHERE "
			       "id = ?1",
			       s->id, arg, 32, 0);
	if (r == KS_OK)
		r = update_session_col(reg,
				       "UPDATE devices SET identity_digest = ?2 "
				       "WHERE id = ?1",
				       s->device_id, arg, 32, 0);
	if (r != KS_OK)
		return r;
	ks_reg_hex(arg, 32, hex);
	*details = json_text(json_pack("{s:s}", "identity_digest", hex));
	return *details ? KS_OK : KS_ERR_NOMEM;
}

int ks_reg_written(ks_reg_t *reg, int64_t session_id, const uint8_t digest[32],
		   const char *actor)
{
	static const step_t step = { KS_REG_ISSUED, KS_REG_WRITTEN,
				     KS_REG_EV_WRITTEN };

	if (digest == NULL)
		return KS_ERR_ARG;
	return do_step(reg, session_id, &step, digest_extra, digest, actor);
}

int ks_reg_verified(ks_reg_t *reg, int64_t session_id, const char *actor)
{
	static const step_t step = { KS_REG_WRITTEN, KS_REG_VERIFIED,
				     KS_REG_EV_VERIFIED };

	return do_step(reg, session_id, &step, NULL, NULL, actor);
}

static int lock_extra(ks_reg_t *reg, const sess_row_t *s, const void *arg,
		      char **details)
{
	uint32_t bits = *(const uint32_t *)arg;
	int r;

	r = update_session_col(reg,
			       "UPDATE sessions SET lock_bits = ?2 WHERE id = ?1",
			       s->id, NULL, 0, (int64_t)bits);
	if (r == KS_OK)
		r = update_session_col(reg,
				       "UPDATE devices SET lock_bits = ?2 WHERE "
				       "id = ?1",
				       s->device_id, NULL, 0, (int64_t)bits);
	if (r != KS_OK)
		return r;
	*details = json_text(json_pack("{s:I}", "lock_bits", (json_int_t)bits));
	return *details ? KS_OK : KS_ERR_NOMEM;
}

int ks_reg_locked(ks_reg_t *reg, int64_t session_id, uint32_t lock_bits,
		  const char *actor)
{
	static const step_t step = { KS_REG_VERIFIED, KS_REG_LOCKED,
				     KS_REG_EV_LOCKED };

	return do_step(reg, session_id, &step, lock_extra, &lock_bits, actor);
}

/* Certificate of a session with status `status`; id 0 if none. */
static int session_cert(ks_reg_t *reg, int64_t sid, const char *status,
			int64_t *id, char *serial, size_t cap)
{
	ks_db_stmt_t *st = NULL;
	int r;
	int rc;

	*id = 0;
	serial[0] = '\0';
	r = prep(reg,
		 "SELECT id, serial_hex FROM certificates WHERE session_id = ? "
		 "AND status = ?",
		 &st);
	if (r != KS_OK)
		return r;
	ks_db_bind_int64(st, 1, sid);
	bind_text(st, 2, status);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW) {
		*id = ks_db_col_int64(st, 0);
		col_text(st, 1, serial, cap);
	} else if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "session cert");
	}
	ks_db_finish(&st);
	return r;
}

static int active_extra(ks_reg_t *reg, const sess_row_t *s, const void *arg,
			char **details)
{
	ks_db_stmt_t *st = NULL;
	char serial[KS_REG_SERIAL_MAX * 2];
	char old[KS_REG_SERIAL_MAX * 2] = "";
	int64_t cert_id = 0;
	int r;
	int rc;

	(void)arg;
	r = session_cert(reg, s->id, "ISSUED", &cert_id, serial,
			 sizeof(serial));
	if (r != KS_OK)
		return r;
	if (cert_id == 0) {
		ks_log_error("session %lld has no issued certificate",
			     (long long)s->id);
		return KS_ERR_STATE;
	}
	/* Supersede the previous identity of a re-provisioned device. */
	r = prep(reg,
		 "UPDATE certificates SET status = 'SUPERSEDED' WHERE "
		 "device_id = ? AND status = 'ACTIVE' RETURNING serial_hex",
		 &st);
	if (r != KS_OK)
		return r;
	ks_db_bind_int64(st, 1, s->device_id);
	while ((rc = ks_db_step(st)) == KS_DB_ROW)
		col_text(st, 0, old, sizeof(old));
	ks_db_finish(&st);
	if (rc != KS_DB_DONE)
		return ks_reg_db_err(reg, rc, "supersede");
	r = update_session_col(reg,
			       "UPDATE certificates SET status = 'ACTIVE' WHERE "
			       "id = ?1 AND ?2 = ?2",
			       cert_id, NULL, 0, 0);
	if (r != KS_OK)
		return r;
	r = prep(reg,
		 "UPDATE devices SET cert_id = ?, pubkey_sha256 = (SELECT "
		 "pubkey_sha256 FROM certificates WHERE id = ?) WHERE id = ?",
		 &st);
	if (r != KS_OK)
		return r;
	ks_db_bind_int64(st, 1, cert_id);
	ks_db_bind_int64(st, 2, cert_id);
	ks_db_bind_int64(st, 3, s->device_id);
	r = run(reg, st, "device cert");
	if (r != KS_OK)
		return r;
	*details = json_text(json_pack("{s:s, s:s?}", "cert_serial", serial,
				       "superseded",
				       old[0] ? old : NULL));
	return *details ? KS_OK : KS_ERR_NOMEM;
}

int ks_reg_active(ks_reg_t *reg, int64_t session_id, const char *actor)
{
	static const step_t step = { KS_REG_LOCKED, KS_REG_ACTIVE,
				     KS_REG_EV_ACTIVE };

	return do_step(reg, session_id, &step, active_extra, NULL, actor);
}

int ks_reg_boot_key(ks_reg_t *reg, int64_t session_id, const uint8_t hash[32])
{
	ks_db_stmt_t *st = NULL;
	sess_row_t s;
	uint8_t old[32];
	int has_old = 0;
	char hex[65];
	char *details = NULL;
	int r;
	int rc;

	if (reg == NULL || hash == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	r = sess_load(reg, session_id, &s);
	if (r != KS_OK)
		goto out;
	if (ks_reg_state_is_final(s.state)) {
		ks_log_warn("session %lld has ended (%s): no boot key recorded",
			    (long long)session_id, ks_reg_state_name(s.state));
		r = KS_ERR_STATE;
		goto out;
	}
	r = prep(reg, "SELECT boot_key_hash FROM sessions WHERE id = ?", &st);
	if (r != KS_OK)
		goto out;
	ks_db_bind_int64(st, 1, session_id);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW)
		has_old = col_hash(st, 0, old);
	else
		r = ks_reg_db_err(reg, rc, "boot key lookup");
	ks_db_finish(&st);
	if (r != KS_OK)
		goto out;
	if (has_old) {
		/* a resumed session repeats the call: same hash, nothing new */
		if (memcmp(old, hash, 32) != 0) {
			ks_log_warn("session %lld recorded another boot key hash",
				    (long long)session_id);
			r = KS_ERR_STATE;
		}
		goto out;
	}
	r = update_session_col(reg,
			       "UPDATE sessions SET boot_key_hash = ?2 WHERE "
			       "id = ?1",
			       s.id, hash, 32, 0);
	if (r == KS_OK)
		r = update_session_col(reg,
				       "UPDATE devices SET boot_key_hash = ?2 "
				       "WHERE id = ?1",
				       s.device_id, hash, 32, 0);
	if (r != KS_OK)
		goto out;
	ks_reg_hex(hash, 32, hex);
	details = json_text(json_pack("{s:s}", "boot_key_hash", hex));
	if (details == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	r = append_session_event(reg, &s, KS_REG_EV_BOOT_KEY_WRITTEN, NULL,
				 NULL, details);
	if (r != KS_OK)
		goto out;
	r = ks_reg_tx_commit(reg);
out:
	if (r != KS_OK || has_old)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}

/* Facts taken from a certificate's DER. */
typedef struct {
	char serial_hex[KS_REG_SERIAL_MAX * 2];
	uint8_t pubkey_sha256[32];
	uint8_t der_sha256[32];
	char subject[512];
	int64_t not_before;
	int64_t not_after;
	const char *why; /* what did not parse (NULL when it did) */
} cert_facts_t;

static int asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
		return KS_ERR_CRYPTO;
	*out = (int64_t)timegm(&tm);
	return KS_OK;
}

/* One DER element: its first byte at `start`, content [p, p + len). */
typedef struct {
	unsigned tag;
	const uint8_t *start;
	const uint8_t *p;
	size_t len;
} der_el_t;

/*
 * Read the DER element at *cur (below end) into el and advance *cur past
 * it. Single-byte tags, definite minimal lengths of at most 4 bytes only.
 * Returns 1, or 0 when the bytes are not such an element.
 */
static int der_next(const uint8_t **cur, const uint8_t *end, der_el_t *el)
{
	const uint8_t *c = *cur;
	size_t len, nb;

	if (c >= end || end - c < 2 || (c[0] & 0x1f) == 0x1f)
		return 0;
	el->start = c;
	el->tag = c[0];
	c++;
	if (c[0] < 0x80) {
		len = c[0];
		c++;
	} else {
		nb = c[0] & 0x7fu;
		c++;
		if (nb == 0 || nb > 4 || (size_t)(end - c) < nb || c[0] == 0)
			return 0;
		len = 0;
		for (size_t i = 0; i < nb; i++)
			len = (len << 8) | c[i];
		c += nb;
		if (len < 0x80)
			return 0; /* not the shortest length form */
	}
	if (len > (size_t)(end - c))
		return 0;
	el->p = c;
	el->len = len;
	*cur = c + len;
	return 1;
}

/* Next element of [*cur, end), which must carry tag `tag`. */
static int der_expect(const uint8_t **cur, const uint8_t *end, unsigned tag,
		      der_el_t *el)
{
	return der_next(cur, end, el) && el->tag == tag;
}

/* Lowercase hex of a positive DER INTEGER, as BN_bn2hex (leading zero
 * bytes dropped, "0" for zero). Negative or non-minimal: 0. */
static int der_serial_hex(const der_el_t *el, char *out, size_t cap)
{
	static const char hx[] = "0123456789abcdef";
	const uint8_t *c = el->p;
	size_t n = el->len, o = 0;

	if (n == 0 || (c[0] & 0x80) != 0)
		return 0;
	if (n > 1 && c[0] == 0 && (c[1] & 0x80) == 0)
		return 0;
	while (n > 0 && c[0] == 0) {
		c++;
		n--;
	}
	if (n == 0) {
		if (cap < 2)
			return 0;
		out[o++] = '0';
	}
	if (n > (cap - 1) / 2)
		return 0;
	for (size_t i = 0; i < n; i++) {
		out[o++] = hx[c[i] >> 4];
		out[o++] = hx[c[i] & 0x0f];
	}
	out[o] = '\0';
	return 1;
}

/* Time (UTCTime or GeneralizedTime) element as Unix seconds. */
static int der_time_unix(const der_el_t *el, int64_t *out)
{
	const unsigned char *p = el->start;
	ASN1_TIME *t = NULL;
	int r = KS_ERR_VERIFY;

	if (el->tag != V_ASN1_UTCTIME && el->tag != V_ASN1_GENERALIZEDTIME)
		goto out;
	t = d2i_ASN1_TIME(NULL, &p, (long)(el->p + el->len - el->start));
	if (t == NULL || p != el->p + el->len)
		goto out;
	r = asn1_time_unix(t, out);
out:
	ASN1_TIME_free(t);
	return r;
}

/* RFC 2253 text of a DER Name element, as X509_NAME_print_ex prints it. */
static int der_name_text(const der_el_t *el, char *out, size_t cap)
{
	const unsigned char *p = el->start;
	X509_NAME *name = NULL;
	BIO *bio = NULL;
	int r = KS_ERR_VERIFY;
	int n;

	name = d2i_X509_NAME(NULL, &p, (long)(el->p + el->len - el->start));
	if (name == NULL || p != el->p + el->len)
		goto out;
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL ||
	    X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0)
		goto out;
	n = BIO_read(bio, out, (int)cap - 1);
	out[n > 0 ? n : 0] = '\0';
	r = KS_OK;
out:
	BIO_free(bio);
	X509_NAME_free(name);
	return r;
}

/*
 * The facts the registry records, read from the certificate's DER by a
 * walk of its structure (cursor + end, every length bounded by its
 * parent) instead of d2i_X509: that decodes the SubjectPublicKeyInfo
 * through the provider decoder and was a third of bulk issuance's CPU.
 * The whole Certificate must be exactly one well-formed DER SEQUENCE of
 * tbsCertificate, signatureAlgorithm and signature; the TBS fields are
 * checked in order. The key must be a canonical P-256 SPKI (the form the
 * signer writes), so the SHA-256 of its bytes is the same fingerprint
 * ks_audit_pubkey_sha256() gives for the decoded key (what audit verify
 * recomputes); the caller compares it with the session's key, which was
 * validated when it was recorded.
 */
static int cert_facts(const uint8_t *der, size_t der_len, cert_facts_t *f)
{
	const uint8_t *c = der, *end = der + der_len, *tend, *vend;
	der_el_t cert, tbs, el, sig, spki;
	uint8_t pt[KS_P256_POINT_LEN];
	unsigned last = 0;

	memset(f, 0, sizeof(*f));
	f->why = "not one DER SEQUENCE (truncated, overlong or trailing bytes)";
	if (der_len > (size_t)INT32_MAX || !der_expect(&c, end, 0x30, &cert) ||
	    c != end)
		return KS_ERR_VERIFY;
	c = cert.p;
	end = cert.p + cert.len;
	f->why = "not tbsCertificate, signatureAlgorithm, signature";
	if (!der_expect(&c, end, 0x30, &tbs) ||
	    !der_expect(&c, end, 0x30, &el) ||
	    !der_expect(&c, end, V_ASN1_BIT_STRING, &sig) || c != end)
		return KS_ERR_VERIFY;
	c = tbs.p;
	tend = tbs.p + tbs.len;
	if (!der_next(&c, tend, &el))
		return KS_ERR_VERIFY;
	if (el.tag == 0xa0 && !der_next(&c, tend, &el)) /* [0] version */
		return KS_ERR_VERIFY;
	f->why = "serial number not a positive, minimally encoded INTEGER";
	if (el.tag != V_ASN1_INTEGER ||
	    !der_serial_hex(&el, f->serial_hex, sizeof(f->serial_hex)))
		return KS_ERR_VERIFY;
	f->why = "malformed signature algorithm, issuer or validity";
	if (!der_expect(&c, tend, 0x30, &el) || /* signature algorithm */
	    !der_expect(&c, tend, 0x30, &el) || /* issuer */
	    !der_expect(&c, tend, 0x30, &el))   /* validity */
		return KS_ERR_VERIFY;
	vend = el.p + el.len;
	{
		const uint8_t *v = el.p;
		der_el_t t;

		f->why = "validity times malformed";
		if (!der_next(&v, vend, &t) ||
		    der_time_unix(&t, &f->not_before) != KS_OK ||
		    !der_next(&v, vend, &t) ||
		    der_time_unix(&t, &f->not_after) != KS_OK || v != vend)
			return KS_ERR_VERIFY;
	}
	f->why = "subject name malformed";
	if (!der_expect(&c, tend, 0x30, &el) ||
	    der_name_text(&el, f->subject, sizeof(f->subject)) != KS_OK)
		return KS_ERR_VERIFY;
	f->why = "subject public key not an uncompressed P-256 key";
	if (!der_expect(&c, tend, 0x30, &spki) ||
	    !ks_pubkey_spki_point(spki.start,
				  (size_t)(spki.p + spki.len - spki.start), pt))
		return KS_ERR_VERIFY;
	/* issuerUniqueID [1], subjectUniqueID [2], extensions [3], in order */
	f->why = "unexpected or misordered fields after the public key";
	while (c != tend) {
		if (!der_next(&c, tend, &el) ||
		    (el.tag != 0x81 && el.tag != 0x82 && el.tag != 0xa3) ||
		    el.tag <= last)
			return KS_ERR_VERIFY;
		last = el.tag;
	}
	f->why = NULL;
	SHA256(spki.start, (size_t)(spki.p + spki.len - spki.start),
	       f->pubkey_sha256);
	SHA256(der, der_len, f->der_sha256);
	return KS_OK;
}

typedef struct {
	const uint8_t *der;
	size_t der_len;
	const char *serial_hex;
	const uint8_t *pubkey;
	int64_t not_before;
	int64_t not_after;
	char serial_out[KS_REG_SERIAL_MAX * 2];
} issue_arg_t;

static int issued_extra(ks_reg_t *reg, const sess_row_t *s, const void *arg,
			char **details)
{
	issue_arg_t *a = (issue_arg_t *)(uintptr_t)arg;
	ks_db_stmt_t *st = NULL;
	cert_facts_t f;
	char pk[65], dh[65];
	int r;

	r = cert_facts(a->der, a->der_len, &f);
	if (r != KS_OK) {
		ks_log_error("certificate DER does not parse: %s",
			     f.why != NULL ? f.why : "malformed");
		return r;
	}
	if (strcasecmp(f.serial_hex, a->serial_hex) != 0 ||
	    memcmp(f.pubkey_sha256, a->pubkey, 32) != 0 ||
	    (a->not_before != 0 && a->not_before != f.not_before) ||
	    (a->not_after != 0 && a->not_after != f.not_after)) {
		ks_log_error("certificate DER does not match the given serial/"
			     "key/validity");
		return KS_ERR_VERIFY;
	}
	if (!s->has_pubkey || memcmp(s->pubkey, a->pubkey, 32) != 0) {
		ks_log_error("certificate key is not the session's key");
		return KS_ERR_VERIFY;
	}
	r = prep(reg,
		 "INSERT INTO certificates(der, serial_hex, pubkey_sha256, "
		 "subject, not_before, not_after, status, device_id, "
		 "session_id, created_ms) VALUES(?, ?, ?, ?, ?, ?, 'ISSUED', "
		 "?, ?, ?)",
		 &st);
	if (r != KS_OK)
		return r;
	bind_blob(st, 1, a->der, a->der_len);
	bind_text(st, 2, f.serial_hex);
	bind_blob(st, 3, f.pubkey_sha256, 32);
	bind_text(st, 4, f.subject);
	ks_db_bind_int64(st, 5, f.not_before);
	ks_db_bind_int64(st, 6, f.not_after);
	ks_db_bind_int64(st, 7, s->device_id);
	ks_db_bind_int64(st, 8, s->id);
	ks_db_bind_int64(st, 9, ks_reg_now_ms());
	r = run(reg, st, "insert certificate");
	if (r != KS_OK)
		return r;
	ks_reg_fault(reg, "issued:cert");
	snprintf(a->serial_out, sizeof(a->serial_out), "%s", f.serial_hex);
	ks_reg_hex(f.pubkey_sha256, 32, pk);
	ks_reg_hex(f.der_sha256, 32, dh);
	*details = json_text(json_pack("{s:s, s:s, s:s, s:I, s:I}",
				       "cert_sha256", dh, "pubkey_sha256", pk,
				       "subject", f.subject, "not_before",
				       (json_int_t)f.not_before, "not_after",
				       (json_int_t)f.not_after));
	return *details ? KS_OK : KS_ERR_NOMEM;
}

int ks_reg_cert_issued(ks_reg_t *reg, int64_t session_id, const uint8_t *der,
		       size_t der_len, const char *serial_hex,
		       const uint8_t pubkey_sha256[32], int64_t not_before,
		       int64_t not_after, const char *actor)
{
	issue_arg_t a = { der, der_len, serial_hex, pubkey_sha256,
			  not_before, not_after, "" };
	sess_row_t s;
	char *details = NULL;
	int64_t now = ks_reg_now_ms();
	int r;

	if (reg == NULL || der == NULL || der_len == 0 || serial_hex == NULL ||
	    pubkey_sha256 == NULL)
		return KS_ERR_ARG;
	/* Not do_step(): the event carries the certificate serial. */
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	r = sess_load(reg, session_id, &s);
	if (r != KS_OK)
		goto out;
	if (s.state != KS_REG_KEYED) {
		r = KS_ERR_STATE;
		goto out;
	}
	r = issued_extra(reg, &s, &a, &details);
	if (r != KS_OK)
		goto out;
	r = set_state(reg, &s, KS_REG_ISSUED, now);
	if (r != KS_OK)
		goto out;
	r = append_session_event(reg, &s, KS_REG_EV_CERT_ISSUED, actor,
				 a.serial_out, details);
	if (r != KS_OK)
		goto out;
	r = ks_reg_tx_commit(reg);
out:
	if (r != KS_OK)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}

/* ks_reg_fail(); `release`: an operator ends another station's session. */
static int fail_session(ks_reg_t *reg, int64_t session_id,
			ks_reg_state_t outcome, const char *reason,
			const char *actor, int release)
{
	ks_db_stmt_t *st = NULL;
	sess_row_t s;
	char serial[KS_REG_SERIAL_MAX * 2];
	char *details = NULL;
	int64_t cert_id = 0;
	int64_t now = ks_reg_now_ms();
	ks_reg_event_t ev;
	int r;

	if (reg == NULL ||
	    (outcome != KS_REG_FAILED && outcome != KS_REG_VOID &&
	     outcome != KS_REG_SCRAPPED))
		return KS_ERR_ARG;
	if (reason == NULL)
		reason = "";
	ev = outcome == KS_REG_FAILED ? KS_REG_EV_FAILED
	     : outcome == KS_REG_VOID ? KS_REG_EV_VOIDED
				      : KS_REG_EV_SCRAPPED;
	details = json_text(json_pack("{s:s, s:s, s:b}", "reason", reason,
				      "outcome", ks_reg_state_name(outcome),
				      "released", release ? 1 : 0));
	if (details == NULL)
		return KS_ERR_NOMEM;
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	r = release ? sess_load_any(reg, session_id, &s)
		    : sess_load(reg, session_id, &s);
	if (r != KS_OK)
		goto out;
	if (ks_reg_state_is_final(s.state)) {
		r = KS_ERR_STATE;
		goto out;
	}
	r = session_cert(reg, s.id, "ISSUED", &cert_id, serial,
			 sizeof(serial));
	if (r != KS_OK)
		goto out;
	if (outcome == KS_REG_VOID && cert_id == 0) {
		ks_log_warn("session %lld: nothing to void (no certificate)",
			    (long long)s.id);
		r = KS_ERR_STATE;
		goto out;
	}
	if (cert_id != 0) {
		r = update_session_col(reg,
				       "UPDATE certificates SET status = 'VOID' "
				       "WHERE id = ?1 AND ?2 = ?2",
				       cert_id, NULL, 0, 0);
		if (r != KS_OK)
			goto out;
		ks_reg_fault(reg, "fail:void");
		/* The VOIDED event of a VOID outcome is the session event. */
		if (outcome != KS_REG_VOID) {
			r = append_session_event(reg, &s, KS_REG_EV_VOIDED,
						 actor, serial, details);
			if (r != KS_OK)
				goto out;
		}
	}
	r = prep(reg, "UPDATE sessions SET failure_reason = ? WHERE id = ?",
		 &st);
	if (r != KS_OK)
		goto out;
	bind_text(st, 1, reason);
	ks_db_bind_int64(st, 2, s.id);
	r = run(reg, st, "failure reason");
	if (r != KS_OK)
		goto out;
	r = set_state(reg, &s, outcome, now);
	if (r != KS_OK)
		goto out;
	r = append_session_event(reg, &s, ev, actor,
				 cert_id ? serial : NULL, details);
	if (r != KS_OK)
		goto out;
	r = ks_reg_tx_commit(reg);
out:
	if (r != KS_OK)
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}

int ks_reg_fail(ks_reg_t *reg, int64_t session_id, ks_reg_state_t outcome,
		const char *reason, const char *actor)
{
	return fail_session(reg, session_id, outcome, reason, actor, 0);
}

int ks_reg_session_release(ks_reg_t *reg, int64_t session_id,
			   const char *reason, const char *actor)
{
	if (reason == NULL || reason[0] == '\0' || actor == NULL ||
	    actor[0] == '\0')
		return KS_ERR_ARG;
	return fail_session(reg, session_id, KS_REG_FAILED, reason, actor, 1);
}

/* ---- devices and counters ---- */

#define DEVICE_SELECT                                                     \
	"SELECT d.id, d.uid, d.serial, d.state, d.key_origin, l.name, "   \
	"d.station_id, d.slot, d.lock_bits, d.identity_digest, "          \
	"d.pubkey_sha256, c.serial_hex, d.created_ms, d.updated_ms, "     \
	"d.boot_key_hash "                                                \
	"FROM devices d JOIN lots l ON l.id = d.lot_id LEFT JOIN "        \
	"certificates c ON c.id = d.cert_id AND c.status = 'ACTIVE' "

static void device_from_row(ks_db_stmt_t *st, ks_reg_device_t *d)
{
	int n;

	memset(d, 0, sizeof(*d));
	d->id = ks_db_col_int64(st, 0);
	n = (int)ks_db_col_bytes(st, 1);
	if (n > 0 && (size_t)n <= KS_REG_UID_MAX) {
		memcpy(d->uid, ks_db_col_blob(st, 1), (size_t)n);
		d->uid_len = (size_t)n;
	}
	col_text(st, 2, d->serial, sizeof(d->serial));
	d->state = (ks_reg_state_t)ks_reg_state_parse(
		ks_db_col_text(st, 3));
	d->key_origin = (ks_reg_key_origin_t)key_origin_parse(
		ks_db_col_text(st, 4));
	col_text(st, 5, d->lot, sizeof(d->lot));
	col_text(st, 6, d->station, sizeof(d->station));
	d->slot = ks_db_col_int(st, 7);
	d->has_lock_bits = ks_db_col_type(st, 8) != KS_DB_T_NULL;
	d->lock_bits = (uint32_t)ks_db_col_int64(st, 8);
	d->has_identity_digest = col_hash(st, 9, d->identity_digest);
	d->has_pubkey = col_hash(st, 10, d->pubkey_sha256);
	col_text(st, 11, d->cert_serial, sizeof(d->cert_serial));
	d->created_ms = ks_db_col_int64(st, 12);
	d->updated_ms = ks_db_col_int64(st, 13);
	d->has_boot_key = col_hash(st, 14, d->boot_key_hash);
}

int ks_reg_device_get(ks_reg_t *reg, const uint8_t *uid, size_t uid_len,
		      const char *serial, ks_reg_device_t *out)
{
	ks_db_stmt_t *st = NULL;
	int r;
	int rc;

	if (reg == NULL || out == NULL || (uid == NULL && serial == NULL) ||
	    (uid != NULL && (uid_len == 0 || uid_len > KS_REG_UID_MAX)))
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	if (uid != NULL)
		r = prep(reg, DEVICE_SELECT "WHERE d.uid = ?", &st);
	else
		r = prep(reg,
			 DEVICE_SELECT "WHERE d.serial = ?1 OR d.id = (SELECT "
				       "device_id FROM sessions WHERE "
				       "device_serial = ?1)",
			 &st);
	if (r != KS_OK)
		goto out;
	if (uid != NULL)
		bind_blob(st, 1, uid, uid_len);
	else
		bind_text(st, 1, serial);
	rc = ks_db_step(st);
	if (rc == KS_DB_ROW)
		device_from_row(st, out);
	else if (rc == KS_DB_DONE)
		r = KS_ERR_NOTFOUND;
	else
		r = ks_reg_db_err(reg, rc, "device get");
out:
	ks_db_finish(&st);
	pthread_mutex_unlock(&reg->mu);
	return r;
}

int ks_reg_device_list(ks_reg_t *reg, const ks_reg_filter_t *filter,
		       ks_reg_device_t **out, size_t *n)
{
	ks_db_stmt_t *st = NULL;
	ks_reg_device_t *arr = NULL;
	size_t cnt = 0, cap = 0;
	int r;
	int rc;

	if (reg == NULL || out == NULL || n == NULL ||
	    (filter != NULL && filter->state >= KS_REG_STATE_COUNT))
		return KS_ERR_ARG;
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&reg->mu);
	r = prep(reg,
		 DEVICE_SELECT "WHERE (?1 IS NULL OR l.name = ?1) AND "
			       "(?2 IS NULL OR d.station_id = ?2) AND "
			       "(?3 IS NULL OR d.state = ?3) "
			       "ORDER BY d.id LIMIT ?4",
		 &st);
	if (r != KS_OK)
		goto out;
	if (filter != NULL) {
		bind_text(st, 1, filter->lot);
		bind_text(st, 2, filter->station);
		bind_text(st, 3, filter->state >= 0
					 ? ks_reg_state_name(filter->state)
					 : NULL);
	}
	ks_db_bind_int64(st, 4, (filter && filter->limit)
					  ? (int64_t)filter->limit
					  : -1);
	while ((rc = ks_db_step(st)) == KS_DB_ROW) {
		ks_reg_device_t *p = grow(arr, cnt, &cap, sizeof(*arr));

		if (p == NULL) {
			r = KS_ERR_NOMEM;
			goto out;
		}
		arr = p;
		device_from_row(st, &arr[cnt++]);
	}
	if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "device list");
		goto out;
	}
	*out = arr;
	*n = cnt;
	arr = NULL;
out:
	ks_db_finish(&st);
	pthread_mutex_unlock(&reg->mu);
	free(arr);
	return r;
}

int ks_reg_counts(ks_reg_t *reg, ks_reg_counts_t *out)
{
	ks_db_stmt_t *st = NULL;
	int r;
	int rc;

	if (reg == NULL || out == NULL)
		return KS_ERR_ARG;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&reg->mu);
	r = prep(reg,
		 "SELECT state, count(*) FROM sessions WHERE station_id = ? "
		 "GROUP BY state",
		 &st);
	if (r != KS_OK)
		goto out;
	bind_text(st, 1, reg->station);
	while ((rc = ks_db_step(st)) == KS_DB_ROW) {
		int s = ks_reg_state_parse(
			ks_db_col_text(st, 0));
		uint64_t c = (uint64_t)ks_db_col_int64(st, 1);

		if (s >= 0)
			out->by_state[s] = c;
		out->sessions += c;
	}
	ks_db_finish(&st);
	st = NULL;
	if (rc != KS_DB_DONE) {
		r = ks_reg_db_err(reg, rc, "counts");
		goto out;
	}
	r = prep(reg,
		 "SELECT (SELECT count(*) FROM devices WHERE station_id = ?1 "
		 "AND state = 'ACTIVE'), (SELECT count(*) FROM audit), "
		 "(SELECT coalesce(max(seq), 0) FROM audit)",
		 &st);
	if (r != KS_OK)
		goto out;
	bind_text(st, 1, reg->station);
	if (ks_db_step(st) == KS_DB_ROW) {
		out->devices_active = (uint64_t)ks_db_col_int64(st, 0);
		out->audit_events = (uint64_t)ks_db_col_int64(st, 1);
		out->audit_head_seq = ks_db_col_int64(st, 2);
	} else {
		r = ks_reg_db_err(reg, ks_db_last_err(reg->dbh), "counts");
	}
out:
	ks_db_finish(&st);
	pthread_mutex_unlock(&reg->mu);
	return r;
}

int ks_reg_audit_event(ks_reg_t *reg, const char *actor, ks_reg_event_t type,
		       const char *details_json)
{
	json_t *j = NULL;
	char *details = NULL;
	int checkpoint;
	int r;

	if (reg == NULL)
		return KS_ERR_ARG;
	switch (type) {
	case KS_REG_EV_CA_LOADED:
	case KS_REG_EV_BATCH_STARTED:
	case KS_REG_EV_BATCH_STOPPED:
	case KS_REG_EV_OPERATOR:
	case KS_REG_EV_STATION_STARTED:
	case KS_REG_EV_STATION_STOPPED:
	case KS_REG_EV_SIGN_REFUSED:
		break;
	default:
		ks_log_error("event %s is written only with its state change",
			     ks_reg_event_name((int)type));
		return KS_ERR_ARG;
	}
	if (details_json != NULL) {
		j = json_loads(details_json, JSON_REJECT_DUPLICATES, NULL);
		if (j == NULL || !json_is_object(j)) {
			json_decref(j);
			ks_log_error("event details must be a JSON object");
			return KS_ERR_ARG;
		}
		details = json_text(j);
		if (details == NULL)
			return KS_ERR_NOMEM;
	}
	checkpoint = type == KS_REG_EV_BATCH_STOPPED ||
		     type == KS_REG_EV_STATION_STOPPED;
	pthread_mutex_lock(&reg->mu);
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK)
		goto unlock;
	{
		ks_audit_ev_t ev = { .type = type,
				     .actor = actor_or_default(actor),
				     .details = details };

		r = ks_audit_append(reg, &ev, NULL);
	}
	if (r == KS_OK && checkpoint && reg->key != NULL) {
		int64_t pending = 0;

		r = ks_audit_since_checkpoint(reg, &pending);
		if (r == KS_OK && pending > 0)
			r = ks_audit_append_checkpoint(reg, actor);
	}
	if (r == KS_OK)
		r = ks_reg_tx_commit(reg);
	else
		ks_reg_tx_rollback(reg);
unlock:
	pthread_mutex_unlock(&reg->mu);
	free(details);
	return r;
}

/* ---- group commit ---- */

int ks_reg_group_begin(ks_reg_t *reg)
{
	int r;

	if (reg == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	if (reg->group) {
		pthread_mutex_unlock(&reg->mu);
		return KS_ERR_STATE;
	}
	r = ks_reg_tx_begin(reg);
	if (r != KS_OK) {
		pthread_mutex_unlock(&reg->mu);
		return r;
	}
	reg->group = 1;
	reg->sp_open = 0;
	/* mu stays locked (recursively) until the group ends */
	return KS_OK;
}

int ks_reg_group_commit(ks_reg_t *reg)
{
	int r;

	if (reg == NULL)
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	if (!reg->group) {
		pthread_mutex_unlock(&reg->mu);
		return KS_ERR_STATE;
	}
	if (reg->sp_open)
		ks_reg_tx_rollback(reg); /* a step left half done */
	reg->group = 0;
	ks_reg_fault(reg, "group:commit");
	r = ks_reg_tx_commit(reg);
	if (r != KS_OK)
		ks_log_error("group commit failed: %s; none of its steps is "
			     "recorded", ks_strerror(r));
	pthread_mutex_unlock(&reg->mu);
	pthread_mutex_unlock(&reg->mu); /* the lock ks_reg_group_begin took */
	return r;
}

void ks_reg_group_abort(ks_reg_t *reg)
{
	if (reg == NULL)
		return;
	pthread_mutex_lock(&reg->mu);
	if (!reg->group) {
		pthread_mutex_unlock(&reg->mu);
		return;
	}
	reg->group = 0;
	reg->sp_open = 0;
	ks_reg_tx_rollback(reg);
	pthread_mutex_unlock(&reg->mu);
	pthread_mutex_unlock(&reg->mu);
}
