/* Blob downloads: resumable (HTTP Range), verified (sha256) before the blob
 * gets its final name, shared between concurrent installs (a lock per
 * blob), retried with backoff after stalls and dropped connections, with an
 * optional bandwidth cap. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry_internal.h"

typedef struct dl {
    int fd;
    byoai_sha256 hash;
    uint64_t offset;       /* bytes in the partial file (all hashed) */
    uint64_t start;        /* offset when this attempt began */
    uint64_t size;         /* expected total, 0 unknown */
    long status;
    bool restart;          /* the server ignored Range: start over at the first byte */
    bool bad_range;        /* Content-Range does not start where we asked */
    bool too_much;
    int write_errno;
    /* progress */
    byoai_progress_fn progress;
    void *user;
    const char *what;
    double last, rate, rate_t;
    uint64_t rate_bytes;
    bool canceled;
    /* the bandwidth cap, enforced here: libcurl's own lets the first
     * megabytes through at full speed */
    uint64_t max_rate, cap_bytes;
    double cap_t0;
    reg_stall stall;
    char location[1024];   /* of the last redirect */
} dl;

static size_t dl_header(char *p, size_t sz, size_t n, void *u) {
    dl *d = u;
    size_t len = sz * n;
    if (len > 5 && !strncmp(p, "HTTP/", 5)) {
        d->status = reg_status_line(p, len);
        if (d->status == 200 && d->start > 0) d->restart = true;
        else d->restart = false;
        d->bad_range = false;
        d->location[0] = '\0';
    } else if (d->status >= 300 && d->status < 400 && reg_header_location(p, len, d->location, sizeof d->location)) {
        /* kept: a redirect libcurl refuses to follow is reported below */
    } else if (len >= 14 && !strncasecmp(p, "content-range:", 14) && d->status == 206) {
        uint64_t first;
        if (!reg_content_range_start(p, len, &first) || first != d->start) d->bad_range = true;
    }
    return len;
}

static size_t dl_write(char *p, size_t sz, size_t n, void *u) {
    dl *d = u;
    size_t len = sz * n;
    if (d->status >= 300) return len; /* an error page: not file content */
    if (d->bad_range) return 0;
    if (d->restart) {
        d->restart = false;
        if (ftruncate(d->fd, 0) != 0 || lseek(d->fd, 0, SEEK_SET) != 0) {
            d->write_errno = errno;
            return 0;
        }
        byoai_sha256_free(&d->hash);
        byoai_sha256_init(&d->hash);
        d->offset = d->start = 0;
    }
    if (d->size && d->offset + len > d->size) {
        d->too_much = true;
        return 0;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(d->fd, p + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            d->write_errno = errno;
            /* keep the hash equal to what the file holds */
            byoai_sha256_update(&d->hash, p, off);
            d->offset += off;
            return 0;
        }
        off += (size_t)w;
    }
    byoai_sha256_update(&d->hash, p, len);
    d->offset += len;
    if (d->max_rate) {
        d->cap_bytes += len;
        double due = d->cap_t0 + (double)d->cap_bytes / (double)d->max_rate, now = byoai_time_now();
        if (due > now) usleep((useconds_t)((due - now > 1.0 ? 1.0 : due - now) * 1e6));
    }
    return len;
}

static int dl_progress(void *u, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln) {
    (void)dlt, (void)ult;
    dl *d = u;
    if (reg_stall_check(&d->stall, (uint64_t)dln + (uint64_t)uln)) return 1;
    if (!d->progress) return 0;
    double now = byoai_time_now();
    if (now - d->last < 0.25) return 0;
    /* rate smoothed over windows of about a second */
    if (d->rate_t == 0) {
        d->rate_t = now;
        d->rate_bytes = d->offset;
    } else if (now - d->rate_t >= 1.0) {
        double r = (double)(d->offset - d->rate_bytes) / (now - d->rate_t);
        d->rate = d->rate > 0 ? 0.6 * d->rate + 0.4 * r : r;
        d->rate_t = now;
        d->rate_bytes = d->offset;
    }
    d->last = now;
    byoai_progress pr = {"downloading", d->what, d->offset, d->size, d->rate};
    if (d->progress(d->user, &pr)) {
        d->canceled = true;
        return 1;
    }
    return 0;
}

