/*
 * A stage: this node's layer range of a model deployed by a coordinator.
 *
 * One worker thread per stage owns the model, the context (one KV cache per
 * sequence slot) and, on the last stage, one sampler per slot; messages
 * (LOAD, FWD, UNLOAD) queue up and are handled in order, so the pipeline
 * keeps its order end to end.
 *
 * FWD is idempotent: it names the first position of its rows and the stage
 * first truncates the slot's cache to that position, so a coordinator may
 * resend a step after a hiccup, and a re-prefill after a re-plan overwrites
 * what was there. A stage whose cache is shorter than the position asked
 * for answers CL_ERR_HISTORY and the coordinator re-prefills.
 *
 * Prompt caching: each slot keeps the tokens of the positions its cache
 * holds. A new sequence (RESET) keeps the first pos0 of them when their
 * digest matches the one the coordinator sends (CL_ERR_HISTORY otherwise),
 * so only the new tokens travel and are computed; the last stage replays
 * the kept tokens into the new sampler (repetition penalties) and JSON
 * filter, so the output is the one a full prefill gives. A new plan empties
 * every cache.
 *
 * The last stage samples with byoai_sampler exactly as `byoai run` does:
 * the tokens of every row are accepted, then one token is drawn. After a
 * re-plan the coordinator sends how many random draws were already made;
 * the new last stage replays that many so that seeded sampling continues
 * the same random stream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "byoai/tokenizer.h"
#include "cluster/node_internal.h"

static void work_free(cl_work *w) {
    if (!w) return;
    free(w->buf);
    free(w);
}

/* ---- replies --------------------------------------------------------------------------------- */

static void send_stage_err(cl_stage *s, const cl_fwd *f, uint8_t kind, int code, const uint8_t *culprit,
                           const char *msg) {
    cl_stage_err e = {.dep_id = f->dep_id, .req_id = f->req_id, .epoch = f->epoch, .step = f->step, .kind = kind,
                      .code = code};
    if (culprit) {
        e.has_culprit = true;
        memcpy(e.culprit, culprit, 32);
    }
    snprintf(e.msg, sizeof e.msg, "%s", msg);
    cl_buf b = {0};
    cl_enc_stage_err(&b, &e);
    cl_send(s->c, s->coord_pk, &b, NULL);
    cl_buf_free(&b);
}

/* ---- loading --------------------------------------------------------------------------------- */

/* Forget a slot's sampling state (a new sequence or a new plan follows). */
static void tail_seq_clear(cl_tail_seq *q) {
    byoai_sampler_free(q->sm);
    byoai_json_filter_free(q->jf);
    free(q->emb_sum);
    memset(q, 0, sizeof *q);
}

static void unload(cl_stage *s) {
    if (s->seqs) {
        for (uint32_t i = 0; i < s->n_seq; i++) tail_seq_clear(&s->seqs[i]);
        free(s->seqs);
        s->seqs = NULL;
    }
    if (s->hist) {
        for (uint32_t i = 0; i < s->n_seq; i++) free(s->hist[i]);
        free(s->hist);
        s->hist = NULL;
    }
    byoai_context_free(s->ctx);
    s->ctx = NULL;
    byoai_model_free(s->model);
    s->model = NULL;
    s->loaded = false;
}

bool cl_find_model_file(byoai_cluster *c, const uint8_t sha[32], uint64_t size, char *path, size_t cap) {
    char hex[65];
    cl_hex(sha, 32, hex);
    struct stat st;
    for (size_t i = 0; i < c->n_model_files; i++) {
        if (stat(c->model_files[i], &st) != 0 || (uint64_t)st.st_size != size) continue;
        cl_manifest m;
        if (cl_manifest_for_file(c->id.dir, c->model_files[i], &m, NULL) != 0) continue;
        bool same = memcmp(m.file_sha, sha, 32) == 0;
        cl_manifest_free(&m);
        if (same) {
            snprintf(path, cap, "%s", c->model_files[i]);
            return true;
        }
    }
    /* a model this node coordinates from a whole copy (not from a partial one) */
    bool found = false;
    pthread_mutex_lock(&c->mu);
    for (cl_dep *d = c->deps; d && !found; d = d->next)
        if (d->path_full && !memcmp(d->man.file_sha, sha, 32) && d->man.file_size == size) {
            snprintf(path, cap, "%s", d->path);
            found = true;
        }
    pthread_mutex_unlock(&c->mu);
    if (found) return true;
    /* the store keeps verified blobs by content (store.h) */
    snprintf(path, cap, "%s/blobs/sha256-%s", c->id.home, hex);
    return stat(path, &st) == 0 && (uint64_t)st.st_size == size;
}

