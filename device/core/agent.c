#include <string.h>

#include "mbedtls/platform_util.h"

#include "device/core/agent.h"
#include "device/core/secboot.h"
#include "device/hal/hal.h"

/* Every handler: decode p[0..n), act, and on success encode its response
 * payload into a->work, setting *rsp_len. A non-OK status becomes ERROR. */
typedef kp_status_t (*handler_fn)(ka_agent_t *a, const uint8_t *p, size_t n,
				  size_t *rsp_len);

static void env_init(ka_agent_t *a, ka_crypto_env_t *env, const uint8_t *seed,
		     size_t seed_len)
{
	memset(env, 0, sizeof(*env));
	env->heap = a->work;
	env->heap_len = KA_CRYPTO_HEAP;
	env->seed = seed;
	env->seed_len = seed_len;
	env->uid = a->uid;
	env->uid_len = a->uid_len;
	env->trng = ka_hal_rng_available();
}

/* Derive the cached public key of the current key slot. */
static kp_status_t load_pubkey(ka_agent_t *a)
{
	ka_crypto_env_t env;
	uint8_t d[KA_SCALAR_LEN];
	kp_status_t r;

	a->pubkey_ok = false;
	if (a->store.key_slot < 0)
		return KP_ST_OK;
	r = ka_record_key_load(&a->store, (uint8_t)a->store.key_slot, d);
	if (r != KP_ST_OK)
		goto out;
	env_init(a, &env, NULL, 0);
	r = ka_crypto_pubkey(&env, d, a->pubkey);
	if (r == KP_ST_BAD_OBJECT)
		r = KP_ST_INTEGRITY; /* a valid slot holding an invalid key */
	if (r == KP_ST_OK)
		a->pubkey_ok = true;
out:
	mbedtls_platform_zeroize(d, sizeof(d));
	return r;
}

/* Rescan storage (after a write or at boot) and refresh derived state. */
static kp_status_t refresh(ka_agent_t *a, bool key_changed)
{
	kp_status_t r;

	r = ka_record_scan(&a->store);
	if (r != KP_ST_OK) {
		a->integrity = (uint8_t)r;
		return r;
	}
	if (key_changed || (a->store.key_slot >= 0 && !a->pubkey_ok)) {
		r = load_pubkey(a);
		if (r != KP_ST_OK) {
			a->integrity = (uint8_t)r;
			return r;
		}
	}
	if (a->store.key_slot < 0)
		a->pubkey_ok = false;
	a->integrity = a->store.integrity;
	return KP_ST_OK;
}

kp_status_t ka_agent_init(ka_agent_t *a)
{
	size_t n = 0;

	memset(a, 0, sizeof(*a));
	kp_rx_init(&a->rx);
	if (ka_hal_uid(a->uid, sizeof(a->uid), &n) != KA_HAL_OK || n < 4 ||
	    n > sizeof(a->uid)) {
		/* HELLO needs a UID; report the fault through integrity */
		memset(a->uid, 0, 4);
		n = 4;
		a->uid_len = (uint8_t)n;
		a->integrity = KP_ST_INTERNAL;
		return KP_ST_INTERNAL;
	}
	a->uid_len = (uint8_t)n;
	return refresh(a, true);
}

void ka_agent_set_trace(ka_agent_t *a, ka_trace_fn fn, void *ctx)
{
	a->trace = fn;
	a->trace_ctx = ctx;
}

kp_state_t ka_agent_state(const ka_agent_t *a)
{
	const ka_store_t *st = &a->store;
	const uint8_t l1 = KP_LOCK_OTP | KP_LOCK_FLASH;

	if (st->key_slot < 0)
		return KP_STATE_BLANK;
	if (!st->committed)
		return KP_STATE_KEYED;
	if ((st->lock & l1) == l1)
		return KP_STATE_LOCKED;
	return KP_STATE_COMMITTED;
}

/* Once LOCK has begun (lock word in OTP) the identity is final, even if a
 * power cut interrupted the lock before every bit was set. */
static bool is_final(const ka_agent_t *a)
{
	return ka_agent_state(a) == KP_STATE_LOCKED || a->store.lock_begun;
}

static bool has_identity(const ka_agent_t *a)
{
	kp_state_t s = ka_agent_state(a);

	return s == KP_STATE_COMMITTED || s == KP_STATE_LOCKED;
}

/* The state fields common to HELLO and STATUS (tags first..first+5). */
#define FILL_STATE(a, m, first)                                         \
	do {                                                            \
		(m)->state = (uint8_t)ka_agent_state(a);                \
		(m)->lock = (a)->store.lock;                            \
		(m)->integrity = (a)->integrity;                        \
		(m)->slots_free = (a)->store.key_free;                  \
		if ((a)->pubkey_ok) {                                   \
			(m)->has |= KP_BIT((first) + 4);                \
			(m)->pubkey = (a)->pubkey;                      \
			(m)->pubkey_len = KA_PUBKEY_LEN;                \
		}                                                       \
		if (has_identity(a)) {                                  \
			(m)->has |= KP_BIT((first) + 5);                \
			(m)->id_digest = (a)->store.digest;             \
			(m)->id_digest_len = 32;                        \
		}                                                       \
	} while (0)

