/*
 * byoai/model.h: load a GGUF model and run its forward pass.
 *
 * Contract
 * - A byoai_model is read-only after loading: weights are used in place
 *   from the file's memory map (never copied), hyper-parameters and tensor
 *   shapes are validated against the architecture's description before use.
 *   One model may serve many contexts at once.
 * - A byoai_context owns what a run mutates: the KV cache of each of its
 *   sequences, scratch buffers and a thread pool. One thread uses a context
 *   at a time.
 * - byoai_decode() evaluates a batch of tokens, possibly from several
 *   sequences (continuous batching); each token attends to the earlier
 *   positions of its own sequence only.
 * - Architectures are rows in a table (src/infer/arch.c), not forks of the
 *   forward pass: llama, mistral, qwen2, qwen3, phi3, gemma.
 * - A context may run a contiguous range of layers only (pipeline
 *   parallelism across machines): it then takes and/or gives hidden states
 *   instead of tokens and logits.
 */
#ifndef BYOAI_MODEL_H
#define BYOAI_MODEL_H

#include "byoai/base.h"
#include "byoai/gguf.h"
#include "byoai/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum byoai_rope_type { BYOAI_ROPE_NORM = 0, BYOAI_ROPE_NEOX = 2 } byoai_rope_type;
typedef enum byoai_ffn_act { BYOAI_ACT_SILU = 0, BYOAI_ACT_GELU = 1 } byoai_ffn_act;

/* Hyper-parameters, from the GGUF metadata "<arch>.*" keys. */
typedef struct byoai_hparams {
    char arch[32];
    uint32_t n_vocab;
    uint32_t n_ctx_train;  /* the context the model was trained with; 0 when the file does not say */
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_ff;
    uint32_t head_dim;     /* key/value length per head */
    uint32_t n_rot;        /* rotated dimensions per head */
    float norm_eps;
    float rope_freq_base;
    byoai_rope_type rope_type;
    byoai_ffn_act act;
    /* Gemma 2 style (0 = off): tanh soft-capping of attention scores and of
     * the final logits (x -> cap * tanh(x / cap)); sliding-window attention
     * over the last n_swa positions on every other layer (0, 2, 4, ...). */
    float attn_softcap, final_softcap;
    uint32_t n_swa;
    float q_scale;         /* query scaling before the dot products (1/sqrt(head_dim) by default) */
    uint64_t n_params;     /* total parameters in the file's tensors */
    uint64_t weight_bytes; /* total tensor bytes */
} byoai_hparams;

typedef struct byoai_model byoai_model;

typedef struct byoai_model_params {
    /* Layers to load: [layer_begin, layer_end). layer_end = 0 means all.
     * The token embedding is loaded when layer_begin == 0 and the output
     * norm and matrix when layer_end == n_layer. */
    uint32_t layer_begin, layer_end;
    /* Load only the tokenizer and hyper-parameters (no tensor checks). */
    bool vocab_only;
    /* Compute from the file's layout in place. By default the matrices of
     * types this CPU has packed kernels for are re-laid at load time into
     * 16-row tiles (same size; the file's pages are released), which makes
     * both prompt processing and generation faster. $BYOAI_REPACK=0 does
     * the same as this flag for every load. */
    bool no_pack;
    /* Optional: called from the loading thread as the weights are made
     * ready (phase "loading", done/total in bytes): packed, and, when a
     * callback is given, the file's pages of the other matrices read in,
     * so that a model on a slow disk shows its progress at load rather
     * than stalling the first prompt. Non-zero cancels (BYOAI_ECANCELED). */
    byoai_progress_fn progress;
    void *progress_user;
} byoai_model_params;

/* Load and validate a model. The model keeps the file mapped (and, unless
 * no_pack, a packed copy of its matrices in anonymous memory). */
int byoai_model_load(const char *path, const byoai_model_params *params, byoai_model **out, byoai_error *err);
void byoai_model_free(byoai_model *m);
const byoai_hparams *byoai_model_hparams(const byoai_model *m);
const byoai_tokenizer *byoai_model_tokenizer(const byoai_model *m);
const byoai_gguf *byoai_model_gguf(const byoai_model *m);
/* The chat template (tokenizer.chat_template) or NULL. Not NUL-terminated: see len. */
const char *byoai_model_chat_template(const byoai_model *m, size_t *len);
/* True when some of the model's matrices were packed at load time. */
bool byoai_model_packed(const byoai_model *m);
/* Bytes of KV cache per token of context (all layers this model loaded, F32). */
uint64_t byoai_model_kv_bytes_per_token(const byoai_model *m);

/* What a GGUF file holds, read from its metadata and tensor table only (no
 * weights touched); works for architectures this build cannot run. */
typedef struct byoai_model_info {
    char arch[32];
    bool arch_supported;
    char name[128];            /* general.name, or "" */
    char tokenizer[32];        /* tokenizer.ggml.model, or "" */
    uint32_t n_vocab;          /* tokens in tokenizer.ggml.tokens */
    bool has_chat_template;
    uint32_t n_ctx_train, n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim;
    uint64_t n_params;
    uint64_t file_bytes, weight_bytes;
    uint64_t type_count[BYOAI_TYPE_COUNT]; /* tensors per type */
    uint64_t type_bytes[BYOAI_TYPE_COUNT]; /* bytes per type */
    /* the file type: llama.cpp's name from general.file_type ("Q4_K_M")
     * when the tensors agree with it, else the type of most of the 2-D
     * weights' bytes ("Q4_K"); "none" without tensors */
    const char *file_type;
    /* memory to run at n_ctx tokens, one sequence: weights + KV + buffers */
    uint32_t mem_ctx;
    uint64_t mem_kv_bytes, mem_buffer_bytes, mem_total_bytes;
} byoai_model_info;

