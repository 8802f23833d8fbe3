/*
 * CPU features from cpuid, masked by the register state the OS saves
 * (xgetbv): a CPU with AVX-512 under an OS or hypervisor that does not
 * enable ZMM state must not run AVX-512 code.
 */
#include "infer/cpu.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

void byoai_cpu_detect(byoai_cpu *c) {
    memset(c, 0, sizeof *c);
    unsigned a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return;
    bool osxsave = cx & (1u << 27);
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xE6) == 0xE6, tiles = (xcr0 & 0x60000) == 0x60000;
    c->avx = ymm && (cx & (1u << 28));
    c->fma = c->avx && (cx & (1u << 12));
    c->f16c = c->avx && (cx & (1u << 29));
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, cx, d);
        c->avx2 = c->avx && (b & (1u << 5));
        c->bmi2 = b & (1u << 8);
        c->avx512f = zmm && (b & (1u << 16));
        c->avx512dq = c->avx512f && (b & (1u << 17));
        c->avx512bw = c->avx512f && (b & (1u << 30));
        c->avx512vl = c->avx512f && (b & (1u << 31));
        c->avx512vnni = c->avx512f && (cx & (1u << 11));
        c->amx_bf16 = tiles && (d & (1u << 22));
        c->amx_tile = tiles && (d & (1u << 24));
        c->amx_int8 = tiles && (d & (1u << 25));
        __cpuid_count(7, 1, a, b, cx, d);
        c->avx_vnni = c->avx2 && (a & (1u << 4));
    }
}
#elif defined(__aarch64__)
#include <sys/auxv.h>
void byoai_cpu_detect(byoai_cpu *c) {
    memset(c, 0, sizeof *c);
    c->neon = true;
#ifdef HWCAP_ASIMDDP
    c->dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
}
#else
void byoai_cpu_detect(byoai_cpu *c) { memset(c, 0, sizeof *c); }
#endif
