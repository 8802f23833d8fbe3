/*
 * SentencePiece-style BPE ("llama" vocabularies: Llama 1/2, Mistral, ...).
 *
 * The text gets a leading space (when the model asks for it), every ' '
 * becomes U+2581 '▁', and the text starts as one symbol per UTF-8
 * character. Then, repeatedly, the adjacent pair whose concatenation is a
 * vocabulary token with the highest score is merged (leftmost on ties),
 * until no adjacent pair forms a token. A final symbol that is not a token
 * (a character the vocabulary lacks) is emitted as its UTF-8 bytes through
 * the <0xXX> byte tokens ("byte fallback").
 *
 * The candidates live in a max-heap keyed by score, so a text of n
 * characters costs O(n log n) merges and lookups, not O(n^2) rescans. And
 * the heap stays small: a merge can only ever join two characters that are
 * adjacent inside some token, so wherever the text has two neighbours that
 * no token holds side by side (in prose: mostly a letter and the '▁' after
 * it), nothing will cross, and the text is merged chunk by chunk, each in a
 * heap that fits in cache. The result is the same: merges in different
 * chunks never interact, and within a chunk they happen in the same order.
 */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

#define SPACE_ESCAPE "\xE2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK */

/* ---- the character pairs of the vocabulary ------------------------------------ */

/* Characters as the merge loop splits text (tk_utf8_len, clipped at the
 * end). Two characters packed into 64 bits; characters shorter than four
 * bytes are zero-padded, so different pairs may share a key: that only
 * costs a chunk boundary, never correctness (a pair that occurs in a token
 * always finds its key). */
static uint64_t pair_key(const char *a, size_t la, const char *b, size_t lb) {
    uint32_t x = 0, y = 0;
    memcpy(&x, a, la);
    memcpy(&y, b, lb);
    return (uint64_t)x | (uint64_t)y << 32;
}

static void pair_put(uint64_t *table, uint32_t mask, uint64_t key) {
    for (uint32_t i = (uint32_t)tk_mix64(key) & mask;; i = (i + 1) & mask) {
        if (table[i] == key) return;
        if (table[i] == 0) {
            table[i] = key;
            return;
        }
    }
}

static bool pair_known(const byoai_tokenizer *t, uint64_t key);

/* Add a pair, growing the table to stay at most ~70% full. */
static int pair_insert(byoai_tokenizer *t, uint32_t *count, uint64_t key) {
    if (key == 0) {
        t->pair_zero = true;
        return 0;
    }
    if (pair_known(t, key)) return 0;
    uint32_t cap = t->pair_mask + 1;
    if ((uint64_t)(*count + 1) * 10 > (uint64_t)cap * 7) {
        if (cap >= 1u << 30) return BYOAI_ENOMEM;
        uint64_t *nt = calloc((size_t)cap * 2, sizeof *nt);
        if (!nt) return BYOAI_ENOMEM;
        for (uint32_t i = 0; i < cap; i++)
            if (t->pair_table[i]) pair_put(nt, cap * 2 - 1, t->pair_table[i]);
        free(t->pair_table);
        t->pair_table = nt;
        t->pair_mask = cap * 2 - 1;
    }
    pair_put(t->pair_table, t->pair_mask, key);
    (*count)++;
    return 0;
}

static bool pair_known(const byoai_tokenizer *t, uint64_t key) {
    if (key == 0) return t->pair_zero;
    for (uint32_t i = (uint32_t)tk_mix64(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        if (t->pair_table[i] == key) return true;
        if (t->pair_table[i] == 0) return false;
    }
}

static size_t char_len(const char *s, size_t left) {
    size_t cl = tk_utf8_len((uint8_t)s[0]);
    return cl > left ? left : cl;
}

int tk_spm_pairs_index(byoai_tokenizer *t, byoai_error *err) {
    uint32_t cap = 1024, count = 0;
    t->pair_table = calloc(cap, sizeof *t->pair_table);
    if (!t->pair_table) goto oom;
    t->pair_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->tokens[id].text;
        size_t n = t->tokens[id].len;
        if (n == 0) continue;
        size_t i = 0, a = char_len(s, n);
        while (i + a < n) {
            size_t b = char_len(s + i + a, n - i - a);
            if (pair_insert(t, &count, pair_key(s + i, a, s + i + a, b))) goto oom;
            i += a;
            a = b;
        }
    }
    return 0;
oom:
    return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for the tokenizer's table of character pairs");
}

/* ---- merging -------------------------------------------------------------------- */

