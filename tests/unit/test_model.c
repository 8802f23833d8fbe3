/*
 * The engine: the real stories260K model against llama2.c's known output,
 * batch / sequence / layer-split equivalences, decode validation, and
 * architecture rows checked against each other on synthetic models (a
 * NeoX-rope model with permuted q/k rows must equal the normal-rope one; a
 * fused-qkv phi3 model must equal the unfused one).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"
#include "byoai/model.h"
#include "byoai/quant.h"
#include "byoai/tokenizer.h"

static byoai_model *load(const char *path, uint32_t lb, uint32_t le) {
    byoai_model *m;
    byoai_error err;
    byoai_model_params p = {.layer_begin = lb, .layer_end = le};
    if (byoai_model_load(path, &p, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

static byoai_context *mkctx(byoai_model *m, uint32_t n_seq, bool emb) {
    byoai_context *c;
    byoai_error err;
    byoai_context_params p = {.n_ctx = 128, .n_seq = n_seq, .n_threads = 2, .embeddings = emb};
    if (byoai_context_new(m, &p, &c, &err)) fail_msg("%s", err.msg);
    return c;
}

static void decode_ok(byoai_context *c, const byoai_batch *b) {
    byoai_error err;
    if (byoai_decode(c, b, &err)) fail_msg("%s", err.msg);
}

/* the expected story: the fenced block after "Known greedy output" */
static char *expected_story(void) {
    char *readme;
    size_t len;
    byoai_error err;
    if (byoai_fs_read_all(tu_shared("models/README.md"), 0, &readme, &len, &err)) fail_msg("%s", err.msg);
    char *k = strstr(readme, "Known greedy output");
    assert_non_null(k);
    char *a = strstr(k, "```\n");
    assert_non_null(a);
    a += 4;
    char *b = strstr(a, "\n```");
    assert_non_null(b);
    char *out = byoai_strndup(a, (size_t)(b - a));
    free(readme);
    return out;
}

static void test_stories_greedy(void **state) {
    (void)state;
    byoai_model *m = load(tu_shared("models/stories260K.gguf"), 0, 0);
    const byoai_tokenizer *tok = byoai_model_tokenizer(m);
    byoai_context *c = mkctx(m, 1, false);
    const char *prompt = "Once upon a time";
    int32_t *toks;
    size_t n;
    byoai_error err;
    assert_int_equal(byoai_tokenize(tok, prompt, strlen(prompt), true, false, &toks, &n, &err), 0);
    assert_int_equal(toks[0], 1); /* BOS */
    byoai_batch b = {.n_tokens = (uint32_t)n, .tokens = toks};
    decode_ok(c, &b);
    char text[4096];
    size_t tl = strlen(prompt);
    memcpy(text, prompt, tl);
    for (int i = 0; i < 100; i++) {
        const float *lg = byoai_get_output(c, 0);
        int32_t best = 0;
        for (int32_t v = 1; v < 512; v++) if (lg[v] > lg[best]) best = v;
        int l = byoai_token_to_piece(tok, best, text + tl, sizeof text - tl - 1, false);
        assert_true(l >= 0);
        tl += (size_t)l;
        byoai_batch b1 = {.n_tokens = 1, .tokens = &best};
        decode_ok(c, &b1);
    }
    text[tl] = '\0';
    char *want = expected_story();
    assert_string_equal(text, want);
    free(want);
    free(toks);
    byoai_context_free(c);
    byoai_model_free(m);
}

static const int32_t PROMPT[] = {1, 403, 407, 261, 378, 11, 300, 290, 50, 60, 70};
#define NP ((uint32_t)(sizeof PROMPT / sizeof PROMPT[0]))

static void assert_close(const float *a, const float *b, uint32_t n, float tol) {
    for (uint32_t i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > tol * (1 + fabsf(a[i]))) fail_msg("index %u: %g vs %g", i, (double)a[i], (double)b[i]);
}

/* The last logits after a whole-prompt batch equal those after feeding the
 * prompt one token at a time; every wanted row of the batch matches too. */
