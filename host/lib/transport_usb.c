/*
 * kiln station library: USB back end (libusb-1.0). Finds the board by
 * VID/PID[/serial] or by its physical port path, claims the first
 * interface that has a bulk IN + bulk OUT endpoint pair (on a CDC-ACM
 * board: the data interface) and moves bytes with bulk transfers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libusb-1.0/libusb.h>

#include "host/lib/transport_priv.h"

#define USB_RX_BUF 4096u
#define USB_CDC_DATA_CLASS 0x0au
#define USB_CDC_SET_CONTROL_LINE_STATE 0x22u

typedef struct {
	libusb_context *ctx;
	libusb_device_handle *h;
	int iface;
	int comm_iface; /* CDC control interface we claimed, or -1 */
	uint8_t ep_in, ep_out;
	uint16_t in_mps;
	uint8_t rx[USB_RX_BUF];
	size_t rx_pos, rx_len;
} usb_state_t;

/* libusb timeouts: 0 means "forever", so a poll becomes 1 ms. */
static unsigned usb_timeout(int64_t deadline_ms)
{
	int left = ks_link_remaining(deadline_ms);

	if (left < 0)
		return 0;
	return left == 0 ? 1u : (unsigned)left;
}

static ks_err_t usb_map(ks_link_t *l, const char *what, int rc)
{
	ks_link_set_error("%s: %s: %s", l->desc, what, libusb_strerror(rc));
	switch (rc) {
	case LIBUSB_ERROR_TIMEOUT:
		return KS_ERR_TIMEOUT;
	case LIBUSB_ERROR_NO_DEVICE:
		return KS_ERR_CLOSED;
	case LIBUSB_ERROR_NOT_FOUND:
		return KS_ERR_NOTFOUND;
	case LIBUSB_ERROR_BUSY:
	case LIBUSB_ERROR_ACCESS:
		return KS_ERR_BUSY;
	case LIBUSB_ERROR_NO_MEM:
		return KS_ERR_NOMEM;
	default:
		return KS_ERR_IO;
	}
}

static ks_err_t usb_read(ks_link_t *l, uint8_t *buf, size_t cap,
			 int64_t deadline_ms, size_t *got)
{
	usb_state_t *u = l->priv;

	while (u->rx_pos == u->rx_len) {
		int n = 0;
		/* Whole packets only: a short buffer would overflow. */
		int want = (int)(USB_RX_BUF - USB_RX_BUF % u->in_mps);
		int rc = libusb_bulk_transfer(u->h, u->ep_in, u->rx, want, &n,
					      usb_timeout(deadline_ms));

		if (n > 0) {
			u->rx_pos = 0;
			u->rx_len = (size_t)n;
			break;
		}
		if (rc == LIBUSB_ERROR_TIMEOUT && ks_link_remaining(deadline_ms) != 0)
			continue;
		if (rc == 0)
			continue; /* zero-length packet */
		return usb_map(l, "bulk IN", rc);
	}
	*got = u->rx_len - u->rx_pos < cap ? u->rx_len - u->rx_pos : cap;
	memcpy(buf, u->rx + u->rx_pos, *got);
	u->rx_pos += *got;
	return KS_OK;
}

static ks_err_t usb_write(ks_link_t *l, const uint8_t *buf, size_t n,
			  int64_t deadline_ms, size_t *done)
{
	usb_state_t *u = l->priv;
	int len = n > 0x10000 ? 0x10000 : (int)n;
	int sent = 0;
	int rc = libusb_bulk_transfer(u->h, u->ep_out, (unsigned char *)buf,
				      len, &sent, usb_timeout(deadline_ms));

	*done = sent > 0 ? (size_t)sent : 0;
	if (rc == 0 || (rc == LIBUSB_ERROR_TIMEOUT && sent > 0 &&
			ks_link_remaining(deadline_ms) != 0))
		return KS_OK;
	return usb_map(l, "bulk OUT", rc);
}

