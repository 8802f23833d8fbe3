/*
 * The control socket: $BYOAI_HOME/cluster/control.sock (in a 0700
 * directory, the socket itself 0600), through which `byoai cluster status`,
 * `plan`, `deploy`, `run` and `leave` talk to the node running for that
 * home. One JSON object per line in each direction; `generate` answers with
 * one line per token and a final line with "done": true.
 *
 * The node also writes cluster/run.json (pid, link port, discovery port)
 * so that `byoai cluster invite` can put the right port into a code.
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "byoai/tokenizer.h"
#include "cluster/node_internal.h"

static int write_line(int fd, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return -1;
    size_t n = strlen(s);
    s[n] = '\n';
    int rc = cl_write_full(fd, s, n + 1, byoai_time_now() + 30, NULL);
    free(s);
    return rc;
}

static int reply_error(int fd, const byoai_error *err) {
    return write_line(fd, json_pack("{s:b,s:b,s:s,s:s}", "done", 1, "ok", 0, "error", err->msg[0] ? err->msg : byoai_status_name(err->code),
                                    "status", byoai_status_name(err->code)));
}

static json_t *plan_json(const byoai_cluster_plan *p) {
    json_t *st = json_array();
    for (uint32_t i = 0; i < p->n_stages; i++) {
        const byoai_cluster_stage_plan *s = &p->stages[i];
        json_array_append_new(st, json_pack("{s:s,s:s,s:i,s:i,s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:f}", "node_id", s->node_id,
                                            "name", s->node_name, "layer_begin", (int)s->layer_begin, "layer_end",
                                            (int)s->layer_end, "embedding", s->has_embd, "output", s->has_head,
                                            "weight_bytes", (json_int_t)s->weight_bytes, "kv_bytes",
                                            (json_int_t)s->kv_bytes, "buffer_bytes", (json_int_t)s->buffer_bytes,
                                            "total_bytes", (json_int_t)s->total_bytes, "memory",
                                            (json_int_t)s->memory, "share", s->share));
    }
    return json_pack("{s:i,s:I,s:I,s:o}", "layers", (int)p->n_layer, "total_bytes", (json_int_t)p->total_bytes,
                     "total_memory", (json_int_t)p->total_memory, "stages", st);
}

static void model_opts(json_t *req, byoai_cluster_model_opts *o, const char **nodes, size_t cap) {
    memset(o, 0, sizeof *o);
    o->name = json_string_value(json_object_get(req, "name"));
    o->path = json_string_value(json_object_get(req, "model"));
    o->url = json_string_value(json_object_get(req, "url"));
    o->n_ctx = (uint32_t)json_integer_value(json_object_get(req, "n_ctx"));
    o->n_seq = (uint32_t)json_integer_value(json_object_get(req, "n_seq"));
    o->n_batch = (uint32_t)json_integer_value(json_object_get(req, "n_batch"));
    o->min_nodes = (uint32_t)json_integer_value(json_object_get(req, "min_nodes"));
    const char *w = json_string_value(json_object_get(req, "wire"));
    o->wire = w && !strcmp(w, "f16") ? BYOAI_WIRE_F16 : BYOAI_WIRE_F32;
    const char *wt = json_string_value(json_object_get(req, "weighting"));
    o->weighting = wt && !strcmp(wt, "speed") ? BYOAI_WEIGHT_SPEED
                   : wt && !strcmp(wt, "both") ? BYOAI_WEIGHT_BOTH
                                               : BYOAI_WEIGHT_MEMORY;
    json_t *ns = json_object_get(req, "nodes");
    size_t i;
    json_t *v;
    json_array_foreach(ns, i, v) {
        if (o->n_nodes < cap && json_is_string(v)) nodes[o->n_nodes++] = json_string_value(v);
    }
    o->nodes = o->n_nodes ? nodes : NULL;
}

/* what a deploy did: where the layers went, who coordinates, which members lack the file */
static json_t *deploy_report(byoai_cluster *c, const char *name) {
    json_t *j = json_pack("{s:b,s:b}", "done", 1, "ok", 1), *stages = json_array(), *lacking = json_array();
    pthread_mutex_lock(&c->mu);
    cl_dep *d = cl_dep_find(c, name);
    cl_rec *r = d ? NULL : cl_rec_find(c, name);
    char cid[BYOAI_CLUSTER_ID_LEN + 1] = "", cname[CL_NAME_MAX] = "";
    if (d) {
        snprintf(cid, sizeof cid, "%s", c->id.node_id);
        snprintf(cname, sizeof cname, "%s", c->id.node_name);
        for (uint32_t s = 0; s < d->plan.n_stages; s++)
            json_array_append_new(stages, json_pack("{s:s,s:s,s:i,s:i}", "node_id", d->plan.stages[s].node_id, "name",
                                                    d->plan.stages[s].node_name, "layer_begin",
                                                    (int)d->plan.stages[s].layer_begin, "layer_end",
                                                    (int)d->plan.stages[s].layer_end));
        for (uint32_t i = 0; i < d->n_lacking; i++) json_array_append_new(lacking, json_string(d->lacking[i]));
    } else if (r && !r->r.removed) {
        cl_fingerprint(r->r.coord_pk, cid);
        cl_peer *p = cl_peer_find(c, r->r.coord_pk);
        if (p) snprintf(cname, sizeof cname, "%s", cl_peer_name(p));
        for (uint32_t s = 0; s < r->r.n_stages; s++) {
            char sid[BYOAI_CLUSTER_ID_LEN + 1];
            cl_fingerprint(r->r.stage_pk[s], sid);
            cl_peer *q = cl_is_self(c, r->r.stage_pk[s]) ? NULL : cl_peer_find(c, r->r.stage_pk[s]);
            json_array_append_new(stages, json_pack("{s:s,s:s,s:i,s:i}", "node_id", sid, "name",
                                                    cl_is_self(c, r->r.stage_pk[s]) ? c->id.node_name
                                                    : q ? cl_peer_name(q) : "",
                                                    "layer_begin", (int)r->r.stage_begin[s], "layer_end",
                                                    (int)r->r.stage_end[s]));
        }
    }
    bool here = d != NULL;
    char hint[1200] = "";
    if (d && d->n_lacking)
        snprintf(hint, sizeof hint, "deploy with --url URL (an HTTP server with Range requests, e.g. `byoai registry "
                 "serve DIR`) or start them with --model-file PATH");
    pthread_mutex_unlock(&c->mu);
    json_object_set_new(j, "coordinator", json_pack("{s:s,s:s,s:b}", "node_id", cid, "name", cname, "self", here));
    json_object_set_new(j, "stages", stages);
    json_object_set_new(j, "lacking", lacking);
    if (hint[0]) json_object_set_new(j, "hint", json_string(hint));
    return j;
}

