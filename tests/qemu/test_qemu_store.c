/*
 * The firmware's OTP / flash / lock emulation (device/ports/qemu-mps2/
 * store.c, compiled natively) against the simulator's
 * (device/ports/posix/sim_image.c, the reference the core's unit tests
 * and the power-cut sweep run on):
 *
 *  1. a freshly formatted firmware image is byte-identical to a new
 *     simulator image with the same UID;
 *  2. a few thousand random operations (programs that are allowed or
 *     forbidden, locks, erases, programs across sectors, misaligned and
 *     out-of-range arguments) give the same status from both, and the
 *     two images stay byte-identical after every operation;
 *  3. the one-way rules hold explicitly: a second OTP program, a 0 bit set
 *     back to 1, a locked block, a protected sector are all refused and
 *     change nothing; UID and header checks.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"
#include "device/ports/qemu-mps2/store.h"

#define NOPS 4000

static int passed, failed;
static uint8_t fw[KQ_STORE_SIZE];
static uint8_t simbuf[KQ_STORE_SIZE];
static char path[64];
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static void check(int ok, const char *what)
{
	if (ok) {
		passed++;
	} else {
		failed++;
		printf("FAIL: %s\n", what);
	}
}

static uint32_t rnd(void)
{
	/* xorshift64*: reproducible */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

static int sim_image_equal(void)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = pread(fd, simbuf, sizeof(simbuf), 0);
	close(fd);
	return n == (ssize_t)sizeof(simbuf) &&
	       memcmp(simbuf, fw, sizeof(fw)) == 0;
}

static const char *opname[] = {"otp_program", "otp_lock", "flash_erase",
			       "flash_program", "flash_protect",
			       "debug_lock", "otp_read", "flash_read"};

/* One random operation on both; 0 if they agree. */
static int one_op(kq_store_t *s, unsigned *which, bool late)
{
	uint8_t data[96], o1[96], o2[96];
	uint32_t w1[8], w2[8];
	ka_hal_status_t a = KA_HAL_OK, b = KA_HAL_OK;
	unsigned op = rnd() % 8;
	uint32_t x = rnd();

	*which = op;
	switch (op) {
	case 0: { /* OTP program: mostly valid values, some forbidden */
		uint32_t word = rnd() % (KA_SIM_OTP_WORDS + 3u), cur = 0;

		if (word < KA_SIM_OTP_WORDS &&
		    kq_store_otp_read(s, word, &cur, 1) != KA_HAL_OK)
			return -1;
		if (rnd() % 4 != 0)
			x &= cur;
		a = kq_store_otp_program(s, word, x);
		b = ka_hal_otp_program(word, x);
		break;
	}
	case 1:
		if (!late || rnd() % 8 != 0)
			break; /* locks only in the last quarter */
		a = kq_store_otp_lock_block(s, x % (KA_SIM_OTP_BLOCKS + 2u));
		b = ka_hal_otp_lock_block(x % (KA_SIM_OTP_BLOCKS + 2u));
		break;
	case 2:
		a = kq_store_flash_erase(s, x % (KA_SIM_SECTORS + 1u));
		b = ka_hal_flash_erase(x % (KA_SIM_SECTORS + 1u));
		break;
	case 3: { /* near sector boundaries, sometimes misaligned */
		uint32_t off = (x % (KA_SIM_SECTORS + 1u)) * KA_SIM_SECTOR_SIZE -
			       (rnd() % 48u);
		size_t n = 4u * (1u + rnd() % 24u);

		if (rnd() % 8 == 0)
			off += 1u + rnd() % 3u;
		if (rnd() % 8 == 0)
			n -= 1u + rnd() % 3u;
		for (size_t i = 0; i < n; i++)
			data[i] = (uint8_t)rnd();
		if (rnd() % 4 != 0 &&
		    kq_store_flash_read(s, off, o1, n) == KA_HAL_OK)
			for (size_t i = 0; i < n; i++)
				data[i] &= o1[i];
		a = kq_store_flash_program(s, off, data, n);
		b = ka_hal_flash_program(off, data, n);
		break;
	}
	case 4:
		if (!late || rnd() % 16 != 0)
			break;
		a = kq_store_flash_protect(s, x % (KA_SIM_SECTORS + 1u));
		b = ka_hal_flash_protect(x % (KA_SIM_SECTORS + 1u));
		break;
	case 5:
		if (!late || rnd() % 50 != 0)
			break;
		a = kq_store_debug_lock(s);
		b = ka_hal_debug_lock();
		break;
	case 6: {
		uint32_t word = x % (KA_SIM_OTP_WORDS + 2u);
		size_t n = rnd() % 9u;

		a = kq_store_otp_read(s, word, w1, n);
		b = ka_hal_otp_read(word, w2, n);
		if (a == KA_HAL_OK && b == KA_HAL_OK &&
		    memcmp(w1, w2, n * 4u) != 0)
			return -1;
		break;
	}
	default: {
		uint32_t off = x % (KA_SIM_SECTOR_SIZE * KA_SIM_SECTORS + 8u);
		size_t n = rnd() % 96u;

		a = kq_store_flash_read(s, off, o1, n);
		b = ka_hal_flash_read(off, o2, n);
		if (a == KA_HAL_OK && b == KA_HAL_OK && memcmp(o1, o2, n) != 0)
			return -1;
		break;
	}
	}
	return a == b ? 0 : -1;
}

