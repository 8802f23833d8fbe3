/*
 * Block layouts of the quantized types, byte-exact with GGUF / ggml, and the
 * internal per-type operation table. Public API: include/byoai/quant.h.
 */
#ifndef BYOAI_INFER_QUANT_H
#define BYOAI_INFER_QUANT_H

#include <assert.h>

#include "byoai/quant.h"

typedef uint16_t byoai_half;

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

/* 32 weights: (q - 8) * d, q a nibble; low nibbles are elements 0..15,
 * high nibbles 16..31 */
typedef struct { byoai_half d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
/* 32 weights: q * d + m */
typedef struct { byoai_half d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
/* 32 weights: ((q | hbit << 4) - 16) * d; bit j of qh is the high bit of element j */
typedef struct { byoai_half d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
typedef struct { byoai_half d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
/* 32 weights: q * d */
typedef struct { byoai_half d; int8_t qs[QK8_0]; } block_q8_0;
/* activations for the *_1 types: s = d * sum(qs) */
typedef struct { byoai_half d, s; int8_t qs[QK8_1]; } block_q8_1;

/* K-quants: super-blocks of 256 with sub-block scales */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; byoai_half d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; byoai_half d; } block_q3_K;
typedef struct { byoai_half d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { byoai_half d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; byoai_half d; } block_q6_K;
/* activations for the K-quants: bsums[i] = sum of qs[16*i .. 16*i+15] */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;

static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");
static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");
static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
static_assert(sizeof(block_q8_1) == 36, "q8_1 layout");
static_assert(sizeof(block_q2_K) == 84, "q2_K layout");
static_assert(sizeof(block_q3_K) == 110, "q3_K layout");
static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
static_assert(sizeof(block_q6_K) == 210, "q6_K layout");
static_assert(sizeof(block_q8_K) == 292, "q8_K layout");

/* Operations of one type: reference (scalar) implementations. */
typedef struct byoai_type_ops {
    void (*dequantize)(const void *src, float *dst, int64_t n);
    void (*quantize)(const float *src, void *dst, int64_t n);
    byoai_vec_dot_fn vec_dot;   /* scalar reference dot with the activation type */
    byoai_type act_type;        /* activation type for vec_dot */
} byoai_type_ops;

/* ops of type t (NULL members when not supported) */
const byoai_type_ops *byoai_type_ops_get(byoai_type t);

/* fast inline conversions used by kernels */
static inline float byoai_half_to_float(byoai_half h) { return byoai_fp16_to_fp32(h); }

/* ---- K-quant scale unpacking, shared by the reference and SIMD code ------ */

/* Q4_K / Q5_K: 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min,
 * packed in 12 bytes. Bytes 0..3 hold scales 0..3 in their low 6 bits,
 * bytes 4..7 hold mins 0..3 likewise; bytes 8..11 hold the low nibbles of
 * scale 4+i (low) and min 4+i (high); the top 2 bits of bytes 0..3 are the
 * high bits of scales 4..7, those of bytes 4..7 the high bits of mins 4..7. */
static inline void byoai_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q3_K: 16 signed 6-bit scales (stored + 32) in 12 bytes. Scale j's low
 * nibble is byte j (j < 8, low nibble) or byte j-8 (high nibble); its top
 * two bits are bits 2*(j/4) of byte 8 + j%4. Returns scales in -32..31. */
static inline void byoai_q3k_scales(const uint8_t *q, int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? q[j] & 0x0F : q[j - 8] >> 4;
        int hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* Per-family reference implementations (quant_*.c) */
void byoai_ref_dequantize_f32(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_f32(const float *src, void *dst, int64_t n);
void byoai_ref_dot_f32(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_f16(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_f16(const float *src, void *dst, int64_t n);
void byoai_ref_dot_f16(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_bf16(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_bf16(const float *src, void *dst, int64_t n);
void byoai_ref_dot_bf16(int64_t n, float *s, const void *x, const void *y);

void byoai_ref_dequantize_q4_0(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q4_0(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q4_0(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q8_0(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q8_0(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q8_0(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q4_1(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q4_1(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q4_1(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q5_0(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q5_0(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q5_0(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q5_1(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q5_1(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q5_1(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q8_1(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q8_1(const float *src, void *dst, int64_t n);

void byoai_ref_dequantize_q2_k(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q2_k(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q2_k(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q3_k(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q3_k(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q3_k(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q4_k(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q4_k(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q4_k(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q5_k(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q5_k(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q5_k(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q6_k(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q6_k(const float *src, void *dst, int64_t n);
void byoai_ref_dot_q6_k(int64_t n, float *s, const void *x, const void *y);
void byoai_ref_dequantize_q8_k(const void *src, float *dst, int64_t n);
void byoai_ref_quantize_q8_k(const float *src, void *dst, int64_t n);

/* Quantizer search helpers shared by quant_legacy.c and quant_kquants.c
 * (quant_kquants.c). Both minimise sum_i w[i] * (fit_i - x[i])^2.
 * byoai_fit_affine: x ~ scale * L + offset, L in 0..nmax; returns scale
 * (>= 0) and *offset; when !free_offset the offset is kept <= 0 (K-quant
 * mins are unsigned). byoai_fit_symmetric: x ~ scale * L, L in
 * -nmax..nmax-1; returns scale (may be negative). */
float byoai_fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *offset, bool free_offset);
float byoai_fit_symmetric(int n, int nmax, const float *x, const float *w, int8_t *L);
/* the error weights all quantizers use: w[i] = |x[i]| + rms(x[0..n)) */
void byoai_quant_weights(int n, const float *x, float *w);

/* SIMD kernel tables, filled by src/infer/simd/<level>.c */
void byoai_kernels_init_avx2(byoai_kernels *k);
void byoai_kernels_init_avx512(byoai_kernels *k);
void byoai_kernels_init_neon(byoai_kernels *k);

#endif
