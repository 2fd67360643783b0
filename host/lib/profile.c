/*
 * kiln station library: certificate profiles (configuration and templates).
 */
#include "host/lib/profile.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/obj_mac.h>

#include "host/lib/image.h"
#include "protocol/msg.h"

/* Allowlisted subject attribute types with their RFC 5280 upper bounds. */
static const struct {
	const char *name;
	int nid;
	size_t max_len;
} rdn_types[] = {
	{ "CN", NID_commonName, 64 },
	{ "O", NID_organizationName, 64 },
	{ "OU", NID_organizationalUnitName, 64 },
	{ "C", NID_countryName, 2 },
	{ "ST", NID_stateOrProvinceName, 128 },
	{ "L", NID_localityName, 128 },
	{ "serialNumber", NID_serialNumber, 64 },
};

#define N_RDN_TYPES (sizeof(rdn_types) / sizeof(rdn_types[0]))

static const struct {
	const char *name;
	uint32_t bit;
} ku_names[] = {
	{ "digitalSignature", KS_KU_DIGITAL_SIGNATURE },
	{ "nonRepudiation", KS_KU_NON_REPUDIATION },
	{ "contentCommitment", KS_KU_NON_REPUDIATION },
	{ "keyAgreement", KS_KU_KEY_AGREEMENT },
};

static const struct {
	const char *name;
	uint32_t bit;
} eku_names[] = {
	{ "clientAuth", KS_EKU_CLIENT_AUTH },
	{ "serverAuth", KS_EKU_SERVER_AUTH },
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int name_char_ok(int c)
{
	return isalnum(c) || c == '.' || c == '_' || c == '-';
}

static int printable_ascii(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	}
	return 1;
}

const char *ks_profile_origin_name(ks_key_origin_t origin)
{
	switch (origin) {
	case KS_KEY_ORIGIN_DEVICE:
		return "device";
	case KS_KEY_ORIGIN_HOST:
		return "host";
	default:
		return "unset";
	}
}

const char *ks_profile_lock_name(ks_lock_policy_t lock)
{
	switch (lock) {
	case KS_LOCK_POLICY_NONE:
		return "none";
	case KS_LOCK_POLICY_IDENTITY:
		return "identity";
	case KS_LOCK_POLICY_FULL:
		return "full";
	default:
		return "unset";
	}
}

uint8_t ks_profile_lock_level(const ks_profile_t *p)
{
	switch (p->lock) {
	case KS_LOCK_POLICY_IDENTITY:
		return (uint8_t)KP_LOCK_LEVEL_IDENTITY;
	case KS_LOCK_POLICY_FULL:
		return (uint8_t)KP_LOCK_LEVEL_FULL;
	default:
		return 0;
	}
}

size_t ks_profile_rdn_max_len(int nid)
{
	size_t i;

	for (i = 0; i < N_RDN_TYPES; i++) {
		if (rdn_types[i].nid == nid)
			return rdn_types[i].max_len;
	}
	return 0;
}

ks_err_t ks_profile_init(ks_profile_t *p, const char *name, char *err,
			 size_t errlen)
{
	size_t i, len;

	if (p == NULL || name == NULL)
		return KS_ERR_ARG;
	memset(p, 0, sizeof(*p));
	len = strlen(name);
	if (len == 0 || len >= sizeof(p->name)) {
		set_err(err, errlen, "profile name '%s': must be 1..%zu characters",
			name, sizeof(p->name) - 1);
		return KS_ERR_CONFIG;
	}
	for (i = 0; i < len; i++) {
		if (!name_char_ok((unsigned char)name[i])) {
			set_err(err, errlen,
				"profile name '%s': only A-Z a-z 0-9 . _ - allowed",
				name);
			return KS_ERR_CONFIG;
		}
	}
	memcpy(p->name, name, len + 1);
	p->backdate_seconds = KS_PROFILE_BACKDATE_DEFAULT;
	p->key_usage = KS_KU_DIGITAL_SIGNATURE;
	p->ext_key_usage = KS_EKU_CLIENT_AUTH;
	p->key_alg = KS_KEY_ALG_EC_P256;
	return KS_OK;
}