static void differential(void)
{
	static const uint8_t uid[12] = {0x51, 0x45, 0x4d, 0x55, 1, 2,
					3,    4,    5,    6,    7, 8};
	ka_sim_config_t cfg;
	kq_store_t s;
	int agree = 1, same = 1, locked_seen = 0, ok_writes = 0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path = path;
	cfg.uid = uid;
	cfg.uid_len = sizeof(uid);
	cfg.quiet = true;
	check(ka_sim_open(&cfg) == 0, "simulator image created");
	check(kq_store_format(fw, uid, sizeof(uid)) == KA_HAL_OK,
	      "firmware image formatted");
	check(sim_image_equal(), "blank images are byte-identical");
	check(kq_store_attach(&s, fw, NULL) == KA_HAL_OK, "attach");

	for (int i = 0; i < NOPS && agree && same; i++) {
		unsigned op = 0;
		uint32_t before = s.writes;

		if (one_op(&s, &op, i >= NOPS * 3 / 4) != 0) {
			printf("FAIL: op %d (%s): firmware and simulator "
			       "disagree\n",
			       i, opname[op]);
			agree = 0;
		}
		ok_writes += s.writes != before;
		if (!sim_image_equal()) {
			printf("FAIL: op %d (%s): images differ\n", i,
			       opname[op]);
			same = 0;
		}
	}
	check(agree, "same status for every operation");
	check(same, "images byte-identical after every operation");
	check(s.writes == ka_sim_writes(), "same number of completed writes");
	for (uint32_t blk = 0; blk < KA_SIM_OTP_BLOCKS; blk++) {
		bool l = false;

		if (kq_store_otp_block_locked(&s, blk, &l) == KA_HAL_OK && l)
			locked_seen++;
	}
	printf("# %d operations, %d writes completed, %d OTP blocks locked\n",
	       NOPS, ok_writes, locked_seen);
	check(ok_writes > NOPS / 10 && locked_seen > 0,
	      "the random walk reached both writes and locks");
	ka_sim_close();
}

