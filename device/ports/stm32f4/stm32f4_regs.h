/*
 * STM32F42x/43x register definitions used by the kiln agent port, written
 * from the reference manual RM0090 (Rev 19) and the Cortex-M4 generic
 * user guide; only what the port touches. Section numbers refer to RM0090.
 *
 * Registers are accessed through volatile lvalues: ST32_REG(addr) names
 * the 32-bit register at a fixed address.
 */
#ifndef KILN_DEVICE_PORTS_STM32F4_STM32F4_REGS_H
#define KILN_DEVICE_PORTS_STM32F4_STM32F4_REGS_H

#include <stdint.h>

#define ST32_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))
#define ST32_REG8(addr) (*(volatile uint8_t *)(uintptr_t)(addr))

/* ---- memory map (RM0090 2.3, 3.3 table 6, 3.8) ---- */
#define ST32_FLASH_BASE 0x08000000u
#define ST32_SRAM_BASE 0x20000000u
#define ST32_CCM_BASE 0x10000000u
#define ST32_OTP_BASE 0x1FFF7800u      /* 3.8: 16 blocks x 32 bytes */
#define ST32_OTP_LOCK_BASE 0x1FFF7A00u /* 3.8: LOCKB0..LOCKB15 */
#define ST32_UID_BASE 0x1FFF7A10u      /* 39.1: 96-bit unique ID */

/* ---- Cortex-M4 system control (ARM DUI 0553A, 4.3-4.6) ---- */
#define ST32_SCB_CPACR ST32_REG(0xE000ED88u)
#define ST32_CPACR_CP10_CP11_FULL (0xFu << 20)
#define ST32_SCB_AIRCR ST32_REG(0xE000ED0Cu)
#define ST32_AIRCR_SYSRESETREQ (0x05FA0000u | (1u << 2))
#define ST32_SYST_CSR ST32_REG(0xE000E010u)
#define ST32_SYST_RVR ST32_REG(0xE000E014u)
#define ST32_SYST_CVR ST32_REG(0xE000E018u)
#define ST32_SYST_CSR_ENABLE (1u << 0)
#define ST32_SYST_CSR_TICKINT (1u << 1)
#define ST32_SYST_CSR_CLKSOURCE (1u << 2) /* processor clock */
#define ST32_NVIC_ISER(n) ST32_REG(0xE000E100u + 4u * (n))
#define ST32_NVIC_IPR8(irq) ST32_REG8(0xE000E400u + (irq))

/* ---- RCC (section 6.3) ---- */
#define ST32_RCC_BASE 0x40023800u
#define ST32_RCC_CR ST32_REG(ST32_RCC_BASE + 0x00u)
#define ST32_RCC_PLLCFGR ST32_REG(ST32_RCC_BASE + 0x04u)
#define ST32_RCC_CFGR ST32_REG(ST32_RCC_BASE + 0x08u)
#define ST32_RCC_AHB1ENR ST32_REG(ST32_RCC_BASE + 0x30u)
#define ST32_RCC_AHB2ENR ST32_REG(ST32_RCC_BASE + 0x34u)
#define ST32_RCC_APB1ENR ST32_REG(ST32_RCC_BASE + 0x40u)
#define ST32_RCC_CR_HSION (1u << 0)
#define ST32_RCC_CR_HSIRDY (1u << 1)
#define ST32_RCC_CR_PLLON (1u << 24)
#define ST32_RCC_CR_PLLRDY (1u << 25)
/* PLLCFGR (6.3.2): PLLM[5:0], PLLN[14:6], PLLP[17:16] (0 = /2),
 * PLLSRC bit 22 (0 = HSI), PLLQ[27:24] */
#define ST32_PLLCFGR(m, n, pdiv2, q)                                      \
	((uint32_t)(m) | ((uint32_t)(n) << 6) | ((uint32_t)(pdiv2) << 16) | \
	 ((uint32_t)(q) << 24))
