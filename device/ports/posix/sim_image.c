#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"
#include "protocol/le.h"

#define ERASED 0xFFFFFFFFu

static struct {
	int fd;
	uint8_t img[KA_SIM_IMAGE_SIZE]; /* mirror of the file */
	uint8_t uid[32];
	size_t uid_len;
	char board[33];
	bool rng_none;
	uint32_t writes;
	uint32_t cut_after;
	ka_sim_cut_mode_t cut_mode;
	bool frozen;
	bool quiet;
} sim = {.fd = -1};

/* A refused or failed write: always reported, even with --quiet. */
static void sim_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sim_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "kiln-agent-sim: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	fflush(stderr);
	va_end(ap);
}

static int fill_random(uint8_t *buf, size_t n)
{
	while (n > 0) {
		ssize_t k = getrandom(buf, n, 0);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += k;
		n -= (size_t)k;
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n, off_t off)
{
	while (n > 0) {
		ssize_t k = pwrite(fd, p, n, off);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
		off += k;
	}
	return 0;
}

/* Before a write: refuse once the power is "cut" (freeze mode). */
static ka_hal_status_t write_allowed(void)
{
	if (sim.fd < 0 || sim.frozen)
		return KA_HAL_ERR_IO;
	return KA_HAL_OK;
}

/* Persist img[off..off+n) (already updated in memory), then count the
 * write and cut the power if this was the Nth. */
static ka_hal_status_t persist(size_t off, size_t n)
{
	if (write_all(sim.fd, sim.img + off, n, (off_t)off) != 0 ||
	    fdatasync(sim.fd) != 0) {
		sim_err("image write failed at offset %u (%u bytes)",
			(unsigned)off, (unsigned)n);
		return KA_HAL_ERR_IO;
	}
	sim.writes++;
	if (sim.cut_after != 0 && sim.writes == sim.cut_after) {
		if (sim.cut_mode == KA_SIM_CUT_EXIT) {
			fprintf(stderr, "POWER CUT after write %u\n",
				(unsigned)sim.writes);
			fflush(stderr);
			_exit(99);
		}
		sim.frozen = true;
	}
	return KA_HAL_OK;
}

static uint32_t img32(size_t off)
{
	return kp_get_le32(sim.img + off);
}

static void blank_image(uint8_t *img, const uint8_t *uid, size_t uid_len)
{
	memset(img, 0, KA_SIM_OFF_OTP);
	memcpy(img + KA_SIM_OFF_MAGIC, KA_SIM_MAGIC, 8);
	kp_put_le32(img + KA_SIM_OFF_VERSION, KA_SIM_VERSION);
	kp_put_le32(img + KA_SIM_OFF_GEOM, KA_SIM_OTP_WORDS);
	kp_put_le32(img + KA_SIM_OFF_GEOM + 4, KA_SIM_OTP_BLOCK_WORDS);
	kp_put_le32(img + KA_SIM_OFF_GEOM + 8, KA_SIM_SECTOR_SIZE);
	kp_put_le32(img + KA_SIM_OFF_GEOM + 12, KA_SIM_SECTORS);
	kp_put_le32(img + KA_SIM_OFF_UID_LEN, (uint32_t)uid_len);
	memcpy(img + KA_SIM_OFF_UID, uid, uid_len);
	/* OTP words erased and never programmed; flash erased */
	memset(img + KA_SIM_OFF_OTP, 0xFF,
	       KA_SIM_IMAGE_SIZE - KA_SIM_OFF_OTP);
}

static int create_image(const char *path, const ka_sim_config_t *cfg)
{
	uint8_t uid[32];
	size_t uid_len = KA_SIM_UID_DEFAULT_LEN;
	int fd;

	if (cfg->uid != NULL) {
		memcpy(uid, cfg->uid, cfg->uid_len);
		uid_len = cfg->uid_len;
	} else if (fill_random(uid, uid_len) != 0) {
		return -1;
	}
	blank_image(sim.img, uid, uid_len);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (write_all(fd, sim.img, KA_SIM_IMAGE_SIZE, 0) != 0 ||
	    fsync(fd) != 0) {
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

static int check_image(void)
{
	if (memcmp(sim.img + KA_SIM_OFF_MAGIC, KA_SIM_MAGIC, 8) != 0 ||
	    img32(KA_SIM_OFF_VERSION) != KA_SIM_VERSION ||
	    img32(KA_SIM_OFF_GEOM) != KA_SIM_OTP_WORDS ||
	    img32(KA_SIM_OFF_GEOM + 4) != KA_SIM_OTP_BLOCK_WORDS ||
	    img32(KA_SIM_OFF_GEOM + 8) != KA_SIM_SECTOR_SIZE ||
	    img32(KA_SIM_OFF_GEOM + 12) != KA_SIM_SECTORS ||
	    img32(KA_SIM_OFF_UID_LEN) < 4 || img32(KA_SIM_OFF_UID_LEN) > 32)
		return -1;
	return 0;
}

int ka_sim_open(const ka_sim_config_t *cfg)
{
	struct stat sb;
	const char *board = cfg->board != NULL ? cfg->board : "posix-sim";
	size_t blen = strlen(board);
	int fd;

	ka_sim_close();
	if (cfg->path == NULL ||
	    (cfg->uid != NULL && (cfg->uid_len < 4 || cfg->uid_len > 32)) ||
	    blen < 1 || blen > 32) {
		fprintf(stderr, "kiln-agent-sim: bad image configuration\n");
		return -1;
	}
	for (size_t i = 0; i < blen; i++) {
		if (board[i] < 0x20 || board[i] > 0x7E) {
			fprintf(stderr, "kiln-agent-sim: board name must be "
					"printable ASCII\n");
			return -1;
		}
	}
	fd = open(cfg->path, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		fd = create_image(cfg->path, cfg);
		if (fd < 0) {
			fprintf(stderr, "kiln-agent-sim: cannot create %s: %s\n",
				cfg->path, strerror(errno));
			return -1;
		}
	} else if (fd < 0) {
		fprintf(stderr, "kiln-agent-sim: cannot open %s: %s\n",
			cfg->path, strerror(errno));
		return -1;
	} else {
		if (fstat(fd, &sb) != 0 || sb.st_size != KA_SIM_IMAGE_SIZE ||
		    pread(fd, sim.img, KA_SIM_IMAGE_SIZE, 0) !=
			    (ssize_t)KA_SIM_IMAGE_SIZE ||
		    check_image() != 0) {
			fprintf(stderr,
				"kiln-agent-sim: %s is not a kiln image "
				"(version %u, %u bytes expected)\n",
				cfg->path, KA_SIM_VERSION,
				(unsigned)KA_SIM_IMAGE_SIZE);
			close(fd);
			return -1;
		}
	}
	sim.fd = fd;
	if (cfg->uid != NULL) {
		memcpy(sim.uid, cfg->uid, cfg->uid_len);
		sim.uid_len = cfg->uid_len;
	} else {
		sim.uid_len = img32(KA_SIM_OFF_UID_LEN);
		memcpy(sim.uid, sim.img + KA_SIM_OFF_UID, sim.uid_len);
	}
	memcpy(sim.board, board, blen);
	sim.board[blen] = '\0';
	sim.rng_none = cfg->rng_none;
	sim.writes = 0;
	sim.cut_after = cfg->cut_after;
	sim.cut_mode = cfg->cut_mode;
	sim.frozen = false;
	sim.quiet = cfg->quiet;
	return 0;
}

void ka_sim_close(void)
{
	if (sim.fd >= 0)
		close(sim.fd);
	sim.fd = -1;
}

uint32_t ka_sim_writes(void)
{
	return sim.writes;
}

bool ka_sim_cut_done(void)
{
	return sim.frozen;
}

/* ---- OTP ---- */

static size_t otp_off(uint32_t word)
{
	return KA_SIM_OFF_OTP + 8u * (size_t)word;
}

static bool otp_block_locked(uint32_t block)
{
	return (img32(KA_SIM_OFF_OTP_LOCK) >> block & 1u) != 0;
}

ka_hal_status_t ka_hal_otp_geometry(ka_hal_otp_geom_t *g)
{
	if (g == NULL)
		return KA_HAL_ERR_ARG;
	g->words = KA_SIM_OTP_WORDS;
	g->words_per_block = KA_SIM_OTP_BLOCK_WORDS;
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_otp_read(uint32_t word, uint32_t *out, size_t n)
{
	if (sim.fd < 0)
		return KA_HAL_ERR_IO;
	if (out == NULL || word > KA_SIM_OTP_WORDS ||
	    n > KA_SIM_OTP_WORDS - word)
		return KA_HAL_ERR_ARG;
	for (size_t i = 0; i < n; i++)
		out[i] = img32(otp_off(word + (uint32_t)i));
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_otp_program(uint32_t word, uint32_t value)
{
	uint32_t old;
	size_t off;
	ka_hal_status_t r = write_allowed();

	if (r != KA_HAL_OK)
		return r;
	if (word >= KA_SIM_OTP_WORDS)
		return KA_HAL_ERR_ARG;
	off = otp_off(word);
	old = img32(off);
	if (otp_block_locked(word / KA_SIM_OTP_BLOCK_WORDS)) {
		sim_err("OTP: word %u is in locked block %u; refusing 0x%08x",
			word, word / KA_SIM_OTP_BLOCK_WORDS, value);
		return KA_HAL_ERR_LOCKED;
	}
	if (img32(off + 4) != ERASED) {
		sim_err("OTP: word %u already programmed (0x%08x); refusing "
			"second program 0x%08x",
			word, old, value);
		return KA_HAL_ERR_PROGRAMMED;
	}
	if ((old & value) != value) {
		sim_err("OTP: word %u: 0x%08x would set 0 bits of 0x%08x to 1",
			word, value, old);
		return KA_HAL_ERR_BITS;
	}
	kp_put_le32(sim.img + off, old & value);
	kp_put_le32(sim.img + off + 4, 0);
	return persist(off, 8);
}

ka_hal_status_t ka_hal_otp_lock_block(uint32_t block)
{
	uint32_t locks;
	ka_hal_status_t r = write_allowed();

	if (r != KA_HAL_OK)
		return r;
	if (block >= KA_SIM_OTP_BLOCKS)
		return KA_HAL_ERR_ARG;
	locks = img32(KA_SIM_OFF_OTP_LOCK) | (1u << block);
	kp_put_le32(sim.img + KA_SIM_OFF_OTP_LOCK, locks);
	return persist(KA_SIM_OFF_OTP_LOCK, 4);
}

ka_hal_status_t ka_hal_otp_block_locked(uint32_t block, bool *locked)
{
	if (sim.fd < 0)
		return KA_HAL_ERR_IO;
	if (block >= KA_SIM_OTP_BLOCKS || locked == NULL)
		return KA_HAL_ERR_ARG;
	*locked = otp_block_locked(block);
	return KA_HAL_OK;
}

/* ---- flash ---- */

static bool sector_protected(uint32_t sector)
{
	return (img32(KA_SIM_OFF_FLASH_WP) >> sector & 1u) != 0;
}

ka_hal_status_t ka_hal_flash_geometry(ka_hal_flash_geom_t *g)
{
	if (g == NULL)
		return KA_HAL_ERR_ARG;
	g->sector_size = KA_SIM_SECTOR_SIZE;
	g->sectors = KA_SIM_SECTORS;
	g->prog_align = KA_SIM_PROG_ALIGN;
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_flash_erase(uint32_t sector)
{
	size_t off;
	ka_hal_status_t r = write_allowed();

	if (r != KA_HAL_OK)
		return r;
	if (sector >= KA_SIM_SECTORS)
		return KA_HAL_ERR_ARG;
	if (sector_protected(sector)) {
		sim_err("flash: sector %u is write-protected; refusing erase",
			sector);
		return KA_HAL_ERR_LOCKED;
	}
	off = KA_SIM_OFF_FLASH + (size_t)sector * KA_SIM_SECTOR_SIZE;
	memset(sim.img + off, 0xFF, KA_SIM_SECTOR_SIZE);
	return persist(off, KA_SIM_SECTOR_SIZE);
}

ka_hal_status_t ka_hal_flash_program(uint32_t off, const uint8_t *data,
				     size_t n)
{
	const size_t size = (size_t)KA_SIM_SECTOR_SIZE * KA_SIM_SECTORS;
	uint8_t *dst;
	ka_hal_status_t r = write_allowed();

	if (r != KA_HAL_OK)
		return r;
	if (data == NULL || n == 0 || off > size || n > size - off ||
	    off % KA_SIM_PROG_ALIGN != 0 || n % KA_SIM_PROG_ALIGN != 0)
		return KA_HAL_ERR_ARG;
	for (uint32_t s = off / KA_SIM_SECTOR_SIZE;
	     s <= (off + n - 1) / KA_SIM_SECTOR_SIZE; s++) {
		if (sector_protected(s)) {
			sim_err("flash: sector %u is write-protected; refusing "
				"program at 0x%x",
				s, off);
			return KA_HAL_ERR_LOCKED;
		}
	}
	dst = sim.img + KA_SIM_OFF_FLASH + off;
	for (size_t i = 0; i < n; i++) {
		if ((dst[i] & data[i]) != data[i]) {
			sim_err("flash: byte 0x%x: 0x%02x would set 0 bits of "
				"0x%02x to 1 (not erased)",
				(unsigned)(off + i), (unsigned)data[i],
				(unsigned)dst[i]);
			return KA_HAL_ERR_BITS;
		}
	}
	for (size_t i = 0; i < n; i++)
		dst[i] &= data[i];
	return persist(KA_SIM_OFF_FLASH + off, n);
}

ka_hal_status_t ka_hal_flash_read(uint32_t off, uint8_t *out, size_t n)
{
	const size_t size = (size_t)KA_SIM_SECTOR_SIZE * KA_SIM_SECTORS;

	if (sim.fd < 0)
		return KA_HAL_ERR_IO;
	if ((out == NULL && n > 0) || off > size || n > size - off)
		return KA_HAL_ERR_ARG;
	if (n > 0)
		memcpy(out, sim.img + KA_SIM_OFF_FLASH + off, n);
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_flash_protect(uint32_t sector)
{
	uint32_t wp;
	ka_hal_status_t r = write_allowed();

	if (r != KA_HAL_OK)
		return r;
	if (sector >= KA_SIM_SECTORS)
		return KA_HAL_ERR_ARG;
	wp = img32(KA_SIM_OFF_FLASH_WP) | (1u << sector);
	kp_put_le32(sim.img + KA_SIM_OFF_FLASH_WP, wp);
	return persist(KA_SIM_OFF_FLASH_WP, 4);
}

ka_hal_status_t ka_hal_flash_protected(uint32_t sector, bool *prot)
{
	if (sim.fd < 0)
		return KA_HAL_ERR_IO;
	if (sector >= KA_SIM_SECTORS || prot == NULL)
		return KA_HAL_ERR_ARG;
	*prot = sector_protected(sector);
	return KA_HAL_OK;
}

/* ---- debug lock ---- */

ka_hal_status_t ka_hal_debug_lock(void)
{
	ka_hal_status_t r = write_allowed();

	if (r != KA_HAL_OK)
		return r;
	kp_put_le32(sim.img + KA_SIM_OFF_DEBUG, KA_SIM_DEBUG_LOCKED);
	return persist(KA_SIM_OFF_DEBUG, 4);
}

ka_hal_status_t ka_hal_debug_locked(bool *locked)
{
	if (sim.fd < 0)
		return KA_HAL_ERR_IO;
	if (locked == NULL)
		return KA_HAL_ERR_ARG;
	*locked = img32(KA_SIM_OFF_DEBUG) == KA_SIM_DEBUG_LOCKED;
	return KA_HAL_OK;
}

/* ---- RNG, identity, time ---- */

bool ka_hal_rng_available(void)
{
	return !sim.rng_none;
}

ka_hal_status_t ka_hal_rng(uint8_t *buf, size_t n)
{
	if (sim.rng_none)
		return KA_HAL_ERR_UNSUPPORTED;
	if (buf == NULL && n > 0)
		return KA_HAL_ERR_ARG;
	return fill_random(buf, n) == 0 ? KA_HAL_OK : KA_HAL_ERR_IO;
}

ka_hal_status_t ka_hal_uid(uint8_t *buf, size_t cap, size_t *len)
{
	if (sim.fd < 0)
		return KA_HAL_ERR_IO;
	if (buf == NULL || len == NULL || cap < sim.uid_len)
		return KA_HAL_ERR_ARG;
	memcpy(buf, sim.uid, sim.uid_len);
	*len = sim.uid_len;
	return KA_HAL_OK;
}

const char *ka_hal_board_name(void)
{
	return sim.board[0] != '\0' ? sim.board : "posix-sim";
}

uint32_t ka_hal_tick_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)((uint64_t)ts.tv_sec * 1000u +
			  (uint64_t)ts.tv_nsec / 1000000u);
}
