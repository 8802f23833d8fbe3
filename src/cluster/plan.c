/*
 * Partition planning: which node runs which layers.
 *
 * Like exo's ring memory-weighted partitioning, each node gets a contiguous
 * range of layers in proportion to a weight (its offered memory, its
 * measured speed, or both), rounded by largest remainder so the counts add
 * up exactly. Then the plan is repaired against what each stage really
 * needs: its layers' weights, the KV cache of those layers for n_ctx x
 * n_seq positions, scratch buffers, plus the token embedding on the first
 * stage and the output matrix on the last. A node over its memory hands a
 * layer to the node with the most room until every stage fits or no node
 * has room (then the model does not fit: BYOAI_ENOMEM with the numbers).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"

static int layer_of(const char *name, uint32_t n_layer) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    char *end;
    unsigned long l = strtoul(name + 4, &end, 10);
    if (end == name + 4 || *end != '.' || l >= n_layer) return -2;
    return (int)l;
}

int cl_model_cost_from_gguf(const byoai_gguf *g, uint32_t n_ctx, uint32_t n_seq, uint32_t n_batch, cl_model_cost *c,
                            byoai_error *err) {
    memset(c, 0, sizeof *c);
    byoai_model_info info;
    int rc = byoai_model_describe(g, n_ctx, &info, err);
    if (rc) return rc;
    if (info.n_layer == 0 || info.n_layer > 4096 || info.n_embd == 0)
        return byoai_error_set(err, BYOAI_EFORMAT, "the model has no usable block_count / embedding_length");
    c->n_layer = info.n_layer;
    c->n_embd = info.n_embd;
    c->n_ctx = info.mem_ctx;
    c->n_seq = n_seq ? n_seq : 1;
    c->n_batch = n_batch ? n_batch : 256;
    c->layer_bytes = calloc(c->n_layer, sizeof *c->layer_bytes);
    if (!c->layer_bytes) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    c->tied = true;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const byoai_gguf_tensor *t = &g->tensors[i];
        int l = layer_of(t->name, c->n_layer);
        if (l >= 0) c->layer_bytes[l] += t->size;
        else if (l == -2) {
            cl_model_cost_free(c);
            return byoai_error_set(err, BYOAI_EFORMAT, "tensor %s names a layer outside the model's %u", t->name,
                                   c->n_layer);
        } else if (!strcmp(t->name, "token_embd.weight")) {
            c->embd_bytes = t->size;
            c->n_vocab = (uint32_t)t->ne[1];
        } else if (!strcmp(t->name, "output.weight")) {
            c->head_bytes += t->size;
            c->tied = false;
        } else if (!strcmp(t->name, "output_norm.weight")) {
            c->head_bytes += t->size;
        } else {
            c->other_bytes += t->size;
        }
    }
    if (!c->n_vocab) c->n_vocab = info.n_vocab;
    c->kv_per_layer_token = (uint64_t)info.n_head_kv * info.head_dim * 2 * sizeof(float);
    uint64_t nb = c->n_batch, qd = (uint64_t)info.n_head * info.head_dim, kvd = (uint64_t)info.n_head_kv * info.head_dim;
    uint64_t d = info.n_embd, ff = info.n_ff, widest = d > qd ? d : qd;
    uint64_t max_in = d > ff ? d : ff;
    if (qd > max_in) max_in = qd;
    c->buffer_bytes = 4 * (nb * (d + widest + qd + 2 * kvd + qd + 3 * ff) + nb * (max_in + 256) + 2ull * c->n_ctx * 4) +
                      nb * d * 4 /* outputs of a middle stage */;
    c->logits_bytes = 4ull * c->n_vocab * 2;
    return 0;
}

void cl_model_cost_free(cl_model_cost *c) {
    free(c->layer_bytes);
    c->layer_bytes = NULL;
}

uint64_t cl_stage_bytes(const cl_model_cost *c, uint32_t begin, uint32_t end, uint64_t *weights, uint64_t *kv,
                        uint64_t *buffers) {
    uint64_t w = c->other_bytes;
    for (uint32_t l = begin; l < end; l++) w += c->layer_bytes[l];
    bool first = begin == 0, last = end == c->n_layer;
    if (first) w += c->embd_bytes;
    if (last) w += c->head_bytes + (c->tied && !first ? c->embd_bytes : 0);
    uint64_t k = (uint64_t)(end - begin) * c->kv_per_layer_token * c->n_ctx * c->n_seq;
    uint64_t b = c->buffer_bytes + (last ? c->logits_bytes : 0);
    if (weights) *weights = w;
    if (kv) *kv = k;
    if (buffers) *buffers = b;
    return w + k + b;
}

/* ranges from counts, in node order; nodes with 0 layers get an empty range */
static void ranges(const uint32_t *count, uint32_t n, uint32_t *begin) {
    uint32_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        begin[i] = at;
        at += count[i];
    }
}

static uint64_t need_of(const cl_model_cost *c, const uint32_t *count, const uint32_t *begin, uint32_t i) {
    if (count[i] == 0) return 0;
    return cl_stage_bytes(c, begin[i], begin[i] + count[i], NULL, NULL, NULL);
}

