/*
 * Internals shared by the tokenizer's files (not a public header).
 *
 *   tokenizer.c          loading and validating tokenizer.ggml.*, accessors,
 *                        the tokenize driver (special tokens, BOS/EOS) and
 *                        detokenization
 *   tokenizer_vocab.c    the lookup structures: token string -> id, merge
 *                        pair -> rank, and the merge work queue
 *   tokenizer_spm.c      SentencePiece-style BPE by piece score ("llama")
 *   tokenizer_bpe.c      GPT-2 byte-level BPE with ranked merges ("gpt2")
 *   tokenizer_wpm.c      WordPiece, greedy longest match ("bert")
 *   tokenizer_pretok.c   the pre-tokenizer regex table and the PCRE2 split
 *   tokenizer_special.c  the special-token trie and the partition step that
 *                        cuts special tokens out of a text
 *
 * Everything here is immutable after byoai_tokenizer_load(); per-call
 * scratch lives in a tk_scratch owned by one byoai_tokenize() call, which is
 * what makes concurrent use from several threads safe.
 */
#ifndef BYOAI_TOKENIZER_INTERNAL_H
#define BYOAI_TOKENIZER_INTERNAL_H

#include "byoai/tokenizer.h"

#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Per-token flags (tk_token.flags). */
enum {
    TK_FLAG_EOG = 1u << 0, /* ends generation */
};

typedef struct tk_token {
    const char *text; /* borrowed from the GGUF mapping, not NUL-terminated */
    uint32_t len;
    uint8_t type;     /* byoai_token_type */
    uint8_t flags;    /* TK_FLAG_* */
    float score;      /* SPM piece score (0 when the vocab has none) */
} tk_token;

/* Open-addressing hash table of token ids keyed by token text. The slot
 * repeats the text pointer and length so that a probe touches one cache
 * line of the table, plus the text itself only when the tags agree. */
typedef struct tk_slot {
    const char *text;
    uint32_t len;
    uint32_t tag; /* high bits of the hash, to skip most string compares */
    int32_t id;   /* -1 = empty */
} tk_slot;

/* Open-addressing hash table: (left id, right id) -> merge rank. */
typedef struct tk_merge {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty */
    int32_t rank; /* position in tokenizer.ggml.merges: lower merges first */
} tk_merge;

#define TK_MAX_REGEX 8

/* One pre-tokenizer: a list of regexes applied in turn (each one splits the
 * pieces the previous one produced), plus the llama.cpp defaults that go
 * with it. Defined as data in tokenizer_pretok.c. */
typedef struct tk_pretok_def {
    const char *names[24];                /* tokenizer.ggml.pre values, NULL-terminated */
    const char *patterns[TK_MAX_REGEX];  /* NULL-terminated */
    bool ignore_merges;                   /* a piece that is itself a token skips merging */
    bool add_bos;                         /* default for add_bos_token when absent */
} tk_pretok_def;

struct byoai_tokenizer {
    byoai_tokenizer_kind kind;
    int32_t n_vocab;
    tk_token *tokens;

    tk_slot *tok_table;
    uint32_t tok_mask;

    /* SPM: every pair of adjacent characters inside a token, packed as
     * tk_spm_pair_key(); a merge can never join two characters whose pair
     * is missing, so the text is merged in independent chunks cut there */
    uint64_t *pair_table; /* 0 = empty slot */
    uint32_t pair_mask;
    bool pair_zero;       /* the pair whose key is 0 (two NUL bytes) */

    tk_merge *merge_table; /* BPE only */
    uint32_t merge_mask;
    uint32_t n_merges;

    int32_t bos, eos, eot, eom, unk; /* -1 when absent */
    bool add_bos, add_eos;
    bool add_space_prefix; /* SPM: prepend ' ' to text at the start / after a special token */
    size_t max_token_len;  /* WPM: the longest token text in bytes (the greedy search's window) */
    /* WPM: a byte trie of every token text, for the greedy longest match
     * (tokenizer_wpm.c). Node 0 is the root; wp_token[node] is the token
     * spelled by the path to it, or -1; an edge is one slot of wp_edges:
     * (((node << 8 | byte) + 1) << 32) | child, 0 = empty. NULL when the
     * vocabulary is too large for it (more than 2^24 nodes): then every
     * candidate length is looked up in tok_table instead. */
    int32_t *wp_token;
    uint32_t n_wp;
    uint64_t *wp_edges;
    uint32_t wp_mask;

