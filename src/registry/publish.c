/* `byoai publish`: sign and upload a GGUF file to a registry. The
 * signature binds the name, the file's sha256 and size, a timestamp, a
 * nonce and the metadata, so the registry can tell who sent it, that it
 * arrived intact, and that it is not a replay. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "byoai/gguf.h"
#include "publish_proto.h"
#include "registry_internal.h"

/* The license the registry will record: --license, else general.license.
 * An index needs one (1-127 bytes of UTF-8, no control characters). */
static int check_license(const char *given, const char *in_file, size_t file_len, const char *file, byoai_error *err) {
    const char *what = given ? "--license" : "general.license";
    const char *lic = given ? given : in_file;
    size_t n = given ? strlen(given) : file_len;
    if (!lic || n == 0)
        return byoai_error_set(err, BYOAI_EINVAL,
                               "%s has no license, and a registry lists a model only with one; pass --license with an "
                               "SPDX id (e.g. --license apache-2.0 or --license mit; see the model's card) or set "
                               "general.license in the file. Nothing was uploaded", file);
    if (n > 127)
        return byoai_error_set(err, BYOAI_EINVAL, "%s is %zu bytes long; an index takes at most 127 (use the SPDX id, "
                               "e.g. apache-2.0). Nothing was uploaded", what, n);
    if (!byoai_utf8_valid(lic, n))
        return byoai_error_set(err, BYOAI_EINVAL, "%s is not valid UTF-8. Nothing was uploaded", what);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)lic[i] < 0x20 || lic[i] == 0x7f)
            return byoai_error_set(err, BYOAI_EINVAL, "%s contains a control character; give an SPDX id such as "
                                   "apache-2.0. Nothing was uploaded", what);
    return 0;
}

