/* Three cluster nodes in one process on 127.0.0.1: joining through the
 * admin's node, the shared view, a model deployed across all three, greedy
 * and seeded output equal to one machine's, completions asked of a member
 * that does not coordinate, and a member leaving mid-generation; the prompt
 * cache (a prompt that shares a prefix with an earlier one computes only the
 * rest, with the same output); and the coordinator leaving under a
 * completion asked through another member, which a member takes over. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byoai/cluster.h"
#include "byoai/model.h"
#include "byoai/sampler.h"
#include "byoai/tokenizer.h"

static const int32_t PROMPT[5] = {1, 403, 407, 261, 378}; /* "Once upon a time" */

/* what one machine generates */
static int reference_of(const int32_t *prompt, int n_prompt, const byoai_sampler_params *sp, int n, int32_t *out) {
    byoai_error err;
    byoai_model *m;
    byoai_context *c;
    byoai_sampler *s;
    assert_int_equal(byoai_model_load(tu_shared("models/stories260K.gguf"), NULL, &m, &err), 0);
    byoai_context_params cp = {.n_ctx = 128, .n_threads = 1};
    assert_int_equal(byoai_context_new(m, &cp, &c, &err), 0);
    assert_int_equal(byoai_sampler_new(sp, (int32_t)byoai_model_hparams(m)->n_vocab, &s, &err), 0);
    for (int i = 0; i < n_prompt; i++) byoai_sampler_accept(s, prompt[i]);
    byoai_batch b = {.n_tokens = n_prompt, .tokens = prompt};
    assert_int_equal(byoai_decode(c, &b, &err), 0);
    int k = 0;
    for (; k < n; k++) {
        int32_t id = byoai_sampler_sample(s, byoai_get_output(c, 0));
        if (byoai_token_is_eog(byoai_model_tokenizer(m), id)) break;
        out[k] = id;
        byoai_sampler_accept(s, id);
        byoai_batch one = {.n_tokens = 1, .tokens = &id};
        assert_int_equal(byoai_decode(c, &one, &err), 0);
    }
    byoai_sampler_free(s);
    byoai_context_free(c);
    byoai_model_free(m);
    return k;
}

static int reference(const byoai_sampler_params *sp, int n, int32_t *out) { return reference_of(PROMPT, 5, sp, n, out); }

typedef struct {
    int32_t toks[256];
    int n;
    int stop_after;
    byoai_cluster *victim; /* stopped (leaves) after stop_after tokens */
} collect;

static int on_token(void *user, const byoai_cluster_token *t) {
    collect *c = user;
    if (c->n < 256) c->toks[c->n++] = t->id;
    if (c->victim && c->n == c->stop_after) {
        byoai_cluster_stop(c->victim);
        c->victim = NULL;
    }
    return 0;
}

typedef struct {
    byoai_cluster *c;
    byoai_cluster_gen_params p;
    collect got;
    int rc;
    char msg[256];
} gen_thread;

static void *gen_main(void *arg) {
    gen_thread *g = arg;
    byoai_error err = {0};
    byoai_cluster_gen_result res;
    g->rc = byoai_cluster_generate(g->c, "stories", PROMPT, 5, &g->p, on_token, &g->got, &res, &err);
    snprintf(g->msg, sizeof g->msg, "%s", err.msg);
    return NULL;
}

static byoai_cluster *start(const char *home, const char *peer) {
    byoai_cluster_config cfg = {.home = home, .bind_addr = "127.0.0.1", .no_discovery = true, .heartbeat_s = 0.2,
                                .failure_timeout_s = 2, .step_timeout_s = 20, .load_timeout_s = 30, .n_threads = 1,
                                .memory = 64u << 20};
    const char *peers[1] = {peer};
    const char *files[1] = {tu_shared("models/stories260K.gguf")};
    if (peer) {
        cfg.peers = peers;
        cfg.n_peers = 1;
    }
    cfg.model_files = files;
    cfg.n_model_files = 1;
    byoai_cluster *c;
    byoai_error err = {0};
    if (byoai_cluster_start(&cfg, &c, &err)) fail_msg("start: %s", err.msg);
    return c;
}

static void wait_alive(byoai_cluster **cs, int n, int want) {
    double deadline = byoai_time_now() + 15;
    for (;;) {
        int ok = 0;
        for (int i = 0; i < n; i++) ok += byoai_cluster_alive_count(cs[i]) == want;
        if (ok == n) return;
        if (byoai_time_now() > deadline) fail_msg("nodes did not see each other");
        usleep(50000);
    }
}

