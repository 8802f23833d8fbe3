/*
 * The coordinator: deployments of models across the cluster, completions
 * through their pipelines, and failover.
 *
 * A deployment is a model this node coordinates: its tensor manifest, its
 * vocabulary (for tokenizing and end-of-generation checks), the current plan
 * (an epoch number and the node of each stage) and a fixed number of
 * sequence slots. A completion takes a slot, keeps the token history
 * (prompt and generated tokens), sends the prompt to the first stage in
 * chunks and then one token per step, and waits for the last stage's
 * sampled token. Every wait has a deadline.
 *
 * Failover: when a stage's node is lost (its link closed and cannot be
 * re-opened, it was silent for failure_timeout_s, or another stage cannot
 * reach it), the first completion to notice re-plans over the nodes left
 * (a new epoch; every stage gets a LOAD, those whose range is unchanged keep
 * their weights) while the others wait; then each completion re-prefills
 * its history from position 0 with the number of random draws made so far,
 * and continues where it was. Steps of an older epoch are dropped by the
 * stages. When the nodes left cannot hold the model, the completion fails
 * with an error naming the lost node and the memory shortfall.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byoai/tokenizer.h"
#include "cluster/node_internal.h"

#define MAX_FAILOVERS 8

static void abs_deadline(struct timespec *ts, double seconds_from_now) {
    clock_gettime(CLOCK_REALTIME, ts);
    double s = (double)ts->tv_sec + ts->tv_nsec * 1e-9 + seconds_from_now;
    ts->tv_sec = (time_t)s;
    ts->tv_nsec = (long)((s - (double)ts->tv_sec) * 1e9);
}

static void wait_a_while(byoai_cluster *c, double until) {
    double left = until - byoai_time_now();
    if (left > 0.25) left = 0.25;
    if (left < 0.001) left = 0.001;
    struct timespec ts;
    abs_deadline(&ts, left);
    pthread_cond_timedwait(&c->cond, &c->mu, &ts);
}

static cl_dep *dep_find(byoai_cluster *c, const char *name) {
    for (cl_dep *d = c->deps; d; d = d->next)
        if (!strcmp(d->name, name) && !d->removing) return d;
    return NULL;
}

static cl_dep *dep_by_id(byoai_cluster *c, uint64_t id) {
    for (cl_dep *d = c->deps; d; d = d->next)
        if (d->id == id) return d;
    return NULL;
}

static void dep_free(cl_dep *d) {
    if (!d) return;
    cl_manifest_free(&d->man);
    free(d->man_json);
    cl_model_cost_free(&d->cost);
    byoai_model_free(d->vocab);
    for (size_t i = 0; i < d->n_only; i++) free(d->only[i]);
    free(d->only);
    free(d->slot_busy);
    free(d);
}

static bool valid_model_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= CL_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == '/' || s[i] == '"' || s[i] == '\\' || (unsigned char)s[i] == 0x7F)
            return false;
    return true;
}

/* ---- planning and loading ----------------------------------------------------------------- */

typedef struct {
    uint8_t pk[BYOAI_CLUSTER_MAX_NODES][32];
    uint32_t n;
} pk_set;

static bool set_has(const pk_set *s, const uint8_t pk[32]) {
    for (uint32_t i = 0; i < s->n; i++)
        if (!memcmp(s->pk[i], pk, 32)) return true;
    return false;
}

static void set_add(pk_set *s, const uint8_t pk[32]) {
    if (!set_has(s, pk) && s->n < BYOAI_CLUSTER_MAX_NODES) memcpy(s->pk[s->n++], pk, 32);
}

static bool allowed_by(const cl_dep *d, const char *id) {
    if (!d->n_only) return true;
    for (size_t i = 0; i < d->n_only; i++)
        if (!strncmp(id, d->only[i], strlen(d->only[i]))) return true;
    return false;
}

/* the nodes a plan may use, coordinator first, then by offered memory */
static uint32_t collect_nodes(byoai_cluster *c, const cl_dep *d, const pk_set *excluded, cl_plan_node *nodes,
                              uint8_t pks[][32]) {
    uint32_t n = 0;
    pthread_mutex_lock(&c->mu);
    if (allowed_by(d, c->id.node_id) && !set_has(excluded, c->id.node_pk)) {
        snprintf(nodes[n].id, sizeof nodes[n].id, "%s", c->id.node_id);
        snprintf(nodes[n].name, sizeof nodes[n].name, "%s", c->id.node_name);
        nodes[n].memory = c->self.mem_offered;
        nodes[n].speed = c->self.mem_bw;
        memcpy(pks[n], c->id.node_pk, 32);
        n++;
    }
    uint32_t first_peer = n;
    for (int i = 0; i < CL_MAX_PEERS && n < BYOAI_CLUSTER_MAX_NODES; i++) {
        cl_peer *p = &c->peers[i];
        if (!p->used || !cl_peer_usable(p) || !p->have_info || set_has(excluded, p->pk) || !allowed_by(d, p->id)) continue;
        snprintf(nodes[n].id, sizeof nodes[n].id, "%s", p->id);
        snprintf(nodes[n].name, sizeof nodes[n].name, "%s", cl_peer_name(p));
        nodes[n].memory = p->info.mem_offered;
        nodes[n].speed = p->info.mem_bw;
        memcpy(pks[n], p->pk, 32);
        n++;
    }
    pthread_mutex_unlock(&c->mu);
    /* peers by memory, descending, then id (every run plans the same) */
    for (uint32_t i = first_peer + 1; i < n; i++)
        for (uint32_t j = i; j > first_peer; j--) {
            bool swap = nodes[j].memory > nodes[j - 1].memory ||
                        (nodes[j].memory == nodes[j - 1].memory && strcmp(nodes[j].id, nodes[j - 1].id) < 0);
            if (!swap) break;
            cl_plan_node t = nodes[j];
            nodes[j] = nodes[j - 1];
            nodes[j - 1] = t;
            uint8_t tp[32];
            memcpy(tp, pks[j], 32);
            memcpy(pks[j], pks[j - 1], 32);
            memcpy(pks[j - 1], tp, 32);
        }
    return n;
}

