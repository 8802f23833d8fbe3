/*
 * The grammar matcher: bytes in, "still a valid prefix?" out.
 *
 * Around the value runs a small program (free text, a trigger, a forced
 * prefix, the value, a suffix, a separator before the next value); the
 * value itself is read by a pushdown automaton whose frames are the open
 * objects and arrays, each pointing at its schema node. Lexical rules are
 * those of grammar_json.c (no surrogate escapes, at most 18 integer digits
 * and 2 exponent digits, at most 32 white-space bytes in a row, no white
 * space around the top-level value). On top of them:
 *   - objects: keys are matched against the declared keys (a sorted literal
 *     range narrowed byte by byte) and, when additional properties are
 *     allowed, as free strings; a key may appear once; '}' only once every
 *     required property is present; a discriminated union writes its
 *     discriminator first and then continues as the alternative it named;
 *   - arrays: minItems / maxItems; strings: minLength / maxLength counted
 *     in characters; enums and consts: exact canonical bytes;
 *   - bounded numbers: every prefix must still be completable to a value
 *     within the bounds (grammar_number.c).
 * g_min_remaining computes the exact shortest completion from any state,
 * which the sampler filter compares with its token budget.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "infer/grammar_internal.h"

enum { P_START, P_TEXT, P_FREE, P_PREFIX, P_VALUE, P_SUFFIX, P_AFTER, P_SEP };
enum { S_VALUE, S_OBJ_FIRST, S_OBJ_KEY, S_KEY, S_COLON, S_ARR_FIRST, S_AFTER, S_STRING, S_NUMBER, S_LITERAL, S_DONE };
enum { F_NEG = 1, F_ESC = 2, F_HEXD = 4, F_FREE = 8, F_LIT = 16, F_DISCVAL = 32 };

#define MAX_WS_RUN 32
#define MAX_INT_DIGITS 18
#define MAX_EXP_DIGITS 2
#define MAX_FRAC_DIGITS 32

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static const gnode *N(const byoai_grammar *g, uint32_t i) { return &g->nodes[i]; }
static gframe *top(gstate *s) { return &s->f[s->depth - 1]; }
static const gframe *ctop(const gstate *s) { return &s->f[s->depth - 1]; }

static int first_class(unsigned char ch) {
    switch (ch) {
    case '{': return GC_OBJ;
    case '[': return GC_ARR;
    case '"': return GC_STR;
    case 't': return GC_T;
    case 'f': return GC_F;
    case 'n': return GC_N;
    default: return (ch == '-' || is_digit(ch)) ? GC_NUM : -1;
    }
}

static numpos numpos_of(const gstate *s) {
    return (numpos){s->sub, s->int_digits, s->frac_digits, (s->flags & F_NEG) != 0, s->mant};
}

/* ---- literal ranges ---------------------------------------------------------------- */
/* narrow [lo, hi) (all sharing bytes [0, pos)) to those whose byte pos is c */
static bool narrow(const byoai_grammar *g, uint32_t *lo, uint32_t *hi, uint32_t pos, unsigned char c) {
    uint32_t a = *lo, b = *hi;
    while (a < b && (g->lits[a].len <= pos || (unsigned char)g_lit_bytes(g, a)[pos] < c)) a++;
    uint32_t e = a;
    while (e < b && g->lits[e].len > pos && (unsigned char)g_lit_bytes(g, e)[pos] == c) e++;
    if (a == e) return false;
    *lo = a;
    *hi = e;
    return true;
}

/* ---- objects -------------------------------------------------------------------------- */
static uint32_t prop_cost(const byoai_grammar *g, const gnode *o, uint32_t p) {
    const gprop *pr = &g->props[o->prop0 + p];
    return g_sat_add(g->lits[pr->key].len + 1, N(g, pr->node)->minlen);
}

