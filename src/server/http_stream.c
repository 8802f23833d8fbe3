/*
 * Streamed responses. Producers keep a blocking read() (an SSE generator
 * waits for tokens), but the event thread must never block: the worker
 * that ran the handler pumps read() into a buffer, one read ahead of MHD
 * (as when MHD pulled from read() itself, each event goes out on its own),
 * and MHD's content reader copies out of it. When the buffer is empty, the reader
 * suspends the connection and returns 0 (libmicrohttpd requires the two
 * together); the pump resumes it when data, the end or an error arrives.
 *
 * Lifetime: two references, the pump's and the MHD response's. The
 * response's free callback marks the stream closed (the answer is over or
 * the client went away), which stops the pump; done() runs on the pump's
 * thread once, with completed true only when the producer's end was handed
 * to MHD.
 *
 * Locks: s->mu is taken inside MHD's response lock (the reader runs under
 * it) and before MHD's connection lock (suspend, resume); nothing takes
 * them the other way round.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http_internal.h"

#define STREAM_CHUNK (16 * 1024)
#define STREAM_BUFFER STREAM_CHUNK

struct http_stream {
    byoai_http *h;
    struct MHD_Connection *conn;
    byoai_http_stream_ops ops;
    void *user;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;               /* ring of STREAM_BUFFER bytes */
    size_t head, len;
    bool eof;                /* the producer ended */
    bool failed;             /* the producer failed, or the server stops */
    bool delivered_eof;      /* MHD got the end */
    bool closed;             /* MHD is done with the response */
    bool reader_waiting;     /* the connection is suspended by the reader */
    bool attached;           /* a pump will run (the answer was taken) */
    int refs;
    http_stream *prev, *next; /* h->streams, under h->mu */
    /* log fields the producer gave at its end (ops.log), for the request's line */
    http_log_field log[4];
    int n_log;
};

struct byoai_http_log {
    http_stream *s;
};

void byoai_http_log_add_int(byoai_http_log *log, const char *key, long long value) {
    http_stream *s = log->s; /* s->mu is held by the pump */
    if (s->n_log >= (int)(sizeof s->log / sizeof s->log[0])) return;
    http_log_field *f = &s->log[s->n_log++];
    snprintf(f->key, sizeof f->key, "%s", key);
    snprintf(f->value, sizeof f->value, "%lld", value);
    f->is_int = true;
}

void http_stream_log_fields(http_stream *s, byoai_http_req *r) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_log; i++) byoai_http_log_int(r, s->log[i].key, atoll(s->log[i].value));
    pthread_mutex_unlock(&s->mu);
}

static void stream_unref(http_stream *s) {
    pthread_mutex_lock(&s->mu);
    int left = --s->refs;
    pthread_mutex_unlock(&s->mu);
    if (left) return;
    byoai_http *h = s->h;
    pthread_mutex_lock(&h->mu);
    if (s->prev) s->prev->next = s->next;
    else if (h->streams == s) h->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    pthread_mutex_unlock(&h->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    free(s);
}

/* wake the reader if it waits (s->mu held) */
static void wake_reader(http_stream *s) {
    if (!s->reader_waiting) return;
    s->reader_waiting = false;
    MHD_resume_connection(s->conn);
}

/* MHD's content reader (event thread, under the response's lock) */
static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    http_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    ssize_t ret;
    if (s->len) {
        size_t n = s->len < max ? s->len : max;
        size_t first = STREAM_BUFFER - s->head < n ? STREAM_BUFFER - s->head : n;
        memcpy(out, s->buf + s->head, first);
        memcpy(out + first, s->buf, n - first);
        s->head = (s->head + n) % STREAM_BUFFER;
        s->len -= n;
        pthread_cond_broadcast(&s->cv);
        ret = (ssize_t)n;
    } else if (s->eof) {
        s->delivered_eof = true;
        pthread_cond_broadcast(&s->cv);
        ret = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (s->failed) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        /* nothing yet: park the connection until the pump has more */
        s->reader_waiting = true;
        MHD_suspend_connection(s->conn);
        ret = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return ret;
}

/* MHD destroyed the response (any thread) */
static void stream_release(void *cls) {
    http_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    s->reader_waiting = false;
    bool attached = s->attached;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!attached && s->ops.done) s->ops.done(s->user, false); /* no pump will ever run */
    stream_unref(s);
}

