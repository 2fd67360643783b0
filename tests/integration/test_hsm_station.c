/*
 * kilnd with its CA key in a real PKCS#11 token (SoftHSM2), and the
 * release gate, with kilnd and kiln as processes:
 *  1. `kiln ca init --pkcs11` generates the station CA key in the token;
 *     `kiln ca check --key` and `kilnd --check-config` accept the station;
 *  2. kilnd runs its signer as a separate process: only that process maps
 *     the PKCS#11 module, the daemon that talks to boards does not; a batch
 *     of boards is provisioned and each certificate passes openssl verify;
 *     stopping kilnd ends the signer;
 *  3. the release gate: a profile marked production = yes with the
 *     development CA is refused (kiln ca check, kilnd --check-config and a
 *     kilnd start) with a clear message; without production it is allowed
 *     with a warning; a CA carrying a published test key is refused too;
 *     an ordinary CA passes.
 */
#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "tests/integration/kt_harness.h"
#include "tests/integration/softhsm.h"

#ifndef KILN_TEST_DATA
#error "KILN_TEST_DATA (tests/data) must be defined by the build"
#endif

#define NBOARDS 3

static kt_station_t st;
static th_softhsm_t hsm;
static char out[1 << 16];

static const char *const profile_dev =
	"[profile widget]\n"
	"subject = CN=${serial},O=kiln test\n"
	"validity_days = 365\nkey_origin = device\nlock = identity\n\n";
static const char *const profile_prod =
	"[profile widget]\n"
	"subject = CN=${serial},O=kiln test\n"
	"validity_days = 365\nkey_origin = device\nlock = identity\n"
	"production = yes\n\n";

/* Write kilnd.conf with its [ca] section replaced by ca_section. */
static int write_conf(const char *profiles, const char *ca_section)
{
	char *buf = NULL, *a, *b;
	size_t len = 0;
	FILE *fp;
	int rc = -1;

	if (kt_write_conf(&st, NULL, profiles, 1, NULL) != 0)
		return -1;
	fp = fopen(st.conf, "r");
	if (fp == NULL)
		return -1;
	buf = calloc(1, 1 << 16);
	if (buf != NULL)
		len = fread(buf, 1, (1 << 16) - 1, fp);
	fclose(fp);
	if (buf == NULL || len == 0)
		goto out;
	a = strstr(buf, "[ca]\n");
	b = a != NULL ? strstr(a, "\n\n") : NULL;
	if (b == NULL)
		goto out;
	*a = '\0';
	fp = fopen(st.conf, "w");
	if (fp == NULL)
		goto out;
	fprintf(fp, "%s%s%s", buf, ca_section, b);
	rc = fclose(fp) == 0 ? 0 : -1;
out:
	free(buf);
	return rc;
}

/* The child of kilnd (the signer), 0 if none. */
static pid_t signer_child(pid_t parent)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[300], buf[512], *p;
		FILE *fp;
		long ppid = 0;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		fp = fopen(path, "r");
		if (fp == NULL)
			continue;
		if (fgets(buf, sizeof(buf), fp) != NULL &&
		    (p = strrchr(buf, ')')) != NULL &&
		    sscanf(p + 2, "%*c %ld", &ppid) == 1 && ppid == parent)
			found = (pid_t)atol(e->d_name);
		fclose(fp);
	}
	if (d != NULL)
		closedir(d);
	return found;
}

/* Whether /proc/PID/WHAT contains needle (proc files report size 0). */
static bool proc_contains(pid_t pid, const char *what, const char *needle)
{
	char path[64];
	unsigned char *buf = malloc(1 << 20);
	size_t len = 0, n;
	bool found = false;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	fp = fopen(path, "rb");
	if (fp != NULL && buf != NULL) {
		while (len < (1 << 20) &&
		       (n = fread(buf + len, 1, (1 << 20) - len, fp)) > 0)
			len += n;
		found = memmem(buf, len, needle, strlen(needle)) != NULL;
	}
	if (fp != NULL)
		fclose(fp);
	free(buf);
	return found;
}

static bool maps_contain(pid_t pid, const char *needle)
{
	return proc_contains(pid, "maps", needle);
}

static bool cmdline_contains(pid_t pid, const char *needle)
{
	return proc_contains(pid, "cmdline", needle);
}

