/*
 * Test support: a private SoftHSM2 token (real PKCS#11 module) in a
 * temporary directory, created with softhsm2-util.
 */
#ifndef KILN_TESTS_INTEGRATION_SOFTHSM_H
#define KILN_TESTS_INTEGRATION_SOFTHSM_H

#include <limits.h>
#include <stddef.h>

typedef struct {
	char dir[PATH_MAX];     /* token directory and config live here */
	char conf[PATH_MAX];    /* SOFTHSM2_CONF (exported by init) */
	char pin_file[PATH_MAX];
	const char *module;     /* libsofthsm2.so */
} th_softhsm_t;

#define TH_TOKEN "kiln"
#define TH_PIN "20461"
#define TH_SO_PIN "99887766"

/** The SoftHSM2 PKCS#11 module, or NULL if the package is missing. */
const char *th_softhsm_module(void);

/**
 * Create @dir/tokens, a softhsm2.conf pointing there (exported as
 * SOFTHSM2_CONF), an initialised token TH_TOKEN with TH_PIN, and a PIN file
 * (0600). Returns 0 or -1 (reason on stderr).
 */
int th_softhsm_init(th_softhsm_t *h, const char *dir);

/** "pkcs11:token=kiln;object=LABEL?pin-source=file:PIN_FILE" into out. */
void th_softhsm_uri(const th_softhsm_t *h, const char *label, char *out,
		    size_t outlen);

#endif
