/* Tensor manifests and partial models fetched by HTTP Range requests from
 * byoai's own HTTP server: only a stage's tensors are fetched, each is
 * verified, and the sparse file loads and computes like the original. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byoai/http.h"
#include "byoai/model.h"
#include "cluster/cluster_internal.h"

typedef struct {
    const char *good, *bad;
    int requests;
    pthread_mutex_t mu;
} srv;

static void handler(void *user, byoai_http_req *r) {
    srv *s = user;
    pthread_mutex_lock(&s->mu);
    s->requests++;
    pthread_mutex_unlock(&s->mu);
    const char *p = byoai_http_path(r);
    if (!strcmp(p, "/m.gguf")) byoai_http_send_file(r, s->good, "application/octet-stream", NULL);
    else if (!strcmp(p, "/bad.gguf")) byoai_http_send_file(r, s->bad, "application/octet-stream", NULL);
    else if (!strcmp(p, "/norange.gguf")) {
        char *data;
        size_t len;
        byoai_fs_read_all(s->good, 0, &data, &len, NULL);
        byoai_http_send(r, 200, "application/octet-stream", data, len);
        free(data);
    } else byoai_http_send(r, 404, "text/plain", "no", 2);
}

static void test_manifest(void **state) {
    (void)state;
    const char *path = tu_shared("models/stories260K.gguf");
    cl_manifest m;
    byoai_error err;
    assert_int_equal(cl_manifest_build(path, &m, &err), 0);
    byoai_gguf *g;
    assert_int_equal(byoai_gguf_open(path, &g, &err), 0);
    assert_int_equal(m.n, g->n_tensors);
    assert_int_equal(m.header_size, g->data_offset);
    assert_int_equal(m.file_size, g->file_size);
    char hex[65], fh[65];
    assert_int_equal(byoai_sha256_file(path, hex, &err), 0);
    cl_hex(m.file_sha, 32, fh);
    assert_string_equal(hex, fh); /* the one-pass hash equals sha256 of the file */
    const cl_manifest_tensor *t = cl_manifest_find(&m, "blk.2.ffn_up.weight");
    const byoai_gguf_tensor *gt = byoai_gguf_find_tensor(g, "blk.2.ffn_up.weight");
    assert_non_null(t);
    assert_int_equal(t->offset, g->data_offset + gt->offset);
    byoai_sha256_buf(gt->data, gt->size, hex);
    cl_hex(t->sha, 32, fh);
    assert_string_equal(hex, fh);
    byoai_gguf_close(g);
    /* JSON round trip */
    char *json;
    size_t len;
    assert_int_equal(cl_manifest_to_json(&m, &json, &len, &err), 0);
    cl_manifest back;
    assert_int_equal(cl_manifest_parse(json, len, &back, &err), 0);
    assert_int_equal(back.n, m.n);
    assert_memory_equal(back.t, m.t, m.n * sizeof *m.t);
    assert_memory_equal(back.file_sha, m.file_sha, 32);
    cl_manifest_free(&back);
    /* malformed manifests */
    const char *bad[] = {"", "{}", "[]", "{\"format\":\"byoai-tensor-manifest/1\"}",
                         "{\"format\":\"x\",\"file\":{\"size\":1,\"sha256\":\"00\"}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cl_manifest_parse(bad[i], strlen(bad[i]), &back, NULL), BYOAI_EFORMAT);
    /* a tensor past the end of the file, or overlapping the header */
    char *mut = strdup(json);
    char *off = strstr(mut, "\"offset\":");
    assert_non_null(off);
    memcpy(off + 9, "9", 1); /* a much larger first offset digit */
    int rc = cl_manifest_parse(mut, strlen(mut), &back, NULL);
    if (rc == 0) cl_manifest_free(&back);
    free(mut);
    mut = strdup(json);
    char *sha = strstr(mut, "\"sha256\":\"");
    sha[10] = 'z'; /* not hex */
    assert_int_equal(cl_manifest_parse(mut, strlen(mut), &back, NULL), BYOAI_EFORMAT);
    free(mut);
    free(json);
    /* the cache gives the same manifest */
    const char *dir = tu_tmpdir();
    cl_manifest c1, c2;
    assert_int_equal(cl_manifest_for_file(dir, path, &c1, &err), 0);
    assert_int_equal(cl_manifest_for_file(dir, path, &c2, &err), 0);
    assert_memory_equal(c1.file_sha, m.file_sha, 32);
    assert_memory_equal(c2.t, m.t, m.n * sizeof *m.t);
    cl_manifest_free(&c1);
    cl_manifest_free(&c2);
    tu_rmtree(dir);
    cl_manifest_free(&m);
    /* which tensors a stage needs */
    assert_true(cl_tensor_needed("blk.3.attn_q.weight", 2, 5, 5, false));
    assert_false(cl_tensor_needed("blk.1.attn_q.weight", 2, 5, 5, false));
    assert_false(cl_tensor_needed("blk.12.attn_q.weight", 2, 5, 5, false));
    assert_false(cl_tensor_needed("token_embd.weight", 2, 5, 5, false));
    assert_true(cl_tensor_needed("token_embd.weight", 2, 5, 5, true)); /* tied output */
    assert_true(cl_tensor_needed("token_embd.weight", 0, 2, 5, false));
    assert_true(cl_tensor_needed("output.weight", 2, 5, 5, false));
    assert_false(cl_tensor_needed("output_norm.weight", 0, 2, 5, false));
    assert_true(cl_tensor_needed("rope_freqs.weight", 1, 2, 5, false));
    assert_false(cl_tensor_needed("blk.x.attn_q.weight", 0, 5, 5, false));
}

