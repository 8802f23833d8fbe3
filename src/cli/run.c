/* byoai run: generate text with a model, streamed as it is produced: the
 * options, the model (offered for install when missing), feeding and
 * sampling within the context's limits. The interactive prompt is in
 * run_repl.c. */
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: byoai run MODEL [-p PROMPT] [options]\n"
"\n"
"Generate text with MODEL (a .gguf file, or the name of an installed model or\n"
"bundle) and stream it to standard output as it is produced.\n"
"\n"
"With -p, the prompt is echoed and continued once (plain completion). Without\n"
"-p, byoai reads from standard input, one line per turn, keeping the\n"
"conversation in context (Ctrl-C stops the current answer, Ctrl-D or /bye\n"
"quits): as a chat, formatted with the model's chat template, when the model\n"
"has one, otherwise as a continuing text. --chat / --no-chat choose explicitly.\n"
"A conversation longer than the context keeps going: the oldest turns are\n"
"dropped (the system message stays), or in plain text the oldest half of the\n"
"text, and byoai says so once.\n"
"\n"
"At the prompt: /? for help, /bye, /clear (forget the conversation),\n"
"/set parameter NAME VALUE (temperature, top_k, top_p, min_p, repeat_penalty,\n"
"repeat_last_n, presence_penalty, frequency_penalty, seed, num_predict),\n"
"/set system TEXT, /show info|parameters|system; \"\"\" starts and ends a\n"
"multi-line message, a line ending in \\ continues on the next one.\n"
"\n"
"MODEL may be the name of a model that is not installed yet: byoai offers to\n"
"install it (on a terminal; --yes installs without asking).\n"
"\n"
"Options:\n"
"  -p, --prompt TEXT        text to continue\n"
"  -n, --n-predict N        tokens to generate at most (default 256; -1: until\n"
"                           the model ends or the context is full)\n"
"      --temp T             sampling temperature; 0 = greedy (default 0.8)\n"
"      --top-k K            keep the K most likely tokens; 0 = off (default 40)\n"
"      --top-p P            keep the smallest set with probability >= P (default 0.95)\n"
"      --min-p P            drop tokens below P x the best one's probability (default 0.05)\n"
"      --repeat-penalty R   penalise recent tokens; 1 = off (default 1.0)\n"
"      --frequency-penalty F subtract F x (times seen) from recent tokens' logits (default 0)\n"
"      --presence-penalty P subtract P once from the logits of recent tokens (default 0)\n"
"      --repeat-last-n N    tokens the penalties look back over (default 64)\n"
"  -s, --seed S             random seed; the same seed gives the same text (default 0xB10A1)\n"
"  -t, --threads N          compute threads (default: all cores)\n"
"  -c, --ctx N              context size in tokens (default: the model's trained\n"
"                           context, less when its KV cache would take more than a\n"
"                           quarter of the memory; more than trained warns)\n"
"      --logprobs K         print JSON lines instead of text: per token its id,\n"
"                           text, logprob and the K most likely alternatives\n"
"      --no-special         treat special-token text in the prompt as plain text\n"
"      --chat               format turns with the model's chat template (also with -p:\n"
"                           the prompt is the user's message, only the reply is printed)\n"
"      --no-chat            plain completion even when the model has a chat template\n"
"      --system TEXT        system message (chat), or text fed before the first prompt\n"
"  -y, --yes                install MODEL without asking when it is not installed\n"
"  -h, --help               show this help\n"
"\n"
"At the end, load time, prompt speed, and the tokens generated and their speed\n"
"go to standard error.\n"
"\n"
"Exit status: 0 success, 1 runtime error (e.g. unreadable model), 2 usage error.\n"
"\n"
"Example:\n"
"  byoai run stories260K.gguf -p \"Once upon a time\" -n 100 --temp 0\n");
}

volatile sig_atomic_t run_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    run_interrupted = 1;
}

