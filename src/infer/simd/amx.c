/*
 * AMX-INT8 kernels for packed weights (layout in infer/packed.h), for
 * prompts: many tokens against each weight tile.
 *
 * C[16 tokens][16 rows] += A[16 tokens][32 levels] . B[32 levels][16 rows]
 * with TDPBSSD (signed x signed). A is read straight from the quantized
 * activations (one token per tile row, stride = the activation row), B is
 * the packed chunk as it lies: its k4-major bytes are the VNNI layout AMX
 * wants. Nibble types are first unpacked, once per weight tile, into signed
 * levels (minus the zero point) in the per-thread scratch; Q8_0 needs no
 * unpacking. Every 32 columns have their own scales, so each chunk's C tile
 * is stored and scaled into 16 float accumulators (one zmm per token, its
 * 16 lanes the 16 rows) - that post-processing, not the tile multiply, is
 * the cost. Q6_K (a scale per 16 columns) is not run here: with K = 16
 * tiles and two scalings per chunk it measured no faster than the VNNI
 * kernel (104 vs 109 GMAC/s, one thread, 64 tokens), so it keeps that one.
 *
 * Linux grants the tile state per process on request (packed.c asks once);
 * each call configures the tiles and releases them at the end, so a
 * descheduled thread does not carry 8 KiB of tile state.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "infer/packed.h"

#define INLINE static inline __attribute__((always_inline))

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

/* tile numbers (the intrinsics paste them into the instruction text) */
#define TC0 0
#define TC1 1
#define TA0 2
#define TA1 3
#define TB0 4
#define TB1 5

/* C tiles 16 x 16 int32; A tiles 16 tokens x kb bytes; B tiles kb/4 x 64 */
static void configure(int kb) {
    tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = TC0; i <= TC1; i++) c.rows[i] = 16, c.colsb[i] = 64;
    for (int i = TA0; i <= TA1; i++) c.rows[i] = 16, c.colsb[i] = (uint16_t)kb;
    for (int i = TB0; i <= TB1; i++) c.rows[i] = (uint8_t)(kb / 4), c.colsb[i] = 64;
    _tile_loadconfig(&c);
}

INLINE __m512 load_h16(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
INLINE __m512i ld(const uint8_t *p) { return _mm512_loadu_si512((const void *)p); }
INLINE void st(uint8_t *p, __m512i v) { _mm512_storeu_si512((void *)p, v); }

INLINE void store_rows(float *y, __m512 v, int nr) {
    if (nr >= 16) _mm512_storeu_ps(y, v);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nr) - 1), v);
}

/* one weight tile's unpacked levels (signed, B-tile layout, 512 bytes per
 * chunk) and per-chunk float scales (16 rows each) and mins */
typedef struct {
    const uint8_t *lv; /* chunk c at lv + 512 c */
    const float *sc;   /* [chunks][16] */
    const float *mn;   /* [chunks][16] (Q4_K) */
} unpacked;

/* nibble chunk -> 8 k4-rows of u - z (low nibbles rows 0..3, high 4..7) */
INLINE void unpack_nib(const uint8_t *src, uint8_t *dst, int z) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), zz = _mm512_set1_epi8((char)z);
    for (int j = 0; j < 4; j++) {
        const __m512i v = ld(src + 64 * j);
        st(dst + 64 * j, _mm512_sub_epi8(_mm512_and_si512(v, m4), zz));
        st(dst + 64 * (j + 4), _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), zz));
    }
}

/* Q4_K scales and mins of sub-block j for the 16 rows, from the transposed
 * 12 scale bytes (byoai_k4_scale_min, one row per byte lane) */
INLINE __m128i ld16(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }
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

static unpacked unpack_tile(const byoai_packed *w, const uint8_t *tile, uint8_t *scratch) {
    const uint64_t nc = w->k / 32;
    uint8_t *lv = scratch;
    float *sc = (float *)(scratch + nc * 512), *mn = sc + nc * 16;
    const uint8_t *meta = tile + w->levels_bytes;
    unpacked u = {lv, sc, mn};
    switch (w->type) {
    case BYOAI_TYPE_Q8_0:
        u.lv = tile;
        for (uint64_t c = 0; c < nc; c++) _mm512_storeu_ps(sc + 16 * c, load_h16(meta + 32 * c));
        break;
    case BYOAI_TYPE_Q4_0:
        for (uint64_t c = 0; c < nc; c++) {
            unpack_nib(tile + 256 * c, lv + 512 * c, 8);
            _mm512_storeu_ps(sc + 16 * c, load_h16(meta + 32 * c));
        }
        break;
    case BYOAI_TYPE_Q4_K:
        for (uint64_t s = 0; s < nc / 8; s++) {
            const uint8_t *m = meta + 256 * s;
            const __m512 d = load_h16(m), dmin = load_h16(m + 32);
            for (int j = 0; j < 8; j++) {
                const uint64_t c = 8 * s + (uint64_t)j;
                unpack_nib(tile + 256 * c, lv + 512 * c, 0);
                __m128i scb, mnb;
                k4_scales16(m + 64, j, &scb, &mnb);
                _mm512_storeu_ps(sc + 16 * c, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(scb))));
                _mm512_storeu_ps(mn + 16 * c, _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(mnb))));
            }
        }
        break;
    default: break;
    }
    return u;
}

/* f[t] += the scaled C tile of one chunk: tokens t < nt, or all 16 when
 * FULL (no tests in the loop). d, s: the 16 tokens' scales of this chunk. */
