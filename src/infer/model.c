/*
 * Model loading: hyper-parameters from metadata, tensors located and checked
 * against the shapes the architecture implies. Weights stay in the mapping.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "infer/model_internal.h"

#define MAX_DIM (1u << 20)
#define MAX_LAYERS 4096

static int keep_owned(byoai_model *m, void *p) {
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **n = realloc(m->owned, cap * sizeof *n);
        if (!n) return BYOAI_ENOMEM;
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return 0;
}

/* metadata "<arch>.<suffix>" as u32; required or default */
static int hp_u32(const byoai_gguf *g, const char *arch, const char *suffix, bool required, uint32_t def,
                  uint32_t *out, byoai_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const byoai_gguf_kv *kv = byoai_gguf_find(g, key);
    if (kv && kv->value.type == BYOAI_GGUF_ARRAY)
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "metadata '%s' is a per-layer array; models with "
                               "varying layer shapes are not supported", key);
    int rc = byoai_gguf_get_u32(g, key, out, err);
    if (rc == BYOAI_ENOTFOUND) {
        if (required) return byoai_error_set(err, BYOAI_EFORMAT, "metadata '%s' is missing", key);
        *out = def;
        return 0;
    }
    return rc;
}

static int hp_f32(const byoai_gguf *g, const char *arch, const char *suffix, float def, float *out,
                  byoai_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = byoai_gguf_get_f32(g, key, out, err);
    if (rc == BYOAI_ENOTFOUND) {
        *out = def;
        return 0;
    }
    if (!rc && !isfinite(*out)) return byoai_error_set(err, BYOAI_EFORMAT, "metadata '%s' is not finite", key);
    return rc;
}

/* What a vocabulary-only load keeps of an architecture this build cannot
 * run: the tokenizer needs no forward pass, so the hyper-parameters are
 * read as far as they are there and not checked (no context can be made). */
static void read_hparams_unchecked(byoai_model *m) {
    const byoai_gguf *g = m->gguf;
    byoai_hparams *hp = &m->hp;
    const char *a = hp->arch;
    hp_u32(g, a, "context_length", false, 0, &hp->n_ctx_train, NULL);
    hp_u32(g, a, "embedding_length", false, 0, &hp->n_embd, NULL);
    hp_u32(g, a, "block_count", false, 0, &hp->n_layer, NULL);
    hp_u32(g, a, "feed_forward_length", false, 0, &hp->n_ff, NULL);
    hp_u32(g, a, "attention.head_count", false, 0, &hp->n_head, NULL);
    hp_u32(g, a, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv, NULL);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        hp->n_params += g->tensors[i].n_elements;
        hp->weight_bytes += g->tensors[i].size;
    }
}

