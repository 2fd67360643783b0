/* Unit tests: frames and the streaming receiver (protocol/frame.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/crc32c.h"
#include "protocol/frame.h"

/* Build "COBS(raw | crc)" (no delimiters) from raw header+payload bytes,
 * so tests can forge frames the encoder refuses to produce. With
 * crc_delta != 0 the CRC is deliberately wrong. */
static size_t forge(const uint8_t *raw, size_t n, uint32_t crc_delta,
		    uint8_t *out, size_t cap)
{
	uint8_t tmp[KP_MAX_RAW + 64];
	size_t elen = 0;

	assert_true(n + 4 <= sizeof(tmp));
	memcpy(tmp, raw, n);
	kp_put_le32(tmp + n, kp_crc32c(0, raw, n) ^ crc_delta);
	assert_int_equal(kp_cobs_encode(tmp, n + 4, out, cap, &elen), KP_OK);
	return elen;
}

static void hdr_bytes(uint8_t *raw, uint8_t ver, uint8_t type, uint8_t flags,
		      uint8_t rsv, uint16_t seq, uint16_t len)
{
	raw[0] = ver;
	raw[1] = type;
	raw[2] = flags;
	raw[3] = rsv;
	kp_put_le16(raw + 4, seq);
	kp_put_le16(raw + 6, len);
}

static size_t encode(uint8_t type, uint8_t flags, uint16_t seq,
		     const uint8_t *pl, size_t n, uint8_t *out, size_t cap)
{
	kp_hdr_t h = {0, type, flags, seq, (uint16_t)n};
	size_t len = 0;

	assert_int_equal(kp_frame_encode(&h, pl, n, out, cap, &len), KP_OK);
	return len;
}

static void test_frame_roundtrip(void **state)
{
	static uint8_t pl[KP_MAX_PAYLOAD], wire[KP_MAX_WIRE];
	static const size_t sizes[] = {0, 1, 2, 241, 242, 243, 244, 245, 246,
				       500, 1000, 1023, KP_MAX_PAYLOAD};
	(void)state;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (int pattern = 0; pattern < 3; pattern++) {
			size_t n = sizes[k], wl;
			kp_hdr_t h;
			const uint8_t *p = NULL;

			for (size_t i = 0; i < n; i++)
				pl[i] = pattern == 0   ? (uint8_t)i
					: pattern == 1 ? 0
						       : (uint8_t)(0x80u | i);
			wl = encode(0x05, KP_FLAG_RESPONSE, (uint16_t)(0xBEEF + k),
				    pl, n, wire, sizeof(wire));
			assert_true(wl <= KP_MAX_WIRE);
			assert_int_equal(wire[0], 0);
			assert_int_equal(wire[wl - 1], 0);
			assert_null(memchr(wire + 1, 0, wl - 2));
			assert_int_equal(kp_frame_decode(wire + 1, wl - 2, &h, &p),
					 KP_OK);
			assert_int_equal(h.version, KP_PROTO_VERSION);
			assert_int_equal(h.type, 0x05);
			assert_int_equal(h.flags, KP_FLAG_RESPONSE);
			assert_int_equal(h.seq, (uint16_t)(0xBEEF + k));
			assert_int_equal(h.len, n);
			if (n > 0)
				assert_memory_equal(p, pl, n);
		}
	}
}

static void test_frame_exact_bytes(void **state)
{
	/* STATUS request, seq 1, empty payload: header 01 05 00 00 01 00 00 00,
	 * CRC-32C of the header appended little-endian, then COBS. */
	uint8_t wire[64], raw[12] = {1, 5, 0, 0, 1, 0, 0, 0};
	uint8_t expect[64];
	size_t wl, el;

	(void)state;
	wl = encode(0x05, 0, 1, NULL, 0, wire, sizeof(wire));
	kp_put_le32(raw + 8, kp_crc32c(0, raw, 8));
	expect[0] = 0;
	assert_int_equal(kp_cobs_encode(raw, 12, expect + 1, sizeof(expect) - 2, &el),
			 KP_OK);
	expect[el + 1] = 0;
	assert_int_equal(wl, el + 2);
	assert_memory_equal(wire, expect, wl);
	/* exact prefix: delimiter; [03] 01 05 = version, type, zero flags;
	 * [01] = zero reserved byte; [02] 01 = seq lo, zero seq hi;
	 * [01] = zero length lo */
	assert_memory_equal(wire, "\x00\x03\x01\x05\x01\x02\x01\x01", 8);
}

