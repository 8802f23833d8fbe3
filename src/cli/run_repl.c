/* byoai run's interactive prompt, as Ollama users know it: messages, one
 * per line or several lines between """ marks (or lines ending in \), and
 * commands: /? /help, /bye, /clear, /set parameter NAME VALUE, /set system,
 * /show info|parameters|system. A bad command or a message that cannot fit
 * is refused with a message; only /bye or the end of input ends it. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run.h"

static const char help_text[] =
    "Commands:\n"
    "  /? or /help                 this help\n"
    "  /bye (/exit, /quit)         leave (also Ctrl-D)\n"
    "  /clear                      forget the conversation (the system message stays)\n"
    "  /set parameter NAME VALUE   change sampling: temperature, top_k, top_p, min_p,\n"
    "                              repeat_penalty, repeat_last_n, presence_penalty,\n"
    "                              frequency_penalty, seed, num_predict\n"
    "  /set system TEXT            the system message (chat models)\n"
    "  /show info                  the model: architecture, size, type, context, template\n"
    "  /show parameters            the sampling parameters in use\n"
    "  /show system                the system message\n"
    "\n"
    "Use \"\"\" to begin and end a message of several lines; a line that ends with \\\n"
    "continues on the next one. Ctrl-C stops an answer.\n";

/* One line without its line ending; false at the end of input. */
static bool read_line(char **line, size_t *cap, size_t *len) {
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) return false;
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = '\0';
    *len = (size_t)n;
    return true;
}

/* The next message: a line, lines joined by a trailing \, or lines between
 * """ marks. Returns false at the end of input (with nothing read). */
static bool read_message(byoai_buf *msg, bool tty) {
    char *line = NULL;
    size_t cap = 0, n;
    byoai_buf_clear(msg);
    if (tty) fprintf(stderr, "\n>>> ");
    if (!read_line(&line, &cap, &n)) {
        free(line);
        return false;
    }
    bool ok = true;
    if (n >= 3 && !strncmp(line, "\"\"\"", 3)) { /* until a line that ends with """ */
        const char *p = line + 3;
        size_t m = n - 3;
        bool first = true;
        for (;;) {
            bool last = m >= 3 && !strcmp(p + m - 3, "\"\"\"");
            if (last) m -= 3;
            if (m || !(first || last)) { /* the lines between the marks, joined by newlines */
                if (msg->len && !(ok = byoai_buf_append(msg, "\n", 1))) break;
                if (!(ok = byoai_buf_append(msg, p, m))) break;
            }
            if (last) break;
            first = false;
            if (tty) fprintf(stderr, "... ");
            if (!read_line(&line, &cap, &n)) break; /* end of input: what was typed is the message */
            p = line;
            m = n;
        }
    } else {
        for (;;) {
            bool more = n > 0 && line[n - 1] == '\\';
            if (!(ok = byoai_buf_append(msg, line, more ? n - 1 : n))) break;
            if (!more) break;
            if (!(ok = byoai_buf_append(msg, "\n", 1))) break;
            if (tty) fprintf(stderr, "... ");
            if (!read_line(&line, &cap, &n)) break;
        }
    }
    free(line);
    if (!ok) fprintf(stderr, "byoai run: error: out of memory reading the message\n");
    if (!msg->data && !byoai_buf_append(msg, "", 0)) return false;
    return true;
}

/* ---- /set and /show ------------------------------------------------------------- */
typedef enum { P_FLOAT, P_INT, P_SEED } param_kind;
typedef struct {
    const char *name, *alias;
    param_kind kind;
    double lo, hi;
} param;

static const param params[] = {
    {"temperature", "temp", P_FLOAT, 0, 100},         {"top_k", NULL, P_INT, 0, 1 << 24},
    {"top_p", NULL, P_FLOAT, 1e-6, 1},                {"min_p", NULL, P_FLOAT, 0, 1},
    {"repeat_penalty", NULL, P_FLOAT, 1e-3, 10},      {"repeat_last_n", NULL, P_INT, 0, 1 << 20},
    {"presence_penalty", NULL, P_FLOAT, -2, 2},       {"frequency_penalty", NULL, P_FLOAT, -2, 2},
    {"seed", NULL, P_SEED, 0, 0},                     {"num_predict", "n_predict", P_INT, -1, 1 << 30},
};

