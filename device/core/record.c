#include <string.h>

#include "mbedtls/platform_util.h"
#include "mbedtls/sha256.h"

#include "device/core/record.h"
#include "device/hal/hal.h"
#include "protocol/crc32c.h"
#include "protocol/le.h"
#include "protocol/msg.h"

#define ERASED 0xFFFFFFFFu
#define CHUNK 64u

uint32_t ka_record_check(uint32_t magic, const uint32_t *words, size_t n)
{
	uint32_t crc = 0;
	uint8_t b[4];

	for (size_t i = 0; i < n; i++) {
		kp_put_le32(b, words[i]);
		crc = kp_crc32c(crc, b, sizeof(b));
	}
	return crc ^ magic;
}

ka_slot_state_t ka_record_classify(uint32_t magic, const uint32_t *words,
				   size_t n)
{
	bool erased = true;

	for (size_t i = 0; i < n; i++)
		if (words[i] != ERASED)
			erased = false;
	if (erased)
		return KA_SLOT_FREE;
	/* an erased check word is never valid: a slot whose data happened
	 * to give an all-ones check word is refused at write time */
	if (words[n - 1] != ERASED &&
	    ka_record_check(magic, words, n - 1) == words[n - 1])
		return KA_SLOT_USED;
	return KA_SLOT_BURNT;
}

static void words_from_bytes(uint32_t *w, const uint8_t *b, size_t nwords)
{
	for (size_t i = 0; i < nwords; i++)
		w[i] = kp_get_le32(b + 4u * i);
}

static void bytes_from_words(uint8_t *b, const uint32_t *w, size_t nwords)
{
	for (size_t i = 0; i < nwords; i++)
		kp_put_le32(b + 4u * i, w[i]);
}

static kp_status_t flash_geom(ka_hal_flash_geom_t *g, uint8_t *nsec)
{
	if (ka_hal_flash_geometry(g) != KA_HAL_OK || g->sectors == 0 ||
	    g->sector_size == 0 || g->prog_align == 0 ||
	    g->prog_align > CHUNK || CHUNK % g->prog_align != 0)
		return KP_ST_STORAGE;
	*nsec = g->sectors >= KA_REC_ID_SECTORS ? (uint8_t)KA_REC_ID_SECTORS
						: 1u;
	return KP_ST_OK;
}

/* SHA-256 of len bytes at the start of a flash sector. */
static kp_status_t flash_digest(uint32_t base, size_t len, uint8_t out[32])
{
	mbedtls_sha256_context sha;
	uint8_t buf[CHUNK];
	kp_status_t r = KP_ST_STORAGE;

	mbedtls_sha256_init(&sha);
	if (mbedtls_sha256_starts(&sha, 0) != 0)
		goto out;
	for (size_t off = 0; off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? len - off : CHUNK;

		if (ka_hal_flash_read(base + (uint32_t)off, buf, n) !=
			    KA_HAL_OK ||
		    mbedtls_sha256_update(&sha, buf, n) != 0)
			goto out;
	}
	if (mbedtls_sha256_finish(&sha, out) != 0)
		goto out;
	r = KP_ST_OK;
out:
	mbedtls_sha256_free(&sha);
	return r;
}

static kp_status_t scan_locks(ka_store_t *st)
{
	ka_hal_flash_geom_t g;
	uint8_t nsec;
	bool all = true, b;
	kp_status_t r;

	st->lock = 0;
	for (uint32_t i = 0; i < KA_REC_SECBOOT_BLOCK0 + KA_REC_SECBOOT_BLOCKS;
	     i++) {
		if (i >= KA_REC_ID_BLOCKS && i < KA_REC_SECBOOT_BLOCK0)
			continue;
		if (ka_hal_otp_block_locked(i, &b) != KA_HAL_OK)
			return KP_ST_STORAGE;
		all = all && b;
	}
	if (all)
		st->lock |= KP_LOCK_OTP;
	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	all = true;
	for (uint32_t i = 0; i < nsec; i++) {
		if (ka_hal_flash_protected(i, &b) != KA_HAL_OK)
			return KP_ST_STORAGE;
		all = all && b;
	}
	if (all)
		st->lock |= KP_LOCK_FLASH;
	if (ka_hal_debug_locked(&b) != KA_HAL_OK)
		return KP_ST_STORAGE;
	if (b)
		st->lock |= KP_LOCK_DEBUG;
	return KP_ST_OK;
}

