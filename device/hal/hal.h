/*
 * kiln agent: the porting contract.
 *
 * The agent core (device/core) calls nothing but these functions and the
 * shared protocol code. A port (device/ports/<name>) implements every one
 * of them; docs/porting.md states the semantics a port must honour and how
 * the core relies on them. All functions are called from one thread of
 * execution (the agent's main loop); none is called from an interrupt.
 *
 * Storage semantics in one paragraph (the details are in docs/porting.md):
 *  - OTP is an array of 32-bit words grouped in blocks. An erased word
 *    reads 0xFFFFFFFF; programming clears bits only and each word may be
 *    programmed at most once; a locked block refuses programming forever.
 *  - Protected flash is an array of sectors. Erase sets a whole sector to
 *    0xFF; programming clears bits only; a write-protected sector refuses
 *    erase and program.
 *  - A write function returns only after the write is durable: when it
 *    returns KA_HAL_OK, a power cut afterwards cannot undo it. Writes are
 *    performed in the order they are called.
 *  - A write that the medium forbids fails with an error; it never
 *    succeeds silently and never changes other bits.
 */
#ifndef KILN_DEVICE_HAL_HAL_H
#define KILN_DEVICE_HAL_HAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KA_HAL_WUR __attribute__((warn_unused_result))

typedef enum {
	KA_HAL_OK = 0,
	KA_HAL_ERR_ARG = 1,         /* index/offset/length out of range or
				       misaligned */
	KA_HAL_ERR_IO = 2,          /* the medium or peripheral failed */
	KA_HAL_ERR_PROGRAMMED = 3,  /* OTP word was already programmed */
	KA_HAL_ERR_BITS = 4,        /* the write would turn a 0 bit into 1 */
	KA_HAL_ERR_LOCKED = 5,      /* OTP block locked / sector protected */
	KA_HAL_ERR_UNSUPPORTED = 6, /* the board lacks this facility */
} ka_hal_status_t;

/* ---- transport: a byte stream to the station (UART, USB CDC...) ---- */

/**
 * Send n bytes. Returns when they are queued for transmission (not
 * necessarily on the wire). A port may drop data it cannot deliver (no
 * station connected) and report KA_HAL_ERR_IO; the core does not retry:
 * the station retransmits its request.
 */
ka_hal_status_t ka_hal_tx(const uint8_t *data, size_t n);

/** Returned by ka_hal_rx() when the link is gone for good (end of input). */
#define KA_HAL_RX_CLOSED (-1)

/**
 * Receive up to cap bytes, waiting at most timeout_ms for the first one.
 * Returns the number of bytes read (> 0), 0 on timeout, or
 * KA_HAL_RX_CLOSED when no more input will ever arrive (the caller stops).
 */
int32_t ka_hal_rx(uint8_t *buf, size_t cap, uint32_t timeout_ms);

/* ---- OTP ---- */

typedef struct {
	uint16_t words;           /* total 32-bit words */
	uint16_t words_per_block; /* lock granularity */
} ka_hal_otp_geom_t;

/** OTP geometry. The core needs >= 128 words in blocks of 8. */
ka_hal_status_t ka_hal_otp_geometry(ka_hal_otp_geom_t *g) KA_HAL_WUR;

/** Read n words starting at word index `word` into out. */
ka_hal_status_t ka_hal_otp_read(uint32_t word, uint32_t *out, size_t n)
	KA_HAL_WUR;

/**
 * Program one word. Fails with KA_HAL_ERR_PROGRAMMED if the word was
 * programmed before (where the hardware can tell), KA_HAL_ERR_BITS if
 * value has a 1 where the word holds a 0, KA_HAL_ERR_LOCKED if its block
 * is locked. Durable on return.
 */
ka_hal_status_t ka_hal_otp_program(uint32_t word, uint32_t value) KA_HAL_WUR;

/** Lock a block against programming, irreversibly. Idempotent. */
ka_hal_status_t ka_hal_otp_lock_block(uint32_t block) KA_HAL_WUR;

/** Read back a block's lock bit from the hardware. */
ka_hal_status_t ka_hal_otp_block_locked(uint32_t block, bool *locked)
	KA_HAL_WUR;

/* ---- protected flash: the identity region ---- */

typedef struct {
	uint32_t sector_size; /* bytes */
	uint16_t sectors;     /* sectors reserved for the identity (>= 1) */
	uint16_t prog_align;  /* program offset/length granularity, bytes */
} ka_hal_flash_geom_t;

/** Geometry of the identity flash region. Offsets below are relative to
 * its start. */
ka_hal_status_t ka_hal_flash_geometry(ka_hal_flash_geom_t *g) KA_HAL_WUR;

/** Erase one sector to 0xFF. KA_HAL_ERR_LOCKED if write-protected. */
ka_hal_status_t ka_hal_flash_erase(uint32_t sector) KA_HAL_WUR;

/**
 * Program n bytes at off (both multiples of prog_align). Clears bits only:
 * KA_HAL_ERR_BITS if a byte would need a 0 bit set to 1, KA_HAL_ERR_LOCKED
 * if the range touches a write-protected sector. Durable on return.
 */
ka_hal_status_t ka_hal_flash_program(uint32_t off, const uint8_t *data,
				     size_t n) KA_HAL_WUR;

/** Read n bytes at off. */
ka_hal_status_t ka_hal_flash_read(uint32_t off, uint8_t *out, size_t n)
	KA_HAL_WUR;

/** Write-protect a sector until the part is wiped (if ever). Idempotent. */
ka_hal_status_t ka_hal_flash_protect(uint32_t sector) KA_HAL_WUR;

/** Read back a sector's write protection from the hardware. */
ka_hal_status_t ka_hal_flash_protected(uint32_t sector, bool *prot)
	KA_HAL_WUR;

/* ---- random numbers ---- */

/** True if the board has a true random number generator. */
bool ka_hal_rng_available(void);

/** Fill buf with n bytes from the TRNG; KA_HAL_ERR_UNSUPPORTED if none. */
ka_hal_status_t ka_hal_rng(uint8_t *buf, size_t n) KA_HAL_WUR;

/* ---- identity of the part ---- */

/** Hardware unique ID, 4..32 bytes, into buf[0..cap); *len = its length. */
ka_hal_status_t ka_hal_uid(uint8_t *buf, size_t cap, size_t *len) KA_HAL_WUR;

/** Board name: printable ASCII, 1..32 characters, NUL-terminated. */
const char *ka_hal_board_name(void);

/* ---- debug lock ---- */

/** Disable the debug port / set readout protection, irreversibly. */
ka_hal_status_t ka_hal_debug_lock(void) KA_HAL_WUR;

/** Read back whether debug access is disabled. */
ka_hal_status_t ka_hal_debug_locked(bool *locked) KA_HAL_WUR;

/* ---- time ---- */

/** Milliseconds since an arbitrary start; wraps at 2^32. */
uint32_t ka_hal_tick_ms(void);

#endif
