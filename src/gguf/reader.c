/*
 * GGUF reader: maps a file and validates every byte it will later hand out.
 *
 * Layout (little-endian):
 *   u32 magic "GGUF", u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x { string key, u32 value_type, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
 *   padding to general.alignment (default 32)
 *   tensor data; each tensor at data_start + offset
 * A string is u64 length + bytes (no NUL). An array is u32 element type,
 * u64 count, then the elements.
 */
#include "byoai/gguf.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NESTING 8
#define MAX_KEY_LEN 65535
#define MAX_NAME_LEN 1024

/* ---- a bump arena for names and value trees ----------------------------- */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) uint8_t data[];
} arena_chunk;

static void *arena_alloc(void **arena, size_t n) {
    n = (n + 15) & ~(size_t)15;
    arena_chunk *c = *arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        arena_chunk *nc = malloc(sizeof *nc + cap);
        if (!nc) return NULL;
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        *arena = c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(void *arena) {
    arena_chunk *c = arena;
    while (c) {
        arena_chunk *n = c->next;
        free(c);
        c = n;
    }
}

/* ---- the cursor ---------------------------------------------------------- */
typedef struct {
    const uint8_t *buf;
    uint64_t size;
    uint64_t pos;
    byoai_error *err;
    byoai_gguf *g;
    char where[320]; /* "metadata key 'x'" etc., for messages */
} cursor;

static int fail(cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(cursor *c, const char *fmt, ...) {
    char msg[BYOAI_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->where[0])
        return byoai_error_set(c->err, BYOAI_EFORMAT, "%s: %s", c->where, msg);
    return byoai_error_set(c->err, BYOAI_EFORMAT, "%s", msg);
}

static uint64_t remaining(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, uint64_t n, const char *what) {
    if (remaining(c) < n)
        return fail(c, "file ends at byte %llu while reading %s (%llu bytes needed at byte %llu)",
                    (unsigned long long)c->size, what, (unsigned long long)n, (unsigned long long)c->pos);
    return 0;
}

static uint32_t le32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int rd_u32(cursor *c, uint32_t *out, const char *what) {
    if (need(c, 4, what)) return BYOAI_EFORMAT;
    *out = le32(c->buf + c->pos);
    c->pos += 4;
    return 0;
}
static int rd_u64(cursor *c, uint64_t *out, const char *what) {
    if (need(c, 8, what)) return BYOAI_EFORMAT;
    *out = le64(c->buf + c->pos);
    c->pos += 8;
    return 0;
}
static int rd_str(cursor *c, byoai_gguf_str *s, const char *what) {
    uint64_t len;
    if (rd_u64(c, &len, what)) return BYOAI_EFORMAT;
    if (len > remaining(c))
        return fail(c, "%s is %llu bytes long but only %llu bytes remain in the file (at byte %llu)", what,
                    (unsigned long long)len, (unsigned long long)remaining(c), (unsigned long long)c->pos);
    s->ptr = (const char *)c->buf + c->pos;
    s->len = len;
    c->pos += len;
    return 0;
}

size_t byoai_gguf_vtype_size(uint32_t vt) {
    switch (vt) {
    case BYOAI_GGUF_UINT8: case BYOAI_GGUF_INT8: case BYOAI_GGUF_BOOL: return 1;
    case BYOAI_GGUF_UINT16: case BYOAI_GGUF_INT16: return 2;
    case BYOAI_GGUF_UINT32: case BYOAI_GGUF_INT32: case BYOAI_GGUF_FLOAT32: return 4;
    case BYOAI_GGUF_UINT64: case BYOAI_GGUF_INT64: case BYOAI_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *byoai_gguf_vtype_name(uint32_t vt) {
    static const char *names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                  "bool", "string", "array", "uint64", "int64", "float64"};
    return vt < BYOAI_GGUF_VTYPE_COUNT ? names[vt] : "unknown";
}

/* Decode one scalar at p of type vt into v. */
static void decode_scalar(uint32_t vt, const uint8_t *p, byoai_gguf_value *v) {
    v->type = (byoai_gguf_vtype)vt;
    switch (vt) {
    case BYOAI_GGUF_UINT8: v->v.u64 = p[0]; break;
    case BYOAI_GGUF_INT8: v->v.i64 = (int8_t)p[0]; break;
    case BYOAI_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); v->v.u64 = x; break; }
    case BYOAI_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); v->v.i64 = x; break; }
    case BYOAI_GGUF_UINT32: v->v.u64 = le32(p); break;
    case BYOAI_GGUF_INT32: v->v.i64 = (int32_t)le32(p); break;
    case BYOAI_GGUF_FLOAT32: { float f; memcpy(&f, p, 4); v->v.f64 = f; break; }
    case BYOAI_GGUF_BOOL: v->v.b = p[0] != 0; break;
    case BYOAI_GGUF_UINT64: v->v.u64 = le64(p); break;
    case BYOAI_GGUF_INT64: v->v.i64 = (int64_t)le64(p); break;
    case BYOAI_GGUF_FLOAT64: { double d; memcpy(&d, p, 8); v->v.f64 = d; break; }
    default: break;
    }
}

