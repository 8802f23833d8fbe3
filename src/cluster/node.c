/*
 * The running node: the listener, one link per member with a reader
 * thread, heartbeats and failure detection, static peers, gossip of the
 * member list, and the cluster view.
 *
 * Connections: when two members find each other, the one with the lower
 * key connects first (the other waits two heartbeats before trying too). If
 * both links come up anyway, both ends keep the one whose initiator has the
 * lower key, so they agree without talking. A member silent for
 * failure_timeout_s is declared dead and its link closed; a closed link
 * makes the member suspect until a reconnect succeeds or the timeout passes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "byoai/hw.h"
#include "byoai/store.h"
#include "cluster/node_internal.h"

/* ---- helper threads (handshakes, connects, served completions) ------------------------- */

typedef struct {
    byoai_cluster *c;
    void (*fn)(byoai_cluster *c, void *arg);
    void *arg;
} helper_job;

static int n_helpers_of(byoai_cluster *c) { return c->n_helpers; }

static void *helper_main(void *p) {
    helper_job *j = p;
    cl_io_set_cancel(&j->c->stopping); /* socket waits end as soon as the node stops */
    j->fn(j->c, j->arg);
    pthread_mutex_lock(&j->c->mu);
    j->c->n_helpers--;
    pthread_cond_broadcast(&j->c->cond);
    pthread_mutex_unlock(&j->c->mu);
    free(j);
    return NULL;
}

/* run fn(c, arg) on a detached thread counted in ctl_active; false when it
 * could not start (arg is then the caller's to free). Call with mu held. */
bool cl_spawn_locked(byoai_cluster *c, void (*fn)(byoai_cluster *, void *), void *arg) {
    if (c->stopping) return false;
    helper_job *j = malloc(sizeof *j);
    if (!j) return false;
    j->c = c;
    j->fn = fn;
    j->arg = arg;
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &at, helper_main, j);
    pthread_attr_destroy(&at);
    if (rc) {
        free(j);
        return false;
    }
    c->n_helpers++;
    return true;
}