/* The channel needs a secret the agent can draw its ephemeral key from:
 * the TRNG, or the key already stored in OTP. */
static bool can_secure(const ka_agent_t *a)
{
	return ka_hal_rng_available() || a->pubkey_ok;
}

/* The secure-boot key-hash slot, for HELLO, STATUS and COMMIT: *present
 * false when it is free or cannot be read (a damaged slot is refused
 * when COMMIT tries to write it). */
static void boot_key(uint8_t hash[32], bool *present)
{
	if (ka_sb_keyhash_read(hash, present) != KP_ST_OK)
		*present = false;
}

/* COMMIT's secure-boot key hash: written once, the same hash again is
 * fine, another one is refused before the identity is committed. */
static kp_status_t write_boot_key(ka_agent_t *a, const uint8_t hash[32])
{
	uint8_t cur[32];
	bool present = false;
	kp_status_t r;

	r = ka_sb_keyhash_read(cur, &present);
	if (r == KP_ST_OK && present && memcmp(cur, hash, 32) != 0)
		r = KP_ST_BAD_STATE;
	else if (r == KP_ST_OK && !present)
		r = ka_sb_keyhash_write(hash);
	else if (r == KP_ST_INTEGRITY)
		r = ka_sb_keyhash_write(hash); /* completes a cut write */
	if (r == KP_ST_BAD_STATE) {
		a->detail = "OTP secure-boot slot (words 80..88) holds "
			    "another key hash";
		r = KP_ST_BOOT_KEY;
	} else if (r == KP_ST_INTEGRITY) {
		a->detail = "OTP secure-boot slot (words 80..88) is damaged";
	} else if (r == KP_ST_STORAGE) {
		a->detail = "OTP secure-boot slot write failed";
	}
	return r;
}

static kp_status_t encoded(kp_err_t e)
{
	return e == KP_OK ? KP_ST_OK : KP_ST_INTERNAL;
}

static kp_status_t h_hello(ka_agent_t *a, const uint8_t *p, size_t n,
			   size_t *rsp_len)
{
	kp_hello_req_t req;
	kp_hello_rsp_t rsp;
	uint8_t bkh[32];
	bool bk = false;
	const char *board = ka_hal_board_name();
	size_t blen = board != NULL ? strlen(board) : 0;

	if (kp_hello_req_decode(&req, p, n) != KP_OK)
		return KP_ST_BAD_MESSAGE;
	/* a new session: anything staged belongs to the previous one, and
	 * so does the channel */
	ka_stage_reset(&a->stage);
	ka_channel_close(&a->chan);
	memset(&rsp, 0, sizeof(rsp));
	/* one protocol version; a host that cannot speak it stops here */
	rsp.proto = KP_MSG_VERSION;
	rsp.agent_version = KA_AGENT_VERSION;
	rsp.agent_version_len = (uint16_t)strlen(KA_AGENT_VERSION);
	rsp.caps = KP_CAP_DEVKEY | KP_CAP_HOSTKEY | KP_CAP_SECBOOT;
	if (ka_hal_rng_available())
		rsp.caps |= KP_CAP_TRNG;
	if (can_secure(a))
		rsp.caps |= KP_CAP_SECURE;
	rsp.uid = a->uid;
	rsp.uid_len = a->uid_len;
	if (blen == 0) {
		board = "unknown";
		blen = 7;
	}
	rsp.board = board;
	rsp.board_len = (uint16_t)(blen > 32 ? 32 : blen);
	rsp.max_payload = KP_MAX_PAYLOAD;
	FILL_STATE(a, &rsp, 0x07);
	boot_key(bkh, &bk);
	if (bk) {
		rsp.has |= KP_BIT(0x80);
		rsp.boot_key_hash = bkh;
		rsp.boot_key_hash_len = 32;
	}
	return encoded(kp_hello_rsp_encode(&rsp, a->work, KP_MAX_PAYLOAD,
					   rsp_len));
}

static kp_status_t h_status(ka_agent_t *a, const uint8_t *p, size_t n,
			    size_t *rsp_len)
{
	kp_status_req_t req;
	kp_status_rsp_t rsp;
	uint8_t bkh[32];
	bool bk = false;

	if (kp_status_req_decode(&req, p, n) != KP_OK)
		return KP_ST_BAD_MESSAGE;
	memset(&rsp, 0, sizeof(rsp));
	FILL_STATE(a, &rsp, 0x01);
	rsp.staged = ka_stage_bytes(&a->stage);
	boot_key(bkh, &bk);
	if (bk) {
		rsp.has |= KP_BIT(0x80);
		rsp.boot_key_hash = bkh;
		rsp.boot_key_hash_len = 32;
	}
	return encoded(kp_status_rsp_encode(&rsp, a->work, KP_MAX_PAYLOAD,
					    rsp_len));
}

