/*
 * What the HTTP layer does against hostile or broken clients:
 *
 * - Deadlines. libmicrohttpd's own timeout is an idle timeout: it restarts
 *   with every byte, so a client that trickles one header line every few
 *   seconds holds its connection forever. Every connection is in a table
 *   (MHD_OPTION_NOTIFY_CONNECTION) with its phase; a sweeper thread shuts
 *   down the socket of a connection that has not delivered a complete
 *   request header within header_timeout_s of being accepted (or of its
 *   previous answer, on a kept-alive connection), or whose body arrives
 *   slower than min_body_rate bytes/s on average after that grace. MHD then
 *   sees the socket fail and closes it. The fd is only touched under
 *   conn_mu, which the CLOSED notification also takes; MHD delivers CLOSED
 *   before it closes the socket (daemon.c, MHD_cleanup_connections), so an
 *   fd in the table is never a reused number.
 * - Framing: two Content-Length headers, Content-Length with
 *   Transfer-Encoding, or an unknown Transfer-Encoding could be read one
 *   way here and another way by a proxy in front (request smuggling): they
 *   are refused, and so is a %00 in the URL (a NUL would cut the path).
 * - File descriptors: idle connections cost no thread, so the connection
 *   cap is high; it is kept within RLIMIT_NOFILE, whose soft limit is
 *   raised to the hard one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "server/http_internal.h"

/* ---- the connection table --------------------------------------------------------- */
void http_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode code) {
    byoai_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        http_conn *c = calloc(1, sizeof *c);
        if (!c) return; /* untracked: only MHD's idle timeout applies */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        c->phase = CONN_HEADERS;
        c->phase_start = byoai_time_now();
        pthread_mutex_lock(&h->conn_mu);
        c->next = h->conns;
        if (h->conns) h->conns->prev = c;
        h->conns = c;
        h->n_conns++;
        pthread_mutex_unlock(&h->conn_mu);
        *socket_context = c;
        return;
    }
    http_conn *c = *socket_context;
    if (!c) return;
    pthread_mutex_lock(&h->conn_mu);
    if (c->prev) c->prev->next = c->next;
    else h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    h->n_conns--;
    pthread_mutex_unlock(&h->conn_mu);
    *socket_context = NULL;
    free(c);
}

void http_conn_phase(byoai_http *h, http_conn *c, conn_phase phase) {
    if (!c) return;
    pthread_mutex_lock(&h->conn_mu);
    if (c->phase != phase) {
        c->phase = phase;
        c->phase_start = byoai_time_now();
        c->body_bytes = 0;
    }
    pthread_mutex_unlock(&h->conn_mu);
}

void http_conn_body_bytes(byoai_http *h, http_conn *c, size_t n) {
    if (!c) return;
    pthread_mutex_lock(&h->conn_mu);
    c->body_bytes += n;
    pthread_mutex_unlock(&h->conn_mu);
}

/* ---- the sweeper ------------------------------------------------------------------ */
static bool overdue(const byoai_http *h, const http_conn *c, double now) {
    double age = now - c->phase_start, grace = (double)h->cfg.header_timeout_s;
    if (c->phase == CONN_HEADERS) return age > grace;
    if (c->phase == CONN_BODY) return age > grace + (double)c->body_bytes / (double)h->cfg.min_body_rate;
    return false;
}

static void *sweeper_main(void *arg) {
    byoai_http *h = arg;
    pthread_mutex_lock(&h->conn_mu);
    while (!h->sweeper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&h->sweep_cv, &h->conn_mu, &ts);
        if (h->sweeper_stop) break;
        double now = byoai_time_now();
        unsigned cut = 0;
        for (http_conn *c = h->conns; c; c = c->next) {
            if (c->cut || c->fd < 0 || !overdue(h, c, now)) continue;
            /* MHD sees the socket fail at once and closes the connection */
            shutdown(c->fd, SHUT_RDWR);
            c->cut = true;
            cut++;
        }
        if (cut) byoai_log(BYOAI_LOG_INFO, "http: closed %u connection(s) too slow to send their request", cut);
    }
    pthread_mutex_unlock(&h->conn_mu);
    return NULL;
}

int http_sweeper_start(byoai_http *h, byoai_error *err) {
    h->sweeper_stop = false;
    if (pthread_create(&h->sweeper, NULL, sweeper_main, h) != 0)
        return byoai_error_set(err, BYOAI_EIO, "cannot start a thread: %s", strerror(errno));
    h->sweeper_started = true;
    return 0;
}

void http_sweeper_stop(byoai_http *h) {
    if (!h->sweeper_started) return;
    pthread_mutex_lock(&h->conn_mu);
    h->sweeper_stop = true;
    pthread_cond_signal(&h->sweep_cv);
    pthread_mutex_unlock(&h->conn_mu);
    pthread_join(h->sweeper, NULL);
    h->sweeper_started = false;
}

/* ---- framing ------------------------------------------------------------------------ */
typedef struct framing {
    unsigned n_cl, n_te;
    const char *te;
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    framing *f = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) f->n_cl++;
    else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        f->n_te++;
        f->te = value;
    }
    return MHD_YES;
}

unsigned http_check_framing(byoai_http_req *r, char *msg, size_t cap) {
    if (r->bad_uri) {
        snprintf(msg, cap, "the URL contains %%00 (a NUL byte), which no path or query may hold");
        return 400;
    }
    framing f = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.n_cl > 1) {
        snprintf(msg, cap, "the request has %u Content-Length headers; send exactly one", f.n_cl);
        return 400;
    }
    if (f.n_te > 1) {
        snprintf(msg, cap, "the request has %u Transfer-Encoding headers; send at most one", f.n_te);
        return 400;
    }
    if (f.n_cl && f.n_te) {
        snprintf(msg, cap, "the request has both Content-Length and Transfer-Encoding; send one of them");
        return 400;
    }
    if (f.te && strcasecmp(f.te, "chunked")) {
        snprintf(msg, cap, "Transfer-Encoding '%.64s' is not supported; send chunked or a Content-Length", f.te);
        return 501;
    }
    return 0;
}

/* ---- file descriptors ---------------------------------------------------------------- */
unsigned http_fd_budget(unsigned wanted) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return wanted;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl.rlim_cur = rl.rlim_max;
    }
    if (rl.rlim_cur == RLIM_INFINITY) return wanted;
    /* leave room for model files, the database, cluster links, logs */
    rlim_t reserve = rl.rlim_cur > 1024 ? 256 : rl.rlim_cur / 4;
    rlim_t budget = rl.rlim_cur - reserve;
    if ((rlim_t)wanted > budget) {
        byoai_log(BYOAI_LOG_WARN,
                  "http: %u connections asked for, but the open-file limit (ulimit -n %llu) allows %llu; raise "
                  "the limit to serve more",
                  wanted, (unsigned long long)rl.rlim_cur, (unsigned long long)budget);
        return (unsigned)budget;
    }
    return wanted;
}
