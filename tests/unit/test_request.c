/* OpenAI request parsing and validation (src/server/request.c), and the
 * stop-string scanner the scheduler uses. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

static const srv_limits LIM = {.max_messages = 8, .max_tokens = 100};

static int chat(const char *body, srv_request *r, srv_error *e) {
    memset(e, 0, sizeof *e);
    return srv_parse_chat(body, strlen(body), &LIM, r, e);
}

/* a body that must fail with 400, naming param, with msg in the message */
static void bad_chat(const char *body, const char *param, const char *msg) {
    srv_request r;
    srv_error e;
    int rc = chat(body, &r, &e);
    srv_request_free(&r);
    if (rc != 400) fail_msg("%s: status %d, want 400", body, rc);
    if (param && strcmp(e.param, param)) fail_msg("%s: param '%s', want '%s' (%s)", body, e.param, param, e.message);
    if (!strstr(e.message, msg)) fail_msg("%s: message '%s' lacks '%s'", body, e.message, msg);
    assert_string_equal(e.type, "invalid_request_error");
}

static void test_chat_ok(void **state) {
    (void)state;
    srv_request r;
    srv_error e;
    const char *body = "{\"model\":\"m1\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                       "{\"role\":\"assistant\",\"content\":null},{\"role\":\"developer\",\"content\":\"x\"}],"
                       "\"temperature\":0.5,\"top_p\":0.9,\"max_tokens\":10,\"stop\":[\"END\",\"\"],\"seed\":-1,"
                       "\"logprobs\":true,\"top_logprobs\":3,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                       "\"response_format\":{\"type\":\"json_object\"},\"unknown_field\":{\"ignored\":1},\"n\":1,"
                       "\"presence_penalty\":0,\"tools\":[]}";
    assert_int_equal(chat(body, &r, &e), 0);
    assert_string_equal(r.model, "m1");
    assert_int_equal(r.n_messages, 4);
    assert_int_equal(r.messages[0].role, BYOAI_ROLE_SYSTEM);
    assert_int_equal(r.messages[1].content_len, 2);
    assert_memory_equal(r.messages[1].content, "ab", 2);
    assert_int_equal(r.messages[2].content_len, 0);
    assert_int_equal(r.messages[3].role, BYOAI_ROLE_SYSTEM);
    assert_true(r.s.temperature == 0.5f && r.s.top_p == 0.9f);
    assert_int_equal(r.s.max_tokens, 10);
    assert_int_equal(r.s.n_stop, 1); /* the empty stop string is dropped */
    assert_string_equal(r.s.stop[0], "END");
    assert_true(r.s.has_seed && r.s.seed == UINT64_MAX);
    assert_true(r.s.logprobs && r.s.top_logprobs == 3 && r.s.stream && r.s.include_usage && r.s.json_mode);
    srv_request_free(&r);
    /* defaults */
    assert_int_equal(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":\"x\"}", &r, &e), 0);
    assert_true(r.s.temperature == 1.0f && r.s.top_p == 1.0f && r.s.max_tokens == -1 && !r.s.stream && !r.s.json_mode);
    assert_int_equal(r.s.n_stop, 1);
    srv_request_free(&r);
    /* tools, a named tool_choice, a history with calls and results, json_schema elsewhere */
    const char *tb = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":\"assistant\","
                     "\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get\","
                     "\"arguments\":\"{\\\"q\\\":1}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"3\"}],"
                     "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"description\":\"d\",\"parameters\":"
                     "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"integer\"}}}}}],\"tool_choice\":{\"type\":"
                     "\"function\",\"function\":{\"name\":\"get\"}},\"parallel_tool_calls\":false}";
    if (chat(tb, &r, &e)) fail_msg("%s", e.message);
    assert_int_equal(r.n_tools, 1);
    assert_int_equal(r.tool_choice, SRV_TOOLS_NAMED);
    assert_string_equal(r.tool_name, "get");
    assert_false(r.parallel_tool_calls);
    assert_non_null(strstr(r.tool_text[0], "{\"type\": \"function\", \"function\": {"));
    assert_int_equal(r.messages[2].role, BYOAI_ROLE_TOOL);
    assert_non_null(r.msg_tools);
    assert_int_equal(r.msg_tools[1].n_tool_calls, 1);
    assert_string_equal(r.msg_tools[1].tool_calls[0].arguments, "{\"q\":1}");
    assert_string_equal(r.msg_tools[2].tool_call_id, "c1");
    srv_request_free(&r);
    const char *sb = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
                     "\"json_schema\",\"json_schema\":{\"name\":\"n\",\"strict\":true,\"schema\":{\"type\":\"object\","
                     "\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"],\"additionalProperties\":false}}}}";
    if (chat(sb, &r, &e)) fail_msg("%s", e.message);
    assert_non_null(r.grammar);
    assert_true(byoai_grammar_check(r.grammar, "{\"a\":1}", 7, NULL, NULL));
    assert_false(byoai_grammar_check(r.grammar, "{\"b\"", 4, NULL, NULL));
    srv_request_free(&r);
    /* top_p 0 means greedy; max_completion_tokens is the newer name */
    assert_int_equal(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\"}],\"top_p\":0,"
                          "\"max_completion_tokens\":7}", &r, &e), 0);
    assert_true(r.s.temperature == 0 && r.s.max_tokens == 7);
    srv_request_free(&r);
}

