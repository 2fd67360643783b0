/*
 * kiln station library: the sealed channel, station side.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "host/lib/channel.h"
#include "host/lib/hostkey.h"
#include "host/lib/log.h"
#include "protocol/le.h"

ks_err_t ks_channel_offer(ks_channel_offer_t *o)
{
	ks_err_t r = KS_ERR_CRYPTO;

	if (o == NULL)
		return KS_ERR_ARG;
	memset(o, 0, sizeof(*o));
	o->eph = EVP_EC_gen("P-256");
	if (o->eph == NULL)
		goto out;
	if (ks_pubkey_point(o->eph, o->pub) != KS_OK ||
	    RAND_bytes(o->nonce, sizeof(o->nonce)) != 1)
		goto out;
	r = KS_OK;
out:
	if (r != KS_OK)
		ks_channel_offer_clear(o);
	ERR_clear_error();
	return r;
}

void ks_channel_offer_clear(ks_channel_offer_t *o)
{
	if (o == NULL)
		return;
	EVP_PKEY_free(o->eph);
	OPENSSL_cleanse(o, sizeof(*o));
}

void ks_channel_close(ks_channel_t *c)
{
	if (c != NULL)
		OPENSSL_cleanse(c, sizeof(*c));
}

/* ECDH: the x-coordinate shared with the peer point. */
static ks_err_t ecdh(EVP_PKEY *mine, const uint8_t peer_pt[KP_SECURE_PUB_LEN],
		     uint8_t z[32])
{
	EVP_PKEY *peer = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	size_t zlen = 32;
	ks_err_t r;

	r = ks_pubkey_from_point(peer_pt, &peer); /* checks the curve */
	if (r != KS_OK)
		goto out;
	r = KS_ERR_CRYPTO;
	ctx = EVP_PKEY_CTX_new(mine, NULL);
	if (ctx == NULL || EVP_PKEY_derive_init(ctx) != 1 ||
	    EVP_PKEY_derive_set_peer(ctx, peer) != 1 ||
	    EVP_PKEY_derive(ctx, z, &zlen) != 1 || zlen != 32)
		goto out;
	r = KS_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(peer);
	ERR_clear_error();
	return r;
}

static ks_err_t hkdf(const uint8_t salt[32], const uint8_t z[32],
		     uint8_t *okm, size_t okm_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[5];
	ks_err_t r = KS_ERR_CRYPTO;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						     (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						      (void *)z, 32);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
						      (void *)salt, 32);
	params[3] = OSSL_PARAM_construct_octet_string(
		OSSL_KDF_PARAM_INFO, (void *)KP_SECURE_HKDF_INFO,
		KP_SECURE_HKDF_INFO_LEN);
	params[4] = OSSL_PARAM_construct_end();
	if (kctx != NULL && EVP_KDF_derive(kctx, okm, okm_len, params) == 1)
		r = KS_OK;
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	ERR_clear_error();
	return r;
}

static ks_err_t verify_sig(const uint8_t pub[KP_SECURE_PUB_LEN],
			   const uint8_t th[32], const uint8_t *sig,
			   size_t sig_len)
{
	uint8_t msg[KP_SECURE_SIG_DOMAIN_LEN + 32];
	EVP_PKEY *pk = NULL;
	EVP_MD_CTX *md = NULL;
	ks_err_t r = KS_ERR_VERIFY;

	kp_secure_sig_message(th, msg);
	if (ks_pubkey_from_point(pub, &pk) != KS_OK)
		goto out;
	md = EVP_MD_CTX_new();
	if (md == NULL ||
	    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) != 1)
		goto out;
	if (EVP_DigestVerify(md, sig, sig_len, msg, sizeof(msg)) == 1)
		r = KS_OK;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	ERR_clear_error();
	return r;
}

ks_err_t ks_channel_accept(ks_channel_t *c, const ks_channel_offer_t *o,
			   const uint8_t *uid, size_t uid_len,
			   const uint8_t *agent_pub, const uint8_t *agent_nonce,
			   const uint8_t *id_sig, size_t id_sig_len,
			   const uint8_t *id_pub)
{
	uint8_t tr[KP_SECURE_TRANSCRIPT_MAX], th[32], z[32];
	uint8_t okm[2 * KP_SEAL_KEY_LEN];
	size_t tlen = 0;
	unsigned int hl = 0;
	ks_err_t r = KS_ERR_ARG;

	if (c == NULL || o == NULL || o->eph == NULL || uid == NULL ||
	    agent_pub == NULL || agent_nonce == NULL)
		goto out;
	ks_channel_close(c);
	if (kp_secure_transcript(uid, uid_len, o->pub, o->nonce, agent_pub,
				 agent_nonce, tr, sizeof(tr), &tlen) != KP_OK)
		goto out;
	r = KS_ERR_CRYPTO;
	if (EVP_Digest(tr, tlen, th, &hl, EVP_sha256(), NULL) != 1 || hl != 32)
		goto out;
	if (id_pub != NULL) {
		if (id_sig == NULL || id_sig_len == 0) {
			ks_log_warn("SECURE_OPEN: the agent did not sign the "
				    "transcript with its identity key");
			r = KS_ERR_VERIFY;
			goto out;
		}
		r = verify_sig(id_pub, th, id_sig, id_sig_len);
		if (r != KS_OK) {
			ks_log_warn("SECURE_OPEN: identity signature does "
				    "not verify: not the board on record");
			goto out;
		}
	}
	r = ecdh(o->eph, agent_pub, z);
	if (r != KS_OK)
		goto out;
	r = hkdf(th, z, okm, sizeof(okm));
	if (r != KS_OK)
		goto out;
	memcpy(c->k_h2a, okm, KP_SEAL_KEY_LEN);
	memcpy(c->k_a2h, okm + KP_SEAL_KEY_LEN, KP_SEAL_KEY_LEN);
	c->ctr = 0;
	c->authenticated = id_pub != NULL;
	c->open = true;
out:
	OPENSSL_cleanse(z, sizeof(z));
	OPENSSL_cleanse(okm, sizeof(okm));
	return r;
}

