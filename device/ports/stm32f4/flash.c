/*
 * NUCLEO-F429ZI identity region: flash sectors 1 and 2 (16 KiB each, at
 * 0x08004000 and 0x08008000; stm32f4.ld keeps the firmware out of them).
 * HAL sector s = flash sector 1 + s. Erase by sector (SER/SNB/STRT),
 * program by 32-bit word (PSIZE x32, 2.7-3.6 V), write protection through
 * the nWRP bits of the user option bytes (RM0090 3.7.4).
 *
 * Write protection: ka_hal_flash_protect clears nWRP[1+s] in FLASH_OPTCR
 * and starts the option-byte program (OPTSTRT). FLASH_OPTCR is what the
 * controller loads from the option bytes at reset and what it programs
 * them from, so reading it back reports the programmed state. Whether a
 * freshly cleared nWRP bit blocks erase/program before the next reset is
 * not something this port relies on: the HAL refuses erase and program of
 * a sector whose nWRP bit reads 0 before it touches the controller, and
 * maps WRPERR from the hardware to KA_HAL_ERR_LOCKED.
 */
#include <string.h>

#include "device/hal/hal.h"
#include "device/ports/stm32f4/board.h"
#include "device/ports/stm32f4/stm32f4_regs.h"

#define ST32_PROG_ALIGN 4u
#define ST32_ID_SIZE (ST32_ID_SECTOR_SIZE * ST32_ID_SECTORS)

/* Read nWRP of identity sector `sector` from FLASH_OPTCR. With SPRMOD = 1
 * the nWRP bits select PCROP instead (3.7.5); the port never sets it, and
 * if something else did, it refuses to guess: KA_HAL_ERR_IO. */
static ka_hal_status_t st32_wrp(uint32_t sector, bool *prot)
{
	uint32_t optcr = ST32_FLASH_OPTCR;
	uint32_t bit = 1u << (ST32_FLASH_OPTCR_NWRP_SHIFT +
			      ST32_ID_FIRST_SECTOR + sector);

	if ((optcr & ST32_FLASH_OPTCR_SPRMOD) != 0)
		return KA_HAL_ERR_IO;
	*prot = (optcr & bit) == 0;
	return KA_HAL_OK;
}

/* KA_HAL_OK if sector may be written, else why not. */
static ka_hal_status_t st32_writable(uint32_t sector)
{
	bool prot = true;
	ka_hal_status_t r = st32_wrp(sector, &prot);

	if (r != KA_HAL_OK)
		return r;
	return prot ? KA_HAL_ERR_LOCKED : KA_HAL_OK;
}

static uint32_t st32_id_addr(uint32_t off)
{
	return ST32_ID_BASE + off;
}

ka_hal_status_t ka_hal_flash_geometry(ka_hal_flash_geom_t *g)
{
	if (g == NULL)
		return KA_HAL_ERR_ARG;
	g->sector_size = ST32_ID_SECTOR_SIZE;
	g->sectors = (uint16_t)ST32_ID_SECTORS;
	g->prog_align = (uint16_t)ST32_PROG_ALIGN;
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_flash_erase(uint32_t sector)
{
	ka_hal_status_t r;
	uint32_t base;

	if (sector >= ST32_ID_SECTORS)
		return KA_HAL_ERR_ARG;
	r = st32_writable(sector);
	if (r != KA_HAL_OK)
		return r;
	r = st32_flash_erase_sector(ST32_ID_FIRST_SECTOR + sector);
	if (r != KA_HAL_OK)
		return r;
	/* Verify: an erase cut short or refused leaves programmed words. */
	base = st32_id_addr(sector * ST32_ID_SECTOR_SIZE);
	for (uint32_t i = 0; i < ST32_ID_SECTOR_SIZE; i += 4u) {
		if (ST32_REG(base + i) != 0xFFFFFFFFu)
			return KA_HAL_ERR_IO;
	}
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_flash_program(uint32_t off, const uint8_t *data,
				     size_t n)
{
	ka_hal_status_t r = KA_HAL_OK;

	if (data == NULL || n == 0 || off > ST32_ID_SIZE ||
	    n > ST32_ID_SIZE - off || off % ST32_PROG_ALIGN != 0 ||
	    n % ST32_PROG_ALIGN != 0)
		return KA_HAL_ERR_ARG;
	/* The whole range is checked before the first word is written: a
	 * refused program changes nothing. */
	for (uint32_t s = off / ST32_ID_SECTOR_SIZE;
	     s <= (off + (uint32_t)n - 1u) / ST32_ID_SECTOR_SIZE; s++) {
		r = st32_writable(s);
		if (r != KA_HAL_OK)
			return r;
	}
	for (size_t i = 0; i < n; i += 4u) {
		uint32_t cur = ST32_REG(st32_id_addr(off + (uint32_t)i));
		uint32_t want;

		memcpy(&want, data + i, 4);
		if ((cur & want) != want)
			return KA_HAL_ERR_BITS;
	}
	for (size_t i = 0; i < n && r == KA_HAL_OK; i += 4u) {
		uint32_t addr = st32_id_addr(off + (uint32_t)i);
		uint32_t want;

		memcpy(&want, data + i, 4);
		if (ST32_REG(addr) == want)
			continue; /* nothing to clear: spare the cycle */
		r = st32_flash_program_word(addr, want);
		if (r == KA_HAL_OK && ST32_REG(addr) != want)
			r = KA_HAL_ERR_IO;
	}
	return r;
}

ka_hal_status_t ka_hal_flash_read(uint32_t off, uint8_t *out, size_t n)
{
	if ((out == NULL && n > 0) || off > ST32_ID_SIZE ||
	    n > ST32_ID_SIZE - off)
		return KA_HAL_ERR_ARG;
	for (size_t i = 0; i < n; i++)
		out[i] = ST32_REG8(st32_id_addr(off + (uint32_t)i));
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_flash_protect(uint32_t sector)
{
	ka_hal_status_t r;
	bool prot = false;

	if (sector >= ST32_ID_SECTORS)
		return KA_HAL_ERR_ARG;
	r = st32_wrp(sector, &prot);
	if (r != KA_HAL_OK || prot)
		return r; /* idempotent: no second option-byte cycle */
	r = st32_option_bytes_update(
		1u << (ST32_FLASH_OPTCR_NWRP_SHIFT + ST32_ID_FIRST_SECTOR +
		       sector),
		0);
	if (r != KA_HAL_OK)
		return r;
	r = st32_wrp(sector, &prot);
	if (r == KA_HAL_OK && !prot)
		r = KA_HAL_ERR_IO;
	return r;
}

ka_hal_status_t ka_hal_flash_protected(uint32_t sector, bool *prot)
{
	if (sector >= ST32_ID_SECTORS || prot == NULL)
		return KA_HAL_ERR_ARG;
	return st32_wrp(sector, prot);
}
