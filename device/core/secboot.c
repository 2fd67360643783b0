#include <string.h>

#include "device/core/secboot.h"
#include "device/hal/hal.h"
#include "protocol/le.h"

#define ERASED 0xFFFFFFFFu

static kp_status_t read_words(uint32_t base, uint32_t *w, size_t n)
{
	ka_hal_otp_geom_t g;

	if (ka_hal_otp_geometry(&g) != KA_HAL_OK ||
	    g.words < KA_REC_OTP_WORDS)
		return KP_ST_STORAGE;
	if (ka_hal_otp_read(base, w, n) != KA_HAL_OK)
		return KP_ST_STORAGE;
	return KP_ST_OK;
}

/* The slot's words for a hash: 8 data words and the check word. */
static void slot_words(uint32_t w[KA_REC_SECBOOT_WORDS],
		       const uint8_t hash[32])
{
	for (size_t i = 0; i < 8; i++)
		w[i] = kp_get_le32(hash + 4u * i);
	w[8] = ka_record_check(KA_REC_SECBOOT_MAGIC, w, 8);
}

kp_status_t ka_sb_keyhash_read(uint8_t hash[32], bool *present)
{
	uint32_t w[KA_REC_SECBOOT_WORDS];
	kp_status_t r;

	*present = false;
	r = read_words(KA_REC_SECBOOT_BASE, w, KA_REC_SECBOOT_WORDS);
	if (r != KP_ST_OK)
		goto out;
	switch (ka_record_classify(KA_REC_SECBOOT_MAGIC, w,
				   KA_REC_SECBOOT_WORDS)) {
	case KA_SLOT_FREE:
		r = KP_ST_OK;
		break;
	case KA_SLOT_USED:
		for (size_t i = 0; i < 8; i++)
			kp_put_le32(hash + 4u * i, w[i]);
		*present = true;
		r = KP_ST_OK;
		break;
	case KA_SLOT_BURNT:
	default:
		r = KP_ST_INTEGRITY;
		break;
	}
out:
	return r;
}

kp_status_t ka_sb_keyhash_write(const uint8_t hash[32])
{
	uint32_t want[KA_REC_SECBOOT_WORDS], cur[KA_REC_SECBOOT_WORDS];
	kp_status_t r;

	slot_words(want, hash);
	if (want[8] == ERASED) {
		r = KP_ST_BAD_OBJECT;
		goto out;
	}
	r = read_words(KA_REC_SECBOOT_BASE, cur, KA_REC_SECBOOT_WORDS);
	if (r != KP_ST_OK)
		goto out;
	if (ka_record_classify(KA_REC_SECBOOT_MAGIC, cur,
			       KA_REC_SECBOOT_WORDS) == KA_SLOT_USED) {
		r = memcmp(cur, want, sizeof(want)) == 0 ? KP_ST_OK
							 : KP_ST_BAD_STATE;
		goto out;
	}
	/* free, or left incomplete by a power cut: every programmed word
	 * must already hold what we want; a programmed check word that is
	 * not valid means the slot was tampered with */
	if (cur[8] != ERASED) {
		r = KP_ST_INTEGRITY;
		goto out;
	}
	for (size_t i = 0; i < 8; i++) {
		if (cur[i] != ERASED && cur[i] != want[i]) {
			r = KP_ST_INTEGRITY;
			goto out;
		}
	}
	/* data words first, check word last */
	for (size_t i = 0; i < KA_REC_SECBOOT_WORDS; i++) {
		if (cur[i] == want[i] || want[i] == ERASED)
			continue;
		if (ka_hal_otp_program(KA_REC_SECBOOT_BASE + (uint32_t)i,
				       want[i]) != KA_HAL_OK) {
			r = KP_ST_STORAGE;
			goto out;
		}
	}
	r = read_words(KA_REC_SECBOOT_BASE, cur, KA_REC_SECBOOT_WORDS);
	if (r != KP_ST_OK)
		goto out;
	if (memcmp(cur, want, sizeof(want)) != 0)
		r = KP_ST_STORAGE;
out:
	return r;
}

/* Programmed (0) bits of a word. */
static uint32_t zero_bits(uint32_t w)
{
	uint32_t n = 0;

	for (w = ~w; w != 0; w &= w - 1u)
		n++;
	return n;
}

/* Counter value and the first word after the highest non-erased one. */
static kp_status_t counter_scan(uint32_t *value, uint32_t *next)
{
	uint32_t w[KA_REC_ROLLBACK_WORDS];
	kp_status_t r;

	*value = 0;
	*next = 0;
	r = read_words(KA_REC_ROLLBACK_BASE, w, KA_REC_ROLLBACK_WORDS);
	if (r != KP_ST_OK)
		return r;
	for (uint32_t i = 0; i < KA_REC_ROLLBACK_WORDS; i++) {
		*value += zero_bits(w[i]);
		if (w[i] != ERASED)
			*next = i + 1u;
	}
	return KP_ST_OK;
}

kp_status_t ka_sb_counter_read(uint32_t *value)
{
	uint32_t next;

	return counter_scan(value, &next);
}

kp_status_t ka_sb_counter_advance(uint32_t to)
{
	uint32_t value, next, need, v;
	ka_hal_status_t h;
	kp_status_t r;

	if (to > KA_SB_COUNTER_MAX) {
		r = KP_ST_BAD_OBJECT;
		goto out;
	}
	r = counter_scan(&value, &next);
	if (r != KP_ST_OK || value >= to)
		goto out;
	need = to - value;
	if (need > (KA_REC_ROLLBACK_WORDS - next) * 32u) {
		r = KP_ST_EXHAUSTED;
		goto out;
	}
	/* ascending: whole words to 0, the last one's low bits */
	for (uint32_t i = next; need > 0; i++) {
		if (i >= KA_REC_ROLLBACK_WORDS) {
			r = KP_ST_EXHAUSTED;
			goto out;
		}
		v = need >= 32u ? 0u : ERASED << need;
		h = ka_hal_otp_program(KA_REC_ROLLBACK_BASE + i, v);
		if (h == KA_HAL_ERR_PROGRAMMED)
			continue; /* spent by an interrupted program: skip */
		if (h != KA_HAL_OK) {
			r = KP_ST_STORAGE;
			goto out;
		}
		need -= need >= 32u ? 32u : need;
	}
	r = counter_scan(&value, &next);
	if (r == KP_ST_OK && value < to)
		r = KP_ST_STORAGE;
out:
	return r;
}
