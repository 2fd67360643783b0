/*
 * qemu-mps2 port: the diagnostics block.
 *
 * The UART carries nothing but frames, so the firmware publishes its
 * run-time measurements in the board's image file instead: a block of
 * little-endian u32 words at KQ_DIAG_OFF in the PSRAM (past the OTP/flash
 * image), updated by the main loop. tests/qemu reads it from the host
 * file while the board runs or after it was killed.
 */
#ifndef KILN_DEVICE_PORTS_QEMU_MPS2_DIAG_H
#define KILN_DEVICE_PORTS_QEMU_MPS2_DIAG_H

#include <stdint.h>

#define KQ_PSRAM_BASE 0x21000000u
#define KQ_PSRAM_SIZE 0x01000000u /* 16 MiB: QEMU's mps2 RAM size */
#define KQ_DIAG_OFF 0x8000u       /* offset in the PSRAM / image file */
#define KQ_DIAG_MAGIC 0x4744514Bu /* "KQDG" */
#define KQ_DIAG_VERSION 1u

/* Word indices of the block (each a u32). */
enum {
	KQ_DIAG_W_MAGIC = 0,
	KQ_DIAG_W_VERSION = 1,
	KQ_DIAG_W_BOOTS = 2,       /* resets since the image was created */
	KQ_DIAG_W_INIT_STATUS = 3, /* ka_agent_init() result (kp_status_t) */
	KQ_DIAG_W_STACK_SIZE = 4,  /* bytes reserved for the stack */
	KQ_DIAG_W_STACK_HWM = 5,   /* deepest stack use seen, bytes */
	KQ_DIAG_W_HEAP_SIZE = 6,   /* mbedTLS heap handed to the allocator */
	KQ_DIAG_W_HEAP_HWM = 7,    /* highest heap byte ever allocated */
	KQ_DIAG_W_STATIC_RAM = 8,  /* .data + .bss bytes */
	KQ_DIAG_W_RX_BYTES = 9,    /* bytes received on UART0 this boot */
	KQ_DIAG_W_RX_DROPPED = 10, /* bytes lost: ring full or overrun */
	KQ_DIAG_W_TX_BYTES = 11,
	KQ_DIAG_W_TX_DROPPED = 12, /* bytes not sent: transmitter stuck */
	KQ_DIAG_W_WRITES = 13,     /* emulated storage writes this boot */
	KQ_DIAG_W_UPTIME_MS = 14,
	KQ_DIAG_W_FAULTS = 15,     /* hard faults (the board then resets) */
	KQ_DIAG_W_FAULT_PC = 16,
	KQ_DIAG_W_AGENT_SIZE = 17, /* sizeof(ka_agent_t) */
	KQ_DIAG_WORDS = 18
};

#endif
