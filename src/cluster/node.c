/*
 * The running node: the listener, one link per member with a reader
 * thread, heartbeats and failure detection, static peers, gossip of the
 * member list, and the cluster view.
 *
 * Connections: when two members find each other, the one with the lower
 * key connects first (the other waits two heartbeats before trying too). If
 * both links come up anyway, both ends keep the one whose initiator has the
 * lower key, so they agree without talking. A member silent for
 * failure_timeout_s is declared dead and its link closed; a closed link
 * makes the member suspect until a reconnect succeeds or the timeout passes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "byoai/hw.h"
#include "byoai/store.h"
#include "cluster/node_internal.h"

#define HANDSHAKE_TIMEOUT 5.0

/* ---- helper threads (handshakes, connects, served completions) ------------------------- */

typedef struct {
    byoai_cluster *c;
    void (*fn)(byoai_cluster *c, void *arg);
    void *arg;
} helper_job;

static int n_helpers_of(byoai_cluster *c) { return c->n_helpers; }

static void *helper_main(void *p) {
    helper_job *j = p;
    j->fn(j->c, j->arg);
    pthread_mutex_lock(&j->c->mu);
    j->c->n_helpers--;
    pthread_cond_broadcast(&j->c->cond);
    pthread_mutex_unlock(&j->c->mu);
    free(j);
    return NULL;
}

/* run fn(c, arg) on a detached thread counted in ctl_active; false when it
 * could not start (arg is then the caller's to free). Call with mu held. */
static bool spawn_locked(byoai_cluster *c, void (*fn)(byoai_cluster *, void *), void *arg) {
    if (c->stopping) return false;
    helper_job *j = malloc(sizeof *j);
    if (!j) return false;
    j->c = c;
    j->fn = fn;
    j->arg = arg;
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &at, helper_main, j);
    pthread_attr_destroy(&at);
    if (rc) {
        free(j);
        return false;
    }
    c->n_helpers++;
    return true;
}

