/*
 * kiln-mtls-client: mutual TLS with the identity kiln provisioned.
 *
 * What a product application does at boot and when it talks to its
 * server, on the POSIX port: the simulator's image file is the part's
 * OTP and flash (through the same HAL code kiln-agent-sim uses), the
 * identity is checked with kid_open(), and a TLS 1.2 connection is made
 * with the device certificate chain and the device key (kid_pk_setup: the
 * private scalar stays inside device/identity). Sends one line, prints
 * the reply.
 *
 * Usage: kiln-mtls-client --image FILE --connect HOST:PORT --ca PEM
 *          [--name SERVER-NAME] [--message TEXT] [--require-locked]
 *          [--timeout MS]
 * Exit: 0 ok, 2 usage, 3 identity refused, 4 TLS or network failure,
 * 5 no reply.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/error.h"
#include "mbedtls/net_sockets.h"
#include "mbedtls/ssl.h"
#include "mbedtls/x509_crt.h"
#include "psa/crypto.h"

#include "device/identity/identity.h"
#include "device/ports/posix/sim_image.h"

#define EXIT_USAGE 2
#define EXIT_IDENTITY 3
#define EXIT_TLS 4
#define EXIT_REPLY 5

typedef struct {
	const char *image;
	char host[256];
	const char *port;
	const char *ca;
	const char *name;
	const char *message;
	bool require_locked;
	uint32_t timeout_ms;
} opts_t;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void tls_error(const char *what, int ret)
{
	char buf[160];

	mbedtls_strerror(ret, buf, sizeof(buf));
	fprintf(stderr, "kiln-mtls-client: %s: -0x%04x %s\n", what,
		(unsigned)-ret, buf);
}

static int usage(void)
{
	fprintf(stderr,
		"usage: kiln-mtls-client --image FILE --connect HOST:PORT "
		"--ca PEM [--name NAME] [--message TEXT] [--require-locked] "
		"[--timeout MS]\n");
	return EXIT_USAGE;
}

static int parse_args(int argc, char **argv, opts_t *o)
{
	char *colon, *end;
	unsigned long v;

	memset(o, 0, sizeof(*o));
	o->name = "localhost";
	o->message = "hello from kiln";
	o->timeout_ms = 5000;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--require-locked") == 0) {
			o->require_locked = true;
			continue;
		}
		if (i + 1 >= argc)
			return -1;
		if (strcmp(a, "--image") == 0) {
			o->image = argv[++i];
		} else if (strcmp(a, "--connect") == 0) {
			if (strlen(argv[i + 1]) >= sizeof(o->host))
				return -1;
			strcpy(o->host, argv[++i]);
			colon = strrchr(o->host, ':');
			if (colon == NULL || colon == o->host || colon[1] == 0)
				return -1;
			*colon = '\0';
			o->port = colon + 1;
		} else if (strcmp(a, "--ca") == 0) {
			o->ca = argv[++i];
		} else if (strcmp(a, "--name") == 0) {
			o->name = argv[++i];
		} else if (strcmp(a, "--message") == 0) {
			o->message = argv[++i];
		} else if (strcmp(a, "--timeout") == 0) {
			errno = 0;
			v = strtoul(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || v == 0 || v > 600000)
				return -1;
			o->timeout_ms = (uint32_t)v;
		} else {
			return -1;
		}
	}
	return o->image != NULL && o->port != NULL && o->ca != NULL ? 0 : -1;
}

/* Read a PEM file into a NUL-terminated buffer (mbedtls_x509_crt_parse
 * wants the terminator counted). */