typedef struct {
    int fd;
    const byoai_tokenizer *tok;
    char pending[16];
    size_t n_pending;
    bool failed;
} gen_out;

static int on_token(void *user, const byoai_cluster_token *t) {
    gen_out *g = user;
    char piece[256 + 16];
    memcpy(piece, g->pending, g->n_pending);
    int len = byoai_token_to_piece(g->tok, t->id, piece + g->n_pending, 256, false);
    if (len < 0) len = 0;
    if (len > 256) len = 256;
    size_t n = g->n_pending + (size_t)len;
    size_t hold = byoai_utf8_incomplete_tail(piece, n);
    memcpy(g->pending, piece + n - hold, hold);
    g->n_pending = hold;
    json_t *j = json_pack("{s:i,s:s%}", "token", t->id, "text", piece, n - hold);
    if (!j) j = json_pack("{s:i,s:s}", "token", t->id, "text", "");
    if (t->n_top > 0 || t->logprob != 0) json_object_set_new(j, "logprob", json_real(t->logprob));
    if (write_line(g->fd, j) != 0) {
        g->failed = true;
        return 1; /* the client went away */
    }
    return 0;
}

static void do_generate(byoai_cluster *c, int fd, json_t *req) {
    byoai_error err = {0};
    const char *model = json_string_value(json_object_get(req, "model"));
    if (!model) {
        byoai_error_set(&err, BYOAI_EINVAL, "generate needs a model name");
        reply_error(fd, &err);
        return;
    }
    const byoai_model *vocab;
    if (byoai_cluster_model_vocab(c, model, &vocab, &err)) {
        reply_error(fd, &err);
        return;
    }
    const byoai_tokenizer *tok = byoai_model_tokenizer(vocab);
    int32_t *toks = NULL;
    size_t n = 0;
    const char *prompt = json_string_value(json_object_get(req, "prompt"));
    json_t *ids = json_object_get(req, "tokens");
    if (json_is_array(ids)) {
        n = json_array_size(ids);
        toks = malloc((n ? n : 1) * sizeof *toks);
        for (size_t i = 0; toks && i < n; i++) toks[i] = (int32_t)json_integer_value(json_array_get(ids, i));
    } else if (prompt) {
        json_t *ab = json_object_get(req, "add_bos");
        if (byoai_tokenize(tok, prompt, strlen(prompt), ab ? json_is_true(ab) : true, true, &toks, &n, &err)) {
            reply_error(fd, &err);
            return;
        }
    }
    if (!toks) {
        byoai_error_set(&err, BYOAI_EINVAL, "generate needs a prompt or tokens");
        reply_error(fd, &err);
        return;
    }
    byoai_cluster_gen_params p = {.sampler = byoai_sampler_defaults(), .n_predict = 128, .top_logprobs = -1};
    json_t *v;
    if ((v = json_object_get(req, "n_predict"))) p.n_predict = (int32_t)json_integer_value(v);
    if ((v = json_object_get(req, "temp"))) p.sampler.temp = (float)json_number_value(v);
    if ((v = json_object_get(req, "top_k"))) p.sampler.top_k = (int32_t)json_integer_value(v);
    if ((v = json_object_get(req, "top_p"))) p.sampler.top_p = (float)json_number_value(v);
    if ((v = json_object_get(req, "min_p"))) p.sampler.min_p = (float)json_number_value(v);
    if ((v = json_object_get(req, "repeat_penalty"))) p.sampler.repeat_penalty = (float)json_number_value(v);
    if ((v = json_object_get(req, "seed"))) p.sampler.seed = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(req, "top_logprobs"))) p.top_logprobs = (int32_t)json_integer_value(v);
    if ((v = json_object_get(req, "ignore_eog"))) p.ignore_eog = json_is_true(v);
    if ((v = json_object_get(req, "json_object"))) p.json_object = json_is_true(v);
    gen_out g = {.fd = fd, .tok = tok};
    byoai_cluster_gen_result res;
    int rc = byoai_cluster_generate(c, model, toks, n, &p, on_token, &g, &res, &err);
    free(toks);
    if (g.failed) return;
    if (rc) {
        reply_error(fd, &err);
        return;
    }
    write_line(fd, json_pack("{s:b,s:b,s:s%,s:i,s:i,s:s,s:f,s:f,s:i,s:f,s:f}", "done", 1, "ok", 1, "tail", g.pending,
                             g.n_pending, "n_prompt", (int)res.n_prompt, "n_generated", (int)res.n_generated, "finish",
                             res.finish, "prompt_seconds", res.prompt_s, "gen_seconds", res.gen_s, "failovers",
                             (int)res.failovers, "stall_seconds", res.stall_s, "overhead_seconds", res.overhead_s));
}

