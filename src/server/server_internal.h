/*
 * Internal pieces of the API server, shared by the files of src/server/:
 *
 *   request.c        parse and validate OpenAI request bodies
 *   job.c            jobs shared by a request and its producer; stop strings
 *   scheduler.c      per-model continuous batching over one context
 *   kvcache.c        the prompt cache: conversations' KV kept in memory and on disk
 *   models.c         which models exist (files, the store), loading, idle unloading, the cap
 *   install.c        POST /api/models/install: byoai_install with SSE progress
 *   generate.c       generations and embeddings, whichever API asks
 *   openai.c         /v1/... handlers, SSE streams
 *   ollama.c         the Ollama API (/api/chat, /api/generate, /api/tags, ...), NDJSON streams
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
    bool json_mode;              /* response_format json_object (also a grammar) */
    bool stream, include_usage;
    bool echo;                   /* completions: prompt in front of the text */
} srv_sampling;

typedef struct srv_limits {
    uint32_t max_messages;
    uint32_t max_tokens;
} srv_limits;

enum { SRV_TOOLS_NONE, SRV_TOOLS_AUTO, SRV_TOOLS_REQUIRED, SRV_TOOLS_NAMED };
#define SRV_MAX_TOOLS 128

typedef struct srv_request {
    char model[257];
    srv_sampling s;
    byoai_grammar *grammar;      /* response_format json_object / json_schema (owned), or NULL */
    char *schema_text;           /* response_format json_schema: the schema as compact JSON (owned), or NULL */
    /* chat tools: definitions as prompt text and for the grammar */
    size_t n_tools;
    char **tool_text;            /* {"type": "function", "function": {...}} as templates print it (owned) */
    byoai_grammar_tool *tool_defs; /* name and parameters' schema text (owned strings) */
    int tool_choice;             /* SRV_TOOLS_* */
    char tool_name[65];          /* SRV_TOOLS_NAMED */
    bool parallel_tool_calls;
    byoai_chat_message_tools *msg_tools; /* per message (calls, tool_call_id), or NULL */
    /* chat */
    byoai_chat_message *messages;
    size_t n_messages;
    bool truncate_history;       /* "truncation": "auto": drop the oldest turns that do not fit */
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
/* Compile a JSON Schema into a grammar; 400 naming param (and what in the
 * schema is unsupported) otherwise. */
int srv_compile_schema(json_t *schema, const char *param, byoai_grammar **out, srv_error *e);
/* The same, keeping the schema's compact text in *text (malloc'd; NULL on failure). */
int srv_compile_schema_text(json_t *schema, const char *param, byoai_grammar **out, char **text, srv_error *e);
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
    uint64_t kv_entries, kv_disk_entries, kv_ram_bytes, kv_disk_bytes; /* the prompt caches */
} srv_gauges;
char *srv_metrics_render(srv_metrics *m, const srv_gauges *g);
/* Prompt-cache events (kvcache.c) and cached prompt tokens (scheduler.c). */
typedef enum { SRV_KV_SAVED, SRV_KV_SPILLED, SRV_KV_RESTORED_RAM, SRV_KV_RESTORED_DISK, SRV_KV_DAMAGED,
               SRV_KV_CACHED_TOKENS, SRV_KV_EVENTS } srv_kv_event;
void srv_metrics_kvcache(srv_metrics *m, srv_kv_event ev, uint64_t n);
/* Resident memory of this process in bytes (from /proc). */
uint64_t srv_rss_bytes(void);

/* The prompt cache's directory: cache-dir, else HOME/cache (config.c). */
void srv_cache_dir(const byoai_server_config *c, char *out, size_t cap);

/* ---- the prompt cache (kvcache.c) ----------------------------------------------- */
typedef struct srv_kvcache srv_kvcache;
typedef struct srv_kvcache_params {
    uint64_t ram_bytes;  /* snapshots kept in memory beyond the slots */
    uint64_t disk_bytes; /* snapshots kept on disk (0: no disk cache) */
    char dir[1100];      /* the disk cache's directory */
} srv_kvcache_params;
typedef struct srv_kvcache_stats {
    uint64_t entries, disk_entries, ram_bytes, disk_bytes;
} srv_kvcache_stats;
/* A cache for the model with fingerprint fp; indexes its files of earlier runs. */
int srv_kvcache_new(const srv_kvcache_params *p, const uint8_t fp[32], srv_metrics *met, srv_kvcache **out,
                    byoai_error *err);
/* Stop the writer (what it has not started stays unwritten) and free. */
void srv_kvcache_free(srv_kvcache *c);
/* Keep positions [0, n) of seq's KV, whose tokens are tokens[0..n). Not
 * 0 when it fits no tier (or out of memory): the conversation is then not
 * cached. Scheduler thread only. */
int srv_kvcache_save(srv_kvcache *c, const byoai_context *ctx, uint32_t seq, const int32_t *tokens, uint32_t n);
/* The longest start (in tokens) a saved conversation shares with prompt,
 * and which one (*id) */
uint32_t srv_kvcache_match(srv_kvcache *c, const int32_t *prompt, uint32_t n, uint64_t *id);
/* Put the first keep positions of saved conversation id into seq (restored
 * whole, the entry leaves the cache). Not 0 when it is gone or damaged
 * (then seq's cache is undefined): evaluate instead. */
int srv_kvcache_restore(srv_kvcache *c, uint64_t id, byoai_context *ctx, uint32_t seq, uint32_t keep,
                        byoai_error *err);