static int do_load(cl_stage *s, const cl_load *l, cl_load_reply *r, byoai_error *err) {
    byoai_cluster *c = s->c;
    double t0 = byoai_time_now();
    bool same = s->loaded && !memcmp(s->file_sha, l->file_sha, 32) && s->begin == l->layer_begin &&
                s->end == l->layer_end && s->n_ctx == l->n_ctx && s->n_seq == l->n_seq && s->n_batch == l->n_batch &&
                s->n_layer == l->n_layer;
    if (!same) {
        pthread_mutex_lock(&c->mu);
        s->loaded = false;
        pthread_mutex_unlock(&c->mu);
        unload(s);
        char path[4096];
        uint64_t fetched = 0;
        if (!cl_find_model_file(c, l->file_sha, l->file_size, path, sizeof path)) {
            cl_manifest m;
            int rc = cl_manifest_parse((const char *)l->manifest, l->manifest_len, &m, err);
            if (rc) return rc;
            if (memcmp(m.file_sha, l->file_sha, 32) || m.file_size != l->file_size) {
                cl_manifest_free(&m);
                return byoai_error_set(err, BYOAI_EFORMAT, "the manifest does not describe the model to load");
            }
            cl_fetch_stats fs = {0};
            rc = cl_partial_prepare(c->id.dir, &m, l->url, l->layer_begin, l->layer_end, l->n_layer, path, sizeof path,
                                    &fs, err);
            cl_manifest_free(&m);
            if (rc) return rc;
            fetched = fs.bytes;
            if (fs.bytes)
                cl_event(c, BYOAI_LOG_INFO, "fetched %llu bytes of %s (layers %u-%u) in %llu range requests",
                         (unsigned long long)fs.bytes, l->model, l->layer_begin, l->layer_end,
                         (unsigned long long)fs.requests);
        }
        byoai_model_params mp = {.layer_begin = l->layer_begin, .layer_end = l->layer_end};
        int rc = byoai_model_load(path, &mp, &s->model, err);
        if (rc) return rc;
        const byoai_hparams *hp = byoai_model_hparams(s->model);
        if (hp->n_layer != l->n_layer) {
            unload(s);
            return byoai_error_set(err, BYOAI_EFORMAT, "the model has %u layers, the coordinator says %u", hp->n_layer,
                                   l->n_layer);
        }
        /* the last stage keeps the final hidden states too, for embeddings */
        byoai_context_params cp = {.n_ctx = l->n_ctx, .n_seq = l->n_seq, .n_batch = l->n_batch,
                                   .n_threads = c->n_threads, .embeddings = l->layer_end == l->n_layer};
        if ((rc = byoai_context_new(s->model, &cp, &s->ctx, err))) {
            unload(s);
            return rc;
        }
        s->seqs = calloc(l->n_seq, sizeof *s->seqs);
        s->hist = calloc(l->n_seq, sizeof *s->hist);
        s->n_seq = l->n_seq; /* unload() walks the slots by n_seq */
        bool ok = s->seqs && s->hist;
        for (uint32_t i = 0; ok && i < l->n_seq; i++) ok = (s->hist[i] = malloc(l->n_ctx * sizeof(int32_t))) != NULL;
        if (!ok) {
            unload(s);
            return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        }
        pthread_mutex_lock(&c->mu);
        snprintf(s->path, sizeof s->path, "%s", path);
        s->fetched_bytes += fetched;
        pthread_mutex_unlock(&c->mu);
        r->fetched_bytes = fetched;
    }
    pthread_mutex_lock(&c->mu);
    memcpy(s->file_sha, l->file_sha, 32);
    snprintf(s->model_name, sizeof s->model_name, "%s", l->model);
    s->begin = l->layer_begin;
    s->end = l->layer_end;
    s->n_layer = l->n_layer;
    s->n_ctx = l->n_ctx;
    s->n_seq = l->n_seq;
    s->n_batch = l->n_batch;
    s->wire = l->wire;
    s->epoch = l->epoch;
    s->term = l->term;
    memcpy(s->coord_pk, l->coord_pk, 32);
    s->has_next = l->has_next;
    memcpy(s->next_pk, l->next_pk, 32);
    s->loaded = true;
    s->load_s = byoai_time_now() - t0;
    pthread_mutex_unlock(&c->mu);
    /* a new plan: every sequence will be re-prefilled */
    for (uint32_t i = 0; i < s->n_seq; i++) {
        byoai_kv_truncate(s->ctx, i, 0);
        tail_seq_clear(&s->seqs[i]);
    }
    r->mem_bytes = byoai_model_kv_bytes_per_token(s->model) * l->n_ctx * l->n_seq;
    const byoai_gguf *g = byoai_model_gguf(s->model);
    bool tied = byoai_gguf_find_tensor(g, "output.weight") == NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (cl_tensor_needed(g->tensors[i].name, l->layer_begin, l->layer_end, l->n_layer, tied))
            r->mem_bytes += g->tensors[i].size;
    r->load_s = byoai_time_now() - t0;
    return 0;
}

