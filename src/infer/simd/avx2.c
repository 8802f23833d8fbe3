/*
 * AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c and only
 * called when the CPU reports those features (see quant.c).
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "infer/quant.h"
#include "infer/simd/x86.h"

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

/* ---- integer helpers ------------------------------------------------------ */

/* signed x signed bytes -> 8 int32 partial sums (|x| <= 128, |y| <= 127) */
static inline __m256i dot_i8(__m256i x, __m256i y) {
    return madd16_ones(_mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)));
}

/* ---- Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 (Q8_0 activations) ------------------
 * Four blocks per iteration: each block's int32 partials (8 lanes) are
 * folded by two hadds into one vector whose lanes are [b0 b1 b2 b3 | b0 b1
 * b2 b3], the four blocks' scales are converted with one vcvtph2ps, and one
 * convert + FMA covers all four. Leftover blocks go one at a time. */

static inline __m256i load_y(const block_q8_0 *y) { return _mm256_loadu_si256((const __m256i *)y->qs); }

/* sum(u * y) - off * sum(y) for unsigned levels u (< 32), as 8 int32 */
static inline __m256i dot_u8_off(__m256i u, __m256i y, __m256i off) {
    return madd16_ones(_mm256_sub_epi16(_mm256_maddubs_epi16(u, y), _mm256_maddubs_epi16(off, y)));
}

static inline __m256i dot_u8(__m256i u, __m256i y) { return madd16_ones(_mm256_maddubs_epi16(u, y)); }

/* levels of one block as 32 bytes (element order) */
static inline __m256i levels_q4(const block_q4_0 *x) { return unpack_nibbles(x->qs); }
static inline __m256i levels_q4_1(const block_q4_1 *x) { return unpack_nibbles(x->qs); }
static inline __m256i levels_q5_0(const block_q5_0 *x) {
    return _mm256_or_si256(unpack_nibbles(x->qs), _mm256_and_si256(bits_to_bytes(load_u32(x->qh)), _mm256_set1_epi8(16)));
}
static inline __m256i levels_q5_1(const block_q5_1 *x) {
    return _mm256_or_si256(unpack_nibbles(x->qs), _mm256_and_si256(bits_to_bytes(load_u32(x->qh)), _mm256_set1_epi8(16)));
}

static void dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx, *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        prefetch_ahead(&x[b], 4 * (int)sizeof *x);
        __m256i p[4];
        for (int i = 0; i < 4; i++) p[i] = dot_i8(_mm256_loadu_si256((const __m256i *)x[b + i].qs), load_y(&y[b + i]));
        const __m256 d = dup128(_mm_mul_ps(halves4(&x[b].d, sizeof *x), halves4(&y[b].d, sizeof *y)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold4(p[0], p[1], p[2], p[3])), d, acc);
    }
    for (; b < nb; b++) {
        const __m256i p = dot_i8(_mm256_loadu_si256((const __m256i *)x[b].qs), load_y(&y[b]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *s = hsum256(acc);
}

/* symmetric 4/5-bit types: levels u - off */
#define SYM_DOT(NAME, BLOCK, LEVELS, OFF)                                                                              \
    static void NAME(int64_t n, float *s, const void *vx, const void *vy) {                                           \
        const BLOCK *x = vx;                                                                                           \
        const block_q8_0 *y = vy;                                                                                      \
        const int64_t nb = n / 32;                                                                                     \
        const __m256i off = _mm256_set1_epi8(OFF);                                                                     \
        __m256 acc = _mm256_setzero_ps();                                                                              \
        int64_t b = 0;                                                                                                 \
        for (; b + 4 <= nb; b += 4) {                                                                                  \
            prefetch_ahead(&x[b], 4 * (int)sizeof *x);                                                                 \
            __m256i p[4];                                                                                              \
            for (int i = 0; i < 4; i++) p[i] = dot_u8_off(LEVELS(&x[b + i]), load_y(&y[b + i]), off);                  \
            const __m256 d = dup128(_mm_mul_ps(halves4(&x[b].d, sizeof *x), halves4(&y[b].d, sizeof *y)));             \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold4(p[0], p[1], p[2], p[3])), d, acc);                         \
        }                                                                                                              \
        for (; b < nb; b++) {                                                                                          \
            const __m256i p = dot_u8_off(LEVELS(&x[b]), load_y(&y[b]), off);                                           \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);              \
        }                                                                                                              \
        *s = hsum256(acc);                                                                                             \
    }

