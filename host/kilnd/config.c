/*
 * kilnd: configuration file parsing (inih) with FILE:LINE diagnostics.
 *
 * inih does not pass line numbers to the handler, so the file is fed
 * through our own line reader which counts lines and also notes section
 * headers (so that an empty [slot X] section is still seen and checked).
 */
#include "host/kilnd/config.h"

#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "host/lib/db.h"
#include "host/lib/log.h"
#include "host/lib/transport.h"

#define KD_MAX_ERRORS 32u
#define KD_MAX_SECTIONS 256u
#define KD_LINE_MAX 4096

typedef enum {
	SEC_NONE = 0,
	SEC_STATION,
	SEC_CA,
	SEC_ENROLL,
	SEC_PROFILE,
	SEC_SLOT,
	SEC_BAD,
} sec_kind_t;

/* Keys seen once per section, to refuse duplicates. */
typedef struct {
	char section[KD_NAME_MAX * 2];
	char key[KD_NAME_MAX];
} seen_t;

typedef struct {
	kd_config_t *cfg;
	FILE *fp;
	unsigned line;
	char *err;
	size_t errlen;
	unsigned nerr;
	int oom;
	/* the section the reader is in */
	char section[KD_NAME_MAX * 2];
	seen_t *seen;
	size_t nseen;
	bool have_station, have_ca;
	unsigned station_line, ca_line;
	/* raw values, resolved once the whole file is read */
	bool have_log_level;
} parse_t;

static void perr(parse_t *p, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void perr(parse_t *p, unsigned line, const char *fmt, ...)
{
	size_t used = strlen(p->err);
	va_list ap;
	int n;

	p->nerr++;
	if (p->nerr > KD_MAX_ERRORS || used + 2 >= p->errlen)
		return;
	if (line > 0)
		n = snprintf(p->err + used, p->errlen - used, "%s:%u: ",
			     p->cfg->path, line);
	else
		n = snprintf(p->err + used, p->errlen - used, "%s: ",
			     p->cfg->path);
	if (n < 0 || (size_t)n >= p->errlen - used)
		return;
	used += (size_t)n;
	va_start(ap, fmt);
	n = vsnprintf(p->err + used, p->errlen - used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= p->errlen - used)
		return;
	used += (size_t)n;
	if (used + 1 < p->errlen) {
		p->err[used] = '\n';
		p->err[used + 1] = '\0';
	}
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

static sec_kind_t classify(const char *section, const char **name)
{
	*name = NULL;
	if (section[0] == '\0')
		return SEC_NONE;
	if (strcmp(section, "station") == 0)
		return SEC_STATION;
	if (strcmp(section, "ca") == 0)
		return SEC_CA;
	if (strcmp(section, "enroll") == 0)
		return SEC_ENROLL;
	if (strncmp(section, "profile ", 8) == 0) {
		*name = section + 8;
		return SEC_PROFILE;
	}
	if (strncmp(section, "slot ", 5) == 0) {
		*name = section + 5;
		return SEC_SLOT;
	}
	return SEC_BAD;
}

ks_err_t kd_config_resolve(const char *dir, const char *path, char *out,
			   size_t outlen)
{
	int n;

	if (path[0] == '/')
		n = snprintf(out, outlen, "%s", path);
	else
		n = snprintf(out, outlen, "%s/%s", dir, path);
	return (n < 0 || (size_t)n >= outlen) ? KS_ERR_ARG : KS_OK;
}

static kd_profile_cfg_t *find_profile(kd_config_t *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nprofiles; i++)
		if (strcmp(cfg->profiles[i].name, name) == 0)
			return &cfg->profiles[i];
	return NULL;
}

static kd_slot_cfg_t *find_slot(kd_config_t *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nslots; i++)
		if (strcmp(cfg->slots[i].name, name) == 0)
			return &cfg->slots[i];
	return NULL;
}

