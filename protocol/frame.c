#include <string.h>

#include "protocol/crc32c.h"
#include "protocol/frame.h"

kp_err_t kp_frame_encode(const kp_hdr_t *hdr, const uint8_t *payload,
			 size_t payload_len, uint8_t *out, size_t cap,
			 size_t *out_len)
{
	uint8_t raw[KP_MAX_RAW];
	size_t n, enc;
	uint32_t crc;
	kp_err_t r;

	if (hdr == NULL || out == NULL || out_len == NULL ||
	    (payload == NULL && payload_len > 0) || hdr->len != payload_len ||
	    (hdr->flags & ~KP_FLAGS_KNOWN) != 0)
		return KP_ERR_ARG;
	if (payload_len > KP_MAX_PAYLOAD)
		return KP_ERR_TOO_LARGE;
	raw[0] = KP_PROTO_VERSION;
	raw[1] = hdr->type;
	raw[2] = hdr->flags;
	raw[3] = 0;
	kp_put_le16(raw + 4, hdr->seq);
	kp_put_le16(raw + 6, hdr->len);
	if (payload_len > 0)
		memcpy(raw + KP_HDR_LEN, payload, payload_len);
	n = KP_HDR_LEN + payload_len;
	crc = kp_crc32c(0, raw, n);
	kp_put_le32(raw + n, crc);
	n += KP_CRC_LEN;
	if (cap < 2)
		return KP_ERR_NOSPACE;
	out[0] = 0;
	r = kp_cobs_encode(raw, n, out + 1, cap - 2, &enc);
	if (r != KP_OK)
		return r;
	out[1 + enc] = 0;
	*out_len = enc + 2;
	return KP_OK;
}

kp_err_t kp_frame_decode(uint8_t *buf, size_t n, kp_hdr_t *hdr,
			 const uint8_t **payload)
{
	size_t raw_len;
	uint16_t len;
	kp_err_t r;

	if (buf == NULL || hdr == NULL || payload == NULL)
		return KP_ERR_ARG;
	if (n == 0)
		return KP_ERR_EMPTY;
	if (n > KP_MAX_COBS)
		return KP_ERR_TOO_LARGE;
	r = kp_cobs_decode_inplace(buf, n, &raw_len);
	if (r != KP_OK)
		return r;
	if (raw_len < KP_HDR_LEN + KP_CRC_LEN)
		return KP_ERR_TRUNCATED;
	/* CRC first: a corrupted header must not be trusted for anything */
	if (kp_crc32c(0, buf, raw_len - KP_CRC_LEN) !=
	    kp_get_le32(buf + raw_len - KP_CRC_LEN))
		return KP_ERR_CRC;
	if (buf[0] != KP_PROTO_VERSION)
		return KP_ERR_VERSION;
	if ((buf[2] & ~KP_FLAGS_KNOWN) != 0 || buf[3] != 0)
		return KP_ERR_FLAGS;
	len = kp_get_le16(buf + 6);
	if (len > KP_MAX_PAYLOAD)
		return KP_ERR_TOO_LARGE;
	if (len > raw_len - KP_HDR_LEN - KP_CRC_LEN)
		return KP_ERR_TRUNCATED;
	if (len < raw_len - KP_HDR_LEN - KP_CRC_LEN)
		return KP_ERR_TRAILING;
	hdr->version = buf[0];
	hdr->type = buf[1];
	hdr->flags = buf[2];
	hdr->seq = kp_get_le16(buf + 4);
	hdr->len = len;
	*payload = buf + KP_HDR_LEN;
	return KP_OK;
}

void kp_rx_init(kp_rx_t *rx)
{
	memset(rx, 0, sizeof(*rx));
}

size_t kp_rx_feed(kp_rx_t *rx, const uint8_t *data, size_t n,
		  kp_rx_event_t *ev)
{
	size_t i;

	memset(ev, 0, sizeof(*ev));
	ev->kind = KP_RX_NONE;
	ev->err = KP_OK;
	for (i = 0; i < n; i++) {
		uint8_t b = data[i];

		if (b != 0) {
			if (rx->overflow) {
				rx->bytes_discarded++;
			} else if (rx->len == sizeof(rx->buf)) {
				rx->overflow = 1;
				rx->bytes_discarded += (uint32_t)rx->len + 1u;
				rx->len = 0;
			} else {
				rx->buf[rx->len++] = b;
			}
			continue;
		}
		/* delimiter */
		if (rx->overflow) {
			rx->overflow = 0;
			rx->frames_bad++;
			ev->kind = KP_RX_ERROR;
			ev->err = KP_ERR_TOO_LARGE;
			return i + 1;
		}
		if (rx->len == 0)
			continue;
		{
			size_t len = rx->len;
			kp_err_t r;

			rx->len = 0;
			r = kp_frame_decode(rx->buf, len, &ev->hdr,
					    &ev->payload);
			if (r == KP_OK) {
				rx->frames_ok++;
				ev->kind = KP_RX_FRAME;
			} else {
				rx->frames_bad++;
				rx->bytes_discarded += (uint32_t)len;
				memset(ev, 0, sizeof(*ev));
				ev->kind = KP_RX_ERROR;
				ev->err = r;
			}
			return i + 1;
		}
	}
	return i;
}
