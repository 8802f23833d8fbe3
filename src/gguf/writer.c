/*
 * GGUF writer (version 3). Metadata values are serialized when set; tensor
 * data is streamed at write time from borrowed buffers or fill callbacks, so
 * a quantizer never needs the whole output in memory.
 */
#include "byoai/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGML_MAX_NAME 64 /* llama.cpp refuses longer tensor names */

typedef struct {
    char *key;
    uint8_t *val; /* u32 type + payload, as in the file */
    size_t val_len;
} wkv;

typedef struct {
    char *name;
    byoai_type type;
    uint32_t n_dims;
    uint64_t ne[BYOAI_GGUF_MAX_DIMS];
    uint64_t size;
    uint64_t offset;
    const void *data;
    byoai_gguf_fill_fn fill;
    void *user;
} wtensor;

struct byoai_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
};

/* growable byte buffer */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s, uint64_t n) { put_u64(b, n); put(b, s, (size_t)n); }

int byoai_gguf_writer_new(byoai_gguf_writer **out, byoai_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    (*out)->alignment = BYOAI_GGUF_DEFAULT_ALIGNMENT;
    return 0;
}

void byoai_gguf_writer_free(byoai_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) { free(w->kv[i].key); free(w->kv[i].val); }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

static int set_raw(byoai_gguf_writer *w, const char *key, bytes *val) {
    if (val->oom || !key || !*key) { free(val->p); return BYOAI_ENOMEM; }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].val);
            w->kv[i].val = val->p;
            w->kv[i].val_len = val->len;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) { free(val->p); return BYOAI_ENOMEM; }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) { free(val->p); return BYOAI_ENOMEM; }
    w->kv[w->n_kv++] = (wkv){k, val->p, val->len};
    return 0;
}

int byoai_gguf_writer_remove(byoai_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].key);
            free(w->kv[i].val);
            memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *w->kv);
            w->n_kv--;
            return 0;
        }
    }
    return BYOAI_ENOTFOUND;
}

static int set_scalar(byoai_gguf_writer *w, const char *key, uint32_t type, const void *v, size_t n) {
    bytes b = {0};
    put_u32(&b, type);
    put(&b, v, n);
    return set_raw(w, key, &b);
}

int byoai_gguf_writer_set_u32(byoai_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, BYOAI_GGUF_UINT32, &v, 4);
}
int byoai_gguf_writer_set_i32(byoai_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, BYOAI_GGUF_INT32, &v, 4);
}
int byoai_gguf_writer_set_u64(byoai_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, BYOAI_GGUF_UINT64, &v, 8);
}
int byoai_gguf_writer_set_f32(byoai_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, BYOAI_GGUF_FLOAT32, &v, 4);
}
int byoai_gguf_writer_set_bool(byoai_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, BYOAI_GGUF_BOOL, &b, 1);
}
int byoai_gguf_writer_set_strn(byoai_gguf_writer *w, const char *key, const char *v, uint64_t len) {
    bytes b = {0};
    put_u32(&b, BYOAI_GGUF_STRING);
    put_str(&b, v, len);
    return set_raw(w, key, &b);
}
int byoai_gguf_writer_set_str(byoai_gguf_writer *w, const char *key, const char *v) {
    return byoai_gguf_writer_set_strn(w, key, v, strlen(v));
}

int byoai_gguf_writer_set_arr(byoai_gguf_writer *w, const char *key, byoai_gguf_vtype elem, const void *data,
                              uint64_t n) {
    size_t es = byoai_gguf_vtype_size(elem);
    if (!es) return BYOAI_EINVAL;
    bytes b = {0};
    put_u32(&b, BYOAI_GGUF_ARRAY);
    put_u32(&b, elem);
    put_u64(&b, n);
    put(&b, data, (size_t)(n * es));
    return set_raw(w, key, &b);
}

int byoai_gguf_writer_set_arr_str(byoai_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    bytes b = {0};
    put_u32(&b, BYOAI_GGUF_ARRAY);
    put_u32(&b, BYOAI_GGUF_STRING);
    put_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) put_str(&b, strs[i], strlen(strs[i]));
    return set_raw(w, key, &b);
}