/* print a piece, holding back an incomplete UTF-8 tail */
static void emit_text(run_state *st, const char *piece, size_t len) {
    char buf[512];
    size_t n = 0;
    memcpy(buf, st->pending, st->n_pending);
    n = st->n_pending;
    size_t take = len < sizeof buf - n ? len : sizeof buf - n;
    memcpy(buf + n, piece, take);
    n += take;
    size_t hold = byoai_utf8_incomplete_tail(buf, n);
    fwrite(buf, 1, n - hold, stdout);
    memcpy(st->pending, buf + n - hold, hold);
    st->n_pending = hold;
    fflush(stdout);
}

static void emit_logprobs(run_state *st, int32_t id, const float *logits) {
    const int32_t nv = (int32_t)byoai_model_hparams(st->model)->n_vocab;
    char piece[256];
    int len = byoai_token_to_piece(st->tok, id, piece, sizeof piece, true);
    if (len < 0) len = 0;
    if ((size_t)len > sizeof piece) len = sizeof piece;
    printf("{\"id\":%d,\"text\":", id);
    cli_json_string(stdout, piece, (size_t)len);
    printf(",\"bytes\":[");
    for (int i = 0; i < len; i++) printf("%s%u", i ? "," : "", (unsigned char)piece[i]);
    printf("],\"logprob\":%.6f,\"top_logprobs\":[", (double)byoai_logprob(logits, nv, id));
    int32_t ids[64];
    float lps[64];
    int32_t k = byoai_top_logprobs(logits, nv, st->o->logprobs, ids, lps);
    for (int32_t i = 0; i < k; i++) printf("%s[%d,%.6f]", i ? "," : "", ids[i], (double)lps[i]);
    printf("]}\n");
    fflush(stdout);
}

static bool hist_push(run_state *st, const int32_t *t, size_t n) {
    if (st->n_hist + n > st->cap_hist) {
        size_t cap = st->cap_hist ? st->cap_hist * 2 : 1024;
        while (cap < st->n_hist + n) cap *= 2;
        int32_t *h = realloc(st->hist, cap * sizeof *h);
        if (!h) return false;
        st->hist = h;
        st->cap_hist = cap;
    }
    memcpy(st->hist + st->n_hist, t, n * sizeof *t);
    st->n_hist += n;
    return true;
}

/* Evaluate tokens after what the context holds, in batches. */
static int decode(run_state *st, const int32_t *toks, size_t n) {
    byoai_error err = {0};
    const uint32_t chunk = 512;
    for (size_t off = 0; off < n; off += chunk) {
        uint32_t m = (uint32_t)(n - off < chunk ? n - off : chunk);
        byoai_batch b = {.n_tokens = m, .tokens = toks + off};
        if (byoai_decode(st->ctx, &b, &err)) return cli_fail("run", &err);
    }
    return 0;
}

/* Room an answer needs: what -n asks (at most half the context), or a quarter. */
static uint32_t answer_room(const run_state *st) {
    uint32_t n_ctx = byoai_context_n_ctx(st->ctx);
    return st->o->n_predict >= 0 && st->o->n_predict < n_ctx / 2 ? (uint32_t)st->o->n_predict : n_ctx / 4;
}

static void tell_full(run_state *st, const char *what) {
    if (st->told_full) return;
    st->told_full = true;
    fprintf(stderr, "\nbyoai run: the conversation no longer fits the %u-token context: %s (the model no longer "
            "sees them; /clear starts afresh, a larger --ctx keeps more)\n", byoai_context_n_ctx(st->ctx), what);
}

/* Plain text: drop the oldest half of what follows the kept start (BOS,
 * --system text) and evaluate the rest again at its new positions. */
static int shift_context(run_state *st) {
    size_t keep = st->n_keep < st->n_hist ? st->n_keep : 0, rest = st->n_hist - keep, drop = rest / 2;
    if (drop == 0) return 0;
    tell_full(st, "the oldest text is dropped as it fills up");
    memmove(st->hist + keep, st->hist + keep + drop, (rest - drop) * sizeof *st->hist);
    st->n_hist = keep + rest - drop;
    byoai_kv_truncate(st->ctx, 0, (uint32_t)keep);
    return decode(st, st->hist + keep, st->n_hist - keep);
}

