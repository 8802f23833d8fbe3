/*
 * K-quants (Q2_K .. Q6_K) and their Q8_K activations: scalar reference
 * dequantize / quantize / dot, plus the scale searches the quantizers of
 * every type share.
 *
 * A K-quant block covers 256 weights ("super-block") split into sub-blocks
 * of 16 or 32 that each carry a small integer scale (and for Q2_K, Q4_K,
 * Q5_K a min); the super-block carries the float16 factors that turn those
 * integers into real scales. Element e of a block always belongs to
 * sub-block e / 16 (or e / 32): the interleaving is only in how the low
 * and high bits of the quants are packed, documented at each dequantizer.
 *
 * Quantization is three steps per super-block:
 *   1. fit each sub-block on its own (best real scale, min and levels),
 *   2. express the sub-block scales/mins with the super-block factor and
 *      the few bits the format has,
 *   3. for each sub-block try the neighbouring integer scale (and min)
 *      codes, re-quantize with the values actually stored, keep the best.
 * Errors are weighted by w_i = |x_i| + rms(sub-block): large weights matter
 * more to a network than small ones, but every weight counts.
 */
#include <math.h>
#include <string.h>

#include "infer/quant.h"

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static inline int round_int(float v) { return (int)lrintf(v); }

/* ---- shared scale searches ------------------------------------------------ */

/* weighted least squares of x ~ a * L + b for fixed L; returns the error */
static float affine_solve(int n, const float *x, const float *w, const uint8_t *L, bool free_offset, float *a,
                          float *b) {
    float sw = 0, sx = 0, sl = 0, sll = 0, sxl = 0;
    for (int i = 0; i < n; i++) {
        sw += w[i];
        sx += w[i] * x[i];
        sl += w[i] * L[i];
        sll += w[i] * L[i] * L[i];
        sxl += w[i] * L[i] * x[i];
    }
    float D = sw * sll - sl * sl;
    if (!(D > 0)) return INFINITY;
    *a = (sw * sxl - sx * sl) / D;
    *b = (sll * sx - sl * sxl) / D;
    if (!free_offset && *b > 0) {
        *b = 0;
        *a = sxl / sll;
    }
    if (!(*a > 0)) return INFINITY;
    float err = 0;
    for (int i = 0; i < n; i++) {
        float d = *a * L[i] + *b - x[i];
        err += w[i] * d * d;
    }
    return err;
}

float byoai_fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *offset, bool free_offset) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (!free_offset && lo > 0) lo = 0;
    if (!(hi > lo)) { /* constant (or empty range): the offset says it all */
        memset(L, 0, (size_t)n);
        *offset = lo;
        return 0;
    }
    uint8_t T[64];
    /* start: plain min/max scaling */
    float best_a = (hi - lo) / nmax, best_b = lo, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(round_int((x[i] - lo) / best_a), 0, nmax);
        float d = best_a * L[i] + lo - x[i];
        best += w[i] * d * d;
    }
    /* grid of slightly stretched / shrunk level spacings, each refitted by
     * least squares: clipping the extremes often lowers the total error */
    for (int k = -6; k <= 16; k++) {
        float is = (nmax + 0.1f * k) / (hi - lo);
        for (int i = 0; i < n; i++) T[i] = (uint8_t)clampi(round_int(is * (x[i] - lo)), 0, nmax);
        float a, b, err = affine_solve(n, x, w, T, free_offset, &a, &b);
        if (err < best) {
            best = err;
            best_a = a;
            best_b = b;
            memcpy(L, T, (size_t)n);
        }
    }
    /* alternate: levels for the fitted line, line for the levels */
    for (int it = 0; it < 3; it++) {
        for (int i = 0; i < n; i++) T[i] = (uint8_t)clampi(round_int((x[i] - best_b) / best_a), 0, nmax);
        float a, b, err = affine_solve(n, x, w, T, free_offset, &a, &b);
        if (!(err < best)) break;
        best = err;
        best_a = a;
        best_b = b;
        memcpy(L, T, (size_t)n);
    }
    *offset = best_b;
    return best_a;
}