bool cl_spawn(byoai_cluster *c, void (*fn)(byoai_cluster *, void *), void *arg) {
    pthread_mutex_lock(&c->mu);
    bool ok = spawn_locked(c, fn, arg);
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* ---- events ------------------------------------------------------------------------------ */

void cl_event(byoai_cluster *c, byoai_log_level level, const char *fmt, ...) {
    char line[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    byoai_log(level, "cluster: %s", line);
    pthread_mutex_lock(&c->mu);
    int i = (c->event_head + c->n_events) % CL_EVENTS;
    if (c->n_events == CL_EVENTS) c->event_head = (c->event_head + 1) % CL_EVENTS;
    else c->n_events++;
    snprintf(c->events[i], sizeof c->events[i], "%s", line);
    c->event_t[i] = (double)byoai_time_unix();
    pthread_mutex_unlock(&c->mu);
}

/* ---- peers ---------------------------------------------------------------------------------- */

bool cl_is_self(const byoai_cluster *c, const uint8_t pk[32]) { return memcmp(pk, c->id.node_pk, 32) == 0; }

cl_peer *cl_peer_find(byoai_cluster *c, const uint8_t pk[32]) {
    for (int i = 0; i < CL_MAX_PEERS; i++)
        if (c->peers[i].used && memcmp(c->peers[i].pk, pk, 32) == 0) return &c->peers[i];
    return NULL;
}

cl_peer *cl_peer_upsert(byoai_cluster *c, const uint8_t pk[32]) {
    cl_peer *p = cl_peer_find(c, pk);
    if (p) return p;
    cl_peer *victim = NULL;
    for (int i = 0; i < CL_MAX_PEERS; i++) {
        if (!c->peers[i].used) {
            victim = &c->peers[i];
            break;
        }
        /* reuse the slot of a member gone for ten minutes */
        cl_peer *q = &c->peers[i];
        if (!q->conn && (q->state == PEER_DEAD || q->state == PEER_LEFT || q->state == PEER_NEW) &&
            byoai_time_now() - q->state_since > 600)
            victim = q;
    }
    if (!victim) return NULL;
    memset(victim, 0, sizeof *victim);
    victim->used = true;
    memcpy(victim->pk, pk, 32);
    cl_fingerprint(pk, victim->id);
    victim->first_seen = victim->state_since = byoai_time_now();
    victim->state = PEER_NEW;
    return victim;
}

static void set_state(cl_peer *p, cl_peer_state s) {
    if (p->state != s) {
        p->state = s;
        p->state_since = byoai_time_now();
    }
}

bool cl_peer_usable(const cl_peer *p) { return p && p->conn && !p->conn->dead && p->state == PEER_ALIVE; }

static const char *peer_state_name(const cl_peer *p);

static const char *state_name(cl_peer_state s) {
    switch (s) {
    case PEER_ALIVE: return "alive";
    case PEER_SUSPECT: return "suspect";
    case PEER_DEAD: return "dead";
    case PEER_LEFT: return "left";
    default: return "new";
    }
}

void cl_note_heard(byoai_cluster *c, const uint8_t pk[32], const cl_cert *cert, const cl_node_info *info,
                   const char *src_addr, uint64_t ann_ts) {
    if (cl_is_self(c, pk)) return;
    cl_peer *p = cl_peer_upsert(c, pk);
    if (!p) return;
    if (ann_ts) {
        if (ann_ts <= p->ann_ts) return; /* a replayed or stale announcement */
        p->ann_ts = ann_ts;
        /* a member that left is heard again only with a fresh announcement */
        if (p->state == PEER_LEFT && !p->removed && ann_ts / 1000 > (uint64_t)p->left_at) set_state(p, PEER_NEW);
    }
    if (cert) {
        p->cert = *cert;
        p->have_cert = true;
    }
    if (info) {
        p->info = *info;
        p->have_info = true;
        if (info->port) p->port = info->port;
    }
    if (src_addr && *src_addr && !p->conn) snprintf(p->addr, sizeof p->addr, "%s", src_addr);
    if (p->state == PEER_DEAD && !p->conn) p->fails = 0; /* heard again: retry soon */
}

/* ---- self info ---------------------------------------------------------------------------------- */

void cl_refresh_self_info(byoai_cluster *c) {
    cl_node_info *s = &c->self;
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", c->id.node_name);
    snprintf(s->version, sizeof s->version, "%s", BYOAI_VERSION);
    s->port = c->port;
    if (c->bind_any) {
        cl_iface ifs[CL_MAX_ADDRS];
        int n = cl_ifaces(ifs, CL_MAX_ADDRS);
        for (int i = 0; i < n && s->n_addrs < CL_MAX_ADDRS; i++)
            snprintf(s->addrs[s->n_addrs++], CL_ADDR_MAX, "%s", ifs[i].addr);
    } else {
        snprintf(s->addrs[s->n_addrs++], CL_ADDR_MAX, "%s", c->bind_addr);
    }
    byoai_hw_info hw;
    byoai_hw_get(&hw);
    s->mem_total = hw.ram_total;
    s->mem_offered = c->memory ? c->memory : hw.ram_available / 10 * 9;
    s->cores = (uint16_t)hw.cores;
    s->mem_bw = c->self.mem_bw;
    for (size_t i = 0; i < c->n_model_files && s->n_models < CL_MAX_MODELS; i++) {
        const char *b = strrchr(c->model_files[i], '/');
        b = b ? b + 1 : c->model_files[i];
        snprintf(s->models[s->n_models], CL_NAME_MAX, "%s", b);
        char *dot = strstr(s->models[s->n_models], ".gguf");
        if (dot) *dot = '\0';
        s->n_models++;
    }
    for (int i = 0; i < c->n_store_models && s->n_models < CL_MAX_MODELS; i++) {
        bool dup = false;
        for (int k = 0; k < s->n_models; k++) dup |= !strcmp(s->models[k], c->store_models[i]);
        if (!dup) snprintf(s->models[s->n_models++], CL_NAME_MAX, "%s", c->store_models[i]);
    }
    for (cl_dep *d = c->deps; d && s->n_deployed < CL_MAX_MODELS; d = d->next)
        if (d->ready && !d->removing) snprintf(s->deployed[s->n_deployed++], CL_NAME_MAX, "%s", d->name);
}

/* the models installed in the store, to announce (outside the lock: it reads files) */
static void refresh_store_models(byoai_cluster *c) {
    char names[CL_MAX_MODELS][CL_NAME_MAX];
    int n = 0;
    byoai_store *st;
    if (byoai_store_open(c->id.home, &st, NULL) == 0) {
        byoai_store_model *list = NULL;
        size_t count = 0;
        if (byoai_store_list(st, &list, &count, NULL) == 0)
            for (size_t i = 0; i < count && n < CL_MAX_MODELS; i++) {
                if (list[i].variant[0]) snprintf(names[n], CL_NAME_MAX, "%.40s:%.20s", list[i].name, list[i].variant);
                else snprintf(names[n], CL_NAME_MAX, "%s", list[i].name);
                n++;
            }
        free(list);
        byoai_store_close(st);
    }
    pthread_mutex_lock(&c->mu);
    memcpy(c->store_models, names, sizeof names);
    c->n_store_models = n;
    pthread_mutex_unlock(&c->mu);
}

/* ---- connections ---------------------------------------------------------------------------------- */

static void conn_release(byoai_cluster *c, cl_conn *k) {
    pthread_mutex_lock(&c->mu);
    k->refs--;
    pthread_mutex_unlock(&c->mu);
}

static cl_conn *conn_get_locked(cl_peer *p) {
    if (!p || !p->conn || p->conn->dead) return NULL;
    p->conn->refs++;
    return p->conn;
}

static void send_hello_view(byoai_cluster *c, const uint8_t pk[32]);

void cl_announce_now(byoai_cluster *c) {
    uint8_t to[CL_MAX_PEERS][32];
    int n = 0;
    pthread_mutex_lock(&c->mu);
    uint64_t bw = c->self.mem_bw;
    cl_refresh_self_info(c);
    c->self.mem_bw = bw;
    for (int i = 0; i < CL_MAX_PEERS; i++)
        if (cl_peer_usable(&c->peers[i])) memcpy(to[n++], c->peers[i].pk, 32);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < n; i++) send_hello_view(c, to[i]);
}

static void *reader_main(void *arg) {
    cl_conn *k = arg;
    byoai_cluster *c = k->c;
    byoai_error err = {0};
    int rc;
    for (;;) {
        uint8_t *buf;
        size_t len;
        rc = cl_link_recv(k->link, &buf, &len, -1, &err);
        if (rc) break;
        if (c->delay_s > 0) { /* testing: simulated link latency */
            double until = byoai_time_now() + c->delay_s;
            while (byoai_time_now() < until) {
                double left = until - byoai_time_now();
                if (left > 0) usleep((useconds_t)(left * 1e6));
            }
        }
        pthread_mutex_lock(&c->mu);
        cl_peer *p = cl_peer_find(c, k->pk);
        if (p && p->conn == k) {
            p->last_heard = byoai_time_now();
            if (p->state != PEER_LEFT) set_state(p, PEER_ALIVE);
        }
        pthread_mutex_unlock(&c->mu);
        if (len == 0) {
            free(buf);
            continue;
        }
        if (cl_handle(c, k->pk, buf, len, &err) != 0) {
            rc = BYOAI_EFORMAT;
            byoai_error_prefix(&err, "a malformed message");
            break;
        }
    }
    char id[BYOAI_CLUSTER_ID_LEN + 1];
    cl_fingerprint(k->pk, id);
    bool stopping;
    pthread_mutex_lock(&c->mu);
    stopping = c->stopping;
    bool was_current = false;
    k->dead = true;
    cl_peer *p = cl_peer_find(c, k->pk);
    if (p && p->conn == k) {
        was_current = true;
        p->conn = NULL;
        if (p->state == PEER_ALIVE || p->state == PEER_NEW) set_state(p, PEER_SUSPECT);
        p->last_try = 0;
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    cl_link_shutdown(k->link);
    if (!stopping && was_current) {
        if (rc == BYOAI_EAUTH || rc == BYOAI_EFORMAT) {
            __atomic_add_fetch(&c->n_auth_failures, 1, __ATOMIC_RELAXED);
            cl_event(c, BYOAI_LOG_WARN, "link to %.12s dropped: %s", id, err.msg);
        } else {
            cl_event(c, BYOAI_LOG_INFO, "link to %.12s closed: %s", id, err.msg);
        }
    }
    conn_release(c, k);
    return NULL;
}

/* Adopt a link that completed its handshake. Returns 0, or non-zero when
 * the link was refused (and freed). */
static int conn_register(byoai_cluster *c, cl_link *link, const char *remote_host) {
    const cl_cert *cert = cl_link_peer_cert(link);
    const uint8_t *pk = cl_link_peer_pk(link);
    const uint8_t *initiator = cl_link_initiator(link) ? c->id.node_pk : pk;
    cl_conn *k = calloc(1, sizeof *k);
    if (!k) {
        cl_link_free(link);
        return BYOAI_ENOMEM;
    }
    k->c = c;
    k->link = link;
    memcpy(k->pk, pk, 32);
    k->refs = 2; /* the list and the reader */
    cl_link_set_send_timeout(link, c->failure_s > 2 ? c->failure_s : 2);
    pthread_mutex_lock(&c->mu);
    bool gone = c->stopping || __atomic_load_n(&c->left_requested, __ATOMIC_RELAXED);
    cl_peer *p = gone ? NULL : cl_peer_upsert(c, pk);
    if (!p) {
        pthread_mutex_unlock(&c->mu);
        cl_link_free(link);
        free(k);
        return BYOAI_EBUSY;
    }
    cl_conn *old = p->conn && !p->conn->dead ? p->conn : NULL;
    if (old) {
        const uint8_t *old_init = cl_link_initiator(old->link) ? c->id.node_pk : old->pk;
        bool keep_old = memcmp(old_init, initiator, 32) == 0 || memcmp(old_init, initiator, 32) < 0;
        if (keep_old) {
            pthread_mutex_unlock(&c->mu);
            cl_link_free(link);
            free(k);
            return BYOAI_EEXIST;
        }
        old->dead = true;
        cl_link_shutdown(old->link);
    }
    p->cert = *cert;
    p->have_cert = true;
    p->conn = k;
    p->fails = 0;
    p->last_heard = byoai_time_now();
    set_state(p, PEER_ALIVE);
    if (remote_host && *remote_host) snprintf(p->addr, sizeof p->addr, "%s", remote_host);
    if (cl_link_initiator(link)) {
        /* the address we dialled is known good */
    }
    k->next = c->conns;
    c->conns = k;
    if (pthread_create(&k->reader, NULL, reader_main, k) != 0) {
        k->dead = true;
        k->refs--;
        k->joined = true;
        p->conn = NULL;
        pthread_mutex_unlock(&c->mu);
        cl_link_shutdown(link);
        return BYOAI_ENOMEM;
    }
    pthread_cond_broadcast(&c->cond);
    char name[CL_NAME_MAX];
    snprintf(name, sizeof name, "%s", cert->name);
    char id[BYOAI_CLUSTER_ID_LEN + 1];
    memcpy(id, p->id, sizeof id);
    pthread_mutex_unlock(&c->mu);
    cl_event(c, BYOAI_LOG_INFO, "link up with %.12s (%s) at %s", id, name, cl_link_remote(link));
    send_hello_view(c, pk);
    return 0;
}

static void host_of(const char *remote, char *host, size_t cap) {
    snprintf(host, cap, "%s", remote);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
}

int cl_connect_peer(byoai_cluster *c, const uint8_t pk[32], double timeout_s, byoai_error *err) {
    char addr[CL_ADDR_MAX];
    uint16_t port;
    pthread_mutex_lock(&c->mu);
    cl_peer *p = cl_peer_find(c, pk);
    if (!p) {
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ENOTFOUND, "unknown node");
    }
    double deadline = byoai_time_now() + timeout_s;
    while (p->connecting && !c->stopping) { /* someone else is on it: wait for the outcome */
        struct timespec ts;
        double d = byoai_time_now() + 0.05;
        (void)d;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&c->cond, &c->mu, &ts);
        if (byoai_time_now() > deadline) break;
    }
    if (p->conn && !p->conn->dead) {
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    if (p->connecting || !p->port || !p->addr[0] || p->state == PEER_LEFT || c->stopping) {
        bool left = p->state == PEER_LEFT;
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ENET, left ? "the node left the cluster" : "no address known for the node");
    }
    p->connecting = true;
    p->last_try = byoai_time_now();
    snprintf(addr, sizeof addr, "%s", p->addr);
    port = p->port;
    pthread_mutex_unlock(&c->mu);
    cl_link *l = NULL;
    int rc = cl_link_connect(&c->id, addr, port, pk, timeout_s, &l, err);
    if (rc == 0) {
        rc = conn_register(c, l, addr);
        if (rc == BYOAI_EEXIST) rc = 0;
    }
    pthread_mutex_lock(&c->mu);
    p = cl_peer_find(c, pk);
    if (p) {
        p->connecting = false;
        if (rc) {
            p->fails++;
            if (p->state == PEER_SUSPECT && byoai_time_now() - p->state_since > c->failure_s) set_state(p, PEER_DEAD);
            /* refused outright: the process is gone */
            if (p->state == PEER_SUSPECT && err && strstr(err->msg, "refused")) set_state(p, PEER_DEAD);
        }
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- sending ----------------------------------------------------------------------------------- */

int cl_send_linked(byoai_cluster *c, const uint8_t pk[32], const cl_buf *msg) {
    if (cl_is_self(c, pk)) return cl_send(c, pk, msg, NULL);
    pthread_mutex_lock(&c->mu);
    cl_conn *k = conn_get_locked(cl_peer_find(c, pk));
    pthread_mutex_unlock(&c->mu);
    if (!k) return BYOAI_ENET;
    int rc = msg->oom ? BYOAI_ENOMEM : cl_link_send(k->link, msg->data, msg->len, NULL);
    conn_release(c, k);
    return rc;
}

int cl_send(byoai_cluster *c, const uint8_t pk[32], const cl_buf *msg, byoai_error *err) {
    if (msg->oom) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory building a message");
    if (cl_is_self(c, pk)) {
        uint8_t *copy = malloc(msg->len ? msg->len : 1);
        if (!copy) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        memcpy(copy, msg->data, msg->len);
        return cl_handle(c, pk, copy, msg->len, err);
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&c->mu);
        cl_conn *k = conn_get_locked(cl_peer_find(c, pk));
        pthread_mutex_unlock(&c->mu);
        if (k) {
            int rc = cl_link_send(k->link, msg->data, msg->len, err);
            if (rc) {
                pthread_mutex_lock(&c->mu);
                k->dead = true;
                pthread_mutex_unlock(&c->mu);
                cl_link_shutdown(k->link);
            }
            conn_release(c, k);
            return rc;
        }
        if (attempt == 0) {
            int rc = cl_connect_peer(c, pk, c->failure_s < 2 ? c->failure_s : 2, err);
            if (rc) return rc;
        }
    }
    char id[BYOAI_CLUSTER_ID_LEN + 1];
    cl_fingerprint(pk, id);
    return byoai_error_set(err, BYOAI_ENET, "no link to node %.12s", id);
}

static void send_hello_view(byoai_cluster *c, const uint8_t pk[32]) {
    cl_buf h = {0}, v = {0};
    cl_view_entry *e = calloc(CL_MAX_PEERS, sizeof *e);
    uint32_t n = 0;
    pthread_mutex_lock(&c->mu);
    cl_enc_hello(&h, &c->self);
    for (int i = 0; e && i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (!p->used || !p->have_cert || p->state == PEER_LEFT || p->state == PEER_DEAD || !p->port || !p->addr[0])
            continue;
        memcpy(e[n].pk, p->pk, 32);
        snprintf(e[n].addr, sizeof e[n].addr, "%s", p->addr);
        e[n].port = p->port;
        n++;
    }
    pthread_mutex_unlock(&c->mu);
    if (e) cl_enc_view(&v, e, n);
    cl_send_linked(c, pk, &h);
    if (e) cl_send_linked(c, pk, &v);
    free(e);
    cl_buf_free(&h);
    cl_buf_free(&v);
    /* the list of removed members travels with the view, so it reaches every member */
    cl_buf r = {0};
    pthread_mutex_lock(&c->rev_mu);
    if (c->revoked.serial) cl_enc_revoked(&r, &c->revoked);
    pthread_mutex_unlock(&c->rev_mu);
    if (r.len) cl_send_linked(c, pk, &r);
    cl_buf_free(&r);
}

/* ---- removed members ----------------------------------------------------------------------------- */

static const char *peer_state_name(const cl_peer *p) { return p->removed ? "removed" : state_name(p->state); }

static bool node_is_revoked(void *user, const uint8_t pk[32]) {
    byoai_cluster *c = user;
    pthread_mutex_lock(&c->rev_mu);
    bool r = cl_revoked_has(&c->revoked, pk);
    pthread_mutex_unlock(&c->rev_mu);
    return r;
}

/* Under mu: mark the members on the list (and unmark the re-admitted) and
 * take the links of the removed down. */
static void mark_removed_locked(byoai_cluster *c, const cl_revoked *r) {
    for (int i = 0; i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (!p->used) continue;
        bool on = cl_revoked_has(r, p->pk);
        if (p->removed && !on) { /* invited again */
            p->removed = false;
            set_state(p, PEER_NEW);
            continue;
        }
        if (p->removed || !on) continue;
        p->removed = true;
        set_state(p, PEER_LEFT);
        p->left_at = (double)byoai_time_unix();
        if (p->conn) {
            p->conn->dead = true;
            cl_link_shutdown(p->conn->link);
        }
    }
    if (cl_revoked_has(r, c->id.node_pk) && !c->removed) {
        c->removed = true;
        c->left_requested = true; /* no new links; the host process sees byoai_cluster_left() */
        for (cl_conn *k = c->conns; k; k = k->next) cl_link_shutdown(k->link);
    }
    pthread_cond_broadcast(&c->cond);
}

void cl_apply_revoked(byoai_cluster *c, const cl_revoked *r, const uint8_t *from) {
    byoai_error err = {0};
    if (cl_revoked_verify(r, c->id.cluster_pk, &err)) {
        char id[BYOAI_CLUSTER_ID_LEN + 1] = "?";
        if (from) cl_fingerprint(from, id);
        cl_event(c, BYOAI_LOG_WARN, "ignored a list of removed members from %.12s: %s", id, err.msg);
        return;
    }
    pthread_mutex_lock(&c->rev_mu);
    bool newer = r->serial > c->revoked.serial;
    if (newer) c->revoked = *r;
    pthread_mutex_unlock(&c->rev_mu);
    if (!newer) return;
    if (cl_revoked_save(&c->id, r, &err)) cl_event(c, BYOAI_LOG_WARN, "cannot save the list of removed members: %s", err.msg);
    uint8_t (*to)[32] = malloc(CL_MAX_PEERS * sizeof *to);
    int n = 0;
    pthread_mutex_lock(&c->mu);
    bool was_removed = c->removed;
    mark_removed_locked(c, r);
    bool now_removed = c->removed && !was_removed;
    for (int i = 0; to && i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (p->used && !p->removed && cl_peer_usable(p) && (!from || memcmp(p->pk, from, 32))) memcpy(to[n++], p->pk, 32);
    }
    pthread_mutex_unlock(&c->mu);
    cl_event(c, now_removed ? BYOAI_LOG_ERROR : BYOAI_LOG_INFO, "%s (list %llu, %u removed member(s))",
             now_removed ? "this node was removed from the cluster by its admin" : "the list of removed members changed",
             (unsigned long long)r->serial, r->n);
    if (now_removed) n = 0;
    cl_buf b = {0};
    cl_enc_revoked(&b, r);
    for (int i = 0; i < n; i++) cl_send_linked(c, to[i], &b);
    cl_buf_free(&b);
    free(to);
}

int byoai_cluster_remove_member(byoai_cluster *c, const char *node, char removed_id[BYOAI_CLUSTER_ID_LEN + 1],
                                byoai_error *err) {
    size_t len = node ? strlen(node) : 0;
    if (len < 6 || len > BYOAI_CLUSTER_ID_LEN || strspn(node, "0123456789abcdefABCDEF") != len)
        return byoai_error_set(err, BYOAI_EINVAL, "'%s' is not a node id: give at least 6 hex characters of it (see "
                               "`byoai cluster status`)", node ? node : "");
    if (!c->id.admin)
        return byoai_error_set(err, BYOAI_EAUTH, "only the cluster's admin (the node that holds its key) can remove "
                               "members");
    uint8_t id16[16];
    bool found = false;
    pthread_mutex_lock(&c->mu);
    int matches = 0;
    for (int i = 0; i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (!p->used || strncasecmp(p->id, node, len)) continue;
        if (!found) cl_node_id16(p->pk, id16);
        found = true;
        matches++;
    }
    bool self = !strncasecmp(c->id.node_id, node, len);
    pthread_mutex_unlock(&c->mu);
    if (self) return byoai_error_set(err, BYOAI_EINVAL, "'%s' is this node; the admin cannot remove itself", node);
    if (matches > 1) return byoai_error_set(err, BYOAI_EINVAL, "'%s' matches %d members; give more of the id", node, matches);
    if (!found) {
        if (len != BYOAI_CLUSTER_ID_LEN)
            return byoai_error_set(err, BYOAI_ENOTFOUND, "no member known to this node has an id starting '%s'; give "
                                   "the whole id (32 hex characters) to remove a node never seen here", node);
        cl_unhex(node, id16, 16);
    }
    pthread_mutex_lock(&c->rev_mu);
    cl_revoked next = c->revoked;
    pthread_mutex_unlock(&c->rev_mu);
    int rc = cl_revoked_add(&c->id, &next, id16, err);
    if (rc) return rc;
    cl_hex(id16, 16, removed_id);
    /* tell the removed node too (it then stops), then everyone else */
    cl_buf b = {0};
    cl_enc_revoked(&b, &next);
    uint8_t victim[32];
    bool linked = false;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CL_MAX_PEERS && !linked; i++) {
        cl_peer *p = &c->peers[i];
        uint8_t pid[16];
        if (!p->used) continue;
        cl_node_id16(p->pk, pid);
        if (!memcmp(pid, id16, 16) && cl_peer_usable(p)) {
            memcpy(victim, p->pk, 32);
            linked = true;
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (linked) cl_send_linked(c, victim, &b);
    cl_buf_free(&b);
    cl_apply_revoked(c, &next, NULL);
    return 0;
}

/* ---- message dispatch ------------------------------------------------------------------------------ */

int cl_handle(byoai_cluster *c, const uint8_t from[32], uint8_t *buf, size_t len, byoai_error *err) {
    cl_msg m;
    if (cl_msg_decode(buf, len, &m, err) != 0) {
        free(buf);
        return BYOAI_EFORMAT;
    }
    switch (m.type) {
    case CL_MSG_HELLO: {
        pthread_mutex_lock(&c->mu);
        cl_peer *p = cl_peer_find(c, from);
        if (p) {
            p->info = m.u.hello;
            p->have_info = true;
            if (m.u.hello.port) p->port = m.u.hello.port;
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        free(buf);
        break;
    }
    case CL_MSG_VIEW: {
        pthread_mutex_lock(&c->mu);
        for (uint32_t i = 0; i < m.u.view.n; i++) {
            const cl_view_entry *e = &m.u.view.e[i];
            if (cl_is_self(c, e->pk) || cl_peer_find(c, e->pk) || node_is_revoked(c, e->pk)) continue;
            cl_peer *p = cl_peer_upsert(c, e->pk);
            if (!p) break;
            snprintf(p->addr, sizeof p->addr, "%s", e->addr);
            p->port = e->port;
        }
        pthread_mutex_unlock(&c->mu);
        free(buf);
        break;
    }
    case CL_MSG_PING: {
        cl_buf b = {0};
        cl_enc_ping(&b, CL_MSG_PONG, m.u.ping.nonce, m.u.ping.t);
        free(buf);
        cl_send(c, from, &b, NULL);
        cl_buf_free(&b);
        break;
    }
    case CL_MSG_PONG: {
        pthread_mutex_lock(&c->mu);
        cl_peer *p = cl_peer_find(c, from);
        double rtt = (byoai_time_now() - m.u.ping.t) * 1000;
        if (p && rtt >= 0 && rtt < 1e6) p->rtt_ms = p->rtt_ms > 0 ? 0.8 * p->rtt_ms + 0.2 * rtt : rtt;
        pthread_mutex_unlock(&c->mu);
        free(buf);
        break;
    }
    case CL_MSG_LEAVE: {
        pthread_mutex_lock(&c->mu);
        cl_peer *p = cl_peer_find(c, from);
        cl_conn *k = NULL;
        char id[BYOAI_CLUSTER_ID_LEN + 1] = "";
        if (p) {
            set_state(p, PEER_LEFT);
            p->left_at = (double)byoai_time_unix();
            k = conn_get_locked(p);
            memcpy(id, p->id, sizeof id);
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        free(buf);
        if (k) {
            cl_link_shutdown(k->link);
            conn_release(c, k);
        }
        if (id[0]) cl_event(c, BYOAI_LOG_INFO, "node %.12s left the cluster", id);
        break;
    }
    case CL_MSG_LOAD:
    case CL_MSG_FWD:
    case CL_MSG_UNLOAD:
        cl_stage_enqueue(c, from, buf, len, &m);
        break;
    case CL_MSG_REVOKED: {
        cl_revoked *r = malloc(sizeof *r);
        if (r && cl_revoked_decode(m.u.revoked.data, m.u.revoked.len, r, NULL) == 0) cl_apply_revoked(c, r, from);
        free(r);
        free(buf);
        break;
    }
    case CL_MSG_HEADER_REQ: {
        char model[CL_NAME_MAX];
        snprintf(model, sizeof model, "%s", m.u.model);
        free(buf);
        cl_serve_header_req(c, from, model);
        break;
    }
    default:
        cl_coord_on_message(c, from, buf, len, &m);
        break;
    }
    return 0;
}

/* ---- the listener ------------------------------------------------------------------------------------ */

typedef struct {
    int fd;
    char remote[96];
} accept_job;

static void handshake_job(byoai_cluster *c, void *arg) {
    accept_job *j = arg;
    byoai_error err = {0};
    char magic[CL_MAGIC_LEN];
    int fd = j->fd;
    if (cl_read_full(fd, magic, sizeof magic, byoai_time_now() + HANDSHAKE_TIMEOUT, &err) != 0) {
        close(fd);
        free(j);
        return;
    }
    if (!memcmp(magic, CL_LINK_MAGIC, CL_MAGIC_LEN)) {
        cl_link *l;
        if (cl_link_accept(&c->id, fd, HANDSHAKE_TIMEOUT, &l, &err) == 0) {
            char host[96];
            host_of(j->remote, host, sizeof host);
            conn_register(c, l, host);
        } else {
            __atomic_add_fetch(&c->n_handshake_failures, 1, __ATOMIC_RELAXED);
            cl_event(c, BYOAI_LOG_WARN, "%s", err.msg);
        }
    } else if (!memcmp(magic, CL_JOIN_MAGIC, CL_MAGIC_LEN) && c->id.admin) {
        cl_cert issued;
        if (cl_join_serve(&c->id, fd, j->remote, HANDSHAKE_TIMEOUT * 2, &issued, &err) == 0) {
            char id[BYOAI_CLUSTER_ID_LEN + 1];
            cl_fingerprint(issued.node_pk, id);
            cl_event(c, BYOAI_LOG_INFO, "node %.12s (%s) joined the cluster from %s", id, issued.name, j->remote);
            if (node_is_revoked(c, issued.node_pk)) { /* a removed machine, invited again */
                uint8_t id16[16];
                cl_node_id16(issued.node_pk, id16);
                pthread_mutex_lock(&c->rev_mu);
                cl_revoked next = c->revoked;
                pthread_mutex_unlock(&c->rev_mu);
                if (cl_revoked_readmit(&c->id, &next, id16, &err) == 0) cl_apply_revoked(c, &next, NULL);
                else cl_event(c, BYOAI_LOG_WARN, "cannot re-admit node %.12s: %s", id, err.msg);
            }
        } else {
            cl_event(c, BYOAI_LOG_WARN, "refused a join from %s: %s", j->remote, err.msg);
        }
        close(fd);
    } else {
        __atomic_add_fetch(&c->n_handshake_failures, 1, __ATOMIC_RELAXED);
        cl_event(c, BYOAI_LOG_WARN, "refused a connection from %s: not the byoai link protocol", j->remote);
        close(fd);
    }
    free(j);
}

static void *listener_main(void *arg) {
    byoai_cluster *c = arg;
    for (;;) {
        struct pollfd p[2] = {{c->listen_fd, POLLIN, 0}, {c->wake_pipe[0], POLLIN, 0}};
        int r = poll(p, 2, 1000);
        if (c->stopping) break;
        if (r <= 0 || !(p[0].revents & POLLIN)) continue;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(c->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) continue;
        accept_job *j = calloc(1, sizeof *j);
        if (!j) {
            close(fd);
            continue;
        }
        j->fd = fd;
        char h[INET6_ADDRSTRLEN] = "?";
        uint16_t port = 0;
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, h, sizeof h);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, h, sizeof h);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(j->remote, sizeof j->remote, "%s:%u", h, port);
        pthread_mutex_lock(&c->mu);
        bool ok = c->n_helpers < 48 && spawn_locked(c, handshake_job, j);
        pthread_mutex_unlock(&c->mu);
        if (!ok) {
            close(fd);
            free(j);
        }
    }
    return NULL;
}

/* ---- maintenance: heartbeats, failure detection, reconnects ---------------------------------------- */

typedef struct {
    uint8_t pk[32];
} connect_job;

static void connect_job_run(byoai_cluster *c, void *arg) {
    connect_job *j = arg;
    cl_connect_peer(c, j->pk, c->failure_s < 2 ? c->failure_s : 2, NULL);
    free(j);
}

typedef struct {
    int target;
} target_job;

static void target_job_run(byoai_cluster *c, void *arg) {
    target_job *j = arg;
    char host[CL_ADDR_MAX];
    uint16_t port;
    pthread_mutex_lock(&c->mu);
    cl_target *t = &c->targets[j->target];
    snprintf(host, sizeof host, "%s", t->host);
    port = t->port;
    pthread_mutex_unlock(&c->mu);
    cl_link *l = NULL;
    byoai_error err = {0};
    int rc = cl_link_connect(&c->id, host, port, NULL, c->failure_s < 2 ? 2 : c->failure_s, &l, &err);
    if (rc == 0) {
        uint8_t pk[32];
        memcpy(pk, cl_link_peer_pk(l), 32);
        pthread_mutex_lock(&c->mu);
        t->have_pk = true;
        memcpy(t->pk, pk, 32);
        cl_peer *p = cl_peer_upsert(c, pk);
        if (p) {
            snprintf(p->addr, sizeof p->addr, "%s", host);
            p->port = port;
        }
        pthread_mutex_unlock(&c->mu);
        conn_register(c, l, host);
    } else if (rc == BYOAI_EAUTH || rc == BYOAI_EFORMAT) {
        cl_event(c, BYOAI_LOG_WARN, "static peer %s:%u: %s", host, port, err.msg);
    }
    pthread_mutex_lock(&c->mu);
    t->connecting = false;
    t->fails = rc ? t->fails + 1 : 0;
    pthread_mutex_unlock(&c->mu);
    free(j);
}

static double backoff(int fails) {
    double b = 0.25;
    for (int i = 0; i < fails && b < 5; i++) b *= 2;
    return b > 5 ? 5 : b;
}

static void reap_conns(byoai_cluster *c, bool all) {
    for (;;) {
        cl_conn *victim = NULL;
        pthread_mutex_lock(&c->mu);
        for (cl_conn **pp = &c->conns; *pp; pp = &(*pp)->next) {
            cl_conn *k = *pp;
            if (k->dead && k->refs <= 1 && (all || true)) {
                *pp = k->next;
                victim = k;
                break;
            }
        }
        pthread_mutex_unlock(&c->mu);
        if (!victim) break;
        if (!victim->joined) pthread_join(victim->reader, NULL);
        cl_link_free(victim->link);
        free(victim);
    }
}

static void *maint_main(void *arg) {
    byoai_cluster *c = arg;
    double last_ping = 0, last_gossip = byoai_time_now(), last_store = byoai_time_now();
    char last_sig[256] = "";
    while (!c->stopping) {
        double tick = c->heartbeat_s / 4;
        if (tick > 0.25) tick = 0.25;
        usleep((useconds_t)(tick * 1e6));
        if (c->stopping) break;
        double now = byoai_time_now();
        if (now - last_store > 30) {
            refresh_store_models(c);
            last_store = now;
        }
        uint8_t ping_to[CL_MAX_PEERS][32];
        int n_ping = 0;
        bool gossip = now - last_gossip > 5 * c->heartbeat_s;
        if (__atomic_load_n(&c->left_requested, __ATOMIC_RELAXED)) { /* left: talk to nobody */
            reap_conns(c, false);
            continue;
        }
        pthread_mutex_lock(&c->mu);
        /* has our own info changed (a deployment appeared)? then tell everyone now */
        char sig[256] = "";
        for (cl_dep *d = c->deps; d; d = d->next)
            if (d->ready && !d->removing) strncat(sig, d->name, sizeof sig - strlen(sig) - 2), strcat(sig, ",");
        if (strcmp(sig, last_sig)) {
            gossip = true;
            snprintf(last_sig, sizeof last_sig, "%s", sig);
        }
        if (gossip) {
            uint64_t bw = c->self.mem_bw;
            cl_refresh_self_info(c);
            c->self.mem_bw = bw;
        }
        bool ping = now - last_ping >= c->heartbeat_s;
        if (ping) last_ping = now;
        for (int i = 0; i < CL_MAX_PEERS; i++) {
            cl_peer *p = &c->peers[i];
            if (!p->used) continue;
            if (p->conn && !p->conn->dead) {
                if (now - p->last_heard > c->failure_s) {
                    set_state(p, PEER_DEAD);
                    p->conn->dead = true;
                    cl_link_shutdown(p->conn->link);
                    cl_conn *k = p->conn;
                    p->conn = NULL;
                    (void)k;
                    char id[BYOAI_CLUSTER_ID_LEN + 1];
                    memcpy(id, p->id, sizeof id);
                    double silent = now - p->last_heard;
                    pthread_cond_broadcast(&c->cond);
                    pthread_mutex_unlock(&c->mu);
                    cl_event(c, BYOAI_LOG_WARN, "no heartbeat from %.12s for %.1f s: declaring it dead", id, silent);
                    pthread_mutex_lock(&c->mu);
                    continue;
                }
                if (ping || gossip) memcpy(ping_to[n_ping++], p->pk, 32);
                continue;
            }
            if (p->state == PEER_SUSPECT && now - p->state_since > c->failure_s) {
                set_state(p, PEER_DEAD);
                pthread_cond_broadcast(&c->cond);
            }
            if (p->state == PEER_LEFT || p->connecting || !p->port || !p->addr[0]) continue;
            bool initiate = memcmp(c->id.node_pk, p->pk, 32) < 0 || now - p->first_seen > 2 * c->heartbeat_s ||
                            p->state != PEER_NEW;
            if (!initiate || now - p->last_try < backoff(p->fails)) continue;
            connect_job *j = malloc(sizeof *j);
            if (!j) continue;
            memcpy(j->pk, p->pk, 32);
            p->last_try = now;
            if (!spawn_locked(c, connect_job_run, j)) free(j);
        }
        for (int i = 0; i < c->n_targets; i++) {
            cl_target *t = &c->targets[i];
            if (t->connecting || now - t->last_try < backoff(t->fails)) continue;
            if (t->have_pk) {
                cl_peer *p = cl_peer_find(c, t->pk);
                if (p && (p->conn || p->connecting || p->state == PEER_LEFT)) continue;
            }
            target_job *j = malloc(sizeof *j);
            if (!j) continue;
            j->target = i;
            t->connecting = true;
            t->last_try = now;
            if (!spawn_locked(c, target_job_run, j)) {
                t->connecting = false;
                free(j);
            }
        }
        pthread_mutex_unlock(&c->mu);
        for (int i = 0; i < n_ping; i++) {
            if (gossip) send_hello_view(c, ping_to[i]);
            cl_buf b = {0};
            cl_enc_ping(&b, CL_MSG_PING, cl_random_u64(), byoai_time_now());
            cl_send_linked(c, ping_to[i], &b); /* heartbeats never wait for a connect */
            cl_buf_free(&b);
        }
        if (gossip) last_gossip = now;
        reap_conns(c, false);
    }
    return NULL;
}

/* ---- start and stop --------------------------------------------------------------------------------- */

static int listen_on(byoai_cluster *c, uint16_t port, byoai_error *err) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, c->bind_addr, &a.sin_addr) != 1)
        return byoai_error_set(err, BYOAI_EINVAL, "bind address '%s' is not an IPv4 address", c->bind_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        return byoai_error_set(err, BYOAI_EIO, "cannot listen on %s:%u: %s", c->bind_addr, port, strerror(e));
    }
    socklen_t sl = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &sl);
    c->port = ntohs(a.sin_port);
    c->listen_fd = fd;
    return 0;
}

