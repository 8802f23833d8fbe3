/* Quant types and kernels: float16/bfloat16 conversions, hand-made blocks
 * of every type (layout), quantize -> dequantize accuracy, quantized dot
 * accuracy, and every SIMD level against the scalar reference. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* the weight types with a dot product, and their round-trip error bounds
 * (RMSE / RMS of the input on near-gaussian data; measured values are in
 * docs/quantization.md, the bounds leave ~10% headroom) */
static const struct {
    byoai_type t;
    double rmse;
} TYPES[] = {
    {BYOAI_TYPE_Q4_0, 0.083}, {BYOAI_TYPE_Q4_1, 0.075}, {BYOAI_TYPE_Q5_0, 0.041}, {BYOAI_TYPE_Q5_1, 0.036},
    {BYOAI_TYPE_Q8_0, 0.0055}, {BYOAI_TYPE_Q2_K, 0.285}, {BYOAI_TYPE_Q3_K, 0.152}, {BYOAI_TYPE_Q4_K, 0.075},
    {BYOAI_TYPE_Q5_K, 0.037}, {BYOAI_TYPE_Q6_K, 0.018},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static float gauss(uint64_t *rs) { return (tu_rand_float(rs) + tu_rand_float(rs) + tu_rand_float(rs)) * 0.6f; }

static float h2f(uint16_t h) { return byoai_fp16_to_fp32(h); }
static uint16_t f2h(float f) { return byoai_fp32_to_fp16(f); }

/* ---- float16 / bfloat16 -------------------------------------------------- */

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) static uint16_t hw_f2h(float f) { return (uint16_t)_cvtss_sh(f, 0); }
__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) { return _cvtsh_ss(h); }
#endif

static void test_fp16(void **state) {
    (void)state;
    /* every half: to float and back is the identity (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = h2f((uint16_t)h);
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) {
            assert_true(isnan(f));
            assert_true(isnan(h2f(f2h(f))));
        } else {
            assert_int_equal(f2h(f), h);
        }
    }
    /* known values */
    assert_true(h2f(0x3C00) == 1.0f);
    assert_true(h2f(0xC000) == -2.0f);
    assert_true(h2f(0x7BFF) == 65504.0f);
    assert_true(h2f(0x0001) == ldexpf(1, -24)); /* smallest subnormal */
    assert_true(h2f(0x03FF) == ldexpf(1023, -24));
    assert_true(h2f(0x0400) == ldexpf(1, -14)); /* smallest normal */
    assert_true(isinf(h2f(0x7C00)) && h2f(0x7C00) > 0);
    assert_true(isinf(h2f(0xFC00)) && h2f(0xFC00) < 0);
    assert_int_equal(fbits(h2f(0x8000)), 0x80000000u);
    /* round to nearest even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 */
    assert_int_equal(f2h(1.0f + ldexpf(1, -11)), 0x3C00);
    assert_int_equal(f2h(1.0f + 3 * ldexpf(1, -11)), 0x3C02);
    assert_int_equal(f2h(1.0f + ldexpf(1, -11) + ldexpf(1, -20)), 0x3C01);
    assert_int_equal(f2h(65504.0f), 0x7BFF);
    assert_int_equal(f2h(65519.0f), 0x7BFF); /* below the halfway point to 65536 */
    assert_int_equal(f2h(65520.0f), 0x7C00); /* halfway rounds to even = inf */
    assert_int_equal(f2h(1e10f), 0x7C00);
    assert_int_equal(f2h(-1e10f), 0xFC00);
    assert_int_equal(f2h(ldexpf(1, -25)), 0x0000);              /* halfway to the smallest subnormal: even */
    assert_int_equal(f2h(ldexpf(1.5f, -25)), 0x0001);           /* above halfway */
    assert_int_equal(f2h(ldexpf(3, -25)), 0x0002);              /* 1.5 subnormal units: to even 2 */
    assert_int_equal(f2h(ldexpf(1023.5f, -24)), 0x0400);        /* rounds up into the normals */
    assert_int_equal(f2h(-ldexpf(1, -30)), 0x8000);             /* underflow keeps the sign */
    assert_int_equal(f2h(INFINITY), 0x7C00);
    assert_true((f2h(NAN) & 0x7C00) == 0x7C00 && (f2h(NAN) & 0x3FF));
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("f16c")) {
        /* against the hardware conversion (round to nearest even) */
        for (uint32_t h = 0; h < 65536; h++) {
            float a = h2f((uint16_t)h), b = hw_h2f((uint16_t)h);
            assert_true(fbits(a) == fbits(b) || (isnan(a) && isnan(b)));
        }
        uint64_t rs = 1;
        for (int i = 0; i < 2000000; i++) {
            /* random bit patterns over the whole float range, and floats
             * near the half range (many exact halfway points) */
            uint32_t u = (uint32_t)tu_rand_u64(&rs);
            if (i & 1) u = (u & 0x80FFFFFFu) | ((uint32_t)(100 + (u >> 24) % 45) << 23);
            float f = bitsf(u);
            if (isnan(f)) continue;
            assert_int_equal(f2h(f), hw_f2h(f));
        }
    }