/* Evaluate new tokens: their penalties, the cache, the history. In plain
 * interactive mode a full context shifts first; otherwise text that does
 * not fit is refused. */
static int feed(run_state *st, const int32_t *toks, size_t n) {
    const uint32_t n_ctx = byoai_context_n_ctx(st->ctx);
    if (byoai_kv_len(st->ctx, 0) + n >= n_ctx) {
        size_t fits = n_ctx - (st->n_keep < n_ctx ? st->n_keep : 0);
        if (!st->interactive || st->chat || n + answer_room(st) >= fits) {
            fprintf(stderr, "byoai run: error: the %s (%zu tokens) does not fit the %u-token context; use a larger "
                    "--ctx or a shorter %s\n", st->interactive ? "message" : "prompt", n, n_ctx,
                    st->interactive ? "message" : "prompt");
            return st->interactive ? RUN_REFUSED : CLI_ERROR;
        }
        while (byoai_kv_len(st->ctx, 0) + n + answer_room(st) > n_ctx && st->n_hist > st->n_keep + 1) {
            int rc = shift_context(st);
            if (rc) return rc;
        }
    }
    for (size_t i = 0; i < n; i++) byoai_sampler_accept(st->sampler, toks[i]);
    int rc = decode(st, toks, n);
    if (rc) return rc;
    if (!hist_push(st, toks, n)) {
        fprintf(stderr, "byoai run: error: out of memory\n");
        return CLI_ERROR;
    }
    return 0;
}

/* Generate up to limit tokens (-1: no limit), streaming them. The reply's
 * text is collected in *reply (malloc'd) when reply is not NULL; text from
 * stop onwards ends the turn and is not shown. */
static int sample_loop(run_state *st, long long limit, const char *stop, char **reply) {
    byoai_error err = {0};
    const uint32_t n_ctx = byoai_context_n_ctx(st->ctx);
    size_t rlen = 0, rcap = 256, shown = 0, slen = stop ? strlen(stop) : 0;
    char *r = reply ? malloc(rcap) : NULL;
    if (reply && !r) return CLI_ERROR;
    bool stopped = false;
    size_t starts[32]; /* where the last tokens' text begins in r: those in the stop text are not shown */
    for (long long i = 0; (limit < 0 || i < limit) && !stopped; i++) {
        if (run_interrupted) break;
        const float *logits = byoai_get_output(st->ctx, 0);
        int32_t id = byoai_sampler_sample(st->sampler, logits);
        if (id < 0 || byoai_token_is_eog(st->tok, id)) break;
        st->n_shown++;
        starts[i % 32] = rlen;
        if (st->o->logprobs >= 0) emit_logprobs(st, id, logits);
        char piece[256];
        int len = byoai_token_to_piece(st->tok, id, piece, sizeof piece, false);
        if (len < 0) len = 0;
        if ((size_t)len > sizeof piece) len = sizeof piece;
        if (r) {
            if (rlen + (size_t)len + 1 > rcap) {
                while (rlen + (size_t)len + 1 > rcap) rcap *= 2;
                char *nr = realloc(r, rcap);
                if (!nr) { free(r); return CLI_ERROR; }
                r = nr;
            }
            memcpy(r + rlen, piece, (size_t)len);
            rlen += (size_t)len;
            r[rlen] = '\0';
            /* hold back a tail that may be the start of the stop text */
            size_t safe = rlen;
            if (slen) {
                char *hit = strstr(r, stop);
                if (hit) {
                    safe = (size_t)(hit - r);
                    rlen = safe;
                    r[rlen] = '\0';
                    stopped = true;
                    for (long long k = i; st->o->logprobs < 0 && k >= 0 && k > i - 32 && starts[k % 32] >= safe; k--)
                        st->n_shown--;
                } else {
                    for (size_t k = slen - 1; k > 0; k--)
                        if (rlen >= k && !memcmp(r + rlen - k, stop, k)) { safe = rlen - k; break; }
                }
            }
            if (st->o->logprobs < 0 && safe > shown) emit_text(st, r + shown, safe - shown);
            if (safe > shown) shown = safe;
        } else if (st->o->logprobs < 0 && len > 0) {
            emit_text(st, piece, (size_t)len);
        }
        byoai_sampler_accept(st->sampler, id);
        if (stopped || (limit >= 0 && i + 1 >= limit)) break; /* no need to evaluate the last token */
        if (byoai_kv_len(st->ctx, 0) + 1 >= n_ctx) {
            if (st->interactive && !st->chat) {
                int rc = shift_context(st); /* plain text goes on past the context */
                if (rc) { free(r); return rc; }
            } else if (st->interactive) {
                fprintf(stderr, "\nbyoai run: the context is full (%u tokens): this answer stops here; the next "
                        "turn drops the oldest messages\n", n_ctx);
                break;
            } else {
                fprintf(stderr, "\nbyoai run: the context is full (%u tokens); stopping\n", n_ctx);
                break;
            }
        }
        byoai_batch b = {.n_tokens = 1, .tokens = &id};
        if (byoai_decode(st->ctx, &b, &err)) { free(r); return cli_fail("run", &err); }
        if (!hist_push(st, &id, 1)) { free(r); return CLI_ERROR; }
    }
    if (r && !stopped && st->o->logprobs < 0 && rlen > shown) emit_text(st, r + shown, rlen - shown);
    if (st->n_pending) { /* a dangling partial character: show it as is */
        fwrite(st->pending, 1, st->n_pending, stdout);
        st->n_pending = 0;
    }
    if (st->o->logprobs < 0) fflush(stdout);
    if (reply) *reply = r;
    return 0;
}

