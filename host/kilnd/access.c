/*
 * kilnd: control-socket roles, file hygiene and the privilege drop
 * (see access.h).
 */
#include "host/kilnd/access.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/lib/log.h"

#define KD_GROUPS_MAX 4096

const char *kd_role_name(kd_role_t role)
{
	switch (role) {
	case KD_ROLE_AUDITOR:
		return "auditor";
	case KD_ROLE_OPERATOR:
		return "operator";
	case KD_ROLE_NONE:
		break;
	}
	return "none";
}

bool kd_role_may(kd_role_t role, const char *cmd)
{
	/* read-only commands; everything else needs an operator */
	static const char *const reads[] = {
		"status", "devices.list", "devices.show", "lots", "audit.export",
	};

	if (role == KD_ROLE_OPERATOR)
		return true;
	if (role != KD_ROLE_AUDITOR || cmd == NULL)
		return false;
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
		if (strcmp(reads[i], cmd) == 0)
			return true;
	return false;
}

gid_t kd_access_socket_gid(const kd_config_t *c)
{
	return c->socket_gid != (gid_t)-1 ? c->socket_gid : getegid();
}

/* Whether user `name` (primary group pgid) or the peer's gid is in want. */
static bool member(const char *name, gid_t pgid, gid_t peer_gid, gid_t want)
{
	gid_t *groups = NULL;
	int n = 64;
	bool found = false;

	if (want == (gid_t)-1)
		return false;
	if (peer_gid == want || (name != NULL && pgid == want))
		return true;
	if (name == NULL)
		return false;
	for (;;) {
		gid_t *ng = realloc(groups, (size_t)n * sizeof(*ng));
		int got = n;

		if (ng == NULL)
			break;
		groups = ng;
		if (getgrouplist(name, pgid, groups, &got) >= 0) {
			for (int i = 0; i < got; i++)
				if (groups[i] == want)
					found = true;
			break;
		}
		if (got <= n || got > KD_GROUPS_MAX)
			break;
		n = got;
	}
	free(groups);
	return found;
}

static void group_name(gid_t gid, const char *configured, char *out,
		       size_t outlen)
{
	struct group gr, *res = NULL;
	char buf[4096];

	if (configured != NULL && configured[0] != '\0')
		snprintf(out, outlen, "%s", configured);
	else if (getgrgid_r(gid, &gr, buf, sizeof(buf), &res) == 0 &&
		 res != NULL)
		snprintf(out, outlen, "%s", gr.gr_name);
	else
		snprintf(out, outlen, "gid %u", (unsigned)gid);
}

kd_role_t kd_access_peer(const kd_config_t *c, uid_t uid, gid_t gid,
			 char *actor, size_t actorlen, char *why,
			 size_t whylen)
{
	struct passwd pw, *res = NULL;
	char buf[4096], gname[KD_NAME_MAX + 16];
	const char *name = NULL;
	gid_t pgid = gid, sgid = kd_access_socket_gid(c);
	bool roles = c->operator_group[0] != '\0' || c->auditor_group[0] != '\0';
	bool self = uid == 0 || uid == getuid();

	why[0] = '\0';
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL) {
		name = pw.pw_name;
		pgid = pw.pw_gid;
		snprintf(actor, actorlen, "%s", pw.pw_name);
	} else {
		snprintf(actor, actorlen, "uid:%u", (unsigned)uid);
	}
	if (!self && !member(name, pgid, gid, sgid)) {
		group_name(sgid, c->socket_group, gname, sizeof(gname));
		snprintf(why, whylen,
			 "%s (uid %u) is not a member of the control group %s",
			 actor, (unsigned)uid, gname);
		return KD_ROLE_NONE;
	}
	if (!roles || self ||
	    member(name, pgid, gid, c->operator_gid))
		return KD_ROLE_OPERATOR;
	if (member(name, pgid, gid, c->auditor_gid))
		return KD_ROLE_AUDITOR;
	snprintf(why, whylen,
		 "%s (uid %u) is in neither operator_group %s nor auditor_group %s",
		 actor, (unsigned)uid,
		 c->operator_group[0] ? c->operator_group : "(none)",
		 c->auditor_group[0] ? c->auditor_group : "(none)");
	return KD_ROLE_NONE;
}

/* ---- file hygiene ---- */

