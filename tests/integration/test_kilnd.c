/*
 * kilnd end to end: the real daemon, the real CLI and kiln-agent-sim
 * boards on PTYs.
 *
 *  1. 16 boards in parallel (device key origin) while two more slots
 *     misbehave (a port that is not a tty, a "board" that answers
 *     garbage): the batch completes, the bad slots show clear errors.
 *     Every certificate the boards hold verifies with `openssl verify`,
 *     its public key is the board's (HELLO) and the board proves it holds
 *     the private key (CHALLENGE).
 *  2. a host-key-origin batch on fresh boards: the boards' OTP key slots
 *     hold the private scalars; none of those bytes are in the registry
 *     files or the daemon's log. Boards already ACTIVE are left alone.
 *  3. a second board image with the UID of an ACTIVE board is refused;
 *     re-provisioning happens only with --reprovision and is audited with
 *     the operator's user name.
 *  4. a board unplugged mid-session (simulator killed by a power cut)
 *     ends FAILED and completes when it comes back on the same image.
 *  5. the daemon stops cleanly on SIGTERM (exit 0); `kiln audit verify`
 *     passes, and fails naming the row after an audit row is edited.
 *
 *   test_kilnd KILND KILN KILN-AGENT-SIM
 */
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "device/ports/posix/sim_image.h"
#include "host/lib/agent.h"
#include "tests/integration/kt_harness.h"

#define NBATCH 16
#define SLOT_NOTTY (NBATCH + 1)
#define SLOT_GARBAGE (NBATCH + 2)
#define NSLOTS (NBATCH + 2)
#define NHOST 4

static const char profiles[] =
	"[profile widget]\n"
	"subject = CN=${serial},O=Kiln Test\n"
	"validity_days = 365\n"
	"key_origin = device\n"
	"lock = full\n\n"
	"[profile gadget]\n"
	"subject = CN=${serial},O=Kiln Test,OU=Gadgets\n"
	"validity_days = 365\n"
	"key_origin = host\n"
	"lock = identity\n\n";

static kt_station_t st;
static char out[1 << 16];

/* ---- a unix-socket "board" that answers garbage ---- */

static int garbage_fd = -1;

static void *garbage_main(void *arg)
{
	static const char noise[] = "\xff\x13 U-Boot 2024.01 garbage \x7f\r\n";

	(void)arg;
	for (;;) {
		char buf[256];
		int c = accept(garbage_fd, NULL, NULL);

		if (c < 0)
			break;
		while (read(c, buf, sizeof(buf)) > 0)
			if (write(c, noise, sizeof(noise) - 1) < 0)
				break;
		close(c);
	}
	return NULL;
}

