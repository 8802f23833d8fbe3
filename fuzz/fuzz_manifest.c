/* libFuzzer target: the manifest parser (manifests come back from disk and
 * inside bundle archives from other machines) and the bundle archive reader
 * (a tar stream: headers, sizes, names). */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byoai/store.h"

static char dir[64];
static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void cleanup(void) { nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    byoai_error err;
    byoai_manifest m;
    if (byoai_manifest_parse((const char *)data, size, &m, &err) == 0) {
        /* what parses must format and parse again to the same thing */
        char *text = byoai_manifest_format(&m);
        byoai_manifest m2;
        if (!text || byoai_manifest_parse(text, strlen(text), &m2, &err) != 0) abort();
        if (m2.n_members != m.n_members || strcmp(m2.name, m.name)) abort();
        byoai_manifest_free(&m2);
        free(text);
        byoai_manifest_main(&m);
        byoai_manifest_free(&m);
    }
    /* the same bytes as a bundle archive, into a throwaway store */
    static byoai_store *s;
    if (!s) {
        snprintf(dir, sizeof dir, "/tmp/byoai-fuzz-store-%d", (int)getpid());
        if (byoai_store_open(dir, &s, &err) != 0) return 0;
        atexit(cleanup);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/in.tar", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    byoai_store_bundle_import(s, path, NULL, NULL, NULL, NULL, &err);
    unlink(path);
    return 0;
}
