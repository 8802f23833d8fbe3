/*
 * Matrix kernels, single-threaded: the packed kernels of every level (and
 * the file-layout row dots, "rows") on a random matrix of each type, for
 * several token counts.
 *
 *   bench_gemm [-k K] [-r ROWS] [-n N,N,...] [--reps R] [--no-rows] [TYPE ...]
 *
 * -t N runs the packed kernels on N threads (wall time then, not CPU time).
 * Prints JSON lines: per type, level and n, the best (minimum) thread CPU
 * time of REPS calls, as GMAC/s and as weight GB/s. Thread CPU time and the
 * minimum make this usable on a busy machine (other processes only add
 * time); for n = 1 with a matrix larger than the caches it is the
 * single-core streaming rate. Never part of the tests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/packed.h"

static int REPS = 15;

static int g_threads = 1; /* -t N: wall time with N threads instead */

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(g_threads > 1 ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* the tiles split over the pool's threads in chunks, as byoai_matmul does */
typedef struct {
    byoai_packed_fn fn;
    const byoai_packed *p;
    const byoai_act *a;
    float *y;
    size_t ldy;
    uint8_t *scratch;
    size_t scratch_size;
    uint64_t chunk;
    uint32_t next;
} split_job;

static void split_run(void *arg, int ith, int nth) {
    (void)nth;
    split_job *j = arg;
    for (;;) {
        uint64_t c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        uint64_t t0 = c * j->chunk;
        if (t0 >= j->p->n_tiles) break;
        uint64_t t1 = t0 + j->chunk < j->p->n_tiles ? t0 + j->chunk : j->p->n_tiles;
        j->fn(j->p, t0, t1, j->a, j->y, j->ldy, j->scratch + (size_t)ith * j->scratch_size);
    }
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static float frand(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)) * 2 - 1; }

