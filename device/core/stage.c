#include <string.h>

#include "mbedtls/platform_util.h"

#include "device/core/stage.h"
#include "protocol/msg.h"

static uint32_t obj_limit(uint8_t obj)
{
	uint32_t lim;

	switch (obj) {
	case KP_OBJ_CERT:
		lim = KA_OBJ_CERT_MAX;
		break;
	case KP_OBJ_CHAIN:
		lim = KA_OBJ_CHAIN_MAX;
		break;
	case KP_OBJ_SERIAL:
		lim = KA_OBJ_SERIAL_MAX;
		break;
	case KP_OBJ_META:
		lim = KA_OBJ_META_MAX;
		break;
	default:
		return 0;
	}
	return lim < KA_STAGE_CAP ? lim : KA_STAGE_CAP;
}

static ka_stage_ent_t *find(ka_stage_t *s, uint8_t obj)
{
	for (size_t i = 0; i < KA_STAGE_OBJS; i++)
		if (s->ent[i].obj == obj)
			return &s->ent[i];
	return NULL;
}

static const ka_stage_ent_t *find_c(const ka_stage_t *s, uint8_t obj)
{
	for (size_t i = 0; i < KA_STAGE_OBJS; i++)
		if (s->ent[i].obj == obj)
			return &s->ent[i];
	return NULL;
}

void ka_stage_reset(ka_stage_t *s)
{
	mbedtls_platform_zeroize(s, sizeof(*s));
}

void ka_stage_drop(ka_stage_t *s, uint8_t obj)
{
	ka_stage_ent_t *e;
	uint16_t off, tot;

	if (obj == KP_OBJ_HOSTKEY) {
		mbedtls_platform_zeroize(s->hostkey, sizeof(s->hostkey));
		s->hostkey_received = 0;
		return;
	}
	e = find(s, obj);
	if (e == NULL)
		return;
	off = e->off;
	tot = e->total;
	/* close the gap: objects behind this one move down */
	memmove(s->buf + off, s->buf + off + tot, (size_t)(s->used - off - tot));
	for (size_t i = 0; i < KA_STAGE_OBJS; i++)
		if (s->ent[i].obj != 0 && s->ent[i].off > off)
			s->ent[i].off = (uint16_t)(s->ent[i].off - tot);
	s->used = (uint16_t)(s->used - tot);
	memset(s->buf + s->used, 0, KA_STAGE_CAP - s->used);
	memset(e, 0, sizeof(*e));
}

static int printable(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7E)
			return 0;
	return 1;
}

static kp_status_t put_hostkey(ka_stage_t *s, uint32_t offset,
			       uint32_t total, const uint8_t *data, size_t len,
			       uint32_t *received)
{
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

kp_status_t ka_stage_put(ka_stage_t *s, uint8_t obj, uint32_t offset,
			 uint32_t total, const uint8_t *data, size_t len,
			 uint32_t *received)
{
	ka_stage_ent_t *e;
	uint32_t lim, room;

	if (data == NULL || len == 0 || received == NULL)
		return KP_ST_BAD_OBJECT;
	if (obj == KP_OBJ_HOSTKEY)
		return put_hostkey(s, offset, total, data, len, received);
	lim = obj_limit(obj);
	if (lim == 0 || total == 0 || total > lim || offset > total ||
	    len > total - offset)
		return KP_ST_BAD_OBJECT;
	if (obj == KP_OBJ_SERIAL && !printable(data, len))
		return KP_ST_BAD_OBJECT;
	e = find(s, obj);
	if (offset != 0) {
		/* continuation: in order, same total */
		if (e == NULL || e->total != total || e->received != offset)
			return KP_ST_BAD_OBJECT;
	} else {
		/* (re)start: the old copy's room counts as free */
		room = KA_STAGE_CAP - s->used + (e != NULL ? e->total : 0u);
		if (total > room)
			return KP_ST_BAD_OBJECT;
		ka_stage_drop(s, obj);
		e = find(s, 0);
		if (e == NULL)
			return KP_ST_BAD_OBJECT; /* cannot happen: 4 objects */
		e->obj = obj;
		e->off = s->used;
		e->total = (uint16_t)total;
		e->received = 0;
		s->used = (uint16_t)(s->used + total);
	}
	memcpy(s->buf + e->off + offset, data, len);
	e->received = (uint16_t)(offset + len);
	*received = e->received;
	return KP_ST_OK;
}

ka_stage_state_t ka_stage_get(const ka_stage_t *s, uint8_t obj,
			      const uint8_t **p, uint16_t *len)
{
	const ka_stage_ent_t *e;

	if (obj == KP_OBJ_HOSTKEY) {
		if (s->hostkey_received == 0)
			return KA_STAGE_ABSENT;
		if (s->hostkey_received < KA_HOSTKEY_LEN)
			return KA_STAGE_PARTIAL;
		if (p != NULL)
			*p = s->hostkey;
		if (len != NULL)
			*len = KA_HOSTKEY_LEN;
		return KA_STAGE_COMPLETE;
	}
	e = find_c(s, obj);
	if (obj == 0 || e == NULL)
		return KA_STAGE_ABSENT;
	if (e->received < e->total)
		return KA_STAGE_PARTIAL;
	if (p != NULL)
		*p = s->buf + e->off;
	if (len != NULL)
		*len = e->total;
	return KA_STAGE_COMPLETE;
}

bool ka_stage_any_partial(const ka_stage_t *s)
{
	for (size_t i = 0; i < KA_STAGE_OBJS; i++)
		if (s->ent[i].obj != 0 && s->ent[i].received < s->ent[i].total)
			return true;
	return false;
}

uint32_t ka_stage_bytes(const ka_stage_t *s)
{
	uint32_t n = s->hostkey_received;

	for (size_t i = 0; i < KA_STAGE_OBJS; i++)
		if (s->ent[i].obj != 0)
			n += s->ent[i].received;
	return n;
}
