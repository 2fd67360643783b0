/*
 * The session engine end to end: a real registry (SQLite file), the real
 * signer with a development CA, and real kiln-agent-sim boards on
 * pseudo-terminals. Covers both key origins, duplicate UIDs, explicit
 * re-provisioning, boards unplugged (power cut) before and after their
 * certificate was issued, the audit verification of everything, and a scan
 * of the registry for the private keys the boards hold.
 *
 * Usage: test_engine /path/to/kiln-agent-sim
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "host/lib/agent.h"
#include "host/lib/audit.h"
#include "host/lib/ca.h"
#include "host/lib/registry.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"
#include "host/lib/simproc.h"
#include "tests/integration/station_fixture.h"

/* OTP image layout of the POSIX simulator (device/ports/posix/sim_image.h,
 * device/core/record.h): word w at 128 + 8w, value LE; key slot k holds
 * the scalar in words 1 + 9k .. 8 + 9k. */
#define SIM_OFF_OTP 128
#define SIM_KEY_WORD(k) (1 + 9 * (k))

static int passed, failed;
static char dir[64];
static const char *sim_exe;
static ks_reg_t *reg;
static ks_signer_t *signer;
static ks_engine_t *engine;
static tf_station_t fx;
static EVP_PKEY *station_key;

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
	if (cond)
		passed++;
	else
		failed++;
}

static void die(const char *what)
{
	fprintf(stderr, "test_engine: setup failed: %s\n", what);
	exit(1);
}

static void setup(void)
{
	static const tf_profile_spec_t specs[] = {
		{"dev", "device", "full", "L1", "T1"},
		{"host", "host", "identity", "L2", "T2"},
		{"open", "device", "none", "L3", "T3"},
		{"bootA", "device", "none", "L4", "T4"},
		{"bootB", "device", "none", "L5", "T5"},
	};

	tf_station_setup(&fx, "engine", "Kiln Test", "st-test", specs,
			 sizeof(specs) / sizeof(specs[0]));
	snprintf(dir, sizeof(dir), "%s", fx.dir);
	reg = fx.reg;
	signer = fx.signer;
	engine = fx.engine;
	station_key = fx.station_key;
	/* two firmware-signing keys' hashes (any 32 bytes will do here) */
	fx.profiles[3].has_boot_key = true;
	memset(fx.profiles[3].boot_key_hash, 0xA5, 32);
	fx.profiles[4].has_boot_key = true;
	memset(fx.profiles[4].boot_key_hash, 0x5A, 32);
}

static ks_simproc_t *board_rng(const char *name, const char *uid,
			       unsigned long cut, const char *rng)
{
	char image[256];
	ks_simproc_opts_t o;
	ks_simproc_t *sp = NULL;

	snprintf(image, sizeof(image), "%s/%s.img", dir, name);
	memset(&o, 0, sizeof(o));
	o.exe = sim_exe;
	o.image = image;
	o.uid_hex = uid;
	o.cut_after = cut;
	o.rng = rng;
	o.quiet = true;
	if (ks_simproc_start(&o, &sp) != KS_OK)
		die("simulator start");
	return sp;
}

static ks_simproc_t *board(const char *name, const char *uid,
			   unsigned long cut)
{
	return board_rng(name, uid, cut, NULL);
}

/* Wire targets of a full session (docs/protocol.md, "A session on the
 * wire"): at most 8 round trips and 2.5 KiB, both directions. */
#define WIRE_MAX_RT 8u
#define WIRE_MAX_BYTES 2560u

static void check_wire(const char *what, const ks_session_result_t *res)
{
	unsigned long long bytes = res->bytes_tx + res->bytes_rx;

	check(res->round_trips > 0 && res->round_trips <= WIRE_MAX_RT &&
		      bytes <= WIRE_MAX_BYTES,
	      "%s session took %u round trips, %llu+%llu = %llu bytes "
	      "(targets <= %u, <= %u)",
	      what, res->round_trips, (unsigned long long)res->bytes_tx,
	      (unsigned long long)res->bytes_rx, bytes, WIRE_MAX_RT,
	      WIRE_MAX_BYTES);
}

