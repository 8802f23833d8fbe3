/*
 * Tensor manifests and partial models.
 *
 * A tensor manifest lists, for one GGUF file, the sha256 of the whole file,
 * of its header (everything before the tensor data) and of every tensor's
 * bytes, with their absolute offsets:
 *
 *   {"format": "byoai-tensor-manifest/1",
 *    "file":   {"size": 1175000000, "sha256": "..."},
 *    "header": {"size": 725000, "sha256": "..."},
 *    "tensors": [{"name": "blk.0.attn_q.weight", "offset": 725024, "size": 4456448, "sha256": "..."}, ...]}
 *
 * It lets a node that lacks the model fetch and verify only the byte ranges
 * of the tensors it runs. The coordinator computes it from its file (cached
 * under cluster/manifests/) and sends it over the authenticated link, so it
 * is as trustworthy as the coordinator; a registry can publish it next to
 * the blob.
 *
 * A partial model is a sparse file with the original layout
 * (cluster/parts/<sha256>.gguf): the header and the verified tensors hold
 * their bytes, everything else is a hole. Offsets stay those of the
 * original, so the GGUF reader validates it as usual and the model loader
 * touches only the tensors of its layer range. cluster/parts/<sha256>.have
 * lists what has been verified.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster_internal.h"
#include "registry/registry_internal.h"

#define MANIFEST_FORMAT "byoai-tensor-manifest/1"

void cl_manifest_free(cl_manifest *m) {
    free(m->t);
    memset(m, 0, sizeof *m);
}

const cl_manifest_tensor *cl_manifest_find(const cl_manifest *m, const char *name) {
    for (uint32_t i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return &m->t[i];
    return NULL;
}

static int cmp_offset(const void *a, const void *b) {
    const cl_manifest_tensor *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void sha_final(byoai_sha256 *h, uint8_t out[32]) {
    char hex[65];
    byoai_sha256_final_hex(h, hex);
    cl_unhex(hex, out, 32);
}

int cl_manifest_build(const char *path, cl_manifest *m, byoai_error *err) {
    memset(m, 0, sizeof *m);
    byoai_gguf *g;
    int rc = byoai_gguf_open(path, &g, err);
    if (rc) return rc;
    m->n = (uint32_t)g->n_tensors;
    m->t = calloc(m->n ? m->n : 1, sizeof *m->t);
    if (!m->t) {
        byoai_gguf_close(g);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < m->n; i++) {
        if (strlen(g->tensors[i].name) >= sizeof m->t[i].name) {
            byoai_gguf_close(g);
            cl_manifest_free(m);
            return byoai_error_set(err, BYOAI_EUNSUPPORTED, "tensor name %.40s... is too long", g->tensors[i].name);
        }
        snprintf(m->t[i].name, sizeof m->t[i].name, "%s", g->tensors[i].name);
        m->t[i].offset = g->data_offset + g->tensors[i].offset;
        m->t[i].size = g->tensors[i].size;
    }
    qsort(m->t, m->n, sizeof *m->t, cmp_offset);
    m->file_size = g->file_size;
    m->header_size = g->data_offset;
    const uint8_t *base = g->base;
    madvise((void *)((uintptr_t)base & ~(uintptr_t)4095), g->file_size, MADV_SEQUENTIAL);
    byoai_sha256 file, part;
    byoai_sha256_init(&file);
    byoai_sha256_init(&part);
    byoai_sha256_update(&file, base, m->header_size);
    byoai_sha256_update(&part, base, m->header_size);
    sha_final(&part, m->header_sha);
    uint64_t at = m->header_size;
    for (uint32_t i = 0; i < m->n; i++) {
        cl_manifest_tensor *t = &m->t[i];
        if (t->offset < at) { /* overlap is refused by the reader; be safe */
            byoai_sha256_free(&file);
            byoai_gguf_close(g);
            cl_manifest_free(m);
            return byoai_error_set(err, BYOAI_EFORMAT, "%s: tensors overlap", path);
        }
        byoai_sha256_update(&file, base + at, t->offset - at);
        byoai_sha256_init(&part);
        for (uint64_t o = 0; o < t->size; o += 1 << 20) {
            uint64_t n = t->size - o < (1 << 20) ? t->size - o : (1 << 20);
            byoai_sha256_update(&file, base + t->offset + o, n);
            byoai_sha256_update(&part, base + t->offset + o, n);
        }
        sha_final(&part, t->sha);
        at = t->offset + t->size;
    }
    byoai_sha256_update(&file, base + at, m->file_size - at);
    sha_final(&file, m->file_sha);
    byoai_gguf_close(g);
    return 0;
}