static void test_three_nodes(void **state) {
    (void)state;
    const char *home[3] = {strdup(tu_tmpdir()), strdup(tu_tmpdir()), strdup(tu_tmpdir())};
    byoai_error err = {0};
    byoai_cluster_identity idn;
    assert_int_equal(byoai_cluster_create(home[0], "unit", &idn, &err), 0);
    byoai_cluster *n[3];
    n[0] = start(home[0], NULL);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", byoai_cluster_port(n[0]));
    for (int i = 1; i < 3; i++) {
        char code[BYOAI_CLUSTER_CODE_MAX];
        assert_int_equal(byoai_cluster_invite(home[0], addr, 600, code, &err), 0);
        if (byoai_cluster_join(home[i], code, 5, &idn, &err)) fail_msg("join: %s", err.msg);
        n[i] = start(home[i], NULL); /* the admin's address comes from the join */
    }
    wait_alive(n, 3, 3);

    /* deploy across the three */
    byoai_cluster_model_opts o = {.name = "stories", .path = tu_shared("models/stories260K.gguf"), .n_ctx = 128,
                                  .n_seq = 2, .n_batch = 4, .min_nodes = 3};
    byoai_cluster_plan plan;
    assert_int_equal(byoai_cluster_plan_model(n[0], &o, &plan, &err), 0);
    assert_int_equal(plan.n_stages, 3);
    if (byoai_cluster_deploy(n[0], &o, &err)) fail_msg("deploy: %s", err.msg);
    assert_true(byoai_cluster_has_model(n[0], "stories"));
    char *st;
    assert_int_equal(byoai_cluster_status_json(n[0], &st, &err), 0);
    assert_non_null(strstr(st, "\"ready\": true"));
    free(st);

    /* greedy: equal to one machine, token for token (the prompt spans two 4-row chunks) */
    byoai_sampler_params greedy = byoai_sampler_defaults();
    greedy.temp = 0;
    int32_t want[128];
    int nw = reference(&greedy, 60, want);
    assert_true(nw > 20);
    byoai_cluster_gen_params gp = {.sampler = greedy, .n_predict = 60, .top_logprobs = 2};
    collect got = {0};
    byoai_cluster_gen_result res;
    if (byoai_cluster_generate(n[0], "stories", PROMPT, 5, &gp, on_token, &got, &res, &err)) fail_msg("gen: %s", err.msg);
    assert_int_equal(got.n, nw);
    assert_memory_equal(got.toks, want, (size_t)nw * sizeof(int32_t));
    assert_int_equal(res.n_prompt, 5);
    assert_int_equal(res.failovers, 0);

    /* the prompt cache: the same conversation again, longer, keeps what the stages hold */
    {
        int32_t conv[80];
        memcpy(conv, PROMPT, sizeof PROMPT);
        memcpy(conv + 5, want, 30 * sizeof(int32_t)); /* the prompt and part of the answer, then more */
        conv[35] = 403;
        conv[36] = 407;
        byoai_sampler_params rp = greedy;
        rp.repeat_penalty = 1.3f; /* the last stage replays the cached tokens into its sampler */
        int32_t want_c[64];
        int nc = reference_of(conv, 37, &rp, 40, want_c);
        byoai_cluster_gen_params cp = {.sampler = rp, .n_predict = 40, .top_logprobs = -1};
        collect gc = {0};
        if (byoai_cluster_generate(n[0], "stories", conv, 37, &cp, on_token, &gc, &res, &err)) fail_msg("cached: %s", err.msg);
        assert_int_equal(gc.n, nc);
        assert_memory_equal(gc.toks, want_c, (size_t)nc * sizeof(int32_t));
        assert_int_equal(res.n_cached, 5 + 30); /* the first turn's prompt and the answer it generated */
        /* the same prompt once more: all but the last token (its logits start the answer) */
        collect gc2 = {0};
        if (byoai_cluster_generate(n[0], "stories", conv, 37, &cp, on_token, &gc2, &res, &err)) fail_msg("again: %s", err.msg);
        assert_int_equal(res.n_cached, 36);
        assert_int_equal(gc2.n, nc);
        assert_memory_equal(gc2.toks, want_c, (size_t)nc * sizeof(int32_t));
        /* through a member that asks the coordinator: the count comes back with the answer */
        double dl = byoai_time_now() + 10;
        while (!byoai_cluster_has_model(n[1], "stories") && byoai_time_now() < dl) usleep(50000);
        collect gc3 = {0};
        if (byoai_cluster_generate(n[1], "stories", conv, 37, &cp, on_token, &gc3, &res, &err)) fail_msg("proxied: %s", err.msg);
        assert_int_equal(res.n_cached, 36);
        assert_memory_equal(gc3.toks, want_c, (size_t)nc * sizeof(int32_t));
    }

    /* seeded sampling too */
    byoai_sampler_params seeded = byoai_sampler_defaults();
    seeded.temp = 1.0f;
    seeded.seed = 42;
    seeded.repeat_penalty = 1.1f;
    int32_t want2[128];
    int nw2 = reference(&seeded, 50, want2);
    gp.sampler = seeded;
    gp.n_predict = 50;
    gp.top_logprobs = -1;
    collect got2 = {0};
    if (byoai_cluster_generate(n[0], "stories", PROMPT, 5, &gp, on_token, &got2, &res, &err)) fail_msg("gen: %s", err.msg);
    assert_int_equal(got2.n, nw2);
    assert_memory_equal(got2.toks, want2, (size_t)nw2 * sizeof(int32_t));

    /* a member that does not coordinate the model: it asks the coordinator */
    double deadline = byoai_time_now() + 10;
    while (!byoai_cluster_has_model(n[2], "stories") && byoai_time_now() < deadline) usleep(50000);
    assert_true(byoai_cluster_has_model(n[2], "stories"));
    const byoai_model *vocab;
    if (byoai_cluster_model_vocab(n[2], "stories", &vocab, &err)) fail_msg("vocab: %s", err.msg);
    assert_int_equal(byoai_tokenizer_n_vocab(byoai_model_tokenizer(vocab)), 512);
    gp.sampler = greedy;
    gp.n_predict = 60;
    collect got3 = {0};
    if (byoai_cluster_generate(n[2], "stories", PROMPT, 5, &gp, on_token, &got3, &res, &err)) fail_msg("proxy: %s", err.msg);
    assert_int_equal(got3.n, nw);
    assert_memory_equal(got3.toks, want, (size_t)nw * sizeof(int32_t));
    /* the models every member can run completions for (names once each) */
    byoai_cluster_model_opts o2 = o;
    o2.name = "stories-too";
    if (byoai_cluster_deploy(n[0], &o2, &err)) fail_msg("deploy 2: %s", err.msg);
    deadline = byoai_time_now() + 10;
    char names[8][64];
    size_t nn = 0;
    while (byoai_time_now() < deadline && (nn = byoai_cluster_list_models(n[2], names, 8)) < 2) usleep(50000);
    assert_int_equal(nn, 2);
    assert_true((!strcmp(names[0], "stories") && !strcmp(names[1], "stories-too")) ||
                (!strcmp(names[1], "stories") && !strcmp(names[0], "stories-too")));
    assert_int_equal(byoai_cluster_list_models(n[0], names, 1), 1); /* at most cap */
    assert_int_equal(byoai_cluster_undeploy(n[0], "stories-too", &err), 0);
    /* an unknown model */
    assert_int_equal(byoai_cluster_generate(n[2], "nope", PROMPT, 5, &gp, on_token, &got3, &res, &err), BYOAI_ENOTFOUND);

    /* two completions at once, one of them seeded, while the middle node leaves under them */
    {
        gen_thread g[2] = {{.c = n[0], .p = {.sampler = greedy, .n_predict = 60, .top_logprobs = -1}},
                           {.c = n[0], .p = {.sampler = seeded, .n_predict = 50, .top_logprobs = -1}}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, gen_main, &g[i]);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        for (int i = 0; i < 2; i++)
            if (g[i].rc) fail_msg("concurrent %d: %s", i, g[i].msg);
        assert_int_equal(g[0].got.n, nw);
        assert_memory_equal(g[0].got.toks, want, (size_t)nw * sizeof(int32_t));
        assert_int_equal(g[1].got.n, nw2);
        assert_memory_equal(g[1].got.toks, want2, (size_t)nw2 * sizeof(int32_t));
    }
    /* the middle node leaves after 10 tokens: the answer continues, unchanged */
    collect got4 = {.stop_after = 10, .victim = n[1]};
    if (byoai_cluster_generate(n[0], "stories", PROMPT, 5, &gp, on_token, &got4, &res, &err)) fail_msg("failover: %s", err.msg);
    n[1] = NULL;
    assert_int_equal(got4.n, nw);
    assert_memory_equal(got4.toks, want, (size_t)nw * sizeof(int32_t));
    assert_true(res.failovers >= 1);
    assert_int_equal(byoai_cluster_alive_count(n[0]), 2);

    /* concurrent completions survive a member leaving under them */
    {
        gen_thread g[2] = {{.c = n[0], .p = {.sampler = greedy, .n_predict = 60, .top_logprobs = -1}},
                           {.c = n[0], .p = {.sampler = seeded, .n_predict = 50, .top_logprobs = -1}}};
        g[0].got.stop_after = 15;
        g[0].got.victim = n[2];
        pthread_t t[2];
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, gen_main, &g[i]);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        for (int i = 0; i < 2; i++)
            if (g[i].rc) fail_msg("concurrent failover %d: %s", i, g[i].msg);
        assert_int_equal(g[0].got.n, nw);
        assert_memory_equal(g[0].got.toks, want, (size_t)nw * sizeof(int32_t));
        assert_int_equal(g[1].got.n, nw2);
        assert_memory_equal(g[1].got.toks, want2, (size_t)nw2 * sizeof(int32_t));
        n[2] = NULL;
    }
    /* the last other node gone: the coordinator carries on alone */
    collect got5 = {0};
    if (byoai_cluster_generate(n[0], "stories", PROMPT, 5, &gp, on_token, &got5, &res, &err)) fail_msg("alone: %s", err.msg);
    assert_int_equal(got5.n, nw);
    assert_memory_equal(got5.toks, want, (size_t)nw * sizeof(int32_t));
    byoai_cluster_stop(n[0]);
    for (int i = 0; i < 3; i++) {
        tu_rmtree(home[i]);
        free((void *)home[i]);
    }
}

