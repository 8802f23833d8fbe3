/*
 * Contexts: the mutable state of inference (KV caches, scratch buffers, a
 * thread pool), and byoai_decode(), which validates a batch completely
 * before the forward pass touches any cache.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/model_internal.h"

#define MAX_SEQ 1024
#define MAX_CTX (1u << 20)
#define MAX_BATCH 8192

static void *alloc_floats(uint64_t n) {
    if (n == 0) n = 1;
    if (n > ((uint64_t)1 << 40)) return NULL;
    return byoai_aligned_alloc(64, (size_t)n * sizeof(float));
}

uint32_t byoai_context_default_n_ctx(const byoai_model *m, uint32_t n_seq, uint64_t ram_bytes) {
    const uint32_t trained = m->hp.n_ctx_train ? m->hp.n_ctx_train : 2048;
    uint32_t n = trained < MAX_CTX ? trained : MAX_CTX;
    if (!ram_bytes) {
        long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
        ram_bytes = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
    }
    /* the KV cache grows as the context fills: keep all of it for every
     * sequence within a quarter of the memory, never below the smaller of
     * the trained context and 4096 */
    const uint64_t per_token = byoai_model_kv_bytes_per_token(m) * (n_seq ? n_seq : 1);
    const uint32_t floor = trained < 4096 ? trained : 4096;
    if (ram_bytes && per_token && (uint64_t)n * per_token > ram_bytes / 4) {
        uint64_t fit = ram_bytes / 4 / per_token / 1024 * 1024;
        n = fit > floor ? (uint32_t)fit : floor;
    }
    return n;
}

int byoai_context_new(byoai_model *m, const byoai_context_params *params, byoai_context **out, byoai_error *err) {
    *out = NULL;
    if (!m->layers) return byoai_error_set(err, BYOAI_EINVAL, "model was loaded vocabulary-only; load it fully to run it");
    byoai_context_params p = params ? *params : (byoai_context_params){0};
    const byoai_hparams *hp = &m->hp;
    if (p.n_ctx == 0) p.n_ctx = byoai_context_default_n_ctx(m, p.n_seq, 0);
    if (p.n_seq == 0) p.n_seq = 1;
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_ctx > MAX_CTX) return byoai_error_set(err, BYOAI_ERANGE, "context of %u tokens is too large (max %u)", p.n_ctx, MAX_CTX);
    if (p.n_seq > MAX_SEQ) return byoai_error_set(err, BYOAI_ERANGE, "%u sequences is too many (max %u)", p.n_seq, MAX_SEQ);
    if (p.n_batch > MAX_BATCH) p.n_batch = MAX_BATCH;
    if (p.n_batch > p.n_ctx * p.n_seq) p.n_batch = p.n_ctx * p.n_seq;

    byoai_context *c = calloc(1, sizeof *c);
    if (!c) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    c->model = m;
    c->p = p;
    c->kernels = byoai_kernels_best();
    c->vec = byoai_vec_ops_best();
    int rc = byoai_pool_new(p.n_threads, &c->pool, err);
    if (rc) {
        free(c);
        return rc;
    }
    c->p.n_threads = byoai_pool_size(c->pool);

    const uint64_t d = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim,
                   kvd = (uint64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff, nb = p.n_batch;
    const uint32_t nl = m->layer_end - m->layer_begin;
    uint64_t per_seq = (uint64_t)p.n_ctx * kvd;
    c->k_cache = calloc((size_t)nl * p.n_seq, sizeof(float *));
    c->v_cache = calloc((size_t)nl * p.n_seq, sizeof(float *));
    c->kv_len = calloc(p.n_seq, sizeof(uint32_t));
    bool ok = c->k_cache && c->v_cache && c->kv_len;
    for (uint64_t i = 0; ok && i < (uint64_t)nl * p.n_seq; i++) {
        c->k_cache[i] = alloc_floats(per_seq);
        c->v_cache[i] = alloc_floats(per_seq);
        ok = c->k_cache[i] && c->v_cache[i];
    }
    uint64_t widest = d > qd ? d : qd;
    c->x = alloc_floats(nb * d);
    c->xb = alloc_floats(nb * widest);
    c->qkv = alloc_floats(nb * (qd + 2 * kvd));
    c->att = alloc_floats(nb * qd);
    c->hb = alloc_floats(nb * 2 * ff);
    c->hb2 = alloc_floats(nb * ff);
    c->scores = alloc_floats((uint64_t)c->p.n_threads * (hp->n_head / hp->n_head_kv) * p.n_ctx);
    c->inv_freq = alloc_floats(hp->n_rot / 2);
    c->rows_pos = malloc(nb * sizeof(int32_t));
    c->rows_seq = malloc(nb * sizeof(int32_t));
    /* quantized activations: at most ~1.2 bytes per element (Q8_K), or F32 */
    uint64_t max_in = d > ff ? d : ff;
    if (qd > max_in) max_in = qd;
    c->act_q_size = (size_t)(nb * (max_in + 256) * 4);
    c->act_q = byoai_aligned_alloc(64, c->act_q_size);
    ok = ok && c->x && c->xb && c->qkv && c->att && c->hb && c->hb2 && c->scores && c->inv_freq && c->act_q &&
         c->rows_pos && c->rows_seq;
    if (ok && m->pack_arena) {
        /* activations for packed weights: q rows for whole 16-token tiles */
        c->pk = byoai_packed_kernels_best();
        const uint64_t stride = (max_in + 63) / 64 * 64, nb16 = (nb + 15) / 16 * 16;
        c->act.stride = (size_t)stride;
        c->act.q = byoai_aligned_alloc(64, (size_t)(nb16 * stride));
        c->act.d = alloc_floats(nb * max_in / 32);
        c->act.s = alloc_floats(nb * max_in / 32);
        c->act.a32 = byoai_aligned_alloc(64, (size_t)(nb * max_in / 32 * sizeof(int32_t)));
        c->act.a16 = byoai_aligned_alloc(64, (size_t)(nb * max_in / 16 * sizeof(int32_t)));
        c->act_dt = alloc_floats(nb16 * max_in / 32);
        c->act_st = alloc_floats(nb16 * max_in / 32);
        c->pack_scratch_size = (BYOAI_PACK_SCRATCH(max_in) + 63) / 64 * 64;
        c->pack_scratch = byoai_aligned_alloc(64, c->pack_scratch_size * (size_t)c->p.n_threads);
        ok = c->pk && c->act.q && c->act.d && c->act.s && c->act.a32 && c->act.a16 && c->act_dt && c->act_st &&
             c->pack_scratch;
    }
    if (p.embeddings) {
        c->emb = alloc_floats(nb * d);
        ok = ok && c->emb;
    }
    if (!ok) {
        byoai_context_free(c);
        return byoai_error_set(err, BYOAI_ENOMEM,
                               "out of memory for a context of %u tokens x %u sequences (KV cache %.1f MiB); "
                               "try a smaller --ctx", p.n_ctx, p.n_seq,
                               (double)byoai_model_kv_bytes_per_token(m) * p.n_ctx * p.n_seq / 1048576.0);
    }
    for (uint32_t i = 0; i < hp->n_rot / 2; i++) {
        float f = powf(hp->rope_freq_base, -2.0f * (float)i / (float)hp->n_rot);
        if (m->rope_freqs) f /= m->rope_freqs[i];
        c->inv_freq[i] = f;
    }
    c->out_dim = m->has_head ? hp->n_vocab : hp->n_embd;
    *out = c;
    return 0;
}

