/* libFuzzer target: the GGUF reader, and the model describe/load paths on
 * whatever it accepts. Any crash, leak or sanitizer report is a bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byoai/gguf.h"
#include "byoai/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    byoai_gguf *g = NULL;
    byoai_error err;
    if (byoai_gguf_parse(data, size, &g, &err) != 0) return 0;
    /* walk everything the reader hands out */
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const byoai_gguf_value *v = &g->kv[i].value;
        if (v->type == BYOAI_GGUF_STRING && v->v.str.len) sink += (uint8_t)v->v.str.ptr[v->v.str.len - 1];
        if (v->type == BYOAI_GGUF_ARRAY && v->v.arr.count && byoai_gguf_vtype_size(v->v.arr.elem_type))
            sink += (uint64_t)byoai_gguf_arr_i64(v, v->v.arr.count - 1);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].size) sink += ((const uint8_t *)g->tensors[i].data)[g->tensors[i].size - 1];
    byoai_model_info info;
    byoai_model_describe(g, 256, &info, &err);
    if (sink == 42) info.n_params++; /* keep the reads above */
    byoai_gguf_close(g);

    /* the full model loader reads files: give it this one */
    char path[64];
    snprintf(path, sizeof path, "/tmp/byoai-fuzz-%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    byoai_model *m;
    if (byoai_model_load(path, NULL, &m, &err) == 0) {
        byoai_context *c;
        byoai_context_params cp = {.n_ctx = 16, .n_threads = 1, .n_batch = 4};
        if (byoai_context_new(m, &cp, &c, &err) == 0) {
            int32_t tok = 0;
            byoai_batch b = {.n_tokens = 1, .tokens = &tok};
            byoai_decode(c, &b, &err);
            byoai_context_free(c);
        }
        byoai_model_free(m);
    }
    unlink(path);
    return 0;
}
