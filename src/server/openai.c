/*
 * The OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions,
 * /v1/embeddings and /v1/models.
 *
 * A generation request is validated (request.c), its prompt built (chat
 * template) and tokenized, then submitted to its model's scheduler as a
 * job. A non-streaming handler waits for the job, checking every 100 ms
 * whether the client went away (then it cancels the job). A streaming one
 * answers at once with a server-sent-event stream whose read callback,
 * on the connection's thread, turns the job's pieces into chunks as they
 * come; when the client disconnects the stream's done() cancels the job,
 * which frees its sequence slot at the scheduler's next step.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/cluster.h"
#include "server/server_internal.h"

enum { KIND_CHAT, KIND_COMPLETION };
#define EMBED_WINDOW 16 /* embedding inputs queued at once per request */

void srv_random_id(const char *prefix, char *out, size_t cap) {
    unsigned char rnd[12];
    randombytes_buf(rnd, sizeof rnd);
    char hex[25];
    sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
    snprintf(out, cap, "%s%s", prefix, hex);
}

void srv_send_json(byoai_http_req *r, int status, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        const char *m = "{\"error\":{\"message\":\"cannot encode the response\",\"type\":\"server_error\",\"param\":null,"
                        "\"code\":null}}";
        byoai_http_send(r, 500, "application/json", m, strlen(m));
        return;
    }
    byoai_http_send(r, status, "application/json", s, strlen(s));
    free(s);
}

void srv_send_error(byoai_http_req *r, const srv_error *e) {
    srv_send_json(r, e->status ? e->status : 500, srv_error_json(e));
}

/* text as a JSON string, invalid UTF-8 replaced (token pieces can split characters) */
static json_t *jstr(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    size_t w;
    char *o = byoai_utf8_sanitize(s, n, &w);
    j = o ? json_stringn(o, w) : NULL;
    free(o);
    return j ? j : json_string("");
}

/* ---- building the job ---------------------------------------------------------------- */
typedef struct gen {
    srv_server *srv;
    srv_loaded *lm;
    srv_job *job;
    int kind;
    char id[64];
    char model[257];
    json_int_t created;
    double t0;
    /* streaming */
    size_t seen;
    char *buf;
    size_t len, off, cap;
    bool started, ended, final_sent;
    double last_send;
    char *echo;
    size_t echo_len;
    size_t truncated; /* oldest messages dropped to fit the context ("truncation": "auto") */
} gen;

static void gen_free(gen *g) {
    if (!g) return;
    if (g->job) srv_job_unref(g->job);
    if (g->lm) {
        srv_release(g->srv, g->lm);
    }
    free(g->buf);
    free(g->echo);
    free(g);
}

static int tokenize(srv_loaded *lm, const char *text, size_t len, int32_t **toks, size_t *n, srv_error *e) {
    byoai_error err;
    if (byoai_tokenize(byoai_model_tokenizer(lm->model), text, len, true, true, toks, n, &err))
        return srv_err(e, 400, "invalid_request_error", NULL, NULL, "cannot tokenize the prompt: %s", err.msg);
    return 0;
}

static void job_params(srv_server *s, srv_job *j, const srv_request *rq) {
    j->s = rq->s;
    for (size_t i = 0; i < rq->s.n_stop; i++) j->s.stop[i] = strdup(rq->s.stop[i]);
    if (!j->s.has_seed) randombytes_buf(&j->s.seed, sizeof j->s.seed);
    j->max_new = rq->s.max_tokens > 0 && rq->s.max_tokens < s->cfg.max_tokens ? (uint32_t)rq->s.max_tokens
                                                                               : s->cfg.max_tokens;
    j->deadline = byoai_time_now() + s->cfg.request_timeout;
}

