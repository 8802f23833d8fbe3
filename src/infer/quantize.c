/*
 * Whole-model quantization: each tensor of the input is converted to the
 * type the chosen mix gives it, in parallel by rows, and streamed into a new
 * GGUF. The mixes follow what users know from llama.cpp's llama-quantize
 * (which tensors keep more bits), so files and expectations carry over.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "byoai/gguf.h"
#include "infer/quant.h"

/* llama.cpp's llama_ftype numbers, written as general.file_type */
typedef struct {
    const char *name;
    const char *alias;   /* accepted alternative name */
    byoai_type base;
    int ftype;
    bool keeps_output;   /* output.weight keeps the base type (else Q6_K) */
    bool keep_all;       /* KEEP: every tensor keeps its type (a lossless re-write) */
} mix;

static const mix MIXES[] = {
    {"F32", NULL, BYOAI_TYPE_F32, 0, true, false},          {"F16", NULL, BYOAI_TYPE_F16, 1, true, false},
    {"BF16", NULL, BYOAI_TYPE_BF16, 32, true, false},       {"Q8_0", NULL, BYOAI_TYPE_Q8_0, 7, true, false},
    {"Q4_0", NULL, BYOAI_TYPE_Q4_0, 2, false, false},       {"Q4_1", NULL, BYOAI_TYPE_Q4_1, 3, false, false},
    {"Q5_0", NULL, BYOAI_TYPE_Q5_0, 8, false, false},       {"Q5_1", NULL, BYOAI_TYPE_Q5_1, 9, false, false},
    {"Q2_K", NULL, BYOAI_TYPE_Q2_K, 10, false, false},      {"Q3_K_S", NULL, BYOAI_TYPE_Q3_K, 11, false, false},
    {"Q3_K_M", "Q3_K", BYOAI_TYPE_Q3_K, 12, false, false},  {"Q4_K_S", NULL, BYOAI_TYPE_Q4_K, 14, false, false},
    {"Q4_K_M", "Q4_K", BYOAI_TYPE_Q4_K, 15, false, false},  {"Q5_K_S", NULL, BYOAI_TYPE_Q5_K, 16, false, false},
    {"Q5_K_M", "Q5_K", BYOAI_TYPE_Q5_K, 17, false, false},  {"Q6_K", NULL, BYOAI_TYPE_Q6_K, 18, true, false},
    /* re-write only: same types, same general.file_type, tensors aligned */
    {"KEEP", NULL, BYOAI_TYPE_F32, -1, true, true},
};

const char *byoai_quantize_mix_names(void) {
    return "F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M (Q3_K) Q4_K_S Q4_K_M (Q4_K) Q5_K_S Q5_K_M (Q5_K) Q6_K "
           "KEEP";
}

static const mix *find_mix(const char *name) {
    for (size_t i = 0; i < sizeof MIXES / sizeof MIXES[0]; i++)
        if (!strcasecmp(MIXES[i].name, name) || (MIXES[i].alias && !strcasecmp(MIXES[i].alias, name))) return &MIXES[i];
    return NULL;
}

/* llama.cpp spends more bits on the first and last eighth of the layers and
 * on every third layer in between */
static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* The layer of "blk.N.*", or -1. N is a name from the file: a number too
 * large for the mix's arithmetic (7 * n / 8 ...) is no layer. */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    if (*p < '0' || *p > '9') return -1;
    int l = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        l = l * 10 + (*p - '0');
        if (l > 65535) return -1;
    }
    return *p == '.' ? l : -1;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* The type a tensor gets under a mix. */