/* CFGR (6.3.3): SW[1:0], SWS[3:2], HPRE[7:4], PPRE1[12:10], PPRE2[15:13] */
#define ST32_CFGR_SW_PLL 0x2u
#define ST32_CFGR_SWS_MASK (0x3u << 2)
#define ST32_CFGR_SWS_PLL (0x2u << 2)
#define ST32_CFGR_PPRE1_DIV4 (0x5u << 10)
#define ST32_CFGR_PPRE2_DIV2 (0x4u << 13)
#define ST32_RCC_AHB1ENR_GPIODEN (1u << 3)
#define ST32_RCC_AHB2ENR_RNGEN (1u << 6)
#define ST32_RCC_APB1ENR_USART3EN (1u << 18)
#define ST32_RCC_APB1ENR_PWREN (1u << 28)

/* ---- PWR (5.4.1): VOS[15:14] = 11 scale 1 (needed above 144 MHz) ---- */
#define ST32_PWR_CR ST32_REG(0x40007000u)
#define ST32_PWR_CR_VOS_SCALE1 (0x3u << 14)

/* ---- GPIOD (8.4) ---- */
#define ST32_GPIOD_BASE 0x40020C00u
#define ST32_GPIOD_MODER ST32_REG(ST32_GPIOD_BASE + 0x00u)
#define ST32_GPIOD_OSPEEDR ST32_REG(ST32_GPIOD_BASE + 0x08u)
#define ST32_GPIOD_PUPDR ST32_REG(ST32_GPIOD_BASE + 0x0Cu)
#define ST32_GPIOD_AFRH ST32_REG(ST32_GPIOD_BASE + 0x24u)
#define ST32_GPIO_MODE_AF 0x2u
#define ST32_GPIO_PULL_UP 0x1u
#define ST32_GPIO_AF7 0x7u /* USART1..3 (table 12 of the datasheet) */

/* ---- USART3 (30.6) ---- */
#define ST32_USART3_BASE 0x40004800u
#define ST32_USART3_SR ST32_REG(ST32_USART3_BASE + 0x00u)
#define ST32_USART3_DR ST32_REG(ST32_USART3_BASE + 0x04u)
#define ST32_USART3_BRR ST32_REG(ST32_USART3_BASE + 0x08u)
#define ST32_USART3_CR1 ST32_REG(ST32_USART3_BASE + 0x0Cu)
#define ST32_USART3_CR2 ST32_REG(ST32_USART3_BASE + 0x10u)
#define ST32_USART3_CR3 ST32_REG(ST32_USART3_BASE + 0x14u)
#define ST32_USART_SR_PE (1u << 0)
#define ST32_USART_SR_FE (1u << 1)
#define ST32_USART_SR_NF (1u << 2)
#define ST32_USART_SR_ORE (1u << 3)
#define ST32_USART_SR_RXNE (1u << 5)
#define ST32_USART_SR_TC (1u << 6)
#define ST32_USART_SR_TXE (1u << 7)
#define ST32_USART_CR1_RE (1u << 2)
#define ST32_USART_CR1_TE (1u << 3)
#define ST32_USART_CR1_RXNEIE (1u << 5)
#define ST32_USART_CR1_UE (1u << 13)
#define ST32_USART3_IRQ 39u /* 12.2 table 62 (vector table position) */

