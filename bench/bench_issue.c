/*
 * bench_issue: bulk issuance through the product's path (ks_bulk: signer +
 * registry with group commit), and the crypto-only limit of this machine.
 *
 *   bench_issue crypto  [-t SECONDS]
 *   bench_issue host    [-n N] [-g GROUP] [-d DIR]
 *   bench_issue device  [-n N] [-g GROUP] [-d DIR]
 *
 * Prints "key value" lines for scripts/bench. host/device: a fresh station
 * directory (development CA, registry WAL synchronous=FULL, station key
 * signing audit checkpoints every 64 events, as kilnd runs), N identities
 * each acknowledged only after its group committed; the CSRs of the device
 * mode are made before the clock starts; also where the time went per
 * identity (ks_bulk_stats: keygen, CSR check, signer, registry steps,
 * group commits). Exits non-zero if an identity
 * fails or the acknowledged count differs from N.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "bench/bench_util.h"
#include "host/lib/bulk.h"
#include "host/lib/ca.h"
#include "host/lib/hostkey.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"
#include "host/lib/signer.h"

#define UID_LEN 16

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- crypto-only limit: P-256 keygen + ECDSA sign of a TBS ---- */

static EVP_PKEY *keygen(EVP_PKEY_CTX *kctx)
{
	EVP_PKEY *k = NULL;

	if (EVP_PKEY_keygen(kctx, &k) != 1)
		return NULL;
	return k;
}

static int run_crypto(double seconds)
{
	EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
	EVP_PKEY *ca = NULL, *k;
	uint8_t tbs[400], sig[80];
	size_t siglen;
	double t0, t, tk = 0, ts = 0;
	unsigned long nk = 0, ns = 0;
	int rc = 1;

	RAND_bytes(tbs, sizeof(tbs)); /* a certificate's TBS is ~300-400 B */
	if (kctx == NULL || EVP_PKEY_keygen_init(kctx) != 1 ||
	    EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx,
						   NID_X9_62_prime256v1) != 1)
		goto out;
	ca = keygen(kctx);
	if (ca == NULL)
		goto out;
	t0 = bu_now_s();
	do {
		k = keygen(kctx);
		if (k == NULL)
			goto out;
		EVP_PKEY_free(k);
		nk++;
	} while ((t = bu_now_s()) - t0 < seconds / 2);
	tk = (t - t0) / (double)nk;
	t0 = bu_now_s();
	do {
		EVP_MD_CTX *md = EVP_MD_CTX_new();

		siglen = sizeof(sig);
		if (md == NULL ||
		    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, ca) != 1 ||
		    EVP_DigestSign(md, sig, &siglen, tbs, sizeof(tbs)) != 1) {
			EVP_MD_CTX_free(md);
			goto out;
		}
		EVP_MD_CTX_free(md);
		ns++;
	} while ((t = bu_now_s()) - t0 < seconds / 2);
	ts = (t - t0) / (double)ns;
	printf("keygen_per_s %.1f\n", 1.0 / tk);
	printf("sign_per_s %.1f\n", 1.0 / ts);
	printf("crypto_limit_per_s %.1f\n", 1.0 / (tk + ts));
	rc = 0;
out:
	EVP_PKEY_free(ca);
	EVP_PKEY_CTX_free(kctx);
	if (rc != 0)
		fprintf(stderr, "bench_issue: crypto failed\n");
	return rc;
}

/* ---- product path ---- */

typedef struct {
	unsigned long acked;
	unsigned long der_bytes;
} ack_state_t;

static void on_ack(void *arg, const ks_bulk_ack_t *a)
{
	ack_state_t *s = arg;

	s->acked++;
	s->der_bytes += a->cert->der_len;
}

