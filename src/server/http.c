/*
 * HTTP server layer over libmicrohttpd: one event thread (epoll) for every
 * connection, handlers on worker threads.
 *
 * A request's life: the URI callback allocates its state (and notes a %00
 * in the raw URL); MHD calls on_request() once the headers are in (framing
 * checks, upload checks, limits), then with each piece of the body (kept in
 * memory up to max_body, or written to a temporary file for upload routes),
 * then once more with no data: the connection is suspended and the request
 * goes to a worker, which runs the handler and resumes the connection; MHD
 * then calls on_request() again and the answer is queued. on_completed()
 * writes the log line and frees the state. A streamed answer keeps its
 * worker: it pumps the producer (http_stream.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/http_internal.h"

/* ---- the request accessors ----------------------------------------------- */
const char *byoai_http_method(const byoai_http_req *r) { return r->method; }
const char *byoai_http_path(const byoai_http_req *r) { return r->path; }
const char *byoai_http_remote(const byoai_http_req *r) { return r->remote; }

const char *byoai_http_query(const byoai_http_req *r, const char *key) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *byoai_http_header(const byoai_http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *byoai_http_body(const byoai_http_req *r, size_t *len) {
    if (len) *len = r->body_len;
    return r->body ? r->body : "";
}

const char *byoai_http_body_file(const byoai_http_req *r) { return r->to_file ? r->body_path : NULL; }

int byoai_http_status(const byoai_http_req *r) { return r->handled ? (int)r->status : 0; }

const char *byoai_http_answer_body(const byoai_http_req *r, size_t *len) {
    if (len) *len = r->answer ? r->answer_len : 0;
    return r->answer;
}

bool byoai_http_client_gone(const byoai_http_req *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    if (p.revents & POLLIN) {
        char c;
        ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0;
    }
    return false;
}

/* ---- answering ------------------------------------------------------------ */
void byoai_http_add_header(byoai_http_req *r, const char *name, const char *value) {
    header *h = calloc(1, sizeof *h);
    if (!h) return;
    h->name = strdup(name);
    h->value = strdup(value);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        free(h);
        return;
    }
    h->next = r->headers;
    r->headers = h;
}

/* Take resp as the answer (false when the request was answered already:
 * resp is destroyed then). */
static bool set_response(byoai_http_req *r, unsigned status, struct MHD_Response *resp, const char *ctype) {
    if (r->handled || !resp) {
        if (resp) MHD_destroy_response(resp);
        return false;
    }
    if (ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    for (header *h = r->headers; h; h = h->next) MHD_add_response_header(resp, h->name, h->value);
    r->response = resp;
    r->status = status;
    r->handled = true;
    return true;
}

void byoai_http_send(byoai_http_req *r, int status, const char *content_type, const void *body, size_t len) {
    if (r->handled) return;
    char *copy = malloc(len + 1);
    if (!copy) {
        set_response(r, 500, MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT), NULL);
        return;
    }
    if (len) memcpy(copy, body, len);
    copy[len] = '\0';
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, copy, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(copy);
        return;
    }
    if (set_response(r, (unsigned)status, resp, content_type)) {
        r->answer = copy; /* owned by resp; readable until the answer is queued */
        r->answer_len = len;
    }
}

/* parse "bytes=a-b", "bytes=a-", "bytes=-n" against size; false if unsatisfiable */
static bool parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *end) {
    if (strncmp(h, "bytes=", 6) != 0 || strchr(h, ',')) return false;
    const char *p = h + 6;
    char *e;
    if (*p == '-') {
        uint64_t n = strtoull(p + 1, &e, 10);
        if (e == p + 1 || *e || n == 0 || size == 0) return false;
        *start = n >= size ? 0 : size - n;
        *end = size - 1;
        return true;
    }
    if (*p < '0' || *p > '9') return false;
    uint64_t a = strtoull(p, &e, 10);
    if (*e != '-') return false;
    const char *q = e + 1;
    uint64_t b = size ? size - 1 : 0;
    if (*q) {
        b = strtoull(q, &e, 10);
        if (e == q || *e) return false;
        if (b >= size) b = size ? size - 1 : 0;
    }
    if (a >= size || b < a) return false;
    *start = a;
    *end = b;
    return true;
}

