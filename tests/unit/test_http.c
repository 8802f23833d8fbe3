/* The HTTP layer against a real client (libcurl) on 127.0.0.1. */
#include "testutil.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        byoai_http_send(r, 200, "text/plain", out, strlen(out));
    } else if (!strcmp(p, "/file")) {
        snprintf(out, sizeof out, "%s/data.bin", s->dir);
        byoai_http_send_file(r, out, "application/octet-stream", "abc123");
    } else if (!strcmp(p, "/sse")) {
        s->chunks_left = 5;
        byoai_http_stream_ops ops = {sse_read, stream_done};
        byoai_http_send_stream(r, 200, "text/event-stream", &ops, s);
    } else if (!strcmp(p, "/forever")) {
        byoai_http_stream_ops ops = {slow_read, stream_done};
        byoai_http_send_stream(r, 200, "text/event-stream", &ops, s);
    } else if (!strcmp(p, "/status")) {
        s->status_before = byoai_http_status(r);
        byoai_http_send(r, 418, "text/plain", "teapot", 6);
        s->status_after = byoai_http_status(r);
    } else if (!strcmp(p, "/upload")) {
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
                             .max_file_body = 100000};
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
        cmocka_unit_test(test_upload_to_file), cmocka_unit_test(test_bad_bind),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
