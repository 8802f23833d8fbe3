/* GGUF reader and writer: round trips, every value type, and a corpus of
 * malformed files that must each give a clean, specific error. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"

/* A writer with one value of every type, nested arrays and three tensors. */
static byoai_gguf_writer *make_writer(float *f32data, uint16_t *f16data, uint8_t *q8data) {
    byoai_gguf_writer *w;
    byoai_error err;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    assert_int_equal(byoai_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(byoai_gguf_writer_set_u32(w, "test.u32", 4000000000u), 0);
    assert_int_equal(byoai_gguf_writer_set_i32(w, "test.i32", -7), 0);
    assert_int_equal(byoai_gguf_writer_set_u64(w, "test.u64", 1ull << 40), 0);
    assert_int_equal(byoai_gguf_writer_set_f32(w, "test.f32", 0.5f), 0);
    assert_int_equal(byoai_gguf_writer_set_bool(w, "test.bool", true), 0);
    const char *strs[] = {"a", "", "héllo", "<0x0A>"};
    assert_int_equal(byoai_gguf_writer_set_arr_str(w, "test.strs", strs, 4), 0);
    float fa[3] = {1.5f, -2.0f, 3.25f};
    assert_int_equal(byoai_gguf_writer_set_arr(w, "test.f32s", BYOAI_GGUF_FLOAT32, fa, 3), 0);
    int32_t ia[2] = {-1, 2};
    assert_int_equal(byoai_gguf_writer_set_arr(w, "test.i32s", BYOAI_GGUF_INT32, ia, 2), 0);
    uint8_t u8 = 200;
    assert_int_equal(byoai_gguf_writer_set_arr(w, "test.u8s", BYOAI_GGUF_UINT8, &u8, 1), 0);
    int16_t i16[2] = {-300, 300};
    assert_int_equal(byoai_gguf_writer_set_arr(w, "test.i16s", BYOAI_GGUF_INT16, i16, 2), 0);
    double f64 = 1e300;
    assert_int_equal(byoai_gguf_writer_set_arr(w, "test.f64s", BYOAI_GGUF_FLOAT64, &f64, 1), 0);
    int64_t i64 = -5000000000ll;
    assert_int_equal(byoai_gguf_writer_set_arr(w, "test.i64s", BYOAI_GGUF_INT64, &i64, 1), 0);

    /* a nested array value: [[1,2],[3]] of uint16, built by hand */
    uint16_t a1[2] = {1, 2}, a2[1] = {3};
    byoai_gguf_value items[2] = {
        {.type = BYOAI_GGUF_ARRAY, .v.arr = {BYOAI_GGUF_UINT16, 2, (const uint8_t *)a1, NULL}},
        {.type = BYOAI_GGUF_ARRAY, .v.arr = {BYOAI_GGUF_UINT16, 1, (const uint8_t *)a2, NULL}},
    };
    byoai_gguf_value nested = {.type = BYOAI_GGUF_ARRAY, .v.arr = {BYOAI_GGUF_ARRAY, 2, NULL, items}};
    assert_int_equal(byoai_gguf_writer_set_value(w, "test.nested", &nested), 0);

    for (int i = 0; i < 64; i++) f32data[i] = (float)i * 0.25f;
    for (int i = 0; i < 32; i++) f16data[i] = (uint16_t)(0x3c00 + i);
    for (int i = 0; i < 34; i++) q8data[i] = (uint8_t)i;
    uint64_t ne2[2] = {16, 4};
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "a.weight", BYOAI_TYPE_F32, 2, ne2, f32data, NULL, NULL, &err), 0);
    uint64_t ne1[1] = {32};
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "b.weight", BYOAI_TYPE_F16, 1, ne1, f16data, NULL, NULL, &err), 0);
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "c.weight", BYOAI_TYPE_Q8_0, 1, ne1, q8data, NULL, NULL, &err), 0);
    return w;
}

