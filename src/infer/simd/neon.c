/*
 * ARMv8 NEON kernels. Integer dots use the dotprod extension (SDOT) when
 * the compiler targets it (-march=armv8.2-a+dotprod or later), otherwise
 * widening multiplies with pairwise accumulation; both are exact. Built
 * only for aarch64; x86 builds compile this file to nothing.
 *
 * The structure mirrors avx2.c: integer partial sums per block stay in
 * vector registers (scaled by the sub-block scales with multiply-
 * accumulate), one int->float conversion and FMA per block, one horizontal
 * sum per row.
 */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "infer/quant.h"

static inline float h2f(uint16_t h) { return byoai_fp16_to_fp32(h); }

/* v >> SH for a constant SH in 0..7 (the NEON immediate form needs 1..8) */
#define SHR(v, SH) ((SH) ? vshrq_n_u8(v, (SH) ? (SH) : 1) : (v))

/* 16 signed byte products summed into 4 int32 lanes */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    const int16x8_t p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    const int16x8_t p1 = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, p0), p1);
#endif
}

/* ---- float types -------------------------------------------------------- */

static void dot_f32(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static inline float32x4_t load_f16(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static void dot_f16(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx;
    const float *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, load_f16(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, load_f16(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, load_f16(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, load_f16(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, load_f16(x + i), vld1q_f32(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += h2f(x[i]) * y[i];
    *s = sum;
}

static inline float32x4_t load_bf16(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }

static void dot_bf16(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx;
    const float *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, load_bf16(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, load_bf16(x + i + 4), vld1q_f32(y + i + 4));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, load_bf16(x + i), vld1q_f32(y + i));
    float sum = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) sum += byoai_bf16_to_fp32(x[i]) * y[i];
    *s = sum;
}

/* ---- 32-element block types (Q8_0 activations) ---------------------------- */

/* one block's integer dot of levels lo (elements 0..15), hi (16..31) */
static inline int32x4_t block_dot(int8x16_t lo, int8x16_t hi, const int8_t *y) {
    return dot16(dot16(vdupq_n_s32(0), lo, vld1q_s8(y)), hi, vld1q_s8(y + 16));
}

static void dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx, *y = vy;
    const int64_t nb = n / QK8_0;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        int32x4_t p0 = block_dot(vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), y[b].qs);
        int32x4_t p1 = block_dot(vld1q_s8(x[b + 1].qs), vld1q_s8(x[b + 1].qs + 16), y[b + 1].qs);
        a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(p0), h2f(x[b].d) * h2f(y[b].d));
        a1 = vfmaq_n_f32(a1, vcvtq_f32_s32(p1), h2f(x[b + 1].d) * h2f(y[b + 1].d));
    }
    for (; b < nb; b++) {
        int32x4_t p = block_dot(vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), y[b].qs);
        a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(p), h2f(x[b].d) * h2f(y[b].d));
    }
    *s = vaddvq_f32(vaddq_f32(a0, a1));
}

static void dot_q4_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t eight = vdupq_n_s8(8);
    float32x4_t a0 = vdupq_n_f32(0);
    for (int64_t b = 0; b < n / QK4_0; b++) {
        const uint8x16_t v = vld1q_u8(x[b].qs);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)), eight);
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
        a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(block_dot(lo, hi, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
    }
    *s = vaddvq_f32(a0);
}

/* 16 bits -> 16 bytes, 0xFF where set (byte j <-> bit j) */
static inline uint8x16_t bits16(uint32_t bits) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vtstq_u8(v, vld1q_u8(bit));
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* sum over one block of d*dy*q*y + m*dy*y for unsigned levels lo / hi */
static inline float32x4_t affine_block(float32x4_t acc, uint8x16_t lo, uint8x16_t hi, const block_q8_0 *y, float d,
                                       float m) {
    const int8x16_t y0 = vld1q_s8(y->qs), y1 = vld1q_s8(y->qs + 16), one = vdupq_n_s8(1);
    const int32x4_t p = dot16(dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(lo), y0), vreinterpretq_s8_u8(hi), y1);
    const int32x4_t sy = dot16(dot16(vdupq_n_s32(0), one, y0), one, y1);
    const float dy = h2f(y->d);
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), d * dy);
    return vfmaq_n_f32(acc, vcvtq_f32_s32(sy), m * dy);
}

