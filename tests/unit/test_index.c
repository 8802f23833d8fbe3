/* registry/: index.json parsing and validation, URLs, variant choice, search. */
#include "regtest.h"

#include "byoai/registry.h"
#include "registry/registry_internal.h"

static const char *SHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static char *index_json(const char *variants) {
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "{\"schema_version\":1,\"models\":["
             "{\"name\":\"zeta\",\"description\":\"A chat model for stories\",\"tags\":[\"chat\"],"
             "\"architecture\":\"llama\",\"license\":\"mit\",\"parameters\":1000,\"revision\":\"1\","
             "\"updated\":\"2024-01-01\",\"variants\":[%s]},"
             "{\"name\":\"alpha-embed\",\"description\":\"Embeddings for retrieval\",\"tags\":[\"embedding\"],"
             "\"architecture\":\"nomic-bert\",\"license\":\"apache-2.0\",\"parameters\":5,\"revision\":\"2\","
             "\"updated\":\"2024-02-01T10:00:00Z\",\"variants\":[{\"name\":\"q8_0\",\"quantization\":\"Q8_0\","
             "\"size\":100,\"sha256\":\"%s\",\"url\":\"https://example.org/e.gguf\"}]}],"
             "\"bundles\":[{\"name\":\"kit\",\"description\":\"chat plus stories\",\"revision\":\"1\","
             "\"updated\":\"2024-01-01\",\"members\":[{\"role\":\"chat\",\"model\":\"zeta\"}]}]}",
             variants, SHA);
    return buf;
}

static void test_parse(void **state) {
    (void)state;
    char v[2048];
    snprintf(v, sizeof v,
             "{\"name\":\"f32\",\"quantization\":\"F32\",\"size\":4000000000,\"sha256\":\"%s\",\"url\":\"blobs/x.gguf\","
             "\"mirrors\":[\"https://m.example/x.gguf\"],\"min_ram\":5000000000},"
             "{\"name\":\"q4_k_m\",\"quantization\":\"Q4_K_M\",\"approx_size\":1000000000,"
             "\"url\":\"hf:Org/Repo-GGUF/x-Q4_K_M.gguf\"}",
             SHA);
    const char *j = index_json(v);
    setenv("BYOAI_HF_ENDPOINT", "http://hub.test/", 1);
    byoai_index *ix;
    byoai_error err;
    byoai_index_parse_opts po = {.base_url = "http://reg.test:8080/dir/index.json"};
    assert_int_equal(byoai_index_parse(j, strlen(j), &po, &ix, &err), 0);
    assert_int_equal(ix->n_models, 2);
    assert_string_equal(ix->models[0].name, "alpha-embed"); /* sorted */
    const byoai_index_model *m = byoai_index_find_model(ix, "zeta");
    assert_non_null(m);
    assert_int_equal(m->n_variants, 2);
    assert_string_equal(m->variants[0].url, "http://reg.test:8080/dir/blobs/x.gguf");
    assert_string_equal(m->variants[0].mirrors[0], "https://m.example/x.gguf");
    assert_string_equal(m->variants[1].url, "http://hub.test/Org/Repo-GGUF/resolve/main/x-Q4_K_M.gguf");
    assert_null(m->variants[1].sha256);
    assert_int_equal(m->variants[1].size, 0);
    assert_int_equal(m->variants[1].approx_size, 1000000000);
    assert_non_null(byoai_index_find_bundle(ix, "kit"));
    assert_string_equal(byoai_index_find_bundle(ix, "kit")->params_json, "{}");
    assert_null(byoai_index_find_model(ix, "kit"));

    /* choose: 16 GiB runs the 5 GB f32 comfortably, but a quantized one that
     * fits is preferred -- when this build runs it */
    byoai_machine mc = {.ram_bytes = 16ull << 30};
    size_t idx;
    char why[256];
    assert_int_equal(byoai_index_choose_variant(m, &mc, NULL, &idx, why, &err), 0);
    bool q4k_runs = reg_quant_runnable("Q4_K_M", NULL);
    assert_string_equal(m->variants[idx].name, q4k_runs ? "q4_k_m" : "f32");
    mc.ram_bytes = 6ull << 30; /* f32 needs 5 GB: fits, not comfortably */
    if (!q4k_runs) {
        assert_int_equal(byoai_index_choose_variant(m, &mc, NULL, &idx, why, &err), 0);
        assert_string_equal(m->variants[idx].name, "f32");
        assert_non_null(strstr(why, "smallest"));
    }
    mc.ram_bytes = 1ull << 30;
    if (!q4k_runs) {
        assert_int_equal(byoai_index_choose_variant(m, &mc, NULL, &idx, why, &err), BYOAI_ENOMEM);
        assert_non_null(strstr(err.msg, "zeta:VARIANT"));
    }
    assert_int_equal(byoai_index_choose_variant(m, &mc, "F32", &idx, why, &err), 0); /* asked for: always */
    assert_int_equal(byoai_index_choose_variant(m, &mc, "q2_k", &idx, why, &err), BYOAI_ENOTFOUND);
    assert_non_null(strstr(err.msg, "f32, q4_k_m"));
    assert_int_equal(byoai_index_variant_ram(&m->variants[0]), 5000000000ull);
    assert_true(byoai_index_variant_ram(&m->variants[1]) > 1000000000ull);

    /* search: every word must match; name matches rank first */
    byoai_search_hit *h;
    size_t n;
    assert_int_equal(byoai_index_search(ix, "chat", &h, &n), 0);
    assert_int_equal(n, 2); /* zeta (tag) and kit (description) */
    assert_string_equal(h[0].model ? h[0].model->name : h[0].bundle->name, "zeta");
    free(h);
    assert_int_equal(byoai_index_search(ix, "embed retrieval", &h, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].model->name, "alpha-embed");
    free(h);
    assert_int_equal(byoai_index_search(ix, "chat nothing", &h, &n), 0);
    assert_int_equal(n, 0);
    free(h);
    assert_int_equal(byoai_index_search(ix, "", &h, &n), 0);
    assert_int_equal(n, 3);
    free(h);
    byoai_index_free(ix);
    unsetenv("BYOAI_HF_ENDPOINT");
}

