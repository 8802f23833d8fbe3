/* Tokenizer: the shared llama.cpp test vectors, round trips, special-token
 * parsing, byte fallback and pieces, and malformed vocabularies built with
 * the GGUF writer (each must give a clear error, and no crash or leak under
 * ASan). */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"
#include "byoai/tokenizer.h"

/* ---- helpers ---------------------------------------------------------------- */

typedef struct vocab {
    byoai_gguf *g;
    byoai_tokenizer *t;
    uint8_t *buf; /* backing buffer for vocabularies built in memory */
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

/* Serialize w, parse it and try to load a tokenizer; returns the load status
 * (the GGUF itself must be well-formed). w is freed. */
static int vocab_from_writer(vocab *v, byoai_gguf_writer *w, byoai_error *err) {
    size_t n;
    memset(v, 0, sizeof *v);
    assert_int_equal(byoai_gguf_writer_to_buffer(w, &v->buf, &n, err), 0);
    byoai_gguf_writer_free(w);
    assert_int_equal(byoai_gguf_parse(v->buf, n, &v->g, err), 0);
    byoai_error_clear(err);
    return byoai_tokenizer_load(v->g, &v->t, err);
}

static int32_t *tok(const byoai_tokenizer *t, const char *s, size_t len, bool add_special, bool parse_special,
                    size_t *n) {
    int32_t *ids;
    byoai_error err = {0};
    if (byoai_tokenize(t, s, len, add_special, parse_special, &ids, n, &err)) fail_msg("tokenize: %s", err.msg);
    return ids;
}

static char *detok(const byoai_tokenizer *t, const int32_t *ids, size_t n, bool render_special, bool strip,
                   size_t *len) {
    char *out;
    byoai_error err = {0};
    if (byoai_detokenize(t, ids, n, render_special, strip, &out, len, &err)) fail_msg("detokenize: %s", err.msg);
    return out;
}

static void show_ids(char *out, size_t cap, const int32_t *ids, size_t n) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o + 12 < cap; i++) o += (size_t)snprintf(out + o, cap - o, " %d", ids[i]);
}

static bool ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

/* ---- the shared vectors ------------------------------------------------------- */

#define SEP "__ggml_vocab_test__"

/* Split X.gguf.inp into its test strings: the separator is a line that reads
 * exactly SEP, and only the newline right before it is dropped. */
static size_t split_inputs(char *text, size_t len, char **starts, size_t *lens, size_t cap) {
    size_t n = 0, start = 0, sl = strlen(SEP);
    for (size_t p = 0; p + sl <= len; p++) {
        if ((p == 0 || text[p - 1] == '\n') && !memcmp(text + p, SEP, sl) && (p + sl == len || text[p + sl] == '\n')) {
            size_t end = p;
            if (end > start && text[end - 1] == '\n') end--;
            assert_true(n < cap);
            starts[n] = text + start;
            lens[n] = end - start;
            n++;
            start = p + sl + 1;
            p = start - 1;
        }
    }
    return n;
}

static void run_vectors(const char *name) {
    vocab v;
    vocab_open(&v, name);
    char rel[256];
    byoai_error err = {0};
    char *inp, *outp;
    size_t il, ol;
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.inp", name);
    assert_int_equal(byoai_fs_read_all(tu_shared(rel), 0, &inp, &il, &err), 0);
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.out", name);
    assert_int_equal(byoai_fs_read_all(tu_shared(rel), 0, &outp, &ol, &err), 0);

    char *starts[512];
    size_t lens[512];
    size_t n = split_inputs(inp, il, starts, lens, 512);
    assert_true(n > 40);

    size_t line = 0, failures = 0;
    char *o = outp;
    for (size_t i = 0; i < n; i++, line++) {
        char *eol = memchr(o, '\n', (size_t)(outp + ol - o));
        if (!eol) fail_msg("%s: .out has %zu lines for %zu inputs", name, line, n);
        *eol = '\0';
        int32_t expect[4096];
        size_t ne = 0;
        for (char *p = o, *end; *p; p = end) {
            long x = strtol(p, &end, 10);
            if (end == p) break;
            assert_true(ne < 4096);
            expect[ne++] = (int32_t)x;
        }
        size_t ng;
        int32_t *got = tok(v.t, starts[i], lens[i], false, false, &ng);
        if (!ids_equal(expect, ne, got, ng)) {
            if (failures++ == 0) {
                char es[8192], gs[8192];
                show_ids(es, sizeof es, expect, ne);
                show_ids(gs, sizeof gs, got, ng);
                print_error("%s vector %zu mismatch\n  input:    '%.*s'\n  expected:%s\n  got:     %s\n", name, i,
                            (int)lens[i], starts[i], es, gs);
            }
        }
        free(got);
        o = eol + 1;
    }
    free(inp);
    free(outp);
    vocab_close(&v);
    if (failures) fail_msg("%s: %zu of %zu vectors differ from llama.cpp (first one shown above)", name, failures, n);
}

static void test_vectors_llama_spm(void **state) {
    (void)state;
    run_vectors("llama-spm");
}

static void test_vectors_gpt2(void **state) {
    (void)state;
    run_vectors("gpt-2");
}

