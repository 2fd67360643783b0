#include <string.h>

#include "mbedtls/platform_util.h"

#include "device/core/channel.h"
#include "protocol/le.h"

void ka_channel_close(ka_channel_t *c)
{
	mbedtls_platform_zeroize(c, sizeof(*c));
}

kp_status_t ka_channel_open(ka_channel_t *c, const ka_crypto_env_t *env,
			    const uint8_t *key, const uint8_t *uid,
			    size_t uid_len,
			    const uint8_t host_pub[KP_SECURE_PUB_LEN],
			    const uint8_t host_nonce[KP_SECURE_NONCE_LEN],
			    uint8_t pub[KP_SECURE_PUB_LEN],
			    uint8_t nonce[KP_SECURE_NONCE_LEN],
			    uint8_t th[32])
{
	uint8_t z[32], okm[2 * KP_SEAL_KEY_LEN];
	uint8_t tr[KP_SECURE_TRANSCRIPT_MAX];
	size_t tlen = 0;
	kp_status_t r;

	ka_channel_close(c);
	r = ka_crypto_ecdh(env, key, host_pub, pub, nonce, z);
	if (r != KP_ST_OK)
		goto out;
	if (kp_secure_transcript(uid, uid_len, host_pub, host_nonce, pub,
				 nonce, tr, sizeof(tr), &tlen) != KP_OK) {
		r = KP_ST_INTERNAL;
		goto out;
	}
	r = ka_crypto_sha256(tr, tlen, th);
	if (r != KP_ST_OK)
		goto out;
	r = ka_crypto_hkdf(env, th, z, (const uint8_t *)KP_SECURE_HKDF_INFO,
			   KP_SECURE_HKDF_INFO_LEN, okm, sizeof(okm));
	if (r != KP_ST_OK)
		goto out;
	memcpy(c->k_h2a, okm, KP_SEAL_KEY_LEN);
	memcpy(c->k_a2h, okm + KP_SEAL_KEY_LEN, KP_SEAL_KEY_LEN);
	c->next = 0;
	c->open = true;
out:
	mbedtls_platform_zeroize(z, sizeof(z));
	mbedtls_platform_zeroize(okm, sizeof(okm));
	return r;
}

kp_status_t ka_channel_unseal(ka_channel_t *c, const kp_hdr_t *h, uint8_t *p,
			      size_t *plain_len, uint32_t *ctr)
{
	uint8_t nonce[KP_SEAL_NONCE_LEN], aad[KP_SEAL_AAD_LEN];
	size_t ct_len = 0;
	uint32_t got = 0;
	kp_err_t e;
	kp_status_t r;

	if (!c->open)
		return KP_ST_NO_CHANNEL;
	/* a request: the RESPONSE flag is clear (the caller checked it) */
	if (kp_seal_split(p, h->len, &got, &ct_len) != KP_OK)
		return KP_ST_SEAL_AUTH;
	kp_seal_nonce(KP_SEAL_DIR_H2A, h->type, got, nonce);
	kp_seal_aad(h, got, aad);
	/* authenticate first: only a genuine message is called a replay */
	r = ka_crypto_gcm_open(c->k_h2a, nonce, aad, sizeof(aad),
			       p + KP_SEAL_CTR_LEN, ct_len,
			       p + KP_SEAL_CTR_LEN + ct_len);
	if (r != KP_ST_OK)
		return r;
	e = kp_seal_check_ctr(c->next, got);
	if (e != KP_OK) {
		mbedtls_platform_zeroize(p, h->len);
		return kp_seal_status(e);
	}
	c->next = got + 1u;
	*plain_len = ct_len;
	*ctr = got;
	return KP_ST_OK;
}

kp_status_t ka_channel_seal(const ka_channel_t *c, kp_hdr_t *h, uint32_t ctr,
			    uint8_t *buf, size_t n, size_t *out_len)
{
	uint8_t nonce[KP_SEAL_NONCE_LEN], aad[KP_SEAL_AAD_LEN];
	kp_status_t r;

	if (!c->open)
		return KP_ST_NO_CHANNEL;
	if (n > KP_SEAL_MAX_PLAIN)
		return KP_ST_INTERNAL;
	memmove(buf + KP_SEAL_CTR_LEN, buf, n);
	kp_put_le32(buf, ctr);
	h->len = (uint16_t)(n + KP_SEAL_OVERHEAD);
	kp_seal_nonce(KP_SEAL_DIR_A2H, h->type, ctr, nonce);
	kp_seal_aad(h, ctr, aad);
	r = ka_crypto_gcm_seal(c->k_a2h, nonce, aad, sizeof(aad),
			       buf + KP_SEAL_CTR_LEN, n,
			       buf + KP_SEAL_CTR_LEN + n);
	if (r == KP_ST_OK)
		*out_len = n + KP_SEAL_OVERHEAD;
	return r;
}