static int rd_value(cursor *c, uint32_t vt, byoai_gguf_value *v, int depth);

static int rd_array(cursor *c, byoai_gguf_value *v, int depth) {
    if (depth >= MAX_NESTING) return fail(c, "arrays nested deeper than %d levels", MAX_NESTING);
    uint32_t et;
    uint64_t n;
    if (rd_u32(c, &et, "array element type") || rd_u64(c, &n, "array length")) return BYOAI_EFORMAT;
    if (et >= BYOAI_GGUF_VTYPE_COUNT)
        return fail(c, "array element type %u at byte %llu is not a GGUF value type (0..12)", et,
                    (unsigned long long)(c->pos - 12));
    v->type = BYOAI_GGUF_ARRAY;
    v->v.arr.elem_type = (byoai_gguf_vtype)et;
    v->v.arr.count = n;
    v->v.arr.data = NULL;
    v->v.arr.items = NULL;
    size_t es = byoai_gguf_vtype_size(et);
    if (es) {
        uint64_t bytes;
        if (byoai_mul_overflow(n, es, &bytes) || bytes > remaining(c))
            return fail(c, "array of %llu %s values needs more bytes than the %llu left in the file",
                        (unsigned long long)n, byoai_gguf_vtype_name(et), (unsigned long long)remaining(c));
        v->v.arr.data = c->buf + c->pos;
        if (et == BYOAI_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (v->v.arr.data[i] > 1)
                    return fail(c, "bool array element %llu has value %u (must be 0 or 1)", (unsigned long long)i,
                                v->v.arr.data[i]);
        }
        c->pos += bytes;
        return 0;
    }
    /* strings need >= 8 bytes each, arrays >= 12: bound n before allocating */
    uint64_t min_each = et == BYOAI_GGUF_STRING ? 8 : 12;
    if (n > remaining(c) / min_each)
        return fail(c, "array claims %llu %s elements but only %llu bytes remain in the file",
                    (unsigned long long)n, byoai_gguf_vtype_name(et), (unsigned long long)remaining(c));
    v->v.arr.data = c->buf + c->pos;
    if (n == 0) return 0;
    byoai_gguf_value *items = arena_alloc(&c->g->arena, (size_t)n * sizeof *items);
    if (!items) return byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory for an array of %llu elements",
                                       (unsigned long long)n);
    v->v.arr.items = items;
    for (uint64_t i = 0; i < n; i++) {
        if (et == BYOAI_GGUF_STRING) {
            items[i].type = BYOAI_GGUF_STRING;
            if (rd_str(c, &items[i].v.str, "array string")) return BYOAI_EFORMAT;
        } else {
            if (rd_value(c, et, &items[i], depth + 1)) return BYOAI_EFORMAT;
        }
    }
    return 0;
}

