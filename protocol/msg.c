#include <stddef.h>
#include <string.h>

#include "protocol/le.h"
#include "protocol/msg.h"

/* Firmware builds leave out the field names and message summaries: they
 * serve the documentation generator and diagnostics on the station. */
#ifdef KP_NO_FIELD_NAMES
#define KP_TEXT(s) NULL
#else
#define KP_TEXT(s) s
#endif

#define KP_PRES_REQ 1u
#define KP_PRES_OPT 0u

#define KP_DESC_INT(T, tag, name, kind, min, max, pres)                      \
	{(uint8_t)(tag), kind, KP_PRES_##pres, (uint32_t)(min), (uint32_t)(max), \
	 (uint16_t)offsetof(T, name), 0, KP_TEXT(#name)},
#define KP_DESC_U8(T, tag, name, min, max, pres) \
	KP_DESC_INT(T, tag, name, KP_KIND_U8, min, max, pres)
#define KP_DESC_U16(T, tag, name, min, max, pres) \
	KP_DESC_INT(T, tag, name, KP_KIND_U16, min, max, pres)
#define KP_DESC_U32(T, tag, name, min, max, pres) \
	KP_DESC_INT(T, tag, name, KP_KIND_U32, min, max, pres)
#define KP_DESC_VAR(T, tag, name, kind, min, max, pres)                      \
	{(uint8_t)(tag), kind, KP_PRES_##pres, (uint32_t)(min), (uint32_t)(max), \
	 (uint16_t)offsetof(T, name), (uint16_t)offsetof(T, name##_len),   \
	 KP_TEXT(#name)},
#define KP_DESC_BYTES(T, tag, name, min, max, pres) \
	KP_DESC_VAR(T, tag, name, KP_KIND_BYTES, min, max, pres)
#define KP_DESC_STR(T, tag, name, min, max, pres) \
	KP_DESC_VAR(T, tag, name, KP_KIND_STR, min, max, pres)
#define KP_X_DESC(T, tag, name, kind, min, max, pres) \
	KP_DESC_##kind(T, tag, name, min, max, pres)

/* Each table ends with a zero sentinel (ISO C has no empty arrays). */
#define KP_X_TABLES(N, n, code, sum)                                   \
	static const kp_field_t n##_req_fields[] = {                   \
		KP_FIELDS_##N##_REQ(KP_X_DESC, kp_##n##_req_t){0}};    \
	static const kp_field_t n##_rsp_fields[] = {                   \
		KP_FIELDS_##N##_RSP(KP_X_DESC, kp_##n##_rsp_t){0}};
KP_MESSAGES(KP_X_TABLES)
#undef KP_X_TABLES

static const kp_field_t blob_fields[] = {KP_FIELDS_BLOB(KP_X_DESC, kp_blob_t){0}};

#define KP_NFIELDS(a) (sizeof(a) / sizeof((a)[0]) - 1u)

static const kp_msg_desc_t msg_table[] = {
#define KP_X(N, n, code, sum)                                            \
	{code, #N, KP_TEXT(sum), n##_req_fields, KP_NFIELDS(n##_req_fields),      \
	 n##_rsp_fields, KP_NFIELDS(n##_rsp_fields)},
	KP_MESSAGES(KP_X)
#undef KP_X
};

const kp_msg_desc_t *kp_msg_table(size_t *n)
{
	*n = sizeof(msg_table) / sizeof(msg_table[0]);
	return msg_table;
}

const kp_msg_desc_t *kp_msg_find(uint8_t type)
{
	for (size_t i = 0; i < sizeof(msg_table) / sizeof(msg_table[0]); i++)
		if (msg_table[i].type == type)
			return &msg_table[i];
	return NULL;
}

const char *kp_msg_name(uint8_t type)
{
	const kp_msg_desc_t *d = kp_msg_find(type);

	return d != NULL ? d->name : "UNKNOWN";
}

const kp_field_t *kp_blob_fields(size_t *n)
{
	*n = KP_NFIELDS(blob_fields);
	return blob_fields;
}

static int printable(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7E)
			return 0;
	return 1;
}

static size_t int_width(uint8_t kind)
{
	switch (kind) {
	case KP_KIND_U8:
		return 1;
	case KP_KIND_U16:
		return 2;
	case KP_KIND_U32:
		return 4;
	default:
		return 0;
	}
}

static uint32_t get_int(const uint8_t *base, const kp_field_t *f)
{
	switch (f->kind) {
	case KP_KIND_U8:
		return *(const uint8_t *)(const void *)(base + f->off);
	case KP_KIND_U16: {
		uint16_t v;
		memcpy(&v, base + f->off, sizeof(v));
		return v;
	}
	default: {
		uint32_t v;
		memcpy(&v, base + f->off, sizeof(v));
		return v;
	}
	}
}

static void set_int(uint8_t *base, const kp_field_t *f, uint32_t v)
{
	switch (f->kind) {
	case KP_KIND_U8: {
		uint8_t b = (uint8_t)v;
		memcpy(base + f->off, &b, 1);
		break;
	}
	case KP_KIND_U16: {
		uint16_t h = (uint16_t)v;
		memcpy(base + f->off, &h, sizeof(h));
		break;
	}
	default:
		memcpy(base + f->off, &v, sizeof(v));
		break;
	}
}

kp_err_t kp_tlv_encode(const kp_field_t *f, size_t nf, const void *msg,
		       uint8_t *out, size_t cap, size_t *out_len)
{
	const uint8_t *base = msg;
	uint32_t has;
	size_t w = 0;

	if (f == NULL || msg == NULL || out_len == NULL ||
	    (out == NULL && cap > 0))
		return KP_ERR_ARG;
	memcpy(&has, base, sizeof(has));
	for (size_t i = 0; i < nf; i++) {
		const kp_field_t *fd = &f[i];
		size_t width = int_width(fd->kind);

		if (!fd->required && (has & KP_BIT(fd->tag)) == 0)
			continue;
		if (width != 0) {
			uint32_t v = get_int(base, fd);

			if (v < fd->min || v > fd->max)
				return KP_ERR_TLV_VALUE;
			if (3u + width > cap - w)
				return KP_ERR_NOSPACE;
			out[w] = fd->tag;
			kp_put_le16(out + w + 1, (uint16_t)width);
			for (size_t b = 0; b < width; b++)
				out[w + 3 + b] = (uint8_t)(v >> (8u * b));
			w += 3u + width;
		} else {
			const uint8_t *p;
			uint16_t len;

			memcpy(&p, base + fd->off, sizeof(p));
			memcpy(&len, base + fd->off_len, sizeof(len));
			if (len < fd->min || len > fd->max ||
			    (p == NULL && len > 0))
				return KP_ERR_TLV_VALUE;
			if (fd->kind == KP_KIND_STR && !printable(p, len))
				return KP_ERR_TLV_VALUE;
			if (cap - w < 3u || len > cap - w - 3u)
				return KP_ERR_NOSPACE;
			out[w] = fd->tag;
			kp_put_le16(out + w + 1, len);
			if (len > 0)
				memcpy(out + w + 3, p, len);
			w += 3u + len;
		}
	}
	*out_len = w;
	return KP_OK;
}

kp_err_t kp_tlv_decode(const kp_field_t *f, size_t nf, void *msg,
		       size_t msg_size, const uint8_t *p, size_t n)
{
	uint8_t *base = msg;
	const uint8_t *end;
	uint32_t has = 0;
	int last_tag = -1; /* tag 0x00 is unknown, not a duplicate */

	if (f == NULL || msg == NULL || (p == NULL && n > 0))
		return KP_ERR_ARG;
	memset(msg, 0, msg_size);
	end = n > 0 ? p + n : p; /* NULL + 0 is undefined in C */
	while (p != end) {
		const kp_field_t *fd = NULL;
		uint8_t tag;
		uint16_t len;

		if ((size_t)(end - p) < 3u)
			return KP_ERR_TLV_OVERRUN;
		tag = p[0];
		len = kp_get_le16(p + 1);
		p += 3;
		/* the length comes from the wire */
		if (len > (size_t)(end - p))
			return KP_ERR_TLV_OVERRUN;
		if ((int)tag == last_tag)
			return KP_ERR_TLV_DUP;
		if ((int)tag < last_tag)
			return KP_ERR_TLV_ORDER;
		last_tag = tag;
		for (size_t i = 0; i < nf; i++)
			if (f[i].tag == tag)
				fd = &f[i];
		if (fd == NULL) {
			if ((tag & 0x80u) != 0) { /* ignorable */
				p += len;
				continue;
			}
			return KP_ERR_TLV_UNKNOWN;
		}
		if (int_width(fd->kind) != 0) {
			uint32_t v = 0;

			if (len != int_width(fd->kind))
				return KP_ERR_TLV_VALUE;
			for (size_t b = 0; b < len; b++)
				v |= (uint32_t)p[b] << (8u * b);
			if (v < fd->min || v > fd->max)
				return KP_ERR_TLV_VALUE;
			set_int(base, fd, v);
		} else {
			if (len < fd->min || len > fd->max)
				return KP_ERR_TLV_VALUE;
			if (fd->kind == KP_KIND_STR && !printable(p, len))
				return KP_ERR_TLV_VALUE;
			memcpy(base + fd->off, &p, sizeof(p));
			memcpy(base + fd->off_len, &len, sizeof(len));
		}
		has |= KP_BIT(tag);
		p += len;
	}
	for (size_t i = 0; i < nf; i++)
		if (f[i].required && (has & KP_BIT(f[i].tag)) == 0)
			return KP_ERR_TLV_MISSING;
	memcpy(base, &has, sizeof(has));
	return KP_OK;
}

#define KP_X_WRAPPERS(N, n, code, sum)                                       \
	kp_err_t kp_##n##_req_encode(const kp_##n##_req_t *m, uint8_t *out,  \
				     size_t cap, size_t *out_len)            \
	{                                                                    \
		return kp_tlv_encode(n##_req_fields,                         \
				     KP_NFIELDS(n##_req_fields), m, out, cap, \
				     out_len);                               \
	}                                                                    \
	kp_err_t kp_##n##_req_decode(kp_##n##_req_t *m, const uint8_t *p,    \
				     size_t n_)                              \
	{                                                                    \
		return kp_tlv_decode(n##_req_fields,                         \
				     KP_NFIELDS(n##_req_fields), m,          \
				     sizeof(*m), p, n_);                     \
	}                                                                    \
	kp_err_t kp_##n##_rsp_encode(const kp_##n##_rsp_t *m, uint8_t *out,  \
				     size_t cap, size_t *out_len)            \
	{                                                                    \
		return kp_tlv_encode(n##_rsp_fields,                         \
				     KP_NFIELDS(n##_rsp_fields), m, out, cap, \
				     out_len);                               \
	}                                                                    \
	kp_err_t kp_##n##_rsp_decode(kp_##n##_rsp_t *m, const uint8_t *p,    \
				     size_t n_)                              \
	{                                                                    \
		return kp_tlv_decode(n##_rsp_fields,                         \
				     KP_NFIELDS(n##_rsp_fields), m,          \
				     sizeof(*m), p, n_);                     \
	}
KP_MESSAGES(KP_X_WRAPPERS)
#undef KP_X_WRAPPERS

kp_err_t kp_blob_encode(const kp_blob_t *b, uint8_t *out, size_t cap,
			size_t *out_len)
{
	size_t n;
	kp_err_t r;

	if (b == NULL || out == NULL || out_len == NULL)
		return KP_ERR_ARG;
	if (cap < KP_BLOB_HDR_LEN)
		return KP_ERR_NOSPACE;
	memcpy(out, KP_BLOB_MAGIC, 4);
	out[4] = KP_BLOB_VERSION;
	r = kp_tlv_encode(blob_fields, KP_NFIELDS(blob_fields), b,
			  out + KP_BLOB_HDR_LEN, cap - KP_BLOB_HDR_LEN, &n);
	if (r != KP_OK)
		return r;
	*out_len = KP_BLOB_HDR_LEN + n;
	return KP_OK;
}

kp_err_t kp_blob_decode(kp_blob_t *b, const uint8_t *p, size_t n)
{
	if (b == NULL || p == NULL)
		return KP_ERR_ARG;
	if (n < KP_BLOB_HDR_LEN || memcmp(p, KP_BLOB_MAGIC, 4) != 0 ||
	    p[4] != KP_BLOB_VERSION)
		return KP_ERR_BLOB;
	return kp_tlv_decode(blob_fields, KP_NFIELDS(blob_fields), b,
			     sizeof(*b), p + KP_BLOB_HDR_LEN,
			     n - KP_BLOB_HDR_LEN);
}

kp_err_t kp_challenge_message(const uint8_t *uid, size_t uid_len,
			      const uint8_t *nonce, size_t nonce_len,
			      uint8_t *out, size_t cap, size_t *out_len)
{
	size_t need;

	if (uid == NULL || nonce == NULL || out == NULL || out_len == NULL ||
	    uid_len == 0 || uid_len > 255 || nonce_len == 0 || nonce_len > 255)
		return KP_ERR_ARG;
	need = KP_CHALLENGE_DOMAIN_LEN + 1u + uid_len + nonce_len;
	if (need > cap)
		return KP_ERR_NOSPACE;
	memcpy(out, KP_CHALLENGE_DOMAIN, KP_CHALLENGE_DOMAIN_LEN);
	out[KP_CHALLENGE_DOMAIN_LEN] = (uint8_t)uid_len;
	memcpy(out + KP_CHALLENGE_DOMAIN_LEN + 1, uid, uid_len);
	memcpy(out + KP_CHALLENGE_DOMAIN_LEN + 1 + uid_len, nonce, nonce_len);
	*out_len = need;
	return KP_OK;
}

kp_err_t kp_lock_message(const uint8_t *uid, size_t uid_len, uint8_t lock,
			 uint8_t state, const uint8_t *nonce, size_t nonce_len,
			 uint8_t *out, size_t cap, size_t *out_len)
{
	size_t need, o;

	if (uid == NULL || nonce == NULL || out == NULL || out_len == NULL ||
	    uid_len == 0 || uid_len > 255 || nonce_len == 0 || nonce_len > 255)
		return KP_ERR_ARG;
	need = KP_LOCK_DOMAIN_LEN + 1u + uid_len + 2u + nonce_len;
	if (need > cap)
		return KP_ERR_NOSPACE;
	memcpy(out, KP_LOCK_DOMAIN, KP_LOCK_DOMAIN_LEN);
	o = KP_LOCK_DOMAIN_LEN;
	out[o++] = (uint8_t)uid_len;
	memcpy(out + o, uid, uid_len);
	o += uid_len;
	out[o++] = lock;
	out[o++] = state;
	memcpy(out + o, nonce, nonce_len);
	*out_len = need;
	return KP_OK;
}
