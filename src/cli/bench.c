/* byoai bench: prompt and generation speed of a model on this machine. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/model.h"
#include "byoai/quant.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai bench MODEL [--json] [-p N] [-n N] [-t N] [-r N]\n"
"\n"
"Measure how fast MODEL runs here: prompt processing (N prompt tokens\n"
"evaluated as one batch) and generation (N tokens, one at a time, greedy).\n"
"Each is repeated and the median reported; the KV cache is cleared between\n"
"repetitions. The prompt is synthetic (a run of ids), so any model works.\n"
"\n"
"Options:\n"
"      --json          print one JSON object\n"
"  -p, --prompt N      prompt tokens (default 64)\n"
"  -n, --gen N         generated tokens (default 32)\n"
"  -t, --threads N     compute threads (default: all cores)\n"
"  -r, --reps N        repetitions (default 3)\n"
"  -h, --help          show this help\n"
"\n"
"Exit status: 0 success, 1 runtime error, 2 usage error.\n");
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cli_bench(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},       {"prompt", required_argument, 0, 'p'},
                                         {"gen", required_argument, 0, 'n'},  {"threads", required_argument, 0, 't'},
                                         {"reps", required_argument, 0, 'r'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bool json = false;
    long long n_prompt = 64, n_gen = 32, threads = 0, reps = 3;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":p:n:t:r:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'p': if (!cli_parse_int("bench", "--prompt", optarg, 1, 8192, &n_prompt)) return CLI_USAGE; break;
        case 'n': if (!cli_parse_int("bench", "--gen", optarg, 1, 8192, &n_gen)) return CLI_USAGE; break;
        case 't': if (!cli_parse_int("bench", "--threads", optarg, 1, 512, &threads)) return CLI_USAGE; break;
        case 'r': if (!cli_parse_int("bench", "--reps", optarg, 1, 100, &reps)) return CLI_USAGE; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("bench", c, opts, argv);
        }
    }
    if (argc - optind != 1) return cli_usage_error("bench", "expected one MODEL");
    char path[4096];
    if (!cli_resolve_model("bench", argv[optind], path, sizeof path)) return CLI_ERROR;
    byoai_error err = {0};
    double t0 = byoai_time_now();
    byoai_model *m;
    if (cli_load_model("bench", path, &m, &err)) return cli_fail("bench", &err);
    const byoai_hparams *hp = byoai_model_hparams(m);
    byoai_context_params cp = {.n_ctx = (uint32_t)(n_prompt + n_gen + 8), .n_threads = (int)threads,
                               .n_batch = (uint32_t)n_prompt};
    byoai_context *ctx;
    if (byoai_context_new(m, &cp, &ctx, &err)) {
        byoai_model_free(m);
        return cli_fail("bench", &err);
    }
    double load_s = byoai_time_now() - t0;
    int32_t *prompt = malloc((size_t)n_prompt * sizeof(int32_t));
    for (long long i = 0; i < n_prompt; i++) prompt[i] = (int32_t)((hp->n_vocab / 3 + (uint32_t)i * 7) % hp->n_vocab);
    double *pp = calloc((size_t)reps, sizeof(double)), *tg = calloc((size_t)reps, sizeof(double));
    int rc = CLI_OK;
    for (long long r = 0; r < reps && rc == CLI_OK; r++) {
        byoai_kv_truncate(ctx, 0, 0);
        byoai_batch b = {.n_tokens = (uint32_t)n_prompt, .tokens = prompt};
        double a = byoai_time_now();
        if (byoai_decode(ctx, &b, &err)) { rc = cli_fail("bench", &err); break; }
        pp[r] = (double)n_prompt / (byoai_time_now() - a);
        a = byoai_time_now();
        for (long long i = 0; i < n_gen; i++) {
            const float *lg = byoai_get_output(ctx, 0);
            int32_t best = 0;
            for (uint32_t v = 1; v < hp->n_vocab; v++) if (lg[v] > lg[best]) best = (int32_t)v;
            byoai_batch b1 = {.n_tokens = 1, .tokens = &best};
            if (byoai_decode(ctx, &b1, &err)) { rc = cli_fail("bench", &err); break; }
        }
        tg[r] = (double)n_gen / (byoai_time_now() - a);
    }
    if (rc == CLI_OK) {
        json_t *pps = json_array(), *tgs = json_array();
        for (long long r = 0; r < reps; r++) {
            json_array_append_new(pps, json_real(pp[r]));
            json_array_append_new(tgs, json_real(tg[r]));
        }
        qsort(pp, (size_t)reps, sizeof(double), cmp_d);
        qsort(tg, (size_t)reps, sizeof(double), cmp_d);
        byoai_model_info info;
        byoai_model_describe(byoai_model_gguf(m), 0, &info, &err);
        int nt = threads ? (int)threads : byoai_cpu_count();
        if (json) {
            json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:i,s:s,s:f,s:I,s:I,s:I,s:f,s:f}", "model", path, "file_type",
                                  info.file_type, "weight_bytes", (json_int_t)info.weight_bytes, "parameters",
                                  (json_int_t)info.n_params, "threads", nt, "kernels", byoai_kernels_best()->name,
                                  "load_seconds", load_s, "prompt_tokens", (json_int_t)n_prompt, "gen_tokens",
                                  (json_int_t)n_gen, "reps", (json_int_t)reps, "prompt_tokens_per_second",
                                  pp[reps / 2], "gen_tokens_per_second", tg[reps / 2]);
            json_object_set(o, "prompt_samples", pps);
            json_object_set(o, "gen_samples", tgs);
            json_object_set_new(o, "packed", json_boolean(byoai_model_packed(m)));
            json_dumpf(o, stdout, JSON_COMPACT);
            printf("\n");
            json_decref(o);
        } else {
            printf("model:       %s (%s, %s kernels%s, %d threads)\n", path, info.file_type, byoai_kernels_best()->name,
                   byoai_model_packed(m) ? ", packed" : "", nt);
            printf("prompt:      %.1f tokens/s (%lld tokens, median of %lld)\n", pp[reps / 2], n_prompt, reps);
            printf("generation:  %.1f tokens/s (%lld tokens, median of %lld)\n", tg[reps / 2], n_gen, reps);
        }
        json_decref(pps);
        json_decref(tgs);
    }
    free(pp);
    free(tg);
    free(prompt);
    byoai_context_free(ctx);
    byoai_model_free(m);
    return rc;
}