SYM_DOT(dot_q4_0, block_q4_0, levels_q4, 8)
SYM_DOT(dot_q5_0, block_q5_0, levels_q5_0, 16)

/* affine types: d * dy * sum(u * y) + m * dy * sum(y) */
#define AFFINE_DOT(NAME, BLOCK, LEVELS)                                                                                \
    static void NAME(int64_t n, float *s, const void *vx, const void *vy) {                                           \
        const BLOCK *x = vx;                                                                                           \
        const block_q8_0 *y = vy;                                                                                      \
        const int64_t nb = n / 32;                                                                                     \
        const __m256i one = _mm256_set1_epi8(1);                                                                       \
        __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();                                                  \
        int64_t b = 0;                                                                                                 \
        for (; b + 4 <= nb; b += 4) {                                                                                  \
            prefetch_ahead(&x[b], 4 * (int)sizeof *x);                                                                 \
            __m256i p[4], q[4];                                                                                        \
            for (int i = 0; i < 4; i++) {                                                                              \
                const __m256i yy = load_y(&y[b + i]);                                                                  \
                p[i] = dot_u8(LEVELS(&x[b + i]), yy);                                                                  \
                q[i] = dot_u8(one, yy);                                                                                \
            }                                                                                                          \
            const __m128 dy = halves4(&y[b].d, sizeof *y);                                                             \
            const __m256 d = dup128(_mm_mul_ps(halves4(&x[b].d, sizeof *x), dy));                                      \
            const __m256 m = dup128(_mm_mul_ps(halves4(&x[b].m, sizeof *x), dy));                                      \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold4(p[0], p[1], p[2], p[3])), d, acc);                         \
            accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold4(q[0], q[1], q[2], q[3])), m, accm);                       \
        }                                                                                                              \
        for (; b < nb; b++) {                                                                                          \
            const __m256i yy = load_y(&y[b]);                                                                          \
            const float dy = h2f(y[b].d);                                                                              \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * dy), _mm256_cvtepi32_ps(dot_u8(LEVELS(&x[b]), yy)), acc); \
            accm = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].m) * dy), _mm256_cvtepi32_ps(dot_u8(one, yy)), accm);       \
        }                                                                                                              \
        *s = hsum256(_mm256_add_ps(acc, accm));                                                                        \
    }

AFFINE_DOT(dot_q4_1, block_q4_1, levels_q4_1)
AFFINE_DOT(dot_q5_1, block_q5_1, levels_q5_1)

/* ---- K-quants (Q8_K activations) ------------------------------------------ */

/* byte shuffles that spread scale 2i over the low 128-bit lane and scale
 * 2i + 1 over the high lane, as 16-bit words after sign/zero extension */
static const uint8_t PAIR_CTRL[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},         {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},         {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},         {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13}, {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};
static inline __m128i pair_ctrl(int i) { return _mm_loadu_si128((const __m128i *)PAIR_CTRL[i]); }

/* sum over 32 elements of u * y (u unsigned < 128) weighted by the int16
 * scale vector (low lane: first 16 elements, high lane: last 16) */
static inline __m256i scaled_dot(__m256i u, const int8_t *y, __m256i sc16) {
    __m256i p16 = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)y));
    return _mm256_madd_epi16(p16, sc16);
}

/* sum_j s16[j] * bsums[j] over the 16 sub-blocks of 16, as 8 int32 */
static inline __m256i bsum_dot(const int16_t *bsums, __m256i s16) {
    return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), s16);
}

static void dot_q2_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        prefetch_ahead(&x[b], (int)sizeof *x);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[b].scales);
        const __m128i scales = _mm_and_si128(sc8, _mm256_castsi256_si128(m4));
        const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm256_castsi256_si128(m4)));
        const __m256i msum = bsum_dot(y[b].bsums, mins16);
        __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h));
            const int8_t *yq = y[b].qs + 128 * h;
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(scales, pair_ctrl(4 * h + k)));
                isum = _mm256_add_epi32(isum, scaled_dot(u, yq + 32 * k, sc16));
            }
        }
        const float dy = y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].d)), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].dmin)), _mm256_cvtepi32_ps(msum), accm);
    }
    *s = hsum256(_mm256_sub_ps(acc, accm));
}

