/* bconv2d_igemm.cl's implicit GEMM (igemm.h), then the folded batch-norm + sign
 * (ops.threshold), packed, in one launch. Arguments and launch as bconv2d_igemm, plus: */
#include "igemm.h"

/* thresh, flip: OC int32 each; out: NP pixels of RWO 32-bit words (common.h's packed rows):
 * bit c of a pixel is value <= thresh[c] where flip[c], else value >= thresh[c]. The group's
 * BM x BN results meet in local memory, then each work-item packs whole words of a pixel.
 * BN must be a multiple of 64 (the registry runs this kernel only then): a group then owns
 * whole 32-bit words, and the last group also writes the row's pad word (0). (BN_WORDS rounds
 * up only so that the file builds with any profile's tiles.) */
#define BN_WORDS ((BN + 31) / 32)
__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bconv2d_igemm_threshold(const int N, const int H, const int W, const int C,
                             const int OC, const int KH, const int KW, const int OH, const int OW,
                             const int stride, const int pad_top, const int pad_left,
                             const int CW, const int one_pad, const int RWO,
                             __global const word_t *restrict x,
                             __global const word_t *restrict w,
                             __global const int *restrict thresh,
                             __global const int *restrict flip,
                             __global uint *restrict out)
{
    TILE_ITEM(bp, boc);
    IGEMM_PRODUCT(acc, valid_bits);
    __local int values[BM][BN + 1];
    TILE_EACH(values[ty + i * WG_M][tx + j * WG_N] = IGEMM_VALUE);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = lid; e < BM * BN_WORDS; e += WG_M * WG_N) {
        const int r = e / BN_WORDS, q = e % BN_WORDS, p = bp + r, word = boc / 32 + q;
        if (p >= NP || word >= RWO)
            continue;
        uint bits = 0;
        for (int b = 0; b < 32; ++b) {
            const int c = word * 32 + b;
            if (c < OC) {
                const int v = values[r][q * 32 + b];
                bits |= (uint)(flip[c] ? v <= thresh[c] : v >= thresh[c]) << b;
            }
        }
        out[(size_t)p * RWO + word] = bits;
    }
}
