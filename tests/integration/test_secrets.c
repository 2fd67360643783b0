/*
 * Secrets stay secret, locks hold, damage is detected: the session engine
 * with a real registry and signer against kiln-agent-sim boards.
 *
 *  1. sniff: N host-keyed sessions (default 100) through a tapping relay
 *     (station <-> relay <-> simulator on unix sockets). Afterwards none of
 *     the boards' OTP private scalars (read back from the images) occurs
 *     on the wire (both directions), in the engine's log output, in the
 *     registry (DB + WAL), or in a dump of the station's memory (a forked
 *     child copies every readable mapping of the process, as a core file
 *     would; taken before the test reads the scalars).
 *  2. locks: on a LOCKED board, 100 attempts of each write / re-key /
 *     unlock kind (PUT_OBJECT of every object, COMMIT, GENKEY with and
 *     without NEW, sealed and plain HOSTKEY and seed, LOCK with every
 *     level byte, raw frames of every type 0..255 with random payloads):
 *     none changes anything and the image file is byte-identical.
 *  3. a board whose LOCK answer claims lock bits that STATUS does not
 *     show (a relay lies about LOCK) ends SCRAPPED, the registry never
 *     records LOCKED.
 *  4. boot integrity: a bit flipped in the stored identity (the flash
 *     blob; separately the OTP digest and the OTP key) is reported in
 *     HELLO, CHALLENGE is refused, the station scraps the board.
 *
 * Usage: test_secrets KILN-AGENT-SIM [SESSIONS]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>

#include "host/lib/agent.h"
#include "host/lib/audit.h"
#include "host/lib/ca.h"
#include "host/lib/log.h"
#include "host/lib/registry.h"
#include "host/lib/session.h"
#include "host/lib/signer.h"
#include "host/lib/simproc.h"
#include "tests/integration/station_fixture.h"
#include "protocol/frame.h"
#include "protocol/msg.h"

/* Image layout of the POSIX simulator (device/ports/posix/sim_image.h,
 * device/core/record.h): OTP word w at 128 + 8w (u32 value LE, u32
 * programmed); key slot k = words 1 + 9k .. 9 + 9k; commit slot c = words
 * 37 + 10c .. 46 + 10c; flash sector s at 128 + 8 * 128 + 4096 s. */
#define SIM_OFF_OTP 128L
#define SIM_KEY_WORD(k) (1 + 9 * (k))
#define SIM_COMMIT_WORD(c) (37 + 10 * (c))
#define SIM_OFF_FLASH (SIM_OFF_OTP + 8L * 128L)

static int passed, failed;
static char dir[64];
static const char *sim_exe;
static ks_reg_t *reg;
static ks_signer_t *signer;
static ks_engine_t *engine;
static tf_station_t fx;
static EVP_PKEY *station_key;

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
	fprintf(stderr, "test_secrets: setup failed: %s\n", what);
	exit(2);
}

static void setup(void)
{
	static const tf_profile_spec_t specs[] = {
		{"host", "host", "full", "LH", "H"},
		{"dev", "device", "full", "LD", "D"},
		{"open", "device", "none", "LO", "O"},
	};

	tf_station_setup(&fx, "secrets", "Kiln Test", "st-secrets", specs,
			 sizeof(specs) / sizeof(specs[0]));
	snprintf(dir, sizeof(dir), "%s", fx.dir);
	reg = fx.reg;
	signer = fx.signer;
	engine = fx.engine;
	station_key = fx.station_key;
}

/* ---- a tapping relay: station <-> relay <-> simulator ---- */

typedef struct {
	char listen_path[100];
	char sim_path[100];
	int lfd;
	pthread_t th;
	volatile int stop;
	int lie_lock; /* answer LOCK itself: lock 7, state LOCKED */
} relay_t;

/* Everything any relay saw: [0] station -> board, [1] board -> station,
 * as sent, and [2] the payloads of every frame in them, COBS-decoded (a
 * scalar with a zero byte is not contiguous in COBS form). */
static pthread_mutex_t cap_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *cap[3];
static size_t cap_len[3], cap_size[3];
static kp_rx_t cap_rx[2];

static void append(int k, const uint8_t *p, size_t n)
{
	if (cap_len[k] + n > cap_size[k]) {
		size_t ns = (cap_len[k] + n) * 2;
		uint8_t *g = realloc(cap[k], ns);

		if (g == NULL)
			die("relay memory");
		cap[k] = g;
		cap_size[k] = ns;
	}
	memcpy(cap[k] + cap_len[k], p, n);
	cap_len[k] += n;
}

