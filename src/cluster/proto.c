/*
 * Peer messages: one type byte, then fields in little-endian order. The
 * decoder is the only way a message enters the node and it trusts nothing:
 * every length is bounded, every count checked against what follows, every
 * float finite, strings free of control characters, and the message must
 * be consumed exactly. Semantic checks that need local state (does this
 * slot exist, does n_embd match the model) happen where the state is.
 *
 * The announcements' format is discovery.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"

const char *cl_msg_name(uint8_t type) {
    switch (type) {
    case CL_MSG_HELLO: return "HELLO";
    case CL_MSG_VIEW: return "VIEW";
    case CL_MSG_PING: return "PING";
    case CL_MSG_PONG: return "PONG";
    case CL_MSG_LEAVE: return "LEAVE";
    case CL_MSG_LOAD: return "LOAD";
    case CL_MSG_LOAD_OK: return "LOAD_OK";
    case CL_MSG_LOAD_ERR: return "LOAD_ERR";
    case CL_MSG_UNLOAD: return "UNLOAD";
    case CL_MSG_FWD: return "FWD";
    case CL_MSG_TOKEN: return "TOKEN";
    case CL_MSG_STAGE_ERR: return "STAGE_ERR";
    case CL_MSG_GEN: return "GEN";
    case CL_MSG_GEN_TOKEN: return "GEN_TOKEN";
    case CL_MSG_GEN_END: return "GEN_END";
    case CL_MSG_GEN_CANCEL: return "GEN_CANCEL";
    case CL_MSG_HEADER_REQ: return "HEADER_REQ";
    case CL_MSG_HEADER: return "HEADER";
    case CL_MSG_EMBEDDING: return "EMBEDDING";
    case CL_MSG_REVOKED: return "REVOKED";
    case CL_MSG_RECORD: return "RECORD";
    default: return "unknown";
    }
}

/* ---- pieces ------------------------------------------------------------------------ */

void cl_enc_node_info(cl_buf *b, const cl_node_info *i) {
    cl_buf_str(b, i->name);
    cl_buf_str(b, i->version);
    cl_buf_u16(b, i->port);
    uint8_t na = i->n_addrs > CL_MAX_ADDRS ? CL_MAX_ADDRS : i->n_addrs;
    cl_buf_u8(b, na);
    for (uint8_t k = 0; k < na; k++) cl_buf_str(b, i->addrs[k]);
    cl_buf_u64(b, i->mem_total);
    cl_buf_u64(b, i->mem_offered);
    cl_buf_u64(b, i->mem_bw);
    cl_buf_u16(b, i->cores);
    uint8_t nm = i->n_models > CL_MAX_MODELS ? CL_MAX_MODELS : i->n_models;
    cl_buf_u8(b, nm);
    for (uint8_t k = 0; k < nm; k++) cl_buf_str(b, i->models[k]);
    uint8_t nd = i->n_deployed > CL_MAX_MODELS ? CL_MAX_MODELS : i->n_deployed;
    cl_buf_u8(b, nd);
    for (uint8_t k = 0; k < nd; k++) cl_buf_str(b, i->deployed[k]);
}

void cl_dec_node_info(cl_rd *r, cl_node_info *i) {
    memset(i, 0, sizeof *i);
    cl_rd_str(r, i->name, sizeof i->name);
    cl_rd_str(r, i->version, sizeof i->version);
    i->port = cl_rd_u16(r);
    i->n_addrs = cl_rd_u8(r);
    if (i->n_addrs > CL_MAX_ADDRS) r->bad = true;
    for (uint8_t k = 0; k < i->n_addrs && !r->bad; k++) cl_rd_str(r, i->addrs[k], sizeof i->addrs[k]);
    i->mem_total = cl_rd_u64(r);
    i->mem_offered = cl_rd_u64(r);
    i->mem_bw = cl_rd_u64(r);
    i->cores = cl_rd_u16(r);
    i->n_models = cl_rd_u8(r);
    if (i->n_models > CL_MAX_MODELS) r->bad = true;
    for (uint8_t k = 0; k < i->n_models && !r->bad; k++) cl_rd_str(r, i->models[k], sizeof i->models[k]);
    i->n_deployed = cl_rd_u8(r);
    if (i->n_deployed > CL_MAX_MODELS) r->bad = true;
    for (uint8_t k = 0; k < i->n_deployed && !r->bad; k++) cl_rd_str(r, i->deployed[k], sizeof i->deployed[k]);
}

