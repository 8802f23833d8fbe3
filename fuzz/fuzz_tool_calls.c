/* libFuzzer target: reading tool calls out of arbitrary model output in
 * every family's syntax, and rendering conversations whose tool calls and
 * results hold arbitrary bytes. Every call read must have a name and
 * arguments that are a JSON object; rendering must succeed and end in NUL. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return 0;
    const char *s = (const char *)data;
    for (int f = 0; f < BYOAI_CHAT_FAMILY_COUNT; f++) {
        byoai_chat_parsed p;
        if (byoai_chat_parse_tool_calls((byoai_chat_family)f, s, size, &p, NULL)) abort();
        if (!p.content || p.content[p.content_len] != '\0') abort();
        for (size_t i = 0; i < p.n_calls; i++) {
            if (!p.calls[i].name || !p.calls[i].name[0]) abort();
            json_t *a = json_loads(p.calls[i].arguments, 0, NULL);
            if (!json_is_object(a)) abort();
            json_decref(a);
        }
        byoai_chat_parsed_free(&p);
    }
    /* a conversation: the input split at NUL bytes into a user turn, an
     * assistant call (name, arguments), a tool result, a tool definition */
    const char *part[4] = {"", "", "", ""};
    char *copy = malloc(size + 1);
    if (!copy) return 0;
    memcpy(copy, s, size);
    copy[size] = '\0';
    size_t k = 0;
    part[k++] = copy;
    for (size_t i = 0; i < size && k < 4; i++)
        if (copy[i] == '\0') part[k++] = copy + i + 1;
    byoai_chat_tool_call call = {part[1], part[1][0] ? part[1] : "f", part[2]};
    byoai_chat_message msgs[3] = {
        {BYOAI_ROLE_USER, part[0], strlen(part[0])},
        {BYOAI_ROLE_ASSISTANT, "", 0},
        {BYOAI_ROLE_TOOL, part[2], strlen(part[2])},
    };
    byoai_chat_message_tools extra[3] = {{0}, {&call, 1, NULL, NULL}, {NULL, 0, part[1], part[3]}};
    const char *tools[1] = {part[3]};
    for (int f = 0; f < BYOAI_CHAT_FAMILY_COUNT; f++) {
        char *out;
        size_t len;
        if (byoai_chat_render_tools((byoai_chat_family)f, msgs, extra, 3, tools, 1, true, NULL, NULL, &out, &len, NULL))
            abort();
        if (out[len] != '\0') abort();
        free(out);
    }
    free(copy);
    return 0;
}
