/* The HTTP layer against a real client (libcurl) on 127.0.0.1. */
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "byoai/http.h"

typedef struct {
    char dir[512];
    int stream_done_completed; /* -1 until done() runs */
    int chunks_left;
    int status_before, status_after;
    pthread_mutex_t mu;
} srv_state;

static bool wants_file(void *user, const char *method, const char *path) {
    (void)user;
    return !strcmp(method, "PUT") && !strncmp(path, "/upload", 7);
}

/* refuse uploads to /upload/deny before their body */
static int uploads_handled;
static void check_upload(void *user, byoai_http_req *r, uint64_t declared) {
    (void)user;
    if (!strcmp(byoai_http_path(r), "/upload/deny")) {
        char msg[80];
        snprintf(msg, sizeof msg, "refused %llu", (unsigned long long)declared);
        byoai_http_send(r, 403, "text/plain", msg, strlen(msg));
    }
}

static char last_log[2048];
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static void log_line(void *user, const char *line) {
    (void)user;
    pthread_mutex_lock(&log_mu);
    snprintf(last_log, sizeof last_log, "%s", line);
    pthread_mutex_unlock(&log_mu);
}

/* wait up to 2 s for the last log line to contain want */
static bool log_has(const char *want, char *line, size_t cap) {
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&log_mu);
        snprintf(line, cap, "%s", last_log);
        pthread_mutex_unlock(&log_mu);
        if (strstr(line, want)) return true;
        usleep(10000);
    }
    return false;
}

static ssize_t sse_read(void *user, char *buf, size_t max) {
    srv_state *s = user;
    if (s->chunks_left == 0) return 0;
    usleep(2000);
    int n = snprintf(buf, max, "data: chunk %d\n\n", s->chunks_left);
    s->chunks_left--;
    return n;
}

static ssize_t slow_read(void *user, char *buf, size_t max) {
    (void)user;
    usleep(20000);
    return snprintf(buf, max, "data: tick\n\n");
}

static void stream_done(void *user, bool completed) {
    srv_state *s = user;
    pthread_mutex_lock(&s->mu);
    s->stream_done_completed = completed;
    pthread_mutex_unlock(&s->mu);
}

static void handler(void *user, byoai_http_req *r) {
    srv_state *s = user;
    const char *p = byoai_http_path(r);
    char out[4096];
    if (!strcmp(p, "/echo")) {
        size_t len;
        const char *b = byoai_http_body(r, &len);
        const char *q = byoai_http_query(r, "q");
        const char *hd = byoai_http_header(r, "x-test");
        snprintf(out, sizeof out, "%s %s q=%s h=%s len=%zu body=%s remote=%s", byoai_http_method(r), p, q ? q : "-",
                 hd ? hd : "-", len, b, byoai_http_remote(r));
        byoai_http_add_header(r, "X-Reply", "yes");
        byoai_http_log_str(r, "note", "a b\n\"c\"");
        byoai_http_log_int(r, "tokens", 42);
        byoai_http_send(r, 200, "text/plain", out, strlen(out));
        size_t alen;
        const char *ans = byoai_http_answer_body(r, &alen);
        assert_true(ans && alen == strlen(out) && !memcmp(ans, out, alen));
    } else if (!strcmp(p, "/file")) {
        snprintf(out, sizeof out, "%s/data.bin", s->dir);
        byoai_http_send_file(r, out, "application/octet-stream", "abc123");
    } else if (!strcmp(p, "/sse")) {
        s->chunks_left = 5;
        byoai_http_stream_ops ops = {sse_read, stream_done, NULL};
        byoai_http_send_stream(r, 200, "text/event-stream", &ops, s);
    } else if (!strcmp(p, "/forever")) {
        byoai_http_stream_ops ops = {slow_read, stream_done, NULL};
        byoai_http_send_stream(r, 200, "text/event-stream", &ops, s);
    } else if (!strcmp(p, "/status")) {
        s->status_before = byoai_http_status(r);
        byoai_http_send(r, 418, "text/plain", "teapot", 6);
        s->status_after = byoai_http_status(r);
    } else if (!strncmp(p, "/upload", 7)) {
        __atomic_add_fetch(&uploads_handled, 1, __ATOMIC_RELAXED);
        const char *f = byoai_http_body_file(r);
        char *data = NULL;
        size_t len = 0;
        byoai_error err;
        if (f) byoai_fs_read_all(f, 0, &data, &len, &err);
        snprintf(out, sizeof out, "file=%d len=%zu first=%c", f != NULL, len, len ? data[0] : '-');
        free(data);
        byoai_http_send(r, 201, "text/plain", out, strlen(out));
    }
    /* /silent: no answer at all */
}

