/* Token sampling: penalties, filter, greedy or top-k/temperature/top-p/min-p. */
#include "byoai/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct byoai_sampler {
    byoai_sampler_params p;
    int32_t n_vocab;
    uint64_t rng[2];
    int32_t *history; /* ring of the last repeat_last_n tokens */
    int32_t hist_len, hist_pos;
    float *work;      /* n_vocab adjusted logits */
    int32_t *idx;     /* n_vocab candidate ids */
    bool *allowed;
    double *prob;     /* n_vocab candidate probabilities */
    int32_t *count;   /* n_vocab occurrences in the window (zero between calls) */
    byoai_sampler_filter_fn filter;
    void *filter_user;
};

byoai_sampler_params byoai_sampler_defaults(void) {
    return (byoai_sampler_params){.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                  .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0xB10A1};
}

int byoai_sampler_params_check(const byoai_sampler_params *p, byoai_error *err) {
    if (!(p->temp >= 0 && p->temp <= 100))
        return byoai_error_set(err, BYOAI_EINVAL, "temperature must be between 0 and 100 (got %g)", (double)p->temp);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return byoai_error_set(err, BYOAI_EINVAL, "top-p must be in (0, 1] (got %g)", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return byoai_error_set(err, BYOAI_EINVAL, "min-p must be in [0, 1] (got %g)", (double)p->min_p);
    if (!(p->repeat_penalty > 0 && p->repeat_penalty <= 10))
        return byoai_error_set(err, BYOAI_EINVAL, "repeat penalty must be in (0, 10] (got %g)",
                               (double)p->repeat_penalty);
    if (p->top_k < 0) return byoai_error_set(err, BYOAI_EINVAL, "top-k must not be negative (got %d)", p->top_k);
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
        return byoai_error_set(err, BYOAI_EINVAL, "frequency penalty must be in [-2, 2] (got %g)",
                               (double)p->frequency_penalty);
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
        return byoai_error_set(err, BYOAI_EINVAL, "presence penalty must be in [-2, 2] (got %g)",
                               (double)p->presence_penalty);
    if (p->repeat_last_n < 0 || p->repeat_last_n > 1 << 20)
        return byoai_error_set(err, BYOAI_EINVAL, "repeat-last-n must be in 0..1048576 (got %d)", p->repeat_last_n);
    return 0;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* xoroshiro128+ : fast, and identical on every platform */
static uint64_t rng_next(uint64_t s[2]) {
    uint64_t s0 = s[0], s1 = s[1], r = s0 + s1;
    s1 ^= s0;
    s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    s[1] = (s1 << 37) | (s1 >> 27);
    return r;
}

static double rng_uniform(uint64_t s[2]) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

static void seed_rng(byoai_sampler *s) {
    uint64_t x = s->p.seed;
    s->rng[0] = splitmix(&x);
    s->rng[1] = splitmix(&x);
}

int byoai_sampler_new(const byoai_sampler_params *p, int32_t n_vocab, byoai_sampler **out, byoai_error *err) {
    *out = NULL;
    int rc = byoai_sampler_params_check(p, err);
    if (rc) return rc;
    if (n_vocab <= 0) return byoai_error_set(err, BYOAI_EINVAL, "vocabulary size must be positive");
    byoai_sampler *s = calloc(1, sizeof *s);
    if (!s) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    s->p = *p;
    if (s->p.repeat_last_n == 0) s->p.repeat_last_n = 64;
    s->n_vocab = n_vocab;
    s->history = calloc((size_t)s->p.repeat_last_n, sizeof(int32_t));
    s->work = malloc((size_t)n_vocab * sizeof(float));
    s->idx = malloc((size_t)n_vocab * sizeof(int32_t));
    s->allowed = malloc((size_t)n_vocab * sizeof(bool));
    s->prob = malloc((size_t)n_vocab * sizeof(double));
    s->count = calloc((size_t)n_vocab, sizeof(int32_t));
    if (!s->history || !s->work || !s->idx || !s->allowed || !s->prob || !s->count) {
        byoai_sampler_free(s);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    seed_rng(s);
    *out = s;
    return 0;
}

void byoai_sampler_free(byoai_sampler *s) {
    if (!s) return;
    free(s->history);
    free(s->work);
    free(s->idx);
    free(s->allowed);
    free(s->prob);
    free(s->count);
    free(s);
}

void byoai_sampler_set_filter(byoai_sampler *s, byoai_sampler_filter_fn fn, void *user) {
    s->filter = fn;
    s->filter_user = user;
}

void byoai_sampler_accept(byoai_sampler *s, int32_t token) {
    s->history[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->p.repeat_last_n;
    if (s->hist_len < s->p.repeat_last_n) s->hist_len++;
}

void byoai_sampler_reset(byoai_sampler *s) {
    s->hist_len = s->hist_pos = 0;
    seed_rng(s);
}

/* sort candidate ids by descending logit (ties: lower id first) */
static int cmp_desc(const void *a, const void *b, void *keys) {
    const float *w = keys;
    float x = w[*(const int32_t *)a], y = w[*(const int32_t *)b];
    if (x > y) return -1;
    if (x < y) return 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* partial selection: move the k largest (by w) to the front, sorted */
static void top_sorted(int32_t *idx, int32_t n, int32_t k, const float *w) {
    /* insertion into a sorted prefix: fast for the small k used in practice */
    if (k > 256 || k >= n) {
        qsort_r(idx, (size_t)n, sizeof *idx, cmp_desc, (void *)w);
        return;
    }
    for (int32_t i = 0; i < n; i++) {
        int32_t id = idx[i];
        float v = w[id];
        int32_t filled = i < k ? i : k;
        if (filled == k && (v < w[idx[k - 1]] || (v == w[idx[k - 1]] && id > idx[k - 1]))) continue;
        int32_t j = filled == k ? k - 1 : filled;
        while (j > 0 && (w[idx[j - 1]] < v || (w[idx[j - 1]] == v && idx[j - 1] > id))) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = id;
    }
}

int32_t byoai_sampler_sample(byoai_sampler *s, const float *logits) {
    const int32_t n = s->n_vocab;
    float *w = s->work;
    memcpy(w, logits, (size_t)n * sizeof(float));
    bool penalize = s->p.repeat_penalty != 1.0f || s->p.frequency_penalty != 0 || s->p.presence_penalty != 0;
    if (penalize) {
        /* count each token of the window, apply the penalties once per
         * distinct token, and leave the counts zero for the next call */
        for (int32_t i = 0; i < s->hist_len; i++)
            if (s->history[i] >= 0 && s->history[i] < n) s->count[s->history[i]]++;
        for (int32_t i = 0; i < s->hist_len; i++) {
            int32_t t = s->history[i];
            if (t < 0 || t >= n || s->count[t] == 0) continue;
            if (s->p.repeat_penalty != 1.0f)  /* as in CTRL */
                w[t] = w[t] > 0 ? w[t] / s->p.repeat_penalty : w[t] * s->p.repeat_penalty;
            w[t] -= (float)s->count[t] * s->p.frequency_penalty + s->p.presence_penalty;
            s->count[t] = 0;
        }
    }
    if (s->filter) {
        for (int32_t i = 0; i < n; i++) s->allowed[i] = true;
        if (s->filter(s->filter_user, w, s->allowed, n) != 0) return -1;
        for (int32_t i = 0; i < n; i++) if (!s->allowed[i]) w[i] = -INFINITY;
    }
    /* candidates: finite logits only */
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) if (w[i] > -INFINITY && !isnan(w[i])) s->idx[m++] = i;
    if (m == 0) return -1;
    if (s->p.temp <= 0) { /* greedy; ties to the lowest id */
        int32_t best = s->idx[0];
        for (int32_t i = 1; i < m; i++) if (w[s->idx[i]] > w[best]) best = s->idx[i];
        return best;
    }
    int32_t k = s->p.top_k > 0 && s->p.top_k < m ? s->p.top_k : m;
    top_sorted(s->idx, m, k, w);
    m = k;
    /* softmax with temperature over the candidates (sorted, max first) */
    double max = w[s->idx[0]], sum = 0;
    double *pr = s->prob;
    for (int32_t i = 0; i < m; i++) {
        pr[i] = exp(((double)w[s->idx[i]] - max) / s->p.temp);
        sum += pr[i];
    }
    for (int32_t i = 0; i < m; i++) pr[i] /= sum;
    /* top-p: smallest prefix with mass >= top_p */
    if (s->p.top_p < 1.0f) {
        double c = 0;
        for (int32_t i = 0; i < m; i++) {
            c += pr[i];
            if (c >= s->p.top_p) { m = i + 1; break; }
        }
    }
    /* min-p: drop tokens less likely than min_p times the best */
    if (s->p.min_p > 0) {
        double floor_p = pr[0] * s->p.min_p;
        int32_t keep = 1;
        while (keep < m && pr[keep] >= floor_p) keep++;
        m = keep;
    }
    double total = 0;
    for (int32_t i = 0; i < m; i++) total += pr[i];
    double r = rng_uniform(s->rng) * total, acc = 0;
    int32_t pick = s->idx[m - 1];
    for (int32_t i = 0; i < m; i++) {
        acc += pr[i];
        if (r < acc) { pick = s->idx[i]; break; }
    }
    return pick;
}

static double log_sum_exp(const float *logits, int32_t n, float *max_out) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - max);
    *max_out = max;
    return log(sum);
}

float byoai_logprob(const float *logits, int32_t n_vocab, int32_t token) {
    if (token < 0 || token >= n_vocab) return -INFINITY;
    float max;
    double lse = log_sum_exp(logits, n_vocab, &max);
    return (float)((double)logits[token] - max - lse);
}

int32_t byoai_top_logprobs(const float *logits, int32_t n_vocab, int32_t k, int32_t *ids, float *logprobs) {
    if (k <= 0) return 0;
    if (k > n_vocab) k = n_vocab;
    float max;
    double lse = log_sum_exp(logits, n_vocab, &max);
    int32_t filled = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (filled == k && !(v > logits[ids[k - 1]])) continue;
        int32_t j = filled < k ? filled++ : k - 1;
        while (j > 0 && logits[ids[j - 1]] < v) { ids[j] = ids[j - 1]; j--; }
        ids[j] = i;
    }
    for (int32_t i = 0; i < filled; i++) logprobs[i] = (float)((double)logits[ids[i]] - max - lse);
    return filled;
}
