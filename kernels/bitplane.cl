/* First layer on 8-bit pixels with binary weights, exact by bit-plane decomposition.
 *
 * A pixel value is x = sum over p of 2^p * x_p with x_p = bit p of x (0 or 1), so against
 * +-1 weights w: dot(x, w) = sum_p 2^p * (2 * popcount(x_p & w) - popcount(x_p)),
 * where w's set bits are +1 (common.h). Pad bits are 0 in x_p and w alike and never count.
 */
#include "common.h"

#ifndef TP
#define TP 4            /* output pixels per work-item (register block) */
#endif
#ifndef TOC
#define TOC 4           /* output channels per work-item */
#endif
#ifndef WG_P
#define WG_P 8
#endif
#ifndef WG_OC
#define WG_OC 8
#endif

#define BP (WG_P * TP)
#define BOC (WG_OC * TOC)
#define PLANES 8

/* x: N x H x W x C uint8 -> planes: N x XH x XW pixels of PLANES x RW 32-bit words, plane p
 * packed along C like activations (bit c of a word = bit p of channel c), pad bits 0.
 * Frame pixel (fy, fx) is image pixel (fy - pad_top, fx - pad_left), or a padded pixel: value
 * 0, every plane 0, so it adds 0 (zero padding, exact) and the convolution needs no bounds test.
 * Launch: global (RW, N * XH * XW), one work-item per word of every plane. */
__kernel void bitplane_pack(const int N, const int H, const int W, const int C, const int RW,
                            const int XH, const int XW, const int pad_top, const int pad_left,
                            __global const uchar *restrict x,
                            __global uint *restrict planes)
{
    const int k = get_global_id(0), f = get_global_id(1);
    if (k >= RW || f >= N * XH * XW) return;
    const int n = f / (XH * XW), r = f - n * (XH * XW), fy = r / XW, fx = r - fy * XW;
    const int iy = fy - pad_top, ix = fx - pad_left;
    uint word[PLANES];
    for (int p = 0; p < PLANES; ++p) word[p] = 0u;
    if ((uint)iy < (uint)H && (uint)ix < (uint)W) {
        const size_t at = (((size_t)n * H + iy) * W + ix) * C + k * 32;
        const int nbits = clamp(C - k * 32, 0, 32);
        for (int b = 0; b < nbits; ++b) {
            const uint v = x[at + b];
            for (int p = 0; p < PLANES; ++p)
                word[p] |= ((v >> p) & 1u) << b;
        }
    }
    __global uint *out = planes + (size_t)f * PLANES * RW + k;
    for (int p = 0; p < PLANES; ++p)
        out[p * RW] = word[p];
}

/* planes: N x XH x XW pixels of PLANES x CW words (bitplane_pack's frame), w: OC x KH x KW x CW
 * words, out: N x OH x OW x OC int32. The tiling is bconv2d.cl's (caches only): work-item
 * (tx, ty) owns pixels bp + ty + i * WG_P and channels boc + tx + j * WG_OC; each weight word
 * it loads serves all PLANES planes.
 * Launch: global (ceil(OC / BOC) * WG_OC, ceil(NP / BP) * WG_P), local (WG_OC, WG_P). */
__kernel __attribute__((reqd_work_group_size(WG_OC, WG_P, 1)))
void bitplane_conv2d(const int N, const int OC, const int KH, const int KW,
                     const int OH, const int OW, const int stride, const int XH, const int XW,
                     const int CW,
                     __global const word_t *restrict planes,
                     __global const word_t *restrict w,
                     __global int *restrict out)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int boc = get_group_id(0) * BOC, bp = get_group_id(1) * BP;
    const int NP = N * OH * OW, PIX = PLANES * CW, KQ = KH * KW * CW;
    const size_t ROW = (size_t)XW * PIX;

    /* PoCL leaves the register-block loops rolled (acc in memory) unless told to unroll. */
    size_t start[TP];
    #pragma unroll
    for (int i = 0; i < TP; ++i) {
        const int p = min(bp + ty + i * WG_P, NP - 1);
        const int n = p / (OH * OW), r = p - n * (OH * OW), oy = r / OW, ox = r - oy * OW;
        start[i] = ((size_t)n * XH + oy * stride) * ROW + (size_t)ox * stride * PIX;
    }
    const __global word_t *wrow[TOC];
    #pragma unroll
    for (int j = 0; j < TOC; ++j)
        wrow[j] = w + (size_t)min(boc + tx + j * WG_OC, OC - 1) * KQ;

    /* acc: sum of 2^p * popcount(x_p & w); ones: sum of 2^p * popcount(x_p), shared by channels. */
    int acc[TP][TOC], ones[TP];
    #pragma unroll
    for (int i = 0; i < TP; ++i) {
        ones[i] = 0;
        #pragma unroll
        for (int j = 0; j < TOC; ++j)
            acc[i][j] = 0;
    }

    for (int ky = 0; ky < KH; ++ky)
        for (int kx = 0; kx < KW; ++kx) {
            const __global word_t *xp[TP];
            #pragma unroll
            for (int i = 0; i < TP; ++i) xp[i] = planes + start[i] + ky * ROW + kx * PIX;
            const int wq = (ky * KW + kx) * CW;
            for (int k = 0; k < CW; ++k) {
                word_t b[TOC];
                #pragma unroll
                for (int j = 0; j < TOC; ++j) b[j] = wrow[j][wq + k];
                #pragma unroll
                for (int p = 0; p < PLANES; ++p) {
                    word_t a[TP];
                    #pragma unroll
                    for (int i = 0; i < TP; ++i) {
                        a[i] = xp[i][p * CW + k];
                        ones[i] += POPC(a[i]) << p;
                    }
                    #pragma unroll
                    for (int i = 0; i < TP; ++i)
                        #pragma unroll
                        for (int j = 0; j < TOC; ++j)
                            acc[i][j] += POPC(a[i] & b[j]) << p;
                }
            }
        }

    #pragma unroll
    for (int i = 0; i < TP; ++i) {
        const int p = bp + ty + i * WG_P;
        #pragma unroll
        for (int j = 0; j < TOC; ++j) {
            const int oc = boc + tx + j * WG_OC;
            if (p < NP && oc < OC)
                out[(size_t)p * OC + oc] = 2 * acc[i][j] - ones[i];
        }
    }
}
