/* The bit-plane first layer (bitplane.cl) on x86-64 CPUs with AVX-512 VPOPCNTDQ
 * (xnor_cpu.h): patches from bitplane.cl's bitplane_pack, filters transposed by its
 * bitplane_weights. Elsewhere (another compiler or CPU) the file holds no kernel.
 */
#include "common.h"
#include "xnor_cpu.h"

/* The host passes TM and TN (espresso_cl/tuning.py: BitplaneConv.avx512_tiles); these defaults
 * only let the file build on its own. */
#ifndef TM
#define TM 4
#endif
#ifndef TN
#define TN 32
#endif
#if TN != 32 || TM % 2
#error "the AVX-512 tile is 2 pixels x 32 channels: TN = 32 and an even TM"
#endif

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
    long ones[2] = {0, 0};
    BLOCK_EACH(2, 4, s[i][j] = XNOR_V8Q_ZERO);
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
 * Launch: global (OCP / 32, ceil(NP / 4)) (swapped with ROWS_FIRST), local (1, 1): 4 pixels
 * x 32 channels a work-item. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bitplane_conv2d_avx512(const int NP, const int OC, const int CW, const int OCP,
                            __global const word_t *restrict patches,
                            __global const word_t *restrict wt,
                            __global int *restrict out)
{
    const int bp = BLOCK_ROW() * TM, boc = BLOCK_COL() * TN;
    const size_t row = (size_t)CW * PLANES;
    const int cols = min(OC - boc, 32);
    int acc[2 * 32];
    for (int p = bp; p < min(NP, bp + TM); p += 2) {
        bitplane_tile_2x32(patches + (size_t)p * row, patches + (size_t)min(p + 1, NP - 1) * row,
                           wt + boc, OCP, CW, acc);
        for (int i = 0; i < min(NP - p, 2); ++i)
            for (int j = 0; j < cols; ++j)
                out[(size_t)(p + i) * OC + boc + j] = acc[32 * i + j];
    }
}

/* bitplane_conv2d_avx512 followed by threshold_pack (kernels/pack.cl), in one launch: bit c of
 * an output pixel is flip[c] ? acc <= thresh[c] : acc >= thresh[c], packed as common.h says into
 * out, NP rows of RW 32-bit words (RW even). Each work-item owns word BLOCK_COL() (channels
 * boc .. boc + 31) of its 4 pixels, and the last one (word OCP / 32 - 1) also the row's pad word
 * after it, written 0, so every word has exactly one writer. Each channel's test is one range,
 * lo[c] <= acc <= hi[c] (one side INT_MIN / INT_MAX), and channels past OC get an empty one, so
 * their bits are 0. Launch: global (OCP / 32, ceil(NP / 4)) (swapped with ROWS_FIRST),
 * local (1, 1). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bitplane_threshold_avx512(const int NP, const int OC, const int CW, const int OCP, const int RW,
                               __global const word_t *restrict patches,
                               __global const word_t *restrict wt,
                               __global const int *restrict thresh,
                               __global const int *restrict flip,
                               __global uint *restrict out)
{
    const int bp = BLOCK_ROW() * TM, word = BLOCK_COL(), boc = word * TN;
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
    for (int p = bp; p < min(NP, bp + TM); p += 2) {
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
