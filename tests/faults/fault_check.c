/*
 * Fault sweeps: invariant checks (see fault_check.h).
 */
#include "tests/faults/fault_check.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "host/lib/agent.h"
#include "host/lib/hostkey.h"

void fc_violation(fc_tally_t *t, const char *fmt, ...)
{
	va_list ap;

	t->violations++;
	printf("VIOLATION: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

double fc_elapsed(void)
{
	static struct timespec t0;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (t0.tv_sec == 0 && t0.tv_nsec == 0)
		t0 = now;
	return (double)(now.tv_sec - t0.tv_sec) +
	       (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
}

/* Reasons name ports, serials, ids and hashes; fold those so equal causes
 * land in one histogram line. */
static void normalise(const char *in, char *out, size_t cap)
{
	size_t o = 0;

	for (const char *p = in; *p != '\0' && o + 2 < cap;) {
		size_t run = 0;

		if (*p == '/' && (p == in || p[-1] == ' ')) {
			/* a path (the port): one word */
			while (*p != '\0' && *p != ' ')
				p++;
			if (o + 7 < cap) {
				memcpy(out + o, "<port>", 6);
				o += 6;
			}
			continue;
		}

		while (isxdigit((unsigned char)p[run]))
			run++;
		if (run > 0 && (run >= 8 || strspn(p, "0123456789") == run) &&
		    (p == in || !isalpha((unsigned char)p[-1]) || run >= 8)) {
			out[o++] = run >= 8 ? 'X' : 'N';
			p += run;
			continue;
		}
		out[o++] = *p++;
	}
	out[o] = '\0';
}

void fc_reason(fc_tally_t *t, const char *state, const char *reason)
{
	char norm[160];
	size_t i;

	normalise(reason != NULL ? reason : "", norm, sizeof(norm));
	for (i = 0; i < t->nreasons; i++)
		if (strcmp(t->reasons[i].state, state) == 0 &&
		    strcmp(t->reasons[i].text, norm) == 0)
			break;
	if (i == t->nreasons) {
		if (i == FC_MAX_REASONS)
			return;
		t->nreasons++;
		snprintf(t->reasons[i].state, sizeof(t->reasons[i].state), "%s",
			 state);
		snprintf(t->reasons[i].text, sizeof(t->reasons[i].text), "%s",
			 norm);
		t->reasons[i].count = 0;
	}
	t->reasons[i].count++;
}

void fc_print_reasons(const fc_tally_t *t)
{
	for (size_t i = 0; i < t->nreasons; i++)
		printf("    %5ld x %-8s %s\n", t->reasons[i].count,
		       t->reasons[i].state, t->reasons[i].text);
}

static sqlite3 *db_open(const char *path, fc_tally_t *t)
{
	sqlite3 *h = NULL;

	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fc_violation(t, "cannot open the registry %s: %s", path,
			     h ? sqlite3_errmsg(h) : "?");
		sqlite3_close(h);
		return NULL;
	}
	sqlite3_busy_timeout(h, 5000);
	return h;
}

/* Run a query whose rows are each a violation (column 0..n as text). */
static int expect_no_rows(sqlite3 *h, fc_tally_t *t, const char *what,
			  const char *sql)
{
	sqlite3_stmt *s = NULL;
	int n = 0, rc;

	if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) != SQLITE_OK) {
		fc_violation(t, "%s: bad query: %s", what, sqlite3_errmsg(h));
		return 1;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		char row[512] = "";
		size_t used = 0;

		for (int c = 0; c < sqlite3_column_count(s) && used < 400; c++) {
			const unsigned char *v = sqlite3_column_text(s, c);
			int k = snprintf(row + used, sizeof(row) - used, "%s%s=%s",
					 c ? " " : "", sqlite3_column_name(s, c),
					 v ? (const char *)v : "NULL");

			if (k > 0)
				used += (size_t)k;
		}
		fc_violation(t, "%s: %s", what, row);
		n++;
	}
	if (rc != SQLITE_DONE) {
		fc_violation(t, "%s: %s", what, sqlite3_errmsg(h));
		n++;
	}
	sqlite3_finalize(s);
	return n;
}