static void enc_sampler_params(cl_buf *b, const byoai_sampler_params *p) {
    cl_buf_f32(b, p->temp);
    cl_buf_i32(b, p->top_k);
    cl_buf_f32(b, p->top_p);
    cl_buf_f32(b, p->min_p);
    cl_buf_f32(b, p->repeat_penalty);
    cl_buf_i32(b, p->repeat_last_n);
    cl_buf_u64(b, p->seed);
    cl_buf_f32(b, p->frequency_penalty);
    cl_buf_f32(b, p->presence_penalty);
}

static void enc_sampling(cl_buf *b, const cl_sampling *s) {
    enc_sampler_params(b, &s->sp);
    cl_buf_u32(b, s->draws);
    cl_buf_u8(b, (uint8_t)s->top_logprobs);
    bool schema = s->json && s->schema && s->schema_len;
    cl_buf_u8(b, (s->json ? 1 : 0) | (s->embed ? 2 : 0) | (schema ? 4 : 0));
    cl_buf_u32(b, s->gen_from);
    cl_buf_u32(b, s->gen_end);
    if (schema) {
        cl_buf_u32(b, s->schema_len);
        cl_buf_bytes(b, s->schema, s->schema_len);
    }
}

static void dec_sampler_params(cl_rd *r, byoai_sampler_params *p) {
    p->temp = cl_rd_f32(r);
    p->top_k = cl_rd_i32(r);
    p->top_p = cl_rd_f32(r);
    p->min_p = cl_rd_f32(r);
    p->repeat_penalty = cl_rd_f32(r);
    p->repeat_last_n = cl_rd_i32(r);
    p->seed = cl_rd_u64(r);
    p->frequency_penalty = cl_rd_f32(r);
    p->presence_penalty = cl_rd_f32(r);
    if (r->bad) return;
    if (byoai_sampler_params_check(p, NULL) != 0 || p->repeat_last_n < 0 || p->repeat_last_n > (1 << 20))
        r->bad = true;
}

static void dec_sampling(cl_rd *r, cl_sampling *s) {
    dec_sampler_params(r, &s->sp);
    s->draws = cl_rd_u32(r);
    s->top_logprobs = (int8_t)cl_rd_u8(r);
    uint8_t mode = cl_rd_u8(r); /* bit 0: JSON mode, bit 1: embedding, bit 2: a JSON Schema follows */
    s->json = mode & 1;
    s->embed = mode & 2;
    s->gen_from = cl_rd_u32(r);
    s->gen_end = cl_rd_u32(r);
    s->schema = NULL;
    s->schema_len = 0;
    if (s->top_logprobs < -1 || s->top_logprobs > BYOAI_CLUSTER_MAX_TOP || mode > 5 || mode == 3 ||
        (mode & 4 && !(mode & 1)) || s->gen_from > s->gen_end || s->gen_end > (1u << 20)) {
        r->bad = true;
        return;
    }
    if (mode & 4) {
        s->schema_len = cl_rd_u32(r);
        if (r->bad || s->schema_len == 0 || s->schema_len > BYOAI_CLUSTER_MAX_SCHEMA) {
            r->bad = true;
            return;
        }
        s->schema = cl_rd_bytes(r, s->schema_len);
        if (!s->schema) r->bad = true;
    }
}


/* ---- encoders -------------------------------------------------------------------- */

void cl_enc_hello(cl_buf *b, const cl_node_info *i) {
    cl_buf_u8(b, CL_MSG_HELLO);
    cl_enc_node_info(b, i);
}

void cl_enc_view(cl_buf *b, const cl_view_entry *e, uint32_t n) {
    if (n > CL_VIEW_MAX) n = CL_VIEW_MAX;
    cl_buf_u8(b, CL_MSG_VIEW);
    cl_buf_u16(b, (uint16_t)n);
    for (uint32_t i = 0; i < n; i++) {
        cl_buf_bytes(b, e[i].pk, 32);
        cl_buf_str(b, e[i].addr);
        cl_buf_u16(b, e[i].port);
    }
}

void cl_enc_ping(cl_buf *b, uint8_t type, uint64_t nonce, double t) {
    cl_buf_u8(b, type);
    cl_buf_u64(b, nonce);
    cl_buf_f64(b, t);
}

void cl_enc_leave(cl_buf *b) { cl_buf_u8(b, CL_MSG_LEAVE); }

