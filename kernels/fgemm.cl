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
#include "float_kv.h"
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
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int bn = get_group_id(0) * BN, bm = get_group_id(1) * BM;
    float acc[TM][TN];
    #pragma unroll
    for (int i = 0; i < TM; ++i)
        #pragma unroll
        for (int j = 0; j < TN; ++j)
            acc[i][j] = 0.0f;

#if USE_LOCAL
    __local float As[BM][TK_PAD];
    __local float Bs[BN][TK_PAD];
    const int lid = ty * WG_N + tx;
    for (int k0 = 0; k0 < K; k0 += TK) {
        for (int idx = lid; idx < BM * TK; idx += WG_M * WG_N) {
            const int r = idx / TK, c = idx % TK;
            const int gm = bm + r, gk = k0 + c;
            As[r][c] = (gm < M && gk < K) ? A[(size_t)gm * K + gk] : 0.0f;
        }
        for (int idx = lid; idx < BN * TK; idx += WG_M * WG_N) {
            const int r = idx / TK, c = idx % TK;
            const int gn = bn + r, gk = k0 + c;
            Bs[r][c] = (gn < N && gk < K) ? B[(size_t)gn * K + gk] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TK; ++kk) {
            float a[TM], b[TN];
            #pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = As[ty + i * WG_M][kk];
            #pragma unroll
            for (int j = 0; j < TN; ++j) b[j] = Bs[tx + j * WG_N][kk];
            #pragma unroll
            for (int i = 0; i < TM; ++i)
                #pragma unroll
                for (int j = 0; j < TN; ++j)
                    acc[i][j] += a[i] * b[j];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#else
    /* Rows past M or N read the last one again (in bounds); their results are not stored. */
    const __global float *arow[TM];
    const __global float *brow[TN];
    #pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = bm + ty + i * WG_M;
        arow[i] = A + (size_t)(m < M ? m : M - 1) * K;
    }
    #pragma unroll
    for (int j = 0; j < TN; ++j) {
        const int n = bn + tx + j * WG_N;
        brow[j] = B + (size_t)(n < N ? n : N - 1) * K;
    }
#if FLOAT_CPU_AVX512
    float tile[TM * TN];
    FLOAT_TILE_CALL(TM)(arow, brow, 1, K, 0, 0, tile);
    #pragma unroll
    for (int i = 0; i < TM; ++i)
        #pragma unroll
        for (int j = 0; j < TN; ++j)
            acc[i][j] = tile[i * TN + j];
#else
#if KV > 1
    fkv_vec vacc[TM][TN];
    #pragma unroll
    for (int i = 0; i < TM; ++i)
        #pragma unroll
        for (int j = 0; j < TN; ++j)
            vacc[i][j] = (fkv_vec)(0.0f);
    const int KB = K - K % KV;
    for (int k = 0; k < KB; k += KV) {
        fkv_vec a[TM];
        #pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = FKV_LOAD(arow[i] + k);
        #pragma unroll
        for (int j = 0; j < TN; ++j) {
            const fkv_vec b = FKV_LOAD(brow[j] + k);
            #pragma unroll
            for (int i = 0; i < TM; ++i)
                vacc[i][j] += a[i] * b;
        }
    }
    #pragma unroll
    for (int i = 0; i < TM; ++i)
        #pragma unroll
        for (int j = 0; j < TN; ++j)
            acc[i][j] = fkv_hsum(vacc[i][j]);
    for (int k = KB; k < K; ++k) {
#else
    for (int k = 0; k < K; ++k) {
#endif
        float a[TM], b[TN];
        #pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = arow[i][k];
        #pragma unroll
        for (int j = 0; j < TN; ++j) b[j] = brow[j][k];
        #pragma unroll
        for (int i = 0; i < TM; ++i)
            #pragma unroll
            for (int j = 0; j < TN; ++j)
                acc[i][j] += a[i] * b[j];
    }
#endif /* FLOAT_CPU_AVX512 */
#endif /* USE_LOCAL */

    #pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = bm + ty + i * WG_M;
        #pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = bn + tx + j * WG_N;
            if (m < M && n < N)
                C[(size_t)m * N + n] = acc[i][j];
        }
    }
}