static ks_err_t run(ks_simproc_t *sp, const char *lot, const char *prof,
		    int reprovision, ks_session_result_t *res)
{
	ks_session_params_t p;

	memset(&p, 0, sizeof(p));
	p.port = ks_simproc_spec(sp);
	p.slot = "test";
	p.slot_index = 1;
	p.lot = lot;
	p.profile = prof;
	p.reprovision = reprovision;
	p.actor = "tester";
	p.timeout_ms = 500;
	return ks_session_run(engine, &p, res);
}

/* The certificate the registry holds for a session, and whether its key
 * is the one the board reports now. */
static int cert_matches_board(const ks_session_result_t *res,
			      ks_simproc_t *sp)
{
	uint8_t *der = NULL, pt[65];
	size_t len = 0;
	const uint8_t *p;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	X509 *x = NULL;
	char why[256];
	int ok = 0;

	if (ks_reg_session_cert(reg, res->session_id, &der, &len, NULL, 0) !=
	    KS_OK)
		goto out;
	if (ks_ca_verify_der(ks_signer_chain(signer), der, len, 0, why,
			     sizeof(why)) != KS_OK) {
		printf("     cert does not verify: %s\n", why);
		goto out;
	}
	p = der;
	x = d2i_X509(NULL, &p, (long)len);
	if (x == NULL || ks_pubkey_point(X509_get0_pubkey(x), pt) != KS_OK)
		goto out;
	if (ks_agent_open(ks_simproc_spec(sp), NULL, &a) != KS_OK ||
	    ks_agent_hello(a, &h) != KS_OK)
		goto out;
	ok = h.st.has_pubkey && memcmp(h.st.pubkey, pt, 65) == 0;
out:
	ks_agent_free(&a);
	X509_free(x);
	free(der);
	return ok;
}

static void stop(ks_simproc_t **sp)
{
	ks_simproc_result_t r;

	(void)ks_simproc_stop(sp, &r);
}

/* Wait for a power-cut board to die. */
static int wait_cut(ks_simproc_t *sp)
{
	ks_simproc_result_t r;

	if (ks_simproc_wait(sp, 5000, &r) != KS_OK)
		return 0;
	return r.power_cut;
}

static int file_contains(const char *path, const uint8_t *needle, size_t n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long size;
	int found = 0;

	if (f == NULL)
		return 0; /* e.g. no WAL file */
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 &&
	    fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)size);
		if (buf != NULL && fread(buf, 1, (size_t)size, f) == (size_t)size)
			for (long i = 0; i + (long)n <= size && !found; i++)
				found = memcmp(buf + i, needle, n) == 0;
	}
	free(buf);
	fclose(f);
	return found;
}

/* Every private scalar an image holds in its OTP key slots. */
static int image_keys(const char *image, uint8_t keys[4][32])
{
	FILE *f = fopen(image, "rb");
	int n = 0;

	if (f == NULL)
		return 0;
	for (int k = 0; k < 4; k++) {
		uint8_t d[32], ff[32];

		for (int w = 0; w < 8; w++) {
			if (fseek(f, SIM_OFF_OTP + 8L * (SIM_KEY_WORD(k) + w),
				  SEEK_SET) != 0 ||
			    fread(d + 4 * w, 1, 4, f) != 4)
				goto out;
		}
		memset(ff, 0xFF, sizeof(ff));
		if (memcmp(d, ff, 32) != 0)
			memcpy(keys[n++], d, 32);
	}
out:
	fclose(f);
	return n;
}

/* 7. the secure-boot key hash: written with COMMIT, read back, recorded;
 * a board whose slot holds another hash is scrapped */
