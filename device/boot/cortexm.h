/*
 * kiln first-stage boot: handing the CPU to a verified image on a
 * Cortex-M3/M4 (ARMv7-M), shared by the board files.
 */
#ifndef KILN_DEVICE_BOOT_CORTEXM_H
#define KILN_DEVICE_BOOT_CORTEXM_H

#include "device/boot/boot.h"

/**
 * Mask interrupts, stop SysTick, disable and clear every NVIC interrupt
 * (the boot's peripherals must already be quiet), set VTOR to the body,
 * load MSP from its vector table and branch to its reset handler with
 * interrupts unmasked. Never returns.
 */
__attribute__((noreturn)) void kb_jump(const kb_image_t *img);

#endif