bool cl_spawn(byoai_cluster *c, void (*fn)(byoai_cluster *, void *), void *arg) {
    pthread_mutex_lock(&c->mu);
    bool ok = cl_spawn_locked(c, fn, arg);
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* ---- events ------------------------------------------------------------------------------ */

void cl_event(byoai_cluster *c, byoai_log_level level, const char *fmt, ...) {
    char line[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    byoai_log(level, "cluster: %s", line);
    pthread_mutex_lock(&c->mu);
    int i = (c->event_head + c->n_events) % CL_EVENTS;
    if (c->n_events == CL_EVENTS) c->event_head = (c->event_head + 1) % CL_EVENTS;
    else c->n_events++;
    snprintf(c->events[i], sizeof c->events[i], "%s", line);
    c->event_t[i] = (double)byoai_time_unix();
    pthread_mutex_unlock(&c->mu);
}

/* ---- peers ---------------------------------------------------------------------------------- */

bool cl_is_self(const byoai_cluster *c, const uint8_t pk[32]) { return memcmp(pk, c->id.node_pk, 32) == 0; }

cl_peer *cl_peer_find(byoai_cluster *c, const uint8_t pk[32]) {
    for (int i = 0; i < CL_MAX_PEERS; i++)
        if (c->peers[i].used && memcmp(c->peers[i].pk, pk, 32) == 0) return &c->peers[i];
    return NULL;
}

cl_peer *cl_peer_upsert(byoai_cluster *c, const uint8_t pk[32]) {
    cl_peer *p = cl_peer_find(c, pk);
    if (p) return p;
    cl_peer *victim = NULL;
    for (int i = 0; i < CL_MAX_PEERS; i++) {
        if (!c->peers[i].used) {
            victim = &c->peers[i];
            break;
        }
        /* reuse the slot of a member gone for ten minutes */
        cl_peer *q = &c->peers[i];
        if (!q->conn && (q->state == PEER_DEAD || q->state == PEER_LEFT || q->state == PEER_NEW) &&
            byoai_time_now() - q->state_since > 600)
            victim = q;
    }
    if (!victim) return NULL;
    memset(victim, 0, sizeof *victim);
    victim->used = true;
    memcpy(victim->pk, pk, 32);
    cl_fingerprint(pk, victim->id);
    victim->first_seen = victim->state_since = byoai_time_now();
    victim->state = PEER_NEW;
    return victim;
}

void cl_peer_set_state(cl_peer *p, cl_peer_state s) {
    if (p->state != s) {
        p->state = s;
        p->state_since = byoai_time_now();
    }
}

const char *cl_peer_name(const cl_peer *p) {
    return p->have_info && p->info.name[0] ? p->info.name : p->cert.name; /* what it calls itself now */
}

bool cl_peer_usable(const cl_peer *p) { return p && p->conn && !p->conn->dead && p->state == PEER_ALIVE; }

static const char *state_name(cl_peer_state s) {
    switch (s) {
    case PEER_ALIVE: return "alive";
    case PEER_SUSPECT: return "suspect";
    case PEER_DEAD: return "dead";
    case PEER_LEFT: return "left";
    default: return "new";
    }
}

const char *cl_peer_state_name(const cl_peer *p) { return p->removed ? "removed" : state_name(p->state); }

void cl_note_heard(byoai_cluster *c, const uint8_t pk[32], const cl_cert *cert, const cl_node_info *info,
                   const char *src_addr, uint64_t ann_ts) {
    if (cl_is_self(c, pk)) return;
    cl_peer *p = cl_peer_upsert(c, pk);
    if (!p) return;
    if (ann_ts) {
        if (ann_ts <= p->ann_ts) return; /* a replayed or stale announcement */
        p->ann_ts = ann_ts;
        /* a member that left is heard again only with a fresh announcement */
        if (p->state == PEER_LEFT && !p->removed && ann_ts / 1000 > (uint64_t)p->left_at) cl_peer_set_state(p, PEER_NEW);
    }
    if (cert) {
        p->cert = *cert;
        p->have_cert = true;
    }
    if (info) {
        p->info = *info;
        p->have_info = true;
        if (info->port) p->port = info->port;
    }
    if (src_addr && *src_addr && !p->conn) snprintf(p->addr, sizeof p->addr, "%s", src_addr);
    if (p->state == PEER_DEAD && !p->conn) p->fails = 0; /* heard again: retry soon */
}

/* ---- self info ---------------------------------------------------------------------------------- */

void cl_refresh_self_info(byoai_cluster *c) {
    cl_node_info *s = &c->self;
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", c->id.node_name);
    snprintf(s->version, sizeof s->version, "%s", BYOAI_VERSION);
    s->port = c->port;
    if (c->bind_any) {
        cl_iface ifs[CL_MAX_ADDRS];
        int n = cl_ifaces(ifs, CL_MAX_ADDRS);
        for (int i = 0; i < n && s->n_addrs < CL_MAX_ADDRS; i++)
            snprintf(s->addrs[s->n_addrs++], CL_ADDR_MAX, "%s", ifs[i].addr);
    } else {
        snprintf(s->addrs[s->n_addrs++], CL_ADDR_MAX, "%s", c->bind_addr);
    }
    byoai_hw_info hw;
    byoai_hw_get(&hw);
    s->mem_total = hw.ram_total;
    s->mem_offered = c->memory ? c->memory : hw.ram_available / 10 * 9;
    s->cores = (uint16_t)hw.cores;
    s->mem_bw = c->self.mem_bw;
    for (size_t i = 0; i < c->n_model_files && s->n_models < CL_MAX_MODELS; i++) {
        const char *b = strrchr(c->model_files[i], '/');
        b = b ? b + 1 : c->model_files[i];
        snprintf(s->models[s->n_models], CL_NAME_MAX, "%s", b);
        char *dot = strstr(s->models[s->n_models], ".gguf");
        if (dot) *dot = '\0';
        s->n_models++;
    }
    for (int i = 0; i < c->n_store_models && s->n_models < CL_MAX_MODELS; i++) {
        bool dup = false;
        for (int k = 0; k < s->n_models; k++) dup |= !strcmp(s->models[k], c->store_models[i]);
        if (!dup) snprintf(s->models[s->n_models++], CL_NAME_MAX, "%s", c->store_models[i]);
    }
    for (cl_dep *d = c->deps; d && s->n_deployed < CL_MAX_MODELS; d = d->next)
        if (d->ready && !d->removing) snprintf(s->deployed[s->n_deployed++], CL_NAME_MAX, "%s", d->name);
}

/* the models installed in the store, to announce (outside the lock: it reads files) */
void cl_refresh_store_models(byoai_cluster *c) {
    char names[CL_MAX_MODELS][CL_NAME_MAX];
    int n = 0;
    byoai_store *st;
    if (byoai_store_open(c->id.home, &st, NULL) == 0) {
        byoai_store_model *list = NULL;
        size_t count = 0;
        if (byoai_store_list(st, &list, &count, NULL) == 0)
            for (size_t i = 0; i < count && n < CL_MAX_MODELS; i++) {
                if (list[i].variant[0]) snprintf(names[n], CL_NAME_MAX, "%.40s:%.20s", list[i].name, list[i].variant);
                else snprintf(names[n], CL_NAME_MAX, "%s", list[i].name);
                n++;
            }
        free(list);
        byoai_store_close(st);
    }
    pthread_mutex_lock(&c->mu);
    memcpy(c->store_models, names, sizeof names);
    c->n_store_models = n;
    pthread_mutex_unlock(&c->mu);
}

/* ---- start and stop --------------------------------------------------------------------------------- */

static int listen_on(byoai_cluster *c, uint16_t port, byoai_error *err) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, c->bind_addr, &a.sin_addr) != 1)
        return byoai_error_set(err, BYOAI_EINVAL, "bind address '%s' is not an IPv4 address", c->bind_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* a deep backlog: a burst of connections waits in the kernel for the listener, not for a SYN retry */
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        return byoai_error_set(err, BYOAI_EIO, "cannot listen on %s:%u: %s", c->bind_addr, port, strerror(e));
    }
    socklen_t sl = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &sl);
    c->port = ntohs(a.sin_port);
    c->listen_fd = fd;
    return 0;
}

