/*
 * byoai/cluster.h: a private AI cluster. The machines of a trusted circle run
 * one model together: each holds a contiguous range of its layers, hidden
 * states flow from machine to machine over authenticated, encrypted links,
 * and the answer survives a machine leaving.
 *
 * Contract
 * - Identity. Every node has an ed25519 key pair, made on first use and kept
 *   in $BYOAI_HOME/cluster/node.key (mode 0600); its node id is the key's
 *   fingerprint. A cluster is an ed25519 key pair too: the node that created
 *   it keeps the secret half and signs a certificate for each member. All
 *   membership state lives under $BYOAI_HOME/cluster/ and is written
 *   atomically.
 * - Invites are one-time codes: a code is accepted once, until it expires,
 *   and only by the node that made it; joining proves knowledge of the code
 *   without sending it.
 * - Links are TCP, mutually authenticated (member certificates, a signed
 *   ephemeral X25519 handshake whose transcript binds both identities and
 *   fresh nonces, so replayed or reflected handshakes fail) and encrypted
 *   with XChaCha20-Poly1305 (libsodium secretstream, one key per
 *   direction). Frames are length-limited; a frame that fails authentication
 *   drops the link. There is no plaintext mode. Every peer message is
 *   validated before use: peers are hostile input.
 * - A running node (byoai_cluster_start) finds members by signed UDP
 *   announcements on the LAN (unsigned and foreign ones are ignored) and at
 *   static addresses, keeps one link per member, sends heartbeats and
 *   declares a member dead after failure_timeout_s of silence. Every node
 *   gossips the member list, so all nodes converge on one view.
 * - A model is deployed by one node, its coordinator. The plan gives each
 *   node a contiguous layer range in proportion to its offered memory (and
 *   optionally its speed); each node loads only its tensors, downloading
 *   only their byte ranges (verified by sha256 per tensor) when it lacks the
 *   file. The coordinator tokenizes, the first stage embeds, the last samples
 *   exactly as byoai_sampler does on one machine, so greedy and seeded output
 *   equal single-node output token for token (F32 on the wire).
 * - Failures. When a stage's node dies or leaves, the coordinator re-plans
 *   on the nodes left (when their memory allows) and rebuilds the KV caches
 *   from the token history it keeps; the completion continues. When the
 *   coordinator itself is lost, the first live node of the plan (every
 *   member makes the same choice from the deployment's record, which the
 *   admin, the coordinator and every stage's node keep on disk) takes the
 *   deployment over; completions that entered through other members
 *   continue there with the same tokens, and a restarted coordinator
 *   resumes what nobody took over. When nothing can continue,
 *   byoai_cluster_generate returns an error: every wait has a deadline,
 *   nothing hangs.
 * - The prompt cache: each stage keeps the KV of its layers for every
 *   sequence slot after a completion; a completion whose prompt starts with
 *   what a slot holds (the next turn of a conversation) computes only the
 *   rest (byoai_cluster_gen_result.n_cached).
 * - Links: the node connected to says nothing until the connecting node's
 *   first message has authenticated (its certificate, encrypted to the
 *   node's key); half-open connections are bounded per address and stopping
 *   never waits for a peer.
 * - Threads: a byoai_cluster owns its threads, sockets and models; every
 *   function is thread-safe. byoai_cluster_stop() joins everything.
 */
#ifndef BYOAI_CLUSTER_H
#define BYOAI_CLUSTER_H

#include "byoai/base.h"
#include "byoai/model.h"
#include "byoai/sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BYOAI_CLUSTER_DEFAULT_PORT 47475           /* TCP links */
#define BYOAI_CLUSTER_DEFAULT_DISCOVERY_PORT 47474 /* UDP announcements */
#define BYOAI_CLUSTER_ID_LEN 32                    /* hex characters of a fingerprint */
#define BYOAI_CLUSTER_MAX_NODES 64
#define BYOAI_CLUSTER_NAME_MAX 63

/* ---- membership: works without a running node ---------------------------- */

