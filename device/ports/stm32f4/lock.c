/*
 * NUCLEO-F429ZI debug lock: readout protection level 1 (RM0090 3.7.3).
 *
 * ka_hal_debug_lock programs RDP = 0xBB (any value but 0xAA and 0xCC is
 * level 1). Why 0xBB and not 0x00: the option-byte program starts from
 * erased bytes (0xFF) and clears bits; a cut-short program therefore
 * leaves a value between 0xFF and 0xBB, which can never be 0xAA (level 0)
 * or 0xCC (level 2: 0xCC has bit 0 clear, 0xBB has it set). 0x00 could
 * pass through 0xCC.
 *
 * Never level 2 here: level 2 is irreversible (no debug, no option-byte
 * change, no bootloader, ever again), so a failed or mis-provisioned board
 * could not even be analysed or re-flashed. A product that wants level 2
 * sets it in its own production step after kiln's LOCK, deliberately.
 * Level 1 takes effect for the debug port at the next power-on reset (an
 * ST-LINK session still attached keeps working until then and should be
 * closed before LOCK). Level 1 -> 0 would mass-erase the flash: the HAL
 * never does it.
 */
#include "device/hal/hal.h"
#include "device/ports/stm32f4/board.h"
#include "device/ports/stm32f4/stm32f4_regs.h"

#define ST32_RDP_KILN_LEVEL1 0xBBu

static uint32_t st32_rdp(void)
{
	return (ST32_FLASH_OPTCR & ST32_FLASH_OPTCR_RDP_MASK) >>
	       ST32_FLASH_OPTCR_RDP_SHIFT;
}

ka_hal_status_t ka_hal_debug_lock(void)
{
	ka_hal_status_t r;

	if (st32_rdp() != ST32_RDP_LEVEL0)
		return KA_HAL_OK; /* level 1 or 2 already: idempotent */
	r = st32_option_bytes_update(
		ST32_FLASH_OPTCR_RDP_MASK,
		ST32_RDP_KILN_LEVEL1 << ST32_FLASH_OPTCR_RDP_SHIFT);
	if (r != KA_HAL_OK)
		return r;
	return st32_rdp() != ST32_RDP_LEVEL0 ? KA_HAL_OK : KA_HAL_ERR_IO;
}

ka_hal_status_t ka_hal_debug_locked(bool *locked)
{
	if (locked == NULL)
		return KA_HAL_ERR_ARG;
	*locked = st32_rdp() != ST32_RDP_LEVEL0;
	return KA_HAL_OK;
}