static int garbage_start(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	pthread_t t;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
	garbage_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (garbage_fd < 0 ||
	    bind(garbage_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(garbage_fd, 4) != 0 ||
	    pthread_create(&t, NULL, garbage_main, NULL) != 0)
		return -1;
	pthread_detach(t);
	return 0;
}

/* ---- helpers ---- */

static const char *board_spec(int n)
{
	return ks_simproc_spec(st.boards[n]);
}

static void hex(const uint8_t *b, size_t n, char *o)
{
	for (size_t i = 0; i < n; i++)
		sprintf(o + 2 * i, "%02x", b[i]);
}

static int64_t batch_int(json_t *status, const char *key)
{
	return json_integer_value(
		json_object_get(json_object_get(status, "batch"), key));
}

static json_t *slot_of(json_t *status, int n)
{
	return json_array_get(json_object_get(status, "slots"), (size_t)(n - 1));
}

/* Uncompressed EC point of a certificate's key. */
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

/*
 * Check the identity a board holds: readback blob -> certificate that
 * `openssl verify` accepts against the CA, whose key is the board's
 * (HELLO) and which the board can use (CHALLENGE). Returns 0 if all hold.
 */
static int check_board_identity(int n, char uid_out[65])
{
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

	/* a slot may still be finishing its last probe of this board after
	 * batch.stop: a few tries, as an operator's tool would */
	for (int t = 0; t < 5; t++) {
		if (ks_agent_open(board_spec(n), NULL, &a) == KS_OK &&
		    ks_agent_hello(a, &h) == KS_OK)
			break;
		ks_agent_free(&a);
		usleep(200 * 1000);
	}
	if (a == NULL) {
		kt_check(false, "board %d: HELLO after the batch", n);
		goto out;
	}
	hex(h.uid, h.uid_len, uid_out);
	if (!kt_check(h.st.state == KP_STATE_LOCKED && h.st.has_pubkey,
		      "board %d: LOCKED with a key (state %u)", n, h.st.state))
		goto out;
	if (!kt_check(ks_agent_readback(a, &blob, &blob_len) == KS_OK &&
			      kp_blob_decode(&b, blob, blob_len) == KP_OK,
		      "board %d: readback of its identity blob", n))
		goto out;
	p = b.cert;
	x = d2i_X509(NULL, &p, b.cert_len);
	if (!kt_check(x != NULL, "board %d: certificate parses", n))
		goto out;
	snprintf(rel, sizeof(rel), "boards/slot%d.pem", n);
	kt_path(&st, pem, sizeof(pem), rel);
	fp = fopen(pem, "w");
	if (fp == NULL || PEM_write_X509(fp, x) != 1) {
		kt_check(false, "board %d: write %s", n, pem);
		if (fp)
			fclose(fp);
		goto out;
	}
	fclose(fp);
	kt_path(&st, root, sizeof(root), "ca/root.pem");
	kt_path(&st, inter, sizeof(inter), "ca/station-ca.pem");
	rc = kt_run(out, sizeof(out), "/usr/bin/openssl", "verify", "-CAfile",
		    root, "-untrusted", inter, pem, NULL);
	if (!kt_check(rc == 0 && strstr(out, ": OK") != NULL,
		      "board %d: openssl verify: %s", n, out))
		goto out;
	if (!kt_check(cert_point(x, pt) == 0 &&
			      memcmp(pt, h.st.pubkey, 65) == 0 &&
			      memcmp(pt, b.pubkey, 65) == 0,
		      "board %d: certificate key == the board's key", n))
		goto out;
	RAND_bytes(nonce, sizeof(nonce));
	if (!kt_check(ks_agent_challenge(a, nonce, sizeof(nonce), sig,
					 &sig_len) == KS_OK &&
			      ks_verify_challenge(pt, h.uid, h.uid_len, nonce,
						  sizeof(nonce), sig,
						  sig_len) == KS_OK,
		      "board %d: challenge signed by the certified key", n))
		goto out;
	bad = 0;
out:
	X509_free(x);
	free(blob);
	ks_agent_free(&a);
	return bad;
}

/* The private scalar in key slot `slot` of a board image. */
static int image_scalar(int n, const char *img_rel, int slot, uint8_t d[32])
{
	char img[PATH_MAX];
	uint8_t buf[KA_SIM_IMAGE_SIZE];
	FILE *fp;
	size_t got;

	(void)n;
	kt_path(&st, img, sizeof(img), img_rel);
	fp = fopen(img, "rb");
	if (fp == NULL)
		return -1;
	got = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	if (got < KA_SIM_OFF_FLASH)
		return -1;
	for (int i = 0; i < 8; i++) {
		size_t w = 1u + 9u * (size_t)slot + (size_t)i;

		memcpy(d + 4 * i, buf + KA_SIM_OFF_OTP + 8 * w, 4);
	}
	return 0;
}

/* Public point of a P-256 scalar (OpenSSL derives it from SEC1 DER). */
static int scalar_point(const uint8_t d[32], uint8_t pt[65])
{
	static const uint8_t pre[] = {0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20};
	static const uint8_t post[] = {0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
				       0xce, 0x3d, 0x03, 0x01, 0x07};
	uint8_t der[sizeof(pre) + 32 + sizeof(post)];
	const uint8_t *p = der;
	EVP_PKEY *k;
	size_t len = 0;
	int rc = -1;

	memcpy(der, pre, sizeof(pre));
	memcpy(der + sizeof(pre), d, 32);
	memcpy(der + sizeof(pre) + 32, post, sizeof(post));
	k = d2i_PrivateKey(EVP_PKEY_EC, NULL, &p, (long)sizeof(der));
	if (k != NULL &&
	    EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
					    pt, 65, &len) == 1 && len == 65)
		rc = 0;
	EVP_PKEY_free(k);
	OPENSSL_cleanse(der, sizeof(der));
	return rc;
}

static long long sql_count(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -1;

	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return v;
}

/* ---- the scenarios ---- */

