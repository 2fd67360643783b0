/*
 * kiln-enroll: field enrollment of a device with its claim credential.
 *
 * On the POSIX port (the simulator's image file is the part's OTP and
 * flash, through the HAL code kiln-agent-sim uses): open the factory
 * identity (kid_open), enroll over EST with it (kid_enroll: a new P-256
 * key on the device, its CSR POSTed over TLS 1.3 to the station's
 * enrollment service), store the operational identity in the
 * application flash sector, and optionally prove it: a TLS 1.3 client
 * connection made with the operational key and certificate (kid_op_*)
 * that sends one line and prints the reply.
 *
 * Usage: kiln-enroll --image FILE [--server HOST:PORT] --ca PEM
 *          [--name SERVER-NAME] [--sector N] [--connect HOST:PORT]
 *          [--message TEXT] [--timeout MS]
 *   --server   enroll (omit to use the operational identity stored)
 *   --connect  then talk mutual TLS with the operational identity
 * Exit: 0 ok, 2 usage, 3 identity refused, 4 TLS or network failure,
 * 5 no reply, 6 enrollment refused by the server, 7 bad response.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/error.h"
#include "mbedtls/net_sockets.h"
#include "mbedtls/ssl.h"
#include "mbedtls/x509_crt.h"
#include "psa/crypto.h"

#include "device/identity/enroll.h"
#include "device/identity/identity.h"
#include "device/ports/posix/sim_image.h"

#define EXIT_USAGE 2
#define EXIT_IDENTITY 3
#define EXIT_TLS 4
#define EXIT_REPLY 5
#define EXIT_REFUSED 6
#define EXIT_RESPONSE 7

typedef struct {
	const char *image, *ca, *name, *message;
	char server[256], connect[256];
	const char *server_port, *connect_port;
	uint32_t sector, timeout_ms;
} opts_t;

static int usage(void)
{
	fprintf(stderr,
		"usage: kiln-enroll --image FILE [--server HOST:PORT] --ca PEM "
		"[--name NAME] [--sector N] [--connect HOST:PORT] "
		"[--message TEXT] [--timeout MS]\n");
	return EXIT_USAGE;
}

static int split(const char *arg, char *host, size_t cap, const char **port)
{
	char *colon;

	if (strlen(arg) >= cap)
		return -1;
	strcpy(host, arg);
	colon = strrchr(host, ':');
	if (colon == NULL || colon == host || colon[1] == '\0')
		return -1;
	*colon = '\0';
	*port = colon + 1;
	return 0;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_args(int argc, char **argv, opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->name = "localhost";
	o->message = "hello from kiln";
	o->sector = 3;
	o->timeout_ms = 10000;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;

		if (i + 1 >= argc)
			return -1;
		v = argv[++i];
		if (strcmp(a, "--image") == 0)
			o->image = v;
		else if (strcmp(a, "--ca") == 0)
			o->ca = v;
		else if (strcmp(a, "--name") == 0)
			o->name = v;
		else if (strcmp(a, "--message") == 0)
			o->message = v;
		else if (strcmp(a, "--server") == 0) {
			if (split(v, o->server, sizeof(o->server),
				  &o->server_port) != 0)
				return -1;
		} else if (strcmp(a, "--connect") == 0) {
			if (split(v, o->connect, sizeof(o->connect),
				  &o->connect_port) != 0)
				return -1;
		} else if (strcmp(a, "--sector") == 0) {
			if (parse_u32(v, 255, &o->sector) != 0)
				return -1;
		} else if (strcmp(a, "--timeout") == 0) {
			if (parse_u32(v, 600000, &o->timeout_ms) != 0 ||
			    o->timeout_ms == 0)
				return -1;
		} else {
			return -1;
		}
	}
	return o->image != NULL && o->ca != NULL ? 0 : -1;
}

/* Parse the PEM trust anchors in @path (no MBEDTLS_FS_IO in the
 * application configuration: read the file here). */
