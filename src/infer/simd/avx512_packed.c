/*
 * AVX-512 VNNI kernels for packed weights (layout in infer/packed.h).
 *
 * One 512-bit vector holds 4 levels of each of a tile's 16 rows, so
 * vpdpbusd(acc, levels, broadcast(4 activation bytes)) adds 16 rows' partial
 * dots in place: no horizontal sums. The weights are the unsigned operand
 * (u8); levels with a zero point z (Q8_0 flipped to u8: z = 128; Q4_0 z = 8;
 * Q6_K z = 32) start their accumulator at -z * sum(activation levels).
 * Tokens are processed T at a time (T <= 8) so each weight vector, once
 * loaded and unpacked, serves T tokens; T = 1 is the matrix-vector product
 * of generation.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "infer/packed.h"

#define MAXT 8
#define INLINE static inline __attribute__((always_inline))

/* Software prefetch of the weight stream when one token reads it (the
 * matrix-vector product of generation is a pure stream from memory): 8 KiB
 * ahead measured 10-15% faster single-threaded than the hardware
 * prefetchers alone (9-10 -> 10.6-12 GB/s); past a tile's levels it
 * fetches its scales and then the next tile, which come next anyway. */
#define PF_AHEAD 8192
INLINE void prefetch_chunk(const uint8_t *lv, int bytes, const int T) {
    if (T != 1) return;
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)lv + PF_AHEAD + o, _MM_HINT_T0);
}

INLINE __m512 load_h16(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
INLINE __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
INLINE __m512i ld(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }

/* activations of one token: levels, per-chunk scale and sums */
typedef struct {
    const int8_t *q;
    const float *d, *s;
    const int32_t *a32, *a16;
} tok;

INLINE tok tok_at(const byoai_act *a, uint32_t t) {
    const size_t nc = a->k / 32;
    return (tok){a->q + (size_t)t * a->stride, a->d + t * nc, a->s + t * nc, a->a32 + t * nc, a->a16 + t * 2 * nc};
}

INLINE void store_rows(float *y, __m512 v, int nr) {
    if (nr >= 16) _mm512_storeu_ps(y, v);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nr) - 1), v);
}

/* ---- Q8_0 ------------------------------------------------------------------- */
INLINE void q8_0_tile(const byoai_packed *w, const uint8_t *tile, const byoai_act *a, uint32_t t0, const int T,
                      float *y, size_t ldy, int nr) {
    const uint64_t nc = w->k / 32;
    const uint8_t *meta = tile + w->levels_bytes;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    tok tk[MAXT];
    __m512 f[MAXT];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) tk[t] = tok_at(a, t0 + (uint32_t)t), f[t] = _mm512_setzero_ps();
    for (uint64_t c = 0; c < nc; c++) {
        const uint8_t *lv = tile + c * 512;
        prefetch_chunk(lv, 512, T);
        __m512i acc[MAXT];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = _mm512_set1_epi32(-128 * tk[t].a32[c]);
        __m512i acc2[MAXT];
        const bool split = T <= 2; /* two dependency chains, as in nib_chunk */
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc2[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m512i v = _mm512_xor_si512(ld(lv + 64 * j), flip);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                if (split && j % 2) acc2[t] = _mm512_dpbusd_epi32(acc2[t], v, bcast4(tk[t].q + 32 * c + 4 * j));
                else acc[t] = _mm512_dpbusd_epi32(acc[t], v, bcast4(tk[t].q + 32 * c + 4 * j));
            }
        }
        if (split)
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[t] = _mm512_add_epi32(acc[t], acc2[t]);
        const __m512 sw = load_h16(meta + 32 * c);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]), _mm512_mul_ps(sw, _mm512_set1_ps(tk[t].d[c])), f[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) store_rows(y + (size_t)(t0 + (uint32_t)t) * ldy, f[t], nr);
}

/* ---- nibble chunks (Q4_0, Q4_K) --------------------------------------------- */
/* acc[t] += the chunk's 16 rows . token t's 32 levels at q + off. The high
 * nibbles are used in place (v & 0xF0 = 16 u) into a second accumulator,
 * shifted back at the end: one instruction less per vector than shifting
 * the nibbles down, and two independent vpdpbusd chains instead of one
 * chain of 8 (5 cycles each), which set the pace for a single token. */
