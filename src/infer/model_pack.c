/*
 * Packing a loaded model's matrices for this CPU (layout in packed.h).
 *
 * Every matrix whose type has a SIMD kernel for packed tiles is copied, tile
 * by tile on all cores, into one anonymous mapping (with transparent huge
 * pages where the kernel offers them: the weights are streamed once per
 * token, and 2 MiB pages spare the TLB). The file's pages of a packed matrix
 * are then dropped from this process (MADV_DONTNEED on a read-only shared
 * mapping only unmaps them; they stay in the page cache, clean), so the
 * resident memory stays one copy of the weights. A token embedding that is
 * also the output matrix stays unpacked: rows are looked up from it.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "infer/model_internal.h"

#define MAX_PACK 4096
#define CHUNK_TILES 16

typedef struct {
    byoai_weight *w[MAX_PACK];
    uint64_t first[MAX_PACK + 1]; /* first work item of each weight */
    int count;
    uint64_t next, limit;         /* the items of this round: [next, limit) */
} pack_job;

static void pack_run(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    pack_job *j = arg;
    int wi = 0;
    for (;;) {
        uint64_t item = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (item >= j->limit) break;
        while (item >= j->first[wi + 1]) wi++;
        while (item < j->first[wi]) wi--;
        byoai_weight *w = j->w[wi];
        uint64_t t0 = (item - j->first[wi]) * CHUNK_TILES, t1 = t0 + CHUNK_TILES;
        if (t1 > w->packed.n_tiles) t1 = w->packed.n_tiles;
        for (uint64_t t = t0; t < t1; t++) byoai_pack_tile(&w->packed, w->data, w->row_bytes, t);
    }
}

static void add(pack_job *j, const byoai_packed_kernels *pk, byoai_weight *w) {
    if (!w->data || j->count >= MAX_PACK || !byoai_pack_pays(pk, w->type)) return;
    if (!byoai_pack_shape(w->type, w->ne0, w->ne1, &w->packed)) return;
    j->w[j->count++] = w;
}

/* drop this process's pages of [p, p + n) that lie wholly inside it */
static void drop_pages(const void *p, uint64_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Work between two progress reports: about 1% of the total, at least 1 MiB. */
static uint64_t round_bytes(uint64_t total) { return total / 100 > (1u << 20) ? total / 100 : (1u << 20); }

typedef struct {
    byoai_progress_fn fn;
    void *user;
    const char *what;
    uint64_t done, total;
    double t0;
} load_progress;

static int report(load_progress *lp) {
    if (!lp->fn) return 0;
    double dt = byoai_time_now() - lp->t0;
    byoai_progress p = {"loading", lp->what, lp->done, lp->total, dt > 0 ? (double)lp->done / dt : 0};
    return lp->fn(lp->user, &p) ? BYOAI_ECANCELED : 0;
}

/* Every matrix of the loaded range, packed or not. */
static int weights_of(byoai_model *m, byoai_weight **out, int cap) {
    int n = 0;
    for (uint32_t il = m->layer_begin; il < m->layer_end; il++) {
        byoai_layer *L = &m->layers[il];
        byoai_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wqkv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0] && n < cap; i++)
            if (ws[i]->data) out[n++] = ws[i];
    }
    if (m->has_embd && m->tok_embd.data && n < cap) out[n++] = &m->tok_embd;
    if (m->has_head && m->output.data && m->output.data != m->tok_embd.data && n < cap) out[n++] = &m->output;
    return n;
}

static uint64_t weight_bytes(const byoai_weight *w) { return w->row_bytes * w->ne1; }

/* Read the file's pages of the matrices that stay unpacked (one byte a
 * page), reporting progress: the disk is read now, not at the first token. */
static int touch_unpacked(byoai_model *m, load_progress *lp, byoai_error *err) {
    byoai_weight **list = malloc(MAX_PACK * sizeof *list);
    if (!list) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    int n = weights_of(m, list, MAX_PACK);
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    volatile uint8_t sink = 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (list[i]->packed.data) continue;
        const uint8_t *p = list[i]->data;
        uint64_t bytes = weight_bytes(list[i]);
        madvise((void *)((uintptr_t)p & ~(uintptr_t)(page - 1)), bytes + ((uintptr_t)p & (page - 1)), MADV_WILLNEED);
        const uint64_t step = round_bytes(lp->total);
        for (uint64_t off = 0; off < bytes && !rc; off += step) {
            uint64_t end = off + step < bytes ? off + step : bytes;
            for (uint64_t o = off; o < end; o += page) sink ^= p[o];
            lp->done += end - off;
            rc = report(lp);
        }
    }
    (void)sink;
    free(list);
    if (rc) byoai_error_set(err, rc, "loading was cancelled");
    return rc;
}

