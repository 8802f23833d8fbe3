/*
 * The per-type operation table, the public quant API, and the choice of
 * SIMD kernels for this CPU.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/cpu.h"
#include "infer/quant.h"

static const byoai_type_ops OPS[BYOAI_TYPE_COUNT] = {
    [BYOAI_TYPE_F32] = {byoai_ref_dequantize_f32, byoai_ref_quantize_f32, byoai_ref_dot_f32, BYOAI_TYPE_F32},
    [BYOAI_TYPE_F16] = {byoai_ref_dequantize_f16, byoai_ref_quantize_f16, byoai_ref_dot_f16, BYOAI_TYPE_F32},
    [BYOAI_TYPE_BF16] = {byoai_ref_dequantize_bf16, byoai_ref_quantize_bf16, byoai_ref_dot_bf16, BYOAI_TYPE_F32},
    [BYOAI_TYPE_Q4_0] = {byoai_ref_dequantize_q4_0, byoai_ref_quantize_q4_0, byoai_ref_dot_q4_0, BYOAI_TYPE_Q8_0},
    [BYOAI_TYPE_Q4_1] = {byoai_ref_dequantize_q4_1, byoai_ref_quantize_q4_1, byoai_ref_dot_q4_1, BYOAI_TYPE_Q8_0},
    [BYOAI_TYPE_Q5_0] = {byoai_ref_dequantize_q5_0, byoai_ref_quantize_q5_0, byoai_ref_dot_q5_0, BYOAI_TYPE_Q8_0},
    [BYOAI_TYPE_Q5_1] = {byoai_ref_dequantize_q5_1, byoai_ref_quantize_q5_1, byoai_ref_dot_q5_1, BYOAI_TYPE_Q8_0},
    [BYOAI_TYPE_Q8_0] = {byoai_ref_dequantize_q8_0, byoai_ref_quantize_q8_0, byoai_ref_dot_q8_0, BYOAI_TYPE_Q8_0},
    /* activation-only types: quantize/dequantize, no dot of their own */
    [BYOAI_TYPE_Q8_1] = {byoai_ref_dequantize_q8_1, byoai_ref_quantize_q8_1, NULL, BYOAI_TYPE_Q8_1},
    [BYOAI_TYPE_Q8_K] = {byoai_ref_dequantize_q8_k, byoai_ref_quantize_q8_k, NULL, BYOAI_TYPE_Q8_K},
    [BYOAI_TYPE_Q2_K] = {byoai_ref_dequantize_q2_k, byoai_ref_quantize_q2_k, byoai_ref_dot_q2_k, BYOAI_TYPE_Q8_K},
    [BYOAI_TYPE_Q3_K] = {byoai_ref_dequantize_q3_k, byoai_ref_quantize_q3_k, byoai_ref_dot_q3_k, BYOAI_TYPE_Q8_K},
    [BYOAI_TYPE_Q4_K] = {byoai_ref_dequantize_q4_k, byoai_ref_quantize_q4_k, byoai_ref_dot_q4_k, BYOAI_TYPE_Q8_K},
    [BYOAI_TYPE_Q5_K] = {byoai_ref_dequantize_q5_k, byoai_ref_quantize_q5_k, byoai_ref_dot_q5_k, BYOAI_TYPE_Q8_K},
    [BYOAI_TYPE_Q6_K] = {byoai_ref_dequantize_q6_k, byoai_ref_quantize_q6_k, byoai_ref_dot_q6_k, BYOAI_TYPE_Q8_K},
};

const byoai_type_ops *byoai_type_ops_get(byoai_type t) {
    if ((unsigned)t >= BYOAI_TYPE_COUNT) return NULL;
    return OPS[t].dequantize ? &OPS[t] : NULL;
}

bool byoai_type_can_compute(byoai_type t) {
    const byoai_type_ops *o = byoai_type_ops_get(t);
    return o && o->vec_dot;
}

bool byoai_type_can_quantize(byoai_type t) {
    const byoai_type_ops *o = byoai_type_ops_get(t);
    return o && o->quantize;
}

byoai_type byoai_type_activation(byoai_type t) {
    const byoai_type_ops *o = byoai_type_ops_get(t);
    return o ? o->act_type : BYOAI_TYPE_F32;
}

int byoai_dequantize_row(byoai_type t, const void *src, float *dst, int64_t n) {
    const byoai_type_ops *o = byoai_type_ops_get(t);
    const byoai_type_traits *tr = byoai_type_get(t);
    if (!o || !o->dequantize) return BYOAI_EUNSUPPORTED;
    if (n < 0 || n % tr->block_size) return BYOAI_EINVAL;
    o->dequantize(src, dst, n);
    return 0;
}