static int load_ca(mbedtls_x509_crt *ca, const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long size;
	int rc = -1;

	if (f == NULL)
		return -1;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 &&
	    size < 1 << 20 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)size + 1)) != NULL &&
	    fread(buf, 1, (size_t)size, f) == (size_t)size) {
		buf[size] = '\0';
		rc = mbedtls_x509_crt_parse(ca, buf, (size_t)size + 1) == 0
			     ? 0
			     : -1;
	}
	free(buf);
	fclose(f);
	return rc;
}

static void tls_error(const char *what, int ret)
{
	char buf[160];

	mbedtls_strerror(ret, buf, sizeof(buf));
	fprintf(stderr, "kiln-enroll: %s: -0x%04x %s\n", what, (unsigned)-ret,
		buf);
}

/* Mutual TLS 1.3 with the operational identity: one line out, one in. */
static int talk(const opts_t *o, mbedtls_x509_crt *ca)
{
	static const char pers[] = "kiln-enroll";
	mbedtls_net_context net;
	mbedtls_entropy_context ent;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt own;
	mbedtls_pk_context key;
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
	unsigned char line[512];
	size_t len, off = 0, got = 0;
	int ret, rc = EXIT_TLS;
	kid_err_t e;

	mbedtls_net_init(&net);
	mbedtls_entropy_init(&ent);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_x509_crt_init(&own);
	mbedtls_pk_init(&key);
	mbedtls_ssl_config_init(&conf);
	mbedtls_ssl_init(&ssl);
	e = kid_op_x509_chain(&own);
	if (e == KID_OK)
		e = kid_op_pk_setup(&key);
	if (e != KID_OK) {
		fprintf(stderr, "kiln-enroll: operational identity: %s\n",
			kid_strerror(e));
		rc = EXIT_IDENTITY;
		goto out;
	}
	ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent,
				    (const unsigned char *)pers,
				    sizeof(pers) - 1);
	if (ret == 0)
		ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT,
						  MBEDTLS_SSL_TRANSPORT_STREAM,
						  MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret != 0) {
		tls_error("setup", ret);
		goto out;
	}
	mbedtls_ssl_conf_min_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_3);
	mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&conf, ca, NULL);
	mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_read_timeout(&conf, o->timeout_ms);
	ret = mbedtls_ssl_conf_own_cert(&conf, &own, &key);
	if (ret == 0)
		ret = mbedtls_ssl_setup(&ssl, &conf);
	if (ret == 0)
		ret = mbedtls_ssl_set_hostname(&ssl, o->name);
	if (ret == 0)
		ret = mbedtls_net_connect(&net, o->connect, o->connect_port,
					  MBEDTLS_NET_PROTO_TCP);
	if (ret != 0) {
		tls_error("connect", ret);
		goto out;
	}
	mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, NULL,
			    mbedtls_net_recv_timeout);
	while ((ret = mbedtls_ssl_handshake(&ssl)) != 0)
		if (ret != MBEDTLS_ERR_SSL_WANT_READ &&
		    ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
			tls_error("handshake", ret);
			goto out;
		}
	printf("mtls: %s, %s, operational identity\n",
	       mbedtls_ssl_get_version(&ssl), mbedtls_ssl_get_ciphersuite(&ssl));
	len = strlen(o->message);
	if (len + 1 > sizeof(line)) {
		rc = EXIT_USAGE;
		goto out;
	}
	memcpy(line, o->message, len);
	line[len++] = '\n';
	while (off < len) {
		ret = mbedtls_ssl_write(&ssl, line + off, len - off);
		if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
		    ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (ret <= 0) {
			tls_error("write", ret);
			goto out;
		}
		off += (size_t)ret;
	}
	rc = EXIT_REPLY;
	while (got < sizeof(line) - 1 && memchr(line, '\n', got) == NULL) {
		ret = mbedtls_ssl_read(&ssl, line + got, sizeof(line) - 1 - got);
		if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
		    ret == MBEDTLS_ERR_SSL_WANT_WRITE ||
		    ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
			continue;
		if (ret <= 0)
			break;
		got += (size_t)ret;
	}
	if (got > 0 && memchr(line, '\n', got) != NULL) {
		line[got] = '\0';
		*(char *)memchr(line, '\n', got) = '\0';
		printf("reply: %s\n", (char *)line);
		rc = 0;
	} else {
		fprintf(stderr, "kiln-enroll: no reply line\n");
	}
	(void)mbedtls_ssl_close_notify(&ssl);