static byoai_type choose_type(const mix *m, const byoai_gguf_tensor *t, int n_layer, bool has_output) {
    if (m->keep_all) return t->type;
    if (t->n_dims < 2) return BYOAI_TYPE_F32; /* norms, biases: tiny, precision matters */
    const char *n = t->name;
    byoai_type ty = m->base;
    int il = layer_of(n);
    bool is_output = !strcmp(n, "output.weight") || (!has_output && !strcmp(n, "token_embd.weight"));
    const char *mn = m->name;
    if (is_output) {
        if (!m->keeps_output) ty = BYOAI_TYPE_Q6_K;
    } else if (ends_with(n, "attn_v.weight") || ends_with(n, "attn_qkv.weight")) {
        if (!strcmp(mn, "Q4_K_M") || !strcmp(mn, "Q5_K_M")) ty = use_more_bits(il, n_layer) ? BYOAI_TYPE_Q6_K : ty;
        else if (!strcmp(mn, "Q4_K_S")) ty = il < 4 ? BYOAI_TYPE_Q5_K : ty;
        else if (!strcmp(mn, "Q3_K_M")) ty = il < 2 ? BYOAI_TYPE_Q5_K : BYOAI_TYPE_Q4_K;
        else if (!strcmp(mn, "Q2_K")) ty = BYOAI_TYPE_Q4_K;
    } else if (ends_with(n, "ffn_down.weight")) {
        if (!strcmp(mn, "Q4_K_M") || !strcmp(mn, "Q5_K_M")) ty = use_more_bits(il, n_layer) ? BYOAI_TYPE_Q6_K : ty;
        else if (!strcmp(mn, "Q4_K_S")) ty = il < n_layer / 8 ? BYOAI_TYPE_Q5_K : ty;
        else if (!strcmp(mn, "Q3_K_M"))
            ty = il < n_layer / 16 ? BYOAI_TYPE_Q5_K : use_more_bits(il, n_layer) ? BYOAI_TYPE_Q4_K : BYOAI_TYPE_Q3_K;
        else if (!strcmp(mn, "Q2_K")) ty = BYOAI_TYPE_Q3_K;
    } else if (ends_with(n, "attn_output.weight")) {
        if (!strcmp(mn, "Q3_K_M")) ty = BYOAI_TYPE_Q4_K;
    }
    /* rows that do not divide into the type's blocks fall back, as llama.cpp does */
    for (int guard = 0; guard < 4; guard++) {
        const byoai_type_traits *tr = byoai_type_get(ty);
        if (t->ne[0] % tr->block_size == 0 && byoai_type_can_quantize(ty)) break;
        switch (ty) {
        case BYOAI_TYPE_Q2_K: case BYOAI_TYPE_Q3_K: ty = BYOAI_TYPE_Q4_0; break;
        case BYOAI_TYPE_Q4_K: ty = BYOAI_TYPE_Q5_0; break;
        case BYOAI_TYPE_Q5_K: ty = BYOAI_TYPE_Q5_1; break;
        case BYOAI_TYPE_Q6_K: ty = BYOAI_TYPE_Q8_0; break;
        default: ty = BYOAI_TYPE_F16; break;
        }
    }
    return ty;
}

typedef struct {
    const byoai_gguf_tensor *src;
    byoai_type dst_type;
    uint8_t *dst;
    uint64_t rows, row_in, row_out;
    float *scratch; /* n_threads x ne0 */
    uint8_t *raw;   /* n_threads x row_in: misaligned input rows are copied here first */
    int status;
} convert_job;

static void convert_rows(void *arg, int ith, int nth) {
    convert_job *j = arg;
    const uint64_t ne0 = j->src->ne[0];
    float *f = j->scratch + (size_t)ith * ne0;
    for (uint64_t r = (uint64_t)ith; r < j->rows; r += (uint64_t)nth) {
        const uint8_t *in = (const uint8_t *)j->src->data + r * j->row_in;
        if ((uintptr_t)in % byoai_type_alignment(j->src->type)) { /* a file with general.alignment < 8 */
            uint8_t *raw = j->raw + (size_t)ith * j->row_in;
            memcpy(raw, in, (size_t)j->row_in);
            in = raw;
        }
        if (byoai_dequantize_row(j->src->type, in, f, (int64_t)ne0) ||
            byoai_quantize_row(j->dst_type, f, j->dst + r * j->row_out, (int64_t)ne0)) {
            __atomic_store_n(&j->status, BYOAI_EUNSUPPORTED, __ATOMIC_RELAXED);
            return;
        }
    }
}

typedef struct {
    const byoai_gguf *g;
    byoai_type *types;
    byoai_pool *pool;
    float *scratch;
    uint8_t *raw;
} quant_ctx;

static int fill_tensor(void *user, const char *name, void *dst, uint64_t size, byoai_error *err) {
    quant_ctx *q = user;
    const byoai_gguf_tensor *t = byoai_gguf_find_tensor(q->g, name);
    size_t idx = (size_t)(t - q->g->tensors);
    byoai_type to = q->types[idx];
    if (to == t->type) {
        memcpy(dst, t->data, (size_t)size);
        return 0;
    }
    convert_job j = {.src = t, .dst_type = to, .dst = dst, .rows = t->n_elements / (t->ne[0] ? t->ne[0] : 1),
                     .row_in = byoai_type_row_size(t->type, t->ne[0]), .row_out = byoai_type_row_size(to, t->ne[0]),
                     .scratch = q->scratch, .raw = q->raw};
    if (t->ne[0] == 0) return 0;
    byoai_pool_run(q->pool, convert_rows, &j);
    if (j.status)
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "tensor %s: cannot convert %s to %s", name,
                               byoai_type_name(t->type), byoai_type_name(to));
    return 0;
}

typedef struct {
    const byoai_quantize_params *p;
    const byoai_gguf *g;
    const byoai_type *types;
} progress_ctx;

