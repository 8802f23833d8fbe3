/*
 * The per-model scheduler: continuous batching over one byoai_context with
 * n_seq sequence slots.
 *
 * One thread per loaded model runs this loop:
 *   1. admit queued jobs into free slots (each slot is a sequence with its
 *      own KV cache). A job goes to the free slot whose cache already holds
 *      the longest start of its prompt when that start is at least the
 *      `similarity` share of the prompt (the next turn of the same
 *      conversation), else to the least recently used slot, so that
 *      conversations taking turns keep their own slots. The conversation a
 *      slot held moves to the prompt cache (kvcache.c: memory, then disk)
 *      before another one takes the slot, and a job whose conversation is in
 *      the prompt cache gets its KV back from there; a start it shares with
 *      another slot (a common system prompt) is copied from that slot. Only
 *      the rest of the prompt is evaluated;
 *   2. build one batch: the last sampled token of every generating slot,
 *      then prompt chunks of slots still reading their prompt, up to n_batch
 *      rows;
 *   3. decode it, then sample a token for every slot whose row asked for
 *      logits, release its text (holding back what may be the start of a
 *      stop string or of a UTF-8 character) and finish slots that hit EOS, a
 *      stop string, max_tokens, the context's end, a deadline or a cancel.
 * Requests thus join and leave the batch at every step instead of waiting
 * for each other. Jobs (job.c) are shared with the HTTP thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

/* ---- the scheduler -------------------------------------------------------------- */
typedef struct slot {
    srv_job *job;
    /* the tokens in this sequence's KV cache, kept after a job ends so the
     * next job that starts with the same tokens (the same conversation, one
     * turn later) skips evaluating them again */
    int32_t *hist;
    uint32_t n_hist, cap_hist;
    bool hist_lost; /* out of memory once: reuse nothing until the cache restarts */
    double last_used; /* when a job last started or ended here */
    uint32_t n_fed, n_take;
    bool generating;
    int32_t next;
    byoai_sampler *sampler;
    byoai_json_filter *jf;
    byoai_buf pend; /* text held back: a stop string or a UTF-8 character may be starting */
    double *emb_sum;
} slot;

struct srv_sched {
    byoai_model *model;
    const byoai_tokenizer *tok;
    byoai_context *ctx;
    srv_sched_params p;
    int32_t n_vocab;
    uint32_t n_embd;
    srv_metrics *met;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    srv_job **queue; /* ring */
    size_t q_head, q_len;
    slot *slots;
    uint32_t n_active;
    srv_kvcache *cache; /* conversations that left their slot, or NULL */
    int32_t *b_tok, *b_seq;
    int8_t *b_want;
    uint32_t *want_slot, *row_slot;
};

/* end a slot's job, keeping its token history */
static void slot_clear(srv_sched *s, slot *sl) {
    byoai_sampler_free(sl->sampler);
    byoai_json_filter_free(sl->jf);
    byoai_buf_free(&sl->pend);
    free(sl->emb_sum);
    slot keep = {.hist = sl->hist, .n_hist = sl->n_hist, .cap_hist = sl->cap_hist, .hist_lost = sl->hist_lost,
                 .last_used = byoai_time_now()};
    *sl = keep;
    (void)s;
}

static bool hist_push(slot *sl, int32_t tok) {
    if (sl->hist_lost) return false;
    if (sl->n_hist == sl->cap_hist) {
        uint32_t cap = sl->cap_hist ? sl->cap_hist * 2 : 256;
        int32_t *h = realloc(sl->hist, cap * sizeof *h);
        if (!h) { /* forget rather than lie: the next job starts afresh */
            sl->n_hist = 0;
            sl->hist_lost = true;
            return false;
        }
        sl->hist = h;
        sl->cap_hist = cap;
    }
    sl->hist[sl->n_hist++] = tok;
    return true;
}