/* The newest valid commit: check the blob it vouches for. */
static kp_status_t scan_integrity(ka_store_t *st)
{
	ka_hal_flash_geom_t g;
	uint8_t nsec, d[32];
	kp_status_t r;

	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	if (st->commit_sector >= nsec || st->blob_len > g.sector_size ||
	    st->blob_len < KP_BLOB_HDR_LEN) {
		st->integrity = KP_ST_INTEGRITY;
		return KP_ST_OK;
	}
	r = flash_digest(st->commit_sector * g.sector_size, st->blob_len, d);
	if (r != KP_ST_OK)
		return r;
	if (memcmp(d, st->digest, sizeof(d)) != 0)
		st->integrity = KP_ST_INTEGRITY;
	return KP_ST_OK;
}

kp_status_t ka_record_scan(ka_store_t *st)
{
	ka_hal_otp_geom_t og;
	uint32_t w[KA_REC_COMMIT_WORDS];
	kp_status_t r;
	int i;

	memset(st, 0, sizeof(*st));
	st->key_slot = st->key_next = -1;
	st->commit_slot = st->commit_next = -1;
	st->integrity = KP_ST_OK;
	if (ka_hal_otp_geometry(&og) != KA_HAL_OK ||
	    og.words < KA_REC_OTP_WORDS ||
	    og.words_per_block != KA_REC_BLOCK_WORDS)
		return KP_ST_STORAGE;

	if (ka_hal_otp_read(KA_REC_HEADER_WORD, w, 1) != KA_HAL_OK)
		return KP_ST_STORAGE;
	st->header_ok = w[0] == ERASED || w[0] == KA_REC_HEADER_V1;
	if (!st->header_ok)
		st->integrity = KP_ST_INTEGRITY;
	if (ka_hal_otp_read(KA_REC_LOCK_WORD, w, 1) != KA_HAL_OK)
		return KP_ST_STORAGE;
	st->lock_begun = w[0] != ERASED;

	for (i = 0; i < (int)KA_REC_KEY_SLOTS; i++) {
		if (ka_hal_otp_read(KA_REC_KEY_BASE +
					    (uint32_t)i * KA_REC_KEY_WORDS,
				    w, KA_REC_KEY_WORDS) != KA_HAL_OK)
			return KP_ST_STORAGE;
		st->key_state[i] = (uint8_t)ka_record_classify(
			KA_REC_KEY_MAGIC, w, KA_REC_KEY_WORDS);
		/* a check word is programmed last: a power cut leaves it
		 * erased. Programmed but wrong means the slot changed after
		 * it was written (a flipped bit): report, never skip it */
		if (st->key_state[i] == KA_SLOT_BURNT &&
		    w[KA_REC_KEY_WORDS - 1] != ERASED)
			st->integrity = KP_ST_INTEGRITY;
		if (st->key_state[i] == KA_SLOT_USED)
			st->key_slot = (int8_t)i;
	}
	/* free slots count only above the highest non-free one */
	for (i = (int)KA_REC_KEY_SLOTS - 1; i >= 0; i--) {
		if (st->key_state[i] != KA_SLOT_FREE)
			break;
		st->key_next = (int8_t)i;
		st->key_free++;
	}

	for (i = 0; i < (int)KA_REC_COMMIT_SLOTS; i++) {
		if (ka_hal_otp_read(KA_REC_COMMIT_BASE +
					    (uint32_t)i * KA_REC_COMMIT_WORDS,
				    w, KA_REC_COMMIT_WORDS) != KA_HAL_OK)
			return KP_ST_STORAGE;
		st->commit_state[i] = (uint8_t)ka_record_classify(
			KA_REC_COMMIT_MAGIC, w, KA_REC_COMMIT_WORDS);
		if (st->commit_state[i] == KA_SLOT_BURNT &&
		    w[KA_REC_COMMIT_WORDS - 1] != ERASED)
			st->integrity = KP_ST_INTEGRITY; /* as above */
		if (st->commit_state[i] == KA_SLOT_USED) {
			st->commit_slot = (int8_t)i;
			bytes_from_words(st->digest, w, 8);
			st->commit_key = (uint8_t)(w[8] >> 24);
			st->commit_sector = (uint8_t)(w[8] >> 16);
			st->blob_len = (uint16_t)w[8];
		}
	}
	for (i = (int)KA_REC_COMMIT_SLOTS - 1; i >= 0; i--) {
		if (st->commit_state[i] != KA_SLOT_FREE)
			break;
		st->commit_next = (int8_t)i;
	}
	if (st->commit_slot < 0)
		memset(st->digest, 0, sizeof(st->digest));

	st->committed = st->key_slot >= 0 && st->commit_slot >= 0 &&
			st->commit_key == (uint8_t)st->key_slot;
	if (st->committed) {
		r = scan_integrity(st);
		if (r != KP_ST_OK)
			return r;
	}
	return scan_locks(st);
}

