/*
 * AVX-512 (F/BW/VL/DQ) + VNNI kernels. Compiled with the matching -m flags
 * and only called when the CPU reports them. Types without an AVX-512
 * kernel keep their AVX2 one (the table is filled by avx2.c first).
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "infer/quant.h"
#include "infer/simd/x86.h"

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

/* ---- 32-element block types: VNNI dots, four blocks per fold (see the
 * AVX2 versions for the scheme) ------------------------------------------- */

static inline __m256i vnni_u8(__m256i u, __m256i y) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y); }
static inline __m256i load_y(const block_q8_0 *y) { return _mm256_loadu_si256((const __m256i *)y->qs); }

static void dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx, *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        prefetch_ahead(&x[b], 4 * (int)sizeof *x);
        __m256i p[4];
        for (int i = 0; i < 4; i++)
            p[i] = dot_i8_vnni(_mm256_setzero_si256(), _mm256_loadu_si256((const __m256i *)x[b + i].qs), load_y(&y[b + i]));
        const __m256 d = dup128(_mm_mul_ps(halves4(&x[b].d, sizeof *x), halves4(&y[b].d, sizeof *y)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold4(p[0], p[1], p[2], p[3])), d, acc);
    }
    for (; b < nb; b++) {
        const __m256i p = dot_i8_vnni(_mm256_setzero_si256(), _mm256_loadu_si256((const __m256i *)x[b].qs), load_y(&y[b]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *s = hsum256(acc);
}

static inline __m256i levels_q4(const void *x) { return unpack_nibbles(((const block_q4_0 *)x)->qs); }
static inline __m256i levels_q4_1(const void *x) { return unpack_nibbles(((const block_q4_1 *)x)->qs); }
static inline __m256i levels_q5_0(const void *x) {
    const block_q5_0 *b = x;
    return _mm256_or_si256(unpack_nibbles(b->qs), _mm256_and_si256(bits_to_bytes(load_u32(b->qh)), _mm256_set1_epi8(16)));
}
static inline __m256i levels_q5_1(const void *x) {
    const block_q5_1 *b = x;
    return _mm256_or_si256(unpack_nibbles(b->qs), _mm256_and_si256(bits_to_bytes(load_u32(b->qh)), _mm256_set1_epi8(16)));
}

/* levels u - off: sum(u y) - sum(off y), both by VNNI */
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
            for (int i = 0; i < 4; i++) {                                                                              \
                const __m256i yy = load_y(&y[b + i]);                                                                  \
                p[i] = _mm256_sub_epi32(vnni_u8(LEVELS(&x[b + i]), yy), vnni_u8(off, yy));                             \
            }                                                                                                          \
            const __m256 d = dup128(_mm_mul_ps(halves4(&x[b].d, sizeof *x), halves4(&y[b].d, sizeof *y)));             \
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold4(p[0], p[1], p[2], p[3])), d, acc);                         \
        }                                                                                                              \
        for (; b < nb; b++) {                                                                                          \
            const __m256i yy = load_y(&y[b]);                                                                          \
            const __m256i p = _mm256_sub_epi32(vnni_u8(LEVELS(&x[b]), yy), vnni_u8(off, yy));                          \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);              \
        }                                                                                                              \
        *s = hsum256(acc);                                                                                             \
    }

SYM_DOT(dot_q4_0, block_q4_0, levels_q4, 8)
SYM_DOT(dot_q5_0, block_q5_0, levels_q5_0, 16)

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
                p[i] = vnni_u8(LEVELS(&x[b + i]), yy);                                                                 \
                q[i] = vnni_u8(one, yy);                                                                               \
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
            acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * dy), _mm256_cvtepi32_ps(vnni_u8(LEVELS(&x[b]), yy)), acc); \
            accm = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].m) * dy), _mm256_cvtepi32_ps(vnni_u8(one, yy)), accm);      \
        }                                                                                                              \
        *s = hsum256(_mm256_add_ps(acc, accm));                                                                        \
    }

AFFINE_DOT(dot_q4_1, block_q4_1, levels_q4_1)
AFFINE_DOT(dot_q5_1, block_q5_1, levels_q5_1)

/* ---- K-quants: 512-bit integer work, 64 activations per instruction ------ */

/* two 32-byte halves into one 512-bit vector */
static inline __m512i join256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

/* sum over 64 elements of u * y (u unsigned < 128) weighted by int16 scales */
static inline __m512i scaled_dot64(__m512i u, const int8_t *y, __m512i sc16) {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, _mm512_loadu_si512((const void *)y)), sc16);
}

/* sum_j w16[j] * bsums[j] over 16 sub-blocks, as 8 int32 */
static inline __m256i bsum_dot(const int16_t *bsums, __m256i w16) {
    return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), w16);
}

/* sum_j mins[j] * (bsums[2j] + bsums[2j+1]) as 8 int32 */
static inline __m256i k4_min_dot(const int16_t *bsums, const uint8_t mn[8]) {
    const __m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
    return bsum_dot(bsums, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)));
}

static inline __m512i scale_pair(uint8_t a, uint8_t b) {
    return join256(_mm256_set1_epi16(a), _mm256_set1_epi16(b));
}

