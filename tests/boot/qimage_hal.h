/*
 * tests/boot: the storage functions of device/hal/hal.h over a QEMU
 * board's image file (the PSRAM file scripts/qemu-board and the boot test
 * hand to QEMU), with the firmware's own emulation (device/ports/
 * qemu-mps2/store.c) compiled natively. This is how the test provisions
 * the secure-boot key hash and reads the anti-rollback counter between
 * boots, with the device code itself (device/core/secboot.c).
 */
#ifndef KILN_TESTS_BOOT_QIMAGE_HAL_H
#define KILN_TESTS_BOOT_QIMAGE_HAL_H

#include <stddef.h>
#include <stdint.h>

#define KT_QIMAGE_SIZE (16u * 1024u * 1024u) /* QEMU's mps2 PSRAM */

/** Create a blank board image file (formatted, 16 MiB); 0 or -1. */
int kt_qimage_create(const char *path, const uint8_t *uid, size_t uid_len);

/** Map an image file and make it the HAL's storage; 0 or -1. */
int kt_qimage_open(const char *path);

/** Unmap it (msync first). */
void kt_qimage_close(void);

#endif
