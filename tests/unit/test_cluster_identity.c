/* Node keys, member certificates, invite codes (single use), joining. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster_internal.h"

static void test_node_key_made_once(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    byoai_cluster_identity a, b;
    byoai_error err;
    assert_int_equal(byoai_cluster_identity_get(dir, &a, &err), 0);
    assert_int_equal(strlen(a.node_id), BYOAI_CLUSTER_ID_LEN);
    assert_false(a.member);
    assert_int_equal(byoai_cluster_identity_get(dir, &b, &err), 0);
    assert_string_equal(a.node_id, b.node_id); /* the same key on the second run */
    char path[600];
    snprintf(path, sizeof path, "%s/cluster/node.key", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* a key file others can read is refused */
    chmod(path, 0644);
    assert_int_equal(byoai_cluster_identity_get(dir, &b, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "chmod 600"));
    tu_rmtree(dir);
}

static void test_create_and_certificates(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    byoai_cluster_identity pub;
    byoai_error err;
    assert_int_equal(byoai_cluster_create(dir, "bad name!", &pub, &err), BYOAI_EINVAL);
    assert_int_equal(byoai_cluster_create(dir, "home", &pub, &err), 0);
    assert_true(pub.member && pub.admin);
    assert_string_equal(pub.cluster_name, "home");
    assert_int_equal(byoai_cluster_create(dir, "again", &pub, &err), BYOAI_EEXIST);

    cl_identity id;
    assert_int_equal(cl_identity_load(dir, &id, &err), 0);
    uint64_t now = byoai_time_unix();
    assert_int_equal(cl_cert_verify(&id.cert, id.cluster_pk, now, &err), 0);
    /* encode/decode round trip */
    uint8_t buf[CL_CERT_MAX];
    size_t len;
    assert_int_equal(cl_cert_encode(&id.cert, buf, sizeof buf, &len), 0);
    cl_cert back;
    assert_int_equal(cl_cert_decode(buf, len, &back, &err), 0);
    assert_memory_equal(back.node_pk, id.node_pk, 32);
    assert_int_equal(cl_cert_verify(&back, id.cluster_pk, now, &err), 0);
    /* any flipped byte breaks it (format or signature) */
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x01;
        cl_cert t;
        int rc = cl_cert_decode(buf, len, &t, NULL);
        if (rc == 0) assert_int_not_equal(cl_cert_verify(&t, id.cluster_pk, now, NULL), 0);
        buf[i] ^= 0x01;
    }
    for (size_t cut = 0; cut < len; cut++) assert_int_not_equal(cl_cert_decode(buf, cut, &back, NULL), 0);
    /* another cluster's key does not verify it */
    uint8_t opk[32], osk[64];
    crypto_sign_keypair(opk, osk);
    assert_int_equal(cl_cert_verify(&id.cert, opk, now, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "another cluster"));
    /* a certificate the node signed itself is not a membership */
    cl_cert self = id.cert;
    memcpy(self.cluster_pk, id.cluster_pk, 32);
    cl_cert_sign(&self, id.node_sk);
    assert_int_equal(cl_cert_verify(&self, id.cluster_pk, now, &err), BYOAI_EAUTH);
    /* expired, and issued in the future */
    cl_cert exp = id.cert;
    exp.expires = now - 10;
    cl_cert_sign(&exp, id.cluster_sk);
    assert_int_equal(cl_cert_verify(&exp, id.cluster_pk, now, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "expired"));
    cl_cert fut = id.cert;
    fut.issued = now + 100000;
    cl_cert_sign(&fut, id.cluster_sk);
    assert_int_equal(cl_cert_verify(&fut, id.cluster_pk, now, &err), BYOAI_EAUTH);
    cl_identity_wipe(&id);
    /* leaving: the admin must force it */
    assert_int_equal(byoai_cluster_leave(dir, false, &err), BYOAI_EBUSY);
    assert_int_equal(byoai_cluster_leave(dir, true, &err), 0);
    assert_int_equal(byoai_cluster_identity_get(dir, &pub, &err), 0);
    assert_false(pub.member);
    assert_int_equal(byoai_cluster_leave(dir, true, &err), BYOAI_ENOTFOUND);
    tu_rmtree(dir);
}

