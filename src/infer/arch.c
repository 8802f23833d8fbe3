/*
 * Supported architectures as rows of data. Adding a llama-like model means
 * adding a row here, not another forward pass. Optional pieces (biases,
 * per-head q/k norms, rope frequency factors) are picked up from the file
 * whenever present, for every row.
 */
#include <string.h>

#include "infer/model_internal.h"

static const byoai_arch ARCHS[] = {
    /* name      rope             activation      fused_qkv fused_gate_up embd_scale swa_alternate */
    {"llama",   BYOAI_ROPE_NORM, BYOAI_ACT_SILU, false, false, false, false},
    {"mistral", BYOAI_ROPE_NORM, BYOAI_ACT_SILU, false, false, false, false},
    {"qwen2",   BYOAI_ROPE_NEOX, BYOAI_ACT_SILU, false, false, false, false},
    {"qwen3",   BYOAI_ROPE_NEOX, BYOAI_ACT_SILU, false, false, false, false},
    {"phi3",    BYOAI_ROPE_NEOX, BYOAI_ACT_SILU, true,  true,  false, false},
    {"gemma",   BYOAI_ROPE_NEOX, BYOAI_ACT_GELU, false, false, true,  false},
    /* Gemma 2 adds post-block norms, soft-capping and alternating sliding
     * windows, all read from the file (model.c) */
    {"gemma2",  BYOAI_ROPE_NEOX, BYOAI_ACT_GELU, false, false, true,  true},
};

const byoai_arch *byoai_arch_find(const char *name) {
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (!strcmp(ARCHS[i].name, name)) return &ARCHS[i];
    return NULL;
}

const char *byoai_arch_names(void) { return "llama, mistral, qwen2, qwen3, phi3, gemma, gemma2"; }

bool byoai_arch_supported(const char *name) { return byoai_arch_find(name) != NULL; }