static void dot_q4_1(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_0 *y = vy;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < n / QK4_1; b++) {
        const uint8x16_t v = vld1q_u8(x[b].qs);
        acc = affine_block(acc, vandq_u8(v, m4), vshrq_n_u8(v, 4), &y[b], h2f(x[b].d), h2f(x[b].m));
    }
    *s = vaddvq_f32(acc);
}

static void dot_q5_1(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_0 *y = vy;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), sixteen = vdupq_n_u8(16);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < n / QK5_1; b++) {
        const uint32_t qh = load_u32(x[b].qh);
        const uint8x16_t v = vld1q_u8(x[b].qs);
        const uint8x16_t lo = vorrq_u8(vandq_u8(v, m4), vandq_u8(bits16(qh & 0xFFFF), sixteen));
        const uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), vandq_u8(bits16(qh >> 16), sixteen));
        acc = affine_block(acc, lo, hi, &y[b], h2f(x[b].d), h2f(x[b].m));
    }
    *s = vaddvq_f32(acc);
}

static void dot_q5_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), sixteen = vdupq_n_u8(16);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < n / QK5_0; b++) {
        const uint32_t qh = load_u32(x[b].qh);
        const uint8x16_t v = vld1q_u8(x[b].qs);
        /* nibble - 16 where the fifth bit is clear */
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)),
                                      vreinterpretq_s8_u8(vbicq_u8(sixteen, bits16(qh & 0xFFFF))));
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)),
                                      vreinterpretq_s8_u8(vbicq_u8(sixteen, bits16(qh >> 16))));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(block_dot(lo, hi, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
    }
    *s = vaddvq_f32(acc);
}

/* ---- K-quants (Q8_K activations) ----------------------------------------- */

/* sum_j w[j] * (bsums[2j] + bsums[2j+1]) for 8 unsigned 8-bit weights */
static inline int32_t pair_bsum_dot(const int16_t *bsums, const uint8_t *w8) {
    const int16x8_t bs = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));
    const int16x8_t w = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(w8)));
    return vaddvq_s32(vaddq_s32(vmull_s16(vget_low_s16(bs), vget_low_s16(w)), vmull_high_s16(bs, w)));
}

/* sum_j w[j] * bsums[j] over 16 sub-blocks, w signed 8-bit */
static inline int32_t bsum_dot(const int16_t *bsums, int8x16_t w8) {
    const int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
    const int16x8_t w0 = vmovl_s8(vget_low_s8(w8)), w1 = vmovl_high_s8(w8);
    int32x4_t s = vmull_s16(vget_low_s16(b0), vget_low_s16(w0));
    s = vmlal_high_s16(s, b0, w0);
    s = vmlal_s16(s, vget_low_s16(b1), vget_low_s16(w1));
    s = vmlal_high_s16(s, b1, w1);
    return vaddvq_s32(s);
}

static void dot_q2_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const uint8x16_t m3 = vdupq_n_u8(3);
    float32x4_t acc = vdupq_n_f32(0);
    float macc = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8x16_t sc8 = vld1q_u8(x[b].scales);
        const int32_t msum = bsum_dot(y[b].bsums, vreinterpretq_s8_u8(vshrq_n_u8(sc8, 4)));
        uint8_t sc[16];
        vst1q_u8(sc, vandq_u8(sc8, vdupq_n_u8(0x0F)));
        int32x4_t isum = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8x16_t q0 = vld1q_u8(x[b].qs + 32 * h), q1 = vld1q_u8(x[b].qs + 32 * h + 16);
            const int8_t *yq = y[b].qs + 128 * h;
            const uint8_t *s8 = sc + 8 * h;
