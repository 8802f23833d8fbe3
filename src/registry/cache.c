/* Loading a registry's index: the network when the cached copy is stale
 * (revalidated with ETag / If-Modified-Since), the cache when offline or
 * when the registry cannot be reached. A new index replaces the cached one
 * only after it validates and, when a key is configured, its signature
 * verifies. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "registry_internal.h"

typedef struct cache_meta {
    char etag[256], last_modified[64];
    char url[2100]; /* the registry URL the cache was made for */
    uint64_t fetched_at;
    bool stale; /* fetch again before using it (we published to this registry) */
} cache_meta;

static void read_meta(const char *dir, cache_meta *m) {
    memset(m, 0, sizeof *m);
    char p[4400], *text;
    size_t len;
    snprintf(p, sizeof p, "%s/meta.json", dir);
    if (byoai_fs_read_all(p, 65536, &text, &len, NULL)) return;
    json_t *o = json_loadb(text, len, 0, NULL);
    free(text);
    const char *e = json_string_value(json_object_get(o, "etag"));
    const char *l = json_string_value(json_object_get(o, "last_modified"));
    const char *u = json_string_value(json_object_get(o, "url"));
    json_t *f = json_object_get(o, "fetched_at");
    if (e) snprintf(m->etag, sizeof m->etag, "%s", e);
    if (l) snprintf(m->last_modified, sizeof m->last_modified, "%s", l);
    if (u) snprintf(m->url, sizeof m->url, "%s", u);
    if (json_is_integer(f) && json_integer_value(f) > 0) m->fetched_at = (uint64_t)json_integer_value(f);
    m->stale = json_is_true(json_object_get(o, "stale"));
    json_decref(o);
}

static int write_meta(const char *dir, const char *url, const cache_meta *m, byoai_error *err) {
    json_t *o = json_pack("{s:s,s:s,s:s,s:I}", "url", url, "etag", m->etag, "last_modified", m->last_modified,
                          "fetched_at", (json_int_t)m->fetched_at);
    if (o && m->stale) json_object_set_new(o, "stale", json_true());
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (!text) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    char p[4400];
    snprintf(p, sizeof p, "%s/meta.json", dir);
    int rc = byoai_fs_write_atomic(p, text, strlen(text), err);
    free(text);
    return rc;
}

static const char *when(uint64_t t, char *buf, size_t cap) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M UTC", &tm);
    return buf;
}

static int parse_hex_key(const char *hex, uint8_t pk[32]) {
    byoai_key k;
    if (byoai_key_parse_public(hex, &k, NULL)) return BYOAI_EINVAL;
    memcpy(pk, k.pk, 32);
    return 0;
}

/* verify text against a signature file's content */
static int check_sig(const byoai_registry_conf *r, const char *text, size_t len, const char *sig, byoai_error *err) {
    uint8_t pk[32];
    if (parse_hex_key(r->key, pk)) return byoai_error_set(err, BYOAI_EINVAL, "registry %s: invalid key", r->name);
    char s[200];
    snprintf(s, sizeof s, "%s", sig ? sig : "");
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = '\0';
    if (byoai_verify(pk, text, len, s, err))
        return byoai_error_set(err, BYOAI_EAUTH,
                               "the index of registry %s is not signed by its configured key (index.json.sig %s); "
                               "it may have been tampered with: the cached index is kept",
                               r->name, sig ? "does not verify" : "is missing");
    return 0;
}

static int parse_cached(const byoai_registry_conf *r, const char *dir, const char *index_url, byoai_index **out,
                        byoai_error *err) {
    char p[4400], *text;
    size_t len;
    snprintf(p, sizeof p, "%s/index.json", dir);
    int rc = byoai_fs_read_all(p, BYOAI_INDEX_MAX_BYTES, &text, &len, err);
    if (rc) return rc;
    if (r->key[0]) {
        char *sig = NULL;
        snprintf(p, sizeof p, "%s/index.json.sig", dir);
        byoai_fs_read_all(p, 4096, &sig, NULL, NULL);
        rc = check_sig(r, text, len, sig, err);
        free(sig);
        if (rc) {
            free(text);
            return rc;
        }
    }
    byoai_index_parse_opts po = {.base_url = index_url};
    rc = byoai_index_parse(text, len, &po, out, err);
    free(text);
    return rc;
}

