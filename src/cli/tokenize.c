/* byoai tokenize: show how a model's tokenizer splits text. */
#include <stdlib.h>
#include <string.h>

#include "byoai/model.h"
#include "byoai/tokenizer.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai tokenize MODEL TEXT [--ids] [--json] [--no-bos] [--special]\n"
"\n"
"Split TEXT into the tokens MODEL sees. Only the tokenizer is loaded, so any\n"
"GGUF file with a vocabulary works: vocabulary-only files, and architectures\n"
"this build cannot run.\n"
"By default prints one token per line: its id and its text.\n"
"\n"
"Options:\n"
"      --ids        print only the ids, as a JSON array on one line\n"
"      --json       print a JSON array of {\"id\", \"text\"} objects\n"
"      --no-bos     do not add the BOS/EOS tokens the model's metadata asks for\n"
"      --special    recognise special-token text (e.g. <|im_start|>) as one token\n"
"  -h, --help       show this help\n"
"\n"
"Exit status: 0 success, 1 runtime error, 2 usage error.\n");
}

int cli_tokenize(int argc, char **argv) {
    static const struct option opts[] = {{"ids", no_argument, 0, 'i'},     {"json", no_argument, 0, 'j'},
                                         {"no-bos", no_argument, 0, 'b'},  {"special", no_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},    {0, 0, 0, 0}};
    bool ids = false, json = false, add_special = true, special = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': ids = true; break;
        case 'j': json = true; break;
        case 'b': add_special = false; break;
        case 's': special = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("tokenize", c, opts, argv);
        }
    }
    if (argc - optind != 2) return cli_usage_error("tokenize", "expected MODEL and TEXT");
    char path[4096];
    if (!cli_resolve_model("tokenize", argv[optind], path, sizeof path)) return CLI_ERROR;
    const char *text = argv[optind + 1];
    byoai_error err = {0};
    byoai_model *m;
    byoai_model_params mp = {.vocab_only = true};
    /* any GGUF with a vocabulary: also vocabulary-only files and
     * architectures this build cannot run (tokenizing needs no forward pass) */
    if (byoai_model_load(path, &mp, &m, &err)) return cli_fail("tokenize", &err);
    const byoai_tokenizer *tok = byoai_model_tokenizer(m);
    int32_t *toks;
    size_t n;
    if (byoai_tokenize(tok, text, strlen(text), add_special, special, &toks, &n, &err)) {
        byoai_model_free(m);
        return cli_fail("tokenize", &err);
    }
    if (ids) {
        printf("[");
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", toks[i]);
        printf("]\n");
    } else {
        if (json) printf("[");
        for (size_t i = 0; i < n; i++) {
            char piece[512];
            int len = byoai_token_to_piece(tok, toks[i], piece, sizeof piece, true);
            if (len < 0) len = 0;
            if ((size_t)len > sizeof piece) len = sizeof piece;
            if (json) {
                printf("%s{\"id\": %d, \"text\": ", i ? ", " : "", toks[i]);
                cli_json_string(stdout, piece, (size_t)len);
                printf("}");
            } else {
                printf("%6d  ", toks[i]);
                cli_json_string(stdout, piece, (size_t)len);
                printf("\n");
            }
        }
        if (json) printf("]\n");
    }
    free(toks);
    byoai_model_free(m);
    return CLI_OK;
}
