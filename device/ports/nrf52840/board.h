/*
 * nRF52840-DK port of the kiln agent: functions and the storage map shared
 * between the port's files (the HAL itself is device/hal/hal.h).
 *
 * Flash (nrf52840.ld), 4 KiB pages:
 *   0x00000000 .. 0x000FBFFF  firmware (1008 KiB)
 *   0x000FC000, 0x000FD000    identity region, HAL sectors 0 and 1
 *   0x000FE000                OTP page A: HAL OTP words 0..79 (blocks 0..9)
 *   0x000FF000                OTP page B: HAL OTP words 80..127 (blocks 10..15)
 * UICR CUSTOMER[0..31] at 0x10001080:
 *   [0..15]  OTP block lock words: 0x00000000 = block locked
 *   [16..17] identity sector write-protect markers: 0x00000000 = protected
 *   [18..31] unused
 * ACL regions (write-once until reset, re-applied at every boot):
 *   0, 1 identity sectors 0, 1; 2 OTP page A; 3 OTP page B.
 * docs/porting.md ("nRF52840") explains what is write-once in hardware
 * and what only the HAL enforces.
 */
#ifndef KILN_DEVICE_PORTS_NRF52840_BOARD_H
#define KILN_DEVICE_PORTS_NRF52840_BOARD_H

#include <stdbool.h>
#include <stdint.h>

#include "device/hal/hal.h"

#define N52_SYSCLK_HZ 64000000u

#define N52_ID_BASE 0x000FC000u
#define N52_ID_SECTORS 2u
#define N52_OTP_PAGE_A 0x000FE000u
#define N52_OTP_PAGE_B 0x000FF000u
/** First OTP block stored in page B. Blocks 0..9 are the core's identity
 * blocks (docs/porting.md section 3), locked together by LOCK: page A
 * gets its ACL write protection exactly when the identity is locked. */
#define N52_OTP_SPLIT_BLOCK 10u

#define N52_UICR_SLOT_LOCK(block) (block)
#define N52_UICR_SLOT_WP(sector) (16u + (sector))

#define N52_ACL_REGION_ID(sector) (sector)
#define N52_ACL_REGION_OTP_A 2u
#define N52_ACL_REGION_OTP_B 3u

/** HFXO, SysTick at 1 kHz. */
void n52_clock_init(void);

/** UARTE0 on P0.06 (TX) / P0.08 (RX), the DK's J-Link VCOM, 115200 8N1,
 * EasyDMA reception into a ring buffer. */
void n52_uart_init(void);

/** Re-apply the persistent protections at boot, before anything writes
 * flash: ACL for protected identity sectors and fully locked OTP pages;
 * the APPROTECT register of build code Fxx parts. */
void n52_protect_boot(void);

/** True on build code Fxx and later (hardware APPROTECT, PS "DIF"). */
bool n52_hw_approtect(void);

/** Write-protect OTP page A or B with ACL if all its blocks are locked. */
ka_hal_status_t n52_otp_page_protect_if_locked(bool page_b) KA_HAL_WUR;

/* ---- NVMC / ACL primitives (nvmc.c), main loop only ---- */

/** Program one word of flash or UICR (CONFIG = WEN, wait READY). The
 * caller has checked that the word may be written. */
ka_hal_status_t n52_nvmc_write_word(uint32_t addr, uint32_t value) KA_HAL_WUR;

/** Erase one flash page (CONFIG = EEN, ERASEPAGE, wait READY). */
ka_hal_status_t n52_nvmc_erase_page(uint32_t addr) KA_HAL_WUR;

/** True if an ACL region blocks writes and erases of the page at addr. */
bool n52_acl_write_blocked(uint32_t addr);

/**
 * Configure ACL region `region` to block write/erase of [addr, addr+size).
 * Succeeds if it is already configured exactly so; KA_HAL_ERR_IO if the
 * region holds anything else (the registers are write-once per reset).
 */
ka_hal_status_t n52_acl_protect(uint32_t region, uint32_t addr, uint32_t size)
	KA_HAL_WUR;

/** Word read from flash, UICR or FICR. */
uint32_t n52_read_word(uint32_t addr);

/* ---- exception handlers (startup.c's vector table) ---- */
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);
void UARTE0_UART0_IRQHandler(void);

#endif