/* A bundle's sampling parameters, for those the request does not set. */
static void apply_bundle_params(const srv_loaded *lm, srv_request *rq) {
    if (!lm->params_json[0]) return;
    json_t *p = json_loads(lm->params_json, 0, NULL);
    if (!json_is_object(p)) {
        json_decref(p);
        return;
    }
    json_t *v;
    /* bundle parameters use byoai run's names (temp, n_predict); OpenAI's are accepted too */
#define NUM(req_key, key, alt, field, lo, hi)                                                                          \
    if (!json_object_get(rq->root, req_key) &&                                                                       \
        (json_is_number(v = json_object_get(p, key)) || json_is_number(v = json_object_get(p, alt))) &&             \
        json_number_value(v) >= lo && json_number_value(v) <= hi)                                                    \
        rq->s.field = (__typeof__(rq->s.field))json_number_value(v);
    NUM("temperature", "temp", "temperature", temperature, 0, 2)
    NUM("top_p", "top_p", "top_p", top_p, 0.001, 1)
    NUM("top_k", "top_k", "top_k", top_k, 0, 1 << 24)
    NUM("min_p", "min_p", "min_p", min_p, 0, 1)
    NUM("repeat_penalty", "repeat_penalty", "repeat_penalty", repeat_penalty, 0.01, 10)
#undef NUM
    if (!json_object_get(rq->root, "seed") && json_is_integer(v = json_object_get(p, "seed"))) {
        rq->s.has_seed = true;
        rq->s.seed = (uint64_t)json_integer_value(v);
    }
    if (rq->s.max_tokens < 0 && ((json_is_integer(v = json_object_get(p, "n_predict")) && json_integer_value(v) > 0) ||
                                 (json_is_integer(v = json_object_get(p, "max_tokens")) && json_integer_value(v) > 0)))
        rq->s.max_tokens = json_integer_value(v);
    json_decref(p);
}

/* Render messages with the model's chat template (a bundle's system prompt
 * first, unless the conversation has its own) and tokenize them. */
static int render_chat(gen *g, const byoai_chat_message *msgs, size_t n_msgs, int32_t **toks, size_t *n,
                       srv_error *e) {
    const byoai_tokenizer *tok = byoai_model_tokenizer(g->lm->model);
    char bos[64] = "<s>", eos[64] = "</s>";
    size_t l;
    int32_t b = byoai_token_bos(tok), x = byoai_token_eos(tok);
    const char *t;
    if (b >= 0 && (t = byoai_token_text(tok, b, &l)) && l < sizeof bos) memcpy(bos, t, l), bos[l] = '\0';
    if (x >= 0 && (t = byoai_token_text(tok, x, &l)) && l < sizeof eos) memcpy(eos, t, l), eos[l] = '\0';
    byoai_chat_message *with_sys = NULL;
    bool has_sys = false;
    for (size_t i = 0; i < n_msgs; i++) has_sys |= msgs[i].role == BYOAI_ROLE_SYSTEM;
    if (g->lm->system_prompt[0] && !has_sys && (with_sys = malloc((n_msgs + 1) * sizeof *with_sys))) {
        with_sys[0] = (byoai_chat_message){BYOAI_ROLE_SYSTEM, g->lm->system_prompt, strlen(g->lm->system_prompt)};
        memcpy(with_sys + 1, msgs, n_msgs * sizeof *msgs);
        msgs = with_sys;
        n_msgs++;
    }
    char *text;
    size_t tl;
    byoai_error err;
    int rc = byoai_chat_render(g->lm->family, msgs, n_msgs, true, bos, eos, &text, &tl, &err);
    free(with_sys);
    if (rc) return srv_err(e, 400, "invalid_request_error", NULL, "messages", "%s", err.msg);
    rc = tokenize(g->lm, text, tl, toks, n, e);
    free(text);
    return rc;
}

/* The messages left (copied to out, counted) when the k oldest that are not
 * system messages are dropped; the last message always stays. */
static size_t drop_oldest(const srv_request *rq, size_t k, byoai_chat_message *out) {
    size_t m = 0;
    for (size_t i = 0; i < rq->n_messages; i++) {
        bool sys = rq->messages[i].role == BYOAI_ROLE_SYSTEM;
        if (!sys && k > 0 && i + 1 < rq->n_messages) {
            k--;
            continue;
        }
        out[m++] = rq->messages[i];
    }
    return m;
}

