/* Row-wise softmax and argmax of a ROWS x C float array: the network's last layer.
 * One work-item per row, since C is the class count (small).
 * Launch: global (ROWS).
 */

__kernel void softmax(const int ROWS, const int C,
                      __global const float *restrict x,
                      __global float *restrict out)
{
    const int row = get_global_id(0);
    if (row >= ROWS) return;
    const __global float *xr = x + (size_t)row * C;
    __global float *yr = out + (size_t)row * C;
    /* With the row max subtracted every exp() is at most 1, so large logits cannot overflow. */
    float top = xr[0];
    for (int c = 1; c < C; ++c)
        top = fmax(top, xr[c]);
    float sum = 0.0f;
    for (int c = 0; c < C; ++c)
        sum += exp(xr[c] - top);
    /* exp() again rather than reading back stored terms: Oclgrind 21.10 reports a read of
     * global memory this kernel wrote as uninitialized once the buffer reuses the address
     * of a freed, smaller one. */
    for (int c = 0; c < C; ++c)
        yr[c] = exp(xr[c] - top) / sum;
}

/* Index of each row's largest value, the first one on ties. out: ROWS ints. */
__kernel void argmax(const int ROWS, const int C,
                     __global const float *restrict x,
                     __global int *restrict out)
{
    const int row = get_global_id(0);
    if (row >= ROWS) return;
    const __global float *xr = x + (size_t)row * C;
    int best = 0;
    for (int c = 1; c < C; ++c)
        if (xr[c] > xr[best])
            best = c;
    out[row] = best;
}