static void test_batch_device_origin(void)
{
	json_t *stj, *s;
	char uid[65];
	int bad = 0, rc;

	for (int i = 1; i <= NBATCH; i++)
		if (kt_board_start(&st, i, NULL, NULL, 0) != 0)
			kt_check(false, "start board %d", i);
	/* `kiln batch start --wait` follows the batch to its end */
	rc = kt_kiln(&st, out, sizeof(out), "batch", "start", "--lot",
		     "LOT-A", "--profile", "widget", "--count", "16", "--wait",
		     NULL);
	kt_check(rc == 0, "batch of 16 (device keys) completes: rc %d\n%s", rc,
		 out);
	stj = kt_wait_batch(&st, 120000);
	kt_check(stj != NULL && batch_int(stj, "done") == NBATCH &&
			 batch_int(stj, "failed") == 0,
		 "16 done, 0 failed");
	json_decref(stj);
	rc = kt_kiln(&st, out, sizeof(out), "status", NULL);
	kt_check(rc == 0 && strstr(out, "slot16") != NULL &&
			 strstr(out, "16/16") != NULL,
		 "kiln status shows the slots and 16/16:\n%s", out);

	/* the misbehaving slots, while a batch runs, next to working ones */
	stj = kt_ctl(&st, "{\"cmd\":\"batch.start\",\"lot\":\"LOT-E\","
			  "\"profile\":\"widget\"}");
	json_decref(stj);
	s = NULL;
	kt_check(kt_wait_slot(&st, SLOT_NOTTY, "error", 10000, &s) &&
			 strstr(json_string_value(json_object_get(s, "error")),
				"notatty") != NULL,
		 "slot on a non-tty path: error naming the port (%s)",
		 json_string_value(json_object_get(s, "error")));
	json_decref(s);
	s = NULL;
	kt_check(kt_wait_slot(&st, SLOT_GARBAGE, "error", 10000, &s) &&
			 strstr(json_string_value(json_object_get(s, "error")),
				"garbage") != NULL,
		 "slot with a garbage-talking board: clear error (%s)",
		 json_string_value(json_object_get(s, "error")));
	json_decref(s);
	stj = kt_ctl(&st, "{\"cmd\":\"status\"}");
	s = slot_of(stj, 3);
	kt_check(strcmp(json_string_value(json_object_get(s, "state")), "error") != 0,
		 "the other slots keep working (slot3: %s)",
		 json_string_value(json_object_get(s, "state")));
	json_decref(stj);
	stj = kt_ctl(&st, "{\"cmd\":\"batch.stop\"}");
	kt_check(json_is_true(json_object_get(stj, "ok")), "batch LOT-E stops");
	json_decref(stj);

	rc = kt_kiln(&st, out, sizeof(out), "--json", "devices", "list",
		     "--lot", "LOT-A", "--state", "ACTIVE", NULL);
	stj = json_loads(out, 0, NULL);
	kt_check(rc == 0 && json_array_size(json_object_get(stj, "devices")) == NBATCH,
		 "kiln devices list: 16 ACTIVE in LOT-A");
	json_decref(stj);

	/* inspect the boards without the daemon probing them meanwhile */
	for (int i = 1; i <= NBATCH; i++)
		bad += check_board_identity(i, uid);
	kt_check(bad == 0, "all 16 boards hold verified identities");
}

