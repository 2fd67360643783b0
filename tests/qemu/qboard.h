/*
 * tests/qemu: run QEMU mps2-an385 boards (scripts/qemu-board) from a test,
 * power-cut them (SIGKILL) and read the firmware's diagnostics block from
 * their image files.
 *
 * Configuration comes from the environment, as scripts/test sets it:
 *   KILN_QEMU_ELF    the firmware (kiln-agent-qemu.elf from build-qemu/)
 *   KILN_QEMU_BOARD  scripts/qemu-board
 * (defaults from the test's arguments: the source tree's script and
 * build-qemu/ firmware).
 * kq_setup() returns 77 (meson's "skipped") with a message when the ELF
 * or qemu-system-arm is missing.
 */
#ifndef KILN_TESTS_QEMU_QBOARD_H
#define KILN_TESTS_QEMU_QBOARD_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "device/ports/qemu-mps2/diag.h"

typedef struct {
	pid_t pid; /* QEMU (scripts/qemu-board execs it); 0: not running */
	char image[PATH_MAX];
	char sock[108];
	char spec[120]; /* "unix:" + sock, for ks_link_open */
	char log[PATH_MAX];
} kq_board_t;

/**
 * Find the firmware ($KILN_QEMU_ELF, else default_elf) and the launcher
 * ($KILN_QEMU_BOARD, else board_script); 0, or 77 (skip) / 1 (error).
 */
int kq_setup(const char *board_script, const char *default_elf);

/** The firmware path kq_setup() found. */
const char *kq_elf(void);

/**
 * Start a board on image (created blank by qemu-board if missing, with
 * uid_hex if not NULL) with UART0 on the unix socket sock; QEMU's output
 * goes to log. Waits until the socket accepts connections. 0 or -1.
 */
int kq_board_start(kq_board_t *b, const char *image, const char *sock,
		   const char *uid_hex, const char *log);

/** SIGKILL the board (a power cut), reap it, remove its stale socket. */
void kq_board_kill(kq_board_t *b);

/** Read the diagnostics block of an image; 0 or -1 (no valid block). */
int kq_diag_read(const char *image, uint32_t d[KQ_DIAG_WORDS]);

/** Milliseconds of a monotonic clock. */
double kq_now_ms(void);

#endif