/* Program words[0..n) at base, skipping words that are already at their
 * erased value (programming them would change nothing and would spend the
 * word's single program operation). */
static kp_status_t program_words(uint32_t base, const uint32_t *words,
				 size_t n)
{
	uint32_t back;

	for (size_t i = 0; i < n; i++) {
		if (words[i] == ERASED)
			continue;
		if (ka_hal_otp_program(base + (uint32_t)i, words[i]) !=
		    KA_HAL_OK)
			return KP_ST_STORAGE;
	}
	for (size_t i = 0; i < n; i++) {
		if (ka_hal_otp_read(base + (uint32_t)i, &back, 1) !=
			    KA_HAL_OK ||
		    back != words[i])
			return KP_ST_STORAGE;
	}
	return KP_ST_OK;
}

static kp_status_t ensure_header(const ka_store_t *st)
{
	uint32_t h;

	if (!st->header_ok)
		return KP_ST_STORAGE;
	if (ka_hal_otp_read(KA_REC_HEADER_WORD, &h, 1) != KA_HAL_OK)
		return KP_ST_STORAGE;
	if (h == KA_REC_HEADER_V1)
		return KP_ST_OK;
	return program_words(KA_REC_HEADER_WORD, &(const uint32_t){KA_REC_HEADER_V1}, 1);
}

bool ka_record_key_storable(const uint8_t d[32])
{
	uint32_t w[8];
	bool ok;

	words_from_bytes(w, d, 8);
	ok = ka_record_check(KA_REC_KEY_MAGIC, w, 8) != ERASED;
	mbedtls_platform_zeroize(w, sizeof(w));
	return ok;
}

kp_status_t ka_record_key_store(ka_store_t *st, const uint8_t d[32],
				uint8_t *slot)
{
	uint32_t w[KA_REC_KEY_WORDS];
	kp_status_t r, r2;
	int8_t s;

	if (st->key_next < 0)
		return KP_ST_EXHAUSTED;
	if (!ka_record_key_storable(d))
		return KP_ST_BAD_OBJECT;
	s = st->key_next;
	r = ensure_header(st);
	if (r != KP_ST_OK)
		goto out;
	words_from_bytes(w, d, 8);
	w[8] = ka_record_check(KA_REC_KEY_MAGIC, w, 8);
	/* data first, check word last: a cut in between leaves a burnt
	 * slot, never a valid slot holding a partial key */
	r = program_words(KA_REC_KEY_BASE + (uint32_t)s * KA_REC_KEY_WORDS, w,
			  8);
	if (r != KP_ST_OK)
		goto out;
	r = program_words(KA_REC_KEY_BASE + (uint32_t)s * KA_REC_KEY_WORDS + 8,
			  &w[8], 1);
	if (r != KP_ST_OK)
		goto out;
	*slot = (uint8_t)s;
out:
	mbedtls_platform_zeroize(w, sizeof(w));
	r2 = ka_record_scan(st);
	if (r == KP_ST_OK)
		r = r2;
	if (r == KP_ST_OK && st->key_slot != s)
		r = KP_ST_STORAGE;
	return r;
}

