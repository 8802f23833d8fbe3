/*
 * The grammar filter's cost per sampled token over a real 50k-token
 * vocabulary (GPT-2's, from ../shared/vocab): one byoai_json_filter_apply
 * in typical states, the median over REPS runs, in microseconds.
 *
 *   bench_grammar            (BYOAI_SHARED: the test data, default ../shared)
 *
 * States: JSON mode at the start, inside a free string value, at a key of a
 * schema object, inside a bounded number, and tools "auto" in free text.
 * Prints JSON. Run by hand; never part of the tests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "byoai/grammar.h"
#include "byoai/gguf.h"
#include "byoai/tokenizer.h"

#define REPS 21

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* a fresh filter fed the tokens of prefix, then apply timed in that state */
static double time_apply(const byoai_tokenizer *tok, const byoai_grammar *g, const char *prefix, bool *allowed,
                         int32_t nv, size_t *n_allowed) {
    byoai_json_filter *f;
    byoai_error err;
    if (byoai_json_filter_new_grammar(tok, nv, g, &f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    int32_t *ids;
    size_t n;
    if (byoai_tokenize(tok, prefix, strlen(prefix), false, false, &ids, &n, &err)) exit(1);
    for (size_t i = 0; i < n; i++)
        if (!byoai_json_filter_accept(f, ids[i])) {
            fprintf(stderr, "prefix '%s' refused at token %zu\n", prefix, i);
            exit(1);
        }
    free(ids);
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        for (int32_t i = 0; i < nv; i++) allowed[i] = true;
        byoai_json_filter_set_budget(f, 500);
        double t0 = now_us();
        byoai_json_filter_apply(f, NULL, allowed, nv);
        t[r] = now_us() - t0;
    }
    *n_allowed = 0;
    for (int32_t i = 0; i < nv; i++) *n_allowed += allowed[i];
    qsort(t, REPS, sizeof *t, cmp);
    byoai_json_filter_free(f);
    return t[REPS / 2];
}

int main(void) {
    const char *base = getenv("BYOAI_SHARED") ? getenv("BYOAI_SHARED") : "../shared";
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", base);
    byoai_gguf *gg;
    byoai_tokenizer *tok;
    byoai_error err;
    if (byoai_gguf_open(path, &gg, &err) || byoai_tokenizer_load(gg, &tok, &err)) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        return 1;
    }
    int32_t nv = byoai_tokenizer_n_vocab(tok);
    bool *allowed = malloc((size_t)nv);
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\","
                         "\"minimum\":0,\"maximum\":150},\"email\":{\"type\":\"string\"}},\"required\":[\"name\",\"age\"]}";
    byoai_grammar *obj, *sch, *tools;
    byoai_grammar_json_object(&obj, &err);
    byoai_grammar_from_schema(schema, strlen(schema), &sch, &err);
    byoai_grammar_tool t = {"get_weather", schema, strlen(schema)};
    byoai_tool_syntax hermes = {"<tool_call>\n", 11, "\n</tool_call>", "\n", "arguments", false};
    byoai_grammar_for_tools(&t, 1, &hermes, true, &tools, &err);
    struct {
        const char *name;
        const byoai_grammar *g;
        const char *prefix;
    } cases[] = {
        {"json_object_start", obj, ""},
        {"json_object_in_string", obj, "{\"story\": \"Once upon a"},
        {"schema_key", sch, "{\"name\": \"Ann\", "},
        {"schema_bounded_number", sch, "{\"name\": \"Ann\", \"age\": 1"},
        {"tools_auto_text", tools, "Let me think about the weather"},
    };
    printf("{\"vocab\": %d, \"reps\": %d, \"apply_us\": {", nv, REPS);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n_allowed;
        double us = time_apply(tok, cases[i].g, cases[i].prefix, allowed, nv, &n_allowed);
        printf("%s\"%s\": {\"median\": %.1f, \"allowed\": %zu}", i ? ", " : "", cases[i].name, us, n_allowed);
    }
    printf("}}\n");
    byoai_grammar_free(obj);
    byoai_grammar_free(sch);
    byoai_grammar_free(tools);
    free(allowed);
    byoai_tokenizer_free(tok);
    byoai_gguf_close(gg);
    return 0;
}
