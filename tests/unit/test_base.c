/* base/: UTF-8, atomic files, hashing, the thread pool, errors. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_utf8(void **state) {
    (void)state;
    assert_true(byoai_utf8_valid("héllo €𝄞", strlen("héllo €𝄞")));
    assert_false(byoai_utf8_valid("\xc3", 1));             /* truncated */
    assert_false(byoai_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(byoai_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(byoai_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_true(byoai_utf8_valid("\xef\xbf\xbd", 3));      /* a real U+FFFD */
    /* incomplete tails: what a streaming printer must hold back */
    assert_int_equal(byoai_utf8_incomplete_tail("ab\xe2\x82", 4), 2);
    assert_int_equal(byoai_utf8_incomplete_tail("ab\xe2\x82\xac", 5), 0);
    assert_int_equal(byoai_utf8_incomplete_tail("\xf0", 1), 1);
    assert_int_equal(byoai_utf8_incomplete_tail("abc", 3), 0);
    uint32_t cp;
    assert_int_equal(byoai_utf8_decode("\xf0\x9d\x84\x9e", 4, &cp), 4);
    assert_int_equal(cp, 0x1D11E);
    char out[4];
    assert_int_equal(byoai_utf8_encode(0x20AC, out), 3);
    assert_memory_equal(out, "\xe2\x82\xac", 3);
}

static void test_atomic_write(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/sub/dir", dir);
    byoai_error err;
    assert_int_equal(byoai_fs_mkdirs(path, 0755, &err), 0);
    assert_int_equal(byoai_fs_mkdirs(path, 0755, &err), 0); /* idempotent */
    snprintf(path, sizeof path, "%s/sub/dir/f.txt", dir);
    assert_int_equal(byoai_fs_write_atomic(path, "one", 3, &err), 0);
    assert_int_equal(byoai_fs_write_atomic(path, "second", 6, &err), 0);
    char *data;
    size_t len;
    assert_int_equal(byoai_fs_read_all(path, 0, &data, &len, &err), 0);
    assert_int_equal(len, 6);
    assert_string_equal(data, "second");
    free(data);
    /* no temporary file is left behind */
    char d[512];
    snprintf(d, sizeof d, "%s/sub/dir", dir);
    DIR *dh = opendir(d);
    int entries = 0;
    struct dirent *e;
    while ((e = readdir(dh))) if (e->d_name[0] != '.') entries++;
    closedir(dh);
    assert_int_equal(entries, 1);
    /* size cap and missing files give errors, not crashes */
    assert_int_equal(byoai_fs_read_all(path, 3, &data, &len, &err), BYOAI_ERANGE);
    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_equal(byoai_fs_read_all(path, 0, &data, &len, &err), BYOAI_ENOTFOUND);
    assert_non_null(strstr(err.msg, "missing"));
    /* writing into a directory that does not exist fails cleanly */
    snprintf(path, sizeof path, "%s/nope/f", dir);
    assert_int_equal(byoai_fs_write_atomic(path, "x", 1, &err), BYOAI_EIO);
    tu_rmtree(dir);
}

static void test_sha256(void **state) {
    (void)state;
    char hex[65];
    byoai_sha256_buf("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    byoai_sha256_buf("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* the shared model's recorded checksum */
    byoai_error err;
    assert_int_equal(byoai_sha256_file(tu_shared("models/stories260K.gguf"), hex, &err), 0);
    assert_string_equal(hex, "047bf46455a544931cff6fef14d7910154c56afbc23ab1c5e56a72e69912c04b");
}

typedef struct {
    int counts[8];
    int nth_seen;
} pool_arg;

static void pool_fn(void *p, int ith, int nth) {
    pool_arg *a = p;
    a->counts[ith]++;
    __atomic_store_n(&a->nth_seen, nth, __ATOMIC_RELAXED);
}

static void test_pool(void **state) {
    (void)state;
    for (int n = 1; n <= 4; n++) {
        byoai_pool *pool;
        byoai_error err;
        assert_int_equal(byoai_pool_new(n, &pool, &err), 0);
        assert_int_equal(byoai_pool_size(pool), n);
        pool_arg a = {0};
        for (int r = 0; r < 2000; r++) byoai_pool_run(pool, pool_fn, &a);
        for (int i = 0; i < n; i++) assert_int_equal(a.counts[i], 2000);
        assert_int_equal(a.nth_seen, n);
        byoai_pool_free(pool);
    }
    byoai_pool *pool;
    byoai_error err;
    assert_int_equal(byoai_pool_new(100000, &pool, &err), BYOAI_ERANGE);
}

static void test_errors(void **state) {
    (void)state;
    byoai_error err;
    assert_int_equal(byoai_error_set(&err, BYOAI_EFORMAT, "bad %s", "thing"), BYOAI_EFORMAT);
    assert_string_equal(err.msg, "bad thing");
    byoai_error_prefix(&err, "file %d", 3);
    assert_string_equal(err.msg, "file 3: bad thing");
    assert_int_equal(err.code, BYOAI_EFORMAT);
    assert_string_equal(byoai_status_name(BYOAI_ECHECKSUM), "checksum mismatch");
    assert_int_equal(byoai_error_set(NULL, BYOAI_EIO, "x"), BYOAI_EIO);
}

static void test_buf(void **state) {
    (void)state;
    byoai_buf b = {0};
    assert_null(b.data);
    assert_true(byoai_buf_append(&b, "", 0)); /* an empty buffer is still a string */
    assert_string_equal(b.data, "");
    for (int i = 0; i < 1000; i++) assert_true(byoai_buf_append(&b, "abc", 3));
    assert_int_equal(b.len, 3000);
    assert_int_equal(strlen(b.data), 3000);
    assert_memory_equal(b.data + 2997, "abc", 4); /* with its NUL */
    assert_false(byoai_buf_append(&b, "x", SIZE_MAX - 2)); /* would overflow: refused, unchanged */
    assert_int_equal(b.len, 3000);
    byoai_buf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    byoai_buf_free(&b);
    assert_null(b.data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),  cmocka_unit_test(test_atomic_write), cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_pool),  cmocka_unit_test(test_errors), cmocka_unit_test(test_buf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