kp_status_t ka_record_key_load(const ka_store_t *st, uint8_t slot,
			       uint8_t d[32])
{
	uint32_t w[KA_REC_KEY_WORDS];
	kp_status_t r = KP_ST_NO_KEY;

	if (slot >= KA_REC_KEY_SLOTS || st->key_state[slot] != KA_SLOT_USED)
		return KP_ST_NO_KEY;
	if (ka_hal_otp_read(KA_REC_KEY_BASE + slot * KA_REC_KEY_WORDS, w,
			    KA_REC_KEY_WORDS) != KA_HAL_OK) {
		r = KP_ST_STORAGE;
		goto out;
	}
	/* re-check: OTP may have been tampered with since the scan */
	if (ka_record_classify(KA_REC_KEY_MAGIC, w, KA_REC_KEY_WORDS) !=
	    KA_SLOT_USED) {
		r = KP_ST_INTEGRITY;
		goto out;
	}
	bytes_from_words(d, w, 8);
	r = KP_ST_OK;
out:
	mbedtls_platform_zeroize(w, sizeof(w));
	return r;
}

kp_status_t ka_record_blob_write(uint8_t sector, uint8_t *buf, size_t len,
				 size_t cap)
{
	ka_hal_flash_geom_t g;
	uint8_t nsec, chunk[CHUNK];
	size_t padded;
	uint32_t base;
	kp_status_t r;

	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	if (sector >= nsec || len == 0 || len > g.sector_size || len > cap)
		return KP_ST_BAD_OBJECT;
	padded = (len + g.prog_align - 1u) / g.prog_align * g.prog_align;
	if (padded > cap || padded > g.sector_size)
		return KP_ST_BAD_OBJECT;
	memset(buf + len, 0xFF, padded - len);
	base = sector * g.sector_size;
	if (ka_hal_flash_erase(sector) != KA_HAL_OK ||
	    ka_hal_flash_program(base, buf, padded) != KA_HAL_OK)
		return KP_ST_STORAGE;
	for (size_t off = 0; off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? len - off : CHUNK;

		if (ka_hal_flash_read(base + (uint32_t)off, chunk, n) !=
			    KA_HAL_OK ||
		    memcmp(chunk, buf + off, n) != 0)
			return KP_ST_STORAGE;
	}
	return KP_ST_OK;
}

kp_status_t ka_record_blob_read(const ka_store_t *st, uint32_t off,
				uint8_t *out, size_t n)
{
	ka_hal_flash_geom_t g;
	uint8_t nsec;
	kp_status_t r;

	if (st->commit_slot < 0)
		return KP_ST_BAD_STATE;
	if (off > st->blob_len || n > st->blob_len - off)
		return KP_ST_BAD_OBJECT;
	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	if (st->commit_sector >= nsec || st->blob_len > g.sector_size)
		return KP_ST_INTEGRITY;
	if (n == 0)
		return KP_ST_OK;
	if (ka_hal_flash_read(st->commit_sector * g.sector_size + off, out,
			      n) != KA_HAL_OK)
		return KP_ST_STORAGE;
	return KP_ST_OK;
}

/* The sector a new blob goes to: never the one the newest valid commit
 * slot vouches for. */
static kp_status_t next_sector(const ka_store_t *st, uint8_t nsec,
			       uint8_t *sector)
{
	*sector = 0;
	if (st->commit_slot < 0)
		return KP_ST_OK;
	if (nsec > 1) {
		*sector = (uint8_t)((st->commit_sector + 1u) % nsec);
		return KP_ST_OK;
	}
	/* one sector: only a stale identity (another key's) may go */
	return st->committed ? KP_ST_BAD_STATE : KP_ST_OK;
}