typedef struct byoai_cluster_identity {
    char node_id[BYOAI_CLUSTER_ID_LEN + 1];    /* this node's key fingerprint */
    char node_name[BYOAI_CLUSTER_NAME_MAX + 1];
    bool member;                               /* holds a certificate of a cluster */
    char cluster_id[BYOAI_CLUSTER_ID_LEN + 1]; /* the cluster key's fingerprint, "" when none */
    char cluster_name[BYOAI_CLUSTER_NAME_MAX + 1];
    bool admin;                                /* holds the cluster's secret key (may invite) */
    uint64_t cert_expires;                     /* unix seconds, 0 = never */
} byoai_cluster_identity;

/* home: NULL means $BYOAI_HOME, else $XDG_DATA_HOME/byoai or ~/.local/share/byoai.
 * The node key is created on first use. */
int byoai_cluster_identity_get(const char *home, byoai_cluster_identity *out, byoai_error *err);
/* Create a cluster named name: this node becomes its admin and first member.
 * BYOAI_EEXIST when the node already belongs to one. */
int byoai_cluster_create(const char *home, const char *name, byoai_cluster_identity *out, byoai_error *err);
/* Make a one-time invite code (admin only). address is "host:port" where the
 * admin's running node accepts links; ttl_s 0 means one day. code gets a
 * NUL-terminated string of at most BYOAI_CLUSTER_CODE_MAX bytes. */
#define BYOAI_CLUSTER_CODE_MAX 256
int byoai_cluster_invite(const char *home, const char *address, uint32_t ttl_s, char *code, byoai_error *err);
/* Join with a code: contacts the inviting node, proves knowledge of the code,
 * receives a certificate. */
int byoai_cluster_join(const char *home, const char *code, double timeout_s, byoai_cluster_identity *out,
                       byoai_error *err);
/* Give this node a name (1..63 letters, digits, '-', '_', '.'), shown in
 * status and plans and sent in HELLO; kept in cluster/name. Without one a
 * node is called after its host name plus the first four characters of its
 * id ("desk-3b51"), so that two nodes on one host differ. A node that joins
 * afterwards gets its certificate in that name. */
int byoai_cluster_set_node_name(const char *home, const char *name, byoai_error *err);
/* Forget the membership (the node key stays). An admin must pass force:
 * leaving deletes the cluster key and nobody can invite any more. */
int byoai_cluster_leave(const char *home, bool force, byoai_error *err);

/* The IPv4 address of this machine's best interface (wired or wireless
 * before bridges and virtual pairs, loopback last), for invite codes. */
int byoai_cluster_best_address(char *out, size_t cap);

/* ---- a running node --------------------------------------------------------- */

typedef struct byoai_cluster byoai_cluster;

typedef struct byoai_cluster_config {
    const char *home;            /* NULL: as above */
    const char *name;            /* this node's name (byoai_cluster_set_node_name); NULL: the one it has */
    const char *bind_addr;       /* address for links and announcements; NULL: "0.0.0.0" */
    uint16_t port;               /* TCP port for links; 0 picks a free one */
    uint16_t discovery_port;     /* UDP port for announcements; 0: the default */
    bool no_discovery;           /* neither send nor listen for announcements */
    const char *const *peers;    /* static peers "host:port", where broadcasts do not reach */
    size_t n_peers;
    uint64_t memory;             /* bytes offered to the cluster; 0: 90% of MemAvailable */
    bool measure_bandwidth;      /* measure memory bandwidth at start (announced as speed) */
    double heartbeat_s;          /* 0: 1 second */
    double failure_timeout_s;    /* silence before a member is declared dead; 0: 5 s */
    double step_timeout_s;       /* longest wait for one pipeline step; 0: 30 s */
    double load_timeout_s;       /* longest wait for a node to load its layers; 0: 600 s */
    int n_threads;               /* compute threads per stage; 0: all cores */
    const char *const *model_files; /* local GGUF files this node may use for stages */
    size_t n_model_files;
    /* Testing only: hold every received frame this many milliseconds before
     * handling it, to simulate link latency where tc netem is unavailable. */
    double test_link_delay_ms;
} byoai_cluster_config;

