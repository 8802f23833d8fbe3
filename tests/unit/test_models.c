/* Model lifecycle (src/server/models.c) and metrics (metrics.c): name
 * resolution, load on first use, the cap on loaded models, idle unload,
 * the Prometheus text. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server_internal.h"

static void test_lifecycle(void **state) {
    (void)state;
    byoai_server_config c;
    byoai_server_config_defaults(&c);
    byoai_error err;
    char spec[4200];
    snprintf(spec, sizeof spec, "a=%s", tu_shared("models/stories260K.gguf"));
    assert_int_equal(byoai_server_config_set(&c, "model", spec, &err), 0);
    snprintf(spec, sizeof spec, "b=%s", tu_shared("models/stories260K.gguf"));
    assert_int_equal(byoai_server_config_set(&c, "model", spec, &err), 0);
    assert_int_equal(byoai_server_config_set(&c, "model", "broken=/nonexistent.gguf", &err), 0);
    assert_int_equal(byoai_server_config_set(&c, "chat-template", "b=zephyr", &err), 0);
    c.max_loaded = 1;
    c.idle_timeout = 1;
    c.parallel = 2;
    const char *home = tu_tmpdir();
    snprintf(c.home, sizeof c.home, "%s", home);
    srv_metrics *met;
    srv_metrics_new(&met);
    srv_models *m;
    assert_int_equal(srv_models_new(&c, met, &m, &err), 0);
    srv_error e;
    srv_resolved res;
    assert_int_equal(srv_models_resolve(m, "b", &res, &e), 0);
    assert_true(res.family_forced && res.family == BYOAI_CHAT_ZEPHYR && !res.installed);
    assert_int_equal(srv_models_resolve(m, "zzz", &res, &e), 404);
    assert_non_null(strstr(e.message, "available: a, b, broken"));
    srv_loaded *la, *lb;
    assert_int_equal(srv_models_acquire(m, "a", &la, &e), 0);
    assert_int_equal(la->family, BYOAI_CHAT_FALLBACK);
    /* the cap: a is in use, so b cannot load */
    assert_int_equal(srv_models_acquire(m, "b", &lb, &e), 503);
    assert_non_null(strstr(e.message, "all are in use"));
    srv_loaded *la2;
    assert_int_equal(srv_models_acquire(m, "a", &la2, &e), 0);
    assert_ptr_equal(la, la2);
    srv_models_release(m, la2);
    srv_models_release(m, la);
    /* now a is idle: loading b evicts it */
    assert_int_equal(srv_models_acquire(m, "b", &lb, &e), 0);
    assert_int_equal(lb->family, BYOAI_CHAT_ZEPHYR);
    srv_gauges g = {0};
    srv_models_gauges(m, &g);
    assert_int_equal(g.loaded_models, 1);
    assert_int_equal(g.known_models, 3);
    assert_int_equal(g.sequence_slots, 2);
    srv_models_release(m, lb);
    /* idle unload within a few seconds */
    for (int i = 0; i < 50; i++) {
        memset(&g, 0, sizeof g);
        srv_models_gauges(m, &g);
        if (g.loaded_models == 0) break;
        usleep(100000);
    }
    assert_int_equal(g.loaded_models, 0);
    /* a model that fails to load: 500 with the reason, and nothing left loaded */
    srv_loaded *lx;
    assert_int_equal(srv_models_acquire(m, "broken", &lx, &e), 500);
    assert_non_null(strstr(e.message, "cannot load model 'broken'"));
    memset(&g, 0, sizeof g);
    srv_models_gauges(m, &g);
    assert_int_equal(g.loaded_models, 0);
    json_t *list = srv_models_list(m);
    assert_int_equal(json_array_size(json_object_get(list, "data")), 3);
    json_decref(list);
    /* installed models: none here; removing a file model is refused */
    assert_int_equal(srv_models_remove(m, "a", &e), 400);
    assert_int_equal(srv_models_remove(m, "nothing-installed", &e), 404);
    srv_models_free(m);
    srv_metrics_free(met);
    tu_rmtree(home);
}

static void test_metrics_text(void **state) {
    (void)state;
    srv_metrics *m;
    assert_int_equal(srv_metrics_new(&m), 0);
    srv_metrics_request(m, "/v1/models", 200, 0.001);
    srv_metrics_request(m, "/v1/models", 404, 0.002);
    srv_metrics_request(m, "/v1/models", 404, 0.002);
    srv_metrics_tokens(m, 10, 5);
    srv_metrics_first_token(m, 0.5);
    srv_metrics_cancelled(m);
    srv_gauges g = {.queue_depth = 3, .loaded_models = 1, .rss_bytes = srv_rss_bytes()};
    assert_true(g.rss_bytes > 1000000);
    char *t = srv_metrics_render(m, &g);
    assert_non_null(strstr(t, "byoai_requests_total{route=\"/v1/models\",status=\"2xx\"} 1\n"));
    assert_non_null(strstr(t, "byoai_requests_total{route=\"/v1/models\",status=\"4xx\"} 2\n"));
    assert_non_null(strstr(t, "byoai_prompt_tokens_total 10\n"));
    assert_non_null(strstr(t, "byoai_generated_tokens_total 5\n"));
    assert_non_null(strstr(t, "byoai_tokens_per_second 0.50\n"));
    assert_non_null(strstr(t, "byoai_requests_cancelled_total 1\n"));
    assert_non_null(strstr(t, "byoai_queue_depth 3\n"));
    assert_non_null(strstr(t, "byoai_loaded_models 1\n"));
    assert_non_null(strstr(t, "# TYPE byoai_resident_memory_bytes gauge\n"));
    free(t);
    srv_metrics_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_lifecycle), cmocka_unit_test(test_metrics_text)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