kp_status_t ka_record_blob_begin(const ka_store_t *st, ka_blob_writer_t *w)
{
	ka_hal_flash_geom_t g;
	uint8_t nsec, sector;
	kp_status_t r;

	memset(w, 0, sizeof(*w));
	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	r = next_sector(st, nsec, &sector);
	if (r != KP_ST_OK)
		return r;
	w->sector = sector;
	w->align = (uint16_t)g.prog_align;
	w->cap = g.sector_size < 0xFFFFu ? g.sector_size : 0xFFFFu;
	if (ka_hal_flash_erase(sector) != KA_HAL_OK)
		return KP_ST_STORAGE;
	return KP_ST_OK;
}

static kp_status_t writer_program(ka_blob_writer_t *w, const uint8_t *p,
				  size_t n)
{
	ka_hal_flash_geom_t g;
	uint8_t nsec;
	uint32_t off = w->len - w->tail_len; /* aligned */
	kp_status_t r;

	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	if (ka_hal_flash_program(w->sector * g.sector_size + off, p, n) !=
	    KA_HAL_OK)
		return KP_ST_STORAGE;
	return KP_ST_OK;
}

kp_status_t ka_record_blob_append(ka_blob_writer_t *w, const uint8_t *p,
				  size_t n)
{
	kp_status_t r = KP_ST_OK;

	if (w->align == 0 || w->align > KA_REC_ALIGN_MAX)
		return KP_ST_BAD_STATE;
	if (n > w->cap - w->len)
		return KP_ST_BAD_OBJECT;
	while (n > 0) {
		size_t k;

		if (w->tail_len == 0 && n >= w->align) {
			/* whole units straight from the caller's buffer */
			k = n - n % w->align;
			r = writer_program(w, p, k);
			if (r != KP_ST_OK)
				return r;
			w->len += (uint32_t)k;
			p += k;
			n -= k;
			continue;
		}
		k = (size_t)(w->align - w->tail_len);
		if (k > n)
			k = n;
		memcpy(w->tail + w->tail_len, p, k);
		w->tail_len = (uint8_t)(w->tail_len + k);
		w->len += (uint32_t)k;
		p += k;
		n -= k;
		if (w->tail_len == w->align) {
			r = writer_program(w, w->tail, w->align);
			if (r != KP_ST_OK)
				return r;
			w->tail_len = 0;
		}
	}
	return KP_ST_OK;
}

kp_status_t ka_record_blob_end(ka_blob_writer_t *w)
{
	kp_status_t r;

	if (w->tail_len == 0)
		return KP_ST_OK;
	memset(w->tail + w->tail_len, 0xFF, (size_t)(w->align - w->tail_len));
	r = writer_program(w, w->tail, w->align);
	if (r == KP_ST_OK)
		w->tail_len = 0;
	return r;
}

kp_status_t ka_record_sector_read(uint8_t sector, uint32_t off, uint8_t *out,
				  size_t n)
{
	ka_hal_flash_geom_t g;
	uint8_t nsec;
	kp_status_t r;

	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	if (sector >= nsec || off > g.sector_size || n > g.sector_size - off)
		return KP_ST_BAD_OBJECT;
	if (n > 0 && ka_hal_flash_read(sector * g.sector_size + off, out, n) !=
			     KA_HAL_OK)
		return KP_ST_STORAGE;
	return KP_ST_OK;
}

kp_status_t ka_record_sector_digest(uint8_t sector, size_t len,
				    uint8_t out[32])
{
	ka_hal_flash_geom_t g;
	uint8_t nsec;
	kp_status_t r;

	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	if (sector >= nsec || len > g.sector_size)
		return KP_ST_BAD_OBJECT;
	return flash_digest(sector * g.sector_size, len, out);
}