static void tap(int dirn, const uint8_t *p, size_t n)
{
	pthread_mutex_lock(&cap_mu);
	append(dirn, p, n);
	while (n > 0) {
		kp_rx_event_t ev;
		size_t used = kp_rx_feed(&cap_rx[dirn], p, n, &ev);

		if (ev.kind == KP_RX_FRAME)
			append(2, ev.payload, ev.hdr.len);
		p += used;
		n -= used;
		if (used == 0)
			break;
	}
	pthread_mutex_unlock(&cap_mu);
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Lie mode: a LOCK request from the station is answered by the relay. */
static int lie(relay_t *r, int station, kp_rx_t *rx, const uint8_t *p,
	       size_t n)
{
	int lied = 0;

	while (n > 0) {
		kp_rx_event_t ev;
		size_t used = kp_rx_feed(rx, p, n, &ev);

		p += used;
		n -= used;
		if (ev.kind == KP_RX_FRAME && ev.hdr.type == KP_MSG_LOCK) {
			kp_lock_rsp_t m = {.lock = 7, .state = 3};
			uint8_t pl[32], w[64];
			size_t pn = 0, wn = 0;
			kp_hdr_t h = {.type = KP_MSG_LOCK,
				      .flags = KP_FLAG_RESPONSE,
				      .seq = ev.hdr.seq};

			if (kp_lock_rsp_encode(&m, pl, sizeof(pl), &pn) ==
				    KP_OK &&
			    (h.len = (uint16_t)pn,
			     kp_frame_encode(&h, pl, pn, w, sizeof(w), &wn)) ==
				    KP_OK &&
			    write(station, w, wn) == (ssize_t)wn)
				lied = 1;
		}
		if (used == 0)
			break;
	}
	(void)r;
	return lied;
}

static void *relay_main(void *arg)
{
	relay_t *r = arg;

	while (!r->stop) {
		struct pollfd pl = {.fd = r->lfd, .events = POLLIN};
		int st, sim;
		kp_rx_t rx;

		if (poll(&pl, 1, 100) <= 0)
			continue;
		st = accept(r->lfd, NULL, NULL);
		if (st < 0)
			continue;
		sim = unix_connect(r->sim_path);
		if (sim < 0) {
			close(st);
			continue;
		}
		kp_rx_init(&rx);
		kp_rx_init(&cap_rx[0]);
		kp_rx_init(&cap_rx[1]);
		for (;;) {
			struct pollfd fds[2] = {{.fd = st, .events = POLLIN},
						{.fd = sim, .events = POLLIN}};
			uint8_t buf[4096];
			ssize_t n;

			if (poll(fds, 2, 100) < 0 || r->stop)
				break;
			if (fds[0].revents != 0) {
				n = read(st, buf, sizeof(buf));
				if (n <= 0)
					break;
				tap(0, buf, (size_t)n);
				if (r->lie_lock &&
				    lie(r, st, &rx, buf, (size_t)n))
					continue;
				if (write(sim, buf, (size_t)n) != n)
					break;
			}
			if (fds[1].revents != 0) {
				n = read(sim, buf, sizeof(buf));
				if (n <= 0)
					break;
				tap(1, buf, (size_t)n);
				if (write(st, buf, (size_t)n) != n)
					break;
			}
		}
		close(st);
		close(sim);
	}
	return NULL;
}

static void relay_start(relay_t *r, const char *name)
{
	struct sockaddr_un sa;

	memset(&sa, 0, sizeof(sa));
	snprintf(r->listen_path, sizeof(r->listen_path), "%.40s/%.15s.relay",
		 dir, name);
	unlink(r->listen_path);
	r->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r->listen_path);
	if (r->lfd < 0 ||
	    bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(r->lfd, 4) != 0)
		die("relay socket");
	if (pthread_create(&r->th, NULL, relay_main, r) != 0)
		die("relay thread");
}

static void relay_stop(relay_t *r)
{
	r->stop = 1;
	pthread_join(r->th, NULL);
	close(r->lfd);
	unlink(r->listen_path);
}

/* ---- boards ---- */

