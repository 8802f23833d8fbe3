/* registry/: downloads and installs against an in-process registry server:
 * full, resumed, corrupt partial, wrong checksum, 404, cancel, a shared lock. */
#include "regtest.h"

#include <pthread.h>
#include <unistd.h>

#include "byoai/registry.h"
#include "registry/registry_internal.h"

typedef struct {
    pthread_mutex_t mu;
    char log[1 << 16];
} srv_log;
static srv_log g_log = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_log(void *user, const char *line) {
    (void)user;
    pthread_mutex_lock(&g_log.mu);
    size_t l = strlen(g_log.log);
    snprintf(g_log.log + l, sizeof g_log.log - l, "%s\n", line);
    pthread_mutex_unlock(&g_log.mu);
}
static int log_count(const char *needle) {
    pthread_mutex_lock(&g_log.mu);
    int n = 0;
    for (const char *p = g_log.log; (p = strstr(p, needle)); p++) n++;
    pthread_mutex_unlock(&g_log.mu);
    return n;
}

typedef struct {
    const char *dir;
    char reg[512], blob_url[1024], file[512], sha[65];
    uint64_t size;
    byoai_registry_server *srv;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    snprintf(f->reg, sizeof f->reg, "%s/reg", f->dir);
    byoai_error err;
    assert_int_equal(byoai_registry_init(f->reg, NULL, &err), 0);
    snprintf(f->file, sizeof f->file, "%s/m.gguf", f->dir);
    rt_make_gguf(f->file, 5, 64 * 1024, "mit");
    assert_int_equal(byoai_sha256_file(f->file, f->sha, &err), 0);
    char *data;
    size_t len;
    assert_int_equal(byoai_fs_read_all(f->file, 0, &data, &len, &err), 0);
    f->size = len;
    char p[1024];
    snprintf(p, sizeof p, "%s/blobs/sha256-%s", f->reg, f->sha);
    assert_int_equal(byoai_fs_write_atomic(p, data, len, &err), 0);
    free(data);
    byoai_serve_opts o = {.port = 0, .log = on_log};
    assert_int_equal(byoai_registry_serve_start(f->reg, &o, &f->srv, &err), 0);
    snprintf(f->blob_url, sizeof f->blob_url, "http://127.0.0.1:%u/blobs/sha256-%s", byoai_registry_serve_port(f->srv),
             f->sha);
    setenv("BYOAI_RETRY_DELAY_MS", "10", 1);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    byoai_registry_serve_stop(f->srv);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

static byoai_store *new_store(fixture *f, const char *name) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    byoai_store *s;
    byoai_error err;
    assert_int_equal(byoai_store_open(p, &s, &err), 0);
    return s;
}

static void test_full_and_resume(void **state) {
    fixture *f = *state;
    byoai_error err;
    const char *urls[1] = {f->blob_url};
    byoai_store *s = new_store(f, "s1");
    char got[65];
    uint64_t size;
    assert_int_equal(reg_download_blob(s, urls, 1, f->sha, f->size, NULL, NULL, NULL, got, &size, &err), 0);
    assert_string_equal(got, f->sha);
    assert_true(byoai_store_has_blob(s, f->sha, f->size));
    /* already there: no request at all */
    int gets = log_count("GET /blobs/");
    assert_int_equal(reg_download_blob(s, urls, 1, f->sha, f->size, NULL, NULL, NULL, got, &size, &err), 0);
    assert_int_equal(log_count("GET /blobs/"), gets);
    byoai_store_close(s);

    /* a partial file with the first 100000 bytes: resumed with Range */
    s = new_store(f, "s2");
    char part[4200], *data;
    size_t len;
    byoai_store_partial_path(s, f->sha, part, sizeof part);
    assert_int_equal(byoai_fs_read_all(f->file, 0, &data, &len, &err), 0);
    assert_int_equal(byoai_fs_write_atomic(part, data, 100000, &err), 0);
    assert_int_equal(reg_download_blob(s, urls, 1, f->sha, f->size, NULL, NULL, NULL, got, &size, &err), 0);
    assert_int_equal(log_count("range=bytes=100000-"), 1);
    assert_false(byoai_fs_exists(part));
    char check[65];
    char bp[4200];
    byoai_store_blob_path(s, f->sha, bp, sizeof bp);
    assert_int_equal(byoai_sha256_file(bp, check, &err), 0);
    assert_string_equal(check, f->sha);
    byoai_store_close(s);

    /* a corrupt partial file: the resumed result fails, one fresh download fixes it */
    s = new_store(f, "s3");
    byoai_store_partial_path(s, f->sha, part, sizeof part);
    memset(data, 0x55, 50000);
    assert_int_equal(byoai_fs_write_atomic(part, data, 50000, &err), 0);
    gets = log_count("GET /blobs/");
    assert_int_equal(reg_download_blob(s, urls, 1, f->sha, f->size, NULL, NULL, NULL, got, &size, &err), 0);
    assert_int_equal(log_count("GET /blobs/"), gets + 2);
    assert_true(byoai_store_has_blob(s, f->sha, f->size));
    free(data);
    byoai_store_close(s);
}

