/*
 * qemu-mps2 port: storage, identity, RNG and debug-lock functions of
 * device/hal/hal.h over the image in the PSRAM (store.c), and the
 * diagnostics block (diag.h).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device/hal/hal.h"
#include "device/ports/qemu-mps2/board.h"
#include "device/ports/qemu-mps2/diag.h"
#include "device/ports/qemu-mps2/store.h"

#define BOARD_NAME "qemu-mps2-an385"

static kq_store_t store;

static void dsb(void)
{
	__asm volatile("dsb" ::: "memory");
}

ka_hal_status_t kq_hal_store_init(void)
{
	return kq_store_attach(&store, (volatile uint8_t *)KQ_PSRAM_BASE, dsb);
}

uint32_t kq_hal_store_writes(void)
{
	return store.writes;
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
	return kq_store_otp_read(&store, word, out, n);
}

ka_hal_status_t ka_hal_otp_program(uint32_t word, uint32_t value)
{
	return kq_store_otp_program(&store, word, value);
}

ka_hal_status_t ka_hal_otp_lock_block(uint32_t block)
{
	return kq_store_otp_lock_block(&store, block);
}

ka_hal_status_t ka_hal_otp_block_locked(uint32_t block, bool *locked)
{
	return kq_store_otp_block_locked(&store, block, locked);
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
	return kq_store_flash_erase(&store, sector);
}

ka_hal_status_t ka_hal_flash_program(uint32_t off, const uint8_t *data,
				     size_t n)
{
	return kq_store_flash_program(&store, off, data, n);
}

ka_hal_status_t ka_hal_flash_read(uint32_t off, uint8_t *out, size_t n)
{
	return kq_store_flash_read(&store, off, out, n);
}

ka_hal_status_t ka_hal_flash_protect(uint32_t sector)
{
	return kq_store_flash_protect(&store, sector);
}

ka_hal_status_t ka_hal_flash_protected(uint32_t sector, bool *prot)
{
	return kq_store_flash_protected(&store, sector, prot);
}

/* QEMU machines have no TRNG: the station sends a seed with GENKEY. */
bool ka_hal_rng_available(void)
{
	return false;
}

ka_hal_status_t ka_hal_rng(uint8_t *buf, size_t n)
{
	(void)buf;
	(void)n;
	return KA_HAL_ERR_UNSUPPORTED;
}

ka_hal_status_t ka_hal_uid(uint8_t *buf, size_t cap, size_t *len)
{
	return kq_store_uid(&store, buf, cap, len);
}

const char *ka_hal_board_name(void)
{
	return BOARD_NAME;
}

/* The MPS2 has no debug-port lock QEMU models: the flag lives in the
 * image like the simulator's. */
ka_hal_status_t ka_hal_debug_lock(void)
{
	return kq_store_debug_lock(&store);
}

ka_hal_status_t ka_hal_debug_locked(bool *locked)
{
	return kq_store_debug_locked(&store, locked);
}
