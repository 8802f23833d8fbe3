/* byoai_quantize_file: which tensor gets which type, and that the result runs. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"
#include "byoai/model.h"
#include "byoai/quant.h"

static void last_logits(const char *path, float *out) {
    byoai_model *m;
    byoai_error err;
    if (byoai_model_load(path, NULL, &m, &err)) fail_msg("%s", err.msg);
    byoai_context *c;
    byoai_context_params cp = {.n_ctx = 64, .n_threads = 2};
    if (byoai_context_new(m, &cp, &c, &err)) fail_msg("%s", err.msg);
    int32_t toks[] = {1, 403, 407, 261, 378};
    byoai_batch b = {.n_tokens = 5, .tokens = toks};
    if (byoai_decode(c, &b, &err)) fail_msg("%s", err.msg);
    memcpy(out, byoai_get_output(c, 0), 512 * sizeof(float));
    byoai_context_free(c);
    byoai_model_free(m);
}

static int n_progress;
static void on_progress(void *user, uint64_t done, uint64_t total, const char *tensor, const char *type) {
    (void)user;
    (void)tensor;
    (void)type;
    assert_true(done >= 1 && done <= total);
    n_progress++;
}

static void test_f16_and_q8_0(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    const char *src = tu_shared("models/stories260K.gguf");
    char f16[512], q8[512];
    snprintf(f16, sizeof f16, "%s/f16.gguf", dir);
    snprintf(q8, sizeof q8, "%s/q8.gguf", dir);
    byoai_error err;
    n_progress = 0;
    byoai_quantize_params p = {.target = "f16", .n_threads = 2, .progress = on_progress};
    if (byoai_quantize_file(src, f16, &p, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n_progress, 48);
    p.target = "Q8_0";
    if (byoai_quantize_file(src, q8, &p, &err)) fail_msg("%s", err.msg);

    byoai_gguf *g;
    assert_int_equal(byoai_gguf_open(f16, &g, &err), 0);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        assert_int_equal(g->tensors[i].type, g->tensors[i].n_dims == 1 ? BYOAI_TYPE_F32 : BYOAI_TYPE_F16);
    uint32_t ft;
    assert_int_equal(byoai_gguf_get_u32(g, "general.file_type", &ft, &err), 0);
    assert_int_equal(ft, 1);
    byoai_gguf_close(g);

    assert_int_equal(byoai_gguf_open(q8, &g, &err), 0);
    assert_int_equal(byoai_gguf_get_u32(g, "general.file_type", &ft, &err), 0);
    assert_int_equal(ft, 7);
    assert_int_equal(byoai_gguf_get_u32(g, "general.quantization_version", &ft, &err), 0);
    assert_int_equal(ft, 2);
    /* dims of 64 take Q8_0; ffn_down rows of 172 cannot and fall back to F16 */
    assert_int_equal(byoai_gguf_find_tensor(g, "blk.0.attn_q.weight")->type, BYOAI_TYPE_Q8_0);
    assert_int_equal(byoai_gguf_find_tensor(g, "output.weight")->type, BYOAI_TYPE_Q8_0);
    assert_int_equal(byoai_gguf_find_tensor(g, "blk.0.ffn_down.weight")->type, BYOAI_TYPE_F16);
    assert_int_equal(byoai_gguf_find_tensor(g, "blk.0.attn_norm.weight")->type, BYOAI_TYPE_F32);
    /* the tokenizer and hyper-parameters came along */
    assert_non_null(byoai_gguf_find(g, "tokenizer.ggml.tokens"));
    assert_non_null(byoai_gguf_find(g, "llama.block_count"));
    byoai_gguf_close(g);

    /* both run and stay close to the F32 model */
    static float ref[512], a[512], b[512];
    last_logits(src, ref);
    last_logits(f16, a);
    last_logits(q8, b);
    double ea = 0, eb = 0, norm = 0;
    for (int i = 0; i < 512; i++) {
        ea += (a[i] - ref[i]) * (a[i] - ref[i]);
        eb += (b[i] - ref[i]) * (b[i] - ref[i]);
        norm += ref[i] * ref[i];
    }
    assert_true(sqrt(ea / norm) < 0.01);
    assert_true(sqrt(eb / norm) < 0.05);
    assert_true(ea > 0); /* it really was converted */

    /* an already-quantized input is refused unless asked for */
    char again[512];
    snprintf(again, sizeof again, "%s/again.gguf", dir);
    p.target = "F16";
    assert_int_equal(byoai_quantize_file(q8, again, &p, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "--allow-requantize"));
    assert_false(byoai_fs_exists(again));
    p.allow_requantize = true;
    if (byoai_quantize_file(q8, again, &p, &err)) fail_msg("%s", err.msg);
    tu_rmtree(dir);
}

static void test_bad_target(void **state) {
    (void)state;
    byoai_error err;
    byoai_quantize_params p = {.target = "Q9_X"};
    assert_int_equal(byoai_quantize_file(tu_shared("models/stories260K.gguf"), "/tmp/never.gguf", &p, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "Q4_K_M"));
    p.target = "F16";
    assert_int_equal(byoai_quantize_file("/nonexistent.gguf", "/tmp/never.gguf", &p, &err), BYOAI_ENOTFOUND);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_and_q8_0),
        cmocka_unit_test(test_bad_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
