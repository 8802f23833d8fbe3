/* libFuzzer target: response headers from registries, mirrors and the
 * Hugging Face Hub (hostile servers included), line by line as libcurl
 * hands them over: not NUL-terminated, so every parser must stay within
 * the line's length (ASan sees any read past it: each line is copied into
 * a buffer of exactly its size). Status lines, Content-Range (resumed
 * downloads), ETag, X-Linked-Etag/-Size, Content-Length. Any crash, leak
 * or sanitizer report is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/registry_internal.h"

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reg_response r;
    memset(&r, 0, sizeof r);
    size_t start = 0;
    while (start < size) {
        const uint8_t *nl = memchr(data + start, '\n', size - start);
        size_t len = nl ? (size_t)(nl - (data + start)) + 1 : size - start;
        char *line = malloc(len ? len : 1);
        if (!line) return 0;
        memcpy(line, data + start, len);
        reg_header_line(&r, line, len);
        long st = reg_status_line(line, len);
        if (st < 0 || st > 999) abort();
        uint64_t first;
        if (reg_content_range_start(line, len, &first) && first > 9999999999999999999ull) abort();
        free(line);
        start += len;
    }
    if (!TERMINATED(r.etag) || !TERMINATED(r.last_modified) || !TERMINATED(r.linked_etag) ||
        !TERMINATED(r.repo_commit))
        abort();
    return 0;
}
