/*
 * nRF52840-DK identity region: two 4 KiB flash pages at 0x000FC000 and
 * 0x000FD000 (HAL sectors 0 and 1), erased by page and programmed by
 * 32-bit word through the NVMC.
 *
 * Write protection has two halves, both read back from the hardware:
 *  - persistent: UICR CUSTOMER[16 + s] = 0x00000000 (erased only with the
 *    whole UICR);
 *  - enforced: ACL region s with PERM.WRITE = 1 over the page. ACL
 *    settings are lost at reset; n52_protect_boot() re-applies them from
 *    the UICR markers before the agent runs.
 * A sector counts as protected when both are in place, and refuses erase
 * and program as soon as either is (a half-written marker included).
 */
#include <string.h>

#include "device/hal/hal.h"
#include "device/ports/nrf52840/board.h"
#include "device/ports/nrf52840/nrf52840_regs.h"

#define N52_PROG_ALIGN 4u
#define N52_ID_SIZE (N52_FLASH_PAGE * N52_ID_SECTORS)

static uint32_t n52_id_addr(uint32_t off)
{
	return N52_ID_BASE + off;
}

static uint32_t n52_wp_marker(uint32_t sector)
{
	return n52_read_word(N52_UICR_CUSTOMER(N52_UICR_SLOT_WP(sector)));
}

static bool n52_sector_writable(uint32_t sector)
{
	return n52_wp_marker(sector) == 0xFFFFFFFFu &&
	       !n52_acl_write_blocked(n52_id_addr(sector * N52_FLASH_PAGE));
}

static bool n52_sector_protected(uint32_t sector)
{
	return n52_wp_marker(sector) == 0u &&
	       n52_acl_write_blocked(n52_id_addr(sector * N52_FLASH_PAGE));
}

ka_hal_status_t ka_hal_flash_geometry(ka_hal_flash_geom_t *g)
{
	if (g == NULL)
		return KA_HAL_ERR_ARG;
	g->sector_size = N52_FLASH_PAGE;
	g->sectors = (uint16_t)N52_ID_SECTORS;
	g->prog_align = (uint16_t)N52_PROG_ALIGN;
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_flash_erase(uint32_t sector)
{
	ka_hal_status_t r;
	uint32_t base;

	if (sector >= N52_ID_SECTORS)
		return KA_HAL_ERR_ARG;
	if (!n52_sector_writable(sector))
		return KA_HAL_ERR_LOCKED;
	base = n52_id_addr(sector * N52_FLASH_PAGE);
	r = n52_nvmc_erase_page(base);
	if (r != KA_HAL_OK)
		return r;
	for (uint32_t i = 0; i < N52_FLASH_PAGE; i += 4u) {
		if (n52_read_word(base + i) != 0xFFFFFFFFu)
			return KA_HAL_ERR_IO;
	}
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_flash_program(uint32_t off, const uint8_t *data,
				     size_t n)
{
	ka_hal_status_t r = KA_HAL_OK;

	if (data == NULL || n == 0 || off > N52_ID_SIZE ||
	    n > N52_ID_SIZE - off || off % N52_PROG_ALIGN != 0 ||
	    n % N52_PROG_ALIGN != 0)
		return KA_HAL_ERR_ARG;
	for (uint32_t s = off / N52_FLASH_PAGE;
	     s <= (off + (uint32_t)n - 1u) / N52_FLASH_PAGE; s++) {
		if (!n52_sector_writable(s))
			return KA_HAL_ERR_LOCKED;
	}
	for (size_t i = 0; i < n; i += 4u) {
		uint32_t want;

		memcpy(&want, data + i, 4);
		if ((n52_read_word(n52_id_addr(off + (uint32_t)i)) & want) != want)
			return KA_HAL_ERR_BITS;
	}
	for (size_t i = 0; i < n && r == KA_HAL_OK; i += 4u) {
		uint32_t addr = n52_id_addr(off + (uint32_t)i);
		uint32_t want;

		memcpy(&want, data + i, 4);
		if (n52_read_word(addr) == want)
			continue; /* spares one of the word's two writes */
		r = n52_nvmc_write_word(addr, want);
		if (r == KA_HAL_OK && n52_read_word(addr) != want)
			r = KA_HAL_ERR_IO;
	}
	return r;
}

ka_hal_status_t ka_hal_flash_read(uint32_t off, uint8_t *out, size_t n)
{
	if ((out == NULL && n > 0) || off > N52_ID_SIZE ||
	    n > N52_ID_SIZE - off)
		return KA_HAL_ERR_ARG;
	for (size_t i = 0; i < n; i++)
		out[i] = *(const volatile uint8_t *)(uintptr_t)n52_id_addr(
			off + (uint32_t)i);
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_flash_protect(uint32_t sector)
{
	ka_hal_status_t r = KA_HAL_OK;
	uint32_t marker;

	if (sector >= N52_ID_SECTORS)
		return KA_HAL_ERR_ARG;
	marker = N52_UICR_CUSTOMER(N52_UICR_SLOT_WP(sector));
	if (n52_read_word(marker) != 0u) {
		r = n52_nvmc_write_word(marker, 0u);
		if (r == KA_HAL_OK && n52_read_word(marker) != 0u)
			r = KA_HAL_ERR_IO;
	}
	if (r == KA_HAL_OK)
		r = n52_acl_protect(N52_ACL_REGION_ID(sector),
				    n52_id_addr(sector * N52_FLASH_PAGE),
				    N52_FLASH_PAGE);
	return r;
}

ka_hal_status_t ka_hal_flash_protected(uint32_t sector, bool *prot)
{
	if (sector >= N52_ID_SECTORS || prot == NULL)
		return KA_HAL_ERR_ARG;
	*prot = n52_sector_protected(sector);
	return KA_HAL_OK;
}