#endif
}

static void test_bf16(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = byoai_bf16_to_fp32((uint16_t)h);
        assert_int_equal(fbits(f), h << 16);
        if (isnan(f)) assert_true(isnan(byoai_bf16_to_fp32(byoai_fp32_to_bf16(f))));
        else assert_int_equal(byoai_fp32_to_bf16(f), h);
    }
    assert_int_equal(byoai_fp32_to_bf16(bitsf(0x3F808000u)), 0x3F80); /* halfway: to even */
    assert_int_equal(byoai_fp32_to_bf16(bitsf(0x3F818000u)), 0x3F82); /* halfway: to even (up) */
    assert_int_equal(byoai_fp32_to_bf16(bitsf(0x3F808001u)), 0x3F81);
    assert_int_equal(byoai_fp32_to_bf16(bitsf(0x7F7FFFFFu)), 0x7F80); /* FLT_MAX rounds to inf */
    assert_int_equal(byoai_fp32_to_bf16(INFINITY), 0x7F80);
    assert_int_equal(byoai_fp32_to_bf16(-INFINITY), 0xFF80);
    assert_int_equal(byoai_fp32_to_bf16(bitsf(0x00018000u)), 0x0002); /* subnormal halfway, to even */
    /* a NaN whose payload is only in the low bits must stay a NaN */
    assert_true(isnan(byoai_bf16_to_fp32(byoai_fp32_to_bf16(bitsf(0x7F800001u)))));
    assert_true(isnan(byoai_bf16_to_fp32(byoai_fp32_to_bf16(bitsf(0xFFC00000u)))));
}

/* ---- hand-made blocks: the layout, element by element -------------------- */

static void dequant(byoai_type t, const void *blk, float *out, int64_t n) {
    assert_int_equal(byoai_dequantize_row(t, blk, out, n), 0);
}

static void test_known_legacy(void **state) {
    (void)state;
    float y[32];
    { /* Q4_0: value = (q - 8) * d; element j low nibble of qs[j], 16 + j high */
        block_q4_0 b = {.d = 0x3C00};
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
        dequant(BYOAI_TYPE_Q4_0, &b, y, 32);
        for (int j = 0; j < 16; j++) {
            assert_true(y[j] == (float)(j - 8));
            assert_true(y[16 + j] == (float)(7 - j));
        }
    }
    { /* Q4_1: value = q * d + m */
        block_q4_1 b = {.d = f2h(0.5f), .m = f2h(-3.0f)};
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (3 << 4));
        dequant(BYOAI_TYPE_Q4_1, &b, y, 32);
        for (int j = 0; j < 16; j++) {
            assert_true(y[j] == 0.5f * j - 3.0f);
            assert_true(y[16 + j] == -1.5f);
        }
    }
    { /* Q5_0: bit j of qh (little-endian u32) is the fifth bit of element j */
        block_q5_0 b = {.d = f2h(2.0f), .qh = {0x01, 0x80, 0x00, 0x80}};
        memset(b.qs, 0x00, sizeof b.qs);
        b.qs[0] = 0x3F;  /* element 0: 0xF | 16 = 31 -> 15; element 16: 3 -> -13 */
        b.qs[15] = 0x02; /* element 15: 2 | 16 (qh bit 15) = 18 -> 2; element 31: 0 | 16 -> 0 */
        dequant(BYOAI_TYPE_Q5_0, &b, y, 32);
        assert_true(y[0] == 30.0f);
        assert_true(y[16] == -26.0f);
        assert_true(y[15] == 4.0f);
        assert_true(y[31] == 0.0f);
        assert_true(y[1] == -32.0f);
    }
    { /* Q5_1: value = q * d + m */
        block_q5_1 b = {.d = f2h(1.0f), .m = f2h(0.25f), .qh = {0x00, 0x00, 0x02, 0x00}};
        memset(b.qs, 0, sizeof b.qs);
        b.qs[1] = 0x70; /* element 17: 7 | 16 (qh bit 17) = 23 */
        dequant(BYOAI_TYPE_Q5_1, &b, y, 32);
        assert_true(y[17] == 23.25f);
        assert_true(y[1] == 0.25f);
    }
    { /* Q8_0 */
        block_q8_0 b = {.d = f2h(0.5f)};
        for (int j = 0; j < 32; j++) b.qs[j] = (int8_t)(j * 8 - 128);
        dequant(BYOAI_TYPE_Q8_0, &b, y, 32);
        for (int j = 0; j < 32; j++) assert_true(y[j] == 0.5f * (j * 8 - 128));
    }
    { /* Q8_1 activations: s = d * sum(q) */
        float x[32];
        for (int j = 0; j < 32; j++) x[j] = j == 5 ? 127.0f : j == 6 ? -63.0f : 1.0f;
        block_q8_1 b;
        assert_int_equal(byoai_quantize_row(BYOAI_TYPE_Q8_1, x, &b, 32), 0);
        assert_true(h2f(b.d) == 1.0f);
        assert_int_equal(b.qs[5], 127);
        assert_int_equal(b.qs[6], -63);
        assert_true(h2f(b.s) == 127.0f - 63.0f + 30.0f);
    }
}