static void free_cluster(byoai_cluster *c) {
    cl_records_free(c);
    for (size_t i = 0; i < c->n_model_files; i++) free(c->model_files[i]);
    free(c->model_files);
    cl_identity_wipe(&c->id);
    pthread_mutex_destroy(&c->rev_mu);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
}

int byoai_cluster_start(const byoai_cluster_config *cfg, byoai_cluster **out, byoai_error *err) {
    *out = NULL;
    byoai_cluster *c = calloc(1, sizeof *c);
    if (!c) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->rev_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    c->listen_fd = c->udp_fd = c->ctl_fd = -1;
    c->wake_pipe[0] = c->wake_pipe[1] = -1;
    int rc = cl_identity_load(cfg->home, &c->id, err);
    if (!rc && !c->id.member)
        rc = byoai_error_set(err, BYOAI_EINVAL, "this node is not in a cluster: run `byoai cluster create NAME` or "
                             "`byoai cluster join CODE` first");
    if (!rc && cfg->name && strcmp(cfg->name, c->id.node_name)) rc = cl_identity_set_name(&c->id, cfg->name, err);
    if (rc) {
        free_cluster(c);
        return rc;
    }
    c->t_start = byoai_time_now();
    uint64_t now = byoai_time_unix();
    if ((rc = cl_cert_verify(&c->id.cert, c->id.cluster_pk, now, err))) {
        free_cluster(c);
        return byoai_error_prefix(err, "this node's own certificate");
    }
    byoai_error rev_err = {0};
    if (cl_revoked_load(&c->id, &c->revoked, &rev_err))
        byoai_log(BYOAI_LOG_WARN, "cluster: %s; starting without it", rev_err.msg);
    if (cl_revoked_has(&c->revoked, c->id.node_pk)) {
        byoai_error_set(err, BYOAI_EAUTH, "this node was removed from cluster '%s' by its admin; run `byoai cluster "
                        "leave` and ask for a new invite", c->id.cluster_name);
        free_cluster(c);
        return BYOAI_EAUTH;
    }
    c->id.is_revoked = cl_node_is_revoked;
    c->id.revoked_user = c;
    c->id.m1_fresh = cl_node_m1_fresh;
    c->id.m1_user = c;
    snprintf(c->bind_addr, sizeof c->bind_addr, "%s", cfg->bind_addr && *cfg->bind_addr ? cfg->bind_addr : "0.0.0.0");
    c->bind_any = !strcmp(c->bind_addr, "0.0.0.0");
    c->bind_loopback = !strncmp(c->bind_addr, "127.", 4);
    c->disc_port = cfg->discovery_port ? cfg->discovery_port : BYOAI_CLUSTER_DEFAULT_DISCOVERY_PORT;
    c->no_discovery = cfg->no_discovery;
    c->memory = cfg->memory;
    c->heartbeat_s = cfg->heartbeat_s > 0 ? cfg->heartbeat_s : 1.0;
    c->failure_s = cfg->failure_timeout_s > 0 ? cfg->failure_timeout_s : 5.0;
    if (c->failure_s < 2 * c->heartbeat_s) c->failure_s = 2 * c->heartbeat_s;
    c->step_s = cfg->step_timeout_s > 0 ? cfg->step_timeout_s : 30.0;
    c->load_s = cfg->load_timeout_s > 0 ? cfg->load_timeout_s : 600.0;
    c->delay_s = cfg->test_link_delay_ms > 0 ? cfg->test_link_delay_ms / 1000.0 : 0;
    c->n_threads = cfg->n_threads;
    int n_rec = cl_records_load(c); /* deployments to resume, to take over, to know of */
    if (n_rec) byoai_log(BYOAI_LOG_INFO, "cluster: %d deployment record(s) from %s/deployments", n_rec, c->id.dir);
    c->measure_bw = cfg->measure_bandwidth;
    if (cfg->n_model_files) {
        c->model_files = calloc(cfg->n_model_files, sizeof(char *));
        if (!c->model_files) {
            free_cluster(c);
            return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < cfg->n_model_files; i++) {
            c->model_files[i] = strdup(cfg->model_files[i]);
            if (c->model_files[i]) c->n_model_files++;
        }
    }
    for (size_t i = 0; i < cfg->n_peers + (size_t)c->id.n_peers && c->n_targets < 32; i++) {
        const char *s = i < cfg->n_peers ? cfg->peers[i] : c->id.peers[i - cfg->n_peers];
        cl_target *t = &c->targets[c->n_targets];
        byoai_error e2;
        if (cl_parse_hostport(s, t->host, sizeof t->host, &t->port, &e2)) {
            if (i < cfg->n_peers) {
                free_cluster(c);
                return byoai_error_set(err, BYOAI_EINVAL, "--peer %s: %s", s, e2.msg);
            }
            continue;
        }
        if (i >= cfg->n_peers && c->id.peer_has_pk[i - cfg->n_peers]) {
            t->have_pk = true;
            memcpy(t->pk, c->id.peer_pk[i - cfg->n_peers], 32);
        }
        c->n_targets++;
    }
    if (pipe2(c->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        free_cluster(c);
        return byoai_error_set(err, BYOAI_EIO, "pipe: %s", strerror(errno));
    }
    if ((rc = listen_on(c, cfg->port, err))) {
        close(c->wake_pipe[0]);
        close(c->wake_pipe[1]);
        free_cluster(c);
        return rc;
    }
    if (c->measure_bw) c->self.mem_bw = (uint64_t)byoai_hw_read_bandwidth(c->n_threads > 0 ? c->n_threads : byoai_cpu_count(), 64u << 20, 2);
    uint64_t bw = c->self.mem_bw;
    cl_refresh_store_models(c);
    cl_refresh_self_info(c);
    c->self.mem_bw = bw;
    pthread_create(&c->listener, NULL, cl_listener_main, c);
    pthread_create(&c->maint, NULL, cl_maint_main, c);
    if (!c->no_discovery && (rc = cl_discovery_start(c, err))) {
        byoai_cluster_stop(c);
        return rc;
    }
    if ((rc = cl_control_start(c, err))) {
        byoai_cluster_stop(c);
        return rc;
    }
    cl_event(c, BYOAI_LOG_INFO, "node %.12s (%s) of cluster '%s' listening on %s:%u", c->id.node_id, c->id.node_name,
             c->id.cluster_name, c->bind_addr, c->port);
    *out = c;
    return 0;
}

void byoai_cluster_announce_leave(byoai_cluster *c) {
    uint8_t to[CL_MAX_PEERS][32];
    int n = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CL_MAX_PEERS; i++)
        if (c->peers[i].used && c->peers[i].conn && !c->peers[i].conn->dead) memcpy(to[n++], c->peers[i].pk, 32);
    pthread_mutex_unlock(&c->mu);
    cl_buf b = {0};
    cl_enc_leave(&b);
    for (int i = 0; i < n; i++) cl_send(c, to[i], &b, NULL);
    cl_buf_free(&b);
}

