/*
 * byoai/tokenizer.h: text <-> token ids, chosen by GGUF metadata.
 *
 * Contract
 * - tokenizer.ggml.model selects the algorithm: "llama" (SentencePiece-style
 *   BPE by piece scores, with <0xXX> byte fallback) or "gpt2" (byte-level BPE
 *   with ranked merges, after the pre-tokenizer split that
 *   tokenizer.ggml.pre names). Other models give BYOAI_EUNSUPPORTED.
 * - Output matches llama.cpp's tokenizer on the vectors in ../shared/vocab.
 * - The tokenizer borrows token strings from the byoai_gguf it was loaded
 *   from: keep that open for the tokenizer's lifetime.
 * - Thread-safe for concurrent use after loading (no mutable state).
 */
#ifndef BYOAI_TOKENIZER_H
#define BYOAI_TOKENIZER_H

#include "byoai/base.h"
#include "byoai/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct byoai_tokenizer byoai_tokenizer;

typedef enum byoai_tokenizer_kind {
    BYOAI_TOKENIZER_SPM = 1,  /* "llama" */
    BYOAI_TOKENIZER_BPE = 2,  /* "gpt2" */
    BYOAI_TOKENIZER_WPM = 3,  /* "bert": WordPiece (BERT-style embedding models) */
} byoai_tokenizer_kind;

/* token attributes (tokenizer.ggml.token_type) */
typedef enum byoai_token_type {
    BYOAI_TOKEN_UNDEFINED = 0,
    BYOAI_TOKEN_NORMAL = 1,
    BYOAI_TOKEN_UNKNOWN = 2,
    BYOAI_TOKEN_CONTROL = 3,
    BYOAI_TOKEN_USER_DEFINED = 4,
    BYOAI_TOKEN_UNUSED = 5,
    BYOAI_TOKEN_BYTE = 6,
} byoai_token_type;

/* Build a tokenizer from a GGUF's tokenizer.ggml.* metadata. Validates the
 * vocabulary (ids in range, arrays of equal length, merges well-formed). */
int byoai_tokenizer_load(const byoai_gguf *g, byoai_tokenizer **out, byoai_error *err);
void byoai_tokenizer_free(byoai_tokenizer *t);

byoai_tokenizer_kind byoai_tokenizer_kind_of(const byoai_tokenizer *t);
int32_t byoai_tokenizer_n_vocab(const byoai_tokenizer *t);
/* Special ids; -1 when the model has none. */
int32_t byoai_token_bos(const byoai_tokenizer *t);
int32_t byoai_token_eos(const byoai_tokenizer *t);
/* True for tokens that end generation: EOS, tokenizer.ggml.eot_token_id and
 * eom_token_id, and control tokens whose text is <|im_end|>, <|eot_id|>,
 * <|end|>, <end_of_turn>, <|endoftext|>, </s> or <|end_of_text|>. */
bool byoai_token_is_eog(const byoai_tokenizer *t, int32_t id);
/* True for control tokens (never printed as text unless asked). */
bool byoai_token_is_control(const byoai_tokenizer *t, int32_t id);
/* Whether tokenize() should add BOS / EOS by default (tokenizer.ggml.add_bos_token ...). */
bool byoai_tokenizer_adds_bos(const byoai_tokenizer *t);
bool byoai_tokenizer_adds_eos(const byoai_tokenizer *t);
/* The vocabulary string of a token as stored (e.g. "▁the", "Ġthe", "<0x0A>"). */
const char *byoai_token_text(const byoai_tokenizer *t, int32_t id, size_t *len);
/* Look up a token by its exact vocabulary string; -1 when absent. */
int32_t byoai_token_lookup(const byoai_tokenizer *t, const char *text, size_t len);

/* Tokenize text[0..len). add_special: prepend BOS / append EOS as the model's
 * metadata says. parse_special: recognise special-token strings in the text
 * (e.g. "<|im_start|>") as single tokens; otherwise they are plain text.
 * User-defined tokens (token type 4, "added tokens") are recognised either
 * way, as llama.cpp and Hugging Face do. Longer special strings win; see
 * docs/tokenizers.md for the exact rule. Any bytes are accepted (invalid
 * UTF-8 goes through byte fallback / byte-level BPE unchanged).
 * *tokens is malloc'd (caller frees; non-NULL even for zero tokens). */
int byoai_tokenize(const byoai_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                   int32_t **tokens, size_t *n_tokens, byoai_error *err);

/* The bytes a token stands for, as text: byte tokens become their byte, "▁"
 * becomes a space, GPT-2's byte alphabet is mapped back. Control and
 * unknown tokens give "" unless render_special; user-defined tokens give
 * their text; unused and undefined tokens give "". Writes at most cap bytes
 * (no NUL; buf may be NULL when cap is 0); returns the full length (which
 * may exceed cap) or a negative code for a bad id.
 * A piece may end in the middle of a UTF-8 character: join pieces before
 * printing (see byoai_utf8_incomplete_tail). */
int byoai_token_to_piece(const byoai_tokenizer *t, int32_t id, char *buf, size_t cap, bool render_special);

/* Detokenize a sequence into a malloc'd NUL-terminated string (*out_len,
 * which may be NULL, excludes the NUL). With strip_leading_space, the space
 * SentencePiece adds before the first word is removed: one leading space of
 * the first piece that prints anything, and only for SPM tokenizers that add
 * that space. Spaces are otherwise left alone (no llama.cpp-style clean-up
 * before punctuation), so detokenize(tokenize(s)) == s; see
 * docs/tokenizers.md for when that holds. A bad id gives BYOAI_EINVAL. */
int byoai_detokenize(const byoai_tokenizer *t, const int32_t *tokens, size_t n, bool render_special,
                     bool strip_leading_space, char **out, size_t *out_len, byoai_error *err);

#ifdef __cplusplus
}
#endif
#endif