int run_generate(run_state *st, const char *text, bool echo, bool feed_only) {
    byoai_error err = {0};
    int32_t *toks = NULL;
    size_t n = 0;
    bool first = !st->started;
    if (byoai_tokenize(st->tok, text, strlen(text), first, st->o->special, &toks, &n, &err))
        return cli_fail("run", &err);
    st->started = true;
    if (echo && st->o->logprobs < 0) {
        fputs(text, stdout);
        fflush(stdout);
    }
    int rc = feed(st, toks, n);
    /* a context shift keeps the BOS, and --system text fed first */
    if (!rc && first) st->n_keep = feed_only ? st->n_hist : (n && toks[0] == byoai_token_bos(st->tok));
    free(toks);
    if (rc || n == 0 || feed_only) return rc;
    return sample_loop(st, st->o->n_predict, NULL, NULL);
}

bool run_add_message(run_state *st, byoai_chat_role role, const char *text) {
    if (st->n_msgs == st->cap_msgs) {
        size_t cap = st->cap_msgs ? st->cap_msgs * 2 : 16;
        byoai_chat_message *m = realloc(st->msgs, cap * sizeof *m);
        if (!m) return false;
        st->msgs = m;
        char **o = realloc(st->owned, cap * sizeof *o);
        if (!o) return false;
        st->owned = o;
        st->cap_msgs = cap;
    }
    char *copy = strdup(text);
    if (!copy) return false;
    st->owned[st->n_msgs] = copy;
    st->msgs[st->n_msgs++] = (byoai_chat_message){role, copy, strlen(copy)};
    return true;
}

static void remove_message(run_state *st, size_t i) {
    free(st->owned[i]);
    memmove(st->owned + i, st->owned + i + 1, (st->n_msgs - i - 1) * sizeof *st->owned);
    memmove(st->msgs + i, st->msgs + i + 1, (st->n_msgs - i - 1) * sizeof *st->msgs);
    st->n_msgs--;
}

void run_clear(run_state *st) {
    for (size_t i = st->n_msgs; i-- > 0;)
        if (st->msgs[i].role != BYOAI_ROLE_SYSTEM) remove_message(st, i);
    size_t keep = st->chat ? 0 : st->n_keep;
    byoai_kv_truncate(st->ctx, 0, (uint32_t)keep);
    st->n_hist = keep;
    st->told_full = false;
    byoai_sampler_reset(st->sampler);
}

