/*
 * Links between nodes: TCP sockets with deadlines and, once the handshake
 * (handshake.c) has made the keys, encrypted, length-limited frames.
 *
 * Frames: u32 big-endian ciphertext length | secretstream ciphertext, with
 * the length as additional data. secretstream's internal counter makes a
 * replayed, dropped or reordered frame fail authentication; any failure
 * drops the link.
 *
 * Every wait on a socket has a deadline and polls in short slices, checking
 * the calling thread's cancel flag: a node that stops never waits for a
 * peer, however slow or silent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/cluster_internal.h"

#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define HDRBYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES

/* ---- socket I/O with deadlines ------------------------------------------------------ */

static __thread const bool *tl_cancel;

void cl_io_set_cancel(const bool *flag) { tl_cancel = flag; }
bool cl_io_cancelled(void) { return tl_cancel && __atomic_load_n(tl_cancel, __ATOMIC_RELAXED); }

static int wait_fd(int fd, short ev, double deadline, byoai_error *err) {
    for (;;) {
        if (cl_io_cancelled()) return byoai_error_set(err, BYOAI_ECANCELED, "the node is stopping");
        int ms = tl_cancel ? 50 : -1; /* short slices when there is a cancel flag to check between them */
        if (deadline > 0) {
            double left = deadline - byoai_time_now();
            if (left <= 0) return byoai_error_set(err, BYOAI_ETIMEOUT, "timed out waiting for the peer");
            int lms = left > 3600 ? 3600000 : (int)(left * 1000) + 1;
            if (ms < 0 || lms < ms) ms = lms;
        }
        struct pollfd p = {fd, ev, 0};
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return byoai_error_set(err, BYOAI_ENET, "poll: %s", strerror(errno));
        if (r == 0) continue; /* re-check the deadline and the flag */
        if (p.revents & POLLNVAL) return byoai_error_set(err, BYOAI_ENET, "connection closed");
        return 0;
    }
}

int cl_read_full(int fd, void *buf, size_t n, double deadline, byoai_error *err) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0) return byoai_error_set(err, BYOAI_ENET, "the peer closed the connection");
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int rc = wait_fd(fd, POLLIN, deadline, err);
            if (rc) return rc;
            continue;
        }
        return byoai_error_set(err, BYOAI_ENET, "receive failed: %s", strerror(errno));
    }
    return 0;
}

int cl_write_full(int fd, const void *buf, size_t n, double deadline, byoai_error *err) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLOUT, deadline, err);
            if (rc) return byoai_error_set(err, rc, "sending timed out: the peer is not reading");
            continue;
        }
        return byoai_error_set(err, BYOAI_ENET, "send failed: %s", r < 0 ? strerror(errno) : "closed");
    }
    return 0;
}

void cl_sock_setup(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

int cl_tcp_connect(const char *host, uint16_t port, double timeout_s, int *out, byoai_error *err) {
    *out = -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    int g = getaddrinfo(host, ps, &hints, &res);
    if (g) return byoai_error_set(err, BYOAI_ENET, "cannot resolve %s: %s", host, gai_strerror(g));
    double deadline = byoai_time_now() + timeout_s;
    int rc = BYOAI_ENET;
    char why[256] = "no address";
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        cl_sock_setup(fd);
        int c = connect(fd, a->ai_addr, a->ai_addrlen);
        if (c != 0 && errno == EINPROGRESS) {
            byoai_error e2;
            if (wait_fd(fd, POLLOUT, deadline, &e2) == 0) {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                c = soerr ? -1 : 0;
                errno = soerr;
                if (soerr == 0) c = 0;
            } else {
                errno = ETIMEDOUT;
            }
        }
        if (c == 0) {
            *out = fd;
            rc = 0;
            break;
        }
        snprintf(why, sizeof why, "%s", strerror(errno));
        close(fd);
    }
    freeaddrinfo(res);
    if (rc) return byoai_error_set(err, BYOAI_ENET, "cannot connect to %s:%u: %s", host, port, why);
    return 0;
}

void cl_sock_remote(int fd, char *out, size_t cap) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(out, cap, "local");
        return;
    }
    char h[INET6_ADDRSTRLEN] = "?";
    uint16_t p = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, h, sizeof h);
        p = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof h);
        p = ntohs(a->sin6_port);
    } else {
        snprintf(out, cap, "local");
        return;
    }
    snprintf(out, cap, "%s:%u", h, p);
}

/* ---- a link -------------------------------------------------------------------------------- */

cl_link *cl_link_new(int fd, bool initiator) {
    cl_link *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    cl_sock_setup(fd);
    l->fd = fd;
    l->initiator = initiator;
    l->send_timeout = 10;
    pthread_mutex_init(&l->send_mu, NULL);
    cl_sock_remote(fd, l->remote, sizeof l->remote);
    return l;
}

int cl_link_init_pull(cl_link *l, const uint8_t header[HDRBYTES], const uint8_t key[32], byoai_error *err) {
    if (crypto_secretstream_xchacha20poly1305_init_pull(&l->rx, header, key) != 0)
        return byoai_error_set(err, BYOAI_EAUTH, "invalid stream header from %s", l->remote);
    return 0;
}