INLINE void post(const int32_t *cbuf, __m512 sc, const float *d, const float *s, const float *mn, int nt, const bool full,
                 __m512 *f) {
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) {
        if (!full && t >= nt) break;
        f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cbuf + 16 * t)), _mm512_mul_ps(sc, _mm512_set1_ps(d[t])),
                               f[t]);
    }
    if (mn) {
        const __m512 m = _mm512_loadu_ps(mn);
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) {
            if (!full && t >= nt) break;
            f[t] = _mm512_fnmadd_ps(m, _mm512_set1_ps(s[t]), f[t]);
        }
    }
}

/* tokens t0..t0+15 (rows past a->n compute garbage that is not stored)
 * against one unpacked weight tile. Two C tiles alternate: the multiply of
 * chunk c + 1 is issued before chunk c is stored and scaled, so the tile
 * unit and the vector units overlap. */
INLINE void token_tile_t(const byoai_packed *w, const unpacked *u, const byoai_act *a, uint32_t t0, float *y,
                         size_t ldy, int nr, int32_t *cbuf, const bool full) {
    const uint64_t nc = w->k / 32;
    const int nt = a->n - t0 < 16 ? (int)(a->n - t0) : 16;
    const int8_t *q = a->q + (size_t)t0 * a->stride;
    const long qs = (long)a->stride;
    const float *d = a->dt + (size_t)t0 * nc, *s = a->st + (size_t)t0 * nc; /* t0 / 16 * nc * 16 */
    __m512 f[16];
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) f[t] = _mm512_setzero_ps();
    const bool mins = w->type == BYOAI_TYPE_Q4_K;
    /* chunk 0 into C0 */
    _tile_loadd(TA0, q, qs);
    _tile_loadd(TB0, u->lv, 64);
    _tile_zero(TC0);
    _tile_dpbssd(TC0, TA0, TB0);
    uint64_t c = 0;
    for (;;) {
        /* C0 holds chunk c; start c + 1 into C1 */
        const bool more = c + 1 < nc;
        if (more) {
            _tile_loadd(TA1, q + 32 * (c + 1), qs);
            _tile_loadd(TB1, u->lv + 512 * (c + 1), 64);
            _tile_zero(TC1);
            _tile_dpbssd(TC1, TA1, TB1);
        }
        _tile_stored(TC0, cbuf, 64);
        post(cbuf, _mm512_loadu_ps(u->sc + 16 * c), d + 16 * c, s + 16 * c, mins ? u->mn + 16 * c : NULL, nt, full, f);
        if (!more) break;
        c++;
        /* C1 holds chunk c; start c + 1 into C0 */
        const bool more2 = c + 1 < nc;
        if (more2) {
            _tile_loadd(TA0, q + 32 * (c + 1), qs);
            _tile_loadd(TB0, u->lv + 512 * (c + 1), 64);
            _tile_zero(TC0);
            _tile_dpbssd(TC0, TA0, TB0);
        }
        _tile_stored(TC1, cbuf + 256, 64);
        post(cbuf + 256, _mm512_loadu_ps(u->sc + 16 * c), d + 16 * c, s + 16 * c, mins ? u->mn + 16 * c : NULL, nt,
             full, f);
        if (!more2) break;
        c++;
    }
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++) {
        if (!full && t >= nt) break;
        store_rows(y + (size_t)(t0 + (uint32_t)t) * ldy, f[t], nr);
    }
}

static void token_tile_full(const byoai_packed *w, const unpacked *u, const byoai_act *a, uint32_t t0, float *y,
                            size_t ldy, int nr, int32_t *cbuf) {
    token_tile_t(w, u, a, t0, y, ldy, nr, cbuf, true);
}
static void token_tile_part(const byoai_packed *w, const unpacked *u, const byoai_act *a, uint32_t t0, float *y,
                            size_t ldy, int nr, int32_t *cbuf) {
    token_tile_t(w, u, a, t0, y, ldy, nr, cbuf, false);
}

static void kernel(const byoai_packed *w, uint64_t tile0, uint64_t tile1, const byoai_act *a, float *y, size_t ldy,
                   void *scratch) {
    uint8_t *sp = scratch;
    int32_t *cbuf = (int32_t *)sp; /* 2 KiB of C tiles, then the unpacked weight tile */
    configure(32);
    for (uint64_t tl = tile0; tl < tile1; tl++) {
        const uint8_t *tile = w->data + tl * w->tile_bytes;
        const uint64_t row0 = tl * BYOAI_TILE_ROWS;
        const int nr = (int)(w->rows - row0 < BYOAI_TILE_ROWS ? w->rows - row0 : BYOAI_TILE_ROWS);
        const unpacked u = unpack_tile(w, tile, sp + 2048);
        uint32_t t0 = 0;
        for (; t0 + 16 <= a->n; t0 += 16) token_tile_full(w, &u, a, t0, y + row0, ldy, nr, cbuf);
        if (t0 < a->n) token_tile_part(w, &u, a, t0, y + row0, ldy, nr, cbuf);
    }
    _tile_release();
}

void byoai_packed_init_amx(byoai_packed_kernels *k) {
    k->name = "amx";
    k->large[BYOAI_TYPE_Q8_0] = kernel;
    k->large[BYOAI_TYPE_Q4_0] = kernel;
    k->large[BYOAI_TYPE_Q4_K] = kernel;
    k->large_min_n = 16;
}
#endif
