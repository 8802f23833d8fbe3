/* byoai hw: this machine's CPU, memory and measured memory bandwidth. */
#include <jansson.h>
#include <string.h>

#include "byoai/gguf.h"
#include "byoai/hw.h"
#include "byoai/quant.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai hw [--json] [--threads N] [--model FILE | --model-size BYTES]\n"
"\n"
"Show the CPU model, cores, SIMD features and kernels byoai uses, total and\n"
"available RAM, and the measured memory read bandwidth. Generating a token\n"
"reads every weight of the model once, so bandwidth / model size is the\n"
"ceiling for generation speed; byoai hw prints that ceiling for a few common\n"
"model sizes, or for the given model.\n"
"\n"
"Options:\n"
"      --json              print one JSON object\n"
"  -t, --threads N         threads for the bandwidth probe (default: all cores)\n"
"      --model FILE        print the ceiling for this GGUF file's weights\n"
"      --model-size BYTES  print the ceiling for a model of this many bytes\n"
"  -h, --help              show this help\n"
"\n"
"The probe reads a 1 GiB buffer 5 times and reports the median; it takes\n"
"about a second. Exit status: 0 success, 1 runtime error, 2 usage error.\n");
}

int cli_hw(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},         {"threads", required_argument, 0, 't'},
                                         {"model", required_argument, 0, 'm'},  {"model-size", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    bool json = false;
    long long threads = 0, size = 0;
    const char *model = NULL;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 't': if (!cli_parse_int("hw", "--threads", optarg, 1, 512, &threads)) return CLI_USAGE; break;
        case 'm': model = optarg; break;
        case 's': if (!cli_parse_int("hw", "--model-size", optarg, 1, 1ll << 50, &size)) return CLI_USAGE; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("hw", c, opts, argv);
        }
    }
    if (optind < argc) return cli_usage_error("hw", "unexpected argument '%s'", argv[optind]);
    if (model) {
        char path[4096];
        if (!cli_resolve_model("hw", model, path, sizeof path)) return CLI_ERROR;
        byoai_gguf *g;
        byoai_error err = {0};
        if (byoai_gguf_open(path, &g, &err)) return cli_fail("hw", &err);
        for (uint64_t i = 0; i < g->n_tensors; i++) size += (long long)g->tensors[i].size;
        byoai_gguf_close(g);
    }
    byoai_hw_info hw;
    byoai_hw_get(&hw);
    int nt = threads ? (int)threads : hw.cores;
    double bw = byoai_hw_read_bandwidth(nt, 1ull << 30, 5);
    if (bw <= 0) {
        fprintf(stderr, "byoai hw: error: cannot allocate 1 GiB for the bandwidth probe\n");
        return CLI_ERROR;
    }
    const uint64_t sizes[] = {500000000ull, 1000000000ull, 4000000000ull, 8000000000ull};
    if (json) {
        json_t *o = json_pack("{s:s,s:i,s:s,s:s,s:I,s:I,s:i,s:f}", "cpu", hw.cpu_model, "cores", hw.cores, "features",
                              hw.features, "kernels", byoai_kernels_best()->name, "ram_total_bytes",
                              (json_int_t)hw.ram_total, "ram_available_bytes", (json_int_t)hw.ram_available,
                              "bandwidth_threads", nt, "read_bandwidth_gbps", bw / 1e9);
        json_t *ceil = json_array();
        if (size) json_array_append_new(ceil, json_pack("{s:I,s:f}", "model_bytes", (json_int_t)size, "tokens_per_second", bw / (double)size));
        else
            for (int i = 0; i < 4; i++)
                json_array_append_new(ceil, json_pack("{s:I,s:f}", "model_bytes", (json_int_t)sizes[i], "tokens_per_second",
                                                      bw / (double)sizes[i]));
        json_object_set_new(o, "generation_ceiling", ceil);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("\n");
        json_decref(o);
        return CLI_OK;
    }
    char a[32], b[32];
    printf("cpu:        %s\n", hw.cpu_model);
    printf("cores:      %d\n", hw.cores);
    printf("simd:       %s (kernels: %s)\n", hw.features[0] ? hw.features : "none", byoai_kernels_best()->name);
    printf("ram:        %s total, %s available\n", cli_bytes(hw.ram_total, a, sizeof a),
           cli_bytes(hw.ram_available, b, sizeof b));
    printf("bandwidth:  %.1f GB/s memory read (%d threads, median of 5)\n", bw / 1e9, nt);
    printf("generation ceiling (bandwidth / model size):\n");
    if (size) printf("  %-10s %.1f tokens/s\n", cli_bytes((uint64_t)size, a, sizeof a), bw / (double)size);
    else
        for (int i = 0; i < 4; i++) printf("  %4.1f GB    %.1f tokens/s\n", (double)sizes[i] / 1e9, bw / (double)sizes[i]);
    return CLI_OK;
}
