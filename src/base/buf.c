/* A growable byte buffer, always NUL-terminated: text being assembled
 * (an answer, a message of several lines, a response body). */
#include <stdlib.h>
#include <string.h>

#include "byoai/base.h"

bool byoai_buf_append(byoai_buf *b, const void *data, size_t n) {
    if (n > SIZE_MAX / 2 - b->len - 1) return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return false;
        b->data = p;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

void byoai_buf_clear(byoai_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void byoai_buf_free(byoai_buf *b) {
    free(b->data);
    *b = (byoai_buf){0};
}
