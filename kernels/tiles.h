/* Tile parameters shared by the GEMM and convolution kernels, and the loops over them; the host
 * passes the parameters (espresso_cl/tuning.py: Tiles). A work-item computes a register block
 * of TM rows x TN columns (for convolutions: output pixels x output channels), a work-group is
 * WG_N x WG_M work-items, and with USE_LOCAL = 1 tiles of TK words along K are staged in local
 * memory. Tools that compile a file alone can take the host's values from
 * espresso_cl/registry.py (file_defines), as scripts/gpu_compile.py does. */
#ifndef ESPRESSO_TILES_H
#define ESPRESSO_TILES_H

#include "common.h"

/* The library always passes the host's values; these defaults only let a file build on its own. */
#ifndef TM
#define TM 4
#endif
#ifndef TN
#define TN 4
#endif
#ifndef WG_M
#define WG_M 8
#endif
#ifndef WG_N
#define WG_N 8
#endif
#ifndef USE_LOCAL
#define USE_LOCAL 0
#endif
#ifndef TK
#define TK 16
#endif

#define BM (WG_M * TM)
#define BN (WG_N * TN)
/* One spare column keeps the rows of a local tile on different banks. */
#define TK_PAD (TK + 1)

/* common.h's block loops on these tiles. A work-group computes a BM x BN block, work-item
 * (tx, ty) of it the rows row0 + ty + i * WG_M (i < TM) and columns col0 + tx + j * WG_N
 * (j < TN), so that neighbouring work-items store neighbouring outputs. TILE_ITEM declares tx,
 * ty, row0 and col0; the TILE_ macros after it use tx and ty. Rows run along dimension 1,
 * columns along 0. */
#define TILE_ITEM(row0, col0)                                                                 \
    const int tx = get_local_id(0), ty = get_local_id(1);                                     \
    const int col0 = get_group_id(0) * BN, row0 = get_group_id(1) * BM

#define TILE_EACH(...) BLOCK_EACH(TM, TN, __VA_ARGS__)
#define TILE_STEP(T, acc, A_AT, B_AT, OP) BLOCK_STEP(T, TM, TN, acc, A_AT, B_AT, OP)

/* ptr[i] = base + row * ld for the work-item's rows of a matrix of n rows. A row past the edge
 * reads row n - 1 (in bounds) and its results are not stored. (Conditionals, not min(): PoCL
 * calls its builtins instead of inlining them.) TILE_COLS: the same for its columns. */
#define TILE_ROWS(ptr, base, row0, n, ld)                                                     \
    _Pragma("unroll")                                                                         \
    for (int i = 0; i < TM; ++i) {                                                            \
        const int r_ = (row0) + ty + i * WG_M;                                                \
        ptr[i] = (base) + (size_t)(r_ < (n) ? r_ : (n) - 1) * (ld);                           \
    }
#define TILE_COLS(ptr, base, col0, n, ld)                                                     \
    _Pragma("unroll")                                                                         \
    for (int j = 0; j < TN; ++j) {                                                            \
        const int c_ = (col0) + tx + j * WG_N;                                                \
        ptr[j] = (base) + (size_t)(c_ < (n) ? c_ : (n) - 1) * (ld);                           \
    }

/* dst[row * ncols + col] = VALUE (in i, j) for the work-item's outputs inside nrows x ncols. */
#define TILE_STORE(dst, nrows, ncols, row0, col0, VALUE)                                      \
    _Pragma("unroll")                                                                         \
    for (int i = 0; i < TM; ++i) {                                                            \
        const int r_ = (row0) + ty + i * WG_M;                                                \
        _Pragma("unroll")                                                                     \
        for (int j = 0; j < TN; ++j) {                                                        \
            const int c_ = (col0) + tx + j * WG_N;                                            \
            if (r_ < (nrows) && c_ < (ncols))                                                 \
                (dst)[(size_t)r_ * (ncols) + c_] = (VALUE);                                   \
        }                                                                                     \
    }

/* USE_LOCAL: v[i] of every work-item's block rows, as shared[r] for the group's BM rows (what
 * an A_TILE reads by tile row r). A declaration of local memory, so at kernel scope. */
#define TILE_SHARE_ROWS(T, shared, v)                                                         \
    __local T shared[BM];                                                                     \
    if (tx == 0)                                                                              \
        for (int i = 0; i < TM; ++i)                                                          \
            shared[ty + i * WG_M] = (v)[i];                                                   \
    barrier(CLK_LOCAL_MEM_FENCE)

/* USE_LOCAL: the group's product over klen elements of K, TK at a time: the group stages the
 * TK-wide tiles of its BM rows of A (A_TILE) and BN rows of B (B_TILE) in local memory, then
 * each work-item takes its register block's products from there. A_TILE and B_TILE give
 * element k of tile row r, and 0 past an edge of the matrix or of K (0 adds nothing to either
 * product). It declares the local tiles, so it stands at kernel scope: OpenCL C 1.2 allows
 * __local variables nowhere else. */