/* required properties not yet present, each after a comma, then '}' */
static uint32_t obj_rest(const byoai_grammar *g, const gnode *o, uint64_t seen, uint32_t except) {
    uint32_t m = 1;
    uint64_t left = o->required & ~seen;
    for (uint32_t p = 0; left && p < o->n_props; p++)
        if (((left >> p) & 1) && p != except) m = g_sat_add(m, g_sat_add(1, prop_cost(g, o, p)));
    return m;
}

static uint32_t arr_rest(const byoai_grammar *g, const gnode *a, uint32_t count) {
    if (count >= a->min_items) return 1;
    uint64_t x = (uint64_t)(a->min_items - count) * (N(g, a->items)->minlen + 1ull) + 1;
    return x >= G_INF ? G_INF : (uint32_t)x;
}

static uint32_t frame_rest(const byoai_grammar *g, const gframe *f) {
    const gnode *n = N(g, f->node);
    return n->kind == GN_ARRAY ? arr_rest(g, n, f->count) : obj_rest(g, n, f->seen, G_NONE);
}

/* the index of the property with key literal bytes k in object o */
static uint32_t prop_by_key(const byoai_grammar *g, const gnode *o, const glit *k) {
    for (uint32_t p = 0; p < o->n_props; p++) {
        const glit *x = &g->lits[g->props[o->prop0 + p].key];
        if (x->len == k->len && !memcmp(g->bytes + x->off, g->bytes + k->off, k->len)) return p;
    }
    return G_NONE;
}

/* after a discriminated union's value: the alternative's remaining cost */
static uint32_t disc_alt_rest(const byoai_grammar *g, const gnode *d, uint32_t alt) {
    const gnode *o = N(g, alt);
    return obj_rest(g, o, 0, prop_by_key(g, o, &g->lits[d->disc_key]));
}

static uint32_t disc_value_min(const byoai_grammar *g, const gnode *d, uint32_t lo, uint32_t hi, uint32_t pos) {
    uint32_t m = G_INF;
    for (uint32_t i = lo; i < hi; i++) {
        uint32_t x = g_sat_add(g->lits[i].len - pos, disc_alt_rest(g, d, g->lits[i].value));
        if (x < m) m = x;
    }
    return m;
}

static bool has_unseen(const byoai_grammar *g, uint32_t lo, uint32_t hi, uint64_t seen) {
    for (uint32_t i = lo; i < hi; i++)
        if (!((seen >> g->lits[i].value) & 1)) return true;
    return false;
}

/* ---- the value automaton -------------------------------------------------------------- */
static bool ws(gstate *s) { return ++s->ws_run <= MAX_WS_RUN; }

static void value_done(gstate *s) { s->st = s->depth == 0 ? S_DONE : S_AFTER; }

static bool push(gstate *s, uint32_t node, uint8_t st) {
    if (s->depth >= G_MAX_DEPTH) return false;
    s->f[s->depth++] = (gframe){node, 0, 0};
    s->st = st;
    return true;
}

static bool number_can_end(const byoai_grammar *g, const gstate *s) {
    const gnode *n = N(g, s->vnode);
    if (n->bounded) {
        numpos p = numpos_of(s);
        return g_num_complete_in(n, &p, 0);
    }
    return s->sub == N_ZERO || s->sub == N_INT || s->sub == N_FRAC || s->sub == N_EXP;
}

static bool literal_complete(const byoai_grammar *g, const gstate *s) { return g->lits[s->lo].len == s->pos; }

