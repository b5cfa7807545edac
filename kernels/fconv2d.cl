/* float32 direct 2-D convolution of the same structure as bconv2d.cl.
 *
 * x: N x H x W x C, w: OC x KH x KW x C, out: N x OH x OW x OC. Taps outside the image read
 * 0.0, or 1.0 when one_pad (the float twin of bconv2d's 'one' padding), so the float mode of
 * a binary network computes what the binary kernels do.
 *
 * fconv2d_pad first copies the image into the XH x XW frame that the windows cover, padded
 * pixels included, so that the convolution reads every window row as one run of KW * C
 * floats with no bounds test (the launcher skips it when nothing is padded).
 *
 * KV > 1 (CPUs): as fgemm.cl, each window row and each filter row is contiguous, so the
 * work-item's TM x TN dot products run on float vectors of KV lanes along the row (AVX2 FMAs
 * with KV = 8 on PoCL), the last RUN % KV products of each row one by one. Products are
 * written a * b + c (clang contracts them to FMAs; PoCL does not inline mad() or min()).
 * ESPRESSO_AVX512 (the "cpu-avx512" profile): one call of float_cpu.h's AVX-512 TM x 6 tile
 * (TN = 6, TM <= 4) with the KH window rows as its segments.
 */
#include "tiles.h"
#include "float_cpu.h"


#if FLOAT_CPU_AVX512 && !USE_LOCAL && (TN != FLOAT_CPU_COLS || TM > 4)
#error "the AVX-512 tile is TM x 6 with TM <= 4"
#endif


/* x: N x H x W x C -> framed: N x XH x XW x C, frame pixel (fy, fx) being image pixel
 * (fy - pad_top, fx - pad_left), or a padded pixel of 1.0 (one_pad) or 0.0.
 * Each work-item copies PAD_C consecutive channels of one pixel (1 on GPUs, where neighbouring
 * work-items then read neighbouring floats; more on CPUs, where a work-item's index arithmetic
 * would otherwise cost more than its one float).
 * Launch: global (ceil(C / PAD_C), N * XH * XW). */
#ifndef PAD_C
#define PAD_C 1
#endif
__kernel void fconv2d_pad(const int N, const int H, const int W, const int C,
                          const int XH, const int XW, const int pad_top, const int pad_left,
                          const int one_pad,
                          __global const float *restrict x,
                          __global float *restrict framed)
{
    const int c0 = get_global_id(0) * PAD_C, f = get_global_id(1);
    if (c0 >= C || f >= N * XH * XW) return;
    const int n = f / (XH * XW), r = f - n * (XH * XW), fy = r / XW, fx = r - fy * XW;
    const int iy = fy - pad_top, ix = fx - pad_left;
    __global float *dst = framed + (size_t)f * C;
#if PAD_C == 1
    dst[c0] = ((uint)iy < (uint)H && (uint)ix < (uint)W)
              ? x[(((size_t)n * H + iy) * W + ix) * C + c0] : (one_pad ? 1.0f : 0.0f);
#else
    const int c1 = C - c0 < PAD_C ? C : c0 + PAD_C;
    if ((uint)iy < (uint)H && (uint)ix < (uint)W) {
        const __global float *src = x + (((size_t)n * H + iy) * W + ix) * C;
        for (int c = c0; c < c1; ++c)
            dst[c] = src[c];
    } else {
        const float pad = one_pad ? 1.0f : 0.0f;
        for (int c = c0; c < c1; ++c)
            dst[c] = pad;
    }
#endif
}

/* framed: N x XH x XW x C (fconv2d_pad's frame, or x itself when unpadded).
 * Launch: global (ceil(OC / BN) * WG_N, ceil(NP / BM) * WG_M), local (WG_N, WG_M),
 * NP = N * OH * OW; work-item (tx, ty) owns pixels bp + ty + i * WG_M, channels boc + tx + j * WG_N. */
__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void fconv2d(const int N, const int C, const int OC, const int KH, const int KW,
             const int OH, const int OW, const int stride, const int XH, const int XW,
             __global const float *restrict framed,
             __global const float *restrict w,
             __global float *restrict out)
{
    TILE_ITEM(bp, boc);
    const int NP = N * OH * OW, RUN = KW * C, KQ = KH * RUN;
    const size_t ROW = (size_t)XW * C;

    /* PoCL leaves the register-block loops rolled (acc in memory) unless told to unroll. */
    size_t start[TM];
    #pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int p = bp + ty + i * WG_M < NP ? bp + ty + i * WG_M : NP - 1;
        const int n = p / (OH * OW), r = p - n * (OH * OW), oy = r / OW, ox = r - oy * OW;
        start[i] = ((size_t)n * XH + oy * stride) * ROW + (size_t)ox * stride * C;
    }

    float acc[TM][TN];
    TILE_EACH(acc[i][j] = 0.0f);

#if USE_LOCAL
    TILE_SHARE_ROWS(size_t, lstart, start);
    TILE_LOCAL_LOOP(float, acc, KQ,
                    k < KQ ? framed[lstart[r] + k / RUN * ROW + k % RUN] : 0.0f,
                    boc + r < OC && k < KQ ? w[(size_t)(boc + r) * KQ + k] : 0.0f,
                    PRODUCT);
#else
    const __global float *wrow[TN];
    TILE_COLS(wrow, w, boc, OC, KQ);
#if FLOAT_CPU_AVX512
    const __global float *xr[TM];
    #pragma unroll
    for (int i = 0; i < TM; ++i) xr[i] = framed + start[i];
    float tile[TM * TN];
    FLOAT_TILE_CALL(TM)(xr, wrow, KH, RUN, (int)ROW, RUN, tile);
    TILE_EACH(acc[i][j] = tile[i * TN + j]);
#else
#if KV > 1
    fkv_vec vacc[TM][TN];
    TILE_EACH(vacc[i][j] = (fkv_vec)(0.0f));
    const int RB = RUN - RUN % KV;
#endif
    for (int ky = 0; ky < KH; ++ky) {
        const __global float *xr[TM];
        #pragma unroll
        for (int i = 0; i < TM; ++i) xr[i] = framed + start[i] + ky * ROW;
        const int wq = ky * RUN;
#if KV > 1
        for (int q = 0; q < RB; q += KV)
            VBLOCK_STEP(fkv_vec, TM, TN, vacc, FKV_LOAD(xr[i] + q), FKV_LOAD(wrow[j] + wq + q), PRODUCT);
        for (int q = RB; q < RUN; ++q)
#else
        for (int q = 0; q < RUN; ++q)
#endif
            TILE_STEP(float, acc, xr[i][q], wrow[j][wq + q], PRODUCT);
    }
#if KV > 1
    TILE_EACH(acc[i][j] += fkv_hsum(vacc[i][j]));
#endif
#endif /* FLOAT_CPU_AVX512 */
#endif /* USE_LOCAL */

    TILE_STORE(out, NP, OC, bp, boc, acc[i][j]);
}
