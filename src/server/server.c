/* Starting the server and shutting it down gracefully. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server_internal.h"

int byoai_server_start(const byoai_server_config *c, byoai_server **out, byoai_error *err) {
    return byoai_server_start_cancellable(c, NULL, out, err);
}

int byoai_server_start_cancellable(const byoai_server_config *c, const int *cancel, byoai_server **out,
                                   byoai_error *err) {
    *out = NULL;
    if (sodium_init() < 0) return byoai_error_set(err, BYOAI_EIO, "cannot initialise libsodium");
    srv_server *s = calloc(1, sizeof *s);
    if (!s) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    s->cfg = *c;
    s->cancel_start = cancel;
    s->started = byoai_time_now();
    char db[1100];
    if (s->cfg.db_path[0]) snprintf(db, sizeof db, "%s", s->cfg.db_path);
    else byoai_server_default_db(s->cfg.home[0] ? s->cfg.home : NULL, db, sizeof db);
    int rc;
    if (srv_metrics_new(&s->metrics)) {
        rc = byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = srv_db_open(db, &s->db, err))) goto fail;
    if ((rc = srv_auth_new(&s->cfg, s->db, &s->auth, err))) goto fail;
    if ((rc = srv_models_new(&s->cfg, s->metrics, &s->models, err))) goto fail;
    if ((rc = srv_cluster_start(s, err))) goto fail;
    byoai_http_config hc = {
        .bind_addr = s->cfg.host, .port = s->cfg.port, .max_body = s->cfg.max_body, .timeout_s = 120,
        .max_connections = s->cfg.max_connections,
        .max_per_ip = s->cfg.max_connections_per_ip ? s->cfg.max_connections_per_ip : UINT32_MAX,
        .header_timeout_s = s->cfg.header_timeout, .min_body_rate = (unsigned)s->cfg.min_body_rate,
        .log_format = !s->cfg.log_requests                 ? BYOAI_HTTP_LOG_OFF
                      : !strcmp(s->cfg.log_format, "json") ? BYOAI_HTTP_LOG_JSON
                                                           : BYOAI_HTTP_LOG_TEXT};
    if ((rc = byoai_http_start(&hc, srv_api_handle, s, &s->http, err))) goto fail;
    *out = (byoai_server *)s;
    return 0;
fail:
    srv_cluster_stop(s);
    srv_models_free(s->models);
    srv_auth_free(s->auth);
    srv_db_close(s->db);
    srv_metrics_free(s->metrics);
    free(s);
    return rc;
}

uint16_t byoai_server_port(const byoai_server *bs) { return byoai_http_port(((const srv_server *)bs)->http); }

void byoai_server_shutdown(byoai_server *bs, double grace_s) {
    srv_server *s = (srv_server *)bs;
    if (!s || !s->http) return;
    __atomic_store_n(&s->draining, 1, __ATOMIC_RELEASE);
    double end = byoai_time_now() + grace_s;
    while (__atomic_load_n(&s->open, __ATOMIC_ACQUIRE) > 0 && byoai_time_now() < end) usleep(20000);
    /* what is still running is cancelled; streams then end within a step */
    srv_models_cancel_all(s->models);
    srv_cluster_stop(s); /* cancels what runs through the cluster and leaves it */
    double end2 = byoai_time_now() + 5;
    while (__atomic_load_n(&s->open, __ATOMIC_ACQUIRE) > 0 && byoai_time_now() < end2) usleep(20000);
    byoai_http_stop(s->http);
    s->http = NULL;
    /* installs see the draining flag in their progress callback and stop;
     * they use the store, so wait for them before anything is freed */
    while (__atomic_load_n(&s->installs, __ATOMIC_ACQUIRE) > 0) usleep(20000);
}

void byoai_server_free(byoai_server *bs) {
    srv_server *s = (srv_server *)bs;
    if (!s) return;
    if (s->http) byoai_server_shutdown(bs, 0);
    srv_cluster_stop(s);
    srv_models_free(s->models);
    srv_auth_free(s->auth);
    srv_db_close(s->db);
    srv_metrics_free(s->metrics);
    free(s);
}
