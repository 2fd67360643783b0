/*
 * bench_station: devices provisioned per second through kilnd.
 *
 *   bench_station KILND SIM [-s 1,4,16,64] [-n DEVICES] [-o device|host]
 *
 * Starts a throwaway station (development CA, registry, kilnd -f) and, for
 * each slot count S, S workers that each put a fresh kiln-agent-sim board
 * (new image, new UID) on a PTY and ask kilnd to provision it over the
 * control socket ({"cmd":"provision","port":...}): full sessions with
 * readback, challenge verification and lock, no artificial delays. The
 * next board of a worker is started while the current one is provisioned,
 * as an operator swaps boards. Prints "key value" lines per slot count:
 * devices per second, kilnd CPU (user+sys from /proc) per device and
 * that of its signer process (its child) separately, how busy the
 * machine's cores were (all processes, from /proc/stat), and the
 * bytes and round trips per session as kilnd reports them.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "host/lib/ca.h"
#include "host/lib/log.h"
#include "host/lib/simproc.h"

#define MAX_SLOTS 64

static const char *g_sim;
static char g_dir[PATH_MAX];
static char g_sock[PATH_MAX + 16];

typedef struct {
	pthread_mutex_t mu;
	unsigned long next;  /* devices handed out */
	unsigned long total; /* devices to provision */
	unsigned long ok, failed;
	unsigned long long bytes_tx, bytes_rx, round_trips;
	unsigned long long session_ms;
	const char *lot, *profile;
} run_t;

typedef struct {
	run_t *run;
	int id;
} worker_t;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* user + system CPU seconds of a process, from /proc/PID/stat */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	/* after ") ": state(3) ... utime is field 14, stime 15 */
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
				      "%*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy and total jiffies of all CPUs (first line of /proc/stat): how busy
 * the machine's cores were during a run, whoever kept them busy. */
