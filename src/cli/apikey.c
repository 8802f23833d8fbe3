/* byoai apikey: create, list and revoke the API keys `byoai serve` accepts. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "byoai/server.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai apikey create NAME [--db PATH] [--json]\n"
"       byoai apikey list [--db PATH] [--json]\n"
"       byoai apikey revoke ID|NAME [--db PATH]\n"
"\n"
"Manage the API keys stored in the server database (default\n"
"$BYOAI_HOME/server.db). Keys are stored only as SHA-256 digests: `create`\n"
"prints the new key once; keep it. While any key exists (or `byoai serve\n"
"--api-key` is given), the server requires one on every API request as\n"
"'Authorization: Bearer KEY'. A running server sees changes within seconds.\n"
"\n"
"Options:\n"
"      --db PATH   the server database\n"
"      --json      machine-readable output\n"
"  -h, --help      show this help\n"
"\n"
"Exit status: 0 success, 1 runtime error (e.g. no such key), 2 usage error.\n");
}

static void print_time(uint64_t t, char *buf, size_t cap) {
    if (!t) {
        snprintf(buf, cap, "never");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%SZ", &tm);
}

int cli_apikey(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'}, {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *db_opt = NULL;
    bool json = false;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': db_opt = optarg; break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return CLI_OK;
        default: return cli_option_error("apikey", c, opts, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("apikey", "missing a subcommand: create, list or revoke");
    const char *sub = argv[optind];
    char db[1100];
    if (db_opt) snprintf(db, sizeof db, "%s", db_opt);
    else byoai_server_default_db(NULL, db, sizeof db);
    byoai_error err = {0};
    if (!strcmp(sub, "create")) {
        if (argc - optind != 2) return cli_usage_error("apikey", "create expects one NAME");
        char key[80];
        byoai_api_key_info info;
        if (byoai_api_key_create(db, argv[optind + 1], key, &info, &err)) return cli_fail("apikey", &err);
        if (json) {
            printf("{\"id\": %lld, \"name\": ", (long long)info.id);
            cli_json_string(stdout, info.name, strlen(info.name));
            printf(", \"key\": \"%s\"}\n", key);
        } else {
            printf("%s\n", key);
            fprintf(stderr, "byoai apikey: created key %lld '%s'. It is shown only now: store it safely.\n",
                    (long long)info.id, info.name);
        }
        return CLI_OK;
    }
    if (!strcmp(sub, "list")) {
        if (argc - optind != 1) return cli_usage_error("apikey", "list takes no arguments");
        byoai_api_key_info *keys;
        size_t n;
        if (byoai_api_key_list(db, &keys, &n, &err)) return cli_fail("apikey", &err);
        if (json) printf("[");
        else if (n) printf("%-5s %-24s %-16s %-21s %-21s %s\n", "ID", "NAME", "PREFIX", "CREATED", "LAST USED", "STATE");
        for (size_t i = 0; i < n; i++) {
            char cr[32], lu[32];
            print_time(keys[i].created_at, cr, sizeof cr);
            print_time(keys[i].last_used_at, lu, sizeof lu);
            if (json) {
                printf("%s{\"id\": %lld, \"name\": ", i ? ", " : "", (long long)keys[i].id);
                cli_json_string(stdout, keys[i].name, strlen(keys[i].name));
                printf(", \"prefix\": \"%s\", \"created_at\": %llu, \"last_used_at\": %llu, \"revoked\": %s}",
                       keys[i].prefix, (unsigned long long)keys[i].created_at,
                       (unsigned long long)keys[i].last_used_at, keys[i].revoked ? "true" : "false");
            } else {
                printf("%-5lld %-24s %-16s %-21s %-21s %s\n", (long long)keys[i].id, keys[i].name, keys[i].prefix, cr,
                       lu, keys[i].revoked ? "revoked" : "active");
            }
        }
        if (json) printf("]\n");
        else if (!n) fprintf(stderr, "byoai apikey: no keys; create one with `byoai apikey create NAME`\n");
        free(keys);
        return CLI_OK;
    }
    if (!strcmp(sub, "revoke")) {
        if (argc - optind != 2) return cli_usage_error("apikey", "revoke expects one ID or NAME");
        if (byoai_api_key_revoke(db, argv[optind + 1], &err)) return cli_fail("apikey", &err);
        fprintf(stderr, "byoai apikey: revoked %s\n", argv[optind + 1]);
        return CLI_OK;
    }
    static const char *const subs[] = {"create", "list", "revoke"};
    return cli_unknown_word("apikey", "subcommand", sub, subs, 3);
}
