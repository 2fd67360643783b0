/*
 * Fuzz target: what the station does with certificate material a board
 * or the registry hands it (host/lib): ks_csr_verify() on a GENKEY CSR,
 * ks_ca_verify_der() on a certificate against a fixed test CA,
 * ks_pubkey_from_point() / ks_pubkey_spki_point() on a public key, and
 * ks_verify_challenge() on a CHALLENGE signature.
 *
 * First byte (mod 4) selects:
 *   0  CSR: 65-byte point the CSR must carry, then the DER CSR
 *   1  certificate: DER, verified against the CA below at a fixed time
 *   2  point: 65 bytes; the rest also as a SubjectPublicKeyInfo
 *   3  challenge: 65-byte point, uid len u8, uid, nonce len u8, nonce,
 *      then the DER signature
 * Invariants: results are one of the documented codes; an accepted CSR
 * carries the given point; a point accepted as a key converts back to
 * the same bytes; an SPKI accepted by the fast path is exactly the
 * canonical encoding of its point.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "host/lib/agent.h"
#include "host/lib/ca.h"
#include "host/lib/hostkey.h"
#include "host/lib/log.h"
#include "tests/fuzz/fuzz.h"

#define CHECK(c)                                                          \
	do {                                                              \
		if (!(c)) {                                               \
			fprintf(stderr, "fuzz_x509: %s:%d: %s\n", __FILE__, \
				__LINE__, #c);                            \
			abort();                                          \
		}                                                         \
	} while (0)

/* A self-signed P-256 test root (key not kept; the seed corpus holds a
 * certificate it issued). Valid 2026-11-25 .. 2126. */
static const char ca_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBmTCCAT+gAwIBAgIUali41Gtkkr1iRE0bGN8UMGMwOmAwCgYIKoZIzj0EAwIw\n"
	"GTEXMBUGA1UEAwwOa2lsbiBmdXp6IHJvb3QwIBcNMjYxMTI1MTYxMjA1WhgPMjEy\n"
	"NjExMDExNjEyMDVaMBkxFzAVBgNVBAMMDmtpbG4gZnV6eiByb290MFkwEwYHKoZI\n"
	"zj0CAQYIKoZIzj0DAQcDQgAE32eDbcEeqt/ggJioxUrGqTuw+gdYtvk0YhaKUVqL\n"
	"feuedP+g2uE+AudLiwxnB0vhUQumsKVLjQtYNvo8bK3s9KNjMGEwHQYDVR0OBBYE\n"
	"FIUh37iBmZNQx7ME74Z1OH8iomzRMB8GA1UdIwQYMBaAFIUh37iBmZNQx7ME74Z1\n"
	"OH8iomzRMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49\n"
	"BAMCA0gAMEUCIQCWvZJOOaLqavP3EWUCG6aBZQPwy5bDS5zvnNRbRyfNFwIgXv3H\n"
	"5XIoz7eS8SmQmBpNPWtgFSblAB71E8HeK7+ggk8=\n"
	"-----END CERTIFICATE-----\n";

static STACK_OF(X509) *chain;

static void init(void)
{
	BIO *b = BIO_new_mem_buf(ca_pem, (int)sizeof(ca_pem) - 1);
	X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

	chain = sk_X509_new_null();
	if (x == NULL || chain == NULL || sk_X509_push(chain, x) <= 0)
		abort();
	BIO_free(b);
	ks_log_set_level(KS_LOG_ERROR);
}

static void csr(const uint8_t *p, size_t n)
{
	ks_err_t r;

	if (n < KS_PUBKEY_LEN)
		return;
	r = ks_csr_verify(p + KS_PUBKEY_LEN, n - KS_PUBKEY_LEN, p);
	CHECK(r == KS_OK || r == KS_ERR_VERIFY || r == KS_ERR_ARG);
	if (r == KS_OK) {
		/* the same CSR with any other point is refused */
		uint8_t other[KS_PUBKEY_LEN];

		memcpy(other, p, sizeof(other));
		other[KS_PUBKEY_LEN - 1] ^= 1;
		CHECK(ks_csr_verify(p + KS_PUBKEY_LEN, n - KS_PUBKEY_LEN,
				    other) != KS_OK);
	}
}

static void cert(const uint8_t *p, size_t n)
{
	char why[256];
	ks_err_t r;

	why[0] = '\0';
	r = ks_ca_verify_der(chain, p, n, (time_t)1800000000, why,
			     sizeof(why));
	CHECK(r == KS_OK || r == KS_ERR_VERIFY || r == KS_ERR_ARG);
	CHECK(memchr(why, '\0', sizeof(why)) != NULL);
}

static void point(const uint8_t *p, size_t n)
{
	EVP_PKEY *k = NULL;
	uint8_t back[KS_P256_POINT_LEN], spki[KS_P256_SPKI_LEN];
	uint8_t pt[KS_P256_POINT_LEN], h[32];

	if (n >= KS_P256_POINT_LEN &&
	    ks_pubkey_from_point(p, &k) == KS_OK) {
		CHECK(k != NULL);
		CHECK(ks_pubkey_point(k, back) == KS_OK);
		CHECK(memcmp(back, p, sizeof(back)) == 0);
		CHECK(ks_pubkey_spki_sha256(k, h) == KS_OK);
		EVP_PKEY_free(k);
	}
	if (ks_pubkey_spki_point(p, n, pt) == 1) {
		CHECK(n == KS_P256_SPKI_LEN);
		ks_pubkey_spki_encode(pt, spki);
		CHECK(memcmp(spki, p, n) == 0);
	}
}

static void challenge(const uint8_t *p, size_t n)
{
	const uint8_t *pt = p, *uid, *nonce;
	size_t ul, nl;
	ks_err_t r;

	if (n < KS_PUBKEY_LEN + 1)
		return;
	p += KS_PUBKEY_LEN;
	n -= KS_PUBKEY_LEN;
	ul = p[0];
	if (ul > n - 1)
		return;
	uid = p + 1;
	p += 1 + ul;
	n -= 1 + ul;
	if (n < 1)
		return;
	nl = p[0];
	if (nl > n - 1)
		return;
	nonce = p + 1;
	p += 1 + nl;
	n -= 1 + nl;
	r = ks_verify_challenge(pt, uid, ul, nonce, nl, p, n);
	CHECK(r == KS_OK || r == KS_ERR_VERIFY || r == KS_ERR_ARG ||
	      r == KS_ERR_CRYPTO);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (chain == NULL)
		init();
	if (size < 1 || size > 8192)
		return 0;
	switch (data[0] & 3u) {
	case 0:
		csr(data + 1, size - 1);
		break;
	case 1:
		cert(data + 1, size - 1);
		break;
	case 2:
		point(data + 1, size - 1);
		break;
	default:
		challenge(data + 1, size - 1);
		break;
	}
	ERR_clear_error();
	return 0;
}
