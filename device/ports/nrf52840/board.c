/*
 * nRF52840-DK: clocks, the 1 kHz tick, the part's identity, and the
 * protections re-applied at every boot.
 *
 * The CPU runs at 64 MHz from HFCLK. The HFXO (32 MHz crystal on the DK)
 * is started for the UART's baud-rate accuracy (HFINT is +-1.5 %).
 * SysTick counts the processor clock: 64000 cycles = 1 ms.
 */
#include <string.h>

#include "device/hal/hal.h"
#include "device/ports/nrf52840/board.h"
#include "device/ports/nrf52840/nrf52840_regs.h"

/* HFXO start-up is typically 0.36 ms (PS "CLOCK"); the bound only stops a
 * board without a crystal from hanging here (HFINT then stays on). */
#define N52_HFXO_SPIN 2000000u

static volatile uint32_t n52_ms;
/* ACL set-ups that failed at boot (for a debugger). The HAL's read-backs
 * (ka_hal_flash_protected, the OTP page checks) report the gap anyway. */
static volatile uint32_t n52_boot_acl_failures;

void SysTick_Handler(void)
{
	n52_ms++;
}

void n52_clock_init(void)
{
	N52_CLOCK_EVENTS_HFCLKSTARTED = 0;
	N52_CLOCK_TASKS_HFCLKSTART = 1;
	for (uint32_t i = 0; i < N52_HFXO_SPIN; i++) {
		if (N52_CLOCK_EVENTS_HFCLKSTARTED != 0)
			break;
	}

	N52_SYST_RVR = N52_SYSCLK_HZ / 1000u - 1u;
	N52_SYST_CVR = 0;
	N52_SYST_CSR = N52_SYST_CSR_CLKSOURCE | N52_SYST_CSR_TICKINT |
		       N52_SYST_CSR_ENABLE;
}

uint32_t ka_hal_tick_ms(void)
{
	return n52_ms;
}

uint32_t n52_read_word(uint32_t addr)
{
	return N52_REG(addr);
}

ka_hal_status_t ka_hal_uid(uint8_t *buf, size_t cap, size_t *len)
{
	/* FICR.DEVICEID[0..1]: 64-bit factory-programmed identifier. */
	uint32_t w[2];

	if (buf == NULL || len == NULL || cap < sizeof(w))
		return KA_HAL_ERR_ARG;
	w[0] = N52_FICR_DEVICEID(0);
	w[1] = N52_FICR_DEVICEID(1);
	memcpy(buf, w, sizeof(w));
	*len = sizeof(w);
	return KA_HAL_OK;
}

const char *ka_hal_board_name(void)
{
	return "nRF52840-DK";
}

/* Build code Fxx (silicon revision 3) and later have the hardware
 * APPROTECT and its APPROTECT.DISABLE/FORCEPROTECT registers. INFO.VARIANT
 * is four ASCII characters, e.g. "AAF0": the third is the build code. */
bool n52_hw_approtect(void)
{
	uint32_t build = (N52_FICR_INFO_VARIANT >> 8) & 0xFFu;

	return build >= 'F' && build <= 'Z';
}

void n52_protect_boot(void)
{
	uint32_t pall = N52_REG(N52_UICR_APPROTECT) & N52_APPROTECT_PALL_MASK;

	/* Identity sectors whose marker is (even partly) written. */
	for (uint32_t s = 0; s < N52_ID_SECTORS; s++) {
		if (N52_REG(N52_UICR_CUSTOMER(N52_UICR_SLOT_WP(s))) ==
		    0xFFFFFFFFu)
			continue;
		if (n52_acl_protect(N52_ACL_REGION_ID(s),
				    N52_ID_BASE + s * N52_FLASH_PAGE,
				    N52_FLASH_PAGE) != KA_HAL_OK)
			n52_boot_acl_failures++;
	}
	if (n52_otp_page_protect_if_locked(false) != KA_HAL_OK)
		n52_boot_acl_failures++;
	if (n52_otp_page_protect_if_locked(true) != KA_HAL_OK)
		n52_boot_acl_failures++;

	if (n52_hw_approtect()) {
		if (pall == N52_APPROTECT_PALL_HWDISABLED)
			/* Not locked yet and the factory opened the port in
			 * UICR: keep the debugger usable until LOCK level 2. */
			N52_APPROTECT_DISABLE = N52_APPROTECT_SWDISABLE;
		else if (pall == N52_APPROTECT_PALL_ENABLED)
			N52_APPROTECT_FORCEPROTECT = 0;
	}
}
