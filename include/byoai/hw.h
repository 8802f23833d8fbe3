/*
 * byoai/hw.h: what this machine has: CPU, cores, SIMD, memory, and its
 * measured memory read bandwidth, which bounds token generation speed
 * (every weight is read once per generated token).
 */
#ifndef BYOAI_HW_H
#define BYOAI_HW_H

#include "byoai/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct byoai_hw_info {
    char cpu_model[128];
    int cores;               /* online logical CPUs */
    char features[256];      /* SIMD features this build can use, space-separated */
    uint64_t ram_total;      /* bytes */
    uint64_t ram_available;  /* bytes (MemAvailable) */
} byoai_hw_info;

void byoai_hw_get(byoai_hw_info *out);

/* Measure read bandwidth in bytes per second: n_threads threads stream a
 * buffer of `bytes` (far larger than the caches) `reps` times; returns the
 * median of the repetitions. 0 on allocation failure. */
double byoai_hw_read_bandwidth(int n_threads, uint64_t bytes, int reps);

#ifdef __cplusplus
}
#endif
#endif
