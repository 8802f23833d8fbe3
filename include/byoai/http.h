/*
 * byoai/http.h: the HTTP server layer every byoai server is built on (the
 * OpenAI-compatible API, the web app, `byoai registry serve`).
 *
 * Contract
 * - Connections cost no thread while they wait: one event thread
 *   (libmicrohttpd with epoll) reads requests and writes responses for all
 *   of them. Once a request's body is complete, the handler runs on a
 *   worker thread (a pool that grows on demand up to max_workers), so it
 *   may block (wait for a model, generate). Bodies over max_body get 413
 *   before the handler runs; routes may instead receive large bodies as a
 *   file (upload_dir).
 * - The handler answers exactly once: byoai_http_send*(). A handler that
 *   returns without answering produces a 500.
 * - Streams (server-sent events, downloads of unknown length) pull data
 *   from a read callback on the worker thread that ran the handler; the
 *   callback may block until data is ready, and is called again once the
 *   previous piece is on its way. done() is called exactly once, on that
 *   thread, telling whether the stream completed or the client went away,
 *   so the producer can free its resources (e.g. a generation slot).
 * - Hostile clients: a connection must deliver a complete request header
 *   within header_timeout_s of being accepted (or of its previous answer),
 *   and a body at min_body_rate bytes/s on average after that grace; one
 *   client address may hold max_per_ip connections. Requests whose framing
 *   is ambiguous (two Content-Length headers, Content-Length together with
 *   Transfer-Encoding, a Transfer-Encoding other than chunked) or whose URL
 *   holds %00 get 400 (501 for an unknown Transfer-Encoding) and the
 *   connection is closed.
 * - Upload routes (wants_file) need a declared Content-Length (411
 *   otherwise); check_upload, when set, sees the request's headers before a
 *   byte of the body is read and may refuse it, so that nothing is written.
 * - Binds 127.0.0.1 unless told otherwise.
 */
#ifndef BYOAI_HTTP_H
#define BYOAI_HTTP_H

#include <sys/types.h>

#include "byoai/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct byoai_http byoai_http;
typedef struct byoai_http_req byoai_http_req;

typedef enum {
    BYOAI_HTTP_LOG_OFF = 0,
    BYOAI_HTTP_LOG_TEXT,      /* TIME REMOTE METHOD PATH STATUS DURATION key=value... */
    BYOAI_HTTP_LOG_JSON,      /* one JSON object per line */
} byoai_http_log_format;

typedef struct byoai_http_config {
    const char *bind_addr;     /* IPv4 or IPv6 literal; NULL: "127.0.0.1" */
    uint16_t port;             /* 0: pick a free port (see byoai_http_port) */
    size_t max_body;           /* bytes kept in memory per request (0: 1 MiB) */
    unsigned timeout_s;        /* idle connection timeout (0: 60 s) */
    unsigned max_connections;  /* 0: 4096 (at most what RLIMIT_NOFILE allows) */
    unsigned max_per_ip;       /* connections per client address (0: 64; UINT32_MAX: no limit) */
    unsigned header_timeout_s; /* to deliver a complete request header (0: 10 s) */
    unsigned min_body_rate;    /* bytes/s a body must average after header_timeout_s (0: 1024) */
    unsigned max_workers;      /* handler threads at most (0: 256); more requests wait for one */
    /* When set, request bodies for which wants_file(path) returns true are
     * written to a temporary file in this directory (up to max_file_body
     * bytes) instead of memory; the handler sees byoai_http_body_file(). */
    const char *upload_dir;
    uint64_t max_file_body;    /* 0: 64 GiB */
    bool (*wants_file)(void *user, const char *method, const char *path);
    /* For upload routes: runs on the event thread once the headers are in,
     * before any body byte is read; refuses by answering (byoai_http_send).
     * Must not block (no network; reading a small file is fine).
     * declared_len is the Content-Length. */
    void (*check_upload)(void *user, byoai_http_req *r, uint64_t declared_len);
    /* One line per request when it ends (text or JSON, see docs/server.md)
     * to log_line(), or to stderr when log_line is NULL. */
    byoai_http_log_format log_format;
    void (*log_line)(void *user, const char *line);
} byoai_http_config;

