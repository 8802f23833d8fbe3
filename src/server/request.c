/*
 * OpenAI request bodies: parse and validate completely before any work.
 * Every failure is a 400 in OpenAI's error shape naming the field ("param")
 * and saying what was expected. Unknown fields are ignored, as OpenAI's
 * clients send fields newer than any server.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

int srv_err(srv_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...) {
    if (!e) return status;
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", type ? type : "invalid_request_error");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

json_t *srv_error_json(const srv_error *e) {
    json_t *inner = json_object();
    json_object_set_new(inner, "message", json_string(e->message));
    json_object_set_new(inner, "type", json_string(e->type[0] ? e->type : "server_error"));
    json_object_set_new(inner, "param", e->param[0] ? json_string(e->param) : json_null());
    json_object_set_new(inner, "code", e->code[0] ? json_string(e->code) : json_null());
    json_t *o = json_object();
    json_object_set_new(o, "error", inner);
    return o;
}

#define BAD(param, ...) srv_err(e, 400, "invalid_request_error", NULL, param, __VA_ARGS__)

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

json_t *srv_parse_object(const char *body, size_t len, srv_error *e) {
    if (len == 0) {
        BAD(NULL, "the request body is empty; send a JSON object");
        return NULL;
    }
    if (!byoai_utf8_valid(body, len)) {
        BAD(NULL, "the request body is not valid UTF-8");
        return NULL;
    }
    json_error_t je;
    /* a key given twice would be read one way here and maybe another way by
     * a proxy or a log in front: refuse, as index.json does */
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!root && json_error_code(&je) == json_error_duplicate_key) {
        /* jansson says: duplicate object key near '"KEY"' */
        const char *k = strstr(je.text, "near '");
        char key[120] = "?";
        if (k) {
            snprintf(key, sizeof key, "%s", k + 6);
            size_t n = strlen(key);
            if (n && key[n - 1] == '\'') key[n - 1] = '\0';
        }
        srv_err(e, 400, "invalid_request_error", "duplicate_key", NULL,
                "the request body has the key %s more than once (line %d, column %d); send each key once", key,
                je.line, je.column);
        return NULL;
    }
    if (!root) {
        BAD(NULL, "the request body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        BAD(NULL, "the request body must be a JSON object, not %s", type_name(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

/* optional number in [lo, hi]; absent or null keeps *out */
static int get_number(json_t *o, const char *key, double lo, double hi, double *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return BAD(key, "'%s' must be a number, not %s", key, type_name(v));
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi) return BAD(key, "'%s' must be between %g and %g (got %g)", key, lo, hi, d);
    *out = d;
    return 0;
}

/* optional integer in [lo, hi]; absent or null keeps *out */
static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    long long x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15)
        x = (long long)json_real_value(v);
    else return BAD(key, "'%s' must be an integer, not %s", key, type_name(v));
    if (x < lo || x > hi) return BAD(key, "'%s' must be between %lld and %lld (got %lld)", key, lo, hi, x);
    *out = x;
    return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return BAD(key, "'%s' must be true or false, not %s", key, type_name(v));
    *out = json_is_true(v);
    return 0;
}

static int get_model(json_t *root, srv_request *r, srv_error *e) {
    json_t *m = json_object_get(root, "model");
    if (!m) return BAD("model", "'model' is required: the name of a model (GET /v1/models lists them)");
    if (!json_is_string(m)) return BAD("model", "'model' must be a string, not %s", type_name(m));
    size_t n = json_string_length(m);
    if (n == 0 || n >= sizeof r->model) return BAD("model", "'model' must be 1 to %zu bytes long", sizeof r->model - 1);
    if (memchr(json_string_value(m), '\0', n)) return BAD("model", "'model' must not contain NUL characters");
    memcpy(r->model, json_string_value(m), n);
    r->model[n] = '\0';
    return 0;
}

static int add_stop(srv_request *r, json_t *v, srv_error *e) {
    if (!json_is_string(v)) return BAD("stop", "'stop' must be a string or an array of strings, not %s", type_name(v));
    size_t n = json_string_length(v);
    if (n == 0) return 0; /* an empty stop string matches nothing */
    if (n > SRV_MAX_STOP_LEN) return BAD("stop", "each stop string must be at most %d bytes", SRV_MAX_STOP_LEN);
    if (r->s.n_stop >= SRV_MAX_STOP) return BAD("stop", "at most %d stop strings are allowed", SRV_MAX_STOP);
    char *s = byoai_strndup(json_string_value(v), n);
    if (!s) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    r->s.stop[r->s.n_stop++] = s;
    return 0;
}