static int read_hparams(byoai_model *m, bool vocab_only, byoai_error *err) {
    const byoai_gguf *g = m->gguf;
    byoai_hparams *hp = &m->hp;
    byoai_gguf_str arch;
    int rc = byoai_gguf_get_str(g, "general.architecture", &arch, err);
    if (rc == BYOAI_ENOTFOUND)
        return byoai_error_set(err, BYOAI_EFORMAT, "metadata 'general.architecture' is missing");
    if (rc) return rc;
    if (arch.len == 0 || arch.len >= sizeof hp->arch)
        return byoai_error_set(err, BYOAI_EFORMAT, "general.architecture has a bad length (%llu)",
                               (unsigned long long)arch.len);
    memcpy(hp->arch, arch.ptr, arch.len);
    hp->arch[arch.len] = '\0';
    m->arch = byoai_arch_find(hp->arch);
    if (!m->arch && vocab_only) {
        read_hparams_unchecked(m);
        return 0;
    }
    if (!m->arch)
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "architecture '%s' is not supported (supported: %s)",
                               hp->arch, byoai_arch_names());
    const char *a = hp->arch;
    if ((rc = hp_u32(g, a, "embedding_length", true, 0, &hp->n_embd, err)) ||
        (rc = hp_u32(g, a, "block_count", true, 0, &hp->n_layer, err)) ||
        (rc = hp_u32(g, a, "context_length", false, 0, &hp->n_ctx_train, err)) ||
        (rc = hp_u32(g, a, "feed_forward_length", true, 0, &hp->n_ff, err)) ||
        (rc = hp_u32(g, a, "attention.head_count", true, 0, &hp->n_head, err)))
        return rc;
    if ((rc = hp_u32(g, a, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv, err))) return rc;
    if (hp->n_embd == 0 || hp->n_embd > MAX_DIM)
        return byoai_error_set(err, BYOAI_EFORMAT, "%s.embedding_length = %u is out of range", a, hp->n_embd);
    if (hp->n_layer == 0 || hp->n_layer > MAX_LAYERS)
        return byoai_error_set(err, BYOAI_EFORMAT, "%s.block_count = %u is out of range (1..%u)", a, hp->n_layer,
                               MAX_LAYERS);
    if (hp->n_ff == 0 || hp->n_ff > 8 * MAX_DIM)
        return byoai_error_set(err, BYOAI_EFORMAT, "%s.feed_forward_length = %u is out of range", a, hp->n_ff);
    if (hp->n_head == 0 || hp->n_head > hp->n_embd)
        return byoai_error_set(err, BYOAI_EFORMAT, "%s.attention.head_count = %u is out of range", a, hp->n_head);
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv)
        return byoai_error_set(err, BYOAI_EFORMAT, "%s.attention.head_count_kv = %u must divide head_count = %u", a,
                               hp->n_head_kv, hp->n_head);
    if ((rc = hp_u32(g, a, "attention.key_length", false, hp->n_embd / hp->n_head, &hp->head_dim, err))) return rc;
    uint32_t vlen;
    if ((rc = hp_u32(g, a, "attention.value_length", false, hp->head_dim, &vlen, err))) return rc;
    if (vlen != hp->head_dim)
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "value length %u differs from key length %u", vlen,
                               hp->head_dim);
    if (hp->head_dim == 0 || hp->head_dim % 2 || hp->head_dim > 4096)
        return byoai_error_set(err, BYOAI_EFORMAT, "head dimension %u must be even and at most 4096", hp->head_dim);
    if ((rc = hp_u32(g, a, "rope.dimension_count", false, hp->head_dim, &hp->n_rot, err))) return rc;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return byoai_error_set(err, BYOAI_EFORMAT, "%s.rope.dimension_count = %u must be even and at most the head "
                               "dimension %u", a, hp->n_rot, hp->head_dim);
    if ((rc = hp_f32(g, a, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps, err))) return rc;
    if ((rc = hp_f32(g, a, "rope.freq_base", 10000.0f, &hp->rope_freq_base, err))) return rc;
    if (hp->norm_eps <= 0 || hp->norm_eps > 1)
        return byoai_error_set(err, BYOAI_EFORMAT, "norm epsilon %g is out of range", (double)hp->norm_eps);
    if (hp->rope_freq_base <= 1)
        return byoai_error_set(err, BYOAI_EFORMAT, "rope frequency base %g is out of range", (double)hp->rope_freq_base);
    hp->rope_type = m->arch->rope;
    hp->act = m->arch->act;
    if ((rc = hp_f32(g, a, "attn_logit_softcapping", 0, &hp->attn_softcap, err)) ||
        (rc = hp_f32(g, a, "final_logit_softcapping", 0, &hp->final_softcap, err)))
        return rc;
    if (hp->attn_softcap < 0 || hp->final_softcap < 0)
        return byoai_error_set(err, BYOAI_EFORMAT, "a logit soft-capping value is negative");
    if ((rc = hp_u32(g, a, "attention.sliding_window", false, m->arch->swa_alternate ? 4096 : 0, &hp->n_swa, err)))
        return rc;
    if (!m->arch->swa_alternate) hp->n_swa = 0;
    /* Gemma 2 27B (46 layers) scales queries by 1/sqrt(n_embd / n_head), the
     * others by 1/sqrt(head_dim), as its reference code does */
    hp->q_scale = 1.0f / sqrtf((float)hp->head_dim);
    if (!strcmp(a, "gemma2") && hp->n_layer == 46) hp->q_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        hp->n_params += g->tensors[i].n_elements;
        hp->weight_bytes += g->tensors[i].size;
    }
    return 0;
}