static void test_known_q2_k(void **state) {
    (void)state;
    block_q2_K b;
    memset(&b, 0, sizeof b);
    b.d = f2h(1.0f);
    b.dmin = f2h(1.0f);
    b.scales[13] = 0x3 | (0x2 << 4); /* sub-block 13 (elements 208..223): scale 3, min 2 */
    b.qs[50] = 0x30; /* element 210 = 128 + 2*32 + 18: byte 32 + 18, bits 4..5 */
    float y[256];
    dequant(BYOAI_TYPE_Q2_K, &b, y, 256);
    for (int e = 0; e < 256; e++) {
        float want = e == 210 ? 3 * 3 - 2 : (e >= 208 && e < 224) ? -2 : 0;
        assert_true(y[e] == want);
    }
}

static void test_known_q3_k(void **state) {
    (void)state;
    block_q3_K b;
    memset(&b, 0, sizeof b);
    b.d = f2h(0.5f);
    /* every scale stored as 32 (= 0) except sub-block 9 = 37 (= +5):
     * the high 2 bits (0b10) of all 16 sit in bytes 8..11 -> 0xAA each;
     * scale 9's low nibble is the high nibble of byte 1 */
    memset(b.scales + 8, 0xAA, 4);
    b.scales[1] = 0x50;
    b.scales[15 - 8] |= 0xF0; /* scale 15: low nibble 15 -> stored 47 = +15 */
    /* element 150 = 128 + 0*32 + 22: q2 in byte 32 + 22 bits 0..1, high bit
     * in hmask[22] bit 4 */
    b.qs[54] = 0x02 | (0x1 << 6); /* elements 150 (q2 = 2) and 246 (q2 = 1) */
    b.qs[55] = 0x01;              /* element 151: q2 = 1, no high bit */
    b.hmask[22] = 0x10;           /* element 150 has its high bit */
    float y[256];
    dequant(BYOAI_TYPE_Q3_K, &b, y, 256);
    for (int e = 0; e < 256; e++) {
        float want = 0;
        if (e >= 144 && e < 160) want = e == 150 ? 0.5f * 5 * 2 : e == 151 ? 0.5f * 5 * -3 : 0.5f * 5 * -4;
        if (e >= 240) want = e == 246 ? 0.5f * 15 * -3 : 0.5f * 15 * -4;
        assert_true(y[e] == want);
    }
}

/* Q4_K / Q5_K share the 12-byte scale block: sub-block 1 scale 7 min 3 (low
 * path), sub-block 5 scale 42 = 0b101010, min 21 = 0b010101 (high path). */
static void k4_scales(uint8_t *s) {
    memset(s, 0, 12);
    s[1] = 0x80 | 7;  /* high bits of scale 5 (0b10) | scale 1 */
    s[5] = 0x40 | 3;  /* high bits of min 5 (0b01) | min 1 */
    s[9] = 0x5A;      /* min 5 low nibble 5, scale 5 low nibble 0xA */
}

