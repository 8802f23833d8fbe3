/*
 * Requests for models the private cluster runs (docs/cluster.md).
 *
 * With the cluster setting the server runs a cluster node for its home and
 * deploys its cluster-model entries across the members at start. A request
 * for a model the server does not have itself but the cluster runs gets a
 * handle whose model is the cluster model's vocabulary (tokenizer and chat
 * template; fetched from the coordinating member when this machine lacks
 * the file), so the prompt is built exactly as for a local model. The job
 * then runs on its own thread through byoai_cluster_generate, which hands
 * over tokens that become pieces the way the scheduler makes them (stop
 * strings, held-back partial text, logprobs): answers, streams and errors
 * look the same to a client whichever way the model runs. JSON mode runs
 * its filter on the last stage; an embedding is pooled there too
 * (byoai_cluster_embed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byoai/cluster.h"
#include "byoai/store.h"
#include "server/server_internal.h"

/* Before deploying, wait for cluster-min-nodes members, and say so (at most
 * a line a second: when the count changes, else every 5 s): the server does
 * not listen until then. The caller may give up (SIGTERM) meanwhile. */
#define MEMBERS_WAIT_S 600.0

static int wait_members(srv_server *s, byoai_error *err) {
    uint32_t want = s->cfg.cluster_min_nodes;
    double t0 = byoai_time_now(), last_print = -10;
    int last_alive = -1;
    for (;;) {
        int alive = byoai_cluster_alive_count(s->cluster);
        double now = byoai_time_now();
        if ((uint32_t)alive >= want) {
            if (last_alive >= 0)
                fprintf(stderr, "byoai serve: %d cluster members alive; deploying the cluster models\n", alive);
            return 0;
        }
        if (s->cancel_start && __atomic_load_n(s->cancel_start, __ATOMIC_ACQUIRE))
            return byoai_error_set(err, BYOAI_ECANCELED, "stopped while waiting for cluster members");
        if (now - t0 > MEMBERS_WAIT_S)
            return byoai_error_set(err, BYOAI_ETIMEOUT,
                                   "only %d of the %u cluster members asked for (cluster-min-nodes) are reachable "
                                   "after %.0f s; start the others, or lower --cluster-min-nodes",
                                   alive, want, MEMBERS_WAIT_S);
        if ((alive != last_alive && now - last_print >= 1) || now - last_print >= 5) {
            fprintf(stderr, "byoai serve: waiting for %u cluster members (%d alive) before listening\n", want, alive);
            last_print = now;
            last_alive = alive;
        }
        usleep(50000);
    }
}

