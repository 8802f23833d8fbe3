/* The prompt cache (src/server/kvcache.c) and KV snapshots
 * (src/infer/kv_state.c) with stories260K: a snapshot restores a sequence
 * exactly (same logits), prefixes of snapshots restore, the memory and disk
 * tiers keep their budgets, files survive a new cache, and damaged or
 * foreign files are refused. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static byoai_context *context(uint32_t n_seq) {
    byoai_context_params p = {.n_ctx = 128, .n_seq = n_seq, .n_threads = 1};
    byoai_context *c;
    byoai_error err;
    if (byoai_context_new(M, &p, &c, &err)) fail_msg("%s", err.msg);
    return c;
}

/* evaluate toks[0..n) as sequence seq; returns the last row's logits (copied) */
static float *eval(byoai_context *c, uint32_t seq, const int32_t *toks, uint32_t n) {
    int32_t *sq = malloc(n * sizeof *sq);
    for (uint32_t i = 0; i < n; i++) sq[i] = (int32_t)seq;
    byoai_batch b = {.n_tokens = n, .tokens = toks, .seq = sq};
    byoai_error err;
    if (byoai_decode(c, &b, &err)) fail_msg("%s", err.msg);
    free(sq);
    uint32_t nv = byoai_model_hparams(M)->n_vocab;
    float *out = malloc(nv * sizeof *out);
    memcpy(out, byoai_get_output(c, 0), nv * sizeof *out);
    return out;
}

static void tokens(int32_t *t, uint32_t n, uint64_t seed) {
    for (uint32_t i = 0; i < n; i++) t[i] = (int32_t)(tu_rand_u64(&seed) % 500) + 3;
    t[0] = 1;
}

static void same_logits(const float *a, const float *b) {
    uint32_t nv = byoai_model_hparams(M)->n_vocab;
    for (uint32_t i = 0; i < nv; i++) assert_true(a[i] == b[i]);
}

/* a snapshot moved to another sequence continues exactly as the original */
static void test_snapshot_roundtrip(void **state) {
    (void)state;
    byoai_context *c = context(2);
    int32_t t[41];
    tokens(t, 41, 7);
    free(eval(c, 0, t, 40));
    uint64_t nb = byoai_kv_snapshot_bytes(c, 40);
    assert_int_equal(nb, 5ull * 2 * 40 * 32 * 4); /* layers x K,V x positions x kv_dim x float */
    uint8_t *snap = malloc(nb);
    byoai_error err;
    assert_int_equal(byoai_kv_snapshot_read(c, 0, 40, snap, nb, &err), 0);
    assert_int_not_equal(byoai_kv_snapshot_read(c, 0, 41, snap, nb, &err), 0); /* more than it holds */
    assert_int_not_equal(byoai_kv_snapshot_read(c, 0, 40, snap, nb - 1, &err), 0); /* buffer too small */
    assert_int_equal(byoai_kv_snapshot_write(c, 1, snap, 40, 40, &err), 0);
    assert_int_equal(byoai_kv_len(c, 1), 40);
    float *a = eval(c, 0, t + 40, 1), *b = eval(c, 1, t + 40, 1);
    same_logits(a, b);
    free(a);
    free(b);
    /* a prefix of the snapshot: as if only 25 tokens had been evaluated */
    assert_int_equal(byoai_kv_snapshot_write(c, 1, snap, 40, 25, &err), 0);
    assert_int_equal(byoai_kv_len(c, 1), 25);
    a = eval(c, 1, t + 25, 1);
    byoai_context *f = context(1);
    free(eval(f, 0, t, 25));
    b = eval(f, 0, t + 25, 1);
    same_logits(a, b);
    free(a);
    free(b);
    assert_int_not_equal(byoai_kv_snapshot_write(c, 1, snap, 40, 41, &err), 0);
    assert_int_not_equal(byoai_kv_snapshot_write(c, 5, snap, 40, 40, &err), 0);
    free(snap);
    byoai_context_free(f);
    byoai_context_free(c);
}

static void test_fingerprint(void **state) {
    (void)state;
    uint8_t a[32], b[32], p[32];
    byoai_model_fingerprint(M, a);
    byoai_model_fingerprint(M, b);
    assert_memory_equal(a, b, 32);
    byoai_model *part;
    byoai_model_params mp = {.layer_begin = 0, .layer_end = 3};
    byoai_error err;
    if (byoai_model_load(tu_shared("models/stories260K.gguf"), &mp, &part, &err)) fail_msg("%s", err.msg);
    byoai_model_fingerprint(part, p); /* other layers: other KV */
    assert_memory_not_equal(a, p, 32);
    byoai_model_free(part);
}

