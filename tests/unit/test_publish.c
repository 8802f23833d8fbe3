/* registry/: keys and signatures, and publishing to an in-process registry:
 * known key, unknown key, replayed and stale requests, ownership, the
 * registry's signature over index.json. */
#include "regtest.h"

#include <sys/stat.h>

#include "byoai/registry.h"
#include "registry/registry_internal.h"

static void test_keys(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/k.key", dir);
    byoai_key k, k2, pub;
    byoai_error err;
    assert_int_equal(byoai_key_generate("Bad Name", &k, &err), BYOAI_EINVAL);
    assert_int_equal(byoai_key_generate("alice", &k, &err), 0);
    assert_int_equal(byoai_key_save_secret(path, &k, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(byoai_key_load_secret(path, &k2, &err), 0);
    assert_memory_equal(k.pk, k2.pk, 32);
    assert_string_equal(k2.name, "alice");
    char text[160];
    byoai_key_public_text(&k, text);
    assert_int_equal(byoai_key_parse_public(text, &pub, &err), 0);
    assert_memory_equal(pub.pk, k.pk, 32);
    assert_string_equal(pub.name, "alice");
    assert_int_equal(byoai_key_parse_public(text + 14, &pub, &err), 0); /* bare hex (and name) */
    assert_int_equal(byoai_key_parse_public("byoai-ed25519 zz alice", &pub, &err), BYOAI_EFORMAT);
    char sig[129];
    byoai_sign(&k, "hello", 5, sig);
    assert_int_equal(byoai_verify(k.pk, "hello", 5, sig, &err), 0);
    assert_int_equal(byoai_verify(k.pk, "hellp", 5, sig, &err), BYOAI_EAUTH);
    sig[0] = sig[0] == 'a' ? 'b' : 'a';
    assert_int_equal(byoai_verify(k.pk, "hello", 5, sig, &err), BYOAI_EAUTH);
    assert_int_equal(byoai_verify(k.pk, "hello", 5, "short", &err), BYOAI_EAUTH);
    chmod(path, 0644);
    assert_int_equal(byoai_key_load_secret(path, &k2, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "chmod 600"));
    rt_write(path, "garbage");
    chmod(path, 0600);
    assert_int_equal(byoai_key_load_secret(path, &k2, &err), BYOAI_EFORMAT);
    tu_rmtree(dir);
}

static void test_publish(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char reg[600], home[600], key[700], other[700], model[600], url[100];
    snprintf(reg, sizeof reg, "%s/reg", dir);
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(key, sizeof key, "%s/alice.key", dir);
    snprintf(other, sizeof other, "%s/mallory.key", dir);
    snprintf(model, sizeof model, "%s/m.gguf", dir);
    rt_make_gguf(model, 3, 2048, "mit");
    byoai_error err;
    char regpub[160];
    assert_int_equal(byoai_registry_init(reg, regpub, &err), 0);
    byoai_key alice, mallory, pub;
    assert_int_equal(byoai_key_generate("alice", &alice, &err), 0);
    assert_int_equal(byoai_key_save_secret(key, &alice, &err), 0);
    assert_int_equal(byoai_key_generate("mallory", &mallory, &err), 0);
    assert_int_equal(byoai_key_save_secret(other, &mallory, &err), 0);
    char text[160];
    byoai_key_public_text(&alice, text);
    assert_int_equal(byoai_registry_add_publisher(reg, "alice", text, &err), 0);
    assert_int_equal(byoai_registry_add_publisher(reg, "bob", text, &err), BYOAI_EINVAL); /* names alice */
    byoai_registry_server *srv;
    assert_int_equal(byoai_registry_serve_start(reg, &(byoai_serve_opts){.port = 0}, &srv, &err), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", byoai_registry_serve_port(srv));
    byoai_store *s;
    assert_int_equal(byoai_store_open(home, &s, &err), 0);

    byoai_publish_result res;
    uint64_t now = byoai_time_unix();
    byoai_publish_opts o = {.registry = url, .name = "tiny", .key_path = key, .description = "a tiny model",
                            .tags = "test,tiny", .timestamp = now, .nonce = "00112233445566778899aabbccddeeff"};
    assert_int_equal(byoai_publish(s, model, &o, NULL, NULL, &res, &err), 0);
    assert_int_equal(res.http_status, 201);
    assert_string_equal(res.variant, "f32");
    assert_string_equal(res.revision, "1");
    assert_string_equal(res.publisher, "alice");
    /* the same signed request again: a replay */
    assert_int_equal(byoai_publish(s, model, &o, NULL, NULL, &res, &err), BYOAI_EEXIST);
    assert_non_null(strstr(err.msg, "replay"));
    /* an old request */
    o.nonce = "ffeeddccbbaa99887766554433221100";
    o.timestamp = now - 3600;
    assert_int_equal(byoai_publish(s, model, &o, NULL, NULL, &res, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "clock"));
    /* a fresh one updates the entry: revision 2 */
    o.timestamp = 0;
    o.nonce = NULL;
    assert_int_equal(byoai_publish(s, model, &o, NULL, NULL, &res, &err), 0);
    assert_string_equal(res.revision, "2");
    /* an unknown publisher */
    o.key_path = other;
    assert_int_equal(byoai_publish(s, model, &o, NULL, NULL, &res, &err), BYOAI_EAUTH);
    assert_non_null(strstr(err.msg, "does not know publisher 'mallory'"));
    /* the index is signed by the registry's key and names the publisher */
    char p[700], *idx, *sig;
    size_t len;
    snprintf(p, sizeof p, "%s/index.json", reg);
    assert_int_equal(byoai_fs_read_all(p, 0, &idx, &len, &err), 0);
    snprintf(p, sizeof p, "%s/index.json.sig", reg);
    assert_int_equal(byoai_fs_read_all(p, 0, &sig, NULL, &err), 0);
    sig[128] = '\0';
    assert_int_equal(byoai_key_parse_public(regpub, &pub, &err), 0);
    assert_int_equal(byoai_verify(pub.pk, idx, len, sig, &err), 0);
    byoai_index *ix;
    assert_int_equal(byoai_index_parse(idx, len, NULL, &ix, &err), 0);
    const byoai_index_model *m = byoai_index_find_model(ix, "tiny");
    assert_non_null(m);
    assert_string_equal(m->publisher, "alice");
    assert_string_equal(m->license, "mit");
    assert_string_equal(m->revision, "2");
    assert_int_equal(m->n_tags, 2);
    byoai_index_free(ix);
    free(idx);
    free(sig);
    /* bad names never reach the server */
    o.key_path = key;
    o.name = "../evil";
    assert_int_equal(byoai_publish(s, model, &o, NULL, NULL, &res, &err), BYOAI_EINVAL);
    byoai_store_close(s);
    byoai_registry_serve_stop(srv);
    tu_rmtree(dir);
}

/* The checks on a publish request's headers, before any key or file is
 * looked at. */
static void test_publish_headers(void **state) {
    (void)state;
    char sig[129], msg[512];
    memset(sig, 'a', 128);
    sig[128] = '\0';
    reg_publish_headers h = {.publisher = "alice", .timestamp = "1700000000",
                             .nonce = "00112233445566778899aabbccddeeff",
                             .sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                             .meta = "{}", .signature = sig};
    uint64_t ts = 0;
    assert_int_equal(reg_publish_check("tiny", &h, &ts, msg, sizeof msg), 0);
    assert_true(ts == 1700000000);
    memset(sig, 'A', 128); /* hex digits in either case */
    assert_int_equal(reg_publish_check("tiny", &h, &ts, msg, sizeof msg), 0);
    /* unix seconds are digits: strtoull alone took these (-12 as 2^64-12) */
    const char *bad_ts[] = {"-12", " 12", "+12", "12a", "", "12345678901234567890"};
    for (size_t i = 0; i < sizeof bad_ts / sizeof bad_ts[0]; i++) {
        reg_publish_headers b = h;
        b.timestamp = bad_ts[i];
        if (reg_publish_check("tiny", &b, &ts, msg, sizeof msg) != 400 || !strstr(msg, "unix seconds"))
            fail_msg("timestamp '%s': %s", bad_ts[i], msg);
    }
    reg_publish_headers b = h;
    b.signature = "abcd";
    assert_int_equal(reg_publish_check("tiny", &b, &ts, msg, sizeof msg), 400);
    assert_string_equal(msg, "malformed publish headers");
    b = h;
    b.nonce = NULL;
    assert_int_equal(reg_publish_check("tiny", &b, &ts, msg, sizeof msg), 400);
    assert_non_null(strstr(msg, "X-Byoai-Publisher, -Timestamp, -Nonce"));
    assert_int_equal(reg_publish_check("tiny:q4", &h, &ts, msg, sizeof msg), 400);
    assert_int_equal(reg_publish_check("../x", &h, &ts, msg, sizeof msg), 400);
    assert_int_equal(reg_publish_check(NULL, &h, &ts, msg, sizeof msg), 400);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_keys), cmocka_unit_test(test_publish),
                                       cmocka_unit_test(test_publish_headers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
