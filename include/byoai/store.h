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
 *   one ':' before a variant; no '/', no "..", at most 128 bytes; the name and
 *   the variant (at most 63 bytes) start with a letter or digit (no hidden
 *   files, nothing that reads as an option). Anything else is refused with
 *   BYOAI_EINVAL.
 * - Layout under the home: blobs/sha256-<hex> (verified files),
 *   blobs/partial/ (downloads in progress, their locks while held, imports
 *   under way), store.lock (while a command installs or collects garbage),
 *   manifests/NAME.json, cache/registries/ (indexes), config.json, keys/.
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
    uint64_t size;                     /* bytes of the GGUF blob; a bundle's: all its files */
    char registry[64];                 /* where it came from ("default", "local", ...) */
    char revision[64];                 /* registry revision installed, or "" */
    uint64_t installed_at;             /* unix seconds */
    /* bundles: a named set of models with roles, a system prompt and
     * parameters; path/sha256 above are the chat role's model, size is the
     * sum of the members' files (each file counted once) */
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

/* ==== extensions: manifests, blobs, maintenance, bundles ================== */

/* Progress reports (byoai_progress, byoai_progress_fn) are in base.h. */

/* Where an installed file came from. */
typedef struct byoai_origin {
    char registry[64];     /* registry name ("default", "local", "hf", ...) */
    char url[1024];        /* the registry's URL (or "" for local imports) */
    char revision[64];     /* the registry entry's revision, or "" */
    char source[2048];     /* the URL the file was downloaded from, or the imported path */
} byoai_origin;

/* One file of a manifest: a model's GGUF, or a bundle member. */
typedef struct byoai_store_member {
    char role[33];                 /* "model" for a plain model; "chat", "embed", ... in a bundle */
    char model[BYOAI_NAME_MAX + 1];/* the model's name */
    char variant[64];
    char sha256[65];
    uint64_t size;
    char architecture[64];         /* "" when unknown */
    byoai_origin origin;
} byoai_store_member;

/* The manifest of an installed model or bundle ($BYOAI_HOME/manifests/NAME.json). */
typedef struct byoai_manifest {
    bool is_bundle;
    char name[BYOAI_NAME_MAX + 1];
    char variant[64];              /* models: the installed variant ("" when none) */
    char description[1024];
    char license[128];
    byoai_origin origin;           /* models: the file's origin; bundles: the bundle's */
    uint64_t installed_at;
    char system_prompt[4096];      /* bundles */
    char params_json[2048];        /* bundles: a JSON object, "{}" when none */
    size_t n_members;              /* models: 1 */
    byoai_store_member *members;   /* malloc'd, owned by the manifest */
} byoai_manifest;

#define BYOAI_MANIFEST_MAX_MEMBERS 64

/* Parse and validate a manifest (hostile input: every field checked). */
int byoai_manifest_parse(const char *json, size_t len, byoai_manifest *out, byoai_error *err);
/* Serialize to a malloc'd JSON text (NULL on allocation failure). */
char *byoai_manifest_format(const byoai_manifest *m);
void byoai_manifest_free(byoai_manifest *m);
/* Bytes of the files a manifest names, each file counted once. */
uint64_t byoai_manifest_bytes(const byoai_manifest *m);
/* The member a run uses: role "chat", else the first. NULL when empty. */
const byoai_store_member *byoai_manifest_main(const byoai_manifest *m);

/* Read the manifest of an installed model or bundle (NAME, or NAME:VARIANT
 * which must match the installed variant). */
int byoai_store_read_manifest(byoai_store *s, const char *name, byoai_manifest *out, byoai_error *err);
/* Install (or replace) a manifest atomically. Every member's blob must
 * already be in the store with its size (else BYOAI_ENOTFOUND): a manifest
 * never names a file that is not there and verified. */
int byoai_store_write_manifest(byoai_store *s, const byoai_manifest *m, byoai_error *err);

/* Blobs. sha256 is 64 lowercase hex digits. */
bool byoai_store_check_sha256(const char *sha256);
int byoai_store_blob_path(const byoai_store *s, const char *sha256, char *path, size_t cap);
/* True when the blob is in the store with this size (size 0: any). */
bool byoai_store_has_blob(byoai_store *s, const char *sha256, uint64_t size);
/* Where a download of blob sha256 is kept until it is verified. */
int byoai_store_partial_path(const byoai_store *s, const char *sha256, char *path, size_t cap);
/* Move a file whose content the caller has hashed to `sha256` into the store
 * (same file system: rename; the file is fsynced first). */