const kd_slot_cfg_t *kd_config_slot(const kd_config_t *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nslots; i++)
		if (strcmp(cfg->slots[i].name, name) == 0)
			return &cfg->slots[i];
	return NULL;
}

/* Called by the reader for every section header line. */
static void on_section(parse_t *p, const char *section)
{
	const char *name;
	sec_kind_t k = classify(section, &name);

	switch (k) {
	case SEC_STATION:
		if (p->have_station)
			perr(p, p->line, "[station] appears twice (first at line %u)",
			     p->station_line);
		p->have_station = true;
		p->station_line = p->line;
		break;
	case SEC_CA:
		if (p->have_ca)
			perr(p, p->line, "[ca] appears twice (first at line %u)",
			     p->ca_line);
		p->have_ca = true;
		p->ca_line = p->line;
		p->cfg->ca_line = p->line;
		break;
	case SEC_ENROLL:
		if (p->cfg->enroll_line != 0)
			perr(p, p->line, "[enroll] appears twice (first at line %u)",
			     p->cfg->enroll_line);
		p->cfg->enroll_line = p->line;
		break;
	case SEC_PROFILE: {
		kd_profile_cfg_t *pr, *np;

		if (!valid_name(name)) {
			perr(p, p->line, "[%s]: bad profile name '%s' (1-31 of A-Z a-z 0-9 . _ -)",
			     section, name);
			break;
		}
		if ((pr = find_profile(p->cfg, name)) != NULL) {
			perr(p, p->line, "[%s] appears twice (first at line %u)",
			     section, pr->line);
			break;
		}
		np = realloc(p->cfg->profiles,
			     (p->cfg->nprofiles + 1) * sizeof(*np));
		if (np == NULL) {
			p->oom = 1;
			break;
		}
		p->cfg->profiles = np;
		pr = &np[p->cfg->nprofiles++];
		memset(pr, 0, sizeof(*pr));
		snprintf(pr->name, sizeof(pr->name), "%s", name);
		pr->line = p->line;
		break;
	}
	case SEC_SLOT: {
		kd_slot_cfg_t *sl, *ns;

		if (!valid_name(name)) {
			perr(p, p->line, "[%s]: bad slot name '%s' (1-31 of A-Z a-z 0-9 . _ -)",
			     section, name);
			break;
		}
		if ((sl = find_slot(p->cfg, name)) != NULL) {
			perr(p, p->line, "[%s] appears twice (first at line %u)",
			     section, sl->line);
			break;
		}
		ns = realloc(p->cfg->slots, (p->cfg->nslots + 1) * sizeof(*ns));
		if (ns == NULL) {
			p->oom = 1;
			break;
		}
		p->cfg->slots = ns;
		sl = &ns[p->cfg->nslots++];
		memset(sl, 0, sizeof(*sl));
		snprintf(sl->name, sizeof(sl->name), "%s", name);
		sl->enabled = true;
		sl->line = p->line;
		break;
	}
	case SEC_BAD:
		perr(p, p->line, "unknown section [%s] (expected [station], [ca], [enroll], [profile NAME] or [slot NAME])",
		     section);
		break;
	case SEC_NONE:
		break;
	}
}

/*
 * inih line reader: one line per call, counting lines and spotting
 * section headers. Lines longer than the buffer are an error.
 */
static char *reader(char *buf, int num, void *stream)
{
	parse_t *p = stream;
	char *s, *e;
	size_t n;

	if (fgets(buf, num, p->fp) == NULL)
		return NULL;
	p->line++;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] != '\n' && !feof(p->fp)) {
		int c;

		perr(p, p->line, "line longer than %d bytes", num - 2);
		while ((c = fgetc(p->fp)) != EOF && c != '\n')
			;
		buf[0] = '\0';
		return buf;
	}
	for (s = buf; *s == ' ' || *s == '\t'; s++)
		;
	if (*s == '[') {
		e = strchr(s, ']');
		if (e != NULL) {
			size_t len = (size_t)(e - s - 1);

			if (len >= sizeof(p->section)) {
				perr(p, p->line, "section name too long");
				len = sizeof(p->section) - 1;
			}
			memcpy(p->section, s + 1, len);
			p->section[len] = '\0';
			/* inih strips the name; do the same */
			while (len > 0 && (p->section[len - 1] == ' ' ||
					   p->section[len - 1] == '\t'))
				p->section[--len] = '\0';
			on_section(p, p->section);
		}
	}
	return buf;
}