static void test_chat_errors(void **state) {
    (void)state;
    bad_chat("", NULL, "empty");
    bad_chat("{\"model\":", NULL, "not valid JSON");
    /* a key given twice is refused, naming it (not: the last one wins) */
    bad_chat("{\"model\":\"a\",\"model\":\"b\",\"messages\":[]}", NULL, "the key \"model\" more than once");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"content\":\"y\"}]}", NULL,
             "the key \"content\" more than once");
    bad_chat("[]", NULL, "must be a JSON object");
    bad_chat("\"x\"", NULL, "must be a JSON object");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}", NULL, "UTF-8");
    bad_chat("{\"messages\":[]}", "model", "'model' is required");
    bad_chat("{\"model\":\"\",\"messages\":[]}", "model", "1 to 256 bytes");
    bad_chat("{\"model\":[1],\"messages\":[]}", "model", "must be a string, not an array");
    bad_chat("{\"model\":\"m\"}", "messages", "'messages' is required");
    bad_chat("{\"model\":\"m\",\"messages\":{}}", "messages", "must be an array");
    bad_chat("{\"model\":\"m\",\"messages\":[]}", "messages", "at least one");
    bad_chat("{\"model\":\"m\",\"messages\":[1,2,3,4,5,6,7,8,9]}", "messages", "at most 8");
    bad_chat("{\"model\":\"m\",\"messages\":[7]}", "messages[0]", "must be an object");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", "messages[0].role", "must be a string");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", "messages[0].role", "expected");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\"}]}", "messages[0].content", "is required");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content", "is required");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":true}]}", "messages[0].content", "a string or an array");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages[0].content", "not supported");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages[0].content", ".text' must be a string");
#define M "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
    bad_chat(M "\"temperature\":\"hot\"}", "temperature", "must be a number, not a string");
    bad_chat(M "\"temperature\":-0.1}", "temperature", "between 0 and 2");
    bad_chat(M "\"top_p\":1.5}", "top_p", "between 0 and 1");
    bad_chat(M "\"top_k\":1.5}", "top_k", "must be an integer");
    bad_chat(M "\"max_tokens\":-1}", "max_tokens", "at least 1 (got -1)");
    bad_chat(M "\"max_tokens\":0}", "max_tokens", "at least 1");
    bad_chat(M "\"max_tokens\":1.5}", "max_tokens", "must be an integer");
    bad_chat(M "\"max_tokens\":101}", "max_tokens", "at most 100 tokens");
    bad_chat(M "\"max_completion_tokens\":\"9\"}", "max_completion_tokens", "must be an integer");
    bad_chat(M "\"n\":2}", "n", "must be 1");
    bad_chat(M "\"seed\":1.5}", "seed", "must be an integer");
    bad_chat(M "\"stop\":5}", "stop", "a string or an array");
    bad_chat(M "\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop", "at most 4");
    bad_chat(M "\"stream\":1}", "stream", "true or false");
    bad_chat(M "\"stream_options\":[]}", "stream_options", "must be an object");
    bad_chat(M "\"logprobs\":1}", "logprobs", "true or false");
    bad_chat(M "\"top_logprobs\":3}", "top_logprobs", "needs 'logprobs'");
    bad_chat(M "\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs", "between 0 and 20");
    bad_chat(M "\"response_format\":\"json\"}", "response_format", "must be an object");
    bad_chat(M "\"response_format\":{\"type\":\"xml\"}}", "response_format.type", "not supported");
    bad_chat(M "\"response_format\":{\"type\":\"json_schema\"}}", "response_format.json_schema", "must be an object");
    bad_chat(M "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}}",
             "response_format.json_schema.schema", "is required");
    bad_chat(M "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"object\","
             "\"properties\":{\"a\":{\"type\":\"string\",\"format\":\"email\",\"pattern\":\"@\"}}}}}}",
             "response_format.json_schema.schema", "at #/properties/a: the JSON Schema keyword 'pattern' is not supported");
    bad_chat(M "\"tools\":[{\"type\":\"function\"}]}", "tools[0]", "'tools[0].function' must be an object");
    bad_chat(M "\"tools\":[{\"type\":\"retrieval\"}]}", "tools[0]", "must be \"function\"");
    bad_chat(M "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]}", "tools[0]", "letters, digits");
    bad_chat(M "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":"
             "\"object\",\"properties\":{\"x\":{\"not\":{}}}}}}]}", "tools[0]", "'not' is not supported");
    bad_chat(M "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},{\"type\":\"function\","
             "\"function\":{\"name\":\"f\"}}]}", "tools[1]", "two tools are named 'f'");
    bad_chat(M "\"tool_choice\":\"required\"}", "tool_choice", "no 'tools'");
    bad_chat(M "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"maybe\"}",
             "tool_choice", "'maybe'");
    bad_chat(M "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"response_format\":{\"type\":"
             "\"json_object\"}}", "response_format", "cannot be combined");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\"}]}]}",
             "messages[0].tool_calls[0]", "must be");
    bad_chat(M "\"presence_penalty\":3}", "presence_penalty", "between -2 and 2");
