/* XNOR-popcount GEMM for few rows (batch 1-16, a GEMV): C[m][n] = K - 2 * sum_k popcount(A[m][k] ^ B[n][k]).
 * Operands and result as bgemm.cl. The GPU profile's bgemm launcher picks this kernel when
 * M <= the profile's GEMV block height (espresso_cl/tuning.py: BinaryGemm.gemv).
 *
 * With few rows, bgemm's tiles leave most of a BM-row block idle and run too few work-groups to
 * fill the GPU; the product is bound by reading B (each word of B is used M times). So here a
 * work-group owns BNV = WG_M * TN output columns and all M rows (M <= TM), and splits K across
 * its WG_N work-items of dimension 0: lane tx reads words tx, tx + WG_N, ... of each of its TN
 * rows of B, so that a warp reads runs of WG_N consecutive words (coalesced), and keeps a
 * TM x TN block of partial counts. The group stages A's rows WG_N * TK words at a time in
 * local memory for all its lanes. A local-memory reduction then adds the WG_N partial counts of
 * each output.
 *
 * Launch: global (WG_N, ceil(N / BNV) * WG_M), local (WG_N, WG_M): espresso_cl/registry.py
 * (gemv_grid). The host builds TM as the power of two at or above M (its row bucket), so
 * that rows past M cost little; those rows read row M - 1 and are not stored.
 */
#include "common.h"
#include "tiles.h"

#define BNV (WG_M * TN)
#define KS (WG_N * TK)
/* Partial counts of a group: [column lane][output of the block][K lane]; the spare K lane
 * keeps the summing work-items (one output each, reading along K) on different banks. */
#define OUTS (TM * TN)

__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bgemv(const int M, const int N, const int KW, const int K,
           __global const word_t *restrict A,
           __global const word_t *restrict B,
           __global int *restrict C)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int col0 = get_group_id(1) * BNV + ty * TN;

    const __global word_t *brow[TN];
    #pragma unroll
    for (int j = 0; j < TN; ++j)
        brow[j] = B + (size_t)(col0 + j < N ? col0 + j : N - 1) * KW;

    /* A step covers KS = WG_N * TK words of K: lane tx reads words k0 + u * WG_N + tx
     * (u < TK) of its TN rows of B, TK * TN independent loads in flight per work-item. The
     * rows of A along those words are staged once for the group's WG_M column lanes (A's row
     * pointers in registers took ptxas to 96 registers at TM = 16). */
    __local word_t As[TM][KS];
    const int lid = ty * WG_N + tx;
    int acc[TM][TN];
    BLOCK_EACH(TM, TN, acc[i][j] = 0);
    for (int k0 = 0; k0 < KW; k0 += KS) {
        for (int x = lid; x < TM * KS; x += WG_N * WG_M) {
            const int i = x / KS, c = x % KS, k = k0 + c;
            As[i][c] = k < KW ? A[(size_t)(i < M ? i : M - 1) * KW + k] : (word_t)0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        #pragma unroll
        for (int u = 0; u < TK; ++u) {
            const int c = u * WG_N + tx, k = k0 + c;
            /* Past K: 0 words in A and B, which add nothing. */
            BLOCK_STEP(word_t, TM, TN, acc, As[i][c], k < KW ? brow[j][k] : (word_t)0, XNOR_COUNT);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    __local int partial[WG_M][OUTS][WG_N + 1];
    BLOCK_EACH(TM, TN, partial[ty][i * TN + j][tx] = acc[i][j]);
    barrier(CLK_LOCAL_MEM_FENCE);

    /* Lane tx sums outputs tx, tx + WG_N, ... of its column lane's block. */
    for (int o = tx; o < OUTS; o += WG_N) {
        const int i = o / TN, col = col0 + o % TN;
        int count = 0;
        for (int l = 0; l < WG_N; ++l)
            count += partial[ty][o][l];
        if (i < M && col < N)
            C[(size_t)i * N + col] = K - 2 * count;
    }
}