/* the first byte of a value of node v */
static bool start_value(const byoai_grammar *g, gstate *s, uint32_t v, unsigned char c) {
    const gnode *n = N(g, v);
    if (n->kind == GN_UNION) {
        int fc = first_class(c);
        if (fc < 0 || n->cls[fc] == G_NONE) return false;
        v = n->cls[fc];
        n = N(g, v);
    }
    switch (n->kind) {
    case GN_OBJECT: case GN_DISCRIM: return c == '{' && push(s, v, S_OBJ_FIRST);
    case GN_ARRAY: return c == '[' && push(s, v, S_ARR_FIRST);
    case GN_STRING:
        if (c != '"') return false;
        s->st = S_STRING;
        s->vnode = v;
        s->slen = 0;
        s->sub = 0;
        s->utf8_left = 0;
        s->flags &= (uint8_t)~(F_ESC | F_HEXD);
        return true;
    case GN_NUMBER: {
        if (c != '-' && !is_digit(c)) return false;
        s->st = S_NUMBER;
        s->vnode = v;
        s->flags &= (uint8_t)~F_NEG;
        s->int_digits = s->frac_digits = s->exp_digits = 0;
        s->mant = 0;
        if (c == '-') {
            s->flags |= F_NEG;
            s->sub = N_MINUS;
        } else {
            s->sub = c == '0' ? N_ZERO : N_INT;
            s->int_digits = 1;
            s->mant = c - '0';
        }
        if (n->bounded) {
            numpos p = numpos_of(s);
            return g_num_min_more(n, &p) >= 0;
        }
        return true;
    }
    case GN_LITERALS: {
        uint32_t lo = n->lit0, hi = n->lit0 + n->n_lits;
        if (!narrow(g, &lo, &hi, 0, c)) return false;
        s->st = S_LITERAL;
        s->vnode = v;
        s->lo = lo;
        s->hi = hi;
        s->pos = 1;
        if (hi - lo == 1 && literal_complete(g, s)) value_done(s);
        return true;
    }
    default: return false;
    }
}

/* a byte inside a string; -1 bad, 0 more, 1 the closing quote */
static int string_byte(gstate *s, unsigned char c, uint32_t min_len, uint32_t max_len) {
    if (s->utf8_left) {
        if (c < s->utf8_lo || c > s->utf8_hi) return -1;
        s->utf8_left--;
        s->utf8_lo = 0x80;
        s->utf8_hi = 0xBF;
        return 0;
    }
    if (s->flags & F_ESC) {
        s->flags &= (uint8_t)~F_ESC;
        if (c == 'u') {
            s->sub = 4;
            return 0;
        }
        return strchr("\"\\/bfnrt", c) && c ? 0 : -1;
    }
    if (s->sub) {
        if (!is_hex(c)) return -1;
        /* no UTF-16 surrogates (\uD800..\uDFFF): many parsers reject lone ones */
        if (s->sub == 3 && (s->flags & F_HEXD) && ((c >= '8' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return -1;
        if (s->sub == 4) {
            if (c == 'd' || c == 'D') s->flags |= F_HEXD;
            else s->flags &= (uint8_t)~F_HEXD;
        }
        s->sub--;
        return 0;
    }
    if (c == '"') return s->slen >= min_len ? 1 : -1;
    if (c < 0x20) return -1;
    if (s->slen >= max_len) return -1;
    if (c == '\\') {
        s->slen++;
        s->flags |= F_ESC;
        return 0;
    }
    if (c < 0x80) {
        s->slen++;
        return 0;
    }
    s->utf8_lo = 0x80;
    s->utf8_hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) s->utf8_left = 1;
    else if (c == 0xE0) s->utf8_left = 2, s->utf8_lo = 0xA0;
    else if (c == 0xED) s->utf8_left = 2, s->utf8_hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) s->utf8_left = 2;
    else if (c == 0xF0) s->utf8_left = 3, s->utf8_lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) s->utf8_left = 3;
    else if (c == 0xF4) s->utf8_left = 3, s->utf8_hi = 0x8F;
    else return -1;
    s->slen++;
    return 0;
}

static bool start_key(const byoai_grammar *g, gstate *s) {
    const gframe *f = ctop(s);
    const gnode *o = N(g, f->node);
    s->st = S_KEY;
    s->pos = 1;
    s->flags &= (uint8_t)~(F_FREE | F_LIT | F_ESC | F_HEXD);
    s->sub = 0;
    s->utf8_left = 0;
    s->slen = 0;
    if (o->kind == GN_DISCRIM) {
        s->lo = o->disc_key;
        s->hi = o->disc_key + 1;
        s->flags |= F_LIT;
        return true;
    }
    s->lo = o->lit0;
    s->hi = o->lit0 + o->n_props;
    if (has_unseen(g, s->lo, s->hi, f->seen)) s->flags |= F_LIT;
    if (o->additional != G_NONE) s->flags |= F_FREE;
    return (s->flags & (F_LIT | F_FREE)) != 0;
}

