/* float32 GEMM of the same structure as bgemm.cl: C[m][n] = sum_k A[m][k] * B[n][k].
 * A: M x K (activations), B: N x K (weights, one row per output unit), C: M x N.
 * Float layers use it, and so does the float mode that is the same-device baseline.
 *
 * Launch: global (ceil(N / BN) * WG_N, ceil(M / BM) * WG_M), local (WG_N, WG_M).
 */
#ifndef TM
#define TM 4
#endif
#ifndef TN
#define TN 4
#endif
#ifndef WG_M
#define WG_M 8
#endif
#ifndef WG_N
#define WG_N 8
#endif
#ifndef USE_LOCAL
#define USE_LOCAL 0
#endif
#ifndef TK
#define TK 16
#endif

#define BM (WG_M * TM)
#define BN (WG_N * TN)
#define TK_PAD (TK + 1)

__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void fgemm(const int M, const int N, const int K,
           __global const float *restrict A,
           __global const float *restrict B,
           __global float *restrict C)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int bn = get_group_id(0) * BN, bm = get_group_id(1) * BM;
    float acc[TM][TN];
    for (int i = 0; i < TM; ++i)
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
            for (int i = 0; i < TM; ++i) a[i] = As[ty + i * WG_M][kk];
            for (int j = 0; j < TN; ++j) b[j] = Bs[tx + j * WG_N][kk];
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j)
                    acc[i][j] = mad(a[i], b[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#else
    const __global float *arow[TM];
    const __global float *brow[TN];
    for (int i = 0; i < TM; ++i)
        arow[i] = A + (size_t)min(bm + ty + i * WG_M, M - 1) * K;
    for (int j = 0; j < TN; ++j)
        brow[j] = B + (size_t)min(bn + tx + j * WG_N, N - 1) * K;
    for (int k = 0; k < K; ++k) {
        float a[TM], b[TN];
        for (int i = 0; i < TM; ++i) a[i] = arow[i][k];
        for (int j = 0; j < TN; ++j) b[j] = brow[j][k];
        for (int i = 0; i < TM; ++i)
            for (int j = 0; j < TN; ++j)
                acc[i][j] = mad(a[i], b[j], acc[i][j]);
    }
#endif

    for (int i = 0; i < TM; ++i) {
        const int m = bm + ty + i * WG_M;
        for (int j = 0; j < TN; ++j) {
            const int n = bn + tx + j * WG_N;
            if (m < M && n < N)
                C[(size_t)m * N + n] = acc[i][j];
        }
    }
}