/* hash the bytes already in the partial file */
static int hash_prefix(dl *d, const char *path, byoai_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", path, strerror(errno));
    static __thread unsigned char buf[1 << 16];
    uint64_t left = d->offset;
    while (left) {
        ssize_t r = read(fd, buf, left < sizeof buf ? left : sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            close(fd);
            return byoai_error_set(err, BYOAI_EIO, "cannot read %s", path);
        }
        byoai_sha256_update(&d->hash, buf, (size_t)r);
        left -= (uint64_t)r;
    }
    close(fd);
    return 0;
}

typedef enum { ATTEMPT_DONE, ATTEMPT_RETRY, ATTEMPT_NEXT_URL, ATTEMPT_FAIL } attempt_result;

static attempt_result attempt(const char *url, dl *d, const reg_download_opts *o, byoai_error *err) {
    CURL *c = curl_easy_init();
    if (!c) {
        byoai_error_set(err, BYOAI_ENOMEM, "cannot start libcurl");
        return ATTEMPT_FAIL;
    }
    d->start = d->offset;
    d->status = 0;
    d->restart = d->bad_range = d->too_much = false;
    d->write_errno = 0;
    d->max_rate = o->max_rate;
    d->cap_bytes = 0;
    d->cap_t0 = byoai_time_now();
    d->location[0] = '\0';
    reg_stall_start(&d->stall);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "byoai/" BYOAI_VERSION);
    reg_curl_tls(c);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, dl_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, d);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
    if (d->offset) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)d->offset);
    struct curl_slist *hdrs = NULL;
    reg_auth_header(url, &hdrs);
    if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    bool is_file = !strncmp(url, "file://", 7);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    char a[32];
    if (d->location[0] && reg_redirect_refused(d->location)) {
        byoai_error_set(err, BYOAI_EUNSUPPORTED,
                        "%s redirected the download of %s to %.200s; byoai follows redirects only to http:// and "
                        "https:// URLs (the registry or its mirror is misconfigured: tell its maintainer)",
                        url, d->what, d->location);
        return ATTEMPT_NEXT_URL;
    }
    if (d->stall.stalled) {
        byoai_error_set(err, BYOAI_ETIMEOUT, "download of %s from %s stalled at %s: no data for %.0f s "
                        "(BYOAI_STALL_SECONDS)", d->what, url, byoai_format_bytes(d->offset, a, sizeof a),
                        d->stall.limit_s);
        return ATTEMPT_RETRY;
    }
    if (d->canceled) {
        byoai_error_set(err, BYOAI_ECANCELED, "cancelled; run the same command again to resume the download");
        return ATTEMPT_FAIL;
    }
    if (d->write_errno) {
        int e = d->write_errno;
        byoai_error_set(err, e == ENOSPC || e == EDQUOT ? BYOAI_ENOSPC : BYOAI_EIO,
                        e == ENOSPC || e == EDQUOT
                            ? "not enough disk space while downloading %s (%s); free some space (e.g. `byoai remove "
                              "MODEL`, then `byoai gc`) and try again"
                            : "cannot write the download of %s: %s",
                        d->what, strerror(e));
        return ATTEMPT_FAIL;
    }
    if (d->too_much) {
        byoai_error_set(err, BYOAI_EFORMAT, "%s sent more than the %s the index declares; the registry is broken",
                        url, byoai_format_bytes(d->size, a, sizeof a));
        return ATTEMPT_NEXT_URL;
    }
    if (d->bad_range) {
        byoai_error_set(err, BYOAI_ENET, "%s answered a range request with the wrong range", url);
        return ATTEMPT_NEXT_URL;
    }
    if (!is_file && status == 416 && d->size && d->offset == d->size) return ATTEMPT_DONE;
    if (!is_file && status == 416) { /* our partial file is bigger than theirs: start over */
        if (ftruncate(d->fd, 0) == 0 && lseek(d->fd, 0, SEEK_SET) == 0) {
            byoai_sha256_free(&d->hash);
            byoai_sha256_init(&d->hash);
            d->offset = 0;
        }
        byoai_error_set(err, BYOAI_ENET, "%s: range not satisfiable; starting over", url);
        return ATTEMPT_RETRY;
    }
    if (!is_file && (status == 408 || status == 429 || status >= 500)) {
        byoai_error_set(err, BYOAI_ENET, "%s answered HTTP %ld", url, status);
        return ATTEMPT_RETRY;
    }
    if (!is_file && status >= 400) {
        byoai_error_set(err, status == 404 ? BYOAI_ENOTFOUND : status == 401 || status == 403 ? BYOAI_EAUTH : BYOAI_ENET,
                        "%s answered HTTP %ld%s", url, status,
                        status == 404 ? ": the registry does not have this file; tell its maintainer" :
                        status == 401 || status == 403 ? ": access refused (gated or private? set HF_TOKEN for the Hub)"
                                                       : "");
        return ATTEMPT_NEXT_URL;
    }
    if (cc == CURLE_REMOTE_FILE_NOT_FOUND || cc == CURLE_FILE_COULDNT_READ_FILE) {
        byoai_error_set(err, BYOAI_ENOTFOUND, "%s: no such file", url);
        return ATTEMPT_NEXT_URL;
    }
    if (cc != CURLE_OK && reg_tls_fatal(cc)) { /* retrying will not change the certificate: try a mirror */
        byoai_error_set(err, BYOAI_EAUTH, "cannot download %s from %s: %s%s", d->what, url, curl_easy_strerror(cc),
                        reg_tls_hint(cc));
        return ATTEMPT_NEXT_URL;
    }
    if (cc != CURLE_OK) {
        byoai_error_set(err, cc == CURLE_OPERATION_TIMEDOUT ? BYOAI_ETIMEOUT : BYOAI_ENET,
                        "download of %s from %s interrupted at %s: %s", d->what, url,
                        byoai_format_bytes(d->offset, a, sizeof a), curl_easy_strerror(cc));
        return ATTEMPT_RETRY;
    }
    if (d->size && d->offset < d->size) {
        byoai_error_set(err, BYOAI_ENET, "%s ended the download at %s of %s", url, byoai_format_bytes(d->offset, a, sizeof a),
                        d->what);
        return ATTEMPT_RETRY;
    }
    return ATTEMPT_DONE;
}

