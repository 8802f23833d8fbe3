/*
 * Links between nodes: TCP, a mutually authenticated handshake, then
 * encrypted, length-limited frames.
 *
 * Handshake (I initiator, R responder; eph = fresh X25519 keys, n = fresh
 * 32-byte nonces; H = BLAKE2b-256; every signature is ed25519 by a node key):
 *
 *   M1 I->R  "BYOAI-L1" | ver | cluster_pk | eph_I | n_I
 *   M2 R->I  "BYOAI-L1" | status | eph_R | n_R | cert_R | sig_R
 *            sig_R = Sign(R, "byoai-link-v1 responder" | th2), th2 = H(th1 | M2 minus sig)
 *   M3 I->R  cert_I | sig_I | stream header I->R
 *            sig_I = Sign(I, "byoai-link-v1 initiator" | th3), th3 = H(th2 | sig_R | cert_I)
 *   M4 R->I  stream header R->I, then the first encrypted frame (an empty ack)
 *
 * Both certificates must be signed by the cluster key and name a node other
 * than the receiver (a connection reflected back to its sender is refused).
 * Each signature covers the other side's fresh ephemeral key and nonce, so a
 * recorded handshake replayed later fails, and carries its role, so a
 * responder's signature can never serve as an initiator's. Session keys come
 * from crypto_kx on the ephemeral keys, bound to the final transcript hash:
 * one key per direction, so frames reflected back are rejected too.
 *
 * Frames: u32 big-endian ciphertext length | secretstream ciphertext, with
 * the length as additional data. secretstream's internal counter makes a
 * replayed, dropped or reordered frame fail authentication; any failure
 * drops the link.
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

#define LINK_VERSION 1
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define HDRBYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES

struct cl_link {
    int fd;
    bool initiator;
    uint8_t peer_pk[32];
    cl_cert peer_cert;
    crypto_secretstream_xchacha20poly1305_state tx, rx;
    pthread_mutex_t send_mu;
    double send_timeout;
    bool send_broken;
    cl_link_stats st;
    char remote[96];
};

/* ---- socket I/O with deadlines ------------------------------------------------------ */

static int wait_fd(int fd, short ev, double deadline, byoai_error *err) {
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - byoai_time_now();
            if (left <= 0) return byoai_error_set(err, BYOAI_ETIMEOUT, "timed out waiting for the peer");
            ms = (int)(left * 1000) + 1;
        }
        struct pollfd p = {fd, ev, 0};
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return byoai_error_set(err, BYOAI_ENET, "poll: %s", strerror(errno));
        if (r == 0) continue; /* re-check the deadline */
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

