/* JSON Schema grammars: what the compiler refuses (and that the message
 * names the keyword), which documents the matcher accepts and refuses,
 * exact shortest completions, tool-call programs, and random sampling over
 * a real vocabulary under a token budget: every output must be complete
 * and valid under an independent checker written here (jansson + the
 * schema, for the keywords the tests use). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/grammar.h"
#include "byoai/model.h"
#include "byoai/sampler.h"

static byoai_grammar *compile_ok(const char *schema) {
    byoai_grammar *g;
    byoai_error err = {0};
    if (byoai_grammar_from_schema(schema, strlen(schema), &g, &err)) fail_msg("schema refused: %s: %s", schema, err.msg);
    return g;
}

static void test_refused(void **state) {
    (void)state;
    static const struct {
        const char *schema, *want;
    } cases[] = {
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", "'pattern'"},
        {"{\"type\":\"object\",\"patternProperties\":{}}", "'patternProperties'"},
        {"{\"not\":{}}", "'not'"},
        {"{\"if\":{},\"then\":{}}", "'if'"},
        {"{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}", "allOf"},
        {"{\"type\":\"array\",\"items\":[{},{}]}", "tuples"},
        {"{\"$ref\":\"http://x/y.json\"}", "only local references"},
        {"false", "allows no value"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "'b' is not in 'properties'"},
        {"{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"string\",\"maxLength\":2}]}", "strings"},
        {"{\"anyOf\":[{\"type\":\"object\"},{\"type\":\"object\",\"properties\":{\"a\":{}}}]}", "discriminator"},
        {"{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", "circular"},
        {"{\"type\":\"object\",\"properties\":{\"me\":{\"$ref\":\"#\"}},\"required\":[\"me\"]}", "no finite value"},
        {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "no integer"},
        {"{\"type\":\"strange\"}", "unknown type 'strange'"},
        {"{\"type\":\"array\",\"uniqueItems\":true}", "uniqueItems"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"multipleOf\":2}}}", "#/properties/a"},
        {"[1,2]", "must be an object or a boolean"},
        {"{\"type\":", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        byoai_grammar *g = NULL;
        byoai_error err = {0};
        int rc = byoai_grammar_from_schema(cases[i].schema, strlen(cases[i].schema), &g, &err);
        if (rc == 0) fail_msg("accepted: %s", cases[i].schema);
        assert_null(g);
        if (!strstr(err.msg, cases[i].want)) fail_msg("%s: message '%s' lacks '%s'", cases[i].schema, err.msg, cases[i].want);
    }
}

static bool complete(const byoai_grammar *g, const char *s) {
    bool done = false;
    return byoai_grammar_check(g, s, strlen(s), &done, NULL) && done;
}

static void test_match(void **state) {
    (void)state;
    static const struct {
        const char *schema;
        const char *ok[6];
        const char *bad[8];
    } cases[] = {
        {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"}},"
         "\"required\":[\"name\"],\"additionalProperties\":false}",
         {"{\"name\":\"x\"}", "{\"age\":3,\"name\":\"\"}", "{ \"name\" : \"a\\nb\" , \"age\" : -12 }", NULL},
         {"{}", "{\"age\":3}", "{\"name\":\"x\",\"name\":\"y\"}", "{\"name\":1}", "{\"name\":\"x\",\"other\":1}",
          "{\"name\":\"x\",\"age\":1.5}", " {\"name\":\"x\"}", NULL}},
        {"{\"type\":\"array\",\"items\":{\"enum\":[\"red\",\"green\",1,null]},\"minItems\":1,\"maxItems\":2}",
         {"[\"red\"]", "[1,null]", "[ \"green\" ]", NULL},
         {"[]", "[\"red\",1,1]", "[\"blue\"]", "[12]", "[\"re\"]", "[true]", NULL}},
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", {"\"ab\"", "\"\\u00e9\\n\"", "\"h\xc3\xa9l\"", NULL},
         {"\"a\"", "\"abcd\"", "\"\\ud800\"", NULL}},
        {"{\"type\":\"integer\",\"minimum\":-5,\"maximum\":120}", {"0", "-5", "120", "7", "-0", NULL},
         {"121", "-6", "1200", "1.0", "01", "1e2", NULL}},
        {"{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1}", {"0.5", "1", "0.000001", "1.0", NULL},
         {"0", "1.01", "2", "-0.5", "0.0000001", NULL}},
        {"{\"type\":[\"string\",\"null\"]}", {"null", "\"x\"", NULL}, {"1", "nul", "{}", NULL}},
        {"{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"a\"},\"x\":{\"type\":\"integer\"}},"
         "\"required\":[\"kind\",\"x\"]},{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"b\"},"
         "\"y\":{\"type\":\"boolean\"}},\"required\":[\"kind\"]}]}",
         {"{\"kind\":\"a\",\"x\":1}", "{\"kind\":\"b\"}", "{\"kind\":\"b\",\"y\":true}", NULL},
         {"{\"x\":1,\"kind\":\"a\"}", "{\"kind\":\"a\"}", "{\"kind\":\"a\",\"y\":true}", "{\"kind\":\"c\"}", NULL}},
        {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"kids\":{\"type\":"
         "\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},\"$ref\":\"#/$defs/node\"}",
         {"{\"v\":1}", "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]},{\"v\":3}]}", NULL},
         {"{\"v\":1,\"kids\":[{}]}", "{\"kids\":[]}", NULL}},
        {"{\"type\":\"object\"}", {"{}", "{\"any\":[1,{\"x\":null}],\"b\":\"c\"}", NULL}, {"[]", "\"s\"", NULL}},
        {"{\"type\":\"boolean\"}", {"true", "false", NULL}, {"tru", "null", "1", NULL}},
        {"{}", {"1", "\"x\"", "[1,{}]", "null", NULL}, {"", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        byoai_grammar *g = compile_ok(cases[i].schema);
        for (size_t k = 0; cases[i].ok[k]; k++)
            if (!complete(g, cases[i].ok[k])) fail_msg("schema %zu refused %s", i, cases[i].ok[k]);
        for (size_t k = 0; cases[i].bad[k]; k++)
            if (complete(g, cases[i].bad[k])) fail_msg("schema %zu accepted %s", i, cases[i].bad[k]);
        byoai_grammar_free(g);
    }
}

static void test_min_remaining(void **state) {
    (void)state;
    static const struct {
        const char *schema, *prefix;
        uint32_t need;
    } cases[] = {
        {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}},"
         "\"required\":[\"name\",\"n\"]}", "", 17}, /* {"name":"","n":0} */
        {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}},"
         "\"required\":[\"name\",\"n\"]}", "{\"n", 14},
        {"{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":3},\"minItems\":2}", "[", 12},
        {"{\"type\":\"integer\",\"minimum\":100}", "", 3},
        {"{\"type\":\"integer\",\"minimum\":100}", "1", 2},
        {"{\"type\":\"number\",\"minimum\":0.25,\"maximum\":0.5}", "0", 2}, /* 0.3 */
        {"{\"enum\":[\"alpha\",\"beta\"]}", "\"al", 4},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\",\"properties\":{\"b\":{\"type\":\"null\"}},"
         "\"required\":[\"b\"]}},\"required\":[\"a\"]}", "{\"a\":{", 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        byoai_grammar *g = compile_ok(cases[i].schema);
        uint32_t need = 0;
        assert_true(byoai_grammar_check(g, cases[i].prefix, strlen(cases[i].prefix), NULL, &need));
        if (need != cases[i].need)
            fail_msg("case %zu '%s': min remaining %u, want %u", i, cases[i].prefix, need, cases[i].need);
        byoai_grammar_free(g);
    }
}

