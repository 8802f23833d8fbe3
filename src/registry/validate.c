/* `byoai index validate FILE [--deep]`: the parser's checks, and with deep
 * every file downloaded into a temporary store and verified. */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byoai/gguf.h"
#include "registry_internal.h"

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

int byoai_index_validate_file(const char *path, bool deep, byoai_progress_fn progress, void *user,
                              byoai_error *err) {
    char *text;
    size_t len;
    int rc = byoai_fs_read_all(path, BYOAI_INDEX_MAX_BYTES, &text, &len, err);
    if (rc) return rc;
    char real[PATH_MAX], base[PATH_MAX + 16];
    if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
    snprintf(base, sizeof base, "file://%s", real);
    byoai_index *ix;
    byoai_index_parse_opts po = {.base_url = base};
    rc = byoai_index_parse(text, len, &po, &ix, err);
    free(text);
    if (rc) return byoai_error_prefix(err, "%s", path);
    if (!deep) {
        byoai_index_free(ix);
        return 0;
    }
    const char *t = getenv("TMPDIR");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/byoai-validate-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        byoai_index_free(ix);
        return byoai_error_set(err, BYOAI_EIO, "cannot create a temporary directory in %s", t ? t : "/tmp");
    }
    byoai_store *s;
    if ((rc = byoai_store_open(dir, &s, err))) goto out;
    for (size_t i = 0; i < ix->n_models && !rc; i++) {
        const byoai_index_model *m = &ix->models[i];
        for (size_t k = 0; k < m->n_variants && !rc; k++) {
            const byoai_index_variant *v = &m->variants[k];
            const char *urls[17] = {v->url};
            size_t n = 1;
            for (size_t j = 0; j < v->n_mirrors; j++) urls[n++] = v->mirrors[j];
            char what[200], sha[65], p[PATH_MAX];
            snprintf(what, sizeof what, "%s:%s", m->name, v->name);
            reg_download_opts o = {.what = what, .retries = 2};
            uint64_t size;
            rc = reg_download_blob(s, urls, n, v->sha256, v->size, &o, progress, user, sha, &size, err);
            if (rc) {
                byoai_error_prefix(err, "%s", what);
                break;
            }
            byoai_store_blob_path(s, sha, p, sizeof p);
            byoai_gguf *g;
            if ((rc = byoai_gguf_open(p, &g, err))) byoai_error_prefix(err, "%s is not a valid GGUF file", what);
            else byoai_gguf_close(g);
            remove(p); /* one file at a time on disk */
        }
    }
    byoai_store_close(s);
out:
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    byoai_index_free(ix);
    return rc;
}
