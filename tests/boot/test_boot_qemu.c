/*
 * The secure boot end to end on QEMU mps2-an385: kiln-boot-qemu.elf at
 * 0x0, an image made by `kiln image sign` from kiln-app-qemu.bin loaded
 * into the slot at 0x00020000, the board's OTP in its image file. The key
 * hash is provisioned and the anti-rollback counter read back with the
 * device's own code (device/core/secboot.c over the firmware's storage
 * emulation, compiled natively: tests/boot/qimage_hal.c).
 *
 * Cases: no key hash (a production image refused, a factory image runs
 * unverified); with the key hash: a correctly signed image boots (its
 * banner is seen, the OTP counter advances); a flipped byte in the body,
 * in the signature, in the magic; an image signed by another key (also a
 * factory-flagged one); an older security counter; an empty slot; a
 * corrupted identity. Each refusal must name the right reason.
 *
 *   test_boot_qemu KILN BOOT_DIR
 * BOOT_DIR holds kiln-boot-qemu.elf and kiln-app-qemu.bin ($KILN_BOOT_DIR
 * overrides it; scripts/test sets it to build-qemu/device/boot). Exit 77
 * (skip) without them or without qemu-system-arm.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "device/core/record.h"
#include "device/core/secboot.h"
#include "device/hal/hal.h"
#include "tests/boot/qimage_hal.h"

#define SLOT_ADDR "0x00020000"
#define LOAD_ADDR "0x00020200"
#define BOOT_TIMEOUT_MS 30000

static int passed, failed;
static char dir[64], kiln[4096], boot_elf[4096], app_bin[4096];
static char key_a[128], pub_a[128], key_b[128], board[128];

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (cond) {                                                \
			passed++;                                          \
		} else {                                                   \
			failed++;                                          \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);        \
			printf(__VA_ARGS__);                               \
			printf("\n");                                      \
		}                                                          \
	} while (0)

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool on_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[4096];

	while (path != NULL && *path != '\0') {
		const char *c = strchr(path, ':');
		size_t n = c != NULL ? (size_t)(c - path) : strlen(path);

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
		if (access(buf, X_OK) == 0)
			return true;
		path = c != NULL ? c + 1 : NULL;
	}
	return false;
}

/* Run argv, stdout+stderr to a file; exit status or -1. */
static int run(char *const argv[], const char *log)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static int sign(const char *key, const char *ver, const char *ctr,
		bool factory, const char *out)
{
	char log[160];
	char *argv[20];
	int n = 0;

	snprintf(log, sizeof(log), "%s/sign.log", dir);
	argv[n++] = kiln;
	argv[n++] = "image";
	argv[n++] = "sign";
	argv[n++] = "--key";
	argv[n++] = (char *)key;
	argv[n++] = "--version";
	argv[n++] = (char *)ver;
	argv[n++] = "--counter";
	argv[n++] = (char *)ctr;
	argv[n++] = "--load-addr";
	argv[n++] = LOAD_ADDR;
	argv[n++] = "--header-size";
	argv[n++] = "0x200";
	if (factory)
		argv[n++] = "--factory";
	argv[n++] = app_bin;
	argv[n++] = (char *)out;
	argv[n] = NULL;
	return run(argv, log);
}

static int write_pem(EVP_PKEY *pk, const char *path, bool priv)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (f == NULL)
		return -1;
	ok = priv ? PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL)
		  : PEM_write_PUBKEY(f, pk);
	fclose(f);
	return ok == 1 ? 0 : -1;
}

static int copy_flip(const char *from, const char *to, long off, int from_end)
{
	FILE *f = fopen(from, "rb"), *g;
	uint8_t buf[1 << 16];
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (from_end)
		off = (long)n - off;
	if (off < 0 || (size_t)off >= n)
		return -1;
	buf[off] ^= 0x01;
	g = fopen(to, "wb");
	if (g == NULL)
		return -1;
	if (fwrite(buf, 1, n, g) != n) {
		fclose(g);
		return -1;
	}
	return fclose(g);
}

/* Boot the board with `signed_img` in the slot (NULL: empty slot); wait
 * for the app's banner or a refusal; the console output in out. */
