/* Bundles: a named set of installed models with roles, a system prompt and
 * run parameters, and the archive that carries one to another machine
 * (tar: manifest.json first, then blobs/sha256-<hex>, each verified on the
 * way in before it is stored). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

#define ARCHIVE_MANIFEST "manifest.json"

int byoai_store_bundle_create(byoai_store *s, const char *name, const byoai_bundle_member_spec *members, size_t n,
                              const char *system_prompt, const char *params_json, byoai_error *err) {
    int rc = byoai_store_check_name(name, err);
    if (rc) return rc;
    if (strchr(name, ':')) return byoai_error_set(err, BYOAI_EINVAL, "a bundle's name has no variant: '%s'", name);
    if (n == 0 || n > 16) return byoai_error_set(err, BYOAI_EINVAL, "a bundle has 1 to 16 models");
    if (system_prompt && (strlen(system_prompt) >= 4096 || !byoai_utf8_valid(system_prompt, strlen(system_prompt))))
        return byoai_error_set(err, BYOAI_EINVAL, "the system prompt must be valid UTF-8 of at most 4095 bytes");
    byoai_manifest m = {0};
    snprintf(m.params_json, sizeof m.params_json, "{}");
    if (params_json && *params_json) {
        json_error_t je;
        json_t *p = json_loads(params_json, JSON_REJECT_DUPLICATES, &je);
        bool ok = json_is_object(p);
        const char *k;
        json_t *v;
        if (ok) json_object_foreach(p, k, v) ok &= json_is_number(v) || json_is_string(v) || json_is_boolean(v);
        char *d = ok ? json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(p);
        if (!d || strlen(d) >= sizeof m.params_json) {
            free(d);
            return byoai_error_set(err, BYOAI_EINVAL,
                                   "parameters must be a JSON object of numbers, strings and booleans (2 KiB at most)");
        }
        snprintf(m.params_json, sizeof m.params_json, "%s", d);
        free(d);
    }
    /* a model's name is not free for a bundle */
    byoai_manifest existing;
    if (byoai_store_read_manifest(s, name, &existing, NULL) == 0) {
        bool is_model = !existing.is_bundle;
        byoai_manifest_free(&existing);
        if (is_model)
            return byoai_error_set(err, BYOAI_EEXIST, "'%s' is an installed model; choose another name for the bundle",
                                   name);
    }
    m.members = calloc(n, sizeof *m.members);
    if (!m.members) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    m.n_members = n;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!store_role_ok(members[i].role)) {
            rc = byoai_error_set(err, BYOAI_EINVAL, "invalid role '%s': use 1-32 of a-z, 0-9, '_', '-'",
                                 members[i].role ? members[i].role : "");
            break;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(members[j].role, members[i].role)) {
                rc = byoai_error_set(err, BYOAI_EINVAL, "role '%s' is given twice", members[i].role);
                break;
            }
        if (rc) break;
        byoai_manifest mm;
        if ((rc = byoai_store_read_manifest(s, members[i].model, &mm, err))) break;
        if (mm.is_bundle) {
            byoai_manifest_free(&mm);
            rc = byoai_error_set(err, BYOAI_EINVAL, "'%s' is a bundle; a bundle holds models", members[i].model);
            break;
        }
        m.members[i] = mm.members[0];
        snprintf(m.members[i].role, sizeof m.members[i].role, "%s", members[i].role);
        if (!m.description[0]) snprintf(m.description, sizeof m.description, "bundle of %s", mm.name);
        byoai_manifest_free(&mm);
    }
    if (!rc) {
        m.is_bundle = true;
        snprintf(m.name, sizeof m.name, "%s", name);
        snprintf(m.system_prompt, sizeof m.system_prompt, "%s", system_prompt ? system_prompt : "");
        snprintf(m.origin.registry, sizeof m.origin.registry, "local");
        m.installed_at = (uint64_t)time(NULL);
        int lock;
        if (!(rc = byoai_store_lock(s, false, &lock, err))) {
            rc = byoai_store_write_manifest(s, &m, err);
            byoai_store_unlock(s, lock);
        }
    }
    byoai_manifest_free(&m);
    return rc;
}

/* ---- export -------------------------------------------------------------------- */
static int write_all(int fd, const void *p, size_t n, const char *path, byoai_error *err) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0)
            return byoai_error_set(err, errno == ENOSPC ? BYOAI_ENOSPC : BYOAI_EIO, "cannot write %s: %s", path,
                                   strerror(errno));
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int pad(int fd, uint64_t size, const char *path, byoai_error *err) {
    static const uint8_t zero[512];
    size_t r = (size_t)(size % 512);
    return r ? write_all(fd, zero, 512 - r, path, err) : 0;
}