/*
 * Template expansion. Grammar: literal printable ASCII, "${name}" for a
 * variable, "$$" for a literal '$'. Anything else after '$' is an error.
 */
ks_err_t ks_profile_expand(const char *tmpl, const ks_profile_vars_t *vars,
			   char *out, size_t outlen)
{
	const char *p = tmpl;
	size_t o = 0;

	if (tmpl == NULL || vars == NULL || out == NULL || outlen == 0)
		return KS_ERR_ARG;
	out[0] = '\0';
	while (*p != '\0') {
		const char *val = NULL;
		char lit[2] = { 0, 0 };
		size_t vlen;

		if (*p != '$') {
			lit[0] = *p++;
			val = lit;
		} else if (p[1] == '$') {
			lit[0] = '$';
			val = lit;
			p += 2;
		} else if (p[1] == '{') {
			const char *end = strchr(p + 2, '}');
			size_t nlen;

			if (end == NULL)
				return KS_ERR_ARG;
			nlen = (size_t)(end - (p + 2));
			if (nlen == 6 && memcmp(p + 2, "serial", 6) == 0)
				val = vars->serial;
			else if (nlen == 3 && memcmp(p + 2, "uid", 3) == 0)
				val = vars->uid_hex;
			else if (nlen == 3 && memcmp(p + 2, "lot", 3) == 0)
				val = vars->lot;
			else if (nlen == 7 && memcmp(p + 2, "profile", 7) == 0)
				val = vars->profile;
			else
				return KS_ERR_ARG;
			if (val == NULL)
				return KS_ERR_ARG;
			p = end + 1;
		} else {
			return KS_ERR_ARG;
		}
		vlen = strlen(val);
		if (vlen >= outlen - o)
			return KS_ERR_POLICY;
		memcpy(out + o, val, vlen);
		o += vlen;
		out[o] = '\0';
	}
	return KS_OK;
}

/* Explain why a template does not parse (for config errors). */
static void template_problem(const char *tmpl, char *buf, size_t buflen)
{
	const char *p = tmpl;

	snprintf(buf, buflen, "malformed template");
	while ((p = strchr(p, '$')) != NULL) {
		if (p[1] == '$') {
			p += 2;
			continue;
		}
		if (p[1] != '{') {
			snprintf(buf, buflen,
				 "'$' must start ${var} (use $$ for a literal $)");
			return;
		}
		{
			const char *end = strchr(p + 2, '}');
			int n;

			if (end == NULL) {
				snprintf(buf, buflen, "unterminated '${'");
				return;
			}
			n = (int)(end - (p + 2));
			if (!((n == 6 && memcmp(p + 2, "serial", 6) == 0) ||
			      (n == 3 && memcmp(p + 2, "uid", 3) == 0) ||
			      (n == 3 && memcmp(p + 2, "lot", 3) == 0) ||
			      (n == 7 && memcmp(p + 2, "profile", 7) == 0))) {
				snprintf(buf, buflen,
					 "unknown variable '${%.*s}' (known: ${serial}, ${uid}, ${lot}, ${profile})",
					 n > 32 ? 32 : n, p + 2);
				return;
			}
			p = end + 1;
		}
	}
}

/* Expand with placeholder values: checks the syntax of a template. */
static ks_err_t check_template(const char *key, const char *tmpl, char *exp,
			       size_t explen, char *err, size_t errlen)
{
	const ks_profile_vars_t dummy = { "x", "x", "x", "x" };
	char why[160];
	ks_err_t r;

	if (!printable_ascii(tmpl)) {
		set_err(err, errlen,
			"%s: bad value '%s' (only printable ASCII allowed)", key,
			tmpl);
		return KS_ERR_CONFIG;
	}
	r = ks_profile_expand(tmpl, &dummy, exp, explen);
	if (r == KS_ERR_POLICY) {
		set_err(err, errlen, "%s: bad value '%s' (too long)", key, tmpl);
		return KS_ERR_CONFIG;
	}
	if (r != KS_OK) {
		template_problem(tmpl, why, sizeof(why));
		set_err(err, errlen, "%s: bad value '%s' (%s)", key, tmpl, why);
		return KS_ERR_CONFIG;
	}
	return KS_OK;
}