int byoai_cluster_start(const byoai_cluster_config *cfg, byoai_cluster **out, byoai_error *err);
/* Tell the members this node leaves, close links, unload stages, join threads. */
void byoai_cluster_stop(byoai_cluster *c);
uint16_t byoai_cluster_port(const byoai_cluster *c);
const char *byoai_cluster_node_id(const byoai_cluster *c);
/* The cluster view, stages and deployments as a JSON object (malloc'd). */
int byoai_cluster_status_json(byoai_cluster *c, char **json, byoai_error *err);
/* Number of members (this node included) currently alive. */
int byoai_cluster_alive_count(byoai_cluster *c);
/* Announce to the members that this node leaves, then stop talking to them. */
void byoai_cluster_announce_leave(byoai_cluster *c);
/* True once `byoai cluster leave` (through the control socket) asked this
 * node to leave. From then on it neither links nor announces; the host
 * process should call byoai_cluster_stop when convenient. */
bool byoai_cluster_left(byoai_cluster *c);
/* Admin only: remove a member for good. node is its id or a unique prefix
 * of at least 6 hex characters (the whole id for a node this one has never
 * seen). The cluster key signs a new list of removed members, saved in
 * cluster/revoked.bin and sent to every member; from then on no member
 * links with the removed node (its certificate no longer opens a link) and
 * the removed node stops. removed_id gets the whole id. */
int byoai_cluster_remove_member(byoai_cluster *c, const char *node, char removed_id[BYOAI_CLUSTER_ID_LEN + 1],
                                byoai_error *err);
/* The same with no node running (the admin's home): node_id must be whole.
 * The members learn of it when the admin's node next links with them. */
int byoai_cluster_remove_offline(const char *home, const char *node_id, byoai_error *err);

/* ---- models across the cluster -------------------------------------------- */

typedef enum byoai_cluster_wire { BYOAI_WIRE_F32 = 0, BYOAI_WIRE_F16 = 1 } byoai_cluster_wire;
typedef enum byoai_cluster_weighting {
    BYOAI_WEIGHT_MEMORY = 0, /* layers in proportion to offered memory (default) */
    BYOAI_WEIGHT_SPEED = 1,  /* ... to measured memory bandwidth */
    BYOAI_WEIGHT_BOTH = 2,   /* ... to the product of both */
} byoai_cluster_weighting;

typedef struct byoai_cluster_model_opts {
    const char *name;            /* the name completions use */
    const char *path;            /* the GGUF file on this (the coordinating) node */
    const char *url;             /* where nodes lacking the file fetch byte ranges (HTTP Range); may be NULL */
    uint32_t n_ctx;              /* positions per sequence (0: min(train context, 2048)) */
    uint32_t n_seq;              /* concurrent completions (0: 4) */
    uint32_t n_batch;            /* rows per pipeline message (0: 256) */
    byoai_cluster_wire wire;
    byoai_cluster_weighting weighting;
    uint32_t min_nodes;          /* wait (up to load_timeout_s) until this many members are alive */
    const char *const *nodes;    /* use only these node ids (prefixes); NULL: every alive member */
    size_t n_nodes;
} byoai_cluster_model_opts;

typedef struct byoai_cluster_stage_plan {
    char node_id[BYOAI_CLUSTER_ID_LEN + 1];
    char node_name[BYOAI_CLUSTER_NAME_MAX + 1];
    uint32_t layer_begin, layer_end;
    bool has_embd, has_head;
    uint64_t weight_bytes, kv_bytes, buffer_bytes, total_bytes;
    uint64_t memory;             /* what the node offers */
    double share;                /* its weight in the proportion (0..1) */
} byoai_cluster_stage_plan;

typedef struct byoai_cluster_plan {
    uint32_t n_layer;
    uint32_t n_stages;
    byoai_cluster_stage_plan stages[BYOAI_CLUSTER_MAX_NODES];
    uint64_t total_bytes;        /* sum over stages */
    uint64_t total_memory;       /* offered by the nodes considered */
} byoai_cluster_plan;

/* The plan the current view gives for a model, without loading anything. */
int byoai_cluster_plan_model(byoai_cluster *c, const byoai_cluster_model_opts *o, byoai_cluster_plan *out,
                             byoai_error *err);
/* Plan and load a model across the cluster, with this node as coordinator.
 * Returns when every stage is loaded. */
