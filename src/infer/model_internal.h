/* Internal structures of a loaded model and its contexts. */
#ifndef BYOAI_MODEL_INTERNAL_H
#define BYOAI_MODEL_INTERNAL_H

#include "byoai/model.h"
#include "infer/packed.h"
#include "infer/quant.h"
#include "infer/vec.h"

/* An architecture as data: what differs between llama-family models. */
typedef struct byoai_arch {
    const char *name;
    byoai_rope_type rope;
    byoai_ffn_act act;
    bool fused_qkv;      /* attn_qkv.weight instead of attn_q/k/v */
    bool fused_gate_up;  /* ffn_up.weight holds [gate; up] */
    bool embd_scale;     /* scale input embeddings by sqrt(n_embd) */
    bool swa_alternate;  /* sliding-window attention on even layers (Gemma 2) */
} byoai_arch;

const byoai_arch *byoai_arch_find(const char *name);
/* comma-separated list of supported names, for messages */
const char *byoai_arch_names(void);

/* A weight matrix of ne1 rows by ne0 columns, in place in the mapping. */
typedef struct byoai_weight {
    const char *name;
    byoai_type type;
    const void *data;
    uint64_t ne0, ne1;
    uint64_t row_bytes;
    byoai_packed packed; /* packed.data != NULL: use this copy, not data */
} byoai_weight;

typedef struct byoai_layer {
    const float *attn_norm;          /* [n_embd] */
    byoai_weight wq, wk, wv, wqkv, wo;
    const float *bq, *bk, *bv, *bqkv, *bo; /* optional biases */
    const float *q_norm, *k_norm;    /* optional per-head norms [head_dim] */
    const float *ffn_norm;           /* [n_embd] */
    byoai_weight w_gate, w_up, w_down;
    const float *post_attn_norm, *post_ffn_norm; /* optional norms of the block outputs [n_embd] (Gemma 2) */
} byoai_layer;

struct byoai_model {
    byoai_gguf *gguf;
    byoai_hparams hp;
    const byoai_arch *arch;
    byoai_tokenizer *tok;
    uint32_t layer_begin, layer_end;
    bool has_embd, has_head;
    byoai_weight tok_embd;
    const float *out_norm;
    byoai_weight output;
    const float *rope_freqs;  /* optional [n_rot/2] frequency divisors */
    byoai_layer *layers;      /* indexed by absolute layer number */
    void **owned;             /* converted small vectors to free */
    size_t n_owned, cap_owned;
    uint8_t *pack_arena;      /* packed weights (anonymous mapping), or NULL */
    size_t pack_arena_size;
};

struct byoai_context {
    byoai_model *model;
    byoai_context_params p;
    byoai_pool *pool;
    const byoai_kernels *kernels;
    const byoai_vec_ops *vec;
    /* KV cache: [layer - layer_begin][seq] -> n_ctx x kv_dim floats */
    float **k_cache, **v_cache;
    uint32_t *kv_len; /* per sequence */
    /* scratch, sized for n_batch rows */
    float *x, *xb, *qkv, *att, *hb, *hb2;
    float *scores;    /* n_threads x (n_head / n_head_kv) x n_ctx */
    const byoai_packed_kernels *pk; /* kernels for packed weights, or NULL */
    byoai_act act;    /* activations quantized for packed weights */
    float *act_dt, *act_st; /* act.dt / act.st when large kernels run */
    uint8_t *pack_scratch; /* n_threads x pack_scratch_size */
    size_t pack_scratch_size;
    void *act_q;      /* quantized activations */
    size_t act_q_size;
    float *inv_freq;  /* n_rot / 2 */
    float *out;       /* outputs of wanted rows */
    uint32_t n_out, out_cap, out_dim;
    float *emb;       /* final-normed hidden states (embeddings mode) */
    uint32_t emb_rows;
    int32_t *rows_pos, *rows_seq;
    byoai_perf perf;
};

/* forward pass pieces (forward.c) */
void byoai_matmul(byoai_context *ctx, const byoai_weight *w, const float *x, uint32_t n, float *y);
/* y[i] = x . w[i]^T for count (<= 3) weights sharing their input (q/k/v,
 * gate/up): one activation quantization and one dispatch when packed */
void byoai_matmul_multi(byoai_context *ctx, const byoai_weight *const *w, float *const *y, int count, const float *x,
                        uint32_t n);
/* pack the model's matrices for this CPU's kernels (model.c) */
/* Pack the matrices this CPU has packed kernels for (when pack), and with
 * a progress callback read in the pages of the others (model_pack.c). */
int byoai_model_pack(byoai_model *m, bool pack, byoai_progress_fn progress, void *user, const char *what,
                     byoai_error *err);
void byoai_forward(byoai_context *ctx, const byoai_batch *b, const int32_t *pos, const int32_t *seq);

#endif
