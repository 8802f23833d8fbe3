/*
 * The running node: shared by node.c (start, stop, peers, status),
 * accept.c (the listener), links.c (links and dispatch), maint.c
 * (heartbeats, reconnects), members.c (removed members), discovery.c,
 * stage.c (layer ranges serving pipeline steps), the coordinator's files
 * (deploy.c, failover.c, complete.c, requests.c, records.c, takeover.c,
 * vocab.c) and control.c (the local socket).
 *
 * Locking: one mutex per node (c->mu) guards the peer table, the
 * connection list, stage queues, deployments and request mailboxes; it is
 * never held across network I/O or compute. c->cond is broadcast on every
 * event a waiter may care about (a token, a link lost, a load reply, a
 * re-plan finished); waiters re-check their condition with a deadline.
 */
#ifndef BYOAI_CLUSTER_NODE_INTERNAL_H
#define BYOAI_CLUSTER_NODE_INTERNAL_H

#include "byoai/grammar.h"
#include "cluster/cluster_internal.h"

typedef struct cl_conn {
    struct byoai_cluster *c;
    cl_link *link;
    uint8_t pk[32];
    int refs;              /* the list holds one; users take more under c->mu */
    bool dead;
    bool joined;           /* reader thread joined */
    pthread_t reader;
    struct cl_conn *next;
} cl_conn;

typedef enum { PEER_NEW = 0, PEER_ALIVE, PEER_SUSPECT, PEER_DEAD, PEER_LEFT } cl_peer_state;

typedef struct cl_peer {
    bool used;
    uint8_t pk[32];
    char id[BYOAI_CLUSTER_ID_LEN + 1];
    bool have_cert;
    cl_cert cert;
    bool have_info;
    cl_node_info info;
    char addr[CL_ADDR_MAX]; /* where to connect */
    uint16_t port;
    cl_conn *conn;
    cl_peer_state state;
    double first_seen, last_heard, last_try, state_since;
    int fails;
    bool connecting;
    double rtt_ms;
    uint64_t ann_ts;        /* newest announcement timestamp heard (replay guard) */
    double left_at;
    bool removed;           /* on the admin's list of removed members (state LEFT, for good) */
    uint32_t link_gen;      /* links adopted so far: a new one may be a restarted node, which lost its stages */
} cl_peer;

typedef struct cl_target { /* a static peer */
    char host[CL_ADDR_MAX];
    uint16_t port;
    bool have_pk;
    uint8_t pk[32];
    double last_try;
    int fails;
    bool connecting;
} cl_target;

#define CL_EVENTS 64

typedef struct cl_work {
    uint8_t type;          /* a CL_MSG_* */
    uint8_t *buf;          /* the message, owned */
    size_t len;
    cl_msg msg;            /* decoded, borrowing from buf */
    uint8_t from[32];
    struct cl_work *next;
} cl_work;

/* What the last stage keeps per sequence slot to sample it. */
typedef struct cl_tail_seq {
    byoai_sampler *sm;
    byoai_json_filter *jf;     /* JSON mode (constrained sampling), else NULL */
    uint32_t gen_from, gen_end; /* see cl_sampling */
    int8_t top_lp;
    bool embed;                /* pooling the final hidden states into emb_sum (n_embd) */
    double *emb_sum;
    uint32_t emb_rows;
} cl_tail_seq;

typedef struct cl_stage {
    struct byoai_cluster *c;
    uint64_t dep_id;
    uint32_t term;         /* of the coordinator whose LOAD it runs */
    pthread_t thread;
    pthread_cond_t cond;
    cl_work *head, *tail;
    bool stop, done;
    bool orphan;           /* unlinked and unjoinable: the worker frees itself */
    /* configuration (written by the worker; read for status under c->mu) */
    uint32_t epoch;
    uint8_t coord_pk[32];
    bool has_next;
    uint8_t next_pk[32];
    char model_name[CL_NAME_MAX];
    uint8_t file_sha[32];
    uint32_t begin, end, n_layer, n_ctx, n_seq, n_batch;
    uint8_t wire;
    bool loaded;
    char path[4096];
    uint64_t fetched_bytes;
    double load_s;
    uint64_t steps, rows;
    /* compute state, owned by the worker thread */
    byoai_model *model;
    byoai_context *ctx;
    cl_tail_seq *seqs;         /* per slot: sampling state (used on the last stage) */
    int32_t **hist;            /* per slot: the tokens of the positions its KV cache holds */
    float *hidden;             /* conversion scratch */
    size_t hidden_cap;
    struct cl_stage *next;
} cl_stage;