static void test_known_q4_k(void **state) {
    (void)state;
    block_q4_K b;
    memset(&b, 0, sizeof b);
    b.d = f2h(1.0f);
    b.dmin = f2h(0.5f);
    k4_scales(b.scales);
    b.qs[67] = 0x90; /* element 163 = 2*64 + 32 + 3: high nibble of byte 64 + 3 */
    b.qs[8] = 0xF0;  /* element 40 = 0*64 + 32 + 8: high nibble of byte 8 */
    float y[256];
    dequant(BYOAI_TYPE_Q4_K, &b, y, 256);
    for (int e = 0; e < 256; e++) {
        float want = 0;
        if (e >= 32 && e < 64) want = e == 40 ? 7 * 15 - 1.5f : -1.5f;
        if (e >= 160 && e < 192) want = e == 163 ? 42 * 9 - 10.5f : -10.5f;
        assert_true(y[e] == want);
    }
    uint8_t sc, m;
    byoai_k4_scale_min(5, b.scales, &sc, &m);
    assert_int_equal(sc, 42);
    assert_int_equal(m, 21);
}

static void test_known_q5_k(void **state) {
    (void)state;
    block_q5_K b;
    memset(&b, 0, sizeof b);
    b.d = f2h(1.0f);
    b.dmin = f2h(0.5f);
    k4_scales(b.scales);
    b.qs[67] = 0x90;
    b.qs[8] = 0xF0;
    b.qh[3] = 0x20; /* element 163: bit 163 / 32 = 5 of qh[163 % 32 = 3] */
    b.qh[8] = 0x02; /* element 40: bit 1 of qh[8] */
    float y[256];
    dequant(BYOAI_TYPE_Q5_K, &b, y, 256);
    for (int e = 0; e < 256; e++) {
        float want = 0;
        if (e >= 32 && e < 64) want = e == 40 ? 7 * 31 - 1.5f : -1.5f;
        if (e >= 160 && e < 192) want = e == 163 ? 42 * 25 - 10.5f : -10.5f;
        assert_true(y[e] == want);
    }
}

static void test_known_q6_k(void **state) {
    (void)state;
    block_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = f2h(0.25f);
    b.scales[11] = -3;
    b.scales[15] = 100;
    /* element 180 = 128 + 1*32 + 20: low nibble of ql[64 + 32 + 20],
     * top bits in qh[32 + 20] bits 2..3; element 244 = 128 + 3*32 + 20:
     * high nibble of the same ql byte, qh bits 6..7 */
    b.ql[116] = 0xA7;
    b.qh[52] = 0x0C | (0x1 << 6);
    float y[256];
    dequant(BYOAI_TYPE_Q6_K, &b, y, 256);
    for (int e = 0; e < 256; e++) {
        float want = 0;
        if (e >= 176 && e < 192) want = e == 180 ? 0.25f * -3 * (55 - 32) : 0.25f * -3 * -32;
        if (e >= 240) want = e == 244 ? 0.25f * 100 * (26 - 32) : 0.25f * 100 * -32;
        assert_true(y[e] == want);
    }
}

static void test_known_q8_k(void **state) {
    (void)state;
    float x[256];
    for (int j = 0; j < 256; j++) x[j] = (float)(j % 16) - (j == 17 ? 200.0f : 0.0f);
    x[17] = -254.0f;
    block_q8_K b;
    assert_int_equal(byoai_quantize_row(BYOAI_TYPE_Q8_K, x, &b, 256), 0);
    assert_true(b.d == 2.0f);
    assert_int_equal(b.qs[17], -127);
    assert_int_equal(b.qs[3], 2);  /* 1.5 -> 2 (nearest even) */
    assert_int_equal(b.qs[5], 2);  /* 2.5 -> 2 */
    for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += b.qs[16 * j + l];
        assert_int_equal(b.bsums[j], s);
    }
}

/* ---- accuracy ------------------------------------------------------------ */

