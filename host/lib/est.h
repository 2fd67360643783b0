/*
 * kiln station library: field enrollment over EST (RFC 7030), simple
 * enrollment only.
 *
 * A device provisioned at the factory with a claim credential (a profile
 * with credential = claim) or a factory identity connects to the
 * station's enrollment service over TLS 1.3 with that certificate as its
 * client certificate, sends a PKCS#10 request for a key it generated, and
 * receives its operational certificate, issued through the signer under
 * the operational profile and recorded in the registry and audit log
 * (host/lib/registry.h, "field enrollment").
 *
 * The HTTP/1.1 subset (docs/bootstrap.md has the full statement):
 *  - one request per connection ("Connection: close" is always answered);
 *  - request line "METHOD SP /path SP HTTP/1.1" (or HTTP/1.0), at most
 *    KS_EST_LINE_MAX bytes; the whole head at most KS_EST_HEAD_MAX bytes
 *    and KS_EST_HEADERS_MAX header lines, each "Name: value" with a token
 *    name; obsolete line folding, NUL and bare CR are refused;
 *  - a body only with Content-Length (one, decimal, at most
 *    KS_EST_BODY_MAX); Transfer-Encoding is refused (501);
 *  - GET /.well-known/est/cacerts and POST /.well-known/est/simpleenroll
 *    (no CA label, no other EST operation: 404); other methods 405.
 *  - bodies are base64 (RFC 7030 section 4 as clarified by RFC 8951: a
 *    Content-Transfer-Encoding header is accepted and ignored; line
 *    breaks inside the base64 are allowed).
 * Errors are answered with a status and a one-line text/plain reason.
 */
#ifndef KILN_HOST_LIB_EST_H
#define KILN_HOST_LIB_EST_H

#include <stddef.h>
#include <stdint.h>

#include "host/lib/err.h"
#include "host/lib/profile.h"
#include "host/lib/registry.h"
#include "host/lib/signer.h"

#define KS_EST_PATH_CACERTS "/.well-known/est/cacerts"
#define KS_EST_PATH_SIMPLEENROLL "/.well-known/est/simpleenroll"

#define KS_EST_LINE_MAX 512u     /* request line, bytes without CRLF */
#define KS_EST_HEAD_MAX 4096u    /* request line + headers + blank line */
#define KS_EST_HEADERS_MAX 32u   /* header lines */
#define KS_EST_BODY_MAX 8192u    /* Content-Length */
#define KS_EST_REASON_MAX 160u

#define KS_EST_CONNS_DEFAULT 16u       /* connections served at once */
#define KS_EST_TIMEOUT_MS_DEFAULT 10000u /* per connection, whole exchange */

typedef enum {
	KS_EST_OP_NONE = 0,
	KS_EST_OP_CACERTS = 1,      /* GET  /.well-known/est/cacerts */
	KS_EST_OP_SIMPLEENROLL = 2, /* POST /.well-known/est/simpleenroll */
} ks_est_op_t;

/** A parsed request head. */
typedef struct {
	ks_est_op_t op;
	size_t head_len;       /* bytes of the head, blank line included */
	size_t content_length; /* 0 when absent */
	int has_content_length;
	int content_type_pkcs10; /* Content-Type: application/pkcs10 */
	int status;              /* HTTP status of a refusal (4xx/5xx) */
	char reason[KS_EST_REASON_MAX];
} ks_est_req_t;

/**
 * Parse the request head at the start of buf[0..len) (untrusted bytes).
 * Returns 1 when the head is complete and acceptable (req filled; the
 * body starts at buf + req->head_len), 0 when more bytes are needed (only
 * while len < KS_EST_HEAD_MAX), or -1 when the request is refused:
 * req->status and req->reason say why.
 */
__attribute__((warn_unused_result))
int ks_est_parse_head(const uint8_t *buf, size_t len, ks_est_req_t *req);

/** A PKCS#10 request that passed ks_est_csr_parse(). */
typedef struct {
	uint8_t uid[KS_ISSUE_UID_MAX];
	size_t uid_len;
	uint8_t spki[KS_ISSUE_SPKI_MAX]; /* DER SubjectPublicKeyInfo */
	size_t spki_len;
	uint8_t spki_sha256[32];         /* canonical, as the registry keeps */
} ks_est_csr_t;

/**
 * Decode a base64 PKCS#10 body (untrusted) and check it: DER without
 * trailing bytes, an EC P-256 key, a valid self-signature, and exactly
 * one SAN URI urn:kiln:uid:<lowercase hex> (4..32 bytes) in its
 * extensionRequest. KS_ERR_PROTO for bad encoding, KS_ERR_POLICY for a
 * request that is well-formed but not acceptable; the reason goes to why.
 */
__attribute__((warn_unused_result))
ks_err_t ks_est_csr_parse(const uint8_t *body, size_t len, ks_est_csr_t *out,
			  char *why, size_t whylen);

/**
 * A base64 (64-character lines, CRLF) degenerate PKCS#7 SignedData
 * "certs-only" holding the @n DER certificates ders[i] (RFC 7030 4.1.3 /
 * 4.2.3). *out is malloc'ed (free()), *out_len excludes the NUL.
 */
__attribute__((warn_unused_result))
ks_err_t ks_est_certs_only(const uint8_t *const *ders, const size_t *lens,
			   size_t n, char **out, size_t *out_len);

/** Configuration of the enrollment service. */
typedef struct {
	const char *listen;    /* "HOST:PORT" (IPv4 or [IPv6]; port 0: any) */
	const char *cert_pem;  /* server certificate (and chain), PEM */
	const char *key_pem;   /* its private key, PEM */
	const char *trust_pem; /* CA chain client certificates must verify
				  against (the kiln CA chain) */
	const char *profile;   /* operational profile (registered with the
				  signer) */
	const ks_profile_t *const *profiles; /* configured profiles: a
						credential's profile gives
						its claim_uses */
	size_t nprofiles;
	ks_signer_t *signer;   /* borrowed */
	ks_reg_t *reg;         /* borrowed */
	int reenroll;          /* 1: a new key may replace a live
				  operational identity of the same UID */
	unsigned max_conns;    /* 0: KS_EST_CONNS_DEFAULT */
	unsigned timeout_ms;   /* 0: KS_EST_TIMEOUT_MS_DEFAULT */
} ks_est_config_t;

typedef struct ks_est_server ks_est_server_t;

/**
 * Load the TLS material, bind the listening socket and start serving in
 * a thread (each connection in its own thread, at most max_conns at
 * once; more are closed at once). Errors go to err (KS_ERR_CONFIG for a
 * bad setting or file, KS_ERR_IO when the address cannot be bound).
 */
__attribute__((warn_unused_result))
ks_err_t ks_est_server_start(const ks_est_config_t *cfg,
			     ks_est_server_t **out, char *err, size_t errlen);

/** The TCP port the service listens on (useful after port 0). */
uint16_t ks_est_server_port(const ks_est_server_t *srv);

/** Counters since start (for status displays and tests). */
typedef struct {
	uint64_t connections;
	uint64_t enrolled;
	uint64_t refused;
	uint64_t tls_failed;
	uint64_t busy; /* connections closed at the limit */
} ks_est_stats_t;

/** Copy the counters of @srv. */
void ks_est_server_stats(ks_est_server_t *srv, ks_est_stats_t *out);

/**
 * Stop accepting, wait for the connections in progress (each ends within
 * its timeout), free everything; *srv = NULL. Accepts NULL.
 */
void ks_est_server_stop(ks_est_server_t **srv);

#endif