out:
	mbedtls_ssl_free(&ssl);
	mbedtls_ssl_config_free(&conf);
	mbedtls_pk_free(&key);
	mbedtls_x509_crt_free(&own);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&ent);
	mbedtls_net_free(&net);
	return rc;
}

int main(int argc, char **argv)
{
	ka_sim_config_t cfg;
	mbedtls_x509_crt ca;
	kid_enroll_cfg_t ec;
	struct stat sb;
	char why[256];
	int rc = 0, status = 0;
	kid_err_t e;

	opts_t o;

	if (parse_args(argc, argv, &o) != 0)
		return usage();
	if (stat(o.image, &sb) != 0) {
		fprintf(stderr, "kiln-enroll: %s: %s\n", o.image,
			strerror(errno));
		return EXIT_IDENTITY;
	}
	if (psa_crypto_init() != PSA_SUCCESS) {
		fprintf(stderr, "kiln-enroll: psa_crypto_init failed\n");
		return EXIT_TLS;
	}
	mbedtls_x509_crt_init(&ca);
	if (load_ca(&ca, o.ca) != 0) {
		fprintf(stderr, "kiln-enroll: cannot read trust anchors %s\n",
			o.ca);
		rc = EXIT_USAGE;
		goto out_ca;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.path = o.image;
	cfg.quiet = true;
	if (ka_sim_open(&cfg) != 0) {
		rc = EXIT_IDENTITY;
		goto out_ca;
	}
	e = kid_open(0);
	if (e != KID_OK) {
		fprintf(stderr, "kiln-enroll: kid_open: %s\n", kid_strerror(e));
		rc = EXIT_IDENTITY;
		goto out_sim;
	}
	printf("factory identity: serial %s\n", kid_serial());
	if (o.server_port != NULL) {
		memset(&ec, 0, sizeof(ec));
		ec.host = o.server;
		ec.port = o.server_port;
		ec.server_name = o.name;
		ec.server_ca = &ca;
		ec.timeout_ms = o.timeout_ms;
		ec.sector = o.sector;
		e = kid_enroll(&ec, &status, why, sizeof(why));
		if (e != KID_OK) {
			fprintf(stderr, "kiln-enroll: enrollment: %s: %s\n",
				kid_strerror(e), why);
			rc = e == KID_ERR_REFUSED    ? EXIT_REFUSED
			     : e == KID_ERR_NET      ? EXIT_TLS
			     : e == KID_ERR_RESPONSE ? EXIT_RESPONSE
						     : EXIT_IDENTITY;
			goto out_id;
		}
		printf("enrolled: operational identity stored in sector %u\n",
		       o.sector);
	}
	e = kid_op_open(o.sector);
	if (e != KID_OK) {
		fprintf(stderr, "kiln-enroll: kid_op_open: %s\n",
			kid_strerror(e));
		rc = EXIT_IDENTITY;
		goto out_id;
	}
	{
		mbedtls_x509_crt c;
		char subj[160];

		mbedtls_x509_crt_init(&c);
		if (kid_op_x509_chain(&c) == KID_OK &&
		    mbedtls_x509_dn_gets(subj, sizeof(subj), &c.subject) > 0)
			printf("operational identity: %s\n", subj);
		mbedtls_x509_crt_free(&c);
	}
	if (o.connect_port != NULL)
		rc = talk(&o, &ca);
	kid_op_close();
out_id:
	kid_close();
out_sim:
	ka_sim_close();
out_ca:
	mbedtls_x509_crt_free(&ca);
	mbedtls_psa_crypto_free();
	return rc;
}