static ks_simproc_t *board(const char *name, const char *uid, int use_unix,
			   char *image, size_t image_cap)
{
	char sock[100];
	ks_simproc_opts_t o;
	ks_simproc_t *sp = NULL;

	snprintf(image, image_cap, "%s/%s.img", dir, name);
	snprintf(sock, sizeof(sock), "%s/%s.sock", dir, name);
	memset(&o, 0, sizeof(o));
	o.exe = sim_exe;
	o.image = image;
	o.uid_hex = uid;
	o.quiet = true;
	if (use_unix) {
		unlink(sock);
		o.unix_path = sock;
	}
	if (ks_simproc_start(&o, &sp) != KS_OK)
		die("simulator start");
	return sp;
}

static void stop(ks_simproc_t **sp)
{
	ks_simproc_result_t r;

	(void)ks_simproc_stop(sp, &r);
}

static ks_err_t run(const char *port, const char *lot, const char *prof,
		    ks_session_result_t *res)
{
	ks_session_params_t p;

	memset(&p, 0, sizeof(p));
	p.port = port;
	p.slot = "test";
	p.slot_index = 1;
	p.lot = lot;
	p.profile = prof;
	p.actor = "tester";
	p.timeout_ms = 1000;
	return ks_session_run(engine, &p, res);
}

static uint8_t *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long size;

	*n = 0;
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)size + 1);
		if (buf != NULL &&
		    fread(buf, 1, (size_t)size, f) == (size_t)size) {
			*n = (size_t)size;
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	int ok = f != NULL && fwrite(p, 1, n, f) == n;

	if (f != NULL && fclose(f) != 0)
		ok = 0;
	return ok;
}

static int contains(const uint8_t *hay, size_t n, const uint8_t *needle,
		    size_t k)
{
	for (size_t i = 0; hay != NULL && i + k <= n; i++)
		if (hay[i] == needle[0] && memcmp(hay + i, needle, k) == 0)
			return 1;
	return 0;
}

/* The scalar of OTP key slot k of an image; 0 if the slot is erased. */
static int image_key(const uint8_t *img, size_t n, int k, uint8_t d[32])
{
	uint8_t ff[32];

	for (int w = 0; w < 8; w++) {
		long off = SIM_OFF_OTP + 8L * (SIM_KEY_WORD(k) + w);

		if ((size_t)off + 4 > n)
			return 0;
		memcpy(d + 4 * w, img + off, 4);
	}
	memset(ff, 0xFF, sizeof(ff));
	return memcmp(d, ff, 32) != 0;
}

/*
 * Dump the station's memory as a core file would hold it: a forked child
 * (a copy-on-write image of this process at this instant) copies every
 * readable mapping from /proc/self/mem to `path`. Independent of
 * core_pattern / systemd-coredump, so it works the same in any CI.
 */
static size_t dump_memory(const char *path)
{
	pid_t pid = fork();
	int status = 0;
	struct stat sb;

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		FILE *maps = fopen("/proc/self/maps", "r");
		int mem = open("/proc/self/mem", O_RDONLY);
		int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		char line[512];
		static uint8_t buf[1 << 16];

		if (maps == NULL || mem < 0 || out < 0)
			_exit(3);
		while (fgets(line, sizeof(line), maps) != NULL) {
			unsigned long lo, hi;
			char perms[8];

			/* Sanitizer shadow and reserved regions span terabytes
			 * of mostly untouched pages: a mapping over 1 GiB is not
			 * station data. All-zero chunks cannot hold a key and
			 * are not written, which keeps the dump to what the
			 * process really uses. */
			if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 ||
			    perms[0] != 'r' || strstr(line, "[vvar]") != NULL ||
			    hi - lo > (1ul << 30))
				continue;
			for (unsigned long a = lo; a < hi; a += sizeof(buf)) {
				size_t k = hi - a < sizeof(buf) ? hi - a
								: sizeof(buf);
				ssize_t g = pread(mem, buf, k, (off_t)a);
				size_t z = 0;

				if (g <= 0)
					break;
				while (z < (size_t)g && buf[z] == 0)
					z++;
				if (z == (size_t)g)
					continue;
				if (write(out, buf, (size_t)g) != g)
					break;
			}
		}
		close(out);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    stat(path, &sb) != 0)
		return 0;
	return (size_t)sb.st_size;
}

/* ---- 1. sniffing ---- */

