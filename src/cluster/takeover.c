/*
 * No single point of failure for a deployment.
 *
 * When the coordinator of a deployment is lost (dead or gone in this node's
 * view), the first node of the deployment's plan, in stage order, that is
 * alive takes it over: every member computes the same choice from the same
 * record, and if that node is lost too the next one does. It claims the
 * deployment with the next term (its record goes to everyone, so completions
 * are asked of it from then on), re-plans over the nodes alive — stages
 * whose range is unchanged keep their weights, a member without the file
 * fetches its layers from the URL in the record — and coordinates: the
 * completions that were running through the lost coordinator continue
 * there (complete.c).
 *
 * A node that restarts with records naming it coordinator waits a moment
 * (the failure timeout and four heartbeats) for the members to tell it of a
 * newer term; when none has one it resumes the deployment the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/node_internal.h"

/* the node that should coordinate r now that its coordinator is lost (under mu) */
static bool successor(byoai_cluster *c, const cl_record *r, uint8_t out[32]) {
    for (uint32_t s = 0; s < r->n_stages; s++) {
        const uint8_t *pk = r->stage_pk[s];
        if (!memcmp(pk, r->coord_pk, 32)) continue;
        if (cl_is_self(c, pk) || cl_peer_usable(cl_peer_find(c, pk))) {
            memcpy(out, pk, 32);
            return true;
        }
    }
    return false;
}

static bool coordinator_lost(byoai_cluster *c, const cl_record *r, double now) {
    cl_peer *p = cl_peer_find(c, r->coord_pk);
    if (!p) return now - c->t_start > c->failure_s + 4 * c->heartbeat_s; /* never seen since this node started */
    if (cl_peer_usable(p)) return false;
    return p->removed || p->state == PEER_DEAD || p->state == PEER_LEFT;
}

int cl_model_recoverable(byoai_cluster *c, const char *name) {
    cl_rec *rec = cl_rec_find(c, name);
    if (!rec || rec->r.removed) return 0;
    if (cl_is_self(c, rec->r.coord_pk)) return rec->resume_pending || rec->busy || cl_dep_find(c, name) ? 1 : 0;
    if (cl_peer_usable(cl_peer_find(c, rec->r.coord_pk))) return 1; /* alive: resuming it, or about to say */
    uint8_t next[32];
    return successor(c, &rec->r, next) ? 1 : 0;
}

int cl_takeover_run(byoai_cluster *c, const char *name, byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    cl_rec *rec = cl_rec_find(c, name);
    if (!rec || rec->r.removed) {
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ENOTFOUND, "no record of a deployment named '%s'", name);
    }
    if (cl_dep_find(c, name)) {
        pthread_mutex_unlock(&c->mu);
        return 0; /* running here already */
    }
    cl_record r;
    char path[4096];
    snprintf(path, sizeof path, "%s", rec->path);
    int rc = cl_record_copy(&r, &rec->r);
    bool resume = cl_is_self(c, rec->r.coord_pk);
    rec->busy = true;
    rec->resume_pending = false;
    pthread_mutex_unlock(&c->mu);
    if (rc) {
        pthread_mutex_lock(&c->mu);
        rec->busy = false;
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    char lost[BYOAI_CLUSTER_ID_LEN + 1];
    cl_fingerprint(r.coord_pk, lost);
    cl_dep *d = NULL;
    rc = cl_dep_from_record(c, &r, path, &d, err);
    double t0 = byoai_time_now();
    if (!rc) {
        d->term = r.term + 1;
        pthread_mutex_lock(&c->mu);
        if (cl_dep_find(c, name)) { /* someone was faster (a deploy) */
            pthread_mutex_unlock(&c->mu);
            cl_dep_free(d);
            d = NULL;
        } else {
            d->replanning = true;
            d->next = c->deps;
            c->deps = d;
            pthread_mutex_unlock(&c->mu);
        }
    }
    if (!rc && d) {
        /* the claim first: completions are asked of this node from now on (they wait for the plan) */
        cl_record_publish(c, d);
        uint8_t ex[1][32];
        uint32_t n_ex = 0;
        pthread_mutex_lock(&c->mu);
        if (!resume && !cl_peer_usable(cl_peer_find(c, r.coord_pk))) memcpy(ex[n_ex++], r.coord_pk, 32);
        pthread_mutex_unlock(&c->mu);
        rc = cl_dep_replan(c, d, ex, n_ex, err);
        pthread_mutex_lock(&c->mu);
        d->replanning = false;
        if (rc) { /* the nodes left cannot run it: tried again in a while */
            d->removing = true;
            while (d->active > 0) cl_coord_wait(c, byoai_time_now() + 0.25);
            for (cl_dep **pp = &c->deps; *pp; pp = &(*pp)->next)
                if (*pp == d) {
                    *pp = d->next;
                    break;
                }
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        if (rc) {
            cl_dep_free(d);
            d = NULL;
        }
    }
    pthread_mutex_lock(&c->mu);
    rec = cl_rec_find(c, name);
    if (rec) {
        rec->busy = false;
        if (rc && rc != BYOAI_ECANCELED) { /* again later, while it is still ours to do */
            rec->resume_pending = cl_is_self(c, rec->r.coord_pk);
            rec->resume_at = byoai_time_now() + 5;
        }
    }
    pthread_mutex_unlock(&c->mu);
    free(r.man);
    if (rc) {
        if (rc != BYOAI_ECANCELED)
            cl_event(c, BYOAI_LOG_ERROR, "cannot %s %s: %s", resume ? "resume" : "take over", name, err ? err->msg : "");
        return rc;
    }
    if (d) {
        if (resume)
            cl_event(c, BYOAI_LOG_INFO, "resumed %s (term %u) on %u node(s) in %.2f s", name, d->term, d->plan.n_stages,
                     byoai_time_now() - t0);
        else
            cl_event(c, BYOAI_LOG_WARN, "took %s over from lost node %.12s (term %u): re-planned on %u node(s) in %.2f s",
                     name, lost, d->term, d->plan.n_stages, byoai_time_now() - t0);
        cl_announce_now(c);
    }
    return 0;
}

typedef struct {
    char name[CL_NAME_MAX];
} takeover_job;

static void takeover_job_run(byoai_cluster *c, void *arg) {
    takeover_job *j = arg;
    byoai_error err = {0};
    cl_takeover_run(c, j->name, &err);
    free(j);
}

void cl_takeover_tick(byoai_cluster *c) {
    double now = byoai_time_now();
    pthread_mutex_lock(&c->mu);
    for (cl_rec *rec = c->records; rec; rec = rec->next) {
        if (rec->r.removed || rec->busy || cl_dep_find(c, rec->r.name)) continue;
        bool go = false;
        if (cl_is_self(c, rec->r.coord_pk)) {
            go = rec->resume_pending && now >= rec->resume_at; /* a restart found it: nobody told of a newer term */
        } else if (coordinator_lost(c, &rec->r, now)) {
            uint8_t next[32];
            go = successor(c, &rec->r, next) && cl_is_self(c, next);
        }
        if (!go) continue;
        takeover_job *j = malloc(sizeof *j);
        if (!j) continue;
        snprintf(j->name, sizeof j->name, "%s", rec->r.name);
        rec->busy = true; /* until the job runs */
        if (!cl_spawn_locked(c, takeover_job_run, j)) {
            rec->busy = false;
            free(j);
        }
    }
    pthread_mutex_unlock(&c->mu);
}
