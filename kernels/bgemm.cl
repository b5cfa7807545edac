/* XNOR-popcount GEMM: C[m][n] = K - 2 * sum_k popcount(A[m][k] ^ B[n][k]).
 * A: M rows of KW packed words (activations), B: N rows of KW packed words (weights,
 * one row per output unit), C: M x N int32. K is the true number of bits per row; pad
 * bits are 0 in A and B (common.h), so they never count.
 *
 * Launch: global (ceil(N / BN) * WG_N, ceil(M / BM) * WG_M), local (WG_N, WG_M).
 * Work-item (tx, ty) of a group owns rows bm + ty + i * WG_M and columns bn + tx + j * WG_N,
 * so neighbouring work-items store neighbouring outputs. CPU profiles run bgemm_cpu.cl instead.
 */
#include "common.h"
#include "tiles.h"

/* The work-item's products into acc[TM][TN] (declared here): counts of differing bits. */
#if USE_LOCAL
#define BGEMM_COUNTS(acc)                                                                     \
    TILE_ITEM(bm, bn);                                                                        \
    int acc[TM][TN];                                                                          \
    TILE_EACH(acc[i][j] = 0);                                                                 \
    TILE_LOCAL_LOOP(word_t, acc, KW,                                                          \
                    bm + r < M && k < KW ? A[(size_t)(bm + r) * KW + k] : (word_t)0,          \
                    bn + r < N && k < KW ? B[(size_t)(bn + r) * KW + k] : (word_t)0,          \
                    XNOR_COUNT)
#else
#define BGEMM_COUNTS(acc)                                                                     \
    TILE_ITEM(bm, bn);                                                                        \
    int acc[TM][TN];                                                                          \
    TILE_EACH(acc[i][j] = 0);                                                                 \
    const __global word_t *arow[TM];                                                          \
    const __global word_t *brow[TN];                                                          \
    TILE_ROWS(arow, A, bm, M, KW);                                                            \
    TILE_COLS(brow, B, bn, N, KW);                                                            \
    for (int k = 0; k < KW; ++k)                                                              \
        TILE_STEP(word_t, acc, arow[i][k], brow[j][k], XNOR_COUNT)
#endif

__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bgemm(const int M, const int N, const int KW, const int K,
           __global const word_t *restrict A,
           __global const word_t *restrict B,
           __global int *restrict C)
{
    BGEMM_COUNTS(acc);
    TILE_STORE(C, M, N, bm, bn, K - 2 * acc[i][j]);
}

/* bgemm followed by affine (kernels/affine.cl), in one launch: C[m][n] = c * scale[n] +
 * shift[n] in float32, c the product (a last layer's batch-norm or bias on its GEMM). */
__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bgemm_affine(const int M, const int N, const int KW, const int K,
                  __global const word_t *restrict A,
                  __global const word_t *restrict B,
                  __global const float *restrict scale,
                  __global const float *restrict shift,
                  __global float *restrict C)
{
    BGEMM_COUNTS(acc);
    TILE_STORE(C, M, N, bm, bn, (float)(K - 2 * acc[i][j]) * scale[bn + tx + j * WG_N] + shift[bn + tx + j * WG_N]);
}

/* bgemm followed by threshold_pack (kernels/pack.cl), in one launch, as bgemm_cpu_threshold
 * (kernels/bgemm_cpu.cl) defines it: bit n of row m is flip[n] ? c <= thresh[n] : c >= thresh[n],
 * C: M rows of RW 32-bit words (RW even), pad bits and pad words 0. A work-group's BN columns
 * are whole words (BN a multiple of 32; the group of column N - 1 also writes the pad words):
 * its pass bits meet in local memory, where it packs them. Launch as bgemm. */
#if BN % 32 == 0
__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bgemm_threshold(const int M, const int N, const int KW, const int K, const int RW,
                     __global const word_t *restrict A,
                     __global const word_t *restrict B,
                     __global const int *restrict thresh,
                     __global const int *restrict flip,
                     __global uint *restrict C)
{
    BGEMM_COUNTS(acc);
    TILE_PASS_BITS(lpass, tile_pass(K - 2 * acc[i][j], min(bn + tx + j * WG_N, N - 1), thresh, flip));
    TILE_STORE_PASS_WORDS(C, lpass, bm, M, N, bn, RW);
}
#endif
