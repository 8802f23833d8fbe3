/* byoai update: bring installed models and bundles to their registry's
 * latest revision, downloading only files that changed. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai update [MODEL...] [--check] [--json] [options]\n"
"\n"
"Check installed models and bundles (all, or the ones named) against their\n"
"registry's current index, and update those that changed. Only files whose\n"
"content changed are downloaded (a bundle whose chat model changed fetches\n"
"that model only); the old files stay until `byoai gc`. The installed\n"
"variant is kept. Models imported from local files are skipped; models\n"
"installed from the Hugging Face Hub are compared with the Hub's file.\n"
"\n"
"Options:\n"
"  -c, --check          list what is out of date; download nothing\n"
"      --json           with --check: print a JSON array\n"
"      --max-rate RATE  cap the download rate, e.g. 500K or 10M (bytes/s)\n"
"      --offline        compare with cached indexes only (with --check)\n"
"  -q, --quiet          no progress output\n"
"  -h, --help           show this help\n"
"\n"
"A model whose registry cannot be reached is reported as not checked (its\n"
"cached index cannot tell whether it changed), never as up to date.\n"
"\n"
"Exit status: 0 success (also when updates are available with --check), 1 a\n"
"model could not be checked or updated, 2 usage error.\n");
}

int cli_update(int argc, char **argv) {
    static const struct option opts[] = {{"check", no_argument, 0, 'c'}, {"json", no_argument, 0, 'j'},
                                         {"max-rate", required_argument, 0, 1}, {"offline", no_argument, 0, 2},
                                         {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool check = false, json = false, quiet = false;
    byoai_install_opts o = {0};
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":cqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': check = true; break;
        case 'j': json = true; break;
        case 1: if (!cli_parse_bytes("update", "--max-rate", optarg, &o.max_rate)) return CLI_USAGE; break;
        case 2: o.offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("update", c, opts, argv);
        }
    }
    byoai_store *s = cli_store("update");
    if (!s) return CLI_ERROR;
    byoai_error err = {0};
    byoai_update_item *items;
    size_t n;
    if (byoai_update_check(s, (const char *const *)argv + optind, (size_t)(argc - optind), &o, &items, &n, &err)) {
        byoai_store_close(s);
        return cli_fail("update", &err);
    }
    int rc = CLI_OK;
    char a[32];
    if (check) {
        json_t *arr = json ? json_array() : NULL;
        size_t outdated = 0, unchecked = 0;
        for (size_t i = 0; i < n; i++) {
            const byoai_update_item *it = &items[i];
            outdated += it->outdated;
            unchecked += it->unchecked;
            if (json) {
                json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:I,s:s}", "name", it->name, "kind",
                                                     it->is_bundle ? "bundle" : "model", "registry", it->registry,
                                                     "installed_revision", it->installed_revision, "available_revision",
                                                     it->available_revision, "outdated", it->outdated, "changed_files",
                                                     (json_int_t)it->changed_files, "download_bytes",
                                                     (json_int_t)it->download_bytes, "note", it->note));
                json_object_set_new(json_array_get(arr, json_array_size(arr) - 1), "checked",
                                    json_boolean(!it->unchecked));
            } else if (it->outdated) {
                printf("%-36s %s -> %s: %zu changed file%s, download %s\n", it->name,
                       it->installed_revision[0] ? it->installed_revision : "-",
                       it->available_revision[0] ? it->available_revision : "-", it->changed_files,
                       it->changed_files == 1 ? "" : "s", cli_bytes(it->download_bytes, a, sizeof a));
            } else if (it->note[0]) {
                printf("%-36s %s\n", it->name, it->note);
            }
        }
        /* a count of "up to date" only covers what could be compared */
        size_t checked = n - unchecked;
        if (unchecked) rc = CLI_ERROR;
        if (json) {
            cli_print_json(arr);
        } else if (n && !checked) {
            fprintf(stderr, "byoai update: error: none of the %zu installed model%s could be checked (see above); "
                    "nothing is known to be up to date: check the network and `byoai registry list`, or use "
                    "--offline to compare with the cached indexes\n", n, n == 1 ? "" : "s");
        } else if (unchecked) {
            printf("%zu of the %zu checked up to date; %zu could not be checked%s\n", checked - outdated, checked,
                   unchecked, outdated ? "; run `byoai update` to update" : "");
        } else if (!n) {
            printf("no models installed\n");
        } else {
            printf("%zu of %zu up to date%s\n", n - outdated, n, outdated ? "; run `byoai update` to update" : "");
        }
        free(items);
        byoai_store_close(s);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const byoai_update_item *it = &items[i];
        if (!it->outdated) {
            if (it->unchecked) {
                fprintf(stderr, "byoai update: error: %s: %s\n", it->name, it->note);
                rc = CLI_ERROR;
            } else if (!quiet) {
                printf("%s: up to date%s%s%s\n", it->name, it->note[0] ? " (" : "", it->note, it->note[0] ? ")" : "");
            }
            continue;
        }
        cli_progress pr;
        cli_progress_init(&pr, "update", quiet);
        byoai_update_item done;
        byoai_error e = {0};
        int r = byoai_update(s, it->name, &o, cli_progress_cb, &pr, &done, &e);
        cli_progress_end(&pr);
        if (r) {
            rc = cli_fail("update", &e);
            continue;
        }
        if (!quiet)
            printf("updated %s to revision %s (%zu changed file%s, downloaded %s)\n", it->name, done.available_revision,
                   done.changed_files, done.changed_files == 1 ? "" : "s", cli_bytes(done.download_bytes, a, sizeof a));
    }
    free(items);
    byoai_store_close(s);
    return rc;
}
