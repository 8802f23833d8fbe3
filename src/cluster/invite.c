/*
 * Invites and joining.
 *
 * An invite code is "bx1-" + base64url(version | cluster id (16 bytes) |
 * secret (16 bytes) | port | host): where the admin's node listens, which
 * cluster to expect, and a one-time secret. The admin keeps the secret in
 * cluster/invites.json (0600) with an expiry and a used flag.
 *
 * The join exchange never sends the secret. Both sides make ephemeral X25519
 * keys; the session key is BLAKE2b keyed by the secret over the X25519
 * result and the transcript, so only someone holding the code can answer:
 *
 *   J1 joiner->admin  "BYOAI-J1" | ver | invite id | eph_J | n_J
 *   J2 admin->joiner  "BYOAI-J1" | status | eph_A | n_A | mac_A = MAC(K, "admin" | th)
 *   J3 joiner->admin  mac_J = MAC(K, "joiner" | th) | box(K_j2a: node key, proof signature, name)
 *   J4 admin->joiner  box(K_a2j: status | cluster key | cluster name | certificate | admin's node key)
 *
 * The invite is marked used (under a file lock) only after mac_J proves the
 * joiner holds the code, so nobody who merely saw the invite id can burn
 * it, and a second join with the same code fails. The joiner checks that
 * the cluster key matches the id in its code before it trusts anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cluster/cluster_internal.h"

#define CODE_PREFIX "bx1-"
#define JOIN_VERSION 1

void cl_cluster_fp16(const uint8_t cluster_pk[32], uint8_t out[16]) {
    char id[BYOAI_CLUSTER_ID_LEN + 1];
    cl_fingerprint(cluster_pk, id);
    cl_unhex(id, out, 16);
}

void cl_invite_id(const uint8_t secret[16], uint8_t out[8]) {
    crypto_generichash(out, 8, secret, 16, (const uint8_t *)"byoai-invite-id", 15);
}

int cl_invite_encode(const cl_invite_code *c, char *out, size_t cap) {
    uint8_t bin[1 + 16 + 16 + 2 + CL_ADDR_MAX];
    size_t hl = strlen(c->host);
    if (hl == 0 || hl >= CL_ADDR_MAX) return BYOAI_EINVAL;
    size_t n = 0;
    bin[n++] = JOIN_VERSION;
    memcpy(bin + n, c->cluster_fp, 16);
    n += 16;
    memcpy(bin + n, c->secret, 16);
    n += 16;
    bin[n++] = (uint8_t)(c->port >> 8);
    bin[n++] = (uint8_t)c->port;
    memcpy(bin + n, c->host, hl);
    n += hl;
    size_t pl = strlen(CODE_PREFIX);
    if (cap < pl + 1) return BYOAI_ERANGE;
    memcpy(out, CODE_PREFIX, pl);
    if (!cl_b64_encode(bin, n, out + pl, cap - pl)) return BYOAI_ERANGE;
    sodium_memzero(bin, sizeof bin);
    return 0;
}

int cl_invite_decode(const char *s, cl_invite_code *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    size_t pl = strlen(CODE_PREFIX);
    if (!s || strncmp(s, CODE_PREFIX, pl) || strlen(s) > BYOAI_CLUSTER_CODE_MAX)
        return byoai_error_set(err, BYOAI_EINVAL, "not an invite code (they start with '%s')", CODE_PREFIX);
    uint8_t bin[1 + 16 + 16 + 2 + CL_ADDR_MAX];
    size_t n;
    if (cl_b64_decode(s + pl, bin, sizeof bin, &n) || n < 1 + 16 + 16 + 2 + 1 || bin[0] != JOIN_VERSION)
        return byoai_error_set(err, BYOAI_EINVAL, "the invite code is damaged (copy it again, whole)");
    memcpy(out->cluster_fp, bin + 1, 16);
    memcpy(out->secret, bin + 17, 16);
    out->port = (uint16_t)(bin[33] << 8 | bin[34]);
    size_t hl = n - 35;
    if (hl >= sizeof out->host || out->port == 0)
        return byoai_error_set(err, BYOAI_EINVAL, "the invite code is damaged (copy it again, whole)");
    memcpy(out->host, bin + 35, hl);
    out->host[hl] = '\0';
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)out->host[i] <= 0x20 || out->host[i] == '/' || (unsigned char)out->host[i] >= 0x7F)
            return byoai_error_set(err, BYOAI_EINVAL, "the invite code is damaged (bad host)");
    sodium_memzero(bin, sizeof bin);
    return 0;
}

/* ---- the invite table -------------------------------------------------------------------- */

