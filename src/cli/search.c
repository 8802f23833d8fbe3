/* byoai search: ranked matches from every configured registry. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai search [QUERY...] [--json] [--registry NAME|URL] [--offline|--refresh]\n"
"\n"
"Search the models and bundles of the configured registries. Every word of\n"
"QUERY must match a model's name, description, tags or architecture; name\n"
"matches rank first. No QUERY lists everything. For each match: its size (of\n"
"the variant `byoai install` would pick here), whether it fits this\n"
"machine's memory, and whether it is installed.\n"
"\n"
"Indexes are cached for $BYOAI_INDEX_TTL seconds (default 600); --refresh\n"
"asks the registries at once. When a registry cannot be reached, its cached\n"
"index is used and a note says so.\n"
"\n"
"Options:\n"
"      --json               print a JSON array\n"
"  -r, --registry NAME|URL  search this registry only\n"
"      --offline            use cached indexes only\n"
"      --refresh            fetch the indexes even when the cached ones are recent\n"
"  -h, --help               show this help\n"
"\n"
"Exit status: 0 success (even with no match), 1 no registry could be read,\n"
"2 usage error.\n");
}

typedef struct row {
    const char *registry;
    const byoai_index *ix;
    byoai_search_hit hit;
} row;

static int cmp_row(const void *a, const void *b) {
    const row *x = a, *y = b;
    if (x->hit.score != y->hit.score) return y->hit.score - x->hit.score;
    const char *nx = x->hit.model ? x->hit.model->name : x->hit.bundle->name;
    const char *ny = y->hit.model ? y->hit.model->name : y->hit.bundle->name;
    return strcmp(nx, ny);
}

int cli_search(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {"registry", required_argument, 0, 'r'},
                                         {"offline", no_argument, 0, 'o'}, {"refresh", no_argument, 0, 'R'},
                                         {"help", no_argument, 0, 'h'},    {0, 0, 0, 0}};
    bool json = false, offline = false, refresh = false;
    const char *only = NULL;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":r:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'r': only = optarg; break;
        case 'o': offline = true; break;
        case 'R': refresh = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("search", c, opts, argv);
        }
    }
    if (refresh && offline) return cli_usage_error("search", "--refresh needs the network; drop --offline");
    char query[1024] = "";
    for (int i = optind; i < argc; i++) {
        size_t l = strlen(query);
        snprintf(query + l, sizeof query - l, "%s%s", l ? " " : "", argv[i]);
    }
    byoai_store *s = cli_store("search");
    if (!s) return CLI_ERROR;
    byoai_registry_conf *regs;
    size_t n_regs;
    if (!cli_registries("search", s, only, &regs, &n_regs)) {
        byoai_store_close(s);
        return CLI_ERROR;
    }
    byoai_index **ix = calloc(n_regs, sizeof *ix);
    row *rows = NULL;
    size_t n_rows = 0, ok = 0;
    int rc = CLI_OK;
    for (size_t i = 0; i < n_regs; i++) {
        byoai_index_source src;
        byoai_error e = {0};
        if (byoai_index_load(s, &regs[i], refresh, offline, &ix[i], &src, &e)) {
            if (n_regs == 1) rc = cli_fail("search", &e);
            else fprintf(stderr, "byoai search: warning: %s\n", e.msg);
            continue;
        }
        ok++;
        cli_note("search", src.note);
        byoai_search_hit *hits;
        size_t nh;
        if (byoai_index_search(ix[i], query, &hits, &nh)) continue;
        row *nr = realloc(rows, (n_rows + nh + 1) * sizeof *rows);
        if (!nr) {
            free(hits);
            continue;
        }
        rows = nr;
        for (size_t k = 0; k < nh; k++) rows[n_rows++] = (row){regs[i].name, ix[i], hits[k]};
        free(hits);
    }
    if (!ok && rc == CLI_OK) rc = CLI_ERROR;
    if (n_rows) qsort(rows, n_rows, sizeof *rows, cmp_row);
    byoai_machine mc;
    byoai_machine_get(&mc);
    json_t *arr = json ? json_array() : NULL;
    if (!json && n_rows) printf("%-36s %-10s %-5s %-9s %-10s %s\n", "NAME", "SIZE", "FITS", "INSTALLED", "REGISTRY", "DESCRIPTION");
    for (size_t i = 0; i < n_rows && ok; i++) {
        const byoai_search_hit *h = &rows[i].hit;
        const char *name = h->model ? h->model->name : h->bundle->name;
        const char *desc = h->model ? h->model->description : h->bundle->description;
        uint64_t size = 0;
        bool fits = true;
        const char *variant = "";
        if (h->bundle) size = cli_index_bundle_size(rows[i].ix, h->bundle, &mc);
        if (h->model) {
            size_t vi;
            if (byoai_index_choose_variant(h->model, &mc, NULL, &vi, NULL, NULL) == 0) {
                size = h->model->variants[vi].approx_size;
                variant = h->model->variants[vi].name;
            } else {
                fits = false;
                for (size_t k = 0; k < h->model->n_variants; k++)
                    if (!size || h->model->variants[k].approx_size < size) size = h->model->variants[k].approx_size;
            }
        }
        byoai_store_model im;
        bool installed = byoai_store_find(s, name, &im, NULL) == 0;
        if (json) {
            json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:s,s:I,s:s,s:b,s:b}", "name", name, "kind",
                                  h->model ? "model" : "bundle", "registry", rows[i].registry, "score", h->score,
                                  "description", desc, "size", (json_int_t)size, "variant", variant, "fits", fits,
                                  "installed", installed);
            json_t *tags = json_array();
            size_t nt = h->model ? h->model->n_tags : h->bundle->n_tags;
            for (size_t k = 0; k < nt; k++)
                json_array_append_new(tags, json_string(h->model ? h->model->tags[k] : h->bundle->tags[k]));
            json_object_set_new(o, "tags", tags);
            json_array_append_new(arr, o);
        } else {
            char sz[32], d[64];
            snprintf(d, sizeof d, "%s", desc);
            char *nl = strchr(d, '\n');
            if (nl) *nl = '\0';
            printf("%-36s %-10s %-5s %-9s %-10s %s%s%s\n", name, cli_bytes(size, sz, sizeof sz),
                   fits ? "yes" : "no", installed ? "yes" : "", rows[i].registry, h->bundle ? "(bundle) " : "", d,
                   strlen(desc) > 60 ? "..." : "");
        }
    }
    if (json) {
        cli_print_json(arr);
    } else if (!n_rows && ok) {
        printf("no match for '%s'\n", query);
    }
    free(rows);
    for (size_t i = 0; i < n_regs; i++) byoai_index_free(ix[i]);
    free(ix);
    free(regs);
    byoai_store_close(s);
    return rc;
}
