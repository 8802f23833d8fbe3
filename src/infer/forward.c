/*
 * The forward pass of a llama-family transformer over a batch of tokens.
 *
 *   x = embed(tokens)                                  [n, d]
 *   for each layer:
 *     x += Wo . attention(rope(Wq . norm(x)), rope(Wk . norm(x)), Wv . norm(x))
 *     x += Wdown . (act(Wgate . norm(x)) * (Wup . norm(x)))
 *   logits = Wout . norm(x)                            [n_wanted, vocab]
 *
 * Shapes in comments: n = tokens in the batch, d = n_embd, qd = n_head *
 * head_dim, kvd = n_head_kv * head_dim, ff = n_ff. One function per block,
 * in the order they run. Matrix products and attention run on the
 * context's thread pool; the small element-wise steps run on the caller.
 */
#include <math.h>
#include <string.h>

#include "infer/model_internal.h"

/* ---- matrix products ----------------------------------------------------- */

#define ROW_CHUNK 16 /* weight rows per work item */
#define TOK_TILE 8   /* activation rows reused per loaded weight row */

typedef struct {
    const byoai_weight *w;
    const float *x; /* [n, ne0] f32 input */
    void *xq;       /* [n] rows of the activation type */
    size_t xq_row;  /* bytes per activation row */
    uint32_t n;
    float *y; /* [n, ne1] */
    byoai_vec_dot_fn dot;
    byoai_quantize_act_fn quant;
    uint32_t n_chunks;
    uint32_t next_chunk; /* atomic work counter */
} matmul_job;

static void matmul_quantize(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    for (uint32_t i = (uint32_t)ith; i < j->n; i += (uint32_t)nth)
        j->quant(j->x + (size_t)i * j->w->ne0, (uint8_t *)j->xq + i * j->xq_row, (int64_t)j->w->ne0);
}

static void matmul_rows(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    matmul_job *j = arg;
    const byoai_weight *w = j->w;
    const uint64_t rows = w->ne1;
    for (;;) {
        uint32_t c = __atomic_fetch_add(&j->next_chunk, 1, __ATOMIC_RELAXED);
        if (c >= j->n_chunks) break;
        uint64_t r0 = (uint64_t)c * ROW_CHUNK, r1 = r0 + ROW_CHUNK < rows ? r0 + ROW_CHUNK : rows;
        for (uint32_t t0 = 0; t0 < j->n; t0 += TOK_TILE) {
            uint32_t t1 = t0 + TOK_TILE < j->n ? t0 + TOK_TILE : j->n;
            for (uint64_t r = r0; r < r1; r++) {
                const uint8_t *wr = (const uint8_t *)w->data + r * w->row_bytes;
                for (uint32_t t = t0; t < t1; t++)
                    j->dot((int64_t)w->ne0, &j->y[(size_t)t * rows + r], wr, (const uint8_t *)j->xq + t * j->xq_row);
            }
        }
    }
}

/* ---- packed weights: tiles of 16 rows (packed.h) ---------------------------- */

#define PACK_QUANT_SERIAL 4 /* up to this many tokens, quantize on the caller */

typedef struct {
    byoai_context *ctx;
    const float *x;
    uint32_t n;
    int count;
    const byoai_packed *w[3];
    float *y[3];
    byoai_packed_fn fn[3];
    uint64_t chunk_tiles[3];
    uint64_t first[4]; /* first work item of each weight */
    uint32_t next;     /* atomic work counter */
} packed_job;

static void packed_quantize(void *arg, int ith, int nth) {
    packed_job *j = arg;
    const uint32_t per = (j->n + (uint32_t)nth - 1) / (uint32_t)nth, t0 = per * (uint32_t)ith;
    const uint32_t t1 = t0 + per < j->n ? t0 + per : j->n;
    if (t0 < t1) byoai_act_quantize_rows(j->ctx->pk, j->x, j->ctx->act.k, t0, t1, &j->ctx->act);
}

static void packed_rows(void *arg, int ith, int nth) {
    (void)nth;
    packed_job *j = arg;
    void *scratch = j->ctx->pack_scratch + (size_t)ith * j->ctx->pack_scratch_size;
    int wi = 0;
    for (;;) {
        const uint64_t item = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (item >= j->first[j->count]) break;
        while (item >= j->first[wi + 1]) wi++;
        const byoai_packed *w = j->w[wi];
        const uint64_t t0 = (item - j->first[wi]) * j->chunk_tiles[wi];
        const uint64_t t1 = t0 + j->chunk_tiles[wi] < w->n_tiles ? t0 + j->chunk_tiles[wi] : w->n_tiles;
        j->fn[wi](w, t0, t1, &j->ctx->act, j->y[wi], (size_t)w->rows, scratch);
    }
}

