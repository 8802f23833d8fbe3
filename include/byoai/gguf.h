/*
 * byoai/gguf.h: read and write GGUF files (versions 2 and 3).
 *
 * Contract
 * - byoai_gguf_open() maps the file read-only and validates all of it before
 *   returning: header counts, every string length, metadata value types and
 *   nesting, tensor dimensions (overflow-safe products), types, alignment,
 *   offsets and sizes against the file's length, duplicate names and
 *   overlapping data. A malformed file yields BYOAI_EFORMAT and a message
 *   that names the problem and where it is; the reader never reads out of
 *   bounds. After a successful open, every pointer the reader hands out
 *   points into the mapping and stays valid until byoai_gguf_close().
 * - Tensor data is used in place from the mapping; nothing is copied.
 * - The writer produces files this reader and llama.cpp both read; it
 *   writes to PATH.tmp.PID and renames, so a failed write leaves nothing.
 */
#ifndef BYOAI_GGUF_H
#define BYOAI_GGUF_H

#include "byoai/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BYOAI_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define BYOAI_GGUF_DEFAULT_ALIGNMENT 32
#define BYOAI_GGUF_MAX_DIMS 4

/* ---- tensor element types (ggml numbering, as stored in files) ---------- */
typedef enum byoai_type {
    BYOAI_TYPE_F32 = 0,
    BYOAI_TYPE_F16 = 1,
    BYOAI_TYPE_Q4_0 = 2,
    BYOAI_TYPE_Q4_1 = 3,
    BYOAI_TYPE_Q5_0 = 6,
    BYOAI_TYPE_Q5_1 = 7,
    BYOAI_TYPE_Q8_0 = 8,
    BYOAI_TYPE_Q8_1 = 9,
    BYOAI_TYPE_Q2_K = 10,
    BYOAI_TYPE_Q3_K = 11,
    BYOAI_TYPE_Q4_K = 12,
    BYOAI_TYPE_Q5_K = 13,
    BYOAI_TYPE_Q6_K = 14,
    BYOAI_TYPE_Q8_K = 15,
    BYOAI_TYPE_IQ2_XXS = 16,
    BYOAI_TYPE_IQ2_XS = 17,
    BYOAI_TYPE_IQ3_XXS = 18,
    BYOAI_TYPE_IQ1_S = 19,
    BYOAI_TYPE_IQ4_NL = 20,
    BYOAI_TYPE_IQ3_S = 21,
    BYOAI_TYPE_IQ2_S = 22,
    BYOAI_TYPE_IQ4_XS = 23,
    BYOAI_TYPE_I8 = 24,
    BYOAI_TYPE_I16 = 25,
    BYOAI_TYPE_I32 = 26,
    BYOAI_TYPE_I64 = 27,
    BYOAI_TYPE_F64 = 28,
    BYOAI_TYPE_IQ1_M = 29,
    BYOAI_TYPE_BF16 = 30,
    BYOAI_TYPE_TQ1_0 = 34,
    BYOAI_TYPE_TQ2_0 = 35,
    BYOAI_TYPE_MXFP4 = 39,
    BYOAI_TYPE_COUNT = 40
} byoai_type;

/* Storage traits of a type: elements per block and bytes per block. */
typedef struct byoai_type_traits {
    const char *name;   /* "Q4_K", ... */
    uint32_t block_size;
    uint32_t type_size;
} byoai_type_traits;

/* Traits of type t, or NULL for a number that is not a known type. */
const byoai_type_traits *byoai_type_get(uint32_t t);
/* Name of a type ("F32", "Q4_K"), or "unknown". */
const char *byoai_type_name(uint32_t t);
/* Parse a type name (case-insensitive); -1 when unknown. */
int byoai_type_from_name(const char *name);
/* Bytes used by n elements of type t (n a multiple of the block size), or 0
 * when t is unknown, n is not a multiple, or the size overflows. */
uint64_t byoai_type_row_size(uint32_t t, uint64_t n);
/* The alignment (bytes) that tensor data of type t must have to be read in
 * place by the compute kernels: the largest power of two dividing its block
 * size in bytes, at most 8 (so every file with general.alignment >= 8, the
 * default 32 among them, has it). 1 for an unknown type. */
uint32_t byoai_type_alignment(uint32_t t);

