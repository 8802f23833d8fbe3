/*
 * Internal pieces of the cluster module, shared by the files of src/cluster/:
 *
 *   wire.c       bounded little-endian readers and writers (hostile input)
 *   identity.c   node keys, fingerprints, member certificates, files on disk
 *   invite.c     invite codes, the invite table, the join exchange
 *   link.c       TCP links: sockets with deadlines, encrypted frames
 *   handshake.c  the link handshake (the responder stays silent until the
 *                initiator's first message authenticates)
 *   proto.c      peer messages: encode and validating decode
 *   plan.c       model costs and the memory-weighted partition planner
 *   manifest.c   tensor manifests (sha256 per tensor) and range downloads
 *   discovery.c  signed, sealed UDP announcements, interface ranking
 *   node.c       the running node: start and stop, peers, events, status
 *   accept.c     the listener: connections until their first message authenticates
 *   links.c      one link per member: reader threads, connecting, sending, dispatch
 *   maint.c      heartbeats, failure detection, reconnects, static peers
 *   members.c    removed members on a running node; replayed first messages
 *   stage.c      a stage: a layer range of a model serving pipeline steps
 *   deploy.c     deployments this node coordinates: planning, loading
 *   failover.c   a lost stage: re-plans; what status says
 *   complete.c   completions this node coordinates; the prompt cache
 *   requests.c   every completion's entry; other members' completions
 *   records.c    deployment records, on every member and on disk
 *   takeover.c   a lost coordinator's deployments taken over; resumes
 *   vocab.c      a model's vocabulary for members without its file
 *   control.c    the local control socket used by `byoai cluster`
 */
#ifndef BYOAI_CLUSTER_INTERNAL_H
#define BYOAI_CLUSTER_INTERNAL_H

#include <pthread.h>
#include <sodium.h>

#include "byoai/cluster.h"
#include "byoai/gguf.h"
#include "byoai/model.h"
#include "byoai/sampler.h"

/* ---- limits --------------------------------------------------------------------- */
#define CL_MAX_FRAME (64u << 20)       /* bytes of one message on a link */
#define CL_MAX_ROWS 8192               /* rows of one pipeline message */
#define CL_MAX_EMBD (1u << 20)
#define CL_MAX_ADDRS 8
#define CL_MAX_MODELS 16
#define CL_NAME_MAX 64                 /* model and node names, NUL included */
#define CL_URL_MAX 1024
#define CL_ADDR_MAX 64
#define CL_MAX_PEERS BYOAI_CLUSTER_MAX_NODES
#define CL_DGRAM_MAX 1400
#define CL_LINK_MAGIC "BYOAI-L2"     /* this version's handshake */
#define CL_LINK_OLD_MAGIC "BYOAI-L1" /* the previous one (refused, with a note in the log) */
#define CL_JOIN_MAGIC "BYOAI-J1"
#define CL_MAGIC_LEN 8
#define CL_JOIN_M1_LEN (8 + 1 + 8 + 32 + 32) /* a join request's first message */

/* ---- wire.c: bounded buffers ------------------------------------------------------ */
typedef struct cl_buf {
    uint8_t *data;
    size_t len, cap;
    bool oom;
} cl_buf;

void cl_buf_free(cl_buf *b);
void cl_buf_bytes(cl_buf *b, const void *p, size_t n);
void cl_buf_u8(cl_buf *b, uint8_t v);
void cl_buf_u16(cl_buf *b, uint16_t v);
void cl_buf_u32(cl_buf *b, uint32_t v);
void cl_buf_u64(cl_buf *b, uint64_t v);
void cl_buf_i32(cl_buf *b, int32_t v);
void cl_buf_f32(cl_buf *b, float v);
void cl_buf_f64(cl_buf *b, double v);
void cl_buf_str(cl_buf *b, const char *s); /* u16 length + bytes */
void cl_buf_blob(cl_buf *b, const void *p, uint32_t n); /* u32 length + bytes */

typedef struct cl_rd {
    const uint8_t *p;
    size_t len, off;
    bool bad;
} cl_rd;

uint8_t cl_rd_u8(cl_rd *r);
uint16_t cl_rd_u16(cl_rd *r);
uint32_t cl_rd_u32(cl_rd *r);
uint64_t cl_rd_u64(cl_rd *r);
int32_t cl_rd_i32(cl_rd *r);
float cl_rd_f32(cl_rd *r);  /* sets bad for NaN/inf */
double cl_rd_f64(cl_rd *r); /* sets bad for NaN/inf */
const uint8_t *cl_rd_bytes(cl_rd *r, size_t n);
/* u16 length + bytes into out (cap including NUL); bad when too long or
 * when the string holds a NUL or a control character. */
