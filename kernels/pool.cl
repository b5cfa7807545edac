/* Max-pooling of NHWC images: packed bits (maxpool_bits) and plain values (maxpool).
 *
 * Window geometry is espresso_cl.geometry.ConvGeometry's: output (oy, ox) covers input rows
 * oy * STRIDE - PAD_TOP + [0, KH) and columns ox * STRIDE - PAD_LEFT + [0, KW). Taps outside
 * the image are skipped rather than read as a value, so 'same' padding can neither win nor
 * lose a max; ConvGeometry guarantees every window holds at least one tap.
 * Grid dimension 2 runs over N * OH (image n, output row oy).
 */
#include "common.h"

#ifndef IN_T
#define IN_T float      /* element type of maxpool: float or int */
#endif

/* The taps of output (oy, ox) clipped to the image: rows [s0, s1), columns [s2, s3). */
int4 pool_window(const int oy, const int ox, const int H, const int W,
                 const int KH, const int KW, const int STRIDE,
                 const int PAD_TOP, const int PAD_LEFT)
{
    const int y = oy * STRIDE - PAD_TOP, x = ox * STRIDE - PAD_LEFT;
    return (int4)(max(y, 0), min(y + KH, H), max(x, 0), min(x + KW, W));
}

/* Binary max-pool on packed bits. Over +-1 values with bit 1 = +1, max is OR and min is AND.
 * Min is needed where a folded batch-norm + sign with negative gamma was moved before the
 * pool (conv -> pool -> BN -> sign run as conv -> BN + sign -> pool): those channels have
 * their bit set in and_mask. Pad bits are 0 in every input word, so they stay 0 either way.
 * x: N x H x W x RW words, and_mask: RW words, out: N x OH x OW x RW words; RW counts word_t.
 * Launch: global (RW, OW, N * OH), one work-item per output word.
 */
__kernel void maxpool_bits(const int N, const int H, const int W, const int RW,
                           const int OH, const int OW, const int KH, const int KW,
                           const int STRIDE, const int PAD_TOP, const int PAD_LEFT,
                           __global const word_t *restrict x,
                           __global const word_t *restrict and_mask,
                           __global word_t *restrict out)
{
    const int w = get_global_id(0), ox = get_global_id(1), noy = get_global_id(2);
    if (w >= RW || ox >= OW || noy >= N * OH) return;
    const int n = noy / OH, oy = noy % OH;
    const int4 win = pool_window(oy, ox, H, W, KH, KW, STRIDE, PAD_TOP, PAD_LEFT);
    const __global word_t *image = x + (size_t)n * H * W * RW + w;
    word_t any = 0, all = ~(word_t)0;
    for (int y = win.s0; y < win.s1; ++y)
        for (int xx = win.s2; xx < win.s3; ++xx) {
            const word_t v = image[((size_t)y * W + xx) * RW];
            any |= v;
            all &= v;
        }
    /* bitselect takes its second operand where the mask bit is set. */
    out[((size_t)noy * OW + ox) * RW + w] = bitselect(any, all, and_mask[w]);
}

/* Max-pool of IN_T values. x: N x H x W x C, out: N x OH x OW x C.
 * Launch: global (C, OW, N * OH), one work-item per output value.
 */
__kernel void maxpool(const int N, const int H, const int W, const int C,
                      const int OH, const int OW, const int KH, const int KW,
                      const int STRIDE, const int PAD_TOP, const int PAD_LEFT,
                      __global const IN_T *restrict x,
                      __global IN_T *restrict out)
{
    const int c = get_global_id(0), ox = get_global_id(1), noy = get_global_id(2);
    if (c >= C || ox >= OW || noy >= N * OH) return;
    const int n = noy / OH, oy = noy % OH;
    const int4 win = pool_window(oy, ox, H, W, KH, KW, STRIDE, PAD_TOP, PAD_LEFT);
    const __global IN_T *image = x + (size_t)n * H * W * C + c;
    /* Starting from a real tap needs no type-specific lowest value. */
    IN_T best = image[((size_t)win.s0 * W + win.s2) * C];
    for (int y = win.s0; y < win.s1; ++y)
        for (int xx = win.s2; xx < win.s3; ++xx)
            best = max(best, image[((size_t)y * W + xx) * C]);
    out[((size_t)noy * OW + ox) * C + c] = best;
}
