/*
 * kilnd --check-config: every kind of bad key or value is refused with an
 * error naming FILE:LINE, the key and the value; a good file passes; the
 * daemon refuses to start on a bad file. Also kiln's exit codes for usage
 * errors and an unreachable daemon.
 *
 *   test_kilnd_config KILND KILN
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/kt_harness.h"

#define GOOD_STATION                                                        \
	"[station]\nid = cfg-test\nregistry = registry.db\n"                \
	"control_socket = kilnd.sock\nstation_key = ca/station.key\n"      \
	"log_level = info\ncheckpoint_interval = 32\n\n"
#define GOOD_CA                                                             \
	"[ca]\ncert = ca/station-ca.pem\nkey = ca/station-ca.key\n"         \
	"chain = ca/chain.pem\n\n"
#define GOOD_PROFILE                                                        \
	"[profile widget]\nsubject = CN=${serial},O=Test\n"                 \
	"validity_days = 365\nkey_origin = device\nlock = full\n\n"
#define GOOD_SLOT "[slot a]\nport = boards/a\n"

static const struct {
	const char *what;
	const char *text;
	int line;            /* expected in "kilnd.conf:LINE:" (0: any) */
	const char *needle;  /* must appear in the message */
} bad[] = {
	{"unknown section", GOOD_STATION GOOD_CA GOOD_PROFILE GOOD_SLOT
	 "[stations]\nid = x\n", 22, "unknown section [stations]"},
	{"unknown station key", "[station]\nid = s\nregistri = r.db\n"
	 "registry = r.db\nstation_key = ca/station.key\n" GOOD_CA GOOD_PROFILE,
	 3, "unknown key 'registri'"},
	{"bad log level", "[station]\nid = s\nregistry = r.db\n"
	 "station_key = ca/station.key\nlog_level = loud\n" GOOD_CA GOOD_PROFILE,
	 5, "log_level = 'loud'"},
	{"bad checkpoint interval", "[station]\nid = s\nregistry = r.db\n"
	 "station_key = ca/station.key\ncheckpoint_interval = 12x\n" GOOD_CA
	 GOOD_PROFILE, 5, "checkpoint_interval = '12x'"},
	{"serial block 0", "[station]\nid = s\nregistry = r.db\n"
	 "station_key = ca/station.key\nserial_block = 0\n" GOOD_CA
	 GOOD_PROFILE, 5, "serial_block = '0'"},
	{"serial block too large", "[station]\nid = s\nregistry = r.db\n"
	 "station_key = ca/station.key\nserial_block = 100001\n" GOOD_CA
	 GOOD_PROFILE, 5, "1..100000"},
	{"bad registry timeout", "[station]\nid = s\nregistry = r.db\n"
	 "station_key = ca/station.key\nregistry_timeout = 30s\n" GOOD_CA
	 GOOD_PROFILE, 5, "registry_timeout = '30s'"},
	{"unknown registry kind", "[station]\nid = s\n"
	 "registry = mysql://db/kiln\nstation_key = ca/station.key\n" GOOD_CA
	 GOOD_PROFILE, 3, "unknown kind of registry"},
	{"bad postgresql URL, password masked", "[station]\nid = s\n"
	 "registry = postgresql://u:secret@h/db?bogus=1\n"
	 "station_key = ca/station.key\n" GOOD_CA GOOD_PROFILE, 3,
	 "postgresql://u:***@h/db?bogus=1"},
	{"bad station id", "[station]\nid = a b\nregistry = r.db\n"
	 "station_key = ca/station.key\n" GOOD_CA GOOD_PROFILE, 2, "id = 'a b'"},
	{"duplicate key", GOOD_STATION "[ca]\ncert = ca/station-ca.pem\n"
	 "cert = ca/root.pem\nkey = ca/station-ca.key\n" GOOD_PROFILE,
	 11, "key given twice"},
	{"unknown group", "[station]\nid = s\nregistry = r.db\n"
	 "station_key = ca/station.key\nsocket_group = no-such-group-kt\n"
	 GOOD_CA GOOD_PROFILE, 5, "socket_group = 'no-such-group-kt'"},
	{"slot without port", GOOD_STATION GOOD_CA GOOD_PROFILE
	 "[slot a]\nenabled = yes\n", 20, "port is required"},
	{"bad slot enabled", GOOD_STATION GOOD_CA GOOD_PROFILE
	 "[slot a]\nport = boards/a\nenabled = maybe\n", 22, "enabled = 'maybe'"},
	{"unsupported baud", GOOD_STATION GOOD_CA GOOD_PROFILE
	 "[slot a]\nport = serial:/dev/ttyACM0@12345\n", 21, "12345"},
	{"bad usb spec", GOOD_STATION GOOD_CA GOOD_PROFILE
	 "[slot a]\nport = usb:zz\n", 21, "port = 'usb:zz'"},
	{"two slots on one port", GOOD_STATION GOOD_CA GOOD_PROFILE GOOD_SLOT
	 "[slot b]\nport = boards/a\n", 23, "already used by [slot a]"},
	{"unknown slot key", GOOD_STATION GOOD_CA GOOD_PROFILE GOOD_SLOT
	 "speed = 9600\n", 22, "unknown key 'speed'"},
	{"bad profile value", GOOD_STATION GOOD_CA
	 "[profile widget]\nsubject = CN=${serial}\nvalidity_days = forever\n"
	 "key_origin = device\nlock = full\n", 16, "validity_days"},
	{"unknown profile key", GOOD_STATION GOOD_CA
	 "[profile widget]\nsubject = CN=${serial}\nvalidity_days = 30\n"
	 "key_origin = device\nlock = full\ncolour = blue\n", 19, "colour"},
	{"bad key origin", GOOD_STATION GOOD_CA
	 "[profile widget]\nsubject = CN=${serial}\nvalidity_days = 30\n"
	 "key_origin = cloud\nlock = full\n", 17, "cloud"},
	{"incomplete profile", GOOD_STATION GOOD_CA
	 "[profile widget]\nsubject = CN=${serial}\n", 14, "[profile widget]"},
	{"missing CA key file", GOOD_STATION
	 "[ca]\ncert = ca/station-ca.pem\nkey = ca/missing.key\n" GOOD_PROFILE,
	 11, "ca/missing.key"},
	{"CA key does not match", GOOD_STATION
	 "[ca]\ncert = ca/station-ca.pem\nkey = ca/station.key\n"
	 "chain = ca/chain.pem\n" GOOD_PROFILE, 9, "does not match"},
	{"missing station key", "[station]\nid = s\nregistry = r.db\n"
	 "station_key = ca/nope.key\n" GOOD_CA GOOD_PROFILE, 4, "ca/nope.key"},
	{"key outside a section", "id = s\n" GOOD_STATION GOOD_CA GOOD_PROFILE,
	 1, "outside any section"},
	{"syntax error", GOOD_STATION "this is not ini\n" GOOD_CA GOOD_PROFILE,
	 9, "syntax error"},
	{"missing station section", GOOD_CA GOOD_PROFILE, 0,
	 "missing [station] section"},
	{"missing registry", "[station]\nid = s\nstation_key = ca/station.key\n"
	 GOOD_CA GOOD_PROFILE, 1, "registry is required"},
};

