/*
 * Internals of the grammar module (include/byoai/grammar.h), shared by
 *
 *   grammar_schema.c  JSON Schema -> a graph of nodes (the compiler)
 *   grammar_build.c   references, unions and lengths resolved after it; the
 *                     grammars built from it (schema, JSON mode, tools)
 *   grammar_number.c  bounded numbers: can a prefix still reach the bounds
 *   grammar_match.c   the byte-level matcher: a pushdown automaton whose
 *                     stack frames point at nodes, plus the "program" around
 *                     the value (free text, a trigger, prefix, suffix)
 *   grammar_filter.c  the sampler filter: every token's bytes through the
 *                     matcher, in sorted order so shared prefixes are fed once
 *
 * A compiled grammar is immutable and reference counted, so one grammar can
 * serve every sequence that uses it.
 */
#ifndef BYOAI_GRAMMAR_INTERNAL_H
#define BYOAI_GRAMMAR_INTERNAL_H

#include "byoai/grammar.h"

#define G_NONE UINT32_MAX
#define G_INF (UINT32_MAX / 8) /* "no finite completion" in length sums */
#define G_MAX_PROPS 64        /* properties per object (a bit each in a frame) */
#define G_MAX_DEPTH BYOAI_JSON_MAX_DEPTH

/* Node kinds. ANY is a union whose alternatives are the builtin nodes. */
enum {
    GN_REF,      /* placeholder for a $ref, resolved after compilation */
    GN_OBJECT,   /* properties (any order), required, additional properties */
    GN_DISCRIM,  /* anyOf of objects told apart by a const string property, written first */
    GN_ARRAY,    /* items, minItems, maxItems */
    GN_STRING,   /* minLength, maxLength (in characters) */
    GN_NUMBER,   /* optional bounds; integer-only when int_only */
    GN_LITERALS, /* a set of exact byte strings: enum, const, true/false/null */
    GN_UNION,    /* alternatives told apart by the value's first byte */
};

/* First-byte classes of a JSON value, for unions. */
enum { GC_OBJ, GC_ARR, GC_STR, GC_NUM, GC_T, GC_F, GC_N, GC_COUNT };

/* Builtin nodes present in every grammar. */
enum { GB_ANY, GB_ANY_OBJECT, GB_ANY_ARRAY, GB_STRING, GB_NUMBER, GB_TRUE_FALSE_NULL, GB_COUNT };

/* An exact byte string: an enum value in canonical JSON, an object key with
 * its quotes. value: the property index (keys), the alternative's node
 * (discriminator values), unused otherwise. */
typedef struct glit {
    uint32_t off, len, value;
} glit;

typedef struct gprop {
    uint32_t key;  /* its literal (the key with quotes) */
    uint32_t node; /* the value's schema */
} gprop;

typedef struct gnode {
    uint8_t kind;
    bool int_only, bounded; /* numbers */
    /* objects: props[prop0 .. prop0+n_props) in declaration order; keys:
     * lits[lit0 .. lit0+n_props) sorted, value = property index */
    uint32_t prop0, n_props;
    uint64_t required;
    uint32_t additional; /* node of additional properties, G_NONE: none */
    /* arrays */
    uint32_t items, min_items, max_items;
    /* strings */
    uint32_t min_len, max_len;
    /* numbers with bounds: values scaled by 10^scale, in [lo, hi] */
    int64_t lo, hi;
    uint8_t scale;
    /* literals (and discriminator values): lits[lit0 .. lit0+n_lits) sorted */
    uint32_t lit0, n_lits;
    /* unions: the alternative for each first-byte class (G_NONE: none);
     * before finalising, alternatives are alts[alt0 .. alt0+n_alts) */
    uint32_t cls[GC_COUNT];
    uint32_t alt0, n_alts;
    /* discriminated unions: the key's literal; values as lit0/n_lits */
    uint32_t disc_key;
    /* $ref placeholder */
    uint32_t ref;
    /* shortest serialisation in bytes (G_INF while unknown) */
    uint32_t minlen;
} gnode;

struct byoai_grammar {
    int refs; /* atomic */
    gnode *nodes;
    uint32_t n_nodes, cap_nodes;
    gprop *props;
    uint32_t n_props, cap_props;
    glit *lits;
    uint32_t n_lits, cap_lits;
    uint32_t *alts;
    uint32_t n_alts, cap_alts;
    char *bytes; /* literal bytes */
    uint32_t n_bytes, cap_bytes;
    uint32_t root;
    /* the program around the value */
    char *prefix, *suffix, *separator; /* NUL-terminated; "" when none */
    uint32_t prefix_len, suffix_len, separator_len;
    uint32_t trigger_len; /* bytes of prefix that start a value in free text */
    bool text;            /* free text may come first (tools "auto") */
    bool at_start;        /* with text and no trigger: a value only at the output's start */
    uint32_t *fail;       /* KMP failure function of the trigger */
};