static void test_vectors_bert(void **state) {
    (void)state;
    run_vectors("bert-bge");
}

/* WordPiece frames an input as [CLS] ... [SEP] and reads back without the
 * word-start marks; a word with an unknown part is [UNK] as a whole. */
static void test_wordpiece(void **state) {
    (void)state;
    vocab v;
    vocab_open(&v, "bert-bge");
    assert_int_equal(byoai_tokenizer_kind_of(v.t), BYOAI_TOKENIZER_WPM);
    size_t n;
    int32_t *ids = tok(v.t, "Hello, World!", 13, true, false, &n);
    assert_int_equal(n, 6);
    assert_int_equal(ids[0], 101); /* [CLS] */
    assert_int_equal(ids[5], 102); /* [SEP] */
    char *text;
    byoai_error err;
    assert_int_equal(byoai_detokenize(v.t, ids + 1, n - 2, false, true, &text, NULL, &err), 0);
    assert_string_equal(text, "hello , world !"); /* lower-cased; punctuation is a word of its own */
    free(text);
    free(ids);
    ids = tok(v.t, "caf\xC3\xA9 \xE2\x80\x8B", 8, false, false, &n); /* accent dropped, zero-width space too */
    assert_int_equal(byoai_detokenize(v.t, ids, n, false, true, &text, NULL, &err), 0);
    assert_string_equal(text, "cafe");
    free(text);
    free(ids);
    vocab_close(&v);
}

/* ---- round trips ---------------------------------------------------------------- */

static const char *const SAMPLES[] = {
    "",
    " ",
    "  ",
    "\n",
    "\t\n \n",
    "Hello world",
    " Hello world",
    "Hello,  world!  ",
    "   leading and trailing   ",
    "line one\nline two\r\n\tindented",
    "Führer 4½ months, naïve café — “quotes”",
    "нещо на Български",
    "我想在apple工作1314151天～",
    "🚀 (normal) 😶‍🌫️ (multiple emojis) ✅ 🦙.cpp",
    "កាន់តែពិសេសអាចខលចេញ",
    "3333333 1.5 -2e10 0x1F",
    "' era y'all it's we'VE",
    "<s> <unk> </s> <|endoftext|> are plain text here",
    "\x01\x02\x7f control bytes",
};

static void check_roundtrip(const byoai_tokenizer *t, const char *s, size_t len, bool add_special) {
    size_t n, ol;
    int32_t *ids = tok(t, s, len, add_special, false, &n);
    char *out = detok(t, ids, n, false, true, &ol);
    if (ol != len || memcmp(out, s, len)) {
        char ids_s[4096];
        show_ids(ids_s, sizeof ids_s, ids, n);
        fail_msg("round trip differs\n  input: '%.*s' (%zu bytes)\n  ids:  %s\n  output: '%s' (%zu bytes)", (int)len,
                 s, len, ids_s, out, ol);
    }
    free(ids);
    free(out);
}

/* A random valid UTF-8 string mixing ASCII, whitespace, Latin, Cyrillic,
 * CJK, emoji and rare planes (never U+2581, which SentencePiece uses for
 * the space and so cannot round-trip). */
static size_t random_utf8(uint64_t *rng, char *out, size_t cap) {
    static const uint32_t ranges[][2] = {{0x20, 0x7e},     {0x09, 0x0d},     {0xa0, 0x24f},    {0x400, 0x4ff},
                                         {0x4e00, 0x9fff}, {0x1f300, 0x1f6ff}, {0x10000, 0x10ffff}, {0x20, 0x20}};
    size_t n = 0, want = (size_t)(tu_rand_u64(rng) % 60);
    for (size_t i = 0; i < want && n + 4 < cap; i++) {
        const uint32_t *r = ranges[tu_rand_u64(rng) % 8];
        uint32_t cp = r[0] + (uint32_t)(tu_rand_u64(rng) % (r[1] - r[0] + 1));
        if ((cp >= 0xd800 && cp <= 0xdfff) || cp == 0x2581) cp = 'x';
        n += (size_t)byoai_utf8_encode(cp, out + n);
    }
    return n;
}

static void roundtrips(const char *name) {
    vocab v;
    vocab_open(&v, name);
    for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++) {
        check_roundtrip(v.t, SAMPLES[i], strlen(SAMPLES[i]), false);
        check_roundtrip(v.t, SAMPLES[i], strlen(SAMPLES[i]), true); /* BOS renders as nothing */
    }
    uint64_t rng = 42;
    char buf[512];
    for (int i = 0; i < 500; i++) {
        size_t n = random_utf8(&rng, buf, sizeof buf);
        check_roundtrip(v.t, buf, n, false);
    }
    vocab_close(&v);
}

static void test_roundtrip_spm(void **state) {
    (void)state;
    roundtrips("llama-spm");
}

static void test_roundtrip_gpt2(void **state) {
    (void)state;
    roundtrips("gpt-2");
    /* byte-level BPE keeps every byte, even of invalid UTF-8 */
    vocab v;
    vocab_open(&v, "gpt-2");
    const char bad[] = "a\xff\xfe b\xc3(\xe2\x82 \xf0\x9f\x98 end\x80";
    check_roundtrip(v.t, bad, sizeof bad - 1, false);
    vocab_close(&v);
}