static void test_roundtrip_error(void **state) {
    (void)state;
    const int64_t n = 256 * 64;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    uint8_t *q = malloc((size_t)n * 2);
    uint64_t rs = 7;
    for (int64_t i = 0; i < n; i++) x[i] = gauss(&rs);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        byoai_type t = TYPES[ti].t;
        assert_int_equal(byoai_quantize_row(t, x, q, n), 0);
        dequant(t, q, y, n);
        double e = 0, s = 0;
        for (int64_t i = 0; i < n; i++) {
            e += (double)(y[i] - x[i]) * (y[i] - x[i]);
            s += (double)x[i] * x[i];
        }
        double rel = sqrt(e / s);
        print_message("%-5s relative RMSE %.5f (bound %.4f)\n", byoai_type_name(t), rel, TYPES[ti].rmse);
        assert_true(rel < TYPES[ti].rmse);
        /* scale invariance: tiny and large inputs quantize as well (within
         * float16 range of the block factors) */
        for (int k = 0; k < 2; k++) {
            float f = k ? 1000.0f : 0.1f;
            for (int64_t i = 0; i < 4096; i++) y[i] = x[i] * f;
            assert_int_equal(byoai_quantize_row(t, y, q, 4096), 0);
            float *z = malloc(sizeof(float) * 4096);
            dequant(t, q, z, 4096);
            double e2 = 0, s2 = 0;
            for (int64_t i = 0; i < 4096; i++) {
                e2 += (double)(z[i] - y[i]) * (z[i] - y[i]);
                s2 += (double)y[i] * y[i];
            }
            assert_true(sqrt(e2 / s2) < TYPES[ti].rmse * 1.2);
            free(z);
        }
        /* all zeros quantize exactly */
        memset(y, 0, sizeof(float) * 4096);
        assert_int_equal(byoai_quantize_row(t, y, q, 4096), 0);
        dequant(t, q, y, 4096);
        for (int i = 0; i < 4096; i++) assert_true(y[i] == 0.0f);
    }
    free(x);
    free(y);
    free(q);
}

/* dot(quantized weights, quantized activations) against the float dot of
 * the dequantized weights with the original activations */
static void test_dot_accuracy(void **state) {
    (void)state;
    const int64_t n = 4096;
    float *w = malloc(sizeof(float) * n), *wd = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n);
    uint8_t *qw = malloc((size_t)n * 2), *qa = malloc((size_t)n * 2);
    uint64_t rs = 11;
    const byoai_kernels *k = byoai_kernels_get(BYOAI_SIMD_SCALAR);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        byoai_type t = TYPES[ti].t, at = byoai_type_activation(t);
        for (int rep = 0; rep < 8; rep++) {
            for (int64_t i = 0; i < n; i++) {
                w[i] = gauss(&rs);
                a[i] = gauss(&rs) + 0.2f;
            }
            assert_int_equal(byoai_quantize_row(t, w, qw, n), 0);
            dequant(t, qw, wd, n);
            assert_int_equal(byoai_quantize_row(at, a, qa, n), 0);
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) {
                exact += (double)wd[i] * a[i];
                mag += fabs((double)wd[i] * a[i]);
            }
            float got;
            k->vec_dot[t](n, &got, qw, qa);
            /* activation rounding is at most 1/254 of each block's max */
            assert_true(fabs(got - exact) < 0.004 * mag);
        }
    }
    free(w);
    free(wd);
    free(a);
    free(qw);
    free(qa);
}

/* ---- SIMD levels against the scalar reference ---------------------------- */

/* offsets of the float16 factors in a block, kept finite in random blocks */
static void fix_factors(byoai_type t, uint8_t *blk, uint64_t *rs, float mag) {
    int offs[2], no = 0;
    switch (t) {
    case BYOAI_TYPE_Q4_0: case BYOAI_TYPE_Q5_0: case BYOAI_TYPE_Q8_0: offs[no++] = 0; break;
    case BYOAI_TYPE_Q4_1: case BYOAI_TYPE_Q5_1: case BYOAI_TYPE_Q4_K: case BYOAI_TYPE_Q5_K:
        offs[no++] = 0; offs[no++] = 2; break;
    case BYOAI_TYPE_Q2_K: offs[no++] = 80; offs[no++] = 82; break;
    case BYOAI_TYPE_Q3_K: offs[no++] = 108; break;
    case BYOAI_TYPE_Q6_K: offs[no++] = 208; break;
    default: break;
    }
    for (int i = 0; i < no; i++) {
        uint16_t h = f2h(tu_rand_float(rs) * mag);
        memcpy(blk + offs[i], &h, 2);
    }
}

