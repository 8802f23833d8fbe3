/*
 * The 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and Q8_1:
 * scalar reference quantize / dequantize / dot. Every dot takes Q8_0
 * activations. The min term of Q4_1 / Q5_1 (m * sum(y)) needs the sum of
 * the activation quants, which the dot computes exactly in integers
 * rather than reading Q8_1's float16 s = d * sum(q): that s overflows to
 * inf once |d * sum(q)| > 65504 (activations of a few thousand, which
 * outlier channels reach) and carries a 2^-11 relative rounding error.
 * Q8_1 stays available as an activation-only type for interchange.
 *
 * The 4- and 5-bit quantizers search the block scale (and min) that
 * minimise the weighted squared error (byoai_fit_symmetric / _affine in
 * quant_kquants.c), then re-quantize with the float16 values stored.
 */
#include <math.h>
#include <string.h>

#include "infer/quant.h"

/* ---- Q8_0: d = max|x| / 127, q = round(x / d) -------------------------- */
void byoai_ref_quantize_q8_0(const float *src, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float *x = src + b * QK8_0;
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = byoai_fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void byoai_ref_dequantize_q8_0(const void *src, float *dst, int64_t n) {
    const block_q8_0 *x = src;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        float d = byoai_fp16_to_fp32(x[b].d);
        for (int j = 0; j < QK8_0; j++) dst[b * QK8_0 + j] = x[b].qs[j] * d;
    }
}

void byoai_ref_dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx, *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int32_t isum = 0;
        for (int j = 0; j < QK8_0; j++) isum += x[b].qs[j] * y[b].qs[j];
        sum += (float)isum * byoai_fp16_to_fp32(x[b].d) * byoai_fp16_to_fp32(y[b].d);
    }
    *s = sum;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* symmetric 32-element block: levels -nmax..nmax-1 of the stored d */
static byoai_half quantize_sym_block(const float *x, int nmax, int8_t *L) {
    float w[32];
    byoai_quant_weights(32, x, w);
    byoai_half hd = byoai_fp32_to_fp16(byoai_fit_symmetric(32, nmax, x, w, L));
    float d = byoai_fp16_to_fp32(hd);
    if (!isfinite(d)) {
        hd = (uint16_t)((hd & 0x8000) | 0x7BFF);
        d = byoai_fp16_to_fp32(hd);
    }
    for (int j = 0; j < 32; j++) L[j] = (int8_t)(d != 0 ? clampi((int)lrintf(x[j] / d), -nmax, nmax - 1) : 0);
    return hd;
}

/* affine 32-element block: value = d * L + m, L in 0..nmax */
static void quantize_affine_block(const float *x, int nmax, uint8_t *L, byoai_half *hd, byoai_half *hm) {
    float w[32], off;
    byoai_quant_weights(32, x, w);
    float a = byoai_fit_affine(32, nmax, x, w, L, &off, true);
    *hd = byoai_fp32_to_fp16(a);
    *hm = byoai_fp32_to_fp16(off);
    float d = byoai_fp16_to_fp32(*hd), m = byoai_fp16_to_fp32(*hm);
    if (!isfinite(d)) *hd = 0x7BFF, d = byoai_fp16_to_fp32(*hd);
    if (!isfinite(m)) *hm = (uint16_t)((*hm & 0x8000) | 0x7BFF), m = byoai_fp16_to_fp32(*hm);
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)(d > 0 ? clampi((int)lrintf((x[j] - m) / d), 0, nmax) : 0);
}

/* ---- Q4_0: 4.5 bits per weight; value = (q - 8) * d, q a nibble; low
 * nibbles are elements 0..15, high nibbles 16..31 ----------------------- */
void byoai_ref_quantize_q4_0(const float *src, void *dst, int64_t n) {
    block_q4_0 *y = dst;
    int8_t L[32];
    for (int64_t b = 0; b < n / QK4_0; b++) {
        y[b].d = quantize_sym_block(src + b * QK4_0, 8, L);
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)((L[j] + 8) | ((L[j + 16] + 8) << 4));
    }
}

void byoai_ref_dequantize_q4_0(const void *src, float *dst, int64_t n) {
    const block_q4_0 *x = src;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        float d = byoai_fp16_to_fp32(x[b].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[b * QK4_0 + j] = ((x[b].qs[j] & 0x0F) - 8) * d;
            dst[b * QK4_0 + j + QK4_0 / 2] = ((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void byoai_ref_dot_q4_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        int32_t isum = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            isum += ((x[b].qs[j] & 0x0F) - 8) * y[b].qs[j];
            isum += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + QK4_0 / 2];
        }
        sum += (float)isum * byoai_fp16_to_fp32(x[b].d) * byoai_fp16_to_fp32(y[b].d);
    }
    *s = sum;
}

/* ---- Q8_1: Q8_0 plus s = d * sum(q) (ggml's activations for Q4_1 / Q5_1) */
void byoai_ref_quantize_q8_1(const float *src, void *dst, int64_t n) {
    block_q8_1 *y = dst;
    for (int64_t b = 0; b < n / QK8_1; b++) {
        const float *x = src + b * QK8_1;
        float amax = 0;
        for (int j = 0; j < QK8_1; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[b].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[b].qs[j];
        }
        y[b].d = byoai_fp32_to_fp16(d);
        y[b].s = byoai_fp32_to_fp16((float)sum * d);
    }
}

