/*
 * JSON Schema -> grammar nodes.
 *
 * A schema becomes a graph of nodes (grammar_internal.h): objects, arrays,
 * strings, numbers, literal sets (enum, const, booleans, null) and unions.
 * $ref is resolved inside the schema document ("#", "#/$defs/x", any JSON
 * pointer), so recursive schemas become cycles in the graph. Unions
 * (anyOf, oneOf, type arrays, nullable) must be decidable at the value's
 * first byte: at most one alternative per kind of value, except objects,
 * which may be several when a property that each requires has a different
 * constant string (a discriminator, written first). Everything else is
 * refused with a message that names the keyword and where it is.
 *
 * What happens after compiling ($ref placeholders bypassed, unions resolved
 * into first-byte tables, shortest serialisations) is grammar_build.c.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/grammar_internal.h"

#define MAX_SCHEMA_NESTING 64
#define NUM_SCALE 6          /* bounded numbers: 6 fraction digits at most */
#define MAX_BOUND_INT 999999999999999999LL /* 18 digits */
#define MAX_BOUND_NUM 999999999999LL       /* 12 integer digits */

uint32_t g_sat_add(uint32_t a, uint32_t b) {
    uint64_t s = (uint64_t)a + b;
    return s >= G_INF ? G_INF : (uint32_t)s;
}

/* ---- growing the grammar ---------------------------------------------------------- */
bool g_grow(void **p, uint32_t *cap, uint32_t need, size_t elem) {
    if (need <= *cap) return true;
    uint32_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > UINT32_MAX / 2) return false;
        c *= 2;
    }
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

uint32_t g_new_node(byoai_grammar *g, uint8_t kind) {
    if (g->n_nodes >= 1u << 24 || !g_grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes))
        return G_NONE;
    gnode *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->additional = G_NONE;
    n->items = G_NONE;
    n->max_items = UINT32_MAX;
    n->max_len = UINT32_MAX;
    n->ref = G_NONE;
    n->disc_key = G_NONE;
    n->minlen = G_INF;
    for (int i = 0; i < GC_COUNT; i++) n->cls[i] = G_NONE;
    return g->n_nodes++;
}

uint32_t g_add_bytes(byoai_grammar *g, const char *b, size_t n) {
    if (n > 1u << 20 || !g_grow((void **)&g->bytes, &g->cap_bytes, g->n_bytes + (uint32_t)n + 1, 1)) return G_NONE;
    uint32_t off = g->n_bytes;
    memcpy(g->bytes + off, b, n);
    g->n_bytes += (uint32_t)n;
    return off;
}


static int tmp_cmp(const void *a, const void *b) {
    const g_tmp_lit *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Append literals sorted (duplicates dropped); returns the first index. */
uint32_t g_add_lits(byoai_grammar *g, g_tmp_lit *t, size_t n, uint32_t *n_out) {
    qsort(t, n, sizeof *t, tmp_cmp);
    uint32_t first = g->n_lits, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && t[i].len == t[i - 1].len && !memcmp(t[i].s, t[i - 1].s, t[i].len)) continue;
        uint32_t off = g_add_bytes(g, t[i].s, t[i].len);
        if (off == G_NONE || !g_grow((void **)&g->lits, &g->cap_lits, g->n_lits + 1, sizeof *g->lits)) return G_NONE;
        g->lits[g->n_lits++] = (glit){off, (uint32_t)t[i].len, t[i].value};
        k++;
    }
    *n_out = k;
    return first;
}

/* ---- the compiler ------------------------------------------------------------------- */

uint32_t g_fail(g_comp *c, const char *fmt, const char *a, const char *b) {
    if (c->failed) return G_NONE;
    c->failed = true;
    char msg[600];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    byoai_error_set(c->err, BYOAI_EINVAL, "%s, at %s: %s", c->what, c->path[0] ? c->path : "#", msg);
    return G_NONE;
}

uint32_t g_oom(g_comp *c) {
    if (!c->failed) byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory compiling %s", c->what);
    c->failed = true;
    return G_NONE;
}