static void handle_request(byoai_cluster *c, int fd, json_t *req) {
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    byoai_error err = {0};
    if (!cmd) {
        byoai_error_set(&err, BYOAI_EINVAL, "no cmd");
        reply_error(fd, &err);
    } else if (!strcmp(cmd, "status")) {
        char *s;
        if (byoai_cluster_status_json(c, &s, &err)) reply_error(fd, &err);
        else {
            json_t *j = json_loads(s, 0, NULL);
            free(s);
            json_object_set_new(j, "done", json_true());
            json_object_set_new(j, "ok", json_true());
            write_line(fd, j);
        }
    } else if (!strcmp(cmd, "plan") || !strcmp(cmd, "deploy")) {
        byoai_cluster_model_opts o;
        const char *nodes[BYOAI_CLUSTER_MAX_NODES];
        model_opts(req, &o, nodes, BYOAI_CLUSTER_MAX_NODES);
        if (!strcmp(cmd, "plan")) {
            byoai_cluster_plan *p = malloc(sizeof *p);
            if (!p) byoai_error_set(&err, BYOAI_ENOMEM, "out of memory");
            if (!p || byoai_cluster_plan_model(c, &o, p, &err)) reply_error(fd, &err);
            else write_line(fd, json_pack("{s:b,s:b,s:o}", "done", 1, "ok", 1, "plan", plan_json(p)));
            free(p);
        } else if (byoai_cluster_deploy(c, &o, &err)) {
            reply_error(fd, &err);
        } else {
            write_line(fd, deploy_report(c, o.name));
        }
    } else if (!strcmp(cmd, "undeploy")) {
        const char *name = json_string_value(json_object_get(req, "name"));
        if (!name || byoai_cluster_undeploy(c, name, &err)) {
            if (!name) byoai_error_set(&err, BYOAI_EINVAL, "undeploy needs a name");
            reply_error(fd, &err);
        } else {
            write_line(fd, json_pack("{s:b,s:b}", "done", 1, "ok", 1));
        }
    } else if (!strcmp(cmd, "generate")) {
        do_generate(c, fd, req);
    } else if (!strcmp(cmd, "remove")) {
        const char *node = json_string_value(json_object_get(req, "node"));
        char removed[BYOAI_CLUSTER_ID_LEN + 1];
        if (byoai_cluster_remove_member(c, node ? node : "", removed, &err)) reply_error(fd, &err);
        else write_line(fd, json_pack("{s:b,s:b,s:s}", "done", 1, "ok", 1, "node_id", removed));
    } else if (!strcmp(cmd, "leave")) {
        __atomic_store_n(&c->left_requested, true, __ATOMIC_RELAXED); /* no new links from now on */
        byoai_cluster_announce_leave(c);
        /* and close the ones there are */
        pthread_mutex_lock(&c->mu);
        for (cl_conn *k = c->conns; k; k = k->next) cl_link_shutdown(k->link);
        pthread_mutex_unlock(&c->mu);
        write_line(fd, json_pack("{s:b,s:b}", "done", 1, "ok", 1));
    } else {
        byoai_error_set(&err, BYOAI_EINVAL, "unknown command '%s'", cmd);
        reply_error(fd, &err);
    }
}