static int rd_value(cursor *c, uint32_t vt, byoai_gguf_value *v, int depth) {
    if (vt == BYOAI_GGUF_STRING) {
        v->type = BYOAI_GGUF_STRING;
        return rd_str(c, &v->v.str, "string value");
    }
    if (vt == BYOAI_GGUF_ARRAY) return rd_array(c, v, depth);
    size_t es = byoai_gguf_vtype_size(vt);
    if (!es) return fail(c, "value type %u is not a GGUF value type (0..12)", vt);
    if (need(c, es, byoai_gguf_vtype_name(vt))) return BYOAI_EFORMAT;
    if (vt == BYOAI_GGUF_BOOL && c->buf[c->pos] > 1)
        return fail(c, "bool value is %u at byte %llu (must be 0 or 1)", c->buf[c->pos],
                    (unsigned long long)c->pos);
    decode_scalar(vt, c->buf + c->pos, v);
    c->pos += es;
    return 0;
}

static char *arena_strdup(byoai_gguf *g, const char *s, size_t n) {
    char *p = arena_alloc(&g->arena, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* printable copy of a name for messages */
static void show_name(char *out, size_t cap, const char *s, uint64_t len) {
    size_t j = 0;
    for (uint64_t i = 0; i < len && j + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f) out[j++] = (char)ch;
        else j += (size_t)snprintf(out + j, cap - j, "\\x%02x", ch);
    }
    if (len > 0 && j + 5 >= cap && j + 4 <= cap) { out[j++] = '.'; out[j++] = '.'; out[j++] = '.'; }
    out[j] = '\0';
}

static int cmp_kv(const void *a, const void *b) {
    return strcmp(((const byoai_gguf_kv *)a)->key, ((const byoai_gguf_kv *)b)->key);
}

typedef struct { const char *name; uint64_t idx; } name_idx;
static int cmp_name_idx(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}
typedef struct { uint64_t off, end, idx; } span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off ? 1 : 0;
}