static char *human(uint64_t b, char *buf, size_t cap) {
    if (b >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", (double)b / (1ull << 30));
    else snprintf(buf, cap, "%.1f MiB", (double)b / (1ull << 20));
    return buf;
}

int cl_plan_compute(const cl_model_cost *cost, const cl_plan_node *nodes, uint32_t n_nodes,
                    byoai_cluster_weighting weighting, byoai_cluster_plan *out, byoai_error *err) {
    memset(out, 0, sizeof *out);
    out->n_layer = cost->n_layer;
    if (n_nodes == 0) return byoai_error_set(err, BYOAI_EINVAL, "no nodes to plan on");
    if (n_nodes > BYOAI_CLUSTER_MAX_NODES)
        return byoai_error_set(err, BYOAI_ERANGE, "%u nodes is more than the %d a plan may use", n_nodes,
                               BYOAI_CLUSTER_MAX_NODES);
    bool have_speed = true;
    for (uint32_t i = 0; i < n_nodes; i++) {
        out->total_memory += nodes[i].memory;
        if (!nodes[i].speed) have_speed = false;
    }
    if (!have_speed) weighting = BYOAI_WEIGHT_MEMORY;
    double w[BYOAI_CLUSTER_MAX_NODES], sum = 0;
    for (uint32_t i = 0; i < n_nodes; i++) {
        double m = (double)nodes[i].memory, s = (double)nodes[i].speed;
        w[i] = weighting == BYOAI_WEIGHT_SPEED ? s : weighting == BYOAI_WEIGHT_BOTH ? m * s : m;
        sum += w[i];
    }
    char a[32], b[32];
    uint64_t whole = cl_stage_bytes(cost, 0, cost->n_layer, NULL, NULL, NULL);
    if (sum <= 0)
        return byoai_error_set(err, BYOAI_ENOMEM, "the nodes offer no memory; the model needs %s",
                               human(whole, a, sizeof a));
    /* largest remainder */
    uint32_t count[BYOAI_CLUSTER_MAX_NODES], given = 0;
    double rem[BYOAI_CLUSTER_MAX_NODES];
    for (uint32_t i = 0; i < n_nodes; i++) {
        double ideal = cost->n_layer * w[i] / sum;
        count[i] = (uint32_t)ideal;
        rem[i] = ideal - count[i];
        given += count[i];
    }
    while (given < cost->n_layer) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < n_nodes; i++)
            if (rem[i] > rem[best]) best = i;
        count[best]++;
        rem[best] = -1;
        given++;
    }
    /* repair against memory */
    uint32_t begin[BYOAI_CLUSTER_MAX_NODES];
    for (int iter = 0; iter < 100000; iter++) {
        ranges(count, n_nodes, begin);
        int over = -1;
        uint64_t worst = 0;
        for (uint32_t i = 0; i < n_nodes; i++) {
            uint64_t need = need_of(cost, count, begin, i);
            if (need > nodes[i].memory && need - nodes[i].memory >= worst) {
                worst = need - nodes[i].memory;
                over = (int)i;
            }
        }
        if (over < 0) break;
        /* give one of its layers to the node with the most room for it */
        int to = -1;
        int64_t best_room = -1;
        for (uint32_t j = 0; j < n_nodes; j++) {
            if ((int)j == over) continue;
            count[over]--;
            count[j]++;
            uint32_t b2[BYOAI_CLUSTER_MAX_NODES];
            ranges(count, n_nodes, b2);
            uint64_t need = need_of(cost, count, b2, j);
            count[over]++;
            count[j]--;
            if (need <= nodes[j].memory) {
                int64_t room = (int64_t)(nodes[j].memory - need);
                if (room > best_room) {
                    best_room = room;
                    to = (int)j;
                }
            }
        }
        if (to < 0) {
            if (out->total_memory < whole)
                return byoai_error_set(err, BYOAI_ENOMEM, "the model needs %s (weights, KV cache for %u x %u tokens, "
                                       "buffers) but the %u node(s) offer %s", human(whole, a, sizeof a),
                                       cost->n_ctx, cost->n_seq, n_nodes, human(out->total_memory, b, sizeof b));
            return byoai_error_set(err, BYOAI_ENOMEM, "the model (%s) does not fit: node %.12s would need %s but "
                                   "offers %s, and no other node has room for one more layer",
                                   human(whole, a, sizeof a), nodes[over].id,
                                   human(need_of(cost, count, begin, (uint32_t)over), b, sizeof b),
                                   human(nodes[over].memory, (char[32]){0}, 32));
        }
        count[over]--;
        count[to]++;
    }
    ranges(count, n_nodes, begin);
    for (uint32_t i = 0; i < n_nodes; i++)
        if (need_of(cost, count, begin, i) > nodes[i].memory)
            return byoai_error_set(err, BYOAI_ENOMEM, "no plan fits the model (%s) into the nodes' memory (%s in "
                                   "total)", human(whole, a, sizeof a), human(out->total_memory, b, sizeof b));
    for (uint32_t i = 0; i < n_nodes; i++) {
        if (count[i] == 0) continue;
        byoai_cluster_stage_plan *s = &out->stages[out->n_stages++];
        snprintf(s->node_id, sizeof s->node_id, "%s", nodes[i].id);
        snprintf(s->node_name, sizeof s->node_name, "%s", nodes[i].name);
        s->layer_begin = begin[i];
        s->layer_end = begin[i] + count[i];
        s->has_embd = s->layer_begin == 0;
        s->has_head = s->layer_end == cost->n_layer;
        s->total_bytes = cl_stage_bytes(cost, s->layer_begin, s->layer_end, &s->weight_bytes, &s->kv_bytes,
                                        &s->buffer_bytes);
        s->memory = nodes[i].memory;
        s->share = w[i] / sum;
        out->total_bytes += s->total_bytes;
    }
    return 0;
}
