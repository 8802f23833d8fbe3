/* Packed weights (src/infer/packed.h): the packed layout dequantizes to the
 * file's values, the activation quantizers of every level agree with the
 * scalar one bit for bit, and every level's kernels (scalar, AVX2, AVX-512,
 * AMX; small and large) compute the product of random weights of each type
 * with quantized activations, for token counts around the kernels' block
 * sizes and row counts that leave a partial last tile. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/packed.h"

static const byoai_type TYPES[] = {BYOAI_TYPE_Q8_0, BYOAI_TYPE_Q4_0, BYOAI_TYPE_Q4_K, BYOAI_TYPE_Q6_K};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])
static const char *LEVELS[] = {"scalar", "avx2", "avx512", "amx"};
#define N_LEVELS (sizeof LEVELS / sizeof LEVELS[0])

static float gauss(uint64_t *rs) { return (tu_rand_float(rs) + tu_rand_float(rs) + tu_rand_float(rs)) * 0.6f; }

static void put_half(void *p, float f) {
    uint16_t h = byoai_fp32_to_fp16(f);
    memcpy(p, &h, 2);
}

/* rows of random blocks: every bit pattern of the levels, scales of a
 * realistic size */
static uint8_t *random_matrix(byoai_type t, uint64_t k, uint64_t rows, uint64_t *rs, uint64_t *row_bytes) {
    *row_bytes = byoai_type_row_size(t, (int64_t)k);
    uint8_t *m = malloc(*row_bytes * rows);
    for (uint64_t i = 0; i < *row_bytes * rows; i++) m[i] = (uint8_t)tu_rand_u64(rs);
    for (uint64_t r = 0; r < rows; r++) {
        uint8_t *row = m + r * *row_bytes;
        if (t == BYOAI_TYPE_Q8_0 || t == BYOAI_TYPE_Q4_0) {
            const size_t bs = t == BYOAI_TYPE_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
            for (uint64_t b = 0; b < k / 32; b++) put_half(row + b * bs, 0.001f + 0.01f * fabsf(tu_rand_float(rs)));
        } else if (t == BYOAI_TYPE_Q4_K) {
            block_q4_K *b = (block_q4_K *)row;
            for (uint64_t s = 0; s < k / 256; s++) {
                put_half(&b[s].d, 0.0005f + 0.001f * fabsf(tu_rand_float(rs)));
                put_half(&b[s].dmin, 0.0005f + 0.001f * fabsf(tu_rand_float(rs)));
            }
        } else if (t == BYOAI_TYPE_Q6_K) {
            block_q6_K *b = (block_q6_K *)row;
            for (uint64_t s = 0; s < k / 256; s++) put_half(&b[s].d, 0.0001f + 0.0002f * fabsf(tu_rand_float(rs)));
        }
    }
    return m;
}

static byoai_packed pack(byoai_type t, const uint8_t *src, uint64_t row_bytes, uint64_t k, uint64_t rows) {
    byoai_packed p;
    assert_true(byoai_pack_shape(t, k, rows, &p));
    assert_int_equal(p.tile_bytes, row_bytes * BYOAI_TILE_ROWS); /* same size as the rows it replaces */
    p.data = byoai_aligned_alloc(64, p.n_tiles * p.tile_bytes);
    for (uint64_t tl = 0; tl < p.n_tiles; tl++) byoai_pack_tile(&p, src, row_bytes, tl);
    return p;
}

/* packed rows dequantize to what the file's rows dequantize to */
static void test_layout(void **state) {
    (void)state;
    uint64_t rs = 11;
    const uint64_t k = 512, rows = 37;
    float *a = malloc(k * sizeof(float)), *b = malloc(k * sizeof(float));
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        uint64_t rb;
        uint8_t *m = random_matrix(TYPES[ti], k, rows, &rs, &rb);
        byoai_packed p = pack(TYPES[ti], m, rb, k, rows);
        for (uint64_t r = 0; r < rows; r++) {
            assert_int_equal(byoai_dequantize_row(TYPES[ti], m + r * rb, a, (int64_t)k), 0);
            byoai_packed_dequantize_row(&p, r, b);
            for (uint64_t i = 0; i < k; i++)
                if (fabsf(a[i] - b[i]) > 1e-6f * fabsf(a[i]) + 1e-12f)
                    fail_msg("%s row %llu col %llu: %g vs %g", byoai_type_name(TYPES[ti]), (unsigned long long)r,
                             (unsigned long long)i, (double)a[i], (double)b[i]);
        }
        free(p.data);
        free(m);
    }
    byoai_packed q;
    assert_false(byoai_pack_shape(BYOAI_TYPE_Q4_K, 96, 16, &q)); /* not a multiple of 256 */
    assert_false(byoai_pack_shape(BYOAI_TYPE_F32, 64, 16, &q));
    free(a);
    free(b);
}

