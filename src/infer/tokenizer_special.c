/*
 * Special tokens in text: the candidates (control, user-defined and unknown
 * tokens), the byte trie over their texts, and the partition step of
 * byoai_tokenize, which cuts them out of the text.
 *
 * The partition has llama.cpp's semantics: specials are tried in priority
 * order (longest text first, then lowest id); each one is cut out at all its
 * non-overlapping occurrences, left to right, inside the text that earlier
 * (higher-priority) specials left raw. Done literally (one pass over the
 * text per special) that costs texts x specials: a 1 MB request naming a few
 * thousand of a vocabulary's reserved tokens took seconds. Instead:
 *
 *  1. one trie walk from every byte records where a special starts: each
 *     such position keeps the longest special it starts (the shorter ones
 *     there are prefixes of it, further up the same trie path);
 *  2. each position waits in the bucket of its current candidate, and the
 *     buckets are taken in priority order. A candidate whose bytes are all
 *     still raw is cut out; one whose start byte is already cut is dropped
 *     (every special starting there contains that byte); one that overlaps
 *     a cut further on moves to the bucket of the next shorter special that
 *     starts at the same position, which comes later in priority order.
 *
 * A special that the literal method cuts is one whose bytes were raw when its
 * turn came, leftmost first: exactly what the buckets do, since positions
 * in a bucket are taken left to right and a cut makes the bytes it covers
 * non-raw. The cost is the walk (bounded by the longest special text per
 * byte) plus, per occurrence, a check over its own bytes, and memory grows
 * with the occurrences, not with the text.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---- the candidates and their trie ----------------------------------------------- */

static int cmp_special(const void *a, const void *b, void *arg) {
    const byoai_tokenizer *t = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t->tokens[x].len, ly = t->tokens[y].len;
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int trie_add_node(byoai_tokenizer *t, uint32_t *cap, uint8_t byte, uint32_t *out) {
    if (t->n_trie == *cap) {
        uint32_t nc = *cap ? *cap * 2 : 256;
        tk_trie_node *nv = realloc(t->trie, (size_t)nc * sizeof *nv);
        if (!nv) return BYOAI_ENOMEM;
        t->trie = nv;
        *cap = nc;
    }
    t->trie[t->n_trie] = (tk_trie_node){.first_child = 0, .next_sibling = 0, .special = -1, .byte = byte};
    *out = t->n_trie++;
    return 0;
}

static bool is_candidate(const tk_token *tok) {
    return (tok->type == BYOAI_TOKEN_CONTROL || tok->type == BYOAI_TOKEN_USER_DEFINED ||
            tok->type == BYOAI_TOKEN_UNKNOWN) &&
           tok->len > 0;
}

int tk_specials_index(byoai_tokenizer *t, byoai_error *err) {
    int32_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) n += is_candidate(&t->tokens[id]);
    if (n == 0) return 0;
    t->specials = malloc((size_t)n * sizeof *t->specials);
    if (!t->specials) goto oom;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_candidate(&t->tokens[id])) t->specials[t->n_specials++] = id;
    qsort_r(t->specials, (size_t)n, sizeof *t->specials, cmp_special, t);

    /* root children in a 256-entry table, deeper levels as sibling lists:
     * special texts share few prefixes */
    uint32_t cap = 0, root;
    if (trie_add_node(t, &cap, 0, &root)) goto oom;
    for (int32_t k = 0; k < n; k++) {
        const tk_token *tok = &t->tokens[t->specials[k]];
        const uint8_t *s = (const uint8_t *)tok->text;
        uint32_t node = t->trie_root[s[0]];
        if (!node) {
            if (trie_add_node(t, &cap, s[0], &node)) goto oom;
            t->trie_root[s[0]] = node;
        }
        for (uint32_t i = 1; i < tok->len; i++) {
            uint32_t c = t->trie[node].first_child;
            while (c && t->trie[c].byte != s[i]) c = t->trie[c].next_sibling;
            if (!c) {
                if (trie_add_node(t, &cap, s[i], &c)) goto oom;
                t->trie[c].next_sibling = t->trie[node].first_child;
                t->trie[node].first_child = c;
            }
            node = c;
        }
        t->trie[node].special = k;
    }
    return 0;
oom:
    return byoai_error_set(err, BYOAI_ENOMEM, "out of memory while indexing special tokens");
}

/* ---- partition -------------------------------------------------------------------- */

int tk_frag_push(tk_frag_list *l, size_t off, size_t len, int32_t token) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        tk_fragment *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return BYOAI_ENOMEM;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = (tk_fragment){off, len, token};
    return 0;
}

static bool special_allowed(const byoai_tokenizer *t, int32_t k, bool parse_special) {
    return parse_special || t->tokens[t->specials[k]].type == BYOAI_TOKEN_USER_DEFINED;
}

/* The longest allowed special that starts at text[p] and is shorter than
 * max_len bytes: its index in t->specials, or -1. */
