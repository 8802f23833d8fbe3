/*
 * An incremental JSON validator: a pushdown automaton over bytes, the stack
 * a bit per open container. (Constrained sampling runs on grammars:
 * grammar_schema.c, grammar_match.c, grammar_filter.c; this validator is
 * the plain "is this a JSON object so far" check.)
 */
#include "byoai/grammar.h"

#include <stdlib.h>
#include <string.h>


enum {
    S_START,       /* before the top-level '{' */
    S_OBJ_FIRST,   /* after '{': a key or '}' */
    S_OBJ_KEY,     /* after ',' in an object: a key */
    S_COLON,       /* after a key */
    S_VALUE,       /* after ':' or ',' in an array: a value */
    S_ARR_FIRST,   /* after '[': a value or ']' */
    S_AFTER,       /* after a value inside a container: ',' or the closer */
    S_STRING,      /* inside a string (key or value) */
    S_ESCAPE,      /* after a backslash */
    S_HEX,         /* inside \uXXXX; sub = hex digits left */
    S_NUMBER,      /* sub = N_* */
    S_LITERAL,     /* inside true/false/null; sub = bytes matched */
    S_DONE,        /* the object is complete */
};

enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

#define MAX_WS_RUN 32
#define MAX_INT_DIGITS 18
#define MAX_EXP_DIGITS 2

static const char *const LITERALS[] = {"true", "false", "null"};

void byoai_json_init(byoai_json_state *s) { memset(s, 0, sizeof *s); }

bool byoai_json_complete(const byoai_json_state *s) { return s->st == S_DONE; }

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static bool top_is_array(const byoai_json_state *s) { return s->depth && ((s->stack >> (s->depth - 1)) & 1); }

/* a value just ended */
static void value_done(byoai_json_state *s) { s->st = s->depth == 0 ? S_DONE : S_AFTER; }

static bool push(byoai_json_state *s, bool array) {
    if (s->depth >= BYOAI_JSON_MAX_DEPTH) return false;
    if (array) s->stack |= (uint64_t)1 << s->depth;
    else s->stack &= ~((uint64_t)1 << s->depth);
    s->depth++;
    s->st = array ? S_ARR_FIRST : S_OBJ_FIRST;
    return true;
}

static void pop(byoai_json_state *s) {
    s->depth--;
    value_done(s);
}

/* the first byte of a value */
static bool value_start(byoai_json_state *s, unsigned char c) {
    switch (c) {
    case '{': return push(s, false);
    case '[': return push(s, true);
    case '"': s->st = S_STRING; s->key = false; return true;
    case '-': s->st = S_NUMBER; s->sub = N_MINUS; s->int_digits = 0; s->exp_digits = 0; return true;
    case 't': case 'f': case 'n':
        s->st = S_LITERAL;
        s->lit = c == 't' ? 0 : c == 'f' ? 1 : 2;
        s->sub = 1;
        return true;
    default:
        if (!is_digit(c)) return false;
        s->st = S_NUMBER;
        s->sub = c == '0' ? N_ZERO : N_INT;
        s->int_digits = 1;
        s->exp_digits = 0;
        return true;
    }
}

/* a byte inside a string (after the opening quote) */
static bool string_byte(byoai_json_state *s, unsigned char c) {
    if (s->utf8_left) {
        if (c < s->utf8_lo || c > s->utf8_hi) return false;
        s->utf8_left--;
        s->utf8_lo = 0x80;
        s->utf8_hi = 0xBF;
        return true;
    }
    if (c == '"') {
        if (s->key) s->st = S_COLON;
        else value_done(s);
        return true;
    }
    if (c == '\\') {
        s->st = S_ESCAPE;
        return true;
    }
    if (c < 0x20) return false;
    if (c < 0x80) return true;
    /* UTF-8 lead bytes, with the ranges that exclude overlongs and surrogates */
    s->utf8_lo = 0x80;
    s->utf8_hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) s->utf8_left = 1;
    else if (c == 0xE0) s->utf8_left = 2, s->utf8_lo = 0xA0;
    else if (c == 0xED) s->utf8_left = 2, s->utf8_hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) s->utf8_left = 2;
    else if (c == 0xF0) s->utf8_left = 3, s->utf8_lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) s->utf8_left = 3;
    else if (c == 0xF4) s->utf8_left = 3, s->utf8_hi = 0x8F;
    else return false;
    return true;
}

