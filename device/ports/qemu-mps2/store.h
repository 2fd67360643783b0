/*
 * qemu-mps2 port: the emulated OTP, protected flash, debug lock and UID,
 * kept in a memory image.
 *
 * On the board the image is the first KA_SIM_IMAGE_SIZE bytes of the
 * AN385 PSRAM at 0x21000000, which scripts/qemu-board backs with a host
 * file (QEMU memory-backend-file, share=on): every store the firmware
 * makes lands in that file's page-cache pages at once, so it survives
 * QEMU being killed. The layout is the simulator's image format
 * (device/ports/posix/sim_image.h, docs/porting.md), byte for byte: a
 * host tool or test reads both the same way.
 *
 * The physics are the simulator's (OTP bits only clear, each word
 * programs once, locked blocks refuse; flash erases by sector and
 * programs by clearing bits; protected sectors refuse erase and program;
 * a forbidden write changes nothing and fails). This file is
 * freestanding C so the same code runs in the firmware and, natively,
 * in tests/qemu/test_qemu_store.c, which checks it against the
 * simulator's implementation operation by operation.
 */
#ifndef KILN_DEVICE_PORTS_QEMU_MPS2_STORE_H
#define KILN_DEVICE_PORTS_QEMU_MPS2_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device/hal/hal.h"
#include "device/ports/posix/sim_image.h"

#define KQ_STORE_SIZE KA_SIM_IMAGE_SIZE

typedef struct {
	volatile uint8_t *img; /* KQ_STORE_SIZE bytes, layout of sim_image.h */
	uint32_t writes;       /* completed emulated writes */
	void (*barrier)(void); /* after each store sequence (DSB); may be NULL */
} kq_store_t;

/** Attach to an image; KA_HAL_ERR_IO if the header (magic, version,
 * geometry, UID length) is not a kiln image. */
ka_hal_status_t kq_store_attach(kq_store_t *s, volatile uint8_t *img,
				void (*barrier)(void)) KA_HAL_WUR;

/** Write a blank image header + erased OTP/flash (for hosts creating an
 * image; uid_len 4..32). */
ka_hal_status_t kq_store_format(uint8_t *img, const uint8_t *uid,
				size_t uid_len) KA_HAL_WUR;

/** The UID stored in the header. */
ka_hal_status_t kq_store_uid(const kq_store_t *s, uint8_t *buf, size_t cap,
			     size_t *len) KA_HAL_WUR;

/* The storage functions of device/hal/hal.h, on image s. */
ka_hal_status_t kq_store_otp_read(const kq_store_t *s, uint32_t word,
				  uint32_t *out, size_t n) KA_HAL_WUR;
ka_hal_status_t kq_store_otp_program(kq_store_t *s, uint32_t word,
				     uint32_t value) KA_HAL_WUR;
ka_hal_status_t kq_store_otp_lock_block(kq_store_t *s, uint32_t block)
	KA_HAL_WUR;
ka_hal_status_t kq_store_otp_block_locked(const kq_store_t *s,
					  uint32_t block, bool *locked)
	KA_HAL_WUR;
ka_hal_status_t kq_store_flash_erase(kq_store_t *s, uint32_t sector)
	KA_HAL_WUR;
ka_hal_status_t kq_store_flash_program(kq_store_t *s, uint32_t off,
				       const uint8_t *data, size_t n)
	KA_HAL_WUR;
ka_hal_status_t kq_store_flash_read(const kq_store_t *s, uint32_t off,
				    uint8_t *out, size_t n) KA_HAL_WUR;
ka_hal_status_t kq_store_flash_protect(kq_store_t *s, uint32_t sector)
	KA_HAL_WUR;
ka_hal_status_t kq_store_flash_protected(const kq_store_t *s,
					 uint32_t sector, bool *prot)
	KA_HAL_WUR;
ka_hal_status_t kq_store_debug_lock(kq_store_t *s) KA_HAL_WUR;
ka_hal_status_t kq_store_debug_locked(const kq_store_t *s, bool *locked)
	KA_HAL_WUR;

#endif
