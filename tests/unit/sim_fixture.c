/*
 * Unit-test support: a fresh simulated image per test (see sim_fixture.h).
 */
#include "tests/unit/sim_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "device/ports/posix/sim_image.h"

char usf_img_path[64];

void usf_open(uint32_t cut_after)
{
	ka_sim_config_t cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path = usf_img_path;
	cfg.quiet = true;
	cfg.cut_after = cut_after;
	cfg.cut_mode = KA_SIM_CUT_FREEZE;
	assert_int_equal(ka_sim_open(&cfg), 0);
}

void usf_reboot(void)
{
	ka_sim_close();
	usf_open(0);
}

void usf_fresh(void)
{
	ka_sim_close();
	unlink(usf_img_path);
	usf_open(0);
}

int usf_setup(const char *tag)
{
	snprintf(usf_img_path, sizeof(usf_img_path),
		 "/tmp/kiln-test-%s-%ld.img", tag, (long)getpid());
	unlink(usf_img_path);
	usf_open(0);
	return 0;
}

int usf_teardown(void)
{
	ka_sim_close();
	unlink(usf_img_path);
	return 0;
}
