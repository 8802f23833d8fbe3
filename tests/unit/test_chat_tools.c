/* Tools in chat formats: the tool prompts, calls and results of each
 * family rendered as its reference template does, and tool calls read back
 * from fixed model outputs (the formats of Qwen 2.5/3 and Hermes, Llama
 * 3.1/3.2 and Mistral v3), including outputs that are not calls. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/chat.h"

static const char *TOOL =
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather now\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}";

static char *render(byoai_chat_family f, const byoai_chat_message *m, const byoai_chat_message_tools *x, size_t n,
                    bool with_tools) {
    char *out;
    size_t len;
    byoai_error err;
    const char *tools[] = {TOOL};
    if (byoai_chat_render_tools(f, m, x, n, tools, with_tools ? 1 : 0, true, "<s>", "</s>", &out, &len, &err))
        fail_msg("render: %s", err.msg);
    assert_int_equal(strlen(out), len);
    return out;
}

static const byoai_chat_tool_call CALL = {"call_1", "get_weather", "{\"city\":\"Paris\"}"};

static void test_render_chatml(void **state) {
    (void)state;
    byoai_chat_message m[] = {
        {BYOAI_ROLE_SYSTEM, "Be brief.", 9},
        {BYOAI_ROLE_USER, "Weather in Paris?", 17},
        {BYOAI_ROLE_ASSISTANT, "", 0},
        {BYOAI_ROLE_TOOL, "{\"temp\": 21}", 12},
    };
    byoai_chat_message_tools x[4] = {{0}};
    x[2] = (byoai_chat_message_tools){&CALL, 1, NULL, NULL};
    x[3] = (byoai_chat_message_tools){NULL, 0, "call_1", "get_weather"};
    char *out = render(BYOAI_CHAT_CHATML, m, x, 4, true);
    const char *want =
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user "
        "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n";
    if (strncmp(out, want, strlen(want))) fail_msg("got: %s", out);
    assert_non_null(strstr(out, TOOL));
    assert_non_null(strstr(out, "\n</tools>\n\nFor each function call, return a json object with function name and "
                                "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
                                "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"));
    const char *tail = "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": "
                       "\"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>"
                       "user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
    if (!strstr(out, tail)) fail_msg("got: %s", out);
    free(out);
    /* no system message: the tools open one; no tools: nothing added */
    out = render(BYOAI_CHAT_CHATML, m + 1, NULL, 1, true);
    assert_true(!strncmp(out, "<|im_start|>system\n# Tools\n\n", 28));
    free(out);
    out = render(BYOAI_CHAT_CHATML, m + 1, NULL, 1, false);
    assert_string_equal(out, "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n");
    free(out);
}

static void test_render_llama3(void **state) {
    (void)state;
    byoai_chat_message m[] = {
        {BYOAI_ROLE_USER, "Weather in Paris?", 17},
        {BYOAI_ROLE_ASSISTANT, "", 0},
        {BYOAI_ROLE_TOOL, "{\"temp\": 21}", 12},
    };
    byoai_chat_message_tools x[3] = {{0}};
    x[1] = (byoai_chat_message_tools){&CALL, 1, NULL, NULL};
    char *out = render(BYOAI_CHAT_LLAMA3, m, x, 3, true);
    const char *want1 = "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with "
                        "a JSON for a function call";
    if (strncmp(out, want1, strlen(want1))) fail_msg("got: %s", out);
    assert_non_null(strstr(out, TOOL));
    const char *want2 = "Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": "
                        "\"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|><|start_header_id|>ipython"
                        "<|end_header_id|>\n\n{\"temp\": 21}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    if (!strstr(out, want2)) fail_msg("got: %s", out);
    free(out);
}

static void test_render_mistral(void **state) {
    (void)state;
    byoai_chat_tool_call call = {"abcDEF123", "get_weather", "{\"city\":\"Paris\"}"};
    byoai_chat_message m[] = {
        {BYOAI_ROLE_USER, "Weather in Paris?", 17},
        {BYOAI_ROLE_ASSISTANT, NULL, 0},
        {BYOAI_ROLE_TOOL, "{\"temp\": 21}", 12},
        {BYOAI_ROLE_USER, "And Oslo?", 9},
    };
    byoai_chat_message_tools x[4] = {{0}};
    x[1] = (byoai_chat_message_tools){&call, 1, NULL, NULL};
    x[2] = (byoai_chat_message_tools){NULL, 0, "abcDEF123", NULL};
    m[1].content = "";
    char *out = render(BYOAI_CHAT_MISTRAL, m, x, 4, true);
    char want[2048];
    snprintf(want, sizeof want,
             "[INST] Weather in Paris? [/INST][TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": "
             "\"Paris\"}, \"id\": \"abcDEF123\"}]</s>[TOOL_RESULTS] {\"content\": {\"temp\": 21}, \"call_id\": "
             "\"abcDEF123\"}[/TOOL_RESULTS][AVAILABLE_TOOLS] [%s][/AVAILABLE_TOOLS][INST] And Oslo? [/INST]", TOOL);
    if (strcmp(out, want)) fail_msg("got:  %s\nwant: %s", out, want);
    free(out);
}

