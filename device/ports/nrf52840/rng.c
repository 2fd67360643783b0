/*
 * nRF52840-DK TRNG: the RNG peripheral (PS "RNG") with digital error
 * correction (CONFIG.DERCEN, the bias correction: ~120 us per byte
 * instead of ~30 us, output uniformly distributed).
 *
 * The peripheral has no health test of its own; the HAL runs the
 * repetition count test of NIST SP 800-90B 4.4.1 on the bytes it returns:
 * assuming at least 4 bits of min-entropy per corrected byte and a false
 * alarm rate of 2^-20, C = 1 + ceil(20 / 4) = 6 equal bytes in a row fail
 * the request. VALUE is read before EVENTS_VALRDY is cleared, so a value
 * that arrives in between is skipped rather than returned twice.
 */
#include <string.h>

#include "device/hal/hal.h"
#include "device/ports/nrf52840/board.h"
#include "device/ports/nrf52840/nrf52840_regs.h"

#define N52_RNG_TIMEOUT_MS 10u
#define N52_RNG_RCT_CUTOFF 6u

bool ka_hal_rng_available(void)
{
	return true;
}

ka_hal_status_t ka_hal_rng(uint8_t *buf, size_t n)
{
	ka_hal_status_t r = KA_HAL_OK;
	uint32_t run = 0;
	uint8_t last = 0;

	if (buf == NULL && n > 0)
		return KA_HAL_ERR_ARG;
	N52_RNG_CONFIG = N52_RNG_CONFIG_DERCEN;
	N52_RNG_EVENTS_VALRDY = 0;
	N52_RNG_TASKS_START = 1;
	for (size_t i = 0; i < n && r == KA_HAL_OK; i++) {
		uint32_t start = ka_hal_tick_ms();
		uint8_t b;

		while (N52_RNG_EVENTS_VALRDY == 0 && r == KA_HAL_OK) {
			if (ka_hal_tick_ms() - start > N52_RNG_TIMEOUT_MS)
				r = KA_HAL_ERR_IO;
		}
		if (r != KA_HAL_OK)
			break;
		b = (uint8_t)(N52_RNG_VALUE & 0xFFu);
		N52_RNG_EVENTS_VALRDY = 0;
		run = (i > 0 && b == last) ? run + 1u : 1u;
		if (run >= N52_RNG_RCT_CUTOFF)
			r = KA_HAL_ERR_IO;
		last = b;
		buf[i] = b;
	}
	N52_RNG_TASKS_STOP = 1;
	last = 0;
	if (r != KA_HAL_OK)
		memset(buf, 0, n); /* never hand out a partial buffer */
	return r;
}
