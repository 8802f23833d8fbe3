/*
 * Tools in chat formats: the definitions in the prompt, calls and results
 * in the history, and calls read back out of an answer.
 *
 * Each family gets the format its models were trained on:
 *   chatml (Qwen 2.5/3, Hermes) and the families without a format of their
 *     own: the tools inside <tools></tools> in the system turn, calls as
 *     <tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>, results
 *     as <tool_response> blocks in a user turn (as Qwen's template does);
 *   llama3 (3.1/3.2 JSON tool calling): the instructions and tools at the
 *     start of the first user turn, calls as a bare
 *     {"name": ..., "parameters": ...}, results in an "ipython" turn;
 *   mistral (v3 tokenizer): [AVAILABLE_TOOLS] [...][/AVAILABLE_TOOLS] before
 *     the last user turn, calls as [TOOL_CALLS] [{...}], results as
 *     [TOOL_RESULTS] {"content": ..., "call_id": ...}[/TOOL_RESULTS].
 * Messages are rewritten into plain text turns here and rendered by
 * chat_template.c.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/chat.h"
#include "infer/chat_internal.h"

static const byoai_tool_syntax HERMES = {"<tool_call>\n", 11, "\n</tool_call>", "\n", "arguments", false};
static const byoai_tool_syntax LLAMA3 = {"", 0, "", NULL, "parameters", false};
static const byoai_tool_syntax MISTRAL = {"[TOOL_CALLS]", 12, "", NULL, "arguments", true};

const byoai_tool_syntax *byoai_chat_tool_syntax(byoai_chat_family f) {
    switch (f) {
    case BYOAI_CHAT_LLAMA3: return &LLAMA3;
    case BYOAI_CHAT_MISTRAL: return &MISTRAL;
    default: return &HERMES;
    }
}

static const char HERMES_TOOLS_HEAD[] =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function "
    "signatures within <tools></tools> XML tags:\n<tools>";
static const char HERMES_TOOLS_TAIL[] =
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>";
static const char LLAMA3_TOOLS_HEAD[] =
    "Given the following functions, please respond with a JSON for a function call with its proper arguments that "
    "best answers the given prompt.\n\nRespond in the format {\"name\": function name, \"parameters\": dictionary of "
    "argument name and its value}. Do not use variables.\n\n";

/* ---- a growable string ---------------------------------------------------- */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

/* append, remembering a failure (rendering checks oom once at the end) */
static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    byoai_buf t = {b->s, b->len, b->cap};
    if (!byoai_buf_append(&t, s, n)) {
        b->oom = true;
        return;
    }
    b->s = t.data, b->len = t.len, b->cap = t.cap;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* a JSON string of s[0..n), invalid UTF-8 replaced */
static json_t *jstring(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    size_t w;
    char *o = byoai_utf8_sanitize(s, n, &w);
    j = o ? json_stringn(o, w) : NULL;
    free(o);
    return j;
}

/* JSON text as the templates print it (Python's json.dumps spacing); text
 * that is not JSON becomes a JSON string */
static void put_json_text(sbuf *b, const char *text) {
    json_t *j = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    if (!j) j = jstring(text ? text : "", text ? strlen(text) : 0);
    char *s = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!s) {
        b->oom = true;
        return;
    }
    puts_(b, s);
    free(s);
}

static void put_json_string(sbuf *b, const char *s, size_t n) {
    json_t *j = jstring(s ? s : "", s ? n : 0);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!t) {
        b->oom = true;
        return;
    }
    puts_(b, t);
    free(t);
}

/* one call: {"name": "NAME", "KEY": ARGS} */
static void put_call(sbuf *b, const byoai_chat_tool_call *c, const char *key, bool with_id) {
    puts_(b, "{\"name\": ");
    put_json_string(b, c->name ? c->name : "", c->name ? strlen(c->name) : 0);
    puts_(b, ", \"");
    puts_(b, key);
    puts_(b, "\": ");
    put_json_text(b, c->arguments && c->arguments[0] ? c->arguments : "{}");
    if (with_id && c->id) {
        puts_(b, ", \"id\": ");
        put_json_string(b, c->id, strlen(c->id));
    }
    puts_(b, "}");
}

/* ---- rewriting the conversation -------------------------------------------------- */
typedef struct owned {
    char **v;
    size_t n, cap;
    bool oom;
} owned;

