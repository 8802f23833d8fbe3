/* Hardware facts and a memory read-bandwidth probe. */
#include "byoai/hw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "byoai/quant.h"
#include "infer/vec.h"

static uint64_t meminfo_kb(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtoull(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

void byoai_hw_get(byoai_hw_info *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->cpu_model, sizeof o->cpu_model, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "model name", 10) || !strncmp(line, "Model", 5)) {
                char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ' || *c == '\t') c++;
                    c[strcspn(c, "\n")] = '\0';
                    snprintf(o->cpu_model, sizeof o->cpu_model, "%s", c);
                    break;
                }
            }
        }
        fclose(f);
    }
    o->cores = byoai_cpu_count();
    snprintf(o->features, sizeof o->features, "%s", byoai_cpu_features());
    o->ram_total = meminfo_kb("MemTotal") * 1024;
    o->ram_available = meminfo_kb("MemAvailable") * 1024;
}

typedef struct {
    const uint64_t *buf;
    uint64_t words;
    uint64_t sums[64];
} bw_job;

static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    /* whole 256-byte steps per thread */
    const uint64_t chunk = j->words / (uint64_t)nth / 32 * 32;
    j->sums[ith % 64] = byoai_vec_ops_best()->read_sum(j->buf + chunk * (uint64_t)ith, chunk * 8);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double byoai_hw_read_bandwidth(int n_threads, uint64_t bytes, int reps) {
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    bytes &= ~(uint64_t)4095;
    if (bytes < (1u << 20)) return 0;
    uint64_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 0;
#ifdef MADV_HUGEPAGE
    madvise(buf, bytes, MADV_HUGEPAGE); /* as the packed weights (model_pack.c) */
#endif
    byoai_pool *pool;
    if (byoai_pool_new(n_threads, &pool, NULL)) {
        munmap(buf, bytes);
        return 0;
    }
    uint64_t words = bytes / 8;
    for (uint64_t i = 0; i < words; i += 512) buf[i] = i; /* fault every page in */
    bw_job j = {.buf = buf, .words = words};
    byoai_pool_run(pool, bw_read, &j); /* warm-up */
    double res[64];
    for (int r = 0; r < reps; r++) {
        double t0 = byoai_time_now();
        byoai_pool_run(pool, bw_read, &j);
        res[r] = (double)bytes / (byoai_time_now() - t0);
    }
    qsort(res, (size_t)reps, sizeof res[0], cmp_d);
    byoai_pool_free(pool);
    munmap(buf, bytes);
    return res[reps / 2];
}