static void test_invite_codes(void **state) {
    (void)state;
    cl_invite_code c = {.port = 47475}, d;
    for (int i = 0; i < 16; i++) c.cluster_fp[i] = (uint8_t)i, c.secret[i] = (uint8_t)(200 + i);
    snprintf(c.host, sizeof c.host, "192.168.1.20");
    char code[BYOAI_CLUSTER_CODE_MAX];
    assert_int_equal(cl_invite_encode(&c, code, sizeof code), 0);
    assert_true(!strncmp(code, "bx1-", 4));
    byoai_error err;
    assert_int_equal(cl_invite_decode(code, &d, &err), 0);
    assert_memory_equal(c.secret, d.secret, 16);
    assert_memory_equal(c.cluster_fp, d.cluster_fp, 16);
    assert_string_equal(d.host, "192.168.1.20");
    assert_int_equal(d.port, 47475);
    /* damaged codes */
    assert_int_equal(cl_invite_decode("hello", &d, &err), BYOAI_EINVAL);
    assert_int_equal(cl_invite_decode("bx1-", &d, &err), BYOAI_EINVAL);
    assert_int_equal(cl_invite_decode("bx1-!!!!", &d, &err), BYOAI_EINVAL);
    char cut[BYOAI_CLUSTER_CODE_MAX];
    snprintf(cut, sizeof cut, "%.*s", 20, code);
    assert_int_equal(cl_invite_decode(cut, &d, &err), BYOAI_EINVAL);
    /* every prefix and every damaged character either fails or decodes to something else */
    for (size_t i = 4; i < strlen(code); i++) {
        char t[BYOAI_CLUSTER_CODE_MAX];
        snprintf(t, sizeof t, "%s", code);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        if (cl_invite_decode(t, &d, NULL) == 0)
            assert_true(memcmp(d.secret, c.secret, 16) || memcmp(d.cluster_fp, c.cluster_fp, 16) ||
                        strcmp(d.host, c.host) || d.port != c.port);
    }
}

static void test_invites_single_use(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    byoai_error err;
    byoai_cluster_identity pub;
    assert_int_equal(byoai_cluster_create(dir, "home", &pub, &err), 0);
    cl_identity id;
    assert_int_equal(cl_identity_load(dir, &id, &err), 0);
    cl_invite_code a, b;
    snprintf(a.host, sizeof a.host, "h");
    assert_int_equal(cl_invite_create(&id, 3600, &a, &err), 0);
    assert_int_equal(cl_invite_create(&id, 3600, &b, &err), 0);
    uint8_t ida[8], idb[8], sec[16], pk[32] = {1};
    cl_invite_id(a.secret, ida);
    cl_invite_id(b.secret, idb);
    assert_int_equal(cl_invite_lookup(&id, ida, sec, &err), 0);
    assert_memory_equal(sec, a.secret, 16);
    assert_int_equal(cl_invite_consume(&id, ida, pk, &err), 0);
    assert_int_equal(cl_invite_consume(&id, ida, pk, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "already used"));
    assert_int_equal(cl_invite_lookup(&id, ida, sec, &err), BYOAI_EAUTH);
    /* the other invite is untouched */
    assert_int_equal(cl_invite_consume(&id, idb, pk, &err), 0);
    uint8_t unknown[8] = {9, 9, 9};
    assert_int_equal(cl_invite_lookup(&id, unknown, sec, &err), BYOAI_EAUTH);
    /* invites.json is private */
    char path[600];
    snprintf(path, sizeof path, "%s/cluster/invites.json", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    /* only the admin invites */
    id.admin = false;
    assert_int_equal(cl_invite_create(&id, 3600, &a, &err), BYOAI_EAUTH);
    cl_identity_wipe(&id);
    tu_rmtree(dir);
}

/* ---- the join exchange over a socket pair ------------------------------------------------------ */

typedef struct {
    cl_identity *admin;
    int fd;
    int rc;
    cl_cert issued;
    byoai_error err;
} serve_arg;

static void *serve_main(void *p) {
    serve_arg *a = p;
    uint8_t j1[CL_JOIN_M1_LEN];
    a->rc = cl_read_full(a->fd, j1, sizeof j1, byoai_time_now() + 5, &a->err);
    if (!a->rc) a->rc = memcmp(j1, CL_JOIN_MAGIC, 8) ? BYOAI_EFORMAT : cl_join_serve(a->admin, a->fd, j1, "test", 5, &a->issued, &a->err);
    close(a->fd);
    return NULL;
}

/* run the exchange over a socketpair (cl_join_run dials TCP, so drive the
 * joiner side through a tiny listener on 127.0.0.1 instead) */
#include <arpa/inet.h>
#include <netinet/in.h>

typedef struct {
    int lfd;
    cl_identity *admin;
    serve_arg sa;
} listener_arg;

static void *listen_main(void *p) {
    listener_arg *l = p;
    l->sa.fd = accept(l->lfd, NULL, NULL);
    l->sa.admin = l->admin;
    serve_main(&l->sa);
    return NULL;
}

static int join_once_err(cl_identity *admin, cl_identity *joiner, cl_invite_code *code, serve_arg *out,
                         byoai_error *err_out) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    listen(lfd, 1);
    socklen_t sl = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &sl);
    code->port = ntohs(a.sin_port);
    snprintf(code->host, sizeof code->host, "127.0.0.1");
    listener_arg la = {.lfd = lfd, .admin = admin};
    pthread_t t;
    pthread_create(&t, NULL, listen_main, &la);
    byoai_error err = {0};
    int rc = cl_join_run(joiner, code, 5, &err);
    pthread_join(t, NULL);
    close(lfd);
    *out = la.sa;
    if (err_out) *err_out = err;
    return rc;
}