static size_t path_push(g_comp *c, const char *seg) {
    size_t n = strlen(c->path);
    if (!n) snprintf(c->path, sizeof c->path, "#");
    size_t m = strlen(c->path);
    snprintf(c->path + m, sizeof c->path - m, "/%s", seg);
    return n;
}
static void path_pop(g_comp *c, size_t n) { c->path[n] = '\0'; }

static bool memo_add(g_comp *c, const json_t *s, uint32_t node) {
    if (c->n_memo == c->cap_memo) {
        size_t cap = c->cap_memo ? c->cap_memo * 2 : 32;
        g_memo *m = realloc(c->memo, cap * sizeof *m);
        if (!m) return false;
        c->memo = m;
        c->cap_memo = cap;
    }
    c->memo[c->n_memo++] = (g_memo){s, node};
    return true;
}

static uint32_t memo_find(g_comp *c, const json_t *s) {
    for (size_t i = 0; i < c->n_memo; i++)
        if (c->memo[i].schema == s) return c->memo[i].node;
    return G_NONE;
}

/* Keywords that only describe: accepted and ignored. "format" is an
 * annotation too, as JSON Schema 2020-12 treats it by default. */
static const char *const ANNOTATIONS[] = {
    "title", "description", "default", "examples", "example", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly", "$defs", "definitions", "format", "contentMediaType", "contentEncoding", NULL};
static const char *const CONSTRAINTS[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const",
    "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "nullable", "uniqueItems", NULL};

static bool in_list(const char *const *l, const char *k) {
    for (; *l; l++)
        if (!strcmp(*l, k)) return true;
    return false;
}

/* the constraint keywords of s other than those in allowed, as "a, b" */
static bool other_constraints(const json_t *s, const char *const *allowed, char *out, size_t cap) {
    const char *k;
    json_t *v;
    out[0] = '\0';
    json_object_foreach((json_t *)s, k, v) {
        if (in_list(ANNOTATIONS, k) || in_list(allowed, k)) continue;
        if (!strcmp(k, "nullable") && json_is_false(v)) continue;
        if (!strcmp(k, "uniqueItems") && json_is_false(v)) continue;
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s'%s'", n ? ", " : "", k);
    }
    return out[0] != '\0';
}

uint32_t g_compile(g_comp *c, json_t *s);

/* "#/a/b~1c" inside the document */
static json_t *resolve_pointer(g_comp *c, const char *ref) {
    if (strcmp(ref, "#") && strncmp(ref, "#/", 2)) return NULL;
    json_t *cur = c->doc;
    const char *p = ref + 1;
    while (*p == '/') {
        p++;
        char seg[256];
        size_t n = 0;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~' && *p == '0') ch = '~', p++;
            else if (ch == '~' && *p == '1') ch = '/', p++;
            if (n + 1 >= sizeof seg) return NULL;
            seg[n++] = ch;
        }
        seg[n] = '\0';
        if (json_is_object(cur)) cur = json_object_get(cur, seg);
        else if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(seg, &end, 10);
            cur = (*seg && !*end) ? json_array_get(cur, i) : NULL;
        } else cur = NULL;
        if (!cur) return NULL;
    }
    return cur;
}

static bool get_count(g_comp *c, const json_t *s, const char *key, uint32_t *out) {
    json_t *v = json_object_get(s, key);
    if (!v) return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        g_fail(c, "'%s' must be a non-negative integer", key, NULL);
        return false;
    }
    json_int_t x = json_integer_value(v);
    *out = x > (json_int_t)(UINT32_MAX - 1) ? UINT32_MAX - 1 : (uint32_t)x;
    return true;
}

/* A JSON value's canonical bytes (compact, keys sorted). */
char *g_canonical(const json_t *v, size_t *len) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    if (s) *len = strlen(s);
    return s;
}

