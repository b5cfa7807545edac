/* First layer on 8-bit pixels with binary weights, exact by bit-plane decomposition.
 *
 * A pixel value is x = sum over p of 2^p * x_p with x_p = bit p of x (0 or 1), so against
 * +-1 weights w: dot(x, w) = sum_p 2^p * (2 * popcount(x_p & w) - popcount(x_p)),
 * where w's set bits are +1 (common.h). Pad bits are 0 in x_p and w alike and never count.
 *
 * The dot products run over whole windows: bitplane_pack cuts each output pixel's window
 * (KQB = KH * KW * C values, in the weights' order ky, kx, c) into PLANES bit-planes packed as
 * one row of RWP words, and bitplane_weights packs each filter the same way. A first layer has
 * few channels (3 for RGB), so packing per pixel would leave most of every word empty.
 */
#include "common.h"
#include "tiles.h"



/* x: N x H x W x C uint8 -> patches: N * OH * OW output pixels of RWP * PLANES 32-bit words.
 * Plane p of a window is packed like activations (bit t of the row = bit p of window value t,
 * pad bits 0), and the PLANES planes of each word_t k sit together: word_t k * PLANES + p of a
 * pixel's patch is word k of plane p. Taps outside the image are 0 in every plane, so they add
 * 0 (zero padding, exact). Launch: global (RWP, N * OH * OW), one work-item per 32-bit word. */
__kernel void bitplane_pack(const int N, const int H, const int W, const int C,
                            const int KH, const int KW, const int OH, const int OW,
                            const int stride, const int pad_top, const int pad_left, const int RWP,
                            __global const uchar *restrict x,
                            __global uint *restrict patches)
{
    const int k = get_global_id(0), p = get_global_id(1);
    if (k >= RWP || p >= N * OH * OW) return;
    const int n = p / (OH * OW), r = p - n * (OH * OW), oy = r / OW, ox = r - oy * OW;
    const int iy0 = oy * stride - pad_top, ix0 = ox * stride - pad_left;
    /* Window value t = k * 32 + b is channel c of tap (ky, kx); walk t without dividing. */
    const int t0 = k * 32, nbits = clamp(KH * KW * C - t0, 0, 32);
    int c = t0 % C, kx = t0 / C % KW, ky = t0 / C / KW;
    uint word[PLANES];
    for (int pl = 0; pl < PLANES; ++pl) word[pl] = 0u;
    for (int b = 0; b < nbits; ++b) {
        const int iy = iy0 + ky, ix = ix0 + kx;
        if ((uint)iy < (uint)H && (uint)ix < (uint)W) {
            const uint v = x[(((size_t)n * H + iy) * W + ix) * C + c];
            for (int pl = 0; pl < PLANES; ++pl)
                word[pl] |= ((v >> pl) & 1u) << b;
        }
        if (++c == C) {
            c = 0;
            if (++kx == KW) {
                kx = 0;
                ++ky;
            }
        }
    }
    __global uint *out = patches + (size_t)p * PLANES * RWP + (k - k % WORD_SPAN) * PLANES + k % WORD_SPAN;
    for (int pl = 0; pl < PLANES; ++pl)
        out[pl * WORD_SPAN] = word[pl];
}

/* w: OC filters of TAPS taps of C channels, each tap packed in RW words (the layer's layout)
 * -> wp: OC rows of RWP words holding the TAPS * C bits as one packed row (pad bits 0), or,
 * when OCP > 0, the same words transposed: word_t k of filter o at word_t k * OCP + o (filters
 * o >= OC of the OCP all 0). Launch: global (RWP, OC), or (RWP, OCP) when OCP > 0. */
__kernel void bitplane_weights(const int OC, const int TAPS, const int C, const int RW, const int RWP,
                               const int OCP,
                               __global const uint *restrict w,
                               __global uint *restrict wp)
{
    const int k = get_global_id(0), o = get_global_id(1);
    if (k >= RWP || o >= (OCP > 0 ? OCP : OC)) return;
    const int t0 = k * 32, nbits = o < OC ? clamp(TAPS * C - t0, 0, 32) : 0;
    int c = t0 % C, tap = t0 / C;
    uint word = 0u;
    for (int b = 0; b < nbits; ++b) {
        word |= ((w[((size_t)o * TAPS + tap) * RW + c / 32] >> (c % 32)) & 1u) << b;
        if (++c == C) {
            c = 0;
            ++tap;
        }
    }
    const size_t at = OCP > 0 ? ((size_t)(k / WORD_SPAN) * OCP + o) * WORD_SPAN + k % WORD_SPAN
                              : (size_t)o * RWP + k;
    wp[at] = word;
}

