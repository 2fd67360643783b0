#include <string.h>

#include "mbedtls/platform_util.h"

#include "device/core/stage.h"
#include "protocol/msg.h"

void ka_stage_reset(ka_stage_t *s)
{
	mbedtls_platform_zeroize(s, sizeof(*s));
}

void ka_stage_drop(ka_stage_t *s, uint8_t obj)
{
	if (obj == KP_OBJ_HOSTKEY) {
		mbedtls_platform_zeroize(s->hostkey, sizeof(s->hostkey));
		s->hostkey_received = 0;
	} else if (obj == KP_OBJ_IDENTITY) {
		memset(&s->id_w, 0, sizeof(s->id_w));
		s->id_state = KA_STAGE_ABSENT;
		s->id_total = s->id_received = 0;
	}
}

kp_status_t ka_stage_put_hostkey(ka_stage_t *s, uint32_t offset,
				 uint32_t total, const uint8_t *data,
				 size_t len, uint32_t *received)
{
	if (data == NULL || len == 0 || received == NULL)
		return KP_ST_BAD_OBJECT;
	if (total != KA_HOSTKEY_LEN || offset > total ||
	    len > total - offset)
		return KP_ST_BAD_OBJECT;
	if (offset != 0 && offset != s->hostkey_received)
		return KP_ST_BAD_OBJECT;
	if (offset == 0)
		ka_stage_drop(s, KP_OBJ_HOSTKEY);
	memcpy(s->hostkey + offset, data, len);
	s->hostkey_received = (uint8_t)(offset + len);
	*received = s->hostkey_received;
	return KP_ST_OK;
}

/* Erase the target sector and write magic, version and the pubkey TLV. */
static kp_status_t identity_begin(ka_stage_t *s, const ka_store_t *st,
				  const uint8_t pubkey[65])
{
	uint8_t pre[KP_BLOB_PREFIX_LEN];
	kp_status_t r;

	memcpy(pre, KP_BLOB_MAGIC, 4);
	pre[4] = KP_BLOB_VERSION;
	pre[5] = 0x01; /* pubkey: the blob's first field */
	pre[6] = 65;
	pre[7] = 0;
	memcpy(pre + 8, pubkey, 65);
	r = ka_record_blob_begin(st, &s->id_w);
	if (r == KP_ST_OK)
		r = ka_record_blob_append(&s->id_w, pre, sizeof(pre));
	return r;
}

kp_status_t ka_stage_put_identity(ka_stage_t *s, const ka_store_t *st,
				  const uint8_t pubkey[65], size_t max_blob,
				  uint32_t offset, uint32_t total,
				  const uint8_t *data, size_t len,
				  uint32_t *received)
{
	kp_status_t r;

	if (data == NULL || len == 0 || received == NULL || total == 0 ||
	    offset > total || len > total - offset ||
	    max_blob < KP_BLOB_PREFIX_LEN ||
	    total > max_blob - KP_BLOB_PREFIX_LEN)
		return KP_ST_BAD_OBJECT;
	if (offset != 0 && (s->id_state != KA_STAGE_PARTIAL ||
			    s->id_total != total || s->id_received != offset))
		return KP_ST_BAD_OBJECT;
	if (offset == 0) {
		ka_stage_drop(s, KP_OBJ_IDENTITY);
		r = identity_begin(s, st, pubkey);
		if (r != KP_ST_OK)
			goto out;
		s->id_state = KA_STAGE_PARTIAL;
		s->id_total = total;
	}
	r = ka_record_blob_append(&s->id_w, data, len);
	if (r != KP_ST_OK)
		goto out;
	s->id_received = offset + (uint32_t)len;
	if (s->id_received == total) {
		r = ka_record_blob_end(&s->id_w);
		if (r != KP_ST_OK)
			goto out;
		s->id_state = KA_STAGE_COMPLETE;
	}
	*received = s->id_received;
out:
	if (r != KP_ST_OK)
		ka_stage_drop(s, KP_OBJ_IDENTITY);
	return r;
}

ka_stage_state_t ka_stage_hostkey(const ka_stage_t *s, const uint8_t **p)
{
	if (s->hostkey_received == 0)
		return KA_STAGE_ABSENT;
	if (s->hostkey_received < KA_HOSTKEY_LEN)
		return KA_STAGE_PARTIAL;
	if (p != NULL)
		*p = s->hostkey;
	return KA_STAGE_COMPLETE;
}

ka_stage_state_t ka_stage_identity(const ka_stage_t *s, uint8_t *sector,
				   size_t *blob_len)
{
	if (s->id_state == KA_STAGE_COMPLETE) {
		if (sector != NULL)
			*sector = s->id_w.sector;
		if (blob_len != NULL)
			*blob_len = s->id_w.len;
	}
	return (ka_stage_state_t)s->id_state;
}

uint32_t ka_stage_bytes(const ka_stage_t *s)
{
	return s->hostkey_received + s->id_received;
}
