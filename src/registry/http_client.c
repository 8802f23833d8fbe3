/* The HTTP client side (libcurl): small requests into memory (indexes,
 * signatures, HEAD requests to the Hub, uploads). Blob downloads are in
 * download.c. file:// URLs are read directly. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "registry_internal.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void do_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }
void reg_curl_init(void) { pthread_once(&g_once, do_init); }

void reg_response_free(reg_response *r) {
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

typedef struct sink {
    reg_response *r;
    size_t cap, max;
    bool too_big;
    const reg_request *rq;
    double t0, last;
    reg_stall stall;
} sink;

static size_t on_write(char *p, size_t sz, size_t n, void *u) {
    sink *s = u;
    size_t len = sz * n;
    if (s->r->len + len > s->max) {
        s->too_big = true;
        return 0;
    }
    if (s->r->len + len + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 16384;
        while (nc < s->r->len + len + 1) nc *= 2;
        char *nb = realloc(s->r->body, nc);
        if (!nb) return 0;
        s->r->body = nb;
        s->cap = nc;
    }
    memcpy(s->r->body + s->r->len, p, len);
    s->r->len += len;
    s->r->body[s->r->len] = '\0';
    return len;
}

/* copy a header value (trimmed, quotes and W/ removed when unquote) */
static void header_value(const char *v, size_t n, char *dst, size_t cap, bool unquote) {
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
    if (unquote) {
        if (n >= 2 && v[0] == 'W' && v[1] == '/') v += 2, n -= 2;
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') v++, n -= 2;
    }
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* A decimal header value: digits only (strtoull alone reads "-5" as 2^64-5),
 * at most 19 of them; 0 otherwise. */
static uint64_t header_number(const char *v, size_t n) {
    char tmp[64];
    header_value(v, n, tmp, sizeof tmp, false);
    size_t l = strlen(tmp);
    if (l == 0 || l > 19 || strspn(tmp, "0123456789") != l) return 0;
    return strtoull(tmp, NULL, 10);
}

void reg_header_line(reg_response *r, const char *p, size_t len) {
    if (len > 5 && !strncmp(p, "HTTP/", 5)) { /* a new response (after a redirect): forget the last one's */
        r->etag[0] = r->last_modified[0] = r->location[0] = '\0';
        r->content_length = 0;
        r->status = reg_status_line(p, len); /* the final one is read after the transfer */
        return;
    }
    if (r->status >= 300 && r->status < 400 && reg_header_location(p, len, r->location, sizeof r->location))
        return;
    const char *colon = memchr(p, ':', len);
    if (!colon) return;
    size_t kl = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vl = len - kl - 1;
#define IS(name) (kl == strlen(name) && !strncasecmp(p, name, kl))
    if (IS("etag")) header_value(v, vl, r->etag, sizeof r->etag, false);
    else if (IS("last-modified")) header_value(v, vl, r->last_modified, sizeof r->last_modified, false);
    else if (IS("x-linked-etag")) header_value(v, vl, r->linked_etag, sizeof r->linked_etag, true);
    else if (IS("x-repo-commit")) header_value(v, vl, r->repo_commit, sizeof r->repo_commit, false);
    else if (IS("x-linked-size")) r->linked_size = header_number(v, vl);
    else if (IS("content-length")) r->content_length = header_number(v, vl);
#undef IS
}

long reg_status_line(const char *p, size_t len) {
    if (len < 5 || strncmp(p, "HTTP/", 5)) return 0;
    const char *sp = memchr(p, ' ', len);
    if (!sp || (size_t)(sp - p) + 4 > len) return 0;
    long st = 0;
    for (int i = 1; i <= 3; i++) {
        if (sp[i] < '0' || sp[i] > '9') return 0;
        st = st * 10 + (sp[i] - '0');
    }
    return st;
}

bool reg_content_range_start(const char *p, size_t len, uint64_t *start) {
    if (len < 14 || strncasecmp(p, "content-range:", 14)) return false;
    /* the line is not NUL-terminated: look for "bytes " within it only */
    const char *b = memmem(p + 14, len - 14, "bytes ", 6);
    if (!b) return false;
    const char *d = b + 6, *end = p + len;
    uint64_t v = 0;
    size_t digits = 0;
    for (; d < end && *d >= '0' && *d <= '9' && digits < 19; d++, digits++) v = v * 10 + (uint64_t)(*d - '0');
    if (digits == 0 || digits == 19 || d == end || *d != '-') return false;
    *start = v;
    return true;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u) {
    reg_header_line(u, p, sz * n);
    return sz * n;
}

static int on_progress(void *u, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln) {
    sink *s = u;
    if (reg_stall_check(&s->stall, (uint64_t)dln + (uint64_t)uln)) return 1;
    if (!s->rq->progress) return 0;
    double now = byoai_time_now();
    if (now - s->last < 0.2) return 0;
    s->last = now;
    bool up = s->rq->upload_path != NULL;
    uint64_t done = (uint64_t)(up ? uln : dln), total = (uint64_t)(up ? ult : dlt);
    byoai_progress pr = {up ? "uploading" : "downloading", s->rq->what ? s->rq->what : "", done, total,
                         now > s->t0 ? (double)done / (now - s->t0) : 0};
    return s->rq->progress(s->rq->user, &pr);
}

static int read_file_url(const char *url, const reg_request *rq, reg_response *out, byoai_error *err) {
    const char *path = url + 7;
    if (strchr(path, '%') || strchr(path, '?'))
        return byoai_error_set(err, BYOAI_EINVAL, "file URLs with %%-escapes or queries are not supported: %s", url);
    size_t max = rq->max_body ? rq->max_body : BYOAI_INDEX_MAX_BYTES;
    struct stat st;
    if (stat(path, &st) != 0) {
        out->status = 404;
        return 0;
    }
    int rc = byoai_fs_read_all(path, max, &out->body, &out->len, err);
    if (rc == BYOAI_ENOTFOUND) {
        out->status = 404;
        return 0;
    }
    if (rc) return rc;
    out->status = 200;
    struct tm tm;
    gmtime_r(&st.st_mtime, &tm);
    strftime(out->last_modified, sizeof out->last_modified, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return 0;
}

int reg_http(const char *url, const reg_request *rq, reg_response *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    reg_request none = {0};
    if (!rq) rq = &none;
    const char *method = rq->method ? rq->method : "GET";
    if (!strncmp(url, "file://", 7)) {
        if (strcmp(method, "GET")) return byoai_error_set(err, BYOAI_EUNSUPPORTED, "%s is not possible on %s", method, url);
        return read_file_url(url, rq, out, err);
    }
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        return byoai_error_set(err, BYOAI_EINVAL, "unsupported URL scheme: %s", url);
    reg_curl_init();
    CURL *c = curl_easy_init();
    if (!c) return byoai_error_set(err, BYOAI_ENOMEM, "cannot start libcurl");
    sink s = {.r = out, .max = rq->max_body ? rq->max_body : BYOAI_INDEX_MAX_BYTES, .rq = rq, .t0 = byoai_time_now()};
    struct curl_slist *hdrs = NULL;
    char hb[600];
    if (rq->if_none_match && *rq->if_none_match) {
        snprintf(hb, sizeof hb, "If-None-Match: %s", rq->if_none_match);
        hdrs = curl_slist_append(hdrs, hb);
    }
    if (rq->if_modified_since && *rq->if_modified_since) {
        snprintf(hb, sizeof hb, "If-Modified-Since: %s", rq->if_modified_since);
        hdrs = curl_slist_append(hdrs, hb);
    }
    reg_auth_header(url, &hdrs);
    for (const char *const *h = rq->headers; h && *h; h++) hdrs = curl_slist_append(hdrs, *h);
    /* an upload waits for the server's go-ahead (100 Continue) or refusal
     * before sending the body: the registry checks the signed headers first */
    if (rq->upload_path) hdrs = curl_slist_append(hdrs, "Expect: 100-continue");
    FILE *up = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    bool follow = strcmp(method, "HEAD") ? true : rq->follow;
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    if (!rq->upload_path) curl_easy_setopt(c, CURLOPT_TIMEOUT, rq->timeout_s ? rq->timeout_s : 60L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "byoai/" BYOAI_VERSION);
    reg_curl_tls(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    int rc = 0;
    if (rq->upload_path) {
        up = fopen(rq->upload_path, "rb");
        struct stat st;
        if (!up || fstat(fileno(up), &st) != 0) {
            rc = byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", rq->upload_path, strerror(errno));
            goto out;
        }
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_READDATA, up);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
        if (rq->max_rate) curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)rq->max_rate);
    } else if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    reg_stall_start(&s.stall);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L); /* for the stall check, and the caller's progress */
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    /* a server that refuses an upload midway may close while the body is
     * still being sent: its answer, when it arrived, is what counts */
    if ((cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR) && rq->upload_path && out->status >= 400) cc = CURLE_OK;
    if (follow && out->location[0] && reg_redirect_refused(out->location))
        rc = byoai_error_set(err, BYOAI_EUNSUPPORTED,
                             "%s redirected to %.200s; byoai follows redirects only to http:// and https:// URLs "
                             "(the server is misconfigured: tell its maintainer)",
                             url, out->location);
    else if (s.stall.stalled)
        rc = byoai_error_set(err, BYOAI_ETIMEOUT, "%s: no data for %.0f s (BYOAI_STALL_SECONDS); the server stalled",
                             url, s.stall.limit_s);
    else if (cc == CURLE_ABORTED_BY_CALLBACK) rc = byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
    else if (s.too_big)
        rc = byoai_error_set(err, BYOAI_EFORMAT, "%s: the response is larger than the %zu bytes allowed", url, s.max);
    else if (cc == CURLE_OPERATION_TIMEDOUT)
        rc = byoai_error_set(err, BYOAI_ETIMEOUT, "%s: timed out (%s)", url, curl_easy_strerror(cc));
    else if (cc != CURLE_OK)
        rc = byoai_error_set(err, BYOAI_ENET, "cannot reach %s: %s%s", url, curl_easy_strerror(cc), reg_tls_hint(cc));
