/*
 * Completions this node coordinates.
 *
 * A completion takes a sequence slot, keeps the token
 * history (prompt and generated tokens), sends the prompt to the first stage
 * in chunks and then one token per step, and waits for the last stage's
 * sampled token. Every wait has a deadline.
 *
 * The prompt cache: a slot's KV caches on every stage keep what the slot
 * last held after its completion ends. A new completion takes the free slot
 * whose cached tokens share the longest prefix with its own (an empty or the
 * least recently used one when none shares much), keeps that prefix on every stage (the
 * stages check it by a digest of its tokens) and sends only the tokens after
 * it, as the single-machine server does. A re-plan empties the caches: the
 * new stages start with nothing and the whole history is sent again.
 *
 * The entry for every completion, the ones asked of other members and
 * the ones run here for them: requests.c. The messages a coordinator gets:
 * at the end of this file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/tokenizer.h"
#include "cluster/node_internal.h"

#define MAX_FAILOVERS 8

/* ---- completions this node coordinates ------------------------------------------------------------ */

enum { W_TOKEN, W_ERR, W_LOST, W_TIMEOUT, W_STOP, W_REPLANNED };

static int wait_outcome(byoai_cluster *c, cl_dep *d, cl_req *r, double deadline) {
    for (;;) {
        if (r->has_token || r->has_emb) return W_TOKEN;
        if (r->has_err) return W_ERR;
        if (c->stopping || d->removing) return W_STOP;
        if (d->epoch != r->epoch || d->replanning) return W_REPLANNED;
        for (uint32_t s = 0; s < d->plan.n_stages; s++) {
            if (cl_is_self(c, d->stage_pk[s])) continue;
            if (!cl_peer_usable(cl_peer_find(c, d->stage_pk[s]))) return W_LOST;
        }
        if (byoai_time_now() > deadline) return W_TIMEOUT;
        cl_coord_wait(c, deadline);
    }
}

/* rows [pos0, pos0 + n) of the history, in chunks; with reset, a new
 * sequence keeping the slot's first pos0 cached positions */
static int send_steps(byoai_cluster *c, cl_dep *d, cl_req *r, const int32_t *hist, uint32_t pos0, uint32_t n,
                      const cl_sampling *samp, bool reset, byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    /* never into a plan that is being loaded */
    double dl = byoai_time_now() + c->load_s + c->failure_s;
    while (d->replanning && !c->stopping && byoai_time_now() < dl) cl_coord_wait(c, dl);
    uint32_t epoch = d->epoch;
    uint8_t first[32];
    memcpy(first, d->stage_pk[0], 32);
    r->epoch = epoch;
    r->step++;
    r->has_token = r->has_err = r->has_emb = false;
    free(r->emb);
    r->emb = NULL;
    uint32_t step = r->step, nb = d->n_batch;
    pthread_mutex_unlock(&c->mu);
    uint64_t keep_hash = reset ? cl_tokens_hash(hist, pos0) : 0;
    for (uint32_t off = 0; off < n; off += nb) {
        uint32_t m = n - off < nb ? n - off : nb;
        cl_fwd f = {.dep_id = d->id, .req_id = r->id, .epoch = epoch, .step = step, .slot = r->slot, .pos0 = pos0 + off,
                    .n = m, .dtype = CL_DT_NONE};
        if (reset && off == 0) {
            f.flags |= CL_FWD_RESET;
            f.s = *samp;
            f.keep_hash = keep_hash;
        }
        if (off + m == n) f.flags |= CL_FWD_SAMPLE;
        cl_buf b = {0};
        cl_enc_fwd(&b, &f, hist + pos0 + off, NULL);
        int rc = cl_send(c, first, &b, err);
        cl_buf_free(&b);
        if (rc) return rc;
    }
    return 0;
}

/* The free slot to use (under mu): the one whose cache holds the longest
 * start of hist, when that is most of hist or most of what the slot holds
 * (the same conversation, further on or asked again); else an empty slot;
 * else the least recently used one. So a new conversation that shares only a
 * template's first tokens with a cached one does not evict it while a slot
 * is free. -1 when all are busy. */
