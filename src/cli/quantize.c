/* byoai quantize: convert a model to another tensor type or mix. */
#include <string.h>
#include <unistd.h>

#include "byoai/quant.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai quantize IN.gguf OUT.gguf TYPE [--threads N] [--allow-requantize]\n"
"\n"
"Convert a model to smaller (or larger) weights for the machine at hand.\n"
"TYPE is a tensor type or one of the mixes llama.cpp users know:\n"
"\n"
"  %s\n"
"\n"
"A mix gives a few sensitive tensors more bits: the output matrix gets Q6_K\n"
"(except for F32/F16/BF16/Q8_0/Q6_K), and in Q4_K_M / Q5_K_M the attention\n"
"value and feed-forward down matrices of the first and last eighth of the\n"
"layers and every third layer between get Q6_K. Norms and biases stay F32.\n"
"Rows that do not divide into a type's blocks fall back to a compatible type.\n"
"KEEP converts nothing: every tensor keeps its type, and the file is written\n"
"again with its tensors aligned (for files with a general.alignment below 8,\n"
"which byoai cannot run in place).\n"
"The output is written atomically and is read by byoai and llama.cpp.\n"
"\n"
"Options:\n"
"  -t, --threads N        threads (default: all cores)\n"
"      --allow-requantize convert tensors that are already quantized (loses\n"
"                         accuracy; better start from F16/BF16/F32)\n"
"  -q, --quiet            no progress output\n"
"  -h, --help             show this help\n"
"\n"
"Exit status: 0 success, 1 runtime error, 2 usage error.\n", byoai_quantize_mix_names());
}

typedef struct {
    bool tty, quiet;
    double t0;
} prog;

static void on_progress(void *user, uint64_t done, uint64_t total, const char *tensor, const char *type) {
    prog *p = user;
    if (p->quiet) return;
    if (p->tty) {
        int width = 30, filled = (int)(width * done / (total ? total : 1));
        fprintf(stderr, "\r[%.*s%*s] %3llu/%llu %-28.28s %-6s %5.1fs", filled, "##############################",
                width - filled, "", (unsigned long long)done, (unsigned long long)total, tensor, type,
                byoai_time_now() - p->t0);
        if (done == total) fputc('\n', stderr);
    } else {
        fprintf(stderr, "byoai quantize: %llu/%llu %s -> %s\n", (unsigned long long)done, (unsigned long long)total,
                tensor, type);
    }
}

int cli_quantize(int argc, char **argv) {
    static const struct option opts[] = {{"threads", required_argument, 0, 't'}, {"allow-requantize", no_argument, 0, 'a'},
                                         {"quiet", no_argument, 0, 'q'},         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    long long threads = 0;
    bool requant = false, quiet = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 't': if (!cli_parse_int("quantize", "--threads", optarg, 1, 512, &threads)) return CLI_USAGE; break;
        case 'a': requant = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("quantize", c, opts, argv);
        }
    }
    if (argc - optind != 3) return cli_usage_error("quantize", "expected IN.gguf OUT.gguf TYPE");
    const char *in = argv[optind], *out = argv[optind + 1], *type = argv[optind + 2];
    char path[4096];
    if (!cli_resolve_model("quantize", in, path, sizeof path)) return CLI_ERROR;
    if (!strcmp(path, out)) return cli_usage_error("quantize", "OUT must differ from IN");
    prog pr = {.tty = isatty(2), .quiet = quiet, .t0 = byoai_time_now()};
    byoai_quantize_params qp = {.target = type, .n_threads = (int)threads, .allow_requantize = requant,
                                .progress = on_progress, .user = &pr};
    byoai_error err = {0};
    if (byoai_quantize_file(path, out, &qp, &err)) {
        if (err.code == BYOAI_EINVAL && strstr(err.msg, "unknown target")) {
            fprintf(stderr, "byoai quantize: %s\n", err.msg);
            return CLI_USAGE;
        }
        return cli_fail("quantize", &err);
    }
    if (!quiet) fprintf(stderr, "byoai quantize: wrote %s (%s) in %.1f s\n", out, type, byoai_time_now() - pr.t0);
    return CLI_OK;
}
