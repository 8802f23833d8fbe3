/*
 * Tokenizer benchmark: load time of each shared vocabulary, the time to
 * tokenize and detokenize 100 KB of text (the test inputs, repeated), and
 * the time to tokenize 1 MB of each pathological shape (long runs without
 * spaces, runs of one byte, byte fallback, many special tokens...), which
 * must stay linear. Prints one JSON object. Vocabularies come from
 * $BYOAI_SHARED/vocab (default ../shared/vocab).
 *
 *   bench_tokenizer            everything
 *   bench_tokenizer --shapes   only the pathological shapes
 *   BENCH_SHAPE_BYTES=N        size of each shape's text (default 1 MiB)
 *   BENCH_VOCAB=name           the shapes with this vocabulary only
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "byoai/gguf.h"
#include "byoai/tokenizer.h"

static double best_of(double a, double b) { return a < b ? a : b; }

/* CPU time of this process: on a shared machine it moves less than the
 * wall clock when other work competes for the cores */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Fill text[0..n) by repeating unit (cut to a whole number of units). */
static size_t repeat(char *text, size_t n, const char *unit, size_t ul) {
    size_t o = 0;
    while (o + ul <= n) {
        memcpy(text + o, unit, ul);
        o += ul;
    }
    return o;
}

/* The shapes: each writes at most n bytes and returns how many. */
typedef size_t (*shape_fn)(char *text, size_t n);

static size_t sh_one_letter(char *t, size_t n) { return repeat(t, n, "a", 1); }
static size_t sh_one_space(char *t, size_t n) { return repeat(t, n, " ", 1); }
static size_t sh_one_newline(char *t, size_t n) { return repeat(t, n, "\n", 1); }
static size_t sh_one_digit(char *t, size_t n) { return repeat(t, n, "7", 1); }
static size_t sh_one_punct(char *t, size_t n) { return repeat(t, n, "!", 1); }
static size_t sh_invalid_byte(char *t, size_t n) { return repeat(t, n, "\x80", 1); }
static size_t sh_nul_byte(char *t, size_t n) {
    memset(t, 0, n);
    return n;
}
static size_t sh_letters_no_space(char *t, size_t n) {
    for (size_t i = 0; i < n; i++) t[i] = (char)('a' + next_rand() % 26);
    return n;
}
static size_t sh_word_no_space(char *t, size_t n) { return repeat(t, n, "tokenization", 12); }
static size_t sh_mixed_case(char *t, size_t n) {
    for (size_t i = 0; i < n; i++) t[i] = (char)((next_rand() & 1 ? 'A' : 'a') + next_rand() % 26);
    return n;
}
static size_t sh_spaces_then_word(char *t, size_t n) {
    /* long whitespace runs that end in a non-space (lookahead regexes) */
    size_t o = 0;
    while (o + 1002 <= n) {
        memset(t + o, ' ', 1000);
        memcpy(t + o + 1000, "ab", 2);
        o += 1002;
    }
    return o;
}
static size_t sh_tabs_newlines(char *t, size_t n) { return repeat(t, n, " \t\r\n", 4); }
static size_t sh_random_bytes(char *t, size_t n) {
    for (size_t i = 0; i < n; i++) t[i] = (char)next_rand();
    return n;
}
static size_t sh_rare_chars(char *t, size_t n) {
    /* CJK ideographs and emoji: few are in the vocabularies, so byte fallback */
    size_t o = 0;
    while (o + 4 <= n) {
        uint32_t cp = next_rand() & 1 ? 0x4E00 + next_rand() % 20000 : 0x1F300 + next_rand() % 700;
        o += (size_t)byoai_utf8_encode(cp, t + o);
    }
    return o;
}
static size_t sh_combining(char *t, size_t n) { return repeat(t, n, "\xCC\x81", 2); } /* U+0301 */
static size_t sh_specials(char *t, size_t n) { return repeat(t, n, "<s></s><unk><|endoftext|>[CLS][SEP]", 36); }
static size_t sh_near_specials(char *t, size_t n) { return repeat(t, n, "<|endoftex</s[CL", 16); }
static size_t sh_many_specials(char *t, size_t n) {
    /* distinct special tokens (bert-bge has ~1000 [unusedN]) */
    size_t o = 0;
    for (int k = 0;; k = (k + 1) % 994) {
        char u[32];
        int l = snprintf(u, sizeof u, "[unused%d]x", k);
        if (o + (size_t)l > n) break;
        memcpy(t + o, u, (size_t)l);
        o += (size_t)l;
    }
    return o;
}
static size_t sh_reserved_specials(char *t, size_t n) {
    /* the synthetic vocabulary's 4000 control tokens, cycled */
    size_t o = 0;
    for (int k = 0;; k = (k + 1) % 4000) {
        char u[40];
        int l = snprintf(u, sizeof u, "<|reserved_%d|>ab", k);
        if (o + (size_t)l > n) break;
        memcpy(t + o, u, (size_t)l);
        o += (size_t)l;
    }
    return o;
}
static size_t sh_prose(char *t, size_t n) {
    return repeat(t, n, "The quick brown fox jumps over the lazy dog, again and again. ", 62);
}

