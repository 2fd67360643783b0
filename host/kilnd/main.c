/*
 * kilnd: the kiln provisioning station daemon.
 *
 *   kilnd -c FILE [-f] [--syslog] [--check-config] [--version] [--help]
 *
 * Loads the configuration, opens the registry, starts one worker per slot
 * and serves the control socket. SIGTERM/SIGINT (or the control command
 * "shutdown"): stop accepting work, let in-flight sessions park safely,
 * join the workers, write a final audit checkpoint, exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "host/kilnd/access.h"
#include "host/kilnd/kilnd.h"
#include "host/kilnd/station.h"
#ifdef KILN_FAULT_INJECTION
#include "host/kilnd/fault.h"
#endif
#include "host/lib/log.h"
#include "host/lib/db.h"
#include "host/lib/registry.h"

#define KD_ERRBUF 8192

static atomic_int shutdown_requested;

void kd_request_shutdown(void)
{
	atomic_store(&shutdown_requested, 1);
	/* wake the main thread out of sigtimedwait() */
	kill(getpid(), SIGUSR1);
}

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kilnd -c FILE [-f] [--syslog] [--check-config]\n"
		"       kilnd --version | --help\n"
		"\n"
		"The kiln provisioning station daemon.\n"
		"\n"
		"  -c, --config FILE   station configuration (INI)\n"
		"  -f, --foreground    do not detach; log to stderr\n"
		"      --syslog        log to syslog instead of stderr\n"
		"      --check-config  validate the configuration and exit\n"
		"      --version       print the version and exit\n"
		"  -h, --help          this help\n"
		"\n"
		"See kilnd(8) and docs/operator-guide.md.\n");
}

/* Fork into the background; the parent exits once the child is ready. */
static int daemonize(int *ready_fd)
{
	int p[2];
	pid_t pid;
	char c;

	if (pipe(p) != 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0) {
		close(p[1]);
		/* exit status: 0 once the child reports ready, else 1 */
		_exit(read(p[0], &c, 1) == 1 && c == 'R' ? 0 : 1);
	}
	close(p[0]);
	if (setsid() < 0)
		return -1;
	{
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
	}
	*ready_fd = p[1];
	return 0;
}

static void write_error_lines(const char *err)
{
	/* err holds one problem per line */
	const char *p = err;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);

		ks_log_error("%.*s", n, p);
		p += n + (nl ? 1 : 0);
	}
}

