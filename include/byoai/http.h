/*
 * byoai/http.h: the HTTP server layer every byoai server is built on (the
 * OpenAI-compatible API, the web app, `byoai registry serve`).
 *
 * Contract
 * - One thread per connection (libmicrohttpd); the handler runs on that
 *   thread once the whole request body has arrived, so it may block (wait
 *   for a model, generate). Bodies over max_body get 413 before the handler
 *   runs; routes may instead receive large bodies as a file (upload_dir).
 * - The handler answers exactly once: byoai_http_send*(). A handler that
 *   returns without answering produces a 500.
 * - Streams (server-sent events, downloads of unknown length) pull data
 *   from a read callback on the connection's thread; the callback may
 *   block until data is ready. done() is called exactly once, telling
 *   whether the stream completed or the client went away, so the producer
 *   can free its resources (e.g. a generation slot).
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

typedef struct byoai_http_config {
    const char *bind_addr;     /* IPv4 or IPv6 literal; NULL: "127.0.0.1" */
    uint16_t port;             /* 0: pick a free port (see byoai_http_port) */
    size_t max_body;           /* bytes kept in memory per request (0: 1 MiB) */
    unsigned timeout_s;        /* idle connection timeout (0: 60 s) */
    unsigned max_connections;  /* 0: 256 */
    /* When set, request bodies for which wants_file(path) returns true are
     * written to a temporary file in this directory (up to max_file_body
     * bytes) instead of memory; the handler sees byoai_http_body_file(). */
    const char *upload_dir;
    uint64_t max_file_body;    /* 0: 64 GiB */
    bool (*wants_file)(void *user, const char *method, const char *path);
} byoai_http_config;

typedef void (*byoai_http_handler)(void *user, byoai_http_req *req);

int byoai_http_start(const byoai_http_config *cfg, byoai_http_handler handler, void *user, byoai_http **out,
                     byoai_error *err);
/* The port actually bound. */
uint16_t byoai_http_port(const byoai_http *h);
/* Stop accepting, wait for open connections to finish, free. */
void byoai_http_stop(byoai_http *h);

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

/* ---- answering -------------------------------------------------------------- */
/* Add a response header (before sending). */
void byoai_http_add_header(byoai_http_req *r, const char *name, const char *value);
void byoai_http_send(byoai_http_req *r, int status, const char *content_type, const void *body, size_t len);
/* Send a file (GET/HEAD), with Content-Length, ETag (given, e.g. the
 * sha256), If-None-Match (304) and single-range Range requests (206/416). */
void byoai_http_send_file(byoai_http_req *r, const char *path, const char *content_type, const char *etag);

typedef struct byoai_http_stream_ops {
    /* Fill up to max bytes; block until some are ready. Return the count,
     * 0 at the end of the stream, or -1 to abort the connection. */
    ssize_t (*read)(void *user, char *buf, size_t max);
    /* Called once when the response is over: completed is false when the
     * client went away or the stream was aborted. */
    void (*done)(void *user, bool completed);
} byoai_http_stream_ops;

void byoai_http_send_stream(byoai_http_req *r, int status, const char *content_type, const byoai_http_stream_ops *ops,
                            void *user);

#ifdef __cplusplus
}
#endif
#endif
