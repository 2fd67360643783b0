/*
 * kiln-boot on the nRF52840-DK: clock, the persistent protections and the
 * console (the agent port's board code), then the decision and the jump
 * (device/boot/board_main.c). Memory map: device/boot/nrf52840/boot.ld.
 */
#include <stdint.h>

#include "device/boot/board_main.h"
#include "device/ports/nrf52840/board.h"

#define RAM_START 0x20000000u
#define RAM_END 0x20040000u /* 256 KiB */

int main(void)
{
	n52_clock_init();
	n52_protect_boot();
	n52_uart_init();
	__asm__ volatile("cpsie i" ::: "memory");
	kb_board_run(RAM_START, RAM_END, NULL);
}
