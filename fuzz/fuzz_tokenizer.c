/*
 * libFuzzer target for the tokenizer.
 *
 * Every input is tokenized and detokenized with the llama-spm, gpt-2 and
 * bert-bge (WordPiece: valid ids only, it is lossy) vocabularies from
 * ../shared/vocab (or $BYOAI_SHARED/vocab), with parse_special off or on
 * (bit 2 of the first byte), and must come back byte for byte wherever the
 * algorithm promises it:
 *  - GPT-2 byte-level BPE: always (even invalid UTF-8 keeps its bytes).
 *  - SentencePiece: for valid UTF-8 without U+2581 (which stands for the
 *    space), with parse_special off (a special token makes the next text
 *    start with a prefix space), unless the merges formed a control or
 *    unknown token (llama.cpp's merges may; such a token prints nothing).
 * Inputs that start with "GGUF" are instead parsed as a GGUF file and, when
 * that works, loaded as a tokenizer: any metadata must load or fail cleanly.
 *
 *   BYOAI_SHARED=/path/to/shared ./fuzz_tokenizer -max_total_time=60
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"
#include "byoai/tokenizer.h"

typedef struct loaded {
    byoai_gguf *g;
    byoai_tokenizer *t;
} loaded;

static loaded load(const char *name) {
    const char *base = getenv("BYOAI_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", base ? base : "../shared", name);
    loaded l = {0};
    byoai_error err = {0};
    if (byoai_gguf_open(path, &l.g, &err) || byoai_tokenizer_load(l.g, &l.t, &err)) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s (set BYOAI_SHARED)\n", path, err.msg);
        abort();
    }
    return l;
}

static bool has_escaped_space(const uint8_t *d, size_t n) {
    for (size_t i = 0; i + 2 < n; i++)
        if (d[i] == 0xE2 && d[i + 1] == 0x96 && d[i + 2] == 0x81) return true;
    return false;
}

/* Every id must be in range; the pieces of the first few (the code is the
 * same for all, and checking every one was a fifth of the run time) must
 * print within a short buffer and report their full length. */
static void check_pieces(const byoai_tokenizer *t, const int32_t *ids, size_t n) {
    char small[3];
    int32_t n_vocab = byoai_tokenizer_n_vocab(t);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) abort();
    for (size_t i = 0; i < n && i < 64; i++) {
        /* a short buffer is never overrun (ASan would tell) and the full
         * length is reported */
        int a = byoai_token_to_piece(t, ids[i], small, sizeof small, true);
        int b = byoai_token_to_piece(t, ids[i], NULL, 0, true);
        if (a < 0 || a != b) abort();
    }
}

/* True when a token prints only with render_special (control, unknown). */
static bool has_hidden(const byoai_tokenizer *t, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (byoai_token_to_piece(t, ids[i], NULL, 0, false) == 0 && byoai_token_to_piece(t, ids[i], NULL, 0, true) > 0)
            return true;
    return false;
}

/* WordPiece is lossy (lower-casing, accents, spaces): any input must
 * tokenize into valid ids whose pieces print, nothing more */
static void run_lossy(const byoai_tokenizer *t, const uint8_t *data, size_t size) {
    int32_t *ids;
    size_t n;
    byoai_error err = {0};
    if (byoai_tokenize(t, (const char *)data, size, size && (data[0] & 1), size && (data[0] & 2), &ids, &n, &err)) {
        fprintf(stderr, "tokenize failed: %s\n", err.msg);
        abort();
    }
    check_pieces(t, ids, n);
    char *text;
    if (byoai_detokenize(t, ids, n, true, true, &text, NULL, &err)) abort();
    free(text);
    free(ids);
}

static void run(const byoai_tokenizer *t, const uint8_t *data, size_t size, bool spm) {
    bool valid = byoai_utf8_valid((const char *)data, size);
    /* parse_special off or on, as the first byte says (both, each time,
     * doubled the cost of an input for no coverage the fuzzer cannot reach) */
    const int ps_only = size && (data[0] & 4) ? 1 : 0;
    for (int ps = ps_only; ps <= ps_only; ps++) {
        int32_t *ids;
        size_t n;
        byoai_error err = {0};
        bool add_special = size && (data[0] & 1);
        if (byoai_tokenize(t, (const char *)data, size, add_special, ps, &ids, &n, &err)) {
            fprintf(stderr, "tokenize failed: %s\n", err.msg);
            abort();
        }
        check_pieces(t, ids, n);
        char *plain, *rendered;
        size_t pl, rl;
        if (byoai_detokenize(t, ids, n, false, true, &plain, &pl, &err) ||
            byoai_detokenize(t, ids, n, true, true, &rendered, &rl, &err)) {
            fprintf(stderr, "detokenize failed: %s\n", err.msg);
            abort();
        }
        /* the BOS that add_special may put first prints nothing, as intended */
        size_t skip = add_special && n && ids[0] == byoai_token_bos(t) ? 1 : 0;
        bool expect;
        const char *got = ps ? rendered : plain;
        size_t gl = ps ? rl : pl;
        if (spm) expect = valid && !ps && !has_escaped_space(data, size) && !has_hidden(t, ids + skip, n - skip);
        else expect = true;
        if (expect && (gl != size || memcmp(got, data, size))) {
            fprintf(stderr, "%s round trip differs (parse_special=%d): %zu bytes in, %zu out\n", spm ? "spm" : "gpt2",
                    ps, size, gl);
            abort();
        }
        free(plain);
        free(rendered);
        free(ids);
    }
}

static void try_as_gguf(const uint8_t *data, size_t size) {
    if (size < 4 || memcmp(data, "GGUF", 4)) return;
    byoai_gguf *g;
    byoai_tokenizer *t;
    byoai_error err = {0};
    if (byoai_gguf_parse(data, size, &g, &err)) return;
    if (byoai_tokenizer_load(g, &t, &err) == 0) {
        const char *s = "Hello <|endoftext|> wörld 123 \xF0\x9F\xA6\x99\n";
        int32_t *ids;
        size_t n;
        if (byoai_tokenize(t, s, strlen(s), true, true, &ids, &n, &err)) abort();
        check_pieces(t, ids, n);
        char *out;
        if (byoai_detokenize(t, ids, n, true, true, &out, NULL, &err)) abort();
        free(out);
        free(ids);
        byoai_tokenizer_free(t);
    } else if (err.code == 0 || !err.msg[0]) {
        abort(); /* a failure must say why */
    }
    byoai_gguf_close(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static loaded spm, gpt2, wpm;
    if (!spm.t) {
        byoai_log_set_level(BYOAI_LOG_ERROR); /* unknown-pre warnings from GGUF inputs are expected */
        spm = load("llama-spm");
        gpt2 = load("gpt-2");
        wpm = load("bert-bge");
    }
    if (size >= 4 && !memcmp(data, "GGUF", 4)) { /* a vocabulary, not a text */
        try_as_gguf(data, size);
        return 0;
    }
    run(spm.t, data, size, true);
    run(gpt2.t, data, size, false);
    run_lossy(wpm.t, data, size);
    return 0;
}
