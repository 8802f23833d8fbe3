/*
 * byoai/base.h: errors, logging, files, hashing, time and threads.
 *
 * Contract
 * - Every fallible function in libbyoai returns an int status: 0 (BYOAI_OK)
 *   on success or a negative BYOAI_E* code, and, when given one, fills a
 *   byoai_error that the caller owns with a sentence saying what went wrong
 *   and, where it can, what to do next. Nothing below src/cli/ calls exit().
 * - Files are written atomically (byoai_fs_write_atomic): a crash never
 *   leaves a half-written file under the final name.
 * - The thread pool is the only place that owns threads for compute; the
 *   log level is the only documented global (set once at start-up).
 */
#ifndef BYOAI_BASE_H
#define BYOAI_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------ */
enum {
    BYOAI_OK = 0,
    BYOAI_EINVAL = -1,       /* bad argument from the caller or user */
    BYOAI_EIO = -2,          /* the operating system refused (open, read, write) */
    BYOAI_ENOMEM = -3,       /* out of memory or over a configured limit */
    BYOAI_EFORMAT = -4,      /* malformed input data (file, JSON, message) */
    BYOAI_EUNSUPPORTED = -5, /* well-formed but not supported by this build */
    BYOAI_ENOTFOUND = -6,    /* a named thing does not exist */
    BYOAI_ERANGE = -7,       /* a value outside its allowed range */
    BYOAI_EEXIST = -8,       /* already exists */
    BYOAI_ENET = -9,         /* network failure */
    BYOAI_EAUTH = -10,       /* authentication or signature failure */
    BYOAI_ECANCELED = -11,   /* the operation was cancelled */
    BYOAI_ETIMEOUT = -12,    /* a deadline passed */
    BYOAI_ENOSPC = -13,      /* not enough disk space */
    BYOAI_EBUSY = -14,       /* resource held by someone else */
    BYOAI_ECHECKSUM = -15,   /* content does not match its checksum */
};

#define BYOAI_ERROR_MAX 1024

/* An error report. Owned by the caller; functions fill it on failure. */
typedef struct byoai_error {
    int code;                  /* the BYOAI_E* code, 0 when no error */
    char msg[BYOAI_ERROR_MAX]; /* human sentence, NUL-terminated */
} byoai_error;