/* The chat's prompt tokens. When the conversation does not fit the model's
 * context (with room left to answer): a 400 that says so, or, with
 * "truncation": "auto", the oldest turns (not the system messages, not the
 * last message) dropped until it fits with room for the answer; then
 * g->truncated says how many went. */
static int fit_chat(gen *g, srv_request *rq, int32_t **toks, size_t *n, srv_error *e) {
    int rc = render_chat(g, rq->messages, rq->n_messages, toks, n, e);
    if (rc) return rc;
    const uint32_t n_ctx = g->lm->n_ctx;
    if (!n_ctx || *n < n_ctx) return 0;
    if (!rq->truncate_history) {
        free(*toks);
        *toks = NULL;
        return srv_err(e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                       "the conversation is too long for this model: its history is %zu tokens and the context "
                       "holds %u per request; drop older messages, start a new conversation, or send "
                       "\"truncation\": \"auto\" to let the server drop the oldest turns", *n, n_ctx);
    }
    /* room for the answer: what it may generate, at most a quarter of the context */
    uint32_t reserve = rq->s.max_tokens > 0 && rq->s.max_tokens < n_ctx / 4 ? (uint32_t)rq->s.max_tokens : n_ctx / 4;
    size_t droppable = 0;
    for (size_t i = 0; i + 1 < rq->n_messages; i++) droppable += rq->messages[i].role != BYOAI_ROLE_SYSTEM;
    byoai_chat_message *kept = malloc(rq->n_messages * sizeof *kept);
    if (!kept) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    /* the fewest dropped turns that fit: binary search (fewer dropped, longer prompt) */
    size_t lo = 1, hi = droppable, best = SIZE_MAX;
    int32_t *best_toks = NULL;
    size_t best_n = 0;
    while (lo <= hi && hi != SIZE_MAX) {
        const size_t mid = lo + (hi - lo) / 2;
        size_t k = mid, m = drop_oldest(rq, k, kept);
        /* start with a user turn: an answer without its question reads oddly to most templates */
        while (k < droppable && m > 1) {
            size_t first = 0;
            while (first < m && kept[first].role == BYOAI_ROLE_SYSTEM) first++;
            if (first >= m - 1 || kept[first].role == BYOAI_ROLE_USER) break;
            m = drop_oldest(rq, ++k, kept);
        }
        int32_t *t = NULL;
        size_t tn = 0;
        if ((rc = render_chat(g, kept, m, &t, &tn, e))) break;
        if (tn + reserve <= n_ctx) {
            free(best_toks);
            best_toks = t, best_n = tn, best = k;
            if (mid <= 1) break;
            hi = mid - 1;
        } else {
            free(t);
            lo = k + 1;
        }
    }
    free(kept);
    if (rc) {
        free(best_toks);
        return rc;
    }
    if (best == SIZE_MAX) { /* even the system messages and the last message are too long */
        free(best_toks);
        size_t total = *n;
        free(*toks);
        *toks = NULL;
        return srv_err(e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                       "the conversation is too long for this model even without its older turns: its system "
                       "messages and last message are more than the %u tokens of context (less %u for the answer) "
                       "allow (%zu tokens in all); shorten them", n_ctx, reserve, total);
    }
    free(*toks);
    *toks = best_toks;
    *n = best_n;
    g->truncated = best;
    return 0;
}