#define Q2_STEP(k, SH)                                                                                                 \
    do {                                                                                                               \
        const int8x16_t u0 = vreinterpretq_s8_u8(vandq_u8(SHR(q0, SH), m3));                                    \
        const int8x16_t u1 = vreinterpretq_s8_u8(vandq_u8(SHR(q1, SH), m3));                                    \
        isum = vmlaq_n_s32(isum, dot16(vdupq_n_s32(0), u0, vld1q_s8(yq + 32 * k)), s8[2 * k]);                         \
        isum = vmlaq_n_s32(isum, dot16(vdupq_n_s32(0), u1, vld1q_s8(yq + 32 * k + 16)), s8[2 * k + 1]);                \
    } while (0)
            Q2_STEP(0, 0);
            Q2_STEP(1, 2);
            Q2_STEP(2, 4);
            Q2_STEP(3, 6);
#undef Q2_STEP
        }
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), y[b].d * h2f(x[b].d));
        macc += y[b].d * h2f(x[b].dmin) * (float)msum;
    }
    *s = vaddvq_f32(acc) - macc;
}

/* Q3_K's 16 signed scales (byoai_q3k_scales) */
static inline int8x16_t q3k_scales(const uint8_t *q) {
    const uint32_t a0 = load_u32(q), a1 = load_u32(q + 4), a2 = load_u32(q + 8);
    const uint32_t m4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
    const uint32_t w[4] = {(a0 & m4) | ((a2 & m2) << 4), (a1 & m4) | (((a2 >> 2) & m2) << 4),
                           ((a0 >> 4) & m4) | (((a2 >> 4) & m2) << 4), ((a1 >> 4) & m4) | (((a2 >> 6) & m2) << 4)};
    return vsubq_s8(vreinterpretq_s8_u32(vld1q_u32(w)), vdupq_n_s8(32));
}

static void dot_q3_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int8x16_t scv = q3k_scales(x[b].scales);
        int8_t sc[16];
        vst1q_s8(sc, scv);
        /* levels are u - 4, u = q2 | hbit << 2: subtract 4 * sum(scale * bsum) */
        const int32_t corr = bsum_dot(y[b].bsums, scv);
        const uint8x16_t hm0 = vld1q_u8(x[b].hmask), hm1 = vld1q_u8(x[b].hmask + 16);
        int32x4_t isum = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8x16_t q0 = vld1q_u8(x[b].qs + 32 * h), q1 = vld1q_u8(x[b].qs + 32 * h + 16);
            const int8_t *yq = y[b].qs + 128 * h;
            const int8_t *s8 = sc + 8 * h;
#define Q3_STEP(k, SH)                                                                                                 \
    do {                                                                                                               \
        const uint8x16_t bit = vdupq_n_u8((uint8_t)(1 << (4 * h + k)));                                                \
        const uint8x16_t u0 = vorrq_u8(vandq_u8(SHR(q0, SH), m3), vandq_u8(vtstq_u8(hm0, bit), four));          \
        const uint8x16_t u1 = vorrq_u8(vandq_u8(SHR(q1, SH), m3), vandq_u8(vtstq_u8(hm1, bit), four));          \
        isum = vmlaq_n_s32(isum, dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(u0), vld1q_s8(yq + 32 * k)), s8[2 * k]);    \
        isum = vmlaq_n_s32(isum, dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(u1), vld1q_s8(yq + 32 * k + 16)),           \
                           s8[2 * k + 1]);                                                                             \
    } while (0)
            Q3_STEP(0, 0);
            Q3_STEP(1, 2);
            Q3_STEP(2, 4);
            Q3_STEP(3, 6);
#undef Q3_STEP
        }
        const int32_t total = vaddvq_s32(isum) - 4 * corr;
        sum += y[b].d * h2f(x[b].d) * (float)total;
    }
    *s = sum;
}

static inline void k4_unpack(const uint8_t *q, uint8_t sc[8], uint8_t mn[8]) {
    const uint32_t a0 = load_u32(q), a1 = load_u32(q + 4), a2 = load_u32(q + 8);
    const uint32_t s2[2] = {a0 & 0x3F3F3F3Fu, (a2 & 0x0F0F0F0Fu) | (((a0 >> 6) & 0x03030303u) << 4)};
    const uint32_t m2[2] = {a1 & 0x3F3F3F3Fu, ((a2 >> 4) & 0x0F0F0F0Fu) | (((a1 >> 6) & 0x03030303u) << 4)};
    memcpy(sc, s2, 8);
    memcpy(mn, m2, 8);
}