typedef void (*byoai_http_handler)(void *user, byoai_http_req *req);

int byoai_http_start(const byoai_http_config *cfg, byoai_http_handler handler, void *user, byoai_http **out,
                     byoai_error *err);
/* The port actually bound. */
uint16_t byoai_http_port(const byoai_http *h);
/* Stop: running handlers finish, streams still open are ended (done()
 * with completed false), connections are closed, everything is freed. */
void byoai_http_stop(byoai_http *h);
/* Open connections right now (for tests and metrics). */
unsigned byoai_http_connections(byoai_http *h);

/* ---- the request ---------------------------------------------------------- */
const char *byoai_http_method(const byoai_http_req *r);
const char *byoai_http_path(const byoai_http_req *r);   /* decoded, without the query */
/* A query argument (decoded), or NULL. */
const char *byoai_http_query(const byoai_http_req *r, const char *key);
/* A request header (case-insensitive), or NULL. */
const char *byoai_http_header(const byoai_http_req *r, const char *name);
/* The body (NUL-terminated copy; may contain NULs, see len). */
const char *byoai_http_body(const byoai_http_req *r, size_t *len);
/* The path of the body's temporary file for upload routes, else NULL. The
 * file is removed after the response; rename it away to keep it. */
const char *byoai_http_body_file(const byoai_http_req *r);
/* The client's address as text ("127.0.0.1"). */
const char *byoai_http_remote(const byoai_http_req *r);
/* True when the client has closed its connection (checked on the socket). */
bool byoai_http_client_gone(const byoai_http_req *r);
/* The status of the answer given so far (0 before the handler answers). */
int byoai_http_status(const byoai_http_req *r);
/* Add a field to the request's log line (e.g. "model"); at most 8, later
 * ones with the same key replace earlier ones. */
void byoai_http_log_str(byoai_http_req *r, const char *key, const char *value);
void byoai_http_log_int(byoai_http_req *r, const char *key, long long value);
/* The body of the answer given with byoai_http_send (NULL for files and
 * streams, or before answering): valid until the handler returns. */
const char *byoai_http_answer_body(const byoai_http_req *r, size_t *len);

/* ---- answering -------------------------------------------------------------- */
/* Add a response header (before sending). */
void byoai_http_add_header(byoai_http_req *r, const char *name, const char *value);
void byoai_http_send(byoai_http_req *r, int status, const char *content_type, const void *body, size_t len);
/* Send a file (GET/HEAD), with Content-Length, ETag (given, e.g. the
 * sha256), If-None-Match (304) and single-range Range requests (206/416). */
void byoai_http_send_file(byoai_http_req *r, const char *path, const char *content_type, const char *etag);

/* Fields a stream adds to its request's log line (stream_ops.log). */
typedef struct byoai_http_log byoai_http_log;
void byoai_http_log_add_int(byoai_http_log *log, const char *key, long long value);

typedef struct byoai_http_stream_ops {
    /* Fill up to max bytes; block until some are ready. Return the count,
     * 0 at the end of the stream, or -1 to abort the connection. */
    ssize_t (*read)(void *user, char *buf, size_t max);
    /* Called once when the response is over: completed is false when the
     * client went away or the stream was aborted. */
    void (*done)(void *user, bool completed);
    /* Optional: called once, on the pump's thread, right after read()
     * returned 0 (the end; before done()), to add fields (token counts) to
     * the request's log line with byoai_http_log_add_int. */
    void (*log)(void *user, byoai_http_log *log);
} byoai_http_stream_ops;

void byoai_http_send_stream(byoai_http_req *r, int status, const char *content_type, const byoai_http_stream_ops *ops,
                            void *user);

#ifdef __cplusplus
}
#endif
#endif
