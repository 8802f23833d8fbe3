/*
 * Vector operations (vec.h): the scalar reference and the choice per CPU.
 */
#include "infer/vec.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "infer/cpu.h"

/* cap > 0: scores soft-capped as cap * tanh(score / cap) before the softmax */
static void attend_impl(const float *q, uint32_t G, const float *k, const float *v, size_t kv_stride, uint32_t n,
                        uint32_t hd, float scale, float cap, float *scores, float *out) {
    for (uint32_t g = 0; g < G; g++) {
        const float *qg = q + (size_t)g * hd;
        float *sc = scores + (size_t)g * n;
        float max = -INFINITY;
        for (uint32_t t = 0; t < n; t++) {
            const float *kt = k + t * kv_stride;
            float s = 0;
            for (uint32_t e = 0; e < hd; e++) s += qg[e] * kt[e];
            s *= scale;
            if (cap > 0) s = cap * tanhf(s / cap);
            sc[t] = s;
            if (s > max) max = s;
        }
        float sum = 0;
        for (uint32_t t = 0; t < n; t++) {
            sc[t] = expf(sc[t] - max);
            sum += sc[t];
        }
        const float inv = 1.0f / sum;
        float *o = out + (size_t)g * hd;
        memset(o, 0, hd * sizeof(float));
        for (uint32_t t = 0; t < n; t++) {
            const float *vt = v + t * kv_stride;
            const float a = sc[t] * inv;
            for (uint32_t e = 0; e < hd; e++) o[e] += a * vt[e];
        }
    }
}

static void ref_attend(const float *q, uint32_t G, const float *k, const float *v, size_t kv_stride, uint32_t n,
                       uint32_t hd, float scale, float *scores, float *out) {
    attend_impl(q, G, k, v, kv_stride, n, hd, scale, 0, scores, out);
}

void byoai_attend_capped(const float *q, uint32_t G, const float *k, const float *v, size_t kv_stride, uint32_t n,
                         uint32_t hd, float scale, float cap, float *scores, float *out) {
    attend_impl(q, G, k, v, kv_stride, n, hd, scale, cap, scores, out);
}

static void ref_silu_mul(float *h, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static uint64_t ref_read_sum(const void *p, size_t n) {
    /* 8 independent accumulators: the loads, not the adds, set the pace */
    const uint64_t *w = p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (size_t i = 0; i + 8 <= n / 8; i += 8) {
        s0 += w[i], s1 += w[i + 1], s2 += w[i + 2], s3 += w[i + 3];
        s4 += w[i + 4], s5 += w[i + 5], s6 += w[i + 6], s7 += w[i + 7];
    }
    return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

static byoai_vec_ops g_scalar = {"scalar", ref_attend, ref_silu_mul, ref_read_sum}, g_avx2, g_avx512;
static bool g_have_avx2, g_have_avx512;
static const byoai_vec_ops *g_best = &g_scalar;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init(void) {
#if defined(__x86_64__)
    byoai_cpu cpu;
    byoai_cpu_detect(&cpu);
    const bool avx2 = cpu.avx2 && cpu.fma && cpu.f16c && cpu.bmi2;
    const bool avx512 = avx2 && cpu.avx512f && cpu.avx512bw && cpu.avx512vl && cpu.avx512dq && cpu.avx512vnni;
    const char *cap = getenv("BYOAI_SIMD");
    const bool scalar = cap && !strcmp(cap, "scalar"), cap2 = cap && !strcmp(cap, "avx2");
    if (avx2) {
        g_avx2 = g_scalar;
        byoai_vec_init_avx2(&g_avx2);
        g_have_avx2 = true;
        if (!scalar) g_best = &g_avx2;
    }
    if (avx512) {
        g_avx512 = g_avx2;
        byoai_vec_init_avx512(&g_avx512);
        g_have_avx512 = true;
        if (!scalar && !cap2) g_best = &g_avx512;
    }
#endif
}

const byoai_vec_ops *byoai_vec_ops_best(void) {
    pthread_once(&g_once, init);
    return g_best;
}

const byoai_vec_ops *byoai_vec_ops_get(const char *name) {
    pthread_once(&g_once, init);
    if (!strcmp(name, "scalar")) return &g_scalar;
    if (!strcmp(name, "avx2")) return g_have_avx2 ? &g_avx2 : NULL;
    if (!strcmp(name, "avx512")) return g_have_avx512 ? &g_avx512 : NULL;
    return NULL;
}
