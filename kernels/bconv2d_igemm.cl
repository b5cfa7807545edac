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
 * of the int32 store. Launcher: espresso_cl/ops/conv.py.
 */
#include "common.h"
#include "tiles.h"

#if (WG_M * WG_N) % TK != 0
#error "TK must divide the work-group: each work-item stages one column of every tile"
#endif
/* Tile rows one pass of the group stages. */
#define ROWS_PER_PASS (WG_M * WG_N / TK)

/* TILE_STEP's term: the XOR count of a window word and a weight word under the window word's
 * mask (mask_[i], row i's, loaded beside the row's word). */
#define MASKED_XNOR(a, b) POPC(((a) ^ (b)) & mask_[i])

/* The product: declares int acc[TM][TN] (the XOR counts) and int valid_bits[TM] (each row's
 * C x valid taps), in the kernel's scope after TILE_ITEM(bp, boc). Local memory: declared
 * here, hence a macro (OpenCL C 1.2 puts __local variables at kernel scope only). */
#define IGEMM_PRODUCT(acc, valid_bits)                                                        \
    const int NP = N * OH * OW, KQ = KH * KW * CW, lid = ty * WG_N + tx;                      \
    /* Each tile row's window: its image's first word and its top-left tap. Rows past NP    \
     * take pixel NP - 1 (in bounds); their results are not stored. */                     \
    __local size_t pbase[BM];                                                                 \
    __local int piy[BM], pix[BM];                                                             \
    for (int r = lid; r < BM; r += WG_M * WG_N) {                                             \
        const int p = min(bp + r, NP - 1);                                                    \
        const int n = p / (OH * OW), s = p - n * (OH * OW), oy = s / OW, ox = s - oy * OW;    \
        pbase[r] = (size_t)n * H * W * CW;                                                    \
        piy[r] = oy * stride - pad_top;                                                       \
        pix[r] = ox * stride - pad_left;                                                      \
    }                                                                                         \
    int acc[TM][TN];                                                                          \
    TILE_EACH(acc[i][j] = 0);                                                                 \
    __local word_t As[BM][TK_PAD], Ms[BM][TK_PAD], Bs[BN][TK_PAD];                            \
    /* This work-item's column of every tile: word k0 + col of the windows. */              \
    const int col = lid % TK, row0 = lid / TK;                                                \
    const word_t pad_mask = one_pad ? ~(word_t)0 : (word_t)0;                                 \
    barrier(CLK_LOCAL_MEM_FENCE);                                                             \
    for (int k0 = 0; k0 < KQ; k0 += TK) {                                                     \
        const int k = k0 + col, in_k = k < KQ;                                                \
        const int t = k / CW, cw = k - t * CW, ky = t / KW, kx = t - ky * KW;                 \
        /* A padded pixel's word cw: 0, or with one padding its channel bits set. */         \
        const int cbits = C - cw * WORD_BITS;                                                 \
        const word_t pad_word = !one_pad || !in_k ? (word_t)0                                 \
            : cbits >= WORD_BITS ? ~(word_t)0                                                 \
            : cbits > 0 ? ((word_t)1 << cbits) - (word_t)1 : (word_t)0;                       \
        for (int r = row0; r < BM; r += ROWS_PER_PASS) {                                      \
            const int iy = piy[r] + ky, ix = pix[r] + kx;                                     \
            const int inside = in_k && (uint)iy < (uint)H && (uint)ix < (uint)W;              \
            As[r][col] = inside ? x[pbase[r] + ((size_t)iy * W + ix) * CW + cw] : pad_word;   \
            Ms[r][col] = inside ? ~(word_t)0 : pad_mask;                                      \
        }                                                                                     \
        for (int r = row0; r < BN; r += ROWS_PER_PASS)                                        \
            Bs[r][col] = boc + r < OC && in_k ? w[(size_t)(boc + r) * KQ + k] : (word_t)0;    \
        barrier(CLK_LOCAL_MEM_FENCE);                                                         \
        for (int kk = 0; kk < TK; ++kk) {                                                     \
            word_t mask_[TM];                                                                 \
            _Pragma("unroll")                                                                 \
            for (int i = 0; i < TM; ++i) mask_[i] = Ms[ty + i * WG_M][kk];                    \
            TILE_STEP(word_t, acc, As[ty + i * WG_M][kk], Bs[tx + j * WG_N][kk], MASKED_XNOR); \
        }                                                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                                         \
    }                                                                                         \
    int valid_bits[TM];                                                                       \
    _Pragma("unroll")                                                                         \
    for (int i = 0; i < TM; ++i) {                                                            \
        /* Rows and columns of the window inside the image (none where explicit padding     \
         * puts the whole window beside it). */                                             \
        const int y0 = piy[ty + i * WG_M], x0 = pix[ty + i * WG_M];                           \
        const int ry = max(0, min(H, y0 + KH) - max(0, y0));                                  \
        const int rx = max(0, min(W, x0 + KW) - max(0, x0));                                  \
        valid_bits[i] = (one_pad ? KH * KW : ry * rx) * C;                                    \
    }

/* The dot product of output (i, j). */
#define IGEMM_VALUE (valid_bits[i] - 2 * acc[i][j])

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

/* bconv2d_igemm, then the folded batch-norm + sign (ops.threshold), packed, in one launch.
 * thresh, flip: OC int32 each; out: NP pixels of RWO 32-bit words (common.h's packed rows):
 * bit c of a pixel is value <= thresh[c] where flip[c], else value >= thresh[c]. The group's
 * BM x BN results meet in local memory, then each work-item packs whole words of a pixel.
 * BN must be a multiple of 64 (the registry runs this kernel only then): a group then owns
 * whole 32-bit words, and the last group also writes the row's pad word (0). */
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
    for (int e = lid; e < BM * (BN / 32); e += WG_M * WG_N) {
        const int r = e / (BN / 32), q = e % (BN / 32), p = bp + r, word = boc / 32 + q;
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
