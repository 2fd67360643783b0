/*
 * kiln station library: signed firmware images (format in image.h and
 * docs/secure-boot.md).
 */
#include "host/lib/image.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "host/lib/p11.h"

#define PEM_FILE_MAX (256u * 1024u)

/* DER SubjectPublicKeyInfo prefix of an uncompressed P-256 point. */
static const uint8_t p256_spki_prefix[] = {
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
	0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
	0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
	       ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

const char *ks_image_fail_str(ks_image_fail_t why)
{
	switch (why) {
	case KS_IMAGE_OK:
		return "ok";
	case KS_IMAGE_BAD_HEADER:
		return "bad header";
	case KS_IMAGE_BAD_TRAILER:
		return "bad trailer";
	case KS_IMAGE_HASH_MISMATCH:
		return "hash mismatch";
	case KS_IMAGE_WRONG_KEY:
		return "wrong key";
	case KS_IMAGE_BAD_SIGNATURE:
		return "bad signature";
	}
	return "unknown";
}

static int parse_uint(const char **s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	const char *p = *s;

	if (*p < '0' || *p > '9')
		return -1;
	/* no leading zeros beyond a single 0 */
	if (p[0] == '0' && p[1] >= '0' && p[1] <= '9')
		return -1;
	while (*p >= '0' && *p <= '9') {
		v = v * 10u + (unsigned long)(*p - '0');
		if (v > max)
			return -1;
		p++;
	}
	*s = p;
	*out = v;
	return 0;
}

ks_err_t ks_image_version_parse(const char *s, uint8_t *major, uint8_t *minor,
				uint16_t *patch)
{
	unsigned long a, b, c;

	if (s == NULL || parse_uint(&s, 255, &a) != 0 || *s++ != '.' ||
	    parse_uint(&s, 255, &b) != 0 || *s++ != '.' ||
	    parse_uint(&s, 65535, &c) != 0 || *s != '\0')
		return KS_ERR_ARG;
	*major = (uint8_t)a;
	*minor = (uint8_t)b;
	*patch = (uint16_t)c;
	return KS_OK;
}

/* Read a whole (small) file; the caller wipes and frees *buf. */
static ks_err_t read_small_file(const char *path, uint8_t **buf, size_t *len,
				char *err, size_t errlen)
{
	FILE *f = NULL;
	uint8_t *b = NULL;
	size_t n;
	ks_err_t r = KS_ERR_IO;

	*buf = NULL;
	*len = 0;
	f = fopen(path, "rb");
	if (f == NULL) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	b = OPENSSL_malloc(PEM_FILE_MAX + 1);
	if (b == NULL) {
		r = KS_ERR_NOMEM;
		goto out;
	}
	n = fread(b, 1, PEM_FILE_MAX + 1, f);
	if (ferror(f)) {
		set_err(err, errlen, "%s: read error", path);
		goto out;
	}
	if (n > PEM_FILE_MAX) {
		set_err(err, errlen, "%s: larger than %u bytes: not a key file",
			path, PEM_FILE_MAX);
		r = KS_ERR_ARG;
		goto out;
	}
	*buf = b;
	*len = n;
	b = NULL;
	r = KS_OK;
out:
	if (b != NULL) {
		OPENSSL_cleanse(b, PEM_FILE_MAX + 1);
		OPENSSL_free(b);
	}
	if (f != NULL)
		fclose(f);
	return r;
}

static void free_small_file(uint8_t *buf)
{
	if (buf != NULL) {
		OPENSSL_cleanse(buf, PEM_FILE_MAX + 1);
		OPENSSL_free(buf);
	}
}

/* The uncompressed point of an EC P-256 key, or KS_ERR_POLICY. */
static ks_err_t p256_point(EVP_PKEY *pk, uint8_t pub[KS_IMAGE_PUBKEY_LEN],
			   const char *what, char *err, size_t errlen)
{
	char group[32] = "";
	size_t n = 0;

	if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC ||
	    EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) != 1 ||
	    strcmp(group, "prime256v1") != 0) {
		set_err(err, errlen,
			"%s: not an EC P-256 key (%s%s%s); firmware signing keys are P-256",
			what, EVP_PKEY_get0_type_name(pk) != NULL ?
				      EVP_PKEY_get0_type_name(pk) : "?",
			group[0] != '\0' ? " " : "", group);
		return KS_ERR_POLICY;
	}
	if (EVP_PKEY_get_octet_string_param(pk,
					    "encoded-pub-key", pub,
					    KS_IMAGE_PUBKEY_LEN, &n) != 1 ||
	    n != KS_IMAGE_PUBKEY_LEN || pub[0] != 0x04) {
		/* a compressed point: ask for the uncompressed form */
		set_err(err, errlen, "%s: cannot get the uncompressed point",
			what);
		return KS_ERR_CRYPTO;
	}
	return KS_OK;
}

