/*
 * AVX2 kernels for packed weights (layout in infer/packed.h), for CPUs
 * without AVX-512.
 *
 * A 256-bit vector holds 4 levels of 8 rows, so a 16-row tile is two
 * halves. vpmaddubsw(levels u8, broadcast 4 activations s8) gives each row
 * two int16 pair sums, which are widened to int32 by vpmaddwd with ones.
 * The int16 sums must not saturate: nibble levels (< 16) may add 8 of them
 * before widening (8 * 2 * 15 * 127 < 32767), Q6_K levels (< 64) two.
 * Q8_0 levels are signed, so the sign moves to the activation
 * (|w| . sign(a, w): at most 2 * 128 * 127 per pair) and every product is
 * widened at once.
 *
 * Tokens: one token reads the whole tile once (both halves, the
 * matrix-vector product of generation); more tokens take one half at a
 * time, T <= 4 tokens per pass, so accumulators fit the 16 registers.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "infer/packed.h"

#define MAXT 4
#define INLINE static inline __attribute__((always_inline))
#define PF_AHEAD 8192 /* as in avx512_packed.c */

INLINE __m256i ld(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
INLINE __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}
INLINE __m256 h8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
INLINE __m256i widen(__m256i p16) { return _mm256_madd_epi16(p16, _mm256_set1_epi16(1)); }

typedef struct {
    const int8_t *q;
    const float *d, *s;
    const int32_t *a32, *a16;
} tok;

INLINE tok tok_at(const byoai_act *a, uint32_t t) {
    const size_t nc = a->k / 32;
    return (tok){a->q + (size_t)t * a->stride, a->d + t * nc, a->s + t * nc, a->a32 + t * nc, a->a16 + t * 2 * nc};
}

INLINE void prefetch_chunk(const uint8_t *lv, int bytes, const int T) {
    if (T != 1) return;
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)lv + PF_AHEAD + o, _MM_HINT_T0);
}

INLINE void store8(float *y, __m256 v, int nr) {
    if (nr >= 8) {
        _mm256_storeu_ps(y, v);
    } else if (nr > 0) {
        float b[8];
        _mm256_storeu_ps(b, v);
        memcpy(y, b, (size_t)nr * sizeof(float));
    }
}

/* The half-tile kernels below: rows 8 h0 .. 8 (h0 + H) - 1 of the tile
 * (H = 2: both halves, H = 1: half h0) for tokens t0 .. t0 + T - 1. */

/* ---- Q8_0 ------------------------------------------------------------------- */
INLINE void q8_0_part(const byoai_packed *w, const uint8_t *tile, const byoai_act *a, uint32_t t0, const int T,
                      const int H, int h0, float *y, size_t ldy, int nr) {
    const uint64_t nc = w->k / 32;
    const uint8_t *meta = tile + w->levels_bytes;
    tok tk[MAXT];
    __m256 f[2][MAXT];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        tk[t] = tok_at(a, t0 + (uint32_t)t);
        for (int h = 0; h < H; h++) f[h][t] = _mm256_setzero_ps();
    }
    for (uint64_t c = 0; c < nc; c++) {
        const uint8_t *lv = tile + c * 512;
        prefetch_chunk(lv, 512, T);
        __m256i acc[2][MAXT];
#pragma GCC unroll 2
        for (int h = 0; h < H; h++)
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) acc[h][t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
#pragma GCC unroll 2
            for (int h = 0; h < H; h++) {
                const __m256i v = ld(lv + 64 * j + 32 * (h0 + h)), av = _mm256_abs_epi8(v);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const __m256i p = _mm256_maddubs_epi16(av, _mm256_sign_epi8(bcast4(tk[t].q + 32 * c + 4 * j), v));
                    acc[h][t] = _mm256_add_epi32(acc[h][t], widen(p));
                }
            }
        }
#pragma GCC unroll 2
        for (int h = 0; h < H; h++) {
            const __m256 sw = h8(meta + 32 * c + 16 * (h0 + h));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                f[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[h][t]), _mm256_mul_ps(sw, _mm256_set1_ps(tk[t].d[c])),
                                          f[h][t]);
        }
    }
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++) store8(y + (size_t)(t0 + (uint32_t)t) * ldy + 8 * (h0 + h), f[h][t], nr - 8 * (h0 + h));
}

