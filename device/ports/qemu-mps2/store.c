/*
 * qemu-mps2 port: OTP / flash / lock emulation over a memory image (see
 * store.h). Freestanding: no libc beyond what the compiler provides.
 *
 * Ordering: each emulated write ends with s->barrier (a DSB on the
 * board), so the stores of one HAL call are in the image before it
 * returns. 32-bit fields are written with one aligned 32-bit store (one
 * host store under QEMU), so a kill cannot split a value. An OTP program
 * stores the value first and the "programmed" marker second: a kill in
 * between leaves a word that reads programmed (its value differs from
 * erased), which the core treats like any half-finished slot (burnt),
 * never one that could be programmed a second time with other bits.
 */
#include "device/ports/qemu-mps2/store.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the image is little-endian; this code stores 32-bit fields natively"
#endif

#define ERASED 0xFFFFFFFFu
#define FLASH_SIZE ((uint32_t)KA_SIM_SECTOR_SIZE * KA_SIM_SECTORS)

_Static_assert(KA_SIM_OFF_OTP % 8u == 0 && KA_SIM_OFF_FLASH % 4u == 0 &&
		       KA_SIM_OFF_OTP_LOCK % 4u == 0 &&
		       KA_SIM_OFF_FLASH_WP % 4u == 0 &&
		       KA_SIM_OFF_DEBUG % 4u == 0,
	       "32-bit fields of the image are aligned");

static uint32_t rd32(const kq_store_t *s, uint32_t off)
{
	return *(const volatile uint32_t *)(const volatile void *)(s->img + off);
}

static void wr32(kq_store_t *s, uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(volatile void *)(s->img + off) = v;
}

/* One emulated write is complete. */
static ka_hal_status_t done(kq_store_t *s)
{
	if (s->barrier != NULL)
		s->barrier();
	s->writes++;
	return KA_HAL_OK;
}

static bool header_ok(const volatile uint8_t *img)
{
	static const char magic[8] = KA_SIM_MAGIC;
	const kq_store_t t = {.img = (volatile uint8_t *)img};
	uint32_t ul;

	for (size_t i = 0; i < sizeof(magic); i++)
		if (img[KA_SIM_OFF_MAGIC + i] != (uint8_t)magic[i])
			return false;
	ul = rd32(&t, KA_SIM_OFF_UID_LEN);
	return rd32(&t, KA_SIM_OFF_VERSION) == KA_SIM_VERSION &&
	       rd32(&t, KA_SIM_OFF_GEOM) == KA_SIM_OTP_WORDS &&
	       rd32(&t, KA_SIM_OFF_GEOM + 4u) == KA_SIM_OTP_BLOCK_WORDS &&
	       rd32(&t, KA_SIM_OFF_GEOM + 8u) == KA_SIM_SECTOR_SIZE &&
	       rd32(&t, KA_SIM_OFF_GEOM + 12u) == KA_SIM_SECTORS && ul >= 4u &&
	       ul <= 32u;
}

ka_hal_status_t kq_store_attach(kq_store_t *s, volatile uint8_t *img,
				void (*barrier)(void))
{
	if (s == NULL || img == NULL)
		return KA_HAL_ERR_ARG;
	s->img = NULL;
	s->writes = 0;
	s->barrier = barrier;
	if (!header_ok(img))
		return KA_HAL_ERR_IO;
	s->img = img;
	return KA_HAL_OK;
}

