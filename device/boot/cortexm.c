#include <stdint.h>

#include "device/boot/cortexm.h"

#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define ICSR_PENDSTCLR 0x02000000u
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define NVIC_ICER(i) (*(volatile uint32_t *)(0xE000E180u + 4u * (i)))
#define NVIC_ICPR(i) (*(volatile uint32_t *)(0xE000E280u + 4u * (i)))
#define NVIC_REGS 8u /* up to 256 interrupts on ARMv7-M */

void kb_jump(const kb_image_t *img)
{
	__asm volatile("cpsid i" ::: "memory");
	SYST_CSR = 0;
	SCB_ICSR = ICSR_PENDSTCLR;
	for (uint32_t i = 0; i < NVIC_REGS; i++) {
		NVIC_ICER(i) = 0xFFFFFFFFu;
		NVIC_ICPR(i) = 0xFFFFFFFFu;
	}
	SCB_VTOR = img->load_addr;
	__asm volatile("dsb\n\tisb" ::: "memory");
	__asm volatile("msr msp, %0\n\t"
		       "cpsie i\n\t"
		       "bx %1\n\t"
		       :
		       : "r"(img->initial_sp), "r"(img->reset)
		       : "memory");
	for (;;)
		;
}
