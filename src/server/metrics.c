/*
 * Metrics: counters updated by the request threads and schedulers, and
 * their Prometheus text exposition (GET /metrics). Counters are atomics;
 * the per-route table and the tokens-per-second window take a mutex.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server_internal.h"

#define MAX_ROUTES 32
#define WINDOW 10 /* seconds over which tokens/s is measured */

typedef struct {
    char route[48];
    uint64_t by_class[6]; /* 1xx..5xx, [0] unused */
    double seconds;
    uint64_t count;
} route_stat;

struct srv_metrics {
    pthread_mutex_t mu;
    route_stat routes[MAX_ROUTES];
    int n_routes;
    uint64_t prompt_tokens, gen_tokens, cancelled;
    uint64_t kv[SRV_KV_EVENTS]; /* atomics */
    double ttft_sum;
    uint64_t ttft_count;
    /* generated tokens per second of the last WINDOW seconds */
    int64_t bucket_sec[WINDOW];
    uint64_t bucket_tokens[WINDOW];
};

int srv_metrics_new(srv_metrics **out) {
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return BYOAI_ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return 0;
}

void srv_metrics_free(srv_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void srv_metrics_request(srv_metrics *m, const char *route, int status, double seconds) {
    pthread_mutex_lock(&m->mu);
    route_stat *r = NULL;
    for (int i = 0; i < m->n_routes; i++)
        if (!strcmp(m->routes[i].route, route)) r = &m->routes[i];
    if (!r && m->n_routes < MAX_ROUTES) {
        r = &m->routes[m->n_routes++];
        snprintf(r->route, sizeof r->route, "%s", route);
    }
    if (r) {
        int c = status / 100;
        if (c < 1 || c > 5) c = 5;
        r->by_class[c]++;
        r->seconds += seconds;
        r->count++;
    }
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_tokens(srv_metrics *m, uint64_t prompt, uint64_t generated) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += prompt;
    m->gen_tokens += generated;
    if (generated) {
        int64_t now = (int64_t)byoai_time_now();
        int b = (int)(now % WINDOW);
        if (m->bucket_sec[b] != now) {
            m->bucket_sec[b] = now;
            m->bucket_tokens[b] = 0;
        }
        m->bucket_tokens[b] += generated;
    }
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_first_token(srv_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    m->ttft_sum += seconds;
    m->ttft_count++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_kvcache(srv_metrics *m, srv_kv_event ev, uint64_t n) {
    if (m && ev < SRV_KV_EVENTS) __atomic_add_fetch(&m->kv[ev], n, __ATOMIC_RELAXED);
}

void srv_metrics_cancelled(srv_metrics *m) { __atomic_add_fetch(&m->cancelled, 1, __ATOMIC_RELAXED); }

uint64_t srv_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, rss = 0;
    int n = fscanf(f, "%llu %llu", &size, &rss);
    fclose(f);
    if (n != 2) return 0;
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

typedef struct {
    char *s;
    size_t len, cap;
} tbuf;

static void tprintf(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tprintf(tbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) return;
        b->s = p;
        b->cap = cap;
    }
}

char *srv_metrics_render(srv_metrics *m, const srv_gauges *g) {
    tbuf b = {0};
    pthread_mutex_lock(&m->mu);
    tprintf(&b, "# HELP byoai_requests_total HTTP requests answered, by route and status class.\n"
                "# TYPE byoai_requests_total counter\n");
    for (int i = 0; i < m->n_routes; i++)
        for (int c = 1; c <= 5; c++)
            if (m->routes[i].by_class[c])
                tprintf(&b, "byoai_requests_total{route=\"%s\",status=\"%dxx\"} %llu\n", m->routes[i].route, c,
                        (unsigned long long)m->routes[i].by_class[c]);
    tprintf(&b, "# HELP byoai_request_seconds_sum Time spent answering requests, by route.\n"
                "# TYPE byoai_request_seconds_sum counter\n");
    for (int i = 0; i < m->n_routes; i++)
        tprintf(&b, "byoai_request_seconds_sum{route=\"%s\"} %.6f\n", m->routes[i].route, m->routes[i].seconds);
    int64_t now = (int64_t)byoai_time_now();
    uint64_t recent = 0;
    for (int i = 0; i < WINDOW; i++)
        if (m->bucket_sec[i] > now - WINDOW && m->bucket_sec[i] <= now) recent += m->bucket_tokens[i];
    tprintf(&b,
            "# HELP byoai_prompt_tokens_total Prompt tokens evaluated.\n# TYPE byoai_prompt_tokens_total counter\n"
            "byoai_prompt_tokens_total %llu\n"
            "# HELP byoai_generated_tokens_total Tokens generated.\n# TYPE byoai_generated_tokens_total counter\n"
            "byoai_generated_tokens_total %llu\n"
            "# HELP byoai_tokens_per_second Tokens generated per second over the last %d seconds, all models.\n"
            "# TYPE byoai_tokens_per_second gauge\nbyoai_tokens_per_second %.2f\n"
            "# HELP byoai_time_to_first_token_seconds Time from request to first generated token.\n"
            "# TYPE byoai_time_to_first_token_seconds summary\n"
            "byoai_time_to_first_token_seconds_sum %.6f\nbyoai_time_to_first_token_seconds_count %llu\n"
            "# HELP byoai_requests_cancelled_total Generations cancelled because the client went away or a "
            "deadline passed.\n# TYPE byoai_requests_cancelled_total counter\nbyoai_requests_cancelled_total %llu\n",
            (unsigned long long)m->prompt_tokens, (unsigned long long)m->gen_tokens, WINDOW,
            (double)recent / WINDOW, m->ttft_sum, (unsigned long long)m->ttft_count,
            (unsigned long long)__atomic_load_n(&m->cancelled, __ATOMIC_RELAXED));
    pthread_mutex_unlock(&m->mu);
    tprintf(&b,
            "# HELP byoai_queue_depth Requests waiting for a free sequence slot, all models.\n"
            "# TYPE byoai_queue_depth gauge\nbyoai_queue_depth %llu\n"
            "# HELP byoai_active_sequences Sequences being generated now.\n"
            "# TYPE byoai_active_sequences gauge\nbyoai_active_sequences %llu\n"
            "# HELP byoai_sequence_slots Sequence slots of the loaded models.\n"
            "# TYPE byoai_sequence_slots gauge\nbyoai_sequence_slots %llu\n"
            "# HELP byoai_open_requests Requests being answered (streams until they end).\n"
            "# TYPE byoai_open_requests gauge\nbyoai_open_requests %llu\n"
            "# HELP byoai_loaded_models Models loaded in memory.\n"
            "# TYPE byoai_loaded_models gauge\nbyoai_loaded_models %llu\n"
            "# HELP byoai_known_models Models this server can load.\n"
            "# TYPE byoai_known_models gauge\nbyoai_known_models %llu\n"
            "# HELP byoai_resident_memory_bytes Resident memory of the server process.\n"
            "# TYPE byoai_resident_memory_bytes gauge\nbyoai_resident_memory_bytes %llu\n",
            (unsigned long long)g->queue_depth, (unsigned long long)g->active_sequences,
            (unsigned long long)g->sequence_slots, (unsigned long long)g->open_requests,
            (unsigned long long)g->loaded_models, (unsigned long long)g->known_models,
            (unsigned long long)g->rss_bytes);
    uint64_t kv[SRV_KV_EVENTS];
    for (int i = 0; i < SRV_KV_EVENTS; i++) kv[i] = __atomic_load_n(&m->kv[i], __ATOMIC_RELAXED);
    tprintf(&b,
            "# HELP byoai_prompt_tokens_cached_total Prompt tokens not evaluated because a slot or the prompt cache "
            "held them.\n# TYPE byoai_prompt_tokens_cached_total counter\nbyoai_prompt_tokens_cached_total %llu\n"
            "# HELP byoai_prompt_cache_saves_total Conversations moved from a slot to the prompt cache.\n"
            "# TYPE byoai_prompt_cache_saves_total counter\nbyoai_prompt_cache_saves_total %llu\n"
            "# HELP byoai_prompt_cache_spills_total Cached conversations written to disk.\n"
            "# TYPE byoai_prompt_cache_spills_total counter\nbyoai_prompt_cache_spills_total %llu\n"
            "# HELP byoai_prompt_cache_restores_total Conversations put back into a slot, by where they were.\n"
            "# TYPE byoai_prompt_cache_restores_total counter\n"
            "byoai_prompt_cache_restores_total{tier=\"memory\"} %llu\n"
            "byoai_prompt_cache_restores_total{tier=\"disk\"} %llu\n"
            "# HELP byoai_prompt_cache_damaged_total Cache files refused for a bad size, header or checksum.\n"
            "# TYPE byoai_prompt_cache_damaged_total counter\nbyoai_prompt_cache_damaged_total %llu\n"
            "# HELP byoai_prompt_cache_entries Conversations in the prompt cache, by tier.\n"
            "# TYPE byoai_prompt_cache_entries gauge\n"
            "byoai_prompt_cache_entries{tier=\"memory\"} %llu\nbyoai_prompt_cache_entries{tier=\"disk\"} %llu\n"
            "# HELP byoai_prompt_cache_bytes Bytes the prompt cache holds, by tier.\n"
            "# TYPE byoai_prompt_cache_bytes gauge\n"
            "byoai_prompt_cache_bytes{tier=\"memory\"} %llu\nbyoai_prompt_cache_bytes{tier=\"disk\"} %llu\n",
            (unsigned long long)kv[SRV_KV_CACHED_TOKENS], (unsigned long long)kv[SRV_KV_SAVED],
            (unsigned long long)kv[SRV_KV_SPILLED], (unsigned long long)kv[SRV_KV_RESTORED_RAM],
            (unsigned long long)kv[SRV_KV_RESTORED_DISK], (unsigned long long)kv[SRV_KV_DAMAGED],
            (unsigned long long)(g->kv_entries - g->kv_disk_entries), (unsigned long long)g->kv_disk_entries,
            (unsigned long long)g->kv_ram_bytes, (unsigned long long)g->kv_disk_bytes);
    return b.s;
}
