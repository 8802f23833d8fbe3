/*
 * Jobs: one generation or embedding, shared (reference counted) between the
 * HTTP thread that asked for it and the scheduler or cluster runner that
 * produces it; output goes through the job's piece list under its mutex.
 * Also the stop-string scan both producers use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

/* ---- jobs ------------------------------------------------------------------------ */
srv_job *srv_job_new(void) {
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->refs = 1;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    return j;
}

void srv_job_ref(srv_job *j) { __atomic_add_fetch(&j->refs, 1, __ATOMIC_ACQ_REL); }

void srv_job_unref(srv_job *j) {
    if (!j || __atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (size_t i = 0; i < j->n_pieces; i++) free(j->pieces[i].text);
    free(j->pieces);
    for (size_t i = 0; i < j->s.n_stop; i++) free(j->s.stop[i]);
    byoai_grammar_free(j->grammar);
    free(j->prompt);
    free(j->schema_text);
    free(j->embedding);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void srv_job_cancel(srv_job *j) { __atomic_store_n(&j->cancelled, 1, __ATOMIC_RELEASE); }

bool srv_job_wait(srv_job *j, size_t seen, double timeout_s) {
    pthread_mutex_lock(&j->mu);
    if (j->n_pieces <= seen && !j->done && timeout_s > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + timeout_s;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        while (j->n_pieces <= seen && !j->done)
            if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) != 0) break;
    }
    bool news = j->n_pieces > seen || j->done;
    pthread_mutex_unlock(&j->mu);
    return news;
}

/* ---- stop strings ---------------------------------------------------------------- */
size_t srv_stop_scan(const char *buf, size_t n, char *const *stops, size_t n_stops, bool final, bool *found,
                     size_t *stop_at) {
    *found = false;
    size_t best = n;
    for (size_t i = 0; i < n_stops; i++) {
        size_t k = strlen(stops[i]);
        if (!k || k > n) continue;
        const char *p = memmem(buf, n, stops[i], k);
        if (p && (size_t)(p - buf) < best) {
            best = (size_t)(p - buf);
            *found = true;
        }
    }
    if (*found) {
        *stop_at = best;
        return best;
    }
    if (final) return n;
    /* hold back the longest tail that is the start of a stop string */
    size_t hold = byoai_utf8_incomplete_tail(buf, n);
    for (size_t i = 0; i < n_stops; i++) {
        size_t k = strlen(stops[i]);
        for (size_t t = k > n ? n : k - 1; t > hold; t--)
            if (!memcmp(buf + n - t, stops[i], t)) {
                hold = t;
                break;
            }
    }
    return n - hold;
}

void srv_job_push_piece(srv_job *j, const char *text, size_t len, int32_t token, float lp, const int32_t *ids,
                        const float *lps, int n_top) {
    srv_piece pc = {0};
    pc.token = token;
    pc.logprob = lp;
    pc.text = byoai_utf8_sanitize(text ? text : "", len, &pc.len);
    if (!pc.text) return;
    pc.n_top = (uint8_t)n_top;
    if (n_top > 0) {
        memcpy(pc.top_ids, ids, (size_t)n_top * sizeof *ids);
        memcpy(pc.top_lps, lps, (size_t)n_top * sizeof *lps);
    }
    pthread_mutex_lock(&j->mu);
    if (j->n_pieces == j->cap_pieces) {
        size_t cap = j->cap_pieces ? j->cap_pieces * 2 : 32;
        srv_piece *p = realloc(j->pieces, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&j->mu);
            free(pc.text);
            return;
        }
        j->pieces = p;
        j->cap_pieces = cap;
    }
    j->pieces[j->n_pieces++] = pc;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Publish a job's end (reason, error) to whoever waits on it. */
void srv_job_end(srv_job *j, const char *reason, const srv_error *err) {
    pthread_mutex_lock(&j->mu);
    snprintf(j->finish, sizeof j->finish, "%s", reason);
    if (err) j->err = *err;
    j->t_end = byoai_time_now();
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}
