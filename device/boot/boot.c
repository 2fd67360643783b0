#include <string.h>

#include "mbedtls/bignum.h"
#include "mbedtls/ecdsa.h"
#include "mbedtls/ecp.h"
#include "mbedtls/memory_buffer_alloc.h"
#include "mbedtls/platform_util.h"
#include "mbedtls/sha256.h"

#include "device/boot/boot.h"
#include "device/core/record.h"
#include "device/core/secboot.h"
#include "protocol/le.h"

const char *kb_reason_str(kb_reason_t r)
{
	switch (r) {
	case KB_OK:
		return "ok";
	case KB_NO_KEY_HASH:
		return "no key hash";
	case KB_BAD_HEADER:
		return "bad header";
	case KB_BAD_TRAILER:
		return "bad trailer";
	case KB_HASH_MISMATCH:
		return "hash mismatch";
	case KB_WRONG_KEY:
		return "wrong key";
	case KB_BAD_SIGNATURE:
		return "bad signature";
	case KB_ROLLBACK:
		return "rollback";
	case KB_IDENTITY_CORRUPT:
		return "identity corrupt";
	case KB_KEY_HASH_CORRUPT:
		return "key hash slot corrupt";
	case KB_STORAGE:
		return "storage unreadable";
	case KB_COUNTER_FAILED:
		return "counter update failed";
	case KB_NO_IMAGE:
		return "no image";
	}
	return "unknown";
}

/* One TLV of the expected type at the cursor. Its length comes from the
 * image: compared with the bytes left before anything is read. */
static int take_tlv(const uint8_t **cur, const uint8_t *end, uint16_t type,
		    size_t min, size_t max, const uint8_t **v, size_t *n)
{
	const uint8_t *p = *cur;
	uint16_t l;

	if ((size_t)(end - p) < 4u || kp_get_le16(p) != type)
		return -1;
	l = kp_get_le16(p + 2);
	p += 4;
	if (l < min || l > max || l > (size_t)(end - p))
		return -1;
	*v = p;
	*n = l;
	*cur = p + l;
	return 0;
}

/* An empty slot: erased flash (0xFF), or zero-filled memory standing in
 * for flash (QEMU's code RAM). */
static bool all_erased(const uint8_t *p, size_t n)
{
	bool ff = true, zero = true;

	for (size_t i = 0; i < n; i++) {
		ff = ff && p[i] == 0xFFu;
		zero = zero && p[i] == 0x00u;
	}
	return ff || zero;
}

