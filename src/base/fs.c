/* Files: whole-file reads, atomic writes, directories, memory maps. */
#include "byoai/base.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

int byoai_fs_read_all(const char *path, size_t max_size, char **data, size_t *len, byoai_error *err) {
    *data = NULL;
    if (len) *len = 0;
    if (max_size == 0) max_size = (size_t)1 << 30;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int code = errno == ENOENT ? BYOAI_ENOTFOUND : BYOAI_EIO;
        return byoai_error_set(err, code, "cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return byoai_error_set(err, BYOAI_EIO, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_size) {
        close(fd);
        return byoai_error_set(err, BYOAI_ERANGE, "%s is %lld bytes, more than the %zu allowed", path,
                               (long long)st.st_size, max_size);
    }
    size_t cap = (size_t)st.st_size;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory reading %s", path);
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return byoai_error_set(err, BYOAI_EIO, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    if (len) *len = got;
    return BYOAI_OK;
}

int byoai_fs_sync_parent(const char *path) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    const char *dir = dirname(tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return BYOAI_EIO;
    int rc = fsync(dfd);
    close(dfd);
    return rc == 0 ? BYOAI_OK : BYOAI_EIO;
}

int byoai_fs_write_atomic(const char *path, const void *data, size_t len, byoai_error *err) {
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof tmp)
        return byoai_error_set(err, BYOAI_EINVAL, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot create %s: %s", tmp, strerror(errno));
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return byoai_error_set(err, e == ENOSPC ? BYOAI_ENOSPC : BYOAI_EIO, "cannot write %s: %s", path,
                                   strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return byoai_error_set(err, BYOAI_EIO, "cannot sync %s: %s", path, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return byoai_error_set(err, BYOAI_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    byoai_fs_sync_parent(path);
    return BYOAI_OK;
}

int byoai_fs_mkdirs(const char *path, unsigned mode, byoai_error *err) {
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return byoai_error_set(err, BYOAI_EINVAL, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return byoai_error_set(err, BYOAI_EIO, "cannot create directory %s: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return byoai_error_set(err, BYOAI_EIO, "%s exists and is not a directory", path);
    return BYOAI_OK;
}

bool byoai_fs_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int64_t byoai_fs_free_bytes(const char *path) {
    struct statvfs sv;
    if (statvfs(path, &sv) != 0) return -1;
    return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

int byoai_mmap_open(byoai_mmap *m, const char *path, byoai_error *err) {
    memset(m, 0, sizeof *m);
    m->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int code = errno == ENOENT ? BYOAI_ENOTFOUND : BYOAI_EIO;
        return byoai_error_set(err, code, "cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return byoai_error_set(err, BYOAI_EIO, "cannot stat %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return byoai_error_set(err, BYOAI_EINVAL, "%s is not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return byoai_error_set(err, BYOAI_EIO, "cannot map %s: %s", path, strerror(errno));
        }
        m->data = p;
    }
    m->fd = fd;
    return BYOAI_OK;
}

void byoai_mmap_close(byoai_mmap *m) {
    if (m->data) munmap((void *)m->data, m->size);
    if (m->fd >= 0) close(m->fd);
    m->data = NULL;
    m->size = 0;
    m->fd = -1;
}