static void backoff(unsigned attempt_no) {
    uint64_t base = reg_env_u64("BYOAI_RETRY_DELAY_MS", 1000);
    uint64_t ms = base << (attempt_no < 5 ? attempt_no : 5);
    if (ms > 30000) ms = 30000;
    usleep((useconds_t)(ms * 1000));
}

/* one download of a known sha256 while holding its lock */
static int download_locked(byoai_store *s, const char *const *urls, size_t n_urls, const char *sha256, uint64_t size,
                           const reg_download_opts *o, byoai_progress_fn progress, void *user, byoai_error *err) {
    char part[4200];
    byoai_store_partial_path(s, sha256, part, sizeof part);
    dl d = {.fd = -1, .size = size, .progress = progress, .user = user, .what = o->what ? o->what : sha256};
    int rc = 0;
    bool resumed_once = false;
again:
    d.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d.fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot create %s: %s", part, strerror(errno));
    struct stat st;
    fstat(d.fd, &st);
    d.offset = (uint64_t)st.st_size;
    if (size && d.offset > size) {
        if (ftruncate(d.fd, 0) != 0) {}
        d.offset = 0;
    }
    if (byoai_sha256_init(&d.hash)) {
        close(d.fd);
        return byoai_error_set(err, BYOAI_ENOMEM, "cannot start sha256");
    }
    bool resumed = d.offset > 0;
    if (resumed && (rc = hash_prefix(&d, part, err))) goto out;
    lseek(d.fd, (off_t)d.offset, SEEK_SET);
    if (size && (rc = byoai_store_check_space(s, size - d.offset, d.what, err))) goto out;
    if (resumed) byoai_log(BYOAI_LOG_INFO, "resuming %s at byte %llu", d.what, (unsigned long long)d.offset);
    unsigned retries = o->retries ? o->retries : 5;
    size_t ui = 0;
    unsigned fails = 0;
    for (;;) {
        attempt_result ar = attempt(urls[ui], &d, o, err);
        if (ar == ATTEMPT_DONE) break;
        if (ar == ATTEMPT_FAIL) {
            rc = err ? err->code : BYOAI_EIO;
            goto out;
        }
        if (ar == ATTEMPT_NEXT_URL) {
            if (ui + 1 < n_urls) {
                ui++;
                continue;
            }
            rc = err ? err->code : BYOAI_ENET;
            goto out;
        }
        if (++fails > retries) {
            byoai_error_prefix(err, "gave up after %u attempts (run the same command again to resume)", fails);
            rc = err ? err->code : BYOAI_ENET;
            goto out;
        }
        byoai_log(BYOAI_LOG_WARN, "%s; retrying", err ? err->msg : "download failed");
        if (progress) {
            byoai_progress pr = {"retrying", d.what, d.offset, d.size, 0};
            if (progress(user, &pr)) {
                rc = byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
                goto out;
            }
        }
        backoff(fails - 1);
        if (n_urls > 1) ui = (ui + 1) % n_urls;
    }
    if (fsync(d.fd) != 0) {
        rc = byoai_error_set(err, BYOAI_EIO, "cannot sync %s: %s", part, strerror(errno));
        goto out;
    }
    char got[65];
    byoai_sha256_final_hex(&d.hash, got);
    close(d.fd);
    d.fd = -1;
    if (progress) {
        byoai_progress pr = {"verifying", d.what, d.offset, d.size, 0};
        progress(user, &pr);
    }
    if (size && d.offset != size) {
        unlink(part);
        return byoai_error_set(err, BYOAI_ECHECKSUM, "%s: got %llu bytes, the index says %llu; nothing was installed",
                               d.what, (unsigned long long)d.offset, (unsigned long long)size);
    }
    if (strcmp(got, sha256)) {
        unlink(part);
        if (resumed && !resumed_once) {
            /* the kept part may be what went wrong: once more from scratch */
            resumed_once = true;
            byoai_log(BYOAI_LOG_WARN, "%s: resumed download does not verify; downloading it again", d.what);
            goto again;
        }
        return byoai_error_set(err, BYOAI_ECHECKSUM,
                               "%s does not match its checksum (sha256 %s expected, %s received); the download was "
                               "discarded and nothing was installed; the registry's file or index is wrong: tell its "
                               "maintainer",
                               d.what, sha256, got);
    }
    return byoai_store_commit_blob(s, sha256, part, err);
out:
    byoai_sha256_free(&d.hash);
    if (d.fd >= 0) close(d.fd);
    if (rc == BYOAI_ENOSPC) unlink(part); /* a full disk hurts the whole machine: give the space back */
    return rc;
}