/* AES-256-GCM, one shot; in and out may be the same buffer. */
static int gcm(int enc, const uint8_t key[32], const uint8_t nonce[12],
	       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n,
	       uint8_t *out, uint8_t tag[16])
{
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	int ok = 0, len = 0;

	if (x == NULL || n > INT32_MAX || aad_len > INT32_MAX)
		goto out;
	if (EVP_CipherInit_ex(x, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) !=
		    1 ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
	    EVP_CipherInit_ex(x, NULL, NULL, key, nonce, enc) != 1 ||
	    EVP_CipherUpdate(x, NULL, &len, aad, (int)aad_len) != 1)
		goto out;
	if (n > 0 && EVP_CipherUpdate(x, out, &len, in, (int)n) != 1)
		goto out;
	if (!enc && EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(x, out + n, &len) != 1)
		goto out;
	if (enc && EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
		goto out;
	ok = 1;
out:
	EVP_CIPHER_CTX_free(x); /* clears the key schedule */
	ERR_clear_error();
	return ok;
}

ks_err_t ks_channel_seal(const ks_channel_t *c, kp_hdr_t *h,
			 const uint8_t *plain, size_t n, uint8_t *out,
			 size_t cap, size_t *out_len)
{
	uint8_t nonce[KP_SEAL_NONCE_LEN], aad[KP_SEAL_AAD_LEN];

	if (c == NULL || h == NULL || out == NULL || out_len == NULL ||
	    (plain == NULL && n > 0))
		return KS_ERR_ARG;
	if (!c->open)
		return KS_ERR_STATE;
	if (n > KP_SEAL_MAX_PLAIN || cap < n + KP_SEAL_OVERHEAD ||
	    c->ctr > KP_SEAL_CTR_MAX)
		return KS_ERR_ARG;
	h->flags = (uint8_t)(h->flags | KP_FLAG_SEALED);
	h->len = (uint16_t)(n + KP_SEAL_OVERHEAD);
	kp_put_le32(out, c->ctr);
	kp_seal_nonce((h->flags & KP_FLAG_RESPONSE) != 0 ? KP_SEAL_DIR_A2H
							 : KP_SEAL_DIR_H2A,
		      h->type, c->ctr, nonce);
	kp_seal_aad(h, c->ctr, aad);
	if (!gcm(1, c->k_h2a, nonce, aad, sizeof(aad), plain, n,
		 out + KP_SEAL_CTR_LEN, out + KP_SEAL_CTR_LEN + n))
		return KS_ERR_CRYPTO;
	*out_len = n + KP_SEAL_OVERHEAD;
	return KS_OK;
}

kp_err_t ks_channel_unseal_rsp(const ks_channel_t *c, const kp_hdr_t *h,
			       const uint8_t *p, uint32_t ctr, uint8_t *plain,
			       size_t cap, size_t *plain_len)
{
	uint8_t nonce[KP_SEAL_NONCE_LEN], aad[KP_SEAL_AAD_LEN], tag[16];
	size_t ct_len = 0;
	uint32_t got = 0;
	kp_err_t e;

	if (c == NULL || h == NULL || p == NULL || plain == NULL ||
	    plain_len == NULL)
		return KP_ERR_ARG;
	if (!c->open || (h->flags & KP_FLAG_RESPONSE) == 0)
		return KP_ERR_SEAL_AUTH;
	e = kp_seal_split(p, h->len, &got, &ct_len);
	if (e != KP_OK)
		return KP_ERR_SEAL_AUTH;
	if (ct_len > cap)
		return KP_ERR_NOSPACE;
	memcpy(tag, p + KP_SEAL_CTR_LEN + ct_len, sizeof(tag));
	kp_seal_nonce(KP_SEAL_DIR_A2H, h->type, got, nonce);
	kp_seal_aad(h, got, aad);
	if (!gcm(0, c->k_a2h, nonce, aad, sizeof(aad), p + KP_SEAL_CTR_LEN,
		 ct_len, plain, tag)) {
		OPENSSL_cleanse(plain, ct_len);
		return KP_ERR_SEAL_AUTH;
	}
	e = kp_seal_check_ctr(ctr, got);
	if (e != KP_OK) {
		OPENSSL_cleanse(plain, ct_len);
		return e;
	}
	*plain_len = ct_len;
	return KP_OK;
}