static void test_frame_encode_args(void **state)
{
	uint8_t pl[KP_MAX_PAYLOAD + 1] = {0}, out[KP_MAX_WIRE + 8];
	kp_hdr_t h = {0, 1, 0, 0, 0};
	size_t n;

	(void)state;
	h.len = 3; /* disagrees with payload_len */
	assert_int_equal(kp_frame_encode(&h, pl, 2, out, sizeof(out), &n),
			 KP_ERR_ARG);
	h.len = 0;
	h.flags = 0x04; /* not a known flag */
	assert_int_equal(kp_frame_encode(&h, pl, 0, out, sizeof(out), &n),
			 KP_ERR_ARG);
	h.flags = 0x80;
	assert_int_equal(kp_frame_encode(&h, pl, 0, out, sizeof(out), &n),
			 KP_ERR_ARG);
	h.flags = 0;
	assert_int_equal(kp_frame_encode(NULL, pl, 0, out, sizeof(out), &n),
			 KP_ERR_ARG);
	assert_int_equal(kp_frame_encode(&h, NULL, 0, out, sizeof(out), &n),
			 KP_OK);
	h.len = KP_MAX_PAYLOAD + 1;
	assert_int_equal(kp_frame_encode(&h, pl, KP_MAX_PAYLOAD + 1, out,
					 sizeof(out), &n),
			 KP_ERR_TOO_LARGE);
	h.len = KP_MAX_PAYLOAD;
	assert_int_equal(kp_frame_encode(&h, pl, KP_MAX_PAYLOAD, out,
					 KP_MAX_WIRE - 1, &n),
			 KP_ERR_NOSPACE);
	assert_int_equal(kp_frame_encode(&h, pl, KP_MAX_PAYLOAD, out, 1, &n),
			 KP_ERR_NOSPACE);
	assert_int_equal(kp_frame_encode(&h, pl, KP_MAX_PAYLOAD, out,
					 KP_MAX_WIRE, &n),
			 KP_OK);
	assert_true(n <= KP_MAX_WIRE);
}

/* Decode a forged body; return the error. */
static kp_err_t decode_forged(const uint8_t *raw, size_t n, uint32_t crc_delta)
{
	uint8_t enc[KP_MAX_COBS + 64];
	size_t el = forge(raw, n, crc_delta, enc, sizeof(enc));
	kp_hdr_t h;
	const uint8_t *p;

	return kp_frame_decode(enc, el, &h, &p);
}