/* Q4_K and Q5_K: with_high selects the fifth bit from qh */
static inline void k45_dot(int64_t n, float *s, const uint8_t *base, size_t stride, size_t off_scales, size_t off_qs,
                           ptrdiff_t off_qh, const block_q8_K *y) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F), sixteen = vdupq_n_u8(16);
    float32x4_t acc = vdupq_n_f32(0);
    float macc = 0;
    uint8_t sc[8], mn[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *blk = base + b * stride;
        k4_unpack(blk + off_scales, sc, mn);
        const int32_t msum = pair_bsum_dot(y[b].bsums, mn);
        uint8x16_t qh0 = vdupq_n_u8(0), qh1 = qh0;
        if (off_qh >= 0) {
            qh0 = vld1q_u8(blk + off_qh);
            qh1 = vld1q_u8(blk + off_qh + 16);
        }
        int32x4_t isum = vdupq_n_s32(0);
        for (int c = 0; c < 4; c++) {
            const uint8x16_t q0 = vld1q_u8(blk + off_qs + 32 * c), q1 = vld1q_u8(blk + off_qs + 32 * c + 16);
            uint8x16_t l0 = vandq_u8(q0, m4), l1 = vandq_u8(q1, m4), h0 = vshrq_n_u8(q0, 4), h1 = vshrq_n_u8(q1, 4);
            if (off_qh >= 0) {
                const uint8x16_t bl = vdupq_n_u8((uint8_t)(1 << (2 * c))), bh = vdupq_n_u8((uint8_t)(2 << (2 * c)));
                l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(qh0, bl), sixteen));
                l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(qh1, bl), sixteen));
                h0 = vorrq_u8(h0, vandq_u8(vtstq_u8(qh0, bh), sixteen));
                h1 = vorrq_u8(h1, vandq_u8(vtstq_u8(qh1, bh), sixteen));
            }
            const int8_t *yq = y[b].qs + 64 * c;
            int32x4_t pl = dot16(dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(l0), vld1q_s8(yq)), vreinterpretq_s8_u8(l1),
                                 vld1q_s8(yq + 16));
            int32x4_t ph = dot16(dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(h0), vld1q_s8(yq + 32)),
                                 vreinterpretq_s8_u8(h1), vld1q_s8(yq + 48));
            isum = vmlaq_n_s32(isum, pl, sc[2 * c]);
            isum = vmlaq_n_s32(isum, ph, sc[2 * c + 1]);
        }
        uint16_t d, dmin;
        memcpy(&d, blk, 2);
        memcpy(&dmin, blk + 2, 2);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), y[b].d * h2f(d));
        macc += y[b].d * h2f(dmin) * (float)msum;
    }
    *s = vaddvq_f32(acc) - macc;
}

static void dot_q4_k(int64_t n, float *s, const void *vx, const void *vy) {
    k45_dot(n, s, vx, sizeof(block_q4_K), offsetof(block_q4_K, scales), offsetof(block_q4_K, qs), -1, vy);
}

static void dot_q5_k(int64_t n, float *s, const void *vx, const void *vy) {
    k45_dot(n, s, vx, sizeof(block_q5_K), offsetof(block_q5_K, scales), offsetof(block_q5_K, qs),
            (ptrdiff_t)offsetof(block_q5_K, qh), vy);
}

