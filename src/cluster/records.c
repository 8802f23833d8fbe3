/*
 * Deployment records: what a deployment is (the model file's sha256, size
 * and tensor manifest, the URL members fetch it from, its options), who
 * coordinates it with which term, and its plan (which node runs which
 * layers). The coordinator sends its record to every member whenever it
 * changes (a deployment, a re-plan, a takeover), and every member sends all
 * the records it knows over each new link, so a member that was away learns
 * them. Every member keeps them in memory; the admin, the coordinator and
 * the nodes that run a stage also keep them on disk
 * (cluster/deployments/<id>.rec, written atomically): a restarted
 * coordinator resumes its deployments, and a stage's node can take one over
 * (takeover.c) even after the whole cluster restarted.
 *
 * Order: a record supersedes another of the same name when its term is
 * higher; within a term, when its epoch is; for the same term and epoch the
 * lower coordinator key wins, so two members that took over at once agree
 * without talking, and the one that lost steps down. An undeployed name
 * keeps a tombstone with a higher term, so that an older record met later
 * does not bring it back.
 *
 * The file: "BYDR" | u32 version | u32 length | the RECORD message | u16
 * length | this node's path to the model (the coordinator's copy).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/node_internal.h"

#define REC_MAGIC "BYDR"
#define REC_VERSION 1

static pthread_mutex_t io_mu = PTHREAD_MUTEX_INITIALIZER; /* orders the writes of record files */

bool cl_record_newer(const cl_record *a, const cl_record *b) {
    if (a->term != b->term) return a->term > b->term;
    if (a->epoch != b->epoch) return a->epoch > b->epoch;
    if (a->removed != b->removed) return a->removed; /* a tombstone of the same term wins */
    return memcmp(a->coord_pk, b->coord_pk, 32) < 0;
}

int cl_record_copy(cl_record *dst, const cl_record *src) {
    uint8_t *man = NULL;
    if (src->man_len) {
        man = malloc(src->man_len);
        if (!man) return BYOAI_ENOMEM;
        memcpy(man, src->man, src->man_len);
    }
    *dst = *src;
    dst->man = man;
    return 0;
}

static void rec_free(cl_rec *r) {
    if (!r) return;
    free(r->r.man);
    free(r);
}

cl_rec *cl_rec_find(byoai_cluster *c, const char *name) {
    for (cl_rec *r = c->records; r; r = r->next)
        if (!strcmp(r->r.name, name)) return r;
    return NULL;
}

static bool in_stages(const byoai_cluster *c, const cl_record *r) {
    for (uint32_t s = 0; s < r->n_stages; s++)
        if (cl_is_self(c, r->stage_pk[s])) return true;
    return false;
}

static void rec_path(const byoai_cluster *c, uint64_t dep_id, char *out, size_t cap) {
    snprintf(out, cap, "%s/deployments/%016llx.rec", c->id.dir, (unsigned long long)dep_id);
}

/* Bring the file of name's record in line with what this node knows: written
 * where it must be kept (the admin, the coordinator, a stage's node), removed
 * elsewhere. Not under mu. */
static void rec_persist(byoai_cluster *c, const char *name, uint64_t old_dep_id) {
    pthread_mutex_lock(&io_mu);
    cl_buf b = {0};
    char path[4600], old[4600];
    bool keep = false;
    uint64_t dep_id = 0;
    pthread_mutex_lock(&c->mu);
    cl_rec *r = cl_rec_find(c, name);
    if (r) {
        dep_id = r->r.dep_id;
        keep = c->id.admin || cl_is_self(c, r->r.coord_pk) || in_stages(c, &r->r);
        if (keep) {
            cl_buf m = {0};
            cl_enc_record(&m, &r->r);
            cl_buf_bytes(&b, REC_MAGIC, 4);
            cl_buf_u32(&b, REC_VERSION);
            cl_buf_u32(&b, (uint32_t)m.len);
            cl_buf_bytes(&b, m.data, m.len);
            cl_buf_str(&b, r->path);
            if (m.oom) b.oom = true;
            cl_buf_free(&m);
        }
    }
    pthread_mutex_unlock(&c->mu);
    rec_path(c, dep_id, path, sizeof path);
    if (old_dep_id && old_dep_id != dep_id) { /* the name's earlier deployment */
        rec_path(c, old_dep_id, old, sizeof old);
        unlink(old);
    }
    if (r && keep && !b.oom) {
        char dir[4500];
        snprintf(dir, sizeof dir, "%s/deployments", c->id.dir);
        byoai_error err = {0};
        if (byoai_fs_mkdirs(dir, 0700, &err) || byoai_fs_write_atomic(path, b.data, b.len, &err))
            cl_event(c, BYOAI_LOG_WARN, "cannot keep the record of %s: %s", name, err.msg);
    } else if (r) {
        unlink(path);
    }
    cl_buf_free(&b);
    pthread_mutex_unlock(&io_mu);
}

/* Adopt in as name's record when it is newer (under mu). *old_id gets the
 * dep id of the record it replaced. Returns the record, or NULL when in was
 * not newer (or memory ran out). */