void cl_enc_load(cl_buf *b, const cl_load *l) {
    cl_buf_u8(b, CL_MSG_LOAD);
    cl_buf_u64(b, l->dep_id);
    cl_buf_u32(b, l->term);
    cl_buf_u32(b, l->epoch);
    cl_buf_bytes(b, l->coord_pk, 32);
    cl_buf_str(b, l->model);
    cl_buf_bytes(b, l->file_sha, 32);
    cl_buf_u64(b, l->file_size);
    cl_buf_str(b, l->url);
    cl_buf_blob(b, l->manifest, l->manifest_len);
    cl_buf_u32(b, l->n_layer);
    cl_buf_u32(b, l->layer_begin);
    cl_buf_u32(b, l->layer_end);
    cl_buf_u32(b, l->n_ctx);
    cl_buf_u32(b, l->n_seq);
    cl_buf_u32(b, l->n_batch);
    cl_buf_u8(b, l->wire);
    cl_buf_u8(b, l->has_next ? 1 : 0);
    if (l->has_next) cl_buf_bytes(b, l->next_pk, 32);
    cl_buf_u32(b, l->stage_index);
    cl_buf_u32(b, l->n_stages);
}

void cl_enc_load_reply(cl_buf *b, const cl_load_reply *r) {
    cl_buf_u8(b, r->code ? CL_MSG_LOAD_ERR : CL_MSG_LOAD_OK);
    cl_buf_u64(b, r->dep_id);
    cl_buf_u32(b, r->epoch);
    cl_buf_i32(b, r->code);
    cl_buf_u64(b, r->mem_bytes);
    cl_buf_u64(b, r->fetched_bytes);
    cl_buf_f64(b, r->load_s);
    cl_buf_str(b, r->msg);
}

void cl_enc_unload(cl_buf *b, uint64_t dep_id) {
    cl_buf_u8(b, CL_MSG_UNLOAD);
    cl_buf_u64(b, dep_id);
}

static size_t dtype_size(uint8_t dt) { return dt == CL_DT_F32 ? 4 : dt == CL_DT_F16 ? 2 : 0; }

void cl_enc_fwd(cl_buf *b, const cl_fwd *f, const int32_t *tokens, const void *hidden) {
    cl_buf_u8(b, CL_MSG_FWD);
    cl_buf_u64(b, f->dep_id);
    cl_buf_u64(b, f->req_id);
    cl_buf_u32(b, f->epoch);
    cl_buf_u32(b, f->step);
    cl_buf_u32(b, f->slot);
    cl_buf_u32(b, f->pos0);
    cl_buf_u32(b, f->n);
    cl_buf_u8(b, f->flags);
    cl_buf_u32(b, f->compute_us);
    if (f->flags & CL_FWD_RESET) {
        enc_sampling(b, &f->s);
        cl_buf_u64(b, f->keep_hash);
    }
    for (uint32_t i = 0; i < f->n; i++) cl_buf_i32(b, tokens[i]);
    cl_buf_u8(b, f->dtype);
    if (f->dtype != CL_DT_NONE) {
        cl_buf_u32(b, f->n_embd);
        cl_buf_bytes(b, hidden, (size_t)f->n * f->n_embd * dtype_size(f->dtype));
    }
}

static void enc_tok(cl_buf *b, const byoai_cluster_token *t) {
    cl_buf_i32(b, t->id);
    cl_buf_f32(b, t->logprob);
    int32_t n = t->n_top < 0 ? 0 : t->n_top > BYOAI_CLUSTER_MAX_TOP ? BYOAI_CLUSTER_MAX_TOP : t->n_top;
    cl_buf_u8(b, (uint8_t)n);
    for (int32_t i = 0; i < n; i++) {
        cl_buf_i32(b, t->top_ids[i]);
        cl_buf_f32(b, t->top_logprobs[i]);
    }
}

static void dec_tok(cl_rd *r, byoai_cluster_token *t) {
    memset(t, 0, sizeof *t);
    t->id = cl_rd_i32(r);
    t->logprob = cl_rd_f32(r);
    uint8_t n = cl_rd_u8(r);
    if (n > BYOAI_CLUSTER_MAX_TOP) {
        r->bad = true;
        return;
    }
    t->n_top = n;
    for (uint8_t i = 0; i < n; i++) {
        t->top_ids[i] = cl_rd_i32(r);
        t->top_logprobs[i] = cl_rd_f32(r);
        if (t->top_ids[i] < 0) r->bad = true;
    }
    if (t->id < 0 || t->logprob > 0.001f) r->bad = true;
}

void cl_enc_token(cl_buf *b, uint8_t type, const cl_token_msg *t) {
    cl_buf_u8(b, type);
    cl_buf_u64(b, t->dep_id);
    cl_buf_u64(b, t->req_id);
    cl_buf_u32(b, t->epoch);
    cl_buf_u32(b, t->step);
    cl_buf_u32(b, t->slot);
    cl_buf_u32(b, t->pos);
    cl_buf_u32(b, t->compute_us);
    enc_tok(b, &t->t);
}