/* openssl verify every certificate of the registry; returns how many. */
static int verify_registry_certs(const char *cadir, int *bad)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	int n = 0;

	*bad = 0;
	if (sqlite3_open_v2(st.db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(h, "SELECT der FROM certificates", -1, &s,
			       NULL) != SQLITE_OK) {
		sqlite3_close(h);
		return -1;
	}
	while (sqlite3_step(s) == SQLITE_ROW) {
		const unsigned char *der = sqlite3_column_blob(s, 0);
		X509 *x = d2i_X509(NULL, &der, sqlite3_column_bytes(s, 0));
		char leaf[PATH_MAX], root[PATH_MAX + 16], inter[PATH_MAX + 16];
		FILE *fp;

		kt_path(&st, leaf, sizeof(leaf), "leaf.pem");
		snprintf(root, sizeof(root), "%s/root.pem", cadir);
		snprintf(inter, sizeof(inter), "%s/station-ca.pem", cadir);
		fp = fopen(leaf, "w");
		if (x == NULL || fp == NULL || PEM_write_X509(fp, x) != 1)
			(*bad)++;
		if (fp != NULL)
			fclose(fp);
		X509_free(x);
		if (kt_run(out, sizeof(out), "/usr/bin/openssl", "verify",
			   "-x509_strict", "-CAfile", root, "-untrusted", inter,
			   leaf, NULL) != 0)
			(*bad)++;
		n++;
	}
	sqlite3_finalize(s);
	sqlite3_close(h);
	return n;
}

static void test_token_station(void)
{
	char cadir[PATH_MAX], uri[PATH_MAX * 2], ca[PATH_MAX * 4];
	pid_t sp;
	json_t *stj;
	int rc, n, bad;

	kt_path(&st, cadir, sizeof(cadir), "hsm-ca");
	th_softhsm_uri(&hsm, "station-ca", uri, sizeof(uri));
	rc = kt_run(out, sizeof(out), st.kiln, "ca", "init", cadir, "--org",
		    "kiln hsm", "--pkcs11", uri, "--pkcs11-module", hsm.module,
		    NULL);
	kt_check(rc == 0 && strstr(out, "station CA key in the token") != NULL,
		 "kiln ca init --pkcs11: rc %d\n%s", rc, out);
	snprintf(ca, sizeof(ca),
		 "[ca]\ncert = hsm-ca/station-ca.pem\nkey = %s\n"
		 "pkcs11_module = %s\nchain = hsm-ca/chain.pem",
		 uri, hsm.module);
	if (!kt_check(write_conf(profile_dev, ca) == 0, "kilnd.conf with the token key"))
		return;
	rc = kt_run(out, sizeof(out), st.kiln, "ca", "check", "-c", st.conf,
		    "--key", NULL);
	kt_check(rc == 0 && strstr(out, "allowed with a warning") != NULL &&
			 strstr(out, "development CA") != NULL,
		 "kiln ca check --key: the token key is found, dev CA allowed with a warning: rc %d\n%s",
		 rc, out);
	rc = kt_run(out, sizeof(out), st.kilnd, "--check-config", "-c", st.conf,
		    NULL);
	kt_check(rc == 0, "kilnd --check-config accepts the token station: rc %d\n%s",
		 rc, out);

	if (!kt_check(kt_kilnd_start(&st) == 0, "kilnd starts with the token key"))
		return;
	sp = signer_child(st.pid);
	kt_check(sp > 0 && cmdline_contains(sp, "--signer-fd"),
		 "kilnd runs a signer process (pid %d)", (int)sp);
	kt_check(sp > 0 && maps_contain(sp, "libsofthsm2"),
		 "the signer process has the PKCS#11 module loaded");
	kt_check(!maps_contain(st.pid, "libsofthsm2"),
		 "the daemon that talks to boards never loaded the PKCS#11 module");
	if (!kt_check(kt_board_start(&st, 1, NULL, NULL, 0) == 0,
		      "a simulated board on slot 1")) {
		(void)kt_kilnd_stop(&st);
		return;
	}
	rc = kt_kiln(&st, out, sizeof(out), "batch", "start", "--lot", "LOT-T",
		     "--profile", "widget", "--count", "1", "--wait", NULL);
	stj = kt_wait_batch(&st, 60000);
	kt_check(rc == 0 && stj != NULL &&
			 json_integer_value(json_object_get(
				 json_object_get(stj, "batch"), "done")) == 1,
		 "a board is provisioned with the certificate signed in the token: rc %d\n%s",
		 rc, out);
	json_decref(stj);
	n = verify_registry_certs(cadir, &bad);
	kt_check(n == 1 && bad == 0,
		 "openssl verify accepts the registry's certificates (%d, %d bad)",
		 n, bad);
	kt_board_stop(&st, 1);
	rc = kt_kilnd_stop(&st);
	kt_check(rc == 0, "kilnd stops cleanly: rc %d", rc);
	kt_check(sp > 0 && kill(sp, 0) != 0,
		 "the signer process ended with kilnd");
}

