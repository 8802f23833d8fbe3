/*
 * AVX-512 vector operations (infer/vec.h): attention over the KV cache and
 * the SwiGLU gate.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "infer/vec.h"

#define INLINE static inline __attribute__((always_inline))

/* e^x to ~2 ulp: 2^n e^r with |r| <= ln2 / 2 (Cephes' polynomial);
 * vscalefps does the 2^n, underflow included */
INLINE __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* 16 vectors -> one vector of their 16 horizontal sums, in order */
INLINE __m512 reduce16(const __m512 *v) {
    __m512 a[8], b[4], c[2];
    for (int i = 0; i < 8; i++)
        a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++)
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44), _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
    const __m512 d = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x88), _mm512_shuffle_ps(c[0], c[1], 0xDD));
    /* lane 4j + e holds the sum of v[j + 4e] */
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), d);
}

/* NV vectors of 16 per head row (hd <= 16 NV; the last may be partial) */
INLINE void attend_nv(const float *q, uint32_t G, const float *k, const float *v, size_t ks, uint32_t n, uint32_t hd,
                      float scale, float *scores, float *out, const int NV) {
    __mmask16 mk[8];
    for (int i = 0; i < NV; i++) {
        const int left = (int)hd - 16 * i;
        mk[i] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
    }
    for (uint32_t g = 0; g < G; g++) {
        __m512 qv[8];
        for (int i = 0; i < NV; i++) qv[i] = _mm512_maskz_loadu_ps(mk[i], q + (size_t)g * hd + 16 * i);
        float *sc = scores + (size_t)g * n;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        /* scores, 16 positions at a time: one partial-sum vector each,
         * reduced together */
        for (uint32_t t0 = 0; t0 < n; t0 += 16) {
            const uint32_t m = n - t0 < 16 ? n - t0 : 16;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) {
                acc[j] = _mm512_setzero_ps();
                if ((uint32_t)j >= m) continue;
                const float *kt = k + (t0 + (uint32_t)j) * ks;
                for (int i = 0; i < NV; i++) acc[j] = _mm512_fmadd_ps(qv[i], _mm512_maskz_loadu_ps(mk[i], kt + 16 * i), acc[j]);
            }
            const __mmask16 mm = (__mmask16)((1u << m) - 1);
            const __m512 s = _mm512_mul_ps(reduce16(acc), _mm512_set1_ps(scale));
            _mm512_mask_storeu_ps(sc + t0, mm, s);
            mx = _mm512_mask_max_ps(mx, mm, mx, s);
        }
        const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (uint32_t t0 = 0; t0 < n; t0 += 16) {
            const uint32_t m = n - t0 < 16 ? n - t0 : 16;
            const __mmask16 mm = (__mmask16)((1u << m) - 1);
            const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mm, sc + t0), vmax));
            _mm512_mask_storeu_ps(sc + t0, mm, e);
            sum = _mm512_mask_add_ps(sum, mm, sum, e);
        }
        const float inv = 1.0f / _mm512_reduce_add_ps(sum);
        __m512 o[8];
        for (int i = 0; i < NV; i++) o[i] = _mm512_setzero_ps();
        for (uint32_t t = 0; t < n; t++) {
            const __m512 p = _mm512_set1_ps(sc[t]);
            const float *vt = v + t * ks;
            for (int i = 0; i < NV; i++) o[i] = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(mk[i], vt + 16 * i), o[i]);
        }
        for (int i = 0; i < NV; i++)
            _mm512_mask_storeu_ps(out + (size_t)g * hd + 16 * i, mk[i], _mm512_mul_ps(o[i], _mm512_set1_ps(inv)));
    }
}

/* any head dimension: output accumulated in memory */
static void generic(const float *q, uint32_t G, const float *k, const float *v, size_t ks, uint32_t n, uint32_t hd,
                    float scale, float *scores, float *out) {
    for (uint32_t g = 0; g < G; g++) {
        const float *qg = q + (size_t)g * hd;
        float *sc = scores + (size_t)g * n, *o = out + (size_t)g * hd;
        float max = -INFINITY;
        for (uint32_t t = 0; t < n; t++) {
            __m512 acc = _mm512_setzero_ps();
            for (uint32_t e = 0; e < hd; e += 16) {
                const __mmask16 m = hd - e >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hd - e)) - 1);
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qg + e), _mm512_maskz_loadu_ps(m, k + t * ks + e), acc);
            }
            sc[t] = _mm512_reduce_add_ps(acc) * scale;
            max = sc[t] > max ? sc[t] : max;
        }
        float sum = 0;
        for (uint32_t t = 0; t < n; t++) sum += sc[t] = expf(sc[t] - max);
        const float inv = 1.0f / sum;
        memset(o, 0, hd * sizeof(float));
        for (uint32_t t = 0; t < n; t++) {
            const __m512 p = _mm512_set1_ps(sc[t] * inv);
            for (uint32_t e = 0; e < hd; e += 16) {
                const __mmask16 m = hd - e >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hd - e)) - 1);
                _mm512_mask_storeu_ps(o + e, m, _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(m, v + t * ks + e), _mm512_maskz_loadu_ps(m, o + e)));
            }
        }
    }
}

static void attend(const float *q, uint32_t G, const float *k, const float *v, size_t ks, uint32_t n, uint32_t hd,
                   float scale, float *scores, float *out) {
    switch ((hd + 15) / 16) {
    case 1: attend_nv(q, G, k, v, ks, n, hd, scale, scores, out, 1); break;
    case 2: attend_nv(q, G, k, v, ks, n, hd, scale, scores, out, 2); break;
    case 3: attend_nv(q, G, k, v, ks, n, hd, scale, scores, out, 3); break;
    case 4: attend_nv(q, G, k, v, ks, n, hd, scale, scores, out, 4); break;
    case 5: attend_nv(q, G, k, v, ks, n, hd, scale, scores, out, 5); break;
    case 6: attend_nv(q, G, k, v, ks, n, hd, scale, scores, out, 6); break;
    case 7: attend_nv(q, G, k, v, ks, n, hd, scale, scores, out, 7); break;
    case 8: attend_nv(q, G, k, v, ks, n, hd, scale, scores, out, 8); break;
    default: generic(q, G, k, v, ks, n, hd, scale, scores, out); break;
    }
}

static void silu_mul(float *h, const float *g, const float *u, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        _mm512_storeu_ps(h + i, _mm512_div_ps(_mm512_mul_ps(x, _mm512_loadu_ps(u + i)), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        _mm512_mask_storeu_ps(h + i, m,
                              _mm512_div_ps(_mm512_mul_ps(x, _mm512_maskz_loadu_ps(m, u + i)), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    }
}

/* 64-byte loads, 4 lines per step, prefetched 8 KiB ahead like the matrix
 * kernels: the fastest way this code base reads memory */
static uint64_t read_sum(const void *p, size_t n) {
    const uint8_t *b = p;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        for (int o = 0; o < 256; o += 64) _mm_prefetch((const char *)b + i + 8192 + o, _MM_HINT_T0);
        a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void *)(b + i)));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void *)(b + i + 64)));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void *)(b + i + 128)));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void *)(b + i + 192)));
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}

void byoai_vec_init_avx512(byoai_vec_ops *o) {
    o->name = "avx512";
    o->read_sum = read_sum;
    o->attend = attend;
    o->silu_mul = silu_mul;
}
#endif
