/* Links: the authenticated handshake and encrypted frames, against
 * non-members, foreign clusters, reflection, replay, tampering and oversize
 * frames (a relay in the middle plays the attacker); the responder says
 * nothing to a first message that does not authenticate. */
#include "testutil.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/cluster_internal.h"

typedef struct {
    const char *dirs[4];
    cl_identity admin, b, foreign, fake;
} world;

/* a member of admin's cluster with a certificate signed by its key */
static void make_member(cl_identity *admin, const char *dir, cl_identity *out) {
    byoai_error err;
    assert_int_equal(cl_identity_load(dir, out, &err), 0);
    memcpy(out->cluster_pk, admin->cluster_pk, 32);
    memcpy(out->cluster_id, admin->cluster_id, sizeof out->cluster_id);
    memset(&out->cert, 0, sizeof out->cert);
    memcpy(out->cert.cluster_pk, admin->cluster_pk, 32);
    memcpy(out->cert.node_pk, out->node_pk, 32);
    out->cert.issued = byoai_time_unix();
    snprintf(out->cert.name, sizeof out->cert.name, "member");
    cl_cert_sign(&out->cert, admin->cluster_sk);
    out->member = true;
    cl_identity_derive(out);
}

static int setup(void **state) {
    world *w = calloc(1, sizeof *w);
    byoai_error err;
    byoai_cluster_identity pub;
    for (int i = 0; i < 4; i++) w->dirs[i] = strdup(tu_tmpdir());
    assert_int_equal(byoai_cluster_create(w->dirs[0], "home", &pub, &err), 0);
    assert_int_equal(cl_identity_load(w->dirs[0], &w->admin, &err), 0);
    make_member(&w->admin, w->dirs[1], &w->b);
    /* another cluster */
    assert_int_equal(byoai_cluster_create(w->dirs[2], "other", &pub, &err), 0);
    assert_int_equal(cl_identity_load(w->dirs[2], &w->foreign, &err), 0);
    /* claims our cluster but signed its own certificate */
    assert_int_equal(cl_identity_load(w->dirs[3], &w->fake, &err), 0);
    memcpy(w->fake.cluster_pk, w->admin.cluster_pk, 32);
    memcpy(w->fake.cert.cluster_pk, w->admin.cluster_pk, 32);
    memcpy(w->fake.cert.node_pk, w->fake.node_pk, 32);
    w->fake.cert.issued = byoai_time_unix();
    cl_cert_sign(&w->fake.cert, w->fake.node_sk);
    w->fake.member = true;
    cl_identity_derive(&w->fake);
    *state = w;
    return 0;
}

static int teardown(void **state) {
    world *w = *state;
    for (int i = 0; i < 4; i++) {
        tu_rmtree(w->dirs[i]);
        free((void *)w->dirs[i]);
    }
    free(w);
    return 0;
}

/* ---- two ends in two threads -------------------------------------------------------------------- */

typedef struct {
    const cl_identity *id;
    int fd;
    bool initiator;
    const uint8_t *expect;
    double timeout;
    cl_link *link;
    int rc;
    byoai_error err;
} end_arg;

static void *end_main(void *p) {
    end_arg *e = p;
    e->rc = cl_link_handshake(e->id, e->fd, e->initiator, e->expect, e->timeout, &e->link, &e->err);
    return NULL;
}

static void pair_fds(int fds[2]) { assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }

/* handshake between i (initiator) on fd_i and r (responder) on fd_r; the
 * initiator's first message goes to expect's key when given, else to the
 * cluster key */
static void handshake_to(const cl_identity *i, int fd_i, const cl_identity *r, int fd_r, const uint8_t *expect,
                         end_arg *ei, end_arg *er) {
    *ei = (end_arg){.id = i, .fd = fd_i, .initiator = true, .timeout = 3, .expect = expect};
    *er = (end_arg){.id = r, .fd = fd_r, .initiator = false, .timeout = 3};
    pthread_t a, b;
    pthread_create(&a, NULL, end_main, ei);
    pthread_create(&b, NULL, end_main, er);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
}

