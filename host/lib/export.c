/*
 * kiln station library: registry exports (CSV / JSON) and signed lot
 * manifests.
 */
#include "host/lib/export.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include "host/lib/db.h"

#include "host/lib/audit.h"
#include "host/lib/err.h"
#include "host/lib/log.h"
#include "host/lib/registry_priv.h"

#define MANIFEST_MAX (64u << 20) /* refuse to verify larger files */
#define SIG_MAX 4096

static const struct {
	const char *name;
	const char *sql;
	int der_col; /* column printed as base64, -1: none */
} sections[] = {
	{ "devices",
	  "SELECT d.id, d.uid, d.serial, d.state, d.key_origin, l.name AS lot, "
	  "d.station_id AS station, d.slot, d.lock_bits, d.identity_digest, "
	  "d.pubkey_sha256, c.serial_hex AS cert_serial, d.created_ms, "
	  "d.updated_ms, d.boot_key_hash FROM devices d JOIN lots l ON l.id = d.lot_id LEFT "
	  "JOIN certificates c ON c.id = d.cert_id ORDER BY d.id",
	  -1 },
	{ "certificates",
	  "SELECT c.id, c.serial_hex, c.status, c.subject, c.not_before, "
	  "c.not_after, c.pubkey_sha256, c.device_id, s.device_serial, "
	  "c.session_id, c.created_ms, c.der FROM certificates c JOIN sessions "
	  "s ON s.id = c.session_id ORDER BY c.id",
	  11 },
	{ "events",
	  "SELECT seq, chain, chain_seq, time_ms, station_id AS station, "
	  "actor, type, uid, device_serial, cert_serial, session_id, details, "
	  "prev_hash, row_hash FROM audit ORDER BY seq",
	  -1 },
};

/* Text form of a column; malloc'ed. */
static char *col_string(ks_db_stmt_t *st, int i, int base64)
{
	int type = ks_db_col_type(st, i);
	const uint8_t *b;
	size_t n;
	char *s;

	switch (type) {
	case KS_DB_T_NULL:
		return strdup("");
	case KS_DB_T_BLOB:
		b = ks_db_col_blob(st, i);
		n = (size_t)ks_db_col_bytes(st, i);
		if (base64)
			return ks_audit_b64_encode(b ? b : (const uint8_t *)"",
						   n);
		s = malloc(2 * n + 1);
		if (s != NULL)
			ks_reg_hex(b ? b : (const uint8_t *)"", n, s);
		return s;
	default:
		return strdup(ks_db_col_text(st, i));
	}
}

static int csv_field(FILE *out, const char *s, int first)
{
	int quote = strpbrk(s, ",\"\r\n") != NULL;
	const char *p;

	if (!first && fputc(',', out) == EOF)
		return KS_ERR_IO;
	if (!quote)
		return fputs(s, out) == EOF ? KS_ERR_IO : KS_OK;
	if (fputc('"', out) == EOF)
		return KS_ERR_IO;
	for (p = s; *p; p++) {
		if (*p == '"' && fputc('"', out) == EOF)
			return KS_ERR_IO;
		if (fputc(*p, out) == EOF)
			return KS_ERR_IO;
	}
	return fputc('"', out) == EOF ? KS_ERR_IO : KS_OK;
}

static json_t *col_json(ks_db_stmt_t *st, int i, int base64)
{
	char *s;
	json_t *j;

	switch (ks_db_col_type(st, i)) {
	case KS_DB_T_NULL:
		return json_null();
	case KS_DB_T_INT:
		return json_integer(ks_db_col_int64(st, i));
	default:
		break;
	}
	s = col_string(st, i, base64);
	if (s == NULL)
		return NULL;
	j = json_string(s);
	free(s);
	return j;
}

