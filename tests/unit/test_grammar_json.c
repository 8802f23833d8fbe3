/* JSON-constrained sampling: the incremental validator against valid and
 * invalid documents, its minimum-completion counts, and the sampler filter
 * driven by random logits over a real vocabulary: every run must end in a
 * complete object that a JSON parser (jansson) accepts. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/grammar.h"
#include "byoai/model.h"
#include "byoai/sampler.h"

static bool accepts(const char *s) {
    byoai_json_state st;
    byoai_json_init(&st);
    return byoai_json_feed(&st, s, strlen(s));
}

static bool complete(const char *s) {
    byoai_json_state st;
    byoai_json_init(&st);
    return byoai_json_feed(&st, s, strlen(s)) && byoai_json_complete(&st);
}

static void test_valid(void **state) {
    (void)state;
    const char *ok[] = {
        "{}", "{ }", "{\"a\":1}", "{\"a\": [1, 2.5, -3e+10, 0, -0.0, 1E5]}", "{\"k\":\"v\\n\\\"\\u00e9\\/\"}",
        "{\"nested\":{\"x\":[{},[],[[]],{\"y\":null}]},\"t\":true,\"f\":false}", "{\"utf8\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"}",
        "{\n  \"a\": 1\n}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (!complete(ok[i])) fail_msg("rejected valid JSON: %s", ok[i]);
        json_error_t je;
        json_t *j = json_loads(ok[i], 0, &je);
        if (!j) fail_msg("test data is not JSON: %s", ok[i]);
        json_decref(j);
    }
    /* prefixes are accepted but not complete */
    assert_true(accepts("{\"a\": [1, 2"));
    assert_false(complete("{\"a\": [1, 2"));
    assert_true(accepts(""));
    assert_true(accepts("{\"a\":tr"));
}