int byoai_store_commit_blob(byoai_store *s, const char *sha256, const char *tmp_path, byoai_error *err);
/* Add a local file to the store without storing it twice: reflink, else
 * hard link (unless copy_only), else a copy. The content is hashed once
 * (while copying, or after linking) and stored under that hash, returned in
 * sha256_out. *how (may be NULL) gets "present", "reflink", "hardlink" or
 * "copy". */
int byoai_store_link_blob(byoai_store *s, const char *src, bool copy_only, char sha256_out[65], const char **how,
                          byoai_progress_fn progress, void *user, byoai_error *err);

/* Exclusive lock on one blob's download (several installs of the same file
 * share one download). Blocks until free, calling progress with phase
 * "waiting" about once a second (which may cancel). *fd receives the lock,
 * released by byoai_store_unlock_blob. Lock files exist only while held:
 * the last holder removes its file. */
int byoai_store_lock_blob(byoai_store *s, const char *sha256, int *fd, byoai_progress_fn progress, void *user,
                          byoai_error *err);
void byoai_store_unlock_blob(byoai_store *s, const char *sha256, int fd);
/* A shared lock held while installing (gc waits for it), or exclusive for
 * gc; released by byoai_store_unlock (fd < 0: nothing). */
int byoai_store_lock(byoai_store *s, bool exclusive, int *fd, byoai_error *err);
void byoai_store_unlock(byoai_store *s, int fd);

/* Space: the store's size cap ($BYOAI_STORE_MAX_BYTES or config
 * "max_store_bytes"; 0 = none) and the file system's free space. Fails with
 * BYOAI_ENOSPC and a sentence saying what to do when `need` more bytes do
 * not fit. */
int byoai_store_check_space(byoai_store *s, uint64_t need, const char *what, byoai_error *err);
/* Bytes used by verified blobs and by partial downloads. */
void byoai_store_usage(byoai_store *s, uint64_t *blob_bytes, uint64_t *partial_bytes);

/* Garbage collection: remove blobs no manifest names and partial downloads
 * nobody is downloading. */
typedef struct byoai_gc_report {
    uint64_t blobs_removed, blob_bytes;
    uint64_t partials_removed, partial_bytes;
    uint64_t blobs_kept, kept_bytes;
} byoai_gc_report;
int byoai_store_gc(byoai_store *s, bool dry_run, byoai_gc_report *rep, byoai_error *err);

/* Import a local GGUF file as NAME[:VARIANT] (validated as GGUF first). */
typedef struct byoai_import_opts {
    bool copy_only;          /* never link: always copy */
    const char *description; /* or NULL */
    const char *license;     /* or NULL: general.license from the file */
} byoai_import_opts;
int byoai_store_import(byoai_store *s, const char *path, const char *name, const byoai_import_opts *opts,
                       byoai_progress_fn progress, void *user, byoai_store_model *out, const char **how,
                       byoai_error *err);

/* Bundles. A member spec names an installed model and its role. */
typedef struct byoai_bundle_member_spec {
    const char *role;
    const char *model;
} byoai_bundle_member_spec;
/* Roles: 1-32 of [a-z0-9_-], unique within a bundle. params_json: a JSON
 * object of run parameters (NULL or "{}" for none). */
int byoai_store_bundle_create(byoai_store *s, const char *name, const byoai_bundle_member_spec *members, size_t n,
                              const char *system_prompt, const char *params_json, byoai_error *err);
/* One archive (POSIX tar) with the bundle's manifest and every blob. */
int byoai_store_bundle_export(byoai_store *s, const char *name, const char *out_path, byoai_progress_fn progress,
                              void *user, byoai_error *err);
/* Verify and install an archive made by byoai_store_bundle_export; every
 * blob's sha256 is checked before it is stored. as_name: NULL to keep the
 * archive's name. */
int byoai_store_bundle_import(byoai_store *s, const char *path, const char *as_name, byoai_progress_fn progress,
                              void *user, byoai_store_model *out, byoai_error *err);

/* Parse a byte count: "1234", "10K", "1.5M", "2G", "1T" (powers of 1024). */
int byoai_parse_bytes(const char *text, uint64_t *out);
/* Format a byte count for people: "512 B", "1.1 MiB". Returns buf. */
const char *byoai_format_bytes(uint64_t n, char *buf, size_t cap);

/* Convert a manifest to the flat view (the main member's file). */
void byoai_store_model_from_manifest(const byoai_store *s, const byoai_manifest *m, byoai_store_model *out);

#ifdef __cplusplus
}
#endif
#endif
