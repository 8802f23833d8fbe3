/*
 * Packed weights: quantized matrices re-laid at load time ("repacked") into
 * tiles of 16 rows, for the matrix kernels of x86 CPUs (AVX2, AVX-512 VNNI,
 * AMX). Public API: none; the model loader packs, byoai_matmul uses them.
 *
 * Why: a row-at-a-time dot product reduces each 32-element block
 * horizontally and gathers its scale from a 34-byte stride; a tile of 16 rows
 * whose bytes are interleaved four at a time puts one row in each 32-bit lane
 * of a vector, so one VNNI instruction multiplies 16 rows by 4 broadcast
 * activations, partial sums stay in their lanes, 16 scales convert with one
 * instruction, and the same 512 bytes are an AMX B tile as they lie. The
 * packed copy replaces the file's bytes (the mapping's pages are dropped), so
 * memory is not doubled; packed data are never written back to a file.
 *
 * Tile layout (16 rows, K columns), in two regions:
 *   levels: per 32-column chunk c, the chunk's integer levels of the 16 rows,
 *           "k4-major": the 4 levels of columns 32c+4j..32c+4j+3 of row r sit
 *           at bytes 64j + 4r .. 64j + 4r + 3 (j = 0..7), possibly split into
 *           bit fields as the type says below;
 *   meta:   the scales (and mins) of the tile's blocks, per block the 16
 *           rows' values contiguous, so that one load takes all 16.
 * Rows past the matrix's end (last tile) are zero: they compute zeros that
 * are never stored.
 *
 * Per type (u = the stored level, w = the weight it means):
 *   Q8_0  chunk: 512 bytes of s8 levels q as above; meta per chunk: 16 fp16 d.
 *         w = d * q.
 *   Q4_0  chunk: 4 vectors of 64 bytes; vector j's byte 4r+i holds column
 *         4j+i (low nibble) and 16+4j+i (high nibble): the low nibbles are
 *         k4-rows 0..3, the high nibbles k4-rows 4..7. meta: 16 fp16 d.
 *         w = d * (u - 8).
 *   Q4_K  chunk: as Q4_0. meta per 256-column super-block: 16 fp16 d, 16 fp16
 *         dmin, then the 12 packed scale bytes transposed (byte i of the 16
 *         rows contiguous, 12 x 16). w = d * sc_j * u - dmin * m_j.
 *   Q6_K  chunk: 4 nibble vectors as Q4_0 (low 4 bits), then 2 vectors of the
 *         high 2 bits: vector h's byte 4r+i holds in bits 2s..2s+1 the high
 *         bits of column 4(4h+s)+i. meta per super-block: 16 fp16 d, then the
 *         16 int8 scales transposed (16 x 16). w = d * sc_16 * (u - 32).
 * Each packed tile has exactly as many bytes as the 16 rows it replaces.
 */
#ifndef BYOAI_INFER_PACKED_H
#define BYOAI_INFER_PACKED_H

#include "infer/quant.h"

#define BYOAI_TILE_ROWS 16

typedef struct byoai_packed {
    byoai_type type;
    uint64_t k;            /* columns (ne0) */
    uint64_t rows;         /* rows (ne1) */
    uint64_t n_tiles;      /* ceil(rows / 16) */
    uint64_t tile_bytes;   /* bytes per tile */
    uint64_t levels_bytes; /* offset of the meta region inside a tile */
    uint8_t *data;         /* n_tiles * tile_bytes; NULL when not packed */
} byoai_packed;

/* Activations quantized for packed weights, one row per token: per 32
 * columns an f32 scale d (= max|x| / 127) and int8 levels rounded to nearest
 * even, plus the level sums the kernels need for zero points and mins. */
typedef struct byoai_act {
    uint32_t n;        /* tokens */
    uint32_t k;        /* columns */
    size_t stride;     /* bytes between tokens' q rows (a multiple of 64) */
    int8_t *q;         /* [n rounded up to 16][stride]; rows past n are zero */
    float *d;          /* [n][k / 32] */
    float *s;          /* [n][k / 32] d * sum of the 32 levels */
    int32_t *a32;      /* [n][k / 32] sum of the 32 levels */
    int32_t *a16;      /* [n][k / 16] sum of each 16 levels */
    /* d and s again, tile-major for the AMX kernels: [n / 16][k / 32][16]
     * (token t, chunk c at (t / 16 * k / 32 + c) * 16 + t % 16); written by
     * byoai_act_quantize_rows when not NULL, zero past n */
    float *dt, *st;
} byoai_act;