/* ---- special tokens --------------------------------------------------------------- */

static bool contains(const int32_t *ids, size_t n, int32_t id) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

static void test_special_gpt2(void **state) {
    (void)state;
    vocab v;
    vocab_open(&v, "gpt-2");
    const char *s = "Hello<|endoftext|>world";
    int32_t eot = byoai_token_lookup(v.t, "<|endoftext|>", 13);
    assert_int_equal(eot, 50256);

    size_t n, n1, n2, ol;
    int32_t *on = tok(v.t, s, strlen(s), false, true, &n);
    int32_t *a = tok(v.t, "Hello", 5, false, false, &n1);
    int32_t *b = tok(v.t, "world", 5, false, false, &n2);
    assert_int_equal(n, n1 + 1 + n2);
    assert_memory_equal(on, a, n1 * sizeof *a);
    assert_int_equal(on[n1], eot);
    assert_memory_equal(on + n1 + 1, b, n2 * sizeof *b);
    char *out = detok(v.t, on, n, true, false, &ol);
    assert_string_equal(out, s);
    free(out);
    out = detok(v.t, on, n, false, false, &ol);
    assert_string_equal(out, "Helloworld");
    free(out);

    int32_t *off = tok(v.t, s, strlen(s), false, false, &n);
    assert_false(contains(off, n, eot));
    out = detok(v.t, off, n, false, false, &ol);
    assert_string_equal(out, s);
    free(out);

    /* GPT-2 adds no BOS unless its metadata says so */
    assert_false(byoai_tokenizer_adds_bos(v.t));
    int32_t *with = tok(v.t, "Hello", 5, true, false, &n);
    assert_int_equal(n, n1);
    free(with);
    free(on);
    free(off);
    free(a);
    free(b);
    vocab_close(&v);
}

static void test_special_spm(void **state) {
    (void)state;
    vocab v;
    vocab_open(&v, "llama-spm");
    const char *s = "<s>Hello</s>";
    size_t n, nh, ol;
    int32_t *on = tok(v.t, s, strlen(s), false, true, &n);
    /* the text after a special token gets the SentencePiece space prefix */
    int32_t *h = tok(v.t, "Hello", 5, false, false, &nh);
    assert_int_equal(n, nh + 2);
    assert_int_equal(on[0], 1);
    assert_memory_equal(on + 1, h, nh * sizeof *h);
    assert_int_equal(on[n - 1], 2);
    char *out = detok(v.t, on, n, true, false, &ol);
    assert_string_equal(out, "<s> Hello</s>");
    free(out);

    int32_t *off = tok(v.t, s, strlen(s), false, false, &n);
    assert_false(contains(off, n, 1));
    assert_false(contains(off, n, 2));
    free(off);

    /* add_special: BOS in front, and it renders as nothing */
    int32_t *bos = tok(v.t, "Hello", 5, true, false, &n);
    assert_int_equal(n, nh + 1);
    assert_int_equal(bos[0], byoai_token_bos(v.t));
    out = detok(v.t, bos, n, false, true, &ol);
    assert_string_equal(out, "Hello");
    free(out);
    free(bos);

    /* empty text: nothing, or just BOS */
    int32_t *e = tok(v.t, "", 0, false, false, &n);
    assert_int_equal(n, 0);
    free(e);
    e = tok(v.t, NULL, 0, true, true, &n);
    assert_int_equal(n, 1);
    assert_int_equal(e[0], 1);
    free(e);
    free(on);
    free(h);
    vocab_close(&v);
}

/* ---- in-memory vocabularies ---------------------------------------------------------- */

#define MAXTOK 400

typedef struct spec {
    const char *text[MAXTOK];
    int32_t type[MAXTOK];
    float score[MAXTOK];
    char bytes[256][8];
    size_t n;
} spec;

static void spec_add(spec *s, const char *text, int32_t type, float score) {
    assert_true(s->n < MAXTOK);
    s->text[s->n] = text;
    s->type[s->n] = type;
    s->score[s->n] = score;
    s->n++;
}

/* A small SentencePiece vocabulary: <unk> <s> </s>, all 256 byte tokens,
 * a few pieces, then the caller's extras. */
static void spm_spec(spec *s) {
    memset(s, 0, sizeof *s);
    spec_add(s, "<unk>", BYOAI_TOKEN_UNKNOWN, 0);
    spec_add(s, "<s>", BYOAI_TOKEN_CONTROL, 0);
    spec_add(s, "</s>", BYOAI_TOKEN_CONTROL, 0);
    for (int b = 0; b < 256; b++) {
        snprintf(s->bytes[b], sizeof s->bytes[b], "<0x%02X>", b);
        spec_add(s, s->bytes[b], BYOAI_TOKEN_BYTE, 0);
    }
    const char *pieces[] = {"\xE2\x96\x81", "a", "b", "c", "d", "x", "y", "\xE2\x96\x81" "a", "ab", "cd", "abcd"};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        spec_add(s, pieces[i], BYOAI_TOKEN_NORMAL, -(float)(i + 1));
}

