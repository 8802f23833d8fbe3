/* The tokenizer's fast paths against naive reference implementations
 * written here the obvious (quadratic) way, on thousands of random texts:
 *  - the special-token partition (buckets in priority order) against one
 *    pass over the fragments per special, as llama.cpp does it;
 *  - SentencePiece merging (a heap, text cut into independent chunks)
 *    against rescanning all pairs for the best one after every merge;
 *  - GPT-2 BPE (a heap per piece) against the same rescan by rank;
 *  - WordPiece's trie walk against a lookup of every candidate length.
 * And a text naming thousands of distinct special tokens tokenizes in time
 * linear in its length, not in length x specials. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"
#include "byoai/tokenizer.h"
#include "infer/tokenizer_internal.h"

static uint64_t rng = 12345;

typedef struct vocab {
    byoai_gguf *g;
    byoai_tokenizer *t;
    uint8_t *buf;
} vocab;

static void vocab_open(vocab *v, const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    byoai_error err = {0};
    memset(v, 0, sizeof *v);
    if (byoai_gguf_open(tu_shared(rel), &v->g, &err)) fail_msg("open %s: %s", tu_shared(rel), err.msg);
    if (byoai_tokenizer_load(v->g, &v->t, &err)) fail_msg("load %s: %s", name, err.msg);
}

static void vocab_close(vocab *v) {
    byoai_tokenizer_free(v->t);
    byoai_gguf_close(v->g);
    free(v->buf);
    memset(v, 0, sizeof *v);
}

/* A vocabulary made of texts[0..n) with the given types (SentencePiece
 * style, no scores), in memory. */
static void vocab_make(vocab *v, const char *const *texts, const int32_t *types, size_t n) {
    byoai_gguf_writer *w;
    byoai_error err = {0};
    size_t size;
    memset(v, 0, sizeof *v);
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), 0);
    assert_int_equal(byoai_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, n), 0);
    assert_int_equal(byoai_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BYOAI_GGUF_INT32, types, n), 0);
    assert_int_equal(byoai_gguf_writer_to_buffer(w, &v->buf, &size, &err), 0);
    byoai_gguf_writer_free(w);
    assert_int_equal(byoai_gguf_parse(v->buf, size, &v->g, &err), 0);
    if (byoai_tokenizer_load(v->g, &v->t, &err)) fail_msg("load: %s", err.msg);
}

/* A random text made of pieces from the given list. */
static size_t random_text(char *out, size_t cap, const char *const *pieces, size_t n_pieces) {
    size_t len = 0, want = tu_rand_u64(&rng) % cap;
    while (len < want) {
        const char *p = pieces[tu_rand_u64(&rng) % n_pieces];
        size_t l = strlen(p);
        if (len + l > cap) break;
        memcpy(out + len, p, l);
        len += l;
    }
    return len;
}

static bool frags_equal(const tk_frag_list *a, const tk_frag_list *b) {
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].off != b->v[i].off || a->v[i].len != b->v[i].len || a->v[i].token != b->v[i].token)
            return false;
    return true;
}

/* ---- the partition -------------------------------------------------------------- */

/* llama.cpp's way: for each special in priority order, cut it out of every
 * raw fragment at all its non-overlapping occurrences, left to right. */
static void partition_reference(const byoai_tokenizer *t, const char *text, size_t len, bool parse_special,
                                tk_frag_list *out) {
    out->n = 0;
    if (len == 0) return;
    assert_int_equal(tk_frag_push(out, 0, len, -1), 0);
    tk_frag_list next = {0};
    for (int32_t k = 0; k < t->n_specials; k++) {
        int32_t id = t->specials[k];
        if (!parse_special && t->tokens[id].type != BYOAI_TOKEN_USER_DEFINED) continue;
        const char *st = t->tokens[id].text;
        size_t sl = t->tokens[id].len;
        next.n = 0;
        for (size_t f = 0; f < out->n; f++) {
            tk_fragment fr = out->v[f];
            if (fr.token >= 0) {
                assert_int_equal(tk_frag_push(&next, fr.off, fr.len, fr.token), 0);
                continue;
            }
            size_t pos = fr.off, end = fr.off + fr.len;
            const char *m;
            while (end - pos >= sl && (m = memmem(text + pos, end - pos, st, sl))) {
                size_t at = (size_t)(m - text);
                if (at > pos) assert_int_equal(tk_frag_push(&next, pos, at - pos, -1), 0);
                assert_int_equal(tk_frag_push(&next, at, sl, id), 0);
                pos = at + sl;
            }
            if (pos < end) assert_int_equal(tk_frag_push(&next, pos, end - pos, -1), 0);
        }
        tk_frag_list tmp = *out;
        *out = next;
        next = tmp;
    }
    free(next.v);
}