/* Copy [b, e) trimmed of surrounding blanks into out (size outlen). */
static int copy_trimmed(const char *b, const char *e, char *out,
			size_t outlen)
{
	size_t n;

	while (b < e && isspace((unsigned char)*b))
		b++;
	while (e > b && isspace((unsigned char)e[-1]))
		e--;
	n = (size_t)(e - b);
	if (n >= outlen)
		return -1;
	memcpy(out, b, n);
	out[n] = '\0';
	return 0;
}

/*
 * Parse "CN=${serial},O=Acme,OU=Line 1" into rdn[]. A ',' or '\' inside a
 * value is written "\," or "\\".
 */
static ks_err_t parse_subject(const char *value, ks_profile_rdn_t *rdn,
			      uint32_t *count, char *err, size_t errlen)
{
	const char *p = value;
	uint32_t n = 0;

	if (*value == '\0') {
		set_err(err, errlen, "subject: bad value '' (empty)");
		return KS_ERR_CONFIG;
	}
	while (*p != '\0') {
		char attr[32], raw[KS_PROFILE_RDN_VALUE_MAX];
		char exp[KS_PROFILE_TEMPLATE_MAX];
		const char *eq = strchr(p, '=');
		size_t ri = 0, t, maxl = 0;
		int nid = 0;
		ks_err_t r;

		if (eq == NULL || copy_trimmed(p, eq, attr, sizeof(attr)) != 0) {
			set_err(err, errlen,
				"subject: bad value '%s' (expected ATTR=value[,ATTR=value...])",
				value);
			return KS_ERR_CONFIG;
		}
		for (t = 0; t < N_RDN_TYPES; t++) {
			if (strcmp(attr, rdn_types[t].name) == 0) {
				nid = rdn_types[t].nid;
				maxl = rdn_types[t].max_len;
			}
		}
		if (nid == 0) {
			set_err(err, errlen,
				"subject: bad value '%s' (unknown attribute '%s'; allowed: CN O OU C ST L serialNumber)",
				value, attr);
			return KS_ERR_CONFIG;
		}
		if (n == KS_PROFILE_RDN_MAX) {
			set_err(err, errlen,
				"subject: bad value '%s' (more than %d attributes)",
				value, KS_PROFILE_RDN_MAX);
			return KS_ERR_CONFIG;
		}
		p = eq + 1;
		while (*p == ' ' || *p == '\t')
			p++;
		while (*p != '\0' && *p != ',') {
			char c = *p++;

			if (c == '\\') {
				if (*p != ',' && *p != '\\') {
					set_err(err, errlen,
						"subject: bad value '%s' (only \\, and \\\\ escapes allowed)",
						value);
					return KS_ERR_CONFIG;
				}
				c = *p++;
			}
			if (ri + 1 >= sizeof(raw)) {
				set_err(err, errlen,
					"subject: bad value '%s' (attribute %s too long)",
					value, attr);
				return KS_ERR_CONFIG;
			}
			raw[ri++] = c;
		}
		while (ri > 0 && (raw[ri - 1] == ' ' || raw[ri - 1] == '\t'))
			ri--;
		raw[ri] = '\0';
		if (*p == ',')
			p++;
		if (ri == 0) {
			set_err(err, errlen,
				"subject: bad value '%s' (attribute %s is empty)",
				value, attr);
			return KS_ERR_CONFIG;
		}
		r = check_template("subject", raw, exp, sizeof(exp), err, errlen);
		if (r != KS_OK)
			return r;
		if (nid == NID_countryName &&
		    (strlen(exp) != 2 || !isupper((unsigned char)exp[0]) ||
		     !isupper((unsigned char)exp[1]))) {
			set_err(err, errlen,
				"subject: bad value '%s' (C must be a two-letter country code)",
				value);
			return KS_ERR_CONFIG;
		}
		if (strlen(exp) > maxl) {
			set_err(err, errlen,
				"subject: bad value '%s' (%s longer than %zu characters)",
				value, attr, maxl);
			return KS_ERR_CONFIG;
		}
		rdn[n].nid = nid;
		memcpy(rdn[n].value, raw, ri + 1);
		n++;
		if (*p == '\0' && p[-1] == ',') {
			set_err(err, errlen, "subject: bad value '%s' (trailing ',')",
				value);
			return KS_ERR_CONFIG;
		}
	}
	*count = n;
	return KS_OK;
}