/* Prepare g->job from a parsed request: acquire the model, build the prompt. */
static int prepare(gen *g, srv_request *rq, srv_error *e) {
    srv_server *s = g->srv;
    int rc = srv_acquire(s, rq->model, &g->lm, e);
    if (rc) return rc;
    g->job = srv_job_new();
    if (!g->job) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    snprintf(g->model, sizeof g->model, "%s", rq->model);
    g->created = (json_int_t)byoai_time_unix();
    srv_random_id(g->kind == KIND_CHAT ? "chatcmpl-" : "cmpl-", g->id, sizeof g->id);
    const byoai_tokenizer *tok = byoai_model_tokenizer(g->lm->model);
    int32_t *toks = NULL;
    size_t n = 0;
    if (g->kind == KIND_CHAT) {
        if ((rc = fit_chat(g, rq, &toks, &n, e))) return rc;
    } else if (rq->prompt_tokens) {
        n = rq->n_prompt_tokens;
        toks = malloc((n ? n : 1) * sizeof *toks);
        if (!toks) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        memcpy(toks, rq->prompt_tokens, n * sizeof *toks);
    } else {
        if ((rc = tokenize(g->lm, rq->prompt, rq->prompt_len, &toks, &n, e))) return rc;
    }
    if (n > UINT32_MAX) {
        free(toks);
        return srv_err(e, 400, "invalid_request_error", "context_length_exceeded", NULL, "the prompt is too long");
    }
    g->job->prompt = toks;
    g->job->n_prompt = (uint32_t)n;
    apply_bundle_params(g->lm, rq);
    job_params(s, g->job, rq);
    if (g->kind == KIND_COMPLETION && rq->s.echo) {
        if (rq->prompt) {
            g->echo = byoai_strndup(rq->prompt, rq->prompt_len);
            g->echo_len = rq->prompt_len;
        } else {
            size_t cap = n * 16 + 1, len = 0;
            g->echo = malloc(cap);
            for (size_t i = 0; g->echo && i < n; i++) {
                int k = byoai_token_to_piece(tok, toks[i], g->echo + len, cap - len - 1, false);
                if (k > 0 && (size_t)k < cap - len - 1) len += (size_t)k;
            }
            if (g->echo) g->echo[len] = '\0';
            g->echo_len = len;
        }
    }
    if (g->lm->cluster) return srv_cluster_submit(s, g->lm, g->job, e);
    return srv_sched_submit(g->lm->sched, g->job, e);
}

/* ---- logprobs --------------------------------------------------------------------------- */
static json_t *token_entry(const byoai_tokenizer *tok, int32_t id, float lp, bool with_bytes) {
    char piece[512];
    int n = byoai_token_to_piece(tok, id, piece, sizeof piece, false);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof piece) n = sizeof piece;
    json_t *o = json_object();
    json_object_set_new(o, "token", jstr(piece, (size_t)n));
    json_object_set_new(o, "logprob", json_real(isfinite(lp) ? lp : -9999.0));
    if (with_bytes) {
        json_t *b = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(b, json_integer((unsigned char)piece[i]));
        json_object_set_new(o, "bytes", b);
    }
    return o;
}

/* chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}, ...]} for pieces [a, b) */
static json_t *chat_logprobs(const byoai_tokenizer *tok, const srv_piece *p, size_t a, size_t b) {
    json_t *content = json_array();
    for (size_t i = a; i < b; i++) {
        if (p[i].token < 0) continue;
        json_t *o = token_entry(tok, p[i].token, p[i].logprob, true);
        json_t *top = json_array();
        for (int k = 0; k < p[i].n_top; k++) json_array_append_new(top, token_entry(tok, p[i].top_ids[k], p[i].top_lps[k], true));
        json_object_set_new(o, "top_logprobs", top);
        json_array_append_new(content, o);
    }
    return json_pack("{s:o}", "content", content);
}

/* completions: {tokens, token_logprobs, top_logprobs: [{text: lp}], text_offset} */
static json_t *completion_logprobs(const byoai_tokenizer *tok, const srv_piece *p, size_t a, size_t b, size_t offset) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (size_t i = a; i < b; i++) {
        if (p[i].token < 0) {
            offset += p[i].len;
            continue;
        }
        char piece[512];
        int n = byoai_token_to_piece(tok, p[i].token, piece, sizeof piece, false);
        if (n < 0) n = 0;
        if ((size_t)n > sizeof piece) n = sizeof piece;
        json_array_append_new(tokens, jstr(piece, (size_t)n));
        json_array_append_new(lps, json_real(isfinite(p[i].logprob) ? p[i].logprob : -9999.0));
        json_t *t = json_object();
        for (int k = 0; k < p[i].n_top; k++) {
            char tp[512];
            int m = byoai_token_to_piece(tok, p[i].top_ids[k], tp, sizeof tp - 1, false);
            if (m < 0) m = 0;
            if ((size_t)m > sizeof tp - 1) m = sizeof tp - 1;
            json_t *key = jstr(tp, (size_t)m);
            json_object_set_new(t, json_string_value(key), json_real(isfinite(p[i].top_lps[k]) ? p[i].top_lps[k] : -9999.0));
            json_decref(key);
        }
        json_array_append_new(tops, t);
        json_array_append_new(offs, json_integer((json_int_t)offset));
        offset += p[i].len;
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset",
                     offs);
}