void byoai_cluster_stop(byoai_cluster *c) {
    if (!c) return;
    /* From here every wait ends: completions, socket waits of helper
     * threads (their cancel flag), the listener and its half-open
     * connections, maintenance, discovery. Links stay up for the goodbyes. */
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    if (c->wake_pipe[1] >= 0) {
        ssize_t w = write(c->wake_pipe[1], "x", 1);
        (void)w;
    }
    cl_control_stop(c);
    cl_coord_stop_all(c);
    byoai_cluster_announce_leave(c);
    cl_discovery_stop(c);
    pthread_join(c->listener, NULL);
    pthread_join(c->maint, NULL);
    cl_stages_stop_all(c);
    /* close every link: readers exit */
    pthread_mutex_lock(&c->mu);
    for (cl_conn *k = c->conns; k; k = k->next) {
        k->dead = true;
        cl_link_shutdown(k->link);
    }
    for (int i = 0; i < CL_MAX_PEERS; i++) c->peers[i].conn = NULL;
    /* wait for helper threads (handshakes, connects, served completions) */
    double deadline = byoai_time_now() + 20;
    while (n_helpers_of(c) > 0 && byoai_time_now() < deadline) {
        for (cl_conn *k = c->conns; k; k = k->next) cl_link_shutdown(k->link);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&c->cond, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    /* every reader drops its reference when it exits */
    for (;;) {
        cl_reap_conns(c, true);
        pthread_mutex_lock(&c->mu);
        bool empty = c->conns == NULL;
        pthread_mutex_unlock(&c->mu);
        if (empty) break;
        usleep(2000);
    }
    if (c->listen_fd >= 0) close(c->listen_fd);
    close(c->wake_pipe[0]);
    close(c->wake_pipe[1]);
    free_cluster(c);
}

uint16_t byoai_cluster_port(const byoai_cluster *c) { return c->port; }
const char *byoai_cluster_node_id(const byoai_cluster *c) { return c->id.node_id; }

int byoai_cluster_alive_count(byoai_cluster *c) {
    int n = 1;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CL_MAX_PEERS; i++)
        if (cl_peer_usable(&c->peers[i])) n++;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- status ------------------------------------------------------------------------------------------ */

static json_t *info_json(const cl_node_info *i) {
    json_t *models = json_array(), *dep = json_array(), *addrs = json_array();
    for (int k = 0; k < i->n_models; k++) json_array_append_new(models, json_string(i->models[k]));
    for (int k = 0; k < i->n_deployed; k++) json_array_append_new(dep, json_string(i->deployed[k]));
    for (int k = 0; k < i->n_addrs; k++) json_array_append_new(addrs, json_string(i->addrs[k]));
    return json_pack("{s:s,s:I,s:I,s:I,s:i,s:o,s:o,s:o}", "version", i->version, "memory_total", (json_int_t)i->mem_total,
                     "memory_offered", (json_int_t)i->mem_offered, "memory_bandwidth", (json_int_t)i->mem_bw, "cores",
                     (int)i->cores, "addresses", addrs, "models", models, "deployed", dep);
}

int byoai_cluster_status_json(byoai_cluster *c, char **out, byoai_error *err) {
    *out = NULL;
    json_t *members = json_array(), *events = json_array(), *deps = json_array(), *stages = json_array();
    pthread_mutex_lock(&c->mu);
    json_t *me = json_pack("{s:s,s:s,s:b,s:s,s:s,s:i}", "node_id", c->id.node_id, "name", c->id.node_name, "self", 1,
                           "state", "alive", "address", c->bind_addr, "port", (int)c->port);
    json_object_set_new(me, "info", info_json(&c->self));
    json_array_append_new(members, me);
    double now = byoai_time_now();
    int alive = 1;
    for (int i = 0; i < CL_MAX_PEERS; i++) {
        cl_peer *p = &c->peers[i];
        if (!p->used || !p->have_cert) continue;
        cl_link_stats st = {0};
        if (p->conn && !p->conn->dead) cl_link_get_stats(p->conn->link, &st);
        bool usable = cl_peer_usable(p);
        if (usable) alive++;
        json_t *m = json_pack("{s:s,s:s,s:b,s:s,s:s,s:i,s:b,s:f,s:f,s:{s:I,s:I,s:I,s:I}}", "node_id", p->id, "name",
                              cl_peer_name(p), "self", 0, "state", usable ? "alive" : cl_peer_state_name(p), "address",
                              p->addr, "port", (int)p->port, "linked", p->conn && !p->conn->dead, "rtt_ms", p->rtt_ms,
                              "last_seen_s", p->last_heard > 0 ? now - p->last_heard : -1.0, "link", "bytes_tx",
                              (json_int_t)st.bytes_tx, "bytes_rx", (json_int_t)st.bytes_rx, "frames_tx",
                              (json_int_t)st.frames_tx, "frames_rx", (json_int_t)st.frames_rx);
        if (p->have_info) json_object_set_new(m, "info", info_json(&p->info));
        json_array_append_new(members, m);
    }
    for (int k = 0; k < c->n_events; k++) {
        int i = (c->event_head + k) % CL_EVENTS;
        json_array_append_new(events, json_pack("{s:I,s:s}", "time", (json_int_t)c->event_t[i], "text", c->events[i]));
    }
    for (cl_stage *s = c->stages; s; s = s->next) {
        char cid[BYOAI_CLUSTER_ID_LEN + 1];
        cl_fingerprint(s->coord_pk, cid);
        json_array_append_new(stages, json_pack("{s:s,s:I,s:i,s:i,s:i,s:b,s:s,s:I,s:f,s:I,s:I}", "model", s->model_name,
                                                "deployment", (json_int_t)s->dep_id, "epoch", (int)s->epoch,
                                                "layer_begin", (int)s->begin, "layer_end", (int)s->end, "loaded",
                                                s->loaded, "coordinator", cid, "fetched_bytes",
                                                (json_int_t)s->fetched_bytes, "load_seconds", s->load_s, "steps",
                                                (json_int_t)s->steps, "rows", (json_int_t)s->rows));
    }
    cl_coord_status(c, deps);
    json_t *removed = json_array();
    pthread_mutex_lock(&c->rev_mu);
    for (uint32_t i = 0; i < c->revoked.n; i++) {
        char hex[BYOAI_CLUSTER_ID_LEN + 1];
        cl_hex(c->revoked.ids[i], 16, hex);
        json_array_append_new(removed, json_string(hex));
    }
    pthread_mutex_unlock(&c->rev_mu);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:b,s:i,s:i,s:i,s:I,s:I,s:o,s:o,s:o,s:o}", "node_id", c->id.node_id, "name",
                          c->id.node_name, "cluster_id", c->id.cluster_id, "cluster_name", c->id.cluster_name, "admin",
                          c->id.admin, "port", (int)c->port, "discovery_port", c->no_discovery ? 0 : (int)c->disc_port,
                          "alive", alive, "handshake_failures", (json_int_t)c->n_handshake_failures, "auth_failures",
                          (json_int_t)c->n_auth_failures, "members", members, "stages", stages, "deployments", deps,
                          "events", events);
    if (j) {
        json_object_set_new(j, "silent_connections", json_integer((json_int_t)c->n_silent_conns));
        json_object_set_new(j, "removed", json_boolean(c->removed)); /* this node was removed by the admin */
        json_object_set_new(j, "removed_members", removed);
    } else json_decref(removed);
    pthread_mutex_unlock(&c->mu);
    *out = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!*out) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    return 0;
}

