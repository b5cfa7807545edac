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

#if XNOR_CPU_AVX512

#define XNOR_CPU_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq"), noinline))

/* 8 x 64-bit words; the _u type may sit at any 8-byte boundary. */
typedef long xnor_v8q __attribute__((vector_size(64)));
typedef long xnor_v8q_u __attribute__((vector_size(64), aligned(8)));
typedef int xnor_v8d __attribute__((vector_size(32)));
typedef int xnor_v8d_u __attribute__((vector_size(32), aligned(4)));

#define XNOR_LOAD(p) (*(const __global xnor_v8q_u *)(p))
#define XNOR_LOAD_TAIL(p, mask) \
    __builtin_ia32_loaddqudi512_mask((const __global long *)(p), (xnor_v8q){0, 0, 0, 0, 0, 0, 0, 0}, (mask))
#define XNOR_POPC(x) __builtin_ia32_vpopcntq_512(x)

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

#define XNOR_TILE(R)                                                                        \
XNOR_CPU_TARGET void xnor_tile_##R##x8(const __global ulong *a, const int lda,              \
                                       const __global ulong *b, const int ldb,              \
                                       const int ncols, const int kw, __private int *out)   \
{                                                                                           \
    const __global ulong *bc[8];                                                            \
    for (int j = 0; j < 8; ++j)                                                             \
        bc[j] = b + (size_t)(j < ncols ? j : ncols - 1) * ldb;                              \
    xnor_v8q s[R][8];                                                                       \
    _Pragma("unroll")                                                                       \
    for (int i = 0; i < R; ++i)                                                             \
        _Pragma("unroll")                                                                   \
        for (int j = 0; j < 8; ++j)                                                         \
            s[i][j] = (xnor_v8q){0, 0, 0, 0, 0, 0, 0, 0};                                   \
    int k = 0;                                                                              \
    for (; k + 8 <= kw; k += 8) {                                                           \
        xnor_v8q va[R];                                                                     \
        _Pragma("unroll")                                                                   \
        for (int i = 0; i < R; ++i) va[i] = XNOR_LOAD(a + (size_t)i * lda + k);             \
        _Pragma("unroll")                                                                   \
        for (int j = 0; j < 8; ++j) {                                                       \
            const xnor_v8q vb = XNOR_LOAD(bc[j] + k);                                       \
            _Pragma("unroll")                                                               \
            for (int i = 0; i < R; ++i) s[i][j] += XNOR_POPC(va[i] ^ vb);                   \
        }                                                                                   \
    }                                                                                       \
    if (k < kw) {                                                                           \
        const unsigned char mask = (unsigned char)((1u << (kw - k)) - 1u);                  \
        xnor_v8q va[R];                                                                     \
        _Pragma("unroll")                                                                   \
        for (int i = 0; i < R; ++i) va[i] = XNOR_LOAD_TAIL(a + (size_t)i * lda + k, mask);  \
        _Pragma("unroll")                                                                   \
        for (int j = 0; j < 8; ++j) {                                                       \
            const xnor_v8q vb = XNOR_LOAD_TAIL(bc[j] + k, mask);                            \
            _Pragma("unroll")                                                               \
            for (int i = 0; i < R; ++i) s[i][j] += XNOR_POPC(va[i] ^ vb);                   \
        }                                                                                   \
    }                                                                                       \
    _Pragma("unroll")                                                                       \
    for (int i = 0; i < R; ++i) XNOR_REDUCE8(out + 8 * i, s[i]);                            \
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

#define XNOR_TILE4(R, NAME)                                                                 \
static inline void NAME(const __global ulong *a, const int lda,                             \
                        const __global ulong *b, const int ldb,                             \
                        const int ncols, const int kw, __private int *out)                  \
{                                                                                           \
    const xnor_b32 lut = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,                   \
                          0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};                  \
    const xnor_b32 low = (xnor_b32)(xnor_q4){0x0f0f0f0f0f0f0f0fL, 0x0f0f0f0f0f0f0f0fL,      \
                                            0x0f0f0f0f0f0f0f0fL, 0x0f0f0f0f0f0f0f0fL};      \
    const xnor_b32 zero = (xnor_b32)(xnor_q4){0, 0, 0, 0};                                   \
    const __global ulong *bc[4];                                                            \
    for (int j = 0; j < 4; ++j)                                                             \
        bc[j] = b + (size_t)(j < ncols ? j : ncols - 1) * ldb;                              \
    xnor_q4 tot[R][4];                                                                      \
    _Pragma("unroll")                                                                       \
    for (int i = 0; i < R; ++i)                                                             \
        _Pragma("unroll")                                                                   \
        for (int j = 0; j < 4; ++j) tot[i][j] = (xnor_q4){0, 0, 0, 0};                      \
    int k = 0;                                                                              \
    while (k + 4 <= kw) {                                                                   \
        const int left = (kw - k) / 4;                                                      \
        const int steps = left < XNOR_STEPS ? left : XNOR_STEPS;                            \
        xnor_b32 cnt[R][4];                                                                 \
        _Pragma("unroll")                                                                   \
        for (int i = 0; i < R; ++i)                                                         \
            _Pragma("unroll")                                                               \
            for (int j = 0; j < 4; ++j) cnt[i][j] = zero;                                   \
        for (int s = 0; s < steps; ++s, k += 4) {                                           \
            xnor_b32 va[R];                                                                 \
            _Pragma("unroll")                                                               \
            for (int i = 0; i < R; ++i) va[i] = XNOR_LOAD4(a + (size_t)i * lda + k);        \
            _Pragma("unroll")                                                               \
            for (int j = 0; j < 4; ++j) {                                                   \
                const xnor_b32 vb = XNOR_LOAD4(bc[j] + k);                                  \
                _Pragma("unroll")                                                           \
                for (int i = 0; i < R; ++i) {                                               \
                    const xnor_b32 x = va[i] ^ vb;                                          \
                    const xnor_b32 hi = (xnor_b32)((xnor_w16)x >> 4) & low;                 \
                    cnt[i][j] += __builtin_ia32_pshufb256(lut, x & low)                     \
                               + __builtin_ia32_pshufb256(lut, hi);                         \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
        _Pragma("unroll")                                                                   \
        for (int i = 0; i < R; ++i)                                                         \
            _Pragma("unroll")                                                               \
            for (int j = 0; j < 4; ++j)                                                     \
                tot[i][j] += (xnor_q4)__builtin_ia32_psadbw256(cnt[i][j], zero);            \
    }                                                                                       \
    _Pragma("unroll")                                                                       \
    for (int i = 0; i < R; ++i)                                                             \
        _Pragma("unroll")                                                                   \
        for (int j = 0; j < 4; ++j) {                                                       \
            int c = (int)(tot[i][j][0] + tot[i][j][1] + tot[i][j][2] + tot[i][j][3]);       \
            for (int t = k; t < kw; ++t)                                                    \
                c += __builtin_popcountl(a[(size_t)i * lda + t] ^ bc[j][t]);                \
            out[4 * i + j] = c;                                                             \
        }                                                                                   \
}

XNOR_TILE4(2, xnor_tile)
XNOR_TILE4(1, xnor_tile_row)
#define XNOR_TR 2
#define XNOR_TC 4

#else /* plain OpenCL C */

#define XNOR_TILE_PLAIN(R, NAME)                                                            \
static inline void NAME(const __global ulong *a, const int lda,                             \
                        const __global ulong *b, const int ldb,                             \
                        const int ncols, const int kw, __private int *out)                  \
{                                                                                           \
    const __global ulong *bc[4];                                                            \
    for (int j = 0; j < 4; ++j)                                                             \
        bc[j] = b + (size_t)(j < ncols ? j : ncols - 1) * ldb;                              \
    int acc[R][4];                                                                          \
    for (int i = 0; i < R; ++i)                                                             \
        for (int j = 0; j < 4; ++j) acc[i][j] = 0;                                          \
    for (int k = 0; k < kw; ++k) {                                                          \
        ulong va[R], vb[4];                                                                 \
        for (int i = 0; i < R; ++i) va[i] = a[(size_t)i * lda + k];                         \
        for (int j = 0; j < 4; ++j) vb[j] = bc[j][k];                                       \
        for (int i = 0; i < R; ++i)                                                         \
            for (int j = 0; j < 4; ++j) acc[i][j] += XNOR_POPC64(va[i] ^ vb[j]);            \
    }                                                                                       \
    for (int i = 0; i < R; ++i)                                                             \
        for (int j = 0; j < 4; ++j) out[4 * i + j] = acc[i][j];                             \
}

#if defined(__clang__) && defined(__x86_64__)
#define XNOR_POPC64(x) __builtin_popcountl(x)
#else
#define XNOR_POPC64(x) ((int)popcount(x))
#endif

XNOR_TILE_PLAIN(2, xnor_tile)
XNOR_TILE_PLAIN(1, xnor_tile_row)
#define XNOR_TR 2
#define XNOR_TC 4

#endif
#endif /* ESPRESSO_XNOR_CPU_H */