/* y[i][n, rows_i] = x[n, k] . W_i^T for packed weights sharing k */
static void matmul_packed(byoai_context *ctx, const byoai_weight *const *w, float *const *y, int count,
                          const float *x, uint32_t n) {
    const byoai_packed_kernels *pk = ctx->pk;
    const uint32_t k = (uint32_t)w[0]->ne0;
    const int nth = byoai_pool_size(ctx->pool);
    packed_job j = {.ctx = ctx, .x = x, .n = n, .count = count};
    bool any_large = false;
    for (int i = 0; i < count; i++) any_large = any_large || (pk->large[w[i]->type] && n >= pk->large_min_n);
    ctx->act.n = n;
    ctx->act.k = k;
    ctx->act.dt = any_large ? ctx->act_dt : NULL;
    ctx->act.st = any_large ? ctx->act_st : NULL;
    if (n <= PACK_QUANT_SERIAL) byoai_act_quantize_rows(pk, x, k, 0, n, &ctx->act);
    else byoai_pool_run(ctx->pool, packed_quantize, &j);
    if (any_large) byoai_act_pad(&ctx->act);
    for (int i = 0; i < count; i++) {
        const byoai_packed *p = &w[i]->packed;
        const bool large = pk->large[p->type] && n >= pk->large_min_n;
        j.w[i] = p;
        j.y[i] = y[i];
        j.fn[i] = large ? pk->large[p->type] : pk->small[p->type];
        /* ~8 work items per thread: balance when threads are descheduled */
        uint64_t ct = p->n_tiles / (uint64_t)(8 * nth);
        j.chunk_tiles[i] = ct ? ct : 1;
        j.first[i + 1] = j.first[i] + (p->n_tiles + j.chunk_tiles[i] - 1) / j.chunk_tiles[i];
    }
    byoai_pool_run(ctx->pool, packed_rows, &j);
}

void byoai_matmul_multi(byoai_context *ctx, const byoai_weight *const *w, float *const *y, int count, const float *x,
                        uint32_t n) {
    bool packed = ctx->pk != NULL;
    for (int i = 0; i < count; i++) packed = packed && w[i]->packed.data && w[i]->ne0 == w[0]->ne0;
    if (packed) {
        matmul_packed(ctx, w, y, count, x, n);
        return;
    }
    for (int i = 0; i < count; i++) byoai_matmul(ctx, w[i], x, n, y[i]);
}

/* y[n, ne1] = x[n, ne0] . W^T */
void byoai_matmul(byoai_context *ctx, const byoai_weight *w, const float *x, uint32_t n, float *y) {
    if (ctx->pk && w->packed.data) {
        matmul_packed(ctx, &w, &y, 1, x, n);
        return;
    }
    const byoai_kernels *k = ctx->kernels;
    byoai_type at = byoai_type_activation(w->type);
    matmul_job j = {.w = w, .x = x, .n = n, .y = y, .dot = k->vec_dot[w->type]};
    j.n_chunks = (uint32_t)((w->ne1 + ROW_CHUNK - 1) / ROW_CHUNK);
    if (at == BYOAI_TYPE_F32) {
        j.xq = (void *)x;
        j.xq_row = (size_t)w->ne0 * sizeof(float);
    } else {
        j.quant = k->quantize_act[at];
        j.xq = ctx->act_q;
        j.xq_row = (size_t)byoai_type_row_size(at, w->ne0);
        byoai_pool_run(ctx->pool, matmul_quantize, &j);
    }
    byoai_pool_run(ctx->pool, matmul_rows, &j);
}

/* ---- element-wise pieces ------------------------------------------------ */