static bool key_byte(const byoai_grammar *g, gstate *s, unsigned char c) {
    gframe *f = top(s);
    const gnode *o = N(g, f->node);
    bool disc = o->kind == GN_DISCRIM;
    bool lit = (s->flags & F_LIT) && narrow(g, &s->lo, &s->hi, s->pos, c);
    int fr = (s->flags & F_FREE) ? string_byte(s, c, 0, UINT32_MAX) : -1;
    if (lit) {
        s->pos++;
        if (g->lits[s->lo].len == s->pos) { /* a declared key, complete */
            if (disc) {
                s->flags |= F_DISCVAL;
                s->st = S_COLON;
                return true;
            }
            uint32_t p = g->lits[s->lo].value;
            if ((f->seen >> p) & 1) return false; /* a key only once */
            f->seen |= (uint64_t)1 << p;
            s->vnode = g->props[o->prop0 + p].node;
            s->st = S_COLON;
            return true;
        }
        if (!disc && !has_unseen(g, s->lo, s->hi, f->seen)) lit = false;
    }
    if (fr == 1) { /* an additional property */
        s->vnode = o->additional;
        s->st = S_COLON;
        return true;
    }
    if (!lit) s->flags &= (uint8_t)~F_LIT;
    if (fr < 0) s->flags &= (uint8_t)~F_FREE;
    return (s->flags & (F_LIT | F_FREE)) != 0;
}

static bool feed_value(const byoai_grammar *g, gstate *s, unsigned char c);

/* a number or literal that ended at c: finish it, then c continues the container */
static bool end_and_refeed(const byoai_grammar *g, gstate *s, unsigned char c) {
    value_done(s);
    if (s->st == S_DONE) return false;
    return feed_value(g, s, c);
}

static bool object_more(const byoai_grammar *g, const gframe *f) {
    const gnode *o = N(g, f->node);
    uint64_t all = o->n_props >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << o->n_props) - 1);
    return (all & ~f->seen) != 0 || o->additional != G_NONE;
}