static void usb_free_state(usb_state_t *u)
{
	if (u == NULL)
		return;
	if (u->h != NULL) {
		if (u->iface >= 0)
			(void)libusb_release_interface(u->h, u->iface);
		if (u->comm_iface >= 0)
			(void)libusb_release_interface(u->h, u->comm_iface);
		libusb_close(u->h);
	}
	if (u->ctx != NULL)
		libusb_exit(u->ctx);
	free(u);
}

static void usb_close(ks_link_t *l)
{
	usb_free_state(l->priv);
	l->priv = NULL;
}

static const ks_link_ops_t usb_ops = {
	.write = usb_write,
	.read = usb_read,
	.close = usb_close,
};

static int usb_port_matches(libusb_device *dev, const ks_link_spec_t *s)
{
	uint8_t ports[KS_LINK_USB_PORTS_MAX];
	int n;

	if (libusb_get_bus_number(dev) != s->bus)
		return 0;
	n = libusb_get_port_numbers(dev, ports, (int)sizeof(ports));
	return n == (int)s->nports && memcmp(ports, s->ports, s->nports) == 0;
}

/* Open dev if it matches the spec; *h is left NULL when it does not. */
static int usb_try_device(libusb_device *dev, const ks_link_spec_t *s,
			  libusb_device_handle **h)
{
	struct libusb_device_descriptor dd;
	unsigned char sn[KS_LINK_USB_SERIAL_MAX + 1];
	int rc;

	*h = NULL;
	if (s->usb_by_port) {
		if (!usb_port_matches(dev, s))
			return 0;
		return libusb_open(dev, h);
	}
	rc = libusb_get_device_descriptor(dev, &dd);
	if (rc != 0 || dd.idVendor != s->vid || dd.idProduct != s->pid)
		return 0;
	rc = libusb_open(dev, h);
	if (rc != 0 || s->usb_serial[0] == '\0')
		return rc;
	if (dd.iSerialNumber == 0 ||
	    libusb_get_string_descriptor_ascii(*h, dd.iSerialNumber, sn,
					       (int)sizeof(sn)) < 0 ||
	    strcmp((const char *)sn, s->usb_serial) != 0) {
		libusb_close(*h);
		*h = NULL;
	}
	return 0;
}

/* First interface (altsetting 0) with a bulk IN and a bulk OUT endpoint. */
static int usb_find_bulk(libusb_device *dev, usb_state_t *u, uint8_t *cls)
{
	struct libusb_config_descriptor *cfg = NULL;
	int found = 0;

	if (libusb_get_active_config_descriptor(dev, &cfg) != 0 &&
	    libusb_get_config_descriptor(dev, 0, &cfg) != 0)
		return 0;
	for (int i = 0; i < cfg->bNumInterfaces && !found; i++) {
		const struct libusb_interface_descriptor *id;
		uint8_t in = 0, out = 0;
		uint16_t mps = 0;

		if (cfg->interface[i].num_altsetting < 1)
			continue;
		id = &cfg->interface[i].altsetting[0];
		for (int e = 0; e < id->bNumEndpoints; e++) {
			const struct libusb_endpoint_descriptor *ep =
				&id->endpoint[e];

			if ((ep->bmAttributes & 0x03u) !=
			    LIBUSB_TRANSFER_TYPE_BULK)
				continue;
			if ((ep->bEndpointAddress & LIBUSB_ENDPOINT_IN) != 0) {
				if (in == 0) {
					in = ep->bEndpointAddress;
					mps = ep->wMaxPacketSize;
				}
			} else if (out == 0) {
				out = ep->bEndpointAddress;
			}
		}
		if (in != 0 && out != 0) {
			u->iface = id->bInterfaceNumber;
			u->ep_in = in;
			u->ep_out = out;
			u->in_mps = mps != 0 && mps <= USB_RX_BUF ? mps : 64u;
			*cls = id->bInterfaceClass;
			found = 1;
		}
	}
	libusb_free_config_descriptor(cfg);
	return found;
}

