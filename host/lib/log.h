/*
 * kiln station library: logging. Messages go to stderr (or syslog once
 * ks_log_use_syslog() is called). Never log key material.
 */
#ifndef KILN_HOST_LIB_LOG_H
#define KILN_HOST_LIB_LOG_H

typedef enum {
	KS_LOG_ERROR = 0,
	KS_LOG_WARN = 1,
	KS_LOG_INFO = 2,
	KS_LOG_DEBUG = 3,
} ks_log_level_t;

void ks_log_set_level(ks_log_level_t level);
ks_log_level_t ks_log_get_level(void);
/** Parse "error|warn|info|debug"; returns -1 on anything else. */
int ks_log_parse_level(const char *s);
void ks_log_use_syslog(const char *ident);

void ks_log_msg(ks_log_level_t level, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define ks_log_error(...) ks_log_msg(KS_LOG_ERROR, __func__, __VA_ARGS__)
#define ks_log_warn(...) ks_log_msg(KS_LOG_WARN, __func__, __VA_ARGS__)
#define ks_log_info(...) ks_log_msg(KS_LOG_INFO, __func__, __VA_ARGS__)
#define ks_log_debug(...) ks_log_msg(KS_LOG_DEBUG, __func__, __VA_ARGS__)

#endif
