/*
 * The runtime identity API (device/identity) end to end.
 *
 * 1. Provisions kiln-agent-sim boards with the real session engine
 *    (development CA, signer, SQLite registry): device-generated key with
 *    full lock, station-generated key with identity lock, and an unlocked
 *    board. The simulators are then stopped; their image files are the
 *    parts' OTP and flash.
 * 2. Opens each image in this process through the POSIX port's HAL and
 *    checks the API: serial, UID, lock state, the certificate is the one
 *    the registry issued, kid_sign and the kid pk context sign so that
 *    OpenSSL verifies with the certificate's key.
 * 3. Tampering: a flipped bit in the flash blob, in the OTP digest (with
 *    and without a recomputed check word), a blob moved to another part,
 *    a blank part, an unlocked part with KID_OPEN_REQUIRE_LOCKED: each
 *    refused with its own error.
 * 4. kiln-mtls-client against `openssl s_server -Verify` on 127.0.0.1 (a
 *    free port, a server certificate issued by the same dev CA): the
 *    handshake completes for both key origins, the server saw the
 *    device's certificate with its serial in the CN and verified it; the
 *    client refuses tampered images before any network traffic.
 *
 * Usage: test_identity KILN-AGENT-SIM KILN-MTLS-CLIENT OPENSSL
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/pk.h"

#include "device/core/record.h"
#include "device/identity/identity.h"
#include "device/ports/posix/sim_image.h"
#include "host/lib/ca.h"
#include "host/lib/registry.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"
#include "host/lib/simproc.h"
#include "tests/integration/proc_util.h"
#include "tests/integration/station_fixture.h"

static int passed, failed;
static char dir[64];
static const char *sim_exe, *client_exe, *openssl_exe;
static ks_reg_t *reg;
static ks_signer_t *signer;
static ks_engine_t *engine;
static tf_station_t fx;

typedef struct {
	const char *name, *uid, *lot, *profile;
	uint8_t lock; /* expected lock bits */
	char image[256];
	ks_session_result_t res;
	int ok;
} board_t;

