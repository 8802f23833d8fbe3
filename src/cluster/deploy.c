/*
 * Deployments this node coordinates: a model's tensor manifest, its
 * vocabulary (for tokenizing and end-of-generation checks), the current plan
 * (an epoch number and the node of each stage) and a fixed number of
 * sequence slots whose KV caches double as the prompt cache (complete.c).
 *
 * Planning: the nodes alive (the coordinator first, then by offered memory,
 * then id, so that every run plans the same) get contiguous layer ranges
 * (plan.c); every stage gets a LOAD with the coordinator's term; a node that
 * fails to load is left out and the plan made again. A member that lacks the
 * file and has no URL to fetch it from is named, with what to pass. Every
 * plan that is adopted is published as the deployment's record (records.c),
 * so that the members can take over when this node is lost (takeover.c).
 * Losing a stage, and what status says: failover.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byoai/store.h"
#include "cluster/node_internal.h"

static void abs_deadline(struct timespec *ts, double seconds_from_now) {
    clock_gettime(CLOCK_REALTIME, ts);
    double s = (double)ts->tv_sec + ts->tv_nsec * 1e-9 + seconds_from_now;
    ts->tv_sec = (time_t)s;
    ts->tv_nsec = (long)((s - (double)ts->tv_sec) * 1e9);
}

void cl_coord_wait(byoai_cluster *c, double until) {
    double left = until - byoai_time_now();
    if (left > 0.25) left = 0.25;
    if (left < 0.001) left = 0.001;
    struct timespec ts;
    abs_deadline(&ts, left);
    pthread_cond_timedwait(&c->cond, &c->mu, &ts);
}

cl_dep *cl_dep_find(byoai_cluster *c, const char *name) {
    for (cl_dep *d = c->deps; d; d = d->next)
        if (!strcmp(d->name, name) && !d->removing) return d;
    return NULL;
}

cl_dep *cl_dep_by_id(byoai_cluster *c, uint64_t id) {
    for (cl_dep *d = c->deps; d; d = d->next)
        if (d->id == id) return d;
    return NULL;
}

void cl_dep_free(cl_dep *d) {
    if (!d) return;
    cl_manifest_free(&d->man);
    free(d->man_json);
    cl_model_cost_free(&d->cost);
    byoai_model_free(d->vocab);
    for (size_t i = 0; i < d->n_only; i++) free(d->only[i]);
    free(d->only);
    for (uint32_t i = 0; d->slots && i < d->n_seq; i++) free(d->slots[i].hist);
    free(d->slots);
    free(d);
}

/* Free a deployment that was in use: its vocabulary stays (callers such as
 * the server hold it until byoai_cluster_stop). Not under mu. */