static const struct {
    const char *name;
    shape_fn fn;
} SHAPES[] = {
    {"one_letter", sh_one_letter},       {"one_space", sh_one_space},
    {"one_newline", sh_one_newline},     {"one_digit", sh_one_digit},
    {"one_punct", sh_one_punct},         {"invalid_byte", sh_invalid_byte},
    {"nul_byte", sh_nul_byte},           {"letters_no_space", sh_letters_no_space},
    {"word_no_space", sh_word_no_space}, {"mixed_case_no_space", sh_mixed_case},
    {"spaces_then_word", sh_spaces_then_word}, {"tabs_newlines", sh_tabs_newlines},
    {"random_bytes", sh_random_bytes},   {"rare_chars", sh_rare_chars},
    {"combining_marks", sh_combining},   {"specials", sh_specials},
    {"near_specials", sh_near_specials}, {"many_specials", sh_many_specials},
    {"reserved_specials", sh_reserved_specials}, {"prose", sh_prose},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])
#define N_VOCABS 4
/* the last one is made here: llama-spm plus 4000 control tokens
 * "<|reserved_N|>", user-defined tokens of 1 to 32 newlines (specials that
 * are prefixes of each other) and one of 200 letters 'a' (a deep trie) */
static const char *VOCABS[N_VOCABS] = {"llama-spm", "gpt-2", "bert-bge", "llama-spm+specials"};
#define N_EXTRA (4000 + 32 + 1)

