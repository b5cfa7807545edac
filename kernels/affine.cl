/* Float-valued per-channel maps of ROWS x C data.
 *
 * affine: y = x * scale[c] + shift[c], float out. One kernel serves float batch-norm (the
 * host folds gamma, beta, mean, var and eps into scale and shift), bias add (scale 1) and
 * the int -> float conversion of accumulators (scale 1, shift 0).
 */
#ifndef IN_T
#define IN_T int        /* input type of affine: int (accumulators) or float */
#endif

/* x: ROWS x C IN_T, scale and shift: C floats, out: ROWS x C floats.
 * Launch: global (C, ROWS). */
__kernel void affine(const int ROWS, const int C,
                     __global const IN_T *restrict x,
                     __global const float *restrict scale,
                     __global const float *restrict shift,
                     __global float *restrict out)
{
    const int c = get_global_id(0), row = get_global_id(1);
    if (c >= C || row >= ROWS) return;
    const size_t i = (size_t)row * C + c;
    out[i] = (float)x[i] * scale[c] + shift[c];
}

/* Float mode's sign: +1.0f / -1.0f with sign(0) = +1, as for packed bits (common.h).
 * x, out: COUNT floats. Launch: global (COUNT). */
__kernel void sign_float(const int COUNT,
                         __global const float *restrict x,
                         __global float *restrict out)
{
    const int i = get_global_id(0);
    if (i >= COUNT) return;
    out[i] = x[i] >= 0.0f ? 1.0f : -1.0f;
}