void cl_dep_retire(byoai_cluster *c, cl_dep *d) {
    if (d->vocab) {
        cl_vocab *v = calloc(1, sizeof *v);
        if (v) {
            snprintf(v->name, sizeof v->name, "%s", d->name);
            v->model = d->vocab;
            d->vocab = NULL;
            pthread_mutex_lock(&c->mu);
            v->next = c->vocabs;
            c->vocabs = v;
            pthread_mutex_unlock(&c->mu);
        }
    }
    cl_dep_free(d);
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

/* what to tell about the members that have no copy of the file */
static void lacking_hint(const cl_dep *d, char *out, size_t cap) {
    out[0] = '\0';
    if (!d->n_lacking) return;
    size_t n = (size_t)snprintf(out, cap, "%u member(s) have no copy of the model and no URL to fetch it from: ",
                                d->n_lacking);
    for (uint32_t i = 0; i < d->n_lacking && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", d->lacking[i]);
    if (n < cap)
        snprintf(out + n, cap - n, "; deploy with --url URL (an HTTP server with Range requests, e.g. `byoai "
                 "registry serve DIR`) or start them with --model-file PATH");
}

/* Plan over the usable nodes minus excluded, load every stage, adopt the
 * plan. Nodes that fail to load are excluded and the plan is made again. */
static int dep_load_plan(byoai_cluster *c, cl_dep *d, pk_set *excluded, byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    d->n_lacking = 0;
    pthread_mutex_unlock(&c->mu);
    for (int attempt = 0; attempt <= BYOAI_CLUSTER_MAX_NODES; attempt++) {
        byoai_cluster_plan plan;
        uint8_t spk[BYOAI_CLUSTER_MAX_NODES][32];
        int rc = plan_for(c, d, excluded, &plan, spk, err);
        if (rc) {
            char hint[1024];
            pthread_mutex_lock(&c->mu);
            lacking_hint(d, hint, sizeof hint);
            pthread_mutex_unlock(&c->mu);
            if (hint[0]) {
                char prev[512];
                snprintf(prev, sizeof prev, "%s", err ? err->msg : "the model does not fit");
                byoai_error_set(err, rc, "%s; %s", prev, hint);
            }
            return rc;
        }
        pthread_mutex_lock(&c->mu);
        uint32_t epoch = ++d->epoch;
        d->load_epoch = epoch;
        d->load_n = plan.n_stages;
        for (uint32_t s = 0; s < plan.n_stages; s++) {
            memcpy(d->load_pk[s], spk[s], 32);
            d->load_got[s] = false;
        }
        uint32_t term = d->term;
        pthread_mutex_unlock(&c->mu);
        for (uint32_t s = 0; s < plan.n_stages; s++) {
            cl_load l = {.dep_id = d->id, .term = term, .epoch = epoch, .file_size = d->man.file_size,
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
            cl_coord_wait(c, deadline);
        }
        bool ok = !c->stopping && !d->removing;
        char why[700] = "";
        for (uint32_t s = 0; s < plan.n_stages; s++) {
            if (d->load_got[s] && d->load_reply[s].code == 0) continue;
            ok = false;
            set_add(excluded, spk[s]);
            snprintf(why, sizeof why, "node %.12s (%s): %s", plan.stages[s].node_id, plan.stages[s].node_name,
                     d->load_got[s] ? d->load_reply[s].msg : "no answer within the load timeout");
            if (d->load_got[s] && d->load_reply[s].code == BYOAI_ENOTFOUND && d->n_lacking < BYOAI_CLUSTER_MAX_NODES)
                snprintf(d->lacking[d->n_lacking++], sizeof d->lacking[0], "%s (%.12s)", plan.stages[s].node_name,
                         plan.stages[s].node_id);
        }
        if (ok) {
            pk_set old = {0};
            for (uint32_t s = 0; s < d->plan.n_stages; s++) set_add(&old, d->stage_pk[s]);
            d->plan = plan;
            memcpy(d->stage_pk, spk, sizeof spk);
            for (uint32_t s = 0; s < plan.n_stages; s++) {
                cl_peer *sp = cl_is_self(c, spk[s]) ? NULL : cl_peer_find(c, spk[s]);
                d->stage_gen[s] = sp ? sp->link_gen : 0;
            }
            d->ready = true;
            pthread_cond_broadcast(&c->cond);
            char hint[1024];
            lacking_hint(d, hint, sizeof hint);
            pthread_mutex_unlock(&c->mu);
            cl_record_publish(c, d);
            if (hint[0]) cl_event(c, BYOAI_LOG_WARN, "%s runs without them: %s", d->name, hint);
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

int cl_dep_replan(byoai_cluster *c, cl_dep *d, const uint8_t (*excluded)[32], uint32_t n_excluded, byoai_error *err) {
    pk_set ex = {0};
    for (uint32_t i = 0; i < n_excluded; i++) set_add(&ex, excluded[i]);
    return dep_load_plan(c, d, &ex, err);
}

/* ---- opening a deployment ------------------------------------------------------------------- */

static int dep_alloc_slots(cl_dep *d, byoai_error *err) {
    d->slots = calloc(d->n_seq, sizeof *d->slots);
    bool ok = d->slots != NULL;
    for (uint32_t i = 0; ok && i < d->n_seq; i++) ok = (d->slots[i].hist = malloc(d->n_ctx * sizeof(int32_t))) != NULL;
    return ok ? 0 : byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
}

static int dep_load_vocab(cl_dep *d, byoai_error *err) {
    byoai_model_params vp = {.vocab_only = true};
    int rc = byoai_model_load(d->path, &vp, &d->vocab, err);
    if (rc) return rc;
    const byoai_hparams *hp = byoai_model_hparams(d->vocab);
    if (!byoai_arch_supported(hp->arch))
        return byoai_error_set(err, BYOAI_EUNSUPPORTED, "architecture %s is not supported", hp->arch);
    if (!d->n_ctx) d->n_ctx = hp->n_ctx_train && hp->n_ctx_train < 2048 ? hp->n_ctx_train : 2048;
    return cl_model_cost_from_gguf(byoai_model_gguf(d->vocab), d->n_ctx, d->n_seq, d->n_batch, &d->cost, err);
}

/* where a model installed in the store was downloaded from: members without
 * the file fetch their layers there when no --url is given */
static void store_origin_url(byoai_cluster *c, const uint8_t sha[32], char *url, size_t cap) {
    char hex[65];
    cl_hex(sha, 32, hex);
    byoai_store *st;
    if (byoai_store_open(c->id.home, &st, NULL) != 0) return;
    byoai_store_model *list = NULL;
    size_t n = 0;
    if (byoai_store_list(st, &list, &n, NULL) == 0)
        for (size_t i = 0; i < n && !url[0]; i++) {
            if (strcmp(list[i].sha256, hex)) continue;
            char name[BYOAI_NAME_MAX + 70];
            if (list[i].variant[0]) snprintf(name, sizeof name, "%s:%s", list[i].name, list[i].variant);
            else snprintf(name, sizeof name, "%s", list[i].name);
            byoai_manifest m;
            if (byoai_store_read_manifest(st, name, &m, NULL) != 0) continue;
            const byoai_store_member *mm = byoai_manifest_main(&m);
            const char *src = mm ? mm->origin.source : m.origin.source;
            if (!strncmp(src, "http://", 7) || !strncmp(src, "https://", 8)) snprintf(url, cap, "%s", src);
            byoai_manifest_free(&m);
        }
    free(list);
    byoai_store_close(st);
}

static int dep_open(byoai_cluster *c, const byoai_cluster_model_opts *o, cl_dep **out, byoai_error *err) {
    *out = NULL;
    if (!o->name || !valid_model_name(o->name))
        return byoai_error_set(err, BYOAI_EINVAL, "model name must be 1..%d printable characters without spaces, "
                               "'/', quotes or backslashes", CL_NAME_MAX - 1);
    if (!o->path) return byoai_error_set(err, BYOAI_EINVAL, "no model file given");
    if (o->url && strlen(o->url) >= CL_URL_MAX) return byoai_error_set(err, BYOAI_EINVAL, "model URL too long");
    if (o->n_nodes > CL_ONLY_MAX) return byoai_error_set(err, BYOAI_ERANGE, "at most %d --nodes", CL_ONLY_MAX);
    cl_dep *d = calloc(1, sizeof *d);
    if (!d) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    d->id = cl_random_u64() | 1;
    snprintf(d->name, sizeof d->name, "%s", o->name);
    snprintf(d->path, sizeof d->path, "%s", o->path);
    d->path_full = true;
    if (o->url) snprintf(d->url, sizeof d->url, "%s", o->url);
    d->wire = (uint8_t)o->wire;
    d->weighting = o->weighting;
    d->n_seq = o->n_seq ? o->n_seq : 4;
    d->n_batch = o->n_batch ? o->n_batch : 256;
    d->n_ctx = o->n_ctx;
    if (d->n_seq > 256 || d->n_batch > CL_MAX_ROWS) {
        cl_dep_free(d);
        return byoai_error_set(err, BYOAI_ERANGE, "n_seq must be at most 256 and n_batch at most %d", CL_MAX_ROWS);
    }
    int rc = dep_load_vocab(d, err);
    if (!rc) rc = cl_manifest_for_file(c->id.dir, o->path, &d->man, err);
    if (!rc) rc = cl_manifest_to_json(&d->man, &d->man_json, &d->man_len, err);
    if (!rc) rc = dep_alloc_slots(d, err);
    if (!rc && o->n_nodes) {
        d->only = calloc(o->n_nodes, sizeof(char *));
        for (size_t i = 0; d->only && i < o->n_nodes; i++)
            if ((d->only[i] = strndup(o->nodes[i], BYOAI_CLUSTER_ID_LEN))) d->n_only++;
        if (!d->only || d->n_only != o->n_nodes) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    if (rc) {
        cl_dep_free(d);
        return rc;
    }
    if (!d->url[0]) store_origin_url(c, d->man.file_sha, d->url, sizeof d->url);
    *out = d;
    return 0;
}

int cl_dep_from_record(byoai_cluster *c, const cl_record *r, const char *path_hint, cl_dep **out, byoai_error *err) {
    *out = NULL;
    cl_dep *d = calloc(1, sizeof *d);
    if (!d) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    d->id = r->dep_id;
    d->term = r->term;
    d->epoch = r->epoch;
    snprintf(d->name, sizeof d->name, "%s", r->name);
    snprintf(d->url, sizeof d->url, "%s", r->url);
    d->n_ctx = r->n_ctx;
    d->n_seq = r->n_seq;
    d->n_batch = r->n_batch;
    d->wire = r->wire;
    d->weighting = (byoai_cluster_weighting)r->weighting;
    int rc = cl_manifest_parse((const char *)r->man, r->man_len, &d->man, err);
    if (!rc && (memcmp(d->man.file_sha, r->file_sha, 32) || d->man.file_size != r->file_size))
        rc = byoai_error_set(err, BYOAI_EFORMAT, "the record's manifest does not describe its file");
    if (!rc) {
        d->man_json = malloc(r->man_len);
        if (!d->man_json) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        else {
            memcpy(d->man_json, r->man, r->man_len);
            d->man_len = r->man_len;
        }
    }
    if (!rc) { /* a whole copy (the hint: where this node had it), else the partial one a stage here fetched */
        struct stat st;
        cl_manifest m;
        if (path_hint && *path_hint && stat(path_hint, &st) == 0 && (uint64_t)st.st_size == r->file_size &&
            cl_manifest_for_file(c->id.dir, path_hint, &m, NULL) == 0) {
            if (!memcmp(m.file_sha, r->file_sha, 32)) {
                snprintf(d->path, sizeof d->path, "%s", path_hint);
                d->path_full = true;
            }
            cl_manifest_free(&m);
        }
        if (!d->path_full) d->path_full = cl_find_model_file(c, r->file_sha, r->file_size, d->path, sizeof d->path);
        if (!d->path_full && !cl_partial_find(c->id.dir, &d->man, d->path, sizeof d->path))
            rc = byoai_error_set(err, BYOAI_ENOTFOUND, "this node has no copy of model '%s' (not even its header)",
                                 r->name);
    }
    if (!rc) rc = dep_load_vocab(d, err);
    if (!rc) rc = dep_alloc_slots(d, err);
    if (!rc && r->n_only) {
        d->only = calloc(r->n_only, sizeof(char *));
        for (uint8_t i = 0; d->only && i < r->n_only; i++)
            if ((d->only[i] = strdup(r->only[i]))) d->n_only++;
        if (!d->only || d->n_only != r->n_only) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    if (rc) {
        cl_dep_free(d);
        return rc;
    }
    /* the plan it had, until the new one is adopted */
    d->plan.n_layer = r->n_layer;
    d->plan.n_stages = r->n_stages;
    for (uint32_t s = 0; s < r->n_stages; s++) {
        memcpy(d->stage_pk[s], r->stage_pk[s], 32);
        d->plan.stages[s].layer_begin = r->stage_begin[s];
        d->plan.stages[s].layer_end = r->stage_end[s];
        cl_fingerprint(r->stage_pk[s], d->plan.stages[s].node_id);
    }
    *out = d;
    return 0;
}

/* ---- deploying -------------------------------------------------------------------------------- */

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
    if (!o->path) return byoai_error_set(err, BYOAI_EINVAL, "no model file given");
    /* a light version of dep_open: no hashing */
    cl_dep *d = calloc(1, sizeof *d);
    if (!d) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    snprintf(d->name, sizeof d->name, "%s", o->name ? o->name : "model");
    snprintf(d->path, sizeof d->path, "%s", o->path);
    d->weighting = o->weighting;
    d->n_seq = o->n_seq ? o->n_seq : 4;
    d->n_batch = o->n_batch ? o->n_batch : 256;
    d->n_ctx = o->n_ctx;
    int rc = dep_load_vocab(d, err);
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
    cl_dep_free(d);
    return rc;
}

int byoai_cluster_deploy(byoai_cluster *c, const byoai_cluster_model_opts *o, byoai_error *err) {
    int rc = wait_min_nodes(c, o->min_nodes, err);
    if (rc) return rc;
    cl_dep *d;
    if ((rc = dep_open(c, o, &d, err))) return rc;
    /* what the cluster already knows by that name */
    pthread_mutex_lock(&c->mu);
    cl_dep *here = cl_dep_find(c, d->name);
    cl_rec *rec = cl_rec_find(c, d->name);
    bool same_file = rec && !rec->r.removed && !memcmp(rec->r.file_sha, d->man.file_sha, 32);
    bool live = rec && !rec->r.removed;
    bool mine = live && cl_is_self(c, rec->r.coord_pk);
    cl_peer *cp = live && !mine ? cl_peer_find(c, rec->r.coord_pk) : NULL;
    bool coord_alive = mine ? here != NULL : cl_peer_usable(cp);
    char cname[CL_NAME_MAX] = "", cid[BYOAI_CLUSTER_ID_LEN + 1] = "";
    if (live) cl_fingerprint(rec->r.coord_pk, cid);
    if (cp) snprintf(cname, sizeof cname, "%s", cl_peer_name(cp));
    uint32_t last_term = rec ? rec->r.term : 0;
    pthread_mutex_unlock(&c->mu);
    if (here && same_file) {
        cl_dep_free(d);
        return 0; /* deployed here already (resumed at start, say): nothing to do */
    }
    if (here || (live && coord_alive && !same_file)) {
        cl_dep_free(d);
        return byoai_error_set(err, BYOAI_EEXIST, "model '%s' is already deployed with another file by %s (%.12s); "
                               "undeploy it first or pick another name", o->name, here ? "this node" : cname, cid);
    }
    if (live && coord_alive) { /* the same model, run by another member: use it */
        cl_dep_free(d);
        cl_event(c, BYOAI_LOG_INFO, "%s is already deployed by %.12s (%s); using that deployment", o->name, cid, cname);
        return 0;
    }
    if (live && same_file && (mine || !coord_alive)) { /* ours to resume, or its coordinator is gone: take it over */
        cl_dep_free(d);
        return cl_takeover_run(c, o->name, err);
    }
    d->term = last_term + 1;
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
        cl_dep_free(d);
        return byoai_error_prefix(err, "deploying %s", o->name);
    }
    char desc[1024] = "";
    for (uint32_t s = 0; s < d->plan.n_stages; s++) {
        char one[128];
        snprintf(one, sizeof one, "%s%s:%u-%u", s ? ", " : "", d->plan.stages[s].node_name,
                 d->plan.stages[s].layer_begin, d->plan.stages[s].layer_end);
        strncat(desc, one, sizeof desc - strlen(desc) - 1);
    }
    cl_event(c, BYOAI_LOG_INFO, "deployed %s on %u node(s) in %.2f s: %s", d->name, d->plan.n_stages,
             byoai_time_now() - t0, desc);
    cl_announce_now(c); /* members can route completions for it from now on */
    return 0;
}

/* unlink and free d once nobody uses it (under mu; returns with mu held) */
static void dep_unlink_wait(byoai_cluster *c, cl_dep *d) {
    d->removing = true;
    pthread_cond_broadcast(&c->cond);
    while (d->active > 0 || d->replanning) cl_coord_wait(c, byoai_time_now() + 0.25);
    for (cl_dep **pp = &c->deps; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
}

int byoai_cluster_undeploy(byoai_cluster *c, const char *name, byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    cl_dep *d = cl_dep_find(c, name);
    if (!d) {
        cl_rec *rec = cl_rec_find(c, name);
        char cid[BYOAI_CLUSTER_ID_LEN + 1] = "";
        bool elsewhere = rec && !rec->r.removed;
        if (elsewhere) cl_fingerprint(rec->r.coord_pk, cid);
        pthread_mutex_unlock(&c->mu);
        if (elsewhere)
            return byoai_error_set(err, BYOAI_EINVAL, "model '%s' is coordinated by node %.12s; undeploy it there",
                                   name, cid);
        return byoai_error_set(err, BYOAI_ENOTFOUND, "model '%s' is not deployed by this node", name);
    }
    dep_unlink_wait(c, d);
    uint32_t term = d->term;
    pthread_mutex_unlock(&c->mu);
    for (uint32_t s = 0; s < d->plan.n_stages; s++) {
        cl_buf b = {0};
        cl_enc_unload(&b, d->id);
        cl_send_linked(c, d->stage_pk[s], &b);
        cl_buf_free(&b);
    }
    cl_record_remove(c, name, d->id, term + 1);
    cl_dep_retire(c, d);
    cl_announce_now(c);
    return 0;
}

void cl_dep_step_down(byoai_cluster *c, cl_dep *d) {
    if (d->removing) return;
    d->moved = d->removing = true; /* completions end with "moved"; the maintenance thread frees it */
    pthread_cond_broadcast(&c->cond);
}

bool byoai_cluster_has_model(byoai_cluster *c, const char *name) {
    uint8_t pk[32];
    pthread_mutex_lock(&c->mu);
    /* served now, or soon (a takeover, a resume: completions wait for it) */
    bool found = cl_model_coordinator(c, name, pk) == 0 || cl_model_recoverable(c, name);
    pthread_mutex_unlock(&c->mu);
    return found;
}

size_t byoai_cluster_list_models(byoai_cluster *c, char (*names)[64], size_t cap) {
    size_t n = 0;
    char cand[CL_MAX_PEERS * CL_MAX_MODELS + 64][CL_NAME_MAX];
    size_t nc = 0;
    pthread_mutex_lock(&c->mu);
    for (cl_dep *d = c->deps; d && nc < 64; d = d->next)
        if (d->ready && !d->removing) snprintf(cand[nc++], CL_NAME_MAX, "%s", d->name);
    for (cl_rec *r = c->records; r && nc < 64; r = r->next)
        if (!r->r.removed) snprintf(cand[nc++], CL_NAME_MAX, "%s", r->r.name);
    for (int i = 0; i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (!cl_peer_usable(p) || !p->have_info) continue;
        for (int k = 0; k < p->info.n_deployed; k++) snprintf(cand[nc++], CL_NAME_MAX, "%s", p->info.deployed[k]);
    }
    uint8_t pk[32];
    for (size_t i = 0; i < nc && n < cap; i++) {
        bool dup = false;
        for (size_t k = 0; k < n; k++) dup |= !strcmp(names[k], cand[i]);
        if (!dup && (cl_model_coordinator(c, cand[i], pk) == 0 || cl_model_recoverable(c, cand[i])))
            snprintf(names[n++], 64, "%s", cand[i]);
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- shutdown ----------------------------------------------------------------------------------- */

void cl_coord_stop_all(byoai_cluster *c) {
    /* Stopping: the stages elsewhere stay loaded and the records stay, so
     * that a member takes the deployments over (takeover.c) and this node
     * resumes them when it comes back. */
    pthread_mutex_lock(&c->mu);
    for (cl_served *sv = c->served; sv; sv = sv->next) sv->cancel = true;
    for (cl_dep *d = c->deps; d; d = d->next) d->removing = true;
    pthread_cond_broadcast(&c->cond);
    double deadline = byoai_time_now() + 30;
    bool busy = true;
    while (busy && byoai_time_now() < deadline) {
        busy = c->n_generating > 0 || c->served;
        for (cl_dep *d = c->deps; d; d = d->next) busy |= d->active > 0 || d->replanning;
        if (busy) cl_coord_wait(c, deadline);
    }
    cl_dep *deps = c->deps;
    c->deps = NULL;
    pthread_mutex_unlock(&c->mu);
    while (deps) {
        cl_dep *n = deps->next;
        cl_dep_free(deps);
        deps = n;
    }
    cl_vocabs_free(c);
}