float byoai_fit_symmetric(int n, int nmax, const float *x, const float *w, int8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < 1e-30f) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    /* the largest magnitude maps to -nmax (the level with no positive twin);
     * the score sxl^2 / sll is what the best scale sxl / sll removes from
     * the error, so maximising it minimises the error */
    int8_t T[64];
    float best_sxl = 0, best_sll = 0;
    for (int k = -10; k <= 10; k++) {
        float is = -(nmax + 0.1f * k) / max;
        float sxl = 0, sll = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(round_int(is * x[i]), -nmax, nmax - 1);
            T[i] = (int8_t)l;
            sxl += w[i] * x[i] * l;
            sll += w[i] * l * l;
        }
        if (sll > 0 && (best_sll == 0 || sxl * sxl * best_sll > best_sxl * best_sxl * sll)) {
            best_sxl = sxl;
            best_sll = sll;
            memcpy(L, T, (size_t)n);
        }
    }
    if (best_sll == 0) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    /* coordinate descent: move single levels by one step while that helps */
    for (int pass = 0; pass < 4; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            for (int step = -1; step <= 1; step += 2) {
                int l = L[i] + step;
                if (l < -nmax || l > nmax - 1) continue;
                float sxl = best_sxl + w[i] * x[i] * (l - L[i]);
                float sll = best_sll + w[i] * (float)(l * l - L[i] * L[i]);
                if (sll > 0 && sxl * sxl * best_sll > best_sxl * best_sxl * sll) {
                    best_sxl = sxl;
                    best_sll = sll;
                    L[i] = (int8_t)l;
                    changed++;
                    break;
                }
            }
        }
        if (!changed) break;
    }
    return best_sxl / best_sll;
}

/* w_i = |x_i| + rms over the n values */
void byoai_quant_weights(int n, const float *x, float *w) {
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    float rms = sqrtf(s / n);
    for (int i = 0; i < n; i++) w[i] = fabsf(x[i]) + rms;
}


/* Quantize n values to levels 0..nmax with value = d * L - m; returns the
 * weighted error. d == 0 gives all-zero levels. */
static float requant_affine(int n, int nmax, const float *x, const float *w, float d, float m, uint8_t *L) {
    float err = 0;
    for (int i = 0; i < n; i++) {
        int l = d > 0 ? clampi(round_int((x[i] + m) / d), 0, nmax) : 0;
        if (L) L[i] = (uint8_t)l;
        float e = d * l - m - x[i];
        err += w[i] * e * e;
    }
    return err;
}

/* Quantize n values to levels -nmax..nmax-1 with value = d * L. */
static float requant_symmetric(int n, int nmax, const float *x, const float *w, float d, int8_t *L) {
    float err = 0;
    for (int i = 0; i < n; i++) {
        int l = d != 0 ? clampi(round_int(x[i] / d), -nmax, nmax - 1) : 0;
        if (L) L[i] = (int8_t)l;
        float e = d * l - x[i];
        err += w[i] * e * e;
    }
    return err;
}

/*
 * Shared by Q2_K, Q4_K, Q5_K: nsub sub-blocks of size sub, levels 0..nmax,
 * integer scale and min codes 0..cmax. Fills sc[], mc[], L[] (per element)
 * and the two float16 super-block factors.
 */
static void quantize_affine_superblock(const float *x, int nsub, int sub, int nmax, int cmax, uint8_t *sc,
                                       uint8_t *mc, uint8_t *L, byoai_half *d_out, byoai_half *dmin_out) {
    float scale[16], min[16], w[QK_K];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < nsub; j++) {
        byoai_quant_weights(sub, x + j * sub, w + j * sub);
        float off;
        scale[j] = byoai_fit_affine(sub, nmax, x + j * sub, w + j * sub, L + j * sub, &off, false);
        min[j] = -off;
        max_scale = fmaxf(max_scale, scale[j]);
        max_min = fmaxf(max_min, min[j]);
    }
    byoai_half hd = byoai_fp32_to_fp16(max_scale / cmax);
    byoai_half hm = byoai_fp32_to_fp16(max_min / cmax);
    float d = byoai_fp16_to_fp32(hd), dm = byoai_fp16_to_fp32(hm);
    if (!isfinite(d) || !isfinite(dm)) { /* beyond float16: saturate */
        hd = isfinite(d) ? hd : 0x7BFF;
        hm = isfinite(dm) ? hm : 0x7BFF;
        d = byoai_fp16_to_fp32(hd);
        dm = byoai_fp16_to_fp32(hm);
    }
    *d_out = hd;
    *dmin_out = hm;
    for (int j = 0; j < nsub; j++) {
        const float *xs = x + j * sub, *ws = w + j * sub;
        int s0 = d > 0 ? clampi(round_int(scale[j] / d), 0, cmax) : 0;
        int m0 = dm > 0 ? clampi(round_int(min[j] / dm), 0, cmax) : 0;
        int best_s = s0, best_m = m0;
        float best = INFINITY;
        for (int s = s0 - 1; s <= s0 + 1; s++) {
            if (s < 0 || s > cmax || (s > 0 && !(d > 0))) continue;
            for (int m = m0 - 1; m <= m0 + 1; m++) {
                if (m < 0 || m > cmax || (m > 0 && !(dm > 0))) continue;
                float err = requant_affine(sub, nmax, xs, ws, d * s, dm * m, NULL);
                if (err < best) {
                    best = err;
                    best_s = s;
                    best_m = m;
                }
            }
        }
        sc[j] = (uint8_t)best_s;
        mc[j] = (uint8_t)best_m;
        requant_affine(sub, nmax, xs, ws, d * best_s, dm * best_m, L + j * sub);
    }
}