/* Default CSR subject: the UID in lowercase hex. */
static size_t uid_hex(const ka_agent_t *a, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < a->uid_len; i++) {
		out[2 * i] = hex[a->uid[i] >> 4];
		out[2 * i + 1] = hex[a->uid[i] & 15];
	}
	return 2u * a->uid_len;
}

/* Program a fresh scalar into the next key slot and cache its pubkey. */
static kp_status_t store_key(ka_agent_t *a, const uint8_t d[32],
			     const uint8_t pub[KA_PUBKEY_LEN], uint8_t *slot)
{
	kp_status_t r;

	r = ka_record_key_store(&a->store, d, slot);
	if (r != KP_ST_OK) {
		a->detail = "key slot write failed";
		(void)refresh(a, true);
		return r;
	}
	memcpy(a->pubkey, pub, KA_PUBKEY_LEN);
	a->pubkey_ok = true;
	a->integrity = a->store.integrity;
	return KP_ST_OK;
}

static kp_status_t h_genkey(ka_agent_t *a, const uint8_t *p, size_t n,
			    size_t *rsp_len)
{
	kp_genkey_req_t req;
	kp_genkey_rsp_t rsp;
	ka_crypto_env_t env;
	uint8_t d[KA_SCALAR_LEN], pub[KA_PUBKEY_LEN];
	char cn_buf[64];
	const char *cn = cn_buf;
	size_t cn_len, csr_len = 0;
	uint8_t slot = 0;
	kp_state_t st = ka_agent_state(a);
	bool fresh;
	kp_status_t r;

	memset(d, 0, sizeof(d));
	if (kp_genkey_req_decode(&req, p, n) != KP_OK)
		return KP_ST_BAD_MESSAGE;
	if (is_final(a))
		return KP_ST_LOCKED;
	if (KP_HAS(&req, 0x01) && !a->req_sealed && can_secure(a)) {
		a->detail = "seed must be sent sealed";
		return KP_ST_NOT_SEALED;
	}
	fresh = st == KP_STATE_BLANK ||
		(KP_HAS(&req, 0x02) && (req.flags & KP_GENKEY_NEW) != 0);
	if (st == KP_STATE_COMMITTED && !fresh) {
		a->detail = "committed: GENKEY needs flag NEW";
		return KP_ST_BAD_STATE;
	}
	if (KP_HAS(&req, 0x03)) {
		cn = req.cn;
		cn_len = req.cn_len;
	} else {
		cn_len = uid_hex(a, cn_buf);
	}
	env_init(a, &env, KP_HAS(&req, 0x01) ? req.seed : NULL,
		 KP_HAS(&req, 0x01) ? req.seed_len : 0);

	if (fresh) {
		if (a->store.key_next < 0)
			return KP_ST_EXHAUSTED;
		if (!env.trng && env.seed == NULL)
			return KP_ST_NO_ENTROPY;
		/* a scalar whose check word would read as erased cannot be
		 * stored (p = 2^-32): draw again */
		for (int i = 0; i < 4; i++) {
			r = ka_crypto_genkey(&env, d, pub);
			if (r != KP_ST_OK || ka_record_key_storable(d))
				break;
			r = KP_ST_CRYPTO;
		}
		if (r != KP_ST_OK)
			goto out;
		r = store_key(a, d, pub, &slot);
		if (r != KP_ST_OK)
			goto out;
	} else {
		/* KEYED: resume with the key already in OTP, no write */
		slot = (uint8_t)a->store.key_slot;
		r = ka_record_key_load(&a->store, slot, d);
		if (r != KP_ST_OK)
			goto out;
		if (!a->pubkey_ok) {
			r = KP_ST_INTEGRITY;
			goto out;
		}
	}
	/* the CSR is built in the tx buffer: it is framed from a->work */
	r = ka_crypto_csr(&env, d, a->pubkey, cn, cn_len, a->tx,
			  sizeof(a->tx), &csr_len);
	mbedtls_platform_zeroize(d, sizeof(d));
	if (r != KP_ST_OK)
		goto out;
	if (csr_len > 600) {
		r = KP_ST_INTERNAL;
		goto out;
	}
	memset(&rsp, 0, sizeof(rsp));
	rsp.pubkey = a->pubkey;
	rsp.pubkey_len = KA_PUBKEY_LEN;
	rsp.csr = a->tx;
	rsp.csr_len = (uint16_t)csr_len;
	rsp.slot = slot;
	r = encoded(kp_genkey_rsp_encode(&rsp, a->work, KP_MAX_PAYLOAD,
					 rsp_len));
out:
	mbedtls_platform_zeroize(d, sizeof(d));
	return r;
}