/* The coordinator stops (and leaves) under a completion that another member
 * asked of it: the first other node of the plan takes the deployment over
 * and the completion continues there with the same tokens. */
static void test_coordinator_leaves(void **state) {
    (void)state;
    const char *home[3] = {strdup(tu_tmpdir()), strdup(tu_tmpdir()), strdup(tu_tmpdir())};
    byoai_error err = {0};
    byoai_cluster_identity idn;
    assert_int_equal(byoai_cluster_create(home[0], "unit", &idn, &err), 0);
    byoai_cluster *n[3];
    n[0] = start(home[0], NULL);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", byoai_cluster_port(n[0]));
    for (int i = 1; i < 3; i++) {
        char code[BYOAI_CLUSTER_CODE_MAX];
        assert_int_equal(byoai_cluster_invite(home[0], addr, 600, code, &err), 0);
        if (byoai_cluster_join(home[i], code, 5, &idn, &err)) fail_msg("join: %s", err.msg);
        n[i] = start(home[i], NULL);
    }
    wait_alive(n, 3, 3);
    byoai_cluster_model_opts o = {.name = "stories", .path = tu_shared("models/stories260K.gguf"), .n_ctx = 128,
                                  .n_seq = 2, .n_batch = 4, .min_nodes = 3};
    if (byoai_cluster_deploy(n[0], &o, &err)) fail_msg("deploy: %s", err.msg);
    double deadline = byoai_time_now() + 10;
    while (!byoai_cluster_has_model(n[2], "stories") && byoai_time_now() < deadline) usleep(50000);
    byoai_sampler_params greedy = byoai_sampler_defaults();
    greedy.temp = 0;
    int32_t want[128];
    int nw = reference(&greedy, 60, want);
    byoai_cluster_gen_params gp = {.sampler = greedy, .n_predict = 60, .top_logprobs = -1};
    collect got = {.stop_after = 10, .victim = n[0]};
    byoai_cluster_gen_result res;
    if (byoai_cluster_generate(n[2], "stories", PROMPT, 5, &gp, on_token, &got, &res, &err))
        fail_msg("the completion did not survive its coordinator: %s", err.msg);
    n[0] = NULL;
    assert_int_equal(got.n, nw);
    assert_memory_equal(got.toks, want, (size_t)nw * sizeof(int32_t));
    assert_true(res.failovers >= 1);
    /* a member coordinates it now, and the record says so on both */
    char *st;
    assert_int_equal(byoai_cluster_status_json(n[2], &st, &err), 0);
    assert_non_null(strstr(st, "\"term\": 2"));
    free(st);
    collect again = {0};
    if (byoai_cluster_generate(n[1], "stories", PROMPT, 5, &gp, on_token, &again, &res, &err)) fail_msg("after: %s", err.msg);
    assert_memory_equal(again.toks, want, (size_t)nw * sizeof(int32_t));
    byoai_cluster_stop(n[1]);
    byoai_cluster_stop(n[2]);
    for (int i = 0; i < 3; i++) {
        tu_rmtree(home[i]);
        free((void *)home[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_nodes),
        cmocka_unit_test(test_coordinator_leaves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