static int boot(const char *signed_img, char *out, size_t outlen)
{
	char log[160], mem[300], loader[300], serial[200];
	pid_t pid;
	double t0 = now_ms();
	int st;

	snprintf(log, sizeof(log), "%s/uart.log", dir);
	unlink(log);
	snprintf(mem, sizeof(mem),
		 "memory-backend-file,id=store,size=16M,share=on,mem-path=%s",
		 board);
	snprintf(loader, sizeof(loader),
		 "loader,file=%s,addr=" SLOT_ADDR ",force-raw=on",
		 signed_img != NULL ? signed_img : "");
	snprintf(serial, sizeof(serial), "file:%s", log);
	out[0] = '\0';
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

		if (signed_img == NULL)
			argv[18] = NULL; /* no loader: the slot stays empty */
		if (fd >= 0)
			dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	for (;;) {
		FILE *f = fopen(log, "r");
		size_t n = 0;

		if (f != NULL) {
			n = fread(out, 1, outlen - 1, f);
			fclose(f);
		}
		out[n] = '\0';
		if (strstr(out, "refused:") != NULL &&
		    strchr(strstr(out, "refused:"), '\n') != NULL)
			break;
		if (strstr(out, " booted\r\n") != NULL)
			break;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			pid = 0;
			break;
		}
		if (now_ms() - t0 > BOOT_TIMEOUT_MS)
			break;
		usleep(20000);
	}
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	return 0;
}

static void expect_boot(const char *what, const char *img,
			const char *want1, const char *want2)
{
	char out[4096];
	double t0 = now_ms();

	if (boot(img, out, sizeof(out)) != 0) {
		CHECK(0, "%s: QEMU did not start", what);
		return;
	}
	CHECK(strstr(out, want1) != NULL, "%s: expected '%s', console: '%s'",
	      what, want1, out);
	if (want2 != NULL)
		CHECK(strstr(out, want2) != NULL,
		      "%s: expected '%s', console: '%s'", what, want2, out);
	printf("%-44s %6.0f ms  %s", what, now_ms() - t0,
	       strstr(out, "kiln-") != NULL ? strstr(out, "kiln-") : out);
	if (out[0] == '\0' || out[strlen(out) - 1] != '\n')
		printf("\n");
}

static uint32_t otp_counter(void)
{
	uint32_t v = 0xFFFFFFFFu;

	if (kt_qimage_open(board) != 0)
		return v;
	if (ka_sb_counter_read(&v) != KP_ST_OK)
		v = 0xFFFFFFFFu;
	kt_qimage_close();
	return v;
}