/* A complete HOSTKEY: validate, program, forget. */
static kp_status_t install_hostkey(ka_agent_t *a)
{
	ka_crypto_env_t env;
	const uint8_t *d = NULL;
	uint8_t pub[KA_PUBKEY_LEN];
	uint8_t slot;
	kp_status_t r;

	if (ka_stage_hostkey(&a->stage, &d) != KA_STAGE_COMPLETE)
		return KP_ST_INTERNAL;
	if (a->store.key_next < 0) {
		r = KP_ST_EXHAUSTED;
		goto out;
	}
	env_init(a, &env, NULL, 0);
	r = ka_crypto_pubkey(&env, d, pub); /* 1 <= d < n */
	if (r != KP_ST_OK) {
		a->detail = "host key is not a valid P-256 scalar";
		goto out;
	}
	r = store_key(a, d, pub, &slot);
out:
	ka_stage_drop(&a->stage, KP_OBJ_HOSTKEY);
	return r;
}

static kp_status_t h_put_object(ka_agent_t *a, const uint8_t *p, size_t n,
				size_t *rsp_len)
{
	kp_put_object_req_t req;
	kp_put_object_rsp_t rsp;
	kp_state_t st = ka_agent_state(a);
	uint32_t received = 0;
	kp_status_t r;

	if (kp_put_object_req_decode(&req, p, n) != KP_OK)
		return KP_ST_BAD_MESSAGE;
	if (is_final(a))
		return KP_ST_LOCKED;
	if (req.obj == KP_OBJ_HOSTKEY) {
		if (!a->req_sealed && can_secure(a)) {
			a->detail = "host key must be sent sealed";
			return KP_ST_NOT_SEALED;
		}
		r = ka_stage_put_hostkey(&a->stage, req.offset, req.total,
					 req.data, req.data_len, &received);
	} else if (req.obj == KP_OBJ_IDENTITY) {
		if (st == KP_STATE_BLANK || !a->pubkey_ok) {
			a->detail = "no key: GENKEY or HOSTKEY first";
			return KP_ST_BAD_STATE;
		}
		r = ka_stage_put_identity(&a->stage, &a->store, a->pubkey,
					  KA_BLOB_MAX, req.offset, req.total,
					  req.data, req.data_len, &received);
		if (r == KP_ST_BAD_STATE)
			a->detail = "the only identity sector holds the "
				    "committed identity";
		else if (r == KP_ST_STORAGE)
			a->detail = "identity flash write failed";
	} else {
		a->detail = "unknown object (protocol 2: IDENTITY, HOSTKEY)";
		return KP_ST_BAD_OBJECT;
	}
	if (r != KP_ST_OK) {
		if (a->detail == NULL)
			a->detail = "offset, total or size";
		return r;
	}
	memset(&rsp, 0, sizeof(rsp));
	rsp.obj = req.obj;
	rsp.received = received;
	if (req.obj == KP_OBJ_HOSTKEY && received == KA_HOSTKEY_LEN) {
		r = install_hostkey(a);
		if (r != KP_ST_OK)
			return r;
		rsp.has |= KP_BIT(0x03);
		rsp.pubkey = a->pubkey;
		rsp.pubkey_len = KA_PUBKEY_LEN;
	}
	return encoded(kp_put_object_rsp_encode(&rsp, a->work, KP_MAX_PAYLOAD,
						rsp_len));
}

/* Sign the challenge message for nonce (lock != NULL: the lock report of
 * *lock and state) with the current key into sig[0..*slen) (sig has room
 * for 80 bytes). Uses the work area as the mbedTLS heap. */
static kp_status_t sign_challenge(ka_agent_t *a, const uint8_t *nonce,
				  size_t nonce_len, const uint8_t *lock,
				  uint8_t state, uint8_t *sig, size_t *slen)
{
	ka_crypto_env_t env;
	uint8_t msg[KP_CHALLENGE_DOMAIN_LEN + 1 + 32 + 2 + 64];
	uint8_t hash[32], d[KA_SCALAR_LEN];
	size_t mlen = 0;
	kp_err_t e;
	kp_status_t r;

	memset(d, 0, sizeof(d));
	/* damage first: a flipped key slot may leave no valid key */
	if (a->integrity != KP_ST_OK)
		return KP_ST_INTEGRITY;
	if (a->store.key_slot < 0)
		return KP_ST_NO_KEY;
	if (lock != NULL)
		e = kp_lock_message(a->uid, a->uid_len, *lock, state, nonce,
				    nonce_len, msg, sizeof(msg), &mlen);
	else
		e = kp_challenge_message(a->uid, a->uid_len, nonce, nonce_len,
					 msg, sizeof(msg), &mlen);
	if (e != KP_OK)
		return KP_ST_INTERNAL;
	r = ka_crypto_sha256(msg, mlen, hash);
	if (r != KP_ST_OK)
		return r;
	r = ka_record_key_load(&a->store, (uint8_t)a->store.key_slot, d);
	if (r != KP_ST_OK)
		goto out;
	env_init(a, &env, NULL, 0);
	r = ka_crypto_sign(&env, d, hash, sig, 80, slen);
out:
	mbedtls_platform_zeroize(d, sizeof(d));
	return r;
}

