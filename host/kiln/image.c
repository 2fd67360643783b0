/*
 * kiln image sign|verify|info: signed firmware images for the first-stage
 * boot (offline; host/lib/image.h, docs/secure-boot.md).
 *
 *   kiln image sign --key PEM|pkcs11:URI [--pubkey PEM] [--pkcs11-module P]
 *                   --version X.Y.Z --counter N --load-addr ADDR
 *                   [--header-size N] [--factory] IN OUT
 *   kiln image verify (--key-hash HEX | --pubkey PEM) IMAGE
 *   kiln image info IMAGE
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "host/kiln/kiln.h"
#include "host/lib/image.h"

/* A firmware file is read whole; the trailer adds < 200 bytes. */
#define FILE_MAX ((size_t)KS_IMAGE_BODY_MAX + KS_IMAGE_HDR_SIZE_MAX + \
		  KS_IMAGE_TRAILER_MAX)

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: kiln image sign --key PEM|pkcs11:URI [--pubkey PEM] [--pkcs11-module PATH]\n"
		"                       --version X.Y.Z --counter N --load-addr ADDR\n"
		"                       [--header-size N] [--factory] IN OUT\n"
		"       kiln image verify (--key-hash HEX | --pubkey PEM) IMAGE\n"
		"       kiln image info IMAGE\n\n"
		"sign: wrap the raw firmware binary IN (linked to run at ADDR, the\n"
		"address its first byte will have in flash) into a signed image OUT:\n"
		"header (version, security counter 0..%u, load address, size), IN, and\n"
		"a trailer with SHA-256, the signing public key and an ECDSA P-256\n"
		"signature. The key is a PEM private key file or a PKCS#11 URI (then\n"
		"--pubkey names its public key or certificate). --header-size (default\n"
		"0x%x) is the room before the body; ADDR - header size is where OUT\n"
		"goes in flash. --factory marks the factory (agent) image, which the\n"
		"boot runs unverified while no key hash is provisioned.\n\n"
		"verify: check IMAGE against the key the boot trusts: --key-hash is the\n"
		"64-hex-digit SHA-256 of the key (as burnt into OTP), --pubkey its PEM.\n"
		"Exit 0 if the boot would accept the signature, 1 with the reason.\n\n"
		"info: print the header and trailer of IMAGE (checks structure and hash,\n"
		"not the signer).\n",
		KS_IMAGE_COUNTER_MAX, KS_IMAGE_HDR_SIZE_DEFAULT);
}

/* Read a whole file (at most FILE_MAX bytes). */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
	struct stat sb;
	uint8_t *buf = NULL;
	size_t n = 0;
	ssize_t k;
	int fd, r = KC_EXIT_LOCAL;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		kc_err("image: %s: %s", path, strerror(errno));
		return KC_EXIT_LOCAL;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		kc_err("image: %s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)sb.st_size > FILE_MAX) {
		kc_err("image: %s: %lld bytes, more than the %zu an image may have",
		       path, (long long)sb.st_size, FILE_MAX);
		r = KC_EXIT_FAIL;
		goto out;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (buf == NULL) {
		kc_err("image: out of memory");
		goto out;
	}
	while ((k = read(fd, buf + n, (size_t)sb.st_size + 1 - n)) > 0)
		n += (size_t)k;
	if (k < 0 || n != (size_t)sb.st_size) {
		kc_err("image: %s: read error or file changed while read", path);
		goto out;
	}
	*out = buf;
	*len = n;
	buf = NULL;
	r = KC_EXIT_OK;
out:
	free(buf);
	close(fd);
	return r;
}

/* Write OUT atomically (temporary file, fsync, rename). */
static int write_file(const char *path, const uint8_t *data, size_t len)
{
	char tmp[4096];
	size_t off = 0;
	ssize_t k;
	int fd, r = KC_EXIT_LOCAL;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >=
	    (int)sizeof(tmp)) {
		kc_err("image: %s: path too long", path);
		return KC_EXIT_USAGE;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		kc_err("image: %s: %s", tmp, strerror(errno));
		return KC_EXIT_LOCAL;
	}
	while (off < len) {
		k = write(fd, data + off, len - off);
		if (k <= 0)
			break;
		off += (size_t)k;
	}
	if (off != len || fsync(fd) != 0) {
		kc_err("image: %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return KC_EXIT_LOCAL;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		kc_err("image: %s: %s", path, strerror(errno));
		unlink(tmp);
		return KC_EXIT_LOCAL;
	}
	r = KC_EXIT_OK;
	return r;
}