static void test_partition(void **state) {
    (void)state;
    /* specials that nest ("aa" in "aaaa", "<x>" in "<x><y>"), overlap
     * ("abc"/"bcd"/"cde") and share prefixes, of both kinds */
    const char *texts[] = {"<unk>", "a", "b", "c", "d", "e", "<", ">", "x", "y",
                           "aa", "aaaa", "abc", "bcd", "cde", "<x>", "<x><y>", "<y>", "ab", "e<", "aaa"};
    int32_t types[] = {BYOAI_TOKEN_UNKNOWN, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                       BYOAI_TOKEN_USER_DEFINED, BYOAI_TOKEN_CONTROL, BYOAI_TOKEN_USER_DEFINED,
                       BYOAI_TOKEN_CONTROL, BYOAI_TOKEN_USER_DEFINED, BYOAI_TOKEN_CONTROL,
                       BYOAI_TOKEN_USER_DEFINED, BYOAI_TOKEN_USER_DEFINED, BYOAI_TOKEN_CONTROL,
                       BYOAI_TOKEN_CONTROL, BYOAI_TOKEN_USER_DEFINED};
    vocab v;
    vocab_make(&v, texts, types, sizeof texts / sizeof texts[0]);
    const char *pieces[] = {"a", "a", "a", "b", "c", "d", "e", "<", ">", "x", "y", "<x>", "<y>", "<unk>", " "};
    char text[256];
    tk_frag_list got = {0}, want = {0};
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = random_text(text, sizeof text, pieces, sizeof pieces / sizeof pieces[0]);
        bool ps = iter & 1;
        assert_int_equal(tk_partition(v.t, text, len, ps, &got), 0);
        partition_reference(v.t, text, len, ps, &want);
        if (!frags_equal(&got, &want))
            fail_msg("partition of '%.*s' (parse_special=%d): %zu fragments, the reference has %zu", (int)len, text,
                     ps, got.n, want.n);
    }
    free(got.v);
    free(want.v);
    vocab_close(&v);
}

/* ---- SentencePiece ------------------------------------------------------------------- */

typedef struct span {
    size_t start, n;
} span;

/* Merge the highest-scoring pair (leftmost on ties) until none is a token,
 * rescanning everything each time; then byte fallback. */
static size_t spm_reference(const byoai_tokenizer *t, const char *text, size_t len, int32_t *out) {
    if (len == 0) return 0; /* no text, no fragment: not even the prefix space */
    char *e = malloc(3 * len + 4);
    size_t el = 0;
    if (t->add_space_prefix) {
        memcpy(e, "\xE2\x96\x81", 3);
        el = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(e + el, "\xE2\x96\x81", 3);
            el += 3;
        } else {
            e[el++] = text[i];
        }
    }
    span *sym = malloc((el + 1) * sizeof *sym);
    size_t n = 0;
    for (size_t i = 0; i < el;) {
        size_t cl = tk_utf8_len((uint8_t)e[i]);
        if (cl > el - i) cl = el - i;
        sym[n++] = (span){i, cl};
        i += cl;
    }
    for (;;) {
        size_t best = SIZE_MAX;
        float best_score = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int32_t id = tk_vocab_find(t, e + sym[i].start, sym[i].n + sym[i + 1].n);
            if (id >= 0 && (best == SIZE_MAX || t->tokens[id].score > best_score)) {
                best = i;
                best_score = t->tokens[id].score;
            }
        }
        if (best == SIZE_MAX) break;
        sym[best].n += sym[best + 1].n;
        memmove(sym + best + 1, sym + best + 2, (n - best - 2) * sizeof *sym);
        n--;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tk_vocab_find(t, e + sym[i].start, sym[i].n);
        if (id >= 0) {
            out[m++] = id;
            continue;
        }
        for (size_t k = 0; k < sym[i].n; k++) {
            int32_t bt = t->byte_token[(uint8_t)e[sym[i].start + k]];
            if (bt >= 0) out[m++] = bt;
        }
    }
    free(sym);
    free(e);
    return m;
}

