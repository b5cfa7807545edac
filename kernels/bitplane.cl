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

/* x: PIXELS x C uint8 -> planes: PIXELS x PLANES x RW 32-bit words, plane p packed along C
 * like activations (bit c of a word = bit p of channel c), pad bits 0.
 * Launch: global (RW, PIXELS), one work-item per word of every plane. */
__kernel void bitplane_pack(const int PIXELS, const int C, const int RW,
                            __global const uchar *restrict x,
                            __global uint *restrict planes)
{
    const int wi = get_global_id(0), pix = get_global_id(1);
    if (wi >= RW || pix >= PIXELS) return;
    const __global uchar *xr = x + (size_t)pix * C + wi * 32;
    const int nbits = clamp(C - wi * 32, 0, 32);
    uint word[PLANES];
    for (int p = 0; p < PLANES; ++p) word[p] = 0u;
    for (int b = 0; b < nbits; ++b) {
        const uint v = xr[b];
        for (int p = 0; p < PLANES; ++p)
            word[p] |= ((v >> p) & 1u) << b;
    }
    __global uint *out = planes + (size_t)pix * PLANES * RW + wi;
    for (int p = 0; p < PLANES; ++p)
        out[p * RW] = word[p];
}

/* planes: N x H x W pixels of PLANES x CW words (from bitplane_pack), w: OC x KH x KW x CW words,
 * out: N x OH x OW x OC int32. Zero padding: a padded pixel is 0 in every plane and adds 0.
 * The tiling is bconv2d.cl's (caches only): work-item (tx, ty) owns pixels bp + ty + i * WG_P
 * and channels boc + tx + j * WG_OC; each weight word it loads serves all PLANES planes.
 * Launch: global (ceil(OC / BOC) * WG_OC, ceil(NP / BP) * WG_P), local (WG_OC, WG_P). */
__kernel __attribute__((reqd_work_group_size(WG_OC, WG_P, 1)))
void bitplane_conv2d(const int N, const int H, const int W, const int C,
                     const int OC, const int KH, const int KW, const int OH, const int OW,
                     const int stride, const int pad_top, const int pad_left,
                     const int CW,
                     __global const word_t *restrict planes,
                     __global const word_t *restrict w,
                     __global int *restrict out)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int boc = get_group_id(0) * BOC, bp = get_group_id(1) * BP;
    const int NP = N * OH * OW, KQ = KH * KW * CW;

    int iy0[TP], ix0[TP], row0[TP];
    for (int i = 0; i < TP; ++i) {
        const int p = min(bp + ty + i * WG_P, NP - 1);
        const int n = p / (OH * OW), r = p - n * (OH * OW), oy = r / OW, ox = r - oy * OW;
        iy0[i] = oy * stride - pad_top;
        ix0[i] = ox * stride - pad_left;
        row0[i] = n * H;
    }
    const __global word_t *wrow[TOC];
    for (int j = 0; j < TOC; ++j)
        wrow[j] = w + (size_t)min(boc + tx + j * WG_OC, OC - 1) * KQ;

    /* acc: sum of 2^p * popcount(x_p & w); ones: sum of 2^p * popcount(x_p), shared by channels. */
    int acc[TP][TOC], ones[TP];
    for (int i = 0; i < TP; ++i) {
        ones[i] = 0;
        for (int j = 0; j < TOC; ++j)
            acc[i][j] = 0;
    }

    for (int ky = 0; ky < KH; ++ky) {
        for (int kx = 0; kx < KW; ++kx) {
            /* A padded tap reads pixel 0 (in bounds) and replaces it by 0. */
            int inside[TP];
            const __global word_t *xp[TP];
            for (int i = 0; i < TP; ++i) {
                const int iy = iy0[i] + ky, ix = ix0[i] + kx;
                inside[i] = (uint)iy < (uint)H && (uint)ix < (uint)W;
                xp[i] = planes + (inside[i] ? ((size_t)(row0[i] + iy) * W + ix) * PLANES * CW : 0);
            }
            const int wq = (ky * KW + kx) * CW;
            for (int k = 0; k < CW; ++k) {
                word_t b[TOC];
                for (int j = 0; j < TOC; ++j) b[j] = wrow[j][wq + k];
                for (int p = 0; p < PLANES; ++p) {
                    word_t a[TP];
                    for (int i = 0; i < TP; ++i) {
                        a[i] = inside[i] ? xp[i][p * CW + k] : (word_t)0;
                        ones[i] += POPC(a[i]) << p;
                    }
                    for (int i = 0; i < TP; ++i)
                        for (int j = 0; j < TOC; ++j)
                            acc[i][j] += POPC(a[i] & b[j]) << p;
                }
            }
        }
    }

    for (int i = 0; i < TP; ++i) {
        const int p = bp + ty + i * WG_P;
        for (int j = 0; j < TOC; ++j) {
            const int oc = boc + tx + j * WG_OC;
            if (p < NP && oc < OC)
                out[(size_t)p * OC + oc] = 2 * acc[i][j] - ones[i];
        }
    }
}
