/* GGUF reader and writer: round trips, every value type, and a corpus of
 * malformed files that must each give a clean, specific error. */
#include "testutil.h"

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_file),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_type_traits),
        cmocka_unit_test(test_reads_real_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