/*
 * Shared by Q3_K and Q6_K: 16 sub-blocks of 16, levels -nmax..nmax-1,
 * signed integer scales in cmin..cmax (cmin = -cmax-1); the sub-block with
 * the largest scale gets code cmin. Fills sc[], L[] and d.
 */
static void quantize_symmetric_superblock(const float *x, int nmax, int cmax, int8_t *sc, int8_t *L,
                                          byoai_half *d_out) {
    float scale[16], w[QK_K];
    float amax = 0, max = 0;
    for (int j = 0; j < 16; j++) {
        byoai_quant_weights(16, x + 16 * j, w + 16 * j);
        scale[j] = byoai_fit_symmetric(16, nmax, x + 16 * j, w + 16 * j, L + 16 * j);
        if (fabsf(scale[j]) > amax) {
            amax = fabsf(scale[j]);
            max = scale[j];
        }
    }
    const int cmin = -cmax - 1;
    byoai_half hd = max != 0 ? byoai_fp32_to_fp16(max / cmin) : 0;
    float d = byoai_fp16_to_fp32(hd);
    if (!isfinite(d)) {
        hd = (uint16_t)((hd & 0x8000) | 0x7BFF);
        d = byoai_fp16_to_fp32(hd);
    }
    *d_out = hd;
    for (int j = 0; j < 16; j++) {
        const float *xs = x + 16 * j, *ws = w + 16 * j;
        int s0 = d != 0 ? clampi(round_int(scale[j] / d), cmin, cmax) : 0;
        int best_s = s0;
        float best = INFINITY;
        for (int s = s0 - 1; s <= s0 + 1; s++) {
            if (s < cmin || s > cmax || (s != 0 && d == 0)) continue;
            float err = requant_symmetric(16, nmax, xs, ws, d * s, NULL);
            if (err < best) {
                best = err;
                best_s = s;
            }
        }
        sc[j] = (int8_t)best_s;
        requant_symmetric(16, nmax, xs, ws, d * best_s, L + 16 * j);
    }
}

/* ---- Q8_K: activations for the K-quants ---------------------------------- */
/* d = max|x| / 127 (float), q = x * (127 / max|x|) rounded to nearest even,
 * bsums[i] = sum of q[16 i .. 16 i + 15]. The SIMD versions are bit-exact. */
void byoai_ref_quantize_q8_k(const float *src, void *dst, int64_t n) {
    block_q8_K *y = dst;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *x = src + b * QK_K;
        float amax = 0;
        for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
        /* (capped so that a subnormal max|x| cannot make it infinite) */
        float id = amax > 0 ? fminf(127.0f / amax, 3.0e38f) : 0.0f;
        y[b].d = amax / 127.0f;
        for (int j = 0; j < QK_K; j++) y[b].qs[j] = (int8_t)lrintf(x[j] * id);
        for (int j = 0; j < QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[b].qs[16 * j + l];
            y[b].bsums[j] = (int16_t)s;
        }
    }
}

void byoai_ref_dequantize_q8_k(const void *src, float *dst, int64_t n) {
    const block_q8_K *x = src;
    for (int64_t b = 0; b < n / QK_K; b++)
        for (int j = 0; j < QK_K; j++) dst[b * QK_K + j] = x[b].d * x[b].qs[j];
}

