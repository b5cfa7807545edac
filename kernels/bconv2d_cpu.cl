/* Binary convolution in one kernel on CPUs, zero padding (and, fused with the threshold, one
 * padding): bgemm_cpu.cl's register tiles (xnor_cpu.h) reading each pixel's window straight
 * from the image, with no frame and no window rows. x, w and out as bconv2d.cl; the launcher is
 * espresso_cl/ops/conv.py.
 *
 * A window row (KW taps of CW words) is one run of RUN = KW * CW words of x. With AVX-512
 * VPOPCNTDQ a tile of 6 pixels x 32 filters broadcasts each word of a run against 8 filters'
 * words at a time, a tap outside the image masked out of the popcount; elsewhere (AVX2, plain
 * OpenCL C) xnor_tile_segs runs the windows of XNOR_TR pixels of one image row at once, their
 * rows as segments, and a pixel at the border runs its valid words of its rows inside the
 * image alone. Padded taps count nothing either way (zero padding, exact), and the result is
 * valid_taps * C - 2 * count.
 */
#include "common.h"
#include "xnor_cpu.h"

/* TM pixels (tiles of XCONV_TR or XCONV_TB, 1 for the last pixels) x TN channels (tiles of
 * XCONV_TC) per work-item. The host passes them (espresso_cl/tuning.py: BinaryConv.blocks_tiles); these
 * defaults only let the file build on its own. */
#ifndef TM
#define TM 12
#endif
#ifndef TN
#define TN 32
#endif

/* The tile contract (xconv_tile below, for each implementation): out[XCONV_TC * i + j] =
 * popcount count of pixel i (R = XCONV_TR, XCONV_TB or 1 pixels: XCONV_TR only where
 * interior, XCONV_TB only where not) against filter o + j over its valid
 * taps. px[i]: pixel i's first window word (tap (0, 0)) in x, as an offset that may be negative
 * or past a row where the tap is padding (never dereferenced); iy0[i], xa[i], xb[i]: the
 * window's top row in the image and its valid words [xa, xb) in every run. f: filter o's first
 * word, filters by row (KQ = KH * RUN words apart); ft: the same filters by word
 * (XCONV_BY_WORD; the AVX-512 tiles' layout, the others ignore it); ncols as xnor_tile;
 * interior: every pixel's window lies inside the image. */

#if XNOR_CPU_AVX512

/* Tiles of 6 pixels x 32 filters. Where every window of the tile is inside the image, each word
 * of a pixel's window is broadcast against 4 vectors holding that word of 8 filters each
 * (xconv_bcast_*): the filters come by word, in groups of 32 (word k of filter c = 32 g + j at
 * ft[(g * KQ + k) * 32 + j], written by bconv2d_cpu_weights, a group's words one run of
 * memory), and a lane is one filter's count, so there is no sum across lanes at the end and no
 * lane wasted on a window row of RUN % 8 words. Measured on 2 Zen 5 cores: 1.3x bgemm's row
 * tiles on a conv with every window inside (512 -> 512 channels, 3 x 3), 1.7x on BinaryNet's
 * conv2 (RUN = 6 words). Where a window has padded taps, bgemm's 3 x 8 row tiles with masked
 * loads (xconv_tile_*x8, on the filters by row) run instead: per word, the broadcast tile
 * spent more on each pixel's masks than on its popcounts. */
#define XCONV_TR 6   /* pixels of a broadcast tile (windows inside the image) */
#define XCONV_TB 3   /* pixels of a row tile (windows with padded taps) */
#define XCONV_TC 32

#define XCONV_MASKZ_POPC(m, v) \
    __builtin_ia32_selectq_512((m), XNOR_POPC(v), XNOR_V8Q_ZERO)
#define XCONV_BCAST(v) ((xnor_v8q){(long)(v), (long)(v), (long)(v), (long)(v), \
                                   (long)(v), (long)(v), (long)(v), (long)(v)})