static int parse(byoai_gguf *g, byoai_error *err) {
    cursor c = {.buf = g->base, .size = g->file_size, .pos = 0, .err = err, .g = g};
    uint32_t magic;
    if (g->file_size < 4)
        return fail(&c, "file is %llu bytes, too short to be GGUF (no magic)", (unsigned long long)g->file_size);
    magic = le32(g->base);
    if (magic != BYOAI_GGUF_MAGIC) {
        if (magic == 0x47475546u)
            return fail(&c, "big-endian GGUF files are not supported; use a little-endian conversion");
        return fail(&c, "not a GGUF file: magic is 0x%08x, expected \"GGUF\"", magic);
    }
    c.pos = 4;
    if (rd_u32(&c, &g->version, "the version")) return BYOAI_EFORMAT;
    if (g->version == 1)
        return fail(&c, "GGUF version 1 is not supported (uses 32-bit counts); re-convert the model to GGUF v3");
    if (g->version != 2 && g->version != 3)
        return fail(&c, "GGUF version %u is not supported (this build reads versions 2 and 3)", g->version);
    if (rd_u64(&c, &g->n_tensors, "the tensor count") || rd_u64(&c, &g->n_kv, "the metadata count"))
        return BYOAI_EFORMAT;
    /* each kv needs >= 8 (key len) + 4 (type) + 1 bytes; each tensor info >= 8+4+8+4+8 */
    if (g->n_kv > remaining(&c) / 13)
        return fail(&c, "header claims %llu metadata entries, more than a %llu-byte file can hold",
                    (unsigned long long)g->n_kv, (unsigned long long)g->file_size);
    if (g->n_tensors > remaining(&c) / 32)
        return fail(&c, "header claims %llu tensors, more than a %llu-byte file can hold",
                    (unsigned long long)g->n_tensors, (unsigned long long)g->file_size);

    g->alignment = BYOAI_GGUF_DEFAULT_ALIGNMENT;
    if (g->n_kv) {
        g->kv = calloc((size_t)g->n_kv, sizeof *g->kv);
        if (!g->kv) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for %llu metadata entries",
                                           (unsigned long long)g->n_kv);
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        byoai_gguf_kv *kv = &g->kv[i];
        kv->file_offset = c.pos;
        snprintf(c.where, sizeof c.where, "metadata entry #%llu", (unsigned long long)i);
        byoai_gguf_str key;
        if (rd_str(&c, &key, "the key")) return BYOAI_EFORMAT;
        char shown[200];
        show_name(shown, sizeof shown, key.ptr, key.len);
        if (key.len == 0) return fail(&c, "empty key");
        if (key.len > MAX_KEY_LEN) return fail(&c, "key is %llu bytes long (max %d)", (unsigned long long)key.len,
                                               MAX_KEY_LEN);
        if (memchr(key.ptr, 0, key.len)) return fail(&c, "key '%s' contains a NUL byte", shown);
        if (!byoai_utf8_valid(key.ptr, key.len)) return fail(&c, "key '%s' is not valid UTF-8", shown);
        snprintf(c.where, sizeof c.where, "metadata '%s'", shown);
        kv->key = arena_strdup(g, key.ptr, key.len);
        if (!kv->key) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        uint32_t vt;
        if (rd_u32(&c, &vt, "the value type")) return BYOAI_EFORMAT;
        if (vt >= BYOAI_GGUF_VTYPE_COUNT) return fail(&c, "value type %u is not a GGUF value type (0..12)", vt);
        if (rd_value(&c, vt, &kv->value, 0)) return BYOAI_EFORMAT;
        if (!strcmp(kv->key, "general.alignment")) {
            if (vt != BYOAI_GGUF_UINT32) return fail(&c, "must be uint32, found %s", byoai_gguf_vtype_name(vt));
            uint64_t a = kv->value.v.u64;
            if (a == 0 || (a & (a - 1)) || a > (1u << 20))
                return fail(&c, "alignment %llu is not a power of two up to 1 MiB", (unsigned long long)a);
            g->alignment = (uint32_t)a;
        }
    }
    c.where[0] = '\0';
    /* duplicate keys: check on a sorted copy so lookups keep file order */
    if (g->n_kv > 1) {
        byoai_gguf_kv *sorted = malloc((size_t)g->n_kv * sizeof *sorted);
        if (!sorted) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        memcpy(sorted, g->kv, (size_t)g->n_kv * sizeof *sorted);
        qsort(sorted, (size_t)g->n_kv, sizeof *sorted, cmp_kv);
        for (uint64_t i = 1; i < g->n_kv; i++) {
            if (!strcmp(sorted[i].key, sorted[i - 1].key)) {
                char shown[200];
                show_name(shown, sizeof shown, sorted[i].key, strlen(sorted[i].key));
                free(sorted);
                return fail(&c, "metadata key '%s' appears more than once", shown);
            }
        }
        free(sorted);
    }

    if (g->n_tensors) {
        g->tensors = calloc((size_t)g->n_tensors, sizeof *g->tensors);
        if (!g->tensors) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for %llu tensors",
                                                (unsigned long long)g->n_tensors);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        byoai_gguf_tensor *t = &g->tensors[i];
        snprintf(c.where, sizeof c.where, "tensor #%llu", (unsigned long long)i);
        byoai_gguf_str name;
        if (rd_str(&c, &name, "the tensor name")) return BYOAI_EFORMAT;
        char shown[200];
        show_name(shown, sizeof shown, name.ptr, name.len);
        if (name.len == 0) return fail(&c, "empty tensor name");
        if (name.len > MAX_NAME_LEN) return fail(&c, "tensor name is %llu bytes long (max %d)",
                                                 (unsigned long long)name.len, MAX_NAME_LEN);
        if (memchr(name.ptr, 0, name.len)) return fail(&c, "tensor name '%s' contains a NUL byte", shown);
        snprintf(c.where, sizeof c.where, "tensor %s", shown);
        t->name = arena_strdup(g, name.ptr, name.len);
        if (!t->name) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        if (rd_u32(&c, &t->n_dims, "the dimension count")) return BYOAI_EFORMAT;
        if (t->n_dims == 0 || t->n_dims > BYOAI_GGUF_MAX_DIMS)
            return fail(&c, "has %u dimensions (must be 1..%d)", t->n_dims, BYOAI_GGUF_MAX_DIMS);
        uint64_t nel = 1;
        for (uint32_t d = 0; d < BYOAI_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (rd_u64(&c, &t->ne[d], "a dimension")) return BYOAI_EFORMAT;
            if (t->ne[d] > (uint64_t)INT64_MAX)
                return fail(&c, "dimension %u is %llu, larger than 2^63-1", d, (unsigned long long)t->ne[d]);
            if (byoai_mul_overflow(nel, t->ne[d], &nel) || nel > (uint64_t)INT64_MAX)
                return fail(&c, "element count overflows 64 bits (dimension %u = %llu)", d,
                            (unsigned long long)t->ne[d]);
        }
        t->n_elements = nel;
        uint32_t type;
        if (rd_u32(&c, &type, "the tensor type")) return BYOAI_EFORMAT;
        const byoai_type_traits *tr = byoai_type_get(type);
        if (!tr) return fail(&c, "unknown tensor type %u (this build knows ggml types up to %d)", type,
                             BYOAI_TYPE_COUNT - 1);
        t->type = (byoai_type)type;
        if (t->ne[0] % tr->block_size != 0)
            return fail(&c, "first dimension %llu is not a multiple of the %s block size %u",
                        (unsigned long long)t->ne[0], tr->name, tr->block_size);
        uint64_t row = byoai_type_row_size(type, t->ne[0]);
        if (row == 0 && t->ne[0] != 0) /* byoai_type_row_size's answer to an overflow */
            return fail(&c, "data size overflows 64 bits (a row of %llu %s values)", (unsigned long long)t->ne[0],
                        tr->name);
        uint64_t rows = nel / (t->ne[0] ? t->ne[0] : 1);
        if (t->ne[0] == 0) rows = 0;
        if (byoai_mul_overflow(row, rows, &t->size))
            return fail(&c, "data size overflows 64 bits");
        if (rd_u64(&c, &t->offset, "the data offset")) return BYOAI_EFORMAT;
        if (t->offset % g->alignment)
            return fail(&c, "data offset %llu is not a multiple of the alignment %u",
                        (unsigned long long)t->offset, g->alignment);
    }
    c.where[0] = '\0';
    uint64_t data_off = c.pos;
    uint64_t pad = (g->alignment - data_off % g->alignment) % g->alignment;
    data_off += pad;
    g->data_offset = data_off;
    if (g->n_tensors > 0 && data_off > g->file_size)
        return fail(&c, "tensor data section would start at byte %llu, past the end of the file (%llu)",
                    (unsigned long long)data_off, (unsigned long long)g->file_size);

    /* sizes against the file, duplicates, overlaps */
    if (g->n_tensors) {
        span *spans = malloc((size_t)g->n_tensors * sizeof *spans);
        name_idx *names = malloc((size_t)g->n_tensors * sizeof *names);
        if (!spans || !names) {
            free(spans);
            free(names);
            return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        }
        int rc = 0;
        for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
            byoai_gguf_tensor *t = &g->tensors[i];
            uint64_t start, end;
            if (byoai_add_overflow(data_off, t->offset, &start) || byoai_add_overflow(start, t->size, &end) ||
                end > g->file_size) {
                snprintf(c.where, sizeof c.where, "tensor %s", t->name);
                rc = fail(&c, "data ends at byte %llu, past the end of the file (%llu)",
                          (unsigned long long)(start + t->size), (unsigned long long)g->file_size);
                break;
            }
            t->data = g->base + start;
            spans[i] = (span){t->offset, t->offset + t->size, i};
            names[i] = (name_idx){t->name, i};
        }
        if (!rc) {
            qsort(names, (size_t)g->n_tensors, sizeof *names, cmp_name_idx);
            for (uint64_t i = 1; i < g->n_tensors && !rc; i++)
                if (!strcmp(names[i].name, names[i - 1].name)) {
                    c.where[0] = '\0';
                    rc = fail(&c, "tensor name '%s' appears more than once", names[i].name);
                }
        }
        if (!rc) {
            qsort(spans, (size_t)g->n_tensors, sizeof *spans, cmp_span);
            for (uint64_t i = 1; i < g->n_tensors && !rc; i++)
                if (spans[i].off < spans[i - 1].end && spans[i].end > spans[i].off) {
                    c.where[0] = '\0';
                    rc = fail(&c, "tensors %s and %s overlap in the data section (bytes %llu..%llu)",
                              g->tensors[spans[i - 1].idx].name, g->tensors[spans[i].idx].name,
                              (unsigned long long)spans[i].off, (unsigned long long)spans[i - 1].end);
                }
        }
        free(spans);
        free(names);
        if (rc) return rc;
    }
    return 0;
}