static void addf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void addf(char *err, size_t errlen, const char *fmt, ...)
{
	size_t used = strlen(err);
	va_list ap;
	int n;

	if (used + 2 >= errlen)
		return;
	va_start(ap, fmt);
	n = vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	used = strlen(err);
	if (used + 1 < errlen) {
		err[used] = '\n';
		err[used + 1] = '\0';
	}
}

typedef struct {
	const kd_config_t *c;
	char *err;
	size_t errlen;
	int bad;
} fcheck_t;

/* "CONF:LINE: WHAT = 'PATH'", or just PATH for the configuration. */
static void name_file(const fcheck_t *f, char *out, size_t outlen,
		      const char *path, unsigned line, const char *what)
{
	if (line == 0)
		snprintf(out, outlen, "%s", path);
	else
		snprintf(out, outlen, "%s:%u: %s = '%s'", f->c->path, line,
			 what, path);
}

/* Owner must be root, us, or the configured station user. */
static void check_owner(fcheck_t *f, const struct stat *st, unsigned line,
			const char *what, const char *path)
{
	char name[2 * PATH_MAX + 64];

	if (st->st_uid == 0 || st->st_uid == geteuid() ||
	    (f->c->user[0] != '\0' && st->st_uid == f->c->user_uid))
		return;
	name_file(f, name, sizeof(name), path, line, what);
	addf(f->err, f->errlen,
	     "%s: owned by uid %u, not by root or the station user; whoever owns it can change it",
	     name, (unsigned)st->st_uid);
	f->bad = 1;
}

/* A private key file: no access for others, no group write. */
static void check_secret(fcheck_t *f, const char *path, unsigned line,
			 const char *what)
{
	struct stat st;
	mode_t m;

	if (path[0] == '\0' || strncasecmp(path, "pkcs11:", 7) == 0 ||
	    stat(path, &st) != 0)
		return; /* URIs have no mode; a missing file is reported later */
	m = st.st_mode & 07777;
	if ((m & (S_IRWXO | S_IWGRP)) != 0) {
		addf(f->err, f->errlen,
		     "%s:%u: %s = '%s': mode %04o %s; a private key must be 0600 (or 0640 with a trusted group): chmod 600 '%s'",
		     f->c->path, line, what, path, (unsigned)m,
		     (m & S_IROTH) ? "lets every user read it"
		     : (m & S_IWOTH) ? "lets every user replace it"
		     : (m & S_IWGRP) ? "lets its group replace it"
				     : "gives other users access",
		     path);
		f->bad = 1;
	}
	check_owner(f, &st, line, what, path);
}

/* A file that decides what the station trusts: no group/world write. */
static void check_trusted(fcheck_t *f, const char *path, unsigned line,
			  const char *what, bool secret_inside)
{
	char name[2 * PATH_MAX + 64];
	struct stat st;
	mode_t m;

	if (path[0] == '\0' || stat(path, &st) != 0)
		return;
	name_file(f, name, sizeof(name), path, line, what);
	m = st.st_mode & 07777;
	if ((m & (S_IWGRP | S_IWOTH)) != 0) {
		addf(f->err, f->errlen,
		     "%s: mode %04o lets %s change it (and so what the station trusts); chmod go-w '%s'",
		     name, (unsigned)m,
		     (m & S_IWOTH) ? "every user" : "its group", path);
		f->bad = 1;
	}
	if (secret_inside && (m & S_IRWXO) != 0) {
		addf(f->err, f->errlen,
		     "%s: mode %04o lets every user read the PIN it holds (pin-value); chmod o-rwx '%s' or use pin-source",
		     name, (unsigned)m, path);
		f->bad = 1;
	}
	check_owner(f, &st, line, what, path);
}

