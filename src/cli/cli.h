/* Shared pieces of the byoai command-line tools. */
#ifndef BYOAI_CLI_H
#define BYOAI_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "byoai/base.h"
#include "byoai/model.h"
#include "byoai/registry.h"
#include "byoai/store.h"

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
int cli_search(int argc, char **argv);
int cli_list(int argc, char **argv);
int cli_show(int argc, char **argv);
int cli_install(int argc, char **argv);
int cli_update(int argc, char **argv);
int cli_remove(int argc, char **argv);
int cli_gc(int argc, char **argv);
int cli_import(int argc, char **argv);
int cli_bundle(int argc, char **argv);
int cli_publish(int argc, char **argv);
int cli_registry(int argc, char **argv);
int cli_index(int argc, char **argv);
int cli_key(int argc, char **argv);
int cli_hw(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_cluster(int argc, char **argv);

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
/* Same, and when it is an installed model or bundle, describe it in *info
 * (info->name is "" for a plain file). */
bool cli_resolve_model_info(const char *cmd, const char *arg, char *path, size_t cap, byoai_store_model *info);
/* Open the store ($BYOAI_HOME); prints the error and returns NULL on failure. */
byoai_store *cli_store(const char *cmd);
/* Parse a byte count option ("500K", "2M"); prints a usage error on failure. */
bool cli_parse_bytes(const char *cmd, const char *opt, const char *s, uint64_t *out);

/* Progress on standard error: a bar (bytes, rate, ETA) on a terminal,
 * plain lines otherwise, nothing with quiet. */
typedef struct cli_progress {
    const char *cmd;
    bool quiet, tty, line_open;
    double last;
    int last_decile;
    char phase[16], what[160];
    byoai_install_plan *plan;  /* printed when the "resolved" phase arrives */
} cli_progress;
void cli_progress_init(cli_progress *p, const char *cmd, bool quiet);
int cli_progress_cb(void *user, const byoai_progress *pr);
/* End an open bar line. */
void cli_progress_end(cli_progress *p);
/* Load a model for a command, with a progress bar on standard error when
 * loading takes longer than half a second (a large file read from disk). */
int cli_load_model(const char *cmd, const char *path, byoai_model **out, byoai_error *err);
/* Print an install plan (what will be downloaded, disk and memory needed). */
void cli_print_plan(FILE *f, const byoai_install_plan *plan, bool dry_run);
/* The registries a listing command reads: the one named by --registry (only
 * != NULL) or all configured. *out is malloc'd; prints the error and returns
 * false when there are none. */
bool cli_registries(const char *cmd, byoai_store *s, const char *only, byoai_registry_conf **out, size_t *n);
/* A bundle of an index: the sum of the sizes of the variants its members
 * would install here (members not in the index count 0). */
uint64_t cli_index_bundle_size(const byoai_index *ix, const byoai_index_bundle *b, const byoai_machine *mc);
/* Print a JSON value on stdout (indented, then a newline) and release it. */
void cli_print_json(json_t *v);
/* Print an index note ("offline: ...") to standard error when there is one. */
void cli_note(const char *cmd, const char *note);

/* "Did you mean": the edit distance between two words (swaps of neighbours
 * count one), and the one known word close enough to be what was meant
 * (NULL: none, or two equally close). */
size_t cli_edit_distance(const char *a, const char *b);
const char *cli_closest(const char *typed, const char *const *known, size_t n);
/* Report what getopt_long returned c (':' missing value, else unknown) for:
 * "option --x needs a value", "unknown option '--jsn'; did you mean
 * '--json'?", or an abbreviation that fits several options. CLI_USAGE. */
int cli_option_error(const char *cmd, int c, const struct option *opts, char **argv);
/* "unknown WHAT 'x'; did you mean 'y'?" (or the list of known words). CLI_USAGE. */
int cli_unknown_word(const char *cmd, const char *what, const char *typed, const char *const *known, size_t n);

/* Prepare getopt_long for a subcommand's argv (resets state, stops at errors quietly). */
void cli_getopt_reset(void);
/* Human-readable byte count ("1.2 GiB") into buf. */
/* A count with a K/M/B suffix ("292.8 K", "1.10 B"): parameters, tokens. */
const char *cli_count(uint64_t n, char *buf, size_t cap);
const char *cli_bytes(uint64_t n, char *buf, size_t cap);
/* A count for people: "292.8 K", "1.24 B" (parameters). Returns buf. */
const char *cli_count(uint64_t n, char *buf, size_t cap);
/* Write s as a JSON string literal (quotes included); invalid UTF-8 bytes
 * become U+FFFD. */
void cli_json_string(FILE *f, const char *s, size_t len);

#endif
