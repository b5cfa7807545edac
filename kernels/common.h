/* espresso_cl binary conventions, written once.
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

#endif