static bool type_matches(const json_t *v, const char *type) {
    if (!type) return true;
    if (!strcmp(type, "string")) return json_is_string(v);
    if (!strcmp(type, "integer"))
        return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (!strcmp(type, "number")) return json_is_number(v);
    if (!strcmp(type, "boolean")) return json_is_boolean(v);
    if (!strcmp(type, "null")) return json_is_null(v);
    if (!strcmp(type, "object")) return json_is_object(v);
    if (!strcmp(type, "array")) return json_is_array(v);
    return false;
}

/* enum / const: a literal set, keeping values of the given type (NULL: any) */
static uint32_t compile_literals(g_comp *c, const json_t *s, const char *type) {
    json_t *e = json_object_get(s, "enum"), *k = json_object_get(s, "const");
    if (e && k) return g_fail(c, "'enum' and 'const' together are not supported", NULL, NULL);
    if (e && (!json_is_array(e) || json_array_size(e) == 0))
        return g_fail(c, "'enum' must be a non-empty array", NULL, NULL);
    size_t n = e ? json_array_size(e) : 1;
    g_tmp_lit *t = calloc(n, sizeof *t);
    if (!t) return g_oom(c);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = e ? json_array_get(e, i) : k;
        if (!type_matches(v, type)) continue;
        t[m].s = g_canonical(v, &t[m].len);
        if (!t[m].s) {
            for (size_t j = 0; j < m; j++) free(t[j].s);
            free(t);
            return g_oom(c);
        }
        m++;
    }
    uint32_t id = G_NONE;
    if (m == 0) {
        g_fail(c, "no value of '%s' has the type '%s'", e ? "enum" : "const", type);
    } else if ((id = g_new_node(c->g, GN_LITERALS)) == G_NONE) {
        g_oom(c);
    } else {
        uint32_t cnt;
        uint32_t first = g_add_lits(c->g, t, m, &cnt);
        if (first == G_NONE) id = g_oom(c);
        else c->g->nodes[id].lit0 = first, c->g->nodes[id].n_lits = cnt;
    }
    for (size_t j = 0; j < m; j++) free(t[j].s);
    free(t);
    return id;
}

static uint32_t literal_node(g_comp *c, const char *const *vals, size_t n) {
    g_tmp_lit t[3];
    for (size_t i = 0; i < n; i++) t[i] = (g_tmp_lit){(char *)vals[i], strlen(vals[i]), 0};
    uint32_t id = g_new_node(c->g, GN_LITERALS);
    if (id == G_NONE) return g_oom(c);
    uint32_t cnt, first = g_add_lits(c->g, t, n, &cnt);
    if (first == G_NONE) return g_oom(c);
    c->g->nodes[id].lit0 = first;
    c->g->nodes[id].n_lits = cnt;
    return id;
}

/* scaled bound: value * 10^scale rounded toward the inside of the range */
static bool scaled_bound(double x, int scale, bool lower, bool exclusive, int64_t *out) {
    double v = x * pow(10, scale);
    double r = nearbyint(v);
    bool exact = fabs(v - r) <= 1e-9 * (fabs(v) > 1 ? fabs(v) : 1);
    double b;
    if (lower) b = exact ? r + (exclusive ? 1 : 0) : ceil(v);
    else b = exact ? r - (exclusive ? 1 : 0) : floor(v);
    double lim = scale ? (double)MAX_BOUND_NUM * 1e6 : (double)MAX_BOUND_INT;
    if (b > lim) b = lim + 1;
    if (b < -lim) b = -lim - 1;
    *out = (int64_t)b;
    return true;
}

