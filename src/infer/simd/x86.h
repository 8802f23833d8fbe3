/*
 * Small inline helpers shared by the x86 kernel files (avx2.c, avx512.c).
 * Each includer compiles them with its own -m flags; they need AVX2, FMA
 * and F16C.
 */
#ifndef BYOAI_INFER_SIMD_X86_H
#define BYOAI_INFER_SIMD_X86_H

#include <immintrin.h>
#include <string.h>

#include "infer/quant.h"

static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* 16 bytes of nibbles -> 32 bytes: low nibbles then high nibbles. The
 * broadcast is a plain load and the blend runs on any vector port, which
 * keeps the shuffle port free (vinserti128 would need it). */
static inline __m256i unpack_nibbles(const uint8_t *p) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_blend_epi32(v, _mm256_srli_epi16(v, 4), 0xF0), _mm256_set1_epi8(0x0F));
}

static inline __m256i madd16_ones(__m256i p16) { return _mm256_madd_epi16(p16, _mm256_set1_epi16(1)); }

/* 32 bits -> 32 bytes, 0xFF where the bit is set (byte j <-> bit j) */
static inline __m256i bits_to_bytes(uint32_t bits) {
    const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                         3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), sel); /* broadcast folds into a load */
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint16_t ld16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* the float16 at p, p + stride, p + 2 stride, p + 3 stride as 4 floats */
static inline __m128 halves4(const void *p, size_t stride) {
    const uint8_t *b = p;
    return _mm_cvtph_ps(_mm_setr_epi16((short)ld16(b), (short)ld16(b + stride), (short)ld16(b + 2 * stride),
                                       (short)ld16(b + 3 * stride), 0, 0, 0, 0));
}

static inline __m256i fold4(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    return _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
}

static inline __m256 dup128(__m128 v) { return _mm256_set_m128(v, v); }

/* the 16 signed Q3_K scales (byoai_q3k_scales) as bytes: low nibbles of
 * scales 0..7 / 8..15 are the low / high nibbles of bytes 0..7, the top two
 * bits of scale 4i+r sit in bits 2i..2i+1 of byte 8 + r */
static inline __m128i q3k_scales(const uint8_t *q) {
    const uint32_t a0 = load_u32(q), a1 = load_u32(q + 4), a2 = load_u32(q + 8);
    const uint32_t m4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
    const __m128i v = _mm_setr_epi32((int)((a0 & m4) | ((a2 & m2) << 4)), (int)((a1 & m4) | (((a2 >> 2) & m2) << 4)),
                                     (int)(((a0 >> 4) & m4) | (((a2 >> 4) & m2) << 4)),
                                     (int)(((a1 >> 4) & m4) | (((a2 >> 6) & m2) << 4)));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

/* the 8 scales and 8 mins of a Q4_K / Q5_K block (byoai_k4_scale_min) */
static inline void k4_unpack(const uint8_t *q, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t a0 = load_u32(q), a1 = load_u32(q + 4), a2 = load_u32(q + 8);
    uint32_t s[2] = {a0 & 0x3F3F3F3Fu, (a2 & 0x0F0F0F0Fu) | (((a0 >> 6) & 0x03030303u) << 4)};
    uint32_t m[2] = {a1 & 0x3F3F3F3Fu, ((a2 >> 4) & 0x0F0F0F0Fu) | (((a1 >> 6) & 0x03030303u) << 4)};
    memcpy(sc, s, 8);
    memcpy(mn, m, 8);
}

/* Software prefetch of the weight bytes one kibibyte ahead of p (bytes =
 * how many this iteration consumes). Hardware prefetchers alone left the
 * streamed matrix-vector product ~10% short of what the kernels and the
 * memory allow; past a row's end it fetches the next row, which a matrix
 * product reads next. Prefetches never fault. */
#define BYOAI_PREFETCH_AHEAD 1024
static inline void prefetch_ahead(const void *p, int bytes) {
    const char *c = (const char *)p + BYOAI_PREFETCH_AHEAD;
    for (int o = 0; o < bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}

#endif