static bool feed_value(const byoai_grammar *g, gstate *s, unsigned char c) {
    if (is_ws(c)) {
        switch (s->st) {
        case S_VALUE: return s->depth && ws(s);
        case S_OBJ_FIRST: case S_OBJ_KEY: case S_COLON: case S_ARR_FIRST: case S_AFTER: return ws(s);
        case S_NUMBER:
            if (!s->depth || !number_can_end(g, s)) return false;
            value_done(s);
            return ws(s);
        case S_LITERAL:
            if (!s->depth || !literal_complete(g, s)) return false;
            value_done(s);
            return ws(s);
        default: break;
        }
    }
    if (s->st != S_STRING && s->st != S_KEY) s->ws_run = 0;
    switch (s->st) {
    case S_VALUE:
        if (s->flags & F_DISCVAL) {
            const gnode *d = N(g, ctop(s)->node);
            uint32_t lo = d->lit0, hi = d->lit0 + d->n_lits;
            if (!narrow(g, &lo, &hi, 0, c)) return false;
            s->st = S_LITERAL;
            s->lo = lo;
            s->hi = hi;
            s->pos = 1;
            return true;
        }
        return start_value(g, s, s->vnode, c);
    case S_OBJ_FIRST: {
        const gframe *f = ctop(s);
        const gnode *o = N(g, f->node);
        if (c == '}') {
            if (o->kind == GN_DISCRIM || (o->required & ~f->seen)) return false;
            s->depth--;
            value_done(s);
            return true;
        }
        return c == '"' && start_key(g, s);
    }
    case S_OBJ_KEY: return c == '"' && start_key(g, s);
    case S_KEY: return key_byte(g, s, c);
    case S_COLON:
        if (c != ':') return false;
        s->st = S_VALUE;
        return true;
    case S_ARR_FIRST: {
        gframe *f = top(s);
        const gnode *a = N(g, f->node);
        if (c == ']') {
            if (a->min_items) return false;
            s->depth--;
            value_done(s);
            return true;
        }
        if (a->max_items == 0) return false;
        f->count = 1;
        s->vnode = a->items;
        return start_value(g, s, a->items, c);
    }
    case S_AFTER: {
        gframe *f = top(s);
        const gnode *n = N(g, f->node);
        if (n->kind == GN_ARRAY) {
            if (c == ',') {
                if (f->count >= n->max_items) return false;
                f->count++;
                s->vnode = n->items;
                s->st = S_VALUE;
                return true;
            }
            if (c != ']' || f->count < n->min_items) return false;
        } else {
            if (c == ',') {
                if (!object_more(g, f)) return false;
                s->st = S_OBJ_KEY;
                return true;
            }
            if (c != '}' || (n->required & ~f->seen)) return false;
        }
        s->depth--;
        value_done(s);
        return true;
    }
    case S_STRING: {
        const gnode *n = N(g, s->vnode);
        int r = string_byte(s, c, n->min_len, n->max_len);
        if (r < 0) return false;
        if (r == 1) value_done(s);
        return true;
    }
    case S_NUMBER: {
        const gnode *n = N(g, s->vnode);
        if (n->bounded) {
            int maxi = g_num_max_int_digits(n);
            const numpos save = numpos_of(s);
            bool ok = true;
            switch (s->sub) {
            case N_MINUS:
                if (!is_digit(c)) ok = false;
                else s->sub = c == '0' ? N_ZERO : N_INT, s->int_digits = 1, s->mant = c - '0';
                break;
            case N_ZERO:
                if (c == '.' && n->scale) s->sub = N_DOT;
                else ok = false;
                break;
            case N_INT:
                if (is_digit(c) && s->int_digits < maxi) s->mant = s->mant * 10 + (c - '0'), s->int_digits++;
                else if (c == '.' && n->scale) s->sub = N_DOT;
                else ok = false;
                break;
            case N_DOT:
                if (is_digit(c)) s->sub = N_FRAC, s->mant = s->mant * 10 + (c - '0'), s->frac_digits = 1;
                else ok = false;
                break;
            case N_FRAC:
                if (is_digit(c) && s->frac_digits < n->scale)
                    s->mant = s->mant * 10 + (c - '0'), s->frac_digits++;
                else ok = false;
                break;
            default: ok = false;
            }
            if (ok) {
                numpos p = numpos_of(s);
                if (g_num_min_more(n, &p) >= 0) return true;
                return false;
            }
            s->sub = save.sub, s->int_digits = save.int_digits, s->frac_digits = save.frac_digits, s->mant = save.mant;
            if (!number_can_end(g, s)) return false;
            return end_and_refeed(g, s, c);
        }
        switch (s->sub) {
        case N_MINUS:
            if (!is_digit(c)) return false;
            s->sub = c == '0' ? N_ZERO : N_INT;
            s->int_digits = 1;
            return true;
        case N_INT:
            if (is_digit(c)) return ++s->int_digits <= MAX_INT_DIGITS;
            /* fall through */
        case N_ZERO:
            if (!n->int_only && c == '.') {
                s->sub = N_DOT;
                return true;
            }
            if (!n->int_only && (c == 'e' || c == 'E')) {
                s->sub = N_E;
                return true;
            }
            break;
        case N_DOT:
            if (!is_digit(c)) return false;
            s->sub = N_FRAC;
            s->frac_digits = 1;
            return true;
        case N_FRAC:
            if (is_digit(c)) return ++s->frac_digits <= MAX_FRAC_DIGITS;
            if (c == 'e' || c == 'E') {
                s->sub = N_E;
                return true;
            }
            break;
        case N_E:
            if (c == '+' || c == '-') {
                s->sub = N_ESIGN;
                return true;
            }
            /* fall through */
        case N_ESIGN:
            if (!is_digit(c)) return false;
            s->sub = N_EXP;
            s->exp_digits = 1;
            return true;
        case N_EXP:
            if (is_digit(c)) return ++s->exp_digits <= MAX_EXP_DIGITS;
            break;
        }
        if (!number_can_end(g, s)) return false;
        return end_and_refeed(g, s, c);
    }
    case S_LITERAL: {
        uint32_t lo = s->lo, hi = s->hi;
        if (!narrow(g, &lo, &hi, s->pos, c)) {
            if (!literal_complete(g, s) || (s->flags & F_DISCVAL)) return false;
            return end_and_refeed(g, s, c);
        }
        s->lo = lo;
        s->hi = hi;
        s->pos++;
        if (hi - lo == 1 && literal_complete(g, s)) {
            if (s->flags & F_DISCVAL) { /* the discriminator chose the alternative */
                gframe *f = top(s);
                const gnode *d = N(g, f->node);
                uint32_t alt = g->lits[lo].value;
                uint32_t p = prop_by_key(g, N(g, alt), &g->lits[d->disc_key]);
                f->node = alt;
                f->seen = p == G_NONE ? 0 : (uint64_t)1 << p;
                s->flags &= (uint8_t)~F_DISCVAL;
            }
            value_done(s);
        }
        return true;
    }
    default: return false;
    }
}

