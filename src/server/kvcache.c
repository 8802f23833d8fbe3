/*
 * The prompt cache behind a model's sequence slots: KV snapshots of
 * conversations that had to leave their slot, kept in memory up to a budget
 * and on disk ($BYOAI_HOME/cache/, bounded, checksummed) beyond it, so that
 * coming back to an old chat restores its KV instead of evaluating the whole
 * history again.
 *
 * The scheduler thread saves a slot's snapshot before another conversation
 * takes the slot, and asks for the saved conversation that shares the
 * longest start with a new prompt. Entries past the memory budget are
 * written to disk by a writer thread (so a decode step never waits for the
 * disk), then their memory is released; past the disk budget the oldest
 * files go. An entry restored whole is consumed by its restore (the
 * conversation lives in its slot again, and leaves a newer snapshot when it
 * is evicted once more); one whose start only was restored stays.
 *
 * A file is "BYOAIKV1" | u32 version | u32 n_tokens | fingerprint[32] |
 * u64 kv_bytes | tokens (i32 x n) | KV snapshot | BLAKE2b-256 of all that;
 * written to a temporary name, fsynced and renamed. Its name starts with
 * the model's fingerprint, so each model finds its own after a restart; a
 * file whose size, header or checksum is wrong is deleted, never loaded.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/server_internal.h"

#define KV_MAGIC "BYOAIKV1"
#define KV_VERSION 1u
#define KV_HEADER (8 + 4 + 4 + 32 + 8)
#define KV_MAX_TOKENS (1u << 20)

typedef struct kv_entry {
    uint64_t id;
    int32_t *tokens;
    uint32_t n;
    uint8_t *data;      /* the snapshot in memory, or NULL when only on disk */
    uint64_t bytes;     /* snapshot bytes */
    bool on_disk;       /* a complete file exists */
    bool spill;         /* queued for the writer */
    bool writing;       /* the writer holds data now: do not free it */
    double last_used;
    char file[80];      /* name in the directory */
    struct kv_entry *next;
} kv_entry;

struct srv_kvcache {
    srv_kvcache_params p;
    uint8_t fp[32];
    char fp_hex[17];
    srv_metrics *met;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kv_entry *head;
    uint64_t ram_used, disk_used, next_id;
    pthread_t writer;
    bool writer_started, stopping;
};

