/*
 * byoai/server.h: `byoai serve`, the OpenAI-compatible API server, the
 * native API and the web app, as a library.
 *
 * Contract
 * - Configuration is one flat set of keys (byoai_server_config_set), the
 *   same names in the config file ("key = value" lines), in the
 *   environment (BYOAI_<KEY>, upper case, '-' as '_') and as command-line
 *   flags (--key value). Later sources override earlier ones: defaults,
 *   then the file, then the environment, then flags (docs/server.md).
 * - byoai_server_start() binds (127.0.0.1 unless configured otherwise),
 *   opens the server database ($BYOAI_HOME/server.db: API keys and
 *   conversations) and returns; requests are served on their own threads.
 *   Models load on first use, in the background of the request that needs
 *   them, and unload after an idle time; each loaded model has one
 *   scheduler thread that decodes all its running requests together in one
 *   batch per step (continuous batching).
 * - byoai_server_shutdown() is graceful: new requests get 503, running
 *   ones may finish until the grace period ends, then they are cancelled.
 * - Every request is validated before any work; a malformed one gets a 4xx
 *   answer in OpenAI's error shape and never affects other requests.
 * - The server owns everything it allocates; byoai_server_free() releases it.
 */
#ifndef BYOAI_SERVER_H
#define BYOAI_SERVER_H

#include "byoai/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BYOAI_SERVER_MAX_MODELS 64
#define BYOAI_SERVER_MAX_KEYS 16
#define BYOAI_SERVER_MAX_ORIGINS 16

/* A model the server knows by name without the store: a file given on the
 * command line (`byoai serve x.gguf --alias NAME`, `--model NAME=PATH`). */
typedef struct byoai_server_model_spec {
    char name[129];
    char path[4096];
    char chat_template[16]; /* a byoai_chat_family name, or "" to detect */
} byoai_server_model_spec;

typedef struct byoai_server_config {
    char host[64];                  /* host: "127.0.0.1" */
    uint16_t port;                  /* port: 8080; 0 picks a free port */
    char home[1024];                /* home: $BYOAI_HOME or the XDG default */
    char db_path[1100];             /* db: server database, "" = HOME/server.db */
    size_t max_body;                /* max-body: bytes per request body (1 MiB) */
    uint32_t max_tokens;            /* max-tokens: cap on generated tokens per request (4096) */
    uint32_t max_messages;          /* max-messages: per chat request (1024) */
    uint32_t request_timeout;       /* request-timeout: seconds per generation request (600) */
    uint32_t idle_timeout;          /* idle-timeout: seconds before an unused model unloads (300; 0 never) */
    uint32_t max_loaded;            /* max-loaded: models loaded at once (2) */
    uint32_t parallel;              /* parallel: sequences decoded together per model (4) */
    uint32_t ctx;                   /* ctx: context tokens per sequence (0: the model's, at most 4096) */
    uint32_t threads;               /* threads: compute threads per model (0: all cores) */
    uint32_t queue;                 /* queue: waiting requests per model before 503 (64) */
    uint32_t shutdown_grace;        /* shutdown-grace: seconds running requests get on SIGTERM (10) */
    /* The prompt cache (docs/server.md): conversations that leave their
     * sequence slot keep their KV in memory, then on disk. */
    double slot_similarity;         /* slot-similarity: share of a prompt a slot must hold to be reused (0.5) */
    uint64_t cache_ram;             /* cache-ram: bytes of KV kept in memory per model beyond the slots (512M) */
    uint64_t cache_disk;            /* cache-disk: bytes of KV kept on disk per model (4G; 0 none) */
    char cache_dir[1024];           /* cache-dir: "" = HOME/cache */
    uint32_t max_connections;       /* max-connections: open connections at most (4096) */
    uint32_t max_connections_per_ip; /* max-connections-per-ip: per client address (64; 0 no limit) */
    uint32_t header_timeout;        /* header-timeout: seconds to send a request's headers (10) */
    uint64_t min_body_rate;         /* min-body-rate: bytes/s a request body must average (1K) */
    bool log_requests;              /* log-requests: one line per request on stderr (true) */
    char log_format[8];             /* log-format: text or json ("text") */
    bool web;                       /* web: serve the web app at / (true) */
    char api_keys[BYOAI_SERVER_MAX_KEYS][256]; /* api-key (repeatable) */
    uint32_t n_api_keys;
    char cors_origins[BYOAI_SERVER_MAX_ORIGINS][256]; /* cors-origin (repeatable, comma lists) */
    uint32_t n_cors_origins;
    byoai_server_model_spec models[BYOAI_SERVER_MAX_MODELS]; /* model NAME=PATH (repeatable) */
    uint32_t n_models;
    /* The private cluster (docs/cluster.md): with `cluster`, the server runs
     * a cluster node for its home (which must have joined one), coordinates
     * the cluster-model entries across the members, and answers requests for
     * any model the cluster runs. */
    bool cluster;                   /* cluster: false */
    char cluster_name[64];          /* cluster-name: this node's name (kept; default host name + id) */
    char cluster_bind[64];          /* cluster-bind: address for links and announcements ("0.0.0.0") */
    uint16_t cluster_port;          /* cluster-port: TCP port for links (47475; 0 picks one) */
    uint16_t cluster_discovery_port; /* cluster-discovery-port: UDP announcements (47474) */
    bool cluster_discovery;         /* cluster-discovery: find members by broadcast (true) */
    char cluster_peers[16][80];     /* cluster-peer HOST:PORT (repeatable) */
    uint32_t n_cluster_peers;
    uint64_t cluster_memory;        /* cluster-memory: bytes offered (0: 90% of free memory) */
    byoai_server_model_spec cluster_models[8]; /* cluster-model NAME=PATH (repeatable): deployed at start */
    uint32_t n_cluster_models;
    char cluster_model_url[1024];   /* cluster-model-url: where members lacking a file fetch its tensors */
    uint32_t cluster_min_nodes;     /* cluster-min-nodes: wait for this many members before deploying (1) */
    char cluster_wire[8];           /* cluster-wire: f32 or f16 hidden states ("f32") */
    double cluster_heartbeat;       /* cluster-heartbeat: seconds (1) */
    double cluster_failure_timeout; /* cluster-failure-timeout: seconds of silence before a member is dead (5) */
    double cluster_step_timeout;    /* cluster-step-timeout: seconds per pipeline step (30) */
    double cluster_test_link_delay_ms; /* cluster-test-link-delay-ms: testing only (0) */
} byoai_server_config;