/* tokens at the start of the job's prompt already in the slot's cache */
static uint32_t reusable(const slot *sl, const srv_job *j) {
    if (j->embed || sl->hist_lost) return 0; /* embeddings need every token's hidden state */
    uint32_t n = 0, max = sl->n_hist < j->n_prompt ? sl->n_hist : j->n_prompt;
    while (n < max && sl->hist[n] == j->prompt[n]) n++;
    /* the last prompt token is always evaluated again: its logits start the answer */
    return n == j->n_prompt ? n - 1 : n;
}

/* End a slot's job: flush held-back text (unless an error), publish, free. */
static void finish(srv_sched *s, slot *sl, const char *reason, const srv_error *err) {
    srv_job *j = sl->job;
    if (!err && sl->pend.len && strcmp(reason, "cancelled"))
        srv_job_push_piece(j, sl->pend.data, sl->pend.len, -1, 0, NULL, NULL, 0);
    /* the slot is free before anyone can see the job done */
    slot_clear(s, sl);
    pthread_mutex_lock(&s->mu);
    s->n_active--;
    pthread_mutex_unlock(&s->mu);
    srv_job_end(j, reason, err);
    if (!strcmp(reason, "cancelled")) srv_metrics_cancelled(s->met);
    srv_job_unref(j);
}

/* a job that never got a slot */
static void finish_unstarted(srv_sched *s, srv_job *j, const char *reason, const srv_error *err) {
    srv_job_end(j, reason, err);
    if (!strcmp(reason, "cancelled")) srv_metrics_cancelled(s->met);
    srv_job_unref(j);
}

#define CACHE_MIN_TOKENS 8 /* shorter conversations are not worth a snapshot */

/* tokens at the start of prompt that sl's cache holds (the last prompt token
 * not counted: it is evaluated again for its logits) */
static uint32_t shared_start(const slot *sl, const srv_job *j) {
    if (sl->hist_lost) return 0;
    uint32_t n = 0, max = sl->n_hist < j->n_prompt ? sl->n_hist : j->n_prompt;
    while (n < max && sl->hist[n] == j->prompt[n]) n++;
    return n == j->n_prompt ? n - 1 : n;
}

static bool hist_set(slot *sl, const int32_t *toks, uint32_t n) {
    if (sl->cap_hist < n) {
        int32_t *h = realloc(sl->hist, (size_t)n * sizeof *h);
        if (!h) return false;
        sl->hist = h;
        sl->cap_hist = n;
    }
    memcpy(sl->hist, toks, (size_t)n * sizeof *sl->hist);
    sl->n_hist = n;
    sl->hist_lost = false;
    return true;
}

/* Before job j takes slot seq: when the slot holds another conversation
 * (evict), keep it in the prompt cache; then, when another slot or the
 * prompt cache holds a longer start of j's prompt than this slot (the same
 * conversation coming back, or a system prompt others share), copy that in.
 * Returns the prompt tokens the slot's cache now holds. */
static uint32_t prepare_cache(srv_sched *s, uint32_t seq, srv_job *j, bool evict) {
    slot *sl = &s->slots[seq];
    uint32_t keep = reusable(sl, j);
    if (j->embed) return keep;
    uint32_t held = sl->n_hist < byoai_kv_len(s->ctx, seq) ? sl->n_hist : byoai_kv_len(s->ctx, seq);
    if (s->cache && evict && !sl->hist_lost && held >= CACHE_MIN_TOKENS && held > keep)
        srv_kvcache_save(s->cache, s->ctx, seq, sl->hist, held);
    /* the best other source: a slot (any, busy or not: between steps its
     * first positions do not change) or the prompt cache */
    uint32_t from = UINT32_MAX, best = keep;
    for (uint32_t k = 0; k < s->p.n_seq; k++) {
        if (k == seq) continue;
        uint32_t c = shared_start(&s->slots[k], j);
        if (c > best && c <= byoai_kv_len(s->ctx, k)) best = c, from = k;
    }
    uint64_t id = 0;
    uint32_t c = s->cache ? srv_kvcache_match(s->cache, j->prompt, j->n_prompt, &id) : 0;
    if (c == j->n_prompt) c--;
    byoai_error err = {0};
    if (c > best && c >= CACHE_MIN_TOKENS) {
        if (srv_kvcache_restore(s->cache, id, s->ctx, seq, c, &err) == 0 && hist_set(sl, j->prompt, c)) return c;
        byoai_kv_truncate(s->ctx, seq, 0); /* whatever it wrote is not what the history says */
        sl->n_hist = 0;
        keep = 0;
    }
    if (from != UINT32_MAX && best > keep) {
        if (byoai_kv_copy(s->ctx, from, seq, best, &err) == 0 && hist_set(sl, j->prompt, best)) return best;
        byoai_kv_truncate(s->ctx, seq, 0);
        sl->n_hist = 0;
        return 0;
    }
    return keep;
}

