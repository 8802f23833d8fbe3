/*
 * LAN discovery: every node broadcasts a signed, sealed announcement (its
 * certificate, link port, addresses best first, free memory, speed,
 * models) on the discovery port, a few times quickly at start and then
 * every heartbeat. Announcements that are unsigned, signed by a key the
 * cluster did not certify, stale (more than five minutes off this clock) or
 * not newer than the last one from the same node are ignored.
 *
 * An announcement carries the sender's certificate and an ed25519 signature
 * over the whole datagram; only members of this cluster whose signature
 * verifies are heard. The whole of it is sealed (XSalsa20-Poly1305, a random
 * nonce) with a key derived from the cluster's public key, which never
 * travels in clear: a stranger on the LAN sees datagrams of some size on the
 * discovery port and nothing else.
 *
 * Interfaces are ranked: wired and wireless first, then others, then
 * container bridges and virtual pairs (docker*, br-*, virbr*, veth*, ...),
 * then loopback. A node bound to loopback announces on loopback only (many
 * nodes on one machine); one bound to 0.0.0.0 announces on every interface.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/node_internal.h"

#define ANNOUNCE_MAGIC "BYAN"
#define ANNOUNCE_VERSION 1
#define ANNOUNCE_DOMAIN "byoai-announce-v1"
#define SEALED_MAGIC "BYA2"
#define SEAL_OVERHEAD (4 + crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)

static void announce_key(const uint8_t cluster_pk[32], uint8_t key[32]) {
    crypto_generichash(key, 32, cluster_pk, 32, (const uint8_t *)"byoai-announce-v2 key", 21);
}

/* ---- the announcement ---------------------------------------------------------------------- */

int cl_announce_encode(const cl_identity *id, const cl_node_info *info, uint64_t ts_ms, uint8_t *out, size_t cap,
                       size_t *len) {
    uint8_t cert[CL_CERT_MAX], inner[CL_DGRAM_MAX];
    size_t clen, ilen = 0;
    if (cl_cert_encode(&id->cert, cert, sizeof cert, &clen)) return BYOAI_EINVAL;
    if (cap > CL_DGRAM_MAX) cap = CL_DGRAM_MAX;
    if (cap <= SEAL_OVERHEAD) return BYOAI_ERANGE;
    size_t icap = cap - SEAL_OVERHEAD;
    cl_node_info trimmed = *info;
    int rc = BYOAI_ERANGE;
    /* drop model lists until the datagram fits */
    for (;;) {
        cl_buf b = {0};
        cl_buf_bytes(&b, ANNOUNCE_DOMAIN, strlen(ANNOUNCE_DOMAIN));
        size_t start = b.len;
        cl_buf_bytes(&b, ANNOUNCE_MAGIC, 4);
        cl_buf_u8(&b, ANNOUNCE_VERSION);
        cl_buf_u16(&b, (uint16_t)clen);
        cl_buf_bytes(&b, cert, clen);
        cl_buf_u64(&b, ts_ms);
        cl_enc_node_info(&b, &trimmed);
        if (!b.oom && b.len - start + 64 <= icap) {
            memcpy(inner, b.data + start, b.len - start);
            crypto_sign_detached(inner + (b.len - start), NULL, b.data, b.len, id->node_sk);
            ilen = b.len - start + 64;
            rc = 0;
        }
        cl_buf_free(&b);
        if (rc == 0) break;
        if (trimmed.n_models) trimmed.n_models--;
        else if (trimmed.n_deployed) trimmed.n_deployed--;
        else if (trimmed.n_addrs > 1) trimmed.n_addrs--;
        else break;
    }
    if (rc) return rc;
    uint8_t key[32];
    announce_key(id->cluster_pk, key);
    memcpy(out, SEALED_MAGIC, 4);
    randombytes_buf(out + 4, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(out + 4 + crypto_secretbox_NONCEBYTES, inner, ilen, out + 4, key);
    sodium_memzero(key, sizeof key);
    *len = ilen + SEAL_OVERHEAD;
    return 0;
}

int cl_announce_decode(const uint8_t *sealed, size_t slen, const uint8_t cluster_pk[32], uint64_t now_s,
                       cl_cert *cert, uint64_t *ts_ms, cl_node_info *info, byoai_error *err) {
    if (slen <= SEAL_OVERHEAD || slen > CL_DGRAM_MAX || memcmp(sealed, SEALED_MAGIC, 4))
        return byoai_error_set(err, BYOAI_EFORMAT, "not an announcement (%zu bytes)", slen);
    uint8_t buf[CL_DGRAM_MAX], key[32];
    size_t len = slen - SEAL_OVERHEAD;
    announce_key(cluster_pk, key);
    int opened = crypto_secretbox_open_easy(buf, sealed + 4 + crypto_secretbox_NONCEBYTES,
                                            slen - 4 - crypto_secretbox_NONCEBYTES, sealed + 4, key);
    sodium_memzero(key, sizeof key);
    if (opened != 0)
        return byoai_error_set(err, BYOAI_EAUTH, "an announcement that does not open with this cluster's key (another "
                               "cluster's, or damaged)");
    if (len < 4 + 1 + 2 + 64) return byoai_error_set(err, BYOAI_EFORMAT, "announcement of %zu bytes is too short", len);
    cl_rd r = {buf, len - 64, 0, false};
    const uint8_t *magic = cl_rd_bytes(&r, 4);
    if (!magic || memcmp(magic, ANNOUNCE_MAGIC, 4)) return byoai_error_set(err, BYOAI_EFORMAT, "not an announcement");
    if (cl_rd_u8(&r) != ANNOUNCE_VERSION) return byoai_error_set(err, BYOAI_EFORMAT, "unsupported announcement version");
    uint16_t clen = cl_rd_u16(&r);
    const uint8_t *cb = cl_rd_bytes(&r, clen);
    if (!cb) return byoai_error_set(err, BYOAI_EFORMAT, "truncated announcement");
    int rc = cl_cert_decode(cb, clen, cert, err);
    if (rc) return rc;
    *ts_ms = cl_rd_u64(&r);
    cl_dec_node_info(&r, info);
    if (!cl_rd_done(&r)) return byoai_error_set(err, BYOAI_EFORMAT, "malformed announcement");
    if ((rc = cl_cert_verify(cert, cluster_pk, now_s, err))) return rc;
    /* the signature covers the domain string and every byte before it */
    size_t dl = strlen(ANNOUNCE_DOMAIN);
    uint8_t *m = malloc(dl + len - 64);
    if (!m) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    memcpy(m, ANNOUNCE_DOMAIN, dl);
    memcpy(m + dl, buf, len - 64);
    int ok = crypto_sign_verify_detached(buf + len - 64, m, dl + len - 64, cert->node_pk);
    free(m);
    if (ok != 0) return byoai_error_set(err, BYOAI_EAUTH, "announcement signature does not verify");
    uint64_t now_ms = now_s * 1000;
    uint64_t skew = 300000; /* 5 minutes: older or newer announcements are replays or broken clocks */
    if (*ts_ms + skew < now_ms || *ts_ms > now_ms + skew)
        return byoai_error_set(err, BYOAI_EAUTH, "announcement timestamp is %lld s away from this clock",
                               (long long)((int64_t)*ts_ms - (int64_t)now_ms) / 1000);
    if (info->port == 0) return byoai_error_set(err, BYOAI_EFORMAT, "announcement without a port");
    return 0;
}

/* ---- interfaces and the loop ------------------------------------------------------------------- */

int cl_iface_rank(const char *name, bool loopback) {
    if (loopback) return 3;
    static const char *virt[] = {"docker", "br-", "virbr", "veth", "cni", "flannel", "cali", "vmnet", "vboxnet",
                                 "podman", "lxc", "lxd", "kube", "weave", "tun", "tap"};
    for (size_t i = 0; i < sizeof virt / sizeof virt[0]; i++)
        if (!strncmp(name, virt[i], strlen(virt[i]))) return 2;
    static const char *real[] = {"eth", "en", "wl", "ww", "ib"};
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++)
        if (!strncmp(name, real[i], strlen(real[i]))) return 0;
    return 1;
}