ks_err_t ks_image_pubkey_load(const char *path,
			      uint8_t pub[KS_IMAGE_PUBKEY_LEN], char *err,
			      size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len;
	BIO *bio = NULL;
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	const unsigned char *p;
	long dlen = 0;
	EVP_PKEY *pk = NULL;
	X509 *x = NULL;
	ks_err_t r;

	if (path == NULL || pub == NULL)
		return KS_ERR_ARG;
	r = read_small_file(path, &buf, &len, err, errlen);
	if (r != KS_OK)
		goto out;
	r = KS_ERR_NOMEM;
	bio = BIO_new_mem_buf(buf, (int)len);
	if (bio == NULL)
		goto out;
	r = KS_ERR_ARG;
	if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
		set_err(err, errlen, "%s: no PEM block", path);
		goto out;
	}
	p = data;
	if (strcmp(name, "PUBLIC KEY") == 0) {
		pk = d2i_PUBKEY(NULL, &p, dlen);
	} else if (strcmp(name, "CERTIFICATE") == 0) {
		x = d2i_X509(NULL, &p, dlen);
		if (x != NULL)
			pk = X509_get_pubkey(x);
	} else if (strstr(name, "PRIVATE KEY") != NULL) {
		set_err(err, errlen,
			"%s: is a private key; give the public key (openssl pkey -in KEY -pubout) or a certificate",
			path);
		goto out;
	} else {
		set_err(err, errlen,
			"%s: PEM '%s' is neither a PUBLIC KEY nor a CERTIFICATE",
			path, name);
		goto out;
	}
	if (pk == NULL || p != data + dlen) {
		set_err(err, errlen, "%s: malformed %s", path, name);
		goto out;
	}
	r = p256_point(pk, pub, path, err, errlen);
out:
	EVP_PKEY_free(pk);
	X509_free(x);
	OPENSSL_free(name);
	OPENSSL_free(header);
	if (data != NULL) {
		OPENSSL_cleanse(data, (size_t)dlen);
		OPENSSL_free(data);
	}
	BIO_free(bio);
	free_small_file(buf);
	return r;
}

void ks_image_key_hash(const uint8_t pub[KS_IMAGE_PUBKEY_LEN],
		       uint8_t hash[32])
{
	unsigned int n = 32;

	if (EVP_Digest(pub, KS_IMAGE_PUBKEY_LEN, hash, &n, EVP_sha256(),
		       NULL) != 1)
		memset(hash, 0, 32); /* never matches a real key hash */
}

/* An EVP_PKEY for a 65-byte P-256 point (via its SPKI encoding). */
static EVP_PKEY *pkey_from_point(const uint8_t pub[KS_IMAGE_PUBKEY_LEN])
{
	uint8_t der[sizeof(p256_spki_prefix) + KS_IMAGE_PUBKEY_LEN];
	const unsigned char *p = der;

	memcpy(der, p256_spki_prefix, sizeof(p256_spki_prefix));
	memcpy(der + sizeof(p256_spki_prefix), pub, KS_IMAGE_PUBKEY_LEN);
	return d2i_PUBKEY(NULL, &p, (long)sizeof(der));
}