int byoai_gguf_parse(const void *buf, size_t size, byoai_gguf **out, byoai_error *err) {
    *out = NULL;
    byoai_gguf *g = calloc(1, sizeof *g);
    if (!g) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    g->map.fd = -1;
    g->base = buf;
    g->file_size = size;
    int rc = parse(g, err);
    if (rc) {
        byoai_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int byoai_gguf_open(const char *path, byoai_gguf **out, byoai_error *err) {
    *out = NULL;
    byoai_mmap m;
    int rc = byoai_mmap_open(&m, path, err);
    if (rc) return rc;
    byoai_gguf *g = NULL;
    rc = byoai_gguf_parse(m.data, m.size, &g, err);
    if (rc) {
        byoai_mmap_close(&m);
        return byoai_error_prefix(err, "%s", path);
    }
    g->map = m;
    g->owns_map = true;
    *out = g;
    return 0;
}

void byoai_gguf_close(byoai_gguf *g) {
    if (!g) return;
    free(g->kv);
    free(g->tensors);
    arena_free(g->arena);
    if (g->owns_map) byoai_mmap_close(&g->map);
    free(g);
}

/* ---- lookups ------------------------------------------------------------- */
const byoai_gguf_kv *byoai_gguf_find(const byoai_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const byoai_gguf_tensor *byoai_gguf_find_tensor(const byoai_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static bool is_uint(uint32_t t) {
    return t == BYOAI_GGUF_UINT8 || t == BYOAI_GGUF_UINT16 || t == BYOAI_GGUF_UINT32 || t == BYOAI_GGUF_UINT64;
}
static bool is_sint(uint32_t t) {
    return t == BYOAI_GGUF_INT8 || t == BYOAI_GGUF_INT16 || t == BYOAI_GGUF_INT32 || t == BYOAI_GGUF_INT64;
}

static int wrong_type(const char *key, const byoai_gguf_value *v, const char *want, byoai_error *err) {
    return byoai_error_set(err, BYOAI_EFORMAT, "metadata '%s' is %s, expected %s", key,
                           byoai_gguf_vtype_name(v->type), want);
}

int byoai_gguf_get_i64(const byoai_gguf *g, const char *key, int64_t *out, byoai_error *err) {
    const byoai_gguf_kv *kv = byoai_gguf_find(g, key);
    if (!kv) return BYOAI_ENOTFOUND;
    const byoai_gguf_value *v = &kv->value;
    if (is_sint(v->type)) { *out = v->v.i64; return 0; }
    if (is_uint(v->type)) {
        if (v->v.u64 > (uint64_t)INT64_MAX)
            return byoai_error_set(err, BYOAI_ERANGE, "metadata '%s' = %llu is too large", key,
                                   (unsigned long long)v->v.u64);
        *out = (int64_t)v->v.u64;
        return 0;
    }
    return wrong_type(key, v, "an integer", err);
}

int byoai_gguf_get_u64(const byoai_gguf *g, const char *key, uint64_t *out, byoai_error *err) {
    const byoai_gguf_kv *kv = byoai_gguf_find(g, key);
    if (!kv) return BYOAI_ENOTFOUND;
    const byoai_gguf_value *v = &kv->value;
    if (is_uint(v->type)) { *out = v->v.u64; return 0; }
    if (is_sint(v->type)) {
        if (v->v.i64 < 0)
            return byoai_error_set(err, BYOAI_ERANGE, "metadata '%s' = %lld must not be negative", key,
                                   (long long)v->v.i64);
        *out = (uint64_t)v->v.i64;
        return 0;
    }
    return wrong_type(key, v, "an unsigned integer", err);
}

int byoai_gguf_get_u32(const byoai_gguf *g, const char *key, uint32_t *out, byoai_error *err) {
    uint64_t v;
    int rc = byoai_gguf_get_u64(g, key, &v, err);
    if (rc) return rc;
    if (v > UINT32_MAX)
        return byoai_error_set(err, BYOAI_ERANGE, "metadata '%s' = %llu does not fit 32 bits", key,
                               (unsigned long long)v);
    *out = (uint32_t)v;
    return 0;
}

int byoai_gguf_get_f32(const byoai_gguf *g, const char *key, float *out, byoai_error *err) {
    const byoai_gguf_kv *kv = byoai_gguf_find(g, key);
    if (!kv) return BYOAI_ENOTFOUND;
    const byoai_gguf_value *v = &kv->value;
    if (v->type == BYOAI_GGUF_FLOAT32 || v->type == BYOAI_GGUF_FLOAT64) {
        /* a float64 past float32's range has no float value (NaN and the
         * infinities pass through: callers decide about those) */
        if (isfinite(v->v.f64) && fabs(v->v.f64) > FLT_MAX)
            return byoai_error_set(err, BYOAI_ERANGE, "metadata '%s' = %g is out of the range of a 32-bit float", key,
                                   v->v.f64);
        *out = (float)v->v.f64;
        return 0;
    }
    if (is_uint(v->type)) { *out = (float)v->v.u64; return 0; }
    if (is_sint(v->type)) { *out = (float)v->v.i64; return 0; }
    return wrong_type(key, v, "a number", err);
}

int byoai_gguf_get_bool(const byoai_gguf *g, const char *key, bool *out, byoai_error *err) {
    const byoai_gguf_kv *kv = byoai_gguf_find(g, key);
    if (!kv) return BYOAI_ENOTFOUND;
    if (kv->value.type != BYOAI_GGUF_BOOL) return wrong_type(key, &kv->value, "bool", err);
    *out = kv->value.v.b;
    return 0;
}

int byoai_gguf_get_str(const byoai_gguf *g, const char *key, byoai_gguf_str *out, byoai_error *err) {
    const byoai_gguf_kv *kv = byoai_gguf_find(g, key);
    if (!kv) return BYOAI_ENOTFOUND;
    if (kv->value.type != BYOAI_GGUF_STRING) return wrong_type(key, &kv->value, "string", err);
    *out = kv->value.v.str;
    return 0;
}

int byoai_gguf_get_arr(const byoai_gguf *g, const char *key, int elem_type, const byoai_gguf_value **out,
                       byoai_error *err) {
    const byoai_gguf_kv *kv = byoai_gguf_find(g, key);
    if (!kv) return BYOAI_ENOTFOUND;
    if (kv->value.type != BYOAI_GGUF_ARRAY) return wrong_type(key, &kv->value, "array", err);
    if (elem_type >= 0 && (int)kv->value.v.arr.elem_type != elem_type)
        return byoai_error_set(err, BYOAI_EFORMAT, "metadata '%s' is an array of %s, expected an array of %s", key,
                               byoai_gguf_vtype_name(kv->value.v.arr.elem_type), byoai_gguf_vtype_name(elem_type));
    *out = &kv->value;
    return 0;
}

double byoai_gguf_arr_f64(const byoai_gguf_value *arr, uint64_t i) {
    byoai_gguf_value v = {0};
    size_t es = byoai_gguf_vtype_size(arr->v.arr.elem_type);
    if (!es || i >= arr->v.arr.count) return 0;
    decode_scalar(arr->v.arr.elem_type, arr->v.arr.data + i * es, &v);
    if (is_uint(v.type)) return (double)v.v.u64;
    if (is_sint(v.type)) return (double)v.v.i64;
    if (v.type == BYOAI_GGUF_BOOL) return v.v.b;
    return v.v.f64;
}

int64_t byoai_gguf_arr_i64(const byoai_gguf_value *arr, uint64_t i) {
    byoai_gguf_value v = {0};
    size_t es = byoai_gguf_vtype_size(arr->v.arr.elem_type);
    if (!es || i >= arr->v.arr.count) return 0;
    decode_scalar(arr->v.arr.elem_type, arr->v.arr.data + i * es, &v);
    if (is_uint(v.type)) return v.v.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v.v.u64;
    if (is_sint(v.type)) return v.v.i64;
    if (v.type == BYOAI_GGUF_BOOL) return v.v.b;
    /* a float outside int64's range has no integer value: converting it is
     * undefined behaviour, so it saturates (and NaN is 0) */
    double d = v.v.f64;
    if (isnan(d)) return 0;
    if (d >= 9223372036854775808.0) return INT64_MAX; /* 2^63 */
    if (d <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)d;
}