/* ---- files ------------------------------------------------------------------------- */
static void entry_path(const srv_kvcache *c, const kv_entry *e, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", c->p.dir, e->file);
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write e's snapshot (tokens, data) to its file atomically. */
static int write_entry(const srv_kvcache *c, const kv_entry *e, const int32_t *tokens, const uint8_t *data) {
    char path[1200], tmp[1240];
    entry_path(c, e, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    uint8_t head[KV_HEADER];
    uint32_t ver = KV_VERSION, n = e->n;
    memcpy(head, KV_MAGIC, 8);
    memcpy(head + 8, &ver, 4);
    memcpy(head + 12, &n, 4);
    memcpy(head + 16, c->fp, 32);
    memcpy(head + 48, &e->bytes, 8);
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, head, sizeof head);
    crypto_generichash_update(&h, (const uint8_t *)tokens, (size_t)e->n * sizeof *tokens);
    crypto_generichash_update(&h, data, (size_t)e->bytes);
    uint8_t sum[32];
    crypto_generichash_final(&h, sum, sizeof sum);
    int rc = write_all(fd, head, sizeof head) || write_all(fd, tokens, (size_t)e->n * sizeof *tokens) ||
             write_all(fd, data, (size_t)e->bytes) || write_all(fd, sum, sizeof sum) || fsync(fd);
    if (close(fd)) rc = -1;
    if (rc || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    byoai_fs_sync_parent(path);
    return 0;
}

static int read_exact(int fd, void *p, size_t n) {
    uint8_t *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Read a file's header and tokens (data too when want_data), checking sizes
 * against the file and, with the data, the checksum. */
static int read_file(const srv_kvcache *c, const char *path, int32_t **tokens, uint32_t *n_out, uint64_t *bytes,
                     uint8_t **data, bool want_data) {
    *tokens = NULL;
    if (data) *data = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    uint8_t head[KV_HEADER];
    int rc = -1;
    int32_t *t = NULL;
    uint8_t *d = NULL;
    if (fstat(fd, &st) || read_exact(fd, head, sizeof head)) goto out;
    uint32_t ver, n;
    uint64_t nb;
    memcpy(&ver, head + 8, 4);
    memcpy(&n, head + 12, 4);
    memcpy(&nb, head + 48, 8);
    if (memcmp(head, KV_MAGIC, 8) || ver != KV_VERSION || memcmp(head + 16, c->fp, 32) || n == 0 ||
        n > KV_MAX_TOKENS || nb > (uint64_t)st.st_size ||
        (uint64_t)st.st_size != KV_HEADER + (uint64_t)n * 4 + nb + 32)
        goto out;
    t = malloc((size_t)n * sizeof *t);
    if (!t || read_exact(fd, t, (size_t)n * sizeof *t)) goto out;
    if (want_data) {
        d = malloc(nb ? (size_t)nb : 1);
        uint8_t sum[32], want[32];
        if (!d || read_exact(fd, d, (size_t)nb) || read_exact(fd, sum, sizeof sum)) goto out;
        crypto_generichash_state h;
        crypto_generichash_init(&h, NULL, 0, 32);
        crypto_generichash_update(&h, head, sizeof head);
        crypto_generichash_update(&h, (const uint8_t *)t, (size_t)n * sizeof *t);
        crypto_generichash_update(&h, d, (size_t)nb);
        crypto_generichash_final(&h, want, sizeof want);
        if (sodium_memcmp(sum, want, sizeof sum)) goto out;
    }
    *tokens = t;
    *n_out = n;
    *bytes = nb;
    if (data) *data = d;
    t = NULL;
    d = NULL;
    rc = 0;
out:
    free(t);
    free(d);
    close(fd);
    return rc;
}

/* ---- the entry list (under mu) ----------------------------------------------------- */
static uint64_t file_bytes(const kv_entry *e) { return e->bytes + (uint64_t)e->n * 4 + KV_HEADER + 32; }

static void entry_free(kv_entry *e) {
    free(e->tokens);
    free(e->data);
    free(e);
}

/* Unlink e from the list, remove its file, free it (not while writing). */
static void drop_locked(srv_kvcache *c, kv_entry *e) {
    for (kv_entry **pp = &c->head; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    if (e->data) c->ram_used -= e->bytes;
    if (e->on_disk) {
        char path[1200];
        entry_path(c, e, path, sizeof path);
        unlink(path);
        c->disk_used -= file_bytes(e);
    }
    entry_free(e);
}

/* Keep memory and disk within their budgets: memory beyond the budget goes
 * to the writer (or away without a disk cache), disk beyond it goes. */
static void enforce_locked(srv_kvcache *c) {
    for (;;) {
        uint64_t pending = 0; /* memory already queued for the writer */
        for (kv_entry *e = c->head; e; e = e->next)
            if (e->data && e->spill) pending += e->bytes;
        if (c->ram_used - pending <= c->p.ram_bytes) break;
        kv_entry *old = NULL;
        for (kv_entry *e = c->head; e; e = e->next)
            if (e->data && !e->spill && (!old || e->last_used < old->last_used)) old = e;
        if (!old) break;
        if (c->p.disk_bytes && c->writer_started && file_bytes(old) <= c->p.disk_bytes && !old->on_disk) {
            old->spill = true;
            pthread_cond_broadcast(&c->cv);
        } else if (old->on_disk) {
            free(old->data);
            old->data = NULL;
            c->ram_used -= old->bytes;
        } else {
            drop_locked(c, old);
        }
    }
    while (c->disk_used > c->p.disk_bytes) {
        kv_entry *old = NULL;
        for (kv_entry *e = c->head; e; e = e->next)
            if (e->on_disk && !e->writing && (!old || e->last_used < old->last_used)) old = e;
        if (!old) break;
        if (old->data) { /* still in memory: keep it there, forget the file */
            char path[1200];
            entry_path(c, old, path, sizeof path);
            unlink(path);
            old->on_disk = false;
            c->disk_used -= file_bytes(old);
        } else {
            drop_locked(c, old);
        }
    }
}

static void *writer_main(void *arg) {
    srv_kvcache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        kv_entry *e = NULL;
        for (kv_entry *x = c->head; x; x = x->next)
            if (x->spill && x->data && !x->on_disk && (!e || x->last_used < e->last_used)) e = x;
        if (!e) {
            if (c->stopping) break;
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        e->writing = true;
        pthread_mutex_unlock(&c->mu);
        int rc = write_entry(c, e, e->tokens, e->data);
        pthread_mutex_lock(&c->mu);
        e->writing = false;
        e->spill = false;
        if (rc) {
            byoai_log(BYOAI_LOG_WARN, "prompt cache: cannot write %s/%s (%s); the conversation is dropped from the "
                      "cache", c->p.dir, e->file, strerror(errno));
            drop_locked(c, e);
        } else {
            e->on_disk = true;
            c->disk_used += file_bytes(e);
            free(e->data);
            e->data = NULL;
            c->ram_used -= e->bytes;
            srv_metrics_kvcache(c->met, SRV_KV_SPILLED, 1);
        }
        enforce_locked(c);
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Index this model's files from an earlier run (newest first), deleting
 * broken ones and leftovers of interrupted writes. */
static void scan_dir(srv_kvcache *c) {
    DIR *d = opendir(c->p.dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        if (strncmp(nm, c->fp_hex, 16) || l >= sizeof(((kv_entry *)0)->file)) continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", c->p.dir, nm);
        if (strstr(nm, ".tmp.")) { /* an interrupted write */
            unlink(path);
            continue;
        }
        if (l < 4 || strcmp(nm + l - 3, ".kv")) continue;
        kv_entry *e = calloc(1, sizeof *e);
        struct stat st;
        if (!e || stat(path, &st) || read_file(c, path, &e->tokens, &e->n, &e->bytes, NULL, false)) {
            byoai_log(BYOAI_LOG_WARN, "prompt cache: %s is damaged or not this model's format; removed", path);
            unlink(path);
            if (e) entry_free(e);
            continue;
        }
        snprintf(e->file, sizeof e->file, "%s", nm);
        e->id = ++c->next_id;
        e->on_disk = true;
        e->last_used = byoai_time_now() - ((double)byoai_time_unix() - (double)st.st_mtime);
        c->disk_used += file_bytes(e);
        e->next = c->head;
        c->head = e;
    }
    closedir(d);
}

int srv_kvcache_new(const srv_kvcache_params *p, const uint8_t fp[32], srv_metrics *met, srv_kvcache **out,
                    byoai_error *err) {
    *out = NULL;
    srv_kvcache *c = calloc(1, sizeof *c);
    if (!c) return byoai_error_set(err, BYOAI_ENOMEM, "out of memory");
    c->p = *p;
    memcpy(c->fp, fp, 32);
    sodium_bin2hex(c->fp_hex, sizeof c->fp_hex, fp, 8);
    c->met = met;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (c->p.disk_bytes && c->p.dir[0]) {
        byoai_error e2 = {0};
        if (byoai_fs_mkdirs(c->p.dir, 0700, &e2)) {
            byoai_log(BYOAI_LOG_WARN, "prompt cache: %s; conversations are cached in memory only", e2.msg);
            c->p.disk_bytes = 0;
        } else {
            scan_dir(c);
            pthread_mutex_lock(&c->mu);
            enforce_locked(c);
            pthread_mutex_unlock(&c->mu);
            c->writer_started = pthread_create(&c->writer, NULL, writer_main, c) == 0;
        }
    } else {
        c->p.disk_bytes = 0;
    }
    *out = c;
    return 0;
}

void srv_kvcache_free(srv_kvcache *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    /* what is queued but not started stays unwritten: shutdown must be quick */
    for (kv_entry *e = c->head; e; e = e->next)
        if (!e->writing) e->spill = false;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->writer_started) pthread_join(c->writer, NULL);
    for (kv_entry *e = c->head; e;) {
        kv_entry *n = e->next;
        entry_free(e);
        e = n;
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static uint32_t common_prefix(const int32_t *a, uint32_t na, const int32_t *b, uint32_t nb) {
    uint32_t n = 0, max = na < nb ? na : nb;
    while (n < max && a[n] == b[n]) n++;
    return n;
}

int srv_kvcache_save(srv_kvcache *c, const byoai_context *ctx, uint32_t seq, const int32_t *tokens, uint32_t n) {
    if (n == 0 || n > KV_MAX_TOKENS || n > byoai_kv_len(ctx, seq)) return BYOAI_EINVAL;
    uint64_t bytes = byoai_kv_snapshot_bytes(ctx, n);
    if (bytes > c->p.ram_bytes && (!c->p.disk_bytes || bytes + (uint64_t)n * 4 + KV_HEADER + 32 > c->p.disk_bytes))
        return BYOAI_ENOMEM; /* fits no tier */
    kv_entry *e = calloc(1, sizeof *e);
    if (!e) return BYOAI_ENOMEM;
    e->tokens = malloc((size_t)n * sizeof *e->tokens);
    e->data = malloc((size_t)bytes ? (size_t)bytes : 1);
    if (!e->tokens || !e->data || byoai_kv_snapshot_read(ctx, seq, n, e->data, bytes, NULL)) {
        entry_free(e);
        return BYOAI_ENOMEM;
    }
    memcpy(e->tokens, tokens, (size_t)n * sizeof *tokens);
    e->n = n;
    e->bytes = bytes;
    e->last_used = byoai_time_now();
    unsigned char rnd[8];
    randombytes_buf(rnd, sizeof rnd);
    char rhex[17];
    sodium_bin2hex(rhex, sizeof rhex, rnd, sizeof rnd);
    snprintf(e->file, sizeof e->file, "%s-%s.kv", c->fp_hex, rhex);
    pthread_mutex_lock(&c->mu);
    /* a snapshot that the new one extends is superseded */
    for (kv_entry *x = c->head; x;) {
        kv_entry *nx = x->next;
        if (!x->writing && x->n <= n && common_prefix(x->tokens, x->n, tokens, n) == x->n) drop_locked(c, x);
        x = nx;
    }
    e->id = ++c->next_id;
    e->next = c->head;
    c->head = e;
    c->ram_used += bytes;
    enforce_locked(c);
    pthread_mutex_unlock(&c->mu);
    srv_metrics_kvcache(c->met, SRV_KV_SAVED, 1);
    return 0;
}

uint32_t srv_kvcache_match(srv_kvcache *c, const int32_t *prompt, uint32_t n, uint64_t *id) {
    uint32_t best = 0;
    *id = 0;
    pthread_mutex_lock(&c->mu);
    for (kv_entry *e = c->head; e; e = e->next) {
        uint32_t k = common_prefix(e->tokens, e->n, prompt, n);
        if (k > best) best = k, *id = e->id;
    }
    pthread_mutex_unlock(&c->mu);
    return best;
}

int srv_kvcache_restore(srv_kvcache *c, uint64_t id, byoai_context *ctx, uint32_t seq, uint32_t keep,
                        byoai_error *err) {
    pthread_mutex_lock(&c->mu);
    kv_entry *e = c->head;
    while (e && e->id != id) e = e->next;
    if (!e || keep > e->n) {
        pthread_mutex_unlock(&c->mu);
        return byoai_error_set(err, BYOAI_ENOTFOUND, "the cached conversation is gone");
    }
    int rc;
    if (e->data) { /* in memory (perhaps being written: the writer only reads it) */
        rc = byoai_kv_snapshot_write(ctx, seq, e->data, e->n, keep, err);
        if (!rc) srv_metrics_kvcache(c->met, SRV_KV_RESTORED_RAM, 1);
        while (e->writing) pthread_cond_wait(&c->cv, &c->mu);
    } else {
        char path[1200];
        entry_path(c, e, path, sizeof path);
        e->writing = true; /* keep the budget enforcer away from the file while it is read */
        pthread_mutex_unlock(&c->mu);
        int32_t *t = NULL;
        uint8_t *d = NULL;
        uint32_t n = 0;
        uint64_t nb = 0;
        rc = read_file(c, path, &t, &n, &nb, &d, true);
        if (rc || n != e->n || memcmp(t, e->tokens, (size_t)n * sizeof *t) || nb != e->bytes) {
            byoai_log(BYOAI_LOG_WARN, "prompt cache: %s is damaged (size, header or checksum); removed, the "
                      "conversation is evaluated again", path);
            srv_metrics_kvcache(c->met, SRV_KV_DAMAGED, 1);
            rc = byoai_error_set(err, BYOAI_ECHECKSUM, "cached conversation damaged");
        } else {
            rc = byoai_kv_snapshot_write(ctx, seq, d, n, keep, err);
            if (!rc) srv_metrics_kvcache(c->met, SRV_KV_RESTORED_DISK, 1);
        }
        free(t);
        free(d);
        pthread_mutex_lock(&c->mu);
        e->writing = false;
    }
    /* the whole conversation is back in a slot: the entry is done; a start
     * of it (a shared system prompt, an edited turn) leaves it cached */
    if (rc || keep == e->n) drop_locked(c, e);
    else e->last_used = byoai_time_now();
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void srv_kvcache_sizes(srv_kvcache *c, srv_kvcache_stats *out) {
    memset(out, 0, sizeof *out);
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    for (kv_entry *e = c->head; e; e = e->next) {
        out->entries++;
        if (e->on_disk) out->disk_entries++;
    }
    out->ram_bytes = c->ram_used;
    out->disk_bytes = c->disk_used;
    pthread_mutex_unlock(&c->mu);
}

void srv_kvcache_flush(srv_kvcache *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        bool busy = false;
        for (kv_entry *e = c->head; e; e = e->next) busy |= e->spill || e->writing;
        if (!busy || !c->writer_started) break;
        pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
}

void srv_kvcache_persist(srv_kvcache *c, double deadline) {
    if (!c || !c->writer_started) return;
    pthread_mutex_lock(&c->mu);
    for (kv_entry *e = c->head; e; e = e->next)
        if (e->data && !e->on_disk && file_bytes(e) <= c->p.disk_bytes) e->spill = true;
    pthread_cond_broadcast(&c->cv);
    for (;;) {
        bool busy = false;
        for (kv_entry *e = c->head; e; e = e->next) busy |= e->spill || e->writing;
        double left = deadline - byoai_time_now();
        if (!busy || left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + (left < 0.05 ? left : 0.05);
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
}
