/*
 * Replay runner for the fuzz targets (in the spirit of systemd's
 * src/fuzz/fuzz-main.c): feeds every file named on the command line, or
 * every file inside a named directory, to LLVMFuzzerTestOneInput. Used by
 * the normal (gcc) test run so crashers kept in tests/fuzz/corpus/ stay
 * fixed; a crash or abort fails the test.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, r;
	int rc = -1;

	if (f == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	do {
		if (cap - len < 4096) {
			uint8_t *nb = realloc(buf, cap + 65536);

			if (nb == NULL)
				goto out;
			buf = nb;
			cap += 65536;
		}
		r = fread(buf + len, 1, cap - len, f);
		len += r;
	} while (r > 0);
	if (ferror(f))
		goto out;
	/* an exact-size copy, so ASan sees reads past the input */
	{
		uint8_t *exact = malloc(len > 0 ? len : 1);

		if (exact == NULL)
			goto out;
		memcpy(exact, buf, len);
		(void)LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	rc = 0;
out:
	free(buf);
	fclose(f);
	return rc;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	unsigned files = 0, errors = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		struct dirent *de;
		DIR *d;
		char **names = NULL;
		size_t n = 0;

		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			errors++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			errors += run_file(argv[i]) != 0;
			files++;
			continue;
		}
		d = opendir(argv[i]);
		if (d == NULL) {
			errors++;
			continue;
		}
		while ((de = readdir(d)) != NULL) {
			char **nn;

			if (de->d_name[0] == '.')
				continue;
			nn = realloc(names, (n + 1) * sizeof(*names));
			if (nn == NULL)
				break;
			names = nn;
			if (asprintf(&names[n], "%s/%s", argv[i], de->d_name) < 0)
				break;
			n++;
		}
		closedir(d);
		qsort(names, n, sizeof(*names), cmp); /* stable order */
		for (size_t k = 0; k < n; k++) {
			errors += run_file(names[k]) != 0;
			files++;
			free(names[k]);
		}
		free(names);
	}
	printf("%u passed, %u failed\n", files - errors, errors);
	return errors == 0 && files > 0 ? 0 : 1;
}
