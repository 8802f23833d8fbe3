/*
 * The Ollama API beside the OpenAI one, on the same port, so that tools
 * written for Ollama work unchanged (docs/server.md lists what differs):
 *
 *   GET  /api/tags      installed models and files given to the server
 *   POST /api/chat      chat, NDJSON stream by default ("stream": false: one object)
 *   POST /api/generate  completion of a prompt (the model's template unless "raw")
 *   POST /api/show      a model's details, metadata and template
 *   POST /api/embed     embeddings (L2-normalised); /api/embeddings, the older form
 *   GET  /api/ps        loaded models
 *   POST /api/pull      install through byoai's registries (install.c), NDJSON progress
 *   DELETE /api/delete  uninstall
 *
 * Requests are translated into the OpenAI-shaped bodies request.c already
 * validates (options.num_predict -> max_tokens, format -> response_format,
 * tool_calls with object arguments -> OpenAI's), run through generate.c,
 * and answered in Ollama's shapes: created_at, message / response, done,
 * done_reason, durations in nanoseconds, prompt_eval_count, eval_count,
 * message.tool_calls with arguments as objects. Errors are {"error": "..."}.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include "server/server_internal.h"

#define NS(seconds) ((json_int_t)llround((seconds) * 1e9 > 0 ? (seconds) * 1e9 : 0))

static void send_err(byoai_http_req *r, int status, const char *msg) {
    srv_send_json(r, status ? status : 500, json_pack("{s:s}", "error", msg));
}

/* "2024-07-22T20:47:51.147561Z" */
static json_t *created_at(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char b[64];
    size_t n = strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(b + n, sizeof b - n, ".%06ldZ", (long)tv.tv_usec);
    return json_string(b);
}

static json_t *iso_time(time_t t) {
    struct tm tm;
    gmtime_r(&t, &tm);
    char b[64];
    strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(b);
}

/* ---- translating requests ------------------------------------------------------------- */
/* options and the top-level fields both APIs share, into an OpenAI-shaped body */
static int translate_common(srv_server *s, json_t *in, json_t *out, char *msg, size_t cap) {
    json_t *opt = json_object_get(in, "options");
    if (opt && !json_is_null(opt) && !json_is_object(opt)) return snprintf(msg, cap, "'options' must be an object"), 400;
    static const char *const same[] = {"temperature", "top_p", "top_k", "min_p", "seed", "stop", "repeat_penalty",
                                       "presence_penalty", "frequency_penalty", NULL};
    for (int i = 0; same[i]; i++) {
        json_t *v = json_object_get(opt, same[i]);
        if (v) json_object_set(out, same[i], v);
    }
    json_t *np = json_object_get(opt, "num_predict");
    if (np && !json_is_null(np)) {
        if (!json_is_integer(np)) return snprintf(msg, cap, "'options.num_predict' must be an integer"), 400;
        json_int_t n = json_integer_value(np);
        if (n > 0) json_object_set_new(out, "max_tokens", json_integer(n < s->cfg.max_tokens ? n : s->cfg.max_tokens));
        /* -1 (until the end) and -2 (fill the context): the server's limits */
    }
    json_t *fmt = json_object_get(in, "format");
    if (json_is_string(fmt) && !strcmp(json_string_value(fmt), "json"))
        json_object_set_new(out, "response_format", json_pack("{s:s}", "type", "json_object"));
    else if (json_is_object(fmt) || json_is_true(fmt))
        json_object_set_new(out, "response_format", json_pack("{s:s,s:{s:s,s:O}}", "type", "json_schema", "json_schema",
                                                              "name", "format", "schema", fmt));
    else if (fmt && !json_is_null(fmt) && !(json_is_string(fmt) && json_string_length(fmt) == 0))
        return snprintf(msg, cap, "'format' must be \"json\" or a JSON Schema object"), 400;
    json_t *st = json_object_get(in, "stream");
    if (st && !json_is_null(st) && !json_is_boolean(st)) return snprintf(msg, cap, "'stream' must be true or false"), 400;
    json_object_set_new(out, "stream", json_boolean(!st || json_is_null(st) || json_is_true(st)));
    json_t *model = json_object_get(in, "model");
    if (!model) model = json_object_get(in, "name");
    if (model) json_object_set(out, "model", model);
    return 0;
}

