/*
 * POST /api/tokenize and POST /api/detokenize: a model's tokenizer over
 * HTTP, so that clients can count tokens against the context or inspect
 * how text splits, with the same tokenizer the completions use (a local
 * model's, or a cluster model's vocabulary).
 *
 *   {"model": M, "content": TEXT, "add_special": true, "parse_special": false}
 *     -> {"model", "tokens": [ids], "count", "pieces": [strings] (with "with_pieces": true)}
 *   {"model": M, "tokens": [ids]} -> {"model", "content"}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

#define MAX_DETOKENIZE (1u << 20)

static int get_bool(json_t *o, const char *key, bool *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return srv_err(e, 400, "invalid_request_error", NULL, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* The body's fields other than "model", checked before the model is loaded;
 * then the work on the model's tokenizer, which sends the 200 answer. Both
 * return an HTTP status (0: fine) with *e filled. */
typedef int (*check_fn)(json_t *o, void *args, srv_error *e);
typedef int (*work_fn)(const byoai_tokenizer *tok, const char *model, void *args, byoai_http_req *r, srv_error *e);

/* Parse and check the body, acquire the model (local or the cluster's), work, answer. */
static void serve(srv_server *s, byoai_http_req *r, check_fn check, work_fn work, void *args) {
    size_t len;
    const char *body = byoai_http_body(r, &len);
    srv_error e = {0};
    json_t *o = srv_parse_object(body, len, &e);
    const char *model = o ? json_string_value(json_object_get(o, "model")) : NULL;
    int rc = o ? 0 : e.status;
    if (!rc && (!model || !*model))
        rc = srv_err(&e, 400, "invalid_request_error", NULL, "model",
                     "'model' is required: the name of a model (GET /v1/models)");
    if (!rc) rc = check(o, args, &e);
    srv_loaded *lm = NULL;
    if (!rc) rc = srv_acquire(s, model, &lm, &e);
    if (!rc) {
        rc = work(byoai_model_tokenizer(lm->model), model, args, r, &e);
        srv_release(s, lm);
    }
    if (rc) srv_send_error(r, &e);
    json_decref(o);
}

/* ---- POST /api/tokenize ---------------------------------------------------------------- */

typedef struct {
    json_t *content;
    bool add_special, parse_special, with_pieces;
} tokenize_args;

static int tokenize_check(json_t *o, void *args, srv_error *e) {
    tokenize_args *a = args;
    a->content = json_object_get(o, "content");
    if (!json_is_string(a->content))
        return srv_err(e, 400, "invalid_request_error", NULL, "content", "'content' must be the text to tokenize (a string)");
    int rc = get_bool(o, "add_special", &a->add_special, e);
    if (!rc) rc = get_bool(o, "parse_special", &a->parse_special, e);
    if (!rc) rc = get_bool(o, "with_pieces", &a->with_pieces, e);
    return rc;
}

static int tokenize_work(const byoai_tokenizer *tok, const char *model, void *args, byoai_http_req *r, srv_error *e) {
    tokenize_args *a = args;
    int32_t *ids = NULL;
    size_t n = 0;
    byoai_error err = {0};
    if (byoai_tokenize(tok, json_string_value(a->content), json_string_length(a->content), a->add_special,
                       a->parse_special, &ids, &n, &err))
        return srv_err(e, 400, "invalid_request_error", NULL, "content", "cannot tokenize the content: %s", err.msg);
    json_t *arr = json_array(), *pieces = a->with_pieces ? json_array() : NULL;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, json_integer(ids[i]));
        if (!pieces) continue;
        char buf[256];
        int pl = byoai_token_to_piece(tok, ids[i], buf, sizeof buf, true);
        if (pl < 0 || (size_t)pl > sizeof buf) pl = 0;
        /* a piece may be part of a UTF-8 character: such bytes become U+FFFD */
        char *valid = byoai_utf8_sanitize(buf, (size_t)pl, NULL);
        json_array_append_new(pieces, json_string(valid ? valid : ""));
        free(valid);
    }
    free(ids);
    json_t *j = json_pack("{s:s,s:o,s:I}", "model", model, "tokens", arr, "count", (json_int_t)n);
    if (pieces) json_object_set_new(j, "pieces", pieces);
    srv_send_json(r, 200, j);
    return 0;
}

void srv_api_tokenize(srv_server *s, byoai_http_req *r) {
    tokenize_args a = {.add_special = true};
    serve(s, r, tokenize_check, tokenize_work, &a);
}

/* ---- POST /api/detokenize ------------------------------------------------------------- */

static int detokenize_check(json_t *o, void *args, srv_error *e) {
    json_t *toks = json_object_get(o, "tokens");
    *(json_t **)args = toks;
    if (!json_is_array(toks) || json_array_size(toks) > MAX_DETOKENIZE)
        return srv_err(e, 400, "invalid_request_error", NULL, "tokens", "'tokens' must be an array of at most %u token ids",
                       MAX_DETOKENIZE);
    return 0;
}

static int detokenize_work(const byoai_tokenizer *tok, const char *model, void *args, byoai_http_req *r, srv_error *e) {
    json_t *toks = *(json_t **)args;
    const int32_t n_vocab = byoai_tokenizer_n_vocab(tok);
    size_t n = json_array_size(toks);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(toks, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= n_vocab) {
            free(ids);
            return srv_err(e, 400, "invalid_request_error", NULL, "tokens",
                           "tokens[%zu] is not a token id of model '%s' (0 to %d)", i, model, n_vocab - 1);
        }
        ids[i] = (int32_t)json_integer_value(v);
    }
    char *text = NULL;
    size_t tl = 0;
    byoai_error err = {0};
    int rc = byoai_detokenize(tok, ids, n, false, true, &text, &tl, &err);
    free(ids);
    if (rc) return srv_err(e, 400, "invalid_request_error", NULL, "tokens", "cannot detokenize: %s", err.msg);
    char *valid = byoai_utf8_sanitize(text, tl, NULL);
    free(text);
    srv_send_json(r, 200, json_pack("{s:s,s:s}", "model", model, "content", valid ? valid : ""));
    free(valid);
    return 0;
}

void srv_api_detokenize(srv_server *s, byoai_http_req *r) {
    json_t *toks = NULL;
    serve(s, r, detokenize_check, detokenize_work, &toks);
}
