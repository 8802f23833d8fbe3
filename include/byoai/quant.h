/*
 * byoai/quant.h: tensor element types, their block layouts, conversion,
 * quantization and the dot-product kernels that matrix products use.
 *
 * Contract
 * - Block layouts are byte-exact with GGUF / ggml (see src/infer/quant.h
 *   for the structs). Every type has a scalar reference implementation of
 *   dequantize, quantize and dot product; SIMD kernels must agree with it
 *   (tests check within 1e-5 relative for float paths, exactly for integer
 *   dot products up to float summation order).
 * - A weight row of type T is multiplied with an activation row that was
 *   first converted to T's "activation type" (F32 for float weights, Q8_0
 *   for the legacy 32-element quants, Q8_K for the K-quants), as these
 *   formats were designed to be used.
 * - The kernel table is chosen once at start-up from the CPU's features
 *   (one binary for every x86-64); tests can ask for a specific level.
 */
#ifndef BYOAI_QUANT_H
#define BYOAI_QUANT_H

#include "byoai/base.h"
#include "byoai/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- scalar conversions ----------------------------------------------- */
float byoai_fp16_to_fp32(uint16_t h);
uint16_t byoai_fp32_to_fp16(float f);  /* round to nearest even */
float byoai_bf16_to_fp32(uint16_t h);
uint16_t byoai_fp32_to_bf16(float f);  /* round to nearest even, NaN kept */

/* ---- per-type operations (scalar reference) ----------------------------- */
/* True when weights of type t can be used in matrix products. */
bool byoai_type_can_compute(byoai_type t);
/* True when byoai_quantize_row can produce type t. */
bool byoai_type_can_quantize(byoai_type t);
/* Type that activations are converted to before a dot with weights of t. */
byoai_type byoai_type_activation(byoai_type t);

/* Dequantize n elements (a multiple of the block size) to F32. Returns
 * BYOAI_EUNSUPPORTED for types without a dequantizer. */
int byoai_dequantize_row(byoai_type t, const void *src, float *dst, int64_t n);
/* Quantize n floats to type t (reference quantizer, deterministic). */
int byoai_quantize_row(byoai_type t, const float *src, void *dst, int64_t n);

/* ---- kernels ------------------------------------------------------------ */
typedef enum byoai_simd_level {
    BYOAI_SIMD_SCALAR = 0,
    BYOAI_SIMD_AVX2 = 1,   /* AVX2 + FMA + F16C */
    BYOAI_SIMD_AVX512 = 2, /* AVX-512 F/BW/VL/DQ + VNNI */
    BYOAI_SIMD_NEON = 3,   /* ARMv8 NEON with dotprod */
} byoai_simd_level;

/* dot of one weight row x (type t, n elements) with one activation row y
 * (type byoai_type_activation(t)) */
typedef void (*byoai_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);
/* convert n f32 activations to the activation type */
typedef void (*byoai_quantize_act_fn)(const float *x, void *y, int64_t n);

typedef struct byoai_kernels {
    byoai_simd_level level;
    const char *name;
    byoai_vec_dot_fn vec_dot[BYOAI_TYPE_COUNT];
    byoai_quantize_act_fn quantize_act[BYOAI_TYPE_COUNT]; /* indexed by activation type */
} byoai_kernels;

/* The best kernels this CPU runs (chosen once; $BYOAI_SIMD=scalar|avx2|avx512
 * may lower the level). */
const byoai_kernels *byoai_kernels_best(void);
/* Kernels of a given level, or NULL when this CPU or build lacks it. */
const byoai_kernels *byoai_kernels_get(byoai_simd_level level);
/* Name of the CPU features this build detects, e.g. "avx2 fma f16c avx512f". */
const char *byoai_cpu_features(void);

/* ---- whole-model quantization --------------------------------------------- */
typedef struct byoai_quantize_params {
    /* A type name ("Q8_0", "F16", ...) or a mix ("Q4_K_M", "Q5_K_M",
     * "Q4_K_S", "Q3_K_M", ...), with llama.cpp's choice of which tensors get
     * more bits. See byoai_quantize_mix_names(). */
    const char *target;
    int n_threads;          /* 0: all cores */
    bool allow_requantize;  /* accept already-quantized input tensors */
    /* called after each tensor: index, count, its name and chosen type */
    void (*progress)(void *user, uint64_t done, uint64_t total, const char *tensor, const char *type);
    void *user;
} byoai_quantize_params;

/* Quantize a GGUF model file; the output (written atomically) is readable
 * by byoai and llama.cpp. */
int byoai_quantize_file(const char *in_path, const char *out_path, const byoai_quantize_params *p, byoai_error *err);
/* Space-separated names byoai_quantize_file accepts as target. */
const char *byoai_quantize_mix_names(void);

#ifdef __cplusplus
}
#endif
#endif