static byoai_model *load(const char *path, uint32_t b, uint32_t e) {
    byoai_model *m;
    byoai_error err = {0};
    byoai_model_params p = {.layer_begin = b, .layer_end = e};
    if (byoai_model_load(path, &p, &m, &err)) fail_msg("load %s: %s", path, err.msg);
    return m;
}

static void test_partial_fetch(void **state) {
    (void)state;
    const char *path = tu_shared("models/stories260K.gguf");
    const char *dir = tu_tmpdir();
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.gguf", dir);
    cl_manifest m;
    byoai_error err;
    assert_int_equal(cl_manifest_build(path, &m, &err), 0);
    /* a copy with one byte changed inside blk.3 */
    char *data;
    size_t len;
    assert_int_equal(byoai_fs_read_all(path, 0, &data, &len, &err), 0);
    const cl_manifest_tensor *t3 = cl_manifest_find(&m, "blk.3.ffn_down.weight");
    data[t3->offset + 5] ^= 0x40;
    assert_int_equal(byoai_fs_write_atomic(bad, data, len, &err), 0);
    free(data);

    srv s = {.good = path, .bad = bad};
    pthread_mutex_init(&s.mu, NULL);
    byoai_http *h;
    byoai_http_config hc = {0};
    assert_int_equal(byoai_http_start(&hc, handler, &s, &h, &err), 0);
    char url[128], badurl[128], norange[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/m.gguf", byoai_http_port(h));
    snprintf(badurl, sizeof badurl, "http://127.0.0.1:%u/bad.gguf", byoai_http_port(h));
    snprintf(norange, sizeof norange, "http://127.0.0.1:%u/norange.gguf", byoai_http_port(h));

    /* the last three layers: header + 27 layer tensors + output norm and matrix */
    char part[4400];
    cl_fetch_stats st = {0};
    assert_int_equal(cl_partial_prepare(dir, &m, url, 2, 5, 5, part, sizeof part, &st, &err), 0);
    assert_int_equal(st.requests, 1 + 27 + 2);
    uint64_t want = m.header_size;
    for (uint32_t i = 0; i < m.n; i++)
        if (cl_tensor_needed(m.t[i].name, 2, 5, 5, false)) want += m.t[i].size;
    assert_int_equal(st.bytes, want);
    assert_true(st.bytes < m.file_size);
    struct stat sb;
    assert_int_equal(stat(part, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, m.file_size); /* same layout ... */
    assert_true((uint64_t)sb.st_blocks * 512 < m.file_size); /* ... but sparse */
    /* the partial model computes what the original does */
    byoai_model *full_head = load(path, 0, 2), *orig_tail = load(path, 2, 5), *part_tail = load(part, 2, 5);
    byoai_context_params cp = {.n_ctx = 64, .n_threads = 1};
    byoai_context *ch, *co, *cpart;
    assert_int_equal(byoai_context_new(full_head, &cp, &ch, &err), 0);
    assert_int_equal(byoai_context_new(orig_tail, &cp, &co, &err), 0);
    assert_int_equal(byoai_context_new(part_tail, &cp, &cpart, &err), 0);
    int32_t toks[4] = {1, 403, 407, 261};
    int8_t all[4] = {1, 1, 1, 1};
    byoai_batch b = {.n_tokens = 4, .tokens = toks, .want = all};
    assert_int_equal(byoai_decode(ch, &b, &err), 0);
    float hidden[4 * 64];
    for (int i = 0; i < 4; i++) memcpy(hidden + i * 64, byoai_get_output(ch, (uint32_t)i), 64 * sizeof(float));
    byoai_batch bt = {.n_tokens = 4, .embd = hidden};
    assert_int_equal(byoai_decode(co, &bt, &err), 0);
    assert_int_equal(byoai_decode(cpart, &bt, &err), 0);
    assert_memory_equal(byoai_get_output(co, 0), byoai_get_output(cpart, 0), 512 * sizeof(float));
    byoai_context_free(ch);
    byoai_context_free(co);
    byoai_context_free(cpart);
    byoai_model_free(full_head);
    byoai_model_free(orig_tail);
    byoai_model_free(part_tail);
    /* again: nothing to fetch; a wider range fetches only what is new */
    cl_fetch_stats st2 = {0};
    assert_int_equal(cl_partial_prepare(dir, &m, url, 2, 5, 5, part, sizeof part, &st2, &err), 0);
    assert_int_equal(st2.requests, 0);
    assert_int_equal(cl_partial_prepare(dir, &m, url, 1, 5, 5, part, sizeof part, &st2, &err), 0);
    assert_int_equal(st2.requests, 9);
    /* no URL and something missing: a clear error */
    assert_int_equal(cl_partial_prepare(dir, &m, NULL, 0, 5, 5, part, sizeof part, &st2, &err), BYOAI_ENOTFOUND);
    assert_non_null(strstr(err.msg, "--model-url"));
    /* a server without Range support is refused */
    const char *dir2 = tu_tmpdir();
    assert_int_equal(cl_partial_prepare(dir2, &m, norange, 0, 1, 5, part, sizeof part, &st2, &err), BYOAI_EUNSUPPORTED);
    tu_rmtree(dir2);
    /* tampered bytes: refused for the stage that needs them, fine for the others */
    const char *dir3 = tu_tmpdir();
    assert_int_equal(cl_partial_prepare(dir3, &m, badurl, 0, 2, 5, part, sizeof part, &st2, &err), 0);
    assert_int_equal(cl_partial_prepare(dir3, &m, badurl, 2, 5, 5, part, sizeof part, &st2, &err), BYOAI_ECHECKSUM);
    assert_non_null(strstr(err.msg, "blk.3.ffn_down.weight"));
    /* and the bad tensor was not recorded as present: a good source completes it */
    cl_fetch_stats st3 = {0};
    assert_int_equal(cl_partial_prepare(dir3, &m, url, 2, 5, 5, part, sizeof part, &st3, &err), 0);
    assert_true(st3.requests >= 1);
    tu_rmtree(dir3);
    /* the header alone (for a tokenizer) */
    const char *dir4 = tu_tmpdir();
    assert_int_equal(byoai_fs_read_all(path, 0, &data, &len, &err), 0);
    assert_int_equal(cl_partial_write_header(dir4, &m, (uint8_t *)data, m.header_size, part, sizeof part, &err), 0);
    data[10] ^= 1;
    assert_int_equal(cl_partial_write_header(dir4, &m, (uint8_t *)data, m.header_size, part, sizeof part, &err),
                     BYOAI_ECHECKSUM);
    free(data);
    byoai_model *v;
    byoai_model_params vp = {.vocab_only = true};
    assert_int_equal(byoai_model_load(part, &vp, &v, &err), 0);
    assert_int_equal(byoai_model_hparams(v)->n_layer, 5);
    byoai_model_free(v);
    tu_rmtree(dir4);

    byoai_http_stop(h);
    pthread_mutex_destroy(&s.mu);
    cl_manifest_free(&m);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest),
        cmocka_unit_test(test_partial_fetch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
