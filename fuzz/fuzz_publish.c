/* libFuzzer target: what a publisher sends a registry, and the text it is
 * checked against. The input is split at NUL bytes into the model name and
 * the X-Byoai-Publisher, -Timestamp, -Nonce, -Sha256, -Meta and -Signature
 * headers (a missing field is an absent header), then a public key text, a
 * secret key file and a size ("4 GiB"). Each goes through its parser:
 *  - reg_publish_check: 0, or 400 with a message; what it accepts has a
 *    valid name, publisher and timestamp;
 *  - the signature against the registry's message for those fields;
 *  - byoai_key_parse_public: what parses prints back and parses again to
 *    the same key;
 *  - byoai_key_load_secret, store names, byoai_parse_bytes.
 * Any crash, leak or sanitizer report is a bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byoai/registry.h"
#include "byoai/store.h"
#include "registry/publish_proto.h"
#include "registry/registry_internal.h"

#define N_FIELDS 10

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    char *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    /* fields at NUL bytes; the last one ends at the end of the input */
    const char *field[N_FIELDS] = {0};
    size_t nf = 0;
    for (char *p = copy; nf < N_FIELDS && p < copy + size;) {
        field[nf++] = p;
        p += strlen(p) + 1;
    }
    reg_publish_headers h = {field[1], field[2], field[3], field[4], field[5], field[6]};
    /* a flag bit drops a header, so absent ones get tested too */
    const char **hv[] = {&h.publisher, &h.timestamp, &h.nonce, &h.sha256, &h.meta, &h.signature};
    for (int i = 0; i < 6; i++)
        if (flags & (1u << i)) *hv[i] = NULL;

    char msg[512] = "";
    uint64_t ts = 0;
    int status = reg_publish_check(field[0], &h, &ts, msg, sizeof msg);
    if (status != 0 && (status != 400 || !msg[0])) abort();
    byoai_error err = {0};
    if (status == 0) {
        if (!field[0] || byoai_store_check_name(field[0], &err) || strchr(field[0], ':')) abort();
        if (byoai_key_check_name(h.publisher, &err)) abort();
        if (!byoai_store_check_sha256(h.sha256)) abort();
        /* the signed message, and a signature over it that cannot verify */
        char m[600];
        publish_message(m, sizeof m, field[0], h.sha256, 1234, (unsigned long long)ts, h.nonce, h.sha256);
        static const uint8_t pk[32] = {0x3d, 0x40, 0x17, 0xc3, 0xe8, 0x43, 0x89, 0x5a, 0x92, 0xb7, 0x0a,
                                       0xa7, 0x4d, 0x1b, 0x7e, 0xbc, 0x9c, 0x98, 0x2c, 0xcf, 0x2e, 0xc4,
                                       0x96, 0x8c, 0xc0, 0xcd, 0x55, 0xf1, 0x2a, 0xf4, 0x66, 0x0c};
        if (byoai_verify(pk, m, strlen(m), h.signature, &err) == 0) abort();
    }

    if (field[7]) {
        byoai_key k, k2;
        if (byoai_key_parse_public(field[7], &k, &err) == 0) {
            char text[160];
            byoai_key_public_text(&k, text);
            if (byoai_key_parse_public(text, &k2, &err) != 0 || memcmp(k.pk, k2.pk, 32) || strcmp(k.name, k2.name))
                abort();
        } else if (!err.msg[0]) {
            abort();
        }
    }
    if (field[8]) {
        char path[64];
        snprintf(path, sizeof path, "/tmp/byoai-fuzz-key-%d", (int)getpid());
        FILE *f = fopen(path, "wb");
        if (f) {
            fputs(field[8], f);
            fclose(f);
            byoai_key k;
            memset(&err, 0, sizeof err);
            if (byoai_key_load_secret(path, &k, &err) != 0 && !err.msg[0]) abort();
            unlink(path);
        }
    }
    if (field[9]) {
        uint64_t bytes;
        (void)byoai_parse_bytes(field[9], &bytes);
    }
    free(copy);
    return 0;
}