static void test_batch_equivalence(void **state) {
    (void)state;
    byoai_model *m = load(tu_shared("models/stories260K.gguf"), 0, 0);
    byoai_context *c1 = mkctx(m, 1, false), *c2 = mkctx(m, 1, false);
    int8_t want[NP];
    for (uint32_t i = 0; i < NP; i++) want[i] = 1;
    byoai_batch b = {.n_tokens = NP, .tokens = PROMPT, .want = want};
    decode_ok(c1, &b);
    assert_int_equal(byoai_get_n_outputs(c1), NP);
    for (uint32_t i = 0; i < NP; i++) {
        byoai_batch b1 = {.n_tokens = 1, .tokens = &PROMPT[i]};
        decode_ok(c2, &b1);
        assert_close(byoai_get_output(c1, i), byoai_get_output(c2, 0), 512, 1e-4f);
    }
    assert_int_equal(byoai_kv_len(c1, 0), NP);
    byoai_context_free(c1);
    byoai_context_free(c2);
    byoai_model_free(m);
}

/* Two sequences interleaved in one batch give what each gives alone. */
static void test_multi_sequence(void **state) {
    (void)state;
    byoai_model *m = load(tu_shared("models/stories260K.gguf"), 0, 0);
    byoai_context *both = mkctx(m, 3, false), *solo = mkctx(m, 1, false);
    const int32_t other[] = {1, 500, 20, 30};
    int32_t toks[NP + 4], seq[NP + 4];
    int8_t want[NP + 4] = {0};
    uint32_t k = 0;
    for (uint32_t i = 0; i < NP; i++) {
        toks[k] = PROMPT[i], seq[k] = 2, want[k] = i == NP - 1;
        k++;
        if (i < 4) { toks[k] = other[i], seq[k] = 0, want[k] = i == 3; k++; }
    }
    byoai_batch b = {.n_tokens = k, .tokens = toks, .seq = seq, .want = want};
    decode_ok(both, &b);
    assert_int_equal(byoai_get_n_outputs(both), 2);
    assert_int_equal(byoai_kv_len(both, 2), NP);
    assert_int_equal(byoai_kv_len(both, 0), 4);
    assert_int_equal(byoai_kv_len(both, 1), 0);
    /* outputs come in batch order: seq 0's last row (k=7) precedes seq 2's */
    byoai_batch bs = {.n_tokens = 4, .tokens = other};
    decode_ok(solo, &bs);
    assert_close(byoai_get_output(both, 0), byoai_get_output(solo, 0), 512, 1e-4f);
    byoai_kv_truncate(solo, 0, 0);
    byoai_batch bp = {.n_tokens = NP, .tokens = PROMPT};
    decode_ok(solo, &bp);
    assert_close(byoai_get_output(both, 1), byoai_get_output(solo, 0), 512, 1e-4f);
    byoai_context_free(both);
    byoai_context_free(solo);
    byoai_model_free(m);
}

/* Layers 0..2 on one context and 2..5 on another, hidden states passed
 * between them, equal the whole model: the basis of pipeline parallelism. */
static void test_layer_split(void **state) {
    (void)state;
    const char *path = tu_shared("models/stories260K.gguf");
    byoai_model *full = load(path, 0, 0), *a = load(path, 0, 2), *b = load(path, 2, 5);
    byoai_context *cf = mkctx(full, 1, false), *ca = mkctx(a, 1, false), *cb = mkctx(b, 1, false);
    int8_t all[NP];
    for (uint32_t i = 0; i < NP; i++) all[i] = 1;
    for (int step = 0; step < 2; step++) {
        /* step 0: the prompt; step 1: one more token */
        uint32_t n = step == 0 ? NP : 1;
        const int32_t *t = step == 0 ? PROMPT : &PROMPT[3];
        byoai_batch bf = {.n_tokens = n, .tokens = t};
        decode_ok(cf, &bf);
        byoai_batch ba = {.n_tokens = n, .tokens = t, .want = all};
        decode_ok(ca, &ba);
        assert_int_equal(byoai_get_n_outputs(ca), n);
        float *h = malloc((size_t)n * 64 * sizeof(float));
        for (uint32_t i = 0; i < n; i++) memcpy(h + i * 64, byoai_get_output(ca, i), 64 * sizeof(float));
        byoai_batch bb = {.n_tokens = n, .embd = h};
        decode_ok(cb, &bb);
        assert_close(byoai_get_output(cf, 0), byoai_get_output(cb, 0), 512, 1e-4f);
        free(h);
    }
    /* a tail model refuses token input; a head model refuses hidden states */
    byoai_error err;
    byoai_batch bad = {.n_tokens = 1, .tokens = PROMPT};
    assert_int_equal(byoai_decode(cb, &bad, &err), BYOAI_EINVAL);
    byoai_model *m;
    byoai_model_params p = {.layer_begin = 3, .layer_end = 9};
    assert_int_equal(byoai_model_load(path, &p, &m, &err), BYOAI_EINVAL);
    byoai_context_free(cf);
    byoai_context_free(ca);
    byoai_context_free(cb);
    byoai_model_free(full);
    byoai_model_free(a);
    byoai_model_free(b);
}

