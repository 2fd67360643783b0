/*
 * POSIX port: the emulated part (OTP, protected flash, debug lock, UID,
 * RNG, board name, tick), persisted in an image file.
 *
 * Implements the storage, identity, RNG and time functions of
 * device/hal/hal.h with the physics of real parts: OTP bits only clear,
 * each word programs once, a locked block refuses programming; flash
 * erases by sector to 0xFF, programs by clearing bits, and a
 * write-protected sector refuses erase and program. A forbidden write is
 * reported on stderr and returned as a HAL error; it changes nothing.
 *
 * Every emulated write (OTP program, OTP block lock, flash erase, flash
 * program, flash protect, debug lock) is written to the image with pwrite
 * and fdatasync before it returns, and counted. A power cut can be
 * simulated after the Nth write. Image format: docs/porting.md.
 */
#ifndef KILN_DEVICE_PORTS_POSIX_SIM_IMAGE_H
#define KILN_DEVICE_PORTS_POSIX_SIM_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KA_SIM_MAGIC "KILNSIM\0"
#define KA_SIM_VERSION 1u
#define KA_SIM_OTP_WORDS 128u
#define KA_SIM_OTP_BLOCK_WORDS 8u
#define KA_SIM_OTP_BLOCKS (KA_SIM_OTP_WORDS / KA_SIM_OTP_BLOCK_WORDS)
#define KA_SIM_SECTOR_SIZE 4096u
#define KA_SIM_SECTORS 4u
#define KA_SIM_PROG_ALIGN 4u
#define KA_SIM_UID_DEFAULT_LEN 12u

/* Image file layout (all integers little-endian). */
#define KA_SIM_OFF_MAGIC 0u      /* 8 bytes "KILNSIM\0" */
#define KA_SIM_OFF_VERSION 8u    /* u32 */
#define KA_SIM_OFF_GEOM 12u      /* u32 otp words, u32 words/block,
				    u32 sector size, u32 sectors */
#define KA_SIM_OFF_UID_LEN 28u   /* u32 */
#define KA_SIM_OFF_UID 32u       /* 32 bytes */
#define KA_SIM_OFF_OTP_LOCK 64u  /* u32: bit b = OTP block b locked */
#define KA_SIM_OFF_FLASH_WP 68u  /* u32: bit s = sector s protected */
#define KA_SIM_OFF_DEBUG 72u     /* u32: 0 open, 0x44424C4B locked */
#define KA_SIM_OFF_OTP 128u      /* per word: u32 value, u32 programmed
				    (0xFFFFFFFF never, 0 once) */
#define KA_SIM_OFF_FLASH (KA_SIM_OFF_OTP + 8u * KA_SIM_OTP_WORDS)
#define KA_SIM_IMAGE_SIZE \
	(KA_SIM_OFF_FLASH + KA_SIM_SECTOR_SIZE * KA_SIM_SECTORS)
#define KA_SIM_DEBUG_LOCKED 0x44424C4Bu

/* What to do when the power-cut write count is reached. */
typedef enum {
	KA_SIM_CUT_EXIT = 0,   /* print "POWER CUT after write N", _exit(99) */
	KA_SIM_CUT_FREEZE = 1, /* tests: every later write fails, nothing
				  more reaches the image */
} ka_sim_cut_mode_t;

typedef struct {
	const char *path;   /* image file, created blank if missing */
	const uint8_t *uid; /* override (4..32 bytes), or NULL */
	size_t uid_len;
	const char *board;  /* NULL: "posix-sim" */
	bool rng_none;      /* no TRNG */
	uint32_t cut_after; /* 0: never */
	ka_sim_cut_mode_t cut_mode;
	bool quiet;         /* no informational messages */
} ka_sim_config_t;

/** Open (or create) the image and make it the emulated part. 0 or -1
 * (message on stderr). */
int ka_sim_open(const ka_sim_config_t *cfg)
	__attribute__((warn_unused_result));

/** Close the image (a "power off"). */
void ka_sim_close(void);

/** Emulated writes completed by this process. */
uint32_t ka_sim_writes(void);

/** True once a FREEZE power cut has happened. */
bool ka_sim_cut_done(void);

#endif
