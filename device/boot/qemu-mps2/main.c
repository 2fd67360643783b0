/*
 * kiln-boot for QEMU mps2-an385: attach the OTP/flash image in the PSRAM,
 * decide (device/boot/boot.c), then jump to the application in the image
 * slot, or stay in safe mode saying why on UART0.
 *
 * Reuses the agent port's start-up code, UART and storage
 * (device/ports/qemu-mps2/{startup,uart,hal,store}.c); the memory map is
 * device/boot/qemu-mps2/boot.ld.
 */
#include <stdint.h>

#include "device/boot/boot.h"
#include "device/boot/console.h"
#include "device/boot/cortexm.h"
#include "device/hal/hal.h"
#include "device/ports/qemu-mps2/board.h"

#define UART0_CTRL (*(volatile uint32_t *)0x40004008u)

#define RAM_START 0x20000000u
#define RAM_END 0x20400000u
#define SAFE_MODE_REPEAT_MS 10000u

extern const uint8_t kb_slot_start[], kb_slot_size[];

static uint8_t heap[KB_HEAP_SIZE] __attribute__((aligned(8)));

/* The diagnostics block belongs to the agent image; the boot records
 * nothing there. */
void kq_diag_fault(uint32_t pc)
{
	(void)pc;
}

int main(void)
{
	kb_target_t t = {
		.slot = kb_slot_start,
		.slot_addr = (uint32_t)(uintptr_t)kb_slot_start,
		.slot_size = (uint32_t)(uintptr_t)kb_slot_size,
		.ram_start = RAM_START,
		.ram_end = RAM_END,
		.heap = heap,
		.heap_len = sizeof(heap),
	};
	kb_image_t img;
	kb_reason_t r;

	kq_tick_init();
	kq_uart_init();
	if (kq_hal_store_init() != KA_HAL_OK)
		r = KB_STORAGE;
	else
		r = kb_boot_check(&t, &img);
	if (r == KB_OK) {
		kb_console_booting(&img);
		UART0_CTRL = 0; /* the application sets its UART up again */
		kb_jump(&img);
	}
	for (;;) {
		uint32_t t0 = ka_hal_tick_ms();

		kb_console_refused(r);
		while (ka_hal_tick_ms() - t0 < SAFE_MODE_REPEAT_MS)
			__asm volatile("wfi");
	}
}