static void dot_q5_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m512i sixteen = _mm512_set1_epi8(16);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    uint8_t sc[8], mn[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        prefetch_ahead(&x[b], (int)sizeof *x);
        k4_unpack(x[b].scales, sc, mn);
        const __m256i msum = k4_min_dot(y[b].bsums, mn);
        const __m256i qh256 = _mm256_loadu_si256((const __m256i *)x[b].qh);
        const __m512i qh = join256(qh256, qh256);
        __m512i s0 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));
            /* fifth bits: bit 2c (low nibbles) and 2c+1 (high) of qh[l] */
            const __m512i bits = join256(_mm256_set1_epi8((char)(1 << (2 * c))), _mm256_set1_epi8((char)(2 << (2 * c))));
            const __mmask64 hb = _mm512_test_epi8_mask(qh, bits);
            __m512i u = join256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
            u = _mm512_or_si512(u, _mm512_maskz_mov_epi8(hb, sixteen));
            s0 = _mm512_add_epi32(s0, scaled_dot64(u, y[b].qs + 64 * c, scale_pair(sc[2 * c], sc[2 * c + 1])));
        }
        const float dy = y[b].d;
        acc = _mm512_fmadd_ps(_mm512_set1_ps(dy * h2f(x[b].d)), _mm512_cvtepi32_ps(s0), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dy * h2f(x[b].dmin)), _mm256_cvtepi32_ps(msum), accm);
    }
    *s = _mm512_reduce_add_ps(acc) - hsum256(accm);
}

/* spread 4 consecutive int8 scales (starting at 4*g) over the four 128-bit
 * lanes of a 512-bit int16 vector */
static const uint8_t QUAD_CTRL[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13,
     14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};
static inline __m512i quad_scales_s(__m256i sc2, int g) {
    return _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(sc2, _mm256_loadu_si256((const __m256i *)QUAD_CTRL[g])));
}
static void dot_q3_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m512i four = _mm512_set1_epi8(4);
    __m512 acc = _mm512_setzero_ps();
    __m256 accc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        prefetch_ahead(&x[b], (int)sizeof *x);
        const __m128i scales = q3k_scales(x[b].scales);
        const __m256i sc2 = _mm256_broadcastsi128_si256(scales);
        const __m256i corr = bsum_dot(y[b].bsums, _mm256_cvtepi8_epi16(scales));
        const __m256i hm256 = _mm256_loadu_si256((const __m256i *)x[b].hmask);
        const __m512i hm = join256(hm256, hm256);
        __m512i s0 = _mm512_setzero_si512(), s1 = s0;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h));
            const int8_t *yq = y[b].qs + 128 * h;
            const __m512i ua = join256(_mm256_and_si256(q, m3), _mm256_and_si256(_mm256_srli_epi16(q, 2), m3));
            const __m512i ub = join256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m3), _mm256_and_si256(_mm256_srli_epi16(q, 6), m3));
            /* third bits: hmask bits 4h+k for k = 0..3 */
            const __m512i ba = join256(_mm256_set1_epi8((char)(1 << (4 * h))), _mm256_set1_epi8((char)(2 << (4 * h))));
            const __m512i bb = join256(_mm256_set1_epi8((char)(4 << (4 * h))), _mm256_set1_epi8((char)(8 << (4 * h))));
            const __m512i va = _mm512_or_si512(ua, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(hm, ba), four));
            const __m512i vb = _mm512_or_si512(ub, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(hm, bb), four));
            s0 = _mm512_add_epi32(s0, scaled_dot64(va, yq, quad_scales_s(sc2, 2 * h)));
            s1 = _mm512_add_epi32(s1, scaled_dot64(vb, yq + 64, quad_scales_s(sc2, 2 * h + 1)));
        }
        const float dd = y[b].d * h2f(x[b].d);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(dd), _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), acc);
        accc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(_mm256_slli_epi32(corr, 2)), accc);
    }
    *s = _mm512_reduce_add_ps(acc) - hsum256(accc);
}

/* Q2_K, Q4_K and Q6_K keep their AVX2 kernels: 512-bit versions of the same
 * scheme measured 10-20% slower on Sapphire Rapids (vpmaddubsw/vpmaddwd
 * on zmm get no more throughput than two ymm ports, and the joins cost
 * shuffles), unlike Q3_K and Q5_K whose bit extraction gains from mask
 * tests. */
void byoai_kernels_init_avx512(byoai_kernels *k) {
    k->level = BYOAI_SIMD_AVX512;
    k->name = "avx512";
    k->vec_dot[BYOAI_TYPE_F32] = dot_f32;
    k->vec_dot[BYOAI_TYPE_F16] = dot_f16;
    k->vec_dot[BYOAI_TYPE_Q8_0] = dot_q8_0;
    k->vec_dot[BYOAI_TYPE_Q4_0] = dot_q4_0;
    k->vec_dot[BYOAI_TYPE_Q4_1] = dot_q4_1;
    k->vec_dot[BYOAI_TYPE_Q5_0] = dot_q5_0;
    k->vec_dot[BYOAI_TYPE_Q5_1] = dot_q5_1;
    k->vec_dot[BYOAI_TYPE_Q3_K] = dot_q3_k;
    k->vec_dot[BYOAI_TYPE_Q5_K] = dot_q5_k;
}
#endif
