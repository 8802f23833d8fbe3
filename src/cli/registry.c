/* byoai registry: configure the registries this machine uses, and host one
 * (init, add-publisher, sign, serve). */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai registry list [--json]\n"
"       byoai registry add NAME URL [--key HEX | --key-file FILE] [--default]\n"
"       byoai registry remove NAME\n"
"       byoai registry init DIR\n"
"       byoai registry add-publisher DIR NAME (PUBLIC-KEY | --key-file FILE)\n"
"       byoai registry sign DIR\n"
"       byoai registry serve DIR [--port P] [--bind ADDR] [--max-upload SIZE] [--quiet]\n"
"\n"
"Using registries:\n"
"  list            the configured registries (the default first)\n"
"  add NAME URL    add or replace a registry (https://, http:// or file:///); with\n"
"                  --key, index.json must carry a valid signature by that key\n"
"                  (the registry's public key: its DIR/registry.pub)\n"
"  remove NAME     forget a registry (its cache stays until removed by hand)\n"
"Without configuration the default registry is the curated index built into\n"
"byoai. BYOAI_REGISTRY=URL (and BYOAI_REGISTRY_KEY=HEX) replaces the list with\n"
"one registry for a single command.\n"
"\n"
"Hosting a registry (a directory of static files, see docs/registry.md):\n"
"  init DIR                 create DIR's layout and the registry's signing key\n"
"  add-publisher DIR NAME K allow publisher NAME (K: their `byoai key show` line)\n"
"  sign DIR                 validate DIR/index.json and sign it again after an edit\n"
"  serve DIR                serve DIR over HTTP (GET index.json, index.json.sig,\n"
"                           registry.pub, blobs/...; PUT /api/v1/publish/NAME for\n"
"                           `byoai publish`); prints 'listening on URL', logs one\n"
"                           line per request on standard error; Ctrl-C stops it\n"
"\n"
"Options:\n"
"      --json            (list) print a JSON array\n"
"      --key HEX         (add) the registry's public key\n"
"      --key-file FILE   (add, add-publisher) read the key from FILE\n"
"      --default         (add) make it the default registry\n"
"  -p, --port P          (serve) port, 0 = any free port (default 8088)\n"
"      --bind ADDR       (serve) address to listen on (default 127.0.0.1)\n"
"      --max-upload SIZE (serve) largest accepted upload (default 64G)\n"
"  -q, --quiet           (serve) no request log\n"
"  -h, --help            show this help\n"
"\n"
"Exit status: 0 success, 1 failure, 2 usage error.\n");
}

static int read_key_file(const char *path, char *out, size_t cap) {
    char *text;
    byoai_error err = {0};
    if (byoai_fs_read_all(path, 4096, &text, NULL, &err)) return cli_fail("registry", &err);
    snprintf(out, cap, "%s", text);
    free(text);
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ')) out[--n] = '\0';
    return 0;
}

static int cmd_list(byoai_store *s, bool json) {
    byoai_registry_conf *list;
    size_t n;
    byoai_error err = {0};
    if (byoai_registry_list(s, &list, &n, &err)) return cli_fail("registry", &err);
    json_t *arr = json ? json_array() : NULL;
    for (size_t i = 0; i < n; i++) {
        if (json)
            json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:b}", "name", list[i].name, "url", list[i].url, "key",
                                                 list[i].key, "default", list[i].is_default));
        else
            printf("%-16s %s%s%s\n", list[i].name, !strcmp(list[i].url, "builtin:") ? "(built-in curated index)" : list[i].url,
                   list[i].key[0] ? "  [signed]" : "", list[i].is_default ? "  (default)" : "");
    }
    if (json) {
        cli_print_json(arr);
    }
    free(list);
    return CLI_OK;
}

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void log_line(void *user, const char *line) {
    (void)user;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
    pthread_mutex_unlock(&mu);
}

static int cmd_serve(const char *dir, byoai_serve_opts *o, bool quiet) {
    if (!quiet) o->log = log_line;
    byoai_registry_server *srv;
    byoai_error err = {0};
    if (byoai_registry_serve_start(dir, o, &srv, &err)) return cli_fail("registry", &err);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    const char *addr = o->bind_addr ? o->bind_addr : "127.0.0.1";
    bool v6 = strchr(addr, ':') != NULL;
    printf("listening on http://%s%s%s:%u\n", v6 ? "[" : "", addr, v6 ? "]" : "", byoai_registry_serve_port(srv));
    fflush(stdout);
    while (!g_stop) pause();
    byoai_registry_serve_stop(srv);
    if (!quiet) fprintf(stderr, "stopped\n");
    return CLI_OK;
}