static int pick_slot(const cl_dep *d, const int32_t *hist, uint32_t n, uint32_t *lcp) {
    int best = -1, empty = -1, lru = -1;
    uint32_t best_len = 0;
    *lcp = 0;
    for (uint32_t i = 0; i < d->n_seq; i++) {
        const cl_slot *s = &d->slots[i];
        if (s->busy) continue;
        uint32_t len = s->epoch == d->epoch ? s->len : 0, k = 0;
        while (k < len && k < n && s->hist[k] == hist[k]) k++;
        if (len == 0 && empty < 0) empty = (int)i;
        if (lru < 0 || s->used < d->slots[lru].used) lru = (int)i;
        if (k > 0 && (2 * (uint64_t)k >= n || 2 * k >= len) && (best < 0 || k > best_len || (k == best_len && s->used < d->slots[best].used))) {
            best = (int)i;
            best_len = k;
        }
    }
    int pick = best >= 0 ? best : empty >= 0 ? empty : lru;
    if (pick < 0) return -1;
    /* what the chosen slot shares with hist (a little, for the least recently used one) */
    const cl_slot *s = &d->slots[pick];
    uint32_t len = s->epoch == d->epoch ? s->len : 0, k = 0;
    while (k < len && k < n && s->hist[k] == hist[k]) k++;
    *lcp = k;
    return pick;
}

