/*
 * nRF52840-DK debug lock: access port protection (PS "DIF", "UICR").
 *
 * ka_hal_debug_lock programs UICR.APPROTECT.PALL = 0x00 (Enabled), which
 * is effective from the next reset on every silicon revision. On build
 * code Fxx and later (hardware APPROTECT) it also writes
 * APPROTECT.FORCEPROTECT = 0, which closes the port at once, until reset.
 * The state can only be undone by ERASEALL through the CTRL-AP, which
 * erases all flash, RAM and UICR: the identity and its keys go with it.
 *
 * ka_hal_debug_locked reports the persistent state, PALL == 0x00. (On
 * build code Fxx an erased UICR also keeps the port closed after reset
 * unless firmware opens it; that is not a lock the agent set, and the
 * agent does not report it as one.)
 */
#include "device/hal/hal.h"
#include "device/ports/nrf52840/board.h"
#include "device/ports/nrf52840/nrf52840_regs.h"

static uint32_t n52_pall(void)
{
	return n52_read_word(N52_UICR_APPROTECT) & N52_APPROTECT_PALL_MASK;
}

ka_hal_status_t ka_hal_debug_lock(void)
{
	ka_hal_status_t r = KA_HAL_OK;

	if (n52_pall() != N52_APPROTECT_PALL_ENABLED) {
		/* Clear only the PALL bits: 0xFF or 0x5A -> 0x00 (at most the
		 * word's second write). */
		uint32_t v = n52_read_word(N52_UICR_APPROTECT) &
			     ~N52_APPROTECT_PALL_MASK;

		r = n52_nvmc_write_word(N52_UICR_APPROTECT, v);
		if (r == KA_HAL_OK && n52_pall() != N52_APPROTECT_PALL_ENABLED)
			r = KA_HAL_ERR_IO;
	}
	if (r == KA_HAL_OK && n52_hw_approtect())
		N52_APPROTECT_FORCEPROTECT = 0;
	return r;
}

ka_hal_status_t ka_hal_debug_locked(bool *locked)
{
	if (locked == NULL)
		return KA_HAL_ERR_ARG;
	*locked = n52_pall() == N52_APPROTECT_PALL_ENABLED;
	return KA_HAL_OK;
}