/* the parameters chat and completions share */
static int parse_sampling(json_t *root, const srv_limits *lim, srv_request *r, srv_error *e) {
    srv_sampling *s = &r->s;
    s->temperature = 1.0f;
    s->top_p = 1.0f;
    s->top_k = 0;
    s->min_p = 0.0f;
    s->repeat_penalty = 1.0f;
    s->max_tokens = -1;
    double d;
    long long i;
    int rc;
    d = 1.0;
    if ((rc = get_number(root, "temperature", 0, 2, &d, e))) return rc;
    s->temperature = (float)d;
    d = 1.0;
    if ((rc = get_number(root, "top_p", 0, 1, &d, e))) return rc;
    if (d == 0) s->temperature = 0; /* only the most likely token is left */
    else s->top_p = (float)d;
    i = 0;
    if ((rc = get_int(root, "top_k", 0, 1 << 24, &i, e))) return rc;
    s->top_k = (int32_t)i;
    d = 0;
    if ((rc = get_number(root, "min_p", 0, 1, &d, e))) return rc;
    s->min_p = (float)d;
    d = 1.0;
    if ((rc = get_number(root, "repeat_penalty", 0.01, 10, &d, e))) return rc;
    s->repeat_penalty = (float)d;
    d = 0;
    if ((rc = get_number(root, "presence_penalty", -2, 2, &d, e))) return rc;
    s->presence_penalty = (float)d;
    d = 0;
    if ((rc = get_number(root, "frequency_penalty", -2, 2, &d, e))) return rc;
    s->frequency_penalty = (float)d;

    const char *mt = json_object_get(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    json_t *mv = json_object_get(root, mt);
    if (mv && !json_is_null(mv)) {
        if (!json_is_integer(mv)) return BAD(mt, "'%s' must be an integer, not %s", mt, type_name(mv));
        long long x = json_integer_value(mv);
        if (x < 1) return BAD(mt, "'%s' must be at least 1 (got %lld)", mt, x);
        if (x > lim->max_tokens)
            return BAD(mt, "'%s' is %lld but this server generates at most %u tokens per request (--max-tokens)", mt,
                       x, lim->max_tokens);
        s->max_tokens = x;
    }
    long long n = 1;
    if ((rc = get_int(root, "n", 1, 1 << 20, &n, e))) return rc;
    if (n != 1) return BAD("n", "'n' must be 1: this server returns one choice per request");

    json_t *seed = json_object_get(root, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) return BAD("seed", "'seed' must be an integer, not %s", type_name(seed));
        s->has_seed = true;
        s->seed = (uint64_t)json_integer_value(seed);
    }
    json_t *stop = json_object_get(root, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_array(stop)) {
            if (json_array_size(stop) > SRV_MAX_STOP) return BAD("stop", "at most %d stop strings are allowed", SRV_MAX_STOP);
            size_t k;
            json_t *v;
            json_array_foreach(stop, k, v) if ((rc = add_stop(r, v, e))) return rc;
        } else if ((rc = add_stop(r, stop, e))) return rc;
    }
    if ((rc = get_bool(root, "stream", &s->stream, e))) return rc;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return BAD("stream_options", "'stream_options' must be an object, not %s", type_name(so));
        if ((rc = get_bool(so, "include_usage", &s->include_usage, e))) return rc;
    }
    json_t *rf = json_object_get(root, "response_format");
    if (rf && !json_is_null(rf)) {
        if (!json_is_object(rf))
            return BAD("response_format", "'response_format' must be an object like {\"type\": \"json_object\"}");
        json_t *t = json_object_get(rf, "type");
        if (!json_is_string(t)) return BAD("response_format.type", "'response_format.type' must be a string");
        const char *ts = json_string_value(t);
        byoai_error err = {0};
        if (!strcmp(ts, "json_object")) {
            s->json_mode = true;
            if (byoai_grammar_json_object(&r->grammar, &err)) return srv_err(e, 500, "server_error", NULL, NULL, "%s", err.msg);
        } else if (!strcmp(ts, "json_schema")) {
            json_t *js = json_object_get(rf, "json_schema");
            if (!json_is_object(js))
                return BAD("response_format.json_schema", "'response_format.json_schema' must be an object: "
                           "{\"name\": ..., \"schema\": {...}, \"strict\": true}");
            json_t *sch = json_object_get(js, "schema");
            if (!sch) return BAD("response_format.json_schema.schema", "'response_format.json_schema.schema' is required");
            if ((rc = srv_compile_schema_text(sch, "response_format.json_schema.schema", &r->grammar, &r->schema_text, e)))
                return rc;
        } else if (strcmp(ts, "text"))
            return BAD("response_format.type", "response_format type '%s' is not supported (use \"text\", "
                       "\"json_object\" or \"json_schema\")", ts);
    }
    return 0;
}

