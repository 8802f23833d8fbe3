/*
 * A model's vocabulary for members that tokenize requests without having its
 * file: the member asks the coordinator for the model's header (metadata and
 * tensor table) and manifest, checks the header against the manifest's
 * sha256, keeps it as a partial file and loads the vocabulary from it. The
 * vocabularies stay until the node stops (the server holds them).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/node_internal.h"

void cl_serve_header_req(byoai_cluster *c, const uint8_t from[32], const char *model) {
    char path[4096] = "", *man = NULL;
    size_t man_len = 0;
    uint64_t hsize = 0;
    pthread_mutex_lock(&c->mu);
    cl_dep *d = cl_dep_find(c, model);
    if (d && d->ready) {
        snprintf(path, sizeof path, "%s", d->path);
        man = malloc(d->man_len);
        if (man) {
            memcpy(man, d->man_json, d->man_len);
            man_len = d->man_len;
        }
        hsize = d->man.header_size;
    }
    pthread_mutex_unlock(&c->mu);
    uint8_t *hdr = NULL;
    int code = man ? 0 : BYOAI_ENOTFOUND;
    if (!code) {
        hdr = hsize <= CL_MAX_FRAME / 2 ? malloc(hsize) : NULL;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (!hdr || fd < 0 || pread(fd, hdr, hsize, 0) != (ssize_t)hsize) code = BYOAI_EIO;
        if (fd >= 0) close(fd);
    }
    cl_buf b = {0};
    cl_enc_header(&b, model, code, code ? NULL : man, code ? 0 : (uint32_t)man_len, code ? NULL : hdr,
                  code ? 0 : (uint32_t)hsize);
    cl_send(c, from, &b, NULL);
    cl_buf_free(&b);
    free(man);
    free(hdr);
}

int byoai_cluster_model_vocab(byoai_cluster *c, const char *name, const byoai_model **out, byoai_error *err) {
    *out = NULL;
    pthread_mutex_lock(&c->mu);
    cl_dep *d = cl_dep_find(c, name);
    if (d && d->vocab) {
        *out = d->vocab;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    for (cl_vocab *v = c->vocabs; v; v = v->next)
        if (!strcmp(v->name, name) && v->model) {
            *out = v->model;
            pthread_mutex_unlock(&c->mu);
            return 0;
        }
    uint8_t coord[32];
    bool found = cl_model_coordinator(c, name, coord) == 0 && !cl_is_self(c, coord);
    cl_header_wait *w = found ? calloc(1, sizeof *w) : NULL;
    if (w) {
        snprintf(w->model, sizeof w->model, "%s", name);
        w->next = c->header_waits;
        c->header_waits = w;
    }
    pthread_mutex_unlock(&c->mu);
    if (!found) return byoai_error_set(err, BYOAI_ENOTFOUND, "no node of the cluster runs model '%s'", name);
    if (!w) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    cl_buf b = {0};
    cl_enc_header_req(&b, name);
    int rc = cl_send(c, coord, &b, err);
    cl_buf_free(&b);
    pthread_mutex_lock(&c->mu);
    double deadline = byoai_time_now() + c->step_s;
    while (!rc && !w->done && !c->stopping && byoai_time_now() < deadline) cl_coord_wait(c, deadline);
    for (cl_header_wait **pp = &c->header_waits; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    if (!rc && !w->done) rc = byoai_error_set(err, BYOAI_ETIMEOUT, "the coordinator of '%s' did not send its header", name);
    if (!rc && w->code) rc = byoai_error_set(err, w->code, "the coordinator of '%s' cannot send its header", name);
    byoai_model *m = NULL;
    if (!rc) {
        cl_manifest man;
        char path[4400];
        rc = cl_manifest_parse((const char *)w->manifest, w->manifest_len, &man, err);
        if (!rc) {
            rc = cl_partial_write_header(c->id.dir, &man, w->header, w->header_len, path, sizeof path, err);
            cl_manifest_free(&man);
        }
        byoai_model_params vp = {.vocab_only = true};
        if (!rc) rc = byoai_model_load(path, &vp, &m, err);
    }
    free(w->manifest);
    free(w->header);
    free(w);
    if (rc) return rc;
    pthread_mutex_lock(&c->mu);
    for (cl_vocab *v = c->vocabs; v; v = v->next) /* someone was faster */
        if (!strcmp(v->name, name) && v->model) {
            *out = v->model;
            pthread_mutex_unlock(&c->mu);
            byoai_model_free(m);
            return 0;
        }
    cl_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&c->mu);
        byoai_model_free(m);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    }
    snprintf(v->name, sizeof v->name, "%s", name);
    v->model = m;
    v->next = c->vocabs;
    c->vocabs = v;
    *out = m;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void cl_vocab_on_header(byoai_cluster *c, const cl_header_msg *h) {
    pthread_mutex_lock(&c->mu);
    for (cl_header_wait *w = c->header_waits; w; w = w->next) {
        if (w->done || strcmp(w->model, h->model)) continue;
        w->code = h->code;
        if (!h->code) {
            w->manifest = malloc(h->manifest_len ? h->manifest_len : 1);
            w->header = malloc(h->header_len ? h->header_len : 1);
            if (!w->manifest || !w->header) w->code = BYOAI_ENOMEM;
            else {
                memcpy(w->manifest, h->manifest, h->manifest_len);
                memcpy(w->header, h->header, h->header_len);
                w->manifest_len = h->manifest_len;
                w->header_len = h->header_len;
            }
        }
        w->done = true;
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

void cl_vocabs_free(byoai_cluster *c) {
    pthread_mutex_lock(&c->mu);
    cl_vocab *v = c->vocabs;
    c->vocabs = NULL;
    pthread_mutex_unlock(&c->mu);
    while (v) {
        cl_vocab *n = v->next;
        byoai_model_free(v->model);
        free(v);
        v = n;
    }
}
