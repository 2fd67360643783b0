/*
 * NUCLEO-F429ZI TRNG: the RNG peripheral (RM0090 24), clocked at 48 MHz
 * from PLLQ (board.c). Per 24.3.1/24.4:
 *  - the first word after enabling RNGEN is discarded (kept only as the
 *    reference of the continuous test);
 *  - every word is compared with the previous one, and two equal
 *    consecutive words fail the request (FIPS 140-2 continuous test);
 *  - a seed error (SECS) is recovered by clearing SEIS and re-enabling
 *    the generator (then the first word is discarded again), at most
 *    three times per request; a clock error (CECS: RNG clock too slow) is
 *    reported as KA_HAL_ERR_IO.
 */
#include <string.h>

#include "device/hal/hal.h"
#include "device/ports/stm32f4/board.h"
#include "device/ports/stm32f4/stm32f4_regs.h"

/* A word takes 40 RNG clock periods (< 1 us); 10 ms means broken. */
#define ST32_RNG_TIMEOUT_MS 10u
#define ST32_RNG_MAX_RESTARTS 3u

static bool st32_rng_primed; /* st32_rng_prev holds a discarded word */
static uint32_t st32_rng_prev;

static void st32_rng_restart(void)
{
	ST32_RNG_CR &= ~ST32_RNG_CR_RNGEN;
	ST32_RNG_SR = 0; /* SEIS, CEIS: rc_w0; the rest is read-only */
	ST32_RNG_CR |= ST32_RNG_CR_RNGEN;
	st32_rng_primed = false;
}

static ka_hal_status_t st32_rng_raw(uint32_t *out)
{
	uint32_t start = ka_hal_tick_ms();

	for (;;) {
		uint32_t sr = ST32_RNG_SR;

		if ((sr & (ST32_RNG_SR_CECS | ST32_RNG_SR_SECS)) != 0)
			return KA_HAL_ERR_IO;
		if ((sr & ST32_RNG_SR_DRDY) != 0) {
			*out = ST32_RNG_DR;
			return KA_HAL_OK;
		}
		if (ka_hal_tick_ms() - start > ST32_RNG_TIMEOUT_MS)
			return KA_HAL_ERR_IO;
	}
}

static ka_hal_status_t st32_rng_word(uint32_t *out)
{
	uint32_t restarts = 0;

	for (;;) {
		uint32_t v = 0;
		ka_hal_status_t r = st32_rng_raw(&v);

		if (r != KA_HAL_OK) {
			if ((ST32_RNG_SR & (ST32_RNG_SR_SECS | ST32_RNG_SR_SEIS)) ==
				    0 ||
			    (ST32_RNG_SR & ST32_RNG_SR_CECS) != 0 ||
			    restarts++ >= ST32_RNG_MAX_RESTARTS)
				return KA_HAL_ERR_IO;
			st32_rng_restart();
			continue;
		}
		if (!st32_rng_primed) {
			st32_rng_prev = v; /* discarded: reference only */
			st32_rng_primed = true;
			continue;
		}
		if (v == st32_rng_prev)
			return KA_HAL_ERR_IO; /* stuck generator */
		st32_rng_prev = v;
		*out = v;
		return KA_HAL_OK;
	}
}

bool ka_hal_rng_available(void)
{
	return true;
}

ka_hal_status_t ka_hal_rng(uint8_t *buf, size_t n)
{
	ka_hal_status_t r = KA_HAL_OK;
	size_t done = 0;

	if (buf == NULL && n > 0)
		return KA_HAL_ERR_ARG;
	if ((ST32_RCC_AHB2ENR & ST32_RCC_AHB2ENR_RNGEN) == 0) {
		ST32_RCC_AHB2ENR |= ST32_RCC_AHB2ENR_RNGEN;
		(void)ST32_RCC_AHB2ENR;
	}
	if ((ST32_RNG_CR & ST32_RNG_CR_RNGEN) == 0)
		st32_rng_restart();
	while (done < n && r == KA_HAL_OK) {
		uint32_t w = 0;
		size_t k = n - done < 4u ? n - done : 4u;

		r = st32_rng_word(&w);
		if (r == KA_HAL_OK)
			memcpy(buf + done, &w, k);
		done += k;
		w = 0;
	}
	if (r != KA_HAL_OK)
		memset(buf, 0, n); /* never hand out a partial buffer */
	return r;
}