/* Strict u32 in decimal or 0x-hex. */
static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0' || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_hex32(const char *s, uint8_t out[32])
{
	if (s == NULL || strlen(s) != 64)
		return -1;
	for (size_t i = 0; i < 32; i++) {
		unsigned int b;

		if (sscanf(s + 2 * i, "%2x", &b) != 1 ||
		    strchr("0123456789abcdefABCDEF", s[2 * i]) == NULL ||
		    strchr("0123456789abcdefABCDEF", s[2 * i + 1]) == NULL)
			return -1;
		out[i] = (uint8_t)b;
	}
	return 0;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static int cmd_sign(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"key", required_argument, NULL, 'k'},
		{"pubkey", required_argument, NULL, 'p'},
		{"pkcs11-module", required_argument, NULL, 'm'},
		{"version", required_argument, NULL, 'v'},
		{"counter", required_argument, NULL, 'n'},
		{"load-addr", required_argument, NULL, 'a'},
		{"header-size", required_argument, NULL, 's'},
		{"factory", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *key = NULL, *pub = NULL, *module = NULL, *ver = NULL;
	const char *ctr = NULL, *addr = NULL, *hs = NULL;
	ks_image_params_t p;
	uint8_t *body = NULL, *img = NULL;
	size_t blen = 0, ilen = 0;
	uint32_t v;
	char err[512] = "";
	int opt, r = KC_EXIT_USAGE;

	memset(&p, 0, sizeof(p));
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'k':
			key = optarg;
			break;
		case 'p':
			pub = optarg;
			break;
		case 'm':
			module = optarg;
			break;
		case 'v':
			ver = optarg;
			break;
		case 'n':
			ctr = optarg;
			break;
		case 'a':
			addr = optarg;
			break;
		case 's':
			hs = optarg;
			break;
		case 'f':
			p.flags |= KS_IMAGE_FLAG_FACTORY;
			break;
		case 'h':
			usage(stdout);
			return KC_EXIT_OK;
		default:
			usage(stderr);
			return KC_EXIT_USAGE;
		}
	}
	if (optind + 2 != argc || key == NULL || ver == NULL || ctr == NULL ||
	    addr == NULL) {
		kc_err("image sign: --key, --version, --counter, --load-addr, IN and OUT are required");
		goto out;
	}
	if (ks_image_version_parse(ver, &p.ver_major, &p.ver_minor,
				   &p.ver_patch) != KS_OK) {
		kc_err("image sign: --version '%s': expected X.Y.Z (0..255.0..255.0..65535)",
		       ver);
		goto out;
	}
	if (parse_u32(ctr, KS_IMAGE_COUNTER_MAX, &p.counter) != 0) {
		kc_err("image sign: --counter '%s': expected 0..%u", ctr,
		       KS_IMAGE_COUNTER_MAX);
		goto out;
	}
	if (parse_u32(addr, UINT32_MAX, &p.load_addr) != 0) {
		kc_err("image sign: --load-addr '%s': expected an address (0x...)",
		       addr);
		goto out;
	}
	if (hs != NULL) {
		if (parse_u32(hs, KS_IMAGE_HDR_SIZE_MAX, &v) != 0 ||
		    v < KS_IMAGE_HDR_LEN || v % 4u != 0) {
			kc_err("image sign: --header-size '%s': expected a multiple of 4 in %u..%u",
			       hs, KS_IMAGE_HDR_LEN, KS_IMAGE_HDR_SIZE_MAX);
			goto out;
		}
		p.hdr_size = (uint16_t)v;
	}
	r = read_file(argv[optind], &body, &blen);
	if (r != KC_EXIT_OK)
		goto out;
	if (ks_image_sign(body, blen, &p, key, pub, module, &img, &ilen, err,
			  sizeof(err)) != KS_OK) {
		kc_err("image sign: %s", err);
		r = KC_EXIT_FAIL;
		goto out;
	}
	r = write_file(argv[optind + 1], img, ilen);
	if (r != KC_EXIT_OK)
		goto out;
	if (g->json) {
		json_t *o = json_pack("{s:s, s:I, s:s}", "image",
				      argv[optind + 1], "size",
				      (json_int_t)ilen, "version", ver);

		kc_print_json(o);
		json_decref(o);
	} else {
		printf("%s: %zu bytes, version %s, counter %u, load address 0x%08x, signed\n",
		       argv[optind + 1], ilen, ver, p.counter, p.load_addr);
	}
out:
	free(body);
	free(img);
	return r;
}

