/*
 * Thread pool for compute: every job runs on all threads at once (the
 * caller is thread 0), which is what a data-parallel matmul wants.
 *
 * Hand-off is a generation counter. Idle workers spin on it briefly (a job
 * usually follows within microseconds during inference), then sleep on a
 * condition variable. The "sleepers" counters make the wake-ups cheap when
 * nobody sleeps: with sequentially consistent atomics, either the sleeper
 * sees the new generation before waiting, or the waker sees the sleeper and
 * broadcasts under the mutex.
 */
#include "byoai/base.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ITERS 4000

/* Pause while spinning; now and then yield the core so that a pool larger
 * than the machine (or a busy machine) still makes progress quickly. */
static inline void spin_pause(int i) {
    if ((i & 63) == 63) sched_yield();
    else cpu_relax();
}

struct byoai_pool {
    int n;
    pthread_t *threads;
    byoai_pool_fn fn;
    void *arg;
    unsigned gen;       /* job generation, bumped by each run */
    int pending;        /* workers that have not finished the current job */
    int stop;
    int work_sleepers;  /* workers asleep waiting for a job */
    int done_sleeper;   /* the caller asleep waiting for the job's end */
    pthread_mutex_t mu;
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
};

typedef struct {
    byoai_pool *pool;
    int ith;
} worker_arg;

#define LOAD(p) __atomic_load_n(p, __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n(p, v, __ATOMIC_SEQ_CST)

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    byoai_pool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = LOAD(&pool->gen);
        for (int i = 0; g == seen && i < SPIN_ITERS && !LOAD(&pool->stop); i++) {
            spin_pause(i);
            g = LOAD(&pool->gen);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mu);
            __atomic_add_fetch(&pool->work_sleepers, 1, __ATOMIC_SEQ_CST);
            while ((g = LOAD(&pool->gen)) == seen && !LOAD(&pool->stop))
                pthread_cond_wait(&pool->cv_work, &pool->mu);
            __atomic_sub_fetch(&pool->work_sleepers, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&pool->mu);
        }
        if (LOAD(&pool->stop)) break;
        seen = g;
        pool->fn(pool->arg, wa.ith, pool->n);
        if (__atomic_sub_fetch(&pool->pending, 1, __ATOMIC_SEQ_CST) == 0 && LOAD(&pool->done_sleeper)) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->cv_done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
    return NULL;
}

int byoai_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

int byoai_pool_new(int n_threads, byoai_pool **out, byoai_error *err) {
    *out = NULL;
    if (n_threads <= 0) n_threads = byoai_cpu_count();
    if (n_threads > 512) return byoai_error_set(err, BYOAI_ERANGE, "%d threads is too many (max 512)", n_threads);
    byoai_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for the thread pool");
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv_work, NULL);
    pthread_cond_init(&pool->cv_done, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!pool->threads) {
        free(pool);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for the thread pool");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || pthread_create(&pool->threads[i], NULL, worker_main, (wa->pool = pool, wa->ith = i, wa)) != 0) {
            free(wa);
            pool->n = i; /* only join what started */
            byoai_pool_free(pool);
            return byoai_error_set(err, BYOAI_EIO, "cannot start worker thread %d", i);
        }
    }
    *out = pool;
    return BYOAI_OK;
}

int byoai_pool_size(const byoai_pool *pool) { return pool ? pool->n : 1; }

void byoai_pool_run(byoai_pool *pool, byoai_pool_fn fn, void *arg) {
    if (!pool || pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    STORE(&pool->pending, pool->n - 1);
    __atomic_add_fetch(&pool->gen, 1, __ATOMIC_SEQ_CST);
    if (LOAD(&pool->work_sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv_work);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(arg, 0, pool->n);
    for (int i = 0; LOAD(&pool->pending) > 0 && i < SPIN_ITERS; i++) spin_pause(i);
    if (LOAD(&pool->pending) > 0) {
        pthread_mutex_lock(&pool->mu);
        STORE(&pool->done_sleeper, 1);
        while (LOAD(&pool->pending) > 0) pthread_cond_wait(&pool->cv_done, &pool->mu);
        STORE(&pool->done_sleeper, 0);
        pthread_mutex_unlock(&pool->mu);
    }
}

void byoai_pool_free(byoai_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    STORE(&pool->stop, 1);
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv_work);
    pthread_cond_destroy(&pool->cv_done);
    free(pool->threads);
    free(pool);
}
