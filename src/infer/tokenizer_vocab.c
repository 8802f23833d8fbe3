/*
 * Tokenizer lookup structures: token text -> id, merge pair -> rank, the
 * merge work queue, and per-call scratch.
 *
 * Both tables use open addressing with linear probing in a power-of-two
 * array at most ~70% full, and a lookup is one hash plus (almost always) one
 * string compare. Token strings are never copied: slots point into the GGUF
 * mapping. Loading a 150k-token, 150k-merge vocabulary is bound by cache
 * misses, so the loaders prefetch ahead (about 25 ms on a 2-core VM).
 */
#include "tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hashing -------------------------------------------------------------- */

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint64_t load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A fast 64-bit hash of a byte string: 8 bytes per multiply, the tail read
 * as one (overlapping) word instead of byte by byte, then a strong final
 * mix. Not cryptographic: a hostile vocabulary could only slow lookups. */
uint64_t tk_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    uint64_t v;
    if (n > 8) {
        const uint8_t *last = s + n - 8;
        for (; s < last; s += 8) {
            h = (h ^ load64(s)) * 0xFF51AFD7ED558CCDull;
            h ^= h >> 32;
        }
        v = load64(last);
    } else if (n >= 4) {
        v = load32(s) | load32(s + n - 4) << 32;
    } else if (n > 0) {
        v = (uint64_t)s[0] | (uint64_t)s[n / 2] << 8 | (uint64_t)s[n - 1] << 16;
    } else {
        v = 0;
    }
    return tk_mix64(h ^ v);
}

/* Tables stay at most ~70% full: linear probing then needs about three
 * slots for a miss, usually in one cache line. */
uint32_t tk_table_size_for(uint64_t n) {
    uint64_t cap = 16;
    while (cap * 7 < n * 10) cap <<= 1;
    return (uint32_t)cap;
}

/* ---- token text -> id ------------------------------------------------------ */

static void show(char *out, size_t cap, const char *s, size_t n) {
    /* a short printable rendering of a token for error messages */
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
        else out[o++] = (char)c;
    }
    out[o < cap ? o : cap - 1] = '\0';
}

/* How far ahead the loaders prefetch. Indexing a 150k-token vocabulary is
 * dominated by cache and TLB misses on the tables (random by design); with
 * the next few lookups' slots already on their way, the misses overlap
 * instead of queueing one after another. */
#define PREFETCH_AHEAD 16
#define BATCH 64

static inline void prefetch_slot(const byoai_tokenizer *t, uint64_t h) {
    __builtin_prefetch(&t->tok_table[(uint32_t)h & t->tok_mask]);
}

int tk_vocab_index(byoai_tokenizer *t, byoai_error *err) {
    uint32_t cap = tk_table_size_for((uint64_t)t->n_vocab);
    t->tok_table = malloc((size_t)cap * sizeof *t->tok_table);
    if (!t->tok_table)
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for the token table (%u slots)", cap);
    for (uint32_t i = 0; i < cap; i++) t->tok_table[i].id = -1;
    t->tok_mask = cap - 1;
    uint64_t hashes[PREFETCH_AHEAD];
    for (int32_t id = 0; id < t->n_vocab + PREFETCH_AHEAD; id++) {
        if (id < t->n_vocab) {
            const tk_token *ahead = &t->tokens[id];
            hashes[id % PREFETCH_AHEAD] = tk_hash_bytes(ahead->text, ahead->len);
            prefetch_slot(t, hashes[id % PREFETCH_AHEAD]);
        }
        int32_t k = id - PREFETCH_AHEAD + 1; /* the token whose slot was prefetched longest ago */
        if (k < 0) continue;
        if (k >= t->n_vocab) break;
        const tk_token *tok = &t->tokens[k];
        /* An empty token can never be produced from text; llama.cpp renames
         * it, we simply leave it out of the index. */
        if (tok->len == 0) continue;
        uint64_t h = hashes[k % PREFETCH_AHEAD];
        uint32_t tag = (uint32_t)(h >> 32);
        for (uint32_t i = (uint32_t)h & t->tok_mask;; i = (i + 1) & t->tok_mask) {
            tk_slot *sl = &t->tok_table[i];
            if (sl->id < 0) {
                *sl = (tk_slot){.text = tok->text, .len = tok->len, .tag = tag, .id = k};
                break;
            }
            if (sl->tag == tag && sl->len == tok->len && !memcmp(sl->text, tok->text, tok->len)) {
                char shown[128];
                show(shown, sizeof shown, tok->text, tok->len);
                return byoai_error_set(err, BYOAI_EFORMAT,
                                       "tokenizer.ggml.tokens: token %d '%s' duplicates token %d; a vocabulary "
                                       "must not list a string twice (re-convert the model)",
                                       k, shown, sl->id);
            }
        }
    }
    return 0;
}