static int lock_invites(const cl_identity *id, int *fd, byoai_error *err) {
    char path[4400];
    snprintf(path, sizeof path, "%s/invites.lock", id->dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0) return byoai_error_set(err, BYOAI_EIO, "cannot open %s: %s", path, strerror(errno));
    if (flock(*fd, LOCK_EX) != 0) {
        close(*fd);
        return byoai_error_set(err, BYOAI_EIO, "cannot lock %s: %s", path, strerror(errno));
    }
    return 0;
}

static json_t *load_invites(const cl_identity *id) {
    char path[4400];
    snprintf(path, sizeof path, "%s/invites.json", id->dir);
    char *data;
    size_t len;
    json_t *j = NULL;
    if (byoai_fs_read_all(path, 16 << 20, &data, &len, NULL) == 0) {
        j = json_loadb(data, len, 0, NULL);
        sodium_memzero(data, len);
        free(data);
    }
    if (!json_is_object(j) || !json_is_array(json_object_get(j, "invites"))) {
        json_decref(j);
        j = json_pack("{s:[]}", "invites");
    }
    return j;
}

static int save_invites(const cl_identity *id, json_t *j, byoai_error *err) {
    char path[4400], tmp[4500];
    snprintf(path, sizeof path, "%s/invites.json", id->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    char *s = json_dumps(j, JSON_INDENT(2));
    if (!s) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = 0;
    size_t n = strlen(s);
    if (fd < 0 || write(fd, s, n) != (ssize_t)n || fsync(fd) != 0 || rename(tmp, path) != 0)
        rc = byoai_error_set(err, BYOAI_EIO, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    if (rc) unlink(tmp);
    else byoai_fs_sync_parent(path);
    sodium_memzero(s, n);
    free(s);
    return rc;
}

int cl_invite_create(const cl_identity *id, uint32_t ttl_s, cl_invite_code *code, byoai_error *err) {
    if (!id->admin)
        return byoai_error_set(err, BYOAI_EAUTH, "only the node that created the cluster (it holds the cluster key) "
                               "can invite");
    randombytes_buf(code->secret, sizeof code->secret);
    cl_cluster_fp16(id->cluster_pk, code->cluster_fp);
    uint8_t iid[8];
    cl_invite_id(code->secret, iid);
    char idhex[17], sechex[33];
    cl_hex(iid, 8, idhex);
    cl_hex(code->secret, 16, sechex);
    int lk;
    int rc = lock_invites(id, &lk, err);
    if (rc) return rc;
    json_t *j = load_invites(id);
    uint64_t now = byoai_time_unix();
    /* drop spent and expired invites */
    json_t *arr = json_object_get(j, "invites"), *keep = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        json_int_t exp = json_integer_value(json_object_get(v, "expires"));
        if (!json_is_true(json_object_get(v, "used")) && (uint64_t)exp > now) json_array_append(keep, v);
    }
    json_array_append_new(keep, json_pack("{s:s,s:s,s:I,s:I,s:b}", "id", idhex, "secret", sechex, "created",
                                          (json_int_t)now, "expires", (json_int_t)(now + (ttl_s ? ttl_s : 86400)),
                                          "used", 0));
    json_object_set_new(j, "invites", keep);
    rc = save_invites(id, j, err);
    json_decref(j);
    sodium_memzero(sechex, sizeof sechex);
    close(lk);
    return rc;
}

static json_t *find_invite(json_t *j, const uint8_t invite_id[8]) {
    char idhex[17];
    cl_hex(invite_id, 8, idhex);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "invites"), i, v) {
        const char *s = json_string_value(json_object_get(v, "id"));
        if (s && !strcmp(s, idhex)) return v;
    }
    return NULL;
}

static int check_invite(json_t *v, uint8_t secret[16], byoai_error *err) {
    if (!v) return byoai_error_set(err, BYOAI_EAUTH, "unknown invite code");
    if (json_is_true(json_object_get(v, "used"))) return byoai_error_set(err, BYOAI_EAUTH, "the invite code was already used");
    if ((uint64_t)json_integer_value(json_object_get(v, "expires")) < byoai_time_unix())
        return byoai_error_set(err, BYOAI_EAUTH, "the invite code has expired");
    const char *s = json_string_value(json_object_get(v, "secret"));
    if (!s || cl_unhex(s, secret, 16)) return byoai_error_set(err, BYOAI_EFORMAT, "invites.json is damaged");
    return 0;
}