/* y[t * ldy + r] = row r of w . token t, for the rows of tiles [tile0,
 * tile1) (clipped to w->rows) and every token of a. scratch: per thread,
 * BYOAI_PACK_SCRATCH(k) bytes, 64-aligned. */
typedef void (*byoai_packed_fn)(const byoai_packed *w, uint64_t tile0, uint64_t tile1, const byoai_act *a, float *y,
                                size_t ldy, void *scratch);
/* quantize one token row of k floats (k a multiple of 32) into the act
 * arrays at token index t (q row must be zero-padded by the caller) */
typedef void (*byoai_act_quant_fn)(const float *x, uint32_t k, int8_t *q, float *d, float *s, int32_t *a32,
                                   int32_t *a16);

#define BYOAI_PACK_SCRATCH(k) ((size_t)(k) * 24 + 4096)

typedef struct byoai_packed_kernels {
    const char *name;
    byoai_act_quant_fn quantize;
    byoai_packed_fn small[BYOAI_TYPE_COUNT]; /* any number of tokens */
    byoai_packed_fn large[BYOAI_TYPE_COUNT]; /* many tokens (AMX; needs act dt, st); NULL: use small */
    uint32_t large_min_n;                    /* tokens from which `large` pays */
} byoai_packed_kernels;

/* ---- layout ---------------------------------------------------------------- */
/* True when type t has a packed layout. */
bool byoai_pack_type_ok(byoai_type t);
/* Fill p's shape fields (not data) for a k x rows matrix of type t; returns
 * false when t has no packed layout or k does not fit it. */
bool byoai_pack_shape(byoai_type t, uint64_t k, uint64_t rows, byoai_packed *p);
/* Pack tile `tile` of a row-major matrix src (row_bytes per row). */
void byoai_pack_tile(const byoai_packed *p, const void *src, uint64_t row_bytes, uint64_t tile);
/* Dequantize row r of a packed matrix into k floats (tests, debugging). */
void byoai_packed_dequantize_row(const byoai_packed *p, uint64_t r, float *out);

/* ---- kernels --------------------------------------------------------------- */
/* Reference (scalar) kernels and activation quantizer; every SIMD kernel is
 * tested against these. */
const byoai_packed_kernels *byoai_packed_kernels_scalar(void);
/* The kernels for this CPU, or NULL when packing does not pay here (no AVX2,
 * or $BYOAI_SIMD=scalar, or $BYOAI_REPACK=0). $BYOAI_SIMD=avx2|avx512 caps
 * the level (avx512 also turns AMX off). */
const byoai_packed_kernels *byoai_packed_kernels_best(void);
/* True when pk has a SIMD kernel for type t (packing it pays). */
bool byoai_pack_pays(const byoai_packed_kernels *pk, byoai_type t);
/* The kernels of one level for tests: "scalar", "avx2", "avx512", "amx";
 * NULL when this CPU (or OS) cannot run them. */
const byoai_packed_kernels *byoai_packed_kernels_get(const char *name);

/* Quantize n token rows x[n][k] into a (whose arrays the caller sized for
 * n tokens of k columns); run by one thread or split over tokens. */
void byoai_act_quantize_rows(const byoai_packed_kernels *pk, const float *x, uint32_t k, uint32_t t0, uint32_t t1,
                             byoai_act *a);
/* Zero the q rows of tokens n .. n rounded up to 16 (the AMX tiles read them) */
void byoai_act_pad(byoai_act *a);

/* ISA tables, filled by src/infer/simd/<isa>_packed.c */
void byoai_packed_init_avx2(byoai_packed_kernels *k);
void byoai_packed_init_avx512(byoai_packed_kernels *k);
void byoai_packed_init_amx(byoai_packed_kernels *k);

#endif
