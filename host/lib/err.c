#include "host/lib/err.h"

const char *ks_strerror(int err)
{
	switch (err) {
#define KS_X(name, val, str) \
	case val:            \
		return str;
		KS_ERRORS(KS_X)
#undef KS_X
	default:
		return "unknown error";
	}
}