/* an Ollama message into OpenAI's: tool_calls' arguments become strings */
static int translate_message(json_t *m, size_t i, json_t **out, char *msg, size_t cap) {
    if (!json_is_object(m)) return snprintf(msg, cap, "'messages[%zu]' must be an object", i), 400;
    json_t *imgs = json_object_get(m, "images");
    if (json_is_array(imgs) && json_array_size(imgs))
        return snprintf(msg, cap, "'messages[%zu].images': images are not supported by this server", i), 400;
    json_t *o = json_deep_copy(m);
    if (!o) return snprintf(msg, cap, "out of memory"), 500;
    json_object_del(o, "images");
    json_object_del(o, "thinking");
    json_t *calls = json_object_get(o, "tool_calls");
    if (json_is_array(calls)) {
        size_t k;
        json_t *c;
        json_array_foreach(calls, k, c) {
            json_t *fn = json_object_get(c, "function");
            if (!json_is_object(fn)) continue;
            json_t *args = json_object_get(fn, "arguments");
            if (json_is_object(args)) {
                char *t = json_dumps(args, JSON_COMPACT);
                json_object_set_new(fn, "arguments", json_string(t ? t : "{}"));
                free(t);
            }
            if (!json_object_get(c, "type")) json_object_set_new(c, "type", json_string("function"));
            if (!json_object_get(c, "id")) {
                char id[32];
                snprintf(id, sizeof id, "call_%zu_%zu", i, k);
                json_object_set_new(c, "id", json_string(id));
            }
        }
    }
    json_t *tn = json_object_get(o, "tool_name");
    if (json_is_string(tn) && !json_object_get(o, "name")) json_object_set(o, "name", tn);
    *out = o;
    return 0;
}

static char *dump(json_t *o) {
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return t;
}

/* ---- a generation in flight --------------------------------------------------------------- */
typedef struct olg {
    srv_gen base;
    bool chat; /* /api/chat (message) or /api/generate (response) */
    double t0, t_loaded;
    /* streaming */
    size_t seen;
    char *buf;
    size_t len, off, cap;
    bool final_sent;
    double last_send;
    char *acc; /* with tools: the whole answer; how much went out */
    size_t acc_len, acc_cap, released;
} olg;

static void olg_free(olg *g) {
    if (!g) return;
    srv_gen_release(&g->base);
    free(g->buf);
    free(g->acc);
    free(g);
}

static void append(char **b, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap * 2 : 4096;
        while (c < *len + n + 1) c *= 2;
        char *p = realloc(*b, c);
        if (!p) return;
        *b = p;
        *cap = c;
    }
    memcpy(*b + *len, s, n);
    *len += n;
    (*b)[*len] = '\0';
}

static void line(olg *g, json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) return;
    append(&g->buf, &g->len, &g->cap, s, strlen(s));
    append(&g->buf, &g->len, &g->cap, "\n", 1);
    free(s);
}

/* {model, created_at, message|response, done} */
static json_t *chunk(olg *g, const char *text, size_t n, bool done) {
    json_t *o = json_pack("{s:s,s:o}", "model", g->base.model, "created_at", created_at());
    if (g->chat) json_object_set_new(o, "message", json_pack("{s:s,s:o}", "role", "assistant", "content", srv_json_text(text, n)));
    else json_object_set_new(o, "response", srv_json_text(text, n));
    json_object_set_new(o, "done", json_boolean(done));
    return o;
}

/* the statistics of the last object */
static void finish_stats(olg *g, json_t *o, const char *reason) {
    const srv_job *j = g->base.job;
    json_object_set_new(o, "done_reason", json_string(reason));
    double t_first = j->t_first > 0 ? j->t_first : j->t_end, t_start = j->t_start > 0 ? j->t_start : j->t_submit;
    json_object_set_new(o, "total_duration", json_integer(NS(j->t_end - g->t0)));
    json_object_set_new(o, "load_duration", json_integer(NS(g->t_loaded - g->t0)));
    json_object_set_new(o, "prompt_eval_count", json_integer((json_int_t)j->n_prompt));
    json_object_set_new(o, "prompt_eval_duration", json_integer(NS(t_first - t_start)));
    json_object_set_new(o, "eval_count", json_integer((json_int_t)j->n_gen));
    json_object_set_new(o, "eval_duration", json_integer(NS(j->t_end - t_first)));
    if (!g->chat) { /* generate: the tokens of prompt and answer, to continue from */
        json_t *ctx = json_array();
        for (uint32_t i = 0; i < j->n_prompt; i++) json_array_append_new(ctx, json_integer(j->prompt[i]));
        for (size_t i = 0; i < j->n_pieces; i++)
            if (j->pieces[i].token >= 0) json_array_append_new(ctx, json_integer(j->pieces[i].token));
        json_object_set_new(o, "context", ctx);
    }
}