static void handshake(const cl_identity *i, int fd_i, const cl_identity *r, int fd_r, end_arg *ei, end_arg *er) {
    handshake_to(i, fd_i, r, fd_r, NULL, ei, er);
}

/* the responder refused in silence: the initiator got not one byte back */
static void assert_silent_refusal(const end_arg *ei, const end_arg *er) {
    assert_int_equal(ei->rc, BYOAI_EAUTH);
    if (!strstr(ei->err.msg, "closed the connection without answering")) fail_msg("initiator: %s", ei->err.msg);
    assert_int_not_equal(er->rc, 0);
}

static void test_handshake_and_frames(void **state) {
    world *w = *state;
    int fds[2];
    pair_fds(fds);
    end_arg ei, er;
    /* to b's own key (known from discovery or the member list) */
    handshake_to(&w->admin, fds[0], &w->b, fds[1], w->b.node_pk, &ei, &er);
    assert_int_equal(ei.rc, 0);
    assert_int_equal(er.rc, 0);
    assert_memory_equal(cl_link_peer_pk(ei.link), w->b.node_pk, 32);
    cl_link_free(ei.link);
    cl_link_free(er.link);
    /* to the cluster key (only an address known) */
    pair_fds(fds);
    handshake(&w->admin, fds[0], &w->b, fds[1], &ei, &er);
    assert_int_equal(ei.rc, 0);
    assert_int_equal(er.rc, 0);
    assert_memory_equal(cl_link_peer_pk(ei.link), w->b.node_pk, 32);
    assert_memory_equal(cl_link_peer_pk(er.link), w->admin.node_pk, 32);
    assert_true(cl_link_initiator(ei.link));
    assert_false(cl_link_initiator(er.link));
    byoai_error err;
    /* both directions, several sizes */
    size_t sizes[] = {0, 1, 100, 70000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint8_t *m = malloc(sizes[k] + 1);
        for (size_t i = 0; i < sizes[k]; i++) m[i] = (uint8_t)(i * 7 + k);
        cl_link *from = k % 2 ? er.link : ei.link, *to = k % 2 ? ei.link : er.link;
        assert_int_equal(cl_link_send(from, m, sizes[k], &err), 0);
        uint8_t *got;
        size_t len;
        assert_int_equal(cl_link_recv(to, &got, &len, 3, &err), 0);
        assert_int_equal(len, sizes[k]);
        if (len) assert_memory_equal(got, m, len);
        free(got);
        free(m);
    }
    cl_link_stats st;
    cl_link_get_stats(ei.link, &st);
    assert_true(st.frames_tx >= 2 && st.bytes_tx > 100);
    /* a message over the limit is refused before anything is sent */
    assert_int_equal(cl_link_send(ei.link, "x", (size_t)CL_MAX_FRAME + 1, &err), BYOAI_ERANGE);
    cl_link_free(ei.link);
    cl_link_free(er.link);
}

typedef struct {
    cl_link *l;
    uint8_t *m;
    size_t n;
    int rc;
} send_arg;

static void *send_main(void *p) {
    send_arg *s = p;
    s->rc = cl_link_send(s->l, s->m, s->n, NULL);
    return NULL;
}

static void test_large_frame(void **state) {
    world *w = *state;
    int fds[2];
    pair_fds(fds);
    end_arg ei, er;
    handshake(&w->admin, fds[0], &w->b, fds[1], &ei, &er);
    assert_int_equal(ei.rc, 0);
    size_t n = 5u << 20;
    uint8_t *m = malloc(n);
    for (size_t i = 0; i < n; i++) m[i] = (uint8_t)(i ^ (i >> 8));
    send_arg sa = {ei.link, m, n, -1};
    pthread_t t;
    pthread_create(&t, NULL, send_main, &sa);
    uint8_t *got;
    size_t len;
    byoai_error err;
    assert_int_equal(cl_link_recv(er.link, &got, &len, 10, &err), 0);
    pthread_join(t, NULL);
    assert_int_equal(sa.rc, 0);
    assert_int_equal(len, n);
    assert_memory_equal(got, m, n);
    free(got);
    free(m);
    cl_link_free(ei.link);
    cl_link_free(er.link);
}

