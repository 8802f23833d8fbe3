/*
 * Packed weights (layout in packed.h): packing at load time, the scalar
 * reference kernels every SIMD kernel is tested against, the activation
 * quantizer, and the choice of kernels for this CPU.
 */
#include "infer/packed.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "infer/cpu.h"

/* ---- layout ---------------------------------------------------------------- */

bool byoai_pack_type_ok(byoai_type t) {
    return t == BYOAI_TYPE_Q8_0 || t == BYOAI_TYPE_Q4_0 || t == BYOAI_TYPE_Q4_K || t == BYOAI_TYPE_Q6_K;
}

bool byoai_pack_shape(byoai_type t, uint64_t k, uint64_t rows, byoai_packed *p) {
    memset(p, 0, sizeof *p);
    if (!byoai_pack_type_ok(t) || k == 0 || rows == 0) return false;
    uint64_t chunk = 0, meta = 0, group = 32; /* level bytes per 32 columns; meta bytes per group */
    switch (t) {
    case BYOAI_TYPE_Q8_0: chunk = 512, meta = 32; break;
    case BYOAI_TYPE_Q4_0: chunk = 256, meta = 32; break;
    case BYOAI_TYPE_Q4_K: chunk = 256, meta = 256, group = 256; break;
    case BYOAI_TYPE_Q6_K: chunk = 384, meta = 288, group = 256; break;
    default: return false;
    }
    if (k % group) return false;
    p->type = t;
    p->k = k;
    p->rows = rows;
    p->n_tiles = (rows + BYOAI_TILE_ROWS - 1) / BYOAI_TILE_ROWS;
    p->levels_bytes = k / 32 * chunk;
    p->tile_bytes = p->levels_bytes + k / group * meta;
    return true;
}

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

void byoai_pack_tile(const byoai_packed *p, const void *src, uint64_t row_bytes, uint64_t tile) {
    uint8_t *dst = p->data + tile * p->tile_bytes;
    uint8_t *meta = dst + p->levels_bytes;
    const uint64_t r0 = tile * BYOAI_TILE_ROWS;
    const int nr = (int)(p->rows - r0 < BYOAI_TILE_ROWS ? p->rows - r0 : BYOAI_TILE_ROWS);
    /* a full tile has every byte written below; only a last, partial one
     * needs its missing rows zeroed */
    if (nr < BYOAI_TILE_ROWS) memset(dst, 0, p->tile_bytes);
    const uint64_t nc = p->k / 32;
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = (const uint8_t *)src + (r0 + (uint64_t)r) * row_bytes;
        switch (p->type) {
        case BYOAI_TYPE_Q8_0: {
            const block_q8_0 *b = (const block_q8_0 *)row;
            for (uint64_t c = 0; c < nc; c++) {
                for (int j = 0; j < 8; j++) memcpy(dst + c * 512 + 64 * j + 4 * r, b[c].qs + 4 * j, 4);
                memcpy(meta + c * 32 + 2 * r, &b[c].d, 2);
            }
            break;
        }
        case BYOAI_TYPE_Q4_0: {
            const block_q4_0 *b = (const block_q4_0 *)row;
            for (uint64_t c = 0; c < nc; c++) {
                for (int j = 0; j < 4; j++) memcpy(dst + c * 256 + 64 * j + 4 * r, b[c].qs + 4 * j, 4);
                memcpy(meta + c * 32 + 2 * r, &b[c].d, 2);
            }
            break;
        }
        case BYOAI_TYPE_Q4_K: {
            const block_q4_K *b = (const block_q4_K *)row;
            for (uint64_t s = 0; s < p->k / QK_K; s++) {
                /* qs[32p + l]: column l of chunk 2p (low) and of chunk 2p+1 (high) */
                for (int pr = 0; pr < 4; pr++)
                    for (int j = 0; j < 4; j++) {
                        const uint32_t w0 = rd32(b[s].qs + 32 * pr + 4 * j), w1 = rd32(b[s].qs + 32 * pr + 16 + 4 * j);
                        uint8_t *c0 = dst + (8 * s + 2 * pr) * 256 + 64 * j + 4 * r;
                        wr32(c0, (w0 & 0x0F0F0F0Fu) | ((w1 & 0x0F0F0F0Fu) << 4));
                        wr32(c0 + 256, ((w0 >> 4) & 0x0F0F0F0Fu) | (w1 & 0xF0F0F0F0u));
                    }
                uint8_t *m = meta + s * 256;
                memcpy(m + 2 * r, &b[s].d, 2);
                memcpy(m + 32 + 2 * r, &b[s].dmin, 2);
                for (int i = 0; i < 12; i++) m[64 + 16 * i + r] = b[s].scales[i];
            }
            break;
        }
        case BYOAI_TYPE_Q6_K: {
            /* column l of chunk c = 4h + k of a super-block: low nibble in
             * ql[64h + 32(k % 2) + l] (low half of the byte for k < 2), high
             * two bits in bits 2k..2k+1 of qh[32h + l]; four columns per
             * 32-bit word */
            const block_q6_K *b = (const block_q6_K *)row;
            for (uint64_t s = 0; s < p->k / QK_K; s++) {
                for (int c = 0; c < 8; c++) {
                    const int h = c / 4, k = c % 4;
                    const uint8_t *ql = b[s].ql + 64 * h + 32 * (k % 2), *qh = b[s].qh + 32 * h;
                    uint8_t *lv = dst + (8 * s + (uint64_t)c) * 384 + 4 * r;
                    for (int j = 0; j < 4; j++) {
                        const uint32_t w0 = rd32(ql + 4 * j), w1 = rd32(ql + 16 + 4 * j);
                        wr32(lv + 64 * j, k < 2 ? (w0 & 0x0F0F0F0Fu) | ((w1 & 0x0F0F0F0Fu) << 4)
                                                : ((w0 >> 4) & 0x0F0F0F0Fu) | (w1 & 0xF0F0F0F0u));
                    }
                    for (int hv = 0; hv < 2; hv++) {
                        uint32_t v = 0;
                        for (int t = 0; t < 4; t++) v |= ((rd32(qh + 16 * hv + 4 * t) >> (2 * k)) & 0x03030303u) << (2 * t);
                        wr32(lv + 256 + 64 * hv, v);
                    }
                }
                uint8_t *m = meta + s * 288;
                memcpy(m + 2 * r, &b[s].d, 2);
                for (int i = 0; i < 16; i++) m[32 + 16 * i + r] = (uint8_t)b[s].scales[i];
            }
            break;
        }
        default: break;
        }
    }
}