INLINE void nib_chunk(const uint8_t *lv, const tok *tk, uint64_t off, const int T, __m512i *acc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m4h = _mm512_set1_epi8((char)0xF0);
    __m512i acc2[MAXT];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc2[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m512i v = ld(lv + 64 * j);
        const __m512i lo = _mm512_and_si512(v, m4), hi16 = _mm512_and_si512(v, m4h);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            acc[t] = _mm512_dpbusd_epi32(acc[t], lo, bcast4(tk[t].q + off + 4 * j));
            acc2[t] = _mm512_dpbusd_epi32(acc2[t], hi16, bcast4(tk[t].q + off + 16 + 4 * j));
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm512_add_epi32(acc[t], _mm512_srai_epi32(acc2[t], 4));
}

INLINE void q4_0_tile(const byoai_packed *w, const uint8_t *tile, const byoai_act *a, uint32_t t0, const int T,
                      float *y, size_t ldy, int nr) {
    const uint64_t nc = w->k / 32;
    const uint8_t *meta = tile + w->levels_bytes;
    tok tk[MAXT];
    __m512 f[MAXT];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) tk[t] = tok_at(a, t0 + (uint32_t)t), f[t] = _mm512_setzero_ps();
    for (uint64_t c = 0; c < nc; c++) {
        __m512i acc[MAXT];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = _mm512_set1_epi32(-8 * tk[t].a32[c]);
        prefetch_chunk(tile + c * 256, 256, T);
        nib_chunk(tile + c * 256, tk, 32 * c, T, acc);
        const __m512 sw = load_h16(meta + 32 * c);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]), _mm512_mul_ps(sw, _mm512_set1_ps(tk[t].d[c])), f[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) store_rows(y + (size_t)(t0 + (uint32_t)t) * ldy, f[t], nr);
}

/* 16 unsigned bytes -> 16 floats */
INLINE __m512 u8f(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
INLINE __m128i ld16(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }

/* Q4_K scales and mins of sub-block j for the 16 rows, from the transposed
 * 12 scale bytes (byoai_k4_scale_min, one row per byte lane) */
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

INLINE void q4_k_tile(const byoai_packed *w, const uint8_t *tile, const byoai_act *a, uint32_t t0, const int T,
                      float *y, size_t ldy, int nr) {
    const uint64_t nsb = w->k / QK_K;
    tok tk[MAXT];
    __m512 f[MAXT];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) tk[t] = tok_at(a, t0 + (uint32_t)t), f[t] = _mm512_setzero_ps();
    for (uint64_t s = 0; s < nsb; s++) {
        const uint8_t *m = tile + w->levels_bytes + s * 256;
        const __m512 d = load_h16(m), dmin = load_h16(m + 32);
        for (int j = 0; j < 8; j++) {
            const uint64_t c = 8 * s + (uint64_t)j;
            __m512i acc[MAXT];
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_si512();
            prefetch_chunk(tile + c * 256, 256, T);
            nib_chunk(tile + c * 256, tk, 32 * c, T, acc);
            __m128i sc, mn;
            k4_scales16(m + 64, j, &sc, &mn);
            const __m512 sf = _mm512_mul_ps(d, u8f(sc)), mf = _mm512_mul_ps(dmin, u8f(mn));
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]), _mm512_mul_ps(sf, _mm512_set1_ps(tk[t].d[c])), f[t]);
                f[t] = _mm512_fnmadd_ps(mf, _mm512_set1_ps(tk[t].s[c]), f[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) store_rows(y + (size_t)(t0 + (uint32_t)t) * ldy, f[t], nr);
}

/* ---- Q6_K --------------------------------------------------------------------- */
/* the high two bits of k4-row j (of 4 in h) moved to bits 4..5 */
INLINE __m512i q6_hi(__m512i h, int j) {
    const __m512i m = _mm512_set1_epi8(0x30);
    switch (j) {
    case 0: return _mm512_and_si512(_mm512_slli_epi16(h, 4), m);
    case 1: return _mm512_and_si512(_mm512_slli_epi16(h, 2), m);
    case 2: return _mm512_and_si512(h, m);
    default: return _mm512_and_si512(_mm512_srli_epi16(h, 2), m);
    }
}

