/* libFuzzer target: everything a peer (or a stranger on the LAN) can send a
 * cluster node: link messages, UDP announcements, certificates, invite
 * codes and tensor manifests. The first byte picks the parser. Any crash,
 * leak or sanitizer report is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    volatile uint64_t sink = 0;
    switch (data[0] % 5) {
    case 0: {
        cl_msg m;
        if (cl_msg_decode(p, n, &m, NULL) != 0) break;
        sink += m.type;
        if (m.type == CL_MSG_FWD) {
            for (uint32_t i = 0; i < m.u.fwd.n; i++) sink += (uint64_t)cl_fwd_token(&m.u.fwd, i);
            if (m.u.fwd.hidden_len) sink += m.u.fwd.hidden[m.u.fwd.hidden_len - 1];
        }
        if (m.type == CL_MSG_LOAD && m.u.load.manifest_len) sink += m.u.load.manifest[m.u.load.manifest_len - 1];
        if (m.type == CL_MSG_HELLO) {
            /* what decodes re-encodes to the same bytes */
            cl_buf b = {0};
            cl_enc_hello(&b, &m.u.hello);
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
    }
    (void)sink;
    return 0;
}