static int verify_digest(const uint8_t pub[KS_IMAGE_PUBKEY_LEN],
			 const uint8_t digest[32], const uint8_t *sig,
			 size_t siglen)
{
	EVP_PKEY *pk = pkey_from_point(pub);
	EVP_PKEY_CTX *ctx = NULL;
	int ok = 0;

	if (pk == NULL)
		goto out;
	ctx = EVP_PKEY_CTX_new(pk, NULL);
	if (ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
	    EVP_PKEY_verify(ctx, sig, siglen, digest, 32) == 1)
		ok = 1;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ok;
}

/* Load an EC P-256 private key from a PEM file, wiping the file bytes. */
static ks_err_t load_private(const char *path, EVP_PKEY **out, char *err,
			     size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len;
	BIO *bio = NULL;
	uint8_t pub[KS_IMAGE_PUBKEY_LEN];
	ks_err_t r;

	*out = NULL;
	r = read_small_file(path, &buf, &len, err, errlen);
	if (r != KS_OK)
		goto out;
	r = KS_ERR_NOMEM;
	bio = BIO_new_mem_buf(buf, (int)len);
	if (bio == NULL)
		goto out;
	*out = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (*out == NULL) {
		set_err(err, errlen,
			"%s: no unencrypted PEM private key (PRIVATE KEY or EC PRIVATE KEY)",
			path);
		r = KS_ERR_ARG;
		goto out;
	}
	r = p256_point(*out, pub, path, err, errlen);
	if (r != KS_OK) {
		EVP_PKEY_free(*out);
		*out = NULL;
	}
out:
	BIO_free(bio);
	free_small_file(buf);
	return r;
}

/* Header bytes for @p and @len into hdr[0..hdr_size). */
static void header_build(uint8_t *hdr, uint16_t hdr_size,
			 const ks_image_params_t *p, uint32_t len)
{
	memset(hdr, 0, hdr_size);
	put32(hdr + 0, KS_IMAGE_MAGIC);
	put16(hdr + 4, KS_IMAGE_HDR_VERSION);
	put16(hdr + 6, hdr_size);
	put32(hdr + 8, p->flags);
	put32(hdr + 12, len);
	put32(hdr + 16, p->load_addr);
	put32(hdr + 20, p->counter);
	hdr[24] = p->ver_major;
	hdr[25] = p->ver_minor;
	put16(hdr + 26, p->ver_patch);
}

static uint8_t *put_tlv(uint8_t *q, uint16_t type, const uint8_t *v,
			size_t n)
{
	put16(q, type);
	put16(q + 2, (uint16_t)n);
	memcpy(q + 4, v, n);
	return q + 4 + n;
}

