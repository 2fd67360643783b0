/*
 * kiln first-stage boot: the lines it prints on the console (the HAL
 * transport, i.e. the UART), shared by the board files:
 *
 *   kiln-boot: image 1.2.3 counter 4 verified, booting
 *   kiln-boot: no key hash: factory image 0.9.0 runs unverified
 *   kiln-boot: refused: <reason>          (kb_reason_str(); safe mode)
 */
#ifndef KILN_DEVICE_BOOT_CONSOLE_H
#define KILN_DEVICE_BOOT_CONSOLE_H

#include "device/boot/boot.h"

/** Print the line for an image about to run. */
void kb_console_booting(const kb_image_t *img);

/** Print "kiln-boot: refused: <reason>". */
void kb_console_refused(kb_reason_t r);

#endif