/* serialize a value's payload (without its leading type) */
static void put_value_payload(bytes *b, const byoai_gguf_value *v) {
    switch (v->type) {
    case BYOAI_GGUF_STRING: put_str(b, v->v.str.ptr, v->v.str.len); break;
    case BYOAI_GGUF_ARRAY: {
        put_u32(b, v->v.arr.elem_type);
        put_u64(b, v->v.arr.count);
        size_t es = byoai_gguf_vtype_size(v->v.arr.elem_type);
        if (es) {
            put(b, v->v.arr.data, (size_t)(v->v.arr.count * es));
        } else {
            for (uint64_t i = 0; i < v->v.arr.count; i++) put_value_payload(b, &v->v.arr.items[i]);
        }
        break;
    }
    case BYOAI_GGUF_UINT8: { uint8_t x = (uint8_t)v->v.u64; put(b, &x, 1); break; }
    case BYOAI_GGUF_INT8: { int8_t x = (int8_t)v->v.i64; put(b, &x, 1); break; }
    case BYOAI_GGUF_UINT16: { uint16_t x = (uint16_t)v->v.u64; put(b, &x, 2); break; }
    case BYOAI_GGUF_INT16: { int16_t x = (int16_t)v->v.i64; put(b, &x, 2); break; }
    case BYOAI_GGUF_UINT32: { uint32_t x = (uint32_t)v->v.u64; put(b, &x, 4); break; }
    case BYOAI_GGUF_INT32: { int32_t x = (int32_t)v->v.i64; put(b, &x, 4); break; }
    case BYOAI_GGUF_FLOAT32: { float x = (float)v->v.f64; put(b, &x, 4); break; }
    case BYOAI_GGUF_BOOL: { uint8_t x = v->v.b; put(b, &x, 1); break; }
    case BYOAI_GGUF_UINT64: put_u64(b, v->v.u64); break;
    case BYOAI_GGUF_INT64: { int64_t x = v->v.i64; put(b, &x, 8); break; }
    case BYOAI_GGUF_FLOAT64: put(b, &v->v.f64, 8); break;
    default: break;
    }
}

int byoai_gguf_writer_set_value(byoai_gguf_writer *w, const char *key, const byoai_gguf_value *v) {
    bytes b = {0};
    put_u32(&b, v->type);
    put_value_payload(&b, v);
    return set_raw(w, key, &b);
}

int byoai_gguf_writer_set_alignment(byoai_gguf_writer *w, uint32_t alignment, byoai_error *err) {
    if (alignment == 0 || (alignment & (alignment - 1)) || alignment > (1u << 20))
        return byoai_error_set(err, BYOAI_EINVAL, "alignment %u is not a power of two up to 1 MiB", alignment);
    w->alignment = alignment;
    if (alignment != BYOAI_GGUF_DEFAULT_ALIGNMENT) return byoai_gguf_writer_set_u32(w, "general.alignment", alignment);
    byoai_gguf_writer_remove(w, "general.alignment");
    return 0;
}