INLINE void q6_k_tile(const byoai_packed *w, const uint8_t *tile, const byoai_act *a, uint32_t t0, const int T,
                      float *y, size_t ldy, int nr) {
    const uint64_t nsb = w->k / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    tok tk[MAXT];
    __m512 f[MAXT];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) tk[t] = tok_at(a, t0 + (uint32_t)t), f[t] = _mm512_setzero_ps();
    for (uint64_t s = 0; s < nsb; s++) {
        const uint8_t *m = tile + w->levels_bytes + s * 288;
        const __m512 d = load_h16(m);
        for (int j = 0; j < 8; j++) {
            const uint64_t c = 8 * s + (uint64_t)j;
            const uint8_t *lv = tile + c * 384;
            prefetch_chunk(lv, 384, T);
            const __m512i h0 = ld(lv + 256), h1 = ld(lv + 320);
            __m512i acc0[MAXT], acc1[MAXT];
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                acc0[t] = _mm512_set1_epi32(-32 * tk[t].a16[2 * c]);
                acc1[t] = _mm512_set1_epi32(-32 * tk[t].a16[2 * c + 1]);
            }
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const __m512i v = ld(lv + 64 * i);
                const __m512i lo = _mm512_or_si512(_mm512_and_si512(v, m4), q6_hi(h0, i));
                const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), q6_hi(h1, i));
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) {
                    acc0[t] = _mm512_dpbusd_epi32(acc0[t], lo, bcast4(tk[t].q + 32 * c + 4 * i));
                    acc1[t] = _mm512_dpbusd_epi32(acc1[t], hi, bcast4(tk[t].q + 32 * c + 16 + 4 * i));
                }
            }
            const __m512 s0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(ld16(m + 32 + 16 * (2 * j)))));
            const __m512 s1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(ld16(m + 32 + 16 * (2 * j + 1)))));
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const __m512 x = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc0[t]), s0,
                                                 _mm512_mul_ps(_mm512_cvtepi32_ps(acc1[t]), s1));
                f[t] = _mm512_fmadd_ps(x, _mm512_set1_ps(tk[t].d[c]), f[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) store_rows(y + (size_t)(t0 + (uint32_t)t) * ldy, f[t], nr);
}

/* ---- drivers: every tile, tokens in groups of MAXT ------------------------------ */
#define KERNEL(NAME, TILE)                                                                                             \
    static void NAME(const byoai_packed *w, uint64_t tile0, uint64_t tile1, const byoai_act *a, float *y,              \
                     size_t ldy, void *scratch) {                                                                      \
        (void)scratch;                                                                                                 \
        for (uint64_t tl = tile0; tl < tile1; tl++) {                                                                  \
            const uint8_t *tile = w->data + tl * w->tile_bytes;                                                        \
            const uint64_t row0 = tl * BYOAI_TILE_ROWS;                                                                \
            const int nr = (int)(w->rows - row0 < BYOAI_TILE_ROWS ? w->rows - row0 : BYOAI_TILE_ROWS);                 \
            float *yt = y + row0;                                                                                      \
            uint32_t t = 0;                                                                                            \
            for (; t + MAXT <= a->n; t += MAXT) TILE(w, tile, a, t, MAXT, yt, ldy, nr);                                \
            switch (a->n - t) {                                                                                        \
            case 1: TILE(w, tile, a, t, 1, yt, ldy, nr); break;                                                        \
            case 2: TILE(w, tile, a, t, 2, yt, ldy, nr); break;                                                        \
            case 3: TILE(w, tile, a, t, 3, yt, ldy, nr); break;                                                        \
            case 4: TILE(w, tile, a, t, 4, yt, ldy, nr); break;                                                        \
            case 5: TILE(w, tile, a, t, 5, yt, ldy, nr); break;                                                        \
            case 6: TILE(w, tile, a, t, 6, yt, ldy, nr); break;                                                        \
            case 7: TILE(w, tile, a, t, 7, yt, ldy, nr); break;                                                        \
            default: break;                                                                                            \
            }                                                                                                          \
        }                                                                                                              \
    }

KERNEL(kernel_q8_0, q8_0_tile)
KERNEL(kernel_q4_0, q4_0_tile)
KERNEL(kernel_q4_k, q4_k_tile)
KERNEL(kernel_q6_k, q6_k_tile)

/* ---- activations ------------------------------------------------------------------ */
static void quantize_act(const float *x, uint32_t k, int8_t *q, float *d, float *s, int32_t *a32, int32_t *a16) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (uint32_t b = 0; b < k / 32; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        const __m512 m = _mm512_set1_ps(id);
        const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, m)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, m));
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtsepi32_epi8(i1));
        const int32_t h0 = _mm512_reduce_add_epi32(i0), h1 = _mm512_reduce_add_epi32(i1);
        d[b] = amax / 127.0f;
        a16[2 * b] = h0;
        a16[2 * b + 1] = h1;
        a32[b] = h0 + h1;
        s[b] = d[b] * (float)(h0 + h1);
    }
}

void byoai_packed_init_avx512(byoai_packed_kernels *k) {
    k->name = "avx512";
    k->quantize = quantize_act;
    k->small[BYOAI_TYPE_Q8_0] = kernel_q8_0;
    k->small[BYOAI_TYPE_Q4_0] = kernel_q4_0;
    k->small[BYOAI_TYPE_Q4_K] = kernel_q4_k;
    k->small[BYOAI_TYPE_Q6_K] = kernel_q6_k;
}
#endif
