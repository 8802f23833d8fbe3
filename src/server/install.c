/*
 * POST /api/models/install: install a model or bundle (byoai_install) and
 * report its progress as server-sent events.
 *
 *   {"model": "NAME[:VARIANT] | hf:OWNER/REPO/FILE.gguf", "registry"?: NAME|URL,
 *    "dry_run"?: false, "stream"?: true}
 *
 * The install runs on a thread of its own; its progress callback appends
 * events to a buffer that the response stream drains (field names follow
 * Ollama's pull API: status, completed, total). A client that goes away
 * cancels the install (the progress callback then returns non-zero), as
 * does a server shutdown. With "stream": false the answer is one JSON
 * object once the install is over.
 *
 * Ollama's POST /api/pull (ollama.c) runs the same install with Ollama's
 * framing: one JSON object per line, its status words ("pulling manifest",
 * "verifying sha256 digest", "success") and {"error": "..."}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

#define EMIT_EVERY 0.1 /* seconds between progress events of one phase */

typedef struct inst {
    int refs; /* atomic: the thread and the response */
    srv_server *srv;
    char spec[600], registry[600];
    bool dry_run;
    bool ollama; /* NDJSON in Ollama's shape instead of SSE */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;
    size_t len, off, cap;
    bool done, done_sent;
    int cancelled; /* atomic */
    double last_emit, last_send;
    char last_phase[32];
    char last_what[256];
    uint64_t last_total;
    int rc;
    byoai_error err;
    byoai_store_model out;
} inst;

static void inst_unref(inst *in) {
    if (__atomic_sub_fetch(&in->refs, 1, __ATOMIC_ACQ_REL)) return;
    pthread_mutex_destroy(&in->mu);
    pthread_cond_destroy(&in->cv);
    free(in->buf);
    free(in);
}

/* append text to the stream (under the lock) */
static void emit_raw(inst *in, const char *s) {
    size_t n = strlen(s);
    if (in->len + n + 1 > in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 4096;
        while (cap < in->len + n + 1) cap *= 2;
        char *p = realloc(in->buf, cap);
        if (!p) return;
        in->buf = p;
        in->cap = cap;
    }
    memcpy(in->buf + in->len, s, n + 1);
    in->len += n;
    pthread_cond_broadcast(&in->cv);
}

/* append one SSE event, or one NDJSON line for Ollama (under the lock) */
static void emit(inst *in, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return;
    if (!in->ollama) emit_raw(in, "data: ");
    emit_raw(in, s);
    emit_raw(in, in->ollama ? "\n" : "\n\n");
    free(s);
}

/* a progress event in Ollama's words */
static json_t *ollama_progress(const byoai_progress *p) {
    const char *phase = p->phase ? p->phase : "";
    if (!strcmp(phase, "resolving")) return json_pack("{s:s}", "status", "pulling manifest");
    if (!strcmp(phase, "verifying") || !strcmp(phase, "copying")) return json_pack("{s:s}", "status", "verifying sha256 digest");
    char st[300];
    snprintf(st, sizeof st, "pulling %s", p->what ? p->what : "");
    return json_pack("{s:s,s:s,s:I,s:I}", "status", st, "digest", p->what ? p->what : "", "total", (json_int_t)p->total,
                     "completed", (json_int_t)p->done);
}

static int progress(void *user, const byoai_progress *p) {
    inst *in = user;
    double now = byoai_time_now();
    pthread_mutex_lock(&in->mu);
    const char *phase = p->phase ? p->phase : "";
    if (in->ollama && !strcmp(in->last_phase, "downloading") && strcmp(phase, "downloading") && in->last_total) {
        /* the download is over: say so in full before the next phase */
        byoai_progress fin = {"downloading", in->last_what, in->last_total, in->last_total, 0};
        emit(in, ollama_progress(&fin));
        in->last_total = 0;
    }
    if (!strcmp(phase, "downloading")) {
        snprintf(in->last_what, sizeof in->last_what, "%s", p->what ? p->what : "");
        in->last_total = p->total;
    }
    if (strcmp(phase, in->last_phase) || now - in->last_emit >= EMIT_EVERY || (p->total && p->done == p->total)) {
        snprintf(in->last_phase, sizeof in->last_phase, "%s", phase);
        in->last_emit = now;
        json_t *o = in->ollama ? ollama_progress(p)
                               : json_pack("{s:s,s:s,s:I,s:I,s:f}", "status", phase, "what", p->what ? p->what : "",
                                           "completed", (json_int_t)p->done, "total", (json_int_t)p->total, "rate", p->rate);
        if (o) emit(in, o);
    }
    pthread_mutex_unlock(&in->mu);
    return __atomic_load_n(&in->cancelled, __ATOMIC_ACQUIRE) ||
           __atomic_load_n(&in->srv->draining, __ATOMIC_ACQUIRE);
}

