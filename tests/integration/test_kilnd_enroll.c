/*
 * Field enrollment through the kilnd process (docs/bootstrap.md): the
 * real daemon with a claim profile (credential = claim, claim_uses = 1)
 * and an [enroll] section, the real CLI, a kiln-agent-sim board and the
 * device-side kiln-enroll.
 *
 *  1. a board is provisioned with a claim credential by a kilnd batch;
 *  2. kiln-enroll enrolls it over TLS 1.3 against kilnd's enrollment
 *     service: exit 0, `kiln devices show` has the device ACTIVE with
 *     the operational certificate (ACTIVE, the claim SUPERSEDED) and the
 *     audit an ENROLLED event naming the claim and the peer;
 *  3. a copy of the board image taken before enrollment (a cloned claim)
 *     is refused: kiln-enroll exits 6 (HTTP 403), ENROLL_REFUSED is
 *     audited, the registry is unchanged;
 *  4. `kiln status` still answers, `kiln audit verify` passes, and kilnd
 *     stops on SIGTERM (exit 0) with the service running; its port is
 *     closed afterwards.
 *
 *   test_kilnd_enroll KILND KILN KILN-AGENT-SIM KILN-ENROLL OPENSSL
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tests/integration/kt_harness.h"

#define UID_HEX "a1a2a3a4a5a6a7a8"

static const char profiles[] =
	"[profile claim]\n"
	"credential = claim\n"
	"claim_uses = 1\n"
	"subject = CN=claim-${serial},O=Kiln Test\n"
	"key_origin = device\n"
	"lock = identity\n\n"
	"[profile op]\n"
	"subject = CN=${serial},O=Kiln Test\n"
	"validity_days = 365\n"
	"key_origin = device\n"
	"lock = none\n\n";

static kt_station_t st;
static char out[1 << 16];
static const char *enroll_exe, *openssl_exe;

/* A loopback TCP port nobody listens on right now. */
static unsigned free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	unsigned port = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Whether something accepts TCP connections on 127.0.0.1:port. */
static bool port_open(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool open_ = false;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	if (fd >= 0) {
		open_ = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
	}
	return open_;
}

/* The enrollment service's TLS certificate, issued by the station CA. */
static int server_cert(void)
{
	char cmd[3 * PATH_MAX + 512];

	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && '%s' req -new -newkey ec -pkeyopt "
		 "ec_paramgen_curve:P-256 -nodes -keyout srv.key "
		 "-subj /CN=localhost -addext subjectAltName=DNS:localhost "
		 "-out srv.csr 2>/dev/null && "
		 "'%s' x509 -req -in srv.csr -CA ca/station-ca.pem "
		 "-CAkey ca/station-ca.key -set_serial 0x4b494c4e -days 2 "
		 "-copy_extensions copy -out srv.pem 2>/dev/null",
		 st.dir, openssl_exe, openssl_exe);
	return system(cmd) == 0 ? 0 : -1;
}