void byoai_http_send_file(byoai_http_req *r, const char *path, const char *content_type, const char *etag) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        const char *msg = "{\"error\":{\"message\":\"not found\",\"type\":\"not_found_error\",\"param\":null,\"code\":null}}";
        byoai_http_send(r, 404, "application/json", msg, strlen(msg));
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    char quoted[160] = "";
    if (etag) {
        snprintf(quoted, sizeof quoted, "\"%s\"", etag);
        byoai_http_add_header(r, MHD_HTTP_HEADER_ETAG, quoted);
        const char *inm = byoai_http_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH);
        if (inm && (strstr(inm, quoted) || !strcmp(inm, "*"))) {
            close(fd);
            byoai_http_send(r, 304, NULL, "", 0);
            return;
        }
    }
    byoai_http_add_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    const char *range = byoai_http_header(r, MHD_HTTP_HEADER_RANGE);
    uint64_t start = 0, end = size ? size - 1 : 0;
    unsigned status = 200;
    if (range) {
        if (!parse_range(range, size, &start, &end)) {
            close(fd);
            char cr[64];
            snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
            byoai_http_add_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
            byoai_http_send(r, 416, "text/plain", "range not satisfiable\n", 21);
            return;
        }
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, end, size);
        byoai_http_add_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        status = 206;
    }
    uint64_t len = size ? end - start + 1 : 0;
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, start);
    if (!resp) {
        close(fd);
        byoai_http_send(r, 500, "text/plain", "cannot send file\n", 17);
        return;
    }
    set_response(r, status, resp, content_type ? content_type : "application/octet-stream");
}

/* ---- the request's state -------------------------------------------------- */
static void free_req(byoai_http_req *r) {
    if (!r) return;
    if (r->response) MHD_destroy_response(r->response);
    if (r->stream) http_stream_unref_request(r->stream);
    for (header *h = r->headers; h;) {
        header *n = h->next;
        free(h->name);
        free(h->value);
        free(h);
        h = n;
    }
    if (r->body_fd >= 0) close(r->body_fd);
    if (r->to_file && r->body_path[0]) unlink(r->body_path);
    free(r->body);
    free(r->method);
    free(r->path);
    free(r->raw_path);
    free(r);
}

/* An answer from the layer itself; the connection closes after it. */
static enum MHD_Result queue_simple(byoai_http_req *r, unsigned status, const char *message, const char *code) {
    char json[700];
    char esc[400];
    size_t k = 0;
    for (const char *p = message; *p && k < sizeof esc - 2; p++) {
        if (*p == '"' || *p == '\\') esc[k++] = '\\';
        esc[k++] = (unsigned char)*p < 0x20 ? ' ' : *p;
    }
    esc[k] = '\0';
    snprintf(json, sizeof json, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":%s%s%s}}", esc,
             status >= 500 ? "server_error" : "invalid_request_error", code ? "\"" : "", code ? code : "null",
             code ? "\"" : "");
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->handled = true;
    r->early = true;
    return rc;
}

/* Queue the answer a handler (or check_upload) gave. */
static enum MHD_Result queue_answer(byoai_http_req *r, bool close_after) {
    if (!r->handled || !r->response) {
        r->handled = false;
        return queue_simple(r, 500, "the handler did not answer", NULL);
    }
    if (close_after) MHD_add_response_header(r->response, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(r->conn, r->status, r->response);
    MHD_destroy_response(r->response);
    r->response = NULL;
    r->answer = NULL; /* MHD owns it now and may free it any time */
    return rc;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the first thing MHD tells of a request, with
 * the URI as sent (before %-decoding). Its return value is the request's
 * state, which on_completed() frees. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    byoai_http_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->http = cls;
    r->conn = conn;
    r->body_fd = -1;
    r->t_start = byoai_time_now();
    /* %00 decodes to a NUL, which would cut the path short */
    for (const char *p = uri; (p = strchr(p, '%')); p++)
        if (p[1] == '0' && p[2] == '0') r->bad_uri = true;
    size_t n = strcspn(uri, "?");
    r->raw_path = byoai_strndup(uri, n < 1024 ? n : 1024);
    return r;
}

static void client_address(struct MHD_Connection *conn, char *out, size_t cap) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
}

