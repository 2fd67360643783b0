#include <stdint.h>

#include "device/boot/board_main.h"
#include "device/boot/console.h"
#include "device/boot/cortexm.h"
#include "device/hal/hal.h"

#define SAFE_MODE_REPEAT_MS 10000u

/* From the board's boot.ld. */
extern const uint8_t kb_slot_start[], kb_slot_size[];

static uint8_t heap[KB_HEAP_SIZE] __attribute__((aligned(8)));

void kb_board_run(uint32_t ram_start, uint32_t ram_end,
		  void (*uart_quiet)(void))
{
	kb_target_t t = {
		.slot = kb_slot_start,
		.slot_addr = (uint32_t)(uintptr_t)kb_slot_start,
		.slot_size = (uint32_t)(uintptr_t)kb_slot_size,
		.ram_start = ram_start,
		.ram_end = ram_end,
		.heap = heap,
		.heap_len = sizeof(heap),
	};
	kb_image_t img;
	kb_reason_t r = kb_boot_check(&t, &img);

	if (r == KB_OK) {
		kb_console_booting(&img);
		if (uart_quiet != NULL)
			uart_quiet();
		kb_jump(&img);
	}
	for (;;) {
		uint32_t t0 = ka_hal_tick_ms();

		kb_console_refused(r);
		while (ka_hal_tick_ms() - t0 < SAFE_MODE_REPEAT_MS)
			__asm volatile("wfi");
	}
}