/* A sequence slot of a deployment and what its KV cache holds on every
 * stage of the plan (complete.c): the prompt cache. */
typedef struct cl_slot {
    bool busy;
    int32_t *hist;             /* [n_ctx]: the tokens of the cached positions */
    uint32_t len;              /* cached positions (valid for epoch only) */
    uint32_t epoch;
    double used;               /* when it last served (least recently used goes first) */
} cl_slot;

typedef struct cl_dep {
    uint64_t id;
    uint32_t term;             /* the record's term (records.c): grows with every new coordinator */
    char name[CL_NAME_MAX];
    char path[4096];
    bool path_full;            /* path is a whole copy of the file (else a partial one: header and some tensors) */
    char url[CL_URL_MAX];
    cl_manifest man;
    char *man_json;
    size_t man_len;
    cl_model_cost cost;
    byoai_model *vocab;
    uint32_t n_ctx, n_seq, n_batch;
    uint8_t wire;
    byoai_cluster_weighting weighting;
    char **only;               /* node id prefixes, or NULL */
    size_t n_only;
    /* the current plan */
    uint32_t epoch;
    byoai_cluster_plan plan;
    uint8_t stage_pk[BYOAI_CLUSTER_MAX_NODES][32];
    uint32_t stage_gen[BYOAI_CLUSTER_MAX_NODES]; /* each stage node's link_gen when the plan was adopted */
    bool replanning;
    bool ready;
    uint32_t failovers;
    double last_failover_s;
    /* load replies for the epoch being loaded */
    uint32_t load_epoch;
    uint32_t load_n;
    uint8_t load_pk[BYOAI_CLUSTER_MAX_NODES][32];
    bool load_got[BYOAI_CLUSTER_MAX_NODES];
    cl_load_reply load_reply[BYOAI_CLUSTER_MAX_NODES];
    /* members the last plan left out because they have no copy and no URL was given */
    uint32_t n_lacking;
    char lacking[BYOAI_CLUSTER_MAX_NODES][BYOAI_CLUSTER_ID_LEN + 1 + CL_NAME_MAX + 4];
    cl_slot *slots;            /* [n_seq] */
    uint32_t active;
    bool removing;
    bool moved;                /* another member coordinates it now (a newer term): removing too */
    struct cl_dep *next;
} cl_dep;

/* A deployment record as this node keeps it (records.c). */
typedef struct cl_rec {
    cl_record r;               /* r.man owned */
    char path[4096];           /* this node's whole copy when it coordinates ("" otherwise); not sent */
    bool resume_pending;       /* loaded at start with this node as coordinator: resume at resume_at */
    double resume_at;
    bool busy;                 /* a takeover or resume runs */
    struct cl_rec *next;
} cl_rec;

typedef struct cl_req { /* a completion this node coordinates */
    uint64_t id;
    cl_dep *dep;
    uint32_t slot;
    uint32_t epoch, step;
    bool has_token;
    cl_token_msg tok;
    bool has_err;
    cl_stage_err serr;
    float *emb;                /* an embedding request's answer (has_emb) */
    uint32_t n_emb;
    bool has_emb;
    struct cl_req *next;
} cl_req;

typedef struct cl_proxy { /* a completion this node asked another node to run */
    uint64_t id;
    uint8_t coord_pk[32];
    cl_token_msg *toks;        /* queued tokens */
    size_t n_toks, cap_toks;
    bool ended;
    cl_gen_end end;
    float *emb;                /* the embedding, for an embedding request */
    uint32_t n_emb;
    struct cl_proxy *next;
} cl_proxy;

