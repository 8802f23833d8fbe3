/* byoai publish: upload a model to a registry, signed with your key. */
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai publish FILE.gguf --name NAME --registry URL [options]\n"
"\n"
"Upload FILE.gguf to a registry served by `byoai registry serve`. The request\n"
"is signed with your publisher key (create one with `byoai key generate\n"
"NAME`, and send `byoai key show` to the registry's maintainer); the registry\n"
"checks the signature, that the file is valid GGUF with the sha256 you\n"
"signed, that it has a license and an architecture, and that NAME is free or\n"
"yours; then it adds (or updates) the entry in its index, recording you as\n"
"the publisher, and signs the new index. The file and its license are\n"
"checked here first: a file without one is refused before anything is sent.\n"
"Your own cached copy of the registry's index is refreshed on your next command.\n"
"\n"
"Options:\n"
"  -N, --name NAME           the model's name in the registry (required)\n"
"  -r, --registry URL|NAME   the registry (required)\n"
"      --variant V           the variant's name (default: the quantization, e.g. q8_0)\n"
"      --description TEXT    a description (default: general.description)\n"
"      --license ID          an SPDX license id (default: general.license)\n"
"      --tags A,B            comma-separated tags\n"
"      --key FILE            the secret key (default: $BYOAI_HOME/keys/publisher.key)\n"
"      --max-rate RATE       cap the upload rate, e.g. 1M (bytes/s)\n"
"  -q, --quiet               no progress output\n"
"  -h, --help                show this help\n"
"\n"
"Exit status: 0 published, 1 refused or failed (the reason is printed), 2 usage\n"
"error.\n");
}

int cli_publish(int argc, char **argv) {
    static const struct option opts[] = {
        {"name", required_argument, 0, 'N'},    {"registry", required_argument, 0, 'r'},
        {"variant", required_argument, 0, 1},   {"description", required_argument, 0, 2},
        {"license", required_argument, 0, 3},   {"tags", required_argument, 0, 4},
        {"key", required_argument, 0, 5},       {"max-rate", required_argument, 0, 6},
        {"quiet", no_argument, 0, 'q'},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    byoai_publish_opts o = {0};
    bool quiet = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":N:r:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'N': o.name = optarg; break;
        case 'r': o.registry = optarg; break;
        case 1: o.variant = optarg; break;
        case 2: o.description = optarg; break;
        case 3: o.license = optarg; break;
        case 4: o.tags = optarg; break;
        case 5: o.key_path = optarg; break;
        case 6: if (!cli_parse_bytes("publish", "--max-rate", optarg, &o.max_rate)) return CLI_USAGE; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("publish", c, opts, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("publish", "missing FILE.gguf");
    if (optind + 1 < argc) return cli_usage_error("publish", "unexpected argument '%s'", argv[optind + 1]);
    if (!o.name) return cli_usage_error("publish", "missing --name NAME");
    if (!o.registry) return cli_usage_error("publish", "missing --registry URL");
    byoai_store *s = cli_store("publish");
    if (!s) return CLI_ERROR;
    cli_progress pr;
    cli_progress_init(&pr, "publish", quiet);
    byoai_publish_result res;
    byoai_error err = {0};
    int rc = byoai_publish(s, argv[optind], &o, cli_progress_cb, &pr, &res, &err);
    cli_progress_end(&pr);
    byoai_store_close(s);
    if (rc) return cli_fail("publish", &err);
    char a[32];
    if (!quiet)
        printf("published %s:%s (%s, sha256 %s) as %s, revision %s\n", res.name, res.variant,
               cli_bytes(res.size, a, sizeof a), res.sha256, res.publisher, res.revision);
    return CLI_OK;
}