/* ---- frames ------------------------------------------------------------------------------ */

int cl_link_send(cl_link *l, const void *msg, size_t len, byoai_error *err) {
    if (len > CL_MAX_FRAME) return byoai_error_set(err, BYOAI_ERANGE, "message of %zu bytes exceeds the frame limit", len);
    size_t clen = len + ABYTES;
    uint8_t *frame = malloc(4 + clen);
    if (!frame) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for a %zu-byte frame", len);
    frame[0] = (uint8_t)(clen >> 24);
    frame[1] = (uint8_t)(clen >> 16);
    frame[2] = (uint8_t)(clen >> 8);
    frame[3] = (uint8_t)clen;
    pthread_mutex_lock(&l->send_mu);
    int rc = 0;
    if (l->send_broken) {
        rc = byoai_error_set(err, BYOAI_ENET, "link to %s is broken", l->remote);
    } else {
        crypto_secretstream_xchacha20poly1305_push(&l->tx, frame + 4, NULL, msg, len, frame, 4,
                                                   crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
        rc = cl_write_full(l->fd, frame, 4 + clen, byoai_time_now() + l->send_timeout, err);
        if (rc) l->send_broken = true; /* a partial frame cannot be recovered */
        else {
            __atomic_add_fetch(&l->st.bytes_tx, 4 + clen, __ATOMIC_RELAXED);
            __atomic_add_fetch(&l->st.frames_tx, 1, __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&l->send_mu);
    free(frame);
    return rc;
}

int cl_link_recv(cl_link *l, uint8_t **msg, size_t *len, double timeout_s, byoai_error *err) {
    *msg = NULL;
    *len = 0;
    double deadline = timeout_s < 0 ? 0 : byoai_time_now() + timeout_s;
    uint8_t h[4];
    int rc = cl_read_full(l->fd, h, 4, deadline, err);
    if (rc) return rc;
    uint32_t clen = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (clen < ABYTES || clen > CL_MAX_FRAME + ABYTES)
        return byoai_error_set(err, BYOAI_EFORMAT, "frame of %u bytes from %s is outside the limit (%u..%u); "
                               "dropping the link", clen, l->remote, (unsigned)ABYTES, CL_MAX_FRAME + (unsigned)ABYTES);
    uint8_t *c = malloc(clen);
    uint8_t *m = malloc(clen - ABYTES + 1);
    if (!c || !m) {
        free(c);
        free(m);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for a %u-byte frame", clen);
    }
    /* a frame that has started must arrive within a bounded time */
    double fdl = deadline;
    if (fdl == 0) fdl = byoai_time_now() + 30 + clen / 1e6;
    if ((rc = cl_read_full(l->fd, c, clen, fdl, err))) {
        free(c);
        free(m);
        return rc;
    }
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    int ok = crypto_secretstream_xchacha20poly1305_pull(&l->rx, m, &mlen, &tag, c, clen, h, 4);
    free(c);
    if (ok != 0 || tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) {
        free(m);
        return byoai_error_set(err, BYOAI_EAUTH, "a frame from %s failed authentication (tampered, replayed or "
                               "corrupted); dropping the link", l->remote);
    }
    __atomic_add_fetch(&l->st.bytes_rx, 4 + (uint64_t)clen, __ATOMIC_RELAXED);
    __atomic_add_fetch(&l->st.frames_rx, 1, __ATOMIC_RELAXED);
    m[mlen] = 0;
    *msg = m;
    *len = (size_t)mlen;
    return 0;
}

void cl_link_set_send_timeout(cl_link *l, double s) {
    pthread_mutex_lock(&l->send_mu);
    l->send_timeout = s;
    pthread_mutex_unlock(&l->send_mu);
}

void cl_link_shutdown(cl_link *l) {
    if (l && l->fd >= 0) shutdown(l->fd, SHUT_RDWR);
}

void cl_link_free(cl_link *l) {
    if (!l) return;
    if (l->fd >= 0) close(l->fd);
    pthread_mutex_destroy(&l->send_mu);
    sodium_memzero(&l->tx, sizeof l->tx);
    sodium_memzero(&l->rx, sizeof l->rx);
    free(l);
}

const uint8_t *cl_link_peer_pk(const cl_link *l) { return l->peer_pk; }
const cl_cert *cl_link_peer_cert(const cl_link *l) { return &l->peer_cert; }
bool cl_link_initiator(const cl_link *l) { return l->initiator; }
const char *cl_link_remote(const cl_link *l) { return l->remote; }

void cl_link_get_stats(cl_link *l, cl_link_stats *s) {
    s->bytes_tx = __atomic_load_n(&l->st.bytes_tx, __ATOMIC_RELAXED);
    s->bytes_rx = __atomic_load_n(&l->st.bytes_rx, __ATOMIC_RELAXED);
    s->frames_tx = __atomic_load_n(&l->st.frames_tx, __ATOMIC_RELAXED);
    s->frames_rx = __atomic_load_n(&l->st.frames_rx, __ATOMIC_RELAXED);
}