/* The headers are in: check them before any body byte is read. */
static enum MHD_Result on_headers(byoai_http *h, byoai_http_req *r, struct MHD_Connection *conn, const char *url,
                                  const char *method) {
    r->started = true;
    r->conn = conn;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->tc = ci ? ci->socket_context : NULL;
    r->method = strdup(method);
    r->path = strdup(url);
    if (!r->method || !r->path) return MHD_NO;
    client_address(conn, r->remote, sizeof r->remote);
    http_conn_phase(h, r->tc, CONN_BUSY);
    char msg[300];
    unsigned st = http_check_framing(r, msg, sizeof msg);
    if (st) return queue_simple(r, st, msg, st == 501 ? "unsupported_transfer_encoding" : "bad_request");
    if (__atomic_load_n(&h->stopping, __ATOMIC_ACQUIRE))
        return queue_simple(r, 503, "the server is shutting down", "unavailable");
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    uint64_t declared = cl ? strtoull(cl, NULL, 10) : 0;
    bool upload = h->upload_dir[0] && h->cfg.wants_file && h->cfg.wants_file(h->user, method, url);
    uint64_t limit = upload ? h->cfg.max_file_body : h->cfg.max_body;
    if (cl && declared > limit) {
        /* refuse before reading a byte (with Expect: 100-continue the
         * client never sends the body) */
        r->too_large = true;
        snprintf(msg, sizeof msg, "request body is larger than the %llu bytes allowed", (unsigned long long)limit);
        return queue_simple(r, 413, msg, "body_too_large");
    }
    if (upload) {
        if (!cl)
            return queue_simple(r, 411, "an upload needs a Content-Length header (chunked uploads are not accepted)",
                                "length_required");
        if (h->cfg.check_upload) {
            h->cfg.check_upload(h->user, r, declared);
            if (r->handled) {
                r->early = true;
                return queue_answer(r, true);
            }
        }
        snprintf(r->body_path, sizeof r->body_path, "%s/upload-XXXXXX", h->upload_dir);
        r->body_fd = mkstemp(r->body_path);
        if (r->body_fd < 0) {
            r->body_path[0] = '\0';
            r->io_error = true;
        } else {
            fcntl(r->body_fd, F_SETFD, FD_CLOEXEC);
        }
        r->to_file = true;
    }
    if (declared > 0 || te) http_conn_phase(h, r->tc, CONN_BODY);
    return MHD_YES;
}

static enum MHD_Result on_body(byoai_http *h, byoai_http_req *r, const char *data, size_t n) {
    http_conn_body_bytes(h, r->tc, n);
    if (r->too_large || r->io_error) return MHD_YES;
    if (r->to_file) {
        if (r->file_len + n > h->cfg.max_file_body) {
            r->too_large = true;
            return queue_simple(r, 413, "upload is larger than the server allows", "body_too_large");
        }
        const char *p = data;
        size_t left = n;
        while (left) {
            ssize_t w = write(r->body_fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                r->io_error = true;
                break;
            }
            p += w;
            left -= (size_t)w;
        }
        r->file_len += n;
        return MHD_YES;
    }
    if (r->body_len + n > h->cfg.max_body) {
        /* drop the rest of the body and answer 413 at its end, so that
         * the client reads the answer instead of a reset connection */
        r->too_large = true;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return MHD_YES;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap * 2 : 4096;
        while (cap < r->body_len + n + 1) cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb) {
            r->too_large = true;
            return queue_simple(r, 503, "out of memory", NULL);
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return MHD_YES;
}

static bool submit(byoai_http *h, byoai_http_req *r);

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    byoai_http *h = cls;
    byoai_http_req *r = *con_cls;
    if (!r) return MHD_NO; /* out of memory in on_uri */
    if (!r->started) return on_headers(h, r, conn, url, method);
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return on_body(h, r, upload_data, n);
    }
    if (r->dispatched) { /* resumed: the worker has the answer */
        if (!r->ready) return MHD_YES;
        return queue_answer(r, false);
    }
    /* the whole request is here */
    if (r->early) return MHD_YES; /* answered already */
    if (r->too_large) {
        char msg[200];
        snprintf(msg, sizeof msg, "request body is larger than the %zu bytes allowed", h->cfg.max_body);
        return queue_simple(r, 413, msg, "body_too_large");
    }
    if (r->io_error) return queue_simple(r, 500, "cannot store the upload", NULL);
    if (r->to_file && r->body_fd >= 0) {
        fsync(r->body_fd);
        close(r->body_fd);
        r->body_fd = -1;
    }
    http_conn_phase(h, r->tc, CONN_BUSY);
    if (!submit(h, r)) return queue_simple(r, 503, "the server is shutting down", "unavailable");
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    byoai_http *h = cls;
    byoai_http_req *r = *con_cls;
    *con_cls = NULL;
    if (!r) return;
    if (r->stream) http_stream_log_fields(r->stream, r);
    if (r->started) http_log_request(h, r, toe);
    /* a kept-alive connection waits for its next request's headers */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) http_conn_phase(h, ci->socket_context, CONN_HEADERS);
    free_req(r);
}

