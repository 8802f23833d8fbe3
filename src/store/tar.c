/* A minimal tar (POSIX ustar) reader and writer for bundle archives: plain
 * files only, names of at most 100 bytes, sizes in octal or (past 8 GiB)
 * GNU base-256. Archives come from other machines: the parser trusts
 * nothing. */
#include <stdio.h>
#include <string.h>

#include "store_internal.h"

static void octal(char *dst, size_t width, uint64_t v) {
    /* width-1 digits, then NUL */
    for (size_t i = width - 1; i-- > 0;) {
        dst[i] = (char)('0' + (v & 7));
        v >>= 3;
    }
    dst[width - 1] = '\0';
}

int tar_header(uint8_t blk[512], const char *name, uint64_t size, uint64_t mtime) {
    memset(blk, 0, 512);
    size_t n = strlen(name);
    if (n == 0 || n > 100) return BYOAI_EINVAL;
    memcpy(blk, name, n);
    octal((char *)blk + 100, 8, 0644);
    octal((char *)blk + 108, 8, 0);
    octal((char *)blk + 116, 8, 0);
    if (size < (1ull << 33)) {
        octal((char *)blk + 124, 12, size);
    } else { /* base-256: 0x80 then big-endian */
        blk[124] = 0x80;
        for (int i = 0; i < 8; i++) blk[135 - i] = (uint8_t)(size >> (8 * i));
    }
    octal((char *)blk + 136, 12, mtime & 077777777777ull);
    blk[156] = '0';
    memcpy(blk + 257, "ustar", 6);
    memcpy(blk + 263, "00", 2);
    memcpy(blk + 265, "byoai", 5);
    memcpy(blk + 297, "byoai", 5);
    memset(blk + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += blk[i];
    octal((char *)blk + 148, 7, sum);
    blk[155] = ' ';
    return 0;
}

static bool parse_octal(const uint8_t *p, size_t n, uint64_t *out) {
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && p[i] == ' ') i++;
    size_t digits = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
        if (v >> 60) return false;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    for (; i < n; i++)
        if (p[i] != '\0' && p[i] != ' ') return false;
    if (!digits) return false;
    *out = v;
    return true;
}

int tar_parse(const uint8_t blk[512], tar_entry *e, bool *end, byoai_error *err) {
    memset(e, 0, sizeof *e);
    *end = true;
    for (int i = 0; i < 512; i++)
        if (blk[i]) {
            *end = false;
            break;
        }
    if (*end) return 0;
    uint64_t want;
    if (!parse_octal(blk + 148, 8, &want)) return byoai_error_set(err, BYOAI_EFORMAT, "archive: bad header checksum field");
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? ' ' : blk[i];
    if (sum != want) return byoai_error_set(err, BYOAI_EFORMAT, "archive: header checksum mismatch (corrupt archive)");
    if (memcmp(blk + 257, "ustar", 5)) return byoai_error_set(err, BYOAI_EFORMAT, "archive: not a ustar archive");
    if (!memchr(blk, '\0', 100) && blk[99]) {
        memcpy(e->name, blk, 100);
        e->name[100] = '\0';
    } else {
        snprintf(e->name, sizeof e->name, "%s", (const char *)blk);
    }
    if (blk[345]) return byoai_error_set(err, BYOAI_EFORMAT, "archive: long names (prefix) are not used by byoai");
    if (blk[124] & 0x80) {
        if (blk[124] != 0x80) return byoai_error_set(err, BYOAI_EFORMAT, "archive: negative size");
        uint64_t v = 0;
        for (int i = 125; i < 136; i++) {
            if (v >> 55) return byoai_error_set(err, BYOAI_EFORMAT, "archive: size out of range");
            v = (v << 8) | blk[i];
        }
        e->size = v;
    } else if (!parse_octal(blk + 124, 12, &e->size)) {
        return byoai_error_set(err, BYOAI_EFORMAT, "archive: bad size field");
    }
    if (e->size > (1ull << 50)) return byoai_error_set(err, BYOAI_EFORMAT, "archive: entry size out of range");
    e->type = (char)blk[156];
    return 0;
}