int run_reset_sampler(run_state *st) {
    byoai_sampler *s;
    byoai_error err = {0};
    if (byoai_sampler_new(&st->o->sp, (int32_t)byoai_model_hparams(st->model)->n_vocab, &s, &err))
        return cli_fail("run", &err);
    for (size_t i = 0; i < st->n_hist; i++) byoai_sampler_accept(s, st->hist[i]);
    byoai_sampler_free(st->sampler);
    st->sampler = s;
    return 0;
}

/* The conversation rendered with the model's template and tokenized. */
static int render(run_state *st, int32_t **toks, size_t *n) {
    byoai_error err = {0};
    char *text = NULL;
    size_t tl, bl, el;
    const char *bos = byoai_token_bos(st->tok) >= 0 ? byoai_token_text(st->tok, byoai_token_bos(st->tok), &bl) : NULL;
    const char *eos = byoai_token_eos(st->tok) >= 0 ? byoai_token_text(st->tok, byoai_token_eos(st->tok), &el) : NULL;
    char bos_s[64] = "", eos_s[64] = "";
    if (bos) snprintf(bos_s, sizeof bos_s, "%.*s", (int)bl, bos);
    if (eos) snprintf(eos_s, sizeof eos_s, "%.*s", (int)el, eos);
    if (byoai_chat_render(st->family, st->msgs, st->n_msgs, true, bos ? bos_s : NULL, eos ? eos_s : NULL, &text, &tl,
                          &err))
        return cli_fail("run", &err);
    int rc = byoai_tokenize(st->tok, text, tl, true, true, toks, n, &err);
    free(text);
    return rc ? cli_fail("run", &err) : 0;
}

/* Drop the oldest turn that is not a system message (the question and the
 * answers that follow it); false when only the system messages and the last
 * message are left. */
static bool drop_oldest_turn(run_state *st) {
    size_t i = 0;
    while (i < st->n_msgs && st->msgs[i].role == BYOAI_ROLE_SYSTEM) i++;
    if (i + 1 >= st->n_msgs) return false;
    remove_message(st, i);
    while (i + 1 < st->n_msgs && st->msgs[i].role != BYOAI_ROLE_USER && st->msgs[i].role != BYOAI_ROLE_SYSTEM)
        remove_message(st, i);
    return true;
}

int run_chat_turn(run_state *st, const char *user) {
    if (!run_add_message(st, BYOAI_ROLE_USER, user)) return CLI_ERROR;
    const uint32_t n_ctx = byoai_context_n_ctx(st->ctx);
    int32_t *toks = NULL;
    size_t n = 0;
    int rc = render(st, &toks, &n);
    /* the conversation must leave room for the answer: the oldest turns go */
    while (!rc && n + answer_room(st) > n_ctx && drop_oldest_turn(st)) {
        tell_full(st, "its oldest turns are dropped");
        free(toks);
        toks = NULL;
        rc = render(st, &toks, &n);
    }
    if (rc) return rc;
    if (n >= n_ctx) {
        free(toks);
        remove_message(st, st->n_msgs - 1);
        fprintf(stderr, "byoai run: error: this message is %zu tokens with the system message and the template; the "
                "context holds %u: send a shorter one (or use a larger --ctx)\n", n, n_ctx);
        return st->interactive ? RUN_REFUSED : CLI_ERROR;
    }
    /* reuse the cached prefix */
    size_t keep = 0;
    while (keep < n && keep < st->n_hist && toks[keep] == st->hist[keep]) keep++;
    if (keep == n && keep > 0) keep--; /* always evaluate at least one token */
    byoai_kv_truncate(st->ctx, 0, (uint32_t)keep);
    st->n_hist = keep;
    rc = feed(st, toks + keep, n - keep);
    free(toks);
    if (rc) return rc;
    char *reply = NULL;
    rc = sample_loop(st, st->o->n_predict, byoai_chat_stop_text(st->family), &reply);
    if (!rc && !run_add_message(st, BYOAI_ROLE_ASSISTANT, reply ? reply : "")) rc = CLI_ERROR;
    free(reply);
    return rc;
}

