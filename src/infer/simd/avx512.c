/*
 * AVX-512 (F/BW/VL/DQ) + VNNI kernels. Compiled with the matching -m flags
 * and only called when the CPU reports them. Types without an AVX-512
 * kernel keep their AVX2 one (the table is filled by avx2.c first).
 */
#if defined(__x86_64__)
#include <immintrin.h>

#include "infer/quant.h"

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static void dot_f32(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static void dot_f16(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx;
    const float *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
#define LH(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(LH(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(LH(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(LH(x + i), _mm512_loadu_ps(y + i), a0);
#undef LH
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) sum += h2f(x[i]) * y[i];
    *s = sum;
}

/* signed x signed bytes with VNNI (u8 x s8): |x| * (y * sign(x)) */
static inline __m256i dot_i8_vnni(__m256i acc, __m256i x, __m256i y) {
    return _mm256_dpbusd_epi32(acc, _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

static void dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx, *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i p0 = dot_i8_vnni(_mm256_setzero_si256(), _mm256_loadu_si256((const __m256i *)x[b].qs),
                                 _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256i p1 = dot_i8_vnni(_mm256_setzero_si256(), _mm256_loadu_si256((const __m256i *)x[b + 1].qs),
                                 _mm256_loadu_si256((const __m256i *)y[b + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b + 1].d) * h2f(y[b + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; b < nb; b++) {
        __m256i p = dot_i8_vnni(_mm256_setzero_si256(), _mm256_loadu_si256((const __m256i *)x[b].qs),
                                _mm256_loadu_si256((const __m256i *)y[b].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc0);
    }
    __m256 a = _mm256_add_ps(acc0, acc1);
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    *s = _mm_cvtss_f32(lo);
}

static void dot_q4_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_0;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        /* q in 0..15 (unsigned) dot y, minus 8 * sum(y): both by VNNI */
        __m128i t = _mm_loadu_si128((const __m128i *)x[b].qs);
        __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), m4);
        __m256i yy = _mm256_loadu_si256((const __m256i *)y[b].qs);
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, yy);
        __m256i sy = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, yy);
        p = _mm256_sub_epi32(p, _mm256_slli_epi32(sy, 3));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    *s = _mm_cvtss_f32(lo);
}

void byoai_kernels_init_avx512(byoai_kernels *k) {
    k->level = BYOAI_SIMD_AVX512;
    k->name = "avx512";
    k->vec_dot[BYOAI_TYPE_F32] = dot_f32;
    k->vec_dot[BYOAI_TYPE_F16] = dot_f16;
    k->vec_dot[BYOAI_TYPE_Q8_0] = dot_q8_0;
    k->vec_dot[BYOAI_TYPE_Q4_0] = dot_q4_0;
}
#endif
