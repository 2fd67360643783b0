/*
 * kiln station library: internals shared by the transport back ends.
 * Not a public header: only host/lib/transport*.c include it.
 */
#ifndef KILN_HOST_LIB_TRANSPORT_PRIV_H
#define KILN_HOST_LIB_TRANSPORT_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "host/lib/transport.h"

typedef struct {
	/* write up to n bytes by the deadline; *done receives the count */
	ks_err_t (*write)(ks_link_t *l, const uint8_t *buf, size_t n,
			  int64_t deadline_ms, size_t *done);
	ks_err_t (*read)(ks_link_t *l, uint8_t *buf, size_t cap,
			 int64_t deadline_ms, size_t *got);
	void (*close)(ks_link_t *l);
} ks_link_ops_t;

struct ks_link {
	const ks_link_ops_t *ops;
	ks_link_kind_t kind;
	int fd;      /* serial / unix */
	void *priv;  /* usb state */
	char desc[KS_LINK_PATH_MAX + 64];
	ks_link_stats_t stats;
};

/** Record a failure message for ks_link_last_error(). */
void ks_link_set_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/** Map an errno from open/connect to a ks_err_t. */
ks_err_t ks_link_errno_to_err(int e);

/** poll()-based read from l->fd (serial, unix). */
ks_err_t ks_link_fd_read(ks_link_t *l, uint8_t *buf, size_t cap,
			 int64_t deadline_ms, size_t *got);

/** poll()-based write to l->fd (serial, unix). */
ks_err_t ks_link_fd_write(ks_link_t *l, const uint8_t *buf, size_t n,
			  int64_t deadline_ms, size_t *done);

/* Back ends: open the parsed spec into the (zeroed) link l. */
ks_err_t ks_link_serial_open(ks_link_t *l, const ks_link_spec_t *s);
ks_err_t ks_link_unix_open(ks_link_t *l, const ks_link_spec_t *s);
ks_err_t ks_link_usb_open(ks_link_t *l, const ks_link_spec_t *s);

#endif