static void test_sniff(int sessions)
{
	char logpath[256], dump[256], path[256];
	uint8_t (*keys)[32];
	char (*images)[256];
	int saved_err, log_fd, done = 0, nkeys = 0;
	size_t wire_bytes, core_len;
	int on_wire = 0, in_log = 0, in_db = 0, in_core = 0;
	relay_t rl;

	memset(&rl, 0, sizeof(rl));
	keys = calloc((size_t)sessions * 4, 32);
	images = calloc((size_t)sessions, sizeof(*images));
	if (keys == NULL || images == NULL)
		die("memory");
	/* the engine's log output goes to a file we scan afterwards */
	snprintf(logpath, sizeof(logpath), "%s/engine.log", dir);
	fflush(stderr);
	saved_err = dup(2);
	log_fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (saved_err < 0 || log_fd < 0 || dup2(log_fd, 2) < 0)
		die("log redirect");
	close(log_fd);
	ks_log_set_level(KS_LOG_DEBUG);
	for (int i = 0; i < sessions; i++) {
		char name[16], uid[32], spec[200];
		ks_session_result_t res;
		ks_simproc_t *sp;

		snprintf(name, sizeof(name), "sniff%03d", i);
		snprintf(uid, sizeof(uid), "5e%06x0011223344", i);
		sp = board(name, uid, 1, images[i], sizeof(images[i]));
		memset(&rl, 0, sizeof(rl));
		snprintf(rl.sim_path, sizeof(rl.sim_path), "%.40s/%.15s.sock",
			 dir, name);
		relay_start(&rl, name);
		snprintf(spec, sizeof(spec), "unix:%s", rl.listen_path);
		if (run(spec, "LH", "host", &res) == KS_OK &&
		    res.final == KS_STEP_ACTIVE)
			done++;
		else
			printf("     session %d: %s at %s\n", i, res.reason,
			       ks_step_name(res.final));
		relay_stop(&rl);
		stop(&sp);
	}
	fflush(stderr);
	dup2(saved_err, 2);
	close(saved_err);
	ks_log_set_level(KS_LOG_INFO);
	check(done == sessions, "%d/%d host-keyed sessions ACTIVE through the "
	      "tapping relay", done, sessions);
	/* the station's memory, before this test touches any scalar */
	snprintf(dump, sizeof(dump), "%s/station.core", dir);
	core_len = dump_memory(dump);
	check(core_len > 1000000, "station memory dumped (%zu bytes)",
	      core_len);

	for (int i = 0; i < sessions; i++) {
		size_t n;
		uint8_t *img = read_file(images[i], &n);

		for (int k = 0; k < 4; k++)
			if (img != NULL && image_key(img, n, k, keys[nkeys]))
				nkeys++;
		free(img);
	}
	check(nkeys == sessions, "%d OTP private scalars read back from %d "
	      "images", nkeys, sessions);
	wire_bytes = cap_len[0] + cap_len[1];
	{
		size_t ln, dn, wn, cn;
		uint8_t *lg, *db, *wal, *core;

		snprintf(path, sizeof(path), "%s/registry.db", dir);
		lg = read_file(logpath, &ln);
		db = read_file(path, &dn);
		snprintf(path, sizeof(path), "%s/registry.db-wal", dir);
		wal = read_file(path, &wn);
		core = read_file(dump, &cn);
		for (int k = 0; k < nkeys; k++) {
			uint8_t rev[32];

			/* big-endian as sent, and byte-reversed: the in-memory
			 * form of an OpenSSL/mbedTLS bignum on little-endian
			 * hosts */
			for (int j = 0; j < 32; j++)
				rev[j] = keys[k][31 - j];
			for (int c = 0; c < 3; c++)
				on_wire += contains(cap[c], cap_len[c], keys[k],
						    32);
			in_log += contains(lg, ln, keys[k], 32);
			/* also as hex text, the way a log would print it */
			{
				char hx[65];

				for (int j = 0; j < 32; j++)
					sprintf(hx + 2 * j, "%02x", keys[k][j]);
				in_log += contains(lg, ln, (uint8_t *)hx, 64);
			}
			in_db += contains(db, dn, keys[k], 32) +
				 contains(wal, wn, keys[k], 32);
			in_core += contains(core, cn, keys[k], 32) +
				   contains(core, cn, rev, 32);
			in_db += contains(db, dn, rev, 32) +
				 contains(wal, wn, rev, 32);
		}
		check(ln > 0, "engine log captured (%zu bytes)", ln);
		check(on_wire == 0, "%zu bytes sniffed on the link (%zu "
		      "bytes of decoded frame payloads): %d of %d private "
		      "keys found", wire_bytes, cap_len[2], on_wire, nkeys);
		check(in_log == 0, "engine log: %d private keys found", in_log);
		check(in_db == 0, "registry DB (%zu bytes) + WAL (%zu bytes): "
		      "%d private keys found", dn, wn, in_db);
		check(in_core == 0, "station memory dump: %d private keys "
		      "found", in_core);
		/* the search is able to fail: a key written into a file
		 * amid random bytes is found by the same read and scan */
		{
			size_t in;
			uint8_t junk[4096], *back;

			snprintf(path, sizeof(path), "%s/control.bin", dir);
			RAND_bytes(junk, sizeof(junk));
			if (nkeys > 0)
				memcpy(junk + 1234, keys[0], 32);
			back = write_file(path, junk, sizeof(junk))
				       ? read_file(path, &in)
				       : NULL;
			check(nkeys > 0 && contains(back, in, keys[0], 32),
			      "control: the scanner finds a planted key");
			OPENSSL_cleanse(junk, sizeof(junk));
			free(back);
			unlink(path);
		}
		free(lg);
		free(db);
		free(wal);
		free(core);
	}
	unlink(dump);
	OPENSSL_cleanse(keys, (size_t)sessions * 4 * 32);
	free(keys);
	free(images);
}

