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
 * characters costs O(n log n) merges and lookups, not O(n^2) rescans.
 */
#include "tokenizer_internal.h"

#include <string.h>

#define SPACE_ESCAPE "\xE2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK */

static int try_add_bigram(const byoai_tokenizer *t, tk_scratch *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    const tk_symbol *l = &s->sym[left], *r = &s->sym[right];
    uint32_t size = l->n + r->n;
    /* symbols are adjacent spans of s->buf, so the pair is one span */
    int32_t id = tk_vocab_find(t, s->buf + l->start, size);
    if (id < 0) return 0;
    tk_bigram b = {.key = t->tokens[id].score, .left = left, .right = right, .size = size, .result = id};
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

    s->heap.n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (try_add_bigram(t, s, i - 1, i)) goto oom;

    while (s->heap.n) {
        tk_bigram b = tk_heap_pop(&s->heap);
        tk_symbol *l = &s->sym[b.left], *r = &s->sym[b.right];
        /* stale: a side was merged away or grew since this pair was queued
         * (symbols only grow, and only by absorbing their right neighbour) */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        l->id = b.result;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = b.left;
        if (try_add_bigram(t, s, l->prev, b.left) || try_add_bigram(t, s, b.left, l->next)) goto oom;
    }

    for (int32_t i = n_sym ? 0 : -1; i >= 0; i = s->sym[i].next) {
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
    return 0;
oom:
    return byoai_error_set(err, BYOAI_ENOMEM, "out of memory while tokenizing %zu bytes", len);
}