int srv_compile_schema(json_t *schema, const char *param, byoai_grammar **out, srv_error *e) {
    return srv_compile_schema_text(schema, param, out, NULL, e);
}

int srv_compile_schema_text(json_t *schema, const char *param, byoai_grammar **out, char **keep, srv_error *e) {
    *out = NULL;
    if (keep) *keep = NULL;
    if (!json_is_object(schema) && !json_is_boolean(schema))
        return BAD(param, "'%s' must be a JSON Schema (an object)", param);
    char *text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    byoai_error err = {0};
    int rc = byoai_grammar_from_schema(text, strlen(text), out, &err);
    if (!rc && keep) *keep = text;
    else free(text);
    if (rc == BYOAI_ENOMEM) return srv_err(e, 500, "server_error", NULL, NULL, "%s", err.msg);
    if (rc) return BAD(param, "%s", err.msg);
    return 0;
}

/* tools, tool_choice, parallel_tool_calls */
static bool tool_name_ok(const char *n, size_t len) {
    if (len == 0 || len > 64) return false;
    for (size_t i = 0; i < len; i++)
        if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') || (n[i] >= '0' && n[i] <= '9') ||
              n[i] == '_' || n[i] == '-' || n[i] == '.'))
            return false;
    return true;
}

static int parse_tools(json_t *root, srv_request *r, srv_error *e) {
    json_t *tools = json_object_get(root, "tools");
    r->parallel_tool_calls = true;
    int rc = get_bool(root, "parallel_tool_calls", &r->parallel_tool_calls, e);
    if (rc) return rc;
    json_t *tc = json_object_get(root, "tool_choice");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return BAD("tools", "'tools' must be an array of {\"type\": \"function\", ...}");
        size_t n = json_array_size(tools);
        if (n > SRV_MAX_TOOLS) return BAD("tools", "at most %d tools are allowed", SRV_MAX_TOOLS);
        r->tool_text = calloc(n ? n : 1, sizeof *r->tool_text);
        r->tool_defs = calloc(n ? n : 1, sizeof *r->tool_defs);
        if (!r->tool_text || !r->tool_defs) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        for (size_t i = 0; i < n; i++) {
            char param[64];
            snprintf(param, sizeof param, "tools[%zu]", i);
            json_t *t = json_array_get(tools, i), *ty = json_object_get(t, "type"), *fn = json_object_get(t, "function");
            if (!json_is_object(t)) return BAD(param, "'%s' must be an object", param);
            if (!json_is_string(ty) || strcmp(json_string_value(ty), "function"))
                return BAD(param, "'%s.type' must be \"function\" (the only kind of tool)", param);
            if (!json_is_object(fn)) return BAD(param, "'%s.function' must be an object {name, description, parameters}", param);
            json_t *name = json_object_get(fn, "name"), *params = json_object_get(fn, "parameters");
            if (!json_is_string(name) || !tool_name_ok(json_string_value(name), json_string_length(name)))
                return BAD(param, "'%s.function.name' must be 1 to 64 letters, digits, '_', '-' or '.'", param);
            for (size_t k = 0; k < i; k++)
                if (!strcmp(r->tool_defs[k].name, json_string_value(name)))
                    return BAD(param, "two tools are named '%s'", json_string_value(name));
            if (params && !json_is_null(params) && !json_is_object(params))
                return BAD(param, "'%s.function.parameters' must be a JSON Schema object", param);
            r->tool_defs[i].name = json_string_value(name);
            if (params && json_is_object(params)) {
                char *pt = json_dumps(params, JSON_COMPACT);
                if (!pt) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
                r->tool_defs[i].parameters = pt;
                r->tool_defs[i].parameters_len = strlen(pt);
            }
            /* as the reference templates print it: {"type": "function", "function": {...}} */
            json_t *clean = json_pack("{s:s,s:O}", "type", "function", "function", fn);
            r->tool_text[i] = clean ? json_dumps(clean, 0) : NULL;
            json_decref(clean);
            r->n_tools = i + 1;
            if (!r->tool_text[i]) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
            /* the schema must compile: say so now, not at generation */
            if (r->tool_defs[i].parameters) {
                byoai_grammar *g;
                byoai_error err = {0};
                byoai_tool_syntax syn = {"", 0, "", NULL, "arguments", false};
                if (byoai_grammar_for_tools(&r->tool_defs[i], 1, &syn, false, &g, &err))
                    return BAD(param, "%s", err.msg);
                byoai_grammar_free(g);
            }
        }
    }
    r->tool_choice = r->n_tools ? SRV_TOOLS_AUTO : SRV_TOOLS_NONE;
    if (tc && !json_is_null(tc)) {
        if (json_is_string(tc)) {
            const char *v = json_string_value(tc);
            if (!strcmp(v, "none")) r->tool_choice = SRV_TOOLS_NONE;
            else if (!strcmp(v, "auto")) r->tool_choice = r->n_tools ? SRV_TOOLS_AUTO : SRV_TOOLS_NONE;
            else if (!strcmp(v, "required")) r->tool_choice = SRV_TOOLS_REQUIRED;
            else return BAD("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                            "{\"type\": \"function\", \"function\": {\"name\": ...}}, not '%s'", v);
        } else if (json_is_object(tc)) {
            json_t *fn = json_object_get(tc, "function"), *name = json_object_get(fn, "name");
            if (!json_is_string(name))
                return BAD("tool_choice", "'tool_choice' must name a function: {\"type\": \"function\", "
                           "\"function\": {\"name\": ...}}");
            r->tool_choice = SRV_TOOLS_NAMED;
            snprintf(r->tool_name, sizeof r->tool_name, "%s", json_string_value(name));
            bool found = false;
            for (size_t i = 0; i < r->n_tools; i++) found |= !strcmp(r->tool_defs[i].name, r->tool_name);
            if (!found) return BAD("tool_choice", "'tool_choice' names '%s', which is not in 'tools'", json_string_value(name));
        } else return BAD("tool_choice", "'tool_choice' must be a string or an object");
        if (r->tool_choice == SRV_TOOLS_REQUIRED && !r->n_tools)
            return BAD("tool_choice", "'tool_choice' is \"required\" but there are no 'tools'");
    }
    if (r->tool_choice != SRV_TOOLS_NONE && r->grammar)
        return BAD("response_format", "'response_format' cannot be combined with tools the model may call; use "
                   "\"tool_choice\": \"none\" or leave 'response_format' out");
    return 0;
}

