/*
 * Prompt and generation speed of a model file, as JSON:
 *   bench_generate MODEL [--prompt N] [--gen N] [--threads N] [--reps N]
 * The prompt is N copies of a mid-vocabulary token after BOS, evaluated as
 * one batch; generation is greedy, one token per step. Reports the median
 * over --reps runs (default 3).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/model.h"
#include "byoai/quant.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_generate MODEL [--prompt N] [--gen N] [--threads N] [--reps N]\n");
        return 2;
    }
    int n_prompt = 64, n_gen = 32, threads = 0, reps = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--prompt")) n_prompt = v;
        else if (!strcmp(argv[i], "--gen")) n_gen = v;
        else if (!strcmp(argv[i], "--threads")) threads = v;
        else if (!strcmp(argv[i], "--reps")) reps = v;
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (n_prompt < 1 || n_gen < 1 || reps < 1 || reps > 100) { fprintf(stderr, "bad numbers\n"); return 2; }
    byoai_error err;
    double t0 = byoai_time_now();
    byoai_model *m;
    if (byoai_model_load(argv[1], NULL, &m, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    const byoai_hparams *hp = byoai_model_hparams(m);
    byoai_context_params cp = {.n_ctx = (uint32_t)(n_prompt + n_gen + 8), .n_threads = threads,
                               .n_batch = (uint32_t)n_prompt + 1};
    byoai_context *c;
    if (byoai_context_new(m, &cp, &c, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    double load_s = byoai_time_now() - t0;
    int32_t *prompt = malloc((size_t)(n_prompt + 1) * sizeof(int32_t));
    prompt[0] = 1;
    for (int i = 1; i <= n_prompt; i++) prompt[i] = (int32_t)(hp->n_vocab / 2 + (uint32_t)i) % (int32_t)hp->n_vocab;
    double pp[100], tg[100];
    for (int r = 0; r < reps; r++) {
        byoai_kv_truncate(c, 0, 0);
        byoai_batch b = {.n_tokens = (uint32_t)n_prompt, .tokens = prompt};
        double a = byoai_time_now();
        if (byoai_decode(c, &b, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        pp[r] = n_prompt / (byoai_time_now() - a);
        a = byoai_time_now();
        for (int i = 0; i < n_gen; i++) {
            const float *lg = byoai_get_output(c, 0);
            int32_t best = 0;
            for (uint32_t v = 1; v < hp->n_vocab; v++) if (lg[v] > lg[best]) best = (int32_t)v;
            byoai_batch b1 = {.n_tokens = 1, .tokens = &best};
            if (byoai_decode(c, &b1, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        }
        tg[r] = n_gen / (byoai_time_now() - a);
    }
    qsort(pp, (size_t)reps, sizeof(double), cmp);
    qsort(tg, (size_t)reps, sizeof(double), cmp);
    byoai_model_info info;
    byoai_model_describe(byoai_model_gguf(m), 0, &info, &err);
    printf("{\"model\": \"%s\", \"file_type\": \"%s\", \"weight_bytes\": %llu, \"threads\": %d, \"kernels\": \"%s\", "
           "\"load_seconds\": %.3f, \"prompt_tokens\": %d, \"gen_tokens\": %d, \"reps\": %d, "
           "\"prompt_tokens_per_second\": %.2f, \"gen_tokens_per_second\": %.2f}\n",
           argv[1], info.file_type, (unsigned long long)info.weight_bytes,
           threads ? threads : byoai_cpu_count(), byoai_kernels_best()->name, load_s, n_prompt, n_gen, reps,
           pp[reps / 2], tg[reps / 2]);
    free(prompt);
    byoai_context_free(c);
    byoai_model_free(m);
    return 0;
}