ks_err_t ks_image_sign(const uint8_t *body, size_t len,
		       const ks_image_params_t *p, const char *key,
		       const char *pubkey_path, const char *pkcs11_module,
		       uint8_t **out, size_t *outlen, char *err,
		       size_t errlen)
{
	EVP_PKEY *priv = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	ks_p11_key_t *tok = NULL;
	uint8_t pub[KS_IMAGE_PUBKEY_LEN], pub2[KS_IMAGE_PUBKEY_LEN];
	uint8_t digest[32], sig[KS_IMAGE_SIG_MAX + 8], *img = NULL, *q;
	size_t siglen = sizeof(sig), total;
	uint16_t hdr_size;
	unsigned int dn = 32;
	ks_err_t r = KS_ERR_ARG;

	if (out != NULL)
		*out = NULL;
	if (body == NULL || p == NULL || key == NULL || out == NULL ||
	    outlen == NULL) {
		set_err(err, errlen, "internal: NULL argument");
		goto out;
	}
	hdr_size = p->hdr_size != 0 ? p->hdr_size
				    : (uint16_t)KS_IMAGE_HDR_SIZE_DEFAULT;
	if (hdr_size < KS_IMAGE_HDR_LEN || hdr_size > KS_IMAGE_HDR_SIZE_MAX ||
	    hdr_size % 4u != 0) {
		set_err(err, errlen,
			"header size %u: expected a multiple of 4 in %u..%u",
			hdr_size, KS_IMAGE_HDR_LEN, KS_IMAGE_HDR_SIZE_MAX);
		goto out;
	}
	if (len == 0 || len > KS_IMAGE_BODY_MAX) {
		set_err(err, errlen, "image of %zu bytes: expected 1..%u", len,
			KS_IMAGE_BODY_MAX);
		goto out;
	}
	if ((p->flags & ~KS_IMAGE_FLAGS_KNOWN) != 0) {
		set_err(err, errlen, "unknown flags 0x%08x", p->flags);
		goto out;
	}
	if (p->counter > KS_IMAGE_COUNTER_MAX) {
		set_err(err, errlen,
			"security counter %u: the OTP counter holds 0..%u",
			p->counter, KS_IMAGE_COUNTER_MAX);
		goto out;
	}
	if ((uint64_t)p->load_addr + len > 0x100000000ull) {
		set_err(err, errlen,
			"load address 0x%08x + %zu bytes wraps past 4 GiB",
			p->load_addr, len);
		goto out;
	}

	/* the key: a token (public key from pubkey_path) or a PEM file */
	if (ks_p11_is_uri(key)) {
		if (pubkey_path == NULL) {
			set_err(err, errlen,
				"%s: a token key needs --pubkey PEM (its public key or certificate)",
				key);
			goto out;
		}
		r = ks_image_pubkey_load(pubkey_path, pub, err, errlen);
		if (r != KS_OK)
			goto out;
		r = ks_p11_key_open(key, pkcs11_module, &tok, err, errlen);
		if (r != KS_OK)
			goto out;
	} else {
		r = load_private(key, &priv, err, errlen);
		if (r != KS_OK)
			goto out;
		r = p256_point(priv, pub, key, err, errlen);
		if (r != KS_OK)
			goto out;
		if (pubkey_path != NULL) {
			r = ks_image_pubkey_load(pubkey_path, pub2, err,
						 errlen);
			if (r != KS_OK)
				goto out;
			if (memcmp(pub, pub2, sizeof(pub)) != 0) {
				set_err(err, errlen,
					"%s does not match the key %s",
					pubkey_path, key);
				r = KS_ERR_VERIFY;
				goto out;
			}
		}
	}

	total = hdr_size + len + KS_IMAGE_TRAILER_MAX;
	r = KS_ERR_NOMEM;
	img = malloc(total);
	if (img == NULL)
		goto out;
	header_build(img, hdr_size, p, (uint32_t)len);
	memcpy(img + hdr_size, body, len);
	r = KS_ERR_CRYPTO;
	if (EVP_Digest(img, hdr_size + len, digest, &dn, EVP_sha256(), NULL) !=
	    1) {
		set_err(err, errlen, "SHA-256 failed");
		goto out;
	}
	if (tok != NULL) {
		r = ks_p11_sign_digest(tok, digest, sig, &siglen);
		if (r != KS_OK) {
			set_err(err, errlen, "%s: signing in the token failed: %s",
				key, ks_strerror((int)r));
			goto out;
		}
	} else {
		ctx = EVP_PKEY_CTX_new(priv, NULL);
		if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
		    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1 ||
		    EVP_PKEY_sign(ctx, sig, &siglen, digest, 32) != 1) {
			set_err(err, errlen, "%s: ECDSA signing failed", key);
			goto out;
		}
	}
	if (siglen < KS_IMAGE_SIG_MIN || siglen > KS_IMAGE_SIG_MAX ||
	    !verify_digest(pub, digest, sig, siglen)) {
		set_err(err, errlen,
			"the signature made with %s does not verify with its public key%s",
			key, tok != NULL ? " (is --pubkey the token key's?)" : "");
		r = KS_ERR_VERIFY;
		goto out;
	}
	q = img + hdr_size + len;
	put16(q, KS_IMAGE_TRAILER_MAGIC);
	put16(q + 2, (uint16_t)(4u + 4u + 32u + 4u + KS_IMAGE_PUBKEY_LEN + 4u +
				siglen));
	q = put_tlv(q + 4, KS_IMAGE_TLV_SHA256, digest, 32);
	q = put_tlv(q, KS_IMAGE_TLV_PUBKEY, pub, KS_IMAGE_PUBKEY_LEN);
	q = put_tlv(q, KS_IMAGE_TLV_ECDSA_SIG, sig, siglen);
	*outlen = (size_t)(q - img);
	*out = img;
	img = NULL;
	r = KS_OK;
