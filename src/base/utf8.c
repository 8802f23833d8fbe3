/* UTF-8 helpers used by tokenizers, streaming output and input validation. */
#include <stdlib.h>
#include <string.h>

#include "byoai/base.h"

int byoai_utf8_len(uint8_t c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

int byoai_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const uint8_t *u = (const uint8_t *)s;
    if (n == 0) {
        *cp = 0xFFFD;
        return 1;
    }
    uint8_t c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) { len = 2; v = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; v = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; v = c & 0x07; min = 0x10000; }
    else { *cp = 0xFFFD; return 1; }
    if ((size_t)len > n) { *cp = 0xFFFD; return 1; }
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) { *cp = 0xFFFD; return 1; }
        v = (v << 6) | (u[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) { *cp = 0xFFFD; return 1; }
    *cp = v;
    return len;
}

bool byoai_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int l = byoai_utf8_decode(s + i, n - i, &cp);
        if (cp == 0xFFFD) {
            /* a literal U+FFFD (EF BF BD) is valid */
            const uint8_t *u = (const uint8_t *)s + i;
            if (!(l == 3 && u[0] == 0xEF && u[1] == 0xBF && u[2] == 0xBD)) return false;
        }
        i += (size_t)l;
    }
    return true;
}

size_t byoai_utf8_incomplete_tail(const char *s, size_t n) {
    /* look back at most 3 bytes for a lead byte whose sequence runs past n */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t c = (uint8_t)s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte: keep looking */
        int need = byoai_utf8_len(c);
        if (c >= 0xC0 && (size_t)need > back) return back;
        return 0;
    }
    return 0;
}

int byoai_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

char *byoai_utf8_sanitize(const char *s, size_t n, size_t *out_len) {
    char *o = malloc(n * 3 + 1), *w = o;
    if (!o) return NULL;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            *w++ = (char)c;
            i++;
            continue;
        }
        int l = byoai_utf8_len(c);
        if (i + (size_t)l <= n && l > 1 && byoai_utf8_valid(s + i, (size_t)l)) {
            memcpy(w, s + i, (size_t)l);
            w += l;
            i += (size_t)l;
        } else {
            memcpy(w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        }
    }
    *w = '\0';
    if (out_len) *out_len = (size_t)(w - o);
    return o;
}