static int plan_for(byoai_cluster *c, cl_dep *d, const pk_set *excluded, byoai_cluster_plan *plan,
                    uint8_t stage_pk[][32], byoai_error *err) {
    cl_plan_node nodes[BYOAI_CLUSTER_MAX_NODES];
    uint8_t pks[BYOAI_CLUSTER_MAX_NODES][32];
    uint32_t n = collect_nodes(c, d, excluded, nodes, pks);
    if (n == 0) return byoai_error_set(err, BYOAI_ENOMEM, "no usable node is left to run model '%s'", d->name);
    int rc = cl_plan_compute(&d->cost, nodes, n, d->weighting, plan, err);
    if (rc) return rc;
    for (uint32_t s = 0; s < plan->n_stages; s++)
        for (uint32_t i = 0; i < n; i++)
            if (!strcmp(plan->stages[s].node_id, nodes[i].id)) memcpy(stage_pk[s], pks[i], 32);
    return 0;
}

/* Plan over the usable nodes minus excluded, load every stage, adopt the
 * plan. Nodes that fail to load are excluded and the plan is made again. */
static int dep_load_plan(byoai_cluster *c, cl_dep *d, pk_set *excluded, byoai_error *err) {
    for (int attempt = 0; attempt <= BYOAI_CLUSTER_MAX_NODES; attempt++) {
        byoai_cluster_plan plan;
        uint8_t spk[BYOAI_CLUSTER_MAX_NODES][32];
        int rc = plan_for(c, d, excluded, &plan, spk, err);
        if (rc) return rc;
        pthread_mutex_lock(&c->mu);
        uint32_t epoch = ++d->epoch;
        d->load_epoch = epoch;
        d->load_n = plan.n_stages;
        for (uint32_t s = 0; s < plan.n_stages; s++) {
            memcpy(d->load_pk[s], spk[s], 32);
            d->load_got[s] = false;
        }
        pthread_mutex_unlock(&c->mu);
        for (uint32_t s = 0; s < plan.n_stages; s++) {
            cl_load l = {.dep_id = d->id, .epoch = epoch, .file_size = d->man.file_size,
                         .manifest = (const uint8_t *)d->man_json, .manifest_len = (uint32_t)d->man_len,
                         .n_layer = plan.n_layer, .layer_begin = plan.stages[s].layer_begin,
                         .layer_end = plan.stages[s].layer_end, .n_ctx = d->n_ctx, .n_seq = d->n_seq,
                         .n_batch = d->n_batch, .wire = d->wire, .stage_index = s, .n_stages = plan.n_stages};
            memcpy(l.coord_pk, c->id.node_pk, 32);
            snprintf(l.model, sizeof l.model, "%s", d->name);
            memcpy(l.file_sha, d->man.file_sha, 32);
            snprintf(l.url, sizeof l.url, "%s", d->url);
            l.has_next = s + 1 < plan.n_stages;
            if (l.has_next) memcpy(l.next_pk, spk[s + 1], 32);
            cl_buf b = {0};
            cl_enc_load(&b, &l);
            byoai_error e2 = {0};
            int src = cl_send(c, spk[s], &b, &e2);
            cl_buf_free(&b);
            if (src) {
                pthread_mutex_lock(&c->mu);
                d->load_got[s] = true;
                d->load_reply[s] = (cl_load_reply){.code = src};
                snprintf(d->load_reply[s].msg, sizeof d->load_reply[s].msg, "%s", e2.msg);
                pthread_mutex_unlock(&c->mu);
            }
        }
        /* wait for every stage */
        double deadline = byoai_time_now() + c->load_s;
        pthread_mutex_lock(&c->mu);
        for (;;) {
            uint32_t got = 0;
            for (uint32_t s = 0; s < plan.n_stages; s++) {
                if (d->load_got[s]) {
                    got++;
                    continue;
                }
                cl_peer *p = cl_is_self(c, spk[s]) ? NULL : cl_peer_find(c, spk[s]);
                if (p && !cl_peer_usable(p) && (p->state == PEER_DEAD || p->state == PEER_LEFT)) {
                    d->load_got[s] = true;
                    d->load_reply[s] = (cl_load_reply){.code = BYOAI_ENET};
                    snprintf(d->load_reply[s].msg, sizeof d->load_reply[s].msg, "the node was lost while loading");
                    got++;
                }
            }
            if (got == plan.n_stages || c->stopping || d->removing || byoai_time_now() > deadline) break;
            wait_a_while(c, deadline);
        }
        bool ok = !c->stopping && !d->removing;
        char why[700] = "";
        for (uint32_t s = 0; s < plan.n_stages; s++) {
            if (d->load_got[s] && d->load_reply[s].code == 0) continue;
            ok = false;
            set_add(excluded, spk[s]);
            snprintf(why, sizeof why, "node %.12s: %s", plan.stages[s].node_id,
                     d->load_got[s] ? d->load_reply[s].msg : "no answer within the load timeout");
        }
        if (ok) {
            pk_set old = {0};
            for (uint32_t s = 0; s < d->plan.n_stages; s++) set_add(&old, d->stage_pk[s]);
            d->plan = plan;
            memcpy(d->stage_pk, spk, sizeof spk);
            d->ready = true;
            pthread_cond_broadcast(&c->cond);
            pthread_mutex_unlock(&c->mu);
            /* nodes no longer in the plan free their stage */
            for (uint32_t i = 0; i < old.n; i++) {
                bool still = false;
                for (uint32_t s = 0; s < plan.n_stages; s++) still |= !memcmp(old.pk[i], spk[s], 32);
                if (still) continue;
                cl_buf b = {0};
                cl_enc_unload(&b, d->id);
                cl_send_linked(c, old.pk[i], &b);
                cl_buf_free(&b);
            }
            return 0;
        }
        pthread_mutex_unlock(&c->mu);
        if (c->stopping || d->removing) return byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping");
        cl_event(c, BYOAI_LOG_WARN, "loading %s (epoch %u) failed on %s; planning again without that node", d->name,
                 epoch, why);
    }
    return byoai_error_set(err, BYOAI_EIO, "could not load model '%s' on any set of nodes", d->name);
}