int srv_cluster_start(srv_server *s, byoai_error *err) {
    const byoai_server_config *c = &s->cfg;
    if (!c->cluster) return 0;
    const char *peers[16], *files[BYOAI_SERVER_MAX_MODELS + 8];
    size_t n_files = 0;
    for (uint32_t i = 0; i < c->n_cluster_peers && i < 16; i++) peers[i] = c->cluster_peers[i];
    /* every model file this server knows may serve layers for the cluster */
    for (uint32_t i = 0; i < c->n_models; i++) files[n_files++] = c->models[i].path;
    char paths[8][4096];
    for (uint32_t i = 0; i < c->n_cluster_models; i++) {
        struct stat st;
        snprintf(paths[i], sizeof paths[i], "%s", c->cluster_models[i].path);
        if (stat(paths[i], &st) != 0 && srv_models_store(s->models)) { /* an installed name */
            byoai_error e2;
            if (byoai_store_resolve(srv_models_store(s->models), c->cluster_models[i].path, paths[i], sizeof paths[i],
                                    NULL, &e2))
                return byoai_error_set(err, e2.code, "cluster-model %s: %s", c->cluster_models[i].name, e2.msg);
        }
        files[n_files++] = paths[i];
    }
    byoai_cluster_config cc = {.home = c->home[0] ? c->home : NULL, .bind_addr = c->cluster_bind,
                               .name = c->cluster_name[0] ? c->cluster_name : NULL,
                               .port = c->cluster_port, .discovery_port = c->cluster_discovery_port,
                               .no_discovery = !c->cluster_discovery, .peers = peers, .n_peers = c->n_cluster_peers,
                               .memory = c->cluster_memory, .measure_bandwidth = true,
                               .heartbeat_s = c->cluster_heartbeat, .failure_timeout_s = c->cluster_failure_timeout,
                               .step_timeout_s = c->cluster_step_timeout, .n_threads = (int)c->threads,
                               .model_files = files, .n_model_files = n_files,
                               .test_link_delay_ms = c->cluster_test_link_delay_ms};
    int rc = byoai_cluster_start(&cc, &s->cluster, err);
    if (rc) return byoai_error_prefix(err, "cluster");
    if (c->n_cluster_models && (rc = wait_members(s, err))) {
        byoai_cluster_stop(s->cluster);
        s->cluster = NULL;
        return rc;
    }
    for (uint32_t i = 0; i < c->n_cluster_models; i++) {
        byoai_cluster_model_opts o = {.name = c->cluster_models[i].name, .path = paths[i],
                                      .url = c->cluster_model_url[0] ? c->cluster_model_url : NULL, .n_ctx = c->ctx,
                                      .n_seq = c->parallel, .min_nodes = c->cluster_min_nodes,
                                      .wire = strcmp(c->cluster_wire, "f16") ? BYOAI_WIRE_F32 : BYOAI_WIRE_F16};
        if ((rc = byoai_cluster_deploy(s->cluster, &o, err))) {
            byoai_cluster_stop(s->cluster);
            s->cluster = NULL;
            return rc;
        }
        byoai_log(BYOAI_LOG_INFO, "cluster model %s deployed", o.name);
    }
    return 0;
}

void srv_cluster_stop(srv_server *s) {
    if (!s->cluster) return;
    /* running completions end with "cancelled" once the node stops */
    byoai_cluster_stop(s->cluster);
    while (__atomic_load_n(&s->cluster_jobs, __ATOMIC_ACQUIRE) > 0) usleep(10000);
    s->cluster = NULL;
}

int srv_cluster_acquire(srv_server *s, const char *name, srv_loaded **out, srv_error *e) {
    *out = NULL;
    if (!s->cluster || !byoai_cluster_has_model(s->cluster, name))
        return srv_err(e, 404, "invalid_request_error", "model_not_found", "model",
                       "the model '%s' does not exist on this server or its cluster", name);
    const byoai_model *v;
    byoai_error err = {0};
    if (byoai_cluster_model_vocab(s->cluster, name, &v, &err))
        return srv_err(e, 502, "server_error", "cluster_unavailable", NULL, "model '%s' runs in the cluster, but: %s",
                       name, err.msg);
    srv_loaded *l = calloc(1, sizeof *l);
    if (!l) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    snprintf(l->name, sizeof l->name, "%s", name);
    l->model = (byoai_model *)v; /* owned by the cluster node; never freed here */
    l->cluster = true;
    /* the context the coordinator gives each request (coord.c sizes it so) */
    uint32_t train = byoai_model_hparams(v)->n_ctx_train;
    l->n_ctx = s->cfg.ctx ? s->cfg.ctx : train && train < 2048 ? train : 2048;
    size_t tl;
    const char *tmpl = byoai_model_chat_template(v, &tl);
    l->family = byoai_chat_detect(tmpl, tl);
    if (l->family == BYOAI_CHAT_FALLBACK && byoai_token_lookup(byoai_model_tokenizer(v), "<|im_start|>", 12) >= 0)
        l->family = BYOAI_CHAT_CHATML;
    *out = l;
    return 0;
}

void srv_cluster_release(srv_loaded *l) { free(l); }

int srv_acquire(srv_server *s, const char *name, srv_loaded **out, srv_error *e) {
    srv_log_model(name);
    int rc = srv_models_acquire(s->models, name, out, e);
    if (rc == 404 && s->cluster && byoai_cluster_has_model(s->cluster, name)) { /* the cluster runs it */
        *e = (srv_error){0};
        rc = srv_cluster_acquire(s, name, out, e);
    }
    return rc;
}

void srv_release(srv_server *s, srv_loaded *l) {
    if (l->cluster) srv_cluster_release(l);
    else srv_models_release(s->models, l);
}