static int slot_start(srv_sched *s, uint32_t seq, srv_job *j, bool evict, srv_error *e) {
    slot *sl = &s->slots[seq];
    sl->job = j;
    sl->last_used = byoai_time_now();
    uint32_t keep = prepare_cache(s, seq, j, evict);
    byoai_kv_truncate(s->ctx, seq, keep);
    sl->n_hist = keep;
    sl->hist_lost = false;
    sl->n_fed = keep;
    j->n_prompt_cached = keep;
    if (keep) srv_metrics_kvcache(s->met, SRV_KV_CACHED_TOKENS, keep);
    byoai_error err;
    if (j->embed) {
        sl->emb_sum = calloc(s->n_embd, sizeof(double));
        if (!sl->emb_sum) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        return 0;
    }
    byoai_sampler_params sp = byoai_sampler_defaults();
    sp.temp = j->s.temperature;
    sp.top_p = j->s.top_p > 0 ? j->s.top_p : 1.0f;
    sp.top_k = j->s.top_k;
    sp.min_p = j->s.min_p;
    sp.repeat_penalty = j->s.repeat_penalty;
    sp.frequency_penalty = j->s.frequency_penalty;
    sp.presence_penalty = j->s.presence_penalty;
    sp.seed = j->s.seed;
    if (byoai_sampler_new(&sp, s->n_vocab, &sl->sampler, &err))
        return srv_err(e, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
    if (j->grammar) {
        if (byoai_json_filter_new_grammar(s->tok, s->n_vocab, j->grammar, &sl->jf, &err))
            return srv_err(e, 500, "server_error", NULL, NULL, "%s", err.msg);
        byoai_sampler_set_filter(sl->sampler, byoai_json_filter_apply, sl->jf);
    }
    for (uint32_t i = 0; i < j->n_prompt; i++) byoai_sampler_accept(sl->sampler, j->prompt[i]);
    return 0;
}

/* Sample the next token of a slot from its logits and release its text. */
static void sample(srv_sched *s, uint32_t seq, const float *logits) {
    slot *sl = &s->slots[seq];
    srv_job *j = sl->job;
    const uint32_t L = byoai_kv_len(s->ctx, seq), n_ctx = s->p.n_ctx;
    uint32_t left = j->max_new ? j->max_new - j->n_gen : UINT32_MAX;
    uint32_t room = n_ctx - L + 1;
    if (sl->jf) byoai_json_filter_set_budget(sl->jf, left < room ? left : room);
    int32_t tok = byoai_sampler_sample(sl->sampler, logits);
    if (tok < 0) {
        finish(s, sl, "stop", NULL);
        return;
    }
    const bool as_text = byoai_json_filter_token_is_text(sl->jf, tok); /* e.g. Mistral's [TOOL_CALLS] */
    if (byoai_token_is_eog(s->tok, tok) || (byoai_token_is_control(s->tok, tok) && !as_text)) {
        finish(s, sl, "stop", NULL);
        return;
    }
    float lp = 0;
    int32_t ids[SRV_MAX_TOP_LOGPROBS];
    float lps[SRV_MAX_TOP_LOGPROBS];
    int n_top = 0;
    if (j->s.logprobs) {
        lp = byoai_logprob(logits, s->n_vocab, tok);
        n_top = (int)byoai_top_logprobs(logits, s->n_vocab, j->s.top_logprobs, ids, lps);
    }
    byoai_sampler_accept(sl->sampler, tok);
    if (sl->jf) byoai_json_filter_accept(sl->jf, tok);
    j->n_gen++;
    if (j->n_gen == 1) {
        j->t_first = byoai_time_now();
        srv_metrics_first_token(s->met, j->t_first - j->t_submit);
    }
    srv_metrics_tokens(s->met, 0, 1);
    char piece[512];
    int n = byoai_token_to_piece(s->tok, tok, piece, sizeof piece, as_text);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof piece) n = sizeof piece;
    if (!byoai_buf_append(&sl->pend, piece, (size_t)n)) {
        srv_error e;
        srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
        finish(s, sl, "error", &e);
        return;
    }
    bool found;
    size_t at = 0;
    size_t release = srv_stop_scan(sl->pend.data, sl->pend.len, j->s.stop, j->s.n_stop, false, &found, &at);
    srv_job_push_piece(j, sl->pend.data, release, tok, lp, ids, lps, n_top);
    if (found) {
        byoai_buf_clear(&sl->pend);
        finish(s, sl, "stop", NULL);
        return;
    }
    memmove(sl->pend.data, sl->pend.data + release, sl->pend.len - release);
    sl->pend.len -= release;
    sl->pend.data[sl->pend.len] = '\0';
    if (j->max_new && j->n_gen >= j->max_new) {
        finish(s, sl, "length", NULL);
        return;
    }
    if (L >= n_ctx) { /* no position left to feed this token */
        finish(s, sl, "length", NULL);
        return;
    }
    sl->generating = true;
    sl->next = tok;
}