void cl_rd_str(cl_rd *r, char *out, size_t cap);
/* u32 length + bytes, borrowed; bad when longer than max. */
const uint8_t *cl_rd_blob(cl_rd *r, uint32_t max, uint32_t *n);
/* true when everything was read exactly */
bool cl_rd_done(const cl_rd *r);

void cl_hex(const uint8_t *p, size_t n, char *out); /* out: 2n+1 */
int cl_unhex(const char *s, uint8_t *out, size_t n); /* exactly 2n hex chars; 0 ok */
void cl_fingerprint(const uint8_t pk[32], char out[BYOAI_CLUSTER_ID_LEN + 1]);
/* base64url without padding */
size_t cl_b64_encode(const uint8_t *p, size_t n, char *out, size_t cap);
int cl_b64_decode(const char *s, uint8_t *out, size_t cap, size_t *n);

/* ---- identity.c ------------------------------------------------------------------- */
#define CL_CERT_MAX 256

typedef struct cl_cert {
    uint8_t cluster_pk[32];
    uint8_t node_pk[32];
    uint64_t issued, expires;  /* unix seconds; expires 0 = never */
    char name[CL_NAME_MAX];
    uint8_t sig[64];
} cl_cert;

/* Serialized form: "BYC1" | cluster_pk | node_pk | issued | expires | name (u16+bytes) | sig */
int cl_cert_encode(const cl_cert *c, uint8_t *out, size_t cap, size_t *len);
int cl_cert_decode(const uint8_t *in, size_t len, cl_cert *out, byoai_error *err);
void cl_cert_sign(cl_cert *c, const uint8_t cluster_sk[64]);
/* Signature, cluster and validity period. */
int cl_cert_verify(const cl_cert *c, const uint8_t cluster_pk[32], uint64_t now, byoai_error *err);

/* ---- revoke.c: removed members ------------------------------------------------------ */
#define CL_REVOKED_MAX 256

typedef struct cl_revoked {
    uint64_t serial;                 /* a newer list has a larger serial; 0: none */
    uint32_t n;
    uint8_t ids[CL_REVOKED_MAX][16]; /* node ids (fingerprints) */
    uint8_t sig[64];
} cl_revoked;

void cl_revoked_encode(const cl_revoked *r, cl_buf *b);
int cl_revoked_decode(const uint8_t *in, size_t len, cl_revoked *out, byoai_error *err);
void cl_revoked_sign(cl_revoked *r, const uint8_t cluster_pk[32], const uint8_t cluster_sk[64]);
int cl_revoked_verify(const cl_revoked *r, const uint8_t cluster_pk[32], byoai_error *err);
/* The 16 bytes of a node key's fingerprint (its id). */
void cl_node_id16(const uint8_t pk[32], uint8_t out[16]);
bool cl_revoked_has(const cl_revoked *r, const uint8_t pk[32]);
bool cl_revoked_has_id(const cl_revoked *r, const uint8_t id[16]);

typedef struct cl_identity {
    char home[4096];        /* $BYOAI_HOME */
    char dir[4200];         /* $BYOAI_HOME/cluster */
    uint8_t node_pk[32], node_sk[64];
    char node_id[BYOAI_CLUSTER_ID_LEN + 1];
    char node_name[CL_NAME_MAX];
    bool member;
    uint8_t cluster_pk[32];
    char cluster_id[BYOAI_CLUSTER_ID_LEN + 1];
    char cluster_name[CL_NAME_MAX];
    cl_cert cert;
    bool admin;
    uint8_t cluster_sk[64];
    char peers[16][CL_ADDR_MAX + 8]; /* bootstrap addresses learnt at join */
    uint8_t peer_pk[16][32];         /* their node keys when known (the admin's, from the join) */
    bool peer_has_pk[16];
    int n_peers;
    /* X25519 forms of the node key (the handshake's static keys) and the
     * key the handshake uses towards a member whose key is not known yet. */
    uint8_t node_xpk[32], node_xsk[32];
    uint8_t cluster_link_key[32];
    /* Set by a running node: true when a certificate's node was removed
     * (checked in every handshake). NULL: no check (tests, joins). */
    bool (*is_revoked)(void *user, const uint8_t node_pk[32]);
    void *revoked_user;
    /* Set by a running node: true when ts is newer than every first
     * handshake message accepted from that node (a replayed one is not);
     * records ts. NULL: no check. */
    bool (*m1_fresh)(void *user, const uint8_t node_pk[32], uint64_t ts);
    void *m1_user;
} cl_identity;