/* the value can end here (the next byte may still extend a top-level number) */
static bool value_complete(const byoai_grammar *g, const gstate *s) {
    if (s->st == S_DONE) return true;
    if (s->depth) return false;
    if (s->st == S_NUMBER) return number_can_end(g, s);
    if (s->st == S_LITERAL) return literal_complete(g, s);
    return false;
}

static uint32_t value_min(const byoai_grammar *g, const gstate *s) {
    uint32_t head = 0;
    const gframe *f = s->depth ? ctop(s) : NULL;
    const gnode *o = f ? N(g, f->node) : NULL;
    uint32_t rest = f && s->st != S_DONE ? frame_rest(g, f) : 0; /* for scalar states */
    switch (s->st) {
    case S_DONE: return 0;
    case S_VALUE:
        if (s->flags & F_DISCVAL) head = disc_value_min(g, o, o->lit0, o->lit0 + o->n_lits, 0);
        else head = g_sat_add(N(g, s->vnode)->minlen, rest);
        break;
    case S_OBJ_FIRST: case S_OBJ_KEY:
        if (o->kind == GN_DISCRIM) {
            head = G_INF;
            for (uint32_t i = 0; i < o->n_lits; i++) {
                uint32_t m = N(g, g->lits[o->lit0 + i].value)->minlen - 1;
                if (m < head) head = m;
            }
            break;
        }
        if (s->st == S_OBJ_FIRST || (o->required & ~f->seen)) {
            head = obj_rest(g, o, f->seen, G_NONE);
            if (o->required & ~f->seen) head--; /* the first needs no comma */
        } else { /* after a comma with nothing required left: some key */
            uint32_t m = G_INF;
            for (uint32_t p = 0; p < o->n_props; p++)
                if (!((f->seen >> p) & 1) && prop_cost(g, o, p) < m) m = prop_cost(g, o, p);
            if (o->additional != G_NONE && g_sat_add(3, N(g, o->additional)->minlen) < m)
                m = g_sat_add(3, N(g, o->additional)->minlen);
            head = g_sat_add(m, 1);
        }
        break;
    case S_KEY: {
        head = G_INF;
        if (o->kind == GN_DISCRIM) {
            head = g_sat_add(g->lits[s->lo].len - s->pos + 1, disc_value_min(g, o, o->lit0, o->lit0 + o->n_lits, 0));
            break;
        }
        if (s->flags & F_LIT)
            for (uint32_t i = s->lo; i < s->hi; i++) {
                uint32_t p = g->lits[i].value;
                if ((f->seen >> p) & 1) continue;
                uint32_t m = g_sat_add(g->lits[i].len - s->pos + 1,
                                       g_sat_add(N(g, g->props[o->prop0 + p].node)->minlen, obj_rest(g, o, f->seen, p)));
                if (m < head) head = m;
            }
        if (s->flags & F_FREE) {
            uint32_t str = 1 + s->utf8_left + ((s->flags & F_ESC) ? 1 : 0) + s->sub;
            uint32_t m = g_sat_add(str + 1, g_sat_add(N(g, o->additional)->minlen, obj_rest(g, o, f->seen, G_NONE)));
            if (m < head) head = m;
        }
        break;
    }
    case S_COLON:
        if (s->flags & F_DISCVAL) head = g_sat_add(1, disc_value_min(g, o, o->lit0, o->lit0 + o->n_lits, 0));
        else head = g_sat_add(1, g_sat_add(N(g, s->vnode)->minlen, rest));
        break;
    case S_ARR_FIRST:
        if (o->min_items == 0) head = 1;
        else {
            uint64_t x = (uint64_t)o->min_items * (N(g, o->items)->minlen + 1ull);
            head = x >= G_INF ? G_INF : (uint32_t)x;
        }
        break;
    case S_AFTER: head = rest; break;
    case S_STRING: {
        const gnode *n = N(g, s->vnode);
        uint32_t str = 1 + s->utf8_left + ((s->flags & F_ESC) ? 1 : 0) + s->sub;
        if (s->slen < n->min_len) str = g_sat_add(str, n->min_len - s->slen);
        head = g_sat_add(str, rest);
        break;
    }
    case S_NUMBER: {
        const gnode *n = N(g, s->vnode);
        uint32_t m;
        if (n->bounded) {
            numpos p = numpos_of(s);
            int k = g_num_min_more(n, &p);
            m = k < 0 ? G_INF : (uint32_t)k;
        } else m = (s->sub == N_MINUS || s->sub == N_DOT || s->sub == N_E || s->sub == N_ESIGN) ? 1 : 0;
        head = g_sat_add(m, rest);
        break;
    }
    case S_LITERAL:
        if (s->flags & F_DISCVAL) head = disc_value_min(g, o, s->lo, s->hi, s->pos);
        else {
            uint32_t m = G_INF;
            for (uint32_t i = s->lo; i < s->hi; i++)
                if (g->lits[i].len - s->pos < m) m = g->lits[i].len - s->pos;
            head = g_sat_add(m, rest);
        }
        break;
    default: break;
    }
    for (int i = 0; i + 1 < s->depth; i++) head = g_sat_add(head, frame_rest(g, &s->f[i]));
    return head;
}

