/* API keys (src/server/auth.c) over the server database (db.c): keys from
 * the config and from the database, hashing, revocation, the header
 * format. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

static void test_config_keys(void **state) {
    (void)state;
    byoai_server_config c;
    byoai_server_config_defaults(&c);
    byoai_error err;
    srv_auth *a;
    assert_int_equal(srv_auth_new(&c, NULL, &a, &err), 0);
    srv_error e;
    assert_false(srv_auth_enabled(a));
    assert_int_equal(srv_auth_check(a, NULL, &e), 0);
    srv_auth_free(a);
    byoai_server_config_set(&c, "api-key", "sekrit-key-1", &err);
    assert_int_equal(srv_auth_new(&c, NULL, &a, &err), 0);
    assert_true(srv_auth_enabled(a));
    assert_int_equal(srv_auth_check(a, NULL, &e), 401);
    assert_string_equal(e.code, "missing_api_key");
    assert_int_equal(srv_auth_check(a, "Basic abc", &e), 401);
    assert_string_equal(e.code, "invalid_api_key");
    assert_int_equal(srv_auth_check(a, "Bearer sekrit-key-2", &e), 401);
    assert_int_equal(srv_auth_check(a, "Bearer sekrit-key-1", &e), 0);
    assert_int_equal(srv_auth_check(a, "bearer  sekrit-key-1", &e), 0);
    srv_auth_free(a);
}

static void test_db_keys(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char db[600];
    snprintf(db, sizeof db, "%s/sub/server.db", dir);
    byoai_error err;
    char key[80], key2[80];
    byoai_api_key_info info;
    assert_int_equal(byoai_api_key_create(db, "laptop", key, &info, &err), 0);
    assert_int_equal(strlen(key), 46);
    assert_memory_equal(key, "byoai-", 6);
    assert_int_equal(info.id, 1);
    assert_memory_equal(info.prefix, key, 14);
    assert_int_equal(byoai_api_key_create(db, "phone", key2, NULL, &err), 0);
    assert_string_not_equal(key, key2);
    assert_int_equal(byoai_api_key_create(db, "", key2, NULL, &err), BYOAI_EINVAL);
    byoai_api_key_info *list;
    size_t n;
    assert_int_equal(byoai_api_key_list(db, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[1].name, "phone");
    assert_false(list[0].revoked);
    free(list);
    /* the database holds no key in clear */
    char *data;
    size_t len;
    assert_int_equal(byoai_fs_read_all(db, 0, &data, &len, &err), 0);
    assert_null(memmem(data, len, key + 6, 40));
    free(data);

    srv_db *d;
    assert_int_equal(srv_db_open(db, &d, &err), 0);
    byoai_server_config c;
    byoai_server_config_defaults(&c);
    srv_auth *a;
    assert_int_equal(srv_auth_new(&c, d, &a, &err), 0);
    assert_true(srv_auth_enabled(a));
    srv_error e;
    char hdr[100];
    snprintf(hdr, sizeof hdr, "Bearer %s", key);
    assert_int_equal(srv_auth_check(a, hdr, &e), 0);
    assert_int_equal(srv_auth_check(a, "Bearer byoai-0000000000000000000000000000000000000000", &e), 401);
    assert_int_equal(byoai_api_key_revoke(db, "laptop", &err), 0);
    assert_int_equal(srv_auth_check(a, hdr, &e), 401);
    assert_int_equal(byoai_api_key_revoke(db, "laptop", &err), BYOAI_ENOTFOUND);
    assert_int_equal(byoai_api_key_revoke(db, "2", &err), 0);
    assert_int_equal(byoai_api_key_list(db, &list, &n, &err), 0);
    assert_true(list[0].revoked && list[1].revoked);
    free(list);
    srv_auth_free(a);
    srv_db_close(d);
    tu_rmtree(dir);
}

static void test_db_errors(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/junk.db", dir);
    byoai_error err;
    const char *junk = "this is not a database, just text that is long enough to look like a header...";
    byoai_fs_write_atomic(path, junk, strlen(junk), &err);
    srv_db *d;
    assert_int_not_equal(srv_db_open(path, &d, &err), 0);
    assert_non_null(strstr(err.msg, "junk.db"));
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_keys), cmocka_unit_test(test_db_keys), cmocka_unit_test(test_db_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