/* COMMIT's check of the identity written at PUT: read it back from flash
 * into the work area, hash it and make sure it is a blob of this key. */
static kp_status_t check_written(ka_agent_t *a, uint8_t sector, size_t len,
				 uint8_t digest[32])
{
	kp_blob_t b;
	kp_status_t r;

	if (len > KA_BLOB_MAX)
		return KP_ST_BAD_OBJECT;
	r = ka_record_sector_read(sector, 0, a->work, len);
	if (r != KP_ST_OK)
		return r;
	r = ka_crypto_sha256(a->work, len, digest);
	if (r != KP_ST_OK)
		return r;
	if (kp_blob_decode(&b, a->work, len) != KP_OK ||
	    memcmp(b.pubkey, a->pubkey, KA_PUBKEY_LEN) != 0) {
		a->detail = "IDENTITY is not a valid identity blob";
		return KP_ST_BAD_OBJECT;
	}
	return KP_ST_OK;
}

static kp_status_t h_commit(ka_agent_t *a, const uint8_t *p, size_t n,
			    size_t *rsp_len)
{
	kp_commit_req_t req;
	kp_commit_rsp_t rsp;
	uint8_t digest[32], sig[80], bkh[32];
	bool bk = false;
	uint8_t sector = 0;
	size_t len = 0, slen = 0;
	bool same;
	kp_status_t r;

	if (kp_commit_req_decode(&req, p, n) != KP_OK)
		return KP_ST_BAD_MESSAGE;
	if (is_final(a))
		return KP_ST_LOCKED;
	if (ka_agent_state(a) == KP_STATE_BLANK)
		return KP_ST_BAD_STATE;
	if (!a->pubkey_ok)
		return KP_ST_INTEGRITY;
	same = a->store.committed &&
	       memcmp(a->store.digest, req.digest, sizeof(digest)) == 0;
	if (ka_stage_identity(&a->stage, &sector, &len) == KA_STAGE_COMPLETE) {
		r = check_written(a, sector, len, digest);
		if (r != KP_ST_OK)
			return r;
		if (memcmp(digest, req.digest, sizeof(digest)) != 0)
			return KP_ST_BAD_DIGEST;
	} else if (same) {
		/* committed before (a resumed session): nothing to write */
		r = ka_record_sector_digest(a->store.commit_sector,
					    a->store.blob_len, digest);
		if (r != KP_ST_OK)
			return r;
	} else {
		a->detail = ka_stage_identity(&a->stage, NULL, NULL) ==
					    KA_STAGE_PARTIAL
				    ? "IDENTITY is incomplete"
				    : "IDENTITY missing";
		return KP_ST_BAD_OBJECT;
	}
	/* the secure-boot root of trust goes first: a board whose slot
	 * holds another key is refused before its identity is committed */
	if (KP_HAS(&req, 0x03)) {
		r = write_boot_key(a, req.boot_key_hash);
		if (r != KP_ST_OK)
			return r;
	}
	r = KP_ST_OK;
	if (same && a->store.integrity == KP_ST_OK) {
		/* already committed and intact: no write */
	} else if (len > 0) {
		/* new identity, or a damaged copy of this one: the blob just
		 * written becomes the committed one */
		r = ka_record_commit_sector(&a->store, sector, len, digest);
		(void)refresh(a, false);
		ka_stage_drop(&a->stage, KP_OBJ_IDENTITY);
	} else {
		r = KP_ST_INTEGRITY; /* damaged, and nothing to repair with */
	}
	if (r != KP_ST_OK)
		return r;
	/* what the station compares: the digest of the blob as read back */
	if (memcmp(digest, a->store.digest, sizeof(digest)) != 0)
		return KP_ST_STORAGE;
	memset(&rsp, 0, sizeof(rsp));
	if (KP_HAS(&req, 0x02)) {
		r = sign_challenge(a, req.nonce, req.nonce_len, NULL, 0, sig,
				   &slen);
		if (r != KP_ST_OK)
			return r;
		rsp.has |= KP_BIT(0x03);
		rsp.sig = sig;
		rsp.sig_len = (uint16_t)slen;
	}
	rsp.digest = digest;
	rsp.digest_len = 32;
	rsp.state = (uint8_t)ka_agent_state(a);
	boot_key(bkh, &bk); /* what the slot holds, read back */
	if (bk) {
		rsp.has |= KP_BIT(0x04);
		rsp.boot_key_hash = bkh;
		rsp.boot_key_hash_len = 32;
	}
	return encoded(kp_commit_rsp_encode(&rsp, a->work, KP_MAX_PAYLOAD,
					    rsp_len));
}