/* ---- the program ------------------------------------------------------------------------ */
static void enter_value(const byoai_grammar *g, gstate *s) {
    s->phase = P_VALUE;
    s->st = S_VALUE;
    s->depth = 0;
    s->vnode = g->root;
    s->flags = 0;
    s->ws_run = 0;
}

static void enter_prefix(const byoai_grammar *g, gstate *s, uint32_t pos) {
    s->phase = P_PREFIX;
    s->pos = pos;
    if (pos >= g->prefix_len) enter_value(g, s);
}

void g_state_init(const byoai_grammar *g, gstate *s) {
    memset(s, 0, offsetof(gstate, f));
    if (g->text) s->phase = g->at_start ? P_START : P_TEXT;
    else enter_prefix(g, s, 0);
}

void g_state_copy(gstate *dst, const gstate *src) {
    memcpy(dst, src, offsetof(gstate, f) + (size_t)src->depth * sizeof(gframe));
}

static void leave_value(const byoai_grammar *g, gstate *s) {
    s->pos = 0;
    s->phase = g->suffix_len ? P_SUFFIX : P_AFTER;
}

static bool feed_byte(const byoai_grammar *g, gstate *s, unsigned char c) {
    switch (s->phase) {
    case P_START: { /* a call only at the very start: does this byte begin one? */
        gstate t;
        g_state_copy(&t, s);
        enter_prefix(g, &t, 0);
        if (feed_byte(g, &t, c)) {
            g_state_copy(s, &t);
            return true;
        }
        s->phase = P_FREE;
        return true;
    }
    case P_FREE: return true;
    case P_TEXT:
        while (s->pos && (unsigned char)g->prefix[s->pos] != c) s->pos = g->fail[s->pos - 1];
        if ((unsigned char)g->prefix[s->pos] == c) s->pos++;
        if (s->pos == g->trigger_len) enter_prefix(g, s, s->pos);
        return true;
    case P_PREFIX:
        if ((unsigned char)g->prefix[s->pos] != c) return false;
        enter_prefix(g, s, s->pos + 1);
        return true;
    case P_VALUE: {
        if (value_complete(g, s)) {
            gstate t;
            g_state_copy(&t, s);
            if (s->st != S_DONE && feed_value(g, &t, c)) {
                g_state_copy(s, &t);
                return true;
            }
            leave_value(g, s);
            return feed_byte(g, s, c);
        }
        return feed_value(g, s, c);
    }
    case P_SUFFIX:
        if ((unsigned char)g->suffix[s->pos] != c) return false;
        if (++s->pos == g->suffix_len) s->phase = P_AFTER;
        return true;
    case P_AFTER:
        if (!g->separator || !g->separator_len || (unsigned char)g->separator[0] != c) return false;
        s->phase = P_SEP;
        s->pos = 1;
        if (s->pos == g->separator_len) enter_prefix(g, s, 0);
        return true;
    case P_SEP:
        if ((unsigned char)g->separator[s->pos] != c) return false;
        if (++s->pos == g->separator_len) enter_prefix(g, s, 0);
        return true;
    default: return false;
    }
}