int byoai_store_bundle_export(byoai_store *s, const char *name, const char *out_path, byoai_progress_fn progress,
                              void *user, byoai_error *err) {
    byoai_manifest m;
    int rc = byoai_store_read_manifest(s, name, &m, err);
    if (rc) return rc;
    char *text = byoai_manifest_format(&m);
    if (!text) {
        byoai_manifest_free(&m);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    uint64_t total = 0;
    for (size_t i = 0; i < m.n_members; i++) total += m.members[i].size;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out_path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(text);
        byoai_manifest_free(&m);
        return byoai_error_set(err, BYOAI_EIO, "cannot create %s: %s", tmp, strerror(errno));
    }
    uint8_t blk[512];
    uint64_t now = (uint64_t)time(NULL), done = 0;
    size_t tl = strlen(text);
    tar_header(blk, ARCHIVE_MANIFEST, tl, now);
    if (!(rc = write_all(fd, blk, 512, tmp, err)) && !(rc = write_all(fd, text, tl, tmp, err))) rc = pad(fd, tl, tmp, err);
    free(text);
    static __thread uint8_t buf[1 << 17];
    double t0 = byoai_time_now(), last = 0;
    for (size_t i = 0; i < m.n_members && !rc; i++) {
        bool dup = false;
        for (size_t j = 0; j < i; j++) dup |= !strcmp(m.members[j].sha256, m.members[i].sha256);
        if (dup) continue;
        char bp[PATH_MAX], entry[80];
        byoai_store_blob_path(s, m.members[i].sha256, bp, sizeof bp);
        snprintf(entry, sizeof entry, "blobs/sha256-%s", m.members[i].sha256);
        int in = open(bp, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            rc = byoai_error_set(err, BYOAI_ENOTFOUND, "the file of %s is missing from the store (%s)",
                                 m.members[i].model, bp);
            break;
        }
        tar_header(blk, entry, m.members[i].size, now);
        rc = write_all(fd, blk, 512, tmp, err);
        uint64_t left = m.members[i].size;
        while (!rc && left) {
            ssize_t r = read(in, buf, left < sizeof buf ? left : sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                rc = byoai_error_set(err, BYOAI_EIO, "cannot read %s (shorter than its manifest says)", bp);
                break;
            }
            rc = write_all(fd, buf, (size_t)r, tmp, err);
            left -= (uint64_t)r;
            done += (uint64_t)r;
            double t = byoai_time_now();
            if (progress && t - last > 0.2) {
                last = t;
                byoai_progress pr = {"exporting", m.members[i].model, done, total, t > t0 ? (double)done / (t - t0) : 0};
                if (progress(user, &pr)) rc = byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
            }
        }
        close(in);
        if (!rc) rc = pad(fd, m.members[i].size, tmp, err);
    }
    memset(blk, 0, sizeof blk);
    if (!rc && !(rc = write_all(fd, blk, 512, tmp, err))) rc = write_all(fd, blk, 512, tmp, err);
    if (!rc && fsync(fd) != 0) rc = byoai_error_set(err, BYOAI_EIO, "cannot sync %s: %s", tmp, strerror(errno));
    close(fd);
    if (!rc && rename(tmp, out_path) != 0)
        rc = byoai_error_set(err, BYOAI_EIO, "cannot rename %s to %s: %s", tmp, out_path, strerror(errno));
    if (rc) unlink(tmp);
    byoai_manifest_free(&m);
    return rc;
}

