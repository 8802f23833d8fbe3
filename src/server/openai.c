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

/* ---- a request in flight ---------------------------------------------------------------- */
typedef struct gen {
    srv_gen base;
    int kind;
    char id[64];
    json_int_t created;
    double t0;
    /* streaming */
    size_t seen;
    char *buf;
    size_t len, off, cap;
    bool started, ended, final_sent;
    double last_send;
    /* streaming with tools: the whole answer, and how much of it went out as content */
    char *acc;
    size_t acc_len, acc_cap, released;
} gen;

static void gen_free(gen *g) {
    if (!g) return;
    srv_gen_release(&g->base);
    free(g->buf);
    free(g->acc);
    free(g);
}

/* ---- logprobs --------------------------------------------------------------------------- */
static json_t *token_entry(const byoai_tokenizer *tok, int32_t id, float lp, bool with_bytes) {
    char piece[512];
    int n = byoai_token_to_piece(tok, id, piece, sizeof piece, false);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof piece) n = sizeof piece;
    json_t *o = json_object();
    json_object_set_new(o, "token", srv_json_text(piece, (size_t)n));
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
        json_array_append_new(tokens, srv_json_text(piece, (size_t)n));
        json_array_append_new(lps, json_real(isfinite(p[i].logprob) ? p[i].logprob : -9999.0));
        json_t *t = json_object();
        for (int k = 0; k < p[i].n_top; k++) {
            char tp[512];
            int m = byoai_token_to_piece(tok, p[i].top_ids[k], tp, sizeof tp - 1, false);
            if (m < 0) m = 0;
            if ((size_t)m > sizeof tp - 1) m = sizeof tp - 1;
            json_t *key = srv_json_text(tp, (size_t)m);
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

/* ---- tool calls in answers ---------------------------------------------------------------- */
/* [{"id", "type": "function", "function": {"name", "arguments"}}] (with "index" in stream deltas) */
static json_t *tool_calls_json(const byoai_chat_parsed *p, bool with_index) {
    json_t *a = json_array();
    for (size_t i = 0; i < p->n_calls; i++) {
        char id[40];
        srv_random_id("call_", id, sizeof id);
        json_t *c = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function", "name",
                              p->calls[i].name, "arguments", p->calls[i].arguments);
        if (with_index) json_object_set_new(c, "index", json_integer((json_int_t)i));
        json_array_append_new(a, c);
    }
    return a;
}

/* ---- non-streaming ----------------------------------------------------------------------- */
static void answer_whole(gen *g, byoai_http_req *r) {
    srv_error e = {0};
    if (srv_gen_wait(&g->base, r, &e)) {
        srv_send_error(r, &e);
        return;
    }
    srv_job *j = g->base.job;
    size_t off;
    char *text = srv_gen_text(&g->base, &off);
    if (!text) {
        srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
        srv_send_error(r, &e);
        return;
    }
    const byoai_tokenizer *tok = byoai_model_tokenizer(g->base.lm->model);
    json_t *choice;
    if (g->kind == KIND_CHAT) {
        json_t *msg = json_pack("{s:s,s:o}", "role", "assistant", "content", srv_json_text(text, off));
        const char *finish = j->finish;
        byoai_chat_parsed p;
        byoai_error err;
        if (g->base.tools && byoai_chat_parse_tool_calls(g->base.family, text, off, &p, &err) == 0) {
            if (p.n_calls) {
                json_object_set_new(msg, "content", p.content_len ? srv_json_text(p.content, p.content_len) : json_null());
                json_object_set_new(msg, "tool_calls", tool_calls_json(&p, false));
                if (strcmp(finish, "length")) finish = "tool_calls";
            }
            byoai_chat_parsed_free(&p);
        }
        choice = json_pack("{s:i,s:o,s:o,s:s}", "index", 0, "message", msg, "logprobs",
                           j->s.logprobs ? chat_logprobs(tok, j->pieces, 0, j->n_pieces) : json_null(),
                           "finish_reason", finish);
    } else {
        choice = json_pack("{s:o,s:i,s:o,s:s}", "text", srv_json_text(text, off), "index", 0, "logprobs",
                           j->s.logprobs ? completion_logprobs(tok, j->pieces, 0, j->n_pieces, g->base.echo_len)
                                         : json_null(),
                           "finish_reason", j->finish);
    }
    free(text);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o,s:s}", "id", g->id, "object",
                          g->kind == KIND_CHAT ? "chat.completion" : "text_completion", "created", g->created, "model",
                          g->base.model, "choices", choice, "usage", usage(j), "system_fingerprint",
                          "byoai-" BYOAI_VERSION);
    if (g->base.truncated)
        json_object_set_new(o, "byoai", json_pack("{s:I}", "truncated_messages", (json_int_t)g->base.truncated));
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
                     "model", g->base.model, "system_fingerprint", "byoai-" BYOAI_VERSION, "choices", choices);
}

