/*
 * Fuzz target: the enrollment service's request parser (host/lib/est.c):
 * the HTTP head (ks_est_parse_head) and, when the head is complete, the
 * body as a base64 PKCS#10 (ks_est_csr_parse), as the service runs them
 * on bytes from an authenticated but untrusted client.
 */
#include <stdlib.h>
#include <string.h>

#include "host/lib/est.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ks_est_req_t req;
	ks_est_csr_t csr;
	char why[KS_EST_REASON_MAX];
	int r = ks_est_parse_head(data, size, &req);

	if (r < 0 && (req.status < 400 || req.status > 599 ||
		      memchr(req.reason, '\0', sizeof(req.reason)) == NULL))
		abort();
	if (r == 0 && size >= KS_EST_HEAD_MAX)
		abort(); /* "need more" only below the head limit */
	if (r == 1) {
		size_t body = size - req.head_len;

		if (req.head_len > size || req.head_len > KS_EST_HEAD_MAX ||
		    req.content_length > KS_EST_BODY_MAX)
			abort();
		if (body > req.content_length)
			body = req.content_length;
		if (ks_est_csr_parse(data + req.head_len, body, &csr, why,
				     sizeof(why)) == KS_OK &&
		    (csr.uid_len < KS_ISSUE_UID_MIN ||
		     csr.uid_len > KS_ISSUE_UID_MAX || csr.spki_len == 0))
			abort();
	}
	return 0;
}