static int make_csr(EVP_PKEY_CTX *kctx, int i, uint8_t **der, int *len)
{
	X509_REQ *req = X509_REQ_new();
	EVP_PKEY *k = keygen(kctx);
	X509_NAME *n = X509_NAME_new();
	char cn[32];
	int rc = -1;

	snprintf(cn, sizeof(cn), "board-%06d", i);
	*der = NULL;
	if (req == NULL || k == NULL || n == NULL ||
	    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
				       (const unsigned char *)cn, -1, -1,
				       0) != 1 ||
	    X509_REQ_set_subject_name(req, n) != 1 ||
	    X509_REQ_set_pubkey(req, k) != 1 ||
	    X509_REQ_sign(req, k, EVP_sha256()) <= 0)
		goto out;
	*len = i2d_X509_REQ(req, der);
	rc = *len > 0 ? 0 : -1;
out:
	X509_NAME_free(n);
	EVP_PKEY_free(k);
	X509_REQ_free(req);
	return rc;
}

static int run_issue(int host, unsigned long n, unsigned group,
		     const char *dir_arg)
{
	char dir[PATH_MAX], path[PATH_MAX + 64], path2[PATH_MAX + 64],
		path3[PATH_MAX + 64], err[256];
	ks_ca_t *ca = NULL;
	ks_signer_t *signer = NULL;
	ks_reg_t *reg = NULL;
	ks_bulk_t *bulk = NULL;
	EVP_PKEY *skey = NULL;
	EVP_PKEY_CTX *kctx = NULL;
	uint8_t **csr = NULL;
	int *csr_len = NULL;
	uint8_t uid[UID_LEN];
	ack_state_t st = {0, 0};
	ks_bulk_cfg_t cfg;
	ks_bulk_stats_t bs;
	unsigned long failed = 0;
	double t0, c0, wall, cpu;
	FILE *fp;
	int rc = 1;

	if (dir_arg != NULL) {
		snprintf(dir, sizeof(dir), "%s", dir_arg);
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			goto out;
	} else {
		const char *tmp = getenv("TMPDIR");

		snprintf(dir, sizeof(dir), "%s/kiln-bench-XXXXXX",
			 tmp ? tmp : "/var/tmp");
		if (mkdtemp(dir) == NULL)
			goto out;
	}
	snprintf(path, sizeof(path), "%s/ca", dir);
	if (ks_ca_init_dev(path, "Bench", err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "bench_issue: ca init: %s\n", err);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/ca/station-ca.pem", dir);
	snprintf(path2, sizeof(path2), "%s/ca/station-ca.key", dir);
	snprintf(path3, sizeof(path3), "%s/ca/chain.pem", dir);
	if (ks_ca_load(path, path2, path3, &ca) != KS_OK ||
	    ks_signer_new(&ca, &signer) != KS_OK ||
	    bu_add_profile(signer, host ? "host" : "device",
			   "bench_issue") != 0)
		goto out;
	snprintf(path, sizeof(path), "%s/ca/station.key", dir);
	fp = fopen(path, "r");
	if (fp != NULL) {
		skey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
		fclose(fp);
	}
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	if (skey == NULL || ks_reg_open(path, "bench", &reg) != KS_OK ||
	    ks_reg_set_station_key(reg, skey) != KS_OK ||
	    ks_reg_lot_create(reg, "L1", "bench", "BN", -1, "bench") != KS_OK)
		goto out;

	if (!host) {
		kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
		csr = calloc(n, sizeof(*csr));
		csr_len = calloc(n, sizeof(*csr_len));
		if (kctx == NULL || csr == NULL || csr_len == NULL ||
		    EVP_PKEY_keygen_init(kctx) != 1 ||
		    EVP_PKEY_CTX_set_ec_paramgen_curve_nid(
			    kctx, NID_X9_62_prime256v1) != 1)
			goto out;
		for (unsigned long i = 0; i < n; i++)
			if (make_csr(kctx, (int)i, &csr[i], &csr_len[i]) != 0)
				goto out;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.reg = reg;
	cfg.signer = signer;
	cfg.lot = "L1";
	cfg.profile = "bench";
	cfg.origin = host ? KS_REG_KEY_HOST : KS_REG_KEY_DEVICE;
	cfg.group = group;
	cfg.actor = "bench";
	cfg.ack = on_ack;
	cfg.ack_arg = &st;
	if (ks_bulk_new(&cfg, &bulk) != KS_OK)
		goto out;
	RAND_bytes(uid, sizeof(uid));
	t0 = bu_now_s();
	c0 = cpu_s();
	for (unsigned long i = 0; i < n; i++) {
		ks_err_t r;

		memcpy(uid, &i, sizeof(i)); /* unique per identity */
		if (host)
			r = ks_bulk_host(bulk, uid, sizeof(uid));
		else
			r = ks_bulk_csr(bulk, uid, sizeof(uid), csr[i],
					(size_t)csr_len[i]);
		if (r != KS_OK) {
			fprintf(stderr, "bench_issue: identity %lu: %s\n", i,
				ks_strerror(r));
			failed++;
		}
	}
	if (ks_bulk_flush(bulk) != KS_OK)
		failed++;
	wall = bu_now_s() - t0;
	cpu = cpu_s() - c0;
	printf("identities %lu\n", st.acked);
	printf("group %u\n", group);
	printf("wall_s %.4f\n", wall);
	printf("cpu_s %.4f\n", cpu);
	printf("per_s %.1f\n", (double)st.acked / wall);
	printf("cpu_us_per_identity %.1f\n", cpu * 1e6 / (double)st.acked);
	printf("cert_der_avg %.0f\n", (double)st.der_bytes / (double)st.acked);
	/* where the time went, per identity (ks_bulk_stats) */
	ks_bulk_stats(bulk, &bs);
	printf("keygen_us %.1f\n", (double)bs.keygen_ns / 1e3 / (double)st.acked);
	printf("csr_us %.1f\n", (double)bs.csr_ns / 1e3 / (double)st.acked);
	printf("sign_us %.1f\n", (double)bs.sign_ns / 1e3 / (double)st.acked);
	printf("registry_us %.1f\n",
	       (double)bs.registry_ns / 1e3 / (double)st.acked);
	printf("commit_us %.1f\n", (double)bs.commit_ns / 1e3 / (double)st.acked);
	rc = failed == 0 && st.acked == n ? 0 : 1;
out:
	ks_bulk_free(&bulk);
	ks_reg_close(&reg);
	ks_signer_free(&signer);
	ks_ca_free(&ca);
	EVP_PKEY_free(skey);
	EVP_PKEY_CTX_free(kctx);
	if (csr != NULL)
		for (unsigned long i = 0; i < n; i++)
			OPENSSL_free(csr[i]);
	free(csr);
	free(csr_len);
	if (dir_arg == NULL && dir[0] != '\0') {
		char cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench_issue: could not remove %s\n",
				dir);
	}
	if (rc != 0)
		fprintf(stderr, "bench_issue: failed\n");
	return rc;
}

int main(int argc, char **argv)
{
	unsigned long n = 2000;
	unsigned group = 256;
	double seconds = 2.0;
	const char *dir = NULL;
	int opt;

	if (argc < 2) {
		fprintf(stderr, "usage: bench_issue crypto|host|device "
				"[-n N] [-g GROUP] [-t SEC] [-d DIR]\n");
		return 2;
	}
	optind = 2;
	while ((opt = getopt(argc, argv, "n:g:t:d:")) != -1) {
		switch (opt) {
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'g': group = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't': seconds = strtod(optarg, NULL); break;
		case 'd': dir = optarg; break;
		default: return 2;
		}
	}
	if (n == 0 || group == 0 || group > KS_BULK_GROUP_MAX || seconds <= 0)
		return 2;
	ks_log_set_level(KS_LOG_ERROR);
	if (strcmp(argv[1], "crypto") == 0)
		return run_crypto(seconds);
	if (strcmp(argv[1], "host") == 0)
		return run_issue(1, n, group, dir);
	if (strcmp(argv[1], "device") == 0)
		return run_issue(0, n, group, dir);
	fprintf(stderr, "bench_issue: unknown mode %s\n", argv[1]);
	return 2;
}
