/*
 * Generations, whichever API asked for them (openai.c, ollama.c): a parsed
 * request becomes a job on its model's scheduler (or the cluster):
 * the chat template with the tools in the family's format, the bundle's
 * defaults, the grammar (response_format, or the tool calls the request
 * allows), and the budget. Also what both APIs do with the answer: wait
 * for it, join its text, hold back text that may be a tool call while
 * streaming, read the calls out at the end; and embeddings in windows.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

#define EMBED_WINDOW 16 /* embedding inputs queued at once per request */

json_t *srv_json_text(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    size_t w;
    char *o = byoai_utf8_sanitize(s, n, &w);
    j = o ? json_stringn(o, w) : NULL;
    free(o);
    return j ? j : json_string("");
}

int srv_tokenize(srv_loaded *lm, const char *text, size_t len, int32_t **toks, size_t *n, srv_error *e) {
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

/* the grammar of the tool calls this request allows, in the family's syntax */
static int tools_grammar(srv_gen *g, const srv_request *rq, srv_error *e) {
    byoai_tool_syntax syn = *g->syntax;
    if (!rq->parallel_tool_calls) syn.separator = NULL;
    const byoai_grammar_tool *defs = rq->tool_defs;
    size_t n = rq->n_tools;
    if (rq->tool_choice == SRV_TOOLS_NAMED)
        for (size_t i = 0; i < rq->n_tools; i++)
            if (!strcmp(rq->tool_defs[i].name, rq->tool_name)) defs = &rq->tool_defs[i], n = 1;
    byoai_error err = {0};
    int rc = byoai_grammar_for_tools(defs, n, &syn, rq->tool_choice == SRV_TOOLS_AUTO, &g->job->grammar, &err);
    if (rc == BYOAI_ENOMEM) return srv_err(e, 500, "server_error", NULL, NULL, "%s", err.msg);
    if (rc) return srv_err(e, 400, "invalid_request_error", NULL, "tools", "%s", err.msg);
    return 0;
}

/* Render messages (with their tool extras, may be NULL) in the model's
 * template, tools shown unless the request says none (a bundle's system
 * prompt first, unless the conversation has its own), and tokenize. */
static int render_chat(srv_gen *g, const srv_request *rq, const byoai_chat_message *msgs,
                       const byoai_chat_message_tools *extra, size_t n_msgs, int32_t **toks, size_t *n, srv_error *e) {
    const byoai_tokenizer *tok = byoai_model_tokenizer(g->lm->model);
    char bos[64] = "<s>", eos[64] = "</s>";
    size_t l;
    int32_t b = byoai_token_bos(tok), x = byoai_token_eos(tok);
    const char *t;
    if (b >= 0 && (t = byoai_token_text(tok, b, &l)) && l < sizeof bos) memcpy(bos, t, l), bos[l] = '\0';
    if (x >= 0 && (t = byoai_token_text(tok, x, &l)) && l < sizeof eos) memcpy(eos, t, l), eos[l] = '\0';
    char *text;
    size_t tl;
    byoai_error err;
    byoai_chat_message *with_sys = NULL;
    byoai_chat_message_tools *extra_sys = NULL;
    bool has_sys = false;
    for (size_t i = 0; i < n_msgs; i++) has_sys |= msgs[i].role == BYOAI_ROLE_SYSTEM;
    if (g->lm->system_prompt[0] && !has_sys && (with_sys = malloc((n_msgs + 1) * sizeof *with_sys)) &&
        (!extra || (extra_sys = calloc(n_msgs + 1, sizeof *extra_sys)))) {
        with_sys[0] = (byoai_chat_message){BYOAI_ROLE_SYSTEM, g->lm->system_prompt, strlen(g->lm->system_prompt)};
        memcpy(with_sys + 1, msgs, n_msgs * sizeof *msgs);
        if (extra) memcpy(extra_sys + 1, extra, n_msgs * sizeof *extra);
        msgs = with_sys;
        extra = extra_sys;
        n_msgs++;
    }
    /* with "tool_choice": "none" the model is not shown the tools */
    int rc = byoai_chat_render_tools(g->family, msgs, extra, n_msgs, (const char *const *)rq->tool_text,
                                     g->tools ? rq->n_tools : 0, true, bos, eos, &text, &tl, &err);
    free(with_sys);
    free(extra_sys);
    if (rc) return srv_err(e, 400, "invalid_request_error", NULL, "messages", "%s", err.msg);
    rc = srv_tokenize(g->lm, text, tl, toks, n, e);
    free(text);
    return rc;
}

/* The messages left (copied to out and out_x, counted) when the k oldest
 * that are not system messages are dropped; the last message always stays. */
static size_t drop_oldest(const srv_request *rq, size_t k, byoai_chat_message *out, byoai_chat_message_tools *out_x) {
    size_t m = 0;
    for (size_t i = 0; i < rq->n_messages; i++) {
        bool sys = rq->messages[i].role == BYOAI_ROLE_SYSTEM;
        if (!sys && k > 0 && i + 1 < rq->n_messages) {
            k--;
            continue;
        }
        if (out_x) out_x[m] = rq->msg_tools[i];
        out[m++] = rq->messages[i];
    }
    return m;
}

/* The chat's prompt tokens. When the conversation does not fit the model's
 * context (with room left to answer): a 400 that says so, or, with
 * "truncation": "auto", the oldest turns (not the system messages, not the
 * last message) dropped until it fits with room for the answer; then
 * g->truncated says how many went. */
static int fit_chat(srv_gen *g, srv_request *rq, int32_t **toks, size_t *n, srv_error *e) {
    int rc = render_chat(g, rq, rq->messages, rq->msg_tools, rq->n_messages, toks, n, e);
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
    byoai_chat_message_tools *kept_x = rq->msg_tools ? malloc(rq->n_messages * sizeof *kept_x) : NULL;
    if (!kept || (rq->msg_tools && !kept_x)) {
        free(kept);
        free(kept_x);
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    /* the fewest dropped turns that fit: binary search (fewer dropped, longer prompt) */
    size_t lo = 1, hi = droppable, best = SIZE_MAX;
    int32_t *best_toks = NULL;
    size_t best_n = 0;
    while (lo <= hi) {
        const size_t mid = lo + (hi - lo) / 2;
        size_t k = mid, m = drop_oldest(rq, k, kept, kept_x);
        /* start with a user turn: an answer (or a tool result) without its question reads oddly to templates */
        while (k < droppable && m > 1) {
            size_t first = 0;
            while (first < m && kept[first].role == BYOAI_ROLE_SYSTEM) first++;
            if (first >= m - 1 || kept[first].role == BYOAI_ROLE_USER) break;
            m = drop_oldest(rq, ++k, kept, kept_x);
        }
        int32_t *t = NULL;
        size_t tn = 0;
        if ((rc = render_chat(g, rq, kept, kept_x, m, &t, &tn, e))) break;
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
    free(kept_x);
    if (rc) {
        free(best_toks);
        return rc;
    }
    if (best == SIZE_MAX) { /* even the system messages and the last message are too long */
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

int srv_gen_prepare(srv_gen *g, srv_request *rq, srv_error *e) {
    srv_server *s = g->srv;
    int rc = srv_acquire(s, rq->model, &g->lm, e);
    if (rc) return rc;
    g->job = srv_job_new();
    if (!g->job) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    snprintf(g->model, sizeof g->model, "%s", rq->model);
    g->family = g->lm->family;
    g->syntax = byoai_chat_tool_syntax(g->family);
    g->tools = g->chat && rq->tool_choice != SRV_TOOLS_NONE;
    if (g->lm->cluster && g->tools && rq->tool_choice != SRV_TOOLS_AUTO)
        return srv_err(e, 400, "invalid_request_error", NULL, "tool_choice",
                       "models the cluster runs can be offered tools with \"tool_choice\": \"auto\" only (their calls "
                       "are not constrained by the tools' schemas yet)");
    const byoai_tokenizer *tok = byoai_model_tokenizer(g->lm->model);
    int32_t *toks = NULL;
    size_t n = 0;
    if (g->chat) {
        if ((rc = fit_chat(g, rq, &toks, &n, e))) return rc;
    } else if (rq->prompt_tokens) {
        n = rq->n_prompt_tokens;
        toks = malloc((n ? n : 1) * sizeof *toks);
        if (!toks) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        memcpy(toks, rq->prompt_tokens, n * sizeof *toks);
    } else {
        if ((rc = srv_tokenize(g->lm, rq->prompt, rq->prompt_len, &toks, &n, e))) return rc;
    }
    if (n > UINT32_MAX) {
        free(toks);
        return srv_err(e, 400, "invalid_request_error", "context_length_exceeded", NULL, "the prompt is too long");
    }
    g->job->prompt = toks;
    g->job->n_prompt = (uint32_t)n;
    apply_bundle_params(g->lm, rq);
    job_params(s, g->job, rq);
    if (g->tools && !g->lm->cluster) {
        if ((rc = tools_grammar(g, rq, e))) return rc;
    } else if (rq->grammar) {
        g->job->grammar = byoai_grammar_ref(rq->grammar);
        if (rq->schema_text && !(g->job->schema_text = strdup(rq->schema_text)))
            return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!g->chat && rq->s.echo) {
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

void srv_gen_stream_log(void *user, byoai_http_log *log) {
    const srv_gen *g = user;
    if (!g->job) return;
    byoai_http_log_add_int(log, "prompt_tokens", g->job->n_prompt);
    byoai_http_log_add_int(log, "completion_tokens", g->job->n_gen);
    byoai_http_log_add_int(log, "cached_tokens", g->job->n_prompt_cached);
}

void srv_gen_release(srv_gen *g) {
    if (g->job) srv_job_unref(g->job);
    if (g->lm) srv_release(g->srv, g->lm);
    free(g->echo);
    g->job = NULL;
    g->lm = NULL;
    g->echo = NULL;
}

int srv_gen_wait(srv_gen *g, byoai_http_req *r, srv_error *e) {
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
            return srv_err(e, 499, "invalid_request_error", "client_closed_request", NULL,
                           "the client closed the connection");
        }
    }
    /* done: the job is immutable now */
    if (j->err.status) {
        *e = j->err;
        return e->status;
    }
    if (!strcmp(j->finish, "cancelled"))
        return srv_err(e, 503, "server_error", "cancelled", NULL, "the request was cancelled: the server is shutting down");
    return 0;
}

char *srv_gen_text(const srv_gen *g, size_t *len) {
    const srv_job *j = g->job;
    size_t total = g->echo_len;
    for (size_t i = 0; i < j->n_pieces; i++) total += j->pieces[i].len;
    char *text = malloc(total + 1);
    if (!text) return NULL;
    size_t off = 0;
    if (g->echo_len) memcpy(text, g->echo, g->echo_len), off = g->echo_len;
    for (size_t i = 0; i < j->n_pieces; i++) {
        memcpy(text + off, j->pieces[i].text, j->pieces[i].len);
        off += j->pieces[i].len;
    }
    text[off] = '\0';
    *len = off;
    return text;
}

size_t srv_gen_releasable(const srv_gen *g, const char *text, size_t len, bool final) {
    if (!g->tools) return len;
    const byoai_tool_syntax *syn = g->syntax;
    if (syn->trigger_len == 0) { /* a call only at the start: hold until the first byte that is not space */
        size_t i = 0;
        while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')) i++;
        if (i == len) return final ? len : 0;
        if (text[i] == '{' || (len - i >= 1 && !strncmp(text + i, "<|python_tag|>", len - i < 14 ? len - i : 14)))
            return 0; /* a call (or its start): its text is never content */
        return len;
    }
    char trig[64];
    size_t tl = syn->trigger_len < sizeof trig - 1 ? syn->trigger_len : sizeof trig - 1;
    memcpy(trig, syn->prefix, tl);
    trig[tl] = '\0';
    char *stops[1] = {trig};
    bool found;
    size_t at = 0;
    size_t r = srv_stop_scan(text, len, stops, 1, final, &found, &at);
    return found ? at : r;
}

/* ---- embeddings --------------------------------------------------------------------------- */
int srv_embed_run(srv_server *s, byoai_http_req *r, srv_request *rq, srv_loaded *lm, srv_job ***out, srv_error *e) {
    size_t n = rq->n_inputs;
    srv_job **jobs = calloc(n, sizeof *jobs);
    *out = jobs;
    int rc = jobs ? 0 : srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    /* inputs go to the scheduler in windows, so that a long input list does
     * not fill the model's queue and starve other requests */
    bool gone = false;
    for (size_t w0 = 0; w0 < n && !rc && !gone; w0 += EMBED_WINDOW) {
        size_t w1 = w0 + EMBED_WINDOW < n ? w0 + EMBED_WINDOW : n;
        for (size_t i = w0; i < w1 && !rc; i++) {
            srv_job *j = srv_job_new();
            if (!j) {
                rc = srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
                break;
            }
            j->embed = true;
            j->deadline = byoai_time_now() + s->cfg.request_timeout;
            int32_t *toks = NULL;
            size_t nt = 0;
            if (rq->input_text[i]) {
                rc = srv_tokenize(lm, rq->input_text[i], rq->input_len[i], &toks, &nt, e);
            } else {
                nt = rq->input_ntok[i];
                toks = malloc(nt * sizeof *toks);
                if (toks) memcpy(toks, rq->input_tokens[i], nt * sizeof *toks);
                else rc = srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
            }
            j->prompt = toks;
            j->n_prompt = (uint32_t)nt;
            if (!rc) rc = lm->cluster ? srv_cluster_submit(s, lm, j, e) : srv_sched_submit(lm->sched, j, e);
            if (rc) { /* never submitted: nobody else holds it */
                snprintf(e->param, sizeof e->param, "input[%zu]", i);
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
    if (gone && !rc) rc = srv_err(e, 499, "invalid_request_error", "client_closed_request", NULL, "cancelled");
    for (size_t i = 0; i < n && jobs && !rc; i++) {
        srv_job *j = jobs[i];
        if (!j || j->err.status) {
            if (j) *e = j->err;
            rc = e->status ? e->status : 500;
            break;
        }
        if (!j->embedding) {
            rc = srv_err(e, 499, "invalid_request_error", "client_closed_request", NULL, "cancelled");
            break;
        }
    }
    return rc;
}

void srv_embed_free(srv_job **jobs, size_t n) {
    for (size_t i = 0; i < n && jobs; i++) srv_job_unref(jobs[i]);
    free(jobs);
}
