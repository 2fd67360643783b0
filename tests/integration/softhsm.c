/*
 * Test support: a private SoftHSM2 token (see softhsm.h).
 */
#include "tests/integration/softhsm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *th_softhsm_module(void)
{
	static const char *const paths[] = {
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		if (access(paths[i], R_OK) == 0)
			return paths[i];
	}
	return NULL;
}

int th_softhsm_init(th_softhsm_t *h, const char *dir)
{
	char tokens[PATH_MAX + 16];
	FILE *fp;
	pid_t pid;
	int st, fd;

	memset(h, 0, sizeof(*h));
	h->module = th_softhsm_module();
	if (h->module == NULL) {
		fprintf(stderr, "SoftHSM2 is not installed (apt-get install softhsm2; scripts/deps)\n");
		return -1;
	}
	snprintf(h->dir, sizeof(h->dir), "%s", dir);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		perror(dir);
		return -1;
	}
	snprintf(tokens, sizeof(tokens), "%s/tokens", dir);
	if (mkdir(tokens, 0700) != 0 && errno != EEXIST) {
		perror(tokens);
		return -1;
	}
	snprintf(h->conf, sizeof(h->conf), "%s/softhsm2.conf", dir);
	fp = fopen(h->conf, "w");
	if (fp == NULL)
		return -1;
	fprintf(fp, "directories.tokendir = %s\nobjectstore.backend = file\n"
		    "log.level = ERROR\nslots.removable = false\n", tokens);
	if (fclose(fp) != 0)
		return -1;
	setenv("SOFTHSM2_CONF", h->conf, 1);
	snprintf(h->pin_file, sizeof(h->pin_file), "%s/user.pin", dir);
	fd = open(h->pin_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, TH_PIN "\n", strlen(TH_PIN) + 1) < 0 ||
	    close(fd) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 1);
		execlp("softhsm2-util", "softhsm2-util", "--init-token",
		       "--free", "--label", TH_TOKEN, "--pin", TH_PIN,
		       "--so-pin", TH_SO_PIN, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		fprintf(stderr, "softhsm2-util --init-token failed\n");
		return -1;
	}
	return 0;
}

void th_softhsm_uri(const th_softhsm_t *h, const char *label, char *out,
		    size_t outlen)
{
	snprintf(out, outlen, "pkcs11:token=%s;object=%s?pin-source=file:%s",
		 TH_TOKEN, label, h->pin_file);
}
