/*
 * Completions through the cluster.
 *
 * On the coordinator: a completion takes a sequence slot, keeps the token
 * history (prompt and generated tokens), sends the prompt to the first stage
 * in chunks and then one token per step, and waits for the last stage's
 * sampled token. Every wait has a deadline.
 *
 * The prompt cache: a slot's KV caches on every stage keep what the slot
 * last held after its completion ends. A new completion takes the free slot
 * whose cached tokens share the longest prefix with its own (the least
 * recently used one when none does), keeps that prefix on every stage (the
 * stages check it by a digest of its tokens) and sends only the tokens after
 * it, as the single-machine server does. A re-plan empties the caches: the
 * new stages start with nothing and the whole history is sent again.
 *
 * On a member that does not coordinate the model: the completion is asked
 * of the member that does (GEN) and its tokens stream back. When that
 * coordinator is lost, another member takes the deployment over
 * (takeover.c); the completion waits for it and continues there from the
 * tokens it has so far (the prompt, and the generated tokens as history, with
 * the number of random draws made), so the text is the one it would have
 * been. Only when nobody takes over in time does it end, with an error that
 * says so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/tokenizer.h"
#include "cluster/node_internal.h"

#define MAX_FAILOVERS 8

/* what a completion starts from: the prompt, then the tokens already
 * generated when it continues one whose coordinator was lost */
typedef struct {
    const int32_t *toks;
    size_t n, n_prompt;
} gen_input;

/* An embedding request's answer (NULL for completions). */
typedef struct {
    float *v;
    uint32_t n;
} embed_out;

/* the tokens a completion handed to its caller so far (run_request) */
typedef struct {
    int32_t *toks;
    size_t n, cap;
    byoai_cluster_token_fn fn;
    void *user;
    bool stopped;              /* the caller said stop */
    bool failed;               /* out of memory recording them */
} tracker;

