/*
 * NUCLEO-F429ZI: clocks, the 1 kHz tick, the part's identity.
 *
 * Clock tree (RM0090 6.2): HSI 16 MHz -> PLL with M = 16 (1 MHz VCO input),
 * N = 336 (VCO 336 MHz), P = 2 -> SYSCLK 168 MHz, Q = 7 -> 48 MHz for the
 * RNG (and USB OTG). AHB 168 MHz, APB1 42 MHz (USART3), APB2 84 MHz.
 * 168 MHz needs voltage scale 1 and 5 flash wait states at 2.7-3.6 V
 * (RM0090 3.5.1, table 10). The HSI (+-1 % over temperature) is good
 * enough for 115200 baud; a board using the ST-LINK's 8 MHz MCO as HSE
 * would only change PLLM and PLLSRC.
 */
#include <string.h>

#include "device/hal/hal.h"
#include "device/ports/stm32f4/board.h"
#include "device/ports/stm32f4/stm32f4_regs.h"

static volatile uint32_t st32_ms;

void SysTick_Handler(void)
{
	st32_ms++;
}

void st32_clock_init(void)
{
	ST32_RCC_CR |= ST32_RCC_CR_HSION;
	while ((ST32_RCC_CR & ST32_RCC_CR_HSIRDY) == 0)
		;

	ST32_RCC_APB1ENR |= ST32_RCC_APB1ENR_PWREN;
	(void)ST32_RCC_APB1ENR; /* the enable takes effect before the write */
	ST32_PWR_CR |= ST32_PWR_CR_VOS_SCALE1;

	/* Wait states before the clock goes up; read back (3.5.1). */
	ST32_FLASH_ACR = ST32_FLASH_ACR_PRFTEN | ST32_FLASH_ACR_ICEN |
			 ST32_FLASH_ACR_DCEN | 5u;
	while ((ST32_FLASH_ACR & ST32_FLASH_ACR_LATENCY_MASK) != 5u)
		;

	/* The PLL must be off while PLLCFGR changes (reset state: off). */
	ST32_RCC_CR &= ~ST32_RCC_CR_PLLON;
	while ((ST32_RCC_CR & ST32_RCC_CR_PLLRDY) != 0)
		;
	ST32_RCC_PLLCFGR = ST32_PLLCFGR(16u, 336u, 0u, 7u); /* PLLSRC = HSI */
	ST32_RCC_CR |= ST32_RCC_CR_PLLON;
	while ((ST32_RCC_CR & ST32_RCC_CR_PLLRDY) == 0)
		;

	/* Bus prescalers first, so APB1 (max 42 MHz) and APB2 (max 84 MHz)
	 * are never over their limits, then switch SYSCLK to the PLL. */
	ST32_RCC_CFGR = ST32_CFGR_PPRE1_DIV4 | ST32_CFGR_PPRE2_DIV2;
	ST32_RCC_CFGR |= ST32_CFGR_SW_PLL;
	while ((ST32_RCC_CFGR & ST32_CFGR_SWS_MASK) != ST32_CFGR_SWS_PLL)
		;

	/* SysTick: 1 kHz from the processor clock (168000 - 1 < 2^24). */
	ST32_SYST_RVR = ST32_SYSCLK_HZ / 1000u - 1u;
	ST32_SYST_CVR = 0;
	ST32_SYST_CSR = ST32_SYST_CSR_CLKSOURCE | ST32_SYST_CSR_TICKINT |
			ST32_SYST_CSR_ENABLE;
}

uint32_t ka_hal_tick_ms(void)
{
	return st32_ms; /* a single aligned 32-bit load: atomic on the M4 */
}

ka_hal_status_t ka_hal_uid(uint8_t *buf, size_t cap, size_t *len)
{
	/* RM0090 39.1: 96 bits at 0x1FFF7A10, read as three words. */
	uint32_t w[3];

	if (buf == NULL || len == NULL || cap < sizeof(w))
		return KA_HAL_ERR_ARG;
	for (uint32_t i = 0; i < 3u; i++)
		w[i] = ST32_REG(ST32_UID_BASE + 4u * i);
	memcpy(buf, w, sizeof(w)); /* little-endian: the byte order of the map */
	*len = sizeof(w);
	return KA_HAL_OK;
}

const char *ka_hal_board_name(void)
{
	return "NUCLEO-F429ZI";
}