static void sock_setup(int fd) {
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
        sock_setup(fd);
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

/* ---- handshake ---------------------------------------------------------------------- */

static void th_update(uint8_t th[32], const void *p, size_t n) {
    crypto_generichash_state s;
    crypto_generichash_init(&s, NULL, 0, 32);
    crypto_generichash_update(&s, th, 32);
    crypto_generichash_update(&s, p, n);
    crypto_generichash_final(&s, th, 32);
}

static void role_message(const char *role, const uint8_t th[32], uint8_t *out, size_t *len) {
    size_t rl = strlen(role);
    memcpy(out, role, rl);
    memcpy(out + rl, th, 32);
    *len = rl + 32;
}

static void derive_key(uint8_t out[32], const uint8_t kx[32], const uint8_t th[32], const char *dir) {
    crypto_generichash_state s;
    crypto_generichash_init(&s, kx, 32, 32);
    crypto_generichash_update(&s, th, 32);
    crypto_generichash_update(&s, (const uint8_t *)dir, strlen(dir));
    crypto_generichash_final(&s, out, 32);
}

static int read_cert(int fd, double deadline, uint8_t *buf, size_t *len, byoai_error *err) {
    uint8_t l2[2];
    int rc = cl_read_full(fd, l2, 2, deadline, err);
    if (rc) return rc;
    size_t n = (size_t)l2[0] | (size_t)l2[1] << 8;
    if (n == 0 || n > CL_CERT_MAX) return byoai_error_set(err, BYOAI_EFORMAT, "certificate length %zu is invalid", n);
    if ((rc = cl_read_full(fd, buf, n, deadline, err))) return rc;
    *len = n;
    return 0;
}

static int check_peer_cert(const cl_identity *id, const uint8_t *cert, size_t clen, const uint8_t *expect_pk,
                           cl_cert *out, byoai_error *err) {
    int rc = cl_cert_decode(cert, clen, out, err);
    if (rc) return rc;
    if ((rc = cl_cert_verify(out, id->cluster_pk, byoai_time_unix(), err))) return rc;
    if (id->is_revoked && id->is_revoked(id->revoked_user, out->node_pk)) {
        char fp[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(out->node_pk, fp);
        return byoai_error_set(err, BYOAI_EAUTH, "node %.12s was removed from the cluster by its admin; refused", fp);
    }
    if (sodium_memcmp(out->node_pk, id->node_pk, 32) == 0)
        return byoai_error_set(err, BYOAI_EAUTH, "the peer presented this node's own identity (a reflected "
                               "connection); refused");
    if (expect_pk && sodium_memcmp(out->node_pk, expect_pk, 32) != 0) {
        char a[BYOAI_CLUSTER_ID_LEN + 1], b[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(expect_pk, a);
        cl_fingerprint(out->node_pk, b);
        return byoai_error_set(err, BYOAI_EAUTH, "expected node %.12s at this address but found %.12s", a, b);
    }
    return 0;
}

static int init_pull(cl_link *l, const uint8_t header[HDRBYTES], const uint8_t key[32], byoai_error *err) {
    if (crypto_secretstream_xchacha20poly1305_init_pull(&l->rx, header, key) != 0)
        return byoai_error_set(err, BYOAI_EAUTH, "invalid stream header from %s", l->remote);
    return 0;
}

int cl_link_handshake(const cl_identity *id, int fd, bool initiator, bool magic_read, const uint8_t *expect_pk,
                      double timeout_s, cl_link **out, byoai_error *err) {
    *out = NULL;
    if (!id->member) {
        close(fd);
        return byoai_error_set(err, BYOAI_EAUTH, "this node is not a cluster member");
    }
    sock_setup(fd);
    cl_link *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    l->fd = fd;
    l->initiator = initiator;
    l->send_timeout = 10;
    pthread_mutex_init(&l->send_mu, NULL);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
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
        }
        snprintf(l->remote, sizeof l->remote, "%s:%u", h, p);
    } else {
        snprintf(l->remote, sizeof l->remote, "local");
    }

    double deadline = byoai_time_now() + timeout_s;
    uint8_t eph_pk[32], eph_sk[32], nonce[32], peer_eph[32], peer_nonce[32];
    crypto_kx_keypair(eph_pk, eph_sk);
    randombytes_buf(nonce, sizeof nonce);
    uint8_t th[32] = {0}, sig[64], msg[96], rx_kx[32], tx_kx[32], k_tx[32], k_rx[32];
    uint8_t hdr_tx[HDRBYTES], hdr_rx[HDRBYTES];
    uint8_t cert[CL_CERT_MAX], mycert[CL_CERT_MAX];
    size_t clen = 0, mlen, myclen = 0;
    int rc = 0;
    if (cl_cert_encode(&id->cert, mycert, sizeof mycert, &myclen)) {
        rc = byoai_error_set(err, BYOAI_EINVAL, "own certificate too large");
        goto done;
    }
    th_update(th, "byoai-link-v1", 13);

    if (initiator) {
        uint8_t m1[8 + 1 + 32 + 32 + 32];
        memcpy(m1, CL_LINK_MAGIC, 8);
        m1[8] = LINK_VERSION;
        memcpy(m1 + 9, id->cluster_pk, 32);
        memcpy(m1 + 41, eph_pk, 32);
        memcpy(m1 + 73, nonce, 32);
        if ((rc = cl_write_full(fd, m1, sizeof m1, deadline, err))) goto done;
        th_update(th, m1, sizeof m1);
        /* M2 */
        uint8_t m2h[8 + 1];
        if ((rc = cl_read_full(fd, m2h, sizeof m2h, deadline, err))) {
            byoai_error_prefix(err, "handshake with %s", l->remote);
            goto done;
        }
        if (memcmp(m2h, CL_LINK_MAGIC, 8)) {
            rc = byoai_error_set(err, BYOAI_EFORMAT, "%s does not speak the byoai link protocol", l->remote);
            goto done;
        }
        if (m2h[8] != 0) {
            rc = byoai_error_set(err, BYOAI_EAUTH, "%s refused the connection: %s", l->remote,
                                 m2h[8] == 1 ? "it belongs to another cluster" : "unsupported protocol version");
            goto done;
        }
        uint8_t m2b[64];
        if ((rc = cl_read_full(fd, m2b, 64, deadline, err)) || (rc = read_cert(fd, deadline, cert, &clen, err)) ||
            (rc = cl_read_full(fd, sig, 64, deadline, err)))
            goto done;
        memcpy(peer_eph, m2b, 32);
        memcpy(peer_nonce, m2b + 32, 32);
        th_update(th, m2h, sizeof m2h);
        th_update(th, m2b, 64);
        uint8_t cl2[2] = {(uint8_t)clen, (uint8_t)(clen >> 8)};
        th_update(th, cl2, 2);
        th_update(th, cert, clen);
        if ((rc = check_peer_cert(id, cert, clen, expect_pk, &l->peer_cert, err))) goto done;
        role_message("byoai-link-v1 responder", th, msg, &mlen);
        if (crypto_sign_verify_detached(sig, msg, mlen, l->peer_cert.node_pk) != 0) {
            rc = byoai_error_set(err, BYOAI_EAUTH, "%s: bad handshake signature", l->remote);
            goto done;
        }
        th_update(th, sig, 64);
        /* M3 */
        uint8_t mc2[2] = {(uint8_t)myclen, (uint8_t)(myclen >> 8)};
        th_update(th, mc2, 2);
        th_update(th, mycert, myclen);
        role_message("byoai-link-v1 initiator", th, msg, &mlen);
        uint8_t mysig[64];
        crypto_sign_detached(mysig, NULL, msg, mlen, id->node_sk);
        th_update(th, mysig, 64);
        if (crypto_kx_client_session_keys(rx_kx, tx_kx, eph_pk, eph_sk, peer_eph) != 0) {
            rc = byoai_error_set(err, BYOAI_EAUTH, "%s: invalid ephemeral key", l->remote);
            goto done;
        }
        derive_key(k_tx, tx_kx, th, "i2r");
        derive_key(k_rx, rx_kx, th, "r2i");
        crypto_secretstream_xchacha20poly1305_init_push(&l->tx, hdr_tx, k_tx);
        cl_buf m3 = {0};
        cl_buf_bytes(&m3, mc2, 2);
        cl_buf_bytes(&m3, mycert, myclen);
        cl_buf_bytes(&m3, mysig, 64);
        cl_buf_bytes(&m3, hdr_tx, HDRBYTES);
        rc = m3.oom ? byoai_error_set(err, BYOAI_ENOMEM, "out of memory") : cl_write_full(fd, m3.data, m3.len, deadline, err);
        cl_buf_free(&m3);
        if (rc) goto done;
        /* M4: the responder's stream header and an encrypted ack */
        if (cl_read_full(fd, hdr_rx, HDRBYTES, deadline, NULL)) {
            rc = byoai_error_set(err, BYOAI_EAUTH, "%s refused this node's certificate (is it still a member of "
                                 "the cluster?)", l->remote);
            goto done;
        }
        if ((rc = init_pull(l, hdr_rx, k_rx, err))) goto done;
        uint8_t *ack = NULL;
        size_t alen;
        double left = deadline - byoai_time_now();
        if ((rc = cl_link_recv(l, &ack, &alen, left > 0.01 ? left : 0.01, err))) {
            byoai_error_prefix(err, "handshake with %s", l->remote);
            goto done;
        }
        free(ack);
        if (alen != 0) {
            rc = byoai_error_set(err, BYOAI_EFORMAT, "%s: unexpected handshake ack", l->remote);
            goto done;
        }
    } else {
        uint8_t m1[8 + 1 + 32 + 32 + 32];
        memcpy(m1, CL_LINK_MAGIC, 8);
        if (!magic_read) {
            if ((rc = cl_read_full(fd, m1, 8, deadline, err))) goto done;
            if (memcmp(m1, CL_LINK_MAGIC, 8)) {
                rc = byoai_error_set(err, BYOAI_EFORMAT, "%s does not speak the byoai link protocol", l->remote);
                goto done;
            }
        }
        if ((rc = cl_read_full(fd, m1 + 8, sizeof m1 - 8, deadline, err))) goto done;
        uint8_t m2h[9];
        memcpy(m2h, CL_LINK_MAGIC, 8);
        m2h[8] = 0;
        if (m1[8] != LINK_VERSION) m2h[8] = 2;
        else if (sodium_memcmp(m1 + 9, id->cluster_pk, 32) != 0) m2h[8] = 1;
        if (m2h[8]) {
            cl_write_full(fd, m2h, sizeof m2h, deadline, NULL);
            rc = byoai_error_set(err, BYOAI_EAUTH, "refused a connection from %s: %s", l->remote,
                                 m2h[8] == 1 ? "it belongs to another cluster" : "unsupported protocol version");
            goto done;
        }
        memcpy(peer_eph, m1 + 41, 32);
        memcpy(peer_nonce, m1 + 73, 32);
        th_update(th, m1, sizeof m1);
        uint8_t m2b[64];
        memcpy(m2b, eph_pk, 32);
        memcpy(m2b + 32, nonce, 32);
        uint8_t mc2[2] = {(uint8_t)myclen, (uint8_t)(myclen >> 8)};
        th_update(th, m2h, sizeof m2h);
        th_update(th, m2b, 64);
        th_update(th, mc2, 2);
        th_update(th, mycert, myclen);
        role_message("byoai-link-v1 responder", th, msg, &mlen);
        crypto_sign_detached(sig, NULL, msg, mlen, id->node_sk);
        th_update(th, sig, 64);
        cl_buf m2 = {0};
        cl_buf_bytes(&m2, m2h, sizeof m2h);
        cl_buf_bytes(&m2, m2b, 64);
        cl_buf_bytes(&m2, mc2, 2);
        cl_buf_bytes(&m2, mycert, myclen);
        cl_buf_bytes(&m2, sig, 64);
        rc = m2.oom ? byoai_error_set(err, BYOAI_ENOMEM, "out of memory") : cl_write_full(fd, m2.data, m2.len, deadline, err);
        cl_buf_free(&m2);
        if (rc) goto done;
        /* M3 */
        uint8_t psig[64];
        if ((rc = read_cert(fd, deadline, cert, &clen, err)) || (rc = cl_read_full(fd, psig, 64, deadline, err)) ||
            (rc = cl_read_full(fd, hdr_rx, HDRBYTES, deadline, err))) {
            byoai_error_prefix(err, "handshake with %s", l->remote);
            goto done;
        }
        uint8_t cl2[2] = {(uint8_t)clen, (uint8_t)(clen >> 8)};
        th_update(th, cl2, 2);
        th_update(th, cert, clen);
        if ((rc = check_peer_cert(id, cert, clen, expect_pk, &l->peer_cert, err))) {
            byoai_error_prefix(err, "refused a connection from %s", l->remote);
            goto done;
        }
        role_message("byoai-link-v1 initiator", th, msg, &mlen);
        if (crypto_sign_verify_detached(psig, msg, mlen, l->peer_cert.node_pk) != 0) {
            rc = byoai_error_set(err, BYOAI_EAUTH, "refused a connection from %s: bad handshake signature", l->remote);
            goto done;
        }
        th_update(th, psig, 64);
        if (crypto_kx_server_session_keys(rx_kx, tx_kx, eph_pk, eph_sk, peer_eph) != 0) {
            rc = byoai_error_set(err, BYOAI_EAUTH, "%s: invalid ephemeral key", l->remote);
            goto done;
        }
        derive_key(k_rx, rx_kx, th, "i2r");
        derive_key(k_tx, tx_kx, th, "r2i");
        if ((rc = init_pull(l, hdr_rx, k_rx, err))) goto done;
        crypto_secretstream_xchacha20poly1305_init_push(&l->tx, hdr_tx, k_tx);
        if ((rc = cl_write_full(fd, hdr_tx, HDRBYTES, deadline, err))) goto done;
        if ((rc = cl_link_send(l, NULL, 0, err))) goto done; /* the ack */
    }
    memcpy(l->peer_pk, l->peer_cert.node_pk, 32);
    (void)peer_nonce;
done:
    sodium_memzero(eph_sk, sizeof eph_sk);
    sodium_memzero(rx_kx, sizeof rx_kx);
    sodium_memzero(tx_kx, sizeof tx_kx);
    sodium_memzero(k_tx, sizeof k_tx);
    sodium_memzero(k_rx, sizeof k_rx);
    if (rc) {
        cl_link_free(l);
        return rc;
    }
    l->st.frames_tx = l->st.frames_rx = 0;
    l->st.bytes_tx = l->st.bytes_rx = 0;
    *out = l;
    return 0;
}

int cl_link_connect(const cl_identity *id, const char *host, uint16_t port, const uint8_t *expect_pk,
                    double timeout_s, cl_link **out, byoai_error *err) {
    int fd;
    double t0 = byoai_time_now();
    int rc = cl_tcp_connect(host, port, timeout_s, &fd, err);
    if (rc) return rc;
    double left = timeout_s - (byoai_time_now() - t0);
    return cl_link_handshake(id, fd, true, false, expect_pk, left > 0.5 ? left : 0.5, out, err);
}

int cl_link_accept(const cl_identity *id, int fd, double timeout_s, cl_link **out, byoai_error *err) {
    return cl_link_handshake(id, fd, false, true, NULL, timeout_s, out, err);
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
