/* byoai list: installed models and bundles, or (--available) what the
 * registries offer. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai list [--available] [--json] [--registry NAME|URL] [--offline|--refresh]\n"
"\n"
"List the installed models and bundles: name, variant, size, where they came\n"
"from (registry and revision) and when they were installed. With\n"
"--available, list every model and bundle the registries offer instead,\n"
"with their variants, and whether each is installed.\n"
"\n"
"Options:\n"
"  -a, --available          list what the registries offer\n"
"      --json               print a JSON array\n"
"  -r, --registry NAME|URL  with --available: this registry only\n"
"      --offline            with --available: cached indexes only\n"
"      --refresh            with --available: fetch the indexes even when the\n"
"                           cached ones are recent\n"
"  -h, --help               show this help\n"
"\n"
"Exit status: 0 success, 1 failure, 2 usage error.\n");
}

static int list_installed(byoai_store *s, bool json) {
    byoai_store_model *list;
    size_t n;
    byoai_error err = {0};
    if (byoai_store_list(s, &list, &n, &err)) return cli_fail("list", &err);
    json_t *arr = json ? json_array() : NULL;
    if (!json && n) printf("%-36s %-10s %-10s %-22s %s\n", "NAME", "VARIANT", "SIZE", "FROM", "INSTALLED");
    if (!json && !n) printf("no models installed; find some with `byoai search`\n");
    for (size_t i = 0; i < n; i++) {
        const byoai_store_model *m = &list[i];
        if (json) {
            json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:I,s:s}", "name", m->name, "kind",
                                                 m->is_bundle ? "bundle" : "model", "variant", m->variant, "sha256",
                                                 m->sha256, "size", (json_int_t)m->size, "registry", m->registry,
                                                 "revision", m->revision, "installed_at", (json_int_t)m->installed_at,
                                                 "path", m->path));
            continue;
        }
        char sz[32], from[64], when[32];
        time_t t = (time_t)m->installed_at;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        snprintf(from, sizeof from, "%s%s%s", m->registry, m->revision[0] ? "@" : "", m->revision);
        printf("%-36s %-10s %-10s %-22s %s%s\n", m->name, m->variant[0] ? m->variant : "-", cli_bytes(m->size, sz, sizeof sz),
               from, when, m->is_bundle ? "  [bundle]" : "");
    }
    if (json) cli_print_json(arr);
    free(list);
    return CLI_OK;
}

static int list_available(byoai_store *s, bool json, const char *only, bool offline, bool refresh) {
    byoai_registry_conf *regs;
    size_t n_regs;
    if (!cli_registries("list", s, only, &regs, &n_regs)) return CLI_ERROR;
    json_t *arr = json ? json_array() : NULL;
    size_t ok = 0;
    int rc = CLI_OK;
    byoai_machine mc;
    byoai_machine_get(&mc);
    if (!json) printf("%-36s %-10s %-30s %-9s %s\n", "NAME", "REGISTRY", "VARIANTS", "INSTALLED", "DESCRIPTION");
    for (size_t r = 0; r < n_regs; r++) {
        byoai_index *ix;
        byoai_index_source src;
        byoai_error e = {0};
        if (byoai_index_load(s, &regs[r], refresh, offline, &ix, &src, &e)) {
            if (n_regs == 1) rc = cli_fail("list", &e);
            else fprintf(stderr, "byoai list: warning: %s\n", e.msg);
            continue;
        }
        ok++;
        cli_note("list", src.note);
        for (size_t i = 0; i < ix->n_models + ix->n_bundles; i++) {
            const byoai_index_model *m = i < ix->n_models ? &ix->models[i] : NULL;
            const byoai_index_bundle *b = m ? NULL : &ix->bundles[i - ix->n_models];
            const char *name = m ? m->name : b->name;
            byoai_store_model im;
            bool installed = byoai_store_find(s, name, &im, NULL) == 0;
            char vars[256] = "";
            json_t *jv = json ? json_array() : NULL;
            if (m)
                for (size_t k = 0; k < m->n_variants; k++) {
                    const byoai_index_variant *v = &m->variants[k];
                    size_t l = strlen(vars);
                    snprintf(vars + l, sizeof vars - l, "%s%s", k ? "," : "", v->name);
                    if (jv)
                        json_array_append_new(jv, json_pack("{s:s,s:s,s:I,s:I,s:b}", "name", v->name, "quantization",
                                                            v->quantization, "size", (json_int_t)v->approx_size,
                                                            "min_ram", (json_int_t)byoai_index_variant_ram(v), "fits",
                                                            byoai_index_variant_ram(v) <= mc.ram_bytes));
                }
            if (json) {
                json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:o}", "name", name, "kind", m ? "model" : "bundle",
                                      "registry", regs[r].name, "description", m ? m->description : b->description,
                                      "revision", m ? m->revision : b->revision, "installed", installed, "variants", jv);
                if (installed) json_object_set_new(o, "installed_variant", json_string(im.variant));
                json_array_append_new(arr, o);
            } else {
                char d[48];
                snprintf(d, sizeof d, "%s", m ? m->description : b->description);
                char *nl = strchr(d, '\n');
                if (nl) *nl = '\0';
                printf("%-36s %-10s %-30s %-9s %s\n", name, regs[r].name, m ? vars : "(bundle)",
                       installed ? (im.variant[0] ? im.variant : "yes") : "", d);
            }
        }
        byoai_index_free(ix);
    }
    if (json) cli_print_json(arr);
    free(regs);
    if (!ok && rc == CLI_OK) rc = CLI_ERROR;
    return rc;
}

int cli_list(int argc, char **argv) {
    static const struct option opts[] = {{"available", no_argument, 0, 'a'}, {"json", no_argument, 0, 'j'},
                                         {"registry", required_argument, 0, 'r'}, {"offline", no_argument, 0, 'o'},
                                         {"refresh", no_argument, 0, 'R'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool available = false, json = false, offline = false, refresh = false;
    const char *only = NULL;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":ar:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': available = true; break;
        case 'j': json = true; break;
        case 'r': only = optarg; break;
        case 'o': offline = true; break;
        case 'R': refresh = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("list", c, opts, argv);
        }
    }
    if (optind < argc) return cli_usage_error("list", "unexpected argument '%s'", argv[optind]);
    if (refresh && offline) return cli_usage_error("list", "--refresh needs the network; drop --offline");
    byoai_store *s = cli_store("list");
    if (!s) return CLI_ERROR;
    int rc = available ? list_available(s, json, only, offline, refresh) : list_installed(s, json);
    byoai_store_close(s);
    return rc;
}