int main(int argc, char **argv) {
    uint64_t k = 2048, rows = 2048;
    bool with_rows = true;
    uint32_t ns[16] = {1, 4, 16, 64}, n_ns = 4;
    byoai_type types[16];
    int nt = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-k") && i + 1 < argc) k = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) rows = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) REPS = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-rows")) with_rows = false;
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) g_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            n_ns = 0;
            for (char *s = strtok(argv[++i], ","); s && n_ns < 16; s = strtok(NULL, ",")) ns[n_ns++] = (uint32_t)atoi(s);
        } else {
            int t = byoai_type_from_name(argv[i]);
            if (t < 0 || !byoai_pack_type_ok((byoai_type)t)) {
                fprintf(stderr, "bench_gemm: no packed layout for '%s'\n", argv[i]);
                return 2;
            }
            if (nt < 16) types[nt++] = (byoai_type)t;
        }
    }
    if (nt == 0) {
        types[nt++] = BYOAI_TYPE_Q8_0, types[nt++] = BYOAI_TYPE_Q4_0;
        types[nt++] = BYOAI_TYPE_Q4_K, types[nt++] = BYOAI_TYPE_Q6_K;
    }
    uint32_t nmax = 0;
    for (uint32_t i = 0; i < n_ns; i++) nmax = ns[i] > nmax ? ns[i] : nmax;
    const uint32_t n16 = (nmax + 15) / 16 * 16;
    float *x = malloc((size_t)n16 * k * sizeof(float)), *y = malloc((size_t)n16 * rows * sizeof(float));
    for (size_t i = 0; i < (size_t)n16 * k; i++) x[i] = frand();
    byoai_act a = {.k = (uint32_t)k, .stride = (k + 63) / 64 * 64};
    a.q = byoai_aligned_alloc(64, n16 * a.stride);
    a.d = malloc(n16 * k / 32 * sizeof(float));
    a.s = malloc(n16 * k / 32 * sizeof(float));
    a.a32 = malloc(n16 * k / 32 * sizeof(int32_t));
    a.a16 = malloc(n16 * k / 16 * sizeof(int32_t));
    a.dt = malloc(n16 * k / 32 * sizeof(float));
    a.st = malloc(n16 * k / 32 * sizeof(float));
    const size_t ss = (BYOAI_PACK_SCRATCH(k) + 63) / 64 * 64;
    uint8_t *scratch = byoai_aligned_alloc(64, ss * (size_t)(g_threads > 0 ? g_threads : 1));
    byoai_pool *pool = NULL;
    if (g_threads > 1 && byoai_pool_new(g_threads, &pool, NULL)) return 1;
    const byoai_kernels *vk = byoai_kernels_best();
    static const char *levels[] = {"avx2", "avx512", "amx"};
    (void)levels;
    for (int ti = 0; ti < nt; ti++) {
        const byoai_type t = types[ti];
        const uint64_t rb = byoai_type_row_size(t, (int64_t)k);
        uint8_t *m = byoai_aligned_alloc(64, rb * rows);
        float *row = malloc(k * sizeof(float));
        for (uint64_t r = 0; r < rows; r++) {
            for (uint64_t i = 0; i < k; i++) row[i] = frand();
            byoai_quantize_row(t, row, m + r * rb, (int64_t)k);
        }
        byoai_packed p;
        byoai_pack_shape(t, k, rows, &p);
        p.data = byoai_aligned_alloc(64, p.n_tiles * p.tile_bytes);
        for (uint64_t tl = 0; tl < p.n_tiles; tl++) byoai_pack_tile(&p, m, rb, tl);
        /* the file layout: activation rows of the type's activation type */
        const byoai_type at = byoai_type_activation(t);
        const size_t arb = byoai_type_row_size(at, (int64_t)k);
        uint8_t *xa = malloc(arb * n16);
        for (uint32_t ni = 0; ni < n_ns; ni++) {
            const uint32_t n = ns[ni];
            a.n = n;
            const double macs = (double)n * k * rows, bytes = (double)rb * rows;
            /* levels interleaved within each repetition, so that all see
             * the same machine; the minimum over repetitions */
            double best[4] = {1e30, 1e30, 1e30, 1e30};
            for (int r = 0; r < REPS; r++) {
                for (int lv = -1; lv < 3; lv++) {
                    const byoai_packed_kernels *pk = lv < 0 ? NULL : byoai_packed_kernels_get(levels[lv]);
                    if (lv >= 0 && !byoai_pack_pays(pk, t)) continue;
                    if (lv < 0 && !with_rows) continue;
                    double t0 = cpu_now();
                    if (pk) {
                        byoai_act_quantize_rows(pk, x, (uint32_t)k, 0, n, &a);
                        byoai_act_pad(&a);
                        byoai_packed_fn fn = pk->large[t] && n >= pk->large_min_n ? pk->large[t] : pk->small[t];
                        if (pool) {
                            split_job sj = {fn, &p, &a, y, rows, scratch, ss, p.n_tiles / (uint64_t)(8 * g_threads), 0};
                            if (!sj.chunk) sj.chunk = 1;
                            byoai_pool_run(pool, split_run, &sj);
                        } else {
                            fn(&p, 0, p.n_tiles, &a, y, rows, scratch);
                        }
                    } else {
                        for (uint32_t i = 0; i < n; i++) vk->quantize_act[at](x + i * k, xa + i * arb, (int64_t)k);
                        for (uint64_t r0 = 0; r0 < rows; r0 += 16)
                            for (uint32_t i = 0; i < n; i++)
                                for (uint64_t rr = r0; rr < r0 + 16 && rr < rows; rr++)
                                    vk->vec_dot[t]((int64_t)k, &y[i * rows + rr], m + rr * rb, xa + i * arb);
                    }
                    double dt = cpu_now() - t0;
                    if (dt < best[lv + 1]) best[lv + 1] = dt;
                }
            }
            for (int lv = -1; lv < 3; lv++) {
                if (best[lv + 1] >= 1e30) continue;
                const double b = best[lv + 1];
                printf("{\"type\": \"%s\", \"level\": \"%s\", \"k\": %llu, \"rows\": %llu, \"n\": %u, \"ms\": %.3f, "
                       "\"gmacs\": %.1f, \"weight_gbps\": %.2f}\n",
                       byoai_type_name(t), lv < 0 ? "rows" : levels[lv], (unsigned long long)k,
                       (unsigned long long)rows, n, b * 1e3, macs / b * 1e-9, bytes / b * 1e-9);
            }
            fflush(stdout);
        }
        free(xa);
        free(p.data);
        free(row);
        free(m);
    }
    free(x);
    free(y);
    free(a.q);
    free(a.d);
    free(a.s);
    free(a.a32);
    free(a.a16);
    free(a.dt);
    free(a.st);
    free(scratch);
    byoai_pool_free(pool);
    return 0;
}