/* ---- 2. locks hold ---- */

/* Send one raw request; returns the response type, 0 on no answer, and
 * the ERROR status in *st. */
static unsigned raw(ks_agent_t *a, uint8_t type, const uint8_t *p, size_t n,
		    unsigned *st)
{
	uint8_t rsp[KP_MAX_PAYLOAD];
	size_t rn = 0;
	ks_err_t r = ks_agent_call(a, type, p, n, rsp, sizeof(rsp), &rn);

	*st = 0;
	if (r == KS_OK)
		return type;
	if (r == KS_ERR_AGENT) {
		*st = ks_agent_last_status(a);
		return KP_MSG_ERROR;
	}
	return 0;
}

static size_t put_req(uint8_t obj, uint32_t off, uint32_t total,
		      const uint8_t *d, size_t n, uint8_t *out)
{
	kp_put_object_req_t q = {.obj = obj, .offset = off, .total = total,
				 .data = d, .data_len = (uint16_t)n};
	size_t len = 0;

	if (kp_put_object_req_encode(&q, out, KP_MAX_PAYLOAD, &len) != KP_OK)
		die("encode");
	return len;
}

static void test_locks(int attempts)
{
	char image[256];
	ks_simproc_t *sp;
	ks_session_result_t res;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	uint8_t *before, *after;
	size_t bn, an;
	unsigned accepted[16] = {0}, tried[16] = {0};
	static const char *const kinds[] = {
		"PUT_OBJECT CERT",	 "PUT_OBJECT CHAIN",
		"PUT_OBJECT SERIAL",	 "PUT_OBJECT META",
		"HOSTKEY plain",	 "HOSTKEY sealed",
		"COMMIT",		 "GENKEY",
		"GENKEY NEW",		 "GENKEY NEW + seed sealed",
		"LOCK level 0..255",	 "raw frames, every type",
	};
	unsigned total_acc = 0, total = 0;
	uint8_t lock0 = 0;

	sp = board("locked", "10cced0000000001", 0, image, sizeof(image));
	check(run(ks_simproc_spec(sp), "LD", "dev", &res) == KS_OK &&
		      res.final == KS_STEP_ACTIVE,
	      "board provisioned and LOCKED (%s)", res.reason);
	if (ks_agent_open(ks_simproc_spec(sp), NULL, &a) != KS_OK ||
	    ks_agent_hello(a, &h) != KS_OK)
		die("agent");
	lock0 = h.st.lock;
	check(h.st.state == KP_STATE_LOCKED && lock0 == 7,
	      "board reports LOCKED, lock bits 0x%02x", lock0);
	before = read_file(image, &bn);
	for (int i = 0; i < attempts; i++) {
		uint8_t req[KP_MAX_PAYLOAD], rnd[KP_MAX_PAYLOAD], dig[32];
		size_t n;
		unsigned st, t;
		kp_genkey_req_t g;
		kp_commit_req_t c = {.digest = dig, .digest_len = 32};
		kp_lock_req_t l;

		RAND_bytes(rnd, sizeof(rnd));
		RAND_bytes(dig, sizeof(dig));
		/* objects: random contents, random sizes */
		for (int o = 0; o < 4; o++) {
			size_t len = 1 + rnd[o] % 60;

			n = put_req((uint8_t)(o + 1), 0, (uint32_t)len,
				    rnd + 8, len, req);
			t = raw(a, KP_MSG_PUT_OBJECT, req, n, &st);
			tried[o]++;
			accepted[o] += t != KP_MSG_ERROR;
		}
		n = put_req(KP_OBJ_HOSTKEY, 0, 32, rnd + 100, 32, req);
		t = raw(a, KP_MSG_PUT_OBJECT, req, n, &st);
		tried[4]++;
		accepted[4] += t != KP_MSG_ERROR;
		{
			bool has = false;
			uint8_t pub[65];

			/* the client seals it (the board can: it has a key) */
			tried[5]++;
			accepted[5] += ks_agent_put_object(a, KP_OBJ_HOSTKEY,
							   rnd + 200, 32, pub,
							   &has) != KS_ERR_AGENT;
		}
		if (kp_commit_req_encode(&c, req, sizeof(req), &n) != KP_OK)
			die("encode");
		t = raw(a, KP_MSG_COMMIT, req, n, &st);
		tried[6]++;
		accepted[6] += t != KP_MSG_ERROR;
		memset(&g, 0, sizeof(g));
		if (kp_genkey_req_encode(&g, req, sizeof(req), &n) != KP_OK)
			die("encode");
		t = raw(a, KP_MSG_GENKEY, req, n, &st);
		tried[7]++;
		accepted[7] += t != KP_MSG_ERROR;
		g.has = KP_BIT(0x02);
		g.flags = KP_GENKEY_NEW;
		if (kp_genkey_req_encode(&g, req, sizeof(req), &n) != KP_OK)
			die("encode");
		t = raw(a, KP_MSG_GENKEY, req, n, &st);
		tried[8]++;
		accepted[8] += t != KP_MSG_ERROR;
		{
			ks_agent_genkey_t *gk = NULL;

			tried[9]++;
			accepted[9] += ks_agent_genkey(a, rnd + 300, 32,
						       KP_GENKEY_NEW, NULL,
						       &gk) != KS_ERR_AGENT;
			ks_agent_genkey_free(&gk);
		}
		/* LOCK with a level byte 0..255 (a "downgrade" to 0 or an
		 * unlock level): accepted = any change of the lock bits */
		{
			uint8_t lv[8] = {0x01, 0x03, 0x01, 0x00, 0x00, 0x00,
					 0x00, 0x00};
			kp_lock_rsp_t lr;
			uint8_t rsp[KP_MAX_PAYLOAD];
			size_t rn = 0;
			ks_err_t e;

			lv[3] = (uint8_t)i; /* level = i (mod 256) */
			(void)l;
			e = ks_agent_call(a, KP_MSG_LOCK, lv, 4, rsp,
					  sizeof(rsp), &rn);
			tried[10]++;
			if (e == KS_OK &&
			    (kp_lock_rsp_decode(&lr, rsp, rn) != KP_OK ||
			     lr.lock != lock0 || lr.state != KP_STATE_LOCKED))
				accepted[10]++;
		}
		/* raw frames of every type with random payloads; the
		 * read-only answers (HELLO, STATUS, READBACK, CHALLENGE,
		 * SECURE_OPEN, idempotent LOCK) change nothing, checked on
		 * the image below; anything else must be refused */
		for (unsigned ty = 0; ty < 256; ty += 1) {
			size_t len = rnd[ty % 1000] % 48;

			if (ty % 100 != (unsigned)i % 100 && ty > 0x10 &&
			    ty != 0x7F)
				continue; /* every type, over the attempts */
			t = raw(a, (uint8_t)ty, rnd + 500, len, &st);
			tried[11]++;
			if (t != KP_MSG_ERROR && t != 0 &&
			    ty != KP_MSG_HELLO && ty != KP_MSG_STATUS &&
			    ty != KP_MSG_READBACK && ty != KP_MSG_CHALLENGE &&
			    ty != KP_MSG_SECURE_OPEN && ty != KP_MSG_LOCK)
				accepted[11]++;
		}
	}
	if (ks_agent_hello(a, &h) != KS_OK)
		die("hello");
	check(h.st.state == KP_STATE_LOCKED && h.st.lock == lock0 &&
		      h.st.integrity == 0,
	      "still LOCKED with lock bits 0x%02x and intact", h.st.lock);
	ks_agent_free(&a);
	stop(&sp);
	after = read_file(image, &an);
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		check(accepted[k] == 0, "%-26s %u attempts, %u accepted",
		      kinds[k], tried[k], accepted[k]);
		total += tried[k];
		total_acc += accepted[k];
	}
	check(before != NULL && after != NULL && bn == an &&
		      memcmp(before, after, bn) == 0,
	      "image (OTP, lock words, flash) byte-identical after %u "
	      "attempts (%u accepted)",
	      total, total_acc);
	free(before);
	free(after);
	/* the station itself refuses a locked board */
	sp = board("locked", "10cced0000000001", 0, image, sizeof(image));
	{
		ks_err_t rc = run(ks_simproc_spec(sp), "LD", "dev", &res);

		check(rc != KS_OK && res.final == KS_STEP_REFUSED,
		      "station refuses to provision the locked board: %s",
		      res.reason);
	}
	stop(&sp);
}

