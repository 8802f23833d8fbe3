/*
 * byoai/sampler.h: choose the next token from logits.
 *
 * Contract
 * - The pipeline, in order: penalties over the last repeat_last_n accepted
 *   tokens (repetition: divide positive logits, multiply negative ones;
 *   frequency: subtract count x penalty; presence: subtract the penalty once
 *   per token seen, as OpenAI defines them), an optional caller filter (e.g. grammar constraints),
 *   then greedy when temp <= 0, otherwise top-k, temperature, top-p, min-p
 *   and a draw from a seeded generator. The same seed and the same inputs
 *   give the same tokens on every machine.
 * - A sampler is owned by one sequence; it is not thread-safe.
 */
#ifndef BYOAI_SAMPLER_H
#define BYOAI_SAMPLER_H

#include "byoai/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct byoai_sampler_params {
    float temp;            /* <= 0: greedy */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off */
    int32_t repeat_last_n; /* window for the penalties (0: 64) */
    uint64_t seed;
    float frequency_penalty; /* -2..2, 0: off */
    float presence_penalty;  /* -2..2, 0: off */
} byoai_sampler_params;

/* Defaults: temp 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0,
 * repeat_last_n 64, seed 0xB10A1, frequency and presence penalties 0. */
byoai_sampler_params byoai_sampler_defaults(void);
/* Check ranges; BYOAI_EINVAL with a message naming the bad parameter. */
int byoai_sampler_params_check(const byoai_sampler_params *p, byoai_error *err);

typedef struct byoai_sampler byoai_sampler;

/* A filter may forbid tokens: set allowed[i] = false for ids it rejects
 * (allowed has n_vocab entries, all true on entry). Return non-zero to
 * abort sampling (the sampler then returns -1). */
typedef int (*byoai_sampler_filter_fn)(void *user, const float *logits, bool *allowed, int32_t n_vocab);

int byoai_sampler_new(const byoai_sampler_params *p, int32_t n_vocab, byoai_sampler **out, byoai_error *err);
void byoai_sampler_free(byoai_sampler *s);
void byoai_sampler_set_filter(byoai_sampler *s, byoai_sampler_filter_fn fn, void *user);
/* Pick a token from n_vocab logits (not modified). -1 when nothing is allowed. */
int32_t byoai_sampler_sample(byoai_sampler *s, const float *logits);
/* Record a token of the sequence (prompt or generated) for the penalty. */
void byoai_sampler_accept(byoai_sampler *s, int32_t token);
void byoai_sampler_reset(byoai_sampler *s);

/* log-softmax helpers for logprobs: logprob of one token, and the k most
 * likely tokens (ids and logprobs, most likely first; returns the count). */
float byoai_logprob(const float *logits, int32_t n_vocab, int32_t token);
int32_t byoai_top_logprobs(const float *logits, int32_t n_vocab, int32_t k, int32_t *ids, float *logprobs);

#ifdef __cplusplus
}
#endif
#endif
