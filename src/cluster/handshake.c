/*
 * The link handshake. The initiator authenticates in its first message and
 * the responder sends nothing at all until that message has authenticated
 * (as WireGuard does): a stranger who connects, or who replays a recorded
 * first message, gets a closed connection and not a byte. Certificates
 * travel only encrypted.
 *
 * Keys: a node's ed25519 key also gives an X25519 key (libsodium's
 * conversion), its static key here; eph = fresh X25519 keys; H = BLAKE2b-256;
 * K(ikm, th, label) = BLAKE2b keyed by ikm over th | label; AEAD =
 * XChaCha20-Poly1305 with a zero nonce (every key is used for one message).
 *
 *   M1 I->R  "BYOAI-L2" | mode | eph_I | len (u16 BE) | AEAD(k1, ad h1; ver | ts | cert_I | sig_I)
 *     mode 1, I knows R's node key (discovery, the member list, the admin's key from the join):
 *        h1 = H("byoai-link-v2" | mode | H(cluster key) | S_R | eph_I), es = DH(eph_I, S_R)
 *     mode 2, I knows only an address (a --peer HOST:PORT seen for the first time):
 *        h1 = H("byoai-link-v2" | mode | H(cluster key) | eph_I), es = H("byoai-link-v2 cluster" | cluster key)
 *     k1 = K(es, h1, "m1"), sig_I = Sign(I, "byoai-link-v2 initiator" | h1 | ts)
 *   R decrypts and checks cert_I (signed by the cluster key, not expired, not
 *   removed, not R's own: a connection reflected back to its sender), sig_I,
 *   and that ts is newer than every first message it accepted from I before
 *   (a replay is not). Anything wrong: R closes the connection in silence.
 *   M2 R->I  eph_R | len (u16 BE) | AEAD(k2, ad h2; cert_R | sig_R) | stream header R->I
 *     h2 = H(H(h1 | M1's box) | eph_R), ee = DH(eph_R, eph_I), k2 = K(ee | es, h2, "m2"),
 *     sig_R = Sign(R, "byoai-link-v2 responder" | h2)
 *   I decrypts and checks cert_R the same way (and that it names the node it
 *   expected at the address), and sig_R.
 *   Session keys: th = H(h2 | M2's box); i2r = K(ee | es, th, "i2r"), r2i = K(ee | es, th, "r2i"),
 *   feeding secretstream, one per direction.
 *   M3 I->R  stream header I->R, then the first frame (empty): it proves that I
 *   holds eph_I's secret, so a recorded M1 replayed to a responder that does
 *   not remember it still cannot complete.
 *
 * So: mutual authentication by certificates of this cluster and signatures
 * over transcripts that hold both fresh ephemeral keys (a recorded handshake
 * replayed later fails); role labels in every signature and key (a
 * responder's signature never passes as an initiator's, frames reflected back
 * fail); the certificates are readable only by the two ends (in mode 2, also
 * by someone who knows the cluster's public key: a member, present or past,
 * since the key no longer travels in clear).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster_internal.h"

#define HS_VERSION 2
#define HS_MODE_STATIC 1
#define HS_MODE_CLUSTER 2
#define HS_HEAD (CL_MAGIC_LEN + 1 + 32 + 2)
#define AEAD_ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define HDRBYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define PAYLOAD_MAX (1 + 8 + 2 + CL_CERT_MAX + 64)
#define BOX_MAX (PAYLOAD_MAX + AEAD_ABYTES)
#define M2_HEAD (32 + 2)

/* ---- primitives ----------------------------------------------------------------------- */

static void hash_parts(uint8_t out[32], const void *a, size_t na, const void *b, size_t nb, const void *c, size_t nc) {
    crypto_generichash_state s;
    crypto_generichash_init(&s, NULL, 0, 32);
    if (na) crypto_generichash_update(&s, a, na);
    if (nb) crypto_generichash_update(&s, b, nb);
    if (nc) crypto_generichash_update(&s, c, nc);
    crypto_generichash_final(&s, out, 32);
}