static void check_reader(byoai_gguf *g, const float *f32data, const uint16_t *f16data, const uint8_t *q8data) {
    byoai_error err;
    assert_int_equal(g->version, 3);
    byoai_gguf_str s;
    assert_int_equal(byoai_gguf_get_str(g, "general.architecture", &s, &err), 0);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    uint32_t u32;
    assert_int_equal(byoai_gguf_get_u32(g, "test.u32", &u32, &err), 0);
    assert_int_equal(u32, 4000000000u);
    int64_t i64;
    assert_int_equal(byoai_gguf_get_i64(g, "test.i32", &i64, &err), 0);
    assert_int_equal(i64, -7);
    /* a negative value is refused as unsigned, with a message */
    uint64_t u64;
    assert_int_equal(byoai_gguf_get_u64(g, "test.i32", &u64, &err), BYOAI_ERANGE);
    assert_int_equal(byoai_gguf_get_u64(g, "test.u64", &u64, &err), 0);
    assert_true(u64 == (1ull << 40));
    float f;
    assert_int_equal(byoai_gguf_get_f32(g, "test.f32", &f, &err), 0);
    assert_true(f == 0.5f);
    bool b;
    assert_int_equal(byoai_gguf_get_bool(g, "test.bool", &b, &err), 0);
    assert_true(b);
    /* wrong type: a clear error naming the key and both types */
    assert_int_equal(byoai_gguf_get_str(g, "test.u32", &s, &err), BYOAI_EFORMAT);
    assert_non_null(strstr(err.msg, "test.u32"));
    assert_non_null(strstr(err.msg, "uint32"));
    assert_int_equal(byoai_gguf_get_u32(g, "no.such.key", &u32, &err), BYOAI_ENOTFOUND);

    const byoai_gguf_value *arr;
    assert_int_equal(byoai_gguf_get_arr(g, "test.strs", BYOAI_GGUF_STRING, &arr, &err), 0);
    assert_int_equal(arr->v.arr.count, 4);
    assert_int_equal(arr->v.arr.items[2].v.str.len, strlen("héllo"));
    assert_memory_equal(arr->v.arr.items[2].v.str.ptr, "héllo", strlen("héllo"));
    assert_int_equal(arr->v.arr.items[1].v.str.len, 0);
    assert_int_equal(byoai_gguf_get_arr(g, "test.f32s", BYOAI_GGUF_FLOAT32, &arr, &err), 0);
    assert_true(byoai_gguf_arr_f64(arr, 2) == 3.25);
    assert_int_equal(byoai_gguf_get_arr(g, "test.f32s", BYOAI_GGUF_INT32, &arr, &err), BYOAI_EFORMAT);
    assert_int_equal(byoai_gguf_get_arr(g, "test.i32s", BYOAI_GGUF_INT32, &arr, &err), 0);
    assert_int_equal(byoai_gguf_arr_i64(arr, 0), -1);
    assert_int_equal(byoai_gguf_get_arr(g, "test.u8s", -1, &arr, &err), 0);
    assert_int_equal(byoai_gguf_arr_i64(arr, 0), 200);
    assert_int_equal(byoai_gguf_get_arr(g, "test.i16s", -1, &arr, &err), 0);
    assert_int_equal(byoai_gguf_arr_i64(arr, 0), -300);
    assert_int_equal(byoai_gguf_get_arr(g, "test.f64s", -1, &arr, &err), 0);
    assert_true(byoai_gguf_arr_f64(arr, 0) == 1e300);
    assert_int_equal(byoai_gguf_get_arr(g, "test.i64s", -1, &arr, &err), 0);
    assert_true(byoai_gguf_arr_i64(arr, 0) == -5000000000ll);
    assert_int_equal(byoai_gguf_get_arr(g, "test.nested", BYOAI_GGUF_ARRAY, &arr, &err), 0);
    assert_int_equal(arr->v.arr.count, 2);
    assert_int_equal(arr->v.arr.items[0].v.arr.count, 2);
    assert_int_equal(byoai_gguf_arr_i64(&arr->v.arr.items[0], 1), 2);
    assert_int_equal(byoai_gguf_arr_i64(&arr->v.arr.items[1], 0), 3);

    assert_int_equal(g->n_tensors, 3);
    const byoai_gguf_tensor *t = byoai_gguf_find_tensor(g, "a.weight");
    assert_non_null(t);
    assert_int_equal(t->type, BYOAI_TYPE_F32);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 16);
    assert_int_equal(t->ne[1], 4);
    assert_int_equal(t->size, 256);
    assert_memory_equal(t->data, f32data, 256);
    assert_int_equal((uintptr_t)((const uint8_t *)t->data - g->base) % g->alignment, 0);
    t = byoai_gguf_find_tensor(g, "b.weight");
    assert_non_null(t);
    assert_memory_equal(t->data, f16data, 64);
    t = byoai_gguf_find_tensor(g, "c.weight");
    assert_non_null(t);
    assert_int_equal(t->size, 34);
    assert_memory_equal(t->data, q8data, 34);
    assert_null(byoai_gguf_find_tensor(g, "missing"));
}