void byoai_server_config_defaults(byoai_server_config *c);
/* Set one key from text (as in the file, env or flags). Unknown keys and bad
 * values give BYOAI_EINVAL naming the key. */
int byoai_server_config_set(byoai_server_config *c, const char *key, const char *value, byoai_error *err);
/* Read a config file of "key = value" lines (# comments, blank lines). */
int byoai_server_config_load_file(byoai_server_config *c, const char *path, byoai_error *err);
/* Apply BYOAI_<KEY> environment variables for every known key. */
int byoai_server_config_load_env(byoai_server_config *c, byoai_error *err);
/* Add a model by path: name from alias or the file name (lower case, no
 * .gguf). */
int byoai_server_config_add_model(byoai_server_config *c, const char *path, const char *alias, byoai_error *err);
/* The list of keys, for --help and docs: NULL-terminated. */
extern const char *const byoai_server_config_keys[];

typedef struct byoai_server byoai_server;

int byoai_server_start(const byoai_server_config *c, byoai_server **out, byoai_error *err);
/* The same, for a caller that may give up while the server waits before
 * listening (for cluster-min-nodes members): when *cancel becomes non-zero
 * (set from another thread), the start ends with BYOAI_ECANCELED. */
int byoai_server_start_cancellable(const byoai_server_config *c, const int *cancel, byoai_server **out,
                                   byoai_error *err);
uint16_t byoai_server_port(const byoai_server *s);
/* Stop taking requests, give running ones grace_s seconds, cancel the rest,
 * unload models, stop listening. */
void byoai_server_shutdown(byoai_server *s, double grace_s);
void byoai_server_free(byoai_server *s);

/* ---- API keys stored hashed in the server database ----------------------- */
typedef struct byoai_api_key_info {
    int64_t id;
    char name[128];
    char prefix[16];      /* the first characters of the key, to recognise it */
    uint64_t created_at;  /* unix seconds */
    uint64_t last_used_at;
    bool revoked;
} byoai_api_key_info;

/* Create a key: a random secret "byoai-..." written to key_out (once: only
 * its SHA-256 is stored). */
int byoai_api_key_create(const char *db_path, const char *name, char key_out[80], byoai_api_key_info *info,
                         byoai_error *err);
int byoai_api_key_list(const char *db_path, byoai_api_key_info **out, size_t *n, byoai_error *err);
/* Revoke by id (decimal) or by name. */
int byoai_api_key_revoke(const char *db_path, const char *id_or_name, byoai_error *err);
/* The default database path for a home directory (NULL: $BYOAI_HOME / XDG). */
void byoai_server_default_db(const char *home, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
