/*
 * kiln-app: the test application kiln-boot starts on QEMU mps2-an385.
 * It prints "kiln-app <version> booted" with the version read from its
 * own image header (the 0x200 bytes in front of its vector table, as
 * `kiln image sign --header-size 0x200` wrote them), so a test sees both
 * that the boot jumped and which image it ran, then idles.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "device/hal/hal.h"
#include "device/ports/qemu-mps2/board.h"
#include "protocol/le.h"

#define IMAGE_MAGIC 0x474D494Bu /* "KIMG" */

extern const uint8_t kb_app_header[]; /* app.ld: in front of the body */

void kq_diag_fault(uint32_t pc)
{
	(void)pc;
}

static void say(const char *s)
{
	(void)ka_hal_tx((const uint8_t *)s, strlen(s));
}

static void say_u32(uint32_t v)
{
	char b[11];
	size_t i = sizeof(b) - 1;

	b[i] = '\0';
	do {
		b[--i] = (char)('0' + v % 10u);
		v /= 10u;
	} while (v != 0 && i > 0);
	say(b + i);
}

int main(void)
{
	const uint8_t *hdr = kb_app_header;

	kq_tick_init();
	kq_uart_init();
	say("kiln-app ");
	if (kp_get_le32(hdr) == IMAGE_MAGIC) {
		say_u32(hdr[24]);
		say(".");
		say_u32(hdr[25]);
		say(".");
		say_u32(kp_get_le16(hdr + 26));
	} else {
		say("(no image header)");
	}
	say(" booted\r\n");
	for (;;)
		__asm volatile("wfi");
}