static int n_levels(const byoai_kernels *lv[4]) {
    int c = 0;
    for (int l = BYOAI_SIMD_AVX2; l <= BYOAI_SIMD_NEON; l++) {
        lv[c] = byoai_kernels_get((byoai_simd_level)l);
        if (lv[c]) c++;
    }
    return c;
}

static void check_close(float simd, float ref, double mag, const char *what, byoai_type t, int64_t n,
                        const char *level) {
    double tol = 1e-5 * mag + 1e-30;
    if (!(fabs((double)simd - ref) <= tol)) {
        print_error("%s %s n=%lld (%s): simd %.9g scalar %.9g (sum|prod| %.6g)\n", what, byoai_type_name(t),
                    (long long)n, level, simd, ref, mag);
        fail();
    }
}

static void test_simd_dots(void **state) {
    (void)state;
    const byoai_kernels *sc = byoai_kernels_get(BYOAI_SIMD_SCALAR), *lv[4];
    int nl = n_levels(lv);
    print_message("cpu features: %s; SIMD levels tested: %d\n", byoai_cpu_features(), nl);
    const int64_t sizes[] = {256, 512, 768, 1280, 4096, 11008};
    const int64_t nmax = 11008;
    float *a = malloc(sizeof(float) * nmax), *wd = malloc(sizeof(float) * nmax), *ad = malloc(sizeof(float) * nmax);
    uint8_t *qw = malloc((size_t)nmax * 2), *qa = malloc((size_t)nmax * 2), *qa2 = malloc((size_t)nmax * 2);
    uint64_t rs = 3;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        byoai_type t = TYPES[ti].t, at = byoai_type_activation(t);
        const byoai_type_traits *tr = byoai_type_get(t);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            for (int kind = 0; kind < 6; kind++) {
                const int64_t n = sizes[si] - (kind == 5 ? sizes[si] - tr->block_size : 0); /* one block */
                const uint64_t bytes = byoai_type_row_size(t, n);
                /* weights: random bytes (every bit pattern) or all zeros */
                for (uint64_t i = 0; i < bytes; i++) qw[i] = kind == 4 ? 0 : (uint8_t)tu_rand_u64(&rs);
                if (kind != 4)
                    for (uint64_t b = 0; b < bytes / tr->type_size; b++)
                        fix_factors(t, qw + b * tr->type_size, &rs, kind == 2 ? 100.0f : 0.01f);
                /* activations: uniform, huge, tiny, zeros, one spike */
                for (int64_t i = 0; i < n; i++) {
                    float v = tu_rand_float(&rs);
                    a[i] = kind == 1 ? v * 1e4f : kind == 2 ? v * 1e-4f : kind == 3 ? 0.0f : v;
                }
                if (kind == 3) a[n / 3] = 5.0f;
                assert_int_equal(byoai_quantize_row(at, a, qa, n), 0);
                dequant(t, qw, wd, n);
                dequant(at, qa, ad, n);
                double mag = 0;
                for (int64_t i = 0; i < n; i++) mag += fabs((double)wd[i] * ad[i]);
                float ref;
                sc->vec_dot[t](n, &ref, qw, qa);
                for (int l = 0; l < nl; l++) {
                    /* activation quantizers: bit-exact */
                    lv[l]->quantize_act[at](a, qa2, n);
                    assert_memory_equal(qa, qa2, byoai_type_row_size(at, n));
                    float got;
                    lv[l]->vec_dot[t](n, &got, qw, qa);
                    check_close(got, ref, mag, "vec_dot", t, n, lv[l]->name);
                }
            }
        }
    }
    free(a);
    free(wd);
    free(ad);
    free(qw);
    free(qa);
    free(qa2);
}

static void test_simd_float_dots(void **state) {
    (void)state;
    const byoai_kernels *sc = byoai_kernels_get(BYOAI_SIMD_SCALAR), *lv[4];
    int nl = n_levels(lv);
    const byoai_type ft[] = {BYOAI_TYPE_F32, BYOAI_TYPE_F16, BYOAI_TYPE_BF16};
    float *w = malloc(sizeof(float) * 5000), *a = malloc(sizeof(float) * 5000), *wd = malloc(sizeof(float) * 5000);
    uint8_t *qw = malloc(4 * 5000);
    uint64_t rs = 5;
    for (int ti = 0; ti < 3; ti++) {
        for (int64_t n = 1; n < 5000; n = n * 3 + 1) {
            for (int64_t i = 0; i < n; i++) {
                w[i] = tu_rand_float(&rs);
                a[i] = tu_rand_float(&rs);
            }
            byoai_quantize_row(ft[ti], w, qw, n);
            dequant(ft[ti], qw, wd, n);
            double mag = 0;
            for (int64_t i = 0; i < n; i++) mag += fabs((double)wd[i] * a[i]);
            float ref;
            sc->vec_dot[ft[ti]](n, &ref, qw, a);
            for (int l = 0; l < nl; l++) {
                float got;
                lv[l]->vec_dot[ft[ti]](n, &got, qw, a);
                check_close(got, ref, mag, "vec_dot", ft[ti], n, lv[l]->name);
            }
        }
    }
    free(w);
    free(a);
    free(wd);
    free(qw);
}

