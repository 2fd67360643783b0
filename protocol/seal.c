#include <string.h>

#include "protocol/le.h"
#include "protocol/seal.h"

void kp_seal_nonce(uint8_t dir, uint8_t type, uint32_t ctr,
		   uint8_t out[KP_SEAL_NONCE_LEN])
{
	memset(out, 0, KP_SEAL_NONCE_LEN);
	out[0] = dir;
	out[1] = type;
	kp_put_le32(out + 8, ctr);
}

void kp_seal_aad(const kp_hdr_t *hdr, uint32_t ctr,
		 uint8_t out[KP_SEAL_AAD_LEN])
{
	out[0] = KP_PROTO_VERSION;
	out[1] = hdr->type;
	out[2] = hdr->flags;
	out[3] = 0;
	kp_put_le16(out + 4, hdr->seq);
	kp_put_le16(out + 6, hdr->len);
	kp_put_le32(out + KP_HDR_LEN, ctr);
}

kp_err_t kp_seal_split(const uint8_t *p, size_t n, uint32_t *ctr,
		       size_t *ct_len)
{
	if (p == NULL || ctr == NULL || ct_len == NULL)
		return KP_ERR_ARG;
	if (n < KP_SEAL_OVERHEAD)
		return KP_ERR_TRUNCATED;
	*ctr = kp_get_le32(p);
	*ct_len = n - KP_SEAL_OVERHEAD;
	return KP_OK;
}

kp_err_t kp_seal_check_ctr(uint32_t expected, uint32_t got)
{
	if (got < expected)
		return KP_ERR_SEAL_REPLAY;
	if (got > expected || got > KP_SEAL_CTR_MAX)
		return KP_ERR_SEAL_ORDER;
	return KP_OK;
}

kp_status_t kp_seal_status(kp_err_t e)
{
	switch (e) {
	case KP_OK:
		return KP_ST_OK;
	case KP_ERR_SEAL_REPLAY:
		return KP_ST_SEAL_REPLAY;
	case KP_ERR_SEAL_ORDER:
		return KP_ST_SEAL_ORDER;
	default: /* truncated, forged, wrong key or direction */
		return KP_ST_SEAL_AUTH;
	}
}

kp_err_t kp_secure_transcript(const uint8_t *uid, size_t uid_len,
			      const uint8_t host_pub[KP_SECURE_PUB_LEN],
			      const uint8_t host_nonce[KP_SECURE_NONCE_LEN],
			      const uint8_t agent_pub[KP_SECURE_PUB_LEN],
			      const uint8_t agent_nonce[KP_SECURE_NONCE_LEN],
			      uint8_t *out, size_t cap, size_t *out_len)
{
	size_t n;

	if (uid == NULL || host_pub == NULL || host_nonce == NULL ||
	    agent_pub == NULL || agent_nonce == NULL || out == NULL ||
	    out_len == NULL || uid_len == 0 || uid_len > 32)
		return KP_ERR_ARG;
	n = KP_SECURE_LABEL_LEN + 1u + uid_len + 2u * KP_SECURE_PUB_LEN +
	    2u * KP_SECURE_NONCE_LEN;
	if (cap < n)
		return KP_ERR_NOSPACE;
	memcpy(out, KP_SECURE_LABEL, KP_SECURE_LABEL_LEN);
	n = KP_SECURE_LABEL_LEN;
	out[n++] = (uint8_t)uid_len;
	memcpy(out + n, uid, uid_len);
	n += uid_len;
	memcpy(out + n, host_pub, KP_SECURE_PUB_LEN);
	n += KP_SECURE_PUB_LEN;
	memcpy(out + n, host_nonce, KP_SECURE_NONCE_LEN);
	n += KP_SECURE_NONCE_LEN;
	memcpy(out + n, agent_pub, KP_SECURE_PUB_LEN);
	n += KP_SECURE_PUB_LEN;
	memcpy(out + n, agent_nonce, KP_SECURE_NONCE_LEN);
	n += KP_SECURE_NONCE_LEN;
	*out_len = n;
	return KP_OK;
}

void kp_secure_sig_message(const uint8_t th[32],
			   uint8_t out[KP_SECURE_SIG_DOMAIN_LEN + 32u])
{
	memcpy(out, KP_SECURE_SIG_DOMAIN, KP_SECURE_SIG_DOMAIN_LEN);
	memcpy(out + KP_SECURE_SIG_DOMAIN_LEN, th, 32);
}