void byoai_context_free(byoai_context *c) {
    if (!c) return;
    uint32_t nl = c->model->layer_end - c->model->layer_begin;
    for (uint64_t i = 0; i < (uint64_t)nl * c->p.n_seq; i++) {
        if (c->k_cache) free(c->k_cache[i]);
        if (c->v_cache) free(c->v_cache[i]);
    }
    free(c->k_cache);
    free(c->v_cache);
    free(c->kv_len);
    free(c->x);
    free(c->xb);
    free(c->qkv);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->scores);
    free(c->inv_freq);
    free(c->act_q);
    free(c->act.q);
    free(c->act.d);
    free(c->act.s);
    free(c->act.a32);
    free(c->act.a16);
    free(c->act_dt);
    free(c->act_st);
    free(c->pack_scratch);
    free(c->out);
    free(c->emb);
    free(c->rows_pos);
    free(c->rows_seq);
    byoai_pool_free(c->pool);
    free(c);
}

uint32_t byoai_context_n_ctx(const byoai_context *c) { return c->p.n_ctx; }
uint32_t byoai_context_n_seq(const byoai_context *c) { return c->p.n_seq; }
const byoai_model *byoai_context_model(const byoai_context *c) { return c->model; }

uint32_t byoai_kv_len(const byoai_context *c, uint32_t seq) { return seq < c->p.n_seq ? c->kv_len[seq] : 0; }

void byoai_kv_truncate(byoai_context *c, uint32_t seq, uint32_t len) {
    if (seq < c->p.n_seq && len < c->kv_len[seq]) c->kv_len[seq] = len;
}

const float *byoai_get_output(const byoai_context *c, uint32_t j) {
    return j < c->n_out ? c->out + (size_t)j * c->out_dim : NULL;
}
uint32_t byoai_get_n_outputs(const byoai_context *c) { return c->n_out; }