static int parse(int argc, char **argv, run_opts *o) {
    static const struct option opts[] = {
        {"prompt", required_argument, 0, 'p'},    {"n-predict", required_argument, 0, 'n'},
        {"temp", required_argument, 0, 1},        {"top-k", required_argument, 0, 2},
        {"top-p", required_argument, 0, 3},       {"min-p", required_argument, 0, 4},
        {"repeat-penalty", required_argument, 0, 5}, {"repeat-last-n", required_argument, 0, 6},
        {"seed", required_argument, 0, 's'},      {"threads", required_argument, 0, 't'},
        {"ctx", required_argument, 0, 'c'},       {"logprobs", required_argument, 0, 7},
        {"no-special", no_argument, 0, 8},        {"help", no_argument, 0, 'h'},
        {"frequency-penalty", required_argument, 0, 9}, {"presence-penalty", required_argument, 0, 10},
        {"chat", no_argument, 0, 11},             {"no-chat", no_argument, 0, 12},
        {"system", required_argument, 0, 13},     {"yes", no_argument, 0, 'y'},
        {0, 0, 0, 0}};
    long long iv;
    double fv;
    cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":p:n:s:t:c:yh", opts, NULL)) != -1) {
        switch (c) {
        case 'p': o->prompt = optarg; break;
        case 'n': if (!cli_parse_int("run", "-n", optarg, -1, 1 << 30, &o->n_predict)) return CLI_USAGE; o->set |= OPT_N; break;
        case 1: if (!cli_parse_float("run", "--temp", optarg, 0, 100, &fv)) return CLI_USAGE; o->sp.temp = (float)fv; o->set |= OPT_TEMP; break;
        case 2: if (!cli_parse_int("run", "--top-k", optarg, 0, 1 << 24, &iv)) return CLI_USAGE; o->sp.top_k = (int32_t)iv; o->set |= OPT_TOPK; break;
        case 3: if (!cli_parse_float("run", "--top-p", optarg, 1e-6, 1, &fv)) return CLI_USAGE; o->sp.top_p = (float)fv; o->set |= OPT_TOPP; break;
        case 4: if (!cli_parse_float("run", "--min-p", optarg, 0, 1, &fv)) return CLI_USAGE; o->sp.min_p = (float)fv; o->set |= OPT_MINP; break;
        case 5: if (!cli_parse_float("run", "--repeat-penalty", optarg, 1e-3, 10, &fv)) return CLI_USAGE; o->sp.repeat_penalty = (float)fv; o->set |= OPT_PEN; break;
        case 6: if (!cli_parse_int("run", "--repeat-last-n", optarg, 0, 1 << 20, &iv)) return CLI_USAGE; o->sp.repeat_last_n = (int32_t)iv; o->set |= OPT_LASTN; break;
        case 's': {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 0);
            if (end == optarg || *end || optarg[0] == '-') return cli_usage_error("run", "--seed expects a non-negative whole number, got '%s'", optarg);
            o->sp.seed = v;
            o->set |= OPT_SEED;
            break;
        }
        case 't': if (!cli_parse_int("run", "--threads", optarg, 1, 512, &iv)) return CLI_USAGE; o->threads = (int)iv; break;
        case 'c': if (!cli_parse_int("run", "--ctx", optarg, 8, 1 << 20, &iv)) return CLI_USAGE; o->ctx = (uint32_t)iv; o->set |= OPT_CTX; break;
        case 7: if (!cli_parse_int("run", "--logprobs", optarg, 0, 64, &iv)) return CLI_USAGE; o->logprobs = (int)iv; break;
        case 8: o->special = false; break;
        case 9: if (!cli_parse_float("run", "--frequency-penalty", optarg, -2, 2, &fv)) return CLI_USAGE; o->sp.frequency_penalty = (float)fv; break;
        case 10: if (!cli_parse_float("run", "--presence-penalty", optarg, -2, 2, &fv)) return CLI_USAGE; o->sp.presence_penalty = (float)fv; break;
        case 11: o->chat = 1; break;
        case 12: o->chat = 0; break;
        case 13: o->system = optarg; o->set |= OPT_SYSTEM; break;
        case 'y': o->yes = true; break;
        case 'h': usage(stdout); return -1;
        default: return cli_option_error("run", c, opts, argv);
        }
    }
    if (optind >= argc) return cli_usage_error("run", "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error("run", "unexpected argument '%s' (quote the prompt and pass it with -p)", argv[optind + 1]);
    o->model = argv[optind];
    return 0;
}

