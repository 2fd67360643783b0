#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "host/lib/log.h"
#include "protocol/frame.h"
#include "tests/integration/itest.h"

#define IT_LOCK_ALL (KP_LOCK_OTP | KP_LOCK_FLASH | KP_LOCK_DEBUG)

const char *it_sim_path(int argc, char **argv)
{
	if (argc > 1 && argv[1][0] != '\0')
		return argv[1];
	return getenv("KILN_AGENT_SIM");
}

int it_env_init(it_env_t *e, const char *sim_exe)
{
	memset(e, 0, sizeof(*e));
	e->sim_exe = sim_exe;
	snprintf(e->dir, sizeof(e->dir), "/tmp/kiln-it-XXXXXX");
	if (mkdtemp(e->dir) == NULL)
		return -1;
	snprintf(e->sock, sizeof(e->sock), "%s/agent.sock", e->dir);
	tu_ca_init(&e->ca, "kiln integration test CA");
	e->ca_der = tu_ca_cert_der(&e->ca, &e->ca_der_len);
	e->serial_no = 1;
	return 0;
}

void it_env_free(it_env_t *e)
{
	char cmd[128];

	tu_ca_free(&e->ca);
	free(e->ca_der);
	/* the directory holds only our images and socket */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	if (strncmp(e->dir, "/tmp/kiln-it-", 13) == 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", e->dir);
}

void it_fresh_image(it_env_t *e, const char *tag)
{
	static unsigned n;

	snprintf(e->image, sizeof(e->image), "%s/%s-%u.img", e->dir, tag, n++);
	unlink(e->image);
	e->ntried = 0;
}

void it_violation(it_env_t *e, const char *fmt, ...)
{
	va_list ap;

	e->violations++;
	fprintf(stderr, "VIOLATION (%s): ", e->image);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

bool it_check(it_env_t *e, bool cond, const char *what)
{
	e->checks++;
	if (!cond)
		it_violation(e, "%s", what);
	return cond;
}

int it_start(it_env_t *e, bool use_unix, unsigned long cut_after,
	     int timeout_ms, ks_simproc_t **sp, ks_agent_t **a)
{
	ks_simproc_opts_t so = {
		.exe = e->sim_exe,
		.image = e->image,
		.unix_path = use_unix ? e->sock : NULL,
		.cut_after = cut_after,
		.quiet = true,
	};
	ks_agent_opts_t ao = {.timeout_ms = timeout_ms, .retries = 3};

	*sp = NULL;
	*a = NULL;
	/* Other test programs on this machine may run simulators and
	 * stations too; one that reopens a stale /dev/pts/N path can hold
	 * the number our simulator just got (flock says BUSY). Then start
	 * again on a new pty rather than share it. */
	for (int attempt = 0; attempt < 3; attempt++) {
		ks_err_t r;

		if (use_unix)
			unlink(e->sock);
		if (ks_simproc_start(&so, sp) != KS_OK)
			return -1;
		r = ks_agent_open(ks_simproc_spec(*sp), &ao, a);
		if (r == KS_OK)
			return 0;
		(void)ks_simproc_stop(sp, NULL);
		if (r != KS_ERR_BUSY)
			break;
		printf("# port held by another process, restarting the "
		       "simulator on a new one\n");
	}
	return -1;
}

static void uid_hex(const ks_agent_hello_t *h, char *out)
{
	for (size_t i = 0; i < h->uid_len; i++)
		sprintf(out + 2 * i, "%02x", h->uid[i]);
	out[2 * h->uid_len] = '\0';
}

static bool tried(const it_env_t *e, const uint8_t d[32])
{
	for (int i = 0; i < e->ntried; i++)
		if (memcmp(e->tried[i], d, 32) == 0)
			return true;
	return false;
}

ks_err_t it_hello_checked(it_env_t *e, ks_agent_t *a, ks_agent_hello_t *h)
{
	uint8_t *blob = NULL;
	uint8_t d[32];
	size_t len = 0;
	kp_blob_t b;
	ks_err_t r;

	r = ks_agent_hello(a, h);
	if (r != KS_OK)
		return r;
	it_check(e, h->proto == KP_MSG_VERSION, "HELLO proto is 2");
	it_check(e, h->max_payload == KP_MAX_PAYLOAD, "HELLO max_payload");
	if (h->st.state == KP_STATE_KEYED)
		it_check(e, h->st.has_pubkey, "KEYED reports a pubkey");
	if (h->st.state < KP_STATE_COMMITTED)
		goto out;
	it_check(e, h->st.integrity == 0, "committed with integrity ok");
	if (!it_check(e, h->st.has_digest && h->st.has_pubkey,
		      "committed reports digest and pubkey"))
		goto out;
	it_check(e, tried(e, h->st.id_digest),
		 "committed digest is one the station sent");
	r = ks_agent_readback(a, &blob, &len);
	if (r != KS_OK) {
		if (r == KS_ERR_AGENT)
			it_violation(e, "READBACK refused on a committed "
				     "device: %s", ks_agent_last_error(a));
		goto out;
	}
	tu_sha256(blob, len, d);
	it_check(e, memcmp(d, h->st.id_digest, 32) == 0,
		 "SHA-256(READBACK) == id_digest");
	if (it_check(e, kp_blob_decode(&b, blob, len) == KP_OK,
		     "committed blob decodes"))
		it_check(e, memcmp(b.pubkey, h->st.pubkey, 65) == 0,
			 "blob pubkey == HELLO pubkey");
out:
	free(blob);
	return r;
}

static ks_err_t check_challenge(it_env_t *e, ks_agent_t *a,
				const ks_agent_hello_t *h,
				const uint8_t pub[65], const uint8_t *cert,
				size_t cert_len)
{
	uint8_t nonce[32], sig[KS_SIG_MAX], cpub[65], uid2[KS_UID_MAX];
	size_t sl = 0;
	ks_err_t r;

	RAND_bytes(nonce, sizeof(nonce));
	r = ks_agent_challenge(a, nonce, sizeof(nonce), sig, &sl);
	if (r != KS_OK)
		return r;
	it_check(e, ks_verify_challenge(pub, h->uid, h->uid_len, nonce,
					sizeof(nonce), sig, sl) == KS_OK,
		 "challenge signature verifies");
	if (cert != NULL &&
	    it_check(e, tu_cert_pubkey_raw(cert, cert_len, cpub) == 0,
		     "certificate key readable"))
		it_check(e, ks_verify_challenge(cpub, h->uid, h->uid_len,
						nonce, sizeof(nonce), sig,
						sl) == KS_OK,
			 "challenge verifies with the certificate's key");
	nonce[5] ^= 0x20;
	it_check(e, ks_verify_challenge(pub, h->uid, h->uid_len, nonce,
					sizeof(nonce), sig,
					sl) == KS_ERR_VERIFY,
		 "challenge fails for another nonce");
	nonce[5] ^= 0x20;
	memcpy(uid2, h->uid, h->uid_len);
	uid2[0] ^= 1;
	it_check(e, ks_verify_challenge(pub, uid2, h->uid_len, nonce,
					sizeof(nonce), sig,
					sl) == KS_ERR_VERIFY,
		 "challenge fails for another uid");
	return KS_OK;
}

static void note_refusal(it_env_t *e, ks_agent_t *a, ks_err_t r)
{
	(void)r;
	if (e->verbose)
		printf("#   %s: %s\n", ks_strerror(r), ks_agent_last_error(a));
}

ks_err_t it_provision(it_env_t *e, ks_agent_t *a, it_origin_t origin,
		      const ks_agent_hello_t *h)
{
	ks_agent_genkey_t *g = NULL;
	EVP_PKEY *subject = NULL;
	uint8_t *cert = NULL, *blob = NULL, *rb = NULL;
	uint8_t pub[65], digest[32], bad[32];
	size_t cert_len = 0, blob_len = 0, rb_len = 0;
	char cn[2 * KS_UID_MAX + 1], serial[32], cn_csr[80];
	static const char meta[] = "profile=it\nline=1\n";
	uint8_t state = 0, lock = 0;
	ks_err_t r = KS_OK;

	uid_hex(h, cn);
	/* LOCKED at level 1 only (cut during LOCK 2): lock again, it is
	 * idempotent */
	if (h->st.state == KP_STATE_LOCKED && h->st.lock == IT_LOCK_ALL)
		goto out;
	if (h->st.state >= KP_STATE_COMMITTED)
		goto lock;
	if (origin == IT_DEVKEY) {
		uint8_t seed[32];
		bool need_seed = (h->caps & KP_CAP_TRNG) == 0;

		RAND_bytes(seed, sizeof(seed));
		r = ks_agent_genkey(a, need_seed ? seed : NULL,
				    need_seed ? sizeof(seed) : 0, 0, NULL, &g);
		OPENSSL_cleanse(seed, sizeof(seed));
		if (r != KS_OK)
			goto fail;
		if (h->st.state == KP_STATE_KEYED)
			it_check(e, memcmp(g->pubkey, h->st.pubkey, 65) == 0,
				 "GENKEY in KEYED resumes the existing key");
		if (!it_check(e, ks_csr_verify(g->csr, g->csr_len,
					       g->pubkey) == KS_OK,
			      "CSR proves possession of GENKEY's key")) {
			r = KS_ERR_VERIFY;
			goto out;
		}
		it_check(e, tu_csr_cn(g->csr, g->csr_len, cn_csr,
				      sizeof(cn_csr)) == 0 &&
				    strcmp(cn_csr, cn) == 0,
			 "CSR subject CN is the UID in lowercase hex");
		memcpy(pub, g->pubkey, 65);
		subject = tu_csr_pubkey(g->csr, g->csr_len);
	} else if (h->st.state == KP_STATE_BLANK) {
		EVP_PKEY *k = tu_p256_new();
		uint8_t priv[32], kpub[65];
		bool has = false;

		tu_pubkey_raw(k, kpub);
		tu_privkey_raw(k, priv);
		EVP_PKEY_free(k); /* frees (and clears) OpenSSL's copy */
		r = ks_agent_put_object(a, KP_OBJ_HOSTKEY, priv, sizeof(priv),
					pub, &has);
		OPENSSL_cleanse(priv, sizeof(priv));
		it_check(e, priv[0] == 0 && memcmp(priv, priv + 1, 31) == 0,
			 "host copy of the private key wiped");
		if (r != KS_OK)
			goto fail;
		if (!it_check(e, has && memcmp(pub, kpub, 65) == 0,
			      "HOSTKEY answer carries the host key's pubkey")) {
			r = KS_ERR_VERIFY;
			goto out;
		}
		subject = tu_pkey_from_raw(pub);
	} else {
		memcpy(pub, h->st.pubkey, 65);
		subject = tu_pkey_from_raw(pub);
	}
	if (!it_check(e, subject != NULL, "subject key usable")) {
		r = KS_ERR_VERIFY;
		goto out;
	}
	cert = tu_ca_issue(&e->ca, subject, cn, &cert_len);
	it_check(e, tu_cert_signed_by(cert, cert_len, &e->ca),
		 "issued certificate verifies under the CA");
	snprintf(serial, sizeof(serial), "KLN-%06u", e->serial_no++);
	{
		ks_identity_t id = {
			.pubkey = pub, .serial = serial, .cert = cert,
			.cert_len = cert_len, .chain = e->ca_der,
			.chain_len = e->ca_der_len,
			.meta = (const uint8_t *)meta,
			.meta_len = sizeof(meta) - 1,
		};

		if (ks_identity_blob(&id, &blob, &blob_len, digest) != KS_OK) {
			it_violation(e, "cannot build the identity blob");
			r = KS_ERR_VERIFY;
			goto out;
		}
	}
	if (e->ntried < IT_MAX_TRIED)
		memcpy(e->tried[e->ntried++], digest, 32);
	/* the blob without the prefix the agent writes itself */
	r = ks_agent_put_object(a, KP_OBJ_IDENTITY, blob + KP_BLOB_PREFIX_LEN,
				blob_len - KP_BLOB_PREFIX_LEN, NULL, NULL);
	if (r != KS_OK)
		goto fail;
	/* a digest that does not match: refused, nothing written */
	memcpy(bad, digest, 32);
	bad[31] ^= 1;
	r = ks_agent_commit(a, bad, &state);
	if (r == KS_ERR_CLOSED || r == KS_ERR_TIMEOUT)
		goto fail;
	it_check(e, r == KS_ERR_AGENT &&
			    ks_agent_last_status(a) == KP_ST_BAD_DIGEST,
		 "COMMIT with a wrong digest answers KP_ST_BAD_DIGEST");
	r = ks_agent_commit(a, digest, &state);
	if (r != KS_OK)
		goto fail;
	it_check(e, state == KP_STATE_COMMITTED, "COMMIT reports COMMITTED");
	r = ks_agent_readback(a, &rb, &rb_len);
	if (r != KS_OK)
		goto fail;
	it_check(e, rb_len == blob_len && memcmp(rb, blob, blob_len) == 0,
		 "READBACK equals the blob byte for byte");
	r = check_challenge(e, a, h, pub, cert, cert_len);
	if (r != KS_OK)
		goto fail;
lock:
	r = ks_agent_lock(a, KP_LOCK_LEVEL_FULL, &lock, &state);
	if (r != KS_OK)
		goto fail;
	it_check(e, lock == IT_LOCK_ALL && state == KP_STATE_LOCKED,
		 "LOCK 2 reads back OTP|FLASH|DEBUG and LOCKED");
	goto out;
fail:
	note_refusal(e, a, r);
out:
	EVP_PKEY_free(subject);
	ks_agent_genkey_free(&g);
	free(cert);
	free(blob);
	free(rb);
	return r;
}

static void expect_locked(it_env_t *e, ks_agent_t *a, ks_err_t r,
			  const char *what)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "%s refused with KP_ST_LOCKED", what);
	it_check(e, r == KS_ERR_AGENT && ks_agent_last_status(a) == KP_ST_LOCKED,
		 msg);
}