/* ---- nibble chunks (Q4_0, Q4_K) --------------------------------------------------- */
/* acc[h][t] = int32 dot of the chunk's rows (half h0 + h) with token t */
INLINE void nib_chunk(const uint8_t *lv, const tok *tk, uint64_t off, const int T, const int H, int h0,
                      __m256i acc[2][MAXT]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i s16[2][MAXT];
#pragma GCC unroll 2
    for (int h = 0; h < H; h++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) s16[h][t] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
#pragma GCC unroll 2
        for (int h = 0; h < H; h++) {
            const __m256i v = ld(lv + 64 * j + 32 * (h0 + h));
            const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                s16[h][t] = _mm256_add_epi16(s16[h][t], _mm256_maddubs_epi16(lo, bcast4(tk[t].q + off + 4 * j)));
                s16[h][t] = _mm256_add_epi16(s16[h][t], _mm256_maddubs_epi16(hi, bcast4(tk[t].q + off + 16 + 4 * j)));
            }
        }
    }
#pragma GCC unroll 2
    for (int h = 0; h < H; h++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[h][t] = widen(s16[h][t]);
}

INLINE void q4_0_part(const byoai_packed *w, const uint8_t *tile, const byoai_act *a, uint32_t t0, const int T,
                      const int H, int h0, float *y, size_t ldy, int nr) {
    const uint64_t nc = w->k / 32;
    const uint8_t *meta = tile + w->levels_bytes;
    tok tk[MAXT];
    __m256 f[2][MAXT];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        tk[t] = tok_at(a, t0 + (uint32_t)t);
        for (int h = 0; h < H; h++) f[h][t] = _mm256_setzero_ps();
    }
    for (uint64_t c = 0; c < nc; c++) {
        __m256i acc[2][MAXT];
        prefetch_chunk(tile + c * 256, 256, T);
        nib_chunk(tile + c * 256, tk, 32 * c, T, H, h0, acc);
#pragma GCC unroll 2
        for (int h = 0; h < H; h++) {
            const __m256 sw = h8(meta + 32 * c + 16 * (h0 + h));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const __m256i i = _mm256_sub_epi32(acc[h][t], _mm256_set1_epi32(8 * tk[t].a32[c]));
                f[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(sw, _mm256_set1_ps(tk[t].d[c])), f[h][t]);
            }
        }
    }
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++) store8(y + (size_t)(t0 + (uint32_t)t) * ldy + 8 * (h0 + h), f[h][t], nr - 8 * (h0 + h));
}

/* 8 unsigned bytes -> 8 floats */
INLINE __m256 u8f(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
INLINE __m128i ld16(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }

/* Q4_K scales and mins of sub-block j for the 16 rows (one per byte lane),
 * from the 12 transposed scale bytes (byoai_k4_scale_min) */
INLINE void k4_scales16(const uint8_t *sb, int j, __m128i *sc, __m128i *mn) {
    const __m128i m6 = _mm_set1_epi8(63), m4 = _mm_set1_epi8(0x0F), m2 = _mm_set1_epi8(3);
    if (j < 4) {
        *sc = _mm_and_si128(ld16(sb + 16 * j), m6);
        *mn = _mm_and_si128(ld16(sb + 16 * (j + 4)), m6);
    } else {
        const __m128i q8 = ld16(sb + 16 * (j + 4));
        const __m128i top_s = _mm_and_si128(_mm_srli_epi16(ld16(sb + 16 * (j - 4)), 6), m2);
        const __m128i top_m = _mm_and_si128(_mm_srli_epi16(ld16(sb + 16 * j), 6), m2);
        *sc = _mm_or_si128(_mm_and_si128(q8, m4), _mm_slli_epi16(top_s, 4));
        *mn = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(q8, 4), m4), _mm_slli_epi16(top_m, 4));
    }
}

