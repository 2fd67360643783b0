#include "protocol/cobs.h"

kp_err_t kp_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
			size_t *out_len)
{
	size_t code_at = 0, w = 1;
	uint8_t code = 1;

	if (out == NULL || out_len == NULL || (in == NULL && n > 0))
		return KP_ERR_ARG;
	if (cap < KP_COBS_MAX(n))
		return KP_ERR_NOSPACE;
	for (size_t i = 0; i < n; i++) {
		if (in[i] == 0) {
			out[code_at] = code;
			code_at = w++;
			code = 1;
		} else {
			out[w++] = in[i];
			if (++code == 0xFF) {
				out[code_at] = code;
				code_at = w++;
				code = 1;
			}
		}
	}
	out[code_at] = code;
	*out_len = w;
	return KP_OK;
}

kp_err_t kp_cobs_decode_inplace(uint8_t *buf, size_t n, size_t *out_len)
{
	size_t r = 0, w = 0;

	if (buf == NULL || out_len == NULL)
		return KP_ERR_ARG;
	if (n == 0)
		return KP_ERR_EMPTY;
	while (r < n) {
		uint8_t code = buf[r++];
		size_t run;

		if (code == 0)
			return KP_ERR_COBS;
		run = (size_t)code - 1u;
		/* the run length comes from the wire: compare, never add */
		if (run > n - r)
			return KP_ERR_COBS;
		for (size_t i = 0; i < run; i++) {
			if (buf[r] == 0)
				return KP_ERR_COBS;
			buf[w++] = buf[r++];
		}
		if (code != 0xFF && r < n)
			buf[w++] = 0;
	}
	*out_len = w;
	return KP_OK;
}
