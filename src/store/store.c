/* The store: opening it, and the manifests that make models installed. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_internal.h"

int store_path(const byoai_store *s, char *buf, size_t cap, byoai_error *err, const char *fmt, ...) {
    char rel[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof rel || (size_t)snprintf(buf, cap, "%s/%s", s->home, rel) >= cap)
        return byoai_error_set(err, BYOAI_EINVAL, "path too long under %s", s->home);
    return 0;
}

int byoai_store_open(const char *home, byoai_store **out, byoai_error *err) {
    *out = NULL;
    char buf[PATH_MAX];
    if (!home || !*home) home = getenv("BYOAI_HOME");
    if (!home || !*home) {
        const char *xdg = getenv("XDG_DATA_HOME");
        const char *h = getenv("HOME");
        if (xdg && xdg[0] == '/') snprintf(buf, sizeof buf, "%s/byoai", xdg);
        else if (h && *h) snprintf(buf, sizeof buf, "%s/.local/share/byoai", h);
        else return byoai_error_set(err, BYOAI_EINVAL, "cannot find a home for the store: set BYOAI_HOME");
        home = buf;
    }
    if (strlen(home) > PATH_MAX - 200)
        return byoai_error_set(err, BYOAI_EINVAL, "store path too long: %s", home);
    byoai_store *s = calloc(1, sizeof *s);
    if (!s) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    snprintf(s->home, sizeof s->home, "%s", home);
    size_t n = strlen(s->home);
    while (n > 1 && s->home[n - 1] == '/') s->home[--n] = '\0';
    snprintf(s->blobs, sizeof s->blobs, "%s/blobs", s->home);
    snprintf(s->partial, sizeof s->partial, "%s/blobs/partial", s->home);
    snprintf(s->manifests, sizeof s->manifests, "%s/manifests", s->home);
    int rc;
    if ((rc = byoai_fs_mkdirs(s->partial, 0755, err)) || (rc = byoai_fs_mkdirs(s->manifests, 0755, err))) {
        byoai_error_prefix(err, "cannot open the model store (BYOAI_HOME=%s)", s->home);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void byoai_store_close(byoai_store *s) { free(s); }
const char *byoai_store_home(const byoai_store *s) { return s->home; }

/* ---- manifests ------------------------------------------------------------ */
static int manifest_path(const byoai_store *s, const char *base, char *path, size_t cap, byoai_error *err) {
    if ((size_t)snprintf(path, cap, "%s/%s.json", s->manifests, base) >= cap)
        return byoai_error_set(err, BYOAI_EINVAL, "path too long");
    return 0;
}

int byoai_store_read_manifest(byoai_store *s, const char *name, byoai_manifest *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    char base[BYOAI_NAME_MAX + 1], variant[64], path[PATH_MAX];
    int rc = store_split_name(name, base, variant, err);
    if (rc || (rc = manifest_path(s, base, path, sizeof path, err))) return rc;
    char *text;
    size_t len;
    rc = byoai_fs_read_all(path, 1 << 20, &text, &len, err);
    if (rc == BYOAI_ENOTFOUND)
        return byoai_error_set(err, BYOAI_ENOTFOUND,
                               "'%s' is not installed; install it with `byoai install %s` (or see `byoai list`)", name,
                               name);
    if (rc) return rc;
    rc = byoai_manifest_parse(text, len, out, err);
    free(text);
    if (rc) return byoai_error_prefix(err, "%s", path);
    if (strcmp(out->name, base)) {
        byoai_manifest_free(out);
        return byoai_error_set(err, BYOAI_EFORMAT, "%s names '%s', not '%s'; remove the file", path, out->name, base);
    }
    if (variant[0] && strcmp(variant, out->variant)) {
        char have[64];
        snprintf(have, sizeof have, "%s", out->variant);
        byoai_manifest_free(out);
        return byoai_error_set(err, BYOAI_ENOTFOUND,
                               "%s is installed as variant '%s', not '%s'; run `byoai install %s` to switch", base,
                               have, variant, name);
    }
    return 0;
}