static void test_frame_rejects(void **state)
{
	uint8_t raw[KP_MAX_RAW + 16] = {0}, enc[KP_MAX_WIRE + 64];
	kp_hdr_t h;
	const uint8_t *p;
	size_t wl;

	(void)state;
	/* the reference frame decodes */
	hdr_bytes(raw, 1, 2, 0, 0, 7, 3);
	memcpy(raw + 8, "\x01\x02\x03", 3);
	assert_int_equal(decode_forged(raw, 11, 0), KP_OK);
	/* bad CRC */
	assert_int_equal(decode_forged(raw, 11, 1), KP_ERR_CRC);
	assert_int_equal(decode_forged(raw, 11, 0x80000000u), KP_ERR_CRC);
	/* unknown framing version */
	hdr_bytes(raw, 2, 2, 0, 0, 7, 3);
	assert_int_equal(decode_forged(raw, 11, 0), KP_ERR_VERSION);
	hdr_bytes(raw, 0, 2, 0, 0, 7, 3);
	assert_int_equal(decode_forged(raw, 11, 0), KP_ERR_VERSION);
	/* reserved flags and the reserved byte */
	hdr_bytes(raw, 1, 2, 0x04, 0, 7, 3);
	assert_int_equal(decode_forged(raw, 11, 0), KP_ERR_FLAGS);
	hdr_bytes(raw, 1, 2, 0x80, 0, 7, 3);
	assert_int_equal(decode_forged(raw, 11, 0), KP_ERR_FLAGS);
	hdr_bytes(raw, 1, 2, 0, 1, 7, 3);
	assert_int_equal(decode_forged(raw, 11, 0), KP_ERR_FLAGS);
	/* length field says more than there is: truncated */
	hdr_bytes(raw, 1, 2, 0, 0, 7, 4);
	assert_int_equal(decode_forged(raw, 11, 0), KP_ERR_TRUNCATED);
	/* length field says less: trailing bytes */
	hdr_bytes(raw, 1, 2, 0, 0, 7, 2);
	assert_int_equal(decode_forged(raw, 11, 0), KP_ERR_TRAILING);
	/* length field above the hard maximum */
	hdr_bytes(raw, 1, 2, 0, 0, 7, KP_MAX_PAYLOAD + 1);
	assert_int_equal(decode_forged(raw, 11, 0), KP_ERR_TOO_LARGE);
	hdr_bytes(raw, 1, 2, 0, 0, 7, 0xFFFF);
	assert_int_equal(decode_forged(raw, 11, 0), KP_ERR_TOO_LARGE);
	/* shorter than header + CRC */
	for (size_t n = 0; n < 8; n++)
		assert_int_equal(decode_forged(raw, n, 0), KP_ERR_TRUNCATED);
	/* empty chunk */
	assert_int_equal(kp_frame_decode(enc, 0, &h, &p), KP_ERR_EMPTY);
	/* bad COBS */
	memcpy(enc, "\x05\x01\x02", 3);
	assert_int_equal(kp_frame_decode(enc, 3, &h, &p), KP_ERR_COBS);
	/* more COBS bytes than any frame can have */
	memset(enc, 0x01, KP_MAX_COBS + 1);
	assert_int_equal(kp_frame_decode(enc, KP_MAX_COBS + 1, &h, &p),
			 KP_ERR_TOO_LARGE);
	/* a real frame cut short anywhere fails, and never decodes */
	wl = encode(0x03, 0, 9, (const uint8_t *)"abcdefgh\0\0xyz", 13, enc,
		    sizeof(enc));
	for (size_t cut = 1; cut < wl - 2; cut++) {
		uint8_t tmp[64];
		kp_err_t r;

		memcpy(tmp, enc + 1, cut);
		r = kp_frame_decode(tmp, cut, &h, &p);
		assert_true(r == KP_ERR_TRUNCATED || r == KP_ERR_CRC ||
			    r == KP_ERR_COBS);
	}
	/* a single flipped bit anywhere is caught */
	for (size_t i = 1; i < wl - 1; i++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			uint8_t tmp[64];

			memcpy(tmp, enc + 1, wl - 2);
			tmp[i - 1] ^= (uint8_t)(1u << bit);
			assert_int_not_equal(kp_frame_decode(tmp, wl - 2, &h, &p),
					     KP_OK);
		}
	}
	assert_int_equal(kp_frame_decode(NULL, 1, &h, &p), KP_ERR_ARG);
}

/* ---- streaming receiver ---- */

typedef struct {
	kp_rx_event_t ev[64];
	uint8_t payload[64][KP_MAX_PAYLOAD];
	size_t n;
} events_t;

/* Feed data in chunks of `step` bytes; collect every event. */
static void feed_all(kp_rx_t *rx, const uint8_t *d, size_t n, size_t step,
		     events_t *out)
{
	size_t pos = 0;

	while (pos < n) {
		size_t chunk = n - pos < step ? n - pos : step;
		size_t off = 0;

		while (off < chunk) {
			kp_rx_event_t ev;
			size_t used = kp_rx_feed(rx, d + pos + off, chunk - off, &ev);

			assert_true(used > 0 && used <= chunk - off);
			off += used;
			if (ev.kind == KP_RX_NONE) {
				assert_int_equal(off, chunk);
				continue;
			}
			assert_true(out->n < 64);
			out->ev[out->n] = ev;
			if (ev.kind == KP_RX_FRAME && ev.hdr.len > 0)
				memcpy(out->payload[out->n], ev.payload, ev.hdr.len);
			out->n++;
		}
		pos += chunk;
	}
}

