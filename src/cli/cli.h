/* Shared pieces of the byoai command-line tools. */
#ifndef BYOAI_CLI_H
#define BYOAI_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "byoai/base.h"

/* Exit codes, documented in docs/cli.md */
enum { CLI_OK = 0, CLI_ERROR = 1, CLI_USAGE = 2 };

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*fn)(int argc, char **argv);
} cli_command;

/* one function per subcommand, each in src/cli/<name>.c */
int cli_version(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_apikey(int argc, char **argv);
int cli_hw(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_quantize(int argc, char **argv);

/* Report a usage error ("byoai CMD: MESSAGE" + a hint to --help); returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report a runtime error from a byoai_error; returns CLI_ERROR. */
int cli_fail(const char *cmd, const byoai_error *err);
/* Parse numbers strictly (whole string, in range); on failure print a usage
 * error naming the option and return false. */
bool cli_parse_int(const char *cmd, const char *opt, const char *s, long long min, long long max, long long *out);
bool cli_parse_float(const char *cmd, const char *opt, const char *s, double min, double max, double *out);
/* Resolve a MODEL argument (a .gguf path, or later an installed name) to a
 * file path. Prints the error and returns false when it cannot. */
bool cli_resolve_model(const char *cmd, const char *arg, char *path, size_t cap);
/* Prepare getopt_long for a subcommand's argv (resets state, stops at errors quietly). */
void cli_getopt_reset(void);
/* Human-readable byte count ("1.2 GiB") into buf. */
const char *cli_bytes(uint64_t n, char *buf, size_t cap);
/* Write s as a JSON string literal (quotes included); invalid UTF-8 bytes
 * become U+FFFD. */
void cli_json_string(FILE *f, const char *s, size_t len);

#endif
