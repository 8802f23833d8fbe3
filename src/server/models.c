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
    byoai_store *store; /* installed models; NULL when it cannot be opened */
    srv_metrics *met;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_loaded *loaded[MAX_LOADED];
    uint32_t n_loaded;
    pthread_t reaper;
    pthread_cond_t reaper_cv;
    bool stop, reaper_started;
};

/* persist_s: seconds to spend writing the slots' conversations to the disk
 * prompt cache first (so that they survive the unload) */
/* Time an unloading model may take to write its slots' conversations to the
 * disk prompt cache: generous when idle, short at shutdown (a server stops
 * in well under a second; what is not written by then is recomputed). */
#define UNLOAD_PERSIST_SECONDS 30.0
#define SHUTDOWN_PERSIST_SECONDS 0.25

static void unload(srv_loaded *l, double persist_s) {
    byoai_log(BYOAI_LOG_INFO, "unloading model %s", l->name);
    srv_sched_stop(l->sched);
    srv_sched_persist(l->sched, persist_s);
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
                unload(l, UNLOAD_PERSIST_SECONDS);
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
    byoai_error serr = {0};
    if (byoai_store_open(cfg->home[0] ? cfg->home : NULL, &m->store, &serr)) {
        byoai_log(BYOAI_LOG_WARN, "installed models are not available: %s", serr.msg);
        m->store = NULL;
    }
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
    for (uint32_t i = 0; i < m->n_loaded; i++) unload(m->loaded[i], SHUTDOWN_PERSIST_SECONDS);
    byoai_store_close(m->store);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    pthread_cond_destroy(&m->reaper_cv);
    free(m);
}

static const byoai_server_model_spec *spec_of(srv_models *m, const char *name) {
    for (uint32_t i = 0; i < m->cfg->n_models; i++)
        if (!strcmp(m->cfg->models[i].name, name)) return &m->cfg->models[i];
    return NULL;
}

int srv_models_resolve(srv_models *m, const char *name, srv_resolved *out, srv_error *e) {
    memset(out, 0, sizeof *out);
    out->family = BYOAI_CHAT_FALLBACK;
    /* 1. files given to this server (command line, config) */
    const byoai_server_model_spec *sp = spec_of(m, name);
    if (sp) {
        snprintf(out->path, sizeof out->path, "%s", sp->path);
        if (sp->chat_template[0] && !byoai_chat_family_parse(sp->chat_template, &out->family, NULL))
            out->family_forced = true;
        return 0;
    }
    /* 2. installed models and bundles (byoai install) */
    if (m->store && byoai_store_check_name(name, NULL) == 0) {
        byoai_store_model info;
        byoai_error serr = {0};
        if (byoai_store_find(m->store, name, &info, &serr) == 0) {
            snprintf(out->path, sizeof out->path, "%s", info.path);
            out->installed = true;
            out->is_bundle = info.is_bundle;
            snprintf(out->system_prompt, sizeof out->system_prompt, "%s", info.system_prompt);
            snprintf(out->params_json, sizeof out->params_json, "%s", info.params_json);
            return 0;
        }
    }
    char avail[512] = "";
    size_t off = 0;
    for (uint32_t i = 0; i < m->cfg->n_models && off < sizeof avail - 140; i++)
        off += (size_t)snprintf(avail + off, sizeof avail - off, "%s%s", off ? ", " : "", m->cfg->models[i].name);
    byoai_store_model *list = NULL;
    size_t n = 0;
    if (m->store && byoai_store_list(m->store, &list, &n, NULL) == 0)
        for (size_t i = 0; i < n && off < sizeof avail - 140; i++)
            if (!spec_of(m, list[i].name))
                off += (size_t)snprintf(avail + off, sizeof avail - off, "%s%s", off ? ", " : "", list[i].name);
    free(list);
    return srv_err(e, 404, "invalid_request_error", "model_not_found", "model",
                   "the model '%s' does not exist on this server%s%s%s", name,
                   avail[0] ? " (available: " : "; install one with `byoai install NAME` or start the server with "
                                                "`byoai serve MODEL.gguf`", avail, avail[0] ? ")" : "");
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
    unload(l, UNLOAD_PERSIST_SECONDS);
    pthread_mutex_lock(&m->mu);
    return true;
}

int srv_models_acquire(srv_models *m, const char *name, srv_loaded **out, srv_error *e) {
    *out = NULL;
    srv_resolved res;
    int rc = srv_models_resolve(m, name, &res, e);
    if (rc) return rc;
    const char *path = res.path;
    byoai_chat_family fam = res.family;
    bool forced = res.family_forced;
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
    l->is_bundle = res.is_bundle;
    snprintf(l->system_prompt, sizeof l->system_prompt, "%s", res.system_prompt);
    snprintf(l->params_json, sizeof l->params_json, "%s", res.params_json);
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
                               .queue_max = m->cfg->queue, .similarity = m->cfg->slot_similarity,
                               .cache = {.ram_bytes = m->cfg->cache_ram, .disk_bytes = m->cfg->cache_disk}};
        srv_cache_dir(m->cfg, sp.cache.dir, sizeof sp.cache.dir);
        rc = srv_sched_new(l->model, &sp, m->met, &l->sched, &err);
        if (!rc) l->n_ctx = srv_sched_n_ctx(l->sched);
        uint32_t train = byoai_model_hparams(l->model)->n_ctx_train;
        if (!rc && train && l->n_ctx > train)
            byoai_log(BYOAI_LOG_WARN, "model %s: the context of %u tokens (ctx) is more than the %u it was trained on: "
                      "text past %u tokens may become incoherent", name, l->n_ctx, train, train);
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

