/*
 * Link-fault relay: sits between the station and a board that listens on
 * a unix stream socket (kiln-agent-sim --unix), and forwards bytes both
 * ways through a fault model:
 *   - per byte: drop, bit flip, duplicate, truncate (drop everything up
 *     to the next frame delimiter), boot-log text inserted inside a frame
 *   - per frame: a boot-log line inserted between frames, an earlier
 *     frame of the same direction re-sent (a stale frame / replay)
 *   - once, when armed: "unplug" after N bytes of one direction, which
 *     closes both sides mid-frame
 * The station connects to the relay's own socket ("unix:PATH"); every
 * accepted connection gets a fresh connection to the board. A seeded
 * xorshift generator makes runs repeatable.
 */
#ifndef KILN_TESTS_LINKFAULT_LF_RELAY_H
#define KILN_TESTS_LINKFAULT_LF_RELAY_H

#include <stdbool.h>
#include <stdint.h>

/* Directions. */
#define LF_UP 0   /* station -> board (requests) */
#define LF_DOWN 1 /* board -> station (responses) */

/* Fault rates of one direction (probabilities, 0..1). */
typedef struct {
	double drop, flip, dup, trunc; /* per byte */
	double noise_byte;             /* per byte: a boot-log line here */
	double noise_frame;            /* per frame: a line after it */
	double replay;                 /* per frame: an older frame again */
} lf_dir_cfg_t;

typedef struct {
	uint64_t bytes_in;  /* bytes read from the sender */
	uint64_t bytes_out; /* bytes written to the receiver */
	uint64_t frames;    /* delimited frames seen in the clean stream */
	uint64_t requests_repeated; /* LF_UP: frames whose (type, seq)
				       equals the previous one's: the
				       station's retransmissions */
	uint64_t drops, flips, dups, truncs, noise_lines, replays;
} lf_dir_stats_t;

typedef struct lf_relay lf_relay_t;

/**
 * Listen on listen_path and relay every connection to board_path.
 * Returns 0, or -1 (message on stderr).
 */
int lf_relay_start(const char *listen_path, const char *board_path,
		   uint64_t seed, lf_relay_t **out)
	__attribute__((warn_unused_result));

/** Set the fault rates (applies from the next byte on). */
void lf_relay_set(lf_relay_t *r, const lf_dir_cfg_t *up,
		  const lf_dir_cfg_t *down);

/** Arm one unplug: after n more bytes relayed in direction dir. */
void lf_relay_unplug_after(lf_relay_t *r, int dir, uint64_t n);

/** Wait until no connection is being relayed; false on timeout. */
bool lf_relay_wait_idle(lf_relay_t *r, int timeout_ms);

/** Counters since the start (dir LF_UP / LF_DOWN), unplugs, connections. */
void lf_relay_stats(lf_relay_t *r, lf_dir_stats_t st[2], unsigned *unplugs,
		    unsigned *connections);

/** Stop the relay thread, close everything, remove the socket. */
void lf_relay_stop(lf_relay_t **r);

#endif