typedef struct cl_served { /* a completion run here for another node */
    uint64_t id;
    uint8_t from[32];
    bool cancel;
    pthread_t thread;
    bool finished;
    uint8_t *buf;              /* the GEN message, owned */
    size_t len;
    cl_gen gen;
    struct cl_served *next;
} cl_served;

typedef struct cl_vocab { /* vocabulary-only models by name */
    char name[CL_NAME_MAX];
    byoai_model *model;
    bool fetching;
    struct cl_vocab *next;
} cl_vocab;

typedef struct cl_header_wait {
    char model[CL_NAME_MAX];
    bool done;
    int code;
    uint8_t *manifest, *header;
    uint32_t manifest_len, header_len;
    struct cl_header_wait *next;
} cl_header_wait;

struct byoai_cluster {
    cl_identity id;
    /* configuration, copied */
    char bind_addr[CL_ADDR_MAX];
    uint16_t disc_port;
    bool no_discovery;
    bool bind_loopback, bind_any;
    uint64_t memory;
    double heartbeat_s, failure_s, step_s, load_s, delay_s;
    int n_threads;
    char **model_files;
    size_t n_model_files;
    bool measure_bw;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping;

    int listen_fd;
    uint16_t port;
    pthread_t listener, maint, disc;
    bool disc_started;
    int udp_fd;
    int wake_pipe[2];

    cl_peer peers[CL_MAX_PEERS];
    cl_target targets[32];
    int n_targets;
    cl_conn *conns;
    cl_node_info self;
    char store_models[CL_MAX_MODELS][CL_NAME_MAX]; /* installed in the store (announced) */
    int n_store_models;

    char events[CL_EVENTS][300];
    double event_t[CL_EVENTS];
    int n_events, event_head;

    cl_stage *stages;
    cl_dep *deps;
    cl_rec *records;           /* every deployment this node knows of (records.c) */
    double t_start;
    cl_req *reqs;
    cl_proxy *proxies;
    cl_served *served;
    cl_vocab *vocabs;
    cl_header_wait *header_waits;
    uint64_t n_handshake_failures, n_auth_failures;
    uint64_t n_silent_conns;   /* connections closed before a first message: silent, slow or too many */
    int n_authed, n_joins;     /* handshakes past their first message, joins: running (accept.c) */
    int n_generating;      /* byoai_cluster_generate calls running */
    int n_helpers;         /* detached helper threads running (handshakes, connects, served completions) */

    /* control socket */
    int ctl_fd;
    pthread_t ctl_thread;
    bool ctl_started;
    bool ctl_stop;
    bool left_requested;   /* `byoai cluster leave` asked this node to go */
    char ctl_path[4400];

    /* removed members (revoke.c): the newest signed list; its own lock, since
     * handshakes consult it (cl_identity.is_revoked) */
    pthread_mutex_t rev_mu;
    cl_revoked revoked;
    bool removed;          /* this node is on the list */
    /* the newest first-handshake timestamp accepted per node (members.c, under rev_mu) */
    struct {
        uint8_t pk[32];
        uint64_t ts;
        double seen;
    } m1_seen[128];
};

/* node.c */
/* Adopt a signed list of removed members if it is newer than ours: save it,
 * drop the links of removed nodes and pass it on to the linked members. */