static const char *done_reason(const srv_job *j) { return !strcmp(j->finish, "length") ? "length" : "stop"; }

/* [{"function": {"name", "arguments": {...}}}] */
static json_t *tool_calls_json(const byoai_chat_parsed *p) {
    json_t *a = json_array();
    for (size_t i = 0; i < p->n_calls; i++) {
        json_t *args = json_loads(p->calls[i].arguments, 0, NULL);
        json_array_append_new(a, json_pack("{s:{s:s,s:o}}", "function", "name", p->calls[i].name, "arguments",
                                           args ? args : json_object()));
    }
    return a;
}

static bool acc_add(olg *g, const char *s, size_t n) {
    append(&g->acc, &g->acc_len, &g->acc_cap, s, n);
    return true;
}

static bool fill(olg *g) {
    srv_job *j = g->base.job;
    size_t before = g->len;
    pthread_mutex_lock(&j->mu);
    size_t n = j->n_pieces;
    bool done = j->done;
    for (size_t i = g->seen; i < n; i++) {
        const srv_piece *p = &j->pieces[i];
        if (g->base.tools) acc_add(g, p->text, p->len);
        else if (p->len) line(g, chunk(g, p->text, p->len, false));
    }
    g->seen = n;
    pthread_mutex_unlock(&j->mu);
    bool ok = done && !j->err.status && strcmp(j->finish, "cancelled");
    if (g->base.tools && (!done || ok)) {
        size_t r = srv_gen_releasable(&g->base, g->acc ? g->acc : "", g->acc_len, false);
        byoai_chat_parsed p = {0};
        bool parsed = ok && byoai_chat_parse_tool_calls(g->base.family, g->acc ? g->acc : "", g->acc_len, &p, NULL) == 0;
        if (ok && (!parsed || !p.n_calls)) r = g->acc_len;
        if (r > g->released) {
            line(g, chunk(g, g->acc + g->released, r - g->released, false));
            g->released = r;
        }
        if (parsed && p.n_calls) {
            json_t *c = chunk(g, "", 0, false);
            json_object_set_new(json_object_get(c, "message"), "tool_calls", tool_calls_json(&p));
            line(g, c);
        }
        if (parsed) byoai_chat_parsed_free(&p);
    }
    if (done && !g->final_sent) {
        g->final_sent = true;
        if (j->err.status) line(g, json_pack("{s:s}", "error", j->err.message));
        else if (!strcmp(j->finish, "cancelled")) line(g, json_pack("{s:s}", "error", "the request was cancelled: the server is shutting down"));
        else {
            json_t *o = chunk(g, "", 0, true);
            finish_stats(g, o, done_reason(j));
            line(g, o);
        }
    }
    return g->len > before;
}

static ssize_t stream_read(void *user, char *buf, size_t max) {
    olg *g = user;
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
        if (fill(g)) continue;
        srv_job_wait(g->base.job, g->seen, 0.5);
        if (fill(g)) continue;
        if (byoai_time_now() - g->last_send > 2.0) { /* a space finds dead clients; JSON parsers skip it */
            buf[0] = ' ';
            g->last_send = byoai_time_now();
            return 1;
        }
    }
}

static void stream_done(void *user, bool completed) {
    olg *g = user;
    if (!completed || !g->final_sent) srv_job_cancel(g->base.job);
    srv_metrics_request(g->base.srv->metrics, g->chat ? "/api/chat" : "/api/generate", completed ? 200 : 499,
                        byoai_time_now() - g->t0);
    srv_open_dec(g->base.srv);
    olg_free(g);
}

