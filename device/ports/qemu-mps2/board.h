/*
 * qemu-mps2 port: the pieces of the board the port's files share
 * (not part of the HAL).
 */
#ifndef KILN_DEVICE_PORTS_QEMU_MPS2_BOARD_H
#define KILN_DEVICE_PORTS_QEMU_MPS2_BOARD_H

#include <stdint.h>

#include "device/hal/hal.h"

/** UART0 at 115200 8N1, receive interrupt into a ring buffer. */
void kq_uart_init(void);

/** SysTick at 1 kHz (also keeps QEMU's main loop polling the UART). */
void kq_tick_init(void);

/** Attach the image in the PSRAM; KA_HAL_OK or why not. */
ka_hal_status_t kq_hal_store_init(void);

/** Emulated storage writes since boot. */
uint32_t kq_hal_store_writes(void);

/** UART counters since boot. */
void kq_uart_stats(uint32_t *rx, uint32_t *rx_dropped, uint32_t *tx,
		   uint32_t *tx_dropped);

/** Deepest stack use since reset, in bytes (stack painted at reset). */
uint32_t kq_stack_hwm(void);

/** Bytes reserved for the stack. */
uint32_t kq_stack_size(void);

/** .data + .bss bytes. */
uint32_t kq_static_ram(void);

/** mbedTLS heap size and the highest byte ever allocated in it. */
void kq_heap_stats(uint32_t *size, uint32_t *hwm);

/** Called from the hard-fault handler: record pc in the diagnostics. */
void kq_diag_fault(uint32_t pc);

#endif
