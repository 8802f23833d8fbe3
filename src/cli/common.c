/* Helpers shared by the subcommands: argument parsing and error reporting. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#include <unistd.h>

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "byoai %s: %s\nTry 'byoai %s --help' for usage.\n", cmd, msg, cmd);
    return CLI_USAGE;
}

int cli_fail(const char *cmd, const byoai_error *err) {
    fprintf(stderr, "byoai %s: error: %s\n", cmd, err->msg[0] ? err->msg : byoai_status_name(err->code));
    return CLI_ERROR;
}

bool cli_parse_int(const char *cmd, const char *opt, const char *s, long long min, long long max, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        cli_usage_error(cmd, "%s expects a whole number, got '%s'", opt, s);
        return false;
    }
    if (v < min || v > max) {
        cli_usage_error(cmd, "%s must be between %lld and %lld, got %lld", opt, min, max, v);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_float(const char *cmd, const char *opt, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v)) {
        cli_usage_error(cmd, "%s expects a number, got '%s'", opt, s);
        return false;
    }
    if (v < min || v > max) {
        cli_usage_error(cmd, "%s must be between %g and %g, got %g", opt, min, max, v);
        return false;
    }
    *out = v;
    return true;
}

byoai_store *cli_store(const char *cmd) {
    byoai_error err = {0};
    byoai_store *s;
    if (byoai_store_open(NULL, &s, &err)) {
        cli_fail(cmd, &err);
        return NULL;
    }
    return s;
}

bool cli_resolve_model_info(const char *cmd, const char *arg, char *path, size_t cap, byoai_store_model *info) {
    struct stat st;
    if (info) memset(info, 0, sizeof *info);
    /* a file path wins over an installed name; checked here too so that
     * running a plain file never creates a store in $BYOAI_HOME */
    if (stat(arg, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            fprintf(stderr, "byoai %s: error: %s is not a regular file\n", cmd, arg);
            return false;
        }
        if (strlen(arg) >= cap) {
            fprintf(stderr, "byoai %s: error: path too long\n", cmd);
            return false;
        }
        strcpy(path, arg);
        return true;
    }
    byoai_store *s = cli_store(cmd);
    if (!s) return false;
    byoai_error err = {0};
    byoai_store_model m;
    int rc = byoai_store_resolve(s, arg, path, cap, &m, &err);
    byoai_store_close(s);
    if (rc) {
        cli_fail(cmd, &err);
        return false;
    }
    if (info) *info = m;
    return true;
}

bool cli_resolve_model(const char *cmd, const char *arg, char *path, size_t cap) {
    return cli_resolve_model_info(cmd, arg, path, cap, NULL);
}

bool cli_parse_bytes(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    if (byoai_parse_bytes(s, out) != 0) {
        cli_usage_error(cmd, "%s expects a size such as 500K, 2M or 1G, got '%s'", opt, s);
        return false;
    }
    return true;
}

bool cli_registries(const char *cmd, byoai_store *s, const char *only, byoai_registry_conf **out, size_t *n) {
    byoai_error err = {0};
    *out = NULL;
    *n = 0;
    if (only) {
        byoai_registry_conf *r = calloc(1, sizeof *r);
        if (r && byoai_registry_get(s, only, r, &err) == 0) {
            *out = r;
            *n = 1;
            return true;
        }
        free(r);
    } else if (byoai_registry_list(s, out, n, &err) == 0 && *n) {
        return true;
    }
    if (!err.code) byoai_error_set(&err, BYOAI_ENOMEM, "out of memory");
    cli_fail(cmd, &err);
    return false;
}

void cli_print_json(json_t *v) {
    json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("\n");
    json_decref(v);
}

void cli_note(const char *cmd, const char *note) {
    if (note && *note) fprintf(stderr, "byoai %s: note: %s\n", cmd, note);
}

void cli_getopt_reset(void) {
    optind = 1;
    opterr = 0;
}

const char *cli_bytes(uint64_t n, char *buf, size_t cap) { return byoai_format_bytes(n, buf, cap); }

const char *cli_count(uint64_t n, char *buf, size_t cap) {
    if (n >= 1000000000ull) snprintf(buf, cap, "%.2f B", (double)n / 1e9);
    else if (n >= 1000000ull) snprintf(buf, cap, "%.1f M", (double)n / 1e6);
    else if (n >= 1000ull) snprintf(buf, cap, "%.1f K", (double)n / 1e3);
    else snprintf(buf, cap, "%llu", (unsigned long long)n);
    return buf;
}

void cli_json_string(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { fputc('\\', f); fputc(c, f); i++; continue; }
        if (c < 0x20) {
            switch (c) {
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            default: fprintf(f, "\\u%04x", c);
            }
            i++;
            continue;
        }
        if (c < 0x80) { fputc(c, f); i++; continue; }
        uint32_t cp;
        int l = byoai_utf8_decode(s + i, len - i, &cp);
        if (cp == 0xFFFD && !(l == 3 && (unsigned char)s[i] == 0xEF)) fputs("\\ufffd", f);
        else fwrite(s + i, 1, (size_t)l, f);
        i += (size_t)l;
    }
    fputc('"', f);
}

uint64_t cli_index_bundle_size(const byoai_index *ix, const byoai_index_bundle *b, const byoai_machine *mc) {
    uint64_t sum = 0;
    for (size_t i = 0; i < b->n_members; i++) {
        const byoai_index_model *m = byoai_index_find_model(ix, b->members[i].model);
        size_t vi;
        if (!m || byoai_index_choose_variant(m, mc, b->members[i].variant, &vi, NULL, NULL)) continue;
        bool dup = false; /* a model twice (two roles) is one file */
        for (size_t j = 0; j < i && !dup; j++)
            dup = !strcmp(b->members[j].model, b->members[i].model) &&
                  !strcmp(b->members[j].variant ? b->members[j].variant : "", b->members[i].variant ? b->members[i].variant : "");
        if (!dup) sum += m->variants[vi].approx_size;
    }
    return sum;
}
