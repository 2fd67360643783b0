/*
 * kiln agent: the receive loop and the command state machine.
 *
 * A port owns one ka_agent_t (statically: the core never allocates),
 * calls ka_agent_init() once at boot and then ka_agent_poll() forever.
 * Requests are answered per docs/protocol.md; the normative behaviour is
 * summarised in docs/porting.md ("What the core does").
 *
 * RAM: the struct holds one receive frame buffer (kp_rx_t), one transmit
 * frame buffer (also the cached last response, re-sent on a retransmitted
 * request), and one work area that is time-shared: the mbedTLS heap during
 * a crypto call, the identity blob read back from flash during COMMIT, and
 * the response payload while it is framed. Identity objects are not
 * staged in RAM: PUT_OBJECT writes them to flash as they arrive.
 */
#ifndef KILN_DEVICE_CORE_AGENT_H
#define KILN_DEVICE_CORE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device/core/channel.h"
#include "device/core/crypto.h"
#include "device/core/record.h"
#include "device/core/stage.h"
#include "protocol/frame.h"
#include "protocol/msg.h"

#define KA_AGENT_VERSION "0.2.0"

/** mbedTLS heap. Measured minimum (tests/unit/test_dev_agent.c,
 * test_heap_budget): 4192 bytes for the CSR, 2976 to sign, 2416 to
 * generate a key; this leaves ~10% for variation between keys.
 * (tests/unit/test_dev_agent.c checks the operations succeed with it). */
#ifndef KA_CRYPTO_HEAP
#define KA_CRYPTO_HEAP 4608u
#endif
#define KA_WORK_MAX2(a, b) ((a) > (b) ? (a) : (b))
#define KA_WORK_SIZE KA_WORK_MAX2(KA_CRYPTO_HEAP, KP_MAX_PAYLOAD)
/** Largest identity blob the agent accepts: COMMIT reads it back from
 * flash into the work area to check it. */
#define KA_BLOB_MAX KA_WORK_SIZE

/* What ka_agent_t's trace hook is told about each frame. */
typedef enum {
	KA_TRACE_REQUEST = 0,    /* a request was executed: status */
	KA_TRACE_RETRANSMIT = 1, /* the cached response was re-sent */
	KA_TRACE_BAD_FRAME = 2,  /* undecodable input (status = kp_err_t) */
	KA_TRACE_STALE = 3,      /* a stale request was ignored */
} ka_trace_event_t;

/** Requests whose seq is 1..KA_STALE_WINDOW behind the last executed
 * request's are stale (delayed or replayed frames) and get no answer. */
#define KA_STALE_WINDOW 32u

typedef void (*ka_trace_fn)(void *ctx, ka_trace_event_t ev, uint8_t type,
			    uint16_t seq, uint16_t status);

/* The agent. Members are private to device/core: use the functions. */
typedef struct {
	kp_rx_t rx;
	uint8_t tx[KP_MAX_WIRE]; /* last response frame, for retransmits */
	size_t tx_len;           /* 0: nothing cached */
	/* the last request processed: type, seq and SHA-256 of its payload */
	bool last_valid;
	uint8_t last_type;
	uint16_t last_seq;
	uint16_t last_len;
	uint8_t last_hash[32];

	ka_store_t store;
	uint8_t pubkey[KA_PUBKEY_LEN]; /* public point of store.key_slot */
	bool pubkey_ok;
	uint8_t integrity; /* kp_status_t: store's, or the key's */
	uint8_t uid[32];
	uint8_t uid_len;
	const char *detail; /* ERROR detail of the current request */

	ka_channel_t chan;  /* the sealed channel, if SECURE_OPEN ran */
	bool req_sealed;    /* the current request arrived sealed */

	ka_stage_t stage;
	_Alignas(8) uint8_t work[KA_WORK_SIZE];

	ka_trace_fn trace;
	void *trace_ctx;
} ka_agent_t;

/**
 * Boot: read the UID, scan OTP and flash (integrity check of a committed
 * identity), derive the current public key. Returns KP_ST_OK, or the
 * failure (the agent still runs and reports it as integrity).
 */
kp_status_t ka_agent_init(ka_agent_t *a);

/** Install a hook called once per received frame (NULL: none). */
void ka_agent_set_trace(ka_agent_t *a, ka_trace_fn fn, void *ctx);

/**
 * Process received bytes: every complete request is executed and
 * answered with ka_hal_tx().
 */
void ka_agent_feed(ka_agent_t *a, const uint8_t *data, size_t n);

/**
 * Wait up to timeout_ms for input and process it. Returns 0, or
 * KA_HAL_RX_CLOSED when the transport has no more input.
 */
int ka_agent_poll(ka_agent_t *a, uint32_t timeout_ms);

/** Current state (kp_state_t) as HELLO reports it. */
kp_state_t ka_agent_state(const ka_agent_t *a);

#endif
