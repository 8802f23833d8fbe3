/*
 * Removed members on a running node: the signed list (revoke.c) is adopted
 * when newer, saved, passed on, and its members' links dropped; the admin
 * removes a member. Also the memory of first handshake messages per node
 * (a replayed one is refused).
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

/* ---- removed members ----------------------------------------------------------------------------- */

bool cl_node_is_revoked(void *user, const uint8_t pk[32]) {
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
            cl_peer_set_state(p, PEER_NEW);
            continue;
        }
        if (p->removed || !on) continue;
        p->removed = true;
        cl_peer_set_state(p, PEER_LEFT);
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


/* ---- first handshake messages ------------------------------------------------------------------ */

bool cl_node_m1_fresh(void *user, const uint8_t pk[32], uint64_t ts) {
    byoai_cluster *c = user;
    int n = (int)(sizeof c->m1_seen / sizeof c->m1_seen[0]);
    pthread_mutex_lock(&c->rev_mu);
    int slot = -1, oldest = 0;
    for (int i = 0; i < n; i++) {
        if (c->m1_seen[i].seen > 0 && !memcmp(c->m1_seen[i].pk, pk, 32)) {
            slot = i;
            break;
        }
        if (c->m1_seen[i].seen < c->m1_seen[oldest].seen) oldest = i;
    }
    bool fresh = slot < 0 || ts > c->m1_seen[slot].ts;
    if (fresh) {
        if (slot < 0) slot = oldest; /* a node not seen before (or the longest ago) */
        memcpy(c->m1_seen[slot].pk, pk, 32);
        c->m1_seen[slot].ts = ts;
        c->m1_seen[slot].seen = byoai_time_now();
    }
    pthread_mutex_unlock(&c->rev_mu);
    return fresh;
}
