/*
 * Secure boot end to end on one QEMU mps2-an385 board, the way a line
 * does it: the board's OTP/flash image file is first run with the
 * provisioning agent (kiln-agent-qemu.elf, scripts/qemu-board) and
 * provisioned by the real station (kilnd + `kiln batch start`) with a
 * profile carrying `secure_boot_key` (a P-256 key made here), then the
 * SAME image file is run with the product firmware: kiln-boot-qemu.elf at
 * 0x0 and an application signed by `kiln image sign` in the slot at
 * 0x00020000. Nothing but the protocol puts the key hash into OTP.
 *
 *  1. before provisioning, the boot refuses a signed production image on
 *     the blank board ("no key hash");
 *  2. kilnd provisions the board (device key, lock = full) in a batch
 *     of one: the board is ACTIVE; the board's OTP key-hash slot (read
 *     with device/core/secboot.c over the image file) holds SHA-256 of
 *     the profile key's point; `kiln devices show` prints it as the boot
 *     key hash; the audit export has BOOT_KEY_WRITTEN with it; `kiln
 *     audit verify` passes;
 *  3. the boot runs the application signed with that key (its banner is
 *     seen; the anti-rollback counter in OTP advances to the image's),
 *     and refuses the same application signed by another key ("wrong
 *     key"), also when flagged factory;
 *  4. the agent, started again on the image after the boots, still says
 *     LOCKED with the identity intact and the same key hash (the boot
 *     and the application left the identity alone).
 *
 *   test_boot_e2e KILND KILN QEMU-BOARD AGENT-ELF BOOT-DIR
 * Environment as scripts/test sets it: KILN_QEMU_ELF (agent firmware),
 * KILN_BOOT_DIR (kiln-boot-qemu.elf, kiln-app-qemu.bin). Exit 77 (skip)
 * without the firmware or qemu-system-arm.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "device/core/secboot.h"
#include "host/lib/agent.h"
#include "tests/boot/qimage_hal.h"
#include "tests/integration/kt_harness.h"
#include "tests/qemu/qboard.h"

#define LOAD_ADDR "0x00020200"
#define SLOT_ADDR "0x00020000"
#define BOOT_TIMEOUT_MS 30000
#define UID_HEX "6b626f6f7465326501020304"

static kt_station_t st;
static kq_board_t qb;
static char out[1 << 18];
static char boot_elf[PATH_MAX], app_bin[PATH_MAX];
static char key_a[PATH_MAX], pub_a[PATH_MAX], key_b[PATH_MAX];
static char image[PATH_MAX], sock[PATH_MAX], qlog[PATH_MAX];

static int write_pem(EVP_PKEY *pk, const char *path, bool priv)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (f == NULL)
		return -1;
	ok = priv ? PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL)
		  : PEM_write_PUBKEY(f, pk);
	if (fclose(f) != 0)
		ok = 0;
	return ok == 1 ? 0 : -1;
}

/* Key A (the product's firmware-signing key: its public half goes into
 * the profile) and key B (someone else's); hash_a as the station
 * computes it: SHA-256 of the 65-byte uncompressed point. */
static int make_keys(uint8_t hash_a[32])
{
	EVP_PKEY *a = EVP_EC_gen("P-256"), *b = EVP_EC_gen("P-256");
	uint8_t pt[65];
	size_t n = 0;
	unsigned int hn = 32;
	int r = -1;

	kt_path(&st, key_a, sizeof(key_a), "fw-a.key");
	kt_path(&st, pub_a, sizeof(pub_a), "fw-a.pub");
	kt_path(&st, key_b, sizeof(key_b), "fw-b.key");
	if (a == NULL || b == NULL || write_pem(a, key_a, true) != 0 ||
	    write_pem(a, pub_a, false) != 0 || write_pem(b, key_b, true) != 0)
		goto out;
	if (EVP_PKEY_get_octet_string_param(a, "encoded-pub-key", pt,
					    sizeof(pt), &n) != 1 ||
	    n != 65 ||
	    EVP_Digest(pt, 65, hash_a, &hn, EVP_sha256(), NULL) != 1)
		goto out;
	r = 0;
out:
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	return r;
}

static int sign(const char *key, const char *ver, const char *ctr,
		bool factory, const char *img)
{
	if (factory)
		return kt_run(out, sizeof(out), st.kiln, "image", "sign",
			      "--key", key, "--version", ver, "--counter", ctr,
			      "--load-addr", LOAD_ADDR, "--header-size",
			      "0x200", "--factory", app_bin, img, NULL);
	return kt_run(out, sizeof(out), st.kiln, "image", "sign", "--key", key,
		      "--version", ver, "--counter", ctr, "--load-addr",
		      LOAD_ADDR, "--header-size", "0x200", app_bin, img, NULL);
}

