/* libFuzzer target: the server's request validators on arbitrary bodies:
 * the OpenAI ones (chat with tools and response formats, completions,
 * embeddings), with the chat template renderer (with the request's tools)
 * on whatever they accept, a conversation create/replace body
 * (/api/conversations), and the same bytes as an Authorization header
 * against a configured API key. Any crash, leak or sanitizer report is a
 * bug; every input must end in success or a 4xx/5xx error with a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/server_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    srv_limits lim = {.max_messages = 64, .max_tokens = 4096};
    srv_request r;
    srv_error e;
    memset(&e, 0, sizeof e);
    int rc = srv_parse_chat(body, size, &lim, &r, &e);
    if (rc && (e.status < 400 || !e.message[0])) abort();
    if (!rc) {
        for (int f = 0; f < BYOAI_CHAT_FAMILY_COUNT; f++) {
            char *out;
            size_t len;
            if (byoai_chat_render((byoai_chat_family)f, r.messages, r.n_messages, true, "<s>", "</s>", &out, &len,
                                  NULL) == 0) {
                if (strlen(out) > len) abort();
                free(out);
            }
            /* with what the request says about tools: definitions, calls, results */
            if (byoai_chat_render_tools((byoai_chat_family)f, r.messages, r.msg_tools, r.n_messages,
                                        (const char *const *)r.tool_text, r.n_tools, true, "<s>", "</s>", &out, &len,
                                        NULL) == 0) {
                if (out[len] != '\0') abort();
                free(out);
            }
        }
        json_t *j = srv_error_json(&e);
        json_decref(j);
    }
    srv_request_free(&r);
    memset(&e, 0, sizeof e);
    rc = srv_parse_completion(body, size, &lim, &r, &e);
    if (rc && (e.status < 400 || !e.message[0])) abort();
    srv_request_free(&r);
    memset(&e, 0, sizeof e);
    rc = srv_parse_embeddings(body, size, &r, &e);
    if (rc && (e.status < 400 || !e.message[0])) abort();
    srv_request_free(&r);

    memset(&e, 0, sizeof e);
    json_t *o = srv_parse_object(body, size, &e);
    if (!o && (e.status != 400 || !e.message[0])) abort();
    if (o) {
        memset(&e, 0, sizeof e);
        if (srv_conversation_check(o, &e) && (e.status != 400 || !e.message[0])) abort();
        json_decref(o);
    }

    /* an Authorization header: only "Bearer <the key>" passes */
    static srv_auth *auth;
    static const char key[] = "sk-fuzz-0123456789";
    if (!auth) {
        static byoai_server_config cfg;
        byoai_server_config_defaults(&cfg);
        byoai_error err;
        if (byoai_server_config_set(&cfg, "api-key", key, &err) || srv_auth_new(&cfg, NULL, &auth, &err)) abort();
    }
    char *hdr = malloc(size + 1);
    if (!hdr) return 0;
    memcpy(hdr, data, size);
    hdr[size] = '\0';
    memset(&e, 0, sizeof e);
    rc = srv_auth_check(auth, hdr, &e);
    if (rc && (e.status != 401 || !e.message[0])) abort();
    if (!rc) { /* accepted: "Bearer" in any case, spaces, then exactly the key */
        const char *k = hdr + 7;
        while (*k == ' ') k++;
        if (strncasecmp(hdr, "Bearer ", 7) || strcmp(k, key)) abort();
    }
    free(hdr);
    return 0;
}