static void test_refusals(void **state) {
    world *w = *state;
    int fds[2];
    end_arg ei, er;
    /* another cluster's node: its first message does not even decrypt here */
    pair_fds(fds);
    handshake(&w->foreign, fds[0], &w->admin, fds[1], &ei, &er);
    assert_silent_refusal(&ei, &er);
    assert_int_equal(er.rc, BYOAI_EAUTH);
    assert_non_null(strstr(er.err.msg, "does not authenticate"));
    /* ... nor when it knows the responder's node key (the cluster is bound into the first message) */
    pair_fds(fds);
    handshake_to(&w->foreign, fds[0], &w->admin, fds[1], w->admin.node_pk, &ei, &er);
    assert_silent_refusal(&ei, &er);
    assert_non_null(strstr(er.err.msg, "does not authenticate"));
    /* a self-signed certificate by someone who knows the cluster's public key:
     * refused in silence (the admin's certificate is never sent to it) */
    pair_fds(fds);
    handshake(&w->fake, fds[0], &w->admin, fds[1], &ei, &er);
    assert_silent_refusal(&ei, &er);
    assert_int_equal(er.rc, BYOAI_EAUTH);
    assert_non_null(strstr(er.err.msg, "not signed by this cluster"));
    /* the same pretender as responder: the member refuses its certificate */
    pair_fds(fds);
    handshake(&w->admin, fds[0], &w->fake, fds[1], &ei, &er);
    assert_int_equal(ei.rc, BYOAI_EAUTH);
    assert_non_null(strstr(ei.err.msg, "not signed by this cluster"));
    assert_int_not_equal(er.rc, 0);
    /* a stolen certificate: b's certificate with another node's key */
    cl_identity thief = w->fake;
    thief.cert = w->b.cert;
    pair_fds(fds);
    handshake(&thief, fds[0], &w->admin, fds[1], &ei, &er);
    assert_silent_refusal(&ei, &er);
    assert_int_equal(er.rc, BYOAI_EAUTH);
    assert_non_null(strstr(er.err.msg, "bad handshake signature"));
    pair_fds(fds);
    handshake(&w->admin, fds[0], &thief, fds[1], &ei, &er);
    assert_int_equal(ei.rc, BYOAI_EAUTH);
    assert_non_null(strstr(ei.err.msg, "bad handshake signature"));
    /* ... and with b's key expected, the thief cannot even read the first message */
    pair_fds(fds);
    handshake_to(&w->admin, fds[0], &thief, fds[1], w->b.node_pk, &ei, &er);
    assert_silent_refusal(&ei, &er);
    assert_non_null(strstr(er.err.msg, "does not authenticate"));
    /* reflection: a node talking to itself (its own certificate comes back) */
    pair_fds(fds);
    handshake(&w->admin, fds[0], &w->admin, fds[1], &ei, &er);
    assert_silent_refusal(&ei, &er);
    assert_non_null(strstr(er.err.msg, "reflected"));
    /* the wrong node at an address: the first message was for another key */
    pair_fds(fds);
    handshake_to(&w->admin, fds[0], &w->b, fds[1], w->foreign.node_pk, &ei, &er);
    assert_silent_refusal(&ei, &er);
    assert_non_null(strstr(ei.err.msg, "or it is not node"));
    /* a peer that says nothing: the handshake times out */
    pair_fds(fds);
    cl_link *l;
    byoai_error err;
    double t0 = byoai_time_now();
    assert_int_equal(cl_link_handshake(&w->admin, fds[1], false, NULL, 0.3, &l, &err), BYOAI_ETIMEOUT);
    assert_true(byoai_time_now() - t0 < 2);
    close(fds[0]);
    /* garbage instead of the protocol */
    pair_fds(fds);
    assert_int_equal(write(fds[0], "GET / HTTP/1.1\r\n\r\n", 18), 18);
    assert_int_equal(cl_link_handshake(&w->admin, fds[1], false, NULL, 1, &l, &err), BYOAI_EFORMAT);
    close(fds[0]);
    /* the previous protocol version is recognised (and refused) */
    pair_fds(fds);
    assert_int_equal(write(fds[0], CL_LINK_OLD_MAGIC, 8), 8);
    assert_int_equal(cl_link_handshake(&w->admin, fds[1], false, NULL, 1, &l, &err), BYOAI_EFORMAT);
    assert_non_null(strstr(err.msg, "older"));
    close(fds[0]);
}