static void kdf(uint8_t out[32], const uint8_t *ikm, size_t n_ikm, const uint8_t th[32], const char *label) {
    crypto_generichash_state s;
    crypto_generichash_init(&s, ikm, n_ikm, 32);
    crypto_generichash_update(&s, th, 32);
    crypto_generichash_update(&s, (const uint8_t *)label, strlen(label));
    crypto_generichash_final(&s, out, 32);
}

static const uint8_t zero_nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];

/* h1 for a mode, the cluster and (mode 1) the responder's static key */
static void hash_m1(uint8_t h1[32], uint8_t mode, const uint8_t cluster_pk[32], const uint8_t *rs,
                    const uint8_t eph[32]) {
    uint8_t cid[32];
    hash_parts(cid, "byoai-link-v2 cluster id", 24, cluster_pk, 32, NULL, 0);
    crypto_generichash_state s;
    crypto_generichash_init(&s, NULL, 0, 32);
    crypto_generichash_update(&s, (const uint8_t *)"byoai-link-v2", 13);
    crypto_generichash_update(&s, &mode, 1);
    crypto_generichash_update(&s, cid, 32);
    if (rs) crypto_generichash_update(&s, rs, 32);
    crypto_generichash_update(&s, eph, 32);
    crypto_generichash_final(&s, h1, 32);
}

static void sign_role(uint8_t sig[64], const char *role, const uint8_t th[32], const uint8_t *extra, size_t n_extra,
                      const uint8_t sk[64]) {
    uint8_t m[64 + 32 + 8];
    size_t rl = strlen(role);
    memcpy(m, role, rl);
    memcpy(m + rl, th, 32);
    if (n_extra) memcpy(m + rl + 32, extra, n_extra);
    crypto_sign_detached(sig, NULL, m, rl + 32 + n_extra, sk);
}

static bool verify_role(const uint8_t sig[64], const char *role, const uint8_t th[32], const uint8_t *extra,
                        size_t n_extra, const uint8_t pk[32]) {
    uint8_t m[64 + 32 + 8];
    size_t rl = strlen(role);
    memcpy(m, role, rl);
    memcpy(m + rl, th, 32);
    if (n_extra) memcpy(m + rl + 32, extra, n_extra);
    return crypto_sign_verify_detached(sig, m, rl + 32 + n_extra, pk) == 0;
}

static void le64(uint8_t out[8], uint64_t v) {
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(v >> (8 * i));
}

