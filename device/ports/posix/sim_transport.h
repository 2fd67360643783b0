/*
 * POSIX port: the station link (ka_hal_tx / ka_hal_rx) over a
 * pseudo-terminal, a unix stream socket or stdin/stdout.
 */
#ifndef KILN_DEVICE_PORTS_POSIX_SIM_TRANSPORT_H
#define KILN_DEVICE_PORTS_POSIX_SIM_TRANSPORT_H

typedef enum {
	KA_SIM_LINK_PTY = 0,   /* print "PTY /dev/pts/N" */
	KA_SIM_LINK_UNIX = 1,  /* print "UNIX PATH", one client at a time */
	KA_SIM_LINK_STDIO = 2, /* frames on stdin/stdout; EOF ends */
} ka_sim_link_t;

/**
 * Open the link and announce it on stdout (one line, flushed). path is
 * the socket path for KA_SIM_LINK_UNIX. 0 or -1 (message on stderr).
 */
int ka_sim_link_open(ka_sim_link_t kind, const char *path)
	__attribute__((warn_unused_result));

/** Close the link (removes the unix socket file). */
void ka_sim_link_close(void);

#endif
