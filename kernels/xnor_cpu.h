/* XNOR-popcount micro-kernels for CPUs, shared by the GEMM and convolution kernels.
 *
 * One contract, three implementations, chosen at compile time:
 *   - AVX-512 (XNOR_CPU_AVX512 = 1): only when the profile defines ESPRESSO_AVX512 1
 *     (espresso_cl/params.py gives it to PoCL CPU devices on x86-64 whose CPU has AVX512F, BW,
 *     VL and VPOPCNTDQ) and the compiler is clang for x86-64. PoCL compiles kernels for an AVX2
 *     CPU model (znver3 on Zen 4), so these functions carry a target attribute: AVX-512 code
 *     that cannot be inlined into the kernel. Each call does a whole register tile over all of
 *     K, and only pointers and ints cross the call (512-bit vector arguments change the calling
 *     convention between the two targets). Tile 3 x 8: 24 accumulators of 8 x 64-bit lanes,
 *     vpxorq + vpopcntq + vpaddq per 8 words and pair, masked loads for the K tail.
 *   - AVX2 (XNOR_CPU_AVX2 = 1): clang for x86-64 with __AVX2__ (PoCL on any x86-64 CPU since
 *     Haswell / Zen); inlined into the kernel. Tile 2 x 4: nibble-table popcount (vpshufb) into
 *     byte counters, summed into 64-bit lanes (vpsadbw) every 31 steps of 4 words; the last
 *     K % 4 words one by one.
 *   - Otherwise plain OpenCL C (a popcount per pair of 64-bit words), tile 2 x 4, for other
 *     CPUs and for simulators. NVIDIA, Oclgrind and Intel's runtime (whose frontend targets
 *     SPIR, not x86-64) only ever compile this version.
 *
 * Contract of xnor_tile (XNOR_TR rows x XNOR_TC columns) and xnor_tile_row (1 x XNOR_TC):
 *   a      first 64-bit word of row 0 of the left operand; row i starts at a + i * lda
 *   b      first word of column 0 of the right operand; column j starts at b + j * ldb
 *   ncols  1..XNOR_TC: columns j >= ncols read column ncols - 1 again (in bounds; the caller
 *          ignores those results)
 *   kw     words per row, >= 0, any value: exactly kw words of each row are read (nothing past
 *          a row's end; no alignment needed beyond the 8 bytes of a word)
 *   out    rows x XNOR_TC ints in private memory, row i at out + XNOR_TC * i:
 *          out[XNOR_TC * i + j] = sum over k < kw of popcount(a[i * lda + k] ^ b[j * ldb + k])
 * The caller turns the count into its result (K - 2 * count for a dot product of +-1 values).
 * Words are 64-bit (the CPU profiles' WORD_BITS), whatever word_t the including file uses.
 */
#ifndef ESPRESSO_XNOR_CPU_H
#define ESPRESSO_XNOR_CPU_H

#include "common.h"

#if defined(ESPRESSO_AVX512) && ESPRESSO_AVX512 && defined(__x86_64__) && defined(__clang__)
#define XNOR_CPU_AVX512 1
#else
#define XNOR_CPU_AVX512 0
#endif
#if !XNOR_CPU_AVX512 && defined(__AVX2__) && defined(__x86_64__) && defined(__clang__)
#define XNOR_CPU_AVX2 1
#else
#define XNOR_CPU_AVX2 0
#endif

/* One signature for the three implementations, so that they keep the contract above. */
#define XNOR_TILE_SIGNATURE(NAME)                                                           \
    void NAME(const __global ulong *a, const int lda, const __global ulong *b, const int ldb, \
              const int ncols, const int kw, __private int *out)

/* The AVX2 and plain tiles also come as NAME_segs: the sum over segments g < segs, segment g
 * of row i at a + i * lda + g * astride and of column j at b + j * ldb + g * bstride, kw words
 * each (a convolution's window rows, one call per window). */
