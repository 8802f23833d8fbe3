/*
 * Every completion enters here (byoai_cluster_generate, byoai_cluster_embed),
 * whichever member coordinates its model: run here when this node does
 * (complete.c), else asked of the member that does (GEN), its tokens
 * streaming back. When that coordinator is lost, another member takes the
 * deployment over (takeover.c); the completion waits for it and continues
 * there from the tokens it has so far (the prompt, and the generated tokens
 * as history, with the number of random draws made), so the text is the one
 * it would have been. Only when nobody takes over in time does it end, with
 * an error that says so. The same file serves the GENs other members send.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/node_internal.h"

#define MAX_HANDOVERS 8
#define MAX_FAILOVERS 8 /* of the coordinator (complete.c): its re-plans bound how long it may be silent */

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
static proxy_state proxy_once(byoai_cluster *c, const uint8_t coord[32], const char *model, const cl_gen_input *in,
                              const byoai_cluster_gen_params *p, tracker *k, byoai_cluster_gen_result *res,
                              cl_embed_out *eo, int *rc, byoai_error *err) {
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
                .n = (uint32_t)in->n, .n_prompt = (uint32_t)in->n_prompt,
                .schema = p->json_object && !eo ? (const uint8_t *)p->json_schema : NULL,
                .schema_len = p->json_object && !eo && p->json_schema ? (uint32_t)strlen(p->json_schema) : 0};
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
        double limit = (used ? 2 : 4) * c->step_s + c->load_s * (used ? 0 : 0.1) + (1 + MAX_HANDOVERS) * c->failure_s;
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
                       byoai_cluster_gen_result *res, cl_embed_out *eo, byoai_error *err) {
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
        cl_gen_input in = {prompt, n_prompt, n_prompt};
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
            rc = cl_coord_generate(c, d, &in, &pp, track, &k, &one, eo, err);
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
            if (rc == BYOAI_EBUSY && moved && !k.stopped && handovers++ < MAX_HANDOVERS) { /* handed on: go on there */
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
        if (st == P_LOST && !k.stopped && !k.failed && handovers++ < MAX_HANDOVERS) {
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
    if (p && p->json_schema && strlen(p->json_schema) > BYOAI_CLUSTER_MAX_SCHEMA)
        return byoai_error_set(err, BYOAI_ERANGE, "a JSON Schema for a cluster model is at most %d bytes",
                               BYOAI_CLUSTER_MAX_SCHEMA);
    return run_request(c, model, prompt, n_prompt, p, fn, user, res, NULL, err);
}

int byoai_cluster_embed(byoai_cluster *c, const char *model, const int32_t *prompt, size_t n_prompt, float **out,
                        uint32_t *n_embd, byoai_cluster_gen_result *res, byoai_error *err) {
    *out = NULL;
    *n_embd = 0;
    byoai_cluster_gen_params p = {.sampler = byoai_sampler_defaults(), .n_predict = 0, .top_logprobs = -1};
    p.sampler.temp = 0;
    cl_embed_out eo = {0};
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
    char *schema = sv->gen.schema ? byoai_strndup((const char *)sv->gen.schema, sv->gen.schema_len) : NULL;
    cl_gen_end end = {.req_id = sv->id};
    byoai_error err = {0};
    byoai_cluster_gen_result res = {0};
    int rc;
    if (!toks || (sv->gen.schema && !schema)) rc = byoai_error_set(&err, BYOAI_ENOMEM, "out of memory");
    else {
        for (uint32_t i = 0; i < sv->gen.n; i++) {
            const uint8_t *p = sv->gen.tokens + 4 * (size_t)i;
            toks[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        }
        byoai_cluster_gen_params gp = {.sampler = sv->gen.sp, .n_predict = sv->gen.n_predict,
                                       .top_logprobs = sv->gen.top_logprobs, .ignore_eog = sv->gen.ignore_eog,
                                       .json_object = sv->gen.json_object, .json_schema = schema};
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
            cl_embed_out eo = {0};
            cl_gen_input in = {toks, sv->gen.n, sv->gen.n_prompt};
            rc = cl_coord_generate(c, d, &in, &gp, served_emit, &x, &res, sv->gen.embed ? &eo : NULL, &err);
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
    free(schema);
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

void cl_serve_gen(byoai_cluster *c, const uint8_t from[32], uint8_t *buf, size_t len, const cl_gen *g) {
    cl_served *sv = calloc(1, sizeof *sv);
    if (!sv) {
        free(buf);
        return;
    }
    sv->id = g->req_id;
    memcpy(sv->from, from, 32);
    sv->buf = buf;
    sv->len = len;
    sv->gen = *g;
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
}