/*
 * Power the board on with the product firmware: kiln-boot-qemu.elf and
 * the signed image in the slot, the board's image file as its OTP/flash
 * (the same QEMU machine scripts/qemu-board starts for the agent). Waits
 * for the application's banner or the boot's refusal; the UART output in
 * con. 0, or -1 if QEMU could not run.
 */
static int boot(const char *signed_img, char *con, size_t conlen)
{
	char ulog[PATH_MAX], mem[PATH_MAX + 80], loader[PATH_MAX + 64];
	char serial[PATH_MAX + 8];
	double t0 = kq_now_ms();
	pid_t pid;
	int stat;

	kt_path(&st, ulog, sizeof(ulog), "boards/boot-uart.log");
	unlink(ulog);
	snprintf(mem, sizeof(mem),
		 "memory-backend-file,id=store,size=16M,share=on,mem-path=%s",
		 image);
	snprintf(loader, sizeof(loader),
		 "loader,file=%s,addr=" SLOT_ADDR ",force-raw=on", signed_img);
	snprintf(serial, sizeof(serial), "file:%s", ulog);
	con[0] = '\0';
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char *argv[] = {"qemu-system-arm", "-M",
				"mps2-an385,memory-backend=store", "-m", "16M",
				"-object", mem, "-kernel", boot_elf,
				"-serial", serial, "-display", "none",
				"-monitor", "none", "-nodefaults", "-nic",
				"none", "-device", loader, NULL};
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	for (;;) {
		FILE *f = fopen(ulog, "r");
		size_t n = 0;
		const char *refused;

		if (f != NULL) {
			n = fread(con, 1, conlen - 1, f);
			fclose(f);
		}
		con[n] = '\0';
		refused = strstr(con, "refused:");
		if (refused != NULL && strchr(refused, '\n') != NULL)
			break;
		if (strstr(con, " booted\r\n") != NULL)
			break;
		if (waitpid(pid, &stat, WNOHANG) == pid) {
			pid = 0;
			break;
		}
		if (kq_now_ms() - t0 > BOOT_TIMEOUT_MS)
			break;
		usleep(20000);
	}
	if (pid > 0) {
		kill(pid, SIGKILL); /* power off */
		waitpid(pid, &stat, 0);
	}
	return 0;
}

static void expect_boot(const char *what, const char *img, const char *want1,
			const char *want2)
{
	char con[4096];
	double t0 = kq_now_ms();
	const char *k;

	if (!kt_check(boot(img, con, sizeof(con)) == 0, "%s: QEMU runs", what))
		return;
	kt_check(strstr(con, want1) != NULL, "%s: expected '%s', console: '%s'",
		 what, want1, con);
	if (want2 != NULL)
		kt_check(strstr(con, want2) != NULL,
			 "%s: expected '%s', console: '%s'", what, want2, con);
	k = strstr(con, "kiln-");
	printf("# %-40s %5.0f ms  %s", what, kq_now_ms() - t0,
	       k != NULL ? k : con);
	if (con[0] == '\0' || con[strlen(con) - 1] != '\n')
		printf("\n");
}

/* What the board's OTP holds, read with the device's own code. */
static int otp_read(uint8_t hash[32], bool *present, uint32_t *counter)
{
	int r = -1;

	*present = false;
	*counter = 0xFFFFFFFFu;
	if (kt_qimage_open(image) != 0)
		return -1;
	if (ka_sb_keyhash_read(hash, present) == KP_ST_OK &&
	    ka_sb_counter_read(counter) == KP_ST_OK)
		r = 0;
	kt_qimage_close();
	return r;
}

static void hex(const uint8_t *b, size_t n, char *s)
{
	for (size_t i = 0; i < n; i++)
		sprintf(s + 2 * i, "%02x", b[i]);
}

