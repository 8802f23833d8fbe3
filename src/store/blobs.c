/* Blobs: content-addressed files (blobs/sha256-<hex>), the partial
 * downloads that become them, locks, and the space they may take. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_internal.h"

int byoai_store_blob_path(const byoai_store *s, const char *sha256, char *path, size_t cap) {
    if (!byoai_store_check_sha256(sha256)) return BYOAI_EINVAL;
    if ((size_t)snprintf(path, cap, "%s/sha256-%s", s->blobs, sha256) >= cap) return BYOAI_EINVAL;
    return 0;
}

int byoai_store_partial_path(const byoai_store *s, const char *sha256, char *path, size_t cap) {
    if (!byoai_store_check_sha256(sha256)) return BYOAI_EINVAL;
    if ((size_t)snprintf(path, cap, "%s/sha256-%s.part", s->partial, sha256) >= cap) return BYOAI_EINVAL;
    return 0;
}

bool byoai_store_has_blob(byoai_store *s, const char *sha256, uint64_t size) {
    char p[PATH_MAX];
    struct stat st;
    if (byoai_store_blob_path(s, sha256, p, sizeof p)) return false;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    return size == 0 || (uint64_t)st.st_size == size;
}

int store_tmpfile(byoai_store *s, const char *prefix, char *path, size_t cap, byoai_error *err) {
    if ((size_t)snprintf(path, cap, "%s/%s-XXXXXX", s->partial, prefix) >= cap)
        return byoai_error_set(err, BYOAI_EINVAL, "path too long");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot create a file in %s: %s", s->partial, strerror(errno));
    return fd;
}

int byoai_store_commit_blob(byoai_store *s, const char *sha256, const char *tmp_path, byoai_error *err) {
    char dst[PATH_MAX];
    if (byoai_store_blob_path(s, sha256, dst, sizeof dst))
        return byoai_error_set(err, BYOAI_EINVAL, "invalid sha256 '%s'", sha256);
    int fd = open(tmp_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", tmp_path, strerror(errno));
    int rc = fsync(fd);
    struct stat st;
    fstat(fd, &st);
    close(fd);
    if (rc != 0) return byoai_error_set(err, BYOAI_EIO, "cannot sync %s: %s", tmp_path, strerror(errno));
    if (st.st_nlink == 1) chmod(tmp_path, 0444); /* never chmod a user's hard-linked file */
    if (rename(tmp_path, dst) != 0)
        return byoai_error_set(err, BYOAI_EIO, "cannot move %s to %s: %s", tmp_path, dst, strerror(errno));
    byoai_fs_sync_parent(dst);
    return 0;
}

/* copy src_fd to dst_fd, hashing; progress as "copying" */
static int copy_hash(int in, int out, const char *what, uint64_t total, byoai_sha256 *h, byoai_progress_fn progress,
                     void *user, byoai_error *err) {
    static __thread unsigned char buf[1 << 17];
    uint64_t done = 0;
    double last = 0, t0 = byoai_time_now();
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return byoai_error_set(err, BYOAI_EIO, "cannot read %s: %s", what, strerror(errno));
        if (r == 0) break;
        byoai_sha256_update(h, buf, (size_t)r);
        if (out >= 0) {
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(out, buf + off, (size_t)(r - off));
                if (w < 0 && errno == EINTR) continue;
                if (w < 0) {
                    int e = errno;
                    return byoai_error_set(err, e == ENOSPC || e == EDQUOT ? BYOAI_ENOSPC : BYOAI_EIO,
                                           e == ENOSPC ? "not enough disk space while storing %s: %s; free some space "
                                                         "and try again"
                                                       : "cannot write while storing %s: %s",
                                           what, strerror(e));
                }
                off += w;
            }
        }
        done += (uint64_t)r;
        double now = byoai_time_now();
        if (progress && now - last > 0.2) {
            last = now;
            byoai_progress p = {out >= 0 ? "copying" : "verifying", what, done, total,
                                now > t0 ? (double)done / (now - t0) : 0};
            if (progress(user, &p)) return byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
        }
    }
    return 0;
}

