/*
 * bench_registry: the registry at scale.
 *
 *   bench_registry lookup -N DEVICES [-k KEYS] [-d DIR]
 *   bench_registry audit  -e EVENTS [-d DIR]
 *   bench_registry chain  -e EVENTS [-d DIR]
 *
 * lookup: a registry of N provisioned devices (schema from the product's
 * own migrations: ks_reg_open() creates the file; then one ACTIVE device,
 * its ACTIVE session and ACTIVE certificate per device are inserted
 * directly with SQLite in transactions of 50,000 devices, with the column
 * values the session path writes: 16-byte random UIDs, "BN-NNNNNNN"
 * serials, random 16-byte certificate serials and key hashes, a 583-byte
 * certificate blob (the size the bulk path issues; its bytes are not a
 * certificate: this registry is for lookups, not for audit verify); no
 * ANALYZE, as a station never runs one. The audit log and step rows are
 * left out, so the file is smaller than a real one (they have their own
 * tables and indexes; a lookup does not touch them). Then KEYS random
 * devices are looked up through the public API, ks_reg_device_get(), by
 * UID and by device serial, each result checked against the expected
 * serial/UID, six times: the first pass as the page cache finds the file
 * (first_*), four untimed, and the last one reported (uid_*, serial_*):
 * per-lookup latency p50/p99/max.
 * With -d the file is kept and reused by the next run with the same N.
 *
 * audit: a registry with about EVENTS audit events made by the product's
 * bulk issuance path (ks_bulk, host key origin, groups of 4096: sessions
 * RESERVED -> KEYED -> ISSUED, real certificates from the development CA,
 * signed checkpoints every 64 events), then ks_audit_verify() -- the
 * check behind `kiln audit verify` -- timed over it: events/s. With -d
 * the station directory is kept and reused (the CLI can be run on it:
 * DIR/registry.db, DIR/ca/chain.pem, DIR/station.pub).
 *
 * chain: the same over a log of EVENTS operator events (no sessions, no
 * certificates), written through ks_reg_audit_event() in durable groups
 * with the registry's own checkpoints: the cost of the hash chain and
 * the checkpoint signatures alone.
 *
 * Prints "key value" lines for scripts/bench. Exits non-zero on any
 * failed or wrong lookup, a failed issuance or a verify that fails.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "bench/bench_util.h"
#include "host/lib/audit.h"
#include "host/lib/bulk.h"
#include "host/lib/ca.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"
#include "host/lib/signer.h"

#define UID_LEN 16
#define CERT_DER_LEN 583
#define TX_ROWS 50000u

/* splitmix64: the content of device i is a function of (i, field), so
 * the lookup phase can recompute any device's keys without storing them */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void fill(uint64_t i, uint64_t field, uint8_t *out, size_t n)
{
	for (size_t k = 0; k < n; k += 8) {
		uint64_t v = mix(i * 64 + field + (uint64_t)k * 0x10001ull);
		size_t m = n - k < 8 ? n - k : 8;

		memcpy(out + k, &v, m);
	}
}

enum { F_UID = 1, F_PUB, F_CERT, F_DIGEST, F_DER };

static void dev_uid(uint64_t i, uint8_t uid[UID_LEN])
{
	fill(i, F_UID, uid, UID_LEN);
}

static void dev_serial(uint64_t i, char *out, size_t cap)
{
	snprintf(out, cap, "BN-%06" PRIu64, i + 1);
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t k = 0; k < n; k++) {
		out[2 * k] = d[b[k] >> 4];
		out[2 * k + 1] = d[b[k] & 15];
	}
	out[2 * n] = '\0';
}

static void cert_serial(uint64_t i, char out[33])
{
	uint8_t b[16];

	fill(i, F_CERT, b, sizeof(b));
	b[0] &= 0x7f; /* positive, as the CA makes them */
	b[0] |= 0x40; /* no leading zero byte */
	hex(b, sizeof(b), out);
}

