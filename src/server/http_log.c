/*
 * The access log: one line per request, written when the request ends (for
 * a stream: when the stream ends), in one write so that lines from several
 * threads never interleave.
 *
 *   text: 2025-01-31T12:00:00.123Z 127.0.0.1 POST /v1/chat/completions 200 0.532s model=m prompt_tokens=12
 *   json: {"time":"2025-01-31T12:00:00.123Z","remote":"127.0.0.1","method":"POST",
 *          "path":"/v1/chat/completions","status":200,"duration_ms":532.1,"model":"m",...}
 *
 * The path is printed as it was sent (%-escapes kept, no query string, at
 * most 1 KiB); other bytes outside printable ASCII, '"' and '\' are
 * %-encoded, so a request cannot forge log lines.
 * A request that did not end normally gets end=client_closed|timeout|
 * shutdown|error.
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "server/http_internal.h"

static http_log_field *field(byoai_http_req *r, const char *key) {
    for (int i = 0; i < r->n_log; i++)
        if (!strcmp(r->log[i].key, key)) return &r->log[i];
    if (r->n_log >= HTTP_LOG_FIELDS) return NULL;
    http_log_field *f = &r->log[r->n_log++];
    snprintf(f->key, sizeof f->key, "%s", key);
    return f;
}

/* printable ASCII without space, quote and backslash; else %XX */
static void safe(const char *in, char *out, size_t cap) {
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && k + 4 < cap; p++) {
        if (*p > ' ' && *p < 0x7f && *p != '"' && *p != '\\') out[k++] = (char)*p;
        else {
            out[k++] = '%';
            out[k++] = hex[*p >> 4];
            out[k++] = hex[*p & 15];
        }
    }
    out[k] = '\0';
}

void byoai_http_log_str(byoai_http_req *r, const char *key, const char *value) {
    http_log_field *f = field(r, key);
    if (!f) return;
    safe(value ? value : "", f->value, sizeof f->value);
    f->is_int = false;
}

void byoai_http_log_int(byoai_http_req *r, const char *key, long long value) {
    http_log_field *f = field(r, key);
    if (!f) return;
    snprintf(f->value, sizeof f->value, "%lld", value);
    f->is_int = true;
}

static const char *end_name(enum MHD_RequestTerminationCode toe) {
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return NULL;
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_closed";
    default: return "error";
    }
}

void http_log_request(byoai_http *h, byoai_http_req *r, enum MHD_RequestTerminationCode toe) {
    if (h->cfg.log_format == BYOAI_HTTP_LOG_OFF) return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    time_t secs = tv.tv_sec;
    gmtime_r(&secs, &tm);
    char when[40], path[1600], method[40];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    safe(r->raw_path ? r->raw_path : r->path ? r->path : "", path, sizeof path);
    safe(r->method ? r->method : "", method, sizeof method);
    double ms = (byoai_time_now() - r->t_start) * 1000.0;
    const char *end = end_name(toe);
    char line[3000];
    int n;
    bool json = h->cfg.log_format == BYOAI_HTTP_LOG_JSON;
    if (json) {
        n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"remote\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"status\":%u,"
                     "\"duration_ms\":%.1f",
                     when, r->remote, method, path, r->handled ? r->status : 0, ms);
    } else {
        char status[16];
        if (r->handled) snprintf(status, sizeof status, "%u", r->status);
        else snprintf(status, sizeof status, "-");
        n = snprintf(line, sizeof line, "%s %s %s %s %s %.3fs", when, r->remote[0] ? r->remote : "-", method, path,
                     status, ms / 1000.0);
    }
    for (int i = 0; i < r->n_log && n > 0 && (size_t)n < sizeof line; i++) {
        const http_log_field *f = &r->log[i];
        if (json)
            n += snprintf(line + n, sizeof line - (size_t)n, f->is_int ? ",\"%s\":%s" : ",\"%s\":\"%s\"", f->key,
                          f->value);
        else n += snprintf(line + n, sizeof line - (size_t)n, " %s=%s", f->key, f->value);
    }
    if (end && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, json ? ",\"end\":\"%s\"" : " end=%s", end);
    if (n <= 0 || (size_t)n >= sizeof line - 2) return;
    if (json) line[n++] = '}';
    if (h->cfg.log_line) {
        line[n] = '\0';
        h->cfg.log_line(h->user, line);
        return;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