int cl_home_resolve(const char *home, char *out, size_t cap, byoai_error *err);
/* Load (creating the node key when missing) the identity and membership. */
int cl_identity_load(const char *home, cl_identity *id, byoai_error *err);
/* Write cluster.json (and cluster.key for an admin) atomically. */
int cl_identity_save_membership(const cl_identity *id, byoai_error *err);
void cl_identity_wipe(cl_identity *id);
/* Node names: 1..63 of [A-Za-z0-9._-]. Set one: saved in cluster/name (and cluster.json). */
bool cl_valid_node_name(const char *s);
int cl_identity_set_name(cl_identity *id, const char *name, byoai_error *err);
/* Fill the keys derived from the node and cluster keys (after either changes). */
void cl_identity_derive(cl_identity *id);
void cl_identity_public(const cl_identity *id, byoai_cluster_identity *out);
/* revoked.bin: the newest signed list of removed members (empty when none). */
int cl_revoked_load(const cl_identity *id, cl_revoked *r, byoai_error *err);
int cl_revoked_save(const cl_identity *id, const cl_revoked *r, byoai_error *err);
/* Admin: a new list with node_id added (serial + 1), signed and saved. */
int cl_revoked_add(const cl_identity *id, cl_revoked *r, const uint8_t node_id[16], byoai_error *err);
/* Admin: a new list without node_id (a removed machine invited again). */
int cl_revoked_readmit(const cl_identity *id, cl_revoked *r, const uint8_t node_id[16], byoai_error *err);

/* ---- invite.c ----------------------------------------------------------------------- */
typedef struct cl_invite_code {
    uint8_t cluster_fp[16]; /* the cluster key's fingerprint (cluster id) */
    uint8_t secret[16];
    char host[CL_ADDR_MAX];
    uint16_t port;
} cl_invite_code;

int cl_invite_encode(const cl_invite_code *c, char *out, size_t cap);
int cl_invite_decode(const char *s, cl_invite_code *out, byoai_error *err);
void cl_cluster_fp16(const uint8_t cluster_pk[32], uint8_t out[16]);
/* Record a new invite in invites.json (admin); fills code->secret. */
int cl_invite_create(const cl_identity *id, uint32_t ttl_s, cl_invite_code *code, byoai_error *err);
/* Find an unused, unexpired invite by id and mark it used, under a file
 * lock (single use across processes). BYOAI_EAUTH when unknown/used/expired. */
int cl_invite_lookup(const cl_identity *id, const uint8_t invite_id[8], uint8_t secret[16], byoai_error *err);
int cl_invite_consume(const cl_identity *id, const uint8_t invite_id[8], const uint8_t node_pk[32], byoai_error *err);
void cl_invite_id(const uint8_t secret[16], uint8_t out[8]);
/* The admin side of a join on an accepted socket whose first message (j1)
 * was read. A request for no live invite gets BYOAI_EAUTH and no answer:
 * the caller closes the connection in silence. */
int cl_join_serve(const cl_identity *id, int fd, const uint8_t j1[CL_JOIN_M1_LEN], const char *remote,
                  double timeout_s, cl_cert *issued, byoai_error *err);
/* The joiner side: fills id's membership on success (not saved). */
int cl_join_run(cl_identity *id, const cl_invite_code *code, double timeout_s, byoai_error *err);

/* ---- link.c and handshake.c ---------------------------------------------------------------- */

typedef struct cl_link_stats {
    uint64_t bytes_tx, bytes_rx, frames_tx, frames_rx;
} cl_link_stats;

typedef struct cl_link {
    int fd;
    bool initiator;
    uint8_t peer_pk[32];
    cl_cert peer_cert;
    crypto_secretstream_xchacha20poly1305_state tx, rx;
    pthread_mutex_t send_mu;
    double send_timeout;
    bool send_broken;
    cl_link_stats st;
    char remote[96];
} cl_link;

/* Low-level socket helpers with deadlines (absolute, byoai_time_now()).
 * Every wait also ends (BYOAI_ECANCELED) when the calling thread's cancel
 * flag (cl_io_set_cancel) becomes true, so a stopping node never waits for
 * a peer. */
int cl_read_full(int fd, void *buf, size_t n, double deadline, byoai_error *err);
int cl_write_full(int fd, const void *buf, size_t n, double deadline, byoai_error *err);
int cl_tcp_connect(const char *host, uint16_t port, double timeout_s, int *fd, byoai_error *err);
/* The calling thread's cancel flag (NULL: none). */
void cl_io_set_cancel(const bool *flag);
bool cl_io_cancelled(void);
void cl_sock_setup(int fd); /* non-blocking, TCP_NODELAY, close-on-exec */
void cl_sock_remote(int fd, char *out, size_t cap); /* "host:port" of the peer, or "local" */