static void answer_whole(olg *g, byoai_http_req *r) {
    srv_error e = {0};
    if (srv_gen_wait(&g->base, r, &e)) {
        send_err(r, e.status, e.message);
        return;
    }
    size_t n;
    char *text = srv_gen_text(&g->base, &n);
    if (!text) {
        send_err(r, 500, "out of memory");
        return;
    }
    json_t *o = chunk(g, text, n, true);
    byoai_chat_parsed p;
    if (g->base.tools && byoai_chat_parse_tool_calls(g->base.family, text, n, &p, NULL) == 0) {
        if (p.n_calls) {
            json_t *m = json_object_get(o, "message");
            json_object_set_new(m, "content", srv_json_text(p.content, p.content_len));
            json_object_set_new(m, "tool_calls", tool_calls_json(&p));
        }
        byoai_chat_parsed_free(&p);
    }
    free(text);
    finish_stats(g, o, done_reason(g->base.job));
    srv_send_json(r, 200, o);
}

/* run a translated body (a chat, or with raw a plain completion) for
 * /api/chat or /api/generate; returns true when it answered with a stream */
static bool run(srv_server *s, byoai_http_req *r, char *body, bool chat, bool api_chat, double t0) {
    srv_request rq;
    memset(&rq, 0, sizeof rq);
    srv_error e = {0};
    srv_limits lim = {s->cfg.max_messages, s->cfg.max_tokens};
    int rc = body ? (chat ? srv_parse_chat(body, strlen(body), &lim, &rq, &e)
                          : srv_parse_completion(body, strlen(body), &lim, &rq, &e))
                  : srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
    free(body);
    olg *g = rc ? NULL : calloc(1, sizeof *g);
    if (!rc && !g) rc = srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
    if (rc) {
        srv_request_free(&rq);
        send_err(r, e.status, e.message);
        return false;
    }
    g->base.srv = s;
    g->base.chat = chat;
    g->chat = api_chat;
    g->t0 = t0;
    rc = srv_gen_prepare(&g->base, &rq, &e);
    g->t_loaded = byoai_time_now();
    bool stream = rq.s.stream;
    srv_request_free(&rq);
    if (rc) {
        olg_free(g);
        send_err(r, e.status, e.message);
        return false;
    }
    if (!stream) {
        answer_whole(g, r);
        olg_free(g);
        return false;
    }
    g->last_send = byoai_time_now();
    srv_open_inc(s);
    byoai_http_stream_ops ops = {stream_read, stream_done, srv_gen_stream_log}; /* g starts with its srv_gen */
    byoai_http_send_stream(r, 200, "application/x-ndjson", &ops, g);
    return true;
}