void byoai_http_send_stream(byoai_http_req *r, int status, const char *content_type, const byoai_http_stream_ops *ops,
                            void *user) {
    http_stream *s = calloc(1, sizeof *s);
    char *buf = s ? malloc(STREAM_BUFFER) : NULL;
    if (!s || !buf) {
        free(s);
        if (ops->done) ops->done(user, false);
        byoai_http_send(r, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    s->h = r->http;
    s->conn = r->conn;
    s->ops = *ops;
    s->user = user;
    s->buf = buf;
    s->refs = 1; /* the response's */
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_lock(&s->h->mu);
    s->next = s->h->streams;
    if (s->next) s->next->prev = s;
    s->h->streams = s;
    pthread_mutex_unlock(&s->h->mu);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_CHUNK, stream_reader, s, stream_release);
    if (!resp) {
        stream_release(s);
        byoai_http_send(r, 500, "text/plain", "cannot start stream\n", 20);
        return;
    }
    if (r->handled) { /* answering twice: drop the stream */
        MHD_destroy_response(resp);
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    pthread_mutex_lock(&s->mu);
    s->attached = true;
    s->refs += 2; /* the pump's, and the request's (its log line reads the stream's fields) */
    pthread_mutex_unlock(&s->mu);
    r->stream = s;
    /* set_response() in http.c, inlined: the answer is this response */
    if (content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (header *hd = r->headers; hd; hd = hd->next) MHD_add_response_header(resp, hd->name, hd->value);
    r->response = resp;
    r->status = (unsigned)status;
    r->handled = true;
}

void http_stream_pump(http_stream *s) {
    char *chunk = malloc(STREAM_CHUNK);
    bool completed = false;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (__atomic_load_n(&s->h->stopping, __ATOMIC_ACQUIRE)) s->failed = true;
        /* one read ahead at most: the next read waits until MHD has taken the
         * last, so events go out as they come rather than in clumps */
        while (s->len && !s->closed && !s->failed) pthread_cond_wait(&s->cv, &s->mu);
        if (s->closed || s->failed || !chunk) break;
        size_t room = STREAM_BUFFER - s->len;
        pthread_mutex_unlock(&s->mu);
        ssize_t n = s->ops.read(s->user, chunk, room < STREAM_CHUNK ? room : STREAM_CHUNK);
        pthread_mutex_lock(&s->mu);
        if (n > 0 && !s->failed) {
            size_t tail = (s->head + s->len) % STREAM_BUFFER;
            size_t first = STREAM_BUFFER - tail < (size_t)n ? STREAM_BUFFER - tail : (size_t)n;
            memcpy(s->buf + tail, chunk, first);
            memcpy(s->buf, chunk + first, (size_t)n - first);
            s->len += (size_t)n;
        } else if (n == 0) {
            s->eof = true;
            if (s->ops.log) {
                byoai_http_log lg = {s};
                s->ops.log(s->user, &lg);
            }
        } else {
            s->failed = true;
        }
        if (!s->closed) wake_reader(s);
        if (s->eof) {
            /* done() may tell "completed" only once MHD has the end */
            while (!s->delivered_eof && !s->closed && !s->failed) pthread_cond_wait(&s->cv, &s->mu);
            completed = s->delivered_eof;
            break;
        }
    }
    if (!chunk) s->failed = true;
    if (!s->closed) wake_reader(s);
    pthread_mutex_unlock(&s->mu);
    free(chunk);
    if (s->ops.done) s->ops.done(s->user, completed);
    stream_unref(s);
}

void http_stream_unref_request(http_stream *s) { stream_unref(s); }

void http_stream_abort_all(byoai_http *h) {
    pthread_mutex_lock(&h->mu);
    for (http_stream *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        s->failed = true;
        if (!s->closed) wake_reader(s);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&h->mu);
}