/* ---- RMA of the locked board ---- */

static void test_rma(void)
{
	static const uint8_t uid[8] = {0x10, 0xcc, 0xed, 0, 0, 0, 0, 1};
	char image[256], cert[128], path[256], chain[256];
	EVP_PKEY *pub = NULL;
	unsigned char *der = NULL;
	const unsigned char *dp;
	int dl;
	ks_reg_device_t dv;
	ks_session_result_t res;
	ks_simproc_t *sp;
	ks_audit_report_t rep;
	uint8_t nouid[4] = {9, 9, 9, 9};

	check(ks_reg_device_rma(reg, uid, sizeof(uid), "", "tester", cert,
				sizeof(cert)) == KS_ERR_ARG,
	      "rma without a reason is refused");
	check(ks_reg_device_rma(reg, nouid, sizeof(nouid), "x", "tester",
				cert, sizeof(cert)) == KS_ERR_NOTFOUND,
	      "rma of an unknown UID: not found");
	check(ks_reg_device_rma(reg, uid, sizeof(uid), "field return: no boot",
				"alice", cert, sizeof(cert)) == KS_OK &&
		      cert[0] != '\0',
	      "rma recorded, certificate %s voided", cert);
	check(ks_reg_device_get(reg, uid, sizeof(uid), NULL, &dv) == KS_OK &&
		      dv.state == KS_REG_SCRAPPED && dv.cert_serial[0] == '\0',
	      "device SCRAPPED with no ACTIVE certificate");
	check(ks_reg_device_rma(reg, uid, sizeof(uid), "again", "alice", cert,
				sizeof(cert)) == KS_ERR_STATE,
	      "a second rma is refused (already SCRAPPED)");
	/* the locked part stays refused: RMA does not unlock anything */
	sp = board("locked", "10cced0000000001", 0, image, sizeof(image));
	{
		ks_err_t rc = run(ks_simproc_spec(sp), "LD", "dev", &res);

		check(rc != KS_OK && res.final == KS_STEP_REFUSED,
		      "after RMA the locked board is still refused: %s",
		      res.reason);
	}
	stop(&sp);
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	snprintf(chain, sizeof(chain), "%s/chain.pem", dir);
	dl = i2d_PUBKEY(station_key, &der);
	dp = der;
	if (dl > 0)
		pub = d2i_PUBKEY(NULL, &dp, dl);
	check(pub != NULL && ks_audit_verify(path, chain, pub, &rep) == KS_OK &&
		      rep.ok,
	      "audit chain (with the RMA's VOIDED and SCRAPPED events) "
	      "verifies");
	EVP_PKEY_free(pub);
	OPENSSL_free(der);
}