/* empty messages / prompt: Ollama loads the model and says so */
static void load_only(srv_server *s, byoai_http_req *r, const char *model, bool chat) {
    srv_loaded *lm;
    srv_error e = {0};
    if (srv_acquire(s, model, &lm, &e)) {
        send_err(r, e.status, e.message);
        return;
    }
    srv_release(s, lm);
    json_t *o = json_pack("{s:s,s:o}", "model", model, "created_at", created_at());
    if (chat) json_object_set_new(o, "message", json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
    else json_object_set_new(o, "response", json_string(""));
    json_object_set_new(o, "done", json_true());
    json_object_set_new(o, "done_reason", json_string("load"));
    srv_send_json(r, 200, o);
}

static json_t *body_object(byoai_http_req *r) {
    size_t len;
    const char *body = byoai_http_body(r, &len);
    srv_error e = {0};
    json_t *in = srv_parse_object(body, len, &e);
    if (!in) send_err(r, e.status, e.message);
    return in;
}

static const char *model_of(json_t *in) {
    json_t *m = json_object_get(in, "model");
    if (!json_is_string(m)) m = json_object_get(in, "name");
    return json_is_string(m) ? json_string_value(m) : NULL;
}

bool srv_ollama_chat(srv_server *s, byoai_http_req *r) {
    double t0 = byoai_time_now();
    json_t *in = body_object(r);
    if (!in) return false;
    char msg[300] = "";
    json_t *out = json_object();
    int st = translate_common(s, in, out, msg, sizeof msg);
    json_t *msgs = json_object_get(in, "messages");
    if (!st && msgs && !json_is_array(msgs)) st = 400, snprintf(msg, sizeof msg, "'messages' must be an array");
    if (!st && model_of(in) && json_array_size(msgs) == 0) {
        load_only(s, r, model_of(in), true);
        json_decref(in);
        json_decref(out);
        return false;
    }
    json_t *conv = json_array();
    for (size_t i = 0; !st && i < json_array_size(msgs); i++) {
        json_t *m2;
        if (!(st = translate_message(json_array_get(msgs, i), i, &m2, msg, sizeof msg))) json_array_append_new(conv, m2);
    }
    json_object_set_new(out, "messages", conv);
    /* Ollama drops the oldest messages of a chat that outgrows the context (the system messages stay) */
    json_object_set_new(out, "truncation", json_string("auto"));
    json_t *tools = json_object_get(in, "tools");
    if (tools) json_object_set(out, "tools", tools);
    json_t *tc = json_object_get(in, "tool_choice"); /* an extension: Ollama lets the model choose */
    if (tc) json_object_set(out, "tool_choice", tc);
    json_decref(in);
    if (st) {
        json_decref(out);
        send_err(r, st, msg);
        return false;
    }
    return run(s, r, dump(out), true, true, t0);
}

bool srv_ollama_generate(srv_server *s, byoai_http_req *r) {
    double t0 = byoai_time_now();
    json_t *in = body_object(r);
    if (!in) return false;
    char msg[300] = "";
    json_t *out = json_object();
    int st = translate_common(s, in, out, msg, sizeof msg);
    json_t *prompt = json_object_get(in, "prompt"), *system = json_object_get(in, "system"),
           *sfx = json_object_get(in, "suffix"), *imgs = json_object_get(in, "images");
    bool raw = json_is_true(json_object_get(in, "raw"));
    if (!st && prompt && !json_is_string(prompt)) st = 400, snprintf(msg, sizeof msg, "'prompt' must be a string");
    if (!st && system && !json_is_null(system) && !json_is_string(system))
        st = 400, snprintf(msg, sizeof msg, "'system' must be a string");
    if (!st && json_is_string(sfx) && json_string_length(sfx))
        st = 400, snprintf(msg, sizeof msg, "'suffix' (fill in the middle) is not supported by this server");
    if (!st && json_is_array(imgs) && json_array_size(imgs))
        st = 400, snprintf(msg, sizeof msg, "'images' are not supported by this server");
    if (!st && model_of(in) && (!prompt || json_string_length(prompt) == 0)) {
        load_only(s, r, model_of(in), false);
        json_decref(in);
        json_decref(out);
        return false;
    }
    bool chat = !raw;
    if (!st && raw) json_object_set(out, "prompt", prompt);
    else if (!st) {
        json_t *conv = json_array();
        if (json_is_string(system) && json_string_length(system))
            json_array_append_new(conv, json_pack("{s:s,s:O}", "role", "system", "content", system));
        json_array_append_new(conv, json_pack("{s:s,s:O}", "role", "user", "content", prompt));
        json_object_set_new(out, "messages", conv);
    }
    json_decref(in);
    if (st) {
        json_decref(out);
        send_err(r, st, msg);
        return false;
    }
    return run(s, r, dump(out), chat, false, t0);
}

/* ---- models --------------------------------------------------------------------------- */
/* details (and a few numbers) from a model's file */
static json_t *details_of(srv_server *s, const char *name, json_int_t *size, char *digest, size_t dcap,
                          byoai_gguf **keep) {
    srv_resolved res;
    srv_error e = {0};
    json_t *d = json_pack("{s:s,s:s,s:s,s:[],s:s,s:s}", "parent_model", "", "format", "gguf", "family", "", "families",
                          "parameter_size", "", "quantization_level", "");
    if (keep) *keep = NULL;
    if (srv_models_resolve(s->models, name, &res, &e)) return d;
    struct stat st;
    if (size && stat(res.path, &st) == 0) *size = (json_int_t)st.st_size;
    byoai_gguf *g = NULL;
    byoai_error err;
    if (byoai_gguf_open(res.path, &g, &err)) return d;
    byoai_model_info info;
    if (byoai_model_describe(g, 0, &info, &err) == 0) {
        json_object_set_new(d, "family", json_string(info.arch));
        json_array_append_new(json_object_get(d, "families"), json_string(info.arch));
        char ps[32];
        if (info.n_params >= 1000000000ull) snprintf(ps, sizeof ps, "%.1fB", info.n_params / 1e9);
        else if (info.n_params >= 1000000ull) snprintf(ps, sizeof ps, "%.1fM", info.n_params / 1e6);
        else snprintf(ps, sizeof ps, "%.1fK", info.n_params / 1e3);
        json_object_set_new(d, "parameter_size", json_string(ps));
        json_object_set_new(d, "quantization_level", json_string(info.file_type ? info.file_type : ""));
    }
    (void)digest;
    (void)dcap;
    if (keep) *keep = g;
    else byoai_gguf_close(g);
    return d;
}

static json_t *model_entry(srv_server *s, json_t *m) {
    const char *id = json_string_value(json_object_get(m, "id"));
    json_t *b = json_object_get(m, "byoai");
    json_int_t size = json_integer_value(json_object_get(b, "size"));
    const char *sha = json_string_value(json_object_get(b, "sha256"));
    json_t *d = details_of(s, id, size ? NULL : &size, NULL, 0, NULL);
    return json_pack("{s:s,s:s,s:o,s:I,s:s,s:o}", "name", id, "model", id, "modified_at",
                     iso_time((time_t)json_integer_value(json_object_get(m, "created"))), "size", size, "digest",
                     sha ? sha : "", "details", d);
}

void srv_ollama_tags(srv_server *s, byoai_http_req *r) {
    json_t *list = srv_models_list(s->models);
    json_t *models = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(list, "data"), i, m) json_array_append_new(models, model_entry(s, m));
    json_decref(list);
    srv_send_json(r, 200, json_pack("{s:o}", "models", models));
}

