/*
 * GPT-2 byte-level BPE ("gpt2" vocabularies: GPT-2, Llama 3, Qwen, SmolLM...).
 *
 * After the pre-tokenizer has cut the text into pieces, each byte of a piece
 * is written as one printable character of GPT-2's byte alphabet (so a
 * vocabulary never needs raw control bytes or partial UTF-8), and the piece
 * starts as one symbol per byte. Then, repeatedly, the adjacent pair with
 * the best (lowest) rank in tokenizer.ggml.merges is merged, leftmost on
 * ties, until no adjacent pair is a merge.
 *
 * Merges are looked up by the token ids of the two sides (load time checks
 * that both sides of every merge are tokens), so the loop never builds or
 * hashes strings; candidates wait in a heap, O(n log n) per piece.
 */
#include "tokenizer_internal.h"

#include <string.h>

/* The alphabet: bytes that are printable Latin-1 ('!'..'~', '¡'..'¬',
 * '®'..'ÿ') stand for themselves; the other 68 bytes, in order, take the
 * code points from U+0100 up (so ' ' is U+0120 'Ġ' and '\n' U+010A 'Ċ'). */
uint32_t tk_gpt2_byte_to_cp(uint8_t b) {
    if (b <= 0x20) return 0x100 + b;             /* 33 bytes: U+0100..U+0120 */
    if (b >= 0x7F && b <= 0xA0) return b + 0xA2; /* 34 bytes: U+0121..U+0142 */
    if (b == 0xAD) return 0x143;                 /* soft hyphen */
    return b;
}

int tk_gpt2_cp_to_byte(uint32_t cp) {
    if (cp >= 0x100 && cp <= 0x120) return (int)(cp - 0x100);
    if (cp >= 0x121 && cp <= 0x142) return (int)(cp - 0xA2);
    if (cp == 0x143) return 0xAD;
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    return -1;
}

static int try_add_merge(const byoai_tokenizer *t, tk_scratch *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 0;
    const tk_symbol *l = &s->sym[left], *r = &s->sym[right];
    const tk_merge *m = tk_merge_find(t, l->id, r->id);
    if (!m) return 0;
    tk_bigram b = {.key = tk_bigram_key(tk_rank_priority(m->rank), left), .size = l->n + r->n, .result = -1};
    return tk_heap_push(&s->heap, b);
}

/* A final symbol that is not a token (only possible with a vocabulary that
 * lacks a byte character, or a merge whose result is not a token): emit its
 * bytes one by one, through the alphabet character, a <0xXX> token, or <unk>. */
static int emit_bytes(const byoai_tokenizer *t, const char *enc, uint32_t n, tk_ids *out) {
    for (uint32_t k = 0; k < n;) {
        uint32_t cp;
        int l = byoai_utf8_decode(enc + k, n - k, &cp);
        k += (uint32_t)l;
        int b = tk_gpt2_cp_to_byte(cp);
        if (b < 0) continue; /* cannot happen: we encoded it */
        int32_t id = t->byte_char_token[b] >= 0 ? t->byte_char_token[b] : t->byte_token[b];
        if (id >= 0 && tk_ids_push(out, id)) return BYOAI_ENOMEM;
    }
    return 0;
}

static int bpe_piece(const byoai_tokenizer *t, tk_scratch *s, const char *piece, size_t len, tk_ids *out) {
    if (tk_scratch_buf(s, 2 * len) || tk_scratch_symbols(s, len)) return BYOAI_ENOMEM;
    char *e = s->buf;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)piece[i];
        tk_symbol *sy = &s->sym[i];
        sy->start = (uint32_t)o;
        o += (size_t)byoai_utf8_encode(tk_gpt2_byte_to_cp(b), e + o);
        sy->n = (uint32_t)(o - sy->start);
        sy->prev = (int32_t)i - 1;
        sy->next = i + 1 == len ? -1 : (int32_t)i + 1;
        sy->id = t->byte_char_token[b];
    }

    /* Llama 3 style: a piece that is already a token is taken whole, even if
     * the merges would not build it */
    if (t->pretok->ignore_merges) {
        int32_t id = tk_vocab_find(t, e, o);
        if (id >= 0) return tk_ids_push(out, id);
    }

    s->heap.n = 0;
    for (size_t i = 1; i < len; i++)
        if (try_add_merge(t, s, (int32_t)i - 1, (int32_t)i)) return BYOAI_ENOMEM;

    while (s->heap.n) {
        tk_bigram b = tk_heap_pop(&s->heap);
        int32_t left = tk_bigram_left(&b);
        tk_symbol *l = &s->sym[left];
        if (l->n == 0 || l->next < 0) continue; /* stale (see tk_spm_tokenize) */
        tk_symbol *r = &s->sym[l->next];
        if (l->n + r->n != b.size) continue;
        l->n += r->n;
        l->id = tk_vocab_find(t, e + l->start, l->n); /* -1 if the result is no token: it merges no further */
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = left;
        if (try_add_merge(t, s, l->prev, left) || try_add_merge(t, s, left, l->next)) return BYOAI_ENOMEM;
    }

    for (int32_t i = len ? 0 : -1; i >= 0; i = s->sym[i].next) {
        const tk_symbol *sy = &s->sym[i];
        int rc = sy->id >= 0 ? tk_ids_push(out, sy->id) : emit_bytes(t, e + sy->start, sy->n, out);
        if (rc) return rc;
    }
    return 0;
}

int tk_bpe_tokenize(const byoai_tokenizer *t, tk_scratch *s, const char *text, size_t len, tk_ids *out,
                    byoai_error *err) {
    if (len > UINT32_MAX / 4)
        return byoai_error_set(err, BYOAI_ERANGE, "text fragment of %zu bytes is too long to tokenize", len);
    int rc = tk_pretok_split(t, s, text, len, err);
    if (rc) return rc;
    for (size_t p = 0; p < s->n_pieces; p += 2) {
        size_t off = s->pieces[p], plen = s->pieces[p + 1];
        if (bpe_piece(t, s, text + off, plen, out))
            return byoai_error_set(err, BYOAI_ENOMEM, "out of memory while tokenizing %zu bytes", len);
    }
    return 0;
}