static int status_of(int rc) {
    switch (rc) {
    case BYOAI_EINVAL: case BYOAI_EFORMAT: return 400;
    case BYOAI_ENOTFOUND: return 404;
    case BYOAI_ECANCELED: return 499;
    case BYOAI_ENET: case BYOAI_ECHECKSUM: case BYOAI_EAUTH: return 502;
    case BYOAI_ENOSPC: return 507;
    case BYOAI_ETIMEOUT: return 504;
    case BYOAI_EBUSY: return 409;
    default: return 500;
    }
}

static json_t *model_json(const byoai_store_model *m) {
    return json_pack("{s:s,s:s,s:s,s:I,s:s,s:b,s:s}", "id", m->name, "variant", m->variant, "sha256", m->sha256, "size",
                     (json_int_t)m->size, "registry", m->registry, "bundle", m->is_bundle, "revision", m->revision);
}

static void *install_main(void *arg) {
    inst *in = arg;
    byoai_install_opts opts = {.registry = in->registry[0] ? in->registry : NULL, .dry_run = in->dry_run};
    byoai_store *store = srv_models_store(in->srv->models);
    int rc = byoai_install(store, in->spec, &opts, progress, in, &in->out, &in->err);
    if (!rc && in->dry_run) snprintf(in->out.name, sizeof in->out.name, "%s", in->spec);
    pthread_mutex_lock(&in->mu);
    in->rc = rc;
    if (rc && in->ollama) {
        emit(in, json_pack("{s:s}", "error", in->err.msg[0] ? in->err.msg : "install failed"));
    } else if (rc) {
        srv_error e;
        srv_err(&e, status_of(rc), status_of(rc) < 500 ? "invalid_request_error" : "server_error",
                rc == BYOAI_ECANCELED ? "cancelled" : NULL, "model", "%s", in->err.msg[0] ? in->err.msg : "install failed");
        emit(in, srv_error_json(&e));
    } else if (in->ollama) {
        emit(in, json_pack("{s:s}", "status", "writing manifest"));
        emit(in, json_pack("{s:s}", "status", "success"));
    } else {
        emit(in, json_pack("{s:s,s:o}", "status", in->dry_run ? "dry run: nothing installed" : "success", "model",
                           model_json(&in->out)));
    }
    in->done = true;
    pthread_cond_broadcast(&in->cv);
    pthread_mutex_unlock(&in->mu);
    byoai_log(BYOAI_LOG_INFO, "install %s: %s", in->spec, rc ? in->err.msg : "done");
    srv_server *srv = in->srv;
    inst_unref(in);
    __atomic_sub_fetch(&srv->installs, 1, __ATOMIC_ACQ_REL);
    return NULL;
}

static ssize_t stream_read(void *user, char *out, size_t max) {
    inst *in = user;
    pthread_mutex_lock(&in->mu);
    for (;;) {
        if (in->off < in->len) {
            size_t n = in->len - in->off < max ? in->len - in->off : max;
            memcpy(out, in->buf + in->off, n);
            in->off += n;
            in->last_send = byoai_time_now();
            pthread_mutex_unlock(&in->mu);
            return (ssize_t)n;
        }
        if (in->done) {
            if (in->done_sent) {
                pthread_mutex_unlock(&in->mu);
                return 0;
            }
            in->done_sent = true;
            if (!in->ollama) emit_raw(in, "data: [DONE]\n\n");
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 500000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&in->cv, &in->mu, &ts);
        if (in->off == in->len && !in->done && byoai_time_now() - in->last_send > 2.0) {
            pthread_mutex_unlock(&in->mu);
            const char *k = in->ollama ? " " : ": keep-alive\n\n"; /* a space: JSON parsers skip it */
            size_t n = strlen(k) < max ? strlen(k) : max;
            memcpy(out, k, n);
            pthread_mutex_lock(&in->mu);
            in->last_send = byoai_time_now();
            pthread_mutex_unlock(&in->mu);
            return (ssize_t)n;
        }
    }
}

static void stream_done(void *user, bool completed) {
    inst *in = user;
    if (!completed) __atomic_store_n(&in->cancelled, 1, __ATOMIC_RELEASE);
    srv_open_dec(in->srv);
    inst_unref(in);
}

