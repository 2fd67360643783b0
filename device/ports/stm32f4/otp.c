/*
 * NUCLEO-F429ZI OTP: the 512-byte OTP area of the STM32F42x (RM0090 3.8),
 * mapped 1:1 onto the HAL's 128 words / 16 blocks of 8 words:
 *   HAL word w  -> 0x1FFF7800 + 4 w   (block b = w / 8 = OTP block b)
 *   block lock b -> lock byte LOCKBb at 0x1FFF7A00 + b; 0x00 = locked,
 *                   0xFF = open (any other value: a cut-short program).
 *
 * The hardware would program a non-erased word by ANDing it (3.6: flash
 * bits only go 1 -> 0) and does not remember that a word was written
 * before. The HAL therefore checks before touching the controller: a word
 * that does not read 0xFFFFFFFF counts as programmed (KA_HAL_ERR_PROGRAMMED)
 * — the core never programs the value 0xFFFFFFFF, so "programmed" and
 * "not erased" coincide for every word the core writes. A locked block is
 * refused by the HAL first and by the hardware anyway (WRPERR/PGSERR).
 */
#include "device/hal/hal.h"
#include "device/ports/stm32f4/board.h"
#include "device/ports/stm32f4/stm32f4_regs.h"

#define ST32_OTP_WORDS 128u
#define ST32_OTP_BLOCK_WORDS 8u
#define ST32_OTP_BLOCKS (ST32_OTP_WORDS / ST32_OTP_BLOCK_WORDS)
#define ST32_OTP_ERASED 0xFFFFFFFFu

static uint8_t st32_lock_byte(uint32_t block)
{
	return ST32_REG8(ST32_OTP_LOCK_BASE + block);
}

ka_hal_status_t ka_hal_otp_geometry(ka_hal_otp_geom_t *g)
{
	if (g == NULL)
		return KA_HAL_ERR_ARG;
	g->words = (uint16_t)ST32_OTP_WORDS;
	g->words_per_block = (uint16_t)ST32_OTP_BLOCK_WORDS;
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_otp_read(uint32_t word, uint32_t *out, size_t n)
{
	if ((out == NULL && n > 0) || word > ST32_OTP_WORDS ||
	    n > ST32_OTP_WORDS - word)
		return KA_HAL_ERR_ARG;
	for (size_t i = 0; i < n; i++)
		out[i] = ST32_REG(ST32_OTP_BASE + 4u * (word + (uint32_t)i));
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_otp_program(uint32_t word, uint32_t value)
{
	uint32_t addr;
	uint32_t old;
	ka_hal_status_t r;

	if (word >= ST32_OTP_WORDS)
		return KA_HAL_ERR_ARG;
	addr = ST32_OTP_BASE + 4u * word;
	/* Program-once and one-way checks before the hardware is touched,
	 * in the simulator's order: locked, programmed, bits. */
	if (st32_lock_byte(word / ST32_OTP_BLOCK_WORDS) != 0xFFu)
		return KA_HAL_ERR_LOCKED;
	old = ST32_REG(addr);
	if (old != ST32_OTP_ERASED)
		return KA_HAL_ERR_PROGRAMMED;
	if ((old & value) != value)
		return KA_HAL_ERR_BITS; /* unreachable while old is erased */
	r = st32_flash_program_word(addr, value);
	if (r != KA_HAL_OK)
		return r;
	/* Durable and exact: read the array back. */
	return ST32_REG(addr) == value ? KA_HAL_OK : KA_HAL_ERR_IO;
}

ka_hal_status_t ka_hal_otp_lock_block(uint32_t block)
{
	ka_hal_status_t r;

	if (block >= ST32_OTP_BLOCKS)
		return KA_HAL_ERR_ARG;
	if (st32_lock_byte(block) == 0x00u)
		return KA_HAL_OK; /* idempotent, no second write */
	/* A lock byte left between 0xFF and 0x00 by a power cut is simply
	 * programmed again: writing 0x00 only clears bits. */
	r = st32_flash_program_byte(ST32_OTP_LOCK_BASE + block, 0x00u);
	if (r != KA_HAL_OK)
		return r;
	return st32_lock_byte(block) == 0x00u ? KA_HAL_OK : KA_HAL_ERR_IO;
}

ka_hal_status_t ka_hal_otp_block_locked(uint32_t block, bool *locked)
{
	if (block >= ST32_OTP_BLOCKS || locked == NULL)
		return KA_HAL_ERR_ARG;
	/* Only a fully programmed lock byte counts: a partial one may or may
	 * not stop the hardware, so LOCK must run (and finish) it again. */
	*locked = st32_lock_byte(block) == 0x00u;
	return KA_HAL_OK;
}
