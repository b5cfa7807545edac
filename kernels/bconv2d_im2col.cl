/* Binary convolution as window rows (im2col) multiplied by the XNOR GEMM: what the CPU
 * profiles run where the blocks kernel (bconv2d_cpu.cl) is not preferred. Bit layout in
 * common.h; the launcher is espresso_cl/ops/conv.py.
 */
#include "common.h"

/* bconv2d_im2col copies each output pixel's window into one row of KQ = KH * KW * CW words,
 * taps in the weights' order (ky, kx), each tap the pixel's CW words as stored (channels
 * padded to whole words with 0 bits). Rows and weights then share a layout, so the product is
 * bgemm with K = KH * KW * C. A padded tap is written as the one_pad pattern (all +1, pad
 * bits 0: exact) or, for zero padding, as 0 words, i.e. all -1, which adds -sum(w_tap) to
 * the dot product instead of 0; bconv2d_fixup adds it back, sum(w_tap) = 2 * popcount(w_tap)
 * - C (computed by bconv2d_im2col), on the border pixels only. */

/* x: N x H x W pixels of CW words -> cols: rows p0 .. p0 + rows - 1 of the NP = N * OH * OW
 * output pixels, KH * KW * CW words each. Work-items past the rows, when nsums > 0, fill
 * sums: KH * KW x OC, the sum of each tap's +-1 weights, 2 * popcount(w_tap) - C, for
 * bconv2d_fixup (one launch fewer). Launch: global (rows + nsums), nsums = 0 or OC * KH * KW. */
__kernel void bconv2d_im2col(const int H, const int W, const int C, const int CW,
                             const int KH, const int KW, const int OH, const int OW,
                             const int stride, const int pad_top, const int pad_left,
                             const int one_pad, const int p0, const int rows, const int nsums,
                             const int OC,
                             __global const word_t *restrict x,
                             __global word_t *restrict cols,
                             __global const word_t *restrict w,
                             __global int *restrict sums)
{
    const int r = get_global_id(0);
    if (r >= rows) {
        const int i = r - rows;  /* i = tap * OC + o */
        if (i >= nsums) return;
        const int t = i / OC, o = i - t * OC;
        const __global word_t *tw = w + ((size_t)o * KH * KW + t) * CW;
        int ones = 0;
        for (int k = 0; k < CW; ++k)
            ones += POPC(tw[k]);
        sums[i] = 2 * ones - C;
        return;
    }
    const int p = p0 + r, n = p / (OH * OW), s = p - n * (OH * OW), oy = s / OW, ox = s - oy * OW;
    const int iy0 = oy * stride - pad_top, ix0 = ox * stride - pad_left;
    __global word_t *row = cols + (size_t)r * KH * KW * CW;
    for (int ky = 0; ky < KH; ++ky) {
        const int iy = iy0 + ky;
        for (int kx = 0; kx < KW; ++kx, row += CW) {
            const int ix = ix0 + kx;
            if ((uint)iy < (uint)H && (uint)ix < (uint)W) {
                const __global word_t *px = x + (((size_t)n * H + iy) * W + ix) * CW;
                for (int k = 0; k < CW; ++k)
                    row[k] = px[k];
            } else {
                for (int k = 0; k < CW; ++k) {
                    const int bits = C - k * WORD_BITS;
                    row[k] = !one_pad ? (word_t)0 : bits >= WORD_BITS ? ~(word_t)0
                             : bits > 0 ? ((word_t)1 << bits) - (word_t)1 : (word_t)0;
                }
            }
        }
    }
}

/* dst[offset + i] = src[i] for i < count: a chunk's product into the whole output (a kernel,
 * not clEnqueueCopyBuffer, whose copies Oclgrind's uninitialized-value check does not follow).
 * Launch: global (count). */
__kernel void bconv2d_place(const int count, const int offset,
                            __global const int *restrict src,
                            __global int *restrict dst)
{
    const int i = get_global_id(0);
    if (i < count)
        dst[(size_t)offset + i] = src[i];
}

/* out: N x OH x OW x OC, bgemm's result over zero-padded taps written as -1 -> adds back
 * sums[tap][oc] for each padded tap of the border pixels. The windows of output rows
 * [oy_lo, oy_hi) and columns [ox_lo, ox_hi) stay inside the image; the NB border pixels of an
 * image are the rows above, then the left and right columns of the rows between, then the rows
 * below. Launch: global (N * NB), one work-item per border pixel, all OC channels. */
__kernel void bconv2d_fixup(const int N, const int H, const int W, const int OC,
                            const int KH, const int KW, const int OH, const int OW,
                            const int stride, const int pad_top, const int pad_left,
                            const int oy_lo, const int oy_hi, const int ox_lo, const int ox_hi,
                            const int NB,
                            __global const int *restrict sums,
                            __global int *restrict out)
{
    const int g = get_global_id(0);
    if (g >= N * NB) return;
    const int n = g / NB;
    int b = g - n * NB, oy, ox;
    const int top = oy_lo * OW, side = ox_lo + OW - ox_hi, middle = (oy_hi - oy_lo) * side;
    if (b < top) {
        oy = b / OW;
        ox = b - oy * OW;
    } else if (b - top < middle) {
        b -= top;
        const int j = b % side;
        oy = oy_lo + b / side;
        ox = j < ox_lo ? j : ox_hi + (j - ox_lo);
    } else {
        b -= top + middle;
        oy = oy_hi + b / OW;
        ox = b - (oy - oy_hi) * OW;
    }
    const int iy0 = oy * stride - pad_top, ix0 = ox * stride - pad_left;
    __global int *o = out + (((size_t)n * OH + oy) * OW + ox) * OC;
    for (int ky = 0; ky < KH; ++ky) {
        const int row_in = (uint)(iy0 + ky) < (uint)H;
        for (int kx = 0; kx < KW; ++kx) {
            if (row_in && (uint)(ix0 + kx) < (uint)W)
                continue;
            const __global int *s = sums + (size_t)(ky * KW + kx) * OC;
            for (int c = 0; c < OC; ++c)
                o[c] += s[c];
        }
    }
}
