/*
 * One batch, two kinds of board: the real kilnd and kiln CLI provision
 * the same batch (4 boards, device key origin, full lock) first on
 * kiln-agent-sim boards, then on QEMU mps2-an385 boards running the
 * firmware, and the outcomes are compared.
 *
 * In each run the 4th board loses power mid-session, right after its
 * first storage write (the simulator with --cut-after 1; the QEMU board
 * killed with SIGKILL as soon as its image shows the OTP header word
 * programmed); its session ends FAILED, the board comes back on the same
 * image and the station completes it. Every board then holds an identity
 * that `openssl verify` accepts against the station's chain, whose
 * certificate key is the board's HELLO key, and the board proves it holds
 * the private key (CHALLENGE). Compared between the runs: batch counts
 * (done, failed, refused), per-board state and lock bits, protocol
 * version, agent version, max payload, the identity blob's layout (which
 * objects, chain bytes, serial format). Per-session times are printed.
 *
 * QEMU boards are unix-socket slots (`port = unix:PATH`): QEMU listens on
 * PATH; a killed board's socket file is removed, so the slot sees the
 * board unplugged and plugged back in.
 *
 *   test_qemu_kilnd KILND KILN KILN-AGENT-SIM QEMU-BOARD [ELF]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "device/ports/posix/sim_image.h"
#include "host/lib/agent.h"
#include "tests/integration/kt_harness.h"
#include "tests/qemu/qboard.h"

#define NB 4 /* boards per batch; the last one is power-cut */
#define QSLOT(i) (NB + (i)) /* slot of QEMU board i (1..NB) */

typedef enum { KIND_SIM = 0, KIND_QEMU = 1 } kind_t;
static const char *const kind_name[] = {"simulator", "qemu"};

typedef struct {
	bool ran;
	long long done, failed, refused, elapsed_ms;
	bool cut;       /* the power cut happened mid-session */
	int verified;   /* boards whose identity verified */
	int session_ms[NB + 1];
	uint8_t state[NB + 1], lock[NB + 1];
	uint8_t proto;
	char agent_version[33], board[33];
	uint16_t max_payload;
	size_t chain_len;
	uint8_t chain_digest[32];
	bool has_meta, serial_ok;
} outcome_t;

static kt_station_t st;
static kq_board_t qb[NB + 1];
static char out[1 << 16];
static outcome_t res[2];

static const char profiles[] =
	"[profile widget]\n"
	"subject = CN=${serial},O=Kiln Test\n"
	"validity_days = 365\n"
	"key_origin = device\n"
	"lock = full\n\n";

static int64_t jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static int cert_point(X509 *x, uint8_t pt[65])
{
	EVP_PKEY *k = X509_get0_pubkey(x);
	size_t len = 0;

	if (k == NULL ||
	    EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
					    pt, 65, &len) != 1 || len != 65)
		return -1;
	return 0;
}

