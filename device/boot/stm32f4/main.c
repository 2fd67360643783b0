/*
 * kiln-boot on the NUCLEO-F429ZI: clock and console (the agent port's
 * board code), then the decision and the jump (device/boot/board_main.c).
 * Memory map: device/boot/stm32f4/boot.ld.
 */
#include <stdint.h>

#include "device/boot/board_main.h"
#include "device/ports/stm32f4/board.h"

#define RAM_START 0x20000000u
#define RAM_END 0x20030000u /* SRAM1+2+3, 192 KiB */

int main(void)
{
	st32_clock_init();
	st32_uart_init();
	__asm__ volatile("cpsie i" ::: "memory");
	kb_board_run(RAM_START, RAM_END, NULL);
}