static void embed_done(srv_sched *s, slot *sl) {
    srv_job *j = sl->job;
    float *v = malloc(s->n_embd * sizeof(float));
    if (!v) {
        srv_error e;
        srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
        finish(s, sl, "error", &e);
        return;
    }
    byoai_embedding_mean(sl->emb_sum, j->n_prompt, s->n_embd, v);
    pthread_mutex_lock(&j->mu);
    j->embedding = v;
    j->n_embd = s->n_embd;
    pthread_mutex_unlock(&j->mu);
    finish(s, sl, "stop", NULL);
}

/* One decode step over every active slot. */
static void step(srv_sched *s) {
    const uint32_t n_seq = s->p.n_seq;
    double now = byoai_time_now();
    for (uint32_t i = 0; i < n_seq; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job) continue;
        if (__atomic_load_n(&sl->job->cancelled, __ATOMIC_ACQUIRE)) finish(s, sl, "cancelled", NULL);
        else if (sl->job->deadline > 0 && now > sl->job->deadline) {
            srv_error e;
            srv_err(&e, 504, "server_error", "timeout", NULL, "the request took longer than the server's "
                    "request-timeout and was stopped");
            finish(s, sl, "error", &e);
        }
    }
    uint32_t rows = 0, n_want = 0;
    for (uint32_t i = 0; i < n_seq; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job || !sl->generating) continue;
        s->b_tok[rows] = sl->next;
        hist_push(sl, sl->next);
        s->b_seq[rows] = (int32_t)i;
        s->b_want[rows] = 1;
        s->row_slot[rows] = i;
        s->want_slot[n_want++] = i;
        rows++;
    }
    for (uint32_t i = 0; i < n_seq && rows < s->p.n_batch; i++) {
        slot *sl = &s->slots[i];
        sl->n_take = 0;
        if (!sl->job || sl->generating) continue;
        srv_job *j = sl->job;
        uint32_t take = j->n_prompt - sl->n_fed;
        if (take > s->p.n_batch - rows) take = s->p.n_batch - rows;
        for (uint32_t k = 0; k < take; k++) {
            uint32_t pi = sl->n_fed + k;
            s->b_tok[rows] = j->prompt[pi];
            hist_push(sl, j->prompt[pi]);
            s->b_seq[rows] = (int32_t)i;
            s->b_want[rows] = !j->embed && pi == j->n_prompt - 1;
            s->row_slot[rows] = i;
            if (s->b_want[rows]) s->want_slot[n_want++] = i;
            rows++;
        }
        sl->n_take = take;
        if (sl->n_fed == j->n_prompt_cached && take) j->t_start = now;
    }
    if (rows == 0) return;
    byoai_batch b = {.n_tokens = rows, .tokens = s->b_tok, .seq = s->b_seq, .want = s->b_want};
    byoai_error err;
    if (byoai_decode(s->ctx, &b, &err)) {
        srv_error e;
        srv_err(&e, 500, "server_error", NULL, NULL, "decoding failed: %s", err.msg);
        for (uint32_t i = 0; i < n_seq; i++) {
            s->slots[i].n_hist = 0; /* the histories no longer match the caches */
            if (s->slots[i].job) finish(s, &s->slots[i], "error", &e);
        }
        return;
    }
    /* prompt progress and embeddings */
    for (uint32_t r = 0; r < rows; r++) {
        slot *sl = &s->slots[s->row_slot[r]];
        if (!sl->job || !sl->job->embed) continue;
        const float *h = byoai_get_embedding(s->ctx, r);
        if (h)
            for (uint32_t d = 0; d < s->n_embd; d++) sl->emb_sum[d] += h[d];
    }
    for (uint32_t i = 0; i < n_seq; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job || sl->generating || !sl->n_take) continue;
        sl->n_fed += sl->n_take;
        sl->job->n_prompt_eval += sl->n_take;
        srv_metrics_tokens(s->met, sl->n_take, 0);
        if (sl->job->embed && sl->n_fed == sl->job->n_prompt) embed_done(s, sl);
    }
    for (uint32_t w = 0; w < n_want; w++) {
        uint32_t i = s->want_slot[w];
        if (!s->slots[i].job) continue;
        sample(s, i, byoai_get_output(s->ctx, w));
    }
}