kb_reason_t kb_image_parse(const kb_target_t *t, kb_image_t *img,
			   const uint8_t **hash, const uint8_t **pub,
			   const uint8_t **sig, size_t *sig_len)
{
	const uint8_t *s = t->slot, *cur, *end, *body;
	uint32_t off, rest, tot;
	size_t n;

	memset(img, 0, sizeof(*img));
	if (t->slot_size < KB_IMAGE_HDR_LEN)
		return KB_BAD_HEADER;
	if (all_erased(s, KB_IMAGE_HDR_LEN))
		return KB_NO_IMAGE;
	if (kp_get_le32(s) != KB_IMAGE_MAGIC ||
	    kp_get_le16(s + 4) != KB_IMAGE_HDR_VERSION)
		return KB_BAD_HEADER;
	img->hdr_size = kp_get_le16(s + 6);
	img->flags = kp_get_le32(s + 8);
	img->image_size = kp_get_le32(s + 12);
	img->load_addr = kp_get_le32(s + 16);
	img->counter = kp_get_le32(s + 20);
	img->ver_major = s[24];
	img->ver_minor = s[25];
	img->ver_patch = kp_get_le16(s + 26);
	if (img->hdr_size < KB_IMAGE_HDR_LEN ||
	    img->hdr_size > KB_IMAGE_HDR_SIZE_MAX || img->hdr_size % 4u != 0 ||
	    (img->flags & ~KB_IMAGE_FLAGS_KNOWN) != 0 ||
	    kp_get_le32(s + 28) != 0 || img->counter > KB_IMAGE_COUNTER_MAX)
		return KB_BAD_HEADER;
	/* header + body inside the slot: compare with what is left, never
	 * add two values from the image */
	if (img->hdr_size > t->slot_size ||
	    img->image_size > t->slot_size - img->hdr_size ||
	    img->image_size < 8u)
		return KB_BAD_HEADER;
	for (uint32_t i = KB_IMAGE_HDR_LEN; i < img->hdr_size; i++)
		if (s[i] != 0)
			return KB_BAD_HEADER;
	/* execute in place: the body must be linked where it sits */
	if (img->load_addr != t->slot_addr + img->hdr_size)
		return KB_BAD_HEADER;
	body = s + img->hdr_size;
	img->initial_sp = kp_get_le32(body);
	img->reset = kp_get_le32(body + 4);
	if ((img->reset & 1u) == 0 ||
	    (img->reset & ~1u) - img->load_addr >= img->image_size ||
	    (img->reset & ~1u) < img->load_addr ||
	    img->initial_sp <= t->ram_start || img->initial_sp > t->ram_end ||
	    img->initial_sp % 8u != 0)
		return KB_BAD_HEADER;

	off = img->hdr_size + img->image_size; /* <= slot_size, checked */
	rest = t->slot_size - off;
	cur = s + off;
	if (rest < 4u || kp_get_le16(cur) != KB_TRAILER_MAGIC)
		return KB_BAD_TRAILER;
	tot = kp_get_le16(cur + 2);
	if (tot < 4u || tot > rest || tot > KB_TRAILER_MAX)
		return KB_BAD_TRAILER;
	end = cur + tot;
	cur += 4;
	if (take_tlv(&cur, end, KB_TLV_SHA256, 32, 32, hash, &n) != 0 ||
	    take_tlv(&cur, end, KB_TLV_PUBKEY, KB_PUBKEY_LEN, KB_PUBKEY_LEN,
		     pub, &n) != 0 ||
	    (*pub)[0] != 0x04u ||
	    take_tlv(&cur, end, KB_TLV_ECDSA_SIG, KB_SIG_MIN, KB_SIG_MAX, sig,
		     sig_len) != 0 ||
	    cur != end)
		return KB_BAD_TRAILER;
	return KB_OK;
}

/* One DER INTEGER at the cursor, strictly: short-form length (a P-256
 * signature never needs more), 1..33 bytes, not negative, no redundant
 * leading zero. BER variants mbedTLS's ASN.1 reader would take are
 * refused, so the boot accepts exactly the encodings the station's
 * verifier (OpenSSL, DER only) accepts. */
static int der_uint(const uint8_t **cur, const uint8_t *end, mbedtls_mpi *x)
{
	const uint8_t *p = *cur;
	size_t l;

	if ((size_t)(end - p) < 2u || p[0] != 0x02u || p[1] >= 0x80u)
		return -1;
	l = p[1];
	p += 2;
	if (l < 1u || l > 33u || l > (size_t)(end - p) ||
	    (p[0] & 0x80u) != 0 ||
	    (l > 1u && p[0] == 0x00u && (p[1] & 0x80u) == 0))
		return -1;
	if (mbedtls_mpi_read_binary(x, p, l) != 0)
		return -1;
	*cur = p + l;
	return 0;
}