static bool mark_seen(parse_t *p, const char *section, const char *key)
{
	seen_t *ns;

	for (size_t i = 0; i < p->nseen; i++)
		if (strcmp(p->seen[i].section, section) == 0 &&
		    strcmp(p->seen[i].key, key) == 0)
			return false;
	ns = realloc(p->seen, (p->nseen + 1) * sizeof(*ns));
	if (ns == NULL) {
		p->oom = 1;
		return true;
	}
	p->seen = ns;
	snprintf(ns[p->nseen].section, sizeof(ns[p->nseen].section), "%s",
		 section);
	snprintf(ns[p->nseen].key, sizeof(ns[p->nseen].key), "%s", key);
	p->nseen++;
	return true;
}

static bool set_path(parse_t *p, const char *sec, const char *key,
		     const char *value, char *dst, size_t dstlen)
{
	if (value[0] == '\0') {
		perr(p, p->line, "[%s] %s = '': a path is required", sec, key);
		return false;
	}
	if (kd_config_resolve(p->cfg->dir, value, dst, dstlen) != KS_OK) {
		perr(p, p->line, "[%s] %s = '%s': path too long", sec, key,
		     value);
		return false;
	}
	return true;
}

/* Strict unsigned parse: digits only, within [min, max]. */
static bool parse_uint(const char *s, unsigned long min, unsigned long max,
		       unsigned long *out)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static int parse_bool(const char *s)
{
	if (strcmp(s, "yes") == 0 || strcmp(s, "true") == 0 ||
	    strcmp(s, "on") == 0 || strcmp(s, "1") == 0)
		return 1;
	if (strcmp(s, "no") == 0 || strcmp(s, "false") == 0 ||
	    strcmp(s, "off") == 0 || strcmp(s, "0") == 0)
		return 0;
	return -1;
}

/* A group name that must exist: its name and gid into name/gid. */
static void lookup_group(parse_t *p, const char *key, const char *value,
			 char *name, size_t namelen, gid_t *gid)
{
	struct group gr, *res = NULL;
	char buf[4096];

	if (value[0] == '\0' || strlen(value) >= namelen ||
	    getgrnam_r(value, &gr, buf, sizeof(buf), &res) != 0 ||
	    res == NULL) {
		perr(p, p->line, "[station] %s = '%s': no such group", key,
		     value);
		return;
	}
	snprintf(name, namelen, "%s", value);
	*gid = gr.gr_gid;
}

/* A postgresql:// URL libpq can parse; the reason is reported if not. */
static bool pg_url_ok(parse_t *p, const char *url, const char *shown)
{
	PQconninfoOption *opts;
	char *msg = NULL;
	size_t n;

	opts = PQconninfoParse(url, &msg);
	if (opts == NULL) {
		n = msg != NULL ? strlen(msg) : 0;
		while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
			msg[--n] = '\0';
		perr(p, p->line, "[station] registry = '%s': not a valid PostgreSQL URL (%s); expected postgresql://[USER@]HOST[:PORT]/DATABASE[?OPTIONS]",
		     shown, msg != NULL ? msg : "out of memory");
		PQfreemem(msg);
		return false;
	}
	PQconninfoFree(opts);
	return true;
}