/* Weights are read in place from the mapping, so they must sit where the
 * kernels can load their type (a file written with general.alignment 1 or 2
 * may not): refuse such a tensor with what to do, rather than run with
 * misaligned loads (undefined behaviour; a fault on some CPUs). */
static int check_aligned(const byoai_model *m, const byoai_gguf_tensor *t, byoai_error *err) {
    uint32_t a = byoai_type_alignment(t->type);
    if ((uintptr_t)t->data % a == 0) return 0;
    return byoai_error_set(err, BYOAI_EFORMAT,
                           "tensor %s starts at byte %llu of the file, which is not a multiple of %u as its type %s "
                           "needs (the file has general.alignment = %u); re-write the file with tensors aligned: "
                           "byoai quantize IN.gguf OUT.gguf KEEP",
                           t->name, (unsigned long long)((const uint8_t *)t->data - (const uint8_t *)m->gguf->base), a,
                           byoai_type_name(t->type), m->gguf->alignment);
}

/* Find a 2-D weight [ne0 columns x ne1 rows]; ne1 == 0 accepts any row count. */
static int get_weight(byoai_model *m, const char *name, uint64_t ne0, uint64_t ne1, bool required, byoai_weight *w,
                      byoai_error *err) {
    memset(w, 0, sizeof *w);
    const byoai_gguf_tensor *t = byoai_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required) return byoai_error_set(err, BYOAI_EFORMAT, "tensor %s is missing", name);
        return 0;
    }
    if (t->n_dims > 2 || t->ne[0] != ne0 || (ne1 && t->ne[1] != ne1))
        return byoai_error_set(err, BYOAI_EFORMAT,
                               "tensor %s has shape [%llu, %llu], expected [%llu, %llu] for this model's settings", name,
                               (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)ne0,
                               (unsigned long long)ne1);
    if (!byoai_type_can_compute(t->type))
        return byoai_error_set(err, BYOAI_EUNSUPPORTED,
                               "tensor %s has type %s, which this build cannot compute yet; re-quantize the model to a "
                               "supported type (byoai quantize)", name, byoai_type_name(t->type));
    int rc = check_aligned(m, t, err);
    if (rc) return rc;
    w->name = t->name;
    w->type = t->type;
    w->data = t->data;
    w->ne0 = t->ne[0];
    w->ne1 = t->ne[1];
    w->row_bytes = byoai_type_row_size(t->type, t->ne[0]);
    return 0;
}

/* Find a 1-D vector of n floats; converted to F32 when stored otherwise. */
static int get_vector(byoai_model *m, const char *name, uint64_t n, bool required, const float **out,
                      byoai_error *err) {
    *out = NULL;
    const byoai_gguf_tensor *t = byoai_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required) return byoai_error_set(err, BYOAI_EFORMAT, "tensor %s is missing", name);
        return 0;
    }
    if (t->n_elements != n)
        return byoai_error_set(err, BYOAI_EFORMAT, "tensor %s has %llu elements, expected %llu", name,
                               (unsigned long long)t->n_elements, (unsigned long long)n);
    bool aligned = (uintptr_t)t->data % byoai_type_alignment(t->type) == 0;
    if (t->type == BYOAI_TYPE_F32 && aligned) {
        *out = t->data;
        return 0;
    }
    float *buf = malloc((size_t)n * sizeof(float));
    if (!buf || keep_owned(m, buf)) {
        free(buf);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    /* vectors are small: one that is misaligned for its type is copied to
     * aligned memory first */
    const void *src = t->data;
    void *copy = NULL;
    if (!aligned) {
        copy = malloc((size_t)t->size ? (size_t)t->size : 1);
        if (!copy) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        memcpy(copy, t->data, (size_t)t->size);
        src = copy;
    }
    int rc = byoai_dequantize_row(t->type, src, buf, (int64_t)n);
    free(copy);
    if (rc != 0)
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "tensor %s has type %s, which cannot be converted", name,
                               byoai_type_name(t->type));
    *out = buf;
    return 0;
}

