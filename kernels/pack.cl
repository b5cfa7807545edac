/* Bit packing along the channel axis (layout in common.h), and batch-norm + sign folded
 * into one integer threshold per channel.
 *
 * All kernels here view data as ROWS rows of C channels: unpacked rows are C values
 * long, packed rows RW 32-bit words long (RW even, pad bits 0).
 * Launch for the packing kernels: global (RW, ROWS), one work-item per 32-bit word.
 */
#include "common.h"

#ifndef IN_T
#define IN_T int        /* accumulator type read by the threshold kernels: int or float */
#endif

/* Bit b of the result is pred(channel c0 + b); bits past C stay 0. */
#define PACK_WORD(word, c0, C, pred)                        \
    do {                                                    \
        word = 0u;                                          \
        const int nbits_ = min(32, (C) - (c0));             \
        for (int b_ = 0; b_ < nbits_; ++b_)                 \
            if (pred((c0) + b_)) word |= 1u << b_;          \
    } while (0)

/* sign(x) with sign(0) = +1, packed. x: ROWS x C floats -> out: ROWS x RW words. */
__kernel void pack_sign(const int ROWS, const int C, const int RW,
                        __global const float *restrict x,
                        __global uint *restrict out)
{
    const int w = get_global_id(0), row = get_global_id(1);
    if (w >= RW || row >= ROWS) return;
    const __global float *xr = x + (size_t)row * C;
    uint word;
#define NONNEG(c) (xr[c] >= 0.0f)
    PACK_WORD(word, w * 32, C, NONNEG);
#undef NONNEG
    out[(size_t)row * RW + w] = word;
}

/* Packed bits -> float +1 / -1. Launch: global (C, ROWS). */
__kernel void unpack_sign(const int ROWS, const int C, const int RW,
                          __global const uint *restrict bits,
                          __global float *restrict out)
{
    const int c = get_global_id(0), row = get_global_id(1);
    if (c >= C || row >= ROWS) return;
    const uint word = bits[(size_t)row * RW + c / 32];
    out[(size_t)row * C + c] = ((word >> (c % 32)) & 1u) ? 1.0f : -1.0f;
}

/* Folded batch-norm + sign: bit = flip[c] ? acc <= thresh[c] : acc >= thresh[c].
 * acc: ROWS x C accumulators (IN_T) -> out: ROWS x RW packed words. */
__kernel void threshold_pack(const int ROWS, const int C, const int RW,
                             __global const IN_T *restrict acc,
                             __global const int *restrict thresh,
                             __global const int *restrict flip,
                             __global uint *restrict out)
{
    const int w = get_global_id(0), row = get_global_id(1);
    if (w >= RW || row >= ROWS) return;
    const __global IN_T *ar = acc + (size_t)row * C;
    uint word;
#define PASSES(c) (flip[c] ? ar[c] <= (IN_T)thresh[c] : ar[c] >= (IN_T)thresh[c])
    PACK_WORD(word, w * 32, C, PASSES);
#undef PASSES
    out[(size_t)row * RW + w] = word;
}

/* The same test written as float +1 / -1 (float mode). Launch: global (C, ROWS). */
__kernel void threshold_sign(const int ROWS, const int C,
                             __global const IN_T *restrict acc,
                             __global const int *restrict thresh,
                             __global const int *restrict flip,
                             __global float *restrict out)
{
    const int c = get_global_id(0), row = get_global_id(1);
    if (c >= C || row >= ROWS) return;
    const size_t i = (size_t)row * C + c;
    const int pass = flip[c] ? acc[i] <= (IN_T)thresh[c] : acc[i] >= (IN_T)thresh[c];
    out[i] = pass ? 1.0f : -1.0f;
}
