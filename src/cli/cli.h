/* Shared pieces of the byoai command-line tools. */
#ifndef BYOAI_CLI_H
#define BYOAI_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "byoai/base.h"

enum { CLI_OK = 0, CLI_ERROR = 1, CLI_USAGE = 2 };

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*fn)(int argc, char **argv);
} cli_command;


/* one function per subcommand, each in src/cli/<name>.c */
int cli_version(int argc, char **argv);

#endif