/* The free slot for job j: the one whose cache holds the longest start of
 * its prompt when that is at least the similarity share of the prompt (the
 * same conversation), else the least recently used one (empty slots first),
 * whose conversation is then evicted (*evict). UINT32_MAX when none is free. */
static uint32_t choose_slot(srv_sched *s, const srv_job *j, bool *evict) {
    uint32_t best = UINT32_MAX, best_r = 0, lru = UINT32_MAX;
    for (uint32_t k = 0; k < s->p.n_seq; k++) {
        const slot *sl = &s->slots[k];
        if (sl->job) continue;
        uint32_t r = reusable(sl, j);
        if (best == UINT32_MAX || r > best_r) best = k, best_r = r;
        if (lru == UINT32_MAX) {
            lru = k;
            continue;
        }
        const slot *o = &s->slots[lru];
        bool empty = sl->n_hist == 0, o_empty = o->n_hist == 0;
        if ((empty && !o_empty) || (empty == o_empty && sl->last_used < o->last_used)) lru = k;
    }
    *evict = false;
    if (best == UINT32_MAX) return best;
    if (best_r > 0 && (double)best_r >= (double)s->p.similarity * (double)j->n_prompt) return best;
    *evict = s->slots[lru].n_hist > 0;
    return lru;
}

static void *sched_main(void *arg) {
    srv_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && s->q_len == 0 && s->n_active == 0) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping) break;
        /* admit queued jobs into free slots (choose_slot) */
        while (s->q_len && s->n_active < s->p.n_seq) {
            srv_job *j = s->queue[s->q_head];
            bool evict = false;
            uint32_t i = choose_slot(s, j, &evict);
            if (i == UINT32_MAX) break;
            s->q_head = (s->q_head + 1) % s->p.queue_max;
            s->q_len--;
            pthread_mutex_unlock(&s->mu);
            srv_error e = {0};
            if (__atomic_load_n(&j->cancelled, __ATOMIC_ACQUIRE)) {
                finish_unstarted(s, j, "cancelled", NULL);
            } else if (j->deadline > 0 && byoai_time_now() > j->deadline) {
                srv_err(&e, 503, "server_error", "overloaded", NULL, "the request waited longer than the server's "
                        "request-timeout for a free slot");
                finish_unstarted(s, j, "error", &e);
            } else if (slot_start(s, i, j, evict, &e)) {
                slot_clear(s, &s->slots[i]);
                finish_unstarted(s, j, "error", &e);
            } else {
                pthread_mutex_lock(&s->mu);
                s->n_active++;
                pthread_mutex_unlock(&s->mu);
            }
            pthread_mutex_lock(&s->mu);
        }
        pthread_mutex_unlock(&s->mu);
        step(s);
        pthread_mutex_lock(&s->mu);
    }
    /* stopping: cancel everything */
    while (s->q_len) {
        srv_job *j = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->p.queue_max;
        s->q_len--;
        pthread_mutex_unlock(&s->mu);
        finish_unstarted(s, j, "cancelled", NULL);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    for (uint32_t i = 0; i < s->p.n_seq; i++)
        if (s->slots[i].job) finish(s, &s->slots[i], "cancelled", NULL);
    return NULL;
}