/* link.c: a link around a connected socket (takes fd), set up by the handshake. */
cl_link *cl_link_new(int fd, bool initiator);
int cl_link_init_pull(cl_link *l, const uint8_t header[crypto_secretstream_xchacha20poly1305_HEADERBYTES],
                      const uint8_t key[32], byoai_error *err);

/* handshake.c. What the first bytes of an accepted connection are. */
enum { CL_FIRST_MORE, CL_FIRST_LINK, CL_FIRST_JOIN, CL_FIRST_OLD, CL_FIRST_BAD };
/* Classify the have bytes received so far; *need gets the length of the
 * whole first message when known (LINK, JOIN), else how many bytes to read
 * before asking again. */
int cl_hs_first(const uint8_t *buf, size_t have, size_t *need);
#define CL_HS_M1_MAX 700 /* bytes of a first message at most */

/* What the responder learnt from a first message that authenticated. */
typedef struct cl_hs_m1 {
    uint8_t mode;
    uint8_t eph_i[32];
    uint8_t es[32];      /* the initiator-to-responder secret (DH with the static key, or the cluster key) */
    uint8_t th[32];      /* the transcript hash after the first message */
    cl_cert cert;        /* the initiator's certificate, checked */
    uint64_t ts;
} cl_hs_m1;

/* Open and check a first message (len bytes: the whole of it): it must
 * decrypt, carry a certificate of this cluster for another node that is not
 * removed, a signature binding it, and a fresh timestamp. Any failure:
 * BYOAI_EAUTH (BYOAI_EFORMAT for a malformed one) and the caller closes the
 * connection without a word. */
int cl_hs_m1_open(const cl_identity *id, const uint8_t *m1, size_t len, cl_hs_m1 *st, byoai_error *err);
/* The responder's side after cl_hs_m1_open: answer, then wait for the
 * initiator's confirmation. Takes fd in every case. */
int cl_link_respond(const cl_identity *id, int fd, cl_hs_m1 *st, double deadline, cl_link **out, byoai_error *err);

/* Connect and run the handshake as initiator. expect_pk (may be NULL) is
 * the node key the caller expects at the address: the first message is
 * then encrypted to it; without one it is encrypted to the cluster key. */
int cl_link_connect(const cl_identity *id, const char *host, uint16_t port, const uint8_t *expect_pk,
                    double timeout_s, cl_link **out, byoai_error *err);
/* Both handshakes on a connected fd (tests over socketpairs; the responder
 * reads the first message itself). The link takes ownership of fd in every
 * case. */
int cl_link_handshake(const cl_identity *id, int fd, bool initiator, const uint8_t *expect_pk, double timeout_s,
                      cl_link **out, byoai_error *err);
/* The first message an initiator sends (for tests and the fuzz seeds):
 * writes it to out (cap >= CL_HS_M1_MAX). eph_sk gets the ephemeral secret. */
int cl_hs_m1_make(const cl_identity *id, const uint8_t *expect_pk, uint8_t *out, size_t *len, uint8_t eph_sk[32],
                  uint8_t th[32], uint8_t es[32], byoai_error *err);
/* A first message around any payload of at most CL_HS_PAYLOAD_MAX bytes, as
 * the responder id (or expect_pk's node) decrypts it: for the fuzz target,
 * which feeds the parser behind the encryption. */
#define CL_HS_PAYLOAD_MAX (1 + 8 + 2 + CL_CERT_MAX + 64)
int cl_hs_m1_seal(const cl_identity *id, const uint8_t *expect_pk, const uint8_t *payload, size_t n, uint8_t *out,
                  size_t *len);

/* Send one message (thread-safe; bounded by the send timeout). */
int cl_link_send(cl_link *l, const void *msg, size_t len, byoai_error *err);
/* Receive one message (one reader at a time). *msg is malloc'd. timeout_s < 0
 * waits forever. A frame that fails authentication gives BYOAI_EAUTH. */
int cl_link_recv(cl_link *l, uint8_t **msg, size_t *len, double timeout_s, byoai_error *err);
void cl_link_set_send_timeout(cl_link *l, double s);
void cl_link_shutdown(cl_link *l); /* wake a blocked reader; later I/O fails */
void cl_link_free(cl_link *l);
const uint8_t *cl_link_peer_pk(const cl_link *l);
const cl_cert *cl_link_peer_cert(const cl_link *l);
bool cl_link_initiator(const cl_link *l);
void cl_link_get_stats(cl_link *l, cl_link_stats *s);
const char *cl_link_remote(const cl_link *l);

