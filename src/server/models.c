/*
 * Model lifecycle: which models the server knows, loading on first use, the
 * cap on loaded models (least recently used idle model unloads first) and
 * unloading after an idle time (a reaper thread).
 *
 * A loaded model is reference counted under the manager's lock: every
 * request that uses it holds a reference until its response is over, and a
 * model unloads only at zero. Loading happens on the requesting thread,
 * outside the lock; other requests for the same model wait for it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server_internal.h"

#define MAX_LOADED 64

struct srv_models {
    const byoai_server_config *cfg;
    srv_metrics *met;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_loaded *loaded[MAX_LOADED];
    uint32_t n_loaded;
    pthread_t reaper;
    pthread_cond_t reaper_cv;
    bool stop, reaper_started;
};

static void unload(srv_loaded *l) {
    byoai_log(BYOAI_LOG_INFO, "unloading model %s", l->name);
    srv_sched_free(l->sched);
    byoai_model_free(l->model);
    free(l);
}

/* remove index i from the table (under the lock) */
static srv_loaded *take(srv_models *m, uint32_t i) {
    srv_loaded *l = m->loaded[i];
    m->loaded[i] = m->loaded[--m->n_loaded];
    return l;
}

static void *reaper_main(void *arg) {
    srv_models *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&m->reaper_cv, &m->mu, &ts);
        if (m->stop || !m->cfg->idle_timeout) continue;
        double now = byoai_time_now();
        for (uint32_t i = 0; i < m->n_loaded;) {
            srv_loaded *l = m->loaded[i];
            if (!l->loading && l->refs == 0 && now - l->last_used >= m->cfg->idle_timeout) {
                take(m, i);
                pthread_mutex_unlock(&m->mu);
                unload(l);
                pthread_mutex_lock(&m->mu);
                pthread_cond_broadcast(&m->cv);
                i = 0;
                continue;
            }
            i++;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

int srv_models_new(const byoai_server_config *cfg, srv_metrics *met, srv_models **out, byoai_error *err) {
    *out = NULL;
    srv_models *m = calloc(1, sizeof *m);
    if (!m) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    m->cfg = cfg;
    m->met = met;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    pthread_cond_init(&m->reaper_cv, NULL);
    if (pthread_create(&m->reaper, NULL, reaper_main, m)) {
        free(m);
        return byoai_error_set(err, BYOAI_ENOMEM, "cannot start the model reaper thread");
    }
    m->reaper_started = true;
    *out = m;
    return 0;
}

void srv_models_free(srv_models *m) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->reaper_cv);
    pthread_mutex_unlock(&m->mu);
    if (m->reaper_started) pthread_join(m->reaper, NULL);
    for (uint32_t i = 0; i < m->n_loaded; i++) unload(m->loaded[i]);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    pthread_cond_destroy(&m->reaper_cv);
    free(m);
}

int srv_models_resolve(srv_models *m, const char *name, char *path, size_t cap, byoai_chat_family *family,
                       bool *family_forced, srv_error *e) {
    *family = BYOAI_CHAT_FALLBACK;
    *family_forced = false;
    for (uint32_t i = 0; i < m->cfg->n_models; i++) {
        const byoai_server_model_spec *sp = &m->cfg->models[i];
        if (strcmp(sp->name, name)) continue;
        snprintf(path, cap, "%s", sp->path);
        if (sp->chat_template[0] && !byoai_chat_family_parse(sp->chat_template, family, NULL)) *family_forced = true;
        return 0;
    }
    /* installed models (byoai_store_find) join here once the store lands */
    char avail[512] = "";
    size_t off = 0;
    for (uint32_t i = 0; i < m->cfg->n_models && off < sizeof avail - 140; i++)
        off += (size_t)snprintf(avail + off, sizeof avail - off, "%s%s", i ? ", " : "", m->cfg->models[i].name);
    return srv_err(e, 404, "invalid_request_error", "model_not_found", "model",
                   "the model '%s' does not exist on this server%s%s%s", name,
                   avail[0] ? " (available: " : "; start it with `byoai serve MODEL.gguf`", avail,
                   avail[0] ? ")" : "");
}

/* Unload the least recently used idle model; false when all are busy. */
static bool evict_one(srv_models *m) {
    int best = -1;
    for (uint32_t i = 0; i < m->n_loaded; i++) {
        srv_loaded *l = m->loaded[i];
        if (l->loading || l->refs) continue;
        if (best < 0 || l->last_used < m->loaded[best]->last_used) best = (int)i;
    }
    if (best < 0) return false;
    srv_loaded *l = take(m, (uint32_t)best);
    pthread_mutex_unlock(&m->mu);
    unload(l);
    pthread_mutex_lock(&m->mu);
    return true;
}

