/* byoai import: a local GGUF file becomes an installed model without being
 * stored twice (reflink or hard link when the file system allows). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "byoai/gguf.h"
#include "byoai/model.h"
#include "store_internal.h"

static void lower_copy(char *dst, size_t cap, const char *src) {
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++) dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] + 32) : src[i];
    dst[i] = '\0';
}

static void gguf_str(const byoai_gguf *g, const char *key, char *dst, size_t cap) {
    byoai_gguf_str v;
    dst[0] = '\0';
    if (byoai_gguf_get_str(g, key, &v, NULL) == 0 && v.len < cap && !memchr(v.ptr, '\0', v.len) &&
        byoai_utf8_valid(v.ptr, v.len)) {
        memcpy(dst, v.ptr, v.len);
        dst[v.len] = '\0';
    }
}

int byoai_store_import(byoai_store *s, const char *path, const char *name, const byoai_import_opts *opts,
                       byoai_progress_fn progress, void *user, byoai_store_model *out, const char **how,
                       byoai_error *err) {
    byoai_import_opts none = {0};
    if (!opts) opts = &none;
    char base[BYOAI_NAME_MAX + 1], variant[64];
    int rc = store_split_name(name, base, variant, err);
    if (rc) return rc;
    if (opts->description && (strlen(opts->description) >= 1024 ||
                              !byoai_utf8_valid(opts->description, strlen(opts->description))))
        return byoai_error_set(err, BYOAI_EINVAL, "the description must be valid UTF-8 of at most 1023 bytes");
    if (opts->license && (strlen(opts->license) >= 128 || !byoai_utf8_valid(opts->license, strlen(opts->license))))
        return byoai_error_set(err, BYOAI_EINVAL, "the license must be valid UTF-8 of at most 127 bytes");

    /* a valid GGUF file, described from its metadata */
    byoai_gguf *g;
    if ((rc = byoai_gguf_open(path, &g, err))) return byoai_error_prefix(err, "cannot import %s", path);
    byoai_manifest m = {0};
    byoai_store_member f = {0};
    byoai_model_info info;
    if (byoai_model_describe(g, 0, &info, NULL) == 0) {
        snprintf(f.architecture, sizeof f.architecture, "%s", info.arch);
        if (!variant[0]) lower_copy(variant, sizeof variant, info.file_type);
    }
    gguf_str(g, "general.license", m.license, sizeof m.license);
    gguf_str(g, "general.description", m.description, sizeof m.description);
    byoai_gguf_close(g);
    if (variant[0]) {
        char tmp[BYOAI_NAME_MAX + 70];
        snprintf(tmp, sizeof tmp, "x:%s", variant);
        if (byoai_store_check_name(tmp, NULL)) variant[0] = '\0';
    }
    if (opts->license) snprintf(m.license, sizeof m.license, "%s", opts->license);
    if (opts->description) snprintf(m.description, sizeof m.description, "%s", opts->description);

    int lock;
    if ((rc = byoai_store_lock(s, false, &lock, err))) return rc;
    rc = byoai_store_link_blob(s, path, opts->copy_only, f.sha256, how, progress, user, err);
    if (!rc) {
        snprintf(m.name, sizeof m.name, "%s", base);
        snprintf(m.variant, sizeof m.variant, "%s", variant);
        snprintf(m.origin.registry, sizeof m.origin.registry, "local");
        char real[PATH_MAX];
        snprintf(m.origin.source, sizeof m.origin.source, "%s", realpath(path, real) ? real : path);
        m.installed_at = (uint64_t)time(NULL);
        snprintf(f.role, sizeof f.role, "model");
        snprintf(f.model, sizeof f.model, "%s", base);
        snprintf(f.variant, sizeof f.variant, "%s", variant);
        f.origin = m.origin;
        char bp[PATH_MAX];
        struct stat st;
        if (byoai_store_blob_path(s, f.sha256, bp, sizeof bp) == 0 && stat(bp, &st) == 0) f.size = (uint64_t)st.st_size;
        m.members = &f;
        m.n_members = 1;
        rc = byoai_store_write_manifest(s, &m, err);
        if (!rc && out) byoai_store_model_from_manifest(s, &m, out);
    }
    byoai_store_unlock(s, lock);
    return rc;
}