int cli_registry(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc < 2) return cli_usage_error("registry", "missing a subcommand (list, add, remove, init, add-publisher, sign, serve)");
        usage(stdout);
        return CLI_OK;
    }
    const char *sub = argv[1];
    argc--, argv++;
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'},          {"key", required_argument, 0, 'k'},
        {"key-file", required_argument, 0, 'K'}, {"default", no_argument, 0, 'd'},
        {"port", required_argument, 0, 'p'},    {"bind", required_argument, 0, 'b'},
        {"max-upload", required_argument, 0, 'm'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    bool json = false, make_default = false, quiet = false;
    const char *key = NULL, *key_file = NULL;
    byoai_serve_opts so = {.port = 8088};
    long long iv;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":p:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'k': key = optarg; break;
        case 'K': key_file = optarg; break;
        case 'd': make_default = true; break;
        case 'p': if (!cli_parse_int("registry", "--port", optarg, 0, 65535, &iv)) return CLI_USAGE; so.port = (uint16_t)iv; break;
        case 'b': so.bind_addr = optarg; break;
        case 'm': if (!cli_parse_bytes("registry", "--max-upload", optarg, &so.max_upload)) return CLI_USAGE; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("registry", c, opts, argv);
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    byoai_error err = {0};
    char keybuf[300];
    if (key_file) {
        if (read_key_file(key_file, keybuf, sizeof keybuf)) return CLI_ERROR;
        key = keybuf;
    }
    if (!strcmp(sub, "init") || !strcmp(sub, "sign") || !strcmp(sub, "serve") || !strcmp(sub, "add-publisher")) {
        int want = !strcmp(sub, "add-publisher") ? (key ? 2 : 3) : 1;
        if (nargs != want)
            return cli_usage_error("registry", "%s: expected %s", sub,
                                   want == 1 ? "DIR" : want == 2 ? "DIR NAME" : "DIR NAME PUBLIC-KEY");
        if (!strcmp(sub, "init")) {
            char pub[160];
            if (byoai_registry_init(args[0], pub, &err)) return cli_fail("registry", &err);
            printf("%s\n", pub);
            fprintf(stderr, "registry ready in %s; clients verify it with `byoai registry add NAME URL --key %.64s`\n",
                    args[0], pub + 14);
            return CLI_OK;
        }
        if (!strcmp(sub, "sign")) {
            if (byoai_registry_sign(args[0], &err)) return cli_fail("registry", &err);
            printf("signed %s/index.json\n", args[0]);
            return CLI_OK;
        }
        if (!strcmp(sub, "add-publisher")) {
            if (byoai_registry_add_publisher(args[0], args[1], key ? key : args[2], &err)) return cli_fail("registry", &err);
            printf("publisher %s may now publish to %s\n", args[1], args[0]);
            return CLI_OK;
        }
        return cmd_serve(args[0], &so, quiet);
    }
    byoai_store *s = cli_store("registry");
    if (!s) return CLI_ERROR;
    int rc = CLI_OK;
    if (!strcmp(sub, "list")) {
        rc = nargs ? cli_usage_error("registry", "list: unexpected argument '%s'", args[0]) : cmd_list(s, json);
    } else if (!strcmp(sub, "add")) {
        if (nargs != 2) rc = cli_usage_error("registry", "add: expected NAME URL");
        else {
            byoai_key k;
            char hex[65] = "";
            if (key && byoai_key_parse_public(key, &k, &err) == 0)
                for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", k.pk[i]);
            if (key && !hex[0]) rc = cli_fail("registry", &err);
            else if (byoai_registry_config_add(s, args[0], args[1], key ? hex : NULL, make_default, &err))
                rc = cli_fail("registry", &err);
            else printf("registry %s = %s%s\n", args[0], args[1], key ? " (signed)" : "");
        }
    } else if (!strcmp(sub, "remove")) {
        if (nargs != 1) rc = cli_usage_error("registry", "remove: expected NAME");
        else if (byoai_registry_config_remove(s, args[0], &err)) rc = cli_fail("registry", &err);
        else printf("removed registry %s\n", args[0]);
    } else {
        static const char *const subs[] = {"list", "add", "remove", "init", "add-publisher", "sign", "serve"};
        rc = cli_unknown_word("registry", "subcommand", sub, subs, sizeof subs / sizeof subs[0]);
    }
    byoai_store_close(s);
    return rc;
}
