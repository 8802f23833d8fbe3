/* libFuzzer target: the OpenAI request parsers and validators (chat with
 * tools and response formats, completions, embeddings) on arbitrary bodies,
 * and the chat template renderer (with the request's tools) on whatever
 * they accept. Any crash, leak or sanitizer report is
 * a bug; every input must end in success or a 4xx/5xx error with a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    return 0;
}