out:
    if (up) fclose(up);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (rc) reg_response_free(out);
    return rc;
}

int reg_hub_head(const char *url, char sha256[65], uint64_t *size, char *commit, size_t ccap, byoai_error *err) {
    reg_request rq = {.method = "HEAD", .follow = false, .timeout_s = 30};
    reg_response r;
    int rc = reg_http(url, &rq, &r, err);
    if (rc) return rc;
    reg_response_free(&r);
    if (r.status == 401 || r.status == 403)
        return byoai_error_set(err, BYOAI_EAUTH,
                               "the Hub refused %s (HTTP %ld): the repository may be gated or private; accept its "
                               "terms on the Hub and set HF_TOKEN",
                               url, r.status);
    if (r.status == 404) return byoai_error_set(err, BYOAI_ENOTFOUND, "the Hub has no file at %s (HTTP 404)", url);
    if (r.status >= 400 || r.status < 200)
        return byoai_error_set(err, BYOAI_ENET, "the Hub answered HTTP %ld for %s; try again later", r.status, url);
    char e[128];
    snprintf(e, sizeof e, "%s", r.linked_etag);
    for (char *p = e; *p; p++)
        if (*p >= 'A' && *p <= 'F') *p = (char)(*p + 32);
    if (!byoai_store_check_sha256(e))
        return byoai_error_set(err, BYOAI_ECHECKSUM,
                               "the Hub reports no sha256 for %s (no X-Linked-Etag: it is not an LFS file), so "
                               "byoai cannot verify it; ask for a sha256 in the index instead",
                               url);
    memcpy(sha256, e, 65);
    *size = r.linked_size;
    if (commit) snprintf(commit, ccap, "%s", r.repo_commit);
    return 0;
}
