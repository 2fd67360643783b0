/*
 * kiln status [--watch]: the per-slot table, the batch and the totals.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "host/kiln/kiln.h"

#define KC_WATCH_MS 500

static const char *color(const char *state, bool tty)
{
	if (!tty)
		return "";
	if (strcmp(state, "done") == 0)
		return "\033[32m";
	if (strcmp(state, "failed") == 0 || strcmp(state, "error") == 0)
		return "\033[31m";
	if (strcmp(state, "provisioning") == 0)
		return "\033[33m";
	if (strcmp(state, "skipped") == 0)
		return "\033[35m";
	return "";
}

static void batch_line(const json_t *b, bool tty, int *lines)
{
	char dur[32], started[32], count[32];
	int64_t total = kc_int(b, "count");
	bool running = json_is_true(json_object_get(b, "running"));
	json_t *y = json_object_get(b, "yield"), *ph = json_object_get(b, "per_hour");

	kc_fmt_duration(kc_int(b, "elapsed_ms"), dur, sizeof(dur));
	kc_fmt_time(kc_int(b, "started_ms"), started, sizeof(started));
	if (total > 0)
		snprintf(count, sizeof(count), "%" PRId64 "/%" PRId64,
			 kc_int(b, "done"), total);
	else
		snprintf(count, sizeof(count), "%" PRId64, kc_int(b, "done"));
	printf("batch  %s%s%s  lot %s  profile %s  started %s by %s\n",
	       tty ? "\033[1m" : "", running ? "RUNNING" : "ENDED",
	       tty ? "\033[0m" : "", kc_str(b, "lot"), kc_str(b, "profile"),
	       started, kc_str(b, "actor"));
	printf("       done %s  failed %" PRId64 "  refused %" PRId64
	       "  in flight %" PRId64 "  yield %.1f%%  %.0f/h  elapsed %s\n",
	       count, kc_int(b, "failed"), kc_int(b, "refused"),
	       kc_int(b, "in_flight"), 100.0 * json_number_value(y),
	       json_number_value(ph), dur);
	*lines += 2;
	if (!running && kc_str(b, "end_reason")[0]) {
		printf("       ended: %s\n", kc_str(b, "end_reason"));
		(*lines)++;
	}
}

/*
 * The registry: backend and health, then the counters while it answers.
 *   registry: postgresql://kiln@db/kiln, ok since 12:01:55
 *   registry: postgresql, UNREACHABLE since 12:03:04 (connection refused)
 *             -- 3 slots waiting, reconnecting
 */