    /* Special-token candidates for byoai_tokenize's partition step: ids of
     * CONTROL, USER_DEFINED and UNKNOWN tokens with non-empty text, sorted by
     * text length (longest first), then id: the order llama.cpp tries them. */
    int32_t *specials;
    int32_t n_specials;
    /* A byte trie over the candidates' texts, used to find which of them occur
     * in a text in one pass. Node 0 is the root. */
    struct tk_trie_node *trie;
    uint32_t n_trie;
    uint32_t trie_root[256]; /* the root's child per first byte (0 = none) */

    /* SPM byte fallback: the id for each raw byte ("<0xXX>", else the byte
     * itself as a token, else <unk>, else -1). */
    int32_t byte_token[256];
    /* BPE: the id of the GPT-2 alphabet character for each byte (-1 if the
     * vocab lacks it). */
    int32_t byte_char_token[256];

    /* BPE pre-tokenizer */
    const tk_pretok_def *pretok;
    char pre_name[64];
    pcre2_code *regex[TK_MAX_REGEX];
    int n_regex;
};

typedef struct tk_trie_node {
    uint32_t first_child; /* 0 = none (the root is never a child) */
    uint32_t next_sibling;
    int32_t special;      /* index into specials[] of the text ending here, or -1 */
    uint8_t byte;
} tk_trie_node;

/* ---- growable output ------------------------------------------------------ */
typedef struct tk_ids {
    int32_t *v;
    size_t n, cap;
} tk_ids;

int tk_ids_push(tk_ids *a, int32_t id);

/* ---- the merge work queue: a 4-ary max-heap ----------------------------------
 * Both BPE flavours repeatedly take the best adjacent pair: SPM the highest
 * score, GPT-2 the lowest rank. Ties go to the leftmost pair, which is what
 * makes the result deterministic and equal to llama.cpp's. Both orders are
 * folded into one 64-bit key (priority above, the left symbol's index
 * inverted below), so a comparison is one integer compare. Entries are 16
 * bytes and the four children of a node share one cache line: on a long
 * text the heap holds a million entries, and its cache misses were the
 * tokenizer's main cost. Entries that went stale (a side was merged away
 * since) are recognised on pop by their recorded byte size; the right side
 * is always the left symbol's current next. */
typedef struct tk_bigram {
    uint64_t key;   /* tk_bigram_key(): higher pops first */
    uint32_t size;  /* bytes of left + right when pushed */
    int32_t result; /* SPM: the token the pair makes */
} tk_bigram;

static inline uint64_t tk_bigram_key(uint32_t priority, int32_t left) {
    return (uint64_t)priority << 32 | (UINT32_MAX - (uint32_t)left);
}
static inline int32_t tk_bigram_left(const tk_bigram *b) { return (int32_t)(UINT32_MAX - (uint32_t)b->key); }
/* A float score as an unsigned priority that orders the same way (scores
 * are never NaN: loading refuses them; -0 and +0 tie, as they compare). */
static inline uint32_t tk_score_priority(float score) {
    uint32_t u;
    if (score == 0) score = 0; /* -0 -> +0 */
    memcpy(&u, &score, 4);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}
/* A merge rank (lower is better) as a priority (higher is better). */
static inline uint32_t tk_rank_priority(int32_t rank) { return UINT32_MAX - (uint32_t)rank; }

typedef struct tk_heap {
    tk_bigram *v; /* v[0] is the root; children of i: 4i+1..4i+4 */
    void *mem;    /* the cache-line-aligned allocation v points into */
    size_t n, cap;
} tk_heap;

int tk_heap_push(tk_heap *h, tk_bigram b);
tk_bigram tk_heap_pop(tk_heap *h);
void tk_heap_free(tk_heap *h);

/* A symbol of the merge loop: a span of the text being merged, linked to
 * its live neighbours. n == 0 marks a symbol merged into its left one. */
typedef struct tk_symbol {
    int32_t prev, next;
    uint32_t start, n;
    int32_t id; /* BPE: the token id of the span, -1 if none */
} tk_symbol;

/* Per-call scratch buffers, reused across fragments and words. */
typedef struct tk_scratch {
    tk_symbol *sym;
    size_t sym_cap;
    tk_heap heap;
    char *buf; /* SPM: escaped text; BPE: byte-encoded word */
    size_t buf_cap;
    size_t *pieces; /* BPE: offset, length, offset, length, ... of the pieces */
    size_t n_pieces, pieces_cap;
    size_t *pieces2;
    size_t pieces2_cap;
    pcre2_match_data *md[TK_MAX_REGEX];
} tk_scratch;