static uint8_t stream[16384];

static void test_rx_back_to_back_any_chunking(void **state)
{
	static const size_t steps[] = {1, 2, 3, 7, 64, 1000, 16384};
	size_t n = 0;

	(void)state;
	for (uint16_t i = 0; i < 5; i++) {
		uint8_t pl[40];

		memset(pl, (int)i, sizeof(pl)); /* frame 0 has zero bytes */
		n += encode(0x06, 0, (uint16_t)(100 + i), pl, 10u * i, stream + n,
			    sizeof(stream) - n);
	}
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		static events_t ev;
		kp_rx_t rx;

		memset(&ev, 0, sizeof(ev));
		kp_rx_init(&rx);
		feed_all(&rx, stream, n, steps[s], &ev);
		assert_int_equal(ev.n, 5);
		for (size_t i = 0; i < 5; i++) {
			assert_int_equal(ev.ev[i].kind, KP_RX_FRAME);
			assert_int_equal(ev.ev[i].hdr.seq, 100 + i);
			assert_int_equal(ev.ev[i].hdr.len, 10 * i);
			for (size_t b = 0; b < 10 * i; b++)
				assert_int_equal(ev.payload[i][b], i);
		}
		assert_int_equal(rx.frames_ok, 5);
		assert_int_equal(rx.frames_bad, 0);
	}
}

static void test_rx_shared_delimiter(void **state)
{
	/* frames may share one delimiter: 00 A 00 B 00 */
	uint8_t a[64], b[64];
	size_t al = encode(1, 0, 1, NULL, 0, a, sizeof(a));
	size_t bl = encode(1, 0, 2, NULL, 0, b, sizeof(b));
	static events_t ev;
	kp_rx_t rx;
	size_t n;

	(void)state;
	memcpy(stream, a, al);
	memcpy(stream + al, b + 1, bl - 1);
	n = al + bl - 1;
	memset(&ev, 0, sizeof(ev));
	kp_rx_init(&rx);
	feed_all(&rx, stream, n, 1, &ev);
	assert_int_equal(ev.n, 2);
	assert_int_equal(ev.ev[0].hdr.seq, 1);
	assert_int_equal(ev.ev[1].hdr.seq, 2);
}

static void test_rx_resync_after_boot_log_and_garbage(void **state)
{
	static const char bootlog[] =
		"\r\nU-Boot SPL 2024.01 (Jan 01 2024)\r\nDRAM: 512 MiB\r\n"
		"Booting agent...\r\n";
	uint8_t pl[] = {0x01, 0x01, 0x00, 0x01};
	static events_t ev;
	kp_rx_t rx;
	size_t n = 0, frames = 0;

	(void)state;
	memcpy(stream, bootlog, sizeof(bootlog) - 1);
	n += sizeof(bootlog) - 1;
	n += encode(0x01, 0, 1, pl, sizeof(pl), stream + n, sizeof(stream) - n);
	/* random garbage (with zeros) between frames */
	for (unsigned i = 0; i < 500; i++)
		stream[n++] = (uint8_t)((i * 2654435761u) >> 13);
	n += encode(0x01, 0, 2, pl, sizeof(pl), stream + n, sizeof(stream) - n);
	/* text right before a frame with no delimiter of its own */
	memcpy(stream + n, "log line\n", 9);
	n += 9;
	n += encode(0x01, 0, 3, pl, sizeof(pl), stream + n, sizeof(stream) - n);
	memset(&ev, 0, sizeof(ev));
	kp_rx_init(&rx);
	feed_all(&rx, stream, n, 1, &ev);
	for (size_t i = 0; i < ev.n; i++) {
		if (ev.ev[i].kind != KP_RX_FRAME) {
			assert_int_equal(ev.ev[i].kind, KP_RX_ERROR);
			assert_int_not_equal(ev.ev[i].err, KP_OK);
			continue;
		}
		assert_int_equal(ev.ev[i].hdr.seq, ++frames);
		assert_memory_equal(ev.payload[i], pl, sizeof(pl));
	}
	assert_int_equal(frames, 3);
	assert_int_equal(rx.frames_ok, 3);
	assert_true(rx.frames_bad >= 2);
	assert_true(rx.bytes_discarded > 0);
}