int srv_models_acquire(srv_models *m, const char *name, srv_loaded **out, srv_error *e) {
    *out = NULL;
    char path[4096];
    byoai_chat_family fam;
    bool forced;
    int rc = srv_models_resolve(m, name, path, sizeof path, &fam, &forced, e);
    if (rc) return rc;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        if (m->stop) {
            pthread_mutex_unlock(&m->mu);
            return srv_err(e, 503, "server_error", "unavailable", NULL, "the server is shutting down");
        }
        srv_loaded *found = NULL;
        for (uint32_t i = 0; i < m->n_loaded; i++)
            if (!strcmp(m->loaded[i]->name, name)) found = m->loaded[i];
        if (found && found->loading) { /* someone else is loading it */
            pthread_cond_wait(&m->cv, &m->mu);
            continue;
        }
        if (found) {
            found->refs++;
            found->last_used = byoai_time_now();
            pthread_mutex_unlock(&m->mu);
            *out = found;
            return 0;
        }
        uint32_t cap = m->cfg->max_loaded ? m->cfg->max_loaded : 1;
        if (cap > MAX_LOADED) cap = MAX_LOADED;
        if (m->n_loaded >= cap) {
            if (evict_one(m)) continue;
            pthread_mutex_unlock(&m->mu);
            return srv_err(e, 503, "server_error", "overloaded", NULL,
                           "cannot load '%s': %u models are loaded and all are in use (max-loaded = %u); retry later",
                           name, m->n_loaded, cap);
        }
        break;
    }
    /* claim a loading entry, then load outside the lock */
    srv_loaded *l = calloc(1, sizeof *l);
    if (!l) {
        pthread_mutex_unlock(&m->mu);
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(l->path, sizeof l->path, "%s", path);
    l->loading = true;
    l->refs = 1;
    m->loaded[m->n_loaded++] = l;
    pthread_mutex_unlock(&m->mu);

    double t0 = byoai_time_now();
    byoai_error err = {0};
    rc = byoai_model_load(path, NULL, &l->model, &err);
    if (!rc) {
        size_t tl;
        const char *tmpl = byoai_model_chat_template(l->model, &tl);
        l->family = forced ? fam : byoai_chat_detect(tmpl, tl);
        /* no template, but a ChatML vocabulary: use ChatML (as llama.cpp does) */
        if (!forced && l->family == BYOAI_CHAT_FALLBACK &&
            byoai_token_lookup(byoai_model_tokenizer(l->model), "<|im_start|>", 12) >= 0)
            l->family = BYOAI_CHAT_CHATML;
        srv_sched_params sp = {.n_seq = m->cfg->parallel, .n_ctx = m->cfg->ctx, .n_threads = (int)m->cfg->threads,
                               .queue_max = m->cfg->queue};
        rc = srv_sched_new(l->model, &sp, m->met, &l->sched, &err);
    }
    pthread_mutex_lock(&m->mu);
    l->loading = false;
    if (rc) {
        for (uint32_t i = 0; i < m->n_loaded; i++)
            if (m->loaded[i] == l) take(m, i);
        pthread_cond_broadcast(&m->cv);
        pthread_mutex_unlock(&m->mu);
        byoai_model_free(l->model);
        free(l);
        return srv_err(e, 500, "server_error", "model_load_failed", "model", "cannot load model '%s': %s", name,
                       err.msg);
    }
    l->last_used = byoai_time_now();
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    byoai_log(BYOAI_LOG_INFO, "loaded model %s (%s, chat template %s) in %.2f s", name, path,
              byoai_chat_family_name(l->family), byoai_time_now() - t0);
    *out = l;
    return 0;
}

void srv_models_release(srv_models *m, srv_loaded *l) {
    if (!l) return;
    pthread_mutex_lock(&m->mu);
    l->refs--;
    l->last_used = byoai_time_now();
    pthread_mutex_unlock(&m->mu);
}

json_t *srv_models_list(srv_models *m) {
    json_t *data = json_array();
    for (uint32_t i = 0; i < m->cfg->n_models; i++) {
        const byoai_server_model_spec *sp = &m->cfg->models[i];
        struct stat st;
        json_int_t created = stat(sp->path, &st) == 0 ? (json_int_t)st.st_mtime : 0;
        bool loaded = false;
        pthread_mutex_lock(&m->mu);
        for (uint32_t k = 0; k < m->n_loaded; k++)
            if (!strcmp(m->loaded[k]->name, sp->name) && !m->loaded[k]->loading) loaded = true;
        pthread_mutex_unlock(&m->mu);
        json_array_append_new(data, json_pack("{s:s,s:s,s:I,s:s,s:{s:s,s:b,s:s}}", "id", sp->name, "object", "model",
                                              "created", created, "owned_by", "byoai", "byoai", "source", "file",
                                              "loaded", loaded, "path", sp->path));
    }
    return json_pack("{s:s,s:o}", "object", "list", "data", data);
}

void srv_models_gauges(srv_models *m, srv_gauges *g) {
    pthread_mutex_lock(&m->mu);
    g->loaded_models = 0;
    for (uint32_t i = 0; i < m->n_loaded; i++) {
        srv_loaded *l = m->loaded[i];
        if (l->loading) continue;
        g->loaded_models++;
        uint32_t q, a, s;
        srv_sched_counts(l->sched, &q, &a, &s);
        g->queue_depth += q;
        g->active_sequences += a;
        g->sequence_slots += s;
    }
    g->known_models = m->cfg->n_models;
    pthread_mutex_unlock(&m->mu);
}

void srv_models_cancel_all(srv_models *m) {
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->cv);
    pthread_cond_broadcast(&m->reaper_cv);
    for (uint32_t i = 0; i < m->n_loaded; i++)
        if (!m->loaded[i]->loading) srv_sched_stop(m->loaded[i]->sched);
    pthread_mutex_unlock(&m->mu);
}