int byoai_store_link_blob(byoai_store *s, const char *src, bool copy_only, char sha_out[65], const char **how,
                          byoai_progress_fn progress, void *user, byoai_error *err) {
    const char *method = "copy";
    char tmp[PATH_MAX];
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", src, strerror(errno));
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return byoai_error_set(err, BYOAI_EINVAL, "%s is not a regular file", src);
    }
    int rc = 0;
    int out = store_tmpfile(s, "import", tmp, sizeof tmp, err);
    if (out < 0) {
        close(in);
        return out;
    }
    if (!copy_only && ioctl(out, FICLONE, in) == 0) {
        /* a reflink: a copy-on-write clone, no space used, independent of src */
        method = "reflink";
        close(out);
        out = -1;
    } else if (!copy_only) {
        /* a hard link when on the same file system: the same file twice */
        unlink(tmp);
        if (link(src, tmp) == 0) {
            method = "hardlink";
            close(out);
            out = -1;
        } else {
            close(out);
            out = store_tmpfile(s, "import", tmp, sizeof tmp, err);
            if (out < 0) {
                close(in);
                return out;
            }
        }
    }
    if (out >= 0) rc = byoai_store_check_space(s, (uint64_t)st.st_size, src, err);
    byoai_sha256 h;
    if (!rc && byoai_sha256_init(&h)) rc = byoai_error_set(err, BYOAI_ENOMEM, "cannot start sha256");
    else if (!rc) {
        int rd = in;
        if (out < 0) { /* linked or cloned: hash what is now in the store */
            rd = open(tmp, O_RDONLY | O_CLOEXEC);
            if (rd < 0) rc = byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", tmp, strerror(errno));
        }
        if (!rc) rc = copy_hash(rd, out, src, (uint64_t)st.st_size, &h, progress, user, err);
        if (rd != in && rd >= 0) close(rd);
        byoai_sha256_final_hex(&h, sha_out);
    }
    close(in);
    if (out >= 0) close(out);
    if (!rc && byoai_store_has_blob(s, sha_out, 0)) {
        unlink(tmp);
        method = "present";
    } else if (!rc) {
        rc = byoai_store_commit_blob(s, sha_out, tmp, err);
    }
    if (rc) unlink(tmp);
    if (how) *how = method;
    return rc;
}

/* ---- locks -------------------------------------------------------------------- */
/* Lock files exist only while someone holds them: the last holder removes
 * its file. A process that opened the file before it was removed gets a
 * lock on a name nobody uses any more, so after locking it checks that the
 * path still names its file, and starts again when not. */
static bool still_ours(const char *p, int f) {
    struct stat a, b;
    return fstat(f, &a) == 0 && stat(p, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Take the lock (op: LOCK_SH or LOCK_EX). With progress, waits without
 * blocking, reporting "waiting" about once a second (which may cancel). */
static int lock_file(const char *p, int op, byoai_progress_fn progress, void *user, int *fd, byoai_error *err) {
    *fd = -1;
    double last = 0;
    for (;;) {
        int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (f < 0) return byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", p, strerror(errno));
        int rc;
        while ((rc = flock(f, op | (progress ? LOCK_NB : 0))) != 0) {
            if (errno == EINTR) continue;
            if (!progress || errno != EWOULDBLOCK) {
                close(f);
                return byoai_error_set(err, BYOAI_EIO, "cannot lock %s: %s", p, strerror(errno));
            }
            double now = byoai_time_now();
            if (now - last >= 1.0) {
                last = now;
                byoai_progress pr = {"waiting", "another byoai is downloading the same file", 0, 0, 0};
                if (progress(user, &pr)) {
                    close(f);
                    return byoai_error_set(err, BYOAI_ECANCELED, "cancelled");
                }
            }
            usleep(50000);
        }
        if (still_ours(p, f)) {
            *fd = f;
            return 0;
        }
        close(f); /* its holder removed it while we waited: take the new one */
    }
}

/* Release, removing the file when nobody else holds or shares it. */
static void unlock_file(const char *p, int fd) {
    if (fd < 0) return;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && still_ours(p, fd)) unlink(p);
    close(fd);
}

static int blob_lock_path(const byoai_store *s, const char *sha256, char *p, size_t cap) {
    if (!byoai_store_check_sha256(sha256) || (size_t)snprintf(p, cap, "%s/sha256-%s.lock", s->partial, sha256) >= cap)
        return BYOAI_EINVAL;
    return 0;
}

int byoai_store_lock_blob(byoai_store *s, const char *sha256, int *fd, byoai_progress_fn progress, void *user,
                          byoai_error *err) {
    char p[PATH_MAX];
    *fd = -1;
    if (blob_lock_path(s, sha256, p, sizeof p)) return byoai_error_set(err, BYOAI_EINVAL, "invalid sha256 '%s'", sha256);
    return lock_file(p, LOCK_EX, progress, user, fd, err);
}

void byoai_store_unlock_blob(byoai_store *s, const char *sha256, int fd) {
    char p[PATH_MAX];
    if (fd < 0) return;
    if (blob_lock_path(s, sha256, p, sizeof p)) {
        close(fd);
        return;
    }
    unlock_file(p, fd);
}

int byoai_store_lock(byoai_store *s, bool exclusive, int *fd, byoai_error *err) {
    char p[PATH_MAX];
    *fd = -1;
    if (store_path(s, p, sizeof p, err, "store.lock")) return BYOAI_EINVAL;
    return lock_file(p, exclusive ? LOCK_EX : LOCK_SH, NULL, NULL, fd, err);
}

void byoai_store_unlock(byoai_store *s, int fd) {
    char p[PATH_MAX];
    if (fd < 0) return;
    if (store_path(s, p, sizeof p, NULL, "store.lock")) {
        close(fd);
        return;
    }
    unlock_file(p, fd);
}

/* ---- space ---------------------------------------------------------------------- */
static uint64_t dir_bytes(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t l = strlen(e->d_name), sl = suffix ? strlen(suffix) : 0;
        if (suffix && (l < sl || strcmp(e->d_name + l - sl, suffix))) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            sum += (uint64_t)st.st_size;
    }
    closedir(d);
    return sum;
}