static int cancel_half(void *user, const byoai_progress *p) {
    (void)user;
    return !strcmp(p->phase, "downloading") && p->done > 0;
}

static void test_failures(void **state) {
    fixture *f = *state;
    byoai_error err;
    byoai_store *s = new_store(f, "f1");
    const char *urls[1] = {f->blob_url};
    char got[65], part[4200];
    uint64_t size;
    const char *wrong = "1111111111111111111111111111111111111111111111111111111111111111";
    /* the server's file does not have this sha256 */
    assert_int_equal(reg_download_blob(s, urls, 1, wrong, f->size, NULL, NULL, NULL, got, &size, &err), BYOAI_ECHECKSUM);
    assert_non_null(strstr(err.msg, "does not match its checksum"));
    assert_false(byoai_store_has_blob(s, wrong, 0));
    byoai_store_partial_path(s, wrong, part, sizeof part);
    assert_false(byoai_fs_exists(part));
    /* smaller than the server's file */
    assert_int_equal(reg_download_blob(s, urls, 1, f->sha, 1000, NULL, NULL, NULL, got, &size, &err), BYOAI_EFORMAT);
    assert_non_null(strstr(err.msg, "more than"));
    /* 404, not retried */
    char url404[1200];
    snprintf(url404, sizeof url404, "http://127.0.0.1:%u/blobs/sha256-%s", byoai_registry_serve_port(f->srv), wrong);
    const char *u404[1] = {url404};
    int before = log_count(wrong);
    assert_int_equal(reg_download_blob(s, u404, 1, wrong, 10, NULL, NULL, NULL, got, &size, &err), BYOAI_ENOTFOUND);
    assert_int_equal(log_count(wrong), before + 1);
    /* a mirror: the first URL 404s, the second works */
    const char *two[2] = {url404, f->blob_url};
    assert_int_equal(reg_download_blob(s, two, 2, f->sha, f->size, NULL, NULL, NULL, got, &size, &err), 0);
    byoai_store_close(s);
    /* nobody listening: retried, then a clear error */
    s = new_store(f, "f2");
    const char *dead[1] = {"http://127.0.0.1:1/blobs/x"};
    reg_download_opts o = {.retries = 2, .what = "thing"};
    assert_int_equal(reg_download_blob(s, dead, 1, f->sha, f->size, &o, NULL, NULL, got, &size, &err), BYOAI_ENET);
    assert_non_null(strstr(err.msg, "gave up after 3 attempts"));
    /* cancelled by the progress callback: the partial file stays for a resume */
    o = (reg_download_opts){.max_rate = 200 * 1024};
    assert_int_equal(reg_download_blob(s, urls, 1, f->sha, f->size, &o, cancel_half, NULL, got, &size, &err),
                     BYOAI_ECANCELED);
    assert_false(byoai_store_has_blob(s, f->sha, 0));
    byoai_store_close(s);
}

typedef struct {
    byoai_store *s;
    const char *url, *sha;
    uint64_t size;
    int rc;
    int waited;
    volatile int done;
} dl_thread;

static int count_waits(void *user, const byoai_progress *p) {
    dl_thread *t = user;
    if (!strcmp(p->phase, "waiting")) t->waited++;
    return 0;
}

static void *run_dl(void *arg) {
    dl_thread *t = arg;
    const char *urls[1] = {t->url};
    byoai_error err;
    char got[65];
    uint64_t size;
    t->rc = reg_download_blob(t->s, urls, 1, t->sha, t->size, NULL, count_waits, t, got, &size, &err);
    t->done = 1;
    return NULL;
}

