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
#include "xnor_cpu.h"

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
 * Launch: global (ceil(OC / BOC) * WG_OC, ceil(NP / BP) * WG_P), local (WG_OC, WG_P); work-item
 * (tx, ty) owns pixels bp + ty + i * WG_P and channels boc + tx + j * WG_OC. */
__kernel __attribute__((reqd_work_group_size(WG_OC, WG_P, 1)))
void bitplane_conv2d(const int NP, const int OC, const int CW,
                     __global const word_t *restrict patches,
                     __global const word_t *restrict wp,
                     __global int *restrict out)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int boc = get_group_id(0) * BOC, bp = get_group_id(1) * BP;

    /* Rows past the edge read row NP-1 / OC-1 (in bounds); their results are not stored.
     * PoCL leaves the register-block loops rolled (acc in memory) unless told to unroll. */
    const __global word_t *xr[TP];
    #pragma unroll
    for (int i = 0; i < TP; ++i)
        xr[i] = patches + (size_t)min(bp + ty + i * WG_P, NP - 1) * CW * PLANES;
    const __global word_t *wrow[TOC];
    #pragma unroll
    for (int j = 0; j < TOC; ++j)
        wrow[j] = wp + (size_t)min(boc + tx + j * WG_OC, OC - 1) * CW;

    /* acc: sum of 2^p * popcount(x_p & w); ones: sum of 2^p * popcount(x_p), shared by channels. */
    int acc[TP][TOC], ones[TP];
    #pragma unroll
    for (int i = 0; i < TP; ++i) {
        ones[i] = 0;
        #pragma unroll
        for (int j = 0; j < TOC; ++j)
            acc[i][j] = 0;
    }

    for (int k = 0; k < CW; ++k) {
        word_t b[TOC];
        #pragma unroll
        for (int j = 0; j < TOC; ++j) b[j] = wrow[j][k];
        #pragma unroll
        for (int pl = 0; pl < PLANES; ++pl) {
            word_t a[TP];
            #pragma unroll
            for (int i = 0; i < TP; ++i) {
                a[i] = xr[i][k * PLANES + pl];
                ones[i] += POPC(a[i]) << pl;
            }
            #pragma unroll
            for (int i = 0; i < TP; ++i)
                #pragma unroll
                for (int j = 0; j < TOC; ++j)
                    acc[i][j] += POPC(a[i] & b[j]) << pl;
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

#if XNOR_CPU_AVX512
/* x86-64 CPUs with AVX-512 VPOPCNTDQ (xnor_cpu.h): 8 channels per 512-bit vector. For each
 * pixel and plane, one word broadcast against the vectors of 8 filters' words:
 * acc += popcount(x_p & w) << p, 2 pixels x 32 channels of 64-bit lanes in registers (4 pixels
 * spill). x0, x1: 2 pixels' patch rows (CW * PLANES words each), wt: filters transposed,
 * CW x OCP words from channel oc0 on (OCP a multiple of 32, filters past OC all 0).
 * out: 2 x 32 ints of 2 * sum_p 2^p popcount(x_p & w) - sum_p 2^p popcount(x_p). */
XNOR_CPU_TARGET void bitplane_tile_2x32(const __global ulong *x0, const __global ulong *x1,
                                        const __global ulong *wt, const int OCP, const int CW,
                                        __private int *out)
{
    const __global ulong *xr[2] = {x0, x1};
    xnor_v8q s[2][4];
    long ones[2];
    _Pragma("unroll")
    for (int i = 0; i < 2; ++i) {
        ones[i] = 0;
        _Pragma("unroll")
        for (int j = 0; j < 4; ++j)
            s[i][j] = (xnor_v8q){0, 0, 0, 0, 0, 0, 0, 0};
    }
    _Pragma("nounroll")
    for (int k = 0; k < CW; ++k) {
        xnor_v8q wv[4];
        _Pragma("unroll")
        for (int j = 0; j < 4; ++j)
            wv[j] = XNOR_LOAD(wt + (size_t)k * OCP + 8 * j);
        _Pragma("unroll")
        for (int i = 0; i < 2; ++i) {
            _Pragma("unroll")
            for (int pl = 0; pl < PLANES; ++pl) {
                const ulong v = xr[i][k * PLANES + pl];
                ones[i] += (long)__builtin_popcountl(v) << pl;
                const xnor_v8q bv = (xnor_v8q){(long)v, (long)v, (long)v, (long)v,
                                               (long)v, (long)v, (long)v, (long)v};
                _Pragma("unroll")
                for (int j = 0; j < 4; ++j)
                    s[i][j] += XNOR_POPC(bv & wv[j]) << pl;
            }
        }
    }
    _Pragma("unroll")
    for (int i = 0; i < 2; ++i)
        _Pragma("unroll")
        for (int j = 0; j < 4; ++j)
            _Pragma("unroll")
            for (int l = 0; l < 8; ++l)
                out[32 * i + 8 * j + l] = (int)(2 * s[i][j][l] - ones[i]);
}

/* patches as bitplane_conv2d, wt: CW x OCP words (bitplane_weights transposed) -> out: NP x OC.
 * Launch: global (OCP / 32, ceil(NP / 4)), local (1, 1): 4 pixels x 32 channels a work-item. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bitplane_conv2d_avx512(const int NP, const int OC, const int CW, const int OCP,
                            __global const word_t *restrict patches,
                            __global const word_t *restrict wt,
                            __global int *restrict out)
{
    const int bp = get_group_id(1) * 4, boc = get_group_id(0) * 32;
    const size_t row = (size_t)CW * PLANES;
    const int cols = min(OC - boc, 32);
    int acc[2 * 32];
    for (int p = bp; p < min(NP, bp + 4); p += 2) {
        bitplane_tile_2x32(patches + (size_t)p * row, patches + (size_t)min(p + 1, NP - 1) * row,
                           wt + boc, OCP, CW, acc);
        for (int i = 0; i < min(NP - p, 2); ++i)
            for (int j = 0; j < cols; ++j)
                out[(size_t)(p + i) * OC + boc + j] = acc[32 * i + j];
    }
}

/* bitplane_conv2d_avx512 followed by threshold_pack (kernels/pack.cl), in one launch: bit c of
 * an output pixel is flip[c] ? acc <= thresh[c] : acc >= thresh[c], packed as common.h says into
 * out, NP rows of RW 32-bit words (RW even). Each work-item owns word get_group_id(0) (channels
 * boc .. boc + 31) of its 4 pixels, and the last one (word OCP / 32 - 1) also the row's pad word
 * after it, written 0, so every word has exactly one writer. Each channel's test is one range,
 * lo[c] <= acc <= hi[c] (one side INT_MIN / INT_MAX), and channels past OC get an empty one, so
 * their bits are 0. Launch: global (OCP / 32, ceil(NP / 4)), local (1, 1). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bitplane_threshold_avx512(const int NP, const int OC, const int CW, const int OCP, const int RW,
                               __global const word_t *restrict patches,
                               __global const word_t *restrict wt,
                               __global const int *restrict thresh,
                               __global const int *restrict flip,
                               __global uint *restrict out)
{
    const int bp = get_group_id(1) * 4, word = get_group_id(0), boc = word * 32;
    const size_t row = (size_t)CW * PLANES;
    const int cols = min(OC - boc, 32);
    int lo[32], hi[32];
    for (int j = 0; j < 32; ++j) {
        if (j < cols) {
            const int t = thresh[boc + j], f = flip[boc + j] != 0;
            lo[j] = f ? INT_MIN : t;
            hi[j] = f ? t : INT_MAX;
        } else {
            lo[j] = INT_MAX;
            hi[j] = INT_MIN;
        }
    }
    const int last = word == OCP / 32 - 1;
    int acc[2 * 32];
    for (int p = bp; p < min(NP, bp + 4); p += 2) {
        bitplane_tile_2x32(patches + (size_t)p * row, patches + (size_t)min(p + 1, NP - 1) * row,
                           wt + boc, OCP, CW, acc);
        for (int i = 0; i < min(NP - p, 2); ++i) {
            uint bits = 0u;
            for (int j = 0; j < 32; ++j)
                bits |= (uint)(acc[32 * i + j] >= lo[j] && acc[32 * i + j] <= hi[j]) << j;
            __global uint *o = out + (size_t)(p + i) * RW;
            o[word] = bits;
            if (last)
                for (int w = word + 1; w < RW; ++w)
                    o[w] = 0u;
        }
    }
}
#endif
