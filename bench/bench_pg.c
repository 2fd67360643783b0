/*
 * bench_pg: issuance rate of a line of stations sharing a PostgreSQL
 * registry, against one station on its SQLite file (issue 9).
 *
 *   bench_pg [-n N] [-g GROUP] [-s 1,4]
 *
 * Starts a throwaway PostgreSQL server (tests/pg/pgtest.h: initdb in a
 * temporary directory, fsync and synchronous_commit on), then for SQLite
 * with 1 station and for PostgreSQL with each station count S: S threads,
 * each a station of its own (its own registry connection and station id,
 * its own signer and lot, the development CA) issuing N identities
 * through the bulk path (host key origin, GROUP identities per durable
 * commit), all started together. Prints one line per configuration:
 *   backend B stations S group G identities I wall_s W per_s R
 * When no PostgreSQL server can be started here it prints
 * "skipped <reason>" for the PostgreSQL lines and still measures SQLite.
 * Exits non-zero when an identity fails or is not acknowledged.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "bench/bench_util.h"
#include "host/lib/bulk.h"
#include "host/lib/ca.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"
#include "host/lib/signer.h"
#include "tests/pg/pgtest.h"

#define MAX_STATIONS 16
#define UID_LEN 16

typedef struct {
	int index;
	const char *url;
	const char *dir; /* holds ca/ */
	unsigned long n;
	unsigned group;
	pthread_barrier_t *start;
	uint64_t acked;
	int failed;
} station_t;

static void on_ack(void *arg, const ks_bulk_ack_t *a)
{
	(void)a;
	((station_t *)arg)->acked++;
}

