/*
 * NUCLEO-F429ZI port of the kiln agent: functions shared between the
 * port's files (the HAL itself is device/hal/hal.h).
 *
 * Memory map of the image (stm32f4.ld):
 *   0x08000000 sector 0 (16 KiB)   vector table + reset code
 *   0x08004000 sectors 1-2 (32 KiB) identity region (ka_hal_flash_*)
 *   0x0800C000 sectors 3-11         the rest of the firmware (bank 1)
 *   0x1FFF7800 OTP (512 B) + 0x1FFF7A00 lock bytes (ka_hal_otp_*)
 */
#ifndef KILN_DEVICE_PORTS_STM32F4_BOARD_H
#define KILN_DEVICE_PORTS_STM32F4_BOARD_H

#include <stdbool.h>
#include <stdint.h>

#include "device/hal/hal.h"

/** Core clock after st32_clock_init(): HSI 16 MHz -> PLL 168 MHz. */
#define ST32_SYSCLK_HZ 168000000u
/** APB1 clock (USART3): SYSCLK / 4. */
#define ST32_PCLK1_HZ 42000000u

/** Identity region: flash sectors 1 and 2 (16 KiB each). */
#define ST32_ID_FIRST_SECTOR 1u
#define ST32_ID_SECTORS 2u
#define ST32_ID_SECTOR_SIZE 0x4000u
#define ST32_ID_BASE 0x08004000u

/** Clocks (PLL 168 MHz, 48 MHz on PLLQ for the RNG), flash wait states,
 * SysTick at 1 kHz. */
void st32_clock_init(void);

/** USART3 on PD8/PD9 (ST-LINK virtual COM port), 115200 8N1, RX IRQ. */
void st32_uart_init(void);

/* ---- FLASH interface primitives (flashctl.c), main loop only ---- */

/** Program one 32-bit word (PSIZE x32) at a flash or OTP address. */
ka_hal_status_t st32_flash_program_word(uint32_t addr, uint32_t value)
	KA_HAL_WUR;

/** Program one byte (PSIZE x8) at a flash or OTP address. */
ka_hal_status_t st32_flash_program_byte(uint32_t addr, uint8_t value)
	KA_HAL_WUR;

/** Erase one main-flash sector (SER, SNB, STRT). */
ka_hal_status_t st32_flash_erase_sector(uint32_t snb) KA_HAL_WUR;

/**
 * Program the user option bytes with FLASH_OPTCR = (current & ~clear) |
 * set (RDP and nWRP live there), OPTSTRT, wait. OPTLOCK/OPTSTRT in
 * clear/set are ignored.
 */
ka_hal_status_t st32_option_bytes_update(uint32_t clear, uint32_t set)
	KA_HAL_WUR;

/* ---- exception handlers (startup.c's vector table) ---- */
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);
void USART3_IRQHandler(void);

#endif
