/*
 * AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c and only
 * called when the CPU reports those features (see quant.c).
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "infer/quant.h"

static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static void dot_f32(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static void dot_f16(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx;
    const float *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
#define LH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(LH(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(LH(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(LH(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(LH(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LH(x + i), _mm256_loadu_ps(y + i), a0);
#undef LH
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += h2f(x[i]) * y[i];
    *s = sum;
}

static inline __m256 load_bf16(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static void dot_bf16(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx;
    const float *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_bf16(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) sum += byoai_bf16_to_fp32(x[i]) * y[i];
    *s = sum;
}

/* sum of products of 32 signed bytes, as 8 int32 lanes (as float) */
static inline __m256 mul_sum_i8(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    const __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(p32);
}

static void dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx, *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        __m256 d1 = _mm256_set1_ps(h2f(x[b + 1].d) * h2f(y[b + 1].d));
        __m256 p0 = mul_sum_i8(_mm256_loadu_si256((const __m256i *)x[b].qs), _mm256_loadu_si256((const __m256i *)y[b].qs));
        __m256 p1 = mul_sum_i8(_mm256_loadu_si256((const __m256i *)x[b + 1].qs),
                               _mm256_loadu_si256((const __m256i *)y[b + 1].qs));
        acc0 = _mm256_fmadd_ps(d0, p0, acc0);
        acc1 = _mm256_fmadd_ps(d1, p1, acc1);
    }
    for (; b < nb; b++) {
        __m256 d = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        acc0 = _mm256_fmadd_ps(d, mul_sum_i8(_mm256_loadu_si256((const __m256i *)x[b].qs),
                                             _mm256_loadu_si256((const __m256i *)y[b].qs)), acc0);
    }
    *s = hsum256(_mm256_add_ps(acc0, acc1));
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles then high nibbles */
static inline __m256i unpack_nibbles(const uint8_t *p) {
    __m128i t = _mm_loadu_si128((const __m128i *)p);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

static void dot_q4_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_0;
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        __m256 d1 = _mm256_set1_ps(h2f(x[b + 1].d) * h2f(y[b + 1].d));
        __m256i q0 = _mm256_sub_epi8(unpack_nibbles(x[b].qs), eight);
        __m256i q1 = _mm256_sub_epi8(unpack_nibbles(x[b + 1].qs), eight);
        acc0 = _mm256_fmadd_ps(d0, mul_sum_i8(q0, _mm256_loadu_si256((const __m256i *)y[b].qs)), acc0);
        acc1 = _mm256_fmadd_ps(d1, mul_sum_i8(q1, _mm256_loadu_si256((const __m256i *)y[b + 1].qs)), acc1);
    }
    for (; b < nb; b++) {
        __m256 d = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        __m256i q = _mm256_sub_epi8(unpack_nibbles(x[b].qs), eight);
        acc0 = _mm256_fmadd_ps(d, mul_sum_i8(q, _mm256_loadu_si256((const __m256i *)y[b].qs)), acc0);
    }
    *s = hsum256(_mm256_add_ps(acc0, acc1));
}

/* Q8_0 activation quantization; same rounding as the reference (roundf =
 * round half away from zero) so results are bit-identical. */
static void quantize_q8_0(const float *src, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *x = src + b * QK8_0;
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
               v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = byoai_fp32_to_fp16(d);
        __m256 mul = _mm256_set1_ps(id);
        __m256 vs[4] = {v0, v1, v2, v3};
        __m256i iv[4];
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_mul_ps(vs[k], mul);
            /* roundf (half away from zero), exactly: trunc(t), plus sign(t)
             * when the (exact) fractional part is at least one half */
            __m256 tr = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 fr = _mm256_andnot_ps(sign, _mm256_sub_ps(t, tr));
            __m256 one = _mm256_or_ps(_mm256_and_ps(t, sign), _mm256_set1_ps(1.0f));
            __m256 adj = _mm256_and_ps(_mm256_cmp_ps(fr, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one);
            iv[k] = _mm256_cvtps_epi32(_mm256_add_ps(tr, adj));
        }
        __m256i p01 = _mm256_packs_epi32(iv[0], iv[1]);
        __m256i p23 = _mm256_packs_epi32(iv[2], iv[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        /* undo the lane interleave of the packs */
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[b].qs, p);
    }
}

void byoai_kernels_init_avx2(byoai_kernels *k) {
    k->level = BYOAI_SIMD_AVX2;
    k->name = "avx2";
    k->vec_dot[BYOAI_TYPE_F32] = dot_f32;
    k->vec_dot[BYOAI_TYPE_F16] = dot_f16;
    k->vec_dot[BYOAI_TYPE_BF16] = dot_bf16;
    k->vec_dot[BYOAI_TYPE_Q8_0] = dot_q8_0;
    k->vec_dot[BYOAI_TYPE_Q4_0] = dot_q4_0;
    k->quantize_act[BYOAI_TYPE_Q8_0] = quantize_q8_0;
}
#endif