ka_hal_status_t kq_store_format(uint8_t *img, const uint8_t *uid,
				size_t uid_len)
{
	static const char magic[8] = KA_SIM_MAGIC;
	kq_store_t t = {.img = img};

	if (img == NULL || uid == NULL || uid_len < 4u || uid_len > 32u)
		return KA_HAL_ERR_ARG;
	for (uint32_t i = 0; i < KA_SIM_OFF_OTP; i++)
		img[i] = 0;
	for (uint32_t i = 0; i < sizeof(magic); i++)
		img[KA_SIM_OFF_MAGIC + i] = (uint8_t)magic[i];
	wr32(&t, KA_SIM_OFF_VERSION, KA_SIM_VERSION);
	wr32(&t, KA_SIM_OFF_GEOM, KA_SIM_OTP_WORDS);
	wr32(&t, KA_SIM_OFF_GEOM + 4u, KA_SIM_OTP_BLOCK_WORDS);
	wr32(&t, KA_SIM_OFF_GEOM + 8u, KA_SIM_SECTOR_SIZE);
	wr32(&t, KA_SIM_OFF_GEOM + 12u, KA_SIM_SECTORS);
	wr32(&t, KA_SIM_OFF_UID_LEN, (uint32_t)uid_len);
	for (size_t i = 0; i < uid_len; i++)
		img[KA_SIM_OFF_UID + i] = uid[i];
	/* OTP erased and never programmed, flash erased */
	for (uint32_t i = KA_SIM_OFF_OTP; i < KQ_STORE_SIZE; i++)
		img[i] = 0xFF;
	return KA_HAL_OK;
}

ka_hal_status_t kq_store_uid(const kq_store_t *s, uint8_t *buf, size_t cap,
			     size_t *len)
{
	uint32_t n;

	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	n = rd32(s, KA_SIM_OFF_UID_LEN);
	if (buf == NULL || len == NULL || n < 4u || n > 32u || cap < n)
		return KA_HAL_ERR_ARG;
	for (uint32_t i = 0; i < n; i++)
		buf[i] = s->img[KA_SIM_OFF_UID + i];
	*len = n;
	return KA_HAL_OK;
}

/* ---- OTP ---- */

static uint32_t otp_off(uint32_t word)
{
	return KA_SIM_OFF_OTP + 8u * word;
}

static bool block_locked(const kq_store_t *s, uint32_t block)
{
	return (rd32(s, KA_SIM_OFF_OTP_LOCK) >> block & 1u) != 0;
}

ka_hal_status_t kq_store_otp_read(const kq_store_t *s, uint32_t word,
				  uint32_t *out, size_t n)
{
	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if (out == NULL || word > KA_SIM_OTP_WORDS ||
	    n > KA_SIM_OTP_WORDS - word)
		return KA_HAL_ERR_ARG;
	for (size_t i = 0; i < n; i++)
		out[i] = rd32(s, otp_off(word + (uint32_t)i));
	return KA_HAL_OK;
}

ka_hal_status_t kq_store_otp_program(kq_store_t *s, uint32_t word,
				     uint32_t value)
{
	uint32_t off, old;

	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if (word >= KA_SIM_OTP_WORDS)
		return KA_HAL_ERR_ARG;
	off = otp_off(word);
	old = rd32(s, off);
	if (block_locked(s, word / KA_SIM_OTP_BLOCK_WORDS))
		return KA_HAL_ERR_LOCKED;
	if (rd32(s, off + 4u) != ERASED)
		return KA_HAL_ERR_PROGRAMMED;
	if ((old & value) != value)
		return KA_HAL_ERR_BITS;
	wr32(s, off, old & value);
	wr32(s, off + 4u, 0);
	return done(s);
}

ka_hal_status_t kq_store_otp_lock_block(kq_store_t *s, uint32_t block)
{
	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if (block >= KA_SIM_OTP_BLOCKS)
		return KA_HAL_ERR_ARG;
	wr32(s, KA_SIM_OFF_OTP_LOCK,
	     rd32(s, KA_SIM_OFF_OTP_LOCK) | (1u << block));
	return done(s);
}

ka_hal_status_t kq_store_otp_block_locked(const kq_store_t *s,
					  uint32_t block, bool *locked)
{
	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if (block >= KA_SIM_OTP_BLOCKS || locked == NULL)
		return KA_HAL_ERR_ARG;
	*locked = block_locked(s, block);
	return KA_HAL_OK;
}

