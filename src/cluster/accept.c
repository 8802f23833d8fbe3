/*
 * The listener: accepted connections until their first message has
 * arrived and authenticated.
 *
 * One thread owns every connection that has not yet sent a whole first
 * message: the sockets are non-blocking and read as bytes arrive (poll),
 * each with a deadline counted from accept, so a silent or slow connection
 * costs a table entry, never a thread, and stopping the node closes them
 * all at once. At most PENDING_PER_ADDR such connections per source address
 * and PENDING_MAX in all: a new one beyond that closes the oldest (of that
 * address, then of all), so a flood of connections that say nothing ages
 * out in a moment instead of filling the table, while a member that
 * connects from the same address sends its first message at once and gets
 * through. Only a first message that authenticates (handshake.c) earns a
 * thread for the rest of the handshake; everything else is closed without a
 * word. Refusals are logged, aggregated per reason so that a flood does not
 * flood the log.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/node_internal.h"

#define PENDING_MAX 256
#define PENDING_PER_ADDR 16
#define FIRST_TIMEOUT 5.0      /* seconds from accept for the whole first message */
#define HANDSHAKE_TIMEOUT 5.0  /* for the rest of it */
#define AUTHED_MAX 32          /* handshakes past an authenticated first message, at once */
#define JOINS_MAX 4
#define ACCEPTS_PER_ROUND 64   /* new connections per poll round: reads of those already there go first */
#define REPORT_EVERY 10.0

typedef struct pending {
    int fd;                    /* -1: free */
    uint32_t addr;             /* IPv4 source, network order */
    char remote[64];
    double t_accept;
    size_t have;
    uint8_t buf[CL_HS_M1_MAX];
} pending;

enum { WHY_BAD, WHY_OLD, WHY_AUTH, WHY_SILENT, WHY_CROWD, WHY_BUSY, N_WHY };

#define N_REASONS 16

/* refusals with one reason since its last report: the first is logged at
 * once, the ones after it in one line every REPORT_EVERY seconds */
typedef struct reason {
    char msg[200];
    uint64_t n;
    char last_remote[64];
    double last_report;
    double last_seen;
} reason;

typedef struct listener {
    byoai_cluster *c;
    pending *p;                /* [PENDING_MAX] */
    reason r[N_REASONS];
} listener;

static const char *why_text[N_WHY] = {
    "not the byoai link protocol",
    "an older byoai (link protocol 1): upgrade it",
    "the first message did not authenticate",
    "nothing sent within 5 s",
    "too many connections at once from one address",
    "too many handshakes at once",
};

static void report(listener *L, int why, const char *remote, const char *msg) {
    byoai_cluster *c = L->c;
    if (why == WHY_SILENT || why == WHY_CROWD) __atomic_add_fetch(&c->n_silent_conns, 1, __ATOMIC_RELAXED);
    else __atomic_add_fetch(&c->n_handshake_failures, 1, __ATOMIC_RELAXED);
    const char *text = msg && *msg ? msg : why_text[why];
    double now = byoai_time_now();
    reason *r = NULL, *oldest = &L->r[0];
    for (int i = 0; i < N_REASONS && !r; i++) {
        if (L->r[i].last_seen > 0 && !strncmp(L->r[i].msg, text, sizeof L->r[i].msg - 1)) r = &L->r[i];
        else if (L->r[i].last_seen < oldest->last_seen) oldest = &L->r[i];
    }
    if (!r) { /* a reason not seen lately: logged now */
        r = oldest;
        if (r->n) /* what it still held goes out first */
            cl_event(c, BYOAI_LOG_WARN, "closed %llu more connection(s) without answering (%s; the last from %s)",
                     (unsigned long long)r->n, r->msg, r->last_remote);
        memset(r, 0, sizeof *r);
        snprintf(r->msg, sizeof r->msg, "%s", text);
        r->last_seen = r->last_report = now;
        cl_event(c, BYOAI_LOG_WARN, "closed a connection from %s without answering: %s", remote, text);
        return;
    }
    r->last_seen = now;
    r->n++;
    snprintf(r->last_remote, sizeof r->last_remote, "%s", remote);
}

