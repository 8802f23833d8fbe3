/* Progress of downloads, copies and uploads on standard error: a bar with
 * bytes, rate and ETA on a terminal; on anything else, plain lines (start,
 * every 10%, phase changes), so logs stay readable. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_progress_init(cli_progress *p, const char *cmd, bool quiet) {
    memset(p, 0, sizeof *p);
    p->cmd = cmd;
    p->quiet = quiet;
    p->tty = isatty(2);
    p->last_decile = -1;
}

void cli_progress_end(cli_progress *p) {
    if (p->line_open) {
        fputc('\n', stderr);
        p->line_open = false;
    }
}

static const char *eta(double secs, char *buf, size_t cap) {
    if (!isfinite(secs) || secs < 0 || secs > 360000) snprintf(buf, cap, "--");
    else if (secs >= 3600) snprintf(buf, cap, "%dh%02dm", (int)secs / 3600, ((int)secs % 3600) / 60);
    else if (secs >= 60) snprintf(buf, cap, "%dm%02ds", (int)secs / 60, (int)secs % 60);
    else snprintf(buf, cap, "%ds", (int)ceil(secs));
    return buf;
}

void cli_print_plan(FILE *f, const byoai_install_plan *pl, bool dry_run) {
    char a[32], b[32], c[32];
    fprintf(f, "%s%s%s%s from %s%s%s\n", dry_run ? "would install " : "installing ", pl->name,
            pl->variant[0] ? ":" : "", pl->variant, pl->registry, pl->revision[0] ? ", revision " : "", pl->revision);
    fprintf(f, "  download %s, disk needed %s (%zu file%s, %zu already here)\n", cli_bytes(pl->download_bytes, a, sizeof a),
            cli_bytes(pl->download_bytes, b, sizeof b), pl->n_files, pl->n_files == 1 ? "" : "s", pl->n_present);
    if (pl->ram_bytes) fprintf(f, "  memory to run: about %s\n", cli_bytes(pl->ram_bytes, c, sizeof c));
    if (pl->why[0]) fprintf(f, "  chosen: %s\n", pl->why);
    if (pl->unsupported_arch[0])
        fprintf(f, "  note: this build of byoai cannot run architecture '%s' yet (`byoai run` will say so); the file "
                "is stored for when it can, or for other tools\n", pl->unsupported_arch);
}

int cli_progress_cb(void *user, const byoai_progress *pr) {
    cli_progress *p = user;
    if (!strcmp(pr->phase, "resolved")) {
        if (p->plan && !p->quiet) cli_print_plan(stderr, p->plan, false);
        return 0;
    }
    if (p->quiet) return 0;
    bool changed = strcmp(p->phase, pr->phase) || strcmp(p->what, pr->what ? pr->what : "");
    if (changed) {
        cli_progress_end(p);
        snprintf(p->phase, sizeof p->phase, "%s", pr->phase);
        snprintf(p->what, sizeof p->what, "%s", pr->what ? pr->what : "");
        p->last_decile = -1;
    }
    if (!strcmp(pr->phase, "resolving") || !strcmp(pr->phase, "done")) return 0;
    char a[32], b[32], c[32], d[32];
    double now = byoai_time_now();
    bool bytes = !strcmp(pr->phase, "downloading") || !strcmp(pr->phase, "uploading") ||
                 !strcmp(pr->phase, "copying") || !strcmp(pr->phase, "exporting") || !strcmp(pr->phase, "importing") ||
                 !strcmp(pr->phase, "loading");
    if (!bytes) { /* waiting, verifying, retrying: one line each */
        if (changed) {
            if (!strcmp(pr->phase, "retrying"))
                fprintf(stderr, "byoai %s: connection lost at %s of %s; retrying\n", p->cmd,
                        cli_bytes(pr->done, a, sizeof a), p->what);
            else fprintf(stderr, "%s %s\n", pr->phase, p->what);
        }
        return 0;
    }
    double pct = pr->total ? 100.0 * (double)pr->done / (double)pr->total : 0;
    double left = pr->rate > 0 && pr->total > pr->done ? (double)(pr->total - pr->done) / pr->rate : NAN;
    if (p->tty) {
        if (!changed && now - p->last < 0.1) return 0;
        p->last = now;
        int width = 24, fill = pr->total ? (int)(pct / 100.0 * width) : 0;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
        bar[width] = '\0';
        fprintf(stderr, "\r%s %-24.24s [%s] %3.0f%% %9s / %-9s %9s/s ETA %-6s", pr->phase, p->what, bar, pct,
                cli_bytes(pr->done, a, sizeof a), pr->total ? cli_bytes(pr->total, b, sizeof b) : "?",
                cli_bytes((uint64_t)pr->rate, c, sizeof c), eta(left, d, sizeof d));
        p->line_open = true;
        return 0;
    }
    int decile = pr->total ? (int)(pct / 10) : (int)(pr->done >> 24);
    if (decile == p->last_decile) return 0;
    p->last_decile = decile;
    fprintf(stderr, "%s %s: %s of %s (%.0f%%), %s/s, ETA %s\n", pr->phase, p->what, cli_bytes(pr->done, a, sizeof a),
            pr->total ? cli_bytes(pr->total, b, sizeof b) : "?", pct, cli_bytes((uint64_t)pr->rate, c, sizeof c),
            eta(left, d, sizeof d));
    return 0;
}

typedef struct {
    cli_progress p;
    double t0;
} load_bar;

static int load_cb(void *user, const byoai_progress *pr) {
    load_bar *b = user;
    /* a quick load (the file in the page cache, a small model) shows nothing */
    if (byoai_time_now() - b->t0 < 0.5 && pr->done < pr->total) return 0;
    if (!b->p.phase[0] && pr->done >= pr->total) return 0; /* done before the bar ever showed */
    return cli_progress_cb(&b->p, pr);
}

int cli_load_model(const char *cmd, const char *path, byoai_model **out, byoai_error *err) {
    load_bar b;
    cli_progress_init(&b.p, cmd, false);
    b.t0 = byoai_time_now();
    byoai_model_params mp = {.progress = load_cb, .progress_user = &b};
    int rc = byoai_model_load(path, &mp, out, err);
    cli_progress_end(&b.p);
    return rc;
}