static uint32_t compile_number(g_comp *c, uint32_t id, const json_t *s, bool int_only) {
    static const char *const keys[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    int scale = int_only ? 0 : NUM_SCALE;
    int64_t lim = int_only ? MAX_BOUND_INT : MAX_BOUND_NUM * 1000000LL;
    int64_t lo = -lim, hi = lim;
    bool any = false;
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(s, keys[i]);
        if (!v) continue;
        if (json_is_boolean(v))
            return g_fail(c, "a boolean '%s' (draft 4) is not supported: give the bound as a number", keys[i], NULL);
        if (!json_is_number(v)) return g_fail(c, "'%s' must be a number", keys[i], NULL);
        int64_t b;
        scaled_bound(json_number_value(v), scale, i % 2 == 0, i >= 2, &b);
        if (i % 2 == 0 && b > lo) lo = b;
        if (i % 2 == 1 && b < hi) hi = b;
        any = true;
    }
    if (lo > hi)
        return g_fail(c, "no %s satisfies the minimum and maximum", int_only ? "integer" : "number (with at most 6 "
                    "fraction digits)", NULL);
    gnode *n = &c->g->nodes[id];
    n->kind = GN_NUMBER;
    n->int_only = int_only;
    n->bounded = any;
    n->scale = (uint8_t)scale;
    n->lo = lo;
    n->hi = hi;
    return id;
}

static uint32_t compile_object(g_comp *c, uint32_t id, json_t *s) {
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
           *add = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return g_fail(c, "'properties' must be an object", NULL, NULL);
    if (req && !json_is_array(req)) return g_fail(c, "'required' must be an array of property names", NULL, NULL);
    size_t n = props ? json_object_size(props) : 0;
    if (n > G_MAX_PROPS) return g_fail(c, "an object may have at most 64 properties", NULL, NULL);
    byoai_grammar *g = c->g;
    if (!g_grow((void **)&g->props, &g->cap_props, g->n_props + (uint32_t)n, sizeof *g->props)) return g_oom(c);
    uint32_t prop0 = g->n_props;
    g->n_props += (uint32_t)n;
    g_tmp_lit *keys = calloc(n ? n : 1, sizeof *keys);
    if (!keys) return g_oom(c);
    const char *k;
    json_t *v;
    uint32_t i = 0;
    json_object_foreach(props, k, v) {
        json_t *ks = json_string(k);
        keys[i].s = ks ? g_canonical(ks, &keys[i].len) : NULL;
        json_decref(ks);
        keys[i].value = i;
        if (!keys[i].s) break;
        i++;
    }
    uint32_t result = id;
    if (i < n) result = g_oom(c);
    for (i = 0; result != G_NONE && i < n; i++) {
        k = NULL;
        size_t idx = 0;
        json_object_foreach(props, k, v) {
            if (idx++ == i) break;
        }
        size_t saved = path_push(c, "properties");
        size_t saved2 = strlen(c->path);
        snprintf(c->path + saved2, sizeof c->path - saved2, "/%s", k);
        uint32_t child = g_compile(c, v);
        path_pop(c, saved);
        if (child == G_NONE) result = G_NONE;
        else g->props[prop0 + i].node = child;
    }
    uint64_t required = 0;
    for (size_t r = 0; result != G_NONE && req && r < json_array_size(req); r++) {
        json_t *name = json_array_get(req, r);
        if (!json_is_string(name)) {
            result = g_fail(c, "'required' must hold property names (strings)", NULL, NULL);
            break;
        }
        json_t *pv = props ? json_object_get(props, json_string_value(name)) : NULL;
        if (!pv) {
            result = g_fail(c, "the required property '%s' is not in 'properties'", json_string_value(name), NULL);
            break;
        }
        size_t idx = 0;
        json_object_foreach(props, k, v) {
            if (!strcmp(k, json_string_value(name))) break;
            idx++;
        }
        required |= (uint64_t)1 << idx;
    }
    uint32_t additional = G_NONE;
    if (result != G_NONE) {
        if (!add) additional = props ? G_NONE : GB_ANY; /* see docs/server.md: no extra keys unless asked */
        else if (json_is_false(add)) additional = G_NONE;
        else if (json_is_true(add)) additional = GB_ANY;
        else if (json_is_object(add)) {
            size_t saved = path_push(c, "additionalProperties");
            additional = g_compile(c, add);
            path_pop(c, saved);
            if (additional == G_NONE) result = G_NONE;
        } else result = g_fail(c, "'additionalProperties' must be a boolean or a schema", NULL, NULL);
    }
    if (result != G_NONE) {
        uint32_t cnt, first = g_add_lits(g, keys, n, &cnt);
        if (first == G_NONE || cnt != n) result = cnt != n ? g_fail(c, "duplicate property names", NULL, NULL) : g_oom(c);
        else {
            for (i = 0; i < n; i++) g->props[prop0 + g->lits[first + i].value].key = first + i;
            gnode *nd = &g->nodes[id];
            nd->kind = GN_OBJECT;
            nd->prop0 = prop0;
            nd->n_props = (uint32_t)n;
            nd->lit0 = first;
            nd->required = required;
            nd->additional = additional;
        }
    }
    for (i = 0; i < n; i++) free(keys[i].s);
    free(keys);
    return result;
}

