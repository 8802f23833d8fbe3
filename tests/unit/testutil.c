#include "testutil.h"

#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *tu_shared(const char *rel) {
    static char bufs[8][PATH_MAX];
    static int slot;
    const char *base = getenv("BYOAI_SHARED");
    if (!base) base = "../shared";
    char *b = bufs[slot++ % 8];
    snprintf(b, PATH_MAX, "%s/%s", base, rel);
    return b;
}

const char *tu_tmpdir(void) {
    static char bufs[8][PATH_MAX];
    static int slot;
    char *b = bufs[slot++ % 8];
    const char *t = getenv("TMPDIR");
    snprintf(b, PATH_MAX, "%s/byoai-test-XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(b)) {
        perror("mkdtemp");
        abort();
    }
    return b;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void tu_rmtree(const char *dir) { nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

uint64_t tu_rand_u64(uint64_t *s) {
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float tu_rand_float(uint64_t *s) { return (float)((tu_rand_u64(s) >> 40) * (1.0 / 16777216.0) * 2.0 - 1.0); }

double tu_rel_diff(double a, double b, double floor_) {
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    if (m < floor_) m = floor_;
    return fabs(a - b) / m;
}