int cl_manifest_to_json(const cl_manifest *m, char **json, size_t *len, byoai_error *err) {
    char hex[65];
    json_t *ts = json_array();
    for (uint32_t i = 0; i < m->n; i++) {
        cl_hex(m->t[i].sha, 32, hex);
        json_array_append_new(ts, json_pack("{s:s,s:I,s:I,s:s}", "name", m->t[i].name, "offset",
                                            (json_int_t)m->t[i].offset, "size", (json_int_t)m->t[i].size, "sha256", hex));
    }
    char fh[65], hh[65];
    cl_hex(m->file_sha, 32, fh);
    cl_hex(m->header_sha, 32, hh);
    json_t *j = json_pack("{s:s,s:{s:I,s:s},s:{s:I,s:s},s:o}", "format", MANIFEST_FORMAT, "file", "size",
                          (json_int_t)m->file_size, "sha256", fh, "header", "size", (json_int_t)m->header_size,
                          "sha256", hh, "tensors", ts);
    *json = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!*json) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    if (len) *len = strlen(*json);
    return 0;
}

static bool get_u64(json_t *o, const char *k, uint64_t *v) {
    json_t *x = json_object_get(o, k);
    if (!json_is_integer(x) || json_integer_value(x) < 0) return false;
    *v = (uint64_t)json_integer_value(x);
    return true;
}

static bool get_sha(json_t *o, uint8_t out[32]) {
    const char *s = json_string_value(json_object_get(o, "sha256"));
    return s && cl_unhex(s, out, 32) == 0;
}

int cl_manifest_parse(const char *json, size_t len, cl_manifest *m, byoai_error *err) {
    memset(m, 0, sizeof *m);
    json_error_t je;
    json_t *j = json_loadb(json, len, 0, &je);
    int rc = 0;
    json_t *file = json_object_get(j, "file"), *header = json_object_get(j, "header"), *ts = json_object_get(j, "tensors");
    const char *fmt = json_string_value(json_object_get(j, "format"));
    if (!j || !fmt || strcmp(fmt, MANIFEST_FORMAT) || !get_u64(file, "size", &m->file_size) || !get_sha(file, m->file_sha) ||
        !get_u64(header, "size", &m->header_size) || !get_sha(header, m->header_sha) || !json_is_array(ts) ||
        json_array_size(ts) > 1000000 || m->header_size == 0 || m->header_size > m->file_size) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "malformed tensor manifest");
        goto out;
    }
    m->n = (uint32_t)json_array_size(ts);
    m->t = calloc(m->n ? m->n : 1, sizeof *m->t);
    if (!m->t) {
        rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        goto out;
    }
    uint64_t at = m->header_size;
    for (uint32_t i = 0; i < m->n; i++) {
        json_t *t = json_array_get(ts, i);
        const char *name = json_string_value(json_object_get(t, "name"));
        cl_manifest_tensor *x = &m->t[i];
        if (!name || strlen(name) == 0 || strlen(name) >= sizeof x->name || !get_u64(t, "offset", &x->offset) ||
            !get_u64(t, "size", &x->size) || !get_sha(t, x->sha) || x->offset < at || x->size > m->file_size ||
            x->offset > m->file_size - x->size) {
            rc = byoai_error_set(err, BYOAI_EFORMAT, "malformed tensor manifest: entry %u", i);
            goto out;
        }
        snprintf(x->name, sizeof x->name, "%s", name);
        at = x->offset + x->size;
    }
out:
    json_decref(j);
    if (rc) cl_manifest_free(m);
    return rc;
}