static void test_rx_truncated_frame_then_good(void **state)
{
	/* a frame cut mid-way (lost bytes) is dropped; the next frame's
	 * leading delimiter ends it, and the next frame is received */
	uint8_t pl[100];
	static events_t ev;
	kp_rx_t rx;
	size_t n, al;

	(void)state;
	memset(pl, 0x5A, sizeof(pl));
	al = encode(0x03, 0, 1, pl, sizeof(pl), stream, sizeof(stream));
	n = al / 2; /* keep the first half, lose the rest */
	n += encode(0x03, 0, 2, pl, sizeof(pl), stream + n, sizeof(stream) - n);
	memset(&ev, 0, sizeof(ev));
	kp_rx_init(&rx);
	feed_all(&rx, stream, n, 5, &ev);
	assert_int_equal(ev.n, 2);
	assert_int_equal(ev.ev[0].kind, KP_RX_ERROR);
	assert_true(ev.ev[0].err == KP_ERR_COBS || ev.ev[0].err == KP_ERR_CRC ||
		    ev.ev[0].err == KP_ERR_TRUNCATED);
	assert_int_equal(ev.ev[1].kind, KP_RX_FRAME);
	assert_int_equal(ev.ev[1].hdr.seq, 2);
}

static void test_rx_oversize_once_then_good(void **state)
{
	static events_t ev;
	kp_rx_t rx;
	size_t n = 0;
	static const size_t sizes[] = {KP_MAX_COBS + 1, KP_MAX_COBS + 2, 5000};

	(void)state;
	for (size_t k = 0; k < 3; k++) {
		n = 0;
		stream[n++] = 0;
		memset(stream + n, 'A', sizes[k]);
		n += sizes[k];
		n += encode(0x05, 0, 77, NULL, 0, stream + n, sizeof(stream) - n);
		for (size_t step = 1; step <= 4096; step *= 8) {
			memset(&ev, 0, sizeof(ev));
			kp_rx_init(&rx);
			feed_all(&rx, stream, n, step, &ev);
			assert_int_equal(ev.n, 2);
			assert_int_equal(ev.ev[0].kind, KP_RX_ERROR);
			assert_int_equal(ev.ev[0].err, KP_ERR_TOO_LARGE);
			assert_int_equal(ev.ev[1].kind, KP_RX_FRAME);
			assert_int_equal(ev.ev[1].hdr.seq, 77);
			assert_int_equal(rx.frames_bad, 1);
			assert_int_equal(rx.bytes_discarded, sizes[k]);
		}
	}
}

static void test_rx_largest_frame_fits(void **state)
{
	/* a maximal payload of non-zero bytes has the longest COBS form;
	 * the receiver must hold it */
	static uint8_t pl[KP_MAX_PAYLOAD];
	static events_t ev;
	kp_rx_t rx;
	size_t n;

	(void)state;
	memset(pl, 0xEE, sizeof(pl));
	n = encode(0x03, 0, 5, pl, sizeof(pl), stream, sizeof(stream));
	assert_true(n <= KP_MAX_WIRE);
	memset(&ev, 0, sizeof(ev));
	kp_rx_init(&rx);
	feed_all(&rx, stream, n, 1, &ev);
	assert_int_equal(ev.n, 1);
	assert_int_equal(ev.ev[0].kind, KP_RX_FRAME);
	assert_int_equal(ev.ev[0].hdr.len, KP_MAX_PAYLOAD);
	assert_memory_equal(ev.payload[0], pl, KP_MAX_PAYLOAD);
}