static byoai_gguf_writer *spm_writer(const spec *s) {
    byoai_gguf_writer *w;
    byoai_error err;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), 0);
    assert_int_equal(byoai_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s->text, s->n), 0);
    assert_int_equal(byoai_gguf_writer_set_arr(w, "tokenizer.ggml.scores", BYOAI_GGUF_FLOAT32, s->score, s->n), 0);
    assert_int_equal(byoai_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BYOAI_GGUF_INT32, s->type, s->n), 0);
    assert_int_equal(byoai_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1), 0);
    assert_int_equal(byoai_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2), 0);
    return w;
}

/* A small GPT-2 vocabulary: the 256 alphabet characters, "Ġa" and "Ġab"
 * with merges "Ġ a" and "Ġa b", plus <|endoftext|>. */
typedef struct gpt2_spec {
    char chars[256][4];
    const char *text[300];
    int32_t type[300];
    size_t n;
} gpt2_spec;

static byoai_gguf_writer *gpt2_writer(gpt2_spec *s, const char *const *merges, size_t n_merges) {
    memset(s, 0, sizeof *s);
    for (int b = 0; b < 256; b++) {
        uint32_t cp = b <= 0x20 ? 0x100u + (uint32_t)b
                      : (b >= 0x7f && b <= 0xa0) ? (uint32_t)b + 0xa2
                      : b == 0xad ? 0x143u : (uint32_t)b;
        byoai_utf8_encode(cp, s->chars[b]);
        s->text[s->n] = s->chars[b];
        s->type[s->n++] = BYOAI_TOKEN_NORMAL;
    }
    s->text[s->n] = "\xC4\xA0" "a"; /* Ġa */
    s->type[s->n++] = BYOAI_TOKEN_NORMAL;
    s->text[s->n] = "\xC4\xA0" "ab";
    s->type[s->n++] = BYOAI_TOKEN_NORMAL;
    s->text[s->n] = "<|endoftext|>";
    s->type[s->n++] = BYOAI_TOKEN_CONTROL;
    byoai_gguf_writer *w;
    byoai_error err;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"), 0);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2"), 0);
    assert_int_equal(byoai_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s->text, s->n), 0);
    assert_int_equal(byoai_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BYOAI_GGUF_INT32, s->type, s->n), 0);
    assert_int_equal(byoai_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, n_merges), 0);
    assert_int_equal(byoai_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)s->n - 1), 0);
    return w;
}

static const char *const GOOD_MERGES[] = {"\xC4\xA0 a", "\xC4\xA0" "a b"};

static void test_synthetic_gpt2(void **state) {
    (void)state;
    gpt2_spec s;
    vocab v;
    byoai_error err = {0};
    assert_int_equal(vocab_from_writer(&v, gpt2_writer(&s, GOOD_MERGES, 2), &err), 0);
    size_t n, ol;
    int32_t *ids = tok(v.t, "x ab", 4, false, false, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 'x'); /* this vocabulary lists the alphabet in byte order */
    assert_int_equal(ids[1], 257);        /* "Ġab" via Ġ+a, then Ġa+b */
    char *out = detok(v.t, ids, n, false, false, &ol);
    assert_string_equal(out, "x ab");
    free(out);
    free(ids);
    assert_true(byoai_token_is_eog(v.t, 258));
    assert_true(byoai_token_is_control(v.t, 258));
    assert_int_equal(byoai_token_bos(v.t), -1);
    vocab_close(&v);
}

static void test_special_priority(void **state) {
    (void)state;
    spec s;
    spm_spec(&s);
    size_t base = s.n;
    spec_add(&s, "<|im_start|>", BYOAI_TOKEN_CONTROL, 0);  /* base + 0 */
    spec_add(&s, "<|im_start|>x", BYOAI_TOKEN_CONTROL, 0); /* base + 1: longer, so it wins */
    spec_add(&s, "qr", BYOAI_TOKEN_USER_DEFINED, 0);       /* base + 2 */
    spec_add(&s, "rst", BYOAI_TOKEN_USER_DEFINED, 0);      /* base + 3 */
    spec_add(&s, "<|im_end|>", BYOAI_TOKEN_CONTROL, 0);    /* base + 4: EOG by its text */
    spec_add(&s, "<|end|>", BYOAI_TOKEN_USER_DEFINED, 0);  /* base + 5: not control, so not EOG */
    vocab v;
    byoai_error err = {0};
    assert_int_equal(vocab_from_writer(&v, spm_writer(&s), &err), 0);
    int32_t b = (int32_t)base;

    size_t n;
    int32_t *ids = tok(v.t, "<|im_start|>xy", 14, false, true, &n);
    assert_true(n >= 2);
    assert_int_equal(ids[0], b + 1);
    free(ids);
    ids = tok(v.t, "<|im_start|>y", 13, false, true, &n);
    assert_int_equal(ids[0], b);
    free(ids);
    /* without parse_special control tokens are plain text ... */
    ids = tok(v.t, "<|im_start|>y", 13, false, false, &n);
    assert_false(contains(ids, n, b));
    free(ids);
    /* ... but user-defined tokens are always cut out, and the longer one is
     * tried first everywhere: "qrst" is "q" + "rst", not "qr" + "st" */
    ids = tok(v.t, "qrst", 4, false, false, &n);
    assert_int_equal(ids[n - 1], b + 3);
    assert_false(contains(ids, n, b + 2));
    free(ids);
    ids = tok(v.t, "qr qr", 5, false, false, &n);
    assert_int_equal(ids[0], b + 2);
    assert_int_equal(ids[n - 1], b + 2);
    free(ids);

    assert_true(byoai_token_is_eog(v.t, 2));
    assert_true(byoai_token_is_eog(v.t, b + 4));
    assert_false(byoai_token_is_eog(v.t, b + 5));
    assert_false(byoai_token_is_eog(v.t, b));
    assert_false(byoai_token_is_eog(v.t, -1));
    assert_false(byoai_token_is_eog(v.t, 1 << 30));
    vocab_close(&v);
}