/* One station: set up before the barrier, issue after it. */
static void *station_main(void *arg)
{
	station_t *st = arg;
	char a[PATH_MAX + 32], b[PATH_MAX + 32], c[PATH_MAX + 32], id[32],
		lot[32], prefix[32];
	ks_ca_t *ca = NULL;
	ks_signer_t *signer = NULL;
	ks_reg_t *reg = NULL;
	ks_bulk_t *bulk = NULL;
	ks_bulk_cfg_t cfg;
	EVP_PKEY *skey = NULL;
	uint8_t uid[UID_LEN];
	FILE *fp;
	int ready = 0;

	st->failed = 1;
	snprintf(a, sizeof(a), "%s/ca/station-ca.pem", st->dir);
	snprintf(b, sizeof(b), "%s/ca/station-ca.key", st->dir);
	snprintf(c, sizeof(c), "%s/ca/chain.pem", st->dir);
	snprintf(id, sizeof(id), "station-%d", st->index);
	snprintf(lot, sizeof(lot), "L%d", st->index);
	snprintf(prefix, sizeof(prefix), "S%d", st->index);
	if (ks_ca_load(a, b, c, &ca) != KS_OK ||
	    ks_signer_new(&ca, &signer) != KS_OK ||
	    bu_add_profile(signer, "host", "bench_pg") != 0)
		goto wait;
	snprintf(a, sizeof(a), "%s/ca/station.key", st->dir);
	fp = fopen(a, "r");
	if (fp != NULL) {
		skey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
		fclose(fp);
	}
	if (skey == NULL || ks_reg_open(st->url, id, &reg) != KS_OK ||
	    ks_reg_set_station_key(reg, skey) != KS_OK ||
	    ks_reg_lot_create(reg, lot, "bench", prefix, -1, "bench") != KS_OK) {
		fprintf(stderr, "bench_pg: station %d: registry %s\n", st->index,
			st->url);
		goto wait;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.reg = reg;
	cfg.signer = signer;
	cfg.lot = lot;
	cfg.profile = "bench";
	cfg.origin = KS_REG_KEY_HOST;
	cfg.group = st->group;
	cfg.actor = "bench";
	cfg.ack = on_ack;
	cfg.ack_arg = st;
	if (ks_bulk_new(&cfg, &bulk) != KS_OK)
		goto wait;
	ready = 1;
wait:
	/* every station waits, ready or not, so the others are not stuck */
	pthread_barrier_wait(st->start);
	if (!ready)
		goto out;
	memset(uid, 0, sizeof(uid));
	uid[0] = (uint8_t)st->index;
	for (unsigned long i = 0; i < st->n; i++) {
		memcpy(uid + 4, &i, sizeof(i));
		if (ks_bulk_host(bulk, uid, sizeof(uid)) != KS_OK)
			goto out;
	}
	if (ks_bulk_flush(bulk) != KS_OK || st->acked != st->n)
		goto out;
	st->failed = 0;
out:
	ks_bulk_free(&bulk);
	ks_reg_close(&reg);
	ks_signer_free(&signer);
	ks_ca_free(&ca);
	EVP_PKEY_free(skey);
	return NULL;
}

/* Run S stations on url; print the line; 0 when all identities came. */
static int run_line(const char *backend, const char *url, const char *dir,
		    int stations, unsigned long n, unsigned group)
{
	station_t st[MAX_STATIONS];
	pthread_t th[MAX_STATIONS];
	pthread_barrier_t start;
	uint64_t acked = 0;
	double t0, wall;
	int failed = 0, started = 0;

	/* + 1: this thread starts the clock when every station is ready */
	if (pthread_barrier_init(&start, NULL, (unsigned)stations + 1) != 0)
		return -1;
	for (int i = 0; i < stations; i++) {
		memset(&st[i], 0, sizeof(st[i]));
		st[i].index = i + 1;
		st[i].url = url;
		st[i].dir = dir;
		st[i].n = n;
		st[i].group = group;
		st[i].start = &start;
		if (pthread_create(&th[i], NULL, station_main, &st[i]) != 0)
			break;
		started++;
	}
	if (started != stations) {
		/* the barrier cannot complete: stop here (the created threads
		 * stay blocked; the process exits) */
		fprintf(stderr, "bench_pg: cannot start %d threads\n", stations);
		exit(1);
	}
	pthread_barrier_wait(&start);
	t0 = bu_now_s();
	for (int i = 0; i < stations; i++) {
		pthread_join(th[i], NULL);
		acked += st[i].acked;
		failed |= st[i].failed;
	}
	wall = bu_now_s() - t0;
	pthread_barrier_destroy(&start);
	printf("backend %s stations %d group %u identities %" PRIu64
	       " wall_s %.3f per_s %.1f failed %d\n",
	       backend, stations, group, acked, wall, (double)acked / wall,
	       failed);
	fflush(stdout);
	return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long n = 400;
	unsigned group = 256;
	const char *slist = "1,4";
	char dir[PATH_MAX], path[PATH_MAX + 32], url[PATH_MAX + 256],
		err[256], why[256], dbname[32], cmd[PATH_MAX + 16];
	pgt_server_t pg;
	int rc = 1, opt, pg_up = 0;

	while ((opt = getopt(argc, argv, "n:g:s:")) != -1) {
		switch (opt) {
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'g': group = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': slist = optarg; break;
		default: return 2;
		}
	}
	if (n == 0 || group == 0 || group > KS_BULK_GROUP_MAX)
		return 2;
	ks_log_set_level(KS_LOG_ERROR);
	snprintf(dir, sizeof(dir), "%s/kiln-benchpg-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp");
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/ca", dir);
	if (ks_ca_init_dev(path, "Bench", err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "bench_pg: ca init: %s\n", err);
		goto out;
	}
	snprintf(url, sizeof(url), "sqlite:%s/registry.db", dir);
	if (run_line("sqlite", url, dir, 1, n, group) != 0)
		goto out;
	memset(&pg, 0, sizeof(pg));
	if (!pgt_available(why, sizeof(why))) {
		printf("skipped %s\n", why);
		rc = 0;
		goto out;
	}
	if (pgt_start(&pg, NULL) != 0)
		goto out;
	pg_up = 1;
	for (const char *p = slist; *p != '\0';) {
		char *end;
		long s = strtol(p, &end, 10);

		if (end == p || s < 1 || s > MAX_STATIONS)
			goto out;
		p = *end == ',' ? end + 1 : end;
		/* a fresh database per configuration */
		snprintf(dbname, sizeof(dbname), "line%ld", s);
		if (pgt_create_db(&pg, dbname) != 0 ||
		    pgt_url(&pg, dbname, url, sizeof(url)) == NULL ||
		    run_line("postgresql", url, dir, (int)s, n, group) != 0)
			goto out;
	}
	rc = 0;
out:
	if (pg_up)
		pgt_stop(&pg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_pg: could not remove %s\n", dir);
	if (rc != 0)
		fprintf(stderr, "bench_pg: failed\n");
	return rc;
}