int byoai_store_write_manifest(byoai_store *s, const byoai_manifest *m, byoai_error *err) {
    if (strchr(m->name, ':'))
        return byoai_error_set(err, BYOAI_EINVAL, "invalid name '%s': a manifest's name has no variant", m->name);
    int rc = byoai_store_check_name(m->name, err);
    if (rc) return rc;
    if (m->n_members == 0 || m->n_members > BYOAI_MANIFEST_MAX_MEMBERS)
        return byoai_error_set(err, BYOAI_EINVAL, "a manifest names 1 to %d files", BYOAI_MANIFEST_MAX_MEMBERS);
    for (size_t i = 0; i < m->n_members; i++)
        if (!byoai_store_has_blob(s, m->members[i].sha256, m->members[i].size))
            return byoai_error_set(err, BYOAI_ENOTFOUND, "blob sha256-%s (%s) is not in the store",
                                   m->members[i].sha256, m->members[i].model);
    char *text = byoai_manifest_format(m);
    if (!text) return byoai_error_set(err, BYOAI_ENOMEM, "cannot format the manifest of %s", m->name);
    /* what we write must read back */
    byoai_manifest check;
    rc = byoai_manifest_parse(text, strlen(text), &check, err);
    if (rc) {
        free(text);
        return byoai_error_prefix(err, "internal error: manifest of %s does not validate", m->name);
    }
    byoai_manifest_free(&check);
    char path[PATH_MAX];
    if (!(rc = manifest_path(s, m->name, path, sizeof path, err))) rc = byoai_fs_write_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

void byoai_store_model_from_manifest(const byoai_store *s, const byoai_manifest *m, byoai_store_model *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", m->name);
    snprintf(out->variant, sizeof out->variant, "%s", m->variant);
    const byoai_store_member *f = byoai_manifest_main(m);
    if (f) {
        byoai_store_blob_path(s, f->sha256, out->path, sizeof out->path);
        snprintf(out->sha256, sizeof out->sha256, "%s", f->sha256);
        out->size = f->size;
    }
    if (m->is_bundle) out->size = byoai_manifest_bytes(m);
    snprintf(out->registry, sizeof out->registry, "%s", m->origin.registry);
    snprintf(out->revision, sizeof out->revision, "%s", m->origin.revision);
    out->installed_at = m->installed_at;
    out->is_bundle = m->is_bundle;
    snprintf(out->system_prompt, sizeof out->system_prompt, "%s", m->system_prompt);
    snprintf(out->params_json, sizeof out->params_json, "%s", m->params_json[0] ? m->params_json : "{}");
}

uint64_t byoai_manifest_bytes(const byoai_manifest *m) {
    uint64_t sum = 0;
    for (size_t i = 0; i < m->n_members; i++) {
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++) dup = !strcmp(m->members[j].sha256, m->members[i].sha256);
        if (!dup) sum += m->members[i].size;
    }
    return sum;
}

static int cmp_model(const void *a, const void *b) {
    return strcmp(((const byoai_store_model *)a)->name, ((const byoai_store_model *)b)->name);
}

int byoai_store_list(byoai_store *s, byoai_store_model **out, size_t *n, byoai_error *err) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(s->manifests);
    if (!d) return byoai_error_set(err, BYOAI_EIO, "cannot read %s: %s", s->manifests, strerror(errno));
    size_t cap = 0;
    byoai_store_model *list = NULL;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") || l - 5 > BYOAI_NAME_MAX) continue;
        char name[BYOAI_NAME_MAX + 1];
        memcpy(name, e->d_name, l - 5);
        name[l - 5] = '\0';
        if (strchr(name, ':') || byoai_store_check_name(name, NULL)) continue;
        byoai_manifest m;
        byoai_error e2 = {0};
        if (byoai_store_read_manifest(s, name, &m, &e2)) {
            byoai_log(BYOAI_LOG_WARN, "skipping a broken manifest: %s", e2.msg);
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            byoai_store_model *nl = realloc(list, cap * sizeof *nl);
            if (!nl) {
                byoai_manifest_free(&m);
                rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
                break;
            }
            list = nl;
        }
        byoai_store_model_from_manifest(s, &m, &list[(*n)++]);
        byoai_manifest_free(&m);
    }
    closedir(d);
    if (rc) {
        free(list);
        *n = 0;
        return rc;
    }
    if (*n) qsort(list, *n, sizeof *list, cmp_model);
    *out = list;
    return 0;
}

