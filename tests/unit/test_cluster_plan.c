/* The partition planner: proportions, memory limits, edge cases, and the
 * cost model read from a real GGUF. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"

#define MIB (1ull << 20)

/* n_layer layers of 10 MiB, embedding 20 MiB, head 20 MiB, no KV or buffers */
static cl_model_cost cost(uint32_t n_layer) {
    cl_model_cost c = {.n_layer = n_layer, .embd_bytes = 20 * MIB, .head_bytes = 20 * MIB, .n_ctx = 1, .n_seq = 1};
    c.layer_bytes = calloc(n_layer, sizeof *c.layer_bytes);
    for (uint32_t i = 0; i < n_layer; i++) c.layer_bytes[i] = 10 * MIB;
    return c;
}

static cl_plan_node node(const char *id, uint64_t mem, uint64_t speed) {
    cl_plan_node n = {.memory = mem, .speed = speed};
    snprintf(n.id, sizeof n.id, "%s", id);
    snprintf(n.name, sizeof n.name, "%s", id);
    return n;
}

static uint32_t layers(const byoai_cluster_plan *p, uint32_t s) { return p->stages[s].layer_end - p->stages[s].layer_begin; }

static void check_contiguous(const byoai_cluster_plan *p) {
    uint32_t at = 0;
    for (uint32_t s = 0; s < p->n_stages; s++) {
        assert_int_equal(p->stages[s].layer_begin, at);
        assert_true(p->stages[s].layer_end > p->stages[s].layer_begin);
        assert_true(p->stages[s].total_bytes <= p->stages[s].memory);
        at = p->stages[s].layer_end;
    }
    assert_int_equal(at, p->n_layer);
    assert_true(p->stages[0].has_embd);
    assert_true(p->stages[p->n_stages - 1].has_head);
}

static void test_proportional(void **state) {
    (void)state;
    cl_model_cost c = cost(22);
    byoai_cluster_plan p;
    byoai_error err;
    cl_plan_node two[2] = {node("a", 1000 * MIB, 0), node("b", 1000 * MIB, 0)};
    assert_int_equal(cl_plan_compute(&c, two, 2, BYOAI_WEIGHT_MEMORY, &p, &err), 0);
    check_contiguous(&p);
    assert_int_equal(p.n_stages, 2);
    assert_int_equal(layers(&p, 0), 11);
    assert_int_equal(layers(&p, 1), 11);
    assert_string_equal(p.stages[0].node_id, "a"); /* node order is kept: the coordinator first */
    /* 1 : 2 : 1 */
    cl_plan_node three[3] = {node("a", 1000 * MIB, 0), node("b", 2000 * MIB, 0), node("c", 1000 * MIB, 0)};
    assert_int_equal(cl_plan_compute(&c, three, 3, BYOAI_WEIGHT_MEMORY, &p, &err), 0);
    check_contiguous(&p);
    assert_int_equal(layers(&p, 0) + layers(&p, 1) + layers(&p, 2), 22);
    assert_true(layers(&p, 1) == 11);
    assert_true(layers(&p, 0) >= 5 && layers(&p, 0) <= 6);
    assert_true(p.stages[1].share > 0.49 && p.stages[1].share < 0.51);
    /* speed weighting: the fast node gets more */
    cl_plan_node sp[2] = {node("a", 1000 * MIB, 30), node("b", 1000 * MIB, 10)};
    assert_int_equal(cl_plan_compute(&c, sp, 2, BYOAI_WEIGHT_SPEED, &p, &err), 0);
    check_contiguous(&p);
    assert_true(layers(&p, 0) > layers(&p, 1));
    assert_true(layers(&p, 0) == 16 || layers(&p, 0) == 17); /* 22 * 3/4 = 16.5 */
    /* unknown speed on one node: back to memory */
    sp[1].speed = 0;
    assert_int_equal(cl_plan_compute(&c, sp, 2, BYOAI_WEIGHT_SPEED, &p, &err), 0);
    assert_int_equal(layers(&p, 0), 11);
    cl_model_cost_free(&c);
}

static void test_memory_limits(void **state) {
    (void)state;
    cl_model_cost c = cost(10); /* 100 MiB of layers + 40 MiB embedding/head */
    byoai_cluster_plan p;
    byoai_error err;
    /* a is big, b small: b must not get more than fits, even though memory shares say more */
    cl_plan_node n[2] = {node("a", 1000 * MIB, 0), node("b", 45 * MIB, 0)};
    assert_int_equal(cl_plan_compute(&c, n, 2, BYOAI_WEIGHT_MEMORY, &p, &err), 0);
    check_contiguous(&p);
    /* the shares give b 0.4 layers: it gets none, or at most what fits with the head (20 MiB) */
    for (uint32_t s = 0; s < p.n_stages; s++) assert_true(p.stages[s].total_bytes <= p.stages[s].memory);
    /* equal shares that do not fit: the layer moves to where there is room */
    cl_plan_node m[2] = {node("a", 100 * MIB, 0), node("b", 65 * MIB, 0)};
    assert_int_equal(cl_plan_compute(&c, m, 2, BYOAI_WEIGHT_MEMORY, &p, &err), 0);
    check_contiguous(&p);
    assert_true(layers(&p, 1) <= 4); /* 20 MiB head + 4 x 10 MiB */
    /* not enough memory in total */
    cl_plan_node small[2] = {node("a", 50 * MIB, 0), node("b", 50 * MIB, 0)};
    assert_int_equal(cl_plan_compute(&c, small, 2, BYOAI_WEIGHT_MEMORY, &p, &err), BYOAI_ENOMEM);
    assert_non_null(strstr(err.msg, "offer"));
    /* enough in total but fragmented: no node can take the embedding and a layer */
    cl_plan_node frag[8];
    for (int i = 0; i < 8; i++) frag[i] = node("x", 25 * MIB, 0);
    assert_int_equal(cl_plan_compute(&c, frag, 8, BYOAI_WEIGHT_MEMORY, &p, &err), BYOAI_ENOMEM);
    /* a node offering nothing gets nothing */
    cl_plan_node z[3] = {node("a", 500 * MIB, 0), node("zero", 0, 0), node("c", 500 * MIB, 0)};
    assert_int_equal(cl_plan_compute(&c, z, 3, BYOAI_WEIGHT_MEMORY, &p, &err), 0);
    check_contiguous(&p);
    assert_int_equal(p.n_stages, 2);
    for (uint32_t s = 0; s < p.n_stages; s++) assert_string_not_equal(p.stages[s].node_id, "zero");
    cl_model_cost_free(&c);
}

