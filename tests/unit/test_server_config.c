/* Server configuration (src/server/config.c): keys, values, ranges, the
 * file format and the environment. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/server.h"

static void test_defaults_and_set(void **state) {
    (void)state;
    byoai_server_config c;
    byoai_server_config_defaults(&c);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_int_equal(c.max_body, 1 << 20);
    assert_true(c.web);
    byoai_error err;
    assert_int_equal(byoai_server_config_set(&c, "port", "0", &err), 0);
    assert_int_equal(c.port, 0);
    assert_int_equal(byoai_server_config_set(&c, "max-body", "2M", &err), 0);
    assert_int_equal(c.max_body, 2 << 20);
    assert_int_equal(byoai_server_config_set(&c, "max-body", "64k", &err), 0);
    assert_int_equal(c.max_body, 65536);
    assert_int_equal(byoai_server_config_set(&c, "web", "off", &err), 0);
    assert_false(c.web);
    assert_int_equal(byoai_server_config_set(&c, "host", "::1", &err), 0);
    assert_int_equal(byoai_server_config_set(&c, "api-key", "secret-123", &err), 0);
    assert_int_equal(c.n_api_keys, 1);
    assert_int_equal(byoai_server_config_set(&c, "cors-origin", "http://a.example, https://b.example/", &err), 0);
    assert_int_equal(c.n_cors_origins, 2);
    assert_string_equal(c.cors_origins[1], "https://b.example");
    assert_int_equal(byoai_server_config_set(&c, "model", "tiny=/m/Tiny.GGUF", &err), 0);
    assert_int_equal(byoai_server_config_add_model(&c, "/x/Stories260K.gguf", NULL, &err), 0);
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.models[1].name, "stories260k");
    assert_int_equal(byoai_server_config_set(&c, "model", "tiny=/other.gguf", &err), 0); /* replaces */
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.models[0].path, "/other.gguf");
    assert_int_equal(byoai_server_config_set(&c, "chat-template", "tiny=chatml", &err), 0);
    assert_string_equal(c.models[0].chat_template, "chatml");
    assert_string_equal(c.models[1].chat_template, "");
    assert_int_equal(byoai_server_config_set(&c, "chat-template", "gemma", &err), 0);
    assert_string_equal(c.models[1].chat_template, "gemma");
    /* connections and the log */
    assert_int_equal(c.max_connections, 4096);
    assert_int_equal(c.max_connections_per_ip, 64);
    assert_int_equal(c.header_timeout, 10);
    assert_int_equal(c.min_body_rate, 1024);
    assert_true(c.log_requests);
    assert_string_equal(c.log_format, "text");
    assert_int_equal(byoai_server_config_set(&c, "max-connections-per-ip", "0", &err), 0);
    assert_int_equal(c.max_connections_per_ip, 0);
    assert_int_equal(byoai_server_config_set(&c, "min-body-rate", "4K", &err), 0);
    assert_int_equal(c.min_body_rate, 4096);
    assert_int_equal(byoai_server_config_set(&c, "log-format", "json", &err), 0);
    assert_string_equal(c.log_format, "json");
    assert_int_equal(byoai_server_config_set(&c, "log-requests", "false", &err), 0);
    assert_false(c.log_requests);
}

static void test_errors(void **state) {
    (void)state;
    byoai_server_config c;
    byoai_server_config_defaults(&c);
    byoai_error err;
    struct { const char *k, *v, *msg; } bad[] = {
        {"port", "65536", "between 0 and 65535"}, {"port", "-1", "whole number"}, {"port", "8o", "whole number"},
        {"parallel", "0", "between 1 and 256"}, {"max-body", "10", "between 1024"}, {"max-body", "5X", "whole number"},
        {"web", "maybe", "true or false"}, {"api-key", "short", "8 to"}, {"api-key", "has space 123", "spaces"},
        {"cors-origin", "example.com", "must be '*' or start with http"}, {"model", "noequals", "NAME=PATH"},
        {"model", "bad/name=/x.gguf", "may hold only"}, {"chat-template", "jinja", "unknown chat template"},
        {"chat-template", "nomodel=chatml", "no such model"}, {"frobnicate", "1", "unknown setting 'frobnicate'"},
        {"log-format", "xml", "text or json"}, {"header-timeout", "0", "between 1 and"},
        {"max-connections", "2", "between 16 and"}, {"min-body-rate", "0", "between 1 and"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = byoai_server_config_set(&c, bad[i].k, bad[i].v, &err);
        if (rc != BYOAI_EINVAL || !strstr(err.msg, bad[i].msg))
            fail_msg("%s = %s: rc %d, message '%s'", bad[i].k, bad[i].v, rc, err.msg);
    }
    /* a refused value adds nothing (a cluster-peer too long for its field
     * used to count as an empty peer: fuzz_server_config) */
    char longpeer[200];
    memset(longpeer, 'h', sizeof longpeer);
    memcpy(longpeer + 150, ":1", 3);
    assert_int_equal(byoai_server_config_set(&c, "cluster-peer", longpeer, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "too long"));
    assert_int_equal(c.n_cluster_peers, 0);
    assert_int_equal(byoai_server_config_set(&c, "cluster-peer", "10.0.0.2:47475", &err), 0);
    assert_int_equal(c.n_cluster_peers, 1);
    assert_string_equal(c.cluster_peers[0], "10.0.0.2:47475");
}

static void test_file_and_env(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/server.conf", dir);
    FILE *f = fopen(path, "w");
    fputs("# a comment\n\nport = 9000\nhost='0.0.0.0'\n  parallel =  \"3\"  \nmodel = a=/a.gguf\n", f);
    fclose(f);
    byoai_server_config c;
    byoai_server_config_defaults(&c);
    byoai_error err;
    assert_int_equal(byoai_server_config_load_file(&c, path, &err), 0);
    assert_int_equal(c.port, 9000);
    assert_string_equal(c.host, "0.0.0.0");
    assert_int_equal(c.parallel, 3);
    assert_int_equal(c.n_models, 1);
    setenv("BYOAI_PORT", "9100", 1);
    setenv("BYOAI_API_KEY", "key-one-111,key-two-222", 1);
    setenv("BYOAI_MODEL", "b=/b.gguf;c=/c.gguf", 1);
    assert_int_equal(byoai_server_config_load_env(&c, &err), 0);
    assert_int_equal(c.port, 9100);
    assert_int_equal(c.n_api_keys, 2);
    assert_string_equal(c.api_keys[1], "key-two-222");
    assert_int_equal(c.n_models, 3);
    setenv("BYOAI_PARALLEL", "zero", 1);
    assert_int_equal(byoai_server_config_load_env(&c, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "BYOAI_PARALLEL"));
    unsetenv("BYOAI_PORT");
    unsetenv("BYOAI_API_KEY");
    unsetenv("BYOAI_MODEL");
    unsetenv("BYOAI_PARALLEL");
    f = fopen(path, "w");
    fputs("port = 1\nthis line has no equals sign\n", f);
    fclose(f);
    assert_int_equal(byoai_server_config_load_file(&c, path, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "server.conf:2: expected 'key = value'"));
    f = fopen(path, "w");
    fputs("\n\nparallel = 0\n", f);
    fclose(f);
    assert_int_equal(byoai_server_config_load_file(&c, path, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "server.conf:3: parallel must be between"));
    assert_int_not_equal(byoai_server_config_load_file(&c, "/nonexistent/x.conf", &err), 0);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_set), cmocka_unit_test(test_errors), cmocka_unit_test(test_file_and_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