int cl_invite_lookup(const cl_identity *id, const uint8_t invite_id[8], uint8_t secret[16], byoai_error *err) {
    int lk;
    int rc = lock_invites(id, &lk, err);
    if (rc) return rc;
    json_t *j = load_invites(id);
    rc = check_invite(find_invite(j, invite_id), secret, err);
    json_decref(j);
    close(lk);
    return rc;
}

int cl_invite_consume(const cl_identity *id, const uint8_t invite_id[8], const uint8_t node_pk[32], byoai_error *err) {
    int lk;
    int rc = lock_invites(id, &lk, err);
    if (rc) return rc;
    json_t *j = load_invites(id);
    json_t *v = find_invite(j, invite_id);
    uint8_t secret[16];
    rc = check_invite(v, secret, err);
    sodium_memzero(secret, sizeof secret);
    if (!rc) {
        char fp[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(node_pk, fp);
        json_object_set_new(v, "used", json_true());
        json_object_set_new(v, "used_by", json_string(fp));
        json_object_set_new(v, "used_at", json_integer((json_int_t)byoai_time_unix()));
        rc = save_invites(id, j, err);
    }
    json_decref(j);
    close(lk);
    return rc;
}

/* ---- the exchange ----------------------------------------------------------------------------- */

#define J1_LEN CL_JOIN_M1_LEN
#define J2_LEN (8 + 1 + 32 + 32 + 32)

/* The transcript both sides bind their keys and MACs to: J1 and J2 up to
 * (not including) J2's MAC. One definition, so that they cannot diverge. */
static void transcript_hash(const uint8_t *j1, const uint8_t *j2, uint8_t th[32]) {
    crypto_generichash_state s;
    crypto_generichash_init(&s, NULL, 0, 32);
    crypto_generichash_update(&s, (const uint8_t *)"byoai-join-v1", 13);
    crypto_generichash_update(&s, j1, J1_LEN);
    crypto_generichash_update(&s, j2, J2_LEN - 32);
    crypto_generichash_final(&s, th, 32);
}

static void join_keys(const uint8_t secret[16], const uint8_t dh[32], const uint8_t th[32], uint8_t k[32]) {
    crypto_generichash_state s;
    crypto_generichash_init(&s, secret, 16, 32);
    crypto_generichash_update(&s, (const uint8_t *)"byoai-join-v1", 13);
    crypto_generichash_update(&s, dh, 32);
    crypto_generichash_update(&s, th, 32);
    crypto_generichash_final(&s, k, 32);
}

static void mac(const uint8_t k[32], const char *label, const uint8_t th[32], uint8_t out[32]) {
    crypto_generichash_state s;
    crypto_generichash_init(&s, k, 32, 32);
    crypto_generichash_update(&s, (const uint8_t *)label, strlen(label));
    crypto_generichash_update(&s, th, 32);
    crypto_generichash_final(&s, out, 32);
}

static void subkey(const uint8_t k[32], const char *label, uint8_t out[32]) {
    crypto_generichash(out, 32, (const uint8_t *)label, strlen(label), k, 32);
}

/* a sealed box: u32 length | secretbox (the key is used for one message, nonce zero) */
static int send_box(int fd, const uint8_t key[32], const cl_buf *m, double deadline, byoai_error *err) {
    size_t cl = m->len + crypto_secretbox_MACBYTES;
    uint8_t *c = malloc(4 + cl);
    if (!c) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    c[0] = (uint8_t)(cl >> 24), c[1] = (uint8_t)(cl >> 16), c[2] = (uint8_t)(cl >> 8), c[3] = (uint8_t)cl;
    uint8_t nonce[crypto_secretbox_NONCEBYTES] = {0};
    crypto_secretbox_easy(c + 4, m->data, m->len, nonce, key);
    int rc = cl_write_full(fd, c, 4 + cl, deadline, err);
    free(c);
    return rc;
}

static int recv_box(int fd, const uint8_t key[32], uint8_t **out, size_t *len, double deadline, byoai_error *err) {
    uint8_t h[4];
    int rc = cl_read_full(fd, h, 4, deadline, err);
    if (rc) return rc;
    size_t cl = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (cl < crypto_secretbox_MACBYTES || cl > 64 * 1024) return byoai_error_set(err, BYOAI_EFORMAT, "join message too large");
    uint8_t *c = malloc(cl), *m = malloc(cl);
    if (!c || !m) {
        free(c);
        free(m);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    uint8_t nonce[crypto_secretbox_NONCEBYTES] = {0};
    if ((rc = cl_read_full(fd, c, cl, deadline, err)) == 0 &&
        crypto_secretbox_open_easy(m, c, cl, nonce, key) != 0)
        rc = byoai_error_set(err, BYOAI_EAUTH, "join message failed authentication");
    free(c);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    *len = cl - crypto_secretbox_MACBYTES;
    return 0;
}

int cl_join_serve(const cl_identity *id, int fd, const uint8_t j1[CL_JOIN_M1_LEN], const char *remote,
                  double timeout_s, cl_cert *issued, byoai_error *err) {
    double deadline = byoai_time_now() + timeout_s;
    uint8_t secret[16], j2[J2_LEN];
    memcpy(j2, CL_JOIN_MAGIC, 8);
    int rc;
    /* nothing is said to a request that does not name a live invite: the caller closes in silence */
    if (j1[8] != JOIN_VERSION) return byoai_error_set(err, BYOAI_EUNSUPPORTED, "unsupported join version %u", j1[8]);
    const uint8_t *iid = j1 + 9;
    if ((rc = cl_invite_lookup(id, iid, secret, err))) return rc;
    uint8_t eph_pk[32], eph_sk[32], dh[32], th[32], k[32], mj[32], kj2a[32], ka2j[32];
    crypto_box_keypair(eph_pk, eph_sk);
    j2[8] = 0;
    memcpy(j2 + 9, eph_pk, 32);
    randombytes_buf(j2 + 41, 32);
    if (crypto_scalarmult(dh, eph_sk, j1 + 17) != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "invalid key from %s", remote);
        goto out;
    }
    transcript_hash(j1, j2, th);
    join_keys(secret, dh, th, k);
    mac(k, "admin", th, j2 + 73);
    if ((rc = cl_write_full(fd, j2, J2_LEN, deadline, err))) goto out;
    uint8_t got[32];
    if ((rc = cl_read_full(fd, got, 32, deadline, err))) goto out;
    mac(k, "joiner", th, mj);
    if (sodium_memcmp(got, mj, 32) != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "%s does not hold the invite code", remote);
        goto out;
    }
    subkey(k, "j2a", kj2a);
    subkey(k, "a2j", ka2j);
    uint8_t *req = NULL;
    size_t rlen;
    if ((rc = recv_box(fd, kj2a, &req, &rlen, deadline, err))) goto out;
    cl_rd r = {req, rlen, 0, false};
    const uint8_t *npk = cl_rd_bytes(&r, 32), *sig = cl_rd_bytes(&r, 64);
    char name[CL_NAME_MAX];
    cl_rd_str(&r, name, sizeof name);
    uint8_t proof[14 + 32 + 32];
    if (cl_rd_done(&r)) {
        memcpy(proof, "byoai-join-req", 14);
        memcpy(proof + 14, th, 32);
        memcpy(proof + 46, npk, 32);
    }
    cl_buf reply = {0};
    if (!cl_rd_done(&r) || crypto_sign_verify_detached(sig, proof, sizeof proof, npk) != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "%s sent a malformed or unsigned join request", remote);
    } else if (!memcmp(npk, id->node_pk, 32)) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "%s presented this node's own key", remote);
    } else if ((rc = cl_invite_consume(id, iid, npk, err)) == 0) {
        memset(issued, 0, sizeof *issued);
        memcpy(issued->cluster_pk, id->cluster_pk, 32);
        memcpy(issued->node_pk, npk, 32);
        issued->issued = byoai_time_unix();
        snprintf(issued->name, sizeof issued->name, "%s", name[0] ? name : "node");
        cl_cert_sign(issued, id->cluster_sk);
        uint8_t cert[CL_CERT_MAX];
        size_t clen = 0;
        cl_cert_encode(issued, cert, sizeof cert, &clen);
        cl_buf_u8(&reply, 0);
        cl_buf_bytes(&reply, id->cluster_pk, 32);
        cl_buf_str(&reply, id->cluster_name);
        cl_buf_u16(&reply, (uint16_t)clen);
        cl_buf_bytes(&reply, cert, clen);
        cl_buf_bytes(&reply, id->node_pk, 32); /* the joiner's first link to this node then goes to this key */
    }
    if (rc) {
        cl_buf_u8(&reply, 1);
        cl_buf_str(&reply, err ? err->msg : "refused");
    }
    int rc2 = send_box(fd, ka2j, &reply, deadline, rc ? NULL : err);
    if (!rc) rc = rc2;
    cl_buf_free(&reply);
    free(req);