static int32_t special_at(const byoai_tokenizer *t, const char *text, size_t len, size_t p, size_t max_len,
                          bool parse_special) {
    int32_t best = -1;
    uint32_t node = t->trie_root[(uint8_t)text[p]];
    for (size_t q = p + 1; node && q - p < max_len; q++) {
        int32_t k = t->trie[node].special;
        if (k >= 0 && special_allowed(t, k, parse_special)) best = k;
        if (q == len) break;
        uint32_t c = t->trie[node].first_child;
        while (c && t->trie[c].byte != (uint8_t)text[q]) c = t->trie[c].next_sibling;
        node = c;
    }
    return best;
}

typedef struct occurrence {
    size_t pos;
    int32_t special; /* the current candidate (index into t->specials) */
    int32_t next;    /* the next occurrence in the same bucket, -1 at the end */
    bool cut;        /* cut out as its special */
} occurrence;

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

int tk_partition(const byoai_tokenizer *t, const char *text, size_t len, bool parse_special, tk_frag_list *out) {
    out->n = 0;
    if (len == 0) return 0;
    if (t->n_specials == 0) return tk_frag_push(out, 0, len, -1);

    int rc = BYOAI_ENOMEM;
    occurrence *occ = NULL;
    size_t n_occ = 0, cap_occ = 0;
    int32_t *head = NULL, *order = NULL;
    uint8_t *cut = NULL; /* one bit per byte of text: cut out by a special */
    for (size_t p = 0; p < len; p++) {
        int32_t k = special_at(t, text, len, p, SIZE_MAX, parse_special);
        if (k < 0) continue;
        if (n_occ == cap_occ) {
            if (cap_occ >= (size_t)INT32_MAX / 2) goto done;
            size_t nc = cap_occ ? cap_occ * 2 : 64;
            occurrence *nv = realloc(occ, nc * sizeof *nv);
            if (!nv) goto done;
            occ = nv;
            cap_occ = nc;
        }
        occ[n_occ++] = (occurrence){.pos = p, .special = k, .next = -1};
    }
    if (n_occ == 0) {
        rc = tk_frag_push(out, 0, len, -1);
        goto done;
    }

    /* the buckets, filled so that each lists its positions left to right */
    head = malloc((size_t)t->n_specials * sizeof *head);
    order = malloc(n_occ * sizeof *order);
    cut = calloc(len / 8 + 1, 1);
    if (!head || !order || !cut) goto done;
    for (int32_t k = 0; k < t->n_specials; k++) head[k] = -1;
    for (size_t i = n_occ; i-- > 0;) {
        occ[i].next = head[occ[i].special];
        head[occ[i].special] = (int32_t)i;
    }
#define IS_CUT(q) (cut[(q) >> 3] & (1u << ((q) & 7)))
    for (int32_t k = 0; k < t->n_specials; k++) {
        if (head[k] < 0) continue;
        /* positions moved here from longer specials came in after the
         * bucket's own: put the bucket in text order */
        size_t m = 0;
        bool sorted = true;
        for (int32_t i = head[k]; i >= 0; i = occ[i].next) {
            if (m && order[m - 1] > i) sorted = false;
            order[m++] = i;
        }
        if (!sorted) qsort(order, m, sizeof *order, cmp_i32);
        size_t sl = t->tokens[t->specials[k]].len;
        for (size_t j = 0; j < m; j++) {
            occurrence *o = &occ[order[j]];
            if (IS_CUT(o->pos)) continue; /* every special starting here contains this cut byte */
            size_t q = o->pos + 1;
            while (q < o->pos + sl && !IS_CUT(q)) q++;
            if (q == o->pos + sl) {
                for (q = o->pos; q < o->pos + sl; q++) cut[q >> 3] |= (uint8_t)(1u << (q & 7));
                o->cut = true;
                continue;
            }
            /* overlaps a cut further on: try the next shorter special here */
            int32_t k2 = special_at(t, text, len, o->pos, sl, parse_special);
            if (k2 >= 0) {
                o->special = k2;
                o->next = head[k2];
                head[k2] = order[j];
            }
        }
    }
#undef IS_CUT

    size_t pos = 0;
    rc = 0;
    for (size_t i = 0; i < n_occ && !rc; i++) {
        if (!occ[i].cut) continue;
        size_t sl = t->tokens[t->specials[occ[i].special]].len;
        if (occ[i].pos > pos) rc = tk_frag_push(out, pos, occ[i].pos - pos, -1);
        if (!rc) rc = tk_frag_push(out, occ[i].pos, sl, t->specials[occ[i].special]);
        pos = occ[i].pos + sl;
    }
    if (!rc && pos < len) rc = tk_frag_push(out, pos, len - pos, -1);
done:
    free(occ);
    free(head);
    free(order);
    free(cut);
    return rc;
}
