/* Binary direct 2-D convolution on packed NHWC activations (bit layout in common.h).
 *
 * x: N x H x W pixels of C channels packed in RW 32-bit words, w: OC x KH x KW x C packed the
 * same way, out: N x OH x OW x OC int32, the sum over the window's taps of dot(pixel, weights).
 * Taps outside the image follow one_pad:
 *  0  zero padding, exact: a padded tap adds 0. Padded pixels are stored as 0 words, which add
 *     popcount(w) to the XOR count; the epilogue takes those back off and counts only the
 *     valid taps: out = valid_taps * C - 2 * popcount(x ^ w) over the valid taps.
 *  1  the padded pixel is all +1: every channel bit set, pad bits still 0 so they never count.
 *
 * bconv2d_pad first copies the image into the XH x XW frame that the windows cover, padded
 * pixels included, so that the convolution reads every window row as one run of KW * CW
 * words with no bounds test (the launcher skips it when nothing is padded).
 *
 * The CPU profiles run the two other paths at the end of this file instead: window rows
 * (bconv2d_im2col) multiplied by bgemm.cl and a border fix-up, or, on AVX-512 CPUs with zero
 * padding, bconv2d_avx512 (one kernel on xnor_cpu.h's vectors; it uses that header's
 * XNOR_LOAD, XNOR_LOAD_TAIL, XNOR_POPC, XNOR_REDUCE8, xnor_v8q and XNOR_CPU_TARGET).
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
#ifndef USE_LOCAL
#define USE_LOCAL 0     /* 1: stage tiles of the windows and the weights in local memory (GPUs) */
#endif
#ifndef TK
#define TK 16           /* words per local tile along K */
#endif

#define BP (WG_P * TP)
#define BOC (WG_OC * TOC)
/* One spare column keeps the rows of a local tile on different banks. */
#define TK_PAD (TK + 1)

/* x: N x H x W x RW words -> framed: N x XH x XW x RW words, frame pixel (fy, fx) being image
 * pixel (fy - pad_top, fx - pad_left), or a padded pixel: word k holds the bits of channels
 * 32k.. when one_pad (pad bits 0), else 0. Launch: global (RW, N * XH * XW). */
__kernel void bconv2d_pad(const int N, const int H, const int W, const int C, const int RW,
                          const int XH, const int XW, const int pad_top, const int pad_left,
                          const int one_pad,
                          __global const uint *restrict x,
                          __global uint *restrict framed)
{
    const int k = get_global_id(0), f = get_global_id(1);
    if (k >= RW || f >= N * XH * XW) return;
    const int n = f / (XH * XW), r = f - n * (XH * XW), fy = r / XW, fx = r - fy * XW;
    const int iy = fy - pad_top, ix = fx - pad_left;
    const int bits = C - k * 32;
    const uint pad = !one_pad ? 0u : bits >= 32 ? ~0u : bits > 0 ? (1u << bits) - 1u : 0u;
    framed[(size_t)f * RW + k] = ((uint)iy < (uint)H && (uint)ix < (uint)W)
                                 ? x[(((size_t)n * H + iy) * W + ix) * RW + k] : pad;
}

/* framed: N x XH x XW pixels of CW words (bconv2d_pad's frame, or x itself when unpadded),
 * w: OC x KH x KW x CW words; H, W, pad_top and pad_left still place the image in the frame.
 *
 * This is bgemm.cl's product with rows = the NP = N * OH * OW output pixels, columns = the
 * OC channels and a K axis of KH * KW * CW words, read through each pixel's window.
 * Launch: global (ceil(OC / BOC) * WG_OC, ceil(NP / BP) * WG_P), local (WG_OC, WG_P).
 * Work-item (tx, ty) owns pixels bp + ty + i * WG_P and channels boc + tx + j * WG_OC, so
 * neighbouring work-items store neighbouring channels of a pixel. */
