/*
 * Internal pieces of the HTTP layer (include/byoai/http.h), shared by:
 *
 *   http.c         the daemon, the request's life, answering, workers
 *   http_guard.c   connections: header deadlines, body rates, framing checks, fd limits
 *   http_stream.c  streamed responses: a worker pumps the producer into a buffer
 *   http_log.c     the access log line
 *
 * Threads: libmicrohttpd's one event thread (epoll) runs every MHD callback;
 * workers run handlers and stream producers; the sweeper enforces deadlines.
 * A request's connection is suspended while its handler runs, so the event
 * thread never touches it meanwhile; the worker resumes it when the answer
 * is ready.
 */
#ifndef BYOAI_HTTP_INTERNAL_H
#define BYOAI_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>

#include "byoai/http.h"

/* ---- connections (http_guard.c) --------------------------------------------- */
typedef enum {
    CONN_HEADERS = 0, /* waiting for a complete request header */
    CONN_BODY,        /* reading a body */
    CONN_BUSY,        /* the handler runs, or the answer is being sent */
} conn_phase;

typedef struct http_conn {
    struct http_conn *prev, *next;
    int fd;
    conn_phase phase;
    double phase_start;   /* monotonic seconds */
    uint64_t body_bytes;  /* received in CONN_BODY */
    bool cut;             /* shut down by the sweeper */
} http_conn;

typedef struct http_log_field {
    char key[24];
    char value[136];
    bool is_int;
} http_log_field;

#define HTTP_LOG_FIELDS 8

typedef struct http_stream http_stream;

typedef struct header {
    char *name, *value;
    struct header *next;
} header;

struct byoai_http_req {
    byoai_http *http;
    struct MHD_Connection *conn;
    http_conn *tc;
    struct byoai_http_req *next_job;
    char *method, *path;
    char *raw_path;       /* the path as sent (still %-encoded), for the log */
    char remote[64];
    double t_start;
    bool started;         /* the access handler has seen the headers */
    bool bad_uri;         /* the raw URI holds %00 */
    bool dispatched;      /* suspended and handed to a worker */
    bool ready;           /* the worker is done: queue the answer */
    /* body */
    char *body;
    size_t body_len, body_cap;
    int body_fd;
    char body_path[1100];
    uint64_t file_len;
    bool to_file, too_large, io_error, handled, early;
    /* response */
    header *headers;
    struct MHD_Response *response;
    char *answer;         /* the copy given to MHD (MHD frees it) */
    size_t answer_len;
    http_stream *stream;  /* set by byoai_http_send_stream */
    unsigned status;
    http_log_field log[HTTP_LOG_FIELDS];
    int n_log;
};

struct byoai_http {
    struct MHD_Daemon *mhd;
    byoai_http_config cfg;
    char bind_addr[64];
    char upload_dir[1024];
    byoai_http_handler handler;
    void *user;
    uint16_t port;
    /* workers and streams, under mu */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    byoai_http_req *queue_head, *queue_tail;
    unsigned n_queued, n_idle, n_workers;
    pthread_t *workers;   /* max_workers slots */
    http_stream *streams; /* live streams, for stop */
    bool stopping;
    /* connections, under conn_mu (the CLOSED notification takes it too, so
     * an fd in the table is open while the lock is held) */
    pthread_mutex_t conn_mu;
    pthread_cond_t sweep_cv;
    http_conn *conns;
    unsigned n_conns;
    bool sweeper_started, sweeper_stop;
    pthread_t sweeper;
};

void http_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context, enum MHD_ConnectionNotificationCode code);
/* Move a connection to another phase (event thread). */
void http_conn_phase(byoai_http *h, http_conn *c, conn_phase phase);
/* Count body bytes received (event thread). */
void http_conn_body_bytes(byoai_http *h, http_conn *c, size_t n);
int http_sweeper_start(byoai_http *h, byoai_error *err);
void http_sweeper_stop(byoai_http *h);
/* 0 when the request's framing is unambiguous; else the status to answer
 * (400 or 501) with a message. */
unsigned http_check_framing(byoai_http_req *r, char *msg, size_t cap);
/* Raise RLIMIT_NOFILE's soft limit to the hard one; the connections it allows. */
unsigned http_fd_budget(unsigned wanted);

/* ---- streams (http_stream.c) ----------------------------------------------------- */
/* Run the producer of a stream the handler started (worker thread), until it
 * ends, the client goes away, or the server stops; then done(). */
void http_stream_pump(http_stream *s);
/* End every stream (stop): producers stop at their next read. */
void http_stream_abort_all(byoai_http *h);
/* Copy the fields the stream's producer gave at its end into r's log line. */
void http_stream_log_fields(http_stream *s, byoai_http_req *r);
/* The request lets go of its stream (free_req). */
void http_stream_unref_request(http_stream *s);

/* ---- the access log (http_log.c) ---------------------------------------------------- */
void http_log_request(byoai_http *h, byoai_http_req *r, enum MHD_RequestTerminationCode toe);

#endif