/* ---- byte fallback and pieces --------------------------------------------------------- */

static void test_byte_fallback_and_pieces(void **state) {
    (void)state;
    vocab v;
    vocab_open(&v, "llama-spm");
    const char *llama = "\xF0\x9F\xA6\x99"; /* U+1F999, not a piece of this vocabulary */
    size_t n, ol;
    int32_t *ids = tok(v.t, llama, 4, false, false, &n);
    assert_int_equal(n, 5); /* "▁" then four byte tokens */
    char piece[16];
    char joined[16];
    size_t jl = 0;
    for (size_t i = 1; i < 5; i++) {
        size_t tl;
        const char *text = byoai_token_text(v.t, ids[i], &tl);
        assert_int_equal(tl, 6);
        assert_memory_equal(text, "<0x", 3);
        int r = byoai_token_to_piece(v.t, ids[i], piece, sizeof piece, false);
        assert_int_equal(r, 1);
        assert_int_equal((uint8_t)piece[0], (uint8_t)llama[i - 1]);
        joined[jl++] = piece[0];
        /* a streaming printer holds back the incomplete character */
        assert_int_equal(byoai_utf8_incomplete_tail(joined, jl), i < 4 ? jl : 0);
    }
    char *out = detok(v.t, ids, n, false, true, &ol);
    assert_int_equal(ol, 4);
    assert_memory_equal(out, llama, 4);
    free(out);
    free(ids);

    /* pieces: '▁' is a space, <0x0A> a newline, control tokens only on request */
    int32_t nl = byoai_token_lookup(v.t, "<0x0A>", 6);
    assert_true(nl >= 0);
    assert_int_equal(byoai_token_to_piece(v.t, nl, piece, sizeof piece, false), 1);
    assert_int_equal(piece[0], '\n');
    int32_t the = byoai_token_lookup(v.t, "\xE2\x96\x81the", 6);
    assert_true(the >= 0);
    assert_int_equal(byoai_token_to_piece(v.t, the, piece, sizeof piece, false), 4);
    assert_memory_equal(piece, " the", 4);
    assert_int_equal(byoai_token_to_piece(v.t, 1, piece, sizeof piece, false), 0);
    assert_int_equal(byoai_token_to_piece(v.t, 1, piece, sizeof piece, true), 3);
    assert_memory_equal(piece, "<s>", 3);
    /* a short buffer: the full length comes back, only cap bytes are written */
    memset(piece, '#', sizeof piece);
    assert_int_equal(byoai_token_to_piece(v.t, the, piece, 2, false), 4);
    assert_memory_equal(piece, " t##", 4);
    assert_int_equal(byoai_token_to_piece(v.t, the, NULL, 0, false), 4);
    assert_true(byoai_token_to_piece(v.t, -1, piece, sizeof piece, false) < 0);
    assert_true(byoai_token_to_piece(v.t, 32000, piece, sizeof piece, false) < 0);
    byoai_error err = {0};
    int32_t bad[2] = {the, 99999};
    char *o2;
    assert_int_equal(byoai_detokenize(v.t, bad, 2, false, false, &o2, NULL, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "99999"));
    vocab_close(&v);

    vocab_open(&v, "gpt-2");
    int32_t gthe = byoai_token_lookup(v.t, "\xC4\xA0the", 5); /* "Ġthe" */
    assert_true(gthe >= 0);
    assert_int_equal(byoai_token_to_piece(v.t, gthe, piece, sizeof piece, false), 4);
    assert_memory_equal(piece, " the", 4);
    assert_int_equal(byoai_token_to_piece(v.t, 198, piece, sizeof piece, false), 1); /* "Ċ" */
    assert_int_equal(piece[0], '\n');
    vocab_close(&v);
}

