/*
 * The grammar-constrained sampler filter.
 *
 * At creation every token's text is taken from the tokenizer and the
 * tokens are sorted by their bytes, with each one's common prefix with the
 * previous. Checking the vocabulary is then a walk over that order with a
 * stack of matcher states, one per prefix length: a token reuses the
 * states of the bytes it shares with the previous token, and a byte the
 * grammar refuses rules out, without looking at them, all the following
 * tokens that share it. After this, a budget pass keeps only the tokens
 * after which the grammar can still end within the tokens left.
 */
#include <stdlib.h>
#include <string.h>

#include "byoai/tokenizer.h"
#include "infer/grammar_internal.h"

#define MAX_PIECE 256

typedef struct entry {
    const char *p;
    uint32_t len;
    int32_t id;
} entry;

struct byoai_json_filter {
    byoai_grammar *g;
    gstate *st;        /* the committed state */
    int32_t n_vocab;
    uint32_t *off;     /* n_vocab + 1 offsets into text */
    char *text;        /* every token's piece, back to back */
    bool *eog;         /* end-of-generation tokens */
    bool *as_text;     /* control tokens that are text for this grammar */
    bool *plain;       /* text of printable ASCII only, without '"' and '\\' */
    int32_t *order;    /* tokens with text, sorted by their bytes */
    uint16_t *lcp;     /* common prefix length with the previous in order */
    uint32_t n_order;
    gstate *stk;       /* MAX_PIECE + 1 states: one per prefix length */
    uint32_t *rem;     /* per token: bytes still needed after it */
    uint32_t budget;   /* 0: none */
};

