/*
 * Losing a stage, and what status says about it.
 *
 * Failover: when a stage's node is lost (its link closed and cannot be
 * re-opened, it was silent for failure_timeout_s, another stage cannot reach
 * it, or it came back on a new link, having lost its stage in a restart),
 * the first completion to notice, or the maintenance thread at once, re-plans
 * over the nodes left (a new epoch; stages whose range is unchanged keep
 * their weights) while completions wait; then each re-prefills its history
 * from position 0 and continues. When the nodes left cannot hold the model,
 * the completion fails with an error naming the lost node and the memory
 * shortfall.
 *
 * Status: every deployment this node knows of, with its coordinator and
 * term. Ready only while its coordinator serves it and every stage's node is
 * there; a stage whose node is lost is shown as missing, never as layers on
 * that node.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/node_internal.h"

/* ---- failover ---------------------------------------------------------------------------------- */

int cl_dep_failover(byoai_cluster *c, cl_dep *d, uint32_t seen_epoch, const uint8_t *culprit, byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    double deadline = byoai_time_now() + c->load_s + c->failure_s;
    while (d->replanning && !c->stopping && byoai_time_now() < deadline) cl_coord_wait(c, deadline);
    if (c->stopping || d->removing) {
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping or the model is being unloaded");
    }
    if (d->epoch != seen_epoch) { /* someone re-planned already */
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    d->replanning = true;
    uint32_t n = d->plan.n_stages;
    uint8_t pks[BYOAI_CLUSTER_MAX_NODES][32];
    memcpy(pks, d->stage_pk, sizeof pks);
    pthread_mutex_unlock(&c->mu);
    uint8_t excluded[BYOAI_CLUSTER_MAX_NODES][32];
    uint32_t n_excluded = 0;
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
            memcpy(excluded[n_excluded++], pks[s], 32);
            char id[BYOAI_CLUSTER_ID_LEN + 1];
            cl_fingerprint(pks[s], id);
            snprintf(lost + strlen(lost), sizeof lost - strlen(lost), "%s%.12s", lost[0] ? ", " : "", id);
        }
    }
    double t0 = byoai_time_now();
    int rc = cl_dep_replan(c, d, (const uint8_t (*)[32])excluded, n_excluded, err);
    pthread_mutex_lock(&c->mu);
    d->replanning = false;
    if (!rc) {
        d->failovers++;
        d->last_failover_s = byoai_time_now() - t0;
    } else {
        d->ready = false; /* its stages are not all there: the status says so */
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

typedef struct {
    uint64_t dep_id;
    uint32_t epoch;
} replan_job;

static void replan_run(byoai_cluster *c, void *arg) {
    replan_job *j = arg;
    pthread_mutex_lock(&c->mu);
    cl_dep *d = cl_dep_by_id(c, j->dep_id);
    bool go = d && !d->removing && d->epoch == j->epoch;
    if (go) d->active++; /* held while re-planning */
    pthread_mutex_unlock(&c->mu);
    if (go) {
        byoai_error err = {0};
        cl_dep_failover(c, d, j->epoch, NULL, &err);
        pthread_mutex_lock(&c->mu);
        d->active--;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
    }
    free(j);
}

void cl_coord_check_stages(byoai_cluster *c) {
    cl_dep *gone = NULL;
    pthread_mutex_lock(&c->mu);
    for (cl_dep **pp = &c->deps; *pp;) {
        cl_dep *d = *pp;
        /* one that stepped down (another member took it over): freed once idle */
        if (d->moved && d->active == 0 && !d->replanning) {
            *pp = d->next;
            d->next = gone;
            gone = d;
            continue;
        }
        pp = &d->next;
        if (!d->ready || d->replanning || d->removing) continue;
        /* a stage's node is gone for good, or came back on a new link (a restart loses the stage):
         * re-plan now, not at the next completion */
        bool lost = false;
        for (uint32_t s = 0; s < d->plan.n_stages && !lost; s++) {
            if (cl_is_self(c, d->stage_pk[s])) continue;
            cl_peer *p = cl_peer_find(c, d->stage_pk[s]);
            lost = !p || (!cl_peer_usable(p) && (p->state == PEER_DEAD || p->state == PEER_LEFT)) ||
                   (cl_peer_usable(p) && p->link_gen != d->stage_gen[s]);
        }
        if (!lost) continue;
        replan_job *j = malloc(sizeof *j);
        if (!j) continue;
        j->dep_id = d->id;
        j->epoch = d->epoch;
        d->ready = false; /* until the new plan is in */
        if (!cl_spawn_locked(c, replan_run, j)) {
            d->ready = true;
            free(j);
        }
    }
    pthread_mutex_unlock(&c->mu);
    while (gone) {
        cl_dep *n = gone->next;
        cl_dep_retire(c, gone);
        gone = n;
    }
}

/* ---- what status says ---------------------------------------------------------------------------- */

static json_t *stage_json(byoai_cluster *c, const uint8_t pk[32], uint32_t begin, uint32_t end, const char *name,
                          uint64_t bytes, uint64_t memory, bool loading, const uint32_t *gen, bool *missing) {
    char id[BYOAI_CLUSTER_ID_LEN + 1];
    cl_fingerprint(pk, id);
    const char *nm = name, *state = loading ? "loading" : "ready";
    bool here = cl_is_self(c, pk);
    cl_peer *p = here ? NULL : cl_peer_find(c, pk);
    if (here) nm = c->id.node_name;
    else if (p && p->have_cert) nm = cl_peer_name(p);
    if (!here && cl_peer_usable(p) && gen && p->link_gen != *gen) { /* back on a new link: its stage is reloaded */
        *missing = true;
        state = "loading";
    }
    if (!here && !cl_peer_usable(p)) { /* never shown as where layers run */
        *missing = true;
        return json_pack("{s:s,s:s,s:i,s:i,s:s,s:s,s:I,s:I}", "node_id", "", "name", "", "layer_begin", (int)begin,
                         "layer_end", (int)end, "state", "missing", "lost_node_id", id, "bytes", (json_int_t)bytes,
                         "memory", (json_int_t)memory);
    }
    return json_pack("{s:s,s:s,s:i,s:i,s:s,s:I,s:I}", "node_id", id, "name", nm ? nm : "", "layer_begin", (int)begin,
                     "layer_end", (int)end, "state", state, "bytes", (json_int_t)bytes, "memory", (json_int_t)memory);
}

int cl_coord_status(byoai_cluster *c, void *json_deps) {
    json_t *arr = json_deps;
    for (cl_dep *d = c->deps; d; d = d->next) {
        if (d->moved) continue;
        json_t *stages = json_array();
        bool missing = false;
        for (uint32_t s = 0; s < d->plan.n_stages; s++) {
            const byoai_cluster_stage_plan *p = &d->plan.stages[s];
            json_array_append_new(stages, stage_json(c, d->stage_pk[s], p->layer_begin, p->layer_end, p->node_name,
                                                     p->total_bytes, p->memory, d->replanning, &d->stage_gen[s],
                                                     &missing));
        }
        bool ready = d->ready && !d->replanning && !missing && !d->removing;
        const char *state = ready ? "ready" : d->replanning ? "loading" : missing ? "recovering" : "not ready";
        json_t *j = json_pack("{s:s,s:I,s:i,s:i,s:b,s:s,s:b,s:i,s:i,s:i,s:s,s:i,s:f,s:o}", "model", d->name,
                              "deployment", (json_int_t)d->id, "term", (int)d->term, "epoch", (int)d->epoch, "ready",
                              ready, "state", state, "replanning", d->replanning, "n_ctx", (int)d->n_ctx, "n_seq",
                              (int)d->n_seq, "active", (int)d->active, "wire", d->wire ? "f16" : "f32", "failovers",
                              (int)d->failovers, "last_failover_seconds", d->last_failover_s, "stages", stages);
        json_object_set_new(j, "coordinator", json_pack("{s:s,s:s,s:b}", "node_id", c->id.node_id, "name",
                                                        c->id.node_name, "self", 1));
        json_object_set_new(j, "url", json_string(d->url));
        json_array_append_new(arr, j);
    }
    /* the deployments other members coordinate, as their records say */
    for (cl_rec *r = c->records; r; r = r->next) {
        if (r->r.removed || cl_is_self(c, r->r.coord_pk)) continue;
        bool dup = false;
        for (cl_dep *d = c->deps; d; d = d->next) dup |= !strcmp(d->name, r->r.name) && !d->moved;
        if (dup) continue;
        cl_peer *cp = cl_peer_find(c, r->r.coord_pk);
        bool coord_ok = cl_peer_usable(cp);
        json_t *stages = json_array();
        bool missing = false;
        for (uint32_t s = 0; s < r->r.n_stages; s++)
            json_array_append_new(stages, stage_json(c, r->r.stage_pk[s], r->r.stage_begin[s], r->r.stage_end[s], NULL,
                                                     0, 0, false, NULL, &missing));
        /* ready when its coordinator says it runs it (a restarted one that has not resumed it does not) */
        bool announced = false;
        for (int k = 0; coord_ok && cp->have_info && k < cp->info.n_deployed; k++)
            announced |= !strcmp(cp->info.deployed[k], r->r.name);
        coord_ok = coord_ok && announced;
        bool ready = coord_ok && !missing;
        char cid[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(r->r.coord_pk, cid);
        json_t *j = json_pack("{s:s,s:I,s:i,s:i,s:b,s:s,s:b,s:i,s:i,s:i,s:s,s:i,s:f,s:o}", "model", r->r.name,
                              "deployment", (json_int_t)r->r.dep_id, "term", (int)r->r.term, "epoch", (int)r->r.epoch,
                              "ready", ready, "state", ready ? "ready" : !coord_ok ? "coordinator lost" : "recovering",
                              "replanning", 0, "n_ctx", (int)r->r.n_ctx, "n_seq", (int)r->r.n_seq, "active", 0, "wire",
                              r->r.wire ? "f16" : "f32", "failovers", 0, "last_failover_seconds", 0.0, "stages", stages);
        json_object_set_new(j, "coordinator", json_pack("{s:s,s:s,s:b}", "node_id", cid, "name",
                                                        cp && cp->have_cert ? cl_peer_name(cp) : "", "self", 0));
        json_object_set_new(j, "url", json_string(r->r.url));
        json_array_append_new(arr, j);
    }
    return 0;
}

