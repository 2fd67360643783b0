/*
 * The signer as its own process and its request table. A child process
 * holds the CA key and serves ks_signer_serve(); this test plays a slot
 * worker that is NOT the station's engine: it talks to the signer socket
 * directly and tries to obtain signatures outside a valid session (no
 * such session, no session named, wrong state, wrong key, other lot or
 * serial, a second request for the same session, over the lot quota).
 * Each is refused and recorded as a SIGN_REFUSED audit event, and
 * `audit verify` still accepts the log. Measures the cost per certificate
 * of the process boundary (and its request-table check).
 */
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <sqlite3.h>

#include "host/lib/audit.h"
#include "host/lib/ca.h"
#include "host/lib/hostkey.h"
#include "host/lib/registry.h"
#include "host/lib/signer.h"

#define LOT "LOT-1"
#define QUOTA 4      /* profile lot_quota */
#define BENCH_N 200

static int passed, failed;
static char tmp[256], ca_dir[300], db[300];

static bool check(bool ok, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool check(bool ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", ok ? "PASS" : "FAIL");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (ok)
		passed++;
	else
		failed++;
	return ok;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int make_profile(ks_profile_t *p, const char *quota)
{
	char err[256];

	return ks_profile_init(p, "widget", err, sizeof(err)) == KS_OK &&
			       ks_profile_set(p, "subject", "CN=${serial}", err,
					      sizeof(err)) == KS_OK &&
			       ks_profile_set(p, "validity_days", "365", err,
					      sizeof(err)) == KS_OK &&
			       ks_profile_set(p, "key_origin", "host", err,
					      sizeof(err)) == KS_OK &&
			       ks_profile_set(p, "lock", "none", err,
					      sizeof(err)) == KS_OK &&
			       ks_profile_set(p, "lot_quota", quota, err,
					      sizeof(err)) == KS_OK
		       ? 0
		       : -1;
}

static int load_signer(const char *quota, ks_signer_t **s)
{
	char cert[400], key[400], chain[400];
	ks_profile_t p;
	ks_ca_t *ca = NULL;

	snprintf(cert, sizeof(cert), "%s/%s", ca_dir, KS_CA_FILE_CERT);
	snprintf(key, sizeof(key), "%s/%s", ca_dir, KS_CA_FILE_KEY);
	snprintf(chain, sizeof(chain), "%s/%s", ca_dir, KS_CA_FILE_CHAIN);
	if (ks_ca_load(cert, key, chain, &ca) != KS_OK ||
	    ks_signer_new(&ca, s) != KS_OK || make_profile(&p, quota) != 0 ||
	    ks_signer_add_profile(*s, &p) != KS_OK)
		return -1;
	return 0;
}

/* The signer process: loads the CA itself, serves until EOF. */
static pid_t spawn_signer(const char *quota, int *fd)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		ks_signer_t *s = NULL;
		ks_signer_serve_cfg_t cfg = { .registry = db,
					      .station_id = "test-station" };

		close(sv[0]);
		if (load_signer(quota, &s) != 0)
			cfg.load_error = "cannot load the CA";
		_exit(ks_signer_serve(&s, sv[1], &cfg) == KS_OK ? 0 : 1);
	}
	close(sv[1]);
	*fd = sv[0];
	return pid;
}

typedef struct {
	ks_reg_session_t sess;
	EVP_PKEY *key;
} board_t;

/* A session of a fresh UID in LOT; keyed (KEYED with its key) or not. */
static int new_board(ks_reg_t *reg, uint32_t n, bool keyed, board_t *b)
{
	uint8_t uid[8] = { 0xb0, 0x0a, 0, 0 };
	uint8_t h[32];

	memset(b, 0, sizeof(*b));
	memcpy(uid + 4, &n, sizeof(n));
	if (ks_reg_session_begin(reg, uid, sizeof(uid), LOT, "widget", 1,
				 KS_REG_KEY_HOST, 0, "test", &b->sess) != KS_OK ||
	    ks_hostkey_generate(&b->key) != KS_OK)
		return -1;
	if (!keyed)
		return 0;
	if (ks_pubkey_spki_sha256(b->key, h) != KS_OK ||
	    ks_reg_keyed(reg, b->sess.id, h, KS_REG_KEY_HOST, "test") != KS_OK)
		return -1;
	return 0;
}