static void test_roundtrip_file(void **state) {
    (void)state;
    float f32data[64];
    uint16_t f16data[32];
    uint8_t q8data[34];
    byoai_gguf_writer *w = make_writer(f32data, f16data, q8data);
    const char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/rt.gguf", dir);
    byoai_error err;
    assert_int_equal(byoai_gguf_writer_write(w, path, NULL, NULL, &err), 0);
    byoai_gguf *g;
    int rc = byoai_gguf_open(path, &g, &err);
    if (rc) fail_msg("%s", err.msg);
    check_reader(g, f32data, f16data, q8data);

    /* rewrite everything read (values and tensors) and compare bytes */
    byoai_gguf_writer *w2;
    assert_int_equal(byoai_gguf_writer_new(&w2, &err), 0);
    for (uint64_t i = 0; i < g->n_kv; i++)
        assert_int_equal(byoai_gguf_writer_set_value(w2, g->kv[i].key, &g->kv[i].value), 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const byoai_gguf_tensor *t = &g->tensors[i];
        assert_int_equal(byoai_gguf_writer_add_tensor(w2, t->name, t->type, t->n_dims, t->ne, t->data, NULL, NULL, &err), 0);
    }
    uint8_t *b1, *b2;
    size_t n1, n2;
    assert_int_equal(byoai_gguf_writer_to_buffer(w, &b1, &n1, &err), 0);
    assert_int_equal(byoai_gguf_writer_to_buffer(w2, &b2, &n2, &err), 0);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    /* and the file on disk is that same image */
    char *disk;
    size_t dn;
    assert_int_equal(byoai_fs_read_all(path, 0, &disk, &dn, &err), 0);
    assert_int_equal(dn, n1);
    assert_memory_equal(disk, b1, n1);
    free(disk);
    free(b1);
    free(b2);
    byoai_gguf_writer_free(w2);
    byoai_gguf_close(g);
    byoai_gguf_writer_free(w);
    tu_rmtree(dir);
}

static void test_alignment(void **state) {
    (void)state;
    byoai_gguf_writer *w;
    byoai_error err;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    assert_int_equal(byoai_gguf_writer_set_alignment(w, 64, &err), 0);
    assert_int_equal(byoai_gguf_writer_set_alignment(w, 48, &err), BYOAI_EINVAL);
    float d[8] = {0};
    uint64_t ne[1] = {8};
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "x", BYOAI_TYPE_F32, 1, ne, d, NULL, NULL, &err), 0);
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "y", BYOAI_TYPE_F32, 1, ne, d, NULL, NULL, &err), 0);
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "y", BYOAI_TYPE_F32, 1, ne, d, NULL, NULL, &err), BYOAI_EEXIST);
    uint64_t bad[1] = {33};
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "z", BYOAI_TYPE_Q4_0, 1, bad, d, NULL, NULL, &err), BYOAI_EINVAL);
    uint8_t *buf;
    size_t n;
    assert_int_equal(byoai_gguf_writer_to_buffer(w, &buf, &n, &err), 0);
    byoai_gguf *g;
    assert_int_equal(byoai_gguf_parse(buf, n, &g, &err), 0);
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->data_offset % 64, 0);
    assert_int_equal(g->tensors[1].offset, 64);
    byoai_gguf_close(g);
    free(buf);
    byoai_gguf_writer_free(w);
}

