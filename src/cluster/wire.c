/*
 * Bounded little-endian readers and writers. Every peer message is read
 * through cl_rd: a read past the end, an over-long string or a non-finite
 * float marks the reader bad instead of touching memory it must not, and the
 * decoder refuses the message.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"
#include "byoai/quant.h"

/* ---- writer ------------------------------------------------------------------ */

static bool reserve(cl_buf *b, size_t n) {
    if (b->oom) return false;
    if (b->len + n <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) {
        if (cap > ((size_t)1 << 40)) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void cl_buf_free(cl_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void cl_buf_bytes(cl_buf *b, const void *p, size_t n) {
    if (!n || !reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void cl_buf_u8(cl_buf *b, uint8_t v) { cl_buf_bytes(b, &v, 1); }
void cl_buf_u16(cl_buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    cl_buf_bytes(b, x, 2);
}
void cl_buf_u32(cl_buf *b, uint32_t v) {
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    cl_buf_bytes(b, x, 4);
}
void cl_buf_u64(cl_buf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    cl_buf_bytes(b, x, 8);
}
void cl_buf_i32(cl_buf *b, int32_t v) { cl_buf_u32(b, (uint32_t)v); }
void cl_buf_f32(cl_buf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    cl_buf_u32(b, u);
}
void cl_buf_f64(cl_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    cl_buf_u64(b, u);
}
void cl_buf_str(cl_buf *b, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n > 0xFFFF) n = 0xFFFF;
    cl_buf_u16(b, (uint16_t)n);
    cl_buf_bytes(b, s, n);
}
void cl_buf_blob(cl_buf *b, const void *p, uint32_t n) {
    cl_buf_u32(b, n);
    cl_buf_bytes(b, p, n);
}

/* ---- reader ------------------------------------------------------------------ */

const uint8_t *cl_rd_bytes(cl_rd *r, size_t n) {
    if (r->bad || n > r->len - r->off) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

uint8_t cl_rd_u8(cl_rd *r) {
    const uint8_t *p = cl_rd_bytes(r, 1);
    return p ? p[0] : 0;
}
uint16_t cl_rd_u16(cl_rd *r) {
    const uint8_t *p = cl_rd_bytes(r, 2);
    return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}
uint32_t cl_rd_u32(cl_rd *r) {
    const uint8_t *p = cl_rd_bytes(r, 4);
    if (!p) return 0;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
uint64_t cl_rd_u64(cl_rd *r) {
    const uint8_t *p = cl_rd_bytes(r, 8);
    if (!p) return 0;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
int32_t cl_rd_i32(cl_rd *r) { return (int32_t)cl_rd_u32(r); }
float cl_rd_f32(cl_rd *r) {
    uint32_t u = cl_rd_u32(r);
    float f;
    memcpy(&f, &u, 4);
    if (!isfinite(f)) {
        r->bad = true;
        return 0;
    }
    return f;
}
double cl_rd_f64(cl_rd *r) {
    uint64_t u = cl_rd_u64(r);
    double f;
    memcpy(&f, &u, 8);
    if (!isfinite(f)) {
        r->bad = true;
        return 0;
    }
    return f;
}

void cl_rd_str(cl_rd *r, char *out, size_t cap) {
    out[0] = '\0';
    uint16_t n = cl_rd_u16(r);
    if (r->bad) return;
    if ((size_t)n >= cap) {
        r->bad = true;
        return;
    }
    const uint8_t *p = cl_rd_bytes(r, n);
    if (!p) return;
    for (uint16_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7F) {
            r->bad = true;
            return;
        }
    memcpy(out, p, n);
    out[n] = '\0';
}

const uint8_t *cl_rd_blob(cl_rd *r, uint32_t max, uint32_t *n) {
    *n = 0;
    uint32_t len = cl_rd_u32(r);
    if (r->bad) return NULL;
    if (len > max) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = cl_rd_bytes(r, len);
    if (p) *n = len;
    return p;
}

bool cl_rd_done(const cl_rd *r) { return !r->bad && r->off == r->len; }

/* ---- text encodings ------------------------------------------------------------ */

void cl_hex(const uint8_t *p, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int cl_unhex(const char *s, uint8_t *out, size_t n) {
    if (!s || strlen(s) != 2 * n) return BYOAI_EFORMAT;
    for (size_t i = 0; i < n; i++) {
        int a = hexval(s[2 * i]), b = hexval(s[2 * i + 1]);
        if (a < 0 || b < 0) return BYOAI_EFORMAT;
        out[i] = (uint8_t)(a << 4 | b);
    }
    return 0;
}

void cl_fingerprint(const uint8_t pk[32], char out[BYOAI_CLUSTER_ID_LEN + 1]) {
    uint8_t h[32];
    crypto_generichash(h, sizeof h, pk, 32, (const uint8_t *)"byoai-fingerprint", 17);
    cl_hex(h, BYOAI_CLUSTER_ID_LEN / 2, out);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t cl_b64_encode(const uint8_t *p, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        int chars = i + 2 < n ? 4 : i + 1 < n ? 3 : 2;
        for (int k = 0; k < chars; k++) {
            if (o + 1 >= cap) return 0;
            out[o++] = B64[(v >> (18 - 6 * k)) & 63];
        }
    }
    if (o >= cap) return 0;
    out[o] = '\0';
    return o;
}

int cl_b64_decode(const char *s, uint8_t *out, size_t cap, size_t *n) {
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (const char *c = s; *c; c++) {
        const char *f = strchr(B64, *c);
        if (!f || !*c) return BYOAI_EFORMAT;
        acc = acc << 6 | (uint32_t)(f - B64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) return BYOAI_EFORMAT;
            out[o++] = (uint8_t)(acc >> bits);
        }
        acc &= (1u << bits) - 1;
    }
    if (bits >= 6 || acc != 0) return BYOAI_EFORMAT; /* only the canonical encoding */
    *n = o;
    return 0;
}

/* ---- small helpers ---------------------------------------------------------------- */

int cl_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port, byoai_error *err) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return byoai_error_set(err, BYOAI_EINVAL, "'%s' is not HOST:PORT", s);
    size_t hl = (size_t)(colon - s);
    const char *h = s;
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') { /* [v6]:port */
        h++;
        hl -= 2;
    }
    if (hl >= cap) return byoai_error_set(err, BYOAI_EINVAL, "host in '%s' is too long", s);
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p == 0 || p > 65535)
        return byoai_error_set(err, BYOAI_EINVAL, "'%s' has no valid port (1..65535)", s);
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return 0;
}

uint64_t cl_random_u64(void) {
    uint64_t v;
    randombytes_buf(&v, sizeof v);
    return v;
}

void cl_f32_to_f16(const float *x, uint16_t *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = byoai_fp32_to_fp16(x[i]);
}

void cl_f16_to_f32(const uint8_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = byoai_fp16_to_fp32((uint16_t)(x[2 * i] | x[2 * i + 1] << 8));
}