static void dot_q3_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        prefetch_ahead(&x[b], (int)sizeof *x);
        const __m128i scales = q3k_scales(x[b].scales);
        /* levels are u - 4 with u = q2 | hbit << 2: subtract 4 * sum(y) */
        const __m256i corr = bsum_dot(y[b].bsums, _mm256_cvtepi8_epi16(scales));
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[b].hmask);
        __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h));
            const int8_t *yq = y[b].qs + 128 * h;
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i bit = _mm256_set1_epi8((char)(1 << (4 * h + k)));
                const __m256i hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), four);
                const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3), hb);
                const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pair_ctrl(4 * h + k)));
                isum = _mm256_add_epi32(isum, scaled_dot(u, yq + 32 * k, sc16));
            }
        }
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(corr, 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * h2f(x[b].d)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum256(acc);
}

/* sum_j mins[j] * (bsums[2j] + bsums[2j+1]) as 8 int32 lanes */
static inline __m256i k4_min_dot(const int16_t *bsums, const uint8_t mn[8]) {
    /* each min twice, once per 16-element half of its sub-block */
    const __m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
    const __m128i m16 = _mm_unpacklo_epi8(m8, m8);
    return bsum_dot(bsums, _mm256_cvtepu8_epi16(m16));
}

static void dot_q4_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    uint8_t sc[8], mn[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        prefetch_ahead(&x[b], (int)sizeof *x);
        k4_unpack(x[b].scales, sc, mn);
        const __m256i msum = k4_min_dot(y[b].bsums, mn);
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            s0 = _mm256_add_epi32(s0, scaled_dot(lo, y[b].qs + 64 * c, _mm256_set1_epi16(sc[2 * c])));
            s1 = _mm256_add_epi32(s1, scaled_dot(hi, y[b].qs + 64 * c + 32, _mm256_set1_epi16(sc[2 * c + 1])));
        }
        const float dy = y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].d)), _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].dmin)), _mm256_cvtepi32_ps(msum), accm);
    }
    *s = hsum256(_mm256_sub_ps(acc, accm));
}

static void dot_q5_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0F), sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    uint8_t sc[8], mn[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        prefetch_ahead(&x[b], (int)sizeof *x);
        k4_unpack(x[b].scales, sc, mn);
        const __m256i msum = k4_min_dot(y[b].bsums, mn);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)x[b].qh);
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));
            const __m256i b0 = _mm256_set1_epi8((char)(1 << (2 * c))), b1 = _mm256_set1_epi8((char)(2 << (2 * c)));
            const __m256i h0 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b0), b0), sixteen);
            const __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b1), b1), sixteen);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            s0 = _mm256_add_epi32(s0, scaled_dot(lo, y[b].qs + 64 * c, _mm256_set1_epi16(sc[2 * c])));
            s1 = _mm256_add_epi32(s1, scaled_dot(hi, y[b].qs + 64 * c + 32, _mm256_set1_epi16(sc[2 * c + 1])));
        }
        const float dy = y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].d)), _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].dmin)), _mm256_cvtepi32_ps(msum), accm);
    }
    *s = hsum256(_mm256_sub_ps(acc, accm));
}

