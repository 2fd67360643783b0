/*
 * Fault sweeps: the invariants every run must leave behind, checked from
 * the outside (the registry file read with SQLite, the boards over their
 * link, the audit chain with the `kiln` CLI).
 */
#ifndef KILN_TESTS_FAULTS_FAULT_CHECK_H
#define KILN_TESTS_FAULTS_FAULT_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#define FC_MAX_REASONS 64

/* Outcomes seen, and how often each distinct reason occurred. */
typedef struct {
	int violations;
	long sessions, active, failed, voided, scrapped, unfinished;
	size_t nreasons;
	struct {
		char state[12];
		char text[160];
		long count;
	} reasons[FC_MAX_REASONS];
} fc_tally_t;

/** Print one violation (with a context prefix) and count it. */
void fc_violation(fc_tally_t *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/**
 * Check the registry file `db` (opened read-only). `final`: every session
 * must have ended (ACTIVE, FAILED, VOID or SCRAPPED) and no certificate
 * may be left ISSUED. Always: ended sessions carry a reason unless ACTIVE;
 * device serials and certificate serials are unique; a certificate of an
 * ended, non-ACTIVE session is VOID; an ACTIVE session has its ACTIVE (or
 * SUPERSEDED) certificate, whose DER carries the recorded key hash; no UID
 * has two live identities (two ACTIVE sessions or two certificates that
 * are ISSUED/ACTIVE); an ACTIVE device row agrees with its session and
 * certificate. Returns the number of violations added to t.
 */
int fc_check_registry(const char *db, bool final, fc_tally_t *t);

/**
 * Count the outcomes of sessions with id > after_id into t (sessions,
 * active, ..., reasons). Returns the highest session id seen.
 */
long long fc_collect_outcomes(const char *db, long long after_id,
			      fc_tally_t *t);

/** Board states as fc_check_board reports them. */
typedef enum {
	FC_BOARD_UNREACHABLE = -1,
	FC_BOARD_BLANK = 0,
	FC_BOARD_KEYED = 1,
	FC_BOARD_COMMITTED = 2,
	FC_BOARD_LOCKED = 3,
} fc_board_t;

/**
 * HELLO the board at link spec `spec` and compare it with the registry:
 * a board holding an identity must be ACTIVE in the registry with the
 * same identity digest, a public key hashing to the ACTIVE certificate's
 * key hash and the same lock bits; a device ACTIVE in the registry must
 * hold exactly that. With `final`, the board must be ACTIVE. The board's
 * UID (hex) goes to uid_hex (65 bytes) when not NULL. Returns its state.
 */
fc_board_t fc_check_board(const char *db, const char *spec, bool final,
			  fc_tally_t *t, char *uid_hex);

/**
 * `kiln audit verify --db DB --ca CHAIN --station-pub PUB`; true if it
 * exits 0 and says "audit OK". The output goes to out.
 */
bool fc_audit_verify(const char *kiln, const char *db, const char *chain,
		     const char *pub, char *out, size_t outlen);

/** Add (state, reason) to t's reason histogram. */
void fc_reason(fc_tally_t *t, const char *state, const char *reason);

/** Print the reason histogram, one line each, indented. */
void fc_print_reasons(const fc_tally_t *t);

/** Seconds since the first call (monotonic). */
double fc_elapsed(void);

#endif