static int dep_open(byoai_cluster *c, const byoai_cluster_model_opts *o, cl_dep **out, byoai_error *err) {
    *out = NULL;
    if (!o->name || !valid_model_name(o->name))
        return byoai_error_set(err, BYOAI_EINVAL, "model name must be 1..%d printable characters without spaces, "
                               "'/', quotes or backslashes", CL_NAME_MAX - 1);
    if (!o->path) return byoai_error_set(err, BYOAI_EINVAL, "no model file given");
    if (o->url && strlen(o->url) >= CL_URL_MAX) return byoai_error_set(err, BYOAI_EINVAL, "model URL too long");
    cl_dep *d = calloc(1, sizeof *d);
    if (!d) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    d->id = cl_random_u64() | 1;
    snprintf(d->name, sizeof d->name, "%s", o->name);
    snprintf(d->path, sizeof d->path, "%s", o->path);
    if (o->url) snprintf(d->url, sizeof d->url, "%s", o->url);
    d->wire = (uint8_t)o->wire;
    d->weighting = o->weighting;
    d->n_seq = o->n_seq ? o->n_seq : 4;
    d->n_batch = o->n_batch ? o->n_batch : 256;
    if (d->n_seq > 256 || d->n_batch > CL_MAX_ROWS) {
        dep_free(d);
        return byoai_error_set(err, BYOAI_ERANGE, "n_seq must be at most 256 and n_batch at most %d", CL_MAX_ROWS);
    }
    byoai_model_params vp = {.vocab_only = true};
    int rc = byoai_model_load(o->path, &vp, &d->vocab, err);
    if (!rc) {
        const byoai_hparams *hp = byoai_model_hparams(d->vocab);
        if (!byoai_arch_supported(hp->arch)) rc = byoai_error_set(err, BYOAI_EUNSUPPORTED, "architecture %s is not supported", hp->arch);
        uint32_t n_ctx = o->n_ctx ? o->n_ctx : (hp->n_ctx_train && hp->n_ctx_train < 2048 ? hp->n_ctx_train : 2048);
        d->n_ctx = n_ctx;
        if (!rc) rc = cl_model_cost_from_gguf(byoai_model_gguf(d->vocab), n_ctx, d->n_seq, d->n_batch, &d->cost, err);
    }
    if (!rc) rc = cl_manifest_for_file(c->id.dir, o->path, &d->man, err);
    if (!rc) rc = cl_manifest_to_json(&d->man, &d->man_json, &d->man_len, err);
    if (!rc) {
        d->slot_busy = calloc(d->n_seq, sizeof *d->slot_busy);
        if (!d->slot_busy) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    if (!rc && o->n_nodes) {
        d->only = calloc(o->n_nodes, sizeof(char *));
        for (size_t i = 0; d->only && i < o->n_nodes; i++)
            if ((d->only[i] = strdup(o->nodes[i]))) d->n_only++;
        if (!d->only || d->n_only != o->n_nodes) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    if (rc) {
        dep_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

static int wait_min_nodes(byoai_cluster *c, uint32_t min_nodes, byoai_error *err) {
    double deadline = byoai_time_now() + c->load_s;
    for (;;) {
        int n = byoai_cluster_alive_count(c);
        /* alive and with their info (memory) known */
        int with_info = 1;
        pthread_mutex_lock(&c->mu);
        for (int i = 0; i < CL_MAX_PEERS; i++)
            if (cl_peer_usable(&c->peers[i]) && c->peers[i].have_info) with_info++;
        bool stop = c->stopping;
        pthread_mutex_unlock(&c->mu);
        if ((uint32_t)n >= min_nodes && (uint32_t)with_info >= min_nodes) return 0;
        if (stop) return byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping");
        if (byoai_time_now() > deadline)
            return byoai_error_set(err, BYOAI_ETIMEOUT, "only %d of the %u nodes asked for are reachable", n, min_nodes);
        usleep(50000);
    }
}

int byoai_cluster_plan_model(byoai_cluster *c, const byoai_cluster_model_opts *o, byoai_cluster_plan *out,
                             byoai_error *err) {
    cl_dep *d;
    byoai_model_params vp = {.vocab_only = true};
    if (!o->path) return byoai_error_set(err, BYOAI_EINVAL, "no model file given");
    /* a light version of dep_open: no hashing */
    d = calloc(1, sizeof *d);
    if (!d) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    snprintf(d->name, sizeof d->name, "%s", o->name ? o->name : "model");
    d->weighting = o->weighting;
    d->n_seq = o->n_seq ? o->n_seq : 4;
    d->n_batch = o->n_batch ? o->n_batch : 256;
    int rc = byoai_model_load(o->path, &vp, &d->vocab, err);
    if (!rc) {
        const byoai_hparams *hp = byoai_model_hparams(d->vocab);
        uint32_t n_ctx = o->n_ctx ? o->n_ctx : (hp->n_ctx_train && hp->n_ctx_train < 2048 ? hp->n_ctx_train : 2048);
        rc = cl_model_cost_from_gguf(byoai_model_gguf(d->vocab), n_ctx, d->n_seq, d->n_batch, &d->cost, err);
    }
    if (!rc && o->n_nodes) {
        d->only = (char **)o->nodes; /* borrowed, not freed below */
        d->n_only = o->n_nodes;
    }
    if (!rc) {
        pk_set none = {0};
        uint8_t spk[BYOAI_CLUSTER_MAX_NODES][32];
        rc = plan_for(c, d, &none, out, spk, err);
    }
    d->only = NULL;
    d->n_only = 0;
    dep_free(d);
    return rc;
}

int byoai_cluster_deploy(byoai_cluster *c, const byoai_cluster_model_opts *o, byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    bool exists = o->name && dep_find(c, o->name) != NULL;
    pthread_mutex_unlock(&c->mu);
    if (exists) return byoai_error_set(err, BYOAI_EEXIST, "model '%s' is already deployed by this node", o->name);
    int rc = wait_min_nodes(c, o->min_nodes, err);
    if (rc) return rc;
    cl_dep *d;
    if ((rc = dep_open(c, o, &d, err))) return rc;
    pthread_mutex_lock(&c->mu);
    d->replanning = true;
    d->next = c->deps;
    c->deps = d;
    pthread_mutex_unlock(&c->mu);
    pk_set excluded = {0};
    double t0 = byoai_time_now();
    rc = dep_load_plan(c, d, &excluded, err);
    pthread_mutex_lock(&c->mu);
    d->replanning = false;
    if (rc) {
        for (cl_dep **pp = &c->deps; *pp; pp = &(*pp)->next)
            if (*pp == d) {
                *pp = d->next;
                break;
            }
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    if (rc) {
        /* stages that did load free themselves */
        for (uint32_t s = 0; s < d->load_n; s++) {
            cl_buf b = {0};
            cl_enc_unload(&b, d->id);
            cl_send_linked(c, d->load_pk[s], &b);
            cl_buf_free(&b);
        }
        dep_free(d);
        return byoai_error_prefix(err, "deploying %s", o->name);
    }
    char desc[1024] = "";
    for (uint32_t s = 0; s < d->plan.n_stages; s++) {
        char one[96];
        snprintf(one, sizeof one, "%s%.12s:%u-%u", s ? ", " : "", d->plan.stages[s].node_id, d->plan.stages[s].layer_begin,
                 d->plan.stages[s].layer_end);
        strncat(desc, one, sizeof desc - strlen(desc) - 1);
    }
    cl_event(c, BYOAI_LOG_INFO, "deployed %s on %u node(s) in %.2f s: %s", d->name, d->plan.n_stages,
             byoai_time_now() - t0, desc);
    cl_announce_now(c); /* members can route completions for it from now on */
    return 0;
}

int byoai_cluster_undeploy(byoai_cluster *c, const char *name, byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    cl_dep *d = dep_find(c, name);
    if (!d) {
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ENOTFOUND, "model '%s' is not deployed by this node", name);
    }
    d->removing = true;
    pthread_cond_broadcast(&c->cond);
    while (d->active > 0 || d->replanning) wait_a_while(c, byoai_time_now() + 0.25);
    for (cl_dep **pp = &c->deps; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    for (uint32_t s = 0; s < d->plan.n_stages; s++) {
        cl_buf b = {0};
        cl_enc_unload(&b, d->id);
        cl_send_linked(c, d->stage_pk[s], &b);
        cl_buf_free(&b);
    }
    dep_free(d);
    return 0;
}

bool byoai_cluster_has_model(byoai_cluster *c, const char *name) {
    bool found = false;
    pthread_mutex_lock(&c->mu);
    cl_dep *d = dep_find(c, name);
    found = d && d->ready;
    for (int i = 0; !found && i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (!cl_peer_usable(p) || !p->have_info) continue;
        for (int k = 0; k < p->info.n_deployed; k++)
            if (!strcmp(p->info.deployed[k], name)) found = true;
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

size_t byoai_cluster_list_models(byoai_cluster *c, char (*names)[64], size_t cap) {
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
#define ADD(nm)                                                                                                        \
    do {                                                                                                               \
        const char *name_ = (nm); /* evaluated once, outside the loop below (its index would shadow) */              \
        bool dup = false;                                                                                              \
        for (size_t i_ = 0; i_ < n; i_++) dup |= !strcmp(names[i_], name_);                                          \
        if (!dup && n < cap) snprintf(names[n++], 64, "%s", name_);                                                    \
    } while (0)
    for (cl_dep *d = c->deps; d; d = d->next)
        if (d->ready && !d->removing) ADD(d->name);
    for (int i = 0; i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (!cl_peer_usable(p) || !p->have_info) continue;
        for (int k = 0; k < p->info.n_deployed; k++) ADD(p->info.deployed[k]);
    }
#undef ADD
    pthread_mutex_unlock(&c->mu);
    return n;
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
        wait_a_while(c, deadline);
    }
}

static int send_steps(byoai_cluster *c, cl_dep *d, cl_req *r, const int32_t *toks, uint32_t pos0, uint32_t n,
                      const cl_sampling *samp, bool reset, uint8_t culprit[32], byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    /* never into a plan that is being loaded */
    double dl = byoai_time_now() + c->load_s + c->failure_s;
    while (d->replanning && !c->stopping && byoai_time_now() < dl) wait_a_while(c, dl);
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
    memcpy(culprit, first, 32);
    for (uint32_t off = 0; off < n; off += nb) {
        uint32_t m = n - off < nb ? n - off : nb;
        cl_fwd f = {.dep_id = d->id, .req_id = r->id, .epoch = epoch, .step = step, .slot = r->slot, .pos0 = pos0 + off,
                    .n = m, .dtype = CL_DT_NONE};
        if (reset && off == 0) {
            f.flags |= CL_FWD_RESET;
            f.s = *samp;
        }
        if (off + m == n) f.flags |= CL_FWD_SAMPLE;
        cl_buf b = {0};
        cl_enc_fwd(&b, &f, toks + off, NULL);
        int rc = cl_send(c, first, &b, err);
        cl_buf_free(&b);
        if (rc) return rc;
    }
    return 0;
}

static int failover(byoai_cluster *c, cl_dep *d, cl_req *r, const uint8_t *culprit, byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    double deadline = byoai_time_now() + c->load_s + c->failure_s;
    while (d->replanning && !c->stopping && byoai_time_now() < deadline) wait_a_while(c, deadline);
    if (c->stopping) {
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping");
    }
    if (d->epoch != r->epoch) { /* another completion re-planned already */
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    d->replanning = true;
    uint32_t n = d->plan.n_stages;
    uint8_t pks[BYOAI_CLUSTER_MAX_NODES][32];
    memcpy(pks, d->stage_pk, sizeof pks);
    pthread_mutex_unlock(&c->mu);
    pk_set excluded = {0};
    char lost[256] = "";
    for (uint32_t s = 0; s < n; s++) {
        if (cl_is_self(c, pks[s])) continue;
        pthread_mutex_lock(&c->mu);
        cl_peer *p = cl_peer_find(c, pks[s]);
        bool ok = cl_peer_usable(p);
        /* a link that merely closed may reopen (a restart, a dedup); a node
         * declared dead by silence or gone is not worth waiting for */
        bool retry = !ok && p && p->state != PEER_DEAD && p->state != PEER_LEFT;
        pthread_mutex_unlock(&c->mu);
        if (retry) ok = cl_connect_peer(c, pks[s], c->failure_s < 2 ? c->failure_s : 2, NULL) == 0;
        bool is_culprit = culprit && !memcmp(culprit, pks[s], 32);
        if (!ok || is_culprit) {
            set_add(&excluded, pks[s]);
            char id[BYOAI_CLUSTER_ID_LEN + 1];
            cl_fingerprint(pks[s], id);
            snprintf(lost + strlen(lost), sizeof lost - strlen(lost), "%s%.12s", lost[0] ? ", " : "", id);
        }
    }
    double t0 = byoai_time_now();
    int rc = dep_load_plan(c, d, &excluded, err);
    pthread_mutex_lock(&c->mu);
    d->replanning = false;
    if (!rc) {
        d->failovers++;
        d->last_failover_s = byoai_time_now() - t0;
    }
    pthread_cond_broadcast(&c->cond);
    uint32_t stages = d->plan.n_stages, epoch = d->epoch;
    pthread_mutex_unlock(&c->mu);
    if (rc) {
        byoai_error_prefix(err, "lost node(s) %s and cannot continue on the nodes left", lost[0] ? lost : "(none)");
        cl_event(c, BYOAI_LOG_ERROR, "%s: %s", d->name, err ? err->msg : "re-plan failed");
    } else {
        cl_event(c, BYOAI_LOG_WARN, "%s: re-planned on %u node(s) (epoch %u) in %.2f s after losing %s", d->name, stages,
                 epoch, byoai_time_now() - t0, lost[0] ? lost : "a link");
    }
    return rc;
}

/* An embedding request's answer (NULL for completions). */
typedef struct {
    float *v;
    uint32_t n;
} embed_out;

static int coord_generate(byoai_cluster *c, cl_dep *d, const int32_t *prompt, size_t n_prompt,
                          const byoai_cluster_gen_params *p, byoai_cluster_token_fn fn, void *user,
                          byoai_cluster_gen_result *res, embed_out *eo, byoai_error *err) {
    const byoai_tokenizer *tok = byoai_model_tokenizer(d->vocab);
    const uint32_t n_vocab = d->cost.n_vocab;
    if (n_prompt == 0) return byoai_error_set(err, BYOAI_EINVAL, "the prompt is empty");
    if (n_prompt >= d->n_ctx)
        return byoai_error_set(err, BYOAI_ERANGE, "the prompt (%zu tokens) does not fit the %u-token context", n_prompt,
                               d->n_ctx);
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || (uint32_t)prompt[i] >= n_vocab)
            return byoai_error_set(err, BYOAI_EINVAL, "prompt token %d is out of range (0..%u)", prompt[i], n_vocab - 1);
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
    memcpy(hist, prompt, n_prompt * sizeof(int32_t));
    uint32_t n_hist = (uint32_t)n_prompt;
    double t_start = byoai_time_now();
    /* a free sequence slot */
    pthread_mutex_lock(&c->mu);
    double deadline = t_start + c->step_s;
    int slot = -1;
    for (;;) {
        while (d->replanning && !c->stopping && byoai_time_now() < deadline + c->load_s) wait_a_while(c, deadline + c->load_s);
        for (uint32_t i = 0; i < d->n_seq && slot < 0; i++)
            if (!d->slot_busy[i]) slot = (int)i;
        if (slot >= 0 || c->stopping || d->removing || byoai_time_now() > deadline) break;
        wait_a_while(c, deadline);
    }
    if (slot < 0) {
        pthread_mutex_unlock(&c->mu);
        free(hist);
        free(r);
        if (c->stopping || d->removing) return byoai_error_set(err, BYOAI_ECANCELED, "model '%s' is being unloaded", d->name);
        return byoai_error_set(err, BYOAI_EBUSY, "all %u sequence slots of model '%s' stayed busy for %.0f s", d->n_seq,
                               d->name, c->step_s);
    }
    d->slot_busy[slot] = true;
    d->active++;
    r->id = cl_random_u64();
    r->dep = d;
    r->slot = (uint32_t)slot;
    r->next = c->reqs;
    c->reqs = r;
    pthread_mutex_unlock(&c->mu);

    cl_sampling samp = {.sp = p->sampler, .top_logprobs = (int8_t)(p->top_logprobs < 0 ? -1 : p->top_logprobs),
                        .json = p->json_object && !eo, .embed = eo != NULL, .gen_from = (uint32_t)n_prompt,
                        .gen_end = d->n_ctx};
    /* the last position a generated token may take is gen_end - 1 (see the stop test below) */
    if (p->n_predict >= 0 && n_prompt + (uint64_t)p->n_predict < d->n_ctx) samp.gen_end = (uint32_t)n_prompt + (uint32_t)p->n_predict;
    uint32_t n_gen = 0, failovers = 0, history_retries = 0, timeouts = 0;
    double t_first = 0, t_last = 0, stall = 0, overhead = 0, t_sent = 0;
    bool prefill = true, one_step = false;
    const char *finish = "length";
    uint8_t culprit[32];
    rc = 0;
    for (;;) {
        one_step = !prefill;
        t_sent = byoai_time_now();
        if (prefill) {
            samp.draws = p->sampler.temp > 0 ? n_gen : 0;
            rc = send_steps(c, d, r, hist, 0, n_hist, &samp, true, culprit, err);
            prefill = false;
        } else {
            rc = send_steps(c, d, r, &hist[n_hist - 1], n_hist - 1, 1, &samp, false, culprit, err);
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
            rc = byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping or the model is being unloaded");
            break;
        }
        double t0 = byoai_time_now();
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
            rc = failover(c, d, r, e.kind == CL_ERR_NEXT_UNREACHABLE && e.has_culprit ? e.culprit : NULL, err);
        } else if (what == W_REPLANNED) {
            pthread_mutex_lock(&c->mu);
            double dl = byoai_time_now() + c->load_s + c->failure_s;
            while (d->replanning && !c->stopping && byoai_time_now() < dl) wait_a_while(c, dl);
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
            rc = failover(c, d, r, NULL, err);
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
    d->slot_busy[r->slot] = false;
    d->active--;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    if (res) {
        memset(res, 0, sizeof *res);
        res->n_prompt = (uint32_t)n_prompt;
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

static int proxy_generate(byoai_cluster *c, const char *model, const int32_t *prompt, size_t n_prompt,
                          const byoai_cluster_gen_params *p, byoai_cluster_token_fn fn, void *user,
                          byoai_cluster_gen_result *res, embed_out *eo, byoai_error *err) {
    if (n_prompt == 0 || n_prompt > (1u << 20)) return byoai_error_set(err, BYOAI_EINVAL, "bad prompt length");
    uint8_t coord[32];
    bool found = false;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; !found && i < CL_MAX_PEERS; i++) {
        cl_peer *q = &c->peers[i];
        if (!cl_peer_usable(q) || !q->have_info) continue;
        for (int k = 0; k < q->info.n_deployed; k++)
            if (!strcmp(q->info.deployed[k], model)) {
                memcpy(coord, q->pk, 32);
                found = true;
            }
    }
    cl_proxy *px = found ? calloc(1, sizeof *px) : NULL;
    if (px) {
        px->id = cl_random_u64();
        memcpy(px->coord_pk, coord, 32);
        px->next = c->proxies;
        c->proxies = px;
    }
    pthread_mutex_unlock(&c->mu);
    if (!found) return byoai_error_set(err, BYOAI_ENOTFOUND, "no node of the cluster runs model '%s'", model);
    if (!px) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    cl_gen g = {.req_id = px->id, .sp = p->sampler, .n_predict = p->n_predict, .top_logprobs = p->top_logprobs,
                .ignore_eog = p->ignore_eog && !eo, .json_object = p->json_object && !eo, .embed = eo != NULL,
                .n = (uint32_t)n_prompt};
    snprintf(g.model, sizeof g.model, "%s", model);
    cl_buf b = {0};
    cl_enc_gen(&b, &g, prompt);
    int rc = cl_send(c, coord, &b, err);
    cl_buf_free(&b);
    char cid[BYOAI_CLUSTER_ID_LEN + 1];
    cl_fingerprint(coord, cid);
    size_t used = 0;
    bool cancelled = false;
    double start = byoai_time_now(), last = start, cancel_at = 0;
    pthread_mutex_lock(&c->mu);
    while (!rc) {
        if (used < px->n_toks) {
            byoai_cluster_token t = px->toks[used++].t;
            last = byoai_time_now();
            if (cancelled) continue;
            pthread_mutex_unlock(&c->mu);
            int stop = fn ? fn(user, &t) : 0;
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
            if (px->end.code && !cancelled) rc = byoai_error_set(err, px->end.code, "%s", px->end.msg);
            else if (eo && !px->emb)
                rc = byoai_error_set(err, BYOAI_EFORMAT, "node %.12s ended the embedding request without an embedding",
                                     cid);
            else if (eo) {
                eo->v = px->emb;
                eo->n = px->n_emb;
                px->emb = NULL;
            }
            break;
        }
        if (c->stopping) {
            rc = byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping");
            break;
        }
        if (!cl_peer_usable(cl_peer_find(c, coord))) {
            rc = byoai_error_set(err, BYOAI_ENET, "node %.12s, which coordinates model '%s', was lost; the completion "
                                 "failed after %zu tokens", cid, model, used);
            break;
        }
        double limit = (used ? 2 : 4) * c->step_s + c->load_s * (used ? 0 : 0.1) + (1 + MAX_FAILOVERS) * c->failure_s;
        if (cancelled && byoai_time_now() - cancel_at > c->step_s) break;
        if (byoai_time_now() - last > limit) {
            rc = byoai_error_set(err, BYOAI_ETIMEOUT, "node %.12s sent nothing for %.0f s", cid, limit);
            break;
        }
        wait_a_while(c, last + limit);
    }
    for (cl_proxy **pp = &c->proxies; *pp; pp = &(*pp)->next)
        if (*pp == px) {
            *pp = px->next;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    if (res) {
        memset(res, 0, sizeof *res);
        res->n_prompt = (uint32_t)n_prompt;
        res->n_generated = (uint32_t)used;
        snprintf(res->finish, sizeof res->finish, "%s", rc ? "error" : cancelled ? "stop" : px->end.finish);
        res->prompt_s = px->end.prompt_s;
        res->gen_s = px->end.gen_s;
        res->failovers = px->end.failovers;
        res->stall_s = px->end.stall_s;
        res->overhead_s = px->end.overhead_s;
    }
    if (rc && cancelled == false && px->ended == false) {
        cl_buf cb = {0};
        cl_enc_gen_cancel(&cb, px->id);
        cl_send(c, coord, &cb, NULL);
        cl_buf_free(&cb);
    }
    free(px->toks);
    free(px->emb);
    free(px);
    return rc;
}

static int run_request(byoai_cluster *c, const char *model, const int32_t *prompt, size_t n_prompt,
                       const byoai_cluster_gen_params *p, byoai_cluster_token_fn fn, void *user,
                       byoai_cluster_gen_result *res, embed_out *eo, byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    if (c->stopping) {
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping");
    }
    cl_dep *d = dep_find(c, model);
    if (d) {
        double dl = byoai_time_now() + c->load_s;
        while (!d->ready && d->replanning && !c->stopping && byoai_time_now() < dl) wait_a_while(c, dl);
    }
    bool local = d && d->ready;
    c->n_generating++;
    pthread_mutex_unlock(&c->mu);
    int rc = local ? coord_generate(c, d, prompt, n_prompt, p, fn, user, res, eo, err)
                   : proxy_generate(c, model, prompt, n_prompt, p, fn, user, res, eo, err);
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
        cl_dep *d = dep_find(c, sv->gen.model);
        bool ready = d && d->ready;
        if (ready) c->n_generating++;
        pthread_mutex_unlock(&c->mu);
        if (!ready) rc = byoai_error_set(&err, BYOAI_ENOTFOUND, "model '%s' is not deployed here", sv->gen.model);
        else {
            embed_out eo = {0};
            rc = coord_generate(c, d, toks, sv->gen.n, &gp, served_emit, &x, &res, sv->gen.embed ? &eo : NULL, &err);
            if (!rc && eo.v) { /* the embedding goes before the end */
                cl_embedding_msg em = {.req_id = sv->id, .n_embd = eo.n};
                cl_buf eb = {0};
                cl_enc_embedding(&eb, &em, eo.v);
                cl_send(c, sv->from, &eb, NULL);
                cl_buf_free(&eb);
            }
            free(eo.v);
            pthread_mutex_lock(&c->mu);
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

/* ---- the model header for another node's tokenizer ------------------------------------------------------- */

void cl_serve_header_req(byoai_cluster *c, const uint8_t from[32], const char *model) {
    char path[4096] = "", *man = NULL;
    size_t man_len = 0;
    uint64_t hsize = 0;
    pthread_mutex_lock(&c->mu);
    cl_dep *d = dep_find(c, model);
    if (d && d->ready) {
        snprintf(path, sizeof path, "%s", d->path);
        man = malloc(d->man_len);
        if (man) {
            memcpy(man, d->man_json, d->man_len);
            man_len = d->man_len;
        }
        hsize = d->man.header_size;
    }
    pthread_mutex_unlock(&c->mu);
    uint8_t *hdr = NULL;
    int code = man ? 0 : BYOAI_ENOTFOUND;
    if (!code) {
        hdr = hsize <= CL_MAX_FRAME / 2 ? malloc(hsize) : NULL;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (!hdr || fd < 0 || pread(fd, hdr, hsize, 0) != (ssize_t)hsize) code = BYOAI_EIO;
        if (fd >= 0) close(fd);
    }
    cl_buf b = {0};
    cl_enc_header(&b, model, code, code ? NULL : man, code ? 0 : (uint32_t)man_len, code ? NULL : hdr,
                  code ? 0 : (uint32_t)hsize);
    cl_send(c, from, &b, NULL);
    cl_buf_free(&b);
    free(man);
    free(hdr);
}

int byoai_cluster_model_vocab(byoai_cluster *c, const char *name, const byoai_model **out, byoai_error *err) {
    *out = NULL;
    pthread_mutex_lock(&c->mu);
    cl_dep *d = dep_find(c, name);
    if (d && d->vocab) {
        *out = d->vocab;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    for (cl_vocab *v = c->vocabs; v; v = v->next)
        if (!strcmp(v->name, name) && v->model) {
            *out = v->model;
            pthread_mutex_unlock(&c->mu);
            return 0;
        }
    uint8_t coord[32];
    bool found = false;
    for (int i = 0; !found && i < CL_MAX_PEERS; i++) {
        cl_peer *q = &c->peers[i];
        if (!cl_peer_usable(q) || !q->have_info) continue;
        for (int k = 0; k < q->info.n_deployed; k++)
            if (!strcmp(q->info.deployed[k], name)) {
                memcpy(coord, q->pk, 32);
                found = true;
            }
    }
    cl_header_wait *w = found ? calloc(1, sizeof *w) : NULL;
    if (w) {
        snprintf(w->model, sizeof w->model, "%s", name);
        w->next = c->header_waits;
        c->header_waits = w;
    }
    pthread_mutex_unlock(&c->mu);
    if (!found) return byoai_error_set(err, BYOAI_ENOTFOUND, "no node of the cluster runs model '%s'", name);
    if (!w) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    cl_buf b = {0};
    cl_enc_header_req(&b, name);
    int rc = cl_send(c, coord, &b, err);
    cl_buf_free(&b);
    pthread_mutex_lock(&c->mu);
    double deadline = byoai_time_now() + c->step_s;
    while (!rc && !w->done && !c->stopping && byoai_time_now() < deadline) wait_a_while(c, deadline);
    for (cl_header_wait **pp = &c->header_waits; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    if (!rc && !w->done) rc = byoai_error_set(err, BYOAI_ETIMEOUT, "the coordinator of '%s' did not send its header", name);
    if (!rc && w->code) rc = byoai_error_set(err, w->code, "the coordinator of '%s' cannot send its header", name);
    byoai_model *m = NULL;
    if (!rc) {
        cl_manifest man;
        char path[4400];
        rc = cl_manifest_parse((const char *)w->manifest, w->manifest_len, &man, err);
        if (!rc) {
            rc = cl_partial_write_header(c->id.dir, &man, w->header, w->header_len, path, sizeof path, err);
            cl_manifest_free(&man);
        }
        byoai_model_params vp = {.vocab_only = true};
        if (!rc) rc = byoai_model_load(path, &vp, &m, err);
    }
    free(w->manifest);
    free(w->header);
    free(w);
    if (rc) return rc;
    pthread_mutex_lock(&c->mu);
    for (cl_vocab *v = c->vocabs; v; v = v->next) /* someone was faster */
        if (!strcmp(v->name, name) && v->model) {
            *out = v->model;
            pthread_mutex_unlock(&c->mu);
            byoai_model_free(m);
            return 0;
        }
    cl_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&c->mu);
        byoai_model_free(m);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    snprintf(v->name, sizeof v->name, "%s", name);
    v->model = m;
    v->next = c->vocabs;
    c->vocabs = v;
    *out = m;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* ---- messages for the coordinator ---------------------------------------------------------------- */

void cl_coord_on_message(byoai_cluster *c, const uint8_t from[32], uint8_t *buf, size_t len, const cl_msg *m) {
    (void)len;
    switch (m->type) {
    case CL_MSG_LOAD_OK:
    case CL_MSG_LOAD_ERR: {
        const cl_load_reply *r = &m->u.load_reply;
        pthread_mutex_lock(&c->mu);
        cl_dep *d = dep_by_id(c, r->dep_id);
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
            cl_gen_end end = {.req_id = sv->id, .code = BYOAI_ECANCELED};
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
    case CL_MSG_HEADER: {
        const cl_header_msg *h = &m->u.header;
        pthread_mutex_lock(&c->mu);
        for (cl_header_wait *w = c->header_waits; w; w = w->next) {
            if (w->done || strcmp(w->model, h->model)) continue;
            w->code = h->code;
            if (!h->code) {
                w->manifest = malloc(h->manifest_len ? h->manifest_len : 1);
                w->header = malloc(h->header_len ? h->header_len : 1);
                if (!w->manifest || !w->header) w->code = BYOAI_ENOMEM;
                else {
                    memcpy(w->manifest, h->manifest, h->manifest_len);
                    memcpy(w->header, h->header, h->header_len);
                    w->manifest_len = h->manifest_len;
                    w->header_len = h->header_len;
                }
            }
            w->done = true;
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        break;
    }
    default:
        break;
    }
    free(buf);
}

/* ---- status and shutdown ------------------------------------------------------------------------- */

int cl_coord_status(byoai_cluster *c, void *json_deps) {
    json_t *arr = json_deps;
    for (cl_dep *d = c->deps; d; d = d->next) {
        json_t *stages = json_array();
        for (uint32_t s = 0; s < d->plan.n_stages; s++) {
            const byoai_cluster_stage_plan *p = &d->plan.stages[s];
            json_array_append_new(stages, json_pack("{s:s,s:s,s:i,s:i,s:I,s:I}", "node_id", p->node_id, "name",
                                                    p->node_name, "layer_begin", (int)p->layer_begin, "layer_end",
                                                    (int)p->layer_end, "bytes", (json_int_t)p->total_bytes, "memory",
                                                    (json_int_t)p->memory));
        }
        json_array_append_new(arr, json_pack("{s:s,s:I,s:i,s:b,s:b,s:i,s:i,s:i,s:s,s:i,s:f,s:o}", "model", d->name,
                                             "deployment", (json_int_t)d->id, "epoch", (int)d->epoch, "ready", d->ready,
                                             "replanning", d->replanning, "n_ctx", (int)d->n_ctx, "n_seq", (int)d->n_seq,
                                             "active", (int)d->active, "wire", d->wire ? "f16" : "f32", "failovers",
                                             (int)d->failovers, "last_failover_seconds", d->last_failover_s, "stages",
                                             stages));
    }
    return 0;
}

void cl_coord_stop_all(byoai_cluster *c) {
    pthread_mutex_lock(&c->mu);
    for (cl_served *sv = c->served; sv; sv = sv->next) sv->cancel = true;
    for (cl_dep *d = c->deps; d; d = d->next) d->removing = true;
    pthread_cond_broadcast(&c->cond);
    double deadline = byoai_time_now() + 30;
    while ((c->n_generating > 0 || c->served) && byoai_time_now() < deadline) wait_a_while(c, deadline);
    cl_dep *deps = c->deps;
    c->deps = NULL;
    cl_vocab *v = c->vocabs;
    c->vocabs = NULL;
    pthread_mutex_unlock(&c->mu);
    while (deps) {
        cl_dep *n = deps->next;
        for (uint32_t s = 0; s < deps->plan.n_stages; s++) {
            cl_buf b = {0};
            cl_enc_unload(&b, deps->id);
            cl_send_linked(c, deps->stage_pk[s], &b);
            cl_buf_free(&b);
        }
        /* wait until nobody uses it (a replanning thread) */
        dep_free(deps);
        deps = n;
    }
    while (v) {
        cl_vocab *n = v->next;
        byoai_model_free(v->model);
        free(v);
        v = n;
    }
}