static json_t *usage(const srv_job *j) {
    return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)j->n_prompt, "completion_tokens",
                     (json_int_t)j->n_gen, "total_tokens", (json_int_t)(j->n_prompt + j->n_gen),
                     "prompt_tokens_details", "cached_tokens", (json_int_t)j->n_prompt_cached);
}

/* ---- non-streaming ----------------------------------------------------------------------- */
static void answer_whole(gen *g, byoai_http_req *r) {
    srv_job *j = g->job;
    size_t seen = 0;
    for (;;) {
        srv_job_wait(j, seen, 0.1);
        pthread_mutex_lock(&j->mu);
        bool done = j->done;
        seen = j->n_pieces;
        pthread_mutex_unlock(&j->mu);
        if (done) break;
        if (byoai_http_client_gone(r)) {
            srv_job_cancel(j);
            while (!srv_job_wait(j, SIZE_MAX, 1.0)) {}
            srv_error e;
            srv_err(&e, 499, "invalid_request_error", "client_closed_request", NULL, "the client closed the connection");
            srv_send_error(r, &e);
            return;
        }
    }
    /* done: the job is immutable now */
    if (j->err.status) {
        srv_send_error(r, &j->err);
        return;
    }
    if (!strcmp(j->finish, "cancelled")) {
        srv_error e;
        srv_err(&e, 503, "server_error", "cancelled", NULL, "the request was cancelled: the server is shutting down");
        srv_send_error(r, &e);
        return;
    }
    size_t total = g->echo_len;
    for (size_t i = 0; i < j->n_pieces; i++) total += j->pieces[i].len;
    char *text = malloc(total + 1);
    if (!text) {
        srv_error e;
        srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
        srv_send_error(r, &e);
        return;
    }
    size_t off = 0;
    if (g->echo_len) memcpy(text, g->echo, g->echo_len), off = g->echo_len;
    for (size_t i = 0; i < j->n_pieces; i++) {
        memcpy(text + off, j->pieces[i].text, j->pieces[i].len);
        off += j->pieces[i].len;
    }
    text[off] = '\0';
    const byoai_tokenizer *tok = byoai_model_tokenizer(g->lm->model);
    json_t *choice;
    if (g->kind == KIND_CHAT) {
        choice = json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", 0, "message", "role", "assistant", "content",
                           jstr(text, off), "logprobs",
                           j->s.logprobs ? chat_logprobs(tok, j->pieces, 0, j->n_pieces) : json_null(),
                           "finish_reason", j->finish);
    } else {
        choice = json_pack("{s:o,s:i,s:o,s:s}", "text", jstr(text, off), "index", 0, "logprobs",
                           j->s.logprobs ? completion_logprobs(tok, j->pieces, 0, j->n_pieces, g->echo_len) : json_null(),
                           "finish_reason", j->finish);
    }
    free(text);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o,s:s}", "id", g->id, "object",
                          g->kind == KIND_CHAT ? "chat.completion" : "text_completion", "created", g->created, "model",
                          g->model, "choices", choice, "usage", usage(j), "system_fingerprint", "byoai-" BYOAI_VERSION);
    if (g->truncated) json_object_set_new(o, "byoai", json_pack("{s:I}", "truncated_messages", (json_int_t)g->truncated));
    srv_send_json(r, 200, o);
}

/* ---- streaming ------------------------------------------------------------------------------- */
static void out_append(gen *g, const char *s, size_t n) {
    if (g->len + n > g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 4096;
        while (cap < g->len + n) cap *= 2;
        char *p = realloc(g->buf, cap);
        if (!p) return;
        g->buf = p;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, s, n);
    g->len += n;
}