/* keep b's string alive for the rendering; returns it */
static const char *own(owned *o, sbuf *b) {
    if (b->oom || o->oom) {
        free(b->s);
        o->oom = true;
        return "";
    }
    if (!b->s) return "";
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        char **p = realloc(o->v, cap * sizeof *p);
        if (!p) {
            free(b->s);
            o->oom = true;
            return "";
        }
        o->v = p;
        o->cap = cap;
    }
    o->v[o->n++] = b->s;
    return b->s;
}

static const byoai_chat_message_tools NO_TOOLS;

static bool needs_rewrite(const byoai_chat_message *msgs, const byoai_chat_message_tools *extra, size_t n,
                          size_t n_tools) {
    if (n_tools) return true;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].role == BYOAI_ROLE_TOOL || (extra && extra[i].n_tool_calls)) return true;
    return false;
}

static int rewrite(byoai_chat_family f, const byoai_chat_message *msgs, const byoai_chat_message_tools *extra,
                   size_t n, const char *const *tools,
                   size_t n_tools, byoai_chat_message *out, size_t *n_out, char **mistral_tools, owned *o) {
    size_t k = 0;
    bool tools_placed = n_tools == 0;
    if (f == BYOAI_CHAT_MISTRAL && n_tools) {
        sbuf b = {0};
        puts_(&b, "[");
        for (size_t t = 0; t < n_tools; t++) {
            if (t) puts_(&b, ", ");
            puts_(&b, tools[t]);
        }
        puts_(&b, "]");
        if (b.oom) {
            free(b.s);
            return BYOAI_ENOMEM;
        }
        *mistral_tools = b.s;
        tools_placed = true;
    }
    const bool hermes = f != BYOAI_CHAT_LLAMA3 && f != BYOAI_CHAT_MISTRAL;
    size_t sys = n;
    if (hermes && n_tools) { /* the tools join the first system message, or open one */
        for (size_t i = 0; i < n && sys == n; i++)
            if (msgs[i].role == BYOAI_ROLE_SYSTEM) sys = i;
        sbuf b = {0};
        if (sys < n && msgs[sys].content_len) {
            put(&b, msgs[sys].content, msgs[sys].content_len);
            puts_(&b, "\n\n");
        }
        puts_(&b, HERMES_TOOLS_HEAD);
        for (size_t t = 0; t < n_tools; t++) {
            puts_(&b, "\n");
            puts_(&b, tools[t]);
        }
        puts_(&b, HERMES_TOOLS_TAIL);
        const char *text = own(o, &b);
        out[k++] = (byoai_chat_message){BYOAI_ROLE_SYSTEM, text, strlen(text)};
        tools_placed = true;
    }
    for (size_t i = 0; i < n; i++) {
        const byoai_chat_message *m = &msgs[i];
        const byoai_chat_message_tools *x = extra ? &extra[i] : &NO_TOOLS;
        if (i == sys) continue;
        if (hermes && m->role == BYOAI_ROLE_TOOL) { /* consecutive results: one user turn */
            sbuf r = {0};
            for (; i < n && msgs[i].role == BYOAI_ROLE_TOOL; i++) {
                if (r.len) puts_(&r, "\n");
                puts_(&r, "<tool_response>\n");
                put(&r, msgs[i].content, msgs[i].content_len);
                puts_(&r, "\n</tool_response>");
            }
            i--;
            const char *text = own(o, &r);
            out[k++] = (byoai_chat_message){BYOAI_ROLE_USER, text, strlen(text)};
        } else if (m->role == BYOAI_ROLE_TOOL && f == BYOAI_CHAT_MISTRAL) {
            sbuf r = {0};
            puts_(&r, "[TOOL_RESULTS] {\"content\": ");
            char *tmp = malloc(m->content_len + 1);
            if (!tmp) return BYOAI_ENOMEM;
            memcpy(tmp, m->content, m->content_len);
            tmp[m->content_len] = '\0';
            put_json_text(&r, tmp);
            free(tmp);
            puts_(&r, ", \"call_id\": ");
            put_json_string(&r, x->tool_call_id ? x->tool_call_id : "", x->tool_call_id ? strlen(x->tool_call_id) : 0);
            puts_(&r, "}[/TOOL_RESULTS]");
            const char *text = own(o, &r);
            out[k++] = (byoai_chat_message){BYOAI_ROLE_TOOL, text, strlen(text)};
        } else if (m->role == BYOAI_ROLE_ASSISTANT && x->n_tool_calls) {
            sbuf r = {0};
            if (f == BYOAI_CHAT_MISTRAL) {
                puts_(&r, "[TOOL_CALLS] [");
                for (size_t c = 0; c < x->n_tool_calls; c++) {
                    if (c) puts_(&r, ", ");
                    put_call(&r, &x->tool_calls[c], "arguments", true);
                }
                puts_(&r, "]");
            } else if (hermes) {
                put(&r, m->content, m->content_len);
                for (size_t c = 0; c < x->n_tool_calls; c++) {
                    if (r.len) puts_(&r, "\n");
                    puts_(&r, "<tool_call>\n");
                    put_call(&r, &x->tool_calls[c], "arguments", false);
                    puts_(&r, "\n</tool_call>");
                }
            } else {
                put(&r, m->content, m->content_len);
                for (size_t c = 0; c < x->n_tool_calls; c++) {
                    if (r.len) puts_(&r, "\n");
                    put_call(&r, &x->tool_calls[c], "parameters", false);
                }
            }
            const char *text = own(o, &r);
            out[k++] = (byoai_chat_message){BYOAI_ROLE_ASSISTANT, text, strlen(text)};
        } else if (!tools_placed && m->role == BYOAI_ROLE_USER) { /* llama3: tools open the first user turn */
            sbuf r = {0};
            puts_(&r, LLAMA3_TOOLS_HEAD);
            for (size_t t = 0; t < n_tools; t++) {
                puts_(&r, tools[t]);
                puts_(&r, "\n\n");
            }
            put(&r, m->content, m->content_len);
            const char *text = own(o, &r);
            out[k++] = (byoai_chat_message){BYOAI_ROLE_USER, text, strlen(text)};
            tools_placed = true;
        } else out[k++] = *m;
    }
    *n_out = k;
    return 0;
}

