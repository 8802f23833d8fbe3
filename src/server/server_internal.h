/*
 * Internal pieces of the API server, shared by the files of src/server/:
 *
 *   request.c        parse and validate OpenAI request bodies
 *   scheduler.c      per-model continuous batching over one context
 *   models.c         which models exist (files, the store), loading, idle unloading, the cap
 *   install.c        POST /api/models/install: byoai_install with SSE progress
 *   openai.c         /v1/... handlers, SSE streams
 *   api.c            routing, auth, CORS, native endpoints, static files
 *   metrics.c        counters and the Prometheus text
 *   db.c             the server database (SQLite)
 *   auth.c           API keys, hashed in the database
 *   conversations.c  the web app's conversations (SQLite + REST)
 *   config.c         config keys from file, environment, flags
 *   web.c            the embedded web app files
 *   server.c         start, graceful shutdown
 */
#ifndef BYOAI_SERVER_INTERNAL_H
#define BYOAI_SERVER_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>

#include "byoai/chat.h"
#include "byoai/grammar.h"
#include "byoai/http.h"
#include "byoai/model.h"
#include "byoai/sampler.h"
#include "byoai/registry.h"
#include "byoai/server.h"
#include "byoai/store.h"
#include "byoai/tokenizer.h"

/* ---- errors in OpenAI's shape ------------------------------------------------ */
typedef struct srv_error {
    int status;        /* HTTP status */
    char type[40];     /* invalid_request_error, authentication_error, not_found_error, server_error, ... */
    char code[48];     /* machine-readable code or "" */
    char param[64];    /* the request field at fault or "" */
    char message[600];
} srv_error;