static void out_event(gen *g, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return;
    out_append(g, "data: ", 6);
    out_append(g, s, strlen(s));
    out_append(g, "\n\n", 2);
    free(s);
}

static json_t *chunk(gen *g, json_t *choice) {
    json_t *choices = choice ? json_pack("[o]", choice) : json_array();
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:o}", "id", g->id, "object",
                     g->kind == KIND_CHAT ? "chat.completion.chunk" : "text_completion", "created", g->created,
                     "model", g->model, "system_fingerprint", "byoai-" BYOAI_VERSION, "choices", choices);
}

static json_t *delta_choice(gen *g, const char *text, size_t n, json_t *logprobs, const char *finish, bool role) {
    if (g->kind == KIND_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (text) json_object_set_new(delta, "content", jstr(text, n));
        return json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", delta, "logprobs", logprobs ? logprobs : json_null(),
                         "finish_reason", finish ? json_string(finish) : json_null());
    }
    return json_pack("{s:o,s:i,s:o,s:o}", "text", jstr(text ? text : "", text ? n : 0), "index", 0, "logprobs",
                     logprobs ? logprobs : json_null(), "finish_reason", finish ? json_string(finish) : json_null());
}

/* turn new pieces (and the end) into events; false when nothing was added */
static bool stream_fill(gen *g) {
    srv_job *j = g->job;
    const byoai_tokenizer *tok = byoai_model_tokenizer(g->lm->model);
    size_t before = g->len;
    if (!g->started) {
        g->started = true;
        if (g->kind == KIND_CHAT) {
            json_t *c = chunk(g, delta_choice(g, "", 0, NULL, NULL, true));
            if (g->truncated)
                json_object_set_new(c, "byoai", json_pack("{s:I}", "truncated_messages", (json_int_t)g->truncated));
            out_event(g, c);
        }
        else if (g->echo_len) out_event(g, chunk(g, delta_choice(g, g->echo, g->echo_len, NULL, NULL, false)));
    }
    /* the scheduler may grow the piece array meanwhile: read it under the lock */
    pthread_mutex_lock(&j->mu);
    size_t n = j->n_pieces;
    bool done = j->done;
    for (size_t i = g->seen; i < n; i++) {
        const srv_piece *p = &j->pieces[i];
        if (!p->len && !(j->s.logprobs && p->token >= 0)) continue;
        json_t *lp = NULL;
        if (j->s.logprobs)
            lp = g->kind == KIND_CHAT ? chat_logprobs(tok, j->pieces, i, i + 1) : completion_logprobs(tok, j->pieces, i, i + 1, 0);
        out_event(g, chunk(g, delta_choice(g, p->text, p->len, lp, NULL, false)));
    }
    g->seen = n;
    pthread_mutex_unlock(&j->mu);
    if (done && !g->final_sent) {
        g->final_sent = true;
        if (j->err.status) {
            out_event(g, srv_error_json(&j->err));
        } else if (!strcmp(j->finish, "cancelled")) {
            srv_error e;
            srv_err(&e, 503, "server_error", "cancelled", NULL, "the request was cancelled: the server is shutting down");
            out_event(g, srv_error_json(&e));
        } else {
            out_event(g, chunk(g, delta_choice(g, g->kind == KIND_CHAT ? NULL : "", 0, NULL, j->finish, false)));
            if (j->s.include_usage) {
                json_t *c = chunk(g, NULL);
                json_object_set_new(c, "usage", usage(j));
                out_event(g, c);
            }
        }
        out_append(g, "data: [DONE]\n\n", 14);
    }
    return g->len > before;
}

static ssize_t stream_read(void *user, char *buf, size_t max) {
    gen *g = user;
    for (;;) {
        if (g->off < g->len) {
            size_t n = g->len - g->off < max ? g->len - g->off : max;
            memcpy(buf, g->buf + g->off, n);
            g->off += n;
            if (g->off == g->len) g->off = g->len = 0;
            g->last_send = byoai_time_now();
            return (ssize_t)n;
        }
        if (g->final_sent) return 0;
        if (stream_fill(g)) continue;
        srv_job_wait(g->job, g->seen, 0.5);
        if (stream_fill(g)) continue;
        if (byoai_time_now() - g->last_send > 2.0) { /* a comment keeps proxies open and finds dead clients */
            out_append(g, ": keep-alive\n\n", 14);
        }
    }
}

