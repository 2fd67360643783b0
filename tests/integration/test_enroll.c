/*
 * Field enrollment end to end (docs/bootstrap.md):
 *  1. a simulated board (kiln-agent-sim image) is provisioned at the
 *     "factory" with a claim credential (profile credential = claim) by
 *     the session engine, like any identity;
 *  2. the enrollment service (ks_est_server, TLS 1.3) runs on loopback;
 *     kiln-enroll opens the claim with the identity API and enrolls: the
 *     registry shows the operational certificate ACTIVE and the claim
 *     SUPERSEDED, and `audit verify` passes;
 *  3. the board talks mutual TLS with its operational identity to
 *     `openssl s_server -Verify`;
 *  4. a copy of the board image taken before enrollment (a cloned claim)
 *     is refused beyond claim_uses: HTTP 403 and an ENROLL_REFUSED audit
 *     event naming the claim serial and the peer address;
 *  5. with a claim credential whose key the test holds (issued through
 *     the signer and recorded like any identity): a CSR for another UID
 *     is refused (403), malformed HTTP is refused (4xx) and the service
 *     keeps serving; a client without a certificate gets no service.
 *
 * Usage: test_enroll KILN-AGENT-SIM KILN-ENROLL OPENSSL
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "host/lib/audit.h"
#include "host/lib/ca.h"
#include "host/lib/est.h"
#include "host/lib/hostkey.h"
#include "host/lib/registry.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"
#include "host/lib/simproc.h"
#include "tests/integration/proc_util.h"

static int passed, failed;
static char dir[64];
static const char *sim_exe, *enroll_exe, *openssl_exe;
static ks_reg_t *reg;
static ks_signer_t *signer;
static ks_engine_t *engine;
static EVP_PKEY *station_key;
static ks_profile_t profiles[2];
static const ks_profile_t *plist[2];
static uint16_t port;

static void check(int cond, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void check(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s ", cond ? "ok  " : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	if (cond)
		passed++;
	else
		failed++;
}

static void die(const char *what)
{
	fprintf(stderr, "test_enroll: setup failed: %s\n", what);
	exit(1);
}

static void set(ks_profile_t *p, const char *k, const char *v)
{
	char err[256];

	if (ks_profile_set(p, k, v, err, sizeof(err)) != KS_OK)
		die(err);
}

/* Station: development CA, signer with the claim and operational
 * profiles, registry with the claim lot, engine. */
