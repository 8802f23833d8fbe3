/* The per-model scheduler (src/server/scheduler.c) with stories260K:
 * greedy output, continuous batching equal to running alone, queueing,
 * cancellation, limits, stop strings, embeddings, JSON mode, deadlines. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server_internal.h"

static byoai_model *M;
static srv_metrics *MET;

static int setup(void **state) {
    (void)state;
    byoai_error err;
    if (byoai_model_load(tu_shared("models/stories260K.gguf"), NULL, &M, &err)) fail_msg("%s", err.msg);
    srv_metrics_new(&MET);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    byoai_model_free(M);
    srv_metrics_free(MET);
    return 0;
}

static srv_sched *sched(uint32_t n_seq, uint32_t n_ctx, uint32_t queue) {
    srv_sched_params p = {.n_seq = n_seq, .n_ctx = n_ctx, .queue_max = queue, .n_threads = 2, .n_batch = 64,
                          .similarity = 0.5f};
    srv_sched *s;
    byoai_error err;
    if (srv_sched_new(M, &p, MET, &s, &err)) fail_msg("%s", err.msg);
    return s;
}

static srv_job *job(const char *prompt, uint32_t max_new) {
    srv_job *j = srv_job_new();
    byoai_error err;
    size_t n;
    if (byoai_tokenize(byoai_model_tokenizer(M), prompt, strlen(prompt), true, false, &j->prompt, &n, &err))
        fail_msg("%s", err.msg);
    j->n_prompt = (uint32_t)n;
    j->max_new = max_new;
    j->s.temperature = 0;
    j->s.top_p = 1;
    j->s.repeat_penalty = 1;
    return j;
}

static void wait_done(srv_job *j) {
    for (int i = 0; i < 3000 && !srv_job_wait(j, SIZE_MAX, 0.1); i++) {}
    assert_true(j->done);
}

/* the text of a finished job (malloc'd) */
static char *text_of(srv_job *j) {
    size_t n = 0;
    for (size_t i = 0; i < j->n_pieces; i++) n += j->pieces[i].len;
    char *s = malloc(n + 1), *w = s;
    for (size_t i = 0; i < j->n_pieces; i++) {
        memcpy(w, j->pieces[i].text, j->pieces[i].len);
        w += j->pieces[i].len;
    }
    *w = '\0';
    return s;
}

static char *run_alone(srv_sched *s, const char *prompt, uint32_t max_new) {
    srv_job *j = job(prompt, max_new);
    srv_error e;
    assert_int_equal(srv_sched_submit(s, j, &e), 0);
    wait_done(j);
    char *t = text_of(j);
    srv_job_unref(j);
    return t;
}

static void test_greedy(void **state) {
    (void)state;
    srv_sched *s = sched(1, 0, 4);
    assert_int_equal(srv_sched_n_ctx(s), 128); /* the model's trained context */
    srv_job *j = job("Once upon a time", 11);
    srv_error e;
    assert_int_equal(srv_sched_submit(s, j, &e), 0);
    wait_done(j);
    char *t = text_of(j);
    assert_string_equal(t, ", there was a little girl named Lily.");
    assert_string_equal(j->finish, "length");
    assert_int_equal(j->n_gen, 11);
    assert_int_equal(j->n_prompt_eval, 5);
    assert_true(j->t_first >= j->t_submit && j->t_end >= j->t_first);
    free(t);
    srv_job_unref(j);
    /* the context's end stops a generation with "length" */
    j = job("Once upon a time", 0);
    assert_int_equal(srv_sched_submit(s, j, &e), 0);
    wait_done(j);
    assert_true(!strcmp(j->finish, "length") || !strcmp(j->finish, "stop"));
    assert_true(j->n_prompt + j->n_gen <= 129);
    srv_job_unref(j);
    srv_sched_free(s);
}

/* Several requests decoded together give what each gives alone, also when
 * more arrive than there are slots. */