static srv_kvcache *cache(const char *dir, uint64_t ram, uint64_t disk) {
    srv_kvcache_params p = {.ram_bytes = ram, .disk_bytes = disk};
    snprintf(p.dir, sizeof p.dir, "%s", dir ? dir : "");
    uint8_t fp[32];
    byoai_model_fingerprint(M, fp);
    srv_kvcache *k;
    byoai_error err;
    if (srv_kvcache_new(&p, fp, MET, &k, &err)) fail_msg("%s", err.msg);
    return k;
}

static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (l > s && !strcmp(e->d_name + l - s, suffix)) n++;
    }
    closedir(d);
    return n;
}

/* save, match, restore through memory; the restored sequence continues exactly */
static void test_cache_memory(void **state) {
    (void)state;
    byoai_context *c = context(2);
    srv_kvcache *k = cache(NULL, 1 << 20, 0);
    int32_t t[50];
    tokens(t, 50, 11);
    free(eval(c, 0, t, 30));
    assert_int_equal(srv_kvcache_save(k, c, 0, t, 30), 0);
    byoai_kv_truncate(c, 0, 0);
    uint64_t id;
    assert_int_equal(srv_kvcache_match(k, t, 50, &id), 30);
    int32_t other[10];
    tokens(other, 10, 99);
    other[1] = t[1] + 1; /* differs after BOS */
    uint64_t id2;
    assert_int_equal(srv_kvcache_match(k, other, 10, &id2), 1);
    byoai_error err;
    assert_int_equal(srv_kvcache_restore(k, id, c, 1, 30, &err), 0);
    assert_int_equal(byoai_kv_len(c, 1), 30);
    float *a = eval(c, 1, t + 30, 1);
    byoai_context *f = context(1);
    free(eval(f, 0, t, 30));
    float *b = eval(f, 0, t + 30, 1);
    same_logits(a, b);
    free(a);
    free(b);
    /* the entry left the cache with its restore */
    srv_kvcache_stats st;
    srv_kvcache_sizes(k, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.ram_bytes, 0);
    assert_int_not_equal(srv_kvcache_restore(k, id, c, 1, 30, &err), 0);
    /* a longer snapshot of the same conversation supersedes the shorter one */
    free(eval(f, 0, t + 31, 10)); /* f holds t[0..41) (t[30] fed above) */
    int32_t fed[41];
    memcpy(fed, t, sizeof fed);
    assert_int_equal(srv_kvcache_save(k, f, 0, fed, 20), 0);
    assert_int_equal(srv_kvcache_save(k, f, 0, fed, 41), 0);
    srv_kvcache_sizes(k, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.ram_bytes, byoai_kv_snapshot_bytes(f, 41));
    /* past the memory budget without a disk cache, the oldest go */
    srv_kvcache_free(k);
    k = cache(NULL, byoai_kv_snapshot_bytes(f, 41) * 2, 0);
    for (int i = 0; i < 4; i++) {
        int32_t u[41];
        tokens(u, 41, 100 + (uint64_t)i);
        u[1] = 400 + i;
        byoai_kv_truncate(f, 0, 0);
        free(eval(f, 0, u, 41));
        assert_int_equal(srv_kvcache_save(k, f, 0, u, 41), 0);
    }
    srv_kvcache_sizes(k, &st);
    assert_int_equal(st.entries, 2);
    assert_true(st.ram_bytes <= byoai_kv_snapshot_bytes(f, 41) * 2);
    /* too big for every tier: refused, nothing kept */
    srv_kvcache_free(k);
    k = cache(NULL, 100, 0);
    assert_int_not_equal(srv_kvcache_save(k, f, 0, fed, 41), 0);
    srv_kvcache_sizes(k, &st);
    assert_int_equal(st.entries, 0);
    srv_kvcache_free(k);
    byoai_context_free(f);
    byoai_context_free(c);
}

/* the disk tier: written by the writer, found by a new cache, restored exactly;
 * damaged, truncated and foreign files are refused and removed */