static void dot_q6_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        prefetch_ahead(&x[b], (int)sizeof *x);
        const __m128i scales = _mm_loadu_si128((const __m128i *)x[b].scales);
        /* levels are u - 32 with u unsigned 6-bit: subtract 32 * sum(y) */
        const __m256i corr = bsum_dot(y[b].bsums, _mm256_cvtepi8_epi16(scales));
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[b].ql + 64 * h;
            const __m256i A = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i B = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i H = _mm256_loadu_si256((const __m256i *)(x[b].qh + 32 * h));
            const int8_t *yq = y[b].qs + 128 * h;
            const __m256i u0 = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
            const __m256i u1 = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
            const __m256i u2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m30));
            const __m256i u3 =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4), _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
            s0 = _mm256_add_epi32(s0, scaled_dot(u0, yq, _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pair_ctrl(4 * h)))));
            s1 = _mm256_add_epi32(s1, scaled_dot(u1, yq + 32, _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pair_ctrl(4 * h + 1)))));
            s0 = _mm256_add_epi32(s0, scaled_dot(u2, yq + 64, _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pair_ctrl(4 * h + 2)))));
            s1 = _mm256_add_epi32(s1, scaled_dot(u3, yq + 96, _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pair_ctrl(4 * h + 3)))));
        }
        const __m256i isum = _mm256_sub_epi32(_mm256_add_epi32(s0, s1), _mm256_slli_epi32(corr, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * h2f(x[b].d)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum256(acc);
}

/* Q8_1: the Q8_0 rounding plus s = d * sum(q) */
static void quantize_q8_1(const float *src, void *dst, int64_t n) {
    block_q8_1 *y = dst;
    block_q8_0 t;
    for (int64_t b = 0; b < n / QK8_1; b++) {
        quantize_q8_0(src + b * QK8_1, &t, QK8_1);
        const __m256i q = _mm256_loadu_si256((const __m256i *)t.qs);
        __m256i sum = madd16_ones(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        _mm256_storeu_si256((__m256i *)y[b].qs, q);
        y[b].d = t.d;
        /* d as the reference computes it: max|x| / 127 in float, not the
         * float16 rounding stored in t.d */
        const float *x = src + b * QK8_1;
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x)), _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8))),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 16)), _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 24))));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        y[b].s = byoai_fp32_to_fp16((float)_mm_cvtsi128_si32(s4) * (_mm_cvtss_f32(m4) / 127.0f));
    }
}

/* Q8_K: q = x * (127 / max|x|) rounded to nearest even, bsums per 16 */
static void quantize_q8_k(const float *src, void *dst, int64_t n) {
    block_q8_K *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *x = src + b * QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float id = amax > 0 ? fminf(127.0f / amax, 3.0e38f) : 0.0f;
        y[b].d = amax / 127.0f;
        const __m256 mul = _mm256_set1_ps(id);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j), mul));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8), mul));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 16), mul));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 24), mul));
            /* pairwise sums of 16 for the bsums, before packing */
            __m256i s01 = _mm256_add_epi32(i0, i1), s23 = _mm256_add_epi32(i2, i3);
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(y[b].qs + j), p);
            __m256i hs = _mm256_hadd_epi32(s01, s23); /* [s01 0+1, 2+3, s23 0+1, 2+3 | s01 4+5, ...] */
            hs = _mm256_hadd_epi32(hs, hs);           /* [s01 0..3, s23 0..3, .. | s01 4..7, s23 4..7, ..] */
            const int32_t lo01 = _mm256_extract_epi32(hs, 0), lo23 = _mm256_extract_epi32(hs, 1);
            const int32_t hi01 = _mm256_extract_epi32(hs, 4), hi23 = _mm256_extract_epi32(hs, 5);
            y[b].bsums[j / 16] = (int16_t)(lo01 + hi01);
            y[b].bsums[j / 16 + 1] = (int16_t)(lo23 + hi23);
        }
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
    k->vec_dot[BYOAI_TYPE_Q4_1] = dot_q4_1;
    k->vec_dot[BYOAI_TYPE_Q5_0] = dot_q5_0;
    k->vec_dot[BYOAI_TYPE_Q5_1] = dot_q5_1;
    k->vec_dot[BYOAI_TYPE_Q2_K] = dot_q2_k;
    k->vec_dot[BYOAI_TYPE_Q3_K] = dot_q3_k;
    k->vec_dot[BYOAI_TYPE_Q4_K] = dot_q4_k;
    k->vec_dot[BYOAI_TYPE_Q5_K] = dot_q5_k;
    k->vec_dot[BYOAI_TYPE_Q6_K] = dot_q6_k;
    k->quantize_act[BYOAI_TYPE_Q8_0] = quantize_q8_0;
    k->quantize_act[BYOAI_TYPE_Q8_1] = quantize_q8_1;
    k->quantize_act[BYOAI_TYPE_Q8_K] = quantize_q8_k;
}
#endif