/* ---- Q2_K: 2.625 bits per weight ------------------------------------------
 * 16 sub-blocks of 16; scales[j] = scale (low nibble) | min (high nibble).
 * qs[32 h + l] holds elements 128 h + 32 k + l in bits 2k..2k+1 (k = 0..3).
 * value = d * scale * q - dmin * min */
/* the 2-bit fields of a Q2_K / Q3_K qs array, in element order */
static void unpack_2bit(const uint8_t *qs, int8_t *L) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) L[128 * h + 32 * k + l] = (int8_t)((qs[32 * h + l] >> (2 * k)) & 3);
}

void byoai_ref_dequantize_q2_k(const void *src, float *dst, int64_t n) {
    const block_q2_K *x = src;
    int8_t L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, dst += QK_K) {
        const float d = byoai_fp16_to_fp32(x[b].d), dmin = byoai_fp16_to_fp32(x[b].dmin);
        unpack_2bit(x[b].qs, L);
        for (int e = 0; e < QK_K; e++) {
            const uint8_t s = x[b].scales[e / 16];
            const float dl = d * (s & 0x0F), ml = dmin * (s >> 4);
            dst[e] = dl * L[e] - ml;
        }
    }
}

static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(p[0] | (p[32] << 2) | (p[64] << 4) | (p[96] << 6));
        }
}

void byoai_ref_quantize_q2_k(const float *src, void *dst, int64_t n) {
    block_q2_K *y = dst;
    uint8_t L[QK_K], sc[16], mc[16];
    for (int64_t b = 0; b < n / QK_K; b++) {
        quantize_affine_superblock(src + b * QK_K, 16, 16, 3, 15, sc, mc, L, &y[b].d, &y[b].dmin);
        for (int j = 0; j < 16; j++) y[b].scales[j] = (uint8_t)(sc[j] | (mc[j] << 4));
        pack_2bit(L, y[b].qs);
    }
}

void byoai_ref_dot_q2_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    int8_t L[QK_K];
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        unpack_2bit(x[b].qs, L);
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t t = 0;
            for (int l = 0; l < 16; l++) t += L[16 * j + l] * y[b].qs[16 * j + l];
            isum += (x[b].scales[j] & 0x0F) * t;
            msum += (x[b].scales[j] >> 4) * y[b].bsums[j];
        }
        sum += y[b].d * (byoai_fp16_to_fp32(x[b].d) * (float)isum - byoai_fp16_to_fp32(x[b].dmin) * (float)msum);
    }
    *s = sum;
}

/* ---- Q3_K: 3.4375 bits per weight ----------------------------------------
 * 16 sub-blocks of 16 with signed 6-bit scales (byoai_q3k_scales). Low two
 * bits as in Q2_K; the third bit of element e is bit e / 32 of hmask[e % 32],
 * and a clear bit means "minus 4": value = d * scale * (q2 - (hbit ? 0 : 4)) */
/* Q3_K levels q2 - (hbit ? 0 : 4), in element order */
static void q3k_levels(const block_q3_K *x, int8_t *L) {
    unpack_2bit(x->qs, L);
    for (int e = 0; e < QK_K; e++) L[e] = (int8_t)(L[e] - (((x->hmask[e % 32] >> (e / 32)) & 1) ? 0 : 4));
}

void byoai_ref_dequantize_q3_k(const void *src, float *dst, int64_t n) {
    const block_q3_K *x = src;
    int8_t sc[16], L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, dst += QK_K) {
        const float d = byoai_fp16_to_fp32(x[b].d);
        byoai_q3k_scales(x[b].scales, sc);
        q3k_levels(&x[b], L);
        for (int e = 0; e < QK_K; e++) {
            const float dl = d * (sc[e / 16]);
            dst[e] = dl * L[e];
        }
    }
}

