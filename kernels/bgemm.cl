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

__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bgemm(const int M, const int N, const int KW, const int K,
           __global const word_t *restrict A,
           __global const word_t *restrict B,
           __global int *restrict C)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int bn = get_group_id(0) * BN, bm = get_group_id(1) * BM;
    int acc[TM][TN];
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j)
            acc[i][j] = 0;

#if USE_LOCAL
    __local word_t As[BM][TK_PAD];
    __local word_t Bs[BN][TK_PAD];
    const int lid = ty * WG_N + tx;
    for (int k0 = 0; k0 < KW; k0 += TK) {
        /* Tiles past the edge are filled with 0 words: 0 ^ 0 adds nothing. */
        for (int idx = lid; idx < BM * TK; idx += WG_M * WG_N) {
            const int r = idx / TK, c = idx % TK;
            const int gm = bm + r, gk = k0 + c;
            As[r][c] = (gm < M && gk < KW) ? A[(size_t)gm * KW + gk] : (word_t)0;
        }
        for (int idx = lid; idx < BN * TK; idx += WG_M * WG_N) {
            const int r = idx / TK, c = idx % TK;
            const int gn = bn + r, gk = k0 + c;
            Bs[r][c] = (gn < N && gk < KW) ? B[(size_t)gn * KW + gk] : (word_t)0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TK; ++kk) {
            word_t a[TM], b[TN];
            for (int i = 0; i < TM; ++i) a[i] = As[ty + i * WG_M][kk];
            for (int j = 0; j < TN; ++j) b[j] = Bs[tx + j * WG_N][kk];
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j)
                    acc[i][j] += POPC(a[i] ^ b[j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#else
    /* Rows past the edge read row M-1 / N-1 (in bounds); their results are not stored.
     * (Conditionals, not min(): PoCL calls its builtins instead of inlining them.) */
    const __global word_t *arow[TM];
    const __global word_t *brow[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = bm + ty + i * WG_M;
        arow[i] = A + (size_t)(m < M ? m : M - 1) * KW;
    }
#pragma unroll
    for (int j = 0; j < TN; ++j) {
        const int n = bn + tx + j * WG_N;
        brow[j] = B + (size_t)(n < N ? n : N - 1) * KW;
    }
    for (int k = 0; k < KW; ++k) {
        word_t a[TM], b[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = arow[i][k];
#pragma unroll
        for (int j = 0; j < TN; ++j) b[j] = brow[j][k];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j)
                acc[i][j] += POPC(a[i] ^ b[j]);
    }
#endif

    for (int i = 0; i < TM; ++i) {
        const int m = bm + ty + i * WG_M;
        for (int j = 0; j < TN; ++j) {
            const int n = bn + tx + j * WG_N;
            if (m < M && n < N)
                C[(size_t)m * N + n] = K - 2 * acc[i][j];
        }
    }
}