static void show_parameters(const run_state *st) {
    const byoai_sampler_params *p = &st->o->sp;
    printf("  temperature        %g\n  top_k              %d\n  top_p              %g\n  min_p              %g\n"
           "  repeat_penalty     %g\n  repeat_last_n      %d\n  presence_penalty   %g\n  frequency_penalty  %g\n"
           "  seed               %llu\n  num_predict        %lld\n  num_ctx            %u (restart with --ctx to "
           "change it)\n",
           (double)p->temp, p->top_k, (double)p->top_p, (double)p->min_p, (double)p->repeat_penalty,
           p->repeat_last_n ? p->repeat_last_n : 64, (double)p->presence_penalty, (double)p->frequency_penalty,
           (unsigned long long)p->seed, st->o->n_predict, byoai_context_n_ctx(st->ctx));
}

static void set_parameter(run_state *st, const char *name, const char *value) {
    const param *pp = NULL;
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        if (!strcmp(name, params[i].name) || (params[i].alias && !strcmp(name, params[i].alias))) pp = &params[i];
    if (!strcmp(name, "num_ctx")) {
        printf("The context size cannot change in a running session: restart with --ctx N.\n");
        return;
    }
    if (!pp) {
        printf("Unknown parameter '%s'. Parameters: temperature, top_k, top_p, min_p, repeat_penalty, "
               "repeat_last_n, presence_penalty, frequency_penalty, seed, num_predict.\n", name);
        return;
    }
    char *end;
    errno = 0;
    double d = strtod(value, &end);
    unsigned long long u = 0;
    bool ok = *value && !*end && !errno;
    if (pp->kind == P_SEED) {
        errno = 0;
        u = strtoull(value, &end, 0);
        ok = *value && value[0] != '-' && !*end && !errno;
    } else if (ok && pp->kind == P_INT) {
        ok = d == (double)(long long)d;
    }
    if (!ok || (pp->kind != P_SEED && (d < pp->lo || d > pp->hi))) {
        if (pp->kind == P_SEED) printf("'%s' needs a non-negative whole number, not '%s'.\n", pp->name, value);
        else if (pp->kind == P_INT) printf("'%s' needs a whole number from %.0f to %.0f, not '%s'.\n", pp->name, pp->lo,
                                           pp->hi, value);
        else printf("'%s' needs a number from %g to %g, not '%s'.\n", pp->name, pp->lo, pp->hi, value);
        return;
    }
    byoai_sampler_params *p = &st->o->sp;
    const char *n = pp->name;
    if (!strcmp(n, "temperature")) p->temp = (float)d;
    else if (!strcmp(n, "top_k")) p->top_k = (int32_t)d;
    else if (!strcmp(n, "top_p")) p->top_p = (float)d;
    else if (!strcmp(n, "min_p")) p->min_p = (float)d;
    else if (!strcmp(n, "repeat_penalty")) p->repeat_penalty = (float)d;
    else if (!strcmp(n, "repeat_last_n")) p->repeat_last_n = (int32_t)d;
    else if (!strcmp(n, "presence_penalty")) p->presence_penalty = (float)d;
    else if (!strcmp(n, "frequency_penalty")) p->frequency_penalty = (float)d;
    else if (!strcmp(n, "seed")) p->seed = u;
    else if (!strcmp(n, "num_predict")) st->o->n_predict = (long long)d;
    if (strcmp(n, "num_predict") && run_reset_sampler(st)) return;
    printf("Set parameter '%s' to '%s'.\n", n, value);
}

static void set_system(run_state *st, const char *text) {
    if (!st->chat) {
        printf("This session continues plain text (the model has no chat template): restart with --system TEXT "
               "to put text before it.\n");
        return;
    }
    for (size_t i = 0; i < st->n_msgs; i++)
        if (st->msgs[i].role == BYOAI_ROLE_SYSTEM) {
            char *copy = strdup(text);
            if (!copy) return;
            free(st->owned[i]);
            st->owned[i] = copy;
            st->msgs[i].content = copy;
            st->msgs[i].content_len = strlen(copy);
            printf("Set the system message.\n");
            return;
        }
    /* none yet: it goes first */
    if (!run_add_message(st, BYOAI_ROLE_SYSTEM, text)) return;
    byoai_chat_message m = st->msgs[st->n_msgs - 1];
    char *o = st->owned[st->n_msgs - 1];
    memmove(st->msgs + 1, st->msgs, (st->n_msgs - 1) * sizeof *st->msgs);
    memmove(st->owned + 1, st->owned, (st->n_msgs - 1) * sizeof *st->owned);
    st->msgs[0] = m;
    st->owned[0] = o;
    printf("Set the system message.\n");
}