static void station_key(parse_t *p, const char *key, const char *value)
{
	kd_config_t *c = p->cfg;
	unsigned long v;

	if (strcmp(key, "id") == 0) {
		if (!valid_name(value))
			perr(p, p->line, "[station] id = '%s': expected 1-31 of A-Z a-z 0-9 . _ -",
			     value);
		else
			snprintf(c->station_id, sizeof(c->station_id), "%s",
				 value);
	} else if (strcmp(key, "registry") == 0) {
		c->registry_line = p->line;
		if (ks_db_url_backend(value) == KS_DB_PG) {
			char shown[512];

			ks_db_url_mask(value, shown, sizeof(shown));
			if (strlen(value) >= sizeof(c->registry))
				perr(p, p->line, "[station] registry = '%s': URL too long",
				     shown);
			else if (!pg_url_ok(p, value, shown))
				; /* reported */
			else
				snprintf(c->registry, sizeof(c->registry),
					 "%s", value);
		} else if (strncmp(value, "sqlite:", 7) == 0) {
			(void)set_path(p, "station", key, value + 7,
				       c->registry, sizeof(c->registry));
		} else if (strstr(value, "://") != NULL) {
			perr(p, p->line, "[station] registry = '%.*s...': unknown kind of registry; expected a file path, sqlite:PATH or postgresql://...",
			     (int)(strstr(value, "://") - value), value);
		} else {
			(void)set_path(p, "station", key, value, c->registry,
				       sizeof(c->registry));
		}
	} else if (strcmp(key, "serial_block") == 0) {
		if (!parse_uint(value, 1, KD_SERIAL_BLOCK_MAX, &v))
			perr(p, p->line, "[station] serial_block = '%s': expected a number of device serials leased at once, 1..%u",
			     value, KD_SERIAL_BLOCK_MAX);
		else
			c->serial_block = (unsigned)v;
	} else if (strcmp(key, "registry_timeout") == 0) {
		if (!parse_uint(value, 0, KD_REGISTRY_TIMEOUT_MAX, &v))
			perr(p, p->line, "[station] registry_timeout = '%s': expected seconds to wait for a lost registry connection, 0..%u",
			     value, KD_REGISTRY_TIMEOUT_MAX);
		else
			c->registry_timeout = (unsigned)v;
	} else if (strcmp(key, "control_socket") == 0) {
		struct sockaddr_un sun;

		if (set_path(p, "station", key, value, c->control_socket,
			     sizeof(c->control_socket)) &&
		    strlen(c->control_socket) >= sizeof(sun.sun_path))
			perr(p, p->line, "[station] control_socket = '%s': path longer than 107 bytes (unix socket limit)",
			     value);
	} else if (strcmp(key, "control_group") == 0 ||
		   strcmp(key, "socket_group") == 0) {
		if (c->socket_group[0] != '\0')
			perr(p, p->line, "[station] %s = '%s': the control group is already set (control_group and socket_group are the same key)",
			     key, value);
		else
			lookup_group(p, key, value, c->socket_group,
				     sizeof(c->socket_group), &c->socket_gid);
	} else if (strcmp(key, "operator_group") == 0) {
		lookup_group(p, key, value, c->operator_group,
			     sizeof(c->operator_group), &c->operator_gid);
	} else if (strcmp(key, "auditor_group") == 0) {
		lookup_group(p, key, value, c->auditor_group,
			     sizeof(c->auditor_group), &c->auditor_gid);
	} else if (strcmp(key, "group") == 0) {
		lookup_group(p, key, value, c->group, sizeof(c->group),
			     &c->user_gid);
	} else if (strcmp(key, "user") == 0) {
		struct passwd pw, *res = NULL;
		char buf[4096];

		c->user_line = p->line;
		if (value[0] == '\0' || strlen(value) >= sizeof(c->user) ||
		    getpwnam_r(value, &pw, buf, sizeof(buf), &res) != 0 ||
		    res == NULL) {
			perr(p, p->line, "[station] user = '%s': no such user",
			     value);
		} else if (pw.pw_uid == 0) {
			perr(p, p->line, "[station] user = '%s': that is root; leave the key out to keep running as root",
			     value);
		} else {
			snprintf(c->user, sizeof(c->user), "%s", value);
			c->user_uid = pw.pw_uid;
			if (c->group[0] == '\0')
				c->user_gid = pw.pw_gid;
		}
	} else if (strcmp(key, "station_key") == 0) {
		c->station_key_line = p->line;
		(void)set_path(p, "station", key, value, c->station_key,
			       sizeof(c->station_key));
	} else if (strcmp(key, "log_level") == 0) {
		int lv = ks_log_parse_level(value);

		if (lv < 0)
			perr(p, p->line, "[station] log_level = '%s': expected error, warn, info or debug",
			     value);
		else
			c->log_level = lv;
	} else if (strcmp(key, "checkpoint_interval") == 0) {
		if (!parse_uint(value, 0, 1000000, &v))
			perr(p, p->line, "[station] checkpoint_interval = '%s': expected a number of audit events, 0..1000000 (0: only at batch stop and shutdown)",
			     value);
		else
			c->checkpoint_interval = (unsigned)v;
	} else {
		perr(p, p->line, "[station] unknown key '%s' (= '%s'); known: id, registry, serial_block, registry_timeout, control_socket, control_group, operator_group, auditor_group, user, group, station_key, log_level, checkpoint_interval",
		     key, value);
	}
}

