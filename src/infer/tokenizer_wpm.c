/*
 * WordPiece ("bert"), as BERT-style embedding models use it and as
 * llama.cpp converts their vocabularies: a word-initial piece is stored with
 * a leading U+2581 ("▁hello"), a continuation piece bare ("llo" for BERT's
 * "##llo").
 *
 * Pre-processing, per code point (Unicode data from ICU):
 *  - each code point becomes the first code point of its canonical
 *    decomposition (NFD), which drops accents: "ü" -> "u";
 *  - white space ends the current word; control and format characters
 *    (Cc, Cf, Co, Cs), U+0000 and U+FFFD are dropped;
 *  - the rest is lower-cased; punctuation, ASCII symbols and CJK ideographs
 *    are words of their own;
 * then each word is split greedily into the longest pieces from its start;
 * a word with any part that matches no piece becomes the unknown token.
 */
#include <stdlib.h>
#include <string.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/utf16.h>

#include "infer/tokenizer_internal.h"

static bool is_chinese_char(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* The first code point of c's canonical decomposition (c itself if none). */
static uint32_t nfd_first(const UNormalizer2 *nfd, uint32_t c) {
    if (!nfd || c < 0xC0) return c;
    UChar buf[32];
    UErrorCode st = U_ZERO_ERROR;
    int32_t n = unorm2_getDecomposition(nfd, (UChar32)c, buf, 32, &st);
    if (n <= 0 || U_FAILURE(st)) return c;
    UChar32 first;
    int32_t i = 0;
    U16_NEXT(buf, i, n, first);
    return (uint32_t)first;
}

/* ---- the trie of token texts -------------------------------------------------- */

#define WP_MAX_NODES (1u << 24)

static uint64_t edge_key(uint32_t node, uint8_t byte) { return ((uint64_t)node << 8 | byte) + 1; }

static uint32_t edge_slot(const byoai_tokenizer *t, uint64_t key) { return (uint32_t)tk_mix64(key) & t->wp_mask; }

/* The child of node along byte, or 0 (the root is nobody's child). */
static uint32_t wp_child(const byoai_tokenizer *t, uint32_t node, uint8_t byte) {
    uint64_t key = edge_key(node, byte);
    for (uint32_t i = edge_slot(t, key);; i = (i + 1) & t->wp_mask) {
        uint64_t e = t->wp_edges[i];
        if (e == 0) return 0;
        if (e >> 32 == key) return (uint32_t)e;
    }
}

static void edge_put(uint64_t *table, uint32_t mask, uint64_t e) {
    for (uint32_t i = (uint32_t)tk_mix64(e >> 32) & mask;; i = (i + 1) & mask)
        if (table[i] == 0) {
            table[i] = e;
            return;
        }
}

int tk_wpm_index(byoai_tokenizer *t, byoai_error *err) {
    uint64_t bytes = 1;
    for (int32_t id = 0; id < t->n_vocab; id++) bytes += t->tokens[id].len;
    if (bytes > WP_MAX_NODES) return 0; /* too large for the trie: lookups by length instead */
    /* a node per byte at most, so an edge table sized for the bytes never
     * needs to grow (nodes do grow: shared prefixes make far fewer) */
    uint32_t cap_nodes = 1024, cap_edges = tk_table_size_for(bytes), n_edges = 0;
    t->wp_token = malloc(cap_nodes * sizeof *t->wp_token);
    t->wp_edges = calloc(cap_edges, sizeof *t->wp_edges);
    if (!t->wp_token || !t->wp_edges) goto oom;
    t->wp_mask = cap_edges - 1;
    t->wp_token[0] = -1;
    t->n_wp = 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tk_token *tok = &t->tokens[id];
        if (tok->len == 0) continue; /* never matched, as in tk_vocab_find */
        uint32_t node = 0;
        for (uint32_t i = 0; i < tok->len; i++) {
            uint8_t b = (uint8_t)tok->text[i];
            uint32_t c = wp_child(t, node, b);
            if (!c) {
                if (t->n_wp == cap_nodes) {
                    int32_t *nt = realloc(t->wp_token, (size_t)cap_nodes * 2 * sizeof *nt);
                    if (!nt) goto oom;
                    t->wp_token = nt;
                    cap_nodes *= 2;
                }
                if ((uint64_t)(n_edges + 1) * 10 > (uint64_t)cap_edges * 7) {
                    uint64_t *ne = calloc((size_t)cap_edges * 2, sizeof *ne);
                    if (!ne) goto oom;
                    for (uint32_t k = 0; k < cap_edges; k++)
                        if (t->wp_edges[k]) edge_put(ne, cap_edges * 2 - 1, t->wp_edges[k]);
                    free(t->wp_edges);
                    t->wp_edges = ne;
                    cap_edges *= 2;
                    t->wp_mask = cap_edges - 1;
                }
                c = t->n_wp++;
                t->wp_token[c] = -1;
                edge_put(t->wp_edges, t->wp_mask, edge_key(node, b) << 32 | c);
                n_edges++;
            }
            node = c;
        }
        t->wp_token[node] = id; /* texts are unique (tk_vocab_index refused duplicates) */
    }
    return 0;
oom:
    return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for the WordPiece trie");
}

