/*
 * kiln station library: byte links to a board's agent.
 *
 * One interface over three transports, chosen by a spec string:
 *   serial:/dev/ttyACM0@115200   termios raw, exclusive (TIOCEXCL + flock)
 *   /dev/pts/3                   a bare path: serial at 115200 baud
 *   unix:/run/kiln/board0.sock   a unix stream socket (QEMU, the simulator)
 *   usb:VID:PID[:SERIAL]         libusb-1.0, bulk IN/OUT pair of the first
 *   usb:@BUS-PORT[.PORT...]      interface that has one (e.g. usb:@1-1.3)
 *
 * Links carry bytes only; framing is the caller's (protocol/frame.h).
 * Every failure leaves a message naming the spec and the OS error in
 * ks_link_last_error() (per thread).
 */
#ifndef KILN_HOST_LIB_TRANSPORT_H
#define KILN_HOST_LIB_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/lib/err.h"

typedef struct ks_link ks_link_t;

typedef enum {
	KS_LINK_SERIAL = 1,
	KS_LINK_UNIX = 2,
	KS_LINK_USB = 3,
} ks_link_kind_t;

#define KS_LINK_PATH_MAX 256u
#define KS_LINK_USB_SERIAL_MAX 127u
#define KS_LINK_USB_PORTS_MAX 7u
#define KS_LINK_DEFAULT_BAUD 115200u

/* A parsed spec. */
typedef struct {
	ks_link_kind_t kind;
	char path[KS_LINK_PATH_MAX]; /* serial device or socket path */
	unsigned baud;               /* serial */
	/* usb: either by id (vid, pid, optional serial) or by port path */
	bool usb_by_port;
	uint16_t vid, pid;
	char usb_serial[KS_LINK_USB_SERIAL_MAX + 1]; /* "" = any */
	uint8_t bus;
	uint8_t ports[KS_LINK_USB_PORTS_MAX];
	uint8_t nports;
} ks_link_spec_t;

/* Traffic counters of one link. */
typedef struct {
	uint64_t tx_bytes;
	uint64_t rx_bytes;
	uint64_t reads;  /* successful read calls */
	uint64_t writes; /* successful write calls */
} ks_link_stats_t;

/**
 * Parse a spec strictly (no I/O). Returns KS_OK or KS_ERR_ARG with the
 * reason in ks_link_last_error().
 */
ks_err_t ks_link_parse_spec(const char *spec, ks_link_spec_t *out)
	__attribute__((warn_unused_result));

/**
 * Map a baud rate to its termios speed constant. Returns KS_OK or
 * KS_ERR_ARG for a rate the serial driver interface cannot express.
 */
ks_err_t ks_link_baud_constant(unsigned baud, unsigned *speed)
	__attribute__((warn_unused_result));

/**
 * Open the link named by spec. On success *out owns the link; close it
 * with ks_link_close(). Errors: KS_ERR_ARG (bad spec), KS_ERR_NOTFOUND
 * (no such file / socket / USB device), KS_ERR_BUSY (held by another
 * process), KS_ERR_IO, KS_ERR_UNSUPPORTED, KS_ERR_NOMEM.
 */
ks_err_t ks_link_open(const char *spec, ks_link_t **out)
	__attribute__((warn_unused_result));

/**
 * Write all n bytes within timeout_ms (-1: no limit). Returns KS_OK,
 * KS_ERR_TIMEOUT (some bytes may have been sent), KS_ERR_CLOSED (peer
 * gone) or KS_ERR_IO.
 */
ks_err_t ks_link_write(ks_link_t *l, const uint8_t *buf, size_t n,
		       int timeout_ms) __attribute__((warn_unused_result));

/**
 * Wait up to timeout_ms (-1: no limit, 0: poll) for input and read what is
 * available, at most cap bytes, into buf; *got receives the count (>= 1
 * on KS_OK). Returns KS_OK, KS_ERR_TIMEOUT, KS_ERR_CLOSED or KS_ERR_IO.
 */
ks_err_t ks_link_read(ks_link_t *l, uint8_t *buf, size_t cap, int timeout_ms,
		      size_t *got) __attribute__((warn_unused_result));

/** Close the link (NULL-safe) and set *l to NULL. */
void ks_link_close(ks_link_t **l);

/** Human-readable description, e.g. "serial /dev/pts/3 @115200". */
const char *ks_link_describe(const ks_link_t *l);

/** Kind of an open link. */
ks_link_kind_t ks_link_kind(const ks_link_t *l);

/** Copy the link's byte counters into *st. */
void ks_link_get_stats(const ks_link_t *l, ks_link_stats_t *st);

/** Monotonic clock in milliseconds. */
int64_t ks_link_now_ms(void);

/** Absolute deadline for a relative timeout (-1: none, returns -1). */
int64_t ks_link_deadline(int timeout_ms);

/** Milliseconds left until the deadline as a poll() timeout (-1: none). */
int ks_link_remaining(int64_t deadline_ms);

/** Message of the last transport failure in this thread; never NULL. */
const char *ks_link_last_error(void);

#endif