int byoai_index_load(byoai_store *s, const byoai_registry_conf *r, bool refresh, bool offline, byoai_index **out,
                     byoai_index_source *src, byoai_error *err) {
    byoai_index_source dummy;
    if (!src) src = &dummy;
    memset(src, 0, sizeof *src);
    *out = NULL;
    offline |= reg_env_true("BYOAI_OFFLINE");
    if (!strcmp(r->url, "builtin:")) {
        byoai_index_parse_opts po = {.base_url = "builtin:/"};
        int rc = byoai_index_parse((const char *)byoai_builtin_index, byoai_builtin_index_len, &po, out, err);
        if (rc) byoai_error_prefix(err, "the built-in index");
        return rc;
    }
    char dir[4200], index_url[2200], sig_url[2300];
    int rc;
    if (reg_cache_dir(s, r->url, dir, sizeof dir) || (rc = reg_index_url(r->url, index_url, sizeof index_url, err)))
        return byoai_error_set(err, BYOAI_EINVAL, "registry URL too long");
    snprintf(sig_url, sizeof sig_url, "%s.sig", index_url);
    if ((rc = byoai_fs_mkdirs(dir, 0755, err))) return rc;
    cache_meta meta;
    read_meta(dir, &meta);
    byoai_index *cached = NULL;
    byoai_error cerr = {0};
    if (meta.fetched_at && parse_cached(r, dir, index_url, &cached, &cerr)) {
        byoai_log(BYOAI_LOG_WARN, "the cached index of %s is unusable (%s); fetching it again", r->name, cerr.msg);
        cached = NULL;
    }
    char w[64];
    uint64_t now = byoai_time_unix();
    uint64_t ttl = reg_env_u64("BYOAI_INDEX_TTL", 600);
    if (cached && (offline || (!refresh && !meta.stale && now >= meta.fetched_at && now - meta.fetched_at < ttl))) {
        src->from_cache = true;
        src->fetched_at = meta.fetched_at;
        if (offline)
            snprintf(src->note, sizeof src->note, "offline: using the index of %s cached on %s", r->name,
                     when(meta.fetched_at, w, sizeof w));
        *out = cached;
        return 0;
    }
    if (offline)
        return byoai_error_set(err, BYOAI_ENOTFOUND,
                               "offline, and there is no cached index of registry %s; connect once and run `byoai "
                               "search` to cache it",
                               r->name);
    reg_request rq = {.if_none_match = cached ? meta.etag : NULL, .if_modified_since = cached ? meta.last_modified : NULL};
    reg_response resp;
    byoai_error nerr = {0};
    rc = reg_http(index_url, &rq, &resp, &nerr);
    if (rc == BYOAI_ENET || rc == BYOAI_ETIMEOUT || (!rc && (resp.status >= 500 || resp.status == 0))) {
        if (!rc) {
            byoai_error_set(&nerr, BYOAI_ENET, "%s answered HTTP %ld", index_url, resp.status);
            reg_response_free(&resp);
        }
        if (cached) {
            src->from_cache = src->unreachable = true;
            src->fetched_at = meta.fetched_at;
            snprintf(src->note, sizeof src->note, "registry %s is unreachable (%s); using its index cached on %s",
                     r->name, nerr.msg, when(meta.fetched_at, w, sizeof w));
            *out = cached;
            return 0;
        }
        *err = nerr;
        return byoai_error_prefix(err, "registry %s is unreachable and its index was never cached", r->name);
    }
    if (rc) {
        byoai_index_free(cached);
        *err = nerr;
        return rc;
    }
    if (resp.status == 304 && cached) {
        reg_response_free(&resp);
        meta.fetched_at = now;
        meta.stale = false;
        write_meta(dir, r->url, &meta, NULL);
        src->from_cache = true;
        src->fetched_at = now;
        *out = cached;
        return 0;
    }
    if (resp.status != 200) {
        long st = resp.status;
        reg_response_free(&resp);
        byoai_index_free(cached);
        if (st == 404)
            return byoai_error_set(err, BYOAI_ENOTFOUND, "there is no index.json at %s (HTTP 404): is %s a byoai "
                                   "registry? (check `byoai registry list`)", index_url, r->url);
        return byoai_error_set(err, BYOAI_ENET, "%s answered HTTP %ld", index_url, st);
    }
    char *sig = NULL;
    if (r->key[0]) {
        /* a publish may replace index.json between our two requests: one retry */
        for (int tries = 0; tries < 2; tries++) {
            reg_response sr;
            rc = reg_http(sig_url, &(reg_request){.max_body = 4096}, &sr, &nerr);
            free(sig);
            sig = NULL;
            if (!rc && sr.status == 200) sig = sr.body, sr.body = NULL;
            reg_response_free(&sr);
            rc = check_sig(r, resp.body, resp.len, sig, err);
            if (!rc || tries) break;
            reg_response_free(&resp);
            if ((rc = reg_http(index_url, NULL, &resp, err)) || resp.status != 200) {
                if (!rc) rc = byoai_error_set(err, BYOAI_ENET, "%s answered HTTP %ld", index_url, resp.status);
                break;
            }
        }
        if (rc) goto bad;
    }
    byoai_index_parse_opts po = {.base_url = index_url};
    byoai_index *fresh;
    if ((rc = byoai_index_parse(resp.body, resp.len, &po, &fresh, err))) goto bad;
    /* good: replace the cache (index first, then its signature and meta) */
    char p[4400];
    snprintf(p, sizeof p, "%s/index.json", dir);
    if ((rc = byoai_fs_write_atomic(p, resp.body, resp.len, err))) {
        byoai_index_free(fresh);
        goto bad;
    }
    snprintf(p, sizeof p, "%s/index.json.sig", dir);
    if (sig) byoai_fs_write_atomic(p, sig, strlen(sig), NULL);
    else unlink(p);
    snprintf(meta.etag, sizeof meta.etag, "%s", resp.etag);
    snprintf(meta.last_modified, sizeof meta.last_modified, "%s", resp.last_modified);
    meta.fetched_at = now;
    meta.stale = false;
    write_meta(dir, r->url, &meta, NULL);
    free(sig);
    reg_response_free(&resp);
    byoai_index_free(cached);
    src->fetched_at = now;
    *out = fresh;
    return 0;
bad:
    free(sig);
    reg_response_free(&resp);
    if (cached) {
        byoai_error_prefix(err, "registry %s sent a bad index (the index cached on %s is kept; add --offline to use "
                                "it)", r->name, when(meta.fetched_at, w, sizeof w));
        byoai_index_free(cached);
    } else {
        byoai_error_prefix(err, "registry %s sent a bad index", r->name);
    }
    return rc;
}