static void stream_done(void *user, bool completed) {
    gen *g = user;
    if (!completed || !g->final_sent) srv_job_cancel(g->job);
    srv_metrics_request(g->srv->metrics, g->kind == KIND_CHAT ? "/v1/chat/completions" : "/v1/completions",
                        completed ? 200 : 499, byoai_time_now() - g->t0);
    srv_open_dec(g->srv);
    gen_free(g);
}

/* ---- the handlers -------------------------------------------------------------------------------- */
static srv_limits limits(srv_server *s) { return (srv_limits){s->cfg.max_messages, s->cfg.max_tokens}; }

static bool generate(srv_server *s, byoai_http_req *r, int kind) {
    size_t len;
    const char *body = byoai_http_body(r, &len);
    srv_request rq;
    srv_error e = {0};
    srv_limits lim = limits(s);
    int rc = kind == KIND_CHAT ? srv_parse_chat(body, len, &lim, &rq, &e) : srv_parse_completion(body, len, &lim, &rq, &e);
    if (rc) {
        srv_request_free(&rq);
        srv_send_error(r, &e);
        return false;
    }
    gen *g = calloc(1, sizeof *g);
    if (!g) {
        srv_request_free(&rq);
        srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
        srv_send_error(r, &e);
        return false;
    }
    g->srv = s;
    g->kind = kind;
    g->t0 = byoai_time_now();
    rc = prepare(g, &rq, &e);
    bool stream = rq.s.stream;
    srv_request_free(&rq);
    if (rc) {
        gen_free(g);
        srv_send_error(r, &e);
        return false;
    }
    if (g->truncated) {
        char v[32];
        snprintf(v, sizeof v, "%zu", g->truncated);
        byoai_http_add_header(r, "X-Byoai-Truncated-Messages", v);
    }
    if (!stream) {
        answer_whole(g, r);
        gen_free(g);
        return false;
    }
    g->last_send = byoai_time_now();
    srv_open_inc(s); /* until the stream's done() */
    byoai_http_add_header(r, "X-Accel-Buffering", "no");
    byoai_http_stream_ops ops = {stream_read, stream_done};
    byoai_http_send_stream(r, 200, "text/event-stream", &ops, g);
    return true;
}

bool srv_openai_chat(srv_server *s, byoai_http_req *r) { return generate(s, r, KIND_CHAT); }
bool srv_openai_completions(srv_server *s, byoai_http_req *r) { return generate(s, r, KIND_COMPLETION); }