#define TILE_LOCAL_LOOP(T, acc, klen, A_TILE, B_TILE, OP)                                     \
    __local T As_[BM][TK_PAD];                                                                \
    __local T Bs_[BN][TK_PAD];                                                                \
    const int lid_ = ty * WG_N + tx;                                                          \
    for (int k0_ = 0; k0_ < (klen); k0_ += TK) {                                              \
        for (int x_ = lid_; x_ < BM * TK; x_ += WG_M * WG_N) {                                \
            const int r = x_ / TK, c_ = x_ % TK, k = k0_ + c_;                                \
            As_[r][c_] = (A_TILE);                                                            \
        }                                                                                     \
        for (int x_ = lid_; x_ < BN * TK; x_ += WG_M * WG_N) {                                \
            const int r = x_ / TK, c_ = x_ % TK, k = k0_ + c_;                                \
            Bs_[r][c_] = (B_TILE);                                                            \
        }                                                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                                         \
        for (int kk_ = 0; kk_ < TK; ++kk_)                                                    \
            TILE_STEP(T, acc, As_[ty + i * WG_M][kk_], Bs_[tx + j * WG_N][kk_], OP);          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                         \
    }

/* Packed outputs: a kernel whose work-group owns whole 32-bit words of its BN columns
 * (BN % 32 == 0) meets its work-items' pass bits in local memory and packs them there. */

/* The folded batch-norm + sign test (kernels/pack.cl's threshold_pack) of product v in column c. */
static inline int tile_pass(const int v, const int c, __global const int *thresh, __global const int *flip)
{
    return flip[c] ? v <= thresh[c] : v >= thresh[c];
}

/* lpass[BM][BN]: PASS (in i, j; 0 or 1) of every work-item's block, by the group's block row
 * and column. A declaration of local memory, so at kernel scope. */
#define TILE_PASS_BITS(lpass, PASS)                                                           \
    __local uchar lpass[BM][BN];                                                              \
    BLOCK_EACH(TM, TN, lpass[ty + i * WG_M][tx + j * WG_N] = (uchar)(PASS));                  \
    barrier(CLK_LOCAL_MEM_FENCE)

/* 32 pass bytes as one packed word (common.h's order). */
static inline uint tile_word(__local const uchar *bits)
{
    uint word = 0u;
    for (int b = 0; b < 32; ++b)
        word |= (uint)bits[b] << b;
    return word;
}

/* The word of columns [c0, c0 + 32) below C: its flips, and the mask of columns that exist. */
static inline uint tile_valid(const int c0, const int C)
{
    return C - c0 >= 32 ? ~0u : (1u << (C - c0)) - 1u;
}

/* The pad words after the N columns' words, 0, in rows row0 .. row0 + count - 1 below ROWS of
 * out (RW words a row), written by the group of column N - 1 (col0 its first), so that every
 * word has exactly one writer. */
#define TILE_PAD_WORDS(out, row0, count, ROWS, N, col0, RW)                                  \
    if ((col0) + BN >= (N)) {                                                                 \
        const int used_ = ((N) + 31) / 32, pads_ = (RW) - used_;                              \
        for (int e_ = ty * WG_N + tx; e_ < (count) * pads_; e_ += WG_M * WG_N) {              \
            const int r_ = e_ / pads_;                                                        \
            if ((row0) + r_ < (ROWS))                                                         \
                out[(size_t)((row0) + r_) * (RW) + used_ + (e_ - r_ * pads_)] = 0u;           \
        }                                                                                     \
    }

/* The group's pass bits (TILE_PASS_BITS' lpass) packed into out (RW words a row): its rows
 * row0.. below ROWS, its columns col0.. below N, and the pad words (TILE_PAD_WORDS). */
#define TILE_STORE_PASS_WORDS(out, lpass, row0, ROWS, N, col0, RW)                           \
    for (int e_ = ty * WG_N + tx; e_ < BM * (BN / 32); e_ += WG_M * WG_N) {                   \
        const int r_ = e_ / (BN / 32), c0_ = (col0) + 32 * (e_ - r_ * (BN / 32));             \
        if ((row0) + r_ < (ROWS) && c0_ < (N))                                                \
            out[(size_t)((row0) + r_) * (RW) + c0_ / 32] =                                    \
                tile_word(lpass[r_] + (c0_ - (col0))) & tile_valid(c0_, N);                   \
    }                                                                                         \
    TILE_PAD_WORDS(out, row0, BM, ROWS, N, col0, RW)

static inline uint tile_flips(__global const int *flip, const int c0, const int C)
{
    uint word = 0u;
    for (int b = 0; b < 32 && c0 + b < C; ++b)
        word |= (uint)(flip[c0 + b] != 0) << b;
    return word;
}

#endif
