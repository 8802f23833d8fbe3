/* Private parts of the store module shared by its files. */
#ifndef BYOAI_STORE_INTERNAL_H
#define BYOAI_STORE_INTERNAL_H

#include <limits.h>

#include "byoai/store.h"

struct byoai_store {
    char home[PATH_MAX];
    char blobs[PATH_MAX];     /* home/blobs */
    char partial[PATH_MAX];   /* home/blobs/partial */
    char manifests[PATH_MAX]; /* home/manifests */
};

/* home/<rel> into buf; BYOAI_EINVAL when it does not fit. */
int store_path(const byoai_store *s, char *buf, size_t cap, byoai_error *err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Split NAME[:VARIANT]; base and variant are buffers of BYOAI_NAME_MAX+1 and 64. */
int store_split_name(const char *name, char *base, char *variant, byoai_error *err);
/* Copy src into dst[cap]; false when it does not fit. */
bool store_copy(char *dst, size_t cap, const char *src);
/* Every blob sha256 that any manifest names (an unreadable manifest: every
 * 64-hex run in its text, to stay on the safe side). *out malloc'd, sorted. */
int store_referenced(byoai_store *s, char (**out)[65], size_t *n, byoai_error *err);
/* A bundle role: 1-32 of a-z, 0-9, '_', '-'. */
bool store_role_ok(const char *role);
/* Open a new temporary file in the partial directory; path receives its name. */
int store_tmpfile(byoai_store *s, const char *prefix, char *path, size_t cap, byoai_error *err);


/* ---- tar (POSIX ustar; GNU base-256 sizes past 8 GiB) ---------------------- */
typedef struct tar_entry {
    char name[101];
    uint64_t size;
    char type;               /* '0' (or '\0') for a regular file */
} tar_entry;
/* Fill a 512-byte header block. */
int tar_header(uint8_t blk[512], const char *name, uint64_t size, uint64_t mtime);
/* Parse a header block; *end is set for an all-zero block. Hostile input:
 * checksum, magic, NUL-terminated name, size range are checked. */
int tar_parse(const uint8_t blk[512], tar_entry *e, bool *end, byoai_error *err);
#endif