typedef struct {
    char *data;
    size_t len;
} buf;

static size_t on_data(char *p, size_t sz, size_t n, void *u) {
    buf *b = u;
    b->data = realloc(b->data, b->len + sz * n + 1);
    memcpy(b->data + b->len, p, sz * n);
    b->len += sz * n;
    b->data[b->len] = '\0';
    return sz * n;
}

static long request(uint16_t port, const char *method, const char *path, const char *body, size_t body_len,
                    const char *hdr, buf *out, buf *headers) {
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    struct curl_slist *h = NULL;
    if (hdr) h = curl_slist_append(h, hdr);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (headers) {
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, headers);
    }
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static srv_state S;
static byoai_http *H;

static int setup(void **state) {
    (void)state;
    memset(&S, 0, sizeof S);
    pthread_mutex_init(&S.mu, NULL);
    snprintf(S.dir, sizeof S.dir, "%s", tu_tmpdir());
    char path[600];
    snprintf(path, sizeof path, "%s/data.bin", S.dir);
    char data[100];
    for (int i = 0; i < 100; i++) data[i] = (char)('a' + i % 26);
    byoai_error err;
    byoai_fs_write_atomic(path, data, sizeof data, &err);
    byoai_http_config cfg = {.port = 0, .max_body = 1000, .upload_dir = S.dir, .wants_file = wants_file,
                             .max_file_body = 10000000, .check_upload = check_upload, .header_timeout_s = 1,
                             .min_body_rate = 2000, .log_format = BYOAI_HTTP_LOG_JSON, .log_line = log_line};
    if (byoai_http_start(&cfg, handler, &S, &H, &err)) fail_msg("%s", err.msg);
    assert_true(byoai_http_port(H) > 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    byoai_http_stop(H);
    tu_rmtree(S.dir);
    curl_global_cleanup();
    return 0;
}

static void test_echo(void **state) {
    (void)state;
    buf b = {0}, h = {0};
    long st = request(byoai_http_port(H), "POST", "/echo?q=a%20b", "hello", 5, "X-Test: 42", &b, &h);
    assert_int_equal(st, 200);
    assert_string_equal(b.data, "POST /echo q=a b h=42 len=5 body=hello remote=127.0.0.1");
    assert_non_null(strstr(h.data, "X-Reply: yes"));
    free(b.data);
    free(h.data);
}

static void test_body_limit(void **state) {
    (void)state;
    char big[2000];
    memset(big, 'x', sizeof big);
    buf b = {0};
    assert_int_equal(request(byoai_http_port(H), "POST", "/echo", big, sizeof big, NULL, &b, NULL), 413);
    assert_non_null(strstr(b.data, "larger than the 1000 bytes allowed"));
    free(b.data);
    /* without a Content-Length (chunked), the body is read and dropped */
    buf bc = {0};
    assert_int_equal(request(byoai_http_port(H), "POST", "/echo", big, sizeof big, "Transfer-Encoding: chunked", &bc, NULL), 413);
    assert_non_null(strstr(bc.data, "larger than the 1000 bytes allowed"));
    free(bc.data);
    /* the server keeps serving */
    buf b2 = {0};
    assert_int_equal(request(byoai_http_port(H), "GET", "/echo", NULL, 0, NULL, &b2, NULL), 200);
    free(b2.data);
}

static void test_no_answer_is_500(void **state) {
    (void)state;
    buf b = {0};
    assert_int_equal(request(byoai_http_port(H), "GET", "/silent", NULL, 0, NULL, &b, NULL), 500);
    free(b.data);
}

static void test_status(void **state) {
    (void)state;
    buf b = {0};
    assert_int_equal(request(byoai_http_port(H), "GET", "/status", NULL, 0, NULL, &b, NULL), 418);
    assert_int_equal(S.status_before, 0);
    assert_int_equal(S.status_after, 418);
    free(b.data);
}

static void test_file_ranges(void **state) {
    (void)state;
    uint16_t port = byoai_http_port(H);
    buf b = {0}, h = {0};
    assert_int_equal(request(port, "GET", "/file", NULL, 0, NULL, &b, &h), 200);
    assert_int_equal(b.len, 100);
    assert_non_null(strstr(h.data, "ETag: \"abc123\""));
    free(b.data), free(h.data), b = (buf){0}, h = (buf){0};
    assert_int_equal(request(port, "GET", "/file", NULL, 0, "Range: bytes=10-19", &b, &h), 206);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "klmnopqrst", 10);
    assert_non_null(strstr(h.data, "Content-Range: bytes 10-19/100"));
    free(b.data), free(h.data), b = (buf){0};
    assert_int_equal(request(port, "GET", "/file", NULL, 0, "Range: bytes=95-", &b, NULL), 206);
    assert_int_equal(b.len, 5);
    free(b.data), b = (buf){0};
    assert_int_equal(request(port, "GET", "/file", NULL, 0, "Range: bytes=-3", &b, NULL), 206);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "tuv", 3);
    free(b.data), b = (buf){0};
    assert_int_equal(request(port, "GET", "/file", NULL, 0, "Range: bytes=100-", &b, NULL), 416);
    free(b.data), b = (buf){0};
    assert_int_equal(request(port, "GET", "/file", NULL, 0, "Range: bytes=zz", &b, NULL), 416);
    free(b.data), b = (buf){0};
    assert_int_equal(request(port, "GET", "/file", NULL, 0, "If-None-Match: \"abc123\"", &b, NULL), 304);
    free(b.data), b = (buf){0};
    assert_int_equal(request(port, "HEAD", "/file", NULL, 0, NULL, &b, NULL), 200);
    free(b.data);
}

