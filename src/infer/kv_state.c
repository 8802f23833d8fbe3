/*
 * KV snapshots: one sequence's cache copied out of a context and back in,
 * so that a server can keep more conversations than it has sequence slots
 * (in memory or on disk) and resume one without evaluating its history
 * again. A snapshot of n positions is, for each layer the context runs in
 * order, n K rows then n V rows (F32, kv_dim values each): a prefix of the
 * positions is a prefix of every layer's rows, so restoring the first k
 * positions of a longer snapshot needs no other format.
 *
 * The model fingerprint says which snapshots belong to which weights: a
 * BLAKE2b hash of the file's header and metadata, its size, 32 samples of
 * its tensor data, and the layer range loaded.
 */
#include <sodium.h>
#include <string.h>

#include "infer/model_internal.h"

static uint64_t kv_dim(const byoai_context *c) {
    return (uint64_t)c->model->hp.n_head_kv * c->model->hp.head_dim;
}

static uint32_t n_layers(const byoai_context *c) { return c->model->layer_end - c->model->layer_begin; }

uint64_t byoai_kv_snapshot_bytes(const byoai_context *c, uint32_t n) {
    return (uint64_t)n_layers(c) * 2 * n * kv_dim(c) * sizeof(float);
}

int byoai_kv_snapshot_read(const byoai_context *c, uint32_t seq, uint32_t n, void *dst, uint64_t cap,
                           byoai_error *err) {
    if (seq >= c->p.n_seq) return byoai_error_set(err, BYOAI_EINVAL, "sequence %u is out of range", seq);
    if (n > c->kv_len[seq])
        return byoai_error_set(err, BYOAI_ERANGE, "sequence %u holds %u positions, not %u", seq, c->kv_len[seq], n);
    if (cap < byoai_kv_snapshot_bytes(c, n))
        return byoai_error_set(err, BYOAI_ERANGE, "snapshot buffer too small");
    const size_t rows = (size_t)n * kv_dim(c) * sizeof(float);
    uint8_t *p = dst;
    for (uint32_t l = 0; l < n_layers(c); l++) {
        size_t cache = (size_t)l * c->p.n_seq + seq;
        memcpy(p, c->k_cache[cache], rows);
        p += rows;
        memcpy(p, c->v_cache[cache], rows);
        p += rows;
    }
    return 0;
}

int byoai_kv_snapshot_write(byoai_context *c, uint32_t seq, const void *src, uint32_t n_src, uint32_t n_keep,
                            byoai_error *err) {
    if (seq >= c->p.n_seq) return byoai_error_set(err, BYOAI_EINVAL, "sequence %u is out of range", seq);
    if (n_keep > n_src) return byoai_error_set(err, BYOAI_ERANGE, "cannot keep %u of %u positions", n_keep, n_src);
    if (n_keep > c->p.n_ctx)
        return byoai_error_set(err, BYOAI_ERANGE, "a snapshot of %u positions does not fit a %u-token context",
                               n_keep, c->p.n_ctx);
    const size_t row = (size_t)kv_dim(c) * sizeof(float);
    const uint8_t *p = src;
    for (uint32_t l = 0; l < n_layers(c); l++) {
        size_t cache = (size_t)l * c->p.n_seq + seq;
        memcpy(c->k_cache[cache], p, row * n_keep);
        p += row * n_src;
        memcpy(c->v_cache[cache], p, row * n_keep);
        p += row * n_src;
    }
    c->kv_len[seq] = n_keep;
    return 0;
}

int byoai_kv_copy(byoai_context *c, uint32_t src, uint32_t dst, uint32_t n, byoai_error *err) {
    if (src >= c->p.n_seq || dst >= c->p.n_seq || src == dst)
        return byoai_error_set(err, BYOAI_EINVAL, "cannot copy sequence %u to %u", src, dst);
    if (n > c->kv_len[src])
        return byoai_error_set(err, BYOAI_ERANGE, "sequence %u holds %u positions, not %u", src, c->kv_len[src], n);
    const size_t rows = (size_t)n * kv_dim(c) * sizeof(float);
    for (uint32_t l = 0; l < n_layers(c); l++) {
        size_t a = (size_t)l * c->p.n_seq + src, b = (size_t)l * c->p.n_seq + dst;
        memcpy(c->k_cache[b], c->k_cache[a], rows);
        memcpy(c->v_cache[b], c->v_cache[a], rows);
    }
    c->kv_len[dst] = n;
    return 0;
}

void byoai_model_fingerprint(const byoai_model *m, uint8_t out[32]) {
    const byoai_gguf *g = m->gguf;
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    static const char tag[] = "byoai-model-fingerprint-v1";
    crypto_generichash_update(&h, (const uint8_t *)tag, sizeof tag);
    uint64_t head = g->data_offset < g->file_size ? g->data_offset : g->file_size;
    crypto_generichash_update(&h, g->base, (size_t)head);
    uint64_t meta[3] = {g->file_size, m->layer_begin, m->layer_end};
    crypto_generichash_update(&h, (const uint8_t *)meta, sizeof meta);
    const uint64_t data = g->file_size - head, chunk = 4096;
    for (uint64_t i = 0; i < 32 && data > 0; i++) {
        uint64_t off = head + data / 32 * i;
        uint64_t len = g->file_size - off < chunk ? g->file_size - off : chunk;
        crypto_generichash_update(&h, g->base + off, (size_t)len);
    }
    crypto_generichash_final(&h, out, 32);
}