int cl_ifaces(cl_iface *out, int cap) {
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) != 0) return 0;
    int n = 0;
    for (int rank = 0; rank <= 3; rank++) {
        for (struct ifaddrs *i = ifa; i && n < cap; i = i->ifa_next) {
            if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
            bool lo = (i->ifa_flags & IFF_LOOPBACK) != 0;
            if (cl_iface_rank(i->ifa_name, lo) != rank) continue;
            cl_iface *f = &out[n];
            memset(f, 0, sizeof *f);
            snprintf(f->name, sizeof f->name, "%s", i->ifa_name);
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, f->addr, sizeof f->addr);
            if (lo) snprintf(f->bcast, sizeof f->bcast, "127.255.255.255");
            else if (i->ifa_flags & IFF_BROADCAST) {
                struct in_addr b = {0};
                if (i->ifa_broadaddr) b = ((struct sockaddr_in *)i->ifa_broadaddr)->sin_addr;
                if (b.s_addr == 0 && i->ifa_netmask) /* no broadcast address set: derive it */
                    b.s_addr = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr |
                               ~((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr;
                if (b.s_addr) inet_ntop(AF_INET, &b, f->bcast, sizeof f->bcast);
            }
            f->rank = rank;
            n++;
        }
    }
    freeifaddrs(ifa);
    return n;
}