static void test_render_other_families(void **state) {
    (void)state;
    byoai_chat_message m[] = {{BYOAI_ROLE_USER, "hi", 2}, {BYOAI_ROLE_TOOL, "42", 2}};
    for (int f = 0; f < BYOAI_CHAT_FAMILY_COUNT; f++) {
        char *out = render((byoai_chat_family)f, m, NULL, 2, true);
        assert_non_null(strstr(out, "42"));
        if (f != BYOAI_CHAT_LLAMA3 && f != BYOAI_CHAT_MISTRAL) {
            assert_non_null(strstr(out, "<tool_response>\n42\n</tool_response>"));
            assert_non_null(strstr(out, "<tools>"));
        }
        free(out);
    }
}

/* found by fuzz_tool_calls: invalid UTF-8 in call ids and results must not fail the rendering */
static void test_render_bad_utf8(void **state) {
    (void)state;
    byoai_chat_tool_call call = {"a\x90" "b", "f", "\xff not json"};
    byoai_chat_message m[] = {{BYOAI_ROLE_USER, "x", 1}, {BYOAI_ROLE_ASSISTANT, "", 0}, {BYOAI_ROLE_TOOL, "\xc3", 1}};
    byoai_chat_message_tools x[3] = {{0}, {&call, 1, NULL, NULL}, {NULL, 0, "\x80", NULL}};
    for (int f = 0; f < BYOAI_CHAT_FAMILY_COUNT; f++) free(render((byoai_chat_family)f, m, x, 3, true));
}

static void expect_calls(byoai_chat_family f, const char *text, const char *content, size_t n, const char *name,
                         const char *args) {
    byoai_chat_parsed p;
    byoai_error err;
    assert_int_equal(byoai_chat_parse_tool_calls(f, text, strlen(text), &p, &err), 0);
    if (p.n_calls != n) fail_msg("%s: %zu calls, want %zu (content '%s')", text, p.n_calls, n, p.content);
    if (strcmp(p.content, content)) fail_msg("%s: content '%s', want '%s'", text, p.content, content);
    if (n) {
        assert_string_equal(p.calls[0].name, name);
        assert_string_equal(p.calls[0].arguments, args);
    }
    byoai_chat_parsed_free(&p);
}

static void test_parse(void **state) {
    (void)state;
    /* Qwen 2.5 / Hermes */
    expect_calls(BYOAI_CHAT_CHATML, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                 "", 1, "get_weather", "{\"city\":\"Paris\"}");
    expect_calls(BYOAI_CHAT_CHATML, "Let me look.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n"
                 "<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>",
                 "Let me look.", 2, "a", "{}");
    expect_calls(BYOAI_CHAT_CHATML, "<tool_call>\n{\"name\": \"a\", \"arguments\": \"{\\\"k\\\": 1}\"}\n</tool_call>", "", 1,
                 "a", "{\"k\":1}");
    expect_calls(BYOAI_CHAT_CHATML, "No tools needed: 2 + 2 = 4.", "No tools needed: 2 + 2 = 4.", 0, NULL, NULL);
    expect_calls(BYOAI_CHAT_CHATML, "<tool_call>\n{\"name\": \"a\", \"argum", "<tool_call>\n{\"name\": \"a\", \"argum", 0,
                 NULL, NULL);
    expect_calls(BYOAI_CHAT_FALLBACK, "<tool_call>\n{\"name\":\"f\",\"arguments\":{\"q\":\"x\"}}\n</tool_call>", "", 1, "f",
                 "{\"q\":\"x\"}");
    /* Llama 3.1 */
    expect_calls(BYOAI_CHAT_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", 1,
                 "get_weather", "{\"city\":\"Paris\"}");
    expect_calls(BYOAI_CHAT_LLAMA3, "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}", "", 1, "f", "{}");
    expect_calls(BYOAI_CHAT_LLAMA3, "The answer is {\"name\": \"f\"}", "The answer is {\"name\": \"f\"}", 0, NULL, NULL);
    expect_calls(BYOAI_CHAT_LLAMA3, "{\"a\": 1}", "{\"a\": 1}", 0, NULL, NULL);
    /* Mistral v3 */
    expect_calls(BYOAI_CHAT_MISTRAL, "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, "
                 "\"id\": \"abcDEF123\"}]", "", 1, "get_weather", "{\"city\":\"Paris\"}");
    expect_calls(BYOAI_CHAT_MISTRAL, "[TOOL_CALLS] [{\"arguments\": {}}]", "[TOOL_CALLS] [{\"arguments\": {}}]", 0, NULL,
                 NULL);
}

static void test_syntax(void **state) {
    (void)state;
    assert_string_equal(byoai_chat_tool_syntax(BYOAI_CHAT_CHATML)->prefix, "<tool_call>\n");
    assert_string_equal(byoai_chat_tool_syntax(BYOAI_CHAT_LLAMA3)->args_key, "parameters");
    assert_true(byoai_chat_tool_syntax(BYOAI_CHAT_MISTRAL)->array);
    byoai_chat_role r;
    assert_true(byoai_chat_role_parse("tool", &r));
    assert_int_equal(r, BYOAI_ROLE_TOOL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_chatml),         cmocka_unit_test(test_render_llama3),
        cmocka_unit_test(test_render_mistral),        cmocka_unit_test(test_render_other_families),
        cmocka_unit_test(test_parse),                 cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_render_bad_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