static int load_layer(byoai_model *m, uint32_t il, byoai_error *err) {
    const byoai_hparams *hp = &m->hp;
    byoai_layer *L = &m->layers[il];
    const uint64_t d = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim,
                   kvd = (uint64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
    char n[128];
    int rc;
#define NAME(s) (snprintf(n, sizeof n, "blk.%u.%s", il, s), n)
    if ((rc = get_vector(m, NAME("attn_norm.weight"), d, true, &L->attn_norm, err))) return rc;
    if (m->arch->fused_qkv) {
        if ((rc = get_weight(m, NAME("attn_qkv.weight"), d, qd + 2 * kvd, true, &L->wqkv, err))) return rc;
        if ((rc = get_vector(m, NAME("attn_qkv.bias"), qd + 2 * kvd, false, &L->bqkv, err))) return rc;
    } else {
        if ((rc = get_weight(m, NAME("attn_q.weight"), d, qd, true, &L->wq, err))) return rc;
        if ((rc = get_weight(m, NAME("attn_k.weight"), d, kvd, true, &L->wk, err))) return rc;
        if ((rc = get_weight(m, NAME("attn_v.weight"), d, kvd, true, &L->wv, err))) return rc;
        if ((rc = get_vector(m, NAME("attn_q.bias"), qd, false, &L->bq, err))) return rc;
        if ((rc = get_vector(m, NAME("attn_k.bias"), kvd, false, &L->bk, err))) return rc;
        if ((rc = get_vector(m, NAME("attn_v.bias"), kvd, false, &L->bv, err))) return rc;
    }
    if ((rc = get_vector(m, NAME("attn_q_norm.weight"), hp->head_dim, false, &L->q_norm, err))) return rc;
    if ((rc = get_vector(m, NAME("attn_k_norm.weight"), hp->head_dim, false, &L->k_norm, err))) return rc;
    if ((rc = get_weight(m, NAME("attn_output.weight"), qd, d, true, &L->wo, err))) return rc;
    if ((rc = get_vector(m, NAME("attn_output.bias"), d, false, &L->bo, err))) return rc;
    if ((rc = get_vector(m, NAME("ffn_norm.weight"), d, true, &L->ffn_norm, err))) return rc;
    if (m->arch->fused_gate_up) {
        if ((rc = get_weight(m, NAME("ffn_up.weight"), d, 2 * ff, true, &L->w_up, err))) return rc;
    } else {
        if ((rc = get_weight(m, NAME("ffn_gate.weight"), d, ff, true, &L->w_gate, err))) return rc;
        if ((rc = get_weight(m, NAME("ffn_up.weight"), d, ff, true, &L->w_up, err))) return rc;
    }
    if ((rc = get_weight(m, NAME("ffn_down.weight"), ff, d, true, &L->w_down, err))) return rc;
    if ((rc = get_vector(m, NAME("post_attention_norm.weight"), d, false, &L->post_attn_norm, err))) return rc;
    if ((rc = get_vector(m, NAME("post_ffw_norm.weight"), d, false, &L->post_ffn_norm, err))) return rc;
#undef NAME
    return 0;
}

static int load_tensors(byoai_model *m, byoai_error *err) {
    const byoai_hparams *hp = &m->hp;
    int rc;
    /* vocabulary size from the embedding (may be padded past the tokenizer's) */
    const byoai_gguf_tensor *te = byoai_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return byoai_error_set(err, BYOAI_EFORMAT, "tensor token_embd.weight is missing");
    if (te->n_dims != 2 || te->ne[0] != hp->n_embd)
        return byoai_error_set(err, BYOAI_EFORMAT, "tensor token_embd.weight has shape [%llu, %llu], expected [%u, n_vocab]",
                               (unsigned long long)te->ne[0], (unsigned long long)te->ne[1], hp->n_embd);
    if (te->ne[1] < (uint64_t)byoai_tokenizer_n_vocab(m->tok) || te->ne[1] > (1u << 24))
        return byoai_error_set(err, BYOAI_EFORMAT, "token_embd.weight has %llu rows but the tokenizer has %d tokens",
                               (unsigned long long)te->ne[1], byoai_tokenizer_n_vocab(m->tok));
    m->hp.n_vocab = (uint32_t)te->ne[1];
    if (m->has_embd) {
        const byoai_type_ops *ops = byoai_type_ops_get(te->type);
        if (!ops || !ops->dequantize)
            return byoai_error_set(err, BYOAI_EUNSUPPORTED, "token_embd.weight has type %s, which this build cannot read",
                                   byoai_type_name(te->type));
        if ((rc = check_aligned(m, te, err))) return rc;
        m->tok_embd = (byoai_weight){.name = te->name, .type = te->type, .data = te->data, .ne0 = te->ne[0],
                                     .ne1 = te->ne[1], .row_bytes = byoai_type_row_size(te->type, te->ne[0])};
    }
    if (m->has_head) {
        if ((rc = get_vector(m, "output_norm.weight", hp->n_embd, true, &m->out_norm, err))) return rc;
        if ((rc = get_weight(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output, err))) return rc;
        if (!m->output.data) { /* tied to the token embedding */
            if ((rc = get_weight(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->output, err))) return rc;
        }
    }
    if ((rc = get_vector(m, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_freqs, err))) return rc;
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    for (uint32_t il = m->layer_begin; il < m->layer_end; il++)
        if ((rc = load_layer(m, il, err))) return rc;
    return 0;
}

int byoai_model_load(const char *path, const byoai_model_params *params, byoai_model **out, byoai_error *err) {
    *out = NULL;
    byoai_model_params defaults = {0};
    if (!params) params = &defaults;
    byoai_model *m = calloc(1, sizeof *m);
    if (!m) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    int rc = byoai_gguf_open(path, &m->gguf, err);
    if (!rc) rc = read_hparams(m, params->vocab_only, err);
    if (!rc) rc = byoai_tokenizer_load(m->gguf, &m->tok, err);
    if (!rc && !params->vocab_only) {
        m->layer_begin = params->layer_begin;
        m->layer_end = params->layer_end ? params->layer_end : m->hp.n_layer;
        if (m->layer_begin >= m->layer_end || m->layer_end > m->hp.n_layer)
            rc = byoai_error_set(err, BYOAI_EINVAL, "layer range %u..%u is not within the model's %u layers",
                                 m->layer_begin, m->layer_end, m->hp.n_layer);
        m->has_embd = m->layer_begin == 0;
        m->has_head = m->layer_end == m->hp.n_layer;
        if (!rc) rc = load_tensors(m, err);
        if (!rc && (!params->no_pack || params->progress)) {
            const char *base = strrchr(path, '/');
            rc = byoai_model_pack(m, !params->no_pack, params->progress, params->progress_user, base ? base + 1 : path,
                                  err);
        }
    }
    if (rc) {
        if (m->gguf && rc != BYOAI_ENOTFOUND && rc != BYOAI_EIO) byoai_error_prefix(err, "%s", path);
        byoai_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void byoai_model_free(byoai_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    if (m->pack_arena) munmap(m->pack_arena, m->pack_arena_size);
    byoai_tokenizer_free(m->tok);
    byoai_gguf_close(m->gguf);
    free(m);
}

const byoai_hparams *byoai_model_hparams(const byoai_model *m) { return &m->hp; }
bool byoai_model_packed(const byoai_model *m) { return m->pack_arena != NULL; }
const byoai_tokenizer *byoai_model_tokenizer(const byoai_model *m) { return m->tok; }
const byoai_gguf *byoai_model_gguf(const byoai_model *m) { return m->gguf; }

const char *byoai_model_chat_template(const byoai_model *m, size_t *len) {
    byoai_gguf_str s;
    if (byoai_gguf_get_str(m->gguf, "tokenizer.chat_template", &s, NULL) != 0) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = (size_t)s.len;
    return s.ptr;
}

uint64_t byoai_model_kv_bytes_per_token(const byoai_model *m) {
    uint32_t layers = m->layer_end > m->layer_begin ? m->layer_end - m->layer_begin : m->hp.n_layer;
    return (uint64_t)layers * m->hp.n_head_kv * m->hp.head_dim * 2 * sizeof(float);
}