static void announce(byoai_cluster *c) {
    uint8_t buf[CL_DGRAM_MAX];
    size_t len;
    pthread_mutex_lock(&c->mu);
    cl_node_info info = c->self;
    pthread_mutex_unlock(&c->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (cl_announce_encode(&c->id, &info, ms, buf, sizeof buf, &len) != 0) return;
    char dests[CL_MAX_ADDRS + 1][CL_ADDR_MAX];
    int nd = 0;
    if (c->bind_loopback) {
        snprintf(dests[nd++], CL_ADDR_MAX, "127.255.255.255");
    } else {
        cl_iface ifs[CL_MAX_ADDRS];
        int n = cl_ifaces(ifs, CL_MAX_ADDRS);
        for (int i = 0; i < n; i++) {
            if (!ifs[i].bcast[0]) continue;
            if (!c->bind_any && strcmp(ifs[i].addr, c->bind_addr)) continue;
            snprintf(dests[nd++], CL_ADDR_MAX, "%s", ifs[i].bcast);
        }
    }
    for (int i = 0; i < nd; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(c->disc_port)};
        if (inet_pton(AF_INET, dests[i], &a.sin_addr) != 1) continue;
        sendto(c->udp_fd, buf, len, MSG_NOSIGNAL, (struct sockaddr *)&a, sizeof a);
    }
}

static void heard(byoai_cluster *c, const uint8_t *buf, size_t len, const char *src) {
    cl_cert cert;
    cl_node_info info;
    uint64_t ts;
    byoai_error err = {0};
    if (cl_announce_decode(buf, len, c->id.cluster_pk, byoai_time_unix(), &cert, &ts, &info, &err) != 0) {
        byoai_log(BYOAI_LOG_DEBUG, "cluster: ignored an announcement from %s: %s", src, err.msg);
        return;
    }
    if (cl_is_self(c, cert.node_pk)) return;
    if (c->id.is_revoked && c->id.is_revoked(c->id.revoked_user, cert.node_pk)) return; /* removed by the admin */
    /* connect to the datagram's source when the sender lists it, else to its best address */
    const char *addr = info.n_addrs ? info.addrs[0] : src;
    for (int i = 0; i < info.n_addrs; i++)
        if (!strcmp(info.addrs[i], src)) addr = src;
    pthread_mutex_lock(&c->mu);
    bool is_new = cl_peer_find(c, cert.node_pk) == NULL;
    cl_note_heard(c, cert.node_pk, &cert, &info, addr, ts);
    pthread_mutex_unlock(&c->mu);
    if (is_new) {
        char id[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(cert.node_pk, id);
        cl_event(c, BYOAI_LOG_INFO, "discovered node %.12s (%s) at %s:%u", id, info.name[0] ? info.name : cert.name, addr, info.port);
    }
}

static void *disc_main(void *arg) {
    byoai_cluster *c = arg;
    static const double quick[] = {0, 0.2, 0.5, 1.0};
    double start = byoai_time_now(), next = start;
    int n_sent = 0;
    while (!c->stopping) {
        double now = byoai_time_now();
        if (now >= next) {
            if (!__atomic_load_n(&c->left_requested, __ATOMIC_RELAXED)) announce(c);
            n_sent++;
            next = n_sent < 4 ? start + quick[n_sent] : now + c->heartbeat_s;
        }
        int ms = (int)((next - byoai_time_now()) * 1000) + 1;
        if (ms < 1) ms = 1;
        struct pollfd p[2] = {{c->udp_fd, POLLIN, 0}, {c->wake_pipe[0], POLLIN, 0}};
        int r = poll(p, 2, ms > 250 ? 250 : ms);
        if (r <= 0 || !(p[0].revents & POLLIN)) continue;
        uint8_t buf[CL_DGRAM_MAX + 1];
        struct sockaddr_in src;
        socklen_t sl = sizeof src;
        ssize_t n = recvfrom(c->udp_fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&src, &sl);
        if (n <= 0 || src.sin_family != AF_INET || __atomic_load_n(&c->left_requested, __ATOMIC_RELAXED)) continue;
        char s[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &src.sin_addr, s, sizeof s);
        heard(c, buf, (size_t)n, s);
    }
    return NULL;
}

int cl_discovery_start(byoai_cluster *c, byoai_error *err) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(c->disc_port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(fd);
        return byoai_error_set(err, BYOAI_EIO, "cannot listen for announcements on UDP port %u: %s (use "
                               "--discovery-port or --no-discovery)", c->disc_port, strerror(e));
    }
    c->udp_fd = fd;
    if (pthread_create(&c->disc, NULL, disc_main, c) != 0) {
        close(fd);
        c->udp_fd = -1;
        return byoai_error_set(err, BYOAI_ENOMEM, "cannot start the discovery thread");
    }
    c->disc_started = true;
    return 0;
}

void cl_discovery_stop(byoai_cluster *c) {
    if (!c->disc_started) return;
    pthread_join(c->disc, NULL);
    c->disc_started = false;
    close(c->udp_fd);
    c->udp_fd = -1;
}

int byoai_cluster_best_address(char *out, size_t cap) {
    cl_iface ifs[CL_MAX_ADDRS];
    int n = cl_ifaces(ifs, CL_MAX_ADDRS);
    snprintf(out, cap, "%s", n > 0 ? ifs[0].addr : "127.0.0.1");
    return n > 0 ? 0 : BYOAI_ENOTFOUND;
}