/* message content: a string, null, or an array of {"type":"text","text":...} parts */
static int parse_content(srv_request *r, size_t idx, json_t *c, byoai_chat_message *m, srv_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", idx);
    if (!c || json_is_null(c)) {
        m->content = "";
        m->content_len = 0;
        return 0;
    }
    if (json_is_string(c)) {
        m->content = json_string_value(c);
        m->content_len = json_string_length(c);
        return 0;
    }
    if (!json_is_array(c)) return BAD(param, "'%s' must be a string or an array of text parts, not %s", param, type_name(c));
    size_t total = 0, k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *t = json_object_get(part, "type"), *tx = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(t))
            return BAD(param, "'%s[%zu]' must be an object with a \"type\"", param, k);
        if (strcmp(json_string_value(t), "text"))
            return BAD(param, "content parts of type '%s' are not supported (only \"text\")", json_string_value(t));
        if (!json_is_string(tx)) return BAD(param, "'%s[%zu].text' must be a string", param, k);
        total += json_string_length(tx);
    }
    char *buf = malloc(total + 1);
    char **owned = realloc(r->owned, (r->n_owned + 1) * sizeof *owned);
    if (!buf || !owned) {
        free(buf);
        if (owned) r->owned = owned;
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    r->owned = owned;
    r->owned[r->n_owned++] = buf;
    size_t off = 0;
    json_array_foreach(c, k, part) {
        json_t *tx = json_object_get(part, "text");
        memcpy(buf + off, json_string_value(tx), json_string_length(tx));
        off += json_string_length(tx);
    }
    buf[off] = '\0';
    m->content = buf;
    m->content_len = off;
    return 0;
}

