/* Chat templates: detection of each family from real template snippets, and
 * renderings checked against the families' documented formats. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "byoai/chat.h"

#define MSG(r, s) {BYOAI_ROLE_##r, s, sizeof(s) - 1}

static const byoai_chat_message CONV[] = {
    MSG(SYSTEM, "You are terse."),
    MSG(USER, "Hi"),
    MSG(ASSISTANT, "Hello."),
    MSG(USER, "2+2?"),
};
#define NCONV (sizeof CONV / sizeof CONV[0])

static void check(byoai_chat_family f, const byoai_chat_message *m, size_t n, bool gen, const char *want) {
    char *out;
    size_t len;
    byoai_error err;
    if (byoai_chat_render(f, m, n, gen, "<s>", "</s>", &out, &len, &err)) fail_msg("%s", err.msg);
    if (strcmp(out, want)) fail_msg("%s rendered:\n[%s]\nwant:\n[%s]", byoai_chat_family_name(f), out, want);
    assert_int_equal(len, strlen(want));
    free(out);
}

static void test_detect(void **state) {
    (void)state;
    struct { const char *tmpl; byoai_chat_family f; } cases[] = {
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}", BYOAI_CHAT_CHATML},
        {"{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}", BYOAI_CHAT_LLAMA3},
        {"{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] | trim + '\\n<</SYS>>\\n\\n' %}{% endif %}{{ bos_token + '[INST] ' + content | trim + ' [/INST]' }}", BYOAI_CHAT_LLAMA2},
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}", BYOAI_CHAT_MISTRAL},
        {"{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}", BYOAI_CHAT_PHI3},
        {"{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}", BYOAI_CHAT_GEMMA},
        {"{% for message in messages %}\\n{% if message['role'] == 'user' %}\\n{{ '<|user|>\\n' + message['content'] + eos_token }}{% endif %}{% endfor %}", BYOAI_CHAT_ZEPHYR},
        {"{{ messages | join }}", BYOAI_CHAT_FALLBACK},
        {"", BYOAI_CHAT_FALLBACK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        byoai_chat_family f = byoai_chat_detect(cases[i].tmpl, strlen(cases[i].tmpl));
        if (f != cases[i].f) fail_msg("case %zu: detected %s, want %s", i, byoai_chat_family_name(f),
                                      byoai_chat_family_name(cases[i].f));
    }
    assert_int_equal(byoai_chat_detect(NULL, 0), BYOAI_CHAT_FALLBACK);
}

static void test_chatml(void **state) {
    (void)state;
    check(BYOAI_CHAT_CHATML, CONV, NCONV, true,
          "<|im_start|>system\nYou are terse.<|im_end|>\n"
          "<|im_start|>user\nHi<|im_end|>\n"
          "<|im_start|>assistant\nHello.<|im_end|>\n"
          "<|im_start|>user\n2+2?<|im_end|>\n"
          "<|im_start|>assistant\n");
    check(BYOAI_CHAT_CHATML, CONV + 1, 1, false, "<|im_start|>user\nHi<|im_end|>\n");
}

static void test_llama2(void **state) {
    (void)state;
    check(BYOAI_CHAT_LLAMA2, CONV, NCONV, true,
          "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] 2+2? [/INST]");
    check(BYOAI_CHAT_LLAMA2, CONV + 1, 1, true, "[INST] Hi [/INST]");
    const byoai_chat_message padded[] = {MSG(USER, "  Hi \n")};
    check(BYOAI_CHAT_LLAMA2, padded, 1, true, "[INST] Hi [/INST]");
}

static void test_llama3(void **state) {
    (void)state;
    check(BYOAI_CHAT_LLAMA3, CONV, NCONV, true,
          "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_mistral(void **state) {
    (void)state;
    check(BYOAI_CHAT_MISTRAL, CONV, NCONV, true, "[INST] You are terse.\n\nHi [/INST] Hello.</s>[INST] 2+2? [/INST]");
    check(BYOAI_CHAT_MISTRAL, CONV + 1, 1, true, "[INST] Hi [/INST]");
}

static void test_phi3(void **state) {
    (void)state;
    check(BYOAI_CHAT_PHI3, CONV, NCONV, true,
          "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n"
          "<|user|>\n2+2?<|end|>\n<|assistant|>\n");
}

static void test_gemma(void **state) {
    (void)state;
    check(BYOAI_CHAT_GEMMA, CONV, NCONV, true,
          "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
          "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n");
    check(BYOAI_CHAT_GEMMA, CONV + 1, 1, true, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
}

static void test_zephyr(void **state) {
    (void)state;
    check(BYOAI_CHAT_ZEPHYR, CONV, NCONV, true,
          "<|system|>\nYou are terse.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n<|user|>\n2+2?</s>\n"
          "<|assistant|>\n");
}

static void test_fallback(void **state) {
    (void)state;
    check(BYOAI_CHAT_FALLBACK, CONV, NCONV, true, "You are terse.\n\nHi\n\nHello.\n\n2+2?");
    const byoai_chat_message one[] = {MSG(USER, "Once upon a time")};
    check(BYOAI_CHAT_FALLBACK, one, 1, true, "Once upon a time");
}

static void test_system_only_and_errors(void **state) {
    (void)state;
    const byoai_chat_message sys[] = {MSG(SYSTEM, "Be nice.")};
    check(BYOAI_CHAT_LLAMA2, sys, 1, true, "[INST] <<SYS>>\nBe nice.\n<</SYS>>\n\n [/INST]");
    check(BYOAI_CHAT_GEMMA, sys, 1, true, "<start_of_turn>user\nBe nice.<end_of_turn>\n<start_of_turn>model\n");
    check(BYOAI_CHAT_MISTRAL, sys, 1, true, "[INST] Be nice. [/INST]");
    char *out;
    byoai_error err;
    assert_int_equal(byoai_chat_render(BYOAI_CHAT_CHATML, CONV, 0, true, NULL, NULL, &out, NULL, &err), BYOAI_EINVAL);
    byoai_chat_message bad = {(byoai_chat_role)7, "x", 1};
    assert_int_equal(byoai_chat_render(BYOAI_CHAT_CHATML, &bad, 1, true, NULL, NULL, &out, NULL, &err), BYOAI_EINVAL);
    /* an empty message renders (content length 0, NULL pointer allowed) */
    byoai_chat_message empty = {BYOAI_ROLE_USER, NULL, 0};
    assert_int_equal(byoai_chat_render(BYOAI_CHAT_FALLBACK, &empty, 1, true, NULL, NULL, &out, NULL, &err), 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_names(void **state) {
    (void)state;
    for (int i = 0; i < BYOAI_CHAT_FAMILY_COUNT; i++) {
        byoai_chat_family f;
        assert_int_equal(byoai_chat_family_parse(byoai_chat_family_name((byoai_chat_family)i), &f, NULL), 0);
        assert_int_equal(f, i);
    }
    byoai_chat_family f;
    byoai_error err;
    assert_int_equal(byoai_chat_family_parse("jinja", &f, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "chatml"));
    byoai_chat_role r;
    assert_true(byoai_chat_role_parse("developer", &r) && r == BYOAI_ROLE_SYSTEM);
    assert_true(byoai_chat_role_parse("tool", &r) && r == BYOAI_ROLE_TOOL);
    assert_false(byoai_chat_role_parse("function", &r));
    assert_string_equal(byoai_chat_stop_text(BYOAI_CHAT_CHATML), "<|im_end|>");
    assert_null(byoai_chat_stop_text(BYOAI_CHAT_FALLBACK));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),   cmocka_unit_test(test_chatml),  cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_llama3),   cmocka_unit_test(test_mistral), cmocka_unit_test(test_phi3),
        cmocka_unit_test(test_gemma),    cmocka_unit_test(test_zephyr),  cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_system_only_and_errors), cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