out:
	free(img);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(priv); /* OpenSSL clears the private scalar */
	ks_p11_key_free(&tok);
	return r;
}

static ks_err_t fail(ks_image_fail_t *why, ks_image_fail_t w, char *err,
		     size_t errlen, const char *msg)
{
	*why = w;
	set_err(err, errlen, "%s: %s", ks_image_fail_str(w), msg);
	return KS_ERR_VERIFY;
}

/* One TLV of the expected type at the cursor; the length comes from the
 * image: checked against the bytes left before it is used. */
static int take_tlv(const uint8_t **cur, const uint8_t *end, uint16_t type,
		    size_t min, size_t max, const uint8_t **v, size_t *n)
{
	const uint8_t *p = *cur;
	uint16_t t, l;

	if ((size_t)(end - p) < 4)
		return -1;
	t = get16(p);
	l = get16(p + 2);
	p += 4;
	if (t != type || l < min || l > max || l > (size_t)(end - p))
		return -1;
	*v = p;
	*n = l;
	*cur = p + l;
	return 0;
}

ks_err_t ks_image_parse(const uint8_t *img, size_t len, ks_image_info_t *info,
			ks_image_fail_t *why, char *err, size_t errlen)
{
	const uint8_t *cur, *end, *v;
	size_t n, rest;
	uint8_t d[32];
	unsigned int dn = 32;
	uint16_t tot;

	memset(info, 0, sizeof(*info));
	*why = KS_IMAGE_OK;
	if (img == NULL || len < KS_IMAGE_HDR_LEN)
		return fail(why, KS_IMAGE_BAD_HEADER, err, errlen,
			    "shorter than the 32-byte header");
	if (get32(img) != KS_IMAGE_MAGIC)
		return fail(why, KS_IMAGE_BAD_HEADER, err, errlen,
			    "wrong magic (not a kiln image)");
	info->hdr_version = get16(img + 4);
	info->hdr_size = get16(img + 6);
	info->flags = get32(img + 8);
	info->image_size = get32(img + 12);
	info->load_addr = get32(img + 16);
	info->counter = get32(img + 20);
	info->ver_major = img[24];
	info->ver_minor = img[25];
	info->ver_patch = get16(img + 26);
	if (info->hdr_version != KS_IMAGE_HDR_VERSION)
		return fail(why, KS_IMAGE_BAD_HEADER, err, errlen,
			    "unknown header version");
	if (info->hdr_size < KS_IMAGE_HDR_LEN ||
	    info->hdr_size > KS_IMAGE_HDR_SIZE_MAX || info->hdr_size % 4u != 0)
		return fail(why, KS_IMAGE_BAD_HEADER, err, errlen,
			    "header size out of range");
	if ((info->flags & ~KS_IMAGE_FLAGS_KNOWN) != 0)
		return fail(why, KS_IMAGE_BAD_HEADER, err, errlen,
			    "unknown flags");
	if (get32(img + 28) != 0)
		return fail(why, KS_IMAGE_BAD_HEADER, err, errlen,
			    "reserved word not zero");
	if (info->image_size == 0 || info->image_size > KS_IMAGE_BODY_MAX ||
	    info->counter > KS_IMAGE_COUNTER_MAX ||
	    (uint64_t)info->load_addr + info->image_size > 0x100000000ull)
		return fail(why, KS_IMAGE_BAD_HEADER, err, errlen,
			    "image size, load address or counter out of range");
	/* header and body inside the file: no addition that can wrap */
	if (info->hdr_size > len ||
	    info->image_size > len - info->hdr_size)
		return fail(why, KS_IMAGE_BAD_HEADER, err, errlen,
			    "header + image size exceed the file (truncated?)");
	for (size_t i = KS_IMAGE_HDR_LEN; i < info->hdr_size; i++)
		if (img[i] != 0)
			return fail(why, KS_IMAGE_BAD_HEADER, err, errlen,
				    "header padding not zero");

	cur = img + info->hdr_size + info->image_size;
	end = img + len;
	rest = (size_t)(end - cur);
	if (rest < 4 || get16(cur) != KS_IMAGE_TRAILER_MAGIC)
		return fail(why, KS_IMAGE_BAD_TRAILER, err, errlen,
			    "no trailer after the image");
	tot = get16(cur + 2);
	if (tot != rest || tot > KS_IMAGE_TRAILER_MAX)
		return fail(why, KS_IMAGE_BAD_TRAILER, err, errlen,
			    "trailer length does not match the file");
	info->trailer_len = tot;
	cur += 4;
	if (take_tlv(&cur, end, KS_IMAGE_TLV_SHA256, 32, 32, &v, &n) != 0)
		return fail(why, KS_IMAGE_BAD_TRAILER, err, errlen,
			    "SHA-256 TLV missing or malformed");
	memcpy(info->hash, v, 32);
	if (take_tlv(&cur, end, KS_IMAGE_TLV_PUBKEY, KS_IMAGE_PUBKEY_LEN,
		     KS_IMAGE_PUBKEY_LEN, &v, &n) != 0 ||
	    v[0] != 0x04)
		return fail(why, KS_IMAGE_BAD_TRAILER, err, errlen,
			    "public key TLV missing or malformed");
	memcpy(info->pubkey, v, KS_IMAGE_PUBKEY_LEN);
	ks_image_key_hash(info->pubkey, info->key_hash);
	if (take_tlv(&cur, end, KS_IMAGE_TLV_ECDSA_SIG, KS_IMAGE_SIG_MIN,
		     KS_IMAGE_SIG_MAX, &v, &n) != 0)
		return fail(why, KS_IMAGE_BAD_TRAILER, err, errlen,
			    "signature TLV missing or malformed");
	memcpy(info->sig, v, n);
	info->sig_len = n;
	if (cur != end)
		return fail(why, KS_IMAGE_BAD_TRAILER, err, errlen,
			    "bytes after the signature TLV");

	if (EVP_Digest(img, info->hdr_size + (size_t)info->image_size, d, &dn,
		       EVP_sha256(), NULL) != 1 ||
	    memcmp(d, info->hash, 32) != 0)
		return fail(why, KS_IMAGE_HASH_MISMATCH, err, errlen,
			    "SHA-256 of header + image differs from the trailer's");
	return KS_OK;
}

ks_err_t ks_image_verify(const uint8_t *img, size_t len,
			 const uint8_t key_hash[32], ks_image_info_t *info,
			 ks_image_fail_t *why, char *err, size_t errlen)
{
	ks_err_t r;

	r = ks_image_parse(img, len, info, why, err, errlen);
	if (r != KS_OK)
		return r;
	if (CRYPTO_memcmp(info->key_hash, key_hash, 32) != 0)
		return fail(why, KS_IMAGE_WRONG_KEY, err, errlen,
			    "the image is signed by another key");
	if (!verify_digest(info->pubkey, info->hash, info->sig, info->sig_len))
		return fail(why, KS_IMAGE_BAD_SIGNATURE, err, errlen,
			    "ECDSA signature does not verify");
	return KS_OK;
}