static void test_batched_equals_alone(void **state) {
    (void)state;
    const char *prompts[] = {"Once upon a time", "The cat", "Lily", "One day", "Tom had a big", "The sun", "She saw"};
    const size_t n = sizeof prompts / sizeof prompts[0];
    char *alone[8];
    srv_sched *one = sched(1, 256, 4);
    for (size_t i = 0; i < n; i++) alone[i] = run_alone(one, prompts[i], 40);
    srv_sched_free(one);
    srv_sched *s = sched(3, 256, 16);
    srv_job *jobs[8];
    srv_error e;
    for (size_t i = 0; i < n; i++) {
        jobs[i] = job(prompts[i], 40);
        assert_int_equal(srv_sched_submit(s, jobs[i], &e), 0);
    }
    for (size_t i = 0; i < n; i++) {
        wait_done(jobs[i]);
        char *t = text_of(jobs[i]);
        if (strcmp(t, alone[i])) fail_msg("prompt %zu batched:\n%s\nalone:\n%s", i, t, alone[i]);
        free(t);
        free(alone[i]);
        srv_job_unref(jobs[i]);
    }
    uint32_t q, a, sl;
    srv_sched_counts(s, &q, &a, &sl);
    assert_true(q == 0 && a == 0 && sl == 3);
    srv_sched_free(s);
}

/* A job whose prompt starts with what a slot's cache holds evaluates only
 * the rest, and answers exactly as from scratch. */
static void test_prefix_reuse(void **state) {
    (void)state;
    srv_sched *fresh = sched(1, 256, 4);
    char *want = run_alone(fresh, "Once upon a time, there was a little girl named Lily. She", 20);
    char *want_same = run_alone(fresh, "Once upon a time", 8); /* cache holds something else */
    srv_sched_free(fresh);
    srv_sched *s = sched(2, 256, 4);
    srv_error e;
    srv_job *a = job("Once upon a time", 11);
    assert_int_equal(srv_sched_submit(s, a, &e), 0);
    wait_done(a);
    assert_int_equal(a->n_prompt_cached, 0);
    srv_job_unref(a);
    /* the same conversation one step on: its start is in a slot's cache */
    srv_job *b = job("Once upon a time, there was a little girl named Lily. She", 20);
    assert_int_equal(srv_sched_submit(s, b, &e), 0);
    wait_done(b);
    assert_true(b->n_prompt_cached >= 5);
    assert_int_equal(b->n_prompt_eval + b->n_prompt_cached, b->n_prompt);
    char *t = text_of(b);
    assert_string_equal(t, want);
    free(t);
    srv_job_unref(b);
    /* the very same prompt again: all but its last token reused */
    srv_job *c = job("Once upon a time", 8);
    assert_int_equal(srv_sched_submit(s, c, &e), 0);
    wait_done(c);
    assert_int_equal(c->n_prompt_cached, c->n_prompt - 1);
    t = text_of(c);
    assert_string_equal(t, want_same);
    free(t);
    srv_job_unref(c);
    free(want);
    free(want_same);
    srv_sched_free(s);
}

/* conversations that take turns keep their own slots: a slot is reused only
 * when it holds most of the prompt, else the least recently used one is
 * taken (before, B's turn went to A's slot for their shared first token) */
static void test_alternating_keep_slots(void **state) {
    (void)state;
    srv_sched *s = sched(2, 256, 4);
    const char *start[2] = {"Once upon a time, there was a dog", "The sun was hot and the sky was blue"};
    char convo[2][2048];
    for (int k = 0; k < 2; k++) snprintf(convo[k], sizeof convo[k], "%s", start[k]);
    for (int turn = 0; turn < 3; turn++)
        for (int k = 0; k < 2; k++) {
            srv_error e;
            srv_job *j = job(convo[k], 8);
            uint32_t n_prompt = j->n_prompt;
            assert_int_equal(srv_sched_submit(s, j, &e), 0);
            wait_done(j);
            if (turn > 0) assert_true(j->n_prompt_cached >= n_prompt * 7 / 10);
            else assert_true(j->n_prompt_cached <= 1);
            char *t = text_of(j);
            size_t l = strlen(convo[k]);
            snprintf(convo[k] + l, sizeof convo[k] - l, "%s. Then", t);
            free(t);
            srv_job_unref(j);
        }
    srv_sched_free(s);
}

/* a start shared with another slot (a common system prompt) is copied from
 * it: the new conversation evaluates only its own part, the other keeps its
 * slot, and the answers equal running alone */