static int exec_sql(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "bench_registry: %s: %s\n", sql,
			msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int64_t count_devices(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t n = -1;

	if (access(path, R_OK) != 0)
		return -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) ==
		    SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM devices", -1, &st,
			       NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* Insert devices [0, n) into an opened registry file (schema in place,
 * lot 'L1' with prefix 'BN' created through the API). */
static int generate(const char *path, uint64_t n)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *dev = NULL, *ses = NULL, *crt = NULL, *lot = NULL;
	uint8_t uid[UID_LEN], pub[32], dig[32], der[CERT_DER_LEN];
	char serial[KS_REG_SERIAL_MAX], cser[33], subj[96];
	int64_t lot_id = 0, t = (int64_t)time(NULL) * 1000;
	int rc = -1;

	if (sqlite3_open(path, &db) != SQLITE_OK)
		goto out;
	/* a fixture, not a journal: no fsync, no rollback journal while the
	 * rows go in; the file is switched back to WAL afterwards */
	if (exec_sql(db, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
			 "PRAGMA cache_size = -1000000; "
			 "PRAGMA temp_store = MEMORY") != 0)
		goto out;
	if (sqlite3_prepare_v2(db, "SELECT id FROM lots WHERE name = 'L1'", -1,
			       &lot, NULL) != SQLITE_OK ||
	    sqlite3_step(lot) != SQLITE_ROW)
		goto sqlerr;
	lot_id = sqlite3_column_int64(lot, 0);
	sqlite3_reset(lot); /* no read transaction left open */
	if (sqlite3_prepare_v2(
		    db,
		    "INSERT INTO devices(id, uid, serial, state, key_origin, "
		    "lot_id, station_id, slot, lock_bits, identity_digest, "
		    "pubkey_sha256, cert_id, created_ms, updated_ms) "
		    "VALUES(?1, ?2, ?3, 'ACTIVE', 'device', ?4, 'bench', ?5, 3, "
		    "?6, ?7, ?1, ?8, ?8)",
		    -1, &dev, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(
		    db,
		    "INSERT INTO sessions(id, uid, device_id, device_serial, "
		    "lot_id, profile, station_id, slot, key_origin, state, "
		    "reprovision, pubkey_sha256, identity_digest, lock_bits, "
		    "started_ms, updated_ms, ended_ms) VALUES(?1, ?2, ?1, ?3, "
		    "?4, 'bench', 'bench', ?5, 'device', 'ACTIVE', 0, ?6, ?7, 3, "
		    "?8, ?8 + 140, ?8 + 140)",
		    -1, &ses, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(
		    db,
		    "INSERT INTO certificates(id, der, serial_hex, "
		    "pubkey_sha256, subject, not_before, not_after, status, "
		    "device_id, session_id, created_ms) VALUES(?1, ?2, ?3, ?4, "
		    "?5, ?6, ?6 + 315360000, 'ACTIVE', ?1, ?1, ?7)",
		    -1, &crt, NULL) != SQLITE_OK)
		goto sqlerr;
	for (uint64_t i = 0; i < n; i++) {
		int64_t id = (int64_t)i + 1, at = t + (int64_t)i * 7;

		if (i % TX_ROWS == 0 && exec_sql(db, "BEGIN") != 0)
			goto out;
		dev_uid(i, uid);
		dev_serial(i, serial, sizeof(serial));
		cert_serial(i, cser);
		fill(i, F_PUB, pub, sizeof(pub));
		fill(i, F_DIGEST, dig, sizeof(dig));
		fill(i, F_DER, der, sizeof(der));
		snprintf(subj, sizeof(subj), "CN=%s,O=Bench,OU=Widgets",
			 serial);

		sqlite3_bind_int64(dev, 1, id);
		sqlite3_bind_blob(dev, 2, uid, UID_LEN, SQLITE_STATIC);
		sqlite3_bind_text(dev, 3, serial, -1, SQLITE_STATIC);
		sqlite3_bind_int64(dev, 4, lot_id);
		sqlite3_bind_int64(dev, 5, (int64_t)(i % 16));
		sqlite3_bind_blob(dev, 6, dig, 32, SQLITE_STATIC);
		sqlite3_bind_blob(dev, 7, pub, 32, SQLITE_STATIC);
		sqlite3_bind_int64(dev, 8, at);
		sqlite3_bind_int64(ses, 1, id);
		sqlite3_bind_blob(ses, 2, uid, UID_LEN, SQLITE_STATIC);
		sqlite3_bind_text(ses, 3, serial, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ses, 4, lot_id);
		sqlite3_bind_int64(ses, 5, (int64_t)(i % 16));
		sqlite3_bind_blob(ses, 6, pub, 32, SQLITE_STATIC);
		sqlite3_bind_blob(ses, 7, dig, 32, SQLITE_STATIC);
		sqlite3_bind_int64(ses, 8, at);
		sqlite3_bind_int64(crt, 1, id);
		sqlite3_bind_blob(crt, 2, der, sizeof(der), SQLITE_STATIC);
		sqlite3_bind_text(crt, 3, cser, -1, SQLITE_STATIC);
		sqlite3_bind_blob(crt, 4, pub, 32, SQLITE_STATIC);
		sqlite3_bind_text(crt, 5, subj, -1, SQLITE_STATIC);
		sqlite3_bind_int64(crt, 6, at / 1000);
		sqlite3_bind_int64(crt, 7, at + 60);
		/* the session and certificate rows reference the device row */
		if (sqlite3_step(dev) != SQLITE_DONE ||
		    sqlite3_step(ses) != SQLITE_DONE ||
		    sqlite3_step(crt) != SQLITE_DONE)
			goto sqlerr;
		sqlite3_reset(dev);
		sqlite3_reset(ses);
		sqlite3_reset(crt);
		if ((i + 1) % TX_ROWS == 0 || i + 1 == n) {
			if (exec_sql(db, "COMMIT") != 0)
				goto out;
		}
	}
	{
		char sql[160];

		snprintf(sql, sizeof(sql),
			 "INSERT INTO serial_counters(prefix, next) VALUES('BN', "
			 "%" PRIu64 ") ON CONFLICT(prefix) DO UPDATE SET next = "
			 "excluded.next",
			 n + 1);
		if (exec_sql(db, sql) != 0 ||
		    exec_sql(db, "PRAGMA journal_mode = WAL") != 0)
			goto out;
	}
	rc = 0;
	goto out;
sqlerr:
	fprintf(stderr, "bench_registry: generate: %s\n", sqlite3_errmsg(db));
out:
	sqlite3_finalize(lot);
	sqlite3_finalize(dev);
	sqlite3_finalize(ses);
	sqlite3_finalize(crt);
	sqlite3_close(db);
	return rc;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void report(const char *what, double *lat, size_t n)
{
	double sum = 0;

	qsort(lat, n, sizeof(*lat), cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += lat[i];
	printf("%s_p50_us %.1f\n", what, lat[n / 2] * 1e6);
	printf("%s_p99_us %.1f\n", what, lat[(n * 99) / 100] * 1e6);
	printf("%s_max_us %.1f\n", what, lat[n - 1] * 1e6);
	printf("%s_mean_us %.1f\n", what, sum / (double)n * 1e6);
}

static int make_dir(char *dir, size_t cap, const char *arg)
{
	if (arg != NULL) {
		snprintf(dir, cap, "%s", arg);
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			fprintf(stderr, "bench_registry: %s: %s\n", dir,
				strerror(errno));
			return -1;
		}
		return 0;
	}
	snprintf(dir, cap, "%s/kiln-benchreg-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp");
	return mkdtemp(dir) != NULL ? 0 : -1;
}

static void remove_dir(const char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_registry: could not remove %s\n", dir);
}

/* keys random lookups by UID and by serial through the public API, each
 * timed into lat_*[] and checked; returns the number of wrong results. */
static unsigned long lookup_pass(ks_reg_t *reg, uint64_t n, unsigned keys,
				 double *lat_uid, double *lat_ser)
{
	char serial[KS_REG_SERIAL_MAX], cser[33];
	ks_reg_device_t d;
	uint8_t uid[UID_LEN];
	unsigned long wrong = 0;
	double t0;
	int r;

	for (unsigned k = 0; k < keys; k++) {
		uint64_t i = (((uint64_t)rand() << 31) ^ (uint64_t)rand()) % n;

		dev_uid(i, uid);
		dev_serial(i, serial, sizeof(serial));
		cert_serial(i, cser);
		t0 = bu_now_s();
		r = ks_reg_device_get(reg, uid, sizeof(uid), NULL, &d);
		lat_uid[k] = bu_now_s() - t0;
		if (r != KS_OK || strcmp(d.serial, serial) != 0 ||
		    strcmp(d.cert_serial, cser) != 0 ||
		    d.state != KS_REG_ACTIVE) {
			if (wrong++ == 0)
				fprintf(stderr, "bench_registry: uid lookup of "
						"device %" PRIu64 ": %s\n",
					i, r == KS_OK ? "wrong device"
						      : ks_strerror(r));
		}
		i = mix(i + 1) % n; /* another device for the serial lookup */
		dev_uid(i, uid);
		dev_serial(i, serial, sizeof(serial));
		t0 = bu_now_s();
		r = ks_reg_device_get(reg, NULL, 0, serial, &d);
		lat_ser[k] = bu_now_s() - t0;
		if (r != KS_OK || d.uid_len != UID_LEN ||
		    memcmp(d.uid, uid, UID_LEN) != 0) {
			if (wrong++ == 0)
				fprintf(stderr, "bench_registry: serial lookup "
						"of %s: %s\n",
					serial, r == KS_OK ? "wrong device"
							   : ks_strerror(r));
		}
	}
	return wrong;
}

static int run_lookup(uint64_t n, unsigned keys, const char *dir_arg)
{
	char dir[PATH_MAX], path[PATH_MAX + 32];
	ks_reg_t *reg = NULL;
	ks_reg_device_t d;
	uint8_t uid[UID_LEN];
	double *lat_uid = NULL, *lat_ser = NULL, t0, gen = 0;
	unsigned long wrong = 0;
	struct stat sb;
	int rc = 1;

	dir[0] = '\0';
	if (make_dir(dir, sizeof(dir), dir_arg) != 0)
		goto out;
	snprintf(path, sizeof(path), "%s/lookup-%" PRIu64 ".db", dir, n);
	if (count_devices(path) != (int64_t)n) {
		unlink(path);
		t0 = bu_now_s();
		if (ks_reg_open(path, "bench", &reg) != KS_OK ||
		    ks_reg_lot_create(reg, "L1", "bench", "BN", -1, "bench") !=
			    KS_OK)
			goto out;
		ks_reg_close(&reg);
		if (generate(path, n) != 0)
			goto out;
		gen = bu_now_s() - t0;
		printf("reused 0\n");
	} else {
		printf("reused 1\n");
	}
	printf("devices %" PRIu64 "\n", n);
	printf("generate_s %.1f\n", gen);
	if (stat(path, &sb) == 0)
		printf("db_mb %.0f\n", (double)sb.st_size / 1e6);

	lat_uid = calloc(keys, sizeof(*lat_uid));
	lat_ser = calloc(keys, sizeof(*lat_ser));
	if (lat_uid == NULL || lat_ser == NULL ||
	    ks_reg_open(path, "bench", &reg) != KS_OK)
		goto out;
	srand((unsigned)time(NULL));
	/* the first pass finds the page cache as it is; then 4x as many
	 * untimed lookups, then the timed pass (steady state) */
	wrong += lookup_pass(reg, n, keys, lat_uid, lat_ser);
	report("first_uid", lat_uid, keys);
	report("first_serial", lat_ser, keys);
	for (int w = 0; w < 4; w++)
		wrong += lookup_pass(reg, n, keys, lat_uid, lat_ser);
	wrong += lookup_pass(reg, n, keys, lat_uid, lat_ser);
	/* a UID that is not there: the path an unknown board takes */
	memset(uid, 0xee, sizeof(uid));
	if (ks_reg_device_get(reg, uid, sizeof(uid), NULL, &d) !=
	    KS_ERR_NOTFOUND)
		wrong++;
	printf("lookups %u\n", keys);
	report("uid", lat_uid, keys);
	report("serial", lat_ser, keys);
	printf("wrong %lu\n", wrong);
	rc = wrong == 0 ? 0 : 1;
out:
	ks_reg_close(&reg);
	free(lat_uid);
	free(lat_ser);
	if (dir_arg == NULL && dir[0] != '\0')
		remove_dir(dir);
	if (rc != 0)
		fprintf(stderr, "bench_registry: lookup failed\n");
	return rc;
}

/* ---- audit verify over a registry made by the bulk path ---- */

static void count_ack(void *arg, const ks_bulk_ack_t *a)
{
	(void)a;
	(*(uint64_t *)arg)++;
}

static EVP_PKEY *read_key(const char *path, int pub)
{
	FILE *fp = fopen(path, "r");
	EVP_PKEY *k = NULL;

	if (fp == NULL)
		return NULL;
	k = pub ? PEM_read_PUBKEY(fp, NULL, NULL, NULL)
		: PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	return k;
}

/* OPERATOR events (what a station writes besides sessions: batches,
 * operator actions), each through the public API, 8192 per durable
 * group; checkpoints are appended by the registry as in production. */
static int append_events(ks_reg_t *reg, uint64_t events)
{
	char details[96];
	uint64_t i;
	int open = 0, rc = -1;

	for (i = 0; i < events; i++) {
		if (!open) {
			if (ks_reg_group_begin(reg) != KS_OK)
				goto out;
			open = 1;
		}
		snprintf(details, sizeof(details),
			 "{\"note\":\"bench event %" PRIu64 "\",\"line\":%u}",
			 i, (unsigned)(i % 7));
		if (ks_reg_audit_event(reg, "bench", KS_REG_EV_OPERATOR,
				       details) != KS_OK)
			goto out;
		if ((i + 1) % 8192 == 0 || i + 1 == events) {
			open = 0;
			if (ks_reg_group_commit(reg) != KS_OK)
				goto out;
		}
	}
	rc = 0;
out:
	if (open)
		ks_reg_group_abort(reg);
	return rc;
}

/* A station directory whose log holds >= events rows: identities issued
 * through ks_bulk (chain = 0) or operator events only (chain = 1). */
static int build_audit(const char *dir, uint64_t events, int chain)
{
	char a[PATH_MAX + 32], b[PATH_MAX + 32], c[PATH_MAX + 32],
		err[256];
	ks_ca_t *ca = NULL;
	ks_signer_t *signer = NULL;
	ks_reg_t *reg = NULL;
	ks_bulk_t *bulk = NULL;
	ks_bulk_cfg_t cfg;
	ks_reg_counts_t cnt;
	EVP_PKEY *skey = NULL;
	uint8_t uid[UID_LEN];
	uint64_t acked = 0, i = 0;
	FILE *fp;
	int rc = -1;

	snprintf(a, sizeof(a), "%s/ca", dir);
	if (ks_ca_init_dev(a, "Bench", err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "bench_registry: ca init: %s\n", err);
		goto out;
	}
	snprintf(a, sizeof(a), "%s/ca/station-ca.pem", dir);
	snprintf(b, sizeof(b), "%s/ca/station-ca.key", dir);
	snprintf(c, sizeof(c), "%s/ca/chain.pem", dir);
	if (ks_ca_load(a, b, c, &ca) != KS_OK ||
	    ks_signer_new(&ca, &signer) != KS_OK ||
	    bu_add_profile(signer, "host", "bench_registry") != 0)
		goto out;
	snprintf(a, sizeof(a), "%s/ca/station.key", dir);
	snprintf(b, sizeof(b), "%s/station.pub", dir);
	skey = read_key(a, 0);
	fp = fopen(b, "w");
	if (skey == NULL || fp == NULL ||
	    PEM_write_PUBKEY(fp, skey) != 1) {
		if (fp != NULL)
			fclose(fp);
		fprintf(stderr, "bench_registry: station key\n");
		goto out;
	}
	fclose(fp);
	snprintf(a, sizeof(a), "%s/registry.db", dir);
	if (ks_reg_open(a, "bench", &reg) != KS_OK ||
	    ks_reg_set_station_key(reg, skey) != KS_OK ||
	    ks_reg_lot_create(reg, "L1", "bench", "BN", -1, "bench") != KS_OK)
		goto out;
	if (chain) {
		if (append_events(reg, events) != 0)
			goto out;
		rc = 0;
		goto out;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.reg = reg;
	cfg.signer = signer;
	cfg.lot = "L1";
	cfg.profile = "bench";
	cfg.origin = KS_REG_KEY_HOST;
	cfg.group = KS_BULK_GROUP_MAX;
	cfg.actor = "bench";
	cfg.ack = count_ack;
	cfg.ack_arg = &acked;
	if (ks_bulk_new(&cfg, &bulk) != KS_OK)
		goto out;
	memset(uid, 0xa5, sizeof(uid));
	/* 3 session events per identity + a checkpoint every 64 events */
	while (i < events / 3 + 1) {
		memcpy(uid, &i, sizeof(i));
		if (ks_bulk_host(bulk, uid, sizeof(uid)) != KS_OK)
			goto out;
		i++;
	}
	if (ks_bulk_flush(bulk) != KS_OK || acked != i ||
	    ks_reg_counts(reg, &cnt) != KS_OK)
		goto out;
	printf("identities %" PRIu64 "\n", acked);
	rc = 0;
out:
	ks_bulk_free(&bulk);
	ks_reg_close(&reg); /* writes the closing checkpoint */
	ks_signer_free(&signer);
	ks_ca_free(&ca);
	EVP_PKEY_free(skey);
	return rc;
}

static int run_audit(uint64_t events, int chain, const char *dir_arg)
{
	char dir[PATH_MAX], db[PATH_MAX + 32], ca[PATH_MAX + 32],
		pubp[PATH_MAX + 32], mark[PATH_MAX + 48];
	ks_audit_report_t rep;
	EVP_PKEY *pub = NULL;
	FILE *fp;
	double t0, gen = 0, wall;
	int rc = 1, r;

	dir[0] = '\0';
	if (make_dir(dir, sizeof(dir), dir_arg) != 0)
		goto out;
	snprintf(db, sizeof(db), "%s/registry.db", dir);
	snprintf(ca, sizeof(ca), "%s/ca/chain.pem", dir);
	snprintf(pubp, sizeof(pubp), "%s/station.pub", dir);
	snprintf(mark, sizeof(mark), "%s/%s-%" PRIu64, dir,
		 chain ? "chain" : "bulk", events);
	if (access(mark, F_OK) != 0) {
		char cmd[4 * PATH_MAX + 96];

		/* a fresh station directory (a partial one is not reused) */
		snprintf(cmd, sizeof(cmd),
			 "rm -rf '%s/ca' '%s'* '%s/bulk-'* '%s/chain-'*", dir,
			 db, dir, dir);
		if (system(cmd) != 0)
			goto out;
		t0 = bu_now_s();
		if (build_audit(dir, events, chain) != 0)
			goto out;
		gen = bu_now_s() - t0;
		fp = fopen(mark, "w");
		if (fp == NULL || fclose(fp) != 0)
			goto out;
		printf("reused 0\n");
	} else {
		printf("reused 1\n");
	}
	printf("generate_s %.1f\n", gen);
	pub = read_key(pubp, 1);
	if (pub == NULL)
		goto out;
	memset(&rep, 0, sizeof(rep));
	t0 = bu_now_s();
	r = ks_audit_verify(db, ca, pub, &rep);
	wall = bu_now_s() - t0;
	printf("events %" PRIu64 "\n", rep.rows);
	printf("checkpoints %" PRIu64 "\n", rep.checkpoints);
	printf("certificates %" PRIu64 "\n", rep.certificates);
	printf("verify_s %.3f\n", wall);
	printf("events_per_s %.0f\n", (double)rep.rows / wall);
	printf("verify_ok %d\n", r == KS_OK && rep.ok);
	if (r != KS_OK || !rep.ok)
		fprintf(stderr, "bench_registry: verify: %s: %s\n",
			ks_strerror(r), rep.first_error);
	else
		rc = 0;
out:
	EVP_PKEY_free(pub);
	if (dir_arg == NULL && dir[0] != '\0')
		remove_dir(dir);
	if (rc != 0)
		fprintf(stderr, "bench_registry: audit failed\n");
	return rc;
}

int main(int argc, char **argv)
{
	uint64_t n = 100000, events = 30000;
	unsigned keys = 5000;
	const char *dir = NULL;
	char *end;
	int opt;

	if (argc < 2) {
		fprintf(stderr, "usage: bench_registry lookup [-N DEVICES] "
				"[-k KEYS] [-d DIR] | audit|chain [-e EVENTS] "
				"[-d DIR]\n");
		return 2;
	}
	optind = 2;
	while ((opt = getopt(argc, argv, "N:k:e:d:")) != -1) {
		errno = 0;
		switch (opt) {
		case 'N': n = strtoull(optarg, &end, 10); break;
		case 'k': keys = (unsigned)strtoul(optarg, &end, 10); break;
		case 'e': events = strtoull(optarg, &end, 10); break;
		case 'd': dir = optarg; end = optarg + strlen(optarg); break;
		default: return 2;
		}
		if (errno != 0 || *end != '\0') {
			fprintf(stderr, "bench_registry: bad -%c %s\n", opt,
				optarg);
			return 2;
		}
	}
	if (n == 0 || keys == 0 || events == 0)
		return 2;
	ks_log_set_level(KS_LOG_ERROR);
	if (strcmp(argv[1], "lookup") == 0)
		return run_lookup(n, keys, dir);
	if (strcmp(argv[1], "audit") == 0)
		return run_audit(events, 0, dir);
	if (strcmp(argv[1], "chain") == 0)
		return run_audit(events, 1, dir);
	fprintf(stderr, "bench_registry: unknown mode %s\n", argv[1]);
	return 2;
}