#define XNOR_TILE_SEGS_SIGNATURE(NAME)                                                      \
    void NAME(const __global ulong *a, const int lda, const __global ulong *b, const int ldb, \
              const int ncols, const int kw, const int segs, const long astride,            \
              const long bstride, __private int *out)

/* bc[j]: the first word of column j of b, columns ld words apart, columns j >= ncols read
 * column ncols - 1 again. */
#define XNOR_COLUMNS(bc, NC, b, ncols, ld)                                                  \
    const __global ulong *bc[NC];                                                           \
    for (int j = 0; j < (NC); ++j)                                                          \
        bc[j] = (b) + (size_t)(j < (ncols) ? j : (ncols) - 1) * (ld)

#if XNOR_CPU_AVX512

#define XNOR_CPU_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq"), noinline))

/* 8 x 64-bit words; the _u type may sit at any 8-byte boundary. */
typedef long xnor_v8q __attribute__((vector_size(64)));
typedef long xnor_v8q_u __attribute__((vector_size(64), aligned(8)));
typedef int xnor_v8d __attribute__((vector_size(32)));
typedef int xnor_v8d_u __attribute__((vector_size(32), aligned(4)));

#define XNOR_V8Q_ZERO ((xnor_v8q){0, 0, 0, 0, 0, 0, 0, 0})
#define XNOR_LOAD(p) (*(const __global xnor_v8q_u *)(p))
#define XNOR_LOAD_TAIL(p, mask) \
    __builtin_ia32_loaddqudi512_mask((const __global long *)(p), XNOR_V8Q_ZERO, (mask))
/* The load mask of the first n < 8 words of a vector. */
#define XNOR_TAIL_MASK(n) ((unsigned char)((1u << (n)) - 1u))
#define XNOR_POPC(x) __builtin_ia32_vpopcntq_512(x)

/* One step of an R x 8 tile of 8-word vectors: s[i][j] += popcount(A_AT ^ B_AT) per lane,
 * A_AT (in i) a row's 8 words, B_AT (in j) a column's. */
#define XNOR_COUNT8(x, y) XNOR_POPC((x) ^ (y))
#define XNOR_STEP8(R, s, A_AT, B_AT) VBLOCK_STEP(xnor_v8q, R, 8, s, A_AT, B_AT, XNOR_COUNT8)

/* Sum of the 8 lanes of each of s0..s7, as 8 ints in that order. */
#define XNOR_PAIR(x, y) (__builtin_shufflevector(x, y, 0, 8, 2, 10, 4, 12, 6, 14) + \
                         __builtin_shufflevector(x, y, 1, 9, 3, 11, 5, 13, 7, 15))
#define XNOR_QUAD(x, y) (__builtin_shufflevector(x, y, 0, 1, 8, 9, 4, 5, 12, 13) + \
                         __builtin_shufflevector(x, y, 2, 3, 10, 11, 6, 7, 14, 15))
#define XNOR_OCT(x, y)  (__builtin_shufflevector(x, y, 0, 1, 2, 3, 8, 9, 10, 11) + \
                         __builtin_shufflevector(x, y, 4, 5, 6, 7, 12, 13, 14, 15))
#define XNOR_REDUCE8(dst, s) do {                                                       \
        const xnor_v8q q0_ = XNOR_PAIR(s[0], s[1]), q1_ = XNOR_PAIR(s[2], s[3]);       \
        const xnor_v8q q2_ = XNOR_PAIR(s[4], s[5]), q3_ = XNOR_PAIR(s[6], s[7]);       \
        *(xnor_v8d_u *)(dst) = __builtin_convertvector(                                 \
            XNOR_OCT(XNOR_QUAD(q0_, q1_), XNOR_QUAD(q2_, q3_)), xnor_v8d);              \
    } while (0)
/* The R x 8 counts of an R x 8 tile s of accumulators, row i at out + 8 * i. */
#define XNOR_REDUCE_TILE(R, out, s)                                                     \
    _Pragma("unroll")                                                                   \
    for (int i = 0; i < (R); ++i) XNOR_REDUCE8((out) + 8 * i, s[i])