static int join_once(cl_identity *admin, cl_identity *joiner, cl_invite_code *code, serve_arg *out) {
    return join_once_err(admin, joiner, code, out, NULL);
}

static void test_join(void **state) {
    (void)state;
    const char *da = tu_tmpdir(), *db = tu_tmpdir(), *dc = tu_tmpdir();
    byoai_error err;
    byoai_cluster_identity pub;
    assert_int_equal(byoai_cluster_create(da, "home", &pub, &err), 0);
    cl_identity admin, b, c;
    assert_int_equal(cl_identity_load(da, &admin, &err), 0);
    assert_int_equal(cl_identity_load(db, &b, &err), 0);
    assert_int_equal(cl_identity_load(dc, &c, &err), 0);
    cl_invite_code code;
    snprintf(code.host, sizeof code.host, "x");
    assert_int_equal(cl_invite_create(&admin, 3600, &code, &err), 0);

    /* a wrong secret with the right invite id: refused, and the invite survives */
    cl_invite_code wrong = code;
    serve_arg sa;
    uint8_t real_secret[16];
    memcpy(real_secret, code.secret, 16);
    /* keep the id (derived from the secret) but use another key: patch the
     * invite table so that the id of `wrong` maps to the real secret */
    wrong.secret[0] ^= 1;
    {
        uint8_t idw[8];
        cl_invite_id(wrong.secret, idw);
        char path[600];
        snprintf(path, sizeof path, "%s/cluster/invites.json", da);
        char *data;
        size_t len;
        assert_int_equal(byoai_fs_read_all(path, 0, &data, &len, &err), 0);
        uint8_t idr[8];
        char hr[17], hw[17];
        cl_invite_id(real_secret, idr);
        cl_hex(idr, 8, hr);
        cl_hex(idw, 8, hw);
        char *at = strstr(data, hr);
        assert_non_null(at);
        memcpy(at, hw, 16);
        assert_int_equal(byoai_fs_write_atomic(path, data, len, &err), 0);
        free(data);
        /* now id(wrong) names the entry whose secret is real_secret: a joiner
         * holding `wrong` knows the id but not the secret */
        assert_int_not_equal(join_once(&admin, &b, &wrong, &sa), 0);
        assert_int_not_equal(sa.rc, 0); /* the joiner sees the admin's MAC fail and hangs up */
        assert_false(b.member);
        /* restore */
        assert_int_equal(byoai_fs_read_all(path, 0, &data, &len, &err), 0);
        at = strstr(data, hw);
        memcpy(at, hr, 16);
        assert_int_equal(byoai_fs_write_atomic(path, data, len, &err), 0);
        free(data);
    }
    /* the right code: a certificate for b */
    assert_int_equal(join_once(&admin, &b, &code, &sa), 0);
    assert_int_equal(sa.rc, 0);
    assert_true(b.member && !b.admin);
    assert_memory_equal(b.cluster_pk, admin.cluster_pk, 32);
    assert_int_equal(cl_cert_verify(&b.cert, admin.cluster_pk, byoai_time_unix(), &err), 0);
    assert_memory_equal(b.cert.node_pk, b.node_pk, 32);
    /* the joiner learnt the admin's node key: its first link goes to that key */
    assert_int_equal(b.n_peers, 1);
    assert_true(b.peer_has_pk[0]);
    assert_memory_equal(b.peer_pk[0], admin.node_pk, 32);
    assert_int_equal(cl_identity_save_membership(&b, &err), 0);
    cl_identity b2;
    assert_int_equal(cl_identity_load(db, &b2, &err), 0);
    assert_true(b2.peer_has_pk[0]);
    assert_memory_equal(b2.peer_pk[0], admin.node_pk, 32);
    cl_identity_wipe(&b2);
    byoai_cluster_identity pb;
    assert_int_equal(byoai_cluster_identity_get(db, &pb, &err), 0);
    assert_true(pb.member);
    assert_string_equal(pb.cluster_id, pub.cluster_id);
    /* the same code again: refused, the admin closing in silence */
    assert_int_equal(join_once_err(&admin, &c, &code, &sa, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "unknown, already used or expired"));
    assert_int_equal(sa.rc, BYOAI_EAUTH);
    assert_false(c.member);
    /* a code naming another cluster: the joiner refuses the answer */
    cl_invite_code other;
    snprintf(other.host, sizeof other.host, "x");
    assert_int_equal(cl_invite_create(&admin, 3600, &other, &err), 0);
    other.cluster_fp[0] ^= 0xFF;
    assert_int_not_equal(join_once(&admin, &c, &other, &sa), 0);
    assert_false(c.member);
    cl_identity_wipe(&admin);
    cl_identity_wipe(&b);
    cl_identity_wipe(&c);
    tu_rmtree(da);
    tu_rmtree(db);
    tu_rmtree(dc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_key_made_once), cmocka_unit_test(test_create_and_certificates),
        cmocka_unit_test(test_invite_codes),       cmocka_unit_test(test_invites_single_use),
        cmocka_unit_test(test_join),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
