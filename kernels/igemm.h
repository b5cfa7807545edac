/* The implicit GEMM of a binary convolution on tiles.h's local-memory tiles: the product of
 * kernels/bconv2d_igemm.cl (see there) written once for its kernels, bconv2d_igemm.cl's plain
 * store and bconv2d_igemm_threshold.cl's fused threshold. Two files, not two kernels of one:
 * Oclgrind counts the local memory of every kernel in a program against each one. */
#ifndef ESPRESSO_IGEMM_H
#define ESPRESSO_IGEMM_H

#include "common.h"
#include "tiles.h"

/* Which words of a tile a work-item stages: where TK divides the group (the GPU profile), one
 * column (word k0 + col of every window) and every ROW_STEP-th row, so that it divides k by CW
 * and KW once per tile; otherwise columns lid, lid + WG, ... and every row. */
#define WG_SIZE (WG_M * WG_N)
#if WG_SIZE % TK == 0
#define COL_FIRST (int)((uint)lid % TK)  /* unsigned: provably one pass of the column loop */
#define COL_STEP TK
#define ROW_FIRST (lid / TK)
#define ROW_STEP (WG_SIZE / TK)
#else
#define COL_FIRST lid
#define COL_STEP WG_SIZE
#define ROW_FIRST 0
#define ROW_STEP 1
#endif

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
    for (int r = lid; r < BM; r += WG_SIZE) {                                                 \
        const int p = min(bp + r, NP - 1);                                                    \
        const int n = p / (OH * OW), s = p - n * (OH * OW), oy = s / OW, ox = s - oy * OW;    \
        pbase[r] = (size_t)n * H * W * CW;                                                    \
        piy[r] = oy * stride - pad_top;                                                       \
        pix[r] = ox * stride - pad_left;                                                      \
    }                                                                                         \
    int acc[TM][TN];                                                                          \
    TILE_EACH(acc[i][j] = 0);                                                                 \
    __local word_t As[BM][TK_PAD], Ms[BM][TK_PAD], Bs[BN][TK_PAD];                            \
    const word_t pad_mask = one_pad ? ~(word_t)0 : (word_t)0;                                 \
    barrier(CLK_LOCAL_MEM_FENCE);                                                             \
    for (int k0 = 0; k0 < KQ; k0 += TK) {                                                     \
        for (int col = COL_FIRST; col < TK; col += COL_STEP) {                                \
            const int k = k0 + col, in_k = k < KQ;                                            \
            const int t = k / CW, cw = k - t * CW, ky = t / KW, kx = t - ky * KW;             \
            /* A padded pixel's word cw: 0, or with one padding its channel bits set. */     \
            const int cbits = C - cw * WORD_BITS;                                             \
            const word_t pad_word = !one_pad || !in_k ? (word_t)0                             \
                : cbits >= WORD_BITS ? ~(word_t)0                                             \
                : cbits > 0 ? ((word_t)1 << cbits) - (word_t)1 : (word_t)0;                   \
            for (int r = ROW_FIRST; r < BM; r += ROW_STEP) {                                  \
                const int iy = piy[r] + ky, ix = pix[r] + kx;                                 \
                const int inside = in_k && (uint)iy < (uint)H && (uint)ix < (uint)W;          \
                As[r][col] = inside ? x[pbase[r] + ((size_t)iy * W + ix) * CW + cw] : pad_word; \
                Ms[r][col] = inside ? ~(word_t)0 : pad_mask;                                  \
            }                                                                                 \
            for (int r = ROW_FIRST; r < BN; r += ROW_STEP)                                    \
                Bs[r][col] = boc + r < OC && in_k ? w[(size_t)(boc + r) * KQ + k] : (word_t)0; \
        }                                                                                     \
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

#endif
