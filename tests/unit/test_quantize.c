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

/* Write src again with general.alignment = 1, padded so that the data
 * section starts at an odd byte: every F16 weight is then misaligned. */
static void write_unaligned(const char *src, const char *dst) {
    byoai_gguf *g;
    byoai_error err;
    if (byoai_gguf_open(src, &g, &err)) fail_msg("%s", err.msg);
    for (int pad = 0; pad < 2; pad++) {
        byoai_gguf_writer *w;
        assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
        for (uint64_t i = 0; i < g->n_kv; i++) byoai_gguf_writer_set_value(w, g->kv[i].key, &g->kv[i].value);
        byoai_gguf_writer_set_str(w, "x.pad", pad ? "x" : "");
        assert_int_equal(byoai_gguf_writer_set_alignment(w, 1, &err), 0);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const byoai_gguf_tensor *t = &g->tensors[i];
            assert_int_equal(byoai_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, NULL, NULL,
                                                          &err), 0);
        }
        if (byoai_gguf_writer_write(w, dst, NULL, NULL, &err)) fail_msg("%s", err.msg);
        byoai_gguf_writer_free(w);
        byoai_gguf *out;
        if (byoai_gguf_open(dst, &out, &err)) fail_msg("%s", err.msg);
        bool odd = out->data_offset % 2 == 1;
        assert_int_equal(out->alignment, 1);
        byoai_gguf_close(out);
        if (odd) break;
        assert_int_equal(pad, 0);
    }
    byoai_gguf_close(g);
}

/* A file with general.alignment = 1 would run with misaligned loads: it is
 * refused with what to do, and doing it (KEEP) gives the same model. Reading
 * such a file to convert it works too. */
static void test_unaligned_file(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char f16[512], odd[512], kept[512], q8a[512], q8b[512];
    snprintf(f16, sizeof f16, "%s/f16.gguf", dir);
    snprintf(odd, sizeof odd, "%s/odd.gguf", dir);
    snprintf(kept, sizeof kept, "%s/kept.gguf", dir);
    snprintf(q8a, sizeof q8a, "%s/q8a.gguf", dir);
    snprintf(q8b, sizeof q8b, "%s/q8b.gguf", dir);
    byoai_error err;
    byoai_quantize_params p = {.target = "F16", .n_threads = 2};
    if (byoai_quantize_file(tu_shared("models/stories260K.gguf"), f16, &p, &err)) fail_msg("%s", err.msg);
    write_unaligned(f16, odd);

    byoai_model *m;
    assert_int_equal(byoai_model_load(odd, NULL, &m, &err), BYOAI_EFORMAT);
    if (!strstr(err.msg, "not a multiple of 2 as its type F16 needs (the file has general.alignment = 1)") ||
        !strstr(err.msg, "byoai quantize IN.gguf OUT.gguf KEEP"))
        fail_msg("unexpected message: %s", err.msg);

    p.target = "KEEP";
    if (byoai_quantize_file(odd, kept, &p, &err)) fail_msg("%s", err.msg);
    byoai_gguf *a, *b;
    assert_int_equal(byoai_gguf_open(f16, &a, &err), 0);
    assert_int_equal(byoai_gguf_open(kept, &b, &err), 0);
    assert_int_equal(b->alignment, 32);
    assert_null(byoai_gguf_find(b, "general.alignment"));
    uint32_t ft;
    assert_int_equal(byoai_gguf_get_u32(b, "general.file_type", &ft, &err), 0);
    assert_int_equal(ft, 1); /* F16's, kept */
    assert_int_equal(a->n_tensors, b->n_tensors);
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const byoai_gguf_tensor *tb = byoai_gguf_find_tensor(b, a->tensors[i].name);
        assert_non_null(tb);
        assert_int_equal(tb->type, a->tensors[i].type);
        assert_int_equal(tb->size, a->tensors[i].size);
        assert_memory_equal(tb->data, a->tensors[i].data, (size_t)tb->size);
        assert_int_equal((uintptr_t)tb->data % 32, 0);
    }
    byoai_gguf_close(a);
    byoai_gguf_close(b);
    float la[512], lb[512];
    last_logits(f16, la);
    last_logits(kept, lb);
    assert_memory_equal(la, lb, sizeof la);

    /* converting reads the misaligned rows safely, with the same result */
    p.target = "Q8_0";
    if (byoai_quantize_file(odd, q8a, &p, &err)) fail_msg("%s", err.msg);
    if (byoai_quantize_file(f16, q8b, &p, &err)) fail_msg("%s", err.msg);
    last_logits(q8a, la);
    last_logits(q8b, lb);
    assert_memory_equal(la, lb, sizeof la);
    tu_rmtree(dir);
}

/* Tensor names come from the file: "blk.2147483647." made the layer count
 * overflow (int) in the mix's arithmetic; such a name is no layer. */
static void test_hostile_layer_names(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/in.gguf", dir);
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    byoai_gguf_writer *w;
    byoai_error err;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    static float d[256 * 2];
    uint64_t ne[2] = {256, 2};
    const char *names[] = {"blk.2147483647.attn_v.weight", "blk.99999999999.ffn_down.weight",
                           "blk.1.ffn_down.weight", "blk..attn_v.weight"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(byoai_gguf_writer_add_tensor(w, names[i], BYOAI_TYPE_F32, 2, ne, d, NULL, NULL, &err), 0);
    if (byoai_gguf_writer_write(w, in, NULL, NULL, &err)) fail_msg("%s", err.msg);
    byoai_gguf_writer_free(w);
    byoai_quantize_params p = {.target = "Q4_K_M", .n_threads = 1};
    if (byoai_quantize_file(in, out, &p, &err)) fail_msg("%s", err.msg);
    byoai_gguf *g;
    assert_int_equal(byoai_gguf_open(out, &g, &err), 0);
    assert_int_equal(g->n_tensors, 4);
    byoai_gguf_close(g);
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
        cmocka_unit_test(test_unaligned_file),
        cmocka_unit_test(test_hostile_layer_names),
        cmocka_unit_test(test_bad_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