#define XCONV_BCAST_TILE(R)                                                                  \
XNOR_CPU_TARGET void xconv_bcast_##R(const __global ulong *x, const long *px, const long ROW, \
                                     const int KH, const int RUN, const __global ulong *ft,  \
                                     __private int *out)                                     \
{                                                                                            \
    xnor_v8q s[R][4];                                                                        \
    BLOCK_EACH(R, 4, s[i][j] = XNOR_V8Q_ZERO);                                               \
    _Pragma("nounroll")                                                                      \
    for (int ky = 0; ky < KH; ++ky) {                                                        \
        const __global ulong *fk = ft + (size_t)ky * RUN * 32;                               \
        const __global ulong *xr[R];                                                         \
        _Pragma("unroll")                                                                    \
        for (int i = 0; i < R; ++i) xr[i] = x + (px[i] + ky * ROW);                          \
        _Pragma("nounroll")                                                                  \
        for (int r = 0; r < RUN; ++r) {                                                      \
            xnor_v8q wv[4];                                                                  \
            _Pragma("unroll")                                                                \
            for (int j = 0; j < 4; ++j) wv[j] = XNOR_LOAD(fk + 32 * r + 8 * j);              \
            _Pragma("unroll")                                                                \
            for (int i = 0; i < R; ++i) {                                                    \
                const xnor_v8q xv = XCONV_BCAST(xr[i][r]);                                   \
                _Pragma("unroll")                                                            \
                for (int j = 0; j < 4; ++j) s[i][j] += XNOR_POPC(xv ^ wv[j]);                \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    _Pragma("unroll")                                                                        \
    for (int i = 0; i < R; ++i)                                                              \
        _Pragma("unroll")                                                                    \
        for (int j = 0; j < 4; ++j)                                                          \
            _Pragma("unroll")                                                                \
            for (int l = 0; l < 8; ++l)                                                      \
                out[32 * i + 8 * j + l] = (int)s[i][j][l];                                   \
}

XCONV_BCAST_TILE(6)
XCONV_BCAST_TILE(1)


/* Words [lo, hi) of a run, as the lanes of the 8-word chunk starting at word k0. No clamp():
 * PoCL's builtins are calls, and a call here would spill every accumulator. */
static inline unsigned char xconv_lanes(const int lo, const int hi, const int k0)
{
    const int a = lo - k0 < 0 ? 0 : lo - k0 > 8 ? 8 : lo - k0;
    const int b = hi - k0 < 0 ? 0 : hi - k0 > 8 ? 8 : hi - k0;
    return (unsigned char)(((1u << b) - 1u) & ~((1u << a) - 1u));
}

#define XCONV_ROWS(R)                                                                        \
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

XCONV_ROWS(3)
XCONV_ROWS(1)

/* The tile contract for R = 6 or 1 pixels and the 32 filters from filter o (f: by row, ft: by
 * word), out[32 * i + j]. */
static inline void xconv_tile(const int R, const __global ulong *x, const long *px,
                              const int *iy0, const int *xa, const int *xb, const int H,
                              const long ROW, const int KH, const int RUN,
                              const __global ulong *f, const __global ulong *ft, const long KQ,
                              const int ncols, const int interior, __private int *out)
{
    if (interior) {
        if (R == 6)
            xconv_bcast_6(x, px, ROW, KH, RUN, ft, out);
        else
            xconv_bcast_1(x, px, ROW, KH, RUN, ft, out);
        return;
    }
    int part[3 * 8];
    for (int i0 = 0; i0 < R;) {
        const int rows = R - i0 >= 3 ? 3 : 1;
        for (int j0 = 0; j0 < ncols; j0 += 8) {
            const int cols = ncols - j0 < 8 ? ncols - j0 : 8;
            if (rows == 3)
                xconv_tile_3x8(x, px + i0, iy0 + i0, xa + i0, xb + i0, H, ROW, KH, RUN,
                               f + (size_t)j0 * KQ, cols, 0, part);
            else
                xconv_tile_1x8(x, px + i0, iy0 + i0, xa + i0, xb + i0, H, ROW, KH, RUN,
                               f + (size_t)j0 * KQ, cols, 0, part);
            for (int i = 0; i < rows; ++i)
                for (int j = 0; j < 8; ++j)
                    out[32 * (i0 + i) + j0 + j] = part[8 * i + j];
        }
        i0 += rows;
    }
}
#define XCONV_BY_WORD(f, c) ((f) + (size_t)((c) / 32) * KQ * 32)  /* filter c's group, by word */
#if TN % 32
#error "the AVX-512 conv tile is 32 filters wide: TN must be a multiple of 32"
#endif

#else

/* Filters by row (w as the host gives it): word k of filter c at f[c * KQ + k]. A window at a
 * time, its rows as segments: through xnor_tile_segs where the R = XNOR_TR pixels are inside the
 * image and evenly spaced in it (one image row), else each pixel's valid words of its rows
 * inside the image through xnor_tile_row_segs. */
#define XCONV_TR XNOR_TR
#define XCONV_TB XNOR_TR
#define XCONV_TC XNOR_TC
#define XCONV_BY_WORD(f, c) (f)

static inline void xconv_tile(const int R, const __global ulong *x, const long *px,
                              const int *iy0, const int *xa, const int *xb, const int H,
                              const long ROW, const int KH, const int RUN,
                              const __global ulong *b, const __global ulong *ft, const long KQ,
                              const int ncols, const int interior, __private int *out)
{
    const long lda = R > 1 ? px[1] - px[0] : 0;
    int even = interior && R == XNOR_TR && lda >= 0 && lda <= INT_MAX;
    for (int i = 2; i < R; ++i)
        even &= px[i] - px[i - 1] == lda;
    if (even) {
        xnor_tile_segs(x + px[0], (int)lda, b, (int)KQ, ncols, RUN, KH, ROW, RUN, out);
        return;
    }
    int part[XNOR_TC];
    for (int i = 0; i < R; ++i) {
        const int lo = iy0[i] < 0 ? -iy0[i] : 0;
        const int hi = iy0[i] + KH > H ? H - iy0[i] : KH;
        for (int j = 0; j < XNOR_TC; ++j)
            part[j] = 0;
        if (lo < hi && xa[i] < xb[i])
            xnor_tile_row_segs(x + (px[i] + lo * ROW + xa[i]), 0, b + (lo * RUN + xa[i]), (int)KQ, ncols,
                               xb[i] - xa[i], hi - lo, ROW, RUN, part);
        for (int j = 0; j < XNOR_TC; ++j)
            out[XNOR_TC * i + j] = part[j];
    }
}
#endif /* XNOR_CPU_AVX512 */

/* A tile's pixels, gathered by kind from a work-item's pixels: windows all inside the image
 * (tiles of XCONV_TR) or not (tiles of XCONV_TB), so that a border pixel never sends its
 * neighbours to the slower tiles. Per pixel: where its window lies (xconv_pixel), its valid
 * taps and the caller's tag (its output pixel, or the pooled pixel that owns it). */
typedef struct {
    long px[XCONV_TR];
    int iy0[XCONV_TR], xa[XCONV_TR], xb[XCONV_TR], taps[XCONV_TR], tag[XCONV_TR];
    int rows;
} xconv_pixels;

/* Row i of a tile: conv output pixel q (of N x OH x OW) with its window's first word px[i], top
 * row iy0[i] and valid words [xa[i], xb[i]) of every run, as the tiles take them; returns
 * its valid taps. */
static inline int xconv_pixel(const int q, const int i, const int H, const int W, const int KH,
                              const int KW, const int OH, const int OW, const int stride,
                              const int pad_top, const int pad_left, const int CW,
                              long *px, int *iy0, int *xa, int *xb)
{
    const long ROW = (long)W * CW;
    const int n = q / (OH * OW), r = q - n * (OH * OW), oy = r / OW, ox = r - oy * OW;
    const int y = oy * stride - pad_top, xl = ox * stride - pad_left;
    iy0[i] = y;
    px[i] = ((long)n * H + y) * ROW + (long)xl * CW;
    /* Valid taps: rows [ya, ya + ry) and columns [xs, xs + rx) of the window; none where
     * explicit padding puts the whole window beside the image. */
    const int ya = y < 0 ? -y : 0, xs = xl < 0 ? -xl : 0;
    const int ry = max(0, KH - ya - (y + KH > H ? y + KH - H : 0));
    const int rx = max(0, KW - xs - (xl + KW > W ? xl + KW - W : 0));
    xa[i] = xs * CW;
    xb[i] = (xs + rx) * CW;
    return ry * rx;
}

/* Conv output pixel q (of N x OH x OW), tagged, into inner or border by its window; returns
 * 1 or 2 where that set is now full (the caller runs inner or border), else 0. */
static inline int xconv_gather(const int q, const int tag, const int H, const int W, const int KH,
                               const int KW, const int OH, const int OW, const int stride,
                               const int pad_top, const int pad_left, const int CW,
                               xconv_pixels *inner, xconv_pixels *border)
{
    long px;
    int iy0, xa, xb;
    const int taps = xconv_pixel(q, 0, H, W, KH, KW, OH, OW, stride, pad_top, pad_left, CW,
                                 &px, &iy0, &xa, &xb);
    const int interior = taps == KH * KW;
    xconv_pixels *s = interior ? inner : border;
    const int i = s->rows++;
    s->px[i] = px, s->iy0[i] = iy0, s->xa[i] = xa, s->xb[i] = xb, s->taps[i] = taps, s->tag[i] = tag;
    return interior ? (s->rows == XCONV_TR ? 1 : 0) : (s->rows == XCONV_TB ? 2 : 0);
}

/* One padding: what a window's padded taps add when they hold +1 in every channel, for the
 * filter at wf (by row): the sum over those taps of
 * 2 * popcount(w_tap) - C. The window's top row is y and its valid words of every run
 * [xa, xb), as xconv_pixel gives them (border pixels only). */
static inline int xconv_one_pad(const __global ulong *wf, const int y, const int xa,
                                const int xb, const int H, const int KH, const int KW, const int C,
                                const int CW)
{
    const int xs = xa / CW, xe = xb / CW;
    int sum = 0;
    for (int ky = 0; ky < KH; ++ky) {
        const int row_inside = (uint)(y + ky) < (uint)H;
        for (int kx = 0; kx < KW; ++kx) {
            if (row_inside && kx >= xs && kx < xe)
                continue;
            const __global ulong *tap = wf + (size_t)(ky * KW + kx) * CW;
            int ones = 0;
            for (int k = 0; k < CW; ++k)
                ones += (int)popcount(tap[k]);
            sum += 2 * ones - C;
        }
    }
    return sum;
}

/* Both kernels' view of their operands: a window row's RUN words, a filter's KQ, an image
 * row's ROW, and x, w and wt as xnor_cpu.h's 64-bit words. */
#define XCONV_OPERANDS()                                                                      \
    const int RUN = KW * CW;                                                                  \
    const long KQ = (long)KH * RUN, ROW = (long)W * CW;                                       \
    const __global ulong *x64 = (const __global ulong *)x;                                    \
    const __global ulong *w64 = (const __global ulong *)w, *wt64 = (const __global ulong *)wt

/* x: N x H x W pixels of CW words, w: OC x KH x KW x CW words (filters by row, KQ words each),
 * wt: the filters by word for the AVX-512 tiles (bconv2d_cpu_weights; w again elsewhere) -> out: N x OH x OW x OC, zero padding. Launch: global (ceil(OC / TN), ceil(NP / TM)) (swapped with ROWS_FIRST),
 * local (1, 1): one work-item per work-group owns pixels bp .. bp + TM - 1 and channels
 * boc .. boc + TN - 1. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bconv2d_cpu(const int N, const int H, const int W, const int C,
                 const int OC, const int KH, const int KW, const int OH, const int OW,
                 const int stride, const int pad_top, const int pad_left, const int CW,
                 __global const word_t *restrict x,
                 __global const word_t *restrict w,
                 __global const word_t *restrict wt,
                 __global int *restrict out)
{
    const int NP = N * OH * OW;
    XCONV_OPERANDS();
    const int bp = BLOCK_ROW() * TM, boc = BLOCK_COL() * TN;
    const int pend = min(NP, bp + TM), ocend = min(OC, boc + TN);
    int acc[XCONV_TR * XCONV_TC];
    xconv_pixels inner, border;
    inner.rows = border.rows = 0;
    /* The counts of S's pixels (windows inside the image where INTERIOR), stored. */
#define XCONV_FLUSH(S, INTERIOR) do {                                                         \
        const int full_ = (INTERIOR) ? XCONV_TR : XCONV_TB;                                   \
        for (int r0 = 0; r0 < (S).rows;) {                                                    \
            const int tile = (S).rows - r0 >= full_ ? full_ : 1;                              \
            for (int o = boc; o < ocend; o += XCONV_TC) {                                     \
                const int cols = min(ocend - o, XCONV_TC);                                    \
                xconv_tile(tile, x64, (S).px + r0, (S).iy0 + r0, (S).xa + r0, (S).xb + r0, H, \
                           ROW, KH, RUN, w64 + (size_t)o * KQ, XCONV_BY_WORD(wt64, o), KQ,    \
                           cols, (INTERIOR), acc);                                            \
                for (int i = 0; i < tile; ++i)                                                \
                    for (int j = 0; j < cols; ++j)                                            \
                        out[(size_t)(S).tag[r0 + i] * OC + o + j] =                           \
                            (S).taps[r0 + i] * C - 2 * acc[XCONV_TC * i + j];                 \
            }                                                                                 \
            r0 += tile;                                                                       \
        }                                                                                     \
        (S).rows = 0;                                                                         \
    } while (0)
    for (int p = bp; p < pend; ++p) {
        const int full = xconv_gather(p, p, H, W, KH, KW, OH, OW, stride, pad_top, pad_left, CW,
                                      &inner, &border);
        if (full == 1)
            XCONV_FLUSH(inner, 1);
        else if (full == 2)
            XCONV_FLUSH(border, 0);
    }
    XCONV_FLUSH(inner, 1);
    XCONV_FLUSH(border, 0);
#undef XCONV_FLUSH
}

/* bconv2d_cpu, the folded batch-norm + sign of threshold_pack (kernels/pack.cl) and the
 * max-pool of the bits (maxpool_bits, kernels/pool.cl) in one launch. Output bit c of conv
 * pixel p is flip[c] ? acc <= thresh[c] : acc >= thresh[c]; the pool (PKH x PKW windows,
 * PSTRIDE, PPAD_TOP, PPAD_LEFT on the OH x OW conv output -> POH x POW, taps outside skipped)
 * ORs a window's bits, or ANDs them in the channels whose test is flipped when and_flips is
 * set (the pool stood before the batch-norm: sign(bn(max)) is the min of the signs where
 * gamma < 0). No pool: a 1 x 1 window, stride 1. out: N x POH x POW pixels of RW 32-bit words
 * (RW even), written whole: pad bits and pad words 0. one_pad: padded taps hold +1 (the tiles
 * count them as zero padding; xconv_one_pad adds their sums back at border pixels).
 *
 * One work-item owns TM pooled pixels and the words of channels [boc, boc + TN) (TN a multiple
 * of 32, so every word has one writer; the block of channel OC - 1 also writes the pad words).
 * It runs the conv pixels of its pooled pixels' windows, in order, through the tiles
 * (a window's pixels are computed in the work-item that pools them: overlapping windows, a
 * stride below the window, compute a pixel more than once).
 * Launch: global (ceil(OC / TN), ceil(N * POH * POW / TM)) (swapped with ROWS_FIRST),
 * local (1, 1). */
#if TN % 32 == 0
#define XCONV_WORDS (TN / 32)

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void bconv2d_cpu_threshold(const int N, const int H, const int W, const int C,
                              const int OC, const int KH, const int KW, const int OH, const int OW,
                              const int stride, const int pad_top, const int pad_left, const int CW,
                              const int one_pad, const int PKH, const int PKW, const int PSTRIDE, const int PPAD_TOP,
                              const int PPAD_LEFT, const int POH, const int POW,
                              const int and_flips, const int RW,
                              __global const word_t *restrict x,
                              __global const word_t *restrict w,
                              __global const word_t *restrict wt,
                              __global const int *restrict thresh,
                              __global const int *restrict flip,
                              __global uint *restrict out)
{
    const int NQ = N * POH * POW;
    XCONV_OPERANDS();
    const int bq = BLOCK_ROW() * TM, boc = BLOCK_COL() * TN;
    const int qend = min(NQ, bq + TM), ocend = min(OC, boc + TN);
    /* Per channel of the block its test; per word the flips and the channels below OC. */
    int th[TN], fl[TN];
    uint flips[XCONV_WORDS], valid[XCONV_WORDS];
    for (int k = 0; k < XCONV_WORDS; ++k) flips[k] = valid[k] = 0u;
    for (int j = 0; j < TN; ++j) {
        const int c = boc + j;
        th[j] = c < OC ? thresh[c] : 0;
        fl[j] = c < OC && flip[c] != 0;
        flips[j / 32] |= (uint)fl[j] << (j % 32);
        valid[j / 32] |= (uint)(c < OC) << (j % 32);
    }
    /* Per pooled pixel of the block: the OR and the AND of its window's bits. */
    uint any[TM][XCONV_WORDS], all[TM][XCONV_WORDS];
    for (int t = 0; t < TM; ++t)
        for (int k = 0; k < XCONV_WORDS; ++k) {
            any[t][k] = 0u;
            all[t][k] = ~0u;
        }

    /* The walk over the conv pixels: pooled pixel q's window, rows [y0, y1) x columns
     * [x0, x1) of the conv output of image n, at (cy, cx). */
    int q = bq, n = 0, y0 = 0, y1 = 0, x0 = 0, x1 = 0, cy = 0, cx = 0;
#define XCONV_WINDOW() do {                                                                   \
        const int pn_ = q / (POH * POW), pr_ = q - pn_ * (POH * POW), py_ = pr_ / POW;       \
        const int top_ = py_ * PSTRIDE - PPAD_TOP, left_ = (pr_ - py_ * POW) * PSTRIDE - PPAD_LEFT; \
        n = pn_;                                                                              \
        y0 = top_ < 0 ? 0 : top_;                                                             \
        y1 = top_ + PKH > OH ? OH : top_ + PKH;                                               \
        x0 = left_ < 0 ? 0 : left_;                                                           \
        x1 = left_ + PKW > OW ? OW : left_ + PKW;                                             \
        cy = y0;                                                                              \
        cx = x0;                                                                              \
    } while (0)
    if (q < qend) XCONV_WINDOW();
    int acc[XCONV_TR * XCONV_TC];
    xconv_pixels inner, border;
    inner.rows = border.rows = 0;
    /* The bits of S's pixels (windows inside the image where INTERIOR), pooled into their
     * owners' OR and AND. */
#define XCONV_FLUSH(S, INTERIOR) do {                                                         \
        const int full_ = (INTERIOR) ? XCONV_TR : XCONV_TB;                                   \
        for (int r0 = 0; r0 < (S).rows;) {                                                    \
            const int tile = (S).rows - r0 >= full_ ? full_ : 1;                              \
            uint bits[XCONV_TR][XCONV_WORDS];                                                 \
            for (int i = 0; i < tile; ++i)                                                    \
                for (int k = 0; k < XCONV_WORDS; ++k) bits[i][k] = 0u;                        \
            for (int o = boc; o < ocend; o += XCONV_TC) {                                     \
                const int cols = min(ocend - o, XCONV_TC);                                    \
                const __global ulong *fo = w64 + (size_t)o * KQ;                              \
                xconv_tile(tile, x64, (S).px + r0, (S).iy0 + r0, (S).xa + r0, (S).xb + r0, H, \
                           ROW, KH, RUN, fo, XCONV_BY_WORD(wt64, o), KQ, cols, (INTERIOR), acc); \
                const int j0 = o - boc;                                                       \
                for (int i = 0; i < tile; ++i) {                                              \
                    const int r = r0 + i, base = (S).taps[r] * C;                             \
                    const int padded = one_pad && (S).taps[r] < KH * KW;                      \
                    uint b = 0u;                                                              \
                    for (int j = 0; j < cols; ++j) {                                          \
                        int c = base - 2 * acc[XCONV_TC * i + j];                             \
                        if (padded)                                                           \
                            c += xconv_one_pad(fo + (size_t)j * KQ, (S).iy0[r], (S).xa[r],    \
                                               (S).xb[r], H, KH, KW, C, CW);                  \
                        b |= (uint)(fl[j0 + j] ? c <= th[j0 + j] : c >= th[j0 + j]) << j;     \
                    }                                                                         \
                    bits[i][j0 / 32] |= b << (j0 % 32);                                       \
                }                                                                             \
            }                                                                                 \
            for (int i = 0; i < tile; ++i)                                                    \
                for (int k = 0; k < XCONV_WORDS; ++k) {                                       \
                    any[(S).tag[r0 + i]][k] |= bits[i][k];                                    \
                    all[(S).tag[r0 + i]][k] &= bits[i][k];                                    \
                }                                                                             \
            r0 += tile;                                                                       \
        }                                                                                     \
        (S).rows = 0;                                                                         \
    } while (0)
    while (q < qend) {
        const int full = xconv_gather((n * OH + cy) * OW + cx, q - bq, H, W, KH, KW, OH, OW, stride,
                                      pad_top, pad_left, CW, &inner, &border);
        if (++cx == x1) {
            cx = x0;
            if (++cy == y1 && ++q < qend)
                XCONV_WINDOW();
        }
        if (full == 1)
            XCONV_FLUSH(inner, 1);
        else if (full == 2)
            XCONV_FLUSH(border, 0);
    }
    XCONV_FLUSH(inner, 1);
    XCONV_FLUSH(border, 0);
