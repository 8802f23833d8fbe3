/*
 * AVX2 vector operations (infer/vec.h): attention over the KV cache and
 * the SwiGLU gate.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "infer/vec.h"

#define INLINE static inline __attribute__((always_inline))

/* e^x to ~2 ulp: 2^n e^r with |r| <= ln2 / 2 (Cephes' polynomial). x is
 * clamped to [-87, 88] so 2^n is a normal float built in the exponent
 * bits (below e^-87 the result stays ~1e-38 instead of underflowing:
 * harmless for softmax weights and gates). */
INLINE __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* 8 vectors -> one vector of their 8 horizontal sums, in order */
INLINE __m256 reduce8(const __m256 *v) {
    __m256 s[4];
    for (int i = 0; i < 4; i++)
        s[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x31));
    /* s[i]: low lane partials of v[2i], high lane of v[2i+1] */
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
    /* h: [v0 v2 v4 v6 | v1 v3 v5 v7] */
    return _mm256_permutevar8x32_ps(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

INLINE __m256i tail_mask(int left) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
}

static void attend(const float *q, uint32_t G, const float *k, const float *v, size_t ks, uint32_t n, uint32_t hd,
                   float scale, float *scores, float *out) {
    const uint32_t nv = (hd + 7) / 8;
    const __m256i last = tail_mask((int)(hd - 8 * (nv - 1)));
#define LOADM(p, i) ((i) + 1 < nv ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, last))
    for (uint32_t g = 0; g < G; g++) {
        const float *qg = q + (size_t)g * hd;
        float *sc = scores + (size_t)g * n, *o = out + (size_t)g * hd;
        float max = -INFINITY;
        /* scores, 8 positions at a time, reduced together */
        for (uint32_t t0 = 0; t0 < n; t0 += 8) {
            const uint32_t m = n - t0 < 8 ? n - t0 : 8;
            __m256 acc[8];
            for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
            for (uint32_t i = 0; i < nv; i++) {
                const __m256 qv = LOADM(qg + 8 * i, i);
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++)
                    if ((uint32_t)j < m) acc[j] = _mm256_fmadd_ps(qv, LOADM(k + (t0 + (uint32_t)j) * ks + 8 * i, i), acc[j]);
            }
            float r[8];
            _mm256_storeu_ps(r, _mm256_mul_ps(reduce8(acc), _mm256_set1_ps(scale)));
            for (uint32_t j = 0; j < m; j++) {
                sc[t0 + j] = r[j];
                max = r[j] > max ? r[j] : max;
            }
        }
        __m256 sum = _mm256_setzero_ps();
        uint32_t t = 0;
        for (; t + 8 <= n; t += 8) {
            const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + t), _mm256_set1_ps(max)));
            _mm256_storeu_ps(sc + t, e);
            sum = _mm256_add_ps(sum, e);
        }
        float r[8];
        _mm256_storeu_ps(r, sum);
        float s = r[0] + r[1] + r[2] + r[3] + r[4] + r[5] + r[6] + r[7];
        for (; t < n; t++) s += sc[t] = expf(sc[t] - max);
        const float inv = 1.0f / s;
        if (nv <= 8) {
            __m256 ov[8];
            for (uint32_t i = 0; i < 8; i++) ov[i] = _mm256_setzero_ps();
            for (uint32_t u = 0; u < n; u++) {
                const __m256 p = _mm256_set1_ps(sc[u]);
#pragma GCC unroll 8
                for (uint32_t i = 0; i < 8; i++)
                    if (i < nv) ov[i] = _mm256_fmadd_ps(p, LOADM(v + u * ks + 8 * i, i), ov[i]);
            }
            for (uint32_t i = 0; i < nv; i++) {
                const __m256 x = _mm256_mul_ps(ov[i], _mm256_set1_ps(inv));
                if (i + 1 < nv) _mm256_storeu_ps(o + 8 * i, x);
                else _mm256_maskstore_ps(o + 8 * i, last, x);
            }
        } else {
            memset(o, 0, hd * sizeof(float));
            for (uint32_t u = 0; u < n; u++) {
                const __m256 p = _mm256_set1_ps(sc[u] * inv);
                for (uint32_t i = 0; i < nv; i++) {
                    const __m256 x = _mm256_fmadd_ps(p, LOADM(v + u * ks + 8 * i, i), LOADM(o + 8 * i, i));
                    if (i + 1 < nv) _mm256_storeu_ps(o + 8 * i, x);
                    else _mm256_maskstore_ps(o + 8 * i, last, x);
                }
            }
        }
    }
#undef LOADM
}

static void silu_mul(float *h, const float *g, const float *u, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_storeu_ps(h + i, _mm256_div_ps(_mm256_mul_ps(x, _mm256_loadu_ps(u + i)), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    }
    for (; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* 32-byte loads, 8 lines per step, prefetched 8 KiB ahead */
static uint64_t read_sum(const void *p, size_t n) {
    const uint8_t *b = p;
    __m256i a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_si256();
    for (size_t i = 0; i + 256 <= n; i += 256) {
        for (int o = 0; o < 256; o += 64) _mm_prefetch((const char *)b + i + 8192 + o, _MM_HINT_T0);
        for (int j = 0; j < 8; j++) a[j] = _mm256_add_epi64(a[j], _mm256_load_si256((const __m256i *)(b + i + 32 * j)));
    }
    for (int j = 1; j < 8; j++) a[0] = _mm256_add_epi64(a[0], a[j]);
    uint64_t r[4];
    _mm256_storeu_si256((__m256i *)r, a[0]);
    return r[0] + r[1] + r[2] + r[3];
}

void byoai_vec_init_avx2(byoai_vec_ops *o) {
    o->name = "avx2";
    o->read_sum = read_sum;
    o->attend = attend;
    o->silu_mul = silu_mul;
}
#endif
