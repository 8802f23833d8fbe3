/* Garbage collection: blobs that no manifest names, and partial downloads
 * that nobody is downloading. Runs under the store's exclusive lock, so no
 * install is between committing a blob and writing its manifest. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_internal.h"

static int cmp_hex(const void *a, const void *b) { return memcmp(a, b, 64); }

static int add_ref(char (**list)[65], size_t *n, size_t *cap, const char *hex) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char(*nl)[65] = realloc(*list, nc * sizeof **list);
        if (!nl) return BYOAI_ENOMEM;
        *list = nl;
        *cap = nc;
    }
    memcpy((*list)[*n], hex, 64);
    (*list)[*n][64] = '\0';
    (*n)++;
    return 0;
}

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

int store_referenced(byoai_store *s, char (**out)[65], size_t *n_out, byoai_error *err) {
    *out = NULL;
    *n_out = 0;
    size_t n = 0, cap = 0;
    char(*list)[65] = NULL;
    DIR *d = opendir(s->manifests);
    if (!d) return byoai_error_set(err, BYOAI_EIO, "cannot read %s: %s", s->manifests, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[PATH_MAX], *text;
        size_t len;
        if ((size_t)snprintf(p, sizeof p, "%s/%s", s->manifests, e->d_name) >= sizeof p) continue;
        if (byoai_fs_read_all(p, 1 << 20, &text, &len, NULL)) continue;
        byoai_manifest m;
        if (byoai_manifest_parse(text, len, &m, NULL) == 0) {
            for (size_t i = 0; !rc && i < m.n_members; i++) rc = add_ref(&list, &n, &cap, m.members[i].sha256);
            byoai_manifest_free(&m);
        } else {
            /* unreadable (or a temporary file being written): keep every
             * hash it mentions rather than lose a model's file */
            for (size_t i = 0; !rc && i + 64 <= len; i++) {
                size_t j = i;
                while (j < len && is_hex(text[j])) j++;
                if (j - i == 64) rc = add_ref(&list, &n, &cap, text + i);
                if (j > i) i = j;
            }
        }
        free(text);
    }
    closedir(d);
    if (rc) {
        free(list);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    if (n) qsort(list, n, sizeof *list, cmp_hex);
    *out = list;
    *n_out = n;
    return 0;
}

int byoai_store_gc(byoai_store *s, bool dry_run, byoai_gc_report *rep, byoai_error *err) {
    memset(rep, 0, sizeof *rep);
    int lock;
    int rc = byoai_store_lock(s, !dry_run, &lock, err);
    if (rc) return rc;
    char(*refs)[65];
    size_t n_refs;
    if ((rc = store_referenced(s, &refs, &n_refs, err))) {
        byoai_store_unlock(s, lock);
        return rc;
    }
    DIR *d = opendir(s->blobs);
    if (!d) {
        free(refs);
        byoai_store_unlock(s, lock);
        return byoai_error_set(err, BYOAI_EIO, "cannot read %s: %s", s->blobs, strerror(errno));
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "sha256-", 7) || !byoai_store_check_sha256(e->d_name + 7)) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (n_refs && bsearch(e->d_name + 7, refs, n_refs, sizeof *refs, cmp_hex)) {
            rep->blobs_kept++;
            rep->kept_bytes += (uint64_t)st.st_size;
            continue;
        }
        if (!dry_run && unlinkat(dirfd(d), e->d_name, 0) != 0) {
            byoai_log(BYOAI_LOG_WARN, "cannot remove %s/%s: %s", s->blobs, e->d_name, strerror(errno));
            continue;
        }
        rep->blobs_removed++;
        rep->blob_bytes += (uint64_t)st.st_size;
    }
    closedir(d);
    free(refs);
    /* with the exclusive lock held no install or import runs: everything in
     * partial/ is left over from one that was interrupted */
    d = opendir(s->partial);
    if (d) {
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            struct stat st;
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) continue;
            size_t l = strlen(e->d_name);
            bool is_lock = l > 5 && !strcmp(e->d_name + l - 5, ".lock");
            if (!dry_run && unlinkat(dirfd(d), e->d_name, 0) != 0) continue;
            if (is_lock) continue;
            rep->partials_removed++;
            rep->partial_bytes += (uint64_t)st.st_size;
        }
        closedir(d);
    }
    byoai_fs_sync_parent(s->partial);
    byoai_store_unlock(s, lock);
    return 0;
}