static void usb_describe(ks_link_t *l, const ks_link_spec_t *s)
{
	if (s->usb_by_port) {
		int n = snprintf(l->desc, sizeof(l->desc), "usb @%u-", s->bus);

		for (uint8_t i = 0; i < s->nports && n > 0 &&
				    (size_t)n < sizeof(l->desc);
		     i++)
			n += snprintf(l->desc + n, sizeof(l->desc) - (size_t)n,
				      "%s%u", i ? "." : "", s->ports[i]);
	} else {
		snprintf(l->desc, sizeof(l->desc), "usb %04x:%04x%s%s", s->vid,
			 s->pid, s->usb_serial[0] ? ":" : "", s->usb_serial);
	}
}

ks_err_t ks_link_usb_open(ks_link_t *l, const ks_link_spec_t *s)
{
	libusb_device **list = NULL;
	libusb_device *dev = NULL;
	usb_state_t *u;
	uint8_t cls = 0;
	ssize_t cnt;
	ks_err_t r;
	int rc;

	usb_describe(l, s);
	u = calloc(1, sizeof(*u));
	if (u == NULL) {
		ks_link_set_error("%s: out of memory", l->desc);
		return KS_ERR_NOMEM;
	}
	u->iface = -1;
	u->comm_iface = -1;
	rc = libusb_init(&u->ctx);
	if (rc != 0) {
		u->ctx = NULL;
		r = usb_map(l, "libusb_init", rc);
		goto fail;
	}
	cnt = libusb_get_device_list(u->ctx, &list);
	if (cnt < 0) {
		r = usb_map(l, "device list", (int)cnt);
		goto fail;
	}
	for (ssize_t i = 0; i < cnt && u->h == NULL; i++) {
		rc = usb_try_device(list[i], s, &u->h);
		if (rc != 0) {
			r = usb_map(l, "open", rc);
			goto fail;
		}
		if (u->h != NULL)
			dev = list[i];
	}
	if (u->h == NULL) {
		ks_link_set_error("%s: no such USB device attached", l->desc);
		r = KS_ERR_NOTFOUND;
		goto fail;
	}
	if (!usb_find_bulk(dev, u, &cls)) {
		ks_link_set_error("%s: device has no interface with a bulk "
				  "IN/OUT endpoint pair", l->desc);
		r = KS_ERR_UNSUPPORTED;
		goto fail;
	}
	(void)libusb_set_auto_detach_kernel_driver(u->h, 1);
	rc = libusb_claim_interface(u->h, u->iface);
	if (rc != 0) {
		u->iface = -1; /* not claimed: nothing to release */
		r = usb_map(l, "claim interface", rc);
		goto fail;
	}
	/* CDC-ACM: many device stacks only send once DTR is raised on the
	 * control interface, which precedes the data interface. */
	if (cls == USB_CDC_DATA_CLASS && u->iface > 0 &&
	    libusb_claim_interface(u->h, u->iface - 1) == 0) {
		u->comm_iface = u->iface - 1;
		(void)libusb_control_transfer(
			u->h,
			LIBUSB_REQUEST_TYPE_CLASS | LIBUSB_RECIPIENT_INTERFACE,
			USB_CDC_SET_CONTROL_LINE_STATE, 0x0003,
			(uint16_t)u->comm_iface, NULL, 0, 1000);
	}
	libusb_free_device_list(list, 1);
	l->priv = u;
	l->ops = &usb_ops;
	{
		size_t n = strlen(l->desc);

		snprintf(l->desc + n, sizeof(l->desc) - n,
			 " (bus %u addr %u, interface %d, ep %02x/%02x)",
			 libusb_get_bus_number(dev),
			 libusb_get_device_address(dev), u->iface, u->ep_in,
			 u->ep_out);
	}
	return KS_OK;
fail:
	if (list != NULL)
		libusb_free_device_list(list, 1);
	usb_free_state(u);
	return r;
}
