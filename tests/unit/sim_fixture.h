/*
 * Unit-test support: a fresh simulated OTP/flash image (the POSIX HAL,
 * device/ports/posix/sim_image.h) per cmocka test, in
 * /tmp/kiln-test-<tag>-<pid>.img, removed again by the teardown.
 */
#ifndef KILN_TESTS_SIM_FIXTURE_H
#define KILN_TESTS_SIM_FIXTURE_H

#include <stdint.h>

/** Path of the current image file (set by usf_setup). */
extern char usf_img_path[64];

/**
 * Open usf_img_path as the HAL's image (created blank if missing), quiet,
 * with a power cut that freezes the image after cut_after writes (0:
 * never). Fails the current cmocka test if it cannot be opened.
 */
void usf_open(uint32_t cut_after);

/** Close the image, then open it again (a reboot). */
void usf_reboot(void);

/** Close the image, delete it, open a blank one. */
void usf_fresh(void);

/** Name a new image for tag, delete any old file, open it. 0. */
int usf_setup(const char *tag);

/** Close the image and delete its file. 0. */
int usf_teardown(void);

#endif