void cl_apply_revoked(byoai_cluster *c, const cl_revoked *r, const uint8_t *from);
void cl_event(byoai_cluster *c, byoai_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
cl_peer *cl_peer_find(byoai_cluster *c, const uint8_t pk[32]);       /* under mu */
cl_peer *cl_peer_upsert(byoai_cluster *c, const uint8_t pk[32]);     /* under mu; NULL when full */
bool cl_peer_usable(const cl_peer *p);                               /* alive with a live connection */
const char *cl_peer_name(const cl_peer *p);                          /* under mu */
/* Send a message to a node (this node included: delivered in place). Tries
 * to connect when there is no link. Never call with mu held. */
int cl_send(byoai_cluster *c, const uint8_t pk[32], const cl_buf *msg, byoai_error *err);
/* Send only over a link that is up (best-effort messages: no connect attempt). */
int cl_send_linked(byoai_cluster *c, const uint8_t pk[32], const cl_buf *msg);
/* Connect to a known peer now (no-op when connected). */
int cl_connect_peer(byoai_cluster *c, const uint8_t pk[32], double timeout_s, byoai_error *err);
bool cl_is_self(const byoai_cluster *c, const uint8_t pk[32]);
void cl_refresh_self_info(byoai_cluster *c); /* under mu */
/* Tell every linked member what this node has now (after a deployment). */
void cl_announce_now(byoai_cluster *c);
/* Decode and act on a message (takes buf); BYOAI_EFORMAT when malformed. */
int cl_handle(byoai_cluster *c, const uint8_t from[32], uint8_t *buf, size_t len, byoai_error *err);
/* Run fn(c, arg) on a counted helper thread (joined by byoai_cluster_stop). */
bool cl_spawn(byoai_cluster *c, void (*fn)(byoai_cluster *, void *), void *arg);
void cl_note_heard(byoai_cluster *c, const uint8_t pk[32], const cl_cert *cert, const cl_node_info *info,
                   const char *src_addr, uint64_t ann_ts); /* under mu */

/* node.c */
bool cl_spawn_locked(byoai_cluster *c, void (*fn)(byoai_cluster *, void *), void *arg); /* under mu */
void cl_peer_set_state(cl_peer *p, cl_peer_state s);  /* under mu */
const char *cl_peer_state_name(const cl_peer *p);
void cl_refresh_store_models(byoai_cluster *c);      /* not under mu: reads files */

/* links.c */
/* Adopt a link that completed its handshake. Returns 0, or non-zero when
 * the link was refused (and freed). */
int cl_conn_register(byoai_cluster *c, cl_link *link, const char *remote_host);
cl_conn *cl_conn_get_locked(cl_peer *p);             /* under mu; a reference, or NULL */
void cl_conn_release(byoai_cluster *c, cl_conn *k);  /* not under mu */
void cl_send_hello_view(byoai_cluster *c, const uint8_t pk[32]);

/* members.c */
bool cl_node_is_revoked(void *user, const uint8_t pk[32]);
bool cl_node_m1_fresh(void *user, const uint8_t pk[32], uint64_t ts);

/* maint.c */
void *cl_maint_main(void *arg);
void cl_reap_conns(byoai_cluster *c, bool all);

/* accept.c: the listener; it owns the connections whose first message has not arrived */
void *cl_listener_main(void *arg);

/* discovery.c */
int cl_discovery_start(byoai_cluster *c, byoai_error *err);
void cl_discovery_stop(byoai_cluster *c);

/* stage.c */
void cl_stage_enqueue(byoai_cluster *c, const uint8_t from[32], uint8_t *buf, size_t len, const cl_msg *m); /* takes buf */
void cl_stages_stop_all(byoai_cluster *c);
/* A whole local copy of the file with this sha256: a model file given to the
 * node, one a deployment here uses, or a store blob. */
bool cl_find_model_file(byoai_cluster *c, const uint8_t sha[32], uint64_t size, char *path, size_t cap);
/* Unload the stage of a deployment (a tombstone record arrived). */
void cl_stage_drop(byoai_cluster *c, uint64_t dep_id);

/* deploy.c: deployments this node coordinates */
void cl_coord_wait(byoai_cluster *c, double until);   /* under mu: a short wait on c->cond */
cl_dep *cl_dep_find(byoai_cluster *c, const char *name); /* under mu; not one being removed */
cl_dep *cl_dep_by_id(byoai_cluster *c, uint64_t id);     /* under mu */
void cl_dep_free(cl_dep *d);
/* Free a deployment that was in use; its vocabulary stays until the node stops. */
void cl_dep_retire(byoai_cluster *c, cl_dep *d);
/* A deployment from a record (a takeover or a resume): the model file is
 * found locally by sha256 (or the partial copy a stage of it fetched). */
int cl_dep_from_record(byoai_cluster *c, const cl_record *r, const char *path_hint, cl_dep **out, byoai_error *err);
/* Plan over the usable nodes minus excluded (pks), load, adopt, publish the record. */
int cl_dep_replan(byoai_cluster *c, cl_dep *d, const uint8_t (*excluded)[32], uint32_t n_excluded, byoai_error *err);
/* Re-plan without the stages' lost nodes (completions and the maintenance thread). */
int cl_dep_failover(byoai_cluster *c, cl_dep *d, uint32_t seen_epoch, const uint8_t *culprit, byoai_error *err);
void cl_coord_check_stages(byoai_cluster *c);         /* maint: re-plan a deployment whose stage node died */
void cl_coord_stop_all(byoai_cluster *c);
int cl_coord_status(byoai_cluster *c, void *json_deps); /* json_t array, under mu */
/* Step down from a deployment another member coordinates now (under mu). */
void cl_dep_step_down(byoai_cluster *c, cl_dep *d);

/* complete.c: completions this node coordinates */
/* what a completion starts from: the prompt, then the tokens already
 * generated when it continues one whose coordinator was lost */
typedef struct {
    const int32_t *toks;
    size_t n, n_prompt;
} cl_gen_input;

/* An embedding request's answer (NULL for completions). */
typedef struct {
    float *v;
    uint32_t n;
} cl_embed_out;

int cl_coord_generate(byoai_cluster *c, cl_dep *d, const cl_gen_input *in, const byoai_cluster_gen_params *p,
                      byoai_cluster_token_fn fn, void *user, byoai_cluster_gen_result *res, cl_embed_out *eo,
                      byoai_error *err);
void cl_coord_on_message(byoai_cluster *c, const uint8_t from[32], uint8_t *buf, size_t len, const cl_msg *m); /* takes buf */

/* requests.c: every completion's entry; serving other members' GENs */
void cl_serve_gen(byoai_cluster *c, const uint8_t from[32], uint8_t *buf, size_t len, const cl_gen *g); /* takes buf */

/* vocab.c: a model's header for members that tokenize without the file */
void cl_serve_header_req(byoai_cluster *c, const uint8_t from[32], const char *model);
void cl_vocab_on_header(byoai_cluster *c, const cl_header_msg *h); /* a HEADER arrived */
void cl_vocabs_free(byoai_cluster *c);

/* records.c: deployment records, kept by every member, on disk by the
 * admin, the coordinator and the stages' nodes */
int cl_records_load(byoai_cluster *c);                /* at start: cluster/deployments/ */
void cl_records_free(byoai_cluster *c);
cl_rec *cl_rec_find(byoai_cluster *c, const char *name); /* under mu */
/* The record of a deployment this node coordinates, to everyone (and to disk). */
void cl_record_publish(byoai_cluster *c, cl_dep *d);
/* Undeployed: a tombstone, to everyone. */
void cl_record_remove(byoai_cluster *c, const char *name, uint64_t dep_id, uint32_t term);
void cl_record_on_message(byoai_cluster *c, const uint8_t from[32], const cl_record *r);
void cl_records_send_all(byoai_cluster *c, const uint8_t to[32]); /* a new link: what this node knows */
/* The usable coordinator of a model, from the records and the view (under mu): 0 and *pk. */
int cl_model_coordinator(byoai_cluster *c, const char *name, uint8_t pk[32]);

/* takeover.c: no single point of failure */
void cl_takeover_tick(byoai_cluster *c);              /* maint: a lost coordinator, a pending resume */
/* 1 when model has no coordinator serving it right now but will have one:
 * its coordinator is resuming it, or a member will take it over (under mu). */
int cl_model_recoverable(byoai_cluster *c, const char *name);
/* Run a takeover or resume of rec now (on the calling thread). */
int cl_takeover_run(byoai_cluster *c, const char *name, byoai_error *err);

/* control.c */
int cl_control_start(byoai_cluster *c, byoai_error *err);
void cl_control_stop(byoai_cluster *c);

#endif