static void test_spm(void **state) {
    (void)state;
    vocab v;
    vocab_open(&v, "llama-spm");
    /* words, spaces (chunk boundaries), letters that merge across words,
     * characters the vocabulary lacks (byte fallback) and invalid bytes */
    const char *pieces[] = {"the", "ing", " ", " ", "a", "e", "s", "t", "n", "o", "un", "ation", "  ", "\n", ".",
                            ",", "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\xA6\x99", "\x80", "\xE2", "\xE2\x96\x81",
                            "1", "23", "'", "\t", "Z", "qu"};
    char text[300];
    int32_t want[1200];
    for (int iter = 0; iter < 1500; iter++) {
        size_t len = random_text(text, sizeof text, pieces, sizeof pieces / sizeof pieces[0]);
        size_t n;
        int32_t *got;
        byoai_error err = {0};
        assert_int_equal(byoai_tokenize(v.t, text, len, false, false, &got, &n, &err), 0);
        size_t m = spm_reference(v.t, text, len, want);
        if (n != m || memcmp(got, want, n * sizeof *got))
            fail_msg("spm '%.*s': %zu tokens, the reference gives %zu", (int)len, text, n, m);
        free(got);
    }
    vocab_close(&v);
}

/* ---- GPT-2 BPE -------------------------------------------------------------------------- */

typedef struct bsym {
    size_t start, n;
    int32_t id;
} bsym;

static size_t bpe_piece_reference(const byoai_tokenizer *t, const char *piece, size_t len, int32_t *out) {
    char *e = malloc(2 * len + 1);
    bsym *sym = malloc((len + 1) * sizeof *sym);
    size_t el = 0, n = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)piece[i];
        size_t l = (size_t)byoai_utf8_encode(tk_gpt2_byte_to_cp(b), e + el);
        sym[n++] = (bsym){el, l, t->byte_char_token[b]};
        el += l;
    }
    for (;;) {
        size_t best = SIZE_MAX;
        int32_t best_rank = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            const tk_merge *m = tk_merge_find(t, sym[i].id, sym[i + 1].id);
            if (m && (best == SIZE_MAX || m->rank < best_rank)) {
                best = i;
                best_rank = m->rank;
            }
        }
        if (best == SIZE_MAX) break;
        sym[best].n += sym[best + 1].n;
        sym[best].id = tk_vocab_find(t, e + sym[best].start, sym[best].n);
        memmove(sym + best + 1, sym + best + 2, (n - best - 2) * sizeof *sym);
        n--;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (sym[i].id >= 0) {
            out[m++] = sym[i].id;
            continue;
        }
        for (size_t k = 0; k < sym[i].n;) {
            uint32_t cp;
            k += (size_t)byoai_utf8_decode(e + sym[i].start + k, sym[i].n - k, &cp);
            int b = tk_gpt2_cp_to_byte(cp);
            int32_t id = t->byte_char_token[b] >= 0 ? t->byte_char_token[b] : t->byte_token[b];
            if (id >= 0) out[m++] = id;
        }
    }
    free(sym);
    free(e);
    return m;
}

static void test_bpe(void **state) {
    (void)state;
    vocab v;
    vocab_open(&v, "gpt-2");
    const char *pieces[] = {"the", "ing", " ", " ", "a", "e", "s", "t", "n", "o", "un", "ation", "  ", "\n",
                            ".", ",", "\xC3\xA9", "\xE6\x97\xA5", "\x80", "1", "23", "'s", "\t", "Z", "qu", "!!"};
    char text[300];
    int32_t want[1200];
    tk_scratch s = {0};
    for (int iter = 0; iter < 1500; iter++) {
        size_t len = random_text(text, sizeof text, pieces, sizeof pieces / sizeof pieces[0]);
        size_t n, m = 0;
        int32_t *got;
        byoai_error err = {0};
        assert_int_equal(byoai_tokenize(v.t, text, len, false, false, &got, &n, &err), 0);
        assert_int_equal(tk_pretok_split(v.t, &s, text, len, &err), 0);
        for (size_t p = 0; p < s.n_pieces; p += 2)
            m += bpe_piece_reference(v.t, text + s.pieces[p], s.pieces[p + 1], want + m);
        if (n != m || memcmp(got, want, n * sizeof *got))
            fail_msg("gpt-2 '%.*s': %zu tokens, the reference gives %zu", (int)len, text, n, m);
        free(got);
    }
    tk_scratch_free(&s);
    vocab_close(&v);
}

