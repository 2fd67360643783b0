/*
 * kiln runtime identity API: field enrollment (kid_enroll_*) and the
 * operational identity it stores (kid_op_*). Native builds only (needs
 * the TLS client of kiln_mbedtls_app_config.h).
 *
 * A device provisioned at the factory with a claim credential (or a
 * factory identity) opens it with kid_open() and calls kid_enroll(): a
 * fresh P-256 operational key is generated on the device, a PKCS#10
 * request for it (subject CN = the device serial, SAN URI
 * urn:kiln:uid:<hex>) is POSTed to the station's EST simpleenroll over
 * TLS 1.3, authenticated with the factory credential (kid_pk_setup: the
 * OTP key never leaves device/identity). The base64 PKCS#7 certs-only
 * answer is checked (the certificate carries the new key and chains to
 * the kiln CA of the factory chain) and the operational identity stored.
 *
 * Storage: one sector of the application-owned flash, outside the
 * locked identity sectors (KA_REC_ID_SECTORS and above: the lock never
 * write-protects it). Record (little-endian):
 *   u32 magic "KOP1" | u32 version 1 | u32 body length | u32 reserved
 *   body: 12-byte GCM nonce | 16-byte tag | 32-byte encrypted scalar |
 *         u16 cert length | cert DER | u16 chain length | chain DER
 * The scalar is encrypted with AES-256-GCM under kid_derive_key("kiln
 * operational key v1"), an HKDF of the OTP device key, with the header,
 * certificate and chain as associated data: a copy of the flash is
 * useless on another part, and any change to the record is detected.
 * Docs: docs/identity-api.md, docs/bootstrap.md.
 */
#ifndef KILN_DEVICE_IDENTITY_ENROLL_H
#define KILN_DEVICE_IDENTITY_ENROLL_H

#include <stddef.h>
#include <stdint.h>

#include "mbedtls/pk.h"
#include "mbedtls/x509_crt.h"

#include "device/identity/identity.h"

#define KID_OP_MAGIC 0x31504F4Bu /* "KOP1" little-endian */
#define KID_OP_RECORD_MAX 4096u  /* one sector */
#define KID_ENROLL_RESPONSE_MAX 16384u

/** Where and how to enroll. */
typedef struct {
	const char *host;            /* enrollment service address */
	const char *port;
	const char *server_name;     /* checked against the server
					certificate; NULL: not checked */
	const mbedtls_x509_crt *server_ca; /* trust anchors of the server */
	uint32_t timeout_ms;         /* per read/write; 0: 10000 */
	uint32_t sector;             /* application flash sector for the
					operational identity */
} kid_enroll_cfg_t;

/**
 * Enroll (see above) and store the operational identity in cfg->sector.
 * Needs an open identity (kid_open) and psa_crypto_init() done (TLS 1.3).
 * On KID_ERR_REFUSED *http_status (may be NULL) is the HTTP status and
 * why the server's reason; other failures write a reason to why too.
 * Nothing is stored unless every check passed.
 */
kid_err_t kid_enroll(const kid_enroll_cfg_t *cfg, int *http_status,
		     char *why, size_t whylen) KID_WUR;

/**
 * Check the operational identity stored in @sector (record structure,
 * GCM tag under this device's key, key matches the certificate) and make
 * it the open one. KID_ERR_NO_OPERATIONAL when the sector holds none.
 */
kid_err_t kid_op_open(uint32_t sector) KID_WUR;

/** Forget the open operational identity. Idempotent. */
void kid_op_close(void);

/**
 * Set up pk (mbedtls_pk_init'ed) as the operational key: the scalar is
 * decrypted into pk (a software key, unlike the OTP device key: free pk
 * with mbedtls_pk_free as soon as the connection is set up and closed).
 */
kid_err_t kid_op_pk_setup(mbedtls_pk_context *pk) KID_WUR;

/** Parse the operational certificate, then its chain, into crt. */
kid_err_t kid_op_x509_chain(mbedtls_x509_crt *crt) KID_WUR;

#endif
