/*
 * kiln station library: signer internals shared by signer.c (the
 * ks_signer_t front) and signer_proc.c (the signer process and its
 * client). Nothing else includes this.
 */
#ifndef KILN_HOST_LIB_SIGNER_PRIV_H
#define KILN_HOST_LIB_SIGNER_PRIV_H

#include <sys/types.h>

#include <openssl/x509.h>

#include "host/lib/signer.h"

/**
 * A ks_signer_t that forwards to a signer process on @fd. Takes @chain
 * (issuing CA first) and, on success only, @fd.
 */
__attribute__((warn_unused_result))
ks_err_t ks_signer_new_remote(int fd, pid_t pid, STACK_OF(X509) *chain,
			      ks_signer_t **out);

/** One ISSUE round trip on @fd (the caller serialises use of @fd). */
__attribute__((warn_unused_result))
ks_err_t ks_signer_remote_issue(int fd, const ks_issue_req_t *req,
				ks_issued_t *out);

/** Close the client end and reap the signer process (pid > 0). */
void ks_signer_remote_close(int fd, pid_t pid);

#endif