static int track(void *user, const byoai_cluster_token *t) {
    tracker *k = user;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 256;
        int32_t *p = cap <= (1u << 22) ? realloc(k->toks, cap * sizeof *p) : NULL;
        if (!p) {
            k->failed = true;
            return 1;
        }
        k->toks = p;
        k->cap = cap;
    }
    k->toks[k->n++] = t->id;
    int stop = k->fn ? k->fn(k->user, t) : 0;
    if (stop) k->stopped = true;
    return stop;
}

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
 * start of hist, when that is mostly what it holds (the same conversation,
 * further on); else an empty slot; else the least recently used one. So a
 * new conversation that shares only a template's first tokens with a cached
 * one does not evict it while a slot is free. -1 when all are busy. */
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
        if (k > 0 && k >= len - k && (best < 0 || k > best_len || (k == best_len && s->used < d->slots[best].used))) {
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

static int coord_generate(byoai_cluster *c, cl_dep *d, const gen_input *in, const byoai_cluster_gen_params *p,
                          byoai_cluster_token_fn fn, void *user, byoai_cluster_gen_result *res, embed_out *eo,
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
                        .json = p->json_object && !eo, .embed = eo != NULL, .gen_from = n_prompt, .gen_end = d->n_ctx};
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

/* ---- completions run by another node's coordinator ------------------------------------------------- */

/* Wait for a usable coordinator of model (under mu), until deadline. */
static bool wait_coordinator(byoai_cluster *c, const char *model, double deadline, uint8_t pk[32]) {
    for (;;) {
        if (cl_model_coordinator(c, model, pk) == 0) return true;
        if (c->stopping || byoai_time_now() > deadline) return false;
        cl_coord_wait(c, deadline);
    }
}

typedef enum { P_DONE, P_LOST, P_LOCAL } proxy_state;

/* One GEN to coord; tokens go through k. P_LOST when the coordinator was
 * lost or has handed the model on (ask again elsewhere). */
static proxy_state proxy_once(byoai_cluster *c, const uint8_t coord[32], const char *model, const gen_input *in,
                              const byoai_cluster_gen_params *p, tracker *k, byoai_cluster_gen_result *res,
                              embed_out *eo, int *rc, byoai_error *err) {
    cl_proxy *px = calloc(1, sizeof *px);
    if (!px) {
        *rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        return P_DONE;
    }
    px->id = cl_random_u64();
    memcpy(px->coord_pk, coord, 32);
    pthread_mutex_lock(&c->mu);
    px->next = c->proxies;
    c->proxies = px;
    pthread_mutex_unlock(&c->mu);
    cl_gen g = {.req_id = px->id, .sp = p->sampler, .n_predict = p->n_predict, .top_logprobs = p->top_logprobs,
                .ignore_eog = p->ignore_eog && !eo, .json_object = p->json_object && !eo, .embed = eo != NULL,
                .n = (uint32_t)in->n, .n_prompt = (uint32_t)in->n_prompt};
    snprintf(g.model, sizeof g.model, "%s", model);
    cl_buf b = {0};
    cl_enc_gen(&b, &g, in->toks);
    byoai_error e2 = {0};
    *rc = cl_send(c, coord, &b, &e2);
    cl_buf_free(&b);
    char cid[BYOAI_CLUSTER_ID_LEN + 1];
    cl_fingerprint(coord, cid);
    proxy_state st = P_DONE;
    if (*rc) {
        *rc = 0;
        st = P_LOST;
    }
    size_t used = 0;
    bool cancelled = false;
    double last = byoai_time_now(), cancel_at = 0;
    pthread_mutex_lock(&c->mu);
    while (st == P_DONE && !*rc) {
        if (used < px->n_toks) {
            byoai_cluster_token t = px->toks[used++].t;
            last = byoai_time_now();
            if (cancelled) continue;
            pthread_mutex_unlock(&c->mu);
            int stop = track(k, &t);
            if (stop) {
                cl_buf cb = {0};
                cl_enc_gen_cancel(&cb, px->id);
                cl_send(c, coord, &cb, NULL);
                cl_buf_free(&cb);
                cancelled = true;
                cancel_at = byoai_time_now();
            }
            pthread_mutex_lock(&c->mu);
            continue;
        }
        if (px->ended) {
            if (px->end.moved && !cancelled) st = P_LOST;
            else if (px->end.code && !cancelled) *rc = byoai_error_set(err, px->end.code, "%s", px->end.msg);
            else if (eo && !px->emb)
                *rc = byoai_error_set(err, BYOAI_EFORMAT, "node %.12s ended the embedding request without an "
                                      "embedding", cid);
            else if (eo) {
                eo->v = px->emb;
                eo->n = px->n_emb;
                px->emb = NULL;
            }
            break;
        }
        if (c->stopping) {
            *rc = byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping");
            break;
        }
        if (!cl_peer_usable(cl_peer_find(c, coord))) {
            st = cancelled ? P_DONE : P_LOST;
            break;
        }
        double limit = (used ? 2 : 4) * c->step_s + c->load_s * (used ? 0 : 0.1) + (1 + MAX_FAILOVERS) * c->failure_s;
        if (cancelled && byoai_time_now() - cancel_at > c->step_s) break;
        if (byoai_time_now() - last > limit) {
            *rc = byoai_error_set(err, BYOAI_ETIMEOUT, "node %.12s sent nothing for %.0f s", cid, limit);
            break;
        }
        cl_coord_wait(c, last + limit);
    }
    for (cl_proxy **pp = &c->proxies; *pp; pp = &(*pp)->next)
        if (*pp == px) {
            *pp = px->next;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    if (res && px->ended) {
        res->n_cached = px->end.n_cached;
        res->prompt_s = px->end.prompt_s;
        res->gen_s = px->end.gen_s;
        res->failovers += px->end.failovers;
        res->stall_s += px->end.stall_s;
        res->overhead_s += px->end.overhead_s;
        snprintf(res->finish, sizeof res->finish, "%s", cancelled ? "stop" : px->end.finish);
    }
    if ((*rc || st == P_LOST) && !cancelled && !px->ended) { /* it may still be running there */
        cl_buf cb = {0};
        cl_enc_gen_cancel(&cb, px->id);
        cl_send_linked(c, coord, &cb);
        cl_buf_free(&cb);
    }
    free(px->toks);
    free(px->emb);
    free(px);
    return st;
}

/* ---- one entry for every completion -------------------------------------------------------------- */

static int run_request(byoai_cluster *c, const char *model, const int32_t *prompt, size_t n_prompt,
                       const byoai_cluster_gen_params *p, byoai_cluster_token_fn fn, void *user,
                       byoai_cluster_gen_result *res, embed_out *eo, byoai_error *err) {
    if (n_prompt == 0 || n_prompt > (1u << 20)) return byoai_error_set(err, BYOAI_EINVAL, "bad prompt length");
    pthread_mutex_lock(&c->mu);
    if (c->stopping) {
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping");
    }
    c->n_generating++;
    pthread_mutex_unlock(&c->mu);
    tracker k = {.fn = fn, .user = user};
    byoai_cluster_gen_result r0 = {0};
    int32_t *all = NULL;
    uint8_t lost[32];
    bool have_lost = false;
    uint32_t handovers = 0;
    int rc = 0;
    for (;;) {
        /* the prompt, and what was generated before a coordinator was lost */
        gen_input in = {prompt, n_prompt, n_prompt};
        if (k.n && !eo) {
            free(all);
            all = malloc((n_prompt + k.n) * sizeof *all);
            if (!all) {
                rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
                break;
            }
            memcpy(all, prompt, n_prompt * sizeof *all);
            memcpy(all + n_prompt, k.toks, k.n * sizeof *all);
            in.toks = all;
            in.n = n_prompt + k.n;
        }
        byoai_cluster_gen_params pp = *p;
        if (eo) { /* an embedding starts again; no token was handed over */
            free(eo->v);
            eo->v = NULL;
        }
        pthread_mutex_lock(&c->mu);
        cl_dep *d = cl_dep_find(c, model);
        uint8_t coord[32];
        bool found = d != NULL;
        if (!d) {
            /* after a loss (or when the model's coordinator is being replaced or resumes it), wait for
             * whoever takes it over: a deterministic member (takeover.c) */
            double wait = have_lost || cl_model_recoverable(c, model) ? 3 * c->failure_s + 30 : 0;
            if (!have_lost && wait > 0) memset(lost, 0, sizeof lost);
            found = wait_coordinator(c, model, byoai_time_now() + wait, coord);
            if (found && cl_is_self(c, coord)) d = cl_dep_find(c, model); /* this node took it over */
        }
        if (d) { /* coordinated here: wait for its plan (a deployment, a takeover) */
            double dl = byoai_time_now() + c->load_s;
            while (!d->ready && d->replanning && !c->stopping && !d->removing && byoai_time_now() < dl)
                cl_coord_wait(c, dl);
        }
        bool local = d && d->ready && !d->removing;
        if (d && !local) found = false;
        if (local) d->active++;
        pthread_mutex_unlock(&c->mu);
        if (!found) {
            pthread_mutex_lock(&c->mu);
            cl_rec *rec = cl_rec_find(c, model);
            bool known = rec && !rec->r.removed;
            char cid[BYOAI_CLUSTER_ID_LEN + 1] = "";
            if (known) cl_fingerprint(rec->r.coord_pk, cid);
            pthread_mutex_unlock(&c->mu);
            if (!have_lost && known)
                rc = byoai_error_set(err, BYOAI_ENET, "no node of the cluster runs model '%s' now: its coordinator "
                                     "%.12s is lost and no member that runs a stage of it is left to take it over; "
                                     "restart that node, or deploy the model again", model, cid);
            else if (!have_lost) rc = byoai_error_set(err, BYOAI_ENOTFOUND, "no node of the cluster runs model '%s'", model);
            else {
                char id[BYOAI_CLUSTER_ID_LEN + 1];
                cl_fingerprint(lost, id);
                rc = byoai_error_set(err, BYOAI_ENET, "node %.12s, which coordinated model '%s', was lost after %zu "
                                     "tokens, and no member took the model over within %.0f s", id, model, k.n,
                                     3 * c->failure_s + 30);
            }
            break;
        }
        if (local) {
            byoai_cluster_gen_result one = {0};
            rc = coord_generate(c, d, &in, &pp, track, &k, &one, eo, err);
            pthread_mutex_lock(&c->mu);
            bool moved = d->moved;
            d->active--;
            pthread_cond_broadcast(&c->cond);
            pthread_mutex_unlock(&c->mu);
            r0.failovers += one.failovers;
            r0.stall_s += one.stall_s;
            r0.overhead_s += one.overhead_s;
            if (!handovers) r0.n_cached = one.n_cached;
            if (!r0.prompt_s) r0.prompt_s = one.prompt_s;
            r0.gen_s += one.gen_s;
            snprintf(r0.finish, sizeof r0.finish, "%s", one.finish);
            if (rc == BYOAI_EBUSY && moved && !k.stopped && handovers++ < MAX_FAILOVERS) { /* handed on: go on there */
                memcpy(lost, c->id.node_pk, 32);
                have_lost = true;
                rc = 0;
                continue;
            }
            break;
        }
        int prc = 0;
        byoai_cluster_gen_result one = {0};
        proxy_state st = proxy_once(c, coord, model, &in, &pp, &k, &one, eo, &prc, err);
        r0.failovers += one.failovers;
        r0.stall_s += one.stall_s;
        r0.overhead_s += one.overhead_s;
        if (!handovers) r0.n_cached = one.n_cached;
        if (!r0.prompt_s) r0.prompt_s = one.prompt_s;
        r0.gen_s += one.gen_s;
        if (one.finish[0]) snprintf(r0.finish, sizeof r0.finish, "%s", one.finish);
        if (st == P_LOST && !k.stopped && !k.failed && handovers++ < MAX_FAILOVERS) {
            memcpy(lost, coord, 32);
            have_lost = true;
            r0.failovers++;
            char id[BYOAI_CLUSTER_ID_LEN + 1];
            cl_fingerprint(coord, id);
            cl_event(c, BYOAI_LOG_WARN, "%s: lost its coordinator %.12s after %zu tokens; waiting for the member that "
                     "takes it over", model, id, k.n);
            continue;
        }
        rc = prc;
        if (st == P_LOST && !rc && !k.stopped)
            rc = byoai_error_set(err, BYOAI_ENET, "model '%s' changed coordinator %u times; giving up", model, handovers);
        break;
    }
    if (k.failed && !rc) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    if (res) {
        *res = r0;
        res->n_prompt = (uint32_t)n_prompt;
        res->n_generated = (uint32_t)k.n;
        if (rc) snprintf(res->finish, sizeof res->finish, "error");
        else if (k.stopped) snprintf(res->finish, sizeof res->finish, "stop");
        else if (!res->finish[0]) snprintf(res->finish, sizeof res->finish, "stop");
    }
    free(all);
    free(k.toks);
    pthread_mutex_lock(&c->mu);
    c->n_generating--;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int byoai_cluster_generate(byoai_cluster *c, const char *model, const int32_t *prompt, size_t n_prompt,
                           const byoai_cluster_gen_params *p, byoai_cluster_token_fn fn, void *user,
                           byoai_cluster_gen_result *res, byoai_error *err) {
    return run_request(c, model, prompt, n_prompt, p, fn, user, res, NULL, err);
}

int byoai_cluster_embed(byoai_cluster *c, const char *model, const int32_t *prompt, size_t n_prompt, float **out,
                        uint32_t *n_embd, byoai_cluster_gen_result *res, byoai_error *err) {
    *out = NULL;
    *n_embd = 0;
    byoai_cluster_gen_params p = {.sampler = byoai_sampler_defaults(), .n_predict = 0, .top_logprobs = -1};
    p.sampler.temp = 0;
    embed_out eo = {0};
    int rc = run_request(c, model, prompt, n_prompt, &p, NULL, NULL, res, &eo, err);
    if (rc) {
        free(eo.v);
        return rc;
    }
    *out = eo.v;
    *n_embd = eo.n;
    return 0;
}

/* ---- serving completions for other nodes ------------------------------------------------------------ */

typedef struct {
    byoai_cluster *c;
    cl_served *sv;
    uint32_t n;
} served_ctx;

static int served_emit(void *user, const byoai_cluster_token *t) {
    served_ctx *x = user;
    pthread_mutex_lock(&x->c->mu);
    bool cancel = x->sv->cancel || x->c->stopping;
    pthread_mutex_unlock(&x->c->mu);
    if (cancel) return 1;
    cl_token_msg m = {.req_id = x->sv->id, .pos = x->n++, .t = *t};
    cl_buf b = {0};
    cl_enc_token(&b, CL_MSG_GEN_TOKEN, &m);
    int rc = cl_send(x->c, x->sv->from, &b, NULL);
    cl_buf_free(&b);
    return rc != 0; /* the requester is gone: stop */
}

static void served_run(byoai_cluster *c, void *arg) {
    cl_served *sv = arg;
    int32_t *toks = malloc(sv->gen.n * sizeof(int32_t));
    cl_gen_end end = {.req_id = sv->id};
    byoai_error err = {0};
    byoai_cluster_gen_result res = {0};
    int rc;
    if (!toks) rc = byoai_error_set(&err, BYOAI_ENOMEM, "out of memory");
    else {
        for (uint32_t i = 0; i < sv->gen.n; i++) {
            const uint8_t *p = sv->gen.tokens + 4 * (size_t)i;
            toks[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        }
        byoai_cluster_gen_params gp = {.sampler = sv->gen.sp, .n_predict = sv->gen.n_predict,
                                       .top_logprobs = sv->gen.top_logprobs, .ignore_eog = sv->gen.ignore_eog,
                                       .json_object = sv->gen.json_object};
        served_ctx x = {c, sv, 0};
        pthread_mutex_lock(&c->mu);
        cl_dep *d = cl_dep_find(c, sv->gen.model);
        if (d) { /* taking it over: the plan is being loaded */
            double dl = byoai_time_now() + c->load_s;
            while (!d->ready && d->replanning && !c->stopping && !d->removing && byoai_time_now() < dl)
                cl_coord_wait(c, dl);
        }
        bool ready = d && d->ready && !d->removing;
        if (ready) {
            c->n_generating++;
            d->active++;
        }
        pthread_mutex_unlock(&c->mu);
        if (!ready) {
            rc = byoai_error_set(&err, BYOAI_ENOTFOUND, "model '%s' is not deployed here", sv->gen.model);
            end.moved = true; /* ask the one that coordinates it */
        } else {
            embed_out eo = {0};
            gen_input in = {toks, sv->gen.n, sv->gen.n_prompt};
            rc = coord_generate(c, d, &in, &gp, served_emit, &x, &res, sv->gen.embed ? &eo : NULL, &err);
            if (!rc && eo.v) { /* the embedding goes before the end */
                cl_embedding_msg em = {.req_id = sv->id, .n_embd = eo.n};
                cl_buf eb = {0};
                cl_enc_embedding(&eb, &em, eo.v);
                cl_send(c, sv->from, &eb, NULL);
                cl_buf_free(&eb);
            }
            free(eo.v);
            pthread_mutex_lock(&c->mu);
            /* handed on, or this node is going away: the requester continues with the member that takes over */
            if ((d->moved && rc == BYOAI_EBUSY) || (rc == BYOAI_ECANCELED && c->stopping)) end.moved = true;
            d->active--;
            c->n_generating--;
            pthread_cond_broadcast(&c->cond);
            pthread_mutex_unlock(&c->mu);
        }
    }
    free(toks);
    end.code = rc;
    snprintf(end.msg, sizeof end.msg, "%s", rc ? err.msg : "");
    snprintf(end.finish, sizeof end.finish, "%s", res.finish[0] ? res.finish : "error");
    end.n_prompt = res.n_prompt;
    end.n_generated = res.n_generated;
    end.n_cached = res.n_cached;
    end.failovers = res.failovers;
    end.prompt_s = res.prompt_s;
    end.gen_s = res.gen_s;
    end.stall_s = res.stall_s;
    end.overhead_s = res.overhead_s;
    cl_buf b = {0};
    cl_enc_gen_end(&b, &end);
    cl_send(c, sv->from, &b, NULL);
    cl_buf_free(&b);
    pthread_mutex_lock(&c->mu);
    for (cl_served **pp = &c->served; *pp; pp = &(*pp)->next)
        if (*pp == sv) {
            *pp = sv->next;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    free(sv->buf);
    free(sv);
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
    case CL_MSG_GEN: {
        cl_served *sv = calloc(1, sizeof *sv);
        if (!sv) break;
        sv->id = m->u.gen.req_id;
        memcpy(sv->from, from, 32);
        sv->buf = buf;
        sv->len = len;
        sv->gen = m->u.gen;
        buf = NULL; /* owned by sv now */
        pthread_mutex_lock(&c->mu);
        sv->next = c->served;
        c->served = sv;
        pthread_mutex_unlock(&c->mu);
        if (!cl_spawn(c, served_run, sv)) {
            pthread_mutex_lock(&c->mu);
            for (cl_served **pp = &c->served; *pp; pp = &(*pp)->next)
                if (*pp == sv) {
                    *pp = sv->next;
                    break;
                }
            pthread_mutex_unlock(&c->mu);
            cl_gen_end end = {.req_id = sv->id, .code = BYOAI_ECANCELED, .moved = true};
            snprintf(end.finish, sizeof end.finish, "error");
            snprintf(end.msg, sizeof end.msg, "the coordinator is stopping");
            cl_buf b = {0};
            cl_enc_gen_end(&b, &end);
            cl_send(c, from, &b, NULL);
            cl_buf_free(&b);
            free(sv->buf);
            free(sv);
        }
        break;
    }
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
