/*
 * nRF52840-DK "OTP": the part has no one-time-programmable array, so the
 * HAL's 128 words / 16 blocks are emulated (board.h has the map):
 *   words 0..79  (blocks 0..9)   -> flash page A at 0x000FE000
 *   words 80..127 (blocks 10..15) -> flash page B at 0x000FF000
 *   lock of block b               -> UICR CUSTOMER[b] = 0x00000000
 *
 * What the hardware enforces: NVMC writes only clear bits; a UICR word is
 * erased only with the whole UICR (NVMC ERASEUICR, or ERASEALL of the
 * entire chip); once every block of a page is locked, an ACL region
 * blocks writes and erases of that page until reset, and n52_protect_boot
 * re-applies it before the agent runs. What only this HAL enforces: "each
 * word is programmed once" (a word that does not read 0xFFFFFFFF is
 * refused with KA_HAL_ERR_PROGRAMMED, the core never programs
 * 0xFFFFFFFF), and the lock of a block whose page still has open blocks.
 */
#include "device/hal/hal.h"
#include "device/ports/nrf52840/board.h"
#include "device/ports/nrf52840/nrf52840_regs.h"

#define N52_OTP_WORDS 128u
#define N52_OTP_BLOCK_WORDS 8u
#define N52_OTP_BLOCKS (N52_OTP_WORDS / N52_OTP_BLOCK_WORDS)
#define N52_ERASED 0xFFFFFFFFu

_Static_assert(N52_OTP_BLOCKS <= 16u, "lock words: UICR CUSTOMER[0..15]");

static uint32_t n52_otp_addr(uint32_t word)
{
	const uint32_t split = N52_OTP_SPLIT_BLOCK * N52_OTP_BLOCK_WORDS;

	if (word < split)
		return N52_OTP_PAGE_A + 4u * word;
	return N52_OTP_PAGE_B + 4u * (word - split);
}

static uint32_t n52_lock_word(uint32_t block)
{
	return n52_read_word(N52_UICR_CUSTOMER(N52_UICR_SLOT_LOCK(block)));
}

ka_hal_status_t n52_otp_page_protect_if_locked(bool page_b)
{
	uint32_t first = page_b ? N52_OTP_SPLIT_BLOCK : 0u;
	uint32_t end = page_b ? N52_OTP_BLOCKS : N52_OTP_SPLIT_BLOCK;

	for (uint32_t b = first; b < end; b++) {
		if (n52_lock_word(b) != 0u)
			return KA_HAL_OK; /* an open block: the page stays writable */
	}
	return n52_acl_protect(page_b ? N52_ACL_REGION_OTP_B
				      : N52_ACL_REGION_OTP_A,
			       page_b ? N52_OTP_PAGE_B : N52_OTP_PAGE_A,
			       N52_FLASH_PAGE);
}

ka_hal_status_t ka_hal_otp_geometry(ka_hal_otp_geom_t *g)
{
	if (g == NULL)
		return KA_HAL_ERR_ARG;
	g->words = (uint16_t)N52_OTP_WORDS;
	g->words_per_block = (uint16_t)N52_OTP_BLOCK_WORDS;
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_otp_read(uint32_t word, uint32_t *out, size_t n)
{
	if ((out == NULL && n > 0) || word > N52_OTP_WORDS ||
	    n > N52_OTP_WORDS - word)
		return KA_HAL_ERR_ARG;
	for (size_t i = 0; i < n; i++)
		out[i] = n52_read_word(n52_otp_addr(word + (uint32_t)i));
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_otp_program(uint32_t word, uint32_t value)
{
	uint32_t addr;
	uint32_t old;
	ka_hal_status_t r;

	if (word >= N52_OTP_WORDS)
		return KA_HAL_ERR_ARG;
	addr = n52_otp_addr(word);
	/* A lock word that is not erased (locked, or half-written by a power
	 * cut) refuses programming; so does an ACL-protected page. */
	if (n52_lock_word(word / N52_OTP_BLOCK_WORDS) != N52_ERASED ||
	    n52_acl_write_blocked(addr))
		return KA_HAL_ERR_LOCKED;
	old = n52_read_word(addr);
	if (old != N52_ERASED)
		return KA_HAL_ERR_PROGRAMMED;
	if ((old & value) != value)
		return KA_HAL_ERR_BITS; /* unreachable while old is erased */
	r = n52_nvmc_write_word(addr, value);
	if (r != KA_HAL_OK)
		return r;
	return n52_read_word(addr) == value ? KA_HAL_OK : KA_HAL_ERR_IO;
}

ka_hal_status_t ka_hal_otp_lock_block(uint32_t block)
{
	ka_hal_status_t r = KA_HAL_OK;

	if (block >= N52_OTP_BLOCKS)
		return KA_HAL_ERR_ARG;
	if (n52_lock_word(block) != 0u) {
		r = n52_nvmc_write_word(
			N52_UICR_CUSTOMER(N52_UICR_SLOT_LOCK(block)), 0u);
		if (r == KA_HAL_OK && n52_lock_word(block) != 0u)
			r = KA_HAL_ERR_IO;
	}
	/* Also on the idempotent path: a power cut may have come between
	 * the last lock word and the ACL setup. */
	if (r == KA_HAL_OK)
		r = n52_otp_page_protect_if_locked(block >= N52_OTP_SPLIT_BLOCK);
	return r;
}

ka_hal_status_t ka_hal_otp_block_locked(uint32_t block, bool *locked)
{
	if (block >= N52_OTP_BLOCKS || locked == NULL)
		return KA_HAL_ERR_ARG;
	*locked = n52_lock_word(block) == 0u;
	return KA_HAL_OK;
}