static bool feed_byte(byoai_json_state *s, unsigned char c) {
    if (is_ws(c) && s->st != S_START && s->st != S_STRING && s->st != S_ESCAPE && s->st != S_HEX && s->st != S_LITERAL &&
        s->st != S_DONE) {
        if (s->st == S_NUMBER) {
            if (s->sub == N_MINUS || s->sub == N_DOT || s->sub == N_E || s->sub == N_ESIGN) return false;
            value_done(s);
            if (s->st == S_DONE) return false;
        }
        if (++s->ws_run > MAX_WS_RUN) return false;
        return true;
    }
    if (s->st != S_STRING && s->st != S_ESCAPE && s->st != S_HEX) s->ws_run = 0;
    switch (s->st) {
    case S_START:
        return c == '{' && push(s, false);
    case S_OBJ_FIRST:
        if (c == '}') { pop(s); return true; }
        /* fall through */
    case S_OBJ_KEY:
        if (c != '"') return false;
        s->st = S_STRING;
        s->key = true;
        return true;
    case S_COLON:
        if (c != ':') return false;
        s->st = S_VALUE;
        return true;
    case S_ARR_FIRST:
        if (c == ']') { pop(s); return true; }
        /* fall through */
    case S_VALUE:
        return value_start(s, c);
    case S_AFTER:
        if (c == ',') {
            s->st = top_is_array(s) ? S_VALUE : S_OBJ_KEY;
            return true;
        }
        if (c == (top_is_array(s) ? ']' : '}')) { pop(s); return true; }
        return false;
    case S_STRING:
        return string_byte(s, c);
    case S_ESCAPE:
        if (c == 'u') { s->st = S_HEX; s->sub = 4; return true; }
        if (!strchr("\"\\/bfnrt", c) || c == 0) return false;
        s->st = S_STRING;
        return true;
    case S_HEX:
        if (!is_hex(c)) return false;
        /* no UTF-16 surrogates (\uD800..\uDFFF): many parsers reject lone ones */
        if (s->sub == 3 && s->lit == 1 && ((c >= '8' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
        if (s->sub == 4) s->lit = (c == 'd' || c == 'D');
        if (--s->sub == 0) s->st = S_STRING;
        return true;
    case S_NUMBER:
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
            if (c == '.') { s->sub = N_DOT; return true; }
            if (c == 'e' || c == 'E') { s->sub = N_E; return true; }
            break;
        case N_DOT:
            if (!is_digit(c)) return false;
            s->sub = N_FRAC;
            return true;
        case N_FRAC:
            if (is_digit(c)) return true;
            if (c == 'e' || c == 'E') { s->sub = N_E; return true; }
            break;
        case N_E:
            if (c == '+' || c == '-') { s->sub = N_ESIGN; return true; }
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
        /* the number ended: this byte must continue the container */
        value_done(s);
        if (s->st == S_DONE) return false;
        return feed_byte(s, c);
    case S_LITERAL: {
        const char *lit = LITERALS[s->lit];
        if (c != (unsigned char)lit[s->sub]) return false;
        if (lit[++s->sub] == '\0') value_done(s);
        return true;
    }
    default: /* S_DONE: nothing may follow */
        return false;
    }
}

bool byoai_json_feed(byoai_json_state *s, const char *bytes, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!feed_byte(s, (unsigned char)bytes[i])) return false;
    return true;
}

uint32_t byoai_json_min_remaining(const byoai_json_state *s) {
    uint32_t need = s->depth; /* one closer per open container */
    switch (s->st) {
    case S_START: return 2;                       /* {} */
    case S_OBJ_KEY: return need + 4;              /* "":0 */
    case S_COLON: return need + 2;                /* :0 */
    case S_VALUE: return need + 1;                /* 0 */
    case S_STRING: return need + 1 + s->utf8_left + (s->key ? 2 : 0);
    case S_ESCAPE: return need + 2 + (s->key ? 2 : 0);
    case S_HEX: return need + s->sub + 1 + (s->key ? 2 : 0);
    case S_NUMBER:
        return need + (s->sub == N_MINUS || s->sub == N_DOT || s->sub == N_E || s->sub == N_ESIGN ? 1 : 0);
    case S_LITERAL: return need + (uint32_t)(strlen(LITERALS[s->lit]) - s->sub);
    case S_DONE: return 0;
    default: return need; /* S_OBJ_FIRST, S_ARR_FIRST, S_AFTER */
    }
}
