/*
 * Fuzz target: the control-socket requests (host/kilnd/control.c,
 * kd_control_dispatch), as the socket reader hands them over: the input
 * is split at newlines and each line is one request.
 *
 * The daemon is real but small: a registry in /dev/shm (a fresh copy for
 * every input) holding one lot and one RESERVED session (so devices.show / lots / status have rows to
 * read), no slots and no profiles, so provision and batch.start stop at
 * their checks and never open a port. The harness plays kilnd's main
 * loop: kd_request_shutdown() (which main.c defines) just counts.
 *
 * Invariants: every line gets a reply object with a boolean "ok"; a
 * failure carries string "error" and "code"; the reply serialises to
 * one line (no newline) as the socket writes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "host/kilnd/kilnd.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(c)                                                             \
	do {                                                                 \
		if (!(c)) {                                                  \
			fprintf(stderr, "fuzz_control: %s:%d: %s\n", __FILE__, \
				__LINE__, #c);                               \
			abort();                                             \
		}                                                            \
	} while (0)

static unsigned shutdowns;

/* kilnd's main loop hook (host/kilnd/main.c): here, only counted. */
void kd_request_shutdown(void)
{
	shutdowns++;
}

static kd_daemon_t daemon_state;
static char tmpl[64], dbpath[64];

static void cleanup(void)
{
	char side[80];

	(void)unlink(tmpl);
	(void)unlink(dbpath);
	snprintf(side, sizeof(side), "%s-wal", dbpath);
	(void)unlink(side);
	snprintf(side, sizeof(side), "%s-shm", dbpath);
	(void)unlink(side);
}

/* A registry with one lot and one RESERVED session, made once; every
 * input gets a fresh copy, so inputs that write (audit events, rma) do
 * not pile up state and every run is reproducible. */
static void init(void)
{
	static const uint8_t uid[8] = {0x0a, 0x0b, 0x0c, 0x0d,
				       0x01, 0x02, 0x03, 0x04};
	ks_reg_session_t s;
	ks_reg_t *reg = NULL;
	kd_daemon_t *d = &daemon_state;

	ks_log_set_level(KS_LOG_ERROR);
	snprintf(tmpl, sizeof(tmpl), "/dev/shm/kiln-fuzz-control-%ld.tmpl",
		 (long)getpid());
	snprintf(dbpath, sizeof(dbpath), "/dev/shm/kiln-fuzz-control-%ld.db",
		 (long)getpid());
	(void)unlink(tmpl);
	if (ks_reg_open(tmpl, "fuzz", &reg) != KS_OK ||
	    ks_reg_lot_create(reg, "LOT1", "widget", "W-", -1, "fuzz") !=
		    KS_OK ||
	    ks_reg_session_begin(reg, uid, sizeof(uid), "LOT1", "widget", 1,
				 KS_REG_KEY_DEVICE, 0, "fuzz", &s) != KS_OK)
		abort();
	ks_reg_close(&reg);
	atexit(cleanup);
	memset(d, 0, sizeof(*d));
	d->cfg = calloc(1, sizeof(*d->cfg));
	if (d->cfg == NULL)
		abort();
	snprintf(d->cfg->station_id, sizeof(d->cfg->station_id), "fuzz");
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->started_ms = kd_now_ms();
}

static void fresh_registry(void)
{
	char side[80];
	FILE *in, *out;
	char buf[8192];
	size_t n;

	(void)unlink(dbpath);
	snprintf(side, sizeof(side), "%s-wal", dbpath);
	(void)unlink(side);
	snprintf(side, sizeof(side), "%s-shm", dbpath);
	(void)unlink(side);
	in = fopen(tmpl, "rb");
	out = fopen(dbpath, "wb");
	if (in == NULL || out == NULL)
		abort();
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			abort();
	fclose(in);
	if (fclose(out) != 0 ||
	    ks_reg_open(dbpath, "fuzz", &daemon_state.reg) != KS_OK)
		abort();
}

static void one(const char *line)
{
	json_t *rsp = kd_control_dispatch(&daemon_state, line, "fuzzer");
	json_t *okv;
	char *out;

	CHECK(rsp != NULL && json_is_object(rsp));
	okv = json_object_get(rsp, "ok");
	CHECK(json_is_boolean(okv));
	if (json_is_false(okv)) {
		CHECK(json_is_string(json_object_get(rsp, "error")));
		CHECK(json_is_string(json_object_get(rsp, "code")));
	}
	out = json_dumps(rsp, JSON_COMPACT);
	CHECK(out != NULL && strchr(out, '\n') == NULL);
	free(out);
	json_decref(rsp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *line, *nl;

	if (daemon_state.cfg == NULL)
		init();
	if (size > 65536)
		return 0;
	buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	fresh_registry();
	memcpy(buf, data, size);
	buf[size] = '\0';
	/* as conn_main: one request per line; a NUL ends the string */
	for (line = buf; line != NULL; line = nl) {
		nl = strchr(line, '\n');
		if (nl != NULL)
			*nl++ = '\0';
		one(line);
	}
	free(buf);
	ks_reg_close(&daemon_state.reg);
	return 0;
}