__kernel __attribute__((reqd_work_group_size(WG_OC, WG_P, 1)))
void bconv2d(const int N, const int H, const int W, const int C,
             const int OC, const int KH, const int KW, const int OH, const int OW,
             const int stride, const int pad_top, const int pad_left,
             const int XH, const int XW, const int CW, const int one_pad,
             __global const word_t *restrict framed,
             __global const word_t *restrict w,
             __global int *restrict out)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int boc = get_group_id(0) * BOC, bp = get_group_id(1) * BP;
    const int NP = N * OH * OW, RUN = KW * CW, KQ = KH * RUN;
    const size_t ROW = (size_t)XW * CW;

    /* Each pixel's window: its first word in the frame and its top-left tap in the image.
     * Pixels past the edge take pixel NP-1 (in bounds); their results are not stored.
     * PoCL leaves the register-block loops rolled (acc in memory) unless told to unroll. */
    size_t start[TP];
    int iy0[TP], ix0[TP];
    #pragma unroll
    for (int i = 0; i < TP; ++i) {
        const int p = min(bp + ty + i * WG_P, NP - 1);
        const int n = p / (OH * OW), r = p - n * (OH * OW), oy = r / OW, ox = r - oy * OW;
        start[i] = ((size_t)n * XH + oy * stride) * ROW + (size_t)ox * stride * CW;
        iy0[i] = oy * stride - pad_top;
        ix0[i] = ox * stride - pad_left;
    }
    const __global word_t *wrow[TOC];
    #pragma unroll
    for (int j = 0; j < TOC; ++j)
        wrow[j] = w + (size_t)min(boc + tx + j * WG_OC, OC - 1) * KQ;

    int acc[TP][TOC];
    #pragma unroll
    for (int i = 0; i < TP; ++i)
        #pragma unroll
        for (int j = 0; j < TOC; ++j)
            acc[i][j] = 0;