static kp_status_t h_readback(ka_agent_t *a, const uint8_t *p, size_t n,
			      size_t *rsp_len)
{
	kp_readback_req_t req;
	kp_readback_rsp_t rsp;
	uint32_t total = a->store.blob_len, k;
	kp_status_t r;

	if (kp_readback_req_decode(&req, p, n) != KP_OK)
		return KP_ST_BAD_MESSAGE;
	if (!has_identity(a))
		return KP_ST_BAD_STATE;
	if (req.offset > total)
		return KP_ST_BAD_OBJECT;
	k = total - req.offset;
	if (k > req.max)
		k = req.max;
	r = ka_record_blob_read(&a->store, req.offset, a->tx, k);
	if (r != KP_ST_OK)
		return r;
	memset(&rsp, 0, sizeof(rsp));
	rsp.total = total;
	rsp.data = a->tx;
	rsp.data_len = (uint16_t)k;
	return encoded(kp_readback_rsp_encode(&rsp, a->work, KP_MAX_PAYLOAD,
					      rsp_len));
}

static kp_status_t h_challenge(ka_agent_t *a, const uint8_t *p, size_t n,
			       size_t *rsp_len)
{
	kp_challenge_req_t req;
	kp_challenge_rsp_t rsp;
	uint8_t sig[80];
	size_t slen = 0;
	kp_status_t r;

	if (kp_challenge_req_decode(&req, p, n) != KP_OK)
		return KP_ST_BAD_MESSAGE;
	r = sign_challenge(a, req.nonce, req.nonce_len, NULL, 0, sig, &slen);
	if (r != KP_ST_OK)
		return r;
	memset(&rsp, 0, sizeof(rsp));
	rsp.sig = sig;
	rsp.sig_len = (uint16_t)slen;
	return encoded(kp_challenge_rsp_encode(&rsp, a->work, KP_MAX_PAYLOAD,
					       rsp_len));
}

static kp_status_t h_lock(ka_agent_t *a, const uint8_t *p, size_t n,
			  size_t *rsp_len)
{
	kp_lock_req_t req;
	kp_lock_rsp_t rsp;
	uint8_t sig[80];
	size_t slen = 0;
	kp_status_t r;

	if (kp_lock_req_decode(&req, p, n) != KP_OK)
		return KP_ST_BAD_MESSAGE;
	if (!has_identity(a))
		return KP_ST_BAD_STATE;
	if (a->integrity != KP_ST_OK) {
		a->detail = "refusing to lock a damaged identity";
		return KP_ST_INTEGRITY;
	}
	r = ka_record_lock(&a->store, req.level);
	(void)refresh(a, false);
	if (r != KP_ST_OK)
		return r;
	memset(&rsp, 0, sizeof(rsp));
	rsp.lock = a->store.lock; /* read back from the hardware */
	rsp.state = (uint8_t)ka_agent_state(a);
	if (KP_HAS(&req, 0x02)) {
		/* the board vouches for what it reports */
		r = sign_challenge(a, req.nonce, req.nonce_len, &rsp.lock,
				   rsp.state, sig, &slen);
		if (r != KP_ST_OK)
			return r;
		rsp.has |= KP_BIT(0x03);
		rsp.sig = sig;
		rsp.sig_len = (uint16_t)slen;
	}
	return encoded(kp_lock_rsp_encode(&rsp, a->work, KP_MAX_PAYLOAD,
					  rsp_len));
}