static void dot_q6_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m30 = vdupq_n_u8(0x30);
    const int8x16_t off = vdupq_n_s8(32);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int8_t *sc = x[b].scales;
        int32x4_t isum = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[b].ql + 64 * h, *qh = x[b].qh + 32 * h;
            const int8_t *yq = y[b].qs + 128 * h;
            for (int half = 0; half < 2; half++) { /* l in 0..15, 16..31 */
                const uint8x16_t A = vld1q_u8(ql + 16 * half), B = vld1q_u8(ql + 32 + 16 * half);
                const uint8x16_t H = vld1q_u8(qh + 16 * half);
                const uint8x16_t u[4] = {
                    vorrq_u8(vandq_u8(A, m4), vandq_u8(vshlq_n_u8(H, 4), m30)),
                    vorrq_u8(vandq_u8(B, m4), vandq_u8(vshlq_n_u8(H, 2), m30)),
                    vorrq_u8(vshrq_n_u8(A, 4), vandq_u8(H, m30)),
                    vorrq_u8(vshrq_n_u8(B, 4), vandq_u8(vshrq_n_u8(H, 2), m30)),
                };
                for (int k = 0; k < 4; k++) {
                    const int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(u[k]), off);
                    const int e = 32 * k + 16 * half; /* first element within the half */
                    isum = vmlaq_n_s32(isum, dot16(vdupq_n_s32(0), v, vld1q_s8(yq + e)), sc[8 * h + e / 16]);
                }
            }
        }
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), y[b].d * h2f(x[b].d));
    }
    *s = vaddvq_f32(acc);
}

/* ---- activation quantizers (bit-exact with the reference) ------------------ */

/* 32 floats -> int8 with the given conversion into dst; returns max|x| */
static inline float absmax(const float *x, int n) {
    float32x4_t m = vdupq_n_f32(0);
    for (int j = 0; j < n; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
    return vmaxvq_f32(m);
}

/* round half away from zero (roundf) = FCVTAS */
static inline int8x16_t narrow_round_away(const float *x, float id) {
    int32x4_t i0 = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x), id));
    int32x4_t i1 = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4), id));
    int32x4_t i2 = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8), id));
    int32x4_t i3 = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + 12), id));
    int16x8_t a = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1)), b = vcombine_s16(vqmovn_s32(i2), vqmovn_s32(i3));
    return vcombine_s8(vqmovn_s16(a), vqmovn_s16(b));
}

/* round to nearest even (lrintf) = FCVTNS */
static inline int8x16_t narrow_round_even(const float *x, float id) {
    int32x4_t i0 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x), id));
    int32x4_t i1 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4), id));
    int32x4_t i2 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8), id));
    int32x4_t i3 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 12), id));
    int16x8_t a = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1)), b = vcombine_s16(vqmovn_s32(i2), vqmovn_s32(i3));
    return vcombine_s8(vqmovn_s16(a), vqmovn_s16(b));
}

static void quantize_q8_0(const float *src, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *x = src + b * QK8_0;
        const float d = absmax(x, QK8_0) / 127.0f;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = byoai_fp32_to_fp16(d);
        vst1q_s8(y[b].qs, narrow_round_away(x, id));
        vst1q_s8(y[b].qs + 16, narrow_round_away(x + 16, id));
    }
}

static void quantize_q8_1(const float *src, void *dst, int64_t n) {
    block_q8_1 *y = dst;
    for (int64_t b = 0; b < n / QK8_1; b++) {
        const float *x = src + b * QK8_1;
        const float d = absmax(x, QK8_1) / 127.0f;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        const int8x16_t q0 = narrow_round_away(x, id), q1 = narrow_round_away(x + 16, id);
        vst1q_s8(y[b].qs, q0);
        vst1q_s8(y[b].qs + 16, q1);
        const int sum = vaddlvq_s8(q0) + vaddlvq_s8(q1);
        y[b].d = byoai_fp32_to_fp16(d);
        y[b].s = byoai_fp32_to_fp16((float)sum * d);
    }
}

static void quantize_q8_k(const float *src, void *dst, int64_t n) {
    block_q8_K *y = dst;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *x = src + b * QK_K;
        const float amax = absmax(x, QK_K);
        const float id = amax > 0 ? fminf(127.0f / amax, 3.0e38f) : 0.0f;
        y[b].d = amax / 127.0f;
        for (int j = 0; j < QK_K; j += 16) {
            const int8x16_t q = narrow_round_even(x + j, id);
            vst1q_s8(y[b].qs + j, q);
            y[b].bsums[j / 16] = (int16_t)vaddlvq_s8(q);
        }
    }
}

void byoai_kernels_init_neon(byoai_kernels *k) {
    k->level = BYOAI_SIMD_NEON;
    k->name = "neon";
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