/* One row's chunk c (32 columns) of a packed tile: signed levels L and, per
 * 16 columns, scale s and offset o: w = s * L + o. */
typedef struct {
    int L[32];
    float s[2], o[2];
} chunk_vals;

static float meta_half(const uint8_t *m) {
    uint16_t h;
    memcpy(&h, m, 2);
    return byoai_fp16_to_fp32(h);
}

/* nibble-format chunk: low nibbles are columns 0..15, high nibbles 16..31 */
static int nib_level(const uint8_t *lv, int r, int i) {
    return i < 16 ? lv[64 * (i / 4) + 4 * r + i % 4] & 0x0F : lv[64 * ((i - 16) / 4) + 4 * r + i % 4] >> 4;
}

static void packed_chunk(const byoai_packed *p, const uint8_t *tile, uint64_t c, int r, chunk_vals *v) {
    const uint8_t *meta = tile + p->levels_bytes;
    switch (p->type) {
    case BYOAI_TYPE_Q8_0: {
        const uint8_t *lv = tile + c * 512;
        for (int i = 0; i < 32; i++) v->L[i] = (int8_t)lv[64 * (i / 4) + 4 * r + i % 4];
        v->s[0] = v->s[1] = meta_half(meta + c * 32 + 2 * r);
        v->o[0] = v->o[1] = 0;
        break;
    }
    case BYOAI_TYPE_Q4_0: {
        const uint8_t *lv = tile + c * 256;
        for (int i = 0; i < 32; i++) v->L[i] = nib_level(lv, r, i) - 8;
        v->s[0] = v->s[1] = meta_half(meta + c * 32 + 2 * r);
        v->o[0] = v->o[1] = 0;
        break;
    }
    case BYOAI_TYPE_Q4_K: {
        const uint8_t *lv = tile + c * 256, *m = meta + c / 8 * 256;
        for (int i = 0; i < 32; i++) v->L[i] = nib_level(lv, r, i);
        uint8_t q[12], sc, mn;
        for (int i = 0; i < 12; i++) q[i] = m[64 + 16 * i + r];
        byoai_k4_scale_min((int)(c % 8), q, &sc, &mn);
        v->s[0] = v->s[1] = meta_half(m + 2 * r) * sc;
        v->o[0] = v->o[1] = -meta_half(m + 32 + 2 * r) * mn;
        break;
    }
    case BYOAI_TYPE_Q6_K: {
        const uint8_t *lv = tile + c * 384, *m = meta + c / 8 * 288;
        for (int i = 0; i < 32; i++) {
            const int j = i / 4;
            const int hi = (lv[256 + 64 * (j / 4) + 4 * r + i % 4] >> (2 * (j % 4))) & 3;
            v->L[i] = (nib_level(lv, r, i) | hi << 4) - 32;
        }
        const float d = meta_half(m + 2 * r);
        for (int h = 0; h < 2; h++) {
            v->s[h] = d * (int8_t)m[32 + 16 * ((c % 8) * 2 + (uint64_t)h) + r];
            v->o[h] = 0;
        }
        break;
    }
    default: memset(v, 0, sizeof *v); break;
    }
}

