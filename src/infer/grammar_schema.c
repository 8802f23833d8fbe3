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
 * After compiling: $ref placeholders are bypassed, unions are resolved into
 * first-byte tables, and each node's shortest serialisation is computed by
 * iterating to a fixed point (needed for budgets; a schema whose shortest
 * value is infinite, such as an object that requires itself, is refused).
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
static bool grow(void **p, uint32_t *cap, uint32_t need, size_t elem) {
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

static uint32_t new_node(byoai_grammar *g, uint8_t kind) {
    if (g->n_nodes >= 1u << 24 || !grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes))
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

static uint32_t add_bytes(byoai_grammar *g, const char *b, size_t n) {
    if (n > 1u << 20 || !grow((void **)&g->bytes, &g->cap_bytes, g->n_bytes + (uint32_t)n + 1, 1)) return G_NONE;
    uint32_t off = g->n_bytes;
    memcpy(g->bytes + off, b, n);
    g->n_bytes += (uint32_t)n;
    return off;
}

typedef struct tmp_lit {
    char *s;
    size_t len;
    uint32_t value;
} tmp_lit;

static int tmp_cmp(const void *a, const void *b) {
    const tmp_lit *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Append literals sorted (duplicates dropped); returns the first index. */
static uint32_t add_lits(byoai_grammar *g, tmp_lit *t, size_t n, uint32_t *n_out) {
    qsort(t, n, sizeof *t, tmp_cmp);
    uint32_t first = g->n_lits, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && t[i].len == t[i - 1].len && !memcmp(t[i].s, t[i - 1].s, t[i].len)) continue;
        uint32_t off = add_bytes(g, t[i].s, t[i].len);
        if (off == G_NONE || !grow((void **)&g->lits, &g->cap_lits, g->n_lits + 1, sizeof *g->lits)) return G_NONE;
        g->lits[g->n_lits++] = (glit){off, (uint32_t)t[i].len, t[i].value};
        k++;
    }
    *n_out = k;
    return first;
}

/* ---- the compiler ------------------------------------------------------------------- */
typedef struct memo {
    const json_t *schema;
    uint32_t node;
} memo;

typedef struct comp {
    byoai_grammar *g;
    json_t *doc;
    memo *memo;
    size_t n_memo, cap_memo;
    byoai_error *err;
    int nesting;
    char path[512];
    const char *what; /* "the schema", "tool 'x'" */
    bool failed;
} comp;

static uint32_t fail(comp *c, const char *fmt, const char *a, const char *b) {
    if (c->failed) return G_NONE;
    c->failed = true;
    char msg[600];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    byoai_error_set(c->err, BYOAI_EINVAL, "%s, at %s: %s", c->what, c->path[0] ? c->path : "#", msg);
    return G_NONE;
}

static uint32_t oom(comp *c) {
    if (!c->failed) byoai_error_set(c->err, BYOAI_ENOMEM, "out of memory compiling %s", c->what);
    c->failed = true;
    return G_NONE;
}

static size_t path_push(comp *c, const char *seg) {
    size_t n = strlen(c->path);
    if (!n) snprintf(c->path, sizeof c->path, "#");
    size_t m = strlen(c->path);
    snprintf(c->path + m, sizeof c->path - m, "/%s", seg);
    return n;
}
static void path_pop(comp *c, size_t n) { c->path[n] = '\0'; }

static bool memo_add(comp *c, const json_t *s, uint32_t node) {
    if (c->n_memo == c->cap_memo) {
        size_t cap = c->cap_memo ? c->cap_memo * 2 : 32;
        memo *m = realloc(c->memo, cap * sizeof *m);
        if (!m) return false;
        c->memo = m;
        c->cap_memo = cap;
    }
    c->memo[c->n_memo++] = (memo){s, node};
    return true;
}