/* A first message with the right framing and random contents: the
 * responder closes without writing a byte. */
static void test_silent_to_strangers(void **state) {
    world *w = *state;
    uint8_t m1[CL_HS_M1_MAX], eph_sk[32], th[32], es[32];
    size_t len;
    byoai_error err;
    assert_int_equal(cl_hs_m1_make(&w->b, NULL, m1, &len, eph_sk, th, es, &err), 0);
    size_t need;
    assert_int_equal(cl_hs_first(m1, len, &need), CL_FIRST_LINK);
    assert_int_equal(need, len);
    for (int k = 0; k < 3; k++) {
        uint8_t bad[CL_HS_M1_MAX];
        memcpy(bad, m1, len);
        if (k == 0) randombytes_buf(bad + 43, len - 43);     /* the box */
        if (k == 1) bad[9] ^= 1;                             /* the ephemeral key */
        if (k == 2) bad[8] = bad[8] == 1 ? 2 : 1;            /* the mode */
        cl_hs_m1 st;
        assert_int_equal(cl_hs_m1_open(&w->admin, bad, len, &st, &err), BYOAI_EAUTH);
        int fds[2];
        pair_fds(fds);
        assert_int_equal(write(fds[0], bad, len), (ssize_t)len);
        cl_link *l;
        assert_int_equal(cl_link_handshake(&w->admin, fds[1], false, NULL, 1, &l, &err), BYOAI_EAUTH);
        uint8_t got[64];
        assert_int_equal(read(fds[0], got, sizeof got), 0); /* EOF, nothing before it */
        close(fds[0]);
    }
    /* the untouched message opens, and names its sender */
    cl_hs_m1 st;
    assert_int_equal(cl_hs_m1_open(&w->admin, m1, len, &st, &err), 0);
    assert_memory_equal(st.cert.node_pk, w->b.node_pk, 32);
    /* short and oversized framing is told apart from the start */
    assert_int_equal(cl_hs_first((const uint8_t *)"BYO", 3, &need), CL_FIRST_MORE);
    assert_int_equal(cl_hs_first((const uint8_t *)"GET / HT", 8, &need), CL_FIRST_BAD);
    uint8_t huge[43];
    memcpy(huge, m1, 43);
    huge[41] = 0xFF;
    huge[42] = 0xFF;
    assert_int_equal(cl_hs_first(huge, 43, &need), CL_FIRST_BAD);
}

/* a replayed first message is refused (in silence) by a responder that saw it */
typedef struct {
    uint8_t pk[32];
    uint64_t ts;
    bool have;
} seen_ts;

static bool fresh(void *user, const uint8_t pk[32], uint64_t ts) {
    seen_ts *s = user;
    if (s->have && !memcmp(s->pk, pk, 32) && ts <= s->ts) return false;
    memcpy(s->pk, pk, 32);
    s->ts = ts;
    s->have = true;
    return true;
}