/* ---- the matcher state (grammar_match.c) ------------------------------------ */
typedef struct gframe {
    uint32_t node;  /* object, array or discriminated union */
    uint32_t count; /* array items started */
    uint64_t seen;  /* object properties present */
} gframe;

typedef struct gstate {
    uint8_t phase;     /* program phase (grammar_match.c) */
    uint8_t st;        /* value lexical state */
    uint8_t depth;     /* frames */
    uint8_t sub;       /* number sub-state, hex digits left */
    uint8_t utf8_left, utf8_lo, utf8_hi;
    uint8_t ws_run;
    uint8_t int_digits, frac_digits, exp_digits;
    uint8_t flags;
    uint32_t pos;      /* literal / prefix / trigger position */
    uint32_t vnode;    /* node of the value expected or being read */
    uint32_t lo, hi;   /* literal candidates lits[lo..hi) */
    uint32_t slen;     /* characters of the string being read */
    int64_t mant;      /* digits of a bounded number so far (scaled later) */
    gframe f[G_MAX_DEPTH];
} gstate;

/* number sub-states */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

/* a number typed so far (grammar_number.c) */
typedef struct numpos {
    uint8_t sub, int_digits, frac_digits;
    bool neg;
    int64_t mant; /* all digits so far, integer and fraction */
} numpos;
/* Can it be completed with exactly k more bytes to a value within n's bounds? */
bool g_num_complete_in(const gnode *n, const numpos *p, int k);
/* The fewest more bytes that complete it, -1 when none do. */
int g_num_min_more(const gnode *n, const numpos *p);
int g_num_max_int_digits(const gnode *n);

void g_state_init(const byoai_grammar *g, gstate *s);
/* Copy only the live part (the header and the used frames). */
void g_state_copy(gstate *dst, const gstate *src);
bool g_feed(const byoai_grammar *g, gstate *s, const char *bytes, size_t n);
/* End of output allowed here. */
bool g_can_end(const byoai_grammar *g, const gstate *s);
/* Bytes at least still needed before the output may end. */
uint32_t g_min_remaining(const byoai_grammar *g, const gstate *s);
/* In free text (nothing constrained yet): every byte is allowed. */
bool g_in_text(const gstate *s);
/* A shortcut for the filter: -1 when every text is allowed and needs
 * nothing after it (free text for good); a byte b >= 0 when that holds for
 * every text without b (free text, no trigger under way: only b can start
 * one); -2 otherwise. */
int g_text_fast(const byoai_grammar *g, const gstate *s);
/* Another: inside a string value without a length limit still to reach,
 * where any printable ASCII text other than '"' and '\\' leaves the
 * shortest completion as it is. */
bool g_string_fast(const byoai_grammar *g, const gstate *s);

/* ---- building (grammar_schema.c, grammar_build.c) ---------------------------- */
#include <jansson.h>

typedef struct g_tmp_lit {
    char *s;
    size_t len;
    uint32_t value;
} g_tmp_lit;

typedef struct g_memo {
    const json_t *schema;
    uint32_t node;
} g_memo;

typedef struct g_comp {
    byoai_grammar *g;
    json_t *doc;
    g_memo *memo;
    size_t n_memo, cap_memo;
    byoai_error *err;
    int nesting;
    char path[512];
    const char *what; /* "the schema", "tool 'x'" */
    bool failed;
} g_comp;

bool g_grow(void **p, uint32_t *cap, uint32_t need, size_t elem);
uint32_t g_new_node(byoai_grammar *g, uint8_t kind);
uint32_t g_add_bytes(byoai_grammar *g, const char *b, size_t n);
/* Append literals sorted (duplicates dropped); returns the first index. */
uint32_t g_add_lits(byoai_grammar *g, g_tmp_lit *t, size_t n, uint32_t *n_out);
bool g_add_alt(g_comp *c, uint32_t node);
/* Compile a schema value of c->doc into nodes (G_NONE on error, in c->err). */
uint32_t g_compile(g_comp *c, json_t *s);
/* Errors: set once, with where in the schema (c->path). */
uint32_t g_fail(g_comp *c, const char *fmt, const char *a, const char *b);
uint32_t g_oom(g_comp *c);
/* A JSON value's canonical bytes (compact, keys sorted), malloc'd. */
char *g_canonical(const json_t *v, size_t *len);
uint32_t g_number_minlen(const gnode *n); /* grammar_match.c */

/* helpers shared by the compiler and the matcher */
static inline const char *g_lit_bytes(const byoai_grammar *g, uint32_t lit) { return g->bytes + g->lits[lit].off; }
uint32_t g_sat_add(uint32_t a, uint32_t b);

#endif