static void flush_reports(listener *L) {
    double now = byoai_time_now();
    for (int i = 0; i < N_REASONS; i++) {
        reason *r = &L->r[i];
        if (!r->n || now - r->last_report < REPORT_EVERY) continue;
        cl_event(L->c, BYOAI_LOG_WARN, "closed %llu connection(s) without answering in the last %.0f s (%s; the last "
                 "from %s)", (unsigned long long)r->n, now - r->last_report, r->msg, r->last_remote);
        r->n = 0;
        r->last_report = now;
    }
}

static void drop(pending *q) {
    if (q->fd >= 0) close(q->fd);
    q->fd = -1;
    q->have = 0;
    sodium_memzero(q->buf, sizeof q->buf);
}

static void host_of(const char *remote, char *host, size_t cap) {
    snprintf(host, cap, "%s", remote);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
}

/* ---- after the first message: helper threads ------------------------------------------------- */

typedef struct {
    int fd;
    cl_hs_m1 st;
    double deadline;
    char remote[64];
} respond_job;

static void respond_run(byoai_cluster *c, void *arg) {
    respond_job *j = arg;
    byoai_error err = {0};
    cl_link *l;
    if (cl_link_respond(&c->id, j->fd, &j->st, j->deadline, &l, &err) == 0) {
        char host[64];
        host_of(j->remote, host, sizeof host);
        cl_conn_register(c, l, host);
    } else if (err.code != BYOAI_ECANCELED) {
        __atomic_add_fetch(&c->n_handshake_failures, 1, __ATOMIC_RELAXED);
        cl_event(c, BYOAI_LOG_WARN, "handshake with %s failed: %s", j->remote, err.msg);
    }
    pthread_mutex_lock(&c->mu);
    c->n_authed--;
    pthread_mutex_unlock(&c->mu);
    sodium_memzero(j, sizeof *j);
    free(j);
}

typedef struct {
    int fd;
    uint8_t j1[CL_JOIN_M1_LEN];
    char remote[64];
} join_job;