/* A bundle's parameters are defaults: options on the command line win. */
static int apply_bundle(run_opts *o, const byoai_store_model *b) {
    if (!(o->set & OPT_SYSTEM)) o->system = b->system_prompt;
    json_t *p = json_loads(b->params_json, 0, NULL);
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
        double d = json_number_value(v);
        bool num = json_is_number(v);
        if (!num) {
            fprintf(stderr, "byoai run: warning: bundle parameter %s is not a number; ignored\n", k);
            continue;
        }
        if (!strcmp(k, "temp") && !(o->set & OPT_TEMP) && d >= 0 && d <= 100) o->sp.temp = (float)d;
        else if (!strcmp(k, "top_k") && !(o->set & OPT_TOPK) && d >= 0 && d <= 1 << 24) o->sp.top_k = (int32_t)d;
        else if (!strcmp(k, "top_p") && !(o->set & OPT_TOPP) && d > 0 && d <= 1) o->sp.top_p = (float)d;
        else if (!strcmp(k, "min_p") && !(o->set & OPT_MINP) && d >= 0 && d <= 1) o->sp.min_p = (float)d;
        else if (!strcmp(k, "repeat_penalty") && !(o->set & OPT_PEN) && d >= 1e-3 && d <= 10) o->sp.repeat_penalty = (float)d;
        else if (!strcmp(k, "repeat_last_n") && !(o->set & OPT_LASTN) && d >= 0 && d <= 1 << 20) o->sp.repeat_last_n = (int32_t)d;
        else if (!strcmp(k, "seed") && !(o->set & OPT_SEED) && d >= 0) o->sp.seed = (uint64_t)d;
        else if (!strcmp(k, "n_predict") && !(o->set & OPT_N) && d >= -1 && d <= 1 << 30) o->n_predict = (long long)d;
        else if (!strcmp(k, "ctx") && !(o->set & OPT_CTX) && d >= 8 && d <= 1 << 20) o->ctx = (uint32_t)d;
    }
    json_decref(p);
    return 0;
}

/* MODEL as a file or an installed name; a name the store lacks is offered
 * for install (asked on a terminal, or --yes), then resolved again. */
static bool resolve_model(run_opts *o, char *path, size_t cap, byoai_store_model *info) {
    memset(info, 0, sizeof *info);
    struct stat sb;
    bool file_like = stat(o->model, &sb) == 0 || strchr(o->model, '/') || strstr(o->model, ".gguf");
    if (file_like) return cli_resolve_model_info("run", o->model, path, cap, info);
    byoai_store *s = cli_store("run");
    if (!s) return false;
    byoai_error err = {0};
    int rc = byoai_store_resolve(s, o->model, path, cap, info, &err);
    byoai_store_close(s);
    if (rc == 0) return true;
    if (rc != BYOAI_ENOTFOUND) {
        cli_fail("run", &err);
        return false;
    }
    bool ask = !o->yes && isatty(0) && isatty(2);
    if (!o->yes && !ask) {
        fprintf(stderr, "byoai run: error: '%s' is not installed; install it with `byoai install %s` (or pass --yes "
                "to install it now; `byoai search` lists what registries offer)\n", o->model, o->model);
        return false;
    }
    if (ask) {
        fprintf(stderr, "byoai run: '%s' is not installed. Install it now? [Y/n] ", o->model);
        char line[32];
        if (!fgets(line, sizeof line, stdin) || (line[0] != '\n' && line[0] != 'y' && line[0] != 'Y')) {
            fprintf(stderr, "byoai run: not installed; `byoai install %s` installs it\n", o->model);
            return false;
        }
    }
    char *args[] = {"install", (char *)o->model, NULL};
    if (cli_install(2, args) != CLI_OK) return false;
    return cli_resolve_model_info("run", o->model, path, cap, info);
}