static json_t *delta_choice(gen *g, const char *text, size_t n, json_t *logprobs, const char *finish, bool role) {
    if (g->kind == KIND_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (text) json_object_set_new(delta, "content", srv_json_text(text, n));
        return json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", delta, "logprobs", logprobs ? logprobs : json_null(),
                         "finish_reason", finish ? json_string(finish) : json_null());
    }
    return json_pack("{s:o,s:i,s:o,s:o}", "text", srv_json_text(text ? text : "", text ? n : 0), "index", 0, "logprobs",
                     logprobs ? logprobs : json_null(), "finish_reason", finish ? json_string(finish) : json_null());
}

static bool acc_append(gen *g, const char *s, size_t n) {
    if (g->acc_len + n + 1 > g->acc_cap) {
        size_t cap = g->acc_cap ? g->acc_cap * 2 : 1024;
        while (cap < g->acc_len + n + 1) cap *= 2;
        char *p = realloc(g->acc, cap);
        if (!p) return false;
        g->acc = p;
        g->acc_cap = cap;
    }
    memcpy(g->acc + g->acc_len, s, n);
    g->acc_len += n;
    g->acc[g->acc_len] = '\0';
    return true;
}

/* with tools: release what is surely content; at the end, the calls */
static const char *stream_tools(gen *g, bool done, const char *finish) {
    size_t r = srv_gen_releasable(&g->base, g->acc, g->acc_len, false);
    if (done) {
        byoai_chat_parsed p;
        byoai_error err;
        if (byoai_chat_parse_tool_calls(g->base.family, g->acc ? g->acc : "", g->acc_len, &p, &err)) return finish;
        if (!p.n_calls) r = g->acc_len;
        if (r > g->released)
            out_event(g, chunk(g, delta_choice(g, g->acc + g->released, r - g->released, NULL, NULL, false)));
        g->released = r > g->released ? r : g->released;
        if (p.n_calls) {
            json_t *delta = json_pack("{s:o}", "tool_calls", tool_calls_json(&p, true));
            out_event(g, chunk(g, json_pack("{s:i,s:o,s:n,s:n}", "index", 0, "delta", delta, "logprobs",
                                            "finish_reason")));
            if (strcmp(finish, "length")) finish = "tool_calls";
        }
        byoai_chat_parsed_free(&p);
        return finish;
    }
    if (r > g->released) {
        out_event(g, chunk(g, delta_choice(g, g->acc + g->released, r - g->released, NULL, NULL, false)));
        g->released = r;
    }
    return finish;
}

