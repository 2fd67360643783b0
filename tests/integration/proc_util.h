/*
 * Test support: child processes for the tests that run command-line
 * programs next to the station (openssl s_server, kiln-enroll, the mTLS
 * example client) and read what they printed. Helpers abort the test
 * program when memory runs out (tests only).
 */
#ifndef KILN_TESTS_PROC_UTIL_H
#define KILN_TESTS_PROC_UTIL_H

#include <sys/types.h>

/** A TCP port on 127.0.0.1 free at the time of the call; -1 if none. */
int tp_free_port(void);

/**
 * fork + exec argv (PATH searched) with stdin from /dev/null and
 * stdout+stderr to the file out (created/truncated, 0600). The child's
 * pid, or -1 if fork failed.
 */
pid_t tp_spawn(char *const argv[], const char *out);

/**
 * Wait up to ms milliseconds for pid; kill it (SIGKILL) after that.
 * Its exit status, or -1 if it did not exit normally in time.
 */
int tp_reap(pid_t pid, int ms);

/** The first 64 KiB of the file at path, NUL-terminated ("" if it cannot
 * be read); malloc'd, the caller frees it. */
char *tp_slurp(const char *path);

/** 1 once the file at path contains needle (polled every 20 ms for up
 * to ms milliseconds), else 0. */
int tp_wait_for(const char *path, const char *needle, int ms);

/**
 * With the openssl CLI at openssl_exe, a P-256 server key dir/srv.key and
 * certificate dir/srv.pem (CN and DNS SAN localhost, 2 days) issued by
 * the development CA in dir (KS_CA_FILE_CERT, KS_CA_FILE_KEY).
 * 0 on success, -1 if openssl failed.
 */
int tp_server_cert(const char *openssl_exe, const char *dir);

#endif