#if USE_LOCAL
    __local word_t As[BP][TK_PAD];
    __local word_t Bs[BOC][TK_PAD];
    __local size_t lstart[BP];
    if (tx == 0)
        for (int i = 0; i < TP; ++i)
            lstart[ty + i * WG_P] = start[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    const int lid = ty * WG_OC + tx;
    for (int q0 = 0; q0 < KQ; q0 += TK) {
        /* Words past KQ are 0 in both tiles: 0 ^ 0 adds nothing. */
        for (int idx = lid; idx < BP * TK; idx += WG_P * WG_OC) {
            const int r = idx / TK, c = idx % TK, q = q0 + c, ky = q / RUN;
            As[r][c] = q < KQ ? framed[lstart[r] + ky * ROW + (q - ky * RUN)] : (word_t)0;
        }
        for (int idx = lid; idx < BOC * TK; idx += WG_P * WG_OC) {
            const int r = idx / TK, c = idx % TK, q = q0 + c, oc = boc + r;
            Bs[r][c] = (oc < OC && q < KQ) ? w[(size_t)oc * KQ + q] : (word_t)0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TK; ++kk) {
            word_t a[TP], b[TOC];
            #pragma unroll
            for (int i = 0; i < TP; ++i) a[i] = As[ty + i * WG_P][kk];
            #pragma unroll
            for (int j = 0; j < TOC; ++j) b[j] = Bs[tx + j * WG_OC][kk];
            #pragma unroll
            for (int i = 0; i < TP; ++i)
                #pragma unroll
                for (int j = 0; j < TOC; ++j)
                    acc[i][j] += POPC(a[i] ^ b[j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#else
    for (int ky = 0; ky < KH; ++ky) {
        const __global word_t *xr[TP];
        #pragma unroll
        for (int i = 0; i < TP; ++i) xr[i] = framed + start[i] + ky * ROW;
        const int wq = ky * RUN;
        for (int q = 0; q < RUN; ++q) {
            word_t a[TP], b[TOC];
            #pragma unroll
            for (int i = 0; i < TP; ++i) a[i] = xr[i][q];
            #pragma unroll
            for (int j = 0; j < TOC; ++j) b[j] = wrow[j][wq + q];
            #pragma unroll
            for (int i = 0; i < TP; ++i)
                #pragma unroll
                for (int j = 0; j < TOC; ++j)
                    acc[i][j] += POPC(a[i] ^ b[j]);
        }
    }
#endif

    #pragma unroll
    for (int i = 0; i < TP; ++i) {
        /* Rows [ya, ya + ry) and columns [xa, xa + rx) of the window lie inside the image. */
        const int y1 = iy0[i] + KH, x1 = ix0[i] + KW;
        const int ya = iy0[i] < 0 ? -iy0[i] : 0, xa = ix0[i] < 0 ? -ix0[i] : 0;
        const int ry = KH - ya - (y1 > H ? y1 - H : 0), rx = KW - xa - (x1 > W ? x1 - W : 0);
        /* Zero padding: take back the popcount(w) that each padded tap's 0 words added. */
        if (!one_pad && (ry < KH || rx < KW))
            for (int ky = 0; ky < KH; ++ky) {
                const int row_inside = (uint)(ky - ya) < (uint)ry;
                for (int kx = 0; kx < KW; ++kx) {
                    if (row_inside && (uint)(kx - xa) < (uint)rx)
                        continue;
                    const int wq = (ky * KW + kx) * CW;
                    #pragma unroll
                    for (int j = 0; j < TOC; ++j)
                        for (int k = 0; k < CW; ++k)
                            acc[i][j] -= POPC(wrow[j][wq + k]);
                }
            }
        const int taps = one_pad ? KH * KW : ry * rx;
        const int p = bp + ty + i * WG_P;
        #pragma unroll
        for (int j = 0; j < TOC; ++j) {
            const int oc = boc + tx + j * WG_OC;
            if (p < NP && oc < OC)
                out[(size_t)p * OC + oc] = taps * C - 2 * acc[i][j];
        }
    }
}

/* ---- im2col path: the convolution as bgemm.cl's product (what the CPU profile runs). ----
 *
 * bconv2d_im2col copies each output pixel's window into one row of KQ = KH * KW * CW words,
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

/* ---- Fused path for x86-64 CPUs with AVX-512 VPOPCNTDQ (xnor_cpu.h), zero padding. ----
 *
 * bgemm's 3 x 8 register tiles, reading each pixel's window straight from the image: a window
 * row (KW taps of CW words) is one run of RUN = KW * CW words of x, loaded 8 words at a time
 * with a mask that keeps the taps inside the image. Padded taps and the tail past RUN are 0
 * in a and masked out of the popcount, so they count nothing (zero padding, exact) and the
 * result is valid_taps * C - 2 * count. One launch, no frame, no window rows. */

#if XNOR_CPU_AVX512

#ifndef XTM
#define XTM 12          /* pixels per work-item: tiles of 3 (1 for the last pixels) */
#endif
#ifndef XTN
#define XTN 32          /* channels per work-item: tiles of 8 */
#endif

#define XCONV_MASKZ_POPC(m, v) \
    __builtin_ia32_selectq_512((m), XNOR_POPC(v), (xnor_v8q){0, 0, 0, 0, 0, 0, 0, 0})

/* Words [lo, hi) of a run, as the lanes of the 8-word chunk starting at word k0. No clamp():
 * PoCL's builtins are calls, and a call here would spill every accumulator. */
static inline unsigned char xconv_lanes(const int lo, const int hi, const int k0)
{
    const int a = lo - k0 < 0 ? 0 : lo - k0 > 8 ? 8 : lo - k0;
    const int b = hi - k0 < 0 ? 0 : hi - k0 > 8 ? 8 : hi - k0;
    return (unsigned char)(((1u << b) - 1u) & ~((1u << a) - 1u));
}

/* out[8 i + j] = popcount count of pixel i (R = 3 or 1) against filter j over its valid taps.
 * px[i]: pixel i's first window word (tap (0, 0)) in x, as an offset that may be negative or
 * past a row where the tap is padding (never dereferenced); iy0[i], xa[i], xb[i]: the
 * window's top row in the image and its valid words [xa, xb) in every run. b: filter 0's
 * first word, filters KQ words apart; ncols as xnor_tile_3x8; interior: every pixel's window
 * lies inside the image (no masks). */
#define XCONV_TILE(R)                                                                        \
XNOR_CPU_TARGET void xconv_tile_##R##x8(const __global ulong *x, const long *px,             \
                                        const int *iy0, const int *xa, const int *xb,        \
                                        const int H, const long ROW, const int KH,           \
                                        const int RUN, const __global ulong *b,              \
                                        const int ncols, const int interior,                 \
                                        __private int *out)                                  \
{                                                                                            \
    const int KQ = KH * RUN;                                                                 \
    const __global ulong *bc[8];                                                             \
    for (int j = 0; j < 8; ++j)                                                              \
        bc[j] = b + (size_t)(j < ncols ? j : ncols - 1) * KQ;                                \
    xnor_v8q s[R][8];                                                                        \
    _Pragma("unroll")                                                                        \
    for (int i = 0; i < R; ++i)                                                              \
        _Pragma("unroll")                                                                    \
        for (int j = 0; j < 8; ++j)                                                          \
            s[i][j] = (xnor_v8q){0, 0, 0, 0, 0, 0, 0, 0};                                    \
    if (interior) {                                                                          \
        /* Every tap inside the image: bgemm's loop over each window row. */                 \
        _Pragma("nounroll")                                                                  \
        for (int ky = 0; ky < KH; ++ky) {                                                    \
            int k0 = 0;                                                                      \
            _Pragma("nounroll")                                                              \
            for (; k0 + 8 <= RUN; k0 += 8) {                                                 \
                xnor_v8q va[R];                                                              \
                _Pragma("unroll")                                                            \
                for (int i = 0; i < R; ++i) va[i] = XNOR_LOAD(x + (px[i] + ky * ROW + k0));  \
                _Pragma("unroll")                                                            \
                for (int j = 0; j < 8; ++j) {                                                \
                    const xnor_v8q vb = XNOR_LOAD(bc[j] + ky * RUN + k0);                    \
                    _Pragma("unroll")                                                        \
                    for (int i = 0; i < R; ++i) s[i][j] += XNOR_POPC(va[i] ^ vb);            \
                }                                                                            \
            }                                                                                \
            if (k0 < RUN) {                                                                  \
                const unsigned char tail = (unsigned char)((1u << (RUN - k0)) - 1u);         \
                xnor_v8q va[R];                                                              \
                _Pragma("unroll")                                                            \
                for (int i = 0; i < R; ++i)                                                  \
                    va[i] = XNOR_LOAD_TAIL(x + (px[i] + ky * ROW + k0), tail);               \
                _Pragma("unroll")                                                            \
                for (int j = 0; j < 8; ++j) {                                                \
                    const xnor_v8q vb = XNOR_LOAD_TAIL(bc[j] + ky * RUN + k0, tail);         \
                    _Pragma("unroll")                                                        \
                    for (int i = 0; i < R; ++i) s[i][j] += XNOR_POPC(va[i] ^ vb);            \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    } else                                                                                   \
    /* Chunks outside, window rows inside: a pixel's lanes of a chunk are the same in every  \
     * row of its window, or none where the row is padding. */                              \
    _Pragma("nounroll")                                                                      \
    for (int k0 = 0; k0 < RUN; k0 += 8) {                                                    \
        const unsigned char tail = xconv_lanes(0, RUN, k0);                                  \
        unsigned char lanes[R];                                                              \
        _Pragma("unroll")                                                                    \
        for (int i = 0; i < R; ++i) lanes[i] = xconv_lanes(xa[i], xb[i], k0);                \
        _Pragma("nounroll")                                                                  \
        for (int ky = 0; ky < KH; ++ky) {                                                    \
            xnor_v8q va[R];                                                                  \
            unsigned char m[R];                                                              \
            _Pragma("unroll")                                                                \
            for (int i = 0; i < R; ++i) {                                                    \
                m[i] = (uint)(iy0[i] + ky) < (uint)H ? lanes[i] : (unsigned char)0;          \
                va[i] = XNOR_LOAD_TAIL(x + (px[i] + ky * ROW + k0), m[i]);                   \
            }                                                                                \
            _Pragma("unroll")                                                                \
            for (int j = 0; j < 8; ++j) {                                                    \
                const xnor_v8q vb = XNOR_LOAD_TAIL(bc[j] + ky * RUN + k0, tail);             \
                _Pragma("unroll")                                                            \
                for (int i = 0; i < R; ++i) s[i][j] += XCONV_MASKZ_POPC(m[i], va[i] ^ vb);   \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    _Pragma("unroll")                                                                        \
    for (int i = 0; i < R; ++i) XNOR_REDUCE8(out + 8 * i, s[i]);                             \
}

XCONV_TILE(3)
XCONV_TILE(1)

/* x: N x H x W pixels of CW words, w: OC x KH x KW x CW words -> out: N x OH x OW x OC,
 * zero padding. Launch: global (ceil(OC / XTN), ceil(NP / XTM)), local (1, 1): one work-item
 * per work-group owns pixels bp .. bp + XTM - 1 and channels boc .. boc + XTN - 1. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bconv2d_avx512(const int N, const int H, const int W, const int C,
                    const int OC, const int KH, const int KW, const int OH, const int OW,
                    const int stride, const int pad_top, const int pad_left, const int CW,
                    __global const word_t *restrict x,
                    __global const word_t *restrict w,
                    __global int *restrict out)
{
    const int NP = N * OH * OW, RUN = KW * CW;
    const long ROW = (long)W * CW;
    const int bp = get_group_id(1) * XTM, boc = get_group_id(0) * XTN;
    const int pend = min(NP, bp + XTM), ocend = min(OC, boc + XTN);
    long px[3];
    int iy0[3], xa[3], xb[3], taps[3], acc[3 * 8];
    for (int p = bp; p < pend;) {
        const int rows = pend - p >= 3 ? 3 : 1;
        int interior = 1;
        for (int i = 0; i < rows; ++i) {
            const int q = p + i, n = q / (OH * OW), r = q - n * (OH * OW), oy = r / OW, ox = r - oy * OW;
            const int y = oy * stride - pad_top, xl = ox * stride - pad_left;
            iy0[i] = y;
            px[i] = ((long)n * H + y) * ROW + (long)xl * CW;
            /* Valid taps: rows [ya, ya + ry) and columns [xs, xs + rx) of the window. */
            const int ya = y < 0 ? -y : 0, xs = xl < 0 ? -xl : 0;
            const int ry = KH - ya - (y + KH > H ? y + KH - H : 0);
            const int rx = KW - xs - (xl + KW > W ? xl + KW - W : 0);
            xa[i] = xs * CW;
            xb[i] = (xs + rx) * CW;
            taps[i] = ry * rx;
            interior &= taps[i] == KH * KW;
        }
        for (int o = boc; o < ocend; o += 8) {
            const int cols = min(ocend - o, 8);
            if (rows == 3)
                xconv_tile_3x8(x, px, iy0, xa, xb, H, ROW, KH, RUN, w + (size_t)o * KH * RUN, cols, interior, acc);
            else
                xconv_tile_1x8(x, px, iy0, xa, xb, H, ROW, KH, RUN, w + (size_t)o * KH * RUN, cols, interior, acc);
            for (int i = 0; i < rows; ++i)
                for (int j = 0; j < cols; ++j)
                    out[(size_t)(p + i) * OC + o + j] = taps[i] * C - 2 * acc[8 * i + j];
        }
        p += rows;
    }
}

#endif /* XNOR_CPU_AVX512 */
