/*
 * AVX2 kernels for packed weights (layout in infer/packed.h).
 */
#if defined(__x86_64__)
#include <immintrin.h>

#include "infer/packed.h"

void byoai_packed_init_avx2(byoai_packed_kernels *k) { (void)k; }
#endif
