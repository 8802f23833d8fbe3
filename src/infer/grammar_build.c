/*
 * Grammars: what follows the schema compiler (grammar_schema.c), and the
 * grammars the API hands out.
 *
 * After compiling, $ref placeholders are bypassed, unions are resolved into
 * first-byte tables (literal sets merged, several objects turned into a
 * discriminated union), and each node's shortest serialisation is computed
 * by iterating to a fixed point (needed for budgets; a schema whose
 * shortest value is infinite, such as an object that requires itself, is
 * refused). A grammar is the value's root node plus its program: free
 * text with a trigger, a prefix, a suffix, a separator (tool calls).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/grammar_internal.h"

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
static int make_discrim(g_comp *c, uint32_t *objs, size_t n, uint32_t *out) {
    byoai_grammar *g = c->g;
    const gnode *first = &g->nodes[objs[0]];
    for (uint32_t p = 0; p < first->n_props; p++) {
        const glit *key = &g->lits[g->props[first->prop0 + p].key];
        bool ok = true;
        g_tmp_lit *vals = calloc(n, sizeof *vals);
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
                vals[a] = (g_tmp_lit){g->bytes + l->off, l->len, objs[a]};
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
            uint32_t id = good ? g_new_node(g, GN_DISCRIM) : G_NONE;
            uint32_t cnt = 0, lit0 = id != G_NONE ? g_add_lits(g, vals, n, &cnt) : G_NONE;
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

static int finalize_union(g_comp *c, uint32_t u) {
    byoai_grammar *g = c->g;
    leaves l = {0};
    int rc = flatten(g, u, &l, 0);
    if (rc == BYOAI_EINVAL) {
        free(l.v);
        return g_fail(c, "'anyOf' refers to itself", NULL, NULL), BYOAI_EINVAL;
    }
    if (rc) {
        free(l.v);
        return g_oom(c), BYOAI_ENOMEM;
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
        g_tmp_lit *t = calloc(n_lit, sizeof *t);
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
        if (good && (merged = g_new_node(g, GN_LITERALS)) != G_NONE) {
            uint32_t cnt, first = g_add_lits(g, t, m, &cnt);
            if (first == G_NONE) good = false;
            else g->nodes[merged].lit0 = first, g->nodes[merged].n_lits = cnt;
        } else good = false;
        for (size_t i = 0; t && i < m; i++) free(t[i].s);
        free(t);
        if (!good) {
            free(l.v);
            return g_oom(c), BYOAI_ENOMEM;
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
                return g_fail(c, "'anyOf' has more than 64 object alternatives", NULL, NULL), BYOAI_EINVAL;
            }
            objs[n_obj++] = l.v[i];
            continue;
        case GN_DISCRIM:
            free(l.v);
            return g_fail(c, "'anyOf' nested in an 'anyOf' of several objects is not supported", NULL, NULL), BYOAI_EINVAL;
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
            return g_fail(c, "'anyOf' alternatives must differ in the kind of value; two of them are %s (or fixed "
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
            return g_oom(c), rc;
        }
        if (rc) {
            free(l.v);
            return g_fail(c, "'anyOf' of several objects needs a discriminator: a property that every alternative "
                        "requires, with a different \"const\" string in each", NULL, NULL), BYOAI_EINVAL;
        }
        cls[GC_OBJ] = d;
    }
    if (cls[GC_OBJ] != G_NONE && merged != G_NONE) {
        const gnode *nd = &g->nodes[merged];
        for (uint32_t k = 0; k < nd->n_lits; k++)
            if (g->bytes[g->lits[nd->lit0 + k].off] == '{') {
                free(l.v);
                return g_fail(c, "'anyOf' mixes a fixed object value and an object schema", NULL, NULL), BYOAI_EINVAL;
            }
    }
done:
    free(l.v);
    memcpy(g->nodes[u].cls, cls, sizeof cls);
    return 0;
}


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
static int finalize(g_comp *c) {
    byoai_grammar *g = c->g;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].kind == GN_REF && deref(g, i) == G_NONE) return g_fail(c, "a circular '$ref'", NULL, NULL), BYOAI_EINVAL;
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
        return g_fail(c, "the schema allows no finite value (does a required property refer back to its own "
                    "object?)", NULL, NULL), BYOAI_EINVAL;
    return 0;
}

/* ---- grammars -------------------------------------------------------------------------------- */
static byoai_grammar *grammar_new(g_comp *c) {
    byoai_grammar *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->refs = 1;
    c->g = g;
    /* builtins, in the order of GB_* */
    for (int i = 0; i < GB_COUNT; i++)
        if (g_new_node(g, GN_REF) == G_NONE) return g;
    g->nodes[GB_ANY_OBJECT].kind = GN_OBJECT;
    g->nodes[GB_ANY_OBJECT].additional = GB_ANY;
    g->nodes[GB_ANY_ARRAY].kind = GN_ARRAY;
    g->nodes[GB_ANY_ARRAY].items = GB_ANY;
    g->nodes[GB_STRING].kind = GN_STRING;
    g->nodes[GB_NUMBER].kind = GN_NUMBER;
    static const char *const tfn[] = {"false", "null", "true"};
    g_tmp_lit t[3];
    for (int i = 0; i < 3; i++) t[i] = (g_tmp_lit){(char *)tfn[i], strlen(tfn[i]), 0};
    uint32_t cnt, first = g_add_lits(g, t, 3, &cnt);
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
    g_comp c = {.doc = doc, .err = err, .what = "the schema"};
    byoai_grammar *g = grammar_new(&c);
    int rc = 0;
    if (!g || g->n_nodes < GB_COUNT) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    else {
        g->root = g_compile(&c, doc);
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
static uint32_t tool_object(g_comp *c, const byoai_grammar_tool *t, const char *args_key) {
    byoai_grammar *g = c->g;
    json_t *params = NULL;
    if (t->parameters && t->parameters_len) {
        json_error_t je;
        params = json_loadb(t->parameters, t->parameters_len, JSON_DECODE_ANY, &je);
        if (!params) return g_fail(c, "its parameters are not valid JSON: %s", je.text, NULL);
    }
    c->doc = params;
    c->n_memo = 0;
    c->path[0] = '\0';
    uint32_t args = params ? g_compile(c, params) : GB_ANY_OBJECT;
    json_decref(params);
    c->doc = NULL;
    if (args == G_NONE) return G_NONE;
    json_t *name = json_string(t->name);
    size_t nl;
    char *name_lit = name ? g_canonical(name, &nl) : NULL;
    json_decref(name);
    if (!name_lit) return g_oom(c);
    uint32_t lit_node = g_new_node(g, GN_LITERALS), obj = g_new_node(g, GN_OBJECT);
    g_tmp_lit v = {name_lit, nl, 0};
    uint32_t cnt, l0 = lit_node != G_NONE && obj != G_NONE ? g_add_lits(g, &v, 1, &cnt) : G_NONE;
    free(name_lit);
    if (l0 == G_NONE) return g_oom(c);
    g->nodes[lit_node].lit0 = l0;
    g->nodes[lit_node].n_lits = 1;
    g_tmp_lit keys[2] = {{"\"name\"", 6, 0}, {NULL, 0, 1}};
    char ak[80];
    int akl = snprintf(ak, sizeof ak, "\"%s\"", args_key);
    keys[1].s = ak;
    keys[1].len = (size_t)akl;
    if (!g_grow((void **)&g->props, &g->cap_props, g->n_props + 2, sizeof *g->props)) return g_oom(c);
    uint32_t prop0 = g->n_props;
    g->n_props += 2;
    uint32_t k0 = g_add_lits(g, keys, 2, &cnt);
    if (k0 == G_NONE) return g_oom(c);
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
    g_comp c = {.err = err, .what = "the tools"};
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
        call = g_new_node(g, GN_UNION);
        if (call == G_NONE) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        else {
            g->nodes[call].alt0 = g->n_alts;
            for (size_t i = 0; i < n && !rc; i++)
                if (!g_add_alt(&c, objs[i])) rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
            g->nodes[call].n_alts = (uint32_t)n;
        }
    }
    if (!rc && syn->array) {
        uint32_t arr = g_new_node(g, GN_ARRAY);
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