/* ---- proto.c: peer messages ------------------------------------------------------------- */
enum {
    CL_MSG_HELLO = 1,
    CL_MSG_VIEW = 2,
    CL_MSG_PING = 3,
    CL_MSG_PONG = 4,
    CL_MSG_LEAVE = 5,
    CL_MSG_LOAD = 10,
    CL_MSG_LOAD_OK = 11,
    CL_MSG_LOAD_ERR = 12,
    CL_MSG_UNLOAD = 13,
    CL_MSG_FWD = 20,
    CL_MSG_TOKEN = 21,
    CL_MSG_STAGE_ERR = 22,
    CL_MSG_GEN = 30,
    CL_MSG_GEN_TOKEN = 31,
    CL_MSG_GEN_END = 32,
    CL_MSG_GEN_CANCEL = 33,
    CL_MSG_HEADER_REQ = 40,
    CL_MSG_HEADER = 41,
    CL_MSG_EMBEDDING = 50,   /* a pooled embedding: last stage -> coordinator -> requesting member */
    CL_MSG_REVOKED = 60,     /* the signed list of removed members */
    CL_MSG_RECORD = 70,      /* a deployment record: what it is, who coordinates it, its plan */
};

/* what a node tells about itself (HELLO and announcements) */
typedef struct cl_node_info {
    char name[CL_NAME_MAX];
    char version[16];
    uint16_t port;
    uint8_t n_addrs;
    char addrs[CL_MAX_ADDRS][CL_ADDR_MAX]; /* best first */
    uint64_t mem_total, mem_offered;
    uint64_t mem_bw;                       /* bytes per second, 0 unknown */
    uint16_t cores;
    uint8_t n_models;
    char models[CL_MAX_MODELS][CL_NAME_MAX];   /* model files it has */
    uint8_t n_deployed;
    char deployed[CL_MAX_MODELS][CL_NAME_MAX]; /* models it coordinates */
} cl_node_info;

typedef struct cl_view_entry {
    uint8_t pk[32];
    char addr[CL_ADDR_MAX];
    uint16_t port;
} cl_view_entry;

#define CL_VIEW_MAX CL_MAX_PEERS

typedef struct cl_load {
    uint64_t dep_id;
    uint32_t term;           /* the coordinator's term (records.c): a LOAD of an older term is refused */
    uint32_t epoch;
    uint8_t coord_pk[32];
    char model[CL_NAME_MAX];
    uint8_t file_sha[32];
    uint64_t file_size;
    char url[CL_URL_MAX];
    const uint8_t *manifest; /* JSON, borrowed */
    uint32_t manifest_len;
    uint32_t n_layer, layer_begin, layer_end;
    uint32_t n_ctx, n_seq, n_batch;
    uint8_t wire;
    bool has_next;
    uint8_t next_pk[32];
    uint32_t stage_index, n_stages;
} cl_load;

typedef struct cl_load_reply { /* LOAD_OK, LOAD_ERR */
    uint64_t dep_id;
    uint32_t epoch;
    int32_t code;              /* 0 for OK */
    uint64_t mem_bytes, fetched_bytes;
    double load_s;
    char msg[512];
} cl_load_reply;

#define CL_FWD_RESET 1u  /* new sequence: keep pos0 cached positions of the slot (keep_hash names them), set up the sampler */
#define CL_FWD_SAMPLE 2u /* the last stage samples after the last row */

typedef struct cl_sampling {
    byoai_sampler_params sp;
    uint32_t draws;       /* random draws already made (replayed after a failover) */
    int8_t top_logprobs;  /* -1 none */
    bool json;            /* JSON mode: only tokens that keep the output a valid JSON object */
    const uint8_t *schema; /* with json: the JSON Schema the output follows (schema_len bytes, borrowed), or NULL */
    uint32_t schema_len;
    bool embed;           /* embedding: the last stage pools the final hidden states instead of sampling */
    /* The generated part of the sequence is positions [gen_from, gen_end):
     * the JSON filter reads the tokens from gen_from on (again, after a
     * re-plan) and has gen_end - position tokens left to close the object. */
    uint32_t gen_from, gen_end;
} cl_sampling;

typedef struct cl_fwd {
    uint64_t dep_id, req_id;
    uint32_t epoch, step;
    uint32_t slot, pos0, n;
    uint8_t flags;
    uint32_t compute_us;     /* time the stages before spent on this step (for the overhead measure) */
    cl_sampling s;           /* with CL_FWD_RESET */
    uint64_t keep_hash;      /* with CL_FWD_RESET: cl_tokens_hash of the pos0 tokens the slot keeps */
    const uint8_t *tokens;   /* n little-endian int32, borrowed (unaligned) */
    uint8_t dtype;           /* 0 none (first stage), 1 F32, 2 F16 */
    uint32_t n_embd;
    const uint8_t *hidden;   /* n * n_embd elements, borrowed */
    uint64_t hidden_len;
} cl_fwd;