static void test_decode_errors(void **state) {
    (void)state;
    byoai_model *m = load(tu_shared("models/stories260K.gguf"), 0, 0);
    byoai_context *c = mkctx(m, 2, false);
    byoai_error err;
    byoai_batch b = {.n_tokens = 4, .tokens = PROMPT};
    decode_ok(c, &b);
    int32_t bad_tok[2] = {5, 512};
    byoai_batch b1 = {.n_tokens = 2, .tokens = bad_tok};
    assert_int_equal(byoai_decode(c, &b1, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "512"));
    int32_t pos[1] = {9}, seq[1] = {0};
    byoai_batch b2 = {.n_tokens = 1, .tokens = PROMPT, .pos = pos, .seq = seq};
    assert_int_equal(byoai_decode(c, &b2, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "next position is 4"));
    int32_t seq5[1] = {5};
    byoai_batch b3 = {.n_tokens = 1, .tokens = PROMPT, .seq = seq5};
    assert_int_equal(byoai_decode(c, &b3, &err), BYOAI_EINVAL);
    byoai_batch b4 = {.n_tokens = 0, .tokens = PROMPT};
    assert_int_equal(byoai_decode(c, &b4, &err), BYOAI_EINVAL);
    /* failures left the cache as it was */
    assert_int_equal(byoai_kv_len(c, 0), 4);
    /* filling the context: 128 positions, then a clear error */
    int32_t many[124];
    for (int i = 0; i < 124; i++) many[i] = 10 + i;
    byoai_batch b5 = {.n_tokens = 124, .tokens = many};
    decode_ok(c, &b5);
    byoai_batch b6 = {.n_tokens = 1, .tokens = PROMPT};
    assert_int_equal(byoai_decode(c, &b6, &err), BYOAI_ERANGE);
    assert_non_null(strstr(err.msg, "full"));
    assert_int_equal(byoai_kv_len(c, 0), 128);
    byoai_kv_truncate(c, 0, 10);
    assert_int_equal(byoai_kv_len(c, 0), 10);
    decode_ok(c, &b6);
    byoai_context_free(c);
    byoai_model_free(m);
}

/* ---- synthetic models --------------------------------------------------- */

enum { D = 64, FF = 96, NH = 4, NKV = 2, HD = 16, NL = 2, QD = NH * HD, KVD = NKV * HD };

typedef struct {
    float *embd, *out, *onorm;
    float *wq[NL], *wk[NL], *wv[NL], *wo[NL], *wg[NL], *wu[NL], *wd[NL], *an[NL], *fn[NL];
    uint32_t n_vocab;
} weights;

static float *rnd(size_t n, uint64_t *s, float scale) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = tu_rand_float(s) * scale;
    return p;
}

static void make_weights(weights *w, uint32_t n_vocab) {
    uint64_t s = 1234;
    w->n_vocab = n_vocab;
    w->embd = rnd((size_t)D * n_vocab, &s, 1.0f);
    w->out = rnd((size_t)D * n_vocab, &s, 0.3f);
    w->onorm = rnd(D, &s, 0.2f);
    for (int i = 0; i < D; i++) w->onorm[i] += 1;
    for (int l = 0; l < NL; l++) {
        w->wq[l] = rnd(QD * D, &s, 0.2f), w->wk[l] = rnd(KVD * D, &s, 0.2f), w->wv[l] = rnd(KVD * D, &s, 0.2f);
        w->wo[l] = rnd(D * QD, &s, 0.2f), w->wg[l] = rnd(FF * D, &s, 0.2f), w->wu[l] = rnd(FF * D, &s, 0.2f);
        w->wd[l] = rnd(D * FF, &s, 0.2f), w->an[l] = rnd(D, &s, 0.1f), w->fn[l] = rnd(D, &s, 0.1f);
        for (int i = 0; i < D; i++) w->an[l][i] += 1, w->fn[l][i] += 1;
    }
}