int byoai_model_describe(const byoai_gguf *g, uint32_t n_ctx, byoai_model_info *out, byoai_error *err);
/* True when this build can run architecture `name`. */
bool byoai_arch_supported(const char *name);

typedef struct byoai_context byoai_context;

typedef struct byoai_context_params {
    uint32_t n_ctx;     /* positions per sequence (0: byoai_context_default_n_ctx) */
    uint32_t n_seq;     /* parallel sequences, each with its own KV cache (0: 1) */
    uint32_t n_batch;   /* max tokens per byoai_decode (0: 512) */
    int n_threads;      /* 0: all cores */
    bool embeddings;    /* keep the final-normed hidden state of every token */
} byoai_context_params;

int byoai_context_new(byoai_model *m, const byoai_context_params *params, byoai_context **out, byoai_error *err);
/* The context a context gets by default: the model's trained context (2048
 * when the file does not say), unless the KV cache of n_seq sequences that
 * long would take more than a quarter of ram_bytes (0: this machine's
 * memory); then the most that fits that (a multiple of 1024), but never
 * less than the smaller of the trained context and 4096. */
uint32_t byoai_context_default_n_ctx(const byoai_model *m, uint32_t n_seq, uint64_t ram_bytes);
void byoai_context_free(byoai_context *ctx);
uint32_t byoai_context_n_ctx(const byoai_context *ctx);
uint32_t byoai_context_n_seq(const byoai_context *ctx);
const byoai_model *byoai_context_model(const byoai_context *ctx);

/* A batch of tokens to evaluate. Row i is token tokens[i] (or hidden state
 * embd[i * n_embd ...] for a context whose model starts after layer 0) at
 * position pos[i] of sequence seq[i]. Positions of one sequence must follow
 * on from what its cache holds (pos = current length, length+1, ...).
 * want[i] != 0 asks for row i's output (logits, or the hidden state when
 * the model ends before its last layer); NULL asks for the last row only. */
typedef struct byoai_batch {
    uint32_t n_tokens;
    const int32_t *tokens;
    const float *embd;
    const int32_t *pos;   /* NULL: continue each sequence */
    const int32_t *seq;   /* NULL: all sequence 0 */
    const int8_t *want;
} byoai_batch;

/* Evaluate a batch. On error (bad token id, position gap, cache full) the
 * context's caches are unchanged. */
int byoai_decode(byoai_context *ctx, const byoai_batch *batch, byoai_error *err);
/* Output of the j-th wanted row of the last decode (j in order of the
 * batch): n_vocab logits, or n_embd hidden values for a partial model. */
const float *byoai_get_output(const byoai_context *ctx, uint32_t j);
uint32_t byoai_get_n_outputs(const byoai_context *ctx);
/* With params.embeddings: the final-normed hidden state of batch row i. */
const float *byoai_get_embedding(const byoai_context *ctx, uint32_t i);
/* Mean pooling: out[k] = sum[k] / rows, then scaled to unit length (left as
 * is when it is all zero). sum holds the rows' embeddings added up. */
void byoai_embedding_mean(const double *sum, uint32_t rows, uint32_t n_embd, float *out);

/* KV cache per sequence */
uint32_t byoai_kv_len(const byoai_context *ctx, uint32_t seq);
/* Forget positions >= len of a sequence (len 0 clears it). */
void byoai_kv_truncate(byoai_context *ctx, uint32_t seq, uint32_t len);

/* KV snapshots (kv_state.c): a sequence's cache copied out and back in, so
 * that more conversations can be kept than a context has sequences. A
 * snapshot of n positions is, per layer the context runs, n K rows then n V
 * rows (F32); it is valid only for a model with the same fingerprint. */
uint64_t byoai_kv_snapshot_bytes(const byoai_context *ctx, uint32_t n);
/* Copy positions [0, n) of seq's cache into dst (cap bytes, at least
 * byoai_kv_snapshot_bytes(ctx, n)). */
int byoai_kv_snapshot_read(const byoai_context *ctx, uint32_t seq, uint32_t n, void *dst, uint64_t cap,
                           byoai_error *err);
/* Replace seq's cache with the first n_keep positions of a snapshot of
 * n_src positions. */
int byoai_kv_snapshot_write(byoai_context *ctx, uint32_t seq, const void *src, uint32_t n_src, uint32_t n_keep,
                            byoai_error *err);
/* Make dst's cache the first n positions of src's (a shared start, e.g. a
 * system prompt, evaluated once for several sequences). */
int byoai_kv_copy(byoai_context *ctx, uint32_t src, uint32_t dst, uint32_t n, byoai_error *err);
/* 32 bytes that identify the model's weights and loaded layer range (a hash
 * of the file's header, size and sampled tensor data). */
void byoai_model_fingerprint(const byoai_model *m, uint8_t out[32]);

/* Timing of the context so far (seconds and token counts). */
typedef struct byoai_perf {
    double prompt_seconds, gen_seconds;
    uint64_t prompt_tokens, gen_tokens;
} byoai_perf;
void byoai_context_perf(const byoai_context *ctx, byoai_perf *out);
void byoai_context_perf_reset(byoai_context *ctx);

#ifdef __cplusplus
}
#endif
#endif
