/*
 * Group commit: no acknowledged identity is lost when the station is
 * killed (SIGKILL) during bulk issuance.
 *
 * A child process issues identities with ks_bulk (groups of 16) and
 * writes the serial of each ACKNOWLEDGED identity to a pipe. It is killed
 *   a) deterministically at the fault point "group:commit" of its Nth group
 *      (just before COMMIT: the whole group must be absent), and
 *   b) by the parent with SIGKILL at a random moment after some acks
 *      (during signing, SQLite work or the fsync of a commit).
 * The parent then opens the registry: every acknowledged serial must be
 * ISSUED with its certificate, the audit chain must verify, and in case a)
 * nothing beyond the acknowledged identities may be recorded.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "host/lib/audit.h"
#include "host/lib/bulk.h"
#include "host/lib/ca.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"
#include "host/lib/signer.h"

#define GROUP 16
#define MAX_ACK 4096

static int passed, failed;
static char dir[PATH_MAX];

static void check(int ok, const char *what)
{
	if (ok) {
		passed++;
	} else {
		failed++;
		printf("FAIL: %s\n", what);
	}
}

static void pathof(char *out, size_t n, const char *rel)
{
	snprintf(out, n, "%s/%s", dir, rel);
}

static EVP_PKEY *load_key(const char *rel, int pub)
{
	char p[PATH_MAX + 32];
	EVP_PKEY *k = NULL;
	FILE *fp;

	pathof(p, sizeof(p), rel);
	fp = fopen(p, "r");
	if (fp == NULL)
		return NULL;
	k = pub ? PEM_read_PUBKEY(fp, NULL, NULL, NULL)
		: PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	return k;
}

typedef struct {
	int fd;
	int kill_at_group; /* 0: never */
	int groups;
} child_t;

static void on_ack(void *arg, const ks_bulk_ack_t *a)
{
	child_t *c = arg;
	char line[KS_REG_SERIAL_MAX + 2];
	int n = snprintf(line, sizeof(line), "%s\n", a->serial);

	/* one write per identity: the parent has it once write returns */
	if (write(c->fd, line, (size_t)n) != n)
		_exit(3);
}

static void hook(void *ctx, const char *point)
{
	child_t *c = ctx;

	if (strcmp(point, "group:commit") == 0 &&
	    ++c->groups == c->kill_at_group)
		raise(SIGKILL); /* kill -9 inside the group commit */
}

/* The station: issue identities until killed (or n_max reached). */
static int child_main(int fd, int trial, int kill_at_group)
{
	char a[PATH_MAX + 32], b[PATH_MAX + 32], c[PATH_MAX + 32], err[256];
	ks_ca_t *ca = NULL;
	ks_signer_t *signer = NULL;
	ks_reg_t *reg = NULL;
	ks_bulk_t *bulk = NULL;
	ks_profile_t p;
	ks_bulk_cfg_t cfg;
	child_t st = {fd, kill_at_group, 0};
	EVP_PKEY *skey = load_key("ca/station.key", 0);
	uint8_t uid[8];

	pathof(a, sizeof(a), "ca/station-ca.pem");
	pathof(b, sizeof(b), "ca/station-ca.key");
	pathof(c, sizeof(c), "ca/chain.pem");
	if (ks_ca_load(a, b, c, &ca) != KS_OK ||
	    ks_signer_new(&ca, &signer) != KS_OK ||
	    ks_profile_init(&p, "bulk", err, sizeof(err)) != KS_OK ||
	    ks_profile_set(&p, "subject", "CN=${serial}", err, sizeof(err)) ||
	    ks_profile_set(&p, "validity_days", "365", err, sizeof(err)) ||
	    ks_profile_set(&p, "key_origin", "host", err, sizeof(err)) ||
	    ks_profile_set(&p, "lock", "full", err, sizeof(err)) ||
	    ks_signer_add_profile(signer, &p) != KS_OK)
		return 2;
	pathof(a, sizeof(a), "registry.db");
	if (skey == NULL || ks_reg_open(a, "st1", &reg) != KS_OK ||
	    ks_reg_set_station_key(reg, skey) != KS_OK)
		return 2;
	ks_reg_set_fault_hook(reg, hook, &st);
	memset(&cfg, 0, sizeof(cfg));
	cfg.reg = reg;
	cfg.signer = signer;
	cfg.lot = "L1";
	cfg.profile = "bulk";
	cfg.origin = KS_REG_KEY_HOST;
	cfg.group = GROUP;
	cfg.ack = on_ack;
	cfg.ack_arg = &st;
	if (ks_bulk_new(&cfg, &bulk) != KS_OK)
		return 2;
	for (uint32_t i = 0; i < MAX_ACK; i++) {
		uid[0] = (uint8_t)trial;
		uid[1] = 0xb0;
		memcpy(uid + 2, &i, sizeof(i));
		uid[6] = uid[7] = 0x5a;
		if (ks_bulk_host(bulk, uid, sizeof(uid)) != KS_OK)
			return 4;
	}
	return ks_bulk_flush(bulk) == KS_OK ? 0 : 5; /* not reached in these trials: the parent kills first */
}