/* ---- metadata values ----------------------------------------------------- */
typedef enum byoai_gguf_vtype {
    BYOAI_GGUF_UINT8 = 0,
    BYOAI_GGUF_INT8 = 1,
    BYOAI_GGUF_UINT16 = 2,
    BYOAI_GGUF_INT16 = 3,
    BYOAI_GGUF_UINT32 = 4,
    BYOAI_GGUF_INT32 = 5,
    BYOAI_GGUF_FLOAT32 = 6,
    BYOAI_GGUF_BOOL = 7,
    BYOAI_GGUF_STRING = 8,
    BYOAI_GGUF_ARRAY = 9,
    BYOAI_GGUF_UINT64 = 10,
    BYOAI_GGUF_INT64 = 11,
    BYOAI_GGUF_FLOAT64 = 12,
    BYOAI_GGUF_VTYPE_COUNT = 13
} byoai_gguf_vtype;

const char *byoai_gguf_vtype_name(uint32_t vt);

/* A string inside the file: not NUL-terminated. */
typedef struct byoai_gguf_str {
    const char *ptr;
    uint64_t len;
} byoai_gguf_str;

typedef struct byoai_gguf_value byoai_gguf_value;
struct byoai_gguf_value {
    byoai_gguf_vtype type;
    union {
        uint64_t u64; /* UINT8..UINT64 */
        int64_t i64;  /* INT8..INT64 */
        double f64;   /* FLOAT32, FLOAT64 */
        bool b;       /* BOOL */
        byoai_gguf_str str;
        struct {
            byoai_gguf_vtype elem_type;
            uint64_t count;
            const uint8_t *data;     /* numeric/bool elements, packed, possibly unaligned */
            byoai_gguf_value *items; /* STRING and ARRAY elements (count entries), else NULL */
        } arr;
    } v;
};

typedef struct byoai_gguf_kv {
    const char *key; /* NUL-terminated copy owned by the reader */
    byoai_gguf_value value;
    uint64_t file_offset; /* where the key starts in the file */
} byoai_gguf_kv;

typedef struct byoai_gguf_tensor {
    const char *name; /* NUL-terminated copy owned by the reader */
    uint32_t n_dims;
    uint64_t ne[BYOAI_GGUF_MAX_DIMS]; /* elements per dimension; unused = 1 */
    byoai_type type;
    uint64_t offset;    /* relative to the data section */
    uint64_t size;      /* bytes */
    uint64_t n_elements;
    const void *data;   /* into the mapping */
} byoai_gguf_tensor;

typedef struct byoai_gguf {
    uint32_t version;
    uint64_t n_kv;
    byoai_gguf_kv *kv;
    uint64_t n_tensors;
    byoai_gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t data_offset; /* absolute start of the tensor data section */
    const uint8_t *base;  /* the mapping */
    uint64_t file_size;
    /* private */
    byoai_mmap map;
    void *arena;
    bool owns_map;
} byoai_gguf;

/* Open, map and validate a GGUF file. On success *out must be closed with
 * byoai_gguf_close(). */
int byoai_gguf_open(const char *path, byoai_gguf **out, byoai_error *err);
/* Parse and validate a GGUF image already in memory (not copied: buf must
 * outlive the result). Used by tests and the fuzzer. */
int byoai_gguf_parse(const void *buf, size_t size, byoai_gguf **out, byoai_error *err);
void byoai_gguf_close(byoai_gguf *g);

/* Lookups: NULL / -1 when absent. */
const byoai_gguf_kv *byoai_gguf_find(const byoai_gguf *g, const char *key);
const byoai_gguf_tensor *byoai_gguf_find_tensor(const byoai_gguf *g, const char *name);

/* Typed getters: return BYOAI_ENOTFOUND when absent, BYOAI_EFORMAT (with a
 * message) when present with an incompatible type. Integer getters accept
 * any integer type whose value fits (else BYOAI_ERANGE: a negative value for
 * an unsigned one, too large a value); they never convert floats.
 * byoai_gguf_get_f32 accepts any number, and refuses (BYOAI_ERANGE) a
 * finite float64 beyond float32's range. */
