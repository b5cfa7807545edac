/* Binary direct 2-D convolution on packed NHWC activations (bit layout in common.h).
 *
 * x: N x H x W pixels of CW words (C channels each), w: OC x KH x KW x CW words,
 * out: N x OH x OW x OC int32, the sum over the window's taps of dot(pixel, weights).
 * Taps outside the image follow ONE_PAD:
 *  0  zero padding, exact: a padded tap adds 0. The main loop reads a padded pixel as 0
 *     words, which adds popcount(w) to the XOR count; the epilogue takes those back off
 *     and counts only the valid taps: out = valid_taps * C - 2 * popcount(x ^ w).
 *  1  the padded pixel is all +1: every channel bit set, pad bits still 0 so they never count.
 *
 * This is bgemm.cl's product with rows = the NP = N * OH * OW output pixels, columns = the
 * OC channels and a K axis of KQ = KH * KW * CW words read through the window.
 * Launch: global (ceil(OC / BOC) * WG_OC, ceil(NP / BP) * WG_P), local (WG_OC, WG_P).
 * Work-item (tx, ty) owns pixels bp + ty + i * WG_P and channels boc + tx + j * WG_OC, so
 * neighbouring work-items store neighbouring channels of a pixel.
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
#ifndef USE_LOCAL
#define USE_LOCAL 0     /* 1: stage tiles of the window and the weights in local memory (GPUs) */
#endif
#ifndef TK
#define TK 16           /* words per local tile along K */
#endif

#define BP (WG_P * TP)
#define BOC (WG_OC * TOC)
/* One spare column keeps the rows of a local tile on different banks. */
#define TK_PAD (TK + 1)

/* Word k of a padded pixel: the channel bits of a row of C channels when one_pad, else 0. */
word_t pad_word(const int k, const int C, const int one_pad)
{
    const int n = C - k * WORD_BITS;
    const word_t ones = n >= WORD_BITS ? ~(word_t)0 : n > 0 ? ((word_t)1 << n) - 1 : (word_t)0;
    return one_pad ? ones : (word_t)0;
}

__kernel __attribute__((reqd_work_group_size(WG_OC, WG_P, 1)))
void bconv2d(const int N, const int H, const int W, const int C,
             const int OC, const int KH, const int KW, const int OH, const int OW,
             const int stride, const int pad_top, const int pad_left,
             const int CW, const int one_pad,
             __global const word_t *restrict x,
             __global const word_t *restrict w,
             __global int *restrict out)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int boc = get_group_id(0) * BOC, bp = get_group_id(1) * BP;
    const int NP = N * OH * OW, KQ = KH * KW * CW;

    /* Each pixel's window: top-left input row and column, and the index of its image's first row.
     * Pixels past the edge take pixel NP-1 (in bounds); their results are not stored. */
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

    int acc[TP][TOC];
    for (int i = 0; i < TP; ++i)
        for (int j = 0; j < TOC; ++j)
            acc[i][j] = 0;

#if USE_LOCAL
    __local word_t As[BP][TK_PAD];
    __local word_t Bs[BOC][TK_PAD];
    __local int ly0[BP], lx0[BP], lrow0[BP];
    if (tx == 0)
        for (int i = 0; i < TP; ++i) {
            ly0[ty + i * WG_P] = iy0[i];
            lx0[ty + i * WG_P] = ix0[i];
            lrow0[ty + i * WG_P] = row0[i];
        }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int lid = ty * WG_OC + tx;
    for (int q0 = 0; q0 < KQ; q0 += TK) {
        /* Words past KQ are 0 in both tiles: 0 ^ 0 adds nothing. */
        for (int idx = lid; idx < BP * TK; idx += WG_P * WG_OC) {
            const int r = idx / TK, q = q0 + idx % TK;
            word_t v = 0;
            if (q < KQ) {
                const int tap = q / CW, k = q - tap * CW, ky = tap / KW, kx = tap - ky * KW;
                const int iy = ly0[r] + ky, ix = lx0[r] + kx;
                v = ((uint)iy < (uint)H && (uint)ix < (uint)W)
                    ? x[((size_t)(lrow0[r] + iy) * W + ix) * CW + k] : pad_word(k, C, one_pad);
            }
            As[r][idx % TK] = v;
        }
        for (int idx = lid; idx < BOC * TK; idx += WG_P * WG_OC) {
            const int r = idx / TK, q = q0 + idx % TK, oc = boc + r;
            Bs[r][idx % TK] = (oc < OC && q < KQ) ? w[(size_t)oc * KQ + q] : (word_t)0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TK; ++kk) {
            word_t a[TP], b[TOC];
            for (int i = 0; i < TP; ++i) a[i] = As[ty + i * WG_P][kk];
            for (int j = 0; j < TOC; ++j) b[j] = Bs[tx + j * WG_OC][kk];
            for (int i = 0; i < TP; ++i)
                for (int j = 0; j < TOC; ++j)
                    acc[i][j] += POPC(a[i] ^ b[j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#else
    for (int ky = 0; ky < KH; ++ky) {
        for (int kx = 0; kx < KW; ++kx) {
            /* A padded tap reads word k of pixel 0 (in bounds) and replaces it. */
            int inside[TP];
            const __global word_t *xp[TP];
            for (int i = 0; i < TP; ++i) {
                const int iy = iy0[i] + ky, ix = ix0[i] + kx;
                inside[i] = (uint)iy < (uint)H && (uint)ix < (uint)W;
                xp[i] = x + (inside[i] ? ((size_t)(row0[i] + iy) * W + ix) * CW : 0);
            }
            const int wq = (ky * KW + kx) * CW;
            for (int k = 0; k < CW; ++k) {
                const word_t pad = pad_word(k, C, one_pad);
                word_t a[TP], b[TOC];
                for (int i = 0; i < TP; ++i) a[i] = inside[i] ? xp[i][k] : pad;
                for (int j = 0; j < TOC; ++j) b[j] = wrow[j][wq + k];
                for (int i = 0; i < TP; ++i)
                    for (int j = 0; j < TOC; ++j)
                        acc[i][j] += POPC(a[i] ^ b[j]);
            }
        }
    }
#endif

    if (!one_pad)
        for (int ky = 0; ky < KH; ++ky)
            for (int kx = 0; kx < KW; ++kx) {
                int padded[TP], any = 0;
                for (int i = 0; i < TP; ++i) {
                    padded[i] = (uint)(iy0[i] + ky) >= (uint)H || (uint)(ix0[i] + kx) >= (uint)W;
                    any |= padded[i];
                }
                if (!any)
                    continue;
                const int wq = (ky * KW + kx) * CW;
                for (int k = 0; k < CW; ++k)
                    for (int j = 0; j < TOC; ++j) {
                        const int pw = POPC(wrow[j][wq + k]);
                        for (int i = 0; i < TP; ++i)
                            acc[i][j] -= padded[i] ? pw : 0;
                    }
            }

    for (int i = 0; i < TP; ++i) {
        /* Rows and columns of the window inside the image. */
        const int ry = min(H, iy0[i] + KH) - max(0, iy0[i]);
        const int rx = min(W, ix0[i] + KW) - max(0, ix0[i]);
        const int taps = one_pad ? KH * KW : ry * rx;
        const int p = bp + ty + i * WG_P;
        for (int j = 0; j < TOC; ++j) {
            const int oc = boc + tx + j * WG_OC;
            if (p < NP && oc < OC)
                out[(size_t)p * OC + oc] = taps * C - 2 * acc[i][j];
        }
    }
}