INLINE void q4_k_part(const byoai_packed *w, const uint8_t *tile, const byoai_act *a, uint32_t t0, const int T,
                      const int H, int h0, float *y, size_t ldy, int nr) {
    const uint64_t nsb = w->k / QK_K;
    tok tk[MAXT];
    __m256 f[2][MAXT];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        tk[t] = tok_at(a, t0 + (uint32_t)t);
        for (int h = 0; h < H; h++) f[h][t] = _mm256_setzero_ps();
    }
    for (uint64_t s = 0; s < nsb; s++) {
        const uint8_t *m = tile + w->levels_bytes + s * 256;
        __m256 d[2], dmin[2];
        for (int h = 0; h < H; h++) d[h] = h8(m + 16 * (h0 + h)), dmin[h] = h8(m + 32 + 16 * (h0 + h));
        for (int j = 0; j < 8; j++) {
            const uint64_t c = 8 * s + (uint64_t)j;
            __m256i acc[2][MAXT];
            prefetch_chunk(tile + c * 256, 256, T);
            nib_chunk(tile + c * 256, tk, 32 * c, T, H, h0, acc);
            __m128i sc, mn;
            k4_scales16(m + 64, j, &sc, &mn);
#pragma GCC unroll 2
            for (int h = 0; h < H; h++) {
                const int sh = 8 * (h0 + h);
                const __m128i sch = sh ? _mm_srli_si128(sc, 8) : sc, mnh = sh ? _mm_srli_si128(mn, 8) : mn;
                const __m256 sfh = _mm256_mul_ps(d[h], u8f(sch)), mfh = _mm256_mul_ps(dmin[h], u8f(mnh));
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    f[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[h][t]), _mm256_mul_ps(sfh, _mm256_set1_ps(tk[t].d[c])),
                                              f[h][t]);
                    f[h][t] = _mm256_fnmadd_ps(mfh, _mm256_set1_ps(tk[t].s[c]), f[h][t]);
                }
            }
        }
    }
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++) store8(y + (size_t)(t0 + (uint32_t)t) * ldy + 8 * (h0 + h), f[h][t], nr - 8 * (h0 + h));
}

/* ---- Q6_K --------------------------------------------------------------------- */
/* the high two bits of k4-row i (of 4 in hv) moved to bits 4..5 */
INLINE __m256i q6_hi(__m256i hv, int i) {
    const __m256i m = _mm256_set1_epi8(0x30);
    switch (i) {
    case 0: return _mm256_and_si256(_mm256_slli_epi16(hv, 4), m);
    case 1: return _mm256_and_si256(_mm256_slli_epi16(hv, 2), m);
    case 2: return _mm256_and_si256(hv, m);
    default: return _mm256_and_si256(_mm256_srli_epi16(hv, 2), m);
    }
}

INLINE void q6_k_part(const byoai_packed *w, const uint8_t *tile, const byoai_act *a, uint32_t t0, const int T,
                      const int H, int h0, float *y, size_t ldy, int nr) {
    const uint64_t nsb = w->k / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    tok tk[MAXT];
    __m256 f[2][MAXT];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        tk[t] = tok_at(a, t0 + (uint32_t)t);
        for (int h = 0; h < H; h++) f[h][t] = _mm256_setzero_ps();
    }
    for (uint64_t s = 0; s < nsb; s++) {
        const uint8_t *m = tile + w->levels_bytes + s * 288;
        __m256 d[2];
        for (int h = 0; h < H; h++) d[h] = h8(m + 16 * (h0 + h));
        for (int j = 0; j < 8; j++) {
            const uint64_t c = 8 * s + (uint64_t)j;
            const uint8_t *lv = tile + c * 384;
            prefetch_chunk(lv, 384, T);
#pragma GCC unroll 2
            for (int h = 0; h < H; h++) {
                const int off = 32 * (h0 + h);
                const __m256i hb0 = ld(lv + 256 + off), hb1 = ld(lv + 320 + off);
                __m256i a0[MAXT], a1[MAXT], p0[MAXT], p1[MAXT];
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    a0[t] = _mm256_set1_epi32(-32 * tk[t].a16[2 * c]);
                    a1[t] = _mm256_set1_epi32(-32 * tk[t].a16[2 * c + 1]);
                }
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    const __m256i v = ld(lv + 64 * i + off);
                    const __m256i lo = _mm256_or_si256(_mm256_and_si256(v, m4), q6_hi(hb0, i));
                    const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), q6_hi(hb1, i));
#pragma GCC unroll 4
                    for (int t = 0; t < T; t++) {
                        /* levels < 64: two int16 pair sums fit, then widen */
                        const __m256i x0 = _mm256_maddubs_epi16(lo, bcast4(tk[t].q + 32 * c + 4 * i));
                        const __m256i x1 = _mm256_maddubs_epi16(hi, bcast4(tk[t].q + 32 * c + 16 + 4 * i));
                        if (i % 2 == 0) {
                            p0[t] = x0, p1[t] = x1;
                        } else {
                            a0[t] = _mm256_add_epi32(a0[t], widen(_mm256_add_epi16(p0[t], x0)));
                            a1[t] = _mm256_add_epi32(a1[t], widen(_mm256_add_epi16(p1[t], x1)));
                        }
                    }
                }
                const __m256 s0 = _mm256_mul_ps(d[h], _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                          _mm_loadl_epi64((const __m128i *)(m + 32 + 16 * (2 * j) + 8 * (h0 + h))))));
                const __m256 s1 = _mm256_mul_ps(d[h], _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                                          (const __m128i *)(m + 32 + 16 * (2 * j + 1) + 8 * (h0 + h))))));
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const __m256 x = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0[t]), s0, _mm256_mul_ps(_mm256_cvtepi32_ps(a1[t]), s1));
                    f[h][t] = _mm256_fmadd_ps(x, _mm256_set1_ps(tk[t].d[c]), f[h][t]);
                }
            }
        }
    }
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++) store8(y + (size_t)(t0 + (uint32_t)t) * ldy + 8 * (h0 + h), f[h][t], nr - 8 * (h0 + h));
}