static void ca_key(parse_t *p, const char *key, const char *value)
{
	kd_config_t *c = p->cfg;

	if (strcmp(key, "cert") == 0 && (c->ca_cert_line = p->line) != 0)
		(void)set_path(p, "ca", key, value, c->ca_cert,
			       sizeof(c->ca_cert));
	else if (strcmp(key, "key") == 0 && (c->ca_key_line = p->line) != 0 &&
		 strncasecmp(value, "pkcs11:", 7) == 0) {
		/* an RFC 7512 URI: kept as written, never path-resolved */
		if (strlen(value) >= sizeof(c->ca_key))
			perr(p, p->line, "[ca] key = '%s': URI too long", value);
		else
			snprintf(c->ca_key, sizeof(c->ca_key), "%s", value);
	} else if (strcmp(key, "key") == 0)
		(void)set_path(p, "ca", key, value, c->ca_key,
			       sizeof(c->ca_key));
	else if (strcmp(key, "chain") == 0 && (c->ca_chain_line = p->line) != 0)
		(void)set_path(p, "ca", key, value, c->ca_chain,
			       sizeof(c->ca_chain));
	else if (strcmp(key, "pkcs11_module") == 0 &&
		 (c->ca_pkcs11_module_line = p->line) != 0)
		(void)set_path(p, "ca", key, value, c->ca_pkcs11_module,
			       sizeof(c->ca_pkcs11_module));
	else
		perr(p, p->line, "[ca] unknown key '%s' (= '%s'); known: cert, key, chain, pkcs11_module",
		     key, value);
}