static int write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL)
		return -1;
	fputs(text, fp);
	return fclose(fp);
}

int main(int argc, char **argv)
{
	kt_station_t st;
	static char out[16384];
	char want[64];
	int rc;

	if (kt_init(&st, argc, argv, "config") != 0)
		return 1;

	/* a good file passes, relative paths resolved against its directory */
	write_file(st.conf, GOOD_STATION GOOD_CA GOOD_PROFILE GOOD_SLOT);
	rc = kt_run(out, sizeof(out), st.kilnd, "--check-config", "-c", st.conf,
		    NULL);
	kt_check(rc == 0 && strstr(out, "OK") != NULL,
		 "good config passes --check-config (rc %d: %s)", rc, out);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(st.conf, bad[i].text);
		rc = kt_run(out, sizeof(out), st.kilnd, "--check-config", "-c",
			    st.conf, NULL);
		if (bad[i].line > 0)
			snprintf(want, sizeof(want), "kilnd.conf:%d: ", bad[i].line);
		else
			snprintf(want, sizeof(want), "kilnd.conf: ");
		kt_check(rc == 1 && strstr(out, want) != NULL &&
				 strstr(out, bad[i].needle) != NULL &&
				 strstr(out, "secret") == NULL,
			 "%s: rc %d, expect '%s' and '%s' in:\n%s", bad[i].what,
			 rc, want, bad[i].needle, out);
	}

	/* the daemon itself refuses a bad file, with the same message */
	write_file(st.conf, bad[2].text);
	rc = kt_run(out, sizeof(out), st.kilnd, "-f", "-c", st.conf, NULL);
	kt_check(rc == 1 && strstr(out, "log_level = 'loud'") != NULL,
		 "kilnd -f refuses a bad config (rc %d: %s)", rc, out);
	rc = kt_run(out, sizeof(out), st.kilnd, "-c", "/nonexistent/kilnd.conf",
		    "-f", NULL);
	kt_check(rc == 1 && strstr(out, "/nonexistent/kilnd.conf") != NULL,
		 "missing config file named (rc %d: %s)", rc, out);
	rc = kt_run(out, sizeof(out), st.kilnd, "--bogus", NULL);
	kt_check(rc == 2, "kilnd: unknown option -> 2 (rc %d)", rc);

	/* kiln exit codes that need no daemon */
	rc = kt_run(out, sizeof(out), st.kiln, "-s", "/nonexistent.sock",
		    "status", NULL);
	kt_check(rc == 3 && strstr(out, "/nonexistent.sock") != NULL,
		 "kiln: unreachable daemon -> 3 (rc %d: %s)", rc, out);
	rc = kt_run(out, sizeof(out), st.kiln, "frobnicate", NULL);
	kt_check(rc == 2, "kiln: unknown command -> 2 (rc %d)", rc);
	rc = kt_run(out, sizeof(out), st.kiln, "batch", "start", "--lot", "L",
		    NULL);
	kt_check(rc == 2, "kiln: batch start without --profile -> 2 (rc %d)", rc);
	rc = kt_run(out, sizeof(out), st.kiln, "help", "batch", NULL);
	kt_check(rc == 0 && strstr(out, "--count") != NULL,
		 "kiln help batch (rc %d)", rc);
	rc = kt_run(out, sizeof(out), st.kiln, "audit", "verify", "--db",
		    "/nonexistent.db", "--ca", "/nonexistent.pem",
		    "--station-pub", "/nonexistent.pub", NULL);
	kt_check(rc == 4, "kiln audit verify on missing files -> 4 (rc %d: %s)",
		 rc, out);

	kt_cleanup(&st);
	return kt_summary();
}
