/*
 * Fuzz target: the station configuration (host/kilnd/config.c,
 * kd_config_load) and the profile keys it forwards (host/lib/profile.c,
 * ks_profile_set / ks_profile_validate / ks_profile_expand), as kilnd's
 * startup applies them.
 *
 * The input is written to a file in /dev/shm and loaded. Invariants: a
 * failed load says why (a non-empty message, ending in a newline or cut
 * at the buffer) and returns no config; a successful load returns a
 * config whose strings are terminated and in bounds; loading the same
 * file twice gives the same answer.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/kilnd/config.h"
#include "host/lib/log.h"
#include "host/lib/profile.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(c)                                                            \
	do {                                                                \
		if (!(c)) {                                                 \
			fprintf(stderr, "fuzz_config: %s:%d: %s\n", __FILE__, \
				__LINE__, #c);                              \
			abort();                                            \
		}                                                           \
	} while (0)

static void check_str(const char *s, size_t cap)
{
	CHECK(memchr(s, '\0', cap) != NULL);
}

static void check_cfg(const kd_config_t *c)
{
	check_str(c->station_id, sizeof(c->station_id));
	check_str(c->registry, sizeof(c->registry));
	check_str(c->control_socket, sizeof(c->control_socket));
	check_str(c->ca_cert, sizeof(c->ca_cert));
	check_str(c->ca_key, sizeof(c->ca_key));
	check_str(c->ca_chain, sizeof(c->ca_chain));
	CHECK(c->nprofiles == 0 || c->profiles != NULL);
	CHECK(c->nslots == 0 || c->slots != NULL);
	for (size_t i = 0; i < c->nslots; i++) {
		check_str(c->slots[i].name, sizeof(c->slots[i].name));
		check_str(c->slots[i].port, sizeof(c->slots[i].port));
		CHECK(kd_config_slot(c, c->slots[i].name) != NULL);
	}
	for (size_t i = 0; i < c->nprofiles; i++) {
		const kd_profile_cfg_t *pc = &c->profiles[i];
		ks_profile_t p;
		char msg[512], out[256];
		ks_profile_vars_t v = {.serial = "S-0001", .uid_hex = "0a0b0c0d",
				       .lot = "LOT1", .profile = pc->name};
		int bad = 0;

		check_str(pc->name, sizeof(pc->name));
		msg[0] = '\0';
		if (ks_profile_init(&p, pc->name, msg, sizeof(msg)) != KS_OK) {
			CHECK(msg[0] != '\0');
			continue;
		}
		for (size_t k = 0; k < pc->nkv; k++) {
			check_str(pc->kv[k].key, sizeof(pc->kv[k].key));
			check_str(pc->kv[k].value, sizeof(pc->kv[k].value));
			msg[0] = '\0';
			if (ks_profile_set(&p, pc->kv[k].key, pc->kv[k].value,
					   msg, sizeof(msg)) != KS_OK) {
				CHECK(msg[0] != '\0');
				bad = 1;
			}
			/* every value is also tried as a subject template */
			if (ks_profile_expand(pc->kv[k].value, &v, out,
					      sizeof(out)) == KS_OK)
				check_str(out, sizeof(out));
		}
		msg[0] = '\0';
		if (!bad && ks_profile_validate(&p, msg, sizeof(msg)) != KS_OK)
			CHECK(msg[0] != '\0');
		(void)ks_profile_lock_level(&p);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	static int quiet;
	kd_config_t *cfg = NULL, *again = NULL;
	char err[2048], err2[2048];
	ks_err_t r, r2;
	int fd;

	if (size > 65536)
		return 0;
	if (!quiet) {
		ks_log_set_level(KS_LOG_ERROR);
		quiet = 1;
	}
	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/dev/shm/kiln-fuzz-config-%ld.ini",
			 (long)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);

	err[0] = '\0';
	r = kd_config_load(path, &cfg, err, sizeof(err));
	if (r == KS_OK) {
		CHECK(cfg != NULL);
		check_cfg(cfg);
	} else {
		CHECK(cfg == NULL);
		CHECK(err[0] != '\0');
	}
	check_str(err, sizeof(err));
	err2[0] = '\0';
	r2 = kd_config_load(path, &again, err2, sizeof(err2));
	CHECK(r2 == r);
	CHECK(strcmp(err, err2) == 0);
	(void)unlink(path);
	kd_config_free(&cfg);
	kd_config_free(&again);
	CHECK(cfg == NULL && again == NULL);
	return 0;
}
