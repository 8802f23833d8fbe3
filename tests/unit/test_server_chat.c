/* The server as a library (byoai_server_start / shutdown) with a chat
 * model: stories260K rewritten with a ChatML template and two vocabulary
 * entries turned into the <|im_start|> / <|im_end|> control tokens. A chat
 * request must be rendered in ChatML and tokenized with the special tokens
 * as single tokens, which usage.prompt_tokens shows. */
#include "testutil.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/chat.h"
#include "byoai/gguf.h"
#include "byoai/model.h"
#include "byoai/server.h"

#define IM_START 300
#define IM_END 301

static const char *TEMPLATE =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* stories260K with a chat template and two control tokens */
static void make_chat_model(const char *src, const char *dst) {
    byoai_error err;
    byoai_gguf *g;
    if (byoai_gguf_open(src, &g, &err)) fail_msg("%s", err.msg);
    byoai_gguf_writer *w;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const byoai_gguf_kv *kv = &g->kv[i];
        if (!strcmp(kv->key, "tokenizer.ggml.tokens")) {
            uint64_t n = kv->value.v.arr.count;
            char **strs = calloc(n, sizeof *strs);
            for (uint64_t t = 0; t < n; t++) {
                const byoai_gguf_str *s = &kv->value.v.arr.items[t].v.str;
                strs[t] = t == IM_START ? strdup("<|im_start|>") : t == IM_END ? strdup("<|im_end|>")
                                                                              : byoai_strndup(s->ptr, s->len);
            }
            assert_int_equal(byoai_gguf_writer_set_arr_str(w, kv->key, (const char *const *)strs, n), 0);
            for (uint64_t t = 0; t < n; t++) free(strs[t]);
            free(strs);
        } else if (!strcmp(kv->key, "tokenizer.ggml.token_type")) {
            uint64_t n = kv->value.v.arr.count;
            int32_t *types = malloc(n * sizeof *types);
            for (uint64_t t = 0; t < n; t++) types[t] = (int32_t)byoai_gguf_arr_i64(&kv->value, t);
            types[IM_START] = types[IM_END] = BYOAI_TOKEN_CONTROL;
            assert_int_equal(byoai_gguf_writer_set_arr(w, kv->key, BYOAI_GGUF_INT32, types, n), 0);
            free(types);
        } else {
            assert_int_equal(byoai_gguf_writer_set_value(w, kv->key, &kv->value), 0);
        }
    }
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.chat_template", TEMPLATE), 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const byoai_gguf_tensor *t = &g->tensors[i];
        if (byoai_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, NULL, NULL, &err))
            fail_msg("%s", err.msg);
    }
    if (byoai_gguf_writer_write(w, dst, NULL, NULL, &err)) fail_msg("%s", err.msg);
    byoai_gguf_writer_free(w);
    byoai_gguf_close(g);
}

typedef struct {
    char *data;
    size_t len;
} buf;

static size_t on_data(char *p, size_t sz, size_t n, void *u) {
    buf *b = u;
    b->data = realloc(b->data, b->len + sz * n + 1);
    memcpy(b->data + b->len, p, sz * n);
    b->len += sz * n;
    b->data[b->len] = '\0';
    return sz * n;
}

static long post(uint16_t port, const char *path, const char *body, buf *out) {
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void test_chatml_model(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char path[600], db[600];
    snprintf(path, sizeof path, "%s/chatty.gguf", dir);
    snprintf(db, sizeof db, "%s/server.db", dir);
    make_chat_model(tu_shared("models/stories260K.gguf"), path);

    /* what the prompt must be: ChatML, special tokens recognised */
    byoai_model *m;
    byoai_error err;
    byoai_model_params mp = {.vocab_only = true};
    if (byoai_model_load(path, &mp, &m, &err)) fail_msg("%s", err.msg);
    size_t tl;
    const char *t = byoai_model_chat_template(m, &tl);
    assert_int_equal(byoai_chat_detect(t, tl), BYOAI_CHAT_CHATML);
    const byoai_chat_message msgs[] = {{BYOAI_ROLE_SYSTEM, "You tell stories.", 17},
                                       {BYOAI_ROLE_USER, "Once upon a time", 16}};
    char *text;
    assert_int_equal(byoai_chat_render(BYOAI_CHAT_CHATML, msgs, 2, true, NULL, NULL, &text, NULL, &err), 0);
    int32_t *toks;
    size_t n_special, n_plain;
    assert_int_equal(byoai_tokenize(byoai_model_tokenizer(m), text, strlen(text), true, true, &toks, &n_special, &err), 0);
    size_t starts = 0;
    for (size_t i = 0; i < n_special; i++) starts += toks[i] == IM_START;
    assert_int_equal(starts, 3);
    free(toks);
    assert_int_equal(byoai_tokenize(byoai_model_tokenizer(m), text, strlen(text), true, false, &toks, &n_plain, &err), 0);
    assert_true(n_plain > n_special + 6);
    free(toks);
    free(text);
    byoai_model_free(m);

    /* the server renders and tokenizes the same way */
    byoai_server_config c;
    byoai_server_config_defaults(&c);
    c.port = 0;
    snprintf(c.db_path, sizeof c.db_path, "%s", db);
    snprintf(c.home, sizeof c.home, "%s", dir);
    char spec[700];
    snprintf(spec, sizeof spec, "chatty=%s", path);
    assert_int_equal(byoai_server_config_set(&c, "model", spec, &err), 0);
    byoai_server *srv;
    if (byoai_server_start(&c, &srv, &err)) fail_msg("%s", err.msg);
    uint16_t port = byoai_server_port(srv);
    assert_true(port > 0);
    buf b = {0};
    long st = post(port, "/v1/chat/completions",
                   "{\"model\":\"chatty\",\"temperature\":0,\"max_tokens\":3,\"messages\":[{\"role\":\"system\","
                   "\"content\":\"You tell stories.\"},{\"role\":\"user\",\"content\":\"Once upon a time\"}]}", &b);
    if (st != 200) fail_msg("status %ld: %s", st, b.data);
    json_error_t je;
    json_t *j = json_loads(b.data, 0, &je);
    assert_non_null(j);
    json_int_t pt = json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens"));
    assert_int_equal(pt, (json_int_t)n_special);
    json_decref(j);
    free(b.data);
    /* the same through /v1/completions with the special text in the prompt */
    b = (buf){0};
    st = post(port, "/v1/completions", "{\"model\":\"chatty\",\"max_tokens\":1,\"prompt\":\"<|im_start|>user\\nhi\"}", &b);
    assert_int_equal(st, 200);
    assert_non_null(strstr(b.data, "\"prompt_tokens\":"));
    free(b.data);
    byoai_server_shutdown(srv, 1.0);
    byoai_server_free(srv);
    tu_rmtree(dir);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_chatml_model)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
