/* libFuzzer target: the server's configuration text, as a config file
 * ("key = value" lines, comments, quotes) and, when the first byte is odd,
 * also as key/value pairs split at NUL bytes (what the environment and the
 * command line pass to byoai_server_config_set). Every failure must say
 * what is wrong; whatever is accepted must leave a configuration within
 * its limits: counts within their arrays, every counted entry set, every
 * string terminated inside its field. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byoai/server.h"

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

static void check(const byoai_server_config *c) {
    if (c->n_api_keys > BYOAI_SERVER_MAX_KEYS || c->n_cors_origins > BYOAI_SERVER_MAX_ORIGINS ||
        c->n_models > BYOAI_SERVER_MAX_MODELS || c->n_cluster_peers > 16 || c->n_cluster_models > 8)
        abort();
    if (!TERMINATED(c->host) || !TERMINATED(c->home) || !TERMINATED(c->db_path) || !TERMINATED(c->cluster_bind) ||
        !TERMINATED(c->cluster_model_url) || !TERMINATED(c->cluster_wire))
        abort();
    for (uint32_t i = 0; i < c->n_api_keys; i++)
        if (!TERMINATED(c->api_keys[i]) || strlen(c->api_keys[i]) < 8) abort();
    for (uint32_t i = 0; i < c->n_cors_origins; i++)
        if (!TERMINATED(c->cors_origins[i]) || !c->cors_origins[i][0]) abort();
    for (uint32_t i = 0; i < c->n_models; i++)
        if (!TERMINATED(c->models[i].name) || !c->models[i].name[0] || !TERMINATED(c->models[i].path) ||
            !TERMINATED(c->models[i].chat_template))
            abort();
    for (uint32_t i = 0; i < c->n_cluster_peers; i++)
        if (!TERMINATED(c->cluster_peers[i]) || !strchr(c->cluster_peers[i], ':')) abort();
    for (uint32_t i = 0; i < c->n_cluster_models; i++)
        if (!TERMINATED(c->cluster_models[i].name) || !c->cluster_models[i].name[0]) abort();
    if (c->max_body < 1024 || c->max_tokens < 1 || c->parallel < 1 || c->queue < 1) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static byoai_server_config c; /* large: not on the stack */
    byoai_server_config_defaults(&c);
    char path[64];
    snprintf(path, sizeof path, "/tmp/byoai-fuzz-config-%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    byoai_error err = {0};
    if (byoai_server_config_load_file(&c, path, &err) != 0 && (!err.code || !strstr(err.msg, path))) abort();
    unlink(path);
    check(&c);

    if (size && (data[0] & 1)) {
        byoai_server_config_defaults(&c);
        char *copy = malloc(size + 1);
        if (!copy) return 0;
        memcpy(copy, data, size);
        copy[size] = '\0';
        const char *key = NULL;
        for (char *p = copy + 1; p <= copy + size; p += strlen(p) + 1) {
            if (!key) {
                key = p;
                continue;
            }
            memset(&err, 0, sizeof err);
            if (byoai_server_config_set(&c, key, p, &err) != 0 && !err.msg[0]) abort();
            key = NULL;
        }
        check(&c);
        free(copy);
    }
    return 0;
}
