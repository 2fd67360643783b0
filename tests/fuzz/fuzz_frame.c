/*
 * Fuzz target: the frame layer. Arbitrary bytes go through the streaming
 * receiver (in chunks whose sizes come from the input), through
 * kp_frame_decode and through the COBS decoder. Every accepted frame must
 * satisfy the header rules and survive an encode/decode round trip.
 */
#include <stdlib.h>
#include <string.h>

#include "protocol/frame.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(c)                   \
	do {                       \
		if (!(c))          \
			abort();   \
	} while (0)

/* An accepted frame re-encodes to a frame that decodes to itself. */
static void check_frame(const kp_hdr_t *h, const uint8_t *payload)
{
	static uint8_t wire[KP_MAX_WIRE];
	kp_hdr_t h2;
	const uint8_t *p2;
	size_t n;

	CHECK(h->version == KP_PROTO_VERSION);
	CHECK((h->flags & ~KP_FLAGS_KNOWN) == 0);
	CHECK(h->len <= KP_MAX_PAYLOAD);
	CHECK(kp_frame_encode(h, payload, h->len, wire, sizeof(wire), &n) == KP_OK);
	CHECK(n >= 2 && n <= KP_MAX_WIRE && wire[0] == 0 && wire[n - 1] == 0);
	CHECK(memchr(wire + 1, 0, n - 2) == NULL);
	CHECK(kp_frame_decode(wire + 1, n - 2, &h2, &p2) == KP_OK);
	CHECK(h2.type == h->type && h2.flags == h->flags && h2.seq == h->seq &&
	      h2.len == h->len);
	CHECK(h->len == 0 || memcmp(p2, payload, h->len) == 0);
}

static void fuzz_rx(const uint8_t *data, size_t size)
{
	static kp_rx_t rx;
	size_t pos = 0, step;

	kp_rx_init(&rx);
	/* chunk size from the first byte: 1..256 */
	step = size > 0 ? (size_t)data[0] + 1u : 1u;
	while (pos < size) {
		size_t chunk = size - pos < step ? size - pos : step, off = 0;

		while (off < chunk) {
			kp_rx_event_t ev;
			size_t used = kp_rx_feed(&rx, data + pos + off, chunk - off,
						 &ev);

			CHECK(used > 0 && used <= chunk - off);
			off += used;
			if (ev.kind == KP_RX_FRAME)
				check_frame(&ev.hdr, ev.payload);
			else if (ev.kind == KP_RX_ERROR)
				CHECK(ev.err != KP_OK);
			else
				CHECK(off == chunk);
		}
		pos += chunk;
	}
	CHECK(rx.len <= sizeof(rx.buf));
}

static void fuzz_decode(const uint8_t *data, size_t size)
{
	static uint8_t buf[KP_MAX_COBS + 16];
	size_t n = size < sizeof(buf) ? size : sizeof(buf), out;
	kp_hdr_t h;
	const uint8_t *p;
	kp_err_t r;

	if (n > 0)
		memcpy(buf, data, n);
	r = kp_frame_decode(buf, n, &h, &p);
	if (r == KP_OK) {
		CHECK(p == buf + KP_HDR_LEN);
		check_frame(&h, p);
	}
	/* COBS alone: whatever decodes re-encodes and decodes the same */
	if (n > 0)
		memcpy(buf, data, n);
	if (kp_cobs_decode_inplace(buf, n, &out) == KP_OK) {
		static uint8_t enc[KP_COBS_MAX(KP_MAX_COBS + 16)];
		size_t el, dl;

		CHECK(out <= n);
		CHECK(kp_cobs_encode(buf, out, enc, sizeof(enc), &el) == KP_OK);
		CHECK(memchr(enc, 0, el) == NULL);
		CHECK(kp_cobs_decode_inplace(enc, el, &dl) == KP_OK);
		CHECK(dl == out && (out == 0 || memcmp(enc, buf, out) == 0));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_rx(data, size);
	fuzz_decode(data, size);
	return 0;
}