static void test_release_gate(void)
{
	const char *dev_ca = "[ca]\ncert = ca/station-ca.pem\n"
			     "key = ca/station-ca.key\nchain = ca/chain.pem";
	char key[PATH_MAX], cert[PATH_MAX], ca[PATH_MAX * 3];
	int rc;

	/* production profile + development CA: refused everywhere */
	if (write_conf(profile_prod, dev_ca) != 0)
		return;
	rc = kt_run(out, sizeof(out), st.kiln, "ca", "check", "-c", st.conf,
		    NULL);
	kt_check(rc == 1 && strstr(out, "REFUSED") != NULL &&
			 strstr(out, "profile 'widget' is marked production = yes") != NULL &&
			 strstr(out, "kiln ca init") != NULL,
		 "kiln ca check refuses the dev CA for a production profile: rc %d\n%s",
		 rc, out);
	rc = kt_run(out, sizeof(out), st.kilnd, "--check-config", "-c", st.conf,
		    NULL);
	kt_check(rc != 0 && strstr(out, "release gate") != NULL &&
			 strstr(out, "widget") != NULL,
		 "kilnd --check-config refuses it: rc %d\n%s", rc, out);
	kt_check(kt_kilnd_start(&st) != 0 &&
			 kt_file_contains(st.log, "release gate", 12),
		 "kilnd does not start with it (reason in its log)");
	if (st.pid > 0)
		(void)kt_kilnd_stop(&st);

	/* not production: allowed with a warning */
	if (write_conf(profile_dev, dev_ca) != 0)
		return;
	rc = kt_run(out, sizeof(out), st.kiln, "ca", "check", "-c", st.conf,
		    NULL);
	kt_check(rc == 0 && strstr(out, "warning") != NULL &&
			 strstr(out, "development CA in use") != NULL,
		 "a non-production profile with the dev CA is allowed with a warning: rc %d\n%s",
		 rc, out);

	/* a CA built on a published test key: refused for production */
	kt_path(&st, cert, sizeof(cert), "testkey-ca.pem");
	rc = kt_run(out, sizeof(out), "/usr/bin/openssl", "req", "-x509",
		    "-new", "-key", KILN_TEST_DATA "/known-test-ca.key", "-subj",
		    "/CN=Innocent Looking CA/O=ACME", "-days", "365", "-sha256",
		    "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
		    "keyUsage=critical,keyCertSign,cRLSign", "-out", cert, NULL);
	snprintf(ca, sizeof(ca), "[ca]\ncert = %s\nkey = %s", cert,
		 KILN_TEST_DATA "/known-test-ca.key");
	if (kt_check(rc == 0 && write_conf(profile_prod, ca) == 0,
		     "a CA certificate on tests/data/known-test-ca.key")) {
		rc = kt_run(out, sizeof(out), st.kiln, "ca", "check", "-c",
			    st.conf, NULL);
		kt_check(rc == 1 && strstr(out, "published test key") != NULL,
			 "a published test key is refused for production: rc %d\n%s",
			 rc, out);
	}

	/* an ordinary CA (fresh key, no marker) passes */
	kt_path(&st, key, sizeof(key), "prod-ca.key");
	kt_path(&st, cert, sizeof(cert), "prod-ca.pem");
	rc = kt_run(out, sizeof(out), "/usr/bin/openssl", "genpkey",
		    "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
		    "-out", key, NULL);
	if (rc == 0)
		rc = kt_run(out, sizeof(out), "/usr/bin/openssl", "req", "-x509",
			    "-new", "-key", key, "-subj", "/CN=ACME Issuing CA/O=ACME",
			    "-days", "365", "-sha256", "-addext",
			    "basicConstraints=critical,CA:TRUE", "-addext",
			    "keyUsage=critical,keyCertSign,cRLSign", "-out", cert,
			    NULL);
	snprintf(ca, sizeof(ca), "[ca]\ncert = %s\nkey = %s", cert, key);
	if (kt_check(rc == 0 && write_conf(profile_prod, ca) == 0,
		     "an ordinary CA made with openssl")) {
		rc = kt_run(out, sizeof(out), st.kiln, "ca", "check", "-c",
			    st.conf, "--key", NULL);
		kt_check(rc == 0 && strstr(out, "release gate: OK") != NULL,
			 "it passes the gate for a production profile: rc %d\n%s",
			 rc, out);
		rc = kt_run(out, sizeof(out), st.kilnd, "--check-config", "-c",
			    st.conf, NULL);
		kt_check(rc == 0, "kilnd --check-config accepts it: rc %d\n%s",
			 rc, out);
	}
}

int main(int argc, char **argv)
{
	char dir[PATH_MAX];

	if (kt_init(&st, argc, argv, "hsm") != 0 || st.sim == NULL)
		return 1;
	kt_path(&st, dir, sizeof(dir), "softhsm");
	if (th_softhsm_init(&hsm, dir) != 0) {
		kt_check(false, "SoftHSM2 token");
		kt_cleanup(&st);
		return kt_summary();
	}
	test_token_station();
	test_release_gate();
	kt_cleanup(&st);
	return kt_summary();
}