/* ---- after a publish ------------------------------------------------------- */
/* the index URL a registry URL names, without trailing slashes before it */
static int canonical_index_url(const char *url, char *out, size_t cap) {
    char base[2200];
    if (snprintf(base, sizeof base, "%s", url) >= (int)sizeof base) return BYOAI_EINVAL;
    size_t n = strlen(base);
    if (n >= 10 && !strcmp(base + n - 10, "index.json")) base[n -= 10] = '\0';
    while (n && base[n - 1] == '/') base[--n] = '\0';
    return reg_index_url(base, out, cap, NULL);
}

void reg_cache_mark_stale(byoai_store *s, const char *registry_url) {
    char want[2300], root[4200];
    if (canonical_index_url(registry_url, want, sizeof want)) return;
    if ((size_t)snprintf(root, sizeof root, "%s/cache/registries", byoai_store_home(s)) >= sizeof root) return;
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char dir[4500], have[2300];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        cache_meta m;
        read_meta(dir, &m);
        if (!m.fetched_at || m.stale || !m.url[0]) continue;
        if (canonical_index_url(m.url, have, sizeof have) || strcmp(have, want)) continue;
        m.stale = true;
        if (write_meta(dir, m.url, &m, NULL) == 0)
            byoai_log(BYOAI_LOG_DEBUG, "the cached index of %s is stale after a publish", m.url);
    }
    closedir(d);
}

const char *byoai_index_age(const byoai_index_source *src, char *buf, size_t cap) {
    buf[0] = '\0';
    uint64_t now = byoai_time_unix();
    if (!src || !src->from_cache || !src->fetched_at || now <= src->fetched_at) return buf;
    uint64_t age = now - src->fetched_at;
    const char *unit = "second";
    uint64_t n = age;
    if (age >= 2 * 86400) n = age / 86400, unit = "day";
    else if (age >= 2 * 3600) n = age / 3600, unit = "hour";
    else if (age >= 60) n = age / 60, unit = "minute";
    snprintf(buf, cap, "%llu %s%s", (unsigned long long)n, unit, n == 1 ? "" : "s");
    return buf;
}
