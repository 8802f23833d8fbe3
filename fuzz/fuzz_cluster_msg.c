/* libFuzzer target: everything a peer (or a stranger on the LAN) can send a
 * cluster node: link messages (deployment records among them), UDP
 * announcements, certificates, invite codes, tensor manifests, and the first
 * handshake message a stranger may send before anything is authenticated
 * (its framing, and — sealed here with the key the node would use — the
 * payload behind the encryption). The first byte picks the parser. Any
 * crash, leak or sanitizer report is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"

/* a member of a fixed cluster, made once (fixed seeds: runs are reproducible) */
static cl_identity *responder(void) {
    static cl_identity id;
    static int made;
    if (!made) {
        uint8_t seed[32] = {7}, cseed[32] = {9}, csk[64];
        if (sodium_init() < 0) abort();
        crypto_sign_seed_keypair(id.node_pk, id.node_sk, seed);
        crypto_sign_seed_keypair(id.cluster_pk, csk, cseed);
        memcpy(id.cert.cluster_pk, id.cluster_pk, 32);
        memcpy(id.cert.node_pk, id.node_pk, 32);
        id.cert.issued = 1700000000;
        cl_cert_sign(&id.cert, csk);
        id.member = true;
        cl_identity_derive(&id);
        made = 1;
    }
    return &id;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    volatile uint64_t sink = 0;
    switch (data[0] % 7) {
    case 0: {
        cl_msg m;
        if (cl_msg_decode(p, n, &m, NULL) != 0) break;
        sink += m.type;
        if (m.type == CL_MSG_FWD) {
            for (uint32_t i = 0; i < m.u.fwd.n; i++) sink += (uint64_t)cl_fwd_token(&m.u.fwd, i);
            if (m.u.fwd.hidden_len) sink += m.u.fwd.hidden[m.u.fwd.hidden_len - 1];
        }
        if (m.type == CL_MSG_LOAD && m.u.load.manifest_len) sink += m.u.load.manifest[m.u.load.manifest_len - 1];
        if (m.type == CL_MSG_HELLO || m.type == CL_MSG_RECORD) {
            /* what decodes re-encodes to the same bytes */
            cl_buf b = {0};
            if (m.type == CL_MSG_HELLO) cl_enc_hello(&b, &m.u.hello);
            else cl_enc_record(&b, &m.u.record);
            if (!b.oom && (b.len != n || memcmp(b.data, p, n))) abort();
            cl_buf_free(&b);
        }
        break;
    }
    case 1: {
        static const uint8_t cluster_pk[32] = {1, 2, 3};
        cl_cert cert;
        cl_node_info info;
        uint64_t ts;
        cl_announce_decode(p, n, cluster_pk, 1700000000, &cert, &ts, &info, NULL);
        break;
    }
    case 2: {
        cl_cert cert;
        if (cl_cert_decode(p, n, &cert, NULL) == 0) {
            uint8_t out[CL_CERT_MAX];
            size_t len;
            if (cl_cert_encode(&cert, out, sizeof out, &len) != 0 || len != n || memcmp(out, p, n)) abort();
        }
        break;
    }
    case 3: {
        char *s = malloc(n + 1);
        if (!s) break;
        memcpy(s, p, n);
        s[n] = '\0';
        cl_invite_code c;
        if (cl_invite_decode(s, &c, NULL) == 0) sink += c.port;
        free(s);
        break;
    }
    case 4: {
        cl_manifest m;
        if (cl_manifest_parse((const char *)p, n, &m, NULL) == 0) {
            sink += m.n;
            cl_manifest_free(&m);
        }
        break;
    }
    case 5: { /* the first bytes of an accepted connection, as the listener reads them */
        size_t need, have = 0;
        int kind;
        while ((kind = cl_hs_first(p, have, &need)) == CL_FIRST_MORE && need > have && need <= n) have = need;
        if (kind == CL_FIRST_MORE && need > n) cl_hs_first(p, n, &need); /* a short read */
        if (kind == CL_FIRST_LINK && need <= n) {
            cl_hs_m1 st;
            if (cl_hs_m1_open(responder(), p, need, &st, NULL) == 0) sink += st.ts; /* (only a real member can) */
        }
        sink += (uint64_t)kind;
        break;
    }
    case 6: { /* the payload of a first message that decrypts: version, time, certificate, signature */
        uint8_t m1[CL_HS_M1_MAX];
        size_t len;
        if (n > CL_HS_PAYLOAD_MAX || cl_hs_m1_seal(responder(), responder()->node_pk, p, n, m1, &len)) break;
        cl_hs_m1 st;
        if (cl_hs_m1_open(responder(), m1, len, &st, NULL) == 0) sink += st.ts;
        break;
    }
    }
    (void)sink;
    return 0;
}