/* patches: NP rows of CW * PLANES words (bitplane_pack), wp: OC rows of CW words
 * (bitplane_weights, or the weights themselves for a 1x1 window) -> out: NP x OC int32.
 * bgemm.cl's tiling with PLANES rows per pixel: each weight word loaded serves all of them.
 * Launch: global (ceil(OC / BN) * WG_N, ceil(NP / BM) * WG_M), local (WG_N, WG_M); work-item
 * (tx, ty) owns pixels bp + ty + i * WG_M and channels boc + tx + j * WG_N. */
/* The work-item's products, as BITPLANE_PRODUCT(i, j): declares acc[TM][TN] (sums of
 * 2^p * popcount(x_p & w)) and ones[TM] (sums of 2^p * popcount(x_p), shared by channels). */
#define BITPLANE_PRODUCTS()                                                                   \
    TILE_ITEM(bp, boc);                                                                       \
    /* Rows past the edge read row NP-1 / OC-1 (in bounds); their results are not stored.     \
     * min(), not TILE_ROWS's conditional: under PoCL (cpu profile) that made this kernel    \
     * about 1.5% slower. */                                                                  \
    const __global word_t *xr[TM];                                                            \
    _Pragma("unroll")                                                                         \
    for (int i = 0; i < TM; ++i)                                                              \
        xr[i] = patches + (size_t)min(bp + ty + i * WG_M, NP - 1) * CW * PLANES;              \
    const __global word_t *wrow[TN];                                                          \
    _Pragma("unroll")                                                                         \
    for (int j = 0; j < TN; ++j)                                                              \
        wrow[j] = wp + (size_t)min(boc + tx + j * WG_N, OC - 1) * CW;                         \
    int acc[TM][TN], ones[TM];                                                                \
    _Pragma("unroll")                                                                         \
    for (int i = 0; i < TM; ++i) ones[i] = 0;                                                 \
    TILE_EACH(acc[i][j] = 0);                                                                 \
    for (int k = 0; k < CW; ++k) {                                                            \
        word_t b[TN];                                                                         \
        _Pragma("unroll")                                                                     \
        for (int j = 0; j < TN; ++j) b[j] = wrow[j][k];                                       \
        _Pragma("unroll")                                                                     \
        for (int pl = 0; pl < PLANES; ++pl) {                                                 \
            word_t a[TM];                                                                     \
            _Pragma("unroll")                                                                 \
            for (int i = 0; i < TM; ++i) {                                                    \
                a[i] = xr[i][k * PLANES + pl];                                                \
                ones[i] += POPC(a[i]) << pl;                                                  \
            }                                                                                 \
            TILE_EACH(acc[i][j] += POPC(a[i] & b[j]) << pl);                                  \
        }                                                                                     \
    }
#define BITPLANE_PRODUCT(i, j) (2 * acc[i][j] - ones[i])

__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bitplane_conv2d(const int NP, const int OC, const int CW,
                     __global const word_t *restrict patches,
                     __global const word_t *restrict wp,
                     __global int *restrict out)
{
    BITPLANE_PRODUCTS();
    TILE_STORE(out, NP, OC, bp, boc, BITPLANE_PRODUCT(i, j));
}

/* bitplane_conv2d followed by threshold_pack (kernels/pack.cl), in one launch: bit c of an
 * output pixel is flip[c] ? acc <= thresh[c] : acc >= thresh[c], out: NP rows of RW 32-bit
 * words (pad bits and pad words 0). A work-group's BN channels are whole words (BN a multiple
 * of 32); it packs its pass bits in local memory (tiles.h). Launch as bitplane_conv2d. */
#if BN % 32 == 0
__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bitplane_threshold(const int NP, const int OC, const int CW, const int RW,
                        __global const word_t *restrict patches,
                        __global const word_t *restrict wp,
                        __global const int *restrict thresh,
                        __global const int *restrict flip,
                        __global uint *restrict out)
{
    BITPLANE_PRODUCTS();
    TILE_PASS_BITS(lpass, tile_pass(BITPLANE_PRODUCT(i, j), min(boc + tx + j * WG_N, OC - 1), thresh, flip));
    TILE_STORE_PASS_WORDS(out, lpass, bp, NP, OC, boc, RW);
}
#endif
