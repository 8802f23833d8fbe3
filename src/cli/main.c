/* byoai: command-line entry point; dispatches to one file per subcommand. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const cli_command COMMANDS[] = {
    {"run", "generate text with a model", cli_run},
    {"info", "describe a GGUF model file", cli_info},
    {"tokenize", "show how a model splits text into tokens", cli_tokenize},
    {"serve", "serve models over the OpenAI API, with a web app to chat", cli_serve},
    {"apikey", "create, list and revoke API keys for byoai serve", cli_apikey},
    {"search", "search the registries' models", cli_search},
    {"list", "list installed models (--available: offered ones)", cli_list},
    {"show", "describe an installed or offered model", cli_show},
    {"install", "download and install models", cli_install},
    {"update", "update installed models (--check: list what changed)", cli_update},
    {"remove", "uninstall models", cli_remove},
    {"gc", "reclaim files no model uses", cli_gc},
    {"import", "install a local GGUF file", cli_import},
    {"bundle", "bundle models; export and import bundles", cli_bundle},
    {"publish", "upload a model to a registry", cli_publish},
    {"registry", "configure registries; host one", cli_registry},
    {"index", "validate an index.json file", cli_index},
    {"key", "create and show your publisher key", cli_key},
    {"quantize", "convert a model to another tensor type or mix", cli_quantize},
    {"bench", "measure a model's prompt and generation speed", cli_bench},
    {"hw", "show this machine's CPU, memory and bandwidth", cli_hw},
    {"cluster", "pool machines into a private cluster that runs models together", cli_cluster},
    {"version", "print the version", cli_version},
};

int cli_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("byoai %s\n", BYOAI_VERSION);
    return CLI_OK;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: byoai COMMAND [ARGS...]\n"
            "\n"
            "byoai finds, installs and runs open AI models on your own machines.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f,
            "\n"
            "Run 'byoai COMMAND --help' for a command's options.\n"
            "\n"
            "Exit status: 0 success, 1 runtime error, 2 usage error.\n"
            "Environment: BYOAI_HOME is the model store (default ~/.local/share/byoai);\n"
            "             BYOAI_LOG=error|warn|info|debug sets the log level;\n"
            "             BYOAI_SIMD=scalar|avx2|avx512 caps the kernels used.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "--version")) return cli_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    const char *names[sizeof COMMANDS / sizeof COMMANDS[0]];
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) names[i] = COMMANDS[i].name;
    const char *near = cli_closest(cmd, names, sizeof names / sizeof names[0]);
    if (near) {
        fprintf(stderr, "byoai: unknown command '%s'; did you mean '%s'?\nRun 'byoai --help' for the list of commands.\n",
                cmd, near);
        return CLI_USAGE;
    }
    fprintf(stderr, "byoai: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return CLI_USAGE;
}