static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long size;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 &&
	    size < 1 << 20 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)size + 1)) != NULL) {
		if (fread(buf, 1, (size_t)size, f) == (size_t)size) {
			buf[size] = '\0';
			*len = (size_t)size + 1;
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

/* Open the emulated part and check the identity. */
static int open_identity(const opts_t *o)
{
	ka_sim_config_t cfg;
	struct stat sb;
	uint8_t uid[KID_UID_MAX], lock = 0;
	size_t uid_len = 0;
	kid_err_t e;

	/* ka_sim_open would create a blank image: an absent file is an
	 * error here */
	if (stat(o->image, &sb) != 0) {
		fprintf(stderr, "kiln-mtls-client: %s: %s\n", o->image,
			strerror(errno));
		return EXIT_IDENTITY;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.path = o->image;
	cfg.quiet = true;
	if (ka_sim_open(&cfg) != 0)
		return EXIT_IDENTITY;
	e = kid_open(o->require_locked ? KID_OPEN_REQUIRE_LOCKED : 0);
	if (e != KID_OK) {
		fprintf(stderr, "kiln-mtls-client: kid_open: %s (%d)\n",
			kid_strerror(e), (int)e);
		return EXIT_IDENTITY;
	}
	if (kid_uid(uid, sizeof(uid), &uid_len) != KID_OK ||
	    kid_lock_state(&lock) != KID_OK) {
		fprintf(stderr, "kiln-mtls-client: identity query failed\n");
		return EXIT_IDENTITY;
	}
	printf("identity: serial %s, uid ", kid_serial());
	for (size_t i = 0; i < uid_len; i++)
		printf("%02x", uid[i]);
	printf(", lock 0x%x\n", lock);
	return 0;
}

typedef struct {
	mbedtls_net_context net;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt ca, own;
	mbedtls_pk_context key;
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
} tls_t;

static void tls_init(tls_t *t)
{
	mbedtls_net_init(&t->net);
	mbedtls_entropy_init(&t->entropy);
	mbedtls_ctr_drbg_init(&t->drbg);
	mbedtls_x509_crt_init(&t->ca);
	mbedtls_x509_crt_init(&t->own);
	mbedtls_pk_init(&t->key);
	mbedtls_ssl_config_init(&t->conf);
	mbedtls_ssl_init(&t->ssl);
}

static void tls_free(tls_t *t)
{
	mbedtls_ssl_free(&t->ssl);
	mbedtls_ssl_config_free(&t->conf);
	mbedtls_pk_free(&t->key);
	mbedtls_x509_crt_free(&t->own);
	mbedtls_x509_crt_free(&t->ca);
	mbedtls_ctr_drbg_free(&t->drbg);
	mbedtls_entropy_free(&t->entropy);
	mbedtls_net_free(&t->net);
}

/* Configure TLS: trust anchors, the device chain and key. */
static int tls_setup(tls_t *t, const opts_t *o)
{
	static const char pers[] = "kiln-mtls-client";
	unsigned char *pem;
	size_t pem_len = 0;
	kid_err_t e;
	int ret;

	/* TLS 1.3 runs its key schedule through PSA crypto */
	if (psa_crypto_init() != PSA_SUCCESS) {
		fprintf(stderr, "kiln-mtls-client: psa_crypto_init failed\n");
		return EXIT_TLS;
	}
	ret = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func,
				    &t->entropy, (const unsigned char *)pers,
				    sizeof(pers) - 1);
	if (ret != 0) {
		tls_error("ctr_drbg_seed", ret);
		return EXIT_TLS;
	}
	pem = read_file(o->ca, &pem_len);
	if (pem == NULL) {
		fprintf(stderr, "kiln-mtls-client: cannot read %s\n", o->ca);
		return EXIT_TLS;
	}
	ret = mbedtls_x509_crt_parse(&t->ca, pem, pem_len);
	free(pem);
	if (ret != 0) {
		tls_error("trust anchors", ret);
		return EXIT_TLS;
	}
	e = kid_x509_chain(&t->own);
	if (e == KID_OK)
		e = kid_pk_setup(&t->key);
	if (e != KID_OK) {
		fprintf(stderr, "kiln-mtls-client: device credentials: %s\n",
			kid_strerror(e));
		return EXIT_IDENTITY;
	}
	ret = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
					  MBEDTLS_SSL_TRANSPORT_STREAM,
					  MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret != 0) {
		tls_error("ssl_config_defaults", ret);
		return EXIT_TLS;
	}
	mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
	mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
	mbedtls_ssl_conf_read_timeout(&t->conf, o->timeout_ms);
	ret = mbedtls_ssl_conf_own_cert(&t->conf, &t->own, &t->key);
	if (ret == 0)
		ret = mbedtls_ssl_setup(&t->ssl, &t->conf);
	if (ret == 0)
		ret = mbedtls_ssl_set_hostname(&t->ssl, o->name);
	if (ret != 0) {
		tls_error("ssl setup", ret);
		return EXIT_TLS;
	}
	return 0;
}

/* Connect, handshake, send one line, print the reply line. */
static int tls_talk(tls_t *t, const opts_t *o)
{
	unsigned char reply[512];
	size_t got = 0;
	double t0, t1;
	uint32_t flags;
	int ret;

	ret = mbedtls_net_connect(&t->net, o->host, o->port,
				  MBEDTLS_NET_PROTO_TCP);
	if (ret != 0) {
		tls_error("connect", ret);
		return EXIT_TLS;
	}
	mbedtls_ssl_set_bio(&t->ssl, &t->net, mbedtls_net_send, NULL,
			    mbedtls_net_recv_timeout);
	t0 = now_ms();
	while ((ret = mbedtls_ssl_handshake(&t->ssl)) != 0) {
		if (ret != MBEDTLS_ERR_SSL_WANT_READ &&
		    ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
			tls_error("handshake", ret);
			flags = mbedtls_ssl_get_verify_result(&t->ssl);
			if (flags != 0 && flags != (uint32_t)-1) {
				char vb[256];

				mbedtls_x509_crt_verify_info(vb, sizeof(vb),
							     "  ", flags);
				fprintf(stderr, "server certificate:\n%s", vb);
			}
			return EXIT_TLS;
		}
	}
	t1 = now_ms();
	printf("handshake: %.1f ms, %s, %s, server verified\n", t1 - t0,
	       mbedtls_ssl_get_version(&t->ssl),
	       mbedtls_ssl_get_ciphersuite(&t->ssl));

	{
		size_t len = strlen(o->message), off = 0;
		unsigned char line[512];

		if (len + 1 > sizeof(line)) {
			fprintf(stderr, "kiln-mtls-client: message too long\n");
			return EXIT_USAGE;
		}
		memcpy(line, o->message, len);
		line[len++] = '\n';
		while (off < len) {
			ret = mbedtls_ssl_write(&t->ssl, line + off, len - off);
			if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
			    ret == MBEDTLS_ERR_SSL_WANT_WRITE)
				continue;
			if (ret <= 0) {
				tls_error("write", ret);
				return EXIT_TLS;
			}
			off += (size_t)ret;
		}
	}
	while (got < sizeof(reply) - 1 &&
	       memchr(reply, '\n', got) == NULL) {
		ret = mbedtls_ssl_read(&t->ssl, reply + got,
				       sizeof(reply) - 1 - got);
		if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
		    ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (ret <= 0) {
			if (ret < 0)
				tls_error("read", ret);
			break;
		}
		got += (size_t)ret;
	}
	if (got == 0 || memchr(reply, '\n', got) == NULL) {
		fprintf(stderr, "kiln-mtls-client: no reply line\n");
		return EXIT_REPLY;
	}
	reply[got] = '\0';
	*(char *)memchr(reply, '\n', got) = '\0';
	printf("reply: %s\n", (char *)reply);
	(void)mbedtls_ssl_close_notify(&t->ssl);
	return 0;
}

int main(int argc, char **argv)
{
	opts_t o;
	tls_t t;
	int rc;

	if (parse_args(argc, argv, &o) != 0)
		return usage();
	rc = open_identity(&o);
	if (rc != 0)
		goto out_sim;
	tls_init(&t);
	rc = tls_setup(&t, &o);
	if (rc == 0)
		rc = tls_talk(&t, &o);
	tls_free(&t);
	kid_close();
out_sim:
	ka_sim_close();
	return rc;
}