/* Verify the identity board n of a run holds; fills o. 0 if it holds. */
static int check_identity(kind_t kind, int n, const char *spec, outcome_t *o)
{
	ks_agent_opts_t ao = {.timeout_ms = 3000, .retries = 2};
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	uint8_t *blob = NULL, nonce[32], sig[KS_SIG_MAX], pt[65];
	size_t blob_len = 0, sig_len = 0;
	kp_blob_t b;
	X509 *x = NULL;
	const uint8_t *p;
	char pem[PATH_MAX], rel[64], root[PATH_MAX], inter[PATH_MAX];
	FILE *fp;
	int bad = 1, rc;

	if (!kt_check(ks_agent_open(spec, &ao, &a) == KS_OK &&
			      ks_agent_hello(a, &h) == KS_OK,
		      "%s board %d: HELLO after the batch", kind_name[kind], n))
		goto out;
	o->state[n] = h.st.state;
	o->lock[n] = h.st.lock;
	o->proto = h.proto;
	snprintf(o->agent_version, sizeof(o->agent_version), "%s",
		 h.agent_version);
	snprintf(o->board, sizeof(o->board), "%s", h.board);
	o->max_payload = h.max_payload;
	if (!kt_check(h.st.state == KP_STATE_LOCKED && h.st.has_pubkey,
		      "%s board %d: LOCKED with a key", kind_name[kind], n))
		goto out;
	if (!kt_check(ks_agent_readback(a, &blob, &blob_len) == KS_OK &&
			      kp_blob_decode(&b, blob, blob_len) == KP_OK,
		      "%s board %d: identity blob read back", kind_name[kind],
		      n))
		goto out;
	o->chain_len = b.chain_len;
	if (b.chain != NULL)
		EVP_Digest(b.chain, b.chain_len, o->chain_digest, NULL,
			   EVP_sha256(), NULL);
	o->has_meta = b.meta_len > 0;
	o->serial_ok = b.serial != NULL && b.serial_len > 0;
	p = b.cert;
	x = d2i_X509(NULL, &p, (long)b.cert_len);
	if (!kt_check(x != NULL, "%s board %d: certificate parses",
		      kind_name[kind], n))
		goto out;
	snprintf(rel, sizeof(rel), "boards/%s%d.pem", kind_name[kind], n);
	kt_path(&st, pem, sizeof(pem), rel);
	fp = fopen(pem, "w");
	if (fp == NULL || PEM_write_X509(fp, x) != 1) {
		kt_check(false, "write %s", pem);
		if (fp != NULL)
			fclose(fp);
		goto out;
	}
	fclose(fp);
	kt_path(&st, root, sizeof(root), "ca/root.pem");
	kt_path(&st, inter, sizeof(inter), "ca/station-ca.pem");
	rc = kt_run(out, sizeof(out), "/usr/bin/openssl", "verify", "-CAfile",
		    root, "-untrusted", inter, pem, NULL);
	if (!kt_check(rc == 0 && strstr(out, ": OK") != NULL,
		      "%s board %d: openssl verify: %s", kind_name[kind], n,
		      out))
		goto out;
	if (!kt_check(cert_point(x, pt) == 0 &&
			      memcmp(pt, h.st.pubkey, 65) == 0 &&
			      memcmp(pt, b.pubkey, 65) == 0,
		      "%s board %d: certificate key == the board's HELLO key",
		      kind_name[kind], n))
		goto out;
	RAND_bytes(nonce, sizeof(nonce));
	if (!kt_check(ks_agent_challenge(a, nonce, sizeof(nonce), sig,
					 &sig_len) == KS_OK &&
			      ks_verify_challenge(pt, h.uid, h.uid_len, nonce,
						  sizeof(nonce), sig,
						  sig_len) == KS_OK,
		      "%s board %d: challenge signed by the certified key",
		      kind_name[kind], n))
		goto out;
	bad = 0;
out:
	X509_free(x);
	free(blob);
	ks_agent_free(&a);
	return bad;
}

static void qpaths(int i, char *img, size_t imglen, char *sock,
		   size_t socklen, char *log, size_t loglen)
{
	char rel[64];

	snprintf(rel, sizeof(rel), "boards/q%d.img", i);
	kt_path(&st, img, imglen, rel);
	snprintf(rel, sizeof(rel), "boards/q%d.sock", i);
	kt_path(&st, sock, socklen, rel);
	snprintf(rel, sizeof(rel), "boards/q%d.log", i);
	kt_path(&st, log, loglen, rel);
}

static int qemu_start(int i)
{
	char img[PATH_MAX], sock[PATH_MAX], log[PATH_MAX];

	qpaths(i, img, sizeof(img), sock, sizeof(sock), log, sizeof(log));
	return kq_board_start(&qb[i], img, sock, NULL, log);
}

/* Kill QEMU board i as soon as its first storage write (the OTP header
 * word, programmed before the key) is in the image. */
static bool qemu_cut_after_first_write(int i, int timeout_ms)
{
	double deadline = kq_now_ms() + timeout_ms;
	int fd = open(qb[i].image, O_RDONLY | O_CLOEXEC);
	bool cut = false;

	if (fd < 0)
		return false;
	while (kq_now_ms() < deadline) {
		uint8_t w[8];
		struct timespec ts = {0, 500 * 1000L};

		if (pread(fd, w, sizeof(w), KA_SIM_OFF_OTP) == 8 &&
		    memcmp(w + 4, "\0\0\0\0", 4) == 0) {
			kq_board_kill(&qb[i]);
			cut = true;
			break;
		}
		nanosleep(&ts, NULL);
	}
	close(fd);
	return cut;
}

