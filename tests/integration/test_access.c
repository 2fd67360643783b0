/*
 * Station access and hygiene (host/kilnd/access.c), with kilnd and the
 * boards as real processes:
 *
 *  - configuration: unknown users/groups, user = root;
 *  - file hygiene: a CA key or station key others can read or its group
 *    can replace, a writable configuration, a world-readable one holding
 *    a PIN, a key owned by another user, a world-writable registry or
 *    registry directory are each refused, naming the file and its mode;
 *  - privilege drop: kilnd started as root with user = nobody and a
 *    throwaway "dialout" group ends with uid/gid nobody/that group in
 *    /proc, no capabilities, and still provisions boards whose ptys are
 *    given to that group (as a udev rule would); a pty left root:tty is
 *    refused with EACCES;
 *  - roles: throwaway users for operator, auditor, a control-group member
 *    without role and an outsider; the socket is 0660 in the control
 *    group; the auditor reads but every operator command (and any unknown
 *    one) is refused; the role-less member and the outsider (when the
 *    socket is opened up by mistake) are refused at connect; every
 *    refusal and every operator action is in the audit log with the
 *    user's name, and the log still verifies.
 *
 * Needs root (useradd/groupadd, setuid); exits 77 otherwise. The users
 * and groups are removed at exit.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tests/integration/kt_harness.h"

static kt_station_t st;
static char out[1 << 16];
static char g_ctl[32], g_op[32], g_aud[32], g_tty[32];
static char u_op[32], u_aud[32], u_norole[32], u_out[32];
static int made_users;

static const char profiles[] =
	"[profile widget]\n"
	"subject = CN=${serial},O=Kiln Test\n"
	"validity_days = 365\n"
	"key_origin = device\n"
	"lock = full\n\n";

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/*
 * useradd/groupadd fail while another process holds /etc/passwd's lock
 * (a parallel run of this test): try again a few times.
 */
static int sh_retry(const char *cmd)
{
	int rc = -1;

	for (int i = 0; i < 20 && rc != 0; i++) {
		if (i > 0)
			usleep(250000);
		rc = sh("%s", cmd);
	}
	return rc;
}

static void remove_users(void)
{
	if (!made_users)
		return;
	made_users = 0;
	(void)sh("userdel %s 2>/dev/null; userdel %s 2>/dev/null; "
		 "userdel %s 2>/dev/null; userdel %s 2>/dev/null",
		 u_op, u_aud, u_norole, u_out);
	(void)sh("groupdel %s 2>/dev/null; groupdel %s 2>/dev/null; "
		 "groupdel %s 2>/dev/null; groupdel %s 2>/dev/null",
		 g_ctl, g_op, g_aud, g_tty);
}

static void on_signal(int sig)
{
	(void)sig;
	remove_users();
	_exit(1);
}

static int make_users(void)
{
	int id = (int)(getpid() % 100000);

	snprintf(g_ctl, sizeof(g_ctl), "kta%dctl", id);
	snprintf(g_op, sizeof(g_op), "kta%dop", id);
	snprintf(g_aud, sizeof(g_aud), "kta%daud", id);
	snprintf(g_tty, sizeof(g_tty), "kta%dtty", id);
	snprintf(u_op, sizeof(u_op), "kta%do", id);
	snprintf(u_aud, sizeof(u_aud), "kta%da", id);
	snprintf(u_norole, sizeof(u_norole), "kta%dn", id);
	snprintf(u_out, sizeof(u_out), "kta%dx", id);
	made_users = 1;
	atexit(remove_users);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	{
		const char *groups[] = {g_ctl, g_op, g_aud, g_tty};
		char cmd[256];

		for (size_t i = 0; i < 4; i++) {
			snprintf(cmd, sizeof(cmd), "groupadd %s", groups[i]);
			if (sh_retry(cmd) != 0)
				return -1;
		}
		/* operator and auditor: primary group = control group, role
		 * as a supplementary group (found through getgrouplist) */
		snprintf(cmd, sizeof(cmd),
			 "useradd -M -N -s /usr/sbin/nologin -g %s -G %s %s",
			 g_ctl, g_op, u_op);
		if (sh_retry(cmd) != 0)
			return -1;
		snprintf(cmd, sizeof(cmd),
			 "useradd -M -N -s /usr/sbin/nologin -g %s -G %s %s",
			 g_ctl, g_aud, u_aud);
		if (sh_retry(cmd) != 0)
			return -1;
		snprintf(cmd, sizeof(cmd),
			 "useradd -M -N -s /usr/sbin/nologin -g %s %s", g_ctl,
			 u_norole);
		if (sh_retry(cmd) != 0)
			return -1;
		snprintf(cmd, sizeof(cmd),
			 "useradd -M -N -s /usr/sbin/nologin -g %s %s", g_tty,
			 u_out);
		if (sh_retry(cmd) != 0)
			return -1;
	}
	return 0;
}

