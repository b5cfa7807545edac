/* AVX-512 XNOR-popcount micro-kernels for x86-64 CPUs (PoCL, clang), shared by the GEMM
 * and convolution kernels.
 *
 * Compiled only when the profile defines ESPRESSO_AVX512 1 (espresso_cl/params.py gives it to
 * PoCL CPU devices on x86-64 whose CPU has AVX512F, BW, VL and VPOPCNTDQ) and the compiler
 * is clang for x86-64; then XNOR_CPU_AVX512 is 1, otherwise 0 and nothing below exists, so
 * NVIDIA, Oclgrind and other runtimes never see this code.
 *
 * PoCL compiles kernels for an AVX2 CPU model (znver3 on Zen 4); these functions carry a
 * target attribute, so they are AVX-512 code that cannot be inlined into the kernel: each call
 * does a whole register tile over all of K, and only pointers and ints cross the call (512-bit
 * vector arguments change the calling convention between the two targets).
 *
 * Contract of xnor_tile_3x8 / xnor_tile_1x8 (R = 3 or 1 rows):
 *   a      first 64-bit word of row 0 of the left operand; row i starts at a + i * lda
 *   b      first word of column 0 of the right operand; column j starts at b + j * ldb
 *   ncols  1..8: columns j >= ncols read column ncols - 1 again (in bounds; caller ignores them)
 *   kw     words per row, >= 0, any value (a tail of kw % 8 words uses masked loads, so exactly
 *          kw words of each row are read: nothing past a row's end, no alignment needed)
 *   out    R x 8 ints, row i at out + 8 * i (private memory):
 *          out[8 i + j] = sum over k < kw of popcount(a[i lda + k] ^ b[j ldb + k])
 * The caller turns the count into its result (K - 2 * count for a dot product of +-1 values).
 */
#ifndef ESPRESSO_XNOR_CPU_H
#define ESPRESSO_XNOR_CPU_H

#if defined(ESPRESSO_AVX512) && ESPRESSO_AVX512 && defined(__x86_64__) && defined(__clang__)
#define XNOR_CPU_AVX512 1
#else
#define XNOR_CPU_AVX512 0
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

#endif /* XNOR_CPU_AVX512 */
#endif /* ESPRESSO_XNOR_CPU_H */