static void test_replayed_first_message(void **state) {
    world *w = *state;
    cl_identity resp = w->b;
    seen_ts seen = {0};
    resp.m1_fresh = fresh;
    resp.m1_user = &seen;
    uint8_t m1[CL_HS_M1_MAX], eph_sk[32], th[32], es[32];
    size_t len;
    byoai_error err;
    assert_int_equal(cl_hs_m1_make(&w->admin, w->b.node_pk, m1, &len, eph_sk, th, es, &err), 0);
    cl_hs_m1 st;
    assert_int_equal(cl_hs_m1_open(&resp, m1, len, &st, &err), 0);
    assert_int_equal(cl_hs_m1_open(&resp, m1, len, &st, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "replayed"));
    /* a later message of the same node is fine */
    assert_int_equal(cl_hs_m1_make(&w->admin, w->b.node_pk, m1, &len, eph_sk, th, es, &err), 0);
    assert_int_equal(cl_hs_m1_open(&resp, m1, len, &st, &err), 0);
    sodium_memzero(&st, sizeof st);
}

/* ---- the attacker in the middle ---------------------------------------------------------------------- */

enum { R_PASS, R_TAMPER, R_REPLAY, R_DROP, R_REFLECT, R_OVERSIZE };

typedef struct {
    int a, b;        /* relay ends: a faces the initiator, b the responder */
    int mode;
    volatile int armed;
    volatile int stop;
    uint8_t *rec;    /* bytes from the initiator before arming */
    size_t rec_len, rec_cap;
    uint8_t pend[1 << 16];
    size_t pend_len;
    int frames;
} relay;

static void fwd(int fd, const void *p, size_t n) {
    const uint8_t *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w <= 0) return;
        c += w;
        n -= (size_t)w;
    }
}

static void *relay_main(void *p) {
    relay *r = p;
    uint8_t buf[1 << 16];
    while (!r->stop) {
        struct pollfd pf[2] = {{r->a, POLLIN, 0}, {r->b, POLLIN, 0}};
        if (poll(pf, 2, 50) <= 0) continue;
        if (pf[1].revents & POLLIN) {
            ssize_t n = read(r->b, buf, sizeof buf);
            if (n <= 0) break;
            fwd(r->a, buf, (size_t)n);
        }
        if (pf[0].revents & POLLIN) {
            ssize_t n = read(r->a, buf, sizeof buf);
            if (n <= 0) break;
            if (!r->armed) {
                if (r->rec_len + (size_t)n > r->rec_cap) {
                    r->rec_cap = (r->rec_len + (size_t)n) * 2;
                    r->rec = realloc(r->rec, r->rec_cap);
                }
                memcpy(r->rec + r->rec_len, buf, (size_t)n);
                r->rec_len += (size_t)n;
                fwd(r->b, buf, (size_t)n);
                continue;
            }
            memcpy(r->pend + r->pend_len, buf, (size_t)n);
            r->pend_len += (size_t)n;
            while (r->pend_len >= 4) {
                size_t cl = (size_t)r->pend[0] << 24 | (size_t)r->pend[1] << 16 | (size_t)r->pend[2] << 8 | r->pend[3];
                if (r->pend_len < 4 + cl) break;
                uint8_t *f = r->pend;
                size_t fl = 4 + cl;
                int k = r->frames++;
                if (k == 0 && r->mode == R_TAMPER) f[4 + cl / 2] ^= 0x10;
                if (k == 0 && r->mode == R_OVERSIZE) {
                    uint8_t big[4] = {0x40, 0, 0, 0};
                    fwd(r->b, big, 4);
                } else if (k == 0 && r->mode == R_DROP) {
                    /* lost */
                } else if (k == 0 && r->mode == R_REFLECT) {
                    fwd(r->a, f, fl);
                } else {
                    fwd(r->b, f, fl);
                    if (k == 0 && r->mode == R_REPLAY) fwd(r->b, f, fl);
                }
                memmove(r->pend, r->pend + fl, r->pend_len - fl);
                r->pend_len -= fl;
            }
        }
    }
    return NULL;
}

