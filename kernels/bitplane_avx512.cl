/* The bit-plane first layer (bitplane.cl) on x86-64 CPUs with AVX-512 VPOPCNTDQ
 * (xnor_cpu.h): patches from bitplane_pack_avx512 below (bitplane.cl's layout), filters
 * transposed by bitplane.cl's bitplane_weights. Elsewhere (another compiler or CPU) the file
 * holds no kernel.
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
#if TN != 32
#error "the AVX-512 tile is 32 channels wide: TN = 32"
#endif

#if XNOR_CPU_AVX512
/* x86-64 CPUs with AVX-512 VPOPCNTDQ (xnor_cpu.h): 8 channels per 512-bit vector, R pixels x
 * 32 channels (R = 4 or 1) in registers. One plane at a time, from the top one down (Horner:
 * the accumulators double before each plane), each word of a pixel's plane is broadcast
 * against the vectors of 8 filters' words: acc = 2 acc + popcount(x_p & w). Planes in the
 * outer loop keep the shift out of the inner one. xr: R pixels' patch rows (CW * PLANES words
 * each, word k of plane p at k * PLANES + p), wt: filters transposed, CW x OCP words from
 * channel oc0 on (OCP a multiple of 32, filters past OC all 0).
 * out: R x 32 ints of 2 * sum_p 2^p popcount(x_p & w) - sum_p 2^p popcount(x_p). */