/* One integer from the registry (read-only); -1 on error. */
static long long db_int(const char *sql, const char *a, const char *b)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -1;

	if (sqlite3_open_v2(st.db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_busy_timeout(db, 5000) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		if (a != NULL)
			sqlite3_bind_text(s, 1, a, -1, SQLITE_STATIC);
		if (b != NULL)
			sqlite3_bind_text(s, 2, b, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			v = sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static long long audit_count(const char *type, const char *cert_serial)
{
	return db_int("SELECT COUNT(*) FROM audit WHERE type = ? AND "
		      "cert_serial = ? AND details LIKE '%127.0.0.1%'",
		      type, cert_serial);
}

static const char *cert_status(const char *serial, char *buf, size_t len)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;

	snprintf(buf, len, "?");
	if (sqlite3_open_v2(st.db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_busy_timeout(db, 5000) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT status FROM certificates WHERE "
				   "serial_hex = ?", -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			snprintf(buf, len, "%s",
				 (const char *)sqlite3_column_text(s, 0));
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return buf;
}

/* `kiln --json devices show UID`: state and certificate serial. */
static bool device_show(char *state, char *cert, size_t len)
{
	json_t *j, *d;
	int rc;

	rc = kt_kiln(&st, out, sizeof(out), "--json", "devices", "show",
		     UID_HEX, NULL);
	j = json_loads(out, 0, NULL);
	d = json_object_get(j, "device");
	snprintf(state, len, "%s",
		 json_string_value(json_object_get(d, "state")) ?
			 json_string_value(json_object_get(d, "state")) : "");
	snprintf(cert, len, "%s",
		 json_string_value(json_object_get(d, "cert_serial")) ?
			 json_string_value(json_object_get(d, "cert_serial")) : "");
	json_decref(j);
	return rc == 0 && d != NULL;
}

static int run_enroll(const char *image, unsigned port)
{
	char srv[48], chain[PATH_MAX];

	snprintf(srv, sizeof(srv), "127.0.0.1:%u", port);
	kt_path(&st, chain, sizeof(chain), "ca/chain.pem");
	return kt_run(out, sizeof(out), enroll_exe, "--image", image,
		      "--server", srv, "--ca", chain, "--name", "localhost",
		      "--timeout", "10000", NULL);
}

int main(int argc, char **argv)
{
	char conf_extra[1024], img[PATH_MAX], clone[PATH_MAX], cmd[3 * PATH_MAX];
	char state[128], claim[128], op[128], buf[128];
	unsigned port;
	json_t *stj;
	FILE *fp;
	int rc;

	if (argc != 6) {
		fprintf(stderr, "usage: test_kilnd_enroll KILND KILN "
				"KILN-AGENT-SIM KILN-ENROLL OPENSSL\n");
		return 2;
	}
	enroll_exe = argv[4];
	openssl_exe = argv[5];
	if (kt_init(&st, 4, argv, "kilnd-enroll") != 0 || st.sim == NULL)
		return 1;
	port = free_port();
	if (port == 0 || server_cert() != 0 ||
	    kt_write_conf(&st, NULL, profiles, 1, NULL) != 0) {
		fprintf(stderr, "setup failed (port, server certificate, conf)\n");
		kt_cleanup(&st);
		return 1;
	}
	snprintf(conf_extra, sizeof(conf_extra),
		 "[enroll]\nlisten = 127.0.0.1:%u\ncert = srv.pem\n"
		 "key = srv.key\nprofile = op\ntimeout_ms = 5000\n",
		 port);
	fp = fopen(st.conf, "a");
	if (fp == NULL || fputs(conf_extra, fp) < 0 || fclose(fp) != 0 ||
	    kt_kilnd_start(&st) != 0) {
		fprintf(stderr, "kilnd did not start; log:\n");
		if (kt_run(out, sizeof(out), "/bin/cat", st.log, NULL) >= 0)
			fputs(out, stderr);
		kt_cleanup(&st);
		return 1;
	}
	kt_check(port_open(port), "kilnd's enrollment service listens on "
				  "127.0.0.1:%u", port);

	/* 1. the factory: a claim credential through a kilnd batch */
	kt_path(&st, img, sizeof(img), "boards/slot1.img");
	kt_path(&st, clone, sizeof(clone), "boards/clone.img");
	if (kt_board_start(&st, 1, NULL, UID_HEX, 0) != 0)
		kt_check(false, "start board 1");
	rc = kt_kiln(&st, out, sizeof(out), "batch", "start", "--lot", "LC",
		     "--profile", "claim", "--count", "1", "--wait", NULL);
	kt_check(rc == 0, "claim batch completes (rc %d):\n%s", rc, out);
	stj = kt_wait_batch(&st, 60000);
	kt_check(stj != NULL &&
			 json_integer_value(json_object_get(
				 json_object_get(stj, "batch"), "done")) == 1,
		 "1 board done");
	json_decref(stj);
	kt_board_stop(&st, 1);
	kt_check(device_show(state, claim, sizeof(claim)) &&
			 strcmp(state, "ACTIVE") == 0 && claim[0] != '\0',
		 "devices show: ACTIVE with claim certificate %s (%s)", claim,
		 state);
	kt_check(strcmp(cert_status(claim, buf, sizeof(buf)), "ACTIVE") == 0,
		 "claim certificate ACTIVE (%s)", buf);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", img, clone);
	if (system(cmd) != 0)
		kt_check(false, "copy the board image");

	/* 2. enrollment against kilnd */
	rc = run_enroll(img, port);
	kt_check(rc == 0 && strstr(out, "enrolled:") != NULL,
		 "kiln-enroll against kilnd: exit %d\n%s", rc, out);
	kt_check(device_show(state, op, sizeof(op)) &&
			 strcmp(state, "ACTIVE") == 0 && op[0] != '\0' &&
			 strcmp(op, claim) != 0,
		 "devices show: ACTIVE with operational certificate %s (%s)",
		 op, state);
	kt_check(strcmp(cert_status(op, buf, sizeof(buf)), "ACTIVE") == 0,
		 "operational certificate ACTIVE (%s)", buf);
	kt_check(strcmp(cert_status(claim, buf, sizeof(buf)), "SUPERSEDED") == 0,
		 "claim certificate SUPERSEDED (%s)", buf);
	kt_check(audit_count("ENROLLED", claim) == 1,
		 "audit: one ENROLLED event naming the claim and the peer");

	/* 3. the clone of the pre-enrollment image */
	rc = run_enroll(clone, port);
	kt_check(rc == 6 && strstr(out, "HTTP 403") != NULL,
		 "cloned claim refused (exit %d)\n%s", rc, out);
	kt_check(audit_count("ENROLL_REFUSED", claim) == 1,
		 "audit: ENROLL_REFUSED names the claim and the peer");
	kt_check(audit_count("ENROLLED", claim) == 1 &&
			 device_show(state, buf, sizeof(buf)) &&
			 strcmp(buf, op) == 0,
		 "registry unchanged by the refusal (certificate %s)", buf);

	/* 4. the station is fine; clean stop with the service running */
	rc = kt_kiln(&st, out, sizeof(out), "status", NULL);
	kt_check(rc == 0 && strstr(out, "slot1") != NULL,
		 "kiln status after enrollment (rc %d)", rc);
	rc = kt_run(out, sizeof(out), st.kiln, "audit", "verify", "-c", st.conf,
		    NULL);
	kt_check(rc == 0 && strstr(out, "audit OK") != NULL,
		 "kiln audit verify passes (rc %d):\n%s", rc, out);
	kt_check(port_open(port), "the enrollment service still listens");
	{
		struct timespec t0, t1;
		long long ms;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		rc = kt_kilnd_stop(&st);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (t1.tv_sec - t0.tv_sec) * 1000LL +
		     (t1.tv_nsec - t0.tv_nsec) / 1000000;
		kt_check(rc == 0 && ms < 5000,
			 "kilnd stops on SIGTERM: exit %d in %lld ms", rc, ms);
	}
	kt_check(!port_open(port), "the enrollment port is closed");
	kt_check(kt_file_contains(st.log, "enrolled ", 9),
		 "kilnd's log records the enrollment");

	if (kt_failed > 0 && kt_run(out, sizeof(out), "/usr/bin/tail", "-n",
				    "40", st.log, NULL) >= 0)
		printf("--- kilnd log (tail) ---\n%s", out);
	kt_cleanup(&st);
	return kt_summary();
}
