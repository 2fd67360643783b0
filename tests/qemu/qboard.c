/* tests/qemu: QEMU board processes (see qboard.h). */
#include "tests/qemu/qboard.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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

#include "protocol/le.h"

static char elf_path[PATH_MAX];
static char script_path[PATH_MAX];

double kq_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool on_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	while (path != NULL && *path != '\0') {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
		if (access(buf, X_OK) == 0)
			return true;
		path = end ? end + 1 : NULL;
	}
	return false;
}

int kq_setup(const char *board_script, const char *default_elf)
{
	const char *elf = getenv("KILN_QEMU_ELF");
	const char *scr = getenv("KILN_QEMU_BOARD");

	signal(SIGPIPE, SIG_IGN);
	if (scr == NULL || scr[0] == '\0')
		scr = board_script;
	if (elf == NULL || elf[0] == '\0')
		elf = default_elf;
	if (elf == NULL || elf[0] == '\0' || access(elf, R_OK) != 0) {
		printf("SKIP: firmware not found (KILN_QEMU_ELF=%s); build it "
		       "with scripts/test, or: meson setup build-qemu "
		       "--cross-file scripts/cross/arm-none-eabi.txt "
		       "-Dboard=qemu-mps2 && ninja -C build-qemu\n",
		       elf ? elf : "(unset)");
		return 77;
	}
	if (!on_path("qemu-system-arm")) {
		printf("SKIP: qemu-system-arm not installed\n");
		return 77;
	}
	if (scr == NULL || access(scr, X_OK) != 0) {
		printf("FAIL: scripts/qemu-board not found (%s)\n",
		       scr ? scr : "(unset)");
		return 1;
	}
	snprintf(elf_path, sizeof(elf_path), "%s", elf);
	snprintf(script_path, sizeof(script_path), "%s", scr);
	return 0;
}

const char *kq_elf(void)
{
	return elf_path;
}

static int try_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc;
}

int kq_board_start(kq_board_t *b, const char *image, const char *sock,
		   const char *uid_hex, const char *log)
{
	char *argv[12];
	int argc = 0, status;
	double deadline;
	pid_t pid;

	memset(b, 0, sizeof(*b));
	if (strlen(sock) >= sizeof(b->sock))
		return -1;
	snprintf(b->image, sizeof(b->image), "%s", image);
	snprintf(b->sock, sizeof(b->sock), "%s", sock);
	snprintf(b->spec, sizeof(b->spec), "unix:%s", sock);
	snprintf(b->log, sizeof(b->log), "%s", log);
	argv[argc++] = script_path;
	argv[argc++] = "--image";
	argv[argc++] = b->image;
	argv[argc++] = "--socket";
	argv[argc++] = b->sock;
	argv[argc++] = "--elf";
	argv[argc++] = elf_path;
	if (uid_hex != NULL) {
		argv[argc++] = "--uid";
		argv[argc++] = (char *)uid_hex;
	}
	argv[argc] = NULL;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0644);

		/* a crashed test leaves no QEMU behind */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	b->pid = pid;
	deadline = kq_now_ms() + 10000;
	while (kq_now_ms() < deadline) {
		struct timespec ts = {0, 20 * 1000000L};

		if (try_connect(b->sock) == 0)
			return 0;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			b->pid = 0;
			fprintf(stderr, "qemu-board exited early (status %d); "
					"see %s\n", status, log);
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "qemu-board: no socket %s after 10 s\n", b->sock);
	kq_board_kill(b);
	return -1;
}

void kq_board_kill(kq_board_t *b)
{
	if (b->pid > 0) {
		kill(b->pid, SIGKILL);
		while (waitpid(b->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	b->pid = 0;
	/* a killed QEMU leaves its socket file: the board is unplugged */
	if (b->sock[0] != '\0')
		unlink(b->sock);
}

int kq_diag_read(const char *image, uint32_t d[KQ_DIAG_WORDS])
{
	uint8_t buf[4 * KQ_DIAG_WORDS];
	int fd = open(image, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pread(fd, buf, sizeof(buf), KQ_DIAG_OFF);
	close(fd);
	if (n != (ssize_t)sizeof(buf))
		return -1;
	for (unsigned i = 0; i < KQ_DIAG_WORDS; i++)
		d[i] = kp_get_le32(buf + 4 * i);
	return d[KQ_DIAG_W_MAGIC] == KQ_DIAG_MAGIC &&
			       d[KQ_DIAG_W_VERSION] == KQ_DIAG_VERSION
		       ? 0
		       : -1;
}