static void enroll_key(parse_t *p, const char *key, const char *value)
{
	kd_config_t *c = p->cfg;
	char *end = NULL;
	unsigned long v;

	if (strcmp(key, "listen") == 0) {
		if (value[0] == '\0' || strchr(value, ':') == NULL ||
		    strlen(value) >= sizeof(c->enroll_listen))
			perr(p, p->line, "[enroll] listen = '%s': expected HOST:PORT (numeric address)",
			     value);
		else
			snprintf(c->enroll_listen, sizeof(c->enroll_listen), "%s",
				 value);
	} else if (strcmp(key, "cert") == 0) {
		(void)set_path(p, "enroll", key, value, c->enroll_cert,
			       sizeof(c->enroll_cert));
	} else if (strcmp(key, "key") == 0) {
		(void)set_path(p, "enroll", key, value, c->enroll_key,
			       sizeof(c->enroll_key));
	} else if (strcmp(key, "trust") == 0) {
		(void)set_path(p, "enroll", key, value, c->enroll_trust,
			       sizeof(c->enroll_trust));
	} else if (strcmp(key, "profile") == 0) {
		if (!valid_name(value))
			perr(p, p->line, "[enroll] profile = '%s': bad profile name", value);
		else
			snprintf(c->enroll_profile, sizeof(c->enroll_profile), "%s",
				 value);
	} else if (strcmp(key, "reenroll") == 0) {
		if (strcmp(value, "yes") == 0)
			c->enroll_reenroll = true;
		else if (strcmp(value, "no") == 0)
			c->enroll_reenroll = false;
		else
			perr(p, p->line, "[enroll] reenroll = '%s': expected yes or no",
			     value);
	} else if (strcmp(key, "max_connections") == 0 ||
		   strcmp(key, "timeout_ms") == 0) {
		int conns = key[0] == 'm';

		errno = 0;
		v = strtoul(value, &end, 10);
		if (value[0] < '0' || value[0] > '9' || errno != 0 ||
		    *end != '\0' || v == 0 || v > (conns ? 256ul : 600000ul))
			perr(p, p->line, "[enroll] %s = '%s': expected 1..%lu", key,
			     value, conns ? 256ul : 600000ul);
		else if (conns)
			c->enroll_max_conns = (unsigned)v;
		else
			c->enroll_timeout_ms = (unsigned)v;
	} else {
		perr(p, p->line, "[enroll] unknown key '%s' (= '%s'); known: listen, cert, key, trust, profile, reenroll, max_connections, timeout_ms",
		     key, value);
	}
}

/* Make the path inside a serial:/unix:/bare spec absolute. */
static bool resolve_port(parse_t *p, const char *sec, const char *value,
			 char *dst, size_t dstlen)
{
	const char *prefix = "", *path = value;
	char tmp[KD_VALUE_MAX];
	int n;

	if (strncmp(value, "serial:", 7) == 0) {
		prefix = "serial:";
		path = value + 7;
	} else if (strncmp(value, "unix:", 5) == 0) {
		prefix = "unix:";
		path = value + 5;
	} else if (strncmp(value, "usb:", 4) == 0) {
		path = NULL;
	}
	if (path == NULL || path[0] == '\0' || path[0] == '/') {
		n = snprintf(dst, dstlen, "%s", value);
	} else {
		if (kd_config_resolve(p->cfg->dir, path, tmp, sizeof(tmp)) !=
		    KS_OK)
			goto toolong;
		n = snprintf(dst, dstlen, "%s%s", prefix, tmp);
	}
	if (n < 0 || (size_t)n >= dstlen)
		goto toolong;
	return true;
toolong:
	perr(p, p->line, "[%s] port = '%s': too long", sec, value);
	return false;
}

static void slot_key(parse_t *p, const char *name, const char *key,
		     const char *value)
{
	kd_slot_cfg_t *sl = find_slot(p->cfg, name);
	ks_link_spec_t spec;

	if (sl == NULL) /* bad or duplicate header, already reported */
		return;
	if (strcmp(key, "port") == 0) {
		sl->port_line = p->line;
		if (!resolve_port(p, p->section, value, sl->port,
				  sizeof(sl->port)))
			return;
		if (ks_link_parse_spec(sl->port, &spec) != KS_OK) {
			perr(p, p->line, "[%s] port = '%s': %s", p->section,
			     value, ks_link_last_error());
			sl->port[0] = '\0';
		}
	} else if (strcmp(key, "enabled") == 0) {
		int b = parse_bool(value);

		if (b < 0)
			perr(p, p->line, "[%s] enabled = '%s': expected yes or no",
			     p->section, value);
		else
			sl->enabled = b != 0;
	} else {
		perr(p, p->line, "[%s] unknown key '%s' (= '%s'); known: port, enabled",
		     p->section, key, value);
	}
}

