/* Storage traits of every ggml tensor type a GGUF file may contain. */
#include "byoai/gguf.h"

#include <strings.h>

static const byoai_type_traits TRAITS[BYOAI_TYPE_COUNT] = {
    [BYOAI_TYPE_F32] = {"F32", 1, 4},
    [BYOAI_TYPE_F16] = {"F16", 1, 2},
    [BYOAI_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [BYOAI_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [BYOAI_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [BYOAI_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [BYOAI_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [BYOAI_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [BYOAI_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [BYOAI_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [BYOAI_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [BYOAI_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [BYOAI_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [BYOAI_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [BYOAI_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [BYOAI_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [BYOAI_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [BYOAI_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [BYOAI_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [BYOAI_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [BYOAI_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [BYOAI_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [BYOAI_TYPE_I8] = {"I8", 1, 1},
    [BYOAI_TYPE_I16] = {"I16", 1, 2},
    [BYOAI_TYPE_I32] = {"I32", 1, 4},
    [BYOAI_TYPE_I64] = {"I64", 1, 8},
    [BYOAI_TYPE_F64] = {"F64", 1, 8},
    [BYOAI_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [BYOAI_TYPE_BF16] = {"BF16", 1, 2},
    [BYOAI_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [BYOAI_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [BYOAI_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

const byoai_type_traits *byoai_type_get(uint32_t t) {
    if (t >= BYOAI_TYPE_COUNT || !TRAITS[t].name) return NULL;
    return &TRAITS[t];
}

const char *byoai_type_name(uint32_t t) {
    const byoai_type_traits *tr = byoai_type_get(t);
    return tr ? tr->name : "unknown";
}

int byoai_type_from_name(const char *name) {
    for (int t = 0; t < BYOAI_TYPE_COUNT; t++)
        if (TRAITS[t].name && !strcasecmp(TRAITS[t].name, name)) return t;
    return -1;
}

uint64_t byoai_type_row_size(uint32_t t, uint64_t n) {
    const byoai_type_traits *tr = byoai_type_get(t);
    if (!tr || n % tr->block_size) return 0;
    uint64_t out;
    if (byoai_mul_overflow(n / tr->block_size, tr->type_size, &out)) return 0;
    return out;
}

uint32_t byoai_type_alignment(uint32_t t) {
    const byoai_type_traits *tr = byoai_type_get(t);
    if (!tr) return 1;
    uint32_t a = tr->type_size & (~tr->type_size + 1); /* lowest set bit */
    return a > 8 ? 8 : a ? a : 1;
}
