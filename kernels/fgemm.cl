/* float32 GEMM of the same structure as bgemm.cl: C[m][n] = sum_k A[m][k] * B[n][k].
 * A: M x K (activations), B: N x K (weights, one row per output unit), C: M x N.
 * Float layers use it, and so does the float mode that is the same-device baseline.
 *
 * Launch: global (ceil(N / BN) * WG_N, ceil(M / BM) * WG_M), local (WG_N, WG_M).
 * Work-item (tx, ty) owns rows bm + ty + i * WG_M (i < TM), columns bn + tx + j * WG_N (j < TN).
 *
 * Three inner loops, by profile:
 *  - USE_LOCAL 1 (GPUs): TK-wide tiles of A and B staged in local memory.
 *  - KV > 1 (CPUs): every row of A and of B is contiguous along K, so the work-item's TM x TN
 *    dot products run on float vectors of KV lanes along K (one vector FMA per pair per step:
 *    AVX2 vfmadd231ps with KV = 8 on PoCL), then each vector is summed across its lanes and
 *    the last K % KV products are added one by one. TM x TN vector accumulators, TM row
 *    vectors and one column vector must fit the register file (3 x 4 + 3 + 1 = 16 on AVX2).
 *  - ESPRESSO_AVX512 (the "cpu-avx512" profile): the same dot products as one call of
 *    float_cpu.h's AVX-512 TM x 6 tile (TN = 6, TM <= 4), which has twice the registers.
 *  - otherwise (generic): scalar loads straight from global memory.
 * PoCL 3.0 does not inline builtins such as mad() or min() (each is a function call), so the
 * products are written a * b + c, which clang contracts to an FMA, and bounds use ?:.
 */
#include "tiles.h"
#include "float_cpu.h"


#if FLOAT_CPU_AVX512 && !USE_LOCAL && (TN != FLOAT_CPU_COLS || TM > 4)
#error "the AVX-512 tile is TM x 6 with TM <= 4"
#endif


__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void fgemm(const int M, const int N, const int K,
           __global const float *restrict A,
           __global const float *restrict B,
           __global float *restrict C)
{
    TILE_ITEM(bm, bn);
    float acc[TM][TN];
    TILE_EACH(acc[i][j] = 0.0f);

#if USE_LOCAL
    TILE_LOCAL_LOOP(float, acc, K,
                    bm + r < M && k < K ? A[(size_t)(bm + r) * K + k] : 0.0f,
                    bn + r < N && k < K ? B[(size_t)(bn + r) * K + k] : 0.0f,
                    PRODUCT);
#else
    const __global float *arow[TM];
    const __global float *brow[TN];
    TILE_ROWS(arow, A, bm, M, K);
    TILE_COLS(brow, B, bn, N, K);
#if FLOAT_CPU_AVX512
    float tile[TM * TN];
    FLOAT_TILE_CALL(TM)(arow, brow, 1, K, 0, 0, tile);
    TILE_EACH(acc[i][j] = tile[i * TN + j]);
#else
#if KV > 1
    fkv_vec vacc[TM][TN];
    TILE_EACH(vacc[i][j] = (fkv_vec)(0.0f));
    const int KB = K - K % KV;
    for (int k = 0; k < KB; k += KV)
        VBLOCK_STEP(fkv_vec, TM, TN, vacc, FKV_LOAD(arow[i] + k), FKV_LOAD(brow[j] + k), PRODUCT);
    TILE_EACH(acc[i][j] = fkv_hsum(vacc[i][j]));
    for (int k = KB; k < K; ++k)
#else
    for (int k = 0; k < K; ++k)
#endif
        TILE_STEP(float, acc, arow[i][k], brow[j][k], PRODUCT);
#endif /* FLOAT_CPU_AVX512 */
#endif /* USE_LOCAL */

    TILE_STORE(C, M, N, bm, bn, acc[i][j]);
}