/* Fill err (may be NULL) with code and a printf-style message; returns code. */
int byoai_error_set(byoai_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepend context to an existing message: "context: old message". Returns err->code. */
int byoai_error_prefix(byoai_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void byoai_error_clear(byoai_error *err);
/* Short name of a status code ("malformed input", ...). */
const char *byoai_status_name(int code);

/* ---- logging ----------------------------------------------------------- */
typedef enum { BYOAI_LOG_ERROR = 0, BYOAI_LOG_WARN, BYOAI_LOG_INFO, BYOAI_LOG_DEBUG } byoai_log_level;
/* Global log level; default WARN, or from $BYOAI_LOG (error|warn|info|debug). */
void byoai_log_set_level(byoai_log_level level);
byoai_log_level byoai_log_get_level(void);
void byoai_log(byoai_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- time -------------------------------------------------------------- */
double byoai_time_now(void); /* monotonic seconds */
uint64_t byoai_time_unix(void); /* wall clock, seconds since the epoch */

/* ---- memory helpers (abort-free: return NULL on failure) -------------- */
/* Multiply a*b into *out; false on overflow. */
static inline bool byoai_mul_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool byoai_add_overflow(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}
/* strdup of at most n bytes; NULL on allocation failure. */
char *byoai_strndup(const char *s, size_t n);
/* Allocate aligned memory (alignment a power of two); free with free(). */
void *byoai_aligned_alloc(size_t alignment, size_t size);

/* ---- a growable byte buffer (buf.c) ------------------------------------ */
/* data is NUL-terminated after every append (NULL while empty and never
 * appended to); the owner frees it with byoai_buf_free. */
typedef struct byoai_buf {
    char *data;
    size_t len, cap;
} byoai_buf;
/* Append n bytes; false when out of memory (the buffer is unchanged). */
bool byoai_buf_append(byoai_buf *b, const void *data, size_t n);
void byoai_buf_clear(byoai_buf *b);
void byoai_buf_free(byoai_buf *b);

/* ---- files ------------------------------------------------------------- */
/* Read a whole file into a malloc'd buffer (NUL-terminated; *len excludes
 * the NUL). max_size bounds what is accepted (0 = 1 GiB). Caller frees. */
int byoai_fs_read_all(const char *path, size_t max_size, char **data, size_t *len, byoai_error *err);
/* Write data to path atomically: path.tmp.PID, fsync, rename, fsync dir. */
int byoai_fs_write_atomic(const char *path, const void *data, size_t len, byoai_error *err);
/* mkdir -p with the given mode. */
int byoai_fs_mkdirs(const char *path, unsigned mode, byoai_error *err);
bool byoai_fs_exists(const char *path);
/* fsync the directory that contains path (after a rename). */
int byoai_fs_sync_parent(const char *path);
/* Free bytes on the file system that holds path; -1 when unknown. */
int64_t byoai_fs_free_bytes(const char *path);

/* A read-only memory map of a whole file. */
typedef struct byoai_mmap {
    const uint8_t *data;
    size_t size;
    int fd;
} byoai_mmap;
int byoai_mmap_open(byoai_mmap *m, const char *path, byoai_error *err);
void byoai_mmap_close(byoai_mmap *m);

/* ---- hashing ----------------------------------------------------------- */
typedef struct byoai_sha256 { void *impl; } byoai_sha256;
int byoai_sha256_init(byoai_sha256 *h);
void byoai_sha256_update(byoai_sha256 *h, const void *data, size_t len);
/* Writes 64 lowercase hex chars + NUL into hex[65] and frees the state. */
void byoai_sha256_final_hex(byoai_sha256 *h, char hex[65]);
void byoai_sha256_free(byoai_sha256 *h);
/* sha256 of a whole file, as hex. */
int byoai_sha256_file(const char *path, char hex[65], byoai_error *err);
/* sha256 of a buffer, as hex. */
void byoai_sha256_buf(const void *data, size_t len, char hex[65]);

/* ---- UTF-8 ------------------------------------------------------------- */
/* Length in bytes of the UTF-8 sequence that starts with byte c (1..4), or
 * 1 for an invalid lead byte. */
int byoai_utf8_len(uint8_t c);
/* True when s[0..n) is valid UTF-8 (no overlongs, no surrogates). */
bool byoai_utf8_valid(const char *s, size_t n);
/* A malloc'd, NUL-terminated copy of s[0..n) with every byte that is not part
 * of a valid UTF-8 sequence replaced by U+FFFD (model output and token
 * pieces can be any bytes; JSON strings cannot). NULL when out of memory. */
char *byoai_utf8_sanitize(const char *s, size_t n, size_t *out_len);
/* Number of bytes at the end of s[0..n) that form an incomplete UTF-8
 * sequence (0..3): what a streaming printer must hold back. */
size_t byoai_utf8_incomplete_tail(const char *s, size_t n);
/* Decode one code point at s (n bytes available); returns bytes used (>=1),
 * *cp = 0xFFFD for invalid input. */
int byoai_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encode cp into out (4 bytes); returns bytes written. */
int byoai_utf8_encode(uint32_t cp, char out[4]);

/* ---- thread pool ------------------------------------------------------- */
/* A fixed set of worker threads. byoai_pool_run() runs fn(arg, ith, nth) on
 * every thread (the caller is thread 0) and returns when all are done.
 * Workers spin briefly between jobs, then sleep. Not reentrant: one
 * byoai_pool_run at a time per pool. */
typedef struct byoai_pool byoai_pool;
typedef void (*byoai_pool_fn)(void *arg, int ith, int nth);
int byoai_pool_new(int n_threads, byoai_pool **out, byoai_error *err);
void byoai_pool_free(byoai_pool *pool);
int byoai_pool_size(const byoai_pool *pool);
void byoai_pool_run(byoai_pool *pool, byoai_pool_fn fn, void *arg);
/* Number of online CPUs (at least 1). */
int byoai_cpu_count(void);

/* Progress of a long operation (download, verification, copy, loading a
 * model, ...). */
typedef struct byoai_progress {
    const char *phase;     /* "resolving", "waiting", "downloading", "verifying", "copying", "loading", "done" */
    const char *what;      /* file or model being worked on */
    uint64_t done, total;  /* bytes (total 0 when unknown) */
    double rate;           /* bytes per second, smoothed */
} byoai_progress;

/* Return non-zero to cancel the operation (it then fails with BYOAI_ECANCELED). */
typedef int (*byoai_progress_fn)(void *user, const byoai_progress *p);

#ifdef __cplusplus
}
#endif
#endif