void byoai_store_usage(byoai_store *s, uint64_t *blob_bytes, uint64_t *partial_bytes) {
    if (blob_bytes) *blob_bytes = dir_bytes(s->blobs, NULL);
    if (partial_bytes) *partial_bytes = dir_bytes(s->partial, NULL);
}

static uint64_t store_cap(byoai_store *s, const char **source) {
    const char *env = getenv("BYOAI_STORE_MAX_BYTES");
    uint64_t v = 0;
    if (env && *env && byoai_parse_bytes(env, &v) == 0) {
        *source = "BYOAI_STORE_MAX_BYTES";
        return v;
    }
    char p[PATH_MAX], *text;
    size_t len;
    if (store_path(s, p, sizeof p, NULL, "config.json") || byoai_fs_read_all(p, 1 << 20, &text, &len, NULL)) return 0;
    json_t *root = json_loadb(text, len, 0, NULL);
    free(text);
    json_t *m = json_object_get(root, "max_store_bytes");
    if (json_is_integer(m) && json_integer_value(m) > 0) v = (uint64_t)json_integer_value(m);
    json_decref(root);
    *source = "max_store_bytes in config.json";
    return v;
}

int byoai_store_check_space(byoai_store *s, uint64_t need, const char *what, byoai_error *err) {
    char a[32], b[32], c[32];
    const char *src = NULL;
    uint64_t cap = store_cap(s, &src);
    if (cap) {
        uint64_t used_b, used_p;
        byoai_store_usage(s, &used_b, &used_p);
        uint64_t used = used_b + used_p;
        if (used + need > cap || used + need < used)
            return byoai_error_set(err, BYOAI_ENOSPC,
                                   "not enough disk space for %s: it needs %s more, and the store is capped at %s "
                                   "(%s) with %s used; free space with `byoai remove MODEL` and `byoai gc`, or "
                                   "raise the cap",
                                   what, byoai_format_bytes(need, a, sizeof a), byoai_format_bytes(cap, b, sizeof b), src,
                                   byoai_format_bytes(used, c, sizeof c));
    }
    int64_t free_b = byoai_fs_free_bytes(s->blobs);
    if (free_b >= 0 && need > (uint64_t)free_b)
        return byoai_error_set(err, BYOAI_ENOSPC,
                               "not enough disk space for %s: it needs %s, and only %s are free in %s; free some "
                               "space (e.g. `byoai remove MODEL`, then `byoai gc`) and try again",
                               what, byoai_format_bytes(need, a, sizeof a), byoai_format_bytes((uint64_t)free_b, b, sizeof b), s->blobs);
    return 0;
}
