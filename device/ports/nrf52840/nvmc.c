/*
 * nRF52840 NVMC and ACL (PS "NVMC", "ACL"): the only code that writes
 * flash or UICR.
 *
 * NVMC: writes and erases need CONFIG = WEN / EEN and are complete when
 * READY = 1 (the CPU stalls on flash fetches meanwhile). A write can only
 * clear bits, and a word may be written at most twice between erases
 * (PS "NVMC": nWRITE = 2); the HAL writes each word at most once, a lock
 * word or marker left half-written by a power cut a second time.
 *
 * ACL: ADDR, SIZE and PERM of a region are write-once until the next
 * reset; a write or erase inside a region with PERM.WRITE = 1 is blocked
 * and raises a bus fault. The HAL therefore never lets the NVMC touch a
 * blocked page: callers check n52_acl_write_blocked() first.
 */
#include "device/hal/hal.h"
#include "device/ports/nrf52840/board.h"
#include "device/ports/nrf52840/nrf52840_regs.h"

/* Page erase takes at most 85 ms, a word write 41 us (PS "Electrical
 * specification"); the bound only catches a wedged controller. */
#define N52_NVMC_TIMEOUT_MS 500u

static ka_hal_status_t n52_nvmc_wait_ready(void)
{
	uint32_t start = ka_hal_tick_ms();

	while (N52_NVMC_READY == 0) {
		if (ka_hal_tick_ms() - start > N52_NVMC_TIMEOUT_MS)
			return KA_HAL_ERR_IO;
	}
	return KA_HAL_OK;
}

static ka_hal_status_t n52_nvmc_config(uint32_t mode)
{
	ka_hal_status_t r = n52_nvmc_wait_ready();

	N52_NVMC_CONFIG = mode;
	__asm__ volatile("dsb" ::: "memory");
	return r;
}

ka_hal_status_t n52_nvmc_write_word(uint32_t addr, uint32_t value)
{
	ka_hal_status_t r;
	ka_hal_status_t back;

	if (addr % 4u != 0)
		return KA_HAL_ERR_ARG;
	r = n52_nvmc_config(N52_NVMC_CONFIG_WEN);
	if (r == KA_HAL_OK) {
		N52_REG(addr) = value;
		__asm__ volatile("dsb" ::: "memory");
		r = n52_nvmc_wait_ready();
	}
	back = n52_nvmc_config(N52_NVMC_CONFIG_REN);
	return r != KA_HAL_OK ? r : back;
}

ka_hal_status_t n52_nvmc_erase_page(uint32_t addr)
{
	ka_hal_status_t r;
	ka_hal_status_t back;

	if (addr % N52_FLASH_PAGE != 0)
		return KA_HAL_ERR_ARG;
	r = n52_nvmc_config(N52_NVMC_CONFIG_EEN);
	if (r == KA_HAL_OK) {
		N52_NVMC_ERASEPAGE = addr;
		__asm__ volatile("dsb" ::: "memory");
		r = n52_nvmc_wait_ready();
	}
	back = n52_nvmc_config(N52_NVMC_CONFIG_REN);
	return r != KA_HAL_OK ? r : back;
}

bool n52_acl_write_blocked(uint32_t addr)
{
	for (uint32_t n = 0; n < N52_ACL_REGIONS; n++) {
		uint32_t base = N52_ACL_ADDR(n);
		uint32_t size = N52_ACL_SIZE(n);

		if ((N52_ACL_PERM(n) & N52_ACL_PERM_WRITE_DISABLE) != 0 &&
		    size != 0 && addr >= base && addr - base < size)
			return true;
	}
	return false;
}

ka_hal_status_t n52_acl_protect(uint32_t region, uint32_t addr, uint32_t size)
{
	if (region >= N52_ACL_REGIONS || addr % N52_FLASH_PAGE != 0 ||
	    size == 0 || size % N52_FLASH_PAGE != 0)
		return KA_HAL_ERR_ARG;
	if (N52_ACL_PERM(region) == 0 && N52_ACL_SIZE(region) == 0) {
		N52_ACL_ADDR(region) = addr;
		N52_ACL_SIZE(region) = size;
		N52_ACL_PERM(region) = N52_ACL_PERM_WRITE_DISABLE;
		__asm__ volatile("dsb\n\tisb" ::: "memory");
	}
	/* Read back: protection is on two CPU cycles after the writes. */
	if (N52_ACL_ADDR(region) != addr || N52_ACL_SIZE(region) != size ||
	    (N52_ACL_PERM(region) & N52_ACL_PERM_WRITE_DISABLE) == 0)
		return KA_HAL_ERR_IO;
	return KA_HAL_OK;
}
