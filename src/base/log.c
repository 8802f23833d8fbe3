/* Logging to stderr with a process-wide level (the one documented global). */
#include "byoai/base.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_level = -1; /* -1: not yet read from the environment */

static byoai_log_level level_from_env(void) {
    const char *e = getenv("BYOAI_LOG");
    if (!e) return BYOAI_LOG_WARN;
    if (!strcmp(e, "error")) return BYOAI_LOG_ERROR;
    if (!strcmp(e, "info")) return BYOAI_LOG_INFO;
    if (!strcmp(e, "debug")) return BYOAI_LOG_DEBUG;
    return BYOAI_LOG_WARN;
}

void byoai_log_set_level(byoai_log_level level) { __atomic_store_n(&g_level, (int)level, __ATOMIC_RELAXED); }

byoai_log_level byoai_log_get_level(void) {
    int l = __atomic_load_n(&g_level, __ATOMIC_RELAXED);
    if (l < 0) {
        l = (int)level_from_env();
        __atomic_store_n(&g_level, l, __ATOMIC_RELAXED);
    }
    return (byoai_log_level)l;
}

void byoai_log(byoai_log_level level, const char *fmt, ...) {
    if ((int)level > (int)byoai_log_get_level()) return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "byoai: %s: %s\n", names[level], line);
}

double byoai_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t byoai_time_unix(void) { return (uint64_t)time(NULL); }

char *byoai_strndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void *byoai_aligned_alloc(size_t alignment, size_t size) {
    void *p = NULL;
    if (size == 0) size = alignment;
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    return p;
}
