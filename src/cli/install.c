/* byoai install: models and bundles from a registry, or files from the Hub. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai install MODEL[:VARIANT]... [options]\n"
"       byoai install hf:OWNER/REPO[@REVISION]/FILE.gguf [--name NAME]\n"
"\n"
"Download and install models (or bundles) from a registry. Without a\n"
"VARIANT, byoai picks the best one for this machine: the largest quantized\n"
"variant that needs at most 60%% of its RAM and that this build can run.\n"
"Before downloading, it shows the download size, the disk space needed and\n"
"the memory the model needs; it checks the free space first.\n"
"\n"
"Downloads resume where they stopped (run the same command again after an\n"
"interruption), are retried with backoff when a connection stalls or drops,\n"
"and are verified (sha256) before the model becomes visible. Two installs of\n"
"the same file share one download.\n"
"\n"
"hf:OWNER/REPO/FILE.gguf installs a file straight from the Hugging Face Hub,\n"
"verified against the sha256 the Hub reports for it.\n"
"\n"
"Options:\n"
"  -r, --registry NAME|URL  registry to install from (default: the default one)\n"
"  -n, --dry-run            show what would be downloaded; download nothing\n"
"      --max-rate RATE      cap the download rate, e.g. 500K or 10M (bytes/s)\n"
"      --retries N          attempts after a failure (default 5)\n"
"      --name NAME          install an hf: file under this name\n"
"      --offline            use cached indexes only\n"
"      --refresh            fetch the index even when the cached one is recent\n"
"                           (it is cached for $BYOAI_INDEX_TTL seconds, default 600)\n"
"  -q, --quiet              no progress output\n"
"  -h, --help               show this help\n"
"\n"
"Environment: BYOAI_HOME (the store), BYOAI_REGISTRY, BYOAI_STORE_MAX_BYTES (a\n"
"cap on the store's size), HF_TOKEN (gated Hub repositories), BYOAI_HF_ENDPOINT.\n"
"\n"
"Exit status: 0 installed, 1 failure (nothing half-installed is left visible),\n"
"2 usage error.\n"
"\n"
"Examples:\n"
"  byoai install qwen2.5-0.5b-instruct\n"
"  byoai install qwen2.5-0.5b-instruct:q8_0 --dry-run\n"
"  byoai install hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf\n");
}

int cli_install(int argc, char **argv) {
    static const struct option opts[] = {{"registry", required_argument, 0, 'r'}, {"dry-run", no_argument, 0, 'n'},
                                         {"max-rate", required_argument, 0, 1},   {"retries", required_argument, 0, 2},
                                         {"name", required_argument, 0, 3},       {"offline", no_argument, 0, 4},
                                         {"refresh", no_argument, 0, 5},
                                         {"quiet", no_argument, 0, 'q'},          {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    byoai_install_opts o = {0};
    bool quiet = false;
    long long iv;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":r:nqh", opts, NULL)) != -1) {
        switch (c) {
        case 'r': o.registry = optarg; break;
        case 'n': o.dry_run = true; break;
        case 1: if (!cli_parse_bytes("install", "--max-rate", optarg, &o.max_rate)) return CLI_USAGE; break;
        case 2: if (!cli_parse_int("install", "--retries", optarg, 1, 100, &iv)) return CLI_USAGE; o.retries = (unsigned)iv; break;
        case 3: o.as_name = optarg; break;
        case 4: o.offline = true; break;
        case 5: o.refresh = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("install", c, opts, argv);
        }
    }
    if (o.refresh && o.offline) return cli_usage_error("install", "--refresh needs the network; drop --offline");
    if (optind >= argc) return cli_usage_error("install", "missing MODEL");
    if (o.as_name && argc - optind > 1) return cli_usage_error("install", "--name applies to a single hf: install");
    byoai_store *s = cli_store("install");
    if (!s) return CLI_ERROR;
    int rc = CLI_OK;
    for (int i = optind; i < argc; i++) {
        byoai_install_plan plan;
        cli_progress pr;
        cli_progress_init(&pr, "install", quiet);
        pr.plan = o.dry_run ? NULL : &plan;
        o.plan = &plan;
        byoai_error err = {0};
        byoai_store_model m;
        int r = byoai_install(s, argv[i], &o, cli_progress_cb, &pr, &m, &err);
        cli_progress_end(&pr);
        if (r) {
            rc = cli_fail("install", &err);
            continue;
        }
        if (o.dry_run) {
            cli_print_plan(stdout, &plan, true);
            continue;
        }
        char a[32];
        if (!quiet)
            printf("installed %s%s%s (%s)%s\n", m.name, m.variant[0] ? ":" : "", m.variant, cli_bytes(m.size, a, sizeof a),
                   m.is_bundle ? " [bundle]" : "");
    }
    byoai_store_close(s);
    return rc;
}
