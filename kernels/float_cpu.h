/* The CPU loops of fgemm.cl and fconv2d.cl: float vectors of KV lanes along K for any compiler,
 * and AVX-512 dot-product tiles for x86-64 CPUs (PoCL, clang), the float twin of xnor_cpu.h.
 *
 * KV vectors: every row of activations and weights is contiguous along K, so a work-item's dot
 * products run on vectors (one vector FMA per pair per step), each summed across its lanes at
 * the end. KV = 1: no vectors (the scalar or local-memory loops).
 *
 * AVX-512 tiles: compiled only when the profile defines ESPRESSO_AVX512 1 ("cpu-avx512": PoCL
 * CPU devices whose CPU has AVX-512) and the compiler is clang for x86-64; then
 * FLOAT_CPU_AVX512 is 1, otherwise 0 and they do not exist (NVIDIA, Oclgrind and other runtimes
 * never see them). PoCL compiles kernels for an AVX2 CPU model, so these functions carry a
 * target attribute and cannot be inlined into the kernel: each call does a whole R x 6 tile
 * over all of K, and only pointers and ints cross the call. 32 zmm registers hold R x 6
 * accumulators of 16 lanes, R row vectors and one column vector (4 x 6 + 4 + 1 = 29): per 16
 * lanes of K, R + 6 loads feed 6 R FMAs, where AVX2's 3 x 4 tile (fgemm.cl, KV = 8) needs 7
 * loads per 12 FMAs of half the width.
 *
 * Contract of float_tile_Rx6 (R = 1 to 4):
 *   a, b     R row pointers and 6 column pointers (private arrays of global pointers)
 *   segs     segments per row, >= 1; segment g of row i starts at a[i] + g * astride, of
 *            column j at b[j] + g * bstride (a convolution's window rows; 1 for a GEMM)
 *   len      floats per segment, >= 0, any value (a tail of len % 16 uses masked loads, so
 *            exactly len floats of each segment are read: nothing past it, no alignment needed)
 *   out      R x 6 floats, row i at out + 6 * i (private memory):
 *            out[6 i + j] = sum over segments and k < len of a[i][g, k] * b[j][g, k]
 */
#ifndef ESPRESSO_FLOAT_CPU_H
#define ESPRESSO_FLOAT_CPU_H

#include "tiles.h"

#ifndef KV
#define KV 1
#endif

#if KV > 1
#if USE_LOCAL
#error "KV > 1 is the global-memory (CPU) loop: use it with USE_LOCAL 0"
#endif
#if KV == 4
typedef float4 fkv_vec;
#elif KV == 8
typedef float8 fkv_vec;
#else
#error "KV must be 1, 4 or 8"
#endif
#if defined(__clang__)
/* The same vector at 4-byte alignment: rows of K % KV != 0 floats start anywhere, and clang
 * turns this load into one unaligned vector load where vloadn would be a call on PoCL. */
typedef fkv_vec fkv_uvec __attribute__((aligned(4)));
#define FKV_LOAD(p) (*(const __global fkv_uvec *)(p))
#elif KV == 4
#define FKV_LOAD(p) vload4(0, p)
#else
#define FKV_LOAD(p) vload8(0, p)
#endif

static inline float fkv_hsum(const fkv_vec v)
{
#if KV == 8
    const float4 q = v.lo + v.hi;
#else
    const float4 q = v;
#endif
    const float2 h = q.lo + q.hi;
    return h.x + h.y;
}
#endif

#if defined(ESPRESSO_AVX512) && ESPRESSO_AVX512 && defined(__x86_64__) && defined(__clang__)
#define FLOAT_CPU_AVX512 1
#else
#define FLOAT_CPU_AVX512 0
#endif

#if FLOAT_CPU_AVX512

#define FLOAT_CPU_TARGET __attribute__((target("avx512f,avx512vl"), noinline))
#define FLOAT_CPU_COLS 6

typedef float float_v16 __attribute__((ext_vector_type(16)));
typedef float float_v16_u __attribute__((ext_vector_type(16), aligned(4)));

#define FLOAT_LOAD(p) (*(const __global float_v16_u *)(p))
#define FLOAT_LOAD_TAIL(p, mask) \
    __builtin_ia32_loadups512_mask((const __global float *)(p), (float_v16)(0.0f), (mask))

#define FLOAT_TILE(R)                                                                       \
FLOAT_CPU_TARGET void float_tile_##R##x6(const __global float *const *a,                    \
                                         const __global float *const *b,                    \
                                         const int segs, const int len,                     \
                                         const int astride, const int bstride,              \
                                         __private float *out)                              \
{                                                                                           \
    float_v16 s[R][6];                                                                      \
    BLOCK_EACH(R, 6, s[i][j] = (float_v16)(0.0f));                                          \
    const int lb = len - len % 16;                                                          \
    const unsigned short mask = (unsigned short)((1u << (len % 16)) - 1u);                  \
    for (int g = 0; g < segs; ++g) {                                                        \
        const __global float *ag[R];                                                        \
        const __global float *bg[6];                                                        \
        _Pragma("unroll")                                                                   \
        for (int i = 0; i < R; ++i) ag[i] = a[i] + (size_t)g * astride;                     \
        _Pragma("unroll")                                                                   \
        for (int j = 0; j < 6; ++j) bg[j] = b[j] + (size_t)g * bstride;                     \
        for (int k = 0; k < lb; k += 16)                                                    \
            VBLOCK_STEP(float_v16, R, 6, s, FLOAT_LOAD(ag[i] + k), FLOAT_LOAD(bg[j] + k),   \
                        PRODUCT);                                                           \
        if (lb < len)                                                                       \
            VBLOCK_STEP(float_v16, R, 6, s, FLOAT_LOAD_TAIL(ag[i] + lb, mask),              \
                        FLOAT_LOAD_TAIL(bg[j] + lb, mask), PRODUCT);                        \
    }                                                                                       \
    _Pragma("unroll")                                                                       \
    for (int i = 0; i < R; ++i)                                                             \
        _Pragma("unroll")                                                                   \
        for (int j = 0; j < 6; ++j) {                                                       \
            const float_v16 v = s[i][j];                                                    \
            const float8 h = v.lo + v.hi;                                                   \
            const float4 q = h.lo + h.hi;                                                   \
            const float2 d = q.lo + q.hi;                                                   \
            out[6 * i + j] = d.x + d.y;                                                     \
        }                                                                                   \
}

FLOAT_TILE(1)
FLOAT_TILE(2)
FLOAT_TILE(3)
FLOAT_TILE(4)

#define FLOAT_TILE_CALL_(R) float_tile_##R##x6
#define FLOAT_TILE_CALL(R) FLOAT_TILE_CALL_(R)

#endif /* FLOAT_CPU_AVX512 */
#endif /* ESPRESSO_FLOAT_CPU_H */
