#include "protocol/error.h"

const char *kp_strerror(int err)
{
	switch (err) {
#define KP_X(name, val, str) \
	case val:            \
		return str;
		KP_ERRORS(KP_X)
#undef KP_X
	default:
		return "unknown error";
	}
}

const char *kp_err_name(int err)
{
	switch (err) {
#define KP_X(name, val, str) \
	case val:            \
		return #name;
		KP_ERRORS(KP_X)
#undef KP_X
	default:
		return "KP_ERR_UNKNOWN";
	}
}

const char *kp_status_str(int status)
{
	switch (status) {
#define KP_X(name, val, str) \
	case val:            \
		return str;
		KP_STATUSES(KP_X)
#undef KP_X
	default:
		return "unknown status";
	}
}
