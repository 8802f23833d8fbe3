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

#include "byoai/cluster.h"
#include "server/server_internal.h"

#define MAX_DETOKENIZE (1u << 20)

static int acquire(srv_server *s, const char *model, srv_loaded **lm, srv_error *e) {
    int rc = srv_models_acquire(s->models, model, lm, e);
    if (rc == 404 && s->cluster && byoai_cluster_has_model(s->cluster, model)) rc = srv_cluster_acquire(s, model, lm, e);
    return rc;
}

static void release(srv_server *s, srv_loaded *lm) {
    if (lm->cluster) srv_cluster_release(lm);
    else srv_models_release(s->models, lm);
}

static int get_bool(json_t *o, const char *key, bool *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return srv_err(e, 400, "invalid_request_error", NULL, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

static const char *get_model(json_t *o, srv_error *e) {
    json_t *v = json_object_get(o, "model");
    if (!json_is_string(v) || !json_string_length(v)) {
        srv_err(e, 400, "invalid_request_error", NULL, "model", "'model' is required: the name of a model (GET /v1/models)");
        return NULL;
    }
    return json_string_value(v);
}

void srv_api_tokenize(srv_server *s, byoai_http_req *r) {
    size_t len;
    const char *body = byoai_http_body(r, &len);
    srv_error e = {0};
    json_t *o = srv_parse_object(body, len, &e);
    const char *model = o ? get_model(o, &e) : NULL;
    json_t *content = o ? json_object_get(o, "content") : NULL;
    bool add_special = true, parse_special = false, with_pieces = false;
    if (model && !json_is_string(content))
        srv_err(&e, 400, "invalid_request_error", NULL, "content", "'content' must be the text to tokenize (a string)");
    if (!e.status) get_bool(o, "add_special", &add_special, &e);
    if (!e.status) get_bool(o, "parse_special", &parse_special, &e);
    if (!e.status) get_bool(o, "with_pieces", &with_pieces, &e);
    srv_loaded *lm = NULL;
    if (!e.status) acquire(s, model, &lm, &e);
    if (e.status) {
        json_decref(o);
        srv_send_error(r, &e);
        return;
    }
    const byoai_tokenizer *tok = byoai_model_tokenizer(lm->model);
    int32_t *ids = NULL;
    size_t n = 0;
    byoai_error err = {0};
    if (byoai_tokenize(tok, json_string_value(content), json_string_length(content), add_special, parse_special, &ids,
                       &n, &err)) {
        srv_err(&e, 400, "invalid_request_error", NULL, "content", "cannot tokenize the content: %s", err.msg);
    } else {
        json_t *arr = json_array(), *pieces = with_pieces ? json_array() : NULL;
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
        json_t *j = json_pack("{s:s,s:o,s:I}", "model", model, "tokens", arr, "count", (json_int_t)n);
        if (pieces) json_object_set_new(j, "pieces", pieces);
        srv_send_json(r, 200, j);
    }
    free(ids);
    release(s, lm);
    json_decref(o);
    if (e.status) srv_send_error(r, &e);
}

void srv_api_detokenize(srv_server *s, byoai_http_req *r) {
    size_t len;
    const char *body = byoai_http_body(r, &len);
    srv_error e = {0};
    json_t *o = srv_parse_object(body, len, &e);
    const char *model = o ? get_model(o, &e) : NULL;
    json_t *toks = o ? json_object_get(o, "tokens") : NULL;
    if (model && (!json_is_array(toks) || json_array_size(toks) > MAX_DETOKENIZE))
        srv_err(&e, 400, "invalid_request_error", NULL, "tokens", "'tokens' must be an array of at most %u token ids",
                MAX_DETOKENIZE);
    srv_loaded *lm = NULL;
    if (!e.status) acquire(s, model, &lm, &e);
    if (e.status) {
        json_decref(o);
        srv_send_error(r, &e);
        return;
    }
    const byoai_tokenizer *tok = byoai_model_tokenizer(lm->model);
    const int32_t n_vocab = byoai_tokenizer_n_vocab(tok);
    size_t n = json_array_size(toks);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; ids && i < n && !e.status; i++) {
        json_t *v = json_array_get(toks, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= n_vocab)
            srv_err(&e, 400, "invalid_request_error", NULL, "tokens",
                    "tokens[%zu] is not a token id of model '%s' (0 to %d)", i, model, n_vocab - 1);
        else ids[i] = (int32_t)json_integer_value(v);
    }
    char *text = NULL;
    size_t tl = 0;
    byoai_error err = {0};
    if (!e.status && byoai_detokenize(tok, ids, n, false, true, &text, &tl, &err))
        srv_err(&e, 400, "invalid_request_error", NULL, "tokens", "cannot detokenize: %s", err.msg);
    if (!e.status) {
        char *valid = byoai_utf8_sanitize(text, tl, NULL);
        srv_send_json(r, 200, json_pack("{s:s,s:s}", "model", model, "content", valid ? valid : ""));
        free(valid);
    }
    free(text);
    free(ids);
    release(s, lm);
    json_decref(o);
    if (e.status) srv_send_error(r, &e);
}