static void free_cluster(byoai_cluster *c) {
    for (size_t i = 0; i < c->n_model_files; i++) free(c->model_files[i]);
    free(c->model_files);
    cl_identity_wipe(&c->id);
    pthread_mutex_destroy(&c->rev_mu);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
}

int byoai_cluster_start(const byoai_cluster_config *cfg, byoai_cluster **out, byoai_error *err) {
    *out = NULL;
    byoai_cluster *c = calloc(1, sizeof *c);
    if (!c) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->rev_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    c->listen_fd = c->udp_fd = c->ctl_fd = -1;
    c->wake_pipe[0] = c->wake_pipe[1] = -1;
    int rc = cl_identity_load(cfg->home, &c->id, err);
    if (!rc && !c->id.member)
        rc = byoai_error_set(err, BYOAI_EINVAL, "this node is not in a cluster: run `byoai cluster create NAME` or "
                             "`byoai cluster join CODE` first");
    if (rc) {
        free_cluster(c);
        return rc;
    }
    uint64_t now = byoai_time_unix();
    if ((rc = cl_cert_verify(&c->id.cert, c->id.cluster_pk, now, err))) {
        free_cluster(c);
        return byoai_error_prefix(err, "this node's own certificate");
    }
    byoai_error rev_err = {0};
    if (cl_revoked_load(&c->id, &c->revoked, &rev_err))
        byoai_log(BYOAI_LOG_WARN, "cluster: %s; starting without it", rev_err.msg);
    if (cl_revoked_has(&c->revoked, c->id.node_pk)) {
        byoai_error_set(err, BYOAI_EAUTH, "this node was removed from cluster '%s' by its admin; run `byoai cluster "
                        "leave` and ask for a new invite", c->id.cluster_name);
        free_cluster(c);
        return BYOAI_EAUTH;
    }
    c->id.is_revoked = node_is_revoked;
    c->id.revoked_user = c;
    snprintf(c->bind_addr, sizeof c->bind_addr, "%s", cfg->bind_addr && *cfg->bind_addr ? cfg->bind_addr : "0.0.0.0");
    c->bind_any = !strcmp(c->bind_addr, "0.0.0.0");
    c->bind_loopback = !strncmp(c->bind_addr, "127.", 4);
    c->disc_port = cfg->discovery_port ? cfg->discovery_port : BYOAI_CLUSTER_DEFAULT_DISCOVERY_PORT;
    c->no_discovery = cfg->no_discovery;
    c->memory = cfg->memory;
    c->heartbeat_s = cfg->heartbeat_s > 0 ? cfg->heartbeat_s : 1.0;
    c->failure_s = cfg->failure_timeout_s > 0 ? cfg->failure_timeout_s : 5.0;
    if (c->failure_s < 2 * c->heartbeat_s) c->failure_s = 2 * c->heartbeat_s;
    c->step_s = cfg->step_timeout_s > 0 ? cfg->step_timeout_s : 30.0;
    c->load_s = cfg->load_timeout_s > 0 ? cfg->load_timeout_s : 600.0;
    c->delay_s = cfg->test_link_delay_ms > 0 ? cfg->test_link_delay_ms / 1000.0 : 0;
    c->n_threads = cfg->n_threads;
    c->measure_bw = cfg->measure_bandwidth;
    if (cfg->n_model_files) {
        c->model_files = calloc(cfg->n_model_files, sizeof(char *));
        if (!c->model_files) {
            free_cluster(c);
            return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < cfg->n_model_files; i++) {
            c->model_files[i] = strdup(cfg->model_files[i]);
            if (c->model_files[i]) c->n_model_files++;
        }
    }
    for (size_t i = 0; i < cfg->n_peers + (size_t)c->id.n_peers && c->n_targets < 32; i++) {
        const char *s = i < cfg->n_peers ? cfg->peers[i] : c->id.peers[i - cfg->n_peers];
        cl_target *t = &c->targets[c->n_targets];
        byoai_error e2;
        if (cl_parse_hostport(s, t->host, sizeof t->host, &t->port, &e2)) {
            if (i < cfg->n_peers) {
                free_cluster(c);
                return byoai_error_set(err, BYOAI_EINVAL, "--peer %s: %s", s, e2.msg);
            }
            continue;
        }
        c->n_targets++;
    }
    if (pipe2(c->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        free_cluster(c);
        return byoai_error_set(err, BYOAI_EIO, "pipe: %s", strerror(errno));
    }
    if ((rc = listen_on(c, cfg->port, err))) {
        close(c->wake_pipe[0]);
        close(c->wake_pipe[1]);
        free_cluster(c);
        return rc;
    }
    if (c->measure_bw) c->self.mem_bw = (uint64_t)byoai_hw_read_bandwidth(c->n_threads > 0 ? c->n_threads : byoai_cpu_count(), 64u << 20, 2);
    uint64_t bw = c->self.mem_bw;
    refresh_store_models(c);
    cl_refresh_self_info(c);
    c->self.mem_bw = bw;
    pthread_create(&c->listener, NULL, listener_main, c);
    pthread_create(&c->maint, NULL, maint_main, c);
    if (!c->no_discovery && (rc = cl_discovery_start(c, err))) {
        byoai_cluster_stop(c);
        return rc;
    }
    if ((rc = cl_control_start(c, err))) {
        byoai_cluster_stop(c);
        return rc;
    }
    cl_event(c, BYOAI_LOG_INFO, "node %.12s (%s) of cluster '%s' listening on %s:%u", c->id.node_id, c->id.node_name,
             c->id.cluster_name, c->bind_addr, c->port);
    *out = c;
    return 0;
}

void byoai_cluster_announce_leave(byoai_cluster *c) {
    uint8_t to[CL_MAX_PEERS][32];
    int n = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CL_MAX_PEERS; i++)
        if (c->peers[i].used && c->peers[i].conn && !c->peers[i].conn->dead) memcpy(to[n++], c->peers[i].pk, 32);
    pthread_mutex_unlock(&c->mu);
    cl_buf b = {0};
    cl_enc_leave(&b);
    for (int i = 0; i < n; i++) cl_send(c, to[i], &b, NULL);
    cl_buf_free(&b);
}

