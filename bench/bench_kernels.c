/*
 * Dot-product kernels: speed per type and SIMD level, single-threaded.
 *
 *   bench_kernels [TYPE ...]      (default: every type with a dot)
 *
 * Prints JSON: for each type and level, the median over REPS runs of
 * - ns_per_dot: one 4096-element dot (weights and activations in cache),
 * - matvec_gbps: weight bytes streamed per second by a matrix-vector
 *   product over a 64 MiB weight matrix (rows of 4096), which is what token
 *   generation does and where memory bandwidth is the limit,
 * - act_ns: quantizing the 4096 activations to the activation type.
 * Run by hand on a quiet machine; never part of the tests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "byoai/quant.h"

#define N 4096
#define MATRIX_BYTES (64ull << 20)
#define REPS 5

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((rs >> 40) * (1.0 / 16777216.0)) * 2 - 1;
}

static volatile float g_sink;

int main(int argc, char **argv) {
    static const byoai_type all[] = {BYOAI_TYPE_F32,  BYOAI_TYPE_F16,  BYOAI_TYPE_BF16, BYOAI_TYPE_Q8_0,
                                     BYOAI_TYPE_Q6_K, BYOAI_TYPE_Q5_K, BYOAI_TYPE_Q5_1, BYOAI_TYPE_Q5_0,
                                     BYOAI_TYPE_Q4_K, BYOAI_TYPE_Q4_1, BYOAI_TYPE_Q4_0, BYOAI_TYPE_Q3_K,
                                     BYOAI_TYPE_Q2_K};
    byoai_type types[64];
    int nt = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && nt < 64; i++) {
            int t = byoai_type_from_name(argv[i]);
            if (t < 0 || !byoai_type_can_compute((byoai_type)t)) {
                fprintf(stderr, "bench_kernels: no dot product for type '%s'\n", argv[i]);
                return 2;
            }
            types[nt++] = (byoai_type)t;
        }
    } else {
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) types[nt++] = all[i];
    }

    float *w = malloc(sizeof(float) * N), *a = malloc(sizeof(float) * N);
    uint8_t *arow = malloc(N * 4 + 64), *mat = malloc(MATRIX_BYTES + 4096);
    float *out = malloc(sizeof(float) * (MATRIX_BYTES / 1024)); /* rows of >= 1024 bytes */
    if (!w || !a || !arow || !mat || !out) return 1;
    for (int i = 0; i < N; i++) {
        w[i] = (frand() + frand() + frand()) * 0.02f;
        a[i] = frand();
    }

    printf("{\n  \"cpu_features\": \"%s\",\n  \"n\": %d,\n  \"matrix_bytes\": %llu,\n  \"results\": [\n",
           byoai_cpu_features(), N, (unsigned long long)MATRIX_BYTES);
    int first = 1;
    for (int ti = 0; ti < nt; ti++) {
        const byoai_type t = types[ti], at = byoai_type_activation(t);
        const size_t row = (size_t)byoai_type_row_size(t, N);
        const size_t rows = MATRIX_BYTES / row;
        /* one properly quantized row, repeated: the values do not matter for
         * speed, the bytes streamed from memory do */
        byoai_quantize_row(t, w, mat, N);
        for (size_t r = 1; r < rows; r++) memcpy(mat + r * row, mat, row);
        for (int lv = BYOAI_SIMD_SCALAR; lv <= BYOAI_SIMD_NEON; lv++) {
            const byoai_kernels *k = byoai_kernels_get((byoai_simd_level)lv);
            if (!k) continue;
            const void *act = a;
            double act_ns = 0;
            if (at != BYOAI_TYPE_F32) {
                double v[REPS];
                for (int rep = 0; rep < REPS; rep++) {
                    double t0 = now_ns();
                    for (int i = 0; i < 200; i++) k->quantize_act[at](a, arow, N);
                    v[rep] = (now_ns() - t0) / 200;
                }
                act_ns = median(v, REPS);
                act = arow;
            }
            /* in-cache dot */
            double dv[REPS];
            int iters = lv == BYOAI_SIMD_SCALAR ? 500 : 5000;
            for (int rep = 0; rep < REPS; rep++) {
                float s, acc = 0;
                double t0 = now_ns();
                for (int i = 0; i < iters; i++) {
                    k->vec_dot[t](N, &s, mat, act);
                    acc += s;
                }
                dv[rep] = (now_ns() - t0) / iters;
                g_sink = acc;
            }
            /* streaming matrix-vector product */
            double gv[REPS];
            for (int rep = 0; rep < REPS; rep++) {
                double t0 = now_ns();
                for (size_t r = 0; r < rows; r++) k->vec_dot[t](N, &out[r], mat + r * row, act);
                gv[rep] = (double)(rows * row) / (now_ns() - t0);
                g_sink = out[rows / 2];
            }
            printf("%s    {\"type\": \"%s\", \"level\": \"%s\", \"bits_per_weight\": %.4g, \"ns_per_dot\": %.1f, "
                   "\"matvec_gbps\": %.2f, \"act_ns\": %.1f}",
                   first ? "" : ",\n", byoai_type_name(t), k->name, row * 8.0 / N, median(dv, REPS),
                   median(gv, REPS), act_ns);
            first = 0;
            fflush(stdout);
        }
    }
    printf("\n  ]\n}\n");
    free(w);
    free(a);
    free(arow);
    free(mat);
    free(out);
    return 0;
}
