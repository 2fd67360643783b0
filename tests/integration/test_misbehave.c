/*
 * Integration: the agent client against a misbehaving "board". A thread
 * plays the board on the master side of a real pseudo-terminal (the
 * client opens the slave with its ordinary termios code) and answers
 * garbage, boot-log text, wrong seqs, echoes, wrong types, bad TLVs, or
 * nothing. The client must return a clear error (or succeed where the
 * noise is recoverable) without crashing or waiting beyond its budget.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "host/lib/agent.h"
#include "host/lib/log.h"
#include "protocol/frame.h"

static int passed, failed;

#define CHECK(cond)                                                        \
	do {                                                               \
		if (cond) {                                                \
			passed++;                                          \
		} else {                                                   \
			failed++;                                          \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__,      \
				__LINE__, #cond);                          \
		}                                                          \
	} while (0)

typedef enum {
	B_SILENT,
	B_GARBAGE,
	B_BOOTLOG_THEN_OK,
	B_WRONG_SEQ,
	B_STALE_THEN_OK,
	B_ECHO,
	B_ECHO_THEN_OK,
	B_WRONG_TYPE,
	B_ERROR,
	B_BAD_TLV,
	B_LOSE_FIRST,
	B_HANGUP,
	B_OVERSIZE_THEN_OK,
	B_TRICKLE,
	B_PUT_WRONG_COUNT,
	B_READBACK_BAD_TOTAL,
	B_TOO_BIG_ANSWER,
} behaviour_t;

typedef struct {
	int master;
	behaviour_t how;
	atomic_int stop;
	atomic_int closed;
	int requests;
	uint8_t first[KP_MAX_WIRE];
	size_t first_len;
	int identical_retransmits;
	pthread_t thr;
} board_t;

static void put(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = write(fd, b, n);

		if (w <= 0)
			return;
		b += w;
		n -= (size_t)w;
	}
}

static size_t frame(uint8_t type, uint8_t flags, uint16_t seq,
		    const uint8_t *payload, size_t len, uint8_t *out)
{
	kp_hdr_t h = {.type = type, .flags = flags, .seq = seq,
		      .len = (uint16_t)len};
	size_t n = 0;

	if (kp_frame_encode(&h, payload, len, out, KP_MAX_WIRE, &n) != KP_OK)
		abort();
	return n;
}

static size_t hello_payload(uint8_t *out)
{
	static const uint8_t uid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	kp_hello_rsp_t m = {
		.proto = KP_MSG_VERSION, .agent_version = "fake-1.0", .agent_version_len = 8,
		.caps = KP_CAP_TRNG | KP_CAP_DEVKEY, .uid = uid,
		.uid_len = sizeof(uid), .board = "fakeboard", .board_len = 9,
		.max_payload = KP_MAX_PAYLOAD, .state = KP_STATE_BLANK,
		.slots_free = 4,
	};
	size_t n = 0;

	if (kp_hello_rsp_encode(&m, out, KP_MAX_PAYLOAD, &n) != KP_OK)
		abort();
	return n;
}

/* Answer one request according to the behaviour. */
static void answer(board_t *b, const kp_hdr_t *h, const uint8_t *raw,
		   size_t raw_len)
{
	uint8_t pl[KP_MAX_PAYLOAD], out[4096];
	size_t pn, n;

	b->requests++;
	if (b->requests == 1) {
		memcpy(b->first, raw, raw_len);
		b->first_len = raw_len;
	} else if (raw_len == b->first_len &&
		   memcmp(raw, b->first, raw_len) == 0) {
		b->identical_retransmits++;
	}
	pn = hello_payload(pl);
	switch (b->how) {
	case B_SILENT:
		break;
	case B_GARBAGE:
		for (int i = 0; i < 4; i++) {
			for (size_t j = 0; j < 1024; j++)
				out[j] = (uint8_t)rand();
			put(b->master, out, 1024);
		}
		break;
	case B_BOOTLOG_THEN_OK: {
		static const char log[] =
			"\r\nU-Boot SPL 2024.01\r\nTrying to boot from MMC1"
			"\r\n\x01\x02garbage\xff\xfe\r\nkiln-agent ready\r\n";

		put(b->master, log, sizeof(log) - 1);
		n = frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		put(b->master, out, n);
		break;
	}
	case B_WRONG_SEQ:
		n = frame(h->type, KP_FLAG_RESPONSE, (uint16_t)(h->seq + 1),
			  pl, pn, out);
		n += frame(h->type, KP_FLAG_RESPONSE, (uint16_t)(h->seq - 1),
			   pl, pn, out + n);
		put(b->master, out, n);
		break;
	case B_STALE_THEN_OK:
		n = frame(h->type, KP_FLAG_RESPONSE, (uint16_t)(h->seq - 1),
			  pl, pn, out);
		n += frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn, out + n);
		put(b->master, out, n);
		break;
	case B_ECHO:
		put(b->master, raw, raw_len);
		break;
	case B_ECHO_THEN_OK:
		put(b->master, raw, raw_len);
		n = frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		put(b->master, out, n);
		break;
	case B_WRONG_TYPE:
		n = frame(KP_MSG_STATUS, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		put(b->master, out, n);
		break;
	case B_ERROR: {
		kp_error_rsp_t e = {.has = KP_BIT(0x02) | KP_BIT(0x03),
				    .status = KP_ST_LOCKED,
				    .detail = "device is locked",
				    .detail_len = 16,
				    .request_type = h->type};

		if (kp_error_rsp_encode(&e, pl, sizeof(pl), &pn) != KP_OK)
			abort();
		n = frame(KP_MSG_ERROR, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		put(b->master, out, n);
		break;
	}
	case B_BAD_TLV:
		pl[pn - 1] ^= 0xff; /* still a valid frame, bad content */
		pl[0] = 0x7e;       /* an unknown critical tag */
		n = frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		put(b->master, out, n);
		break;
	case B_LOSE_FIRST:
		if (b->requests > 1) {
			n = frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn,
				  out);
			put(b->master, out, n);
		}
		break;
	case B_HANGUP:
		close(b->master);
		atomic_store(&b->closed, 1);
		break;
	case B_OVERSIZE_THEN_OK:
		memset(out, 0x55, 3000);
		put(b->master, out, 3000);
		n = frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		put(b->master, out, n);
		break;
	case B_TRICKLE:
		n = frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		for (size_t i = 0; i < n; i++) {
			put(b->master, out + i, 1);
			if (i % 16 == 0)
				(void)nanosleep(&(struct timespec){
							.tv_nsec = 5000000},
						NULL);
		}
		break;
	case B_PUT_WRONG_COUNT: {
		kp_put_object_rsp_t m = {.obj = KP_OBJ_IDENTITY,
					 .received = 5};

		if (kp_put_object_rsp_encode(&m, pl, sizeof(pl), &pn) != KP_OK)
			abort();
		n = frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		put(b->master, out, n);
		break;
	}
	case B_READBACK_BAD_TOTAL: {
		/* the total grows between chunks */
		static uint8_t data[KP_PUT_MAX_DATA];
		kp_readback_rsp_t m = {.total = 1000u + (uint32_t)b->requests,
				       .data = data,
				       .data_len = KP_PUT_MAX_DATA};

		if (kp_readback_rsp_encode(&m, pl, sizeof(pl), &pn) != KP_OK)
			abort();
		n = frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		put(b->master, out, n);
		break;
	}
	case B_TOO_BIG_ANSWER: {
		/* a READBACK claiming a blob larger than any identity */
		static const uint8_t data[4] = {1, 2, 3, 4};
		kp_readback_rsp_t m = {.total = 100000u, .data = data,
				       .data_len = 4};

		if (kp_readback_rsp_encode(&m, pl, sizeof(pl), &pn) != KP_OK)
			abort();
		n = frame(h->type, KP_FLAG_RESPONSE, h->seq, pl, pn, out);
		put(b->master, out, n);
		break;
	}
	}
}