static int trial(int t, int kill_at_group, unsigned kill_after_acks,
		 unsigned jitter_us)
{
	static char acked[MAX_ACK][KS_REG_SERIAL_MAX];
	char buf[8192], line[KS_REG_SERIAL_MAX], p[PATH_MAX + 32];
	char what[160];
	size_t nack = 0, ll = 0;
	int fds[2], status = 0, signalled;
	pid_t pid;
	ks_reg_t *reg = NULL;
	ks_reg_session_t *ss = NULL;
	size_t ns = 0, missing = 0, issued = 0;
	ks_audit_report_t rep;
	EVP_PKEY *spub;
	ssize_t k;

	if (pipe(fds) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		_exit(child_main(fds[1], t, kill_at_group));
	}
	close(fds[1]);
	while ((k = read(fds[0], buf, sizeof(buf))) > 0 || (k < 0 && errno == EINTR)) {
		for (ssize_t i = 0; i < k; i++) {
			if (buf[i] != '\n') {
				if (ll < sizeof(line) - 1)
					line[ll++] = buf[i];
				continue;
			}
			line[ll] = '\0';
			ll = 0;
			if (nack < MAX_ACK)
				snprintf(acked[nack++], KS_REG_SERIAL_MAX, "%s", line);
			if (kill_after_acks != 0 && nack == kill_after_acks) {
				usleep(jitter_us);
				kill(pid, SIGKILL);
			}
		}
	}
	close(fds[0]);
	waitpid(pid, &status, 0);
	signalled = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	snprintf(what, sizeof(what), "trial %d: station killed by SIGKILL "
		 "(status 0x%x)", t, (unsigned)status);
	check(signalled, what);

	pathof(p, sizeof(p), "registry.db");
	if (ks_reg_open(p, "st1", &reg) != KS_OK)
		return -1;
	if (ks_reg_session_list(reg, "L1", KS_REG_ISSUED, 0, &ss, &ns) != KS_OK)
		return -1;
	for (size_t i = 0; i < nack; i++) {
		int found = 0;

		for (size_t j = 0; j < ns && !found; j++)
			found = strcmp(ss[j].serial, acked[i]) == 0;
		if (!found)
			missing++;
	}
	for (size_t j = 0; j < ns; j++)
		if (ss[j].uid[0] == (uint8_t)t && ss[j].uid[1] == 0xb0)
			issued++;
	snprintf(what, sizeof(what),
		 "trial %d: all %zu acknowledged identities are ISSUED "
		 "(%zu missing)", t, nack, missing);
	check((nack > 0 || kill_at_group == 1) && missing == 0, what);
	if (kill_at_group != 0) {
		snprintf(what, sizeof(what),
			 "trial %d: killed in COMMIT of group %d: recorded %zu "
			 "== acknowledged %zu == %d", t, kill_at_group, issued,
			 nack, (kill_at_group - 1) * GROUP);
		check(issued == nack &&
			      nack == (size_t)(kill_at_group - 1) * GROUP,
		      what);
	} else {
		snprintf(what, sizeof(what), "trial %d: recorded %zu >= "
			 "acknowledged %zu", t, issued, nack);
		check(issued >= nack, what);
	}
	free(ss);
	ks_reg_close(&reg);
	spub = load_key("ca/station.pub", 1);
	pathof(p, sizeof(p), "registry.db");
	{
		char ca[PATH_MAX + 32];
		int r;

		pathof(ca, sizeof(ca), "ca/chain.pem");
		memset(&rep, 0, sizeof(rep));
		r = ks_audit_verify(p, ca, spub, &rep);
		snprintf(what, sizeof(what), "trial %d: audit chain verifies "
			 "after the kill (%d, %llu rows)", t, r,
			 (unsigned long long)rep.rows);
		check(r == KS_OK && rep.ok, what);
	}
	EVP_PKEY_free(spub);
	printf("trial %d: %zu acknowledged, %zu recorded\n", t, nack, issued);
	return 0;
}

int main(void)
{
	char p[PATH_MAX + 32], err[256], cmd[PATH_MAX + 16];
	ks_reg_t *reg = NULL;
	int t = 0;

	ks_log_set_level(KS_LOG_ERROR);
	snprintf(dir, sizeof(dir), "/var/tmp/kiln-bulkcrash-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	pathof(p, sizeof(p), "ca");
	if (ks_ca_init_dev(p, "Test", err, sizeof(err)) != KS_OK) {
		printf("ca: %s\n", err);
		return 1;
	}
	pathof(p, sizeof(p), "registry.db");
	if (ks_reg_open(p, "st1", &reg) != KS_OK ||
	    ks_reg_lot_create(reg, "L1", "bulk", "BK", -1, "test") != KS_OK)
		return 1;
	ks_reg_close(&reg);

	/* a) SIGKILL at the COMMIT of group 1, 2, 5 */
	check(trial(++t, 1, 0, 0) == 0, "trial ran");
	check(trial(++t, 2, 0, 0) == 0, "trial ran");
	check(trial(++t, 5, 0, 0) == 0, "trial ran");
	/* b) SIGKILL from outside at moments spread over a group's work */
	srand((unsigned)time(NULL));
	for (int i = 0; i < 6; i++)
		check(trial(++t, 0, (unsigned)(GROUP * (1 + i % 3)),
			    (unsigned)(rand() % 20000)) == 0,
		      "trial ran");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("could not remove %s\n", dir);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