void cl_enc_stage_err(cl_buf *b, const cl_stage_err *e) {
    cl_buf_u8(b, CL_MSG_STAGE_ERR);
    cl_buf_u64(b, e->dep_id);
    cl_buf_u64(b, e->req_id);
    cl_buf_u32(b, e->epoch);
    cl_buf_u32(b, e->step);
    cl_buf_u8(b, e->kind);
    cl_buf_i32(b, e->code);
    cl_buf_u8(b, e->has_culprit ? 1 : 0);
    if (e->has_culprit) cl_buf_bytes(b, e->culprit, 32);
    cl_buf_str(b, e->msg);
}

void cl_enc_embedding(cl_buf *b, const cl_embedding_msg *e, const float *v) {
    cl_buf_u8(b, CL_MSG_EMBEDDING);
    cl_buf_u64(b, e->dep_id);
    cl_buf_u64(b, e->req_id);
    cl_buf_u32(b, e->epoch);
    cl_buf_u32(b, e->step);
    cl_buf_u32(b, e->n_embd);
    for (uint32_t i = 0; i < e->n_embd; i++) cl_buf_f32(b, v[i]);
}

void cl_enc_revoked(cl_buf *b, const cl_revoked *r) {
    cl_buf inner = {0};
    cl_revoked_encode(r, &inner);
    cl_buf_u8(b, CL_MSG_REVOKED);
    cl_buf_u32(b, (uint32_t)inner.len);
    cl_buf_bytes(b, inner.data, inner.len);
    if (inner.oom) b->oom = true;
    cl_buf_free(&inner);
}