static void test_sse(void **state) {
    (void)state;
    S.stream_done_completed = -1;
    buf b = {0};
    assert_int_equal(request(byoai_http_port(H), "GET", "/sse", NULL, 0, NULL, &b, NULL), 200);
    assert_string_equal(b.data, "data: chunk 5\n\ndata: chunk 4\n\ndata: chunk 3\n\ndata: chunk 2\n\ndata: chunk 1\n\n");
    for (int i = 0; i < 100 && S.stream_done_completed == -1; i++) usleep(10000);
    assert_int_equal(S.stream_done_completed, 1);
    free(b.data);
}

static size_t abort_after_two(char *p, size_t sz, size_t n, void *u) {
    (void)p;
    int *count = u;
    return ++*count >= 2 ? 0 : sz * n; /* returning short aborts the transfer */
}

/* A client that goes away mid-stream: done() says so. */
static void test_stream_client_gone(void **state) {
    (void)state;
    S.stream_done_completed = -1;
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/forever", byoai_http_port(H));
    int count = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, abort_after_two);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &count);
    assert_int_equal(curl_easy_perform(c), CURLE_WRITE_ERROR);
    curl_easy_cleanup(c);
    for (int i = 0; i < 300 && S.stream_done_completed == -1; i++) usleep(10000);
    assert_int_equal(S.stream_done_completed, 0);
}

static void test_upload_to_file(void **state) {
    (void)state;
    char data[5000];
    memset(data, 'Z', sizeof data);
    buf b = {0};
    assert_int_equal(request(byoai_http_port(H), "PUT", "/upload", data, sizeof data, NULL, &b, NULL), 201);
    assert_string_equal(b.data, "file=1 len=5000 first=Z");
    free(b.data);
}


/* ---- raw sockets: what a hostile client does ---------------------------------------- */
static int raw_connect(uint16_t port, const char *src) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (src) {
        inet_pton(AF_INET, src, &a.sin_addr);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    }
    a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void raw_send(int fd, const char *text, size_t len) {
    while (len) {
        ssize_t w = send(fd, text, len, MSG_NOSIGNAL);
        if (w <= 0) return; /* the server may close first: the answer tells */
        text += w;
        len -= (size_t)w;
    }
}