/* ---- flash ---- */

static bool sector_protected(const kq_store_t *s, uint32_t sector)
{
	return (rd32(s, KA_SIM_OFF_FLASH_WP) >> sector & 1u) != 0;
}

ka_hal_status_t kq_store_flash_erase(kq_store_t *s, uint32_t sector)
{
	uint32_t off;

	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if (sector >= KA_SIM_SECTORS)
		return KA_HAL_ERR_ARG;
	if (sector_protected(s, sector))
		return KA_HAL_ERR_LOCKED;
	off = KA_SIM_OFF_FLASH + sector * KA_SIM_SECTOR_SIZE;
	for (uint32_t i = 0; i < KA_SIM_SECTOR_SIZE; i += 4u)
		wr32(s, off + i, ERASED);
	return done(s);
}

ka_hal_status_t kq_store_flash_program(kq_store_t *s, uint32_t off,
				       const uint8_t *data, size_t n)
{
	volatile uint8_t *dst;

	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if (data == NULL || n == 0 || off > FLASH_SIZE ||
	    n > FLASH_SIZE - off || off % KA_SIM_PROG_ALIGN != 0 ||
	    n % KA_SIM_PROG_ALIGN != 0)
		return KA_HAL_ERR_ARG;
	/* refused as a whole: check every sector and byte first */
	for (uint32_t sec = off / KA_SIM_SECTOR_SIZE;
	     sec <= (off + (uint32_t)n - 1u) / KA_SIM_SECTOR_SIZE; sec++)
		if (sector_protected(s, sec))
			return KA_HAL_ERR_LOCKED;
	dst = s->img + KA_SIM_OFF_FLASH + off;
	for (size_t i = 0; i < n; i++)
		if ((dst[i] & data[i]) != data[i])
			return KA_HAL_ERR_BITS;
	for (size_t i = 0; i < n; i++)
		dst[i] = (uint8_t)(dst[i] & data[i]);
	return done(s);
}

ka_hal_status_t kq_store_flash_read(const kq_store_t *s, uint32_t off,
				    uint8_t *out, size_t n)
{
	const volatile uint8_t *src;

	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if ((out == NULL && n > 0) || off > FLASH_SIZE || n > FLASH_SIZE - off)
		return KA_HAL_ERR_ARG;
	src = s->img + KA_SIM_OFF_FLASH + off;
	for (size_t i = 0; i < n; i++)
		out[i] = src[i];
	return KA_HAL_OK;
}

ka_hal_status_t kq_store_flash_protect(kq_store_t *s, uint32_t sector)
{
	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if (sector >= KA_SIM_SECTORS)
		return KA_HAL_ERR_ARG;
	wr32(s, KA_SIM_OFF_FLASH_WP,
	     rd32(s, KA_SIM_OFF_FLASH_WP) | (1u << sector));
	return done(s);
}

ka_hal_status_t kq_store_flash_protected(const kq_store_t *s,
					 uint32_t sector, bool *prot)
{
	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if (sector >= KA_SIM_SECTORS || prot == NULL)
		return KA_HAL_ERR_ARG;
	*prot = sector_protected(s, sector);
	return KA_HAL_OK;
}

/* ---- debug lock ---- */

ka_hal_status_t kq_store_debug_lock(kq_store_t *s)
{
	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	wr32(s, KA_SIM_OFF_DEBUG, KA_SIM_DEBUG_LOCKED);
	return done(s);
}

ka_hal_status_t kq_store_debug_locked(const kq_store_t *s, bool *locked)
{
	if (s->img == NULL)
		return KA_HAL_ERR_IO;
	if (locked == NULL)
		return KA_HAL_ERR_ARG;
	*locked = rd32(s, KA_SIM_OFF_DEBUG) == KA_SIM_DEBUG_LOCKED;
	return KA_HAL_OK;
}
