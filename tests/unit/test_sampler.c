/* The sampler: greedy, determinism per seed, each filter's effect, logprobs. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "byoai/sampler.h"

#define NV 100

static void make_logits(float *l, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < NV; i++) l[i] = tu_rand_float(&s) * 4;
}

static byoai_sampler *mk(byoai_sampler_params p) {
    byoai_sampler *s;
    byoai_error err;
    assert_int_equal(byoai_sampler_new(&p, NV, &s, &err), 0);
    return s;
}

static int argmax(const float *l) {
    int b = 0;
    for (int i = 1; i < NV; i++) if (l[i] > l[b]) b = i;
    return b;
}

static void test_greedy(void **state) {
    (void)state;
    float l[NV];
    make_logits(l, 1);
    byoai_sampler_params p = byoai_sampler_defaults();
    p.temp = 0;
    byoai_sampler *s = mk(p);
    assert_int_equal(byoai_sampler_sample(s, l), argmax(l));
    /* top-k 1 at any temperature is greedy too */
    byoai_sampler_params p2 = byoai_sampler_defaults();
    p2.top_k = 1;
    p2.temp = 5;
    byoai_sampler *s2 = mk(p2);
    for (int i = 0; i < 20; i++) assert_int_equal(byoai_sampler_sample(s2, l), argmax(l));
    byoai_sampler_free(s);
    byoai_sampler_free(s2);
}

static void test_seed_determinism(void **state) {
    (void)state;
    float l[NV];
    make_logits(l, 2);
    byoai_sampler_params p = byoai_sampler_defaults();
    p.temp = 1.5f;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    int a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        p.seed = run == 2 ? 777 : 42;
        byoai_sampler *s = mk(p);
        for (int i = 0; i < 64; i++) (run == 0 ? a : run == 1 ? b : c)[i] = byoai_sampler_sample(s, l);
        byoai_sampler_free(s);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    /* reset restarts the same stream */
    p.seed = 42;
    byoai_sampler *s = mk(p);
    for (int i = 0; i < 10; i++) byoai_sampler_sample(s, l);
    byoai_sampler_reset(s);
    for (int i = 0; i < 64; i++) assert_int_equal(byoai_sampler_sample(s, l), a[i]);
    byoai_sampler_free(s);
    /* at high temperature several distinct tokens appear */
    int distinct = 0;
    for (int i = 0; i < 64; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++) if (a[j] == a[i]) seen = true;
        if (!seen) distinct++;
    }
    assert_true(distinct > 5);
}

static void test_top_k_p_min_p(void **state) {
    (void)state;
    float l[NV];
    for (int i = 0; i < NV; i++) l[i] = -10;
    l[5] = 3.0f, l[7] = 2.9f, l[9] = 2.8f, l[11] = 0.0f;
    byoai_sampler_params p = byoai_sampler_defaults();
    p.temp = 1;
    p.top_k = 2;
    p.top_p = 1;
    p.min_p = 0;
    byoai_sampler *s = mk(p);
    for (int i = 0; i < 200; i++) {
        int t = byoai_sampler_sample(s, l);
        assert_true(t == 5 || t == 7);
    }
    byoai_sampler_free(s);
    /* top-p small keeps only the best */
    p.top_k = 0;
    p.top_p = 0.05f;
    s = mk(p);
    for (int i = 0; i < 100; i++) assert_int_equal(byoai_sampler_sample(s, l), 5);
    byoai_sampler_free(s);
    /* min-p 0.5 drops token 11 (e^-3 of the best) but keeps 7 and 9 */
    p.top_p = 1;
    p.min_p = 0.5f;
    s = mk(p);
    bool saw9 = false;
    for (int i = 0; i < 300; i++) {
        int t = byoai_sampler_sample(s, l);
        assert_true(t == 5 || t == 7 || t == 9);
        if (t == 9) saw9 = true;
    }
    assert_true(saw9);
    byoai_sampler_free(s);
}

static void test_repeat_penalty(void **state) {
    (void)state;
    float l[NV];
    for (int i = 0; i < NV; i++) l[i] = 0;
    l[3] = 2.0f, l[4] = 1.9f;
    byoai_sampler_params p = byoai_sampler_defaults();
    p.temp = 0;
    p.repeat_penalty = 1.5f;
    byoai_sampler *s = mk(p);
    assert_int_equal(byoai_sampler_sample(s, l), 3);
    byoai_sampler_accept(s, 3);
    byoai_sampler_accept(s, 3); /* counted once */
    assert_int_equal(byoai_sampler_sample(s, l), 4); /* 2.0/1.5 < 1.9 */
    byoai_sampler_free(s);
}

