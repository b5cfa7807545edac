/* XNOR-popcount GEMM on CPUs: C[m][n] = K - 2 * sum_k popcount(A[m][k] ^ B[n][k]), operands
 * as bgemm.cl's. One work-item per work-group computes a block of TM rows x TN columns from
 * xnor_cpu.h's register tiles (XNOR_TR x XNOR_TC: AVX-512, AVX2 or plain C; single rows at
 * the bottom edge), so the block's rows and columns stay in the core's caches; the launcher
 * (espresso_cl/ops/gemm.py) narrows TN for short products such as a batch-1 GEMV.
 *
 * Launch: global (ceil(N / TN), ceil(M / TM)), or the two swapped with ROWS_FIRST, local (1, 1).
 */
#include "common.h"
#include "xnor_cpu.h"

/* The host passes TM and TN (espresso_cl/tuning.py: BinaryGemm.tiles); these defaults only let
 * the file build on its own. */
#ifndef TM
#define TM 12
#endif
#ifndef TN
#define TN 32
#endif

/* The work-item's block: rows [bm, mend) and columns [bn, nend) of C. A64, B64: A and B as
 * rows of kw 64-bit words (KW counts word_t, WORD_SPAN / 2 of them per 64 bits). */
#define BGEMM_CPU_BLOCK()                                                                   \
    const int bm = BLOCK_ROW() * TM, bn = BLOCK_COL() * TN;                              \
    const int mend = M < bm + TM ? M : bm + TM, nend = N < bn + TN ? N : bn + TN;           \
    const int kw = KW * WORD_SPAN / 2;                                                      \
    const __global ulong *A64 = (const __global ulong *)A, *B64 = (const __global ulong *)B

/* Counts of rows [m, m + rows) x columns [n, n + cols) into out: rows is XNOR_TR, or 1 for
 * the last rows of a block. */
#define BGEMM_CPU_TILE(m, rows, n, cols, out) do {                                          \
        const __global ulong *a_ = A64 + (size_t)(m) * kw, *b_ = B64 + (size_t)(n) * kw;    \
        if ((rows) == XNOR_TR)                                                              \
            xnor_tile(a_, kw, b_, kw, cols, kw, out);                                       \
        else                                                                                \
            xnor_tile_row(a_, kw, b_, kw, cols, kw, out);                                   \
    } while (0)

/* The block's products, c = K - 2 * count, each stored by STORE(row, column, c). */
#define BGEMM_CPU_PRODUCTS(STORE) do {                                                      \
        int out_[XNOR_TR * XNOR_TC];                                                        \
        for (int m = bm; m < mend;) {                                                       \
            const int rows = mend - m >= XNOR_TR ? XNOR_TR : 1;                             \
            for (int n = bn; n < nend; n += XNOR_TC) {                                      \
                const int cols = nend - n < XNOR_TC ? nend - n : XNOR_TC;                   \
                BGEMM_CPU_TILE(m, rows, n, cols, out_);                                     \
                for (int i = 0; i < rows; ++i)                                              \
                    for (int j = 0; j < cols; ++j)                                          \
                        STORE(m + i, n + j, K - 2 * out_[XNOR_TC * i + j]);                 \
            }                                                                               \
            m += rows;                                                                      \
        }                                                                                   \
    } while (0)

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bgemm_cpu(const int M, const int N, const int KW, const int K,
           __global const word_t *restrict A,
           __global const word_t *restrict B,
           __global int *restrict C)
{
    BGEMM_CPU_BLOCK();
#define STORE_INT(r, c, v) (C[(size_t)(r) * N + (c)] = (v))
    BGEMM_CPU_PRODUCTS(STORE_INT);
#undef STORE_INT
}

/* bgemm_cpu followed by affine (kernels/affine.cl), in one launch: C[m][n] = c * scale[n] +
 * shift[n] in float32, c the product (a last layer's batch-norm or bias on its GEMM). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bgemm_cpu_affine(const int M, const int N, const int KW, const int K,
                      __global const word_t *restrict A,
                      __global const word_t *restrict B,
                      __global const float *restrict scale,
                      __global const float *restrict shift,
                      __global float *restrict C)
{
    BGEMM_CPU_BLOCK();
#define STORE_AFFINE(r, c, v) (C[(size_t)(r) * N + (c)] = (float)(v) * scale[c] + shift[c])
    BGEMM_CPU_PRODUCTS(STORE_AFFINE);
#undef STORE_AFFINE
}

/* bgemm_cpu followed by threshold_pack (kernels/pack.cl), in one launch: output bit n of row m is
 * flip[n] ? c <= thresh[n] : c >= thresh[n] with c = K - 2 * count, packed as common.h says into
 * C, M rows of RW 32-bit words (RW even). TN must be a multiple of 32, so that each work-item
 * owns whole words: the words of columns [bn, bn + TN), and, in the block that holds column
 * N - 1, the pad words after it up to RW (written 0), so every word has exactly one writer.
 * The kernel exists only where TN is (ops.bgemm_threshold builds it so).
 *
 * The test, on the count: c >= t is count <= floor((K - t) / 2), and c <= t is the negation of
 * count <= ceil((K - t) / 2) - 1. So each column gets one bound, each tile row one vector
 * compare turned into bits, and the flips are one XOR per word. */