void srv_ollama_ps(srv_server *s, byoai_http_req *r) {
    json_t *list = srv_models_list(s->models);
    json_t *models = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(list, "data"), i, m) {
        if (!json_is_true(json_object_get(json_object_get(m, "byoai"), "loaded"))) continue;
        json_t *e = model_entry(s, m);
        json_object_del(e, "modified_at");
        json_object_set_new(e, "expires_at", iso_time((time_t)(byoai_time_unix() + s->cfg.idle_timeout)));
        json_object_set_new(e, "size_vram", json_integer(0));
        json_array_append_new(models, e);
    }
    json_decref(list);
    srv_send_json(r, 200, json_pack("{s:o}", "models", models));
}

/* one metadata value for model_info: scalars and strings; arrays by length */
static json_t *kv_json(const byoai_gguf_value *v) {
    switch (v->type) {
    case BYOAI_GGUF_STRING: return srv_json_text(v->v.str.ptr, (size_t)(v->v.str.len < 4096 ? v->v.str.len : 4096));
    case BYOAI_GGUF_BOOL: return json_boolean(v->v.b);
    case BYOAI_GGUF_FLOAT32: case BYOAI_GGUF_FLOAT64: return json_real(v->v.f64);
    case BYOAI_GGUF_INT8: case BYOAI_GGUF_INT16: case BYOAI_GGUF_INT32: case BYOAI_GGUF_INT64:
        return json_integer((json_int_t)v->v.i64);
    case BYOAI_GGUF_ARRAY: return NULL; /* vocabularies: too large to show */
    default: return json_integer((json_int_t)v->v.u64);
    }
}

void srv_ollama_show(srv_server *s, byoai_http_req *r) {
    json_t *in = body_object(r);
    if (!in) return;
    const char *name = model_of(in);
    if (!name) {
        json_decref(in);
        send_err(r, 400, "'model' is required: the name of a model (GET /api/tags lists them)");
        return;
    }
    srv_resolved res;
    srv_error e = {0};
    if (srv_models_resolve(s->models, name, &res, &e)) {
        send_err(r, e.status, e.message);
        json_decref(in);
        return;
    }
    byoai_gguf *g = NULL;
    json_t *d = details_of(s, name, NULL, NULL, 0, &g);
    json_t *info = json_object(), *tmpl = json_string("");
    bool tools = false;
    for (uint64_t i = 0; g && i < g->n_kv; i++) {
        const byoai_gguf_kv *kv = &g->kv[i];
        if (!strcmp(kv->key, "tokenizer.chat_template") && kv->value.type == BYOAI_GGUF_STRING) {
            json_decref(tmpl);
            tmpl = srv_json_text(kv->value.v.str.ptr, (size_t)kv->value.v.str.len);
            continue;
        }
        json_t *v = kv_json(&kv->value);
        if (v) json_object_set_new(info, kv->key, v);
    }
    if (g) {
        byoai_model_info mi;
        byoai_error err;
        if (byoai_model_describe(g, 0, &mi, &err) == 0) {
            json_object_set_new(info, "general.parameter_count", json_integer((json_int_t)mi.n_params));
            tools = mi.has_chat_template;
        }
        byoai_gguf_close(g);
    }
    json_t *caps = json_pack("[s]", "completion");
    if (tools) json_array_append_new(caps, json_string("tools"));
    struct stat st;
    time_t mt = stat(res.path, &st) == 0 ? st.st_mtime : 0;
    char params[2200] = "";
    if (res.params_json[0]) snprintf(params, sizeof params, "%s", res.params_json);
    json_t *o = json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:o}", "modelfile", "", "parameters", params, "template", tmpl,
                          "details", d, "model_info", info, "capabilities", caps, "modified_at", iso_time(mt));
    if (res.system_prompt[0]) json_object_set_new(o, "system", json_string(res.system_prompt));
    json_decref(in);
    srv_send_json(r, 200, o);
}

