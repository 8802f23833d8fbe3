/*
 * Tokenizer benchmark: load time of each shared vocabulary and the time to
 * tokenize and detokenize 100 KB of text (the test inputs, repeated).
 * Prints one JSON object. Vocabularies come from $BYOAI_SHARED/vocab
 * (default ../shared/vocab).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/tokenizer.h"

static double best_of(double a, double b) { return a < b ? a : b; }

int main(void) {
    const char *base = getenv("BYOAI_SHARED");
    if (!base) base = "../shared";
    const char *names[] = {"llama-spm", "gpt-2"};
    printf("{\"benchmark\":\"tokenizer\",\"results\":[");
    for (int k = 0; k < 2; k++) {
        char path[4096];
        byoai_error err = {0};
        byoai_gguf *g;
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", base, names[k]);
        if (byoai_gguf_open(path, &g, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        byoai_tokenizer *t = NULL;
        double load = 1e9;
        for (int rep = 0; rep < 10; rep++) {
            if (t) byoai_tokenizer_free(t);
            double t0 = byoai_time_now();
            if (byoai_tokenizer_load(g, &t, &err)) {
                fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
                return 1;
            }
            load = best_of(load, byoai_time_now() - t0);
        }
        char *inp;
        size_t il;
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf.inp", base, names[k]);
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
               k ? "," : "", names[k], byoai_tokenizer_n_vocab(t), load * 1e3, n, n_tokens, tok * 1e3,
               detok * 1e3);
        free(text);
        free(inp);
        byoai_tokenizer_free(t);
        byoai_gguf_close(g);
    }
    printf("]}\n");
    return 0;
}
