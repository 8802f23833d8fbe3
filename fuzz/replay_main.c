/*
 * A main for the fuzz targets without libFuzzer: feeds every file of the
 * given directories (and the given files) to LLVMFuzzerTestOneInput, in name
 * order, each in a buffer of exactly its size (as libFuzzer does, so that
 * ASan sees any read past the end).
 *
 * The test build links each fuzz/fuzz_*.c with this file as replay_fuzz_*
 * and CTest runs it over fuzz/corpus/<target>/ (the seeds and every finding)
 * under ASan and UBSan, with gcc: a finding stays fixed without clang.
 *
 *   replay_fuzz_gguf fuzz/corpus/fuzz_gguf [more dirs or files]
 *
 * Exits non-zero when a directory holds no input (an empty corpus would
 * test nothing); a crash or sanitizer report aborts with the input's name
 * printed just before.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return -1;
    }
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_dir(const char *dir, size_t *count) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open directory %s\n", dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (!rc && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path)) rc = -1;
            else (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s does not exist\n", argv[i]);
            return 1;
        }
        size_t count = 0;
        if (S_ISDIR(st.st_mode)) {
            if (run_dir(argv[i], &count)) return 1;
            if (count == 0) {
                fprintf(stderr, "replay: %s holds no input\n", argv[i]);
                return 1;
            }
        } else {
            if (run_file(argv[i])) return 1;
            count = 1;
        }
        fprintf(stderr, "replay: %zu inputs from %s, all fine\n", count, argv[i]);
    }
    return 0;
}