static void test_boot_key(void)
{
	ks_session_result_t res;
	ks_simproc_t *sp;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	ks_reg_device_t dev;
	uint8_t want[32];
	ks_err_t rc;

	memset(want, 0xA5, sizeof(want));
	sp = board("b6", "5152535455565758", 0);
	rc = run(sp, "L4", "bootA", 0, &res);
	check(rc == KS_OK && res.final == KS_STEP_ACTIVE,
	      "session with a secure-boot key reaches ACTIVE (%s)",
	      res.reason);
	check_wire("device-origin with a boot key", &res);
	check(ks_agent_open(ks_simproc_spec(sp), NULL, &a) == KS_OK &&
		      ks_agent_hello(a, &h) == KS_OK && h.st.has_boot_key &&
		      memcmp(h.st.boot_key_hash, want, 32) == 0 &&
		      (h.caps & KP_CAP_SECBOOT) != 0,
	      "the board's HELLO reports the key hash in its OTP slot");
	ks_agent_free(&a);
	check(ks_reg_device_get(reg, NULL, 0, res.serial, &dev) == KS_OK &&
		      dev.has_boot_key &&
		      memcmp(dev.boot_key_hash, want, 32) == 0,
	      "the registry records the key hash written to the board");
	/* re-provisioned under a profile with another firmware key */
	rc = run(sp, "L5", "bootB", 1, &res);
	check(rc != KS_OK && res.final == KS_STEP_SCRAPPED &&
		      strstr(res.reason, "secure-boot") != NULL &&
		      strstr(res.reason, "80..88") != NULL,
	      "a board whose slot holds another key hash is scrapped: %s "
	      "(%s)",
	      ks_step_name(res.final), res.reason);
	stop(&sp);
}