static uint32_t compile_array(g_comp *c, uint32_t id, json_t *s) {
    json_t *items = json_object_get(s, "items");
    uint32_t lo = 0, hi = UINT32_MAX;
    if (!get_count(c, s, "minItems", &lo) || !get_count(c, s, "maxItems", &hi)) return G_NONE;
    if (lo > hi) return g_fail(c, "'minItems' is larger than 'maxItems'", NULL, NULL);
    json_t *u = json_object_get(s, "uniqueItems");
    if (json_is_true(u)) return g_fail(c, "'uniqueItems': true is not supported", NULL, NULL);
    uint32_t it = GB_ANY;
    if (json_is_array(items)) return g_fail(c, "an array of 'items' (tuples) is not supported", NULL, NULL);
    if (items && !json_is_true(items)) {
        size_t saved = path_push(c, "items");
        it = g_compile(c, items);
        path_pop(c, saved);
        if (it == G_NONE) return G_NONE;
    }
    gnode *n = &c->g->nodes[id];
    n->kind = GN_ARRAY;
    n->items = it;
    n->min_items = lo;
    n->max_items = hi;
    return id;
}

static uint32_t compile_string(g_comp *c, uint32_t id, const json_t *s) {
    uint32_t lo = 0, hi = UINT32_MAX;
    if (!get_count(c, s, "minLength", &lo) || !get_count(c, s, "maxLength", &hi)) return G_NONE;
    if (lo > hi) return g_fail(c, "'minLength' is larger than 'maxLength'", NULL, NULL);
    gnode *n = &c->g->nodes[id];
    n->kind = GN_STRING;
    n->min_len = lo;
    n->max_len = hi;
    return id;
}

/* one "type" applied to the schema's keywords; id is pre-allocated */
static uint32_t compile_typed(g_comp *c, uint32_t id, json_t *s, const char *type) {
    if (json_object_get(s, "enum") || json_object_get(s, "const")) {
        uint32_t l = compile_literals(c, s, type);
        if (l == G_NONE) return G_NONE;
        c->g->nodes[id].kind = GN_REF;
        c->g->nodes[id].ref = l;
        return id;
    }
    if (!strcmp(type, "object")) return compile_object(c, id, s);
    if (!strcmp(type, "array")) return compile_array(c, id, s);
    if (!strcmp(type, "string")) return compile_string(c, id, s);
    if (!strcmp(type, "number")) return compile_number(c, id, s, false);
    if (!strcmp(type, "integer")) return compile_number(c, id, s, true);
    if (!strcmp(type, "boolean") || !strcmp(type, "null")) {
        static const char *const b[] = {"false", "true"}, *const z[] = {"null"};
        uint32_t l = !strcmp(type, "null") ? literal_node(c, z, 1) : literal_node(c, b, 2);
        if (l == G_NONE) return G_NONE;
        c->g->nodes[id].kind = GN_REF;
        c->g->nodes[id].ref = l;
        return id;
    }
    return g_fail(c, "unknown type '%s'", type, NULL);
}

bool g_add_alt(g_comp *c, uint32_t node) {
    byoai_grammar *g = c->g;
    if (!g_grow((void **)&g->alts, &g->cap_alts, g->n_alts + 1, sizeof *g->alts)) return false;
    g->alts[g->n_alts++] = node;
    return true;
}