/* The registry's view: devices show, the audit export, audit verify. */
static void check_registry(const char *khex)
{
	char line[160];
	json_t *exp, *evs, *ev;
	size_t i;
	int rc, found = 0;

	rc = kt_kiln(&st, out, sizeof(out), "devices", "show", UID_HEX, NULL);
	snprintf(line, sizeof(line), "boot key hash    %s", khex);
	kt_check(rc == 0 && strstr(out, line) != NULL,
		 "kiln devices show: '%s' (rc %d): %s", line, rc, out);
	kt_check(strstr(out, "ACTIVE") != NULL, "kiln devices show: ACTIVE");

	rc = kt_run(out, sizeof(out), st.kiln, "audit", "export", "--format",
		    "json", "-c", st.conf, NULL);
	exp = rc == 0 ? json_loads(out, 0, NULL) : NULL;
	if (!kt_check(exp != NULL, "kiln audit export --format json (rc %d)",
		      rc))
		return;
	evs = json_object_get(exp, "events");
	json_array_foreach(evs, i, ev) {
		const char *type = json_string_value(json_object_get(ev, "type"));
		char *d = json_dumps(ev, JSON_COMPACT);

		if (type != NULL && strcmp(type, "BOOT_KEY_WRITTEN") == 0 &&
		    d != NULL && strstr(d, khex) != NULL &&
		    strstr(d, UID_HEX) != NULL)
			found++;
		free(d);
	}
	kt_check(found == 1,
		 "audit: one BOOT_KEY_WRITTEN event for the board with its key "
		 "hash (%d of %zu events)",
		 found, json_array_size(evs));
	json_decref(exp);

	rc = kt_run(out, sizeof(out), st.kiln, "audit", "verify", "-c",
		    st.conf, NULL);
	kt_check(rc == 0 && strstr(out, "audit OK") != NULL,
		 "kiln audit verify (rc %d): %s", rc, out);
}

/* The agent on the image again: LOCKED, identity intact, same key hash. */
static void check_agent_after(const uint8_t hash_a[32])
{
	ks_agent_opts_t ao = {.timeout_ms = 3000, .retries = 3};
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;

	if (!kt_check(kq_board_start(&qb, image, sock, UID_HEX, qlog) == 0,
		      "agent firmware starts on the image after the boots"))
		return;
	if (kt_check(ks_agent_open(qb.spec, &ao, &a) == KS_OK &&
			     ks_agent_hello(a, &h) == KS_OK,
		     "HELLO after the boots"))
		kt_check(h.st.state == KP_STATE_LOCKED && h.st.integrity == 0 &&
				 h.st.has_boot_key &&
				 memcmp(h.st.boot_key_hash, hash_a, 32) == 0,
			 "agent: LOCKED (state %u), identity intact (%u), key "
			 "hash unchanged",
			 h.st.state, h.st.integrity);
	ks_agent_free(&a);
	kq_board_kill(&qb);
}

