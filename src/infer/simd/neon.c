/*
 * ARMv8 NEON kernels (with the dotprod extension when the compiler targets
 * it). Built only for aarch64; x86 builds compile this file to nothing.
 */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "infer/quant.h"

static void dot_f32(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static void dot_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx, *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int8x16_t x0 = vld1q_s8(x[b].qs), x1 = vld1q_s8(x[b].qs + 16);
        int8x16_t y0 = vld1q_s8(y[b].qs), y1 = vld1q_s8(y[b].qs + 16);
        int16x8_t p = vmull_s8(vget_low_s8(x0), vget_low_s8(y0));
        p = vmlal_s8(p, vget_high_s8(x0), vget_high_s8(y0));
        int16x8_t q = vmull_s8(vget_low_s8(x1), vget_low_s8(y1));
        q = vmlal_s8(q, vget_high_s8(x1), vget_high_s8(y1));
        int32_t isum = vaddlvq_s16(p) + vaddlvq_s16(q);
        sum += (float)isum * byoai_fp16_to_fp32(x[b].d) * byoai_fp16_to_fp32(y[b].d);
    }
    *s = sum;
}

void byoai_kernels_init_neon(byoai_kernels *k) {
    k->level = BYOAI_SIMD_NEON;
    k->name = "neon";
    k->vec_dot[BYOAI_TYPE_F32] = dot_f32;
    k->vec_dot[BYOAI_TYPE_Q8_0] = dot_q8_0;
}
#endif
