/* espresso_cl binary conventions, and the register-block loops of every GEMM-shaped kernel,
 * written once.
 *
 *  - sign(x) = +1 for x >= 0 (sign(0) = +1), -1 otherwise.
 *  - A set bit means +1, a clear bit means -1.
 *  - Packing runs along the innermost (channel) axis of NHWC data: channel c of a
 *    pixel is bit (c % 32) of 32-bit word (c / 32), least significant bit first.
 *  - Each packed row (one pixel's channels, or one dense input vector) is padded to
 *    a whole number of 64-bit words (an even number of 32-bit words). Pad bits are 0
 *    in activations and in weights alike, so they XOR to 0 and never reach a popcount:
 *    dot(a, w) = K - 2 * popcount(a ^ w) with K the true length.
 *  - On little-endian devices two consecutive 32-bit words read as one 64-bit word
 *    hold the same bits in the same order, so a kernel may use either word width
 *    on the same buffer (WORD_BITS).
 */
#ifndef ESPRESSO_COMMON_H
#define ESPRESSO_COMMON_H

#ifndef WORD_BITS
#define WORD_BITS 32
#endif

#if WORD_BITS == 64
typedef ulong word_t;
#elif WORD_BITS == 32
typedef uint word_t;
#else
#error "WORD_BITS must be 32 or 64"
#endif

/* Bit-planes of a uint8 pixel for the bit-plane kernels. The host passes it
 * (espresso_cl/registry.py: BITPLANES); the default only lets a file build on its own. */
#ifndef PLANES
#define PLANES 8
#endif

/* 32-bit words per word_t. */
#define WORD_SPAN (WORD_BITS / 32)

/* popcount of a word_t as an int (OpenCL 1.2 popcount keeps the argument's type).
 * PoCL on x86 links its builtin library built for another CPU than the kernel, so
 * popcount() stays a function call per word there; clang's builtin becomes one popcnt
 * instruction. Other compilers (NVIDIA, Oclgrind, Intel) inline popcount() themselves. */
#if defined(__clang__) && defined(__x86_64__) && WORD_BITS == 64
#define POPC(x) __builtin_popcountl(x)
#elif defined(__clang__) && defined(__x86_64__)
#define POPC(x) __builtin_popcount(x)
#else
#define POPC(x) ((int)popcount(x))
#endif

/* The loops of a register block (an R x NC block of accumulators acc[i][j]), shared by the
 * tiled kernels (through tiles.h) and the CPU micro-kernels (xnor_cpu.h, float_cpu.h,
 * bconv2d_cpu.cl). Macros rather than functions: the accumulators must stay in registers,
 * and a function taking them by pointer relies on every compiler inlining it (PoCL calls what
 * it does not inline); the AVX-512 micro-kernels could not call one across their target
 * attribute either. Every loop over a block is unrolled: PoCL leaves such loops rolled,
 * accumulators in memory, unless told to.
 *
 * Expression arguments are written in the macros' loop variables, i (block row) and j (block
 * column). OP(x, y) is a macro giving one term of a product: XNOR_COUNT, PRODUCT or a
 * micro-kernel's own. Names ending in _ are the macros' own. */

/* The row block and column block of this work-group in a grid of one work-item per block
 * (espresso_cl/registry.py: blocks_grid): dimension 0 runs over column blocks, or over row
 * blocks where the host defines ROWS_FIRST 1 (its choice of the order that keeps the larger
 * operand's block in cache). */
#ifndef ROWS_FIRST
#define ROWS_FIRST 0
#endif
#define BLOCK_ROW() ((int)get_group_id(ROWS_FIRST ? 0 : 1))
#define BLOCK_COL() ((int)get_group_id(ROWS_FIRST ? 1 : 0))

/* The XNOR-popcount term of two words, the count of differing bits; a dot product's term. */
#define XNOR_COUNT(x, y) POPC((x) ^ (y))
#define PRODUCT(x, y) ((x) * (y))

/* STMT for every (i, j) of an R x NC block. */
#define BLOCK_EACH(R, NC, ...)                                                                \
    _Pragma("unroll")                                                                         \
    for (int i = 0; i < (R); ++i)                                                             \
        _Pragma("unroll")                                                                     \
        for (int j = 0; j < (NC); ++j) {                                                      \
            __VA_ARGS__;                                                                      \
        }

/* One step along K of an R x NC block of scalars of type T: all of a row's values (A_AT, in i)
 * and a column's (B_AT, in j) loaded, then acc[i][j] += OP(row i's, column j's). */
#define BLOCK_STEP(T, R, NC, acc, A_AT, B_AT, OP)                                             \
    {                                                                                         \
        T a_[R], b_[NC];                                                                      \
        _Pragma("unroll")                                                                     \
        for (int i = 0; i < (R); ++i) a_[i] = (A_AT);                                         \
        _Pragma("unroll")                                                                     \
        for (int j = 0; j < (NC); ++j) b_[j] = (B_AT);                                        \
        BLOCK_EACH(R, NC, acc[i][j] += OP(a_[i], b_[j]))                                      \
    }

/* The same on vectors of type V, one column vector at a time: R + 1 vectors live beside the
 * R x NC accumulators, which is what lets the CPU tiles keep them all in registers. */
#define VBLOCK_STEP(V, R, NC, acc, A_AT, B_AT, OP)                                            \
    {                                                                                         \
        V a_[R];                                                                              \
        _Pragma("unroll")                                                                     \
        for (int i = 0; i < (R); ++i) a_[i] = (A_AT);                                         \
        _Pragma("unroll")                                                                     \
        for (int j = 0; j < (NC); ++j) {                                                      \
            const V b_ = (B_AT);                                                              \
            _Pragma("unroll")                                                                 \
            for (int i = 0; i < (R); ++i) acc[i][j] += OP(a_[i], b_);                         \
        }                                                                                     \
    }

#endif