/* the initiator's timestamps: unix nanoseconds, strictly increasing in this process */
static uint64_t next_ts(void) {
    static uint64_t last;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t now = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
    uint64_t prev = __atomic_load_n(&last, __ATOMIC_RELAXED);
    for (;;) {
        uint64_t want = now > prev ? now : prev + 1;
        if (__atomic_compare_exchange_n(&last, &prev, want, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return want;
    }
}

/* a peer's certificate: this cluster's, valid, not removed, not ours, the one expected */
static int check_cert(const cl_identity *id, const uint8_t *cert, size_t clen, const uint8_t *expect_pk, cl_cert *out,
                      byoai_error *err) {
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

/* ---- the first message ------------------------------------------------------------------- */

static bool prefix_of(const uint8_t *buf, size_t have, const char *magic) {
    return memcmp(buf, magic, have < CL_MAGIC_LEN ? have : CL_MAGIC_LEN) == 0;
}

int cl_hs_first(const uint8_t *buf, size_t have, size_t *need) {
    *need = CL_MAGIC_LEN;
    if (have < CL_MAGIC_LEN) {
        if (prefix_of(buf, have, CL_LINK_MAGIC) || prefix_of(buf, have, CL_JOIN_MAGIC) ||
            prefix_of(buf, have, CL_LINK_OLD_MAGIC))
            return CL_FIRST_MORE;
        return CL_FIRST_BAD;
    }
    if (!memcmp(buf, CL_JOIN_MAGIC, CL_MAGIC_LEN)) {
        *need = CL_JOIN_M1_LEN;
        return have >= CL_JOIN_M1_LEN ? CL_FIRST_JOIN : CL_FIRST_MORE;
    }
    if (!memcmp(buf, CL_LINK_OLD_MAGIC, CL_MAGIC_LEN)) return CL_FIRST_OLD;
    if (memcmp(buf, CL_LINK_MAGIC, CL_MAGIC_LEN)) return CL_FIRST_BAD;
    *need = HS_HEAD;
    if (have < HS_HEAD) return CL_FIRST_MORE;
    if (buf[CL_MAGIC_LEN] != HS_MODE_STATIC && buf[CL_MAGIC_LEN] != HS_MODE_CLUSTER) return CL_FIRST_BAD;
    size_t n = (size_t)buf[HS_HEAD - 2] << 8 | buf[HS_HEAD - 1];
    if (n <= AEAD_ABYTES || n > BOX_MAX) return CL_FIRST_BAD;
    *need = HS_HEAD + n;
    return have >= *need ? CL_FIRST_LINK : CL_FIRST_MORE;
}

/* the keys of a first message: mode, fresh ephemeral pair, h1, es, k1 */
typedef struct {
    uint8_t mode, eph_pk[32], eph_sk[32], h1[32], es[32], k1[32];
} m1_keys;

static int m1_keys_make(const cl_identity *id, const uint8_t *expect_pk, m1_keys *k, byoai_error *err) {
    uint8_t rs[32];
    k->mode = HS_MODE_CLUSTER;
    if (expect_pk) {
        if (crypto_sign_ed25519_pk_to_curve25519(rs, expect_pk) != 0)
            return byoai_error_set(err, BYOAI_EINVAL, "the expected node key is not a valid key");
        k->mode = HS_MODE_STATIC;
    }
    crypto_box_keypair(k->eph_pk, k->eph_sk);
    hash_m1(k->h1, k->mode, id->cluster_pk, k->mode == HS_MODE_STATIC ? rs : NULL, k->eph_pk);
    if (k->mode == HS_MODE_STATIC) {
        if (crypto_scalarmult(k->es, k->eph_sk, rs) != 0) return byoai_error_set(err, BYOAI_EINVAL, "invalid node key");
    } else {
        memcpy(k->es, id->cluster_link_key, 32);
    }
    kdf(k->k1, k->es, 32, k->h1, "m1");
    return 0;
}

/* the message around payload (n <= PAYLOAD_MAX); th gets the transcript after it */
static void m1_seal(const m1_keys *k, const uint8_t *payload, size_t n, uint8_t *out, size_t *len, uint8_t th[32]) {
    size_t blen = n + AEAD_ABYTES;
    memcpy(out, CL_LINK_MAGIC, CL_MAGIC_LEN);
    out[CL_MAGIC_LEN] = k->mode;
    memcpy(out + CL_MAGIC_LEN + 1, k->eph_pk, 32);
    out[HS_HEAD - 2] = (uint8_t)(blen >> 8);
    out[HS_HEAD - 1] = (uint8_t)blen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + HS_HEAD, NULL, payload, n, k->h1, 32, NULL, zero_nonce, k->k1);
    *len = HS_HEAD + blen;
    if (th) hash_parts(th, k->h1, 32, out + HS_HEAD, blen, NULL, 0);
}

int cl_hs_m1_make(const cl_identity *id, const uint8_t *expect_pk, uint8_t *out, size_t *len, uint8_t eph_sk[32],
                  uint8_t th[32], uint8_t es[32], byoai_error *err) {
    uint8_t cert[CL_CERT_MAX], payload[PAYLOAD_MAX];
    size_t clen;
    if (cl_cert_encode(&id->cert, cert, sizeof cert, &clen))
        return byoai_error_set(err, BYOAI_EINVAL, "this node's certificate is too large");
    m1_keys k;
    int rc = m1_keys_make(id, expect_pk, &k, err);
    if (rc) return rc;
    uint64_t ts = next_ts();
    uint8_t ts8[8];
    le64(ts8, ts);
    size_t n = 0;
    payload[n++] = HS_VERSION;
    memcpy(payload + n, ts8, 8);
    n += 8;
    payload[n++] = (uint8_t)clen;
    payload[n++] = (uint8_t)(clen >> 8);
    memcpy(payload + n, cert, clen);
    n += clen;
    sign_role(payload + n, "byoai-link-v2 initiator", k.h1, ts8, 8, id->node_sk);
    n += 64;
    m1_seal(&k, payload, n, out, len, th);
    memcpy(eph_sk, k.eph_sk, 32);
    memcpy(es, k.es, 32);
    sodium_memzero(&k, sizeof k);
    return 0;
}

int cl_hs_m1_seal(const cl_identity *id, const uint8_t *expect_pk, const uint8_t *payload, size_t n, uint8_t *out,
                  size_t *len) {
    if (n > PAYLOAD_MAX) return BYOAI_ERANGE;
    m1_keys k;
    int rc = m1_keys_make(id, expect_pk, &k, NULL);
    if (!rc) m1_seal(&k, payload, n, out, len, NULL);
    sodium_memzero(&k, sizeof k);
    return rc;
}

int cl_hs_m1_open(const cl_identity *id, const uint8_t *m1, size_t len, cl_hs_m1 *st, byoai_error *err) {
    memset(st, 0, sizeof *st);
    size_t need;
    if (!id->member) return byoai_error_set(err, BYOAI_EAUTH, "this node is not a cluster member");
    if (cl_hs_first(m1, len, &need) != CL_FIRST_LINK || need != len)
        return byoai_error_set(err, BYOAI_EFORMAT, "not a first handshake message");
    st->mode = m1[CL_MAGIC_LEN];
    memcpy(st->eph_i, m1 + CL_MAGIC_LEN + 1, 32);
    const uint8_t *box = m1 + HS_HEAD;
    size_t blen = len - HS_HEAD;
    uint8_t h1[32], k1[32], payload[PAYLOAD_MAX];
    hash_m1(h1, st->mode, id->cluster_pk, st->mode == HS_MODE_STATIC ? id->node_xpk : NULL, st->eph_i);
    if (st->mode == HS_MODE_STATIC) {
        if (crypto_scalarmult(st->es, id->node_xsk, st->eph_i) != 0)
            return byoai_error_set(err, BYOAI_EAUTH, "the first message carries an invalid key");
    } else {
        memcpy(st->es, id->cluster_link_key, 32);
    }
    kdf(k1, st->es, 32, h1, "m1");
    unsigned long long plen = 0;
    int ok = crypto_aead_xchacha20poly1305_ietf_decrypt(payload, &plen, NULL, box, blen, h1, 32, zero_nonce, k1);
    sodium_memzero(k1, sizeof k1);
    if (ok != 0)
        return byoai_error_set(err, BYOAI_EAUTH, "its first message does not authenticate (not a member of this "
                               "cluster, or not meant for this node)");
    cl_rd r = {payload, (size_t)plen, 0, false};
    uint8_t ver = cl_rd_u8(&r);
    const uint8_t *ts8 = cl_rd_bytes(&r, 8);
    uint16_t clen = cl_rd_u16(&r);
    const uint8_t *cert = cl_rd_bytes(&r, clen);
    const uint8_t *sig = cl_rd_bytes(&r, 64);
    if (!cl_rd_done(&r) || ver != HS_VERSION || clen == 0)
        return byoai_error_set(err, BYOAI_EFORMAT, "malformed first message (version %u)", ver);
    int rc = check_cert(id, cert, clen, NULL, &st->cert, err);
    if (rc) return rc;
    if (!verify_role(sig, "byoai-link-v2 initiator", h1, ts8, 8, st->cert.node_pk))
        return byoai_error_set(err, BYOAI_EAUTH, "bad handshake signature");
    st->ts = 0;
    for (int i = 7; i >= 0; i--) st->ts = st->ts << 8 | ts8[i];
    if (id->m1_fresh && !id->m1_fresh(id->m1_user, st->cert.node_pk, st->ts)) {
        char fp[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(st->cert.node_pk, fp);
        return byoai_error_set(err, BYOAI_EAUTH, "a replayed first message of node %.12s (or its clock went back)",
                               fp);
    }
    hash_parts(st->th, h1, 32, box, blen, NULL, 0);
    return 0;
}

/* ---- the responder ------------------------------------------------------------------------ */

static void session_keys(const uint8_t ee[32], const uint8_t es[32], const uint8_t th[32], uint8_t i2r[32],
                         uint8_t r2i[32]) {
    uint8_t ikm[64];
    memcpy(ikm, ee, 32);
    memcpy(ikm + 32, es, 32);
    kdf(i2r, ikm, 64, th, "i2r");
    kdf(r2i, ikm, 64, th, "r2i");
    sodium_memzero(ikm, sizeof ikm);
}

int cl_link_respond(const cl_identity *id, int fd, cl_hs_m1 *st, double deadline, cl_link **out, byoai_error *err) {
    *out = NULL;
    cl_link *l = cl_link_new(fd, false);
    if (!l) {
        close(fd);
        sodium_memzero(st, sizeof *st);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    uint8_t eph_pk[32], eph_sk[32], h2[32], ee[32], ikm[64], k2[32], i2r[32], r2i[32], th[32];
    uint8_t cert[CL_CERT_MAX], payload[PAYLOAD_MAX], m2[M2_HEAD + BOX_MAX + HDRBYTES], hdr[HDRBYTES];
    size_t clen;
    int rc = 0;
    if (cl_cert_encode(&id->cert, cert, sizeof cert, &clen)) {
        rc = byoai_error_set(err, BYOAI_EINVAL, "own certificate too large");
        goto done;
    }
    crypto_box_keypair(eph_pk, eph_sk);
    hash_parts(h2, st->th, 32, eph_pk, 32, NULL, 0);
    if (crypto_scalarmult(ee, eph_sk, st->eph_i) != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "%s: invalid ephemeral key", l->remote);
        goto done;
    }
    memcpy(ikm, ee, 32);
    memcpy(ikm + 32, st->es, 32);
    kdf(k2, ikm, 64, h2, "m2");
    size_t n = 0;
    payload[n++] = (uint8_t)clen;
    payload[n++] = (uint8_t)(clen >> 8);
    memcpy(payload + n, cert, clen);
    n += clen;
    sign_role(payload + n, "byoai-link-v2 responder", h2, NULL, 0, id->node_sk);
    n += 64;
    size_t blen = n + AEAD_ABYTES;
    memcpy(m2, eph_pk, 32);
    m2[32] = (uint8_t)(blen >> 8);
    m2[33] = (uint8_t)blen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(m2 + M2_HEAD, NULL, payload, n, h2, 32, NULL, zero_nonce, k2);
    hash_parts(th, h2, 32, m2 + M2_HEAD, blen, NULL, 0);
    session_keys(ee, st->es, th, i2r, r2i);
    crypto_secretstream_xchacha20poly1305_init_push(&l->tx, m2 + M2_HEAD + blen, r2i);
    if ((rc = cl_write_full(fd, m2, M2_HEAD + blen + HDRBYTES, deadline, err))) goto done;
    /* M3: the initiator's stream header and an empty first frame */
    if ((rc = cl_read_full(fd, hdr, HDRBYTES, deadline, err))) {
        byoai_error_prefix(err, "handshake with %s", l->remote);
        goto done;
    }
    if ((rc = cl_link_init_pull(l, hdr, i2r, err))) goto done;
    uint8_t *ack = NULL;
    size_t alen;
    double left = deadline - byoai_time_now();
    if ((rc = cl_link_recv(l, &ack, &alen, left > 0.01 ? left : 0.01, err))) {
        byoai_error_prefix(err, "handshake with %s", l->remote);
        goto done;
    }
    free(ack);
    if (alen != 0) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "%s: unexpected handshake confirmation", l->remote);
        goto done;
    }
    l->peer_cert = st->cert;
    memcpy(l->peer_pk, st->cert.node_pk, 32);
done:
    sodium_memzero(eph_sk, sizeof eph_sk);
    sodium_memzero(ee, sizeof ee);
    sodium_memzero(ikm, sizeof ikm);
    sodium_memzero(k2, sizeof k2);
    sodium_memzero(i2r, sizeof i2r);
    sodium_memzero(r2i, sizeof r2i);
    sodium_memzero(st, sizeof *st);
    if (rc) {
        cl_link_free(l);
        return rc;
    }
    memset(&l->st, 0, sizeof l->st);
    *out = l;
    return 0;
}

/* ---- the initiator ------------------------------------------------------------------------ */

static int initiate(const cl_identity *id, int fd, const uint8_t *expect_pk, double deadline, cl_link **out,
                    byoai_error *err) {
    *out = NULL;
    cl_link *l = cl_link_new(fd, true);
    if (!l) {
        close(fd);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    uint8_t m1[CL_HS_M1_MAX], eph_sk[32], th1[32], es[32], h2[32], ee[32], ikm[64], k2[32], th[32], i2r[32], r2i[32];
    uint8_t m2[M2_HEAD + BOX_MAX + HDRBYTES], payload[PAYLOAD_MAX], hdr[HDRBYTES];
    size_t m1_len;
    int rc = cl_hs_m1_make(id, expect_pk, m1, &m1_len, eph_sk, th1, es, err);
    if (rc) goto done;
    if ((rc = cl_write_full(fd, m1, m1_len, deadline, err))) goto done;
    byoai_error e2 = {0};
    if ((rc = cl_read_full(fd, m2, M2_HEAD, deadline, &e2))) {
        if (rc == BYOAI_ENET) {
            char want[80] = "";
            if (expect_pk) {
                char fp[BYOAI_CLUSTER_ID_LEN + 1];
                cl_fingerprint(expect_pk, fp);
                snprintf(want, sizeof want, ", or it is not node %.12s", fp);
            }
            rc = byoai_error_set(err, BYOAI_EAUTH, "%s closed the connection without answering: it did not accept "
                                 "this node (is this node still a member of the cluster?%s)", l->remote, want);
        } else {
            rc = byoai_error_set(err, rc, "handshake with %s: %s", l->remote, e2.msg);
        }
        goto done;
    }
    size_t blen = (size_t)m2[32] << 8 | m2[33];
    if (blen <= AEAD_ABYTES || blen > BOX_MAX) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "%s does not speak the byoai link protocol", l->remote);
        goto done;
    }
    if ((rc = cl_read_full(fd, m2 + M2_HEAD, blen + HDRBYTES, deadline, err))) {
        byoai_error_prefix(err, "handshake with %s", l->remote);
        goto done;
    }
    hash_parts(h2, th1, 32, m2, 32, NULL, 0);
    if (crypto_scalarmult(ee, eph_sk, m2) != 0) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "%s: invalid ephemeral key", l->remote);
        goto done;
    }
    memcpy(ikm, ee, 32);
    memcpy(ikm + 32, es, 32);
    kdf(k2, ikm, 64, h2, "m2");
    unsigned long long plen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(payload, &plen, NULL, m2 + M2_HEAD, blen, h2, 32, zero_nonce, k2)) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "%s: its answer does not authenticate", l->remote);
        goto done;
    }
    cl_rd r = {payload, (size_t)plen, 0, false};
    uint16_t clen = cl_rd_u16(&r);
    const uint8_t *cert = cl_rd_bytes(&r, clen);
    const uint8_t *sig = cl_rd_bytes(&r, 64);
    if (!cl_rd_done(&r) || clen == 0) {
        rc = byoai_error_set(err, BYOAI_EFORMAT, "%s: malformed handshake answer", l->remote);
        goto done;
    }
    if ((rc = check_cert(id, cert, clen, expect_pk, &l->peer_cert, err))) {
        byoai_error_prefix(err, "%s", l->remote);
        goto done;
    }
    if (!verify_role(sig, "byoai-link-v2 responder", h2, NULL, 0, l->peer_cert.node_pk)) {
        rc = byoai_error_set(err, BYOAI_EAUTH, "%s: bad handshake signature", l->remote);
        goto done;
    }
    hash_parts(th, h2, 32, m2 + M2_HEAD, blen, NULL, 0);
    session_keys(ee, es, th, i2r, r2i);
    if ((rc = cl_link_init_pull(l, m2 + M2_HEAD + blen, r2i, err))) goto done;
    crypto_secretstream_xchacha20poly1305_init_push(&l->tx, hdr, i2r);
    if ((rc = cl_write_full(fd, hdr, HDRBYTES, deadline, err))) goto done;
    if ((rc = cl_link_send(l, NULL, 0, err))) goto done; /* the confirmation */
    memcpy(l->peer_pk, l->peer_cert.node_pk, 32);