/* out = x / rms(x) * w, over n values */
static void rmsnorm(float *out, const float *x, const float *w, uint32_t n, float eps) {
    double ss = 0;
    for (uint32_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (uint32_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void add_bias(float *y, const float *b, uint32_t n_rows, uint32_t dim, uint32_t stride) {
    if (!b) return;
    for (uint32_t i = 0; i < n_rows; i++)
        for (uint32_t j = 0; j < dim; j++) y[(size_t)i * stride + j] += b[j];
}

/* rotate the first n_rot dims of each head of vec (n_heads x head_dim) */
static void rope(float *vec, uint32_t n_heads, const byoai_hparams *hp, const float *inv_freq, int32_t pos) {
    const uint32_t half = hp->n_rot / 2;
    for (uint32_t i = 0; i < half; i++) {
        float theta = (float)pos * inv_freq[i];
        float c = cosf(theta), s = sinf(theta);
        for (uint32_t h = 0; h < n_heads; h++) {
            float *v = vec + (size_t)h * hp->head_dim;
            uint32_t a, b;
            if (hp->rope_type == BYOAI_ROPE_NEOX) { a = i; b = i + half; }
            else { a = 2 * i; b = 2 * i + 1; }
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

static inline float gelu(float x) {
    /* tanh approximation, as the GELU models here were trained with */
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* ---- blocks ----------------------------------------------------------------- */

static void embed(byoai_context *ctx, const byoai_batch *b) {
    const byoai_model *m = ctx->model;
    const uint32_t d = m->hp.n_embd;
    if (!m->has_embd) {
        memcpy(ctx->x, b->embd, (size_t)b->n_tokens * d * sizeof(float));
        return;
    }
    const byoai_type_ops *ops = byoai_type_ops_get(m->tok_embd.type);
    for (uint32_t i = 0; i < b->n_tokens; i++) {
        const uint8_t *row = (const uint8_t *)m->tok_embd.data + (size_t)b->tokens[i] * m->tok_embd.row_bytes;
        float *x = ctx->x + (size_t)i * d;
        ops->dequantize(row, x, d);
        if (m->arch->embd_scale) {
            float s = sqrtf((float)d);
            for (uint32_t j = 0; j < d; j++) x[j] *= s;
        }
    }
}

typedef struct {
    byoai_context *ctx;
    uint32_t layer; /* index into the context's caches */
    uint32_t n;
    const int32_t *pos, *seq;
    const float *q;
    size_t q_stride;
    uint32_t split; /* each KV head's query heads in this many tasks */
    uint32_t window; /* attend to the last `window` positions only; 0: all */
} attn_job;

/* one (token, KV head) pair at a time: the query heads sharing the KV head
 * attend together (softmax(q . K^T / sqrt(hd)) . V over positions 0..pos of
 * the token's own sequence), reading that head's cache once */
static void attention_heads(void *arg, int ith, int nth) {
    attn_job *j = arg;
    byoai_context *ctx = j->ctx;
    const byoai_hparams *hp = &ctx->model->hp;
    const uint32_t hd = hp->head_dim, kvd = hp->n_head_kv * hd, group = hp->n_head / hp->n_head_kv;
    const uint32_t qd = hp->n_head * hd;
    const float scale = hp->q_scale, cap = hp->attn_softcap;
    float *scores = ctx->scores + (size_t)ith * group * ctx->p.n_ctx;
    const uint32_t g = group / j->split, per_token = hp->n_head_kv * j->split;
    const uint32_t tasks = j->n * per_token;
    for (uint32_t task = (uint32_t)ith; task < tasks; task += (uint32_t)nth) {
        const uint32_t i = task / per_token, kvh = task % per_token / j->split, h0 = kvh * group + task % j->split * g;
        const int32_t pos = j->pos[i];
        const size_t cache = (size_t)j->layer * ctx->p.n_seq + (size_t)j->seq[i];
        /* a sliding window starts at the oldest position it still sees */
        const uint32_t first = j->window && (uint32_t)pos + 1 > j->window ? (uint32_t)pos + 1 - j->window : 0;
        const float *K = ctx->k_cache[cache] + (size_t)first * kvd + (size_t)kvh * hd;
        const float *V = ctx->v_cache[cache] + (size_t)first * kvd + (size_t)kvh * hd;
        const float *q = j->q + (size_t)i * j->q_stride + (size_t)h0 * hd;
        float *out = ctx->att + (size_t)i * qd + (size_t)h0 * hd;
        const uint32_t n_pos = (uint32_t)pos + 1 - first;
        if (cap > 0) byoai_attend_capped(q, g, K, V, kvd, n_pos, hd, scale, cap, scores, out);
        else ctx->vec->attend(q, g, K, V, kvd, n_pos, hd, scale, scores, out);
    }
}

static void attention_block(byoai_context *ctx, uint32_t il, uint32_t n, const int32_t *pos, const int32_t *seq) {
    const byoai_model *m = ctx->model;
    const byoai_hparams *hp = &m->hp;
    const byoai_layer *L = &m->layers[il];
    const uint32_t d = hp->n_embd, hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
    const uint32_t li = il - m->layer_begin;

    /* xb = norm(x) */
    for (uint32_t i = 0; i < n; i++) rmsnorm(ctx->xb + (size_t)i * d, ctx->x + (size_t)i * d, L->attn_norm, d, hp->norm_eps);

    /* q [n, qd], k [n, kvd], v [n, kvd]: either one fused product or three */
    float *q, *k, *v;
    size_t qs, ks;
    if (L->wqkv.data) {
        byoai_matmul(ctx, &L->wqkv, ctx->xb, n, ctx->qkv);
        add_bias(ctx->qkv, L->bqkv, n, qd + 2 * kvd, qd + 2 * kvd);
        q = ctx->qkv, k = q + qd, v = k + kvd;
        qs = ks = qd + 2 * kvd;
    } else {
        q = ctx->qkv, k = q + (size_t)n * qd, v = k + (size_t)n * kvd;
        qs = qd, ks = kvd;
        const byoai_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
        float *const ys[3] = {q, k, v};
        byoai_matmul_multi(ctx, ws, ys, 3, ctx->xb, n);
        add_bias(q, L->bq, n, qd, qd);
        add_bias(k, L->bk, n, kvd, kvd);
        add_bias(v, L->bv, n, kvd, kvd);
    }

    for (uint32_t i = 0; i < n; i++) {
        float *qi = q + i * qs, *ki = k + i * ks, *vi = v + i * ks;
        if (L->q_norm)
            for (uint32_t h = 0; h < hp->n_head; h++) rmsnorm(qi + h * hd, qi + h * hd, L->q_norm, hd, hp->norm_eps);
        if (L->k_norm)
            for (uint32_t h = 0; h < hp->n_head_kv; h++) rmsnorm(ki + h * hd, ki + h * hd, L->k_norm, hd, hp->norm_eps);
        rope(qi, hp->n_head, hp, ctx->inv_freq, pos[i]);
        rope(ki, hp->n_head_kv, hp, ctx->inv_freq, pos[i]);
        size_t cache = (size_t)li * ctx->p.n_seq + (size_t)seq[i];
        memcpy(ctx->k_cache[cache] + (size_t)pos[i] * kvd, ki, kvd * sizeof(float));
        memcpy(ctx->v_cache[cache] + (size_t)pos[i] * kvd, vi, kvd * sizeof(float));
    }

    /* few tasks (one token, few KV heads): split each group of query heads
     * so every thread has work, at the cost of reading a KV head twice */
    const uint32_t nth = (uint32_t)byoai_pool_size(ctx->pool), group = hp->n_head / hp->n_head_kv;
    uint32_t split = 1;
    while (n * hp->n_head_kv * split < 2 * nth && group % (2 * split) == 0) split *= 2;
    const uint32_t window = hp->n_swa && il % 2 == 0 ? hp->n_swa : 0; /* Gemma 2: even layers slide */
    attn_job j = {ctx, li, n, pos, seq, q, qs, split, window};
    byoai_pool_run(ctx->pool, attention_heads, &j);

    /* x += [post_norm](Wo . att) */
    byoai_matmul(ctx, &L->wo, ctx->att, n, ctx->xb);
    add_bias(ctx->xb, L->bo, n, d, d);
    if (L->post_attn_norm)
        for (uint32_t i = 0; i < n; i++) rmsnorm(ctx->xb + (size_t)i * d, ctx->xb + (size_t)i * d, L->post_attn_norm, d, hp->norm_eps);
    for (size_t i = 0; i < (size_t)n * d; i++) ctx->x[i] += ctx->xb[i];
}

static void ffn_block(byoai_context *ctx, uint32_t il, uint32_t n) {
    const byoai_model *m = ctx->model;
    const byoai_hparams *hp = &m->hp;
    const byoai_layer *L = &m->layers[il];
    const uint32_t d = hp->n_embd, ff = hp->n_ff;

    for (uint32_t i = 0; i < n; i++) rmsnorm(ctx->xb + (size_t)i * d, ctx->x + (size_t)i * d, L->ffn_norm, d, hp->norm_eps);

    /* h [n, ff] = act(gate) * up, into hb2 */
    const bool gelu_act = hp->act == BYOAI_ACT_GELU;
    if (!L->w_gate.data) { /* fused [gate; up] rows */
        byoai_matmul(ctx, &L->w_up, ctx->xb, n, ctx->hb);
        for (uint32_t i = 0; i < n; i++) {
            const float *g = ctx->hb + (size_t)i * 2 * ff, *u = g + ff;
            float *h = ctx->hb2 + (size_t)i * ff;
            if (gelu_act)
                for (uint32_t e = 0; e < ff; e++) h[e] = gelu(g[e]) * u[e];
            else
                ctx->vec->silu_mul(h, g, u, ff);
        }
    } else {
        const byoai_weight *ws[2] = {&L->w_gate, &L->w_up};
        float *const ys[2] = {ctx->hb, ctx->hb2};
        byoai_matmul_multi(ctx, ws, ys, 2, ctx->xb, n);
        if (gelu_act)
            for (size_t e = 0; e < (size_t)n * ff; e++) ctx->hb2[e] = gelu(ctx->hb[e]) * ctx->hb2[e];
        else
            ctx->vec->silu_mul(ctx->hb2, ctx->hb, ctx->hb2, (size_t)n * ff);
    }

    /* x += [post_norm](Wdown . h) */
    byoai_matmul(ctx, &L->w_down, ctx->hb2, n, ctx->xb);
    if (L->post_ffn_norm)
        for (uint32_t i = 0; i < n; i++) rmsnorm(ctx->xb + (size_t)i * d, ctx->xb + (size_t)i * d, L->post_ffn_norm, d, hp->norm_eps);
    for (size_t i = 0; i < (size_t)n * d; i++) ctx->x[i] += ctx->xb[i];
}

/* outputs of the wanted rows: logits, or hidden states for a partial model */
static void output_head(byoai_context *ctx, const byoai_batch *b) {
    const byoai_model *m = ctx->model;
    const byoai_hparams *hp = &m->hp;
    const uint32_t d = hp->n_embd;
    uint32_t n_out = 0;
    for (uint32_t i = 0; i < b->n_tokens; i++) {
        bool want = b->want ? b->want[i] != 0 : i == b->n_tokens - 1;
        if (!want) continue;
        if (m->has_head) rmsnorm(ctx->xb + (size_t)n_out * d, ctx->x + (size_t)i * d, m->out_norm, d, hp->norm_eps);
        else memcpy(ctx->out + (size_t)n_out * d, ctx->x + (size_t)i * d, d * sizeof(float));
        n_out++;
    }
    ctx->n_out = n_out;
    if (ctx->emb && m->has_head) {
        for (uint32_t i = 0; i < b->n_tokens; i++)
            rmsnorm(ctx->emb + (size_t)i * d, ctx->x + (size_t)i * d, m->out_norm, d, hp->norm_eps);
        ctx->emb_rows = b->n_tokens;
    }
    if (!m->has_head || n_out == 0) return;
    byoai_matmul(ctx, &m->output, ctx->xb, n_out, ctx->out);
    if (hp->final_softcap > 0) {
        const float cap = hp->final_softcap;
        for (size_t e = 0; e < (size_t)n_out * hp->n_vocab; e++) ctx->out[e] = cap * tanhf(ctx->out[e] / cap);
    }
    /* ids past the tokenizer's vocabulary (padding rows) can never be sampled */
    int32_t n_tok = byoai_tokenizer_n_vocab(m->tok);
    for (uint32_t j = 0; j < n_out; j++)
        for (uint32_t v = (uint32_t)n_tok; v < hp->n_vocab; v++) ctx->out[(size_t)j * hp->n_vocab + v] = -INFINITY;
}

void byoai_forward(byoai_context *ctx, const byoai_batch *b, const int32_t *pos, const int32_t *seq) {
    const byoai_model *m = ctx->model;
    embed(ctx, b);
    for (uint32_t il = m->layer_begin; il < m->layer_end; il++) {
        attention_block(ctx, il, b->n_tokens, pos, seq);
        ffn_block(ctx, il, b->n_tokens);
    }
    output_head(ctx, b);
}