int srv_sched_new(byoai_model *m, const srv_sched_params *p, srv_metrics *met, srv_sched **out, byoai_error *err) {
    *out = NULL;
    srv_sched *s = calloc(1, sizeof *s);
    if (!s) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    s->model = m;
    s->tok = byoai_model_tokenizer(m);
    s->met = met;
    s->p = *p;
    if (s->p.n_seq == 0) s->p.n_seq = 1;
    if (s->p.queue_max == 0) s->p.queue_max = 64;
    if (s->p.n_batch == 0) s->p.n_batch = 512;
    if (s->p.n_batch < s->p.n_seq) s->p.n_batch = s->p.n_seq;
    byoai_context_params cp = {.n_ctx = s->p.n_ctx, .n_seq = s->p.n_seq, .n_batch = s->p.n_batch,
                               .n_threads = s->p.n_threads, .embeddings = true};
    int rc = byoai_context_new(m, &cp, &s->ctx, err);
    if (rc) {
        free(s);
        return rc;
    }
    s->p.n_ctx = byoai_context_n_ctx(s->ctx);
    if (!(s->p.similarity >= 0 && s->p.similarity <= 1)) s->p.similarity = 0.5f;
    if (s->p.cache.ram_bytes || s->p.cache.disk_bytes) {
        uint8_t fp[32];
        byoai_model_fingerprint(m, fp);
        rc = srv_kvcache_new(&s->p.cache, fp, met, &s->cache, err);
        if (rc) {
            byoai_context_free(s->ctx);
            free(s);
            return rc;
        }
    }
    if (s->p.n_batch > s->p.n_ctx * s->p.n_seq) s->p.n_batch = s->p.n_ctx * s->p.n_seq;
    s->n_vocab = (int32_t)byoai_model_hparams(m)->n_vocab;
    s->n_embd = byoai_model_hparams(m)->n_embd;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->queue = calloc(s->p.queue_max, sizeof *s->queue);
    s->slots = calloc(s->p.n_seq, sizeof *s->slots);
    s->b_tok = malloc(s->p.n_batch * sizeof(int32_t));
    s->b_seq = malloc(s->p.n_batch * sizeof(int32_t));
    s->b_want = malloc(s->p.n_batch);
    s->want_slot = malloc(s->p.n_batch * sizeof(uint32_t));
    s->row_slot = malloc(s->p.n_batch * sizeof(uint32_t));
    if (!s->queue || !s->slots || !s->b_tok || !s->b_seq || !s->b_want || !s->want_slot || !s->row_slot) {
        srv_sched_free(s);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    if (pthread_create(&s->thread, NULL, sched_main, s)) {
        srv_sched_free(s);
        return byoai_error_set(err, BYOAI_ENOMEM, "cannot start the scheduler thread");
    }
    s->started = true;
    *out = s;
    return 0;
}

int srv_sched_submit(srv_sched *s, srv_job *j, srv_error *e) {
    if (j->n_prompt == 0)
        return srv_err(e, 400, "invalid_request_error", NULL, NULL, "the prompt is empty after tokenization");
    if (j->n_prompt > s->p.n_ctx)
        return srv_err(e, 400, "invalid_request_error", "context_length_exceeded", NULL,
                       "the prompt has %u tokens but this model's context holds %u tokens per request; shorten the "
                       "conversation (or start the server with a larger --ctx)", j->n_prompt, s->p.n_ctx);
    for (uint32_t i = 0; i < j->n_prompt; i++)
        if (j->prompt[i] < 0 || j->prompt[i] >= byoai_tokenizer_n_vocab(s->tok))
            return srv_err(e, 400, "invalid_request_error", NULL, "prompt",
                           "token id %d is outside the model's vocabulary (0..%d)", j->prompt[i],
                           byoai_tokenizer_n_vocab(s->tok) - 1);
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return srv_err(e, 503, "server_error", "unavailable", NULL, "the model is being unloaded; retry");
    }
    if (s->q_len >= s->p.queue_max) {
        pthread_mutex_unlock(&s->mu);
        return srv_err(e, 503, "server_error", "overloaded", NULL,
                       "the server is busy: %u requests are already waiting for this model; retry later",
                       s->p.queue_max);
    }
    srv_job_ref(j);
    j->t_submit = byoai_time_now();
    s->queue[(s->q_head + s->q_len) % s->p.queue_max] = j;
    s->q_len++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void srv_sched_stop(srv_sched *s) {
    if (!s || !s->started) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->started = false;
}

void srv_sched_free(srv_sched *s) {
    if (!s) return;
    srv_sched_stop(s);
    for (uint32_t i = 0; s->slots && i < s->p.n_seq; i++) free(s->slots[i].hist);
    srv_kvcache_free(s->cache);
    byoai_context_free(s->ctx);
    free(s->queue);
    free(s->slots);
    free(s->b_tok);
    free(s->b_seq);
    free(s->b_want);
    free(s->want_slot);
    free(s->row_slot);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

void srv_sched_counts(srv_sched *s, uint32_t *queued, uint32_t *active, uint32_t *slots) {
    pthread_mutex_lock(&s->mu);
    *queued = (uint32_t)s->q_len;
    *active = s->n_active;
    *slots = s->p.n_seq;
    pthread_mutex_unlock(&s->mu);
}

uint32_t srv_sched_n_ctx(const srv_sched *s) { return s->p.n_ctx; }

void srv_sched_cache_stats(srv_sched *s, srv_kvcache_stats *out) { srv_kvcache_sizes(s->cache, out); }

void srv_sched_cache_flush(srv_sched *s) { srv_kvcache_flush(s->cache); }

void srv_sched_persist(srv_sched *s, double seconds) {
    if (!s || !s->cache || seconds <= 0 || s->started) return;
    for (uint32_t i = 0; i < s->p.n_seq; i++) {
        slot *sl = &s->slots[i];
        uint32_t held = sl->n_hist < byoai_kv_len(s->ctx, i) ? sl->n_hist : byoai_kv_len(s->ctx, i);
        if (!sl->hist_lost && held >= CACHE_MIN_TOKENS) srv_kvcache_save(s->cache, s->ctx, i, sl->hist, held);
    }
    srv_kvcache_persist(s->cache, byoai_time_now() + seconds);
}