static void show_info(const run_state *st) {
    byoai_model_info in;
    byoai_error err = {0};
    if (byoai_model_describe(byoai_model_gguf(st->model), byoai_context_n_ctx(st->ctx), &in, &err)) {
        printf("Cannot describe the model: %s\n", err.msg);
        return;
    }
    char a[32], b[32];
    printf("  Model\n");
    if (in.name[0]) printf("    name                %s\n", in.name);
    printf("    file                %s\n    architecture        %s\n    parameters          %s\n"
           "    quantization        %s\n    context length      %u in use (trained on %u)\n"
           "    layers              %u, embedding %u, feed-forward %u\n    attention           %u heads, %u KV heads\n"
           "    vocabulary          %u tokens (%s)\n    chat template       %s\n    memory              %s at this "
           "context\n",
           st->path, in.arch, cli_count(in.n_params, a, sizeof a), in.file_type ? in.file_type : "?",
           byoai_context_n_ctx(st->ctx), in.n_ctx_train, in.n_layer, in.n_embd, in.n_ff, in.n_head, in.n_head_kv,
           in.n_vocab, in.tokenizer[0] ? in.tokenizer : "?",
           st->chat ? byoai_chat_family_name(st->family) : "none (plain text)",
           cli_bytes(in.mem_total_bytes, b, sizeof b));
}

static void show_system(const run_state *st) {
    for (size_t i = 0; i < st->n_msgs; i++)
        if (st->msgs[i].role == BYOAI_ROLE_SYSTEM) {
            printf("%.*s\n", (int)st->msgs[i].content_len, st->msgs[i].content);
            return;
        }
    if (!st->chat && st->o->system && st->o->system[0]) printf("%s\n", st->o->system);
    else printf("No system message.\n");
}

/* A /command: 1 to leave, 0 to go on. */
static int command(run_state *st, char *line) {
    char *save = NULL;
    char *cmd = strtok_r(line, " \t", &save);
    if (!strcmp(cmd, "/bye") || !strcmp(cmd, "/exit") || !strcmp(cmd, "/quit")) return 1;
    if (!strcmp(cmd, "/?") || !strcmp(cmd, "/help")) {
        fputs(help_text, stdout);
    } else if (!strcmp(cmd, "/clear")) {
        run_clear(st);
        printf("Cleared the conversation.\n");
    } else if (!strcmp(cmd, "/set")) {
        char *what = strtok_r(NULL, " \t", &save);
        if (what && !strcmp(what, "parameter")) {
            char *name = strtok_r(NULL, " \t", &save), *value = strtok_r(NULL, " \t", &save);
            if (!name || !value) printf("Usage: /set parameter NAME VALUE (see /show parameters).\n");
            else set_parameter(st, name, value);
        } else if (what && !strcmp(what, "system")) {
            while (save && isspace((unsigned char)*save)) save++;
            if (!save || !*save) printf("Usage: /set system TEXT\n");
            else set_system(st, save);
        } else {
            printf("Usage: /set parameter NAME VALUE, or /set system TEXT.\n");
        }
    } else if (!strcmp(cmd, "/show")) {
        char *what = strtok_r(NULL, " \t", &save);
        if (what && !strcmp(what, "info")) show_info(st);
        else if (what && !strcmp(what, "parameters")) show_parameters(st);
        else if (what && !strcmp(what, "system")) show_system(st);
        else printf("Usage: /show info, /show parameters or /show system.\n");
    } else {
        printf("Unknown command '%s'. Type /? for help (to send a message that starts with /, put it between "
               "\"\"\" marks).\n", cmd);
    }
    fflush(stdout);
    return 0;
}

int run_interactive(run_state *st) {
    bool tty = isatty(0);
    if (tty) fprintf(stderr, "byoai run: type a message, /? for help, /bye to leave.\n");
    byoai_buf msg = {0};
    int rc = 0;
    for (;;) {
        run_interrupted = 0;
        if (!read_message(&msg, tty)) break;
        if (msg.len == 0) continue;
        if (msg.data[0] == '/' && !strchr(msg.data, '\n')) {
            if (command(st, msg.data)) break;
            continue;
        }
        rc = st->chat ? run_chat_turn(st, msg.data) : run_generate(st, msg.data, false, false);
        if (rc == RUN_REFUSED) { /* e.g. too long: the session goes on */
            rc = 0;
            continue;
        }
        if (rc) break;
        printf("\n");
        fflush(stdout);
    }
    byoai_buf_free(&msg);
    return rc;
}