int cl_manifest_for_file(const char *cluster_dir, const char *path, cl_manifest *m, byoai_error *err) {
    struct stat st;
    char real[PATH_MAX];
    if (!realpath(path, real) || stat(real, &st) != 0)
        return byoai_error_set(err, BYOAI_ENOTFOUND, "cannot open %s: %s", path, strerror(errno));
    char key[PATH_MAX + 128], hex[65], cache[4400], dir[4400];
    snprintf(key, sizeof key, "%s|%lld|%lld.%09ld|%llu", real, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
             st.st_mtim.tv_nsec, (unsigned long long)st.st_ino);
    uint8_t h[16];
    crypto_generichash(h, sizeof h, (const uint8_t *)key, strlen(key), NULL, 0);
    cl_hex(h, sizeof h, hex);
    snprintf(dir, sizeof dir, "%s/manifests", cluster_dir);
    snprintf(cache, sizeof cache, "%s/%s.json", dir, hex);
    char *data;
    size_t len;
    if (byoai_fs_read_all(cache, 64u << 20, &data, &len, NULL) == 0) {
        int rc = cl_manifest_parse(data, len, m, NULL);
        free(data);
        if (rc == 0 && m->file_size == (uint64_t)st.st_size) return 0;
        if (rc == 0) cl_manifest_free(m);
    }
    double t0 = byoai_time_now();
    int rc = cl_manifest_build(real, m, err);
    if (rc) return rc;
    byoai_log(BYOAI_LOG_INFO, "hashed %s (%u tensors) in %.1f s", path, m->n, byoai_time_now() - t0);
    char *json;
    if (byoai_fs_mkdirs(dir, 0700, NULL) == 0 && cl_manifest_to_json(m, &json, &len, NULL) == 0) {
        byoai_fs_write_atomic(cache, json, len, NULL);
        free(json);
    }
    return 0;
}

bool cl_tensor_needed(const char *name, uint32_t begin, uint32_t end, uint32_t n_layer, bool tied) {
    if (!strncmp(name, "blk.", 4)) {
        char *e;
        unsigned long l = strtoul(name + 4, &e, 10);
        return e != name + 4 && *e == '.' && l >= begin && l < end;
    }
    if (!strcmp(name, "token_embd.weight")) return begin == 0 || (tied && end == n_layer);
    if (!strcmp(name, "output.weight") || !strcmp(name, "output_norm.weight")) return end == n_layer;
    return true; /* small global tensors (rope frequencies, ...) */
}

/* ---- range downloads ------------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct {
    int fd;
    uint64_t off, len, got;
    byoai_sha256 sha;
    bool io_error, too_much;
} range_sink;

static size_t on_data(char *p, size_t sz, size_t nm, void *user) {
    range_sink *s = user;
    size_t n = sz * nm;
    if (s->got + n > s->len) {
        s->too_much = true;
        return 0;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(s->fd, p + done, n - done, (off_t)(s->off + s->got + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            s->io_error = true;
            return 0;
        }
        done += (size_t)w;
    }
    byoai_sha256_update(&s->sha, p, n);
    s->got += n;
    return n;
}

/* a download ends when the thread's cancel flag is set (a stage or node stopping) */
static int on_progress(void *u, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)u, (void)dt, (void)dn, (void)ut, (void)un;
    return cl_io_cancelled() ? 1 : 0;
}