void srv_openai_embeddings(srv_server *s, byoai_http_req *r) {
    size_t len;
    const char *body = byoai_http_body(r, &len);
    srv_request rq;
    srv_error e = {0};
    if (srv_parse_embeddings(body, len, &rq, &e)) {
        srv_request_free(&rq);
        srv_send_error(r, &e);
        return;
    }
    srv_loaded *lm;
    if (srv_acquire(s, rq.model, &lm, &e)) {
        srv_request_free(&rq);
        srv_send_error(r, &e);
        return;
    }
    size_t n = rq.n_inputs;
    srv_job **jobs = calloc(n, sizeof *jobs);
    int rc = jobs ? 0 : srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
    /* inputs go to the scheduler in windows, so that a long input list does
     * not fill the model's queue and starve other requests */
    bool gone = false;
    for (size_t w0 = 0; w0 < n && !rc && !gone; w0 += EMBED_WINDOW) {
        size_t w1 = w0 + EMBED_WINDOW < n ? w0 + EMBED_WINDOW : n;
        for (size_t i = w0; i < w1 && !rc; i++) {
            srv_job *j = srv_job_new();
            if (!j) {
                rc = srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
                break;
            }
            j->embed = true;
            j->deadline = byoai_time_now() + s->cfg.request_timeout;
            int32_t *toks = NULL;
            size_t nt = 0;
            if (rq.input_text[i]) {
                rc = tokenize(lm, rq.input_text[i], rq.input_len[i], &toks, &nt, &e);
            } else {
                nt = rq.input_ntok[i];
                toks = malloc(nt * sizeof *toks);
                if (toks) memcpy(toks, rq.input_tokens[i], nt * sizeof *toks);
                else rc = srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
            }
            j->prompt = toks;
            j->n_prompt = (uint32_t)nt;
            if (!rc) rc = lm->cluster ? srv_cluster_submit(s, lm, j, &e) : srv_sched_submit(lm->sched, j, &e);
            if (rc) { /* never submitted: nobody else holds it */
                snprintf(e.param, sizeof e.param, "input[%zu]", i);
                srv_job_unref(j);
                break;
            }
            jobs[i] = j;
        }
        /* wait for the window's jobs (cancelling on error or a vanished client) */
        for (size_t i = w0; i < w1; i++) {
            if (!jobs[i]) continue;
            if (rc) srv_job_cancel(jobs[i]);
            while (!srv_job_wait(jobs[i], SIZE_MAX, 0.1)) {
                if (!gone && byoai_http_client_gone(r)) {
                    gone = true;
                    for (size_t k = w0; k < w1; k++) if (jobs[k]) srv_job_cancel(jobs[k]);
                }
            }
        }
    }
    if (gone && !rc) rc = srv_err(&e, 499, "invalid_request_error", "client_closed_request", NULL, "cancelled");
    json_t *data = json_array();
    json_int_t prompt_tokens = 0;
    for (size_t i = 0; i < n && jobs && !rc; i++) {
        srv_job *j = jobs[i];
        if (!j || j->err.status) {
            if (j) e = j->err;
            rc = e.status ? e.status : 500;
            break;
        }
        if (!j->embedding) {
            rc = srv_err(&e, 499, "invalid_request_error", "client_closed_request", NULL, "cancelled");
            break;
        }
        prompt_tokens += j->n_prompt;
        json_t *v;
        if (rq.base64) {
            size_t bl = sodium_base64_ENCODED_LEN(j->n_embd * sizeof(float), sodium_base64_VARIANT_ORIGINAL);
            char *b64 = malloc(bl);
            if (b64) sodium_bin2base64(b64, bl, (const unsigned char *)j->embedding, j->n_embd * sizeof(float),
                                       sodium_base64_VARIANT_ORIGINAL);
            v = json_string(b64 ? b64 : "");
            free(b64);
        } else {
            v = json_array();
            for (uint32_t d = 0; d < j->n_embd; d++) json_array_append_new(v, json_real(j->embedding[d]));
        }
        json_array_append_new(data, json_pack("{s:s,s:I,s:o}", "object", "embedding", "index", (json_int_t)i,
                                              "embedding", v));
    }
    for (size_t i = 0; i < n && jobs; i++) srv_job_unref(jobs[i]);
    free(jobs);
    srv_release(s, lm);
    if (rc) {
        json_decref(data);
        srv_send_error(r, &e);
    } else {
        srv_send_json(r, 200, json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data, "model", rq.model,
                                        "usage", "prompt_tokens", prompt_tokens, "total_tokens", prompt_tokens));
    }
    srv_request_free(&rq);
}

void srv_openai_models(srv_server *s, byoai_http_req *r, const char *id) {
    json_t *list = srv_models_list(s->models);
    srv_cluster_list(s, json_object_get(list, "data"));
    if (!id) {
        srv_send_json(r, 200, list);
        return;
    }
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(list, "data"), i, m) {
        if (!strcmp(json_string_value(json_object_get(m, "id")), id)) {
            json_incref(m);
            json_decref(list);
            srv_send_json(r, 200, m);
            return;
        }
    }
    json_decref(list);
    srv_error e;
    srv_err(&e, 404, "invalid_request_error", "model_not_found", "model", "the model '%s' does not exist on this server",
            id);
    srv_send_error(r, &e);
}