static uint32_t memo_find(comp *c, const json_t *s) {
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

static uint32_t compile(comp *c, json_t *s);

/* "#/a/b~1c" inside the document */
static json_t *resolve_pointer(comp *c, const char *ref) {
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

static bool get_count(comp *c, const json_t *s, const char *key, uint32_t *out) {
    json_t *v = json_object_get(s, key);
    if (!v) return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        fail(c, "'%s' must be a non-negative integer", key, NULL);
        return false;
    }
    json_int_t x = json_integer_value(v);
    *out = x > (json_int_t)(UINT32_MAX - 1) ? UINT32_MAX - 1 : (uint32_t)x;
    return true;
}

/* A JSON value's canonical bytes (compact, keys sorted). */
static char *canonical(const json_t *v, size_t *len) {
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
static uint32_t compile_literals(comp *c, const json_t *s, const char *type) {
    json_t *e = json_object_get(s, "enum"), *k = json_object_get(s, "const");
    if (e && k) return fail(c, "'enum' and 'const' together are not supported", NULL, NULL);
    if (e && (!json_is_array(e) || json_array_size(e) == 0))
        return fail(c, "'enum' must be a non-empty array", NULL, NULL);
    size_t n = e ? json_array_size(e) : 1;
    tmp_lit *t = calloc(n, sizeof *t);
    if (!t) return oom(c);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = e ? json_array_get(e, i) : k;
        if (!type_matches(v, type)) continue;
        t[m].s = canonical(v, &t[m].len);
        if (!t[m].s) {
            for (size_t j = 0; j < m; j++) free(t[j].s);
            free(t);
            return oom(c);
        }
        m++;
    }
    uint32_t id = G_NONE;
    if (m == 0) {
        fail(c, "no value of '%s' has the type '%s'", e ? "enum" : "const", type);
    } else if ((id = new_node(c->g, GN_LITERALS)) == G_NONE) {
        oom(c);
    } else {
        uint32_t cnt;
        uint32_t first = add_lits(c->g, t, m, &cnt);
        if (first == G_NONE) id = oom(c);
        else c->g->nodes[id].lit0 = first, c->g->nodes[id].n_lits = cnt;
    }
    for (size_t j = 0; j < m; j++) free(t[j].s);
    free(t);
    return id;
}

static uint32_t literal_node(comp *c, const char *const *vals, size_t n) {
    tmp_lit t[3];
    for (size_t i = 0; i < n; i++) t[i] = (tmp_lit){(char *)vals[i], strlen(vals[i]), 0};
    uint32_t id = new_node(c->g, GN_LITERALS);
    if (id == G_NONE) return oom(c);
    uint32_t cnt, first = add_lits(c->g, t, n, &cnt);
    if (first == G_NONE) return oom(c);
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

static uint32_t compile_number(comp *c, uint32_t id, const json_t *s, bool int_only) {
    static const char *const keys[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    int scale = int_only ? 0 : NUM_SCALE;
    int64_t lim = int_only ? MAX_BOUND_INT : MAX_BOUND_NUM * 1000000LL;
    int64_t lo = -lim, hi = lim;
    bool any = false;
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(s, keys[i]);
        if (!v) continue;
        if (json_is_boolean(v))
            return fail(c, "a boolean '%s' (draft 4) is not supported: give the bound as a number", keys[i], NULL);
        if (!json_is_number(v)) return fail(c, "'%s' must be a number", keys[i], NULL);
        int64_t b;
        scaled_bound(json_number_value(v), scale, i % 2 == 0, i >= 2, &b);
        if (i % 2 == 0 && b > lo) lo = b;
        if (i % 2 == 1 && b < hi) hi = b;
        any = true;
    }
    if (lo > hi)
        return fail(c, "no %s satisfies the minimum and maximum", int_only ? "integer" : "number (with at most 6 "
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

static uint32_t compile_object(comp *c, uint32_t id, json_t *s) {
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
           *add = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return fail(c, "'properties' must be an object", NULL, NULL);
    if (req && !json_is_array(req)) return fail(c, "'required' must be an array of property names", NULL, NULL);
    size_t n = props ? json_object_size(props) : 0;
    if (n > G_MAX_PROPS) return fail(c, "an object may have at most 64 properties", NULL, NULL);
    byoai_grammar *g = c->g;
    if (!grow((void **)&g->props, &g->cap_props, g->n_props + (uint32_t)n, sizeof *g->props)) return oom(c);
    uint32_t prop0 = g->n_props;
    g->n_props += (uint32_t)n;
    tmp_lit *keys = calloc(n ? n : 1, sizeof *keys);
    if (!keys) return oom(c);
    const char *k;
    json_t *v;
    uint32_t i = 0;
    json_object_foreach(props, k, v) {
        json_t *ks = json_string(k);
        keys[i].s = ks ? canonical(ks, &keys[i].len) : NULL;
        json_decref(ks);
        keys[i].value = i;
        if (!keys[i].s) break;
        i++;
    }
    uint32_t result = id;
    if (i < n) result = oom(c);
    for (i = 0; result != G_NONE && i < n; i++) {
        k = NULL;
        size_t idx = 0;
        json_object_foreach(props, k, v) {
            if (idx++ == i) break;
        }
        size_t saved = path_push(c, "properties");
        size_t saved2 = strlen(c->path);
        snprintf(c->path + saved2, sizeof c->path - saved2, "/%s", k);
        uint32_t child = compile(c, v);
        path_pop(c, saved);
        if (child == G_NONE) result = G_NONE;
        else g->props[prop0 + i].node = child;
    }
    uint64_t required = 0;
    for (size_t r = 0; result != G_NONE && req && r < json_array_size(req); r++) {
        json_t *name = json_array_get(req, r);
        if (!json_is_string(name)) {
            result = fail(c, "'required' must hold property names (strings)", NULL, NULL);
            break;
        }
        json_t *pv = props ? json_object_get(props, json_string_value(name)) : NULL;
        if (!pv) {
            result = fail(c, "the required property '%s' is not in 'properties'", json_string_value(name), NULL);
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
            additional = compile(c, add);
            path_pop(c, saved);
            if (additional == G_NONE) result = G_NONE;
        } else result = fail(c, "'additionalProperties' must be a boolean or a schema", NULL, NULL);
    }
    if (result != G_NONE) {
        uint32_t cnt, first = add_lits(g, keys, n, &cnt);
        if (first == G_NONE || cnt != n) result = cnt != n ? fail(c, "duplicate property names", NULL, NULL) : oom(c);
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

static uint32_t compile_array(comp *c, uint32_t id, json_t *s) {
    json_t *items = json_object_get(s, "items");
    uint32_t lo = 0, hi = UINT32_MAX;
    if (!get_count(c, s, "minItems", &lo) || !get_count(c, s, "maxItems", &hi)) return G_NONE;
    if (lo > hi) return fail(c, "'minItems' is larger than 'maxItems'", NULL, NULL);
    json_t *u = json_object_get(s, "uniqueItems");
    if (json_is_true(u)) return fail(c, "'uniqueItems': true is not supported", NULL, NULL);
    uint32_t it = GB_ANY;
    if (json_is_array(items)) return fail(c, "an array of 'items' (tuples) is not supported", NULL, NULL);
    if (items && !json_is_true(items)) {
        size_t saved = path_push(c, "items");
        it = compile(c, items);
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

static uint32_t compile_string(comp *c, uint32_t id, const json_t *s) {
    uint32_t lo = 0, hi = UINT32_MAX;
    if (!get_count(c, s, "minLength", &lo) || !get_count(c, s, "maxLength", &hi)) return G_NONE;
    if (lo > hi) return fail(c, "'minLength' is larger than 'maxLength'", NULL, NULL);
    gnode *n = &c->g->nodes[id];
    n->kind = GN_STRING;
    n->min_len = lo;
    n->max_len = hi;
    return id;
}

/* one "type" applied to the schema's keywords; id is pre-allocated */
static uint32_t compile_typed(comp *c, uint32_t id, json_t *s, const char *type) {
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
    return fail(c, "unknown type '%s'", type, NULL);
}

static bool add_alt(comp *c, uint32_t node) {
    byoai_grammar *g = c->g;
    if (!grow((void **)&g->alts, &g->cap_alts, g->n_alts + 1, sizeof *g->alts)) return false;
    g->alts[g->n_alts++] = node;
    return true;
}

static uint32_t compile(comp *c, json_t *s) {
    if (c->failed) return G_NONE;
    if (json_is_true(s)) return GB_ANY;
    if (json_is_false(s)) return fail(c, "the schema 'false' allows no value", NULL, NULL);
    if (!json_is_object(s)) return fail(c, "a schema must be an object or a boolean", NULL, NULL);
    uint32_t m = memo_find(c, s);
    if (m != G_NONE) return m;
    if (++c->nesting > MAX_SCHEMA_NESTING) {
        c->nesting--;
        return fail(c, "the schema is nested more than 64 levels deep", NULL, NULL);
    }
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (!in_list(ANNOTATIONS, k) && !in_list(CONSTRAINTS, k)) {
            c->nesting--;
            return fail(c, "the JSON Schema keyword '%s' is not supported (see docs/server.md for the supported "
                        "keywords)", k, NULL);
        }
    }
    uint32_t id = new_node(c->g, GN_REF);
    if (id == G_NONE || !memo_add(c, s, id)) {
        c->nesting--;
        return oom(c);
    }
    char others[256];
    uint32_t r = id;
    json_t *ref = json_object_get(s, "$ref"), *all = json_object_get(s, "allOf"), *any = json_object_get(s, "anyOf"),
           *one = json_object_get(s, "oneOf"), *type = json_object_get(s, "type");
    json_t *nullable = json_object_get(s, "nullable");
    if (ref) {
        static const char *const only[] = {"$ref", NULL};
        if (!json_is_string(ref)) r = fail(c, "'$ref' must be a string", NULL, NULL);
        else if (other_constraints(s, only, others, sizeof others))
            r = fail(c, "'$ref' next to other keywords (%s) is not supported", others, NULL);
        else {
            json_t *t = resolve_pointer(c, json_string_value(ref));
            if (!t) r = fail(c, "'$ref' '%s' does not point into this schema (only local references such as "
                             "\"#/$defs/name\" are supported)", json_string_value(ref), NULL);
            else {
                char saved[sizeof c->path];
                memcpy(saved, c->path, sizeof saved);
                snprintf(c->path, sizeof c->path, "%s", json_string_value(ref));
                uint32_t t_id = compile(c, t);
                memcpy(c->path, saved, sizeof saved);
                if (t_id == G_NONE) r = G_NONE;
                else c->g->nodes[id].ref = t_id;
            }
        }
    } else if (all) {
        static const char *const only[] = {"allOf", NULL};
        if (!json_is_array(all) || json_array_size(all) != 1)
            r = fail(c, "'allOf' with more than one schema is not supported", NULL, NULL);
        else if (other_constraints(s, only, others, sizeof others))
            r = fail(c, "'allOf' next to other keywords (%s) is not supported", others, NULL);
        else {
            size_t saved = path_push(c, "allOf/0");
            uint32_t t_id = compile(c, json_array_get(all, 0));
            path_pop(c, saved);
            if (t_id == G_NONE) r = G_NONE;
            else c->g->nodes[id].ref = t_id;
        }
    } else if (any || one) {
        static const char *const only[] = {"anyOf", "oneOf", NULL};
        const char *kw = any ? "anyOf" : "oneOf";
        json_t *list = any ? any : one;
        if (any && one) r = fail(c, "'anyOf' and 'oneOf' together are not supported", NULL, NULL);
        else if (!json_is_array(list) || json_array_size(list) == 0)
            r = fail(c, "'%s' must be a non-empty array of schemas", kw, NULL);
        else if (other_constraints(s, only, others, sizeof others))
            r = fail(c, "'%s' next to other keywords (%s) is not supported", kw, others);
        else {
            uint32_t *tmp = malloc(json_array_size(list) * sizeof *tmp);
            if (!tmp) r = oom(c);
            for (size_t i = 0; tmp && i < json_array_size(list) && r != G_NONE; i++) {
                char seg[40];
                snprintf(seg, sizeof seg, "%s/%zu", kw, i);
                size_t saved = path_push(c, seg);
                tmp[i] = compile(c, json_array_get(list, i));
                path_pop(c, saved);
                if (tmp[i] == G_NONE) r = G_NONE;
            }
            if (tmp && r != G_NONE) {
                c->g->nodes[id].kind = GN_UNION;
                c->g->nodes[id].alt0 = c->g->n_alts;
                for (size_t i = 0; i < json_array_size(list); i++)
                    if (!add_alt(c, tmp[i])) {
                        r = oom(c);
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
                    r = fail(c, "'type' must be a type name or an array of type names", NULL, NULL);
                    break;
                }
                types[n_types++] = json_string_value(t);
            }
            if (n_types == 0 && r != G_NONE) r = fail(c, "'type' must not be an empty array", NULL, NULL);
        } else if (type) r = fail(c, "'type' must be a type name or an array of type names", NULL, NULL);
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
                uint32_t a = new_node(c->g, GN_REF);
                if (a == G_NONE) r = oom(c);
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
                    if (!add_alt(c, alts[i])) {
                        r = oom(c);
                        break;
                    }
            }
        }
    }
    c->nesting--;
    return r;
}

/* ---- after compiling: references, unions, lengths -------------------------------------- */
static uint32_t deref(const byoai_grammar *g, uint32_t i) {
    for (uint32_t hops = 0; i != G_NONE && g->nodes[i].kind == GN_REF; hops++) {
        if (hops > g->n_nodes) return G_NONE;
        i = g->nodes[i].ref;
    }
    return i;
}

static int first_class(unsigned char ch) {
    switch (ch) {
    case '{': return GC_OBJ;
    case '[': return GC_ARR;
    case '"': return GC_STR;
    case 't': return GC_T;
    case 'f': return GC_F;
    case 'n': return GC_N;
    default: return (ch == '-' || (ch >= '0' && ch <= '9')) ? GC_NUM : -1;
    }
}

/* collect a union's leaf alternatives (nested unions flattened) */
typedef struct leaves {
    uint32_t *v;
    size_t n, cap;
    bool any;
} leaves;

static bool leaves_add(leaves *l, uint32_t x) {
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == x) return true;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        uint32_t *p = realloc(l->v, cap * sizeof *p);
        if (!p) return false;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

static int flatten(const byoai_grammar *g, uint32_t u, leaves *out, int depth) {
    if (depth > 32) return BYOAI_EINVAL;
    const gnode *n = &g->nodes[u];
    for (uint32_t i = 0; i < n->n_alts; i++) {
        uint32_t a = deref(g, g->alts[n->alt0 + i]);
        if (a == G_NONE) return BYOAI_EINVAL;
        if (a == GB_ANY) out->any = true;
        else if (g->nodes[a].kind == GN_UNION) {
            int rc = flatten(g, a, out, depth + 1);
            if (rc) return rc;
        } else if (!leaves_add(out, a)) return BYOAI_ENOMEM;
    }
    return 0;
}

/* several object alternatives: find a discriminator property */
static int make_discrim(comp *c, uint32_t *objs, size_t n, uint32_t *out) {
    byoai_grammar *g = c->g;
    const gnode *first = &g->nodes[objs[0]];
    for (uint32_t p = 0; p < first->n_props; p++) {
        const glit *key = &g->lits[g->props[first->prop0 + p].key];
        bool ok = true;
        tmp_lit *vals = calloc(n, sizeof *vals);
        if (!vals) return BYOAI_ENOMEM;
        for (size_t a = 0; a < n && ok; a++) {
            const gnode *o = &g->nodes[objs[a]];
            ok = false;
            for (uint32_t q = 0; q < o->n_props; q++) {
                const glit *k2 = &g->lits[g->props[o->prop0 + q].key];
                if (k2->len != key->len || memcmp(g->bytes + k2->off, g->bytes + key->off, key->len)) continue;
                uint32_t vn = deref(g, g->props[o->prop0 + q].node);
                if (!((o->required >> q) & 1) || vn == G_NONE || g->nodes[vn].kind != GN_LITERALS ||
                    g->nodes[vn].n_lits != 1)
                    break;
                const glit *l = &g->lits[g->nodes[vn].lit0];
                if (l->len < 2 || g->bytes[l->off] != '"') break;
                vals[a] = (tmp_lit){g->bytes + l->off, l->len, objs[a]};
                ok = true;
                break;
            }
        }
        for (size_t a = 0; ok && a < n; a++)
            for (size_t b = a + 1; b < n; b++)
                if (vals[a].len == vals[b].len && !memcmp(vals[a].s, vals[b].s, vals[a].len)) ok = false;
        if (ok) {
            /* copy the bytes out: add_lits may move g->bytes */
            char **own = calloc(n, sizeof *own);
            bool good = own != NULL;
            for (size_t a = 0; good && a < n; a++) {
                own[a] = malloc(vals[a].len);
                if (!own[a]) good = false;
                else memcpy(own[a], vals[a].s, vals[a].len), vals[a].s = own[a];
            }
            uint32_t id = good ? new_node(g, GN_DISCRIM) : G_NONE;
            uint32_t cnt = 0, lit0 = id != G_NONE ? add_lits(g, vals, n, &cnt) : G_NONE;
            int rc = 0;
            if (lit0 == G_NONE) rc = BYOAI_ENOMEM;
            else {
                g->nodes[id].lit0 = lit0;
                g->nodes[id].n_lits = cnt;
                g->nodes[id].disc_key = g->props[g->nodes[objs[0]].prop0 + p].key;
                *out = id;
            }
            for (size_t a = 0; own && a < n; a++) free(own[a]);
            free(own);
            free(vals);
            return rc;
        }
        free(vals);
    }
    return BYOAI_ENOTFOUND;
}

static int finalize_union(comp *c, uint32_t u) {
    byoai_grammar *g = c->g;
    leaves l = {0};
    int rc = flatten(g, u, &l, 0);
    if (rc == BYOAI_EINVAL) {
        free(l.v);
        return fail(c, "'anyOf' refers to itself", NULL, NULL), BYOAI_EINVAL;
    }
    if (rc) {
        free(l.v);
        return oom(c), BYOAI_ENOMEM;
    }
    uint32_t cls[GC_COUNT];
    for (int i = 0; i < GC_COUNT; i++) cls[i] = G_NONE;
    if (l.any) {
        memcpy(cls, g->nodes[GB_ANY].cls, sizeof cls);
        goto done;
    }
    /* literal sets merge into one */
    size_t n_lit = 0;
    for (size_t i = 0; i < l.n; i++)
        if (g->nodes[l.v[i]].kind == GN_LITERALS) n_lit += g->nodes[l.v[i]].n_lits;
    uint32_t merged = G_NONE;
    if (n_lit) {
        tmp_lit *t = calloc(n_lit, sizeof *t);
        size_t m = 0;
        bool good = t != NULL;
        for (size_t i = 0; good && i < l.n; i++) {
            const gnode *nd = &g->nodes[l.v[i]];
            if (nd->kind != GN_LITERALS) continue;
            for (uint32_t k = 0; good && k < nd->n_lits; k++) {
                const glit *x = &g->lits[nd->lit0 + k];
                t[m].s = malloc(x->len ? x->len : 1);
                if (!t[m].s) good = false;
                else memcpy(t[m].s, g->bytes + x->off, x->len), t[m].len = x->len, m++;
            }
        }
        if (good && (merged = new_node(g, GN_LITERALS)) != G_NONE) {
            uint32_t cnt, first = add_lits(g, t, m, &cnt);
            if (first == G_NONE) good = false;
            else g->nodes[merged].lit0 = first, g->nodes[merged].n_lits = cnt;
        } else good = false;
        for (size_t i = 0; t && i < m; i++) free(t[i].s);
        free(t);
        if (!good) {
            free(l.v);
            return oom(c), BYOAI_ENOMEM;
        }
        const gnode *nd = &g->nodes[merged];
        for (uint32_t k = 0; k < nd->n_lits; k++) {
            int fc = first_class((unsigned char)g->bytes[g->lits[nd->lit0 + k].off]);
            if (fc >= 0) cls[fc] = merged;
        }
    }
    /* the others, one per class (objects: a discriminated union) */
    uint32_t objs[64];
    size_t n_obj = 0;
    for (size_t i = 0; i < l.n; i++) {
        const gnode *nd = &g->nodes[l.v[i]];
        int fc;
        switch (nd->kind) {
        case GN_LITERALS: continue;
        case GN_OBJECT:
            if (n_obj == 64) {
                free(l.v);
                return fail(c, "'anyOf' has more than 64 object alternatives", NULL, NULL), BYOAI_EINVAL;
            }
            objs[n_obj++] = l.v[i];
            continue;
        case GN_DISCRIM:
            free(l.v);
            return fail(c, "'anyOf' nested in an 'anyOf' of several objects is not supported", NULL, NULL), BYOAI_EINVAL;
        case GN_ARRAY: fc = GC_ARR; break;
        case GN_STRING: fc = GC_STR; break;
        default: fc = GC_NUM; break;
        }
        if (cls[fc] != G_NONE) {
            const gnode *prev = &g->nodes[cls[fc]];
            /* two numbers: one without bounds accepts what either does */
            if (fc == GC_NUM && prev->kind == GN_NUMBER && !prev->bounded && !prev->int_only) continue;
            if (fc == GC_NUM && prev->kind == GN_NUMBER && !nd->bounded && !nd->int_only) {
                cls[fc] = l.v[i];
                continue;
            }
            static const char *const what[] = {"objects", "arrays", "strings", "numbers"};
            free(l.v);
            return fail(c, "'anyOf' alternatives must differ in the kind of value; two of them are %s (or fixed "
                        "values of that kind)", what[fc], NULL), BYOAI_EINVAL;
        }
        cls[fc] = l.v[i];
    }
    if (n_obj == 1) cls[GC_OBJ] = objs[0];
    else if (n_obj > 1) {
        uint32_t d;
        rc = make_discrim(c, objs, n_obj, &d);
        if (rc == BYOAI_ENOMEM) {
            free(l.v);
            return oom(c), rc;
        }
        if (rc) {
            free(l.v);
            return fail(c, "'anyOf' of several objects needs a discriminator: a property that every alternative "
                        "requires, with a different \"const\" string in each", NULL, NULL), BYOAI_EINVAL;
        }
        cls[GC_OBJ] = d;
    }
    if (cls[GC_OBJ] != G_NONE && merged != G_NONE) {
        const gnode *nd = &g->nodes[merged];
        for (uint32_t k = 0; k < nd->n_lits; k++)
            if (g->bytes[g->lits[nd->lit0 + k].off] == '{') {
                free(l.v);
                return fail(c, "'anyOf' mixes a fixed object value and an object schema", NULL, NULL), BYOAI_EINVAL;
            }
    }
done:
    free(l.v);
    memcpy(g->nodes[u].cls, cls, sizeof cls);
    return 0;
}

uint32_t g_number_minlen(const gnode *n); /* grammar_match.c */

static uint32_t node_minlen(const byoai_grammar *g, const gnode *n) {
    uint32_t m = G_INF;
    switch (n->kind) {
    case GN_OBJECT: {
        uint32_t k = 0;
        m = 2;
        for (uint32_t p = 0; p < n->n_props; p++) {
            if (!((n->required >> p) & 1)) continue;
            const gprop *pr = &g->props[n->prop0 + p];
            m = g_sat_add(m, g_sat_add(g->lits[pr->key].len + 1, g->nodes[pr->node].minlen));
            k++;
        }
        if (k > 1) m = g_sat_add(m, k - 1);
        break;
    }
    case GN_DISCRIM:
        for (uint32_t k = 0; k < n->n_lits; k++) {
            uint32_t a = g->nodes[g->lits[n->lit0 + k].value].minlen;
            if (a < m) m = a;
        }
        break;
    case GN_ARRAY:
        m = 2;
        if (n->min_items) {
            uint64_t x = (uint64_t)n->min_items * (g->nodes[n->items].minlen + 1ull) - 1;
            m = g_sat_add(m, x >= G_INF ? G_INF : (uint32_t)x);
        }
        break;
    case GN_STRING: m = g_sat_add(2, n->min_len); break;
    case GN_NUMBER: m = g_number_minlen(n); break;
    case GN_LITERALS:
        for (uint32_t k = 0; k < n->n_lits; k++)
            if (g->lits[n->lit0 + k].len < m) m = g->lits[n->lit0 + k].len;
        break;
    case GN_UNION:
        for (int c = 0; c < GC_COUNT; c++)
            if (n->cls[c] != G_NONE && g->nodes[n->cls[c]].minlen < m) m = g->nodes[n->cls[c]].minlen;
        break;
    default: break;
    }
    return m;
}

/* references bypassed, unions resolved, lengths known */
static int finalize(comp *c) {
    byoai_grammar *g = c->g;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].kind == GN_REF && deref(g, i) == G_NONE) return fail(c, "a circular '$ref'", NULL, NULL), BYOAI_EINVAL;
    }
    for (uint32_t i = 0; i < g->n_props; i++) g->props[i].node = deref(g, g->props[i].node);
    uint32_t n0 = g->n_nodes;
    for (uint32_t i = 0; i < n0; i++) {
        gnode *n = &g->nodes[i];
        if (n->additional != G_NONE) n->additional = deref(g, n->additional);
        if (n->items != G_NONE) n->items = deref(g, n->items);
    }
    for (uint32_t i = GB_COUNT; i < n0; i++)
        if (g->nodes[i].kind == GN_UNION) {
            int rc = finalize_union(c, i);
            if (rc) return rc;
        }
    g->root = deref(g, g->root);
    /* shortest serialisations: iterate to the fixed point */
    for (uint32_t it = 0; it <= g->n_nodes + 1; it++) {
        bool changed = false;
        for (uint32_t i = 0; i < g->n_nodes; i++) {
            gnode *n = &g->nodes[i];
            if (n->kind == GN_REF) continue;
            uint32_t m = node_minlen(g, n);
            if (m < n->minlen) n->minlen = m, changed = true;
        }
        if (!changed) break;
    }
    if (g->nodes[g->root].minlen >= G_INF)
        return fail(c, "the schema allows no finite value (does a required property refer back to its own "
                    "object?)", NULL, NULL), BYOAI_EINVAL;
    return 0;
}

/* ---- grammars -------------------------------------------------------------------------------- */
static byoai_grammar *grammar_new(comp *c) {
    byoai_grammar *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->refs = 1;
    c->g = g;
    /* builtins, in the order of GB_* */
    for (int i = 0; i < GB_COUNT; i++)
        if (new_node(g, GN_REF) == G_NONE) return g;
    g->nodes[GB_ANY_OBJECT].kind = GN_OBJECT;
    g->nodes[GB_ANY_OBJECT].additional = GB_ANY;
    g->nodes[GB_ANY_ARRAY].kind = GN_ARRAY;
    g->nodes[GB_ANY_ARRAY].items = GB_ANY;
    g->nodes[GB_STRING].kind = GN_STRING;
    g->nodes[GB_NUMBER].kind = GN_NUMBER;
    static const char *const tfn[] = {"false", "null", "true"};
    tmp_lit t[3];
    for (int i = 0; i < 3; i++) t[i] = (tmp_lit){(char *)tfn[i], strlen(tfn[i]), 0};
    uint32_t cnt, first = add_lits(g, t, 3, &cnt);
    if (first == G_NONE) return g;
    g->nodes[GB_TRUE_FALSE_NULL].kind = GN_LITERALS;
    g->nodes[GB_TRUE_FALSE_NULL].lit0 = first;
    g->nodes[GB_TRUE_FALSE_NULL].n_lits = cnt;
    gnode *any = &g->nodes[GB_ANY];
    any->kind = GN_UNION;
    any->cls[GC_OBJ] = GB_ANY_OBJECT;
    any->cls[GC_ARR] = GB_ANY_ARRAY;
    any->cls[GC_STR] = GB_STRING;
    any->cls[GC_NUM] = GB_NUMBER;
    any->cls[GC_T] = any->cls[GC_F] = any->cls[GC_N] = GB_TRUE_FALSE_NULL;
    return g;
}

static char *dup_str(const char *s, uint32_t *len) {
    size_t n = s ? strlen(s) : 0;
    char *d = malloc(n + 1);
    if (d) memcpy(d, s ? s : "", n), d[n] = '\0';
    *len = (uint32_t)n;
    return d;
}

static int set_program(byoai_grammar *g, const char *prefix, size_t trigger_len, const char *suffix, const char *sep,
                       bool text, byoai_error *err) {
    g->prefix = dup_str(prefix, &g->prefix_len);
    g->suffix = dup_str(suffix, &g->suffix_len);
    g->separator = sep ? dup_str(sep, &g->separator_len) : NULL;
    if (!g->prefix || !g->suffix || (sep && !g->separator)) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    g->text = text;
    g->trigger_len = text ? (uint32_t)(trigger_len < g->prefix_len ? trigger_len : g->prefix_len) : 0;
    g->at_start = text && g->trigger_len == 0;
    if (g->trigger_len) {
        g->fail = calloc(g->trigger_len, sizeof *g->fail);
        if (!g->fail) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        for (uint32_t i = 1, k = 0; i < g->trigger_len; i++) {
            while (k && g->prefix[i] != g->prefix[k]) k = g->fail[k - 1];
            if (g->prefix[i] == g->prefix[k]) k++;
            g->fail[i] = k;
        }
    }
    return 0;
}

byoai_grammar *byoai_grammar_ref(byoai_grammar *g) {
    if (g) __atomic_add_fetch(&g->refs, 1, __ATOMIC_ACQ_REL);
    return g;
}

void byoai_grammar_free(byoai_grammar *g) {
    if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    free(g->nodes);
    free(g->props);
    free(g->lits);
    free(g->alts);
    free(g->bytes);
    free(g->prefix);
    free(g->suffix);
    free(g->separator);
    free(g->fail);
    free(g);
}

static int parse_doc(const char *text, size_t len, const char *what, json_t **out, byoai_error *err) {
    json_error_t je;
    *out = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (!*out) return byoai_error_set(err, BYOAI_EINVAL, "%s is not valid JSON: %s", what, je.text);
    return 0;
}

int byoai_grammar_from_schema(const char *schema, size_t len, byoai_grammar **out, byoai_error *err) {
    *out = NULL;
    json_t *doc;
    if (parse_doc(schema, len, "the schema", &doc, err)) return BYOAI_EINVAL;
    comp c = {.doc = doc, .err = err, .what = "the schema"};
    byoai_grammar *g = grammar_new(&c);
    int rc = 0;
    if (!g || g->n_nodes < GB_COUNT) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    else {
        g->root = compile(&c, doc);
        if (g->root == G_NONE) rc = c.err && c.err->code ? c.err->code : BYOAI_EINVAL;
        else if ((rc = finalize(&c))) {
        } else rc = set_program(g, "", 0, "", NULL, false, err);
    }
    free(c.memo);
    json_decref(doc);
    if (rc) {
        if (!c.failed && err && !err->code) byoai_error_set(err, rc, "cannot compile the schema");
        byoai_grammar_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int byoai_grammar_json_object(byoai_grammar **out, byoai_error *err) {
    return byoai_grammar_from_schema("{\"type\":\"object\"}", 17, out, err);
}

/* One call object: {"name": const NAME, ARGS_KEY: parameters}, name first. */
static uint32_t tool_object(comp *c, const byoai_grammar_tool *t, const char *args_key) {
    byoai_grammar *g = c->g;
    json_t *params = NULL;
    if (t->parameters && t->parameters_len) {
        json_error_t je;
        params = json_loadb(t->parameters, t->parameters_len, JSON_DECODE_ANY, &je);
        if (!params) return fail(c, "its parameters are not valid JSON: %s", je.text, NULL);
    }
    c->doc = params;
    c->n_memo = 0;
    c->path[0] = '\0';
    uint32_t args = params ? compile(c, params) : GB_ANY_OBJECT;
    json_decref(params);
    c->doc = NULL;
    if (args == G_NONE) return G_NONE;
    json_t *name = json_string(t->name);
    size_t nl;
    char *name_lit = name ? canonical(name, &nl) : NULL;
    json_decref(name);
    if (!name_lit) return oom(c);
    uint32_t lit_node = new_node(g, GN_LITERALS), obj = new_node(g, GN_OBJECT);
    tmp_lit v = {name_lit, nl, 0};
    uint32_t cnt, l0 = lit_node != G_NONE && obj != G_NONE ? add_lits(g, &v, 1, &cnt) : G_NONE;
    free(name_lit);
    if (l0 == G_NONE) return oom(c);
    g->nodes[lit_node].lit0 = l0;
    g->nodes[lit_node].n_lits = 1;
    tmp_lit keys[2] = {{"\"name\"", 6, 0}, {NULL, 0, 1}};
    char ak[80];
    int akl = snprintf(ak, sizeof ak, "\"%s\"", args_key);
    keys[1].s = ak;
    keys[1].len = (size_t)akl;
    if (!grow((void **)&g->props, &g->cap_props, g->n_props + 2, sizeof *g->props)) return oom(c);
    uint32_t prop0 = g->n_props;
    g->n_props += 2;
    uint32_t k0 = add_lits(g, keys, 2, &cnt);
    if (k0 == G_NONE) return oom(c);
    g->props[prop0] = (gprop){G_NONE, lit_node};
    g->props[prop0 + 1] = (gprop){G_NONE, args};
    for (uint32_t i = 0; i < 2; i++) g->props[prop0 + g->lits[k0 + i].value].key = k0 + i;
    gnode *o = &g->nodes[obj];
    o->prop0 = prop0;
    o->n_props = 2;
    o->lit0 = k0;
    o->required = 3;
    return obj;
}

int byoai_grammar_for_tools(const byoai_grammar_tool *tools, size_t n, const byoai_tool_syntax *syn, bool text_first,
                            byoai_grammar **out, byoai_error *err) {
    *out = NULL;
    if (n == 0 || n > 1024) return byoai_error_set(err, BYOAI_EINVAL, "between 1 and 1024 tools are needed");
    if (!syn || !syn->args_key || strlen(syn->args_key) > 64)
        return byoai_error_set(err, BYOAI_EINVAL, "the tool-call syntax is incomplete");
    comp c = {.err = err, .what = "the tools"};
    byoai_grammar *g = grammar_new(&c);
    int rc = 0;
    char what[200];
    uint32_t *objs = calloc(n, sizeof *objs);
    if (!g || g->n_nodes < GB_COUNT || !objs) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        if (!tools[i].name || !tools[i].name[0]) {
            rc = byoai_error_set(err, BYOAI_EINVAL, "tool %zu has no name", i);
            break;
        }
        snprintf(what, sizeof what, "the parameters of tool '%.120s'", tools[i].name);
        c.what = what;
        objs[i] = tool_object(&c, &tools[i], syn->args_key);
        if (objs[i] == G_NONE) rc = err && err->code ? err->code : BYOAI_EINVAL;
    }
    uint32_t call = G_NONE;
    if (!rc) {
        /* one union of the calls, told apart by "name" (written first) */
        call = new_node(g, GN_UNION);
        if (call == G_NONE) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        else {
            g->nodes[call].alt0 = g->n_alts;
            for (size_t i = 0; i < n && !rc; i++)
                if (!add_alt(&c, objs[i])) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
            g->nodes[call].n_alts = (uint32_t)n;
        }
    }
    if (!rc && syn->array) {
        uint32_t arr = new_node(g, GN_ARRAY);
        if (arr == G_NONE) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        else {
            g->nodes[arr].items = call;
            g->nodes[arr].min_items = 1;
            call = arr;
        }
    }
    if (!rc) {
        g->root = call;
        c.what = "the tools";
        if (n > 1) {
            /* names must differ, or the discriminator cannot tell them apart */
            for (size_t i = 0; i < n && !rc; i++)
                for (size_t j = i + 1; j < n; j++)
                    if (!strcmp(tools[i].name, tools[j].name)) {
                        rc = byoai_error_set(err, BYOAI_EINVAL, "two tools are named '%.200s'", tools[i].name);
                        break;
                    }
        }
        if (!rc) rc = finalize(&c);
        if (!rc) rc = set_program(g, syn->prefix, syn->trigger_len, syn->suffix, syn->array ? NULL : syn->separator,
                                  text_first, err);
    }
    free(objs);
    free(c.memo);
    if (rc) {
        byoai_grammar_free(g);
        return rc;
    }
    *out = g;
    return 0;
}