int main(int argc, char **argv)
{
	ks_session_result_t res, res2;
	ks_simproc_t *sp;
	ks_audit_report_t rep;
	char path[256];
	char first_cert[65], serial1[65];
	ks_err_t rc;

	sim_exe = argc > 1 ? argv[1] : getenv("KILN_AGENT_SIM");
	if (sim_exe == NULL) {
		fprintf(stderr, "usage: test_engine KILN-AGENT-SIM\n");
		return 2;
	}
	setup();

	/* 1. device key origin, full lock */
	sp = board("b1", "0102030405060708", 0);
	rc = run(sp, "L1", "dev", 0, &res);
	check(rc == KS_OK && res.final == KS_STEP_ACTIVE,
	      "device-origin session reaches ACTIVE (%s, %s)",
	      ks_step_name(res.final), res.reason);
	check_wire("device-origin", &res);
	check(cert_matches_board(&res, sp),
	      "certificate chains to the CA and carries the board's key");
	/* a second run on the same board is refused, nothing reserved */
	rc = run(sp, "L1", "dev", 0, &res2);
	check(rc == KS_ERR_DUPLICATE && res2.final == KS_STEP_REFUSED,
	      "an ACTIVE board is refused (%s)", res2.reason);
	stop(&sp);

	/* 2. the same UID on a blank board: refused by the registry */
	sp = board("b1-clone", "0102030405060708", 0);
	rc = run(sp, "L1", "dev", 0, &res2);
	check(rc == KS_ERR_DUPLICATE && res2.session_id == 0,
	      "duplicate UID refused without reserving a serial (%s)",
	      res2.reason);
	stop(&sp);

	/* 3. host key origin */
	sp = board("b2", "1112131415161718", 0);
	rc = run(sp, "L2", "host", 0, &res);
	check(rc == KS_OK && res.final == KS_STEP_ACTIVE,
	      "host-origin session reaches ACTIVE (%s)", res.reason);
	check_wire("host-origin (sealed channel)", &res);
	check(cert_matches_board(&res, sp),
	      "host-origin certificate carries the injected key");
	stop(&sp);

	test_boot_key();

	/* 3b. device key origin on a board without TRNG and still blank (as
	 * under QEMU): the station supplies the seed; with no TRNG and no
	 * stored key there is nothing to build the sealed channel on */
	sp = board_rng("b2b", "1912131415161718", 0, "none");
	rc = run(sp, "L1", "dev", 0, &res);
	check(rc == KS_OK && res.final == KS_STEP_ACTIVE,
	      "device-origin session without TRNG reaches ACTIVE (%s)",
	      res.reason);
	check_wire("device-origin, no TRNG", &res);
	stop(&sp);

	/* 4. re-provisioning only when asked, and recorded */
	sp = board("b3", "2122232425262728", 0);
	rc = run(sp, "L3", "open", 0, &res);
	check(rc == KS_OK, "unlocked profile reaches ACTIVE (%s)", res.reason);
	snprintf(first_cert, sizeof(first_cert), "%s", res.cert_serial);
	snprintf(serial1, sizeof(serial1), "%s", res.serial);
	rc = run(sp, "L3", "open", 0, &res2);
	check(rc == KS_ERR_DUPLICATE, "re-provision without asking refused");
	rc = run(sp, "L3", "open", 1, &res2);
	check(rc == KS_OK && strcmp(res2.cert_serial, first_cert) != 0 &&
		      strcmp(res2.serial, serial1) != 0,
	      "explicit re-provision: new serial %s and certificate (%s)",
	      res2.serial, res2.reason);
	check(cert_matches_board(&res2, sp),
	      "re-provisioned board holds the new certificate's key");
	stop(&sp);

	/* 5. unplugged before a certificate exists (cut during GENKEY):
	 * FAILED, then provisioned afresh when it returns */
	sp = board("b4", "3132333435363738", 3);
	rc = run(sp, "L1", "dev", 0, &res);
	check(rc != KS_OK && res.final == KS_STEP_FAILED && wait_cut(sp),
	      "cut during key generation ends FAILED (%s)", res.reason);
	stop(&sp);
	sp = board("b4", "3132333435363738", 0);
	rc = run(sp, "L1", "dev", 0, &res2);
	check(rc == KS_OK && !res2.resumed && res2.session_id != res.session_id,
	      "board back: a new session completes (%s)", res2.reason);
	check(cert_matches_board(&res2, sp), "its certificate matches");
	stop(&sp);

	/* 6. unplugged after the certificate was issued (cut during COMMIT):
	 * parked, then completed with the same certificate */
	sp = board("b5", "4142434445464748", 12);
	rc = run(sp, "L1", "dev", 0, &res);
	check(rc != KS_OK && res.final == KS_STEP_ISSUED && wait_cut(sp) &&
		      res.cert_serial[0] != '\0',
	      "cut during COMMIT parks the session at ISSUED (%s)", res.reason);
	stop(&sp);
	sp = board("b5", "4142434445464748", 0);
	rc = run(sp, "L1", "dev", 0, &res2);
	check(rc == KS_OK && res2.resumed && res2.session_id == res.session_id &&
		      strcmp(res2.cert_serial, res.cert_serial) == 0,
	      "board back: the parked session %lld completes with the same "
	      "certificate (resumed %d, session %lld, cert %s vs %s) %s",
	      (long long)res.session_id, res2.resumed,
	      (long long)res2.session_id, res2.cert_serial, res.cert_serial,
	      res2.reason);
	check(cert_matches_board(&res2, sp), "its certificate matches");
	stop(&sp);

	/* 7. the audit log verifies over everything above */
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	{
		char chain[256];
		EVP_PKEY *pub = NULL;
		unsigned char *der = NULL;
		const unsigned char *p;
		int len = i2d_PUBKEY(station_key, &der);

		p = der;
		if (len > 0)
			pub = d2i_PUBKEY(NULL, &p, len);
		snprintf(chain, sizeof(chain), "%s/chain.pem", dir);
		rc = (ks_err_t)ks_audit_verify(path, chain, pub, &rep);
		check(rc == KS_OK && rep.ok,
		      "audit verify passes: %llu rows, %llu checkpoints",
		      (unsigned long long)rep.rows,
		      (unsigned long long)rep.checkpoints);
		if (!rep.ok)
			printf("     %s\n", rep.first_error);
		EVP_PKEY_free(pub);
		OPENSSL_free(der);
	}

	/* 8. no private key a board holds is in the registry files */
	{
		static const char *const images[] = {"b1", "b2", "b3", "b4",
						     "b5"};
		int keys = 0, leaks = 0;

		for (size_t i = 0; i < sizeof(images) / sizeof(images[0]);
		     i++) {
			uint8_t k[4][32];
			char img[256], wal[300];
			int n;

			snprintf(img, sizeof(img), "%s/%s.img", dir, images[i]);
			n = image_keys(img, k);
			snprintf(wal, sizeof(wal), "%s-wal", path);
			for (int j = 0; j < n; j++) {
				keys++;
				leaks += file_contains(path, k[j], 32) ||
					 file_contains(wal, k[j], 32);
			}
		}
		check(keys >= 5 && leaks == 0,
		      "%d private keys held by boards, %d found in the registry",
		      keys, leaks);
	}

	ks_engine_free(&engine);
	ks_reg_close(&reg);
	ks_signer_free(&signer);
	EVP_PKEY_free(station_key);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