#define XNOR_TILE(R)                                                                        \
XNOR_CPU_TARGET XNOR_TILE_SIGNATURE(xnor_tile_##R##x8)                                      \
{                                                                                           \
    XNOR_COLUMNS(bc, 8, b, ncols, ldb);                                                     \
    xnor_v8q s[R][8];                                                                       \
    BLOCK_EACH(R, 8, s[i][j] = XNOR_V8Q_ZERO);                                              \
    int k = 0;                                                                              \
    for (; k + 8 <= kw; k += 8)                                                             \
        XNOR_STEP8(R, s, XNOR_LOAD(a + (size_t)i * lda + k), XNOR_LOAD(bc[j] + k));         \
    if (k < kw) {                                                                           \
        const unsigned char mask = XNOR_TAIL_MASK(kw - k);                                  \
        XNOR_STEP8(R, s, XNOR_LOAD_TAIL(a + (size_t)i * lda + k, mask),                     \
                   XNOR_LOAD_TAIL(bc[j] + k, mask));                                        \
    }                                                                                       \
    XNOR_REDUCE_TILE(R, out, s);                                                            \
}

XNOR_TILE(3)
XNOR_TILE(1)

#define XNOR_TR 3
#define XNOR_TC 8
#define xnor_tile xnor_tile_3x8
#define xnor_tile_row xnor_tile_1x8

#elif XNOR_CPU_AVX2

typedef ulong xnor_q4_u __attribute__((ext_vector_type(4), aligned(8)));
typedef char xnor_b32 __attribute__((vector_size(32)));
typedef ushort xnor_w16 __attribute__((vector_size(32)));
typedef long xnor_q4 __attribute__((vector_size(32)));

#define XNOR_LOAD4(p) ((xnor_b32)(*(const __global xnor_q4_u *)(p)))
/* Byte counters gain at most 8 per step (4 + 4 per byte), so 31 steps stay below 256. */
#define XNOR_STEPS 31
/* Per byte, the popcount of x: its low and high nibbles looked up in lut (low: 0x0f bytes). */
static inline xnor_b32 xnor_nibble_count(const xnor_b32 x, const xnor_b32 lut, const xnor_b32 low)
{
    const xnor_b32 hi = (xnor_b32)((xnor_w16)x >> 4) & low;
    return __builtin_ia32_pshufb256(lut, x & low) + __builtin_ia32_pshufb256(lut, hi);
}
#define XNOR_NIBBLE_COUNT(x, y) xnor_nibble_count((x) ^ (y), lut, low)

#define XNOR_TILE4(R, NAME)                                                                 \
static inline XNOR_TILE_SEGS_SIGNATURE(NAME##_segs)                                         \
{                                                                                           \
    const xnor_b32 lut = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,                   \
                          0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};                  \
    const xnor_b32 low = (xnor_b32)(xnor_q4){0x0f0f0f0f0f0f0f0fL, 0x0f0f0f0f0f0f0f0fL,      \
                                            0x0f0f0f0f0f0f0f0fL, 0x0f0f0f0f0f0f0f0fL};      \
    const xnor_b32 zero = (xnor_b32)(xnor_q4){0, 0, 0, 0};                                   \
    XNOR_COLUMNS(bc, 4, b, ncols, ldb);                                                     \
    xnor_q4 tot[R][4];                                                                      \
    xnor_b32 cnt[R][4];                                                                     \
    int rest[R][4];                                                                         \
    BLOCK_EACH(R, 4, tot[i][j] = (xnor_q4){0, 0, 0, 0});                                    \
    BLOCK_EACH(R, 4, cnt[i][j] = zero);                                                     \
    BLOCK_EACH(R, 4, rest[i][j] = 0);                                                       \
    int used = 0;  /* steps in the byte counters */                                         \
    for (int g = 0; g < segs; ++g) {                                                        \
        const __global ulong *ag = a + (size_t)g * astride;                                 \
        const __global ulong *bg[4];                                                        \
        _Pragma("unroll")                                                                   \
        for (int j = 0; j < 4; ++j) bg[j] = bc[j] + (size_t)g * bstride;                    \
        int k = 0;                                                                          \
        while (k + 4 <= kw) {                                                               \
            const int left = (kw - k) / 4, room = XNOR_STEPS - used;                        \
            const int steps = left < room ? left : room;                                    \
            for (int s = 0; s < steps; ++s, k += 4)                                         \
                VBLOCK_STEP(xnor_b32, R, 4, cnt, XNOR_LOAD4(ag + (size_t)i * lda + k),      \
                            XNOR_LOAD4(bg[j] + k), XNOR_NIBBLE_COUNT);                      \
            used += steps;                                                                  \
            if (used == XNOR_STEPS) {                                                       \
                BLOCK_EACH(R, 4, tot[i][j] += (xnor_q4)__builtin_ia32_psadbw256(cnt[i][j], zero)); \
                BLOCK_EACH(R, 4, cnt[i][j] = zero);                                         \
                used = 0;                                                                   \
            }                                                                               \
        }                                                                                   \
        for (; k < kw; ++k)                                                                 \
            BLOCK_EACH(R, 4, rest[i][j] += __builtin_popcountl(ag[(size_t)i * lda + k] ^ bg[j][k])); \
    }                                                                                       \
    BLOCK_EACH(R, 4, tot[i][j] += (xnor_q4)__builtin_ia32_psadbw256(cnt[i][j], zero));      \
    BLOCK_EACH(R, 4, out[4 * i + j] = (int)(tot[i][j][0] + tot[i][j][1] + tot[i][j][2]      \
                                            + tot[i][j][3]) + rest[i][j]);                  \
}                                                                                           \
static inline XNOR_TILE_SIGNATURE(NAME)                                                     \
{                                                                                           \
    NAME##_segs(a, lda, b, ldb, ncols, kw, 1, 0, 0, out);                                   \
}

XNOR_TILE4(2, xnor_tile)
XNOR_TILE4(1, xnor_tile_row)
#define XNOR_TR 2
#define XNOR_TC 4

#else /* plain OpenCL C */

#if defined(__clang__) && defined(__x86_64__)
#define XNOR_COUNT64(x, y) __builtin_popcountl((x) ^ (y))
#else
#define XNOR_COUNT64(x, y) ((int)popcount((x) ^ (y)))
#endif

#define XNOR_TILE_PLAIN(R, NAME)                                                            \
static inline XNOR_TILE_SEGS_SIGNATURE(NAME##_segs)                                         \
{                                                                                           \
    XNOR_COLUMNS(bc, 4, b, ncols, ldb);                                                     \
    int acc[R][4];                                                                          \
    BLOCK_EACH(R, 4, acc[i][j] = 0);                                                        \
    for (int g = 0; g < segs; ++g) {                                                        \
        const __global ulong *ag = a + (size_t)g * astride;                                 \
        const __global ulong *bg[4];                                                        \
        _Pragma("unroll")                                                                   \
        for (int j = 0; j < 4; ++j) bg[j] = bc[j] + (size_t)g * bstride;                    \
        for (int k = 0; k < kw; ++k)                                                        \
            BLOCK_STEP(ulong, R, 4, acc, ag[(size_t)i * lda + k], bg[j][k], XNOR_COUNT64);  \
    }                                                                                       \
    BLOCK_EACH(R, 4, out[4 * i + j] = acc[i][j]);                                           \
}                                                                                           \
static inline XNOR_TILE_SIGNATURE(NAME)                                                     \
{                                                                                           \
    NAME##_segs(a, lda, b, ldb, ncols, kw, 1, 0, 0, out);                                   \
}

XNOR_TILE_PLAIN(2, xnor_tile)
XNOR_TILE_PLAIN(1, xnor_tile_row)
#define XNOR_TR 2
#define XNOR_TC 4

#endif
#endif /* ESPRESSO_XNOR_CPU_H */