static void test_edge_cases(void **state) {
    (void)state;
    byoai_cluster_plan p;
    byoai_error err;
    /* one node takes everything */
    cl_model_cost c = cost(5);
    cl_plan_node one = node("solo", 1 << 30, 0);
    assert_int_equal(cl_plan_compute(&c, &one, 1, BYOAI_WEIGHT_MEMORY, &p, &err), 0);
    assert_int_equal(p.n_stages, 1);
    assert_int_equal(layers(&p, 0), 5);
    assert_true(p.stages[0].has_embd && p.stages[0].has_head);
    /* more nodes than layers: some get none, every layer is placed once */
    cl_plan_node many[8];
    for (int i = 0; i < 8; i++) {
        char id[8];
        snprintf(id, sizeof id, "n%d", i);
        many[i] = node(id, 1 << 30, 0);
    }
    assert_int_equal(cl_plan_compute(&c, many, 8, BYOAI_WEIGHT_MEMORY, &p, &err), 0);
    check_contiguous(&p);
    assert_int_equal(p.n_stages, 5);
    /* no nodes; all offering zero */
    assert_int_equal(cl_plan_compute(&c, many, 0, BYOAI_WEIGHT_MEMORY, &p, &err), BYOAI_EINVAL);
    cl_plan_node zero[2] = {node("a", 0, 0), node("b", 0, 0)};
    assert_int_equal(cl_plan_compute(&c, zero, 2, BYOAI_WEIGHT_MEMORY, &p, &err), BYOAI_ENOMEM);
    /* the KV cache counts: a long context needs more room */
    c.kv_per_layer_token = 1024;
    c.n_ctx = 8192;
    c.n_seq = 4; /* 32 MiB per layer of KV */
    cl_plan_node two[2] = {node("a", 100 * MIB, 0), node("b", 100 * MIB, 0)}; /* 250 MiB needed */
    assert_int_equal(cl_plan_compute(&c, two, 2, BYOAI_WEIGHT_MEMORY, &p, &err), BYOAI_ENOMEM);
    cl_plan_node big[2] = {node("a", 200 * MIB, 0), node("b", 200 * MIB, 0)};
    assert_int_equal(cl_plan_compute(&c, big, 2, BYOAI_WEIGHT_MEMORY, &p, &err), 0);
    check_contiguous(&p);
    assert_true(p.stages[0].kv_bytes > 0);
    cl_model_cost_free(&c);
}

static void test_cost_from_gguf(void **state) {
    (void)state;
    byoai_gguf *g;
    byoai_error err;
    assert_int_equal(byoai_gguf_open(tu_shared("models/stories260K.gguf"), &g, &err), 0);
    cl_model_cost c;
    assert_int_equal(cl_model_cost_from_gguf(g, 128, 2, 64, &c, &err), 0);
    assert_int_equal(c.n_layer, 5);
    assert_int_equal(c.n_vocab, 512);
    assert_int_equal(c.n_embd, 64);
    assert_false(c.tied); /* stories260K has its own output matrix */
    assert_true(c.head_bytes >= 512 * 64 * 4);
    uint64_t sum = c.embd_bytes + c.head_bytes + c.other_bytes;
    for (uint32_t l = 0; l < 5; l++) {
        assert_true(c.layer_bytes[l] > 0);
        assert_int_equal(c.layer_bytes[l], c.layer_bytes[0]);
        sum += c.layer_bytes[l];
    }
    uint64_t all = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) all += g->tensors[i].size;
    assert_int_equal(sum, all); /* every tensor counted once */
    uint64_t w_tail, w_head, w_mid;
    cl_stage_bytes(&c, 3, 5, &w_tail, NULL, NULL);
    cl_stage_bytes(&c, 0, 2, &w_head, NULL, NULL);
    cl_stage_bytes(&c, 2, 3, &w_mid, NULL, NULL);
    assert_int_equal(w_tail, 2 * c.layer_bytes[0] + c.head_bytes + c.other_bytes);
    assert_int_equal(w_head, 2 * c.layer_bytes[0] + c.embd_bytes + c.other_bytes);
    assert_int_equal(w_mid, c.layer_bytes[0] + c.other_bytes);
    /* the last stage of a tied model also needs the embedding */
    c.tied = true;
    cl_stage_bytes(&c, 3, 5, &w_tail, NULL, NULL);
    assert_int_equal(w_tail, 2 * c.layer_bytes[0] + c.head_bytes + c.embd_bytes + c.other_bytes);
    uint64_t kv;
    cl_stage_bytes(&c, 0, 5, NULL, &kv, NULL);
    assert_int_equal(kv, 5ull * 128 * 2 * c.kv_per_layer_token);
    cl_model_cost_free(&c);
    byoai_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proportional), cmocka_unit_test(test_memory_limits),
        cmocka_unit_test(test_edge_cases),   cmocka_unit_test(test_cost_from_gguf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