static bool is_loaded(srv_models *m, const char *name) {
    bool loaded = false;
    pthread_mutex_lock(&m->mu);
    for (uint32_t k = 0; k < m->n_loaded; k++)
        if (!strcmp(m->loaded[k]->name, name) && !m->loaded[k]->loading) loaded = true;
    pthread_mutex_unlock(&m->mu);
    return loaded;
}

json_t *srv_models_list(srv_models *m) {
    json_t *data = json_array();
    for (uint32_t i = 0; i < m->cfg->n_models; i++) {
        const byoai_server_model_spec *sp = &m->cfg->models[i];
        struct stat st;
        json_int_t created = stat(sp->path, &st) == 0 ? (json_int_t)st.st_mtime : 0;
        json_array_append_new(data, json_pack("{s:s,s:s,s:I,s:s,s:{s:s,s:b,s:s}}", "id", sp->name, "object", "model",
                                              "created", created, "owned_by", "byoai", "byoai", "source", "file",
                                              "loaded", is_loaded(m, sp->name), "path", sp->path));
    }
    byoai_store_model *list = NULL;
    size_t n = 0;
    if (m->store && byoai_store_list(m->store, &list, &n, NULL) == 0) {
        for (size_t i = 0; i < n; i++) {
            const byoai_store_model *x = &list[i];
            if (spec_of(m, x->name)) continue; /* a file given to the server wins */
            json_array_append_new(
                data, json_pack("{s:s,s:s,s:I,s:s,s:{s:s,s:b,s:b,s:s,s:I,s:s,s:s}}", "id", x->name, "object", "model",
                                "created", (json_int_t)x->installed_at, "owned_by", x->registry[0] ? x->registry : "byoai",
                                "byoai", "source", "installed", "loaded", is_loaded(m, x->name), "bundle",
                                x->is_bundle, "variant", x->variant, "size", (json_int_t)x->size, "sha256", x->sha256,
                                "revision", x->revision));
        }
    }
    free(list);
    return json_pack("{s:s,s:o}", "object", "list", "data", data);
}

struct byoai_store *srv_models_store(srv_models *m) { return m->store; }

int srv_models_remove(srv_models *m, const char *name, srv_error *e) {
    if (spec_of(m, name))
        return srv_err(e, 400, "invalid_request_error", "not_installed", NULL,
                       "'%s' is a file given to this server, not an installed model; nothing to uninstall", name);
    if (!m->store)
        return srv_err(e, 503, "server_error", "unavailable", NULL, "the model store is not available");
    byoai_error serr = {0};
    if (byoai_store_check_name(name, &serr))
        return srv_err(e, 404, "invalid_request_error", "model_not_found", NULL, "%s", serr.msg);
    /* unload it first; refuse while requests use it */
    pthread_mutex_lock(&m->mu);
    for (uint32_t i = 0; i < m->n_loaded; i++) {
        srv_loaded *l = m->loaded[i];
        if (strcmp(l->name, name)) continue;
        if (l->loading || l->refs) {
            pthread_mutex_unlock(&m->mu);
            return srv_err(e, 409, "invalid_request_error", "model_in_use", NULL,
                           "'%s' is answering requests; remove it when they are done", name);
        }
        take(m, i);
        pthread_mutex_unlock(&m->mu);
        unload(l, 0); /* the model goes away: its conversations too */
        pthread_mutex_lock(&m->mu);
        pthread_cond_broadcast(&m->cv);
        break;
    }
    pthread_mutex_unlock(&m->mu);
    int rc = byoai_store_remove(m->store, name, &serr);
    if (rc == BYOAI_ENOTFOUND)
        return srv_err(e, 404, "invalid_request_error", "model_not_found", NULL, "%s", serr.msg);
    if (rc) return srv_err(e, 500, "server_error", NULL, NULL, "cannot remove '%s': %s", name, serr.msg);
    return 0;
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
        srv_kvcache_stats ks;
        srv_sched_cache_stats(l->sched, &ks);
        g->kv_entries += ks.entries;
        g->kv_disk_entries += ks.disk_entries;
        g->kv_ram_bytes += ks.ram_bytes;
        g->kv_disk_bytes += ks.disk_bytes;
    }
    g->known_models = m->cfg->n_models;
    pthread_mutex_unlock(&m->mu);
    byoai_store_model *list = NULL;
    size_t n = 0;
    if (m->store && byoai_store_list(m->store, &list, &n, NULL) == 0)
        for (size_t i = 0; i < n; i++)
            if (!spec_of(m, list[i].name)) g->known_models++;
    free(list);
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
