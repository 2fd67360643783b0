/*
 * kiln first-stage boot: the main loop shared by the real-board files
 * (device/boot/<board>/main.c bring the board up and call it).
 */
#ifndef KILN_DEVICE_BOOT_BOARD_MAIN_H
#define KILN_DEVICE_BOOT_BOARD_MAIN_H

#include <stdint.h>

#include "device/boot/boot.h"

/**
 * Decide on the image in the slot the linker script names (kb_slot_start,
 * kb_slot_size), print the verdict, then let uart_quiet (may be NULL)
 * drain and stop the console and jump, or stay in safe mode repeating the
 * reason every 10 s. Never returns.
 */
__attribute__((noreturn)) void kb_board_run(uint32_t ram_start,
					    uint32_t ram_end,
					    void (*uart_quiet)(void));

#endif
