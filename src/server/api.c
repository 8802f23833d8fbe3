/*
 * Routing: every request passes here in this order:
 *   1. CORS: an Origin that is neither this server nor in the allow-list
 *      gets 403 (a web page elsewhere cannot drive the local API); allowed
 *      origins get the CORS headers, and preflights (OPTIONS) end here.
 *   2. Draining (shutdown): 503.
 *   3. Open endpoints: /api/health, /api/version, the web app's files.
 *   4. API keys (auth.c): 401 without a valid one when keys are on.
 *   5. The endpoint: /v1/... (openai.c), the Ollama API (ollama.c:
 *      /api/chat, /api/generate, /api/tags, ...), /metrics,
 *      /api/conversations, /api/models/....
 * Every answer is counted in the metrics by route and status class.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/cluster.h"
#include "server/server_internal.h"

void srv_open_inc(srv_server *s) { __atomic_add_fetch(&s->open, 1, __ATOMIC_ACQ_REL); }
void srv_open_dec(srv_server *s) { __atomic_sub_fetch(&s->open, 1, __ATOMIC_ACQ_REL); }

static void send_error(byoai_http_req *r, int status, const char *type, const char *code, const char *fmt, const char *arg) {
    srv_error e;
    srv_err(&e, status, type, code, NULL, fmt, arg);
    srv_send_error(r, &e);
}

static void method_not_allowed(byoai_http_req *r, const char *allow) {
    byoai_http_add_header(r, "Allow", allow);
    send_error(r, 405, "invalid_request_error", "method_not_allowed", "this endpoint accepts %s", allow);
}

/* ---- CORS ------------------------------------------------------------------------- */
static bool same_origin(byoai_http_req *r, const char *origin) {
    const char *host = byoai_http_header(r, "Host");
    if (!host) return false;
    const char *p = !strncmp(origin, "http://", 7) ? origin + 7 : !strncmp(origin, "https://", 8) ? origin + 8 : NULL;
    return p && !strcmp(p, host);
}

/* DNS rebinding: a web page whose name resolves to 127.0.0.1 would look
 * same-origin to the browser. A server that listens on loopback only
 * answers requests addressed to a loopback name. */