ks_err_t it_verify_locked(it_env_t *e, ks_agent_t *a)
{
	ks_agent_hello_t h;
	ks_agent_genkey_t *g = NULL;
	uint8_t data[64] = {1};
	ks_err_t r;

	r = it_hello_checked(e, a, &h);
	if (r != KS_OK)
		return r;
	if (!it_check(e, h.st.state == KP_STATE_LOCKED && h.st.lock == IT_LOCK_ALL,
		      "device reports LOCKED with all lock bits"))
		return KS_ERR_VERIFY;
	r = check_challenge(e, a, &h, h.st.pubkey, NULL, 0);
	if (r != KS_OK)
		return r;
	expect_locked(e, a, ks_agent_genkey(a, NULL, 0, 0, NULL, &g), "GENKEY");
	ks_agent_genkey_free(&g);
	expect_locked(e, a, ks_agent_genkey(a, NULL, 0, KP_GENKEY_NEW, NULL, &g),
		      "GENKEY NEW");
	ks_agent_genkey_free(&g);
	expect_locked(e, a, ks_agent_put_object(a, KP_OBJ_IDENTITY, data,
						sizeof(data), NULL, NULL),
		      "PUT_OBJECT");
	expect_locked(e, a, ks_agent_commit(a, h.st.id_digest, NULL),
		      "COMMIT");
	return KS_OK;
}