static int try_add_bigram(const byoai_tokenizer *t, tk_scratch *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    const tk_symbol *l = &s->sym[left], *r = &s->sym[right];
    uint32_t size = l->n + r->n;
    /* symbols are adjacent spans of s->buf, so the pair is one span */
    int32_t id = tk_vocab_find(t, s->buf + l->start, size);
    if (id < 0) return 0;
    tk_bigram b = {.key = tk_bigram_key(tk_score_priority(t->tokens[id].score), left), .size = size, .result = id};
    return tk_heap_push(&s->heap, b);
}

int tk_spm_tokenize(const byoai_tokenizer *t, tk_scratch *s, const char *text, size_t len, bool prefix_space,
                    tk_ids *out, byoai_error *err) {
    /* escape: ' ' -> "▁" (3 bytes), with the optional leading space */
    size_t n_spaces = 0;
    for (size_t i = 0; i < len; i++) n_spaces += text[i] == ' ';
    size_t elen = len + 2 * n_spaces + (prefix_space ? 3 : 0);
    if (elen > UINT32_MAX / 2)
        return byoai_error_set(err, BYOAI_ERANGE, "text fragment of %zu bytes is too long to tokenize", len);
    if (tk_scratch_buf(s, elen) || tk_scratch_symbols(s, elen)) goto oom;
    char *e = s->buf;
    size_t o = 0;
    if (prefix_space) {
        memcpy(e, SPACE_ESCAPE, 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(e + o, SPACE_ESCAPE, 3);
            o += 3;
        } else {
            e[o++] = text[i];
        }
    }

    /* one symbol per UTF-8 character (an invalid lead byte counts as the
     * length its high bits claim, clipped at the end: the bytes are kept
     * either way and fall back to byte tokens) */
    int32_t n_sym = 0;
    for (size_t i = 0; i < elen;) {
        size_t cl = tk_utf8_len((uint8_t)e[i]);
        if (cl > elen - i) cl = elen - i;
        tk_symbol *sy = &s->sym[n_sym];
        sy->start = (uint32_t)i;
        sy->n = (uint32_t)cl;
        sy->prev = n_sym - 1;
        sy->next = i + cl == elen ? -1 : n_sym + 1;
        sy->id = -1;
        n_sym++;
        i += cl;
    }

    /* chunk by chunk: [first, end) is cut where the next pair is unknown */
    for (int32_t first = 0; first < n_sym;) {
        int32_t end = first + 1;
        while (end < n_sym && pair_known(t, pair_key(e + s->sym[end - 1].start, s->sym[end - 1].n,
                                                     e + s->sym[end].start, s->sym[end].n)))
            end++;
        s->sym[first].prev = -1;
        s->sym[end - 1].next = -1;
        s->heap.n = 0;
        for (int32_t i = first + 1; i < end; i++)
            if (try_add_bigram(t, s, i - 1, i)) goto oom;

        while (s->heap.n) {
            tk_bigram b = tk_heap_pop(&s->heap);
            int32_t left = tk_bigram_left(&b);
            tk_symbol *l = &s->sym[left];
            /* stale: a side was merged away or grew since this pair was queued
             * (symbols only grow, and only by absorbing their right neighbour,
             * so while the left one keeps its size its next is the same) */
            if (l->n == 0 || l->next < 0) continue;
            tk_symbol *r = &s->sym[l->next];
            if (l->n + r->n != b.size) continue;
            l->n += r->n;
            l->id = b.result;
            r->n = 0;
            l->next = r->next;
            if (r->next >= 0) s->sym[r->next].prev = left;
            if (try_add_bigram(t, s, l->prev, left) || try_add_bigram(t, s, left, l->next)) goto oom;
        }

        for (int32_t i = first; i >= 0; i = s->sym[i].next) {
            const tk_symbol *sy = &s->sym[i];
            int32_t id = sy->id >= 0 ? sy->id : tk_vocab_find(t, e + sy->start, sy->n);
            if (id >= 0) {
                if (tk_ids_push(out, id)) goto oom;
                continue;
            }
            for (uint32_t k = 0; k < sy->n; k++) {
                int32_t bt = t->byte_token[(uint8_t)e[sy->start + k]];
                if (bt >= 0 && tk_ids_push(out, bt)) goto oom;
                /* bt < 0: the vocabulary has neither byte tokens nor <unk>;
                 * the byte cannot be represented and is dropped */
            }
        }
        first = end;
    }
    return 0;
oom:
    return byoai_error_set(err, BYOAI_ENOMEM, "out of memory while tokenizing %zu bytes", len);
}
