/* Error reports: a status code plus a sentence the caller owns. */
#include "byoai/base.h"

#include <stdio.h>
#include <string.h>

int byoai_error_set(byoai_error *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int byoai_error_prefix(byoai_error *err, const char *fmt, ...) {
    if (!err) return BYOAI_EINVAL;
    char prefix[BYOAI_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[BYOAI_ERROR_MAX];
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    return err->code;
}

void byoai_error_clear(byoai_error *err) {
    if (!err) return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *byoai_status_name(int code) {
    switch (code) {
    case BYOAI_OK: return "ok";
    case BYOAI_EINVAL: return "invalid argument";
    case BYOAI_EIO: return "input/output error";
    case BYOAI_ENOMEM: return "out of memory";
    case BYOAI_EFORMAT: return "malformed input";
    case BYOAI_EUNSUPPORTED: return "unsupported";
    case BYOAI_ENOTFOUND: return "not found";
    case BYOAI_ERANGE: return "out of range";
    case BYOAI_EEXIST: return "already exists";
    case BYOAI_ENET: return "network error";
    case BYOAI_EAUTH: return "authentication failed";
    case BYOAI_ECANCELED: return "cancelled";
    case BYOAI_ETIMEOUT: return "timed out";
    case BYOAI_ENOSPC: return "no space left";
    case BYOAI_EBUSY: return "busy";
    case BYOAI_ECHECKSUM: return "checksum mismatch";
    default: return "unknown error";
    }
}