static void join_run(byoai_cluster *c, void *arg) {
    join_job *j = arg;
    byoai_error err = {0};
    cl_cert issued;
    int rc = cl_join_serve(&c->id, j->fd, j->j1, j->remote, 2 * HANDSHAKE_TIMEOUT, &issued, &err);
    if (rc == 0) {
        char id[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(issued.node_pk, id);
        cl_event(c, BYOAI_LOG_INFO, "node %.12s (%s) joined the cluster from %s", id, issued.name, j->remote);
        if (cl_node_is_revoked(c, issued.node_pk)) { /* a removed machine, invited again */
            uint8_t id16[16];
            cl_node_id16(issued.node_pk, id16);
            pthread_mutex_lock(&c->rev_mu);
            cl_revoked next = c->revoked;
            pthread_mutex_unlock(&c->rev_mu);
            if (cl_revoked_readmit(&c->id, &next, id16, &err) == 0) cl_apply_revoked(c, &next, NULL);
            else cl_event(c, BYOAI_LOG_WARN, "cannot re-admit node %.12s: %s", id, err.msg);
        }
    } else if (rc != BYOAI_ECANCELED) {
        __atomic_add_fetch(&c->n_handshake_failures, 1, __ATOMIC_RELAXED);
        cl_event(c, BYOAI_LOG_WARN, "refused a join from %s: %s", j->remote, err.msg);
    }
    close(j->fd);
    pthread_mutex_lock(&c->mu);
    c->n_joins--;
    pthread_mutex_unlock(&c->mu);
    free(j);
}

/* ---- the first message ----------------------------------------------------------------------- */

/* A whole first message is in q: act on it (q is free afterwards). */
static void first_message(listener *L, pending *q, int kind) {
    byoai_cluster *c = L->c;
    byoai_error err = {0};
    if (kind == CL_FIRST_LINK) {
        respond_job *j = malloc(sizeof *j);
        if (!j) {
            drop(q);
            return;
        }
        if (cl_hs_m1_open(&c->id, q->buf, q->have, &j->st, &err) != 0) {
            sodium_memzero(j, sizeof *j);
            free(j);
            report(L, WHY_AUTH, q->remote, err.msg);
            drop(q);
            return;
        }
        j->fd = q->fd;
        j->deadline = q->t_accept + FIRST_TIMEOUT + HANDSHAKE_TIMEOUT;
        snprintf(j->remote, sizeof j->remote, "%s", q->remote);
        pthread_mutex_lock(&c->mu);
        bool ok = c->n_authed < AUTHED_MAX && cl_spawn_locked(c, respond_run, j);
        if (ok) c->n_authed++;
        pthread_mutex_unlock(&c->mu);
        if (!ok) {
            sodium_memzero(j, sizeof *j);
            free(j);
            report(L, WHY_BUSY, q->remote, NULL);
            drop(q);
            return;
        }
        q->fd = -1; /* the job owns it */
        drop(q);
        return;
    }
    if (kind == CL_FIRST_JOIN && c->id.admin) {
        join_job *j = malloc(sizeof *j);
        pthread_mutex_lock(&c->mu);
        bool ok = j && c->n_joins < JOINS_MAX;
        if (ok) {
            j->fd = q->fd;
            memcpy(j->j1, q->buf, CL_JOIN_M1_LEN);
            snprintf(j->remote, sizeof j->remote, "%s", q->remote);
            ok = cl_spawn_locked(c, join_run, j);
            if (ok) c->n_joins++;
        }
        pthread_mutex_unlock(&c->mu);
        if (!ok) {
            free(j);
            report(L, WHY_BUSY, q->remote, NULL);
            drop(q);
            return;
        }
        q->fd = -1;
        drop(q);
        return;
    }
    report(L, kind == CL_FIRST_OLD ? WHY_OLD : WHY_BAD, q->remote,
           kind == CL_FIRST_JOIN ? "a join request, but this node is not the cluster's admin" : NULL);
    drop(q);
}

/* Read what has arrived; act when the first message is whole. */
static void read_more(listener *L, pending *q) {
    for (;;) {
        size_t need;
        int kind = cl_hs_first(q->buf, q->have, &need);
        if (kind != CL_FIRST_MORE) {
            first_message(L, q, kind);
            return;
        }
        if (need > sizeof q->buf) need = sizeof q->buf;
        ssize_t r = recv(q->fd, q->buf + q->have, need - q->have, MSG_DONTWAIT);
        if (r > 0) {
            q->have += (size_t)r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r < 0 && errno == EINTR) continue;
        report(L, q->have ? WHY_BAD : WHY_SILENT, q->remote, q->have ? "closed in the middle of its first message"
                                                                      : "closed without sending anything");
        drop(q);
        return;
    }
}

/* ---- accepting ------------------------------------------------------------------------------------ */

/* A free entry for a new connection from addr, closing the oldest when the limits say so. */
static pending *make_room(listener *L, uint32_t addr) {
    pending *free_q = NULL, *oldest = NULL, *oldest_here = NULL;
    int here = 0;
    for (int i = 0; i < PENDING_MAX; i++) {
        pending *q = &L->p[i];
        if (q->fd < 0) {
            if (!free_q) free_q = q;
            continue;
        }
        if (!oldest || q->t_accept < oldest->t_accept) oldest = q;
        if (q->addr == addr) {
            here++;
            if (!oldest_here || q->t_accept < oldest_here->t_accept) oldest_here = q;
        }
    }
    pending *victim = here >= PENDING_PER_ADDR ? oldest_here : !free_q ? oldest : NULL;
    if (victim) {
        report(L, WHY_CROWD, victim->remote, NULL);
        drop(victim);
        return victim;
    }
    return free_q;
}

static void accept_some(listener *L) {
    byoai_cluster *c = L->c;
    for (int k = 0; k < ACCEPTS_PER_ROUND; k++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(c->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) { /* out of descriptors: the oldest waiting one goes */
                pending *oldest = NULL;
                for (int i = 0; i < PENDING_MAX; i++)
                    if (L->p[i].fd >= 0 && (!oldest || L->p[i].t_accept < oldest->t_accept)) oldest = &L->p[i];
                if (oldest) {
                    report(L, WHY_CROWD, oldest->remote, "out of file descriptors");
                    drop(oldest);
                    continue;
                }
            }
            return;
        }
        uint32_t addr = 0;
        char h[INET6_ADDRSTRLEN] = "?";
        uint16_t port = 0;
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            addr = a->sin_addr.s_addr;
            inet_ntop(AF_INET, &a->sin_addr, h, sizeof h);
            port = ntohs(a->sin_port);
        }
        pending *q = make_room(L, addr);
        if (!q) {
            close(fd);
            continue;
        }
        cl_sock_setup(fd);
        q->fd = fd;
        q->addr = addr;
        q->have = 0;
        q->t_accept = byoai_time_now();
        snprintf(q->remote, sizeof q->remote, "%s:%u", h, port);
        read_more(L, q); /* a member's first message is often there already */
    }
}

