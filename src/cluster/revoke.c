/*
 * Removed members: a list of node ids signed by the cluster key.
 *
 *   $BYOAI_HOME/cluster/revoked.bin   the newest list this node has seen
 *
 * Encoding: "BYR1" | serial u64 | n u32 | n x 16-byte node id | sig(64),
 * the signature over a domain prefix, the cluster key and everything before
 * it. Only the admin (who holds the cluster key) can make a list; any
 * member may pass one on, and a node keeps the one with the highest serial.
 * A node id is the 16-byte fingerprint of the node key (cl_fingerprint), so
 * the admin can remove a machine by its id even while it is offline.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"

#define REV_MAGIC "BYR1"
#define REV_DOMAIN "byoai-revoked-v1"

static void rev_body(const cl_revoked *r, cl_buf *b) {
    cl_buf_bytes(b, REV_MAGIC, 4);
    cl_buf_u64(b, r->serial);
    cl_buf_u32(b, r->n);
    for (uint32_t i = 0; i < r->n && i < CL_REVOKED_MAX; i++) cl_buf_bytes(b, r->ids[i], 16);
}

void cl_revoked_encode(const cl_revoked *r, cl_buf *b) {
    rev_body(r, b);
    cl_buf_bytes(b, r->sig, 64);
}

int cl_revoked_decode(const uint8_t *in, size_t len, cl_revoked *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    cl_rd rd = {in, len, 0, false};
    const uint8_t *magic = cl_rd_bytes(&rd, 4);
    if (!magic || memcmp(magic, REV_MAGIC, 4)) return byoai_error_set(err, BYOAI_EFORMAT, "not a list of removed members");
    out->serial = cl_rd_u64(&rd);
    out->n = cl_rd_u32(&rd);
    if (rd.bad || out->n > CL_REVOKED_MAX)
        return byoai_error_set(err, BYOAI_EFORMAT, "a list of removed members with %u entries (at most %d)", out->n,
                               CL_REVOKED_MAX);
    for (uint32_t i = 0; i < out->n; i++) {
        const uint8_t *id = cl_rd_bytes(&rd, 16);
        if (id) memcpy(out->ids[i], id, 16);
    }
    const uint8_t *sig = cl_rd_bytes(&rd, 64);
    if (!cl_rd_done(&rd) || !sig) return byoai_error_set(err, BYOAI_EFORMAT, "malformed list of removed members");
    memcpy(out->sig, sig, 64);
    return 0;
}

static int signed_message(const cl_revoked *r, const uint8_t cluster_pk[32], cl_buf *m) {
    cl_buf_bytes(m, REV_DOMAIN, strlen(REV_DOMAIN));
    cl_buf_bytes(m, cluster_pk, 32);
    rev_body(r, m);
    return m->oom ? BYOAI_ENOMEM : 0;
}

void cl_revoked_sign(cl_revoked *r, const uint8_t cluster_pk[32], const uint8_t cluster_sk[64]) {
    cl_buf m = {0};
    if (signed_message(r, cluster_pk, &m) == 0) crypto_sign_detached(r->sig, NULL, m.data, m.len, cluster_sk);
    cl_buf_free(&m);
}

int cl_revoked_verify(const cl_revoked *r, const uint8_t cluster_pk[32], byoai_error *err) {
    cl_buf m = {0};
    if (signed_message(r, cluster_pk, &m)) {
        cl_buf_free(&m);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    int ok = crypto_sign_verify_detached(r->sig, m.data, m.len, cluster_pk);
    cl_buf_free(&m);
    if (ok != 0) return byoai_error_set(err, BYOAI_EAUTH, "the list of removed members is not signed by this cluster's key");
    return 0;
}

void cl_node_id16(const uint8_t pk[32], uint8_t out[16]) {
    uint8_t h[32];
    crypto_generichash(h, sizeof h, pk, 32, (const uint8_t *)"byoai-fingerprint", 17);
    memcpy(out, h, 16);
}

bool cl_revoked_has_id(const cl_revoked *r, const uint8_t id[16]) {
    for (uint32_t i = 0; i < r->n; i++)
        if (!memcmp(r->ids[i], id, 16)) return true;
    return false;
}

bool cl_revoked_has(const cl_revoked *r, const uint8_t pk[32]) {
    if (!r || r->n == 0) return false;
    uint8_t id[16];
    cl_node_id16(pk, id);
    return cl_revoked_has_id(r, id);
}

int cl_revoked_load(const cl_identity *id, cl_revoked *r, byoai_error *err) {
    memset(r, 0, sizeof *r);
    char path[4400];
    snprintf(path, sizeof path, "%s/revoked.bin", id->dir);
    char *data;
    size_t len;
    byoai_error e2 = {0};
    int rc = byoai_fs_read_all(path, 1 << 16, &data, &len, &e2);
    if (rc == BYOAI_ENOTFOUND) return 0; /* none yet */
    if (rc) return byoai_error_set(err, rc, "%s", e2.msg);
    rc = cl_revoked_decode((const uint8_t *)data, len, r, err);
    free(data);
    if (!rc) rc = cl_revoked_verify(r, id->cluster_pk, err);
    if (rc) {
        memset(r, 0, sizeof *r);
        return byoai_error_prefix(err, "%s (delete it and have the admin's node send it again)", path);
    }
    return 0;
}

