/* byoai gc: reclaim files no installed model uses, and stale partial downloads. */
#include <jansson.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai gc [--dry-run] [--json]\n"
"\n"
"Delete the files in the store that no installed model or bundle uses (left\n"
"by `byoai remove` and by updates) and the partial downloads of interrupted\n"
"installs. gc waits for running installs to finish first; an interrupted\n"
"download can no longer be resumed after gc.\n"
"\n"
"Options:\n"
"  -n, --dry-run   show what would be deleted\n"
"      --json      print a JSON object\n"
"  -h, --help      show this help\n"
"\n"
"Exit status: 0 success, 1 failure, 2 usage error.\n");
}

int cli_gc(int argc, char **argv) {
    static const struct option opts[] = {{"dry-run", no_argument, 0, 'n'}, {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool dry = false, json = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":nh", opts, NULL)) != -1) {
        switch (c) {
        case 'n': dry = true; break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("gc", c, opts, argv);
        }
    }
    if (optind < argc) return cli_usage_error("gc", "unexpected argument '%s'", argv[optind]);
    byoai_store *s = cli_store("gc");
    if (!s) return CLI_ERROR;
    byoai_gc_report r;
    byoai_error err = {0};
    int rc = byoai_store_gc(s, dry, &r, &err);
    byoai_store_close(s);
    if (rc) return cli_fail("gc", &err);
    if (json) {
        json_t *o = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "dry_run", dry, "blobs_removed",
                              (json_int_t)r.blobs_removed, "blob_bytes", (json_int_t)r.blob_bytes, "partials_removed",
                              (json_int_t)r.partials_removed, "partial_bytes", (json_int_t)r.partial_bytes,
                              "blobs_kept", (json_int_t)r.blobs_kept, "kept_bytes", (json_int_t)r.kept_bytes);
        cli_print_json(o);
        return CLI_OK;
    }
    char a[32], b[32], k[32];
    printf("%s %llu unused file%s (%s) and %llu partial download%s (%s); kept %llu file%s (%s)\n",
           dry ? "would remove" : "removed", (unsigned long long)r.blobs_removed, r.blobs_removed == 1 ? "" : "s",
           cli_bytes(r.blob_bytes, a, sizeof a), (unsigned long long)r.partials_removed,
           r.partials_removed == 1 ? "" : "s", cli_bytes(r.partial_bytes, b, sizeof b),
           (unsigned long long)r.blobs_kept, r.blobs_kept == 1 ? "" : "s", cli_bytes(r.kept_bytes, k, sizeof k));
    return CLI_OK;
}