#if TN % 32 == 0

/* floor(v / 2) for any int v (v - (v & 1) is even, so the division is exact). */
#define FLOOR_HALF(v) (((v) - ((v) & 1)) / 2)

/* Bit j of the result: cnt[j] <= bound[j], for j < XNOR_TC (private arrays). */
#if defined(__clang__) && defined(__x86_64__) && defined(__AVX__) && XNOR_TC == 8
typedef float bgemm_v8sf __attribute__((vector_size(32)));
#define TILE_ROW_BITS(cnt, bound) \
    ((uint)__builtin_ia32_movmskps256((bgemm_v8sf)(vload8(0, cnt) <= vload8(0, bound))))
#elif defined(__clang__) && defined(__x86_64__) && defined(__SSE__) && XNOR_TC == 4
typedef float bgemm_v4sf __attribute__((vector_size(16)));
#define TILE_ROW_BITS(cnt, bound) \
    ((uint)__builtin_ia32_movmskps((bgemm_v4sf)(vload4(0, cnt) <= vload4(0, bound))))
#else
static inline uint tile_row_bits(const __private int *cnt, const __private int *bound)
{
    uint bits = 0u;
    for (int j = 0; j < XNOR_TC; ++j)
        bits |= (uint)(cnt[j] <= bound[j]) << j;
    return bits;
}
#define TILE_ROW_BITS(cnt, bound) tile_row_bits(cnt, bound)
#endif

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bgemm_cpu_threshold(const int M, const int N, const int KW, const int K, const int RW,
                     __global const word_t *restrict A,
                     __global const word_t *restrict B,
                     __global const int *restrict thresh,
                     __global const int *restrict flip,
                     __global uint *restrict C)
{
    BGEMM_CPU_BLOCK();
    /* Per column of the block: the bound on the count; per word: flips and columns < N. */
    int bound[TN];
    uint flips[TN / 32], valid[TN / 32];
    for (int w = 0; w < TN / 32; ++w) flips[w] = valid[w] = 0u;
    for (int j = 0; j < TN; ++j) {
        const int n = bn + j;
        bound[j] = 0;
        if (n < N) {
            const int v = K - thresh[n];
            const int f = flip[n] != 0;
            bound[j] = f ? FLOOR_HALF(v + 1) - 1 : FLOOR_HALF(v);
            flips[j / 32] |= (uint)f << (j % 32);
            valid[j / 32] |= 1u << (j % 32);
        }
    }
    int out[XNOR_TR * XNOR_TC];
    for (int m = bm; m < mend;) {
        const int rows = mend - m >= XNOR_TR ? XNOR_TR : 1;
        /* One 32-bit word of each row at a time: its 32 columns are whole register tiles. */
        for (int n0 = bn; n0 < nend; n0 += 32) {
            const int wend = nend < n0 + 32 ? nend : n0 + 32;
            uint bits[XNOR_TR];
            for (int i = 0; i < XNOR_TR; ++i) bits[i] = 0u;
            for (int n = n0; n < wend; n += XNOR_TC) {
                const int cols = wend - n < XNOR_TC ? wend - n : XNOR_TC;
                BGEMM_CPU_TILE(m, rows, n, cols, out);
                for (int i = 0; i < rows; ++i)
                    bits[i] |= TILE_ROW_BITS(out + XNOR_TC * i, bound + (n - bn)) << (n - n0);
            }
            const int w = (n0 - bn) / 32;
            for (int i = 0; i < rows; ++i)
                C[(size_t)(m + i) * RW + n0 / 32] = (bits[i] ^ flips[w]) & valid[w];
        }
        if (nend == N) {
            /* The last block: the row's pad words after column N - 1. */
            for (int i = 0; i < rows; ++i)
                for (int w = (N + 31) / 32; w < RW; ++w)
                    C[(size_t)(m + i) * RW + w] = 0u;
        }
        m += rows;
    }
}
#endif /* TN % 32 == 0 */