static void test_cache_disk(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    byoai_context *c = context(1);
    int32_t t[60];
    tokens(t, 60, 5);
    free(eval(c, 0, t, 40));
    srv_kvcache *k = cache(dir, 0, 1 << 20);
    assert_int_equal(srv_kvcache_save(k, c, 0, t, 40), 0);
    srv_kvcache_flush(k);
    assert_int_equal(count_files(dir, ".kv"), 1);
    srv_kvcache_stats st;
    srv_kvcache_sizes(k, &st);
    assert_int_equal(st.disk_entries, 1);
    assert_int_equal(st.ram_bytes, 0);
    srv_kvcache_free(k);
    /* a new cache (a restarted server) finds it */
    k = cache(dir, 0, 1 << 20);
    uint64_t id;
    assert_int_equal(srv_kvcache_match(k, t, 60, &id), 40);
    byoai_kv_truncate(c, 0, 0);
    byoai_error err;
    assert_int_equal(srv_kvcache_restore(k, id, c, 0, 35, &err), 0);
    float *a = eval(c, 0, t + 35, 1);
    byoai_context *f = context(1);
    free(eval(f, 0, t, 35));
    float *b = eval(f, 0, t + 35, 1);
    same_logits(a, b);
    free(a);
    free(b);
    assert_int_equal(count_files(dir, ".kv"), 1); /* only a start restored: the conversation stays cached */
    assert_int_equal(srv_kvcache_match(k, t, 60, &id), 40);
    assert_int_equal(srv_kvcache_restore(k, id, c, 0, 40, &err), 0);
    assert_int_equal(count_files(dir, ".kv"), 0); /* restored whole: the file is gone */
    assert_int_equal(srv_kvcache_match(k, t, 60, &id), 0);

    /* damaged files: a flipped byte (checksum), a cut file, another model's fingerprint */
    for (int kind = 0; kind < 3; kind++) {
        byoai_kv_truncate(f, 0, 0);
        free(eval(f, 0, t, 40));
        assert_int_equal(srv_kvcache_save(k, f, 0, t, 40), 0);
        srv_kvcache_flush(k);
        DIR *d = opendir(dir);
        struct dirent *e;
        char path[1200] = "";
        while ((e = readdir(d)))
            if (strstr(e->d_name, ".kv")) snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        closedir(d);
        assert_true(path[0]);
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        FILE *fp = fopen(path, "r+b");
        if (kind == 0) {
            fseek(fp, sb.st_size / 2, SEEK_SET);
            int ch = fgetc(fp);
            fseek(fp, sb.st_size / 2, SEEK_SET);
            fputc(ch ^ 0x40, fp);
            fclose(fp);
        } else if (kind == 1) {
            fclose(fp);
            assert_int_equal(truncate(path, sb.st_size - 7), 0);
        } else {
            fseek(fp, 16, SEEK_SET); /* the fingerprint */
            fputc(0xee, fp);
            fclose(fp);
        }
        if (kind == 0) { /* found at start, refused at restore */
            assert_int_equal(srv_kvcache_match(k, t, 60, &id), 40);
            byoai_kv_truncate(c, 0, 0);
            assert_int_equal(srv_kvcache_restore(k, id, c, 0, 40, &err), BYOAI_ECHECKSUM);
        } else { /* refused when a new cache indexes the directory */
            srv_kvcache_free(k);
            k = cache(dir, 0, 1 << 20);
            assert_int_equal(srv_kvcache_match(k, t, 60, &id), 0);
        }
        assert_int_equal(count_files(dir, ".kv"), 0);
    }
    /* an interrupted write's temporary file is cleaned up at start */
    char tmp[1200];
    uint8_t fpr[32];
    byoai_model_fingerprint(M, fpr);
    char hex[17];
    for (int i = 0; i < 8; i++) sprintf(hex + 2 * i, "%02x", fpr[i]);
    snprintf(tmp, sizeof tmp, "%s/%s-0000000000000000.kv.tmp.123", dir, hex);
    FILE *tf = fopen(tmp, "w");
    fputs("partial", tf);
    fclose(tf);
    srv_kvcache_free(k);
    k = cache(dir, 0, 1 << 20);
    assert_int_equal(count_files(dir, ".123"), 0);

    /* the disk budget: at most what fits, oldest out */
    srv_kvcache_free(k);
    uint64_t one = byoai_kv_snapshot_bytes(f, 40) + 40 * 4 + 56 + 32;
    k = cache(dir, 0, one * 2 + 10);
    for (int i = 0; i < 4; i++) {
        int32_t u[40];
        tokens(u, 40, 200 + (uint64_t)i);
        u[1] = 300 + i;
        byoai_kv_truncate(f, 0, 0);
        free(eval(f, 0, u, 40));
        assert_int_equal(srv_kvcache_save(k, f, 0, u, 40), 0);
        srv_kvcache_flush(k);
    }
    assert_int_equal(count_files(dir, ".kv"), 2);
    srv_kvcache_sizes(k, &st);
    assert_int_equal(st.disk_bytes, one * 2);
    srv_kvcache_free(k);
    byoai_context_free(f);
    byoai_context_free(c);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_roundtrip),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_cache_memory),
        cmocka_unit_test(test_cache_disk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
