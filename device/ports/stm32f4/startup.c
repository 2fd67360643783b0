/*
 * NUCLEO-F429ZI: vector table and reset handler.
 *
 * Reset_Handler enables the FPU first (the image is built for the
 * hard-float ABI, scripts/cross/cortex-m4f.txt), then copies .data from
 * flash, zeroes .bss and calls main(). Any unexpected exception resets
 * the part: a provisioning agent that hangs blocks a station slot, one
 * that reboots reports its state again in HELLO.
 */
#include <stdint.h>
#include <string.h>

#include "device/ports/stm32f4/board.h"
#include "device/ports/stm32f4/stm32f4_regs.h"

int main(void);

/* Provided by stm32f4.ld. */
extern uint8_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
extern uint8_t _estack[];

/* 16 system exceptions (the first is the initial stack pointer) and the
 * 91 STM32F42x interrupts (RM0090 12.2, table 62). */
#define ST32_IRQS 91

typedef void (*st32_isr_t)(void);

struct st32_vectors {
	const void *initial_sp;
	st32_isr_t exc[15];
	st32_isr_t irq[ST32_IRQS];
};

#define D1 Default_Handler
#define D2 D1, D1
#define D4 D2, D2
#define D8 D4, D4
#define D16 D8, D8
#define D32 D16, D16

__attribute__((section(".isr_vector"), used))
static const struct st32_vectors st32_vectors = {
	.initial_sp = _estack,
	.exc = {
		Reset_Handler,   /* 1 reset */
		D1,              /* 2 NMI */
		D1,              /* 3 HardFault */
		D1,              /* 4 MemManage */
		D1,              /* 5 BusFault */
		D1,              /* 6 UsageFault */
		0, 0, 0, 0,      /* 7-10 reserved */
		D1,              /* 11 SVCall */
		D1,              /* 12 DebugMonitor */
		0,               /* 13 reserved */
		D1,              /* 14 PendSV */
		SysTick_Handler, /* 15 SysTick */
	},
	.irq = {
		D32, D4, D2, D1,   /* IRQ 0..38 */
		USART3_IRQHandler, /* IRQ 39 */
		D32, D16, D2, D1,  /* IRQ 40..90 */
	},
};

_Static_assert(sizeof(st32_vectors) == 4u * (16u + ST32_IRQS),
	       "vector table layout");

void Default_Handler(void)
{
	__asm__ volatile("dsb" ::: "memory");
	ST32_SCB_AIRCR = ST32_AIRCR_SYSRESETREQ;
	for (;;)
		__asm__ volatile("nop");
}

void Reset_Handler(void)
{
	/* CP10/CP11 full access before any floating-point instruction. */
	ST32_SCB_CPACR |= ST32_CPACR_CP10_CP11_FULL;
	__asm__ volatile("dsb\n\tisb" ::: "memory");

	memcpy(_sdata, _sidata, (size_t)((uintptr_t)_edata - (uintptr_t)_sdata));
	memset(_sbss, 0, (size_t)((uintptr_t)_ebss - (uintptr_t)_sbss));

	(void)main();
	Default_Handler();
}