static void test_tools(void **state) {
    (void)state;
    byoai_grammar_tool tools[2] = {
        {"get_weather", "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}", 0},
        {"add", "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}},"
                "\"required\":[\"a\",\"b\"],\"additionalProperties\":false}", 0},
    };
    for (int i = 0; i < 2; i++) tools[i].parameters_len = strlen(tools[i].parameters);
    byoai_tool_syntax hermes = {"<tool_call>\n", 11, "\n</tool_call>", "\n", "arguments", false};
    byoai_grammar *g;
    byoai_error err = {0};
    assert_int_equal(byoai_grammar_for_tools(tools, 2, &hermes, false, &g, &err), 0);
    assert_true(complete(g, "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call>"));
    assert_true(complete(g, "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call>\n<tool_call>\n"
                            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
    assert_false(complete(g, "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1}}\n</tool_call>"));
    assert_false(complete(g, "<tool_call>\n{\"name\":\"sub\",\"arguments\":{}}\n</tool_call>"));
    assert_false(complete(g, "Sure! <tool_call>"));
    assert_false(complete(g, "<tool_call>\n{\"arguments\":{\"a\":1,\"b\":2},\"name\":\"add\"}\n</tool_call>"));
    byoai_grammar_free(g);
    /* auto: text, or text then calls; once a call starts it must be valid */
    assert_int_equal(byoai_grammar_for_tools(tools, 2, &hermes, true, &g, &err), 0);
    assert_true(complete(g, "It is sunny."));
    assert_true(complete(g, "<tool_ca"));
    assert_true(complete(g, "Let me check.\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"x\"}}\n</tool_call>"));
    assert_false(byoai_grammar_check(g, "<tool_call>\n{\"name\":\"nope\"", 28, NULL, NULL));
    assert_false(complete(g, "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call> and more"));
    byoai_grammar_free(g);
    /* llama 3: a bare object, only at the start */
    byoai_tool_syntax llama3 = {"", 0, "", NULL, "parameters", false};
    assert_int_equal(byoai_grammar_for_tools(tools, 2, &llama3, true, &g, &err), 0);
    assert_true(complete(g, "{\"name\":\"add\",\"parameters\":{\"a\":1,\"b\":2}}"));
    assert_false(complete(g, "{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}"));
    assert_true(complete(g, "Hello {not a call"));
    byoai_grammar_free(g);
    /* mistral: one array after the marker */
    byoai_tool_syntax mistral = {"[TOOL_CALLS]", 12, "", NULL, "arguments", true};
    assert_int_equal(byoai_grammar_for_tools(tools, 2, &mistral, false, &g, &err), 0);
    assert_true(complete(g, "[TOOL_CALLS][{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}},{\"name\":\"get_weather\","
                            "\"arguments\":{\"city\":\"\"}}]"));
    assert_false(complete(g, "[TOOL_CALLS][]"));
    byoai_grammar_free(g);
    /* a bad parameter schema names its tool */
    byoai_grammar_tool bad = {"broken", "{\"type\":\"object\",\"properties\":{\"a\":{\"pattern\":\"x\"}}}", 0};
    bad.parameters_len = strlen(bad.parameters);
    assert_int_not_equal(byoai_grammar_for_tools(&bad, 1, &hermes, false, &g, &err), 0);
    assert_non_null(strstr(err.msg, "'broken'"));
    assert_non_null(strstr(err.msg, "'pattern'"));
}

/* ---- an independent checker for the schemas of the sampling test -------------------- */
static bool valid(json_t *v, json_t *s, json_t *root);

static bool valid(json_t *v, json_t *s, json_t *root) {
    json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        const char *r = json_string_value(ref);
        json_t *t = !strcmp(r, "#") ? root : json_object_get(json_object_get(root, "$defs"), r + 8);
        return valid(v, t, root);
    }
    json_t *any = json_object_get(s, "anyOf");
    if (any) {
        size_t i;
        json_t *a;
        json_array_foreach(any, i, a) if (valid(v, a, root)) return true;
        return false;
    }
    json_t *en = json_object_get(s, "enum");
    if (en) {
        size_t i;
        json_t *a;
        json_array_foreach(en, i, a) if (json_equal(a, v)) return true;
        return false;
    }
    json_t *k = json_object_get(s, "const");
    if (k) return json_equal(k, v);
    json_t *type = json_object_get(s, "type");
    if (json_is_array(type)) {
        size_t i;
        json_t *t;
        json_array_foreach(type, i, t) {
            json_t *s2 = json_deep_copy(s);
            json_object_set(s2, "type", t);
            bool ok = valid(v, s2, root);
            json_decref(s2);
            if (ok) return true;
        }
        return false;
    }
    const char *t = json_string_value(type);
    if (!t) return true;
    if (!strcmp(t, "null")) return json_is_null(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "string")) {
        if (!json_is_string(v)) return false;
        size_t n = 0;
        const char *p = json_string_value(v);
        for (size_t i = 0; i < json_string_length(v); i++) n += ((unsigned char)p[i] & 0xC0) != 0x80;
        json_t *lo = json_object_get(s, "minLength"), *hi = json_object_get(s, "maxLength");
        return (!lo || n >= (size_t)json_integer_value(lo)) && (!hi || n <= (size_t)json_integer_value(hi));
    }
    if (!strcmp(t, "integer") || !strcmp(t, "number")) {
        if (!json_is_number(v)) return false;
        double x = json_number_value(v);
        if (!strcmp(t, "integer") && !json_is_integer(v)) return false;
        json_t *b;
        if ((b = json_object_get(s, "minimum")) && x < json_number_value(b)) return false;
        if ((b = json_object_get(s, "maximum")) && x > json_number_value(b)) return false;
        if ((b = json_object_get(s, "exclusiveMinimum")) && x <= json_number_value(b)) return false;
        if ((b = json_object_get(s, "exclusiveMaximum")) && x >= json_number_value(b)) return false;
        return true;
    }
    if (!strcmp(t, "array")) {
        if (!json_is_array(v)) return false;
        json_t *lo = json_object_get(s, "minItems"), *hi = json_object_get(s, "maxItems");
        if (lo && json_array_size(v) < (size_t)json_integer_value(lo)) return false;
        if (hi && json_array_size(v) > (size_t)json_integer_value(hi)) return false;
        json_t *items = json_object_get(s, "items");
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (items && !valid(x, items, root)) return false;
        return true;
    }
    if (!strcmp(t, "object")) {
        if (!json_is_object(v)) return false;
        json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
        size_t i;
        json_t *x;
        json_array_foreach(req, i, x) if (!json_object_get(v, json_string_value(x))) return false;
        const char *key;
        json_object_foreach(v, key, x) {
            json_t *ps = props ? json_object_get(props, key) : NULL;
            if (ps) {
                if (!valid(x, ps, root)) return false;
            } else if (json_is_false(json_object_get(s, "additionalProperties"))) return false;
        }
        return true;
    }
    return false;
}