void *cl_listener_main(void *arg) {
    byoai_cluster *c = arg;
    listener L = {.c = c};
    L.p = calloc(PENDING_MAX, sizeof *L.p);
    struct pollfd *pf = calloc(PENDING_MAX + 2, sizeof *pf);
    int *idx = calloc(PENDING_MAX + 2, sizeof *idx);
    if (!L.p || !pf || !idx) {
        cl_event(c, BYOAI_LOG_ERROR, "out of memory: this node accepts no links");
        free(L.p);
        free(pf);
        free(idx);
        return NULL;
    }
    for (int i = 0; i < PENDING_MAX; i++) L.p[i].fd = -1;
    while (!__atomic_load_n(&c->stopping, __ATOMIC_RELAXED)) {
        int n = 0;
        pf[n++] = (struct pollfd){c->listen_fd, POLLIN, 0};
        pf[n++] = (struct pollfd){c->wake_pipe[0], POLLIN, 0};
        double now = byoai_time_now(), next = now + 1.0;
        for (int i = 0; i < PENDING_MAX; i++) {
            if (L.p[i].fd < 0) continue;
            double dl = L.p[i].t_accept + FIRST_TIMEOUT;
            if (dl < next) next = dl;
            idx[n] = i;
            pf[n++] = (struct pollfd){L.p[i].fd, POLLIN, 0};
        }
        int ms = (int)((next - now) * 1000) + 1;
        if (ms < 1) ms = 1;
        int r = poll(pf, (nfds_t)n, ms);
        if (__atomic_load_n(&c->stopping, __ATOMIC_RELAXED)) break;
        if (r < 0 && errno != EINTR) usleep(1000);
        /* what arrived on the connections already here goes before new ones */
        for (int k = 2; r > 0 && k < n; k++)
            if (pf[k].revents && L.p[idx[k]].fd == pf[k].fd) read_more(&L, &L.p[idx[k]]);
        now = byoai_time_now();
        for (int i = 0; i < PENDING_MAX; i++)
            if (L.p[i].fd >= 0 && now - L.p[i].t_accept > FIRST_TIMEOUT) {
                report(&L, WHY_SILENT, L.p[i].remote, L.p[i].have ? "its first message did not arrive within 5 s"
                                                                   : NULL);
                drop(&L.p[i]);
            }
        if (r > 0 && (pf[0].revents & POLLIN)) accept_some(&L);
        flush_reports(&L);
    }
    for (int i = 0; i < PENDING_MAX; i++) drop(&L.p[i]);
    free(L.p);
    free(pf);
    free(idx);
    return NULL;
}
