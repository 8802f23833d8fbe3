/* byoai remove: uninstall models and bundles (their files are reclaimed by
 * `byoai gc` once nothing else uses them). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai remove MODEL... [--quiet]\n"
"\n"
"Uninstall models or bundles by name (NAME or NAME:VARIANT). Files another\n"
"installed model or bundle uses stay; run `byoai gc` to reclaim the space of\n"
"files nothing uses any more.\n"
"\n"
"Options:\n"
"  -q, --quiet   print nothing on success\n"
"  -h, --help    show this help\n"
"\n"
"Exit status: 0 removed, 1 a model was not installed or could not be\n"
"removed, 2 usage error.\n");
}

/* a mistyped name: the installed one it is closest to */
static void suggest_installed(byoai_store *s, const char *typed) {
    byoai_store_model *list;
    size_t n;
    if (strchr(typed, ':') || byoai_store_list(s, &list, &n, NULL)) return;
    const char **names = calloc(n ? n : 1, sizeof *names);
    if (names) {
        for (size_t i = 0; i < n; i++) names[i] = list[i].name;
        const char *near = cli_closest(typed, names, n);
        if (near) fprintf(stderr, "byoai remove: did you mean '%s'?\n", near);
    }
    free(names);
    free(list);
}

int cli_remove(int argc, char **argv) {
    static const struct option opts[] = {{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool quiet = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
        switch (c) {
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("remove", c, opts, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("remove", "missing MODEL");
    byoai_store *s = cli_store("remove");
    if (!s) return CLI_ERROR;
    int rc = CLI_OK;
    for (int i = optind; i < argc; i++) {
        byoai_error err = {0};
        if (byoai_store_remove(s, argv[i], &err)) {
            rc = cli_fail("remove", &err);
            if (err.code == BYOAI_ENOTFOUND) suggest_installed(s, argv[i]);
        } else if (!quiet) {
            printf("removed %s\n", argv[i]);
        }
    }
    if (rc == CLI_OK && !quiet) {
        byoai_gc_report r;
        byoai_error err = {0};
        /* what gc would reclaim now */
        if (byoai_store_gc(s, true, &r, &err) == 0 && r.blob_bytes) {
            char a[32];
            printf("run `byoai gc` to reclaim %s\n", cli_bytes(r.blob_bytes + r.partial_bytes, a, sizeof a));
        }
    }
    byoai_store_close(s);
    return rc;
}