int main(int argc, char **argv)
{
	const char *bdir = getenv("KILN_BOOT_DIR");
	const char *ports[1];
	char profiles[PATH_MAX + 256], port[PATH_MAX + 8], khex[65];
	char good[PATH_MAX], by_b[PATH_MAX], factory_b[PATH_MAX];
	uint8_t hash_a[32], otp_hash[32];
	uint32_t ctr;
	bool present;
	int rc;

	if (argc != 6) {
		fprintf(stderr, "usage: %s KILND KILN QEMU-BOARD AGENT-ELF "
				"BOOT-DIR\n", argv[0]);
		return 2;
	}
	rc = kq_setup(argv[3], argv[4]);
	if (rc != 0)
		return rc;
	if (bdir == NULL || bdir[0] == '\0')
		bdir = argv[5];
	snprintf(boot_elf, sizeof(boot_elf), "%s/kiln-boot-qemu.elf", bdir);
	snprintf(app_bin, sizeof(app_bin), "%s/kiln-app-qemu.bin", bdir);
	if (access(boot_elf, R_OK) != 0 || access(app_bin, R_OK) != 0) {
		printf("SKIP: no %s or %s (build-qemu not built?)\n", boot_elf,
		       app_bin);
		return 77;
	}
	if (kt_init(&st, 3, argv, "boot-e2e") != 0)
		return 1;
	kt_path(&st, image, sizeof(image), "boards/q1.img");
	kt_path(&st, sock, sizeof(sock), "boards/q1.sock");
	kt_path(&st, qlog, sizeof(qlog), "boards/q1.log");
	kt_path(&st, good, sizeof(good), "app-a.signed");
	kt_path(&st, by_b, sizeof(by_b), "app-b.signed");
	kt_path(&st, factory_b, sizeof(factory_b), "app-b-factory.signed");
	if (!kt_check(make_keys(hash_a) == 0, "firmware-signing keys made"))
		goto done;
	hex(hash_a, 32, khex);

	/* the firmware release, signed on the "build server" */
	kt_check(sign(key_a, "1.4.0", "3", false, good) == 0,
		 "kiln image sign with the product key: %s", out);
	kt_check(sign(key_b, "1.4.0", "3", false, by_b) == 0,
		 "kiln image sign with another key: %s", out);
	kt_check(sign(key_b, "0.9.0", "0", true, factory_b) == 0,
		 "kiln image sign --factory with another key: %s", out);

	/* the station: one QEMU slot, a profile with the firmware key */
	snprintf(profiles, sizeof(profiles),
		 "[profile widget-sb]\n"
		 "subject = CN=${serial},O=Kiln Test\n"
		 "validity_days = 365\n"
		 "key_origin = device\n"
		 "lock = full\n"
		 "secure_boot_key = %s\n\n",
		 pub_a);
	snprintf(port, sizeof(port), "unix:%s", sock);
	ports[0] = port;
	if (!kt_check(kt_write_conf(&st, NULL, profiles, 1, ports) == 0 &&
			      kt_kilnd_start(&st) == 0,
		      "kilnd starts with secure_boot_key in the profile")) {
		if (kt_run(out, sizeof(out), "/bin/cat", st.log, NULL) >= 0)
			fputs(out, stdout);
		goto done;
	}

	/* 1. the blank board: the product firmware does not run */
	if (!kt_check(kt_qimage_create(image, (const uint8_t *)"kboote2e\1\2\3\4",
				       12) == 0,
		      "board image created"))
		goto done;
	expect_boot("blank board, signed image", good,
		    "kiln-boot: refused: no key hash", NULL);

	/* 2. the programming agent, provisioned by the station */
	if (!kt_check(kq_board_start(&qb, image, sock, UID_HEX, qlog) == 0,
		      "agent firmware starts on the board image"))
		goto done;
	{
		double t0 = kq_now_ms();
		json_t *b;

		rc = kt_kiln(&st, out, sizeof(out), "batch", "start", "--lot",
			     "LOT-SB", "--profile", "widget-sb", "--count",
			     "1", "--wait", NULL);
		b = kt_wait_batch(&st, 60000);
		printf("# provisioning on the QEMU board (batch of 1): %.0f "
		       "ms\n",
		       kq_now_ms() - t0);
		rc = kt_check(rc == 0 && b != NULL &&
				      json_integer_value(json_object_get(
					      json_object_get(b, "batch"),
					      "done")) == 1,
			      "kiln batch start --count 1 --wait: the board is "
			      "ACTIVE (rc %d): %s",
			      rc, out)
			     ? 0
			     : 1;
		json_decref(b);
	}
	kq_board_kill(&qb); /* the agent's job is done: power off */
	if (rc != 0)
		goto done;
	kt_check(otp_read(otp_hash, &present, &ctr) == 0 && present &&
			 memcmp(otp_hash, hash_a, 32) == 0,
		 "OTP key-hash slot holds SHA-256 of the profile's key");
	kt_check(ctr == 0, "anti-rollback counter 0 after provisioning (%u)",
		 ctr);
	check_registry(khex);

	/* 3. the product firmware on the same image */
	expect_boot("signed by the product key", good,
		    "kiln-boot: image 1.4.0 counter 3 verified, booting",
		    "kiln-app 1.4.0 booted");
	kt_check(otp_read(otp_hash, &present, &ctr) == 0 && ctr == 3,
		 "anti-rollback counter advanced to 3 (%u)", ctr);
	expect_boot("signed by another key", by_b,
		    "kiln-boot: refused: wrong key", NULL);
	expect_boot("factory-flagged, another key", factory_b,
		    "kiln-boot: refused: wrong key", NULL);
	kt_check(otp_read(otp_hash, &present, &ctr) == 0 && ctr == 3,
		 "refusals leave the counter at 3 (%u)", ctr);

	/* 4. the identity survived the product firmware */
	check_agent_after(hash_a);
done:
	kq_board_kill(&qb);
	rc = kt_kilnd_stop(&st);
	kt_check(rc == 0, "kilnd exits 0 on SIGTERM (rc %d)", rc);
	if (kt_failed > 0) {
		if (kt_run(out, sizeof(out), "/usr/bin/tail", "-n", "30",
			   st.log, NULL) >= 0)
			printf("--- kilnd log (tail) ---\n%s", out);
		if (kt_run(out, sizeof(out), "/usr/bin/tail", "-n", "20", qlog,
			   NULL) >= 0)
			printf("--- QEMU agent log (tail) ---\n%s", out);
	}
	kt_cleanup(&st);
	return kt_summary();
}