static void free_weights(weights *w) {
    free(w->embd), free(w->out), free(w->onorm);
    for (int l = 0; l < NL; l++)
        free(w->wq[l]), free(w->wk[l]), free(w->wv[l]), free(w->wo[l]), free(w->wg[l]), free(w->wu[l]),
            free(w->wd[l]), free(w->an[l]), free(w->fn[l]);
}

/* rows of a [heads x head_dim] projection reordered so that NeoX rotation
 * of the result equals normal rotation of the original */
static float *permute_for_neox(const float *w, int heads) {
    float *p = malloc((size_t)heads * HD * D * sizeof(float));
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < HD / 2; i++) {
            memcpy(p + ((size_t)h * HD + i) * D, w + ((size_t)h * HD + 2 * i) * D, D * sizeof(float));
            memcpy(p + ((size_t)h * HD + i + HD / 2) * D, w + ((size_t)h * HD + 2 * i + 1) * D, D * sizeof(float));
        }
    return p;
}

typedef enum { VARIANT_LLAMA, VARIANT_QWEN2, VARIANT_PHI3, VARIANT_GEMMA, VARIANT_QWEN3 } variant;

static void add(byoai_gguf_writer *wr, const char *name, const float *data, uint64_t ne0, uint64_t ne1) {
    byoai_error err;
    uint64_t ne[2] = {ne0, ne1};
    if (byoai_gguf_writer_add_tensor(wr, name, BYOAI_TYPE_F32, ne1 ? 2 : 1, ne, data, NULL, NULL, &err))
        fail_msg("%s", err.msg);
}

/* Write a model of the given variant; owned scratch goes in *keep (freed by caller). */
static void write_model(const char *path, const weights *w, variant v, float **keep, int *n_keep) {
    byoai_gguf *voc;
    byoai_error err;
    assert_int_equal(byoai_gguf_open(tu_shared("models/stories260K.gguf"), &voc, &err), 0);
    byoai_gguf_writer *wr;
    assert_int_equal(byoai_gguf_writer_new(&wr, &err), 0);
    const char *arch = v == VARIANT_LLAMA ? "llama" : v == VARIANT_QWEN2 ? "qwen2" : v == VARIANT_PHI3 ? "phi3"
                       : v == VARIANT_GEMMA ? "gemma" : "qwen3";
    byoai_gguf_writer_set_str(wr, "general.architecture", arch);
    char k[128];
#define SET(suffix, val) (snprintf(k, sizeof k, "%s." suffix, arch), byoai_gguf_writer_set_u32(wr, k, val))
    SET("context_length", 256);
    SET("embedding_length", D);
    SET("block_count", NL);
    SET("feed_forward_length", FF);
    SET("attention.head_count", NH);
    SET("attention.head_count_kv", NKV);
    SET("rope.dimension_count", HD);
#undef SET
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    byoai_gguf_writer_set_f32(wr, k, 1e-5f);
    for (uint64_t i = 0; i < voc->n_kv; i++)
        if (!strncmp(voc->kv[i].key, "tokenizer.", 10)) byoai_gguf_writer_set_value(wr, voc->kv[i].key, &voc->kv[i].value);
    add(wr, "token_embd.weight", w->embd, D, w->n_vocab);
    add(wr, "output_norm.weight", w->onorm, D, 0);
    if (v != VARIANT_GEMMA) add(wr, "output.weight", w->out, D, w->n_vocab);
    bool neox = v != VARIANT_LLAMA;
    for (int l = 0; l < NL; l++) {
        char n[64];
#define N(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        add(wr, N("attn_norm.weight"), w->an[l], D, 0);
        add(wr, N("ffn_norm.weight"), w->fn[l], D, 0);
        const float *q = w->wq[l], *kk = w->wk[l];
        if (neox) {
            q = keep[(*n_keep)++] = permute_for_neox(w->wq[l], NH);
            kk = keep[(*n_keep)++] = permute_for_neox(w->wk[l], NKV);
        }
        if (v == VARIANT_PHI3) {
            float *qkv = keep[(*n_keep)++] = malloc((size_t)(QD + 2 * KVD) * D * sizeof(float));
            memcpy(qkv, q, (size_t)QD * D * sizeof(float));
            memcpy(qkv + QD * D, kk, (size_t)KVD * D * sizeof(float));
            memcpy(qkv + (QD + KVD) * D, w->wv[l], (size_t)KVD * D * sizeof(float));
            add(wr, N("attn_qkv.weight"), qkv, D, QD + 2 * KVD);
            float *gu = keep[(*n_keep)++] = malloc((size_t)2 * FF * D * sizeof(float));
            memcpy(gu, w->wg[l], (size_t)FF * D * sizeof(float));
            memcpy(gu + FF * D, w->wu[l], (size_t)FF * D * sizeof(float));
            add(wr, N("ffn_up.weight"), gu, D, 2 * FF);
        } else {
            add(wr, N("attn_q.weight"), q, D, QD);
            add(wr, N("attn_k.weight"), kk, D, KVD);
            add(wr, N("attn_v.weight"), w->wv[l], D, KVD);
            add(wr, N("ffn_gate.weight"), w->wg[l], D, FF);
            add(wr, N("ffn_up.weight"), w->wu[l], D, FF);
        }
        if (v == VARIANT_QWEN2) { /* zero biases must change nothing */
            float *z = keep[(*n_keep)++] = calloc(QD, sizeof(float));
            add(wr, N("attn_q.bias"), z, QD, 0);
            add(wr, N("attn_k.bias"), z, KVD, 0);
            add(wr, N("attn_v.bias"), z, KVD, 0);
        }
        if (v == VARIANT_QWEN3) {
            float *ones = keep[(*n_keep)++] = malloc(HD * sizeof(float));
            for (int i = 0; i < HD; i++) ones[i] = 1;
            add(wr, N("attn_q_norm.weight"), ones, HD, 0);
            add(wr, N("attn_k_norm.weight"), ones, HD, 0);
        }
        add(wr, N("attn_output.weight"), w->wo[l], QD, D);
        add(wr, N("ffn_down.weight"), w->wd[l], FF, D);
#undef N
    }
    if (byoai_gguf_writer_write(wr, path, NULL, NULL, &err)) fail_msg("%s", err.msg);
    byoai_gguf_writer_free(wr);
    byoai_gguf_close(voc);
}