/* Every certificate's DER must carry the key hash recorded beside it. */
static int check_cert_keys(sqlite3 *h, fc_tally_t *t)
{
	sqlite3_stmt *s = NULL;
	int n = 0;

	if (sqlite3_prepare_v2(h, "SELECT id, der, pubkey_sha256, serial_hex "
				  "FROM certificates", -1, &s, NULL) != SQLITE_OK)
		return 1;
	while (sqlite3_step(s) == SQLITE_ROW) {
		const uint8_t *der = sqlite3_column_blob(s, 1);
		int len = sqlite3_column_bytes(s, 1);
		const void *rec = sqlite3_column_blob(s, 2);
		const uint8_t *p = der;
		X509 *x = der ? d2i_X509(NULL, &p, len) : NULL;
		uint8_t hash[32];

		if (x == NULL ||
		    ks_pubkey_spki_sha256(X509_get0_pubkey(x), hash) != KS_OK ||
		    rec == NULL || sqlite3_column_bytes(s, 2) != 32 ||
		    memcmp(hash, rec, 32) != 0) {
			fc_violation(t, "certificate %s: DER key differs from "
					"the recorded key hash",
				     sqlite3_column_text(s, 3));
			n++;
		}
		X509_free(x);
	}
	sqlite3_finalize(s);
	return n;
}

int fc_check_registry(const char *db, bool final, fc_tally_t *t)
{
	sqlite3 *h = db_open(db, t);
	int n = 0;

	if (h == NULL)
		return 1;
	n += expect_no_rows(h, t, "ended session without end time",
		"SELECT id, state FROM sessions WHERE state IN "
		"('ACTIVE','FAILED','VOID','SCRAPPED') AND ended_ms IS NULL");
	n += expect_no_rows(h, t, "failed/void/scrapped session without a reason",
		"SELECT id, state FROM sessions WHERE state IN "
		"('FAILED','VOID','SCRAPPED') AND "
		"(failure_reason IS NULL OR failure_reason = '')");
	n += expect_no_rows(h, t, "device serial used twice",
		"SELECT device_serial, count(*) AS n FROM sessions "
		"GROUP BY device_serial HAVING n > 1");
	n += expect_no_rows(h, t, "certificate serial used twice",
		"SELECT serial_hex, count(*) AS n FROM certificates "
		"GROUP BY lower(serial_hex) HAVING n > 1");
	n += expect_no_rows(h, t, "public key certified twice (not VOID)",
		"SELECT hex(pubkey_sha256) AS key, count(*) AS n FROM certificates "
		"WHERE status <> 'VOID' GROUP BY pubkey_sha256 HAVING n > 1");
	n += expect_no_rows(h, t, "certificate of an ended session not VOID",
		"SELECT c.serial_hex, c.status, s.id AS session, s.state "
		"FROM certificates c JOIN sessions s ON s.id = c.session_id "
		"WHERE s.state IN ('FAILED','VOID','SCRAPPED') "
		"AND c.status <> 'VOID'");
	n += expect_no_rows(h, t, "ACTIVE session without its certificate",
		"SELECT s.id FROM sessions s WHERE s.state = 'ACTIVE' AND NOT "
		"EXISTS (SELECT 1 FROM certificates c WHERE c.session_id = s.id "
		"AND c.status IN ('ACTIVE','SUPERSEDED') "
		"AND c.pubkey_sha256 = s.pubkey_sha256)");
	n += expect_no_rows(h, t, "certificate ACTIVE but its session is not",
		"SELECT c.serial_hex, s.state FROM certificates c JOIN sessions s "
		"ON s.id = c.session_id WHERE c.status = 'ACTIVE' "
		"AND s.state <> 'ACTIVE'");
	n += expect_no_rows(h, t, "VOID session without a certificate",
		"SELECT s.id FROM sessions s WHERE s.state = 'VOID' AND NOT EXISTS "
		"(SELECT 1 FROM certificates c WHERE c.session_id = s.id)");
	n += expect_no_rows(h, t, "two live identities for one UID",
		"SELECT hex(s.uid) AS uid, count(*) AS n FROM certificates c "
		"JOIN sessions s ON s.id = c.session_id "
		"WHERE c.status IN ('ISSUED','ACTIVE') GROUP BY s.uid HAVING n > 1");
	n += expect_no_rows(h, t, "two ACTIVE sessions for one UID (no re-provision)",
		"SELECT hex(uid) AS uid, count(*) AS n FROM sessions "
		"WHERE state = 'ACTIVE' AND reprovision = 0 GROUP BY uid "
		"HAVING n > 1");
	n += expect_no_rows(h, t, "two unfinished sessions for one UID",
		"SELECT hex(uid) AS uid, count(*) AS n FROM sessions WHERE state "
		"NOT IN ('ACTIVE','FAILED','VOID','SCRAPPED') GROUP BY uid "
		"HAVING n > 1");
	n += expect_no_rows(h, t, "ACTIVE device row disagrees with its session",
		"SELECT hex(d.uid) AS uid, d.serial FROM devices d "
		"LEFT JOIN certificates c ON c.id = d.cert_id "
		"LEFT JOIN sessions s ON s.id = c.session_id "
		"WHERE d.state = 'ACTIVE' AND (c.id IS NULL OR c.status <> 'ACTIVE' "
		"OR s.state <> 'ACTIVE' OR d.serial <> s.device_serial "
		"OR d.pubkey_sha256 IS NOT c.pubkey_sha256 "
		"OR d.identity_digest IS NOT s.identity_digest "
		"OR d.lock_bits IS NOT s.lock_bits)");
	n += expect_no_rows(h, t, "device has an ACTIVE session but is not ACTIVE",
		"SELECT hex(d.uid) AS uid, d.state FROM devices d WHERE "
		"d.state <> 'ACTIVE' AND EXISTS (SELECT 1 FROM sessions s WHERE "
		"s.device_id = d.id AND s.state = 'ACTIVE')");
	if (final) {
		n += expect_no_rows(h, t, "session left unfinished",
			"SELECT id, state, failure_reason FROM sessions WHERE "
			"state NOT IN ('ACTIVE','FAILED','VOID','SCRAPPED')");
		n += expect_no_rows(h, t, "certificate left ISSUED",
			"SELECT serial_hex, session_id FROM certificates "
			"WHERE status = 'ISSUED'");
	} else {
		n += expect_no_rows(h, t, "ISSUED certificate of a session past ISSUED",
			"SELECT c.serial_hex, s.state FROM certificates c JOIN "
			"sessions s ON s.id = c.session_id WHERE c.status = 'ISSUED' "
			"AND s.state IN ('ACTIVE','FAILED','VOID','SCRAPPED')");
	}
	n += check_cert_keys(h, t);
	sqlite3_close(h);
	return n;
}