static void test_shared_lock(void **state) {
    fixture *f = *state;
    byoai_error err;
    byoai_store *s = new_store(f, "l1");
    int lock;
    assert_int_equal(byoai_store_lock_blob(s, f->sha, &lock, NULL, NULL, &err), 0);
    dl_thread t = {.s = s, .url = f->blob_url, .sha = f->sha, .size = f->size};
    int gets = log_count("GET /blobs/");
    pthread_t th;
    pthread_create(&th, NULL, run_dl, &t);
    usleep(1200 * 1000);
    assert_false(t.done); /* waits for the holder */
    /* the holder finishes the file */
    char sha[65];
    assert_int_equal(byoai_store_link_blob(s, f->file, true, sha, NULL, NULL, NULL, &err), 0);
    byoai_store_unlock_blob(s, f->sha, lock);
    pthread_join(th, NULL);
    assert_int_equal(t.rc, 0);
    assert_true(t.waited >= 1);
    assert_int_equal(log_count("GET /blobs/"), gets); /* it did not download again */
    byoai_store_close(s);
}

typedef struct {
    char phases[512];
} phases;
static int record(void *user, const byoai_progress *p) {
    phases *ph = user;
    size_t l = strlen(ph->phases);
    if (l < 400 && (l < strlen(p->phase) || strcmp(ph->phases + l - strlen(p->phase), p->phase)))
        snprintf(ph->phases + l, sizeof ph->phases - l, "%s%s", l ? "," : "", p->phase);
    return 0;
}

