/* byoai import: a local GGUF file becomes an installed model. */
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai import FILE.gguf --name NAME[:VARIANT] [options]\n"
"\n"
"Install a GGUF file from this machine under NAME, without storing it twice:\n"
"byoai makes a reflink (a copy-on-write clone, on btrfs or XFS) or else a\n"
"hard link when the file is on the store's file system, and copies it only\n"
"when neither works. The file is checked (valid GGUF) and hashed. Without a\n"
"VARIANT the file's quantization names it (e.g. q4_k).\n"
"\n"
"With a hard link, the file and the stored model are the same file: editing\n"
"the original in place changes the model. Use --copy to keep them apart.\n"
"\n"
"Options:\n"
"  -N, --name NAME[:VARIANT]  the name to install as (required)\n"
"      --copy                 always copy, never link\n"
"      --description TEXT     a description (default: general.description)\n"
"      --license ID           the license (default: general.license)\n"
"  -q, --quiet                print nothing on success\n"
"  -h, --help                 show this help\n"
"\n"
"Exit status: 0 imported, 1 failure (not a valid GGUF, no space, ...), 2 usage\n"
"error.\n");
}

int cli_import(int argc, char **argv) {
    static const struct option opts[] = {{"name", required_argument, 0, 'N'}, {"copy", no_argument, 0, 1},
                                         {"description", required_argument, 0, 2}, {"license", required_argument, 0, 3},
                                         {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    byoai_import_opts o = {0};
    const char *name = NULL;
    bool quiet = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":N:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'N': name = optarg; break;
        case 1: o.copy_only = true; break;
        case 2: o.description = optarg; break;
        case 3: o.license = optarg; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("import", c, opts, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("import", "missing FILE");
    if (optind + 1 < argc) return cli_usage_error("import", "unexpected argument '%s'", argv[optind + 1]);
    if (!name) return cli_usage_error("import", "missing --name NAME");
    byoai_error err = {0};
    if (byoai_store_check_name(name, &err)) {
        cli_usage_error("import", "%s", err.msg);
        return CLI_USAGE;
    }
    byoai_store *s = cli_store("import");
    if (!s) return CLI_ERROR;
    cli_progress pr;
    cli_progress_init(&pr, "import", quiet);
    byoai_store_model m;
    const char *how = "copy";
    int rc = byoai_store_import(s, argv[optind], name, &o, cli_progress_cb, &pr, &m, &how, &err);
    cli_progress_end(&pr);
    byoai_store_close(s);
    if (rc) return cli_fail("import", &err);
    char a[32];
    if (!quiet)
        printf("imported %s%s%s (%s, %s)\n", m.name, m.variant[0] ? ":" : "", m.variant, cli_bytes(m.size, a, sizeof a),
               !strcmp(how, "present") ? "already in the store" : !strcmp(how, "copy") ? "copied"
               : !strcmp(how, "hardlink")                                             ? "hard-linked, no copy"
                                                                                      : "reflinked, no copy");
    return CLI_OK;
}