static void test_host_origin(void)
{
	char rel[64], path[PATH_MAX], uid[65];
	uint8_t d[32], pt[65], rev[32];
	json_t *stj;
	int rc, found = 0, ok_keys = 0;

	/* fresh boards on slots 1..NHOST; the others still hold ACTIVE ones */
	for (int i = 1; i <= NHOST; i++) {
		kt_board_stop(&st, i);
		snprintf(rel, sizeof(rel), "boards/host%d.img", i);
		kt_path(&st, path, sizeof(path), rel);
		if (kt_board_start(&st, i, path, NULL, 0) != 0)
			kt_check(false, "start host board %d", i);
	}
	stj = kt_ctl(&st, "{\"cmd\":\"batch.start\",\"lot\":\"LOT-H\","
			  "\"profile\":\"gadget\",\"count\":%d}", NHOST);
	kt_check(json_is_true(json_object_get(stj, "ok")), "host batch starts");
	json_decref(stj);
	stj = kt_wait_batch(&st, 120000);
	kt_check(stj != NULL && batch_int(stj, "done") == NHOST,
		 "host-origin batch: %d done", NHOST);
	json_decref(stj);

	/* Boards already ACTIVE are reported and left alone. The host batch
	 * above may reach its count before slot NHOST+1 has looked at its
	 * board, so ask in a batch of its own, which cannot end by itself:
	 * every board on the station is ACTIVE by now. */
	stj = kt_ctl(&st, "{\"cmd\":\"batch.start\",\"lot\":\"LOT-H\","
			  "\"profile\":\"gadget\",\"count\":1}");
	kt_check(json_is_true(json_object_get(stj, "ok")),
		 "a batch over ACTIVE boards starts");
	json_decref(stj);
	{
		bool skipped = kt_wait_slot(&st, NHOST + 1, "skipped", 30000,
					    NULL);

		stj = kt_ctl(&st, "{\"cmd\":\"status\"}");
		kt_check(skipped && batch_int(stj, "refused") >= 1 &&
				 batch_int(stj, "done") == 0,
			 "boards already ACTIVE are reported and left alone");
		json_decref(stj);
	}
	stj = kt_ctl(&st, "{\"cmd\":\"batch.stop\"}");
	json_decref(stj);

	for (int i = 1; i <= NHOST; i++) {
		ks_agent_t *a = NULL;
		ks_agent_hello_t h;

		if (check_board_identity(i, uid) != 0)
			continue;
		snprintf(rel, sizeof(rel), "boards/host%d.img", i);
		if (image_scalar(i, rel, 0, d) != 0 || scalar_point(d, pt) != 0)
			continue;
		if (ks_agent_open(board_spec(i), NULL, &a) == KS_OK &&
		    ks_agent_hello(a, &h) == KS_OK &&
		    memcmp(pt, h.st.pubkey, 65) == 0)
			ok_keys++;
		ks_agent_free(&a);
		for (int k = 0; k < 32; k++)
			rev[k] = d[31 - k];
		kt_path(&st, path, sizeof(path), "registry.db");
		found += kt_file_contains(path, d, 32) || kt_file_contains(path, rev, 32);
		kt_path(&st, path, sizeof(path), "registry.db-wal");
		found += kt_file_contains(path, d, 32) || kt_file_contains(path, rev, 32);
		found += kt_file_contains(st.log, d, 32);
		OPENSSL_cleanse(d, sizeof(d));
	}
	kt_check(ok_keys == NHOST,
		 "the boards' OTP scalars are the certified host-generated keys (%d/%d)",
		 ok_keys, NHOST);
	kt_check(found == 0, "no private key bytes in the registry or the log");
	(void)rc;
}

static void test_duplicate_and_reprovision(void)
{
	char uid[65], path[PATH_MAX], sql[256];
	json_t *stj, *s = NULL;
	struct passwd *pw = getpwuid(getuid());
	int rc;

	/* a second image carrying the UID of the ACTIVE board on slot 6 */
	if (check_board_identity(6, uid) != 0)
		return;
	kt_board_stop(&st, 1);
	kt_path(&st, path, sizeof(path), "boards/clone.img");
	if (kt_board_start(&st, 1, path, uid, 0) != 0) {
		kt_check(false, "start the clone board");
		return;
	}
	stj = kt_ctl(&st, "{\"cmd\":\"batch.start\",\"lot\":\"LOT-D\","
			  "\"profile\":\"widget\"}");
	kt_check(json_is_true(json_object_get(stj, "ok")), "batch LOT-D starts");
	json_decref(stj);
	kt_check(kt_wait_slot(&st, 1, "skipped", 30000, &s) &&
			 strstr(json_string_value(json_object_get(s, "uid")), uid) != NULL,
		 "duplicate UID refused: %s",
		 json_string_value(json_object_get(s, "error")));
	json_decref(s);
	rc = kt_kiln(&st, out, sizeof(out), "batch", "stop", NULL);
	kt_check(rc == 0, "kiln batch stop: rc %d %s", rc, out);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM devices WHERE hex(uid) = upper('%s') AND state = 'ACTIVE'",
		 uid);
	kt_check(sql_count(st.db, sql) == 1, "still exactly one ACTIVE device with that UID");

	rc = kt_kiln(&st, out, sizeof(out), "provision", "slot1", "--lot",
		     "LOT-D", "--profile", "widget", NULL);
	kt_check(rc == 1, "provision without --reprovision refused (rc %d): %s",
		 rc, out);
	rc = kt_kiln(&st, out, sizeof(out), "provision", "slot1", "--lot",
		     "LOT-D", "--profile", "widget", "--reprovision", NULL);
	kt_check(rc == 0 && strstr(out, "ACTIVE") != NULL,
		 "provision --reprovision gives a new identity (rc %d): %s", rc,
		 out);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM audit WHERE type = 'REPROVISION' AND actor = '%s'",
		 pw ? pw->pw_name : "root");
	kt_check(sql_count(st.db, sql) == 1,
		 "REPROVISION recorded in the audit log with the operator's name");
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM audit WHERE type = 'BATCH_STARTED' AND actor = '%s'",
		 pw ? pw->pw_name : "root");
	kt_check(sql_count(st.db, sql) >= 1, "batch starts recorded with the operator's name");
	kt_check(check_board_identity(1, uid) == 0, "re-provisioned board verifies");
}