/* activation quantizers with values that land exactly on .5 after scaling,
 * huge and tiny magnitudes, zeros: SIMD bit-exact with scalar */
static void test_simd_act_quant(void **state) {
    (void)state;
    const byoai_kernels *lv[4];
    int nl = n_levels(lv);
    const byoai_type at[] = {BYOAI_TYPE_Q8_0, BYOAI_TYPE_Q8_1, BYOAI_TYPE_Q8_K};
    const int64_t n = 2048;
    float *x = malloc(sizeof(float) * n);
    uint8_t *r = malloc((size_t)n * 2), *g = malloc((size_t)n * 2);
    uint64_t rs = 9;
    for (int kind = 0; kind < 6; kind++) {
        for (int64_t i = 0; i < n; i++) {
            float v = tu_rand_float(&rs);
            switch (kind) {
            case 0: x[i] = v; break;
            case 1: x[i] = (float)((int)(v * 254)) * 0.5f; break; /* many exact halves when max = 127 */
            case 2: x[i] = v * 3e30f; break;
            case 3: x[i] = v * 1e-30f; break;
            case 4: x[i] = 0; break;
            default: x[i] = (i % 7) ? 0 : v; break;
            }
        }
        if (kind == 1)
            for (int64_t i = 0; i < n; i += 32) x[i] = 127.0f;
        for (int ti = 0; ti < 3; ti++) {
            byoai_quantize_row(at[ti], x, r, n);
            for (int l = 0; l < nl; l++) {
                lv[l]->quantize_act[at[ti]](x, g, n);
                assert_memory_equal(r, g, byoai_type_row_size(at[ti], n));
            }
        }
    }
    free(x);
    free(r);
    free(g);
}

static void test_tables(void **state) {
    (void)state;
    const byoai_kernels *best = byoai_kernels_best();
    assert_non_null(best);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        byoai_type t = TYPES[ti].t;
        assert_true(byoai_type_can_compute(t));
        assert_true(byoai_type_can_quantize(t));
        assert_non_null(best->vec_dot[t]);
        assert_non_null(best->quantize_act[byoai_type_activation(t)]);
    }
    assert_int_equal(byoai_type_activation(BYOAI_TYPE_Q4_1), BYOAI_TYPE_Q8_0);
    assert_int_equal(byoai_type_activation(BYOAI_TYPE_Q5_0), BYOAI_TYPE_Q8_0);
    assert_int_equal(byoai_type_activation(BYOAI_TYPE_Q6_K), BYOAI_TYPE_Q8_K);
    assert_false(byoai_type_can_compute(BYOAI_TYPE_Q8_K));
    assert_false(byoai_type_can_compute(BYOAI_TYPE_IQ2_XXS));
    float f[32];
    assert_int_equal(byoai_dequantize_row(BYOAI_TYPE_IQ4_NL, f, f, 32), BYOAI_EUNSUPPORTED);
    assert_int_equal(byoai_quantize_row(BYOAI_TYPE_Q4_K, f, f, 32), BYOAI_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_known_legacy),
        cmocka_unit_test(test_known_q2_k),
        cmocka_unit_test(test_known_q3_k),
        cmocka_unit_test(test_known_q4_k),
        cmocka_unit_test(test_known_q5_k),
        cmocka_unit_test(test_known_q6_k),
        cmocka_unit_test(test_known_q8_k),
        cmocka_unit_test(test_roundtrip_error),
        cmocka_unit_test(test_dot_accuracy),
        cmocka_unit_test(test_simd_dots),
        cmocka_unit_test(test_simd_float_dots),
        cmocka_unit_test(test_simd_act_quant),
        cmocka_unit_test(test_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
