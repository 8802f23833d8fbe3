/* byoai info: what a GGUF model file holds and what it needs to run. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"
#include "byoai/model.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai info MODEL [--json] [--ctx N]\n"
"\n"
"Describe a GGUF model without loading its weights: architecture and whether\n"
"this build runs it, parameter count, trained context length, layer shapes,\n"
"tensor types and how much of the file each takes, tokenizer, whether a chat\n"
"template is present, and the memory needed to run it at a context size.\n"
"The file type is llama.cpp's name from general.file_type (Q4_K_M) when the\n"
"tensors agree with it. Works for any GGUF, also vocabulary-only files and\n"
"architectures this build cannot run.\n"
"\n"
"Options:\n"
"      --json     print one JSON object instead of text\n"
"  -c, --ctx N    context size for the memory estimate (default: the model's\n"
"                 trained context)\n"
"  -h, --help     show this help\n"
"\n"
"Exit status: 0 success, 1 the file is unreadable or not valid GGUF, 2 usage error.\n");
}

static void print_json(const char *path, const byoai_gguf *g, const byoai_model_info *in) {
    json_t *types = json_object();
    for (int t = 0; t < BYOAI_TYPE_COUNT; t++)
        if (in->type_count[t])
            json_object_set_new(types, byoai_type_name((uint32_t)t),
                                json_pack("{s:I,s:I}", "tensors", (json_int_t)in->type_count[t], "bytes",
                                          (json_int_t)in->type_bytes[t]));
    json_t *o = json_pack(
        "{s:s,s:i,s:s,s:b,s:s,s:I,s:I,s:I,s:I,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:i,s:b,s:I,s:o,s:{s:i,s:I,s:I,s:I,s:I}}",
        "file", path, "gguf_version", (int)g->version, "architecture", in->arch, "supported", in->arch_supported,
        "name", in->name, "parameters", (json_int_t)in->n_params, "file_bytes", (json_int_t)in->file_bytes,
        "weight_bytes", (json_int_t)in->weight_bytes, "tensors", (json_int_t)g->n_tensors, "context_length",
        (int)in->n_ctx_train, "layers", (int)in->n_layer, "embedding_length", (int)in->n_embd,
        "feed_forward_length", (int)in->n_ff, "heads", (int)in->n_head, "kv_heads", (int)in->n_head_kv, "head_dim",
        (int)in->head_dim, "tokenizer", in->tokenizer, "vocab_size", (int)in->n_vocab, "chat_template",
        in->has_chat_template, "metadata_keys", (json_int_t)g->n_kv, "types", types, "memory", "context",
        (int)in->mem_ctx, "weights_bytes", (json_int_t)in->weight_bytes, "kv_cache_bytes",
        (json_int_t)in->mem_kv_bytes, "buffer_bytes", (json_int_t)in->mem_buffer_bytes, "total_bytes",
        (json_int_t)in->mem_total_bytes);
    json_object_set_new(o, "file_type", json_string(in->file_type));
    json_object_set_new(o, "vocab_only", json_boolean(g->n_tensors == 0 && in->n_vocab > 0));
    json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("\n");
    json_decref(o);
}

static void print_text(const char *path, const byoai_gguf *g, const byoai_model_info *in) {
    char a[32], b[32], c[32], d[32];
    printf("file:           %s (%s, GGUF v%u)\n", path, cli_bytes(in->file_bytes, a, sizeof a), g->version);
    if (in->name[0]) printf("name:           %s\n", in->name);
    printf("architecture:   %s%s\n", in->arch, in->arch_supported ? "" : " (not supported by this build)");
    if (g->n_tensors) {
        printf("parameters:     %s\n", cli_count(in->n_params, a, sizeof a));
        printf("file type:      %s\n", in->file_type);
    }
    if (in->n_ctx_train) printf("context length: %u (trained)\n", in->n_ctx_train);
    else printf("context length: unknown (the file does not say)\n");
    printf("layers:         %u, embedding %u, feed-forward %u\n", in->n_layer, in->n_embd, in->n_ff);
    printf("attention:      %u heads, %u KV heads, head dim %u\n", in->n_head, in->n_head_kv, in->head_dim);
    printf("tokenizer:      %s, %u tokens\n", in->tokenizer[0] ? in->tokenizer : "none", in->n_vocab);
    printf("chat template:  %s\n", in->has_chat_template ? "yes" : "no");
    if (g->n_tensors == 0) {
        /* nothing to run, and no memory to need */
        if (in->n_vocab) printf("tensors:        none: a vocabulary-only file (`byoai tokenize` works with it; it cannot run)\n");
        else printf("tensors:        none, and no vocabulary either\n");
        return;
    }
    printf("tensors:        %llu (%s)\n", (unsigned long long)g->n_tensors, cli_bytes(in->weight_bytes, a, sizeof a));
    for (int t = 0; t < BYOAI_TYPE_COUNT; t++) {
        if (!in->type_count[t]) continue;
        double pct = in->weight_bytes ? 100.0 * (double)in->type_bytes[t] / (double)in->weight_bytes : 0;
        printf("  %-8s %5llu tensors  %10s  %5.1f%%\n", byoai_type_name((uint32_t)t),
               (unsigned long long)in->type_count[t], cli_bytes(in->type_bytes[t], a, sizeof a), pct);
    }
    printf("memory:         %s at %u context (weights %s + KV cache %s + buffers %s)\n",
           cli_bytes(in->mem_total_bytes, a, sizeof a), in->mem_ctx, cli_bytes(in->weight_bytes, b, sizeof b),
           cli_bytes(in->mem_kv_bytes, c, sizeof c), cli_bytes(in->mem_buffer_bytes, d, sizeof d));
}

int cli_info(int argc, char **argv) {
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'}, {"ctx", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool json = false;
    long long ctx = 0;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'c': if (!cli_parse_int("info", "--ctx", optarg, 1, 1 << 24, &ctx)) return CLI_USAGE; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("info", c, opts, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("info", "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error("info", "unexpected argument '%s'", argv[optind + 1]);
    char path[4096];
    if (!cli_resolve_model("info", argv[optind], path, sizeof path)) return CLI_ERROR;
    byoai_error err = {0};
    byoai_gguf *g;
    if (byoai_gguf_open(path, &g, &err)) return cli_fail("info", &err);
    byoai_model_info in;
    int rc = byoai_model_describe(g, (uint32_t)ctx, &in, &err);
    /* by default at the trained context, the context `byoai run` starts from */
    if (!rc && !ctx && in.n_ctx_train && in.n_ctx_train != in.mem_ctx)
        rc = byoai_model_describe(g, in.n_ctx_train, &in, &err);
    if (rc) {
        byoai_gguf_close(g);
        return cli_fail("info", &err);
    }
    if (json) print_json(path, g, &in);
    else print_text(path, g, &in);
    byoai_gguf_close(g);
    return CLI_OK;
}