static int export_section(ks_reg_t *reg, size_t idx, int json,
			  json_t *root, FILE *out)
{
	ks_db_stmt_t *st = NULL;
	json_t *arr = NULL;
	int ncol, i, rc;
	int r;

	rc = ks_db_prepare(reg->dbh, sections[idx].sql, &st);
	if (rc != KS_DB_EOK)
		return ks_reg_db_err(reg, rc, "export");
	ncol = ks_db_col_count(st);
	r = KS_OK;
	if (json) {
		arr = json_array();
		if (arr == NULL || json_object_set_new(root, sections[idx].name,
						       arr) != 0) {
			r = KS_ERR_NOMEM;
			goto out;
		}
	} else {
		r = csv_field(out, "record", 1);
		for (i = 0; i < ncol && r == KS_OK; i++)
			r = csv_field(out, ks_db_col_name(st, i), 0);
		if (r == KS_OK && fputc('\n', out) == EOF)
			r = KS_ERR_IO;
	}
	while (r == KS_OK && (rc = ks_db_step(st)) == KS_DB_ROW) {
		json_t *obj = json ? json_object() : NULL;

		if (json && (obj == NULL || json_array_append_new(arr, obj))) {
			r = KS_ERR_NOMEM;
			break;
		}
		if (!json)
			r = csv_field(out, sections[idx].name, 1);
		for (i = 0; i < ncol && r == KS_OK; i++) {
			int b64 = i == sections[idx].der_col;

			if (json) {
				json_t *v = col_json(st, i, b64);

				if (v == NULL ||
				    json_object_set_new(obj,
							ks_db_col_name(st, i),
							v) != 0)
					r = KS_ERR_NOMEM;
			} else {
				char *s = col_string(st, i, b64);

				r = s ? csv_field(out, s, 0) : KS_ERR_NOMEM;
				free(s);
			}
		}
		if (!json && r == KS_OK && fputc('\n', out) == EOF)
			r = KS_ERR_IO;
	}
	if (r == KS_OK && rc != KS_DB_DONE)
		r = ks_reg_db_err(reg, rc, "export");
	if (r == KS_OK && !json && fputc('\n', out) == EOF)
		r = KS_ERR_IO;
out:
	ks_db_finish(&st);
	return r;
}

