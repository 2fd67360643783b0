/*
 * STM32F4 FLASH interface (RM0090 3.5-3.7): the only code that unlocks
 * FLASH_CR or FLASH_OPTCR. Every operation
 *  - waits for BSY = 0 and clears stale error flags first,
 *  - unlocks with the key sequence only when LOCK/OPTLOCK is set (a wrong
 *    sequence would lock the interface until reset),
 *  - waits for BSY = 0 afterwards (the write is then durable), checks
 *    OPERR/WRPERR/PGAERR/PGPERR/PGSERR/RDERR, and locks again,
 *  - resets the instruction and data caches, so a read-back after an erase
 *    or program sees the array and not a cached line (3.5.2).
 * Programming runs from flash: the CPU stalls on fetches while BSY is set,
 * which is harmless for this single-threaded agent. Interrupts stay on
 * (the UART ISR runs from flash too and simply waits).
 */
#include "device/hal/hal.h"
#include "device/ports/stm32f4/board.h"
#include "device/ports/stm32f4/stm32f4_regs.h"

/* Sector erase of a 128 KiB sector takes up to 2 s (datasheet); the
 * identity sectors are 16 KiB (max 500 ms). The bound is a safety net
 * against a wedged controller, in SysTick milliseconds. */
#define ST32_FLASH_TIMEOUT_MS 4000u

static ka_hal_status_t st32_wait_idle(void)
{
	uint32_t start = ka_hal_tick_ms();

	while ((ST32_FLASH_SR & ST32_FLASH_SR_BSY) != 0) {
		if (ka_hal_tick_ms() - start > ST32_FLASH_TIMEOUT_MS)
			return KA_HAL_ERR_IO;
	}
	return KA_HAL_OK;
}

static void st32_flush_caches(void)
{
	uint32_t acr = ST32_FLASH_ACR;
	uint32_t en = acr & (ST32_FLASH_ACR_ICEN | ST32_FLASH_ACR_DCEN);

	/* A cache can be reset only while it is disabled (3.9.1). */
	ST32_FLASH_ACR = acr & ~en;
	ST32_FLASH_ACR = (acr & ~en) | ST32_FLASH_ACR_ICRST | ST32_FLASH_ACR_DCRST;
	ST32_FLASH_ACR = acr & ~en;
	ST32_FLASH_ACR = acr;
}

/* Map FLASH_SR errors to a HAL status: a write-protected target is
 * LOCKED, everything else an I/O failure. */
static ka_hal_status_t st32_sr_status(uint32_t sr)
{
	if ((sr & ST32_FLASH_SR_WRPERR) != 0)
		return KA_HAL_ERR_LOCKED;
	if ((sr & ST32_FLASH_SR_ERRORS) != 0)
		return KA_HAL_ERR_IO;
	return KA_HAL_OK;
}

static ka_hal_status_t st32_begin(void)
{
	ka_hal_status_t r = st32_wait_idle();

	if (r != KA_HAL_OK)
		return r;
	ST32_FLASH_SR = ST32_FLASH_SR_ERRORS | ST32_FLASH_SR_EOP; /* rc_w1 */
	if ((ST32_FLASH_CR & ST32_FLASH_CR_LOCK) != 0) {
		ST32_FLASH_KEYR = ST32_FLASH_KEY1;
		ST32_FLASH_KEYR = ST32_FLASH_KEY2;
		if ((ST32_FLASH_CR & ST32_FLASH_CR_LOCK) != 0)
			return KA_HAL_ERR_IO;
	}
	return KA_HAL_OK;
}

static ka_hal_status_t st32_end(ka_hal_status_t r)
{
	ka_hal_status_t w = st32_wait_idle();
	uint32_t sr = ST32_FLASH_SR;

	ST32_FLASH_CR &= ~(ST32_FLASH_CR_PG | ST32_FLASH_CR_SER |
			   ST32_FLASH_CR_SNB_MASK);
	ST32_FLASH_CR |= ST32_FLASH_CR_LOCK;
	st32_flush_caches();
	if (r != KA_HAL_OK)
		return r;
	if (w != KA_HAL_OK)
		return w;
	return st32_sr_status(sr);
}

