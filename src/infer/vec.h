/*
 * Vector operations of the forward pass besides matrix products: attention
 * over the KV cache and the SwiGLU gate. Scalar reference in vec.c, SIMD
 * versions in src/infer/simd/<isa>_vec.c, chosen at run time like the
 * other kernels (tests compare every level with the reference).
 */
#ifndef BYOAI_INFER_VEC_H
#define BYOAI_INFER_VEC_H

#include <stddef.h>
#include <stdint.h>

typedef struct byoai_vec_ops {
    const char *name;
    /* Attention of G query heads sharing one KV head: for each g,
     * out[g] = softmax(scale * q[g] . K^T) . V over positions 0..n-1.
     * q, out: G rows of hd floats (stride hd); k, v: n rows of hd floats,
     * kv_stride floats apart; scores: scratch of G * n floats. n >= 1. */
    void (*attend)(const float *q, uint32_t G, const float *k, const float *v, size_t kv_stride, uint32_t n,
                   uint32_t hd, float scale, float *scores, float *out);
    /* h[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] */
    void (*silu_mul)(float *h, const float *g, const float *u, size_t n);
    /* read n bytes (a multiple of 256, p 64-aligned) as fast as this CPU
     * can, for the memory bandwidth probe; returns a checksum */
    uint64_t (*read_sum)(const void *p, size_t n);
} byoai_vec_ops;

/* The scalar attention with the scores soft-capped (cap * tanh(s / cap))
 * before the softmax, for models that need it (Gemma 2). */
void byoai_attend_capped(const float *q, uint32_t G, const float *k, const float *v, size_t kv_stride, uint32_t n,
                         uint32_t hd, float scale, float cap, float *scores, float *out);

/* the best this CPU runs ($BYOAI_SIMD caps it as for the other kernels) */
const byoai_vec_ops *byoai_vec_ops_best(void);
/* "scalar", "avx2", "avx512"; NULL when this CPU cannot run it */
const byoai_vec_ops *byoai_vec_ops_get(const char *name);

void byoai_vec_init_avx2(byoai_vec_ops *o);
void byoai_vec_init_avx512(byoai_vec_ops *o);

#endif