kb_reason_t kb_ecdsa_verify(const uint8_t pub[KB_PUBKEY_LEN],
			    const uint8_t digest[32], const uint8_t *sig,
			    size_t sig_len, uint8_t *heap, size_t heap_len)
{
	mbedtls_ecp_group grp;
	mbedtls_ecp_point q;
	mbedtls_mpi r, s;
	const uint8_t *p = sig, *end = sig + sig_len;
	kb_reason_t res = KB_BAD_SIGNATURE;

	mbedtls_memory_buffer_alloc_init(heap, heap_len);
	mbedtls_ecp_group_init(&grp);
	mbedtls_ecp_point_init(&q);
	mbedtls_mpi_init(&r);
	mbedtls_mpi_init(&s);
	if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
	    mbedtls_ecp_point_read_binary(&grp, &q, pub, KB_PUBKEY_LEN) != 0 ||
	    mbedtls_ecp_check_pubkey(&grp, &q) != 0)
		goto out;
	/* ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } in DER,
	 * nothing after it */
	if (sig_len < 2u || p[0] != 0x30u || p[1] != sig_len - 2u)
		goto out;
	p += 2;
	if (der_uint(&p, end, &r) != 0 || der_uint(&p, end, &s) != 0 ||
	    p != end)
		goto out;
	if (mbedtls_ecdsa_verify(&grp, digest, 32, &q, &r, &s) != 0)
		goto out;
	res = KB_OK;
out:
	mbedtls_mpi_free(&s);
	mbedtls_mpi_free(&r);
	mbedtls_ecp_point_free(&q);
	mbedtls_ecp_group_free(&grp);
	mbedtls_memory_buffer_alloc_free();
	mbedtls_platform_zeroize(heap, heap_len);
	return res;
}

kb_reason_t kb_boot_check(const kb_target_t *t, kb_image_t *img)
{
	ka_store_t st;
	const uint8_t *hash, *pub, *sig;
	uint8_t otp_hash[32], d[32];
	size_t sig_len;
	bool present;
	uint32_t ctr;
	kp_status_t ks;
	kb_reason_t r;

	memset(img, 0, sizeof(*img));
	/* 1. the identity the device carries is intact (or absent) */
	ks = ka_record_scan(&st);
	if (ks != KP_ST_OK) {
		r = KB_STORAGE;
		goto out;
	}
	if (st.integrity != KP_ST_OK) {
		r = KB_IDENTITY_CORRUPT;
		goto out;
	}
	/* 2. the root of trust */
	ks = ka_sb_keyhash_read(otp_hash, &present);
	if (ks == KP_ST_INTEGRITY) {
		r = KB_KEY_HASH_CORRUPT;
		goto out;
	}
	if (ks != KP_ST_OK) {
		r = KB_STORAGE;
		goto out;
	}
	/* 3. the image's structure */
	r = kb_image_parse(t, img, &hash, &pub, &sig, &sig_len);
	if (r != KB_OK)
		goto out;
	/* 4. integrity */
	if (mbedtls_sha256(t->slot, (size_t)img->hdr_size + img->image_size,
			   d, 0) != 0) {
		r = KB_HASH_MISMATCH;
		goto out;
	}
	if (memcmp(d, hash, 32) != 0) {
		r = KB_HASH_MISMATCH;
		goto out;
	}
	/* 5. no root of trust yet: only the factory image, unverified */
	if (!present) {
		r = (img->flags & KB_IMAGE_FLAG_FACTORY) != 0 ? KB_OK
							      : KB_NO_KEY_HASH;
		goto out;
	}
	/* 6. authenticity */
	if (mbedtls_sha256(pub, KB_PUBKEY_LEN, d, 0) != 0 ||
	    memcmp(d, otp_hash, 32) != 0) {
		r = KB_WRONG_KEY;
		goto out;
	}
	r = kb_ecdsa_verify(pub, hash, sig, sig_len, t->heap, t->heap_len);
	if (r != KB_OK)
		goto out;
	img->verified = true;
	/* 7. anti-rollback, advanced only for a verified image */
	if (ka_sb_counter_read(&ctr) != KP_ST_OK) {
		r = KB_STORAGE;
		goto out;
	}
	if (img->counter < ctr) {
		img->otp_counter = ctr;
		r = KB_ROLLBACK;
		goto out;
	}
	if (img->counter > ctr) {
		if (ka_sb_counter_advance(img->counter) != KP_ST_OK ||
		    ka_sb_counter_read(&ctr) != KP_ST_OK ||
		    ctr < img->counter) {
			r = KB_COUNTER_FAILED;
			goto out;
		}
	}
	img->otp_counter = ctr;
	r = KB_OK;
out:
	return r;
}