int byoai_cluster_deploy(byoai_cluster *c, const byoai_cluster_model_opts *o, byoai_error *err);
/* Unload a model this node coordinates. */
int byoai_cluster_undeploy(byoai_cluster *c, const char *name, byoai_error *err);
/* True when a completion for name can run here (deployed by this node or by
 * an alive member). */
bool byoai_cluster_has_model(byoai_cluster *c, const char *name);
/* Names of the models completions can run for (deployed here or by an alive
 * member), without duplicates; returns how many were written (at most cap). */
size_t byoai_cluster_list_models(byoai_cluster *c, char (*names)[64], size_t cap);
/* The model's vocabulary (tokenizer, chat template, hyper-parameters; no
 * weights) for tokenizing requests. Fetched from the coordinator when this
 * node lacks the file. Owned by the cluster until byoai_cluster_stop. */
int byoai_cluster_model_vocab(byoai_cluster *c, const char *name, const byoai_model **out, byoai_error *err);

/* ---- completions ------------------------------------------------------------- */

#define BYOAI_CLUSTER_MAX_TOP 20

typedef struct byoai_cluster_token {
    int32_t id;
    float logprob;                          /* when top_logprobs >= 0 */
    int32_t n_top;
    int32_t top_ids[BYOAI_CLUSTER_MAX_TOP];
    float top_logprobs[BYOAI_CLUSTER_MAX_TOP];
} byoai_cluster_token;

/* Called for each generated token, in order. Return non-zero to stop. */
typedef int (*byoai_cluster_token_fn)(void *user, const byoai_cluster_token *t);

#define BYOAI_CLUSTER_MAX_SCHEMA 65536

typedef struct byoai_cluster_gen_params {
    byoai_sampler_params sampler;
    int32_t n_predict;     /* tokens at most; -1: until end of generation or a full context */
    int32_t top_logprobs;  /* -1: none; 0..20: logprob of each token and this many alternatives */
    bool ignore_eog;       /* keep going past end-of-generation tokens */
    bool json_object;      /* JSON mode: the last stage samples only tokens that keep the output a valid
                            * JSON object and closes it within n_predict / the context (byoai/grammar.h) */
    const char *json_schema; /* with json_object: the output also follows this JSON Schema (its text, at most
                              * BYOAI_CLUSTER_MAX_SCHEMA bytes; byoai_grammar_from_schema), or NULL */
} byoai_cluster_gen_params;

typedef struct byoai_cluster_gen_result {
    uint32_t n_prompt, n_generated;
    uint32_t n_cached;     /* prompt tokens the stages still had from an earlier completion (not computed again) */
    char finish[16];       /* "stop" (end of generation or the callback), "length" */
    double prompt_s;       /* until the first token */
    double gen_s;          /* first token to the last */
    uint32_t failovers;    /* re-plans this completion survived */
    double stall_s;        /* time spent recovering */
    /* Of gen_s, the time no stage was computing: messages on the wire and
     * in queues, encryption. Divided by tokens and hops: what a hop adds. */
    double overhead_s;
} byoai_cluster_gen_result;

/* Run a completion for model across the cluster, streaming tokens to fn on
 * the calling thread. Greedy/seeded output equals a single machine's. */
int byoai_cluster_generate(byoai_cluster *c, const char *model, const int32_t *prompt, size_t n_prompt,
                           const byoai_cluster_gen_params *p, byoai_cluster_token_fn fn, void *user,
                           byoai_cluster_gen_result *res, byoai_error *err);

/* The embedding of prompt by model across the cluster: the mean of the
 * final (normed) hidden states of its tokens, scaled to unit length, as
 * byoai serve's /v1/embeddings computes it for a local model. The last
 * stage pools; a lost node is survived as for completions. On success
 * *out is a malloc'd vector of *n_embd floats that the caller frees;
 * res (may be NULL) gets n_prompt, timings and failovers. */
int byoai_cluster_embed(byoai_cluster *c, const char *model, const int32_t *prompt, size_t n_prompt, float **out,
                        uint32_t *n_embd, byoai_cluster_gen_result *res, byoai_error *err);

#ifdef __cplusplus
}
#endif
#endif