static void test_shared_start_copied(void **state) {
    (void)state;
    const char *sys = "Once upon a time, there was a girl. ";
    char a_prompt[512], b_prompt[512];
    snprintf(a_prompt, sizeof a_prompt, "%sOne day she saw a big red ball", sys);
    snprintf(b_prompt, sizeof b_prompt, "%sThe sun was hot and the sky was blue and the birds sang in the big green trees all day", sys);
    srv_sched *fresh = sched(1, 256, 4);
    char *want_b = run_alone(fresh, b_prompt, 8);
    srv_sched_free(fresh);
    srv_sched *s = sched(2, 256, 4);
    srv_error e;
    srv_job *a = job(a_prompt, 8);
    assert_int_equal(srv_sched_submit(s, a, &e), 0);
    wait_done(a);
    srv_job *b = job(b_prompt, 8);
    uint32_t n_sys = 0;
    while (n_sys < a->n_prompt && n_sys < b->n_prompt && a->prompt[n_sys] == b->prompt[n_sys]) n_sys++;
    assert_true(n_sys >= 10);
    assert_int_equal(srv_sched_submit(s, b, &e), 0);
    wait_done(b);
    assert_true((double)n_sys / b->n_prompt < 0.5); /* below the similarity: b took the other slot */
    assert_int_equal(b->n_prompt_cached, n_sys);
    char *t = text_of(b);
    assert_string_equal(t, want_b);
    free(t);
    /* a's conversation is still whole in its slot */
    srv_job *a2 = job(a_prompt, 4);
    assert_int_equal(srv_sched_submit(s, a2, &e), 0);
    wait_done(a2);
    assert_int_equal(a2->n_prompt_cached, a2->n_prompt - 1);
    srv_job_unref(a);
    srv_job_unref(a2);
    srv_job_unref(b);
    free(want_b);
    srv_sched_free(s);
}

static void test_cancel_frees_slot(void **state) {
    (void)state;
    srv_sched *s = sched(1, 4096, 4);
    srv_job *j = job("Once upon a time", 4000);
    j->s.json_mode = true; /* cannot end before its budget: surely still running when cancelled */
    j->s.temperature = 1;
    srv_error e;
    assert_int_equal(srv_sched_submit(s, j, &e), 0);
    assert_true(srv_job_wait(j, 3, 10.0)); /* a few pieces */
    srv_job_cancel(j);
    wait_done(j);
    assert_string_equal(j->finish, "cancelled");
    assert_true(j->n_gen < 4000);
    uint32_t q, a, sl;
    srv_sched_counts(s, &q, &a, &sl);
    assert_int_equal(a, 0);
    srv_job_unref(j);
    /* the slot serves the next request */
    char *t = run_alone(s, "Once upon a time", 3);
    assert_string_equal(t, ", there was");
    free(t);
    /* a job cancelled while queued never starts */
    srv_job *j2 = job("Once upon a time", 5);
    srv_job_cancel(j2);
    assert_int_equal(srv_sched_submit(s, j2, &e), 0);
    wait_done(j2);
    assert_string_equal(j2->finish, "cancelled");
    assert_int_equal(j2->n_gen, 0);
    srv_job_unref(j2);
    srv_sched_free(s);
}

static void test_limits(void **state) {
    (void)state;
    srv_sched *s = sched(1, 64, 1);
    srv_error e;
    /* a prompt longer than the context */
    char long_prompt[2000] = "";
    for (int i = 0; i < 80; i++) strcat(long_prompt, "Once upon a time ");
    srv_job *j = job(long_prompt, 5);
    assert_int_equal(srv_sched_submit(s, j, &e), 400);
    assert_string_equal(e.code, "context_length_exceeded");
    assert_non_null(strstr(e.message, "holds 64 tokens"));
    srv_job_unref(j);
    /* an empty prompt, a token outside the vocabulary */
    j = srv_job_new();
    assert_int_equal(srv_sched_submit(s, j, &e), 400);
    j->prompt = malloc(sizeof(int32_t));
    j->prompt[0] = 100000;
    j->n_prompt = 1;
    assert_int_equal(srv_sched_submit(s, j, &e), 400);
    assert_non_null(strstr(e.message, "outside the model's vocabulary"));
    srv_job_unref(j);
    /* a full queue: one running, one waiting, the third refused */
    srv_job *a = job("Once upon a time", 0);
    a->s.json_mode = true;
    a->s.temperature = 1;
    assert_int_equal(srv_sched_submit(s, a, &e), 0);
    assert_true(srv_job_wait(a, 0, 10.0));
    srv_job *b = job("Once", 2), *c = job("Once", 2);
    assert_int_equal(srv_sched_submit(s, b, &e), 0);
    assert_int_equal(srv_sched_submit(s, c, &e), 503);
    assert_string_equal(e.code, "overloaded");
    wait_done(a);
    wait_done(b);
    assert_string_equal(b->finish, "length");
    srv_job_unref(a);
    srv_job_unref(b);
    srv_job_unref(c);
    /* a deadline that passed: an error, not text */
    srv_job *d = job("Once upon a time", 50);
    d->deadline = byoai_time_now() - 1;
    assert_int_equal(srv_sched_submit(s, d, &e), 0);
    wait_done(d);
    assert_string_equal(d->finish, "error");
    assert_true(d->err.status == 503 || d->err.status == 504);
    srv_job_unref(d);
    srv_sched_free(s);
}