/* ---- import -------------------------------------------------------------------- */
static int read_full(int fd, void *p, size_t n, byoai_error *err) {
    uint8_t *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return byoai_error_set(err, BYOAI_EIO, "cannot read the archive: %s", strerror(errno));
        if (r == 0) return byoai_error_set(err, BYOAI_EFORMAT, "archive: truncated");
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int skip(int fd, uint64_t n, byoai_error *err) {
    if (lseek(fd, (off_t)n, SEEK_CUR) >= 0) return 0;
    static __thread uint8_t buf[65536];
    while (n) {
        size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
        int rc = read_full(fd, buf, k, err);
        if (rc) return rc;
        n -= k;
    }
    return 0;
}

/* one blob entry: hash while storing, verify, commit */
static int import_blob(byoai_store *s, int fd, const char *sha, uint64_t size, const char *what,
                       byoai_progress_fn progress, void *user, uint64_t *done, uint64_t total, byoai_error *err) {
    char tmp[PATH_MAX];
    int out = store_tmpfile(s, "bundle", tmp, sizeof tmp, err);
    if (out < 0) return out;
    byoai_sha256 h;
    if (byoai_sha256_init(&h)) {
        close(out);
        unlink(tmp);
        return byoai_error_set(err, BYOAI_ENOMEM, "cannot start sha256");
    }
    static __thread uint8_t buf[1 << 17];
    int rc = 0;
    uint64_t left = size;
    double t0 = byoai_time_now(), last = 0;
    while (!rc && left) {
        size_t k = left < sizeof buf ? (size_t)left : sizeof buf;
        if ((rc = read_full(fd, buf, k, err))) break;
        byoai_sha256_update(&h, buf, k);
        rc = write_all(out, buf, k, tmp, err);
        left -= k;
        *done += k;
        double t = byoai_time_now();
        if (!rc && progress && t - last > 0.2) {
            last = t;
            byoai_progress pr = {"importing", what, *done, total, t > t0 ? (double)*done / (t - t0) : 0};
            if (progress(user, &pr)) rc = byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
        }
    }
    char got[65];
    byoai_sha256_final_hex(&h, got);
    close(out);
    if (!rc && strcmp(got, sha))
        rc = byoai_error_set(err, BYOAI_ECHECKSUM,
                             "archive: the file of %s does not match its checksum (corrupt archive); nothing was "
                             "installed",
                             what);
    if (!rc) rc = byoai_store_commit_blob(s, sha, tmp, err);
    if (rc) unlink(tmp);
    return rc;
}

int byoai_store_bundle_import(byoai_store *s, const char *path, const char *as_name, byoai_progress_fn progress,
                              void *user, byoai_store_model *out, byoai_error *err) {
    if (as_name) {
        int rc = byoai_store_check_name(as_name, err);
        if (rc) return rc;
        if (strchr(as_name, ':')) return byoai_error_set(err, BYOAI_EINVAL, "a bundle's name has no variant");
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", path, strerror(errno));
    uint8_t blk[512];
    tar_entry e;
    bool end;
    byoai_manifest m = {0};
    int rc = read_full(fd, blk, 512, err);
    if (!rc) rc = tar_parse(blk, &e, &end, err);
    if (!rc && (end || strcmp(e.name, ARCHIVE_MANIFEST) || (e.type != '0' && e.type)))
        rc = byoai_error_set(err, BYOAI_EFORMAT, "%s is not a byoai bundle archive (it must start with %s)", path,
                             ARCHIVE_MANIFEST);
    if (!rc && e.size > (1 << 20)) rc = byoai_error_set(err, BYOAI_EFORMAT, "archive: manifest too large");
    char *text = NULL;
    if (!rc && !(text = malloc(e.size + 1))) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    if (!rc) rc = read_full(fd, text, e.size, err);
    if (!rc) rc = skip(fd, (512 - e.size % 512) % 512, err);
    if (!rc) rc = byoai_manifest_parse(text, e.size, &m, err);
    free(text);
    if (rc) {
        close(fd);
        return byoai_error_prefix(err, "cannot import %s", path);
    }
    /* room for what is not here yet */
    uint64_t need = 0, total = 0, done = 0;
    for (size_t i = 0; i < m.n_members; i++) {
        total += m.members[i].size;
        if (!byoai_store_has_blob(s, m.members[i].sha256, m.members[i].size)) need += m.members[i].size;
    }
    int lock = -1;
    if (!(rc = byoai_store_check_space(s, need, m.name, err))) rc = byoai_store_lock(s, false, &lock, err);
    while (!rc) {
        if ((rc = read_full(fd, blk, 512, err))) {
            if (rc == BYOAI_EFORMAT) byoai_error_set(err, BYOAI_EFORMAT, "archive: truncated (no end marker)");
            break;
        }
        if ((rc = tar_parse(blk, &e, &end, err)) || end) break;
        const char *sha = e.name + 13;
        const byoai_store_member *mem = NULL;
        if (!strncmp(e.name, "blobs/sha256-", 13) && byoai_store_check_sha256(sha))
            for (size_t i = 0; i < m.n_members; i++)
                if (!strcmp(m.members[i].sha256, sha)) mem = &m.members[i];
        if (!mem || (e.type != '0' && e.type)) {
            rc = byoai_error_set(err, BYOAI_EFORMAT, "archive: unexpected entry '%s' (type '%c')", e.name,
                                 e.type ? e.type : '0');
            break;
        }
        if (e.size != mem->size) {
            rc = byoai_error_set(err, BYOAI_EFORMAT, "archive: %s is %llu bytes, its manifest says %llu", e.name,
                                 (unsigned long long)e.size, (unsigned long long)mem->size);
            break;
        }
        if (byoai_store_has_blob(s, sha, e.size)) rc = skip(fd, e.size, err), done += e.size;
        else rc = import_blob(s, fd, sha, e.size, mem->model, progress, user, &done, total, err);
        if (!rc) rc = skip(fd, (512 - e.size % 512) % 512, err);
    }
    close(fd);
    for (size_t i = 0; !rc && i < m.n_members; i++)
        if (!byoai_store_has_blob(s, m.members[i].sha256, m.members[i].size))
            rc = byoai_error_set(err, BYOAI_EFORMAT, "archive: the file of %s is missing; nothing was installed",
                                 m.members[i].model);
    if (!rc) {
        if (as_name) snprintf(m.name, sizeof m.name, "%s", as_name);
        byoai_manifest existing;
        if (byoai_store_read_manifest(s, m.name, &existing, NULL) == 0) {
            bool clash = existing.is_bundle != m.is_bundle;
            byoai_manifest_free(&existing);
            if (clash)
                rc = byoai_error_set(err, BYOAI_EEXIST, "'%s' is installed as a %s; import it under another name "
                                     "(--name)", m.name, m.is_bundle ? "model" : "bundle");
        }
    }
    if (!rc) {
        m.installed_at = (uint64_t)time(NULL);
        rc = byoai_store_write_manifest(s, &m, err);
        if (!rc && out) byoai_store_model_from_manifest(s, &m, out);
    }
    byoai_store_unlock(s, lock);
    byoai_manifest_free(&m);
    if (rc) byoai_error_prefix(err, "cannot import %s", path);
    return rc;
}