int byoai_chat_render_tools(byoai_chat_family f, const byoai_chat_message *msgs, const byoai_chat_message_tools *extra,
                            size_t n, const char *const *tools, size_t n_tools, bool gen, const char *bos, const char *eos, char **out, size_t *out_len,
                            byoai_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!msgs || n == 0) return byoai_error_set(err, BYOAI_EINVAL, "a conversation needs at least one message");
    for (size_t t = 0; t < n_tools; t++)
        if (!tools || !tools[t]) return byoai_error_set(err, BYOAI_EINVAL, "tool %zu has no definition", t);
    if (!needs_rewrite(msgs, extra, n, n_tools)) return chat_render_messages(f, msgs, n, gen, bos, eos, NULL, out, out_len, err);
    byoai_chat_message *m2 = calloc(n + 1, sizeof *m2);
    if (!m2) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory rendering the conversation");
    owned o = {0};
    char *mistral_tools = NULL;
    size_t n2 = 0;
    int rc = rewrite(f, msgs, extra, n, tools, n_tools, m2, &n2, &mistral_tools, &o);
    if (!rc && o.oom) rc = BYOAI_ENOMEM;
    if (rc) byoai_error_set(err, rc, "out of memory rendering the conversation");
    else rc = chat_render_messages(f, m2, n2, gen, bos, eos, mistral_tools, out, out_len, err);
    for (size_t i = 0; i < o.n; i++) free(o.v[i]);
    free(o.v);
    free(mistral_tools);
    free(m2);
    return rc;
}

/* ---- reading calls back --------------------------------------------------------------- */
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static const char *find(const char *s, size_t n, const char *needle, size_t k) {
    if (!k || k > n) return NULL;
    return memmem(s, n, needle, k);
}

static bool add_call(byoai_chat_parsed *p, json_t *o, const char *key) {
    if (!json_is_object(o)) return false;
    json_t *name = json_object_get(o, "name");
    if (!json_is_string(name) || json_string_length(name) == 0) return false;
    json_t *args = json_object_get(o, key);
    if (!args) args = json_object_get(o, "arguments");
    if (!args) args = json_object_get(o, "parameters");
    json_t *parsed = NULL;
    if (json_is_string(args)) {
        parsed = json_loads(json_string_value(args), 0, NULL);
        if (!json_is_object(parsed)) {
            json_decref(parsed);
            return false;
        }
        args = parsed;
    } else if (args && !json_is_object(args)) return false;
    char *text = args ? json_dumps(args, JSON_COMPACT) : strdup("{}");
    json_decref(parsed);
    byoai_chat_parsed_call *c = realloc(p->calls, (p->n_calls + 1) * sizeof *c);
    char *nm = strdup(json_string_value(name));
    if (!text || !c || !nm) {
        free(text);
        free(nm);
        if (c) p->calls = c;
        return false;
    }
    p->calls = c;
    p->calls[p->n_calls++] = (byoai_chat_parsed_call){nm, text};
    return true;
}