static void test_invalid(void **state) {
    (void)state;
    const char *bad[] = {
        "[]", "1", "\"x\"", "{a:1}", "{\"a\" 1}", "{\"a\":1,}", "{,}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}",
        "{\"a\":-}", "{\"a\":1e}", "{\"a\":tru}x", "{\"a\":nul1}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12G4\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xff\"}", "{} {}", "{}x", "{\"a\":[1}", "{\"a\":{]}", "{\"a\":1234567890123456789}",
        "{\"a\":1e100}", " {}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (complete(bad[i])) fail_msg("accepted invalid JSON: %s", bad[i]);
    /* bounded white space and depth */
    char ws[80] = "{";
    memset(ws + 1, ' ', 40);
    ws[41] = '\0';
    assert_false(accepts(ws));
    char deep[200] = "{\"a\":";
    for (int i = 0; i < 70; i++) strcat(deep, "[");
    assert_false(accepts(deep));
}

static void test_min_remaining(void **state) {
    (void)state;
    struct { const char *prefix; uint32_t need; } cases[] = {
        {"", 2}, {"{", 1}, {"{\"", 4}, {"{\"ab", 4}, {"{\"a\"", 3}, {"{\"a\":", 2}, {"{\"a\":1", 1}, {"{\"a\":-", 2},
        {"{\"a\":[", 2}, {"{\"a\":[1,", 3}, {"{\"a\":\"x", 2}, {"{\"a\":\"\\", 3}, {"{\"a\":\"\\u1", 5},
        {"{\"a\":t", 4}, {"{\"a\":{}", 1}, {"{\"a\":1,", 5}, {"{}", 0}, {"{\"a\":\"\xe2", 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        byoai_json_state st;
        byoai_json_init(&st);
        assert_true(byoai_json_feed(&st, cases[i].prefix, strlen(cases[i].prefix)));
        uint32_t got = byoai_json_min_remaining(&st);
        if (got != cases[i].need) fail_msg("'%s': min remaining %u, want %u", cases[i].prefix, got, cases[i].need);
    }
}

/* Random logits through the filter with a budget: the result is always a
 * complete object that jansson parses, and it fits the budget. */
static void test_filter_random(void **state) {
    (void)state;
    byoai_model *m;
    byoai_error err;
    byoai_model_params mp = {.vocab_only = true};
    if (byoai_model_load(tu_shared("models/stories260K.gguf"), &mp, &m, &err)) fail_msg("%s", err.msg);
    const byoai_tokenizer *tok = byoai_model_tokenizer(m);
    int32_t nv = byoai_tokenizer_n_vocab(tok);
    float *logits = malloc((size_t)nv * sizeof(float));
    uint64_t rng = 42;
    for (int run = 0; run < 60; run++) {
        byoai_json_filter *f;
        if (byoai_json_filter_new(tok, nv, &f, &err)) fail_msg("%s", err.msg);
        byoai_sampler_params sp = byoai_sampler_defaults();
        sp.temp = 1.5f;
        sp.top_k = 0;
        sp.min_p = 0;
        sp.top_p = 1;
        sp.seed = (uint64_t)run;
        byoai_sampler *s;
        assert_int_equal(byoai_sampler_new(&sp, nv, &s, &err), 0);
        byoai_sampler_set_filter(s, byoai_json_filter_apply, f);
        uint32_t budget = 5 + (uint32_t)(run * 3);
        char out[4096];
        size_t len = 0;
        bool ended = false;
        for (uint32_t i = 0; i < budget; i++) {
            for (int32_t v = 0; v < nv; v++) logits[v] = tu_rand_float(&rng) * 4;
            byoai_json_filter_set_budget(f, budget - i);
            int32_t t = byoai_sampler_sample(s, logits);
            assert_true(t >= 0);
            assert_true(byoai_json_filter_accept(f, t));
            if (byoai_token_is_eog(tok, t)) {
                ended = true;
                break;
            }
            char piece[64];
            int n = byoai_token_to_piece(tok, t, piece, sizeof piece, false);
            assert_true(n > 0 && len + (size_t)n < sizeof out);
            memcpy(out + len, piece, (size_t)n);
            len += (size_t)n;
        }
        out[len] = '\0';
        (void)ended;
        assert_true(byoai_json_filter_complete(f));
        json_error_t je;
        json_t *j = json_loads(out, 0, &je);
        if (!j || !json_is_object(j)) fail_msg("run %d: not a JSON object: %s (%s)", run, out, je.text);
        json_decref(j);
        byoai_sampler_free(s);
        byoai_json_filter_free(f);
    }
    free(logits);
    byoai_model_free(m);
}

/* Without a budget, EOS is refused until the object is complete, and after
 * completion nothing but EOS is allowed. */
static void test_filter_eos(void **state) {
    (void)state;
    byoai_model *m;
    byoai_error err;
    byoai_model_params mp = {.vocab_only = true};
    if (byoai_model_load(tu_shared("models/stories260K.gguf"), &mp, &m, &err)) fail_msg("%s", err.msg);
    const byoai_tokenizer *tok = byoai_model_tokenizer(m);
    int32_t nv = byoai_tokenizer_n_vocab(tok), eos = 2;
    byoai_json_filter *f;
    assert_int_equal(byoai_json_filter_new(tok, nv, &f, &err), 0);
    bool *allowed = malloc((size_t)nv);
    for (int32_t i = 0; i < nv; i++) allowed[i] = true;
    byoai_json_filter_apply(f, NULL, allowed, nv);
    assert_false(allowed[eos]);
    int32_t lb = byoai_token_lookup(tok, "<0x7B>", 6), rb = byoai_token_lookup(tok, "<0x7D>", 6);
    assert_true(lb >= 0 && rb >= 0);
    assert_true(allowed[lb]);
    assert_false(allowed[rb]);
    assert_false(byoai_json_filter_accept(f, rb));
    assert_true(byoai_json_filter_accept(f, lb));
    assert_true(byoai_json_filter_accept(f, rb));
    for (int32_t i = 0; i < nv; i++) allowed[i] = true;
    byoai_json_filter_apply(f, NULL, allowed, nv);
    for (int32_t i = 0; i < nv; i++) assert_int_equal(allowed[i], i == eos);
    free(allowed);
    byoai_json_filter_free(f);
    byoai_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),         cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_min_remaining), cmocka_unit_test(test_filter_random),
        cmocka_unit_test(test_filter_eos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
