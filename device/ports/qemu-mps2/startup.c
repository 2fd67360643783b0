/*
 * qemu-mps2 port: vector table, reset and fault handlers (Cortex-M3).
 *
 * No C library start-up code: the reset handler paints the stack (for the
 * high-water mark), copies .data from its load image, zeroes .bss and
 * calls main(). Symbols come from mps2-an385.ld.
 */
#include <stdint.h>

#include "device/ports/qemu-mps2/board.h"

#define STACK_PAINT 0xA5A5A5A5u
#define SCB_AIRCR (*(volatile uint32_t *)0xE000ED0Cu)
#define AIRCR_SYSRESETREQ 0x05FA0004u

typedef void (*kq_vector_t)(void);

extern uint32_t kq_stack_bottom[], kq_stack_top[];
extern uint32_t kq_data_start[], kq_data_end[], kq_data_load[];
extern uint32_t kq_bss_start[], kq_bss_end[];

int main(void);
void kq_reset_handler(void);
void kq_default_handler(void);
void kq_hardfault_handler(void);
void kq_fault(uint32_t pc);
void kq_systick_handler(void);
void kq_uart0_rx_handler(void);

/* The table QEMU reads at 0x00000000: initial SP, then the handlers. */
typedef struct {
	uint32_t *initial_sp;
	kq_vector_t handler[15 + 32]; /* exceptions 1..15, IRQ 0..31 */
} kq_vector_table_t;

__attribute__((section(".vectors"), used))
const kq_vector_table_t kq_vectors = {
	.initial_sp = kq_stack_top,
	.handler = {
		[0] = kq_reset_handler,      /* 1 reset */
		[1] = kq_default_handler,    /* 2 NMI */
		[2] = kq_hardfault_handler,  /* 3 HardFault */
		[3] = kq_hardfault_handler,  /* 4 MemManage */
		[4] = kq_hardfault_handler,  /* 5 BusFault */
		[5] = kq_hardfault_handler,  /* 6 UsageFault */
		[10] = kq_default_handler,   /* 11 SVCall */
		[11] = kq_default_handler,   /* 12 DebugMonitor */
		[13] = kq_default_handler,   /* 14 PendSV */
		[14] = kq_systick_handler,   /* 15 SysTick */
		[15] = kq_uart0_rx_handler,  /* IRQ 0: UART0 RX */
	},
};

void kq_reset_handler(void)
{
	uint32_t *sp;
	uint32_t *p;

	/* paint the stack below what this function uses */
	__asm volatile("mov %0, sp" : "=r"(sp));
	for (p = kq_stack_bottom; p < sp - 16; p++)
		*p = STACK_PAINT;
	for (p = kq_data_start; p < kq_data_end; p++)
		*p = kq_data_load[p - kq_data_start];
	for (p = kq_bss_start; p < kq_bss_end; p++)
		*p = 0;
	(void)main();
	for (;;)
		__asm volatile("wfi");
}

uint32_t kq_stack_hwm(void)
{
	const volatile uint32_t *p = kq_stack_bottom;

	while (p < kq_stack_top && *p == STACK_PAINT)
		p++;
	return (uint32_t)((uintptr_t)kq_stack_top - (uintptr_t)p);
}

uint32_t kq_stack_size(void)
{
	return (uint32_t)((uintptr_t)kq_stack_top - (uintptr_t)kq_stack_bottom);
}

uint32_t kq_static_ram(void)
{
	return (uint32_t)((uintptr_t)kq_data_end - (uintptr_t)kq_data_start) +
	       (uint32_t)((uintptr_t)kq_bss_end - (uintptr_t)kq_bss_start);
}

void kq_default_handler(void)
{
	kq_fault(0);
}

/* Pass the stacked PC of the faulting context to kq_fault(). */
__attribute__((naked)) void kq_hardfault_handler(void)
{
	__asm volatile("tst lr, #4\n\t"
		       "ite eq\n\t"
		       "mrseq r0, msp\n\t"
		       "mrsne r0, psp\n\t"
		       "ldr r0, [r0, #24]\n\t"
		       "b kq_fault\n\t");
}

/* Record the fault and reset the board, like a watchdog would. */
void kq_fault(uint32_t pc)
{
	kq_diag_fault(pc);
	__asm volatile("dsb" ::: "memory");
	SCB_AIRCR = AIRCR_SYSRESETREQ;
	for (;;)
		__asm volatile("wfi");
}