static int machine_jiffies(unsigned long long *busy, unsigned long long *total)
{
	unsigned long long v[8] = {0};
	FILE *fp = fopen("/proc/stat", "r");
	int n;

	if (fp == NULL)
		return -1;
	n = fscanf(fp, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
		   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(fp);
	if (n != 8)
		return -1;
	/* idle and iowait are not busy */
	*total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
	*busy = *total - v[3] - v[4];
	return 0;
}

/* CPU seconds of the live child processes of pid (kilnd's signer
 * process), from /proc/PID/task/TID/children. */
static double children_cpu_s(pid_t pid)
{
	char path[96], buf[512], *p, *end;
	double sum = 0;
	FILE *fp;
	size_t n;

	/* the signer is forked by kilnd's main thread */
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid,
		 (int)pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	for (p = buf; *p != '\0'; p = end) {
		long c = strtol(p, &end, 10);
		double t;

		if (end == p)
			break;
		t = c > 0 ? proc_cpu_s((pid_t)c) : -1;
		if (t > 0)
			sum += t;
	}
	return sum;
}

static int ctl_connect(void)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(g_sock) >= sizeof(sa.sun_path)) {
		close(fd);
		return -1;
	}
	memcpy(sa.sun_path, g_sock, strlen(g_sock) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One request line, one response line. */
static json_t *ctl_call(int fd, const char *req)
{
	char buf[16384];
	size_t len = strlen(req), have = 0;
	ssize_t k;

	if (write(fd, req, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
		return NULL;
	for (;;) {
		char *nl;

		k = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (k <= 0)
			return NULL;
		have += (size_t)k;
		buf[have] = '\0';
		nl = strchr(buf, '\n');
		if (nl != NULL) {
			*nl = '\0';
			return json_loads(buf, 0, NULL);
		}
		if (have == sizeof(buf) - 1)
			return NULL;
	}
}

static ks_simproc_t *board_start(int w, unsigned long i, char *img,
				 size_t imglen)
{
	ks_simproc_opts_t o;
	ks_simproc_t *s = NULL;
	uint8_t uid[8];
	char uid_hex[17];

	RAND_bytes(uid, sizeof(uid));
	for (size_t k = 0; k < sizeof(uid); k++)
		snprintf(uid_hex + 2 * k, 3, "%02x", uid[k]);
	snprintf(img, imglen, "%s/boards/w%d-%lu.img", g_dir, w, i);
	memset(&o, 0, sizeof(o));
	o.exe = g_sim;
	o.image = img;
	o.uid_hex = uid_hex;
	o.quiet = true;
	if (ks_simproc_start(&o, &s) != KS_OK)
		return NULL;
	return s;
}

static void board_stop(ks_simproc_t **s, const char *img)
{
	(void)ks_simproc_stop(s, NULL);
	unlink(img);
}

static void *worker_main(void *arg)
{
	worker_t *wk = arg;
	run_t *run = wk->run;
	ks_simproc_t *cur = NULL, *next = NULL;
	char img_cur[PATH_MAX + 64], img_next[PATH_MAX + 64];
	char req[1024];
	unsigned long i;
	int fd = ctl_connect();

	if (fd < 0)
		return NULL;
	for (;;) {
		json_t *rsp, *sess;

		pthread_mutex_lock(&run->mu);
		i = run->next < run->total ? run->next++ : ULONG_MAX;
		pthread_mutex_unlock(&run->mu);
		if (i == ULONG_MAX)
			break;
		if (next != NULL) {
			cur = next;
			memcpy(img_cur, img_next, sizeof(img_cur));
			next = NULL;
		} else {
			cur = board_start(wk->id, i, img_cur, sizeof(img_cur));
		}
		if (cur == NULL) {
			pthread_mutex_lock(&run->mu);
			run->failed++;
			pthread_mutex_unlock(&run->mu);
			continue;
		}
		/* the operator has the next board at hand already */
		if (run->next < run->total)
			next = board_start(wk->id, i + 1000000, img_next,
					   sizeof(img_next));
		snprintf(req, sizeof(req),
			 "{\"cmd\":\"provision\",\"port\":\"%s\",\"lot\":\"%s\","
			 "\"profile\":\"%s\"}",
			 ks_simproc_spec(cur), run->lot, run->profile);
		rsp = ctl_call(fd, req);
		sess = rsp ? json_object_get(rsp, "session") : NULL;
		pthread_mutex_lock(&run->mu);
		if (rsp != NULL && json_is_true(json_object_get(rsp, "ok")) &&
		    sess != NULL) {
			run->ok++;
			run->bytes_tx += (unsigned long long)json_integer_value(
				json_object_get(sess, "bytes_tx"));
			run->bytes_rx += (unsigned long long)json_integer_value(
				json_object_get(sess, "bytes_rx"));
			run->round_trips += (unsigned long long)
				json_integer_value(json_object_get(
					sess, "round_trips"));
			run->session_ms += (unsigned long long)
				json_integer_value(json_object_get(
					sess, "total_ms"));
		} else {
			char *t = rsp ? json_dumps(rsp, JSON_COMPACT) : NULL;

			if (run->failed++ < 3)
				fprintf(stderr, "bench_station: %s\n",
					t ? t : "no response");
			free(t);
		}
		pthread_mutex_unlock(&run->mu);
		json_decref(rsp);
		board_stop(&cur, img_cur);
	}
	if (next != NULL)
		board_stop(&next, img_next);
	close(fd);
	return NULL;
}

/* ---- QEMU boards (scripts/qemu-board), one at a time ---- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* words of the firmware's diagnostics block (device/ports/qemu-mps2/diag.h) */
static int read_diag(const char *img, uint32_t w[18])
{
	uint8_t buf[18 * 4];
	int fd = open(img, O_RDONLY | O_CLOEXEC);
	ssize_t k;

	if (fd < 0)
		return -1;
	k = pread(fd, buf, sizeof(buf), 0x8000);
	close(fd);
	if (k != (ssize_t)sizeof(buf) || le32(buf) != 0x4744514Bu)
		return -1;
	for (int i = 0; i < 18; i++)
		w[i] = le32(buf + 4 * i);
	return 0;
}

static int run_qemu(const char *board_script, const char *elf,
		    unsigned long n, const char *origin)
{
	char img[PATH_MAX + 64], sock[PATH_MAX + 64], req[PATH_MAX + 256], lot[32];
	unsigned long ok = 0;
	double ms = 0, wall_sum = 0;
	unsigned long long tx = 0, rx = 0, rt = 0;
	uint32_t diag[18] = {0};
	int fd = ctl_connect(), rc = 0;
	json_t *a, *b;

	if (fd < 0)
		return 1;
	snprintf(lot, sizeof(lot), "Q-%s", origin);
	snprintf(req, sizeof(req),
		 "{\"cmd\":\"batch.start\",\"lot\":\"%s\",\"profile\":"
		 "\"bench-%s\"}", lot, origin);
	a = ctl_call(fd, req);
	b = a ? ctl_call(fd, "{\"cmd\":\"batch.stop\"}") : NULL;
	json_decref(a);
	json_decref(b);
	for (unsigned long i = 0; i < n; i++) {
		pid_t pid;
		json_t *rsp, *sess;
		double t0;

		snprintf(img, sizeof(img), "%s/boards/q%lu.img", g_dir, i);
		snprintf(sock, sizeof(sock), "%s/boards/q%lu.sock", g_dir, i);
		pid = fork();
		if (pid == 0) {
			int dn = open("/dev/null", O_WRONLY);

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (dn >= 0)
				dup2(dn, 1);
			execlp("python3", "python3", board_script, "--image",
			       img, "--socket", sock, "--elf", elf,
			       (char *)NULL);
			_exit(127);
		}
		for (int t = 0; t < 200 && access(sock, F_OK) != 0; t++)
			usleep(20000);
		usleep(200000); /* let the firmware boot */
		snprintf(req, sizeof(req),
			 "{\"cmd\":\"provision\",\"port\":\"unix:%s\",\"lot\":"
			 "\"%s\",\"profile\":\"bench-%s\"}",
			 sock, lot, origin);
		t0 = now_s();
		rsp = ctl_call(fd, req);
		wall_sum += now_s() - t0;
		sess = rsp ? json_object_get(rsp, "session") : NULL;
		if (rsp && json_is_true(json_object_get(rsp, "ok")) && sess) {
			ok++;
			ms += (double)json_integer_value(
				json_object_get(sess, "total_ms"));
			tx += (unsigned long long)json_integer_value(
				json_object_get(sess, "bytes_tx"));
			rx += (unsigned long long)json_integer_value(
				json_object_get(sess, "bytes_rx"));
			rt += (unsigned long long)json_integer_value(
				json_object_get(sess, "round_trips"));
		} else {
			char *t = rsp ? json_dumps(rsp, JSON_COMPACT) : NULL;

			fprintf(stderr, "bench_station: qemu: %s\n",
				t ? t : "no response");
			free(t);
			rc = 1;
		}
		json_decref(rsp);
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		if (read_diag(img, diag) != 0)
			memset(diag, 0, sizeof(diag));
		unlink(sock);
		unlink(img);
	}
	close(fd);
	printf("qemu origin %s devices %lu session_ms %.1f request_ms %.1f "
	       "bytes_tx %.1f bytes_rx %.1f round_trips %.2f stack_size %u "
	       "stack_hwm %u heap_size %u heap_hwm %u static_ram %u\n",
	       origin, ok, ok ? ms / (double)ok : 0.0,
	       ok ? wall_sum * 1e3 / (double)ok : 0.0,
	       ok ? (double)tx / (double)ok : 0.0,
	       ok ? (double)rx / (double)ok : 0.0,
	       ok ? (double)rt / (double)ok : 0.0, diag[4], diag[5], diag[6],
	       diag[7], diag[8]);
	return ok == n ? rc : 1;
}

static pid_t kilnd_start(const char *kilnd, const char *conf)
{
	char logp[PATH_MAX + 16];
	pid_t pid;

	snprintf(logp, sizeof(logp), "%s/kilnd.log", g_dir);
	pid = fork();
	if (pid == 0) {
		int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(kilnd, kilnd, "-f", "-c", conf, (char *)NULL);
		_exit(127);
	}
	for (int t = 0; pid > 0 && t < 200; t++) {
		int fd = ctl_connect();

		if (fd >= 0) {
			close(fd);
			return pid;
		}
		usleep(50000);
	}
	return -1;
}

static int write_conf(const char *conf)
{
	FILE *fp = fopen(conf, "w");

	if (fp == NULL)
		return -1;
	fprintf(fp,
		"[station]\nid = bench\nregistry = registry.db\n"
		"control_socket = kilnd.sock\nstation_key = ca/station.key\n"
		"log_level = warn\n\n"
		"[ca]\ncert = ca/station-ca.pem\nkey = ca/station-ca.key\n"
		"chain = ca/chain.pem\n\n");
	for (int h = 0; h < 2; h++)
		fprintf(fp,
			"[profile bench-%s]\nsubject = CN=${serial},O=Bench,"
			"OU=Widgets\nvalidity_days = 3650\nkey_usage = "
			"digitalSignature\nextended_key_usage = clientAuth\n"
			"key_origin = %s\nlock = full\n\n",
			h ? "host" : "device", h ? "host" : "device");
	/* kilnd wants a slot; the workers name their ports directly */
	fprintf(fp, "[slot idle]\nport = unix:%s/none.sock\nenabled = no\n",
		g_dir);
	return fclose(fp) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	const char *slots_arg = "1,4,16,64", *origin = "device";
	const char *qemu_script = NULL, *qemu_elf = NULL;
	unsigned long qemu_n = 0;
	unsigned long per_slot = 0, n = 64;
	char conf[PATH_MAX + 32], path[PATH_MAX + 32], err[256];
	pthread_t th[MAX_SLOTS];
	worker_t wk[MAX_SLOTS];
	pid_t kpid;
	int opt, rc = 1;

	while ((opt = getopt(argc, argv, "s:n:o:p:Q:E:q:")) != -1) {
		switch (opt) {
		case 'Q': qemu_script = optarg; break;
		case 'E': qemu_elf = optarg; break;
		case 'q': qemu_n = strtoul(optarg, NULL, 10); break;
		case 's': slots_arg = optarg; break;
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'p': per_slot = strtoul(optarg, NULL, 10); break;
		case 'o': origin = optarg; break;
		default: return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: bench_station [-s 1,4,16,64] [-n N] "
				"[-p PER_SLOT_MIN] [-o device|host]\n"
				"       [-q N -Q scripts/qemu-board -E ELF] KILND SIM\n");
		return 2;
	}
	g_sim = argv[optind + 1];
	ks_log_set_level(KS_LOG_ERROR);
	snprintf(g_dir, sizeof(g_dir), "%s/kiln-bst-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp");
	if (mkdtemp(g_dir) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/ca", g_dir);
	if (ks_ca_init_dev(path, "Bench", err, sizeof(err)) != KS_OK) {
		fprintf(stderr, "bench_station: %s\n", err);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/boards", g_dir);
	mkdir(path, 0700);
	snprintf(conf, sizeof(conf), "%s/kilnd.conf", g_dir);
	snprintf(g_sock, sizeof(g_sock), "%s/kilnd.sock", g_dir);
	if (write_conf(conf) != 0)
		goto out;
	kpid = kilnd_start(argv[optind], conf);
	if (kpid <= 0) {
		fprintf(stderr, "bench_station: kilnd did not start (see %s)\n",
			g_dir);
		goto out;
	}
	rc = 0;
	if (qemu_n > 0 && qemu_script != NULL && qemu_elf != NULL)
		rc = run_qemu(qemu_script, qemu_elf, qemu_n, origin);
	for (const char *p = slots_arg; *p != '\0';) {
		char *end, lot[32], prof[32];
		long s = strtol(p, &end, 10);

		if (strcmp(p, "0") == 0)
			break; /* -s 0: QEMU only */
		run_t run;
		double t0, c0, s0, wall, cpu, scpu, busy_pct = -1;
		unsigned long long b0 = 0, j0 = 0, b1, j1;
		int have_j;
		unsigned long total;

		if (s < 1 || s > MAX_SLOTS || end == p) {
			rc = 2;
			break;
		}
		p = *end == ',' ? end + 1 : end;
		total = n;
		if (total < per_slot * (unsigned long)s)
			total = per_slot * (unsigned long)s;
		memset(&run, 0, sizeof(run));
		pthread_mutex_init(&run.mu, NULL);
		run.total = total;
		snprintf(lot, sizeof(lot), "L-%s-%ld", origin, s);
		snprintf(prof, sizeof(prof), "bench-%s", origin);
		run.lot = lot;
		run.profile = prof;
		{
			/* a lot is created by its first batch */
			char req[256];
			int fd = ctl_connect();
			json_t *a, *b;

			snprintf(req, sizeof(req),
				 "{\"cmd\":\"batch.start\",\"lot\":\"%s\","
				 "\"profile\":\"%s\"}", lot, prof);
			a = fd >= 0 ? ctl_call(fd, req) : NULL;
			b = a ? ctl_call(fd, "{\"cmd\":\"batch.stop\"}") : NULL;
			if (b == NULL || !json_is_true(json_object_get(b, "ok")))
				fprintf(stderr, "bench_station: lot %s not made\n",
					lot);
			json_decref(a);
			json_decref(b);
			if (fd >= 0)
				close(fd);
		}
		t0 = now_s();
		c0 = proc_cpu_s(kpid);
		s0 = children_cpu_s(kpid);
		have_j = machine_jiffies(&b0, &j0) == 0;
		for (long i = 0; i < s; i++) {
			wk[i].run = &run;
			wk[i].id = (int)i;
			if (pthread_create(&th[i], NULL, worker_main, &wk[i]) != 0)
				return 1;
		}
		for (long i = 0; i < s; i++)
			pthread_join(th[i], NULL);
		wall = now_s() - t0;
		cpu = proc_cpu_s(kpid) - c0;
		scpu = children_cpu_s(kpid) - s0;
		if (have_j && machine_jiffies(&b1, &j1) == 0 && j1 > j0)
			busy_pct = 100.0 * (double)(b1 - b0) / (double)(j1 - j0);
		printf("slots %ld origin %s devices %lu failed %lu wall_s %.3f "
		       "per_s %.2f kilnd_cpu_ms_per_device %.3f "
		       "signer_cpu_ms_per_device %.3f "
		       "bytes_tx %.1f bytes_rx %.1f round_trips %.2f "
		       "session_ms %.1f cores_busy_pct %.0f\n",
		       s, origin, run.ok, run.failed, wall,
		       (double)run.ok / wall,
		       run.ok ? cpu * 1e3 / (double)run.ok : 0.0,
		       run.ok ? scpu * 1e3 / (double)run.ok : 0.0,
		       run.ok ? (double)run.bytes_tx / (double)run.ok : 0.0,
		       run.ok ? (double)run.bytes_rx / (double)run.ok : 0.0,
		       run.ok ? (double)run.round_trips / (double)run.ok : 0.0,
		       run.ok ? (double)run.session_ms / (double)run.ok : 0.0,
		       busy_pct);
		fflush(stdout);
		if (run.failed != 0)
			rc = 1;
		pthread_mutex_destroy(&run.mu);
	}
	kill(kpid, SIGTERM);
	waitpid(kpid, NULL, 0);
out:
	if (getenv("KILN_BENCH_KEEP") == NULL) {
		snprintf(path, sizeof(path), "rm -rf '%s'", g_dir);
		if (system(path) != 0)
			rc = 1;
	}
	return rc;
}
