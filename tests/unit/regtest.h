/* Helpers shared by the store and registry unit tests. */
#ifndef BYOAI_REGTEST_H
#define BYOAI_REGTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"
#include "testutil.h"

/* A small valid GGUF (llama metadata, one 2-D F32 tensor of n floats from seed). */
static inline void rt_make_gguf(const char *path, uint64_t seed, uint64_t n, const char *license) {
    byoai_gguf_writer *w;
    byoai_error err;
    assert_int_equal(byoai_gguf_writer_new(&w, &err), 0);
    byoai_gguf_writer_set_str(w, "general.architecture", "llama");
    byoai_gguf_writer_set_u32(w, "llama.context_length", 256);
    byoai_gguf_writer_set_u32(w, "llama.embedding_length", 64);
    byoai_gguf_writer_set_u32(w, "llama.block_count", 1);
    byoai_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    if (license) byoai_gguf_writer_set_str(w, "general.license", license);
    float *data = malloc(n * sizeof *data);
    for (uint64_t i = 0; i < n; i++) data[i] = tu_rand_float(&seed);
    uint64_t ne[2] = {64, n / 64};
    assert_int_equal(byoai_gguf_writer_add_tensor(w, "weight", BYOAI_TYPE_F32, 2, ne, data, NULL, NULL, &err), 0);
    assert_int_equal(byoai_gguf_writer_write(w, path, NULL, NULL, &err), 0);
    byoai_gguf_writer_free(w);
    free(data);
}

static inline void rt_write(const char *path, const char *text) {
    byoai_error err;
    assert_int_equal(byoai_fs_write_atomic(path, text, strlen(text), &err), 0);
}

#endif
