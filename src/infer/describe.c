/*
 * byoai_model_describe: what a GGUF holds and what it needs to run, from
 * metadata and the tensor table alone. Used by `byoai info`, the registry's
 * checks on published models and the server's model listing.
 */
#include <stdio.h>
#include <string.h>

#include "infer/model_internal.h"

static void copy_str(const byoai_gguf *g, const char *key, char *dst, size_t cap) {
    byoai_gguf_str s;
    dst[0] = '\0';
    if (byoai_gguf_get_str(g, key, &s, NULL) != 0) return;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
    /* keep it printable: metadata is untrusted */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)dst[i] < 0x20) dst[i] = '?';
}

static uint32_t arch_u32(const byoai_gguf *g, const char *arch, const char *suffix, uint32_t def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    return byoai_gguf_get_u32(g, key, &v, NULL) == 0 ? v : def;
}

/* llama.cpp's llama_ftype numbers (general.file_type): the name users know
 * ("Q4_K_M") and the tensor type most of the mix's weights have ("Q4_K"). */
static const struct {
    uint32_t ftype;
    const char *name, *base;
} FTYPES[] = {
    {0, "F32", "F32"},         {1, "F16", "F16"},         {2, "Q4_0", "Q4_0"},       {3, "Q4_1", "Q4_1"},
    {4, "Q4_1_SOME_F16", "Q4_1"}, {7, "Q8_0", "Q8_0"},    {8, "Q5_0", "Q5_0"},       {9, "Q5_1", "Q5_1"},
    {10, "Q2_K", "Q2_K"},      {11, "Q3_K_S", "Q3_K"},    {12, "Q3_K_M", "Q3_K"},    {13, "Q3_K_L", "Q3_K"},
    {14, "Q4_K_S", "Q4_K"},    {15, "Q4_K_M", "Q4_K"},    {16, "Q5_K_S", "Q5_K"},    {17, "Q5_K_M", "Q5_K"},
    {18, "Q6_K", "Q6_K"},      {19, "IQ2_XXS", "IQ2_XXS"}, {20, "IQ2_XS", "IQ2_XS"}, {21, "Q2_K_S", "Q2_K"},
    {22, "IQ3_XS", "IQ3_S"},   {23, "IQ3_XXS", "IQ3_XXS"}, {24, "IQ1_S", "IQ1_S"},   {25, "IQ4_NL", "IQ4_NL"},
    {26, "IQ3_S", "IQ3_S"},    {27, "IQ3_M", "IQ3_S"},    {28, "IQ2_S", "IQ2_S"},    {29, "IQ2_M", "IQ2_S"},
    {30, "IQ4_XS", "IQ4_XS"},  {31, "IQ1_M", "IQ1_M"},    {32, "BF16", "BF16"},      {36, "TQ1_0", "TQ1_0"},
    {37, "TQ2_0", "TQ2_0"},   {38, "MXFP4_MOE", "MXFP4"},
};

/* llama.cpp flags a file type it guessed rather than read */
#define FTYPE_GUESSED 1024u

static bool is_float(int t) { return t == BYOAI_TYPE_F32 || t == BYOAI_TYPE_F16 || t == BYOAI_TYPE_BF16; }

/* general.file_type's name when the tensors agree (metadata is untrusted: a
 * tool may have converted the tensors and kept the old key), else NULL. A
 * float file type must be the dominant type; a quantized one needs some
 * quantized weights (small or oddly shaped rows fall back to other
 * quantized types, as llama.cpp's mixes do). */
static const char *file_type_from_metadata(const byoai_gguf *g, const uint64_t by2d[BYOAI_TYPE_COUNT], int dominant) {
    uint32_t ft;
    if (byoai_gguf_get_u32(g, "general.file_type", &ft, NULL) != 0) return NULL;
    ft &= ~FTYPE_GUESSED;
    for (size_t i = 0; i < sizeof FTYPES / sizeof FTYPES[0]; i++) {
        if (FTYPES[i].ftype != ft) continue;
        int base = byoai_type_from_name(FTYPES[i].base);
        if (is_float(base)) return base == dominant ? FTYPES[i].name : NULL;
        for (int t = 0; t < BYOAI_TYPE_COUNT; t++)
            if (by2d[t] && !is_float(t)) return FTYPES[i].name;
        return NULL;
    }
    return NULL;
}

