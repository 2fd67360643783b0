/*
 * kiln station library: exports of the registry for auditors and
 * customers — the whole record as CSV or JSON, and per-lot manifests
 * signed with the station key. Formats: docs/registry.md.
 */
#ifndef KILN_HOST_LIB_EXPORT_H
#define KILN_HOST_LIB_EXPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/evp.h>

#include "host/lib/registry.h"

/**
 * Write devices, certificates and audit events to `out` as "csv" or
 * "json". CSV: three sections (devices, certificates, events), each a
 * header line starting with "record" then rows whose first field is the
 * section name, blank line between sections; BLOBs as lower-case hex,
 * certificate DER as base64.
 */
KS_REG_WUR int ks_export_audit(ks_reg_t *reg, const char *format, FILE *out);

/**
 * Build the manifest of lot `lot` (JSON, ends with a newline) and sign its
 * exact bytes with `key` (ECDSA P-256 / SHA-256, DER, base64). Both
 * outputs are malloc'ed (free()).
 */
KS_REG_WUR int ks_export_manifest(ks_reg_t *reg, const char *lot,
				  EVP_PKEY *key, char **manifest,
				  size_t *manifest_len, char **sig_b64);

/**
 * ks_export_manifest() into `path` and the detached signature into
 * "<path>.sig" (base64 + newline). Files are written via a temporary name
 * and renamed.
 */
KS_REG_WUR int ks_export_manifest_write(ks_reg_t *reg, const char *lot,
					EVP_PKEY *key, const char *path);

/** KS_OK when `sig_b64` (trailing whitespace allowed) is a valid station
 *  signature of exactly `manifest`; KS_ERR_VERIFY otherwise. */
KS_REG_WUR int ks_export_manifest_verify(const uint8_t *manifest, size_t len,
					 const char *sig_b64, EVP_PKEY *pub);

/** Verify "<path>" against "<path>.sig" with `pub`. */
KS_REG_WUR int ks_export_manifest_verify_file(const char *path,
					      EVP_PKEY *pub);

#endif