void byoai_ref_quantize_q3_k(const float *src, void *dst, int64_t n) {
    block_q3_K *y = dst;
    int8_t L[QK_K], sc[16];
    uint8_t U[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++) {
        quantize_symmetric_superblock(src + b * QK_K, 4, 31, sc, L, &y[b].d);
        memset(y[b].scales, 0, sizeof y[b].scales);
        for (int j = 0; j < 16; j++) {
            const int v = sc[j] + 32;
            if (j < 8) y[b].scales[j] |= (uint8_t)(v & 0x0F);
            else y[b].scales[j - 8] |= (uint8_t)((v & 0x0F) << 4);
            y[b].scales[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
        }
        memset(y[b].hmask, 0, sizeof y[b].hmask);
        for (int e = 0; e < QK_K; e++) {
            const int q = L[e] + 4; /* 0..7 */
            if (q & 4) y[b].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
            U[e] = (uint8_t)(q & 3);
        }
        pack_2bit(U, y[b].qs);
    }
}

void byoai_ref_dot_q3_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    int8_t sc[16], L[QK_K];
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        byoai_q3k_scales(x[b].scales, sc);
        q3k_levels(&x[b], L);
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t t = 0;
            for (int l = 0; l < 16; l++) t += L[16 * j + l] * y[b].qs[16 * j + l];
            isum += sc[j] * t;
        }
        sum += y[b].d * byoai_fp16_to_fp32(x[b].d) * (float)isum;
    }
    *s = sum;
}

/* ---- Q4_K: 4.5 bits per weight -------------------------------------------
 * 8 sub-blocks of 32 with 6-bit scale and min (byoai_k4_scale_min).
 * qs[32 c + l] holds element 64 c + l (low nibble) and 64 c + 32 + l (high).
 * value = d * scale * q - dmin * min */
void byoai_ref_dequantize_q4_k(const void *src, float *dst, int64_t n) {
    const block_q4_K *x = src;
    for (int64_t b = 0; b < n / QK_K; b++, dst += QK_K) {
        const float d = byoai_fp16_to_fp32(x[b].d), dmin = byoai_fp16_to_fp32(x[b].dmin);
        for (int e = 0; e < QK_K; e++) {
            uint8_t sc, m;
            byoai_k4_scale_min(e / 32, x[b].scales, &sc, &m);
            const uint8_t byte = x[b].qs[32 * (e / 64) + e % 32];
            const int q = (e / 32) % 2 ? byte >> 4 : byte & 0x0F;
            const float dl = d * sc, ml = dmin * m;
            dst[e] = dl * q - ml;
        }
    }
}

static void pack_k4_scales(const uint8_t *sc, const uint8_t *mc, uint8_t *q) {
    memset(q, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = sc[j];
            q[j + 4] = mc[j];
        } else {
            q[j + 4] = (uint8_t)((sc[j] & 0x0F) | ((mc[j] & 0x0F) << 4));
            q[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            q[j] |= (uint8_t)((mc[j] >> 4) << 6);
        }
    }
}

void byoai_ref_quantize_q4_k(const float *src, void *dst, int64_t n) {
    block_q4_K *y = dst;
    uint8_t L[QK_K], sc[8], mc[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        quantize_affine_superblock(src + b * QK_K, 8, 32, 15, 63, sc, mc, L, &y[b].d, &y[b].dmin);
        pack_k4_scales(sc, mc, y[b].scales);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[b].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void byoai_ref_dot_q4_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            byoai_k4_scale_min(j, x[b].scales, &sc, &m);
            int32_t t = 0;
            for (int l = 0; l < 32; l++) {
                const uint8_t byte = x[b].qs[32 * (j / 2) + l];
                t += (j % 2 ? byte >> 4 : byte & 0x0F) * y[b].qs[32 * j + l];
            }
            isum += sc * t;
            msum += m * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
        }
        sum += y[b].d * (byoai_fp16_to_fp32(x[b].d) * (float)isum - byoai_fp16_to_fp32(x[b].dmin) * (float)msum);
    }
    *s = sum;
}

/* ---- Q5_K: 5.5 bits per weight -------------------------------------------
 * As Q4_K, plus the fifth bit of element e in bit e / 32 of qh[e % 32]. */
void byoai_ref_dequantize_q5_k(const void *src, float *dst, int64_t n) {
    const block_q5_K *x = src;
    for (int64_t b = 0; b < n / QK_K; b++, dst += QK_K) {
        const float d = byoai_fp16_to_fp32(x[b].d), dmin = byoai_fp16_to_fp32(x[b].dmin);
        for (int e = 0; e < QK_K; e++) {
            uint8_t sc, m;
            byoai_k4_scale_min(e / 32, x[b].scales, &sc, &m);
            const uint8_t byte = x[b].qs[32 * (e / 64) + e % 32];
            const int q = ((e / 32) % 2 ? byte >> 4 : byte & 0x0F) | (((x[b].qh[e % 32] >> (e / 32)) & 1) << 4);
            const float dl = d * sc, ml = dmin * m;
            dst[e] = dl * q - ml;
        }
    }
}