typedef struct {
    byoai_act a;
    float *x;
} acts;

static void act_alloc(acts *A, uint32_t n, uint32_t k) {
    const uint32_t n16 = (n + 15) / 16 * 16;
    A->a = (byoai_act){.n = n, .k = k, .stride = (k + 63) / 64 * 64};
    A->a.q = byoai_aligned_alloc(64, n16 * A->a.stride);
    A->a.d = malloc(n * k / 32 * sizeof(float));
    A->a.s = malloc(n * k / 32 * sizeof(float));
    A->a.a32 = malloc(n * k / 32 * sizeof(int32_t));
    A->a.a16 = malloc(n * k / 16 * sizeof(int32_t));
    A->a.dt = malloc(n16 * k / 32 * sizeof(float));
    A->a.st = malloc(n16 * k / 32 * sizeof(float));
    A->x = malloc((size_t)n * k * sizeof(float));
    memset(A->a.q, 0x55, n16 * A->a.stride); /* padding must be cleared by byoai_act_pad */
}

static void act_free(acts *A) {
    free(A->a.q);
    free(A->a.d);
    free(A->a.s);
    free(A->a.a32);
    free(A->a.a16);
    free(A->a.dt);
    free(A->a.st);
    free(A->x);
}

/* every level's activation quantizer equals the scalar one exactly */
static void test_act_quant(void **state) {
    (void)state;
    const uint32_t n = 5, k = 1024;
    uint64_t rs = 3;
    acts R, S;
    act_alloc(&R, n, k);
    act_alloc(&S, n, k);
    for (uint32_t i = 0; i < n * k; i++) R.x[i] = gauss(&rs) * (i % 97 == 0 ? 40.0f : 1.0f);
    for (uint32_t i = 64; i < 96; i++) R.x[i] = 0; /* an all-zero block */
    R.x[200] = 127.5f / 127.0f * 3.0f;
    byoai_act_quantize_rows(byoai_packed_kernels_scalar(), R.x, k, 0, n, &R.a);
    for (size_t l = 1; l < N_LEVELS; l++) {
        const byoai_packed_kernels *pk = byoai_packed_kernels_get(LEVELS[l]);
        if (!pk) continue;
        byoai_act_quantize_rows(pk, R.x, k, 0, n, &S.a);
        for (uint32_t t = 0; t < n; t++)
            assert_memory_equal(R.a.q + t * R.a.stride, S.a.q + t * S.a.stride, k);
        assert_memory_equal(R.a.d, S.a.d, n * k / 32 * sizeof(float));
        assert_memory_equal(R.a.s, S.a.s, n * k / 32 * sizeof(float));
        assert_memory_equal(R.a.a32, S.a.a32, n * k / 32 * sizeof(int32_t));
        assert_memory_equal(R.a.a16, S.a.a16, n * k / 16 * sizeof(int32_t));
        assert_memory_equal(R.a.dt, S.a.dt, n * k / 32 * sizeof(float));
        assert_memory_equal(R.a.st, S.a.st, n * k / 32 * sizeof(float));
    }
    act_free(&R);
    act_free(&S);
}

/* y = W . dequant(act) in double, and sum |w| |a| for the tolerance */
static void reference(const float *W, uint64_t k, uint64_t rows, const byoai_act *a, double *y, double *mag) {
    float *deq = malloc(k * sizeof(float));
    for (uint32_t t = 0; t < a->n; t++) {
        for (uint64_t i = 0; i < k; i++) deq[i] = a->d[t * k / 32 + i / 32] * a->q[t * a->stride + i];
        for (uint64_t r = 0; r < rows; r++) {
            double s = 0, m = 0;
            for (uint64_t i = 0; i < k; i++) {
                s += (double)W[r * k + i] * deq[i];
                m += fabs((double)W[r * k + i] * deq[i]);
            }
            y[t * rows + r] = s;
            mag[t * rows + r] = m;
        }
    }
    free(deq);
}