/* The registry: the file, its journals and its directory not o+w. */
static void check_registry(fcheck_t *f)
{
	const kd_config_t *c = f->c;
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char path[PATH_MAX + 16], *slash;
	struct stat st;

	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", c->registry, sfx[i]);
		if (stat(path, &st) != 0)
			continue;
		if ((st.st_mode & S_IWOTH) != 0) {
			addf(f->err, f->errlen,
			     "%s:%u: [station] registry: '%s': mode %04o lets every user rewrite the registry; chmod o-w '%s'",
			     c->path, c->registry_line, path,
			     (unsigned)(st.st_mode & 07777), path);
			f->bad = 1;
		}
		if (i == 0)
			check_owner(f, &st, c->registry_line,
				    "[station] registry", path);
	}
	snprintf(path, sizeof(path), "%s", c->registry);
	slash = strrchr(path, '/');
	if (slash == NULL)
		return;
	if (slash == path)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(path, &st) == 0 && (st.st_mode & S_IWOTH) != 0) {
		addf(f->err, f->errlen,
		     "%s:%u: [station] registry: its directory '%s' has mode %04o: every user can replace the registry or plant its -wal/-shm files; keep it in a directory only the station writes (e.g. /var/lib/kiln, 0750)",
		     c->path, c->registry_line, path,
		     (unsigned)(st.st_mode & 07777));
		f->bad = 1;
	}
}

/* The token PIN file of a pkcs11: URI (pin-source=file:/PATH) is a secret. */
static void pin_source(fcheck_t *f)
{
	const char *ps = strncasecmp(f->c->ca_key, "pkcs11:", 7) == 0
				 ? strstr(f->c->ca_key, "pin-source=")
				 : NULL;
	char path[PATH_MAX];
	size_t n;

	if (ps == NULL)
		return;
	ps += strlen("pin-source=");
	if (strncmp(ps, "file:", 5) == 0)
		ps += 5;
	n = strcspn(ps, "&;");
	if (n == 0 || n >= sizeof(path) || ps[0] != '/')
		return; /* the token code reports malformed URIs */
	memcpy(path, ps, n);
	path[n] = '\0';
	check_secret(f, path, f->c->ca_key_line, "[ca] key pin-source");
}

ks_err_t kd_access_check_files(const kd_config_t *c, char *err, size_t errlen)
{
	fcheck_t f = {.c = c, .err = err, .errlen = errlen};
	bool pin = strncasecmp(c->ca_key, "pkcs11:", 7) == 0 &&
		   strstr(c->ca_key, "pin-value=") != NULL;

	check_trusted(&f, c->path, 0, "configuration", pin);
	check_secret(&f, c->ca_key, c->ca_key_line, "[ca] key");
	check_secret(&f, c->station_key, c->station_key_line,
		     "[station] station_key");
	pin_source(&f);
	check_trusted(&f, c->ca_pkcs11_module, c->ca_pkcs11_module_line,
		      "[ca] pkcs11_module", false);
	check_registry(&f);
	return f.bad ? KS_ERR_CONFIG : KS_OK;
}

/* ---- privilege drop ---- */

ks_err_t kd_access_drop(const kd_config_t *c, char *err, size_t errlen)
{
	uid_t uid = c->user_uid;
	gid_t gid = c->user_gid;

	err[0] = '\0';
	if (c->user[0] == '\0')
		return KS_OK;
	if (geteuid() != 0) {
		if (getuid() == uid && geteuid() == uid && getegid() == gid)
			return KS_OK; /* started as the station user */
		snprintf(err, errlen,
			 "%s:%u: [station] user = '%s': kilnd runs as uid %u, not root, and cannot switch to uid %u",
			 c->path, c->user_line, c->user, (unsigned)geteuid(),
			 (unsigned)uid);
		return KS_ERR_CONFIG;
	}
	if (initgroups(c->user, gid) != 0) {
		snprintf(err, errlen, "initgroups(%s, %u): %s", c->user,
			 (unsigned)gid, strerror(errno));
		return KS_ERR_IO;
	}
	if (setresgid(gid, gid, gid) != 0) {
		snprintf(err, errlen, "setresgid(%u): %s", (unsigned)gid,
			 strerror(errno));
		return KS_ERR_IO;
	}
	if (setresuid(uid, uid, uid) != 0) {
		snprintf(err, errlen, "setresuid(%u): %s", (unsigned)uid,
			 strerror(errno));
		return KS_ERR_IO;
	}
	/* the drop must be one-way */
	if (setuid(0) == 0 || seteuid(0) == 0 || geteuid() != uid ||
	    getuid() != uid || getegid() != gid ||
	    (gid != 0 && setgid(0) == 0)) {
		snprintf(err, errlen,
			 "privilege drop to %s did not stick (root could be regained)",
			 c->user);
		return KS_ERR_INTERNAL;
	}
	ks_log_info("privileges dropped to user %s (uid %u, gid %u)", c->user,
		    (unsigned)uid, (unsigned)gid);
	return KS_OK;
}
