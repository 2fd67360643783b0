/*
 * Link-fault relay (see lf_relay.h): one thread, one connection pair at a
 * time, blocking writes (the volumes are small).
 */
#include "tests/linkfault/lf_relay.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "protocol/frame.h"

#define HIST 6
#define CHUNK 512

/* Lines a booting board prints on the same UART (no 0x00 in them). */
static const char *const bootlog[] = {
	"\r\n[    0.000000] kiln-agent 0.1.0 booting\r\n",
	"I (312) cpu_start: Starting scheduler on PRO CPU.\r\n",
	"*** Booting Zephyr OS build v3.5.0 ***\r\n",
	"ROM: boot mode 0x13, reset cause: brown-out\r\n",
	"\x1b[0;32mOK\x1b[0m secure boot: image verified\r\n",
};

typedef struct {
	bool trunc;                /* dropping until the next delimiter */
	uint8_t frame[KP_MAX_WIRE]; /* clean bytes of the current frame */
	size_t flen;
	bool fover;
	uint8_t hist[HIST][KP_MAX_WIRE]; /* earlier frames, for replays */
	size_t hlen[HIST];
	unsigned hn;
	bool have_last;
	uint8_t last_type;
	uint16_t last_seq;
} dir_state_t;

struct lf_relay {
	char listen_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char board_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd;
	int wake[2];
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	lf_dir_cfg_t cfg[2];
	lf_dir_stats_t st[2];
	bool unplug_armed[2];
	uint64_t unplug_left[2];
	unsigned unplugs, conns;
	bool busy;
	uint64_t rng;
	dir_state_t ds[2];
	uint8_t out[CHUNK * 80 + 2 * KP_MAX_WIRE];
};

static double uniform(lf_relay_t *r)
{
	uint64_t x = r->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->rng = x;
	return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

static unsigned below(lf_relay_t *r, unsigned n)
{
	return (unsigned)(uniform(r) * n) % n;
}

static void put(lf_relay_t *r, size_t *o, const void *p, size_t n)
{
	if (n > sizeof(r->out) - *o)
		n = sizeof(r->out) - *o;
	memcpy(r->out + *o, p, n);
	*o += n;
}

static void noise(lf_relay_t *r, int d, size_t *o)
{
	const char *line = bootlog[below(r, sizeof(bootlog) / sizeof(*bootlog))];

	put(r, o, line, strlen(line));
	r->st[d].noise_lines++;
}

/* A delimiter ended the clean frame ds->frame: account for it, keep it
 * for later replays, maybe replay an older one. */
static void frame_end(lf_relay_t *r, int d, const lf_dir_cfg_t *c, size_t *o,
		      bool *replayed)
{
	dir_state_t *ds = &r->ds[d];
	uint8_t tmp[KP_MAX_WIRE];
	const uint8_t *payload;
	kp_hdr_t h;

	if (ds->flen == 0 || ds->fover)
		goto reset;
	r->st[d].frames++;
	memcpy(tmp, ds->frame, ds->flen);
	if (kp_frame_decode(tmp, ds->flen, &h, &payload) == KP_OK) {
		if (d == LF_UP && ds->have_last && h.type == ds->last_type &&
		    h.seq == ds->last_seq)
			r->st[d].requests_repeated++;
		ds->have_last = true;
		ds->last_type = h.type;
		ds->last_seq = h.seq;
	}
	if (!*replayed && ds->hn > 0 && uniform(r) < c->replay) {
		unsigned k = below(r, ds->hn < HIST ? ds->hn : HIST);
		uint8_t z = 0;

		put(r, o, ds->hist[k], ds->hlen[k]);
		put(r, o, &z, 1);
		r->st[d].replays++;
		*replayed = true;
	}
	memcpy(ds->hist[ds->hn % HIST], ds->frame, ds->flen);
	ds->hlen[ds->hn % HIST] = ds->flen;
	ds->hn++;
reset:
	ds->flen = 0;
	ds->fover = false;
	if (uniform(r) < c->noise_frame)
		noise(r, d, o);
}

/* Run n clean bytes of direction d through the fault model into r->out.
 * Returns true when an armed unplug fired (output cut there). */
static bool process(lf_relay_t *r, int d, const uint8_t *in, size_t n,
		    size_t *outn)
{
	lf_dir_cfg_t c;
	dir_state_t *ds = &r->ds[d];
	size_t o = 0;
	bool replayed = false, unplug = false;

	pthread_mutex_lock(&r->mu);
	c = r->cfg[d];
	r->st[d].bytes_in += n;
	for (size_t i = 0; i < n; i++) {
		uint8_t b = in[i];
		double u;

		if (r->unplug_armed[d] && r->unplug_left[d]-- == 0) {
			r->unplug_armed[d] = false;
			r->unplugs++;
			unplug = true;
			break;
		}
		if (b != 0) {
			if (ds->flen < sizeof(ds->frame))
				ds->frame[ds->flen++] = b;
			else
				ds->fover = true;
		}
		if (ds->trunc) {
			if (b != 0) {
				r->st[d].drops++;
				continue;
			}
			ds->trunc = false;
		}
		if (c.noise_byte > 0 && uniform(r) < c.noise_byte)
			noise(r, d, &o);
		u = uniform(r);
		if (u < c.drop) {
			r->st[d].drops++;
		} else if ((u -= c.drop) < c.flip) {
			uint8_t f = (uint8_t)(b ^ (1u << below(r, 8)));

			put(r, &o, &f, 1);
			r->st[d].flips++;
		} else if ((u -= c.flip) < c.dup) {
			put(r, &o, &b, 1);
			put(r, &o, &b, 1);
			r->st[d].dups++;
		} else if ((u -= c.dup) < c.trunc && b != 0) {
			ds->trunc = true;
			r->st[d].truncs++;
		} else {
			put(r, &o, &b, 1);
		}
		if (b == 0)
			frame_end(r, d, &c, &o, &replayed);
	}
	r->st[d].bytes_out += o;
	pthread_mutex_unlock(&r->mu);
	*outn = o;
	return unplug;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int connect_board(const lf_relay_t *r)
{
	struct sockaddr_un sa;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, r->board_path, strlen(r->board_path) + 1);
	for (int i = 0; i < 100; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(20000);
	}
	return -1;
}

/* Relay one station connection until either side closes or an unplug. */
static void serve(lf_relay_t *r, int sfd)
{
	int bfd = connect_board(r);
	uint8_t buf[CHUNK];

	if (bfd < 0) {
		fprintf(stderr, "lf_relay: cannot reach the board at %s\n",
			r->board_path);
		return;
	}
	pthread_mutex_lock(&r->mu);
	r->conns++;
	for (int d = 0; d < 2; d++) {
		r->ds[d].trunc = false;
		r->ds[d].flen = 0;
		r->ds[d].fover = false;
		r->ds[d].have_last = false;
	}
	pthread_mutex_unlock(&r->mu);
	for (;;) {
		struct pollfd p[3] = {{sfd, POLLIN, 0}, {bfd, POLLIN, 0},
				      {r->wake[0], POLLIN, 0}};
		int n = poll(p, 3, 1000);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || p[2].revents != 0)
			break;
		for (int d = 0; d < 2; d++) {
			int from = d == LF_UP ? sfd : bfd;
			int to = d == LF_UP ? bfd : sfd;
			size_t outn = 0;
			ssize_t got;
			bool cut;

			if (p[d].revents == 0)
				continue;
			got = recv(from, buf, sizeof(buf), 0);
			if (got <= 0)
				goto out;
			cut = process(r, d, buf, (size_t)got, &outn);
			if (write_all(to, r->out, outn) != 0 || cut)
				goto out;
		}
	}
out:
	close(bfd);
}

