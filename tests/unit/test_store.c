/* store/: names, manifests, blobs, locks, space, gc, import, bundles, tar. */
#include "regtest.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byoai/store.h"
#include "store/store_internal.h"

static void test_names(void **state) {
    (void)state;
    const char *good[] = {"stories260k", "qwen2.5-0.5b-instruct", "a", "a_b", "x:q4_k_m", "0abc", "llama-3.2-1b:f16"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) assert_int_equal(byoai_store_check_name(good[i], NULL), 0);
    const char *bad[] = {"", "../x", "a/b", "..", "a..b", ".hidden", "-rf", "Upper", "a b", "a:b:c", "a:", ":b",
                         "x:../y", "a\\b", "tab\there", "caf\xc3\xa9", "x:-v"};
    byoai_error err;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(byoai_store_check_name(bad[i], &err), BYOAI_EINVAL);
        assert_non_null(strstr(err.msg, "invalid name"));
    }
    char longname[200];
    memset(longname, 'a', sizeof longname);
    longname[129] = '\0';
    assert_int_equal(byoai_store_check_name(longname, NULL), BYOAI_EINVAL);
    longname[128] = '\0';
    assert_int_equal(byoai_store_check_name(longname, NULL), 0);
    assert_int_equal(byoai_store_check_name(NULL, NULL), BYOAI_EINVAL);
    char base[BYOAI_NAME_MAX + 1], variant[64];
    assert_int_equal(store_split_name("m:q8_0", base, variant, NULL), 0);
    assert_string_equal(base, "m");
    assert_string_equal(variant, "q8_0");
    assert_true(byoai_store_check_sha256("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(byoai_store_check_sha256("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(byoai_store_check_sha256("0123"));
    assert_false(byoai_store_check_sha256(NULL));
}

static void test_parse_bytes(void **state) {
    (void)state;
    uint64_t v;
    assert_int_equal(byoai_parse_bytes("1234", &v), 0);
    assert_int_equal(v, 1234);
    assert_int_equal(byoai_parse_bytes("500K", &v), 0);
    assert_int_equal(v, 500 * 1024);
    assert_int_equal(byoai_parse_bytes("1.5M", &v), 0);
    assert_int_equal(v, 1572864);
    assert_int_equal(byoai_parse_bytes("2GiB", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_not_equal(byoai_parse_bytes("", &v), 0);
    assert_int_not_equal(byoai_parse_bytes("-1", &v), 0);
    assert_int_not_equal(byoai_parse_bytes("12Q", &v), 0);
    assert_int_not_equal(byoai_parse_bytes("1e30", &v), 0);
}

static const char *SHA_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void test_manifest_parse(void **state) {
    (void)state;
    byoai_manifest m;
    byoai_error err;
    char text[2048];
    snprintf(text, sizeof text,
             "{\"byoai_manifest\":1,\"kind\":\"bundle\",\"name\":\"kit\",\"system\":\"hi\",\"params\":{\"temp\":0},"
             "\"files\":[{\"role\":\"embed\",\"model\":\"e\",\"sha256\":\"%s\",\"size\":5},"
             "{\"role\":\"chat\",\"model\":\"c\",\"variant\":\"q8_0\",\"sha256\":\"%s\",\"size\":7,"
             "\"origin\":{\"registry\":\"default\",\"revision\":\"3\"}}]}",
             SHA_A, SHA_A);
    assert_int_equal(byoai_manifest_parse(text, strlen(text), &m, &err), 0);
    assert_true(m.is_bundle);
    assert_int_equal(m.n_members, 2);
    assert_string_equal(byoai_manifest_main(&m)->model, "c");
    assert_string_equal(m.params_json, "{\"temp\":0}");
    /* format and parse again: the same */
    char *out = byoai_manifest_format(&m);
    byoai_manifest m2;
    assert_int_equal(byoai_manifest_parse(out, strlen(out), &m2, &err), 0);
    assert_string_equal(m2.members[1].origin.revision, "3");
    assert_string_equal(m2.system_prompt, "hi");
    free(out);
    byoai_manifest_free(&m2);
    byoai_manifest_free(&m);

    /* each field wrong in turn */
    struct { const char *json; const char *want; } bad[] = {
        {"[]", "JSON object"},
        {"{", "not valid JSON"},
        {"{\"byoai_manifest\":2,\"kind\":\"model\",\"name\":\"a\",\"files\":[]}", "upgrade byoai"},
        {"{\"byoai_manifest\":1,\"kind\":\"thing\",\"name\":\"a\",\"files\":[]}", "kind"},
        {"{\"byoai_manifest\":1,\"kind\":\"model\",\"name\":\"../a\",\"files\":[]}", "name"},
        {"{\"byoai_manifest\":1,\"kind\":\"model\",\"name\":\"a\",\"files\":[]}", "files"},
        {"{\"byoai_manifest\":1,\"kind\":\"model\",\"name\":\"a\",\"files\":[{\"role\":\"model\",\"model\":\"a\","
         "\"sha256\":\"xyz\",\"size\":1}]}", "sha256"},
        {"{\"byoai_manifest\":1,\"kind\":\"model\",\"name\":\"a\",\"files\":[{\"role\":\"model\",\"model\":\"a\","
         "\"sha256\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"size\":0}]}", "size"},
        {"{\"byoai_manifest\":1,\"kind\":\"model\",\"name\":\"a\",\"files\":[{\"role\":\"Bad Role\",\"model\":\"a\","
         "\"sha256\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"size\":1}]}", "role"},
        {"{\"byoai_manifest\":1,\"kind\":\"bundle\",\"name\":\"a\",\"files\":[{\"role\":\"x\",\"model\":\"a\","
         "\"sha256\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"size\":1},{\"role\":\"x\","
         "\"model\":\"a\",\"sha256\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"size\":1}]}",
         "twice"},
        {"{\"byoai_manifest\":1,\"kind\":\"bundle\",\"name\":\"a\",\"params\":[1],\"files\":[]}", "params"},
        {"{\"byoai_manifest\":1,\"byoai_manifest\":1}", "duplicate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_not_equal(byoai_manifest_parse(bad[i].json, strlen(bad[i].json), &m, &err), 0);
        if (!strstr(err.msg, bad[i].want)) fail_msg("case %zu: '%s' not in '%s'", i, bad[i].want, err.msg);
    }
}

static void test_store_cycle(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char home[512], gguf[512], path[4200];
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(gguf, sizeof gguf, "%s/m.gguf", dir);
    rt_make_gguf(gguf, 1, 1024, "mit");
    byoai_store *s;
    byoai_error err;
    assert_int_equal(byoai_store_open(home, &s, &err), 0);
    byoai_store_model m;
    const char *how;
    byoai_import_opts o = {.description = "mine"};
    assert_int_equal(byoai_store_import(s, gguf, "mine", &o, NULL, NULL, &m, &how, &err), 0);
    assert_string_equal(m.variant, "f32");
    assert_true(!strcmp(how, "hardlink") || !strcmp(how, "reflink"));
    char sha[65];
    assert_int_equal(byoai_sha256_file(gguf, sha, &err), 0);
    assert_string_equal(m.sha256, sha);
    /* a copy: no link */
    assert_int_equal(byoai_store_import(s, gguf, "copy:x", &(byoai_import_opts){.copy_only = true}, NULL, NULL, &m,
                                        &how, &err), 0);
    assert_string_equal(how, "present");
    byoai_store_model *list;
    size_t n;
    assert_int_equal(byoai_store_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "copy");
    assert_string_equal(list[1].name, "mine");
    free(list);
    /* find / resolve */
    assert_int_equal(byoai_store_find(s, "mine:f32", &m, &err), 0);
    assert_int_equal(byoai_store_find(s, "mine:q4_0", &m, &err), BYOAI_ENOTFOUND);
    assert_non_null(strstr(err.msg, "installed as variant 'f32'"));
    assert_int_equal(byoai_store_resolve(s, "mine", path, sizeof path, &m, &err), 0);
    assert_non_null(strstr(path, sha));
    assert_int_equal(byoai_store_resolve(s, gguf, path, sizeof path, NULL, &err), 0);
    assert_string_equal(path, gguf);
    assert_int_equal(byoai_store_resolve(s, "nothing", path, sizeof path, NULL, &err), BYOAI_ENOTFOUND);
    assert_non_null(strstr(err.msg, "byoai install nothing"));
    assert_int_equal(byoai_store_resolve(s, "../etc", path, sizeof path, NULL, &err), BYOAI_ENOTFOUND);
    /* a manifest never names a missing blob */
    byoai_manifest man = {0};
    byoai_store_member mem = {.role = "model", .model = "ghost", .size = 5};
    memcpy(mem.sha256, SHA_A, 65);
    snprintf(man.name, sizeof man.name, "ghost");
    man.members = &mem;
    man.n_members = 1;
    assert_int_equal(byoai_store_write_manifest(s, &man, &err), BYOAI_ENOTFOUND);
    assert_int_equal(byoai_store_find(s, "ghost", &m, &err), BYOAI_ENOTFOUND);
    /* a broken manifest is skipped by list, and gc keeps what it mentions */
    snprintf(path, sizeof path, "%s/manifests/broken.json", home);
    char text[200];
    snprintf(text, sizeof text, "{ not json %s", sha);
    rt_write(path, text);
    assert_int_equal(byoai_store_remove(s, "copy", &err), 0);
    assert_int_equal(byoai_store_remove(s, "copy", &err), BYOAI_ENOTFOUND);
    /* removing what is not there does not suggest installing it */
    assert_non_null(strstr(err.msg, "'copy' is not installed, so there is nothing to remove"));
    assert_null(strstr(err.msg, "byoai install"));
    assert_int_equal(byoai_store_remove(s, "mine:q4_0", &err), BYOAI_ENOTFOUND);
    assert_non_null(strstr(err.msg, "installed as variant 'f32', not 'q4_0'; `byoai remove mine` removes it"));
    assert_int_equal(byoai_store_remove(s, "mine", &err), 0);
    byoai_gc_report r;
    assert_int_equal(byoai_store_gc(s, false, &r, &err), 0);
    assert_int_equal(r.blobs_removed, 0);
    assert_int_equal(r.blobs_kept, 1);
    unlink(path);
    /* a partial download and its lock are stale for gc */
    snprintf(path, sizeof path, "%s/blobs/partial/sha256-%s.part", home, SHA_A);
    rt_write(path, "part");
    int lk;
    assert_int_equal(byoai_store_lock_blob(s, SHA_A, &lk, NULL, NULL, &err), 0);
    byoai_store_unlock_blob(s, SHA_A, lk);
    assert_int_equal(byoai_store_gc(s, true, &r, &err), 0);
    assert_int_equal(r.blobs_removed, 1);
    assert_true(byoai_store_has_blob(s, sha, 0)); /* dry run */
    assert_int_equal(byoai_store_gc(s, false, &r, &err), 0);
    assert_int_equal(r.blobs_removed, 1);
    assert_int_equal(r.partials_removed, 1);
    assert_false(byoai_store_has_blob(s, sha, 0));
    assert_true(byoai_fs_exists(gguf)); /* the user's file is untouched */
    byoai_store_close(s);
    tu_rmtree(dir);
}

/* lock files exist while held, and the last holder removes its file */
static bool exists(const char *p) { return access(p, F_OK) == 0; }

typedef struct {
    byoai_store *s;
    int fd, rc;
    volatile bool got;
} locker;

static void *lock_blob_thread(void *arg) {
    locker *l = arg;
    byoai_error err;
    l->rc = byoai_store_lock_blob(l->s, SHA_A, &l->fd, NULL, NULL, &err);
    l->got = true;
    return NULL;
}

static void test_lock_files(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char home[512], blob_lock[700], store_lock[700];
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(blob_lock, sizeof blob_lock, "%s/blobs/partial/sha256-%s.lock", home, SHA_A);
    snprintf(store_lock, sizeof store_lock, "%s/store.lock", home);
    byoai_store *s;
    byoai_error err;
    assert_int_equal(byoai_store_open(home, &s, &err), 0);
    int a, b;
    assert_int_equal(byoai_store_lock_blob(s, SHA_A, &a, NULL, NULL, &err), 0);
    assert_true(exists(blob_lock));
    byoai_store_unlock_blob(s, SHA_A, a);
    assert_false(exists(blob_lock));
    /* shared: the file stays while another holder shares it */
    assert_int_equal(byoai_store_lock(s, false, &a, &err), 0);
    assert_int_equal(byoai_store_lock(s, false, &b, &err), 0);
    byoai_store_unlock(s, a);
    assert_true(exists(store_lock));
    byoai_store_unlock(s, b);
    assert_false(exists(store_lock));
    assert_int_equal(byoai_store_lock(s, true, &a, &err), 0);
    byoai_store_unlock(s, a);
    assert_false(exists(store_lock));
    /* a waiter that opened the file before its holder removed it takes a
     * new file, so a third locker cannot get in beside it */
    assert_int_equal(byoai_store_lock_blob(s, SHA_A, &a, NULL, NULL, &err), 0);
    locker w = {.s = s, .fd = -1};
    pthread_t th;
    pthread_create(&th, NULL, lock_blob_thread, &w);
    usleep(200 * 1000);
    assert_false(w.got);
    byoai_store_unlock_blob(s, SHA_A, a);
    pthread_join(th, NULL);
    assert_int_equal(w.rc, 0);
    assert_true(exists(blob_lock)); /* the waiter's own file */
    int fd = open(blob_lock, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), -1); /* held by the waiter */
    close(fd);
    byoai_store_unlock_blob(s, SHA_A, w.fd);
    assert_false(exists(blob_lock));
    byoai_store_close(s);
    tu_rmtree(dir);
}

static void test_space(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    byoai_store *s;
    byoai_error err;
    assert_int_equal(byoai_store_open(dir, &s, &err), 0);
    setenv("BYOAI_STORE_MAX_BYTES", "1K", 1);
    assert_int_equal(byoai_store_check_space(s, 2000, "x", &err), BYOAI_ENOSPC);
    assert_non_null(strstr(err.msg, "not enough disk space for x"));
    assert_int_equal(byoai_store_check_space(s, 1000, "x", &err), 0);
    unsetenv("BYOAI_STORE_MAX_BYTES");
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    rt_write(cfg, "{\"max_store_bytes\": 100}");
    assert_int_equal(byoai_store_check_space(s, 101, "x", &err), BYOAI_ENOSPC);
    assert_non_null(strstr(err.msg, "config.json"));
    unlink(cfg);
    assert_int_equal(byoai_store_check_space(s, 1ull << 62, "x", &err), BYOAI_ENOSPC);
    assert_non_null(strstr(err.msg, "free"));
    byoai_store_close(s);
    tu_rmtree(dir);
}

static void test_tar(void **state) {
    (void)state;
    uint8_t blk[512];
    tar_entry e;
    bool end;
    byoai_error err;
    assert_int_equal(tar_header(blk, "blobs/x", 12345, 0), 0);
    assert_int_equal(tar_parse(blk, &e, &end, &err), 0);
    assert_false(end);
    assert_string_equal(e.name, "blobs/x");
    assert_int_equal(e.size, 12345);
    assert_int_equal(e.type, '0');
    /* past 8 GiB: base-256 */
    assert_int_equal(tar_header(blk, "big", 20ull << 30, 0), 0);
    assert_int_equal(tar_parse(blk, &e, &end, &err), 0);
    assert_int_equal(e.size, 20ull << 30);
    /* a flipped bit fails the checksum */
    blk[10] ^= 1;
    assert_int_equal(tar_parse(blk, &e, &end, &err), BYOAI_EFORMAT);
    memset(blk, 0, sizeof blk);
    assert_int_equal(tar_parse(blk, &e, &end, &err), 0);
    assert_true(end);
    char longname[120];
    memset(longname, 'a', sizeof longname);
    longname[101] = '\0';
    assert_int_equal(tar_header(blk, longname, 1, 0), BYOAI_EINVAL);
}

static void test_bundle(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char home[512], home2[512], a[512], b[512], arc[512];
    snprintf(home, sizeof home, "%s/h1", dir);
    snprintf(home2, sizeof home2, "%s/h2", dir);
    snprintf(a, sizeof a, "%s/a.gguf", dir);
    snprintf(b, sizeof b, "%s/b.gguf", dir);
    snprintf(arc, sizeof arc, "%s/kit.tar", dir);
    rt_make_gguf(a, 1, 1024, "mit");
    rt_make_gguf(b, 2, 2048, "mit");
    byoai_store *s, *s2;
    byoai_error err;
    assert_int_equal(byoai_store_open(home, &s, &err), 0);
    assert_int_equal(byoai_store_import(s, a, "a", NULL, NULL, NULL, NULL, NULL, &err), 0);
    assert_int_equal(byoai_store_import(s, b, "b", NULL, NULL, NULL, NULL, NULL, &err), 0);
    byoai_bundle_member_spec spec[2] = {{"embed", "b"}, {"chat", "a"}};
    assert_int_equal(byoai_store_bundle_create(s, "kit", spec, 2, "be brief", "{\"temp\":0.5}", &err), 0);
    assert_int_equal(byoai_store_bundle_create(s, "a", spec, 2, NULL, NULL, &err), BYOAI_EEXIST);
    assert_int_equal(byoai_store_bundle_create(s, "x", spec, 2, NULL, "[1]", &err), BYOAI_EINVAL);
    assert_int_equal(byoai_store_bundle_create(s, "x", spec, 2, NULL, "{\"a\":{\"b\":1}}", &err), BYOAI_EINVAL);
    byoai_bundle_member_spec dup[2] = {{"chat", "a"}, {"chat", "b"}};
    assert_int_equal(byoai_store_bundle_create(s, "x", dup, 2, NULL, NULL, &err), BYOAI_EINVAL);
    byoai_bundle_member_spec nested[1] = {{"chat", "kit"}};
    assert_int_equal(byoai_store_bundle_create(s, "x", nested, 1, NULL, NULL, &err), BYOAI_EINVAL);
    byoai_store_model m;
    assert_int_equal(byoai_store_find(s, "kit", &m, &err), 0);
    assert_true(m.is_bundle);
    assert_string_equal(m.system_prompt, "be brief");
    char sha_a[65];
    byoai_sha256_file(a, sha_a, &err);
    assert_string_equal(m.sha256, sha_a); /* the chat role's file */
    /* its size is all its files' (1024 and 2048 floats, plus headers) */
    struct stat sa, sb;
    assert_int_equal(stat(a, &sa), 0);
    assert_int_equal(stat(b, &sb), 0);
    assert_int_equal(m.size, (uint64_t)(sa.st_size + sb.st_size));
    assert_int_equal(byoai_store_bundle_export(s, "kit", arc, NULL, NULL, &err), 0);
    assert_int_equal(byoai_store_open(home2, &s2, &err), 0);
    assert_int_equal(byoai_store_bundle_import(s2, arc, NULL, NULL, NULL, &m, &err), 0);
    assert_string_equal(m.name, "kit");
    assert_int_equal(byoai_store_bundle_import(s2, arc, "../x", NULL, NULL, &m, &err), BYOAI_EINVAL);
    byoai_manifest man;
    assert_int_equal(byoai_store_read_manifest(s2, "kit", &man, &err), 0);
    assert_int_equal(man.n_members, 2);
    for (size_t i = 0; i < 2; i++) assert_true(byoai_store_has_blob(s2, man.members[i].sha256, man.members[i].size));
    byoai_manifest_free(&man);
    byoai_store_close(s2);
    byoai_store_close(s);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),         cmocka_unit_test(test_parse_bytes), cmocka_unit_test(test_manifest_parse),
        cmocka_unit_test(test_store_cycle),   cmocka_unit_test(test_space),       cmocka_unit_test(test_tar),
        cmocka_unit_test(test_bundle),        cmocka_unit_test(test_lock_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