/* an assistant's tool_calls, or a tool message's tool_call_id */
static int parse_message_tools(srv_request *r, size_t i, json_t *m, size_t n_msgs, srv_error *e) {
    char param[80];
    if (!r->msg_tools) {
        r->msg_tools = calloc(n_msgs, sizeof *r->msg_tools);
        if (!r->msg_tools) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    byoai_chat_message_tools *x = &r->msg_tools[i];
    if (r->messages[i].role == BYOAI_ROLE_TOOL) {
        json_t *id = json_object_get(m, "tool_call_id"), *name = json_object_get(m, "name");
        if (json_is_string(id)) x->tool_call_id = json_string_value(id);
        if (json_is_string(name)) x->name = json_string_value(name);
        return 0;
    }
    json_t *calls = json_object_get(m, "tool_calls");
    size_t n = json_array_size(calls);
    if (n > 64) {
        snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
        return BAD(param, "'%s' has more than 64 calls", param);
    }
    byoai_chat_tool_call *c = calloc(n, sizeof *c);
    char **owned = realloc(r->owned, (r->n_owned + 1) * sizeof *owned);
    if (!c || !owned) {
        free(c);
        if (owned) r->owned = owned;
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    r->owned = owned;
    r->owned[r->n_owned++] = (char *)c;
    for (size_t k = 0; k < n; k++) {
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu]", i, k);
        json_t *tc = json_array_get(calls, k), *fn = json_object_get(tc, "function");
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments"), *id = json_object_get(tc, "id");
        if (!json_is_object(tc) || !json_is_object(fn) || !json_is_string(name))
            return BAD(param, "'%s' must be {\"id\", \"type\": \"function\", \"function\": {\"name\", "
                       "\"arguments\"}}", param);
        c[k].name = json_string_value(name);
        c[k].id = json_is_string(id) ? json_string_value(id) : NULL;
        if (json_is_string(args)) c[k].arguments = json_string_value(args);
        else if (json_is_object(args)) { /* Ollama-style: an object */
            char *t = json_dumps(args, JSON_COMPACT);
            char **o2 = t ? realloc(r->owned, (r->n_owned + 1) * sizeof *o2) : NULL;
            if (!o2) {
                free(t);
                return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
            }
            r->owned = o2;
            r->owned[r->n_owned++] = t;
            c[k].arguments = t;
        } else if (!args || json_is_null(args)) c[k].arguments = "{}";
        else return BAD(param, "'%s.function.arguments' must be a string of JSON", param);
    }
    x->tool_calls = c;
    x->n_tool_calls = n;
    return 0;
}

int srv_parse_chat(const char *body, size_t len, const srv_limits *lim, srv_request *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    r->root = srv_parse_object(body, len, e);
    if (!r->root) return e->status;
    int rc;
    if ((rc = get_model(r->root, r, e))) return rc;
    json_t *msgs = json_object_get(r->root, "messages");
    if (!msgs) return BAD("messages", "'messages' is required: an array of {\"role\", \"content\"} objects");
    if (!json_is_array(msgs)) return BAD("messages", "'messages' must be an array, not %s", type_name(msgs));
    size_t n = json_array_size(msgs);
    if (n == 0) return BAD("messages", "'messages' must contain at least one message");
    if (n > lim->max_messages)
        return BAD("messages", "'messages' has %zu messages; this server accepts at most %u per request "
                   "(--max-messages)", n, lim->max_messages);
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) return BAD(param, "'%s' must be an object, not %s", param, type_name(m));
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role)) return BAD(param, "'%s' must be a string", param);
        if (!byoai_chat_role_parse(json_string_value(role), &r->messages[i].role))
            return BAD(param, "'%s' is '%s'; expected \"system\", \"developer\", \"user\", \"assistant\" or "
                       "\"tool\"", param, json_string_value(role));
        json_t *content = json_object_get(m, "content");
        json_t *calls = json_object_get(m, "tool_calls");
        bool has_calls = r->messages[i].role == BYOAI_ROLE_ASSISTANT && json_is_array(calls) && json_array_size(calls);
        if (!content && r->messages[i].role != BYOAI_ROLE_ASSISTANT) {
            snprintf(param, sizeof param, "messages[%zu].content", i);
            return BAD(param, "'%s' is required", param);
        }
        if ((rc = parse_content(r, i, content, &r->messages[i], e))) return rc;
        if (has_calls || r->messages[i].role == BYOAI_ROLE_TOOL) {
            if ((rc = parse_message_tools(r, i, m, n, e))) return rc;
        }
        r->n_messages++;
    }
    if ((rc = parse_sampling(r->root, lim, r, e))) return rc;
    if ((rc = parse_tools(r->root, r, e))) return rc;
    json_t *lp = json_object_get(r->root, "logprobs");
    if (lp && !json_is_null(lp)) {
        if (!json_is_boolean(lp)) return BAD("logprobs", "'logprobs' must be true or false, not %s", type_name(lp));
        r->s.logprobs = json_is_true(lp);
    }
    long long k = 0;
    if ((rc = get_int(r->root, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &k, e))) return rc;
    if (k > 0 && !r->s.logprobs) return BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    r->s.top_logprobs = (int)k;
    json_t *tr = json_object_get(r->root, "truncation");
    if (tr && !json_is_null(tr)) {
        if (!json_is_string(tr) || (strcmp(json_string_value(tr), "auto") && strcmp(json_string_value(tr), "disabled")))
            return BAD("truncation", "'truncation' is \"auto\" (drop the oldest turns when the conversation does "
                       "not fit the context) or \"disabled\" (the default: refuse it)");
        r->truncate_history = !strcmp(json_string_value(tr), "auto");
    }
    return 0;
}