/* logits of the last of NP prompt tokens, and after one more token */
static void run_logits(const char *path, float *out1, float *out2) {
    byoai_model *m = load(path, 0, 0);
    byoai_context *c = mkctx(m, 1, false);
    byoai_batch b = {.n_tokens = NP, .tokens = PROMPT};
    decode_ok(c, &b);
    memcpy(out1, byoai_get_output(c, 0), 512 * sizeof(float));
    int32_t t = 42;
    byoai_batch b1 = {.n_tokens = 1, .tokens = &t};
    decode_ok(c, &b1);
    memcpy(out2, byoai_get_output(c, 0), 512 * sizeof(float));
    for (int i = 0; i < 512; i++) assert_true(isfinite(out1[i]) && isfinite(out2[i]));
    byoai_context_free(c);
    byoai_model_free(m);
}

static void test_arch_rows(void **state) {
    (void)state;
    weights w;
    make_weights(&w, 512);
    const char *dir = tu_tmpdir();
    float *keep[64];
    int n_keep = 0;
    char p[5][512];
    for (int v = 0; v < 5; v++) {
        snprintf(p[v], sizeof p[v], "%s/m%d.gguf", dir, v);
        write_model(p[v], &w, (variant)v, keep, &n_keep);
    }
    static float l1[5][512], l2[5][512];
    for (int v = 0; v < 5; v++) run_logits(p[v], l1[v], l2[v]);
    /* NeoX rows with permuted q/k == normal rope; fused phi3 == unfused qwen2 */
    assert_close(l1[VARIANT_LLAMA], l1[VARIANT_QWEN2], 512, 1e-4f);
    assert_close(l2[VARIANT_LLAMA], l2[VARIANT_QWEN2], 512, 1e-4f);
    assert_close(l1[VARIANT_QWEN2], l1[VARIANT_PHI3], 512, 1e-4f);
    assert_close(l2[VARIANT_QWEN2], l2[VARIANT_PHI3], 512, 1e-4f);
    /* gemma (GELU, scaled and tied embeddings) and qwen3 (q/k norms) differ */
    float diff_g = 0, diff_q = 0;
    for (int i = 0; i < 512; i++) {
        diff_g += fabsf(l1[VARIANT_GEMMA][i] - l1[VARIANT_QWEN2][i]);
        diff_q += fabsf(l1[VARIANT_QWEN3][i] - l1[VARIANT_QWEN2][i]);
    }
    assert_true(diff_g > 1.0f);
    assert_true(diff_q > 1.0f);
    /* the NeoX permutation matters: unpermuted weights under qwen2 differ */
    for (int i = 0; i < n_keep; i++) free(keep[i]);
    free_weights(&w);
    tu_rmtree(dir);
}