static void check(int cond, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void check(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s ", cond ? "ok  " : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	if (cond)
		passed++;
	else
		failed++;
}

static void die(const char *what)
{
	fprintf(stderr, "test_identity: setup failed: %s\n", what);
	exit(1);
}

static void setup(void)
{
	static const tf_profile_spec_t specs[] = {
		{"dev", "device", "full", "L1", "T1"},
		{"host", "host", "identity", "L2", "T2"},
		{"open", "device", "none", "L3", "T3"},
	};

	tf_station_setup(&fx, "identity", "Kiln Test", "st-identity", specs,
			 sizeof(specs) / sizeof(specs[0]));
	snprintf(dir, sizeof(dir), "%s", fx.dir);
	reg = fx.reg;
	signer = fx.signer;
	engine = fx.engine;
}

/* Provision a simulated board, then power it off. */
static void provision(board_t *b)
{
	ks_simproc_opts_t o;
	ks_session_params_t p;
	ks_simproc_t *sp = NULL;
	ks_simproc_result_t r;

	snprintf(b->image, sizeof(b->image), "%s/%s.img", dir, b->name);
	memset(&o, 0, sizeof(o));
	o.exe = sim_exe;
	o.image = b->image;
	o.uid_hex = b->uid;
	o.quiet = true;
	if (ks_simproc_start(&o, &sp) != KS_OK)
		die("simulator start");
	memset(&p, 0, sizeof(p));
	p.port = ks_simproc_spec(sp);
	p.slot = "identity";
	p.slot_index = 1;
	p.lot = b->lot;
	p.profile = b->profile;
	p.actor = "tester";
	p.timeout_ms = 500;
	b->ok = ks_session_run(engine, &p, &b->res) == KS_OK &&
		b->res.final == KS_STEP_ACTIVE;
	(void)ks_simproc_stop(&sp, &r);
	check(b->ok, "board %s provisioned (%s key, serial %s) %s", b->name,
	      b->profile, b->res.serial, b->res.reason);
}

/* ---- image file surgery (layout: device/ports/posix/sim_image.h) ---- */

static int copy_file(const char *from, const char *to)
{
	char buf[8192];
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	size_t n;
	int ok = a != NULL && b != NULL;

	while (ok && (n = fread(buf, 1, sizeof(buf), a)) > 0)
		ok = fwrite(buf, 1, n, b) == n;
	if (a != NULL)
		fclose(a);
	if (b != NULL && fclose(b) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

static int rw_at(const char *path, long off, void *buf, size_t n, int write)
{
	FILE *f = fopen(path, "r+b");
	int ok;

	if (f == NULL)
		return -1;
	ok = fseek(f, off, SEEK_SET) == 0 &&
	     (write ? fwrite(buf, 1, n, f) : fread(buf, 1, n, f)) == n;
	if (fclose(f) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

static long otp_off(uint32_t word)
{
	return (long)(KA_SIM_OFF_OTP + 8u * word);
}

static uint32_t otp_get(const char *img, uint32_t word)
{
	uint8_t b[4] = {0xFF, 0xFF, 0xFF, 0xFF};

	if (rw_at(img, otp_off(word), b, 4, 0) != 0)
		die("read image");
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static void otp_set(const char *img, uint32_t word, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			(uint8_t)(v >> 24)};

	if (rw_at(img, otp_off(word), b, 4, 1) != 0)
		die("write image");
}

/* First OTP word of the newest commit slot in use (check word set). */
static uint32_t commit_base(const char *img)
{
	uint32_t base = 0;

	for (uint32_t s = 0; s < KA_REC_COMMIT_SLOTS; s++) {
		uint32_t b = KA_REC_COMMIT_BASE + s * KA_REC_COMMIT_WORDS;

		if (otp_get(img, b + KA_REC_COMMIT_WORDS - 1) != 0xFFFFFFFFu)
			base = b;
	}
	if (base == 0)
		die("no commit slot in image");
	return base;
}

static void flip_flash(const char *img, long byte, uint8_t mask)
{
	uint32_t info = otp_get(img, commit_base(img) + 8);
	long off = (long)KA_SIM_OFF_FLASH +
		   (long)((info >> 16) & 0xFFu) * (long)KA_SIM_SECTOR_SIZE +
		   byte;
	uint8_t v;

	if (rw_at(img, off, &v, 1, 0) != 0)
		die("read flash");
	v ^= mask;
	if (rw_at(img, off, &v, 1, 1) != 0)
		die("write flash");
}

/* Flip a digest bit; optionally forge a matching check word. */
static void flip_digest(const char *img, int forge)
{
	uint32_t base = commit_base(img), w[KA_REC_COMMIT_WORDS];

	for (uint32_t i = 0; i < KA_REC_COMMIT_WORDS; i++)
		w[i] = otp_get(img, base + i);
	w[3] ^= 0x00010000u;
	otp_set(img, base + 3, w[3]);
	if (forge)
		otp_set(img, base + 9,
			ka_record_check(KA_REC_COMMIT_MAGIC, w, 9));
}

/* Open an image in this process (the POSIX port's HAL) and kid_open it. */
static kid_err_t open_image(const char *img, uint32_t flags)
{
	ka_sim_config_t cfg;
	kid_err_t e;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path = img;
	cfg.quiet = true;
	if (ka_sim_open(&cfg) != 0)
		die("ka_sim_open");
	e = kid_open(flags);
	return e;
}

static void close_image(void)
{
	kid_close();
	ka_sim_close();
}

/* ECDSA verification with OpenSSL against a DER certificate's key. */
static int ossl_verify(const uint8_t *cert, size_t cert_len,
		       const uint8_t *hash, const uint8_t *sig, size_t sig_len)
{
	const uint8_t *p = cert;
	X509 *x = d2i_X509(NULL, &p, (long)cert_len);
	EVP_PKEY_CTX *c = NULL;
	int ok = 0;

	if (x == NULL)
		return 0;
	c = EVP_PKEY_CTX_new(X509_get0_pubkey(x), NULL);
	ok = c != NULL && EVP_PKEY_verify_init(c) == 1 &&
	     EVP_PKEY_verify(c, sig, sig_len, hash, 32) == 1;
	EVP_PKEY_CTX_free(c);
	X509_free(x);
	return ok;
}

static void api_checks(board_t *b)
{
	const uint8_t *cert = NULL, *chain = NULL;
	size_t cert_len = 0, chain_len = 0, uid_len = 0, sig_len = 0;
	uint8_t uid[KID_UID_MAX], hash[32], sig[KID_SIG_MAX], lock = 0;
	uint8_t *reg_der = NULL;
	size_t reg_len = 0;
	char uid_hex[2 * KID_UID_MAX + 1];
	mbedtls_pk_context pk;
	mbedtls_entropy_context ent;
	mbedtls_ctr_drbg_context drbg;
	kid_err_t e;
	double t0;
	struct timespec ts;

	e = open_image(b->image, KID_OPEN_REQUIRE_LOCKED);
	check(e == KID_OK, "%s: kid_open(REQUIRE_LOCKED) accepts the image "
	      "(%s)", b->name, kid_strerror(e));
	if (e != KID_OK) {
		close_image();
		return;
	}
	check(strcmp(kid_serial(), b->res.serial) == 0,
	      "%s: kid_serial() = %s", b->name, kid_serial());
	e = kid_uid(uid, sizeof(uid), &uid_len);
	for (size_t i = 0; i < uid_len && e == KID_OK; i++)
		snprintf(uid_hex + 2 * i, 3, "%02x", uid[i]);
	uid_hex[2 * uid_len] = '\0';
	check(e == KID_OK && strcmp(uid_hex, b->uid) == 0, "%s: kid_uid() = %s",
	      b->name, uid_hex);
	e = kid_lock_state(&lock);
	check(e == KID_OK && lock == b->lock,
	      "%s: kid_lock_state() = 0x%x (want 0x%x)", b->name, lock,
	      b->lock);
	e = kid_cert_chain(&cert, &cert_len, &chain, &chain_len);
	check(e == KID_OK &&
		      ks_reg_session_cert(reg, b->res.session_id, &reg_der,
					  &reg_len, NULL, 0) == KS_OK &&
		      reg_len == cert_len &&
		      memcmp(reg_der, cert, cert_len) == 0 && chain_len > 0,
	      "%s: kid_cert_chain() = the registry's certificate (%zu B) + "
	      "chain (%zu B)", b->name, cert_len, chain_len);
	free(reg_der);

	memset(hash, 0x5A, sizeof(hash));
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
	e = kid_sign(hash, sig, sizeof(sig), &sig_len);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	check(e == KID_OK && ossl_verify(cert, cert_len, hash, sig, sig_len),
	      "%s: kid_sign() verifies with the certificate's key (%.2f ms)",
	      b->name, (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6 - t0);
	check(kid_sign(hash, sig, 8, &sig_len) == KID_ERR_BUFFER,
	      "%s: kid_sign() into 8 bytes: KID_ERR_BUFFER", b->name);

	mbedtls_pk_init(&pk);
	mbedtls_entropy_init(&ent);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL, 0))
		die("ctr_drbg");
	e = kid_pk_setup(&pk);
	check(e == KID_OK && mbedtls_pk_can_do(&pk, MBEDTLS_PK_ECDSA) &&
		      mbedtls_pk_get_bitlen(&pk) == 256,
	      "%s: kid_pk_setup() gives a 256-bit ECDSA-capable pk (%s)",
	      b->name, mbedtls_pk_get_name(&pk));
	memset(hash, 0xA5, sizeof(hash));
	check(mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, 32, sig,
			      sizeof(sig), &sig_len, mbedtls_ctr_drbg_random,
			      &drbg) == 0 &&
		      mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, hash, 32, sig,
					sig_len) == 0 &&
		      ossl_verify(cert, cert_len, hash, sig, sig_len),
	      "%s: mbedtls_pk_sign() through kid verifies (mbedTLS and "
	      "OpenSSL)", b->name);
	kid_close();
	check(mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, 32, sig,
			      sizeof(sig), &sig_len, mbedtls_ctr_drbg_random,
			      &drbg) != 0 &&
		      kid_sign(hash, sig, sizeof(sig), &sig_len) ==
			      KID_ERR_NOT_OPEN,
	      "%s: after kid_close() nothing signs", b->name);
	mbedtls_pk_free(&pk);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&ent);
	close_image();
}