kp_status_t ka_record_commit_sector(ka_store_t *st, uint8_t sector,
				    size_t len, const uint8_t digest[32])
{
	ka_hal_flash_geom_t g;
	uint32_t w[KA_REC_COMMIT_WORDS], base;
	uint8_t nsec;
	int8_t s, key;
	kp_status_t r, r2;

	if (st->key_slot < 0)
		return KP_ST_NO_KEY;
	if (st->commit_next < 0)
		return KP_ST_EXHAUSTED;
	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	if (sector >= nsec || len > g.sector_size || len > 0xFFFFu)
		return KP_ST_BAD_OBJECT;
	s = st->commit_next;
	key = st->key_slot;
	words_from_bytes(w, digest, 8);
	w[8] = ((uint32_t)(uint8_t)key << 24) | ((uint32_t)sector << 16) |
	       (uint32_t)len;
	w[9] = ka_record_check(KA_REC_COMMIT_MAGIC, w, 9);
	if (w[9] == ERASED)
		return KP_ST_BAD_OBJECT; /* 2^-32: change any object */
	r = ensure_header(st);
	if (r != KP_ST_OK)
		goto out;
	base = KA_REC_COMMIT_BASE + (uint32_t)s * KA_REC_COMMIT_WORDS;
	r = program_words(base, w, 9);
	if (r != KP_ST_OK)
		goto out;
	r = program_words(base + 9, &w[9], 1); /* check word last */
out:
	r2 = ka_record_scan(st);
	if (r == KP_ST_OK)
		r = r2;
	if (r == KP_ST_OK && (!st->committed || st->commit_slot != s ||
			      st->integrity != KP_ST_OK))
		r = KP_ST_STORAGE;
	return r;
}

kp_status_t ka_record_commit(ka_store_t *st, uint8_t *buf, size_t len,
			     size_t cap, const uint8_t digest[32])
{
	ka_hal_flash_geom_t g;
	uint8_t nsec, sector = 0;
	kp_status_t r;

	if (st->key_slot < 0)
		return KP_ST_NO_KEY;
	if (st->commit_next < 0)
		return KP_ST_EXHAUSTED;
	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	if (len > g.sector_size || len > 0xFFFFu)
		return KP_ST_BAD_OBJECT;
	/* never overwrite the blob the newest valid commit vouches for */
	if (st->commit_slot >= 0 && nsec > 1)
		sector = (uint8_t)((st->commit_sector + 1u) % nsec);
	r = ensure_header(st);
	if (r != KP_ST_OK)
		return r;
	r = ka_record_blob_write(sector, buf, len, cap);
	if (r != KP_ST_OK) {
		kp_status_t r2 = ka_record_scan(st);

		return r2 == KP_ST_OK ? r : r2;
	}
	return ka_record_commit_sector(st, sector, len, digest);
}

kp_status_t ka_record_lock(ka_store_t *st, uint8_t level)
{
	ka_hal_flash_geom_t g;
	uint8_t nsec;
	bool b;
	kp_status_t r;

	if (level < 1 || level > 2)
		return KP_ST_BAD_MESSAGE;
	r = flash_geom(&g, &nsec);
	if (r != KP_ST_OK)
		return r;
	if (!st->lock_begun) {
		r = program_words(KA_REC_LOCK_WORD,
				  &(const uint32_t){KA_REC_LOCK_MAGIC}, 1);
		if (r != KP_ST_OK)
			goto out;
	}
	for (uint32_t i = 0; i < KA_REC_SECBOOT_BLOCK0 + KA_REC_SECBOOT_BLOCKS;
	     i++) {
		if (i >= KA_REC_ID_BLOCKS && i < KA_REC_SECBOOT_BLOCK0)
			continue;
		if (ka_hal_otp_block_locked(i, &b) != KA_HAL_OK) {
			r = KP_ST_STORAGE;
			goto out;
		}
		if (!b && ka_hal_otp_lock_block(i) != KA_HAL_OK) {
			r = KP_ST_STORAGE;
			goto out;
		}
	}
	for (uint32_t i = 0; i < nsec; i++) {
		if (ka_hal_flash_protected(i, &b) != KA_HAL_OK) {
			r = KP_ST_STORAGE;
			goto out;
		}
		if (!b && ka_hal_flash_protect(i) != KA_HAL_OK) {
			r = KP_ST_STORAGE;
			goto out;
		}
	}
	if (level >= 2) {
		if (ka_hal_debug_locked(&b) != KA_HAL_OK ||
		    (!b && ka_hal_debug_lock() != KA_HAL_OK)) {
			r = KP_ST_STORAGE;
			goto out;
		}
	}
	r = KP_ST_OK;
out:
	{
		kp_status_t r2 = ka_record_scan(st);

		if (r == KP_ST_OK)
			r = r2;
	}
	return r;
}