/* A model file with a shape or type problem is refused with a message
 * naming the tensor. */
static void test_model_validation(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    byoai_gguf *src;
    byoai_error err;
    assert_int_equal(byoai_gguf_open(tu_shared("models/stories260K.gguf"), &src, &err), 0);
    /* copy stories260K, but with blk.2.ffn_up.weight dropped; then with a wrong shape */
    for (int mode = 0; mode < 3; mode++) {
        byoai_gguf_writer *wr;
        assert_int_equal(byoai_gguf_writer_new(&wr, &err), 0);
        for (uint64_t i = 0; i < src->n_kv; i++) {
            if (mode == 2 && !strcmp(src->kv[i].key, "general.architecture")) {
                byoai_gguf_writer_set_str(wr, "general.architecture", "mamba");
                continue;
            }
            byoai_gguf_writer_set_value(wr, src->kv[i].key, &src->kv[i].value);
        }
        for (uint64_t i = 0; i < src->n_tensors; i++) {
            const byoai_gguf_tensor *t = &src->tensors[i];
            uint64_t ne[4];
            memcpy(ne, t->ne, sizeof ne);
            if (!strcmp(t->name, "blk.2.ffn_up.weight")) {
                if (mode == 0) continue;
                if (mode == 1) ne[0] = 32, ne[1] = t->n_elements / 32;
            }
            assert_int_equal(byoai_gguf_writer_add_tensor(wr, t->name, t->type, t->n_dims, ne, t->data, NULL, NULL, &err), 0);
        }
        assert_int_equal(byoai_gguf_writer_write(wr, path, NULL, NULL, &err), 0);
        byoai_gguf_writer_free(wr);
        byoai_model *m;
        int rc = byoai_model_load(path, NULL, &m, &err);
        if (mode == 2) {
            assert_int_equal(rc, BYOAI_EUNSUPPORTED);
            assert_non_null(strstr(err.msg, "mamba"));
        } else {
            assert_int_equal(rc, BYOAI_EFORMAT);
            assert_non_null(strstr(err.msg, "blk.2.ffn_up.weight"));
        }
    }
    byoai_gguf_close(src);
    tu_rmtree(dir);
}

static void test_embeddings_and_describe(void **state) {
    (void)state;
    byoai_model *m = load(tu_shared("models/stories260K.gguf"), 0, 0);
    byoai_context *c = mkctx(m, 1, true);
    byoai_batch b = {.n_tokens = 4, .tokens = PROMPT};
    decode_ok(c, &b);
    for (uint32_t i = 0; i < 4; i++) assert_non_null(byoai_get_embedding(c, i));
    assert_null(byoai_get_embedding(c, 4));
    byoai_model_info in;
    byoai_error err;
    assert_int_equal(byoai_model_describe(byoai_model_gguf(m), 100, &in, &err), 0);
    assert_string_equal(in.arch, "llama");
    assert_true(in.arch_supported);
    assert_int_equal(in.n_layer, 5);
    assert_int_equal(in.n_vocab, 512);
    assert_int_equal(in.type_count[BYOAI_TYPE_F32], 48);
    assert_string_equal(in.file_type, "F32");
    /* KV: 5 layers x 100 positions x 4 heads x 8 dims x (K+V) x 4 bytes */
    assert_int_equal(in.mem_kv_bytes, 5 * 100 * 32 * 2 * 4);
    assert_int_equal(byoai_model_kv_bytes_per_token(m), 5 * 32 * 2 * 4);
    byoai_context_free(c);
    byoai_model_free(m);

    /* absurd sizes from metadata saturate: "needs too much", never a
     * wrapped-around small number */
    byoai_gguf_writer *w;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    byoai_gguf_writer_set_str(w, "general.architecture", "llama");
    byoai_gguf_writer_set_u32(w, "llama.block_count", UINT32_MAX);
    byoai_gguf_writer_set_u32(w, "llama.embedding_length", UINT32_MAX);
    byoai_gguf_writer_set_u32(w, "llama.feed_forward_length", UINT32_MAX);
    byoai_gguf_writer_set_u32(w, "llama.attention.head_count", UINT32_MAX);
    byoai_gguf_writer_set_u32(w, "llama.attention.head_count_kv", UINT32_MAX);
    byoai_gguf_writer_set_u32(w, "llama.attention.key_length", UINT32_MAX);
    uint8_t *buf;
    size_t n;
    assert_int_equal(byoai_gguf_writer_to_buffer(w, &buf, &n, &err), 0);
    byoai_gguf_writer_free(w);
    byoai_gguf *g;
    assert_int_equal(byoai_gguf_parse(buf, n, &g, &err), 0);
    assert_int_equal(byoai_model_describe(g, UINT32_MAX, &in, &err), 0);
    assert_true(in.mem_kv_bytes == UINT64_MAX);
    assert_true(in.mem_buffer_bytes == UINT64_MAX);
    assert_true(in.mem_total_bytes == UINT64_MAX);
    byoai_gguf_close(g);
    free(buf);
}