/*
 * Connect to the control socket as user `name` (a forked client that
 * takes the user's groups, gid and uid), send one request line, read one
 * reply line into reply. Returns 0, or the connect() errno.
 */
static int as_user(const char *name, const char *req, char *reply,
		   size_t replylen)
{
	int p[2], status, rc = -1;
	pid_t pid;
	ssize_t n;
	size_t used = 0;

	reply[0] = '\0';
	if (pipe(p) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		struct passwd *pw = getpwnam(name);
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		char buf[1 << 16];
		size_t got = 0;
		int fd, e = 0;

		close(p[0]);
		signal(SIGPIPE, SIG_IGN);
		if (pw == NULL || initgroups(name, pw->pw_gid) != 0 ||
		    setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
			_exit(120);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", st.sock);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			e = errno;
			_exit(e > 0 && e < 100 ? e : 99);
		}
		if (write(fd, req, strlen(req)) < 0 || write(fd, "\n", 1) < 0)
			e = errno; /* a refused peer: the reply is still queued */
		while (got < sizeof(buf) - 1) {
			n = read(fd, buf + got, sizeof(buf) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			if (memchr(buf, '\n', got) != NULL)
				break;
		}
		(void)e;
		if (write(p[1], buf, got) < 0)
			_exit(121);
		_exit(0);
	}
	close(p[1]);
	while ((n = read(p[0], reply + used, replylen - 1 - used)) > 0)
		used += (size_t)n;
	reply[used] = '\0';
	close(p[0]);
	if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
		rc = WEXITSTATUS(status);
	return rc;
}

/* A reply's "ok" and a substring of its "error" (NULL: any). */
static bool reply_is(const char *reply, bool okv, const char *needle)
{
	json_t *j = json_loads(reply, JSON_DISABLE_EOF_CHECK, NULL);
	const char *e;
	bool r;

	if (j == NULL)
		return false;
	e = json_string_value(json_object_get(j, "error"));
	r = json_is_true(json_object_get(j, "ok")) == okv &&
	    (needle == NULL || (e != NULL && strstr(e, needle) != NULL));
	json_decref(j);
	return r;
}

static long long sql_count(const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -1;

	if (sqlite3_open_v2(st.db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return v;
}

static long long audit_count(const char *type, const char *actor,
			     const char *like)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM audit WHERE type = '%s' AND actor = '%s'"
		 " AND coalesce(details, '') LIKE '%%%s%%'",
		 type, actor, like ? like : "");
	return sql_count(sql);
}

/* kilnd --check-config with the current files; output into out. */
static int check_config(void)
{
	return kt_run(out, sizeof(out), st.kilnd, "--check-config", "-c",
		      st.conf, NULL);
}

static int write_conf(const char *extra)
{
	if (kt_write_conf(&st, extra, profiles, 3, NULL) != 0)
		return -1;
	return chmod(st.conf, 0644);
}

/* ---- configuration and file hygiene ---- */

static void test_config_keys(void)
{
	char extra[512];
	int rc;

	snprintf(extra, sizeof(extra),
		 "control_group = %s\noperator_group = kta-no-such\n"
		 "auditor_group = %s\nuser = kta-no-user\n",
		 g_ctl, g_aud);
	(void)write_conf(extra);
	rc = check_config();
	kt_check(rc != 0 && strstr(out, "kilnd.conf:8: [station] operator_group = 'kta-no-such': no such group") != NULL &&
			 strstr(out, "kilnd.conf:10: [station] user = 'kta-no-user': no such user") != NULL,
		 "unknown operator_group and user named with FILE:LINE (rc %d)\n%s",
		 rc, out);
	(void)write_conf("user = root\n");
	rc = check_config();
	kt_check(rc != 0 && strstr(out, "user = 'root': that is root") != NULL,
		 "user = root refused\n%s", out);
	snprintf(extra, sizeof(extra), "group = %s\n", g_tty);
	(void)write_conf(extra);
	rc = check_config();
	kt_check(rc != 0 && strstr(out, "needs user") != NULL,
		 "group without user refused\n%s", out);
	snprintf(extra, sizeof(extra), "control_group = %s\nsocket_group = %s\n",
		 g_ctl, g_ctl);
	(void)write_conf(extra);
	rc = check_config();
	kt_check(rc != 0 && strstr(out, "already set") != NULL,
		 "control_group and its alias socket_group not both\n%s", out);
}

/* chmod path to mode, run the check, expect a refusal with needles. */
static void refused_with_mode(const char *path, mode_t mode,
			      const char *needle1, const char *needle2,
			      const char *what)
{
	struct stat sb;
	int rc;

	if (stat(path, &sb) != 0) {
		kt_check(false, "%s: stat %s", what, path);
		return;
	}
	(void)chmod(path, mode);
	rc = check_config();
	kt_check(rc != 0 && strstr(out, needle1) != NULL &&
			 strstr(out, needle2) != NULL,
		 "%s refused (rc %d)\n%s", what, rc, out);
	(void)chmod(path, sb.st_mode & 07777);
}

static void test_file_hygiene(const char *good_extra)
{
	char key[PATH_MAX], skey[PATH_MAX], pub[PATH_MAX], db[PATH_MAX];
	char extra[1024];
	struct passwd *pw = getpwnam(u_op);
	FILE *fp;
	int rc;

	kt_path(&st, key, sizeof(key), "ca/station-ca.key");
	kt_path(&st, skey, sizeof(skey), "ca/station.key");
	(void)write_conf(good_extra);
	rc = check_config();
	kt_check(rc == 0, "the station's files pass (rc %d)\n%s", rc, out);

	refused_with_mode(key, 0644, "[ca] key = '", "mode 0644 lets every user read it",
			  "world-readable CA key");
	refused_with_mode(key, 0620, "[ca] key = '", "mode 0620 lets its group replace it",
			  "group-writable CA key");
	refused_with_mode(skey, 0604, "[station] station_key = '",
			  "mode 0604 lets every user read it",
			  "world-readable station key");
	refused_with_mode(st.conf, 0664, "kilnd.conf: mode 0664",
			  "mode 0664 lets its group change it",
			  "group-writable configuration");
	refused_with_mode(st.conf, 0646, "kilnd.conf: mode 0646",
			  "mode 0646 lets every user change it",
			  "world-writable configuration");
	rc = chmod(key, 0640);
	rc = rc == 0 ? check_config() : -1;
	kt_check(rc == 0, "a group-readable (0640) CA key is accepted\n%s", out);
	(void)chmod(key, 0600);

	/* a key another user owns */
	if (pw != NULL && chown(key, pw->pw_uid, (gid_t)-1) == 0) {
		rc = check_config();
		kt_check(rc != 0 && strstr(out, "owned by uid") != NULL,
			 "a CA key owned by another user refused\n%s", out);
		(void)chown(key, 0, (gid_t)-1);
	}

	/* the registry file and its directory */
	fp = fopen(st.db, "w");
	if (fp != NULL)
		fclose(fp);
	refused_with_mode(st.db, 0666, "registry", "mode 0666 lets every user rewrite the registry",
			  "world-writable registry");
	unlink(st.db);
	kt_path(&st, pub, sizeof(pub), "pub");
	(void)mkdir(pub, 0777);
	(void)chmod(pub, 0777);
	kt_path(&st, db, sizeof(db), "pub/registry.db");
	snprintf(extra, sizeof(extra), "%s", good_extra);
	if (kt_write_conf(&st, extra, profiles, 3, NULL) == 0) {
		/* point the registry into the open directory */
		char cmd[PATH_MAX * 2 + 64];

		snprintf(cmd, sizeof(cmd),
			 "sed -i 's|^registry = .*|registry = pub/registry.db|' '%s'",
			 st.conf);
		(void)sh("%s", cmd);
		rc = check_config();
		kt_check(rc != 0 && strstr(out, "its directory") != NULL &&
				 strstr(out, "mode 0777") != NULL,
			 "registry in a world-writable directory refused\n%s",
			 out);
	}
	rmdir(pub);

	/* a PIN in a configuration others can read */
	snprintf(extra, sizeof(extra), "%s", good_extra);
	(void)write_conf(extra);
	(void)sh("sed -i 's|^key = .*|key = pkcs11:token=kiln;object=ca?pin-value=1234|' '%s'",
		 st.conf);
	rc = check_config();
	kt_check(rc != 0 && strstr(out, "read the PIN") != NULL,
		 "a world-readable configuration holding pin-value refused\n%s",
		 out);
	/* a token PIN file others can read */
	{
		char pinf[PATH_MAX];
		FILE *pf;

		kt_path(&st, pinf, sizeof(pinf), "ca/token.pin");
		pf = fopen(pinf, "w");
		if (pf != NULL) {
			fputs("1234\n", pf);
			fclose(pf);
		}
		(void)chmod(pinf, 0644);
		(void)write_conf(extra);
		(void)sh("sed -i 's|^key = .*|key = pkcs11:token=kiln;object=ca?pin-source=file:%s|' '%s'",
			 pinf, st.conf);
		rc = check_config();
		kt_check(rc != 0 && strstr(out, "[ca] key pin-source = '") != NULL &&
				 strstr(out, "mode 0644 lets every user read it") != NULL,
			 "a world-readable token PIN file refused\n%s", out);
	}
	(void)write_conf(good_extra);
}

/* ---- the running station: drop and roles ---- */

/* "Uid:" (or other) line of /proc/PID/status into line. */
static bool proc_line(pid_t pid, const char *key, char *line, size_t len)
{
	char path[64];
	FILE *fp;
	bool found = false;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return false;
	while (fgets(line, (int)len, fp) != NULL)
		if (strncmp(line, key, strlen(key)) == 0) {
			found = true;
			break;
		}
	fclose(fp);
	return found;
}

/* Give the pty behind boards/slotN to group gid, 0660 (a udev rule). */
static int give_pty(int n, gid_t gid)
{
	char link[PATH_MAX], rel[32], target[PATH_MAX];
	ssize_t len;

	snprintf(rel, sizeof(rel), "boards/slot%d", n);
	kt_path(&st, link, sizeof(link), rel);
	len = readlink(link, target, sizeof(target) - 1);
	if (len <= 0)
		return -1;
	target[len] = '\0';
	if (chown(target, 0, gid) != 0 || chmod(target, 0660) != 0)
		return -1;
	return 0;
}

static void test_station(const char *extra)
{
	struct group *gtty = getgrnam(g_tty);
	gid_t tty_gid = gtty ? gtty->gr_gid : (gid_t)-1;
	struct group *gctl = getgrnam(g_ctl); /* static storage: copy first */
	gid_t ctl_gid = gctl ? gctl->gr_gid : (gid_t)-1;
	struct passwd *nobody = getpwnam("nobody");
	char line[256], want[128], reply[1 << 16], req[256];
	struct stat sb;
	json_t *j, *s = NULL;
	int rc;

	if (gtty == NULL || gctl == NULL || nobody == NULL) {
		kt_check(false, "groups and user nobody exist");
		return;
	}
	uid_t nobody_uid = nobody->pw_uid;

	(void)write_conf(extra);
	for (int i = 1; i <= 3; i++)
		if (kt_board_start(&st, i, NULL, NULL, 0) != 0)
			kt_check(false, "start board %d", i);
	/* slots 1 and 2: the ptys belong to the station's group; slot 3
	 * stays root:tty 0620 like an unconfigured port */
	kt_check(give_pty(1, tty_gid) == 0 && give_pty(2, tty_gid) == 0,
		 "ptys of slots 1, 2 given to the dialout-like group");
	rc = kt_kilnd_start(&st);
	kt_check(rc == 0, "kilnd starts as root with user = nobody");
	if (rc != 0)
		return;

	/* the drop, as the kernel sees it */
	snprintf(want, sizeof(want), "Uid:\t%u\t%u\t%u\t%u", nobody_uid,
		 nobody_uid, nobody_uid, nobody_uid);
	kt_check(proc_line(st.pid, "Uid:", line, sizeof(line)) &&
			 strncmp(line, want, strlen(want)) == 0,
		 "kilnd runs as nobody: %s", line);
	snprintf(want, sizeof(want), "Gid:\t%u\t%u\t%u\t%u", tty_gid, tty_gid,
		 tty_gid, tty_gid);
	kt_check(proc_line(st.pid, "Gid:", line, sizeof(line)) &&
			 strncmp(line, want, strlen(want)) == 0,
		 "kilnd's group is the configured group: %s", line);
	kt_check(proc_line(st.pid, "CapEff:", line, sizeof(line)) &&
			 strstr(line, "0000000000000000") != NULL &&
			 proc_line(st.pid, "CapPrm:", line, sizeof(line)) &&
			 strstr(line, "0000000000000000") != NULL,
		 "no capabilities left: %s", line);
	kt_check(kt_file_contains(st.log, "privileges dropped to user nobody",
				  strlen("privileges dropped to user nobody")),
		 "the drop is logged");

	/* the socket */
	kt_check(stat(st.sock, &sb) == 0 && sb.st_gid == ctl_gid &&
			 (sb.st_mode & 0777) == 0660,
		 "control socket is 0660 in the control group (mode %o gid %u)",
		 (unsigned)(sb.st_mode & 0777), (unsigned)sb.st_gid);

	/* operator runs a batch; slots 1-2 provision as nobody */
	rc = as_user(u_op, "{\"cmd\":\"batch.start\",\"lot\":\"LOT-A\",\"profile\":\"widget\"}",
		     reply, sizeof(reply));
	kt_check(rc == 0 && reply_is(reply, true, NULL),
		 "operator starts a batch: %s", reply);
	kt_check(kt_wait_slot(&st, 1, "done", 30000, NULL) &&
			 kt_wait_slot(&st, 2, "done", 30000, NULL),
		 "kilnd as nobody provisions the boards it can open");
	kt_check(kt_wait_slot(&st, 3, "error", 15000, &s),
		 "a pty the station user may not open is a port error");
	{
		const char *e = json_string_value(json_object_get(s, "error"));

		kt_check(e != NULL && strstr(e, "ermission denied") != NULL,
			 "... saying permission denied: %s", e ? e : "(none)");
	}
	json_decref(s);

	/* auditor: reads yes, everything else no */
	static const char *const reads[] = {
		"{\"cmd\":\"status\"}", "{\"cmd\":\"devices.list\"}",
		"{\"cmd\":\"lots\"}", "{\"cmd\":\"audit.export\"}",
	};
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		rc = as_user(u_aud, reads[i], reply, sizeof(reply));
		kt_check(rc == 0 && reply_is(reply, true, NULL),
			 "auditor may read: %s", reads[i]);
	}
	j = json_loads(reply, JSON_DISABLE_EOF_CHECK, NULL);
	kt_check(json_array_size(json_object_get(json_object_get(j, "export"),
						 "events")) > 0,
		 "audit.export returns the audit events");
	json_decref(j);
	static const char *const writes[] = {
		"{\"cmd\":\"batch.stop\"}",
		"{\"cmd\":\"batch.start\",\"lot\":\"X\",\"profile\":\"widget\"}",
		"{\"cmd\":\"provision\",\"slot\":\"slot1\",\"reprovision\":true}",
		"{\"cmd\":\"rma\",\"id\":\"00\"}",
		"{\"cmd\":\"shutdown\"}",
	};
	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		rc = as_user(u_aud, writes[i], reply, sizeof(reply));
		kt_check(rc == 0 &&
				 reply_is(reply, false,
					  "needs the operator role") &&
				 strstr(reply, "KS_ERR_POLICY") != NULL,
			 "auditor refused: %s -> %s", writes[i], reply);
	}
	kt_check(kt_wait_slot(&st, 1, "done", 1000, NULL),
		 "the station kept running after the auditor's attempts");

	/* a control-group member without a role; an outsider */
	rc = as_user(u_norole, "{\"cmd\":\"status\"}", reply, sizeof(reply));
	kt_check(rc == 0 && reply_is(reply, false, "in neither operator_group"),
		 "member of the control group without a role refused: %s",
		 reply);
	rc = as_user(u_out, "{\"cmd\":\"status\"}", reply, sizeof(reply));
	kt_check(rc == EACCES, "outsider cannot open the 0660 socket (rc %d)",
		 rc);
	(void)chmod(st.sock, 0666); /* a mistake; kilnd still checks */
	rc = as_user(u_out, "{\"cmd\":\"status\"}", reply, sizeof(reply));
	kt_check(rc == 0 && reply_is(reply, false,
				     "is not a member of the control group"),
		 "outsider refused by kilnd when the socket is opened up: %s",
		 reply);
	(void)chmod(st.sock, 0660);
	j = kt_ctl(&st, "{\"cmd\":\"status\"}");
	kt_check(json_is_true(json_object_get(j, "ok")), "root is an operator");
	json_decref(j);

	/* operator: stop, re-provision, shut down */
	rc = as_user(u_op, "{\"cmd\":\"batch.stop\"}", reply, sizeof(reply));
	kt_check(rc == 0 && reply_is(reply, true, NULL),
		 "operator stops the batch: %s", reply);
	/* a blank board carrying slot 1's UID: only a re-provision may
	 * give it an identity */
	{
		char uid[65] = "", img[PATH_MAX];

		kt_check(kt_wait_slot(&st, 1, "done", 10000, &s),
			 "slot 1 settled");
		snprintf(uid, sizeof(uid), "%s",
			 json_string_value(json_object_get(s, "uid")) ?
				 json_string_value(json_object_get(s, "uid")) :
				 "");
		json_decref(s);
		s = NULL;
		kt_board_stop(&st, 1);
		kt_path(&st, img, sizeof(img), "boards/clone.img");
		kt_check(uid[0] != '\0' &&
				 kt_board_start(&st, 1, img, uid, 0) == 0 &&
				 give_pty(1, tty_gid) == 0,
			 "clone board with UID %s on slot 1", uid);
	}
	snprintf(req, sizeof(req),
		 "{\"cmd\":\"provision\",\"slot\":\"slot1\",\"lot\":\"LOT-A\","
		 "\"profile\":\"widget\",\"reprovision\":true}");
	rc = as_user(u_op, req, reply, sizeof(reply));
	kt_check(rc == 0 && reply_is(reply, true, NULL),
		 "operator re-provisions slot1: %.300s", reply);
	rc = as_user(u_op, "{\"cmd\":\"shutdown\"}", reply, sizeof(reply));
	kt_check(rc == 0 && reply_is(reply, true, NULL),
		 "operator shuts the station down: %s", reply);
	{
		int status = -1;
		long long t0 = (long long)time(NULL);

		while ((long long)time(NULL) - t0 < 20 &&
		       waitpid(st.pid, &status, WNOHANG) == 0)
			usleep(50000);
		kt_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			 "kilnd (as nobody) exits 0 after the shutdown (status %d)",
			 status);
		st.pid = 0;
	}
	kt_check(!kt_file_contains(st.log, "cannot record STATION_STOPPED", 29),
		 "the dropped station still writes its registry at exit");

	/* the record */
	kt_check(stat(st.db, &sb) == 0 && (sb.st_mode & 0007) == 0,
		 "registry created without access for other users (mode %o)",
		 (unsigned)(sb.st_mode & 0777));
	kt_check(audit_count("BATCH_STARTED", u_op, NULL) == 1,
		 "batch start audited with the operator's name");
	kt_check(audit_count("BATCH_STOPPED", u_op, NULL) == 1,
		 "batch stop audited with the operator's name");
	kt_check(audit_count("REPROVISION", u_op, NULL) == 1 &&
			 audit_count("OPERATOR", u_op, "\"action\":\"provision\"") == 1,
		 "re-provision audited with the operator's name");
	kt_check(audit_count("OPERATOR", u_op, "\"action\":\"shutdown\"") == 1,
		 "shutdown audited with the operator's name");
	kt_check(audit_count("OPERATOR", u_aud, "\"action\":\"denied\"") == 5 &&
			 audit_count("OPERATOR", u_aud, "\"cmd\":\"rma\"") == 1,
		 "each refused auditor command audited (%lld)",
		 audit_count("OPERATOR", u_aud, "\"action\":\"denied\""));
	kt_check(audit_count("OPERATOR", u_norole, "in neither") == 1 &&
			 audit_count("OPERATOR", u_out, "not a member") == 1,
		 "refused connections audited");
	kt_check(audit_count("OPERATOR", u_aud, "\"cmd\":\"status\"") == 0,
		 "reads are not audited as refusals");
	rc = kt_kiln(&st, out, sizeof(out), "audit", "verify", "-c", st.conf,
		     NULL);
	kt_check(rc == 0, "audit log verifies (rc %d)\n%s", rc, out);
}

int main(int argc, char **argv)
{
	char extra[512];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("SKIP: test_access needs root (it creates throwaway users and groups and starts kilnd as root to drop to nobody)\n");
		return 77;
	}
	if (kt_init(&st, argc, argv, "access") != 0) {
		fprintf(stderr, "cannot set up the station directory\n");
		return 1;
	}
	/* the station user and the test's users must reach the socket and
	 * the board links; keys stay 0600 */
	(void)chmod(st.dir, 0755);
	if (make_users() != 0) {
		fprintf(stderr, "useradd/groupadd failed\n");
		kt_cleanup(&st);
		return 1;
	}
	test_config_keys();
	snprintf(extra, sizeof(extra),
		 "control_group = %s\noperator_group = %s\nauditor_group = %s\n"
		 "user = nobody\ngroup = %s\n",
		 g_ctl, g_op, g_aud, g_tty);
	test_file_hygiene(extra);
	test_station(extra);
	kt_cleanup(&st);
	remove_users();
	return kt_summary();
}