static void board_free(board_t *b)
{
	EVP_PKEY_free(b->key);
	b->key = NULL;
}

/* The request an engine would send for this session. */
static void req_for(const board_t *b, EVP_PKEY *key, ks_issue_req_t *req)
{
	memset(req, 0, sizeof(*req));
	snprintf(req->profile, sizeof(req->profile), "%s", b->sess.profile);
	snprintf(req->serial, sizeof(req->serial), "%s", b->sess.serial);
	snprintf(req->lot, sizeof(req->lot), "%s", b->sess.lot);
	memcpy(req->uid, b->sess.uid, b->sess.uid_len);
	req->uid_len = (uint32_t)b->sess.uid_len;
	req->origin = KS_KEY_ORIGIN_HOST;
	req->session_id = b->sess.id;
	if (ks_issue_req_set_pubkey(req, key != NULL ? key : b->key) != KS_OK)
		req->spki_len = 0;
}

static int64_t count_refusals(const char *like)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h,
			       "SELECT count(*) FROM audit WHERE type = 'SIGN_REFUSED' AND details LIKE ?1",
			       -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_bind_text(st, 1, like, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

static ks_err_t issue(ks_signer_t *s, const ks_issue_req_t *req,
		      ks_issued_t *out)
{
	return ks_signer_issue(s, req, out);
}

int main(void)
{
	ks_reg_t *reg = NULL;
	ks_signer_t *client = NULL, *local = NULL;
	ks_issue_req_t req;
	ks_issued_t *out = calloc(1, sizeof(*out));
	ks_issued_t *first = calloc(1, sizeof(*first));
	board_t a, b, c, wrong, q[QUOTA];
	EVP_PKEY *other = NULL, *spub = NULL, *skey = NULL;
	ks_audit_report_t rep;
	char err[1100], path[400], cmd[300];
	int fd = -1, refusals = 0;
	pid_t pid;
	FILE *fp;
	ks_err_t r;

	snprintf(tmp, sizeof(tmp), "/tmp/kiln-signer-proc-XXXXXX");
	if (out == NULL || first == NULL || mkdtemp(tmp) == NULL)
		return 1;
	snprintf(ca_dir, sizeof(ca_dir), "%s/ca", tmp);
	snprintf(db, sizeof(db), "%s/registry.db", tmp);
	if (ks_ca_init_dev(ca_dir, "kiln test", err, sizeof(err)) != KS_OK)
		return 1;

	/* the signer starts (and loads the key) before the station opens
	 * the registry, as kilnd does */
	pid = spawn_signer("4", &fd);
	snprintf(path, sizeof(path), "%s/%s", ca_dir, KS_CA_FILE_AUDIT_KEY);
	fp = fopen(path, "r");
	skey = fp != NULL ? PEM_read_PrivateKey(fp, NULL, NULL, NULL) : NULL;
	if (fp != NULL)
		fclose(fp);
	if (!check(pid > 0 && skey != NULL &&
			   ks_reg_open(db, "test-station", &reg) == KS_OK &&
			   ks_reg_set_station_key(reg, skey) == KS_OK &&
			   ks_reg_lot_create(reg, LOT, "widget", "W", -1,
					     "test") == KS_OK &&
			   ks_reg_lot_create(reg, "LOT-2", "widget", "X", -1,
					     "test") == KS_OK,
		   "signer process spawned, registry and lots ready"))
		goto out;
	r = ks_signer_connect(fd, pid, &client, err, sizeof(err));
	fd = -1;
	if (!check(r == KS_OK && ks_signer_is_remote(client) &&
			   ks_signer_chain_len(client) == 2,
		   "client connected, chain of 2 fetched: %s", err))
		goto out;
	check(ks_signer_set_lot_quota(client, LOT, 1000) == KS_ERR_UNSUPPORTED,
	      "the client cannot change a quota (policy lives in the signer)");

	/* a valid session is signed, once */
	if (new_board(reg, 1, true, &a) != 0 || new_board(reg, 2, false, &b) != 0 ||
	    new_board(reg, 3, true, &c) != 0 || new_board(reg, 4, true, &wrong) != 0 ||
	    ks_hostkey_generate(&other) != KS_OK)
		goto out;
	req_for(&a, NULL, &req);
	r = issue(client, &req, out);
	check(r == KS_OK, "a KEYED session with its key is signed (%s)",
	      ks_strerror((int)r));
	check(r == KS_OK && ks_ca_verify_der(ks_signer_chain(client), out->der,
					     out->der_len, 0, err,
					     sizeof(err)) == KS_OK,
	      "the certificate verifies against the chain");
	if (r == KS_OK)
		*first = *out;
	r = issue(client, &req, out);
	refusals++;
	check(r == KS_ERR_DUPLICATE,
	      "a second request for the same session is refused (%s)",
	      ks_strerror((int)r));

	/* the first signature is recorded: the session is ISSUED now */
	check(ks_reg_cert_issued(reg, a.sess.id, first->der, first->der_len,
				 first->serial_hex, first->spki_sha256,
				 first->not_before, first->not_after,
				 "test") == KS_OK,
	      "the station records the certificate (session ISSUED)");
	r = issue(client, &req, out);
	refusals++;
	check(r == KS_ERR_STATE, "a request for an ISSUED session is refused (%s)",
	      ks_strerror((int)r));

	/* outside a valid session */
	req_for(&c, NULL, &req);
	req.session_id = 999999;
	r = issue(client, &req, out);
	refusals++;
	check(r == KS_ERR_STATE, "no such session: refused (%s)",
	      ks_strerror((int)r));
	req.session_id = 0;
	r = issue(client, &req, out);
	refusals++;
	check(r == KS_ERR_STATE, "no session named: refused (%s)",
	      ks_strerror((int)r));
	req_for(&b, NULL, &req);
	r = issue(client, &req, out);
	refusals++;
	check(r == KS_ERR_STATE, "a RESERVED (not KEYED) session: refused (%s)",
	      ks_strerror((int)r));
	req_for(&wrong, other, &req);
	r = issue(client, &req, out);
	refusals++;
	check(r == KS_ERR_POLICY,
	      "a key other than the session's: refused (%s)",
	      ks_strerror((int)r));
	req_for(&c, NULL, &req);
	snprintf(req.lot, sizeof(req.lot), "LOT-2");
	r = issue(client, &req, out);
	refusals++;
	check(r == KS_ERR_POLICY, "another lot than the session's: refused (%s)",
	      ks_strerror((int)r));
	req_for(&c, NULL, &req);
	snprintf(req.serial, sizeof(req.serial), "W-999999");
	r = issue(client, &req, out);
	refusals++;
	check(r == KS_ERR_POLICY, "another serial than the session's: refused (%s)",
	      ks_strerror((int)r));

	/* the quota: a already took 1 of 4 */
	for (uint32_t i = 0; i < QUOTA; i++) {
		if (new_board(reg, 100 + i, true, &q[i]) != 0)
			goto out;
		req_for(&q[i], NULL, &req);
		r = issue(client, &req, out);
		if (i < QUOTA - 1)
			check(r == KS_OK, "session %u within the quota: signed", i);
		else
			check(r == KS_ERR_QUOTA,
			      "over the lot quota of %d: refused (%s)", QUOTA,
			      ks_strerror((int)r));
		board_free(&q[i]);
	}
	refusals++;

	check(count_refusals("%") == refusals,
	      "every refusal is in the audit log: %lld SIGN_REFUSED events, %d refusals",
	      (long long)count_refusals("%"), refusals);
	check(count_refusals("%quota%") == 1 &&
		      count_refusals("%no such session%") == 1 &&
		      count_refusals("%public key differs%") == 1 &&
		      count_refusals("%already signed%") >= 1,
	      "the events name the reasons (quota, no such session, key, duplicate)");

	/* audit verify accepts the log with the signer's events in it */
	ks_reg_close(&reg);
	snprintf(path, sizeof(path), "%s/%s", ca_dir, KS_CA_FILE_AUDIT_PUB);
	fp = fopen(path, "r");
	spub = fp != NULL ? PEM_read_PUBKEY(fp, NULL, NULL, NULL) : NULL;
	if (fp != NULL)
		fclose(fp);
	snprintf(path, sizeof(path), "%s/%s", ca_dir, KS_CA_FILE_CHAIN);
	memset(&rep, 0, sizeof(rep));
	r = (ks_err_t)ks_audit_verify(db, path, spub, &rep);
	check(r == KS_OK && rep.ok, "audit verify accepts the log: %s",
	      rep.first_error);
	if (ks_reg_open(db, "test-station", &reg) != KS_OK)
		goto out;

	/* the cost of the process boundary: the same issuance in-process
	 * and through the signer process (request table included) */
	ks_signer_free(&client); /* the signer process exits */
	check(waitpid(pid, NULL, WNOHANG) < 0,
	      "closing the client ends the signer process");
	pid = spawn_signer("0", &fd);
	if (!check(ks_signer_connect(fd, pid, &client, err, sizeof(err)) == KS_OK &&
			   load_signer("0", &local) == 0 &&
			   ks_reg_lot_create(reg, "BENCH", "widget", "B", -1,
					     "test") == KS_OK,
		   "bench: a fresh signer process and an in-process signer"))
		goto out;
	{
		board_t *bb = calloc(BENCH_N, sizeof(*bb));
		ks_issue_req_t *reqs = calloc(BENCH_N, sizeof(*reqs));
		double t0, t_local, t_remote;
		int ok = bb != NULL && reqs != NULL, i;

		for (i = 0; ok && i < BENCH_N; i++) {
			uint8_t uid[8] = { 0xbe, 0x4c };
			uint8_t h[32];

			memcpy(uid + 2, &i, sizeof(i));
			ok = ks_reg_session_begin(reg, uid, sizeof(uid), "BENCH",
						  "widget", 1, KS_REG_KEY_HOST, 0,
						  "test", &bb[i].sess) == KS_OK &&
			     ks_hostkey_generate(&bb[i].key) == KS_OK &&
			     ks_pubkey_spki_sha256(bb[i].key, h) == KS_OK &&
			     ks_reg_keyed(reg, bb[i].sess.id, h, KS_REG_KEY_HOST,
					  "test") == KS_OK;
			if (ok)
				req_for(&bb[i], NULL, &reqs[i]);
		}
		t0 = now_s();
		for (i = 0; ok && i < BENCH_N; i++)
			ok = issue(local, &reqs[i], out) == KS_OK;
		t_local = now_s() - t0;
		t0 = now_s();
		for (i = 0; ok && i < BENCH_N; i++)
			ok = issue(client, &reqs[i], out) == KS_OK;
		t_remote = now_s() - t0;
		if (check(ok, "%d certificates each way", BENCH_N))
			printf("BENCH signer: in-process %.3f ms/cert, signer process %.3f ms/cert "
			       "(boundary + request table: %+.3f ms/cert)\n",
			       1000.0 * t_local / BENCH_N,
			       1000.0 * t_remote / BENCH_N,
			       1000.0 * (t_remote - t_local) / BENCH_N);
		for (i = 0; bb != NULL && i < BENCH_N; i++)
			board_free(&bb[i]);
		free(bb);
		free(reqs);
	}
	ks_signer_free(&client);
	pid = 0;
out:
	board_free(&a);
	board_free(&b);
	board_free(&c);
	board_free(&wrong);
	EVP_PKEY_free(other);
	EVP_PKEY_free(spub);
	ks_signer_free(&client);
	ks_signer_free(&local);
	ks_reg_close(&reg);
	EVP_PKEY_free(skey);
	if (fd >= 0)
		close(fd);
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	free(out);
	free(first);
	if (getenv("KT_KEEP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmp);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