enum { CL_DT_NONE = 0, CL_DT_F32 = 1, CL_DT_F16 = 2 };

typedef struct cl_token_msg { /* TOKEN and GEN_TOKEN */
    uint64_t dep_id, req_id;
    uint32_t epoch, step, slot, pos;
    uint32_t compute_us;     /* time every stage spent on this step */
    byoai_cluster_token t;
} cl_token_msg;

enum { CL_ERR_DECODE = 1, CL_ERR_NEXT_UNREACHABLE = 2, CL_ERR_NO_STAGE = 3, CL_ERR_HISTORY = 4 };

typedef struct cl_embedding_msg { /* EMBEDDING */
    uint64_t dep_id, req_id;   /* dep_id 0: the answer to a member's GEN */
    uint32_t epoch, step;
    uint32_t n_embd;
    const uint8_t *data;       /* n_embd little-endian F32, borrowed */
} cl_embedding_msg;

typedef struct cl_stage_err {
    uint64_t dep_id, req_id;
    uint32_t epoch, step;
    uint8_t kind;
    int32_t code;
    bool has_culprit;
    uint8_t culprit[32];
    char msg[512];
} cl_stage_err;

typedef struct cl_gen {
    uint64_t req_id;
    char model[CL_NAME_MAX];
    byoai_sampler_params sp;
    int32_t n_predict;
    int32_t top_logprobs;
    bool ignore_eog;
    bool json_object;
    bool embed;            /* an embedding of the prompt, answered by EMBEDDING before GEN_END */
    uint32_t n;
    uint32_t n_prompt;     /* tokens[0, n_prompt) are the prompt; the rest were generated already (a
                            * completion continued after its coordinator was lost) */
    const uint8_t *tokens; /* borrowed */
    const uint8_t *schema; /* with json_object: a JSON Schema (schema_len bytes, borrowed), or NULL */
    uint32_t schema_len;
} cl_gen;

typedef struct cl_gen_end {
    uint64_t req_id;
    int32_t code;
    char finish[16];
    char msg[512];
    uint32_t n_prompt, n_generated, failovers;
    uint32_t n_cached;     /* prompt tokens the stages had cached */
    bool moved;            /* this node no longer coordinates the model: ask the one that does */
    double prompt_s, gen_s, stall_s, overhead_s;
} cl_gen_end;

/* A deployment as the members know it (records.c). In a decoded RECORD
 * message man borrows from the message; in a node's list it is owned. */
#define CL_ONLY_MAX 16
typedef struct cl_record {
    uint64_t dep_id;
    uint32_t term;             /* grows with every new coordinator of the name (deploy, takeover, resume) */
    uint32_t epoch;            /* the plan's epoch */
    uint8_t coord_pk[32];
    char name[CL_NAME_MAX];
    uint8_t file_sha[32];
    uint64_t file_size;
    char url[CL_URL_MAX];
    uint8_t *man;              /* tensor manifest JSON */
    uint32_t man_len;
    uint32_t n_ctx, n_seq, n_batch;
    uint8_t wire, weighting;
    uint8_t n_only;
    char only[CL_ONLY_MAX][BYOAI_CLUSTER_ID_LEN + 1];
    uint32_t n_layer, n_stages;
    uint8_t stage_pk[BYOAI_CLUSTER_MAX_NODES][32];
    uint32_t stage_begin[BYOAI_CLUSTER_MAX_NODES], stage_end[BYOAI_CLUSTER_MAX_NODES];
    bool removed;              /* undeployed: a tombstone, so that an older record does not come back */
} cl_record;

/* records.c: true when a supersedes b (term, then epoch, then a tombstone;
 * a tie goes to the lower coordinator key) */
bool cl_record_newer(const cl_record *a, const cl_record *b);
int cl_record_copy(cl_record *dst, const cl_record *src); /* man duplicated */

typedef struct cl_header_msg {
    char model[CL_NAME_MAX];
    int32_t code;           /* 0 ok */
    const uint8_t *manifest;
    uint32_t manifest_len;
    const uint8_t *header;
    uint32_t header_len;
} cl_header_msg;