uint32_t g_compile(g_comp *c, json_t *s) {
    if (c->failed) return G_NONE;
    if (json_is_true(s)) return GB_ANY;
    if (json_is_false(s)) return g_fail(c, "the schema 'false' allows no value", NULL, NULL);
    if (!json_is_object(s)) return g_fail(c, "a schema must be an object or a boolean", NULL, NULL);
    uint32_t m = memo_find(c, s);
    if (m != G_NONE) return m;
    if (++c->nesting > MAX_SCHEMA_NESTING) {
        c->nesting--;
        return g_fail(c, "the schema is nested more than 64 levels deep", NULL, NULL);
    }
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (!in_list(ANNOTATIONS, k) && !in_list(CONSTRAINTS, k)) {
            c->nesting--;
            return g_fail(c, "the JSON Schema keyword '%s' is not supported (see docs/server.md for the supported "
                        "keywords)", k, NULL);
        }
    }
    uint32_t id = g_new_node(c->g, GN_REF);
    if (id == G_NONE || !memo_add(c, s, id)) {
        c->nesting--;
        return g_oom(c);
    }
    char others[256];
    uint32_t r = id;
    json_t *ref = json_object_get(s, "$ref"), *all = json_object_get(s, "allOf"), *any = json_object_get(s, "anyOf"),
           *one = json_object_get(s, "oneOf"), *type = json_object_get(s, "type");
    json_t *nullable = json_object_get(s, "nullable");
    if (ref) {
        static const char *const only[] = {"$ref", NULL};
        if (!json_is_string(ref)) r = g_fail(c, "'$ref' must be a string", NULL, NULL);
        else if (other_constraints(s, only, others, sizeof others))
            r = g_fail(c, "'$ref' next to other keywords (%s) is not supported", others, NULL);
        else {
            json_t *t = resolve_pointer(c, json_string_value(ref));
            if (!t) r = g_fail(c, "'$ref' '%s' does not point into this schema (only local references such as "
                             "\"#/$defs/name\" are supported)", json_string_value(ref), NULL);
            else {
                char saved[sizeof c->path];
                memcpy(saved, c->path, sizeof saved);
                snprintf(c->path, sizeof c->path, "%s", json_string_value(ref));
                uint32_t t_id = g_compile(c, t);
                memcpy(c->path, saved, sizeof saved);
                if (t_id == G_NONE) r = G_NONE;
                else c->g->nodes[id].ref = t_id;
            }
        }
    } else if (all) {
        static const char *const only[] = {"allOf", NULL};
        if (!json_is_array(all) || json_array_size(all) != 1)
            r = g_fail(c, "'allOf' with more than one schema is not supported", NULL, NULL);
        else if (other_constraints(s, only, others, sizeof others))
            r = g_fail(c, "'allOf' next to other keywords (%s) is not supported", others, NULL);
        else {
            size_t saved = path_push(c, "allOf/0");
            uint32_t t_id = g_compile(c, json_array_get(all, 0));
            path_pop(c, saved);
            if (t_id == G_NONE) r = G_NONE;
            else c->g->nodes[id].ref = t_id;
        }
    } else if (any || one) {
        static const char *const only[] = {"anyOf", "oneOf", NULL};
        const char *kw = any ? "anyOf" : "oneOf";
        json_t *list = any ? any : one;
        if (any && one) r = g_fail(c, "'anyOf' and 'oneOf' together are not supported", NULL, NULL);
        else if (!json_is_array(list) || json_array_size(list) == 0)
            r = g_fail(c, "'%s' must be a non-empty array of schemas", kw, NULL);
        else if (other_constraints(s, only, others, sizeof others))
            r = g_fail(c, "'%s' next to other keywords (%s) is not supported", kw, others);
        else {
            uint32_t *tmp = malloc(json_array_size(list) * sizeof *tmp);
            if (!tmp) r = g_oom(c);
            for (size_t i = 0; tmp && i < json_array_size(list) && r != G_NONE; i++) {
                char seg[40];
                snprintf(seg, sizeof seg, "%s/%zu", kw, i);
                size_t saved = path_push(c, seg);
                tmp[i] = g_compile(c, json_array_get(list, i));
                path_pop(c, saved);
                if (tmp[i] == G_NONE) r = G_NONE;
            }
            if (tmp && r != G_NONE) {
                c->g->nodes[id].kind = GN_UNION;
                c->g->nodes[id].alt0 = c->g->n_alts;
                for (size_t i = 0; i < json_array_size(list); i++)
                    if (!g_add_alt(c, tmp[i])) {
                        r = g_oom(c);
                        break;
                    }
                c->g->nodes[id].n_alts = (uint32_t)json_array_size(list);
            }
            free(tmp);
        }
    } else {
        /* the types: given, or inferred from the keywords */
        const char *types[8];
        size_t n_types = 0;
        if (json_is_string(type)) types[n_types++] = json_string_value(type);
        else if (json_is_array(type)) {
            size_t i;
            json_t *t;
            json_array_foreach(type, i, t) {
                if (!json_is_string(t) || n_types == 7) {
                    r = g_fail(c, "'type' must be a type name or an array of type names", NULL, NULL);
                    break;
                }
                types[n_types++] = json_string_value(t);
            }
            if (n_types == 0 && r != G_NONE) r = g_fail(c, "'type' must not be an empty array", NULL, NULL);
        } else if (type) r = g_fail(c, "'type' must be a type name or an array of type names", NULL, NULL);
        else if (json_object_get(s, "enum") || json_object_get(s, "const")) types[n_types++] = NULL;
        else if (json_object_get(s, "properties") || json_object_get(s, "required") ||
                 json_object_get(s, "additionalProperties"))
            types[n_types++] = "object";
        else if (json_object_get(s, "items") || json_object_get(s, "minItems") || json_object_get(s, "maxItems"))
            types[n_types++] = "array";
        else if (json_object_get(s, "minLength") || json_object_get(s, "maxLength")) types[n_types++] = "string";
        else if (json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
                 json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum"))
            types[n_types++] = "number";
        if (json_is_true(nullable) && r != G_NONE && n_types < 8) {
            if (n_types == 0) types[n_types++] = NULL; /* any value, null included */
            else types[n_types++] = "null";
        }
        if (r == G_NONE) {
        } else if (n_types == 0 || (n_types == 1 && !types[0] && !json_object_get(s, "enum") &&
                                    !json_object_get(s, "const"))) {
            c->g->nodes[id].ref = GB_ANY; /* no constraint: any value */
        } else if (n_types == 1) {
            if (!types[0]) {
                uint32_t l = compile_literals(c, s, NULL);
                if (l == G_NONE) r = G_NONE;
                else c->g->nodes[id].ref = l;
            } else r = compile_typed(c, id, s, types[0]);
        } else {
            uint32_t alts[8];
            for (size_t i = 0; i < n_types && r != G_NONE; i++) {
                uint32_t a = g_new_node(c->g, GN_REF);
                if (a == G_NONE) r = g_oom(c);
                else if (!types[i] && (json_object_get(s, "enum") || json_object_get(s, "const"))) {
                    uint32_t l = compile_literals(c, s, NULL);
                    if (l == G_NONE) r = G_NONE;
                    else c->g->nodes[a].ref = l;
                } else if (!types[i]) c->g->nodes[a].ref = GB_ANY;
                else if (compile_typed(c, a, s, types[i]) == G_NONE) r = G_NONE;
                alts[i] = a;
            }
            if (r != G_NONE) {
                c->g->nodes[id].kind = GN_UNION;
                c->g->nodes[id].alt0 = c->g->n_alts;
                c->g->nodes[id].n_alts = (uint32_t)n_types;
                for (size_t i = 0; i < n_types; i++)
                    if (!g_add_alt(c, alts[i])) {
                        r = g_oom(c);
                        break;
                    }
            }
        }
    }
    c->nesting--;
    return r;
}