/* Strict unsigned decimal: digits only, no sign or blanks, within max. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end = NULL;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

/*
 * Parse a comma-separated list of names from tbl into a bit mask. Returns
 * 0, or -1 with the offending item in bad.
 */
#define PARSE_LIST(value, tbl, mask, bad, badlen)                               \
	parse_list(value, (const void *)(tbl), sizeof((tbl)[0]),                \
		   sizeof(tbl) / sizeof((tbl)[0]), mask, bad, badlen)

struct name_bit {
	const char *name;
	uint32_t bit;
};

static int parse_list(const char *value, const void *tbl, size_t stride,
		      size_t n, uint32_t *mask, char *bad, size_t badlen)
{
	const char *p = value;
	uint32_t m = 0;

	for (;;) {
		const char *comma = strchr(p, ',');
		const char *e = comma != NULL ? comma : p + strlen(p);
		char item[64];
		size_t i;
		int found = 0;

		if (copy_trimmed(p, e, item, sizeof(item)) != 0) {
			snprintf(bad, badlen, "%.*s", 32, p);
			return -1;
		}
		for (i = 0; i < n; i++) {
			const struct name_bit *nb = (const struct name_bit *)(
				(const void *)((const char *)tbl + i * stride));

			if (strcasecmp(item, nb->name) == 0) {
				m |= nb->bit;
				found = 1;
			}
		}
		if (!found) {
			snprintf(bad, badlen, "%s", item);
			return -1;
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	*mask = m;
	return 0;
}

/* A DNS name: dot-separated labels of [a-z0-9-], 1..63 each, <= 253. */
static int dns_name_ok(const char *s)
{
	size_t len = strlen(s), label = 0, i;

	if (len == 0 || len > 253)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-'))
			return 0;
		if (c == '-' && label == 0)
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && s[len - 1] != '-';
}

/* A URI for a SAN: scheme ':' rest, printable ASCII without blanks/quotes. */
static int uri_ok(const char *s)
{
	const char *colon = strchr(s, ':');
	const char *p;

	if (colon == NULL || colon == s || colon[1] == '\0')
		return 0;
	if (!isalpha((unsigned char)s[0]))
		return 0;
	for (p = s; p < colon; p++) {
		if (!(isalnum((unsigned char)*p) || *p == '+' || *p == '-' ||
		      *p == '.'))
			return 0;
	}
	for (p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f || strchr("<>\"{}|\\^`", c) != NULL)
			return 0;
	}
	return 1;
}

int ks_profile_dns_name_ok(const char *s)
{
	return dns_name_ok(s);
}

int ks_profile_uri_ok(const char *s)
{
	return uri_ok(s);
}

ks_err_t ks_profile_set(ks_profile_t *p, const char *key, const char *value,
			char *err, size_t errlen)
{
	char exp[KS_PROFILE_TEMPLATE_MAX * 2];
	char bad[64];
	uint64_t u;
	uint32_t mask;
	ks_err_t r;

	if (p == NULL || key == NULL || value == NULL) {
		set_err(err, errlen, "internal: NULL argument");
		return KS_ERR_ARG;
	}
	if (strcmp(key, "subject") == 0) {
		ks_profile_rdn_t rdn[KS_PROFILE_RDN_MAX];
		uint32_t n = 0;

		if (strlen(value) >= sizeof(p->subject)) {
			set_err(err, errlen,
				"subject: bad value '%.40s...' (longer than %zu characters)",
				value, sizeof(p->subject) - 1);
			return KS_ERR_CONFIG;
		}
		memset(rdn, 0, sizeof(rdn));
		r = parse_subject(value, rdn, &n, err, errlen);
		if (r != KS_OK)
			return r;
		memcpy(p->rdn, rdn, sizeof(rdn));
		p->rdn_count = n;
		snprintf(p->subject, sizeof(p->subject), "%s", value);
		return KS_OK;
	}
	if (strcmp(key, "validity_days") == 0) {
		if (parse_u64(value, KS_PROFILE_VALIDITY_DAYS_MAX, &u) != 0 ||
		    u == 0) {
			set_err(err, errlen,
				"validity_days: bad value '%s' (expected 1..%u)",
				value, KS_PROFILE_VALIDITY_DAYS_MAX);
			return KS_ERR_CONFIG;
		}
		p->validity_days = (uint32_t)u;
		return KS_OK;
	}
	if (strcmp(key, "backdate_seconds") == 0) {
		if (parse_u64(value, KS_PROFILE_BACKDATE_MAX, &u) != 0) {
			set_err(err, errlen,
				"backdate_seconds: bad value '%s' (expected 0..%u)",
				value, KS_PROFILE_BACKDATE_MAX);
			return KS_ERR_CONFIG;
		}
		p->backdate_seconds = (uint32_t)u;
		return KS_OK;
	}
	if (strcmp(key, "key_usage") == 0) {
		if (PARSE_LIST(value, ku_names, &mask, bad, sizeof(bad)) != 0) {
			const char *why =
				"expected a comma-separated list of digitalSignature, nonRepudiation, keyAgreement";

			if (strcasecmp(bad, "keyCertSign") == 0 ||
			    strcasecmp(bad, "cRLSign") == 0)
				why = "end-entity certificates cannot sign certificates or CRLs";
			else if (strcasecmp(bad, "keyEncipherment") == 0 ||
				 strcasecmp(bad, "dataEncipherment") == 0)
				why = "not applicable to EC keys";
			set_err(err, errlen, "key_usage: bad value '%s' (%s)",
				bad, why);
			return KS_ERR_CONFIG;
		}
		p->key_usage = mask;
		return KS_OK;
	}
	if (strcmp(key, "extended_key_usage") == 0) {
		if (p->credential == KS_CREDENTIAL_CLAIM) {
			set_err(err, errlen,
				"extended_key_usage: not allowed in a claim profile (its only key purpose is the kiln claim OID)");
			return KS_ERR_CONFIG;
		}
		if (PARSE_LIST(value, eku_names, &mask, bad, sizeof(bad)) != 0) {
			set_err(err, errlen,
				"extended_key_usage: bad value '%s' (expected a comma-separated list of clientAuth, serverAuth)",
				bad);
			return KS_ERR_CONFIG;
		}
		p->ext_key_usage = mask;
		return KS_OK;
	}
	if (strcmp(key, "san_dns") == 0 || strcmp(key, "san_uri") == 0) {
		int dns = key[4] == 'd';
		uint32_t *count = dns ? &p->san_dns_count : &p->san_uri_count;
		char(*arr)[KS_PROFILE_TEMPLATE_MAX] = dns ? p->san_dns :
							    p->san_uri;

		if (*count == KS_PROFILE_SAN_MAX) {
			set_err(err, errlen,
				"%s: bad value '%s' (at most %d %s entries)", key,
				value, KS_PROFILE_SAN_MAX, key);
			return KS_ERR_CONFIG;
		}
		if (strlen(value) >= KS_PROFILE_TEMPLATE_MAX) {
			set_err(err, errlen,
				"%s: bad value '%.40s...' (longer than %d characters)",
				key, value, KS_PROFILE_TEMPLATE_MAX - 1);
			return KS_ERR_CONFIG;
		}
		r = check_template(key, value, exp, sizeof(exp), err, errlen);
		if (r != KS_OK)
			return r;
		if (dns ? !dns_name_ok(exp) : !uri_ok(exp)) {
			set_err(err, errlen, "%s: bad value '%s' (%s)", key,
				value,
				dns ? "not a DNS name: labels of a-z 0-9 - separated by '.'" :
				      "not a URI: scheme:rest, printable, no blanks");
			return KS_ERR_CONFIG;
		}
		snprintf(arr[*count], KS_PROFILE_TEMPLATE_MAX, "%s", value);
		(*count)++;
		return KS_OK;
	}
	if (strcmp(key, "key_origin") == 0) {
		if (strcmp(value, "device") == 0) {
			p->key_origin = KS_KEY_ORIGIN_DEVICE;
		} else if (strcmp(value, "host") == 0) {
			p->key_origin = KS_KEY_ORIGIN_HOST;
		} else {
			set_err(err, errlen,
				"key_origin: bad value '%s' (expected device or host)",
				value);
			return KS_ERR_CONFIG;
		}
		return KS_OK;
	}
	if (strcmp(key, "lock") == 0) {
		if (strcmp(value, "none") == 0) {
			p->lock = KS_LOCK_POLICY_NONE;
		} else if (strcmp(value, "identity") == 0) {
			p->lock = KS_LOCK_POLICY_IDENTITY;
		} else if (strcmp(value, "full") == 0) {
			p->lock = KS_LOCK_POLICY_FULL;
		} else {
			set_err(err, errlen,
				"lock: bad value '%s' (expected none, identity or full)",
				value);
			return KS_ERR_CONFIG;
		}
		return KS_OK;
	}
	if (strcmp(key, "key_algorithm") == 0) {
		if (strcasecmp(value, "ec-p256") == 0 ||
		    strcasecmp(value, "P-256") == 0 ||
		    strcasecmp(value, "prime256v1") == 0 ||
		    strcasecmp(value, "secp256r1") == 0) {
			p->key_alg = KS_KEY_ALG_EC_P256;
			return KS_OK;
		}
		set_err(err, errlen,
			"key_algorithm: bad value '%s' (only ec-p256 is supported)",
			value);
		return KS_ERR_CONFIG;
	}
	if (strcmp(key, "lot_quota") == 0) {
		if (parse_u64(value, UINT32_MAX, &u) != 0) {
			set_err(err, errlen,
				"lot_quota: bad value '%s' (expected 0..%u, 0 = unlimited)",
				value, UINT32_MAX);
			return KS_ERR_CONFIG;
		}
		p->lot_quota = u;
		return KS_OK;
	}
	if (strcmp(key, "credential") == 0) {
		if (strcmp(value, "identity") == 0) {
			if (p->credential == KS_CREDENTIAL_CLAIM) {
				p->ext_key_usage = KS_EKU_CLIENT_AUTH;
				p->claim_uses = 0;
			}
			p->credential = KS_CREDENTIAL_IDENTITY;
		} else if (strcmp(value, "claim") == 0) {
			/* restricted key purpose, short life, one use */
			p->credential = KS_CREDENTIAL_CLAIM;
			p->ext_key_usage = KS_EKU_KILN_CLAIM;
			if (p->validity_days == 0)
				p->validity_days =
					KS_PROFILE_CLAIM_VALIDITY_DEFAULT;
			if (p->claim_uses == 0)
				p->claim_uses = 1;
		} else {
			set_err(err, errlen,
				"credential: bad value '%s' (expected identity or claim)",
				value);
			return KS_ERR_CONFIG;
		}
		return KS_OK;
	}
	if (strcmp(key, "claim_uses") == 0) {
		if (parse_u64(value, KS_PROFILE_CLAIM_USES_MAX, &u) != 0) {
			set_err(err, errlen,
				"claim_uses: bad value '%s' (expected 0..%u)",
				value, KS_PROFILE_CLAIM_USES_MAX);
			return KS_ERR_CONFIG;
		}
		p->claim_uses = (uint32_t)u;
		return KS_OK;
	}
	if (strcmp(key, "production") == 0) {
		if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0) {
			p->production = 1;
		} else if (strcmp(value, "no") == 0 ||
			   strcmp(value, "false") == 0) {
			p->production = 0;
		} else {
			set_err(err, errlen,
				"production: bad value '%s' (expected yes or no)",
				value);
			return KS_ERR_CONFIG;
		}
		return KS_OK;
	}
	if (strcmp(key, "secure_boot_key") == 0) {
		uint8_t pub[KS_IMAGE_PUBKEY_LEN];
		char why[256] = "";

		if (ks_image_pubkey_load(value, pub, why, sizeof(why)) !=
		    KS_OK) {
			set_err(err, errlen, "secure_boot_key: bad value (%s)",
				why);
			return KS_ERR_CONFIG;
		}
		ks_image_key_hash(pub, p->boot_key_hash);
		p->has_boot_key = true;
		return KS_OK;
	}
	set_err(err, errlen,
		"unknown profile key '%s' (known: subject, validity_days, backdate_seconds, key_usage, extended_key_usage, san_dns, san_uri, key_origin, lock, key_algorithm, lot_quota, production, credential, claim_uses, secure_boot_key)",
		key);
	return KS_ERR_CONFIG;
}