int byoai_quantize_row(byoai_type t, const float *src, void *dst, int64_t n) {
    const byoai_type_ops *o = byoai_type_ops_get(t);
    const byoai_type_traits *tr = byoai_type_get(t);
    if (!o || !o->quantize) return BYOAI_EUNSUPPORTED;
    if (n < 0 || n % tr->block_size) return BYOAI_EINVAL;
    o->quantize(src, dst, n);
    return 0;
}

/* ---- kernel tables ------------------------------------------------------- */
static byoai_kernels g_tables[4];
static bool g_have[4];
static const byoai_kernels *g_best;
static char g_features[256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fill_scalar(byoai_kernels *k) {
    memset(k, 0, sizeof *k);
    k->level = BYOAI_SIMD_SCALAR;
    k->name = "scalar";
    for (int t = 0; t < BYOAI_TYPE_COUNT; t++) {
        if (OPS[t].vec_dot) k->vec_dot[t] = OPS[t].vec_dot;
        if (OPS[t].quantize) k->quantize_act[t] = OPS[t].quantize;
    }
}

static void add_feature(const char *name) {
    size_t l = strlen(g_features);
    snprintf(g_features + l, sizeof g_features - l, "%s%s", l ? " " : "", name);
}

static void init_tables(void) {
    fill_scalar(&g_tables[BYOAI_SIMD_SCALAR]);
    g_have[BYOAI_SIMD_SCALAR] = true;
    g_best = &g_tables[BYOAI_SIMD_SCALAR];
#if defined(__x86_64__)
    byoai_cpu cpu;
    byoai_cpu_detect(&cpu);
    bool avx2 = cpu.avx2 && cpu.fma && cpu.f16c && cpu.bmi2;
    bool avx512 = avx2 && cpu.avx512f && cpu.avx512bw && cpu.avx512vl && cpu.avx512dq && cpu.avx512vnni;
    const struct { bool on; const char *name; } feats[] = {
        {cpu.avx, "avx"},          {cpu.avx2, "avx2"},         {cpu.fma, "fma"},           {cpu.f16c, "f16c"},
        {cpu.avx512f, "avx512f"},  {cpu.avx512bw, "avx512bw"}, {cpu.avx512vl, "avx512vl"}, {cpu.avx512vnni, "avx512vnni"},
        {cpu.avx_vnni, "avx_vnni"}, {cpu.amx_int8, "amx_int8"}, {cpu.amx_bf16, "amx_bf16"},
    };
    for (size_t i = 0; i < sizeof feats / sizeof feats[0]; i++)
        if (feats[i].on) add_feature(feats[i].name);
    const char *cap = getenv("BYOAI_SIMD");
    int max = 99;
    if (cap && !strcmp(cap, "scalar")) max = BYOAI_SIMD_SCALAR;
    else if (cap && !strcmp(cap, "avx2")) max = BYOAI_SIMD_AVX2;
    if (avx2) {
        byoai_kernels *k = &g_tables[BYOAI_SIMD_AVX2];
        fill_scalar(k);
        byoai_kernels_init_avx2(k);
        g_have[BYOAI_SIMD_AVX2] = true;
        if (max >= BYOAI_SIMD_AVX2) g_best = k;
    }
    if (avx512) {
        byoai_kernels *k = &g_tables[BYOAI_SIMD_AVX512];
        fill_scalar(k);
        byoai_kernels_init_avx2(k);
        byoai_kernels_init_avx512(k);
        g_have[BYOAI_SIMD_AVX512] = true;
        if (max >= BYOAI_SIMD_AVX512) g_best = k;
    }
#elif defined(__aarch64__)
    add_feature("neon");
    byoai_kernels *k = &g_tables[BYOAI_SIMD_NEON];
    fill_scalar(k);
    byoai_kernels_init_neon(k);
    g_have[BYOAI_SIMD_NEON] = true;
    const char *cap = getenv("BYOAI_SIMD");
    if (!(cap && !strcmp(cap, "scalar"))) g_best = k;
#endif
}

const byoai_kernels *byoai_kernels_best(void) {
    pthread_once(&g_once, init_tables);
    return g_best;
}

const byoai_kernels *byoai_kernels_get(byoai_simd_level level) {
    pthread_once(&g_once, init_tables);
    if ((unsigned)level > 3 || !g_have[level]) return NULL;
    return &g_tables[level];
}

const char *byoai_cpu_features(void) {
    pthread_once(&g_once, init_tables);
    return g_features;
}
