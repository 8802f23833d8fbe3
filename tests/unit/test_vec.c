/* Vector operations of the forward pass (src/infer/vec.h): every SIMD level
 * against the scalar reference, for head dimensions that fill whole
 * vectors or leave a partial one, grouped query heads, and position counts
 * around the 8- and 16-position blocks of the score reduction. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/vec.h"

static const char *LEVELS[] = {"avx2", "avx512"};

static void test_attend(void **state) {
    (void)state;
    static const uint32_t HD[] = {8, 40, 64, 72, 128, 200};
    static const uint32_t NS[] = {1, 2, 7, 8, 9, 15, 16, 17, 33, 100};
    static const uint32_t GS[] = {1, 3, 8};
    const byoai_vec_ops *ref = byoai_vec_ops_get("scalar");
    uint64_t rs = 9;
    for (size_t hi = 0; hi < sizeof HD / sizeof HD[0]; hi++)
        for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++)
            for (size_t gi = 0; gi < sizeof GS / sizeof GS[0]; gi++) {
                const uint32_t hd = HD[hi], n = NS[ni], G = GS[gi];
                const size_t ks = (size_t)hd * 3 + 4; /* other heads interleaved in the cache rows */
                float *q = malloc(G * hd * sizeof(float)), *k = malloc(n * ks * sizeof(float)),
                      *v = malloc(n * ks * sizeof(float)), *sc = malloc(G * n * sizeof(float)),
                      *o1 = malloc(G * hd * sizeof(float)), *o2 = malloc(G * hd * sizeof(float));
                for (uint32_t i = 0; i < G * hd; i++) q[i] = tu_rand_float(&rs) * 2;
                for (size_t i = 0; i < n * ks; i++) k[i] = tu_rand_float(&rs), v[i] = tu_rand_float(&rs);
                const float scale = 1.0f / sqrtf((float)hd);
                ref->attend(q, G, k, v, ks, n, hd, scale, sc, o1);
                for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++) {
                    const byoai_vec_ops *o = byoai_vec_ops_get(LEVELS[l]);
                    if (!o) continue;
                    for (uint32_t i = 0; i < G * hd; i++) o2[i] = NAN;
                    o->attend(q, G, k, v, ks, n, hd, scale, sc, o2);
                    for (uint32_t i = 0; i < G * hd; i++)
                        if (!(fabsf(o1[i] - o2[i]) <= 2e-5f * (1 + fabsf(o1[i]))))
                            fail_msg("%s attend hd=%u n=%u G=%u: out[%u] %g vs %g", LEVELS[l], hd, n, G, i,
                                     (double)o2[i], (double)o1[i]);
                }
                free(q), free(k), free(v), free(sc), free(o1), free(o2);
            }
}

static void test_silu_mul(void **state) {
    (void)state;
    const byoai_vec_ops *ref = byoai_vec_ops_get("scalar");
    uint64_t rs = 4;
    const size_t n = 1000 + 13;
    float *g = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float)), *h1 = malloc(n * sizeof(float)),
          *h2 = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        g[i] = tu_rand_float(&rs) * (i % 10 == 0 ? 120.0f : 6.0f);
        u[i] = tu_rand_float(&rs) * 3;
    }
    g[0] = 0, g[1] = -200, g[2] = 200, g[3] = -88.5f;
    ref->silu_mul(h1, g, u, n);
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++) {
        const byoai_vec_ops *o = byoai_vec_ops_get(LEVELS[l]);
        if (!o) continue;
        for (size_t len = n - 13; len <= n; len++) {
            o->silu_mul(h2, g, u, len);
            for (size_t i = 0; i < len; i++)
                if (!(fabsf(h1[i] - h2[i]) <= 1e-5f * fabsf(h1[i]) + 1e-30f))
                    fail_msg("%s silu_mul n=%zu: h[%zu] %g vs %g (g %g)", LEVELS[l], len, i, (double)h2[i],
                             (double)h1[i], (double)g[i]);
        }
        /* in place, as the forward pass calls it (h = u) */
        memcpy(h2, u, n * sizeof(float));
        o->silu_mul(h2, g, h2, n);
        for (size_t i = 0; i < n; i++) assert_true(fabsf(h1[i] - h2[i]) <= 1e-5f * fabsf(h1[i]) + 1e-30f);
    }
    free(g), free(u), free(h1), free(h2);
}

static void test_levels(void **state) {
    (void)state;
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++)
        printf("vec ops %-6s: %s\n", LEVELS[l], byoai_vec_ops_get(LEVELS[l]) ? "tested" : "not available here");
    assert_non_null(byoai_vec_ops_best());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attend),
        cmocka_unit_test(test_silu_mul),
        cmocka_unit_test(test_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