/* ten schemas, random logits, several budgets: complete and valid every time */
static void test_sampling(void **state) {
    (void)state;
    static const char *const schemas[] = {
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},\"age\":{\"type\":"
        "\"integer\",\"minimum\":0,\"maximum\":150}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
        "{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":1,\"maxItems\":4}",
        "{\"type\":\"object\",\"properties\":{\"color\":{\"enum\":[\"red\",\"green\",\"blue\"]},\"ok\":{\"type\":"
        "\"boolean\"}},\"required\":[\"color\",\"ok\"],\"additionalProperties\":false}",
        "{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":1,"
        "\"maxLength\":5},\"maxItems\":3}},\"required\":[\"tags\"],\"additionalProperties\":false}",
        "{\"type\":\"object\",\"properties\":{\"note\":{\"type\":[\"string\",\"null\"]},\"score\":{\"type\":\"number\","
        "\"minimum\":0,\"maximum\":1}},\"required\":[\"note\",\"score\"],\"additionalProperties\":false}",
        "{\"$defs\":{\"p\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"},\"y\":{\"type\":\"integer\"}},"
        "\"required\":[\"x\",\"y\"],\"additionalProperties\":false}},\"type\":\"object\",\"properties\":{\"from\":{\"$ref\":"
        "\"#/$defs/p\"},\"to\":{\"$ref\":\"#/$defs/p\"}},\"required\":[\"from\",\"to\"],\"additionalProperties\":false}",
        "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"circle\"},\"r\":{\"type\":\"number\"}},"
        "\"required\":[\"kind\",\"r\"],\"additionalProperties\":false},{\"type\":\"object\",\"properties\":{\"kind\":"
        "{\"const\":\"square\"},\"side\":{\"type\":\"integer\"}},\"required\":[\"kind\",\"side\"],"
        "\"additionalProperties\":false}]}",
        "{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"next\":{\"anyOf\":[{\"$ref\":\"#\"},"
        "{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"],\"additionalProperties\":false}",
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\",\"properties\":{\"b\":{\"type\":\"object\","
        "\"properties\":{\"c\":{\"const\":42}},\"required\":[\"c\"],\"additionalProperties\":false}},\"required\":[\"b\"],"
        "\"additionalProperties\":false}},\"required\":[\"a\"],\"additionalProperties\":false}",
        "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"exclusiveMinimum\":-3,\"exclusiveMaximum\":3},"
        "\"extra\":{\"type\":\"string\"}},\"required\":[\"id\"],\"additionalProperties\":{\"type\":\"boolean\"}}",
    };
    byoai_model *m;
    byoai_error err;
    byoai_model_params mp = {.vocab_only = true};
    if (byoai_model_load(tu_shared("models/stories260K.gguf"), &mp, &m, &err)) fail_msg("%s", err.msg);
    const byoai_tokenizer *tok = byoai_model_tokenizer(m);
    int32_t nv = byoai_tokenizer_n_vocab(tok);
    float *logits = malloc((size_t)nv * sizeof(float));
    uint64_t rng = 7;
    for (size_t si = 0; si < sizeof schemas / sizeof schemas[0]; si++) {
        byoai_grammar *g = compile_ok(schemas[si]);
        json_t *schema = json_loads(schemas[si], 0, NULL);
        uint32_t shortest = 0;
        byoai_grammar_check(g, "", 0, NULL, &shortest);
        for (int run = 0; run < 12; run++) {
            byoai_json_filter *f;
            if (byoai_json_filter_new_grammar(tok, nv, g, &f, &err)) fail_msg("%s", err.msg);
            byoai_sampler_params sp = byoai_sampler_defaults();
            sp.temp = 1.5f;
            sp.top_k = 0;
            sp.min_p = 0;
            sp.top_p = 1;
            sp.seed = (uint64_t)run;
            byoai_sampler *s;
            assert_int_equal(byoai_sampler_new(&sp, nv, &s, &err), 0);
            byoai_sampler_set_filter(s, byoai_json_filter_apply, f);
            uint32_t budget = shortest + (uint32_t)(run * 6);
            char out[8192];
            size_t len = 0;
            for (uint32_t i = 0; i < budget; i++) {
                for (int32_t v = 0; v < nv; v++) logits[v] = tu_rand_float(&rng) * 4;
                byoai_json_filter_set_budget(f, budget - i);
                int32_t t = byoai_sampler_sample(s, logits);
                if (t < 0) fail_msg("schema %zu run %d: nothing allowed after '%.*s'", si, run, (int)len, out);
                assert_true(byoai_json_filter_accept(f, t));
                if (byoai_token_is_eog(tok, t)) break;
                char piece[64];
                int n = byoai_token_to_piece(tok, t, piece, sizeof piece, false);
                assert_true(n > 0 && len + (size_t)n < sizeof out);
                memcpy(out + len, piece, (size_t)n);
                len += (size_t)n;
            }
            out[len] = '\0';
            if (!byoai_json_filter_complete(f)) fail_msg("schema %zu run %d (budget %u): incomplete: %s", si, run, budget, out);
            json_error_t je;
            json_t *j = json_loads(out, JSON_DECODE_ANY, &je);
            if (!j) fail_msg("schema %zu run %d: not JSON: %s (%s)", si, run, out, je.text);
            if (!valid(j, schema, schema)) fail_msg("schema %zu run %d: invalid: %s", si, run, out);
            json_decref(j);
            byoai_sampler_free(s);
            byoai_json_filter_free(f);
        }
        json_decref(schema);
        byoai_grammar_free(g);
    }
    free(logits);
    byoai_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused), cmocka_unit_test(test_match),    cmocka_unit_test(test_min_remaining),
        cmocka_unit_test(test_tools),   cmocka_unit_test(test_sampling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