int ks_export_audit(ks_reg_t *reg, const char *format, FILE *out)
{
	json_t *root = NULL;
	size_t i;
	int json;
	int r = KS_ERR_ARG;

	if (reg == NULL || format == NULL || out == NULL)
		return KS_ERR_ARG;
	if (strcmp(format, "json") == 0)
		json = 1;
	else if (strcmp(format, "csv") == 0)
		json = 0;
	else
		return KS_ERR_ARG;
	pthread_mutex_lock(&reg->mu);
	if (json) {
		root = json_pack("{s:s, s:i}", "station", reg->station,
				 "schema", ks_reg_schema_version());
		if (root == NULL) {
			r = KS_ERR_NOMEM;
			goto out;
		}
	}
	/* One read transaction: the sections are one consistent snapshot. */
	if (ks_db_begin_read(reg->dbh) != KS_DB_EOK) {
		r = KS_ERR_DB;
		goto out;
	}
	r = KS_OK;
	for (i = 0; i < sizeof(sections) / sizeof(sections[0]) && r == KS_OK;
	     i++)
		r = export_section(reg, i, json, root, out);
	ks_db_rollback(reg->dbh);
	if (r == KS_OK && json &&
	    (json_dumpf(root, out, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 ||
	     fputc('\n', out) == EOF))
		r = KS_ERR_IO;
	if (r == KS_OK && fflush(out) != 0)
		r = KS_ERR_IO;
out:
	pthread_mutex_unlock(&reg->mu);
	json_decref(root);
	return r;
}

/* ---- manifests ---- */

static json_t *hex_json(ks_db_stmt_t *st, int i)
{
	char hex[65];

	if (ks_db_col_type(st, i) != KS_DB_T_BLOB ||
	    ks_db_col_bytes(st, i) != 32)
		return json_null();
	ks_reg_hex(ks_db_col_blob(st, i), 32, hex);
	return json_string(hex);
}

static int manifest_devices(ks_reg_t *reg, int64_t lot_id, json_t *arr)
{
	ks_db_stmt_t *st = NULL;
	int rc;
	int r = KS_OK;

	rc = ks_db_prepare(reg->dbh, "SELECT d.uid, d.serial, d.state, c.serial_hex, "
				"c.der, d.pubkey_sha256 FROM devices d LEFT JOIN "
				"certificates c ON c.id = d.cert_id AND c.status "
				"= 'ACTIVE' WHERE d.lot_id = ? ORDER BY d.serial", &st);
	if (rc != KS_DB_EOK)
		return ks_reg_db_err(reg, rc, "manifest");
	ks_db_bind_int64(st, 1, lot_id);
	while ((rc = ks_db_step(st)) == KS_DB_ROW) {
		char uid[2 * KS_REG_UID_MAX + 1] = "";
		char ch[65];
		uint8_t h[32];
		int n = (int)ks_db_col_bytes(st, 0);
		json_t *cert_sha = json_null();
		json_t *o;

		if (n > 0 && n <= KS_REG_UID_MAX)
			ks_reg_hex(ks_db_col_blob(st, 0), (size_t)n, uid);
		if (ks_db_col_type(st, 4) == KS_DB_T_BLOB) {
			SHA256(ks_db_col_blob(st, 4),
			       (size_t)ks_db_col_bytes(st, 4), h);
			ks_reg_hex(h, 32, ch);
			cert_sha = json_string(ch);
		}
		o = json_pack("{s:s, s:s, s:s, s:s?, s:o, s:o}", "uid", uid,
			      "serial", ks_db_col_text(st, 1),
			      "state", ks_db_col_text(st, 2),
			      "cert_serial",
			      ks_db_col_text(st, 3),
			      "cert_sha256", cert_sha, "pubkey_sha256",
			      ks_db_col_type(st, 3) == KS_DB_T_NULL
				      ? json_null()
				      : hex_json(st, 5));
		if (o == NULL || json_array_append_new(arr, o) != 0) {
			r = KS_ERR_NOMEM;
			break;
		}
	}
	if (r == KS_OK && rc != KS_DB_DONE)
		r = ks_reg_db_err(reg, rc, "manifest");
	ks_db_finish(&st);
	return r;
}

int ks_export_manifest(ks_reg_t *reg, const char *lot, EVP_PKEY *key,
		       char **manifest, size_t *manifest_len, char **sig_b64)
{
	ks_reg_lot_t l;
	json_t *root = NULL, *devs = NULL;
	char *text = NULL, *full = NULL, *b64 = NULL;
	uint8_t *sig = NULL;
	uint8_t khash[32];
	char khex[65];
	size_t sig_len = 0, n;
	int r;

	if (reg == NULL || lot == NULL || key == NULL || manifest == NULL ||
	    manifest_len == NULL || sig_b64 == NULL)
		return KS_ERR_ARG;
	*manifest = NULL;
	*manifest_len = 0;
	*sig_b64 = NULL;
	r = ks_reg_lot_get(reg, lot, &l);
	if (r != KS_OK)
		return r;
	r = ks_audit_pubkey_sha256(key, khash);
	if (r != KS_OK)
		return r;
	ks_reg_hex(khash, 32, khex);
	devs = json_array();
	if (devs == NULL)
		return KS_ERR_NOMEM;
	pthread_mutex_lock(&reg->mu);
	r = manifest_devices(reg, l.id, devs);
	pthread_mutex_unlock(&reg->mu);
	if (r != KS_OK) {
		json_decref(devs);
		return r;
	}
	root = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:o}", "format",
			 "kiln-lot-manifest-v1", "lot", l.name, "profile",
			 l.profile, "station", ks_reg_station(reg),
			 "generated_ms", (json_int_t)ks_reg_now_ms(),
			 "station_key_sha256", khex, "devices", devs);
	if (root == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (text == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	n = strlen(text);
	full = malloc(n + 2);
	if (full == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	memcpy(full, text, n);
	full[n++] = '\n';
	full[n] = '\0';
	r = ks_audit_sign(key, (const uint8_t *)full, n, &sig, &sig_len);
	if (r != KS_OK)
		goto out;
	b64 = ks_audit_b64_encode(sig, sig_len);
	if (b64 == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	*manifest = full;
	*manifest_len = n;
	*sig_b64 = b64;
	full = NULL;
	b64 = NULL;
out:
	OPENSSL_free(sig);
	free(b64);
	free(full);
	free(text);
	json_decref(root);
	return r;
}

static int write_file(const char *path, const void *data, size_t len)
{
	char tmp[4096];
	FILE *f;
	int r = KS_ERR_IO;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return KS_ERR_ARG;
	f = fopen(tmp, "wb");
	if (f == NULL) {
		ks_log_error("%s: %s", tmp, strerror(errno));
		return KS_ERR_IO;
	}
	if (fwrite(data, 1, len, f) == len && fflush(f) == 0 &&
	    fsync(fileno(f)) == 0)
		r = KS_OK;
	if (fclose(f) != 0)
		r = KS_ERR_IO;
	if (r == KS_OK && rename(tmp, path) != 0)
		r = KS_ERR_IO;
	if (r != KS_OK)
		(void)unlink(tmp);
	return r;
}

int ks_export_manifest_write(ks_reg_t *reg, const char *lot, EVP_PKEY *key,
			     const char *path)
{
	char *m = NULL, *sig = NULL, *line = NULL;
	char sig_path[4096];
	size_t len = 0, sl;
	int r;

	if (path == NULL ||
	    (size_t)snprintf(sig_path, sizeof(sig_path), "%s.sig", path) >=
		    sizeof(sig_path))
		return KS_ERR_ARG;
	r = ks_export_manifest(reg, lot, key, &m, &len, &sig);
	if (r != KS_OK)
		return r;
	sl = strlen(sig);
	line = malloc(sl + 2);
	if (line == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	memcpy(line, sig, sl);
	line[sl] = '\n';
	line[sl + 1] = '\0';
	r = write_file(path, m, len);
	if (r == KS_OK)
		r = write_file(sig_path, line, sl + 1);
out:
	free(line);
	free(sig);
	free(m);
	return r;
}

int ks_export_manifest_verify(const uint8_t *manifest, size_t len,
			      const char *sig_b64, EVP_PKEY *pub)
{
	char buf[SIG_MAX];
	uint8_t *sig = NULL;
	size_t n, sig_len = 0;
	int r;

	if (manifest == NULL || sig_b64 == NULL || pub == NULL)
		return KS_ERR_ARG;
	n = strlen(sig_b64);
	while (n > 0 && (sig_b64[n - 1] == '\n' || sig_b64[n - 1] == '\r' ||
			 sig_b64[n - 1] == ' '))
		n--;
	if (n == 0 || n >= sizeof(buf))
		return KS_ERR_VERIFY;
	memcpy(buf, sig_b64, n);
	buf[n] = '\0';
	if (ks_audit_b64_decode(buf, &sig, &sig_len) != KS_OK)
		return KS_ERR_VERIFY;
	r = ks_audit_sig_verify(pub, manifest, len, sig, sig_len);
	free(sig);
	return r;
}

/* Read a whole file (at most `max` bytes) NUL-terminated; *out malloc'ed. */
static int read_file(const char *path, size_t max, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int r = KS_ERR_IO;

	*out = NULL;
	*len = 0;
	if (f == NULL) {
		ks_log_error("%s: %s", path, strerror(errno));
		return KS_ERR_IO;
	}
	for (;;) {
		size_t got;

		if (n + 1 >= cap) {
			char *p;

			if (cap >= max + 1) {
				r = KS_ERR_ARG;
				goto out;
			}
			cap = cap ? cap * 2 : 4096;
			if (cap > max + 1)
				cap = max + 1;
			p = realloc(buf, cap);
			if (p == NULL) {
				r = KS_ERR_NOMEM;
				goto out;
			}
			buf = p;
		}
		got = fread(buf + n, 1, cap - 1 - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
		goto out;
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	r = KS_OK;
out:
	free(buf);
	fclose(f);
	return r;
}

int ks_export_manifest_verify_file(const char *path, EVP_PKEY *pub)
{
	char sig_path[4096];
	char *m = NULL, *sig = NULL;
	size_t mlen = 0, slen = 0;
	int r;

	if (path == NULL || pub == NULL ||
	    (size_t)snprintf(sig_path, sizeof(sig_path), "%s.sig", path) >=
		    sizeof(sig_path))
		return KS_ERR_ARG;
	r = read_file(path, MANIFEST_MAX, &m, &mlen);
	if (r == KS_OK)
		r = read_file(sig_path, SIG_MAX, &sig, &slen);
	if (r == KS_OK)
		r = ks_export_manifest_verify((const uint8_t *)m, mlen, sig,
					      pub);
	free(sig);
	free(m);
	return r;
}