#define BITPLANE_TILE(R)                                                                     \
XNOR_CPU_TARGET void bitplane_tile_##R##x32(const __global ulong *const *xr,                 \
                                            const __global ulong *wt, const int OCP,         \
                                            const int CW, __private int *out)                \
{                                                                                            \
    xnor_v8q s[R][4];                                                                        \
    BLOCK_EACH(R, 4, s[i][j] = XNOR_V8Q_ZERO);                                               \
    _Pragma("nounroll")                                                                      \
    for (int pl = PLANES - 1; pl >= 0; --pl) {                                               \
        BLOCK_EACH(R, 4, s[i][j] += s[i][j]);                                                \
        _Pragma("nounroll")                                                                  \
        for (int k = 0; k < CW; ++k) {                                                       \
            xnor_v8q wv[4];                                                                  \
            _Pragma("unroll")                                                                \
            for (int j = 0; j < 4; ++j) wv[j] = XNOR_LOAD(wt + (size_t)k * OCP + 8 * j);     \
            _Pragma("unroll")                                                                \
            for (int i = 0; i < R; ++i) {                                                    \
                const long v = (long)xr[i][k * PLANES + pl];                                 \
                const xnor_v8q bv = (xnor_v8q){v, v, v, v, v, v, v, v};                      \
                _Pragma("unroll")                                                            \
                for (int j = 0; j < 4; ++j) s[i][j] += XNOR_POPC(bv & wv[j]);               \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    _Pragma("unroll")                                                                        \
    for (int i = 0; i < R; ++i) {                                                            \
        long ones = 0;                                                                       \
        for (int k = 0; k < CW * PLANES; ++k)                                                \
            ones += (long)__builtin_popcountl(xr[i][k]) << (k % PLANES);                     \
        _Pragma("unroll")                                                                    \
        for (int j = 0; j < 4; ++j)                                                          \
            _Pragma("unroll")                                                                \
            for (int l = 0; l < 8; ++l)                                                      \
                out[32 * i + 8 * j + l] = (int)(2 * s[i][j][l] - ones);                      \
    }                                                                                        \
}

BITPLANE_TILE(4)
BITPLANE_TILE(1)

/* The counts of pixels p .. p + rows - 1 (rows = 4 or 1) into acc: rows x 32 ints. */
static inline void bitplane_rows(const __global word_t *patches, const size_t row, const int p,
                                 const int rows, const __global word_t *wt, const int OCP,
                                 const int CW, __private int *acc)
{
    const __global ulong *xr[4];
    for (int i = 0; i < rows; ++i)
        xr[i] = (const __global ulong *)(patches + (size_t)(p + i) * row);
    if (rows == 4)
        bitplane_tile_4x32(xr, (const __global ulong *)wt, OCP, CW, acc);
    else
        bitplane_tile_1x32(xr, (const __global ulong *)wt, OCP, CW, acc);
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
    const int pend = min(NP, bp + TM);
    int acc[4 * 32];
    for (int p = bp; p < pend;) {
        const int rows = pend - p >= 4 ? 4 : 1;
        bitplane_rows(patches, row, p, rows, wt + boc, OCP, CW, acc);
        for (int i = 0; i < rows; ++i)
            for (int j = 0; j < cols; ++j)
                out[(size_t)(p + i) * OC + boc + j] = acc[32 * i + j];
        p += rows;
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
    const int pend = min(NP, bp + TM);
    int acc[4 * 32];
    for (int p = bp; p < pend;) {
        const int rows = pend - p >= 4 ? 4 : 1;
        bitplane_rows(patches, row, p, rows, wt + boc, OCP, CW, acc);
        for (int i = 0; i < rows; ++i) {
            uint bits = 0u;
            for (int j = 0; j < 32; ++j)
                bits |= (uint)(acc[32 * i + j] >= lo[j] && acc[32 * i + j] <= hi[j]) << j;
            __global uint *o = out + (size_t)(p + i) * RW;
            o[word] = bits;
            if (last)
                for (int w = word + 1; w < RW; ++w)
                    o[w] = 0u;
        }
        p += rows;
    }
}

/* bitplane.cl's bitplane_pack with 64-bit words, a window's bytes at a time: word k of a
 * pixel's patch holds window values t = 64 k .. 64 k + 63, which lie in runs of S = KW * C
 * bytes of x (one run per window row, NHWC); each run's valid bytes come in by one masked
 * byte load (taps outside the image stay 0: zero padding, exact), and plane p of the 64 values
 * is one vptestmb against bit p. The 8-instruction planes replace bitplane_pack's loop over
 * every bit of every plane (measured on 2 Zen 5 cores: 1.9 ms for the 65,536 windows of
 * BinaryNet's first conv at batch 64). patches: word k of plane p of pixel q at
 * (q * CW + k) * PLANES + p, CW = ceil(KH * KW * C / 64). */
typedef char bitplane_v64b __attribute__((vector_size(64)));

XNOR_CPU_TARGET void bitplane_pack_pixels(const __global uchar *x, const int q0, const int q1,
                                          const int H, const int W, const int C, const int KH,
                                          const int KW, const int OH, const int OW,
                                          const int stride, const int pad_top,
                                          const int pad_left, const int CW,
                                          __global ulong *patches)
{
    const int S = KW * C;
    bitplane_v64b bit[PLANES];
    _Pragma("unroll")
    for (int pl = 0; pl < PLANES; ++pl) {
        const char b = (char)(1 << pl);
        bit[pl] = (bitplane_v64b){b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b,
                                  b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b,
                                  b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b,
                                  b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b};
    }
    for (int q = q0; q < q1; ++q) {
        const int n = q / (OH * OW), r = q - n * (OH * OW), oy = r / OW, ox = r - oy * OW;
        const int iy0 = oy * stride - pad_top, ix0 = ox * stride - pad_left;
        /* Valid bytes of every run: taps [xs, xe) of the window's columns. */
        const int lo_x = (ix0 < 0 ? -ix0 : 0) * C;
        const int hi_x = (ix0 + KW > W ? W - ix0 : KW) * C;
        const long first = (((long)n * H + iy0) * W + ix0) * C;  /* the window's byte (0, 0, 0) */
        __global ulong *out = patches + (size_t)q * CW * PLANES;
        for (int k = 0; k < CW; ++k) {
            const int t0 = 64 * k;
            bitplane_v64b v = (bitplane_v64b)XNOR_V8Q_ZERO;
            for (int ky = t0 / S; ky < KH && ky * S < t0 + 64; ++ky) {
                const int lo = max(t0, ky * S + lo_x), hi = min(t0 + 64, ky * S + hi_x);
                if ((uint)(iy0 + ky) >= (uint)H || lo >= hi)
                    continue;
                const ulong below = hi - t0 == 64 ? ~0ul : (1ul << (hi - t0)) - 1ul;
                const ulong mask = below & ~((1ul << (lo - t0)) - 1ul);
                /* Lane L: byte t0 + L - ky * S of run ky (masked lanes are not read). */
                const long at = first + (long)ky * W * C + t0 - ky * S;
                v = __builtin_ia32_loaddquqi512_mask((const __global bitplane_v64b *)(x + at), v, mask);
            }
            _Pragma("unroll")
            for (int pl = 0; pl < PLANES; ++pl)
                out[k * PLANES + pl] = __builtin_ia32_cmpb512_mask(v & bit[pl], (bitplane_v64b)XNOR_V8Q_ZERO,
                                                                   4 /* != */, ~0ul);
        }
    }
}

/* Launch: global (ceil(N * OH * OW / PER_ITEM)), local (1): PER_ITEM pixels a work-item. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bitplane_pack_avx512(const int N, const int H, const int W, const int C,
                          const int KH, const int KW, const int OH, const int OW,
                          const int stride, const int pad_top, const int pad_left, const int CW,
                          const int PER_ITEM,
                          __global const uchar *restrict x,
                          __global word_t *restrict patches)
{
    const int NP = N * OH * OW, q0 = get_group_id(0) * PER_ITEM, q1 = min(NP, q0 + PER_ITEM);
    if (q0 < q1)
        bitplane_pack_pixels(x, q0, q1, H, W, C, KH, KW, OH, OW, stride, pad_top, pad_left, CW,
                             (__global ulong *)patches);
}
#endif