int byoai_gguf_writer_add_tensor(byoai_gguf_writer *w, const char *name, byoai_type type, uint32_t n_dims,
                                 const uint64_t *ne, const void *data, byoai_gguf_fill_fn fill, void *user,
                                 byoai_error *err) {
    size_t nl = strlen(name);
    if (nl == 0 || nl >= GGML_MAX_NAME)
        return byoai_error_set(err, BYOAI_EINVAL, "tensor name '%s' must be 1..%d bytes", name, GGML_MAX_NAME - 1);
    const byoai_type_traits *tr = byoai_type_get(type);
    if (!tr) return byoai_error_set(err, BYOAI_EINVAL, "tensor %s: unknown type %d", name, (int)type);
    if (n_dims == 0 || n_dims > BYOAI_GGUF_MAX_DIMS)
        return byoai_error_set(err, BYOAI_EINVAL, "tensor %s: %u dimensions (must be 1..4)", name, n_dims);
    if (!data && !fill) return byoai_error_set(err, BYOAI_EINVAL, "tensor %s: no data and no fill callback", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return byoai_error_set(err, BYOAI_EEXIST, "tensor %s added twice", name);
    wtensor t = {.type = type, .n_dims = n_dims, .data = data, .fill = fill, .user = user};
    uint64_t rows = 1;
    for (uint32_t d = 0; d < BYOAI_GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    for (uint32_t d = 1; d < n_dims; d++)
        if (byoai_mul_overflow(rows, t.ne[d], &rows))
            return byoai_error_set(err, BYOAI_ERANGE, "tensor %s: size overflows", name);
    uint64_t row = byoai_type_row_size(type, t.ne[0]);
    if (row == 0 && t.ne[0] != 0)
        return byoai_error_set(err, BYOAI_EINVAL, "tensor %s: first dimension %llu is not a multiple of the %s block size %u",
                               name, (unsigned long long)t.ne[0], tr->name, tr->block_size);
    if (byoai_mul_overflow(row, rows, &t.size))
        return byoai_error_set(err, BYOAI_ERANGE, "tensor %s: size overflows", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    w->t[w->n_t++] = t;
    return 0;
}

/* header + metadata + tensor infos + padding, with offsets assigned */
static int build_header(byoai_gguf_writer *w, bytes *b, uint64_t *data_size, byoai_error *err) {
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off += w->t[i].size;
        off = (off + w->alignment - 1) / w->alignment * w->alignment;
    }
    *data_size = off;
    put_u32(b, BYOAI_GGUF_MAGIC);
    put_u32(b, 3);
    put_u64(b, w->n_t);
    put_u64(b, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(b, w->kv[i].key, strlen(w->kv[i].key));
        put(b, w->kv[i].val, w->kv[i].val_len);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        put_str(b, t->name, strlen(t->name));
        put_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(b, t->ne[d]);
        put_u32(b, t->type);
        put_u64(b, t->offset);
    }
    static const uint8_t zeros[64] = {0};
    while (b->len % w->alignment) put(b, zeros, 1);
    if (b->oom) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory building the GGUF header");
    return 0;
}

/* the bytes of tensor i into dst */
static int tensor_bytes(wtensor *t, void *dst, byoai_error *err) {
    if (t->data) {
        memcpy(dst, t->data, (size_t)t->size);
        return 0;
    }
    return t->fill(t->user, t->name, dst, t->size, err);
}

int byoai_gguf_writer_to_buffer(byoai_gguf_writer *w, uint8_t **buf, size_t *size, byoai_error *err) {
    bytes b = {0};
    uint64_t data_size;
    int rc = build_header(w, &b, &data_size, err);
    if (rc) { free(b.p); return rc; }
    size_t hdr = b.len;
    uint8_t *out = calloc(1, hdr + (size_t)data_size + 1);
    if (!out) { free(b.p); return byoai_error_set(err, BYOAI_ENOMEM, "out of memory"); }
    memcpy(out, b.p, hdr);
    free(b.p);
    for (size_t i = 0; i < w->n_t; i++) {
        if (w->t[i].size == 0) continue;
        rc = tensor_bytes(&w->t[i], out + hdr + w->t[i].offset, err);
        if (rc) { free(out); return rc; }
    }
    *buf = out;
    *size = hdr + (size_t)data_size;
    return 0;
}

static int write_full(int fd, const void *p, size_t n, const char *path, byoai_error *err) {
    const uint8_t *c = p;
    while (n) {
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return byoai_error_set(err, errno == ENOSPC ? BYOAI_ENOSPC : BYOAI_EIO, "cannot write %s: %s", path,
                                   strerror(errno));
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

int byoai_gguf_writer_write(byoai_gguf_writer *w, const char *path,
                            void (*progress)(void *user, uint64_t done, uint64_t total), void *user,
                            byoai_error *err) {
    bytes b = {0};
    uint64_t data_size;
    int rc = build_header(w, &b, &data_size, err);
    if (rc) { free(b.p); return rc; }
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof tmp) {
        free(b.p);
        return byoai_error_set(err, BYOAI_EINVAL, "path too long: %s", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(b.p);
        return byoai_error_set(err, BYOAI_EIO, "cannot create %s: %s", tmp, strerror(errno));
    }
    rc = write_full(fd, b.p, b.len, path, err);
    free(b.p);
    uint64_t max = 0;
    for (size_t i = 0; i < w->n_t; i++) if (w->t[i].size > max) max = w->t[i].size;
    uint8_t *scratch = NULL;
    if (!rc && max > 0) {
        scratch = calloc(1, (size_t)max + w->alignment);
        if (!scratch) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory for a %llu-byte tensor",
                                           (unsigned long long)max);
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < w->n_t && !rc; i++) {
        wtensor *t = &w->t[i];
        static const uint8_t zeros[64] = {0};
        while (pos < t->offset && !rc) {
            size_t n = (size_t)(t->offset - pos) < sizeof zeros ? (size_t)(t->offset - pos) : sizeof zeros;
            rc = write_full(fd, zeros, n, path, err);
            pos += n;
        }
        if (rc) break;
        if (t->size) {
            if (t->data) rc = write_full(fd, t->data, (size_t)t->size, path, err);
            else {
                rc = tensor_bytes(t, scratch, err);
                if (!rc) rc = write_full(fd, scratch, (size_t)t->size, path, err);
            }
        }
        pos += t->size;
        if (progress && !rc) progress(user, i + 1, w->n_t);
    }
    while (!rc && pos < data_size) {
        static const uint8_t zeros[64] = {0};
        size_t n = (size_t)(data_size - pos) < sizeof zeros ? (size_t)(data_size - pos) : sizeof zeros;
        rc = write_full(fd, zeros, n, path, err);
        pos += n;
    }
    free(scratch);
    if (!rc && fsync(fd) != 0) rc = byoai_error_set(err, BYOAI_EIO, "cannot sync %s: %s", tmp, strerror(errno));
    close(fd);
    if (!rc && rename(tmp, path) != 0)
        rc = byoai_error_set(err, BYOAI_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc) {
        unlink(tmp);
        return rc;
    }
    byoai_fs_sync_parent(path);
    return 0;
}