void byoai_packed_dequantize_row(const byoai_packed *p, uint64_t r, float *out) {
    const uint8_t *tile = p->data + r / BYOAI_TILE_ROWS * p->tile_bytes;
    chunk_vals v;
    for (uint64_t c = 0; c < p->k / 32; c++) {
        packed_chunk(p, tile, c, (int)(r % BYOAI_TILE_ROWS), &v);
        for (int i = 0; i < 32; i++) out[c * 32 + i] = v.s[i / 16] * (float)v.L[i] + v.o[i / 16];
    }
}

/* ---- reference kernels ------------------------------------------------------ */

static void ref_quantize(const float *x, uint32_t k, int8_t *q, float *d, float *s, int32_t *a32, int32_t *a16) {
    for (uint32_t b = 0; b < k / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        int32_t h[2] = {0, 0};
        for (int i = 0; i < 32; i++) {
            const int v = (int)nearbyintf(xb[i] * id);
            q[32 * b + (uint32_t)i] = (int8_t)v;
            h[i / 16] += v;
        }
        d[b] = amax / 127.0f;
        a16[2 * b] = h[0];
        a16[2 * b + 1] = h[1];
        a32[b] = h[0] + h[1];
        s[b] = d[b] * (float)a32[b];
    }
}

static void ref_kernel(const byoai_packed *w, uint64_t tile0, uint64_t tile1, const byoai_act *a, float *y,
                       size_t ldy, void *scratch) {
    (void)scratch;
    const uint64_t nc = w->k / 32;
    chunk_vals v;
    for (uint64_t tl = tile0; tl < tile1; tl++) {
        const uint8_t *tile = w->data + tl * w->tile_bytes;
        for (int r = 0; r < BYOAI_TILE_ROWS; r++) {
            const uint64_t row = tl * BYOAI_TILE_ROWS + (uint64_t)r;
            if (row >= w->rows) break;
            for (uint32_t t = 0; t < a->n; t++) {
                const int8_t *q = a->q + (size_t)t * a->stride;
                float sum = 0;
                for (uint64_t c = 0; c < nc; c++) {
                    packed_chunk(w, tile, c, r, &v);
                    const float d = a->d[(size_t)t * nc + c];
                    for (int h = 0; h < 2; h++) {
                        int32_t isum = 0;
                        for (int i = 16 * h; i < 16 * h + 16; i++) isum += v.L[i] * q[32 * c + (uint64_t)i];
                        sum += v.s[h] * d * (float)isum + v.o[h] * d * (float)a->a16[(size_t)t * 2 * nc + 2 * c + (uint64_t)h];
                    }
                }
                y[(size_t)t * ldy + row] = sum;
            }
        }
    }
}

static byoai_packed_kernels g_scalar = {.name = "scalar", .quantize = ref_quantize};

const byoai_packed_kernels *byoai_packed_kernels_scalar(void) {
    for (int t = 0; t < BYOAI_TYPE_COUNT; t++)
        if (byoai_pack_type_ok((byoai_type)t)) g_scalar.small[t] = ref_kernel;
    return &g_scalar;
}

