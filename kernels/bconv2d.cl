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
 * The CPU profiles run two other paths instead: window rows (bconv2d_im2col.cl) multiplied by
 * the XNOR GEMM and a border fix-up, or, with zero padding where the profile prefers it,
 * bconv2d_cpu.cl (one kernel on xnor_cpu.h's register tiles).
 */
#include "common.h"
#include "tiles.h"


/* The conv pixel of block row s (< BM) of bconv2d_threshold's group whose first pooled pixel is
 * q0: tap s % PT of pooled pixel q0 + s / PT, clamped into the window's part inside the conv
 * output (rows past QPG windows take the last window's last tap, pooled pixels past NQ the
 * last one). Conditionals, not min() / max(): see tiles.h. */
static inline int bconv_pooled_tap(int s, const int q0, const int NQ, const int PT, const int QPG,
                                   const int PKW, const int PSTRIDE, const int PPAD_TOP,
                                   const int PPAD_LEFT, const int POH, const int POW,
                                   const int OH, const int OW)
{
    s = s < QPG * PT ? s : QPG * PT - 1;
    int q = q0 + s / PT;
    q = q < NQ ? q : NQ - 1;
    const int t = s % PT;
    const int n = q / (POH * POW), r = q - n * (POH * POW), py = r / POW, px = r - py * POW;
    const int top = py * PSTRIDE - PPAD_TOP, left = px * PSTRIDE - PPAD_LEFT;
    int cy = top + t / PKW, cx = left + t % PKW;
    cy = cy < 0 ? 0 : cy >= OH ? OH - 1 : cy;
    cx = cx < 0 ? 0 : cx >= OW ? OW - 1 : cx;
    return (n * OH + cy) * OW + cx;
}


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
 * This is bgemm.cl's product with rows = output pixels, columns = the OC channels and a K
 * axis of KH * KW * CW words, read through each pixel's window. BCONV_PRODUCTS declares the
 * work-item's acc[TM][TN] (XOR counts) and taps[TM] (valid taps) for its block rows
 * bp + ty + i * WG_M, row r being conv pixel PIXEL(r) (an expression in r, in [0, NP)), and
 * columns boc + tx + j * WG_N; the product of row i and column j is taps[i] * C - 2 * acc[i][j].
 * PoCL leaves the register-block loops rolled (acc in memory) unless told to unroll. */
#if USE_LOCAL
#define BCONV_LOOP()                                                                          \
    TILE_SHARE_ROWS(size_t, lstart, start);                                                   \
    TILE_LOCAL_LOOP(word_t, acc, KQ,                                                          \
                    k < KQ ? framed[lstart[r] + k / RUN * ROW + k % RUN] : (word_t)0,         \
                    boc + r < OC && k < KQ ? w[(size_t)(boc + r) * KQ + k] : (word_t)0,       \
                    XNOR_COUNT)
#else
#define BCONV_LOOP()                                                                          \
    for (int ky = 0; ky < KH; ++ky) {                                                         \
        const __global word_t *xr[TM];                                                        \
        _Pragma("unroll")                                                                     \
        for (int i = 0; i < TM; ++i) xr[i] = framed + start[i] + ky * ROW;                    \
        const int wq = ky * RUN;                                                              \
        for (int q = 0; q < RUN; ++q)                                                         \
            TILE_STEP(word_t, acc, xr[i][q], wrow[j][wq + q], XNOR_COUNT);                    \
    }
#endif

#define BCONV_PRODUCTS(PIXEL)                                                                 \
    TILE_ITEM(bp, boc);                                                                       \
    const int RUN = KW * CW, KQ = KH * RUN;                                                   \
    const size_t ROW = (size_t)XW * CW;                                                       \
    /* Each pixel's window: its first word in the frame and its top-left tap in the image. */ \
    size_t start[TM];                                                                         \
    int iy0[TM], ix0[TM];                                                                     \
    _Pragma("unroll")                                                                         \
    for (int i = 0; i < TM; ++i) {                                                            \
        const int r = bp + ty + i * WG_M;                                                     \
        const int p = (PIXEL);                                                                \
        const int n = p / (OH * OW), rr = p - n * (OH * OW), oy = rr / OW, ox = rr - oy * OW; \
        start[i] = ((size_t)n * XH + oy * stride) * ROW + (size_t)ox * stride * CW;           \
        iy0[i] = oy * stride - pad_top;                                                       \
        ix0[i] = ox * stride - pad_left;                                                      \
    }                                                                                         \
    /* min(), not TILE_COLS's conditional: with that, ptxas gives this kernel 72 registers on \
     * sm_90 instead of 59, past the 64 that fit 4 work-groups per SM. */                     \
    const __global word_t *wrow[TN];                                                          \
    _Pragma("unroll")                                                                         \
    for (int j = 0; j < TN; ++j)                                                              \
        wrow[j] = w + (size_t)min(boc + tx + j * WG_N, OC - 1) * KQ;                          \
    int acc[TM][TN];                                                                          \
    TILE_EACH(acc[i][j] = 0);                                                                 \
    BCONV_LOOP();                                                                             \
    int taps[TM];                                                                             \
    _Pragma("unroll")                                                                         \
    for (int i = 0; i < TM; ++i) {                                                            \
        /* Rows [ya, ya + ry) and columns [xa, xa + rx) of the window lie inside the image    \
         * (none where explicit padding puts the whole window beside it). */                  \
        const int y1 = iy0[i] + KH, x1 = ix0[i] + KW;                                         \
        const int ya = iy0[i] < 0 ? -iy0[i] : 0, xa = ix0[i] < 0 ? -ix0[i] : 0;               \
        const int ry = max(0, KH - ya - (y1 > H ? y1 - H : 0));                               \
        const int rx = max(0, KW - xa - (x1 > W ? x1 - W : 0));                               \
        /* Zero padding: take back the popcount(w) that each padded tap's 0 words added. */   \
        if (!one_pad && (ry < KH || rx < KW))                                                 \
            for (int ky = 0; ky < KH; ++ky) {                                                 \
                const int row_inside = (uint)(ky - ya) < (uint)ry;                            \
                for (int kx = 0; kx < KW; ++kx) {                                             \
                    if (row_inside && (uint)(kx - xa) < (uint)rx)                             \
                        continue;                                                             \
                    const int wq = (ky * KW + kx) * CW;                                       \
                    _Pragma("unroll")                                                         \
                    for (int j = 0; j < TN; ++j)                                              \
                        for (int k = 0; k < CW; ++k)                                          \
                            acc[i][j] -= POPC(wrow[j][wq + k]);                               \
                }                                                                             \
            }                                                                                 \
        taps[i] = one_pad ? KH * KW : ry * rx;                                                \
    }

/* Launch: global (ceil(OC / BN) * WG_N, ceil(NP / BM) * WG_M), local (WG_N, WG_M).
 * Work-item (tx, ty) owns pixels bp + ty + i * WG_M and channels boc + tx + j * WG_N, so
 * neighbouring work-items store neighbouring channels of a pixel; pixels past the edge take
 * pixel NP - 1 (in bounds), their results not stored. */
__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bconv2d(const int N, const int H, const int W, const int C,
             const int OC, const int KH, const int KW, const int OH, const int OW,
             const int stride, const int pad_top, const int pad_left,
             const int XH, const int XW, const int CW, const int one_pad,
             __global const word_t *restrict framed,
             __global const word_t *restrict w,
             __global int *restrict out)
{
    const int NP = N * OH * OW;
    BCONV_PRODUCTS(min(r, NP - 1));
    TILE_STORE(out, NP, OC, bp, boc, taps[i] * C - 2 * acc[i][j]);
}

/* bconv2d, the folded batch-norm + sign of threshold_pack (kernels/pack.cl) and the max-pool
 * of the bits (maxpool_bits, kernels/pool.cl) in one launch, as bconv2d_cpu_threshold
 * (kernels/bconv2d_cpu.cl) defines them: pool windows PKH x PKW, PSTRIDE, PPAD_TOP,
 * PPAD_LEFT on the OH x OW conv output -> POH x POW pooled pixels (no pool: 1 x 1, stride 1),
 * a window's bits ORed, ANDed in flipped channels when and_flips; out: N x POH x POW pixels of
 * RW 32-bit words, pad bits and pad words 0.
 *
 * A work-group owns QPG = BM / (PKH * PKW) pooled pixels and BN channels (BN a multiple of 32:
 * whole words, one writer each; the group of channel OC - 1 also writes the pad words). Its
 * block row r is tap r % (PKH * PKW) of pooled pixel r / (PKH * PKW); a tap outside the conv
 * output, and the rows past QPG windows, repeat one of the window's pixels (OR and AND do not
 * mind). The pass bits meet in local memory, where the group packs and pools them.
 * Launch: global (ceil(OC / BN) * WG_N, ceil(N * POH * POW / QPG) * WG_M), local (WG_N, WG_M). */
#if BN % 32 == 0
__kernel __attribute__((reqd_work_group_size(WG_N, WG_M, 1)))
void bconv2d_threshold(const int N, const int H, const int W, const int C,
                       const int OC, const int KH, const int KW, const int OH, const int OW,
                       const int stride, const int pad_top, const int pad_left,
                       const int XH, const int XW, const int CW, const int one_pad,
                       const int PKH, const int PKW, const int PSTRIDE, const int PPAD_TOP,
                       const int PPAD_LEFT, const int POH, const int POW,
                       const int and_flips, const int RW,
                       __global const word_t *restrict framed,
                       __global const word_t *restrict w,
                       __global const int *restrict thresh,
                       __global const int *restrict flip,
                       __global uint *restrict out)
{
    const int NQ = N * POH * POW, PT = PKH * PKW, QPG = BM / PT;
    const int q0 = get_group_id(1) * QPG;
    BCONV_PRODUCTS(bconv_pooled_tap(r - get_group_id(1) * BM, q0, NQ, PT, QPG, PKW, PSTRIDE,
                                    PPAD_TOP, PPAD_LEFT, POH, POW, OH, OW));
    TILE_PASS_BITS(lpass, tile_pass(taps[i] * C - 2 * acc[i][j], min(boc + tx + j * WG_N, OC - 1),
                                    thresh, flip));
    const int lid = ty * WG_N + tx;
    for (int e = lid; e < QPG * (BN / 32); e += WG_M * WG_N) {
        const int qi = e / (BN / 32), k = e - qi * (BN / 32), c0 = boc + 32 * k;
        if (q0 + qi >= NQ || c0 >= OC)
            continue;
        uint any = 0u, all = ~0u;
        for (int t = 0; t < PT; ++t) {
            const uint bits = tile_word(lpass[qi * PT + t] + 32 * k);
            any |= bits;
            all &= bits;
        }
        const uint and_mask = and_flips ? tile_flips(flip, c0, OC) : 0u;
        out[(size_t)(q0 + qi) * RW + c0 / 32] = ((any & ~and_mask) | (all & and_mask)) & tile_valid(c0, OC);
    }
    TILE_PAD_WORDS(out, q0, QPG, NQ, OC, boc, RW);
}
#endif