/* one JSON value at s (white space first); *used: bytes read */
static json_t *json_at(const char *s, size_t n, size_t *used) {
    size_t i = 0;
    while (i < n && is_space(s[i])) i++;
    json_error_t je;
    json_t *j = json_loadb(s + i, n - i, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
    if (j) *used = i + (size_t)je.position;
    return j;
}

static void set_content(byoai_chat_parsed *p, sbuf *b) {
    size_t a = 0, e = b->len;
    while (a < e && is_space(b->s[a])) a++;
    while (e > a && is_space(b->s[e - 1])) e--;
    p->content = malloc(e - a + 1);
    if (p->content) {
        if (e > a) memcpy(p->content, b->s + a, e - a);
        p->content[e - a] = '\0';
        p->content_len = e - a;
    }
    free(b->s);
}

int byoai_chat_parse_tool_calls(byoai_chat_family f, const char *text, size_t len, byoai_chat_parsed *out,
                                byoai_error *err) {
    memset(out, 0, sizeof *out);
    const byoai_tool_syntax *syn = byoai_chat_tool_syntax(f);
    sbuf content = {0};
    if (syn->array) {
        const char *p = find(text, len, syn->prefix, strlen(syn->prefix));
        size_t used;
        json_t *arr = p ? json_at(p + strlen(syn->prefix), len - (size_t)(p - text) - strlen(syn->prefix), &used) : NULL;
        bool ok = json_is_array(arr) && json_array_size(arr) > 0;
        for (size_t i = 0; ok && i < json_array_size(arr); i++) ok = add_call(out, json_array_get(arr, i), syn->args_key);
        json_decref(arr);
        if (ok) {
            put(&content, text, (size_t)(p - text));
            const char *rest = p + strlen(syn->prefix) + used;
            put(&content, rest, len - (size_t)(rest - text));
        } else {
            for (size_t i = 0; i < out->n_calls; i++) free(out->calls[i].name), free(out->calls[i].arguments);
            out->n_calls = 0;
            put(&content, text, len);
        }
    } else if (syn->prefix[0]) {
        const char *trig = syn->prefix;
        size_t tl = syn->trigger_len, sl = strlen(syn->suffix);
        const char *close = syn->suffix;
        while (sl && is_space(*close)) close++, sl--; /* "</tool_call>" */
        size_t at = 0;
        for (;;) {
            const char *p = find(text + at, len - at, trig, tl);
            if (!p) {
                put(&content, text + at, len - at);
                break;
            }
            put(&content, text + at, (size_t)(p - text) - at);
            size_t start = (size_t)(p - text) + tl, used;
            json_t *call = json_at(text + start, len - start, &used);
            if (!call || !add_call(out, call, syn->args_key)) {
                json_decref(call);
                put(&content, p, len - (size_t)(p - text)); /* not a call: text */
                break;
            }
            json_decref(call);
            at = start + used;
            while (at < len && is_space(text[at])) at++;
            if (sl && len - at >= sl && !memcmp(text + at, close, sl)) at += sl;
        }
    } else {
        /* a bare object (after <|python_tag|>), several separated by ';' */
        size_t at = 0;
        while (at < len && is_space(text[at])) at++;
        if (len - at >= 14 && !memcmp(text + at, "<|python_tag|>", 14)) at += 14;
        size_t first = at;
        while (at < len) {
            while (at < len && (is_space(text[at]) || text[at] == ';')) at++;
            if (at >= len || text[at] != '{') break;
            size_t used;
            json_t *call = json_at(text + at, len - at, &used);
            bool ok = call && add_call(out, call, syn->args_key);
            json_decref(call);
            if (!ok) break;
            at += used;
        }
        if (out->n_calls == 0) put(&content, text, len);
        else put(&content, text + at, len - at);
        (void)first;
    }
    if (content.oom) {
        free(content.s);
        byoai_chat_parsed_free(out);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory reading tool calls");
    }
    set_content(out, &content);
    if (!out->content) {
        byoai_chat_parsed_free(out);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory reading tool calls");
    }
    return 0;
}

void byoai_chat_parsed_free(byoai_chat_parsed *p) {
    if (!p) return;
    free(p->content);
    for (size_t i = 0; i < p->n_calls; i++) {
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    memset(p, 0, sizeof *p);
}
