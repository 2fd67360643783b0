/*
 * Test support: child processes and their output (see proc_util.h).
 */
#include "tests/integration/proc_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host/lib/ca.h"

int tp_free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

pid_t tp_spawn(char *const argv[], const char *out)
{
	pid_t pid = fork();

	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (in < 0 || fd < 0 || dup2(in, 0) < 0 || dup2(fd, 1) < 0 ||
		    dup2(fd, 2) < 0)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

int tp_reap(pid_t pid, int ms)
{
	int st = 0;

	for (int waited = 0; waited < ms; waited += 20) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (r < 0)
			return -1;
		usleep(20000);
	}
	kill(pid, SIGKILL);
	(void)waitpid(pid, &st, 0);
	return -1;
}

char *tp_slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = calloc(1, 65536);
	size_t n = 0;

	if (buf == NULL) {
		fprintf(stderr, "tp_slurp: out of memory reading %s\n", path);
		abort();
	}
	if (f != NULL) {
		n = fread(buf, 1, 65535, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

int tp_wait_for(const char *path, const char *needle, int ms)
{
	for (int waited = 0; waited < ms; waited += 20) {
		char *s = tp_slurp(path);
		int found = strstr(s, needle) != NULL;

		free(s);
		if (found)
			return 1;
		usleep(20000);
	}
	return 0;
}

int tp_server_cert(const char *openssl_exe, const char *dir)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd),
		 "'%s' req -new -newkey ec -pkeyopt "
		 "ec_paramgen_curve:P-256 -nodes -keyout %s/srv.key "
		 "-subj /CN=localhost -addext subjectAltName=DNS:localhost "
		 "-out %s/srv.csr 2>/dev/null && "
		 "'%s' x509 -req -in %s/srv.csr -CA %s/%s -CAkey %s/%s "
		 "-set_serial 0x4b494c4e -days 2 -copy_extensions copy "
		 "-out %s/srv.pem 2>/dev/null",
		 openssl_exe, dir, dir, openssl_exe, dir, dir,
		 KS_CA_FILE_CERT, dir, KS_CA_FILE_KEY, dir);
	return system(cmd) == 0 ? 0 : -1;
}
