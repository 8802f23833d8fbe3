/*
 * byoai/registry.h: model indexes, downloads, installs, publishing.
 *
 * Contract
 * - A registry is static files (index.json, its signature, blobs) that any
 *   web server can host; several registries are configured by name.
 * - Installs download with resume, verify sha256 before a model becomes
 *   visible in the store, check disk space first, and report progress
 *   through a callback (which may cancel by returning non-zero).
 * - index.json from the network is hostile input: byoai_index_parse checks
 *   every field (types, sizes, names, URL schemes, sha256 format) and names
 *   the first bad one; a bad index never replaces a good cached one.
 * - The layout of a registry directory, the index format and the publish
 *   protocol are documented in docs/index-format.md and docs/registry.md.
 *
 * Memory: every out-pointer documented "malloc'd" is the caller's to free
 * with the matching *_free(); strings inside a byoai_index live as long as
 * the index.
 */
#ifndef BYOAI_REGISTRY_H
#define BYOAI_REGISTRY_H

#include "byoai/base.h"
#include "byoai/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* byoai_progress and byoai_progress_fn are declared in store.h. */

typedef struct byoai_install_plan byoai_install_plan;

typedef struct byoai_install_opts {
    const char *registry;  /* registry name or URL; NULL: the configured default */
    bool dry_run;          /* resolve and report, download nothing */
    uint64_t max_rate;     /* bytes per second cap, 0 = none */
    /* extensions (zero = default) */
    const char *as_name;   /* install under this name (hf: installs; default: from the file name) */
    unsigned retries;      /* attempts after a failure (0: 5) */
    bool offline;          /* never touch the network (also $BYOAI_OFFLINE=1) */
    byoai_install_plan *plan; /* when set: filled once resolved, before the "resolved" progress call */
    bool refresh;          /* fetch the registry's index even when the cached one is recent */
} byoai_install_opts;

/* Install SPEC: NAME, NAME:VARIANT, or hf:OWNER/REPO/FILE.gguf. Picks the
 * best variant for this machine when none is named. On success *out (when
 * not NULL) describes the installed model. */
int byoai_install(byoai_store *s, const char *spec, const byoai_install_opts *opts, byoai_progress_fn progress,
                  void *user, byoai_store_model *out, byoai_error *err);

/* What an install downloads and needs (filled before anything is fetched). */
struct byoai_install_plan {
    char name[BYOAI_NAME_MAX + 1];
    char variant[64];
    char registry[64];
    char revision[64];
    bool is_bundle;
    size_t n_files, n_present;  /* files in total, already in the store */
    uint64_t total_bytes;       /* all files */
    uint64_t download_bytes;    /* still to download (partial downloads counted as done) */
    uint64_t ram_bytes;         /* memory the chosen variant needs to run */
    char why[256];              /* why this variant was chosen */
    char unsupported_arch[32];  /* the index's architecture when this build cannot run it (else "") */
};

/* ---- the machine ----------------------------------------------------------- */
typedef struct byoai_machine {
    uint64_t ram_bytes;   /* physical memory ($BYOAI_RAM_BYTES overrides) */
    int cpus;
    const char *simd;     /* "avx512", "avx2", "neon" or "scalar" */
    double read_bw;       /* memory read bandwidth in bytes/s; 0 = not measured */
} byoai_machine;
void byoai_machine_get(byoai_machine *m);
/* Measure read_bw (a fraction of a second; $BYOAI_READ_BW, e.g. "20G",
 * overrides): generation streams every weight once per token, so a
 * variant's speed here is about read_bw / its size. */
void byoai_machine_measure(byoai_machine *m);

/* Generation speed a variant choice aims for when the machine's bandwidth
 * is known: faster than people read. */
#define BYOAI_TARGET_TOKENS_PER_S 8.0

/* ---- registries -------------------------------------------------------------- */
typedef struct byoai_registry_conf {
    char name[64];
    char url[2048];       /* https://..., http://..., file:///..., or "builtin:" */
    char key[65];         /* hex ed25519 public key that signs index.json, or "" */
    bool is_default;
} byoai_registry_conf;

/* The configured registries, the default first: $BYOAI_HOME/config.json, or
 * the built-in curated index when none is configured; $BYOAI_REGISTRY=URL
 * (and $BYOAI_REGISTRY_KEY) replace the list with one registry "default".
 * *out is malloc'd. */
int byoai_registry_list(byoai_store *s, byoai_registry_conf **out, size_t *n, byoai_error *err);
/* A registry by name, or a URL used as an unnamed registry; NULL/"" is the default. */
int byoai_registry_get(byoai_store *s, const char *name_or_url, byoai_registry_conf *out, byoai_error *err);
/* Edit $BYOAI_HOME/config.json (atomically). key_hex may be NULL. */
int byoai_registry_config_add(byoai_store *s, const char *name, const char *url, const char *key_hex,
                              bool make_default, byoai_error *err);
int byoai_registry_config_remove(byoai_store *s, const char *name, byoai_error *err);
/* Check a registry URL (scheme http, https or file; no credentials, spaces, control bytes). */
int byoai_registry_check_url(const char *url, byoai_error *err);