static bool loopback_bind(const char *host) {
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

static bool loopback_host_header(const char *h) {
    char name[256];
    size_t n = 0;
    if (h[0] == '[') { /* [v6]:port */
        const char *e = strchr(h, ']');
        if (!e || (size_t)(e - h - 1) >= sizeof name) return false;
        memcpy(name, h + 1, (size_t)(e - h - 1));
        name[e - h - 1] = '\0';
        return !strcmp(name, "::1");
    }
    while (h[n] && h[n] != ':' && n < sizeof name - 1) name[n] = h[n], n++;
    name[n] = '\0';
    return !strcasecmp(name, "localhost") || !strncmp(name, "127.", 4);
}

/* Returns false when the request has been answered (403 or preflight). */
static bool cors(srv_server *s, byoai_http_req *r) {
    const char *host = byoai_http_header(r, "Host");
    if (loopback_bind(s->cfg.host) && host && !loopback_host_header(host)) {
        send_error(r, 403, "invalid_request_error", "host_not_allowed",
                   "this server listens on loopback only and answers requests for localhost or 127.0.0.1, not "
                   "'%s' (start it with --host 0.0.0.0 to serve other names)", host);
        return false;
    }
    const char *origin = byoai_http_header(r, "Origin");
    if (!origin || same_origin(r, origin)) return true;
    bool allowed = false, any = false;
    for (uint32_t i = 0; i < s->cfg.n_cors_origins; i++) {
        if (!strcmp(s->cfg.cors_origins[i], "*")) any = allowed = true;
        else if (!strcmp(s->cfg.cors_origins[i], origin)) allowed = true;
    }
    if (!allowed) {
        send_error(r, 403, "invalid_request_error", "origin_not_allowed",
                   "requests from the web origin '%s' are not allowed; start the server with --cors-origin ORIGIN",
                   origin);
        return false;
    }
    byoai_http_add_header(r, "Access-Control-Allow-Origin", any ? "*" : origin);
    byoai_http_add_header(r, "Vary", "Origin");
    byoai_http_add_header(r, "Access-Control-Expose-Headers", "Content-Type, X-Byoai-Truncated-Messages");
    if (!strcmp(byoai_http_method(r), "OPTIONS")) {
        byoai_http_add_header(r, "Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        const char *req_headers = byoai_http_header(r, "Access-Control-Request-Headers");
        byoai_http_add_header(r, "Access-Control-Allow-Headers",
                              req_headers && strlen(req_headers) < 1024 ? req_headers : "Authorization, Content-Type");
        byoai_http_add_header(r, "Access-Control-Max-Age", "600");
        byoai_http_send(r, 204, NULL, "", 0);
        return false;
    }
    return true;
}

/* ---- native endpoints ---------------------------------------------------------------- */
static void health(srv_server *s, byoai_http_req *r) {
    srv_gauges g = {0};
    srv_models_gauges(s->models, &g);
    bool draining = __atomic_load_n(&s->draining, __ATOMIC_ACQUIRE);
    srv_send_json(r, draining ? 503 : 200,
                  json_pack("{s:s,s:f,s:I,s:I,s:b}", "status", draining ? "shutting down" : "ok", "uptime_seconds",
                            byoai_time_now() - s->started, "models_loaded", (json_int_t)g.loaded_models,
                            "models_known", (json_int_t)g.known_models, "auth", srv_auth_enabled(s->auth)));
}

/* GET /api/cluster: this server's cluster node as `byoai cluster status
 * --json` shows it (members, links, stages, deployments, events); 404 when
 * the server runs without --cluster. */
static void cluster_status(srv_server *s, byoai_http_req *r) {
    if (!s->cluster) {
        send_error(r, 404, "invalid_request_error", "no_cluster", "%s",
                   "this server runs no cluster node; start it with --cluster (docs/cluster.md)");
        return;
    }
    char *text = NULL;
    byoai_error err = {0};
    json_t *j = NULL;
    if (byoai_cluster_status_json(s->cluster, &text, &err) == 0) j = json_loads(text, 0, NULL);
    free(text);
    if (!j) {
        send_error(r, 500, "server_error", NULL, "cannot read the cluster's state: %s", err.msg[0] ? err.msg : "out of memory");
        return;
    }
    srv_send_json(r, 200, j);
}

static void version(byoai_http_req *r) {
    srv_send_json(r, 200, json_pack("{s:s,s:s,s:s}", "name", "byoai", "version", BYOAI_VERSION, "api", "openai-v1"));
}

static void metrics(srv_server *s, byoai_http_req *r) {
    srv_gauges g = {0};
    srv_models_gauges(s->models, &g);
    g.rss_bytes = srv_rss_bytes();
    g.open_requests = (uint64_t)__atomic_load_n(&s->open, __ATOMIC_ACQUIRE);
    char *text = srv_metrics_render(s->metrics, &g);
    if (!text) {
        send_error(r, 500, "server_error", NULL, "%s", "out of memory");
        return;
    }
    byoai_http_send(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

static void static_file(srv_server *s, byoai_http_req *r, const char *path) {
    const srv_asset *a = s->cfg.web ? srv_web_find(path) : NULL;
    if (!a) {
        send_error(r, 404, "not_found_error", "not_found", "nothing at %s", path);
        return;
    }
    char etag[80];
    snprintf(etag, sizeof etag, "\"%.16s\"", a->etag);
    byoai_http_add_header(r, "ETag", etag);
    byoai_http_add_header(r, "Cache-Control", "no-cache");
    byoai_http_add_header(r, "X-Content-Type-Options", "nosniff");
    byoai_http_add_header(r, "Referrer-Policy", "no-referrer");
    byoai_http_add_header(r, "X-Frame-Options", "DENY");
    /* defence in depth: the app renders model output as text, and even a
     * bug there could not run script or load anything from elsewhere */
    byoai_http_add_header(r, "Content-Security-Policy",
                          "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                          "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                          "form-action 'none'");
    const char *inm = byoai_http_header(r, "If-None-Match");
    if (inm && strstr(inm, etag)) {
        byoai_http_send(r, 304, NULL, "", 0);
        return;
    }
    byoai_http_send(r, 200, a->content_type, a->data, a->len);
}

static void models_admin(srv_server *s, byoai_http_req *r, const char *rest) {
    const char *m = byoai_http_method(r);
    if (!strcmp(rest, "/install")) {
        if (strcmp(m, "POST")) return method_not_allowed(r, "POST");
        srv_install_handle(s, r);
        return;
    }
    if (rest[0] != '/' || !rest[1]) {
        send_error(r, 404, "not_found_error", "not_found", "nothing at /api/models%s", rest);
        return;
    }
    if (strcmp(m, "DELETE")) return method_not_allowed(r, "DELETE");
    const char *name = rest + 1;
    srv_error e = {0};
    if (srv_models_remove(s->models, name, &e)) {
        srv_send_error(r, &e);
        return;
    }
    srv_send_json(r, 200, json_pack("{s:s,s:s,s:b}", "id", name, "object", "model", "deleted", 1));
}

/* ---- the router ----------------------------------------------------------------------- */
static bool is(const char *a, const char *b) { return !strcmp(a, b); }
static bool prefix(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static const char *route_name(const char *path) {
    static const char *known[] = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models",
                                  "/api/health", "/api/version", "/metrics", "/api/conversations", "/api/models",
                                  "/api/tokenize", "/api/detokenize", "/api/cluster", "/api/chat", "/api/generate",
                                  "/api/tags", "/api/show", "/api/embeddings", "/api/embed", "/api/ps", "/api/pull",
                                  "/api/delete"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (prefix(path, known[i])) return known[i];
    if (prefix(path, "/v1/") || prefix(path, "/api/")) return "other";
    return "static";
}

/* Returns true when the response is a stream that records its own metrics. */
static bool dispatch(srv_server *s, byoai_http_req *r) {
    const char *m = byoai_http_method(r), *p = byoai_http_path(r);
    if (!cors(s, r)) return false;
    bool get = is(m, "GET") || is(m, "HEAD"), post = is(m, "POST");
    if (is(p, "/api/health")) {
        if (!get) method_not_allowed(r, "GET");
        else health(s, r);
        return false;
    }
    if (__atomic_load_n(&s->draining, __ATOMIC_ACQUIRE)) {
        byoai_http_add_header(r, "Connection", "close");
        send_error(r, 503, "server_error", "unavailable", "%s", "the server is shutting down");
        return false;
    }
    if (is(p, "/api/version")) {
        if (!get) method_not_allowed(r, "GET");
        else version(r);
        return false;
    }
    bool api = prefix(p, "/v1/") || prefix(p, "/api/") || is(p, "/metrics") || is(p, "/v1");
    if (!api) {
        if (!get) method_not_allowed(r, "GET");
        else static_file(s, r, p);
        return false;
    }
    srv_error e = {0};
    if (srv_auth_check(s->auth, byoai_http_header(r, "Authorization"), &e)) {
        byoai_http_add_header(r, "WWW-Authenticate", "Bearer");
        srv_send_error(r, &e);
        return false;
    }
    if (is(p, "/v1/chat/completions")) {
        if (!post) method_not_allowed(r, "POST");
        else return srv_openai_chat(s, r);
    } else if (is(p, "/v1/completions")) {
        if (!post) method_not_allowed(r, "POST");
        else return srv_openai_completions(s, r);
    } else if (is(p, "/v1/embeddings")) {
        if (!post) method_not_allowed(r, "POST");
        else srv_openai_embeddings(s, r);
    } else if (is(p, "/v1/models")) {
        if (!get) method_not_allowed(r, "GET");
        else srv_openai_models(s, r, NULL);
    } else if (prefix(p, "/v1/models/") && p[11]) {
        if (!get) method_not_allowed(r, "GET");
        else srv_openai_models(s, r, p + 11);
    } else if (is(p, "/metrics")) {
        if (!get) method_not_allowed(r, "GET");
        else metrics(s, r);
    } else if (is(p, "/api/cluster")) {
        if (!get) method_not_allowed(r, "GET");
        else cluster_status(s, r);
    } else if (is(p, "/api/tokenize")) {
        if (!post) method_not_allowed(r, "POST");
        else srv_api_tokenize(s, r);
    } else if (is(p, "/api/detokenize")) {
        if (!post) method_not_allowed(r, "POST");
        else srv_api_detokenize(s, r);
    } else if (is(p, "/api/chat")) {
        if (!post) method_not_allowed(r, "POST");
        else return srv_ollama_chat(s, r);
    } else if (is(p, "/api/generate")) {
        if (!post) method_not_allowed(r, "POST");
        else return srv_ollama_generate(s, r);
    } else if (is(p, "/api/tags")) {
        if (!get) method_not_allowed(r, "GET");
        else srv_ollama_tags(s, r);
    } else if (is(p, "/api/ps")) {
        if (!get) method_not_allowed(r, "GET");
        else srv_ollama_ps(s, r);
    } else if (is(p, "/api/show")) {
        if (!post) method_not_allowed(r, "POST");
        else srv_ollama_show(s, r);
    } else if (is(p, "/api/embed") || is(p, "/api/embeddings")) {
        if (!post) method_not_allowed(r, "POST");
        else srv_ollama_embed(s, r, is(p, "/api/embeddings"));
    } else if (is(p, "/api/pull")) {
        if (!post) method_not_allowed(r, "POST");
        else srv_ollama_pull(s, r);
    } else if (is(p, "/api/delete")) {
        if (!is(m, "DELETE")) method_not_allowed(r, "DELETE");
        else srv_ollama_delete(s, r);
    } else if (prefix(p, "/api/conversations") && (p[18] == '\0' || p[18] == '/')) {
        srv_conversations_handle(s->db, r, p + 18);
    } else if (prefix(p, "/api/models")) {
        models_admin(s, r, p + 11);
    } else {
        send_error(r, 404, "invalid_request_error", "unknown_url", "unknown endpoint %s", p);
    }
    return false;
}

/* ---- the log line ---------------------------------------------------------------------- */
/* The request this thread is handling, for the fields of its log line. */
static __thread byoai_http_req *t_request;

void srv_log_model(const char *name) {
    if (t_request) byoai_http_log_str(t_request, "model", name);
}

/* Token counts from the answer's "usage" object (chat, completions,
 * embeddings). The answer is compact JSON from jansson: inside a string
 * every quote is escaped, so `usage":{` only occurs as the key itself. */
static void log_usage(byoai_http_req *r) {
    size_t len;
    const char *b = byoai_http_answer_body(r, &len);
    if (!b || len < 16 || byoai_http_status(r) != 200) return;
    const char *key = "\"usage\":{", *last = NULL;
    for (const char *p = b; (p = memmem(p, len - (size_t)(p - b), key, 9)); p++) last = p;
    if (!last) return;
    json_t *u = json_loadb(last + 8, len - (size_t)(last + 8 - b), JSON_DISABLE_EOF_CHECK, NULL);
    json_t *pt = json_object_get(u, "prompt_tokens"), *ct = json_object_get(u, "completion_tokens");
    if (json_is_integer(pt)) byoai_http_log_int(r, "prompt_tokens", (long long)json_integer_value(pt));
    if (json_is_integer(ct)) byoai_http_log_int(r, "completion_tokens", (long long)json_integer_value(ct));
    json_t *ca = json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens");
    if (json_is_integer(ca)) byoai_http_log_int(r, "cached_tokens", (long long)json_integer_value(ca));
    json_decref(u);
}

void srv_api_handle(void *user, byoai_http_req *r) {
    srv_server *s = user;
    double t0 = byoai_time_now();
    srv_open_inc(s);
    t_request = r;
    bool streamed = dispatch(s, r);
    t_request = NULL;
    if (!streamed) log_usage(r);
    srv_open_dec(s);
    if (!streamed)
        srv_metrics_request(s->metrics, route_name(byoai_http_path(r)), byoai_http_status(r) ? byoai_http_status(r) : 500,
                            byoai_time_now() - t0);
}