void byoai_ref_dequantize_q8_1(const void *src, float *dst, int64_t n) {
    const block_q8_1 *x = src;
    for (int64_t b = 0; b < n / QK8_1; b++) {
        float d = byoai_fp16_to_fp32(x[b].d);
        for (int j = 0; j < QK8_1; j++) dst[b * QK8_1 + j] = x[b].qs[j] * d;
    }
}

/* ---- Q4_1: 5 bits per weight; value = q * d + m ------------------------- */
void byoai_ref_quantize_q4_1(const float *src, void *dst, int64_t n) {
    block_q4_1 *y = dst;
    uint8_t L[32];
    for (int64_t b = 0; b < n / QK4_1; b++) {
        quantize_affine_block(src + b * QK4_1, 15, L, &y[b].d, &y[b].m);
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void byoai_ref_dequantize_q4_1(const void *src, float *dst, int64_t n) {
    const block_q4_1 *x = src;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        float d = byoai_fp16_to_fp32(x[b].d), m = byoai_fp16_to_fp32(x[b].m);
        for (int j = 0; j < 16; j++) {
            dst[b * 32 + j] = (x[b].qs[j] & 0x0F) * d + m;
            dst[b * 32 + j + 16] = (x[b].qs[j] >> 4) * d + m;
        }
    }
}

void byoai_ref_dot_q4_1(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        int32_t isum = 0, ysum = 0;
        for (int j = 0; j < 16; j++) {
            isum += (x[b].qs[j] & 0x0F) * y[b].qs[j];
            isum += (x[b].qs[j] >> 4) * y[b].qs[j + 16];
            ysum += y[b].qs[j] + y[b].qs[j + 16];
        }
        const float dy = byoai_fp16_to_fp32(y[b].d);
        sum += (float)isum * byoai_fp16_to_fp32(x[b].d) * dy + byoai_fp16_to_fp32(x[b].m) * ((float)ysum * dy);
    }
    *s = sum;
}

/* ---- Q5_0: 5.5 bits per weight; value = (q - 16) * d with q = nibble |
 * (bit j of qh) << 4 for element j (nibbles ordered as in Q4_0) ---------- */
static inline uint32_t load_qh(const uint8_t *qh) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static void store_qh(uint8_t *qh, uint32_t v) {
    for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(v >> (8 * i));
}

void byoai_ref_quantize_q5_0(const float *src, void *dst, int64_t n) {
    block_q5_0 *y = dst;
    int8_t L[32];
    for (int64_t b = 0; b < n / QK5_0; b++) {
        y[b].d = quantize_sym_block(src + b * QK5_0, 16, L);
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) qh |= (uint32_t)(((L[j] + 16) >> 4) & 1) << j;
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)(((L[j] + 16) & 0x0F) | (((L[j + 16] + 16) & 0x0F) << 4));
        store_qh(y[b].qh, qh);
    }
}

void byoai_ref_dequantize_q5_0(const void *src, float *dst, int64_t n) {
    const block_q5_0 *x = src;
    for (int64_t b = 0; b < n / QK5_0; b++) {
        float d = byoai_fp16_to_fp32(x[b].d);
        uint32_t qh = load_qh(x[b].qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (x[b].qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            dst[b * 32 + j] = (q0 - 16) * d;
            dst[b * 32 + j + 16] = (q1 - 16) * d;
        }
    }
}

void byoai_ref_dot_q5_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK5_0; b++) {
        uint32_t qh = load_qh(x[b].qh);
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (x[b].qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            isum += (q0 - 16) * y[b].qs[j] + (q1 - 16) * y[b].qs[j + 16];
        }
        sum += (float)isum * byoai_fp16_to_fp32(x[b].d) * byoai_fp16_to_fp32(y[b].d);
    }
    *s = sum;
}

/* ---- Q5_1: 6 bits per weight; value = q * d + m, q as in Q5_0 ---------- */
void byoai_ref_quantize_q5_1(const float *src, void *dst, int64_t n) {
    block_q5_1 *y = dst;
    uint8_t L[32];
    for (int64_t b = 0; b < n / QK5_1; b++) {
        quantize_affine_block(src + b * QK5_1, 31, L, &y[b].d, &y[b].m);
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) qh |= (uint32_t)((L[j] >> 4) & 1) << j;
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
        store_qh(y[b].qh, qh);
    }
}

void byoai_ref_dequantize_q5_1(const void *src, float *dst, int64_t n) {
    const block_q5_1 *x = src;
    for (int64_t b = 0; b < n / QK5_1; b++) {
        float d = byoai_fp16_to_fp32(x[b].d), m = byoai_fp16_to_fp32(x[b].m);
        uint32_t qh = load_qh(x[b].qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (x[b].qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            dst[b * 32 + j] = q0 * d + m;
            dst[b * 32 + j + 16] = q1 * d + m;
        }
    }
}

void byoai_ref_dot_q5_1(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK5_1; b++) {
        uint32_t qh = load_qh(x[b].qh);
        int32_t isum = 0, ysum = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (x[b].qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            isum += q0 * y[b].qs[j] + q1 * y[b].qs[j + 16];
            ysum += y[b].qs[j] + y[b].qs[j + 16];
        }
        const float dy = byoai_fp16_to_fp32(y[b].d);
        sum += (float)isum * byoai_fp16_to_fp32(x[b].d) * dy + byoai_fp16_to_fp32(x[b].m) * ((float)ysum * dy);
    }
    *s = sum;
}
