/* libFuzzer target: the JSON Schema compiler and the grammar matcher on
 * hostile input. The input is a schema and a document separated by the
 * first NUL byte (no NUL: the whole input is the schema, checked against
 * itself). A schema must compile or be refused with a message; a compiled
 * grammar must match any document without crashing, and its shortest
 * completion must be consistent (a complete document needs nothing more;
 * one that needs nothing more is complete), and acceptance must be prefix
 * closed (the longest accepted prefix, found by bisection, is not followed
 * by an accepted byte). The same schema also runs as a tool's parameters
 * in each family's tool-call syntax. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/grammar.h"

static void check(const byoai_grammar *g, const char *doc, size_t n) {
    bool complete = false;
    uint32_t need = 0;
    size_t ok_len = 0;
    /* the longest accepted prefix */
    size_t lo = 0, hi = n;
    if (byoai_grammar_check(g, doc, n, &complete, &need)) {
        if (complete && need != 0) abort();
        if (!complete && need == 0) abort(); /* nothing more needed means it may end */
        ok_len = n;
    } else {
        while (lo < hi) { /* prefixes of accepted prefixes are accepted: binary search is valid */
            size_t mid = (lo + hi + 1) / 2;
            if (byoai_grammar_check(g, doc, mid, NULL, NULL)) lo = mid;
            else hi = mid - 1;
        }
        ok_len = lo;
        if (ok_len < n && byoai_grammar_check(g, doc, ok_len + 1, NULL, NULL)) abort();
    }
    (void)ok_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 16384) return 0;
    const char *s = (const char *)data;
    const char *nul = memchr(s, 0, size);
    size_t schema_len = nul ? (size_t)(nul - s) : size;
    const char *doc = nul ? nul + 1 : s;
    size_t doc_len = nul ? size - schema_len - 1 : size;
    byoai_grammar *g = NULL;
    byoai_error err = {0};
    int rc = byoai_grammar_from_schema(s, schema_len, &g, &err);
    if (rc) {
        if (g || !err.msg[0]) abort();
    } else {
        check(g, doc, doc_len);
        byoai_grammar_free(g);
    }
    /* the same schema as a tool's parameters, in each family's syntax */
    static const byoai_tool_syntax syn[] = {
        {"<tool_call>\n", 11, "\n</tool_call>", "\n", "arguments", false},
        {"", 0, "", NULL, "parameters", false},
        {"[TOOL_CALLS]", 12, "", NULL, "arguments", true},
    };
    byoai_grammar_tool tools[2] = {{"f", s, schema_len}, {"g_2", NULL, 0}};
    for (int k = 0; k < 3; k++) {
        memset(&err, 0, sizeof err);
        rc = byoai_grammar_for_tools(tools, 2, &syn[k], (data[0] & 1) != 0, &g, &err);
        if (rc) {
            if (g || !err.msg[0]) abort();
            continue;
        }
        check(g, doc, doc_len);
        byoai_grammar_free(g);
    }
    return 0;
}