/* read until EOF or timeout; the status of the first response line (0: none) */
static int raw_status(int fd, double timeout_s, char *out, size_t cap) {
    size_t n = 0;
    double end = byoai_time_now() + timeout_s;
    out[0] = '\0';
    while (n + 1 < cap) {
        int ms = (int)((end - byoai_time_now()) * 1000);
        if (ms <= 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) <= 0) break;
        ssize_t r = recv(fd, out + n, cap - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        out[n] = '\0';
        const char *eoh = strstr(out, "\r\n\r\n"), *cl = strcasestr(out, "Content-Length: ");
        if (eoh && cl && cl < eoh && (size_t)(out + n - (eoh + 4)) >= strtoul(cl + 16, NULL, 10)) break;
        if (eoh && (!cl || cl > eoh)) break; /* a stream: the head is enough */
    }
    int status = 0;
    if (sscanf(out, "HTTP/1.%*d %d", &status) != 1) status = 0;
    return status;
}

/* seconds until the server closes fd (sending a line every step_s), or -1 */
static double seconds_until_closed(int fd, double step_s, double timeout_s, const char *line) {
    double t0 = byoai_time_now();
    while (byoai_time_now() - t0 < timeout_s) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(step_s * 1000)) > 0) {
            char b[512];
            ssize_t r = recv(fd, b, sizeof b, 0);
            if (r <= 0) return byoai_time_now() - t0;
        }
        if (line && send(fd, line, strlen(line), MSG_NOSIGNAL) < 0) return byoai_time_now() - t0;
    }
    return -1;
}

static int raw_request(const char *req, char *out, size_t cap) {
    int fd = raw_connect(byoai_http_port(H), NULL);
    raw_send(fd, req, strlen(req));
    int st = raw_status(fd, 5, out, cap);
    close(fd);
    return st;
}