static void tamper_check(const char *what, const char *img, uint32_t flags,
			 kid_err_t want)
{
	kid_err_t e = open_image(img, flags);

	check(e == want, "tampered: %s -> %s", what, kid_strerror(e));
	close_image();
}

/* ---- processes: openssl s_server and the example client ---- */

/* One mutual-TLS exchange of the example client with s_server. */
static void mtls(const board_t *b)
{
	char port_s[16], accept_s[32], connect_s[48], srv_out[300],
		cli_out[300], cert[256], key[256], chain[256], msg[128],
		want[160];
	char *srv, *cli, *hs;
	pid_t spid, cpid;
	int port, crc, src;

	port = tp_free_port();
	if (port <= 0)
		die("free port");
	snprintf(port_s, sizeof(port_s), "%d", port);
	snprintf(accept_s, sizeof(accept_s), "127.0.0.1:%d", port);
	snprintf(connect_s, sizeof(connect_s), "127.0.0.1:%d", port);
	snprintf(srv_out, sizeof(srv_out), "%s/s_server-%s.out", dir, b->name);
	snprintf(cli_out, sizeof(cli_out), "%s/client-%s.out", dir, b->name);
	snprintf(cert, sizeof(cert), "%s/srv.pem", dir);
	snprintf(key, sizeof(key), "%s/srv.key", dir);
	snprintf(chain, sizeof(chain), "%s/%s", dir, KS_CA_FILE_CHAIN);
	snprintf(msg, sizeof(msg), "hello from %s", b->res.serial);
	{
		char *sargv[] = {(char *)openssl_exe, "s_server", "-accept", accept_s,
				 "-Verify", "1", "-CAfile", chain, "-cert",
				 cert, "-key", key, "-naccept", "1", "-rev",
				 NULL};

		spid = tp_spawn(sargv, srv_out);
	}
	if (spid < 0 || !tp_wait_for(srv_out, "ACCEPT", 10000)) {
		check(0, "%s: openssl s_server listening on %s", b->name,
		      accept_s);
		if (spid > 0)
			(void)tp_reap(spid, 0);
		return;
	}
	{
		char *cargv[] = {(char *)client_exe, "--image", (char *)b->image,
				 "--connect", connect_s, "--ca", chain,
				 "--name", "localhost", "--message", msg,
				 "--require-locked", "--timeout", "10000",
				 NULL};

		cpid = tp_spawn(cargv, cli_out);
	}
	crc = cpid < 0 ? -1 : tp_reap(cpid, 30000);
	src = tp_reap(spid, 5000);
	srv = tp_slurp(srv_out);
	cli = tp_slurp(cli_out);
	/* s_server -rev answers each line reversed */
	{
		size_t n = strlen(msg);

		for (size_t i = 0; i < n; i++)
			want[i] = msg[n - 1 - i];
		want[n] = '\0';
	}
	hs = strstr(cli, "handshake: ");
	check(crc == 0 && hs != NULL, "%s: kiln-mtls-client completed (exit %d)",
	      b->name, crc);
	if (hs != NULL)
		printf("     %.*s\n", (int)strcspn(hs, "\n"), hs);
	{
		char cn[128];

		snprintf(cn, sizeof(cn), "depth=0 CN = %s", b->res.serial);
		check(strstr(srv, cn) != NULL &&
			      strstr(srv, "verify return:1") != NULL &&
			      strstr(srv, "verify error") == NULL,
		      "%s: s_server verified the device certificate (CN = %s) "
		      "against the kiln chain", b->name, b->res.serial);
	}
	{
		char line[200];

		snprintf(line, sizeof(line), "reply: %s\n", want);
		check(strstr(cli, line) != NULL,
		      "%s: the server's reply came back over the channel",
		      b->name);
	}
	if (crc != 0 || failed > 0) {
		printf("---- client (exit %d) ----\n%s---- s_server (exit %d) "
		       "----\n%s----\n",
		       crc, cli, src, srv);
	}
	free(srv);
	free(cli);
}