static void explicit_rules(void)
{
	static const uint8_t uid[4] = {1, 2, 3, 4};
	uint8_t img[KQ_STORE_SIZE], before[KQ_STORE_SIZE], buf[32], one[4];
	uint32_t v = 0;
	size_t n = 0;
	bool b = false;
	kq_store_t s;

	check(kq_store_format(img, uid, 3) == KA_HAL_ERR_ARG,
	      "a 3-byte UID is refused");
	memset(img, 0, sizeof(img));
	check(kq_store_attach(&s, img, NULL) == KA_HAL_ERR_IO,
	      "an all-zero (never formatted) image is refused");
	check(kq_store_otp_program(&s, 0, 0) == KA_HAL_ERR_IO,
	      "no image: writes fail with KA_HAL_ERR_IO");
	check(kq_store_format(img, uid, sizeof(uid)) == KA_HAL_OK &&
		      kq_store_attach(&s, img, NULL) == KA_HAL_OK,
	      "formatted image attaches");
	check(kq_store_uid(&s, buf, sizeof(buf), &n) == KA_HAL_OK && n == 4 &&
		      memcmp(buf, uid, 4) == 0,
	      "UID from the header");

	check(kq_store_otp_program(&s, 5, 0x12345678u) == KA_HAL_OK,
	      "program an erased word");
	memcpy(before, img, sizeof(img));
	check(kq_store_otp_program(&s, 5, 0x12345678u) ==
		      KA_HAL_ERR_PROGRAMMED,
	      "second program of a word: KA_HAL_ERR_PROGRAMMED");
	check(kq_store_otp_program(&s, 5, 0x02345678u) ==
		      KA_HAL_ERR_PROGRAMMED,
	      "even one that only clears bits");
	check(kq_store_otp_program(&s, 128, 0) == KA_HAL_ERR_ARG,
	      "word 128 is out of range");
	check(memcmp(before, img, sizeof(img)) == 0, "refusals change nothing");
	check(kq_store_otp_read(&s, 5, &v, 1) == KA_HAL_OK && v == 0x12345678u,
	      "value reads back");

	check(kq_store_otp_lock_block(&s, 1) == KA_HAL_OK &&
		      kq_store_otp_lock_block(&s, 1) == KA_HAL_OK,
	      "lock a block (idempotent)");
	memcpy(before, img, sizeof(img));
	check(kq_store_otp_program(&s, 9, 0) == KA_HAL_ERR_LOCKED,
	      "a locked block refuses programming");
	check(kq_store_otp_block_locked(&s, 1, &b) == KA_HAL_OK && b,
	      "lock bit reads back");
	check(memcmp(before, img, sizeof(img)) == 0, "and changes nothing");

	memset(one, 0x0F, sizeof(one));
	check(kq_store_flash_program(&s, 8, one, 4) == KA_HAL_OK,
	      "flash program clears bits");
	memset(one, 0xF0, sizeof(one));
	memcpy(before, img, sizeof(img));
	check(kq_store_flash_program(&s, 8, one, 4) == KA_HAL_ERR_BITS,
	      "setting a 0 bit back to 1: KA_HAL_ERR_BITS");
	check(kq_store_flash_program(&s, 2, one, 4) == KA_HAL_ERR_ARG,
	      "misaligned offset refused");
	check(memcmp(before, img, sizeof(img)) == 0, "and changes nothing");
	check(kq_store_flash_erase(&s, 0) == KA_HAL_OK &&
		      kq_store_flash_read(&s, 8, one, 4) == KA_HAL_OK &&
		      one[0] == 0xFF,
	      "erase returns the sector to 0xFF");
	check(kq_store_flash_protect(&s, 1) == KA_HAL_OK, "protect sector 1");
	memset(one, 0, sizeof(one));
	memcpy(before, img, sizeof(img));
	check(kq_store_flash_erase(&s, 1) == KA_HAL_ERR_LOCKED,
	      "a protected sector refuses erase");
	check(kq_store_flash_program(&s, KA_SIM_SECTOR_SIZE - 4u, buf, 8) ==
		      KA_HAL_ERR_LOCKED,
	      "a program touching a protected sector is refused as a whole");
	check(memcmp(before, img, sizeof(img)) == 0, "and changes nothing");
	check(kq_store_debug_locked(&s, &b) == KA_HAL_OK && !b &&
		      kq_store_debug_lock(&s) == KA_HAL_OK &&
		      kq_store_debug_locked(&s, &b) == KA_HAL_OK && b,
	      "debug lock reads back");
}

int main(void)
{
	int fd;

	/* the simulator fdatasyncs every write: keep its image in tmpfs */
	snprintf(path, sizeof(path), "/dev/shm/kq-store-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0) {
		snprintf(path, sizeof(path), "/tmp/kq-store-XXXXXX");
		fd = mkstemp(path);
	}
	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	close(fd);
	unlink(path); /* ka_sim_open creates it */
	/* the simulator reports every refused write on stderr: thousands */
	if (freopen("/dev/null", "w", stderr) == NULL)
		return 1;
	differential();
	unlink(path);
	explicit_rules();
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
