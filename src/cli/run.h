/* byoai run, shared between its two files: run.c (options, the model,
 * feeding and sampling, the context's limits) and run_repl.c (the
 * interactive prompt: commands, multi-line input). */
#ifndef BYOAI_CLI_RUN_H
#define BYOAI_CLI_RUN_H

#include <signal.h>

#include "byoai/chat.h"
#include "byoai/model.h"
#include "byoai/sampler.h"
#include "byoai/tokenizer.h"
#include "cli.h"

typedef struct run_opts {
    const char *model;
    const char *prompt;
    long long n_predict;
    byoai_sampler_params sp;
    int threads;
    uint32_t ctx;
    int logprobs; /* -1 off */
    bool special;
    bool yes;           /* --yes: install a missing model without asking */
    unsigned set;       /* OPT_* bits: options given on the command line */
    const char *system; /* --system or a bundle's system prompt */
    int chat;           /* 1 --chat, 0 --no-chat, -1 decide (interactive with a template) */
} run_opts;

enum { OPT_N = 1, OPT_TEMP = 2, OPT_TOPK = 4, OPT_TOPP = 8, OPT_MINP = 16, OPT_PEN = 32, OPT_LASTN = 64,
       OPT_SEED = 128, OPT_CTX = 256, OPT_SYSTEM = 512 };

typedef struct run_state {
    byoai_context *ctx;
    const byoai_model *model;
    const byoai_tokenizer *tok;
    byoai_sampler *sampler;
    run_opts *o;
    const char *path;      /* the model's file */
    char pending[64];      /* bytes of a UTF-8 character split across tokens */
    size_t n_pending;
    bool interactive;      /* a full context makes room instead of failing */
    bool chat;
    /* chat mode */
    byoai_chat_family family;
    byoai_chat_message *msgs;
    char **owned;          /* the text of each message */
    size_t n_msgs, cap_msgs;
    /* every token the context holds, in order */
    int32_t *hist;
    size_t n_hist, cap_hist;
    size_t n_keep;         /* plain mode: tokens a context shift keeps (BOS, --system text) */
    bool started;          /* BOS already sent */
    bool told_full;        /* the user was told once that old text no longer fits */
    uint64_t n_shown;      /* tokens of generated text shown (the summary's count) */
} run_state;

extern volatile sig_atomic_t run_interrupted;

/* What run_generate and run_chat_turn return for a message the user can fix
 * (too long): refused with a message, the interactive session goes on. */
#define RUN_REFUSED 3

/* Plain completion: feed text (BOS the first time), then continue it unless
 * feed_only. Returns 0, or CLI_ERROR after printing why. */
int run_generate(run_state *st, const char *text, bool echo, bool feed_only);
/* One chat turn: add the user's message, render the conversation, evaluate
 * what the context does not hold, stream the reply and keep it. */
int run_chat_turn(run_state *st, const char *user);
bool run_add_message(run_state *st, byoai_chat_role role, const char *text);
/* Forget the conversation (keep the system message): /clear. */
void run_clear(run_state *st);
/* Replace the sampler after a parameter changed (/set). */
int run_reset_sampler(run_state *st);
/* The interactive prompt (run_repl.c): until /bye or end of input. */
int run_interactive(run_state *st);

#endif