static void check_kernel(const char *level, const char *which, byoai_packed_fn fn, const byoai_packed *p,
                         const acts *A, const double *ref, const double *mag) {
    const uint64_t rows = p->rows;
    const size_t ldy = rows + 3; /* a wider output: columns past rows stay untouched */
    float *y = malloc(A->a.n * ldy * sizeof(float));
    for (size_t i = 0; i < A->a.n * ldy; i++) y[i] = 12345.0f;
    void *scratch = byoai_aligned_alloc(64, BYOAI_PACK_SCRATCH(p->k));
    /* two calls over split tile ranges, as the work items of threads */
    const uint64_t mid = p->n_tiles / 2;
    fn(p, 0, mid, &A->a, y, ldy, scratch);
    fn(p, mid, p->n_tiles, &A->a, y, ldy, scratch);
    for (uint32_t t = 0; t < A->a.n; t++) {
        for (uint64_t r = 0; r < rows; r++) {
            const double got = y[t * ldy + r], want = ref[t * rows + r], tol = 2e-5 * mag[t * rows + r] + 1e-20;
            if (!(fabs(got - want) <= tol))
                fail_msg("%s %s %s n=%u: token %u row %llu: %.9g, want %.9g (tol %.3g)", level, which,
                         byoai_type_name(p->type), A->a.n, t, (unsigned long long)r, got, want, tol);
        }
        for (uint64_t r = rows; r < ldy; r++) assert_true(y[t * ldy + r] == 12345.0f);
    }
    free(scratch);
    free(y);
}

static void test_kernels(void **state) {
    (void)state;
    static const uint32_t NS[] = {1, 2, 3, 7, 8, 9, 16, 17, 31, 33, 64};
    uint64_t rs = 5;
    const uint64_t rows = 45;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const byoai_type ty = TYPES[ti];
        const uint64_t k = ty == BYOAI_TYPE_Q4_K || ty == BYOAI_TYPE_Q6_K ? 768 : 352;
        uint64_t rb;
        uint8_t *m = random_matrix(ty, k, rows, &rs, &rb);
        byoai_packed p = pack(ty, m, rb, k, rows);
        float *W = malloc(rows * k * sizeof(float));
        for (uint64_t r = 0; r < rows; r++) byoai_dequantize_row(ty, m + r * rb, W + r * k, (int64_t)k);
        for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++) {
            const uint32_t n = NS[ni];
            acts A;
            act_alloc(&A, n, (uint32_t)k);
            for (size_t i = 0; i < (size_t)n * k; i++) A.x[i] = gauss(&rs) * (i % 61 == 0 ? 30.0f : 1.0f);
            byoai_act_quantize_rows(byoai_packed_kernels_scalar(), A.x, (uint32_t)k, 0, n, &A.a);
            byoai_act_pad(&A.a);
            double *ref = malloc(n * rows * sizeof(double)), *mag = malloc(n * rows * sizeof(double));
            reference(W, k, rows, &A.a, ref, mag);
            for (size_t l = 0; l < N_LEVELS; l++) {
                const byoai_packed_kernels *pk = byoai_packed_kernels_get(LEVELS[l]);
                if (!pk) continue;
                if (pk->small[ty]) check_kernel(LEVELS[l], "small", pk->small[ty], &p, &A, ref, mag);
                if (pk->large[ty]) check_kernel(LEVELS[l], "large", pk->large[ty], &p, &A, ref, mag);
            }
            free(ref);
            free(mag);
            act_free(&A);
        }
        free(W);
        free(p.data);
        free(m);
    }
}

/* which levels ran, for the log */
static void test_levels(void **state) {
    (void)state;
    for (size_t l = 0; l < N_LEVELS; l++) {
        const byoai_packed_kernels *pk = byoai_packed_kernels_get(LEVELS[l]);
        printf("packed kernels %-6s: %s\n", LEVELS[l], pk ? "tested" : "not available here");
    }
    assert_non_null(byoai_packed_kernels_get("scalar"));
    assert_null(byoai_packed_kernels_get("nonsense"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_act_quant),
        cmocka_unit_test(test_kernels),
        cmocka_unit_test(test_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