/* Ambiguous framing (request smuggling) and %00: refused before the handler. */
static void test_framing(void **state) {
    (void)state;
    char out[4096];
    assert_int_equal(raw_request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                                 out, sizeof out), 400);
    assert_non_null(strstr(out, "2 Content-Length headers"));
    assert_non_null(strstr(out, "Connection: close"));
    assert_int_equal(raw_request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
                                 out, sizeof out), 400);
    assert_int_equal(raw_request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                                 "\r\n5\r\nhello\r\n0\r\n\r\n", out, sizeof out), 400);
    assert_non_null(strstr(out, "both Content-Length and Transfer-Encoding"));
    assert_int_equal(raw_request("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                                 "chunked\r\n\r\n0\r\n\r\n", out, sizeof out), 400);
    assert_int_equal(raw_request("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxx", out, sizeof out),
                     501);
    assert_int_equal(raw_request("GET /ec%00ho HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof out), 400);
    assert_non_null(strstr(out, "%00"));
    assert_int_equal(raw_request("GET /echo?q=a%00b HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof out), 400);
    char line[2048];
    assert_true(log_has("\"path\":\"/echo\",\"status\":400", line, sizeof line));
    /* plain chunked and plain Content-Length still work */
    assert_int_equal(raw_request("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                 "5\r\nhello\r\n0\r\n\r\n", out, sizeof out), 200);
    assert_non_null(strstr(out, "len=5 body=hello"));
    assert_int_equal(raw_request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                                 out, sizeof out), 200);
}

/* The log line: JSON, fields from the handler, nothing forged. */
static void test_log_line(void **state) {
    (void)state;
    buf b = {0};
    assert_int_equal(request(byoai_http_port(H), "GET", "/echo?secret=1", NULL, 0, NULL, &b, NULL), 200);
    free(b.data);
    char line[2048];
    assert_true(log_has("\"method\":\"GET\",\"path\":\"/echo\"", line, sizeof line));
    if (!strstr(line, "\"remote\":\"127.0.0.1\",\"method\":\"GET\",\"path\":\"/echo\",\"status\":200,")) fail_msg("%s", line);
    assert_non_null(strstr(line, "\"note\":\"a%20b%0A%22c%22\",\"tokens\":42}"));
    assert_null(strstr(line, "secret"));
}

/* A client that trickles its headers is cut at the header deadline (1 s
 * here), although it sends a line every 0.2 s. */
static void test_header_deadline(void **state) {
    (void)state;
    int fd = raw_connect(byoai_http_port(H), NULL);
    raw_send(fd, "GET /echo HTTP/1.1\r\n", 20);
    double t = seconds_until_closed(fd, 0.2, 5, "X-Slow: 1\r\n");
    close(fd);
    assert_true(t >= 0.9 && t < 2.0);
    /* one that sends nothing at all, too */
    fd = raw_connect(byoai_http_port(H), NULL);
    t = seconds_until_closed(fd, 0.2, 5, NULL);
    close(fd);
    assert_true(t >= 0.9 && t < 2.0);
    /* a kept-alive connection gets the same deadline for its next request */
    fd = raw_connect(byoai_http_port(H), NULL);
    char out[4096];
    raw_send(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 31);
    assert_int_equal(raw_status(fd, 5, out, sizeof out), 200);
    t = seconds_until_closed(fd, 0.2, 5, NULL);
    close(fd);
    if (!(t >= 0.5 && t < 2.0)) fail_msg("keep-alive closed after %f", t);
}

/* A body slower than min_body_rate (2000 B/s after a 1 s grace) is cut. */
static void test_body_rate(void **state) {
    (void)state;
    int fd = raw_connect(byoai_http_port(H), NULL);
    const char *hdr = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n";
    raw_send(fd, hdr, strlen(hdr));
    double t = seconds_until_closed(fd, 0.2, 6, "0123456789");
    close(fd);
    assert_true(t >= 0.9 && t < 2.5);
}

/* check_upload refuses before a byte of the body is read: nothing written,
 * the handler never runs, the client has its answer early. */
static int count_uploads(void) {
    DIR *d = opendir(S.dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += !strncmp(e->d_name, "upload-", 7);
    if (d) closedir(d);
    return n;
}

static void test_check_upload(void **state) {
    (void)state;
    int before = __atomic_load_n(&uploads_handled, __ATOMIC_RELAXED);
    int fd = raw_connect(byoai_http_port(H), NULL);
    const char *hdr = "PUT /upload/deny HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n";
    raw_send(fd, hdr, strlen(hdr));
    char out[4096];
    double t0 = byoai_time_now();
    assert_int_equal(raw_status(fd, 5, out, sizeof out), 403);
    assert_true(byoai_time_now() - t0 < 1.0);
    assert_non_null(strstr(out, "refused 5000000"));
    close(fd);
    assert_int_equal(count_uploads(), 0);
    /* a client that waits for 100 Continue gets the refusal and sends nothing */
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/upload/deny", byoai_http_port(H));
    char *big = calloc(1, 3000000);
    buf b = {0};
    struct curl_slist *hl = curl_slist_append(NULL, "Expect: 100-continue");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, big);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)3000000);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long st = 0;
    curl_off_t sent = -1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &sent);
    assert_int_equal(st, 403);
    assert_int_equal(sent, 0);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    free(b.data);
    /* one that sends the body right away gets the refusal too, or at worst
     * a reset while sending (TCP): either way nothing is stored */
    b = (buf){0};
    long st2 = request(byoai_http_port(H), "PUT", "/upload/deny", big, 3000000, NULL, &b, NULL);
    assert_true(st2 == 403 || st2 == 0);
    free(big);
    free(b.data);
    assert_int_equal(count_uploads(), 0);
    assert_int_equal(__atomic_load_n(&uploads_handled, __ATOMIC_RELAXED), before);
    /* an upload without a declared length is refused */
    b = (buf){0};
    assert_int_equal(request(byoai_http_port(H), "PUT", "/upload", "abc", 3, "Transfer-Encoding: chunked", &b, NULL), 411);
    free(b.data);
    assert_int_equal(count_uploads(), 0);
}

/* One address may hold max_per_ip connections; others are not affected. */
static void test_per_ip_limit(void **state) {
    (void)state;
    byoai_http *h2;
    byoai_error err;
    byoai_http_config cfg = {.max_per_ip = 3, .header_timeout_s = 30};
    assert_int_equal(byoai_http_start(&cfg, handler, &S, &h2, &err), 0);
    uint16_t port = byoai_http_port(h2);
    int fds[3];
    for (int i = 0; i < 3; i++) fds[i] = raw_connect(port, "127.0.0.2");
    for (int i = 0; i < 100 && byoai_http_connections(h2) < 3; i++) usleep(10000);
    assert_int_equal(byoai_http_connections(h2), 3);
    int extra = raw_connect(port, "127.0.0.2");
    double t = seconds_until_closed(extra, 0.1, 3, NULL);
    close(extra);
    assert_true(t >= 0 && t < 1.0);
    /* another address is served */
    char out[4096];
    int fd = raw_connect(port, "127.0.0.1");
    raw_send(fd, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 50);
    assert_int_equal(raw_status(fd, 5, out, sizeof out), 200);
    close(fd);
    for (int i = 0; i < 3; i++) close(fds[i]);
    byoai_http_stop(h2);
}

/* Idle connections cost no thread: many of them, a request still answers
 * at once, and stop is quick. A stream that never ends is ended by stop. */
static void test_idle_connections_and_stop(void **state) {
    (void)state;
    byoai_http *h2;
    byoai_error err;
    byoai_http_config cfg = {.max_per_ip = UINT32_MAX, .header_timeout_s = 30};
    assert_int_equal(byoai_http_start(&cfg, handler, &S, &h2, &err), 0);
    uint16_t port = byoai_http_port(h2);
    enum { N = 400 };
    static int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(port, "127.0.0.3");
        if (i % 2) raw_send(fds[i], "GET /echo HTTP/1.1\r\n", 20);
    }
    for (int i = 0; i < 300 && byoai_http_connections(h2) < N; i++) usleep(10000);
    assert_int_equal(byoai_http_connections(h2), N);
    char out[4096];
    for (int k = 0; k < 5; k++) {
        double t0 = byoai_time_now();
        int fd = raw_connect(port, NULL);
        raw_send(fd, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 50);
        assert_int_equal(raw_status(fd, 5, out, sizeof out), 200);
        close(fd);
        assert_true(byoai_time_now() - t0 < 0.1);
    }
    /* a stream that never ends */
    S.stream_done_completed = -1;
    int sfd = raw_connect(port, NULL);
    raw_send(sfd, "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n", 34);
    assert_int_equal(raw_status(sfd, 5, out, sizeof out), 200);
    double t0 = byoai_time_now();
    byoai_http_stop(h2);
    assert_true(byoai_time_now() - t0 < 1.0);
    assert_int_equal(S.stream_done_completed, 0);
    close(sfd);
    for (int i = 0; i < N; i++) close(fds[i]);
}

static void test_bad_bind(void **state) {
    (void)state;
    byoai_http *h2;
    byoai_error err;
    byoai_http_config cfg = {.bind_addr = "not-an-ip"};
    assert_int_equal(byoai_http_start(&cfg, handler, &S, &h2, &err), BYOAI_EINVAL);
    byoai_http_config cfg2 = {.port = byoai_http_port(H)}; /* in use */
    assert_int_equal(byoai_http_start(&cfg2, handler, &S, &h2, &err), BYOAI_EIO);
    assert_non_null(strstr(err.msg, "--port"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo),          cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_no_answer_is_500), cmocka_unit_test(test_status), cmocka_unit_test(test_file_ranges),
        cmocka_unit_test(test_sse),           cmocka_unit_test(test_stream_client_gone),
        cmocka_unit_test(test_upload_to_file), cmocka_unit_test(test_framing),
        cmocka_unit_test(test_log_line),      cmocka_unit_test(test_header_deadline),
        cmocka_unit_test(test_body_rate),     cmocka_unit_test(test_check_upload),
        cmocka_unit_test(test_per_ip_limit),  cmocka_unit_test(test_idle_connections_and_stop),
        cmocka_unit_test(test_bad_bind),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