/* Memory estimates from untrusted metadata: saturate instead of wrapping,
 * so a file with absurd sizes reads as needing "too much", never "little" */
static uint64_t sat_mul(uint64_t a, uint64_t b) {
    uint64_t r;
    return byoai_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}
static uint64_t sat_add(uint64_t a, uint64_t b) {
    uint64_t r;
    return byoai_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

int byoai_model_describe(const byoai_gguf *g, uint32_t n_ctx, byoai_model_info *o, byoai_error *err) {
    memset(o, 0, sizeof *o);
    copy_str(g, "general.architecture", o->arch, sizeof o->arch);
    if (!o->arch[0]) return byoai_error_set(err, BYOAI_EFORMAT, "metadata 'general.architecture' is missing");
    o->arch_supported = byoai_arch_supported(o->arch);
    copy_str(g, "general.name", o->name, sizeof o->name);
    copy_str(g, "tokenizer.ggml.model", o->tokenizer, sizeof o->tokenizer);
    const byoai_gguf_value *toks;
    if (byoai_gguf_get_arr(g, "tokenizer.ggml.tokens", BYOAI_GGUF_STRING, &toks, NULL) == 0)
        o->n_vocab = toks->v.arr.count > UINT32_MAX ? UINT32_MAX : (uint32_t)toks->v.arr.count;
    o->has_chat_template = byoai_gguf_find(g, "tokenizer.chat_template") != NULL;
    o->n_ctx_train = arch_u32(g, o->arch, "context_length", 0);
    o->n_layer = arch_u32(g, o->arch, "block_count", 0);
    o->n_embd = arch_u32(g, o->arch, "embedding_length", 0);
    o->n_ff = arch_u32(g, o->arch, "feed_forward_length", 0);
    o->n_head = arch_u32(g, o->arch, "attention.head_count", 0);
    o->n_head_kv = arch_u32(g, o->arch, "attention.head_count_kv", o->n_head);
    o->head_dim = arch_u32(g, o->arch, "attention.key_length", o->n_head ? o->n_embd / o->n_head : 0);
    o->file_bytes = g->file_size;
    uint64_t best = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const byoai_gguf_tensor *t = &g->tensors[i];
        o->n_params += t->n_elements;
        o->weight_bytes += t->size;
        o->type_count[t->type]++;
        o->type_bytes[t->type] += t->size;
    }
    uint64_t by2d[BYOAI_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].n_dims >= 2) by2d[g->tensors[i].type] += g->tensors[i].size;
    /* the file type: general.file_type (llama.cpp's mix name, "Q4_K_M")
     * when the tensors agree, else the type holding most bytes among the
     * 2-D weights */
    o->file_type = "none";
    int dominant = -1;
    for (int t = 0; t < BYOAI_TYPE_COUNT; t++)
        if (by2d[t] > best) { best = by2d[t]; dominant = t; o->file_type = byoai_type_name((uint32_t)t); }
    const char *named = best ? file_type_from_metadata(g, by2d, dominant) : NULL;
    if (named) o->file_type = named;
    if (n_ctx == 0) n_ctx = o->n_ctx_train && o->n_ctx_train < 4096 ? o->n_ctx_train : 4096;
    o->mem_ctx = n_ctx;
    o->mem_kv_bytes =
        sat_mul(sat_mul(sat_mul(sat_mul(o->n_layer, n_ctx), o->n_head_kv), o->head_dim), 2 * sizeof(float));
    /* scratch for a 512-token batch plus one row of logits (see context.c) */
    uint64_t nb = 512, qd = (uint64_t)o->n_head * o->head_dim, kvd = (uint64_t)o->n_head_kv * o->head_dim;
    uint64_t widest = o->n_embd > qd ? o->n_embd : qd;
    uint64_t per_row = sat_add(sat_add(sat_add(o->n_embd, widest), sat_mul(2, qd)),
                               sat_add(sat_mul(2, kvd), sat_mul(3, o->n_ff)));
    uint64_t wide = sat_add(o->n_ff > widest ? o->n_ff : widest, 256);
    uint64_t floats = sat_add(sat_add(sat_mul(nb, per_row), sat_mul(nb, wide)), sat_add(o->n_vocab, 2ull * n_ctx));
    o->mem_buffer_bytes = sat_mul(4, floats);
    o->mem_total_bytes = sat_add(sat_add(o->weight_bytes, o->mem_kv_bytes), o->mem_buffer_bytes);
    return 0;
}