done:
    sodium_memzero(eph_sk, sizeof eph_sk);
    sodium_memzero(es, sizeof es);
    sodium_memzero(ee, sizeof ee);
    sodium_memzero(ikm, sizeof ikm);
    sodium_memzero(k2, sizeof k2);
    sodium_memzero(i2r, sizeof i2r);
    sodium_memzero(r2i, sizeof r2i);
    if (rc) {
        cl_link_free(l);
        return rc;
    }
    memset(&l->st, 0, sizeof l->st);
    *out = l;
    return 0;
}

int cl_link_connect(const cl_identity *id, const char *host, uint16_t port, const uint8_t *expect_pk,
                    double timeout_s, cl_link **out, byoai_error *err) {
    *out = NULL;
    if (!id->member) return byoai_error_set(err, BYOAI_EAUTH, "this node is not a cluster member");
    int fd;
    double deadline = byoai_time_now() + timeout_s;
    int rc = cl_tcp_connect(host, port, timeout_s, &fd, err);
    if (rc) return rc;
    if (deadline - byoai_time_now() < 0.5) deadline = byoai_time_now() + 0.5;
    return initiate(id, fd, expect_pk, deadline, out, err);
}

int cl_link_handshake(const cl_identity *id, int fd, bool initiator, const uint8_t *expect_pk, double timeout_s,
                      cl_link **out, byoai_error *err) {
    *out = NULL;
    if (!id->member) {
        close(fd);
        return byoai_error_set(err, BYOAI_EAUTH, "this node is not a cluster member");
    }
    cl_sock_setup(fd);
    double deadline = byoai_time_now() + timeout_s;
    if (initiator) return initiate(id, fd, expect_pk, deadline, out, err);
    /* the responder: the first message, then the answer */
    uint8_t m1[CL_HS_M1_MAX];
    size_t have = 0, need = CL_MAGIC_LEN;
    int kind, rc;
    while ((kind = cl_hs_first(m1, have, &need)) == CL_FIRST_MORE) {
        if ((rc = cl_read_full(fd, m1 + have, need - have, deadline, err))) {
            close(fd);
            return rc;
        }
        have = need;
    }
    if (kind != CL_FIRST_LINK) {
        close(fd);
        return byoai_error_set(err, BYOAI_EFORMAT, kind == CL_FIRST_OLD ? "the peer speaks an older link protocol"
                                                                          : "not the byoai link protocol");
    }
    cl_hs_m1 st;
    if ((rc = cl_hs_m1_open(id, m1, have, &st, err))) {
        sodium_memzero(&st, sizeof st);
        close(fd); /* in silence */
        return rc;
    }
    return cl_link_respond(id, fd, &st, deadline, out, err);
}