/* ---- the index ------------------------------------------------------------- */
#define BYOAI_INDEX_SCHEMA_VERSION 1
#define BYOAI_INDEX_MAX_BYTES (16u << 20)

typedef struct byoai_index_variant {
    const char *name;          /* "q4_k_m" */
    const char *quantization;  /* "Q4_K_M" */
    uint64_t size;             /* exact bytes; 0 when unknown (then verified by the Hub) */
    uint64_t approx_size;      /* size, or the index's approximate size */
    const char *sha256;        /* NULL: the Hub's X-Linked-Etag is the checksum */
    const char *url;           /* absolute (resolved against the index's URL) */
    const char **mirrors;
    size_t n_mirrors;
    uint64_t min_ram;          /* bytes of memory to run it; 0 when not given */
} byoai_index_variant;

typedef struct byoai_index_model {
    const char *name, *description, *architecture, *license, *revision, *updated;
    const char *publisher;     /* NULL when not published through a registry */
    const char *homepage;      /* or NULL */
    const char **tags;
    size_t n_tags;
    uint64_t parameters;
    uint64_t context_length;
    byoai_index_variant *variants;
    size_t n_variants;
} byoai_index_model;

typedef struct byoai_index_bundle_member {
    const char *role, *model;
    const char *variant;       /* or NULL: the best for the machine */
} byoai_index_bundle_member;

typedef struct byoai_index_bundle {
    const char *name, *description, *revision, *updated;
    const char *system;        /* or NULL */
    char *params_json;         /* "{}" when none (owned by the index) */
    const char **tags;
    size_t n_tags;
    byoai_index_bundle_member *members;
    size_t n_members;
} byoai_index_bundle;

typedef struct byoai_index {
    int schema_version;
    const char *name;          /* or NULL */
    const char *updated;       /* or NULL */
    byoai_index_model *models;
    size_t n_models;
    byoai_index_bundle *bundles;
    size_t n_bundles;
    void *impl;                /* private */
} byoai_index;

typedef struct byoai_index_parse_opts {
    /* The index's own URL: relative variant URLs resolve against it, and
     * file:// URLs are allowed only when it is a file:// URL itself. NULL:
     * relative URLs stay relative and file:// URLs are allowed. */
    const char *base_url;
} byoai_index_parse_opts;

/* Parse and validate an index. On failure err names the first bad field,
 * e.g. "models[2] (\"tiny\").variants[0].sha256: must be 64 lowercase hex digits". */
int byoai_index_parse(const char *json, size_t len, const byoai_index_parse_opts *opts, byoai_index **out,
                      byoai_error *err);
void byoai_index_free(byoai_index *ix);
const byoai_index_model *byoai_index_find_model(const byoai_index *ix, const char *name);
const byoai_index_bundle *byoai_index_find_bundle(const byoai_index *ix, const char *name);

/* Memory a variant needs: min_ram, else an estimate from its size. */
uint64_t byoai_index_variant_ram(const byoai_index_variant *v);
/* Choose a variant: want (NULL = best for the machine) must exist; best =
 * the largest variant whose memory need is at most 60% of RAM, preferring
 * quantized files over 16/32-bit floats; else the smallest that fits in RAM.
 * why (may be NULL, 256 bytes) explains the choice. */
int byoai_index_choose_variant(const byoai_index_model *m, const byoai_machine *mc, const char *want, size_t *idx,
                               char *why, byoai_error *err);

typedef struct byoai_search_hit {
    const byoai_index_model *model;   /* one of model/bundle is set */
    const byoai_index_bundle *bundle;
    int score;
} byoai_search_hit;
/* Rank the index's models and bundles against QUERY (words, all must match
 * the name, description or tags; name matches rank first). "" lists all.
 * *hits is malloc'd. */
int byoai_index_search(const byoai_index *ix, const char *query, byoai_search_hit **hits, size_t *n);

/* Load a registry's index, from the network when the cache is older than
 * $BYOAI_INDEX_TTL seconds (default 600) or `refresh`, revalidating with
 * ETag / If-Modified-Since; from the cache when offline or unreachable. A
 * new index that fails validation or its signature is an error, and the
 * cache keeps the old one. */
typedef struct byoai_index_source {
    bool from_cache;        /* the index came from the cache */
    bool unreachable;       /* ... because the registry could not be reached */
    uint64_t fetched_at;    /* unix seconds the cached copy was fetched */
    char note[512];         /* a sentence for the user, or "" */
} byoai_index_source;
int byoai_index_load(byoai_store *s, const byoai_registry_conf *r, bool refresh, bool offline, byoai_index **out,
                     byoai_index_source *src, byoai_error *err);
/* How old an index taken from the cache without asking the registry is
 * ("12 minutes"), or "" when it is current (just fetched or revalidated).
 * Returns buf. */
const char *byoai_index_age(const byoai_index_source *src, char *buf, size_t cap);

/* Validate an index file: schema, unique names, sane sizes, URL schemes;
 * with deep, download every file (to a temporary store) and verify it. */