void srv_ollama_delete(srv_server *s, byoai_http_req *r) {
    json_t *in = body_object(r);
    if (!in) return;
    const char *name = model_of(in);
    srv_error e = {0};
    if (!name) send_err(r, 400, "'model' is required: the name of an installed model");
    else if (srv_models_remove(s->models, name, &e)) send_err(r, e.status, e.message);
    else srv_send_json(r, 200, json_object());
    json_decref(in);
}

void srv_ollama_pull(srv_server *s, byoai_http_req *r) {
    json_t *in = body_object(r);
    if (!in) return;
    const char *name = model_of(in);
    json_t *st = json_object_get(in, "stream");
    if (!name || !name[0] || strlen(name) >= 600) send_err(r, 400, "'model' must name a model: NAME, NAME:VARIANT or hf:OWNER/REPO/FILE.gguf");
    else if (st && !json_is_null(st) && !json_is_boolean(st)) send_err(r, 400, "'stream' must be true or false");
    else srv_install_start(s, r, name, NULL, false, !st || json_is_null(st) || json_is_true(st), true);
    json_decref(in);
}

/* /api/embed {"model", "input": string | [strings]} and the older
 * /api/embeddings {"model", "prompt"} */
void srv_ollama_embed(srv_server *s, byoai_http_req *r, bool old) {
    double t0 = byoai_time_now();
    json_t *in = body_object(r);
    if (!in) return;
    json_t *input = json_object_get(in, old ? "prompt" : "input");
    const char *name = model_of(in);
    json_t *o = json_object();
    if (name) json_object_set_new(o, "model", json_string(name));
    if (input) json_object_set(o, "input", input);
    json_decref(in);
    char *body = dump(o);
    srv_request rq;
    srv_error e = {0};
    if (!body || srv_parse_embeddings(body, strlen(body), &rq, &e)) {
        free(body);
        if (body) srv_request_free(&rq);
        send_err(r, e.status ? e.status : 500, e.status ? e.message : "out of memory");
        return;
    }
    free(body);
    srv_loaded *lm;
    if (srv_acquire(s, rq.model, &lm, &e)) {
        srv_request_free(&rq);
        send_err(r, e.status, e.message);
        return;
    }
    double t_loaded = byoai_time_now();
    srv_job **jobs;
    int rc = srv_embed_run(s, r, &rq, lm, &jobs, &e);
    if (rc) send_err(r, e.status, e.message);
    else {
        json_t *embs = json_array();
        json_int_t tokens = 0;
        for (size_t i = 0; i < rq.n_inputs; i++) {
            json_t *v = json_array();
            for (uint32_t d = 0; d < jobs[i]->n_embd; d++) json_array_append_new(v, json_real(jobs[i]->embedding[d]));
            tokens += jobs[i]->n_prompt;
            if (old) {
                json_decref(embs);
                embs = v;
                break;
            }
            json_array_append_new(embs, v);
        }
        if (old) srv_send_json(r, 200, json_pack("{s:o}", "embedding", embs));
        else
            srv_send_json(r, 200, json_pack("{s:s,s:o,s:I,s:I,s:I}", "model", rq.model, "embeddings", embs,
                                            "total_duration", NS(byoai_time_now() - t0), "load_duration",
                                            NS(t_loaded - t0), "prompt_eval_count", tokens));
    }
    srv_embed_free(jobs, rq.n_inputs);
    srv_release(s, lm);
    srv_request_free(&rq);
}