/* ---- FLASH interface (3.9) ---- */
#define ST32_FLASH_R_BASE 0x40023C00u
#define ST32_FLASH_ACR ST32_REG(ST32_FLASH_R_BASE + 0x00u)
#define ST32_FLASH_KEYR ST32_REG(ST32_FLASH_R_BASE + 0x04u)
#define ST32_FLASH_OPTKEYR ST32_REG(ST32_FLASH_R_BASE + 0x08u)
#define ST32_FLASH_SR ST32_REG(ST32_FLASH_R_BASE + 0x0Cu)
#define ST32_FLASH_CR ST32_REG(ST32_FLASH_R_BASE + 0x10u)
#define ST32_FLASH_OPTCR ST32_REG(ST32_FLASH_R_BASE + 0x14u)
/* ACR (3.9.1): LATENCY[3:0], PRFTEN 8, ICEN 9, DCEN 10, ICRST 11, DCRST 12 */
#define ST32_FLASH_ACR_LATENCY_MASK 0xFu
#define ST32_FLASH_ACR_PRFTEN (1u << 8)
#define ST32_FLASH_ACR_ICEN (1u << 9)
#define ST32_FLASH_ACR_DCEN (1u << 10)
#define ST32_FLASH_ACR_ICRST (1u << 11)
#define ST32_FLASH_ACR_DCRST (1u << 12)
/* KEYR / OPTKEYR unlock sequences (3.5.1, 3.6.2) */
#define ST32_FLASH_KEY1 0x45670123u
#define ST32_FLASH_KEY2 0xCDEF89ABu
#define ST32_FLASH_OPTKEY1 0x08192A3Bu
#define ST32_FLASH_OPTKEY2 0x4C5D6E7Fu
/* SR (3.9.5) */
#define ST32_FLASH_SR_EOP (1u << 0)
#define ST32_FLASH_SR_OPERR (1u << 1)
#define ST32_FLASH_SR_WRPERR (1u << 4)
#define ST32_FLASH_SR_PGAERR (1u << 5)
#define ST32_FLASH_SR_PGPERR (1u << 6)
#define ST32_FLASH_SR_PGSERR (1u << 7)
#define ST32_FLASH_SR_RDERR (1u << 8)
#define ST32_FLASH_SR_BSY (1u << 16)
#define ST32_FLASH_SR_ERRORS                                              \
	(ST32_FLASH_SR_OPERR | ST32_FLASH_SR_WRPERR | ST32_FLASH_SR_PGAERR | \
	 ST32_FLASH_SR_PGPERR | ST32_FLASH_SR_PGSERR | ST32_FLASH_SR_RDERR)
/* CR (3.9.6): PG 0, SER 1, SNB[7:3], PSIZE[9:8], STRT 16, LOCK 31 */
#define ST32_FLASH_CR_PG (1u << 0)
#define ST32_FLASH_CR_SER (1u << 1)
#define ST32_FLASH_CR_SNB_SHIFT 3u
#define ST32_FLASH_CR_SNB_MASK (0x1Fu << 3)
#define ST32_FLASH_CR_PSIZE_MASK (0x3u << 8)
#define ST32_FLASH_CR_PSIZE_X8 (0x0u << 8)
#define ST32_FLASH_CR_PSIZE_X32 (0x2u << 8)
#define ST32_FLASH_CR_STRT (1u << 16)
#define ST32_FLASH_CR_LOCK (1u << 31)
/* OPTCR (3.9.7): OPTLOCK 0, OPTSTRT 1, RDP[15:8], nWRP[27:16] (sectors
 * 0..11, 0 = write-protected while SPRMOD = 0), SPRMOD 31 */
#define ST32_FLASH_OPTCR_OPTLOCK (1u << 0)
#define ST32_FLASH_OPTCR_OPTSTRT (1u << 1)
#define ST32_FLASH_OPTCR_RDP_SHIFT 8u
#define ST32_FLASH_OPTCR_RDP_MASK (0xFFu << 8)
#define ST32_FLASH_OPTCR_NWRP_SHIFT 16u
#define ST32_FLASH_OPTCR_SPRMOD (1u << 31)
/* RDP values (3.7.3): 0xAA level 0, 0xCC level 2, anything else level 1 */
#define ST32_RDP_LEVEL0 0xAAu
#define ST32_RDP_LEVEL2 0xCCu

/* ---- RNG (24.4) ---- */
#define ST32_RNG_BASE 0x50060800u
#define ST32_RNG_CR ST32_REG(ST32_RNG_BASE + 0x00u)
#define ST32_RNG_SR ST32_REG(ST32_RNG_BASE + 0x04u)
#define ST32_RNG_DR ST32_REG(ST32_RNG_BASE + 0x08u)
#define ST32_RNG_CR_RNGEN (1u << 2)
#define ST32_RNG_SR_DRDY (1u << 0)
#define ST32_RNG_SR_CECS (1u << 1)
#define ST32_RNG_SR_SECS (1u << 2)
#define ST32_RNG_SR_CEIS (1u << 5)
#define ST32_RNG_SR_SEIS (1u << 6)

#endif