static void profile_key(parse_t *p, const char *name, const char *key,
			const char *value)
{
	kd_profile_cfg_t *pr = find_profile(p->cfg, name);
	kd_kv_t *nkv;

	if (pr == NULL)
		return;
	if (strlen(key) >= KD_NAME_MAX || strlen(value) >= KD_VALUE_MAX) {
		perr(p, p->line, "[%s] %s: key or value too long", p->section,
		     key);
		return;
	}
	nkv = realloc(pr->kv, (pr->nkv + 1) * sizeof(*nkv));
	if (nkv == NULL) {
		p->oom = 1;
		return;
	}
	pr->kv = nkv;
	snprintf(nkv[pr->nkv].key, KD_NAME_MAX, "%s", key);
	snprintf(nkv[pr->nkv].value, KD_VALUE_MAX, "%s", value);
	nkv[pr->nkv].line = p->line;
	pr->nkv++;
}

static int handler(void *user, const char *section, const char *key,
		   const char *value)
{
	parse_t *p = user;
	const char *name;
	sec_kind_t k = classify(section, &name);

	if (key == NULL) /* new-section callback, if the library makes it */
		return 1;
	if (value == NULL)
		value = "";
	if (k != SEC_BAD && k != SEC_NONE && k != SEC_PROFILE &&
	    !mark_seen(p, section, key)) {
		perr(p, p->line, "[%s] %s = '%s': key given twice", section,
		     key, value);
		return 1;
	}
	switch (k) {
	case SEC_NONE:
		perr(p, p->line, "%s = '%s' outside any section", key, value);
		break;
	case SEC_STATION:
		station_key(p, key, value);
		break;
	case SEC_CA:
		ca_key(p, key, value);
		break;
	case SEC_ENROLL:
		enroll_key(p, key, value);
		break;
	case SEC_PROFILE:
		profile_key(p, name, key, value);
		break;
	case SEC_SLOT:
		slot_key(p, name, key, value);
		break;
	case SEC_BAD:
		break; /* the header was reported once */
	}
	return 1;
}

/* Whole-file checks once every line has been read. */
static void check_complete(parse_t *p)
{
	kd_config_t *c = p->cfg;

	if (!p->have_station) {
		perr(p, 0, "missing [station] section");
	} else {
		if (c->station_id[0] == '\0')
			perr(p, p->station_line, "[station] id is required");
		if (c->registry[0] == '\0')
			perr(p, p->station_line, "[station] registry is required");
		if (c->station_key[0] == '\0')
			perr(p, p->station_line, "[station] station_key is required");
		if (c->group[0] != '\0' && c->user[0] == '\0')
			perr(p, p->station_line, "[station] group = '%s' needs user (the account kilnd drops to)",
			     c->group);
	}
	if (c->enroll_line != 0 &&
	    (c->enroll_listen[0] == '\0' || c->enroll_cert[0] == '\0' ||
	     c->enroll_key[0] == '\0' || c->enroll_profile[0] == '\0'))
		perr(p, c->enroll_line, "[enroll] listen, cert, key and profile are required");
	else if (c->enroll_line != 0 && find_profile(c, c->enroll_profile) == NULL)
		perr(p, c->enroll_line, "[enroll] profile = '%s': no such [profile]",
		     c->enroll_profile);
	if (!p->have_ca) {
		perr(p, 0, "missing [ca] section");
	} else {
		if (c->ca_cert[0] == '\0')
			perr(p, p->ca_line, "[ca] cert is required");
		if (c->ca_key[0] == '\0')
			perr(p, p->ca_line, "[ca] key is required");
	}
	if (c->nprofiles == 0)
		perr(p, 0, "no [profile NAME] section");
	for (size_t i = 0; i < c->nslots; i++) {
		kd_slot_cfg_t *s = &c->slots[i];

		if (s->port_line == 0)
			perr(p, s->line, "[slot %s] port is required", s->name);
		for (size_t j = 0; j < i; j++)
			if (s->port[0] != '\0' &&
			    strcmp(s->port, c->slots[j].port) == 0)
				perr(p, s->port_line, "[slot %s] port = '%s': already used by [slot %s]",
				     s->name, s->port, c->slots[j].name);
	}
}