/* The longest token that w[i..n) starts with: its id, with *end set past
 * it; -1 when none. One trie step per byte, and the walk ends where no
 * token continues (a few bytes into most text), instead of a hash lookup of
 * every candidate length down from the longest token's. */
static int32_t longest_at(const byoai_tokenizer *t, const char *w, size_t i, size_t n, size_t *end) {
    int32_t best = -1;
    if (!t->wp_edges) {
        size_t j = n - i < t->max_token_len ? n : i + t->max_token_len;
        for (; j > i; j--)
            if ((best = tk_vocab_find(t, w + i, j - i)) >= 0) break;
        *end = j;
        return best;
    }
    uint32_t node = 0;
    for (size_t j = i; j < n; j++) {
        node = wp_child(t, node, (uint8_t)w[j]);
        if (!node) break;
        if (t->wp_token[node] >= 0) {
            best = t->wp_token[node];
            *end = j + 1;
        }
    }
    return best;
}

/* Greedy longest-match split of one pre-processed word (with its "▁"). */
static int split_word(const byoai_tokenizer *t, const char *w, size_t n, tk_ids *out) {
    const size_t start = out->n;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int32_t id = longest_at(t, w, i, n, &j);
        if (id < 0) { /* a part of the word matches nothing: the whole word is unknown */
            out->n = start;
            return t->unk >= 0 ? tk_ids_push(out, t->unk) : 0;
        }
        int rc = tk_ids_push(out, id);
        if (rc) return rc;
        i = j;
    }
    return 0;
}

int tk_wpm_tokenize(const byoai_tokenizer *t, tk_scratch *s, const char *text, size_t len, tk_ids *out,
                    byoai_error *err) {
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2 *nfd = unorm2_getNFDInstance(&st);
    if (U_FAILURE(st)) nfd = NULL;
    /* a word is at most the text (4 bytes a code point after lower-casing) plus "▁" */
    if (tk_scratch_buf(s, 3 + 4 * len + 4))
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory while tokenizing %zu bytes", len);
    char *w = s->buf;
    size_t wn = 0; /* bytes of the current word after its "▁" */
    memcpy(w, "\xE2\x96\x81", 3);
#define FLUSH()                                                                                                        \
    do {                                                                                                               \
        if (wn) {                                                                                                      \
            if (split_word(t, w, 3 + wn, out)) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");           \
            wn = 0;                                                                                                    \
        }                                                                                                              \
    } while (0)
    for (size_t i = 0; i < len;) {
        uint32_t c;
        int l = byoai_utf8_decode(text + i, len - i, &c);
        i += (size_t)(l > 0 ? l : 1);
        c = nfd_first(nfd, c);
        if (u_isUWhiteSpace((UChar32)c)) {
            FLUSH();
            continue;
        }
        const uint32_t gc = U_GET_GC_MASK((UChar32)c);
        if (c == 0 || c == 0xFFFD || (gc & (U_GC_CC_MASK | U_GC_CF_MASK | U_GC_CO_MASK | U_GC_CS_MASK))) continue;
        char enc[4];
        int el = byoai_utf8_encode((uint32_t)u_tolower((UChar32)c), enc);
        if ((gc & U_GC_P_MASK) || (c < 0x7F && (gc & U_GC_S_MASK)) || is_chinese_char(c)) {
            FLUSH();
            memcpy(w + 3, enc, (size_t)el);
            wn = (size_t)el;
            FLUSH();
        } else {
            memcpy(w + 3 + wn, enc, (size_t)el);
            wn += (size_t)el;
        }
    }
    FLUSH();
#undef FLUSH
    return 0;
}