static void test_rejects(void **state) {
    (void)state;
    struct { const char *variant; const char *base; const char *want; } cases[] = {
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":1,\"url\":\"https://x/y\"}", NULL, "sha256: is missing"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":1,\"sha256\":\"0123\",\"url\":\"https://x/y\"}", NULL, "sha256"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":1,\"sha256\":\"%s\",\"url\":\"file:///etc/passwd\"}",
         "https://reg/index.json", "file:// URLs"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":1,\"sha256\":\"%s\",\"url\":\"../x\"}", NULL, "relative"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":1,\"sha256\":\"%s\",\"url\":\"gopher://x\"}", NULL, "scheme"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":1,\"sha256\":\"%s\",\"url\":\"http://u@x/y\"}", NULL, "credentials"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":1,\"sha256\":\"%s\",\"url\":\"hf:only\"}", NULL, "hf:OWNER"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":1,\"sha256\":\"%s\",\"url\":\"hf:a/b/../../x.gguf\"}", NULL, "hf:OWNER"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"sha256\":\"%s\",\"url\":\"https://x/y\"}", NULL, "size"},
        {"{\"name\":\"a\",\"quantization\":\"F-32\",\"size\":1,\"sha256\":\"%s\",\"url\":\"https://x/y\"}", NULL, "quantization"},
        {"{\"name\":\"A\",\"quantization\":\"F32\",\"size\":1,\"sha256\":\"%s\",\"url\":\"https://x/y\"}", NULL, "name"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":-1,\"sha256\":\"%s\",\"url\":\"https://x/y\"}", NULL, "size"},
        {"{\"name\":\"a\",\"quantization\":\"F32\",\"size\":1,\"sha256\":\"%s\",\"url\":\"https://x/y\",\"mirrors\":[1]}", NULL, "mirrors"},
        {"\"a string\"", NULL, "must be an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char v[1024];
        snprintf(v, sizeof v, cases[i].variant, SHA);
        const char *j = index_json(v);
        byoai_index *ix;
        byoai_error err;
        byoai_index_parse_opts po = {.base_url = cases[i].base};
        assert_int_equal(byoai_index_parse(j, strlen(j), &po, &ix, &err), BYOAI_EFORMAT);
        if (!strstr(err.msg, cases[i].want)) fail_msg("case %zu: '%s' not in '%s'", i, cases[i].want, err.msg);
        assert_non_null(strstr(err.msg, "models[0] (\"zeta\").variants[0]"));
    }
    byoai_index *ix;
    byoai_error err;
    const char *future = "{\"schema_version\":2,\"models\":[]}", *none = "{\"schema_version\":1}";
    assert_int_equal(byoai_index_parse(future, strlen(future), NULL, &ix, &err), BYOAI_EUNSUPPORTED);
    assert_int_equal(byoai_index_parse(none, strlen(none), NULL, &ix, &err), BYOAI_EFORMAT);
    assert_int_equal(byoai_index_parse("", 0, NULL, &ix, &err), BYOAI_EFORMAT);
    /* deep nesting is an error, not a crash */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 64);
    size_t k = (size_t)sprintf(deep, "{\"schema_version\":1,\"models\":");
    for (size_t i = 0; i < depth; i++) deep[k++] = '[';
    for (size_t i = 0; i < depth; i++) deep[k++] = ']';
    deep[k++] = '}';
    assert_int_equal(byoai_index_parse(deep, k, NULL, &ix, &err), BYOAI_EFORMAT);
    free(deep);
}