void tk_scratch_free(tk_scratch *s);
int tk_scratch_symbols(tk_scratch *s, size_t n);
int tk_scratch_buf(tk_scratch *s, size_t n);

/* ---- lookups (tokenizer_vocab.c) ------------------------------------------ */
uint64_t tk_hash_bytes(const void *p, size_t n);
static inline uint64_t tk_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Slots for a table of n entries (a power of two, at most ~70% full). */
uint32_t tk_table_size_for(uint64_t n);
/* Build the text -> id table; fails with EFORMAT on a duplicate token. */
int tk_vocab_index(byoai_tokenizer *t, byoai_error *err);
int32_t tk_vocab_find(const byoai_tokenizer *t, const char *s, size_t n);
/* Build the merge table from tokenizer.ggml.merges. */
int tk_merges_index(byoai_tokenizer *t, const byoai_gguf_value *merges, byoai_error *err);
/* The merge of (left, right), or NULL. */
const tk_merge *tk_merge_find(const byoai_tokenizer *t, int32_t left, int32_t right);

/* UTF-8 sequence length from the lead byte the way llama.cpp counts it (high
 * nibble 0xC/0xD: 2, 0xE: 3, 0xF: 4, otherwise 1), clipped by the caller. */
static inline size_t tk_utf8_len(uint8_t c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* ---- GPT-2 byte alphabet (tokenizer_bpe.c) -------------------------------- */
/* The printable code point GPT-2 uses for byte b. */
uint32_t tk_gpt2_byte_to_cp(uint8_t b);
/* The byte behind a GPT-2 alphabet code point, or -1. */
int tk_gpt2_cp_to_byte(uint32_t cp);

/* ---- special tokens (tokenizer_special.c) ---------------------------------- */
/* A piece of the text being tokenized: a special token, or raw text. */
typedef struct tk_fragment {
    size_t off, len;
    int32_t token; /* -1: raw text still to tokenize */
} tk_fragment;

typedef struct tk_frag_list {
    tk_fragment *v;
    size_t n, cap;
} tk_frag_list;

int tk_frag_push(tk_frag_list *l, size_t off, size_t len, int32_t token);
/* Collect the special-token candidates in priority order (t->specials) and
 * build their trie. */
int tk_specials_index(byoai_tokenizer *t, byoai_error *err);
/* Step 1 of byoai_tokenize: cut the allowed specials out of text (see the
 * top of tokenizer.c); out covers the whole text in order. */
int tk_partition(const byoai_tokenizer *t, const char *text, size_t len, bool parse_special, tk_frag_list *out);

/* ---- algorithms ------------------------------------------------------------ */
/* SentencePiece-style BPE of one raw fragment (already split around special
 * tokens); prefix_space adds the leading ' '. */
int tk_spm_tokenize(const byoai_tokenizer *t, tk_scratch *s, const char *text, size_t len, bool prefix_space,
                    tk_ids *out, byoai_error *err);
/* Index the character pairs of the vocabulary (t->pair_table). */
int tk_spm_pairs_index(byoai_tokenizer *t, byoai_error *err);
/* Build the WordPiece trie (t->wp_*). */
int tk_wpm_index(byoai_tokenizer *t, byoai_error *err);
/* WordPiece of one raw fragment (tokenizer_wpm.c). */
int tk_wpm_tokenize(const byoai_tokenizer *t, tk_scratch *s, const char *text, size_t len, tk_ids *out,
                    byoai_error *err);
/* GPT-2 byte-level BPE of one raw fragment, after the pre-tokenizer split. */
int tk_bpe_tokenize(const byoai_tokenizer *t, tk_scratch *s, const char *text, size_t len, tk_ids *out,
                    byoai_error *err);

/* ---- pre-tokenizer (tokenizer_pretok.c) ----------------------------------- */
/* Choose the pre-tokenizer for tokenizer.ggml.pre (name may be NULL when
 * the key is absent) and compile its regexes into t. */
int tk_pretok_init(byoai_tokenizer *t, const char *name, size_t name_len, byoai_error *err);
void tk_pretok_free(byoai_tokenizer *t);
/* Split text[0..len) into pieces: s->pieces[0..s->n_pieces) holds
 * offset, length, offset, length, ... covering the whole text in order. */
int tk_pretok_split(const byoai_tokenizer *t, tk_scratch *s, const char *text, size_t len, byoai_error *err);

#endif
