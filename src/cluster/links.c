/*
 * The node's links: one per member, each with a reader thread that hands
 * every message to the dispatcher; adopting a link that finished its
 * handshake (when both ends connected at once, both keep the link whose
 * initiator has the lower key, so they agree without talking), connecting
 * to a member, sending, and the HELLO/VIEW gossip every link starts with.
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

/* ---- connections ---------------------------------------------------------------------------------- */

void cl_conn_release(byoai_cluster *c, cl_conn *k) {
    pthread_mutex_lock(&c->mu);
    k->refs--;
    pthread_mutex_unlock(&c->mu);
}

cl_conn *cl_conn_get_locked(cl_peer *p) {
    if (!p || !p->conn || p->conn->dead) return NULL;
    p->conn->refs++;
    return p->conn;
}

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
    for (int i = 0; i < n; i++) cl_send_hello_view(c, to[i]);
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
            if (p->state != PEER_LEFT) cl_peer_set_state(p, PEER_ALIVE);
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
        if (p->state == PEER_ALIVE || p->state == PEER_NEW) cl_peer_set_state(p, PEER_SUSPECT);
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
    cl_conn_release(c, k);
    return NULL;
}

/* Adopt a link that completed its handshake. Returns 0, or non-zero when
 * the link was refused (and freed). */
int cl_conn_register(byoai_cluster *c, cl_link *link, const char *remote_host) {
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
    p->link_gen++;
    p->fails = 0;
    p->last_heard = byoai_time_now();
    cl_peer_set_state(p, PEER_ALIVE);
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
    cl_send_hello_view(c, pk);
    cl_records_send_all(c, pk); /* the deployments this node knows of */
    return 0;
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
        rc = cl_conn_register(c, l, addr);
        if (rc == BYOAI_EEXIST) rc = 0;
    }
    pthread_mutex_lock(&c->mu);
    p = cl_peer_find(c, pk);
    if (p) {
        p->connecting = false;
        if (rc) {
            p->fails++;
            if (p->state == PEER_SUSPECT && byoai_time_now() - p->state_since > c->failure_s) cl_peer_set_state(p, PEER_DEAD);
            /* refused outright: the process is gone */
            if (p->state == PEER_SUSPECT && err && strstr(err->msg, "refused")) cl_peer_set_state(p, PEER_DEAD);
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
    cl_conn *k = cl_conn_get_locked(cl_peer_find(c, pk));
    pthread_mutex_unlock(&c->mu);
    if (!k) return BYOAI_ENET;
    int rc = msg->oom ? BYOAI_ENOMEM : cl_link_send(k->link, msg->data, msg->len, NULL);
    cl_conn_release(c, k);
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
        cl_conn *k = cl_conn_get_locked(cl_peer_find(c, pk));
        pthread_mutex_unlock(&c->mu);
        if (k) {
            int rc = cl_link_send(k->link, msg->data, msg->len, err);
            if (rc) {
                pthread_mutex_lock(&c->mu);
                k->dead = true;
                pthread_mutex_unlock(&c->mu);
                cl_link_shutdown(k->link);
            }
            cl_conn_release(c, k);
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

void cl_send_hello_view(byoai_cluster *c, const uint8_t pk[32]) {
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
            if (cl_is_self(c, e->pk) || cl_peer_find(c, e->pk) || cl_node_is_revoked(c, e->pk)) continue;
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
            cl_peer_set_state(p, PEER_LEFT);
            p->left_at = (double)byoai_time_unix();
            k = cl_conn_get_locked(p);
            memcpy(id, p->id, sizeof id);
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        free(buf);
        if (k) {
            cl_link_shutdown(k->link);
            cl_conn_release(c, k);
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