#undef M
    char stop[400];
    snprintf(stop, sizeof stop, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":\"%0300d\"}", 0);
    bad_chat(stop, "stop", "at most 256 bytes");
    /* a NUL escape in a string is refused by the parser */
    bad_chat("{\"model\":\"a\\u0000b\",\"messages\":[]}", NULL, "not valid JSON");
}

static void test_completion(void **state) {
    (void)state;
    srv_request r;
    srv_error e = {0};
    const char *b = "{\"model\":\"m\",\"prompt\":\"Once\",\"logprobs\":2,\"echo\":true}";
    assert_int_equal(srv_parse_completion(b, strlen(b), &LIM, &r, &e), 0);
    assert_int_equal(r.prompt_len, 4);
    assert_int_equal(r.s.max_tokens, 16); /* OpenAI's default for completions */
    assert_true(r.s.logprobs && r.s.top_logprobs == 2 && r.s.echo);
    srv_request_free(&r);
    b = "{\"model\":\"m\",\"prompt\":[1,2,3]}";
    assert_int_equal(srv_parse_completion(b, strlen(b), &LIM, &r, &e), 0);
    assert_int_equal(r.n_prompt_tokens, 3);
    assert_int_equal(r.prompt_tokens[2], 3);
    srv_request_free(&r);
    b = "{\"model\":\"m\",\"prompt\":[\"one\"]}";
    assert_int_equal(srv_parse_completion(b, strlen(b), &LIM, &r, &e), 0);
    assert_int_equal(r.prompt_len, 3);
    srv_request_free(&r);
    const char *bad[][2] = {
        {"{\"model\":\"m\"}", "'prompt' is required"},
        {"{\"model\":\"m\",\"prompt\":5}", "a string or an array of token ids"},
        {"{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", "one prompt per request"},
        {"{\"model\":\"m\",\"prompt\":[1,-2]}", "token ids"},
        {"{\"model\":\"m\",\"prompt\":[1,\"x\"]}", "token ids"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":6}", "between 0 and 5"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"y\"}", "not supported"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        int rc = srv_parse_completion(bad[i][0], strlen(bad[i][0]), &LIM, &r, &e);
        srv_request_free(&r);
        if (rc != 400 || !strstr(e.message, bad[i][1])) fail_msg("%s: %d %s", bad[i][0], rc, e.message);
    }
}

static void test_embeddings(void **state) {
    (void)state;
    srv_request r;
    srv_error e = {0};
    const char *b = "{\"model\":\"m\",\"input\":\"hello\"}";
    assert_int_equal(srv_parse_embeddings(b, strlen(b), &r, &e), 0);
    assert_int_equal(r.n_inputs, 1);
    assert_int_equal(r.input_len[0], 5);
    srv_request_free(&r);
    b = "{\"model\":\"m\",\"input\":[\"a\",\"bb\"],\"encoding_format\":\"base64\"}";
    assert_int_equal(srv_parse_embeddings(b, strlen(b), &r, &e), 0);
    assert_true(r.n_inputs == 2 && r.base64 && r.input_len[1] == 2);
    srv_request_free(&r);
    b = "{\"model\":\"m\",\"input\":[[1,2],[3]]}";
    assert_int_equal(srv_parse_embeddings(b, strlen(b), &r, &e), 0);
    assert_true(r.n_inputs == 2 && r.input_ntok[0] == 2 && r.input_tokens[1][0] == 3);
    srv_request_free(&r);
    b = "{\"model\":\"m\",\"input\":[5,6,7]}";
    assert_int_equal(srv_parse_embeddings(b, strlen(b), &r, &e), 0);
    assert_true(r.n_inputs == 1 && r.input_ntok[0] == 3);
    srv_request_free(&r);
    const char *bad[][2] = {
        {"{\"model\":\"m\"}", "'input' is required"},
        {"{\"model\":\"m\",\"input\":[]}", "must not be empty"},
        {"{\"model\":\"m\",\"input\":\"\"}", "empty string"},
        {"{\"model\":\"m\",\"input\":[\"a\",7]}", "input[1]"},
        {"{\"model\":\"m\",\"input\":[[1],[-1]]}", "token ids"},
        {"{\"model\":\"m\",\"input\":{}}", "a string or an array"},
        {"{\"model\":\"m\",\"input\":\"a\",\"encoding_format\":\"hex\"}", "\"float\" or \"base64\""},
        {"{\"model\":\"m\",\"input\":\"a\",\"dimensions\":8}", "not supported"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        int rc = srv_parse_embeddings(bad[i][0], strlen(bad[i][0]), &r, &e);
        srv_request_free(&r);
        if (rc != 400 || !strstr(e.message, bad[i][1])) fail_msg("%s: %d %s", bad[i][0], rc, e.message);
    }
    /* too many inputs */
    char big[4000] = "{\"model\":\"m\",\"input\":[";
    for (int i = 0; i < 300; i++) strcat(big, i ? ",\"a\"" : "\"a\"");
    strcat(big, "]}");
    assert_int_equal(srv_parse_embeddings(big, strlen(big), &r, &e), 400);
    assert_non_null(strstr(e.message, "at most 256"));
    srv_request_free(&r);
}

static void test_error_json(void **state) {
    (void)state;
    srv_error e;
    srv_err(&e, 404, "invalid_request_error", "model_not_found", "model", "no model %s", "x");
    json_t *j = srv_error_json(&e);
    char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(s, "{\"error\":{\"code\":\"model_not_found\",\"message\":\"no model x\",\"param\":\"model\","
                           "\"type\":\"invalid_request_error\"}}");
    free(s);
    json_decref(j);
    srv_err(&e, 500, "server_error", NULL, NULL, "boom");
    j = srv_error_json(&e);
    s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(s, "{\"error\":{\"code\":null,\"message\":\"boom\",\"param\":null,\"type\":\"server_error\"}}");
    free(s);
    json_decref(j);
}

static void test_stop_scan(void **state) {
    (void)state;
    char *stops[] = {"END", "\n\nUser:"};
    bool found;
    size_t at;
    /* nothing held back without a partial match */
    assert_int_equal(srv_stop_scan("hello", 5, stops, 2, false, &found, &at), 5);
    assert_false(found);
    /* a tail that may start a stop string is held back */
    assert_int_equal(srv_stop_scan("hello E", 7, stops, 2, false, &found, &at), 6);
    assert_int_equal(srv_stop_scan("hello EN", 8, stops, 2, false, &found, &at), 6);
    assert_int_equal(srv_stop_scan("ok\n\nUse", 7, stops, 2, false, &found, &at), 2);
    /* found: release up to it */
    assert_int_equal(srv_stop_scan("hi END there", 12, stops, 2, false, &found, &at), 3);
    assert_true(found && at == 3);
    /* the earliest of several */
    assert_int_equal(srv_stop_scan("a\n\nUser: END", 12, stops, 2, false, &found, &at), 1);
    /* final: everything */
    assert_int_equal(srv_stop_scan("hello EN", 8, stops, 2, true, &found, &at), 8);
    /* an incomplete UTF-8 character is held back too */
    assert_int_equal(srv_stop_scan("caf\xc3", 4, NULL, 0, false, &found, &at), 3);
    assert_int_equal(srv_stop_scan("\xe2\x82", 2, NULL, 0, false, &found, &at), 0);
    assert_int_equal(srv_stop_scan("", 0, stops, 2, false, &found, &at), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_ok),    cmocka_unit_test(test_chat_errors), cmocka_unit_test(test_completion),
        cmocka_unit_test(test_embeddings), cmocka_unit_test(test_error_json),  cmocka_unit_test(test_stop_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