int reg_download_blob(byoai_store *s, const char *const *urls, size_t n_urls, const char *sha256, uint64_t size,
                      const reg_download_opts *o, byoai_progress_fn progress, void *user, char resolved_sha[65],
                      uint64_t *resolved_size, byoai_error *err) {
    reg_download_opts none = {0};
    if (!o) o = &none;
    reg_curl_init();
    char sha[65];
    if (!sha256) {
        uint64_t hs = 0;
        int rc = reg_hub_head(urls[0], sha, &hs, NULL, 0, err);
        if (rc) return rc;
        if (size && hs && hs != size)
            return byoai_error_set(err, BYOAI_ECHECKSUM, "the Hub says %s is %llu bytes, the index says %llu",
                                   urls[0], (unsigned long long)hs, (unsigned long long)size);
        if (hs) size = hs;
    } else {
        if (!byoai_store_check_sha256(sha256)) return byoai_error_set(err, BYOAI_EINVAL, "invalid sha256 '%s'", sha256);
        memcpy(sha, sha256, 65);
    }
    if (resolved_sha) memcpy(resolved_sha, sha, 65);
    if (resolved_size) *resolved_size = size;
    if (byoai_store_has_blob(s, sha, size)) return 0;
    int lock;
    int rc = byoai_store_lock_blob(s, sha, &lock, progress, user, err);
    if (rc) return rc;
    /* another process may have finished it while we waited */
    if (!byoai_store_has_blob(s, sha, size)) rc = download_locked(s, urls, n_urls, sha, size, o, progress, user, err);
    byoai_store_unlock_blob(s, sha, lock);
    if (!rc && resolved_size && !*resolved_size) {
        char p[4200];
        struct stat st;
        if (byoai_store_blob_path(s, sha, p, sizeof p) == 0 && stat(p, &st) == 0) *resolved_size = (uint64_t)st.st_size;
    }
    return rc;
}