static void test_unplug_mid_session(void)
{
	char path[PATH_MAX];
	json_t *stj, *s;
	ks_simproc_result_t res;
	bool cut = false;

	kt_board_stop(&st, 2);
	kt_path(&st, path, sizeof(path), "boards/unplug.img");
	/* dies after its 12th emulated write: the key is in, the commit not */
	if (kt_board_start(&st, 2, path, NULL, 12) != 0) {
		kt_check(false, "start the board to unplug");
		return;
	}
	stj = kt_ctl(&st, "{\"cmd\":\"batch.start\",\"lot\":\"LOT-U\","
			  "\"profile\":\"widget\",\"count\":1}");
	kt_check(json_is_true(json_object_get(stj, "ok")), "batch LOT-U starts");
	json_decref(stj);
	if (ks_simproc_wait(st.boards[2], 30000, &res) == KS_OK)
		cut = res.power_cut;
	kt_check(cut, "the board lost power mid-session");
	s = NULL;
	kt_check(kt_wait_slot(&st, 2, "failed", 30000, &s) &&
			 json_integer_value(json_object_get(s, "failed")) == 1,
		 "the interrupted session ends FAILED (%s)",
		 json_string_value(json_object_get(s, "error")));
	json_decref(s);
	kt_board_stop(&st, 2);
	if (kt_board_start(&st, 2, path, NULL, 0) != 0) {
		kt_check(false, "restart the board on the same image");
		return;
	}
	stj = kt_wait_batch(&st, 60000);
	kt_check(stj != NULL && batch_int(stj, "done") == 1 &&
			 batch_int(stj, "failed") >= 1,
		 "the board completes when it comes back (done %lld, failed %lld)",
		 stj ? (long long)batch_int(stj, "done") : -1LL,
		 stj ? (long long)batch_int(stj, "failed") : -1LL);
	json_decref(stj);
	{
		char uid[65];

		kt_check(check_board_identity(2, uid) == 0,
			 "the recovered board verifies");
	}
}

static void test_protocol_errors(void)
{
	json_t *r = kt_ctl(&st, "{not json");

	kt_check(r != NULL && !json_is_true(json_object_get(r, "ok")) &&
			 strcmp(json_string_value(json_object_get(r, "code")), "KS_ERR_ARG") == 0,
		 "bad JSON request -> KS_ERR_ARG");
	json_decref(r);
	r = kt_ctl(&st, "{\"cmd\":\"frobnicate\"}");
	kt_check(r != NULL &&
			 strcmp(json_string_value(json_object_get(r, "code")), "KS_ERR_UNSUPPORTED") == 0,
		 "unknown command -> KS_ERR_UNSUPPORTED");
	json_decref(r);
	r = kt_ctl(&st, "{\"cmd\":\"batch.start\",\"lot\":\"X\",\"profile\":\"nope\"}");
	kt_check(r != NULL && !json_is_true(json_object_get(r, "ok")),
		 "batch.start with an unknown profile refused");
	json_decref(r);
	r = kt_ctl(&st, "{\"cmd\":\"batch.stop\"}");
	kt_check(r != NULL && !json_is_true(json_object_get(r, "ok")),
		 "batch.stop without a batch refused");
	json_decref(r);
}

