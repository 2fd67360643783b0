/*
 * kiln station library: one error type with stable codes that only grow.
 */
#ifndef KILN_HOST_LIB_ERR_H
#define KILN_HOST_LIB_ERR_H

#define KS_ERRORS(X)                                                    \
	X(KS_OK, 0, "success")                                          \
	X(KS_ERR_ARG, 1, "invalid argument")                            \
	X(KS_ERR_NOMEM, 2, "out of memory")                             \
	X(KS_ERR_IO, 3, "I/O error")                                    \
	X(KS_ERR_TIMEOUT, 4, "timed out")                               \
	X(KS_ERR_CLOSED, 5, "link closed (device gone)")                \
	X(KS_ERR_PROTO, 6, "protocol error")                            \
	X(KS_ERR_AGENT, 7, "agent reported an error")                   \
	X(KS_ERR_CRYPTO, 8, "cryptographic operation failed")           \
	X(KS_ERR_VERIFY, 9, "verification failed")                      \
	X(KS_ERR_DB, 10, "registry error")                              \
	X(KS_ERR_CONFIG, 11, "configuration error")                     \
	X(KS_ERR_STATE, 12, "not allowed in the current state")         \
	X(KS_ERR_DUPLICATE, 13, "duplicate (already exists)")           \
	X(KS_ERR_NOTFOUND, 14, "not found")                             \
	X(KS_ERR_AUDIT, 15, "audit log verification failed")           \
	X(KS_ERR_QUOTA, 16, "quota exhausted")                          \
	X(KS_ERR_POLICY, 17, "refused by policy")                       \
	X(KS_ERR_BUSY, 18, "resource busy")                             \
	X(KS_ERR_UNSUPPORTED, 19, "not supported")                      \
	X(KS_ERR_INTERNAL, 20, "internal error")                        \
	X(KS_ERR_UNAVAILABLE, 21, "registry unavailable (database unreachable)")

typedef enum {
#define KS_X(name, val, str) name = val,
	KS_ERRORS(KS_X)
#undef KS_X
} ks_err_t;

/** Text for a ks_err_t; never NULL. */
const char *ks_strerror(int err);

#endif