int srv_err(srv_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* {"error": {"message", "type", "param", "code"}} */
json_t *srv_error_json(const srv_error *e);
void srv_send_error(byoai_http_req *r, const srv_error *e);
/* Send a JSON value (steals the reference). */
void srv_send_json(byoai_http_req *r, int status, json_t *j);

/* ---- request bodies (request.c) ------------------------------------------------ */
#define SRV_MAX_STOP 4
#define SRV_MAX_STOP_LEN 256
#define SRV_MAX_TOP_LOGPROBS 20
#define SRV_MAX_EMBED_INPUTS 256

typedef struct srv_sampling {
    float temperature, top_p, min_p, repeat_penalty;
    float frequency_penalty, presence_penalty;
    int32_t top_k;
    bool has_seed;
    uint64_t seed;
    int64_t max_tokens;          /* -1: not given */
    char *stop[SRV_MAX_STOP];    /* owned */
    size_t n_stop;
    bool logprobs;
    int top_logprobs;            /* 0..20 */
    bool json_mode;
    bool stream, include_usage;
    bool echo;                   /* completions: prompt in front of the text */
} srv_sampling;

typedef struct srv_limits {
    uint32_t max_messages;
    uint32_t max_tokens;
} srv_limits;

typedef struct srv_request {
    char model[257];
    srv_sampling s;
    /* chat */
    byoai_chat_message *messages;
    size_t n_messages;
    char **owned;                /* buffers messages point into */
    size_t n_owned;
    /* completions: text, or token ids */
    const char *prompt;
    size_t prompt_len;
    int32_t *prompt_tokens;
    size_t n_prompt_tokens;
    /* embeddings: each input is text or token ids */
    size_t n_inputs;
    const char **input_text;
    size_t *input_len;
    int32_t **input_tokens;
    size_t *input_ntok;
    bool base64;
    json_t *root;                /* the parsed body: strings point into it */
} srv_request;

int srv_parse_chat(const char *body, size_t len, const srv_limits *lim, srv_request *r, srv_error *e);
int srv_parse_completion(const char *body, size_t len, const srv_limits *lim, srv_request *r, srv_error *e);
int srv_parse_embeddings(const char *body, size_t len, srv_request *r, srv_error *e);
void srv_request_free(srv_request *r);
/* Parse a body as a JSON object (UTF-8 checked first); 400 with a clear message otherwise. */
json_t *srv_parse_object(const char *body, size_t len, srv_error *e);

/* ---- metrics (metrics.c) --------------------------------------------------------- */
typedef struct srv_metrics srv_metrics;
int srv_metrics_new(srv_metrics **out);
void srv_metrics_free(srv_metrics *m);
void srv_metrics_request(srv_metrics *m, const char *route, int status, double seconds);
void srv_metrics_tokens(srv_metrics *m, uint64_t prompt, uint64_t generated);
void srv_metrics_first_token(srv_metrics *m, double seconds);
void srv_metrics_cancelled(srv_metrics *m);
/* Append the Prometheus text; gauges come from the caller. */
typedef struct srv_gauges {
    uint64_t queue_depth, active_sequences, sequence_slots, loaded_models, known_models, rss_bytes;
    uint64_t open_requests;
} srv_gauges;
char *srv_metrics_render(srv_metrics *m, const srv_gauges *g);
/* Resident memory of this process in bytes (from /proc). */
uint64_t srv_rss_bytes(void);

/* ---- jobs and the scheduler (scheduler.c) ---------------------------------------- */
/* What one generation step released to the client. */
typedef struct srv_piece {
    char *text;          /* UTF-8 text released by this step (may be empty) */
    size_t len;
    int32_t token;       /* the token generated, -1 for a flush of held-back text */
    float logprob;
    uint8_t n_top;
    int32_t top_ids[SRV_MAX_TOP_LOGPROBS];
    float top_lps[SRV_MAX_TOP_LOGPROBS];
} srv_piece;

typedef struct srv_job {
    int refs;                    /* atomic */
    /* input: set before submit, then read-only */
    int32_t *prompt;
    uint32_t n_prompt;
    bool embed;                  /* compute a mean-pooled embedding, generate nothing */
    srv_sampling s;              /* stop strings owned by the job */
    uint32_t max_new;            /* tokens to generate at most (0: until the context is full) */
    double deadline;             /* monotonic seconds; 0 = none */
    /* output, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_piece *pieces;
    size_t n_pieces, cap_pieces;
    bool done;
    char finish[16];             /* "stop", "length", "cancelled", "error" */
    srv_error err;               /* status != 0 when the job failed */
    uint32_t n_gen, n_prompt_eval;
    uint32_t n_prompt_cached;    /* prompt tokens reused from the slot's cache */
    double t_submit, t_start, t_first, t_end;
    float *embedding;            /* n_embd, L2-normalised */
    uint32_t n_embd;
    int cancelled;               /* atomic: set by the client side */
} srv_job;

srv_job *srv_job_new(void);
/* Append a piece to a job and wake its readers (the scheduler, and the
 * cluster runner): text is sanitised to valid UTF-8. */
void srv_job_push_piece(srv_job *j, const char *text, size_t len, int32_t token, float lp, const int32_t *ids,
                        const float *lps, int n_top);
/* Mark a job done with a finish reason ("stop", "length", "cancelled",
 * "error") and an optional error, and wake its readers. */
void srv_job_end(srv_job *j, const char *reason, const srv_error *err);
void srv_job_ref(srv_job *j);
void srv_job_unref(srv_job *j);
void srv_job_cancel(srv_job *j);
/* Wait until the job has more than *seen pieces or is done, at most
 * timeout_s. Returns true when there is something new (pieces or done). */
bool srv_job_wait(srv_job *j, size_t seen, double timeout_s);

typedef struct srv_sched srv_sched;
typedef struct srv_sched_params {
    uint32_t n_seq, n_ctx, n_batch, queue_max;
    int n_threads;
} srv_sched_params;

int srv_sched_new(byoai_model *m, const srv_sched_params *p, srv_metrics *met, srv_sched **out, byoai_error *err);
/* Queue a job (takes a reference). 503 when the queue is full or stopping,
 * 400 when the prompt does not fit the context. */
int srv_sched_submit(srv_sched *s, srv_job *j, srv_error *e);
/* Cancel everything, stop the thread. */
void srv_sched_stop(srv_sched *s);
void srv_sched_free(srv_sched *s);
void srv_sched_counts(srv_sched *s, uint32_t *queued, uint32_t *active, uint32_t *slots);
uint32_t srv_sched_n_ctx(const srv_sched *s);

/* Release text held back for stop strings: the longest prefix of buf[0..n)
 * that can be shown, given stop strings that may still complete, and whether
 * a stop string was found (then *stop_at is where it starts). Pure; tested. */
size_t srv_stop_scan(const char *buf, size_t n, char *const *stops, size_t n_stops, bool final, bool *found,
                     size_t *stop_at);

/* ---- models (models.c) ------------------------------------------------------------ */
/* Where a model name leads (srv_models_resolve). */
typedef struct srv_resolved {
    char path[4096];
    byoai_chat_family family;
    bool family_forced;
    bool installed;             /* from the store (else a file given to this server) */
    bool is_bundle;
    char system_prompt[4096];   /* bundles: used when a chat has no system message */
    char params_json[2048];     /* bundles: default sampling parameters, a JSON object */
} srv_resolved;

typedef struct srv_loaded {
    char name[129];
    char path[4096];
    byoai_model *model;
    srv_sched *sched;
    byoai_chat_family family;
    bool is_bundle;
    char system_prompt[4096];
    char params_json[2048];
    int refs;                /* under the manager's lock */
    double last_used;
    bool loading;
    bool cluster;            /* a model the cluster runs: model is its vocabulary, no scheduler (cluster.c) */
} srv_loaded;

typedef struct srv_models srv_models;
int srv_models_new(const byoai_server_config *cfg, srv_metrics *met, srv_models **out, byoai_error *err);
void srv_models_free(srv_models *m);
/* The one place a model name becomes a file: names from the command line
 * and config first (byoai serve x.gguf --alias N, --model N=PATH). 404
 * with a message listing what is available otherwise. */
int srv_models_resolve(srv_models *m, const char *name, srv_resolved *out, srv_error *e);
/* Get a loaded model, loading it on first use. Release when done. */
int srv_models_acquire(srv_models *m, const char *name, srv_loaded **out, srv_error *e);
void srv_models_release(srv_models *m, srv_loaded *l);
/* {"object":"list","data":[...]} */
json_t *srv_models_list(srv_models *m);
void srv_models_gauges(srv_models *m, srv_gauges *g);
/* Cancel every job of every loaded model (shutdown). */
void srv_models_cancel_all(srv_models *m);
/* The model store (NULL when it could not be opened). */
struct byoai_store *srv_models_store(srv_models *m);
/* Uninstall an installed model or bundle (unloading it first): 404 when not
 * installed, 409 while requests use it, 400 for a file given on the
 * command line. */
int srv_models_remove(srv_models *m, const char *name, srv_error *e);

/* ---- the database (db.c), auth (auth.c), conversations ---------------------------- */
typedef struct srv_db {
    sqlite3 *db;
    pthread_mutex_t mu;
} srv_db;
int srv_db_open(const char *path, srv_db **out, byoai_error *err);
void srv_db_close(srv_db *d);

typedef struct srv_auth srv_auth;
int srv_auth_new(const byoai_server_config *cfg, srv_db *db, srv_auth **out, byoai_error *err);
void srv_auth_free(srv_auth *a);
bool srv_auth_enabled(srv_auth *a);
/* 0 when the Authorization header carries a valid key (or auth is off);
 * 401 in e otherwise. */
int srv_auth_check(srv_auth *a, const char *authorization, srv_error *e);

typedef struct srv_conversations srv_conversations;
/* Check a conversation create/replace body (title, model, messages): 0, or
 * 400 in e. */
int srv_conversation_check(json_t *body, srv_error *e);
/* Route /api/conversations[/ID]; method and path from the request. */
void srv_conversations_handle(srv_db *db, byoai_http_req *r, const char *rest);

/* ---- the embedded web app (web.c + generated web_assets.c) ------------------------ */
typedef struct srv_asset {
    const char *path;          /* "/index.html" */
    const unsigned char *data;
    size_t len;
    const char *content_type;
    const char *etag;          /* sha256 of the file, hex */
} srv_asset;
const srv_asset *srv_web_find(const char *path);
size_t srv_web_count(void);

/* ---- the server ----------------------------------------------------------------------- */
typedef struct srv_server {
    byoai_server_config cfg;
    byoai_http *http;
    srv_metrics *metrics;
    srv_models *models;
    srv_db *db;
    srv_auth *auth;
    int draining;     /* atomic */
    int open;         /* atomic: requests being answered (streams until their end) */
    int installs;     /* atomic: install threads running */
    double started;
    struct byoai_cluster *cluster; /* the cluster node, with the cluster setting */
    int cluster_jobs; /* atomic: completions running through the cluster */
} srv_server;

/* ---- the cluster (cluster.c) --------------------------------------------------------- */
/* Start the cluster node and deploy the cluster-model entries (cluster setting). */
int srv_cluster_start(srv_server *s, byoai_error *err);
/* Cancel what runs through the cluster, wait for it, stop the node. */
void srv_cluster_stop(srv_server *s);
/* A handle for a model the cluster runs and this server does not (404
 * otherwise); free with srv_cluster_release. */
int srv_cluster_acquire(srv_server *s, const char *name, srv_loaded **out, srv_error *e);
void srv_cluster_release(srv_loaded *l);
/* What every endpoint that names a model uses: this server's model by that
 * name (loaded on use), else the cluster's; 404 when neither has it. Give
 * it back with srv_release. */
int srv_acquire(srv_server *s, const char *name, srv_loaded **out, srv_error *e);
void srv_release(srv_server *s, srv_loaded *l);
/* Run a job through the cluster on its own thread (takes a reference). */
int srv_cluster_submit(srv_server *s, srv_loaded *l, srv_job *j, srv_error *e);
/* Append the cluster's models that are not the server's own to a /v1/models list. */
void srv_cluster_list(srv_server *s, json_t *data);

void srv_api_handle(void *user, byoai_http_req *r);
/* /v1/... handlers (openai.c) */
/* chat and completions return true when they answered with a stream (whose
 * end records its own metrics) */
bool srv_openai_chat(srv_server *s, byoai_http_req *r);
bool srv_openai_completions(srv_server *s, byoai_http_req *r);
void srv_openai_embeddings(srv_server *s, byoai_http_req *r);
/* tokens.c: POST /api/tokenize, POST /api/detokenize */
void srv_api_tokenize(srv_server *s, byoai_http_req *r);
void srv_api_detokenize(srv_server *s, byoai_http_req *r);
void srv_openai_models(srv_server *s, byoai_http_req *r, const char *id);
/* POST /api/models/install (install.c) */
void srv_install_handle(srv_server *s, byoai_http_req *r);
void srv_open_inc(srv_server *s);
void srv_open_dec(srv_server *s);
/* A random id with a prefix ("chatcmpl-..."). */
void srv_random_id(const char *prefix, char *out, size_t cap);

#endif