static void stage_reaper(byoai_cluster *c, void *arg);
static void stage_destroy(cl_stage *s);

static void handle_load(cl_stage *s, const uint8_t from[32], const cl_load *l) {
    cl_load_reply r = {.dep_id = l->dep_id, .epoch = l->epoch};
    byoai_error err = {0};
    int rc;
    pthread_mutex_lock(&s->c->mu);
    uint32_t term = s->term;
    bool other = s->term && memcmp(s->coord_pk, l->coord_pk, 32) != 0;
    pthread_mutex_unlock(&s->c->mu);
    if (memcmp(from, l->coord_pk, 32) != 0) {
        rc = byoai_error_set(&err, BYOAI_EAUTH, "a LOAD must come from the coordinator it names");
    } else if (l->term < term || (l->term == term && other)) {
        /* a coordinator that lost its place (another member took over with a newer term) */
        rc = byoai_error_set(&err, BYOAI_EBUSY, "another member coordinates this deployment now (term %u, this LOAD "
                             "is of term %u)", term, l->term);
    } else {
        rc = do_load(s, l, &r, &err);
    }
    if (rc) {
        r.code = rc;
        snprintf(r.msg, sizeof r.msg, "%s", err.msg);
        cl_event(s->c, BYOAI_LOG_WARN, "cannot load layers %u-%u of %s: %s", l->layer_begin, l->layer_end, l->model,
                 err.msg);
        /* a stage that holds nothing goes away */
        byoai_cluster *c = s->c;
        pthread_mutex_lock(&c->mu);
        /* (when it is no longer in the list, whoever took it out, stopping or dropping it, joins it) */
        bool gone = false;
        if (!s->loaded)
            for (cl_stage **pp = &c->stages; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                    *pp = s->next;
                    gone = true;
                    s->stop = true;
                    break;
                }
        pthread_mutex_unlock(&c->mu);
        if (gone && !cl_spawn(c, stage_reaper, s)) s->orphan = true;
    } else {
        cl_event(s->c, BYOAI_LOG_INFO, "stage of %s: layers %u-%u (epoch %u) ready in %.2f s", l->model,
                 l->layer_begin, l->layer_end, l->epoch, r.load_s);
    }
    cl_buf b = {0};
    cl_enc_load_reply(&b, &r);
    cl_send(s->c, from, &b, NULL);
    cl_buf_free(&b);
}

/* ---- a pipeline step ---------------------------------------------------------------------- */

static uint32_t add_us(uint32_t base, double t0) {
    double us = (byoai_time_now() - t0) * 1e6 + base;
    return us > 4e9 ? 4000000000u : (uint32_t)us;
}

/* Embedding mode on the last stage: add every row's final hidden state to
 * the sum; after the last row, send the mean, normalised to unit length
 * (as byoai serve does for a local model). */