/* vocabulary-only loads work for any architecture with a vocabulary; only
 * a full load (and a context) needs one this build runs */
static void test_vocab_only(void **state) {
    (void)state;
    byoai_model *m;
    byoai_error err = {0};
    byoai_model_params vp = {.vocab_only = true};
    assert_int_equal(byoai_model_load(tu_shared("vocab/ggml-vocab-gpt-2.gguf"), &vp, &m, &err), 0);
    assert_string_equal(byoai_model_hparams(m)->arch, "gpt2");
    assert_int_equal(byoai_model_hparams(m)->n_ctx_train, 1024);
    const byoai_tokenizer *tok = byoai_model_tokenizer(m);
    int32_t *ids;
    size_t n;
    assert_int_equal(byoai_tokenize(tok, "Hello world", 11, false, false, &ids, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 15496);
    assert_int_equal(ids[1], 995);
    free(ids);
    byoai_context *c;
    assert_int_equal(byoai_context_new(m, NULL, &c, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "vocabulary-only"));
    byoai_model_free(m);
    /* a full load still says what is missing */
    assert_int_equal(byoai_model_load(tu_shared("vocab/ggml-vocab-bert-bge.gguf"), NULL, &m, &err), BYOAI_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "architecture 'bert' is not supported"));
    assert_int_equal(byoai_model_load(tu_shared("vocab/ggml-vocab-bert-bge.gguf"), &vp, &m, &err), 0);
    assert_int_equal(byoai_tokenizer_n_vocab(byoai_model_tokenizer(m)), 30522);
    byoai_model_free(m);
}

/* general.file_type names the mix (Q4_K_M) when the tensors agree with it */
static void write_typed(const char *path, byoai_type type, int ftype) {
    byoai_gguf_writer *w;
    byoai_error err;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    byoai_gguf_writer_set_str(w, "general.architecture", "llama");
    if (ftype >= 0) byoai_gguf_writer_set_u32(w, "general.file_type", (uint32_t)ftype);
    const uint64_t ne[2] = {256, 4};
    const size_t bytes = (size_t)byoai_type_row_size(type, 256) * 4;
    uint8_t *data = calloc(1, bytes);
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", type, 2, ne, data, NULL, NULL, &err), 0);
    float norm[256] = {0};
    const uint64_t ne1[1] = {256};
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "blk.0.ffn_norm.weight", BYOAI_TYPE_F32, 1, ne1, norm, NULL, NULL, &err), 0);
    assert_int_equal(byoai_gguf_writer_write(w, path, NULL, NULL, &err), 0);
    byoai_gguf_writer_free(w);
    free(data);
}

static const char *file_type_of(const char *path) {
    byoai_gguf *g;
    byoai_error err;
    byoai_model_info in;
    assert_int_equal(byoai_gguf_open(path, &g, &err), 0);
    assert_int_equal(byoai_model_describe(g, 0, &in, &err), 0);
    byoai_gguf_close(g);
    return in.file_type; /* a static string */
}