/* an array of token ids */
static int parse_tokens(json_t *arr, const char *param, int32_t **out, size_t *n, srv_error *e) {
    size_t m = json_array_size(arr);
    *out = malloc((m ? m : 1) * sizeof(int32_t));
    if (!*out) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    *n = 0;
    for (size_t i = 0; i < m; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return BAD(param, "'%s' must hold token ids (non-negative integers)", param);
        (*out)[(*n)++] = (int32_t)json_integer_value(v);
    }
    return 0;
}

int srv_parse_completion(const char *body, size_t len, const srv_limits *lim, srv_request *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    r->root = srv_parse_object(body, len, e);
    if (!r->root) return e->status;
    int rc;
    if ((rc = get_model(r->root, r, e))) return rc;
    json_t *p = json_object_get(r->root, "prompt");
    if (!p) return BAD("prompt", "'prompt' is required: the text to continue");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
    if (json_is_string(p)) {
        r->prompt = json_string_value(p);
        r->prompt_len = json_string_length(p);
    } else if (json_is_array(p) && json_array_size(p) > 0 && json_is_integer(json_array_get(p, 0))) {
        if ((rc = parse_tokens(p, "prompt", &r->prompt_tokens, &r->n_prompt_tokens, e))) return rc;
    } else if (json_is_array(p) && json_array_size(p) > 1) {
        return BAD("prompt", "'prompt' holds several prompts; this server completes one prompt per request");
    } else {
        return BAD("prompt", "'prompt' must be a string or an array of token ids, not %s", type_name(p));
    }
    if ((rc = parse_sampling(r->root, lim, r, e))) return rc;
    if (r->s.max_tokens < 0) r->s.max_tokens = 16; /* OpenAI's default for completions */
    long long k = -1;
    if ((rc = get_int(r->root, "logprobs", 0, 5, &k, e))) return rc;
    if (k >= 0) {
        r->s.logprobs = true;
        r->s.top_logprobs = (int)k;
    }
    if ((rc = get_bool(r->root, "echo", &r->s.echo, e))) return rc;
    json_t *tools = json_object_get(r->root, "tools");
    if (tools && !json_is_null(tools) && !(json_is_array(tools) && json_array_size(tools) == 0))
        return BAD("tools", "'tools' are for /v1/chat/completions, not /v1/completions");
    json_t *sfx = json_object_get(r->root, "suffix");
    if (sfx && !json_is_null(sfx) && !(json_is_string(sfx) && json_string_length(sfx) == 0))
        return BAD("suffix", "'suffix' (fill in the middle) is not supported by this server");
    return 0;
}

