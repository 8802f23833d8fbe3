/* byoai key: the publisher key that signs `byoai publish` uploads. */
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai key generate NAME [--key FILE] [--force]\n"
"       byoai key show [--key FILE]\n"
"\n"
"generate creates an ed25519 key pair for publisher NAME (1-63 of a-z, 0-9,\n"
"'_', '-') in $BYOAI_HOME/keys/publisher.key (mode 0600) and prints the\n"
"public key. show prints the public key line of an existing key; give it to\n"
"a registry's maintainer, who allows you with\n"
"  byoai registry add-publisher DIR NAME 'byoai-ed25519 HEX NAME'\n"
"\n"
"Options:\n"
"      --key FILE   the secret key file (default: $BYOAI_HOME/keys/publisher.key)\n"
"      --force      replace an existing key (the old one is lost)\n"
"  -h, --help       show this help\n"
"\n"
"Exit status: 0 success, 1 failure, 2 usage error.\n");
}

int cli_key(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "generate") && strcmp(argv[1], "show"))) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            usage(stdout);
            return CLI_OK;
        }
        return cli_usage_error("key", "expected 'generate' or 'show'");
    }
    bool gen = !strcmp(argv[1], "generate");
    static const struct option opts[] = {{"key", required_argument, 0, 'k'}, {"force", no_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *path = NULL;
    bool force = false;
    argc--, argv++;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'k': path = optarg; break;
        case 'f': force = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("key", c, opts, argv);
        }
    }
    if (gen && optind + 1 != argc) return cli_usage_error("key", "generate: expected one NAME");
    if (!gen && optind != argc) return cli_usage_error("key", "unexpected argument '%s'", argv[optind]);
    byoai_store *s = cli_store("key");
    if (!s) return CLI_ERROR;
    char def[4200];
    byoai_key_default_path(s, def, sizeof def);
    if (!path) path = def;
    byoai_error err = {0};
    byoai_key k;
    int rc = 0;
    if (gen) {
        if (byoai_fs_exists(path) && !force) {
            byoai_store_close(s);
            fprintf(stderr, "byoai key: error: %s already exists; use --force to replace it (the old key is lost)\n",
                    path);
            return CLI_ERROR;
        }
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            rc = byoai_fs_mkdirs(dir, 0700, &err);
        }
        if (!rc && force) remove(path);
        if (!rc) rc = byoai_key_generate(argv[optind], &k, &err);
        if (!rc) rc = byoai_key_save_secret(path, &k, &err);
    } else {
        rc = byoai_key_load_secret(path, &k, &err);
    }
    byoai_store_close(s);
    if (rc) return cli_fail("key", &err);
    char pub[160];
    byoai_key_public_text(&k, pub);
    printf("%s\n", pub);
    if (gen) fprintf(stderr, "secret key written to %s; give the line above to a registry's maintainer\n", path);
    return CLI_OK;
}