void byoai_cluster_stop(byoai_cluster *c) {
    if (!c) return;
    cl_control_stop(c);
    cl_coord_stop_all(c); /* stages elsewhere unload while the links are still up */
    byoai_cluster_announce_leave(c);
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    if (c->wake_pipe[1] >= 0) {
        ssize_t w = write(c->wake_pipe[1], "x", 1);
        (void)w;
    }
    cl_discovery_stop(c);
    pthread_join(c->listener, NULL);
    pthread_join(c->maint, NULL);
    cl_stages_stop_all(c);
    /* close every link: readers exit */
    pthread_mutex_lock(&c->mu);
    for (cl_conn *k = c->conns; k; k = k->next) {
        k->dead = true;
        cl_link_shutdown(k->link);
    }
    for (int i = 0; i < CL_MAX_PEERS; i++) c->peers[i].conn = NULL;
    /* wait for helper threads (handshakes, connects, served completions) */
    double deadline = byoai_time_now() + 20;
    while (n_helpers_of(c) > 0 && byoai_time_now() < deadline) {
        for (cl_conn *k = c->conns; k; k = k->next) cl_link_shutdown(k->link);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&c->cond, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    /* every reader drops its reference when it exits */
    for (;;) {
        reap_conns(c, true);
        pthread_mutex_lock(&c->mu);
        bool empty = c->conns == NULL;
        pthread_mutex_unlock(&c->mu);
        if (empty) break;
        usleep(2000);
    }
    if (c->listen_fd >= 0) close(c->listen_fd);
    close(c->wake_pipe[0]);
    close(c->wake_pipe[1]);
    free_cluster(c);
}

uint16_t byoai_cluster_port(const byoai_cluster *c) { return c->port; }
const char *byoai_cluster_node_id(const byoai_cluster *c) { return c->id.node_id; }

int byoai_cluster_alive_count(byoai_cluster *c) {
    int n = 1;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CL_MAX_PEERS; i++)
        if (cl_peer_usable(&c->peers[i])) n++;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- status ------------------------------------------------------------------------------------------ */

static json_t *info_json(const cl_node_info *i) {
    json_t *models = json_array(), *dep = json_array(), *addrs = json_array();
    for (int k = 0; k < i->n_models; k++) json_array_append_new(models, json_string(i->models[k]));
    for (int k = 0; k < i->n_deployed; k++) json_array_append_new(dep, json_string(i->deployed[k]));
    for (int k = 0; k < i->n_addrs; k++) json_array_append_new(addrs, json_string(i->addrs[k]));
    return json_pack("{s:s,s:I,s:I,s:I,s:i,s:o,s:o,s:o}", "version", i->version, "memory_total", (json_int_t)i->mem_total,
                     "memory_offered", (json_int_t)i->mem_offered, "memory_bandwidth", (json_int_t)i->mem_bw, "cores",
                     (int)i->cores, "addresses", addrs, "models", models, "deployed", dep);
}

int byoai_cluster_status_json(byoai_cluster *c, char **out, byoai_error *err) {
    *out = NULL;
    json_t *members = json_array(), *events = json_array(), *deps = json_array(), *stages = json_array();
    pthread_mutex_lock(&c->mu);
    json_t *me = json_pack("{s:s,s:s,s:b,s:s,s:s,s:i}", "node_id", c->id.node_id, "name", c->id.node_name, "self", 1,
                           "state", "alive", "address", c->bind_addr, "port", (int)c->port);
    json_object_set_new(me, "info", info_json(&c->self));
    json_array_append_new(members, me);
    double now = byoai_time_now();
    int alive = 1;
    for (int i = 0; i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (!p->used || !p->have_cert) continue;
        cl_link_stats st = {0};
        if (p->conn && !p->conn->dead) cl_link_get_stats(p->conn->link, &st);
        bool usable = cl_peer_usable(p);
        if (usable) alive++;
        json_t *m = json_pack("{s:s,s:s,s:b,s:s,s:s,s:i,s:b,s:f,s:f,s:{s:I,s:I,s:I,s:I}}", "node_id", p->id, "name",
                              p->cert.name, "self", 0, "state", usable ? "alive" : peer_state_name(p), "address",
                              p->addr, "port", (int)p->port, "linked", p->conn && !p->conn->dead, "rtt_ms", p->rtt_ms,
                              "last_seen_s", p->last_heard > 0 ? now - p->last_heard : -1.0, "link", "bytes_tx",
                              (json_int_t)st.bytes_tx, "bytes_rx", (json_int_t)st.bytes_rx, "frames_tx",
                              (json_int_t)st.frames_tx, "frames_rx", (json_int_t)st.frames_rx);
        if (p->have_info) json_object_set_new(m, "info", info_json(&p->info));
        json_array_append_new(members, m);
    }
    for (int k = 0; k < c->n_events; k++) {
        int i = (c->event_head + k) % CL_EVENTS;
        json_array_append_new(events, json_pack("{s:I,s:s}", "time", (json_int_t)c->event_t[i], "text", c->events[i]));
    }
    for (cl_stage *s = c->stages; s; s = s->next) {
        char cid[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(s->coord_pk, cid);
        json_array_append_new(stages, json_pack("{s:s,s:I,s:i,s:i,s:i,s:b,s:s,s:I,s:f,s:I,s:I}", "model", s->model_name,
                                                "deployment", (json_int_t)s->dep_id, "epoch", (int)s->epoch,
                                                "layer_begin", (int)s->begin, "layer_end", (int)s->end, "loaded",
                                                s->loaded, "coordinator", cid, "fetched_bytes",
                                                (json_int_t)s->fetched_bytes, "load_seconds", s->load_s, "steps",
                                                (json_int_t)s->steps, "rows", (json_int_t)s->rows));
    }
    cl_coord_status(c, deps);
    json_t *removed = json_array();
    pthread_mutex_lock(&c->rev_mu);
    for (uint32_t i = 0; i < c->revoked.n; i++) {
        char hex[BYOAI_CLUSTER_ID_LEN + 1];
        cl_hex(c->revoked.ids[i], 16, hex);
        json_array_append_new(removed, json_string(hex));
    }
    pthread_mutex_unlock(&c->rev_mu);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:b,s:i,s:i,s:i,s:I,s:I,s:o,s:o,s:o,s:o}", "node_id", c->id.node_id, "name",
                          c->id.node_name, "cluster_id", c->id.cluster_id, "cluster_name", c->id.cluster_name, "admin",
                          c->id.admin, "port", (int)c->port, "discovery_port", c->no_discovery ? 0 : (int)c->disc_port,
                          "alive", alive, "handshake_failures", (json_int_t)c->n_handshake_failures, "auth_failures",
                          (json_int_t)c->n_auth_failures, "members", members, "stages", stages, "deployments", deps,
                          "events", events);
    if (j) {
        json_object_set_new(j, "removed", json_boolean(c->removed)); /* this node was removed by the admin */
        json_object_set_new(j, "removed_members", removed);
    } else json_decref(removed);
    pthread_mutex_unlock(&c->mu);
    *out = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!*out) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    return 0;
}