static void test_accessors(void **state) {
    (void)state;
    vocab v;
    vocab_open(&v, "llama-spm");
    assert_int_equal(byoai_tokenizer_kind_of(v.t), BYOAI_TOKENIZER_SPM);
    assert_int_equal(byoai_tokenizer_n_vocab(v.t), 32000);
    assert_int_equal(byoai_token_bos(v.t), 1);
    assert_int_equal(byoai_token_eos(v.t), 2);
    assert_true(byoai_tokenizer_adds_bos(v.t));
    assert_false(byoai_tokenizer_adds_eos(v.t));
    assert_true(byoai_token_is_eog(v.t, 2));
    assert_false(byoai_token_is_eog(v.t, 1));
    assert_true(byoai_token_is_control(v.t, 1));
    assert_false(byoai_token_is_control(v.t, 0)); /* <unk> is "unknown", not control */
    size_t len;
    assert_null(byoai_token_text(v.t, 32000, &len));
    const char *text = byoai_token_text(v.t, 2, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(text, "</s>", 4); /* not NUL-terminated: it points into the GGUF */
    assert_int_equal(byoai_token_lookup(v.t, "</s>", 4), 2);
    assert_int_equal(byoai_token_lookup(v.t, "no such token here", 18), -1);
    vocab_close(&v);

    vocab_open(&v, "gpt-2");
    assert_int_equal(byoai_tokenizer_kind_of(v.t), BYOAI_TOKENIZER_BPE);
    assert_int_equal(byoai_tokenizer_n_vocab(v.t), 50257);
    assert_int_equal(byoai_token_eos(v.t), 50256);
    assert_true(byoai_token_is_eog(v.t, 50256));
    assert_false(byoai_tokenizer_adds_bos(v.t));
    vocab_close(&v);
}

/* ---- malformed vocabularies -------------------------------------------------------------- */

static void expect_load_error(byoai_gguf_writer *w, int code, const char *needle) {
    vocab v;
    byoai_error err = {0};
    int rc = vocab_from_writer(&v, w, &err);
    if (rc != code || !strstr(err.msg, needle))
        fail_msg("expected %s with '%s', got %d: %s", byoai_status_name(code), needle, rc, err.msg);
    assert_null(v.t);
    vocab_close(&v);
}

static void test_malformed(void **state) {
    (void)state;
    spec s;
    spm_spec(&s);
    gpt2_spec gs;
    byoai_gguf_writer *w;

    /* a well-formed base loads */
    vocab v;
    byoai_error err = {0};
    assert_int_equal(vocab_from_writer(&v, spm_writer(&s), &err), 0);
    vocab_close(&v);

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_arr(w, "tokenizer.ggml.scores", BYOAI_GGUF_FLOAT32, s.score, s.n - 1), 0);
    expect_load_error(w, BYOAI_EFORMAT, "tokenizer.ggml.scores");

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BYOAI_GGUF_INT32, s.type, 3), 0);
    expect_load_error(w, BYOAI_EFORMAT, "tokenizer.ggml.token_type");

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_arr_str(w, "tokenizer.ggml.scores", s.text, s.n), 0);
    expect_load_error(w, BYOAI_EFORMAT, "tokenizer.ggml.scores");

    /* a float64 score beyond float32's range has no score value */
    {
        double *sc = calloc(s.n, sizeof *sc);
        sc[7] = -5.8e199;
        w = spm_writer(&s);
        assert_int_equal(byoai_gguf_writer_set_arr(w, "tokenizer.ggml.scores", BYOAI_GGUF_FLOAT64, sc, s.n), 0);
        expect_load_error(w, BYOAI_EFORMAT, "scores[7] = -5.8e+199 is out of the range of a 32-bit float");
        free(sc);
    }

    w = spm_writer(&s);
    int32_t ints[3] = {1, 2, 3};
    assert_int_equal(byoai_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", BYOAI_GGUF_INT32, ints, 3), 0);
    expect_load_error(w, BYOAI_EFORMAT, "tokenizer.ggml.tokens");

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.tokens", "a b c"), 0);
    expect_load_error(w, BYOAI_EFORMAT, "tokenizer.ggml.tokens");

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_remove(w, "tokenizer.ggml.tokens"), 0);
    expect_load_error(w, BYOAI_EFORMAT, "tokenizer.ggml.tokens' is missing");

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s.text, 0), 0);
    expect_load_error(w, BYOAI_EFORMAT, "empty");

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)s.n), 0);
    expect_load_error(w, BYOAI_EFORMAT, "tokenizer.ggml.eos_token_id");

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.bos_token_id", "1"), 0);
    expect_load_error(w, BYOAI_EFORMAT, "tokenizer.ggml.bos_token_id");

    {
        spec s2 = s;
        s2.type[5] = 9;
        expect_load_error(spm_writer(&s2), BYOAI_EFORMAT, "token_type[5] = 9");
        s2 = s;
        s2.text[s2.n - 1] = "a"; /* "a" twice */
        expect_load_error(spm_writer(&s2), BYOAI_EFORMAT, "duplicates");
    }

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 7 == 7), 0);
    assert_int_equal(byoai_gguf_writer_set_i32(w, "tokenizer.ggml.bos_token_id", -1), 0);
    expect_load_error(w, BYOAI_EFORMAT, "add_bos_token");

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_remove(w, "tokenizer.ggml.model"), 0);
    expect_load_error(w, BYOAI_ENOTFOUND, "tokenizer.ggml.model");

    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.model", "t5"), 0);
    expect_load_error(w, BYOAI_EUNSUPPORTED, "'t5'");

    /* GPT-2: merges naming unknown tokens, without a space, missing */
    const char *bad1[] = {"\xC4\xA0 a", "zz q"};
    expect_load_error(gpt2_writer(&gs, bad1, 2), BYOAI_EFORMAT, "merges[1] = 'zz q' names 'zz'");
    const char *bad2[] = {"\xC4\xA0 a", "a \xC4\xA0", "a zz"};
    expect_load_error(gpt2_writer(&gs, bad2, 3), BYOAI_EFORMAT, "merges[2] = 'a zz' names 'zz'");
    const char *bad3[] = {"ab"};
    expect_load_error(gpt2_writer(&gs, bad3, 1), BYOAI_EFORMAT, "merges[0] = 'ab' is not two tokens");
    w = gpt2_writer(&gs, GOOD_MERGES, 2);
    assert_int_equal(byoai_gguf_writer_remove(w, "tokenizer.ggml.merges"), 0);
    expect_load_error(w, BYOAI_EFORMAT, "tokenizer.ggml.merges");
    w = gpt2_writer(&gs, GOOD_MERGES, 2);
    assert_int_equal(byoai_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true), 0);
    expect_load_error(w, BYOAI_EFORMAT, "no BOS");

    /* accepted: the misspelled separator id (any value), an unknown
     * pre-tokenizer (falls back to GPT-2's), a missing one */
    w = gpt2_writer(&gs, GOOD_MERGES, 2);
    assert_int_equal(byoai_gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", 123456), 0);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.pre", "no-such-pre"), 0);
    assert_int_equal(vocab_from_writer(&v, w, &err), 0);
    vocab_close(&v);
    w = gpt2_writer(&gs, GOOD_MERGES, 2);
    assert_int_equal(byoai_gguf_writer_remove(w, "tokenizer.ggml.pre"), 0);
    assert_int_equal(vocab_from_writer(&v, w, &err), 0);
    vocab_close(&v);
    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.seperator_token_id", "?"), 0);
    assert_int_equal(vocab_from_writer(&v, w, &err), 0);
    vocab_close(&v);

    /* an unknown tokenizer model is refused clearly, naming the ones there are */
    w = spm_writer(&s);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.model", "ugm"), 0);
    assert_int_equal(vocab_from_writer(&v, w, &err), BYOAI_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "'ugm'"));
    assert_non_null(strstr(err.msg, "WordPiece"));
    vocab_close(&v);
}