/* ---- workers ---------------------------------------------------------------------- */
static void run(byoai_http *h, byoai_http_req *r) {
    h->handler(h->user, r);
    if (!r->handled) {
        const char *m = "{\"error\":{\"message\":\"the handler did not answer\",\"type\":\"server_error\","
                        "\"param\":null,\"code\":null}}";
        byoai_http_send(r, 500, "application/json", m, strlen(m));
    }
    http_stream *s = r->stream;
    r->answer = NULL;
    pthread_mutex_lock(&h->mu);
    r->ready = true;
    MHD_resume_connection(r->conn);
    pthread_mutex_unlock(&h->mu);
    /* r belongs to the event thread again */
    if (s) http_stream_pump(s);
}

static void *worker_main(void *arg) {
    byoai_http *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->queue_head && !h->stopping) {
            h->n_idle++;
            pthread_cond_wait(&h->work_cv, &h->mu);
            h->n_idle--;
        }
        byoai_http_req *r = h->queue_head;
        if (!r) break; /* stopping, nothing left */
        h->queue_head = r->next_job;
        if (!h->queue_head) h->queue_tail = NULL;
        h->n_queued--;
        pthread_mutex_unlock(&h->mu);
        run(h, r);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* Suspend the connection and queue the request for a worker (event thread). */
static bool submit(byoai_http *h, byoai_http_req *r) {
    pthread_mutex_lock(&h->mu);
    if (h->stopping) {
        pthread_mutex_unlock(&h->mu);
        return false;
    }
    MHD_suspend_connection(r->conn);
    r->dispatched = true;
    r->next_job = NULL;
    if (h->queue_tail) h->queue_tail->next_job = r;
    else h->queue_head = r;
    h->queue_tail = r;
    h->n_queued++;
    if (h->n_queued > h->n_idle && h->n_workers < h->cfg.max_workers &&
        pthread_create(&h->workers[h->n_workers], NULL, worker_main, h) == 0)
        h->n_workers++;
    pthread_cond_signal(&h->work_cv);
    pthread_mutex_unlock(&h->mu);
    return true;
}