int cl_fetch_range(const char *url, int fd, uint64_t off, uint64_t len, const uint8_t sha[32], cl_fetch_stats *st,
                   byoai_error *err) {
    pthread_once(&curl_once, curl_init);
    if (len == 0) return 0;
    CURL *c = curl_easy_init();
    if (!c) return byoai_error_set(err, BYOAI_ENOMEM, "cannot start libcurl");
    range_sink s = {.fd = fd, .off = off, .len = len};
    byoai_sha256_init(&s.sha);
    char range[64];
    snprintf(range, sizeof range, "%llu-%llu", (unsigned long long)off, (unsigned long long)(off + len - 1));
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_RANGE, range);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "byoai-cluster/" BYOAI_VERSION);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    reg_curl_tls(c);
    double t0 = byoai_time_now();
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    uint8_t got[32];
    sha_final(&s.sha, got);
    if (st) {
        st->bytes += s.got;
        st->requests++;
        st->seconds += byoai_time_now() - t0;
    }
    if (cc == CURLE_ABORTED_BY_CALLBACK) return byoai_error_set(err, BYOAI_ECANCELED, "the download was cancelled");
    if (s.io_error) return byoai_error_set(err, BYOAI_EIO, "cannot write the downloaded bytes: %s", strerror(errno));
    if (code == 200 && !(off == 0 && s.got == len && !s.too_much))
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "%s ignores Range requests (answered 200 for bytes %s)", url,
                               range);
    if (s.too_much) return byoai_error_set(err, BYOAI_EFORMAT, "%s sent more than the %s bytes asked for", url, range);
    if (cc != CURLE_OK)
        return byoai_error_set(err, BYOAI_ENET, "downloading bytes %s of %s: %s%s", range, url, curl_easy_strerror(cc),
                               reg_tls_hint(cc));
    if (code != 206 && code != 200)
        return byoai_error_set(err, BYOAI_ENET, "downloading bytes %s of %s: HTTP %ld", range, url, code);
    if (s.got != len)
        return byoai_error_set(err, BYOAI_ENET, "downloading bytes %s of %s: got %llu of %llu bytes", range, url,
                               (unsigned long long)s.got, (unsigned long long)len);
    if (sodium_memcmp(got, sha, 32) != 0) {
        char a[65], b[65];
        cl_hex(sha, 32, a);
        cl_hex(got, 32, b);
        return byoai_error_set(err, BYOAI_ECHECKSUM, "bytes %s of %s do not match the manifest (sha256 %.16s..., "
                               "got %.16s...); refusing them", range, url, a, b);
    }
    return 0;
}

/* ---- partial files ------------------------------------------------------------------------ */

typedef struct {
    bool header;
    json_t *have; /* object name -> true */
} have_set;

static void part_paths(const char *cluster_dir, const cl_manifest *m, char *gguf, char *have, size_t cap) {
    char hex[65];
    cl_hex(m->file_sha, 32, hex);
    snprintf(gguf, cap, "%s/parts/%s.gguf", cluster_dir, hex);
    snprintf(have, cap, "%s/parts/%s.have", cluster_dir, hex);
}

static void have_load(const char *path, have_set *h) {
    h->header = false;
    h->have = NULL;
    char *data;
    size_t len;
    if (byoai_fs_read_all(path, 64u << 20, &data, &len, NULL) == 0) {
        json_t *j = json_loadb(data, len, 0, NULL);
        free(data);
        if (json_is_object(j)) {
            h->header = json_is_true(json_object_get(j, "header"));
            h->have = json_incref(json_object_get(j, "tensors"));
        }
        json_decref(j);
    }
    if (!json_is_object(h->have)) {
        json_decref(h->have);
        h->have = json_object();
    }
}

static int have_save(const char *path, const have_set *h, byoai_error *err) {
    json_t *j = json_pack("{s:b,s:O}", "header", h->header, "tensors", h->have);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    int rc = byoai_fs_write_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}