/* ---- 3. the registry records the lock the board reports ---- */

static void test_lock_lie(void)
{
	char image[256], spec[200];
	ks_simproc_t *sp;
	ks_session_result_t res;
	ks_reg_session_t s;
	relay_t rl;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;

	memset(&rl, 0, sizeof(rl));
	sp = board("liar", "11a2000000000001", 1, image, sizeof(image));
	snprintf(rl.sim_path, sizeof(rl.sim_path), "%s/liar.sock", dir);
	rl.lie_lock = 1;
	relay_start(&rl, "liar");
	snprintf(spec, sizeof(spec), "unix:%s", rl.listen_path);
	(void)run(spec, "LD", "dev", &res);
	check(res.final == KS_STEP_SCRAPPED,
	      "a LOCK answer claiming lock 7 that the board did not sign: "
	      "%s (%s)",
	      ks_step_name(res.final), res.reason);
	check(ks_reg_session_get(reg, res.session_id, &s) == KS_OK &&
		      s.state == KS_REG_SCRAPPED && !s.has_lock_bits,
	      "registry: session SCRAPPED, no lock bits recorded");
	relay_stop(&rl);
	/* and the board really is not locked */
	if (ks_agent_open(ks_simproc_spec(sp), NULL, &a) == KS_OK &&
	    ks_agent_hello(a, &h) == KS_OK)
		check(h.st.lock == 0, "board's own lock bits: 0x%02x",
		      h.st.lock);
	ks_agent_free(&a);
	stop(&sp);
}