/* ---- the daemon -------------------------------------------------------------------- */
int byoai_http_start(const byoai_http_config *cfg, byoai_http_handler handler, void *user, byoai_http **out,
                     byoai_error *err) {
    *out = NULL;
    byoai_http *h = calloc(1, sizeof *h);
    if (!h) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    h->cfg = *cfg;
    if (!h->cfg.max_body) h->cfg.max_body = 1u << 20;
    if (!h->cfg.timeout_s) h->cfg.timeout_s = 60;
    if (!h->cfg.max_connections) h->cfg.max_connections = 4096;
    if (!h->cfg.max_per_ip) h->cfg.max_per_ip = 64;
    if (!h->cfg.header_timeout_s) h->cfg.header_timeout_s = 10;
    if (!h->cfg.min_body_rate) h->cfg.min_body_rate = 1024;
    if (!h->cfg.max_workers) h->cfg.max_workers = 256;
    if (!h->cfg.max_file_body) h->cfg.max_file_body = 64ull << 30;
    h->cfg.max_connections = http_fd_budget(h->cfg.max_connections);
    snprintf(h->bind_addr, sizeof h->bind_addr, "%s", cfg->bind_addr ? cfg->bind_addr : "127.0.0.1");
    if (cfg->upload_dir) snprintf(h->upload_dir, sizeof h->upload_dir, "%s", cfg->upload_dir);
    h->handler = handler;
    h->user = user;
    h->workers = calloc(h->cfg.max_workers, sizeof *h->workers);
    if (!h->workers) {
        free(h);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->work_cv, NULL);
    pthread_mutex_init(&h->conn_mu, NULL);
    pthread_cond_init(&h->sweep_cv, NULL);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    int rc = 0;
    if (inet_pton(AF_INET, h->bind_addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(cfg->port);
    } else if (inet_pton(AF_INET6, h->bind_addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        rc = byoai_error_set(err, BYOAI_EINVAL, "'%s' is not an IP address to listen on (e.g. 127.0.0.1 or ::1)",
                             cfg->bind_addr);
        goto fail;
    }
    if ((rc = http_sweeper_start(h, err))) goto fail;
    /* two workers from the start: the first requests need not wait for a thread */
    pthread_mutex_lock(&h->mu);
    while (h->n_workers < 2 && h->n_workers < h->cfg.max_workers &&
           pthread_create(&h->workers[h->n_workers], NULL, worker_main, h) == 0)
        h->n_workers++;
    pthread_mutex_unlock(&h->mu);
    unsigned per_ip = h->cfg.max_per_ip == UINT32_MAX ? 0 : h->cfg.max_per_ip;
    h->mhd = MHD_start_daemon(flags, cfg->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                              MHD_OPTION_NOTIFY_CONNECTION, http_conn_notify, h, MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)h->cfg.timeout_s, MHD_OPTION_CONNECTION_LIMIT, h->cfg.max_connections,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_END);
    if (!h->mhd) {
        rc = byoai_error_set(err, BYOAI_EIO, "cannot listen on %s port %u (in use, or not allowed); choose another "
                             "--port", h->bind_addr, cfg->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : cfg->port;
    *out = h;
    return 0;
fail:
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    pthread_cond_broadcast(&h->work_cv);
    pthread_mutex_unlock(&h->mu);
    for (unsigned i = 0; i < h->n_workers; i++) pthread_join(h->workers[i], NULL);
    http_sweeper_stop(h);
    pthread_cond_destroy(&h->sweep_cv);
    pthread_mutex_destroy(&h->conn_mu);
    pthread_cond_destroy(&h->work_cv);
    pthread_mutex_destroy(&h->mu);
    free(h->workers);
    free(h);
    return rc;
}

uint16_t byoai_http_port(const byoai_http *h) { return h->port; }

unsigned byoai_http_connections(byoai_http *h) {
    pthread_mutex_lock(&h->conn_mu);
    unsigned n = h->n_conns;
    pthread_mutex_unlock(&h->conn_mu);
    return n;
}

void byoai_http_stop(byoai_http *h) {
    if (!h) return;
    /* no new work; running handlers finish; streams end at their next read */
    pthread_mutex_lock(&h->mu);
    __atomic_store_n(&h->stopping, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&h->work_cv);
    pthread_mutex_unlock(&h->mu);
    http_stream_abort_all(h);
    for (unsigned i = 0; i < h->n_workers; i++) pthread_join(h->workers[i], NULL);
    /* every connection is resumed now (MHD may not stop with suspended ones) */
    http_sweeper_stop(h);
    MHD_stop_daemon(h->mhd);
    pthread_cond_destroy(&h->sweep_cv);
    pthread_mutex_destroy(&h->conn_mu);
    pthread_cond_destroy(&h->work_cv);
    pthread_mutex_destroy(&h->mu);
    free(h->workers);
    free(h);
}