bool g_feed(const byoai_grammar *g, gstate *s, const char *bytes, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!feed_byte(g, s, (unsigned char)bytes[i])) return false;
    return true;
}

bool g_can_end(const byoai_grammar *g, const gstate *s) {
    switch (s->phase) {
    case P_START: case P_TEXT: case P_FREE: case P_AFTER: return true;
    case P_VALUE: return value_complete(g, s) && g->suffix_len == 0;
    default: return false;
    }
}

bool g_in_text(const gstate *s) { return s->phase == P_TEXT || s->phase == P_FREE || s->phase == P_START; }

bool g_string_fast(const byoai_grammar *g, const gstate *s) {
    if (s->phase != P_VALUE || s->st != S_STRING || s->utf8_left || s->sub || (s->flags & F_ESC)) return false;
    const gnode *n = N(g, s->vnode);
    return n->max_len == UINT32_MAX && s->slen >= n->min_len;
}

int g_text_fast(const byoai_grammar *g, const gstate *s) {
    if (s->phase == P_FREE) return -1;
    if (s->phase == P_TEXT && s->pos == 0) return (unsigned char)g->prefix[0];
    return -2;
}

uint32_t g_min_remaining(const byoai_grammar *g, const gstate *s) {
    uint32_t call = g_sat_add(N(g, g->root)->minlen, g->suffix_len);
    switch (s->phase) {
    case P_PREFIX: return g_sat_add(g->prefix_len - s->pos, call);
    case P_VALUE: return value_complete(g, s) ? g->suffix_len : g_sat_add(value_min(g, s), g->suffix_len);
    case P_SUFFIX: return g->suffix_len - s->pos;
    case P_SEP: return g_sat_add(g->separator_len - s->pos, g_sat_add(g->prefix_len, call));
    default: return 0;
    }
}

bool byoai_grammar_check(const byoai_grammar *g, const char *text, size_t n, bool *complete, uint32_t *min_remaining) {
    gstate *s = malloc(sizeof *s);
    if (!s) return false;
    g_state_init(g, s);
    bool ok = g_feed(g, s, text, n);
    if (complete) *complete = ok && g_can_end(g, s);
    if (min_remaining) *min_remaining = ok ? g_min_remaining(g, s) : G_INF;
    free(s);
    return ok;
}