void byoai_ref_quantize_q5_k(const float *src, void *dst, int64_t n) {
    block_q5_K *y = dst;
    uint8_t L[QK_K], sc[8], mc[8];
    for (int64_t b = 0; b < n / QK_K; b++) {
        quantize_affine_superblock(src + b * QK_K, 8, 32, 31, 63, sc, mc, L, &y[b].d, &y[b].dmin);
        pack_k4_scales(sc, mc, y[b].scales);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int e = 0; e < QK_K; e++)
            if (L[e] & 16) y[b].qh[e % 32] |= (uint8_t)(1 << (e / 32));
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[b].qs[32 * c + l] = (uint8_t)((L[64 * c + l] & 0x0F) | ((L[64 * c + 32 + l] & 0x0F) << 4));
    }
}

void byoai_ref_dot_q5_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            byoai_k4_scale_min(j, x[b].scales, &sc, &m);
            int32_t t = 0;
            for (int l = 0; l < 32; l++) {
                const uint8_t byte = x[b].qs[32 * (j / 2) + l];
                const int q = (j % 2 ? byte >> 4 : byte & 0x0F) | (((x[b].qh[l] >> j) & 1) << 4);
                t += q * y[b].qs[32 * j + l];
            }
            isum += sc * t;
            msum += m * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
        }
        sum += y[b].d * (byoai_fp16_to_fp32(x[b].d) * (float)isum - byoai_fp16_to_fp32(x[b].dmin) * (float)msum);
    }
    *s = sum;
}

/* ---- Q6_K: 6.5625 bits per weight ----------------------------------------
 * 16 sub-blocks of 16 with int8 scales. In each half h (128 elements),
 * element 128 h + 32 k + l (k = 0..3) has its low nibble in
 * ql[64 h + 32 (k % 2) + l] (low nibble for k < 2, high for k >= 2) and
 * its top two bits in bits 2k..2k+1 of qh[32 h + l].
 * value = d * scale * (q - 32) */
static void q6k_levels(const block_q6_K *x, int8_t *L) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                const uint8_t lo = x->ql[64 * h + 32 * (k % 2) + l];
                const int nib = k < 2 ? lo & 0x0F : lo >> 4;
                L[128 * h + 32 * k + l] = (int8_t)((nib | (((x->qh[32 * h + l] >> (2 * k)) & 3) << 4)) - 32);
            }
}

void byoai_ref_dequantize_q6_k(const void *src, float *dst, int64_t n) {
    const block_q6_K *x = src;
    int8_t L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, dst += QK_K) {
        const float d = byoai_fp16_to_fp32(x[b].d);
        q6k_levels(&x[b], L);
        for (int e = 0; e < QK_K; e++) dst[e] = d * x[b].scales[e / 16] * L[e];
    }
}

void byoai_ref_quantize_q6_k(const float *src, void *dst, int64_t n) {
    block_q6_K *y = dst;
    int8_t L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++) {
        quantize_symmetric_superblock(src + b * QK_K, 32, 127, y[b].scales, L, &y[b].d);
        memset(y[b].ql, 0, sizeof y[b].ql);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int e = 0; e < QK_K; e++) {
            const int q = L[e] + 32; /* 0..63 */
            const int h = e / 128, k = (e / 32) % 4, l = e % 32;
            y[b].ql[64 * h + 32 * (k % 2) + l] |= (uint8_t)((q & 0x0F) << (k < 2 ? 0 : 4));
            y[b].qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
        }
    }
}

void byoai_ref_dot_q6_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    int8_t L[QK_K];
    float sum = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        q6k_levels(&x[b], L);
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t t = 0;
            for (int l = 0; l < 16; l++) t += L[16 * j + l] * y[b].qs[16 * j + l];
            isum += x[b].scales[j] * t;
        }
        sum += y[b].d * byoai_fp16_to_fp32(x[b].d) * (float)isum;
    }
    *s = sum;
}
