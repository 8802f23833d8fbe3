/*
 * Write a synthetic model of TinyLlama-1.1B's shape (dim 2048, ffn 5632, 22
 * layers, 32 heads, 4 KV heads, vocab 32000) with random F16 weights and the
 * Llama SentencePiece vocabulary from ../shared/vocab, using byoai's own
 * GGUF writer. Speed benchmarks quantize it with `byoai quantize`.
 *   make_tinyllama OUT.gguf [SHARED_DIR] [--layers N] [--dim D] [--ff F] [--heads H] [--kv-heads K]
 *                  [--scale S] [--arch gemma2 [--swa N] [--attn-cap X] [--final-cap Y]]
 * The shape options make small synthetic models for tests (the cluster's
 * many-layer equality tests use --dim 64 --ff 128 --layers 12). --scale
 * multiplies the weights (a larger scale makes the next token clear-cut);
 * --arch gemma2 writes a Gemma 2 model (post-block norms, tied output,
 * soft-capping, sliding windows) for the engine's Gemma 2 test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"
#include "byoai/quant.h"

enum { VOCAB = 32000, CTX = 2048 };
static int DIM = 2048, FF = 5632, HEADS = 32, KV_HEADS = 4;
static float SCALE = 1.0f;

static uint64_t next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *s = x;
}

/* weights uniform with standard deviation 0.02 (norm weights 1.0) */
static int fill(void *user, const char *name, void *dst, uint64_t size, byoai_error *err) {
    (void)user;
    (void)err;
    uint16_t *h = dst;
    uint64_t n = size / 2;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (const char *p = name; *p; p++) s = (s ^ (uint8_t)*p) * 0x100000001B3ull;
    if (strstr(name, "norm")) {
        float *f = dst;
        for (uint64_t i = 0; i < size / 4; i++) f[i] = 1.0f;
        return 0;
    }
    const float a = 0.02f * 1.7320508f * SCALE;
    for (uint64_t i = 0; i < n; i++) {
        float u = (float)(next(&s) >> 40) * (1.0f / 16777216.0f) * 2 - 1;
        h[i] = byoai_fp32_to_fp16(u * a);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: make_tinyllama OUT.gguf [SHARED_DIR] [--layers N] [--dim D] [--ff F] [--heads H] "
                        "[--kv-heads K]\n");
        return 2;
    }
    const char *shared = argc > 2 && argv[2][0] != '-' ? argv[2] : "../shared";
    int layers = 22, swa = 4096;
    const char *arch = "llama";
    float attn_cap = 50.0f, final_cap = 30.0f;
    for (int i = 2; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--arch")) arch = argv[i + 1];
        if (!strcmp(argv[i], "--scale")) SCALE = (float)atof(argv[i + 1]);
        if (!strcmp(argv[i], "--swa")) swa = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--attn-cap")) attn_cap = (float)atof(argv[i + 1]);
        if (!strcmp(argv[i], "--final-cap")) final_cap = (float)atof(argv[i + 1]);
        if (!strcmp(argv[i], "--layers")) layers = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--dim")) DIM = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--ff")) FF = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--heads")) HEADS = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--kv-heads")) KV_HEADS = atoi(argv[i + 1]);
    }
    if (layers < 1 || layers > 200 || DIM < 32 || DIM % 32 || FF < 32 || FF % 32 || HEADS < 1 || DIM % HEADS ||
        KV_HEADS < 1 || HEADS % KV_HEADS || (DIM / HEADS) % 2 || !(SCALE > 0) || swa < 1 ||
        (strcmp(arch, "llama") && strcmp(arch, "gemma2")))
        return 2;
    const bool gemma2 = !strcmp(arch, "gemma2");
    char vpath[4096];
    snprintf(vpath, sizeof vpath, "%s/vocab/ggml-vocab-llama-spm.gguf", shared);
    byoai_error err;
    byoai_gguf *voc;
    if (byoai_gguf_open(vpath, &voc, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    byoai_gguf_writer *w;
    byoai_gguf_writer_new(&w, &err);
    char key[96];
#define K(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    byoai_gguf_writer_set_str(w, "general.architecture", arch);
    byoai_gguf_writer_set_str(w, "general.name", gemma2 ? "synthetic-gemma2" : "synthetic-tinyllama-1.1b");
    byoai_gguf_writer_set_u32(w, "general.file_type", 1);
    byoai_gguf_writer_set_u32(w, K("context_length"), CTX);
    byoai_gguf_writer_set_u32(w, K("embedding_length"), DIM);
    byoai_gguf_writer_set_u32(w, K("block_count"), (uint32_t)layers);
    byoai_gguf_writer_set_u32(w, K("feed_forward_length"), FF);
    byoai_gguf_writer_set_u32(w, K("attention.head_count"), HEADS);
    byoai_gguf_writer_set_u32(w, K("attention.head_count_kv"), KV_HEADS);
    byoai_gguf_writer_set_u32(w, K("rope.dimension_count"), DIM / HEADS);
    byoai_gguf_writer_set_f32(w, K("attention.layer_norm_rms_epsilon"), 1e-5f);
    byoai_gguf_writer_set_f32(w, K("rope.freq_base"), 10000.0f);
    if (gemma2) {
        byoai_gguf_writer_set_u32(w, K("attention.sliding_window"), (uint32_t)swa);
        byoai_gguf_writer_set_f32(w, K("attn_logit_softcapping"), attn_cap);
        byoai_gguf_writer_set_f32(w, K("final_logit_softcapping"), final_cap);
    }
#undef K
    for (uint64_t i = 0; i < voc->n_kv; i++)
        if (!strncmp(voc->kv[i].key, "tokenizer.", 10)) byoai_gguf_writer_set_value(w, voc->kv[i].key, &voc->kv[i].value);
#define T2(name, a, b) do { uint64_t ne[2] = {a, b}; if (byoai_gguf_writer_add_tensor(w, name, BYOAI_TYPE_F16, 2, ne, NULL, fill, NULL, &err)) goto fail; } while (0)
#define T1(name, a) do { uint64_t ne[1] = {a}; if (byoai_gguf_writer_add_tensor(w, name, BYOAI_TYPE_F32, 1, ne, NULL, fill, NULL, &err)) goto fail; } while (0)
    T2("token_embd.weight", DIM, VOCAB);
    T1("output_norm.weight", DIM);
    if (!gemma2) T2("output.weight", DIM, VOCAB); /* Gemma ties the output to the embedding */
    for (int l = 0; l < layers; l++) {
        char n[64];
#define N(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        T1(N("attn_norm.weight"), DIM);
        T2(N("attn_q.weight"), DIM, DIM);
        T2(N("attn_k.weight"), DIM, DIM / HEADS * KV_HEADS);
        T2(N("attn_v.weight"), DIM, DIM / HEADS * KV_HEADS);
        T2(N("attn_output.weight"), DIM, DIM);
        if (gemma2) T1(N("post_attention_norm.weight"), DIM);
        T1(N("ffn_norm.weight"), DIM);
        T2(N("ffn_gate.weight"), DIM, FF);
        T2(N("ffn_up.weight"), DIM, FF);
        T2(N("ffn_down.weight"), FF, DIM);
        if (gemma2) T1(N("post_ffw_norm.weight"), DIM);
#undef N
    }
    if (byoai_gguf_writer_write(w, argv[1], NULL, NULL, &err)) goto fail;
    byoai_gguf_writer_free(w);
    byoai_gguf_close(voc);
    return 0;
fail:
    fprintf(stderr, "make_tinyllama: %s\n", err.msg);
    return 1;
}
