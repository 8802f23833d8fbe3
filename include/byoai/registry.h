/*
 * byoai/registry.h: model indexes, downloads, installs, publishing.
 *
 * Contract
 * - A registry is static files (index.json, its signature, blobs) that any
 *   web server can host; several registries are configured by name.
 * - Installs download with resume, verify sha256 before a model becomes
 *   visible in the store, check disk space first, and report progress
 *   through a callback (which may cancel by returning non-zero).
 */
#ifndef BYOAI_REGISTRY_H
#define BYOAI_REGISTRY_H

#include "byoai/base.h"
#include "byoai/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Progress of a long operation (download, verification, ...). */
typedef struct byoai_progress {
    const char *phase;     /* "resolving", "downloading", "verifying", "done" */
    const char *what;      /* file or model being worked on */
    uint64_t done, total;  /* bytes (total 0 when unknown) */
    double rate;           /* bytes per second, smoothed */
} byoai_progress;

/* Return non-zero to cancel the operation (it then fails with BYOAI_ECANCELED). */
typedef int (*byoai_progress_fn)(void *user, const byoai_progress *p);

typedef struct byoai_install_opts {
    const char *registry;  /* registry name or URL; NULL: the configured default */
    bool dry_run;          /* resolve and report, download nothing */
    uint64_t max_rate;     /* bytes per second cap, 0 = none */
} byoai_install_opts;

/* Install SPEC: NAME, NAME:VARIANT, or hf:OWNER/REPO/FILE.gguf. Picks the
 * best variant for this machine when none is named. On success *out (when
 * not NULL) describes the installed model. */
int byoai_install(byoai_store *s, const char *spec, const byoai_install_opts *opts, byoai_progress_fn progress,
                  void *user, byoai_store_model *out, byoai_error *err);

#ifdef __cplusplus
}
#endif
#endif