/* The client refuses a tampered image before connecting anywhere. */
static void client_refuses(const char *what, const char *img,
			   const char *needle)
{
	char out[300], chain[256], *s;
	int rc;

	snprintf(out, sizeof(out), "%s/client-refuse.out", dir);
	snprintf(chain, sizeof(chain), "%s/%s", dir, KS_CA_FILE_CHAIN);
	{
		/* port 1 on loopback: nothing may get that far */
		char *argv[] = {(char *)client_exe, "--image", (char *)img,
				"--connect", "127.0.0.1:1", "--ca", chain,
				NULL};

		rc = tp_reap(tp_spawn(argv, out), 20000);
	}
	s = tp_slurp(out);
	check(rc == 3 && strstr(s, needle) != NULL,
	      "kiln-mtls-client refuses %s (exit %d: %.*s)", what, rc,
	      (int)strcspn(s, "\n"), s);
	free(s);
}

int main(int argc, char **argv)
{
	board_t boards[] = {
		{.name = "dev", .uid = "a1a2a3a4a5a6a7a8", .lot = "L1",
		 .profile = "dev",
		 .lock = KID_LOCK_OTP | KID_LOCK_FLASH | KID_LOCK_DEBUG},
		{.name = "host", .uid = "b1b2b3b4b5b6b7b8", .lot = "L2",
		 .profile = "host", .lock = KID_LOCK_OTP | KID_LOCK_FLASH},
		{.name = "open", .uid = "c1c2c3c4c5c6c7c8", .lot = "L3",
		 .profile = "open", .lock = 0},
	};
	char t[256], blank[256];

	if (argc != 4) {
		fprintf(stderr, "usage: test_identity KILN-AGENT-SIM "
				"KILN-MTLS-CLIENT OPENSSL\n");
		return 2;
	}
	sim_exe = argv[1];
	client_exe = argv[2];
	openssl_exe = argv[3];
	signal(SIGPIPE, SIG_IGN);
	setup();

	for (size_t i = 0; i < 3; i++)
		provision(&boards[i]);
	if (!boards[0].ok || !boards[1].ok || !boards[2].ok)
		goto done;

	api_checks(&boards[0]);
	api_checks(&boards[1]);
	check(open_image(boards[2].image, KID_OPEN_REQUIRE_LOCKED) ==
		      KID_ERR_UNLOCKED,
	      "unlocked board: kid_open(REQUIRE_LOCKED) -> KID_ERR_UNLOCKED");
	close_image();
	check(open_image(boards[2].image, 0) == KID_OK,
	      "unlocked board: kid_open(0) accepts it");
	close_image();

	/* tampering, each on a fresh copy of the device-key board */
	snprintf(t, sizeof(t), "%s/tamper.img", dir);
	if (copy_file(boards[0].image, t) != 0)
		die("copy");
	flip_flash(t, 200, 0x04);
	tamper_check("a bit flipped in the flash blob", t, 0, KID_ERR_DIGEST);
	client_refuses("a flipped flash bit", t, "does not match the OTP");
	if (copy_file(boards[0].image, t) != 0)
		die("copy");
	flip_digest(t, 0);
	tamper_check("a bit flipped in the OTP digest", t, 0,
		     KID_ERR_COMMIT_DAMAGED);
	client_refuses("a flipped OTP digest bit", t, "commit record");
	if (copy_file(boards[0].image, t) != 0)
		die("copy");
	flip_digest(t, 1);
	tamper_check("OTP digest bit flipped, check word forged", t, 0,
		     KID_ERR_DIGEST);
	/* another part's blob and commit record on this part: digest and
	 * check word are consistent, but the key is not the blob's */
	if (copy_file(boards[1].image, t) != 0)
		die("copy");
	{
		uint32_t from = commit_base(boards[0].image);
		uint32_t to = commit_base(t);
		uint8_t sector[KA_SIM_SECTOR_SIZE];
		uint32_t info = otp_get(boards[0].image, from + 8);
		long off = (long)KA_SIM_OFF_FLASH +
			   (long)((info >> 16) & 0xFFu) *
				   (long)KA_SIM_SECTOR_SIZE;

		for (uint32_t i = 0; i < KA_REC_COMMIT_WORDS; i++)
			otp_set(t, to + i, otp_get(boards[0].image, from + i));
		if (rw_at(boards[0].image, off, sector, sizeof(sector), 0) !=
			    0 ||
		    rw_at(t, off, sector, sizeof(sector), 1) != 0)
			die("copy blob");
	}
	tamper_check("another part's identity blob + commit record", t, 0,
		     KID_ERR_KEY_MISMATCH);
	client_refuses("a transplanted identity", t, "public key differs");
	snprintf(blank, sizeof(blank), "%s/blank.img", dir);
	tamper_check("blank part", blank, 0, KID_ERR_NO_KEY);

	/* mutual TLS against openssl s_server */
	if (tp_server_cert(openssl_exe, dir) != 0)
		die("server certificate (openssl CLI)");
	mtls(&boards[0]);
	mtls(&boards[1]);

done:
	ks_engine_free(&engine);
	ks_reg_close(&reg);
	ks_signer_free(&signer);
	if (failed == 0) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	} else {
		printf("kept %s for inspection\n", dir);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