static int make_specials_vocab(const char *base, byoai_gguf **out, uint8_t **image) {
    char path[4096];
    byoai_error err = {0};
    byoai_gguf *g;
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-llama-spm.gguf", base);
    if (byoai_gguf_open(path, &g, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    const byoai_gguf_value *toks, *scores, *types;
    if (byoai_gguf_get_arr(g, "tokenizer.ggml.tokens", BYOAI_GGUF_STRING, &toks, &err) ||
        byoai_gguf_get_arr(g, "tokenizer.ggml.scores", BYOAI_GGUF_FLOAT32, &scores, &err) ||
        byoai_gguf_get_arr(g, "tokenizer.ggml.token_type", BYOAI_GGUF_INT32, &types, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    size_t n0 = (size_t)toks->v.arr.count, n = n0 + N_EXTRA;
    char **text = calloc(n, sizeof *text);
    float *score = calloc(n, sizeof *score);
    int32_t *type = calloc(n, sizeof *type);
    for (size_t i = 0; i < n0; i++) {
        text[i] = strndup(toks->v.arr.items[i].v.str.ptr, (size_t)toks->v.arr.items[i].v.str.len);
        score[i] = (float)byoai_gguf_arr_f64(scores, i);
        type[i] = (int32_t)byoai_gguf_arr_f64(types, i);
    }
    size_t k = n0;
    for (int i = 0; i < 4000; i++, k++) {
        text[k] = malloc(32);
        snprintf(text[k], 32, "<|reserved_%d|>", i);
        type[k] = BYOAI_TOKEN_CONTROL;
    }
    for (int i = 1; i <= 32; i++, k++) {
        text[k] = calloc(1, (size_t)i + 1);
        memset(text[k], '\n', (size_t)i);
        type[k] = BYOAI_TOKEN_USER_DEFINED;
    }
    text[k] = calloc(1, 201);
    memset(text[k], 'a', 200);
    type[k++] = BYOAI_TOKEN_USER_DEFINED;
    byoai_gguf_writer *w;
    size_t size;
    int rc = byoai_gguf_writer_new(&w, &err);
    for (uint64_t i = 0; !rc && i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, "tokenizer.ggml.tokens") && strcmp(g->kv[i].key, "tokenizer.ggml.scores") &&
            strcmp(g->kv[i].key, "tokenizer.ggml.token_type"))
            rc = byoai_gguf_writer_set_value(w, g->kv[i].key, &g->kv[i].value);
    if (!rc) rc = byoai_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)text, n);
    if (!rc) rc = byoai_gguf_writer_set_arr(w, "tokenizer.ggml.scores", BYOAI_GGUF_FLOAT32, score, n);
    if (!rc) rc = byoai_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", BYOAI_GGUF_INT32, type, n);
    if (!rc) rc = byoai_gguf_writer_to_buffer(w, image, &size, &err);
    if (!rc) rc = byoai_gguf_parse(*image, size, out, &err);
    if (rc) fprintf(stderr, "bench_tokenizer: cannot make the synthetic vocabulary: %s\n", err.msg);
    byoai_gguf_writer_free(w);
    for (size_t i = 0; i < n; i++) free(text[i]);
    free(text);
    free(score);
    free(type);
    byoai_gguf_close(g);
    return rc != 0;
}

static int open_vocab(const char *base, const char *name, byoai_gguf **g, byoai_tokenizer **t, double *load_s,
                      uint8_t **image) {
    char path[4096];
    byoai_error err = {0};
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", base, name);
    *image = NULL;
    if (strchr(name, '+')) {
        if (make_specials_vocab(base, g, image)) return 1;
    } else if (byoai_gguf_open(path, g, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    *t = NULL;
    double load = 1e9;
    for (int rep = 0; rep < (load_s ? 10 : 1); rep++) {
        if (*t) byoai_tokenizer_free(*t);
        double t0 = byoai_time_now();
        if (byoai_tokenizer_load(*g, t, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        load = best_of(load, byoai_time_now() - t0);
    }
    if (load_s) *load_s = load;
    return 0;
}

static int bench_text(const char *base) {
    printf("\"results\":[");
    for (int k = 0; k < 2; k++) {
        char path[4096];
        byoai_error err = {0};
        byoai_gguf *g;
        byoai_tokenizer *t;
        double load;
        uint8_t *image;
        if (open_vocab(base, VOCABS[k], &g, &t, &load, &image)) return 1;
        char *inp;
        size_t il;
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf.inp", base, VOCABS[k]);
        if (byoai_fs_read_all(path, 0, &inp, &il, &err) || il == 0) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        size_t n = 100 * 1024;
        char *text = malloc(n);
        for (size_t i = 0; i < n; i++) text[i] = inp[i % il];
        double tok = 1e9, detok = 1e9;
        size_t n_tokens = 0;
        for (int rep = 0; rep < 5; rep++) {
            int32_t *ids;
            char *out;
            double t0 = byoai_time_now();
            if (byoai_tokenize(t, text, n, true, true, &ids, &n_tokens, &err)) return 1;
            double t1 = byoai_time_now();
            if (byoai_detokenize(t, ids, n_tokens, true, true, &out, NULL, &err)) return 1;
            double t2 = byoai_time_now();
            tok = best_of(tok, t1 - t0);
            detok = best_of(detok, t2 - t1);
            free(ids);
            free(out);
        }
        printf("%s{\"vocab\":\"%s\",\"n_vocab\":%d,\"load_ms\":%.3f,\"text_bytes\":%zu,\"tokens\":%zu,"
               "\"tokenize_ms\":%.3f,\"detokenize_ms\":%.3f}",
               k ? "," : "", VOCABS[k], byoai_tokenizer_n_vocab(t), load * 1e3, n, n_tokens, tok * 1e3,
               detok * 1e3);
        free(text);
        free(inp);
        byoai_tokenizer_free(t);
        byoai_gguf_close(g);
        free(image);
    }
    printf("]");
    return 0;
}

static int bench_shapes(const char *base) {
    const char *env = getenv("BENCH_SHAPE_BYTES");
    size_t cap = env ? (size_t)strtoull(env, NULL, 10) : 1u << 20;
    char *text = malloc(cap ? cap : 1);
    if (!text) return 1;
    printf("\"shapes\":{\"bytes\":%zu,\"results\":[", cap);
    bool first = true;
    const char *only = getenv("BENCH_VOCAB");
    for (int k = 0; k < N_VOCABS; k++) {
        if (only && strcmp(only, VOCABS[k])) continue;
        byoai_gguf *g;
        byoai_tokenizer *t;
        uint8_t *image;
        if (open_vocab(base, VOCABS[k], &g, &t, NULL, &image)) return 1;
        for (size_t s = 0; s < N_SHAPES; s++) {
            size_t n = SHAPES[s].fn(text, cap);
            double best = 1e9, best_cpu = 1e9;
            size_t n_tokens = 0;
            uint64_t hash = 0;
            for (int rep = 0; rep < 3; rep++) {
                int32_t *ids;
                byoai_error err = {0};
                double t0 = byoai_time_now(), c0 = cpu_now();
                if (byoai_tokenize(t, text, n, false, true, &ids, &n_tokens, &err)) {
                    fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
                    return 1;
                }
                double dt = byoai_time_now() - t0;
                best = best_of(best, dt);
                best_cpu = best_of(best_cpu, cpu_now() - c0);
                hash = 0xCBF29CE484222325ull; /* FNV-1a of the ids: equal output, equal hash */
                for (size_t i = 0; i < n_tokens; i++) hash = (hash ^ (uint32_t)ids[i]) * 0x100000001B3ull;
                free(ids);
                if (dt > 5) break; /* one slow sample says enough */
            }
            printf("%s{\"vocab\":\"%s\",\"shape\":\"%s\",\"bytes\":%zu,\"tokens\":%zu,\"ids_fnv\":\"%016llx\","
                   "\"tokenize_ms\":%.1f,\"cpu_ms\":%.1f}",
                   first ? "" : ",", VOCABS[k], SHAPES[s].name, n, n_tokens, (unsigned long long)hash, best * 1e3,
                   best_cpu * 1e3);
            fprintf(stderr, "bench_tokenizer: %-18s %-20s %8.1f ms (cpu %.1f ms)\n", VOCABS[k], SHAPES[s].name,
                    best * 1e3, best_cpu * 1e3);
            first = false;
            fflush(stdout);
        }
        byoai_tokenizer_free(t);
        byoai_gguf_close(g);
        free(image);
    }
    printf("]}");
    free(text);
    return 0;
}

int main(int argc, char **argv) {
    const char *base = getenv("BYOAI_SHARED");
    if (!base) base = "../shared";
    bool shapes_only = argc > 1 && !strcmp(argv[1], "--shapes");
    printf("{\"benchmark\":\"tokenizer\",");
    if (!shapes_only) {
        if (bench_text(base)) return 1;
        printf(",");
    }
    if (bench_shapes(base)) return 1;
    printf("}\n");
    return 0;
}
