/*
 * byoai/store.h: the models installed on this machine.
 *
 * Contract
 * - The store lives under $BYOAI_HOME (default: $XDG_DATA_HOME/byoai, or
 *   ~/.local/share/byoai). Model files are content-addressed blobs
 *   (blobs/sha256-<hex>); each installed model or bundle has a small JSON
 *   manifest that names its blobs. A file is stored once however many
 *   models use it.
 * - Every change is atomic: a manifest is written to a temporary file,
 *   fsynced and renamed, and only after every blob it names is verified
 *   (sha256) and in place. A crash or kill at any point leaves the store
 *   consistent: a model is either fully installed or not visible.
 * - Names are validated: lowercase letters, digits, '.', '-', '_' and at most
 *   one ':' before a variant; no '/', no "..", at most 128 bytes. Anything
 *   else is refused with BYOAI_EINVAL.
 * - A store handle may be used from several threads; several processes may
 *   use the same store at once (file locks guard concurrent writers).
 *
 * The registry side (downloading, indexes, publishing) is in registry.h.
 */
#ifndef BYOAI_STORE_H
#define BYOAI_STORE_H

#include "byoai/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct byoai_store byoai_store;

/* Open (creating directories as needed). home NULL: $BYOAI_HOME, else the
 * XDG default. */
int byoai_store_open(const char *home, byoai_store **out, byoai_error *err);
void byoai_store_close(byoai_store *s);
const char *byoai_store_home(const byoai_store *s);

#define BYOAI_NAME_MAX 128

typedef struct byoai_store_model {
    char name[BYOAI_NAME_MAX + 1];     /* "stories260k" */
    char variant[64];                  /* "q4_k_m", "f32", ... or "" */
    char path[4096];                   /* absolute path of the model's GGUF blob */
    char sha256[65];
    uint64_t size;                     /* bytes of the GGUF blob */
    char registry[64];                 /* where it came from ("default", "local", ...) */
    char revision[64];                 /* registry revision installed, or "" */
    uint64_t installed_at;             /* unix seconds */
    /* bundles: a named set of models with roles, a system prompt and
     * parameters; path/sha256/size above are the chat role's model */
    bool is_bundle;
    char system_prompt[4096];          /* "" when none */
    char params_json[2048];            /* JSON object of sampling parameters, "{}" when none */
} byoai_store_model;

/* Validate a model name (NAME or NAME:VARIANT); BYOAI_EINVAL with a message. */
int byoai_store_check_name(const char *name, byoai_error *err);

/* Every installed model and bundle, sorted by name. *out is malloc'd. */
int byoai_store_list(byoai_store *s, byoai_store_model **out, size_t *n, byoai_error *err);
/* Look up an installed model or bundle by NAME or NAME:VARIANT;
 * BYOAI_ENOTFOUND with a message that suggests `byoai install NAME`. */
int byoai_store_find(byoai_store *s, const char *name, byoai_store_model *out, byoai_error *err);
/* Uninstall a model or bundle (blobs are reclaimed by byoai_store_gc). */
int byoai_store_remove(byoai_store *s, const char *name, byoai_error *err);

/* Resolve what a user typed as MODEL: an existing file path is used as is;
 * otherwise an installed name. Fills path (and *info when not NULL). */
int byoai_store_resolve(byoai_store *s, const char *arg, char *path, size_t cap, byoai_store_model *info,
                        byoai_error *err);

#ifdef __cplusplus
}
#endif
#endif