void srv_install_handle(srv_server *s, byoai_http_req *r) {
    srv_error e = {0};
    if (!srv_models_store(s->models)) {
        srv_err(&e, 503, "server_error", "unavailable", NULL, "the model store could not be opened (see the server log)");
        srv_send_error(r, &e);
        return;
    }
    size_t len;
    const char *body = byoai_http_body(r, &len);
    json_t *b = srv_parse_object(body, len, &e);
    if (!b) {
        srv_send_error(r, &e);
        return;
    }
    json_t *model = json_object_get(b, "model"), *reg = json_object_get(b, "registry"),
           *stream = json_object_get(b, "stream"), *dry = json_object_get(b, "dry_run");
    int bad = 0;
    if (!json_is_string(model) || json_string_length(model) == 0 || json_string_length(model) >= 600)
        bad = srv_err(&e, 400, "invalid_request_error", NULL, "model",
                      "'model' must be a string: NAME, NAME:VARIANT or hf:OWNER/REPO/FILE.gguf");
    else if (reg && !json_is_null(reg) && (!json_is_string(reg) || json_string_length(reg) >= 600))
        bad = srv_err(&e, 400, "invalid_request_error", NULL, "registry", "'registry' must be a registry name or URL");
    else if (stream && !json_is_boolean(stream))
        bad = srv_err(&e, 400, "invalid_request_error", NULL, "stream", "'stream' must be true or false");
    else if (dry && !json_is_boolean(dry))
        bad = srv_err(&e, 400, "invalid_request_error", NULL, "dry_run", "'dry_run' must be true or false");
    if (bad) {
        json_decref(b);
        srv_send_error(r, &e);
        return;
    }
    char spec[600], registry[600] = "";
    snprintf(spec, sizeof spec, "%s", json_string_value(model));
    if (json_is_string(reg)) snprintf(registry, sizeof registry, "%s", json_string_value(reg));
    bool streaming = !stream || json_is_true(stream), dry_run = json_is_true(dry);
    json_decref(b);
    srv_install_start(s, r, spec, registry, dry_run, streaming, false);
}

static void send_failure(byoai_http_req *r, bool ollama, const srv_error *e) {
    if (ollama) srv_send_json(r, e->status, json_pack("{s:s}", "error", e->message));
    else srv_send_error(r, e);
}

void srv_install_start(srv_server *s, byoai_http_req *r, const char *spec, const char *registry, bool dry_run,
                       bool streaming, bool ollama) {
    srv_error e = {0};
    if (!srv_models_store(s->models)) {
        srv_err(&e, 503, "server_error", "unavailable", NULL, "the model store could not be opened (see the server log)");
        send_failure(r, ollama, &e);
        return;
    }
    inst *in = calloc(1, sizeof *in);
    if (!in) {
        srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
        send_failure(r, ollama, &e);
        return;
    }
    in->refs = 2;
    in->srv = s;
    in->ollama = ollama;
    snprintf(in->spec, sizeof in->spec, "%s", spec);
    snprintf(in->registry, sizeof in->registry, "%s", registry ? registry : "");
    in->dry_run = dry_run;
    pthread_mutex_init(&in->mu, NULL);
    pthread_cond_init(&in->cv, NULL);
    in->last_send = byoai_time_now();
    __atomic_add_fetch(&s->installs, 1, __ATOMIC_ACQ_REL);
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, install_main, in)) {
        pthread_attr_destroy(&attr);
        __atomic_sub_fetch(&s->installs, 1, __ATOMIC_ACQ_REL);
        inst_unref(in);
        inst_unref(in);
        srv_err(&e, 500, "server_error", NULL, NULL, "cannot start the install");
        send_failure(r, ollama, &e);
        return;
    }
    pthread_attr_destroy(&attr);
    if (streaming) {
        srv_open_inc(s); /* until the stream's done() */
        byoai_http_add_header(r, "X-Accel-Buffering", "no");
        byoai_http_stream_ops ops = {stream_read, stream_done, NULL};
        byoai_http_send_stream(r, 200, ollama ? "application/x-ndjson" : "text/event-stream", &ops, in);
        return;
    }
    /* one answer at the end; a client that leaves cancels */
    pthread_mutex_lock(&in->mu);
    while (!in->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&in->cv, &in->mu, &ts);
        if (!in->done && byoai_http_client_gone(r)) __atomic_store_n(&in->cancelled, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&in->mu);
    if (in->rc) {
        srv_err(&e, status_of(in->rc), status_of(in->rc) < 500 ? "invalid_request_error" : "server_error",
                in->rc == BYOAI_ECANCELED ? "cancelled" : NULL, "model", "%s",
                in->err.msg[0] ? in->err.msg : "install failed");
        send_failure(r, ollama, &e);
    } else if (ollama) {
        srv_send_json(r, 200, json_pack("{s:s}", "status", "success"));
    } else {
        srv_send_json(r, 200, json_pack("{s:s,s:o}", "status", in->dry_run ? "dry run: nothing installed" : "success",
                                        "model", model_json(&in->out)));
    }
    inst_unref(in);
}