static void run_batch(kind_t kind, const char *lot)
{
	outcome_t *o = &res[kind];
	json_t *stj, *s = NULL;
	int cutslot = kind == KIND_SIM ? NB : QSLOT(NB);
	double t0;

	memset(o, 0, sizeof(*o));
	printf("# --- batch %s on %d %s boards ---\n", lot, NB,
	       kind_name[kind]);
	for (int i = 1; i <= NB; i++) {
		int rc = kind == KIND_SIM
				 ? kt_board_start(&st, i, NULL, NULL,
						  i == NB ? 1 : 0)
				 : qemu_start(i);

		if (!kt_check(rc == 0, "%s board %d starts", kind_name[kind],
			      i))
			return;
	}
	t0 = kq_now_ms();
	stj = kt_ctl(&st, "{\"cmd\":\"batch.start\",\"lot\":\"%s\","
			  "\"profile\":\"widget\",\"count\":%d}",
		     lot, NB);
	kt_check(json_is_true(json_object_get(stj, "ok")), "batch %s starts",
		 lot);
	json_decref(stj);

	/* the power cut, mid-session */
	if (kind == KIND_SIM) {
		ks_simproc_result_t r;

		if (ks_simproc_wait(st.boards[NB], 30000, &r) == KS_OK)
			o->cut = r.power_cut;
	} else {
		o->cut = qemu_cut_after_first_write(NB, 30000);
	}
	kt_check(o->cut, "%s board %d lost power mid-session", kind_name[kind],
		 NB);
	kt_check(kt_wait_slot(&st, cutslot, "failed", 30000, &s),
		 "%s board %d: the interrupted session ends FAILED (%s)",
		 kind_name[kind], NB,
		 json_string_value(json_object_get(s, "error")));
	json_decref(s);
	/* power on again, same image */
	if (kind == KIND_SIM) {
		char img[PATH_MAX];

		kt_path(&st, img, sizeof(img), "boards/slot4.img");
		kt_board_stop(&st, NB);
		kt_check(kt_board_start(&st, NB, img, NULL, 0) == 0,
			 "simulator board %d restarts", NB);
	} else {
		kt_check(qemu_start(NB) == 0, "qemu board %d restarts", NB);
	}
	stj = kt_wait_batch(&st, 120000);
	o->ran = stj != NULL;
	if (!kt_check(stj != NULL, "batch %s ends", lot))
		return;
	o->done = jint(json_object_get(stj, "batch"), "done");
	o->failed = jint(json_object_get(stj, "batch"), "failed");
	o->refused = jint(json_object_get(stj, "batch"), "refused");
	o->elapsed_ms = (long long)(kq_now_ms() - t0);
	for (int i = 1; i <= NB; i++) {
		int slot = kind == KIND_SIM ? i : QSLOT(i);
		json_t *sj = json_array_get(json_object_get(stj, "slots"),
					    (size_t)(slot - 1));

		o->session_ms[i] = (int)jint(sj, "last_ms");
		printf("# %s board %d (slot%d): %s, uid %s, session %d ms\n",
		       kind_name[kind], i, slot,
		       json_string_value(json_object_get(sj, "state")),
		       json_string_value(json_object_get(sj, "uid")),
		       o->session_ms[i]);
	}
	printf("# batch %s: done %lld, failed %lld, refused %lld in %lld ms\n",
	       lot, o->done, o->failed, o->refused, o->elapsed_ms);
	json_decref(stj);
	kt_check(o->done == NB && o->failed == 1 && o->refused == 0,
		 "%s batch: %d done, 1 failed (the power cut), 0 refused",
		 kind_name[kind], NB);

	/* the boards, checked one at a time (the batch is over: the station
	 * no longer opens them) */
	for (int i = 1; i <= NB; i++) {
		const char *spec = kind == KIND_SIM
					   ? ks_simproc_spec(st.boards[i])
					   : qb[i].spec;

		o->verified += check_identity(kind, i, spec, o) == 0;
	}
	kt_check(o->verified == NB, "%s: all %d boards hold verified "
		 "identities", kind_name[kind], NB);
	for (int i = 1; i <= NB; i++) {
		if (kind == KIND_SIM)
			kt_board_stop(&st, i);
		else
			kq_board_kill(&qb[i]);
	}
}