/* turn new pieces (and the end) into events; false when nothing was added */
static bool stream_fill(gen *g) {
    srv_job *j = g->base.job;
    const byoai_tokenizer *tok = byoai_model_tokenizer(g->base.lm->model);
    size_t before = g->len;
    if (!g->started) {
        g->started = true;
        if (g->kind == KIND_CHAT) {
            json_t *c = chunk(g, delta_choice(g, "", 0, NULL, NULL, true));
            if (g->base.truncated)
                json_object_set_new(c, "byoai", json_pack("{s:I}", "truncated_messages", (json_int_t)g->base.truncated));
            out_event(g, c);
        }
        else if (g->base.echo_len) out_event(g, chunk(g, delta_choice(g, g->base.echo, g->base.echo_len, NULL, NULL, false)));
    }
    /* the scheduler may grow the piece array meanwhile: read it under the lock */
    pthread_mutex_lock(&j->mu);
    size_t n = j->n_pieces;
    bool done = j->done;
    for (size_t i = g->seen; i < n; i++) {
        const srv_piece *p = &j->pieces[i];
        if (g->base.tools) {
            acc_append(g, p->text, p->len);
            continue;
        }
        if (!p->len && !(j->s.logprobs && p->token >= 0)) continue;
        json_t *lp = NULL;
        if (j->s.logprobs)
            lp = g->kind == KIND_CHAT ? chat_logprobs(tok, j->pieces, i, i + 1) : completion_logprobs(tok, j->pieces, i, i + 1, 0);
        out_event(g, chunk(g, delta_choice(g, p->text, p->len, lp, NULL, false)));
    }
    g->seen = n;
    pthread_mutex_unlock(&j->mu);
    const char *finish = done ? j->finish : NULL;
    bool ok_end = done && !j->err.status && strcmp(j->finish, "cancelled");
    if (g->base.tools && (!done || ok_end)) finish = stream_tools(g, ok_end, finish);
    if (done && !g->final_sent) {
        g->final_sent = true;
        if (j->err.status) {
            out_event(g, srv_error_json(&j->err));
        } else if (!strcmp(j->finish, "cancelled")) {
            srv_error e;
            srv_err(&e, 503, "server_error", "cancelled", NULL, "the request was cancelled: the server is shutting down");
            out_event(g, srv_error_json(&e));
        } else {
            out_event(g, chunk(g, delta_choice(g, g->kind == KIND_CHAT ? NULL : "", 0, NULL, finish, false)));
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
        srv_job_wait(g->base.job, g->seen, 0.5);
        if (stream_fill(g)) continue;
        if (byoai_time_now() - g->last_send > 2.0) { /* a comment keeps proxies open and finds dead clients */
            out_append(g, ": keep-alive\n\n", 14);
        }
    }
}

static void stream_done(void *user, bool completed) {
    gen *g = user;
    if (!completed || !g->final_sent) srv_job_cancel(g->base.job);
    srv_metrics_request(g->base.srv->metrics, g->kind == KIND_CHAT ? "/v1/chat/completions" : "/v1/completions",
                        completed ? 200 : 499, byoai_time_now() - g->t0);
    srv_open_dec(g->base.srv);
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
    g->base.srv = s;
    g->base.chat = kind == KIND_CHAT;
    g->kind = kind;
    g->t0 = byoai_time_now();
    g->created = (json_int_t)byoai_time_unix();
    srv_random_id(kind == KIND_CHAT ? "chatcmpl-" : "cmpl-", g->id, sizeof g->id);
    rc = srv_gen_prepare(&g->base, &rq, &e);
    bool stream = rq.s.stream;
    srv_request_free(&rq);
    if (rc) {
        gen_free(g);
        srv_send_error(r, &e);
        return false;
    }
    if (g->base.truncated) {
        char v[32];
        snprintf(v, sizeof v, "%zu", g->base.truncated);
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
    byoai_http_stream_ops ops = {stream_read, stream_done, srv_gen_stream_log}; /* g starts with its srv_gen */
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
    srv_job **jobs;
    int rc = srv_embed_run(s, r, &rq, lm, &jobs, &e);
    json_t *data = json_array();
    json_int_t prompt_tokens = 0;
    for (size_t i = 0; i < n && jobs && !rc; i++) {
        srv_job *j = jobs[i];
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
    srv_embed_free(jobs, n);
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