/* Bytes the load will make ready with progress: unpacked matrices (read in)
 * and packed ones (copied). */
static uint64_t unpacked_bytes(byoai_model *m) {
    byoai_weight **list = malloc(MAX_PACK * sizeof *list);
    if (!list) return 0;
    int n = weights_of(m, list, MAX_PACK);
    uint64_t t = 0;
    for (int i = 0; i < n; i++)
        if (!list[i]->packed.data) t += weight_bytes(list[i]);
    free(list);
    return t;
}

int byoai_model_pack(byoai_model *m, bool pack, byoai_progress_fn progress, void *user, const char *what,
                     byoai_error *err) {
    load_progress lp = {progress, user, what, 0, 0, byoai_time_now()};
    const byoai_packed_kernels *pk = pack ? byoai_packed_kernels_best() : NULL;
    if (!pk) {
        if (!progress) return 0;
        lp.total = unpacked_bytes(m);
        return touch_unpacked(m, &lp, err);
    }
    pack_job *j = calloc(1, sizeof *j);
    if (!j) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    for (uint32_t il = m->layer_begin; il < m->layer_end; il++) {
        byoai_layer *L = &m->layers[il];
        byoai_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wqkv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) add(j, pk, ws[i]);
    }
    if (m->has_head && !(m->has_embd && m->output.data == m->tok_embd.data)) add(j, pk, &m->output);
    if (j->count == 0) {
        free(j);
        if (!progress) return 0;
        lp.total = unpacked_bytes(m);
        return touch_unpacked(m, &lp, err);
    }
    size_t total = 0;
    for (int i = 0; i < j->count; i++) {
        const byoai_packed *p = &j->w[i]->packed;
        total += (size_t)((p->n_tiles * p->tile_bytes + 63) & ~(uint64_t)63);
        j->first[i + 1] = j->first[i] + (p->n_tiles + CHUNK_TILES - 1) / CHUNK_TILES;
    }
    void *arena = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (arena == MAP_FAILED) {
        for (int i = 0; i < j->count; i++) j->w[i]->packed = (byoai_packed){0};
        free(j);
        return byoai_error_set(err, BYOAI_ENOMEM, "out of memory for %.1f MiB of packed weights; set BYOAI_REPACK=0 "
                               "to run the file's layout in place", (double)total / 1048576.0);
    }
#ifdef MADV_HUGEPAGE
    madvise(arena, total, MADV_HUGEPAGE);
#endif
    size_t off = 0;
    for (int i = 0; i < j->count; i++) {
        byoai_packed *p = &j->w[i]->packed;
        p->data = (uint8_t *)arena + off;
        off += (size_t)((p->n_tiles * p->tile_bytes + 63) & ~(uint64_t)63);
    }
    byoai_pool *pool;
    int rc = byoai_pool_new(0, &pool, err);
    if (rc) {
        munmap(arena, total);
        for (int i = 0; i < j->count; i++) j->w[i]->packed = (byoai_packed){0};
        free(j);
        return rc;
    }
    /* the arena belongs to the model from here on (freed with it, also on a cancel) */
    m->pack_arena = arena;
    m->pack_arena_size = total;
    uint64_t items = j->first[j->count];
    if (progress) lp.total = total + unpacked_bytes(m);
    /* rounds between reports (one round without a callback) */
    uint64_t per_round = progress ? (uint64_t)((double)items * (double)round_bytes(lp.total) / (double)total) + 1 : items;
    for (uint64_t start = 0; start < items && !rc; start += per_round) {
        j->next = start;
        j->limit = start + per_round < items ? start + per_round : items;
        byoai_pool_run(pool, pack_run, j);
        if (progress) {
            lp.done = (uint64_t)((double)total * (double)j->limit / (double)items);
            rc = report(&lp);
        }
    }
    byoai_pool_free(pool);
    if (rc) {
        free(j);
        return byoai_error_set(err, rc, "loading was cancelled");
    }
    for (int i = 0; i < j->count; i++) drop_pages(j->w[i]->data, j->w[i]->row_bytes * j->w[i]->ne1);
    free(j);
    return progress ? touch_unpacked(m, &lp, err) : 0;
}