static void test_file_type(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char p[600];
    snprintf(p, sizeof p, "%s/m.gguf", dir);
    write_typed(p, BYOAI_TYPE_Q4_K, 15);
    assert_string_equal(file_type_of(p), "Q4_K_M");
    write_typed(p, BYOAI_TYPE_Q4_K, 14);
    assert_string_equal(file_type_of(p), "Q4_K_S");
    write_typed(p, BYOAI_TYPE_Q5_0, 15); /* a Q4_K_M mix whose rows fell back to Q5_0 */
    assert_string_equal(file_type_of(p), "Q4_K_M");
    write_typed(p, BYOAI_TYPE_Q4_K, -1); /* no key: the dominant type */
    assert_string_equal(file_type_of(p), "Q4_K");
    write_typed(p, BYOAI_TYPE_F16, 15); /* the key lies: the tensors are float */
    assert_string_equal(file_type_of(p), "F16");
    write_typed(p, BYOAI_TYPE_Q8_0, 0); /* says all F32, is not */
    assert_string_equal(file_type_of(p), "Q8_0");
    write_typed(p, BYOAI_TYPE_Q4_K, 999); /* unknown number */
    assert_string_equal(file_type_of(p), "Q4_K");
    write_typed(p, BYOAI_TYPE_F16, 1 | 1024); /* llama.cpp's "guessed" flag */
    assert_string_equal(file_type_of(p), "F16");
    tu_rmtree(dir);
}

/* the default context: the trained one, unless its KV cache would not fit */
static void test_default_context(void **state) {
    (void)state;
    byoai_model *m = load(tu_shared("models/stories260K.gguf"), 0, 0);
    const uint64_t per_token = byoai_model_kv_bytes_per_token(m); /* 1280 bytes */
    assert_int_equal(byoai_context_default_n_ctx(m, 1, 1ull << 30), 128);
    assert_int_equal(byoai_context_default_n_ctx(m, 4, 1ull << 30), 128);
    /* too little memory for even the trained context: still the trained one (under 4096) */
    assert_int_equal(byoai_context_default_n_ctx(m, 1, per_token * 10), 128);
    byoai_context *c;
    byoai_error err;
    assert_int_equal(byoai_context_new(m, &(byoai_context_params){.n_threads = 1}, &c, &err), 0);
    assert_int_equal(byoai_context_n_ctx(c), 128);
    byoai_context_free(c);
    byoai_model_free(m);
    /* a long trained context: bounded by a quarter of the memory, in steps of 1024, never under 4096 */
    const char *dir = tu_tmpdir();
    char src[600];
    snprintf(src, sizeof src, "%s/long.gguf", dir);
    byoai_gguf *g;
    assert_int_equal(byoai_gguf_open(tu_shared("models/stories260K.gguf"), &g, &err), 0);
    byoai_gguf_writer *w;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, "llama.context_length")) byoai_gguf_writer_set_value(w, g->kv[i].key, &g->kv[i].value);
    byoai_gguf_writer_set_u32(w, "llama.context_length", 131072);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const byoai_gguf_tensor *t = &g->tensors[i];
        assert_int_equal(byoai_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, NULL, NULL, &err), 0);
    }
    assert_int_equal(byoai_gguf_writer_write(w, src, NULL, NULL, &err), 0);
    byoai_gguf_writer_free(w);
    byoai_gguf_close(g);
    m = load(src, 0, 0);
    assert_int_equal(byoai_context_default_n_ctx(m, 1, 1ull << 40), 131072);
    /* 1 GiB: a quarter holds 209715 tokens of 1280 bytes: all 131072 for one sequence, 52224 each for four */
    assert_int_equal(byoai_context_default_n_ctx(m, 1, 1ull << 30), 131072);
    assert_int_equal(byoai_context_default_n_ctx(m, 4, 1ull << 30), 52224);
    assert_int_equal(byoai_context_default_n_ctx(m, 4, 1ull << 20), 4096);
    byoai_model_free(m);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_greedy),   cmocka_unit_test(test_batch_equivalence),
        cmocka_unit_test(test_multi_sequence),   cmocka_unit_test(test_layer_split),
        cmocka_unit_test(test_decode_errors),    cmocka_unit_test(test_arch_rows),
        cmocka_unit_test(test_model_validation), cmocka_unit_test(test_embeddings_and_describe),
        cmocka_unit_test(test_vocab_only),       cmocka_unit_test(test_file_type),
        cmocka_unit_test(test_default_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