static void test_stop_strings(void **state) {
    (void)state;
    srv_sched *s = sched(2, 0, 4);
    srv_job *j = job("Once upon a time", 40);
    j->s.stop[0] = strdup("Lily");
    j->s.stop[1] = strdup("ball");
    j->s.n_stop = 2;
    srv_error e;
    assert_int_equal(srv_sched_submit(s, j, &e), 0);
    wait_done(j);
    char *t = text_of(j);
    assert_string_equal(t, ", there was a little girl named ");
    assert_string_equal(j->finish, "stop");
    free(t);
    srv_job_unref(j);
    srv_sched_free(s);
}

static void test_embeddings(void **state) {
    (void)state;
    srv_sched *s = sched(2, 0, 4);
    srv_job *a = job("Once upon a time", 0), *b = job("Once upon a time", 0), *c = job("The dog barked", 0);
    a->embed = b->embed = c->embed = true;
    srv_error e;
    assert_int_equal(srv_sched_submit(s, a, &e), 0);
    assert_int_equal(srv_sched_submit(s, b, &e), 0);
    assert_int_equal(srv_sched_submit(s, c, &e), 0);
    wait_done(a);
    wait_done(b);
    wait_done(c);
    assert_int_equal(a->n_embd, 64);
    assert_int_equal(a->n_gen, 0);
    double norm = 0, dot = 0;
    for (uint32_t i = 0; i < 64; i++) {
        assert_true(a->embedding[i] == b->embedding[i]);
        norm += (double)a->embedding[i] * a->embedding[i];
        dot += (double)a->embedding[i] * c->embedding[i];
    }
    assert_true(fabs(norm - 1) < 1e-4);
    assert_true(dot < 0.999);
    srv_job_unref(a);
    srv_job_unref(b);
    srv_job_unref(c);
    srv_sched_free(s);
}

static void test_json_mode(void **state) {
    (void)state;
    srv_sched *s = sched(2, 512, 4);
    for (int seed = 0; seed < 6; seed++) {
        srv_job *j = job("Once upon a time", 10 + (uint32_t)seed * 15);
        j->s.json_mode = true; /* as the request parser sets it: the flag and its grammar */
        assert_int_equal(byoai_grammar_json_object(&j->grammar, NULL), 0);
        j->s.temperature = 1;
        j->s.seed = (uint64_t)seed;
        srv_error e;
        assert_int_equal(srv_sched_submit(s, j, &e), 0);
        wait_done(j);
        char *t = text_of(j);
        json_error_t je;
        json_t *v = json_loads(t, 0, &je);
        if (!json_is_object(v)) fail_msg("seed %d: not a JSON object: %s", seed, t);
        json_decref(v);
        free(t);
        srv_job_unref(j);
    }
    srv_sched_free(s);
}

/* stopping the scheduler cancels what runs and what waits */
static void test_stop(void **state) {
    (void)state;
    srv_sched *s = sched(1, 4096, 4);
    srv_job *a = job("Once upon a time", 3000), *b = job("Once", 5);
    a->s.json_mode = true;
    a->s.temperature = 1;
    srv_error e;
    assert_int_equal(srv_sched_submit(s, a, &e), 0);
    assert_int_equal(srv_sched_submit(s, b, &e), 0);
    assert_true(srv_job_wait(a, 0, 10.0));
    srv_sched_stop(s);
    assert_true(a->done && b->done);
    assert_string_equal(a->finish, "cancelled");
    assert_string_equal(b->finish, "cancelled");
    srv_job *c = job("Once", 5);
    assert_int_equal(srv_sched_submit(s, c, &e), 503);
    srv_job_unref(a);
    srv_job_unref(b);
    srv_job_unref(c);
    srv_sched_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),      cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_prefix_reuse), cmocka_unit_test(test_alternating_keep_slots),
        cmocka_unit_test(test_shared_start_copied),
        cmocka_unit_test(test_cancel_frees_slot), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_stop_strings), cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_json_mode),   cmocka_unit_test(test_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
