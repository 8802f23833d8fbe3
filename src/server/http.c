/*
 * HTTP server layer over libmicrohttpd, one thread per connection.
 *
 * A request's life: MHD calls on_request() first with no data (we allocate
 * the request state), then with each piece of the body (kept in memory up
 * to max_body, or written to a temporary file for upload routes), then once
 * more with no data: the handler runs and must answer. on_completed() frees
 * the state. Streamed responses pull from the producer on the connection's
 * thread, which may block: each connection has its own thread.
 */
#include "byoai/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct byoai_http {
    struct MHD_Daemon *mhd;
    byoai_http_config cfg;
    char bind_addr[64];
    char upload_dir[1024];
    byoai_http_handler handler;
    void *user;
    uint16_t port;
};

typedef struct header {
    char *name, *value;
    struct header *next;
} header;

struct byoai_http_req {
    byoai_http *http;
    struct MHD_Connection *conn;
    char *method, *path;
    char remote[64];
    /* body */
    char *body;
    size_t body_len, body_cap;
    int body_fd;
    char body_path[1100];
    uint64_t file_len;
    bool to_file, too_large, io_error, handled;
    /* response */
    header *headers;
    struct MHD_Response *response;
    unsigned status;
};

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

static void set_response(byoai_http_req *r, unsigned status, struct MHD_Response *resp, const char *ctype) {
    if (r->handled || !resp) {
        if (resp) MHD_destroy_response(resp);
        return;
    }
    if (ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    for (header *h = r->headers; h; h = h->next) MHD_add_response_header(resp, h->name, h->value);
    r->response = resp;
    r->status = status;
    r->handled = true;
}

void byoai_http_send(byoai_http_req *r, int status, const char *content_type, const void *body, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    set_response(r, (unsigned)status, resp, content_type);
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

typedef struct {
    byoai_http_stream_ops ops;
    void *user;
    bool ended;
} stream_state;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *s = cls;
    if (s->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    ssize_t n = s->ops.read(s->user, buf, max);
    if (n == 0) {
        s->ended = true;
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

static void stream_free(void *cls) {
    stream_state *s = cls;
    if (s->ops.done) s->ops.done(s->user, s->ended);
    free(s);
}

void byoai_http_send_stream(byoai_http_req *r, int status, const char *content_type, const byoai_http_stream_ops *ops,
                            void *user) {
    stream_state *s = calloc(1, sizeof *s);
    if (!s) {
        if (ops->done) ops->done(user, false);
        byoai_http_send(r, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    s->ops = *ops;
    s->user = user;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
    if (!resp) {
        stream_free(s);
        byoai_http_send(r, 500, "text/plain", "cannot start stream\n", 20);
        return;
    }
    if (r->handled) { /* answering twice: drop the stream */
        MHD_destroy_response(resp);
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    set_response(r, (unsigned)status, resp, content_type);
}

/* ---- MHD callbacks ------------------------------------------------------ */
static void free_req(byoai_http_req *r) {
    if (!r) return;
    if (r->response) MHD_destroy_response(r->response);
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
    free(r);
}

static enum MHD_Result queue_simple(struct MHD_Connection *conn, unsigned status, const char *json) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    byoai_http *h = cls;
    byoai_http_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->http = h;
        r->conn = conn;
        r->body_fd = -1;
        r->method = strdup(method);
        r->path = strdup(url);
        if (!r->method || !r->path) {
            free_req(r);
            return MHD_NO;
        }
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->remote, sizeof r->remote);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->remote, sizeof r->remote);
        }
        if (h->upload_dir[0] && h->cfg.wants_file && h->cfg.wants_file(h->user, method, url)) {
            snprintf(r->body_path, sizeof r->body_path, "%s/upload-XXXXXX", h->upload_dir);
            r->body_fd = mkstemp(r->body_path);
            if (r->body_fd < 0) {
                r->body_path[0] = '\0';
                r->io_error = true;
            }
            r->to_file = true;
        }
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t limit = r->to_file ? h->cfg.max_file_body : h->cfg.max_body;
        if (cl && strtoull(cl, NULL, 10) > limit) {
            /* refuse before reading a byte (with Expect: 100-continue the
             * client never sends the body) */
            r->too_large = true;
            char msg[200];
            snprintf(msg, sizeof msg, "{\"error\":{\"message\":\"request body is larger than the %llu bytes "
                     "allowed\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"body_too_large\"}}",
                     (unsigned long long)limit);
            return queue_simple(conn, 413, msg);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_large || r->io_error) return MHD_YES;
        if (r->to_file) {
            if (r->file_len + n > h->cfg.max_file_body) {
                r->too_large = true;
                return queue_simple(conn, 413, "{\"error\":{\"message\":\"upload is larger than the server allows\","
                                               "\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}");
            }
            const char *p = upload_data;
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
                return queue_simple(conn, 503, "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
            }
            r->body = nb;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
    /* the whole request is here */
    if (r->too_large && !r->to_file) {
        char msg[200];
        snprintf(msg, sizeof msg, "{\"error\":{\"message\":\"request body is larger than the %zu bytes allowed\","
                 "\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"body_too_large\"}}", h->cfg.max_body);
        return queue_simple(conn, 413, msg);
    }
    if (r->too_large) return MHD_YES; /* already answered */
    if (r->io_error)
        return queue_simple(conn, 500, "{\"error\":{\"message\":\"cannot store the upload\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    if (r->to_file && r->body_fd >= 0) {
        fsync(r->body_fd);
        close(r->body_fd);
        r->body_fd = -1;
    }
    if (!r->handled) h->handler(h->user, r);
    if (!r->handled)
        return queue_simple(conn, 500, "{\"error\":{\"message\":\"the handler did not answer\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    enum MHD_Result rc = MHD_queue_response(conn, r->status, r->response);
    MHD_destroy_response(r->response);
    r->response = NULL;
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    free_req(*con_cls);
    *con_cls = NULL;
}

int byoai_http_start(const byoai_http_config *cfg, byoai_http_handler handler, void *user, byoai_http **out,
                     byoai_error *err) {
    *out = NULL;
    byoai_http *h = calloc(1, sizeof *h);
    if (!h) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    h->cfg = *cfg;
    if (!h->cfg.max_body) h->cfg.max_body = 1u << 20;
    if (!h->cfg.timeout_s) h->cfg.timeout_s = 60;
    if (!h->cfg.max_connections) h->cfg.max_connections = 256;
    if (!h->cfg.max_file_body) h->cfg.max_file_body = 64ull << 30;
    snprintf(h->bind_addr, sizeof h->bind_addr, "%s", cfg->bind_addr ? cfg->bind_addr : "127.0.0.1");
    if (cfg->upload_dir) snprintf(h->upload_dir, sizeof h->upload_dir, "%s", cfg->upload_dir);
    h->handler = handler;
    h->user = user;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    socklen_t sl;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, h->bind_addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(cfg->port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, h->bind_addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(cfg->port);
        sl = sizeof *s6;
        flags |= MHD_USE_IPv6;
    } else {
        free(h);
        return byoai_error_set(err, BYOAI_EINVAL, "'%s' is not an IP address to listen on (e.g. 127.0.0.1 or ::1)",
                               cfg->bind_addr);
    }
    (void)sl;
    h->mhd = MHD_start_daemon(flags, cfg->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)h->cfg.timeout_s, MHD_OPTION_CONNECTION_LIMIT, h->cfg.max_connections,
                              MHD_OPTION_END);
    if (!h->mhd) {
        free(h);
        return byoai_error_set(err, BYOAI_EIO, "cannot listen on %s port %u (in use, or not allowed); choose another "
                               "--port", cfg->bind_addr ? cfg->bind_addr : "127.0.0.1", cfg->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : cfg->port;
    *out = h;
    return 0;
}

uint16_t byoai_http_port(const byoai_http *h) { return h->port; }

void byoai_http_stop(byoai_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->mhd);
    free(h);
}