int byoai_index_validate_file(const char *path, bool deep, byoai_progress_fn progress, void *user,
                              byoai_error *err);

/* ---- updates --------------------------------------------------------------- */
typedef struct byoai_update_item {
    char name[BYOAI_NAME_MAX + 1];
    bool is_bundle;
    char registry[64];
    char installed_revision[64], available_revision[64];
    bool outdated;              /* something changed */
    size_t changed_files;       /* files whose content changed */
    uint64_t download_bytes;    /* bytes to download to update */
    char note[256];             /* why it cannot be checked, or "" */
    bool unchecked;             /* it could not be compared with its registry's current index (note says why) */
} byoai_update_item;
/* Check installed models (names NULL: all). *items is malloc'd. */
int byoai_update_check(byoai_store *s, const char *const *names, size_t n_names, const byoai_install_opts *opts,
                       byoai_update_item **items, size_t *n_items, byoai_error *err);
/* Update one installed model or bundle: download only changed files, then
 * replace the manifest. *item (may be NULL) reports what changed. */
int byoai_update(byoai_store *s, const char *name, const byoai_install_opts *opts, byoai_progress_fn progress,
                 void *user, byoai_update_item *item, byoai_error *err);

/* ---- keys and signatures (ed25519, libsodium) ------------------------------ */
typedef struct byoai_key {
    uint8_t pk[32];
    uint8_t sk[64];             /* zero for a public-only key */
    char name[64];              /* publisher name */
} byoai_key;
/* Names of publishers: 1-63 of [a-z0-9_-]. */
int byoai_key_check_name(const char *name, byoai_error *err);
int byoai_key_generate(const char *name, byoai_key *out, byoai_error *err);
/* Secret key file (mode 0600): "byoai-ed25519-secret NAME HEX(sk)". */
int byoai_key_save_secret(const char *path, const byoai_key *k, byoai_error *err);
int byoai_key_load_secret(const char *path, byoai_key *out, byoai_error *err);
/* Public key text: "byoai-ed25519 HEX(pk) NAME" (or just 64 hex digits). */
void byoai_key_public_text(const byoai_key *k, char out[160]);
int byoai_key_parse_public(const char *text, byoai_key *out, byoai_error *err);
/* Detached signatures as 128 hex digits. */
void byoai_sign(const byoai_key *k, const void *msg, size_t len, char sig_hex[129]);
int byoai_verify(const uint8_t pk[32], const void *msg, size_t len, const char *sig_hex, byoai_error *err);
/* $BYOAI_HOME/keys/publisher.key */
int byoai_key_default_path(const byoai_store *s, char *path, size_t cap);

/* ---- publishing ------------------------------------------------------------ */
typedef struct byoai_publish_opts {
    const char *registry;       /* registry base URL (http/https) or configured name */
    const char *name;           /* model name */
    const char *variant;        /* NULL: from the file's quantization */
    const char *description, *license; /* NULL: from the GGUF metadata */
    const char *tags;           /* comma-separated, or NULL */
    const char *key_path;       /* NULL: byoai_key_default_path */
    uint64_t timestamp;         /* 0: now (tests pin it) */
    const char *nonce;          /* NULL: random (tests pin it) */
    uint64_t max_rate;
} byoai_publish_opts;
typedef struct byoai_publish_result {
    char name[BYOAI_NAME_MAX + 1], variant[64], sha256[65], revision[64], publisher[64];
    uint64_t size;
    int http_status;
} byoai_publish_result;
int byoai_publish(byoai_store *s, const char *file, const byoai_publish_opts *o, byoai_progress_fn progress,
                  void *user, byoai_publish_result *res, byoai_error *err);

/* ---- hosting a registry (server side) ------------------------------------ */
/* Create DIR's layout (index.json, index.json.sig, blobs/, publishers/,
 * keys/registry.key); existing files are kept. *pub (may be NULL) gets the
 * registry's public key text. */
int byoai_registry_init(const char *dir, char pub[160], byoai_error *err);
/* Allow a publisher: writes DIR/publishers/NAME.pub. */
int byoai_registry_add_publisher(const char *dir, const char *name, const char *pubkey_text, byoai_error *err);
/* Validate DIR/index.json and (re)write index.json.sig with the registry key. */
int byoai_registry_sign(const char *dir, byoai_error *err);

typedef struct byoai_serve_opts {
    const char *bind_addr;      /* NULL: 127.0.0.1 */
    uint16_t port;              /* 0: any free port */
    uint64_t max_upload;        /* 0: 64 GiB */
    unsigned max_skew_s;        /* accepted clock difference for publish requests (0: 300) */
    void (*log)(void *user, const char *line); /* one line per request, or NULL */
    void *log_user;
} byoai_serve_opts;
typedef struct byoai_registry_server byoai_registry_server;
int byoai_registry_serve_start(const char *dir, const byoai_serve_opts *o, byoai_registry_server **out,
                               byoai_error *err);
uint16_t byoai_registry_serve_port(const byoai_registry_server *srv);
void byoai_registry_serve_stop(byoai_registry_server *srv);

#ifdef __cplusplus
}
#endif
#endif