int byoai_publish(byoai_store *s, const char *file, const byoai_publish_opts *o, byoai_progress_fn progress,
                  void *user, byoai_publish_result *res, byoai_error *err) {
    memset(res, 0, sizeof *res);
    int rc = byoai_store_check_name(o->name, err);
    if (rc) return rc;
    if (strchr(o->name, ':'))
        return byoai_error_set(err, BYOAI_EINVAL, "give the variant with --variant, not in the name");
    /* the registry's base URL */
    char base[2100];
    if (!o->registry || !*o->registry) return byoai_error_set(err, BYOAI_EINVAL, "no registry given (--registry URL)");
    if (strstr(o->registry, "://")) {
        if ((rc = byoai_registry_check_url(o->registry, err))) return rc;
        snprintf(base, sizeof base, "%s", o->registry);
    } else {
        byoai_registry_conf r;
        if ((rc = byoai_registry_get(s, o->registry, &r, err))) return rc;
        snprintf(base, sizeof base, "%s", r.url);
    }
    if (strncmp(base, "http://", 7) && strncmp(base, "https://", 8))
        return byoai_error_set(err, BYOAI_EINVAL, "publishing needs an http(s) registry, not %s", base);
    size_t bl = strlen(base);
    if (bl >= 10 && !strcmp(base + bl - 10, "index.json")) base[bl -= 10] = '\0';
    while (bl && base[bl - 1] == '/') base[--bl] = '\0';
    /* the file: valid GGUF with a license the index accepts, checked here
     * already, so mistakes show before an upload */
    byoai_gguf *g;
    if ((rc = byoai_gguf_open(file, &g, err))) return byoai_error_prefix(err, "cannot publish %s", file);
    byoai_gguf_str gl = {0};
    bool file_license = byoai_gguf_get_str(g, "general.license", &gl, NULL) == 0 && gl.len > 0;
    rc = check_license(o->license, file_license ? gl.ptr : NULL, file_license ? (size_t)gl.len : 0, file, err);
    byoai_gguf_close(g);
    if (rc) return rc;
    /* the key */
    char kp[4200];
    if (o->key_path) snprintf(kp, sizeof kp, "%s", o->key_path);
    else byoai_key_default_path(s, kp, sizeof kp);
    byoai_key key;
    if ((rc = byoai_key_load_secret(kp, &key, err))) return rc;
    struct stat st;
    stat(file, &st);
    if (progress) {
        byoai_progress pr = {"verifying", file, 0, (uint64_t)st.st_size, 0};
        progress(user, &pr);
    }
    char sha[65];
    if ((rc = byoai_sha256_file(file, sha, err))) {
        sodium_memzero(&key, sizeof key);
        return rc;
    }
    /* metadata */
    json_t *meta = json_object();
    if (o->variant) json_object_set_new(meta, "variant", json_string(o->variant));
    if (o->description) json_object_set_new(meta, "description", json_string(o->description));
    if (o->license) json_object_set_new(meta, "license", json_string(o->license));
    if (o->tags) {
        json_t *t = json_array();
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", o->tags);
        char *save;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
            if (*tok) json_array_append_new(t, json_string(tok));
        json_object_set_new(meta, "tags", t);
    }
    char *meta_s = json_dumps(meta, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_SORT_KEYS);
    size_t nkeys = json_object_size(meta);
    json_decref(meta);
    if (!meta_s || (nkeys != (size_t)(o->variant != NULL) + (o->description != NULL) + (o->license != NULL) + (o->tags != NULL))) {
        free(meta_s);
        sodium_memzero(&key, sizeof key);
        return byoai_error_set(err, BYOAI_EINVAL, "the description, license and tags must be valid UTF-8");
    }
    char nonce[33], meta_sha[65], msg[600], sig[129];
    if (o->nonce) snprintf(nonce, sizeof nonce, "%s", o->nonce);
    else {
        uint8_t nb[16];
        randombytes_buf(nb, sizeof nb);
        for (int i = 0; i < 16; i++) snprintf(nonce + 2 * i, 3, "%02x", nb[i]);
    }
    uint64_t ts = o->timestamp ? o->timestamp : byoai_time_unix();
    byoai_sha256_buf(meta_s, strlen(meta_s), meta_sha);
    publish_message(msg, sizeof msg, o->name, sha, (unsigned long long)st.st_size, (unsigned long long)ts, nonce,
                    meta_sha);
    byoai_sign(&key, msg, strlen(msg), sig);
    char publisher[64];
    snprintf(publisher, sizeof publisher, "%s", key.name);
    sodium_memzero(&key, sizeof key);
    /* upload */
    char h[7][9000];
    snprintf(h[0], sizeof h[0], "X-Byoai-Publisher: %s", publisher);
    snprintf(h[1], sizeof h[1], "X-Byoai-Timestamp: %llu", (unsigned long long)ts);
    snprintf(h[2], sizeof h[2], "X-Byoai-Nonce: %s", nonce);
    snprintf(h[3], sizeof h[3], "X-Byoai-Sha256: %s", sha);
    int ml = snprintf(h[4], sizeof h[4], "X-Byoai-Meta: %s", meta_s);
    snprintf(h[5], sizeof h[5], "X-Byoai-Signature: %s", sig);
    snprintf(h[6], sizeof h[6], "Content-Type: application/octet-stream");
    free(meta_s);
    if (ml < 0 || (size_t)ml >= sizeof h[4])
        return byoai_error_set(err, BYOAI_EINVAL, "the description and tags are too long (8 KiB at most)");
    const char *hdrs[8] = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], NULL};
    char url[2400];
    snprintf(url, sizeof url, "%s%s%s", base, PUBLISH_PATH, o->name);
    reg_request rq = {.method = "PUT", .headers = hdrs, .upload_path = file, .max_body = 1 << 20,
                      .max_rate = o->max_rate, .progress = progress, .user = user, .what = o->name};
    reg_response resp;
    if ((rc = reg_http(url, &rq, &resp, err))) return rc;
    res->http_status = (int)resp.status;
    json_t *body = resp.body ? json_loadb(resp.body, resp.len, 0, NULL) : NULL;
    if (resp.status == 201 || resp.status == 200) {
        const char *v;
        if ((v = json_string_value(json_object_get(body, "name")))) snprintf(res->name, sizeof res->name, "%s", v);
        if ((v = json_string_value(json_object_get(body, "variant"))))
            snprintf(res->variant, sizeof res->variant, "%s", v);
        if ((v = json_string_value(json_object_get(body, "revision"))))
            snprintf(res->revision, sizeof res->revision, "%s", v);
        if ((v = json_string_value(json_object_get(body, "publisher"))))
            snprintf(res->publisher, sizeof res->publisher, "%s", v);
        snprintf(res->sha256, sizeof res->sha256, "%s", sha);
        res->size = (uint64_t)st.st_size;
        rc = 0;
        /* our own cached copy of that index is out of date now */
        reg_cache_mark_stale(s, base);
    } else {
        const char *m = json_string_value(json_object_get(json_object_get(body, "error"), "message"));
        int code = resp.status == 401 || resp.status == 403 ? BYOAI_EAUTH
                   : resp.status == 409                     ? BYOAI_EEXIST
                   : resp.status == 404                     ? BYOAI_ENOTFOUND
                   : resp.status >= 500                     ? BYOAI_ENET
                                                            : BYOAI_EFORMAT;
        rc = byoai_error_set(err, code, "the registry refused the upload (HTTP %ld): %s", resp.status,
                             m ? m : resp.status == 404 ? "no publish endpoint here (is it a `byoai registry serve`?)"
                                                        : "no reason given");
    }
    json_decref(body);
    reg_response_free(&resp);
    return rc;
}