typedef struct runner {
    srv_server *s;
    srv_job *j;
    char name[129];
    const byoai_tokenizer *tok;
    char *pend;
    size_t pend_len, pend_cap;
    bool stopped;   /* a stop string, an end-of-generation or control token */
    bool cancelled, timed_out;
} runner;

static bool pend_append(runner *r, const char *p, size_t n) {
    if (r->pend_len + n + 1 > r->pend_cap) {
        size_t cap = r->pend_cap ? r->pend_cap * 2 : 256;
        while (cap < r->pend_len + n + 1) cap *= 2;
        char *q = realloc(r->pend, cap);
        if (!q) return false;
        r->pend = q;
        r->pend_cap = cap;
    }
    memcpy(r->pend + r->pend_len, p, n);
    r->pend_len += n;
    return true;
}

/* one token from the cluster: the same steps as the scheduler's sample() */
static int on_token(void *user, const byoai_cluster_token *t) {
    runner *r = user;
    srv_job *j = r->j;
    if (__atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE)) {
        r->cancelled = true;
        return 1;
    }
    if (j->deadline > 0 && byoai_time_now() > j->deadline) {
        r->timed_out = true;
        return 1;
    }
    if (byoai_token_is_control(r->tok, t->id)) { /* the cluster stops at end-of-generation; control tokens too */
        r->stopped = true;
        return 1;
    }
    j->n_gen++;
    if (j->n_gen == 1) j->t_first = byoai_time_now();
    char piece[512];
    int n = byoai_token_to_piece(r->tok, t->id, piece, sizeof piece, false);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof piece) n = sizeof piece;
    if (!pend_append(r, piece, (size_t)n)) return 1;
    bool found;
    size_t at = 0;
    size_t release = srv_stop_scan(r->pend, r->pend_len, j->s.stop, j->s.n_stop, false, &found, &at);
    srv_job_push_piece(j, r->pend, release, t->id, t->logprob, t->top_ids, t->top_logprobs, t->n_top);
    if (found) {
        r->pend_len = 0;
        r->stopped = true;
        return 1;
    }
    memmove(r->pend, r->pend + release, r->pend_len - release);
    r->pend_len -= release;
    return 0;
}

/* An error of the cluster as the API's error. */
static void cluster_error(srv_error *e, int rc, const byoai_error *err) {
    int status = rc == BYOAI_ERANGE || rc == BYOAI_EINVAL ? 400 : rc == BYOAI_ETIMEOUT ? 504 : 502;
    srv_err(e, status, status == 400 ? "invalid_request_error" : "server_error",
            status == 400 ? "context_length_exceeded" : "cluster_error", NULL, "%s", err->msg);
}

/* An embedding: one pooled vector from the last stage. */
static void embed_job(runner *r) {
    srv_job *j = r->j;
    float *v = NULL;
    uint32_t n = 0;
    byoai_cluster_gen_result res = {0};
    byoai_error err = {0};
    int rc = byoai_cluster_embed(r->s->cluster, r->name, j->prompt, j->n_prompt, &v, &n, &res, &err);
    srv_error e = {0};
    const char *reason = "stop";
    if (rc == BYOAI_ECANCELED) reason = "cancelled";
    else if (rc) {
        cluster_error(&e, rc, &err);
        reason = "error";
    } else {
        pthread_mutex_lock(&j->mu);
        j->embedding = v;
        j->n_embd = n;
        pthread_mutex_unlock(&j->mu);
        v = NULL;
        j->n_prompt_eval = j->n_prompt;
        if (res.failovers)
            byoai_log(BYOAI_LOG_INFO, "cluster: %s: the embedding survived %u re-plan(s)", r->name, res.failovers);
    }
    free(v);
    srv_job_end(j, reason, e.status ? &e : NULL);
}

