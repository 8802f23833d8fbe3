/* libFuzzer target: the index.json parser and validator (hostile input from
 * any registry), and everything that walks a parsed index: search, variant
 * choice, lookups. Any crash, leak or sanitizer report is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    byoai_error err;
    byoai_index *ix = NULL;
    /* twice: as a remote index (relative URLs resolve, file:// refused) and as a local file */
    byoai_index_parse_opts remote = {.base_url = "https://registry.example/models/index.json"};
    for (int pass = 0; pass < 2; pass++) {
        if (byoai_index_parse((const char *)data, size, pass ? NULL : &remote, &ix, &err) != 0) continue;
        byoai_machine mc = {.ram_bytes = 8ull << 30, .cpus = 4, .simd = "avx2"};
        for (size_t i = 0; i < ix->n_models; i++) {
            const byoai_index_model *m = &ix->models[i];
            size_t v;
            byoai_index_choose_variant(m, &mc, NULL, &v, NULL, &err);
            byoai_index_choose_variant(m, &mc, m->variants[0].name, &v, NULL, &err);
            if (byoai_index_find_model(ix, m->name) != m) abort();
        }
        for (size_t i = 0; i < ix->n_bundles; i++)
            if (!byoai_index_find_bundle(ix, ix->bundles[i].name)) abort();
        byoai_search_hit *hits;
        size_t n;
        const char *queries[] = {"", "chat", "q4 llama", "a"};
        for (size_t q = 0; q < 4; q++)
            if (byoai_index_search(ix, queries[q], &hits, &n) == 0) free(hits);
        byoai_index_free(ix);
    }
    return 0;
}
