/* Binary 2-D convolution as an implicit GEMM on bgemm.cl's local-memory tiles (GPU profile).
 *
 * x: N x H x W pixels of C channels packed in CW words (common.h), w: OC x KH x KW x C packed
 * the same way, out: N x OH x OW x OC int32, the sum over the window's taps of dot(pixel,
 * weights). The product is bgemm's with rows = the NP = N * OH * OW output pixels, columns =
 * the OC channels and K = the KQ = KH * KW * CW words of a window (taps in the weights' order
 * (ky, kx), each tap a pixel's CW words). Unlike bconv2d.cl there is neither an im2col buffer
 * nor a padded copy of the image: each TK-word tile of a group's BM windows is gathered
 * straight from x into local memory, with the padding made there.
 *
 * Padding, exact either way: one_pad = 1 reads a padded pixel as all +1 (channel bits set, pad
 * bits 0); one_pad = 0 must make a padded tap add 0, so each window word is staged with a mask,
 * all ones for image words and 0 for padded taps, and a term is popcount((x ^ w) & mask) (one
 * LOP3 on NVIDIA GPUs, as the plain XOR). A pixel's result is then valid_bits - 2 * count,
 * valid_bits = C times its valid taps (all KH * KW with one padding).
 *
 * Launch: global (ceil(OC / BN) * WG_N, ceil(NP / BM) * WG_M), local (WG_N, WG_M); work-item
 * (tx, ty) owns pixels bp + ty + i * WG_M and channels boc + tx + j * WG_N (tiles.h). The
 * result goes through IGEMM_VALUE, so that an epilogue (a fused threshold) can take it instead
 * of the int32 store (bconv2d_igemm_threshold.cl). The product is in igemm.h. Launcher:
 * espresso_cl/ops/conv.py.
 */
#include "igemm.h"

__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bconv2d_igemm(const int N, const int H, const int W, const int C,
                   const int OC, const int KH, const int KW, const int OH, const int OW,
                   const int stride, const int pad_top, const int pad_left,
                   const int CW, const int one_pad,
                   __global const word_t *restrict x,
                   __global const word_t *restrict w,
                   __global int *restrict out)
{
    TILE_ITEM(bp, boc);
    IGEMM_PRODUCT(acc, valid_bits);
    TILE_STORE(out, NP, OC, bp, boc, IGEMM_VALUE);
}