static cl_rec *merge_locked(byoai_cluster *c, const cl_record *in, const char *path, uint64_t *old_id) {
    *old_id = 0;
    cl_rec *r = cl_rec_find(c, in->name);
    if (r && !cl_record_newer(in, &r->r)) return NULL;
    cl_record copy;
    if (cl_record_copy(&copy, in)) return NULL;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) {
            free(copy.man);
            return NULL;
        }
        r->next = c->records;
        c->records = r;
    } else {
        *old_id = r->r.dep_id;
        free(r->r.man);
        if (r->r.dep_id != copy.dep_id || !cl_is_self(c, copy.coord_pk)) r->path[0] = '\0';
    }
    r->r = copy;
    if (path) snprintf(r->path, sizeof r->path, "%s", path);
    return r;
}

static void send_to_all(byoai_cluster *c, const cl_buf *b, const uint8_t *except) {
    uint8_t (*to)[32] = malloc(CL_MAX_PEERS * sizeof *to);
    int n = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; to && i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (cl_peer_usable(p) && (!except || memcmp(p->pk, except, 32))) memcpy(to[n++], p->pk, 32);
    }
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < n; i++) cl_send_linked(c, to[i], b);
    free(to);
}

void cl_record_publish(byoai_cluster *c, cl_dep *d) {
    cl_record r = {.dep_id = d->id, .man = (uint8_t *)d->man_json, .man_len = (uint32_t)d->man_len};
    pthread_mutex_lock(&c->mu);
    r.term = d->term;
    r.epoch = d->epoch;
    memcpy(r.coord_pk, c->id.node_pk, 32);
    snprintf(r.name, sizeof r.name, "%s", d->name);
    memcpy(r.file_sha, d->man.file_sha, 32);
    r.file_size = d->man.file_size;
    snprintf(r.url, sizeof r.url, "%s", d->url);
    r.n_ctx = d->n_ctx;
    r.n_seq = d->n_seq;
    r.n_batch = d->n_batch;
    r.wire = d->wire;
    r.weighting = (uint8_t)d->weighting;
    for (size_t i = 0; i < d->n_only && r.n_only < CL_ONLY_MAX; i++)
        snprintf(r.only[r.n_only++], sizeof r.only[0], "%s", d->only[i]);
    r.n_layer = d->plan.n_layer;
    r.n_stages = d->plan.n_stages;
    for (uint32_t s = 0; s < d->plan.n_stages; s++) {
        memcpy(r.stage_pk[s], d->stage_pk[s], 32);
        r.stage_begin[s] = d->plan.stages[s].layer_begin;
        r.stage_end[s] = d->plan.stages[s].layer_end;
    }
    uint64_t old_id = 0;
    /* nothing new, or superseded (another member holds it with a newer term: this node steps down) */
    cl_rec *rec = merge_locked(c, &r, d->path_full ? d->path : NULL, &old_id);
    cl_buf b = {0};
    if (rec) {
        rec->resume_pending = false;
        cl_enc_record(&b, &rec->r);
    }
    pthread_mutex_unlock(&c->mu);
    if (!rec) return;
    rec_persist(c, r.name, old_id);
    send_to_all(c, &b, NULL);
    cl_buf_free(&b);
}

void cl_record_remove(byoai_cluster *c, const char *name, uint64_t dep_id, uint32_t term) {
    cl_record t = {.dep_id = dep_id, .term = term, .removed = true};
    memcpy(t.coord_pk, c->id.node_pk, 32);
    snprintf(t.name, sizeof t.name, "%s", name);
    pthread_mutex_lock(&c->mu);
    uint64_t old_id = 0;
    cl_rec *rec = merge_locked(c, &t, NULL, &old_id);
    cl_buf b = {0};
    if (rec) cl_enc_record(&b, &rec->r);
    pthread_mutex_unlock(&c->mu);
    if (!rec) return;
    rec_persist(c, name, old_id);
    send_to_all(c, &b, NULL);
    cl_buf_free(&b);
}

void cl_record_on_message(byoai_cluster *c, const uint8_t from[32], const cl_record *in) {
    (void)from;
    pthread_mutex_lock(&c->mu);
    cl_rec *prev = cl_rec_find(c, in->name);
    bool was_stage = prev && in_stages(c, &prev->r);
    uint64_t prev_dep = prev ? prev->r.dep_id : 0;
    uint64_t old_id = 0;
    cl_rec *rec = merge_locked(c, in, NULL, &old_id);
    if (!rec) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    char cid[BYOAI_CLUSTER_ID_LEN + 1];
    cl_fingerprint(in->coord_pk, cid);
    /* a deployment this node coordinates that another member now holds with a newer term: step down */
    cl_dep *d = cl_dep_find(c, in->name);
    bool step_down = d && !cl_is_self(c, in->coord_pk);
    if (step_down) cl_dep_step_down(c, d);
    /* named coordinator of a deployment it does not run (it lost its disk, say): resume it */
    if (!in->removed && cl_is_self(c, in->coord_pk) && !d) {
        rec->resume_pending = true;
        rec->resume_at = byoai_time_now();
    }
    bool drop_stage = was_stage && (in->removed || in->dep_id != prev_dep);
    pthread_mutex_unlock(&c->mu);
    if (step_down)
        cl_event(c, BYOAI_LOG_WARN, "node %.12s coordinates %s now (term %u); this node steps down", cid, in->name,
                 in->term);
    if (drop_stage) cl_stage_drop(c, prev_dep);
    rec_persist(c, in->name, old_id);
}