static void embed_rows(cl_stage *s, const cl_fwd *f, cl_tail_seq *q, uint32_t n_embd) {
    if (f->pos0 != q->emb_rows) { /* a row twice or one missing: the coordinator sends it all again */
        char msg[128];
        snprintf(msg, sizeof msg, "the embedding has %u rows pooled, the step starts at %u", q->emb_rows, f->pos0);
        send_stage_err(s, f, CL_ERR_HISTORY, BYOAI_ERANGE, NULL, msg);
        return;
    }
    for (uint32_t i = 0; i < f->n; i++) {
        const float *h = byoai_get_embedding(s->ctx, i);
        for (uint32_t k = 0; k < n_embd; k++) q->emb_sum[k] += h[k];
        q->emb_rows++;
    }
    if (!(f->flags & CL_FWD_SAMPLE)) return;
    float *v = malloc(n_embd * sizeof(float));
    if (!v) {
        send_stage_err(s, f, CL_ERR_DECODE, BYOAI_ENOMEM, NULL, "out of memory");
        return;
    }
    byoai_embedding_mean(q->emb_sum, q->emb_rows, n_embd, v);
    cl_embedding_msg e = {.dep_id = f->dep_id, .req_id = f->req_id, .epoch = f->epoch, .step = f->step,
                          .n_embd = n_embd};
    cl_buf out = {0};
    cl_enc_embedding(&out, &e, v);
    cl_send(s->c, s->coord_pk, &out, NULL);
    cl_buf_free(&out);
    free(v);
}