/* ---- drivers ------------------------------------------------------------------------ */
#define KERNEL(NAME, PART)                                                                                             \
    static void NAME(const byoai_packed *w, uint64_t tile0, uint64_t tile1, const byoai_act *a, float *y,              \
                     size_t ldy, void *scratch) {                                                                      \
        (void)scratch;                                                                                                 \
        for (uint64_t tl = tile0; tl < tile1; tl++) {                                                                  \
            const uint8_t *tile = w->data + tl * w->tile_bytes;                                                        \
            const uint64_t row0 = tl * BYOAI_TILE_ROWS;                                                                \
            const int nr = (int)(w->rows - row0 < BYOAI_TILE_ROWS ? w->rows - row0 : BYOAI_TILE_ROWS);                 \
            float *yt = y + row0;                                                                                      \
            if (a->n == 1) {                                                                                           \
                PART(w, tile, a, 0, 1, 2, 0, yt, ldy, nr);                                                             \
                continue;                                                                                              \
            }                                                                                                          \
            for (int h = 0; h < 2; h++) {                                                                              \
                if (8 * h >= nr) break;                                                                                \
                uint32_t t = 0;                                                                                        \
                for (; t + MAXT <= a->n; t += MAXT) PART(w, tile, a, t, MAXT, 1, h, yt, ldy, nr);                      \
                switch (a->n - t) {                                                                                    \
                case 1: PART(w, tile, a, t, 1, 1, h, yt, ldy, nr); break;                                              \
                case 2: PART(w, tile, a, t, 2, 1, h, yt, ldy, nr); break;                                              \
                case 3: PART(w, tile, a, t, 3, 1, h, yt, ldy, nr); break;                                              \
                default: break;                                                                                        \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
    }

KERNEL(kernel_q8_0, q8_0_part)
KERNEL(kernel_q4_0, q4_0_part)
KERNEL(kernel_q4_k, q4_k_part)
KERNEL(kernel_q6_k, q6_k_part)

/* ---- activations (same results as the reference, bit for bit) ---------------------- */
static void quantize_act(const float *x, uint32_t k, int8_t *q, float *d, float *s, int32_t *a32, int32_t *a16) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (uint32_t b = 0; b < k / 32; b++) {
        const float *xb = x + 32 * b;
        __m256 v[4];
        for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(xb + 8 * i);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        const __m256 mul = _mm256_set1_ps(id);
        __m256i iv[4];
        for (int i = 0; i < 4; i++) iv[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], mul));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + 32 * b), p);
        /* sums of elements 0..15 (iv[0], iv[1]) and 16..31 (iv[2], iv[3]) */
        __m256i h = _mm256_hadd_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
        h = _mm256_hadd_epi32(h, h); /* [lo01 lo23 . . | hi01 hi23 . .] */
        const int32_t h0 = _mm256_extract_epi32(h, 0) + _mm256_extract_epi32(h, 4);
        const int32_t h1 = _mm256_extract_epi32(h, 1) + _mm256_extract_epi32(h, 5);
        d[b] = amax / 127.0f;
        a16[2 * b] = h0;
        a16[2 * b + 1] = h1;
        a32[b] = h0 + h1;
        s[b] = d[b] * (float)(h0 + h1);
    }
}

void byoai_packed_init_avx2(byoai_packed_kernels *k) {
    k->name = "avx2";
    k->quantize = quantize_act;
    k->small[BYOAI_TYPE_Q8_0] = kernel_q8_0;
    k->small[BYOAI_TYPE_Q4_0] = kernel_q4_0;
    k->small[BYOAI_TYPE_Q4_K] = kernel_q4_k;
    k->small[BYOAI_TYPE_Q6_K] = kernel_q6_k;
}
#endif