float cl_embedding_at(const cl_embedding_msg *e, uint32_t i) {
    const uint8_t *p = e->data + 4 * (size_t)i;
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void cl_enc_gen(cl_buf *b, const cl_gen *g, const int32_t *tokens) {
    cl_buf_u8(b, CL_MSG_GEN);
    cl_buf_u64(b, g->req_id);
    cl_buf_str(b, g->model);
    enc_sampler_params(b, &g->sp);
    cl_buf_i32(b, g->n_predict);
    cl_buf_i32(b, g->top_logprobs);
    bool schema = g->json_object && g->schema && g->schema_len;
    cl_buf_u8(b, (g->ignore_eog ? 1 : 0) | (g->json_object ? 2 : 0) | (g->embed ? 4 : 0) | (schema ? 8 : 0));
    cl_buf_u32(b, g->n);
    cl_buf_u32(b, g->n_prompt);
    for (uint32_t i = 0; i < g->n; i++) cl_buf_i32(b, tokens[i]);
    if (schema) {
        cl_buf_u32(b, g->schema_len);
        cl_buf_bytes(b, g->schema, g->schema_len);
    }
}

void cl_enc_gen_end(cl_buf *b, const cl_gen_end *e) {
    cl_buf_u8(b, CL_MSG_GEN_END);
    cl_buf_u64(b, e->req_id);
    cl_buf_i32(b, e->code);
    cl_buf_str(b, e->finish);
    cl_buf_str(b, e->msg);
    cl_buf_u32(b, e->n_prompt);
    cl_buf_u32(b, e->n_generated);
    cl_buf_u32(b, e->failovers);
    cl_buf_u32(b, e->n_cached);
    cl_buf_u8(b, e->moved ? 1 : 0);
    cl_buf_f64(b, e->prompt_s);
    cl_buf_f64(b, e->gen_s);
    cl_buf_f64(b, e->stall_s);
    cl_buf_f64(b, e->overhead_s);
}

void cl_enc_gen_cancel(cl_buf *b, uint64_t req_id) {
    cl_buf_u8(b, CL_MSG_GEN_CANCEL);
    cl_buf_u64(b, req_id);
}

void cl_enc_header_req(cl_buf *b, const char *model) {
    cl_buf_u8(b, CL_MSG_HEADER_REQ);
    cl_buf_str(b, model);
}

void cl_enc_header(cl_buf *b, const char *model, int32_t code, const void *manifest, uint32_t mlen,
                   const void *header, uint32_t hlen) {
    cl_buf_u8(b, CL_MSG_HEADER);
    cl_buf_str(b, model);
    cl_buf_i32(b, code);
    cl_buf_blob(b, manifest, mlen);
    cl_buf_blob(b, header, hlen);
}

void cl_enc_record(cl_buf *b, const cl_record *r) {
    cl_buf_u8(b, CL_MSG_RECORD);
    cl_buf_u64(b, r->dep_id);
    cl_buf_u32(b, r->term);
    cl_buf_u32(b, r->epoch);
    cl_buf_bytes(b, r->coord_pk, 32);
    cl_buf_str(b, r->name);
    cl_buf_u8(b, r->removed ? 1 : 0);
    if (r->removed) return;
    cl_buf_bytes(b, r->file_sha, 32);
    cl_buf_u64(b, r->file_size);
    cl_buf_str(b, r->url);
    cl_buf_blob(b, r->man, r->man_len);
    cl_buf_u32(b, r->n_ctx);
    cl_buf_u32(b, r->n_seq);
    cl_buf_u32(b, r->n_batch);
    cl_buf_u8(b, r->wire);
    cl_buf_u8(b, r->weighting);
    uint8_t no = r->n_only > CL_ONLY_MAX ? CL_ONLY_MAX : r->n_only;
    cl_buf_u8(b, no);
    for (uint8_t i = 0; i < no; i++) cl_buf_str(b, r->only[i]);
    cl_buf_u32(b, r->n_layer);
    uint32_t ns = r->n_stages > BYOAI_CLUSTER_MAX_NODES ? BYOAI_CLUSTER_MAX_NODES : r->n_stages;
    cl_buf_u32(b, ns);
    for (uint32_t s = 0; s < ns; s++) {
        cl_buf_bytes(b, r->stage_pk[s], 32);
        cl_buf_u32(b, r->stage_begin[s]);
        cl_buf_u32(b, r->stage_end[s]);
    }
}

uint64_t cl_tokens_hash(const int32_t *tokens, uint32_t n) {
    crypto_generichash_state s;
    crypto_generichash_init(&s, (const uint8_t *)"byoai-tokens", 12, 8);
    uint8_t le[4 * 256];
    for (uint32_t i = 0; i < n;) {
        uint32_t k = 0;
        for (; k < 256 && i < n; k++, i++) {
            uint32_t v = (uint32_t)tokens[i];
            le[4 * k] = (uint8_t)v;
            le[4 * k + 1] = (uint8_t)(v >> 8);
            le[4 * k + 2] = (uint8_t)(v >> 16);
            le[4 * k + 3] = (uint8_t)(v >> 24);
        }
        crypto_generichash_update(&s, le, 4 * (size_t)k);
    }
    uint8_t out[8];
    crypto_generichash_final(&s, out, 8);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | out[i];
    return h;
}

int32_t cl_fwd_token(const cl_fwd *f, uint32_t i) {
    const uint8_t *p = f->tokens + 4 * (size_t)i;
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* ---- the decoder --------------------------------------------------------------------- */

static bool is_error_code(int32_t c) { return c < 0 && c >= -64; }

int cl_msg_decode(const uint8_t *buf, size_t len, cl_msg *m, byoai_error *err) {
    memset(m, 0, sizeof *m);
    if (len < 1) return byoai_error_set(err, BYOAI_EFORMAT, "empty message");
    cl_rd r = {buf, len, 1, false};
    m->type = buf[0];
    switch (m->type) {
    case CL_MSG_HELLO:
        cl_dec_node_info(&r, &m->u.hello);
        break;
    case CL_MSG_VIEW: {
        uint16_t n = cl_rd_u16(&r);
        if (n > CL_VIEW_MAX) r.bad = true;
        m->u.view.n = n;
        for (uint16_t i = 0; i < n && !r.bad; i++) {
            const uint8_t *pk = cl_rd_bytes(&r, 32);
            if (pk) memcpy(m->u.view.e[i].pk, pk, 32);
            cl_rd_str(&r, m->u.view.e[i].addr, sizeof m->u.view.e[i].addr);
            m->u.view.e[i].port = cl_rd_u16(&r);
            if (m->u.view.e[i].port == 0) r.bad = true;
        }
        break;
    }
    case CL_MSG_PING:
    case CL_MSG_PONG:
        m->u.ping.nonce = cl_rd_u64(&r);
        m->u.ping.t = cl_rd_f64(&r);
        break;
    case CL_MSG_LEAVE:
        break;
    case CL_MSG_LOAD: {
        cl_load *l = &m->u.load;
        l->dep_id = cl_rd_u64(&r);
        l->term = cl_rd_u32(&r);
        l->epoch = cl_rd_u32(&r);
        const uint8_t *cpk = cl_rd_bytes(&r, 32);
        if (cpk) memcpy(l->coord_pk, cpk, 32);
        cl_rd_str(&r, l->model, sizeof l->model);
        const uint8_t *sha = cl_rd_bytes(&r, 32);
        if (sha) memcpy(l->file_sha, sha, 32);
        l->file_size = cl_rd_u64(&r);
        cl_rd_str(&r, l->url, sizeof l->url);
        l->manifest = cl_rd_blob(&r, 16u << 20, &l->manifest_len);
        l->n_layer = cl_rd_u32(&r);
        l->layer_begin = cl_rd_u32(&r);
        l->layer_end = cl_rd_u32(&r);
        l->n_ctx = cl_rd_u32(&r);
        l->n_seq = cl_rd_u32(&r);
        l->n_batch = cl_rd_u32(&r);
        l->wire = cl_rd_u8(&r);
        uint8_t hn = cl_rd_u8(&r);
        if (hn > 1) r.bad = true;
        l->has_next = hn == 1;
        if (l->has_next) {
            const uint8_t *np = cl_rd_bytes(&r, 32);
            if (np) memcpy(l->next_pk, np, 32);
        }
        l->stage_index = cl_rd_u32(&r);
        l->n_stages = cl_rd_u32(&r);
        if (r.bad) break;
        if (l->n_layer == 0 || l->n_layer > 4096 || l->layer_begin >= l->layer_end || l->layer_end > l->n_layer ||
            l->n_ctx == 0 || l->n_ctx > (1u << 20) || l->n_seq == 0 || l->n_seq > 256 || l->n_batch == 0 ||
            l->n_batch > CL_MAX_ROWS || l->wire > BYOAI_WIRE_F16 || l->n_stages == 0 ||
            l->n_stages > BYOAI_CLUSTER_MAX_NODES || l->stage_index >= l->n_stages || l->model[0] == '\0' ||
            l->manifest_len == 0 || l->epoch == 0 || l->term == 0 || l->has_next != (l->layer_end < l->n_layer))
            r.bad = true;
        break;
    }
    case CL_MSG_LOAD_OK:
    case CL_MSG_LOAD_ERR: {
        cl_load_reply *p = &m->u.load_reply;
        p->dep_id = cl_rd_u64(&r);
        p->epoch = cl_rd_u32(&r);
        p->code = cl_rd_i32(&r);
        p->mem_bytes = cl_rd_u64(&r);
        p->fetched_bytes = cl_rd_u64(&r);
        p->load_s = cl_rd_f64(&r);
        cl_rd_str(&r, p->msg, sizeof p->msg);
        if (m->type == CL_MSG_LOAD_OK ? p->code != 0 : !is_error_code(p->code)) r.bad = true;
        break;
    }
    case CL_MSG_UNLOAD:
        m->u.dep_id = cl_rd_u64(&r);
        break;
    case CL_MSG_FWD: {
        cl_fwd *f = &m->u.fwd;
        f->dep_id = cl_rd_u64(&r);
        f->req_id = cl_rd_u64(&r);
        f->epoch = cl_rd_u32(&r);
        f->step = cl_rd_u32(&r);
        f->slot = cl_rd_u32(&r);
        f->pos0 = cl_rd_u32(&r);
        f->n = cl_rd_u32(&r);
        f->flags = cl_rd_u8(&r);
        f->compute_us = cl_rd_u32(&r);
        if (r.bad) break;
        if (f->n == 0 || f->n > CL_MAX_ROWS || f->flags & ~(CL_FWD_RESET | CL_FWD_SAMPLE) || f->pos0 > (1u << 20) ||
            f->slot > 1024) {
            r.bad = true;
            break;
        }
        if (f->flags & CL_FWD_RESET) {
            dec_sampling(&r, &f->s);
            f->keep_hash = cl_rd_u64(&r);
        }
        f->tokens = cl_rd_bytes(&r, 4 * (size_t)f->n);
        for (uint32_t i = 0; f->tokens && i < f->n; i++)
            if (cl_fwd_token(f, i) < 0) r.bad = true;
        f->dtype = cl_rd_u8(&r);
        if (r.bad) break;
        if (f->dtype > CL_DT_F16) {
            r.bad = true;
            break;
        }
        if (f->dtype != CL_DT_NONE) {
            f->n_embd = cl_rd_u32(&r);
            if (f->n_embd == 0 || f->n_embd > CL_MAX_EMBD) {
                r.bad = true;
                break;
            }
            uint64_t bytes = (uint64_t)f->n * f->n_embd * dtype_size(f->dtype);
            if (bytes > CL_MAX_FRAME) {
                r.bad = true;
                break;
            }
            f->hidden = cl_rd_bytes(&r, (size_t)bytes);
            f->hidden_len = bytes;
        }
        break;
    }
    case CL_MSG_TOKEN:
    case CL_MSG_GEN_TOKEN: {
        cl_token_msg *t = &m->u.token;
        t->dep_id = cl_rd_u64(&r);
        t->req_id = cl_rd_u64(&r);
        t->epoch = cl_rd_u32(&r);
        t->step = cl_rd_u32(&r);
        t->slot = cl_rd_u32(&r);
        t->pos = cl_rd_u32(&r);
        t->compute_us = cl_rd_u32(&r);
        dec_tok(&r, &t->t);
        break;
    }
    case CL_MSG_REVOKED: {
        uint32_t n = cl_rd_u32(&r);
        if (r.bad || n > 4 + 8 + 4 + 16 * CL_REVOKED_MAX + 64) {
            r.bad = true;
            break;
        }
        m->u.revoked.data = cl_rd_bytes(&r, n);
        m->u.revoked.len = n;
        cl_revoked *tmp = m->u.revoked.data ? malloc(sizeof *tmp) : NULL;
        if (!tmp || cl_revoked_decode(m->u.revoked.data, n, tmp, NULL)) r.bad = true;
        free(tmp);
        break;
    }
    case CL_MSG_EMBEDDING: {
        cl_embedding_msg *e = &m->u.embedding;
        e->dep_id = cl_rd_u64(&r);
        e->req_id = cl_rd_u64(&r);
        e->epoch = cl_rd_u32(&r);
        e->step = cl_rd_u32(&r);
        e->n_embd = cl_rd_u32(&r);
        if (r.bad) break;
        if (e->n_embd == 0 || e->n_embd > CL_MAX_EMBD) {
            r.bad = true;
            break;
        }
        e->data = cl_rd_bytes(&r, 4 * (size_t)e->n_embd);
        for (uint32_t i = 0; e->data && i < e->n_embd; i++) {
            float x = cl_embedding_at(e, i);
            if (!(x >= -1.0001f && x <= 1.0001f)) r.bad = true; /* a unit vector: no NaN, no infinity */
        }
        break;
    }
    case CL_MSG_STAGE_ERR: {
        cl_stage_err *e = &m->u.stage_err;
        e->dep_id = cl_rd_u64(&r);
        e->req_id = cl_rd_u64(&r);
        e->epoch = cl_rd_u32(&r);
        e->step = cl_rd_u32(&r);
        e->kind = cl_rd_u8(&r);
        e->code = cl_rd_i32(&r);
        uint8_t hc = cl_rd_u8(&r);
        if (hc > 1) r.bad = true;
        e->has_culprit = hc == 1;
        if (e->has_culprit) {
            const uint8_t *c = cl_rd_bytes(&r, 32);
            if (c) memcpy(e->culprit, c, 32);
        }
        cl_rd_str(&r, e->msg, sizeof e->msg);
        if (e->kind < CL_ERR_DECODE || e->kind > CL_ERR_HISTORY || !is_error_code(e->code)) r.bad = true;
        break;
    }
    case CL_MSG_GEN: {
        cl_gen *g = &m->u.gen;
        g->req_id = cl_rd_u64(&r);
        cl_rd_str(&r, g->model, sizeof g->model);
        dec_sampler_params(&r, &g->sp);
        g->n_predict = cl_rd_i32(&r);
        g->top_logprobs = cl_rd_i32(&r);
        uint8_t gf = cl_rd_u8(&r); /* bit 0: ignore_eog, bit 1: json_object, bit 2: embedding, bit 3: a schema */
        g->ignore_eog = gf & 1;
        g->json_object = gf & 2;
        g->embed = gf & 4;
        g->n = cl_rd_u32(&r);
        g->n_prompt = cl_rd_u32(&r);
        if (r.bad) break;
        if (gf > 15 || (g->embed && (gf & 3)) || ((gf & 8) && !(gf & 2)) || g->n == 0 || g->n > (1u << 20) || g->n_predict < -1 || g->top_logprobs < -1 ||
            g->top_logprobs > BYOAI_CLUSTER_MAX_TOP || g->model[0] == '\0' || g->n_prompt == 0 || g->n_prompt > g->n ||
            (g->embed && g->n_prompt != g->n)) {
            r.bad = true;
            break;
        }
        g->tokens = cl_rd_bytes(&r, 4 * (size_t)g->n);
        g->schema = NULL;
        g->schema_len = 0;
        if (gf & 8) {
            g->schema_len = cl_rd_u32(&r);
            if (r.bad || g->schema_len == 0 || g->schema_len > BYOAI_CLUSTER_MAX_SCHEMA) {
                r.bad = true;
                break;
            }
            g->schema = cl_rd_bytes(&r, g->schema_len);
        }
        break;
    }
    case CL_MSG_GEN_END: {
        cl_gen_end *e = &m->u.gen_end;
        e->req_id = cl_rd_u64(&r);
        e->code = cl_rd_i32(&r);
        cl_rd_str(&r, e->finish, sizeof e->finish);
        cl_rd_str(&r, e->msg, sizeof e->msg);
        e->n_prompt = cl_rd_u32(&r);
        e->n_generated = cl_rd_u32(&r);
        e->failovers = cl_rd_u32(&r);
        e->n_cached = cl_rd_u32(&r);
        uint8_t moved = cl_rd_u8(&r);
        if (moved > 1) r.bad = true;
        e->moved = moved == 1;
        e->prompt_s = cl_rd_f64(&r);
        e->gen_s = cl_rd_f64(&r);
        e->stall_s = cl_rd_f64(&r);
        e->overhead_s = cl_rd_f64(&r);
        if (e->code != 0 && !is_error_code(e->code)) r.bad = true;
        break;
    }
    case CL_MSG_GEN_CANCEL:
        m->u.req_id = cl_rd_u64(&r);
        break;
    case CL_MSG_RECORD: {
        cl_record *d = &m->u.record;
        d->dep_id = cl_rd_u64(&r);
        d->term = cl_rd_u32(&r);
        d->epoch = cl_rd_u32(&r);
        const uint8_t *cpk = cl_rd_bytes(&r, 32);
        if (cpk) memcpy(d->coord_pk, cpk, 32);
        cl_rd_str(&r, d->name, sizeof d->name);
        uint8_t rm = cl_rd_u8(&r);
        if (rm > 1 || d->name[0] == '\0' || d->term == 0 || d->dep_id == 0) r.bad = true;
        d->removed = rm == 1;
        if (r.bad || d->removed) break;
        const uint8_t *sha = cl_rd_bytes(&r, 32);
        if (sha) memcpy(d->file_sha, sha, 32);
        d->file_size = cl_rd_u64(&r);
        cl_rd_str(&r, d->url, sizeof d->url);
        d->man = (uint8_t *)cl_rd_blob(&r, 16u << 20, &d->man_len);
        d->n_ctx = cl_rd_u32(&r);
        d->n_seq = cl_rd_u32(&r);
        d->n_batch = cl_rd_u32(&r);
        d->wire = cl_rd_u8(&r);
        d->weighting = cl_rd_u8(&r);
        d->n_only = cl_rd_u8(&r);
        if (d->n_only > CL_ONLY_MAX) r.bad = true;
        for (uint8_t i = 0; i < d->n_only && !r.bad; i++) cl_rd_str(&r, d->only[i], sizeof d->only[i]);
        d->n_layer = cl_rd_u32(&r);
        d->n_stages = cl_rd_u32(&r);
        if (d->n_stages > BYOAI_CLUSTER_MAX_NODES) r.bad = true;
        for (uint32_t s = 0; s < d->n_stages && !r.bad; s++) {
            const uint8_t *pk = cl_rd_bytes(&r, 32);
            if (pk) memcpy(d->stage_pk[s], pk, 32);
            d->stage_begin[s] = cl_rd_u32(&r);
            d->stage_end[s] = cl_rd_u32(&r);
        }
        if (r.bad) break;
        /* the stages cover the layers once, in order */
        uint32_t at = 0;
        for (uint32_t s = 0; s < d->n_stages; s++) {
            if (d->stage_begin[s] != at || d->stage_end[s] <= at) r.bad = true;
            at = d->stage_end[s];
        }
        if (d->man_len == 0 || d->n_layer == 0 || d->n_layer > 4096 || (d->n_stages && at != d->n_layer) ||
            d->n_ctx == 0 || d->n_ctx > (1u << 20) || d->n_seq == 0 || d->n_seq > 256 || d->n_batch == 0 ||
            d->n_batch > CL_MAX_ROWS || d->wire > BYOAI_WIRE_F16 || d->weighting > BYOAI_WEIGHT_BOTH)
            r.bad = true;
        break;
    }
    case CL_MSG_HEADER_REQ:
        cl_rd_str(&r, m->u.model, sizeof m->u.model);
        if (!r.bad && m->u.model[0] == '\0') r.bad = true;
        break;
    case CL_MSG_HEADER: {
        cl_header_msg *h = &m->u.header;
        cl_rd_str(&r, h->model, sizeof h->model);
        h->code = cl_rd_i32(&r);
        h->manifest = cl_rd_blob(&r, 16u << 20, &h->manifest_len);
        h->header = cl_rd_blob(&r, CL_MAX_FRAME, &h->header_len);
        if (h->code != 0 && !is_error_code(h->code)) r.bad = true;
        break;
    }
    default:
        return byoai_error_set(err, BYOAI_EFORMAT, "unknown message type %u", m->type);
    }
    if (!cl_rd_done(&r))
        return byoai_error_set(err, BYOAI_EFORMAT, "malformed %s message (%zu bytes)", cl_msg_name(m->type), len);
    return 0;
}
