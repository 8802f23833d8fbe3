/*
 * byoai/grammar.h: constrained sampling: output that can only be valid JSON,
 * JSON that matches a JSON Schema, or tool calls in a model's format.
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
 * - byoai_grammar is a compiled, immutable grammar (reference counted, safe
 *   to share between threads): one JSON value matching a JSON Schema
 *   (byoai_grammar_from_schema; the supported keywords are listed in
 *   docs/server.md, anything else is refused with a message naming it),
 *   any JSON object (JSON mode), or tool calls: optional free text, then
 *   calls in the syntax of a model family, each {"name", ARGS} with ARGS
 *   matching that tool's parameter schema. The same lexical limits as
 *   byoai_json_state apply to every grammar.
 * - byoai_json_filter is a byoai_sampler filter built on a grammar: for each
 *   candidate token it checks that the token's text keeps the output a
 *   valid prefix; end-of-generation tokens are allowed only where the
 *   grammar may end. Given a token budget (tokens that may still be
 *   generated), it allows only tokens after which the output can still be
 *   completed within the budget, so output that reaches the budget is
 *   complete as long as the vocabulary has single-character tokens
 *   (every byte-fallback or byte-level vocabulary does). When even the
 *   shortest completion does not fit the budget at the start, the output is
 *   cut where the budget ends (the caller reports finish_reason "length").
 * - A filter belongs to one sequence (not thread-safe); it borrows the
 *   tokenizer, which must outlive it, and holds a reference to its grammar.
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

/* ---- grammars ------------------------------------------------------------------ */
typedef struct byoai_grammar byoai_grammar;

/* One JSON value matching the JSON Schema in schema[0..len). BYOAI_EINVAL
 * with a message that names the keyword and its place (a JSON pointer) when
 * the schema uses something unsupported or allows no value at all. */
int byoai_grammar_from_schema(const char *schema, size_t len, byoai_grammar **out, byoai_error *err);
/* Any JSON object (JSON mode, response_format json_object). */
int byoai_grammar_json_object(byoai_grammar **out, byoai_error *err);

/* How a model family writes tool calls (byoai_chat_tool_syntax). */
typedef struct byoai_tool_syntax {
    const char *prefix;      /* before a call: "<tool_call>\n", "[TOOL_CALLS]", "" */
    size_t trigger_len;      /* bytes of prefix that start a call after free text; 0: a call
                              * can only open the output */
    const char *suffix;      /* after a call: "\n</tool_call>", "" */
    const char *separator;   /* between calls, each with its own prefix: "\n"; NULL: one call */
    const char *args_key;    /* "arguments" or "parameters" */
    bool array;              /* the calls are one JSON array after the prefix (Mistral) */
} byoai_tool_syntax;

/* A tool: its name and its parameters' JSON Schema (NULL: any object). */
typedef struct byoai_grammar_tool {
    const char *name;
    const char *parameters;
    size_t parameters_len;
} byoai_grammar_tool;

/* Tool calls of tools[0..n) in the given syntax. text_first: free text may
 * come before the first call and the output may be text only ("auto");
 * otherwise the output is one or more calls ("required", or a named tool
 * when n is 1). Errors name the tool whose schema is at fault. */
int byoai_grammar_for_tools(const byoai_grammar_tool *tools, size_t n, const byoai_tool_syntax *syntax,
                            bool text_first, byoai_grammar **out, byoai_error *err);

byoai_grammar *byoai_grammar_ref(byoai_grammar *g);
/* Drop a reference (NULL is fine). */
void byoai_grammar_free(byoai_grammar *g);

/* Whether text[0..n) is a prefix of some output of the grammar; *complete
 * (may be NULL) says whether the output may end there, *min_remaining (may
 * be NULL) how many bytes at least must still follow. For tests and tools. */
bool byoai_grammar_check(const byoai_grammar *g, const char *text, size_t n, bool *complete, uint32_t *min_remaining);

/* ---- the sampler filter ------------------------------------------------------------ */
typedef struct byoai_json_filter byoai_json_filter;

/* A filter for any JSON object (JSON mode). */
int byoai_json_filter_new(const byoai_tokenizer *tok, int32_t n_vocab, byoai_json_filter **out, byoai_error *err);
/* A filter for a grammar (it takes its own reference). Control tokens whose
 * text the grammar's literal prefix or suffix holds (e.g. Mistral's [TOOL_CALLS])
 * count as text: see byoai_json_filter_token_is_text. */
int byoai_json_filter_new_grammar(const byoai_tokenizer *tok, int32_t n_vocab, const byoai_grammar *g,
                                  byoai_json_filter **out, byoai_error *err);
void byoai_json_filter_free(byoai_json_filter *f);
/* Tokens that may still be generated, this one included (0: no budget). */
void byoai_json_filter_set_budget(byoai_json_filter *f, uint32_t tokens_left);
/* The byoai_sampler_filter_fn: pass the filter as user. */
int byoai_json_filter_apply(void *filter, const float *logits, bool *allowed, int32_t n_vocab);
/* Advance over the token that was chosen. False if it was not allowed. */
bool byoai_json_filter_accept(byoai_json_filter *f, int32_t token);
bool byoai_json_filter_complete(const byoai_json_filter *f);
/* True for a control token that this filter treats as text (its special
 * text is part of the grammar): print it with render_special and do not
 * end generation at it. */
bool byoai_json_filter_token_is_text(const byoai_json_filter *f, int32_t token);

#ifdef __cplusplus
}
#endif
#endif