static ka_hal_status_t st32_program(uint32_t addr, uint32_t psize,
				    uint32_t value, bool byte)
{
	ka_hal_status_t r = st32_begin();

	if (r == KA_HAL_OK) {
		uint32_t cr = ST32_FLASH_CR;

		cr &= ~(ST32_FLASH_CR_PSIZE_MASK | ST32_FLASH_CR_SER |
			ST32_FLASH_CR_SNB_MASK);
		ST32_FLASH_CR = cr | psize | ST32_FLASH_CR_PG;
		if (byte)
			ST32_REG8(addr) = (uint8_t)value;
		else
			ST32_REG(addr) = value;
		__asm__ volatile("dsb" ::: "memory");
	}
	return st32_end(r);
}

ka_hal_status_t st32_flash_program_word(uint32_t addr, uint32_t value)
{
	if (addr % 4u != 0)
		return KA_HAL_ERR_ARG;
	return st32_program(addr, ST32_FLASH_CR_PSIZE_X32, value, false);
}

ka_hal_status_t st32_flash_program_byte(uint32_t addr, uint8_t value)
{
	return st32_program(addr, ST32_FLASH_CR_PSIZE_X8, value, true);
}

ka_hal_status_t st32_flash_erase_sector(uint32_t snb)
{
	ka_hal_status_t r;

	if (snb > 11u)
		return KA_HAL_ERR_ARG; /* bank 1 only (sectors 12-23: SNB 16+) */
	r = st32_begin();
	if (r == KA_HAL_OK) {
		uint32_t cr = ST32_FLASH_CR;

		cr &= ~(ST32_FLASH_CR_PSIZE_MASK | ST32_FLASH_CR_PG |
			ST32_FLASH_CR_SNB_MASK);
		cr |= ST32_FLASH_CR_PSIZE_X32 | ST32_FLASH_CR_SER |
		      (snb << ST32_FLASH_CR_SNB_SHIFT);
		ST32_FLASH_CR = cr;
		ST32_FLASH_CR = cr | ST32_FLASH_CR_STRT;
		__asm__ volatile("dsb" ::: "memory");
	}
	return st32_end(r);
}

ka_hal_status_t st32_option_bytes_update(uint32_t clear, uint32_t set)
{
	const uint32_t ctl = ST32_FLASH_OPTCR_OPTLOCK | ST32_FLASH_OPTCR_OPTSTRT;
	ka_hal_status_t r = st32_wait_idle();
	uint32_t v;
	uint32_t sr;

	if (r != KA_HAL_OK)
		return r;
	ST32_FLASH_SR = ST32_FLASH_SR_ERRORS | ST32_FLASH_SR_EOP;
	if ((ST32_FLASH_OPTCR & ST32_FLASH_OPTCR_OPTLOCK) != 0) {
		ST32_FLASH_OPTKEYR = ST32_FLASH_OPTKEY1;
		ST32_FLASH_OPTKEYR = ST32_FLASH_OPTKEY2;
		if ((ST32_FLASH_OPTCR & ST32_FLASH_OPTCR_OPTLOCK) != 0)
			return KA_HAL_ERR_IO;
	}
	/* 3.6.2: write the new values, then OPTSTRT, then wait for BSY. The
	 * controller erases the user option bytes and programs all of them
	 * from OPTCR: a power cut in between leaves erased option bytes,
	 * i.e. RDP level 1 and no write protection (see docs/porting.md). */
	v = ST32_FLASH_OPTCR & ~ctl;
	v = (v & ~(clear & ~ctl)) | (set & ~ctl);
	ST32_FLASH_OPTCR = v;
	ST32_FLASH_OPTCR = v | ST32_FLASH_OPTCR_OPTSTRT;
	__asm__ volatile("dsb" ::: "memory");
	r = st32_wait_idle();
	sr = ST32_FLASH_SR;
	ST32_FLASH_OPTCR |= ST32_FLASH_OPTCR_OPTLOCK;
	if (r != KA_HAL_OK)
		return r;
	return st32_sr_status(sr);
}