static void *board_main(void *arg)
{
	board_t *b = arg;
	kp_rx_t rx;
	uint8_t buf[512];

	kp_rx_init(&rx);
	while (!atomic_load(&b->stop) && !atomic_load(&b->closed)) {
		struct pollfd p = {.fd = b->master, .events = POLLIN};
		ssize_t n;
		size_t off = 0;

		if (poll(&p, 1, 20) <= 0)
			continue;
		n = read(b->master, buf, sizeof(buf));
		if (n <= 0)
			continue;
		while (off < (size_t)n && !atomic_load(&b->closed)) {
			kp_rx_event_t ev;
			uint8_t raw[KP_MAX_WIRE];
			size_t used = kp_rx_feed(&rx, buf + off, (size_t)n - off,
						 &ev);
			size_t rl = 0;

			off += used;
			if (ev.kind != KP_RX_FRAME)
				continue;
			/* re-encode to get the wire bytes for echo/compare */
			rl = frame(ev.hdr.type, ev.hdr.flags, ev.hdr.seq,
				   ev.payload, ev.hdr.len, raw);
			answer(b, &ev.hdr, raw, rl);
		}
	}
	return NULL;
}

static ks_agent_t *board_start(board_t *b, behaviour_t how, int timeout_ms,
			       unsigned retries)
{
	ks_agent_opts_t o = {.timeout_ms = timeout_ms, .retries = retries};
	struct termios t;
	char slave[64], spec[80];
	ks_agent_t *a = NULL;

	memset(b, 0, sizeof(*b));
	b->how = how;
	b->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (b->master < 0 || grantpt(b->master) != 0 ||
	    unlockpt(b->master) != 0 ||
	    ptsname_r(b->master, slave, sizeof(slave)) != 0)
		abort();
	tcgetattr(b->master, &t);
	cfmakeraw(&t);
	tcsetattr(b->master, TCSANOW, &t);
	snprintf(spec, sizeof(spec), "serial:%s@115200", slave);
	if (ks_agent_open(spec, &o, &a) != KS_OK)
		abort();
	pthread_create(&b->thr, NULL, board_main, b);
	return a;
}