/* ---- 4. boot-time integrity ---- */

static void flip(const char *image, long off, uint8_t mask)
{
	size_t n;
	uint8_t *img = read_file(image, &n);

	if (img == NULL || (size_t)off >= n)
		die("flip");
	img[off] ^= mask;
	if (!write_file(image, img, n))
		die("flip write");
	free(img);
}

static void integrity_case(const char *name, const char *uid,
			   const char *prof, const char *lot, long off_rel,
			   int where)
{
	char image[256];
	ks_simproc_t *sp;
	ks_session_result_t res;
	ks_agent_t *a = NULL;
	ks_agent_hello_t h;
	uint8_t sig[KS_SIG_MAX], nonce[32] = {1};
	size_t sl = 0;
	long off;

	sp = board(name, uid, 0, image, sizeof(image));
	check(run(ks_simproc_spec(sp), lot, prof, &res) == KS_OK,
	      "%s: provisioned (%s)", name, res.reason);
	stop(&sp);
	/* where: 0 flash blob, 1 OTP digest, 2 OTP key */
	off = where == 0   ? SIM_OFF_FLASH + off_rel
	      : where == 1 ? SIM_OFF_OTP + 8L * SIM_COMMIT_WORD(0) + off_rel
			   : SIM_OFF_OTP + 8L * SIM_KEY_WORD(0) + off_rel;
	flip(image, off, 0x10);
	sp = board(name, uid, 0, image, sizeof(image));
	if (ks_agent_open(ks_simproc_spec(sp), NULL, &a) != KS_OK ||
	    ks_agent_hello(a, &h) != KS_OK)
		die("agent");
	check(h.st.integrity != 0, "%s: HELLO integrity = %u (%s), state %u",
	      name, h.st.integrity, kp_status_str(h.st.integrity),
	      h.st.state);
	check(ks_agent_challenge(a, nonce, sizeof(nonce), sig, &sl) ==
			      KS_ERR_AGENT &&
		      ks_agent_last_status(a) == KP_ST_INTEGRITY,
	      "%s: CHALLENGE refused (%s)", name,
	      kp_status_str(ks_agent_last_status(a)));
	ks_agent_free(&a);
	{
		ks_err_t rc = run(ks_simproc_spec(sp), lot, prof, &res);

		check(rc == KS_ERR_VERIFY &&
			      strstr(res.reason, "integrity") != NULL,
		      "%s: station refuses the board at %s: %s", name,
		      ks_step_name(res.final), res.reason);
	}
	stop(&sp);
}

static void test_integrity(void)
{
	/* the blob starts at byte 0 of sector 0; byte 40 is inside the
	 * pubkey / serial TLVs */
	integrity_case("flashflip", "f1a5000000000001", "open", "LO", 40, 0);
	integrity_case("flashflip-locked", "f1a5000000000002", "dev", "LD",
		       40, 0);
	/* OTP digest word 3 of commit slot 0, value byte 1 */
	integrity_case("otpdigest", "07d9000000000001", "open", "LO",
		       8L * 3 + 1, 1);
	integrity_case("otpdigest-locked", "07d9000000000002", "dev", "LD",
		       8L * 3 + 1, 1);
	/* OTP key slot 0, word 5, value byte 2 */
	integrity_case("otpkey-locked", "07e0000000000001", "dev", "LD",
		       8L * 5 + 2, 2);
}

int main(int argc, char **argv)
{
	int sessions = 100;

	sim_exe = argc > 1 ? argv[1] : getenv("KILN_AGENT_SIM");
	if (sim_exe == NULL) {
		fprintf(stderr, "usage: test_secrets KILN-AGENT-SIM "
			"[SESSIONS]\n");
		return 2;
	}
	if (argc > 2)
		sessions = atoi(argv[2]);
	if (sessions < 1)
		sessions = 1;
	setup();
	test_sniff(sessions);
	test_locks(100);
	test_rma();
	test_lock_lie();
	test_integrity();
	ks_engine_free(&engine);
	ks_reg_close(&reg);
	ks_signer_free(&signer);
	EVP_PKEY_free(station_key);
	for (int c = 0; c < 3; c++)
		free(cap[c]);
	if (failed == 0) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