int cli_run(int argc, char **argv) {
    run_opts o = {.n_predict = 256, .sp = byoai_sampler_defaults(), .logprobs = -1, .special = true, .chat = -1};
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? CLI_OK : rc;
    char path[4096];
    byoai_store_model info;
    if (!resolve_model(&o, path, sizeof path, &info)) return CLI_ERROR;
    if (info.is_bundle && apply_bundle(&o, &info)) return CLI_ERROR;

    byoai_error err = {0};
    double t0 = byoai_time_now();
    byoai_model *model;
    if (cli_load_model("run", path, &model, &err)) return cli_fail("run", &err);
    const uint32_t trained = byoai_model_hparams(model)->n_ctx_train;
    if (o.ctx && trained && o.ctx > trained)
        fprintf(stderr, "byoai run: warning: a context of %u tokens is more than the %u the model was trained with; "
                "past %u tokens it has never seen such positions, and its text may drift, repeat itself or turn to "
                "gibberish\n", o.ctx, trained, trained);
    byoai_context_params cp = {.n_ctx = o.ctx, .n_threads = o.threads};
    byoai_context *ctx;
    if (byoai_context_new(model, &cp, &ctx, &err)) {
        byoai_model_free(model);
        return cli_fail("run", &err);
    }
    double load_s = byoai_time_now() - t0;
    byoai_sampler *sampler;
    if (byoai_sampler_new(&o.sp, (int32_t)byoai_model_hparams(model)->n_vocab, &sampler, &err)) {
        byoai_context_free(ctx);
        byoai_model_free(model);
        return cli_fail("run", &err);
    }
    run_state st = {.ctx = ctx, .model = model, .tok = byoai_model_tokenizer(model), .sampler = sampler, .o = &o,
                    .path = path, .interactive = !o.prompt};
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    size_t tlen;
    const char *tmpl = byoai_model_chat_template(model, &tlen);
    st.chat = o.chat == 1 || (o.chat == -1 && !o.prompt && tmpl);
    if (st.chat) {
        st.family = byoai_chat_detect(tmpl, tmpl ? tlen : 0);
        if (o.system && o.system[0] && !run_add_message(&st, BYOAI_ROLE_SYSTEM, o.system)) rc = CLI_ERROR;
        if (rc) {
        } else if (o.prompt) {
            rc = run_chat_turn(&st, o.prompt);
            if (!rc && o.logprobs < 0) printf("\n");
        } else {
            rc = run_interactive(&st);
        }
    } else {
        if (o.system && o.system[0]) rc = run_generate(&st, o.system, false, true);
        if (rc) {
        } else if (o.prompt) {
            rc = run_generate(&st, o.prompt, true, false);
            if (!rc && o.logprobs < 0) printf("\n");
        } else {
            rc = run_interactive(&st);
        }
    }
    fflush(stdout);
    byoai_perf perf;
    byoai_context_perf(ctx, &perf);
    /* the tokens generated are those shown (the last one is never
     * evaluated); the speed is that of evaluating them one by one */
    fprintf(stderr, "byoai: load %.2f s | prompt %llu tokens, %.1f tokens/s | generation %llu tokens, %.1f tokens/s\n",
            load_s, (unsigned long long)perf.prompt_tokens,
            perf.prompt_seconds > 0 ? (double)perf.prompt_tokens / perf.prompt_seconds : 0.0,
            (unsigned long long)st.n_shown, perf.gen_seconds > 0 ? (double)perf.gen_tokens / perf.gen_seconds : 0.0);
    for (size_t i = 0; i < st.n_msgs; i++) free(st.owned[i]);
    free(st.owned);
    free(st.msgs);
    free(st.hist);
    byoai_sampler_free(st.sampler);
    byoai_context_free(ctx);
    byoai_model_free(model);
    return rc;
}