out:
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(eph_sk, sizeof eph_sk);
    sodium_memzero(k, sizeof k);
    sodium_memzero(kj2a, sizeof kj2a);
    sodium_memzero(ka2j, sizeof ka2j);
    return rc;
}

int cl_join_run(cl_identity *id, const cl_invite_code *code, double timeout_s, byoai_error *err) {
    int fd;
    int rc = cl_tcp_connect(code->host, code->port, timeout_s, &fd, err);
    if (rc)
        return byoai_error_prefix(err, "the inviting node is not reachable (is `byoai cluster node` or `byoai serve "
                                  "--cluster` running there?)");
    double deadline = byoai_time_now() + timeout_s;
    uint8_t eph_pk[32], eph_sk[32], dh[32], th[32], k[32], mj[32], kj2a[32], ka2j[32];
    crypto_box_keypair(eph_pk, eph_sk);
    uint8_t j1[J1_LEN], j2[J2_LEN];
    memcpy(j1, CL_JOIN_MAGIC, 8);
    j1[8] = JOIN_VERSION;
    cl_invite_id(code->secret, j1 + 9);
    memcpy(j1 + 17, eph_pk, 32);
    randombytes_buf(j1 + 49, 32);
    uint8_t *rep = NULL;
    size_t rlen = 0;
    if ((rc = cl_write_full(fd, j1, J1_LEN, deadline, err))) goto out;
    byoai_error e2 = {0};
    if ((rc = cl_read_full(fd, j2, 9, deadline, &e2))) {
        if (rc == BYOAI_ENET)
            rc = byoai_error_set(err, BYOAI_EAUTH, "the inviting node closed the connection without answering: the code "
                                 "is unknown, already used or expired there (ask for a new one)");
        else
            rc = byoai_error_set(err, rc, "%s", e2.msg);
        goto out;
    }
    if (memcmp(j2, CL_JOIN_MAGIC, 8)) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "%s:%u is not a byoai node", code->host, code->port);
        goto out;
    }
    if (j2[8] != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "the inviting node refused the code: %s",
                             j2[8] == 1 ? "it is unknown, already used or expired (ask for a new one)"
                                        : "unsupported version");
        goto out;
    }
    if ((rc = cl_read_full(fd, j2 + 9, J2_LEN - 9, deadline, err))) goto out;
    if (crypto_scalarmult(dh, eph_sk, j2 + 9) != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "invalid key from the inviting node");
        goto out;
    }
    transcript_hash(j1, j2, th);
    join_keys(code->secret, dh, th, k);
    uint8_t ma[32];
    mac(k, "admin", th, ma);
    if (sodium_memcmp(ma, j2 + 73, 32) != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "the node at %s:%u does not know this invite (not the inviting node?)",
                             code->host, code->port);
        goto out;
    }
    mac(k, "joiner", th, mj);
    subkey(k, "j2a", kj2a);
    subkey(k, "a2j", ka2j);
    if ((rc = cl_write_full(fd, mj, 32, deadline, err))) goto out;
    uint8_t proof[14 + 32 + 32], sig[64];
    memcpy(proof, "byoai-join-req", 14);
    memcpy(proof + 14, th, 32);
    memcpy(proof + 46, id->node_pk, 32);
    crypto_sign_detached(sig, NULL, proof, sizeof proof, id->node_sk);
    cl_buf req = {0};
    cl_buf_bytes(&req, id->node_pk, 32);
    cl_buf_bytes(&req, sig, 64);
    cl_buf_str(&req, id->node_name);
    rc = send_box(fd, kj2a, &req, deadline, err);
    cl_buf_free(&req);
    if (rc) goto out;
    if ((rc = recv_box(fd, ka2j, &rep, &rlen, deadline, err))) goto out;
    cl_rd r = {rep, rlen, 0, false};
    uint8_t status = cl_rd_u8(&r);
    if (status != 0) {
        char why[300];
        cl_rd_str(&r, why, sizeof why);
        rc = byoai_error_set(err, BYOAI_EAUTH, "the inviting node refused: %s", r.bad ? "(no reason)" : why);
        goto out;
    }
    const uint8_t *cpk = cl_rd_bytes(&r, 32);
    char cname[CL_NAME_MAX];
    cl_rd_str(&r, cname, sizeof cname);
    uint16_t clen = cl_rd_u16(&r);
    const uint8_t *cert = cl_rd_bytes(&r, clen);
    const uint8_t *admin_pk = cl_rd_bytes(&r, 32);
    if (!cl_rd_done(&r)) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "malformed answer from the inviting node");
        goto out;
    }
    uint8_t fp[16];
    cl_cluster_fp16(cpk, fp);
    if (sodium_memcmp(fp, code->cluster_fp, 16) != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "the inviting node answered for another cluster than the code names");
        goto out;
    }
    cl_cert ct;
    if ((rc = cl_cert_decode(cert, clen, &ct, err)) || (rc = cl_cert_verify(&ct, cpk, byoai_time_unix(), err))) goto out;
    if (memcmp(ct.node_pk, id->node_pk, 32) != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "the certificate is for another node");
        goto out;
    }
    memcpy(id->cluster_pk, cpk, 32);
    cl_fingerprint(cpk, id->cluster_id);
    snprintf(id->cluster_name, sizeof id->cluster_name, "%s", cname);
    id->cert = ct;
    id->member = true;
    id->admin = false;
    id->n_peers = 0;
    snprintf(id->peers[id->n_peers], sizeof id->peers[0], "%s:%u", code->host, code->port);
    memcpy(id->peer_pk[id->n_peers], admin_pk, 32);
    id->peer_has_pk[id->n_peers++] = true;
    cl_identity_derive(id);