static void compare(void)
{
	const outcome_t *a = &res[KIND_SIM], *b = &res[KIND_QEMU];

	if (!a->ran || !b->ran) {
		kt_check(false, "both batches ran");
		return;
	}
	kt_check(a->done == b->done && a->failed == b->failed &&
			 a->refused == b->refused && a->cut == b->cut &&
			 a->verified == b->verified,
		 "same batch outcome: done %lld/%lld, failed %lld/%lld, "
		 "refused %lld/%lld, verified %d/%d",
		 a->done, b->done, a->failed, b->failed, a->refused,
		 b->refused, a->verified, b->verified);
	for (int i = 1; i <= NB; i++)
		kt_check(a->state[i] == b->state[i] && a->lock[i] == b->lock[i],
			 "board %d: same state %u/%u and lock bits %u/%u", i,
			 a->state[i], b->state[i], a->lock[i], b->lock[i]);
	kt_check(a->proto == b->proto &&
			 strcmp(a->agent_version, b->agent_version) == 0 &&
			 a->max_payload == b->max_payload,
		 "same protocol %u/%u, agent %s/%s, max payload %u/%u",
		 a->proto, b->proto, a->agent_version, b->agent_version,
		 a->max_payload, b->max_payload);
	kt_check(a->chain_len == b->chain_len &&
			 memcmp(a->chain_digest, b->chain_digest, 32) == 0 &&
			 a->has_meta == b->has_meta &&
			 a->serial_ok == b->serial_ok,
		 "same identity blob layout (chain %zu/%zu bytes)",
		 a->chain_len, b->chain_len);
	kt_check(strcmp(b->board, "qemu-mps2-an385") == 0 &&
			 strcmp(a->board, b->board) != 0,
		 "boards report themselves: %s / %s", a->board, b->board);
	for (int i = 1; i <= NB; i++)
		printf("# session time board %d: simulator %d ms, qemu %d ms\n",
		       i, a->session_ms[i], b->session_ms[i]);
	printf("# batch time: simulator %lld ms, qemu %lld ms\n",
	       a->elapsed_ms, b->elapsed_ms);
}

int main(int argc, char **argv)
{
	const char *ports[2 * NB] = {NULL};
	char portbuf[NB][PATH_MAX + 8];
	int rc;

	if (argc < 5) {
		fprintf(stderr, "usage: %s KILND KILN KILN-AGENT-SIM "
				"QEMU-BOARD [ELF]\n", argv[0]);
		return 1;
	}
	rc = kq_setup(argv[4], argc > 5 ? argv[5] : NULL);
	if (rc != 0)
		return rc;
	if (kt_init(&st, argc, argv, "qemu") != 0 || st.sim == NULL)
		return 1;
	for (int i = 1; i <= NB; i++) {
		char img[PATH_MAX], sock[PATH_MAX], log[PATH_MAX];

		qpaths(i, img, sizeof(img), sock, sizeof(sock), log,
		       sizeof(log));
		snprintf(portbuf[i - 1], sizeof(portbuf[i - 1]), "unix:%s",
			 sock);
		ports[QSLOT(i) - 1] = portbuf[i - 1];
	}
	if (kt_write_conf(&st, NULL, profiles, 2 * NB, ports) != 0 ||
	    kt_kilnd_start(&st) != 0) {
		fprintf(stderr, "kilnd did not start; log:\n");
		if (kt_run(out, sizeof(out), "/bin/cat", st.log, NULL) >= 0)
			fputs(out, stderr);
		kt_cleanup(&st);
		return 1;
	}

	run_batch(KIND_SIM, "LOT-SIM");
	run_batch(KIND_QEMU, "LOT-QEMU");
	compare();

	rc = kt_kilnd_stop(&st);
	kt_check(rc == 0, "kilnd exits 0 on SIGTERM (rc %d)", rc);
	rc = kt_run(out, sizeof(out), st.kiln, "audit", "verify", "-c",
		    st.conf, NULL);
	kt_check(rc == 0 && strstr(out, "audit OK") != NULL,
		 "kiln audit verify passes after both batches (rc %d)", rc);
	if (kt_failed > 0 && kt_run(out, sizeof(out), "/usr/bin/tail", "-n",
				    "40", st.log, NULL) >= 0)
		printf("--- kilnd log (tail) ---\n%s", out);
	for (int i = 1; i <= NB; i++)
		kq_board_kill(&qb[i]);
	kt_cleanup(&st);
	return kt_summary();
}
