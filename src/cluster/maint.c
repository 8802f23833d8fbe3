/*
 * Maintenance: heartbeats every heartbeat_s, a member silent for
 * failure_timeout_s declared dead and its link closed, reconnects with
 * backoff (the member with the lower key connects first; the other waits
 * two heartbeats before trying too), static peers, the member list gossiped
 * every few heartbeats or when this node's deployments change, and closed
 * links reaped.
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

#include "cluster/node_internal.h"

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
    /* the first message goes to the node's key when it is known (from the
     * join, or an earlier link), else to the cluster key (handshake.c) */
    uint8_t want[32];
    bool have_pk = t->have_pk;
    memcpy(want, t->pk, 32);
    pthread_mutex_unlock(&c->mu);
    cl_link *l = NULL;
    byoai_error err = {0};
    int rc = cl_link_connect(&c->id, host, port, have_pk ? want : NULL, c->failure_s < 2 ? 2 : c->failure_s, &l, &err);
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
        cl_conn_register(c, l, host);
    } else if (rc == BYOAI_EAUTH || rc == BYOAI_EFORMAT) {
        cl_event(c, BYOAI_LOG_WARN, "static peer %s:%u: %s", host, port, err.msg);
    }
    pthread_mutex_lock(&c->mu);
    if (rc == BYOAI_EAUTH && have_pk) t->have_pk = false; /* another node there now? ask by the cluster key next */
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

void cl_reap_conns(byoai_cluster *c, bool all) {
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

void *cl_maint_main(void *arg) {
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
            cl_refresh_store_models(c);
            last_store = now;
        }
        uint8_t ping_to[CL_MAX_PEERS][32];
        int n_ping = 0;
        bool gossip = now - last_gossip > 5 * c->heartbeat_s;
        if (__atomic_load_n(&c->left_requested, __ATOMIC_RELAXED)) { /* left: talk to nobody */
            cl_reap_conns(c, false);
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
                    cl_peer_set_state(p, PEER_DEAD);
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
                cl_peer_set_state(p, PEER_DEAD);
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
            if (!cl_spawn_locked(c, connect_job_run, j)) free(j);
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
            if (!cl_spawn_locked(c, target_job_run, j)) {
                t->connecting = false;
                free(j);
            }
        }
        pthread_mutex_unlock(&c->mu);
        for (int i = 0; i < n_ping; i++) {
            if (gossip) cl_send_hello_view(c, ping_to[i]);
            cl_buf b = {0};
            cl_enc_ping(&b, CL_MSG_PING, cl_random_u64(), byoai_time_now());
            cl_send_linked(c, ping_to[i], &b); /* heartbeats never wait for a connect */
            cl_buf_free(&b);
        }
        if (gossip) last_gossip = now;
        cl_takeover_tick(c);      /* a lost coordinator whose deployment this node takes over, a resume */
        cl_coord_check_stages(c); /* a lost stage of a deployment this node coordinates */
        cl_reap_conns(c, false);
    }
    return NULL;
}