static void conn_job(byoai_cluster *c, void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[1 << 16];
    size_t n = 0;
    double deadline = byoai_time_now() + 10;
    while (n < sizeof buf - 1) {
        struct pollfd p = {fd, POLLIN, 0};
        int ms = (int)((deadline - byoai_time_now()) * 1000);
        if (ms <= 0 || poll(&p, 1, ms) <= 0) break;
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (memchr(buf, '\n', n)) break;
    }
    buf[n] = '\0';
    json_t *req = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
    if (!json_is_object(req)) {
        byoai_error err;
        byoai_error_set(&err, BYOAI_EINVAL, "a request is one JSON object on one line");
        reply_error(fd, &err);
    } else {
        handle_request(c, fd, req);
    }
    json_decref(req);
    close(fd);
}

static void *ctl_main(void *arg) {
    byoai_cluster *c = arg;
    while (!__atomic_load_n(&c->ctl_stop, __ATOMIC_RELAXED)) {
        struct pollfd p[2] = {{c->ctl_fd, POLLIN, 0}, {c->wake_pipe[0], POLLIN, 0}};
        int r = poll(p, 2, 100);
        if (__atomic_load_n(&c->ctl_stop, __ATOMIC_RELAXED)) break;
        if (r <= 0 || !(p[0].revents & POLLIN)) continue;
        int fd = accept4(c->ctl_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        if (!cl_spawn(c, conn_job, (void *)(intptr_t)fd)) close(fd);
    }
    return NULL;
}

int cl_control_start(byoai_cluster *c, byoai_error *err) {
    snprintf(c->ctl_path, sizeof c->ctl_path, "%s/control.sock", c->id.dir);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(c->ctl_path) >= sizeof a.sun_path)
        return byoai_error_set(err, BYOAI_EINVAL, "the control socket path %s is too long (use a shorter BYOAI_HOME)",
                               c->ctl_path);
    strcpy(a.sun_path, c->ctl_path);
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof a) == 0) {
        close(probe);
        return byoai_error_set(err, BYOAI_EBUSY, "a cluster node is already running for %s", c->id.home);
    }
    if (probe >= 0) close(probe);
    unlink(c->ctl_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return byoai_error_set(err, BYOAI_EIO, "socket: %s", strerror(errno));
    mode_t old = umask(077);
    int b = bind(fd, (struct sockaddr *)&a, sizeof a);
    umask(old);
    if (b != 0 || listen(fd, 16) != 0) {
        int e = errno;
        close(fd);
        return byoai_error_set(err, BYOAI_EIO, "cannot listen on %s: %s", c->ctl_path, strerror(e));
    }
    chmod(c->ctl_path, 0600);
    c->ctl_fd = fd;
    if (pthread_create(&c->ctl_thread, NULL, ctl_main, c) != 0) {
        close(fd);
        c->ctl_fd = -1;
        return byoai_error_set(err, BYOAI_ENOMEM, "cannot start the control thread");
    }
    c->ctl_started = true;
    char path[4400], text[256];
    snprintf(path, sizeof path, "%s/run.json", c->id.dir);
    snprintf(text, sizeof text, "{\"pid\": %d, \"port\": %u, \"discovery_port\": %u, \"bind\": \"%s\"}\n", (int)getpid(),
             c->port, c->no_discovery ? 0 : c->disc_port, c->bind_addr);
    byoai_fs_write_atomic(path, text, strlen(text), NULL);
    return 0;
}

void cl_control_stop(byoai_cluster *c) {
    if (!c->ctl_started) return;
    __atomic_store_n(&c->ctl_stop, true, __ATOMIC_RELAXED);
    pthread_join(c->ctl_thread, NULL);
    close(c->ctl_fd);
    c->ctl_fd = -1;
    c->ctl_started = false;
    unlink(c->ctl_path);
    char path[4400];
    snprintf(path, sizeof path, "%s/run.json", c->id.dir);
    unlink(path);
}

bool byoai_cluster_left(byoai_cluster *c) { return __atomic_load_n(&c->left_requested, __ATOMIC_RELAXED); }