int byoai_gguf_get_u64(const byoai_gguf *g, const char *key, uint64_t *out, byoai_error *err);
int byoai_gguf_get_u32(const byoai_gguf *g, const char *key, uint32_t *out, byoai_error *err);
int byoai_gguf_get_i64(const byoai_gguf *g, const char *key, int64_t *out, byoai_error *err);
int byoai_gguf_get_f32(const byoai_gguf *g, const char *key, float *out, byoai_error *err);
int byoai_gguf_get_bool(const byoai_gguf *g, const char *key, bool *out, byoai_error *err);
int byoai_gguf_get_str(const byoai_gguf *g, const char *key, byoai_gguf_str *out, byoai_error *err);
/* Array getter: checks the element type (elem_type < 0: any). */
int byoai_gguf_get_arr(const byoai_gguf *g, const char *key, int elem_type, const byoai_gguf_value **out,
                       byoai_error *err);

/* Element i of a numeric array value, converted. byoai_gguf_arr_i64
 * truncates floats toward zero and saturates what int64 cannot hold
 * (uint64 above INT64_MAX, floats past +-2^63; NaN gives 0): a caller that
 * range-checks the result also refuses those. 0 for an index out of range. */
double byoai_gguf_arr_f64(const byoai_gguf_value *arr, uint64_t i);
int64_t byoai_gguf_arr_i64(const byoai_gguf_value *arr, uint64_t i);
/* Size in bytes of a scalar of type vt (0 for STRING/ARRAY). */
size_t byoai_gguf_vtype_size(uint32_t vt);

/* ---- writer ------------------------------------------------------------- */
typedef struct byoai_gguf_writer byoai_gguf_writer;

/* Produce a tensor's bytes at write time (for data too large to hold):
 * fill dst with exactly size bytes. */
typedef int (*byoai_gguf_fill_fn)(void *user, const char *name, void *dst, uint64_t size, byoai_error *err);

int byoai_gguf_writer_new(byoai_gguf_writer **out, byoai_error *err);
void byoai_gguf_writer_free(byoai_gguf_writer *w);
/* Data alignment for tensors (power of two); also written as general.alignment
 * when it differs from 32. */
int byoai_gguf_writer_set_alignment(byoai_gguf_writer *w, uint32_t alignment, byoai_error *err);

/* Metadata setters: a key set twice keeps the last value, in first position. */
int byoai_gguf_writer_set_u32(byoai_gguf_writer *w, const char *key, uint32_t v);
int byoai_gguf_writer_set_i32(byoai_gguf_writer *w, const char *key, int32_t v);
int byoai_gguf_writer_set_u64(byoai_gguf_writer *w, const char *key, uint64_t v);
int byoai_gguf_writer_set_f32(byoai_gguf_writer *w, const char *key, float v);
int byoai_gguf_writer_set_bool(byoai_gguf_writer *w, const char *key, bool v);
int byoai_gguf_writer_set_str(byoai_gguf_writer *w, const char *key, const char *v);
int byoai_gguf_writer_set_strn(byoai_gguf_writer *w, const char *key, const char *v, uint64_t len);
/* Array of n scalars of type elem (packed little-endian data, copied). */
int byoai_gguf_writer_set_arr(byoai_gguf_writer *w, const char *key, byoai_gguf_vtype elem, const void *data,
                              uint64_t n);
int byoai_gguf_writer_set_arr_str(byoai_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Copy any value (including nested arrays) from a reader. */
int byoai_gguf_writer_set_value(byoai_gguf_writer *w, const char *key, const byoai_gguf_value *v);
int byoai_gguf_writer_remove(byoai_gguf_writer *w, const char *key);

/* Add a tensor. data (size bytes) is borrowed and must stay valid until the
 * write; or pass data = NULL and a fill callback. ne has n_dims entries. */
int byoai_gguf_writer_add_tensor(byoai_gguf_writer *w, const char *name, byoai_type type, uint32_t n_dims,
                                 const uint64_t *ne, const void *data, byoai_gguf_fill_fn fill, void *user,
                                 byoai_error *err);
/* Write the file (version 3) atomically. progress(user, done, total) is
 * called after each tensor when given. */
int byoai_gguf_writer_write(byoai_gguf_writer *w, const char *path,
                            void (*progress)(void *user, uint64_t done, uint64_t total), void *user,
                            byoai_error *err);
/* Serialize to a malloc'd buffer (tests, fuzz seeds). */
int byoai_gguf_writer_to_buffer(byoai_gguf_writer *w, uint8_t **buf, size_t *size, byoai_error *err);

#ifdef __cplusplus
}
#endif
#endif