void byoai_act_quantize_rows(const byoai_packed_kernels *pk, const float *x, uint32_t k, uint32_t t0, uint32_t t1,
                             byoai_act *a) {
    const size_t nc = k / 32;
    for (uint32_t t = t0; t < t1; t++) {
        pk->quantize(x + (size_t)t * k, k, a->q + (size_t)t * a->stride, a->d + t * nc, a->s + t * nc, a->a32 + t * nc,
                     a->a16 + t * 2 * nc);
        if (a->dt) {
            float *dt = a->dt + (t / 16 * nc) * 16 + t % 16, *st = a->st + (t / 16 * nc) * 16 + t % 16;
            for (size_t c = 0; c < nc; c++) dt[16 * c] = a->d[t * nc + c], st[16 * c] = a->s[t * nc + c];
        }
    }
}

void byoai_act_pad(byoai_act *a) {
    const uint32_t n16 = (a->n + 15) / 16 * 16;
    if (n16 == a->n) return;
    memset(a->q + (size_t)a->n * a->stride, 0, (size_t)(n16 - a->n) * a->stride);
    if (a->dt) {
        const size_t nc = a->k / 32;
        for (uint32_t t = a->n; t < n16; t++)
            for (size_t c = 0; c < nc; c++) a->dt[(t / 16 * nc + c) * 16 + t % 16] = a->st[(t / 16 * nc + c) * 16 + t % 16] = 0;
    }
}

/* ---- choice of kernels -------------------------------------------------------- */

static byoai_packed_kernels g_avx2, g_avx512, g_amx;
static bool g_have_avx2, g_have_avx512, g_have_amx;
static const byoai_packed_kernels *g_best;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
/* Linux hands out AMX tile state only on request (per process). */
static bool amx_permitted(void) {
#ifdef SYS_arch_prctl
    const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return false;
#endif
}
#endif

static void init_packed(void) {
    byoai_packed_kernels_scalar();
#if defined(__x86_64__)
    byoai_cpu cpu;
    byoai_cpu_detect(&cpu);
    const bool avx2 = cpu.avx2 && cpu.fma && cpu.f16c && cpu.bmi2;
    const bool avx512 = avx2 && cpu.avx512f && cpu.avx512bw && cpu.avx512vl && cpu.avx512dq && cpu.avx512vnni;
    const bool amx = avx512 && cpu.amx_tile && cpu.amx_int8 && amx_permitted();
    if (avx2) {
        g_avx2 = g_scalar;
        byoai_packed_init_avx2(&g_avx2);
        g_have_avx2 = true;
    }
    if (avx512) {
        g_avx512 = g_scalar;
        byoai_packed_init_avx2(&g_avx512);
        byoai_packed_init_avx512(&g_avx512);
        g_have_avx512 = true;
    }
    if (amx) {
        g_amx = g_avx512;
        byoai_packed_init_amx(&g_amx);
        g_have_amx = true;
    }
    const char *cap = getenv("BYOAI_SIMD"), *rp = getenv("BYOAI_REPACK");
    if (rp && !strcmp(rp, "0")) return;
    if (cap && !strcmp(cap, "scalar")) return;
    const bool cap2 = cap && !strcmp(cap, "avx2"), cap512 = cap && !strcmp(cap, "avx512");
    if (g_have_amx && !cap2 && !cap512) g_best = &g_amx;
    else if (g_have_avx512 && !cap2) g_best = &g_avx512;
    else if (g_have_avx2) g_best = &g_avx2;
#endif
}

bool byoai_pack_pays(const byoai_packed_kernels *pk, byoai_type t) {
    return pk && byoai_pack_type_ok(t) && pk->small[t] && pk->small[t] != ref_kernel;
}

const byoai_packed_kernels *byoai_packed_kernels_best(void) {
    pthread_once(&g_once, init_packed);
    return g_best;
}

const byoai_packed_kernels *byoai_packed_kernels_get(const char *name) {
    pthread_once(&g_once, init_packed);
    if (!strcmp(name, "scalar")) return &g_scalar;
    if (!strcmp(name, "avx2")) return g_have_avx2 ? &g_avx2 : NULL;
    if (!strcmp(name, "avx512")) return g_have_avx512 ? &g_avx512 : NULL;
    if (!strcmp(name, "amx")) return g_have_amx ? &g_amx : NULL;
    return NULL;
}