static void registry_lines(const json_t *reg, int *lines)
{
	json_t *conn = json_object_get(reg, "connected");
	char when[32] = "?";
	int64_t since = kc_int(reg, "since_ms");
	time_t t = (time_t)(since / 1000);
	struct tm tm;

	if (since > 0 && localtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%H:%M:%S", &tm);
	printf("\n");
	(*lines)++;
	if (json_is_boolean(conn) && !json_is_true(conn)) {
		int64_t waiting = kc_int(reg, "slots_waiting");

		printf("registry: %s, UNREACHABLE since %s (%s) -- %" PRId64
		       " slot%s waiting, reconnecting\n",
		       kc_str(reg, "url"), when, kc_str(reg, "last_error"),
		       waiting, waiting == 1 ? "" : "s");
		(*lines)++;
		return;
	}
	if (json_is_boolean(conn)) {
		printf("registry: %s, ok since %s\n", kc_str(reg, "url"), when);
		(*lines)++;
	}
	if (json_object_get(reg, "sessions") != NULL) {
		printf("registry: %" PRId64 " devices ACTIVE, %" PRId64
		       " sessions, %" PRId64 " audit events\n",
		       kc_int(reg, "devices_active"), kc_int(reg, "sessions"),
		       kc_int(reg, "audit_events"));
		(*lines)++;
	}
}

int kc_status_render(const json_t *st, bool tty)
{
	json_t *slots = json_object_get(st, "slots"), *b = json_object_get(st, "batch");
	json_t *reg = json_object_get(st, "registry"), *s;
	char up[32];
	size_t i;
	int lines = 0;

	kc_fmt_duration(kc_int(st, "uptime_ms"), up, sizeof(up));
	printf("station %s  kilnd %s  up %s\n", kc_str(st, "station"),
	       kc_str(st, "version"), up);
	lines++;
	if (json_is_object(b))
		batch_line(b, tty, &lines);
	else {
		printf("batch  none (kiln batch start --lot L --profile P)\n");
		lines++;
	}
	printf("\n%-10s %-13s %-9s %-26s %-16s %4s %4s %7s  %s\n", "SLOT",
	       "STATE", "STEP", "UID", "SERIAL", "OK", "FAIL", "LAST", "NOTE");
	lines += 2;
	json_array_foreach(slots, i, s) {
		const char *state = kc_str(s, "state");
		const char *err = kc_str(s, "error");
		char last[16] = "-", uid[27];
		int64_t ms = kc_int(s, "last_ms");

		if (ms > 0)
			kc_fmt_duration(ms, last, sizeof(last));
		snprintf(uid, sizeof(uid), "%s", kc_str(s, "uid"));
		if (strlen(kc_str(s, "uid")) > 26)
			memcpy(uid + 23, "...", 4);
		printf("%-10s %s%-13s%s %-9s %-26s %-16s %4" PRId64 " %4" PRId64
		       " %7s  %.*s\n",
		       kc_str(s, "name"), color(state, tty), state,
		       tty && color(state, tty)[0] ? "\033[0m" : "",
		       strcmp(state, "provisioning") == 0 ? kc_str(s, "step") : "",
		       uid[0] ? uid : "-",
		       kc_str(s, "serial")[0] ? kc_str(s, "serial") : "-",
		       kc_int(s, "ok"), kc_int(s, "failed"), last,
		       tty ? 60 : 400,
		       kc_str(s, "note")[0] ? kc_str(s, "note")
		       : err[0]	     ? err
		       : (strcmp(state, "waiting") == 0 ? "waiting for a board" : ""));
		lines++;
	}
	if (json_is_object(reg))
		registry_lines(reg, &lines);
	return lines;
}

static void progress_line(const json_t *st)
{
	json_t *b = json_object_get(st, "batch");
	char dur[32];

	if (!json_is_object(b))
		return;
	kc_fmt_duration(kc_int(b, "elapsed_ms"), dur, sizeof(dur));
	printf("[%7s] %s: %" PRId64 "%s%" PRId64 " done, %" PRId64
	       " failed, %" PRId64 " refused, %" PRId64 " in flight\n",
	       dur, kc_str(b, "lot"), kc_int(b, "done"),
	       kc_int(b, "count") ? "/" : "",
	       kc_int(b, "count") ? kc_int(b, "count") : (int64_t)0,
	       kc_int(b, "failed"), kc_int(b, "refused"),
	       kc_int(b, "in_flight"));
	fflush(stdout);
}

/* Batch outcome as an exit code. */
static int batch_rc(const json_t *st)
{
	json_t *b = json_object_get(st, "batch");

	if (!json_is_object(b))
		return KC_EXIT_FAIL;
	if (kc_int(b, "count") > 0 && kc_int(b, "done") < kc_int(b, "count"))
		return KC_EXIT_FAIL;
	return KC_EXIT_OK;
}

int kc_watch(kc_global_t *g, bool table, bool batch_started)
{
	kc_conn_t *c = NULL;
	json_t *st = NULL;
	bool tty = isatty(STDOUT_FILENO) != 0, seen_running = false;
	int rc, lines = 0;
	char last_progress[256] = "";

	kc_catch_sigint();
	rc = kc_connect(g, &c);
	if (rc != KC_EXIT_OK)
		return rc;
	for (;;) {
		json_t *b;
		bool running;
		struct timespec ts = {.tv_sec = 0,
				      .tv_nsec = KC_WATCH_MS * 1000000L};

		rc = kc_request(c, json_pack("{s:s}", "cmd", "status"), &st);
		if (rc != KC_EXIT_OK)
			break;
		b = json_object_get(st, "batch");
		running = json_is_object(b) &&
			  json_is_true(json_object_get(b, "running"));
		seen_running |= running;
		if (g->json) {
			kc_print_json(st);
			fflush(stdout);
		} else if (table && tty) {
			if (lines > 0)
				printf("\033[%dA\033[J", lines);
			lines = kc_status_render(st, tty);
			fflush(stdout);
		} else {
			char key[256];

			snprintf(key, sizeof(key), "%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64,
				 kc_int(b, "done"), kc_int(b, "failed"),
				 kc_int(b, "refused"), kc_int(b, "in_flight"));
			if (strcmp(key, last_progress) != 0 || !running) {
				if (table && !running)
					(void)kc_status_render(st, false);
				else
					progress_line(st);
				snprintf(last_progress, sizeof(last_progress),
					 "%s", key);
			}
		}
		if (!running && (seen_running || batch_started)) {
			rc = batch_rc(st);
			break;
		}
		json_decref(st);
		st = NULL;
		nanosleep(&ts, NULL);
		if (kc_interrupted()) {
			rc = KC_EXIT_INTERRUPTED;
			break;
		}
	}
	if (rc == KC_EXIT_INTERRUPTED && !g->json)
		fprintf(stderr, "kiln: interrupted (the batch keeps running; 'kiln batch stop' stops it)\n");
	json_decref(st);
	kc_close(&c);
	return rc;
}

int kc_cmd_status(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"watch", no_argument, NULL, 'w'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool watch = false;
	json_t *rsp = NULL;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "wh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'w':
			watch = true;
			break;
		case 'h':
			printf("Usage: kiln status [--watch]\n\n"
			       "Per-slot state (idle, waiting, provisioning STEP, done, failed,\n"
			       "skipped, error, disabled), the last board of each slot, the batch\n"
			       "totals (done, failed, yield, devices per hour) and registry counts.\n"
			       "  -w, --watch   refresh in place every 0.5 s until a running batch\n"
			       "                ends, or Ctrl-C\n");
			return KC_EXIT_OK;
		default:
			return KC_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		kc_err("status: unexpected argument '%s'", argv[optind]);
		return KC_EXIT_USAGE;
	}
	if (watch) {
		rc = kc_watch(g, true, false);
		return rc == KC_EXIT_FAIL ? KC_EXIT_OK : rc;
	}
	rc = kc_call(g, json_pack("{s:s}", "cmd", "status"), &rsp);
	if (rsp != NULL && g->json)
		kc_print_json(rsp);
	else if (rc == KC_EXIT_OK)
		(void)kc_status_render(rsp, isatty(STDOUT_FILENO) != 0);
	json_decref(rsp);
	return rc;
}