static int32_t find_hashed(const byoai_tokenizer *t, const char *s, size_t n, uint64_t h) {
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & t->tok_mask;; i = (i + 1) & t->tok_mask) {
        const tk_slot *sl = &t->tok_table[i];
        if (sl->id < 0) return -1;
        if (sl->tag == tag && sl->len == n && !memcmp(sl->text, s, n)) return sl->id;
    }
}

int32_t tk_vocab_find(const byoai_tokenizer *t, const char *s, size_t n) {
    if (n == 0 || n > UINT32_MAX) return -1;
    return find_hashed(t, s, n, tk_hash_bytes(s, n));
}

/* Look up n (<= 2 * BATCH) strings at once, in three sweeps so that each
 * sweep's misses overlap: hash and prefetch the first slot; prefetch the
 * text of the first slot whose tag agrees; then finish each lookup. */
static void find_batch(const byoai_tokenizer *t, const char *const *s, const size_t *len, int32_t *out, size_t n) {
    uint64_t h[2 * BATCH];
    for (size_t i = 0; i < n; i++) {
        h[i] = tk_hash_bytes(s[i], len[i]);
        prefetch_slot(t, h[i]);
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t tag = (uint32_t)(h[i] >> 32);
        for (uint32_t k = (uint32_t)h[i] & t->tok_mask;; k = (k + 1) & t->tok_mask) {
            const tk_slot *sl = &t->tok_table[k];
            if (sl->id < 0) break;
            if (sl->tag == tag) {
                __builtin_prefetch(sl->text);
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        out[i] = len[i] == 0 || len[i] > UINT32_MAX ? -1 : find_hashed(t, s[i], len[i], h[i]);
}

/* ---- merges ------------------------------------------------------------------ */

static uint32_t merge_slot(const byoai_tokenizer *t, uint64_t key) {
    return (uint32_t)tk_mix64(key) & t->merge_mask;
}

const tk_merge *tk_merge_find(const byoai_tokenizer *t, int32_t left, int32_t right) {
    if (!t->merge_table || left < 0 || right < 0) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint32_t i = merge_slot(t, key);; i = (i + 1) & t->merge_mask) {
        const tk_merge *m = &t->merge_table[i];
        if (m->key == UINT64_MAX) return NULL;
        if (m->key == key) return m;
    }
}

/* tokenizer.ggml.merges lists "left right" strings, best first. The split is
 * at the first space after the first byte (as llama.cpp does), so a left
 * part may itself start with a space. Both parts must be tokens: a merge
 * naming anything else is a broken vocabulary, and refusing it here is what
 * lets the merge loop work on ids instead of strings. (The concatenation is
 * looked up when a merge is applied, not here: that saves a third of the
 * load time of a large vocabulary, and a result missing from the vocabulary
 * only means that piece falls back to byte tokens.) */
int tk_merges_index(byoai_tokenizer *t, const byoai_gguf_value *merges, byoai_error *err) {
    uint64_t n = merges->v.arr.count;
    if (n > INT32_MAX)
        return byoai_error_set(err, BYOAI_EFORMAT, "tokenizer.ggml.merges has %llu entries (at most %d allowed)",
                               (unsigned long long)n, INT32_MAX);
    uint32_t cap = tk_table_size_for(n);
    t->merge_table = malloc((size_t)cap * sizeof *t->merge_table);
    if (!t->merge_table)
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for the merge table (%u slots)", cap);
    for (uint32_t i = 0; i < cap; i++) t->merge_table[i].key = UINT64_MAX;
    t->merge_mask = cap - 1;
    t->n_merges = (uint32_t)n;

    const char *part[2 * BATCH];
    size_t part_len[2 * BATCH];
    int32_t ids[2 * BATCH];
    uint64_t keys[BATCH];
    char shown[160], what[128];
    for (uint64_t r0 = 0; r0 < n; r0 += BATCH) {
        size_t nb = n - r0 < BATCH ? (size_t)(n - r0) : BATCH;
        for (size_t j = 0; j < nb; j++) {
            const byoai_gguf_str *line = &merges->v.arr.items[r0 + j].v.str;
            const char *s = line->ptr;
            size_t len = (size_t)line->len;
            const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
            if (!sp) {
                show(shown, sizeof shown, s, len);
                return byoai_error_set(err, BYOAI_EFORMAT,
                                       "tokenizer.ggml.merges[%llu] = '%s' is not two tokens separated by a space",
                                       (unsigned long long)(r0 + j), shown);
            }
            part[2 * j] = s;
            part_len[2 * j] = (size_t)(sp - s);
            part[2 * j + 1] = sp + 1;
            part_len[2 * j + 1] = len - part_len[2 * j] - 1;
        }
        find_batch(t, part, part_len, ids, 2 * nb);
        for (size_t j = 0; j < nb; j++) {
            int32_t l = ids[2 * j], rt = ids[2 * j + 1];
            if (l < 0 || rt < 0) {
                const byoai_gguf_str *line = &merges->v.arr.items[r0 + j].v.str;
                show(shown, sizeof shown, line->ptr, (size_t)line->len);
                size_t bad = l < 0 ? 2 * j : 2 * j + 1;
                show(what, sizeof what, part[bad], part_len[bad]);
                return byoai_error_set(err, BYOAI_EFORMAT,
                                       "tokenizer.ggml.merges[%llu] = '%s' names '%s', which is not a token of the "
                                       "vocabulary",
                                       (unsigned long long)(r0 + j), shown, what);
            }
            keys[j] = ((uint64_t)(uint32_t)l << 32) | (uint32_t)rt;
            __builtin_prefetch(&t->merge_table[merge_slot(t, keys[j])], 1);
        }
        for (size_t j = 0; j < nb; j++) {
            for (uint32_t i = merge_slot(t, keys[j]);; i = (i + 1) & t->merge_mask) {
                tk_merge *m = &t->merge_table[i];
                if (m->key == UINT64_MAX) {
                    m->key = keys[j];
                    m->rank = (int32_t)(r0 + j);
                    break;
                }
                if (m->key == keys[j]) break; /* a repeated merge keeps its first (best) rank */
            }
        }
    }
    return 0;
}

/* ---- growable arrays ---------------------------------------------------------- */

int tk_ids_push(tk_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return BYOAI_ENOMEM;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = id;
    return 0;
}

/* ---- the work queue ------------------------------------------------------------ */

/* v = mem + 3 entries, mem 64-byte aligned: the children 4i+1..4i+4 of
 * every node then fill exactly one cache line */
#define HEAP_SKEW 3

int tk_heap_push(tk_heap *h, tk_bigram b) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 256;
        void *mem = NULL;
        if (posix_memalign(&mem, 64, (nc + HEAP_SKEW) * sizeof(tk_bigram))) return BYOAI_ENOMEM;
        tk_bigram *nv = (tk_bigram *)mem + HEAP_SKEW;
        if (h->n) memcpy(nv, h->v, h->n * sizeof *nv);
        free(h->mem);
        h->mem = mem;
        h->v = nv;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 4;
        if (b.key <= h->v[parent].key) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = b;
    return 0;
}

tk_bigram tk_heap_pop(tk_heap *h) {
    tk_bigram top = h->v[0];
    tk_bigram last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= n) break;
        size_t end = c + 4 < n ? c + 4 : n, best = c;
        for (size_t k = c + 1; k < end; k++)
            if (h->v[k].key > h->v[best].key) best = k;
        if (h->v[best].key <= last.key) break;
        h->v[i] = h->v[best];
        i = best;
    }
    if (n) h->v[i] = last;
    return top;
}

void tk_heap_free(tk_heap *h) {
    free(h->mem);
    memset(h, 0, sizeof *h);
}

/* ---- scratch ---------------------------------------------------------------------- */

int tk_scratch_symbols(tk_scratch *s, size_t n) {
    if (n <= s->sym_cap) return 0;
    size_t nc = n + n / 2 + 64;
    tk_symbol *ns = realloc(s->sym, nc * sizeof *ns);
    if (!ns) return BYOAI_ENOMEM;
    s->sym = ns;
    s->sym_cap = nc;
    return 0;
}

int tk_scratch_buf(tk_scratch *s, size_t n) {
    if (n <= s->buf_cap) return 0;
    size_t nc = n + n / 2 + 64;
    char *nb = realloc(s->buf, nc);
    if (!nb) return BYOAI_ENOMEM;
    s->buf = nb;
    s->buf_cap = nc;
    return 0;
}

void tk_scratch_free(tk_scratch *s) {
    free(s->sym);
    tk_heap_free(&s->heap);
    free(s->buf);
    free(s->pieces);
    free(s->pieces2);
    for (int i = 0; i < TK_MAX_REGEX; i++)
        if (s->md[i]) pcre2_match_data_free(s->md[i]);
    memset(s, 0, sizeof *s);
}
