/* Names of models, variants and bundles: what a user may type and what may
 * become a file name. Nothing that could climb out of a directory, hide a
 * file or look like an option passes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static int check_part(const char *full, const char *p, size_t n, size_t max, const char *what, byoai_error *err) {
    if (n == 0) return byoai_error_set(err, BYOAI_EINVAL, "invalid name '%s': the %s is empty", full, what);
    if (n > max)
        return byoai_error_set(err, BYOAI_EINVAL, "invalid name '%s': the %s is longer than %zu characters", full,
                               what, max);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!name_char((char)c)) {
            if (c >= 'A' && c <= 'Z')
                return byoai_error_set(err, BYOAI_EINVAL, "invalid name '%s': use lowercase letters", full);
            if (c == '/' || c == '\\')
                return byoai_error_set(err, BYOAI_EINVAL, "invalid name '%s': names cannot contain '%c'", full, c);
            if (c < 0x20 || c >= 0x7f)
                return byoai_error_set(err, BYOAI_EINVAL,
                                       "invalid name: byte 0x%02x is not allowed (use a-z, 0-9, '.', '-', '_')", c);
            return byoai_error_set(err, BYOAI_EINVAL,
                                   "invalid name '%s': '%c' is not allowed (use a-z, 0-9, '.', '-', '_')", full, c);
        }
    }
    if (!((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= '0' && p[0] <= '9')))
        return byoai_error_set(err, BYOAI_EINVAL, "invalid name '%s': the %s must start with a letter or digit", full,
                               what);
    for (size_t i = 0; i + 1 < n; i++)
        if (p[i] == '.' && p[i + 1] == '.')
            return byoai_error_set(err, BYOAI_EINVAL, "invalid name '%s': '..' is not allowed", full);
    return 0;
}

int byoai_store_check_name(const char *name, byoai_error *err) {
    if (!name) return byoai_error_set(err, BYOAI_EINVAL, "missing name");
    size_t n = strnlen(name, BYOAI_NAME_MAX + 2);
    if (n > BYOAI_NAME_MAX)
        return byoai_error_set(err, BYOAI_EINVAL, "invalid name: longer than %d characters", BYOAI_NAME_MAX);
    const char *colon = memchr(name, ':', n);
    size_t base_len = colon ? (size_t)(colon - name) : n;
    int rc = check_part(name, name, base_len, BYOAI_NAME_MAX, "name", err);
    if (rc || !colon) return rc;
    if (memchr(colon + 1, ':', n - base_len - 1))
        return byoai_error_set(err, BYOAI_EINVAL, "invalid name '%s': at most one ':' (NAME:VARIANT)", name);
    return check_part(name, colon + 1, n - base_len - 1, 63, "variant", err);
}

int store_split_name(const char *name, char *base, char *variant, byoai_error *err) {
    int rc = byoai_store_check_name(name, err);
    if (rc) return rc;
    const char *colon = strchr(name, ':');
    size_t bl = colon ? (size_t)(colon - name) : strlen(name);
    memcpy(base, name, bl);
    base[bl] = '\0';
    snprintf(variant, 64, "%s", colon ? colon + 1 : "");
    return 0;
}

bool store_copy(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) return false;
    memcpy(dst, src, n + 1);
    return true;
}

bool byoai_store_check_sha256(const char *h) {
    if (!h) return false;
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return false;
    return h[64] == '\0';
}

int byoai_parse_bytes(const char *text, uint64_t *out) {
    if (!text || !*text) return BYOAI_EINVAL;
    char *end;
    double v = strtod(text, &end);
    if (end == text || v < 0 || v != v) return BYOAI_EINVAL;
    double mul = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mul = 1024.0; break;
        case 'm': case 'M': mul = 1024.0 * 1024; break;
        case 'g': case 'G': mul = 1024.0 * 1024 * 1024; break;
        case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; break;
        default: return BYOAI_EINVAL;
        }
        end++;
        if (*end == 'i') end++;
        if (*end == 'B' || *end == 'b') end++;
        if (*end) return BYOAI_EINVAL;
    }
    double r = v * mul;
    if (r > 9.0e18) return BYOAI_ERANGE;
    *out = (uint64_t)r;
    return 0;
}

const char *byoai_format_bytes(uint64_t n, char *buf, size_t cap) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0) snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}