int cl_coord_generate(byoai_cluster *c, cl_dep *d, const cl_gen_input *in, const byoai_cluster_gen_params *p,
                          byoai_cluster_token_fn fn, void *user, byoai_cluster_gen_result *res, cl_embed_out *eo,
                          byoai_error *err) {
    const byoai_tokenizer *tok = byoai_model_tokenizer(d->vocab);
    const uint32_t n_vocab = d->cost.n_vocab;
    if (in->n == 0 || in->n_prompt == 0) return byoai_error_set(err, BYOAI_EINVAL, "the prompt is empty");
    if (in->n >= d->n_ctx)
        return byoai_error_set(err, BYOAI_ERANGE, "the prompt (%zu tokens) does not fit the %u-token context", in->n,
                               d->n_ctx);
    for (size_t i = 0; i < in->n; i++)
        if (in->toks[i] < 0 || (uint32_t)in->toks[i] >= n_vocab)
            return byoai_error_set(err, BYOAI_EINVAL, "prompt token %d is out of range (0..%u)", in->toks[i],
                                   n_vocab - 1);
    int rc = byoai_sampler_params_check(&p->sampler, err);
    if (rc) return rc;
    if (p->top_logprobs > BYOAI_CLUSTER_MAX_TOP) return byoai_error_set(err, BYOAI_ERANGE, "top_logprobs is at most %d", BYOAI_CLUSTER_MAX_TOP);
    if (p->json_schema && strlen(p->json_schema) > BYOAI_CLUSTER_MAX_SCHEMA)
        return byoai_error_set(err, BYOAI_ERANGE, "a JSON Schema for a cluster model is at most %d bytes",
                               BYOAI_CLUSTER_MAX_SCHEMA);
    int32_t *hist = malloc((size_t)d->n_ctx * sizeof(int32_t));
    cl_req *r = calloc(1, sizeof *r);
    if (!hist || !r) {
        free(hist);
        free(r);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    memcpy(hist, in->toks, in->n * sizeof(int32_t));
    uint32_t n_hist = (uint32_t)in->n, n_prompt = (uint32_t)in->n_prompt;
    double t_start = byoai_time_now();
    /* a free sequence slot, the one with the longest cached prefix */
    pthread_mutex_lock(&c->mu);
    double deadline = t_start + c->step_s;
    int slot = -1;
    uint32_t lcp = 0;
    for (;;) {
        while (d->replanning && !c->stopping && byoai_time_now() < deadline + c->load_s) cl_coord_wait(c, deadline + c->load_s);
        slot = pick_slot(d, hist, n_hist, &lcp);
        if (slot >= 0 || c->stopping || d->removing || byoai_time_now() > deadline) break;
        cl_coord_wait(c, deadline);
    }
    if (slot < 0) {
        pthread_mutex_unlock(&c->mu);
        free(hist);
        free(r);
        if (c->stopping || d->removing) return byoai_error_set(err, BYOAI_ECANCELED, "model '%s' is being unloaded", d->name);
        return byoai_error_set(err, BYOAI_EBUSY, "all %u sequence slots of model '%s' stayed busy for %.0f s", d->n_seq,
                               d->name, c->step_s);
    }
    cl_slot *sl = &d->slots[slot];
    sl->busy = true;
    d->active++;
    r->id = cl_random_u64();
    r->dep = d;
    r->slot = (uint32_t)slot;
    r->next = c->reqs;
    c->reqs = r;
    pthread_mutex_unlock(&c->mu);
    /* the last prompt token is always computed again: its logits start the answer; an embedding pools every row */
    uint32_t keep = lcp < n_hist ? lcp : n_hist - 1;
    if (eo) keep = 0;

    cl_sampling samp = {.sp = p->sampler, .top_logprobs = (int8_t)(p->top_logprobs < 0 ? -1 : p->top_logprobs),
                        .json = p->json_object && !eo, .embed = eo != NULL, .gen_from = n_prompt, .gen_end = d->n_ctx,
                        .schema = p->json_object && !eo ? (const uint8_t *)p->json_schema : NULL,
                        .schema_len = p->json_object && !eo && p->json_schema ? (uint32_t)strlen(p->json_schema) : 0};
    /* the last position a generated token may take is gen_end - 1 (see the stop test below) */
    if (p->n_predict >= 0 && n_prompt + (uint64_t)p->n_predict < d->n_ctx) samp.gen_end = n_prompt + (uint32_t)p->n_predict;
    uint32_t n_gen = n_hist - n_prompt, failovers = 0, history_retries = 0, timeouts = 0;
    uint32_t processed = keep, n_cached = keep < n_prompt ? keep : n_prompt;
    double t_first = 0, t_last = 0, stall = 0, overhead = 0, t_sent = 0;
    bool prefill = true, one_step = false;
    const char *finish = "length";
    rc = 0;
    for (;;) {
        if (!prefill) { /* a re-plan between two steps (a lost stage): the new stages need the whole history */
            pthread_mutex_lock(&c->mu);
            double dl = byoai_time_now() + c->load_s + c->failure_s;
            while (d->replanning && !c->stopping && byoai_time_now() < dl) cl_coord_wait(c, dl);
            bool replanned = d->epoch != r->epoch;
            pthread_mutex_unlock(&c->mu);
            if (replanned) {
                prefill = true;
                failovers++;
                keep = processed = 0;
            }
        }
        one_step = !prefill;
        t_sent = byoai_time_now();
        if (prefill) {
            samp.draws = p->sampler.temp > 0 ? n_gen : 0;
            rc = send_steps(c, d, r, hist, keep, n_hist - keep, &samp, true, err);
            prefill = false;
        } else {
            rc = send_steps(c, d, r, hist, n_hist - 1, 1, &samp, false, err);
        }
        int what;
        double step_deadline = byoai_time_now() + c->step_s * (1 + n_hist / 256.0);
        if (rc) {
            what = W_LOST;
            rc = 0;
        } else {
            pthread_mutex_lock(&c->mu);
            what = wait_outcome(c, d, r, step_deadline);
            pthread_mutex_unlock(&c->mu);
        }
        if (what == W_TOKEN && eo) { /* an embedding: the only answer */
            pthread_mutex_lock(&c->mu);
            bool ok = r->has_emb;
            if (ok) {
                eo->v = r->emb;
                eo->n = r->n_emb;
                r->emb = NULL;
            }
            pthread_mutex_unlock(&c->mu);
            if (!ok) rc = byoai_error_set(err, BYOAI_EFORMAT, "the last stage answered a token to an embedding request");
            processed = n_hist;
            t_first = t_last = byoai_time_now();
            finish = "stop";
            break;
        }
        if (what == W_TOKEN) {
            int32_t id = r->tok.t.id;
            timeouts = 0;
            if (id < 0 || (uint32_t)id >= n_vocab || r->tok.pos != n_hist) {
                rc = byoai_error_set(err, BYOAI_EFORMAT, "the last stage answered token %d at position %u (expected "
                                     "position %u)", id, r->tok.pos, n_hist);
                break;
            }
            processed = n_hist; /* every stage holds the positions before this token */
            double now = byoai_time_now();
            if (!t_first) t_first = now;
            t_last = now;
            if (one_step) { /* a generation step: what it took beyond the stages' compute */
                double o = (now - t_sent) - r->tok.compute_us * 1e-6;
                overhead += o > 0 ? o : 0;
            }
            if (!p->ignore_eog && byoai_token_is_eog(tok, id)) {
                finish = "stop";
                break;
            }
            hist[n_hist++] = id;
            n_gen++;
            byoai_cluster_token t = r->tok.t;
            if (fn && fn(user, &t) != 0) {
                finish = "stop";
                break;
            }
            if ((p->n_predict >= 0 && n_gen >= (uint32_t)p->n_predict) || n_hist >= d->n_ctx) {
                finish = "length";
                break;
            }
            continue;
        }
        if (what == W_STOP) {
            if (d->moved && !c->stopping)
                rc = byoai_error_set(err, BYOAI_EBUSY, "another member coordinates model '%s' now", d->name);
            else
                rc = byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping or the model is being unloaded");
            break;
        }
        double t0 = byoai_time_now();
        /* from here on the whole history goes again: the caches may not hold it */
        keep = 0;
        processed = 0;
        if (!t_first) n_cached = 0;
        if (what == W_ERR) {
            cl_stage_err e = r->serr;
            if (e.kind == CL_ERR_DECODE) {
                rc = byoai_error_set(err, e.code ? e.code : BYOAI_EIO, "a stage failed: %s", e.msg);
                break;
            }
            if (e.kind == CL_ERR_HISTORY && history_retries++ < 3) {
                prefill = true;
                continue;
            }
            if (failovers++ >= MAX_FAILOVERS) {
                rc = byoai_error_set(err, BYOAI_EIO, "giving up after %u re-plans: %s", MAX_FAILOVERS, e.msg);
                break;
            }
            rc = cl_dep_failover(c, d, r->epoch, e.kind == CL_ERR_NEXT_UNREACHABLE && e.has_culprit ? e.culprit : NULL,
                                 err);
        } else if (what == W_REPLANNED) { /* someone else re-planned (a lost stage): this completion survives it */
            failovers++;
            pthread_mutex_lock(&c->mu);
            double dl = byoai_time_now() + c->load_s + c->failure_s;
            while (d->replanning && !c->stopping && byoai_time_now() < dl) cl_coord_wait(c, dl);
            pthread_mutex_unlock(&c->mu);
        } else if (what == W_TIMEOUT) {
            if (timeouts++ >= 1) {
                rc = byoai_error_set(err, BYOAI_ETIMEOUT, "no answer from the pipeline of '%s' within %.0f s twice; the "
                                     "nodes are reachable but too slow or stuck", d->name, c->step_s);
                break;
            }
        } else { /* W_LOST */
            if (failovers++ >= MAX_FAILOVERS) {
                rc = byoai_error_set(err, BYOAI_EIO, "giving up after %u re-plans", MAX_FAILOVERS);
                break;
            }
            rc = cl_dep_failover(c, d, r->epoch, NULL, err);
        }
        stall += byoai_time_now() - t0;
        if (rc) break;
        prefill = true;
    }
    pthread_mutex_lock(&c->mu);
    for (cl_req **pp = &c->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    /* what the slot's caches hold now: every position confirmed by a token of this epoch */
    memcpy(sl->hist, hist, processed * sizeof(int32_t));
    sl->len = processed;
    sl->epoch = r->epoch;
    sl->used = byoai_time_now();
    sl->busy = false;
    d->active--;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    if (res) {
        memset(res, 0, sizeof *res);
        res->n_prompt = n_prompt;
        res->n_cached = n_cached;
        res->n_generated = n_gen;
        snprintf(res->finish, sizeof res->finish, "%s", rc ? "error" : finish);
        res->prompt_s = t_first ? t_first - t_start : 0;
        res->gen_s = t_first ? t_last - t_first : 0;
        res->failovers = failovers;
        res->stall_s = stall;
        res->overhead_s = overhead;
    }
    free(hist);
    free(r->emb);
    free(r);
    return rc;
}

/* ---- messages for the coordinator ---------------------------------------------------------------- */

void cl_coord_on_message(byoai_cluster *c, const uint8_t from[32], uint8_t *buf, size_t len, const cl_msg *m) {
    switch (m->type) {
    case CL_MSG_LOAD_OK:
    case CL_MSG_LOAD_ERR: {
        const cl_load_reply *r = &m->u.load_reply;
        pthread_mutex_lock(&c->mu);
        cl_dep *d = cl_dep_by_id(c, r->dep_id);
        if (d && r->epoch == d->load_epoch)
            for (uint32_t s = 0; s < d->load_n; s++)
                if (!memcmp(d->load_pk[s], from, 32) && !d->load_got[s]) {
                    d->load_got[s] = true;
                    d->load_reply[s] = *r;
                    break;
                }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        break;
    }
    case CL_MSG_TOKEN:
    case CL_MSG_STAGE_ERR: {
        uint64_t req = m->type == CL_MSG_TOKEN ? m->u.token.req_id : m->u.stage_err.req_id;
        uint32_t epoch = m->type == CL_MSG_TOKEN ? m->u.token.epoch : m->u.stage_err.epoch;
        uint32_t step = m->type == CL_MSG_TOKEN ? m->u.token.step : m->u.stage_err.step;
        pthread_mutex_lock(&c->mu);
        for (cl_req *r = c->reqs; r; r = r->next) {
            if (r->id != req || r->epoch != epoch || r->step != step) continue;
            /* only the stages of the current plan may answer */
            bool member = false;
            for (uint32_t s = 0; s < r->dep->plan.n_stages; s++) member |= !memcmp(r->dep->stage_pk[s], from, 32);
            if (!member) break;
            if (m->type == CL_MSG_TOKEN) {
                if (!memcmp(r->dep->stage_pk[r->dep->plan.n_stages - 1], from, 32) && !r->has_token) {
                    r->tok = m->u.token;
                    r->has_token = true;
                }
            } else if (!r->has_err) {
                r->serr = m->u.stage_err;
                r->has_err = true;
            }
            break;
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        break;
    }
    case CL_MSG_GEN:
        cl_serve_gen(c, from, buf, len, &m->u.gen);
        buf = NULL; /* taken */
        break;
    case CL_MSG_GEN_CANCEL:
        pthread_mutex_lock(&c->mu);
        for (cl_served *sv = c->served; sv; sv = sv->next)
            if (sv->id == m->u.req_id && !memcmp(sv->from, from, 32)) sv->cancel = true;
        pthread_mutex_unlock(&c->mu);
        break;
    case CL_MSG_GEN_TOKEN:
    case CL_MSG_GEN_END: {
        uint64_t id = m->type == CL_MSG_GEN_TOKEN ? m->u.token.req_id : m->u.gen_end.req_id;
        pthread_mutex_lock(&c->mu);
        for (cl_proxy *px = c->proxies; px; px = px->next) {
            if (px->id != id || memcmp(px->coord_pk, from, 32) || px->ended) continue;
            if (m->type == CL_MSG_GEN_END) {
                px->end = m->u.gen_end;
                px->ended = true;
            } else if (m->u.token.pos == px->n_toks) {
                if (px->n_toks == px->cap_toks) {
                    size_t cap = px->cap_toks ? px->cap_toks * 2 : 64;
                    cl_token_msg *t = cap <= (1u << 20) ? realloc(px->toks, cap * sizeof *t) : NULL;
                    if (!t) break;
                    px->toks = t;
                    px->cap_toks = cap;
                }
                px->toks[px->n_toks++] = m->u.token;
            }
            break;
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        break;
    }
    case CL_MSG_EMBEDDING: {
        const cl_embedding_msg *e = &m->u.embedding;
        float *v = malloc(e->n_embd * sizeof(float));
        if (!v) break;
        for (uint32_t i = 0; i < e->n_embd; i++) v[i] = cl_embedding_at(e, i);
        pthread_mutex_lock(&c->mu);
        if (e->dep_id) { /* from the last stage of a request coordinated here */
            for (cl_req *r = c->reqs; r; r = r->next) {
                if (r->id != e->req_id || r->epoch != e->epoch || r->step != e->step || r->dep->id != e->dep_id) continue;
                if (!memcmp(r->dep->stage_pk[r->dep->plan.n_stages - 1], from, 32) && !r->has_emb &&
                    e->n_embd == r->dep->cost.n_embd) {
                    r->emb = v;
                    r->n_emb = e->n_embd;
                    r->has_emb = true;
                    v = NULL;
                }
                break;
            }
        } else { /* the answer to an embedding this node asked a coordinator for */
            for (cl_proxy *px = c->proxies; px; px = px->next) {
                if (px->id != e->req_id || memcmp(px->coord_pk, from, 32) || px->ended || px->emb) continue;
                px->emb = v;
                px->n_emb = e->n_embd;
                v = NULL;
                break;
            }
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        free(v);
        break;
    }
    case CL_MSG_HEADER:
        cl_vocab_on_header(c, &m->u.header);
        break;
    case CL_MSG_RECORD:
        cl_record_on_message(c, from, &m->u.record);
        break;
    default:
        break;
    }
    free(buf);
}