#undef XCONV_FLUSH
#undef XCONV_WINDOW
    for (int t = 0; t < qend - bq; ++t) {
        __global uint *o = out + (size_t)(bq + t) * RW;
        for (int k = 0; k < XCONV_WORDS; ++k) {
            const uint and_mask = and_flips ? flips[k] : 0u;
            if (boc + 32 * k < OC)
                o[boc / 32 + k] = ((any[t][k] & ~and_mask) | (all[t][k] & and_mask)) & valid[k];
        }
        if (ocend == OC)  /* the last block: the pad words after channel OC - 1 */
            for (int k = (OC + 31) / 32; k < RW; ++k)
                o[k] = 0u;
    }
}
#endif /* TN % 32 == 0 */

/* The filters by word for the AVX-512 tiles: w (OC x KQ words, by row) -> wt (OCP / 32 groups
 * of KQ x 32 words, as XCONV_BY_WORD reads them), filters OC .. OCP - 1 all 0. Launch: global
 * (OCP, KQ). */
__kernel void bconv2d_cpu_weights(const int OC, const int KQ, const int OCP,
                                  __global const word_t *restrict w, __global word_t *restrict wt)
{
    const int c = get_global_id(0), k = get_global_id(1);
    if (c >= OCP || k >= KQ) return;  /* (the launcher rounds the grid up to whole groups) */
    wt[((size_t)(c / 32) * KQ + k) * 32 + c % 32] = c < OC ? w[(size_t)c * KQ + k] : 0;
}