void kd_config_free(kd_config_t **cfg)
{
	if (cfg == NULL || *cfg == NULL)
		return;
	for (size_t i = 0; i < (*cfg)->nprofiles; i++)
		free((*cfg)->profiles[i].kv);
	free((*cfg)->profiles);
	free((*cfg)->slots);
	free(*cfg);
	*cfg = NULL;
}

static ks_err_t config_dir(const char *path, char *dir, size_t dirlen)
{
	char tmp[PATH_MAX], *slash, *abs = NULL;
	ks_err_t r = KS_ERR_ARG;
	int n;

	n = snprintf(tmp, sizeof(tmp), "%s", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		goto out;
	slash = strrchr(tmp, '/');
	if (slash == NULL)
		snprintf(tmp, sizeof(tmp), ".");
	else if (slash == tmp)
		tmp[1] = '\0';
	else
		*slash = '\0';
	abs = realpath(tmp, NULL);
	if (abs == NULL)
		goto out;
	n = snprintf(dir, dirlen, "%s", abs);
	if (n < 0 || (size_t)n >= dirlen)
		goto out;
	r = KS_OK;
out:
	free(abs);
	return r;
}

ks_err_t kd_config_load(const char *path, kd_config_t **out, char *err,
			size_t errlen)
{
	parse_t p;
	kd_config_t *c = NULL;
	ks_err_t r = KS_ERR_CONFIG;
	int rc;

	memset(&p, 0, sizeof(p));
	if (errlen == 0)
		return KS_ERR_ARG;
	err[0] = '\0';
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return KS_ERR_NOMEM;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	snprintf(c->control_socket, sizeof(c->control_socket), "%s",
		 KD_DEFAULT_SOCKET);
	c->socket_gid = (gid_t)-1;
	c->operator_gid = c->auditor_gid = c->user_gid = (gid_t)-1;
	c->user_uid = (uid_t)-1;
	c->log_level = KS_LOG_INFO;
	c->checkpoint_interval = KD_DEFAULT_CHECKPOINT;
	c->registry_timeout = KS_DB_TIMEOUT_DEFAULT;
	p.cfg = c;
	p.err = err;
	p.errlen = errlen;

	p.fp = fopen(path, "r");
	if (p.fp == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s\n", path,
			 strerror(errno));
		r = KS_ERR_IO;
		goto out;
	}
	if (config_dir(path, c->dir, sizeof(c->dir)) != KS_OK) {
		snprintf(err, errlen, "%s: cannot resolve its directory\n",
			 path);
		goto out;
	}
	ini_allow_multiline = false;
	ini_stop_on_first_error = false;
	ini_use_stack = false;
	ini_max_line = KD_LINE_MAX;
	rc = ini_parse_stream(reader, &p, handler, &p);
	if (rc > 0)
		perr(&p, (unsigned)rc, "syntax error (expected [section] or key = value)");
	else if (rc < 0)
		perr(&p, 0, "cannot read the file (%d)", rc);
	if (p.oom) {
		snprintf(err, errlen, "out of memory\n");
		r = KS_ERR_NOMEM;
		goto out;
	}
	check_complete(&p);
	if (p.nerr > KD_MAX_ERRORS) {
		size_t used = strlen(err);

		snprintf(err + used, errlen - used, "(%u more errors)\n",
			 p.nerr - KD_MAX_ERRORS);
	}
	if (p.nerr > 0)
		goto out;
	*out = c;
	c = NULL;
	r = KS_OK;
out:
	if (p.fp != NULL)
		fclose(p.fp);
	free(p.seen);
	kd_config_free(&c);
	return r;
}