/* Every pre-tokenizer in the table compiles and splits sensibly. */
static void test_pretokenizers(void **state) {
    (void)state;
    static const char *const names[] = {"default",     "gpt2",         "llama-bpe",      "llama3", "qwen2",
                                        "smollm",      "gpt-4o",       "deepseek-llm",   "deepseek-coder",
                                        "deepseek-v3", "falcon",       "bloom",          "viking", "tekken",
                                        "dbrx",        "starcoder",    "command-r",      "stablelm2"};
    const char *text = "Hello  world's 12345 ÄÖÜ 你好 ...\n\n\tx 😀\xff";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        gpt2_spec gs;
        byoai_gguf_writer *w = gpt2_writer(&gs, GOOD_MERGES, 2);
        assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.pre", names[i]), 0);
        vocab v;
        byoai_error err = {0};
        if (vocab_from_writer(&v, w, &err)) fail_msg("pre '%s': %s", names[i], err.msg);
        check_roundtrip(v.t, text, strlen(text), false);
        vocab_close(&v);
    }
}

/* ---- scale and threads ---------------------------------------------------------------------- */

static void test_long_input(void **state) {
    (void)state;
    const char *names[] = {"llama-spm", "gpt-2"};
    size_t n = 100 * 1024;
    char *big = malloc(n);
    for (int k = 0; k < 2; k++) {
        vocab v;
        vocab_open(&v, names[k]);
        char *inp;
        size_t il;
        byoai_error err = {0};
        char rel[128];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.inp", names[k]);
        assert_int_equal(byoai_fs_read_all(tu_shared(rel), 0, &inp, &il, &err), 0);
        for (int shape = 0; shape < 3; shape++) {
            for (size_t i = 0; i < n; i++)
                big[i] = shape == 0 ? inp[i % il] : shape == 1 ? ' ' : (char)('a' + (i * 7) % 3);
            size_t nt, ol;
            double t0 = byoai_time_now();
            int32_t *ids = tok(v.t, big, n, true, true, &nt);
            double dt = byoai_time_now() - t0;
            /* a quadratic algorithm takes minutes here; a good one milliseconds
             * (the bound is loose for sanitizer builds on a busy machine) */
            if (dt > 2.0) fail_msg("%s: 100 KB (shape %d) took %.2f s", names[k], shape, dt);
            char *out = detok(v.t, ids, nt, false, true, &ol);
            assert_int_equal(ol, n);
            assert_memory_equal(out, big, n);
            free(out);
            free(ids);
        }
        free(inp);
        vocab_close(&v);
    }
    free(big);
}

/* A 150k-token, 150k-merge vocabulary (GPT-2's plus 100k made-up tokens and
 * merges) loads quickly. */