static void board_stop(board_t *b, ks_agent_t **a)
{
	atomic_store(&b->stop, 1);
	pthread_join(b->thr, NULL);
	ks_agent_free(a);
	if (!atomic_load(&b->closed))
		close(b->master);
}

/* HELLO against a behaviour; returns the result and elapsed ms. */
static ks_err_t run_hello(behaviour_t how, int timeout_ms, unsigned retries,
			  board_t *b, ks_agent_stats_t *st, int64_t *ms,
			  ks_agent_hello_t *h)
{
	ks_agent_t *a = board_start(b, how, timeout_ms, retries);
	int64_t t0 = ks_link_now_ms();
	ks_err_t r = ks_agent_hello(a, h);

	*ms = ks_link_now_ms() - t0;
	ks_agent_get_stats(a, st);
	if (r != KS_OK)
		printf("# %-2d %s: %s\n", (int)how, ks_strerror(r),
		       ks_agent_last_error(a));
	board_stop(b, &a);
	return r;
}

int main(void)
{
	board_t b;
	ks_agent_stats_t st;
	ks_agent_hello_t h;
	int64_t ms;
	ks_err_t r;

	ks_log_set_level(KS_LOG_ERROR);
	srand(1);

	/* nothing at all: 3 HELLOs, then a timeout on budget. A re-sent
	 * HELLO moves its seq past the agent's stale-request window (a new
	 * link may start inside the previous one's), so none is identical;
	 * other requests are re-sent byte for byte (linkfault, dev_agent). */
	r = run_hello(B_SILENT, 200, 2, &b, &st, &ms, &h);
	CHECK(r == KS_ERR_TIMEOUT);
	CHECK(ms >= 590 && ms < 1200);
	CHECK(b.requests == 3);
	CHECK(b.identical_retransmits == 0);
	CHECK(st.retransmits == 2);

	/* a stream of random bytes, zeros included */
	r = run_hello(B_GARBAGE, 200, 1, &b, &st, &ms, &h);
	CHECK(r == KS_ERR_TIMEOUT);
	CHECK(ms < 1000);
	CHECK(st.frames_bad > 0);

	/* boot log before the answer: resynchronise and succeed */
	r = run_hello(B_BOOTLOG_THEN_OK, 300, 0, &b, &st, &ms, &h);
	CHECK(r == KS_OK);
	CHECK(strcmp(h.board, "fakeboard") == 0);
	CHECK(strcmp(h.agent_version, "fake-1.0") == 0);
	CHECK(h.uid_len == 12 && h.uid[11] == 12);
	CHECK(h.st.slots_free == 4 && !h.st.has_pubkey);

	/* only answers with other seqs: skipped, then a timeout */
	r = run_hello(B_WRONG_SEQ, 150, 1, &b, &st, &ms, &h);
	CHECK(r == KS_ERR_TIMEOUT);
	CHECK(st.frames_skipped == 4);

	r = run_hello(B_STALE_THEN_OK, 300, 0, &b, &st, &ms, &h);
	CHECK(r == KS_OK);
	CHECK(st.frames_skipped == 1);

	/* a line that echoes our own frames (not a response) */
	r = run_hello(B_ECHO, 150, 0, &b, &st, &ms, &h);
	CHECK(r == KS_ERR_TIMEOUT);
	r = run_hello(B_ECHO_THEN_OK, 300, 0, &b, &st, &ms, &h);
	CHECK(r == KS_OK);

	/* right seq, wrong type / undecodable payload: protocol error */
	r = run_hello(B_WRONG_TYPE, 300, 3, &b, &st, &ms, &h);
	CHECK(r == KS_ERR_PROTO);
	CHECK(b.requests == 1);
	r = run_hello(B_BAD_TLV, 300, 3, &b, &st, &ms, &h);
	CHECK(r == KS_ERR_PROTO);

	/* a lost answer is recovered by one retransmission (a HELLO, so
	 * with a fresh seq: see above) */
	r = run_hello(B_LOSE_FIRST, 150, 2, &b, &st, &ms, &h);
	CHECK(r == KS_OK);
	CHECK(st.retransmits == 1);
	CHECK(b.requests == 2 && b.identical_retransmits == 0);

	/* the board disappears: closed, long before the retry budget */
	r = run_hello(B_HANGUP, 1000, 3, &b, &st, &ms, &h);
	CHECK(r == KS_ERR_CLOSED);
	CHECK(ms < 900);

	/* an over-long chunk without delimiter, then the answer */
	r = run_hello(B_OVERSIZE_THEN_OK, 300, 0, &b, &st, &ms, &h);
	CHECK(r == KS_OK);
	CHECK(st.frames_bad == 1);

	/* an answer trickling in byte by byte within the timeout */
	r = run_hello(B_TRICKLE, 1000, 0, &b, &st, &ms, &h);
	CHECK(r == KS_OK);

	/* ERROR answers carry status and detail */
	{
		ks_agent_t *a = board_start(&b, B_ERROR, 300, 0);

		CHECK(ks_agent_hello(a, &h) == KS_ERR_AGENT);
		CHECK(ks_agent_last_status(a) == KP_ST_LOCKED);
		CHECK(strcmp(ks_agent_last_detail(a), "device is locked") == 0);
		CHECK(strstr(ks_agent_last_error(a), "HELLO") != NULL);
		board_stop(&b, &a);
	}

	/* typed calls check what the board claims */
	{
		uint8_t data[20] = {0}, *blob = NULL;
		size_t len = 0;
		ks_agent_t *a = board_start(&b, B_PUT_WRONG_COUNT, 300, 0);

		CHECK(ks_agent_put_object(a, KP_OBJ_IDENTITY, data, sizeof(data),
					  NULL, NULL) == KS_ERR_PROTO);
		board_stop(&b, &a);
		a = board_start(&b, B_READBACK_BAD_TOTAL, 300, 0);
		CHECK(ks_agent_readback(a, &blob, &len) == KS_ERR_PROTO);
		CHECK(blob == NULL && len == 0);
		board_stop(&b, &a);
		a = board_start(&b, B_TOO_BIG_ANSWER, 300, 0);
		CHECK(ks_agent_readback(a, &blob, &len) == KS_ERR_PROTO);
		CHECK(blob == NULL);
		board_stop(&b, &a);
	}

	printf("misbehaving peer: %d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