int byoai_store_find(byoai_store *s, const char *name, byoai_store_model *out, byoai_error *err) {
    byoai_manifest m;
    int rc = byoai_store_read_manifest(s, name, &m, err);
    if (rc) return rc;
    byoai_store_model_from_manifest(s, &m, out);
    byoai_manifest_free(&m);
    if (!byoai_fs_exists(out->path))
        return byoai_error_set(err, BYOAI_ENOTFOUND,
                               "the file of %s (%s) is missing from the store; reinstall it with `byoai install %s`",
                               name, out->path, name);
    return 0;
}

int byoai_store_remove(byoai_store *s, const char *name, byoai_error *err) {
    byoai_manifest m;
    int rc = byoai_store_read_manifest(s, name, &m, err);
    if (rc == BYOAI_ENOTFOUND) {
        /* not "install it": someone removing a name wants it gone */
        char base[BYOAI_NAME_MAX + 1], variant[64];
        if (store_split_name(name, base, variant, NULL) == 0 && variant[0] &&
            byoai_store_read_manifest(s, base, &m, NULL) == 0) {
            byoai_error_set(err, BYOAI_ENOTFOUND, "%s is installed as variant '%s', not '%s'; `byoai remove %s` "
                            "removes it", base, m.variant, variant, base);
            byoai_manifest_free(&m);
            return BYOAI_ENOTFOUND;
        }
        return byoai_error_set(err, BYOAI_ENOTFOUND, "'%s' is not installed, so there is nothing to remove (see "
                               "`byoai list`)", name);
    }
    if (rc) return rc;
    char path[PATH_MAX];
    rc = manifest_path(s, m.name, path, sizeof path, err);
    byoai_manifest_free(&m);
    if (rc) return rc;
    if (unlink(path) != 0) return byoai_error_set(err, BYOAI_EIO, "cannot remove %s: %s", path, strerror(errno));
    byoai_fs_sync_parent(path);
    return 0;
}

int byoai_store_resolve(byoai_store *s, const char *arg, char *path, size_t cap, byoai_store_model *info,
                        byoai_error *err) {
    struct stat st;
    if (info) memset(info, 0, sizeof *info);
    if (stat(arg, &st) == 0) {
        if (!S_ISREG(st.st_mode)) return byoai_error_set(err, BYOAI_EINVAL, "%s is not a regular file", arg);
        if (!store_copy(path, cap, arg)) return byoai_error_set(err, BYOAI_EINVAL, "path too long: %s", arg);
        if (info) snprintf(info->path, sizeof info->path, "%s", arg);
        return 0;
    }
    if (byoai_store_check_name(arg, NULL))
        return byoai_error_set(err, BYOAI_ENOTFOUND, "model '%s' not found: give the path of a .gguf file or the "
                               "name of an installed model (see `byoai list`)", arg);
    byoai_store_model m;
    int rc = byoai_store_find(s, arg, &m, err);
    if (rc == BYOAI_ENOTFOUND && !strchr(arg, ':') && !byoai_fs_exists(arg)) {
        char p[PATH_MAX];
        if (!store_path(s, p, sizeof p, NULL, "manifests/%s.json", arg) && !byoai_fs_exists(p))
            return byoai_error_set(err, BYOAI_ENOTFOUND,
                                   "model '%s' not found: it is neither a file nor an installed model; install it "
                                   "with `byoai install %s` or give the path of a .gguf file", arg, arg);
    }
    if (rc) return rc;
    if (!store_copy(path, cap, m.path)) return byoai_error_set(err, BYOAI_EINVAL, "path too long: %s", m.path);
    if (info) *info = m;
    return 0;
}
