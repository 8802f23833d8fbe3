/* byoai bundle: named sets of models with roles, a system prompt and run
 * parameters; and the archives that carry them to offline machines. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai bundle NAME MODEL... [--role ROLE=MODEL]... [--system TEXT]\n"
"                    [--param KEY=VALUE]...\n"
"       byoai bundle export NAME -o FILE\n"
"       byoai bundle import FILE [--name NAME]\n"
"\n"
"Create (or replace) bundle NAME from installed models. Each model has a\n"
"role: --role chat=M1 --role embed=M2 names them; a MODEL given without a\n"
"role becomes 'chat' when no model has that role yet, else model2, model3...\n"
"A bundle is installed, updated, removed and run as one name: `byoai run\n"
"NAME` runs its chat model (or its first) with the system prompt fed first\n"
"and the parameters as defaults (temp, top_k, top_p, min_p, repeat_penalty,\n"
"repeat_last_n, seed, n_predict, ctx; options on the command line win).\n"
"\n"
"export writes one archive (tar) holding the bundle's manifest and every\n"
"model file; import verifies each file's sha256 before storing it, so an\n"
"archive carries a bundle to a machine without network. export and import\n"
"also work for a plain model.\n"
"\n"
"Options:\n"
"      --role ROLE=MODEL   give MODEL (installed) the role ROLE\n"
"      --system TEXT       the system prompt\n"
"      --param KEY=VALUE   a run parameter (numbers, true/false, or text)\n"
"  -o, --output FILE       (export) the archive to write\n"
"      --name NAME         (import) install under another name\n"
"  -q, --quiet             no progress output\n"
"  -h, --help              show this help\n"
"\n"
"Exit status: 0 success, 1 failure, 2 usage error.\n"
"\n"
"Examples:\n"
"  byoai bundle assistant --role chat=qwen2.5-1.5b-instruct --role embed=nomic-embed-text-v1.5 \\\n"
"      --system \"You are a helpful assistant.\" --param temp=0.7\n"
"  byoai bundle export assistant -o assistant.byoai\n"
"  byoai bundle import assistant.byoai\n");
}

static bool key_ok(const char *k, size_t n) {
    if (n == 0 || n > 32) return false;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_')) return false;
    return true;
}

static int do_export(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *out = NULL;
    bool quiet = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("bundle", c, opts, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("bundle", "export: missing NAME");
    if (optind + 1 < argc) return cli_usage_error("bundle", "unexpected argument '%s'", argv[optind + 1]);
    if (!out) return cli_usage_error("bundle", "export: missing -o FILE");
    byoai_store *s = cli_store("bundle");
    if (!s) return CLI_ERROR;
    cli_progress pr;
    cli_progress_init(&pr, "bundle", quiet);
    byoai_error err = {0};
    int rc = byoai_store_bundle_export(s, argv[optind], out, cli_progress_cb, &pr, &err);
    cli_progress_end(&pr);
    byoai_store_close(s);
    if (rc) return cli_fail("bundle", &err);
    if (!quiet) printf("exported %s to %s\n", argv[optind], out);
    return CLI_OK;
}

static int do_import(int argc, char **argv) {
    static const struct option opts[] = {{"name", required_argument, 0, 'N'}, {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *as = NULL;
    bool quiet = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":N:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'N': as = optarg; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("bundle", c, opts, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("bundle", "import: missing FILE");
    if (optind + 1 < argc) return cli_usage_error("bundle", "unexpected argument '%s'", argv[optind + 1]);
    byoai_store *s = cli_store("bundle");
    if (!s) return CLI_ERROR;
    cli_progress pr;
    cli_progress_init(&pr, "bundle", quiet);
    byoai_error err = {0};
    byoai_store_model m;
    int rc = byoai_store_bundle_import(s, argv[optind], as, cli_progress_cb, &pr, &m, &err);
    cli_progress_end(&pr);
    byoai_store_close(s);
    if (rc) return cli_fail("bundle", &err);
    if (!quiet) printf("imported %s%s\n", m.name, m.is_bundle ? " [bundle]" : "");
    return CLI_OK;
}

int cli_bundle(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "export")) return do_export(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "import")) return do_import(argc - 1, argv + 1);
    static const struct option opts[] = {{"role", required_argument, 0, 'r'}, {"system", required_argument, 0, 's'},
                                         {"param", required_argument, 0, 'p'}, {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    byoai_bundle_member_spec specs[16];
    char roles[16][40];
    size_t n = 0;
    const char *system = NULL;
    bool quiet = false;
    json_t *params = json_object();
    cli_getopt_reset();
    int c, rc = CLI_OK;
    while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
        switch (c) {
        case 'r': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1] || (size_t)(eq - optarg) >= sizeof roles[0]) {
                json_decref(params);
                return cli_usage_error("bundle", "--role expects ROLE=MODEL, got '%s'", optarg);
            }
            if (n == 16) {
                json_decref(params);
                return cli_usage_error("bundle", "a bundle has at most 16 models");
            }
            snprintf(roles[n], sizeof roles[n], "%.*s", (int)(eq - optarg), optarg);
            specs[n].role = roles[n];
            specs[n].model = eq + 1;
            n++;
            break;
        }
        case 's': system = optarg; break;
        case 'p': {
            const char *eq = strchr(optarg, '=');
            if (!eq || !key_ok(optarg, (size_t)(eq - optarg))) {
                json_decref(params);
                return cli_usage_error("bundle", "--param expects KEY=VALUE with KEY of a-z, 0-9, '_', got '%s'", optarg);
            }
            char key[40];
            snprintf(key, sizeof key, "%.*s", (int)(eq - optarg), optarg);
            json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
            if (!v || !(json_is_number(v) || json_is_boolean(v))) {
                json_decref(v);
                v = json_string(eq + 1);
            }
            if (!v) {
                json_decref(params);
                return cli_usage_error("bundle", "--param %s: the value must be valid UTF-8", key);
            }
            json_object_set_new(params, key, v);
            break;
        }
        case 'q': quiet = true; break;
        case 'h': usage(stdout); json_decref(params); return CLI_OK;
        default: json_decref(params); return cli_option_error("bundle", c, opts, argv);
        }
    }
    if (optind >= argc) {
        json_decref(params);
        return cli_usage_error("bundle", "missing NAME");
    }
    const char *name = argv[optind++];
    /* positional models: chat first when free, then model2, model3, ... */
    for (int i = optind; i < argc; i++) {
        bool named = false;
        for (size_t k = 0; k < n; k++) named |= !strcmp(specs[k].model, argv[i]);
        if (named) continue;
        if (n == 16) {
            json_decref(params);
            return cli_usage_error("bundle", "a bundle has at most 16 models");
        }
        bool chat_taken = false;
        for (size_t k = 0; k < n; k++) chat_taken |= !strcmp(specs[k].role, "chat");
        if (!chat_taken) snprintf(roles[n], sizeof roles[n], "chat");
        else snprintf(roles[n], sizeof roles[n], "model%zu", n + 1);
        specs[n].role = roles[n];
        specs[n].model = argv[i];
        n++;
    }
    if (!n) {
        json_decref(params);
        return cli_usage_error("bundle", "missing MODEL: name the installed models to bundle");
    }
    char *pj = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(params);
    byoai_store *s = cli_store("bundle");
    if (!s) {
        free(pj);
        return CLI_ERROR;
    }
    byoai_error err = {0};
    if (byoai_store_bundle_create(s, name, specs, n, system, pj, &err)) rc = cli_fail("bundle", &err);
    else if (!quiet) {
        printf("bundle %s:", name);
        for (size_t k = 0; k < n; k++) printf(" %s=%s", specs[k].role, specs[k].model);
        printf("\n");
    }
    free(pj);
    byoai_store_close(s);
    return rc;
}
