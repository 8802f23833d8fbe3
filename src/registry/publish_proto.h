/* The publish protocol shared by the client (publish.c) and the registry
 * server (serve.c). See docs/registry.md. */
#ifndef BYOAI_PUBLISH_PROTO_H
#define BYOAI_PUBLISH_PROTO_H

#include <stdio.h>

#define PUBLISH_PATH "/api/v1/publish/"

/* The signed message: every field the registry acts on. */
static inline int publish_message(char *out, size_t cap, const char *name, const char *sha256, unsigned long long size,
                                  unsigned long long ts, const char *nonce, const char *meta_sha256) {
    return snprintf(out, cap, "byoai-publish-v1\n%s\n%s\n%llu\n%llu\n%s\n%s\n", name, sha256, size, ts, nonce,
                    meta_sha256);
}

#endif