static void setup(void)
{
	char path[256], key[256], chain[256], err[256];
	ks_engine_config_t cfg;
	static ks_profile_t *pp[2]; /* the engine keeps this array */
	ks_ca_t *ca = NULL;
	FILE *f;

	snprintf(dir, sizeof(dir), "/tmp/kiln-enroll-XXXXXX");
	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	if (ks_ca_init_dev(dir, "Kiln Test", err, sizeof(err)) != KS_OK)
		die(err);
	snprintf(path, sizeof(path), "%s/%s", dir, KS_CA_FILE_CERT);
	snprintf(key, sizeof(key), "%s/%s", dir, KS_CA_FILE_KEY);
	snprintf(chain, sizeof(chain), "%s/%s", dir, KS_CA_FILE_CHAIN);
	if (ks_ca_load(path, key, chain, &ca) != KS_OK ||
	    ks_signer_new(&ca, &signer) != KS_OK)
		die("ca load");
	if (ks_profile_init(&profiles[0], "claim", err, sizeof(err)) != KS_OK ||
	    ks_profile_init(&profiles[1], "op", err, sizeof(err)) != KS_OK)
		die(err);
	set(&profiles[0], "subject", "CN=claim-${serial},O=Kiln Test");
	set(&profiles[0], "credential", "claim");
	set(&profiles[0], "key_origin", "device");
	set(&profiles[0], "lock", "identity");
	set(&profiles[1], "subject", "CN=${serial},O=Kiln Test");
	set(&profiles[1], "validity_days", "365");
	set(&profiles[1], "key_origin", "device");
	set(&profiles[1], "lock", "none");
	for (int i = 0; i < 2; i++) {
		if (ks_signer_add_profile(signer, &profiles[i]) != KS_OK)
			die("add profile");
		plist[i] = &profiles[i];
		pp[i] = &profiles[i];
	}
	snprintf(path, sizeof(path), "%s/%s", dir, KS_CA_FILE_AUDIT_KEY);
	f = fopen(path, "r");
	if (f == NULL ||
	    (station_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL)
		die("station key");
	fclose(f);
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	if (ks_reg_open(path, "st-enroll", &reg) != KS_OK ||
	    ks_reg_set_station_key(reg, station_key) != KS_OK ||
	    ks_reg_lot_create(reg, "LC", "claim", "C", -1, "tester") != KS_OK)
		die("registry");
	memset(&cfg, 0, sizeof(cfg));
	cfg.station_id = "st-enroll";
	cfg.reg = reg;
	cfg.signer = signer;
	cfg.profiles = pp;
	cfg.nprofiles = 2;
	if (ks_engine_new(&cfg, &engine) != KS_OK)
		die("engine");
}

/* Provision a simulated board with the claim profile. */
static int provision(const char *image, const char *uid,
		     ks_session_result_t *res)
{
	ks_simproc_opts_t o;
	ks_session_params_t p;
	ks_simproc_t *sp = NULL;
	ks_simproc_result_t r;
	int ok;

	memset(&o, 0, sizeof(o));
	o.exe = sim_exe;
	o.image = image;
	o.uid_hex = uid;
	o.quiet = true;
	if (ks_simproc_start(&o, &sp) != KS_OK)
		die("simulator start");
	memset(&p, 0, sizeof(p));
	p.port = ks_simproc_spec(sp);
	p.slot = "factory";
	p.slot_index = 1;
	p.lot = "LC";
	p.profile = "claim";
	p.actor = "tester";
	p.timeout_ms = 500;
	ok = ks_session_run(engine, &p, res) == KS_OK &&
	     res->final == KS_STEP_ACTIVE;
	(void)ks_simproc_stop(&sp, &r);
	return ok;
}

/* ---- processes ---- */

/* Run kiln-enroll with extra args; its exit code, output in *out. */
static int run_enroll(const char *image, const char *extra1,
		      const char *extra2, char **out)
{
	char srv[48], chain[256], log[256];
	pid_t pid;
	int rc;

	snprintf(srv, sizeof(srv), "127.0.0.1:%u", port);
	snprintf(chain, sizeof(chain), "%s/%s", dir, KS_CA_FILE_CHAIN);
	snprintf(log, sizeof(log), "%s/enroll.out", dir);
	{
		char *argv[] = {(char *)enroll_exe, "--image", (char *)image,
				"--ca", chain, "--name", "localhost",
				(char *)extra1, (char *)extra2, NULL};

		if (extra1 == NULL)
			argv[7] = NULL;
		pid = tp_spawn(argv, log);
	}
	(void)srv;
	rc = tp_reap(pid, 30000);
	*out = tp_slurp(log);
	return rc;
}

/* ---- audit queries ---- */

static int audit_count(const char *type, const char *cert_serial,
		       const char *details_like)
{
	char path[256];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int n = -1;

	snprintf(path, sizeof(path), "%s/registry.db", dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) ==
		    SQLITE_OK &&
	    sqlite3_prepare_v2(db,
			       "SELECT COUNT(*) FROM audit WHERE type = ? AND "
			       "cert_serial = ? AND details LIKE ?",
			       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, cert_serial, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, details_like, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* ---- a claim credential whose key the test holds ---- */

static EVP_PKEY *h_key;
static X509 *h_cert;
static const uint8_t h_uid[8] = {0xd1, 0xd2, 0xd3, 0xd4,
				 0xd5, 0xd6, 0xd7, 0xd8};

static void held_claim(void)
{
	ks_reg_session_t s;
	ks_issue_req_t req;
	ks_issued_t iss;
	uint8_t h[32], zero[32] = {0};
	const unsigned char *p;

	if (ks_hostkey_generate(&h_key) != KS_OK ||
	    ks_reg_session_begin(reg, h_uid, sizeof(h_uid), "LC", "claim", 2,
				 KS_REG_KEY_DEVICE, 0, "tester", &s) != KS_OK)
		die("held claim: session");
	memset(&req, 0, sizeof(req));
	snprintf(req.profile, sizeof(req.profile), "claim");
	snprintf(req.serial, sizeof(req.serial), "%s", s.serial);
	snprintf(req.lot, sizeof(req.lot), "LC");
	memcpy(req.uid, h_uid, sizeof(h_uid));
	req.uid_len = sizeof(h_uid);
	req.origin = KS_KEY_ORIGIN_DEVICE;
	if (ks_issue_req_set_pubkey(&req, h_key) != KS_OK ||
	    ks_issue_req_spki_sha256(&req, h) != KS_OK ||
	    ks_reg_keyed(reg, s.id, h, KS_REG_KEY_DEVICE, NULL) != KS_OK ||
	    ks_signer_issue(signer, &req, &iss) != KS_OK ||
	    ks_reg_cert_issued(reg, s.id, iss.der, iss.der_len,
			       iss.serial_hex, iss.spki_sha256,
			       iss.not_before, iss.not_after, NULL) != KS_OK ||
	    ks_reg_written(reg, s.id, zero, NULL) != KS_OK ||
	    ks_reg_verified(reg, s.id, NULL) != KS_OK ||
	    ks_reg_locked(reg, s.id, 0, NULL) != KS_OK ||
	    ks_reg_active(reg, s.id, NULL) != KS_OK)
		die("held claim: issue");
	p = iss.der;
	h_cert = d2i_X509(NULL, &p, iss.der_len);
	if (h_cert == NULL)
		die("held claim: parse");
}

/* A CSR (base64, no line breaks) for h_key naming @uid_hex. */
static char *csr_b64(const char *uid_hex)
{
	X509_REQ *r = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *ext;
	char san[128];
	unsigned char *der = NULL;
	char *out;
	int len;

	snprintf(san, sizeof(san), "URI:urn:kiln:uid:%s", uid_hex);
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
	if (r == NULL || exts == NULL || ext == NULL ||
	    X509_REQ_set_pubkey(r, h_key) != 1 ||
	    sk_X509_EXTENSION_push(exts, ext) <= 0 ||
	    X509_REQ_add_extensions(r, exts) != 1 ||
	    X509_REQ_sign(r, h_key, EVP_sha256()) <= 0 ||
	    (len = i2d_X509_REQ(r, &der)) <= 0)
		die("csr");
	out = calloc(1, (size_t)len * 2 + 4);
	EVP_EncodeBlock((unsigned char *)out, der, len);
	OPENSSL_free(der);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(r);
	return out;
}

/* Send raw bytes over TLS 1.3 (with the held claim when @with_cert);
 * the HTTP status of the answer, 0 when no answer, -1 when the
 * handshake failed. The response goes to resp. */
static int raw_request(int with_cert, const char *bytes, size_t len,
		       char *resp, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	struct sockaddr_in a;
	SSL *ssl = NULL;
	size_t got = 0;
	char chain[256];
	int fd, status = -1;

	snprintf(chain, sizeof(chain), "%s/%s", dir, KS_CA_FILE_CHAIN);
	resp[0] = '\0';
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ctx == NULL || fd < 0 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		goto out;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_load_verify_locations(ctx, chain, NULL);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (with_cert && (SSL_CTX_use_certificate(ctx, h_cert) != 1 ||
			  SSL_CTX_use_PrivateKey(ctx, h_key) != 1))
		goto out;
	ssl = SSL_new(ctx);
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
		goto out;
	status = 0;
	if (len > 0 && SSL_write(ssl, bytes, (int)len) <= 0)
		goto out;
	for (;;) {
		int n = SSL_read(ssl, resp + got, (int)(cap - 1 - got));

		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == cap - 1)
			break;
	}
	resp[got] = '\0';
	if (got >= 12 && strncmp(resp, "HTTP/1.1 ", 9) == 0)
		status = atoi(resp + 9);
out:
	ERR_clear_error();
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	return status;
}

static void parse_head_checks(void)
{
	static const struct {
		const char *req;
		int want; /* 1 complete, 0 more, else status */
	} cases[] = {
		{"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: x\r\n\r\n", 1},
		{"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: x\r\n", 0},
		{"GET /.well-known/est/cacerts HTTP/2.0\r\n\r\n", 505},
		{"PUT /.well-known/est/simpleenroll HTTP/1.1\r\n\r\n", 405},
		{"GET /.well-known/est/serverkeygen HTTP/1.1\r\n\r\n", 404},
		{"POST /.well-known/est/simpleenroll HTTP/1.1\r\nContent-Type: "
		 "application/pkcs10\r\n\r\n", 411},
		{"POST /.well-known/est/simpleenroll HTTP/1.1\r\nContent-Length:"
		 " 10\r\nContent-Length: 10\r\n\r\n", 400},
		{"POST /.well-known/est/simpleenroll HTTP/1.1\r\nContent-Length:"
		 " 99999999\r\n\r\n", 413},
		{"POST /.well-known/est/simpleenroll HTTP/1.1\r\nTransfer-"
		 "Encoding: chunked\r\n\r\n", 501},
		{"POST /.well-known/est/simpleenroll HTTP/1.1\r\nContent-Length:"
		 " 4\r\nContent-Type: text/plain\r\n\r\n", 415},
		{"GET /.well-known/est/cacerts HTTP/1.1\nHost: x\n\n", 400},
		{"GET /.well-known/est/cacerts HTTP/1.1\r\n folded\r\n\r\n", 400},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ks_est_req_t r;
		int pr = ks_est_parse_head((const uint8_t *)cases[i].req,
					   strlen(cases[i].req), &r);
		int got = pr < 0 ? r.status : pr;

		check(got == cases[i].want, "parser: case %zu -> %d (%s)", i,
		      got, pr < 0 ? r.reason : "-");
	}
}

int main(int argc, char **argv)
{
	ks_session_result_t ra, rb;
	ks_reg_device_t dev;
	ks_est_config_t ec;
	ks_est_server_t *srv = NULL;
	ks_est_stats_t stats;
	char img_a[256], img_clone[256], img_b[256], claim_a[KS_REG_SERIAL_MAX * 2];
	char srvc[256], srvk[256], chain[256], err[256] = "", *out;
	static const uint8_t uid_a[8] = {0xa1, 0xa2, 0xa3, 0xa4,
					 0xa5, 0xa6, 0xa7, 0xa8};
	int rc;

	if (argc != 4) {
		fprintf(stderr,
			"usage: test_enroll KILN-AGENT-SIM KILN-ENROLL OPENSSL\n");
		return 2;
	}
	sim_exe = argv[1];
	enroll_exe = argv[2];
	openssl_exe = argv[3];
	signal(SIGPIPE, SIG_IGN);
	setup();
	parse_head_checks();
	if (tp_server_cert(openssl_exe, dir) != 0)
		die("server certificate (openssl CLI)");

	/* 1. the factory: claim credentials on two boards */
	snprintf(img_a, sizeof(img_a), "%s/a.img", dir);
	snprintf(img_b, sizeof(img_b), "%s/b.img", dir);
	snprintf(img_clone, sizeof(img_clone), "%s/clone.img", dir);
	check(provision(img_a, "a1a2a3a4a5a6a7a8", &ra),
	      "board A provisioned with a claim credential (serial %s)",
	      ra.serial);
	check(provision(img_b, "b1b2b3b4b5b6b7b8", &rb),
	      "board B provisioned with a claim credential (serial %s)",
	      rb.serial);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", img_a, img_clone);
		if (system(cmd) != 0)
			die("copy image");
	}
	check(ks_reg_device_get(reg, uid_a, sizeof(uid_a), NULL, &dev) ==
			      KS_OK &&
		      dev.state == KS_REG_ACTIVE && dev.cert_serial[0] != '\0',
	      "registry: board A ACTIVE with claim certificate %s",
	      dev.cert_serial);
	snprintf(claim_a, sizeof(claim_a), "%s", dev.cert_serial);

	/* 2. the enrollment service */
	snprintf(srvc, sizeof(srvc), "%s/srv.pem", dir);
	snprintf(srvk, sizeof(srvk), "%s/srv.key", dir);
	snprintf(chain, sizeof(chain), "%s/%s", dir, KS_CA_FILE_CHAIN);
	memset(&ec, 0, sizeof(ec));
	ec.listen = "127.0.0.1:0";
	ec.cert_pem = srvc;
	ec.key_pem = srvk;
	ec.trust_pem = chain;
	ec.profile = "op";
	ec.profiles = plist;
	ec.nprofiles = 2;
	ec.signer = signer;
	ec.reg = reg;
	ec.timeout_ms = 3000;
	rc = ks_est_server_start(&ec, &srv, err, sizeof(err));
	check(rc == KS_OK, "enrollment service started %s", err);
	if (rc != KS_OK)
		return 1;
	port = ks_est_server_port(srv);
	{
		char s[48];

		snprintf(s, sizeof(s), "127.0.0.1:%u", port);
		rc = run_enroll(img_a, "--server", s, &out);
	}
	check(rc == 0 && strstr(out, "enrolled:") != NULL,
	      "board A enrolled over TLS 1.3 with its claim (exit %d)", rc);
	if (rc != 0)
		printf("%s", out);
	free(out);
	check(ks_reg_device_get(reg, uid_a, sizeof(uid_a), NULL, &dev) ==
			      KS_OK &&
		      dev.state == KS_REG_ACTIVE &&
		      strcmp(dev.cert_serial, claim_a) != 0 &&
		      strncmp(dev.serial, "C-", 2) == 0,
	      "registry: board A ACTIVE with operational certificate %s "
	      "(serial %s)",
	      dev.cert_serial, dev.serial);
	check(audit_count("ENROLLED", claim_a, "%127.0.0.1%") == 1,
	      "audit: one ENROLLED event naming the claim and the peer");

	/* 3. mutual TLS with the operational identity */
	{
		char accept_s[32], connect_s[48], srv_out[300], *so;
		pid_t spid;
		int sp = (int)port + 1;

		snprintf(accept_s, sizeof(accept_s), "127.0.0.1:%d", sp);
		snprintf(connect_s, sizeof(connect_s), "127.0.0.1:%d", sp);
		snprintf(srv_out, sizeof(srv_out), "%s/s_server.out", dir);
		{
			char *sargv[] = {(char *)openssl_exe, "s_server",
					 "-accept", accept_s, "-Verify", "1",
					 "-CAfile", chain, "-cert", srvc,
					 "-key", srvk, "-naccept", "1",
					 "-rev", NULL};

			spid = tp_spawn(sargv, srv_out);
		}
		if (!tp_wait_for(srv_out, "ACCEPT", 10000))
			check(0, "openssl s_server listening");
		rc = run_enroll(img_a, "--connect", connect_s, &out);
		(void)tp_reap(spid, 5000);
		so = tp_slurp(srv_out);
		check(rc == 0 && strstr(out, "reply: nlik morf olleh") != NULL,
		      "board A: mutual TLS with its operational identity "
		      "(exit %d)",
		      rc);
		{
			char cn[96];

			snprintf(cn, sizeof(cn), "depth=0 CN = %s", dev.serial);
			check(strstr(so, cn) != NULL &&
				      strstr(so, "verify error") == NULL,
			      "s_server verified the operational certificate "
			      "(CN = %s)",
			      dev.serial);
		}
		if (failed > 0)
			printf("---- client ----\n%s---- s_server ----\n%s", out,
			       so);
		free(so);
		free(out);
	}

	/* 4. the cloned claim */
	{
		char s[48];

		snprintf(s, sizeof(s), "127.0.0.1:%u", port);
		rc = run_enroll(img_clone, "--server", s, &out);
	}
	check(rc == 6 && strstr(out, "HTTP 403") != NULL,
	      "cloned claim refused beyond claim_uses (exit %d: %.*s)", rc,
	      (int)strcspn(strstr(out, "enrollment:") ? strstr(out, "enrollment:") : out, "\n"),
	      strstr(out, "enrollment:") ? strstr(out, "enrollment:") : out);
	free(out);
	check(audit_count("ENROLL_REFUSED", claim_a, "%127.0.0.1%") == 1,
	      "audit: ENROLL_REFUSED names the claim serial and the peer");

	/* 5. a held claim: wrong UID, malformed HTTP, no certificate */
	held_claim();
	{
		char *b64 = csr_b64("a1a2a3a4a5a6a7a8");
		char req[4096], resp[8192];
		int n = snprintf(req, sizeof(req),
				 "POST /.well-known/est/simpleenroll HTTP/1.1"
				 "\r\nContent-Type: application/pkcs10\r\n"
				 "Content-Length: %zu\r\n\r\n%s",
				 strlen(b64), b64);

		rc = raw_request(1, req, (size_t)n, resp, sizeof(resp));
		check(rc == 403 && strstr(resp, "another device UID") != NULL,
		      "CSR for another UID refused (%d)", rc);
		free(b64);
		b64 = csr_b64("d1d2d3d4d5d6d7d8");
		n = snprintf(req, sizeof(req),
			     "POST /.well-known/est/simpleenroll HTTP/1.1\r\n"
			     "Content-Type: application/pkcs10\r\n"
			     "Content-Length: %zu\r\n\r\n%s",
			     strlen(b64) - 4, b64);
		rc = raw_request(1, req, (size_t)n, resp, sizeof(resp));
		check(rc == 400, "truncated base64 body refused (%d)", rc);
		free(b64);
		rc = raw_request(1, "GARBAGE\r\n\r\n", 11, resp, sizeof(resp));
		check(rc == 400, "malformed request line refused (%d)", rc);
		memset(req, 'A', sizeof(req));
		memcpy(req, "GET /.well-known/est/cacerts HTTP/1.1\r\nX: ", 42);
		rc = raw_request(1, req, sizeof(req), resp, sizeof(resp));
		check(rc == 431, "oversized head refused (%d)", rc);
		rc = raw_request(1, "GET /.well-known/est/cacerts HTTP/1.1\r\n"
				    "\r\n",
				 41, resp, sizeof(resp));
		check(rc == 200 &&
			      strstr(resp, "smime-type=certs-only") != NULL,
		      "the service still serves: cacerts 200 (certs-only)");
		rc = raw_request(0, "GET /.well-known/est/cacerts HTTP/1.1\r\n"
				    "\r\n",
				 41, resp, sizeof(resp));
		check(rc <= 0, "a client without a certificate gets no "
			       "answer (%d)", rc);
	}
	ks_est_server_stats(srv, &stats);
	check(stats.enrolled == 1 && stats.refused >= 4,
	      "service counters: %llu enrolled, %llu refused, %llu TLS "
	      "failures",
	      (unsigned long long)stats.enrolled,
	      (unsigned long long)stats.refused,
	      (unsigned long long)stats.tls_failed);
	ks_est_server_stop(&srv);

	/* audit verify over the whole log */
	ks_reg_close(&reg);
	{
		char path[256];
		ks_audit_report_t rep;
		EVP_PKEY *pub = NULL;
		unsigned char *der = NULL;
		const unsigned char *p;
		int len = i2d_PUBKEY(station_key, &der);

		p = der;
		if (len > 0)
			pub = d2i_PUBKEY(NULL, &p, len);
		snprintf(path, sizeof(path), "%s/registry.db", dir);
		memset(&rep, 0, sizeof(rep));
		rc = ks_audit_verify(path, chain, pub, &rep);
		check(rc == KS_OK && rep.ok,
		      "audit verify passes: %llu rows, %llu checkpoints",
		      (unsigned long long)rep.rows,
		      (unsigned long long)rep.checkpoints);
		EVP_PKEY_free(pub);
		OPENSSL_free(der);
	}
	ks_engine_free(&engine);
	ks_signer_free(&signer);
	EVP_PKEY_free(station_key);
	EVP_PKEY_free(h_key);
	X509_free(h_cert);
	if (failed == 0) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