static void test_rx_each_error_reported(void **state)
{
	/* each rejected chunk is one KP_RX_ERROR with its own code */
	uint8_t raw[32];
	static events_t ev;
	kp_rx_t rx;
	size_t n = 0;
	static const kp_err_t want[] = {KP_ERR_CRC, KP_ERR_VERSION, KP_ERR_FLAGS,
					KP_ERR_TRUNCATED, KP_ERR_TRAILING,
					KP_ERR_TOO_LARGE, KP_ERR_COBS};

	(void)state;
	hdr_bytes(raw, 1, 1, 0, 0, 1, 1);
	raw[8] = 0x42;
	stream[n++] = 0;
	n += forge(raw, 9, 0xFF, stream + n, sizeof(stream) - n);
	stream[n++] = 0;
	hdr_bytes(raw, 9, 1, 0, 0, 1, 1);
	n += forge(raw, 9, 0, stream + n, sizeof(stream) - n);
	stream[n++] = 0;
	hdr_bytes(raw, 1, 1, 0x04, 0, 1, 1);
	n += forge(raw, 9, 0, stream + n, sizeof(stream) - n);
	stream[n++] = 0;
	hdr_bytes(raw, 1, 1, 0, 0, 1, 2);
	n += forge(raw, 9, 0, stream + n, sizeof(stream) - n);
	stream[n++] = 0;
	hdr_bytes(raw, 1, 1, 0, 0, 1, 0);
	n += forge(raw, 9, 0, stream + n, sizeof(stream) - n);
	stream[n++] = 0;
	hdr_bytes(raw, 1, 1, 0, 0, 1, 2000);
	n += forge(raw, 9, 0, stream + n, sizeof(stream) - n);
	stream[n++] = 0;
	memcpy(stream + n, "\x09\x01\x02", 3);
	n += 3;
	n += encode(0x01, 0, 1, NULL, 0, stream + n, sizeof(stream) - n);
	memset(&ev, 0, sizeof(ev));
	kp_rx_init(&rx);
	feed_all(&rx, stream, n, 1, &ev);
	assert_int_equal(ev.n, 8);
	for (size_t i = 0; i < 7; i++) {
		assert_int_equal(ev.ev[i].kind, KP_RX_ERROR);
		assert_string_equal(kp_err_name((int)ev.ev[i].err),
				    kp_err_name((int)want[i]));
	}
	assert_int_equal(ev.ev[7].kind, KP_RX_FRAME);
	assert_int_equal(rx.frames_bad, 7);
	assert_int_equal(rx.frames_ok, 1);
}

static void test_rx_empty_chunks_silent(void **state)
{
	uint8_t zeros[100] = {0};
	kp_rx_t rx;
	kp_rx_event_t ev;

	(void)state;
	kp_rx_init(&rx);
	assert_int_equal(kp_rx_feed(&rx, zeros, sizeof(zeros), &ev), 100);
	assert_int_equal(ev.kind, KP_RX_NONE);
	assert_int_equal(kp_rx_feed(&rx, zeros, 0, &ev), 0);
	assert_int_equal(ev.kind, KP_RX_NONE);
	assert_int_equal(rx.frames_bad, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_roundtrip),
		cmocka_unit_test(test_frame_exact_bytes),
		cmocka_unit_test(test_frame_encode_args),
		cmocka_unit_test(test_frame_rejects),
		cmocka_unit_test(test_rx_back_to_back_any_chunking),
		cmocka_unit_test(test_rx_shared_delimiter),
		cmocka_unit_test(test_rx_resync_after_boot_log_and_garbage),
		cmocka_unit_test(test_rx_truncated_frame_then_good),
		cmocka_unit_test(test_rx_oversize_once_then_good),
		cmocka_unit_test(test_rx_largest_frame_fits),
		cmocka_unit_test(test_rx_each_error_reported),
		cmocka_unit_test(test_rx_empty_chunks_silent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