static void print_info(kc_global_t *g, const char *path,
		       const ks_image_info_t *in, const char *verdict)
{
	char kh[65], h[65];

	hex(in->key_hash, 32, kh);
	hex(in->hash, 32, h);
	if (g->json) {
		char ver[24];
		json_t *o;

		snprintf(ver, sizeof(ver), "%u.%u.%u", in->ver_major,
			 in->ver_minor, in->ver_patch);
		o = json_pack("{s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:I, s:b, s:s, s:s, s:s}",
			      "image", path, "version", ver, "header_version",
			      in->hdr_version, "header_size", in->hdr_size,
			      "flags", (json_int_t)in->flags, "image_size",
			      (json_int_t)in->image_size, "load_addr",
			      (json_int_t)in->load_addr, "counter",
			      (json_int_t)in->counter, "factory",
			      (in->flags & KS_IMAGE_FLAG_FACTORY) != 0,
			      "sha256", h, "key_hash", kh, "result", verdict);
		kc_print_json(o);
		json_decref(o);
		return;
	}
	printf("image          %s\n"
	       "version        %u.%u.%u\n"
	       "header         version %u, %u bytes\n"
	       "flags          0x%08x%s\n"
	       "image size     %u bytes\n"
	       "load address   0x%08x\n"
	       "counter        %u\n"
	       "sha256         %s\n"
	       "key hash       %s\n"
	       "signature      %zu bytes (ECDSA P-256, DER)\n"
	       "result         %s\n",
	       path, in->ver_major, in->ver_minor, in->ver_patch,
	       in->hdr_version, in->hdr_size, in->flags,
	       (in->flags & KS_IMAGE_FLAG_FACTORY) ? " (factory)" : "",
	       in->image_size, in->load_addr, in->counter, h, kh, in->sig_len,
	       verdict);
}

static int cmd_verify(kc_global_t *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"key-hash", required_argument, NULL, 'k'},
		{"pubkey", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *khex = NULL, *pub = NULL;
	uint8_t kh[32], pt[KS_IMAGE_PUBKEY_LEN], *img = NULL;
	size_t len = 0;
	ks_image_info_t info;
	ks_image_fail_t why = KS_IMAGE_OK;
	char err[512] = "";
	int opt, r = KC_EXIT_USAGE;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'k':
			khex = optarg;
			break;
		case 'p':
			pub = optarg;
			break;
		case 'h':
			usage(stdout);
			return KC_EXIT_OK;
		default:
			usage(stderr);
			return KC_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || (khex == NULL) == (pub == NULL)) {
		kc_err("image verify: one of --key-hash HEX or --pubkey PEM, and IMAGE");
		goto out;
	}
	if (khex != NULL && parse_hex32(khex, kh) != 0) {
		kc_err("image verify: --key-hash: expected 64 hex digits (SHA-256)");
		goto out;
	}
	if (pub != NULL) {
		if (ks_image_pubkey_load(pub, pt, err, sizeof(err)) != KS_OK) {
			kc_err("image verify: %s", err);
			r = KC_EXIT_LOCAL;
			goto out;
		}
		ks_image_key_hash(pt, kh);
	}
	r = read_file(argv[optind], &img, &len);
	if (r != KC_EXIT_OK)
		goto out;
	if (ks_image_verify(img, len, kh, &info, &why, err, sizeof(err)) !=
	    KS_OK) {
		if (g->json && why >= KS_IMAGE_HASH_MISMATCH)
			print_info(g, argv[optind], &info,
				   ks_image_fail_str(why));
		kc_err("image verify: %s: %s", argv[optind], err);
		r = KC_EXIT_FAIL;
		goto out;
	}
	if (g->json)
		print_info(g, argv[optind], &info, "ok");
	else
		printf("%s: ok: version %u.%u.%u, counter %u, signed by the key %s\n",
		       argv[optind], info.ver_major, info.ver_minor,
		       info.ver_patch, info.counter,
		       khex != NULL ? "hash given" : pub);
	r = KC_EXIT_OK;
out:
	free(img);
	return r;
}

static int cmd_info(kc_global_t *g, int argc, char **argv)
{
	uint8_t *img = NULL;
	size_t len = 0;
	ks_image_info_t info;
	ks_image_fail_t why = KS_IMAGE_OK;
	char err[512] = "";
	int r;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
			  strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return KC_EXIT_OK;
	}
	if (argc != 2 || argv[1][0] == '-') {
		kc_err("image info: IMAGE expected");
		return KC_EXIT_USAGE;
	}
	r = read_file(argv[1], &img, &len);
	if (r != KC_EXIT_OK)
		goto out;
	if (ks_image_parse(img, len, &info, &why, err, sizeof(err)) != KS_OK) {
		if (why == KS_IMAGE_HASH_MISMATCH)
			print_info(g, argv[1], &info, ks_image_fail_str(why));
		kc_err("image info: %s: %s", argv[1], err);
		r = KC_EXIT_FAIL;
		goto out;
	}
	print_info(g, argv[1], &info, "structure and hash ok (signer not checked)");
	r = KC_EXIT_OK;
out:
	free(img);
	return r;
}

int kc_cmd_image(kc_global_t *g, int argc, char **argv)
{
	static const kc_sub_t subs[] = {
		{"sign", cmd_sign}, {"verify", cmd_verify}, {"info", cmd_info},
	};

	return kc_subcommand(g, argc, argv, "image", subs,
			     sizeof(subs) / sizeof(subs[0]), usage);
}