static kp_status_t h_secure_open(ka_agent_t *a, const uint8_t *p, size_t n,
				 size_t *rsp_len)
{
	kp_secure_open_req_t req;
	kp_secure_open_rsp_t rsp;
	ka_crypto_env_t env;
	uint8_t d[KA_SCALAR_LEN], pub[KP_SECURE_PUB_LEN];
	uint8_t nonce[KP_SECURE_NONCE_LEN], th[32], hash[32], sig[80];
	uint8_t msg[KP_SECURE_SIG_DOMAIN_LEN + 32];
	size_t slen = 0;
	bool have_key = false;
	kp_status_t r;

	memset(d, 0, sizeof(d));
	ka_channel_close(&a->chan);
	if (kp_secure_open_req_decode(&req, p, n) != KP_OK)
		return KP_ST_BAD_MESSAGE;
	if (a->req_sealed) {
		a->detail = "SECURE_OPEN is never sealed";
		return KP_ST_BAD_MESSAGE;
	}
	if (a->pubkey_ok && a->store.key_slot >= 0) {
		r = ka_record_key_load(&a->store, (uint8_t)a->store.key_slot, d);
		if (r != KP_ST_OK)
			goto out;
		have_key = true;
	}
	if (!can_secure(a)) {
		a->detail = "no TRNG and no stored key to draw from";
		r = KP_ST_NO_ENTROPY;
		goto out;
	}
	env_init(a, &env, req.host_nonce, req.host_nonce_len);
	r = ka_channel_open(&a->chan, &env, have_key ? d : NULL, a->uid,
			    a->uid_len, req.host_pub, req.host_nonce, pub, nonce,
			    th);
	if (r != KP_ST_OK)
		goto out;
	memset(&rsp, 0, sizeof(rsp));
	/* a provisioned, intact key proves which board answers */
	if (have_key && a->integrity == KP_ST_OK) {
		kp_secure_sig_message(th, msg);
		r = ka_crypto_sha256(msg, sizeof(msg), hash);
		if (r == KP_ST_OK) {
			env_init(a, &env, NULL, 0);
			r = ka_crypto_sign(&env, d, hash, sig, sizeof(sig),
					   &slen);
		}
		if (r != KP_ST_OK)
			goto out;
		rsp.has |= KP_BIT(0x03);
		rsp.id_sig = sig;
		rsp.id_sig_len = (uint16_t)slen;
	}
	mbedtls_platform_zeroize(d, sizeof(d));
	rsp.agent_pub = pub;
	rsp.agent_pub_len = KP_SECURE_PUB_LEN;
	rsp.agent_nonce = nonce;
	rsp.agent_nonce_len = KP_SECURE_NONCE_LEN;
	r = encoded(kp_secure_open_rsp_encode(&rsp, a->work, KP_MAX_PAYLOAD,
					      rsp_len));
out:
	if (r != KP_ST_OK)
		ka_channel_close(&a->chan);
	mbedtls_platform_zeroize(d, sizeof(d));
	mbedtls_platform_zeroize(th, sizeof(th));
	return r;
}

static handler_fn handler_for(uint8_t type)
{
	switch (type) {
	case KP_MSG_HELLO:
		return h_hello;
	case KP_MSG_GENKEY:
		return h_genkey;
	case KP_MSG_PUT_OBJECT:
		return h_put_object;
	case KP_MSG_COMMIT:
		return h_commit;
	case KP_MSG_STATUS:
		return h_status;
	case KP_MSG_READBACK:
		return h_readback;
	case KP_MSG_CHALLENGE:
		return h_challenge;
	case KP_MSG_LOCK:
		return h_lock;
	case KP_MSG_SECURE_OPEN:
		return h_secure_open;
	default:
		return NULL;
	}
}

static void send_response(ka_agent_t *a, uint8_t type, uint8_t flags,
			  uint16_t seq, size_t len)
{
	kp_hdr_t h;

	memset(&h, 0, sizeof(h));
	h.type = type;
	h.flags = (uint8_t)(KP_FLAG_RESPONSE | flags);
	h.seq = seq;
	h.len = (uint16_t)len;
	a->tx_len = 0;
	if (kp_frame_encode(&h, a->work, len, a->tx, sizeof(a->tx),
			    &a->tx_len) != KP_OK) {
		a->tx_len = 0;
		return;
	}
	(void)ka_hal_tx(a->tx, a->tx_len);
}

static kp_status_t encode_error(ka_agent_t *a, uint8_t req_type,
				kp_status_t status, size_t *len)
{
	kp_error_rsp_t e;

	/* The status code says what failed (the station has its text); a
	 * detail is sent only where the agent knows more than the code. */
	memset(&e, 0, sizeof(e));
	e.status = (uint16_t)status;
	e.has = KP_BIT(0x03);
	if (a->detail != NULL && a->detail[0] != '\0') {
		size_t dl = strlen(a->detail);

		e.has |= KP_BIT(0x02);
		e.detail = a->detail;
		e.detail_len = (uint16_t)(dl > 64 ? 64 : dl);
	}
	e.request_type = req_type;
	return encoded(kp_error_rsp_encode(&e, a->work, KP_MAX_PAYLOAD, len));
}