static int entry_cmp(const void *a, const void *b) {
    const entry *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

int byoai_json_filter_new_grammar(const byoai_tokenizer *tok, int32_t n_vocab, const byoai_grammar *g,
                                  byoai_json_filter **out, byoai_error *err) {
    *out = NULL;
    if (n_vocab <= 0) return byoai_error_set(err, BYOAI_EINVAL, "vocabulary size must be positive");
    if (!g) return byoai_error_set(err, BYOAI_EINVAL, "no grammar");
    int32_t n_tok = byoai_tokenizer_n_vocab(tok);
    byoai_json_filter *f = calloc(1, sizeof *f);
    if (!f) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    f->g = byoai_grammar_ref((byoai_grammar *)g);
    f->n_vocab = n_vocab;
    f->st = malloc(sizeof *f->st);
    f->off = malloc(((size_t)n_vocab + 1) * sizeof *f->off);
    f->eog = calloc((size_t)n_vocab, sizeof *f->eog);
    f->as_text = calloc((size_t)n_vocab, sizeof *f->as_text);
    f->plain = calloc((size_t)n_vocab, sizeof *f->plain);
    f->order = malloc((size_t)n_vocab * sizeof *f->order);
    f->lcp = malloc((size_t)n_vocab * sizeof *f->lcp);
    f->rem = malloc((size_t)n_vocab * sizeof *f->rem);
    f->stk = malloc((MAX_PIECE + 1) * sizeof *f->stk);
    size_t cap = (size_t)n_vocab * 8 + 64, len = 0;
    f->text = malloc(cap);
    entry *ents = malloc((size_t)n_vocab * sizeof *ents);
    if (!f->st || !f->off || !f->eog || !f->as_text || !f->plain || !f->order || !f->lcp || !f->rem || !f->stk || !f->text || !ents)
        goto oom;
    for (int32_t i = 0; i < n_vocab; i++) {
        f->off[i] = (uint32_t)len;
        if (i >= n_tok) continue; /* padding rows: no text, never allowed */
        f->eog[i] = byoai_token_is_eog(tok, i);
        char piece[MAX_PIECE];
        int n = byoai_token_to_piece(tok, i, piece, sizeof piece, false);
        if (n == 0 && byoai_token_is_control(tok, i) && !f->eog[i] && (g->prefix_len || g->suffix_len)) {
            /* a control token whose text the grammar writes (Mistral's [TOOL_CALLS]) */
            int m = byoai_token_to_piece(tok, i, piece, sizeof piece, true);
            if (m >= 2 && (size_t)m <= sizeof piece &&
                (memmem(g->prefix, g->prefix_len, piece, (size_t)m) || memmem(g->suffix, g->suffix_len, piece, (size_t)m))) {
                n = m;
                f->as_text[i] = true;
            }
        }
        if (n <= 0 || (size_t)n > sizeof piece) continue; /* no text (control) or too long to matter */
        if (len + (size_t)n > cap) {
            while (len + (size_t)n > cap) cap *= 2;
            char *t = realloc(f->text, cap);
            if (!t) goto oom;
            f->text = t;
        }
        memcpy(f->text + len, piece, (size_t)n);
        len += (size_t)n;
    }
    f->off[n_vocab] = (uint32_t)len;
    for (int32_t i = 0; i < n_vocab; i++) {
        uint32_t a = f->off[i], b = f->off[i + 1];
        if (a == b || f->eog[i]) continue;
        ents[f->n_order++] = (entry){f->text + a, b - a, i};
        bool pl = true;
        for (uint32_t k = a; k < b && pl; k++) {
            unsigned char c = (unsigned char)f->text[k];
            pl = c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
        }
        f->plain[i] = pl;
    }
    qsort(ents, f->n_order, sizeof *ents, entry_cmp);
    for (uint32_t k = 0; k < f->n_order; k++) {
        f->order[k] = ents[k].id;
        uint32_t l = 0;
        if (k) {
            uint32_t m = ents[k].len < ents[k - 1].len ? ents[k].len : ents[k - 1].len;
            while (l < m && ents[k].p[l] == ents[k - 1].p[l]) l++;
        }
        f->lcp[k] = (uint16_t)l;
    }
    free(ents);
    g_state_init(g, f->st);
    *out = f;
    return 0;
oom:
    free(ents);
    byoai_json_filter_free(f);
    return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
}

int byoai_json_filter_new(const byoai_tokenizer *tok, int32_t n_vocab, byoai_json_filter **out, byoai_error *err) {
    byoai_grammar *g;
    *out = NULL;
    int rc = byoai_grammar_json_object(&g, err);
    if (rc) return rc;
    rc = byoai_json_filter_new_grammar(tok, n_vocab, g, out, err);
    byoai_grammar_free(g);
    return rc;
}

void byoai_json_filter_free(byoai_json_filter *f) {
    if (!f) return;
    byoai_grammar_free(f->g);
    free(f->st);
    free(f->off);
    free(f->text);
    free(f->eog);
    free(f->as_text);
    free(f->plain);
    free(f->order);
    free(f->lcp);
    free(f->rem);
    free(f->stk);
    free(f);
}

void byoai_json_filter_set_budget(byoai_json_filter *f, uint32_t tokens_left) { f->budget = tokens_left; }

bool byoai_json_filter_complete(const byoai_json_filter *f) { return g_can_end(f->g, f->st); }

bool byoai_json_filter_token_is_text(const byoai_json_filter *f, int32_t token) {
    return f && token >= 0 && token < f->n_vocab && f->as_text[token];
}

int byoai_json_filter_apply(void *user, const float *logits, bool *allowed, int32_t n_vocab) {
    (void)logits;
    byoai_json_filter *f = user;
    const byoai_grammar *g = f->g;
    if (n_vocab > f->n_vocab) n_vocab = f->n_vocab;
    const bool done = g_can_end(g, f->st);
    /* after this token, budget - 1 tokens remain to finish */
    const uint32_t after = f->budget ? f->budget - 1 : UINT32_MAX;
    const bool budgeted = after != UINT32_MAX;
    for (int32_t i = 0; i < n_vocab; i++) allowed[i] = f->eog[i] && done;
    bool any_in_budget = done;
    g_state_copy(&f->stk[0], f->st);
    const int fast = g_text_fast(g, f->st);
    if (fast >= -1) { /* free text: only tokens holding the trigger's first byte need the matcher */
        for (uint32_t k = 0; k < f->n_order; k++) {
            int32_t id = f->order[k];
            if (id >= n_vocab) continue;
            const char *p = f->text + f->off[id];
            uint32_t len = f->off[id + 1] - f->off[id];
            uint32_t r = 0;
            if (fast >= 0 && memchr(p, fast, len)) {
                g_state_copy(&f->stk[1], &f->stk[0]);
                if (!g_feed(g, &f->stk[1], p, len)) continue;
                r = g_min_remaining(g, &f->stk[1]);
            }
            allowed[id] = true;
            f->rem[id] = r;
            if (r <= after) any_in_budget = true;
        }
        goto budget;
    }
    uint32_t valid = 0;          /* stk[0..valid] hold the states of the previous token's prefixes */
    uint32_t dead = UINT32_MAX;  /* the previous token died at this byte */
    const bool sfast = g_string_fast(g, f->st);
    const uint32_t same_rem = sfast && budgeted ? g_min_remaining(g, f->st) : 0;
    for (uint32_t k = 0; k < f->n_order; k++) {
        int32_t id = f->order[k];
        uint32_t common = f->lcp[k];
        if (sfast && f->plain[id]) { /* plain text inside a string: the state only counts characters */
            valid = 0;
            dead = UINT32_MAX;
            if (id >= n_vocab) continue;
            allowed[id] = true;
            f->rem[id] = same_rem;
            if (same_rem <= after) any_in_budget = true;
            continue;
        }
        if (dead != UINT32_MAX && common > dead) continue; /* shares the refused byte */
        const char *p = f->text + f->off[id];
        uint32_t len = f->off[id + 1] - f->off[id];
        uint32_t d = common < valid ? common : valid;
        uint32_t i = d;
        for (; i < len; i++) {
            g_state_copy(&f->stk[i + 1], &f->stk[i]);
            if (!g_feed(g, &f->stk[i + 1], p + i, 1)) break;
        }
        if (i < len) {
            dead = i;
            valid = i;
            continue;
        }
        dead = UINT32_MAX;
        valid = len;
        if (id >= n_vocab) continue;
        allowed[id] = true;
        if (budgeted) {
            uint32_t r = g_min_remaining(g, &f->stk[len]);
            f->rem[id] = r;
            if (r <= after) any_in_budget = true;
        }
    }
budget:
    if (!budgeted || !any_in_budget) return 0; /* no budget, or too small for any completion: cut at the end */
    /* keep only the tokens after which the output can still end in time */
    for (uint32_t k = 0; k < f->n_order; k++) {
        int32_t id = f->order[k];
        if (id < n_vocab && allowed[id] && f->rem[id] > after) allowed[id] = false;
    }
    return 0;
}

bool byoai_json_filter_accept(byoai_json_filter *f, int32_t token) {
    if (token < 0 || token >= f->n_vocab) return false;
    if (f->eog[token]) return g_can_end(f->g, f->st);
    uint32_t a = f->off[token], b = f->off[token + 1];
    if (a == b) return false;
    g_state_copy(&f->stk[0], f->st);
    if (!g_feed(f->g, &f->stk[0], f->text + a, b - a)) return false;
    g_state_copy(f->st, &f->stk[0]);
    return true;
}