const float *byoai_get_embedding(const byoai_context *c, uint32_t i) {
    return c->emb && i < c->emb_rows ? c->emb + (size_t)i * c->model->hp.n_embd : NULL;
}

void byoai_context_perf(const byoai_context *c, byoai_perf *out) { *out = c->perf; }
void byoai_context_perf_reset(byoai_context *c) { memset(&c->perf, 0, sizeof c->perf); }

int byoai_decode(byoai_context *c, const byoai_batch *b, byoai_error *err) {
    const byoai_model *m = c->model;
    if (!b || b->n_tokens == 0) return byoai_error_set(err, BYOAI_EINVAL, "empty batch");
    if (b->n_tokens > c->p.n_batch)
        return byoai_error_set(err, BYOAI_ERANGE, "batch of %u tokens exceeds the context's batch size %u",
                               b->n_tokens, c->p.n_batch);
    if (m->has_embd && !b->tokens)
        return byoai_error_set(err, BYOAI_EINVAL, "this model starts at layer 0: the batch needs token ids");
    if (!m->has_embd && !b->embd)
        return byoai_error_set(err, BYOAI_EINVAL, "this model starts at layer %u: the batch needs hidden states",
                               m->layer_begin);
    const int32_t n_vocab = (int32_t)m->hp.n_vocab;
    /* Validate everything first: ids, sequences, positions, capacity. */
    uint32_t *len_after = calloc(c->p.n_seq, sizeof(uint32_t));
    if (!len_after) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    memcpy(len_after, c->kv_len, c->p.n_seq * sizeof(uint32_t));
    int rc = 0;
    uint32_t n_want = 0;
    for (uint32_t i = 0; i < b->n_tokens && !rc; i++) {
        int32_t s = b->seq ? b->seq[i] : 0;
        if (s < 0 || (uint32_t)s >= c->p.n_seq) {
            rc = byoai_error_set(err, BYOAI_EINVAL, "batch row %u: sequence %d is out of range (0..%u)", i, s,
                                 c->p.n_seq - 1);
            break;
        }
        if (b->tokens && (b->tokens[i] < 0 || b->tokens[i] >= n_vocab)) {
            rc = byoai_error_set(err, BYOAI_EINVAL, "batch row %u: token id %d is out of range (0..%d)", i,
                                 b->tokens[i], n_vocab - 1);
            break;
        }
        int32_t expect = (int32_t)len_after[s];
        int32_t p = b->pos ? b->pos[i] : expect;
        if (p != expect) {
            rc = byoai_error_set(err, BYOAI_EINVAL, "batch row %u: position %d of sequence %d does not follow on "
                                 "from its cache (next position is %d)", i, p, s, expect);
            break;
        }
        if ((uint32_t)p >= c->p.n_ctx) {
            rc = byoai_error_set(err, BYOAI_ERANGE, "sequence %d is full: context size is %u tokens; start a new "
                                 "conversation or use a larger --ctx", s, c->p.n_ctx);
            break;
        }
        len_after[s] = (uint32_t)p + 1;
        c->rows_pos[i] = p;
        c->rows_seq[i] = s;
        if (b->want ? b->want[i] != 0 : i == b->n_tokens - 1) n_want++;
    }
    if (rc) {
        free(len_after);
        return rc;
    }
    if (n_want > c->out_cap) {
        float *o = byoai_aligned_alloc(64, (size_t)n_want * c->out_dim * sizeof(float));
        if (!o) {
            free(len_after);
            return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for %u output rows", n_want);
        }
        free(c->out);
        c->out = o;
        c->out_cap = n_want;
    }
    double t0 = byoai_time_now();
    byoai_forward(c, b, c->rows_pos, c->rows_seq);
    double dt = byoai_time_now() - t0;
    memcpy(c->kv_len, len_after, c->p.n_seq * sizeof(uint32_t));
    free(len_after);
    if (b->n_tokens > 1) {
        c->perf.prompt_seconds += dt;
        c->perf.prompt_tokens += b->n_tokens;
    } else {
        c->perf.gen_seconds += dt;
        c->perf.gen_tokens += 1;
    }
    return 0;
}

void byoai_embedding_mean(const double *sum, uint32_t rows, uint32_t n_embd, float *out) {
    double norm = 0;
    for (uint32_t k = 0; k < n_embd; k++) {
        double x = sum[k] / (double)(rows ? rows : 1);
        out[k] = (float)x;
        norm += x * x;
    }
    norm = sqrt(norm);
    if (norm > 0)
        for (uint32_t k = 0; k < n_embd; k++) out[k] = (float)(out[k] / norm);
}
