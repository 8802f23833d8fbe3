/* byoai index: work on index.json files (validate). */
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai index validate FILE [--deep] [--quiet]\n"
"\n"
"Check an index.json file (docs/index-format.md): the schema, unique names,\n"
"sane sizes, sha256 formats, URL schemes, bundles naming real models. The\n"
"first problem is reported with its place, e.g.\n"
"  index.json: models[2] (\"tiny\").variants[0].sha256: must be 64 lowercase hex digits\n"
"With --deep, download every file (into a temporary directory) and verify\n"
"its size, its sha256 (or the Hub's, for Hub files) and that it is GGUF.\n"
"Relative URLs resolve against the file's directory.\n"
"\n"
"Options:\n"
"      --deep     download and verify every file\n"
"  -q, --quiet    no progress output\n"
"  -h, --help     show this help\n"
"\n"
"Exit status: 0 valid, 1 invalid (or a file failed to verify), 2 usage error.\n");
}

int cli_index(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return CLI_OK;
    }
    if (argc < 2 || strcmp(argv[1], "validate")) return cli_usage_error("index", "expected 'validate'");
    argc--, argv++;
    static const struct option opts[] = {{"deep", no_argument, 0, 'd'}, {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool deep = false, quiet = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': deep = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("index", c, opts, argv);
        }
    }
    if (optind + 1 != argc) return cli_usage_error("index", "validate: expected one FILE");
    cli_progress pr;
    cli_progress_init(&pr, "index", quiet);
    byoai_error err = {0};
    int rc = byoai_index_validate_file(argv[optind], deep, cli_progress_cb, &pr, &err);
    cli_progress_end(&pr);
    if (rc) return cli_fail("index", &err);
    if (!quiet) printf("%s: valid%s\n", argv[optind], deep ? "; every file downloaded and verified" : "");
    return CLI_OK;
}