long long fc_collect_outcomes(const char *db, long long after_id,
			      fc_tally_t *t)
{
	sqlite3 *h = db_open(db, t);
	sqlite3_stmt *s = NULL;
	long long last = after_id;

	if (h == NULL)
		return last;
	if (sqlite3_prepare_v2(h, "SELECT id, state, coalesce(failure_reason,'') "
				  "FROM sessions WHERE id > ? ORDER BY id",
			       -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, after_id);
		while (sqlite3_step(s) == SQLITE_ROW) {
			const char *st = (const char *)sqlite3_column_text(s, 1);
			const char *why = (const char *)sqlite3_column_text(s, 2);

			last = sqlite3_column_int64(s, 0);
			t->sessions++;
			if (strcmp(st, "ACTIVE") == 0) {
				t->active++;
				continue;
			}
			if (strcmp(st, "FAILED") == 0)
				t->failed++;
			else if (strcmp(st, "VOID") == 0)
				t->voided++;
			else if (strcmp(st, "SCRAPPED") == 0)
				t->scrapped++;
			else
				t->unfinished++;
			fc_reason(t, st, why);
		}
	}
	sqlite3_finalize(s);
	sqlite3_close(h);
	return last;
}

static void tohex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = '\0';
}

fc_board_t fc_check_board(const char *db, const char *spec, bool final,
			  fc_tally_t *t, char *uid_hex)
{
	ks_agent_opts_t opts = {.timeout_ms = 3000, .retries = 2};
	ks_agent_t *a = NULL;
	ks_agent_hello_t hl;
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	EVP_PKEY *k = NULL;
	uint8_t khash[32];
	char uid[2 * KS_UID_MAX + 1] = "?";
	fc_board_t state = FC_BOARD_UNREACHABLE;
	bool holds, active = false;

	if (ks_agent_open(spec, &opts, &a) != KS_OK ||
	    ks_agent_hello(a, &hl) != KS_OK) {
		fc_violation(t, "board %s: no HELLO (%s)", spec,
			     a ? ks_agent_last_error(a) : "open failed");
		goto out;
	}
	ks_agent_free(&a);
	tohex(hl.uid, hl.uid_len, uid);
	if (uid_hex != NULL)
		snprintf(uid_hex, 65, "%s", uid);
	state = (fc_board_t)hl.st.state;
	holds = hl.st.state >= KP_STATE_COMMITTED;
	if (hl.st.integrity != 0)
		fc_violation(t, "board %s: integrity check fails (%u)", uid,
			     hl.st.integrity);
	h = db_open(db, t);
	if (h == NULL)
		goto out;
	if (sqlite3_prepare_v2(h,
		"SELECT d.state, d.identity_digest, d.lock_bits, c.pubkey_sha256, "
		"c.status FROM devices d LEFT JOIN certificates c ON c.id = d.cert_id "
		"WHERE d.uid = ?", -1, &s, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_blob(s, 1, hl.uid, (int)hl.uid_len, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		active = strcmp((const char *)sqlite3_column_text(s, 0), "ACTIVE") == 0;
	if (final && !active) {
		fc_violation(t, "board %s: not ACTIVE in the registry after "
				"completion (board state %u)", uid, hl.st.state);
		goto out;
	}
	if (holds && !active) {
		/* a committed board the registry does not know as ACTIVE: the
		 * station will refuse it forever (not retryable) unless its
		 * session is still open to be resumed */
		sqlite3_stmt *p = NULL;
		bool pending = false;

		if (sqlite3_prepare_v2(h, "SELECT 1 FROM sessions WHERE uid = ? AND "
				       "state NOT IN ('ACTIVE','FAILED','VOID','SCRAPPED')",
				       -1, &p, NULL) == SQLITE_OK) {
			sqlite3_bind_blob(p, 1, hl.uid, (int)hl.uid_len,
					  SQLITE_STATIC);
			pending = sqlite3_step(p) == SQLITE_ROW;
		}
		sqlite3_finalize(p);
		if (!pending)
			fc_violation(t, "board %s holds an identity (state %u) "
					"but the registry has no ACTIVE or "
					"unfinished session for it",
				     uid, hl.st.state);
		goto out;
	}
	if (!active)
		goto out; /* blank or keyed: retryable */
	if (!holds) {
		fc_violation(t, "board %s: ACTIVE in the registry but the board "
				"holds no identity (state %u)", uid, hl.st.state);
		goto out;
	}
	if (!hl.st.has_digest || sqlite3_column_bytes(s, 1) != 32 ||
	    memcmp(sqlite3_column_blob(s, 1), hl.st.id_digest, 32) != 0)
		fc_violation(t, "board %s: HELLO identity digest differs from "
				"the registry's", uid);
	if (!hl.st.has_pubkey || ks_pubkey_from_point(hl.st.pubkey, &k) != KS_OK ||
	    ks_pubkey_spki_sha256(k, khash) != KS_OK ||
	    sqlite3_column_bytes(s, 3) != 32 ||
	    memcmp(sqlite3_column_blob(s, 3), khash, 32) != 0)
		fc_violation(t, "board %s: its public key is not the ACTIVE "
				"certificate's", uid);
	if (sqlite3_column_type(s, 2) == SQLITE_NULL ||
	    sqlite3_column_int64(s, 2) != hl.st.lock)
		fc_violation(t, "board %s: lock bits 0x%02x, registry %s", uid,
			     hl.st.lock, sqlite3_column_text(s, 2));
out:
	EVP_PKEY_free(k);
	sqlite3_finalize(s);
	sqlite3_close(h);
	ks_agent_free(&a);
	return state;
}

bool fc_audit_verify(const char *kiln, const char *db, const char *chain,
		     const char *pub, char *out, size_t outlen)
{
	int p[2], status = -1;
	size_t used = 0;
	pid_t pid;

	if (outlen == 0 || pipe(p) != 0)
		return false;
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execl(kiln, kiln, "audit", "verify", "--db", db, "--ca", chain,
		      "--station-pub", pub, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		char tmp[1024];
		ssize_t n = read(p[0], tmp, sizeof(tmp));

		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && used + 1 < outlen; i++)
			out[used++] = tmp[i];
	}
	out[used] = '\0';
	close(p[0]);
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	       strstr(out, "audit OK") != NULL;
}