static int setup_keys(uint8_t hash_a[32])
{
	EVP_PKEY *a = EVP_EC_gen("P-256"), *b = EVP_EC_gen("P-256");
	uint8_t pt[65];
	size_t n = 0;
	unsigned int hn = 32;
	int r = -1;

	snprintf(key_a, sizeof(key_a), "%s/fw-a.key", dir);
	snprintf(pub_a, sizeof(pub_a), "%s/fw-a.pub", dir);
	snprintf(key_b, sizeof(key_b), "%s/fw-b.key", dir);
	if (a == NULL || b == NULL || write_pem(a, key_a, true) != 0 ||
	    write_pem(a, pub_a, false) != 0 || write_pem(b, key_b, true) != 0)
		goto out;
	/* the key hash, as the station computes it: SHA-256 of the point */
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

int main(int argc, char **argv)
{
	const char *bdir = getenv("KILN_BOOT_DIR");
	char good[160], factory_a[160], factory_b[160], by_b[160], old[160];
	char newer[160], flip_body[160], flip_sig[160], flip_magic[160];
	char cmd_log[160], khex[65];
	uint8_t hash_a[32], uid[12] = {0x6b, 0x62, 0x6f, 0x6f, 0x74, 1, 2, 3,
				       4, 5, 6, 7};
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: test_boot_qemu KILN BOOT_DIR\n");
		return 2;
	}
	if (bdir == NULL || bdir[0] == '\0')
		bdir = argv[2];
	snprintf(kiln, sizeof(kiln), "%s", argv[1]);
	snprintf(boot_elf, sizeof(boot_elf), "%s/kiln-boot-qemu.elf", bdir);
	snprintf(app_bin, sizeof(app_bin), "%s/kiln-app-qemu.bin", bdir);
	if (access(boot_elf, R_OK) != 0 || access(app_bin, R_OK) != 0) {
		printf("SKIP: no %s or %s (build-qemu not built?)\n", boot_elf,
		       app_bin);
		return 77;
	}
	if (!on_path("qemu-system-arm")) {
		printf("SKIP: qemu-system-arm not installed\n");
		return 77;
	}
	snprintf(dir, sizeof(dir), "/tmp/kiln-test-boot-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(board, sizeof(board), "%s/board.img", dir);
	snprintf(cmd_log, sizeof(cmd_log), "%s/cmd.log", dir);
#define P(v, name) snprintf(v, sizeof(v), "%s/" name, dir)
	P(good, "good.img");
	P(factory_a, "factory-a.img");
	P(factory_b, "factory-b.img");
	P(by_b, "by-b.img");
	P(old, "old.img");
	P(newer, "newer.img");
	P(flip_body, "flip-body.img");
	P(flip_sig, "flip-sig.img");
	P(flip_magic, "flip-magic.img");
#undef P
	if (setup_keys(hash_a) != 0) {
		printf("FAIL: key generation\n");
		return 1;
	}
	for (int i = 0; i < 32; i++)
		sprintf(khex + 2 * i, "%02x", hash_a[i]);

	/* the images, made and checked by the CLI */
	CHECK(sign(key_a, "1.2.0", "2", false, good) == 0, "sign good");
	CHECK(sign(key_a, "0.9.0", "0", true, factory_a) == 0, "sign factory");
	CHECK(sign(key_b, "0.9.1", "0", true, factory_b) == 0,
	      "sign factory b");
	CHECK(sign(key_b, "1.2.0", "2", false, by_b) == 0, "sign by b");
	CHECK(sign(key_a, "1.1.0", "1", false, old) == 0, "sign old");
	CHECK(sign(key_a, "1.3.0", "5", false, newer) == 0, "sign newer");
	CHECK(copy_flip(good, flip_body, 0x200 + 300, 0) == 0, "flip body");
	CHECK(copy_flip(good, flip_sig, 1, 1) == 0, "flip sig");
	CHECK(copy_flip(good, flip_magic, 0, 0) == 0, "flip magic");
	{
		char *v1[] = {kiln, "image", "verify", "--pubkey", pub_a, good,
			      NULL};
		char *v2[] = {kiln, "image", "verify", "--key-hash", khex,
			      by_b, NULL};
		char *v3[] = {kiln, "image", "info", flip_body, NULL};
		char *v4[] = {kiln, "image", "verify", "--key-hash", khex,
			      flip_sig, NULL};

		CHECK(run(v1, cmd_log) == 0, "kiln image verify good");
		CHECK(run(v2, cmd_log) == 1, "kiln image verify by b");
		CHECK(run(v3, cmd_log) == 1, "kiln image info flipped body");
		CHECK(run(v4, cmd_log) == 1, "kiln image verify flipped sig");
	}

	/* a board without a key hash */
	CHECK(kt_qimage_create(board, uid, sizeof(uid)) == 0, "board image");
	expect_boot("no key hash, production image", good,
		    "kiln-boot: refused: no key hash", NULL);
	expect_boot("no key hash, factory image", factory_a,
		    "factory image 0.9.0 runs unverified",
		    "kiln-app 0.9.0 booted");
	expect_boot("empty slot", NULL, "kiln-boot: refused: no image", NULL);

	/* the station provisions the key hash (device code, natively) */
	CHECK(kt_qimage_open(board) == 0, "open board image");
	CHECK(ka_sb_keyhash_write(hash_a) == KP_ST_OK, "key hash written");
	kt_qimage_close();
	CHECK(otp_counter() == 0, "counter 0 before the first boot");

	expect_boot("flipped byte in the body", flip_body,
		    "kiln-boot: refused: hash mismatch", NULL);
	expect_boot("flipped byte in the signature", flip_sig,
		    "kiln-boot: refused: bad signature", NULL);
	expect_boot("wrong magic", flip_magic, "kiln-boot: refused: bad header",
		    NULL);
	expect_boot("signed by another key", by_b,
		    "kiln-boot: refused: wrong key", NULL);
	expect_boot("factory image, another key, key hash set", factory_b,
		    "kiln-boot: refused: wrong key", NULL);
	CHECK(otp_counter() == 0, "no refusal moves the counter");
	expect_boot("signed, counter 2", good,
		    "kiln-boot: image 1.2.0 counter 2 verified, booting",
		    "kiln-app 1.2.0 booted");
	CHECK(otp_counter() == 2, "counter advanced to 2 (%u)", otp_counter());
	expect_boot("older counter 1", old, "kiln-boot: refused: rollback",
		    NULL);
	expect_boot("signed, counter 5", newer,
		    "kiln-boot: image 1.3.0 counter 5 verified, booting",
		    "kiln-app 1.3.0 booted");
	CHECK(otp_counter() == 5, "counter advanced to 5 (%u)", otp_counter());
	expect_boot("counter 2 after 5", good, "kiln-boot: refused: rollback",
		    NULL);
	expect_boot("counter 5 again", newer, "kiln-app 1.3.0 booted", NULL);

	/* a tampered identity record: the OTP header word programmed with a
	 * foreign value */
	CHECK(kt_qimage_open(board) == 0, "open board image");
	CHECK(ka_hal_otp_program(KA_REC_HEADER_WORD, 0x12345678u) ==
		      KA_HAL_OK,
	      "tamper header word");
	kt_qimage_close();
	expect_boot("identity corrupt", newer,
		    "kiln-boot: refused: identity corrupt", NULL);

	printf("%d passed, %d failed\n", passed, failed);
	rc = failed == 0 ? 0 : 1;
	{
		char rm[128];

		snprintf(rm, sizeof(rm), "rm -rf '%s'", dir);
		if (system(rm) != 0)
			rc = 1;
	}
	return rc;
}
