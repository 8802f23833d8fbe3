/* "Did you mean": the nearest known word to a mistyped command, option or
 * model name, by edit distance (insertions, deletions, substitutions and
 * swaps of neighbouring letters each cost one). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

size_t cli_edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) return (size_t)-1; /* never close: nobody mistypes 64 letters */
    size_t d[65][65];
    for (size_t i = 0; i <= n; i++) d[i][0] = i;
    for (size_t j = 0; j <= m; j++) d[0][j] = j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

/* close enough to be a typo: one edit for short words, two from five
 * letters, three from nine; a prefix of a long word counts too */
static bool close_enough(const char *typed, const char *known, size_t dist) {
    size_t n = strlen(typed);
    size_t limit = n < 5 ? 1 : n < 9 ? 2 : 3;
    if (dist <= limit) return true;
    return n >= 3 && !strncmp(typed, known, n);
}

const char *cli_closest(const char *typed, const char *const *known, size_t n) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    bool tie = false;
    for (size_t i = 0; i < n; i++) {
        if (!known[i]) continue;
        size_t d = cli_edit_distance(typed, known[i]);
        if (!close_enough(typed, known[i], d)) continue;
        if (d < best_d) best = known[i], best_d = d, tie = false;
        else if (d == best_d && strcmp(best, known[i])) tie = true;
    }
    return tie ? NULL : best;
}

int cli_option_error(const char *cmd, int c, const struct option *opts, char **argv) {
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    if (c == ':') return cli_usage_error(cmd, "option %s needs a value", arg);
    if (optopt && optopt < 256 && !(arg[0] == '-' && arg[1] == '-'))
        return cli_usage_error(cmd, "unknown option '-%c'", optopt);
    if (strncmp(arg, "--", 2)) return cli_usage_error(cmd, "unknown option '%s'", arg);
    char name[80];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(arg + 2, "="), arg + 2);
    for (const struct option *o = opts; o->name; o++)
        if (!strcmp(o->name, name) && o->has_arg == no_argument && strchr(arg, '='))
            return cli_usage_error(cmd, "option '--%s' takes no value", name);
    /* an abbreviation that fits several options */
    char fits[256] = "";
    size_t n_fit = 0, n_opts = 0;
    for (const struct option *o = opts; o->name; o++, n_opts++)
        if (name[0] && !strncmp(o->name, name, strlen(name))) {
            size_t l = strlen(fits);
            snprintf(fits + l, sizeof fits - l, "%s--%s", n_fit++ ? ", " : "", o->name);
        }
    if (n_fit > 1) return cli_usage_error(cmd, "option '--%s' is ambiguous: it could be %s", name, fits);
    const char **names = calloc(n_opts ? n_opts : 1, sizeof *names);
    const char *near = NULL;
    if (names) {
        for (size_t i = 0; i < n_opts; i++) names[i] = opts[i].name;
        near = cli_closest(name, names, n_opts);
    }
    int rc = near ? cli_usage_error(cmd, "unknown option '%s'; did you mean '--%s'?", arg, near)
                  : cli_usage_error(cmd, "unknown option '%s'", arg);
    free(names);
    return rc;
}

int cli_unknown_word(const char *cmd, const char *what, const char *typed, const char *const *known, size_t n) {
    const char *near = cli_closest(typed, known, n);
    char list[512] = "";
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? (i + 1 == n ? " or " : ", ") : "", known[i]);
    }
    if (near) return cli_usage_error(cmd, "unknown %s '%s'; did you mean '%s'?", what, typed, near);
    return cli_usage_error(cmd, "unknown %s '%s' (%s)", what, typed, list);
}