static int open_part(const char *cluster_dir, const cl_manifest *m, char *gguf, char *have, size_t cap, int *fd,
                     byoai_error *err) {
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/parts", cluster_dir);
    int rc = byoai_fs_mkdirs(dir, 0700, err);
    if (rc) return rc;
    part_paths(cluster_dir, m, gguf, have, cap);
    *fd = open(gguf, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", gguf, strerror(errno));
    if (flock(*fd, LOCK_EX) != 0) {
        close(*fd);
        return byoai_error_set(err, BYOAI_EIO, "cannot lock %s: %s", gguf, strerror(errno));
    }
    struct stat st;
    if (fstat(*fd, &st) == 0 && (uint64_t)st.st_size != m->file_size && ftruncate(*fd, (off_t)m->file_size) != 0) {
        close(*fd);
        return byoai_error_set(err, BYOAI_ENOSPC, "cannot size %s: %s", gguf, strerror(errno));
    }
    return 0;
}

bool cl_partial_find(const char *cluster_dir, const cl_manifest *m, char *path, size_t cap) {
    char gguf[4400], have[4400];
    part_paths(cluster_dir, m, gguf, have, sizeof gguf);
    have_set hs;
    have_load(have, &hs);
    bool ok = hs.header && byoai_fs_exists(gguf);
    json_decref(hs.have);
    if (ok) snprintf(path, cap, "%s", gguf);
    return ok;
}

int cl_partial_write_header(const char *cluster_dir, const cl_manifest *m, const uint8_t *header, size_t len,
                            char *path, size_t cap, byoai_error *err) {
    uint8_t h[32];
    char hex[65];
    if (len != m->header_size) return byoai_error_set(err, BYOAI_EFORMAT, "header of %zu bytes, the manifest says %llu",
                                                      len, (unsigned long long)m->header_size);
    byoai_sha256_buf(header, len, hex);
    cl_unhex(hex, h, 32);
    if (sodium_memcmp(h, m->header_sha, 32) != 0)
        return byoai_error_set(err, BYOAI_ECHECKSUM, "the model header does not match its manifest");
    char have[4400];
    int fd;
    int rc = open_part(cluster_dir, m, path, have, cap, &fd, err);
    if (rc) return rc;
    have_set hs;
    have_load(have, &hs);
    if (!hs.header) {
        if (pwrite(fd, header, len, 0) != (ssize_t)len || fsync(fd) != 0)
            rc = byoai_error_set(err, BYOAI_EIO, "cannot write %s: %s", path, strerror(errno));
        hs.header = true;
        if (!rc) rc = have_save(have, &hs, err);
    }
    json_decref(hs.have);
    close(fd);
    return rc;
}

int cl_partial_prepare(const char *cluster_dir, const cl_manifest *m, const char *url, uint32_t begin, uint32_t end,
                       uint32_t n_layer, char *path, size_t cap, cl_fetch_stats *st, byoai_error *err) {
    char have[4400];
    int fd;
    int rc = open_part(cluster_dir, m, path, have, cap, &fd, err);
    if (rc) return rc;
    have_set hs;
    have_load(have, &hs);
    bool tied = cl_manifest_find(m, "output.weight") == NULL;
    bool missing = !hs.header;
    for (uint32_t i = 0; i < m->n && !missing; i++)
        if (cl_tensor_needed(m->t[i].name, begin, end, n_layer, tied) && !json_is_true(json_object_get(hs.have, m->t[i].name)))
            missing = true;
    if (missing && (!url || !*url)) {
        rc = byoai_error_set(err, BYOAI_ENOTFOUND, "this node lacks the model and the coordinator gave no URL to "
                             "fetch its layers from (deploy with --model-url)");
        goto out;
    }
    if (!hs.header) {
        if ((rc = cl_fetch_range(url, fd, 0, m->header_size, m->header_sha, st, err))) goto out;
        hs.header = true;
        if ((rc = have_save(have, &hs, err))) goto out;
    }
    for (uint32_t i = 0; i < m->n; i++) {
        const cl_manifest_tensor *t = &m->t[i];
        if (!cl_tensor_needed(t->name, begin, end, n_layer, tied) || json_is_true(json_object_get(hs.have, t->name)))
            continue;
        if ((rc = cl_fetch_range(url, fd, t->offset, t->size, t->sha, st, err))) {
            byoai_error_prefix(err, "tensor %s", t->name);
            goto out;
        }
        json_object_set_new(hs.have, t->name, json_true());
    }
    if (fsync(fd) != 0) {
        rc = byoai_error_set(err, BYOAI_EIO, "cannot sync %s: %s", path, strerror(errno));
        goto out;
    }
    rc = have_save(have, &hs, err);
out:
    if (rc && missing) {
        /* keep what was verified so a retry resumes */
        have_save(have, &hs, NULL);
    }
    json_decref(hs.have);
    close(fd);
    return rc;
}
