/*
 * nRF52840-DK: vector table and reset handler.
 *
 * Reset_Handler enables the FPU first (hard-float ABI,
 * scripts/cross/cortex-m4f.txt), copies .data, zeroes .bss and calls
 * main(). Unexpected exceptions — including the bus fault an ACL
 * violation raises — reset the part.
 *
 * Not done here: the errata workarounds that Nordic's MDK SystemInit
 * applies for early silicon revisions (see docs/porting.md).
 */
#include <stdint.h>
#include <string.h>

#include "device/ports/nrf52840/board.h"
#include "device/ports/nrf52840/nrf52840_regs.h"

int main(void);

extern uint8_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
extern uint8_t _estack[];

/* 48 nRF52840 interrupts (PS "Instantiation"). */
#define N52_IRQS 48

typedef void (*n52_isr_t)(void);

struct n52_vectors {
	const void *initial_sp;
	n52_isr_t exc[15];
	n52_isr_t irq[N52_IRQS];
};

#define D1 Default_Handler
#define D2 D1, D1
#define D4 D2, D2
#define D8 D4, D4
#define D16 D8, D8
#define D32 D16, D16

__attribute__((section(".isr_vector"), used))
static const struct n52_vectors n52_vectors = {
	.initial_sp = _estack,
	.exc = {
		Reset_Handler,   /* 1 reset */
		D1,              /* 2 NMI */
		D1,              /* 3 HardFault */
		D1,              /* 4 MemManage */
		D1,              /* 5 BusFault (ACL violation) */
		D1,              /* 6 UsageFault */
		0, 0, 0, 0,      /* 7-10 reserved */
		D1,              /* 11 SVCall */
		D1,              /* 12 DebugMonitor */
		0,               /* 13 reserved */
		D1,              /* 14 PendSV */
		SysTick_Handler, /* 15 SysTick */
	},
	.irq = {
		D2,                      /* IRQ 0 POWER_CLOCK, 1 RADIO */
		UARTE0_UART0_IRQHandler, /* IRQ 2 */
		D32, D8, D4, D1,         /* IRQ 3..47 */
	},
};

_Static_assert(sizeof(n52_vectors) == 4u * (16u + N52_IRQS),
	       "vector table layout");

void Default_Handler(void)
{
	__asm__ volatile("dsb" ::: "memory");
	N52_SCB_AIRCR = N52_AIRCR_SYSRESETREQ;
	for (;;)
		__asm__ volatile("nop");
}

void Reset_Handler(void)
{
	N52_SCB_CPACR |= N52_CPACR_CP10_CP11_FULL;
	__asm__ volatile("dsb\n\tisb" ::: "memory");

	memcpy(_sdata, _sidata, (size_t)((uintptr_t)_edata - (uintptr_t)_sdata));
	memset(_sbss, 0, (size_t)((uintptr_t)_ebss - (uintptr_t)_sbss));

	(void)main();
	Default_Handler();
}