/* OpenAI's frequency and presence penalties: per occurrence and once */
static void test_frequency_presence(void **state) {
    (void)state;
    float l[NV];
    for (int i = 0; i < NV; i++) l[i] = 0;
    l[3] = 2.0f, l[4] = 1.5f;
    byoai_sampler_params p = byoai_sampler_defaults();
    p.temp = 0;
    p.frequency_penalty = 0.2f;
    byoai_sampler *s = mk(p);
    byoai_sampler_accept(s, 3);
    byoai_sampler_accept(s, 3); /* 2.0 - 2 x 0.2 = 1.6 > 1.5 */
    assert_int_equal(byoai_sampler_sample(s, l), 3);
    byoai_sampler_accept(s, 3); /* 2.0 - 3 x 0.2 = 1.4 < 1.5 */
    assert_int_equal(byoai_sampler_sample(s, l), 4);
    byoai_sampler_free(s);
    p.frequency_penalty = 0;
    p.presence_penalty = 0.4f; /* once, however often: 1.6 > 1.5 */
    s = mk(p);
    for (int i = 0; i < 5; i++) byoai_sampler_accept(s, 3);
    assert_int_equal(byoai_sampler_sample(s, l), 3);
    byoai_sampler_free(s);
    p.presence_penalty = 0.6f; /* 1.4 < 1.5 */
    s = mk(p);
    byoai_sampler_accept(s, 3);
    assert_int_equal(byoai_sampler_sample(s, l), 4);
    /* negative penalties favour repeats */
    byoai_sampler_free(s);
    p.presence_penalty = -1.0f;
    s = mk(p);
    byoai_sampler_accept(s, 40);
    assert_int_equal(byoai_sampler_sample(s, l), 3); /* 0 + 1 < 2 */
    byoai_sampler_accept(s, 4);
    assert_int_equal(byoai_sampler_sample(s, l), 4); /* 1.5 + 1 > 2 */
    byoai_sampler_free(s);
    byoai_error err;
    p.presence_penalty = 2.5f;
    assert_int_equal(byoai_sampler_params_check(&p, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "presence"));
}

/* a huge window stays linear: 1M accepted tokens sample quickly */
static void test_large_window(void **state) {
    (void)state;
    float l[NV];
    make_logits(l, 3);
    byoai_sampler_params p = byoai_sampler_defaults();
    p.temp = 0;
    p.repeat_last_n = 1 << 20;
    p.repeat_penalty = 1.1f;
    byoai_sampler *s = mk(p);
    for (int i = 0; i < (1 << 20); i++) byoai_sampler_accept(s, i % NV);
    double t0 = byoai_time_now();
    for (int i = 0; i < 5; i++) byoai_sampler_sample(s, l);
    assert_true(byoai_time_now() - t0 < 5.0);
    byoai_sampler_free(s);
}

static int forbid_even(void *user, const float *logits, bool *allowed, int32_t n) {
    (void)user;
    (void)logits;
    for (int32_t i = 0; i < n; i += 2) allowed[i] = false;
    return 0;
}

static void test_filter(void **state) {
    (void)state;
    float l[NV];
    make_logits(l, 9);
    byoai_sampler_params p = byoai_sampler_defaults();
    p.temp = 1;
    byoai_sampler *s = mk(p);
    byoai_sampler_set_filter(s, forbid_even, NULL);
    for (int i = 0; i < 100; i++) assert_int_equal(byoai_sampler_sample(s, l) % 2, 1);
    byoai_sampler_free(s);
}

static void test_params_check(void **state) {
    (void)state;
    byoai_error err;
    byoai_sampler_params p = byoai_sampler_defaults();
    p.top_p = 0;
    assert_int_equal(byoai_sampler_params_check(&p, &err), BYOAI_EINVAL);
    assert_non_null(strstr(err.msg, "top-p"));
    p = byoai_sampler_defaults();
    p.temp = NAN;
    assert_int_equal(byoai_sampler_params_check(&p, &err), BYOAI_EINVAL);
    p = byoai_sampler_defaults();
    p.top_k = -1;
    assert_int_equal(byoai_sampler_params_check(&p, &err), BYOAI_EINVAL);
}

static void test_logprobs(void **state) {
    (void)state;
    float l[NV];
    make_logits(l, 5);
    double total = 0;
    for (int i = 0; i < NV; i++) total += exp(byoai_logprob(l, NV, i));
    assert_true(fabs(total - 1.0) < 1e-5);
    int32_t ids[5];
    float lps[5];
    assert_int_equal(byoai_top_logprobs(l, NV, 5, ids, lps), 5);
    assert_int_equal(ids[0], argmax(l));
    for (int i = 1; i < 5; i++) assert_true(lps[i] <= lps[i - 1]);
    for (int i = 0; i < 5; i++) assert_true(fabsf(lps[i] - byoai_logprob(l, NV, ids[i])) < 1e-5f);
    /* nothing outside the top 5 beats the 5th */
    for (int i = 0; i < NV; i++) {
        bool in = false;
        for (int j = 0; j < 5; j++) if (ids[j] == i) in = true;
        if (!in) assert_true(l[i] <= l[ids[4]]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),       cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_top_k_p_min_p), cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_filter),        cmocka_unit_test(test_frequency_presence),
        cmocka_unit_test(test_large_window),        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_logprobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