static void test_large_vocab_load(void **state) {
    (void)state;
    vocab base;
    vocab_open(&base, "gpt-2");
    const byoai_gguf_value *toks, *merges;
    byoai_error err = {0};
    assert_int_equal(byoai_gguf_get_arr(base.g, "tokenizer.ggml.tokens", BYOAI_GGUF_STRING, &toks, &err), 0);
    assert_int_equal(byoai_gguf_get_arr(base.g, "tokenizer.ggml.merges", BYOAI_GGUF_STRING, &merges, &err), 0);
    size_t nb = (size_t)toks->v.arr.count, nm0 = (size_t)merges->v.arr.count, extra = 100000;
    size_t nt = nb + extra, nm = nm0 + extra;
    char **tt = malloc(nt * sizeof *tt), **mm = malloc(nm * sizeof *mm);
    uint64_t rng = 7;
    for (size_t i = 0; i < nt; i++) {
        if (i < nb) {
            tt[i] = byoai_strndup(toks->v.arr.items[i].v.str.ptr, toks->v.arr.items[i].v.str.len);
        } else {
            tt[i] = malloc(32);
            snprintf(tt[i], 32, "\xC4\xA0zzQ%zu", i);
        }
    }
    for (size_t i = 0; i < nm; i++) {
        if (i < nm0) {
            mm[i] = byoai_strndup(merges->v.arr.items[i].v.str.ptr, merges->v.arr.items[i].v.str.len);
        } else {
            const char *a = tt[tu_rand_u64(&rng) % (nb - 1)], *b = tt[tu_rand_u64(&rng) % (nb - 1)];
            size_t la = strlen(a), lb = strlen(b);
            mm[i] = malloc(la + lb + 2);
            memcpy(mm[i], a, la);
            mm[i][la] = ' ';
            memcpy(mm[i] + la + 1, b, lb + 1);
        }
    }
    byoai_gguf_writer *w;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"), 0);
    assert_int_equal(byoai_gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2"), 0);
    assert_int_equal(byoai_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tt, nt), 0);
    assert_int_equal(byoai_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)mm, nm), 0);
    for (size_t i = 0; i < nt; i++) free(tt[i]);
    for (size_t i = 0; i < nm; i++) free(mm[i]);
    free(tt);
    free(mm);
    vocab_close(&base);

    size_t size;
    uint8_t *buf;
    byoai_gguf *g;
    assert_int_equal(byoai_gguf_writer_to_buffer(w, &buf, &size, &err), 0);
    byoai_gguf_writer_free(w);
    assert_int_equal(byoai_gguf_parse(buf, size, &g, &err), 0);
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        byoai_tokenizer *t;
        double t0 = byoai_time_now();
        if (byoai_tokenizer_load(g, &t, &err)) fail_msg("load: %s", err.msg);
        double dt = byoai_time_now() - t0;
        if (dt < best) best = dt;
        assert_int_equal(byoai_tokenizer_n_vocab(t), (int32_t)nt);
        byoai_tokenizer_free(t);
    }
    print_message("150k-token vocabulary loads in %.1f ms (this build)\n", best * 1e3);
    /* ~25 ms optimised; sanitizers cost a few times that */
    if (best > 1.0) fail_msg("150k vocabulary took %.0f ms to load", best * 1e3);
    byoai_gguf_close(g);
    free(buf);
}

typedef struct thread_arg {
    const byoai_tokenizer *t;
    const char *text;
    int32_t *ids;
    size_t n;
} thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = p;
    byoai_error err;
    for (int i = 0; i < 20; i++) {
        int32_t *ids;
        size_t n;
        if (byoai_tokenize(a->t, a->text, strlen(a->text), true, true, &ids, &n, &err)) return NULL;
        free(a->ids);
        a->ids = ids;
        a->n = n;
    }
    return p;
}

static void test_threads(void **state) {
    (void)state;
    vocab v;
    vocab_open(&v, "gpt-2");
    const char *text = "Concurrent <|endoftext|> tokenizing shares one tokenizer: 1234567 🦙 déjà vu.";
    size_t n;
    int32_t *ref = tok(v.t, text, strlen(text), true, true, &n);
    thread_arg a[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thread_arg){.t = v.t, .text = text};
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_non_null(r);
        assert_true(ids_equal(ref, n, a[i].ids, a[i].n));
        free(a[i].ids);
    }
    free(ref);
    vocab_close(&v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_llama_spm),
        cmocka_unit_test(test_vectors_gpt2),
        cmocka_unit_test(test_vectors_bert),
        cmocka_unit_test(test_wordpiece),
        cmocka_unit_test(test_roundtrip_spm),
        cmocka_unit_test(test_roundtrip_gpt2),
        cmocka_unit_test(test_special_gpt2),
        cmocka_unit_test(test_special_spm),
        cmocka_unit_test(test_synthetic_gpt2),
        cmocka_unit_test(test_special_priority),
        cmocka_unit_test(test_byte_fallback_and_pieces),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_pretokenizers),
        cmocka_unit_test(test_long_input),
        cmocka_unit_test(test_large_vocab_load),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