static void test_urls(void **state) {
    (void)state;
    char out[512], file[128];
    assert_int_equal(reg_url_join("http://h:1/a/index.json", "blobs/x", out, sizeof out), 0);
    assert_string_equal(out, "http://h:1/a/blobs/x");
    assert_int_equal(reg_url_join("http://h:1", "blobs/x", out, sizeof out), 0);
    assert_string_equal(out, "http://h:1/blobs/x");
    assert_int_equal(reg_url_join("file:///srv/reg/index.json?x=1", "b", out, sizeof out), 0);
    assert_string_equal(out, "file:///srv/reg/b");
    assert_int_equal(reg_index_url("http://h/reg", out, sizeof out, NULL), 0);
    assert_string_equal(out, "http://h/reg/index.json");
    assert_int_equal(reg_index_url("http://h/reg/", out, sizeof out, NULL), 0);
    assert_string_equal(out, "http://h/reg/index.json");
    assert_int_equal(reg_index_url("http://h/other.json", out, sizeof out, NULL), 0);
    assert_string_equal(out, "http://h/other.json");
    unsetenv("BYOAI_HF_ENDPOINT");
    unsetenv("HF_ENDPOINT");
    assert_true(reg_hf_to_url("hf:Qwen/Qwen2.5-GGUF/q.gguf", out, sizeof out, file, sizeof file));
    assert_string_equal(out, "https://huggingface.co/Qwen/Qwen2.5-GGUF/resolve/main/q.gguf");
    assert_string_equal(file, "q.gguf");
    assert_true(reg_hf_to_url("hf:o/r@v2/sub/dir/q.gguf", out, sizeof out, file, sizeof file));
    assert_string_equal(out, "https://huggingface.co/o/r/resolve/v2/sub/dir/q.gguf");
    assert_string_equal(file, "q.gguf");
    const char *bad[] = {"hf:o", "hf:o/r", "hf:../r/x", "hf:o/r/../x", "hf:o/r/a//b", "hf:o/r/a b", "hf:/r/x", "x:o/r/f"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (reg_hf_to_url(bad[i], out, sizeof out, NULL, 0)) fail_msg("accepted %s", bad[i]);
    assert_true(reg_is_hub_url("https://huggingface.co/o/r/resolve/main/x.gguf"));
    assert_false(reg_is_hub_url("https://huggingface.co/o/r/blob/main/x.gguf"));
    assert_false(reg_is_hub_url("https://evil.example/o/r/resolve/main/x.gguf"));
    assert_false(reg_is_hub_url("https://huggingface.co.evil.example/o/r/resolve/main/x.gguf"));
    byoai_error err;
    assert_int_equal(byoai_registry_check_url("https://reg.example/models/", &err), 0);
    assert_int_equal(byoai_registry_check_url("file:///srv/reg", &err), 0);
    assert_int_not_equal(byoai_registry_check_url("ftp://x", &err), 0);
    assert_int_not_equal(byoai_registry_check_url("file://relative", &err), 0);
    assert_int_not_equal(byoai_registry_check_url("http://u:p@x/", &err), 0);
    assert_int_not_equal(byoai_registry_check_url("http://x/a/../b", &err), 0);
    assert_int_not_equal(byoai_registry_check_url("http://x/a b", &err), 0);
    bool fl;
    assert_true(reg_quant_runnable("F32", &fl));
    assert_true(fl);
    assert_true(reg_quant_runnable("Q8_0", &fl));
    assert_false(fl);
    assert_false(reg_quant_runnable("NOT_A_TYPE", &fl));
}

static void test_registry_config(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    byoai_store *s;
    byoai_error err;
    assert_int_equal(byoai_store_open(dir, &s, &err), 0);
    unsetenv("BYOAI_REGISTRY");
    byoai_registry_conf *list;
    size_t n;
    assert_int_equal(byoai_registry_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].url, "builtin:");
    free(list);
    assert_int_equal(byoai_registry_config_add(s, "lan", "http://10.0.0.2:8088/", NULL, true, &err), 0);
    assert_int_equal(byoai_registry_config_add(s, "local", "http://x/", NULL, false, &err), BYOAI_EINVAL);
    assert_int_equal(byoai_registry_config_add(s, "bad name", "http://x/", NULL, false, &err), BYOAI_EINVAL);
    assert_int_equal(byoai_registry_config_add(s, "k", "http://x/", "nothex", false, &err), BYOAI_EINVAL);
    assert_int_equal(byoai_registry_list(s, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "lan"); /* the default first */
    assert_true(list[0].is_default);
    free(list);
    byoai_registry_conf r;
    assert_int_equal(byoai_registry_get(s, NULL, &r, &err), 0);
    assert_string_equal(r.name, "lan");
    assert_int_equal(byoai_registry_get(s, "default", &r, &err), 0);
    assert_string_equal(r.url, "builtin:");
    assert_int_equal(byoai_registry_get(s, "nope", &r, &err), BYOAI_ENOTFOUND);
    assert_non_null(strstr(err.msg, "lan, default"));
    assert_int_equal(byoai_registry_get(s, "https://other.example/r", &r, &err), 0);
    assert_string_equal(r.name, "other.example");
    setenv("BYOAI_REGISTRY", "/srv/reg", 1);
    assert_int_equal(byoai_registry_get(s, NULL, &r, &err), 0);
    assert_string_equal(r.url, "file:///srv/reg");
    setenv("BYOAI_REGISTRY_KEY", "zz", 1);
    assert_int_not_equal(byoai_registry_get(s, NULL, &r, &err), 0);
    unsetenv("BYOAI_REGISTRY_KEY");
    unsetenv("BYOAI_REGISTRY");
    assert_int_equal(byoai_registry_config_remove(s, "lan", &err), 0);
    assert_int_equal(byoai_registry_config_remove(s, "lan", &err), BYOAI_ENOTFOUND);
    assert_int_equal(byoai_registry_get(s, NULL, &r, &err), 0);
    assert_string_equal(r.url, "builtin:");
    /* the built-in curated index parses */
    byoai_index *ix;
    assert_int_equal(byoai_index_load(s, &r, false, true, &ix, NULL, &err), 0);
    assert_true(ix->n_models >= 6);
    byoai_index_free(ix);
    byoai_store_close(s);
    tu_rmtree(dir);
}

/* With the machine's bandwidth known, the choice weighs speed: the largest
 * variant that still generates the target tokens/s, else the fastest. */
static void test_variant_speed(void **state) {
    (void)state;
    assert_true(reg_quant_runnable("Q8_0", NULL) && reg_quant_runnable("Q4_K_M", NULL)); /* every build runs them */
    char v[2048];
    snprintf(v, sizeof v,
             "{\"name\":\"q8_0\",\"quantization\":\"Q8_0\",\"size\":2000000000,\"sha256\":\"%s\",\"url\":\"blobs/a.gguf\"},"
             "{\"name\":\"q4_k_m\",\"quantization\":\"Q4_K_M\",\"size\":1000000000,\"sha256\":\"%s\",\"url\":\"blobs/b.gguf\"}",
             SHA, SHA);
    const char *j = index_json(v);
    byoai_index *ix;
    byoai_error err;
    byoai_index_parse_opts po = {.base_url = "http://reg.test/index.json"};
    if (byoai_index_parse(j, strlen(j), &po, &ix, &err)) fail_msg("%s", err.msg);
    const byoai_index_model *m = byoai_index_find_model(ix, "zeta");
    byoai_machine mc = {.ram_bytes = 32ull << 30};
    size_t idx;
    char why[256];
    /* bandwidth unknown: the largest that fits */
    assert_int_equal(byoai_index_choose_variant(m, &mc, NULL, &idx, why, &err), 0);
    assert_string_equal(m->variants[idx].name, "q8_0");
    /* 40 GB/s: Q8_0 makes 20 tokens/s, above the target */
    mc.read_bw = 40e9;
    assert_int_equal(byoai_index_choose_variant(m, &mc, NULL, &idx, why, &err), 0);
    assert_string_equal(m->variants[idx].name, "q8_0");
    assert_non_null(strstr(why, "about 20 tokens/s"));
    /* 12 GB/s: Q8_0 would make 6, Q4_K_M 12: the smaller one */
    mc.read_bw = 12e9;
    assert_int_equal(byoai_index_choose_variant(m, &mc, NULL, &idx, why, &err), 0);
    assert_string_equal(m->variants[idx].name, "q4_k_m");
    assert_non_null(strstr(why, "about 12 tokens/s"));
    /* 4 GB/s: neither reaches 8: the fastest, and the message says so */
    mc.read_bw = 4e9;
    assert_int_equal(byoai_index_choose_variant(m, &mc, NULL, &idx, why, &err), 0);
    assert_string_equal(m->variants[idx].name, "q4_k_m");
    assert_non_null(strstr(why, "fastest"));
    assert_non_null(strstr(why, "4.0 tokens/s"));
    /* a variant asked for is installed whatever its speed */
    assert_int_equal(byoai_index_choose_variant(m, &mc, "q8_0", &idx, why, &err), 0);
    assert_string_equal(m->variants[idx].name, "q8_0");
    byoai_index_free(ix);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse), cmocka_unit_test(test_rejects),
                                       cmocka_unit_test(test_urls), cmocka_unit_test(test_registry_config),
                                       cmocka_unit_test(test_variant_speed)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