out:
    free(rep);
    close(fd);
    sodium_memzero(eph_sk, sizeof eph_sk);
    sodium_memzero(k, sizeof k);
    sodium_memzero(kj2a, sizeof kj2a);
    sodium_memzero(ka2j, sizeof ka2j);
    return rc;
}

/* ---- public functions ------------------------------------------------------------------------------ */

int byoai_cluster_invite(const char *home, const char *address, uint32_t ttl_s, char *code, byoai_error *err) {
    cl_invite_code ic = {0};
    if (!address) return byoai_error_set(err, BYOAI_EINVAL, "no address given for the invite");
    int rc = cl_parse_hostport(address, ic.host, sizeof ic.host, &ic.port, err);
    if (rc) return rc;
    cl_identity *id = malloc(sizeof *id);
    if (!id) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    rc = cl_identity_load(home, id, err);
    if (!rc && !id->member) rc = byoai_error_set(err, BYOAI_EINVAL, "this node is not in a cluster; run `byoai cluster create NAME` first");
    if (!rc) rc = cl_invite_create(id, ttl_s, &ic, err);
    if (!rc && cl_invite_encode(&ic, code, BYOAI_CLUSTER_CODE_MAX) != 0)
        rc = byoai_error_set(err, BYOAI_ERANGE, "the address is too long for an invite code");
    sodium_memzero(&ic, sizeof ic);
    cl_identity_wipe(id);
    free(id);
    return rc;
}

int byoai_cluster_join(const char *home, const char *code, double timeout_s, byoai_cluster_identity *out,
                       byoai_error *err) {
    cl_invite_code ic;
    int rc = cl_invite_decode(code, &ic, err);
    if (rc) return rc;
    cl_identity *id = malloc(sizeof *id);
    if (!id) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    rc = cl_identity_load(home, id, err);
    if (!rc && id->member)
        rc = byoai_error_set(err, BYOAI_EEXIST, "this node already belongs to cluster '%s'; run `byoai cluster leave` "
                             "first", id->cluster_name);
    if (!rc) rc = cl_join_run(id, &ic, timeout_s > 0 ? timeout_s : 10, err);
    if (!rc) rc = cl_identity_save_membership(id, err);
    if (!rc) { /* a list of removed members from an earlier membership no longer applies */
        char path[4400];
        snprintf(path, sizeof path, "%s/revoked.bin", id->dir);
        unlink(path);
    }
    if (!rc && out) cl_identity_public(id, out);
    sodium_memzero(&ic, sizeof ic);
    cl_identity_wipe(id);
    free(id);
    return rc;
}