void srv_kvcache_sizes(srv_kvcache *c, srv_kvcache_stats *out);
/* Wait until every queued write is done (tests, benchmarks). */
void srv_kvcache_flush(srv_kvcache *c);
/* Queue every conversation held only in memory for the disk and wait for
 * the writes until `deadline` (monotonic seconds). */
void srv_kvcache_persist(srv_kvcache *c, double deadline);

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
    byoai_grammar *grammar;      /* constrained sampling (a reference the job owns), or NULL */
    char *schema_text;           /* json_schema: its text (owned), for the cluster's last stage, or NULL */
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
    /* A job reuses a slot's cache when the slot's tokens share at least this
     * part of its prompt (0..1); otherwise it takes the least recently used
     * slot, whose conversation moves to the prompt cache. */
    float similarity;
    srv_kvcache_params cache;
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
/* The prompt cache's sizes (zeros without one). */
void srv_sched_cache_stats(srv_sched *s, srv_kvcache_stats *out);
/* Wait for the prompt cache's queued writes (tests, benchmarks). */
void srv_sched_cache_flush(srv_sched *s);
/* After srv_sched_stop: keep the slots' conversations in the prompt cache
 * and write what is only in memory to disk, for at most `seconds`. */
void srv_sched_persist(srv_sched *s, double seconds);

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
    uint32_t n_ctx;          /* context tokens per request */
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
    const int *cancel_start; /* atomic, may be NULL: the caller gives up starting */
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

/* ---- generations (generate.c), shared by openai.c and ollama.c ------------------------ */
typedef struct srv_gen {
    srv_server *srv;
    srv_loaded *lm;
    srv_job *job;
    bool chat;                      /* a chat (template, tools) or a plain completion */
    byoai_chat_family family;
    bool tools;                     /* tools offered: read calls out of the answer */
    const byoai_tool_syntax *syntax;
    char model[257];
    char *echo;                     /* completions with echo: the prompt text */
    size_t echo_len;
    size_t truncated;               /* oldest messages dropped to fit the context ("truncation": "auto") */
} srv_gen;

/* Acquire the model, build the prompt (template, tools), the grammar and
 * the budget, and submit the job. On failure the caller still releases. */
int srv_gen_prepare(srv_gen *g, srv_request *rq, srv_error *e);
void srv_gen_release(srv_gen *g);
/* A stream's ops.log: the job's token counts for the request's log line.
 * user is the stream's state, whose first member is its srv_gen. */
void srv_gen_stream_log(void *user, byoai_http_log *log);
/* Wait for the job (cancelling it when the client goes away); 0 when it
 * ended normally, else the error to send. */
int srv_gen_wait(srv_gen *g, byoai_http_req *r, srv_error *e);
/* The answer's text (echo first), malloc'd. */
char *srv_gen_text(const srv_gen *g, size_t *len);
/* While streaming with tools: how much of text[0..len) is content for
 * sure (not the start of a tool call). */
size_t srv_gen_releasable(const srv_gen *g, const char *text, size_t len, bool final);
/* Text as a JSON string, invalid UTF-8 replaced. */
json_t *srv_json_text(const char *s, size_t n);
int srv_tokenize(srv_loaded *lm, const char *text, size_t len, int32_t **toks, size_t *n, srv_error *e);
/* Run rq's embedding inputs on lm in windows; *jobs (n_inputs entries) hold
 * the embeddings; free with srv_embed_free even on failure. */
int srv_embed_run(srv_server *s, byoai_http_req *r, srv_request *rq, srv_loaded *lm, srv_job ***jobs, srv_error *e);
void srv_embed_free(srv_job **jobs, size_t n);

void srv_api_handle(void *user, byoai_http_req *r);
/* Name the model in the log line of the request this thread handles. */
void srv_log_model(const char *name);
/* /v1/... handlers (openai.c) */
/* chat and completions return true when they answered with a stream (whose
 * end records its own metrics) */
bool srv_openai_chat(srv_server *s, byoai_http_req *r);
bool srv_openai_completions(srv_server *s, byoai_http_req *r);
void srv_openai_embeddings(srv_server *s, byoai_http_req *r);
/* ollama.c: the Ollama API (chat and generate return true when they answered with a stream) */
bool srv_ollama_chat(srv_server *s, byoai_http_req *r);
bool srv_ollama_generate(srv_server *s, byoai_http_req *r);
void srv_ollama_tags(srv_server *s, byoai_http_req *r);
void srv_ollama_ps(srv_server *s, byoai_http_req *r);
void srv_ollama_show(srv_server *s, byoai_http_req *r);
void srv_ollama_delete(srv_server *s, byoai_http_req *r);
void srv_ollama_pull(srv_server *s, byoai_http_req *r);
void srv_ollama_embed(srv_server *s, byoai_http_req *r, bool old);
/* tokens.c: POST /api/tokenize, POST /api/detokenize */
void srv_api_tokenize(srv_server *s, byoai_http_req *r);
void srv_api_detokenize(srv_server *s, byoai_http_req *r);
void srv_openai_models(srv_server *s, byoai_http_req *r, const char *id);
/* POST /api/models/install (install.c) */
void srv_install_handle(srv_server *s, byoai_http_req *r);
/* Run an install and answer with its progress: SSE in byoai's shape, or
 * (ollama) NDJSON in Ollama's pull shape; one object at the end when not
 * streaming. */
void srv_install_start(srv_server *s, byoai_http_req *r, const char *spec, const char *registry, bool dry_run,
                       bool streaming, bool ollama);
void srv_open_inc(srv_server *s);
void srv_open_dec(srv_server *s);
/* A random id with a prefix ("chatcmpl-..."). */
void srv_random_id(const char *prefix, char *out, size_t cap);

#endif