typedef struct cl_msg {
    uint8_t type;
    union {
        cl_node_info hello;
        struct {
            uint32_t n;
            cl_view_entry e[CL_VIEW_MAX];
        } view;
        struct {
            uint64_t nonce;
            double t;
        } ping;
        cl_load load;
        cl_load_reply load_reply;
        uint64_t dep_id;       /* UNLOAD */
        cl_fwd fwd;
        cl_token_msg token;
        cl_stage_err stage_err;
        cl_gen gen;
        cl_gen_end gen_end;
        uint64_t req_id;       /* GEN_CANCEL */
        char model[CL_NAME_MAX]; /* HEADER_REQ */
        cl_header_msg header;
        cl_embedding_msg embedding;
        struct {               /* REVOKED: an encoded cl_revoked (structure checked; signature not) */
            const uint8_t *data;
            uint32_t len;
        } revoked;
        cl_record record;      /* RECORD */
    } u;
} cl_msg;

/* Decode and validate one message; pointers in *m borrow from buf. */
int cl_msg_decode(const uint8_t *buf, size_t len, cl_msg *m, byoai_error *err);
/* Encoders append to b (type byte first). */
void cl_enc_hello(cl_buf *b, const cl_node_info *i);
void cl_enc_node_info(cl_buf *b, const cl_node_info *i);
void cl_dec_node_info(cl_rd *r, cl_node_info *i);
void cl_enc_view(cl_buf *b, const cl_view_entry *e, uint32_t n);
void cl_enc_ping(cl_buf *b, uint8_t type, uint64_t nonce, double t);
void cl_enc_leave(cl_buf *b);
void cl_enc_load(cl_buf *b, const cl_load *l);
void cl_enc_load_reply(cl_buf *b, const cl_load_reply *r);
void cl_enc_unload(cl_buf *b, uint64_t dep_id);
/* hidden: n * n_embd values in the dtype's encoding (already converted) */
void cl_enc_fwd(cl_buf *b, const cl_fwd *f, const int32_t *tokens, const void *hidden);
void cl_enc_token(cl_buf *b, uint8_t type, const cl_token_msg *t);
void cl_enc_stage_err(cl_buf *b, const cl_stage_err *e);
void cl_enc_embedding(cl_buf *b, const cl_embedding_msg *e, const float *v);
void cl_enc_revoked(cl_buf *b, const cl_revoked *r);
void cl_enc_record(cl_buf *b, const cl_record *r);
/* A 64-bit digest of token ids (FWD keep_hash). */
uint64_t cl_tokens_hash(const int32_t *tokens, uint32_t n);
/* Element i of an EMBEDDING's vector. */
float cl_embedding_at(const cl_embedding_msg *e, uint32_t i);
void cl_enc_gen(cl_buf *b, const cl_gen *g, const int32_t *tokens);
void cl_enc_gen_end(cl_buf *b, const cl_gen_end *e);
void cl_enc_gen_cancel(cl_buf *b, uint64_t req_id);
void cl_enc_header_req(cl_buf *b, const char *model);
void cl_enc_header(cl_buf *b, const char *model, int32_t code, const void *manifest, uint32_t mlen,
                   const void *header, uint32_t hlen);
int32_t cl_fwd_token(const cl_fwd *f, uint32_t i);
const char *cl_msg_name(uint8_t type);

/* discovery.c: a UDP announcement, sealed: "BYA2" | nonce | box("BYAN" | ver | cert | ts_ms | node_info | sig(64)) */
int cl_announce_encode(const cl_identity *id, const cl_node_info *info, uint64_t ts_ms, uint8_t *out, size_t cap,
                       size_t *len);
/* Verify signature and membership; fills the sender's certificate and info. */
int cl_announce_decode(const uint8_t *buf, size_t len, const uint8_t cluster_pk[32], uint64_t now_s, cl_cert *cert,
                       uint64_t *ts_ms, cl_node_info *info, byoai_error *err);

/* ---- plan.c ------------------------------------------------------------------------------- */
typedef struct cl_model_cost {
    uint32_t n_layer, n_embd, n_vocab;
    uint64_t *layer_bytes;        /* [n_layer], owned */
    uint64_t embd_bytes;          /* token embedding (first stage) */
    uint64_t head_bytes;          /* output norm + matrix (last stage; 0 when tied to the embedding) */
    bool tied;                    /* the output uses the token embedding */
    uint64_t other_bytes;         /* small tensors every stage loads */
    uint64_t kv_per_layer_token;  /* bytes */
    uint32_t n_ctx, n_seq, n_batch;
    uint64_t buffer_bytes;        /* scratch per stage */
    uint64_t logits_bytes;        /* extra scratch on the last stage */
} cl_model_cost;