static void test_type_traits(void **state) {
    (void)state;
    assert_string_equal(byoai_type_name(BYOAI_TYPE_Q4_K), "Q4_K");
    assert_int_equal(byoai_type_from_name("q8_0"), BYOAI_TYPE_Q8_0);
    assert_int_equal(byoai_type_from_name("nope"), -1);
    assert_int_equal(byoai_type_row_size(BYOAI_TYPE_Q4_0, 64), 36);
    assert_int_equal(byoai_type_row_size(BYOAI_TYPE_Q4_0, 33), 0);
    assert_int_equal(byoai_type_row_size(BYOAI_TYPE_Q6_K, 512), 420);
    assert_null(byoai_type_get(4));
    assert_null(byoai_type_get(1000));
}

/* The shared vocab files are real GGUFs written by llama.cpp's tools. */
static void test_reads_real_files(void **state) {
    (void)state;
    const char *files[] = {"models/stories260K.gguf", "vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                           "vocab/ggml-vocab-bert-bge.gguf"};
    for (size_t i = 0; i < 4; i++) {
        byoai_gguf *g;
        byoai_error err;
        int rc = byoai_gguf_open(tu_shared(files[i]), &g, &err);
        if (rc) fail_msg("%s: %s", files[i], err.msg);
        assert_non_null(byoai_gguf_find(g, "tokenizer.ggml.model"));
        byoai_gguf_close(g);
    }
    byoai_gguf *g;
    byoai_error err;
    assert_int_equal(byoai_gguf_open(tu_shared("models/stories260K.gguf"), &g, &err), 0);
    const byoai_gguf_tensor *t = byoai_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    byoai_gguf_close(g);
    assert_int_equal(byoai_gguf_open("/nonexistent/x.gguf", &g, &err), BYOAI_ENOTFOUND);
}


/* ---- the malformed corpus --------------------------------------------- */

/* A hand-built GGUF image whose every field a case can override. */
typedef struct {
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    uint64_t key_len;           /* length written for the first key */
    uint32_t vtype;             /* type of the first value (a string) */
    uint32_t align_type;        /* general.alignment's value type */
    uint32_t align;
    uint32_t n_dims;
    uint64_t ne0, ne1;
    uint32_t ttype;
    uint64_t offset, offset2;   /* data offsets of the two tensors */
    const char *name2;          /* second tensor's name */
    bool dup_key;               /* repeat the first key */
    int bool_val;               /* value of an extra bool entry (-1: none) */
    int nest;                   /* depth of an extra nested array (0: none) */
    bool unterminated;          /* the last string runs past the end */
} spec;

typedef struct {
    uint8_t b[8192];
    size_t n;
} image;

static void p32(image *im, uint32_t v) { memcpy(im->b + im->n, &v, 4); im->n += 4; }
static void p64(image *im, uint64_t v) { memcpy(im->b + im->n, &v, 8); im->n += 8; }
static void pstr(image *im, const char *s) { p64(im, strlen(s)); memcpy(im->b + im->n, s, strlen(s)); im->n += strlen(s); }

static spec good_spec(void) {
    return (spec){.magic = BYOAI_GGUF_MAGIC, .version = 3, .n_tensors = 2, .key_len = 20, .vtype = BYOAI_GGUF_STRING,
                  .align_type = BYOAI_GGUF_UINT32, .align = 32, .n_dims = 2, .ne0 = 8, .ne1 = 2,
                  .ttype = BYOAI_TYPE_F32, .offset = 0, .offset2 = 64, .name2 = "b", .bool_val = -1};
}

static void build(const spec *s, image *im) {
    im->n = 0;
    p32(im, s->magic);
    p32(im, s->version);
    p64(im, s->n_tensors);
    uint64_t n_kv = 2 + (s->dup_key ? 1 : 0) + (s->bool_val >= 0 ? 1 : 0) + (s->nest ? 1 : 0);
    p64(im, s->n_kv ? s->n_kv : n_kv);
    for (int rep = 0; rep < (s->dup_key ? 2 : 1); rep++) {
        p64(im, s->key_len);
        memcpy(im->b + im->n, "general.architecture", 20);
        im->n += 20;
        p32(im, s->vtype);
        pstr(im, "llama");
    }
    pstr(im, "general.alignment");
    p32(im, s->align_type);
    p32(im, s->align);
    if (s->bool_val >= 0) {
        pstr(im, "x.flag");
        p32(im, BYOAI_GGUF_BOOL);
        im->b[im->n++] = (uint8_t)s->bool_val;
    }
    if (s->nest) {
        pstr(im, "x.nested");
        p32(im, BYOAI_GGUF_ARRAY);
        for (int d = 0; d < s->nest; d++) { p32(im, BYOAI_GGUF_ARRAY); p64(im, 1); }
        p32(im, BYOAI_GGUF_UINT8); /* innermost: an empty array of u8 */
        p64(im, 0);
    }
    pstr(im, "a");
    p32(im, s->n_dims);
    for (uint32_t d = 0; d < s->n_dims && d < 8; d++) p64(im, d == 0 ? s->ne0 : d == 1 ? s->ne1 : 1);
    p32(im, s->ttype);
    p64(im, s->offset);
    pstr(im, s->name2);
    p32(im, 1);
    p64(im, 16);
    p32(im, BYOAI_TYPE_F32);
    p64(im, s->offset2);
    while (im->n % 32) im->b[im->n++] = 0;
    for (int i = 0; i < 128; i++) im->b[im->n++] = (uint8_t)i; /* tensor data: 64 + 64 bytes */
    if (s->unterminated) { /* a final string whose length runs past the end */
        im->n -= 128;
        p64(im, 1000);
        memcpy(im->b + im->n, "abc", 3);
        im->n += 3;
    }
}

static void expect_error(const spec *s, const char *needle) {
    image im;
    build(s, &im);
    byoai_gguf *g = NULL;
    byoai_error err = {0};
    int rc = byoai_gguf_parse(im.b, im.n, &g, &err);
    if (rc == 0) fail_msg("expected an error containing '%s', got success", needle);
    assert_int_equal(rc, BYOAI_EFORMAT);
    if (!strstr(err.msg, needle)) fail_msg("expected '%s' in: %s", needle, err.msg);
    assert_null(g);
}

static void test_malformed_corpus(void **state) {
    (void)state;
    spec s = good_spec();
    image im;
    build(&s, &im);
    byoai_gguf *g;
    byoai_error err;
    if (byoai_gguf_parse(im.b, im.n, &g, &err)) fail_msg("the base image must be valid: %s", err.msg);
    assert_int_equal(g->n_tensors, 2);
    byoai_gguf_close(g);

    /* truncated at every byte: each prefix is refused cleanly */
    for (size_t len = 0; len < im.n; len++) {
        int rc = byoai_gguf_parse(im.b, len, &g, &err);
        if (rc != BYOAI_EFORMAT) fail_msg("prefix of %zu bytes: rc %d", len, rc);
        assert_true(err.msg[0] != '\0');
    }

#define CASE(field, value, needle) do { spec t = good_spec(); t.field = value; expect_error(&t, needle); } while (0)
    CASE(magic, 0x12345678u, "not a GGUF file");
    CASE(magic, 0x47475546u, "big-endian");
    CASE(version, 1, "version 1");
    CASE(version, 99, "version 99");
    CASE(n_tensors, 1ull << 60, "tensors, more than");
    CASE(n_kv, 1ull << 60, "metadata entries");
    CASE(key_len, 1ull << 62, "bytes long but only");
    CASE(vtype, 77, "value type 77");
    CASE(align_type, BYOAI_GGUF_UINT64, "must be uint32");
    CASE(align, 48, "power of two");
    CASE(align, 0, "power of two");
    CASE(n_dims, 5, "5 dimensions");
    CASE(n_dims, 0, "0 dimensions");
    CASE(ne1, 1ull << 62, "overflows");
    CASE(ne0, 1ull << 63, "larger than 2^63-1");
    {   /* 2^62 elements fit, but 2^62 F32 values do not fit 64 bits of bytes */
        spec t = good_spec();
        t.ne0 = 1ull << 62;
        t.ne1 = 1;
        expect_error(&t, "data size overflows 64 bits (a row of 4611686018427387904 F32 values)");
    }
    CASE(ttype, 4, "unknown tensor type 4");
    CASE(ttype, 1000, "unknown tensor type 1000");
    CASE(ttype, BYOAI_TYPE_Q4_0, "block size 32");
    CASE(offset, 1ull << 40, "past the end of the file");
    CASE(offset, 16, "not a multiple of the alignment");
    CASE(offset2, 32, "overlap");
    CASE(offset2, 96, "past the end of the file");
    CASE(offset2, UINT64_MAX - 31, "past the end of the file");
    CASE(name2, "a", "appears more than once");
    CASE(dup_key, true, "appears more than once");
    CASE(bool_val, 2, "must be 0 or 1");
    CASE(nest, 12, "nested deeper");
    CASE(unterminated, true, "past");
#undef CASE
    /* a data section claimed to start past the end */
    spec t = good_spec();
    build(&t, &im);
    assert_int_equal(byoai_gguf_parse(im.b, 60, &g, &err), BYOAI_EFORMAT);
    /* a nested array within the limit is fine */
    t.nest = 4;
    build(&t, &im);
    if (byoai_gguf_parse(im.b, im.n, &g, &err)) fail_msg("%s", err.msg);
    byoai_gguf_close(g);
    /* and a bool of 1 */
    t = good_spec();
    t.bool_val = 1;
    build(&t, &im);
    if (byoai_gguf_parse(im.b, im.n, &g, &err)) fail_msg("%s", err.msg);
    bool b;
    assert_int_equal(byoai_gguf_get_bool(g, "x.flag", &b, &err), 0);
    assert_true(b);
    byoai_gguf_close(g);
}

/* Numbers from a file are converted only where the target type can hold
 * them: a float array element of 5.8e199 read as an integer saturates (it
 * was undefined behaviour), a float64 too large for float32 is refused. */
static void test_conversions(void **state) {
    (void)state;
    byoai_gguf_writer *w;
    byoai_error err = {0};
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    double f64s[] = {5.8e199, -5.8e199, 2.9, -2.9, 9223372036854775808.0, -9223372036854775808.0, 1e18, NAN, INFINITY};
    assert_int_equal(byoai_gguf_writer_set_arr(w, "x.f64s", BYOAI_GGUF_FLOAT64, f64s, 9), 0);
    float f32s[] = {3e38f, -3e38f, -INFINITY};
    assert_int_equal(byoai_gguf_writer_set_arr(w, "x.f32s", BYOAI_GGUF_FLOAT32, f32s, 3), 0);
    uint64_t u64s[] = {UINT64_MAX, (uint64_t)INT64_MAX};
    assert_int_equal(byoai_gguf_writer_set_arr(w, "x.u64s", BYOAI_GGUF_UINT64, u64s, 2), 0);
    byoai_gguf_value big = {.type = BYOAI_GGUF_FLOAT64, .v.f64 = 1e300};
    assert_int_equal(byoai_gguf_writer_set_value(w, "x.big", &big), 0);
    byoai_gguf_value inf = {.type = BYOAI_GGUF_FLOAT64, .v.f64 = -INFINITY};
    assert_int_equal(byoai_gguf_writer_set_value(w, "x.inf", &inf), 0);
    byoai_gguf_value fine = {.type = BYOAI_GGUF_FLOAT64, .v.f64 = 1e30};
    assert_int_equal(byoai_gguf_writer_set_value(w, "x.fine", &fine), 0);
    uint8_t *buf;
    size_t n;
    assert_int_equal(byoai_gguf_writer_to_buffer(w, &buf, &n, &err), 0);
    byoai_gguf_writer_free(w);
    byoai_gguf *g;
    assert_int_equal(byoai_gguf_parse(buf, n, &g, &err), 0);

    const byoai_gguf_value *a;
    assert_int_equal(byoai_gguf_get_arr(g, "x.f64s", BYOAI_GGUF_FLOAT64, &a, &err), 0);
    assert_true(byoai_gguf_arr_i64(a, 0) == INT64_MAX);
    assert_true(byoai_gguf_arr_i64(a, 1) == INT64_MIN);
    assert_true(byoai_gguf_arr_i64(a, 2) == 2);
    assert_true(byoai_gguf_arr_i64(a, 3) == -2);
    assert_true(byoai_gguf_arr_i64(a, 4) == INT64_MAX);
    assert_true(byoai_gguf_arr_i64(a, 5) == INT64_MIN);
    assert_true(byoai_gguf_arr_i64(a, 6) == 1000000000000000000ll);
    assert_true(byoai_gguf_arr_i64(a, 7) == 0);
    assert_true(byoai_gguf_arr_i64(a, 8) == INT64_MAX);
    assert_true(byoai_gguf_arr_i64(a, 9) == 0); /* past the end */
    assert_int_equal(byoai_gguf_get_arr(g, "x.f32s", BYOAI_GGUF_FLOAT32, &a, &err), 0);
    assert_true(byoai_gguf_arr_i64(a, 0) == INT64_MAX);
    assert_true(byoai_gguf_arr_i64(a, 1) == INT64_MIN);
    assert_true(byoai_gguf_arr_i64(a, 2) == INT64_MIN);
    assert_int_equal(byoai_gguf_get_arr(g, "x.u64s", BYOAI_GGUF_UINT64, &a, &err), 0);
    assert_true(byoai_gguf_arr_i64(a, 0) == INT64_MAX);
    assert_true(byoai_gguf_arr_i64(a, 1) == INT64_MAX);

    float f;
    assert_int_equal(byoai_gguf_get_f32(g, "x.big", &f, &err), BYOAI_ERANGE);
    assert_non_null(strstr(err.msg, "x.big"));
    assert_non_null(strstr(err.msg, "32-bit float"));
    assert_int_equal(byoai_gguf_get_f32(g, "x.inf", &f, &err), 0);
    assert_true(isinf(f) && f < 0);
    assert_int_equal(byoai_gguf_get_f32(g, "x.fine", &f, &err), 0);
    assert_true(f == 1e30f);
    /* integers never come from floats */
    int64_t i64;
    assert_int_equal(byoai_gguf_get_i64(g, "x.big", &i64, &err), BYOAI_EFORMAT);
    uint32_t u32;
    assert_int_equal(byoai_gguf_get_u32(g, "x.fine", &u32, &err), BYOAI_EFORMAT);
    byoai_gguf_close(g);
    free(buf);
}

/* The tensor error names the tensor and both numbers, as users see it. */
static void test_error_message_shape(void **state) {
    (void)state;
    spec s = good_spec();
    s.offset2 = 1ull << 20;
    image im;
    build(&s, &im);
    byoai_gguf *g;
    byoai_error err;
    assert_int_equal(byoai_gguf_parse(im.b, im.n, &g, &err), BYOAI_EFORMAT);
    char want[160];
    snprintf(want, sizeof want, "tensor b: data ends at byte %llu, past the end of the file (%zu)",
             (unsigned long long)(im.n - 128 + (1ull << 20) + 64), im.n);
    assert_string_equal(err.msg, want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_file),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_type_traits),
        cmocka_unit_test(test_reads_real_files),
        cmocka_unit_test(test_malformed_corpus),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_error_message_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
