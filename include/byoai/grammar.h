/*
 * byoai/grammar.h: constrained sampling that can only produce valid JSON.
 *
 * Contract
 * - byoai_json_state is an incremental JSON validator over bytes: it
 *   accepts exactly the byte strings that are a prefix of one JSON object
 *   (RFC 8259, top level an object), and knows how many bytes at least are
 *   still needed to complete it. It is a small plain struct: copy it to try
 *   a continuation without committing to it.
 * - Beyond RFC 8259, it refuses what common parsers reject although the RFC
 *   allows it: \u escapes of UTF-16 surrogates, integers of more than 18
 *   digits, exponents of more than 2 digits. It also refuses white space before the
 *   opening brace, more than 32 white-space bytes in a row and nesting
 *   deeper than 64, so a model cannot
 *   stall in white space or recursion.
 * - byoai_json_filter is a byoai_sampler filter built on it: for each
 *   candidate token it checks that the token's text keeps the output a
 *   valid prefix; end-of-generation tokens are allowed only once the object
 *   is complete. Given a token budget (tokens that may still be generated),
 *   it allows only tokens after which the object can still be closed within
 *   the budget, so output that reaches the budget is complete JSON as long
 *   as the vocabulary has single-character tokens for closing (every byte-
 *   fallback or byte-level vocabulary does).
 * - A filter belongs to one sequence (not thread-safe); it borrows the
 *   tokenizer, which must outlive it.
 */
#ifndef BYOAI_GRAMMAR_H
#define BYOAI_GRAMMAR_H

#include "byoai/base.h"
#include "byoai/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BYOAI_JSON_MAX_DEPTH 64

typedef struct byoai_json_state {
    uint64_t stack;       /* bit i set: container at depth i+1 is an array */
    uint8_t st;           /* lexical state (grammar_json.c) */
    uint8_t depth;        /* open containers */
    uint8_t sub;          /* number sub-state, literal position, hex digits left */
    uint8_t lit;          /* which literal (true/false/null) */
    uint8_t utf8_left;    /* continuation bytes still expected in a string */
    uint8_t utf8_lo, utf8_hi; /* allowed range of the next continuation byte */
    uint8_t ws_run;       /* white-space bytes in a row */
    uint8_t int_digits, exp_digits;
    bool key;             /* the string being read is an object key */
} byoai_json_state;

void byoai_json_init(byoai_json_state *s);
/* Feed n bytes. False (state then undefined) when they cannot continue a
 * valid JSON object; copy the state first to test without committing. */
bool byoai_json_feed(byoai_json_state *s, const char *bytes, size_t n);
/* True when a whole object has been read (only end of output may follow). */
bool byoai_json_complete(const byoai_json_state *s);
/* Bytes still needed, at least, to complete the object (0 when complete). */
uint32_t byoai_json_min_remaining(const byoai_json_state *s);

typedef struct byoai_json_filter byoai_json_filter;

int byoai_json_filter_new(const byoai_tokenizer *tok, int32_t n_vocab, byoai_json_filter **out, byoai_error *err);
void byoai_json_filter_free(byoai_json_filter *f);
/* Tokens that may still be generated, this one included (0: no budget). */
void byoai_json_filter_set_budget(byoai_json_filter *f, uint32_t tokens_left);
/* The byoai_sampler_filter_fn: pass the filter as user. */
int byoai_json_filter_apply(void *filter, const float *logits, bool *allowed, int32_t n_vocab);
/* Advance over the token that was chosen. False if it was not allowed. */
bool byoai_json_filter_accept(byoai_json_filter *f, int32_t token);
bool byoai_json_filter_complete(const byoai_json_filter *f);

#ifdef __cplusplus
}
#endif
#endif