static void attack(world *w, int mode, int expect_b, int expect_a) {
    int p1[2], p2[2];
    pair_fds(p1);
    pair_fds(p2);
    relay *r = calloc(1, sizeof *r);
    r->a = p1[1];
    r->b = p2[0];
    r->mode = mode;
    pthread_t t;
    pthread_create(&t, NULL, relay_main, r);
    end_arg ei, er;
    handshake(&w->admin, p1[0], &w->b, p2[1], &ei, &er);
    assert_int_equal(ei.rc, 0);
    assert_int_equal(er.rc, 0);
    r->armed = 1;
    byoai_error err;
    const char *m1 = "first message", *m2 = "second message";
    assert_int_equal(cl_link_send(ei.link, m1, strlen(m1), &err), 0);
    assert_int_equal(cl_link_send(ei.link, m2, strlen(m2), &err), 0);
    uint8_t *got;
    size_t len;
    if (mode == R_REFLECT) {
        /* the initiator gets its own frame back: a different key, refused */
        assert_int_equal(cl_link_recv(ei.link, &got, &len, 2, &err), expect_a);
        assert_non_null(strstr(err.msg, "failed authentication"));
    }
    int rc = cl_link_recv(er.link, &got, &len, 2, &err);
    if (rc == 0) {
        /* the first frame passes when only a later one is attacked (replay): the next must not */
        assert_int_equal(mode, R_REPLAY);
        assert_int_equal(len, strlen(m1));
        free(got);
        rc = cl_link_recv(er.link, &got, &len, 2, &err);
        if (rc == 0) free(got);
    }
    assert_int_equal(rc, expect_b);
    if (expect_b == BYOAI_EAUTH) assert_non_null(strstr(err.msg, "failed authentication"));
    r->stop = 1;
    pthread_join(t, NULL);
    close(r->a);
    close(r->b);
    free(r->rec);
    free(r);
    cl_link_free(ei.link);
    cl_link_free(er.link);
}

static void test_tampered_frame(void **state) { attack(*state, R_TAMPER, BYOAI_EAUTH, 0); }
static void test_replayed_frame(void **state) { attack(*state, R_REPLAY, BYOAI_EAUTH, 0); }
static void test_dropped_frame(void **state) { attack(*state, R_DROP, BYOAI_EAUTH, 0); }
static void test_reflected_frame(void **state) { attack(*state, R_REFLECT, BYOAI_EAUTH, BYOAI_EAUTH); }
static void test_oversized_frame(void **state) { attack(*state, R_OVERSIZE, BYOAI_EFORMAT, 0); }

/* a recorded handshake replayed to the responder later fails: its
 * signature covers the earlier responder's fresh nonce and key */
static void test_replayed_handshake(void **state) {
    world *w = *state;
    int p1[2], p2[2];
    pair_fds(p1);
    pair_fds(p2);
    relay *r = calloc(1, sizeof *r);
    r->a = p1[1];
    r->b = p2[0];
    pthread_t t;
    pthread_create(&t, NULL, relay_main, r);
    end_arg ei, er;
    handshake(&w->admin, p1[0], &w->b, p2[1], &ei, &er);
    assert_int_equal(ei.rc, 0);
    r->stop = 1;
    pthread_join(t, NULL);
    cl_link_free(ei.link);
    cl_link_free(er.link);
    assert_true(r->rec_len > 105);
    /* now replay every byte the initiator sent to a responder that does not
     * remember the first message: the answer goes to keys the replayer does
     * not have, and the recorded confirmation fails */
    int fds[2];
    pair_fds(fds);
    fwd(fds[0], r->rec, r->rec_len);
    cl_link *l;
    byoai_error err;
    assert_int_equal(cl_link_handshake(&w->b, fds[1], false, NULL, 1, &l, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "failed authentication"));
    close(fds[0]);
    close(r->a);
    close(r->b);
    free(r->rec);
    free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_frames), cmocka_unit_test(test_large_frame),
        cmocka_unit_test(test_refusals),             cmocka_unit_test(test_tampered_frame),
        cmocka_unit_test(test_replayed_frame),       cmocka_unit_test(test_dropped_frame),
        cmocka_unit_test(test_reflected_frame),      cmocka_unit_test(test_oversized_frame),
        cmocka_unit_test(test_replayed_handshake),   cmocka_unit_test(test_silent_to_strangers),
        cmocka_unit_test(test_replayed_first_message),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