/* Costs from a GGUF's tensor table and hyper-parameters. */
int cl_model_cost_from_gguf(const byoai_gguf *g, uint32_t n_ctx, uint32_t n_seq, uint32_t n_batch, cl_model_cost *c,
                            byoai_error *err);
void cl_model_cost_free(cl_model_cost *c);
uint64_t cl_stage_bytes(const cl_model_cost *c, uint32_t begin, uint32_t end, uint64_t *weights, uint64_t *kv,
                        uint64_t *buffers);

typedef struct cl_plan_node {
    char id[BYOAI_CLUSTER_ID_LEN + 1];
    char name[CL_NAME_MAX];
    uint64_t memory;
    uint64_t speed;   /* memory bandwidth, bytes/s (0 unknown) */
} cl_plan_node;

/* Contiguous layer ranges in the given node order (put the coordinator
 * first), in proportion to the weighting, within each node's memory. Nodes
 * that get no layers are left out. BYOAI_ENOMEM when the model does not fit. */
int cl_plan_compute(const cl_model_cost *cost, const cl_plan_node *nodes, uint32_t n_nodes,
                    byoai_cluster_weighting weighting, byoai_cluster_plan *out, byoai_error *err);

/* ---- manifest.c --------------------------------------------------------------------------- */
typedef struct cl_manifest_tensor {
    char name[128];
    uint64_t offset, size; /* absolute in the file */
    uint8_t sha[32];
} cl_manifest_tensor;

typedef struct cl_manifest {
    uint8_t file_sha[32];
    uint64_t file_size;
    uint64_t header_size;
    uint8_t header_sha[32];
    uint32_t n;
    cl_manifest_tensor *t; /* owned */
} cl_manifest;

/* Hash a GGUF file (one pass) into a manifest; cached under
 * HOME/cluster/manifests by path, size and modification time. */
int cl_manifest_for_file(const char *cluster_dir, const char *path, cl_manifest *m, byoai_error *err);
int cl_manifest_build(const char *path, cl_manifest *m, byoai_error *err);
int cl_manifest_to_json(const cl_manifest *m, char **json, size_t *len, byoai_error *err);
int cl_manifest_parse(const char *json, size_t len, cl_manifest *m, byoai_error *err);
void cl_manifest_free(cl_manifest *m);
const cl_manifest_tensor *cl_manifest_find(const cl_manifest *m, const char *name);
/* Which tensors a stage [begin, end) of an n_layer model needs. */
bool cl_tensor_needed(const char *name, uint32_t begin, uint32_t end, uint32_t n_layer, bool tied);

/* A partial copy of a model: a sparse file with the original layout in
 * which only verified ranges hold data ("parts/<sha>.gguf" + ".have"). */
typedef struct cl_fetch_stats {
    uint64_t bytes, requests;
    double seconds;
} cl_fetch_stats;

/* Make sure every tensor a stage needs is present and verified in the
 * partial file for m (downloading from url when missing); writes its path. */
int cl_partial_prepare(const char *cluster_dir, const cl_manifest *m, const char *url, uint32_t begin, uint32_t end,
                       uint32_t n_layer, char *path, size_t cap, cl_fetch_stats *st, byoai_error *err);
/* The partial copy of m when it holds at least the verified header (a
 * vocabulary can be loaded from it): its path. */
bool cl_partial_find(const char *cluster_dir, const cl_manifest *m, char *path, size_t cap);
/* Write the header bytes (verified against m) into the partial file. */
int cl_partial_write_header(const char *cluster_dir, const cl_manifest *m, const uint8_t *header, size_t len,
                            char *path, size_t cap, byoai_error *err);
/* Download [off, off+len) of url, streaming into fd at the same offset and
 * hashing; verifies against sha. */
int cl_fetch_range(const char *url, int fd, uint64_t off, uint64_t len, const uint8_t sha[32], cl_fetch_stats *st,
                   byoai_error *err);

/* ---- discovery.c -------------------------------------------------------------------------- */
typedef struct cl_iface {
    char name[32];
    char addr[CL_ADDR_MAX];
    char bcast[CL_ADDR_MAX];
    int rank; /* lower is better: 0 real, 1 other, 2 virtual/bridge, 3 loopback */
} cl_iface;

int cl_iface_rank(const char *name, bool loopback);
/* IPv4 interfaces that are up, best first. */
int cl_ifaces(cl_iface *out, int cap);

/* ---- helpers ------------------------------------------------------------------------------ */
int cl_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port, byoai_error *err);
uint64_t cl_random_u64(void);
void cl_f32_to_f16(const float *x, uint16_t *y, size_t n);
void cl_f16_to_f32(const uint8_t *x, float *y, size_t n); /* x unaligned LE */

#endif