/* ---- WordPiece ------------------------------------------------------------------------------ */

static void test_wpm(void **state) {
    (void)state;
    vocab fast, slow;
    vocab_open(&fast, "bert-bge");
    vocab_open(&slow, "bert-bge");
    assert_non_null(fast.t->wp_edges);
    free(slow.t->wp_edges); /* the fallback: every length looked up, longest first */
    slow.t->wp_edges = NULL;
    const char *pieces[] = {"tele", "communication", "s", "un", "break", "able", " ", " ", "a", "q", "x", "z", "Ü",
                            "\xC3\xA9", "\xE6\x97\xA5", "1", "23", "!", "'", "\t", "[CLS]", "##", "ing", "qu",
                            "\x80", "e\xCC\x81"};
    char text[300];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = random_text(text, sizeof text, pieces, sizeof pieces / sizeof pieces[0]);
        int32_t *a, *b;
        size_t na, nb;
        byoai_error err = {0};
        bool ps = iter & 1;
        assert_int_equal(byoai_tokenize(fast.t, text, len, true, ps, &a, &na, &err), 0);
        assert_int_equal(byoai_tokenize(slow.t, text, len, true, ps, &b, &nb, &err), 0);
        if (na != nb || memcmp(a, b, na * sizeof *a))
            fail_msg("wordpiece '%.*s': %zu tokens, the reference gives %zu", (int)len, text, na, nb);
        free(a);
        free(b);
    }
    vocab_close(&fast);
    vocab_close(&slow);
}

/* ---- many distinct specials ---------------------------------------------------------------- */

/* 16000 control tokens, a 1 MB text that names each of them over and over:
 * one pass over the text per special (16000 x 1 MB) took many seconds;
 * linear work takes a fraction of one even under the sanitizers. */
static void test_many_specials(void **state) {
    (void)state;
    enum { N = 16000 };
    size_t n = 3 + N;
    const char **texts = calloc(n, sizeof *texts);
    int32_t *types = calloc(n, sizeof *types);
    char *names = malloc((size_t)N * 24);
    texts[0] = "<unk>";
    types[0] = BYOAI_TOKEN_UNKNOWN;
    texts[1] = "a";
    texts[2] = "b";
    types[1] = types[2] = BYOAI_TOKEN_NORMAL;
    for (int i = 0; i < N; i++) {
        snprintf(names + (size_t)i * 24, 24, "<|reserved_%d|>", i);
        texts[3 + i] = names + (size_t)i * 24;
        types[3 + i] = BYOAI_TOKEN_CONTROL;
    }
    vocab v;
    vocab_make(&v, texts, types, n);
    size_t cap = 1u << 20, len = 0;
    char *text = malloc(cap);
    for (int k = 0;; k = (k + 1) % N) {
        char u[32];
        int l = snprintf(u, sizeof u, "<|reserved_%d|>ab", k);
        if (len + (size_t)l > cap) break;
        memcpy(text + len, u, (size_t)l);
        len += (size_t)l;
    }
    int32_t *ids;
    size_t nt;
    byoai_error err = {0};
    double t0 = byoai_time_now();
    assert_int_equal(byoai_tokenize(v.t, text, len, false, true, &ids, &nt, &err), 0);
    double dt = byoai_time_now() - t0;
    if (dt > 3.0) fail_msg("1 MB naming %d distinct special tokens took %.2f s", N, dt);
    /* every special came out as itself, in order */
    size_t specials = 0;
    for (size_t i = 0; i < nt; i++)
        if (ids[i] >= 3) {
            assert_int_equal(ids[i], 3 + (int32_t)(specials % N));
            specials++;
        }
    assert_true(specials > 50000);
    free(ids);
    free(text);
    vocab_close(&v);
    free(names);
    free(types);
    free(texts);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition),
        cmocka_unit_test(test_spm),
        cmocka_unit_test(test_bpe),
        cmocka_unit_test(test_wpm),
        cmocka_unit_test(test_many_specials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
