/* libFuzzer target: chat template detection on arbitrary template text,
 * and rendering of arbitrary conversations (the input split into messages
 * at NUL bytes, each message's first byte choosing its role), checked
 * against what every family must keep: each message's content appears in
 * the output (trimmed for the families that trim), and the JSON validator
 * of constrained sampling on the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/chat.h"
#include "byoai/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)byoai_chat_detect((const char *)data, size);
    byoai_json_state js;
    byoai_json_init(&js);
    if (byoai_json_feed(&js, (const char *)data, size) && byoai_json_min_remaining(&js) > 2 + 4 * 65 + 64) abort();

    byoai_chat_message msgs[32];
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= size && n < 32; i++) {
        if (i < size && data[i] != 0) continue;
        if (i > start) {
            msgs[n].role = (byoai_chat_role)(data[start] % 3);
            msgs[n].content = (const char *)data + start + 1;
            msgs[n].content_len = i - start - 1;
            n++;
        }
        start = i + 1;
    }
    if (n == 0) return 0;
    for (int f = 0; f < BYOAI_CHAT_FAMILY_COUNT; f++) {
        char *out;
        size_t len;
        if (byoai_chat_render((byoai_chat_family)f, msgs, n, data[0] & 1, NULL, NULL, &out, &len, NULL)) abort();
        if (out[len] != '\0') abort();
        /* untrimmed families keep every content byte for byte */
        if (f == BYOAI_CHAT_CHATML || f == BYOAI_CHAT_FALLBACK || f == BYOAI_CHAT_PHI3 || f == BYOAI_CHAT_ZEPHYR)
            for (size_t i = 0; i < n; i++)
                if (msgs[i].content_len && !memmem(out, len, msgs[i].content, msgs[i].content_len)) abort();
        free(out);
    }
    return 0;
}