static void handle_frame(ka_agent_t *a, const kp_hdr_t *h, const uint8_t *p)
{
	handler_fn fn;
	uint8_t hash[32];
	uint8_t *plain;
	size_t len = 0, plain_len = 0;
	uint32_t ctr = 0;
	kp_status_t st;

	if ((h->flags & KP_FLAG_RESPONSE) != 0)
		return; /* another agent's answer: not for us */
	if (ka_crypto_sha256(p, h->len, hash) != KP_ST_OK)
		return;
	/* a retransmission: the host lost our answer; never execute twice */
	if (a->last_valid && a->tx_len > 0 && h->type == a->last_type &&
	    h->seq == a->last_seq && h->len == a->last_len &&
	    memcmp(hash, a->last_hash, sizeof(hash)) == 0) {
		(void)ka_hal_tx(a->tx, a->tx_len);
		if (a->trace != NULL)
			a->trace(a->trace_ctx, KA_TRACE_RETRANSMIT, h->type,
				 h->seq, 0);
		return;
	}
	/* a stale request: one of the last KA_STALE_WINDOW requests arriving
	 * again (a delayed or replayed frame). Executing it again could undo
	 * later work (HELLO discards staged objects, an old PUT_OBJECT
	 * restarts an object, an old GENKEY NEW burns a key slot), so it
	 * gets no answer, like a frame whose seq cannot be trusted. Sealed
	 * requests are left to the channel's own counter check, which
	 * answers a replay with KP_ST_SEAL_REPLAY. */
	if (a->last_valid && (h->flags & KP_FLAG_SEALED) == 0) {
		uint16_t behind = (uint16_t)(a->last_seq - h->seq);

		if (behind >= 1u && behind <= KA_STALE_WINDOW) {
			if (a->trace != NULL)
				a->trace(a->trace_ctx, KA_TRACE_STALE, h->type,
					 h->seq, 0);
			return;
		}
	}
	a->last_valid = true;
	a->last_type = h->type;
	a->last_seq = h->seq;
	a->last_len = h->len;
	memcpy(a->last_hash, hash, sizeof(hash));

	a->detail = NULL;
	a->req_sealed = (h->flags & KP_FLAG_SEALED) != 0;
	fn = handler_for(h->type);
	if (fn == NULL) {
		st = KP_ST_UNSUPPORTED;
	} else if (a->req_sealed && (h->type == KP_MSG_HELLO ||
				     h->type == KP_MSG_SECURE_OPEN)) {
		a->detail = "HELLO and SECURE_OPEN are never sealed";
		st = KP_ST_BAD_MESSAGE;
	} else if (a->req_sealed) {
		/* the payload lies in our own receive buffer: open it in
		 * place (it is wiped below) */
		plain = a->rx.buf + (size_t)(p - a->rx.buf);
		st = ka_channel_unseal(&a->chan, h, plain, &plain_len, &ctr);
		if (st == KP_ST_OK)
			st = fn(a, plain + KP_SEAL_CTR_LEN, plain_len, &len);
	} else {
		st = fn(a, p, h->len, &len);
	}
	if (st == KP_ST_OK && a->req_sealed) {
		kp_hdr_t rh = {.type = h->type,
			       .flags = KP_FLAG_RESPONSE | KP_FLAG_SEALED,
			       .seq = h->seq};

		st = ka_channel_seal(&a->chan, &rh, ctr, a->work, len, &len);
	}
	if (st == KP_ST_OK) {
		send_response(a, h->type, a->req_sealed ? KP_FLAG_SEALED : 0,
			      h->seq, len);
	} else if (encode_error(a, h->type, st, &len) == KP_ST_OK) {
		/* ERROR is never sealed: it carries no secret */
		send_response(a, KP_MSG_ERROR, 0, h->seq, len);
	}
	/* nothing in the work area, nor a sealed request's plain text,
	 * outlives the request */
	mbedtls_platform_zeroize(a->work, sizeof(a->work));
	mbedtls_platform_zeroize(a->rx.buf + (size_t)(p - a->rx.buf), h->len);
	if (a->trace != NULL)
		a->trace(a->trace_ctx, KA_TRACE_REQUEST, h->type, h->seq,
			 (uint16_t)st);
}

void ka_agent_feed(ka_agent_t *a, const uint8_t *data, size_t n)
{
	while (n > 0) {
		kp_rx_event_t ev;
		size_t used = kp_rx_feed(&a->rx, data, n, &ev);

		data += used;
		n -= used;
		if (ev.kind == KP_RX_FRAME)
			handle_frame(a, &ev.hdr, ev.payload);
		else if (ev.kind == KP_RX_ERROR && a->trace != NULL)
			a->trace(a->trace_ctx, KA_TRACE_BAD_FRAME, 0, 0,
				 (uint16_t)ev.err);
		if (used == 0)
			break;
	}
}

int ka_agent_poll(ka_agent_t *a, uint32_t timeout_ms)
{
	uint8_t buf[64];
	int32_t n = ka_hal_rx(buf, sizeof(buf), timeout_ms);

	if (n < 0)
		return KA_HAL_RX_CLOSED;
	if (n > 0)
		ka_agent_feed(a, buf, (size_t)n > sizeof(buf) ? sizeof(buf)
							    : (size_t)n);
	return 0;
}