static void test_install(void **state) {
    fixture *f = *state;
    byoai_error err;
    char idx[1024], text[2048];
    snprintf(idx, sizeof idx, "%s/index.json", f->reg);
    snprintf(text, sizeof text,
             "{\"schema_version\":1,\"models\":[{\"name\":\"m\",\"description\":\"d\",\"architecture\":\"llama\","
             "\"license\":\"mit\",\"parameters\":65536,\"revision\":\"7\",\"updated\":\"2024-01-01\",\"variants\":["
             "{\"name\":\"f32\",\"quantization\":\"F32\",\"size\":%llu,\"sha256\":\"%s\",\"url\":\"blobs/sha256-%s\"}]}]}",
             (unsigned long long)f->size, f->sha, f->sha);
    rt_write(idx, text);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", byoai_registry_serve_port(f->srv));
    setenv("BYOAI_REGISTRY", url, 1);
    setenv("BYOAI_INDEX_TTL", "0", 1);
    byoai_store *s = new_store(f, "i1");
    byoai_install_plan plan;
    byoai_install_opts o = {.dry_run = true, .plan = &plan};
    byoai_store_model m;
    assert_int_equal(byoai_install(s, "m", &o, NULL, NULL, &m, &err), 0);
    assert_string_equal(plan.variant, "f32");
    assert_string_equal(plan.revision, "7");
    assert_int_equal(plan.download_bytes, f->size);
    assert_int_equal(byoai_store_find(s, "m", &m, &err), BYOAI_ENOTFOUND);
    phases ph = {""};
    o = (byoai_install_opts){.plan = &plan};
    assert_int_equal(byoai_install(s, "m", &o, record, &ph, &m, &err), 0);
    assert_non_null(strstr(ph.phases, "resolving,resolved"));
    assert_non_null(strstr(ph.phases, "verifying"));
    assert_non_null(strstr(ph.phases, "done"));
    assert_string_equal(m.revision, "7");
    assert_string_equal(m.registry, "default");
    assert_int_equal(byoai_store_find(s, "m:f32", &m, &err), 0);
    assert_int_equal(byoai_install(s, "m:q9", &o, NULL, NULL, &m, &err), BYOAI_ENOTFOUND);
    assert_int_equal(byoai_install(s, "nope", &o, NULL, NULL, &m, &err), BYOAI_ENOTFOUND);
    assert_int_equal(byoai_install(s, "../m", &o, NULL, NULL, &m, &err), BYOAI_EINVAL);
    /* up to date */
    byoai_update_item *items;
    size_t n;
    assert_int_equal(byoai_update_check(s, NULL, 0, NULL, &items, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_false(items[0].outdated);
    free(items);
    byoai_store_close(s);
    unsetenv("BYOAI_REGISTRY");
}

/* Redirect targets: only http and https are followed; the Location line. */
static void test_redirect_schemes(void **state) {
    (void)state;
    assert_true(reg_redirect_refused("file:///etc/passwd"));
    assert_true(reg_redirect_refused("FILE:/etc/passwd"));
    assert_true(reg_redirect_refused("ftp://example.com/x"));
    assert_true(reg_redirect_refused("gopher+x://a"));
    assert_false(reg_redirect_refused("https://cdn.example.com/x"));
    assert_false(reg_redirect_refused("HTTP://cdn.example.com/x"));
    assert_false(reg_redirect_refused("/cdn/x.gguf"));
    assert_false(reg_redirect_refused("x.gguf"));
    assert_false(reg_redirect_refused(""));
    char loc[64];
    const char *line = "Location:  file:///etc/passwd \r\n";
    assert_true(reg_header_location(line, strlen(line), loc, sizeof loc));
    assert_string_equal(loc, "file:///etc/passwd");
    assert_false(reg_header_location("ETag: x\r\n", 9, loc, sizeof loc));
}

/* The stall check fires at the limit, and any byte moved resets it. */
static void test_stall_check(void **state) {
    (void)state;
    setenv("BYOAI_STALL_SECONDS", "1", 1);
    reg_stall st;
    reg_stall_start(&st);
    unsetenv("BYOAI_STALL_SECONDS");
    assert_false(reg_stall_check(&st, 0));
    usleep(600000);
    assert_false(reg_stall_check(&st, 10)); /* progress */
    usleep(600000);
    assert_false(reg_stall_check(&st, 10));
    usleep(500000);
    assert_true(reg_stall_check(&st, 10));
}

/* Header lines are parsed within their length (libcurl does not terminate
 * them: each one here sits in a buffer of exactly its size, so ASan sees a
 * read past it), and numbers are digits or nothing. */
static bool range_of(const char *text, uint64_t *first) {
    size_t n = strlen(text);
    char *line = malloc(n);
    memcpy(line, text, n);
    bool ok = reg_content_range_start(line, n, first);
    free(line);
    return ok;
}

static void header(reg_response *r, const char *text) {
    size_t n = strlen(text);
    char *line = malloc(n);
    memcpy(line, text, n);
    reg_header_line(r, line, n);
    free(line);
}

static void test_header_lines(void **state) {
    (void)state;
    uint64_t first = 0;
    assert_true(range_of("Content-Range: bytes 100-199/200\r\n", &first));
    assert_true(first == 100);
    assert_true(range_of("content-range: bytes 0-9/*\r\n", &first));
    assert_true(first == 0);
    /* "bytes " only at the very end: the old strstr read past the line */
    assert_false(range_of("Content-Range: bytes", &first));
    assert_false(range_of("Content-Range: bytes ", &first));
    assert_false(range_of("Content-Range: bytes -5/9", &first));
    assert_false(range_of("Content-Range: bytes 99999999999999999999-1/2", &first));
    assert_false(range_of("Content-Type: bytes 1-2/3", &first));

    const char *st = "HTTP/1.1 206 Partial Content\r\n";
    assert_int_equal(reg_status_line(st, strlen(st)), 206);
    assert_int_equal(reg_status_line("HTTP/2 200\n", 11), 200);
    assert_int_equal(reg_status_line("HTTP/2 20", 9), 0);
    assert_int_equal(reg_status_line("HTTP/1.1 abc", 12), 0);
    assert_int_equal(reg_status_line("Content-Length: 5", 17), 0);

    reg_response r;
    memset(&r, 0, sizeof r);
    header(&r, "Content-Length: 1234\r\n");
    assert_true(r.content_length == 1234);
    header(&r, "Content-Length: -5\r\n"); /* strtoull made this 2^64-5 */
    assert_true(r.content_length == 0);
    header(&r, "X-Linked-Size: 18446744073709551615\r\n");
    assert_true(r.linked_size == 0);
    header(&r, "X-Linked-Size: 42");
    assert_true(r.linked_size == 42);
    header(&r, "X-Linked-Etag: W/\"abc\"\r\n");
    assert_string_equal(r.linked_etag, "abc");
    header(&r, "ETag: \"e1\"\r\n");
    assert_string_equal(r.etag, "\"e1\"");
    header(&r, "HTTP/1.1 200 OK\r\n"); /* a new response forgets the last one's */
    assert_string_equal(r.etag, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_lines),
        cmocka_unit_test(test_full_and_resume),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_shared_lock),
        cmocka_unit_test(test_install),
        cmocka_unit_test(test_redirect_schemes),
        cmocka_unit_test(test_stall_check),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