static void *relay_main(void *arg)
{
	lf_relay_t *r = arg;

	for (;;) {
		struct pollfd p[2] = {{r->lfd, POLLIN, 0},
				      {r->wake[0], POLLIN, 0}};
		int sfd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents != 0)
			break;
		sfd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (sfd < 0)
			continue;
		pthread_mutex_lock(&r->mu);
		r->busy = true;
		pthread_mutex_unlock(&r->mu);
		serve(r, sfd);
		close(sfd);
		pthread_mutex_lock(&r->mu);
		r->busy = false;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
	}
	return NULL;
}

int lf_relay_start(const char *listen_path, const char *board_path,
		   uint64_t seed, lf_relay_t **out)
{
	struct sockaddr_un sa;
	lf_relay_t *r;

	*out = NULL;
	if (strlen(listen_path) >= sizeof(sa.sun_path) ||
	    strlen(board_path) >= sizeof(sa.sun_path))
		return -1;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -1;
	snprintf(r->listen_path, sizeof(r->listen_path), "%s", listen_path);
	snprintf(r->board_path, sizeof(r->board_path), "%s", board_path);
	r->rng = seed != 0 ? seed : 0x9E3779B97F4A7C15ull;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->wake[0] = r->wake[1] = -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, listen_path, strlen(listen_path) + 1);
	(void)unlink(listen_path);
	r->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(r->lfd, 4) != 0 || pipe2(r->wake, O_CLOEXEC) != 0 ||
	    pthread_create(&r->th, NULL, relay_main, r) != 0) {
		fprintf(stderr, "lf_relay: %s: %s\n", listen_path,
			strerror(errno));
		if (r->lfd >= 0)
			close(r->lfd);
		if (r->wake[0] >= 0) {
			close(r->wake[0]);
			close(r->wake[1]);
		}
		free(r);
		return -1;
	}
	*out = r;
	return 0;
}

void lf_relay_set(lf_relay_t *r, const lf_dir_cfg_t *up,
		  const lf_dir_cfg_t *down)
{
	pthread_mutex_lock(&r->mu);
	r->cfg[LF_UP] = *up;
	r->cfg[LF_DOWN] = *down;
	pthread_mutex_unlock(&r->mu);
}

void lf_relay_unplug_after(lf_relay_t *r, int dir, uint64_t n)
{
	pthread_mutex_lock(&r->mu);
	r->unplug_armed[dir] = true;
	r->unplug_left[dir] = n;
	pthread_mutex_unlock(&r->mu);
}

bool lf_relay_wait_idle(lf_relay_t *r, int timeout_ms)
{
	struct timespec ts;
	bool idle;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->mu);
	while (r->busy)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0)
			break;
	idle = !r->busy;
	pthread_mutex_unlock(&r->mu);
	return idle;
}

void lf_relay_stats(lf_relay_t *r, lf_dir_stats_t st[2], unsigned *unplugs,
		    unsigned *connections)
{
	pthread_mutex_lock(&r->mu);
	st[0] = r->st[0];
	st[1] = r->st[1];
	*unplugs = r->unplugs;
	*connections = r->conns;
	pthread_mutex_unlock(&r->mu);
}

void lf_relay_stop(lf_relay_t **rp)
{
	lf_relay_t *r = rp != NULL ? *rp : NULL;

	if (r == NULL)
		return;
	(void)!write(r->wake[1], "x", 1);
	pthread_join(r->th, NULL);
	close(r->lfd);
	close(r->wake[0]);
	close(r->wake[1]);
	(void)unlink(r->listen_path);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
	*rp = NULL;
}