void cl_records_send_all(byoai_cluster *c, const uint8_t to[32]) {
    cl_buf *bufs = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&c->mu);
    for (cl_rec *r = c->records; r; r = r->next) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            cl_buf *nb = realloc(bufs, cap * sizeof *nb);
            if (!nb) break;
            bufs = nb;
        }
        bufs[n] = (cl_buf){0};
        cl_enc_record(&bufs[n++], &r->r);
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        cl_send_linked(c, to, &bufs[i]);
        cl_buf_free(&bufs[i]);
    }
    free(bufs);
}

int cl_model_coordinator(byoai_cluster *c, const char *name, uint8_t pk[32]) {
    cl_dep *d = cl_dep_find(c, name);
    if (d && d->ready) {
        memcpy(pk, c->id.node_pk, 32);
        return 0;
    }
    cl_rec *r = cl_rec_find(c, name);
    if (r && r->r.removed) return BYOAI_ENOTFOUND;
    cl_peer *cp = r && !cl_is_self(c, r->r.coord_pk) ? cl_peer_find(c, r->r.coord_pk) : NULL;
    if (cl_peer_usable(cp)) { /* the record's coordinator, when it says it runs the model */
        for (int k = 0; cp->have_info && k < cp->info.n_deployed; k++)
            if (!strcmp(cp->info.deployed[k], name)) {
                memcpy(pk, cp->pk, 32);
                return 0;
            }
    }
    if (r && cl_is_self(c, r->r.coord_pk) && d) { /* taking it over: completions wait for the plan */
        memcpy(pk, c->id.node_pk, 32);
        return 0;
    }
    /* a member that announces it (before its record arrived) */
    for (int i = 0; i < CL_MAX_PEERS; i++) {
        cl_peer *q = &c->peers[i];
        if (!cl_peer_usable(q) || !q->have_info) continue;
        for (int k = 0; k < q->info.n_deployed; k++)
            if (!strcmp(q->info.deployed[k], name)) {
                memcpy(pk, q->pk, 32);
                return 0;
            }
    }
    return BYOAI_ENOTFOUND;
}

/* ---- at start and stop -------------------------------------------------------------------------------- */

static int load_one(byoai_cluster *c, const char *path) {
    char *data;
    size_t len;
    if (byoai_fs_read_all(path, 32u << 20, &data, &len, NULL)) return BYOAI_EIO;
    cl_rd rd = {(const uint8_t *)data, len, 0, false};
    const uint8_t *magic = cl_rd_bytes(&rd, 4);
    uint32_t ver = cl_rd_u32(&rd);
    uint32_t n = 0;
    const uint8_t *msg = cl_rd_blob(&rd, 32u << 20, &n);
    char where[4096];
    cl_rd_str(&rd, where, sizeof where);
    cl_msg m;
    int rc = BYOAI_EFORMAT;
    if (magic && !memcmp(magic, REC_MAGIC, 4) && ver == REC_VERSION && cl_rd_done(&rd) && msg &&
        cl_msg_decode(msg, n, &m, NULL) == 0 && m.type == CL_MSG_RECORD) {
        uint64_t old_id = 0;
        pthread_mutex_lock(&c->mu);
        cl_rec *r = merge_locked(c, &m.u.record, where[0] ? where : NULL, &old_id);
        if (r && !r->r.removed && cl_is_self(c, r->r.coord_pk)) {
            r->resume_pending = true; /* unless a member tells of a newer term first */
            r->resume_at = byoai_time_now() + c->failure_s + 4 * c->heartbeat_s;
        }
        pthread_mutex_unlock(&c->mu);
        if (old_id) {
            char op[4600];
            rec_path(c, old_id, op, sizeof op);
            if (strcmp(op, path)) unlink(op);
        }
        rc = 0;
    }
    free(data);
    return rc;
}

int cl_records_load(byoai_cluster *c) {
    char dir[4500];
    snprintf(dir, sizeof dir, "%s/deployments", c->id.dir);
    DIR *dh = opendir(dir);
    if (!dh) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dh))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".rec")) continue;
        char path[4800];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (load_one(c, path)) byoai_log(BYOAI_LOG_WARN, "cluster: %s is not a deployment record; ignored", path);
        else n++;
    }
    closedir(dh);
    return n;
}

void cl_records_free(byoai_cluster *c) {
    cl_rec *r = c->records;
    c->records = NULL;
    while (r) {
        cl_rec *n = r->next;
        rec_free(r);
        r = n;
    }
}