static void on_written(void *user, uint64_t done, uint64_t total) {
    progress_ctx *pc = user;
    if (pc->p->progress && done > 0)
        pc->p->progress(pc->p->user, done, total, pc->g->tensors[done - 1].name, byoai_type_name(pc->types[done - 1]));
}

int byoai_quantize_file(const char *in_path, const char *out_path, const byoai_quantize_params *p, byoai_error *err) {
    const mix *m = find_mix(p->target ? p->target : "");
    if (!m)
        return byoai_error_set(err, BYOAI_EINVAL, "unknown target type '%s'; choose one of: %s",
                               p->target ? p->target : "", byoai_quantize_mix_names());
    if (!m->keep_all && !byoai_type_can_quantize(m->base))
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "this build cannot produce %s yet", m->name);
    byoai_gguf *g;
    int rc = byoai_gguf_open(in_path, &g, err);
    if (rc) return rc;
    int n_layer = 0;
    bool has_output = byoai_gguf_find_tensor(g, "output.weight") != NULL;
    uint64_t max_ne0 = 1, max_row = 1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int l = layer_of(g->tensors[i].name);
        if (l + 1 > n_layer) n_layer = l + 1;
        if (g->tensors[i].ne[0] > max_ne0) max_ne0 = g->tensors[i].ne[0];
        uint64_t row = byoai_type_row_size(g->tensors[i].type, g->tensors[i].ne[0]);
        if (row > max_row) max_row = row;
    }
    byoai_type *types = calloc((size_t)g->n_tensors + 1, sizeof *types);
    byoai_gguf_writer *w = NULL;
    byoai_pool *pool = NULL;
    float *scratch = NULL;
    uint8_t *raw = NULL;
    if (!types) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    for (uint64_t i = 0; !rc && i < g->n_tensors; i++) {
        const byoai_gguf_tensor *t = &g->tensors[i];
        types[i] = choose_type(m, t, n_layer, has_output);
        bool quantized = t->type != BYOAI_TYPE_F32 && t->type != BYOAI_TYPE_F16 && t->type != BYOAI_TYPE_BF16;
        if (quantized && types[i] != t->type && !p->allow_requantize)
            rc = byoai_error_set(err, BYOAI_EINVAL, "tensor %s is already quantized (%s); quantizing it again loses "
                                 "accuracy: start from an F32/F16/BF16 model, or pass --allow-requantize", t->name,
                                 byoai_type_name(t->type));
        else if (types[i] != t->type && !byoai_type_ops_get(t->type))
            rc = byoai_error_set(err, BYOAI_EUNSUPPORTED, "tensor %s has type %s, which this build cannot read", t->name,
                                 byoai_type_name(t->type));
    }
    if (!rc) rc = byoai_gguf_writer_new(&w, err);
    if (!rc) rc = byoai_pool_new(p->n_threads, &pool, err);
    if (!rc) {
        scratch = malloc((size_t)byoai_pool_size(pool) * max_ne0 * sizeof(float));
        raw = byoai_aligned_alloc(64, (size_t)byoai_pool_size(pool) * ((max_row + 63) / 64 * 64));
        if (!scratch || !raw) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    for (uint64_t i = 0; !rc && i < g->n_kv; i++) {
        const char *k = g->kv[i].key;
        if (!m->keep_all && (!strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version"))) continue;
        if (byoai_gguf_writer_set_value(w, k, &g->kv[i].value))
            rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory copying metadata");
    }
    if (!rc && !m->keep_all) {
        byoai_gguf_writer_set_u32(w, "general.file_type", (uint32_t)m->ftype);
        byoai_gguf_writer_set_u32(w, "general.quantization_version", 2);
    }
    /* a larger alignment than the default is kept; a smaller one is not:
     * the kernels read weights in place and need them aligned */
    if (!rc) {
        rc = byoai_gguf_writer_set_alignment(
            w, g->alignment > BYOAI_GGUF_DEFAULT_ALIGNMENT ? g->alignment : BYOAI_GGUF_DEFAULT_ALIGNMENT, err);
    }
    quant_ctx q = {g, types, pool, scratch, raw};
    for (uint64_t i = 0; !rc && i < g->n_tensors; i++) {
        const byoai_gguf_tensor *t = &g->tensors[i];
        rc = byoai_gguf_writer_add_tensor(w, t->name, types[i], t->n_dims, t->ne, NULL, fill_tensor, &q, err);
    }
    progress_ctx pc = {p, g, types};
    if (!rc) rc = byoai_gguf_writer_write(w, out_path, on_written, &pc, err);
    free(scratch);
    free(raw);
    byoai_pool_free(pool);
    byoai_gguf_writer_free(w);
    free(types);
    byoai_gguf_close(g);
    return rc;
}