static int run(kd_daemon_t *d, int ready_fd)
{
	sigset_t set;
	int sig, rc = 0, r;
	char shown[512];

	r = ks_reg_audit_event(d->reg, "kilnd", KS_REG_EV_STATION_STARTED,
			       NULL);
	if (r != KS_OK)
		ks_log_warn("cannot record STATION_STARTED: %s", ks_strerror((int)r));
	/* the control socket is created (and given its group) as root; then
	 * root is dropped for [station] user before any board is talked to */
	if (kd_control_start(d) != KS_OK) {
		rc = 1;
		d->stop = 1;
		goto out;
	}
	{
		char err[512];

		if (kd_access_drop(d->cfg, err, sizeof(err)) != KS_OK) {
			ks_log_error("%s", err);
			rc = 1;
			d->stop = 1;
			goto out;
		}
	}
	if (kd_slots_start(d) != KS_OK) {
		rc = 1;
		d->stop = 1;
		goto out;
	}
	ks_db_url_mask(d->cfg->registry, shown, sizeof(shown));
	ks_log_info("station %s ready: %zu slot%s, registry %s",
		    d->cfg->station_id, d->nslots, d->nslots == 1 ? "" : "s",
		    shown);
#ifdef HAVE_SYSTEMD
	(void)sd_notify(0, "READY=1\nSTATUS=serving");
#endif
	if (ready_fd >= 0) {
		if (write(ready_fd, "R", 1) != 1)
			ks_log_warn("cannot signal readiness to the parent");
		close(ready_fd);
	}

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	for (;;) {
		struct timespec ts = {.tv_sec = 1};

		sig = sigtimedwait(&set, NULL, &ts);
		if (atomic_load(&shutdown_requested))
			break;
		if (sig == SIGTERM || sig == SIGINT) {
			ks_log_info("%s: shutting down",
				    sig == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		}
		if (sig == SIGHUP)
			ks_log_info("SIGHUP ignored: restart kilnd to reload its configuration");
	}
#ifdef HAVE_SYSTEMD
	(void)sd_notify(0, "STOPPING=1");
#endif
	pthread_mutex_lock(&d->lock);
	d->stop = 1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
out:
	{
		char err[128];

		/* records BATCH_STOPPED, which also writes a checkpoint */
		if (kd_batch_stop(d, "kilnd", "shutdown", err, sizeof(err)) ==
		    KS_OK)
			ks_log_info("running batch stopped for the shutdown");
	}
	kd_control_stop(d);
	kd_slots_join(d);
	r = ks_reg_audit_event(d->reg, "kilnd", KS_REG_EV_STATION_STOPPED,
			       NULL);
	if (r != KS_OK)
		ks_log_error("cannot record STATION_STOPPED: %s", ks_strerror((int)r));
	ks_log_info("station %s stopped", d->cfg->station_id);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"foreground", no_argument, NULL, 'f'},
		{"syslog", no_argument, NULL, 'S'},
		{"check-config", no_argument, NULL, 'C'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		/* internal: run as the signer process (kd_signer_main()) */
		{"signer-fd", required_argument, NULL, 'F'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool foreground = false, use_syslog = false, check = false;
	kd_config_t *cfg = NULL;
	kd_daemon_t *d = NULL;
	char *err = NULL;
	sigset_t set;
	int opt, rc = 1, ready_fd = -1, signer_fd = -1;

	while ((opt = getopt_long(argc, argv, "c:fh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'S':
			use_syslog = true;
			break;
		case 'C':
			check = true;
			break;
		case 'F': {
			char *end;
			long v;

			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || v < 3 || v > 65535) {
				usage(stderr);
				return 2;
			}
			signer_fd = (int)v;
			break;
		}
		case 'V':
			printf("kilnd %s\n", KILN_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (path == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (signer_fd >= 0) {
		if (use_syslog)
			ks_log_use_syslog("kiln-signer");
		return kd_signer_main(path, signer_fd);
	}
	err = calloc(1, KD_ERRBUF);
	if (err == NULL)
		return 1;
	if (kd_config_load(path, &cfg, err, KD_ERRBUF) != KS_OK) {
		fputs(err, stderr);
		goto out;
	}
	ks_log_set_level((ks_log_level_t)cfg->log_level);
	/* keys, configuration and registry must not be open to other users */
	if (kd_access_check_files(cfg, err, KD_ERRBUF) != KS_OK) {
		fputs(err, stderr);
		goto out;
	}
	if (check) {
		if (kd_station_open(&cfg, true, &d, err, KD_ERRBUF) != KS_OK) {
			fputs(err, stderr);
			goto out;
		}
		printf("%s: OK (station %s, %zu profile%s, %zu slot%s)\n", path,
		       d->cfg->station_id, d->cfg->nprofiles,
		       d->cfg->nprofiles == 1 ? "" : "s", d->cfg->nslots,
		       d->cfg->nslots == 1 ? "" : "s");
		rc = 0;
		goto out;
	}

	if (!foreground) {
		use_syslog = true;
		if (daemonize(&ready_fd) != 0) {
			perror("kilnd: cannot detach");
			goto out;
		}
	}
	if (use_syslog)
		ks_log_use_syslog("kilnd");

	/* every thread inherits this mask; main takes the signals */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	umask(027); /* the registry and its journals: not for other users */

	if (kd_station_open(&cfg, false, &d, err, KD_ERRBUF) != KS_OK) {
		write_error_lines(err);
		goto out;
	}
#ifdef KILN_FAULT_INJECTION
	kd_fault_install(d->reg);
#endif
	rc = run(d, ready_fd);
	ready_fd = -1;
out:
	if (ready_fd >= 0)
		close(ready_fd);
	kd_station_close(&d);
	kd_config_free(&cfg);
	free(err);
	return rc;
}