static void *run_job(void *arg) {
    runner *r = arg;
    srv_job *j = r->j;
    j->t_start = byoai_time_now();
    if (j->embed) {
        embed_job(r);
        srv_job_unref(j);
        __atomic_sub_fetch(&r->s->cluster_jobs, 1, __ATOMIC_ACQ_REL);
        free(r);
        return NULL;
    }
    byoai_cluster_gen_params p = {.sampler = byoai_sampler_defaults(), .top_logprobs = -1};
    p.sampler.temp = j->s.temperature;
    p.sampler.top_p = j->s.top_p > 0 ? j->s.top_p : 1.0f;
    p.sampler.top_k = j->s.top_k;
    p.sampler.min_p = j->s.min_p;
    p.sampler.repeat_penalty = j->s.repeat_penalty;
    p.sampler.frequency_penalty = j->s.frequency_penalty;
    p.sampler.presence_penalty = j->s.presence_penalty;
    p.sampler.seed = j->s.seed;
    p.n_predict = j->max_new ? (int32_t)j->max_new : -1;
    if (j->s.logprobs) p.top_logprobs = j->s.top_logprobs;
    p.json_object = j->s.json_mode || j->schema_text;
    p.json_schema = j->schema_text;
    byoai_cluster_gen_result res = {0};
    byoai_error err = {0};
    int rc = byoai_cluster_generate(r->s->cluster, r->name, j->prompt, j->n_prompt, &p, on_token, r, &res, &err);
    /* the stages kept the KV of the conversation's earlier turns: only the rest was computed */
    j->n_prompt_cached = res.n_cached < j->n_prompt ? res.n_cached : 0;
    j->n_prompt_eval = j->n_prompt - j->n_prompt_cached;
    srv_error e = {0};
    const char *reason = res.finish[0] ? res.finish : "stop";
    if (r->cancelled) reason = "cancelled";
    else if (r->timed_out) {
        srv_err(&e, 504, "server_error", "timeout", NULL, "the request took longer than the server's request-timeout");
        reason = "error";
    } else if (r->stopped) reason = "stop";
    else if (rc == BYOAI_ECANCELED) reason = "cancelled";
    else if (rc) {
        cluster_error(&e, rc, &err);
        reason = "error";
    }
    if (!e.status && r->pend_len && strcmp(reason, "cancelled")) /* the held-back tail */
        srv_job_push_piece(j, r->pend, r->pend_len, -1, 0, NULL, NULL, 0);
    if (res.failovers)
        byoai_log(BYOAI_LOG_INFO, "cluster: %s: the answer survived %u re-plan(s) (%.2f s stall)", r->name,
                  res.failovers, res.stall_s);
    srv_job_end(j, reason, e.status ? &e : NULL);
    srv_job_unref(j);
    free(r->pend);
    __atomic_sub_fetch(&r->s->cluster_jobs, 1, __ATOMIC_ACQ_REL);
    free(r);
    return NULL;
}

int srv_cluster_submit(srv_server *s, srv_loaded *l, srv_job *j, srv_error *e) {
    runner *r = calloc(1, sizeof *r);
    if (!r) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    r->s = s;
    r->j = j;
    r->tok = byoai_model_tokenizer(l->model);
    snprintf(r->name, sizeof r->name, "%s", l->name);
    j->t_submit = byoai_time_now();
    srv_job_ref(j);
    __atomic_add_fetch(&s->cluster_jobs, 1, __ATOMIC_ACQ_REL);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &at, run_job, r);
    pthread_attr_destroy(&at);
    if (rc) {
        __atomic_sub_fetch(&s->cluster_jobs, 1, __ATOMIC_ACQ_REL);
        srv_job_unref(j);
        free(r);
        return srv_err(e, 503, "server_error", NULL, NULL, "cannot start a thread for the request");
    }
    return 0;
}

void srv_cluster_list(srv_server *s, json_t *data) {
    if (!s->cluster) return;
    char names[64][64];
    size_t n = byoai_cluster_list_models(s->cluster, names, 64);
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        size_t k;
        json_t *m;
        json_array_foreach(data, k, m) dup |= !strcmp(json_string_value(json_object_get(m, "id")), names[i]);
        if (dup) continue;
        json_array_append_new(data, json_pack("{s:s,s:s,s:I,s:s,s:{s:s}}", "id", names[i], "object", "model",
                                              "created", (json_int_t)0, "owned_by", "byoai", "byoai", "source",
                                              "cluster"));
    }
}