int srv_parse_embeddings(const char *body, size_t len, srv_request *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    r->root = srv_parse_object(body, len, e);
    if (!r->root) return e->status;
    int rc;
    if ((rc = get_model(r->root, r, e))) return rc;
    json_t *in = json_object_get(r->root, "input");
    if (!in) return BAD("input", "'input' is required: a string, an array of strings, or token ids");
    /* normalise to an array of inputs, each a string or an array of ids */
    json_t *items;
    if (json_is_string(in)) items = json_pack("[O]", in);
    else if (json_is_array(in) && json_array_size(in) > 0 && json_is_integer(json_array_get(in, 0))) items = json_pack("[O]", in);
    else if (json_is_array(in)) items = json_incref(in);
    else return BAD("input", "'input' must be a string or an array, not %s", type_name(in));
    size_t n = json_array_size(items);
    if (n == 0) {
        json_decref(items);
        return BAD("input", "'input' must not be empty");
    }
    if (n > SRV_MAX_EMBED_INPUTS) {
        json_decref(items);
        return BAD("input", "'input' has %zu items; at most %d per request", n, SRV_MAX_EMBED_INPUTS);
    }
    json_object_set_new(r->root, "__inputs", items); /* keep alive with the body */
    r->input_text = calloc(n, sizeof *r->input_text);
    r->input_len = calloc(n, sizeof *r->input_len);
    r->input_tokens = calloc(n, sizeof *r->input_tokens);
    r->input_ntok = calloc(n, sizeof *r->input_ntok);
    if (!r->input_text || !r->input_len || !r->input_tokens || !r->input_ntok)
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(items, i);
        char param[32];
        snprintf(param, sizeof param, "input[%zu]", i);
        if (json_is_string(v)) {
            if (json_string_length(v) == 0) return BAD(param, "'%s' is an empty string", param);
            r->input_text[i] = json_string_value(v);
            r->input_len[i] = json_string_length(v);
        } else if (json_is_array(v) && json_array_size(v) > 0) {
            if ((rc = parse_tokens(v, param, &r->input_tokens[i], &r->input_ntok[i], e))) {
                r->n_inputs = i + 1;
                return rc;
            }
        } else {
            r->n_inputs = i;
            return BAD(param, "'%s' must be a non-empty string or array of token ids, not %s", param, type_name(v));
        }
        r->n_inputs = i + 1;
    }
    json_t *fmt = json_object_get(r->root, "encoding_format");
    if (fmt && !json_is_null(fmt)) {
        if (!json_is_string(fmt)) return BAD("encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
        if (!strcmp(json_string_value(fmt), "base64")) r->base64 = true;
        else if (strcmp(json_string_value(fmt), "float"))
            return BAD("encoding_format", "'encoding_format' must be \"float\" or \"base64\", not '%s'",
                       json_string_value(fmt));
    }
    json_t *dims = json_object_get(r->root, "dimensions");
    if (dims && !json_is_null(dims))
        return BAD("dimensions", "'dimensions' is not supported: embeddings have the model's hidden size");
    return 0;
}

void srv_request_free(srv_request *r) {
    if (!r) return;
    byoai_grammar_free(r->grammar);
    free(r->schema_text);
    for (size_t i = 0; i < r->n_tools; i++) {
        free(r->tool_text[i]);
        free((char *)r->tool_defs[i].parameters);
    }
    free(r->tool_text);
    free(r->tool_defs);
    free(r->msg_tools);
    free(r->messages);
    for (size_t i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->owned);
    for (size_t i = 0; i < r->s.n_stop; i++) free(r->s.stop[i]);
    free(r->prompt_tokens);
    if (r->input_tokens)
        for (size_t i = 0; i < r->n_inputs; i++) free(r->input_tokens[i]);
    free(r->input_text);
    free(r->input_len);
    free(r->input_tokens);
    free(r->input_ntok);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}