ks_err_t ks_profile_validate(const ks_profile_t *p, char *err, size_t errlen)
{
	const char *missing = NULL;

	if (p == NULL)
		return KS_ERR_ARG;
	if (p->name[0] == '\0' ||
	    memchr(p->name, '\0', sizeof(p->name)) == NULL) {
		set_err(err, errlen, "profile has no name");
		return KS_ERR_CONFIG;
	}
	if (p->rdn_count == 0)
		missing = "subject";
	else if (p->validity_days == 0)
		missing = "validity_days";
	else if (p->key_origin == KS_KEY_ORIGIN_UNSET)
		missing = "key_origin";
	else if (p->lock == KS_LOCK_POLICY_UNSET)
		missing = "lock";
	if (missing != NULL) {
		set_err(err, errlen, "profile '%s': required key '%s' is not set",
			p->name, missing);
		return KS_ERR_CONFIG;
	}
	if (p->rdn_count > KS_PROFILE_RDN_MAX ||
	    p->san_dns_count > KS_PROFILE_SAN_MAX ||
	    p->san_uri_count > KS_PROFILE_SAN_MAX ||
	    p->validity_days > KS_PROFILE_VALIDITY_DAYS_MAX ||
	    p->backdate_seconds > KS_PROFILE_BACKDATE_MAX ||
	    p->key_alg != KS_KEY_ALG_EC_P256) {
		set_err(err, errlen, "profile '%s': inconsistent values", p->name);
		return KS_ERR_CONFIG;
	}
	if (p->key_usage == 0) {
		set_err(err, errlen, "profile '%s': key_usage is empty", p->name);
		return KS_ERR_CONFIG;
	}
	if (p->ext_key_usage == 0) {
		set_err(err, errlen, "profile '%s': extended_key_usage is empty",
			p->name);
		return KS_ERR_CONFIG;
	}
	if (p->credential == KS_CREDENTIAL_CLAIM &&
	    p->ext_key_usage != KS_EKU_KILN_CLAIM) {
		set_err(err, errlen,
			"profile '%s': a claim profile carries only the kiln claim key purpose (remove extended_key_usage)",
			p->name);
		return KS_ERR_CONFIG;
	}
	if (p->credential == KS_CREDENTIAL_CLAIM &&
	    p->validity_days > KS_PROFILE_CLAIM_VALIDITY_MAX) {
		set_err(err, errlen,
			"profile '%s': validity_days %u is too long for a claim credential (at most %u)",
			p->name, p->validity_days,
			KS_PROFILE_CLAIM_VALIDITY_MAX);
		return KS_ERR_CONFIG;
	}
	if (p->credential != KS_CREDENTIAL_CLAIM &&
	    (p->credential != KS_CREDENTIAL_IDENTITY ||
	     (p->ext_key_usage & KS_EKU_KILN_CLAIM) != 0)) {
		set_err(err, errlen, "profile '%s': inconsistent credential",
			p->name);
		return KS_ERR_CONFIG;
	}
	if (p->claim_uses > KS_PROFILE_CLAIM_USES_MAX) {
		set_err(err, errlen, "profile '%s': claim_uses out of range",
			p->name);
		return KS_ERR_CONFIG;
	}
	return KS_OK;
}
