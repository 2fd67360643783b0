#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "device/boot/console.h"
#include "device/hal/hal.h"

static void puts_raw(const char *s)
{
	(void)ka_hal_tx((const uint8_t *)s, strlen(s));
}

static void put_u32(uint32_t v)
{
	char b[11];
	size_t i = sizeof(b) - 1;

	b[i] = '\0';
	do {
		b[--i] = (char)('0' + v % 10u);
		v /= 10u;
	} while (v != 0 && i > 0);
	puts_raw(b + i);
}

static void put_version(const kb_image_t *img)
{
	put_u32(img->ver_major);
	puts_raw(".");
	put_u32(img->ver_minor);
	puts_raw(".");
	put_u32(img->ver_patch);
}

void kb_console_booting(const kb_image_t *img)
{
	if (img->verified) {
		puts_raw("kiln-boot: image ");
		put_version(img);
		puts_raw(" counter ");
		put_u32(img->counter);
		puts_raw(" verified, booting\r\n");
	} else {
		puts_raw("kiln-boot: no key hash: factory image ");
		put_version(img);
		puts_raw(" runs unverified\r\n");
	}
}

void kb_console_refused(kb_reason_t r)
{
	puts_raw("kiln-boot: refused: ");
	puts_raw(kb_reason_str(r));
	puts_raw("\r\n");
}