static void test_shutdown_and_audit(void)
{
	char tampered[PATH_MAX], cmd[2 * PATH_MAX + 64], ca[PATH_MAX], pub[PATH_MAX];
	sqlite3 *h = NULL;
	int rc;

	rc = kt_kilnd_stop(&st);
	kt_check(rc == 0, "kilnd exits 0 on SIGTERM (rc %d)", rc);
	kt_check(kt_file_contains(st.log, "stopped", 7), "kilnd logged its stop");
	kt_check(sql_count(st.db, "SELECT count(*) FROM audit WHERE type = 'STATION_STOPPED'") == 1 &&
			 sql_count(st.db, "SELECT max(seq) FROM audit WHERE type = 'CHECKPOINT'") ==
				 sql_count(st.db, "SELECT max(seq) FROM audit"),
		 "a final checkpoint closes the audit log");

	rc = kt_run(out, sizeof(out), st.kiln, "audit", "verify", "-c", st.conf, NULL);
	kt_check(rc == 0 && strstr(out, "audit OK") != NULL,
		 "kiln audit verify -c kilnd.conf passes (rc %d):\n%s", rc, out);

	kt_path(&st, tampered, sizeof(tampered), "tampered.db");
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", st.db, tampered);
	if (system(cmd) != 0 || sqlite3_open(tampered, &h) != SQLITE_OK ||
	    sqlite3_exec(h, "DROP TRIGGER audit_no_update;"
			    "UPDATE audit SET actor = 'mallory' WHERE seq = 10;",
			 NULL, NULL, NULL) != SQLITE_OK) {
		kt_check(false, "tamper with a copy: %s", h ? sqlite3_errmsg(h) : "");
		sqlite3_close(h);
		return;
	}
	sqlite3_close(h);
	kt_path(&st, ca, sizeof(ca), "ca/chain.pem");
	kt_path(&st, pub, sizeof(pub), "ca/station.pub");
	rc = kt_run(out, sizeof(out), st.kiln, "audit", "verify", "--db",
		    tampered, "--ca", ca, "--station-pub", pub, NULL);
	kt_check(rc == 1 && strstr(out, "FAILED") != NULL &&
			 strstr(out, "audit seq 10") != NULL,
		 "kiln audit verify names the edited row (rc %d):\n%s", rc, out);

	rc = kt_run(out, sizeof(out), st.kiln, "audit", "export", "--format",
		    "json", "-c", st.conf, NULL);
	kt_check(rc == 0 && strstr(out, "\"certificates\"") != NULL,
		 "kiln audit export --format json (rc %d)", rc);
	kt_path(&st, tampered, sizeof(tampered), "LOT-A.manifest.json");
	rc = kt_run(out, sizeof(out), st.kiln, "audit", "manifest", "--lot",
		    "LOT-A", "-o", tampered, "-c", st.conf, NULL);
	kt_check(rc == 0, "kiln audit manifest --lot LOT-A (rc %d): %s", rc, out);
	rc = kt_run(out, sizeof(out), st.kiln, "audit", "manifest", "--verify",
		    tampered, "--station-pub", pub, NULL);
	kt_check(rc == 0 && strstr(out, "signature OK") != NULL,
		 "the lot manifest's signature verifies (rc %d): %s", rc, out);
}

int main(int argc, char **argv)
{
	char garbage[PATH_MAX], notatty[PATH_MAX];
	const char *ports[NSLOTS] = {NULL};
	FILE *fp;

	if (kt_init(&st, argc, argv, "kilnd") != 0 || st.sim == NULL)
		return 1;
	kt_path(&st, notatty, sizeof(notatty), "boards/notatty");
	kt_path(&st, garbage, sizeof(garbage), "boards/garbage.sock");
	fp = fopen(notatty, "w");
	if (fp != NULL)
		fclose(fp);
	if (garbage_start(garbage) != 0) {
		perror("garbage board");
		return 1;
	}
	ports[SLOT_NOTTY - 1] = "boards/notatty";
	ports[SLOT_GARBAGE - 1] = "unix:boards/garbage.sock";
	if (kt_write_conf(&st, "checkpoint_interval = 16\n", profiles, NSLOTS,
			  ports) != 0 ||
	    kt_kilnd_start(&st) != 0) {
		fprintf(stderr, "kilnd did not start; log:\n");
		if (kt_run(out, sizeof(out), "/bin/cat", st.log, NULL) >= 0)
			fputs(out, stderr);
		kt_cleanup(&st);
		return 1;
	}

	test_protocol_errors();
	test_batch_device_origin();
	test_host_origin();
	test_duplicate_and_reprovision();
	test_unplug_mid_session();
	test_shutdown_and_audit();

	if (kt_failed > 0 && kt_run(out, sizeof(out), "/usr/bin/tail", "-n",
				    "40", st.log, NULL) >= 0)
		printf("--- kilnd log (tail) ---\n%s", out);
	kt_cleanup(&st);
	return kt_summary();
}
