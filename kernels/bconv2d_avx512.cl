/* Binary convolution in one kernel on x86-64 CPUs with AVX-512 VPOPCNTDQ, zero padding.
 * x, w and out as bconv2d.cl; the launcher is espresso_cl/ops/conv.py. It builds on xnor_cpu.h's
 * AVX-512 vectors, loads and tile steps (XNOR_STEP8, XNOR_REDUCE_TILE); elsewhere (another
 * compiler or CPU) the file holds no kernel.
 */
#include "common.h"
#include "xnor_cpu.h"

/* bgemm's 3 x 8 register tiles, reading each pixel's window straight from the image: a window
 * row (KW taps of CW words) is one run of RUN = KW * CW words of x, loaded 8 words at a time
 * with a mask that keeps the taps inside the image. Padded taps and the tail past RUN are 0
 * in a and masked out of the popcount, so they count nothing (zero padding, exact) and the
 * result is valid_taps * C - 2 * count. One launch, no frame, no window rows. */

#if XNOR_CPU_AVX512

/* TM pixels (tiles of 3, 1 for the last pixels) x TN channels (tiles of 8) per work-item. */
/* The host passes them (espresso_cl/tuning.py: BinaryConv.avx512_tiles); these defaults only
 * let the file build on its own. */
#ifndef TM
#define TM 12
#endif
#ifndef TN
#define TN 32
#endif

#define XCONV_MASKZ_POPC(m, v) \
    __builtin_ia32_selectq_512((m), XNOR_POPC(v), XNOR_V8Q_ZERO)

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
    XNOR_COLUMNS(bc, 8, b, ncols, KQ);                                                       \
    xnor_v8q s[R][8];                                                                        \
    BLOCK_EACH(R, 8, s[i][j] = XNOR_V8Q_ZERO);                                               \
    if (interior) {                                                                          \
        /* Every tap inside the image: bgemm's loop over each window row. */                 \
        _Pragma("nounroll")                                                                  \
        for (int ky = 0; ky < KH; ++ky) {                                                    \
            int k0 = 0;                                                                      \
            _Pragma("nounroll")                                                              \
            for (; k0 + 8 <= RUN; k0 += 8)                                                   \
                XNOR_STEP8(R, s, XNOR_LOAD(x + (px[i] + ky * ROW + k0)),                     \
                           XNOR_LOAD(bc[j] + ky * RUN + k0));                                \
            if (k0 < RUN) {                                                                  \
                const unsigned char tail = XNOR_TAIL_MASK(RUN - k0);                         \
                XNOR_STEP8(R, s, XNOR_LOAD_TAIL(x + (px[i] + ky * ROW + k0), tail),          \
                           XNOR_LOAD_TAIL(bc[j] + ky * RUN + k0, tail));                     \
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
    XNOR_REDUCE_TILE(R, out, s);                                                             \
}

XCONV_TILE(3)
XCONV_TILE(1)

/* x: N x H x W pixels of CW words, w: OC x KH x KW x CW words -> out: N x OH x OW x OC,
 * zero padding. Launch: global (ceil(OC / TN), ceil(NP / TM)), local (1, 1): one work-item
 * per work-group owns pixels bp .. bp + TM - 1 and channels boc .. boc + TN - 1. */
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
    const int bp = get_group_id(1) * TM, boc = get_group_id(0) * TN;
    const int pend = min(NP, bp + TM), ocend = min(OC, boc + TN);
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
            /* Valid taps: rows [ya, ya + ry) and columns [xs, xs + rx) of the window; none
             * where explicit padding puts the whole window beside the image. */
            const int ya = y < 0 ? -y : 0, xs = xl < 0 ? -xl : 0;
            const int ry = max(0, KH - ya - (y + KH > H ? y + KH - H : 0));
            const int rx = max(0, KW - xs - (xl + KW > W ? xl + KW - W : 0));
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