static void handle_fwd(cl_stage *s, const cl_fwd *f) {
    byoai_cluster *c = s->c;
    char msg[600];
    double t_start = byoai_time_now(); /* from here to the send is this stage's compute */
    if (!s->loaded || f->epoch != s->epoch) {
        byoai_log(BYOAI_LOG_DEBUG, "cluster: dropped a step of epoch %u (stage is at %u)", f->epoch, s->epoch);
        return;
    }
    const byoai_hparams *hp = byoai_model_hparams(s->model);
    bool head = s->begin == 0, tail = s->end == s->n_layer;
    if (f->slot >= s->n_seq) {
        send_stage_err(s, f, CL_ERR_DECODE, BYOAI_EINVAL, NULL, "sequence slot out of range");
        return;
    }
    if (f->n > s->n_batch) {
        send_stage_err(s, f, CL_ERR_DECODE, BYOAI_ERANGE, NULL, "too many rows in one step");
        return;
    }
    uint8_t want_dt = s->wire == BYOAI_WIRE_F16 ? CL_DT_F16 : CL_DT_F32;
    if (head ? f->dtype != CL_DT_NONE : (f->dtype != want_dt || f->n_embd != hp->n_embd)) {
        send_stage_err(s, f, CL_ERR_DECODE, BYOAI_EFORMAT, NULL, "hidden states of the wrong shape or type");
        return;
    }
    if (f->flags & CL_FWD_RESET) {
        /* keep the first pos0 cached positions when they hold the tokens the coordinator means */
        uint32_t cached = byoai_kv_len(s->ctx, f->slot);
        if (f->pos0 > cached || cl_tokens_hash(s->hist[f->slot], f->pos0) != f->keep_hash ||
            (f->s.embed && f->pos0 != 0)) {
            snprintf(msg, sizeof msg, "this stage holds %u positions of slot %u, not the %u the step keeps", cached,
                     f->slot, f->pos0);
            byoai_kv_truncate(s->ctx, f->slot, 0);
            tail_seq_clear(&s->seqs[f->slot]);
            send_stage_err(s, f, CL_ERR_HISTORY, BYOAI_ERANGE, NULL, msg);
            return;
        }
        byoai_kv_truncate(s->ctx, f->slot, f->pos0);
        if (tail) {
            cl_tail_seq *q = &s->seqs[f->slot];
            tail_seq_clear(q);
            byoai_error err = {0};
            if (byoai_sampler_new(&f->s.sp, (int32_t)hp->n_vocab, &q->sm, &err)) {
                send_stage_err(s, f, CL_ERR_DECODE, err.code, NULL, err.msg);
                return;
            }
            if (f->s.draws) { /* continue the random stream where the lost stage left it */
                float *zero = calloc(hp->n_vocab, sizeof(float));
                if (!zero) {
                    tail_seq_clear(q);
                    send_stage_err(s, f, CL_ERR_DECODE, BYOAI_ENOMEM, NULL, "out of memory");
                    return;
                }
                for (uint32_t i = 0; i < f->s.draws; i++) byoai_sampler_sample(q->sm, zero);
                free(zero);
            }
            if (f->s.json) { /* the filter replays the generated tokens as their rows arrive */
                byoai_grammar *g = NULL;
                int grc = f->s.schema ? byoai_grammar_from_schema((const char *)f->s.schema, f->s.schema_len, &g, &err) : 0;
                if (!grc && g) grc = byoai_json_filter_new_grammar(byoai_model_tokenizer(s->model), (int32_t)hp->n_vocab, g,
                                                                  &q->jf, &err);
                byoai_grammar_free(g); /* the filter keeps its own reference */
                if (grc || (!f->s.schema && byoai_json_filter_new(byoai_model_tokenizer(s->model), (int32_t)hp->n_vocab,
                                                                   &q->jf, &err))) {
                    tail_seq_clear(q);
                    send_stage_err(s, f, CL_ERR_DECODE, err.code, NULL, err.msg);
                    return;
                }
                byoai_sampler_set_filter(q->sm, byoai_json_filter_apply, q->jf);
            }
            if (f->s.embed) {
                q->embed = true;
                q->emb_sum = calloc(hp->n_embd, sizeof(double));
                if (!q->emb_sum) {
                    tail_seq_clear(q);
                    send_stage_err(s, f, CL_ERR_DECODE, BYOAI_ENOMEM, NULL, "out of memory");
                    return;
                }
            }
            q->gen_from = f->s.gen_from;
            q->gen_end = f->s.gen_end;
            q->top_lp = f->s.top_logprobs;
            /* the kept positions, as if their rows had come: the sampler's history, the filter's text */
            const int32_t *h = s->hist[f->slot];
            for (uint32_t i = 0; i < f->pos0; i++) {
                byoai_sampler_accept(q->sm, h[i]);
                if (q->jf && i >= q->gen_from && !byoai_json_filter_accept(q->jf, h[i])) {
                    tail_seq_clear(q);
                    send_stage_err(s, f, CL_ERR_DECODE, BYOAI_EINVAL, NULL,
                                   "the generated text so far is not the start of a JSON object");
                    return;
                }
            }
        }
    }
    uint32_t have = byoai_kv_len(s->ctx, f->slot);
    if (f->pos0 > have || (tail && !s->seqs[f->slot].sm)) {
        snprintf(msg, sizeof msg, "this stage holds %u positions of the sequence, the step starts at %u", have, f->pos0);
        send_stage_err(s, f, CL_ERR_HISTORY, BYOAI_ERANGE, NULL, msg);
        return;
    }
    if (f->pos0 < have) byoai_kv_truncate(s->ctx, f->slot, f->pos0);
    int32_t *tokens = malloc(f->n * sizeof(int32_t));
    int32_t *seq = malloc(f->n * sizeof(int32_t));
    int8_t *want = calloc(f->n, 1);
    if (!tokens || !seq || !want) {
        free(tokens);
        free(seq);
        free(want);
        send_stage_err(s, f, CL_ERR_DECODE, BYOAI_ENOMEM, NULL, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < f->n; i++) {
        tokens[i] = cl_fwd_token(f, i);
        seq[i] = (int32_t)f->slot;
        want[i] = tail ? (i == f->n - 1 && (f->flags & CL_FWD_SAMPLE) && !s->seqs[f->slot].embed) : 1;
    }
    byoai_batch b = {.n_tokens = f->n, .seq = seq, .want = want};
    if (head) b.tokens = tokens;
    else {
        size_t need = (size_t)f->n * hp->n_embd;
        if (need > s->hidden_cap) {
            float *h = byoai_aligned_alloc(64, need * sizeof(float));
            if (!h) {
                free(tokens);
                free(seq);
                free(want);
                send_stage_err(s, f, CL_ERR_DECODE, BYOAI_ENOMEM, NULL, "out of memory");
                return;
            }
            free(s->hidden);
            s->hidden = h;
            s->hidden_cap = need;
        }
        if (f->dtype == CL_DT_F32) memcpy(s->hidden, f->hidden, need * sizeof(float));
        else cl_f16_to_f32(f->hidden, s->hidden, need);
        b.embd = s->hidden;
    }
    byoai_error err = {0};
    int rc = byoai_decode(s->ctx, &b, &err);
    free(seq);
    free(want);
    if (rc) {
        free(tokens);
        byoai_kv_truncate(s->ctx, f->slot, f->pos0); /* what the cache holds is what hist says */
        send_stage_err(s, f, CL_ERR_DECODE, rc, NULL, err.msg);
        return;
    }
    if (f->pos0 + f->n <= s->n_ctx) memcpy(s->hist[f->slot] + f->pos0, tokens, f->n * sizeof(int32_t));
    pthread_mutex_lock(&c->mu);
    s->steps++;
    s->rows += f->n;
    pthread_mutex_unlock(&c->mu);
    if (tail) {
        cl_tail_seq *q = &s->seqs[f->slot];
        for (uint32_t i = 0; i < f->n; i++) {
            byoai_sampler_accept(q->sm, tokens[i]);
            if (q->jf && f->pos0 + i >= q->gen_from && !byoai_json_filter_accept(q->jf, tokens[i])) {
                free(tokens);
                send_stage_err(s, f, CL_ERR_DECODE, BYOAI_EINVAL, NULL,
                               "the generated text so far is not the start of a JSON object");
                return;
            }
        }
        free(tokens);
        if (q->embed) {
            embed_rows(s, f, q, hp->n_embd);
            return;
        }
        if (!(f->flags & CL_FWD_SAMPLE)) return;
        const float *logits = byoai_get_output(s->ctx, 0);
        if (q->jf) { /* tokens that may still come, this one included: enough to close the object */
            uint32_t pos = f->pos0 + f->n;
            byoai_json_filter_set_budget(q->jf, q->gen_end > pos ? q->gen_end - pos : 1);
        }
        int32_t id = byoai_sampler_sample(q->sm, logits);
        if (id < 0) {
            send_stage_err(s, f, CL_ERR_DECODE, BYOAI_EINVAL, NULL, "no token could be sampled");
            return;
        }
        cl_token_msg t = {.dep_id = f->dep_id, .req_id = f->req_id, .epoch = f->epoch, .step = f->step,
                          .slot = f->slot, .pos = f->pos0 + f->n};
        t.t.id = id;
        int k = q->top_lp;
        if (k >= 0) {
            t.t.logprob = byoai_logprob(logits, (int32_t)hp->n_vocab, id);
            if (t.t.logprob > 0) t.t.logprob = 0;
            t.t.n_top = k ? byoai_top_logprobs(logits, (int32_t)hp->n_vocab, k, t.t.top_ids, t.t.top_logprobs) : 0;
        }
        t.compute_us = add_us(f->compute_us, t_start);
        cl_buf out = {0};
        cl_enc_token(&out, CL_MSG_TOKEN, &t);
        cl_send(c, s->coord_pk, &out, NULL);
        cl_buf_free(&out);
        return;
    }
    /* hand the hidden states of every row to the next stage */
    cl_fwd next = *f;
    next.dtype = want_dt;
    next.n_embd = hp->n_embd;
    size_t nv = (size_t)f->n * hp->n_embd;
    void *payload;
    uint16_t *h16 = NULL;
    float *h32 = malloc(nv * sizeof(float));
    if (!h32) {
        free(tokens);
        send_stage_err(s, f, CL_ERR_DECODE, BYOAI_ENOMEM, NULL, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < f->n; i++) memcpy(h32 + (size_t)i * hp->n_embd, byoai_get_output(s->ctx, i), hp->n_embd * sizeof(float));
    payload = h32;
    if (want_dt == CL_DT_F16) {
        h16 = malloc(nv * sizeof(uint16_t));
        if (!h16) {
            free(h32);
            free(tokens);
            send_stage_err(s, f, CL_ERR_DECODE, BYOAI_ENOMEM, NULL, "out of memory");
            return;
        }
        cl_f32_to_f16(h32, h16, nv);
        payload = h16;
    }
    next.compute_us = add_us(f->compute_us, t_start);
    cl_buf out = {0};
    cl_enc_fwd(&out, &next, tokens, payload);
    free(tokens);
    free(h32);
    free(h16);
    rc = cl_send(c, s->next_pk, &out, &err);
    cl_buf_free(&out);
    if (rc) {
        char id[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(s->next_pk, id);
        snprintf(msg, sizeof msg, "cannot reach the next stage %.12s: %s", id, err.msg);
        send_stage_err(s, f, CL_ERR_NEXT_UNREACHABLE, BYOAI_ENET, s->next_pk, msg);
    }
}

/* ---- the worker --------------------------------------------------------------------------- */

static void *stage_main(void *arg) {
    cl_stage *s = arg;
    byoai_cluster *c = s->c;
    cl_io_set_cancel(&s->stop); /* a fetch or socket wait ends when the stage stops */
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (!s->head && !s->stop) pthread_cond_wait(&s->cond, &c->mu);
        if (s->stop) {
            pthread_mutex_unlock(&c->mu);
            break;
        }
        cl_work *w = s->head;
        s->head = w->next;
        if (!s->head) s->tail = NULL;
        pthread_mutex_unlock(&c->mu);
        if (w->type == CL_MSG_LOAD) handle_load(s, w->from, &w->msg.u.load);
        else if (w->type == CL_MSG_FWD) handle_fwd(s, &w->msg.u.fwd);
        work_free(w);
    }
    /* drain */
    pthread_mutex_lock(&c->mu);
    cl_work *w = s->head;
    s->head = s->tail = NULL;
    s->loaded = false;
    pthread_mutex_unlock(&c->mu);
    while (w) {
        cl_work *n = w->next;
        work_free(w);
        w = n;
    }
    unload(s);
    free(s->hidden);
    s->hidden = NULL;
    if (s->orphan) { /* nobody will join this thread */
        pthread_detach(pthread_self());
        pthread_cond_destroy(&s->cond);
        free(s);
    }
    return NULL;
}

static cl_stage *stage_find(byoai_cluster *c, uint64_t dep_id) {
    for (cl_stage *s = c->stages; s; s = s->next)
        if (s->dep_id == dep_id) return s;
    return NULL;
}

static void stage_destroy(cl_stage *s) {
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cond);
    free(s);
}

static void stage_reaper(byoai_cluster *c, void *arg) {
    (void)c;
    stage_destroy(arg);
}

void cl_stage_enqueue(byoai_cluster *c, const uint8_t from[32], uint8_t *buf, size_t len, const cl_msg *m) {
    uint64_t dep_id = m->type == CL_MSG_LOAD ? m->u.load.dep_id : m->type == CL_MSG_FWD ? m->u.fwd.dep_id : m->u.dep_id;
    cl_work *w = calloc(1, sizeof *w);
    if (!w) {
        free(buf);
        return;
    }
    w->type = m->type;
    w->buf = buf;
    w->len = len;
    w->msg = *m;
    memcpy(w->from, from, 32);
    pthread_mutex_lock(&c->mu);
    cl_stage *s = stage_find(c, dep_id);
    if (m->type == CL_MSG_UNLOAD) {
        if (s) {
            for (cl_stage **pp = &c->stages; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                    *pp = s->next;
                    break;
                }
            s->stop = true;
            pthread_cond_signal(&s->cond);
        }
        pthread_mutex_unlock(&c->mu);
        work_free(w);
        if (s && !cl_spawn(c, stage_reaper, s)) stage_destroy(s);
        return;
    }
    if (!s && m->type == CL_MSG_LOAD && !c->stopping) {
        s = calloc(1, sizeof *s);
        if (s) {
            s->c = c;
            s->dep_id = dep_id;
            pthread_cond_init(&s->cond, NULL);
            if (pthread_create(&s->thread, NULL, stage_main, s) != 0) {
                pthread_cond_destroy(&s->cond);
                free(s);
                s = NULL;
            } else {
                s->next = c->stages;
                c->stages = s;
            }
        }
    }
    if (!s) {
        pthread_mutex_unlock(&c->mu);
        if (m->type == CL_MSG_FWD) {
            /* the coordinator (when it sent this) learns at once that the stage is gone */
            cl_stage tmp = {.c = c};
            memcpy(tmp.coord_pk, from, 32);
            send_stage_err(&tmp, &m->u.fwd, CL_ERR_NO_STAGE, BYOAI_ENOTFOUND, NULL,
                           "this node runs no stage of that deployment (restarted?)");
        }
        work_free(w);
        return;
    }
    if (s->tail) s->tail->next = w;
    else s->head = w;
    s->tail = w;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&c->mu);
}

void cl_stage_drop(byoai_cluster *c, uint64_t dep_id) {
    pthread_mutex_lock(&c->mu);
    cl_stage *s = stage_find(c, dep_id);
    if (s) {
        for (cl_stage **pp = &c->stages; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        s->stop = true;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&c->mu);
    if (s && !cl_spawn(c, stage_reaper, s)) stage_destroy(s);
}

void cl_stages_stop_all(byoai_cluster *c) {
    pthread_mutex_lock(&c->mu);
    cl_stage *list = c->stages;
    c->stages = NULL;
    for (cl_stage *s = list; s; s = s->next) {
        s->stop = true;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&c->mu);
    while (list) {
        cl_stage *n = list->next;
        stage_destroy(list);
        list = n;
    }
}