int cl_revoked_save(const cl_identity *id, const cl_revoked *r, byoai_error *err) {
    char path[4400];
    snprintf(path, sizeof path, "%s/revoked.bin", id->dir);
    cl_buf b = {0};
    cl_revoked_encode(r, &b);
    int rc = b.oom ? byoai_error_set(err, BYOAI_ENOMEM, "out of memory") : byoai_fs_write_atomic(path, b.data, b.len, err);
    cl_buf_free(&b);
    return rc;
}

int cl_revoked_add(const cl_identity *id, cl_revoked *r, const uint8_t node_id[16], byoai_error *err) {
    if (!id->admin) return byoai_error_set(err, BYOAI_EAUTH, "only the cluster's admin (who holds its key) can remove members");
    if (cl_revoked_has_id(r, node_id)) return 0;
    if (r->n >= CL_REVOKED_MAX)
        return byoai_error_set(err, BYOAI_ERANGE, "%d members are removed already; create a new cluster", CL_REVOKED_MAX);
    cl_revoked next = *r;
    memcpy(next.ids[next.n++], node_id, 16);
    next.serial = r->serial + 1;
    cl_revoked_sign(&next, id->cluster_pk, id->cluster_sk);
    int rc = cl_revoked_save(id, &next, err);
    if (!rc) *r = next;
    return rc;
}

int cl_revoked_readmit(const cl_identity *id, cl_revoked *r, const uint8_t node_id[16], byoai_error *err) {
    if (!id->admin) return byoai_error_set(err, BYOAI_EAUTH, "only the cluster's admin can re-admit members");
    if (!cl_revoked_has_id(r, node_id)) return 0;
    cl_revoked next = {.serial = r->serial + 1};
    for (uint32_t i = 0; i < r->n; i++)
        if (memcmp(r->ids[i], node_id, 16)) memcpy(next.ids[next.n++], r->ids[i], 16);
    cl_revoked_sign(&next, id->cluster_pk, id->cluster_sk);
    int rc = cl_revoked_save(id, &next, err);
    if (!rc) *r = next;
    return rc;
}

int byoai_cluster_remove_offline(const char *home, const char *node_id, byoai_error *err) {
    uint8_t id16[16];
    if (!node_id || strlen(node_id) != BYOAI_CLUSTER_ID_LEN || cl_unhex(node_id, id16, 16))
        return byoai_error_set(err, BYOAI_EINVAL, "with no node running, give the whole node id (32 hex characters, "
                               "from `byoai cluster status`)");
    cl_identity *id = malloc(sizeof *id);
    cl_revoked *r = malloc(sizeof *r);
    int rc = id && r ? cl_identity_load(home, id, err) : byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    if (!rc && !id->member) rc = byoai_error_set(err, BYOAI_ENOTFOUND, "this node is not in a cluster");
    if (!rc && !memcmp(id16, (uint8_t[16]){0}, 16)) rc = byoai_error_set(err, BYOAI_EINVAL, "not a node id");
    if (!rc) {
        uint8_t self[16];
        cl_node_id16(id->node_pk, self);
        if (!memcmp(self, id16, 16)) rc = byoai_error_set(err, BYOAI_EINVAL, "that is this node; the admin cannot remove itself");
    }
    if (!rc) rc = cl_revoked_load(id, r, err);
    if (!rc) rc = cl_revoked_add(id, r, id16, err);
    if (id) cl_identity_wipe(id);
    free(id);
    free(r);
    return rc;
}
