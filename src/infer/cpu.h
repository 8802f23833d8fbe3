/* CPU feature detection (cpuid + what the OS enabled through xgetbv). */
#ifndef BYOAI_INFER_CPU_H
#define BYOAI_INFER_CPU_H

#include <stdbool.h>

typedef struct byoai_cpu {
    bool avx, avx2, fma, f16c, bmi2;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx_vnni;
    bool amx_tile, amx_int8, amx_bf16;
    bool neon, dotprod;
} byoai_cpu;

/* Detect once per call (cheap); features the OS did not enable are false. */
void byoai_cpu_detect(byoai_cpu *out);

#endif
